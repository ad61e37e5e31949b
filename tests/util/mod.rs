//! Shared pieces of the integration tests: start the real `sluice` binary on an ephemeral
//! port and read its log, start real peers (haproxy, openssl s_server, plain TCP servers),
//! generate checksummed payloads. No mocks: every byte crosses real loopback sockets.

#![allow(dead_code)]

pub mod logfmt;
pub mod traffic;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The path of the sluice binary under test.
pub fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A running sluice whose stderr is collected.
pub struct Sluice {
    pub child: Child,
    pub addr: SocketAddr,
    /// The first process may exit on purpose (a binary upgrade hands over to a successor).
    pub may_exit: bool,
    pub log: Arc<Mutex<String>>,
    /// The same log as raw bytes.
    pub raw_log: Arc<Mutex<Vec<u8>>>,
    /// Lines holding any of these are another program's (a test's stand-in binary), not
    /// held to logfmt by the check at the end.
    pub foreign_lines: Vec<&'static str>,
}

impl Sluice {
    /// Starts `sluice run` with ENVOY_PORT=0 and the given settings; waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Sluice {
        Sluice::start_bin(&sluice_bin(), env)
    }

    /// Starts this binary (a copy, for upgrade tests) the same way.
    pub fn start_bin(bin: &Path, env: &[(&str, &str)]) -> Sluice {
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        Sluice::start_cmd(cmd, env)
    }

    /// Starts `sluice run` through `sh` with the open-file limit (soft and hard) set to
    /// `nofile` first; `exec` keeps the pid, so `workers()` still finds the children.
    pub fn start_with_nofile(nofile: u32, env: &[(&str, &str)]) -> Sluice {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" run"))
            .arg(sluice_bin());
        Sluice::start_cmd(cmd, env)
    }

    /// Starts `cmd` (which must end up running `sluice run`) with ENVOY_PORT=0, one worker
    /// and the given settings; waits until it listens. The log is kept as raw bytes too, so
    /// a test can look for bytes that are not UTF-8.
    pub fn start_cmd(mut cmd: Command, env: &[(&str, &str)]) -> Sluice {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ENVOY_IP", "127.0.0.1")
            .env("ENVOY_PORT", "0")
            .env("ENVOY_LOG_LEVEL", "info")
            .env("ENVOY_WORKERS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A binary copied by another test thread can be busy for an instant: a fork in
        // that thread's process inherits the copy's write descriptor until its exec.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("start sluice"),
            }
        };
        let log = Arc::new(Mutex::new(String::new()));
        let raw_log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (sink, raw_sink) = (Arc::clone(&log), Arc::clone(&raw_log));
        thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                raw_sink.lock().unwrap().extend_from_slice(&line);
                // As `BufRead::lines` would: without the "\n" or "\r\n" at the end.
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                let mut l = sink.lock().unwrap();
                l.push_str(&String::from_utf8_lossy(text));
                l.push('\n');
                line.clear();
            }
        });
        let mut s = Sluice {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            may_exit: false,
            log,
            raw_log,
            foreign_lines: Vec::new(),
        };
        // `listening on ` is the form before issue 14 (so that the check at the end can be
        // shown to fail against an older binary)
        let line = s.wait_for_log_any(
            &["listening addr=", "listening on "],
            Duration::from_secs(10),
        );
        let addr = match logfmt::parse(line.as_bytes()) {
            Ok(r) => r.get("addr").expect("addr= on the listening line"),
            Err(_) => line
                .split("listening on ")
                .nth(1)
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_else(|| panic!("no address on {line:?}"))
                .to_string(),
        };
        s.addr = addr.parse().unwrap();
        s
    }

    /// Every line logged so far, parsed (panics, naming the line, on one that is not
    /// logfmt).
    pub fn records(&self) -> Vec<logfmt::Record> {
        logfmt::parse_all(&self.raw_log()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lines whose free words are `message`, parsed.
    pub fn records_of(&self, message: &str) -> Vec<logfmt::Record> {
        self.records()
            .into_iter()
            .filter(|r| r.message() == message)
            .collect()
    }

    /// Every byte logged so far, exactly as written to stderr.
    pub fn raw_log(&self) -> Vec<u8> {
        self.raw_log.lock().unwrap().clone()
    }

    /// One scrape of `/metrics` (needs ENVOY_METRICS_ADDR), without curl: the body.
    pub fn scrape(&mut self) -> String {
        let line = self.wait_for_log("metrics listening url=http://", Duration::from_secs(5));
        let url = fields(&line)["url"].clone();
        let url = url.strip_prefix("http://").unwrap();
        let (addr, path) = url.split_once('/').unwrap();
        let mut c = TcpStream::connect(addr).expect("connect to the metrics address");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .expect("read the metrics reply");
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200"),
            "{head}"
        );
        body.to_string()
    }

    /// The value of one series (`name` with its labels, as exposed), 0 when absent.
    pub fn metric(&mut self, series: &str) -> u64 {
        metric_value(&self.scrape(), series)
    }

    /// Open descriptors of the (single) worker.
    pub fn worker_fds(&self) -> usize {
        let w = self.workers();
        assert_eq!(w.len(), 1, "one worker expected: {w:?}");
        fd_count(w[0])
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle`; returns it. Panics with the log on timeout.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait().map(|s| s.filter(|_| !self.may_exit)) {
                panic!(
                    "sluice exited ({status}) before logging {needle:?}; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > until {
                panic!(
                    "no log line with {needle:?} within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing any of `needles`; returns it.
    pub fn wait_for_log_any(&mut self, needles: &[&str], timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let found = self
                .log()
                .lines()
                .find(|l| needles.iter().any(|n| l.contains(n)))
                .map(String::from);
            if let Some(l) = found {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait().map(|s| s.filter(|_| !self.may_exit)) {
                panic!(
                    "sluice exited ({status}) before logging {needles:?}; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > until {
                panic!(
                    "no log line with {needles:?} within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` lines contain `needle`.
    pub fn wait_for_count(&mut self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let until = Instant::now() + timeout;
        loop {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| l.contains(needle))
                .map(String::from)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            if Instant::now() > until {
                panic!(
                    "{} of {n} lines with {needle:?} within {timeout:?}; log tail:\n{}",
                    lines.len(),
                    tail(&self.log(), 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The worker processes (children of the supervisor).
    pub fn workers(&self) -> Vec<u32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The resident set size of the workers, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.workers().iter().map(|&p| rss_kib(p)).sum()
    }

    /// Connects a client.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to sluice");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }
}

impl Drop for Sluice {
    /// Stops sluice, then holds every line it logged to the strict logfmt reader: each test
    /// that starts sluice checks the lines it made it write (unless it failed already).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let raw = self.raw_log();
            let ours: Vec<&[u8]> = raw
                .split(|&b| b == b'\n')
                .filter(|l| {
                    !self
                        .foreign_lines
                        .iter()
                        .any(|f| l.windows(f.len()).any(|w| w == f.as_bytes()))
                })
                .collect();
            if let Err(e) = logfmt::parse_all(&ours.join(&b'\n')) {
                panic!("{e}");
            }
        }
    }
}

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The value of `series` (name and labels as exposed) in a Prometheus text body; 0 if absent.
pub fn metric_value(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap_or(0.0) as u64)
}

/// The sum of every series of the family `name` (whatever their labels) in a Prometheus
/// text body; 0 if there is none.
pub fn metric_total(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            Some(value.trim().parse::<f64>().unwrap_or(0.0) as u64)
        })
        .sum()
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `key=value` fields of a log line, values unquoted (panics on a line that is not
/// logfmt).
pub fn fields(line: &str) -> HashMap<String, String> {
    let r = logfmt::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
    r.pairs
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// A listener on an ephemeral loopback port, with a backlog deep enough for a burst of a
/// thousand connects (std's default of 128 overflows, and the kernel then drops handshakes).
pub fn listener() -> (TcpListener, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(4096).unwrap();
    let l: TcpListener = s.into();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A port that is free right now (bound then released).
pub fn free_port() -> u16 {
    listener().1.port()
}

/// Deterministic pseudo-random bytes (xorshift64*), so both ends can regenerate a stream.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// FNV-1a over a stream, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub hash: u64,
    pub len: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
        }
        self.len += data.len() as u64;
    }

    pub fn of(data: &[u8]) -> Digest {
        let mut d = Digest::default();
        d.update(data);
        d
    }
}

