//! How bytes from the wire are shown to people: an `xxd`-style dump (and the same as log
//! records, [`DumpRows`]), an escaped string, and the addresses a session learned.
//!
//! All are `Display` adapters, so nothing is formatted unless a log line is emitted, and
//! all are bounded: a hostile peer cannot make a log line grow without limit, and no byte
//! from the wire reaches a log line unescaped (no CR, LF, NUL, escape sequences, non-ASCII).
//! [`Escaped`] and [`Address`] are in every session's close line (the access log, one line
//! per session at `info`): they write whole runs with one `write_str` and never allocate,
//! because the formatting machinery byte by byte cost a third of a session.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

/// Bytes dumped on a parse error, whatever the log level.
pub const ERROR_DUMP_LIMIT: usize = 512;

/// An `xxd`-like dump: `00000000: 1603 0102 ...  ascii`, 16 bytes a line, at most `limit` bytes.
pub struct HexDump<'a> {
    bytes: &'a [u8],
    limit: usize,
}

impl<'a> HexDump<'a> {
    /// Dumps at most `limit` bytes of `bytes`; a last line says how many were left out.
    pub fn new(bytes: &'a [u8], limit: usize) -> Self {
        HexDump { bytes, limit }
    }
}

impl fmt::Display for HexDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self
            .bytes
            .get(..self.bytes.len().min(self.limit))
            .unwrap_or(self.bytes);
        for (i, line) in shown.chunks(16).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{:08x}:", i * 16)?;
            for j in 0..16 {
                if j % 2 == 0 {
                    f.write_str(" ")?;
                }
                match line.get(j) {
                    Some(b) => write!(f, "{b:02x}")?,
                    None => f.write_str("  ")?,
                }
            }
            f.write_str("  ")?;
            for &b in line {
                let c = if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                };
                write!(f, "{c}")?;
            }
        }
        let hidden = self.bytes.len() - shown.len();
        if hidden > 0 {
            if !shown.is_empty() {
                f.write_str("\n")?;
            }
            write!(f, "... {hidden} more bytes not shown")?;
        }
        Ok(())
    }
}

/// How a log message says a new line begins: written alone (the logger notices it so,
/// without looking through every message for one).
pub use crate::logger::LINE_BREAK;

/// A dump as log records, for a log line to end with: each row of 16 bytes on a line of its
/// own, `dump sid=1 of=first_bytes offset=0000 hex="1603 0100 ..." ascii="......."` (xxd's
/// columns as logfmt values, the hex padded so that the ASCII column lines up), and
/// `dump sid=1 of=... offset=0200 not_shown=N` for what the limit left out. Each row starts
/// with a [`LINE_BREAK`] written alone; the logger gives each line its prefix, and the one
/// log call keeps the rows together.
pub struct DumpRows<'a> {
    sid: u64,
    of: &'static str,
    bytes: &'a [u8],
    limit: usize,
}

impl<'a> DumpRows<'a> {
    /// At most `limit` bytes of `bytes`, session `sid`'s `of` (`first_bytes`, `client_hello`,
    /// ...: a token).
    pub fn new(sid: u64, of: &'static str, bytes: &'a [u8], limit: usize) -> Self {
        DumpRows {
            sid,
            of,
            bytes,
            limit,
        }
    }
}

impl fmt::Display for DumpRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self
            .bytes
            .get(..self.bytes.len().min(self.limit))
            .unwrap_or(self.bytes);
        for (i, row) in shown.chunks(16).enumerate() {
            f.write_str(LINE_BREAK)?;
            write!(
                f,
                "dump sid={} of={} offset={:04x} hex=\"",
                self.sid,
                self.of,
                i * 16
            )?;
            for j in 0..16 {
                if j % 2 == 0 && j > 0 {
                    f.write_str(" ")?;
                }
                match row.get(j) {
                    Some(b) => write!(f, "{b:02x}")?,
                    None => f.write_str("  ")?,
                }
            }
            f.write_str("\" ascii=")?;
            let mut ascii = [b'.'; 16];
            for (a, &b) in ascii.iter_mut().zip(row) {
                if b.is_ascii_graphic() || b == b' ' {
                    *a = b;
                }
            }
            crate::logfmt::write_value(f, ascii.get(..row.len()).unwrap_or_default())?;
        }
        let hidden = self.bytes.len() - shown.len();
        if hidden > 0 {
            f.write_str(LINE_BREAK)?;
            write!(
                f,
                "dump sid={} of={} offset={:04x} not_shown={hidden}",
                self.sid,
                self.of,
                shown.len()
            )?;
        }
        Ok(())
    }
}

