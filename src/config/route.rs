//! Routes: which sessions may pass, and where and how they go.
//!
//! A route is one line: match conditions, `allow` or `deny`, then options. Routes come from
//! `ENVOY_ROUTES` (separated by `;` or newlines) followed by the file named by
//! `ENVOY_ROUTES_FILE`; the first route whose every condition holds wins; when none does, the
//! default route (ENVOY_UPSTREAM, ENVOY_UPSTREAM_MODE, allow) applies. Everything is parsed,
//! validated and resolved at load (names through the resolver the load was given); matching
//! does no I/O and no allocation.
//!
//! ```text
//! route     := condition* ("allow" | "deny") option*
//! condition := "sni=" pattern ("," pattern)*      name: exact, "*.suffix" or "*" (any name)
//!            | "port=" n ("," n)*                  destination port from the PROXY header
//!            | "client=" cidr ("," cidr)*          the client (PROXY header source, else peer)
//!            | "alpn=" proto ("," proto)*          any ALPN protocol the client offered
//!            | "proto=" ("tls" | "http" | "other") ("," ...)*
//!            | "listener=" name ("," name)*         the listener the session arrived on
//! option    := "name=" token                        the route's name in logs and metrics
//!                                                  (default route1, route2, ... in order)
//!            | "upstream=" host:port ("," host:port)*   the route's pool (`config::pool`)
//!            | "balance=" ("first" | "round-robin" | "least-sessions" | "client-hash")
//!            | "check=" ("tcp" | "proxy-v2-local" | "connect") | "check_interval_ms=" n
//!            | "check_timeout_ms=" n | "rise=" n | "fall=" n | "check_host=" host:port
//!            | "mode=" ("direct" | "proxy-v2" | "connect")
//!            | "connect_timeout_ms=" n | "idle_timeout_ms=" n
//!            | "tlvs=" 0xNN ("," 0xNN)*             received PROXY v2 TLVs passed on (proxy-v2);
//!                                                  not 0x01-0x03, 0x05: sluice writes those
//!            | "alpn_tlv=" ("received" | "offered" | "none")   the ALPN TLV sent (proxy-v2)
//!            | "crc32c=" ("yes" | "no")             add a CRC32C TLV (proxy-v2)
//!            | "connect_port=" n                    CONNECT port when the PROXY header has none
//!            | "alert=" ("unrecognized_name" | "access_denied" | "none")   for deny
//!            | "client_max_sessions=" n | "client_rate=" (n "/s" | "off") | "client_burst=" n
//!            | "client_alert=" ("access_denied" | "unrecognized_name" | "none")
//! ```
//! The `client_` options (allow routes) give the route per-client limits of its own: its
//! sessions are counted apart from every other route's (the key is the route and the
//! client), and an option it does not set takes the ENVOY_CLIENT_* value.
//! A `#` starts a comment. An invalid route is refused at load with its line and the reason.
//! A name is 1 to 32 ASCII letters, digits, `_`, `-` or `.`, unique among the routes;
//! `default` is the default route's.

use std::fmt;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::config::pool::{self, Pool};
use crate::config::upstream::{Resolve, Upstream};
use crate::limits::policy::{Limit, Rate, MAX_RATE};

/// How the upstream leg starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The buffered bytes, then the shuffle.
    Direct,
    /// A PROXY v2 header (client addresses, AUTHORITY, ALPN, UNIQUE_ID, chosen TLVs) first.
    ProxyV2,
    /// An HTTP/1.1 CONNECT to a forward proxy, which must answer 2xx.
    Connect,
}

impl Mode {
    /// Parses `direct`, `proxy-v2` or `connect`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "direct" => Some(Mode::Direct),
            "proxy-v2" => Some(Mode::ProxyV2),
            "connect" => Some(Mode::Connect),
            _ => None,
        }
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::ProxyV2 => "proxy-v2",
            Mode::Connect => "connect",
        }
    }
}

