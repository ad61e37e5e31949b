#![cfg(test)]
//! The session state machine fed with arbitrary byte chunks and events, through the real
//! binary: mutated fixtures cut at random points, random pauses, random half-closes and
//! resets from the client and from the upstream. Whatever arrives, sluice must not crash,
//! must end every session, and must give back every descriptor.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use util::*;

const FRAMES: &[&str] = &[
    "lb-haproxy-2.6-v2-tcp4-curl.bin",
    "lb-haproxy-2.6-v2-alloptions-passthrough-curl.bin",
    "lb-haproxy-2.6-v2-tls-terminated-http1.bin",
    "lb-haproxy-2.6-v1-tcp6-openssl.bin",
    "edge-clienthello-2-records-split-in-sni.bin",
    "edge-v2-local-unspec-then-clienthello.bin",
    "edge-v1-unknown-max-107.bin",
    "client-openssl-3.0.19-s_client-tls1_2.bin",
];

fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// An upstream that does something random with each connection.
fn chaotic_upstream() -> std::net::SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let mut rng = Prng::new(n as u64 ^ 0x5eed);
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..rng.range(0, 6) {
                        match rng.range(0, 4) {
                            0 => {
                                let _ = s.read(&mut buf);
                            }
                            1 => {
                                let n = rng.range(1, 20000);
                                let _ = s.write_all(&rng.bytes(n));
                            }
                            2 => thread::sleep(Duration::from_millis(rng.range(0, 30) as u64)),
                            _ => {
                                let _ = s.shutdown(Shutdown::Write);
                            }
                        }
                    }
                    if rng.range(0, 3) == 0 {
                        reset(&s);
                    }
                })
                .unwrap();
        }
    });
    addr
}

#[test]
fn arbitrary_chunks_and_events_never_crash_and_leak_nothing() {
    let up = chaotic_upstream();
    let dir = TempDir::new("chaos");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_HEADER_TIMEOUT_MS", "1500"),
        ("ENVOY_IDLE_TIMEOUT_MS", "3000"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    sluice.may_exit = false;
    let worker = sluice.workers()[0];
    let fds = || {
        std::fs::read_dir(format!("/proc/{worker}/fd"))
            .unwrap()
            .count()
    };
    let baseline = fds();
    let frames: Arc<Vec<Vec<u8>>> = Arc::new(FRAMES.iter().map(|f| fixture(f)).collect());
    let addr = sluice.addr;
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let frames = Arc::clone(&frames);
            thread::spawn(move || {
                let mut rng = Prng::new(t + 1);
                for _ in 0..150 {
                    let Ok(mut c) = TcpStream::connect(addr) else {
                        continue;
                    };
                    c.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut frame = frames[rng.range(0, frames.len() - 1)].clone();
                    // Mutate a few bytes, sometimes truncate, sometimes append noise.
                    for _ in 0..rng.range(0, 4) {
                        let i = rng.range(0, frame.len() - 1);
                        frame[i] = rng.next_u64() as u8;
                    }
                    if rng.range(0, 3) == 0 {
                        frame.truncate(rng.range(0, frame.len()));
                    }
                    if rng.range(0, 3) == 0 {
                        let n = rng.range(1, 3000);
                        frame.extend(rng.bytes(n));
                    }
                    let mut at = 0;
                    while at < frame.len() {
                        let k = rng.range(1, (frame.len() - at).min(300));
                        if c.write_all(&frame[at..at + k]).is_err() {
                            break;
                        }
                        at += k;
                        if rng.range(0, 4) == 0 {
                            thread::sleep(Duration::from_millis(rng.range(0, 5) as u64));
                        }
                    }
                    match rng.range(0, 3) {
                        0 => reset(&c),
                        1 => {
                            let _ = c.shutdown(Shutdown::Write);
                            let mut buf = [0u8; 4096];
                            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                        }
                        _ => {
                            let mut buf = [0u8; 4096];
                            let _ = c.read(&mut buf);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every session ends (at the latest at the header or idle timeout).
    let mut open = String::new();
    for _ in 0..200 {
        let mut c = UnixStream::connect(&sock).unwrap();
        writeln!(c, "show stats").unwrap();
        let mut reply = String::new();
        let mut buf = [0u8; 4096];
        while !reply.contains("\n\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        open = reply
            .lines()
            .find(|l| l.starts_with("sessions="))
            .unwrap()
            .to_string();
        if open == "sessions=0" && fds() <= baseline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sluice.child.try_wait().unwrap().is_none(),
        "sluice survived"
    );
    assert_eq!(open, "sessions=0", "every session ended");
    assert_eq!(fds(), baseline, "every descriptor came back");
    assert!(
        !sluice.log().contains("panicked"),
        "no panic:\n{}",
        tail(&sluice.log(), 20)
    );
    eprintln!("chaos: 1200 sessions; descriptors {baseline} before and after");
}
