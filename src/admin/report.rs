//! One worker's counters and gauges at one instant, or several workers' merged: the typed
//! data behind `show stats` and `/metrics`, in a lone worker and after the supervisor merged
//! the workers' reports alike.
//!
//! Every metric is named once, in [`TABLE`]: its key (in `show stats` and on the channel),
//! its Prometheus family, its help text, where a worker (or the supervisor) reads it, how it
//! shows in `show stats`, and its merge rule. Rendering, merging and the channel's line
//! format (`admin::channel`) all walk the table; none names a metric. A report is built per
//! command or scrape, never per event: the hot path only increments [`Stats`] fields.

use crate::logger::Counters;
use crate::worker::session::State;
use crate::worker::stats::{CloseReason, Histogram, Stats};
use crate::worker::upstreams::{Failure, Member};

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

fn one(n: u64) -> Value {
    Value::One(n)
}

/// One series per upstream of the worker's table.
fn per_upstream(g: &Gauges, f: impl Fn(&Member) -> u64) -> Value {
    Value::Labelled(
        g.upstreams
            .iter()
            .map(|m| (vec![m.name.clone()], f(m)))
            .collect(),
    )
}

fn labelled<'a, L: ToString + 'a>(series: impl Iterator<Item = (L, u64)>) -> Value {
    Value::Labelled(series.map(|(l, n)| (vec![l.to_string()], n)).collect())
}