/// What a proxy-v2 route sends as its ALPN TLV. The spec's ALPN TLV is the protocol in use,
/// which sluice (never terminating TLS) knows only when its own load balancer said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlpnTlv {
    /// A received ALPN TLV, passed on; otherwise none (the default).
    Received,
    /// A received ALPN TLV; otherwise the list the client offered in its ClientHello, in its
    /// TLS wire form (each protocol name after its length byte), not a protocol in use.
    Offered,
    /// Never an ALPN TLV.
    None,
}

/// TLV types sluice writes itself in a proxy-v2 header (ALPN, AUTHORITY, CRC32C, UNIQUE_ID):
/// passing a received one on as well would send it twice.
pub const TLVS_WRITTEN: [(u8, &str); 4] = [
    (0x01, "ALPN"),
    (0x02, "AUTHORITY"),
    (0x03, "CRC32C"),
    (0x05, "UNIQUE_ID"),
];

/// The TLS alert a denied TLS session receives before the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// unrecognized_name (112): nothing serves this name.
    UnrecognizedName,
    /// access_denied (49): this client may not pass.
    AccessDenied,
    /// handshake_failure (40): an option the client asked for cannot be had (sent when
    /// ENVOY_ECH=refuse refuses a hello carrying ECH; not a route's `alert=`).
    HandshakeFailure,
    /// No alert, just the close.
    None,
}

impl Alert {
    /// The name as written in a route (`alert=`), and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Alert::UnrecognizedName => "unrecognized_name",
            Alert::AccessDenied => "access_denied",
            Alert::HandshakeFailure => "handshake_failure",
            Alert::None => "none",
        }
    }

    /// `unrecognized_name`, `access_denied` or `none`, as `alert=` writes it.
    pub fn parse(s: &str) -> Option<Alert> {
        match s {
            "unrecognized_name" => Some(Alert::UnrecognizedName),
            "access_denied" => Some(Alert::AccessDenied),
            "none" => Some(Alert::None),
            _ => None,
        }
    }

    /// The alert description byte (RFC 8446 §6).
    pub fn code(self) -> Option<u8> {
        match self {
            Alert::UnrecognizedName => Some(112),
            Alert::AccessDenied => Some(49),
            Alert::HandshakeFailure => Some(40),
            Alert::None => None,
        }
    }
}

/// A route's own per-client limits, as its `client_*=` options set them (`None`: the
/// ENVOY_CLIENT_* value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// `client_max_sessions=`
    pub max_sessions: Option<u32>,
    /// `client_rate=` (`Some(None)`: off)
    pub rate: Option<Option<Rate>>,
    /// `client_burst=`
    pub burst: Option<u32>,
    /// `client_alert=`
    pub alert: Option<Alert>,
}

impl ClientOptions {
    /// True when the route sets any: its sessions are then counted apart.
    pub fn any(&self) -> bool {
        *self != ClientOptions::default()
    }
}

/// The per-client limits a route's sessions are held to, and the alert a refused TLS
/// client hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limits and whose counters.
    pub limit: Limit,
    /// The alert.
    pub alert: Alert,
}

/// What a matching route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the session through.
    Allow,
    /// Refuse it, with this alert for TLS sessions.
    Deny(Alert),
}

/// What the first bytes were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TLS ClientHello.
    Tls,
    /// A plain HTTP/1.x request.
    Http,
    /// Anything else.
    Other,
}

impl Proto {
    fn parse(s: &str) -> Option<Proto> {
        match s {
            "tls" => Some(Proto::Tls),
            "http" => Some(Proto::Http),
            "other" => Some(Proto::Other),
            _ => None,
        }
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tls => "tls",
            Proto::Http => "http",
            Proto::Other => "other",
        }
    }
}

/// A server-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Any name (but a name must be there).
    Any,
    /// This name, case-insensitively.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches any name ending so.
    Suffix(String),
}

impl NamePattern {
    /// `*`, `*.suffix` or an exact name; `None` if it holds bytes a name cannot.
    pub fn parse(s: &str) -> Option<NamePattern> {
        let lower = s.to_ascii_lowercase();
        let ok_chars = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        if lower == "*" {
            Some(NamePattern::Any)
        } else if let Some(rest) = lower.strip_prefix("*.") {
            ok_chars(rest).then(|| NamePattern::Suffix(format!(".{rest}")))
        } else {
            ok_chars(&lower).then_some(NamePattern::Exact(lower))
        }
    }

