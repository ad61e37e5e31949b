//! The configuration: every `ENVOY_*` key, its default, how it is validated, and where the
//! effective value came from.
//!
//! A `Config` is built whole from a key lookup (the environment, later a file overlay) and is
//! either entirely valid or refused with an error naming the key and the value. Names are
//! resolved here, at load time, never on the event loop. Nothing here touches a socket.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::cidr::Cidr;
pub mod route;

use route::{Mode, Route};

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

/// A key and value that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `ENVOY_PORT`.
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: {}",
            self.key,
            crate::hexdump::Escaped(self.value.as_bytes()).to_string(),
            self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// What to do with a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPolicy {
    /// Every connection must start with a header (v1 or v2).
    Required,
    /// A header is used when present; otherwise the socket's own peer is the client.
    Optional,
    /// Headers are not looked for: every byte is the client's and passes as is.
    Off,
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

/// A `host:port` as written, with the addresses it resolved to at load time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The text as configured, e.g. `localhost:10000`.
    pub name: String,
    /// Every address the name resolved to; tried in order on connect failure.
    pub addrs: Vec<SocketAddr>,
}

/// One extra header sent on CONNECT (`ENVOY_HEADERS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// A token, as in RFC 9110 §5.1.
    pub name: String,
    /// Visible ASCII, spaces and tabs; never CR, LF or NUL.
    pub value: String,
}

/// The whole, validated configuration of one worker.
#[derive(Debug, Clone)]
pub struct Config {
    /// ENVOY_IP
    pub ip: IpAddr,
    /// ENVOY_PORT
    pub port: u16,
    /// ENVOY_UPSTREAM
    pub upstream: Upstream,
    /// ENVOY_ACCEPTORS
    pub acceptors: usize,
    /// ENVOY_COUNTRY (upper-cased)
    pub country: String,
    /// ENVOY_HEADERS
    pub headers: Vec<Header>,
    /// ENVOY_REGION_KEY
    pub region_key: String,
    /// ENVOY_SESSION_KEY
    pub session_key: String,
    /// ENVOY_LOG_LEVEL
    pub log_level: log::LevelFilter,
    /// ENVOY_BUFFER_SIZE
    pub buffer_size: usize,
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
    /// Splice pipes per worker at most; 0 when ENVOY_SPLICE=off or not on Linux.
    pub splice_pipes: usize,
    /// Each key's effective value as text and its source, in table order.
    pub entries: Vec<(&'static str, String, Source)>,
}

/// Every key: name, default (as text), one line of meaning. The README's table says the same.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("ENVOY_IP", "127.0.0.1", "listen address (IPv4 or IPv6)"),
    ("ENVOY_PORT", "8000", "listen port"),
    (
        "ENVOY_UPSTREAM",
        "localhost:10000",
        "default upstream host:port, resolved at load",
    ),
    (
        "ENVOY_ACCEPTORS",
        "5",
        "accepts per readiness event before the loop serves others",
    ),
    (
        "ENVOY_COUNTRY",
        "US",
        "region header value in CONNECT mode (upper-cased)",
    ),
    (
        "ENVOY_HEADERS",
        "",
        "extra CONNECT headers: 'Name: value' pairs separated by ';'",
    ),
    (
        "ENVOY_REGION_KEY",
        "x-region-key",
        "region header name in CONNECT mode",
    ),
    (
        "ENVOY_SESSION_KEY",
        "x-session-key",
        "session header name in CONNECT mode",
    ),
    (
        "ENVOY_LOG_LEVEL",
        "info",
        "off, error, warn, info, debug or trace",
    ),
    (
        "ENVOY_BUFFER_SIZE",
        "16384",
        "bytes per direction per session (2048..=1048576)",
    ),
    (
        "ENVOY_MAX_SESSIONS",
        "auto",
        "sessions per worker; auto = (open-file limit - 64) / 2",
    ),
    (
        "ENVOY_HEADER_TIMEOUT_MS",
        "5000",
        "time to receive the PROXY header and ClientHello",
    ),
    (
        "ENVOY_CONNECT_TIMEOUT_MS",
        "5000",
        "time for the upstream connect",
    ),
    (
        "ENVOY_IDLE_TIMEOUT_MS",
        "300000",
        "close a session idle this long both ways (0: never)",
    ),
    (
        "ENVOY_PROXY_PROTOCOL",
        "optional",
        "required, optional or off",
    ),
    (
        "ENVOY_TRUSTED_PROXIES",
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7",
        "CIDRs allowed to send a PROXY header",
    ),
    (
        "ENVOY_WORKERS",
        "auto",
        "worker processes; auto = online CPUs",
    ),
    ("ENVOY_BACKLOG", "1024", "listen backlog"),
    (
        "ENVOY_UPSTREAM_MODE",
        "direct",
        "default route's mode: direct, proxy-v2 or connect",
    ),
    (
        "ENVOY_ROUTES",
        "",
        "routes, separated by ';' or newlines (see README, Routing)",
    ),
    (
        "ENVOY_ROUTES_FILE",
        "",
        "a file of routes, one a line, after ENVOY_ROUTES",
    ),
    (
        "ENVOY_NAME_MISMATCH",
        "prefer-sni",
        "SNI and PROXY AUTHORITY differ: reject, prefer-sni or prefer-authority",
    ),
    (
        "ENVOY_ECH",
        "allow",
        "ClientHellos with encrypted_client_hello: allow or refuse",
    ),
    (
        "ENVOY_CONFIG_FILE",
        "",
        "KEY=VALUE file read at start and on reload, over the environment",
    ),
    (
        "ENVOY_CONTROL_SOCKET",
        "",
        "UNIX control socket path (mode 0600); empty: none",
    ),
    (
        "ENVOY_METRICS_ADDR",
        "",
        "ip:port serving Prometheus /metrics; empty: none",
    ),
    (
        "ENVOY_CAPTURE_DIR",
        "",
        "directory for .bin captures of failed and traced sessions",
    ),
    (
        "ENVOY_CAPTURE_MAX_FILES",
        "100",
        "captures kept; the oldest are deleted",
    ),
    (
        "ENVOY_CAPTURE_MAX_BYTES",
        "10485760",
        "total bytes of captures kept",
    ),
    (
        "ENVOY_DRAIN_TIMEOUT_MS",
        "30000",
        "drain: how long sessions may finish before they are closed",
    ),
    (
        "ENVOY_PID_FILE",
        "",
        "file the serving supervisor writes its pid to (rewritten by an upgrade)",
    ),
    (
        "ENVOY_SPLICE",
        "auto",
        "auto: bulk directions move through splice(2) pipes (Linux); off: always copy",
    ),
    (
        "ENVOY_SPLICE_PIPES",
        "256",
        "splice pipes per worker at most (two descriptors each)",
    ),
];

