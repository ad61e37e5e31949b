//! The bounded buffer of whole lines between the code that logs and the sink.
//!
//! [`Pending`] takes lines (any thread, under the logger's lock: a bounds check and a copy);
//! a line that does not fit whole is dropped and counted, never cut. The flush swaps the
//! pending lines into a [`Batch`] and writes it in chunks of whole records. A record is what
//! one log call produced; it may hold several lines (a hex dump's rows), and it is never
//! split between writes unless it alone is larger than a write may be (then at a line's end).
//!
//! Never does I/O, never allocates once both buffers have their capacity.

use std::mem;

/// The bytes of lines waiting for the flush, bounded.
pub struct Pending {
    buf: Vec<u8>,
    /// Where each record ends in `buf`.
    ends: Vec<usize>,
    capacity: usize,
    /// Lines dropped since the last [`Pending::take`] because the buffer was full.
    dropped: u64,
}

impl Pending {
    /// Empty, holding at most `capacity` bytes (memory is taken by [`Pending::reserve`] or
    /// as lines come).
    pub const fn new(capacity: usize) -> Pending {
        Pending {
            buf: Vec::new(),
            ends: Vec::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Takes the whole capacity now, so that pushing never allocates; returns it.
    pub fn reserve(&mut self) -> usize {
        self.buf
            .reserve_exact(self.capacity.saturating_sub(self.buf.len()));
        self.capacity
    }

    /// Sets the bound; lines already held stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Appends one whole record; false (and counted) when it does not fit. Once a record
    /// has been dropped, every one is until the next take, even a shorter one that would
    /// fit: the gap stays at the end, where the take marks it.
    pub fn push(&mut self, record: &[u8]) -> bool {
        if self.dropped > 0 || self.buf.len() + record.len() > self.capacity {
            self.dropped += 1;
            return false;
        }
        self.buf.extend_from_slice(record);
        self.ends.push(self.buf.len());
        true
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Lines dropped since the last take.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Moves every pending record to the end of `batch` (which the caller has written out
    /// or cleared); returns how many lines were dropped since the last take, so that the
    /// caller can mark the gap right after them.
    pub fn take(&mut self, batch: &mut Batch) -> u64 {
        if batch.is_empty() {
            batch.clear();
            mem::swap(&mut self.buf, &mut batch.buf);
            mem::swap(&mut self.ends, &mut batch.ends);
        } else {
            let base = batch.buf.len();
            batch.buf.extend_from_slice(&self.buf);
            batch.ends.extend(self.ends.iter().map(|e| e + base));
        }
        self.buf.clear();
        self.ends.clear();
        mem::take(&mut self.dropped)
    }
}

/// Records on their way to the sink: written front to back, a write at a time. Some of them
/// may be markers (`log lines dropped lines=N`): a marker given up on is not a lost line; the
/// lines it reported are handed back to be reported again.
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Bytes already written.
    pos: usize,
    /// Index in `ends` of the first record not wholly written.
    rec: usize,
    /// The markers not yet written: (record index, lines it reports).
    marks: Vec<(usize, u64)>,
    /// Lines given up on (too large for the sink, or the sink failed) since last asked.
    lost: u64,
    /// Lines whose marker was given up on since last asked.
    unreported: u64,
}

impl Batch {
    /// Empty.
    pub const fn new() -> Batch {
        Batch {
            buf: Vec::new(),
            ends: Vec::new(),
            pos: 0,
            rec: 0,
            marks: Vec::new(),
            lost: 0,
            unreported: 0,
        }
    }

    /// True when every record has been written.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Room for `bytes` (the pending buffer's capacity: the two are swapped).
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve_exact(bytes.saturating_sub(self.buf.len()));
    }

    /// Forgets everything, written or not (keeps the memory).
    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.marks.clear();
        self.pos = 0;
        self.rec = 0;
    }

    /// Appends a marker reporting `lines` dropped lines, after every record held.
    pub fn push_marker(&mut self, record: &[u8], lines: u64) {
        if self.is_empty() {
            self.clear();
        }
        self.buf.extend_from_slice(record);
        self.ends.push(self.buf.len());
        self.marks.push((self.ends.len() - 1, lines));
    }

    /// Inserts a marker reporting `lines` dropped lines before the records not yet begun.
    pub fn insert_marker(&mut self, record: &[u8], lines: u64) {
        if self.is_empty() {
            return self.push_marker(record, lines);
        }
        let i = if self.pos > self.record_start() {
            self.rec + 1
        } else {
            self.rec
        };
        let at = match i {
            0 => 0,
            i => self.ends.get(i - 1).copied().unwrap_or(self.buf.len()),
        };
        self.buf.splice(at..at, record.iter().copied());
        for e in self.ends.iter_mut().skip(i) {
            *e += record.len();
        }
        self.ends.insert(i.min(self.ends.len()), at + record.len());
        for m in self.marks.iter_mut().filter(|m| m.0 >= i) {
            m.0 += 1;
        }
        self.marks.push((i, lines));
    }

    /// The next write: whole records from the current position (or the rest of one a short
    /// write cut), at most `max` bytes; of a record larger than `max` (a long dump), its
    /// whole lines up to `max` (a line larger than `max` alone), so that writers sharing a
    /// pipe interleave whole lines at worst.
    pub fn chunk(&self, max: usize) -> &[u8] {
        let mut end = self.ends.get(self.rec).copied().unwrap_or(self.pos);
        if end - self.pos <= max {
            for &next in self.ends.iter().skip(self.rec + 1) {
                if next - self.pos > max {
                    break;
                }
                end = next;
            }
        } else if let Some(rest) = self.buf.get(self.pos..end) {
            let within = rest.get(..max).unwrap_or(rest);
            let line_end = match within.iter().rposition(|&b| b == b'\n') {
                Some(last) => Some(last),
                None => rest.iter().position(|&b| b == b'\n'), // one line over max: alone
            };
            if let Some(last) = line_end {
                end = self.pos + last + 1;
            }
        }
        self.buf.get(self.pos..end).unwrap_or_default()
    }

    /// The rest of the current record.
    pub fn record(&self) -> Option<&[u8]> {
        let end = *self.ends.get(self.rec)?;
        self.buf.get(self.pos..end)
    }

    /// Marks `n` bytes written.
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        while self.ends.get(self.rec).is_some_and(|&e| e <= self.pos) {
            self.rec += 1;
        }
        if !self.marks.is_empty() {
            let rec = self.rec;
            self.marks.retain(|m| m.0 >= rec);
        }
    }