    /// True when `name` matches, case-insensitively.
    pub fn matches(&self, name: &[u8]) -> bool {
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(e) => name.eq_ignore_ascii_case(e.as_bytes()),
            NamePattern::Suffix(s) => {
                name.len() > s.len()
                    && name
                        .get(name.len() - s.len()..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(s.as_bytes()))
            }
        }
    }
}

/// What a session is matched on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The routed name (SNI, else AUTHORITY, else Host).
    pub name: Option<&'a [u8]>,
    /// The destination port from the PROXY header.
    pub dst_port: Option<u16>,
    /// The client address.
    pub client: Option<IpAddr>,
    /// The offered ALPN protocols, comma-separated (commas inside names are escaped).
    pub alpn: &'a [u8],
    /// What the first bytes were.
    pub proto: Option<Proto>,
    /// The index of the listener the session arrived on (`Config::listeners`).
    pub listener: usize,
}

/// The default route's name.
pub const DEFAULT_NAME: &str = "default";

/// The longest route name.
pub const NAME_MAX: usize = 32;

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Where it was written, e.g. `ENVOY_ROUTES route 2` or `routes.conf line 7`; `default`.
    pub origin: String,
    /// Its name, a token (`name=`, else `routeN`, N its place among the routes; `default`):
    /// what log lines say (`route=`) and per-route metrics are labelled with.
    pub name: String,
    names: Vec<NamePattern>,
    ports: Vec<u16>,
    clients: Vec<Cidr>,
    alpn: Vec<Vec<u8>>,
    protos: Vec<Proto>,
    /// `listener=` as written; `listener_ids` the same as indices once settled.
    pub listener_names: Vec<String>,
    pub(crate) listener_ids: Vec<usize>,
    /// allow or deny.
    pub action: Action,
    /// The upstreams and how a session picks one.
    pub pool: Pool,
    /// How the upstream leg starts.
    pub mode: Mode,
    /// Overrides ENVOY_CONNECT_TIMEOUT_MS.
    pub connect_timeout_ms: Option<u64>,
    /// Overrides ENVOY_IDLE_TIMEOUT_MS.
    pub idle_timeout_ms: Option<u64>,
    /// Received PROXY v2 TLV types passed on in proxy-v2 mode.
    pub pass_tlvs: Vec<u8>,
    /// Add a CRC32C TLV in proxy-v2 mode.
    pub crc32c: bool,
    /// The ALPN TLV in proxy-v2 mode.
    pub alpn_tlv: AlpnTlv,
    /// CONNECT port when the PROXY header gave no destination.
    pub connect_port: Option<u16>,
    /// Where the worker counts this route's sessions (`worker::stats::Routes`), set when
    /// the worker takes the config in, so that a session counts without looking its name up.
    pub metrics_slot: usize,
    /// Its own per-client limits (`client_*=`).
    pub client: ClientOptions,
    /// The per-client limits its sessions are held to, settled once every key is read
    /// (`config::clients::settle`); `None`: none.
    pub limited: Option<Limited>,
}

impl Route {
    /// The default route: allow everything to `pool` in `mode`.
    pub fn default_route(pool: Pool, mode: Mode) -> Route {
        Route {
            origin: "default".to_string(),
            name: DEFAULT_NAME.to_string(),
            names: Vec::new(),
            ports: Vec::new(),
            clients: Vec::new(),
            alpn: Vec::new(),
            protos: Vec::new(),
            listener_names: Vec::new(),
            listener_ids: Vec::new(),
            action: Action::Allow,
            pool,
            mode,
            connect_timeout_ms: None,
            idle_timeout_ms: None,
            pass_tlvs: Vec::new(),
            crc32c: false,
            alpn_tlv: AlpnTlv::Received,
            connect_port: None,
            metrics_slot: 0,
            client: ClientOptions::default(),
            limited: None,
        }
    }

