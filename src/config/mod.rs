//! The configuration: every `ENVOY_*` key, its default, how it is validated, and where the
//! effective value came from.
//!
//! Each key is declared once, in [`KEYS`]: its name, its default, one line of meaning, and
//! how its value is read into a [`Config`]. Loading, `show config` and `check-config`, the
//! keys a `set` or a config file may name, and the README's key table (checked by a test
//! against `check-config`) all follow that one table.
//!
//! A `Config` is built whole from three layers ([`Layers`]: the environment, the
//! ENVOY_CONFIG_FILE overlay (its format in `config::file`), runtime `set`s) and is either
//! entirely valid or refused with every error found, each naming the key and the value.
//! Names are resolved here, at load time, never on the event loop. Nothing here touches a
//! socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use crate::cidr::Cidr;
use crate::logger::{Facility, Target};
pub mod clients;
mod connect;
mod error;
mod file;
pub mod route;
mod spelling;
pub mod upstream;

use crate::limits::policy::{Rate, MAX_PREFIX_V6, MAX_RATE};
pub use connect::ConnectHeader;
use error::error;
pub use error::{ConfigError, ConfigErrors};
use route::{Alert, Mode, Route};
use upstream::Upstream;

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

/// The whole, validated configuration of one worker. Each field is written by the key its
/// comment names (see [`KEYS`]).
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
    /// The ENVOY_CLIENT_* keys: per-client limits.
    pub clients: clients::Settings,
    /// Each key's effective value as text and its source, in table order.
    pub entries: Vec<(&'static str, String, Source)>,
}

