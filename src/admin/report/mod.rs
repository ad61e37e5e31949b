//! One worker's counters and gauges at one instant, or several workers' merged: the typed
//! data behind `show stats` and `/metrics`, in a lone worker and after the supervisor merged
//! the workers' reports alike.
//!
//! Every metric is named once, in [`TABLE`]: its key (in `show stats` and on the channel),
//! its Prometheus family, its help text, where a worker (or the supervisor) reads it, how it
//! shows in `show stats`, and its merge rule. Rendering, merging and the channel's line
//! format (`admin::channel`) all walk the table; none names a metric. A report is built per
//! command or scrape, never per event: the hot path only increments [`Stats`] fields.

mod family;
mod table;

pub use family::{Def, Gauges, Kind, Merge, Process, Read, Show, Supervision, Value, STATES};
pub use table::TABLE;

use crate::worker::stats::{Histogram, Stats};

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
    use crate::logger::Counters;
    use crate::worker::stats::CloseReason;
    use crate::worker::upstreams::Member;

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
