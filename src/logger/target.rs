//! Where log lines go (`ENVOY_LOG_TARGET`) and the syslog facility they carry
//! (`ENVOY_LOG_FACILITY`): parsed and shown, nothing opened. Pure: a collector's name is
//! resolved by whatever [`Target::resolved`] is given (the configuration load's resolver),
//! never here.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The local syslog socket: the platform's own.
#[cfg(target_os = "freebsd")]
pub const SYSLOG_SOCKET: &str = "/var/run/log";
/// The local syslog socket: the platform's own.
#[cfg(not(target_os = "freebsd"))]
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// A value of `ENVOY_LOG_TARGET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `stderr` (the default): the inherited descriptor 2.
    Stderr,
    /// `file:PATH`: appended to, reopened on request (log rotation).
    File(PathBuf),
    /// `syslog` (the platform's socket) or `syslog:/PATH` (a socket elsewhere, e.g. a
    /// test's): datagrams to a local socket, in the platform's local layout.
    SyslogLocal(PathBuf),
    /// `syslog:HOST:PORT`: RFC 5424 datagrams over UDP.
    SyslogUdp {
        /// A name or an address (IPv6 without brackets).
        host: String,
        /// The collector's port.
        port: u16,
        /// Where the datagrams go: the address itself, or what the name resolved to at
        /// load ([`Target::resolved`]); `None` until then.
        addr: Option<SocketAddr>,
    },
}

impl Target {
    /// Parses a value of `ENVOY_LOG_TARGET` (a name is not resolved: see
    /// [`Target::resolved`]); the error says which forms are accepted.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad =
            || "expected stderr, file:PATH, syslog, syslog:/PATH or syslog:HOST:PORT".to_string();
        if s == "stderr" {
            return Ok(Target::Stderr);
        }
        if s == "syslog" {
            return Ok(Target::SyslogLocal(PathBuf::from(SYSLOG_SOCKET)));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() || path.contains('\0') {
                return Err(bad());
            }
            return Ok(Target::File(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("syslog:") else {
            return Err(bad());
        };
        if rest.starts_with('/') {
            if rest.contains('\0') {
                return Err(bad());
            }
            return Ok(Target::SyslogLocal(PathBuf::from(rest)));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()), // IPv6 needs brackets
            None => host,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:%".contains(&b));
        if !host_ok || port == 0 {
            return Err(bad());
        }
        Ok(Target::SyslogUdp {
            host: host.to_string(),
            port,
            addr: host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port)),
        })
    }

    /// The target with a collector's name resolved (the first address it names) by
    /// `resolve`, which answers for `host:port` (the system resolver at start, a table of
    /// a resolver thread's answers on a loop). Other targets come back as they are.
    pub fn resolved(
        self,
        resolve: &dyn Fn(&str) -> Result<Vec<SocketAddr>, String>,
    ) -> Result<Target, String> {
        match self {
            Target::SyslogUdp {
                host,
                port,
                addr: None,
            } => {
                let addr = resolve(&format!("{host}:{port}"))
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?
                    .first()
                    .copied()
                    .ok_or_else(|| format!("{host} resolved to no address"))?;
                Ok(Target::SyslogUdp {
                    host,
                    port,
                    addr: Some(addr),
                })
            }
            t => Ok(t),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stderr => f.write_str("stderr"),
            Target::File(p) => write!(f, "file:{}", p.display()),
            Target::SyslogLocal(p) if p.as_os_str() == SYSLOG_SOCKET => f.write_str("syslog"),
            Target::SyslogLocal(p) => write!(f, "syslog:{}", p.display()),
            Target::SyslogUdp { host, port, .. } if host.contains(':') => {
                write!(f, "syslog:[{host}]:{port}")
            }
            Target::SyslogUdp { host, port, .. } => write!(f, "syslog:{host}:{port}"),
        }
    }
}

/// A syslog facility (RFC 5424 §6.2.1), `daemon` by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

