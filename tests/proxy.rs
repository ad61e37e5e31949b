#![cfg(test)]
//! The proxy end to end: the real `sluice` binary on an ephemeral loopback port, real
//! clients and servers (curl, haproxy with send-proxy-v2, openssl s_server, plain TCP
//! peers), checksums on every byte.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const FIXTURES_WITH_HELLO: &[&str] = &[
    "lb-haproxy-2.6-v2-tcp4-curl.bin",
    "lb-haproxy-2.6-v2-alloptions-passthrough-curl.bin",
    "lb-haproxy-2.6-v1-tcp4-openssl.bin",
    "lb-haproxy-2.6-v1-tcp6-openssl.bin",
    "lb-nginx-1.22-stream-v1-tcp4-curl.bin",
    "lb-sniproxy-0.6.0-v1-tcp4-openssl.bin",
    "edge-v2-custom-tlv-0xea-aws-vpce.bin",
    "edge-v2-local-unspec-then-clienthello.bin",
    "edge-v1-unknown-max-107.bin",
    "edge-v1-unknown-short.bin",
    "edge-clienthello-2-records-split-in-sni.bin",
    "client-curl-7.88.1-h2.bin",
    "client-openssl-3.0.19-s_client-tls1_2.bin",
    "client-openssl-3.0.19-s_client-noservername.bin",
];

#[test]
fn curl_through_haproxy_send_proxy_v2_and_sluice_to_s_server() {
    let dir = TempDir::new("chain");
    let (_server, server_addr) = s_server(&dir);
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &server_addr.to_string())]);
    let (_haproxy, lb) = haproxy(&dir, sluice.addr, "send-proxy-v2");
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-w",
            "\n%{local_port}",
            "--resolve",
        ])
        .arg(format!("example.test:{}:127.0.0.1", lb.port()))
        .arg(format!("https://example.test:{}/", lb.port()))
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl failed: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.contains("s_server"),
        "the page from openssl s_server -www: {body}"
    );
    let curl_port = body.lines().last().unwrap().trim();
    // The client address comes from the PROXY header: curl's own port, not haproxy's.
    let line = sluice.wait_for_log("reason=done", Duration::from_secs(10));
    let f = fields(&line);
    assert_eq!(f["sni"], "example.test", "{line}");
    assert_eq!(f["client"], format!("127.0.0.1:{curl_port}"), "{line}");
    assert_eq!(f["upstream"], server_addr.to_string(), "{line}");
}

/// A recording upstream for one connection: checks the replayed prefix, then runs `then`.
fn upstream_once(
    expect_prefix: Vec<u8>,
    then: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (thread::JoinHandle<()>, std::net::SocketAddr) {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let got = read_exact(&mut s, expect_prefix.len());
        assert_eq!(got, expect_prefix, "the bytes replayed to the upstream");
        then(&mut s);
    });
    (h, addr)
}

/// Writes `bytes` in pieces cut at random points, pausing so they arrive as separate reads.
fn write_split(s: &mut TcpStream, bytes: &[u8], rng: &mut Prng) {
    let mut at = 0;
    while at < bytes.len() {
        let n = rng.range(1, (bytes.len() - at).min(97));
        s.write_all(&bytes[at..at + n]).unwrap();
        at += n;
        thread::sleep(Duration::from_millis(rng.range(0, 3) as u64));
    }
}

const BULK: usize = 10 << 20;

