//! A route's upstreams as a pool: its members (configured `host:port`s, in order), how a
//! session picks one ([`Balance`]), and the optional active check that the supervisor runs
//! against each member ([`Check`]). Parsed from a route's options (`balance=`, `check=`,
//! `check_interval_ms=`, `check_timeout_ms=`, `rise=`, `fall=`, `check_host=`) or, for the
//! default route, from ENVOY_UPSTREAM, ENVOY_BALANCE and ENVOY_CHECK.
//!
//! Values only: choosing a member is `worker::upstreams::pick`'s, checking it
//! `supervisor::health`'s, and what a worker remembers of each member `worker::upstreams`'.
//! The one piece of run-time state here is the pool's round-robin counter, which a worker
//! keeps with the configuration it belongs to (a reload starts the rotation again).

use std::cell::Cell;

use crate::config::upstream::Upstream;

/// The most members a pool may have (a session remembers the ones it tried in a `u64`).
pub const MAX_MEMBERS: usize = 64;

/// How a session chooses among a pool's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// In order: the first usable member (the behaviour before pools).
    First,
    /// Each new session the next member, per worker.
    RoundRobin,
    /// The usable member with the fewest of this worker's sessions now.
    LeastSessions,
    /// Rendezvous hashing on the client's address: a client keeps its member while the pool
    /// is unchanged; a member leaving moves only its own clients.
    ClientHash,
}

impl Balance {
    /// Parses a value of `balance=` / ENVOY_BALANCE.
    pub fn parse(s: &str) -> Option<Balance> {
        match s {
            "first" => Some(Balance::First),
            "round-robin" => Some(Balance::RoundRobin),
            "least-sessions" => Some(Balance::LeastSessions),
            "client-hash" => Some(Balance::ClientHash),
            _ => None,
        }
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::First => "first",
            Balance::RoundRobin => "round-robin",
            Balance::LeastSessions => "least-sessions",
            Balance::ClientHash => "client-hash",
        }
    }

    /// What a refusal lists.
    pub const CHOICES: &'static str = "first, round-robin, least-sessions, client-hash";
}

/// What an active check does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Nothing: a completed TCP connect passes.
    Tcp,
    /// Sends a PROXY v2 LOCAL header, as haproxy's `check-send-proxy` does; passes once it
    /// is written.
    ProxyV2Local,
    /// Sends `CONNECT check_host HTTP/1.1` and passes on a 2xx reply.
    Connect,
}

impl CheckKind {
    fn parse(s: &str) -> Option<CheckKind> {
        match s {
            "tcp" => Some(CheckKind::Tcp),
            "proxy-v2-local" => Some(CheckKind::ProxyV2Local),
            "connect" => Some(CheckKind::Connect),
            _ => None,
        }
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::ProxyV2Local => "proxy-v2-local",
            CheckKind::Connect => "connect",
        }
    }
}

/// An active check, as haproxy's `check inter … rise … fall …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What it does.
    pub kind: CheckKind,
    /// Time between the starts of two checks of one member.
    pub interval_ms: u64,
    /// Time one check may take (connect, and what the kind sends and reads).
    pub timeout_ms: u64,
    /// Passes in a row that mark a down member up.
    pub rise: u32,
    /// Failures in a row that mark an up member down.
    pub fall: u32,
    /// `connect`: the CONNECT target, `host:port` (sent, never resolved by sluice).
    pub host: Option<String>,
}

impl Check {
    /// The defaults beside a kind (haproxy's: 2 s apart, rise 2, fall 3).
    fn new(kind: CheckKind) -> Check {
        Check {
            kind,
            interval_ms: 2000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
            host: None,
        }
    }
}

impl std::fmt::Display for Check {
    /// As route options would write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check={} check_interval_ms={} check_timeout_ms={} rise={} fall={}",
            self.kind.as_str(),
            self.interval_ms,
            self.timeout_ms,
            self.rise,
            self.fall
        )?;
        if let Some(h) = &self.host {
            write!(f, " check_host={h}")?;
        }
        Ok(())
    }
}

/// A route's upstreams and how they are used.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The members, in the order written.
    pub members: Vec<Upstream>,
    /// How a session picks one.
    pub balance: Balance,
    /// The active check of every member, if any.
    pub check: Option<Check>,
    /// Each member's rendezvous weight seed (a hash of its name), for `client-hash`.
    pub seeds: Vec<u64>,
    /// Each member's entry in the table of the worker that took this configuration
    /// (`worker::upstreams`), in member order; empty until a worker takes it.
    pub slots: Vec<usize>,
    /// The round-robin position: this worker's, for this configuration.
    next: Cell<u32>,
}

