//! Listeners: the addresses sluice accepts on, each with its own policy.
//!
//! `ENVOY_LISTEN` (entries separated by `;` or newlines) then the file named by
//! `ENVOY_LISTEN_FILE` (one a line) list them; when both are empty there is one listener,
//! `default`, on `ENVOY_IP`:`ENVOY_PORT`, exactly as before listeners existed.
//!
//! ```text
//! listener := addr ":" port option*            IPv6 as "[addr]:port"; no names, no DNS
//! option   := "name=" token                     logs, metrics, `listener=` route conditions
//!                                               (default listen1, listen2, ... in order)
//!           | "proxy_protocol=" ("required" | "optional" | "off")
//!           | "trusted=" cidr ("," cidr)*
//!           | "upstream=" host:port ("," host:port)*   this listener's default route
//!           | "mode=" ("direct" | "proxy-v2" | "connect")
//!           | "header_timeout_ms=" n | "connect_timeout_ms=" n | "idle_timeout_ms=" n
//! ```
//! An option not given takes the `ENVOY_*` key's value. Two listeners on one address, or
//! with one name, are refused. Everything is parsed (and `upstream=` resolved) at load;
//! nothing here touches a socket.

use std::net::SocketAddr;

use super::route::{entries, is_name, Mode, NAME_MAX};
use super::upstream::Upstream;
use crate::cidr::Cidr;

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

/// The implicit listener's name (ENVOY_LISTEN unset).
pub const DEFAULT_NAME: &str = "default";

/// What a listener sets for its sessions; `None`: the `ENVOY_*` key's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `proxy_protocol=`
    pub proxy_protocol: Option<ProxyPolicy>,
    /// `trusted=`
    pub trusted: Option<Vec<Cidr>>,
    /// `upstream=`
    pub upstreams: Option<Vec<Upstream>>,
    /// `mode=`
    pub mode: Option<Mode>,
    /// `header_timeout_ms=`
    pub header_timeout_ms: Option<u64>,
    /// `connect_timeout_ms=`
    pub connect_timeout_ms: Option<u64>,
    /// `idle_timeout_ms=`
    pub idle_timeout_ms: Option<u64>,
}

/// One listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name: `name=`, `listenN` by position, or `default` for the implicit one.
    pub name: String,
    /// Where it was written (`ENVOY_LISTEN listener 2`, `FILE line 3`, `ENVOY_IP/ENVOY_PORT`).
    pub origin: String,
    /// The address as configured (port 0: any free port, the same for every worker).
    pub addr: SocketAddr,
    /// The options as written after the address (`-` for none): `show listeners`' policy.
    pub policy: String,
    /// What it overrides.
    pub overrides: Overrides,
}

impl Listener {
    /// The implicit listener on `ENVOY_IP`:`ENVOY_PORT`.
    pub fn implicit(addr: SocketAddr) -> Listener {
        Listener {
            name: DEFAULT_NAME.to_string(),
            origin: "ENVOY_IP/ENVOY_PORT".to_string(),
            addr,
            policy: "-".to_string(),
            overrides: Overrides::default(),
        }
    }
}

/// A listener entry that could not be loaded: where, the entry as written, why (the same
/// shape as a route's).
pub type ListenerError = super::route::RouteError;

