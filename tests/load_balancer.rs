#![cfg(test)]
//! sluice between real load balancers and upstreams, as a production fleet runs it: haproxy
//! health checks (counted on their own, never captured, quiet at info), the PROXY v2 header
//! sluice sends (a UNIQUE_ID unique across workers and restarts, the ALPN TLV only when it
//! is known), and refusals that a client reads whole (the TLS alert, then a clean FIN).

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use sluice::wire::proxy::v2::{self as proxy_v2, RawTlv, V2Out};
use sluice::wire::proxy::{self, Command as PpCommand, ProxyHeader};
use sluice::wire::Parsed;
use util::*;

/// The ClientHello of a real curl (SNI example.test, ALPN h2,http/1.1).
fn curl_hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// A PROXY v2 header from `src` with `raw` TLVs, then `payload`.
fn v2_frame(src: &str, raw: &[RawTlv<'_>], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let n = proxy_v2::emit(
        &V2Out {
            command: PpCommand::Proxy,
            addrs: Some((src.parse().unwrap(), "192.0.2.2:443".parse().unwrap())),
            authority: None,
            alpn: None,
            unique_id: None,
            raw,
            crc32c: false,
        },
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out.extend_from_slice(payload);
    out
}

/// An upstream that reads the PROXY v2 header each connection starts with and sends it on
/// the channel, then reads on until the peer closes.
fn header_upstream() -> (SocketAddr, Receiver<Vec<u8>>) {
    let (l, addr) = listener();
    let (tx, rx) = channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.lock().unwrap().clone();
            thread::spawn(move || {
                let mut head = vec![0u8; 16];
                if s.read_exact(&mut head).is_err() {
                    return;
                }
                let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                let mut rest = vec![0u8; len];
                if s.read_exact(&mut rest).is_err() {
                    return;
                }
                head.extend_from_slice(&rest);
                let _ = tx.send(head);
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    (addr, rx)
}

fn parsed(bytes: &[u8]) -> ProxyHeader<'_> {
    match proxy::parse(bytes) {
        Parsed::Complete(h, _) => h,
        other => panic!("not a valid v2 header: {other:?} {bytes:?}"),
    }
}

/// Opens a session with `frame`, waits for the upstream's header, closes.
fn one_session(sluice: &Sluice, frame: &[u8], rx: &Receiver<Vec<u8>>) -> Vec<u8> {
    let mut c = sluice.connect();
    c.write_all(frame).unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no header upstream; log:\n{}", sluice.log()));
    drop(c);
    got
}

// ---------------------------------------------------------------------------------------
// Point 3: the PROXY v2 header sluice sends.

#[test]
fn unique_ids_are_unique_across_workers_and_restarts_and_the_close_line_names_them() {
    let (up, rx) = header_upstream();
    let up = up.to_string();
    let env = [
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_UPSTREAM_MODE", "proxy-v2"),
        ("ENVOY_WORKERS", "2"),
    ];
    let frame = v2_frame("203.0.113.9:40000", &[], &curl_hello());
    let mut seen = std::collections::HashSet::new();
    let mut sids = std::collections::HashSet::new();
    for run in 0..2 {
        let mut sluice = Sluice::start(&env);
        let n = 12;
        for _ in 0..n {
            let got = one_session(&sluice, &frame, &rx);
            let uid = parsed(&got).tlvs.unique_id().expect("a UNIQUE_ID").to_vec();
            assert_eq!(uid.len(), 16, "16 bytes: {uid:?}");
            assert!(seen.insert(uid.clone()), "run {run}: {uid:?} sent twice");
        }
        let lines = sluice.wait_for_count(" reason=", n, Duration::from_secs(10));
        for line in &lines {
            let f = fields(line);
            let uid = hex_to_bytes(&f["unique_id"]);
            assert!(
                seen.contains(&uid),
                "the close line names a UNIQUE_ID sent: {line}"
            );
            sids.insert(f["sid"].clone());
            assert!(f["sid"].len() <= 3, "sid stays short: {line}");
        }
    }
    // Both runs reused the same short session ids; the UNIQUE_IDs never repeated.
    assert!(sids.len() < 24, "{sids:?}");
    assert_eq!(seen.len(), 24);
}

fn hex_to_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_alpn_tlv_is_passed_on_when_received_and_otherwise_sent_only_when_a_route_asks() {
    let (up, rx) = header_upstream();
    let sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        (
            "ENVOY_ROUTES",
            &format!(
                "client=198.51.100.0/24 allow upstream={up} mode=proxy-v2 alpn_tlv=offered;\
                 client=192.0.2.0/24 allow upstream={up} mode=proxy-v2 alpn_tlv=none;\
                 allow upstream={up} mode=proxy-v2"
            ),
        ),
    ]);
    let hello = curl_hello(); // offers h2, http/1.1
    let alpn = |src: &str, raw: &[RawTlv<'_>]| -> Option<Vec<u8>> {
        let got = one_session(&sluice, &v2_frame(src, raw, &hello), &rx);
        parsed(&got).tlvs.alpn().map(<[u8]>::to_vec)
    };
    let used = [RawTlv {
        kind: 0x01,
        value: b"http/1.1",
    }];
    // The default: no ALPN TLV received, none sent (the client's first offer, h2, is not
    // what the session ends up using); a received one passed on as it is.
    assert_eq!(alpn("203.0.113.9:1", &[]), None);
    assert_eq!(alpn("203.0.113.9:2", &used), Some(b"http/1.1".to_vec()));
    // alpn_tlv=offered: the offered list in its wire form, unless one was received.
    assert_eq!(
        alpn("198.51.100.7:1", &[]),
        Some(b"\x02h2\x08http/1.1".to_vec())
    );
    assert_eq!(alpn("198.51.100.7:2", &used), Some(b"http/1.1".to_vec()));
    // alpn_tlv=none: never.
    assert_eq!(alpn("192.0.2.7:1", &used), None);
}