impl Pool {
    /// A pool of `members` (at least one), balanced by `balance`, unchecked.
    pub fn new(members: Vec<Upstream>, balance: Balance) -> Pool {
        let seeds = members.iter().map(|u| name_hash(&u.name)).collect();
        Pool {
            members,
            balance,
            check: None,
            seeds,
            slots: Vec::new(),
            next: Cell::new(0),
        }
    }

    /// Replaces the members (a route's `upstream=`).
    pub fn set_members(&mut self, members: Vec<Upstream>) -> Result<(), String> {
        if members.len() > MAX_MEMBERS {
            return Err(format!(
                "{} upstreams in one pool (at most {MAX_MEMBERS})",
                members.len()
            ));
        }
        self.seeds = members.iter().map(|u| name_hash(&u.name)).collect();
        self.members = members;
        Ok(())
    }

    /// The round-robin position for a new session, moved on by one.
    #[inline]
    pub fn take_turn(&self) -> u32 {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        n
    }

    /// True for the route options this module reads.
    pub fn is_option(key: &str) -> bool {
        matches!(
            key,
            "balance"
                | "check"
                | "check_interval_ms"
                | "check_timeout_ms"
                | "rise"
                | "fall"
                | "check_host"
        )
    }
}

/// Pool options as a route (or ENVOY_CHECK) gives them, checked whole by [`Options::apply`].
#[derive(Debug, Default)]
pub struct Options {
    balance: Option<Balance>,
    kind: Option<CheckKind>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    rise: Option<u32>,
    fall: Option<u32>,
    host: Option<String>,
}

impl Options {
    /// Takes one option (`key` is one of [`Pool::is_option`]'s); the error names it.
    pub fn take(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |lo: u64, hi: u64| -> Result<u64, String> {
            match value.parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(format!(
                    "bad {key} {value:?} (a whole number from {lo} to {hi})"
                )),
            }
        };
        let seen = match key {
            "balance" => self
                .balance
                .replace(
                    Balance::parse(value)
                        .ok_or_else(|| format!("bad balance {value:?} ({})", Balance::CHOICES))?,
                )
                .is_some(),
            "check" => {
                self.kind
                    .replace(CheckKind::parse(value).ok_or_else(|| {
                        format!("bad check {value:?} (tcp, proxy-v2-local, connect)")
                    })?)
                    .is_some()
            }
            "check_interval_ms" => self.interval_ms.replace(number(10, 3_600_000)?).is_some(),
            "check_timeout_ms" => self.timeout_ms.replace(number(1, 3_600_000)?).is_some(),
            "rise" => self.rise.replace(number(1, 100)? as u32).is_some(),
            "fall" => self.fall.replace(number(1, 100)? as u32).is_some(),
            "check_host" => {
                if !has_host_and_port(value) {
                    return Err(format!(
                        "bad check_host {value:?} (host:port, the CONNECT target)"
                    ));
                }
                self.host.replace(value.to_string()).is_some()
            }
            _ => return Err(format!("unknown key {key:?}")),
        };
        if seen {
            return Err(format!("more than one {key}="));
        }
        Ok(())
    }

    /// Writes the options into `pool`: a check option without `check=`, `check_host=`
    /// without `check=connect` (or `check=connect` without it), and a timeout longer than
    /// the interval are refused.
    pub fn apply(self, pool: &mut Pool) -> Result<(), String> {
        if let Some(b) = self.balance {
            pool.balance = b;
        }
        let Some(kind) = self.kind else {
            let stray = [
                ("check_interval_ms", self.interval_ms.is_some()),
                ("check_timeout_ms", self.timeout_ms.is_some()),
                ("rise", self.rise.is_some()),
                ("fall", self.fall.is_some()),
                ("check_host", self.host.is_some()),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(format!("{k}= needs check=")),
                None => Ok(()),
            };
        };
        let mut c = Check::new(kind);
        c.interval_ms = self.interval_ms.unwrap_or(c.interval_ms);
        c.timeout_ms = self
            .timeout_ms
            .unwrap_or_else(|| c.timeout_ms.min(c.interval_ms));
        c.rise = self.rise.unwrap_or(c.rise);
        c.fall = self.fall.unwrap_or(c.fall);
        if c.timeout_ms > c.interval_ms {
            return Err(format!(
                "check_timeout_ms={} is longer than check_interval_ms={}",
                c.timeout_ms, c.interval_ms
            ));
        }
        match (kind, self.host) {
            (CheckKind::Connect, None) => {
                return Err("check=connect needs check_host=HOST:PORT (the CONNECT target)".into())
            }
            (CheckKind::Connect, host) => c.host = host,
            (_, Some(_)) => return Err("check_host= goes with check=connect".into()),
            (_, None) => {}
        }
        pool.check = Some(c);
        Ok(())
    }
}