/// Every metric, in the order of `show stats` and of the exposition: `show stats` starts
/// with what the answering process is (version, pid, workers, uptime).
pub static TABLE: &[Def] = &[
    Def {
        key: "build_info",
        prom: Some("sluice_build_info"),
        kind: Kind::Gauge,
        labels: &["version", "commit"],
        help: "Build information.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, _| {
            Value::Labelled(vec![(
                vec![
                    crate::version::VERSION.to_string(),
                    crate::version::COMMIT.to_string(),
                ],
                1,
            )])
        }),
    },
    Def {
        key: "version",
        prom: None,
        kind: Kind::Text,
        labels: &[],
        help: "Version, git commit and build date.",
        merge: Merge::Last,
        show: Show::Key,
        read: Read::Process(|_| Value::Text(crate::version::LONG.to_string())),
    },
    Def {
        key: "pid",
        prom: None,
        kind: Kind::Gauge,
        labels: &[],
        help: "The answering process: the supervisor under `sluice run`.",
        merge: Merge::Last,
        show: Show::Key,
        read: Read::Process(|p| one(p.pid)),
    },
    Def {
        key: "workers",
        prom: Some("sluice_workers"),
        kind: Kind::Gauge,
        labels: &[],
        help: "Worker processes answering this scrape.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Supervisor(|s| one(s.workers)),
    },
    Def {
        key: "uptime_seconds",
        prom: None,
        kind: Kind::Gauge,
        labels: &[],
        help: "Seconds since the answering process started.",
        merge: Merge::Last,
        show: Show::Key,
        read: Read::Process(|p| one(p.uptime_seconds)),
    },
    Def {
        key: "sessions",
        prom: Some("sluice_sessions"),
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Sessions open now, by state.",
        merge: Merge::Sum,
        show: Show::Total,
        read: Read::Worker(|_, g| labelled(STATES.iter().zip(g.sessions_by_state))),
    },
    Def {
        key: "accepted",
        prom: Some("sluice_accepted_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Connections accepted into a session.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|s, _| one(s.accepted)),
    },
    Def {
        key: "refused",
        prom: Some("sluice_refused_total"),
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Connections refused at accept, by reason.",
        merge: Merge::Sum,
        show: Show::Each("refused_"),
        read: Read::Worker(|s, _| labelled([("max_sessions", s.refused_max_sessions)].into_iter())),
    },
    Def {
        key: "accept_exhausted",
        prom: Some("sluice_accept_exhausted_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "accept() failures for lack of descriptors or memory.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|s, _| one(s.accept_exhausted)),
    },
    Def {
        key: "closed",
        prom: Some("sluice_closed_total"),
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Sessions closed, by reason.",
        merge: Merge::Sum,
        show: Show::Each("closed."),
        read: Read::Worker(|s, _| labelled(s.closed_by_reason().map(|(r, n)| (r.as_str(), n)))),
    },
    Def {
        key: "bytes",
        prom: Some("sluice_bytes_total"),
        kind: Kind::Counter,
        labels: &["direction"],
        help: "Bytes written, by direction.",
        merge: Merge::Sum,
        show: Show::Renamed(&[
            ("client_to_upstream", "bytes_up"),
            ("upstream_to_client", "bytes_down"),
        ]),
        read: Read::Worker(|s, _| {
            labelled(
                [
                    ("client_to_upstream", s.bytes_up),
                    ("upstream_to_client", s.bytes_down),
                ]
                .into_iter(),
            )
        }),
    },
    Def {
        key: "bytes_spliced",
        prom: Some("sluice_spliced_bytes_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Bytes moved by splice(2), without a copy.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|s, _| one(s.bytes_spliced)),
    },
    Def {
        key: "connect_failures",
        prom: Some("sluice_upstream_connect_failures_total"),
        kind: Kind::Counter,
        labels: &["upstream", "reason"],
        help: "Upstream connect attempts that failed, by upstream (as configured) and reason.",
        merge: Merge::Sum,
        show: Show::Total,
        read: Read::Worker(|_, g| {
            Value::Labelled(
                g.upstreams
                    .iter()
                    .flat_map(|m| {
                        Failure::ALL.iter().zip(m.failures).map(|(why, n)| {
                            (vec![m.name.clone(), why.as_str().to_string()], n)
                        })
                    })
                    .collect(),
            )
        }),
    },
    Def {
        key: "parse_errors",
        prom: Some("sluice_parse_errors_total"),
        kind: Kind::Counter,
        labels: &["parser", "kind"],
        help: "Parse errors, by parser and kind.",
        merge: Merge::Sum,
        show: Show::Each("parse_errors."),
        read: Read::Worker(|s, _| {
            Value::Labelled(
                s.parse_errors
                    .iter()
                    .map(|((p, k), n)| (vec![p.to_string(), k.to_string()], *n))
                    .collect(),
            )
        }),
    },
    Def {
        key: "connect_rejected",
        prom: Some("sluice_connect_rejected_total"),
        kind: Kind::Counter,
        labels: &["status"],
        help: "CONNECT replies other than 2xx, by status.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| labelled(s.connect_status.iter().map(|(st, n)| (st, *n)))),
    },
    Def {
        key: "name_mismatches",
        prom: Some("sluice_name_mismatches_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Sessions whose SNI and PROXY AUTHORITY differed.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| one(s.name_mismatches)),
    },
    Def {
        key: "connect_seconds",
        prom: Some("sluice_upstream_connect_seconds"),
        kind: Kind::Histogram,
        labels: &["upstream"],
        help: "Upstream TCP connect latency, by upstream (as configured).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| {
            Value::Histograms(
                g.upstreams
                    .iter()
                    .map(|m| (vec![m.name.clone()], m.connect.clone()))
                    .collect(),
            )
        }),
    },
    Def {
        key: "upstream_up",
        prom: Some("sluice_upstream_up"),
        kind: Kind::Gauge,
        labels: &["upstream"],
        help: "1 while an upstream is healthy (its active check passes and it is not ejected) on any worker.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| {
            per_upstream(g, |m| u64::from(m.health(g.now_ms) == "up"))
        }),
    },
    Def {
        key: "upstream_sessions",
        prom: Some("sluice_upstream_sessions"),
        kind: Kind::Gauge,
        labels: &["upstream"],
        help: "Sessions holding an upstream now (connecting or connected).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| per_upstream(g, |m| m.sessions)),
    },
    Def {
        key: "upstream_sessions_total",
        prom: Some("sluice_upstream_sessions_total"),
        kind: Kind::Counter,
        labels: &["upstream"],
        help: "Sessions that connected to an upstream.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| per_upstream(g, |m| m.sessions_total)),
    },
    Def {
        key: "upstream_bytes",
        prom: Some("sluice_upstream_bytes_total"),
        kind: Kind::Counter,
        labels: &["upstream", "direction"],
        help: "Bytes of an upstream's sessions (up: client to upstream), counted when they close.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| {
            Value::Labelled(
                g.upstreams
                    .iter()
                    .flat_map(|m| {
                        [("up", m.bytes_up), ("down", m.bytes_down)]
                            .map(|(d, n)| (vec![m.name.clone(), d.to_string()], n))
                    })
                    .collect(),
            )
        }),
    },
    Def {
        key: "upstream_ejections",
        prom: Some("sluice_upstream_ejections_total"),
        kind: Kind::Counter,
        labels: &["upstream"],
        help: "Times an upstream was ejected after connect failures in a row.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| per_upstream(g, |m| m.ejections)),
    },
    Def {
        key: "upstream_state",
        prom: None,
        kind: Kind::Gauge,
        labels: &["upstream", "state"],
        help: "The operator's state of an upstream (ready, drain, maint).",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| {
            Value::Labelled(
                g.upstreams
                    .iter()
                    .map(|m| (vec![m.name.clone(), m.admin.as_str().to_string()], 1))
                    .collect(),
            )
        }),
    },
    Def {
        key: "upstream_health",
        prom: None,
        kind: Kind::Gauge,
        labels: &["upstream", "health"],
        help: "An upstream's health on the workers (up, down, ejected).",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| {
            Value::Labelled(
                g.upstreams
                    .iter()
                    .map(|m| (vec![m.name.clone(), m.health(g.now_ms).to_string()], 1))
                    .collect(),
            )
        }),
    },
    Def {
        key: "session_seconds",
        prom: Some("sluice_session_duration_seconds"),
        kind: Kind::Histogram,
        labels: &[],
        help: "Session duration.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| Value::Histogram(s.session_duration.clone())),
    },
    Def {
        key: "buffers_in_use",
        prom: Some("sluice_buffers_in_use"),
        kind: Kind::Gauge,
        labels: &[],
        help: "Buffers lent by the pool.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|_, g| one(g.buffers_in_use)),
    },
    Def {
        key: "buffer_size",
        prom: Some("sluice_buffer_size_bytes"),
        kind: Kind::Gauge,
        labels: &[],
        help: "Size of one buffer.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| one(g.buffer_size)),
    },
    Def {
        key: "draining",
        prom: Some("sluice_draining"),
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while the worker drains.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| one(u64::from(g.draining))),
    },
    Def {
        key: "process_start_time_seconds",
        prom: Some("sluice_process_start_time_seconds"),
        kind: Kind::Gauge,
        labels: &[],
        help: "When the answering process started, in seconds since the epoch: the supervisor under `sluice run`.",
        merge: Merge::Last,
        show: Show::No,
        read: Read::Process(|p| one(p.start_unix)),
    },
    Def {
        key: "worker_sessions",
        prom: Some("sluice_worker_sessions"),
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Sessions open now, by worker (how evenly SO_REUSEPORT spreads them).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| {
            labelled([(g.worker, g.sessions_by_state.iter().sum())].into_iter())
        }),
    },
    Def {
        key: "worker_open_fds",
        prom: Some("sluice_worker_open_fds"),
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Descriptors a worker holds (Linux).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| match g.descriptors.0 {
            Some(n) => labelled([(g.worker, n)].into_iter()),
            None => Value::Absent,
        }),
    },
    Def {
        key: "worker_max_fds",
        prom: Some("sluice_worker_max_fds"),
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "The open-file limit of a worker (RLIMIT_NOFILE).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|_, g| match g.descriptors.1 {
            Some(n) => labelled([(g.worker, n)].into_iter()),
            None => Value::Absent,
        }),
    },
    Def {
        key: "config_reloads",
        prom: Some("sluice_config_reloads_total"),
        kind: Kind::Counter,
        labels: &["result"],
        help: "Config reloads (SIGHUP, reload, set) applied and refused, as every worker did them.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|s, _| {
            labelled(
                [("success", s.reloads.success), ("failure", s.reloads.failure)].into_iter(),
            )
        }),
    },
    Def {
        key: "config_last_reload_success",
        prom: Some("sluice_config_last_reload_success_timestamp_seconds"),
        kind: Kind::Gauge,
        labels: &[],
        help: "When the config in force was applied (at start, or the last reload applied), seconds since the epoch.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|s, _| one(s.reloads.last_success_unix)),
    },
    Def {
        key: "route_upstreams",
        prom: Some("sluice_route_upstream_info"),
        kind: Kind::Gauge,
        labels: &["route", "upstream"],
        help: "1 for each upstream of each route in force (the default route's included).",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| {
            Value::Labelled(
                g.routes_in_force
                    .iter()
                    .flat_map(|(r, ups)| ups.iter().map(move |u| (vec![r.clone(), u.clone()], 1)))
                    .collect(),
            )
        }),
    },
    Def {
        key: "route_sessions",
        prom: Some("sluice_route_sessions"),
        kind: Kind::Gauge,
        labels: &["route"],
        help: "Sessions open now that chose the route.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, g| {
            labelled(s.routes.names.iter().zip(g.route_sessions.iter().copied()))
        }),
    },
    Def {
        key: "route_sessions_total",
        prom: Some("sluice_route_sessions_total"),
        kind: Kind::Counter,
        labels: &["route"],
        help: "Sessions that chose the route (those it denied included).",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| labelled(s.routes.iter().map(|(r, c)| (r, c.sessions)))),
    },
    Def {
        key: "route_refused",
        prom: Some("sluice_route_refused_total"),
        kind: Kind::Counter,
        labels: &["route", "reason"],
        help: "Sessions the route turned away, by reason.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| {
            Value::Labelled(
                s.routes
                    .iter()
                    .flat_map(|(r, c)| {
                        CloseReason::ALL
                            .iter()
                            .filter(|why| why.is_refusal())
                            .map(move |why| {
                                let n = c.closed.get(why.index()).copied().unwrap_or(0);
                                (vec![r.to_string(), why.as_str().to_string()], n)
                            })
                    })
                    .collect(),
            )
        }),
    },
    Def {
        key: "route_bytes",
        prom: Some("sluice_route_bytes_total"),
        kind: Kind::Counter,
        labels: &["route", "direction"],
        help: "Bytes written for the route's sessions, by direction.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, g| {
            Value::Labelled(
                s.routes
                    .iter()
                    .enumerate()
                    .flat_map(|(i, (r, c))| {
                        let live = g.route_live_bytes.get(i).copied().unwrap_or((0, 0));
                        [
                            ("client_to_upstream", c.bytes_up + live.0),
                            ("upstream_to_client", c.bytes_down + live.1),
                        ]
                        .map(|(d, n)| (vec![r.to_string(), d.to_string()], n))
                    })
                    .collect(),
            )
        }),
    },
    Def {
        key: "route_connect_failures",
        prom: Some("sluice_route_connect_failures_total"),
        kind: Kind::Counter,
        labels: &["route"],
        help: "Upstream connect attempts of the route's sessions that failed.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| labelled(s.routes.iter().map(|(r, c)| (r, c.connect_failures)))),
    },
    Def {
        key: "route_session_seconds",
        prom: Some("sluice_route_session_duration_seconds"),
        kind: Kind::Histogram,
        labels: &["route"],
        help: "Duration of the route's sessions.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| {
            Value::Histograms(
                s.routes
                    .iter()
                    .map(|(r, c)| (vec![r.to_string()], c.duration.clone()))
                    .collect(),
            )
        }),
    },
    Def {
        key: "route_connect_seconds",
        prom: Some("sluice_route_connect_seconds"),
        kind: Kind::Histogram,
        labels: &["route"],
        help: "Upstream TCP connect latency of the route's sessions.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| {
            Value::Histograms(
                s.routes
                    .iter()
                    .map(|(r, c)| (vec![r.to_string()], c.connect.clone()))
                    .collect(),
            )
        }),
    },
    Def {
        key: "splice_pipes_in_use",
        prom: None,
        kind: Kind::Gauge,
        labels: &[],
        help: "Splice pipes lent.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|_, g| one(g.splice_pipes_in_use)),
    },
    Def {
        key: "captures_queued",
        prom: None,
        kind: Kind::Gauge,
        labels: &[],
        help: "Captures waiting for the writer thread.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|_, g| g.captures.map_or(Value::Absent, |(q, _)| one(q))),
    },
    Def {
        key: "captures_dropped",
        prom: None,
        kind: Kind::Counter,
        labels: &[],
        help: "Captures dropped because the writer's queue was full.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|_, g| g.captures.map_or(Value::Absent, |(_, d)| one(d))),
    },
    Def {
        key: "traces",
        prom: None,
        kind: Kind::Text,
        labels: &[],
        help: "Trace rules in force.",
        merge: Merge::Same,
        show: Show::Key,
        read: Read::Worker(|_, g| Value::Text(g.traces.clone())),
    },
    Def {
        key: "log_lines",
        prom: Some("sluice_log_lines_total"),
        kind: Kind::Counter,
        labels: &["level"],
        help: "Log lines logged, by level (dropped ones included).",
        merge: Merge::Sum,
        show: Show::Each("log_lines."),
        read: Read::Log(|c| {
            labelled(
                ["error", "warn", "info", "debug", "trace"]
                    .into_iter()
                    .zip(c.lines),
            )
        }),
    },
    Def {
        key: "log_lines_dropped",
        prom: Some("sluice_log_lines_dropped_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Log lines dropped: the log buffer was full (the sink did not keep up) or the sink failed.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Log(|c| one(c.dropped)),
    },
    Def {
        key: "client_table_full",
        prom: Some("sluice_client_table_full_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Sessions admitted without a per-client limit: no room for their client in the client table.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|s, _| one(s.client_table_full)),
    },
    Def {
        key: "client_table_entries",
        prom: Some("sluice_client_table_entries"),
        kind: Kind::Gauge,
        labels: &[],
        help: "Clients in the machine's client table (one table shared by every worker).",
        merge: Merge::Max,
        show: Show::Key,
        read: Read::Worker(|_, g| one(g.client_table.0)),
    },
    Def {
        key: "client_table_size",
        prom: Some("sluice_client_table_size"),
        kind: Kind::Gauge,
        labels: &[],
        help: "Entries the client table holds (ENVOY_CLIENT_TABLE_SIZE when it was made).",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, g| one(g.client_table.1)),
    },
    Def {
        key: "worker_restarts",
        prom: Some("sluice_worker_restarts_total"),
        kind: Kind::Counter,
        labels: &[],
        help: "Workers respawned after dying.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Supervisor(|s| one(s.restarts)),
    },
];

