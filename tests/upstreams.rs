#![cfg(test)]
//! Upstream pools against real sockets on loopback: balancing (round-robin spread,
//! least-sessions, client-hash stickiness), passive ejection of a black hole and of a
//! refusing upstream and its readmission, `ctl upstream ... drain|maint` under load,
//! `show upstreams` and the per-upstream series against what the upstreams counted, and
//! configuration errors.
//!
//! A black hole is a listener whose accept queue is full (backlog 0, one connection never
//! accepted): the kernel drops further SYNs, so a connect hangs until its timeout.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

fn hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// An upstream that answers every connection with its tag byte, then echoes until EOF;
/// counts the connections it accepted.
struct Tagged {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn tagged_on(l: TcpListener, tag: u8) -> Tagged {
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = c.write_all(&[tag]);
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(buf.get(..n).unwrap_or(&[])).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Tagged { addr, accepted }
}

fn tagged(tag: u8) -> Tagged {
    let (l, _) = listener();
    tagged_on(l, tag)
}

/// A black hole on loopback: its address, and what keeps its queue full.
fn black_hole() -> (SocketAddr, socket2::Socket, TcpStream) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(addr).unwrap();
    (addr, s, filler)
}

/// A session from `client` (an IPv4 address sent in a PROXY v1 header): the stream and the
/// tag of the upstream it reached.
fn session_from(addr: SocketAddr, client: &str) -> (TcpStream, u8) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = format!("PROXY TCP4 {client} 127.0.0.1 40000 443\r\n").into_bytes();
    first.extend_from_slice(&hello());
    c.write_all(&first).unwrap();
    let mut tag = [0u8; 1];
    c.read_exact(&mut tag)
        .unwrap_or_else(|e| panic!("no upstream answered a session from {client}: {e}"));
    (c, tag[0])
}

fn session(addr: SocketAddr) -> (TcpStream, u8) {
    session_from(addr, "10.0.0.1")
}

/// `show upstreams` as rows by upstream: (state, health, sessions, total, failures,
/// ejections).
fn show_upstreams(sock: &Path) -> HashMap<String, Vec<String>> {
    ctl_ok(sock, &["show", "upstreams"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            Some((w.first()?.clone(), w.get(1..)?.to_vec()))
        })
        .collect()
}

fn start(dir: &TempDir, env: &[(&str, &str)]) -> (Sluice, std::path::PathBuf) {
    let sock = dir.path("ctl.sock");
    let mut all = vec![
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
    ];
    all.extend_from_slice(env);
    (Sluice::start(&all), sock)
}

