#![cfg(test)]
//! The log through the real binary (issue 20): a stderr nobody reads never stalls a session,
//! and what it cost is counted; two workers sharing one pipe never interleave their lines;
//! the target changes live; a rotated file is reopened (SIGUSR1, `reopen-logs`) without
//! losing a line; syslog on a local socket and over UDP.
//!
//! These runs own sluice's stderr (a pipe the test may leave unread), so they find the
//! listener by a port chosen beforehand and know sluice is up when its control socket
//! answers, not from its log.

mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::{free_port, listener, signal, sluice_bin, Prng, TempDir};

const LONG: Duration = Duration::from_secs(60);

/// A host name as long as DNS allows (253 bytes): its close line is ~750 bytes, so that a
/// few hundred sessions fill a pipe and the log buffer behind it.
fn long_name() -> String {
    format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    )
}

/// A TLS 1.2 ClientHello with one cipher suite and an SNI extension naming `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let n = name.len();
    let mut sni = Vec::new();
    sni.extend_from_slice(&[0x00, 0x00]); // extension type server_name
    sni.extend_from_slice(&((n + 5) as u16).to_be_bytes()); // extension length
    sni.extend_from_slice(&((n + 3) as u16).to_be_bytes()); // server_name_list length
    sni.push(0); // name type host_name
    sni.extend_from_slice(&(n as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // legacy_session_id, empty
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![0x01]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01]; // handshake record
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// An upstream that reads a ClientHello of `n` bytes, answers `T`, then echoes.
fn echo_upstream(n: usize) -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut h = vec![0u8; n];
                if s.read_exact(&mut h).is_err() || s.write_all(b"T").is_err() {
                    return;
                }
                let mut buf = [0u8; 16384];
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

/// One whole session: the hello, `T` back, 1 KiB echoed and checked byte for byte, close.
fn session(addr: SocketAddr, hello: &[u8], seed: u64) -> Result<(), String> {
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(hello).map_err(|e| format!("hello: {e}"))?;
    let mut t = [0u8; 1];
    c.read_exact(&mut t)
        .map_err(|e| format!("no answer within 10 s (is the loop blocked?): {e}"))?;
    if t != *b"T" {
        return Err(format!("answered {t:?}"));
    }
    let data = Prng::new(seed).bytes(1024);
    c.write_all(&data).map_err(|e| format!("send: {e}"))?;
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back)
        .map_err(|e| format!("echo within 10 s: {e}"))?;
    if back != data {
        return Err("the echo differs".into());
    }
    Ok(())
}

/// `n` sessions, `concurrency` at a time; the first failure, if any.
fn sessions(addr: SocketAddr, hello: &[u8], n: usize, concurrency: usize) -> Result<(), String> {
    let next = Arc::new(Mutex::new(0usize));
    let failed = Arc::new(Mutex::new(None));
    thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = {
                    let mut k = next.lock().unwrap();
                    if *k >= n || failed.lock().unwrap().is_some() {
                        return;
                    }
                    *k += 1;
                    *k
                };
                if let Err(e) = session(addr, hello, i as u64) {
                    failed
                        .lock()
                        .unwrap()
                        .get_or_insert(format!("session {i}: {e}"));
                    return;
                }
            });
        }
    });
    let failed = failed.lock().unwrap().take();
    failed.map_or(Ok(()), Err)
}

/// `sluice run` whose stderr the test provides.
struct Run {
    child: Child,
    addr: SocketAddr,
    ctl: PathBuf,
    metrics: SocketAddr,
}