/// The values of every family of [`TABLE`], in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    values: Vec<Value>,
}

impl Report {
    /// A worker's report.
    pub fn of_worker(stats: &Stats, gauges: &Gauges) -> Report {
        Report::read(|r| match r {
            Read::Worker(f) => f(stats, gauges),
            Read::Process(f) => f(&gauges.process),
            Read::Log(f) => f(&gauges.log),
            Read::Supervisor(_) => Value::Absent,
        })
    }

    /// The supervisor's own families.
    pub fn of_supervisor(s: &Supervision) -> Report {
        Report::read(|r| match r {
            Read::Supervisor(f) => f(s),
            Read::Process(f) => f(&s.process),
            Read::Log(f) => f(&s.log),
            Read::Worker(_) => Value::Absent,
        })
    }

    fn read(f: impl Fn(Read) -> Value) -> Report {
        Report {
            values: TABLE.iter().map(|d| f(d.read)).collect(),
        }
    }

    /// A report from values in [`TABLE`] order (`admin::channel` decodes them); missing
    /// ones are absent.
    pub fn from_values(mut values: Vec<Value>) -> Report {
        values.resize(TABLE.len(), Value::Absent);
        Report { values }
    }

    /// The values of the family `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.families().find(|(d, _)| d.key == key).map(|(_, v)| v)
    }

    /// The values of the family exposed as `prom` (absent when the table has none).
    pub fn get(&self, prom: &str) -> &Value {
        self.families()
            .find(|(d, _)| d.prom == Some(prom))
            .map_or(&Value::Absent, |(_, v)| v)
    }

    /// Every family with its values, in [`TABLE`] order.
    pub fn families(&self) -> impl Iterator<Item = (&'static Def, &Value)> {
        TABLE.iter().zip(self.values.iter())
    }

    /// Adds `other` into this report, family by family, by each one's merge rule.
    pub fn merge(&mut self, other: &Report) {
        for ((def, mine), theirs) in TABLE.iter().zip(self.values.iter_mut()).zip(&other.values) {
            merge_value(def.merge, mine, theirs);
        }
    }

    /// `show stats`: `key=value` lines.
    pub fn show_stats(&self) -> String {
        let mut o = String::new();
        let mut line = |k: &str, v: &dyn std::fmt::Display| {
            o.push_str(k);
            o.push('=');
            o.push_str(&v.to_string());
            o.push('\n');
        };
        for (def, value) in self.families() {
            match (def.show, value) {
                (Show::No, _) | (_, Value::Absent) => {}
                (Show::Key | Show::Total, Value::One(n)) => line(def.key, n),
                (Show::Key, Value::Text(t)) => line(def.key, t),
                (Show::Total, Value::Labelled(series)) => {
                    line(def.key, &series.iter().map(|(_, n)| n).sum::<u64>())
                }
                (Show::Each(prefix), Value::Labelled(series)) => {
                    for (labels, n) in series {
                        line(&format!("{prefix}{}", labels.join(".")), n);
                    }
                }
                (Show::Renamed(names), Value::Labelled(series)) => {
                    for (labels, n) in series {
                        let label = labels.first().map_or("", String::as_str);
                        let name = names.iter().find(|(l, _)| *l == label).map(|(_, k)| *k);
                        line(name.unwrap_or(label), n);
                    }
                }
                _ => {}
            }
        }
        o
    }
}