#[test]
fn round_robin_spreads_a_thousand_sessions_within_ten_percent() {
    let ups = [tagged(b'a'), tagged(b'b'), tagged(b'c')];
    let list = ups
        .iter()
        .map(|u| u.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let dir = TempDir::new("rr");
    let (mut s, sock) = start(
        &dir,
        &[("ENVOY_UPSTREAM", &list), ("ENVOY_BALANCE", "round-robin")],
    );
    let mut by_tag: HashMap<u8, usize> = HashMap::new();
    for _ in 0..1000 {
        let (_c, tag) = session(s.addr);
        *by_tag.entry(tag).or_default() += 1;
    }
    for t in [b'a', b'b', b'c'] {
        let n = by_tag.get(&t).copied().unwrap_or(0);
        assert!(
            (300..=367).contains(&n),
            "{}: {n} of 1000 ({by_tag:?})",
            t as char
        );
    }
    // what the upstreams counted is what sluice says, in the table and on /metrics
    thread::sleep(Duration::from_millis(100));
    let rows = show_upstreams(&sock);
    let body = s.scrape();
    for u in &ups {
        let name = u.addr.to_string();
        let accepted = u.accepted.load(Ordering::SeqCst) as u64;
        assert_eq!(rows[&name][3], accepted.to_string(), "{name}: {rows:?}");
        assert_eq!(
            metric_value(
                &body,
                &format!("sluice_upstream_sessions_total{{upstream=\"{name}\"}}")
            ),
            accepted
        );
        assert_eq!(
            metric_value(&body, &format!("sluice_upstream_up{{upstream=\"{name}\"}}")),
            1
        );
    }
}

#[test]
fn least_sessions_sends_new_sessions_away_from_the_busy_upstream() {
    let (a, b) = (tagged(b'a'), tagged(b'b'));
    let list = format!("{},{}", a.addr, b.addr);
    let dir = TempDir::new("least");
    let (s, _sock) = start(
        &dir,
        &[
            ("ENVOY_UPSTREAM", &list),
            ("ENVOY_BALANCE", "least-sessions"),
        ],
    );
    let mut held: Vec<(TcpStream, u8)> = (0..6).map(|_| session(s.addr)).collect();
    assert_eq!(
        held.iter().filter(|(_, t)| *t == b'a').count(),
        3,
        "an even start"
    );
    // b's sessions end; a keeps its long-lived three
    held.retain(|(_, t)| *t == b'a');
    thread::sleep(Duration::from_millis(200));
    for i in 0..3 {
        let (c, tag) = session(s.addr);
        assert_eq!(tag, b'b', "new session {i} went to the busy upstream");
        held.push((c, tag));
    }
}

#[test]
fn client_hash_keeps_clients_and_moves_only_the_removed_upstreams_clients() {
    let ups = [tagged(b'a'), tagged(b'b'), tagged(b'c')];
    let list = ups
        .iter()
        .map(|u| u.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let dir = TempDir::new("hash");
    let (s, sock) = start(
        &dir,
        &[("ENVOY_UPSTREAM", &list), ("ENVOY_BALANCE", "client-hash")],
    );
    let clients: Vec<String> = (1..=90)
        .map(|i| format!("10.2.{}.{}", i / 50, i % 50 + 1))
        .collect();
    let first: Vec<u8> = clients.iter().map(|c| session_from(s.addr, c).1).collect();
    let again: Vec<u8> = clients.iter().map(|c| session_from(s.addr, c).1).collect();
    assert_eq!(first, again, "a client stays on its upstream");
    for t in [b'a', b'b', b'c'] {
        assert!(
            first.iter().filter(|&&x| x == t).count() >= 10,
            "spread: {first:?}"
        );
    }
    // c leaves the pool (a reload without it): only c's clients move
    let two = format!("{},{}", ups[0].addr, ups[1].addr);
    ctl_ok(&sock, &["set", "ENVOY_UPSTREAM", &two]);
    for (c, before) in clients.iter().zip(&first) {
        let now = session_from(s.addr, c).1;
        if *before == b'c' {
            assert_ne!(now, b'c', "{c}");
        } else {
            assert_eq!(now, *before, "{c} moved though its upstream stayed");
        }
    }
}

#[test]
fn a_black_hole_is_ejected_after_three_timeouts_then_sessions_go_straight_to_the_good_one() {
    let (hole, _listener, _filler) = black_hole();
    let good = tagged(b'g');
    let dir = TempDir::new("eject");
    let routes = format!("allow upstream={hole},{} connect_timeout_ms=300", good.addr);
    let (mut s, sock) = start(&dir, &[("ENVOY_ROUTES", &routes)]);
    for _ in 0..10 {
        assert_eq!(session(s.addr).1, b'g');
    }
    let body = s.scrape();
    let h = hole.to_string();
    assert_eq!(
        metric_value(
            &body,
            &format!(
                "sluice_upstream_connect_failures_total{{upstream=\"{h}\",reason=\"timeout\"}}"
            )
        ),
        3,
        "only the first three sessions waited on the black hole"
    );
    assert_eq!(
        metric_value(
            &body,
            &format!("sluice_upstream_ejections_total{{upstream=\"{h}\"}}")
        ),
        1
    );
    assert_eq!(
        metric_value(&body, &format!("sluice_upstream_up{{upstream=\"{h}\"}}")),
        0
    );
    assert_eq!(
        metric_value(
            &body,
            &format!(
                "sluice_upstream_sessions_total{{upstream=\"{}\"}}",
                good.addr
            )
        ),
        10
    );
    let rows = show_upstreams(&sock);
    assert_eq!(
        rows[&h][..2],
        ["ready".to_string(), "ejected".to_string()],
        "{rows:?}"
    );
}

#[test]
fn a_refusing_upstream_is_ejected_and_readmitted_once_it_answers_again() {
    let port = free_port();
    let good = tagged(b'g');
    let dir = TempDir::new("readmit");
    let list = format!("127.0.0.1:{port},{}", good.addr);
    let (mut s, _sock) = start(
        &dir,
        &[("ENVOY_UPSTREAM", &list), ("ENVOY_EJECT_BACKOFF_MS", "200")],
    );
    for _ in 0..5 {
        assert_eq!(session(s.addr).1, b'g');
    }
    let name = format!("127.0.0.1:{port}");
    assert_eq!(
        s.metric(&format!(
            "sluice_upstream_ejections_total{{upstream=\"{name}\"}}"
        )),
        1
    );
    // it comes back: after the back-off a session tries it, succeeds, and it is first again
    let back = tagged_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), b'r');
    let deadline = Instant::now() + Duration::from_secs(10);
    while session(s.addr).1 != b'r' {
        assert!(Instant::now() < deadline, "never readmitted");
        thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        assert_eq!(session(s.addr).1, b'r', "readmitted: first again");
    }
    assert!(back.accepted.load(Ordering::SeqCst) >= 6);
}

