#![cfg(test)]
//! Live operations against the real binary: `set` and SIGHUP under load, bad `set`s, trace,
//! capture replayed through `sluice inspect`, the control socket's mode, drain, and a
//! Prometheus scrape checked with the real `promtool`.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use util::*;

fn hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// An upstream that reads the ClientHello, answers its one-byte `tag`, then echoes.
fn tagged_upstream(tag: u8) -> SocketAddr {
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
                let _ = s.write_all(&[tag]);
                let mut buf = [0u8; 4096];
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

/// One short session: the tag of the upstream it reached.
fn session_tag(addr: SocketAddr) -> Result<u8, String> {
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&hello()).map_err(|e| e.to_string())?;
    let mut t = [0u8; 1];
    c.read_exact(&mut t).map_err(|e| e.to_string())?;
    Ok(t[0])
}

/// Sends one command on an open control connection; returns the reply lines.
fn command(conn: &mut BufReader<UnixStream>, line: &str) -> Vec<String> {
    writeln!(conn.get_mut(), "{line}").unwrap();
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        assert!(
            conn.read_line(&mut l).unwrap() > 0,
            "control socket closed after {line:?}"
        );
        let l = l.trim_end_matches('\n').to_string();
        if l.is_empty() {
            return out;
        }
        out.push(l);
    }
}

fn ctl(sock: &std::path::Path) -> BufReader<UnixStream> {
    BufReader::new(UnixStream::connect(sock).expect("control socket"))
}

/// Runs short sessions in a loop until stopped; counts successes per tag and failures.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    by_tag: Arc<[AtomicU64; 256]>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let by_tag: Arc<[AtomicU64; 256]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let (s, f, t) = (Arc::clone(&stop), Arc::clone(&failed), Arc::clone(&by_tag));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match session_tag(addr) {
                    Ok(tag) => t[tag as usize].fetch_add(1, Ordering::Relaxed),
                    Err(_) => f.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        Load {
            stop,
            failed,
            by_tag,
            handle: Some(handle),
        }
    }

    fn count(&self, tag: u8) -> u64 {
        self.by_tag[tag as usize].load(Ordering::Relaxed)
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        self.failed.load(Ordering::Relaxed)
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A long-lived session on the current upstream: returns the stream after the tag.
fn long_lived(addr: SocketAddr, expect_tag: u8) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_exact(&mut c, 1), [expect_tag]);
    c
}

fn echo_check(c: &mut TcpStream, n: usize, seed: u64) {
    let data = Prng::new(seed).bytes(n);
    for chunk in data.chunks(4096) {
        c.write_all(chunk).unwrap();
        assert_eq!(read_exact(c, chunk.len()), chunk);
    }
}

#[test]
fn set_changes_the_upstream_under_load_new_sessions_move_old_ones_stay() {
    let (a, b) = (tagged_upstream(b'A'), tagged_upstream(b'B'));
    let dir = TempDir::new("set");
    let sock = dir.path("ctl.sock");
    let sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &a.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let mut old: Vec<TcpStream> = (0..5).map(|_| long_lived(sluice.addr, b'A')).collect();
    let load = Load::start(sluice.addr);
    wait_until("load on A", || load.count(b'A') > 20);
    // The same through `sluice ctl`, as an operator would type it.
    let out = Command::new(sluice_bin())
        .args(["ctl", "set", "ENVOY_UPSTREAM", &b.to_string()])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && reply.starts_with("ok:"), "{reply}");
    wait_until("load on B", || load.count(b'B') > 20);
    let failed = load.finish();
    assert_eq!(failed, 0, "sessions failed across the change");
    // New sessions go to B; the five opened before still talk to A, byte-exact.
    assert_eq!(session_tag(sluice.addr), Ok(b'B'));
    for (i, c) in old.iter_mut().enumerate() {
        echo_check(c, 64 << 10, i as u64);
    }
}

#[test]
fn sighup_rereads_the_config_file_under_load() {
    let (a, b) = (tagged_upstream(b'A'), tagged_upstream(b'B'));
    let dir = TempDir::new("hup");
    let file = dir.path("sluice.env");
    std::fs::write(
        &file,
        format!("# set by the operator\nENVOY_UPSTREAM={a}\n"),
    )
    .unwrap();
    let sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CONFIG_FILE", file.to_str().unwrap()),
    ]);
    let mut old = long_lived(sluice.addr, b'A');
    let load = Load::start(sluice.addr);
    wait_until("load on A", || load.count(b'A') > 20);
    // A bad file is refused whole: the old config stays.
    std::fs::write(&file, format!("ENVOY_UPSTREAM={b}\nENVOY_PORT=eighty\n")).unwrap();
    signal(sluice.child.id(), "HUP");
    let mut s = sluice;
    s.wait_for_log("reload refused", Duration::from_secs(5));
    assert!(s.log().contains("ENVOY_PORT"), "the refusal names the key");
    let before_b = load.count(b'B');
    assert_eq!(before_b, 0);
    std::fs::write(&file, format!("ENVOY_UPSTREAM={b}\n")).unwrap();
    signal(s.child.id(), "HUP");
    s.wait_for_log(
        "config applied to new sessions signal=SIGHUP",
        Duration::from_secs(5),
    );
    wait_until("load on B", || load.count(b'B') > 20);
    assert_eq!(load.finish(), 0, "sessions failed across the reloads");
    echo_check(&mut old, 64 << 10, 9);
}

