//! The Prometheus text exposition (format 0.0.4) of a worker's counters, and the metric
//! names, kept in one place. Rendering allocates a `String`; it runs per scrape, never per
//! event.

use std::fmt::Write;

use crate::worker::session::State;
use crate::worker::stats::{CloseReason, Histogram, Stats};

/// Gauges read from the loop at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Sessions by state, in `STATES` order.
    pub sessions_by_state: [u64; STATES.len()],
    /// Buffers lent by the pool.
    pub buffers_in_use: u64,
    /// Buffer size in bytes.
    pub buffer_size: u64,
    /// 1 while draining.
    pub draining: u64,
}

/// The states reported in `sluice_sessions`.
pub const STATES: [State; 5] = [
    State::Opened,
    State::HeaderParsed,
    State::Connecting,
    State::Connected,
    State::HalfClosed,
];

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, text: &str, h: &Histogram) {
    help(out, name, "histogram", text);
    let mut cum = 0;
    for (b, n) in Histogram::BOUNDS_MS.iter().zip(h.counts) {
        cum += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1000.0);
    }
    cum += h.counts.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {cum}");
}

/// Renders every metric of `stats` and `g`.
pub fn render(stats: &Stats, g: &Gauges) -> String {
    let mut o = String::with_capacity(8192);
    help(&mut o, "sluice_build_info", "gauge", "Build information.");
    let _ = writeln!(
        o,
        "sluice_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    help(
        &mut o,
        "sluice_sessions",
        "gauge",
        "Sessions open now, by state.",
    );
    for (s, n) in STATES.iter().zip(g.sessions_by_state) {
        let _ = writeln!(o, "sluice_sessions{{state=\"{s:?}\"}} {n}");
    }
    help(
        &mut o,
        "sluice_accepted_total",
        "counter",
        "Connections accepted into a session.",
    );
    let _ = writeln!(o, "sluice_accepted_total {}", stats.accepted);
    help(
        &mut o,
        "sluice_refused_total",
        "counter",
        "Connections refused at accept, by reason.",
    );
    let _ = writeln!(
        o,
        "sluice_refused_total{{reason=\"max_sessions\"}} {}",
        stats.refused_max_sessions
    );
    help(
        &mut o,
        "sluice_accept_exhausted_total",
        "counter",
        "accept() failures for lack of descriptors or memory.",
    );
    let _ = writeln!(
        o,
        "sluice_accept_exhausted_total {}",
        stats.accept_exhausted
    );
    help(
        &mut o,
        "sluice_closed_total",
        "counter",
        "Sessions closed, by reason.",
    );
    for (r, n) in stats.closed_by_reason() {
        let _ = writeln!(o, "sluice_closed_total{{reason=\"{}\"}} {n}", r.as_str());
    }
    help(
        &mut o,
        "sluice_bytes_total",
        "counter",
        "Bytes written, by direction.",
    );
    let _ = writeln!(
        o,
        "sluice_bytes_total{{direction=\"client_to_upstream\"}} {}",
        stats.bytes_up
    );
    let _ = writeln!(
        o,
        "sluice_bytes_total{{direction=\"upstream_to_client\"}} {}",
        stats.bytes_down
    );
    help(
        &mut o,
        "sluice_spliced_bytes_total",
        "counter",
        "Bytes moved by splice(2), without a copy.",
    );
    let _ = writeln!(o, "sluice_spliced_bytes_total {}", stats.bytes_spliced);
    help(
        &mut o,
        "sluice_parse_errors_total",
        "counter",
        "Parse errors, by parser and kind.",
    );
    for ((parser, kind), n) in &stats.parse_errors {
        let _ = writeln!(
            o,
            "sluice_parse_errors_total{{parser=\"{parser}\",kind=\"{kind}\"}} {n}"
        );
    }
    help(
        &mut o,
        "sluice_upstream_connect_failures_total",
        "counter",
        "Upstream connect attempts that failed.",
    );
    let _ = writeln!(
        o,
        "sluice_upstream_connect_failures_total {}",
        stats.connect_failures
    );
    help(
        &mut o,
        "sluice_connect_rejected_total",
        "counter",
        "CONNECT replies other than 2xx, by status.",
    );
    for (status, n) in &stats.connect_status {
        let _ = writeln!(
            o,
            "sluice_connect_rejected_total{{status=\"{status}\"}} {n}"
        );
    }
    help(
        &mut o,
        "sluice_name_mismatches_total",
        "counter",
        "Sessions whose SNI and PROXY AUTHORITY differed.",
    );
    let _ = writeln!(o, "sluice_name_mismatches_total {}", stats.name_mismatches);
    histogram(
        &mut o,
        "sluice_upstream_connect_seconds",
        "Upstream TCP connect latency.",
        &stats.connect_latency,
    );
    histogram(
        &mut o,
        "sluice_session_duration_seconds",
        "Session duration.",
        &stats.session_duration,
    );
    help(
        &mut o,
        "sluice_buffers_in_use",
        "gauge",
        "Buffers lent by the pool.",
    );
    let _ = writeln!(o, "sluice_buffers_in_use {}", g.buffers_in_use);
    help(
        &mut o,
        "sluice_buffer_size_bytes",
        "gauge",
        "Size of one buffer.",
    );
    let _ = writeln!(o, "sluice_buffer_size_bytes {}", g.buffer_size);
    help(
        &mut o,
        "sluice_draining",
        "gauge",
        "1 while the worker drains.",
    );
    let _ = writeln!(o, "sluice_draining {}", g.draining);
    let _ = CloseReason::ALL;
    o
}