/// Parses the listeners in `text`; `origin(n)` names entry `n` (1-based). `before` are the
/// listeners loaded ahead (ENVOY_LISTEN ahead of the file): default names count on after
/// them, and addresses and names must differ from theirs. `resolve` turns `upstream=` into
/// addresses (at load only).
pub fn parse_listeners(
    text: &str,
    split_semicolons: bool,
    origin: impl Fn(usize) -> String,
    before: &[Listener],
    resolve: &dyn Fn(&str) -> Result<Upstream, String>,
) -> Result<Vec<Listener>, ListenerError> {
    let mut out: Vec<Listener> = Vec::new();
    for (n, line) in entries(text, split_semicolons) {
        let err = |reason: String| ListenerError {
            origin: origin(n),
            text: line.to_string(),
            reason,
        };
        let mut l = parse_listener(line, origin(n), resolve).map_err(err)?;
        if l.name.is_empty() {
            l.name = format!("listen{}", before.len() + out.len() + 1);
        }
        if let Some(other) = before.iter().chain(&out).find(|o| o.addr == l.addr) {
            return Err(err(format!(
                "{} is already the address of listener {} ({})",
                l.addr, other.name, other.origin
            )));
        }
        if let Some(other) = before.iter().chain(&out).find(|o| o.name == l.name) {
            return Err(err(format!(
                "name {} is already the name of {}",
                l.name, other.origin
            )));
        }
        out.push(l);
    }
    Ok(out)
}