#[test]
fn bad_commands_and_sets_are_refused_and_change_nothing() {
    let dir = TempDir::new("bad");
    let sock = dir.path("ctl.sock");
    let _sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:9"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is the owner's only");
    let mut c = ctl(&sock);
    let before = command(&mut c, "show config");
    for bad in [
        "set ENVOY_PORT 99999",
        "set ENVOY_NOPE 1",
        "set ENVOY_UPSTREAM no-port",
        "frobnicate",
    ] {
        let r = command(&mut c, bad);
        assert!(r[0].starts_with("error:"), "{bad}: {r:?}");
    }
    assert!(command(&mut c, "set ENVOY_PORT 99999")[0].contains("ENVOY_PORT"));
    // Same connection, still usable, nothing changed.
    assert_eq!(command(&mut c, "show config"), before);
    assert!(command(&mut c, "help")
        .iter()
        .any(|l| l.starts_with("trace")));
    let r = command(&mut c, "set ENVOY_IDLE_TIMEOUT_MS 1234");
    assert!(r[0].starts_with("ok:"), "{r:?}");
    assert!(
        command(&mut c, "show config").contains(&"ENVOY_IDLE_TIMEOUT_MS=1234 (set)".to_string())
    );
}

#[test]
fn trace_on_a_name_dumps_that_name_only_at_info() {
    let up = tagged_upstream(b'T');
    let dir = TempDir::new("trace");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_LOG_LEVEL", "info"),
    ]);
    let mut c = ctl(&sock);
    assert!(command(&mut c, "trace example.test")[0].starts_with("ok:"));
    // Traced: SNI example.test. Not traced: a hello without SNI.
    let mut t = TcpStream::connect(sluice.addr).unwrap();
    t.write_all(&hello()).unwrap();
    assert_eq!(read_exact(&mut t, 1), b"T");
    let mut u = TcpStream::connect(sluice.addr).unwrap();
    u.write_all(&fixture("client-openssl-3.0.19-s_client-noservername.bin"))
        .unwrap();
    drop((t, u));
    let closes = sluice.wait_for_count("] close sid=", 2, Duration::from_secs(10));
    let sid_of = |sni: &str| {
        closes
            .iter()
            .find(|l| fields(l)["sni"] == sni)
            .map(|l| fields(l)["sid"].clone())
            .unwrap()
    };
    let (traced, plain) = (sid_of("example.test"), sid_of("-"));
    let log = sluice.log();
    let dump =
        format!("INFO  [sluice::trace] ClientHello sid={traced} listener=default bytes=517 ");
    assert!(
        log.contains(&dump),
        "a hex dump at info for the traced name:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "INFO  [sluice::trace] dump sid={traced} of=client_hello offset=0000 hex=\"1603 0102 0001 0001 fc03 03"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "transition sid={traced} listener=default from=Connecting to=Connected"
        )),
        "transitions too"
    );
    assert!(
        !log.contains(&format!("ClientHello sid={plain} ")),
        "nothing for the other session"
    );
    assert!(
        !log.contains(&format!("transition sid={plain} ")),
        "nothing for the other session"
    );
    assert!(command(&mut c, "untrace all")[0].starts_with("ok: 1"));
}

fn inspect_facts(path: &std::path::Path) -> (Option<i32>, Vec<String>) {
    let out = Command::new(sluice_bin())
        .arg("inspect")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code(),
        text.lines()
            .filter(|l| !l.starts_with("file="))
            .map(String::from)
            .collect(),
    )
}

#[test]
fn captures_of_failed_and_traced_sessions_replay_through_inspect() {
    let up = tagged_upstream(b'C');
    let dir = TempDir::new("capture");
    let cap = dir.path("captures");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CAPTURE_DIR", cap.to_str().unwrap()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    assert!(command(&mut ctl(&sock), "trace example.test")[0].starts_with("ok:"));
    let failing = "edge-v1-longer-than-107.bin";
    let mut c = TcpStream::connect(sluice.addr).unwrap();
    c.write_all(&fixture(failing)).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let traced = "lb-haproxy-2.6-v2-tcp4-curl.bin";
    let mut c = TcpStream::connect(sluice.addr).unwrap();
    c.write_all(&fixture(traced)).unwrap();
    assert_eq!(read_exact(&mut c, 1), b"C");
    drop(c);
    sluice.wait_for_count("reason=", 2, Duration::from_secs(10));
    let mut files = Vec::new();
    wait_until("two captures", || {
        files = std::fs::read_dir(&cap)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                    .collect()
            })
            .unwrap_or_default();
        files.len() == 2
    });
    for (name, tag) in [(failing, "invalid_proxy"), (traced, "traced")] {
        let captured = files
            .iter()
            .find(|p| p.to_string_lossy().contains(tag))
            .expect(tag);
        let original = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        assert_eq!(inspect_facts(captured), inspect_facts(&original), "{name}");
        assert!(std::fs::read(captured).unwrap().len() <= std::fs::read(&original).unwrap().len());
    }
}