/// One configuration key. The README's table documents the same keys.
pub struct Key {
    /// `ENVOY_...`
    pub name: &'static str,
    /// The value when no layer gives one, as text (it goes through `apply` like any other).
    pub default: &'static str,
    /// One line of meaning.
    pub meaning: &'static str,
    /// Validates the value and writes it into the configuration being built.
    apply: fn(&mut Config, Setting<'_>) -> Result<(), ConfigError>,
}

const fn key(
    name: &'static str,
    default: &'static str,
    meaning: &'static str,
    apply: fn(&mut Config, Setting<'_>) -> Result<(), ConfigError>,
) -> Key {
    Key {
        name,
        default,
        meaning,
        apply,
    }
}

/// Every key, in the order `show config` lists them and values are applied: a key may read
/// what a key above it wrote (the routes fill in ENVOY_UPSTREAM and ENVOY_UPSTREAM_MODE;
/// ENVOY_SPLICE_PIPES is 0 unless ENVOY_SPLICE is on). Every invalid value is reported; a
/// key after an invalid one reads that field as it was before it (its unset value).
pub const KEYS: &[Key] = &[
    key(
        "ENVOY_IP",
        "127.0.0.1",
        "listen address (IPv4 or IPv6)",
        |c, s| {
            c.ip = s.parse("not an IP address", |v| IpAddr::from_str(v).ok())?;
            Ok(())
        },
    ),
    key("ENVOY_PORT", "8000", "listen port", |c, s| {
        c.port = s.parse("not a port (0-65535)", |v| v.parse().ok())?;
        Ok(())
    }),
    key(
        "ENVOY_UPSTREAM",
        "localhost:10000",
        "default upstream host:port, resolved at load",
        |c, s| {
            c.upstream = Upstream::resolve(s.text).map_err(|reason| s.refuse(reason))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_ACCEPTORS",
        "5",
        "accepts per readiness event before the loop serves others",
        |c, s| {
            c.acceptors = s.whole_number(1, 1024)? as usize;
            Ok(())
        },
    ),
    key(
        "ENVOY_COUNTRY",
        "US",
        "region header value in CONNECT mode (upper-cased)",
        |c, s| {
            c.country = s.parse("expected 1-16 letters or digits", |v| {
                let ok =
                    !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| v.to_ascii_uppercase())
            })?;
            Ok(())
        },
    ),
    key(
        "ENVOY_HEADERS",
        "",
        "extra CONNECT headers: 'Name: value' pairs separated by ';'",
        |c, s| {
            c.headers = connect::headers(s.text).map_err(|e| s.refuse(e))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_REGION_KEY",
        "x-region-key",
        "region header name in CONNECT mode",
        |c, s| {
            c.region_key = s.parse("not an HTTP header name", connect::token)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_SESSION_KEY",
        "x-session-key",
        "session header name in CONNECT mode",
        |c, s| {
            c.session_key = s.parse("not an HTTP header name", connect::token)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_LOG_LEVEL",
        "info",
        "off, error, warn, info, debug or trace",
        |c, s| {
            c.log_level = s.parse("expected off, error, warn, info, debug or trace", |v| {
                log::LevelFilter::from_str(v).ok()
            })?;
            Ok(())
        },
    ),
    key(
        "ENVOY_LOG_TARGET",
        "stderr",
        "where log lines go: stderr, file:PATH, syslog or syslog:HOST:PORT (resolved at load)",
        |c, s| {
            let target = Target::parse(s.text.trim()).map_err(|e| s.refuse(e))?;
            c.log_target = target.resolved().map_err(|e| s.refuse(e))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_LOG_FACILITY",
        "daemon",
        "syslog facility: daemon, user, local0-local7, auth, authpriv or syslog",
        |c, s| {
            c.log_facility = Facility::parse(s.text.trim()).map_err(|e| s.refuse(e))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_BUFFER_SIZE",
        "16384",
        "bytes per direction per session (2048..=1048576)",
        |c, s| {
            c.buffer_size = s.whole_number(2048, 1 << 20)? as usize;
            Ok(())
        },
    ),
    key(
        "ENVOY_MAX_SESSIONS",
        "auto",
        "sessions per worker; auto = (open-file limit - 64) / 2",
        |c, s| {
            c.max_sessions = if s.text == "auto" {
                auto_max_sessions()
            } else {
                s.whole_number(1, 10_000_000)? as usize
            };
            Ok(())
        },
    ),
    key(
        "ENVOY_HEADER_TIMEOUT_MS",
        "5000",
        "time to receive the PROXY header and ClientHello",
        |c, s| {
            c.header_timeout_ms = s.whole_number(1, 3_600_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_CONNECT_TIMEOUT_MS",
        "5000",
        "time for the upstream connect",
        |c, s| {
            c.connect_timeout_ms = s.whole_number(1, 3_600_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_IDLE_TIMEOUT_MS",
        "300000",
        "close a session idle this long both ways (0: never)",
        |c, s| {
            c.idle_timeout_ms = s.whole_number(0, 86_400_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_PROXY_PROTOCOL",
        "optional",
        "required, optional or off",
        |c, s| {
            c.proxy_protocol = s.parse("expected required, optional or off", |v| match v {
                "required" => Some(ProxyPolicy::Required),
                "optional" => Some(ProxyPolicy::Optional),
                "off" => Some(ProxyPolicy::Off),
                _ => None,
            })?;
            Ok(())
        },
    ),
    key(
        "ENVOY_TRUSTED_PROXIES",
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7",
        "CIDRs allowed to send a PROXY header",
        |c, s| {
            c.trusted_proxies = s.parse(CIDRS, Cidr::parse_list)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_WORKERS",
        "auto",
        "worker processes; auto = online CPUs",
        |c, s| {
            c.workers = if s.text == "auto" {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                s.whole_number(1, 1024)? as usize
            };
            Ok(())
        },
    ),
    key("ENVOY_BACKLOG", "1024", "listen backlog", |c, s| {
        c.backlog = s.whole_number(1, 65535)? as i32;
        Ok(())
    }),
    key(
        "ENVOY_UPSTREAM_MODE",
        "direct",
        "default route's mode: direct, proxy-v2 or connect",
        |c, s| {
            c.upstream_mode = s.parse("expected direct, proxy-v2 or connect", Mode::parse)?;
            c.default_route = Route::default_route(c.upstream.clone(), c.upstream_mode);
            Ok(())
        },
    ),
    key(
        "ENVOY_ROUTES",
        "",
        "routes, separated by ';' or newlines (see README, Routing)",
        |c, s| {
            c.routes = route::parse_routes(
                s.text,
                true,
                |n| format!("ENVOY_ROUTES route {n}"),
                &c.upstream,
                c.upstream_mode,
                &Upstream::resolve,
            )
            .map_err(|e| s.refuse_part(&e.text, format!("{}: {}", e.origin, e.reason)))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_ROUTES_FILE",
        "",
        "a file of routes, one a line, after ENVOY_ROUTES",
        |c, s| {
            let path = s.text.trim();
            if path.is_empty() {
                return Ok(());
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| s.refuse_part(path, format!("cannot read: {e}")))?;
            let more = route::parse_routes(
                &text,
                false,
                |n| format!("{path} line {n}"),
                &c.upstream,
                c.upstream_mode,
                &Upstream::resolve,
            )
            .map_err(|e| s.refuse_part(&e.text, format!("{}: {}", e.origin, e.reason)))?;
            c.routes.extend(more);
            Ok(())
        },
    ),
    key(
        "ENVOY_NAME_MISMATCH",
        "prefer-sni",
        "SNI and PROXY AUTHORITY differ: reject, prefer-sni or prefer-authority",
        |c, s| {
            c.name_mismatch =
                s.parse(
                    "expected reject, prefer-sni or prefer-authority",
                    |v| match v {
                        "reject" => Some(NameMismatch::Reject),
                        "prefer-sni" => Some(NameMismatch::PreferSni),
                        "prefer-authority" => Some(NameMismatch::PreferAuthority),
                        _ => None,
                    },
                )?;
            Ok(())
        },
    ),
    key(
        "ENVOY_ECH",
        "allow",
        "ClientHellos with encrypted_client_hello: allow or refuse",
        |c, s| {
            c.allow_ech = s.parse("expected allow or refuse", |v| match v {
                "allow" => Some(true),
                "refuse" => Some(false),
                _ => None,
            })?;
            Ok(())
        },
    ),
    // Read by `Layers::load` before any key is applied; listed so that it shows.
    key(
        "ENVOY_CONFIG_FILE",
        "",
        "KEY=VALUE file read at start and on reload, over the environment",
        |_, _| Ok(()),
    ),
    key(
        "ENVOY_CONTROL_SOCKET",
        "",
        "UNIX control socket path (mode 0600); empty: none",
        |c, s| {
            c.control_socket = s.text.trim().to_string();
            Ok(())
        },
    ),
    key(
        "ENVOY_METRICS_ADDR",
        "",
        "ip:port serving Prometheus /metrics; empty: none",
        |c, s| {
            c.metrics_addr = s.parse("expected empty or ip:port", |v| {
                if v.is_empty() {
                    Some(None)
                } else {
                    v.parse::<SocketAddr>().ok().map(Some)
                }
            })?;
            Ok(())
        },
    ),
    key(
        "ENVOY_CAPTURE_DIR",
        "",
        "directory for .bin captures of failed and traced sessions",
        |c, s| {
            c.capture_dir = s.text.trim().to_string();
            Ok(())
        },
    ),
    key(
        "ENVOY_CAPTURE_MAX_FILES",
        "100",
        "captures kept; the oldest are deleted",
        |c, s| {
            c.capture_max_files = s.whole_number(1, 1_000_000)? as usize;
            Ok(())
        },
    ),
    key(
        "ENVOY_CAPTURE_MAX_BYTES",
        "10485760",
        "total bytes of captures kept",
        |c, s| {
            c.capture_max_bytes = s.whole_number(1024, 1 << 40)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_DRAIN_TIMEOUT_MS",
        "30000",
        "drain: how long sessions may finish before they are closed",
        |c, s| {
            c.drain_timeout_ms = s.whole_number(0, 86_400_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_PID_FILE",
        "",
        "file the serving supervisor writes its pid to (rewritten by an upgrade)",
        |c, s| {
            c.pid_file = s.text.trim().to_string();
            Ok(())
        },
    ),
    key(
        "ENVOY_SPLICE",
        "auto",
        "auto: bulk directions move through splice(2) pipes (Linux); off: always copy",
        |c, s| {
            c.splice = s.parse("expected auto or off", |v| match v {
                "auto" => Some(cfg!(target_os = "linux")),
                "off" => Some(false),
                _ => None,
            })?;
            Ok(())
        },
    ),
    key(
        "ENVOY_SPLICE_PIPES",
        "256",
        "splice pipes per worker at most (two descriptors each)",
        |c, s| {
            let n = s.whole_number(0, 1_000_000)? as usize;
            c.splice_pipes = if c.splice { n } else { 0 };
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_MAX_SESSIONS",
        "0",
        "sessions at once per client (address or prefix), every worker together; 0: no limit",
        |c, s| {
            c.clients.max_sessions = s.whole_number(0, u64::from(MAX_RATE))? as u32;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_RATE",
        "off",
        "new sessions per client per second, every worker together: N/s, or off",
        |c, s| {
            c.clients.rate = s.parse("expected N/s (1 to 1000000) or off", Rate::parse)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_BURST",
        "auto",
        "sessions a client may start at once within its rate; auto: the rate's N",
        |c, s| {
            let auto = s.text.trim() == "auto";
            c.clients.burst = if auto {
                None
            } else {
                Some(s.whole_number(1, u64::from(MAX_RATE))? as u32)
            };
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_PREFIX_V4",
        "32",
        "IPv4 clients are counted per block of this prefix length (1-32)",
        |c, s| {
            c.clients.prefixes.v4 = s.whole_number(1, 32)? as u8;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_PREFIX_V6",
        "64",
        "IPv6 clients are counted per block of this prefix length (1-64: one host owns a /64)",
        |c, s| {
            c.clients.prefixes.v6 = s.whole_number(1, u64::from(MAX_PREFIX_V6))? as u8;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_ALLOW",
        "",
        "CIDRs never limited nor counted (monitoring, the load balancer's own checks)",
        |c, s| {
            c.clients.allow = s.parse(CIDRS, Cidr::parse_list)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_ALERT",
        "access_denied",
        "the TLS alert a limited client gets: access_denied, unrecognized_name or none",
        |c, s| {
            c.clients.alert = s.parse(
                "expected access_denied, unrecognized_name or none",
                Alert::parse,
            )?;
            Ok(())
        },
    ),
    key(
        "ENVOY_CLIENT_TABLE_SIZE",
        "65536",
        "clients the machine's shared table holds (16-4194304); a new size takes an upgrade",
        |c, s| {
            c.clients.table_size = s.whole_number(16, 1 << 22)? as usize;
            Ok(())
        },
    ),
];

const CIDRS: &str = "expected comma-separated CIDRs such as 10.0.0.0/8,::1/128";

/// The key named `name`, if there is one.
pub fn key_named(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn key_names() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.name).collect()
}

/// The ENVOY_CONFIG_FILE at `path` (its syntax: `config::file`): its values by key, or every
/// line that cannot be used (not KEY=VALUE, or no such key), in line order.
fn read_config_file(
    path: &str,
) -> Result<std::collections::BTreeMap<String, String>, Vec<ConfigError>> {
    const KEY: &str = "ENVOY_CONFIG_FILE";
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![error(KEY, path, format!("cannot read: {e}"))])?;
    let (entries, bad) = file::parse(&text);
    let names = key_names();
    let mut errors: Vec<(usize, ConfigError)> = bad
        .iter()
        .map(|b| {
            (
                b.line,
                error(KEY, b.text, format!("{path} line {}: {}", b.line, b.reason)),
            )
        })
        .collect();
    let mut out = std::collections::BTreeMap::new();
    for e in entries {
        if key_named(e.key).is_some() {
            out.insert(e.key.to_string(), e.value.to_string());
        } else {
            let hint = spelling::suggestion(e.key, &names);
            let why = format!("{path} line {}: unknown key{hint}", e.line);
            errors.push((e.line, error(KEY, e.key, why)));
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    errors.sort_by_key(|(line, _)| *line);
    Err(errors.into_iter().map(|(_, e)| e).collect())
}

/// A key's value as one layer gave it, with the key's name for the errors it may cause.
#[derive(Clone, Copy)]
struct Setting<'a> {
    key: &'static str,
    /// As given: the error shows it so, parsing trims it.
    text: &'a str,
}

impl Setting<'_> {
    /// The whole value refused for `reason`.
    fn refuse(&self, reason: impl Into<String>) -> ConfigError {
        self.refuse_part(self.text, reason)
    }

    /// Refused for `reason`, showing `part` (a route of many, a path) as the value.
    fn refuse_part(&self, part: &str, reason: impl Into<String>) -> ConfigError {
        error(self.key, part, reason)
    }

    /// The trimmed value through `f`; `None` refuses the value for `reason`.
    fn parse<T>(&self, reason: &str, f: impl FnOnce(&str) -> Option<T>) -> Result<T, ConfigError> {
        f(self.text.trim()).ok_or_else(|| self.refuse(reason))
    }

    /// A decimal number in `min..=max`.
    fn whole_number(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.refuse(format!("expected a whole number from {min} to {max}"))),
        }
    }
}

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
    /// Snapshots the ENVOY_* variables of this process. A value that is not UTF-8 is kept
    /// with its bad bytes replaced, to be refused by its key with the others.
    pub fn from_process_env() -> Layers {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                k.starts_with("ENVOY_")
                    .then(|| (k, v.to_string_lossy().into_owned()))
            })
            .collect();
        Layers {
            env,
            set: Default::default(),
        }
    }

    /// The environment's ENVOY_* variables that are no key (ignored by [`Layers::load`]).
    pub fn unknown_variables(&self) -> Vec<&str> {
        self.env
            .keys()
            .map(String::as_str)
            .filter(|k| key_named(k).is_none())
            .collect()
    }

    /// A warning for each of [`Layers::unknown_variables`], naming the nearest key.
    pub fn unknown_variable_warnings(&self) -> Vec<String> {
        let names = key_names();
        self.unknown_variables()
            .into_iter()
            .map(|v| spelling::unknown_variable(v, &names))
            .collect()
    }

    /// Builds and validates a whole configuration: set > file > environment > default.
    /// Reads ENVOY_CONFIG_FILE and ENVOY_ROUTES_FILE (blocking: at start and reload only).
    /// A file that cannot be read is reported with whatever else is invalid.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let path = self
            .set
            .get("ENVOY_CONFIG_FILE")
            .or_else(|| self.env.get("ENVOY_CONFIG_FILE"))
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        let (file, mut errors) = if path.is_empty() {
            (Default::default(), Vec::new())
        } else {
            match read_config_file(&path) {
                Ok(values) => (values, Vec::new()),
                Err(errors) => (Default::default(), errors),
            }
        };
        let loaded = Config::load(|k| {
            if let Some(v) = self.set.get(k) {
                Some((v.clone(), Source::Set))
            } else if let Some(v) = file.get(k) {
                Some((v.clone(), Source::File))
            } else {
                self.env.get(k).map(|v| (v.clone(), Source::Environment))
            }
        });
        match loaded {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(more) => {
                errors.extend(more.0);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// The layers with `key` set to `value`, if `key` is a known key.
    pub fn with_set(&self, key: &str, value: &str) -> Result<Layers, ConfigError> {
        let Some(k) = key_named(key) else {
            return Err(error("ENVOY_*", key, "no such key (see `show config`)"));
        };
        let mut l = self.clone();
        l.set.insert(k.name.to_string(), value.to_string());
        Ok(l)
    }
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Layers::from_process_env().load()
    }

    /// Loads from any key lookup: each key of [`KEYS`] in order, its value from `lookup` or
    /// else its default; every invalid one is returned, in table order.
    pub fn load(lookup: impl Fn(&str) -> Option<(String, Source)>) -> Result<Config, ConfigErrors> {
        let mut c = Config::unset();
        c.entries.reserve(KEYS.len());
        let mut errors = Vec::new();
        for k in KEYS {
            let (text, source) =
                lookup(k.name).unwrap_or_else(|| (k.default.to_string(), Source::Default));
            let setting = Setting {
                key: k.name,
                text: &text,
            };
            if let Err(e) = (k.apply)(&mut c, setting) {
                errors.push(e);
            }
            c.entries.push((k.name, text, source));
        }
        clients::settle(&c.clients, &mut c.routes, &mut c.default_route);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The configuration before any key is applied: every field is overwritten by its key.
    fn unset() -> Config {
        let upstream = Upstream {
            name: String::new(),
            addrs: Vec::new(),
        };
        Config {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            default_route: Route::default_route(upstream.clone(), Mode::Direct),
            upstream,
            acceptors: 0,
            country: String::new(),
            headers: Vec::new(),
            region_key: String::new(),
            session_key: String::new(),
            log_level: log::LevelFilter::Off,
            log_target: Target::Stderr,
            log_facility: Facility::DAEMON,
            buffer_size: 0,
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
            metrics_addr: None,
            capture_dir: String::new(),
            capture_max_files: 0,
            capture_max_bytes: 0,
            drain_timeout_ms: 0,
            pid_file: String::new(),
            splice: false,
            splice_pipes: 0,
            clients: clients::Settings::unset(),
            entries: Vec::new(),
        }
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

/// Two descriptors per session plus a margin for listeners, logs and control sockets.
fn auto_max_sessions() -> usize {
    let nofile = crate::sys::rlimit::open_files().unwrap_or(1024);
    (nofile.saturating_sub(64) / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::EVERY_ROUTE;
    use std::collections::HashMap;

    fn load_all(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| map.get(k).map(|v| (v.clone(), Source::Environment)))
    }

    /// The configuration, or its one error (these tests set one bad value at a time).
    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load_all(pairs).map_err(|e| {
            assert_eq!(e.0.len(), 1, "{e}");
            e.0[0].clone()
        })
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
            ("ENVOY_LOG_TARGET", "journald"),
            ("ENVOY_LOG_TARGET", "file:"),
            ("ENVOY_LOG_TARGET", "syslog:no-such-host.invalid:514"),
            ("ENVOY_LOG_FACILITY", "kern"),
        ] {
            let e = load(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k, "{e}");
            assert!(e.to_string().contains(k));
        }
    }

    #[test]
    fn refusals_read_as_they_always_did() {
        for (k, v, said) in [
            (
                "ENVOY_IP",
                " 1.2.3.4x",
                r#"invalid ENVOY_IP=" 1.2.3.4x": not an IP address"#,
            ),
            (
                "ENVOY_ACCEPTORS",
                " 2000",
                r#"invalid ENVOY_ACCEPTORS=" 2000": expected a whole number from 1 to 1024"#,
            ),
            (
                "ENVOY_MAX_SESSIONS",
                " auto",
                r#"invalid ENVOY_MAX_SESSIONS=" auto": expected a whole number from 1 to 10000000"#,
            ),
            (
                "ENVOY_HEADERS",
                "X-A: a\rb",
                r#"invalid ENVOY_HEADERS="X-A: a\\x0db": the value of X-A holds a control or non-ASCII byte"#,
            ),
            (
                "ENVOY_HEADERS",
                "nocolon",
                r#"invalid ENVOY_HEADERS="nocolon": "nocolon" is not 'Name: value'"#,
            ),
            (
                "ENVOY_UPSTREAM",
                ":80",
                r#"invalid ENVOY_UPSTREAM=":80": expected host:port (IPv6 as [addr]:port)"#,
            ),
            (
                "ENVOY_ROUTES",
                "sni=a allow; sni=b allo",
                r#"invalid ENVOY_ROUTES="sni=b allo": ENVOY_ROUTES route 2: "allo" is not allow, deny or key=value"#,
            ),
            (
                "ENVOY_ROUTES_FILE",
                " /nonexistent/routes ",
                r#"invalid ENVOY_ROUTES_FILE="/nonexistent/routes": cannot read: No such file or directory (os error 2)"#,
            ),
            (
                "ENVOY_SPLICE",
                "on",
                r#"invalid ENVOY_SPLICE="on": expected auto or off"#,
            ),
            (
                "ENVOY_LOG_TARGET",
                "stdout",
                r#"invalid ENVOY_LOG_TARGET="stdout": expected stderr, file:PATH, syslog, syslog:/PATH or syslog:HOST:PORT"#,
            ),
            (
                "ENVOY_LOG_FACILITY",
                "local9",
                r#"invalid ENVOY_LOG_FACILITY="local9": expected daemon, user, local0-local7, auth, authpriv or syslog"#,
            ),
        ] {
            assert_eq!(load(&[(k, v)]).unwrap_err().to_string(), said);
        }
    }

    #[test]
    fn every_invalid_key_is_reported_in_table_order() {
        let e = load_all(&[
            ("ENVOY_SPLICE", "on"),
            ("ENVOY_PORT", "x"),
            ("ENVOY_IP", "y"),
        ])
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["ENVOY_IP", "ENVOY_PORT", "ENVOY_SPLICE"]);
        assert_eq!(
            e.to_string(),
            r#"invalid ENVOY_IP="y": not an IP address; invalid ENVOY_PORT="x": not a port (0-65535); invalid ENVOY_SPLICE="on": expected auto or off"#
        );
        let e = load_all(&[("ENVOY_ECH", "no"), ("ENVOY_ROUTES", "nonsense")]).unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["ENVOY_ROUTES", "ENVOY_ECH"]);
        // A bad upstream does not make the routes that use it fail too.
        let e = load_all(&[
            ("ENVOY_UPSTREAM", "no-port"),
            ("ENVOY_ROUTES", "sni=a.test allow"),
        ])
        .unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn a_config_file_that_cannot_be_read_is_reported_with_the_rest() {
        let layers = Layers {
            env: [
                ("ENVOY_CONFIG_FILE", "/nonexistent/sluice.env"),
                ("ENVOY_PORT", "x"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            set: Default::default(),
        };
        let e = layers.load().unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["ENVOY_CONFIG_FILE", "ENVOY_PORT"]);
    }

    #[test]
    fn every_bad_line_of_the_config_file_is_reported_with_its_number() {
        let dir = std::env::temp_dir().join(format!("sluice-config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("env");
        std::fs::write(
            &path,
            "# a comment\n\nENVOY_PORTT=1\nnonsense\nENVOY_PORT=\"443\nENVOY_PORT=9 # ok\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let said: Vec<String> = read_config_file(p)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            said,
            [
                format!(
                    r#"invalid ENVOY_CONFIG_FILE="ENVOY_PORTT": {p} line 3: unknown key (did you mean ENVOY_PORT?)"#
                ),
                format!(r#"invalid ENVOY_CONFIG_FILE="nonsense": {p} line 4: not KEY=VALUE"#),
                format!(
                    r#"invalid ENVOY_CONFIG_FILE="ENVOY_PORT=\"443": {p} line 5: a double quote that does not close"#
                ),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_environment_variables_are_listed() {
        let layers = Layers {
            env: [
                ("ENVOY_PORTT", "9000"),
                ("ENVOY_PORT", "1"),
                ("ENVOY_X", ""),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            set: Default::default(),
        };
        assert_eq!(layers.unknown_variables(), ["ENVOY_PORTT", "ENVOY_X"]);
        let warnings = layers.unknown_variable_warnings();
        assert!(
            warnings[0].ends_with("did you mean ENVOY_PORT?"),
            "{warnings:?}"
        );
    }

    #[test]
    fn show_config_lists_every_key_once_in_table_order() {
        let c = load(&[("ENVOY_UPSTREAM", "127.0.0.1:10000")]).unwrap();
        let names: Vec<&str> = c.entries.iter().map(|e| e.0).collect();
        let table: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(names, table);
        let mut unique = table.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), table.len(), "a key declared twice");
        for (k, e) in KEYS.iter().zip(&c.entries) {
            if e.2 == Source::Default {
                assert_eq!(e.1, k.default, "{}", k.name);
            }
        }
    }

    /// Each key, given a value other than its default, changes the field its doc names,
    /// alone (every other key at its default). A key added to the table without a line
    /// here fails the test.
    #[test]
    fn every_key_lands_in_its_field() {
        let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let routes_file = dir.join("routes");
        std::fs::write(&routes_file, "sni=file.test deny\n").unwrap();
        let config_file = dir.join("config");
        std::fs::write(&config_file, "ENVOY_BACKLOG=77\n").unwrap();
        let (routes_path, config_path) = (
            routes_file.to_str().unwrap().to_string(),
            config_file.to_str().unwrap().to_string(),
        );
        let on_linux = cfg!(target_os = "linux");
        type Check = fn(&Config) -> bool;
        let cases: Vec<(&str, &str, Check)> = vec![
            ("ENVOY_IP", "::1", |c| {
                c.ip == "::1".parse::<IpAddr>().unwrap()
            }),
            ("ENVOY_PORT", "1234", |c| c.port == 1234),
            ("ENVOY_UPSTREAM", "127.0.0.1:4", |c| {
                c.upstream.addrs == ["127.0.0.1:4".parse().unwrap()]
                    && c.default_route.addrs == c.upstream.addrs
            }),
            ("ENVOY_ACCEPTORS", "9", |c| c.acceptors == 9),
            ("ENVOY_COUNTRY", "de", |c| c.country == "DE"),
            ("ENVOY_HEADERS", "X-A: 1", |c| {
                c.headers
                    == [ConnectHeader {
                        name: "X-A".into(),
                        value: "1".into(),
                    }]
            }),
            ("ENVOY_REGION_KEY", "x-r", |c| c.region_key == "x-r"),
            ("ENVOY_SESSION_KEY", "x-s", |c| c.session_key == "x-s"),
            ("ENVOY_LOG_LEVEL", "debug", |c| {
                c.log_level == log::LevelFilter::Debug
            }),
            (
                "ENVOY_LOG_TARGET",
                "syslog:localhost:5514",
                |c| matches!(&c.log_target, Target::SyslogUdp { addr: Some(a), .. } if a.port() == 5514),
            ),
            ("ENVOY_LOG_FACILITY", "local4", |c| {
                c.log_facility == Facility::parse("local4").unwrap()
            }),
            ("ENVOY_BUFFER_SIZE", "4096", |c| c.buffer_size == 4096),
            ("ENVOY_MAX_SESSIONS", "10", |c| c.max_sessions == 10),
            ("ENVOY_HEADER_TIMEOUT_MS", "11", |c| {
                c.header_timeout_ms == 11
            }),
            ("ENVOY_CONNECT_TIMEOUT_MS", "12", |c| {
                c.connect_timeout_ms == 12
            }),
            ("ENVOY_IDLE_TIMEOUT_MS", "0", |c| c.idle_timeout_ms == 0),
            ("ENVOY_PROXY_PROTOCOL", "off", |c| {
                c.proxy_protocol == ProxyPolicy::Off
            }),
            ("ENVOY_TRUSTED_PROXIES", "192.0.2.0/24", |c| {
                c.is_trusted("192.0.2.1".parse().unwrap())
                    && !c.is_trusted("127.0.0.1".parse().unwrap())
            }),
            ("ENVOY_WORKERS", "3", |c| c.workers == 3),
            ("ENVOY_BACKLOG", "13", |c| c.backlog == 13),
            ("ENVOY_UPSTREAM_MODE", "connect", |c| {
                c.upstream_mode == Mode::Connect && c.default_route.mode == Mode::Connect
            }),
            ("ENVOY_ROUTES", "sni=a.test allow", |c| {
                c.routes.len() == 1 && c.routes[0].origin == "ENVOY_ROUTES route 1"
            }),
            ("ENVOY_ROUTES_FILE", &routes_path, |c| {
                c.routes.len() == 1 && c.routes[0].origin.ends_with("routes line 1")
            }),
            ("ENVOY_NAME_MISMATCH", "reject", |c| {
                c.name_mismatch == NameMismatch::Reject
            }),
            ("ENVOY_ECH", "refuse", |c| !c.allow_ech),
            ("ENVOY_CONFIG_FILE", &config_path, |c| c.backlog == 77),
            ("ENVOY_CONTROL_SOCKET", " /run/s.sock ", |c| {
                c.control_socket == "/run/s.sock"
            }),
            ("ENVOY_METRICS_ADDR", "127.0.0.1:9", |c| {
                c.metrics_addr == Some("127.0.0.1:9".parse().unwrap())
            }),
            ("ENVOY_CAPTURE_DIR", "/tmp/c", |c| c.capture_dir == "/tmp/c"),
            ("ENVOY_CAPTURE_MAX_FILES", "7", |c| c.capture_max_files == 7),
            ("ENVOY_CAPTURE_MAX_BYTES", "2048", |c| {
                c.capture_max_bytes == 2048
            }),
            ("ENVOY_DRAIN_TIMEOUT_MS", "14", |c| c.drain_timeout_ms == 14),
            ("ENVOY_PID_FILE", "/run/p", |c| c.pid_file == "/run/p"),
            ("ENVOY_SPLICE", "off", |c| !c.splice && c.splice_pipes == 0),
            ("ENVOY_SPLICE_PIPES", "5", |c| {
                // Off the Linux, splice is never on and the count shows in `entries` only.
                c.splice_pipes == 5
                    || (!c.splice
                        && c.entries
                            .iter()
                            .any(|e| e.0 == "ENVOY_SPLICE_PIPES" && e.1 == "5"))
            }),
            ("ENVOY_CLIENT_MAX_SESSIONS", "5", |c| {
                c.clients.max_sessions == 5
                    && c.default_route
                        .limited
                        .is_some_and(|l| l.limit.max_sessions == 5)
            }),
            ("ENVOY_CLIENT_RATE", "10/s", |c| {
                let pace = c.default_route.limited.and_then(|l| l.limit.pace);
                c.clients.rate.is_some() && pace.is_some_and(|p| p.burst == 10)
            }),
            ("ENVOY_CLIENT_BURST", "3", |c| c.clients.burst == Some(3)),
            ("ENVOY_CLIENT_PREFIX_V4", "24", |c| {
                c.clients.prefixes.v4 == 24
            }),
            ("ENVOY_CLIENT_PREFIX_V6", "48", |c| {
                c.clients.prefixes.v6 == 48
            }),
            ("ENVOY_CLIENT_ALLOW", "192.0.2.0/24", |c| {
                c.clients.allows("192.0.2.9".parse().unwrap())
            }),
            ("ENVOY_CLIENT_ALERT", "none", |c| {
                c.clients.alert == route::Alert::None
            }),
            ("ENVOY_CLIENT_TABLE_SIZE", "1024", |c| {
                c.clients.table_size == 1024
            }),
        ];
        let covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let table: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(covered, table, "one case per key, in table order");
        let base = [("ENVOY_UPSTREAM", "127.0.0.1:10000")];
        let defaults = load(&base).unwrap();
        assert_eq!(defaults.splice, on_linux);
        for (k, v, check) in cases {
            let layers = Layers {
                env: base
                    .iter()
                    .chain([(k, v)].iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                set: Default::default(),
            };
            let c = layers.load().unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert!(check(&c), "{k}={v} did not land in its field");
            assert!(
                !check(&defaults),
                "{k}: the check holds for the default too"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn routes_with_client_options_count_apart_and_inherit_the_rest() {
        let c = load(&[
            ("ENVOY_UPSTREAM", "127.0.0.1:10000"),
            ("ENVOY_CLIENT_MAX_SESSIONS", "5"),
            ("ENVOY_CLIENT_RATE", "20/s"),
            ("ENVOY_CLIENT_ALERT", "unrecognized_name"),
            (
                "ENVOY_ROUTES",
                "sni=api.test allow client_max_sessions=2 client_alert=none; sni=free.test allow client_max_sessions=0 client_rate=off; sni=b.test allow",
            ),
        ])
        .unwrap();
        let api = c.routes[0].limited.unwrap();
        assert_eq!(api.limit.max_sessions, 2);
        assert_eq!(api.limit.pace.unwrap().rate.per_second, 20, "inherited");
        assert_eq!(api.alert, route::Alert::None);
        assert_ne!(api.limit.scope, EVERY_ROUTE, "its own counters");
        assert_eq!(c.routes[1].limited, None, "limits off for this route");
        let b = c.routes[2].limited.unwrap();
        assert_eq!(b, c.default_route.limited.unwrap(), "counted together");
        assert_eq!(
            (b.limit.scope, b.alert),
            (EVERY_ROUTE, route::Alert::UnrecognizedName)
        );
        // Nothing set: no route is limited.
        let off = load(&[("ENVOY_UPSTREAM", "127.0.0.1:10000")]).unwrap();
        assert_eq!(off.default_route.limited, None);
        for (v, why) in [
            ("ENVOY_CLIENT_RATE", "10/m"),
            ("ENVOY_CLIENT_PREFIX_V6", "65"),
            ("ENVOY_CLIENT_TABLE_SIZE", "15"),
            ("ENVOY_CLIENT_ALLOW", "10.0.0.0/33"),
            ("ENVOY_CLIENT_ALERT", "internal_error"),
            ("ENVOY_CLIENT_BURST", "0"),
        ] {
            assert_eq!(load(&[(v, why)]).unwrap_err().key, v);
        }
    }

    #[test]
    fn set_and_file_name_only_known_keys_and_set_wins() {
        let layers = Layers::default();
        assert_eq!(
            layers.with_set("ENVOY_NOPE", "1").unwrap_err().to_string(),
            r#"invalid ENVOY_*="ENVOY_NOPE": no such key (see `show config`)"#
        );
        let mut layers = layers.with_set("ENVOY_PORT", "99").unwrap();
        layers.env.insert("ENVOY_PORT".into(), "98".into());
        layers
            .env
            .insert("ENVOY_UPSTREAM".into(), "127.0.0.1:10000".into());
        let c = layers.load().unwrap();
        assert_eq!(c.port, 99);
        let port = c.entries.iter().find(|e| e.0 == "ENVOY_PORT").unwrap();
        assert_eq!((port.1.as_str(), port.2), ("99", Source::Set));
    }
}
