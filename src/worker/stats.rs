//! Counters kept by one worker: cheap `u64` increments on the hot path, read by the log at
//! exit, by `show stats` and by the metrics endpoint. Labels are `&'static str` so that a
//! counter by reason costs no allocation.

use std::collections::BTreeMap;

/// What a worker counts per listener (kept when a listener goes, for the scrape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerCount {
    /// The listener's name.
    pub name: String,
    /// Connections accepted into a session.
    pub accepted: u64,
    /// Connections refused at accept (ENVOY_MAX_SESSIONS).
    pub refused_max_sessions: u64,
}

/// Why a session ended. `as_str` is the stable label used in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseReason {
    /// Both directions finished with FIN, every byte delivered.
    Done,
    /// The client reset the connection or failed with an error.
    ClientReset,
    /// The upstream reset the connection or failed with an error.
    UpstreamReset,
    /// The PROXY header or ClientHello did not arrive within the header timeout.
    HeaderTimeout,
    /// No upstream address accepted the connection within the connect timeout.
    ConnectTimeout,
    /// Every upstream address refused or failed the connection.
    UpstreamRefused,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The client closed before its PROXY header / ClientHello was complete.
    ClientClosedEarly,
    /// A load balancer's health check: a PROXY header (LOCAL or PROXY) from a trusted
    /// source, then a close or reset before any payload. Logged at debug, never captured.
    HealthCheck,
    /// A PROXY header from an address not in ENVOY_TRUSTED_PROXIES.
    UntrustedProxy,
    /// ENVOY_PROXY_PROTOCOL=required and the connection had no header.
    MissingProxyHeader,
    /// The PROXY header was malformed.
    InvalidProxy,
    /// The ClientHello was malformed or over the cap.
    InvalidTls,
    /// No buffer was left in the pool.
    NoBuffer,
    /// A route denied the server name (TLS alert unrecognized_name unless set otherwise).
    DeniedName,
    /// A route denied the client address (TLS alert access_denied unless set otherwise).
    DeniedClient,
    /// SNI and PROXY AUTHORITY differ and ENVOY_NAME_MISMATCH=reject.
    NameMismatch,
    /// The ClientHello carried ECH and ENVOY_ECH=refuse.
    EchRefused,
    /// The client has its most sessions at once (ENVOY_CLIENT_MAX_SESSIONS, a route's
    /// `client_max_sessions=`), every worker together.
    ClientLimit,
    /// The client starts sessions faster than its rate (ENVOY_CLIENT_RATE, a route's
    /// `client_rate=`), every worker together.
    ClientRate,
    /// A plain HTTP request with a malformed head or Host.
    InvalidHttp,
    /// A PROXY v2 AUTHORITY that is not a valid host name.
    InvalidAuthority,
    /// The route's preamble (PROXY v2 header, CONNECT request) could not be written: e.g.
    /// CONNECT mode for a session without a name. Nothing was wrong with the client's bytes.
    PreambleFailed,
    /// The CONNECT proxy answered something other than 2xx.
    ConnectRejected,
    /// The CONNECT proxy's reply was malformed or too long.
    InvalidConnectReply,
    /// Closed by `kill` on the control socket.
    Killed,
    /// Still open at the drain deadline.
    Drained,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [CloseReason; 27] = [
        CloseReason::Done,
        CloseReason::ClientReset,
        CloseReason::UpstreamReset,
        CloseReason::HeaderTimeout,
        CloseReason::ConnectTimeout,
        CloseReason::UpstreamRefused,
        CloseReason::IdleTimeout,
        CloseReason::ClientClosedEarly,
        CloseReason::HealthCheck,
        CloseReason::UntrustedProxy,
        CloseReason::MissingProxyHeader,
        CloseReason::InvalidProxy,
        CloseReason::InvalidTls,
        CloseReason::NoBuffer,
        CloseReason::DeniedName,
        CloseReason::DeniedClient,
        CloseReason::NameMismatch,
        CloseReason::EchRefused,
        CloseReason::ClientLimit,
        CloseReason::ClientRate,
        CloseReason::InvalidHttp,
        CloseReason::InvalidAuthority,
        CloseReason::PreambleFailed,
        CloseReason::ConnectRejected,
        CloseReason::InvalidConnectReply,
        CloseReason::Killed,
        CloseReason::Drained,
    ];

    /// True for the reasons that mean the first bytes could not be parsed: such sessions
    /// are captured when ENVOY_CAPTURE_DIR is set.
    pub fn is_parse_failure(self) -> bool {
        matches!(
            self,
            CloseReason::InvalidProxy
                | CloseReason::InvalidTls
                | CloseReason::InvalidHttp
                | CloseReason::InvalidAuthority
                | CloseReason::MissingProxyHeader
                | CloseReason::HeaderTimeout
                | CloseReason::ClientClosedEarly
        )
    }

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::ClientReset => "client_reset",
            CloseReason::UpstreamReset => "upstream_reset",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::UpstreamRefused => "upstream_refused",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ClientClosedEarly => "client_closed_early",
            CloseReason::HealthCheck => "health_check",
            CloseReason::UntrustedProxy => "untrusted_proxy",
            CloseReason::MissingProxyHeader => "missing_proxy_header",
            CloseReason::InvalidProxy => "invalid_proxy",
            CloseReason::InvalidTls => "invalid_tls",
            CloseReason::NoBuffer => "no_buffer",
            CloseReason::DeniedName => "denied_name",
            CloseReason::DeniedClient => "denied_client",
            CloseReason::NameMismatch => "name_mismatch",
            CloseReason::EchRefused => "ech_refused",
            CloseReason::ClientLimit => "client_limit",
            CloseReason::ClientRate => "client_rate",
            CloseReason::InvalidHttp => "invalid_http",
            CloseReason::InvalidAuthority => "invalid_authority",
            CloseReason::PreambleFailed => "preamble_failed",
            CloseReason::ConnectRejected => "connect_rejected",
            CloseReason::InvalidConnectReply => "invalid_connect_reply",
            CloseReason::Killed => "killed",
            CloseReason::Drained => "drained",
        }
    }
}

