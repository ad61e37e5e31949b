//! What a client is to the limits and what it may do, as values: the key a session is
//! counted under (the client's address cut to a prefix, and the scope: every route, or one
//! route of its own), a rate as written (`N/s`) and the pace it comes to (a token bucket
//! kept as one theoretical arrival time, GCRA), and the limit a session is held to.
//!
//! Pure: no I/O, no clock, no shared memory (`limits::table` holds the counters).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::Cidr;

/// The highest rate and burst a key accepts.
pub const MAX_RATE: u32 = 1_000_000;

/// New sessions per second, as `ENVOY_CLIENT_RATE` and `client_rate=` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sessions a second, at least 1.
    pub per_second: u32,
}

impl Rate {
    /// `N/s` (1..=1000000), or `off` / `0` for no rate limit; `None` when it is neither.
    pub fn parse(s: &str) -> Option<Option<Rate>> {
        let s = s.trim();
        if s == "off" || s == "0" || s == "0/s" {
            return Some(None);
        }
        let n: u32 = s.strip_suffix("/s")?.parse().ok()?;
        (1..=MAX_RATE)
            .contains(&n)
            .then_some(Some(Rate { per_second: n }))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_second)
    }
}

/// A rate and its burst as a token bucket: one token every `interval_us`, at most `burst`
/// held. Kept as GCRA does: a session may start while the theoretical arrival time is at
/// most `tolerance_us` ahead of now, and moves it one interval on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The rate.
    pub rate: Rate,
    /// Sessions a client may start at once, from a full bucket.
    pub burst: u32,
    /// Microseconds per token.
    pub interval_us: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1)` intervals.
    pub tolerance_us: u64,
}

impl Pace {
    /// `rate` with `burst` (`None`: the rate's N, one second's worth).
    pub fn new(rate: Rate, burst: Option<u32>) -> Pace {
        let burst = burst.unwrap_or(rate.per_second).max(1);
        let interval_us = 1_000_000 / u64::from(rate.per_second.max(1));
        Pace {
            rate,
            burst,
            interval_us,
            tolerance_us: interval_us * u64::from(burst - 1),
        }
    }
}

/// What a session is held to: at most `max_sessions` at once and its pace, counted per
/// client within `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Sessions at once per client; 0: no such limit (they are still counted).
    pub max_sessions: u32,
    /// New sessions per client over time; `None`: no such limit.
    pub pace: Option<Pace>,
    /// Whose counters: [`EVERY_ROUTE`] for the ENVOY_CLIENT_* limits, else one route's.
    pub scope: u64,
}

/// The scope of the ENVOY_CLIENT_* limits: the client's sessions on every route that sets
/// no limit of its own.
pub const EVERY_ROUTE: u64 = 0;

impl Limit {
    /// The limit, or `None` when neither the sessions nor the rate are limited.
    pub fn new(
        max_sessions: u32,
        rate: Option<Rate>,
        burst: Option<u32>,
        scope: u64,
    ) -> Option<Limit> {
        let pace = rate.map(|r| Pace::new(r, burst));
        (max_sessions > 0 || pace.is_some()).then_some(Limit {
            max_sessions,
            pace,
            scope,
        })
    }
}

/// The scope of a route's own limits, from its name: the same name keeps the same counters
/// across reloads. FNV-1a, never [`EVERY_ROUTE`].
pub fn scope_of(route: &str) -> u64 {
    let h = route.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    h.max(1)
}

/// How many leading bits of a client's address make its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    /// IPv4: 1..=32.
    pub v4: u8,
    /// IPv6: 1..=64 (a host owns a whole /64; the key is one 64-bit word).
    pub v6: u8,
}

/// The longest IPv6 prefix a key holds.
pub const MAX_PREFIX_V6: u8 = 64;

/// A client as the table counts it: its address block and the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The block's leading bits: an IPv4 block's 32-bit network, or an IPv6 block's upper
    /// 64 bits, the rest zero.
    pub key: u64,
    /// The family (bit 7: IPv6) and the prefix length (bits 0-6).
    pub meta: u8,
    /// See [`Limit::scope`].
    pub scope: u64,
}

const V6: u8 = 0x80;

