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
    let lines = sluice.wait_for_count("] close sid=", n, Duration::from_secs(10));
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

// ---------------------------------------------------------------------------------------
// Point 9: every capture the proxy writes replays through `sluice inspect` to its reason.

/// A PROXY v2 header from 203.0.113.9:40000 to 192.0.2.1:443 with `tlvs` (type, value).
fn v2_header(tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = vec![203, 0, 113, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x01, 0xbb]; // addresses, ports
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec(); // signature
    h.extend_from_slice(&[0x21, 0x11]); // v2 PROXY, TCP4
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// The `.bin` files in `dir`, waited for until `n` are there.
fn wait_for_captures(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for _ in 0..200 {
        files = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files.len(), n, "{files:?}");
    files.sort();
    files
}

/// `<ms>-<pid>-<sid>-<reason>.bin` -> reason.
fn capture_reason(p: &std::path::Path) -> String {
    let name = p.file_stem().unwrap().to_str().unwrap();
    name.splitn(4, '-').nth(3).unwrap().to_string()
}

/// How a frame ends: the client closes its side (FIN), or stays silent.
#[derive(Clone, Copy)]
enum End {
    Fin,
    Silent,
}

/// Sends each frame on its own connection to a sluice started with `env`, waits for every
/// close, and checks that each capture replays through inspect (run with `args`) to the
/// reason it was written for. Returns the reasons captured.
fn replay_captures(env: &[(&str, &str)], args: &[&str], frames: &[(Vec<u8>, End)]) -> Vec<String> {
    let (up, _rec) = recording_upstream();
    let up = up.to_string();
    let cap = TempDir::new("verdicts");
    let mut all = vec![
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_CAPTURE_DIR", cap.0.to_str().unwrap()),
        ("ENVOY_HEADER_TIMEOUT_MS", "300"),
    ];
    all.extend_from_slice(env);
    let mut sluice = Sluice::start(&all);
    let mut open = Vec::new();
    for (frame, end) in frames {
        let mut c = sluice.connect();
        c.write_all(frame).unwrap();
        if let End::Fin = end {
            c.shutdown(std::net::Shutdown::Write).unwrap();
        }
        open.push(c);
    }
    sluice.wait_for_count(" reason=", frames.len(), Duration::from_secs(20));
    let mut reasons = Vec::new();
    for path in wait_for_captures(&cap.0, frames.len()) {
        let written = capture_reason(&path);
        let out = std::process::Command::new(sluice_bin())
            .arg("inspect")
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let replayed = text
            .lines()
            .find_map(|l| l.strip_prefix("reason="))
            .unwrap_or_else(|| panic!("{written}: no reason= from inspect:\n{text}"));
        // The silence of a header timeout is not in the bytes: inspect says what the
        // proxy does when the peer closes instead.
        let want = match written.as_str() {
            "header_timeout" => "client_closed_early",
            w => w,
        };
        assert_eq!(replayed, want, "{written}:\n{text}");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{written}: exit 1 with error=\n{text}"
        );
        assert!(text.contains("\nerror="), "{written}:\n{text}");
        reasons.push(written);
    }
    drop(open);
    reasons.sort();
    reasons
}

