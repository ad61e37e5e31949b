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
