#![cfg(test)]
//! Per-client limits held across every worker of a machine, against the real binary on
//! loopback: clients are named by PROXY v1 headers sent from 127.0.0.1 (a trusted proxy by
//! default), each with its own source port so that `show sessions` tells them apart. The
//! upstream answers `+` at once and holds the connection until the client closes, so a
//! session is either established (`+`), refused with a TLS alert, or closed.
//!
//! Sessions at once and per second are exact over two workers; an allow-listed client is
//! never limited; one IPv6 /64 is one client; a full table admits unlimited, counts it and
//! makes room from idle entries; a worker killed with sessions open leaks no count; an
//! upgrade hands the table on; `show clients`, `forget` and `set` work live; a route with
//! limits of its own counts its sessions apart and refuses a plain-HTTP client with a close.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// The ClientHello of a real curl (SNI example.test).
fn hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// An upstream that says `+` at once, then holds the connection until the client's EOF.
fn holding_upstream() -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let _ = s.write_all(b"+");
                let mut buf = [0u8; 16384];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// What became of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The upstream's `+` came through.
    Established,
    /// A TLS alert with this description, then the close.
    Alert(u8),
    /// Closed without a byte.
    Closed,
}

static PORT: AtomicU16 = AtomicU16::new(20000);

/// A client from `src` (an IPv4 or IPv6 address) sending `first` after its PROXY v1
/// header; its source port in the header is unique in this test process.
fn open(sluice: SocketAddr, src: &str, first: &[u8]) -> TcpStream {
    let port = PORT.fetch_add(1, Ordering::Relaxed);
    let header = if src.contains(':') {
        format!("PROXY TCP6 {src} ::1 {port} 443\r\n")
    } else {
        format!("PROXY TCP4 {src} 127.0.0.1 {port} 443\r\n")
    };
    let mut c = TcpStream::connect(sluice).expect("connect to sluice");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(header.as_bytes()).unwrap();
    c.write_all(first).unwrap();
    c
}

fn outcome(c: &mut TcpStream) -> Outcome {
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(1) if b[0] == b'+' => Outcome::Established,
        Ok(1) if b[0] == 0x15 => {
            let rest = read_exact(c, 6);
            assert_eq!(rest[..4], [0x03, 0x03, 0x00, 0x02], "an alert record");
            assert!(
                closed_within(c, Duration::from_secs(5)),
                "a close after the alert"
            );
            Outcome::Alert(rest[5])
        }
        Ok(0) | Err(_) => Outcome::Closed,
        Ok(_) => panic!("unexpected byte {:#x}", b[0]),
    }
}

/// `sluice ctl ARGS...`: (exit status 0, stdout).
/// Asserts that of sessions opened at once exactly `admitted` were established and every
/// other one ended as `refused`. Which one a worker takes first is the scheduler's choice, not
/// the order of the connects, so only the counts are certain.
fn assert_admits(conns: &mut [TcpStream], admitted: usize, refused: Outcome) {
    let mut outcomes: Vec<Outcome> = conns.iter_mut().map(outcome).collect();
    outcomes.sort_by_key(|o| *o != Outcome::Established);
    let mut want = vec![Outcome::Established; admitted];
    want.resize(conns.len(), refused);
    assert_eq!(outcomes, want);
}

/// `sluice run` with two workers, a control socket and a metrics address.
fn start(dir: &TempDir, bin: Option<&Path>, extra: &[(&str, &str)]) -> (Sluice, PathBuf) {
    let sock = dir.path("ctl.sock");
    let up = holding_upstream().to_string();
    let mut env = vec![
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ("ENVOY_WORKERS", "2"),
    ];
    env.extend_from_slice(extra);
    let mut s = match bin {
        Some(b) => Sluice::start_bin(b, &env),
        None => Sluice::start(&env),
    };
    s.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    (s, sock)
}

/// The sessions `show clients` counts for `block` (0 when it is not listed by sessions).
fn counted(sock: &Path, block: &str) -> u64 {
    let (ok, out) = ctl(sock, &["show", "clients"]);
    assert!(ok, "{out}");
    let by_sessions = out.split("by rate:").next().unwrap_or("");
    by_sessions
        .lines()
        .find(|l| l.starts_with(&format!("{block} ")))
        .map_or(0, |l| {
            l.split_whitespace().nth_back(1).unwrap().parse().unwrap()
        })
}