#[test]
fn every_capture_the_proxy_writes_replays_through_inspect_to_its_reason() {
    let hello = fixture("client-curl-7.88.1-h2.bin");
    let v2 = v2_header(&[]);
    let v1_line = b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 443\r\n";
    let local = fixture("lb-haproxy-2.6-v2-healthcheck-local.bin");
    let frames: Vec<(Vec<u8>, End)> = vec![
        // invalid_http: HTTP/1.1 without Host
        (
            b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n".to_vec(),
            End::Silent,
        ),
        // invalid_authority: an AUTHORITY that is no host name
        (
            [&v2_header(&[(0x02, b"a b.test")])[..], &hello[..]].concat(),
            End::Silent,
        ),
        // invalid_proxy: a second PROXY header in the stream
        ([&v2[..], &v1_line[..], &hello[..]].concat(), End::Silent),
        // invalid_proxy: LOCAL followed by neither TLS nor HTTP
        (
            [&local[..], &b"\x00\x01 not tls, not http\x7f"[..]].concat(),
            End::Silent,
        ),
        // invalid_proxy: a broken v1 line
        (
            [&b"PROXY TCP4 999.0.0.1 192.0.2.1 1 2\r\n"[..], &hello[..]].concat(),
            End::Silent,
        ),
        // invalid_tls: a handshake record that is no ClientHello
        (
            vec![0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
            End::Silent,
        ),
        // client_closed_early: half a ClientHello, then FIN
        ([&v2[..], &hello[..100]].concat(), End::Fin),
        // header_timeout: half a ClientHello, then silence
        ([&v2[..], &hello[..100]].concat(), End::Silent),
    ];
    let reasons = replay_captures(&[], &[], &frames);
    assert_eq!(
        reasons,
        [
            "client_closed_early",
            "header_timeout",
            "invalid_authority",
            "invalid_http",
            "invalid_proxy",
            "invalid_proxy",
            "invalid_proxy",
            "invalid_tls"
        ]
    );
    // missing_proxy_header: under ENVOY_PROXY_PROTOCOL=required, as inspect is told.
    let reasons = replay_captures(
        &[("ENVOY_PROXY_PROTOCOL", "required")],
        &["--proxy-protocol=required"],
        &[(hello.clone(), End::Silent)],
    );
    assert_eq!(reasons, ["missing_proxy_header"]);
    // First bytes that fill the buffer: refused as too long, with the buffer inspect is told.
    let long = [&b"GET / HTTP/1.1\r\nX-Long: "[..], &[b'a'; 3000][..]].concat();
    let reasons = replay_captures(
        &[("ENVOY_BUFFER_SIZE", "2048")],
        &["--buffer-size=2048"],
        &[(long, End::Silent)],
    );
    assert_eq!(reasons, ["invalid_tls"]);
}

// ---------------------------------------------------------------------------------------
// Point 8: what the logs say about the first bytes.

#[test]
fn at_debug_the_proxy_header_is_decoded_beside_its_dump() {
    let (up, _rec) = recording_upstream();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_LOG_LEVEL", "debug"),
    ]);
    let frame = [
        &v2_header(&[(0x02, b"example.test"), (0xea, b"\x01vpce-1")])[..],
        &fixture("client-curl-7.88.1-h2.bin")[..],
    ]
    .concat();
    let mut c = sluice.connect();
    c.write_all(&frame).unwrap();
    let line = sluice.wait_for_log("PROXY header sid=", Duration::from_secs(10));
    assert!(
        line.ends_with(
            "] PROXY header sid=1 listener=default bytes=53 proxy=v2 proxy.command=PROXY proxy.family=inet \
             proxy.src=203.0.113.9:40000 proxy.dst=192.0.2.1:443 \
             proxy.tlv.authority=example.test proxy.tlv.0xea=01767063652d31 proxy.length=53"
        ),
        "{line}"
    );
    let log = sluice.log();
    assert!(
        log.contains(
            "] dump sid=1 of=proxy_header offset=0000 hex=\"0d0a 0d0a 000d 0a51 5549 540a 2111 0025\""
        ),
        "{log}"
    );
}

#[test]
fn a_cidr_traced_session_shows_its_proxy_header_dump() {
    let (up, _rec) = recording_upstream();
    let dir = TempDir::new("trace-cidr");
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_LOG_LEVEL", "info"),
    ]);
    let out = std::process::Command::new(sluice_bin())
        .args(["ctl", "trace", "203.0.113.0/24"])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The client address is the PROXY header's: the rule is known only once it is read.
    let mut c = sluice.connect();
    c.write_all(
        &[
            &v2_header(&[])[..],
            &fixture("client-curl-7.88.1-h2.bin")[..],
        ]
        .concat(),
    )
    .unwrap();
    let line = sluice.wait_for_log("PROXY header sid=", Duration::from_secs(10));
    assert!(line.contains(" bytes=28 "), "{line}");
    assert!(line.contains("proxy.src=203.0.113.9:40000"), "{line}");
    assert!(sluice.log().contains(
        "dump sid=1 of=proxy_header offset=0000 hex=\"0d0a 0d0a 000d 0a51 5549 540a 2111 000c\""
    ));
}

#[test]
fn a_truncated_or_missing_client_hello_is_said_at_warn_with_its_dump() {
    let (up, _rec) = recording_upstream();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_HEADER_TIMEOUT_MS", "300"),
    ]);
    let hello = fixture("client-curl-7.88.1-h2.bin");
    // Half a hello, then FIN.
    let mut c = sluice.connect();
    c.write_all(&[&v2_header(&[])[..], &hello[..100]].concat())
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let line = sluice.wait_for_log("truncated ClientHello", Duration::from_secs(10));
    assert!(line.contains(" WARN "), "{line}");
    let f = fields(&line);
    assert_eq!(f["ended_by"], "client_closed_early", "{line}");
    assert_eq!(f["after_header"], "100", "{line}");
    // A header, then silence until the header timeout.
    let mut d = sluice.connect();
    d.write_all(&v2_header(&[])).unwrap();
    let line = sluice.wait_for_log(
        "no ClientHello after the PROXY header",
        Duration::from_secs(10),
    );
    assert!(
        line.contains(" WARN ") && line.contains("header_timeout"),
        "{line}"
    );
    let log = sluice.log();
    let dumps = log
        .lines()
        .filter(|l| {
            l.contains("of=first_bytes offset=0000 hex=\"0d0a 0d0a 000d 0a51 5549 540a 2111 000c\"")
        })
        .count();
    assert_eq!(dumps, 2, "each with its first bytes:\n{log}");
    drop((c, d));
}
