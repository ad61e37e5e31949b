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
use crate::worker::stats::{Histogram, Stats};

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
}

impl Process {
    /// This process, serving since `started`.
    pub fn this(started: std::time::Instant) -> Process {
        Process {
            pid: u64::from(std::process::id()),
            uptime_seconds: started.elapsed().as_secs(),
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
        labels: &["version"],
        help: "Build information.",
        merge: Merge::Max,
        show: Show::No,
        read: Read::Worker(|_, _| labelled([(crate::version::VERSION, 1)].into_iter())),
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
        labels: &["listener"],
        help: "Connections accepted into a session, by listener.",
        merge: Merge::Sum,
        show: Show::Total,
        read: Read::Worker(|s, _| {
            labelled(s.listeners.iter().map(|l| (l.name.as_str(), l.accepted)))
        }),
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
        key: "listener_refused",
        prom: Some("sluice_listener_refused_total"),
        kind: Kind::Counter,
        labels: &["listener", "reason"],
        help: "Connections refused at accept, by listener and reason.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| {
            Value::Labelled(
                s.listeners
                    .iter()
                    .map(|l| {
                        let labels = vec![l.name.clone(), "max_sessions".to_string()];
                        (labels, l.refused_max_sessions)
                    })
                    .collect(),
            )
        }),
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
        labels: &[],
        help: "Upstream connect attempts that failed.",
        merge: Merge::Sum,
        show: Show::Key,
        read: Read::Worker(|s, _| one(s.connect_failures)),
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
        labels: &[],
        help: "Upstream TCP connect latency.",
        merge: Merge::Sum,
        show: Show::No,
        read: Read::Worker(|s, _| Value::Histogram(s.connect_latency.clone())),
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
        (Value::Histogram(a), Value::Histogram(b)) => {
            for (x, y) in a.counts.iter_mut().zip(b.counts) {
                *x = combine(*x, y);
            }
            a.sum_ms = combine(a.sum_ms, b.sum_ms);
        }
        // Text is the same everywhere (Merge::Same); values of another shape cannot come from
        // the same binary: the first stays.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::stats::CloseReason;

    fn sample() -> (Stats, Gauges) {
        let mut s = Stats {
            accepted: 10,
            listeners: vec![crate::worker::stats::ListenerCount {
                name: "default".into(),
                accepted: 10,
                refused_max_sessions: 0,
            }],
            bytes_up: 100,
            bytes_down: 7,
            bytes_spliced: 50,
            ..Stats::default()
        };
        s.close(CloseReason::Done);
        s.parse_error("tls", "not_client_hello");
        s.connect_status.insert(403, 2);
        s.connect_latency.observe(3);
        let g = Gauges {
            sessions_by_state: [1, 0, 0, 2, 0],
            buffers_in_use: 4,
            buffer_size: 16384,
            traces: "name example.test".into(),
            process: Process {
                pid: 7,
                uptime_seconds: 5,
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
        let Value::Histogram(h) = value("connect_seconds") else {
            panic!()
        };
        assert_eq!(h.count(), 2);
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
