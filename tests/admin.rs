#![cfg(test)]
//! The admin plane under `sluice run` with two workers: a command about one session reaches
//! the worker that holds it and says so, counts are summed over the workers, `show stats`
//! and `/metrics` agree after merging, and a merged scrape keeps each family whole. Session
//! ids tell the workers apart: worker `i` of 2 gives ids `i + 1 + 2k`, so worker 0 holds the
//! odd ids and worker 1 the even ones.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use util::*;

fn hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// An upstream that reads the ClientHello, answers one byte `T`, then echoes.
fn echo_upstream() -> SocketAddr {
    let (l, addr) = listener();
    let n = hello().len();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut h = vec![0u8; n];
                if s.read_exact(&mut h).is_err() {
                    return;
                }
                let _ = s.write_all(b"T");
                let mut buf = [0u8; 65536];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// `sluice run` with two workers, a control socket and a metrics address.
fn two_workers(dir: &TempDir, upstream: SocketAddr, extra: &[(&str, &str)]) -> Sluice {
    let sock = dir.path("ctl.sock");
    let mut env = vec![
        ("ENVOY_UPSTREAM", upstream.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap().to_string()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("ENVOY_WORKERS", "2".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = Sluice::start(&env);
    s.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    s
}

/// `show sessions`: session id by client address (as the client sees its own address).
fn sessions(sock: &Path) -> BTreeMap<String, u64> {
    let (ok, out) = ctl(sock, &["show", "sessions"]);
    assert!(ok, "{out}");
    out.lines()
        .filter(|l| !l.starts_with("id "))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.get(2)?.to_string(), w.first()?.parse().ok()?))
        })
        .collect()
}

/// A long-lived session through sluice: the stream, after the upstream's tag.
fn open_session(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_exact(&mut c, 1), b"T");
    c
}

/// Opens sessions until each worker holds at least one; returns them with their ids.
fn sessions_on_both_workers(sluice: &Sluice, sock: &Path) -> Vec<(TcpStream, u64)> {
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(open_session(sluice.addr));
        let ids = sessions(sock);
        let odd = ids.values().any(|id| id % 2 == 1);
        let even = ids.values().any(|id| id % 2 == 0);
        if odd && even && ids.len() == open.len() {
            return open
                .into_iter()
                .map(|c| {
                    let id = ids[&c.local_addr().unwrap().to_string()];
                    (c, id)
                })
                .collect();
        }
    }
    panic!("64 sessions and still not one on each worker");
}

/// `key=value` lines of `show stats`, each key once.
fn show_stats(sock: &Path) -> BTreeMap<String, String> {
    let (ok, out) = ctl(sock, &["show", "stats"]);
    assert!(ok, "{out}");
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        assert!(
            m.insert(k.to_string(), v.to_string()).is_none(),
            "{k} twice in show stats:\n{out}"
        );
    }
    m
}

#[test]
fn kill_and_trace_of_a_session_reach_the_worker_that_holds_it() {
    let dir = TempDir::new("admin-kill");
    let sock = dir.path("ctl.sock");
    let sluice = two_workers(&dir, echo_upstream(), &[]);
    let mut open = sessions_on_both_workers(&sluice, &sock);
    let (odd, even) = (
        open.iter().position(|(_, id)| id % 2 == 1).unwrap(),
        open.iter().position(|(_, id)| id % 2 == 0).unwrap(),
    );
    let (odd_id, even_id) = (open[odd].1, open[even].1);

    let (ok, reply) = ctl(&sock, &["trace", &even_id.to_string()]);
    assert!(ok, "trace {even_id}: {reply}");
    assert!(
        reply.starts_with(&format!(
            "ok: tracing session {even_id} (1 running session(s) now traced)"
        )),
        "{reply}"
    );
    assert!(reply.contains("worker 1"), "names the worker: {reply}");

    let (ok, reply) = ctl(&sock, &["kill", &even_id.to_string()]);
    assert!(ok, "kill {even_id} exits 0: {reply}");
    assert!(
        reply.starts_with(&format!("ok: session {even_id} closed")),
        "{reply}"
    );
    assert!(reply.contains("worker 1"), "names the worker: {reply}");
    assert_eq!(reply.lines().count(), 1, "one line: {reply}");
    assert!(closed_within(&mut open[even].0, Duration::from_secs(5)));

    let (ok, reply) = ctl(&sock, &["kill", &odd_id.to_string()]);
    assert!(ok, "kill {odd_id} exits 0: {reply}");
    assert!(reply.contains("worker 0"), "names the worker: {reply}");
    assert!(closed_within(&mut open[odd].0, Duration::from_secs(5)));

    let (ok, reply) = ctl(&sock, &["kill", "999999"]);
    assert!(!ok, "no such session: exit 1");
    assert_eq!(reply.trim_end(), "error: no session 999999");
}