#[test]
fn tlvs_that_sluice_writes_itself_are_refused_at_load_naming_the_route() {
    for (tlv, name) in [
        ("0x01", "ALPN"),
        ("0x02", "AUTHORITY"),
        ("0x03", "CRC32C"),
        ("0x05", "UNIQUE_ID"),
    ] {
        let out = Command::new(sluice_bin())
            .arg("check-config")
            .env_clear()
            .env("ENVOY_UPSTREAM", "127.0.0.1:3128")
            .env(
                "ENVOY_ROUTES",
                format!("sni=a.test allow mode=proxy-v2 tlvs=0xea,{tlv}"),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "tlvs={tlv}: {err}");
        assert!(err.contains("ENVOY_ROUTES route 1"), "{err}");
        assert!(
            err.contains(&format!("the {name} TLV ({tlv}) itself")),
            "{err}"
        );
    }
}

#[test]
fn a_preamble_that_cannot_be_written_has_its_own_close_reason() {
    // CONNECT mode needs a name; a ClientHello without SNI has none.
    let (up, _rx) = header_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_UPSTREAM_MODE", "connect"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&fixture("client-openssl-3.0.19-s_client-noservername.bin"))
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let line = sluice.wait_for_log(" reason=", Duration::from_secs(10));
    assert_eq!(fields(&line)["reason"], "preamble_failed", "{line}");
}

// ---------------------------------------------------------------------------------------
// Point 5: a refused client reads its alert, then a clean FIN.

/// A single-record ClientHello with one more extension appended (lengths fixed up).
fn with_extension(hello: &[u8], ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut h = hello.to_vec();
    // record header 5, handshake header 4, legacy_version 2, random 32
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + h[at] as usize; // session id
    at += 2 + u16::from_be_bytes([h[at], h[at + 1]]) as usize; // cipher suites
    at += 1 + h[at] as usize; // compression methods
    let ext_len_at = at;
    let add = 4 + data.len();
    let bump16 = |h: &mut Vec<u8>, i: usize| {
        let v = u16::from_be_bytes([h[i], h[i + 1]]) as usize + add;
        h[i..i + 2].copy_from_slice(&(v as u16).to_be_bytes());
    };
    bump16(&mut h, 3); // record length
    let hs = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize + add;
    h[6..9].copy_from_slice(&(hs as u32).to_be_bytes()[1..]);
    bump16(&mut h, ext_len_at); // extensions length
    h.extend_from_slice(&ext_type.to_be_bytes());
    h.extend_from_slice(&(data.len() as u16).to_be_bytes());
    h.extend_from_slice(data);
    h
}

/// Everything the client reads until the end, and how the end came: Ok(bytes) at a FIN,
/// Err((bytes, error)) at a reset.
fn read_to_end(c: &mut std::net::TcpStream) -> Result<Vec<u8>, (Vec<u8>, String)> {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err((got, e.to_string())),
        }
    }
}

#[test]
fn a_refused_ech_hello_reads_its_alert_then_a_fin() {
    let (up, _rx) = header_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", up.as_str()), ("ENVOY_ECH", "refuse")]);
    let ech = with_extension(&curl_hello(), 0xfe0d, &[0x00, 0x00, 0x01, 0x00, 0x01]);
    let mut c = sluice.connect();
    c.write_all(&ech).unwrap();
    // A fatal handshake_failure alert, then the FIN.
    assert_eq!(
        read_to_end(&mut c),
        Ok(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40])
    );
    drop(c);
    let line = sluice.wait_for_log(" reason=", Duration::from_secs(10));
    assert_eq!(fields(&line)["reason"], "ech_refused", "{line}");
}