    /// True when every condition of the route holds for `r`.
    pub fn matches(&self, r: &Request<'_>) -> bool {
        let name_ok = self.names.is_empty()
            || r.name
                .is_some_and(|n| self.names.iter().any(|p| p.matches(n)));
        let port_ok = self.ports.is_empty() || r.dst_port.is_some_and(|p| self.ports.contains(&p));
        let client_ok = self.clients.is_empty()
            || r.client
                .is_some_and(|c| self.clients.iter().any(|b| b.contains(c)));
        let alpn_ok = self.alpn.is_empty()
            || r.alpn
                .split(|&b| b == b',')
                .any(|p| self.alpn.iter().any(|a| a.as_slice() == p));
        let proto_ok = self.protos.is_empty() || r.proto.is_some_and(|p| self.protos.contains(&p));
        let listener_ok = self.listener_ids.is_empty() || self.listener_ids.contains(&r.listener);
        name_ok && port_ok && client_ok && alpn_ok && proto_ok && listener_ok
    }

    /// True when the route names clients (a denial then means access_denied).
    pub fn matches_on_client(&self) -> bool {
        !self.clients.is_empty()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// True for a route name: 1 to [`NAME_MAX`] ASCII letters, digits, `_`, `-` or `.` (a
/// bare logfmt value and a metric label as it is).
pub fn is_name(s: &str) -> bool {
    (1..=NAME_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// A route (or a listener: [`entries`] of either list) that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// Where: `ENVOY_ROUTES route 2`, `ENVOY_LISTEN listener 2` or `FILE line 7`.
    pub origin: String,
    /// The route as written.
    pub text: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.origin, self.text, self.reason)
    }
}

/// Parses the routes in `text`; `origin(n)` names route number `n` (1-based) for errors.
/// `before` are the routes loaded ahead of these (ENVOY_ROUTES ahead of the file): the
/// default names go on counting after them, and a name must differ from theirs too.
/// `defaults` (ENVOY_UPSTREAM's members, ENVOY_BALANCE) and `default_mode` fill allow routes
/// that name no upstream / balance / mode. `names` answers for `host:port`s whose host is a
/// name (the system resolver at start, a table of answers on a loop).
pub fn parse_routes(
    text: &str,
    split_semicolons: bool,
    origin: impl Fn(usize) -> String,
    before: &[Route],
    defaults: &Pool,
    default_mode: Mode,
    names: &dyn Resolve,
) -> Result<Vec<Route>, RouteError> {
    let mut routes: Vec<Route> = Vec::new();
    for (n, line) in entries(text, split_semicolons) {
        let err = |reason: String| RouteError {
            origin: origin(n),
            text: line.to_string(),
            reason,
        };
        let mut r = parse_route(line, origin(n), defaults, default_mode, names).map_err(err)?;
        if r.name.is_empty() {
            r.name = format!("route{}", before.len() + routes.len() + 1);
        }
        if let Some(other) = before.iter().chain(&routes).find(|o| o.name == r.name) {
            return Err(err(format!(
                "name {} is already the name of {}",
                r.name, other.origin
            )));
        }
        routes.push(r);
    }
    Ok(routes)
}

/// The entries of a list (routes, listeners): separated by newlines (and `;` when
/// `split_semicolons`), a `#` to the end of its line a comment, blank ones skipped; each with
/// its number (1-based, blanks counted, so that a file's number is its line).
pub fn entries(text: &str, split_semicolons: bool) -> impl Iterator<Item = (usize, &str)> {
    let seps: &[char] = if split_semicolons {
        &['\n', ';']
    } else {
        &['\n']
    };
    text.split(seps)
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.split('#').next().unwrap_or("").trim()))
        .filter(|(_, line)| !line.is_empty())
}