/// Waits until `show clients` counts `n` sessions for `block`.
fn wait_counted(sock: &Path, block: &str, n: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counted(sock, block);
        if now == n {
            return;
        }
        assert!(
            Instant::now() < until,
            "{block}: {now} sessions counted, not {n}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn close(mut c: TcpStream) {
    let _ = c.shutdown(Shutdown::Write);
    let _ = closed_within(&mut c, Duration::from_secs(5));
}

const ACCESS_DENIED: u8 = 49;

#[test]
fn sessions_at_once_per_client_are_exact_across_two_workers() {
    let dir = TempDir::new("limits-sessions");
    let (mut sluice, sock) = start(&dir, None, &[("ENVOY_CLIENT_MAX_SESSIONS", "5")]);
    let mut tries: Vec<TcpStream> = (0..20)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    let mut other = open(sluice.addr, "198.51.100.1", &hello());
    let outcomes: Vec<Outcome> = tries.iter_mut().map(outcome).collect();
    let established = outcomes
        .iter()
        .filter(|o| **o == Outcome::Established)
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == Outcome::Alert(ACCESS_DENIED))
        .count();
    assert_eq!((established, refused), (5, 15), "{outcomes:?}");
    assert_eq!(
        outcome(&mut other),
        Outcome::Established,
        "another client is not limited"
    );
    sluice.wait_for_count("reason=client_limit", 15, Duration::from_secs(10));
    assert_eq!(
        sluice.metric("sluice_closed_total{reason=\"client_limit\"}"),
        15
    );
    // Both workers took some of the twenty: the limit held across them.
    let workers_refusing: std::collections::BTreeSet<String> = sluice
        .log()
        .lines()
        .filter(|l| l.contains("reason=client_limit") && l.contains(" close "))
        .filter_map(|l| Some(fields(l).get("sid")?.parse::<u64>().ok()? % 2))
        .map(|w| w.to_string())
        .collect();
    assert_eq!(workers_refusing.len(), 2, "refusals on both workers");
    // One line for the client, not one per refusal.
    let lines: Vec<String> = sluice
        .log()
        .lines()
        .filter(|l| l.contains("client limited"))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = fields(&lines[0]);
    assert_eq!(
        (
            f["key"].as_str(),
            f["limit"].as_str(),
            f["reason"].as_str(),
            f["refused"].as_str()
        ),
        ("192.0.2.1/32", "5", "client_limit", "1")
    );
    assert_eq!(counted(&sock, "192.0.2.1/32"), 5);
    // The five close: five more get in, and no sixth.
    let (held, _): (Vec<_>, Vec<_>) = tries
        .into_iter()
        .zip(outcomes)
        .partition(|(_, o)| *o == Outcome::Established);
    for (c, _) in held {
        close(c);
    }
    wait_counted(&sock, "192.0.2.1/32", 0);
    let mut again: Vec<TcpStream> = (0..6)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    assert_admits(&mut again, 5, Outcome::Alert(ACCESS_DENIED));
}

#[test]
fn new_sessions_per_second_follow_the_rate_and_burst() {
    let dir = TempDir::new("limits-rate");
    let (mut sluice, _sock) = start(
        &dir,
        None,
        &[("ENVOY_CLIENT_RATE", "10/s"), ("ENVOY_CLIENT_BURST", "10")],
    );
    let (mut accepted, mut refused) = (0u64, 0u64);
    let first = Instant::now();
    let mut last = first;
    while first.elapsed() < Duration::from_secs(3) {
        last = Instant::now();
        let mut c = open(sluice.addr, "192.0.2.7", &hello());
        match outcome(&mut c) {
            Outcome::Established => accepted += 1,
            Outcome::Alert(ACCESS_DENIED) => refused += 1,
            other => panic!("{other:?}"),
        }
        close(c);
        thread::sleep(Duration::from_millis(20));
    }
    // A full bucket of 10, then one every 100 ms between the first try and the last.
    let expected = 10.0 + 10.0 * last.duration_since(first).as_secs_f64();
    assert!(
        (accepted as f64 - expected).abs() <= 1.5,
        "{accepted} accepted, {expected:.1} expected ({refused} refused)"
    );
    assert!(refused > 30, "{refused}");
    sluice.wait_for_log("reason=client_rate", Duration::from_secs(5));
    let line = sluice.wait_for_log("client limited", Duration::from_secs(5));
    assert!(
        line.contains("rate=10/s burst=10 reason=client_rate"),
        "{line}"
    );
}