#[test]
fn drain_and_maint_under_load_fail_no_session_and_survive_a_reload() {
    let (a, b) = (tagged(b'a'), tagged(b'b'));
    let list = format!("{},{}", a.addr, b.addr);
    let dir = TempDir::new("maint");
    let (s, sock) = start(
        &dir,
        &[("ENVOY_UPSTREAM", &list), ("ENVOY_BALANCE", "round-robin")],
    );
    // a long-lived session on a, to see that drain lets it go on
    let (mut long, tag) = loop {
        let (c, t) = session(s.addr);
        if t == b'a' {
            break (c, t);
        }
    };
    assert_eq!(tag, b'a');
    let addr = s.addr;
    let stop = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((0usize, 0usize, Vec::<u8>::new())));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
            thread::spawn(move || {
                while stop.load(Ordering::SeqCst) == 0 {
                    let ok = (|| -> std::io::Result<u8> {
                        let mut c = TcpStream::connect(addr)?;
                        c.set_read_timeout(Some(Duration::from_secs(5)))?;
                        c.write_all(&hello())?;
                        let mut t = [0u8; 1];
                        c.read_exact(&mut t)?;
                        let mut echo = vec![0u8; hello().len()];
                        c.read_exact(&mut echo)?;
                        Ok(t[0])
                    })();
                    let mut r = results.lock().unwrap();
                    match ok {
                        Ok(t) => {
                            r.0 += 1;
                            if stop.load(Ordering::SeqCst) == 0 {
                                r.2.push(t);
                            }
                        }
                        Err(_) => r.1 += 1,
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    for state in ["drain", "maint"] {
        assert!(ctl_ok(&sock, &["upstream", &a.addr.to_string(), state]).starts_with("ok"));
        let mark = results.lock().unwrap().2.len();
        thread::sleep(Duration::from_millis(300));
        let r = results.lock().unwrap();
        // sessions that began after the command: none on a
        let after: Vec<u8> = r.2.get(mark + 4..).unwrap_or(&[]).to_vec();
        assert!(
            !after.is_empty() && after.iter().all(|&t| t == b'b'),
            "{state}: {after:?}"
        );
    }
    // the state survives a reload
    ctl_ok(&sock, &["reload"]);
    assert_eq!(show_upstreams(&sock)[&a.addr.to_string()][0], "maint");
    assert!(ctl_ok(&sock, &["upstream", &a.addr.to_string(), "ready"]).starts_with("ok"));
    thread::sleep(Duration::from_millis(300));
    stop.store(1, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let r = results.lock().unwrap();
    assert_eq!(r.1, 0, "failed sessions ({} good)", r.0);
    assert!(
        r.2.iter().rev().take(10).any(|&t| t == b'a'),
        "ready again: a takes sessions"
    );
    // the long-lived session on a went on through drain and maint
    long.write_all(b"still here").unwrap();
    assert!(read_exact(&mut long, hello().len() + 10).ends_with(b"still here"));
    let rows = show_upstreams(&sock);
    assert_eq!(rows[&a.addr.to_string()][0], "ready");
    assert!({
        let (ok, text) = ctl(&sock, &["upstream", "127.0.0.1:1", "drain"]);
        !ok && text.contains("no upstream")
    });
}

#[test]
fn configuration_errors_exit_2_naming_the_route_and_the_option() {
    for (key, value, says) in [
        (
            "ENVOY_ROUTES",
            "sni=a.test allow balance=random",
            "ENVOY_ROUTES route 1: bad balance \"random\"",
        ),
        (
            "ENVOY_ROUTES",
            "allow check=http",
            "ENVOY_ROUTES route 1: bad check \"http\"",
        ),
        (
            "ENVOY_ROUTES",
            "allow check=connect",
            "ENVOY_ROUTES route 1: check=connect needs check_host=",
        ),
        (
            "ENVOY_ROUTES",
            "allow rise=2",
            "ENVOY_ROUTES route 1: rise= needs check=",
        ),
        ("ENVOY_BALANCE", "random", "ENVOY_BALANCE"),
        ("ENVOY_CHECK", "check=tcp fall=0", "bad fall"),
    ] {
        let out = Command::new(sluice_bin())
            .arg("run")
            .env_clear()
            .env("ENVOY_PORT", "0")
            .env(key, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {err}");
        assert!(
            err.contains(says) && err.contains(key),
            "{key}={value}: {err}"
        );
    }
}

/// An upstream that can be closed and opened again on the same port: counts what it
/// accepted, answers with its tag, and echoes.
struct Switchable {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

fn switchable(tag: u8) -> Switchable {
    let (l, addr) = listener();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(1));
    let (count, flag) = (Arc::clone(&accepted), Arc::clone(&open));
    thread::spawn(move || {
        let mut l = Some(l);
        loop {
            match (flag.load(Ordering::SeqCst), l.is_some()) {
                (0, true) => l = None,
                (1, false) => l = TcpListener::bind(addr).ok(),
                _ => {}
            }
            let Some(lis) = l.as_ref() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            lis.set_nonblocking(true).unwrap();
            match lis.accept() {
                Ok((mut c, _)) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    c.set_nonblocking(false).unwrap();
                    thread::spawn(move || {
                        let _ = c.write_all(&[tag]);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 || c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Switchable {
        addr,
        accepted,
        open,
    }
}

/// Waits until `show upstreams` says `health` of `name` (every worker agreeing).
fn wait_health(sock: &Path, name: &str, health: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = show_upstreams(sock);
        if rows.get(name).is_some_and(|r| r[1] == health) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never {health}: {rows:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_health_checker_for_two_workers_and_both_follow_its_verdicts() {
    let a = switchable(b'a');
    let b = tagged(b'b');
    let dir = TempDir::new("check");
    let list = format!("{},{}", a.addr, b.addr);
    let (s, sock) = start(
        &dir,
        &[
            ("ENVOY_WORKERS", "2"),
            ("ENVOY_UPSTREAM", &list),
            ("ENVOY_EJECT_AFTER", "0"),
            ("ENVOY_CHECK", "check=tcp check_interval_ms=3600000"),
        ],
    );
    let mut s = s;
    s.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    // one check of a at start, from one checker: not one per worker
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no check came");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        a.accepted.load(Ordering::SeqCst),
        1,
        "one checker, one check"
    );
    ctl_ok(
        &sock,
        &[
            "set",
            "ENVOY_CHECK",
            "check=tcp check_interval_ms=100 rise=2 fall=2",
        ],
    );
    // a goes away: the checker marks it down and neither worker tries it any more
    a.open.store(0, Ordering::SeqCst);
    let name = a.addr.to_string();
    wait_health(&sock, &name, "down");
    for _ in 0..30 {
        assert_eq!(session(s.addr).1, b'b');
    }
    assert_eq!(
        s.metric(&format!(
            "sluice_upstream_connect_failures_total{{upstream=\"{name}\",reason=\"refused\"}}"
        )),
        0,
        "no worker tried the upstream its checker said was down"
    );
    // a comes back: up after `rise` passes, first again for both workers
    a.open.store(1, Ordering::SeqCst);
    wait_health(&sock, &name, "up");
    for _ in 0..10 {
        assert_eq!(session(s.addr).1, b'a');
    }
}

/// An upstream that records the first bytes of each connection and answers `reply`.
fn recording(reply: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let (l, addr) = listener();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let log = Arc::clone(&log);
            thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n\r\n") {
                        let _ = c.write_all(reply);
                    }
                }
                log.lock().unwrap().push(got);
            });
        }
    });
    (addr, seen)
}

#[test]
fn proxy_v2_local_and_connect_checks_send_what_haproxy_would_and_judge_the_reply() {
    let (local, local_seen) = recording(b"");
    let (refusing, refusing_seen) = recording(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    let (accepting, _) = recording(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let dir = TempDir::new("kinds");
    let routes = format!(
        "sni=a.test allow upstream={refusing},{accepting} check=connect check_host=health.test:443 check_interval_ms=100 fall=1"
    );
    let (_s, sock) = start(
        &dir,
        &[
            ("ENVOY_UPSTREAM", &local.to_string()),
            ("ENVOY_CHECK", "check=proxy-v2-local check_interval_ms=100"),
            ("ENVOY_ROUTES", &routes),
        ],
    );
    wait_health(&sock, &refusing.to_string(), "down");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(show_upstreams(&sock)[&accepting.to_string()][1], "up");
    let connects = refusing_seen.lock().unwrap().clone();
    assert!(!connects.is_empty());
    assert!(
        connects[0].starts_with(b"CONNECT health.test:443 HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&connects[0])
    );
    let locals = local_seen.lock().unwrap().clone();
    assert!(!locals.is_empty());
    assert_eq!(
        locals[0], b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
        "a PROXY v2 LOCAL header, nothing else"
    );
    assert_eq!(show_upstreams(&sock)[&local.to_string()][1], "up");
}

#[test]
fn an_upstream_state_survives_a_worker_respawn_and_an_upgrade() {
    let (a, b) = (tagged(b'a'), tagged(b'b'));
    let dir = TempDir::new("survive");
    // the binary an upgrade starts is the one on disk: a copy of ours
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let sock = dir.path("ctl.sock");
    let list = format!("{},{}", a.addr, b.addr);
    let mut s = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_UPSTREAM", &list),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    s.may_exit = true;
    let _stop = s.stop_all_generations();
    let name = a.addr.to_string();
    assert_eq!(session(s.addr).1, b'a', "first: a");
    ctl_ok(&sock, &["upstream", &name, "maint"]);
    assert_eq!(session(s.addr).1, b'b');
    // the worker dies and is respawned: it is told again
    let worker = s.workers()[0];
    signal(worker, "KILL");
    s.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    assert_eq!(show_upstreams(&sock)[&name][0], "maint");
    assert_eq!(session(s.addr).1, b'b');
    // a binary upgrade: the new generation is told too
    signal(s.child.id(), "USR2");
    s.wait_for_log(
        "every worker is ready, told the old supervisor",
        Duration::from_secs(20),
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(show_upstreams(&sock)[&name][0], "maint");
    for _ in 0..5 {
        assert_eq!(session(s.addr).1, b'b');
    }
    ctl_ok(&sock, &["upstream", &name, "ready"]);
    assert_eq!(session(s.addr).1, b'a');
}

#[test]
fn maint_stops_an_upstreams_health_checks_and_ready_starts_them_again() {
    let a = switchable(b'a');
    let dir = TempDir::new("maintcheck");
    let (_s, sock) = start(
        &dir,
        &[
            ("ENVOY_UPSTREAM", &a.addr.to_string()),
            ("ENVOY_CHECK", "check=tcp check_interval_ms=50"),
        ],
    );
    let checks = || a.accepted.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while checks() < 2 {
        assert!(Instant::now() < deadline, "no checks");
        thread::sleep(Duration::from_millis(10));
    }
    let name = a.addr.to_string();
    ctl_ok(&sock, &["upstream", &name, "maint"]);
    thread::sleep(Duration::from_millis(300));
    let during = checks();
    thread::sleep(Duration::from_millis(600));
    assert_eq!(checks(), during, "a check during maint");
    ctl_ok(&sock, &["upstream", &name, "ready"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while checks() <= during {
        assert!(Instant::now() < deadline, "checks never resumed");
        thread::sleep(Duration::from_millis(10));
    }
}
