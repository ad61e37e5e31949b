//! The log sink: one line per record, written to stderr with a single `write(2)`, so that the
//! lines of several worker processes sharing one stderr never interleave (a pipe keeps writes
//! of up to PIPE_BUF bytes whole). Format: `2026-11-25T13:14:04.057Z INFO  [target] message`.
//!
//! The logger passes every record; the level is `log::max_level`, which reload and
//! `set log-level` change at run time. Traced sessions bypass it on purpose.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl log::Log for Stderr {
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
        // One write_all on a locked, unbuffered stderr: one write(2) for lines under PIPE_BUF.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger (once) with `level` as the run-time filter.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T13:14:04.057Z`.
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

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let mut s = String::new();
        timestamp(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2026-11-25T13:14:04.057Z
        timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_795_612_444_057),
        );
        assert_eq!(s, "2026-11-25T13:14:04.057Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day 2000
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }
}
