//! Trace rules: which sessions are traced (transitions and hex dumps logged at any level,
//! first bytes captured). A rule names a session id, a server-name pattern or a client CIDR.

use std::fmt;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::config::route::NamePattern;

/// What a trace rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceRule {
    /// One session by id.
    Session(u64),
    /// Sessions whose routed name matches.
    Name(String, NamePattern),
    /// Sessions whose client (PROXY source, else peer) is in the block.
    Client(Cidr),
}

impl TraceRule {
    /// True when a session with this id, name and client is selected.
    pub fn selects(&self, id: u64, name: &[u8], client: Option<IpAddr>) -> bool {
        match self {
            TraceRule::Session(s) => *s == id,
            TraceRule::Name(_, p) => !name.is_empty() && p.matches(name),
            TraceRule::Client(c) => client.is_some_and(|ip| c.contains(ip)),
        }
    }

    /// Parses a session id, a CIDR or a name pattern.
    pub fn parse(arg: &str) -> Option<TraceRule> {
        if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
            return arg.parse().ok().map(TraceRule::Session);
        }
        if let Ok(c) = arg.parse::<Cidr>() {
            return Some(TraceRule::Client(c));
        }
        NamePattern::parse(arg).map(|p| TraceRule::Name(arg.to_ascii_lowercase(), p))
    }
}

impl fmt::Display for TraceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceRule::Session(s) => write!(f, "session {s}"),
            TraceRule::Name(n, _) => write!(f, "name {n}"),
            TraceRule::Client(c) => write!(f, "client {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_rules_select() {
        let ip = Some("10.1.2.3".parse().unwrap());
        assert!(TraceRule::parse("5").unwrap().selects(5, b"", None));
        assert!(TraceRule::parse("*.example.com")
            .unwrap()
            .selects(1, b"a.example.com", None));
        assert!(!TraceRule::parse("*.example.com")
            .unwrap()
            .selects(1, b"example.org", ip));
        assert!(TraceRule::parse("10.0.0.0/8").unwrap().selects(1, b"", ip));
    }
}
