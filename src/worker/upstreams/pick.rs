//! Which member of a route's pool a session tries next: the balancing (`first`,
//! `round-robin`, `least-sessions`, `client-hash`) over the members that are ready, healthy
//! and not ejected; when none is, every ready member in order anyway (ejection alone never
//! refuses a session); members the operator drained or put in maintenance never.
//!
//! A session's [`Cursor`] remembers the member and address it is on, the members it gave up
//! on and the one it holds (counted in `sessions now`). Never connects, never allocates.

use std::net::IpAddr;

use crate::config::pool::{mix, Balance, Pool};
use crate::worker::upstreams::{Admin, Failure, Member, Upstreams};

/// Where a session stands in its route's pool.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cursor {
    /// The member being tried (its index in the pool), if any.
    member: Option<u8>,
    /// Which of its addresses.
    addr: u16,
    /// Members given up on, a bit each.
    tried: u64,
    /// Where round-robin and least-sessions start looking (the pool's turn).
    start: u8,
    /// The table entry held (one of its `sessions`), to let go of.
    held: Option<usize>,
}

impl Cursor {
    /// The pool member and address index being tried, if any.
    #[inline]
    pub fn at(&self) -> Option<(usize, usize)> {
        self.member
            .map(|m| (usize::from(m), usize::from(self.addr)))
    }

    /// Moves on to the member's next address.
    #[inline]
    pub fn next_addr(&mut self) {
        self.addr = self.addr.saturating_add(1);
    }

    /// The table entry the session holds, if any.
    #[inline]
    pub fn held(&self) -> Option<usize> {
        self.held
    }

    /// Gives the member up and takes the next one `pool`'s balancing chooses for `client`;
    /// false when none is left.
    pub fn advance(
        &mut self,
        pool: &Pool,
        table: &mut Upstreams,
        client: IpAddr,
        now_ms: u64,
    ) -> bool {
        if let Some(m) = self.member.take() {
            self.tried |= 1u64 << (m & 63);
        }
        if let Some(slot) = self.held.take() {
            table.release(slot, 0, 0);
        }
        let n = pool.members.len();
        if n == 0 {
            return false;
        }
        if self.tried == 0 && matches!(pool.balance, Balance::RoundRobin | Balance::LeastSessions) {
            self.start = (pool.take_turn() as usize % n) as u8;
        }
        let Some(i) = choose(pool, table, self, client, now_ms) else {
            return false;
        };
        self.member = Some(i as u8);
        self.addr = 0;
        self.held = pool.slots.get(i).copied();
        if let Some(slot) = self.held {
            table.hold(slot);
        }
        true
    }

    /// The member tried failed to connect (`why`): counted against it, which may eject it.
    pub fn failed(&self, table: &mut Upstreams, why: Failure, now_ms: u64) {
        if let Some(slot) = self.held {
            table.failed(slot, why, now_ms);
        }
    }

    /// The member tried connected after `ms`.
    #[inline]
    pub fn connected(&self, table: &mut Upstreams, ms: u64) {
        if let Some(slot) = self.held {
            table.connected(slot, ms);
        }
    }

    /// The session is over, having moved these bytes: the member is let go of.
    pub fn close(&mut self, table: &mut Upstreams, bytes_up: u64, bytes_down: u64) {
        if let Some(slot) = self.held.take() {
            table.release(slot, bytes_up, bytes_down);
        }
    }
}

/// The member to try: the balancing's choice among the usable ones not tried yet, else the
/// first ready one not tried yet.
fn choose(
    pool: &Pool,
    table: &Upstreams,
    cur: &Cursor,
    client: IpAddr,
    now_ms: u64,
) -> Option<usize> {
    let n = pool.members.len();
    // A pool the table has not taken (never on a worker) counts as all usable.
    let member = |i: usize| -> Option<&Member> { pool.slots.get(i).and_then(|&s| table.get(s)) };
    let open = |i: usize| cur.tried & (1u64 << (i & 63)) == 0;
    let usable = |i: usize| open(i) && member(i).is_none_or(|m| m.usable(now_ms));
    let start = usize::from(cur.start);
    let rotated = (0..n).map(|k| (start + k) % n);
    let chosen = match pool.balance {
        Balance::First => (0..n).find(|&i| usable(i)),
        Balance::RoundRobin => rotated.clone().find(|&i| usable(i)),
        Balance::LeastSessions => rotated
            .clone()
            .filter(|&i| usable(i))
            .min_by_key(|&i| member(i).map_or(0, |m| m.sessions)),
        Balance::ClientHash => {
            let h = client_hash(client);
            (0..n)
                .filter(|&i| usable(i))
                .max_by_key(|&i| mix(pool.seeds.get(i).copied().unwrap_or(0) ^ h))
        }
    };
    chosen
        .or_else(|| (0..n).find(|&i| open(i) && member(i).is_none_or(|m| m.admin == Admin::Ready)))
}