#[test]
fn drain_stops_accepting_and_exits_when_the_last_session_ends() {
    let up = tagged_upstream(b'D');
    let dir = TempDir::new("drain");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let mut c = long_lived(sluice.addr, b'D');
    assert!(command(&mut ctl(&sock), "drain")[0].starts_with("ok: draining 1"));
    assert!(
        TcpStream::connect(sluice.addr).is_err(),
        "no longer accepting"
    );
    echo_check(&mut c, 32 << 10, 3); // the running session still works
    drop(c);
    wait_until("exit", || matches!(sluice.child.try_wait(), Ok(Some(_))));
    assert!(sluice.child.wait().unwrap().success());
    assert!(!sock.exists(), "the control socket is removed");
}

#[test]
fn a_scrape_after_known_traffic_shows_exactly_the_counts_and_passes_promtool() {
    let up = tagged_upstream(b'M');
    // Two workers: one scrape must add both up.
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ("ENVOY_WORKERS", "2"),
    ]);
    sluice.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    let line = sluice.wait_for_log("metrics listening url=", Duration::from_secs(5));
    let url = fields(&line)["url"].clone();
    for _ in 0..7 {
        assert_eq!(session_tag(sluice.addr), Ok(b'M'));
    }
    for _ in 0..3 {
        let mut c = TcpStream::connect(sluice.addr).unwrap();
        c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
            .unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(5)));
    }
    sluice.wait_for_count("reason=", 10, Duration::from_secs(10));
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    let body = String::from_utf8(out.stdout).unwrap();
    let value = |series: &str| -> String {
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(value("sluice_accepted_total{listener=\"default\"}"), "10");
    assert_eq!(value("sluice_closed_total{reason=\"done\"}"), "7");
    assert_eq!(value("sluice_closed_total{reason=\"invalid_tls\"}"), "3");
    assert_eq!(
        value("sluice_bytes_total{direction=\"client_to_upstream\"}"),
        (7 * hello().len()).to_string()
    );
    assert_eq!(
        value("sluice_bytes_total{direction=\"upstream_to_client\"}"),
        "7"
    );
    assert_eq!(
        value("sluice_parse_errors_total{parser=\"tls\",kind=\"not_client_hello\"}"),
        "3"
    );
    // per upstream since issue 15 (the label is the upstream as configured)
    assert_eq!(
        value(&format!(
            "sluice_upstream_connect_seconds_count{{upstream=\"{up}\"}}"
        )),
        "7"
    );
    assert_eq!(value("sluice_session_duration_seconds_count"), "10");
    assert_eq!(value("sluice_sessions{state=\"Connected\"}"), "0");
    assert_eq!(value("sluice_workers"), "2");
    let promtool = which("promtool").expect("promtool (Debian package prometheus; make deps)");
    promtool_check_metrics(&promtool, &body);
}

#[test]
fn bulk_moves_through_splice_when_auto_and_is_copied_when_off() {
    const N: usize = 8 << 20;
    for (mode, spliced) in [("auto", true), ("off", false)] {
        let hello = hello();
        let (l, up) = listener();
        let n = hello.len();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = read_exact(&mut s, n);
            let sent = send_stream(&mut s, 41, N);
            s.shutdown(std::net::Shutdown::Write).unwrap();
            (sent, read_to_eof(&mut s))
        });
        let dir = TempDir::new("splice");
        let sock = dir.path("ctl.sock");
        let mut sluice = Sluice::start(&[
            ("ENVOY_UPSTREAM", &up.to_string()),
            ("ENVOY_SPLICE", mode),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ]);
        let mut c = TcpStream::connect(sluice.addr).unwrap();
        c.write_all(&hello).unwrap();
        let writer = {
            let mut c = c.try_clone().unwrap();
            thread::spawn(move || {
                let d = send_stream(&mut c, 42, N);
                c.shutdown(std::net::Shutdown::Write).unwrap();
                d
            })
        };
        assert_eq!(
            read_to_eof(&mut c),
            expected(41, N),
            "upstream to client, {mode}"
        );
        let sent = writer.join().unwrap();
        let (_, got) = server.join().unwrap();
        assert_eq!(got, sent, "client to upstream, {mode}");
        sluice.wait_for_log("reason=done", Duration::from_secs(10));
        let stats = command(&mut ctl(&sock), "show stats");
        let value = |k: &str| -> u64 {
            stats
                .iter()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert_eq!(value("bytes_down="), N as u64);
        let s = value("bytes_spliced=");
        assert_eq!(s > 0, spliced, "{mode}: bytes_spliced={s}");
        assert_eq!(
            value("splice_pipes_in_use="),
            0,
            "pipes go back when the session ends"
        );
        eprintln!("splice {mode}: {s} of {} bytes moved without a copy", 2 * N);
    }
}