/// Bytes shown as text: printable ASCII as is, `\\` doubled, anything else as `\xNN`.
/// At most `MAX` input bytes are shown, then `...`.
pub struct Escaped<'a>(pub &'a [u8]);

impl Escaped<'_> {
    const MAX: usize = 256;
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.get(..Self::MAX).unwrap_or(self.0);
        while !rest.is_empty() {
            // a run of bytes shown as they are, in one write
            let plain = rest
                .iter()
                .position(|&b| !shown_as_is(b))
                .unwrap_or(rest.len());
            let Some((run, tail)) = rest.split_at_checked(plain) else {
                break;
            };
            if let Ok(text) = std::str::from_utf8(run) {
                if !text.is_empty() {
                    f.write_str(text)?;
                }
            }
            let Some((&b, tail)) = tail.split_first() else {
                break;
            };
            if b == b'\\' {
                f.write_str("\\\\")?;
            } else {
                let esc = [b'\\', b'x', hex_digit(b >> 4), hex_digit(b & 0xf)];
                f.write_str(std::str::from_utf8(&esc).unwrap_or("\\x??"))?;
            }
            rest = tail;
        }
        if self.0.len() > Self::MAX {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Printable ASCII but the backslash, which [`Escaped`] doubles.
fn shown_as_is(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'\\'
}

fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'a' + (n & 0xf) - 10,
    }
}

/// An address as log lines show it: `ip:port` (IPv6 as `[ip]:port`), or `-` when there is
/// none; the same text as `SocketAddr`'s `Display`. IPv4, the common case, is written
/// digit by digit into a stack buffer and out in one `write_str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address(pub Option<SocketAddr>);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(SocketAddr::V4(a)) => {
                let mut text = Digits::new();
                write_v4(&mut text, &a);
                f.write_str(text.as_str())
            }
            Some(a @ SocketAddr::V6(_)) => fmt::Display::fmt(&a, f),
        }
    }
}

impl Address {
    /// The same text into a logfmt line's pieces (the close line's way, without `fmt`).
    pub fn push_to<O: crate::logfmt::Out + ?Sized>(&self, out: &mut O) -> fmt::Result {
        match self.0 {
            None => out.push(b"-"),
            Some(SocketAddr::V4(a)) => {
                let mut text = Digits::new();
                write_v4(&mut text, &a);
                out.push(text.buf.get(..text.len).unwrap_or_default())
            }
            Some(a @ SocketAddr::V6(_)) => out.push(a.to_string().as_bytes()),
        }
    }
}

fn write_v4(out: &mut Digits, a: &SocketAddrV4) {
    for (i, octet) in a.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.decimal(u32::from(octet));
    }
    out.push(b':');
    out.decimal(u32::from(a.port()));
}

/// `255.255.255.255:65535` at most.
struct Digits {
    buf: [u8; 21],
    len: usize,
}

