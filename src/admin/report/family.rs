//! The vocabulary of a report: how a family merges ([`Merge`]), what Prometheus type it has
//! ([`Kind`]), how `show stats` shows it ([`Show`]), where its values are read ([`Read`]),
//! one family ([`Def`]), its values ([`Value`]), and what the loops know besides their
//! counters ([`Gauges`], [`Supervision`], [`Process`]). Types only; the families are in
//! `table`.

use crate::logger::Counters;
use crate::worker::session::State;
use crate::worker::stats::{Histogram, Stats};
use crate::worker::upstreams::Member;

/// How the values of one family from several workers become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Added up: counters, and gauges that count something each worker holds.
    Sum,
    /// The largest: settings and flags that are the same on every worker or true on any.
    Max,
    /// The same on every worker (runtime changes reach them all): the first worker's.
    Same,
    /// The report merged last: the supervisor merges its own after its workers', so a fact
    /// of the process that answers (its pid, its uptime) is the supervisor's under
    /// `sluice run`, and a lone worker's own otherwise.
    Last,
}

/// The Prometheus type of a family; `Text` families are in `show stats` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A value now.
    Gauge,
    /// Observations in buckets of [`Histogram::BOUNDS_MS`].
    Histogram,
    /// Words, not a number.
    Text,
}

/// How a family shows in `show stats`.
#[derive(Debug, Clone, Copy)]
pub enum Show {
    /// Not shown.
    No,
    /// `KEY=value`.
    Key,
    /// `KEY=` the sum of its series.
    Total,
    /// One line per series: the prefix, then the label values joined by `.`.
    Each(&'static str),
    /// One line per series, named by its (only) label value through the table.
    Renamed(&'static [(&'static str, &'static str)]),
}

/// Where a family's values come from.
#[derive(Clone, Copy)]
pub enum Read {
    /// A worker's counters and gauges.
    Worker(fn(&Stats, &Gauges) -> Value),
    /// The supervisor's own bookkeeping.
    Supervisor(fn(&Supervision) -> Value),
    /// A fact every process knows of itself (a worker and the supervisor alike).
    Process(fn(&Process) -> Value),
    /// The log's counters of the process that reports, a worker's and the supervisor's
    /// alike (every process logs): summed like the workers' counters.
    Log(fn(&Counters) -> Value),
}

/// One family of metrics.
pub struct Def {
    /// Its name in `show stats` (as [`Show`] says) and on the supervisor's channel.
    pub key: &'static str,
    /// Its Prometheus family name; `None`: not exposed.
    pub prom: Option<&'static str>,
    /// Its Prometheus type.
    pub kind: Kind,
    /// Its label names (empty for a family of one series).
    pub labels: &'static [&'static str],
    /// Its Prometheus help text.
    pub help: &'static str,
    /// How workers' values merge.
    pub merge: Merge,
    /// How it shows in `show stats`.
    pub show: Show,
    /// Where its values come from.
    pub read: Read,
}

/// The values of one family in one report.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not reported (captures without a capture directory; the supervisor's own families in
    /// a worker's report).
    Absent,
    /// The value of a family of one series.
    One(u64),
    /// One value per series, by label values (in the order of [`Def::labels`]).
    Labelled(Vec<(Vec<String>, u64)>),
    /// A histogram.
    Histogram(Histogram),
    /// One histogram per series, by label values.
    Histograms(Vec<(Vec<String>, Histogram)>),
    /// Words.
    Text(String),
}

/// What a worker's loop knows at the instant of a report besides its counters.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Sessions by state, in [`STATES`] order.
    pub sessions_by_state: [u64; STATES.len()],
    /// Buffers lent by the pool.
    pub buffers_in_use: u64,
    /// Buffer size in bytes.
    pub buffer_size: u64,
    /// True while draining.
    pub draining: bool,
    /// Splice pipes lent.
    pub splice_pipes_in_use: u64,
    /// Captures queued and dropped, when a capture directory is set.
    pub captures: Option<(u64, u64)>,
    /// The trace rules in force, as people read them, comma-separated.
    pub traces: String,
    /// The worker process.
    pub process: Process,
    /// This process's log lines.
    pub log: Counters,
    /// Every configured upstream as the worker sees it.
    pub upstreams: Vec<Member>,
    /// The worker's clock (ms) when the report was made: what `upstreams`' ejections mean.
    pub now_ms: u64,
    /// This worker's number under its supervisor (0 alone).
    pub worker: usize,
    /// Descriptors this worker holds and may hold (`None`: unknown here).
    pub descriptors: (Option<u64>, Option<u64>),
    /// Sessions open now by route slot (`Stats::routes`), those that chose a route.
    pub route_sessions: Vec<u64>,
    /// Bytes (up, down) the sessions open now wrote so far, by route slot: a route's bytes
    /// are its closed sessions' plus these.
    pub route_live_bytes: Vec<(u64, u64)>,
    /// The routes in force, each with its upstreams' names, in config order, the default
    /// route last.
    pub routes_in_force: Vec<(String, Vec<String>)>,
    /// Clients in the machine's client table, and the entries it holds.
    pub client_table: (u64, u64),
}

/// What the supervisor counts itself.
#[derive(Debug, Default, Clone)]
pub struct Supervision {
    /// Workers whose reports went into this one.
    pub workers: u64,
    /// Workers respawned after dying.
    pub restarts: u64,
    /// The supervisor's own log lines.
    pub log: Counters,
    /// The supervisor process.
    pub process: Process,
}

/// The process making a report.
#[derive(Debug, Default, Clone)]
pub struct Process {
    /// Its pid.
    pub pid: u64,
    /// Seconds since it started serving.
    pub uptime_seconds: u64,
    /// When it started serving, in seconds since the epoch.
    pub start_unix: u64,
}

impl Process {
    /// This process, serving since `started`.
    pub fn this(started: std::time::Instant) -> Process {
        let uptime = started.elapsed();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Process {
            pid: u64::from(std::process::id()),
            uptime_seconds: uptime.as_secs(),
            start_unix: now.saturating_sub(uptime).as_secs(),
        }
    }
}

/// The states reported in `sluice_sessions`, in order.
pub const STATES: [State; 5] = [
    State::Opened,
    State::HeaderParsed,
    State::Connecting,
    State::Connected,
    State::HalfClosed,
];
