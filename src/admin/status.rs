//! The status page: one self-contained HTML file (`status.html`, compiled in, no external
//! asset) served at `/` and `/status`, and the JSON it polls at `/status.json`, made here from
//! merged reports. The supervisor samples a report every few seconds while it serves metrics
//! ([`History`]); rates and the page's sparklines come from those samples, so a page opened
//! now shows the last minutes at once and its rates are over real seconds.
//!
//! Pure: no I/O, no clock of its own (the caller says what time it is). It reads families by
//! their Prometheus names, so per-upstream numbers appear in the upstream table as soon as
//! the report has them (`sluice_upstream_*{upstream}`); until then the table lists each
//! route's configured upstreams. It never runs per event: per request or per sample only.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::admin::report::{Report, Value, TABLE};
use crate::worker::stats::{CloseReason, Histogram};

/// The page, as served.
pub const PAGE: &str = include_str!("status.html");

/// How often the supervisor samples a report for the page, in milliseconds.
pub const SAMPLE_MS: u64 = 2000;

/// Samples kept: a few minutes of sparkline.
const KEEP: usize = 90;

/// Close reasons that are a session's ordinary end, not a refusal or a failure: the page's
/// "refusals and failures" list leaves them out.
const ORDINARY_ENDS: [CloseReason; 7] = [
    CloseReason::Done,
    CloseReason::ClientReset,
    CloseReason::UpstreamReset,
    CloseReason::IdleTimeout,
    CloseReason::HealthCheck,
    CloseReason::Killed,
    CloseReason::Drained,
];

/// Reports sampled over time (milliseconds on the caller's clock, with the report).
#[derive(Default)]
pub struct History {
    samples: VecDeque<(u64, Report)>,
}

impl History {
    /// True when the last sample is [`SAMPLE_MS`] old or more (or there is none).
    pub fn due(&self, now_ms: u64) -> bool {
        self.samples
            .back()
            .is_none_or(|(t, _)| now_ms.saturating_sub(*t) >= SAMPLE_MS)
    }

    /// Keeps `report` as the sample at `now_ms` (the oldest goes beyond [`KEEP`]). A report
    /// less than a second after the last sample is not kept: rates need real seconds.
    pub fn record(&mut self, now_ms: u64, report: &Report) {
        if self
            .samples
            .back()
            .is_some_and(|(t, _)| now_ms.saturating_sub(*t) < 1000)
        {
            return;
        }
        if self.samples.len() == KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, report.clone()));
    }

    /// The JSON of `/status.json`: `now` is the report just merged, rates are against the
    /// newest sample at least a second older.
    pub fn json(&self, now_ms: u64, now: &Report) -> String {
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now_ms.saturating_sub(*t) >= 1000);
        let window = Window {
            now,
            before: base.map(|(_, r)| r),
            seconds: base.map_or(0.0, |(t, _)| (now_ms - t) as f64 / 1000.0),
        };
        let mut o = String::with_capacity(4096);
        o.push('{');
        facts(&mut o, now);
        overview(&mut o, &window);
        self.sparklines(&mut o);
        routes(&mut o, &window);
        upstreams(&mut o, &window);
        refusals(&mut o, &window);
        workers(&mut o, now);
        o.push('}');
        o
    }

    /// `"history"`: per sample, sessions open and the rates since the sample before.
    fn sparklines(&self, o: &mut String) {
        let mut sessions = Vec::new();
        let mut session_rate = Vec::new();
        let mut bytes_rate = Vec::new();
        let mut prev: Option<&(u64, Report)> = None;
        for s in &self.samples {
            if let Some(p) = prev {
                let w = Window {
                    now: &s.1,
                    before: Some(&p.1),
                    seconds: s.0.saturating_sub(p.0) as f64 / 1000.0,
                };
                sessions.push(sum(&s.1, "sluice_sessions") as f64);
                session_rate.push(w.rate(|r| sum(r, "sluice_accepted_total")));
                bytes_rate.push(w.rate(|r| sum(r, "sluice_bytes_total")));
            }
            prev = Some(s);
        }
        let _ = write!(
            o,
            ",\"history\":{{\"interval_s\":{},\"sessions\":{},\"session_rate\":{},\"bytes_rate\":{}}}",
            SAMPLE_MS / 1000,
            numbers(&sessions),
            numbers(&session_rate),
            numbers(&bytes_rate)
        );
    }
}