/// A histogram with fixed upper bounds in milliseconds (Prometheus-style, cumulative on output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket; the last bucket is +Inf.
    pub counts: [u64; Histogram::BOUNDS_MS.len() + 1],
    /// Sum of all observations, in milliseconds.
    pub sum_ms: u64,
}

impl Histogram {
    /// Upper bounds of the buckets, in milliseconds.
    pub const BOUNDS_MS: [u64; 14] = [
        1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 30000, 300000,
    ];

    /// Records one observation.
    pub fn observe(&mut self, ms: u64) {
        let i = Self::BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(Self::BOUNDS_MS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_ms += ms;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One worker's counters.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections accepted into a session.
    pub accepted: u64,
    /// Per listener, by name (a listener's slot stays when it goes, for the scrape).
    pub listeners: Vec<ListenerCount>,
    /// Connections refused at accept because ENVOY_MAX_SESSIONS was reached.
    pub refused_max_sessions: u64,
    /// accept() failures for lack of descriptors or memory (each starts a back-off).
    pub accept_exhausted: u64,
    /// Sessions closed, by reason (indexed like `CloseReason::ALL`).
    pub closed: [u64; CloseReason::ALL.len()],
    /// Bytes written to upstreams (client to upstream).
    pub bytes_up: u64,
    /// Bytes written to clients (upstream to client).
    pub bytes_down: u64,
    /// Of the bytes written (both directions), those moved by splice(2) without a copy.
    pub bytes_spliced: u64,
    /// Upstream connect attempts that failed (each address tried counts once).
    pub connect_failures: u64,
    /// Sessions whose SNI and PROXY AUTHORITY differed.
    pub name_mismatches: u64,
    /// Sessions admitted without a per-client limit: no room in the client table.
    pub client_table_full: u64,
    /// CONNECT replies that refused the tunnel, by status code.
    pub connect_status: BTreeMap<u16, u64>,
    /// Upstream connect latency (TCP connect, ms).
    pub connect_latency: Histogram,
    /// Session duration (ms), observed at close.
    pub session_duration: Histogram,
    /// Parse errors by parser and kind, e.g. `proxy/v1_too_long`.
    pub parse_errors: BTreeMap<(&'static str, &'static str), u64>,
}

impl Stats {
    /// Counts a close.
    pub fn close(&mut self, reason: CloseReason) {
        if let Some(i) = CloseReason::ALL.iter().position(|r| *r == reason) {
            if let Some(c) = self.closed.get_mut(i) {
                *c += 1;
            }
        }
    }

    /// Records an upstream connect latency.
    pub fn connect_latency_ms(&mut self, ms: u64) {
        self.connect_latency.observe(ms);
    }

    /// Counts a parse error of `parser` (e.g. "proxy", "tls") and `kind`.
    pub fn parse_error(&mut self, parser: &'static str, kind: &'static str) {
        *self.parse_errors.entry((parser, kind)).or_insert(0) += 1;
    }

    /// Closes by reason, for reports.
    pub fn closed_by_reason(&self) -> impl Iterator<Item = (CloseReason, u64)> + '_ {
        CloseReason::ALL
            .iter()
            .copied()
            .zip(self.closed.iter().copied())
    }
}