/// Sends `n` pseudo-random bytes from `seed` in chunks; returns their digest.
pub fn send_stream(s: &mut TcpStream, seed: u64, n: usize) -> Digest {
    let mut rng = Prng::new(seed);
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        rng.fill(&mut buf[..k]);
        s.write_all(&buf[..k]).expect("write stream");
        d.update(&buf[..k]);
        left -= k;
    }
    d
}

/// Reads until EOF; returns the digest of what came.
pub fn read_to_eof(s: &mut TcpStream) -> Digest {
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return d,
            Ok(n) => d.update(&buf[..n]),
            Err(e) => panic!("read after {} bytes: {e}", d.len),
        }
    }
}

/// The digest `send_stream(seed, n)` produces.
pub fn expected(seed: u64, n: usize) -> Digest {
    let mut rng = Prng::new(seed);
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        rng.fill(&mut buf[..k]);
        d.update(&buf[..k]);
        left -= k;
    }
    d
}

/// Reads exactly `n` bytes.
pub fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.read_exact(&mut v)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    v
}

/// True if `s` is closed by the peer (EOF or reset) within `timeout`.
pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + timeout;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if Instant::now() > until {
            return false;
        }
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sluice-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop (haproxy, openssl s_server, ...).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) {
    let until = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < until,
            "nothing listening on {addr} within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Finds an executable in PATH or the sbin directories (haproxy lives in /usr/sbin).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A self-signed certificate and key for `example.test`, made with the real openssl.
pub fn make_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=example.test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl")
        .success();
    assert!(ok, "openssl req failed");
    (cert, key)
}

