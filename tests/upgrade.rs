#![cfg(test)]
//! Zero downtime: under a continuous checksummed load and with long-lived sessions open,
//! 10 reloads and 3 binary upgrades refuse or reset nothing, the long-lived sessions finish
//! byte-exact on the old workers, and a `kill -9` of one worker costs only that worker's
//! sessions: the supervisor replaces it.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// The upstream: skips the ClientHello, then echoes until EOF.
fn echo_upstream(hello_len: usize) -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut h = vec![0u8; hello_len];
                if s.read_exact(&mut h).is_err() {
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

/// One short session moving `n` checksummed bytes both ways.
fn short_session(addr: SocketAddr, hello: &[u8], seed: u64) -> Result<(), String> {
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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
    if back != data {
        return Err(format!(
            "echo differs: sent {} got {}",
            data.len(),
            back.len()
        ));
    }
    Ok(())
}

fn current_supervisor(log: &str) -> u32 {
    log.lines()
        .filter(|l| l.contains("] supervisor starting pid="))
        .filter_map(|l| fields(l)["pid"].parse().ok())
        .next_back()
        .expect("a supervisor line")
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn reloads_upgrades_and_a_killed_worker_under_load() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let upstream = echo_upstream(hello.len());
    let dir = TempDir::new("upgrade");
    // The installed binary: a copy, replaced on disk before each upgrade.
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_UPSTREAM", &upstream.to_string()),
            ("ENVOY_WORKERS", "2"),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
            ("ENVOY_DRAIN_TIMEOUT_MS", "60000"),
            ("ENVOY_PID_FILE", dir.path("sluice.pid").to_str().unwrap()),
            ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    sluice.may_exit = true;
    sluice.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    // Whatever happens, stop the generation that is serving at the end.
    let _stop_last = sluice.stop_all_generations();
    let addr = sluice.addr;

    // Continuous load: two threads of short sessions, a few hundred a second.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    // `bench/upgrade` raises these for a heavier run.
    let threads: u64 = std::env::var("SLUICE_UPGRADE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let pause_ms: u64 = std::env::var("SLUICE_UPGRADE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let load: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, ok, failures, hello) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failures),
                hello.clone(),
            );
            thread::spawn(move || {
                let mut seed = t * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    seed += 1;
                    match short_session(addr, &hello, seed) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().unwrap().push((Instant::now(), e));
                            0
                        }
                    };
                    thread::sleep(Duration::from_millis(pause_ms));
                }
            })
        })
        .collect();

    // Long-lived sessions, opened on the first generation, exchanging checksummed chunks.
    let mut long: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c.write_all(&hello).unwrap();
            c
        })
        .collect();
    let mut long_rng = Prng::new(77);
    let mut exchange = |long: &mut Vec<TcpStream>| {
        for c in long.iter_mut() {
            let chunk = long_rng.bytes(4096);
            c.write_all(&chunk).unwrap();
            assert_eq!(
                read_exact(c, chunk.len()),
                chunk,
                "a long-lived session lost or changed bytes"
            );
        }
    };
    exchange(&mut long);

    // 10 reloads.
    for _ in 0..10 {
        signal(current_supervisor(&sluice.log()), "HUP");
        thread::sleep(Duration::from_millis(150));
        exchange(&mut long);
    }
    sluice.wait_for_count(
        "config applied to new sessions signal=SIGHUP",
        20,
        Duration::from_secs(10),
    );

    // 3 upgrades, each to the binary now on disk (replaced atomically, as a package manager does).
    for round in 1..=3 {
        let staged = dir.path("sluice.new");
        std::fs::copy(sluice_bin(), &staged).unwrap();
        std::fs::rename(&staged, &bin).unwrap();
        let old = current_supervisor(&sluice.log());
        signal(old, "USR2");
        sluice.wait_for_count(
            "every worker is ready, told the old supervisor",
            round,
            Duration::from_secs(20),
        );
        let new = current_supervisor(&sluice.log());
        assert_ne!(new, old, "upgrade {round}: a new supervisor took over");
        let pid_file = std::fs::read_to_string(dir.path("sluice.pid")).unwrap();
        assert_eq!(
            pid_file.trim(),
            new.to_string(),
            "ENVOY_PID_FILE names the serving supervisor"
        );
        // The control socket answers across the upgrade.
        let out = Command::new(sluice_bin())
            .args(["ctl", "show", "stats"])
            .env("ENVOY_CONTROL_SOCKET", &sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctl after upgrade {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        thread::sleep(Duration::from_millis(300));
        exchange(&mut long);
    }
    // The long-lived sessions finish, byte-exact, on the first generation's workers.
    for c in long.iter_mut() {
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    drop(long);
    let before_kill = failures.lock().unwrap().len();
    assert_eq!(
        before_kill,
        0,
        "sessions failed during reloads and upgrades: {:?}",
        &failures.lock().unwrap()[..before_kill.min(5)]
    );

    // kill -9 one worker of the current generation: the supervisor replaces it.
    let sup = current_supervisor(&sluice.log());
    let workers = children(sup);
    assert_eq!(workers.len(), 2, "two workers under {sup}");
    let killed_at = Instant::now();
    signal(workers[0], "KILL");
    sluice.wait_for_log("worker died, respawning", Duration::from_secs(10));
    let mut respawned = Vec::new();
    for _ in 0..100 {
        respawned = children(sup);
        if respawned.len() == 2 && !respawned.contains(&workers[0]) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        respawned.len() == 2 && !respawned.contains(&workers[0]),
        "replaced: {respawned:?}"
    );
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let late: Vec<_> = failures
        .iter()
        .filter(|(t, _)| t.duration_since(killed_at) > Duration::from_secs(1))
        .collect();
    assert!(late.is_empty(), "failures after the replacement: {late:?}");
    // The killed worker's in-flight sessions are the only ones allowed to fail.
    assert!(
        failures.len() <= 4,
        "{} failures around the kill: {:?}",
        failures.len(),
        *failures
    );
    let total = ok.load(Ordering::Relaxed);
    assert!(total > 500, "the load ran: {total} sessions");
    eprintln!(
        "upgrade test: {total} sessions ok, {} failed around the kill -9, 10 reloads, 3 upgrades",
        failures.len()
    );
}

#[test]
fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let upstream = echo_upstream(hello.len());
    let dir = TempDir::new("badupgrade");
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let mut sluice = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_UPSTREAM", &upstream.to_string()),
            ("ENVOY_WORKERS", "1"),
        ],
    );
    assert_eq!(short_session(sluice.addr, &hello, 1), Ok(()));
    // A "binary" that dies at once.
    let staged = dir.path("sluice.new");
    std::fs::write(&staged, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &bin).unwrap();
    signal(sluice.child.id(), "USR2");
    let line = sluice.wait_for_log("upgrade failed", Duration::from_secs(20));
    assert!(
        line.contains("exit status: 3") && line.contains("keeps serving"),
        "{line}"
    );
    assert!(
        sluice.log().contains("broken build"),
        "the new binary's own words reach the log"
    );
    // (a shell script's words, not a line of sluice's: not held to logfmt)
    sluice.foreign_lines.push("broken build");
    for seed in 2..20 {
        assert_eq!(
            short_session(sluice.addr, &hello, seed),
            Ok(()),
            "still serving"
        );
    }
    assert!(sluice.child.try_wait().unwrap().is_none());
}