#[test]
fn an_allow_listed_client_is_never_limited() {
    let dir = TempDir::new("limits-allow");
    let (_sluice, sock) = start(
        &dir,
        None,
        &[
            ("ENVOY_CLIENT_MAX_SESSIONS", "1"),
            ("ENVOY_CLIENT_RATE", "1/s"),
            ("ENVOY_CLIENT_ALLOW", "192.0.2.9/32, 10.0.0.0/8"),
        ],
    );
    let mut monitor: Vec<TcpStream> = (0..10)
        .map(|_| open(_sluice.addr, "192.0.2.9", &hello()))
        .collect();
    for c in monitor.iter_mut() {
        assert_eq!(outcome(c), Outcome::Established);
    }
    // One after another, as in the /64 test below: sessions of a new client opened at once
    // on two workers can race into the fail-open path (the defect in the 2026-12-02 note).
    let mut a = open(_sluice.addr, "192.0.2.10", &hello());
    assert_eq!(outcome(&mut a), Outcome::Established);
    let mut b = open(_sluice.addr, "192.0.2.10", &hello());
    assert_eq!(
        outcome(&mut b),
        Outcome::Alert(ACCESS_DENIED),
        "the limit is on for others"
    );
    assert_eq!(counted(&sock, "192.0.2.9/32"), 0, "not even counted");
}

#[test]
fn ipv6_clients_in_one_slash_64_share_a_limit() {
    let dir = TempDir::new("limits-v6");
    let (mut sluice, sock) = start(&dir, None, &[("ENVOY_CLIENT_MAX_SESSIONS", "2")]);
    // One after another: this test is about the /64 key. The first sessions of a new client
    // opened at once on two workers can race into the fail-open path (a worker that finds
    // the other's claim of the entry unfinished after its bounded spin admits without a
    // limit: seen 2 times in 25 runs on a loaded machine, a defect left open in the stop note
    // of 2026-12-02).
    let mut same = Vec::new();
    let mut outcomes = Vec::new();
    for src in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
        let mut c = open(sluice.addr, src, &hello());
        outcomes.push(outcome(&mut c));
        same.push(c); // held open: the sessions count until they close
    }
    assert_eq!(
        outcomes,
        [
            Outcome::Established,
            Outcome::Established,
            Outcome::Alert(ACCESS_DENIED)
        ]
    );
    let mut next_door = open(sluice.addr, "2001:db8:1:3::1", &hello());
    assert_eq!(outcome(&mut next_door), Outcome::Established);
    assert_eq!(counted(&sock, "2001:db8:1:2::/64"), 2);
    let line = sluice.wait_for_log("client limited", Duration::from_secs(5));
    assert_eq!(fields(&line)["key"], "2001:db8:1:2::/64");
}

#[test]
fn a_full_table_admits_unlimited_counts_it_and_makes_room_from_idle_entries() {
    let dir = TempDir::new("limits-full");
    let (mut sluice, sock) = start(
        &dir,
        None,
        &[
            ("ENVOY_CLIENT_MAX_SESSIONS", "1"),
            ("ENVOY_CLIENT_TABLE_SIZE", "16"),
        ],
    );
    // Sixteen clients, one session each: every entry of the table is busy.
    let mut busy: Vec<TcpStream> = (1..=16)
        .map(|n| open(sluice.addr, &format!("203.0.113.{n}"), &hello()))
        .collect();
    for c in busy.iter_mut() {
        assert_eq!(outcome(c), Outcome::Established);
    }
    // No room for a seventeenth: its sessions pass without a limit, counted and logged.
    let mut in_full: Vec<TcpStream> = (0..2)
        .map(|_| open(sluice.addr, "203.0.113.100", &hello()))
        .collect();
    for c in in_full.iter_mut() {
        assert_eq!(outcome(c), Outcome::Established, "fail open");
    }
    assert_eq!(sluice.metric("sluice_client_table_full_total"), 2);
    assert_eq!(sluice.metric("sluice_client_table_entries"), 16);
    let line = sluice.wait_for_log("client table full", Duration::from_secs(5));
    assert_eq!(fields(&line)["table_size"], "16");
    // One client leaves: its idle entry makes room, and the newcomer is held to the limit.
    close(busy.remove(0));
    wait_counted(&sock, "203.0.113.1/32", 0);
    let mut fresh: Vec<TcpStream> = (0..2)
        .map(|_| open(sluice.addr, "203.0.113.101", &hello()))
        .collect();
    assert_admits(&mut fresh, 1, Outcome::Alert(ACCESS_DENIED));
    assert_eq!(sluice.metric("sluice_client_table_full_total"), 2);
}

