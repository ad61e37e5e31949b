//! The key table: every `ENVOY_*` key declared once — its name, its default, one line of
//! meaning, and how its value is validated into a [`Config`]. Loading, `show config`, the
//! keys a `set` or a config file may name and the README test all walk this table.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::connect;
use super::error::ConfigError;
use super::listener;
use super::listener::ProxyPolicy;
use super::model::{auto_max_sessions, Config, NameMismatch};
use super::pool::{self, Balance, Pool};
use super::route::{self, Alert, Mode, Route};
use super::setting::Setting;
use super::upstream::Upstream;
use crate::cidr::Cidr;
use crate::limits::policy::{Rate, MAX_PREFIX_V6, MAX_RATE};
use crate::logger::{Facility, Target};

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

impl Key {
    /// Validates `s` and writes it into `c`.
    pub(super) fn apply(&self, c: &mut Config, s: Setting<'_>) -> Result<(), ConfigError> {
        (self.apply)(c, s)
    }
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
/// what a key above it wrote (the routes fill in ENVOY_UPSTREAM, ENVOY_UPSTREAM_MODE and
/// ENVOY_BALANCE; ENVOY_SPLICE_PIPES is 0 unless ENVOY_SPLICE is on). Every invalid value is reported; a
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
        "ENVOY_LISTEN",
        "",
        "listeners, separated by ';' or newlines: ADDR:PORT options (see README, Listeners); empty: ENVOY_IP:ENVOY_PORT",
        |c, s| {
            c.listeners = listener::parse_listeners(
                s.text,
                true,
                |n| format!("ENVOY_LISTEN listener {n}"),
                &[],
                &|t: &str| Upstream::resolve(t, s.names),
            )
            .map_err(|e| s.refuse_part(&e.text, format!("{}: {}", e.origin, e.reason)))?;
            Ok(())
        },
    ),
    key(
        "ENVOY_LISTEN_FILE",
        "",
        "a file of listeners, one a line, after ENVOY_LISTEN",
        |c, s| {
            let path = s.text.trim();
            if path.is_empty() {
                return Ok(());
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| s.refuse_part(path, format!("cannot read: {e}")))?;
            let more = listener::parse_listeners(
                &text,
                false,
                |n| format!("{path} line {n}"),
                &c.listeners,
                &|t: &str| Upstream::resolve(t, s.names),
            )
            .map_err(|e| s.refuse_part(&e.text, format!("{}: {}", e.origin, e.reason)))?;
            c.listeners.extend(more);
            Ok(())
        },
    ),
    key(
        "ENVOY_UPSTREAM",
        "localhost:10000",
        "default route's upstreams, host:port[,host:port...]; names resolved at load, never on a loop",
        |c, s| {
            c.upstream = Upstream::list(s.text, s.names).map_err(|reason| s.refuse(reason))?;
            if c.upstream.len() > pool::MAX_MEMBERS {
                return Err(s.refuse(format!("at most {} upstreams", pool::MAX_MEMBERS)));
            }
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
            c.region_key = s.parse("not an HTTP header name", connect::header_name)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_SESSION_KEY",
        "x-session-key",
        "session header name in CONNECT mode",
        |c, s| {
            c.session_key = s.parse("not an HTTP header name", connect::header_name)?;
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
            c.log_target = target
                .resolved(&|host_port| s.names.addrs(host_port))
                .map_err(|e| s.refuse(e))?;
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
        "ENVOY_MAX_FILES",
        "hard",
        "open-file limit set at start: hard (the hard limit) or a number",
        |c, s| {
            c.max_files = match s.text.trim() {
                "hard" => None,
                _ => Some(s.whole_number(64, 1 << 30).map_err(|e| ConfigError {
                    reason: format!(
                        "expected hard or {}",
                        e.reason.trim_start_matches("expected ")
                    ),
                    ..e
                })?),
            };
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
            c.trusted_proxies = s.parse(
                "expected comma-separated CIDRs such as 10.0.0.0/8,::1/128",
                |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|b| !b.is_empty())
                        .map(|b| b.parse::<Cidr>().ok())
                        .collect::<Option<Vec<_>>>()
                },
            )?;
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
            c.default_route = Route::default_route(
                Pool::new(c.upstream.clone(), Balance::First),
                c.upstream_mode,
            );
            Ok(())
        },
    ),
    key(
        "ENVOY_BALANCE",
        "first",
        "how a session picks an upstream of a pool: first, round-robin, least-sessions, client-hash",
        |c, s| {
            c.balance = s.parse(
                "expected first, round-robin, least-sessions or client-hash",
                Balance::parse,
            )?;
            c.default_route.pool.balance = c.balance;
            Ok(())
        },
    ),
    key(
        "ENVOY_CHECK",
        "",
        "the default route's active check, as route options (check=tcp rise=2 ...); empty: none",
        |c, s| {
            pool::default_check(s.text, &mut c.default_route.pool).map_err(|e| s.refuse(e))?;
            c.check = c.default_route.pool.check.clone();
            Ok(())
        },
    ),
    key(
        "ENVOY_EJECT_AFTER",
        "3",
        "connect failures in a row that eject an upstream for a while (0: never)",
        |c, s| {
            c.eject_after = s.whole_number(0, 1000)? as u32;
            Ok(())
        },
    ),
    key(
        "ENVOY_EJECT_BACKOFF_MS",
        "1000",
        "how long a first ejection lasts; each ejection in a row doubles it",
        |c, s| {
            c.eject_backoff_ms = s.whole_number(1, 3_600_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_EJECT_BACKOFF_MAX_MS",
        "30000",
        "the longest an ejection lasts",
        |c, s| {
            c.eject_backoff_max_ms = s.whole_number(1, 86_400_000)?;
            Ok(())
        },
    ),
    key(
        "ENVOY_RESOLVE_INTERVAL_MS",
        "0",
        "how often upstream names are resolved again (0: at load and reload only)",
        |c, s| {
            let n = s.whole_number(0, 86_400_000)?;
            if n != 0 && n < 100 {
                return Err(s.refuse("expected 0 or a whole number from 100 to 86400000"));
            }
            c.resolve_interval_ms = n;
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
                &[],
                &Pool::new(c.upstream.clone(), c.balance),
                c.upstream_mode,
                s.names,
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
                &c.routes,
                &Pool::new(c.upstream.clone(), c.balance),
                c.upstream_mode,
                s.names,
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
        "UNIX control socket path (mode 0600, 0660 with ENVOY_CONTROL_GROUP); empty: none",
        |c, s| {
            c.control_socket = s.text.trim().to_string();
            Ok(())
        },
    ),
    key(
        "ENVOY_CONTROL_GROUP",
        "",
        "group the control socket is given to (mode 0660); empty: its owner only (0600)",
        |c, s| name(&mut c.control_group, s),
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
        "ENVOY_USER",
        "",
        "once bound, workers (and the supervisor on Linux) run as this user; empty: as started",
        |c, s| name(&mut c.user, s),
    ),
    key(
        "ENVOY_GROUP",
        "",
        "the group for ENVOY_USER; empty: that user's own group",
        |c, s| name(&mut c.group, s),
    ),
    key(
        "ENVOY_CHROOT",
        "",
        "workers chroot to this directory before switching to ENVOY_USER; empty: none",
        |c, s| {
            let v = s.text.trim();
            if !v.is_empty() && !v.starts_with('/') {
                return Err(s.refuse("expected an absolute path"));
            }
            c.chroot = v.to_string();
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

pub(super) fn key_names() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.name).collect()
}

/// A user or group name (resolved by `privilege`, not here: a reload inside a chroot has
/// no user database).
fn name(field: &mut String, s: Setting<'_>) -> Result<(), ConfigError> {
    let v = s.text.trim();
    if v.bytes()
        .any(|b| b.is_ascii_control() || b == b':' || b == b'/' || b == b' ')
    {
        return Err(s.refuse("not a user or group name"));
    }
    *field = v.to_string();
    Ok(())
}