fn parse_route(
    line: &str,
    origin: String,
    defaults: &Pool,
    default_mode: Mode,
    names: &dyn Resolve,
) -> Result<Route, String> {
    let mut r = Route::default_route(
        Pool::new(defaults.members.clone(), defaults.balance),
        default_mode,
    );
    r.origin = origin;
    r.name = String::new();
    let mut action = None;
    let mut upstreams = None;
    let mut pool_options = pool::Options::default();
    let mut pool_option = None;
    let mut alert = None;
    for word in line.split_whitespace() {
        if word == "allow" || word == "deny" {
            if action.is_some() {
                return Err("more than one allow/deny".into());
            }
            action = Some(word);
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("{word:?} is not allow, deny or key=value"));
        };
        let list = || value.split(',').filter(|s| !s.is_empty());
        let is_condition = matches!(
            key,
            "sni" | "port" | "client" | "alpn" | "proto" | "listener"
        );
        if is_condition && action.is_some() {
            return Err(format!("condition {key}= after allow/deny"));
        }
        if !is_condition && action.is_none() {
            return Err(format!("option {key}= before allow/deny"));
        }
        if Pool::is_option(key) {
            pool_options.take(key, value)?;
            pool_option.get_or_insert(key);
            continue;
        }
        match key {
            "name" => {
                if !r.name.is_empty() {
                    return Err("more than one name=".into());
                }
                if !is_name(value) {
                    return Err(format!(
                        "bad name {value:?} (1 to {NAME_MAX} letters, digits, '_', '-', '.')"
                    ));
                }
                if value == DEFAULT_NAME {
                    return Err(format!("name={DEFAULT_NAME} is the default route's"));
                }
                r.name = value.to_string();
            }
            "sni" => {
                for p in list() {
                    r.names
                        .push(NamePattern::parse(p).ok_or(format!("bad name pattern {p:?}"))?);
                }
            }
            "port" => {
                for p in list() {
                    r.ports
                        .push(p.parse().map_err(|_| format!("bad port {p:?}"))?);
                }
            }
            "client" => {
                for c in list() {
                    r.clients
                        .push(c.parse().map_err(|_| format!("bad CIDR {c:?}"))?);
                }
            }
            "alpn" => r.alpn.extend(list().map(|a| a.as_bytes().to_vec())),
            "listener" => {
                for l in list() {
                    if !is_name(l) {
                        return Err(format!("bad listener name {l:?}"));
                    }
                    r.listener_names.push(l.to_string());
                }
            }
            "proto" => {
                for p in list() {
                    r.protos.push(
                        Proto::parse(p).ok_or(format!("bad proto {p:?} (tls, http, other)"))?,
                    );
                }
            }
            "upstream" => {
                if upstreams.is_some() {
                    return Err("more than one upstream=".into());
                }
                if list().next().is_none() {
                    return Err("upstream= names nothing".into());
                }
                upstreams = Some(Upstream::list(value, names)?);
            }
            "mode" => {
                r.mode = Mode::parse(value)
                    .ok_or(format!("bad mode {value:?} (direct, proxy-v2, connect)"))?
            }
            "connect_timeout_ms" | "idle_timeout_ms" => {
                let n: u64 = value.parse().map_err(|_| format!("bad {key} {value:?}"))?;
                if key == "connect_timeout_ms" {
                    if n == 0 {
                        return Err("connect_timeout_ms must be at least 1".into());
                    }
                    r.connect_timeout_ms = Some(n);
                } else {
                    r.idle_timeout_ms = Some(n);
                }
            }
            "tlvs" => {
                for t in list() {
                    let hex = t
                        .strip_prefix("0x")
                        .or_else(|| t.strip_prefix("0X"))
                        .unwrap_or(t);
                    let kind =
                        u8::from_str_radix(hex, 16).map_err(|_| format!("bad TLV type {t:?}"))?;
                    if let Some((_, name)) = TLVS_WRITTEN.iter().find(|(k, _)| *k == kind) {
                        return Err(format!(
                            "tlvs={t}: sluice writes the {name} TLV (0x{kind:02x}) itself; \
                             only other types can be passed on (alpn_tlv= chooses the ALPN one)"
                        ));
                    }
                    r.pass_tlvs.push(kind);
                }
            }
            "alpn_tlv" => {
                r.alpn_tlv = match value {
                    "received" => AlpnTlv::Received,
                    "offered" => AlpnTlv::Offered,
                    "none" => AlpnTlv::None,
                    _ => return Err(format!("bad alpn_tlv {value:?} (received, offered, none)")),
                }
            }
            "crc32c" => {
                r.crc32c = match value {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("crc32c={value:?}: yes or no")),
                }
            }
            "connect_port" => {
                r.connect_port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad connect_port {value:?}"))?,
                )
            }
            "alert" => alert = Some(Alert::parse(value).ok_or(format!("bad alert {value:?}"))?),
            "client_max_sessions" | "client_burst" => {
                let n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= MAX_RATE && (n > 0 || key == "client_max_sessions"))
                    .ok_or(format!("bad {key} {value:?}"))?;
                if key == "client_burst" {
                    r.client.burst = Some(n);
                } else {
                    r.client.max_sessions = Some(n);
                }
            }
            "client_rate" => {
                r.client.rate = Some(Rate::parse(value).ok_or(format!(
                    "bad client_rate {value:?} (N/s up to {MAX_RATE}/s, or off)"
                ))?)
            }
            "client_alert" => {
                r.client.alert =
                    Some(Alert::parse(value).ok_or(format!("bad client_alert {value:?}"))?)
            }
            _ => return Err(format!("unknown key {key:?}")),
        }
    }
    r.action = match action {
        Some("allow") => {
            if alert.is_some() {
                return Err("alert= goes with deny".into());
            }
            Action::Allow
        }
        Some(_) => {
            if upstreams.is_some() {
                return Err("upstream= goes with allow".into());
            }
            if let Some(k) = pool_option {
                return Err(format!("{k}= goes with allow"));
            }
            if r.client.any() {
                return Err("client_*= limits go with allow".into());
            }
            let default_alert = if r.matches_on_client() {
                Alert::AccessDenied
            } else {
                Alert::UnrecognizedName
            };
            Action::Deny(alert.unwrap_or(default_alert))
        }
        None => return Err("no allow or deny".into()),
    };
    if let Some(ups) = upstreams {
        r.pool.set_members(ups)?;
    }
    pool_options.apply(&mut r.pool)?;
    Ok(r)
}