/// A report now and one some seconds before, to take rates over.
struct Window<'a> {
    now: &'a Report,
    before: Option<&'a Report>,
    seconds: f64,
}

impl Window<'_> {
    /// Per second between the two reports of what `f` reads (0 without an earlier one).
    fn rate(&self, f: impl Fn(&Report) -> u64) -> f64 {
        match self.before {
            Some(b) if self.seconds > 0.0 => f(self.now).saturating_sub(f(b)) as f64 / self.seconds,
            _ => 0.0,
        }
    }
}

fn facts(o: &mut String, r: &Report) {
    let text = |key: &str| {
        TABLE
            .iter()
            .position(|d| d.key == key)
            .and_then(|i| r.families().nth(i))
            .and_then(|(_, v)| match v {
                Value::Text(t) => Some(t.clone()),
                Value::One(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let _ = write!(
        o,
        "\"version\":{},\"commit\":{},\"pid\":{},\"uptime_seconds\":{},\"start_time_seconds\":{},\"workers\":{},\"config_generation\":{},\"reloads_failed\":{},\"last_reload_success_seconds\":{},\"draining\":{}",
        string(&text("version")),
        string(crate::version::COMMIT),
        number_or_zero(&text("pid")),
        number_or_zero(&text("uptime_seconds")),
        sum(r, "sluice_process_start_time_seconds"),
        sum(r, "sluice_workers"),
        // every config applied since start (the start's own is generation 1)
        1 + labelled(r, "sluice_config_reloads_total", "result", "success"),
        labelled(r, "sluice_config_reloads_total", "result", "failure"),
        sum(r, "sluice_config_last_reload_success_timestamp_seconds"),
        sum(r, "sluice_draining") > 0,
    );
}

fn overview(o: &mut String, w: &Window<'_>) {
    o.push_str(",\"sessions\":{");
    for (i, (state, n)) in by_label(w.now, "sluice_sessions", "state")
        .iter()
        .enumerate()
    {
        let _ = write!(o, "{}{}:{n}", if i > 0 { "," } else { "" }, string(state));
    }
    let _ = write!(
        o,
        "}},\"sessions_open\":{},\"accepted_total\":{},\"session_rate\":{},\"bytes_rate\":{},\"bytes_up_rate\":{},\"bytes_down_rate\":{},\"rate_window_s\":{}",
        sum(w.now, "sluice_sessions"),
        sum(w.now, "sluice_accepted_total"),
        num(w.rate(|r| sum(r, "sluice_accepted_total"))),
        num(w.rate(|r| sum(r, "sluice_bytes_total"))),
        num(w.rate(|r| labelled(r, "sluice_bytes_total", "direction", "client_to_upstream"))),
        num(w.rate(|r| labelled(r, "sluice_bytes_total", "direction", "upstream_to_client"))),
        num(w.seconds),
    );
}

fn routes(o: &mut String, w: &Window<'_>) {
    let upstreams = pairs(w.now, "sluice_route_upstream_info", "route", "upstream");
    // routes in force first (config order), then those only counted (dropped at a reload)
    let mut names: Vec<String> = Vec::new();
    for (r, _) in &upstreams {
        if !names.contains(r) {
            names.push(r.clone());
        }
    }
    for (r, _) in by_label(w.now, "sluice_route_sessions_total", "route") {
        if !names.contains(&r) {
            names.push(r);
        }
    }
    o.push_str(",\"routes\":[");
    for (i, name) in names.iter().enumerate() {
        let of = |r: &Report, prom: &str| labelled(r, prom, "route", name);
        let ups: Vec<String> = upstreams
            .iter()
            .filter(|(r, _)| r == name)
            .map(|(_, u)| string(u))
            .collect();
        let _ = write!(
            o,
            "{}{{\"name\":{},\"in_force\":{},\"upstreams\":[{}],\"sessions\":{},\"sessions_total\":{},\"session_rate\":{},\"bytes_rate\":{},\"refused\":{},\"refused_rate\":{},\"connect_failures\":{},\"connect_p99_ms\":{}}}",
            if i > 0 { "," } else { "" },
            string(name),
            upstreams.iter().any(|(r, _)| r == name),
            ups.join(","),
            of(w.now, "sluice_route_sessions"),
            of(w.now, "sluice_route_sessions_total"),
            num(w.rate(|r| of(r, "sluice_route_sessions_total"))),
            num(w.rate(|r| of(r, "sluice_route_bytes_total"))),
            of(w.now, "sluice_route_refused_total"),
            num(w.rate(|r| of(r, "sluice_route_refused_total"))),
            of(w.now, "sluice_route_connect_failures_total"),
            p99(w.now, "sluice_route_connect_seconds", "route", name),
        );
    }
    o.push(']');
}

/// One row per upstream a route in force names, with the upstream's own series where the
/// report has them (`null` where it does not).
fn upstreams(o: &mut String, w: &Window<'_>) {
    let pairs = pairs(w.now, "sluice_route_upstream_info", "route", "upstream");
    let mut names: Vec<String> = Vec::new();
    for (_, u) in &pairs {
        if !names.contains(u) {
            names.push(u.clone());
        }
    }
    for (u, _) in by_label(w.now, "sluice_upstream_sessions_total", "upstream") {
        if !names.contains(&u) {
            names.push(u);
        }
    }
    o.push_str(",\"upstreams\":[");
    for (i, name) in names.iter().enumerate() {
        // Numbers of its own only when a worker reported the upstream (a route's upstream
        // that no worker took in yet, or a lone worker's unknown one, stays unknown).
        let known = by_label(w.now, "sluice_upstream_up", "upstream")
            .iter()
            .any(|(u, _)| u == name);
        let own = |prom: &str| -> String {
            if known && has_by(w.now, prom, "upstream") {
                labelled(w.now, prom, "upstream", name).to_string()
            } else {
                "null".into()
            }
        };
        let own_rate = |prom: &str| -> String {
            if known && has_by(w.now, prom, "upstream") {
                num(w.rate(|r| labelled(r, prom, "upstream", name)))
            } else {
                "null".into()
            }
        };
        let routes: Vec<String> = pairs
            .iter()
            .filter(|(_, u)| u == name)
            .map(|(r, _)| string(r))
            .collect();
        let state = match known {
            false => "\"unknown\"",
            true if labelled(w.now, "sluice_upstream_up", "upstream", name) > 0 => "\"up\"",
            true => "\"down\"",
        };
        let _ = write!(
            o,
            "{}{{\"name\":{},\"routes\":[{}],\"state\":{state},\"sessions\":{},\"session_rate\":{},\"bytes_rate\":{},\"failures\":{},\"ejections\":{},\"connect_p99_ms\":{}}}",
            if i > 0 { "," } else { "" },
            string(name),
            routes.join(","),
            own("sluice_upstream_sessions"),
            own_rate("sluice_upstream_sessions_total"),
            own_rate("sluice_upstream_bytes_total"),
            own("sluice_upstream_connect_failures_total"),
            own("sluice_upstream_ejections_total"),
            p99(w.now, "sluice_upstream_connect_seconds", "upstream", name),
        );
    }
    o.push(']');
}

/// Refusals at accept and closes that were not an ordinary end, most frequent first.
fn refusals(o: &mut String, w: &Window<'_>) {
    let mut rows: Vec<(String, u64, f64)> = Vec::new();
    for (prom, label) in [
        ("sluice_refused_total", "reason"),
        ("sluice_closed_total", "reason"),
    ] {
        for (reason, n) in by_label(w.now, prom, label) {
            if ORDINARY_ENDS.iter().any(|r| r.as_str() == reason) {
                continue;
            }
            let rate = w.rate(|r| labelled(r, prom, label, &reason));
            rows.push((reason, n, rate));
        }
    }
    rows.retain(|(_, n, _)| *n > 0);
    rows.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)));
    rows.truncate(8);
    o.push_str(",\"refusals\":[");
    for (i, (reason, n, rate)) in rows.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"reason\":{},\"total\":{n},\"rate\":{}}}",
            if i > 0 { "," } else { "" },
            string(reason),
            num(*rate)
        );
    }
    o.push(']');
}