#[test]
fn set_and_trace_count_the_sessions_of_every_worker() {
    let dir = TempDir::new("admin-count");
    let sock = dir.path("ctl.sock");
    let sluice = two_workers(&dir, echo_upstream(), &[]);
    let open = sessions_on_both_workers(&sluice, &sock);
    let n = open.len();

    let (ok, reply) = ctl(&sock, &["set", "ENVOY_IDLE_TIMEOUT_MS", "60000"]);
    assert!(ok, "{reply}");
    assert!(
        reply.starts_with("ok: ENVOY_IDLE_TIMEOUT_MS set;")
            && reply.contains(&format!("; {n} running session(s) keep theirs")),
        "{n} sessions over both workers: {reply}"
    );
    let (ok, reply) = ctl(&sock, &["trace", "example.test"]);
    assert!(ok, "{reply}");
    assert!(
        reply.starts_with(&format!(
            "ok: tracing name example.test ({n} running session(s) now traced)"
        )),
        "{reply}"
    );
    // The same reply to every worker is shown once.
    let (ok, reply) = ctl(&sock, &["untrace", "all"]);
    assert!(ok, "{reply}");
    assert_eq!(reply.trim_end(), "ok: 1 trace rule(s) removed");
}

#[test]
fn show_stats_and_metrics_agree_after_merging() {
    let dir = TempDir::new("admin-stats");
    let sock = dir.path("ctl.sock");
    let mut sluice = two_workers(&dir, echo_upstream(), &[("ENVOY_SPLICE", "auto")]);
    let open = sessions_on_both_workers(&sluice, &sock);
    let n = open.len();
    // Bulk both ways on every session, so that both workers splice.
    for (mut c, id) in open {
        let data = Prng::new(id).bytes(1 << 20);
        let mut r = c.try_clone().unwrap();
        let reader = thread::spawn(move || read_exact(&mut r, 1 << 20));
        c.write_all(&data).unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }
    sluice.wait_for_count("] close sid=", n, Duration::from_secs(10));
    let stats = show_stats(&sock);
    let body = sluice.scrape();
    let num = |k: &str| -> u64 {
        stats
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {stats:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(num("sessions"), 0);
    assert_eq!(num("accepted"), n as u64);
    assert_eq!(
        num("accepted"),
        metric_value(&body, "sluice_accepted_total{listener=\"default\"}")
    );
    assert_eq!(num("closed.done"), n as u64);
    assert_eq!(
        num("closed.done"),
        metric_value(&body, "sluice_closed_total{reason=\"done\"}")
    );
    let up = (n * (hello().len() + (1 << 20))) as u64;
    assert_eq!(num("bytes_up"), up);
    assert_eq!(
        metric_value(
            &body,
            "sluice_bytes_total{direction=\"client_to_upstream\"}"
        ),
        up
    );
    assert_eq!(num("bytes_down"), (n * (1 + (1 << 20))) as u64);
    let spliced = num("bytes_spliced");
    assert!(spliced > 0, "bulk moved by splice on Linux");
    assert!(spliced <= num("bytes_up") + num("bytes_down"));
    assert_eq!(
        spliced,
        metric_value(&body, "sluice_spliced_bytes_total"),
        "show stats and /metrics count the same bytes"
    );
    assert_eq!(num("buffers_in_use"), 0);
    assert_eq!(num("splice_pipes_in_use"), 0);
    assert_eq!(stats["traces"], "");
}

/// `show stats` starts with what answers: the version (as `--version` says it), the
/// supervisor's pid, how many workers answered, and the supervisor's uptime.
#[test]
fn show_stats_starts_with_version_pid_workers_and_uptime() {
    let dir = TempDir::new("admin-head");
    let sock = dir.path("ctl.sock");
    let sluice = two_workers(&dir, echo_upstream(), &[]);
    let (ok, out) = ctl(&sock, &["show", "stats"]);
    assert!(ok, "{out}");
    let head: Vec<(&str, &str)> = out
        .lines()
        .take(4)
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    let keys: Vec<&str> = head.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        ["version", "pid", "workers", "uptime_seconds"],
        "{out}"
    );
    let version = Command::new(sluice_bin())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(
        format!("sluice {}", head[0].1),
        version.trim_end(),
        "the same words as --version"
    );
    assert_eq!(
        head[1].1,
        sluice.child.id().to_string(),
        "the supervisor's pid"
    );
    assert_eq!(head[2].1, "2");
    assert!(head[3].1.parse::<u64>().is_ok(), "{out}");
    // The same facts once more is not a second copy: each key once (show_stats checks).
    let stats = show_stats(&sock);
    assert_eq!(stats["workers"], "2");
}

#[test]
fn a_lone_worker_shows_each_stat_once() {
    let dir = TempDir::new("admin-lone");
    let sock = dir.path("ctl.sock");
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("worker");
    let sluice = Sluice::start_cmd(
        cmd,
        &[
            ("ENVOY_UPSTREAM", &echo_upstream().to_string()),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    drop(open_session(sluice.addr));
    let stats = show_stats(&sock);
    assert_eq!(stats["accepted"], "1");
    assert!(stats.contains_key("bytes_spliced"));
    // Alone, the worker answers for itself: its own pid, no supervisor's worker count.
    assert_eq!(stats["pid"], sluice.child.id().to_string());
    assert!(stats.contains_key("version") && stats.contains_key("uptime_seconds"));
}

/// A forward proxy that refuses every CONNECT, each with a status of its own (400, 401, ...).
fn refusing_proxy() -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { return };
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 {} Refused\r\nContent-Length: 0\r\n\r\n",
                400 + i
            );
        }
    });
    addr
}

