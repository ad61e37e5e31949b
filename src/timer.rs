//! A hashed timer wheel for session deadlines (header, connect, idle).
//!
//! Insertion is O(1); each tick visits one slot, so the cost of a tick depends on the timers
//! due in it, not on how many sessions exist. Cancelling is lazy: every entry carries the
//! session's timer generation, and the loop ignores entries whose generation is stale. A
//! deadline beyond the wheel's horizon is filed in the last slot and fires early; the session
//! then finds its real deadline not yet reached and re-arms. Time is in milliseconds from the
//! loop's start.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// One pending timer: a slab key and the generation it was armed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The session's slab key.
    pub key: usize,
    /// The session's timer generation when armed.
    pub gen: u32,
}

/// The wheel.
pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    tick_ms: u64,
    /// The next tick to process.
    cursor: u64,
    len: usize,
}

impl Wheel {
    /// A wheel of `slots` slots of `tick_ms` each (horizon = slots * tick_ms).
    pub fn new(slots: usize, tick_ms: u64, now_ms: u64) -> Wheel {
        Wheel {
            slots: (0..slots.max(2)).map(|_| Vec::new()).collect(),
            tick_ms: tick_ms.max(1),
            cursor: now_ms / tick_ms.max(1),
            len: 0,
        }
    }

    /// The tick length: the loop wakes at least this often while timers are pending.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Number of entries filed (including stale ones not yet reached).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is filed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Files `entry` to fire at or after `deadline_ms` (early if beyond the horizon).
    pub fn insert(&mut self, deadline_ms: u64, entry: Entry) {
        let n = self.slots.len() as u64;
        let tick = deadline_ms
            .div_ceil(self.tick_ms)
            .clamp(self.cursor, self.cursor + n - 1);
        if let Some(slot) = self.slots.get_mut((tick % n) as usize) {
            slot.push(entry);
            self.len += 1;
        }
    }

    /// Moves every entry due at `now_ms` into `out`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Entry>) {
        let n = self.slots.len() as u64;
        let now_tick = now_ms / self.tick_ms;
        // After a long stall, one pass over the whole wheel covers everything.
        let last = now_tick.min(self.cursor + n - 1);
        while self.cursor <= last {
            if let Some(slot) = self.slots.get_mut((self.cursor % n) as usize) {
                self.len -= slot.len();
                out.append(slot);
            }
            self.cursor += 1;
        }
        if now_tick >= self.cursor {
            self.cursor = now_tick + 1;
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    fn e(key: usize) -> Entry {
        Entry { key, gen: 0 }
    }

    #[test]
    fn fires_at_or_after_deadline_never_before() {
        let mut w = Wheel::new(64, 10, 1000);
        w.insert(1055, e(1));
        w.insert(1100, e(2));
        let mut out = Vec::new();
        w.expire(1050, &mut out);
        assert!(out.is_empty());
        w.expire(1060, &mut out);
        assert_eq!(out, vec![e(1)]);
        out.clear();
        w.expire(1099, &mut out);
        assert!(out.is_empty());
        w.expire(1100, &mut out);
        assert_eq!(out, vec![e(2)]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_next_and_far_ones_fire_early() {
        let mut w = Wheel::new(8, 10, 0);
        w.insert(0, e(1)); // already due
        w.insert(10_000, e(2)); // beyond the 80 ms horizon
        let mut out = Vec::new();
        w.expire(0, &mut out);
        assert_eq!(out, vec![e(1)]);
        out.clear();
        w.expire(80, &mut out);
        assert_eq!(
            out,
            vec![e(2)],
            "filed in the last slot, fires early for a re-arm"
        );
    }

    #[test]
    fn a_long_stall_drains_everything_once() {
        let mut w = Wheel::new(8, 10, 0);
        for k in 0..8 {
            w.insert(k as u64 * 10, e(k));
        }
        let mut out = Vec::new();
        w.expire(1_000_000, &mut out);
        assert_eq!(out.len(), 8);
        w.insert(1_000_005, e(9));
        out.clear();
        w.expire(1_000_010, &mut out);
        assert_eq!(out, vec![e(9)]);
    }
}
