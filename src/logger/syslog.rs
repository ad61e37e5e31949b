//! Syslog messages made from log lines, one datagram per line, in one of two layouts:
//!
//! * RFC 5424, `<PRI>1 TIMESTAMP HOSTNAME sluice PID - - [target] message`: over UDP
//!   (`syslog:HOST:PORT`), and to FreeBSD's local socket, whose syslogd parses it.
//! * The traditional BSD layout (RFC 3164 as glibc's `syslog(3)` writes it),
//!   `<PRI>Mmm dd hh:mm:ss sluice[PID]: [target] message` in local time: to Linux's
//!   `/dev/log`, because journald and rsyslog's default socket parser read only that one
//!   there (an RFC 5424 message arrives with `1` as its program name).
//!
//! Pure: the sink sends what this builds. Never lets a message break the header: the header
//! fields are checked here, the message is whatever the line held (already escaped where it
//! came from the wire).

use super::line;
use super::target::Facility;

/// The APP-NAME field (RFC 5424), the TAG (BSD).
const APP_NAME: &[u8] = b"sluice";

/// How a datagram is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424.
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, local time, no host name (a local socket).
    Bsd,
}

/// What the platform's local syslog socket reads: FreeBSD's syslogd parses RFC 5424;
/// journald and rsyslog on Linux's `/dev/log` parse only the BSD layout.
pub const LOCAL_FORMAT: Format = if cfg!(target_os = "freebsd") {
    Format::Rfc5424
} else {
    Format::Bsd
};

/// The fields every message of one sink repeats.
#[derive(Clone, Debug)]
pub struct Header {
    /// The layout.
    pub format: Format,
    /// The facility, with the line's severity the PRI.
    pub facility: Facility,
    /// The HOSTNAME field (RFC 5424 only), from [`host_field`].
    pub host: String,
    /// This process.
    pub pid: u32,
    /// Local time's offset from UTC in seconds (BSD timestamps are local time).
    pub utc_offset_s: i64,
}

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
/// become the timestamp and the severity; `[target] message` is the MSG, without the
/// final newline.
pub fn message(out: &mut Vec<u8>, line: &[u8], header: &Header, max: usize) {
    out.clear();
    let parsed = line::level_of(line).is_some();
    let level = line::level_of(line).unwrap_or(log::Level::Info);
    let pri = u32::from(header.facility.code()) * 8 + u32::from(severity(level));
    let msg = match line.get(line::MESSAGE_AT..) {
        Some(m) if parsed => m,
        _ => line, // not one of our lines: sent whole
    };
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    out.push(b'<');
    push_decimal(out, pri);
    out.push(b'>');
    match header.format {
        Format::Rfc5424 => {
            out.extend_from_slice(b"1 ");
            match line.get(..line::TIMESTAMP_LEN) {
                Some(t) if parsed => out.extend_from_slice(t),
                _ => out.push(b'-'),
            }
            out.push(b' ');
            out.extend_from_slice(header.host.as_bytes());
            out.push(b' ');
            out.extend_from_slice(APP_NAME);
            out.push(b' ');
            push_decimal(out, header.pid);
            out.extend_from_slice(b" - - "); // MSGID, STRUCTURED-DATA
        }
        Format::Bsd => {
            // a line without a timestamp gets none: the reader stamps it on receipt
            if let Some(secs) = line::seconds_of(line).filter(|_| parsed) {
                bsd_timestamp(out, secs + header.utc_offset_s);
                out.push(b' ');
            }
            out.extend_from_slice(APP_NAME);
            out.push(b'[');
            push_decimal(out, header.pid);
            out.extend_from_slice(b"]: ");
        }
    }
    out.extend_from_slice(msg);
    if out.len() > max {
        let mut cut = max;
        while out.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) && cut > 0 {
            cut -= 1; // not inside a UTF-8 sequence
        }
        out.truncate(cut);
    }
}

/// `Mmm dd hh:mm:ss` (the day padded with a space, as `%b %e %T`).
fn bsd_timestamp(out: &mut Vec<u8>, local_secs: i64) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (days, rem) = (local_secs.div_euclid(86_400), local_secs.rem_euclid(86_400));
    let (_, month, day) = line::civil_from_days(days);
    let name = MONTHS
        .get((month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or(b"Jan");
    out.extend_from_slice(name);
    out.push(b' ');
    out.push(if day >= 10 {
        b'0' + (day / 10) as u8
    } else {
        b' '
    });
    out.push(b'0' + (day % 10) as u8);
    for (sep, v) in [
        (b' ', rem / 3600),
        (b':', rem % 3600 / 60),
        (b':', rem % 60),
    ] {
        out.push(sep);
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
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

    fn header(format: Format, facility: &str) -> Header {
        Header {
            format,
            facility: Facility::parse(facility).unwrap(),
            host: "edge-1.example".into(),
            pid: 4242,
            utc_offset_s: 0,
        }
    }

    fn msg(line: &[u8], facility: &str, max: usize) -> String {
        let mut out = Vec::new();
        message(&mut out, line, &header(Format::Rfc5424, facility), max);
        String::from_utf8(out).unwrap()
    }

    fn bsd(line: &[u8], facility: &str, utc_offset_s: i64) -> String {
        let mut out = Vec::new();
        let h = Header {
            utc_offset_s,
            ..header(Format::Bsd, facility)
        };
        message(&mut out, line, &h, 8192);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_bsd_message_as_glibc_writes_them() {
        let l = line_at(log::Level::Info, "sid=3 close reason=done");
        assert_eq!(
            bsd(&l, "daemon", 0),
            "<30>Nov 25 13:14:04 sluice[4242]: [sluice::session] sid=3 close reason=done"
        );
        // local time: two hours east of UTC is 15:14; eleven hours west, the day before
        assert!(bsd(&l, "daemon", 7200).starts_with("<30>Nov 25 15:14:04 sluice[4242]: "));
        assert!(bsd(&l, "local0", -11 * 3600).starts_with("<134>Nov 25 02:14:04 sluice"));
        // a day under 10 is padded with a space
        let early = {
            let mut out = Vec::new();
            let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3 * 86_400 + 5); // 2026-01-04
            line::format(&mut out, t, log::Level::Error, "sluice", format_args!("x"));
            out
        };
        assert_eq!(
            bsd(&early, "user", 0),
            "<11>Jan  4 00:00:05 sluice[4242]: [sluice] x"
        );
        assert_eq!(bsd(b"hello\n", "user", 0), "<14>sluice[4242]: hello");
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

    /// The sink sends a record's lines one a datagram; each is a whole line with its prefix.
    #[test]
    fn each_line_of_a_multi_line_record_is_a_message() {
        let record = [
            line_at(log::Level::Debug, "ClientHello sid=1"),
            line_at(log::Level::Debug, "dump sid=1 offset=0000"),
        ]
        .concat();
        let at = record.iter().position(|&b| b == b'\n').unwrap() + 1;
        let (first, second) = record.split_at(at);
        let m = msg(first, "daemon", 8192);
        assert!(m.starts_with("<31>1 2026-11-25T"), "{m}");
        assert!(m.ends_with("[sluice::session] ClientHello sid=1"), "{m}");
        let m = msg(second, "daemon", 8192);
        assert!(m.starts_with("<31>1 2026-11-25T"), "{m}");
        assert!(
            m.ends_with("[sluice::session] dump sid=1 offset=0000"),
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
