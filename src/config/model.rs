//! The configuration as values: [`Config`] and the small enums its keys choose between,
//! what each field holds and what a loaded configuration answers (the listen address, the
//! route for a request, whether a peer is a trusted proxy). How a field is filled is the key
//! table's (`config::keys`); where values come from is `config`'s.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::connect::ConnectHeader;
use super::listener::{Listener, ProxyPolicy};
use super::pool::{Balance, Check, Pool};
use super::route::{self, Mode, Route};
use super::upstream::Upstream;
use crate::cidr::Cidr;
use crate::logger::{Facility, Target};

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// An environment variable (as it was when the process started).
    Environment,
    /// The KEY=VALUE file named by ENVOY_CONFIG_FILE.
    File,
    /// A `set` on the control socket.
    Set,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::Environment => "environment",
            Source::File => "file",
            Source::Set => "set",
        })
    }
}

/// When the ClientHello's SNI and the PROXY v2 AUTHORITY TLV both exist and differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMismatch {
    /// Refuse the session.
    Reject,
    /// Route on the SNI.
    PreferSni,
    /// Route on the AUTHORITY.
    PreferAuthority,
}

/// The whole, validated configuration of one worker. Each field is written by the key its
/// comment names (see [`KEYS`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// ENVOY_IP
    pub ip: IpAddr,
    /// ENVOY_PORT
    pub port: u16,
    /// ENVOY_LISTEN then ENVOY_LISTEN_FILE; when both are empty, the one listener on
    /// ENVOY_IP:ENVOY_PORT named `default` (`config::listener`).
    pub listeners: Vec<Listener>,
    /// The listener this configuration is settled for ([`Config::for_listener`]): its
    /// sessions' policy and the `listener=` route condition read it. 0 in the base.
    pub listener: usize,
    /// ENVOY_UPSTREAM: the default route's pool members, in order.
    pub upstream: Vec<Upstream>,
    /// ENVOY_BALANCE: the default route's, and that of routes naming none.
    pub balance: Balance,
    /// ENVOY_CHECK: the default route's active check.
    pub check: Option<Check>,
    /// ENVOY_EJECT_AFTER (0: never eject)
    pub eject_after: u32,
    /// ENVOY_EJECT_BACKOFF_MS: the first ejection's length (doubling up to the cap).
    pub eject_backoff_ms: u64,
    /// ENVOY_EJECT_BACKOFF_MAX_MS
    pub eject_backoff_max_ms: u64,
    /// ENVOY_RESOLVE_INTERVAL_MS (0: at load and reload only)
    pub resolve_interval_ms: u64,
    /// ENVOY_ACCEPTORS
    pub acceptors: usize,
    /// ENVOY_COUNTRY (upper-cased)
    pub country: String,
    /// ENVOY_HEADERS
    pub headers: Vec<ConnectHeader>,
    /// ENVOY_REGION_KEY
    pub region_key: String,
    /// ENVOY_SESSION_KEY
    pub session_key: String,
    /// ENVOY_LOG_LEVEL
    pub log_level: log::LevelFilter,
    /// ENVOY_LOG_TARGET, a collector's name resolved
    pub log_target: Target,
    /// ENVOY_LOG_FACILITY
    pub log_facility: Facility,
    /// ENVOY_BUFFER_SIZE
    pub buffer_size: usize,
    /// ENVOY_MAX_FILES: the open-file limit to set at start; `None`: the hard limit.
    pub max_files: Option<u64>,
    /// ENVOY_MAX_SESSIONS
    pub max_sessions: usize,
    /// ENVOY_HEADER_TIMEOUT_MS
    pub header_timeout_ms: u64,
    /// ENVOY_CONNECT_TIMEOUT_MS
    pub connect_timeout_ms: u64,
    /// ENVOY_IDLE_TIMEOUT_MS (0: never)
    pub idle_timeout_ms: u64,
    /// ENVOY_PROXY_PROTOCOL
    pub proxy_protocol: ProxyPolicy,
    /// ENVOY_TRUSTED_PROXIES
    pub trusted_proxies: Vec<Cidr>,
    /// ENVOY_WORKERS
    pub workers: usize,
    /// ENVOY_BACKLOG
    pub backlog: i32,
    /// ENVOY_UPSTREAM_MODE: the default route's mode, and the mode of routes naming none.
    pub upstream_mode: Mode,
    /// ENVOY_ROUTES then ENVOY_ROUTES_FILE, in order.
    pub routes: Vec<Route>,
    /// ENVOY_UPSTREAM in ENVOY_UPSTREAM_MODE, used when no route matches.
    pub default_route: Route,
    /// ENVOY_NAME_MISMATCH
    pub name_mismatch: NameMismatch,
    /// ENVOY_ECH: false refuses ClientHellos carrying encrypted_client_hello.
    pub allow_ech: bool,
    /// ENVOY_CONTROL_SOCKET ("": none)
    pub control_socket: String,
    /// ENVOY_CONTROL_GROUP ("": the socket is its owner's only)
    pub control_group: String,
    /// ENVOY_METRICS_ADDR
    pub metrics_addr: Option<SocketAddr>,
    /// ENVOY_CAPTURE_DIR ("": no capture)
    pub capture_dir: String,
    /// ENVOY_CAPTURE_MAX_FILES
    pub capture_max_files: usize,
    /// ENVOY_CAPTURE_MAX_BYTES
    pub capture_max_bytes: u64,
    /// ENVOY_DRAIN_TIMEOUT_MS
    pub drain_timeout_ms: u64,
    /// ENVOY_PID_FILE ("": none)
    pub pid_file: String,
    /// ENVOY_SPLICE: true when bulk directions may move through splice pipes (`auto` on Linux).
    pub splice: bool,
    /// ENVOY_SPLICE_PIPES: splice pipes per worker at most; 0 when `splice` is false.
    pub splice_pipes: usize,
    /// ENVOY_USER ("": the processes stay who they were started as)
    pub user: String,
    /// ENVOY_GROUP ("": the user's own group)
    pub group: String,
    /// ENVOY_CHROOT ("": none), an absolute path
    pub chroot: String,
    /// The ENVOY_CLIENT_* keys: per-client limits.
    pub clients: super::clients::Settings,
    /// Each key's effective value as text and its source, in table order.
    pub entries: Vec<(&'static str, String, Source)>,
}

