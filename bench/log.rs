//! Log micro-benchmark: what one access line (the session's close line, at `info`) costs the
//! event loop, in user-space instructions under callgrind (`make bench-log-instructions`,
//! bench/log-instructions) or in time (`cargo bench --bench log`). Run with stderr on a
//! file, as the issue measured it.
//!
//! `LOG_BENCH_MODE`:
//! * `before` — the logger as it was before issue 20 (a copy below): a `String` per line
//!   and one `write(2)` per line; and the close line's arguments as the session formatted
//!   them then (a `String` per address, a `write!` per byte of a name), in the form of then.
//! * `direct` — today's logger in direct mode (the mode until the loop opts in).
//! * `buffered` — today's logger in buffered mode, as the loop will run it: the line goes
//!   into the buffer; `flush` is called once per line (a loop turn; cheap, rate-limited)
//!   and really writes every 15 lines (3,000 sessions/s with a write every 5 ms).
//! * `off` — the level at `warn`: the `info!` is filtered out (the loop's own cost).
//!
//! `LOG_BENCH_LINES` lines (default 100000); `LOG_BENCH_MSG=close` (default: the session's
//! close line, `worker::session::logs::CloseLine`, with a session's kind of values) or
//! `short` (a fixed string: the logger's own cost, the message's formatting left out).

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, process};

use sluice::logger;
use sluice::worker::session::logs::CloseLine;

const LINES_PER_WRITE: u64 = 15;

fn main() {
    let lines: u64 = env::var("LOG_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mode = env::var("LOG_BENCH_MODE").unwrap_or_else(|_| "buffered".into());
    let short = env::var("LOG_BENCH_MSG").is_ok_and(|m| m == "short");
    match mode.as_str() {
        "before" => {
            let _ = log::set_logger(&BEFORE);
            log::set_max_level(log::LevelFilter::Info);
        }
        "direct" => logger::init(log::LevelFilter::Info),
        "buffered" => {
            logger::init(log::LevelFilter::Info);
            if let Err(e) = logger::set_buffered(true) {
                eprintln!("buffered mode: {e}");
                process::exit(2);
            }
        }
        "off" => logger::init(log::LevelFilter::Warn),
        other => {
            eprintln!("LOG_BENCH_MODE={other:?}: before, direct, buffered or off");
            process::exit(2);
        }
    }
    let buffered = mode == "buffered";
    let before = mode == "before";
    let client: SocketAddr = "127.0.0.1:35200"
        .parse()
        .unwrap_or_else(|_| process::exit(2));
    let upstream: SocketAddr = "127.0.0.1:43629"
        .parse()
        .unwrap_or_else(|_| process::exit(2));
    let start = Instant::now();
    let mut now = start;
    for sid in 0..lines {
        if short {
            log::info!(target: "sluice::session", "session closed");
        } else if before {
            // the arguments as Session::close formatted them before issue 20: a String per
            // address, a write! per byte of a name
            log::info!(
                target: "sluice::session",
                "sid={} close client={} sni={} name={} route={} upstream={} state={} duration_ms={} bytes_up={} bytes_down={} reason={}",
                black_box(sid),
                label(&client),
                EscapedBefore(black_box(b"example.test")),
                EscapedBefore(black_box(b"example.test")),
                black_box("default"),
                label(&upstream),
                black_box("HalfClosed"),
                black_box(sid % 7),
                black_box(725u64),
                black_box(6541u64),
                black_box("done"),
            );
        } else {
            // Session::close's line itself, with the same kind of values
            log::info!(
                target: "sluice::session",
                "{}",
                CloseLine {
                    sid: black_box(sid),
                    client: black_box(client),
                    listener: black_box("default"),
                    sni: black_box(b"example.test"),
                    host: black_box(b""),
                    name: black_box(b"example.test"),
                    route: black_box("default"),
                    upstream: Some(black_box(upstream)),
                    state: black_box("HalfClosed"),
                    duration_ms: black_box(sid % 7),
                    bytes_up: black_box(725u64),
                    bytes_down: black_box(6541u64),
                    reason: black_box("done"),
                    unique_id: None,
                }
            );
        }
        if buffered {
            if sid % LINES_PER_WRITE == 0 {
                now += logger::FLUSH_EVERY;
            }
            black_box(logger::flush(now));
        }
    }
    if buffered {
        logger::flush_blocking(Instant::now() + Duration::from_secs(10));
    }
    let c = logger::counters();
    println!(
        "mode={mode} lines={lines} ns/line={:.1} dropped={}",
        start.elapsed().as_nanos() as f64 / lines as f64,
        c.dropped
    );
}

/// As `Session::client_label` and `upstream_label` made them before issue 20: a `String`
/// each.
fn label(a: &SocketAddr) -> String {
    black_box(a).to_string()
}

/// `hexdump::Escaped` before issue 20: a `write!` per byte.
struct EscapedBefore<'a>(&'a [u8]);

impl std::fmt::Display for EscapedBefore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &b in self.0.iter().take(256) {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b' '..=b'~' => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        if self.0.len() > 256 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// The logger before issue 20, verbatim but for its name.
struct Before;

static BEFORE: Before = Before;

impl log::Log for Before {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut line = String::with_capacity(256);
        timestamp(&mut line, SystemTime::now());
        let _ = write!(
            line,
            " {:<5} [{}] {}",
            record.level(),
            record.target(),
            record.args()
        );
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