#[test]
fn a_new_listen_port_is_applied_by_a_reload_and_kept_by_an_upgrade_without_dropping_a_session() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let upstream = echo_upstream(hello.len());
    let dir = TempDir::new("moveport");
    let (a, b) = (free_port(), free_port());
    let file = dir.path("sluice.env");
    std::fs::write(&file, format!("ENVOY_PORT={a}\n")).unwrap();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &upstream.to_string()),
        ("ENVOY_CONFIG_FILE", file.to_str().unwrap()),
    ]);
    sluice.may_exit = true;
    let _stop_last = sluice.stop_all_generations();
    assert_eq!(sluice.addr.port(), a);
    let mut old = TcpStream::connect(("127.0.0.1", a)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    old.write_all(&hello).unwrap();
    old.write_all(b"before").unwrap();
    assert_eq!(read_exact(&mut old, 6), b"before");
    // A reload moves the listener (issue 19): the new port accepts, the old one stops
    // accepting, the running session goes on.
    std::fs::write(&file, format!("ENVOY_PORT={b}\n")).unwrap();
    let sup = current_supervisor(&sluice.log());
    signal(sup, "HUP");
    sluice.wait_for_log(
        "listener closed, its sessions finish",
        Duration::from_secs(5),
    );
    assert_eq!(
        short_session(format!("127.0.0.1:{b}").parse().unwrap(), &hello, 4),
        Ok(())
    );
    assert!(
        TcpStream::connect(("127.0.0.1", a)).is_err(),
        "the old port no longer accepts"
    );
    // The upgrade hands the new port on; the running session stays on the old workers.
    signal(sup, "USR2");
    sluice.wait_for_log(
        "every worker is ready, told the old supervisor",
        Duration::from_secs(20),
    );
    assert_eq!(
        short_session(format!("127.0.0.1:{b}").parse().unwrap(), &hello, 5),
        Ok(())
    );
    old.write_all(b"after").unwrap();
    assert_eq!(
        read_exact(&mut old, 5),
        b"after",
        "the old session was not dropped"
    );
    old.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).unwrap();
    // Once the old generation is gone, the old port is closed.
    wait_gone(sup);
    assert!(
        TcpStream::connect(("127.0.0.1", a)).is_err(),
        "the old port is closed"
    );
}

fn wait_gone(pid: u32) {
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("process {pid} did not exit");
}
