//! A bounds-checked write cursor over a caller's buffer, shared by the emitters.
//!
//! Every write either fits whole or fails with [`BufferTooSmall`]; each emitter's error type
//! converts from it, so `?` works in emitters. Never panics, never allocates.

/// The output buffer is too small for what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

/// A write position in a caller's buffer.
pub struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Out<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Out { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Appends `bytes`, whole or not at all.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Appends each part in turn.
    pub fn put_all(&mut self, parts: &[&[u8]]) -> Result<(), BufferTooSmall> {
        parts.iter().try_for_each(|p| self.put(p))
    }

    /// What has been written.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or(&[])
    }

    /// What has been written, to patch in place (a checksum computed over the whole).
    pub fn written_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(..self.pos).unwrap_or(&mut [])
    }
}

/// Text formatting straight into the output buffer (for v1), without allocating.
impl core::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}
