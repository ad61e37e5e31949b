//! A hashed timer wheel for session deadlines (header, connect, idle).
//!
//! Each session (slab key) has at most one entry. Insertion, replacement and cancellation are
//! O(1): the wheel remembers where each key's entry is and removes it with `swap_remove`. Each
//! tick visits one slot, so the cost of a tick depends on the timers due in it, not on how
//! many sessions exist; and a closed session leaves nothing behind, so memory follows the live
//! sessions, not the rate at which they come and go. A deadline beyond the wheel's horizon is
//! filed in the last slot and fires early; the session then finds its real deadline not yet
//! reached and re-arms. Time is in milliseconds from the loop's start. Never panics.

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
    /// For each slab key, where its entry is: (slot, index).
    place: Vec<Option<(u32, u32)>>,
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
            place: Vec::new(),
            tick_ms: tick_ms.max(1),
            cursor: now_ms / tick_ms.max(1),
            len: 0,
        }
    }

    /// The tick length: the loop wakes at least this often while timers are pending.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Number of entries filed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is filed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Files `entry` to fire at or after `deadline_ms` (early if beyond the horizon),
    /// replacing the key's previous entry if it had one.
    pub fn insert(&mut self, deadline_ms: u64, entry: Entry) {
        self.cancel(entry.key);
        let n = self.slots.len() as u64;
        let tick = deadline_ms
            .div_ceil(self.tick_ms)
            .clamp(self.cursor, self.cursor + n - 1);
        let s = (tick % n) as usize;
        let Some(slot) = self.slots.get_mut(s) else {
            return;
        };
        let at = slot.len();
        slot.push(entry);
        if self.place.len() <= entry.key {
            self.place.resize(entry.key + 1, None);
        }
        if let Some(p) = self.place.get_mut(entry.key) {
            *p = Some((s as u32, at as u32));
        }
        self.len += 1;
    }

    /// Removes `key`'s entry, if any.
    pub fn cancel(&mut self, key: usize) {
        let Some((s, at)) = self.place.get_mut(key).and_then(Option::take) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(s as usize) else {
            return;
        };
        let at = at as usize;
        if at >= slot.len() {
            return;
        }
        slot.swap_remove(at);
        self.len -= 1;
        if slot.is_empty() {
            // Most entries are cancelled soon after insertion (sessions are short): an empty
            // slot gives its buffer back, so memory follows the live sessions.
            *slot = Vec::new();
            return;
        }
        // The entry moved into the hole now lives at `at`.
        if let Some(moved) = slot.get(at) {
            if let Some(p) = self.place.get_mut(moved.key) {
                *p = Some((s, at as u32));
            }
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
                for e in slot.iter() {
                    if let Some(p) = self.place.get_mut(e.key) {
                        *p = None;
                    }
                }
                self.len -= slot.len();
                out.extend(std::mem::take(slot));
            }
            self.cursor += 1;
        }
        if now_tick >= self.cursor {
            self.cursor = now_tick + 1;
        }
    }
}

#[cfg(test)]
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

    #[test]
    fn one_entry_per_key_and_cancel_is_exact() {
        let mut w = Wheel::new(64, 10, 0);
        for k in 0..5 {
            w.insert(100, e(k)); // all in one slot
        }
        w.insert(200, e(2)); // re-armed: moves out of the first slot
        w.cancel(0); // the hole is filled by the last entry, whose place must follow
        w.cancel(4);
        w.cancel(7); // unknown: nothing happens
        assert_eq!(w.len(), 3);
        let mut out = Vec::new();
        w.expire(150, &mut out);
        out.sort_by_key(|x| x.key);
        assert_eq!(out, vec![e(1), e(3)]);
        out.clear();
        w.expire(250, &mut out);
        assert_eq!(out, vec![e(2)]);
        assert!(w.is_empty());
        w.cancel(2); // already fired: nothing happens
        assert!(w.is_empty());
    }

    #[test]
    fn closed_sessions_leave_nothing_behind() {
        let mut w = Wheel::new(8192, 50, 0);
        for round in 0..100_000u64 {
            let key = (round % 64) as usize; // slab keys are reused
            w.insert(round + 300_000, e(key));
            w.cancel(key); // the session closed
        }
        assert!(w.is_empty());
    }
}
