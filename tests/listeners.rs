#![cfg(test)]
//! Several listeners in one `sluice run` (2 workers), each with its own policy: PROXY
//! required on 127.0.0.1, off on [::1], each its own default upstream, a `listener=` route.
//! Live: a listener added by reload under a continuous checksummed load (the workers keep
//! their pids, nothing fails), removed again (new connects refused, a long-lived session
//! on it finishes byte-exact), the default listener's port changed by reload (the old one
//! drains), an upgrade after all of it (every listener handed on), and bad entries that
//! change nothing.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const T: Duration = Duration::from_secs(10);

/// An upstream that skips `hello_len` bytes, says its `tag` (one byte), then echoes until
/// EOF.
fn tagged_upstream(tag: u8, hello_len: usize) -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut h = vec![0u8; hello_len];
                if s.read_exact(&mut h).is_err() || s.write_all(&[tag]).is_err() {
                    return;
                }
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A PROXY v1 header for a client at 192.0.2.1.
const PROXY_V1: &[u8] = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 443\r\n";

/// One session: `preamble` (a PROXY header or nothing), the hello, `n` checksummed bytes;
/// returns the upstream's tag once every byte came back, or why not.
fn session(addr: SocketAddr, preamble: &[u8], hello: &[u8], seed: u64) -> Result<u8, String> {
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(preamble).map_err(|e| format!("write: {e}"))?;
    c.write_all(hello)
        .map_err(|e| format!("write hello: {e}"))?;
    let mut rng = Prng::new(seed);
    let n = rng.range(1, 8192);
    let data = rng.bytes(n);
    c.write_all(&data).map_err(|e| format!("write: {e}"))?;
    c.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut back = Vec::new();
    c.read_to_end(&mut back).map_err(|e| format!("read: {e}"))?;
    match back.split_first() {
        Some((tag, rest)) if rest == data.as_slice() => Ok(*tag),
        _ => Err(format!(
            "sent {} bytes, got {} back",
            data.len(),
            back.len()
        )),
    }
}

/// A session kept open: its PROXY header and hello sent, the tag read.
fn open_session(addr: SocketAddr, preamble: &[u8], hello: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(preamble).unwrap();
    c.write_all(hello).unwrap();
    let mut tag = [0u8; 1];
    c.read_exact(&mut tag).unwrap();
    c
}

/// Sends `n` more checksummed bytes on a session opened by [`open_session`], closes its
/// side, and checks the echo is byte-exact.
fn finish_session(mut c: TcpStream, seed: u64, n: usize) {
    let sent = send_stream(&mut c, seed, n);
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), sent, "the long-lived session's bytes");
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Waits until connects to `addr` are refused.
fn wait_refused(addr: SocketAddr) {
    let until = Instant::now() + T;
    while !refused(addr) {
        assert!(Instant::now() < until, "{addr} still accepts");
        thread::sleep(Duration::from_millis(20));
    }
}

