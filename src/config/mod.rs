//! The configuration: every `ENVOY_*` key, its default, how it is validated, and where the
//! effective value came from.
//!
//! Each key is declared once, in [`KEYS`] (`config::keys`): its name, its default, one line
//! of meaning, and how its value is read into a [`Config`] (`config::model`). Loading,
//! `show config` and `check-config`, the keys a `set` or a config file may name, and the
//! README's key table (checked by a test against `check-config`) all follow that one table.
//!
//! A `Config` is built whole from three layers ([`Layers`]: the environment, the
//! ENVOY_CONFIG_FILE overlay (its format in `config::file`), runtime `set`s) and is either
//! entirely valid or refused with every error found, each naming the key and the value.
//! Names are resolved by whatever the load is given ([`Layers::load_with`]): the system
//! resolver at start, a table of the supervisor's answers (`config::names`) on a loop.
//! Nothing here touches a socket.

pub mod clients;
mod connect;
mod error;
mod file;
mod keys;
pub mod listener;
mod model;
pub mod names;
pub mod pool;
pub mod route;
mod setting;
mod spelling;
pub mod upstream;

pub use connect::ConnectHeader;
pub use error::{ConfigError, ConfigErrors};
pub use keys::{key_named, Key, KEYS};
pub use listener::ProxyPolicy;
pub use model::{Config, NameMismatch, Source};

