//! An upstream as configured (`ENVOY_UPSTREAM`, a route's `upstream=`): the `host:port` text
//! and the addresses it named when the configuration was loaded; and [`Resolve`], how a
//! load learns what a name's addresses are.
//!
//! A leaf that both the key table (`config`) and the routes (`config::route`) build on. A
//! load never picks its resolver: at start (`sluice run`, `check-config`, a standalone
//! worker before its loop) it is [`SystemResolver`], which blocks; on an event loop it is a
//! table of answers the supervisor's resolver thread gave (`config::names::Names`), which
//! never does.
//! Nothing here knows of keys or routes.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where a load learns the addresses of a `host:port` whose host is a name.
pub trait Resolve {
    /// Every address `host_port` names, in order (possibly none); the error is the reason
    /// it could not be resolved, without the name.
    fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String>;
}

/// The system resolver (getaddrinfo): blocks for as long as the resolver takes. Only at
/// start and in a resolver thread, never on a loop.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String> {
        host_port
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    }
}

/// A `host:port` as written, with the addresses it named at load time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The text as configured, e.g. `localhost:10000`: what metrics, `show upstreams` and
    /// `sluice ctl upstream` call it.
    pub name: String,
    /// Every address the name resolved to when the configuration was loaded (an address
    /// names itself); a session tries them in order. Re-resolution changes a worker's copy
    /// (`worker::upstreams`), not this one.
    pub addrs: Vec<SocketAddr>,
}

impl Upstream {
    /// `host:port` (surrounding spaces ignored; IPv6 as `[addr]:port`) with the addresses
    /// it names: an address at once, a name through `names`. The error is the reason, for
    /// the caller to attach to its key or route.
    pub fn resolve(text: &str, names: &dyn Resolve) -> Result<Upstream, String> {
        let v = text.trim();
        if let Ok(addr) = v.parse::<SocketAddr>() {
            return Ok(Upstream {
                name: v.to_string(),
                addrs: vec![addr],
            });
        }
        if !has_port(v) {
            return Err("expected host:port (IPv6 as [addr]:port)".into());
        }
        match names.addrs(v) {
            Ok(addrs) if addrs.is_empty() => Err("the name resolved to no address".into()),
            Ok(addrs) => Ok(Upstream {
                name: v.to_string(),
                addrs,
            }),
            Err(e) => Err(format!("cannot resolve: {e}")),
        }
    }

    /// A comma-separated list of `host:port`s, each resolved as [`Upstream::resolve`] does;
    /// none, or one named twice, is refused.
    pub fn list(text: &str, names: &dyn Resolve) -> Result<Vec<Upstream>, String> {
        let mut ups: Vec<Upstream> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let u = Upstream::resolve(part, names)?;
            if ups.iter().any(|o| o.name == u.name) {
                return Err(format!("{} is listed twice", u.name));
            }
            ups.push(u);
        }
        if ups.is_empty() {
            return Err("expected host:port (IPv6 as [addr]:port)".into());
        }
        Ok(ups)
    }

    /// True when the host is a name a resolver must answer for (not an address).
    pub fn is_name(&self) -> bool {
        self.name.parse::<SocketAddr>().is_err()
    }
}

/// True for `host:port` with a host and a port number.
fn has_port(v: &str) -> bool {
    v.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers `name.test:N` with 127.0.0.N, fails everything else.
    struct Fake;

    impl Resolve for Fake {
        fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String> {
            match host_port.strip_prefix("name.test:") {
                Some(p) => Ok(vec![format!("127.0.0.{p}:{p}").parse().unwrap()]),
                None if host_port.starts_with("empty.test") => Ok(Vec::new()),
                None => Err("no such name".into()),
            }
        }
    }

    #[test]
    fn an_address_resolves_to_itself_and_text_without_a_port_is_refused() {
        let u = Upstream::resolve(" 127.0.0.1:10000 ", &Fake).unwrap();
        assert_eq!(u.name, "127.0.0.1:10000");
        assert_eq!(u.addrs, vec!["127.0.0.1:10000".parse().unwrap()]);
        assert!(!u.is_name());
        let v6 = Upstream::resolve("[::1]:443", &Fake).unwrap();
        assert_eq!(v6.addrs, vec!["[::1]:443".parse().unwrap()]);
        for bad in ["no-port", ":80", "host:", "host:99999", ""] {
            let e = Upstream::resolve(bad, &Fake).unwrap_err();
            assert!(e.starts_with("expected host:port"), "{bad}: {e}");
        }
        let n = Upstream::resolve("name.test:7", &Fake).unwrap();
        assert!(n.is_name());
        assert_eq!(n.addrs, vec!["127.0.0.7:7".parse().unwrap()]);
        assert_eq!(
            Upstream::resolve("other.test:1", &Fake).unwrap_err(),
            "cannot resolve: no such name"
        );
        assert_eq!(
            Upstream::resolve("empty.test:1", &Fake).unwrap_err(),
            "the name resolved to no address"
        );
    }

    #[test]
    fn a_list_keeps_its_order_and_refuses_twins_and_nothing() {
        let l = Upstream::list("127.0.0.1:1, name.test:2,[::1]:3", &Fake).unwrap();
        let names: Vec<&str> = l.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["127.0.0.1:1", "name.test:2", "[::1]:3"]);
        assert!(Upstream::list("127.0.0.1:1,127.0.0.1:1", &Fake)
            .unwrap_err()
            .contains("listed twice"));
        assert!(Upstream::list(" , ", &Fake).is_err());
        assert!(Upstream::list("127.0.0.1:1,nowhere:2", &Fake).is_err());
    }

    #[test]
    fn the_system_resolver_answers_for_localhost() {
        let a = SystemResolver.addrs("localhost:80").unwrap();
        assert!(a.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
