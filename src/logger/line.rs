//! How a record becomes a log line: `2026-11-25T13:14:04.057Z INFO  [target] message\n`;
//! a message of several lines (a hex dump's rows after its line, each begun by a
//! [`LINE_BREAK`] written alone) becomes as many lines, each with the same prefix, written
//! together.
//! Pure and allocation-free once the caller's buffer has grown: the access log formats one
//! line per session on the event loop, so every instruction here is paid per session.
//! Never does I/O.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the timestamp at the start of every line.
pub const TIMESTAMP_LEN: usize = 24;
/// Where the level column starts (after the timestamp and a space).
const LEVEL_AT: usize = TIMESTAMP_LEN + 1;
/// Where `[target] message` starts (after the level, padded to 5, and a space).
pub const MESSAGE_AT: usize = LEVEL_AT + 6;

/// Appends one whole line for a record to `out`.
pub fn format(
    out: &mut Vec<u8>,
    now: SystemTime,
    level: log::Level,
    target: &str,
    args: fmt::Arguments<'_>,
) {
    let start = out.len();
    out.extend_from_slice(&timestamp_cached(now));
    out.push(b' ');
    out.extend_from_slice(level_column(level));
    out.extend_from_slice(b" [");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b"] ");
    let message = out.len();
    let breaks = match args.as_str() {
        Some(s) => {
            out.extend_from_slice(s.as_bytes());
            s.contains('\n')
        }
        None => {
            let mut w = Bytes { out, breaks: false };
            let _ = fmt::write(&mut w, args);
            w.breaks
        }
    };
    if breaks {
        prefix_every_line(out, start, message);
    }
    out.push(b'\n');
}

/// A line break inside a message (a dump's next row), written by itself with `write_str`:
/// the formatting then tells the logger that more lines follow, and no message has to be
/// searched for one (the close line is formatted for every session).
pub const LINE_BREAK: &str = "\n";

/// Gives each line after the first of a multi-line message (a hex dump's rows) the first
/// line's prefix, so that every physical line is a record of its own; empty lines go.
#[cold]
fn prefix_every_line(out: &mut Vec<u8>, start: usize, message: usize) {
    let (Some(prefix), Some(text)) = (out.get(start..message), out.get(message..)) else {
        return;
    };
    let (prefix, text) = (prefix.to_vec(), text.to_vec());
    out.truncate(message);
    let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for l in lines {
        out.push(b'\n');
        out.extend_from_slice(&prefix);
        out.extend_from_slice(l);
    }
}

/// Appends the line that stands where `n` lines went missing.
pub fn dropped(out: &mut Vec<u8>, now: SystemTime, n: u64) {
    format(
        out,
        now,
        log::Level::Warn,
        "sluice::logger",
        format_args!("log lines dropped lines={n}"),
    );
}

/// The level a line was written at, read back from its level column.
pub fn level_of(line: &[u8]) -> Option<log::Level> {
    let col = line.get(LEVEL_AT..LEVEL_AT + 5)?;
    [
        log::Level::Error,
        log::Level::Warn,
        log::Level::Info,
        log::Level::Debug,
        log::Level::Trace,
    ]
    .into_iter()
    .find(|&l| level_column(l) == col)
}

/// The level's name padded to 5 columns, as `{:<5}` prints it.
fn level_column(level: log::Level) -> &'static [u8; 5] {
    match level {
        log::Level::Error => b"ERROR",
        log::Level::Warn => b"WARN ",
        log::Level::Info => b"INFO ",
        log::Level::Debug => b"DEBUG",
        log::Level::Trace => b"TRACE",
    }
}

/// `fmt::Write` into a byte vector (a line is bytes until it is written), noting a
/// [`LINE_BREAK`].
struct Bytes<'a> {
    out: &'a mut Vec<u8>,
    breaks: bool,
}