fn worker_pids(s: &Sluice) -> Vec<u32> {
    let mut w = s.workers();
    w.sort_unstable();
    w
}

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn two_listeners_each_with_its_policy_upstream_and_routes() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let (ua, ub, ur) = (
        tagged_upstream(b'A', hello.len()),
        tagged_upstream(b'B', hello.len()),
        tagged_upstream(b'R', hello.len()),
    );
    let dir = TempDir::new("listeners-two");
    let sock = dir.path("ctl.sock");
    let (pa, pb) = (free_port(), free_port());
    let (a, b): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{pa}").parse().unwrap(),
        format!("[::1]:{pb}").parse().unwrap(),
    );
    let listen = format!(
        "{a} name=lb proxy_protocol=required upstream={ua}; {b} name=direct proxy_protocol=off upstream={ub}"
    );
    let mut sluice = Sluice::start(&[
        ("ENVOY_WORKERS", "2"),
        ("ENVOY_UPSTREAM", &ur.to_string()),
        ("ENVOY_LISTEN", &listen),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        // The route applies on `direct` only; its default route is its own.
        ("ENVOY_ROUTES", "listener=direct proto=http allow"),
    ]);
    sluice.wait_for_count("listening addr=", 4, T);
    // A: PROXY required, its own upstream.
    assert_eq!(session(a, PROXY_V1, &hello, 1), Ok(b'A'));
    // A header-less session on A is refused; on B it passes, to B's upstream.
    let mut c = TcpStream::connect(a).unwrap();
    c.write_all(&hello).unwrap();
    assert!(
        closed_within(&mut c, T),
        "no PROXY header on a required listener"
    );
    sluice.wait_for_log("no PROXY header", T);
    assert_eq!(session(b, b"", &hello, 2), Ok(b'B'));
    // The `listener=direct` route sends plain HTTP on B to ENVOY_UPSTREAM (R) ...
    let http = b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n";
    // (the tagged upstream takes a hello's worth of bytes before its tag: padded so)
    let mut tag = [0u8; 1];
    let mut c = TcpStream::connect(b).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    let mut req = http.to_vec();
    req.resize(hello.len(), b'x');
    c.write_all(&req).unwrap();
    c.read_exact(&mut tag).unwrap();
    assert_eq!(tag[0], b'R', "the listener= route");
    drop(c);
    // ... and not on A, where the same request goes to A's default upstream.
    let mut c = TcpStream::connect(a).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(PROXY_V1).unwrap();
    c.write_all(&req).unwrap();
    c.read_exact(&mut tag).unwrap();
    assert_eq!(tag[0], b'A', "listener= holds on its listener only");
    drop(c);
    // Every line of a session names its listener; the numbers are per listener.
    let closes = sluice.wait_for_count(" close sid=", 5, T);
    assert!(
        closes.iter().any(|l| l.contains(" listener=lb ")),
        "{closes:?}"
    );
    assert!(
        closes.iter().any(|l| l.contains(" listener=direct ")),
        "{closes:?}"
    );
    let shown = ctl_ok(&sock, &["show", "listeners"]);
    let row = |name: &str| -> Vec<String> {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {shown}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("lb")[1], a.to_string());
    assert_eq!(row("lb")[2], "active");
    assert_eq!(row("lb")[4], "3", "{shown}");
    assert_eq!(
        row("lb")[6..].join(" "),
        "name=lb proxy_protocol=required upstream=".to_string() + &ua.to_string()
    );
    assert_eq!(row("direct")[1], b.to_string());
    assert_eq!(row("direct")[4], "2", "{shown}");
    let scrape = sluice.scrape();
    assert_eq!(
        metric_value(&scrape, "sluice_accepted_total{listener=\"lb\"}"),
        3
    );
    assert_eq!(
        metric_value(&scrape, "sluice_accepted_total{listener=\"direct\"}"),
        2
    );
    // A worker that dies is respawned on every listener's socket.
    let pids = worker_pids(&sluice);
    signal(pids[0], "KILL");
    sluice.wait_for_count("worker started", 3, T);
    sluice.wait_for_count("listening addr=", 6, T);
    for seed in 0..20 {
        assert_eq!(session(a, PROXY_V1, &hello, 100 + seed), Ok(b'A'));
        assert_eq!(session(b, b"", &hello, 200 + seed), Ok(b'B'));
    }
}

