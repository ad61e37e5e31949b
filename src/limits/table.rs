//! The client table: fixed-size and open-addressed, in words that every process of a machine
//! shares (the supervisor, its workers, a successor generation), each entry a handful of
//! atomics: the client's key and scope, a state word (sessions now, phase, family and
//! prefix, generation), the token bucket's arrival time, the attempts of the last seconds
//! and the refusal log's throttle. Beside the entries, one ledger per worker process: how
//! many of each entry's sessions it holds, so that what a dead worker held is given back.
//!
//! Lock-free: every change is a compare-and-swap on one word; nothing waits but for a claim
//! another process is finishing (a few stores), and that wait is bounded. Nothing here
//! allocates, makes a system call, or panics on the session path.
//!
//! An entry is found within [`PROBE`] slots of its home (a keyed hash). A new client takes
//! the first empty slot there, else an idle one (no session, its bucket full again: nothing
//! is lost by dropping it); if every slot of the window is busy the session is admitted
//! unlimited and counted (failing closed would let anyone who sprays addresses lock out
//! everyone). Two processes may add the same new client at once: each claims a slot, writes
//! its key, then looks at the window again; the one further along gives way (see `claim`).
//!
//! Layout (words): a header of [`HEADER`]; then the arrays `state`, `key`, `scope`, `tat`,
//! `activity`, `refusals`, `capacity` each; then the ledgers, each an owner word (a pid) and
//! one 32-bit count per entry, two to a word. The header names the layout's version: a
//! table of another layout or size is not adopted.

use std::sync::atomic::{fence, AtomicU64, Ordering::*};

use crate::cidr::Cidr;
use crate::limits::policy::{self, Client, Limit, Pace};

/// Slots looked at from a client's home.
pub const PROBE: usize = 16;
/// The fewest entries a table has (one window).
pub const MIN_CAPACITY: usize = PROBE;
/// Seconds between two log lines about one client's refusals (or the full table).
pub const LOG_INTERVAL_S: u64 = 10;
/// Spins waiting for another process's claim to finish before giving up (admitting
/// unlimited): a claim is a few stores, so only a process stopped in the middle of one
/// (preempted, or killed: the sweeper then frees the slot) is waited for this long.
const SPIN: u32 = 1024;
/// Attempts when the window changes under us.
const RETRIES: u32 = 8;

const MAGIC: u64 = u64::from_be_bytes(*b"SLCLNT01");
/// Words before the arrays.
pub const HEADER: usize = 8;
const H_MAGIC: usize = 0;
const H_CAPACITY: usize = 1;
const H_LEDGERS: usize = 2;
const H_SEED: usize = 3; // and 4
const H_ENTRIES: usize = 5;
const H_FULL_LOG: usize = 6;

const STATE: usize = 0;
const KEY: usize = 1;
const SCOPE: usize = 2;
const TAT: usize = 3;
const ACTIVITY: usize = 4;
const REFUSALS: usize = 5;
/// Words per entry (the arrays above).
pub const ENTRY_WORDS: usize = 6;

// The state word: sessions (24 bits) | phase (2) | meta (8) | generation (30).
const SESSIONS: u64 = (1 << 24) - 1;
const PHASE_SHIFT: u32 = 24;
const META_SHIFT: u32 = 26;
const GEN_SHIFT: u32 = 34;
const GEN_MASK: u64 = (1 << 30) - 1;
const EMPTY: u64 = 0;
/// Taken by a process that is writing its key (unknown yet).
const CLAIMING: u64 = 1;
/// Its key written; the claimer checks the window for a twin before going live.
const KEYED: u64 = 2;
const LIVE: u64 = 3;

/// The most sessions one entry counts.
pub const MAX_SESSIONS: u32 = SESSIONS as u32;

fn pack(gen: u64, meta: u8, phase: u64, sessions: u64) -> u64 {
    (gen & GEN_MASK) << GEN_SHIFT | u64::from(meta) << META_SHIFT | phase << PHASE_SHIFT | sessions
}
fn sessions(st: u64) -> u64 {
    st & SESSIONS
}
fn phase(st: u64) -> u64 {
    (st >> PHASE_SHIFT) & 3
}
fn meta(st: u64) -> u8 {
    (st >> META_SHIFT) as u8
}
fn gen(st: u64) -> u64 {
    st >> GEN_SHIFT
}

/// Words a table of `capacity` entries and `ledgers` ledgers takes.
pub fn words_needed(capacity: usize, ledgers: usize) -> usize {
    HEADER + ENTRY_WORDS * capacity + ledgers * ledger_words(capacity)
}

fn ledger_words(capacity: usize) -> usize {
    1 + capacity.div_ceil(2)
}

/// A session counted in the table: the entry, and its generation (an entry that changed
/// hands since is not touched by the release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    slot: u32,
    gen: u32,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client has its most sessions at once.
    Sessions,
    /// The client's bucket is empty.
    Rate,
}

/// What the table says of a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted; give the ticket back at the close.
    Admitted(Ticket),
    /// Refused. `log`: a line is due (one per client per [`LOG_INTERVAL_S`]), saying this
    /// many refusals since the last one.
    Refused {
        /// Which limit.
        why: Refusal,
        /// See above.
        log: Option<u64>,
    },
    /// No room for the client (or a claim in its window did not finish in time): admitted,
    /// not counted. `log` as above, for the whole table.
    Unlimited {
        /// See above.
        log: Option<u64>,
    },
}

/// One client's entry, for `show clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The address block.
    pub block: Cidr,
    /// Whose counters (see `Limit::scope`).
    pub scope: u64,
    /// Sessions now.
    pub sessions: u64,
    /// New sessions a second, refused ones included, over about the last second.
    pub rate: u64,
}

