#![cfg(test)]
//! What the first bytes of a connection come to, against the real binary: frames that begin
//! like a PROXY header and break it, and the verdicts `sluice inspect` reaches on the
//! captures the proxy writes (the same as the session's, for every captured reason).

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use util::*;

/// What a recording upstream saw.
#[derive(Default)]
struct Recorded {
    connections: usize,
    bytes: Vec<u8>,
}

/// An upstream that accepts, records every byte, and never answers.
fn recording_upstream() -> (SocketAddr, Arc<Mutex<Recorded>>) {
    let (l, addr) = listener();
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let sink = Arc::clone(&rec);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            sink.lock().unwrap().connections += 1;
            let sink = Arc::clone(&sink);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    sink.lock().unwrap().bytes.extend_from_slice(&buf[..k]);
                }
            });
        }
    });
    (addr, rec)
}

/// The `reason=` of the `n`-th close line (1-based).
fn nth_close_reason(sluice: &mut Sluice, n: usize) -> String {
    let lines = sluice.wait_for_count(" reason=", n, Duration::from_secs(10));
    fields(&lines[n - 1])["reason"].clone()
}

// ---------------------------------------------------------------------------------------
// Point 4: "PROXY" not followed by a space, and a v2 signature that breaks off.

#[test]
fn a_frame_that_begins_like_a_proxy_header_and_breaks_it_never_reaches_the_upstream() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "PROXYjunk",
            b"PROXYjunk TCP4 203.0.113.9 192.0.2.1 40000 443\r\n".to_vec(),
        ),
        (
            "PROXY\\t",
            b"PROXY\tTCP4 203.0.113.9 192.0.2.1 40000 443\r\n".to_vec(),
        ),
        (
            "PROXY-",
            b"PROXY-TCP4 203.0.113.9 192.0.2.1 40000 443\r\n".to_vec(),
        ),
        ("v2 signature broken after its NUL", {
            let mut b = b"\r\n\r\n\0\r\nQUIZ\n".to_vec();
            b.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 203, 0, 113, 9, 192, 0, 2, 1]);
            b.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
            b
        }),
    ];
    // Trusted (loopback, the default) or not, in optional mode (the default) and required.
    for (trusted, policy, want) in [
        ("127.0.0.0/8", "optional", "invalid_proxy"),
        ("127.0.0.0/8", "required", "invalid_proxy"),
        ("10.0.0.0/8", "optional", "untrusted_proxy"),
    ] {
        let (up, rec) = recording_upstream();
        let up = up.to_string();
        let mut sluice = Sluice::start(&[
            ("ENVOY_UPSTREAM", &up),
            ("ENVOY_PROXY_PROTOCOL", policy),
            ("ENVOY_TRUSTED_PROXIES", trusted),
        ]);
        for (i, (name, head)) in frames.iter().enumerate() {
            let mut c = sluice.connect();
            let mut frame = head.clone();
            frame.extend_from_slice(&hello);
            let _ = c.write_all(&frame);
            assert!(
                closed_within(&mut c, Duration::from_secs(5)),
                "{name} ({policy}, trusted {trusted}): not closed"
            );
            assert_eq!(
                nth_close_reason(&mut sluice, i + 1),
                want,
                "{name} ({policy}, trusted {trusted})"
            );
        }
        thread::sleep(Duration::from_millis(200));
        let seen = rec.lock().unwrap();
        assert_eq!(
            (seen.connections, seen.bytes.len()),
            (0, 0),
            "the upstream saw {:?}",
            String::from_utf8_lossy(&seen.bytes[..seen.bytes.len().min(80)])
        );
    }
}

/// Runs `sluice inspect` (the binary under test) on `bytes`; (exit status, stdout).
fn inspect_bytes(dir: &TempDir, name: &str, bytes: &[u8], args: &[&str]) -> (i32, String) {
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new(sluice_bin())
        .arg("inspect")
        .args(args)
        .arg(&path)
        .output()
        .expect("run sluice inspect");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn inspect_calls_a_frame_that_breaks_a_proxy_signature_invalid() {
    let dir = TempDir::new("broken-sig");
    let hello = fixture("client-curl-7.88.1-h2.bin");
    for (i, head) in [
        &b"PROXYjunk TCP4 203.0.113.9 192.0.2.1 40000 443\r\n"[..],
        b"PROXY\tTCP4 203.0.113.9 192.0.2.1 40000 443\r\n",
        b"PROXY-TCP4 203.0.113.9 192.0.2.1 40000 443\r\n",
        b"\r\n\r\n\0\r\nQUIZ\n\x21\x11\x00\x00",
    ]
    .iter()
    .enumerate()
    {
        let frame = [*head, &hello[..]].concat();
        let (code, out) = inspect_bytes(&dir, &format!("f{i}.bin"), &frame, &[]);
        assert_eq!(code, 1, "{}:\n{out}", String::from_utf8_lossy(head));
        assert!(out.contains("\nerror=proxy: "), "{out}");
        assert!(!out.contains("tls=clienthello"), "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// Point 2: a LOCAL header's TLVs are read, its CRC32C verified.

/// haproxy 2.6's health check with `proxy-v2-options crc32c`: LOCAL, UNSPEC, CRC32C.
const HEALTH_CHECK_CRC: &str = "lb-haproxy-2.6-v2-healthcheck-local-crc32c.bin";

#[test]
fn inspect_verifies_a_local_header_crc32c() {
    let dir = TempDir::new("local-crc");
    let good = fixture(HEALTH_CHECK_CRC);
    let (code, out) = inspect_bytes(&dir, "good.bin", &good, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nproxy.command=LOCAL\n"), "{out}");
    assert!(out.contains("\nproxy.tlv.crc32c=ok\n"), "{out}");
    let mut bad = good.clone();
    bad[22] ^= 0x01; // the checksum's last byte
    let (code, out) = inspect_bytes(&dir, "bad.bin", &bad, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error=proxy: the PROXY v2 CRC32C"), "{out}");
}

#[test]
fn a_local_header_with_a_bad_crc32c_is_refused() {
    let (up, rec) = recording_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &up)]);
    let mut frame = fixture(HEALTH_CHECK_CRC);
    frame[22] ^= 0x01;
    frame.extend_from_slice(&fixture("client-curl-7.88.1-h2.bin"));
    let mut c = sluice.connect();
    c.write_all(&frame).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(nth_close_reason(&mut sluice, 1), "invalid_proxy");
    thread::sleep(Duration::from_millis(200));
    let seen = rec.lock().unwrap();
    assert_eq!((seen.connections, seen.bytes.len()), (0, 0));
    assert!(sluice.log().contains("CRC32C checksum does not match"));
}

// ---------------------------------------------------------------------------------------
// Point 10: the README and `sluice --help` say the same about inspect's exit status 1.

#[test]
fn the_readme_and_help_say_the_same_about_exit_status_1() {
    let help = std::process::Command::new(sluice_bin())
        .arg("--help")
        .output()
        .expect("run sluice --help");
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let inspect_section = readme
        .split("## Looking at captured bytes: `sluice inspect`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's inspect section")
        .replace('\n', " ");
    // What status 1 covers, as each says it.
    let said = "invalid or truncated (the frame ends inside the PROXY header, the ClientHello or the HTTP head)";
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = inspect_section
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains(said), "--help: {help}");
    assert!(readme.contains(said), "README: {readme}");
}