/// Parses ENVOY_CHECK: route options of the check family only (empty: no check).
pub fn default_check(text: &str, pool: &mut Pool) -> Result<(), String> {
    let mut o = Options::default();
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("{word:?} is not key=value"));
        };
        if key == "balance" || !Pool::is_option(key) {
            return Err(format!(
                "unknown key {key:?} (check, check_interval_ms, check_timeout_ms, rise, fall, check_host)"
            ));
        }
        o.take(key, value)?;
    }
    o.apply(pool)
}

/// `host:port`, no blank, no byte a CONNECT line could not carry.
fn has_host_and_port(v: &str) -> bool {
    let ok_bytes = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    ok_bytes
        && v.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// FNV-1a of a member's name, mixed: its rendezvous seed.
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// A 64-bit finaliser (murmur3's fmix64): every input bit moves every output bit.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        let up = |s: &str| Upstream {
            name: s.into(),
            addrs: vec![s.parse().unwrap()],
        };
        Pool::new(vec![up("127.0.0.1:1"), up("127.0.0.1:2")], Balance::First)
    }

    fn apply(options: &[(&str, &str)]) -> Result<Pool, String> {
        let mut o = Options::default();
        for (k, v) in options {
            o.take(k, v)?;
        }
        let mut p = pool();
        o.apply(&mut p)?;
        Ok(p)
    }

    #[test]
    fn options_fill_the_pool_and_defaults_the_rest() {
        let p = apply(&[("balance", "client-hash"), ("check", "tcp"), ("rise", "4")]).unwrap();
        assert_eq!(p.balance, Balance::ClientHash);
        let c = p.check.unwrap();
        assert_eq!(
            (c.kind, c.interval_ms, c.timeout_ms),
            (CheckKind::Tcp, 2000, 1000)
        );
        assert_eq!((c.rise, c.fall), (4, 3));
        let p = apply(&[
            ("check", "connect"),
            ("check_host", "health.example:443"),
            ("check_interval_ms", "500"),
        ])
        .unwrap();
        let c = p.check.unwrap();
        assert_eq!(c.host.as_deref(), Some("health.example:443"));
        assert_eq!(c.timeout_ms, 500, "no longer than the interval");
        assert_eq!(
            c.to_string(),
            "check=connect check_interval_ms=500 check_timeout_ms=500 rise=2 fall=3 check_host=health.example:443"
        );
        assert!(apply(&[]).unwrap().check.is_none());
    }

    #[test]
    fn bad_options_say_which() {
        for (opts, why) in [
            (&[("balance", "random")][..], "bad balance \"random\""),
            (&[("check", "http")][..], "bad check \"http\""),
            (&[("rise", "0"), ("check", "tcp")][..], "bad rise"),
            (&[("fall", "x"), ("check", "tcp")][..], "bad fall"),
            (&[("rise", "2")][..], "rise= needs check="),
            (&[("check", "connect")][..], "needs check_host="),
            (
                &[("check", "tcp"), ("check_host", "a:1")][..],
                "goes with check=connect",
            ),
            (
                &[("check", "connect"), ("check_host", "a b:1")][..],
                "bad check_host",
            ),
            (
                &[
                    ("check", "tcp"),
                    ("check_interval_ms", "100"),
                    ("check_timeout_ms", "200"),
                ][..],
                "longer than",
            ),
            (
                &[("check", "tcp"), ("check", "tcp")][..],
                "more than one check=",
            ),
        ] {
            let e = apply(opts).unwrap_err();
            assert!(e.contains(why), "{opts:?}: {e}");
        }
        let mut p = pool();
        assert!(default_check("balance=first", &mut p).is_err());
        default_check("check=proxy-v2-local fall=1", &mut p).unwrap();
        assert_eq!(p.check.unwrap().kind, CheckKind::ProxyV2Local);
    }

    #[test]
    fn turns_go_round_and_seeds_differ() {
        let p = pool();
        assert_eq!((p.take_turn(), p.take_turn()), (0, 1));
        assert_ne!(p.seeds[0], p.seeds[1]);
    }
}