    fn record_start(&self) -> usize {
        match self.rec {
            0 => 0,
            r => self.ends.get(r - 1).copied().unwrap_or(0),
        }
    }

    fn give_up(&mut self, index: usize) {
        match self.marks.iter().position(|m| m.0 == index) {
            Some(p) => self.unreported += self.marks.swap_remove(p).1,
            None => self.lost += 1,
        }
    }

    /// Gives up on the current record (counted in [`Batch::take_lost`]).
    pub fn skip_record(&mut self) {
        if let Some(&end) = self.ends.get(self.rec) {
            self.give_up(self.rec);
            self.advance(end - self.pos);
        }
    }

    /// Gives up on what is left of a record a short write cut, so that the next write
    /// starts on a line (a new sink must not begin with half a line).
    pub fn skip_partial(&mut self) {
        if self.pos > self.record_start() {
            self.skip_record();
        }
    }

    /// Gives up on every record left.
    pub fn skip_all(&mut self) {
        for i in self.rec..self.ends.len() {
            self.give_up(i);
        }
        self.advance(self.buf.len());
    }

    /// Records not (wholly) written yet, markers included.
    pub fn records_left(&self) -> usize {
        self.ends.len().saturating_sub(self.rec)
    }

    /// Lines given up on since the last call, and lines whose marker was given up on (to
    /// be reported by another).
    pub fn take_lost(&mut self) -> (u64, u64) {
        (mem::take(&mut self.lost), mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(lines: &[&[u8]]) -> Batch {
        let mut p = Pending::new(1 << 20);
        for l in lines {
            assert!(p.push(l));
        }
        let mut b = Batch::new();
        assert_eq!(p.take(&mut b), 0);
        assert!(p.is_empty());
        b
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        let mut p = Pending::new(10);
        assert!(p.push(b"abcd\n"));
        assert!(!p.push(b"efghij\n"));
        assert!(
            !p.push(b"klm\n"),
            "it would fit, but lines after a gap wait for the take"
        );
        assert_eq!((p.len(), p.dropped()), (5, 2));
        let mut b = Batch::new();
        assert_eq!(p.take(&mut b), 2);
        assert_eq!(p.dropped(), 0);
        assert_eq!(b.chunk(100), b"abcd\n");
        assert!(p.push(b"klmn\n"));
    }

    #[test]
    fn chunks_hold_whole_records_up_to_the_limit() {
        let mut b = batch_of(&[b"aaa\n", b"bbb\n", b"cc\ncc\n", b"dddddddddddd\n", b"e\n"]);
        assert_eq!(b.chunk(9), b"aaa\nbbb\n");
        b.advance(8);
        assert_eq!(b.chunk(9), b"cc\ncc\n");
        b.advance(6);
        // a line larger than the limit: alone
        assert_eq!(b.chunk(9), b"dddddddddddd\n");
        b.advance(5); // a short write
        assert_eq!(b.chunk(9), b"ddddddd\n");
        assert_eq!(b.records_left(), 2);
        b.advance(8);
        assert_eq!(b.chunk(9), b"e\n");
        b.advance(2);
        assert!(b.is_empty());
        assert_eq!(b.chunk(9), b"");
    }

    #[test]
    fn a_record_larger_than_the_limit_goes_out_in_whole_lines() {
        let mut b = batch_of(&[b"aaa\nbbb\nccc\n", b"d\n"]);
        assert_eq!(b.chunk(9), b"aaa\nbbb\n");
        b.advance(8);
        assert_eq!(b.records_left(), 2);
        assert_eq!(b.chunk(9), b"ccc\nd\n");
        b.advance(4);
        assert_eq!(b.chunk(9), b"d\n");
        let b = batch_of(&[b"aaaaaaaaaaaa\nbb\ncc\n"]);
        assert_eq!(
            b.chunk(9),
            b"aaaaaaaaaaaa\n",
            "a line over the limit, alone"
        );
    }

    #[test]
    fn a_half_written_record_can_be_given_up() {
        let mut b = batch_of(&[b"aaa\n", b"bbb\n"]);
        b.skip_partial();
        assert_eq!(b.take_lost(), (0, 0));
        b.advance(2);
        b.skip_partial();
        assert_eq!(b.take_lost(), (1, 0));
        assert_eq!(b.record(), Some(&b"bbb\n"[..]));
        b.skip_all();
        assert!(b.is_empty());
        assert_eq!(b.take_lost(), (1, 0));
    }

    #[test]
    fn take_appends_after_what_is_left() {
        let mut p = Pending::new(100);
        let mut b = batch_of(&[b"a\n", b"b\n"]);
        b.advance(2);
        p.push(b"c\n");
        p.take(&mut b);
        assert_eq!(b.chunk(100), b"b\nc\n");
        b.push_marker(b"marker\n", 7);
        b.advance(4);
        assert_eq!(b.record(), Some(&b"marker\n"[..]));
        b.advance(7);
        assert!(b.is_empty());
        b.skip_all();
        assert_eq!(b.take_lost(), (0, 0), "a written marker is done with");
    }

    #[test]
    fn markers_go_before_the_records_not_begun() {
        let mut b = batch_of(&[b"aaa\n", b"bbb\n", b"ccc\n"]);
        b.advance(4);
        b.insert_marker(b"M\n", 5);
        assert_eq!(b.chunk(100), b"M\nbbb\nccc\n");
        b.advance(1); // a short write inside the marker
        b.insert_marker(b"N\n", 2); // goes after it
        assert_eq!(b.chunk(100), b"\nN\nbbb\nccc\n");
        b.advance(1);
        assert_eq!(b.records_left(), 3);
        // the sink fails: two lines lost; the second marker's lines are to report again
        b.skip_all();
        assert_eq!(b.take_lost(), (2, 2));
        assert!(b.is_empty());
        // into an empty batch: the marker is all there is
        b.insert_marker(b"O\n", 1);
        assert_eq!(b.chunk(100), b"O\n");
        b.skip_record();
        assert_eq!(b.take_lost(), (0, 1));
    }
}
