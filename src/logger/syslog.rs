//! RFC 5424 syslog messages made from log lines: `<PRI>1 TIMESTAMP HOSTNAME sluice PID - -
//! [target] message`. Pure: the sink sends what this builds, one datagram per record.
//! Never lets a message break the header: the header fields are checked here, the message
//! is whatever the line held (already escaped where it came from the wire).

use super::line;

/// The APP-NAME field.
const APP_NAME: &[u8] = b"sluice";

/// Severity (RFC 5424 §6.2.1) of a level.
pub fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3, // err
        log::Level::Warn => 4,  // warning
        log::Level::Info => 6,  // informational
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// A HOSTNAME field: printable US-ASCII without spaces, at most 255 bytes, else `-` (the
/// NILVALUE).
pub fn host_field(name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic()) => {
            n.to_string()
        }
        _ => "-".to_string(),
    }
}

/// Replaces `out` with the message for one log line (as [`line::format`] writes it),
/// at most `max` bytes (cut at a character boundary). The line's timestamp and level
/// become the TIMESTAMP and the severity; `[target] message` is the MSG, without the
/// final newline.
pub fn message(
    out: &mut Vec<u8>,
    line: &[u8],
    facility: super::target::Facility,
    host: &str,
    pid: u32,
    max: usize,
) {
    out.clear();
    let level = line::level_of(line).unwrap_or(log::Level::Info);
    let pri = u32::from(facility.code()) * 8 + u32::from(severity(level));
    let (timestamp, msg) = match (
        line.get(..line::TIMESTAMP_LEN),
        line.get(line::MESSAGE_AT..),
    ) {
        (Some(t), Some(m)) if line::level_of(line).is_some() => (t, m),
        _ => (&b"-"[..], line), // not one of our lines: sent whole, no timestamp
    };
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    out.push(b'<');
    push_decimal(out, pri);
    out.extend_from_slice(b">1 ");
    out.extend_from_slice(timestamp);
    out.push(b' ');
    out.extend_from_slice(host.as_bytes());
    out.push(b' ');
    out.extend_from_slice(APP_NAME);
    out.push(b' ');
    push_decimal(out, pid);
    out.extend_from_slice(b" - - "); // MSGID, STRUCTURED-DATA
    out.extend_from_slice(msg);
    if out.len() > max {
        let mut cut = max;
        while out.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) && cut > 0 {
            cut -= 1; // not inside a UTF-8 sequence
        }
        out.truncate(cut);
    }
}

fn push_decimal(out: &mut Vec<u8>, mut v: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (v % 10) as u8;
        }
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits.iter().take(n).rev());
}

#[cfg(test)]
mod tests {
    use super::super::target::Facility;
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line_at(level: log::Level, msg: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_795_612_444_057);
        line::format(&mut out, t, level, "sluice::session", format_args!("{msg}"));
        out
    }

    fn msg(line: &[u8], facility: &str, max: usize) -> String {
        let mut out = Vec::new();
        message(
            &mut out,
            line,
            Facility::parse(facility).unwrap(),
            "edge-1.example",
            4242,
            max,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_info_line_from_the_daemon_facility() {
        let l = line_at(log::Level::Info, "sid=3 close reason=done");
        assert_eq!(
            msg(&l, "daemon", 8192),
            "<30>1 2026-11-25T13:14:04.057Z edge-1.example sluice 4242 - - \
             [sluice::session] sid=3 close reason=done"
        );
    }

    #[test]
    fn pri_is_facility_times_8_plus_severity() {
        let cases = [
            (log::Level::Error, "daemon", "<27>"),
            (log::Level::Warn, "daemon", "<28>"),
            (log::Level::Debug, "daemon", "<31>"),
            (log::Level::Trace, "user", "<15>"),
            (log::Level::Info, "local0", "<134>"),
            (log::Level::Error, "local7", "<187>"),
            (log::Level::Warn, "user", "<12>"),
        ];
        for (level, facility, pri) in cases {
            let m = msg(&line_at(level, "x"), facility, 8192);
            assert!(m.starts_with(&format!("{pri}1 2026-11-25T")), "{m}");
        }
    }

    #[test]
    fn multi_line_records_keep_their_inner_newlines() {
        let m = msg(
            &line_at(log::Level::Debug, "dump\n00000000: 16 03"),
            "daemon",
            8192,
        );
        assert!(
            m.ends_with("[sluice::session] dump\n00000000: 16 03"),
            "{m}"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character() {
        let l = line_at(log::Level::Info, &"é".repeat(100));
        let m = msg(&l, "daemon", 100);
        assert!(m.len() <= 100 && m.len() >= 99, "{}", m.len());
        let m = msg(&l, "daemon", 101);
        assert!(m.len() <= 101 && m.len() >= 100, "{}", m.len());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_field(Some("edge-1")), "edge-1");
        assert_eq!(host_field(Some("")), "-");
        assert_eq!(host_field(Some("a b")), "-");
        assert_eq!(host_field(Some(&"a".repeat(256))), "-");
        assert_eq!(host_field(None), "-");
    }

    #[test]
    fn a_foreign_line_is_sent_whole() {
        assert_eq!(
            msg(b"hello\n", "user", 8192),
            "<14>1 - edge-1.example sluice 4242 - - hello"
        );
    }
}