/// What `forget` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgot {
    /// Entries reset (rate and refusal counts).
    pub reset: u64,
    /// Of those, entries dropped: no session was running.
    pub dropped: u64,
    /// Sessions running in the entries kept (their count stays: they are still open).
    pub running: u64,
}

/// The shape of a table, read once from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    capacity: usize,
    ledgers: usize,
    seed: [u64; 2],
}

/// Stands in for a word out of range, which a checked layout never asks for.
static NOWHERE: AtomicU64 = AtomicU64::new(0);

impl Layout {
    /// Writes a new table's header into zeroed `words`.
    pub fn format(
        words: &[AtomicU64],
        capacity: usize,
        ledgers: usize,
        seed: [u64; 2],
    ) -> Result<Layout, String> {
        if capacity < MIN_CAPACITY || ledgers == 0 || words.len() < words_needed(capacity, ledgers)
        {
            return Err(format!(
                "no room for {capacity} entries and {ledgers} ledgers"
            ));
        }
        let put = |i: usize, v: u64| words.get(i).unwrap_or(&NOWHERE).store(v, Relaxed);
        put(H_CAPACITY, capacity as u64);
        put(H_LEDGERS, ledgers as u64);
        put(H_SEED, seed[0]);
        put(H_SEED + 1, seed[1]);
        fence(Release);
        put(H_MAGIC, MAGIC);
        Ok(Layout {
            capacity,
            ledgers,
            seed,
        })
    }

    /// The layout of the table in `words`, if it is one of ours that fits them.
    pub fn read(words: &[AtomicU64]) -> Result<Layout, String> {
        let get = |i: usize| words.get(i).map_or(0, |w| w.load(Acquire));
        if get(H_MAGIC) != MAGIC {
            return Err("not a client table of this version".into());
        }
        let capacity = usize::try_from(get(H_CAPACITY)).unwrap_or(0);
        let ledgers = usize::try_from(get(H_LEDGERS)).unwrap_or(0);
        let fits = capacity >= MIN_CAPACITY
            && ledgers > 0
            && capacity.checked_mul(ENTRY_WORDS + ledgers).is_some()
            && words.len() >= words_needed(capacity, ledgers);
        if !fits {
            return Err(format!(
                "a client table of {capacity} entries and {ledgers} ledgers does not fit its {} words",
                words.len()
            ));
        }
        Ok(Layout {
            capacity,
            ledgers,
            seed: [get(H_SEED), get(H_SEED + 1)],
        })
    }

    /// Entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ledgers (worker processes that can count at once).
    pub fn ledgers(&self) -> usize {
        self.ledgers
    }
}

/// The table over its words.
#[derive(Clone, Copy)]
pub struct Table<'w> {
    w: &'w [AtomicU64],
    lay: Layout,
}

impl<'w> Table<'w> {
    /// The table `lay` describes, in `words` (as [`Layout::read`] checked them).
    pub fn new(words: &'w [AtomicU64], lay: Layout) -> Table<'w> {
        Table { w: words, lay }
    }

    fn word(&self, i: usize) -> &'w AtomicU64 {
        self.w.get(i).unwrap_or(&NOWHERE)
    }

