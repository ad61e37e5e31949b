//! Every metric sluice has, named once ([`TABLE`]): key, Prometheus family, help, where it
//! is read, how `show stats` shows it and how workers' values merge. Data only.

use super::family::{Def, Gauges, Kind, Merge, Read, Show, Value, STATES};
use crate::worker::stats::CloseReason;
use crate::worker::upstreams::{Failure, Member};

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