impl Run {
    fn start(dir: &TempDir, stderr: Stdio, env: &[(&str, &str)]) -> Run {
        let port = free_port();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ctl = dir.path("ctl.sock");
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ENVOY_IP", "127.0.0.1")
            .env("ENVOY_PORT", port.to_string())
            .env("ENVOY_LOG_LEVEL", "info")
            .env("ENVOY_WORKERS", "1")
            .env("ENVOY_CONTROL_SOCKET", &ctl)
            .env("ENVOY_METRICS_ADDR", metrics.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start sluice");
        drop(cmd); // our copy of the child's stderr
        let run = Run {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            ctl,
            metrics,
        };
        let until = Instant::now() + LONG;
        while !run.try_ctl(&["show", "stats"]).0 {
            assert!(Instant::now() < until, "the control socket never answered");
            thread::sleep(Duration::from_millis(50));
        }
        run
    }

    fn try_ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(sluice_bin())
            .arg("ctl")
            .args(args)
            .env("ENVOY_CONTROL_SOCKET", &self.ctl)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn ctl(&self, args: &[&str]) -> String {
        let (ok, out) = self.try_ctl(args);
        assert!(ok, "sluice ctl {args:?}: {out}");
        out
    }

    /// A value of `show stats` (0 when absent).
    fn stat(&self, key: &str) -> u64 {
        self.ctl(&["show", "stats"])
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map_or(0, |v| v.parse().unwrap())
    }

    /// Sessions closed, by any reason.
    fn closed(&self) -> u64 {
        self.ctl(&["show", "stats"])
            .lines()
            .filter(|l| l.starts_with("closed."))
            .map(|l| l.split('=').nth(1).unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// Waits until sluice has closed `n` sessions: their close lines are logged.
    fn wait_closed(&self, n: u64) {
        let until = Instant::now() + LONG;
        while self.closed() < n {
            assert!(Instant::now() < until, "{n} sessions never closed");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn scrape(&self) -> String {
        let mut c = TcpStream::connect(self.metrics).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        write!(c, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    }

    /// The supervisor and its workers.
    #[cfg(target_os = "linux")]
    fn pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let mut pids = vec![pid];
        pids.extend(
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        pids
    }

    /// Waits until the process has exited; false if it has not within `timeout`.
    fn exited_within(&mut self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (File, OwnedFd) {
    let (r, w) = sluice::sys::fd::pipe().unwrap();
    (File::from(r), w)
}

/// A pipe in packet mode (Linux `O_DIRECT`): each read returns exactly one write.
#[cfg(target_os = "linux")]
fn packet_pipe() -> (File, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_DIRECT | libc::O_CLOEXEC) },
        0
    );
    // SAFETY: just created, owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Reads `r` on a thread from now on, into the returned text.
fn read_from_now(mut r: File) -> Arc<Mutex<Vec<u8>>> {
    let text = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                return;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    text
}

/// Checks a line as the logger writes it: `2026-11-25T13:14:04.057Z LEVEL [target] ...`,
/// the message logfmt (the strict reader of tests/util).
fn well_formed(line: &str) -> bool {
    util::logfmt::parse(line.as_bytes()).is_ok()
}

fn close_lines(text: &str) -> usize {
    text.lines().filter(|l| l.contains("] close sid=")).count()
}

/// The marker that stands where lines were dropped.
const DROPPED: &str = "] log lines dropped lines=";

/// The number in every `log lines dropped lines=N` line, added up.
fn reported_drops(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split(DROPPED).nth(1))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// The outage: a worker at `info` writing to a pipe whose reader stalled served one
/// pipe buffer of sessions, then none. Now every session is served, the lines that did not
/// fit are counted (show stats, /metrics) and reported once the reader is back.
#[test]
fn a_stderr_nobody_reads_never_stalls_a_session() {
    let dir = TempDir::new("log-stalled");
    let hello = client_hello(&long_name());
    let up = echo_upstream(hello.len());
    let (r, w) = pipe();
    let run = Run::start(&dir, Stdio::from(w), &[("ENVOY_UPSTREAM", &up.to_string())]);
    // nobody reads: 1,500 close lines of ~750 bytes against a 64 KiB pipe
    let n = 1500;
    if let Err(e) = sessions(run.addr, &hello, n, 8) {
        panic!("{e}");
    }
    run.wait_closed(n as u64);
    let dropped = run.stat("log_lines_dropped");
    assert!(
        dropped > 0,
        "nothing dropped: {}",
        run.ctl(&["show", "stats"])
    );
    assert!(run.stat("log_lines.info") >= n as u64);
    let metrics = run.scrape();
    assert!(
        util::metric_value(&metrics, "sluice_log_lines_dropped_total") >= dropped,
        "{metrics}"
    );
    assert!(
        util::metric_value(&metrics, "sluice_log_lines_total{level=\"info\"}") >= n as u64,
        "{metrics}"
    );

    // the reader resumes: what was waiting comes and the gap is reported...
    let text = read_from_now(r);
    let until = Instant::now() + LONG;
    let settled = |run: &Run, t: &str| {
        // every line written or counted as dropped, and every drop reported
        let logged: u64 = ["error", "warn", "info", "debug", "trace"]
            .iter()
            .map(|l| run.stat(&format!("log_lines.{l}")))
            .sum();
        let dropped = run.stat("log_lines_dropped");
        let seen = t.lines().count() as u64;
        let markers = t.lines().filter(|l| l.contains(DROPPED)).count() as u64;
        let ok = seen - markers + dropped == logged && reported_drops(t) == dropped;
        (ok, format!("{seen} lines seen ({markers} markers reporting {}), {dropped} dropped, {logged} logged", reported_drops(t)))
    };
    loop {
        let t = String::from_utf8(text.lock().unwrap().clone()).unwrap();
        let (ok, counts) = settled(&run, &t);
        if ok {
            break;
        }
        assert!(Instant::now() < until, "lines lost: {counts}");
        thread::sleep(Duration::from_millis(50));
    }
    // ... and new lines flow again, nothing dropped now
    let dropped = run.stat("log_lines_dropped");
    sessions(run.addr, &hello, 20, 4).unwrap();
    run.wait_closed(n as u64 + 20);
    let until = Instant::now() + LONG;
    loop {
        let t = String::from_utf8(text.lock().unwrap().clone()).unwrap();
        let after_gap = t.rsplit(DROPPED).next().unwrap();
        if close_lines(after_gap) == 20 {
            assert!(t.ends_with('\n'));
            assert!(t.lines().all(well_formed), "a cut or mixed line");
            assert_eq!(run.stat("log_lines_dropped"), dropped);
            assert!(settled(&run, &t).0);
            break;
        }
        assert!(
            Instant::now() < until,
            "{} close lines after the gap",
            close_lines(after_gap)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Exit is not held up by a sink that takes nothing: what is buffered is given a bounded
/// time, then the process goes (a drain, a stop, the old generation of an upgrade).
#[test]
fn a_stalled_stderr_does_not_hold_up_a_stop() {
    let dir = TempDir::new("log-stop");
    let hello = client_hello(&long_name());
    let up = echo_upstream(hello.len());
    let (_unread, w) = pipe();
    let mut run = Run::start(&dir, Stdio::from(w), &[("ENVOY_UPSTREAM", &up.to_string())]);
    // enough to fill the pipe (64 KiB) and then some: the next write would wait
    sessions(run.addr, &hello, 200, 4).unwrap();
    run.wait_closed(200);
    signal(run.child.id(), "TERM");
    assert!(
        run.exited_within(LONG),
        "sluice did not exit: a worker waits on its log"
    );
}

/// Two workers at a high session rate on one pipe: each read of a packet-mode pipe returns
/// one write, which must hold whole lines of one process, at most PIPE_BUF bytes (so that
/// the kernel never interleaves two writers' bytes).
#[cfg(target_os = "linux")]
#[test]
fn two_workers_on_one_pipe_write_whole_lines_only() {
    let dir = TempDir::new("log-packets");
    let hello = client_hello(&long_name());
    let up = echo_upstream(hello.len());
    let (mut r, w) = packet_pipe();
    let run = Run::start(
        &dir,
        Stdio::from(w),
        &[("ENVOY_UPSTREAM", &up.to_string()), ("ENVOY_WORKERS", "2")],
    );
    let packets = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let sink = Arc::clone(&packets);
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = r.read(&mut buf) {
            if k == 0 {
                return;
            }
            sink.lock().unwrap().push(buf[..k].to_vec());
        }
    });
    let n = 3000;
    sessions(run.addr, &hello, n, 16).unwrap();
    run.wait_closed(n as u64);
    let dropped = run.stat("log_lines_dropped");
    let until = Instant::now() + LONG;
    loop {
        let got: usize = packets
            .lock()
            .unwrap()
            .iter()
            .map(|p| close_lines(std::str::from_utf8(p).unwrap()))
            .sum();
        if got as u64 + dropped >= n as u64 {
            break;
        }
        assert!(Instant::now() < until, "{got} close lines of {n}");
        thread::sleep(Duration::from_millis(50));
    }
    let packets = packets.lock().unwrap();
    let (mut odd, mut even, mut batched) = (0, 0, 0);
    for p in packets.iter() {
        assert!(p.len() <= libc::PIPE_BUF, "a write of {} bytes", p.len());
        let text = std::str::from_utf8(p).unwrap();
        assert!(text.ends_with('\n'), "a write ending mid-line: {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        batched += usize::from(lines.len() > 1);
        for l in lines {
            assert!(well_formed(l), "a mixed line: {l:?}");
            if let Some(sid) = l.split(" sid=").nth(1) {
                let sid: u64 = sid.split(' ').next().unwrap().parse().unwrap();
                if sid % 2 == 1 {
                    odd += 1
                } else {
                    even += 1
                }
            }
        }
    }
    assert!(odd > 0 && even > 0, "both workers wrote: {odd} and {even}");
    assert!(batched > 0, "lines are batched, several a write");
}

fn lines_in(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` holds `n` close lines (and not more).
fn wait_close_lines(path: &Path, n: usize) {
    let until = Instant::now() + LONG;
    loop {
        let got = close_lines(&lines_in(path));
        if got == n {
            return;
        }
        assert!(got < n, "{}: {got} close lines, not {n}", path.display());
        assert!(
            Instant::now() < until,
            "{}: {got} close lines, not {n}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_log_target_changes_live() {
    let dir = TempDir::new("log-live");
    let hello = client_hello("example.test");
    let up = echo_upstream(hello.len());
    let (r, w) = pipe();
    let stderr = read_from_now(r);
    let run = Run::start(
        &dir,
        Stdio::from(w),
        &[("ENVOY_UPSTREAM", &up.to_string()), ("ENVOY_WORKERS", "2")],
    );
    let on_stderr = || close_lines(&String::from_utf8(stderr.lock().unwrap().clone()).unwrap());
    sessions(run.addr, &hello, 10, 2).unwrap();
    run.wait_closed(10);
    let until = Instant::now() + LONG;
    while on_stderr() < 10 {
        assert!(Instant::now() < until);
        thread::sleep(Duration::from_millis(20));
    }

    let file = dir.path("sluice.log");
    let target = format!("file:{}", file.display());
    let out = run.ctl(&["set", "ENVOY_LOG_TARGET", &target]);
    assert!(out.starts_with("ok: ENVOY_LOG_TARGET set"), "{out}");
    sessions(run.addr, &hello, 10, 2).unwrap();
    run.wait_closed(20);
    wait_close_lines(&file, 10);
    assert_eq!(on_stderr(), 10, "nothing more on stderr");
    assert!(lines_in(&file).lines().all(well_formed));

    // a target that cannot be opened is refused; the old one stays
    let (ok, out) = run.try_ctl(&["set", "ENVOY_LOG_TARGET", "file:/nonexistent/dir/x.log"]);
    assert!(!ok && out.contains("nothing changed"), "{out}");
    assert!(run
        .ctl(&["show", "config"])
        .contains(&format!("ENVOY_LOG_TARGET={target} (set)")));
    sessions(run.addr, &hello, 10, 2).unwrap();
    run.wait_closed(30);
    wait_close_lines(&file, 20);

    // and back
    let out = run.ctl(&["set", "ENVOY_LOG_TARGET", "stderr"]);
    assert!(out.starts_with("ok: "), "{out}");
    sessions(run.addr, &hello, 10, 2).unwrap();
    run.wait_closed(40);
    let until = Instant::now() + LONG;
    while on_stderr() < 20 {
        assert!(
            Instant::now() < until,
            "{} close lines on stderr",
            on_stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(100));
    assert_eq!(on_stderr(), 20);
    assert_eq!(close_lines(&lines_in(&file)), 20);
    // the supervisor follows the workers: its own lines went to the file meanwhile
    let text = String::from_utf8(stderr.lock().unwrap().clone()).unwrap();
    assert!(text.contains(&format!(
        "[sluice::supervisor] log lines go to a new target target={target}"
    )));
    assert!(
        lines_in(&file).contains("[sluice::supervisor] log lines go to a new target target=stderr")
    );
}

/// The processes (supervisor and workers) that still write to a file renamed to `old`.
#[cfg(target_os = "linux")]
fn still_writing_to(run: &Run, old: &Path) -> usize {
    run.pids()
        .iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| std::fs::read_link(e.path()).is_ok_and(|p| p == old))
                })
                .unwrap_or(false)
        })
        .count()
}

/// logrotate's way: the file is renamed, then sluice is told to reopen (SIGUSR1 to the
/// supervisor, which passes it on, or `sluice ctl reopen-logs`); every line is in one file
/// or the other, and the lines after the reopen are in the new one.
#[cfg(target_os = "linux")]
#[test]
fn a_rotated_file_is_reopened_without_losing_a_line() {
    let dir = TempDir::new("log-rotate");
    let hello = client_hello("example.test");
    let up = echo_upstream(hello.len());
    let file = dir.path("sluice.log");
    let target = format!("file:{}", file.display());
    let run = Run::start(
        &dir,
        Stdio::null(),
        &[
            ("ENVOY_UPSTREAM", &up.to_string()),
            ("ENVOY_WORKERS", "2"),
            ("ENVOY_LOG_TARGET", &target),
        ],
    );
    sessions(run.addr, &hello, 20, 4).unwrap();
    run.wait_closed(20);
    let first = dir.path("sluice.log.1");
    std::fs::rename(&file, &first).unwrap();
    sessions(run.addr, &hello, 20, 4).unwrap(); // still into the renamed file
    run.wait_closed(40);

    signal(run.child.id(), "USR1");
    let until = Instant::now() + LONG;
    while still_writing_to(&run, &first) > 0 {
        assert!(
            Instant::now() < until,
            "SIGUSR1 did not reopen every process's file"
        );
        thread::sleep(Duration::from_millis(20));
    }
    sessions(run.addr, &hello, 20, 4).unwrap();
    run.wait_closed(60);
    wait_close_lines(&file, 20);
    wait_close_lines(&first, 40);

    let second = dir.path("sluice.log.2");
    std::fs::rename(&file, &second).unwrap();
    let out = run.ctl(&["reopen-logs"]);
    assert_eq!(
        out.trim(),
        format!("ok: {target} reopened by 3 process(es)")
    );
    assert_eq!(still_writing_to(&run, &second), 0);
    sessions(run.addr, &hello, 20, 4).unwrap();
    run.wait_closed(80);
    wait_close_lines(&file, 20);
    wait_close_lines(&second, 20);
    wait_close_lines(&first, 40);
    for f in [&file, &first, &second] {
        let text = lines_in(f);
        assert!(text.ends_with('\n') && text.lines().all(well_formed));
    }
    assert_eq!(run.stat("log_lines_dropped"), 0);

    // a stop writes out what is buffered before each process goes: their last lines
    let mut run = run;
    signal(run.child.id(), "TERM");
    assert!(run.exited_within(LONG));
    let text = lines_in(&file);
    assert_eq!(
        text.matches("] drained, no session left, exiting").count(),
        2
    );
    assert!(
        text.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.contains("] every worker is gone, supervisor exiting pid=")),
        "{text}"
    );
}

/// The BSD layout Linux's `/dev/log` readers parse: `<PRI>Mmm dd hh:mm:ss sluice[PID]: MSG`.
#[cfg(target_os = "linux")]
fn bsd(d: &[u8]) -> (u32, u32, String) {
    let s = std::str::from_utf8(d).unwrap();
    let (pri, rest) = s[1..].split_once('>').unwrap();
    let b = rest.as_bytes();
    assert!(b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':' && b[15] == b' ');
    let rest = rest[16..].strip_prefix("sluice[").unwrap();
    let (pid, msg) = rest.split_once("]: ").unwrap();
    (pri.parse().unwrap(), pid.parse().unwrap(), msg.to_string())
}

#[cfg(target_os = "linux")]
#[test]
fn syslog_on_a_local_socket_and_over_udp() {
    use std::net::UdpSocket;
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("log-syslog");
    let hello = client_hello("example.test");
    let up = echo_upstream(hello.len());
    let sock = dir.path("log");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(LONG)).unwrap();
    let run = Run::start(
        &dir,
        Stdio::null(),
        &[
            ("ENVOY_UPSTREAM", &up.to_string()),
            ("ENVOY_LOG_TARGET", &format!("syslog:{}", sock.display())),
            ("ENVOY_LOG_FACILITY", "local3"),
        ],
    );
    sessions(run.addr, &hello, 3, 1).unwrap();
    let workers: Vec<u32> = run.pids()[1..].to_vec();
    let mut buf = vec![0u8; 1 << 16];
    let mut closes = 0;
    while closes < 3 {
        let n = rx.recv(&mut buf).unwrap();
        let (pri, pid, msg) = bsd(&buf[..n]);
        if msg.starts_with("[sluice::session] close sid=") {
            assert_eq!(pri, 19 * 8 + 6, "local3.info");
            assert_eq!(workers, [pid]);
            assert!(msg.contains(" sni=example.test "), "{msg}");
            closes += 1;
        } else {
            assert!(msg.starts_with("[sluice"), "{msg}");
        }
    }

    // over UDP, RFC 5424, changed live
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(LONG)).unwrap();
    let target = format!("syslog:{}", udp.local_addr().unwrap());
    let out = run.ctl(&["set", "ENVOY_LOG_TARGET", &target]);
    assert!(out.starts_with("ok: "), "{out}");
    sessions(run.addr, &hello, 1, 1).unwrap();
    loop {
        let n = udp.recv(&mut buf).unwrap();
        let d = std::str::from_utf8(&buf[..n]).unwrap();
        let f: Vec<&str> = d.splitn(8, ' ').collect();
        assert_eq!(f[0], format!("<{}>1", 19 * 8 + 6), "{d}");
        assert!(f[1].ends_with('Z') && f[1].len() == 24, "{d}");
        assert_eq!(f[3], "sluice");
        assert_eq!(&f[5..7], ["-", "-"]);
        if f[7].starts_with("[sluice::session] close sid=") {
            assert_eq!(f[4], workers[0].to_string());
            break;
        }
    }
    // a socket nobody listens on is refused at once
    let (ok, out) = run.try_ctl(&[
        "set",
        "ENVOY_LOG_TARGET",
        &format!("syslog:{}", dir.path("nobody").display()),
    ]);
    assert!(!ok && out.contains("nothing changed"), "{out}");
}

/// A line another thread logs (the capture writer's) while the loop sleeps with nothing to
/// do wakes the loop and is written out: the loop is the only writer, the thread never is.
#[test]
fn a_line_from_the_capture_thread_wakes_an_idle_loop() {
    let dir = TempDir::new("log-waker");
    let captures = dir.path("captures");
    // 10,000 old captures and no limit that removes them: after each capture the writer
    // thread lists and measures them all, which keeps it busy long after the loop is idle
    std::fs::create_dir_all(&captures).unwrap();
    for i in 0..10_000 {
        std::fs::write(captures.join(format!("{i:013}-1-1-old.bin")), b"").unwrap();
    }
    let mut sluice = util::Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CAPTURE_DIR", captures.to_str().unwrap()),
        ("ENVOY_CAPTURE_MAX_FILES", "1000000"),
    ]);
    let garbage = |sluice: &util::Sluice| {
        let mut c = sluice.connect();
        c.write_all(b"\x16\x03\x01\x00\x05\x02garbage, not a ClientHello")
            .unwrap();
        let _ = c.read(&mut [0u8; 64]); // closed by sluice: invalid_tls, captured
    };
    garbage(&sluice);
    // The first capture written: the writer now lists the 10,001 files. Meanwhile the
    // directory becomes a file, so the writer's next capture fails, and it says so once the
    // listing is over, when the loop has long gone to sleep.
    let deadline = std::time::Instant::now() + LONG;
    while !std::fs::read_dir(&captures).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with("-1-invalid_tls.bin")
    }) {
        assert!(std::time::Instant::now() < deadline, "no first capture");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::rename(&captures, dir.path("old")).unwrap();
    std::fs::write(&captures, b"not a directory").unwrap();
    garbage(&sluice);
    sluice.wait_for_count("] close sid=", 2, LONG);
    let line = sluice.wait_for_log("Not a directory", LONG);
    assert!(
        line.contains("WARN  [sluice::admin::capture] capture not written path="),
        "{line}"
    );
}

/// Lines waiting in the buffer never give the loop a wait shorter than its 50 ms timer tick:
/// every turn flushes what is due, and an idle loop writes at its next tick. A timeout of
/// its own for the lines (the flush period, 5 ms) re-armed the kernel's timer on nearly
/// every wait, an MSR write and a VM exit each under KVM, and cost more CPU than the lines
/// (issue 20: 4.5–4.7 MSR writes a session at `info` against 2.7 at `warn`). The waits are read
/// off `strace` at `info` under a steady load: with the lines' own timeout most of them were
/// 1–5 ms (504 of 804); by the tick, about a tenth are (77 of 803).
#[cfg(target_os = "linux")]
#[test]
fn waiting_lines_never_shorten_the_loops_wait() {
    let strace = util::which("strace").expect("strace (Debian package strace; make deps)");
    let dir = TempDir::new("log-timeout");
    let hello = client_hello("example.test");
    let up = echo_upstream(hello.len());
    let log = dir.path("stderr.log");
    let run = Run::start(
        &dir,
        Stdio::from(File::create(&log).unwrap()),
        &[("ENVOY_UPSTREAM", &up.to_string())],
    );
    let worker = *run.pids().get(1).expect("a worker");
    let trace = dir.path("strace.out");
    let mut tracer = Command::new(strace)
        .args(["-qq", "-e", "trace=epoll_wait", "-o"])
        .arg(&trace)
        .args(["-p", &worker.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(500)); // attached
    let n = 400;
    sessions(run.addr, &hello, n, 2).unwrap();
    run.wait_closed(n as u64);
    signal(tracer.id(), "INT");
    tracer.wait().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    // epoll_wait(3, [...], 1024, 37) = 1: the timeout is the last argument
    let waits: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with("epoll_wait("))
        .filter_map(|l| l.rsplit_once(") =")?.0.rsplit(", ").next()?.parse().ok())
        .collect();
    let finite = waits.iter().filter(|&&t| t > 0).count();
    let short = waits.iter().filter(|&&t| (1..=5).contains(&t)).count();
    assert!(
        finite >= 100,
        "{finite} timed waits in {} lines",
        text.lines().count()
    );
    assert!(
        short * 3 < finite,
        "{short} of {finite} timed waits were 1–5 ms: the lines set the loop's timeout"
    );
    assert!(close_lines(&lines_in(&log)) > 0, "no close line written");
}
