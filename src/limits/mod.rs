//! Per-client abuse limits held across every worker of a machine: sessions at once and new
//! sessions per second per client (an address or a prefix), counted in one table in shared
//! memory that the supervisor makes and every worker maps, so that N workers never mean N
//! times the limit.
//!
//! `policy` says what a client is and what it may do (pure values); `table` keeps the
//! counters (atomics over shared words). Here: [`ClientTable`], one process's handle on the
//! table, which owns the mapping, its ledger (a worker's), and the offset from the loop's
//! clock to the machine's. Never touches a socket, never decides a refusal's words: the
//! session logs and refuses.

pub mod policy;
pub mod table;

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::cidr::Cidr;
use crate::sys::shm::SharedWords;
use policy::{Client, Limit};
use table::{Admission, Forgot, Layout, Row, Table, Ticket};

/// The ledgers a table is made with for `workers` workers: two generations of them (an
/// upgrade runs the old and the new side by side) and two to spare.
pub fn ledgers_for(workers: usize) -> usize {
    workers * 2 + 2
}

/// Bytes a table of `capacity` entries for `workers` workers takes in memory (touched only
/// as it is used).
pub fn table_bytes(capacity: usize, workers: usize) -> usize {
    table::words_needed(capacity, ledgers_for(workers)) * 8
}

/// One process's view of the machine's client table.
pub struct ClientTable {
    shm: SharedWords,
    lay: Layout,
    /// The ledger this worker counts its sessions in, with its pid.
    ledger: Option<(usize, u32)>,
    /// The machine's monotonic clock (ms) when the loop's clock read 0.
    origin_ms: u64,
}

impl ClientTable {
    /// A new, empty table of `capacity` entries with ledgers for `workers` workers, its
    /// hash keyed with kernel random bytes.
    pub fn create(capacity: usize, workers: usize) -> io::Result<ClientTable> {
        let ledgers = ledgers_for(workers);
        let shm = SharedWords::create(table::words_needed(capacity, ledgers))?;
        let mut seed = [0u8; 16];
        crate::sys::random::fill(&mut seed)?;
        let (a, b) = seed.split_at(8);
        let seed = [
            u64::from_ne_bytes(a.try_into().unwrap_or_default()),
            u64::from_ne_bytes(b.try_into().unwrap_or_default()),
        ];
        let lay = Layout::format(shm.words(), capacity, ledgers, seed).map_err(io::Error::other)?;
        Ok(ClientTable::over(shm, lay))
    }

    /// The table whose descriptor a parent handed over.
    pub fn adopt(fd: OwnedFd) -> io::Result<ClientTable> {
        let shm = SharedWords::adopt(fd)?;
        let lay = Layout::read(shm.words()).map_err(io::Error::other)?;
        Ok(ClientTable::over(shm, lay))
    }

    fn over(shm: SharedWords, lay: Layout) -> ClientTable {
        ClientTable {
            shm,
            lay,
            ledger: None,
            origin_ms: crate::sys::clock::monotonic_ms(),
        }
    }

