//! Fixed-size byte buffers with read/write cursors, and the pool that lends them.
//!
//! A session holds a buffer for a direction only while that direction has bytes in flight;
//! an idle session holds none, which keeps idle sessions cheap. The pool never grows past its
//! limit: when it is exhausted the caller refuses work and counts it, it does not allocate.

/// A fixed-capacity buffer: bytes in `start..end` are filled and not yet consumed.
pub struct Buffer {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buffer {
    /// The bytes waiting to be written out.
    pub fn data(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or(&[])
    }

    /// Free space at the end, to read into. Compacts first if that makes room.
    pub fn space(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data.get_mut(self.end..).unwrap_or(&mut [])
    }

    /// Marks `n` bytes of [`Buffer::space`] as filled.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Marks `n` bytes of [`Buffer::data`] as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when no bytes wait.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no more bytes can be read in.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
}

/// Lends buffers of one size; keeps returned ones for reuse, up to `keep`.
pub struct Pool {
    size: usize,
    free: Vec<Box<[u8]>>,
    keep: usize,
    limit: usize,
    lent: usize,
}

impl Pool {
    /// A pool of `size`-byte buffers, at most `limit` lent at once, at most `keep` kept idle.
    pub fn new(size: usize, limit: usize, keep: usize) -> Pool {
        Pool {
            size,
            free: Vec::new(),
            keep,
            limit,
            lent: 0,
        }
    }

    /// A buffer, or `None` when `limit` are already lent.
    pub fn take(&mut self) -> Option<Buffer> {
        if self.lent >= self.limit {
            return None;
        }
        self.lent += 1;
        let data = self
            .free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        Some(Buffer {
            data,
            start: 0,
            end: 0,
        })
    }

    /// Gives a buffer back. Buffers of another size (after a reload) are dropped.
    pub fn give(&mut self, buf: Buffer) {
        self.lent = self.lent.saturating_sub(1);
        if buf.data.len() == self.size && self.free.len() < self.keep {
            self.free.push(buf.data);
        }
    }

    /// Takes a new size and limit (after a reload). Lent buffers of the old size are dropped
    /// when given back; idle ones of the old size are dropped now.
    pub fn reconfigure(&mut self, size: usize, limit: usize) {
        if size != self.size {
            self.free.clear();
            self.size = size;
        }
        self.limit = limit;
    }

    /// Buffers lent right now.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// The buffer size.
    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_compaction() {
        let mut pool = Pool::new(8, 2, 1);
        let mut b = pool.take().unwrap();
        b.space()[..6].copy_from_slice(b"abcdef");
        b.filled(6);
        b.consume(4);
        assert_eq!(b.data(), b"ef");
        assert_eq!(b.space().len(), 2);
        b.space()[..2].copy_from_slice(b"gh");
        b.filled(2);
        // full at the end: space() compacts, leaving room for 4 more
        assert_eq!(b.space().len(), 4);
        assert_eq!(b.data(), b"efgh");
        b.consume(4);
        assert!(b.is_empty());
        assert_eq!(b.space().len(), 8);
        pool.give(b);
    }

    #[test]
    fn pool_is_bounded() {
        let mut pool = Pool::new(4, 2, 1);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(pool.take().is_none());
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.lent(), 0);
        assert!(pool.take().is_some());
    }
}