/// The names `ENVOY_LOG_FACILITY` accepts, with their codes.
/// (`kern` is not one: syslogd files a process's `kern` under `user`.)
const FACILITIES: [(&str, u8); 13] = [
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Facility {
    /// `daemon`.
    pub const DAEMON: Facility = Facility(3);

    /// Parses a value of `ENVOY_LOG_FACILITY` (`daemon`, `user`, `local0` … `local7`, …).
    pub fn parse(s: &str) -> Result<Facility, String> {
        FACILITIES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, code)| Facility(code))
            .ok_or_else(|| {
                "expected daemon, user, local0-local7, auth, authpriv or syslog".to_string()
            })
    }

    /// The facility's number.
    pub fn code(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    fn default() -> Self {
        Facility::DAEMON
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FACILITIES
            .iter()
            .find(|&&(_, code)| code == self.0)
            .map_or("daemon", |&(name, _)| name);
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("stderr"), Ok(Target::Stderr));
        assert_eq!(
            Target::parse("file:/var/log/sluice.log"),
            Ok(Target::File("/var/log/sluice.log".into()))
        );
        assert_eq!(
            Target::parse("syslog"),
            Ok(Target::SyslogLocal(SYSLOG_SOCKET.into()))
        );
        assert_eq!(
            Target::parse("syslog:/run/x.sock"),
            Ok(Target::SyslogLocal("/run/x.sock".into()))
        );
        assert_eq!(
            Target::parse("syslog:logs.example:514"),
            Ok(Target::SyslogUdp {
                host: "logs.example".into(),
                port: 514,
                addr: None
            })
        );
        assert_eq!(
            Target::parse("syslog:[::1]:5514"),
            Ok(Target::SyslogUdp {
                host: "::1".into(),
                port: 5514,
                addr: Some("[::1]:5514".parse().unwrap())
            })
        );
        let system = |hp: &str| -> Result<Vec<SocketAddr>, String> {
            use std::net::ToSocketAddrs as _;
            hp.to_socket_addrs()
                .map(|a| a.collect())
                .map_err(|e| e.to_string())
        };
        let named = Target::parse("syslog:localhost:514")
            .unwrap()
            .resolved(&system);
        assert!(
            matches!(named, Ok(Target::SyslogUdp { addr: Some(a), .. }) if a.port() == 514),
            "{named:?}"
        );
        assert!(Target::parse("syslog:no-such-host.invalid:514")
            .unwrap()
            .resolved(&system)
            .is_err());
        for bad in [
            "",
            "STDERR",
            "file:",
            "file",
            "syslog:",
            "syslog:host",
            "syslog:host:0",
            "syslog:host:99999",
            "syslog::514",
            "syslog:::1:514",
            "syslog:[::1:514",
            "syslog:a b:514",
            "journald",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.starts_with("expected stderr, file:PATH"), "{bad}: {e}");
        }
    }

    #[test]
    fn targets_show_as_they_are_written() {
        for s in [
            "stderr",
            "file:/tmp/a.log",
            "syslog",
            "syslog:/run/x.sock",
            "syslog:127.0.0.1:514",
            "syslog:[::1]:514",
        ] {
            assert_eq!(Target::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn facilities() {
        assert_eq!(Facility::default().code(), 3);
        assert_eq!(Facility::parse("daemon").unwrap().code(), 3);
        assert_eq!(Facility::parse("user").unwrap().code(), 1);
        assert_eq!(Facility::parse("local0").unwrap().code(), 16);
        assert_eq!(Facility::parse("LOCAL7").unwrap().code(), 23);
        assert_eq!(Facility::parse("local3").unwrap().to_string(), "local3");
        let e = Facility::parse("local8").unwrap_err();
        assert!(e.starts_with("expected daemon, user"), "{e}");
        assert!(Facility::parse("").is_err());
        assert!(Facility::parse("kern").is_err());
    }
}