/// Where a configuration is read from: the environment as it was at start, the
/// ENVOY_CONFIG_FILE overlay (re-read on every load), and runtime `set` overrides.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// ENVOY_* variables at start.
    pub env: std::collections::BTreeMap<String, String>,
    /// Values set at run time; they survive reloads.
    pub set: std::collections::BTreeMap<String, String>,
}

impl Layers {
    /// Snapshots the ENVOY_* variables of this process.
    pub fn from_process_env() -> Layers {
        let env = std::env::vars()
            .filter(|(k, _)| k.starts_with("ENVOY_"))
            .collect();
        Layers {
            env,
            set: Default::default(),
        }
    }

    /// Builds and validates a whole configuration: set > file > environment > default.
    /// Reads ENVOY_CONFIG_FILE and ENVOY_ROUTES_FILE (blocking: at start and reload only).
    pub fn load(&self) -> Result<Config, ConfigError> {
        let path = self
            .set
            .get("ENVOY_CONFIG_FILE")
            .or_else(|| self.env.get("ENVOY_CONFIG_FILE"))
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        let file = if path.is_empty() {
            Default::default()
        } else {
            read_config_file(&path)?
        };
        Config::load(|k| {
            if let Some(v) = self.set.get(k) {
                Some((v.clone(), Source::Set))
            } else if let Some(v) = file.get(k) {
                Some((v.clone(), Source::File))
            } else {
                self.env.get(k).map(|v| (v.clone(), Source::Environment))
            }
        })
    }