impl fmt::Write for Bytes<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() == 1 && s == LINE_BREAK {
            self.breaks = true;
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

thread_local! {
    /// The last timestamp this thread made, by its second: lines come many a second, and
    /// only the milliseconds change between them.
    static LAST: Cell<(u64, [u8; TIMESTAMP_LEN])> = const { Cell::new((u64::MAX, [0; TIMESTAMP_LEN])) };
}

/// [`timestamp`], the date and time of day reused from the last line of the same second.
fn timestamp_cached(t: SystemTime) -> [u8; TIMESTAMP_LEN] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let Ok((last, mut out)) = LAST.try_with(Cell::get) else {
        return timestamp(t);
    };
    if last != secs {
        out = timestamp(t);
        let _ = LAST.try_with(|c| c.set((secs, out)));
        return out;
    }
    let ms = d.subsec_millis();
    if let Some([a, b, c]) = out.get_mut(20..23) {
        *a = b'0' + (ms / 100) as u8;
        *b = b'0' + (ms / 10 % 10) as u8;
        *c = b'0' + (ms % 10) as u8;
    }
    out
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T13:14:04.057Z`, digit by digit (the
/// formatting machinery costs several times more for the same bytes).
pub fn timestamp(t: SystemTime) -> [u8; TIMESTAMP_LEN] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let fields: [(usize, usize, u64); 7] = [
        (0, 4, y.clamp(0, 9999) as u64),
        (5, 2, u64::from(m)),
        (8, 2, u64::from(day)),
        (11, 2, rem / 3600),
        (14, 2, rem % 3600 / 60),
        (17, 2, rem % 60),
        (20, 3, u64::from(d.subsec_millis())),
    ];
    for (at, width, mut v) in fields {
        for i in (at..at + width).rev() {
            if let Some(b) = out.get_mut(i) {
                *b = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    }
    out
}

/// The Unix time (whole seconds) of a line, read back from its timestamp.
pub fn seconds_of(line: &[u8]) -> Option<i64> {
    let field = |at: usize, width: usize| -> Option<i64> {
        let digits = line.get(at..at + width)?;
        digits.iter().try_fold(0i64, |v, &d| {
            d.is_ascii_digit().then(|| v * 10 + i64::from(d - b'0'))
        })
    };
    let (y, m, d) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hh, mm, ss) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    if !(1..=12).contains(&m) || line.get(TIMESTAMP_LEN - 1) != Some(&b'Z') {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    fn ts(t: SystemTime) -> String {
        String::from_utf8(timestamp(t).to_vec()).unwrap()
    }

    #[test]
    fn cached_timestamps_change_with_the_millisecond_and_the_second() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_612_444_057);
        for step in [0, 1, 9, 10, 99, 100, 942, 943, 1000, 86_400_000, 3] {
            let t = t + Duration::from_millis(step);
            assert_eq!(timestamp_cached(t), timestamp(t), "+{step} ms");
        }
        assert_eq!(timestamp_cached(UNIX_EPOCH), timestamp(UNIX_EPOCH));
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_612_444_057);
        assert_eq!(ts(t), "2026-11-25T13:14:04.057Z");
        // leap day 2000
        assert_eq!(
            ts(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            ts(UNIX_EPOCH + Duration::from_millis(253_402_300_799_999)),
            "9999-12-31T23:59:59.999Z"
        );
    }

    /// The same bytes as the `format!`-based line the logger wrote before.
    #[test]
    fn lines_are_as_before() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_612_444_057);
        for level in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ] {
            let mut out = Vec::new();
            let n = 3;
            format(
                &mut out,
                t,
                level,
                "sluice::session",
                format_args!("sid={n} close"),
            );
            let old =
                format!("2026-11-25T13:14:04.057Z {level:<5} [sluice::session] sid=3 close\n");
            assert_eq!(String::from_utf8(out.clone()).unwrap(), old);
            assert_eq!(level_of(&out), Some(level));
            assert_eq!(out.get(MESSAGE_AT), Some(&b'['));
        }
        let mut out = Vec::new();
        format(&mut out, t, log::Level::Info, "x", format_args!("plain"));
        assert_eq!(out, b"2026-11-25T13:14:04.057Z INFO  [x] plain\n");
    }

    #[test]
    fn every_line_of_a_message_gets_the_prefix() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_612_444_057);
        struct Rows;
        impl fmt::Display for Rows {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for (i, row) in ["", "dump sid=1 offset=0000", "", "dump sid=1 offset=0010"]
                    .iter()
                    .enumerate()
                {
                    if i > 0 {
                        f.write_str(LINE_BREAK)?;
                    }
                    f.write_str(row)?;
                }
                Ok(())
            }
        }
        let mut out = Vec::new();
        format(
            &mut out,
            t,
            log::Level::Warn,
            "s",
            format_args!("invalid sid={}{}", 1, Rows),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-25T13:14:04.057Z WARN  [s] invalid sid=1\n\
             2026-11-25T13:14:04.057Z WARN  [s] dump sid=1 offset=0000\n\
             2026-11-25T13:14:04.057Z WARN  [s] dump sid=1 offset=0010\n"
        );
    }

    #[test]
    fn a_message_without_arguments_is_searched_for_line_breaks() {
        let mut out = Vec::new();
        format(
            &mut out,
            UNIX_EPOCH,
            log::Level::Info,
            "s",
            format_args!("one\ntwo"),
        );
        assert_eq!(
            out,
            b"1970-01-01T00:00:00.000Z INFO  [s] one\n1970-01-01T00:00:00.000Z INFO  [s] two\n"
        );
    }

    #[test]
    fn seconds_read_back_from_a_line() {
        for secs in [
            0u64,
            951_782_400,
            1_795_612_444,
            4_102_444_799,
            253_402_300_799,
        ] {
            let mut out = Vec::new();
            let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + 57);
            format(&mut out, t, log::Level::Info, "x", format_args!("m"));
            assert_eq!(seconds_of(&out), Some(secs as i64), "{secs}");
        }
        assert_eq!(seconds_of(b"hello\n"), None);
        assert_eq!(seconds_of(b"2026-13-25T13:14:04.057Z INFO  [x] m"), None);
    }

    #[test]
    fn the_dropped_line() {
        let mut out = Vec::new();
        dropped(&mut out, UNIX_EPOCH, 42);
        assert_eq!(
            out,
            b"1970-01-01T00:00:00.000Z WARN  [sluice::logger] log lines dropped lines=42\n"
        );
        assert_eq!(level_of(b"short"), None);
    }
}
