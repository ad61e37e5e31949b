#![cfg(test)]
//! The soak: a long run of sessions with random sizes, random segmentation and random
//! half-close order through one worker, every byte checked both ways; at the end the
//! worker's descriptors and resident memory are back where they started.
//!
//! `make soak` runs it (`#[ignore]`: `make test` does not). Knobs: `SOAK_SESSIONS` (default
//! 1,000,000), `SOAK_CONCURRENCY` (sessions in flight, one client thread each; default 64),
//! `SOAK_SEED`.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// PROXY v2 (haproxy, TCP4) + curl's ClientHello for example.test.
const FRAME: &str = "lb-haproxy-2.6-v2-tcp4-curl.bin";
/// Most bytes each way per session.
const MAX_SIZE: usize = 64 << 10;
/// What the client tells the upstream after the hello: seed (8), bytes up (4), bytes down
/// (4), order (1: the upstream half-closes first).
const PLAN_LEN: usize = 17;
/// Resident memory the worker may keep after the soak: its pool keeps up to 1024 idle
/// buffers of ENVOY_BUFFER_SIZE (16 KiB), 16 MiB by design, plus 8 MiB for the allocator's
/// and the slab's high-water marks.
const RSS_SLACK_KIB: u64 = 1024 * 16 + 8 * 1024;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.replace([',', '_'], "").parse().expect(name))
        .unwrap_or(default)
}

/// One session's plan, derived from its number alone so both ends agree.
#[derive(Clone, Copy)]
struct Plan {
    seed: u64,
    up: usize,
    down: usize,
    upstream_first: bool,
}

impl Plan {
    fn new(seed: u64, i: u64) -> Plan {
        let mut rng = Prng::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Plan {
            seed: rng.next_u64(),
            up: rng.range(0, MAX_SIZE),
            down: rng.range(0, MAX_SIZE),
            upstream_first: rng.next_u64() & 1 == 1,
        }
    }

    fn encode(&self) -> [u8; PLAN_LEN] {
        let mut b = [0u8; PLAN_LEN];
        b[..8].copy_from_slice(&self.seed.to_be_bytes());
        b[8..12].copy_from_slice(&(self.up as u32).to_be_bytes());
        b[12..16].copy_from_slice(&(self.down as u32).to_be_bytes());
        b[16] = u8::from(self.upstream_first);
        b
    }

    fn decode(b: &[u8; PLAN_LEN]) -> Plan {
        Plan {
            seed: u64::from_be_bytes(b[..8].try_into().unwrap()),
            up: u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize,
            down: u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize,
            upstream_first: b[16] == 1,
        }
    }

    /// The client's stream and the upstream's.
    fn up_bytes(&self) -> Vec<u8> {
        Prng::new(self.seed).bytes(self.up)
    }

    fn down_bytes(&self) -> Vec<u8> {
        Prng::new(!self.seed).bytes(self.down)
    }
}

/// Writes `data` in random pieces (1 byte to 16 KiB), now and then pausing a millisecond
/// so that pieces arrive as separate reads; then half-closes.
fn write_segmented(s: &mut TcpStream, data: &[u8], rng: &mut Prng) -> Result<(), String> {
    let mut at = 0;
    while at < data.len() {
        let n = rng.range(1, (data.len() - at).min(16 << 10));
        s.write_all(&data[at..at + n])
            .map_err(|e| format!("write at {at}: {e}"))?;
        at += n;
        if rng.range(0, 7) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))
}