fn workers(o: &mut String, r: &Report) {
    o.push_str(",\"worker_sessions\":[");
    let mut rows = by_label(r, "sluice_worker_sessions", "worker");
    rows.sort_by_key(|(w, _)| w.parse::<u64>().unwrap_or(u64::MAX));
    for (i, (w, n)) in rows.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"worker\":{},\"sessions\":{n}}}",
            if i > 0 { "," } else { "" },
            string(w)
        );
    }
    o.push(']');
}

/// True when the report has the family (in the table and reported).
fn has(r: &Report, prom: &str) -> bool {
    !matches!(r.get(prom), Value::Absent)
}

/// True when the report has the family and it is labelled by `label`.
fn has_by(r: &Report, prom: &str, label: &str) -> bool {
    has(r, prom) && label_index(prom, label).is_some()
}

/// The family's value, summed over its series (a histogram: its count).
fn sum(r: &Report, prom: &str) -> u64 {
    match r.get(prom) {
        Value::One(n) => *n,
        Value::Labelled(s) => s.iter().map(|(_, n)| n).sum(),
        Value::Histogram(h) => h.count(),
        Value::Histograms(s) => s.iter().map(|(_, h)| h.count()).sum(),
        Value::Absent | Value::Text(_) => 0,
    }
}

/// The position of `label` among the family's labels.
fn label_index(prom: &str, label: &str) -> Option<usize> {
    TABLE
        .iter()
        .find(|d| d.prom == Some(prom))
        .and_then(|d| d.labels.iter().position(|l| *l == label))
}