fn merge_value(rule: Merge, mine: &mut Value, theirs: &Value) {
    let combine = |a: u64, b: u64| match rule {
        Merge::Sum => a.saturating_add(b),
        Merge::Max => a.max(b),
        Merge::Same => a,
        Merge::Last => b,
    };
    match (&mut *mine, theirs) {
        (_, Value::Absent) => {}
        (Value::Text(a), Value::Text(b)) if rule == Merge::Last => a.clone_from(b),
        (Value::Absent, t) => *mine = t.clone(),
        (Value::One(a), Value::One(b)) => *a = combine(*a, *b),
        (Value::Labelled(a), Value::Labelled(b)) => {
            for (labels, n) in b {
                match a.iter_mut().find(|(l, _)| l == labels) {
                    Some((_, m)) => *m = combine(*m, *n),
                    None => a.push((labels.clone(), *n)),
                }
            }
        }
        (Value::Histogram(a), Value::Histogram(b)) => merge_histogram(a, b, combine),
        (Value::Histograms(a), Value::Histograms(b)) => {
            // by label values: a route table that changed at a reload merges by name
            for (labels, h) in b {
                match a.iter_mut().find(|(l, _)| l == labels) {
                    Some((_, m)) => merge_histogram(m, h, combine),
                    None => a.push((labels.clone(), h.clone())),
                }
            }
        }
        // Text is the same everywhere (Merge::Same); values of another shape cannot come from
        // the same binary: the first stays.
        _ => {}
    }
}