    /// The layers with `key` set to `value`, if `key` is a known key.
    pub fn with_set(&self, key: &str, value: &str) -> Result<Layers, ConfigError> {
        let Some(k) = KEYS.iter().find(|k| k.0 == key) else {
            return Err(error("ENVOY_*", key, "no such key (see `show config`)"));
        };
        let mut l = self.clone();
        l.set.insert(k.0.to_string(), value.to_string());
        Ok(l)
    }
}

/// Reads a KEY=VALUE file: `#` comments, blank lines, optional double quotes around values.
fn read_config_file(path: &str) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| error("ENVOY_CONFIG_FILE", path, format!("cannot read: {e}")))?;
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(error(
                "ENVOY_CONFIG_FILE",
                line,
                format!("{path} line {}: not KEY=VALUE", i + 1),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if !KEYS.iter().any(|key| key.0 == k) {
            return Err(error(
                "ENVOY_CONFIG_FILE",
                k,
                format!("{path} line {}: unknown key", i + 1),
            ));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Layers::from_process_env().load()
    }

    /// Loads from any key lookup; every key is validated, the first bad one is returned.
    pub fn load(lookup: impl Fn(&str) -> Option<(String, Source)>) -> Result<Config, ConfigError> {
        let mut entries = Vec::with_capacity(KEYS.len());
        let mut get = |key: &'static str| -> (String, &'static str) {
            let default = KEYS.iter().find(|k| k.0 == key).map(|k| k.1).unwrap_or("");
            let (value, source) = match lookup(key) {
                Some(v) => v,
                None => (default.to_string(), Source::Default),
            };
            entries.push((key, value.clone(), source));
            (value, key)
        };
        let ip = parse_with(get("ENVOY_IP"), "not an IP address", |v| {
            IpAddr::from_str(v).ok()
        })?;
        let port = parse_with(get("ENVOY_PORT"), "not a port (0-65535)", |v| {
            v.parse().ok()
        })?;
        let upstream = parse_upstream(get("ENVOY_UPSTREAM"))?;
        let acceptors = parse_range(get("ENVOY_ACCEPTORS"), 1, 1024)? as usize;
        let country = parse_with(
            get("ENVOY_COUNTRY"),
            "expected 1-16 letters or digits",
            |v| {
                let ok =
                    !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| v.to_ascii_uppercase())
            },
        )?;
        let headers = parse_headers(get("ENVOY_HEADERS"))?;
        let region_key = parse_with(get("ENVOY_REGION_KEY"), "not an HTTP header name", token)?;
        let session_key = parse_with(get("ENVOY_SESSION_KEY"), "not an HTTP header name", token)?;
        let log_level = parse_with(
            get("ENVOY_LOG_LEVEL"),
            "expected off, error, warn, info, debug or trace",
            |v| log::LevelFilter::from_str(v).ok(),
        )?;
        let buffer_size = parse_range(get("ENVOY_BUFFER_SIZE"), 2048, 1 << 20)? as usize;
        let max_sessions = {
            let (v, key) = get("ENVOY_MAX_SESSIONS");
            if v == "auto" {
                auto_max_sessions()
            } else {
                parse_range((v, key), 1, 10_000_000)? as usize
            }
        };
        let header_timeout_ms = parse_range(get("ENVOY_HEADER_TIMEOUT_MS"), 1, 3_600_000)?;
        let connect_timeout_ms = parse_range(get("ENVOY_CONNECT_TIMEOUT_MS"), 1, 3_600_000)?;
        let idle_timeout_ms = parse_range(get("ENVOY_IDLE_TIMEOUT_MS"), 0, 86_400_000)?;
        let proxy_protocol = parse_with(
            get("ENVOY_PROXY_PROTOCOL"),
            "expected required, optional or off",
            |v| match v {
                "required" => Some(ProxyPolicy::Required),
                "optional" => Some(ProxyPolicy::Optional),
                "off" => Some(ProxyPolicy::Off),
                _ => None,
            },
        )?;
        let trusted_proxies = parse_with(
            get("ENVOY_TRUSTED_PROXIES"),
            "expected comma-separated CIDRs such as 10.0.0.0/8,::1/128",
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<Cidr>().ok())
                    .collect::<Option<Vec<_>>>()
            },
        )?;
        let workers = {
            let (v, key) = get("ENVOY_WORKERS");
            if v == "auto" {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                parse_range((v, key), 1, 1024)? as usize
            }
        };
        let backlog = parse_range(get("ENVOY_BACKLOG"), 1, 65535)? as i32;
        let mode = parse_with(
            get("ENVOY_UPSTREAM_MODE"),
            "expected direct, proxy-v2 or connect",
            Mode::parse,
        )?;
        let resolve =
            |s: &str| parse_upstream((s.to_string(), "ENVOY_ROUTES")).map_err(|e| e.reason);
        let (inline, _) = get("ENVOY_ROUTES");
        let mut routes = route::parse_routes(
            &inline,
            true,
            |n| format!("ENVOY_ROUTES route {n}"),
            &upstream,
            mode,
            &resolve,
        )
        .map_err(|e| {
            error(
                "ENVOY_ROUTES",
                &e.text,
                format!("{}: {}", e.origin, e.reason),
            )
        })?;
        let (file, _) = get("ENVOY_ROUTES_FILE");
        if !file.trim().is_empty() {
            let path = file.trim();
            let text = std::fs::read_to_string(path)
                .map_err(|e| error("ENVOY_ROUTES_FILE", path, format!("cannot read: {e}")))?;
            let more = route::parse_routes(
                &text,
                false,
                |n| format!("{path} line {n}"),
                &upstream,
                mode,
                &resolve,
            )
            .map_err(|e| {
                error(
                    "ENVOY_ROUTES_FILE",
                    &e.text,
                    format!("{}: {}", e.origin, e.reason),
                )
            })?;
            routes.extend(more);
        }
        let name_mismatch = parse_with(
            get("ENVOY_NAME_MISMATCH"),
            "expected reject, prefer-sni or prefer-authority",
            |v| match v {
                "reject" => Some(NameMismatch::Reject),
                "prefer-sni" => Some(NameMismatch::PreferSni),
                "prefer-authority" => Some(NameMismatch::PreferAuthority),
                _ => None,
            },
        )?;
        let allow_ech = parse_with(get("ENVOY_ECH"), "expected allow or refuse", |v| match v {
            "allow" => Some(true),
            "refuse" => Some(false),
            _ => None,
        })?;
        let default_route = Route::default_route(upstream.clone(), mode);
        let (_config_file, _) = get("ENVOY_CONFIG_FILE");
        let (control_socket, _) = get("ENVOY_CONTROL_SOCKET");
        let metrics_addr = parse_with(
            get("ENVOY_METRICS_ADDR"),
            "expected empty or ip:port",
            |v| {
                if v.is_empty() {
                    Some(None)
                } else {
                    v.parse::<SocketAddr>().ok().map(Some)
                }
            },
        )?;
        let (capture_dir, _) = get("ENVOY_CAPTURE_DIR");
        let capture_max_files = parse_range(get("ENVOY_CAPTURE_MAX_FILES"), 1, 1_000_000)? as usize;
        let capture_max_bytes = parse_range(get("ENVOY_CAPTURE_MAX_BYTES"), 1024, 1 << 40)?;
        let drain_timeout_ms = parse_range(get("ENVOY_DRAIN_TIMEOUT_MS"), 0, 86_400_000)?;
        let (pid_file, _) = get("ENVOY_PID_FILE");
        let splice = parse_with(get("ENVOY_SPLICE"), "expected auto or off", |v| match v {
            "auto" => Some(cfg!(target_os = "linux")),
            "off" => Some(false),
            _ => None,
        })?;
        let splice_pipes = parse_range(get("ENVOY_SPLICE_PIPES"), 0, 1_000_000)? as usize;
        Ok(Config {
            control_socket: control_socket.trim().to_string(),
            metrics_addr,
            capture_dir: capture_dir.trim().to_string(),
            capture_max_files,
            capture_max_bytes,
            drain_timeout_ms,
            pid_file: pid_file.trim().to_string(),
            splice_pipes: if splice { splice_pipes } else { 0 },
            ip,
            port,
            upstream,
            acceptors,
            country,
            headers,
            region_key,
            session_key,
            log_level,
            buffer_size,
            max_sessions,
            header_timeout_ms,
            connect_timeout_ms,
            idle_timeout_ms,
            proxy_protocol,
            trusted_proxies,
            workers,
            backlog,
            routes,
            default_route,
            name_mismatch,
            allow_ech,
            entries,
        })
    }

    /// The listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
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

