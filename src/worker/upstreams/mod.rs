//! What one worker knows of every upstream its configurations name, by `host:port` as
//! configured: the operator's state (`sluice ctl upstream ADDR ready|drain|maint`), the
//! active check's verdict, passive ejection (outlier detection) and the per-upstream
//! counters behind `show upstreams` and the `sluice_upstream_*` series.
//!
//! The table outlives configurations: a reload keeps every entry by name (states, ejections
//! and counters go on), and a pool reaches its entries through `Pool::slots`, filled when the
//! worker takes the configuration ([`Upstreams::take`]). Entries are never removed, so
//! labels stay bounded by what was configured. Never does I/O; choosing a member is
//! `pick`'s.

pub mod pick;

use std::collections::HashMap;

use crate::config::Config;
use crate::worker::stats::Histogram;

/// What the operator said of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// Takes new sessions (the default).
    Ready,
    /// No new sessions; running ones go on.
    Drain,
    /// As `Drain`, and no active checks.
    Maint,
}

impl Admin {
    /// Parses `ready`, `drain` or `maint`.
    pub fn parse(s: &str) -> Option<Admin> {
        match s {
            "ready" => Some(Admin::Ready),
            "drain" => Some(Admin::Drain),
            "maint" => Some(Admin::Maint),
            _ => None,
        }
    }

    /// As written in commands and `show upstreams`.
    pub fn as_str(self) -> &'static str {
        match self {
            Admin::Ready => "ready",
            Admin::Drain => "drain",
            Admin::Maint => "maint",
        }
    }
}

/// Why a connect to an upstream failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, reset or unreachable.
    Refused,
    /// No answer within the connect timeout.
    Timeout,
}

impl Failure {
    /// Every reason, in label order.
    pub const ALL: [Failure; 2] = [Failure::Refused, Failure::Timeout];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
        }
    }
}

/// One upstream as this worker sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// `host:port` as configured: the label and the name `ctl upstream` takes.
    pub name: String,
    /// The operator's state.
    pub admin: Admin,
    /// The active check's verdict: false once it said down (true while unchecked).
    pub check_up: bool,
    /// Connect failures in a row (a success clears them).
    fails_in_row: u32,
    /// Skipped until then (ms on the loop's clock); 0: not ejected.
    ejected_until_ms: u64,
    /// How long the next ejection lasts.
    next_ejection_ms: u64,
    /// Sessions holding this upstream now (connecting or connected).
    pub sessions: u64,
    /// Sessions that connected to it.
    pub sessions_total: u64,
    /// Failed connects, by [`Failure::ALL`].
    pub failures: [u64; 2],
    /// Connect latency of the connects that worked.
    pub connect: Histogram,
    /// Bytes client → upstream and upstream → client of its sessions, counted at close.
    pub bytes_up: u64,
    /// See `bytes_up`.
    pub bytes_down: u64,
    /// Times it was ejected.
    pub ejections: u64,
}

impl Member {
    /// A ready, unchecked upstream with nothing counted; a first ejection of
    /// `first_ejection_ms`.
    pub fn new(name: &str, first_ejection_ms: u64) -> Member {
        Member {
            name: name.to_string(),
            admin: Admin::Ready,
            check_up: true,
            fails_in_row: 0,
            ejected_until_ms: 0,
            next_ejection_ms: first_ejection_ms,
            sessions: 0,
            sessions_total: 0,
            failures: [0; 2],
            connect: Histogram::default(),
            bytes_up: 0,
            bytes_down: 0,
            ejections: 0,
        }
    }

    /// True while passive health keeps it out.
    #[inline]
    pub fn ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms
    }

    /// Ready, healthy and not ejected: a balancer's first choice.
    #[inline]
    pub fn usable(&self, now_ms: u64) -> bool {
        self.admin == Admin::Ready && self.check_up && !self.ejected(now_ms)
    }

    /// `up`, `down` (the active check) or `ejected`, as `show upstreams` says it.
    pub fn health(&self, now_ms: u64) -> &'static str {
        if !self.check_up {
            "down"
        } else if self.ejected(now_ms) {
            "ejected"
        } else {
            "up"
        }
    }
}

/// Every upstream this worker was configured with.
#[derive(Debug, Default)]
pub struct Upstreams {
    members: Vec<Member>,
    by_name: HashMap<String, usize>,
    /// ENVOY_EJECT_AFTER (0: never).
    eject_after: u32,
    /// ENVOY_EJECT_BACKOFF_MS, ENVOY_EJECT_BACKOFF_MAX_MS.
    backoff_ms: (u64, u64),
    /// The loop's clock at the last report (the `health` it shows).
    pub now_ms: u64,
}

impl Upstreams {
    /// Points every pool of `cfg` at its members' entries, adding the new names; takes the
    /// ejection settings. Called before the configuration serves (it is then shared).
    pub fn take(&mut self, cfg: &mut Config) {
        self.eject_after = cfg.eject_after;
        self.backoff_ms = (cfg.eject_backoff_ms, cfg.eject_backoff_max_ms.max(1));
        let first = self.backoff_ms.0;
        let routes = cfg
            .routes
            .iter_mut()
            .chain(std::iter::once(&mut cfg.default_route));
        for r in routes {
            let slots = r
                .pool
                .members
                .iter()
                .map(|u| match self.by_name.get(&u.name) {
                    Some(&i) => i,
                    None => {
                        self.members.push(Member::new(&u.name, first));
                        let i = self.members.len() - 1;
                        self.by_name.insert(u.name.clone(), i);
                        i
                    }
                })
                .collect();
            r.pool.slots = slots;
        }
    }