#[test]
fn a_denied_client_with_much_unread_reads_its_alert_then_a_fin_not_a_reset() {
    let (up, _rx) = header_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_ROUTES", "sni=known.test allow; deny"),
    ]);
    // The hello (SNI example.test: denied) and 64 KiB more in flight behind it, sent
    // before anything is read: four buffers' worth that sluice never reads for the route.
    let mut frame = curl_hello();
    frame.extend(std::iter::repeat_n(0x17u8, 64 * 1024));
    let mut c = sluice.connect();
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&frame);
    });
    let got = read_to_end(&mut c);
    let _ = writer.join();
    assert_eq!(
        got,
        Ok(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]),
        "the unrecognized_name alert, then a FIN"
    );
    drop(c);
    let line = sluice.wait_for_log(" reason=", Duration::from_secs(10));
    assert_eq!(fields(&line)["reason"], "denied_name", "{line}");
}

#[test]
fn a_refused_client_that_never_closes_is_closed_after_a_bounded_linger() {
    let (up, _rx) = header_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", up.as_str()), ("ENVOY_ROUTES", "deny")]);
    // Reads nothing and keeps sending: the session still ends, and the worker goes on.
    let mut c = sluice.connect();
    c.write_all(&curl_hello()).unwrap();
    let line = sluice.wait_for_log(" reason=", Duration::from_secs(10));
    assert_eq!(fields(&line)["reason"], "denied_name", "{line}");
    let mut d = sluice.connect();
    d.write_all(&curl_hello()).unwrap();
    sluice.wait_for_count(" reason=", 2, Duration::from_secs(10));
    drop((c, d));
}

// ---------------------------------------------------------------------------------------
// Point 1: health checks.

/// The `.bin` captures in `dir`, by name.
fn captures(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".bin"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn haproxy_health_checks_are_counted_on_their_own_quiet_and_never_captured() {
    let dir = TempDir::new("health");
    let cap = TempDir::new("health-captures");
    let (up, _rx) = header_upstream();
    let up = up.to_string();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", up.as_str()),
        ("ENVOY_CAPTURE_DIR", cap.0.to_str().unwrap()),
        ("ENVOY_CAPTURE_MAX_FILES", "3"),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
    ]);
    // A real failure first: its capture must outlive every health check.
    let mut c = sluice.connect();
    c.write_all(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
        .unwrap(); // a TLS record that is not a ClientHello
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let mut failure = Vec::new();
    for _ in 0..100 {
        failure = captures(&cap);
        if !failure.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failure.len(), 1, "{failure:?}");
    assert!(failure[0].ends_with("-invalid_tls.bin"), "{failure:?}");

    // haproxy checks sluice every 50 ms: PROXY v2 (LOCAL, with a CRC32C) and v1, as its
    // `check-send-proxy` sends them, then closes or resets.
    let subdir = |n: &str| {
        let d = dir.path(n);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    };
    let (v2_dir, v1_dir) = (subdir("v2"), subdir("v1"));
    let _v2 = haproxy(
        &v2_dir,
        sluice.addr,
        "send-proxy-v2 proxy-v2-options crc32c check check-send-proxy inter 50",
    );
    let _v1 = haproxy(
        &v1_dir,
        sluice.addr,
        "send-proxy check check-send-proxy inter 50",
    );
    let want = 40;
    let mut checks = 0;
    for _ in 0..300 {
        checks = sluice.metric("sluice_closed_total{reason=\"health_check\"}");
        if checks >= want {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checks >= want,
        "{checks} health checks counted; log:\n{}",
        tail(&sluice.log(), 20)
    );
    let body = sluice.scrape();
    for other in ["client_closed_early", "client_reset", "invalid_proxy"] {
        assert_eq!(
            metric_value(&body, &format!("sluice_closed_total{{reason=\"{other}\"}}")),
            0,
            "health checks counted as {other}"
        );
    }
    // Never captured: the real failure's capture is still the only one.
    assert_eq!(captures(&cap), failure);
    // Quiet at info: one close line (the failure), nothing else about the checks.
    let log = sluice.log();
    let closes: Vec<&str> = log.lines().filter(|l| l.contains(" reason=")).collect();
    assert_eq!(closes.len(), 1, "{closes:#?}");
    assert!(!log.contains("health_check"), "{}", tail(&log, 20));
    assert!(
        !log.lines().any(|l| l.contains("WARN")
            && !l.contains("] invalid ClientHello sid=")
            && !l.contains("] dump sid=")),
        "{}",
        tail(&log, 20)
    );
}
