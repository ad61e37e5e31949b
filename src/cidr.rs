//! CIDR blocks (`10.0.0.0/8`, `fc00::/7`) and membership tests, for the trusted proxies
//! (`ENVOY_TRUSTED_PROXIES`) and the routes' `client=` condition. IPv4-mapped IPv6 addresses
//! (`::ffff:10.1.2.3`) match IPv4 blocks. Parsing and matching only: no I/O, no panic.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block `addr/prefix`; `None` for a prefix longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Comma-separated blocks (blanks around each allowed, empty parts skipped); `None` if
    /// one is not a block.
    pub fn parse_list(s: &str) -> Option<Vec<Cidr>> {
        s.split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| b.parse().ok())
            .collect()
    }

    /// True when the two blocks share an address (blocks are nested or disjoint, so one
    /// holds the other's address).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// True when `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = ();

    /// `addr/prefix`, or a bare address meaning a single host.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(a).map_err(|_| ())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| ())?
            }
            Some(_) => return Err(()),
        };
        if prefix > max {
            return Err(());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn membership() {
        assert!(c("10.0.0.0/8").contains("10.255.1.2".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("172.16.0.0/12").contains("172.31.255.255".parse().unwrap()));
        assert!(!c("172.16.0.0/12").contains("172.32.0.0".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(c("fc00::/7").contains("fd12::1".parse().unwrap()));
        assert!(!c("fc00::/7").contains("fe80::1".parse().unwrap()));
        assert!(c("127.0.0.0/8").contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c("::1/128").contains("127.0.0.1".parse().unwrap()));
        assert!(c("192.168.1.7").contains("192.168.1.7".parse().unwrap()));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for s in [
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }

    #[test]
    fn blocks_overlap_when_one_holds_the_other() {
        assert!(c("192.0.2.0/24").overlaps(&c("192.0.2.7")));
        assert!(c("192.0.2.7").overlaps(&c("192.0.2.0/24")));
        assert!(c("0.0.0.0/0").overlaps(&c("198.51.100.0/24")));
        assert!(!c("192.0.2.0/25").overlaps(&c("192.0.2.128/25")));
        assert!(!c("192.0.2.0/24").overlaps(&c("2001:db8::/32")));
        assert!(c("2001:db8:1:2::/64").overlaps(&c("2001:db8::/32")));
        assert_eq!(
            Cidr::parse_list(" 10.0.0.0/8, ,::1 "),
            Some(vec![c("10.0.0.0/8"), c("::1")])
        );
        assert_eq!(Cidr::parse_list("10.0.0.0/8,x"), None);
        assert_eq!(Cidr::new("10.0.0.0".parse().unwrap(), 33), None);
    }
}