/// Reads to EOF and compares with `want`, byte for byte.
fn read_expect(s: &mut TcpStream, want: &[u8], what: &str) -> Result<(), String> {
    let mut got = Vec::with_capacity(want.len());
    s.read_to_end(&mut got)
        .map_err(|e| format!("{what}: read after {} bytes: {e}", got.len()))?;
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        return Err(format!(
            "{what}: {} bytes received, {} expected, first difference at {first:?}",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

/// The upstream's side of one session: read the hello and the plan, then both streams in
/// the plan's order.
fn serve(mut s: TcpStream, hello_len: usize, rng: &mut Prng) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = vec![0u8; hello_len + PLAN_LEN];
    s.read_exact(&mut head)
        .map_err(|e| format!("upstream: hello and plan: {e}"))?;
    let plan = Plan::decode(head[hello_len..].try_into().unwrap());
    if plan.upstream_first {
        write_segmented(&mut s, &plan.down_bytes(), rng)?;
        read_expect(&mut s, &plan.up_bytes(), "client to upstream")
    } else {
        read_expect(&mut s, &plan.up_bytes(), "client to upstream")?;
        write_segmented(&mut s, &plan.down_bytes(), rng)
    }
}

/// The client's side of session `i`.
fn run_session(addr: SocketAddr, frame: &[u8], seed: u64, i: u64) -> Result<Plan, String> {
    let plan = Plan::new(seed, i);
    let mut rng = Prng::new(plan.seed ^ 0x5eed);
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let first = [frame, &plan.encode()].concat();
    // The handshake too arrives in one or two pieces.
    let cut = rng.range(1, first.len());
    for piece in [&first[..cut], &first[cut..]] {
        c.write_all(piece)
            .map_err(|e| format!("write frame: {e}"))?;
    }
    if plan.upstream_first {
        read_expect(&mut c, &plan.down_bytes(), "upstream to client")?;
        write_segmented(&mut c, &plan.up_bytes(), &mut rng)?;
    } else {
        write_segmented(&mut c, &plan.up_bytes(), &mut rng)?;
        read_expect(&mut c, &plan.down_bytes(), "upstream to client")?;
    }
    Ok(plan)
}

#[test]
#[ignore = "long: run with make soak"]
fn soak_random_sessions_lose_nothing_and_leave_nothing_behind() {
    let sessions = knob("SOAK_SESSIONS", 1_000_000);
    let concurrency = knob("SOAK_CONCURRENCY", 64).max(1) as usize;
    let seed = knob("SOAK_SEED", 0x50a4);
    let frame = Arc::new(fixture(FRAME));
    let hello_len = frame.len() - header_len(FRAME);

    // The upstream: a fixed set of threads taking turns at accept, one session each.
    let (l, up_addr) = listener();
    let l: Arc<TcpListener> = Arc::new(l);
    let stop = Arc::new(AtomicBool::new(false));
    let upstream_failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let servers: Vec<_> = (0..concurrency + 4)
        .map(|t| {
            let (l, stop, failures) = (
                Arc::clone(&l),
                Arc::clone(&stop),
                Arc::clone(&upstream_failures),
            );
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut rng = Prng::new(t as u64 + 77);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((s, _)) = l.accept() else { continue };
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = serve(s, hello_len, &mut rng) {
                            failures.lock().unwrap().push(e);
                        }
                    }
                })
                .unwrap()
        })
        .collect();

    let dir = TempDir::new("soak");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up_addr.to_string()),
        ("ENVOY_BACKLOG", "4096"),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    sluice.wait_for_log("metrics listening url=http://", Duration::from_secs(5));
    // Started at info (the harness reads the address from the log); now quieter: a close
    // line per session would be a million lines.
    let mut ctl = UnixStream::connect(&sock).expect("control socket");
    ctl.write_all(b"set log-level warn\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&ctl).read_line(&mut reply).unwrap();
    assert!(reply.starts_with("ok"), "set log-level: {reply}");
    let (fds_before, rss_before) = (sluice.worker_fds(), sluice.rss_kib());
    let worker = sluice.workers()[0];

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, done, bytes, failures, frame, stop) = (
                Arc::clone(&next),
                Arc::clone(&done),
                Arc::clone(&bytes),
                Arc::clone(&failures),
                Arc::clone(&frame),
                Arc::clone(&stop),
            );
            let addr = sluice.addr;
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    // The first failure stops the soak: bounded time, and the log says why.
                    if i >= sessions || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match run_session(addr, &frame, seed, i) {
                        Ok(plan) => {
                            bytes[0].fetch_add(plan.up as u64, Ordering::Relaxed);
                            bytes[1].fetch_add(plan.down as u64, Ordering::Relaxed);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if n % (sessions / 10).max(1) == 0 {
                                eprintln!(
                                    "soak: {n} sessions in {:?}, worker RSS {} KiB",
                                    started.elapsed(),
                                    rss_kib(worker)
                                );
                            }
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("session {i}: {e}"));
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for _ in &servers {
        let _ = TcpStream::connect(up_addr); // wakes one server thread blocked in accept
    }
    for s in servers {
        s.join().unwrap();
    }
    let done = done.load(Ordering::Relaxed);
    let (up, down) = (
        bytes[0].load(Ordering::Relaxed),
        bytes[1].load(Ordering::Relaxed),
    );
    let failures = failures.lock().unwrap().clone();
    let upstream_failures = upstream_failures.lock().unwrap().clone();

    // Everything closed: then the worker must be back to where it started.
    let until = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = sluice.scrape();
        let open: u64 = body
            .lines()
            .filter(|l| l.starts_with("sluice_sessions{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if open == 0 || Instant::now() > until {
            break body;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let until = Instant::now() + Duration::from_secs(10);
    let mut fds_after = sluice.worker_fds();
    while fds_after != fds_before && Instant::now() < until {
        thread::sleep(Duration::from_millis(100));
        fds_after = sluice.worker_fds();
    }
    let rss_after = sluice.rss_kib();
    let closed: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("sluice_closed_total{") && !l.ends_with(" 0"))
        .collect();
    eprintln!(
        "soak: {done} of {sessions} sessions, concurrency {concurrency}, in {elapsed:?} \
         ({:.0}/s); {up} bytes up, {down} bytes down (plus handshakes); \
         worker descriptors {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB \
         (allowed +{RSS_SLACK_KIB} KiB); closes: {closed:?}",
        done as f64 / elapsed.as_secs_f64()
    );
    assert!(failures.is_empty(), "client failures: {failures:#?}");
    assert!(
        upstream_failures.is_empty(),
        "upstream failures: {upstream_failures:#?}"
    );
    assert_eq!(done, sessions);
    assert_eq!(
        metric_value(&body, "sluice_accepted_total{listener=\"default\"}"),
        sessions
    );
    assert_eq!(
        metric_value(&body, "sluice_closed_total{reason=\"done\"}"),
        sessions,
        "every session ends done: {closed:?}"
    );
    let handshakes = sessions * (hello_len + PLAN_LEN) as u64;
    assert_eq!(
        metric_value(
            &body,
            "sluice_bytes_total{direction=\"client_to_upstream\"}"
        ),
        up + handshakes
    );
    assert_eq!(
        metric_value(
            &body,
            "sluice_bytes_total{direction=\"upstream_to_client\"}"
        ),
        down
    );
    assert_eq!(fds_after, fds_before, "worker descriptors");
    assert!(
        rss_after <= rss_before + RSS_SLACK_KIB,
        "worker RSS {rss_before} KiB -> {rss_after} KiB"
    );
}