/// `show sessions` rows: (session id, client address as the PROXY header named it).
fn session_ids(sock: &Path) -> Vec<(u64, String)> {
    let (ok, out) = ctl(sock, &["show", "sessions"]);
    assert!(ok, "{out}");
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.first()?.parse().ok()?, w.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn a_worker_killed_with_sessions_open_leaks_no_count() {
    let dir = TempDir::new("limits-kill");
    let (mut sluice, sock) = start(&dir, None, &[("ENVOY_CLIENT_MAX_SESSIONS", "10")]);
    // Sessions until both workers hold some (worker i of 2 gives ids i + 1 + 2k).
    let mut held: Vec<(TcpStream, String)> = Vec::new();
    for _ in 0..10 {
        let port = PORT.load(Ordering::Relaxed);
        let mut c = open(sluice.addr, "192.0.2.1", &hello());
        assert_eq!(outcome(&mut c), Outcome::Established);
        held.push((c, format!("192.0.2.1:{port}")));
        let ids = session_ids(&sock);
        if ids.iter().any(|(id, _)| id % 2 == 0)
            && ids.iter().any(|(id, _)| id % 2 == 1)
            && held.len() >= 4
        {
            break;
        }
    }
    let ids = session_ids(&sock);
    let on_worker = |w: u64| ids.iter().filter(|(id, _)| (id + 1) % 2 == w).count();
    let victim = if on_worker(0) >= on_worker(1) { 0 } else { 1 };
    assert!(
        on_worker(victim) > 0 && on_worker(1 - victim) > 0,
        "{ids:?}"
    );
    let pid: u32 = sluice
        .log()
        .lines()
        .filter(|l| l.contains(&format!("worker started worker={victim} pid=")))
        .filter_map(|l| l.rsplit("pid=").next()?.parse().ok())
        .next_back()
        .unwrap();
    let killed: Vec<String> = ids
        .iter()
        .filter(|(id, _)| (id + 1) % 2 == victim)
        .map(|(_, a)| a.clone())
        .collect();
    signal(pid, "KILL");
    sluice.wait_for_log("worker died, respawning", Duration::from_secs(10));
    sluice.wait_for_count("listening addr=", 3, Duration::from_secs(10));
    // What the dead worker held is given back; the survivors' sessions stay counted.
    let survivors: Vec<TcpStream> = held
        .into_iter()
        .filter(|(_, a)| !killed.contains(a))
        .map(|(c, _)| c)
        .collect();
    wait_counted(&sock, "192.0.2.1/32", survivors.len() as u64);
    for c in survivors {
        close(c);
    }
    wait_counted(&sock, "192.0.2.1/32", 0);
    // Back to zero, exactly: ten at once again, not one more.
    let mut again: Vec<TcpStream> = (0..11)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    assert_admits(&mut again, 10, Outcome::Alert(ACCESS_DENIED));
}

#[test]
fn an_upgrade_hands_the_table_on() {
    let dir = TempDir::new("limits-upgrade");
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let (mut sluice, sock) = start(
        &dir,
        Some(&bin),
        &[
            ("ENVOY_CLIENT_MAX_SESSIONS", "3"),
            ("ENVOY_DRAIN_TIMEOUT_MS", "60000"),
        ],
    );
    sluice.may_exit = true;
    let _stop = sluice.stop_all_generations();
    // One after another (the fail-open race of concurrent first sessions, 2026-12-02 note).
    let mut old: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        let mut c = open(sluice.addr, "192.0.2.1", &hello());
        assert_eq!(outcome(&mut c), Outcome::Established);
        old.push(c);
    }
    let (ok, out) = ctl(&sock, &["upgrade"]);
    assert!(ok, "{out}");
    sluice.wait_for_log(
        "every worker is ready, told the old supervisor",
        Duration::from_secs(20),
    );
    sluice.wait_for_log(
        "client table kept from the predecessor",
        Duration::from_secs(5),
    );
    // The new generation sees the old one's three sessions: a fourth is refused.
    thread::sleep(Duration::from_millis(300));
    let mut fourth = open(sluice.addr, "192.0.2.1", &hello());
    assert_eq!(outcome(&mut fourth), Outcome::Alert(ACCESS_DENIED));
    assert_eq!(counted(&sock, "192.0.2.1/32"), 3);
    // One old session ends on the old generation: the new one admits one more.
    close(old.remove(0));
    wait_counted(&sock, "192.0.2.1/32", 2);
    let mut more: Vec<TcpStream> = (0..2)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    assert_admits(&mut more, 1, Outcome::Alert(ACCESS_DENIED));
}

