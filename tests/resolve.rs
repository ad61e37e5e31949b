#![cfg(test)]
//! Names are resolved off every event loop (the supervisor's resolver thread) and again every
//! ENVOY_RESOLVE_INTERVAL_MS. The resolver is steered the way an operator's machine would be:
//! sluice runs in its own mount namespace (`unshare -m`, root only: skipped otherwise) where
//! /etc/resolv.conf and /etc/hosts are files of the test's.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// An upstream answering every connection with `tag`; counts them.
fn tagged_on(l: TcpListener, tag: u8) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&n);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = c.write_all(&[tag]);
                let mut buf = [0u8; 4096];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    n
}

/// One session: the upstream's tag.
fn session(addr: SocketAddr) -> u8 {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&fixture("client-curl-7.88.1-h2.bin")).unwrap();
    let mut tag = [0u8; 1];
    c.read_exact(&mut tag)
        .expect("the session reached no upstream within 5 s");
    tag[0]
}

/// True when this test can give sluice its own /etc files (root, and mount namespaces).
fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind /etc/hostname /etc/hostname"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: needs root and `unshare -m` (a mount namespace)");
    }
    ok
}

/// `sluice run` in a mount namespace whose /etc/resolv.conf and /etc/hosts are `dir`'s.
fn start_unshared(dir: &TempDir, env: &[(&str, &str)]) -> Sluice {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0/resolv.conf\" /etc/resolv.conf && mount --bind \"$0/hosts\" /etc/hosts && exec \"$1\" run",
    ])
    .arg(&dir.0)
    .arg(sluice_bin());
    Sluice::start_cmd(cmd, env)
}

fn ctl_child(sock: &Path, args: &[&str]) -> Child {
    Command::new(sluice_bin())
        .arg("ctl")
        .args(args)
        .env("ENVOY_CONTROL_SOCKET", sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sessions_keep_flowing_while_a_reloads_name_hangs_in_the_resolver() {
    if !can_unshare() {
        return;
    }
    // a DNS server that never answers
    let Ok(dns) = UdpSocket::bind("127.0.0.153:53") else {
        eprintln!("skipped: cannot bind 127.0.0.153:53");
        return;
    };
    let dir = TempDir::new("dnshang");
    std::fs::write(
        dir.path("resolv.conf"),
        "nameserver 127.0.0.153\noptions timeout:30 attempts:1\n",
    )
    .unwrap();
    std::fs::write(dir.path("hosts"), "127.0.0.1 localhost\n").unwrap();
    let (l, good) = listener();
    tagged_on(l, b'g');
    let sock: PathBuf = dir.path("ctl.sock");
    let s = start_unshared(
        &dir,
        &[
            ("ENVOY_UPSTREAM", &good.to_string()),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    assert_eq!(session(s.addr), b'g');
    // a `set` whose route names a host the resolver never answers for
    let mut pending = ctl_child(
        &sock,
        &[
            "set",
            "ENVOY_ROUTES",
            "sni=x.test allow upstream=hang.sluice.test:443",
        ],
    );
    dns.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut q = [0u8; 512];
    dns.recv_from(&mut q)
        .expect("the resolver asked the DNS server");
    // the query hangs (30 s): sessions and other commands go on meanwhile
    for _ in 0..50 {
        assert_eq!(session(s.addr), b'g');
    }
    assert!(ctl_ok(&sock, &["show", "stats"]).contains("accepted="));
    assert!(
        pending.try_wait().unwrap().is_none(),
        "the set waits for its name"
    );
    let _ = pending.kill();
}

#[test]
fn names_are_resolved_again_a_changed_address_moves_new_sessions_and_a_lost_name_keeps_its_last() {
    if !can_unshare() {
        return;
    }
    let dir = TempDir::new("reresolve");
    // nothing answers DNS here: a name is what /etc/hosts says, or fails at once
    std::fs::write(
        dir.path("resolv.conf"),
        "nameserver 127.0.0.154\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let (l1, a1) = listener();
    tagged_on(l1, b'1');
    let l2 = TcpListener::bind(("127.0.0.2", a1.port())).unwrap();
    tagged_on(l2, b'2');
    let hosts = dir.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 up.sluice.test\n").unwrap();
    let upstream = format!("up.sluice.test:{}", a1.port());
    let mut s = start_unshared(
        &dir,
        &[
            ("ENVOY_UPSTREAM", &upstream),
            ("ENVOY_RESOLVE_INTERVAL_MS", "200"),
        ],
    );
    assert_eq!(session(s.addr), b'1');
    // the name moves: new sessions follow it without a reload
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.2 up.sluice.test\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while session(s.addr) != b'2' {
        assert!(
            Instant::now() < deadline,
            "the new address never reached the worker"
        );
        thread::sleep(Duration::from_millis(50));
    }
    s.wait_for_log("upstream addresses changed", Duration::from_secs(5));
    // the name stops resolving: a warning, and the last addresses stay
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    s.wait_for_log("name did not resolve", Duration::from_secs(10));
    for _ in 0..5 {
        assert_eq!(session(s.addr), b'2');
    }
}

/// A lone `sluice worker` has no supervisor to resolve for it: it resolves at start, before
/// its loop, and its reloads use those answers. A reload naming the same host works; a `set`
/// naming a host it has not seen is refused at once (the binary before asked the system
/// resolver on its loop and took it). Needs no root: no resolver is steered.
#[test]
fn a_lone_worker_never_resolves_on_its_loop() {
    let dir = TempDir::new("resolve-lone");
    let sock = dir.path("ctl.sock");
    let (l, _) = listener();
    let port = l.local_addr().unwrap().port();
    let served = tagged_on(l, b'L');
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("worker");
    let sluice = Sluice::start_cmd(
        cmd,
        &[
            ("ENVOY_UPSTREAM", &format!("localhost:{port}")),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    assert_eq!(session(sluice.addr), b'L');
    let said = ctl_ok(&sock, &["reload"]);
    assert!(said.starts_with("ok:"), "{said}");
    assert_eq!(session(sluice.addr), b'L');
    let (ok, said) = ctl(&sock, &["set", "ENVOY_UPSTREAM", "localhost:9"]);
    assert!(!ok && said.contains("not resolved yet"), "{said}");
    // Unchanged: still the first upstream.
    assert_eq!(session(sluice.addr), b'L');
    assert_eq!(served.load(Ordering::SeqCst), 3);
}