#[test]
fn a_merged_scrape_keeps_every_family_whole_and_takes_the_max_of_sizes() {
    let dir = TempDir::new("admin-scrape");
    let mut sluice = two_workers(
        &dir,
        refusing_proxy(),
        &[("ENVOY_UPSTREAM_MODE", "connect")],
    );
    // Each session gets a status of its own, so a worker's series are absent from the other's
    // report: the merge must still keep each family in one piece.
    let mut workers = BTreeSet::new();
    let mut n = 0;
    while workers.len() < 2 {
        assert!(n < 64, "64 sessions and still not one on each worker");
        let mut c = TcpStream::connect(sluice.addr).unwrap();
        c.write_all(&hello()).unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(5)));
        n += 1;
        let closes = sluice.wait_for_count("reason=connect_rejected", n, Duration::from_secs(5));
        let sid: u64 = fields(closes.last().unwrap())["sid"].parse().unwrap();
        workers.insert(sid % 2);
    }
    let body = sluice.scrape();
    for i in 0..n {
        assert_eq!(
            metric_value(
                &body,
                &format!("sluice_connect_rejected_total{{status=\"{}\"}}", 400 + i)
            ),
            1,
            "{body}"
        );
    }
    assert_eq!(
        metric_value(&body, "sluice_accepted_total{listener=\"default\"}"),
        n as u64
    );
    assert_eq!(metric_value(&body, "sluice_buffer_size_bytes"), 16384);
    // build_info names the commit too (issue 16): one series, the version's.
    let build: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("sluice_build_info{"))
        .collect();
    let version = format!(
        "sluice_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        build.len() == 1 && build[0].starts_with(&version) && build[0].ends_with("\"} 1"),
        "{body}"
    );
    assert_eq!(metric_value(&body, "sluice_draining"), 0);
    assert_eq!(metric_value(&body, "sluice_workers"), 2);
    // Every family: one HELP, one TYPE, then all of its samples together.
    let mut seen = BTreeSet::new();
    let mut family = String::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            family = rest.split(' ').next().unwrap().to_string();
            assert!(seen.insert(family.clone()), "{family} twice:\n{body}");
        } else if !l.starts_with('#') {
            assert!(
                l.starts_with(&family),
                "{l:?} outside its family ({family}):\n{body}"
            );
        }
    }
    let promtool = which("promtool").expect("promtool (Debian package prometheus; make deps)");
    promtool_check_metrics(&promtool, &body);
}
