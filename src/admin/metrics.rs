//! The Prometheus text exposition (format 0.0.4) of a [`Report`], a worker's or the merged
//! one of every worker: each family of `report::TABLE` that has a Prometheus name, in table
//! order, with its HELP and TYPE once. Rendering allocates a `String`; it runs per scrape,
//! never per event.

use std::fmt::Write;

use crate::admin::report::{Kind, Report, Value};
use crate::worker::stats::Histogram;

/// Renders every exposed family of `report`.
pub fn render(report: &Report) -> String {
    let mut o = String::with_capacity(8192);
    for (def, value) in report.families() {
        let Some(name) = def.prom else { continue };
        let kind = match def.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Text => continue,
        };
        if matches!(value, Value::Absent | Value::Text(_)) {
            continue;
        }
        let _ = writeln!(o, "# HELP {name} {}\n# TYPE {name} {kind}", def.help);
        match value {
            Value::One(n) => {
                let _ = writeln!(o, "{name} {n}");
            }
            Value::Labelled(series) => {
                for (values, n) in series {
                    let _ = writeln!(o, "{name}{{{}}} {n}", label_pairs(def.labels, values));
                }
            }
            Value::Histogram(h) => histogram(&mut o, name, "", h),
            Value::Histograms(series) => {
                for (values, h) in series {
                    let labels = format!("{},", label_pairs(def.labels, values));
                    histogram(&mut o, name, &labels, h);
                }
            }
            Value::Absent | Value::Text(_) => {}
        }
    }
    o
}

/// `l1="v1",l2="v2"`.
fn label_pairs(names: &[&str], values: &[String]) -> String {
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(l, v)| format!("{l}=\"{}\"", escape(v)))
        .collect();
    pairs.join(",")
}

/// One histogram's series; `labels` are its own label pairs, each followed by a comma.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cum = 0;
    for (b, n) in Histogram::BOUNDS_MS.iter().zip(h.counts) {
        cum += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}le=\"{}\"}} {cum}",
            *b as f64 / 1000.0
        );
    }
    cum += h.counts.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cum}");
    let own = labels.trim_end_matches(',');
    let own = if own.is_empty() {
        String::new()
    } else {
        format!("{{{own}}}")
    };
    let _ = writeln!(out, "{name}_sum{own} {}", h.sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count{own} {cum}");
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::{Gauges, Supervision};
    use crate::worker::stats::Stats;

    #[test]
    fn every_family_once_with_its_series_together() {
        let mut s = Stats {
            accepted: 3,
            listeners: vec![crate::worker::stats::ListenerCount {
                name: "default".into(),
                accepted: 3,
                refused_max_sessions: 0,
            }],
            ..Stats::default()
        };
        s.parse_error("tls", "not_client_hello");
        s.session_duration.observe(1500);
        let g = Gauges {
            buffer_size: 16384,
            ..Gauges::default()
        };
        let mut r = Report::of_worker(&s, &g);
        let text = render(&r);
        assert!(text.starts_with(
            "# HELP sluice_build_info Build information.\n# TYPE sluice_build_info gauge\nsluice_build_info{version=\""
        ));
        assert!(text.contains("\nsluice_accepted_total{listener=\"default\"} 3\n"));
        assert!(text
            .contains("\nsluice_parse_errors_total{parser=\"tls\",kind=\"not_client_hello\"} 1\n"));
        assert!(text.contains("\nsluice_session_duration_seconds_bucket{le=\"2.5\"} 1\n"));
        assert!(text.contains("\nsluice_session_duration_seconds_sum 1.5\n"));
        assert!(text.contains("\nsluice_buffer_size_bytes 16384\n"));
        assert!(
            !text.contains("sluice_workers"),
            "a lone worker has no supervisor"
        );
        assert!(!text.contains("traces"), "words are not exposed");
        r.merge(&Report::of_supervisor(&Supervision {
            workers: 1,
            restarts: 0,
            ..Supervision::default()
        }));
        let text = render(&r);
        assert!(
            text.contains(
                "\n# TYPE sluice_workers gauge\nsluice_workers 1\n# HELP sluice_sessions "
            ),
            "{text}"
        );
        assert!(text.ends_with(
            "\n# HELP sluice_worker_restarts_total Workers respawned after dying.\n# TYPE sluice_worker_restarts_total counter\nsluice_worker_restarts_total 0\n"
        ));
        assert!(
            !text.contains("uptime") && !text.contains("pid"),
            "not exposed"
        );
        assert_eq!(
            text.matches("# HELP").count(),
            text.matches("# TYPE").count()
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }
}