fn merge_histogram(a: &mut Histogram, b: &Histogram, combine: impl Fn(u64, u64) -> u64) {
    for (x, y) in a.counts.iter_mut().zip(b.counts) {
        *x = combine(*x, y);
    }
    a.sum_ms = combine(a.sum_ms, b.sum_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::stats::CloseReason;

    fn sample() -> (Stats, Gauges) {
        let mut s = Stats {
            accepted: 10,
            bytes_up: 100,
            bytes_down: 7,
            bytes_spliced: 50,
            ..Stats::default()
        };
        s.close(CloseReason::Done);
        s.parse_error("tls", "not_client_hello");
        s.connect_status.insert(403, 2);
        let mut up = Member::new("127.0.0.1:9", 1000);
        up.connect.observe(3);
        let g = Gauges {
            upstreams: vec![up],
            sessions_by_state: [1, 0, 0, 2, 0],
            buffers_in_use: 4,
            buffer_size: 16384,
            traces: "name example.test".into(),
            process: Process {
                pid: 7,
                uptime_seconds: 5,
                start_unix: 0,
            },
            log: Counters {
                lines: [0, 0, 5, 0, 0],
                dropped: 2,
            },
            ..Gauges::default()
        };
        (s, g)
    }

    #[test]
    fn keys_and_prometheus_names_are_unique() {
        let mut keys: Vec<&str> = TABLE.iter().map(|d| d.key).collect();
        let mut names: Vec<&str> = TABLE.iter().filter_map(|d| d.prom).collect();
        let (k, n) = (keys.len(), names.len());
        keys.sort_unstable();
        keys.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!((keys.len(), names.len()), (k, n));
        for d in TABLE {
            assert!(!d.key.contains(char::is_whitespace), "{}", d.key);
            assert!(
                d.kind != Kind::Text || d.prom.is_none(),
                "{}: text is not exposed",
                d.key
            );
        }
    }

    #[test]
    fn show_stats_names_each_key_once_in_the_documented_order() {
        let (s, g) = sample();
        let text = Report::of_worker(&s, &g).show_stats();
        let keys: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{text}");
        let head = format!(
            "version={}\npid=7\nuptime_seconds=5\nsessions=3\naccepted=10\nrefused_max_sessions=0\n",
            crate::version::LONG
        );
        assert!(text.starts_with(&head), "{text}");
        assert!(text.contains("\nclosed.done=1\nclosed.client_reset=0\n"));
        assert!(text.contains(
            "\nbytes_up=100\nbytes_down=7\nbytes_spliced=50\nconnect_failures=0\nparse_errors.tls.not_client_hello=1\nbuffers_in_use=4\nsplice_pipes_in_use=0\ntraces=name example.test\n"
        ));
        assert!(!text.contains("captures_"), "no capture directory");
    }

    #[test]
    fn merging_sums_counters_and_takes_the_max_of_settings() {
        let (s, g) = sample();
        let mut other = s.clone();
        other.connect_status.insert(502, 1);
        other.parse_error("proxy", "v1_too_long");
        let g2 = Gauges {
            draining: true,
            captures: Some((1, 2)),
            ..g.clone()
        };
        let mut merged = Report::of_worker(&s, &g);
        merged.merge(&Report::of_worker(&other, &g2));
        merged.merge(&Report::of_supervisor(&Supervision {
            workers: 2,
            restarts: 1,
            process: Process {
                pid: 1,
                uptime_seconds: 60,
                start_unix: 0,
            },
            log: Counters {
                lines: [1, 0, 3, 0, 0],
                dropped: 1,
            },
        }));
        let text = merged.show_stats();
        // The supervisor's own facts, and the count of its workers.
        let head = format!(
            "version={}\npid=1\nworkers=2\nuptime_seconds=60\nsessions=6\n",
            crate::version::LONG
        );
        assert!(text.starts_with(&head), "{text}");
        assert!(text.contains("accepted=20\n"), "{text}");
        // the workers' lines (sample: 5 info, 2 dropped, each) and the supervisor's
        assert!(
            text.contains("\nlog_lines.error=1\nlog_lines.warn=0\nlog_lines.info=13\nlog_lines.debug=0\nlog_lines.trace=0\nlog_lines_dropped=5\n"),
            "{text}"
        );
        assert!(text.contains("bytes_spliced=100\n"));
        assert!(text.contains("sessions=6\n"));
        assert!(text.contains("captures_queued=1\ncaptures_dropped=2\n"));
        assert!(text.contains("traces=name example.test\n"));
        assert!(text
            .contains("parse_errors.tls.not_client_hello=2\nparse_errors.proxy.v1_too_long=1\n"));
        let value = |key: &str| {
            merged
                .families()
                .find(|(d, _)| d.key == key)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(value("buffer_size"), Value::One(16384));
        assert_eq!(value("draining"), Value::One(1));
        assert_eq!(value("workers"), Value::One(2));
        assert_eq!(
            value("connect_rejected"),
            Value::Labelled(vec![(vec!["403".into()], 4), (vec!["502".into()], 1)])
        );
        let Value::Histograms(h) = value("connect_seconds") else {
            panic!()
        };
        assert_eq!(h.len(), 1, "one upstream, on both workers");
        assert_eq!(h[0].1.count(), 2);
    }

    #[test]
    fn per_route_series_merge_by_name_whatever_each_worker_s_slots() {
        // worker A took routes in the order a, b; worker B (respawned after a reload) b, c
        let worker = |names: &[&str], n: u64| {
            let mut s = Stats::default();
            for name in names {
                let slot = s.routes.slot(name);
                let c = &mut s.routes.counters[slot];
                c.sessions = n;
                c.connect.observe(n);
                c.closed[CloseReason::DeniedName.index()] = 1;
            }
            let g = Gauges {
                route_sessions: vec![1; names.len()],
                ..Gauges::default()
            };
            Report::of_worker(&s, &g)
        };
        let mut merged = worker(&["a", "b"], 2);
        merged.merge(&worker(&["b", "c"], 3));
        let by_route = |prom: &str| match merged.get(prom) {
            Value::Labelled(v) => v.clone(),
            other => panic!("{other:?}"),
        };
        let names = |v: Vec<(Vec<String>, u64)>| -> Vec<(String, u64)> {
            v.into_iter().map(|(l, n)| (l.join("/"), n)).collect()
        };
        assert_eq!(
            names(by_route("sluice_route_sessions_total")),
            [("a".into(), 2), ("b".into(), 5), ("c".into(), 3)]
        );
        assert_eq!(
            names(by_route("sluice_route_sessions")),
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]
        );
        let refused = names(by_route("sluice_route_refused_total"));
        assert!(
            refused.contains(&("b/denied_name".into(), 2)),
            "{refused:?}"
        );
        let Value::Histograms(h) = merged.get("sluice_route_connect_seconds") else {
            panic!()
        };
        let counts: Vec<(String, u64)> = h.iter().map(|(l, h)| (l.join("/"), h.count())).collect();
        assert_eq!(counts, [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]);
        // and through the channel's line format, as a supervisor reads them
        let text =
            crate::admin::channel::encode(&crate::admin::reply::Reply::Metrics(merged.clone()));
        assert_eq!(
            crate::admin::channel::decode(&text),
            Ok(crate::admin::channel::Message::Reply(
                crate::admin::reply::Reply::Metrics(merged)
            ))
        );
    }

    #[test]
    fn state_labels_are_the_states_names() {
        let (s, g) = sample();
        let r = Report::of_worker(&s, &g);
        let (_, v) = r.families().find(|(d, _)| d.key == "sessions").unwrap();
        let Value::Labelled(series) = v else { panic!() };
        let names: Vec<&str> = series.iter().map(|(l, _)| l[0].as_str()).collect();
        assert_eq!(
            names,
            [
                "Opened",
                "HeaderParsed",
                "Connecting",
                "Connected",
                "HalfClosed"
            ]
        );
    }
}