fn error(key: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_with<T>(
    (value, key): (String, &'static str),
    reason: &str,
    f: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    f(value.trim()).ok_or_else(|| error(key, &value, reason))
}

fn parse_range(
    (value, key): (String, &'static str),
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(error(
            key,
            &value,
            format!("expected a whole number from {min} to {max}"),
        )),
    }
}

fn token(v: &str) -> Option<String> {
    let ok = !v.is_empty() && v.bytes().all(is_tchar);
    ok.then(|| v.to_string())
}

/// RFC 9110 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_upstream((value, key): (String, &'static str)) -> Result<Upstream, ConfigError> {
    let v = value.trim();
    let has_port = v
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !has_port {
        return Err(error(
            key,
            &value,
            "expected host:port (IPv6 as [addr]:port)",
        ));
    }
    match v.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(error(key, &value, "the name resolved to no address"))
            } else {
                Ok(Upstream {
                    name: v.to_string(),
                    addrs,
                })
            }
        }
        Err(e) => Err(error(key, &value, format!("cannot resolve: {e}"))),
    }
}

fn parse_headers((value, key): (String, &'static str)) -> Result<Vec<Header>, ConfigError> {
    let mut out = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, val)) = part.split_once(':') else {
            return Err(error(key, &value, format!("{part:?} is not 'Name: value'")));
        };
        let (name, val) = (name.trim(), val.trim());
        if token(name).is_none() {
            return Err(error(
                key,
                &value,
                format!("{name:?} is not an HTTP header name"),
            ));
        }
        if !val
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(error(
                key,
                &value,
                format!("the value of {name} holds a control or non-ASCII byte"),
            ));
        }
        out.push(Header {
            name: name.to_string(),
            value: val.to_string(),
        });
    }
    Ok(out)
}