/// The client's address as a hash input (rendezvous hashing mixes it with each member's).
fn client_hash(ip: IpAddr) -> u64 {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    mix((bits as u64) ^ mix((bits >> 64) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::upstream::Upstream;

    fn setup(n: usize, balance: Balance) -> (Pool, Upstreams) {
        let members = (1..=n)
            .map(|i| Upstream {
                name: format!("127.0.0.1:{i}"),
                addrs: vec![format!("127.0.0.1:{i}").parse().unwrap()],
            })
            .collect();
        let mut cfg = crate::config::Config::load(|k| {
            (k == "ENVOY_EJECT_AFTER").then(|| ("1".to_string(), crate::config::Source::Set))
        })
        .unwrap();
        cfg.default_route.pool = Pool::new(members, balance);
        let mut t = Upstreams::default();
        t.take(&mut cfg);
        (cfg.default_route.pool.clone(), t)
    }

    fn first_choice(pool: &Pool, t: &mut Upstreams, client: &str) -> usize {
        let mut c = Cursor::default();
        assert!(c.advance(pool, t, client.parse().unwrap(), 0));
        let (m, _) = c.at().unwrap();
        c.close(t, 0, 0);
        m
    }

    #[test]
    fn first_goes_in_order_and_skips_the_ejected_unless_all_are() {
        let (p, mut t) = setup(3, Balance::First);
        let slots = p.slots.clone();
        assert_eq!(first_choice(&p, &mut t, "10.0.0.1"), 0);
        t.failed(slots[0], Failure::Timeout, 0);
        assert_eq!(first_choice(&p, &mut t, "10.0.0.1"), 1, "ejected: skipped");
        t.failed(slots[1], Failure::Timeout, 0);
        t.failed(slots[2], Failure::Timeout, 0);
        assert_eq!(
            first_choice(&p, &mut t, "10.0.0.1"),
            0,
            "all ejected: in order"
        );
        t.set_admin("127.0.0.1:1", Admin::Maint);
        let mut c = Cursor::default();
        let ip = "10.0.0.1".parse().unwrap();
        assert!(c.advance(&p, &mut t, ip, 0) && c.at() == Some((1, 0)));
        assert!(c.advance(&p, &mut t, ip, 0) && c.at() == Some((2, 0)));
        assert!(!c.advance(&p, &mut t, ip, 0), "maint is never tried");
    }

    #[test]
    fn round_robin_turns_and_least_sessions_avoids_the_busy() {
        let (p, mut t) = setup(3, Balance::RoundRobin);
        let got: Vec<usize> = (0..6)
            .map(|_| first_choice(&p, &mut t, "10.0.0.1"))
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
        let (p, mut t) = setup(3, Balance::LeastSessions);
        t.hold(p.slots[0]);
        t.hold(p.slots[0]);
        t.hold(p.slots[1]);
        for _ in 0..3 {
            assert_eq!(first_choice(&p, &mut t, "10.0.0.1"), 2);
        }
    }

    #[test]
    fn client_hash_keeps_clients_and_moves_only_the_leaving_members() {
        let (p, mut t) = setup(4, Balance::ClientHash);
        let clients: Vec<String> = (0..400)
            .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
            .collect();
        let before: Vec<usize> = clients
            .iter()
            .map(|c| first_choice(&p, &mut t, c))
            .collect();
        let again: Vec<usize> = clients
            .iter()
            .map(|c| first_choice(&p, &mut t, c))
            .collect();
        assert_eq!(before, again);
        for m in 0..4 {
            assert!(
                before.iter().filter(|&&x| x == m).count() > 50,
                "spread: {m}"
            );
        }
        t.set_admin("127.0.0.1:3", Admin::Drain);
        for (c, b) in clients.iter().zip(&before) {
            let now = first_choice(&p, &mut t, c);
            if *b == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, *b, "{c} moved though its member stayed");
            }
        }
    }
}
