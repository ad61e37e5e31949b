//! How a log line's message is written: logfmt. Free words first (what happened), then only
//! `key=value` pairs, one space between any two; no line holds anything else, so that any
//! logfmt parser (Loki, Vector, go-logfmt, ...) reads every line whole.
//!
//! [`write_value`] is the one rule for a value, and every value in a log line goes through
//! it (or is a number, an address or a token that cannot need it):
//!
//! * bare when it is not empty and every byte is printable ASCII other than space, `"`,
//!   `=` and `\`;
//! * otherwise quoted, `"..."`, with `\"` and `\\`, `\n`, `\r`, `\t`, and every other byte
//!   outside printable ASCII as `\u00XX` (the byte's value: JSON's escapes, which go-logfmt
//!   and Loki decode; a byte above 0x7f reads back as the character of the same number);
//! * at most [`MAX_VALUE`] bytes, then `...` inside the quotes.
//!
//! So no byte from the wire reaches a line unescaped, and a line is printable ASCII only.
//!
//! The close line runs this for every session: deciding "bare" is one pass over the bytes and
//! a bare value is one `write_str`; nothing here allocates but [`Shown`], which formats an
//! arbitrary `Display` (an error) first and is for lines that are not per session.
//! Never does I/O.

use std::fmt;

/// Bytes of a value shown at most; longer values end in `...` (inside the quotes).
pub const MAX_VALUE: usize = 512;

/// True for a byte that may stand in a bare value or a free word: printable ASCII but space,
/// `"`, `=` and `\`.
#[inline]
pub fn is_bare(b: u8) -> bool {
    matches!(b, b'!'..=b'~') && b != b'"' && b != b'=' && b != b'\\'
}

/// Writes `bytes` as a logfmt value: bare when it can be, else quoted and escaped (see the
/// module's header for the rule).
#[inline]
pub fn write_value<W: fmt::Write + ?Sized>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    if !bytes.is_empty() && bytes.len() <= MAX_VALUE && bytes.iter().all(|&b| is_bare(b)) {
        return w.write_str(std::str::from_utf8(bytes).unwrap_or("?"));
    }
    write_quoted(w, bytes)
}

/// Printable ASCII that stands as itself inside quotes.
fn plain_in_quotes(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'"' && b != b'\\'
}

#[cold]
fn write_quoted<W: fmt::Write + ?Sized>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = bytes.get(..MAX_VALUE).unwrap_or(bytes);
    w.write_char('"')?;
    while !rest.is_empty() {
        let plain = rest
            .iter()
            .position(|&b| !plain_in_quotes(b))
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        if !run.is_empty() {
            w.write_str(std::str::from_utf8(run).unwrap_or("?"))?;
        }
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => w.write_str("\\\"")?,
            b'\\' => w.write_str("\\\\")?,
            b'\n' => w.write_str("\\n")?,
            b'\r' => w.write_str("\\r")?,
            b'\t' => w.write_str("\\t")?,
            _ => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                let esc = [b'\\', b'u', b'0', b'0', hi, lo];
                w.write_str(std::str::from_utf8(&esc).unwrap_or("?"))?;
            }
        }
        rest = tail;
    }
    if bytes.len() > MAX_VALUE {
        w.write_str("...")?;
    }
    w.write_char('"')
}

/// Bytes as a logfmt value (`""` when empty).
#[derive(Clone, Copy)]
pub struct Value<'a>(pub &'a [u8]);

impl<'a> Value<'a> {
    /// A string as a logfmt value.
    pub fn str(s: &'a str) -> Value<'a> {
        Value(s.as_bytes())
    }
}

impl fmt::Display for Value<'_> {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value(f, self.0)
    }
}

/// Bytes as a logfmt value, `-` when there are none (a name the session never learned):
/// every line of a kind then has the same keys.
#[derive(Clone, Copy)]
pub struct OrDash<'a>(pub &'a [u8]);

impl fmt::Display for OrDash<'_> {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            write_value(f, self.0)
        }
    }
}

/// Anything `Display` (an error, a path, a status) as a logfmt value: its text is made
/// first, then written by the rule. Allocates: for lines that are not per session.
pub struct Shown<T>(pub T);

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value(f, self.0.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> String {
        Value(b).to_string()
    }

    #[test]
    fn bare_when_it_can_be() {
        assert_eq!(v(b"example.test"), "example.test");
        assert_eq!(v(b"127.0.0.1:443"), "127.0.0.1:443");
        assert_eq!(v(b"[::1]:443"), "[::1]:443");
        assert_eq!(v(b"h2,http/1.1"), "h2,http/1.1");
        assert_eq!(v(b"-"), "-");
    }

    #[test]
    fn quoted_and_escaped_otherwise() {
        assert_eq!(v(b""), "\"\"");
        assert_eq!(v(b"two words"), "\"two words\"");
        assert_eq!(v(b"a=b"), "\"a=b\"");
        assert_eq!(v(b"say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(v(b"back\\slash"), "\"back\\\\slash\"");
        assert_eq!(v(b"l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
        assert_eq!(
            v(b"\x00\x1b[31m\x7f\xff"),
            "\"\\u0000\\u001b[31m\\u007f\\u00ff\""
        );
        assert_eq!(
            v("café".as_bytes()),
            "\"caf\\u00c3\\u00a9\"",
            "non-ASCII, byte by byte"
        );
    }

    #[test]
    fn every_byte_comes_out_printable_and_reads_back() {
        let all: Vec<u8> = (0..=255u8).collect();
        let s = v(&all);
        assert!(s.bytes().all(|b| (b' '..=b'~').contains(&b)), "{s}");
        assert_eq!(unquote(&s), all);
        for b in 0..=255u8 {
            let s = v(&[b]);
            assert!(s.bytes().all(|b| (b' '..=b'~').contains(&b)), "{s}");
            assert_eq!(unquote(&s), vec![b], "{s}");
        }
    }

    /// The reverse of the rule, for the tests (tests/util has the strict parser).
    fn unquote(s: &str) -> Vec<u8> {
        let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
            return s.as_bytes().to_vec();
        };
        let mut out = Vec::new();
        let mut it = inner.bytes();
        while let Some(b) = it.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match it.next().unwrap() {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let hex: Vec<u8> = (0..4).map(|_| it.next().unwrap()).collect();
                    let n = u32::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap();
                    out.push(u8::try_from(n).unwrap());
                }
                other => out.push(other),
            }
        }
        out
    }

    #[test]
    fn long_values_are_cut_inside_the_quotes() {
        let long = [b'a'; MAX_VALUE + 10];
        let s = v(&long);
        assert_eq!(s.len(), MAX_VALUE + 5);
        assert!(s.starts_with("\"aaa") && s.ends_with("a...\""));
        assert_eq!(v(&long[..MAX_VALUE]), "a".repeat(MAX_VALUE));
    }

    #[test]
    fn dash_for_nothing_and_shown_for_any_display() {
        assert_eq!(OrDash(b"").to_string(), "-");
        assert_eq!(OrDash(b"a b").to_string(), "\"a b\"");
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Shown(&e).to_string(), "\"connection refused\"");
        assert_eq!(Shown(42).to_string(), "42");
    }
}
