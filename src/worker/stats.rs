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

    /// True for the reasons that mean a route turned the session away once it was chosen
    /// (it denies, or the client is over the route's per-client limit): what
    /// `sluice_route_refused_total` counts. A name mismatch or ECH refused happens before a
    /// route is chosen: `sluice_closed_total` counts those.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            CloseReason::DeniedName
                | CloseReason::DeniedClient
                | CloseReason::ClientLimit
                | CloseReason::ClientRate
        )
    }

    /// Its place in [`CloseReason::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
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
        self.observe_in(Self::bucket(ms), ms);
    }

    /// The bucket `ms` falls in (the last: +Inf), found once for several histograms.
    #[inline]
    pub fn bucket(ms: u64) -> usize {
        Self::BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(Self::BOUNDS_MS.len())
    }

    /// Records one observation of `ms` in `bucket` (`Histogram::bucket(ms)`).
    #[inline]
    pub fn observe_in(&mut self, bucket: usize, ms: u64) {
        if let Some(c) = self.counts.get_mut(bucket) {
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
    /// Session duration (ms), observed at close.
    pub session_duration: Histogram,
    /// Parse errors by parser and kind, e.g. `proxy/v1_too_long`.
    pub parse_errors: BTreeMap<(&'static str, &'static str), u64>,
    /// Counters per route, by the slot each route's `metrics_slot` names.
    pub routes: Routes,
    /// Config reloads (SIGHUP, `reload`, `set`) applied and refused.
    pub reloads: Reloads,
}

/// One route's counters. A route keeps its slot (and its counts) for the worker's life,
/// across reloads that drop and bring it back: a counter never goes down.
#[derive(Debug, Clone, Default)]
pub struct RouteCounters {
    /// Sessions that took the route.
    pub sessions: u64,
    /// Of those, closed by reason (indexed like `CloseReason::ALL`).
    pub closed: [u64; CloseReason::ALL.len()],
    /// Bytes written to its upstreams by its closed sessions (a report adds the running
    /// ones': counting per event would cost every shuffle).
    pub bytes_up: u64,
    /// Bytes written to its clients by its closed sessions (likewise).
    pub bytes_down: u64,
    /// Upstream connect attempts that failed.
    pub connect_failures: u64,
    /// Session duration (ms), observed at close.
    pub duration: Histogram,
    /// Upstream TCP connect latency (ms).
    pub connect: Histogram,
}

impl RouteCounters {
    /// Counts a session's close: its reason, its duration (in `bucket`, found once for
    /// the machine-wide histogram too) and its bytes.
    #[inline]
    pub fn close(
        &mut self,
        reason: CloseReason,
        bucket: usize,
        duration_ms: u64,
        bytes: (u64, u64),
    ) {
        if let Some(c) = self.closed.get_mut(reason.index()) {
            *c += 1;
        }
        self.duration.observe_in(bucket, duration_ms);
        self.bytes_up += bytes.0;
        self.bytes_down += bytes.1;
    }
}

/// The per-route counters of a worker: slots handed out by route name when a config is
/// taken in (never per session), so the hot path indexes an array.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// The route name of each slot, in the order slots were handed out.
    pub names: Vec<String>,
    /// The counters of each slot.
    pub counters: Vec<RouteCounters>,
}

impl Routes {
    /// The slot of the route named `name`, made on first sight.
    pub fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.names.push(name.to_string());
        self.counters.push(RouteCounters::default());
        self.names.len() - 1
    }

    /// The counters of `slot` (a slot this table handed out).
    #[inline]
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut RouteCounters> {
        self.counters.get_mut(slot)
    }

    /// Every route with its counters, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RouteCounters)> {
        self.names.iter().map(String::as_str).zip(&self.counters)
    }
}

/// Config reloads counted by result.
#[derive(Debug, Clone, Default)]
pub struct Reloads {
    /// Applied.
    pub success: u64,
    /// Refused (the old config stayed).
    pub failure: u64,
    /// When the config in force was applied (the start's counts), seconds since the epoch.
    pub last_success_unix: u64,
}

impl Stats {
    /// Takes in a config about to serve: gives each route its counters' slot (by name, so
    /// a route that stays across a reload keeps counting where it did) and notes when.
    pub fn take_in(&mut self, cfg: &mut crate::config::Config) {
        for r in cfg.routes.iter_mut() {
            r.metrics_slot = self.routes.slot(&r.name);
        }
        cfg.default_route.metrics_slot = self.routes.slot(&cfg.default_route.name);
        self.reloads.last_success_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
    }

    /// Counts a close.
    #[inline]
    pub fn close(&mut self, reason: CloseReason) {
        if let Some(c) = self.closed.get_mut(reason.index()) {
            *c += 1;
        }
    }

    /// The counters of the route in `slot` (`None`: no route chosen yet).
    #[inline]
    pub fn route(&mut self, slot: Option<usize>) -> Option<&mut RouteCounters> {
        slot.and_then(|s| self.routes.get_mut(s))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_s_index_is_its_place_in_all() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn refusals_after_the_route_is_known_are_the_route_s() {
        let refusals: Vec<&str> = CloseReason::ALL
            .iter()
            .filter(|r| r.is_refusal())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            refusals,
            [
                "denied_name",
                "denied_client",
                "client_limit",
                "client_rate"
            ]
        );
    }

    #[test]
    fn a_route_keeps_its_slot_by_name() {
        let mut routes = Routes::default();
        let a = routes.slot("a");
        let d = routes.slot("default");
        assert_eq!((a, d), (0, 1));
        assert_eq!(routes.slot("a"), 0, "the same name, the same slot");
        let mut s = Stats {
            routes,
            ..Stats::default()
        };
        if let Some(r) = s.route(Some(1)) {
            r.close(CloseReason::DeniedName, Histogram::bucket(3), 3, (1, 2));
        }
        assert!(s.route(None).is_none());
        let (name, c) = s.routes.iter().nth(1).unwrap();
        assert_eq!(name, "default");
        assert_eq!(c.closed[CloseReason::DeniedName.index()], 1);
        assert_eq!(c.duration.count(), 1);
        assert_eq!((c.bytes_up, c.bytes_down), (1, 2));
    }
}