    /// Every entry, in the order first configured.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The entry at `slot`.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&Member> {
        self.members.get(slot)
    }

    /// Sets the operator's state of `name`; false when no configuration named it.
    pub fn set_admin(&mut self, name: &str, admin: Admin) -> bool {
        match self
            .by_name
            .get(name)
            .and_then(|&i| self.members.get_mut(i))
        {
            Some(m) => {
                m.admin = admin;
                true
            }
            None => false,
        }
    }

    /// Sets the active check's verdict on `name`; false when no configuration named it.
    pub fn set_check(&mut self, name: &str, up: bool) -> bool {
        match self
            .by_name
            .get(name)
            .and_then(|&i| self.members.get_mut(i))
        {
            Some(m) => {
                m.check_up = up;
                true
            }
            None => false,
        }
    }

    /// A session took the upstream at `slot`.
    #[inline]
    pub fn hold(&mut self, slot: usize) {
        if let Some(m) = self.members.get_mut(slot) {
            m.sessions += 1;
        }
    }

    /// A session let go of the upstream at `slot`, having moved these bytes through it.
    #[inline]
    pub fn release(&mut self, slot: usize, bytes_up: u64, bytes_down: u64) {
        if let Some(m) = self.members.get_mut(slot) {
            m.sessions = m.sessions.saturating_sub(1);
            m.bytes_up += bytes_up;
            m.bytes_down += bytes_down;
        }
    }

    /// A connect to `slot` worked after `ms`: counted, and the upstream readmitted.
    #[inline]
    pub fn connected(&mut self, slot: usize, ms: u64) {
        if let Some(m) = self.members.get_mut(slot) {
            m.sessions_total += 1;
            m.connect.observe(ms);
            if m.fails_in_row != 0 || m.ejected_until_ms != 0 {
                m.fails_in_row = 0;
                m.ejected_until_ms = 0;
                m.next_ejection_ms = self.backoff_ms.0;
            }
        }
    }

    /// A connect to `slot` failed at `now_ms`. The ENVOY_EJECT_AFTER-th failure in a row
    /// ejects it, and so does every later one once the ejection is over (it was tried and
    /// still fails): each time for twice as long, up to the cap. True when this ejected it.
    pub fn failed(&mut self, slot: usize, why: Failure, now_ms: u64) -> bool {
        let Some(m) = self.members.get_mut(slot) else {
            return false;
        };
        if let Some(f) = m.failures.get_mut(why as usize) {
            *f += 1;
        }
        m.fails_in_row = m.fails_in_row.saturating_add(1);
        if self.eject_after == 0 || m.fails_in_row < self.eject_after || m.ejected(now_ms) {
            return false;
        }
        m.ejected_until_ms = now_ms + m.next_ejection_ms;
        m.next_ejection_ms = (m.next_ejection_ms * 2).min(self.backoff_ms.1);
        m.ejections += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(eject_after: u32) -> Upstreams {
        let mut t = Upstreams {
            eject_after,
            backoff_ms: (1000, 3000),
            ..Upstreams::default()
        };
        t.members.push(Member::new("a:1", 1000));
        t.by_name.insert("a:1".into(), 0);
        t
    }

    #[test]
    fn failures_in_row_eject_with_a_doubling_backoff_and_a_success_readmits() {
        let mut t = table(3);
        assert!(!t.failed(0, Failure::Timeout, 0));
        assert!(!t.failed(0, Failure::Refused, 0));
        assert!(t.failed(0, Failure::Timeout, 10), "the third ejects");
        let m = &t.members[0];
        assert!(m.ejected(1009) && !m.ejected(1010));
        assert_eq!((m.ejections, m.failures), (1, [1, 2]));
        // tried again after the ejection, failing again: out again, for twice as long
        assert!(t.failed(0, Failure::Timeout, 1010));
        assert!(t.members[0].ejected(3009) && !t.members[0].ejected(3010));
        assert!(t.failed(0, Failure::Timeout, 3010));
        assert!(!t.members[0].ejected(6010), "capped at 3 s");
        t.connected(0, 2);
        let m = &t.members[0];
        assert!(m.usable(3011) && m.sessions_total == 1);
        assert!(
            !t.failed(0, Failure::Refused, 3011),
            "a success starts the count again"
        );
        assert!(!table(0).failed(0, Failure::Refused, 0), "0 never ejects");
    }

    #[test]
    fn states_and_sessions() {
        let mut t = table(3);
        assert!(t.set_admin("a:1", Admin::Drain) && !t.set_admin("b:1", Admin::Drain));
        assert!(!t.members[0].usable(0));
        assert!(t.set_check("a:1", false));
        assert_eq!(t.members[0].health(0), "down");
        t.hold(0);
        t.release(0, 5, 7);
        assert_eq!((t.members[0].sessions, t.members[0].bytes_up), (0, 5));
        assert_eq!(Admin::parse("maint"), Some(Admin::Maint));
    }
}
