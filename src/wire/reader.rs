//! A bounded cursor over untrusted bytes, in the manner of rustls' `codec::Reader`.
//!
//! Every accessor returns `None` instead of reading past the end, so a length taken from
//! the wire can be used directly: `take(len)` either yields exactly `len` bytes or nothing.
//! It must never panic and never allocate.

/// A read position over a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Consumes and returns exactly `n` bytes, or `None` (and consumes nothing) if fewer are left.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Consumes `n` bytes and returns a reader over just them.
    pub fn sub(&mut self, n: usize) -> Option<Reader<'a>> {
        self.take(n).map(Reader::new)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    /// A big-endian 24-bit integer.
    pub fn u24(&mut self) -> Option<u32> {
        let b = self.take(3)?;
        Some(u32::from_be_bytes([0, *b.first()?, *b.get(1)?, *b.get(2)?]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([
            *b.first()?,
            *b.get(1)?,
            *b.get(2)?,
            *b.get(3)?,
        ]))
    }

    /// A vector with a one-byte length prefix, as a sub-reader.
    pub fn vec_u8(&mut self) -> Option<Reader<'a>> {
        let n = self.u8()?;
        self.sub(usize::from(n))
    }

    /// A vector with a two-byte length prefix, as a sub-reader.
    pub fn vec_u16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()?;
        self.sub(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_past_end_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take(4), None);
        assert_eq!(r.pos(), 0);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert!(r.is_empty());
        assert_eq!(r.take(usize::MAX), None);
    }

    #[test]
    fn vectors_are_bounded_by_their_prefix() {
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 0xcc]);
        let mut v = r.vec_u16().unwrap();
        assert_eq!(v.take(2), Some(&[0xaa, 0xbb][..]));
        assert!(v.is_empty());
        assert_eq!(r.rest(), &[0xcc]);
        let mut r = Reader::new(&[5, 1]);
        assert!(r.vec_u8().is_none());
    }
}
