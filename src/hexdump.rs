//! How bytes from the wire are shown to people: an `xxd`-style dump and an escaped string.
//!
//! Both are `Display` adapters, so nothing is formatted unless a log line is emitted, and
//! both are bounded: a hostile peer cannot make a log line grow without limit, and no byte
//! from the wire reaches a log line unescaped (no CR, LF, NUL, escape sequences, non-ASCII).

use std::fmt;

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

/// Bytes shown as text: printable ASCII as is, `\\` doubled, anything else as `\xNN`.
/// At most `MAX` input bytes are shown, then `...`.
pub struct Escaped<'a>(pub &'a [u8]);

impl Escaped<'_> {
    const MAX: usize = 256;
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.iter().take(Self::MAX) {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b' '..=b'~' => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        if self.0.len() > Self::MAX {
            f.write_str("...")?;
        }
        Ok(())
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
    fn escaped_never_passes_control_bytes() {
        let s = Escaped(b"ok\r\nX-Evil: 1\0\x1b[31m\\\xff").to_string();
        assert_eq!(s, "ok\\x0d\\x0aX-Evil: 1\\x00\\x1b[31m\\\\\\xff");
        assert!(!s.bytes().any(|b| b.is_ascii_control()));
        let long = [b'a'; 300];
        assert_eq!(Escaped(&long).to_string().len(), 259);
    }
}
