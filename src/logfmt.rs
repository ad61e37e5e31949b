//! How a log line's message is written: logfmt. Free words first (what happened), then only
//! `key=value` pairs, one space between any two; no line holds anything else, so that any
//! logfmt parser (Loki, Vector, go-logfmt, ...) reads every line whole.
//!
//! [`push_value`] is the one rule for a value ([`write_value`] and the adapters below go
//! through it), and every value in a log line goes through it (or is a number, an address
//! or a token that cannot need it):
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
//! The close line runs this for every session: deciding "bare" is one pass over the bytes,
//! and its pieces go through [`Buffered`] (one UTF-8 check and one `write_str` a line);
//! nothing here allocates but [`Shown`], which formats an arbitrary `Display` (an error)
//! first and is for lines that are not per session.
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

/// True when `bytes` may be written bare.
#[inline]
fn bare(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_VALUE && bytes.iter().all(|&b| is_bare(b))
}

/// Where the rule writes: pieces that are ASCII (or whole UTF-8) by construction.
pub trait Out {
    /// Appends `bytes`.
    fn push(&mut self, bytes: &[u8]) -> fmt::Result;
}

/// Writes `bytes` as a logfmt value into `out`: bare when it can be, else quoted and escaped
/// (see the module's header for the rule). The one place the rule is written.
#[inline]
pub fn push_value<O: Out + ?Sized>(out: &mut O, bytes: &[u8]) -> fmt::Result {
    if bare(bytes) {
        return out.push(bytes);
    }
    push_quoted(out, bytes)
}

/// [`push_value`], or `-` when `bytes` is empty.
#[inline]
pub fn push_or_dash<O: Out + ?Sized>(out: &mut O, bytes: &[u8]) -> fmt::Result {
    if bytes.is_empty() {
        return out.push(b"-");
    }
    push_value(out, bytes)
}

/// `00` to `99`, two digits a number: decimals are made two digits at a time.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// `n` in decimal at the end of `buf`; returns where it starts. Without the formatting
/// machinery (the close line has four numbers and two addresses).
#[inline]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        if let (Some(dst), Some(src)) = (buf.get_mut(at..at + 2), PAIRS.get(pair..pair + 2)) {
            dst.copy_from_slice(src);
        }
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        if let (Some(dst), Some(src)) = (buf.get_mut(at..at + 2), PAIRS.get(pair..pair + 2)) {
            dst.copy_from_slice(src);
        }
    } else {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + n as u8;
        }
    }
    at
}

/// A number in decimal, without the formatting machinery.
#[inline]
pub fn push_u64<O: Out + ?Sized>(out: &mut O, n: u64) -> fmt::Result {
    let mut buf = [0u8; 20];
    let at = decimal(n, &mut buf);
    out.push(buf.get(at..).unwrap_or_default())
}

/// Writes `bytes` as a logfmt value through `fmt` (see [`push_value`]).
#[inline]
pub fn write_value<W: fmt::Write + ?Sized>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    if bare(bytes) {
        return w.write_str(std::str::from_utf8(bytes).unwrap_or("?"));
    }
    let mut out = Buffered::new(w);
    push_quoted(&mut out, bytes)?;
    out.finish()
}

/// Printable ASCII that stands as itself inside quotes.
fn plain_in_quotes(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'"' && b != b'\\'
}

#[cold]
fn push_quoted<O: Out + ?Sized>(out: &mut O, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = bytes.get(..MAX_VALUE).unwrap_or(bytes);
    out.push(b"\"")?;
    while !rest.is_empty() {
        let plain = rest
            .iter()
            .position(|&b| !plain_in_quotes(b))
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        if !run.is_empty() {
            out.push(run)?;
        }
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => out.push(b"\\\"")?,
            b'\\' => out.push(b"\\\\")?,
            b'\n' => out.push(b"\\n")?,
            b'\r' => out.push(b"\\r")?,
            b'\t' => out.push(b"\\t")?,
            _ => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                out.push(&[b'\\', b'u', b'0', b'0', hi, lo])?;
            }
        }
        rest = tail;
    }
    if bytes.len() > MAX_VALUE {
        out.push(b"...")?;
    }
    out.push(b"\"")
}

/// Bytes of a [`Buffered`]'s buffer.
const BUFFERED: usize = 512;

/// Pieces gathered on the stack and handed to a `fmt::Write` a buffer at a time: a line
/// made of many small pieces (the close line) costs one UTF-8 check and one `write_str`
/// instead of one of each a piece. A piece is never split (pieces are whole UTF-8).
pub struct Buffered<'w, W: fmt::Write + ?Sized> {
    w: &'w mut W,
    buf: [u8; BUFFERED],
    len: usize,
}

impl<'w, W: fmt::Write + ?Sized> Buffered<'w, W> {
    /// Empty, in front of `w`.
    pub fn new(w: &'w mut W) -> Self {
        Buffered {
            w,
            buf: [0; BUFFERED],
            len: 0,
        }
    }

    fn flush(&mut self) -> fmt::Result {
        if self.len > 0 {
            let held = self.buf.get(..self.len).unwrap_or_default();
            self.len = 0;
            self.w.write_str(std::str::from_utf8(held).unwrap_or("?"))?;
        }
        Ok(())
    }

    /// Hands what is held on.
    pub fn finish(mut self) -> fmt::Result {
        self.flush()
    }

    /// [`Out::push`] of a piece whose length is known when compiling (a key and its `=`):
    /// copied without a call.
    #[inline]
    pub fn put<const N: usize>(&mut self, bytes: &[u8; N]) -> fmt::Result {
        match self.buf.get_mut(self.len..self.len + N) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += N;
                Ok(())
            }
            None => self.push(bytes),
        }
    }
}

impl<W: fmt::Write + ?Sized> Out for Buffered<'_, W> {
    #[inline]
    fn push(&mut self, bytes: &[u8]) -> fmt::Result {
        if self.len + bytes.len() > BUFFERED {
            self.flush()?;
            if bytes.len() > BUFFERED {
                return self.w.write_str(std::str::from_utf8(bytes).unwrap_or("?"));
            }
        }
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl<W: fmt::Write + ?Sized> fmt::Write for Buffered<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes())
    }
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
    fn numbers_and_many_pieces_through_the_buffer() {
        let mut s = String::new();
        let mut out = Buffered::new(&mut s);
        for n in [0u64, 7, 10, 99, 100, 101, 999, 1000, 1234567890, u64::MAX] {
            push_u64(&mut out, n).unwrap();
            out.push(b" ").unwrap();
        }
        for _ in 0..100 {
            push_value(&mut out, b"0123456789").unwrap();
        }
        push_or_dash(&mut out, b"").unwrap();
        for n in 0..100_000u64 {
            let mut buf = [0u8; 20];
            let at = decimal(n, &mut buf);
            assert_eq!(&buf[at..], n.to_string().as_bytes());
        }
        out.push(&[b'x'; 600]).unwrap();
        out.finish().unwrap();
        let expect = format!(
            "0 7 10 99 100 101 999 1000 1234567890 {} {}-{}",
            u64::MAX,
            "0123456789".repeat(100),
            "x".repeat(600)
        );
        assert_eq!(s, expect);
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
