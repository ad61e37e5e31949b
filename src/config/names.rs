//! Answers to name look-ups made elsewhere: [`Names`], the table a configuration load on an
//! event loop is given instead of the system resolver (the supervisor's resolver thread
//! fills it; the workers are handed it), its one-line form for the channel and the
//! environment, and [`Asked`], a resolver that only records the names a load needs.
//!
//! Never resolves anything itself: no I/O.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::upstream::Resolve;

/// Addresses by `host:port`, as a resolver gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(BTreeMap<String, Vec<SocketAddr>>);

impl Names {
    /// Sets the addresses of `host_port` (none: forgotten).
    pub fn set(&mut self, host_port: &str, addrs: Vec<SocketAddr>) {
        if addrs.is_empty() {
            self.0.remove(host_port);
        } else {
            self.0.insert(host_port.to_string(), addrs);
        }
    }

    /// The addresses known for `host_port`.
    pub fn get(&self, host_port: &str) -> Option<&[SocketAddr]> {
        self.0.get(host_port).map(Vec::as_slice)
    }

    /// Takes every entry of `other` (newer answers win).
    pub fn merge(&mut self, other: &Names) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One line: `host:port=addr,addr host:port=addr ...` (neither holds a blank or `=`).
    pub fn encode(&self) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                let addrs: Vec<String> = v.iter().map(SocketAddr::to_string).collect();
                format!("{k}={}", addrs.join(","))
            })
            .collect();
        entries.join(" ")
    }

    /// Reads [`Names::encode`]'s line.
    pub fn decode(line: &str) -> Result<Names, String> {
        let mut n = Names::default();
        for entry in line.split_whitespace() {
            let (k, v) = entry
                .split_once('=')
                .ok_or_else(|| format!("not NAME=ADDRS: {entry:?}"))?;
            let addrs = v
                .split(',')
                .map(|a| a.parse().map_err(|_| format!("not an address: {a:?}")))
                .collect::<Result<Vec<SocketAddr>, String>>()?;
            n.set(k, addrs);
        }
        Ok(n)
    }
}

impl Resolve for Names {
    fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String> {
        self.get(host_port)
            .map(<[SocketAddr]>::to_vec)
            .ok_or_else(|| "not resolved yet (names are resolved off the event loop)".into())
    }
}

/// The table first, else `fallback` (at start, before any loop runs).
pub struct Known<'a> {
    /// Answers given elsewhere.
    pub names: &'a Names,
    /// Asked for the others.
    pub fallback: &'a dyn Resolve,
}

impl Resolve for Known<'_> {
    fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String> {
        match self.names.get(host_port) {
            Some(a) => Ok(a.to_vec()),
            None => self.fallback.addrs(host_port),
        }
    }
}

/// Records every name a load asks for and answers each with the unspecified address on its
/// port: a load through it learns which names a configuration needs, never blocking.
#[derive(Default)]
pub struct Asked(RefCell<Vec<String>>);

impl Asked {
    /// The names asked, each once, in order.
    pub fn names(self) -> Vec<String> {
        self.0.into_inner()
    }
}

impl Resolve for Asked {
    fn addrs(&self, host_port: &str) -> Result<Vec<SocketAddr>, String> {
        let mut asked = self.0.borrow_mut();
        if !asked.iter().any(|n| n == host_port) {
            asked.push(host_port.to_string());
        }
        let port = host_port
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(0);
        Ok(vec![SocketAddr::from(([0, 0, 0, 0], port))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_goes_through_one_line_and_answers_only_what_it_knows() {
        let mut n = Names::default();
        n.set(
            "db.internal:5432",
            vec![
                "10.0.0.7:5432".parse().unwrap(),
                "[::1]:5432".parse().unwrap(),
            ],
        );
        n.set("syslog.internal:514", vec!["10.0.0.9:514".parse().unwrap()]);
        let line = n.encode();
        assert!(!line.contains('\n'));
        assert_eq!(Names::decode(&line), Ok(n.clone()));
        assert_eq!(n.addrs("db.internal:5432").unwrap().len(), 2);
        assert!(n.addrs("other:1").is_err());
        assert!(Names::decode("x:1=nope").is_err());
        let asked = Asked::default();
        assert_eq!(
            asked.addrs("a.test:443").unwrap(),
            vec!["0.0.0.0:443".parse().unwrap()]
        );
        asked.addrs("a.test:443").unwrap();
        asked.addrs("b.test:80").unwrap();
        assert_eq!(asked.names(), ["a.test:443", "b.test:80"]);
    }
}