impl Config {
    /// The configuration before any key is applied: every field is overwritten by its key.
    pub(super) fn unset() -> Config {
        Config {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            listeners: Vec::new(),
            listener: 0,
            default_route: Route::default_route(
                Pool::new(Vec::new(), Balance::First),
                Mode::Direct,
            ),
            upstream: Vec::new(),
            balance: Balance::First,
            check: None,
            eject_after: 0,
            eject_backoff_ms: 0,
            eject_backoff_max_ms: 0,
            resolve_interval_ms: 0,
            acceptors: 0,
            country: String::new(),
            headers: Vec::new(),
            region_key: String::new(),
            session_key: String::new(),
            log_level: log::LevelFilter::Off,
            log_target: Target::Stderr,
            log_facility: Facility::DAEMON,
            buffer_size: 0,
            max_files: None,
            max_sessions: 0,
            header_timeout_ms: 0,
            connect_timeout_ms: 0,
            idle_timeout_ms: 0,
            proxy_protocol: ProxyPolicy::Required,
            trusted_proxies: Vec::new(),
            workers: 0,
            backlog: 0,
            upstream_mode: Mode::Direct,
            routes: Vec::new(),
            name_mismatch: NameMismatch::Reject,
            allow_ech: false,
            control_socket: String::new(),
            control_group: String::new(),
            metrics_addr: None,
            capture_dir: String::new(),
            capture_max_files: 0,
            capture_max_bytes: 0,
            drain_timeout_ms: 0,
            pid_file: String::new(),
            splice: false,
            splice_pipes: 0,
            user: String::new(),
            group: String::new(),
            chroot: String::new(),
            clients: super::clients::Settings::unset(),
            entries: Vec::new(),
        }
    }

    /// Computes `ENVOY_MAX_SESSIONS=auto` again from the open-file limit now: start-up
    /// raises the limit (`ENVOY_MAX_FILES`) after loading the configuration.
    pub fn recount_auto_max_sessions(&mut self) {
        if self
            .entries
            .iter()
            .any(|(k, v, _)| *k == "ENVOY_MAX_SESSIONS" && v == "auto")
        {
            self.max_sessions = auto_max_sessions();
        }
    }