    fn at(&self, array: usize, slot: usize) -> &'w AtomicU64 {
        self.word(HEADER + array * self.lay.capacity + slot)
    }

    fn state(&self, slot: usize) -> &'w AtomicU64 {
        self.at(STATE, slot)
    }

    /// Entries holding a client now (kept as entries are taken and dropped).
    pub fn entries(&self) -> u64 {
        self.word(H_ENTRIES).load(Relaxed)
    }

    fn home(&self, c: &Client) -> usize {
        let [s0, s1] = self.lay.seed;
        let mut x = c.key ^ s0;
        x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= c.scope.rotate_left(17) ^ (u64::from(c.meta) << 56) ^ s1;
        x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        ((u128::from(x) * self.lay.capacity as u128) >> 64) as usize
    }

    fn slot(&self, home: usize, i: usize) -> usize {
        let j = home + i;
        if j >= self.lay.capacity {
            j - self.lay.capacity
        } else {
            j
        }
    }

    fn holds(&self, slot: usize, st: u64, c: &Client) -> bool {
        meta(st) == c.meta
            && self.at(KEY, slot).load(Relaxed) == c.key
            && self.at(SCOPE, slot).load(Relaxed) == c.scope
    }

    /// Counts a new session of `c` under `limit` at `now_ms` (the machine's monotonic
    /// clock), for the worker holding ledger `ledger`.
    pub fn admit(
        &self,
        c: &Client,
        limit: &Limit,
        ledger: Option<usize>,
        now_ms: u64,
    ) -> Admission {
        let home = self.home(c);
        for _ in 0..RETRIES {
            let step = match self.find(c, home, now_ms) {
                Found::Live(slot, st) => self.enter(slot, st, limit, ledger, now_ms),
                Found::Absent(Some(target)) => self.claim(target, c, home, limit, ledger, now_ms),
                Found::Absent(None) | Found::Stuck => Step::Unlimited,
            };
            match step {
                Step::Done(a) => return a,
                Step::Retry => {}
                Step::Unlimited => break,
            }
        }
        Admission::Unlimited {
            log: self.throttle(self.word(H_FULL_LOG), now_ms),
        }
    }

    /// Looks for `c` in its window; if absent, where it could go.
    fn find(&self, c: &Client, home: usize, now_ms: u64) -> Found {
        let now_us = now_ms.saturating_mul(1000);
        let (mut free, mut idle) = (None, None);
        for i in 0..PROBE {
            let slot = self.slot(home, i);
            let mut spins = 0;
            loop {
                let st = self.state(slot).load(Acquire);
                match phase(st) {
                    EMPTY => {
                        free = free.or(Some((slot, st)));
                        break;
                    }
                    LIVE if self.holds(slot, st, c) => return Found::Live(slot, st),
                    LIVE => {
                        let spent = sessions(st) == 0 && self.at(TAT, slot).load(Relaxed) <= now_us;
                        if spent && idle.is_none() {
                            idle = Some((slot, st));
                        }
                        break;
                    }
                    KEYED if !self.holds(slot, st, c) => break,
                    // Being claimed, perhaps for this very client: it is a few stores away
                    // from saying so.
                    _ => {
                        spins += 1;
                        if spins > SPIN {
                            return Found::Stuck;
                        }
                        std::hint::spin_loop();
                    }
                }
            }
        }
        Found::Absent(free.or(idle))
    }

    /// One more session in `c`'s live entry, within the limit.
    fn enter(
        &self,
        slot: usize,
        mut st: u64,
        limit: &Limit,
        ledger: Option<usize>,
        now_ms: u64,
    ) -> Step {
        let cell = self.state(slot);
        loop {
            let n = sessions(st);
            if limit.max_sessions > 0 && n >= u64::from(limit.max_sessions) {
                self.attempted(slot, now_ms);
                return Step::Done(Admission::Refused {
                    why: Refusal::Sessions,
                    log: self.throttle(self.at(REFUSALS, slot), now_ms),
                });
            }
            if n >= SESSIONS {
                return Step::Unlimited;
            }
            // Ledger first: a worker killed between the two writes leaves its ledger one
            // over, so what is given back errs towards too few sessions, never a leak.
            self.ledger_add(ledger, slot, 1);
            match cell.compare_exchange_weak(st, st + 1, AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => {
                    self.ledger_sub(ledger, slot, 1);
                    if phase(now) != LIVE || gen(now) != gen(st) {
                        return Step::Retry; // it changed hands
                    }
                    st = now;
                }
            }
        }
        self.attempted(slot, now_ms);
        let ticket = Ticket {
            slot: slot as u32,
            gen: gen(st) as u32,
        };
        if let Some(p) = &limit.pace {
            if !self.take_token(slot, p, now_ms) {
                self.release(ticket, ledger);
                return Step::Done(Admission::Refused {
                    why: Refusal::Rate,
                    log: self.throttle(self.at(REFUSALS, slot), now_ms),
                });
            }
        }
        Step::Done(Admission::Admitted(ticket))
    }

    /// GCRA: a token if the arrival time is not too far ahead; it then moves one interval.
    fn take_token(&self, slot: usize, p: &Pace, now_ms: u64) -> bool {
        let now_us = now_ms.saturating_mul(1000);
        let tat = self.at(TAT, slot);
        let mut t = tat.load(Acquire);
        loop {
            let base = t.max(now_us);
            if base - now_us > p.tolerance_us {
                return false;
            }
            match tat.compare_exchange_weak(t, base + p.interval_us, AcqRel, Acquire) {
                Ok(_) => return true,
                Err(now) => t = now,
            }
        }
    }

    /// Takes `target` for `c` (an empty slot, or an idle entry dropped for it) with its
    /// first session. Two processes adding the same client at once both claim a slot and
    /// write the key, then look at the window again (after a full fence: at least one sees
    /// the other): a process gives way to a live twin, or to a claim nearer the home; it
    /// waits for a claim further along, which gives way to it.
    #[inline(never)]
    fn claim(
        &self,
        (slot, old): (usize, u64),
        c: &Client,
        home: usize,
        limit: &Limit,
        ledger: Option<usize>,
        now_ms: u64,
    ) -> Step {
        let g = (gen(old) + 1) & GEN_MASK;
        let cell = self.state(slot);
        if cell
            .compare_exchange(old, pack(g, 0, CLAIMING, 0), AcqRel, Relaxed)
            .is_err()
        {
            return Step::Retry;
        }
        if phase(old) == EMPTY {
            self.word(H_ENTRIES).fetch_add(1, Relaxed);
        }
        self.at(KEY, slot).store(c.key, Relaxed);
        self.at(SCOPE, slot).store(c.scope, Relaxed);
        for a in [TAT, ACTIVITY, REFUSALS] {
            self.at(a, slot).store(0, Relaxed);
        }
        let keyed = pack(g, c.meta, KEYED, 0);
        cell.store(keyed, Release);
        fence(SeqCst);
        let mine = (0..PROBE)
            .position(|i| self.slot(home, i) == slot)
            .unwrap_or(0);
        for i in (0..PROBE).filter(|&i| i != mine) {
            let other = self.slot(home, i);
            let mut spins = 0;
            loop {
                let st = self.state(other).load(Acquire);
                let twin = match phase(st) {
                    EMPTY => false,
                    CLAIMING => true, // its key is not written yet: it may be a twin
                    _ => self.holds(other, st, c),
                };
                if !twin {
                    break;
                }
                if phase(st) == LIVE || i < mine {
                    self.abandon(slot, keyed);
                    return Step::Retry;
                }
                spins += 1;
                if spins > SPIN {
                    self.abandon(slot, keyed);
                    return Step::Unlimited;
                }
                std::hint::spin_loop();
            }
        }
        self.ledger_add(ledger, slot, 1);
        if let Some(p) = &limit.pace {
            // A full bucket less the token of this session.
            self.at(TAT, slot)
                .store(now_ms.saturating_mul(1000) + p.interval_us, Relaxed);
        }
        self.attempted(slot, now_ms);
        let live = pack(g, c.meta, LIVE, 1);
        if cell.compare_exchange(keyed, live, AcqRel, Relaxed).is_err() {
            // The sweeper took a claim it thought abandoned: start again.
            self.ledger_sub(ledger, slot, 1);
            return Step::Retry;
        }
        Step::Done(Admission::Admitted(Ticket {
            slot: slot as u32,
            gen: g as u32,
        }))
    }

    fn abandon(&self, slot: usize, keyed: u64) {
        let empty = pack(gen(keyed), 0, EMPTY, 0);
        if self
            .state(slot)
            .compare_exchange(keyed, empty, AcqRel, Relaxed)
            .is_ok()
        {
            self.word(H_ENTRIES).fetch_sub(1, Relaxed);
        }
    }

    /// The session of `t` ended: one session fewer in its entry (unless the entry changed
    /// hands: then it was counted there no more), and in the ledger.
    pub fn release(&self, t: Ticket, ledger: Option<usize>) {
        let slot = t.slot as usize;
        let cell = self.state(slot);
        let mut st = cell.load(Acquire);
        while phase(st) == LIVE && gen(st) == u64::from(t.gen) && sessions(st) > 0 {
            match cell.compare_exchange_weak(st, st - 1, AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => st = now,
            }
        }
        self.ledger_sub(ledger, slot, 1);
    }

    /// Counts an attempt in the entry's per-second window: (second + 1) << 32 | this
    /// second's attempts << 16 | the last second's.
    fn attempted(&self, slot: usize, now_ms: u64) {
        let sec = now_ms / 1000 + 1;
        let cell = self.at(ACTIVITY, slot);
        let mut w = cell.load(Relaxed);
        loop {
            let (s, cur, prev) = (w >> 32, (w >> 16) & 0xffff, w & 0xffff);
            let next = if s == sec {
                (s << 32) | ((cur + 1).min(0xffff) << 16) | prev
            } else if s + 1 == sec {
                (sec << 32) | (1 << 16) | cur
            } else {
                (sec << 32) | (1 << 16)
            };
            match cell.compare_exchange_weak(w, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }

    fn rate(&self, slot: usize, now_ms: u64) -> u64 {
        let w = self.at(ACTIVITY, slot).load(Relaxed);
        let (s, cur, prev) = (w >> 32, (w >> 16) & 0xffff, w & 0xffff);
        let (sec, left) = (now_ms / 1000 + 1, 1000 - now_ms % 1000);
        if s == sec {
            cur + prev * left / 1000
        } else if s + 1 == sec {
            cur * left / 1000
        } else {
            0
        }
    }

    /// One more refusal (or unlimited admission) in a throttle word, (second + 1) << 32 |
    /// count since the last line; `Some(count)` when a line is due.
    #[cold]
    #[inline(never)]
    fn throttle(&self, cell: &AtomicU64, now_ms: u64) -> Option<u64> {
        let sec = now_ms / 1000 + 1;
        let mut w = cell.load(Relaxed);
        loop {
            let (last, n) = (w >> 32, (w & 0xffff_ffff) + 1);
            let due = last == 0 || sec >= last + LOG_INTERVAL_S;
            let next = if due {
                sec << 32
            } else {
                (last << 32) | n.min(0xffff_ffff)
            };
            match cell.compare_exchange_weak(w, next, Relaxed, Relaxed) {
                Ok(_) => return due.then_some(n),
                Err(now) => w = now,
            }
        }
    }

    fn ledger_cell(&self, ledger: usize, slot: usize) -> (&'w AtomicU64, u32) {
        let base =
            HEADER + ENTRY_WORDS * self.lay.capacity + ledger * ledger_words(self.lay.capacity);
        (self.word(base + 1 + slot / 2), (slot as u32 % 2) * 32)
    }

    fn owner(&self, ledger: usize) -> &'w AtomicU64 {
        self.word(
            HEADER + ENTRY_WORDS * self.lay.capacity + ledger * ledger_words(self.lay.capacity),
        )
    }

    // A ledger has one writer, its worker (or, once the worker is gone, whoever took it
    // over): a load and a store, no read-modify-write.
    fn ledger_add(&self, ledger: Option<usize>, slot: usize, n: u64) {
        let Some(l) = ledger else { return };
        let (cell, shift) = self.ledger_cell(l, slot);
        let w = cell.load(Relaxed);
        let count = ((w >> shift) & 0xffff_ffff)
            .saturating_add(n)
            .min(0xffff_ffff);
        cell.store((w & !(0xffff_ffff << shift)) | count << shift, Relaxed);
    }

    fn ledger_sub(&self, ledger: Option<usize>, slot: usize, n: u64) {
        let Some(l) = ledger else { return };
        let (cell, shift) = self.ledger_cell(l, slot);
        let w = cell.load(Relaxed);
        let count = ((w >> shift) & 0xffff_ffff).saturating_sub(n);
        cell.store((w & !(0xffff_ffff << shift)) | count << shift, Relaxed);
    }

    /// Takes a ledger for process `pid`: a free one, else one whose owner `alive` says is
    /// gone, after giving back what it lists. Returns the ledger and the sessions given back.
    pub fn take_ledger(&self, pid: u32, alive: impl Fn(u32) -> bool) -> Option<(usize, u64)> {
        let me = u64::from(pid);
        for l in 0..self.lay.ledgers {
            if self
                .owner(l)
                .compare_exchange(0, me, AcqRel, Relaxed)
                .is_ok()
            {
                return Some((l, 0));
            }
        }
        for l in 0..self.lay.ledgers {
            let o = self.owner(l).load(Acquire);
            if o != 0
                && !alive(o as u32)
                && self
                    .owner(l)
                    .compare_exchange(o, me, AcqRel, Relaxed)
                    .is_ok()
            {
                return Some((l, self.give_back(l)));
            }
        }
        None
    }

    /// Ledgers held by a process `alive` says is there.
    pub fn ledgers_held(&self, alive: impl Fn(u32) -> bool) -> usize {
        (0..self.lay.ledgers)
            .filter(|&l| {
                let o = self.owner(l).load(Acquire);
                o != 0 && alive(o as u32)
            })
            .count()
    }

    /// Frees ledger `l` of process `pid` (giving back anything it still lists).
    pub fn leave_ledger(&self, l: usize, pid: u32) -> u64 {
        let n = self.give_back(l);
        let _ = self
            .owner(l)
            .compare_exchange(u64::from(pid), 0, AcqRel, Relaxed);
        n
    }

    /// Gives back what the ledgers of dead processes list: those of `pid` (a worker just
    /// reaped), and any whose owner `alive` says is gone. `sweeper` is the caller's pid.
    /// Returns the sessions given back.
    pub fn sweep_ledgers(
        &self,
        pid: Option<u32>,
        sweeper: u32,
        alive: impl Fn(u32) -> bool,
    ) -> u64 {
        let mark = SWEEPING | u64::from(sweeper);
        let mut n = 0;
        for l in 0..self.lay.ledgers {
            let o = self.owner(l).load(Acquire);
            let reaped = pid == Some(o as u32) && o & SWEEPING == 0;
            let dead = o != 0 && (reaped || !alive(o as u32));
            if dead
                && self
                    .owner(l)
                    .compare_exchange(o, mark, AcqRel, Relaxed)
                    .is_ok()
            {
                n += self.give_back(l);
                self.owner(l).store(0, Release);
            }
        }
        n
    }

    /// Subtracts what ledger `l` lists from the entries, emptying it as it goes (so that
    /// a sweep cut short and done again gives nothing back twice).
    fn give_back(&self, l: usize) -> u64 {
        let mut total = 0;
        for i in 0..self.lay.capacity.div_ceil(2) {
            let (cell, _) = self.ledger_cell(l, i * 2);
            let w = cell.swap(0, AcqRel);
            for (slot, count) in [(i * 2, w & 0xffff_ffff), (i * 2 + 1, w >> 32)] {
                if count > 0 && slot < self.lay.capacity {
                    total += count;
                    let cell = self.state(slot);
                    let mut st = cell.load(Acquire);
                    while phase(st) == LIVE && sessions(st) > 0 {
                        let next = st - sessions(st).min(count);
                        match cell.compare_exchange_weak(st, next, AcqRel, Acquire) {
                            Ok(_) => break,
                            Err(now) => st = now,
                        }
                    }
                }
            }
        }
        total
    }

    /// Frees the slots still being claimed that `seen` (from the last call) found claimed
    /// in the same state: their claimer died between two stores. Then notes those claimed
    /// now. Returns how many were freed.
    pub fn free_stuck_claims(&self, seen: &mut Vec<(usize, u64)>) -> u64 {
        let mut n = 0;
        for &(slot, st) in seen.iter() {
            let empty = pack(gen(st), 0, EMPTY, 0);
            if self
                .state(slot)
                .compare_exchange(st, empty, AcqRel, Relaxed)
                .is_ok()
            {
                self.word(H_ENTRIES).fetch_sub(1, Relaxed);
                n += 1;
            }
        }
        seen.clear();
        for slot in 0..self.lay.capacity {
            let st = self.state(slot).load(Relaxed);
            if matches!(phase(st), CLAIMING | KEYED) {
                seen.push((slot, st));
            }
        }
        n
    }

    /// The live entries with a session running or attempted lately.
    pub fn rows(&self, now_ms: u64) -> Vec<Row> {
        let mut rows = Vec::new();
        for slot in 0..self.lay.capacity {
            let st = self.state(slot).load(Acquire);
            if phase(st) != LIVE {
                continue;
            }
            let (key, scope) = (
                self.at(KEY, slot).load(Relaxed),
                self.at(SCOPE, slot).load(Relaxed),
            );
            let rate = self.rate(slot, now_ms);
            let Some(block) = policy::block(key, meta(st)) else {
                continue;
            };
            if sessions(st) > 0 || rate > 0 {
                rows.push(Row {
                    block,
                    scope,
                    sessions: sessions(st),
                    rate,
                });
            }
        }
        rows
    }

    /// Resets the entries of clients in `cidr`: their bucket is full again and their
    /// attempts and refusals forgotten; an entry without a running session is dropped. The
    /// sessions running stay counted: they are open, and their close gives them back.
    pub fn forget(&self, cidr: &Cidr) -> Forgot {
        let mut f = Forgot::default();
        for slot in 0..self.lay.capacity {
            let st = self.state(slot).load(Acquire);
            let key = self.at(KEY, slot).load(Relaxed);
            let inside = policy::block(key, meta(st)).is_some_and(|b| b.overlaps(cidr));
            if phase(st) != LIVE || !inside || self.state(slot).load(Acquire) != st {
                continue;
            }
            f.reset += 1;
            for a in [TAT, ACTIVITY, REFUSALS] {
                self.at(a, slot).store(0, Relaxed);
            }
            let empty = pack(gen(st) + 1, 0, EMPTY, 0);
            if sessions(st) == 0
                && self
                    .state(slot)
                    .compare_exchange(st, empty, AcqRel, Relaxed)
                    .is_ok()
            {
                self.word(H_ENTRIES).fetch_sub(1, Relaxed);
                f.dropped += 1;
            } else {
                f.running += sessions(self.state(slot).load(Relaxed));
            }
        }
        f
    }
}