impl Client {
    /// The client at `ip` (an IPv4-mapped IPv6 address is IPv4) counted in `scope`.
    pub fn of(ip: IpAddr, prefixes: Prefixes, scope: u64) -> Client {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let p = prefixes.v4.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                Client {
                    key: u64::from(u32::from(a) & mask),
                    meta: p,
                    scope,
                }
            }
            IpAddr::V6(a) => {
                let p = prefixes.v6.min(MAX_PREFIX_V6);
                let mask = u64::MAX.checked_shl(64 - u32::from(p)).unwrap_or(0);
                Client {
                    key: ((u128::from(a) >> 64) as u64) & mask,
                    meta: V6 | p,
                    scope,
                }
            }
        }
    }

    /// The address block the key stands for, e.g. `192.0.2.0/24` or `2001:db8:1:2::/64`.
    pub fn block(&self) -> Option<Cidr> {
        block(self.key, self.meta)
    }
}

/// The block a key and its meta byte stand for; `None` for a prefix no key has.
pub fn block(key: u64, meta: u8) -> Option<Cidr> {
    let addr = if meta & V6 != 0 {
        IpAddr::V6(Ipv6Addr::from(u128::from(key) << 64))
    } else {
        IpAddr::V4(Ipv4Addr::from(key as u32))
    };
    Cidr::new(addr, meta & !V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Prefixes = Prefixes { v4: 32, v6: 64 };

    #[test]
    fn rates_parse_as_written() {
        assert_eq!(Rate::parse("10/s"), Some(Some(Rate { per_second: 10 })));
        assert_eq!(Rate::parse(" off "), Some(None));
        assert_eq!(Rate::parse("0"), Some(None));
        for bad in ["10", "10/m", "-1/s", "1000001/s", "x/s", "", "/s"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
        assert_eq!(Rate { per_second: 7 }.to_string(), "7/s");
    }

    #[test]
    fn a_pace_is_a_bucket_of_burst_tokens_refilled_at_the_rate() {
        let p = Pace::new(Rate { per_second: 10 }, Some(10));
        assert_eq!((p.interval_us, p.tolerance_us), (100_000, 900_000));
        let auto = Pace::new(Rate { per_second: 4 }, None);
        assert_eq!((auto.burst, auto.tolerance_us), (4, 750_000));
        let one = Pace::new(Rate { per_second: 1 }, Some(1));
        assert_eq!(one.tolerance_us, 0);
        assert_eq!(Limit::new(0, None, Some(3), EVERY_ROUTE), None);
        assert!(Limit::new(1, None, None, 5).is_some());
    }

    #[test]
    fn keys_are_the_address_cut_to_the_prefix() {
        let k = |ip: &str, p| Client::of(ip.parse().unwrap(), p, EVERY_ROUTE);
        assert_eq!(
            k("192.0.2.7", P).block().unwrap().to_string(),
            "192.0.2.7/32"
        );
        let p24 = Prefixes { v4: 24, v6: 48 };
        assert_eq!(k("192.0.2.7", p24), k("192.0.2.200", p24));
        assert_eq!(
            k("192.0.2.7", p24).block().unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_ne!(k("192.0.2.7", p24), k("192.0.3.7", p24));
        // IPv6: one /64 is one client by default.
        assert_eq!(k("2001:db8:1:2::1", P), k("2001:db8:1:2:ffff::9", P));
        assert_ne!(k("2001:db8:1:2::1", P), k("2001:db8:1:3::1", P));
        assert_eq!(
            k("2001:db8:1:2::1", P).block().unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            k("2001:db8:1:2::1", p24).block().unwrap().to_string(),
            "2001:db8:1::/48"
        );
        // A mapped address is its IPv4 client; families never share a key.
        assert_eq!(k("::ffff:192.0.2.7", P), k("192.0.2.7", P));
        assert_ne!(k("0.0.0.1", P), k("::1", Prefixes { v4: 32, v6: 64 }));
        let mut scoped = k("192.0.2.7", P);
        scoped.scope = scope_of("api");
        assert_ne!(scoped, k("192.0.2.7", P));
        assert_ne!(scope_of(""), EVERY_ROUTE);
        assert_eq!(scope_of("api"), scope_of("api"));
    }
}