#[test]
fn listeners_added_and_removed_live_under_load_then_an_upgrade_hands_all_on() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let up = tagged_upstream(b'U', hello.len());
    let dir = TempDir::new("listeners-live");
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let sock = dir.path("ctl.sock");
    let conf = dir.path("sluice.env");
    let (pa, pc, pd) = (free_port(), free_port(), free_port());
    let a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
    let c: SocketAddr = format!("127.0.0.1:{pc}").parse().unwrap();
    let d: SocketAddr = format!("[::1]:{pd}").parse().unwrap();
    let a_entry = format!("{a} name=a proxy_protocol=required");
    write_config(&conf, &format!("ENVOY_LISTEN={a_entry}\n"));
    let mut sluice = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_WORKERS", "2"),
            ("ENVOY_UPSTREAM", &up.to_string()),
            ("ENVOY_CONFIG_FILE", conf.to_str().unwrap()),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
            ("ENVOY_DRAIN_TIMEOUT_MS", "60000"),
        ],
    );
    sluice.may_exit = true;
    sluice.wait_for_count("listening addr=", 2, T);
    let _stop = sluice.stop_all_generations();
    let pids = worker_pids(&sluice);
    assert_eq!(pids.len(), 2);

    // A continuous checksummed load on A.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let load: Vec<_> = (0..2u64)
        .map(|t| {
            let (stop, ok, failures, hello) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failures),
                hello.clone(),
            );
            thread::spawn(move || {
                let mut seed = t << 32;
                while !stop.load(Ordering::Relaxed) {
                    seed += 1;
                    match session(a, PROXY_V1, &hello, seed) {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    let wait_ok = |n: u64| {
        let until = Instant::now() + T;
        let from = ok.load(Ordering::Relaxed);
        while ok.load(Ordering::Relaxed) < from + n {
            assert!(Instant::now() < until, "the load on A stalled");
            thread::sleep(Duration::from_millis(10));
        }
    };
    wait_ok(20);

    // Add C by reload: C accepts within a second, the workers are the same processes.
    write_config(
        &conf,
        &format!("ENVOY_LISTEN={a_entry}; {c} name=c proxy_protocol=off\n"),
    );
    let said = ctl_ok(&sock, &["reload"]);
    assert!(said.starts_with("ok:"), "{said}");
    let added = Instant::now();
    let mut tries = 0;
    let accepted = loop {
        match session(c, b"", &hello, 7_000 + tries) {
            Ok(tag) => break tag,
            Err(e) => {
                assert!(
                    added.elapsed() < Duration::from_secs(1),
                    "C not accepting: {e}"
                );
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    assert_eq!(accepted, b'U');
    for seed in 0..20 {
        assert_eq!(session(c, b"", &hello, 8_000 + seed), Ok(b'U'));
    }
    assert_eq!(worker_pids(&sluice), pids, "the workers were not restarted");
    let long = open_session(c, b"", &hello);
    wait_ok(20);

    // Remove C (SIGHUP this time): new connects refused, the long-lived session finishes.
    write_config(&conf, &format!("ENVOY_LISTEN={a_entry}\n"));
    signal(sluice.child.id(), "HUP");
    sluice.wait_for_count("listener closed, its sessions finish listener=c", 2, T);
    wait_refused(c);
    let shown = ctl_ok(&sock, &["show", "listeners"]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("c ") && l.contains(" draining 1 ")),
        "{shown}"
    );
    finish_session(long, 99, 200_000);
    wait_ok(20);
    assert_eq!(worker_pids(&sluice), pids);

    // A bad entry, and an address another process holds: refused, nothing changes.
    let (held, taken) = listener();
    for (value, why) in [
        (format!("{a_entry}; nonsense"), "nonsense"),
        (format!("{a_entry}; {taken}"), "cannot listen on"),
        (format!("{a_entry}; {a} name=twice"), "already the address"),
    ] {
        let (ok_, said) = ctl(&sock, &["set", "ENVOY_LISTEN", &value]);
        assert!(!ok_ && said.contains(why), "{value}: {said}");
        assert!(said.contains("nothing changed"), "{said}");
    }
    // The channel's words are not an operator's.
    let (ok_, said) = ctl(&sock, &["unlisten", &a.to_string()]);
    assert!(!ok_ && said.contains("supervisor's own"), "{said}");
    // The same by SIGHUP: the reload is refused whole.
    write_config(
        &conf,
        &format!("ENVOY_LISTEN={a_entry}; {taken}\nENVOY_LOG_LEVEL=debug\n"),
    );
    signal(sluice.child.id(), "HUP");
    let refused = sluice.wait_for_log("reload refused, the old config stays signal=SIGHUP", T);
    assert!(refused.contains("cannot listen on"), "{refused}");
    write_config(&conf, &format!("ENVOY_LISTEN={a_entry}\n"));
    assert!(
        ctl_ok(&sock, &["show", "config"]).contains("ENVOY_LOG_LEVEL=info"),
        "nothing of that reload applied"
    );
    drop(held);
    let shown = ctl_ok(&sock, &["show", "listeners"]);
    assert_eq!(
        shown.lines().filter(|l| l.contains(" active ")).count(),
        1,
        "{shown}"
    );
    // `set` adds D on [::1].
    ctl_ok(
        &sock,
        &[
            "set",
            "ENVOY_LISTEN",
            &format!("{a_entry}; {d} name=d proxy_protocol=off"),
        ],
    );
    assert_eq!(session(d, b"", &hello, 9_001), Ok(b'U'));

    // An upgrade after all of this hands A and D on: they keep accepting throughout, and
    // the new generation serves both.
    let old = sluice.child.id();
    let said = ctl_ok(&sock, &["upgrade"]);
    assert!(said.starts_with("ok: upgrade started"), "{said}");
    sluice.wait_for_log("upgrade done", Duration::from_secs(20));
    wait_ok(20);
    let new_workers = sluice.wait_for_count("listening addr=", 2 * 2 + 2 + 2 * 2, T);
    assert!(
        new_workers
            .iter()
            .filter(|l| l.contains(&format!("addr={d}")))
            .count()
            >= 4,
        "{new_workers:?}"
    );
    for seed in 0..10 {
        assert_eq!(session(d, b"", &hello, 9_100 + seed), Ok(b'U'));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let failed = failures.lock().unwrap().clone();
    assert!(failed.is_empty(), "sessions on A failed: {failed:?}");
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert_ne!(old, 0);
}

#[test]
fn the_default_listeners_port_changes_by_reload_and_the_old_one_drains() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let up = tagged_upstream(b'U', hello.len());
    let dir = TempDir::new("listeners-port");
    let sock = dir.path("ctl.sock");
    let conf = dir.path("sluice.env");
    let (p1, p2) = (free_port(), free_port());
    write_config(&conf, &format!("ENVOY_PORT={p1}\n"));
    let mut sluice = Sluice::start(&[
        ("ENVOY_WORKERS", "2"),
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CONFIG_FILE", conf.to_str().unwrap()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    sluice.wait_for_count("listening addr=", 2, T);
    let (old, new): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{p1}").parse().unwrap(),
        format!("127.0.0.1:{p2}").parse().unwrap(),
    );
    assert_eq!(sluice.addr, old);
    let pids = worker_pids(&sluice);
    let long = open_session(old, b"", &hello);
    write_config(&conf, &format!("ENVOY_PORT={p2}\n"));
    ctl_ok(&sock, &["reload"]);
    assert_eq!(session(new, b"", &hello, 1), Ok(b'U'));
    wait_refused(old);
    finish_session(long, 5, 100_000);
    assert_eq!(worker_pids(&sluice), pids);
    let shown = ctl_ok(&sock, &["show", "listeners"]);
    assert!(shown.contains(&format!("default {new} active")), "{shown}");
}

#[test]
fn invalid_listeners_exit_2_naming_the_entry() {
    for (value, said) in [
        (
            "127.0.0.1:1; localhost:2",
            "ENVOY_LISTEN listener 2: \"localhost:2\" is not ADDR:PORT",
        ),
        (
            "127.0.0.1:1; 127.0.0.1:1",
            "127.0.0.1:1 is already the address of listener listen1",
        ),
        ("127.0.0.1:1 proxy_protocol=maybe", "bad proxy_protocol"),
    ] {
        let mut child = std::process::Command::new(sluice_bin())
            .arg("run")
            .env_clear()
            .env("ENVOY_LISTEN", value)
            .env("ENVOY_UPSTREAM", "127.0.0.1:9")
            .env("ENVOY_PORT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + T;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{value}: {err}");
        assert!(
            err.contains("ENVOY_LISTEN") && err.contains(said),
            "{value}: {err}"
        );
    }
}