fn bulk_both_ways(name: &str, seed: u64, client_first: bool) {
    let frame = fixture(name);
    let hello = frame[header_len(name)..].to_vec();
    let (up, addr) = upstream_once(hello, move |s| {
        if client_first {
            let got = read_to_eof(s);
            assert_eq!(got, expected(seed, BULK), "client to upstream");
            send_stream(s, seed + 1, BULK);
            s.shutdown(Shutdown::Write).unwrap();
        } else {
            send_stream(s, seed + 1, BULK);
            s.shutdown(Shutdown::Write).unwrap();
            let got = read_to_eof(s);
            assert_eq!(got, expected(seed, BULK), "client to upstream");
        }
    });
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &addr.to_string())]);
    let mut c = sluice.connect();
    let mut rng = Prng::new(seed);
    write_split(&mut c, &frame, &mut rng);
    if client_first {
        send_stream(&mut c, seed, BULK);
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            read_to_eof(&mut c),
            expected(seed + 1, BULK),
            "upstream to client"
        );
    } else {
        // Read the upstream's whole stream and its FIN before sending anything more.
        assert_eq!(
            read_to_eof(&mut c),
            expected(seed + 1, BULK),
            "upstream to client"
        );
        send_stream(&mut c, seed, BULK);
        c.shutdown(Shutdown::Write).unwrap();
    }
    up.join().expect("upstream side");
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    let f = fields(&line);
    assert_eq!(f["reason"], "done", "{line}");
    assert_eq!(f["bytes_down"], BULK.to_string());
    assert_eq!(
        f["bytes_up"],
        (BULK + frame.len() - header_len(name)).to_string()
    );
}

#[test]
fn fixtures_split_at_random_points_then_10_mib_each_way_client_half_closes_first() {
    for (i, name) in FIXTURES_WITH_HELLO.iter().enumerate().step_by(2) {
        bulk_both_ways(name, 1000 + i as u64, true);
    }
}

#[test]
fn fixtures_split_at_random_points_then_10_mib_each_way_upstream_half_closes_first() {
    for (i, name) in FIXTURES_WITH_HELLO.iter().enumerate().skip(1).step_by(2) {
        bulk_both_ways(name, 2000 + i as u64, false);
    }
}

#[test]
fn a_thousand_concurrent_sessions_move_random_sizes_byte_exact() {
    const N: usize = 1000;
    let name = "lb-haproxy-2.6-v2-tcp4-curl.bin";
    let frame = Arc::new(fixture(name));
    let hello_len = frame.len() - header_len(name);
    // The upstream: a thread per connection, skips the hello, echoes everything back.
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..N {
            let (mut s, _) = l.accept().unwrap();
            handles.push(
                thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || {
                        let _hello = read_exact(&mut s, hello_len);
                        let mut buf = vec![0u8; 16384];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => s.write_all(&buf[..n]).unwrap(),
                            }
                        }
                        let _ = s.shutdown(Shutdown::Write);
                    })
                    .unwrap(),
            );
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &addr.to_string())]);
    let barrier = Arc::new(Barrier::new(N));
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let frame = Arc::clone(&frame);
            let barrier = Arc::clone(&barrier);
            let addr = sluice.addr;
            thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    c.write_all(&frame).unwrap();
                    barrier.wait(); // all 1,000 sessions open at once
                    let mut rng = Prng::new(i as u64);
                    let size = rng.range(1, 256 << 10);
                    let data = rng.bytes(size);
                    // Lock-step chunks so neither side can deadlock on full socket buffers.
                    for chunk in data.chunks(8192) {
                        c.write_all(chunk).unwrap();
                        let back = read_exact(&mut c, chunk.len());
                        assert_eq!(back, chunk, "session {i}: echo differs");
                    }
                    c.shutdown(Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    c.read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty());
                    size
                })
                .unwrap()
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|h| h.join()).collect();
    if results.iter().any(|r| r.is_err()) {
        let log = sluice.log();
        let mut reasons = std::collections::BTreeMap::new();
        for l in log.lines().filter(|l| l.contains("reason=")) {
            *reasons.entry(fields(l)["reason"].clone()).or_insert(0) += 1;
        }
        let failed = results.iter().filter(|r| r.is_err()).count();
        panic!(
            "{failed} clients failed; close reasons: {reasons:?}; log tail:\n{}",
            tail(&log, 20)
        );
    }
    let total: usize = results.into_iter().map(Result::unwrap).sum();
    server.join().unwrap();
    let lines = sluice.wait_for_count("reason=", N, Duration::from_secs(30));
    assert!(
        lines.iter().all(|l| l.contains("reason=done")),
        "every session ends done"
    );
    let moved: u64 = lines
        .iter()
        .map(|l| fields(l)["bytes_down"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(moved, total as u64);
}

#[test]
fn upstream_refusing_closes_the_client_within_the_connect_timeout() {
    let port = free_port(); // nothing listens there
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &format!("127.0.0.1:{port}")),
        ("ENVOY_CONNECT_TIMEOUT_MS", "2000"),
    ]);
    let mut c = sluice.connect();
    let t = Instant::now();
    c.write_all(&fixture("lb-haproxy-2.6-v2-tcp4-curl.bin"))
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(10)));
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(line.contains("reason=upstream_refused"), "{line}");
    // Loose bound: a refusal is immediate; the test only checks it is not the idle timeout.
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn upstream_resetting_mid_stream_closes_the_client() {
    let name = "client-curl-7.88.1-h2.bin";
    let frame = fixture(name);
    let (up, addr) = upstream_once(frame.clone(), |s| {
        s.write_all(b"some bytes before the reset").unwrap();
        thread::sleep(Duration::from_millis(200));
        socket2::SockRef::from(&*s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &addr.to_string())]);
    let mut c = sluice.connect();
    c.write_all(&frame).unwrap();
    up.join().unwrap(); // drops the socket with linger 0: RST
    assert!(closed_within(&mut c, Duration::from_secs(10)));
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(line.contains("reason=upstream_reset"), "{line}");
}