use error::error;
use keys::key_names;
use setting::Setting;

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

    /// Each of [`Layers::unknown_variables`] with the nearest key, if one is near (the
    /// start-up log's warning, as pairs).
    pub fn unknown_variables_nearest(&self) -> Vec<(&str, Option<&'static str>)> {
        let names = key_names();
        self.unknown_variables()
            .into_iter()
            .map(|v| (v, spelling::nearest(v, &names)))
            .collect()
    }

    /// Builds and validates a whole configuration: set > file > environment > default.
    /// Reads ENVOY_CONFIG_FILE and ENVOY_ROUTES_FILE (blocking: at start and reload only).
    /// A file that cannot be read is reported with whatever else is invalid.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        self.load_with(&upstream::SystemResolver)
    }

    /// As [`Layers::load`], with names answered by `names` (on a loop: a table of answers a
    /// resolver gave elsewhere, never the system resolver).
    pub fn load_with(&self, names: &dyn upstream::Resolve) -> Result<Config, ConfigErrors> {
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
        let loaded = Config::load_with(names, |k| {
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
        Config::load_with(&upstream::SystemResolver, lookup)
    }

    /// As [`Config::load`], names answered by `names`.
    pub fn load_with(
        names: &dyn upstream::Resolve,
        lookup: impl Fn(&str) -> Option<(String, Source)>,
    ) -> Result<Config, ConfigErrors> {
        let mut c = Config::unset();
        c.entries.reserve(KEYS.len());
        let mut errors = Vec::new();
        for k in KEYS {
            let (text, source) =
                lookup(k.name).unwrap_or_else(|| (k.default.to_string(), Source::Default));
            let setting = Setting {
                key: k.name,
                text: &text,
                names,
            };
            if let Err(e) = k.apply(&mut c, setting) {
                errors.push(e);
            }
            c.entries.push((k.name, text, source));
        }
        clients::settle(&c.clients, &mut c.routes, &mut c.default_route);
        if c.listeners.is_empty() {
            c.listeners
                .push(listener::Listener::implicit(c.listen_addr()));
        }
        let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
        if let Err(e) = route::settle_listeners(&mut c.routes, &names) {
            let key = if e.origin.starts_with("ENVOY_ROUTES") {
                "ENVOY_ROUTES"
            } else {
                "ENVOY_ROUTES_FILE"
            };
            errors.push(error(key, &e.text, format!("{}: {}", e.origin, e.reason)));
        }
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::EVERY_ROUTE;
    use crate::logger::{Facility, Target};
    use pool::Balance;
    use route::Mode;
    use std::collections::HashMap;
    use std::net::IpAddr;

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
            ("ENVOY_MAX_FILES", "soft"),
            ("ENVOY_MAX_FILES", "10"),
            ("ENVOY_USER", "a:b"),
            ("ENVOY_GROUP", "a b"),
            ("ENVOY_CONTROL_GROUP", "a/b"),
            ("ENVOY_CHROOT", "var/empty"),
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
        let listen_file = dir.join("listeners");
        std::fs::write(&listen_file, "127.0.0.1:9 name=filed\n").unwrap();
        let listen_path = listen_file.to_str().unwrap().to_string();
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
            ("ENVOY_LISTEN", "[::1]:9 name=a proxy_protocol=off", |c| {
                c.listeners.len() == 1
                    && c.listeners[0].name == "a"
                    && c.for_listener(0).proxy_protocol == ProxyPolicy::Off
            }),
            ("ENVOY_LISTEN_FILE", &listen_path, |c| {
                c.listeners.len() == 1 && c.listeners[0].name == "filed"
            }),
            ("ENVOY_UPSTREAM", "127.0.0.1:4", |c| {
                c.upstream[0].addrs == ["127.0.0.1:4".parse().unwrap()]
                    && c.default_route.pool.members == c.upstream
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
            ("ENVOY_MAX_FILES", "4096", |c| c.max_files == Some(4096)),
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
            ("ENVOY_BALANCE", "least-sessions", |c| {
                c.balance == Balance::LeastSessions
                    && c.default_route.pool.balance == Balance::LeastSessions
            }),
            ("ENVOY_CHECK", "check=tcp rise=4", |c| {
                c.check.as_ref().is_some_and(|k| k.rise == 4)
                    && c.default_route.pool.check == c.check
            }),
            ("ENVOY_EJECT_AFTER", "5", |c| c.eject_after == 5),
            ("ENVOY_EJECT_BACKOFF_MS", "200", |c| {
                c.eject_backoff_ms == 200
            }),
            ("ENVOY_EJECT_BACKOFF_MAX_MS", "900", |c| {
                c.eject_backoff_max_ms == 900
            }),
            ("ENVOY_RESOLVE_INTERVAL_MS", "5000", |c| {
                c.resolve_interval_ms == 5000
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
            ("ENVOY_CONTROL_GROUP", "adm", |c| c.control_group == "adm"),
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
            ("ENVOY_USER", " sluice ", |c| c.user == "sluice"),
            ("ENVOY_GROUP", "sluice", |c| c.group == "sluice"),
            ("ENVOY_CHROOT", "/var/empty", |c| c.chroot == "/var/empty"),
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
    fn listeners_settle_their_policy_and_routes_name_them() {
        let c = load(&[
            ("ENVOY_UPSTREAM", "127.0.0.1:10000"),
            ("ENVOY_PROXY_PROTOCOL", "optional"),
            (
                "ENVOY_LISTEN",
                "127.0.0.1:8443 name=lb proxy_protocol=required upstream=127.0.0.1:1; [::1]:8444 mode=connect idle_timeout_ms=7",
            ),
            ("ENVOY_ROUTES", "listener=listen2 sni=a.test deny; allow"),
        ])
        .unwrap();
        assert_eq!(c.listeners.len(), 2);
        let (lb, two) = (c.for_listener(0), c.for_listener(1));
        assert_eq!((lb.listener, lb.listener_name()), (0, "lb"));
        assert_eq!(lb.proxy_protocol, ProxyPolicy::Required);
        let addrs = |r: &route::Route| -> Vec<std::net::SocketAddr> {
            r.pool
                .members
                .iter()
                .flat_map(|u| u.addrs.clone())
                .collect()
        };
        assert_eq!(addrs(&lb.default_route), ["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(lb.default_route.mode, Mode::Direct);
        assert_eq!(two.listener_name(), "listen2");
        assert_eq!(two.proxy_protocol, ProxyPolicy::Optional, "the key's value");
        assert_eq!(two.default_route.mode, Mode::Connect);
        assert_eq!(addrs(&two.default_route), c.upstream_addrs());
        assert_eq!((two.idle_timeout_ms, c.idle_timeout_ms), (7, 300_000));
        // ENVOY_LISTEN unset: one listener named default on ENVOY_IP:ENVOY_PORT.
        let d = load(&[("ENVOY_UPSTREAM", "127.0.0.1:10000"), ("ENVOY_PORT", "9")]).unwrap();
        assert_eq!(d.listeners.len(), 1);
        assert_eq!(d.listeners[0].name, "default");
        assert_eq!(d.listeners[0].addr, "127.0.0.1:9".parse().unwrap());
        // A route naming no listener, a bad entry, two on one address: exit 2 naming them.
        let e = load(&[("ENVOY_ROUTES", "listener=nope allow")]).unwrap_err();
        assert_eq!(e.key, "ENVOY_ROUTES");
        assert!(e.to_string().contains("no listener is named nope"), "{e}");
        let e = load(&[("ENVOY_LISTEN", "127.0.0.1:1; 127.0.0.1:1 name=b")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid ENVOY_LISTEN="127.0.0.1:1 name=b": ENVOY_LISTEN listener 2: 127.0.0.1:1 is already the address of listener listen1 (ENVOY_LISTEN listener 1)"#
        );
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