/// Gives each route's `listener=` names their indices among `listeners`' names; a name
/// no listener has is refused (the route's origin and the name).
pub fn settle_listeners(routes: &mut [Route], listeners: &[&str]) -> Result<(), RouteError> {
    for r in routes.iter_mut() {
        let mut ids = Vec::with_capacity(r.listener_names.len());
        for n in &r.listener_names {
            match listeners.iter().position(|l| l == n) {
                Some(i) => ids.push(i),
                None => {
                    return Err(RouteError {
                        origin: r.origin.clone(),
                        text: format!("listener={n}"),
                        reason: format!(
                            "no listener is named {n} (listeners: {})",
                            listeners.join(", ")
                        ),
                    })
                }
            }
        }
        r.listener_ids = ids;
    }
    Ok(())
}

/// The first route that matches, else `default`.
pub fn select<'r>(routes: &'r [Route], default: &'r Route, req: &Request<'_>) -> &'r Route {
    routes.iter().find(|r| r.matches(req)).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(s: &str) -> Upstream {
        Upstream {
            name: s.to_string(),
            addrs: vec![s.parse().unwrap()],
        }
    }

    /// Knows no name: only addresses load.
    struct NoNames;

    impl Resolve for NoNames {
        fn addrs(&self, host_port: &str) -> Result<Vec<std::net::SocketAddr>, String> {
            Err(format!("no name here: {host_port}"))
        }
    }

    fn defaults() -> Pool {
        Pool::new(
            vec![up("127.0.0.1:10000")],
            crate::config::pool::Balance::First,
        )
    }

    fn load(text: &str) -> Result<Vec<Route>, RouteError> {
        parse_routes(
            text,
            true,
            |n| format!("route {n}"),
            &[],
            &defaults(),
            Mode::Direct,
            &NoNames,
        )
    }

    fn req<'a>(
        name: Option<&'a str>,
        port: Option<u16>,
        client: &str,
        alpn: &'a str,
    ) -> Request<'a> {
        Request {
            name: name.map(str::as_bytes),
            dst_port: port,
            client: Some(client.parse().unwrap()),
            alpn: alpn.as_bytes(),
            proto: Some(Proto::Tls),
            listener: 0,
        }
    }

    #[test]
    fn the_route_matrix_first_match_wins() {
        let routes = load(
            "client=203.0.113.0/24 deny;\
             sni=api.example.com allow upstream=127.0.0.1:1001 mode=proxy-v2 tlvs=0xea crc32c=yes;\
             sni=*.example.com port=443 allow upstream=127.0.0.1:1002,127.0.0.1:1003 mode=connect;\
             alpn=h2 allow upstream=127.0.0.1:1004;\
             proto=other deny alert=none;\
             sni=*.blocked.test deny",
        )
        .unwrap();
        let default = Route::default_route(defaults(), Mode::Direct);
        let pick = |r: Request<'_>| select(&routes, &default, &r).origin.clone();
        // A denied client is denied whatever the name.
        assert_eq!(
            pick(req(Some("api.example.com"), Some(443), "203.0.113.9", "")),
            "route 1"
        );
        assert_eq!(
            pick(req(Some("api.example.com"), Some(443), "10.0.0.1", "")),
            "route 2"
        );
        assert_eq!(
            pick(req(Some("API.Example.COM"), None, "10.0.0.1", "")),
            "route 2"
        );
        assert_eq!(
            pick(req(Some("www.example.com"), Some(443), "10.0.0.1", "")),
            "route 3"
        );
        // The port condition fails, the ALPN one holds.
        assert_eq!(
            pick(req(
                Some("www.example.com"),
                Some(8443),
                "10.0.0.1",
                "http/1.1,h2"
            )),
            "route 4"
        );
        // `*.example.com` does not match the bare domain.
        assert_eq!(
            pick(req(Some("example.com"), Some(443), "10.0.0.1", "")),
            "default"
        );
        assert_eq!(
            pick(req(Some("x.blocked.test"), None, "10.0.0.1", "")),
            "route 6"
        );
        assert_eq!(pick(req(None, None, "10.0.0.1", "")), "default");
        let mut other = req(None, None, "10.0.0.1", "");
        other.proto = Some(Proto::Other);
        assert_eq!(pick(other), "route 5");
        assert_eq!(routes[0].action, Action::Deny(Alert::AccessDenied));
        assert_eq!(routes[5].action, Action::Deny(Alert::UnrecognizedName));
        assert_eq!(routes[4].action, Action::Deny(Alert::None));
        assert_eq!(routes[1].mode, Mode::ProxyV2);
        assert_eq!(routes[1].pass_tlvs, vec![0xea]);
        assert!(routes[1].crc32c);
        assert_eq!(routes[1].alpn_tlv, AlpnTlv::Received, "the default");
        assert_eq!(routes[2].pool.members.len(), 2);
        assert_eq!(
            routes[4].pool.members,
            defaults().members,
            "the default members fill in"
        );
        assert_eq!(routes[3].mode, Mode::Direct, "the default mode fills in");
    }

    #[test]
    fn invalid_routes_are_refused_with_line_and_reason() {
        for (text, why) in [
            ("sni=example.com", "no allow or deny"),
            ("sni=exa mple.com allow", "not allow, deny or key=value"),
            ("sni=a\u{7f}b allow", "bad name pattern"),
            ("port=99999 allow", "bad port"),
            ("client=10.0.0.0/40 deny", "bad CIDR"),
            ("allow mode=tcp", "bad mode"),
            ("allow upstream=nowhere:1", "cannot resolve: no name here"),
            ("allow upstream=nowhere", "expected host:port"),
            (
                "allow upstream=127.0.0.1:1 upstream=127.0.0.1:2",
                "more than one upstream=",
            ),
            ("allow balance=random", "bad balance \"random\""),
            ("deny balance=first", "balance= goes with allow"),
            ("allow check=http", "bad check \"http\""),
            ("allow check=connect", "needs check_host="),
            ("allow rise=2", "rise= needs check="),
            ("deny upstream=127.0.0.1:1", "goes with allow"),
            ("allow sni=late.example", "after allow/deny"),
            ("allow deny", "more than one"),
            ("allow tlvs=0xzz", "bad TLV type"),
            ("allow tlvs=0xea,0x01", "writes the ALPN TLV (0x01) itself"),
            ("allow tlvs=0x02", "writes the AUTHORITY TLV (0x02) itself"),
            ("allow tlvs=0X03", "writes the CRC32C TLV (0x03) itself"),
            ("allow tlvs=5", "writes the UNIQUE_ID TLV (0x05) itself"),
            ("allow alpn_tlv=first", "bad alpn_tlv"),
            ("allow colour=blue", "unknown key"),
            ("allow connect_timeout_ms=0", "at least 1"),
            ("allow name=", "bad name"),
            ("allow name=a/b", "bad name"),
            ("allow name=two\u{7f}", "bad name"),
            ("allow name=abcdefghijabcdefghijabcdefghijabc", "bad name"),
            ("allow name=default", "the default route's"),
            ("allow name=a name=b", "more than one name="),
            (
                "allow name=route1",
                "name route1 is already the name of route 1",
            ),
            ("deny client_max_sessions=1", "go with allow"),
            ("allow client_rate=10", "bad client_rate"),
            ("allow client_burst=0", "bad client_burst"),
            ("allow client_max_sessions=-1", "bad client_max_sessions"),
            ("allow client_alert=loud", "bad client_alert"),
        ] {
            let e = load(&format!("sni=* allow; {text}")).unwrap_err();
            assert_eq!(e.origin, "route 2", "{text}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn routes_are_named_in_order_unless_they_say() {
        let routes = load("sni=a.test allow; sni=b.test allow name=api-2.eu; deny").unwrap();
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["route1", "api-2.eu", "route3"]);
        assert_eq!(routes[1].to_string(), "api-2.eu");
        let default = Route::default_route(defaults(), Mode::Direct);
        assert_eq!(default.name, "default");
        // the file's routes count on after ENVOY_ROUTES, and may not reuse its names
        let more = parse_routes(
            "allow\nallow name=extra",
            false,
            |n| format!("file line {n}"),
            &routes,
            &defaults(),
            Mode::Direct,
            &NoNames,
        )
        .unwrap();
        let names: Vec<&str> = more.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["route4", "extra"]);
        // a name that a later route's default takes is refused there
        let e = load("allow name=route2; allow").unwrap_err();
        assert_eq!(e.origin, "route 2");
        assert!(e
            .reason
            .contains("name route2 is already the name of route 1"));
        let e = parse_routes(
            "allow name=api-2.eu",
            false,
            |n| format!("file line {n}"),
            &routes,
            &defaults(),
            Mode::Direct,
            &NoNames,
        )
        .unwrap_err();
        assert_eq!(e.origin, "file line 1");
        assert!(
            e.reason
                .contains("name api-2.eu is already the name of route 2"),
            "{e}"
        );
    }

    #[test]
    fn a_listener_condition_matches_the_listeners_it_names() {
        let mut routes = load("listener=b,c allow upstream=127.0.0.1:1; allow").unwrap();
        settle_listeners(&mut routes, &["a", "b", "c"]).unwrap();
        let default = Route::default_route(defaults(), Mode::Direct);
        let on = |listener| {
            let mut r = req(None, None, "10.0.0.1", "");
            r.listener = listener;
            select(&routes, &default, &r).name.clone()
        };
        assert_eq!([on(0), on(1), on(2)], ["route2", "route1", "route1"]);
        let e = settle_listeners(&mut routes, &["a", "b"]).unwrap_err();
        assert_eq!(e.origin, "route 1");
        assert!(e.reason.contains("no listener is named c"), "{e}");
        assert!(load("allow listener=a")
            .unwrap_err()
            .reason
            .contains("after allow/deny"));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let routes = load("# header\n\n  sni=a.test allow # trailing\n").unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].origin, "route 3");
    }
}