#[test]
fn a_silent_client_is_closed_at_the_header_timeout() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_HEADER_TIMEOUT_MS", "500"),
    ]);
    let mut c = sluice.connect();
    assert!(
        closed_within(&mut c, Duration::from_secs(10)),
        "closed by sluice"
    );
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(line.contains("reason=header_timeout"), "{line}");
}

#[test]
fn a_header_sent_a_byte_every_100_ms_inside_the_timeout_gets_through() {
    let name = "lb-haproxy-2.6-v2-tcp4-curl.bin";
    let frame = fixture(name);
    let hlen = header_len(name);
    let (up, addr) = upstream_once(frame[hlen..].to_vec(), |s| {
        s.write_all(b"hello back").unwrap()
    });
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_HEADER_TIMEOUT_MS", "5000"),
    ]);
    let mut c = sluice.connect();
    for b in &frame[..hlen] {
        c.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(100));
    }
    c.write_all(&frame[hlen..]).unwrap();
    assert_eq!(read_exact(&mut c, 10), b"hello back");
    up.join().unwrap();
    drop(c);
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(!line.contains("header_timeout"), "{line}");
}

#[test]
fn a_proxy_header_from_an_untrusted_address_is_refused() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&fixture("lb-haproxy-2.6-v1-tcp4-openssl.bin"))
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(line.contains("reason=untrusted_proxy"), "{line}");
}

#[test]
fn with_the_policy_off_every_byte_passes_raw() {
    let frame = fixture("lb-haproxy-2.6-v2-tcp4-curl.bin");
    let (up, addr) = upstream_once(frame.clone(), |s| s.write_all(b"ok").unwrap());
    let _sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_PROXY_PROTOCOL", "off"),
    ]);
    let mut c = _sluice.connect();
    c.write_all(&frame).unwrap();
    assert_eq!(read_exact(&mut c, 2), b"ok");
    up.join().unwrap();
}

#[test]
fn required_policy_refuses_a_connection_without_header() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_PROXY_PROTOCOL", "required"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&fixture("client-curl-7.88.1-h2.bin")).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let line = sluice.wait_for_log("reason=", Duration::from_secs(5));
    assert!(line.contains("reason=missing_proxy_header"), "{line}");
}