    fn table(&self) -> Table<'_> {
        Table::new(self.shm.words(), self.lay)
    }

    /// The descriptor to hand to a worker or a successor.
    pub fn fd(&self) -> RawFd {
        self.shm.fd()
    }

    /// Entries.
    pub fn capacity(&self) -> usize {
        self.lay.capacity()
    }

    /// Ledgers (worker processes that can count at once).
    pub fn ledgers(&self) -> usize {
        self.lay.ledgers()
    }

    /// Ledgers held by a process `alive` says is there.
    pub fn ledgers_held(&self, alive: impl Fn(u32) -> bool) -> usize {
        self.table().ledgers_held(alive)
    }

    /// Entries holding a client now.
    pub fn entries(&self) -> u64 {
        self.table().entries()
    }

    /// Says that the loop's clock reads 0 now (its `now_ms` are counted from here).
    pub fn set_origin(&mut self) {
        self.origin_ms = crate::sys::clock::monotonic_ms();
    }

    /// The machine's clock when the loop's reads `now_ms`.
    pub fn machine_ms(&self, now_ms: u64) -> u64 {
        self.origin_ms + now_ms
    }

    /// Takes a ledger for this worker process (a dead worker's after giving back what it
    /// held); returns the sessions given back. Without one (every ledger is held by a live
    /// process) the worker still counts, but what it holds would not be given back were it
    /// killed: an error says so.
    pub fn join(&mut self) -> io::Result<u64> {
        let pid = std::process::id();
        match self.table().take_ledger(pid, crate::sys::process::is_alive) {
            Some((l, given)) => {
                self.ledger = Some((l, pid));
                Ok(given)
            }
            None => Err(io::Error::other(format!(
                "every one of the client table's {} ledgers is held by a live process",
                self.ledgers()
            ))),
        }
    }

    /// Holds a new session of `c` to `limit`, at `now_ms` of the loop's clock.
    #[inline]
    pub fn admit(&self, c: &Client, limit: &Limit, now_ms: u64) -> Admission {
        let ledger = self.ledger.map(|(l, _)| l);
        self.table()
            .admit(c, limit, ledger, self.machine_ms(now_ms))
    }

    /// A counted session ended.
    #[inline]
    pub fn release(&self, t: Ticket) {
        self.table().release(t, self.ledger.map(|(l, _)| l));
    }

    /// The clients with sessions running or attempted lately, at `now_ms` of the loop.
    pub fn rows(&self, now_ms: u64) -> Vec<Row> {
        self.table().rows(self.machine_ms(now_ms))
    }

    /// Resets the clients in `cidr` (see `Table::forget`).
    pub fn forget(&self, cidr: &Cidr) -> Forgot {
        self.table().forget(cidr)
    }

    /// The supervisor's chores: gives back what dead workers' ledgers list (`reaped`, a
    /// worker just reaped; and any whose process is gone), frees claims their process
    /// left half-done since the last call (`stuck` keeps them between calls). Returns the
    /// sessions given back and the claims freed.
    pub fn sweep(&self, reaped: Option<u32>, stuck: Option<&mut Vec<(usize, u64)>>) -> (u64, u64) {
        let t = self.table();
        let given = t.sweep_ledgers(reaped, std::process::id(), crate::sys::process::is_alive);
        let freed = stuck.map_or(0, |s| t.free_stuck_claims(s));
        (given, freed)
    }
}

/// How many clients each list of `show clients` names.
pub const SHOW_TOP: usize = 10;

/// The header of a list of `show clients`.
pub const CLIENTS_HEADER: &str = "client route sessions rate_per_s";

/// `show clients`: the [`SHOW_TOP`] clients with the most sessions now, then those starting
/// the most sessions a second (refused ones included); `route` is the scope's name (`all`:
/// counted on every route without limits of its own).
pub fn show_clients(
    mut rows: Vec<Row>,
    route: impl Fn(u64) -> String,
    entries: u64,
    capacity: usize,
) -> String {
    use std::fmt::Write as _;
    let mut o = format!("clients in the table: {entries} of {capacity} entries\n");
    let list = |o: &mut String, title: &str, rows: &[Row]| {
        let _ = writeln!(o, "{title}:\n{CLIENTS_HEADER}");
        for r in rows.iter().take(SHOW_TOP) {
            let _ = writeln!(
                o,
                "{} {} {} {}",
                r.block,
                route(r.scope),
                r.sessions,
                r.rate
            );
        }
    };
    rows.sort_by(|a, b| b.sessions.cmp(&a.sessions).then(b.rate.cmp(&a.rate)));
    let busy: Vec<Row> = rows.iter().filter(|r| r.sessions > 0).cloned().collect();
    list(&mut o, "by sessions", &busy);
    rows.sort_by(|a, b| b.rate.cmp(&a.rate).then(b.sessions.cmp(&a.sessions)));
    let fast: Vec<Row> = rows.into_iter().filter(|r| r.rate > 0).collect();
    list(&mut o, "by rate", &fast);
    o
}

impl Drop for ClientTable {
    fn drop(&mut self) {
        if let Some((l, pid)) = self.ledger.take() {
            self.table().leave_ledger(l, pid);
        }
    }
}