fn parse_listener(
    line: &str,
    origin: String,
    resolve: &dyn Fn(&str) -> Result<Upstream, String>,
) -> Result<Listener, String> {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("");
    let addr: SocketAddr = first.parse().map_err(|_| {
        format!("{first:?} is not ADDR:PORT (an IP address and a port; IPv6 as [addr]:port)")
    })?;
    let mut l = Listener {
        name: String::new(),
        origin,
        addr,
        policy: String::new(),
        overrides: Overrides::default(),
    };
    let o = &mut l.overrides;
    let mut options = Vec::new();
    for word in words {
        options.push(word);
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("{word:?} is not key=value"));
        };
        let list = || value.split(',').filter(|s| !s.is_empty());
        let ms = |min: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=86_400_000).contains(n))
                .ok_or(format!("bad {key} {value:?} (a whole number from {min})"))
        };
        match key {
            "name" => {
                if !l.name.is_empty() {
                    return Err("more than one name=".into());
                }
                if !is_name(value) {
                    return Err(format!(
                        "bad name {value:?} (1 to {NAME_MAX} letters, digits, '_', '-', '.')"
                    ));
                }
                l.name = value.to_string();
            }
            "proxy_protocol" => {
                o.proxy_protocol = Some(match value {
                    "required" => ProxyPolicy::Required,
                    "optional" => ProxyPolicy::Optional,
                    "off" => ProxyPolicy::Off,
                    _ => {
                        return Err(format!(
                            "bad proxy_protocol {value:?} (required, optional, off)"
                        ))
                    }
                })
            }
            "trusted" => {
                let cidrs = list()
                    .map(|c| c.parse::<Cidr>().map_err(|_| format!("bad CIDR {c:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                o.trusted = Some(cidrs);
            }
            "upstream" => {
                let ups: Vec<Upstream> = list().map(resolve).collect::<Result<_, _>>()?;
                if ups.is_empty() {
                    return Err("upstream= names nothing".into());
                }
                if ups.len() > super::pool::MAX_MEMBERS {
                    return Err(format!(
                        "upstream= names {} upstreams (at most {})",
                        ups.len(),
                        super::pool::MAX_MEMBERS
                    ));
                }
                o.upstreams = Some(ups);
            }
            "mode" => {
                o.mode = Some(
                    Mode::parse(value)
                        .ok_or(format!("bad mode {value:?} (direct, proxy-v2, connect)"))?,
                )
            }
            "header_timeout_ms" => o.header_timeout_ms = Some(ms(1)?),
            "connect_timeout_ms" => o.connect_timeout_ms = Some(ms(1)?),
            "idle_timeout_ms" => o.idle_timeout_ms = Some(ms(0)?),
            _ => return Err(format!("unknown option {key:?}")),
        }
    }
    l.policy = if options.is_empty() {
        "-".to_string()
    } else {
        options.join(" ")
    };
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(s: &str) -> Result<Upstream, String> {
        s.parse::<SocketAddr>()
            .map(|a| Upstream {
                name: s.to_string(),
                addrs: vec![a],
            })
            .map_err(|_| format!("cannot resolve {s:?}"))
    }

    fn load(text: &str) -> Result<Vec<Listener>, ListenerError> {
        parse_listeners(
            text,
            true,
            |n| format!("ENVOY_LISTEN listener {n}"),
            &[],
            &resolve,
        )
    }

    #[test]
    fn listeners_parse_with_their_options_and_are_named_in_order() {
        let ls = load(
            "127.0.0.1:8443 proxy_protocol=required trusted=10.0.0.0/8 upstream=127.0.0.1:9;\
             [::1]:8444 name=direct proxy_protocol=off mode=proxy-v2 idle_timeout_ms=0\n\
             0.0.0.0:80 header_timeout_ms=10 connect_timeout_ms=20 # plain HTTP",
        )
        .unwrap();
        let names: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["listen1", "direct", "listen3"]);
        assert_eq!(ls[0].addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(ls[1].addr, "[::1]:8444".parse().unwrap());
        assert_eq!(ls[0].overrides.proxy_protocol, Some(ProxyPolicy::Required));
        assert_eq!(ls[0].overrides.upstreams.as_ref().unwrap().len(), 1);
        assert_eq!(ls[1].overrides.mode, Some(Mode::ProxyV2));
        assert_eq!(ls[1].overrides.idle_timeout_ms, Some(0));
        assert_eq!(ls[2].overrides.header_timeout_ms, Some(10));
        assert_eq!(ls[2].overrides.connect_timeout_ms, Some(20));
        assert_eq!(ls[2].origin, "ENVOY_LISTEN listener 3");
        assert_eq!(ls[2].policy, "header_timeout_ms=10 connect_timeout_ms=20");
        assert_eq!(load("127.0.0.1:1").unwrap()[0].policy, "-");
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry_and_the_reason() {
        for (text, why) in [
            ("localhost:80", "is not ADDR:PORT"),
            ("::1:80", "is not ADDR:PORT"),
            ("127.0.0.1", "is not ADDR:PORT"),
            ("127.0.0.1:99999", "is not ADDR:PORT"),
            ("127.0.0.1:2 proxy_protocol=maybe", "bad proxy_protocol"),
            ("127.0.0.1:2 trusted=10.0.0.0/33", "bad CIDR"),
            ("127.0.0.1:2 upstream=nowhere", "cannot resolve"),
            ("127.0.0.1:2 mode=tcp", "bad mode"),
            ("127.0.0.1:2 header_timeout_ms=0", "bad header_timeout_ms"),
            ("127.0.0.1:2 colour=blue", "unknown option"),
            ("127.0.0.1:2 allow", "not key=value"),
            ("127.0.0.1:2 name=a/b", "bad name"),
            ("127.0.0.1:2 name=a name=b", "more than one name="),
            (
                "127.0.0.1:1",
                "127.0.0.1:1 is already the address of listener listen1",
            ),
            (
                "127.0.0.1:2 name=listen1",
                "name listen1 is already the name of",
            ),
        ] {
            let e = load(&format!("127.0.0.1:1; {text}")).unwrap_err();
            assert_eq!(e.origin, "ENVOY_LISTEN listener 2", "{text}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn the_file_counts_on_after_the_variable() {
        let first = load("127.0.0.1:1").unwrap();
        let more = parse_listeners(
            "127.0.0.1:2\n\n127.0.0.1:3 name=x",
            false,
            |n| format!("f line {n}"),
            &first,
            &resolve,
        )
        .unwrap();
        let names: Vec<&str> = more.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["listen2", "x"]);
        assert_eq!(more[1].origin, "f line 3");
        let e = parse_listeners(
            "127.0.0.1:1",
            false,
            |n| format!("f line {n}"),
            &first,
            &resolve,
        )
        .unwrap_err();
        assert!(e.reason.contains("already the address"), "{e}");
    }
}