/// `openssl s_server -www` on an ephemeral port.
pub fn s_server(dir: &TempDir) -> (Proc, SocketAddr) {
    let (cert, key) = make_cert(dir);
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-www", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped());
    spawn_listening(cmd, port)
}

/// Starts a quiet peer that will listen on loopback `port`; returns it once it does.
fn spawn_listening(mut cmd: Command, port: u16) -> (Proc, SocketAddr) {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, Duration::from_secs(10));
    (Proc(child), addr)
}

/// haproxy in mode tcp, forwarding `listen` to `server` with the given server options.
pub fn haproxy(dir: &TempDir, server: SocketAddr, server_opts: &str) -> (Proc, SocketAddr) {
    let bin = which("haproxy").expect("haproxy is installed (make deps)");
    let port = free_port();
    let cfg = format!(
        "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    server s1 {server} {server_opts}\n"
    );
    let path = dir.path("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&path).stdin(Stdio::null());
    spawn_listening(cmd, port)
}

/// The PROXY header length of a fixture, per its MANIFEST line.
pub fn header_len(name: &str) -> usize {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/MANIFEST.tsv"),
    )
    .unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with(name))
        .expect("fixture in MANIFEST");
    line.split([' ', ';', '\t'])
        .find_map(|w| w.strip_prefix("hdr_len="))
        .map_or(0, |v| v.parse().unwrap())
}

/// Sends `sig` (e.g. "HUP", "USR2", "KILL") to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid}");
}

impl Sluice {
    /// A guard that kills every supervisor generation this instance's log names (after an
    /// upgrade the serving one is not the process the test started).
    pub fn stop_all_generations(&self) -> StopGenerations {
        StopGenerations(Arc::clone(&self.log))
    }
}

/// See [`Sluice::stop_all_generations`].
pub struct StopGenerations(Arc<Mutex<String>>);

impl Drop for StopGenerations {
    fn drop(&mut self) {
        let log = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        for pid in log
            .lines()
            .filter(|l| l.contains("supervisor starting pid="))
            .filter_map(|l| l.split("pid=").nth(1))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// `sluice ctl ARGS...` as an operator types it: (exit status 0, stdout).
pub fn ctl(sock: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(sluice_bin())
        .arg("ctl")
        .args(args)
        .env("ENVOY_CONTROL_SOCKET", sock)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `sluice ctl ARGS...` that must succeed: its stdout.
pub fn ctl_ok(sock: &Path, args: &[&str]) -> String {
    let (ok, text) = ctl(sock, args);
    assert!(ok, "ctl {args:?}: {text}");
    text
}

/// `promtool check metrics` (the real one, at `promtool`) accepts `body`, an exposition.
pub fn promtool_check_metrics(promtool: &Path, body: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let res = check.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}