/// A ledger's owner word while a sweeper gives back what it lists: the sweeper's pid with
/// this bit (a sweeper that dies is itself swept).
const SWEEPING: u64 = 1 << 32;

enum Found {
    Live(usize, u64),
    Absent(Option<(usize, u64)>),
    Stuck,
}

enum Step {
    Done(Admission),
    Retry,
    Unlimited,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{Prefixes, Rate, EVERY_ROUTE};
    use std::sync::atomic::AtomicI64;

    fn words(capacity: usize, ledgers: usize) -> Vec<AtomicU64> {
        (0..words_needed(capacity, ledgers))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn client(n: u32) -> Client {
        let ip = std::net::Ipv4Addr::from(0xc000_0200 + n); // 192.0.2.0 + n
        Client::of(ip.into(), Prefixes { v4: 32, v6: 64 }, EVERY_ROUTE)
    }

    fn limit(max: u32, rate: Option<(u32, u32)>) -> Limit {
        let rate = rate.map(|(r, b)| (Rate { per_second: r }, b));
        Limit::new(max, rate.map(|r| r.0), rate.map(|r| r.1), EVERY_ROUTE).unwrap()
    }

    fn admitted(a: Admission) -> Ticket {
        match a {
            Admission::Admitted(t) => t,
            other => panic!("refused: {other:?}"),
        }
    }

    /// Every live entry and its sessions.
    fn live(t: &Table<'_>) -> Vec<(Client, u64)> {
        (0..t.lay.capacity)
            .filter_map(|s| {
                let st = t.state(s).load(Relaxed);
                (phase(st) == LIVE).then(|| {
                    let c = Client {
                        key: t.at(KEY, s).load(Relaxed),
                        meta: meta(st),
                        scope: t.at(SCOPE, s).load(Relaxed),
                    };
                    (c, sessions(st))
                })
            })
            .collect()
    }

    #[test]
    fn a_client_is_held_to_its_sessions_and_its_rate() {
        let w = words(64, 2);
        let t = Table::new(&w, Layout::format(&w, 64, 2, [7, 9]).unwrap());
        assert_eq!(Layout::read(&w).unwrap(), t.lay);
        let (a, l) = (client(1), limit(2, None));
        let one = admitted(t.admit(&a, &l, Some(0), 1000));
        let _two = admitted(t.admit(&a, &l, Some(1), 1000));
        let refused = |log| Admission::Refused {
            why: Refusal::Sessions,
            log,
        };
        assert_eq!(t.admit(&a, &l, Some(0), 1000), refused(Some(1)));
        // One line per client per interval, then the count since the last line.
        assert_eq!(t.admit(&a, &l, Some(0), 2000), refused(None));
        assert_eq!(t.admit(&a, &l, Some(0), 11_500), refused(Some(2)));
        // Another client is not this one.
        admitted(t.admit(&client(2), &l, Some(0), 1000));
        t.release(one, Some(0));
        let _three = admitted(t.admit(&a, &l, Some(0), 12_000));
        assert_eq!(live(&t).iter().find(|e| e.0 == a).unwrap().1, 2);
        // 10/s with a burst of 3: three at once, then one every 100 ms.
        let (b, p) = (client(3), limit(0, Some((10, 3))));
        for _ in 0..3 {
            admitted(t.admit(&b, &p, Some(0), 5000));
        }
        let rate = Admission::Refused {
            why: Refusal::Rate,
            log: Some(1),
        };
        assert_eq!(t.admit(&b, &p, Some(0), 5050), rate);
        admitted(t.admit(&b, &p, Some(0), 5100));
        assert!(matches!(
            t.admit(&b, &p, Some(0), 5150),
            Admission::Refused { .. }
        ));
        // A refusal by rate takes no session: the count is the three and the one.
        assert_eq!(live(&t).iter().find(|e| e.0 == b).unwrap().1, 4);
        let rows = t.rows(5150);
        let row = rows
            .iter()
            .find(|r| r.block.to_string() == "192.0.2.3/32")
            .unwrap();
        assert_eq!((row.sessions, row.rate), (4, 6));
    }

    #[test]
    fn a_full_window_admits_unlimited_and_idle_entries_make_room() {
        let w = words(16, 1);
        let t = Table::new(&w, Layout::format(&w, 16, 1, [1, 2]).unwrap());
        let l = limit(1, None);
        let tickets: Vec<Ticket> = (0..16)
            .map(|n| admitted(t.admit(&client(n), &l, Some(0), 0)))
            .collect();
        assert_eq!(t.entries(), 16);
        // Every entry busy: the newcomer passes unlimited, counted for the log once.
        assert_eq!(
            t.admit(&client(100), &l, Some(0), 0),
            Admission::Unlimited { log: Some(1) }
        );
        assert_eq!(
            t.admit(&client(101), &l, Some(0), 0),
            Admission::Unlimited { log: None }
        );
        // An entry whose client has no session left is dropped for a newcomer, who is then
        // held to the limit like anyone.
        t.release(tickets[5], Some(0));
        admitted(t.admit(&client(100), &l, Some(0), 0));
        assert!(matches!(
            t.admit(&client(100), &l, Some(0), 0),
            Admission::Refused { .. }
        ));
        assert_eq!(t.entries(), 16);
        // An idle entry still within its rate window is not dropped: its bucket would refill.
        let w = words(16, 1);
        let t = Table::new(&w, Layout::format(&w, 16, 1, [1, 2]).unwrap());
        let p = limit(1, Some((1, 1)));
        for n in 0..16 {
            let k = admitted(t.admit(&client(n), &p, Some(0), 0));
            t.release(k, Some(0));
        }
        assert!(matches!(
            t.admit(&client(100), &p, Some(0), 500),
            Admission::Unlimited { .. }
        ));
        admitted(t.admit(&client(100), &p, Some(0), 1000));
    }

    #[test]
    fn a_dead_workers_ledger_is_given_back() {
        let w = words(64, 3);
        let t = Table::new(&w, Layout::format(&w, 64, 3, [3, 4]).unwrap());
        let (a, l) = (client(1), limit(10, None));
        assert_eq!(t.take_ledger(101, |_| true), Some((0, 0)));
        assert_eq!(t.take_ledger(102, |_| true), Some((1, 0)));
        for _ in 0..3 {
            admitted(t.admit(&a, &l, Some(0), 0)); // worker 101's, never released
        }
        let theirs: Vec<Ticket> = (0..2)
            .map(|_| admitted(t.admit(&a, &l, Some(1), 0)))
            .collect();
        assert_eq!(live(&t)[0].1, 5);
        // 101 dies; a new worker finds no free ledger... there is one: it takes that.
        assert_eq!(t.take_ledger(103, |p| p != 101), Some((2, 0)));
        // The next takes 101's, giving back its three.
        assert_eq!(t.take_ledger(104, |p| p != 101), Some((0, 3)));
        assert_eq!(live(&t)[0].1, 2);
        for k in theirs {
            t.release(k, Some(1));
        }
        assert_eq!(live(&t)[0].1, 0);
        assert_eq!(
            t.take_ledger(105, |_| true),
            None,
            "all held by live workers"
        );
        // The supervisor sweeps a reaped worker's ledger by its pid.
        admitted(t.admit(&a, &l, Some(2), 0));
        assert_eq!(t.sweep_ledgers(Some(103), 1, |_| true), 1);
        assert_eq!(live(&t)[0].1, 0);
        assert_eq!(t.take_ledger(105, |_| true), Some((2, 0)));
        assert_eq!(t.leave_ledger(2, 105), 0);
        assert_eq!(t.owner(2).load(Relaxed), 0);
    }

    #[test]
    fn a_claim_left_half_done_is_freed_by_the_next_sweep_but_one() {
        let w = words(16, 1);
        let t = Table::new(&w, Layout::format(&w, 16, 1, [5, 6]).unwrap());
        // A process killed between its claim and its key: every slot of the window.
        for s in 0..16 {
            t.state(s).store(pack(3, 0, CLAIMING, 0), Relaxed);
        }
        let l = limit(1, None);
        assert!(matches!(
            t.admit(&client(1), &l, Some(0), 0),
            Admission::Unlimited { .. }
        ));
        let mut seen = Vec::new();
        assert_eq!(t.free_stuck_claims(&mut seen), 0);
        assert_eq!(seen.len(), 16);
        assert_eq!(t.free_stuck_claims(&mut seen), 16);
        admitted(t.admit(&client(1), &l, Some(0), 0));
    }

    #[test]
    fn forget_refills_buckets_and_drops_idle_entries_but_keeps_running_counts() {
        let w = words(64, 1);
        let t = Table::new(&w, Layout::format(&w, 64, 1, [8, 8]).unwrap());
        let p = limit(2, Some((1, 2)));
        let held: Vec<Ticket> = (0..2)
            .map(|_| admitted(t.admit(&client(1), &p, Some(0), 0)))
            .collect();
        let idle = admitted(t.admit(&client(2), &p, Some(0), 0));
        t.release(idle, Some(0));
        admitted(t.admit(&client(200), &p, Some(0), 0)); // outside the block
        assert!(matches!(
            t.admit(&client(1), &p, Some(0), 0),
            Admission::Refused { .. }
        ));
        let f = t.forget(&"192.0.2.0/28".parse().unwrap());
        assert_eq!(
            f,
            Forgot {
                reset: 2,
                dropped: 1,
                running: 2
            }
        );
        // Client 1 still runs two sessions: still at its limit.
        assert_eq!(
            t.admit(&client(1), &p, Some(0), 0),
            Admission::Refused {
                why: Refusal::Sessions,
                log: Some(1)
            }
        );
        for k in held {
            t.release(k, Some(0));
        }
        // Its bucket is full again: two at once.
        admitted(t.admit(&client(1), &p, Some(0), 0));
        admitted(t.admit(&client(1), &p, Some(0), 0));
        assert_eq!(t.entries(), 2);
    }

    /// Another process adds the same new client between this one's look and its claim: the
    /// claimer gives way to a live twin and to a claim nearer the home, and waits for one
    /// further along (which gives way to it).
    #[test]
    fn a_claim_gives_way_to_a_twin() {
        let w = words(64, 1);
        let t = Table::new(&w, Layout::format(&w, 64, 1, [11, 12]).unwrap());
        let (a, l) = (client(1), limit(5, None));
        let home = t.home(&a);
        let put = |i: usize, phase: u64, n: u64| {
            let slot = t.slot(home, i);
            t.at(KEY, slot).store(a.key, Relaxed);
            t.at(SCOPE, slot).store(a.scope, Relaxed);
            t.state(slot).store(pack(1, a.meta, phase, n), Relaxed);
        };
        let Found::Absent(Some(target)) = t.find(&a, home, 0) else {
            panic!("an empty table has room")
        };
        assert_eq!(target.0, t.slot(home, 0));
        // A live twin further along: give way, and find it next time.
        put(5, LIVE, 1);
        assert!(matches!(
            t.claim(target, &a, home, &l, Some(0), 0),
            Step::Retry
        ));
        assert_eq!(phase(t.state(target.0).load(Relaxed)), EMPTY);
        admitted(t.admit(&a, &l, Some(0), 0));
        assert_eq!(live(&t), vec![(a, 2)]);
        // A twin still checking the window, nearer the home than this claim: give way.
        t.state(t.slot(home, 5)).store(0, Relaxed);
        put(0, KEYED, 0);
        let target = (t.slot(home, 3), 0);
        assert!(matches!(
            t.claim(target, &a, home, &l, Some(0), 0),
            Step::Retry
        ));
        // Further along: wait for it to give way; here it never does, so admit unlimited.
        assert!(matches!(
            t.claim((t.slot(home, 7), 0), &a, home, &l, Some(0), 0),
            Step::Retry
        ));
        t.state(t.slot(home, 0)).store(0, Relaxed);
        put(9, KEYED, 0);
        let target = (target.0, t.state(target.0).load(Relaxed));
        assert!(matches!(
            t.claim(target, &a, home, &l, Some(0), 0),
            Step::Unlimited
        ));
        assert_eq!(phase(t.state(target.0).load(Relaxed)), EMPTY, "given up");
    }

    /// A thread's admitted, refused and unlimited counts, and the sessions it died holding.
    type Outcome = (u64, u64, u64, Vec<(u32, Ticket)>);

    /// Threads admitting and releasing at random, keys colliding, the table nearly always
    /// full, one thread dying with sessions held: the limit holds at every instant, no count
    /// goes negative or above the limit, and every count is back to zero at the end.
    #[test]
    fn random_admits_and_releases_from_threads_never_leak_or_overshoot() {
        const CAP: usize = 48;
        const THREADS: usize = 4;
        const MAX: u32 = 3;
        const CLIENTS: u32 = 200;
        for round in 0..4u64 {
            let w = words(CAP, THREADS + 1);
            let t = Table::new(
                &w,
                Layout::format(&w, CAP, THREADS + 1, [round, !round]).unwrap(),
            );
            let shadow: Vec<AtomicI64> = (0..CLIENTS).map(|_| AtomicI64::new(0)).collect();
            let clock = AtomicU64::new(1);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let paced = round % 2 == 1;
            let l = if paced {
                limit(MAX, Some((50, 5)))
            } else {
                limit(MAX, None)
            };
            let outcomes: Vec<Outcome> = std::thread::scope(|s| {
                let monitor = s.spawn(|| {
                    while !stop.load(Relaxed) {
                        for slot in 0..CAP {
                            let st = t.state(slot).load(Relaxed);
                            assert!(sessions(st) <= u64::from(MAX), "{st:x}");
                        }
                    }
                });
                let workers: Vec<_> = (0..THREADS)
                    .map(|id| {
                        let (t, shadow, clock, l) = (&t, &shadow, &clock, &l);
                        s.spawn(move || {
                            let mut rng =
                                0x9e37_79b9_7f4a_7c15_u64 ^ ((id as u64 + 1) * 7919 + round);
                            let mut next = move || {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                rng
                            };
                            let mut held: Vec<(u32, Ticket)> = Vec::new();
                            let (mut ok, mut refused, mut unlimited) = (0, 0, 0);
                            let ops = if id == THREADS - 1 { 30_000 } else { 200_000 };
                            for _ in 0..ops {
                                let now = clock.fetch_add(1, Relaxed) / 8;
                                if held.len() < 60 && next() % 2 == 0 {
                                    // Most of the load on a few clients, the rest spread.
                                    let k = if next() % 3 == 0 {
                                        (next() % 4) as u32
                                    } else {
                                        (next() % u64::from(CLIENTS)) as u32
                                    };
                                    match t.admit(&client(k), l, Some(id), now) {
                                        Admission::Admitted(tk) => {
                                            let n = shadow[k as usize].fetch_add(1, SeqCst) + 1;
                                            assert!(
                                                n <= i64::from(MAX),
                                                "client {k}: {n} sessions"
                                            );
                                            held.push((k, tk));
                                            ok += 1;
                                        }
                                        Admission::Refused { .. } => refused += 1,
                                        Admission::Unlimited { .. } => unlimited += 1,
                                    }
                                } else if !held.is_empty() {
                                    let (k, tk) =
                                        held.swap_remove((next() % held.len() as u64) as usize);
                                    shadow[k as usize].fetch_sub(1, SeqCst);
                                    t.release(tk, Some(id));
                                }
                            }
                            if id == THREADS - 1 {
                                return (ok, refused, unlimited, held); // dies holding these
                            }
                            for (k, tk) in held.drain(..) {
                                shadow[k as usize].fetch_sub(1, SeqCst);
                                t.release(tk, Some(id));
                            }
                            (ok, refused, unlimited, held)
                        })
                    })
                    .collect();
                // Joined before any unwrap: a failed thread must not leave the monitor running.
                let out: Vec<_> = workers.into_iter().map(|h| h.join()).collect();
                stop.store(true, Relaxed);
                monitor.join().unwrap();
                out.into_iter().map(Result::unwrap).collect()
            });
            let (ok, refused, unlimited) = outcomes
                .iter()
                .fold((0, 0, 0), |a, o| (a.0 + o.0, a.1 + o.1, a.2 + o.2));
            assert!(ok > 1000 && refused > 0, "{ok} {refused} {unlimited}");
            assert!(unlimited > 0, "the table was never full: {ok} {refused}");
            let dead = &outcomes[THREADS - 1].3;
            // The dead thread's ledger, taken by a newcomer: its sessions are given back.
            assert_eq!(
                t.owner(THREADS - 1).load(Relaxed),
                0,
                "ledgers are by index here"
            );
            let given = t.give_back(THREADS - 1);
            assert_eq!(given, dead.len() as u64);
            for e in live(&t) {
                assert_eq!(e.1, 0, "a count leaked: {e:?}");
            }
            let mut keys: Vec<Client> = live(&t).into_iter().map(|e| e.0).collect();
            let n = keys.len();
            keys.sort_by_key(|c| (c.key, c.scope, c.meta));
            keys.dedup();
            assert_eq!(keys.len(), n, "one client in two entries");
            assert_eq!(t.entries(), n as u64, "the entry count");
            for l in 0..=THREADS {
                for i in 0..CAP.div_ceil(2) {
                    assert_eq!(t.ledger_cell(l, i * 2).0.load(Relaxed), 0, "ledger {l}");
                }
            }
        }
    }
}
