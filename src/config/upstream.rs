//! An upstream as configured (`ENVOY_UPSTREAM`, a route's `upstream=`): the `host:port` text
//! and the addresses it resolved to when the configuration was loaded.
//!
//! A leaf that both the key table (`config`) and the routes (`config::route`) build on. It
//! resolves names with the system resolver, which blocks: only ever at load, never on the
//! event loop; it knows nothing of keys or routes.

use std::net::{SocketAddr, ToSocketAddrs};

/// A `host:port` as written, with the addresses it resolved to at load time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The text as configured, e.g. `localhost:10000`.
    pub name: String,
    /// Every address the name resolved to; tried in order on connect failure.
    pub addrs: Vec<SocketAddr>,
}

impl Upstream {
    /// Resolves `host:port` (surrounding spaces ignored; IPv6 as `[addr]:port`) to every
    /// address it names. The error is the reason, for the caller to attach to its key or route.
    pub fn resolve(text: &str) -> Result<Upstream, String> {
        let v = text.trim();
        let has_port = v
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !has_port {
            return Err("expected host:port (IPv6 as [addr]:port)".into());
        }
        match v.to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err("the name resolved to no address".into())
                } else {
                    Ok(Upstream {
                        name: v.to_string(),
                        addrs,
                    })
                }
            }
            Err(e) => Err(format!("cannot resolve: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_resolves_to_itself_and_text_without_a_port_is_refused() {
        let u = Upstream::resolve(" 127.0.0.1:10000 ").unwrap();
        assert_eq!(u.name, "127.0.0.1:10000");
        assert_eq!(u.addrs, vec!["127.0.0.1:10000".parse().unwrap()]);
        let v6 = Upstream::resolve("[::1]:443").unwrap();
        assert_eq!(v6.addrs, vec!["[::1]:443".parse().unwrap()]);
        for bad in ["no-port", ":80", "host:", "host:99999", ""] {
            let e = Upstream::resolve(bad).unwrap_err();
            assert!(e.starts_with("expected host:port"), "{bad}: {e}");
        }
    }
}