/// Two descriptors per session plus a margin for listeners, logs and control sockets.
fn auto_max_sessions() -> usize {
    let nofile = crate::sys::process::open_files_limit().unwrap_or(1024);
    (nofile.saturating_sub(64) / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| map.get(k).map(|v| (v.clone(), Source::Environment)))
    }

    #[test]
    fn defaults_load_and_are_reported_as_defaults() {
        let c = load(&[("ENVOY_UPSTREAM", "127.0.0.1:10000")]).unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(c.acceptors, 5);
        assert_eq!(c.country, "US");
        assert_eq!(c.proxy_protocol, ProxyPolicy::Optional);
        assert_eq!(c.buffer_size, 16384);
        assert!(c.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(c.is_trusted("::1".parse().unwrap()));
        assert!(!c.is_trusted("8.8.8.8".parse().unwrap()));
        assert_eq!(c.entries.len(), KEYS.len());
        let port = c.entries.iter().find(|e| e.0 == "ENVOY_PORT").unwrap();
        assert_eq!(port.2, Source::Default);
        let up = c.entries.iter().find(|e| e.0 == "ENVOY_UPSTREAM").unwrap();
        assert_eq!(up.2, Source::Environment);
    }

    #[test]
    fn country_is_upper_cased_and_headers_parse() {
        let c = load(&[
            ("ENVOY_COUNTRY", "de"),
            ("ENVOY_HEADERS", "X-A: 1; X-B:two words"),
        ])
        .unwrap();
        assert_eq!(c.country, "DE");
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.headers[1].name, "X-B");
        assert_eq!(c.headers[1].value, "two words");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("ENVOY_PORT", "80000"),
            ("ENVOY_IP", "localhost"),
            ("ENVOY_PROXY_PROTOCOL", "maybe"),
            ("ENVOY_BUFFER_SIZE", "10"),
            ("ENVOY_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("ENVOY_UPSTREAM", "no-port"),
            ("ENVOY_HEADERS", "X-A: a\rb"),
            ("ENVOY_REGION_KEY", "bad key"),
            ("ENVOY_LOG_LEVEL", "loud"),
        ] {
            let e = load(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k, "{e}");
            assert!(e.to_string().contains(k));
        }
    }
}