#[test]
fn limits_change_live_and_forget_resets_rates_but_not_running_counts() {
    let dir = TempDir::new("limits-live");
    let (mut sluice, sock) = start(&dir, None, &[]);
    // Off at start: anything goes.
    let mut free: Vec<TcpStream> = (0..3)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    for c in free.iter_mut() {
        assert_eq!(outcome(c), Outcome::Established);
    }
    for c in free {
        close(c);
    }
    let (ok, out) = ctl(&sock, &["set", "ENVOY_CLIENT_MAX_SESSIONS", "2"]);
    assert!(ok, "{out}");
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    let outcomes: Vec<Outcome> = held.iter_mut().map(outcome).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Established)
            .count(),
        2,
        "{outcomes:?}"
    );
    let (ok, out) = ctl(&sock, &["show", "clients"]);
    assert!(ok, "{out}");
    assert!(out.contains("\n192.0.2.1/32 all 2 "), "{out}");
    // Forgetting the client keeps its running sessions counted: still at its limit.
    let (ok, out) = ctl(&sock, &["forget", "192.0.2.0/24"]);
    assert!(ok, "{out}");
    assert!(out.contains("2 running session(s) still counted"), "{out}");
    let mut third = open(sluice.addr, "192.0.2.1", &hello());
    assert_eq!(outcome(&mut third), Outcome::Alert(ACCESS_DENIED));
    for c in held {
        close(c);
    }
    wait_counted(&sock, "192.0.2.1/32", 0);
    // A rate: one, then refused; forgotten, the bucket is full again.
    for (k, v) in [
        ("ENVOY_CLIENT_MAX_SESSIONS", "0"),
        ("ENVOY_CLIENT_RATE", "1/s"),
        ("ENVOY_CLIENT_BURST", "1"),
        ("ENVOY_CLIENT_ALERT", "none"),
    ] {
        let (ok, out) = ctl(&sock, &["set", k, v]);
        assert!(ok, "{out}");
    }
    let mut tries = Vec::new();
    for expect in [Outcome::Established, Outcome::Closed] {
        let mut c = open(sluice.addr, "198.51.100.4", &hello());
        assert_eq!(outcome(&mut c), expect, "no alert: ENVOY_CLIENT_ALERT=none");
        tries.push(c);
    }
    let (ok, out) = ctl(&sock, &["forget", "198.51.100.4"]);
    assert!(
        ok && out.starts_with("ok: forgot 1 client entry in 198.51.100.4/32"),
        "{out}"
    );
    let mut c = open(sluice.addr, "198.51.100.4", &hello());
    assert_eq!(outcome(&mut c), Outcome::Established);
    sluice.wait_for_log("reason=client_rate", Duration::from_secs(5));
    // The table's size is memory every worker shares: not changed live.
    let (ok, out) = ctl(&sock, &["set", "ENVOY_CLIENT_TABLE_SIZE", "1024"]);
    assert!(!ok && out.contains("takes an upgrade"), "{out}");
}

#[test]
fn a_route_with_limits_of_its_own_counts_apart_and_closes_plain_http() {
    let dir = TempDir::new("limits-route");
    let (mut sluice, sock) = start(
        &dir,
        None,
        &[
            ("ENVOY_CLIENT_MAX_SESSIONS", "3"),
            (
                "ENVOY_ROUTES",
                "sni=limited.test allow client_max_sessions=1",
            ),
        ],
    );
    let get = b"GET / HTTP/1.1\r\nHost: limited.test\r\n\r\n";
    let mut plain: Vec<TcpStream> = (0..2)
        .map(|_| open(sluice.addr, "192.0.2.1", get))
        .collect();
    // No TLS: a close, no alert.
    assert_admits(&mut plain, 1, Outcome::Closed);
    // The client's session on that route does not count against the other routes'.
    let mut tls: Vec<TcpStream> = (0..4)
        .map(|_| open(sluice.addr, "192.0.2.1", &hello()))
        .collect();
    let outcomes: Vec<Outcome> = tls.iter_mut().map(outcome).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Established)
            .count(),
        3,
        "{outcomes:?}"
    );
    let (ok, out) = ctl(&sock, &["show", "clients"]);
    assert!(ok, "{out}");
    assert!(out.contains("\n192.0.2.1/32 all 3 "), "{out}");
    assert!(out.contains("\n192.0.2.1/32 route1 1 "), "{out}");
    sluice.wait_for_count("reason=client_limit", 2, Duration::from_secs(5));
}
