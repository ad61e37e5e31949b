//! `show upstreams`: one row per configured upstream, read from a report's per-upstream
//! families (a worker's, or every worker's merged), so that the table and `/metrics` always
//! agree. Pure: no I/O; names no metric the report does not define.

use crate::admin::report::{Report, Value};
use crate::worker::stats::Histogram;

/// The header line of `show upstreams`.
pub const HEADER: &str = "upstream state health sessions sessions_total connect_failures ejections connect_p50_ms connect_p99_ms";

/// The table, a row per upstream in the order the report lists them. Where workers
/// disagree (an ejection is one worker's), every value seen is shown, joined by `/`.
pub fn render(report: &Report) -> String {
    let labelled = |key: &str| -> Vec<(Vec<String>, u64)> {
        match report.value(key) {
            Some(Value::Labelled(series)) => series.clone(),
            _ => Vec::new(),
        }
    };
    let states = labelled("upstream_state");
    let health = labelled("upstream_health");
    let sessions = labelled("upstream_sessions");
    let total = labelled("upstream_sessions_total");
    let failures = labelled("connect_failures");
    let ejections = labelled("upstream_ejections");
    let latency: Vec<(Vec<String>, Histogram)> = match report.value("connect_seconds") {
        Some(Value::Histograms(h)) => h.clone(),
        _ => Vec::new(),
    };
    let mut names: Vec<&str> = Vec::new();
    for (labels, _) in &sessions {
        if let Some(n) = labels.first() {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let of = |series: &[(Vec<String>, u64)], name: &str| -> u64 {
        series
            .iter()
            .filter(|(l, _)| l.first().is_some_and(|n| n == name))
            .map(|(_, n)| n)
            .sum()
    };
    let words = |series: &[(Vec<String>, u64)], name: &str| -> String {
        let w: Vec<&str> = series
            .iter()
            .filter(|(l, _)| l.first().is_some_and(|n| n == name))
            .filter_map(|(l, _)| l.get(1).map(String::as_str))
            .collect();
        if w.is_empty() {
            "-".to_string()
        } else {
            w.join("/")
        }
    };
    let mut o = String::from(HEADER);
    o.push('\n');
    for name in names {
        let h = latency
            .iter()
            .find(|(l, _)| l.first().is_some_and(|n| n == name))
            .map(|(_, h)| h);
        o.push_str(&format!(
            "{name} {} {} {} {} {} {} {} {}\n",
            words(&states, name),
            words(&health, name),
            of(&sessions, name),
            of(&total, name),
            of(&failures, name),
            of(&ejections, name),
            quantile(h, 0.50),
            quantile(h, 0.99),
        ));
    }
    o
}

/// The upper bound (ms) of the bucket holding quantile `q`, `-` without observations, and
/// `>LAST` beyond the last bound.
fn quantile(h: Option<&Histogram>, q: f64) -> String {
    let Some(h) = h else { return "-".into() };
    let count = h.count();
    if count == 0 {
        return "-".into();
    }
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut cum = 0;
    for (bound, n) in Histogram::BOUNDS_MS.iter().zip(h.counts) {
        cum += n;
        if cum >= rank {
            return bound.to_string();
        }
    }
    let last = Histogram::BOUNDS_MS.last().copied().unwrap_or(0);
    format!(">{last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::Gauges;
    use crate::worker::stats::Stats;
    use crate::worker::upstreams::{Admin, Member};

    #[test]
    fn a_row_per_upstream_with_its_numbers() {
        let mut a = Member::new("10.0.0.1:443", 1000);
        a.sessions = 2;
        a.sessions_total = 7;
        a.failures = [1, 2];
        for ms in [1, 1, 1, 2, 600] {
            a.connect.observe(ms);
        }
        let mut b = Member::new("b.example:443", 1000);
        b.admin = Admin::Maint;
        let g = Gauges {
            upstreams: vec![a, b],
            ..Gauges::default()
        };
        let text = render(&Report::of_worker(&Stats::default(), &g));
        assert_eq!(
            text,
            format!(
                "{HEADER}\n10.0.0.1:443 ready up 2 7 3 0 1 1000\nb.example:443 maint up 0 0 0 0 - -\n"
            )
        );
    }
}