    /// The first key that only a start applies (who the processes are, the open-file limit)
    /// whose value `other` changes.
    pub fn start_only_change(&self, other: &Config) -> Option<&'static str> {
        [
            ("ENVOY_USER", self.user != other.user),
            ("ENVOY_GROUP", self.group != other.group),
            ("ENVOY_CHROOT", self.chroot != other.chroot),
            (
                "ENVOY_CONTROL_GROUP",
                self.control_group != other.control_group,
            ),
            ("ENVOY_MAX_FILES", self.max_files != other.max_files),
        ]
        .into_iter()
        .find_map(|(k, changed)| changed.then_some(k))
    }

    /// `key`'s value as `show config` prints it (the text as written, or the default) and
    /// as log lines print it: a logfmt value (`""` for an empty one).
    pub fn shown(&self, key: &str) -> crate::logfmt::Value<'_> {
        let text = self
            .entries
            .iter()
            .find(|e| e.0 == key)
            .map_or("", |e| e.1.as_str());
        crate::logfmt::Value::str(text)
    }

    /// ENVOY_UPSTREAM's members as configured, comma-separated.
    pub fn upstream_names(&self) -> String {
        let names: Vec<&str> = self.upstream.iter().map(|u| u.name.as_str()).collect();
        names.join(",")
    }

    /// Every address of ENVOY_UPSTREAM's members, in order.
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.upstream
            .iter()
            .flat_map(|u| u.addrs.iter().copied())
            .collect()
    }

    /// ENVOY_IP:ENVOY_PORT, the implicit listener's address.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The name of the listener this configuration is settled for.
    pub fn listener_name(&self) -> &str {
        self.listeners
            .get(self.listener)
            .map_or(super::listener::DEFAULT_NAME, |l| l.name.as_str())
    }

    /// The PROXY policy as log lines show it: the listener's `proxy_protocol=`, else the
    /// key's text.
    pub fn proxy_protocol_shown(&self) -> crate::logfmt::Value<'_> {
        let own = self
            .listeners
            .get(self.listener)
            .and_then(|l| l.overrides.proxy_protocol);
        match own {
            Some(ProxyPolicy::Required) => crate::logfmt::Value::str("required"),
            Some(ProxyPolicy::Optional) => crate::logfmt::Value::str("optional"),
            Some(ProxyPolicy::Off) => crate::logfmt::Value::str("off"),
            None => self.shown("ENVOY_PROXY_PROTOCOL"),
        }
    }

    /// This configuration as the sessions of listener `i` see it: its overrides in place
    /// of the `ENVOY_*` values (PROXY policy, trusted sources, timeouts, the default
    /// route). Made once per listener when a configuration is applied, so that a session
    /// pays nothing for its listener's policy.
    pub fn for_listener(&self, i: usize) -> Config {
        let mut c = self.clone();
        c.listener = i;
        let Some(l) = self.listeners.get(i) else {
            return c;
        };
        let o = &l.overrides;
        if let Some(p) = o.proxy_protocol {
            c.proxy_protocol = p;
        }
        if let Some(t) = &o.trusted {
            c.trusted_proxies.clone_from(t);
        }
        if let Some(ms) = o.header_timeout_ms {
            c.header_timeout_ms = ms;
        }
        if let Some(ms) = o.connect_timeout_ms {
            c.connect_timeout_ms = ms;
        }
        if let Some(ms) = o.idle_timeout_ms {
            c.idle_timeout_ms = ms;
        }
        if o.upstreams.is_some() || o.mode.is_some() {
            // Counted with the default route's clients (same limits, same counters).
            let limited = c.default_route.limited;
            let ups = o.upstreams.clone();
            let mut pool = c.default_route.pool.clone();
            if let Some(ups) = ups {
                // At most as many as ENVOY_UPSTREAM takes: checked when the listener loaded.
                let _ = pool.set_members(ups);
                pool.slots.clear();
            }
            let mut r = Route::default_route(pool, o.mode.unwrap_or(c.upstream_mode));
            r.limited = limited;
            c.default_route = r;
        }
        c
    }

    /// The route for a session: the first that matches, else the default.
    pub fn route(&self, req: &route::Request<'_>) -> &Route {
        route::select(&self.routes, &self.default_route, req)
    }

    /// True when `addr` may send a PROXY header.
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(addr))
    }
}
/// Two descriptors per session plus a margin for listeners, logs and control sockets.
pub(super) fn auto_max_sessions() -> usize {
    let nofile = crate::sys::rlimit::open_files().unwrap_or(1024);
    (nofile.saturating_sub(64) / 2).max(1)
}