/// The family's series whose `label` is `value`, summed over its other labels.
fn labelled(r: &Report, prom: &str, label: &str, value: &str) -> u64 {
    let Some(i) = label_index(prom, label) else {
        return 0;
    };
    match r.get(prom) {
        Value::Labelled(s) => s
            .iter()
            .filter(|(l, _)| l.get(i).is_some_and(|v| v == value))
            .map(|(_, n)| n)
            .sum(),
        _ => 0,
    }
}

/// The family summed by `label`, in the order values first appear.
fn by_label(r: &Report, prom: &str, label: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let Some(i) = label_index(prom, label) else {
        return out;
    };
    let series: Vec<(&String, u64)> = match r.get(prom) {
        Value::Labelled(s) => s
            .iter()
            .filter_map(|(l, n)| Some((l.get(i)?, *n)))
            .collect(),
        Value::Histograms(s) => s
            .iter()
            .filter_map(|(l, h)| Some((l.get(i)?, h.count())))
            .collect(),
        _ => Vec::new(),
    };
    for (v, n) in series {
        match out.iter_mut().find(|(k, _)| k == v) {
            Some((_, m)) => *m += n,
            None => out.push((v.clone(), n)),
        }
    }
    out
}

/// The (a, b) label pairs of the family's series, in order.
fn pairs(r: &Report, prom: &str, a: &str, b: &str) -> Vec<(String, String)> {
    let (Some(i), Some(j)) = (label_index(prom, a), label_index(prom, b)) else {
        return Vec::new();
    };
    match r.get(prom) {
        Value::Labelled(s) => s
            .iter()
            .filter_map(|(l, _)| Some((l.get(i)?.clone(), l.get(j)?.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

/// The 99th percentile in ms of the histogram whose `label` is `value`: the upper bound of
/// the bucket it falls in; `null` without observations (or without the family).
fn p99(r: &Report, prom: &str, label: &str, value: &str) -> String {
    let Some(i) = label_index(prom, label) else {
        return "null".into();
    };
    let Value::Histograms(series) = r.get(prom) else {
        return "null".into();
    };
    let mut h = Histogram::default();
    for (l, x) in series {
        if l.get(i).is_some_and(|v| v == value) {
            for (a, b) in h.counts.iter_mut().zip(x.counts) {
                *a += b;
            }
        }
    }
    percentile_ms(&h, 0.99).map_or_else(|| "null".into(), |ms| ms.to_string())
}

/// The upper bound (ms) of the bucket holding quantile `q`; `None` when empty. Beyond the
/// last bound the last bound is said (a histogram knows no more).
pub fn percentile_ms(h: &Histogram, q: f64) -> Option<u64> {
    let total = h.count();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in h.counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let last = Histogram::BOUNDS_MS.last().copied();
            return Histogram::BOUNDS_MS.get(i).copied().or(last);
        }
    }
    None
}

/// A JSON string.
fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number with at most two decimals.
fn num(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        "0".into()
    }
}

fn numbers(xs: &[f64]) -> String {
    let v: Vec<String> = xs.iter().map(|x| num(*x)).collect();
    format!("[{}]", v.join(","))
}

fn number_or_zero(s: &str) -> &str {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s
    } else {
        "0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::{Gauges, Process, Supervision};
    use crate::worker::stats::Stats;

    fn report(accepted: u64, route_sessions: u64, bytes: u64) -> Report {
        let mut s = Stats {
            accepted,
            listeners: vec![crate::worker::stats::ListenerCount {
                name: "default".into(),
                accepted,
                refused_max_sessions: 0,
            }],
            bytes_up: bytes,
            ..Stats::default()
        };
        let slot = s.routes.slot("web");
        let d = s.routes.slot("default");
        s.routes.counters[slot].sessions = route_sessions;
        s.routes.counters[slot].bytes_up = bytes;
        s.routes.counters[slot].connect.observe(3);
        s.routes.counters[d].closed[CloseReason::DeniedName.index()] = 2;
        s.close(CloseReason::DeniedName);
        let g = Gauges {
            sessions_by_state: [0, 0, 0, 4, 0],
            route_sessions: vec![4, 0],
            routes_in_force: vec![
                (
                    "web".into(),
                    vec!["10.0.0.1:443".into(), "10.0.0.2:443".into()],
                ),
                ("default".into(), vec!["localhost:10000".into()]),
            ],
            ..Gauges::default()
        };
        let mut r = Report::of_worker(&s, &g);
        r.merge(&Report::of_supervisor(&Supervision {
            workers: 1,
            process: Process {
                pid: 9,
                uptime_seconds: 30,
                start_unix: 1_700_000_000,
            },
            ..Supervision::default()
        }));
        r
    }

    #[test]
    fn rates_are_over_the_samples_seconds_and_tables_name_routes_and_upstreams() {
        let mut h = History::default();
        assert!(h.due(0));
        h.record(0, &report(10, 10, 1000));
        assert!(!h.due(1999) && h.due(2000));
        h.record(500, &report(11, 11, 1100)); // too soon: not kept
        h.record(2000, &report(20, 20, 3000));
        let json = h.json(4000, &report(30, 30, 5000));
        for needle in [
            "\"workers\":1,",
            "\"uptime_seconds\":30,",
            "\"start_time_seconds\":1700000000,",
            "\"config_generation\":1,",
            "\"sessions\":{\"Opened\":0,\"HeaderParsed\":0,\"Connecting\":0,\"Connected\":4,\"HalfClosed\":0}",
            "\"session_rate\":5,", // (30 - 20) / 2 s
            "\"bytes_rate\":1000,",
            "\"history\":{\"interval_s\":2,\"sessions\":[4],\"session_rate\":[5],\"bytes_rate\":[1000]}",
            "{\"name\":\"web\",\"in_force\":true,\"upstreams\":[\"10.0.0.1:443\",\"10.0.0.2:443\"],\"sessions\":4,\"sessions_total\":30,\"session_rate\":5,\"bytes_rate\":1000,\"refused\":0,\"refused_rate\":0,\"connect_failures\":0,\"connect_p99_ms\":5}",
            "{\"name\":\"default\",\"in_force\":true,\"upstreams\":[\"localhost:10000\"],\"sessions\":0,\"sessions_total\":0,\"session_rate\":0,\"bytes_rate\":0,\"refused\":2,",
            "{\"name\":\"10.0.0.2:443\",\"routes\":[\"web\"],\"state\":\"unknown\",\"sessions\":null,",
            "\"refusals\":[{\"reason\":\"denied_name\",\"total\":1,\"rate\":0}]",
            "\"worker_sessions\":[{\"worker\":\"0\",\"sessions\":4}]",
        ] {
            assert!(json.contains(needle), "{needle}\nin\n{json}");
        }
    }

    #[test]
    fn without_an_older_sample_rates_are_zero_not_infinite() {
        let h = History::default();
        let json = h.json(0, &report(5, 5, 5));
        assert!(json.contains("\"session_rate\":0,"), "{json}");
        assert!(json.contains("\"history\":{\"interval_s\":2,\"sessions\":[],"));
    }

    #[test]
    fn percentiles_say_the_bucket_bound() {
        let mut h = Histogram::default();
        assert_eq!(percentile_ms(&h, 0.99), None);
        for _ in 0..99 {
            h.observe(1);
        }
        h.observe(400);
        assert_eq!(percentile_ms(&h, 0.99), Some(1));
        h.observe(400);
        assert_eq!(percentile_ms(&h, 0.99), Some(500));
        h.observe(1_000_000);
        assert_eq!(percentile_ms(&h, 1.0), Some(300_000));
    }

    #[test]
    fn strings_are_escaped_for_json_inside_html() {
        assert_eq!(string("a\"b\\c\n<"), "\"a\\\"b\\\\c\\u000a\\u003c\"");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.126), "0.13");
        assert_eq!(num(f64::NAN), "0");
    }

    #[test]
    fn the_page_is_whole_and_asks_nothing_elsewhere() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("/status.json"));
        for outside in ["http://", "https://", "src=\"//", "@import"] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
    }
}