#[test]
fn invalid_proxy_and_tls_bytes_close_with_a_hex_dump_at_warn() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &addr.to_string())]);
    // A v1 line over 107 bytes.
    let mut c = sluice.connect();
    c.write_all(&fixture("edge-v1-longer-than-107.bin"))
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let warn = sluice.wait_for_log("invalid PROXY header", Duration::from_secs(5));
    assert!(warn.contains("WARN"), "{warn}");
    let log = sluice.log();
    assert!(
        log.contains("WARN  [sluice::session] dump sid=1 of=first_bytes offset=0000 hex=\"5052 4f58 5920 5443 5034"),
        "hex dump of 'PROXY TCP4':\n{log}"
    );
    // A TLS record whose handshake is a ServerHello, not a ClientHello.
    let mut c = sluice.connect();
    c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    sluice.wait_for_log("invalid ClientHello", Duration::from_secs(5));
    assert!(sluice
        .log()
        .contains("dump sid=2 of=first_bytes offset=0000 hex=\"1603 0100 0402 0000 00"));
    let closes = sluice.wait_for_count("reason=", 2, Duration::from_secs(5));
    assert!(closes[0].contains("reason=invalid_proxy"), "{}", closes[0]);
    assert!(closes[1].contains("reason=invalid_tls"), "{}", closes[1]);
}

#[test]
fn a_client_that_never_reads_does_not_make_sluice_buffer_without_bound() {
    const TOTAL: usize = 200 << 20;
    let name = "client-curl-7.88.1-h2.bin";
    let frame = fixture(name);
    let (up, addr) = upstream_once(frame.clone(), |s| {
        send_stream(s, 7, TOTAL);
        s.shutdown(Shutdown::Write).unwrap();
    });
    let sluice = Sluice::start(&[("ENVOY_UPSTREAM", &addr.to_string())]);
    let mut c = sluice.connect();
    c.write_all(&frame).unwrap();
    let before = sluice.rss_kib();
    thread::sleep(Duration::from_secs(2)); // the upstream pushes; nobody reads
    let during = sluice.rss_kib();
    // Two 16 KiB buffers are the session's share; allow generous slack for the allocator.
    assert!(
        during < before + 8 * 1024,
        "RSS grew from {before} KiB to {during} KiB while the client did not read"
    );
    assert!(
        !up.is_finished(),
        "the upstream must be held back, not drained into memory"
    );
    assert_eq!(
        read_to_eof(&mut c),
        expected(7, TOTAL),
        "then every byte arrives"
    );
    up.join().unwrap();
}

#[test]
fn check_config_and_bad_values() {
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_PORT", "9999")
        .env("ENVOY_UPSTREAM", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ENVOY_PORT=9999 (environment)"), "{text}");
    assert!(text.contains("ENVOY_ACCEPTORS=5 (default)"), "{text}");
    let port = free_port();
    let out = Command::new(sluice_bin())
        .arg("run")
        .env("ENVOY_PORT", port.to_string())
        .env("ENVOY_BUFFER_SIZE", "tiny")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ENVOY_BUFFER_SIZE") && err.contains("tiny"),
        "{err}"
    );
    // Nothing was bound.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    for flag in ["--help", "--version"] {
        let out = Command::new(sluice_bin()).arg(flag).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("sluice"));
    }
}

#[test]
fn every_key_check_config_prints_is_in_the_readme_table() {
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_UPSTREAM", "127.0.0.1:1")
        .output()
        .unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let lines: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .filter(|(k, _)| k.starts_with("ENVOY_"))
        .collect();
    assert!(lines.len() > 30, "{lines:?}");
    for (k, v) in lines {
        assert!(
            readme.contains(&format!("| `{k}` |")),
            "{k} is missing from the README's table"
        );
        // A key at its default shows the key table's default: the README's column says the same.
        if let Some(default) = v.strip_suffix(" (default)") {
            let row = if default.is_empty() {
                format!("| `{k}` | (empty")
            } else {
                format!("| `{k}` | `{default}` |")
            };
            assert!(
                readme.contains(&row),
                "the README's default for {k} is not {default:?}"
            );
        }
    }
}