impl Digits {
    fn new() -> Digits {
        Digits {
            buf: [0; 21],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn decimal(&mut self, v: u32) {
        let mut digits = [0u8; 20];
        let at = crate::logfmt::decimal(u64::from(v), &mut digits);
        let digits = digits.get(at..).unwrap_or_default();
        if let Some(dst) = self.buf.get_mut(self.len..self.len + digits.len()) {
            dst.copy_from_slice(digits);
            self.len += digits.len();
        }
    }

    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// Lower-case hex, no separators, as in `proxy.tlv.unique_id=`.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_matches_xxd_layout() {
        let bytes: Vec<u8> = (0u8..20).chain(*b"AB\r\n").collect();
        let s = HexDump::new(&bytes, 1024).to_string();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................"
        );
        assert_eq!(
            lines[1],
            "00000010: 1011 1213 4142 0d0a                      ....AB.."
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn dump_is_bounded() {
        let bytes = [0x41u8; 100];
        let s = HexDump::new(&bytes, 32).to_string();
        assert_eq!(s.lines().count(), 3);
        assert!(s.ends_with("... 68 more bytes not shown"));
        assert_eq!(HexDump::new(&[], 16).to_string(), "");
    }

    #[test]
    fn dump_rows_are_records_with_xxd_columns() {
        let bytes: Vec<u8> = (0u8..20).chain(*b"A \"\\").collect();
        let s = DumpRows::new(7, "first_bytes", &bytes, 1024).to_string();
        assert_eq!(
            s,
            "\ndump sid=7 of=first_bytes offset=0000 hex=\"0001 0203 0405 0607 0809 0a0b 0c0d 0e0f\" ascii=................\
             \ndump sid=7 of=first_bytes offset=0010 hex=\"1011 1213 4120 225c                    \" ascii=\"....A \\\"\\\\\""
        );
        let s = DumpRows::new(1, "x", &[0x41; 40], 32).to_string();
        assert!(
            s.ends_with("\ndump sid=1 of=x offset=0020 not_shown=8"),
            "{s}"
        );
        assert_eq!(DumpRows::new(1, "x", &[], 16).to_string(), "");
    }

    #[test]
    fn escaped_never_passes_control_bytes() {
        let s = Escaped(b"ok\r\nX-Evil: 1\0\x1b[31m\\\xff").to_string();
        assert_eq!(s, "ok\\x0d\\x0aX-Evil: 1\\x00\\x1b[31m\\\\\\xff");
        assert!(!s.bytes().any(|b| b.is_ascii_control()));
        let long = [b'a'; 300];
        assert_eq!(Escaped(&long).to_string().len(), 259);
    }

    /// The old way, a `write!` per byte: the bytes must stay the same.
    fn escaped_before(bytes: &[u8]) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for &b in bytes.iter().take(256) {
            match b {
                b'\\' => s.push_str("\\\\"),
                b' '..=b'~' => s.push(b as char),
                _ => write!(s, "\\x{b:02x}").unwrap(),
            }
        }
        if bytes.len() > 256 {
            s.push_str("...");
        }
        s
    }

    #[test]
    fn escaped_shows_every_byte_as_before() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut cases: Vec<Vec<u8>> = vec![
            all.clone(),
            all.iter().rev().copied().collect(),
            b"example.test".to_vec(),
            b"\\\\a\\".to_vec(),
            b"".to_vec(),
            [b'z'; 256].to_vec(),
            [b'z'; 257].to_vec(),
            [b'\xff'; 300].to_vec(),
        ];
        let mut seed = 7u32;
        for len in 0..300 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            cases.push(
                (0..len)
                    .map(|i| ((seed >> (i % 24)) as u8) & 0x7f)
                    .collect(),
            );
        }
        for c in cases {
            assert_eq!(Escaped(&c).to_string(), escaped_before(&c), "{c:?}");
        }
    }

    #[test]
    fn addresses_show_as_std_shows_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:35200",
            "255.255.255.255:65535",
            "10.0.200.9:80",
            "1.20.100.0:10000",
            "[::1]:443",
            "[2001:db8::7]:8443",
            "[::ffff:10.0.0.1]:1",
            "[fe80::1%2]:22",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(Address(Some(addr)).to_string(), addr.to_string());
        }
        assert_eq!(Address(None).to_string(), "-");
        for port in [0u16, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535] {
            for octet in [0u8, 1, 9, 10, 99, 100, 199, 255] {
                let addr = SocketAddr::from(([octet, 0, octet, 7], port));
                assert_eq!(Address(Some(addr)).to_string(), addr.to_string());
            }
        }
    }
}
