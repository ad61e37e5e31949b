#![cfg(test)]
//! Routing, refusals and the three upstream handshakes, against real peers: haproxy with
//! `accept-proxy` logging what it received, tinyproxy for CONNECT, curl and openssl, and
//! recording upstreams that check every byte sluice sends.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sluice::wire::proxy::v2::{self as proxy_v2, RawTlv, V2Out};
use sluice::wire::proxy::{self, Addresses, Command as PpCommand};
use sluice::wire::Parsed;
use util::*;

/// A frame: PROXY v2 from `src` to `dst` with `authority` and `raw` TLVs, then `hello`.
fn v2_frame(
    src: &str,
    dst: &str,
    authority: Option<&str>,
    raw: &[RawTlv<'_>],
    hello: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let n = proxy_v2::emit(
        &V2Out {
            command: PpCommand::Proxy,
            addrs: Some((src.parse().unwrap(), dst.parse().unwrap())),
            authority: authority.map(str::as_bytes),
            alpn: None,
            unique_id: None,
            raw,
            crc32c: false,
        },
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out.extend_from_slice(hello);
    out
}

/// The ClientHello of a real curl (SNI example.test, ALPN h2,http/1.1).
fn curl_hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

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

/// A recording upstream: hands each accepted connection to `f` on its own thread.
fn recording_upstream(
    f: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let (l, addr) = listener();
    let f = Arc::new(f);
    let h = thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let f = Arc::clone(&f);
            thread::spawn(move || f(s));
        }
    });
    (addr, h)
}

/// Reads an HTTP head (through the blank line) byte by byte, so nothing after it is taken.
fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    head
}

fn close_reason(sluice: &mut Sluice) -> String {
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    fields(&line)["reason"].clone()
}

#[test]
fn denied_names_and_clients_get_a_tls_alert_and_a_counted_reason() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        (
            "ENVOY_ROUTES",
            "client=198.51.100.0/24 deny; sni=*.blocked.test deny; sni=example.test allow",
        ),
    ]);
    // A client address from the PROXY header in a denied block: access_denied (49).
    let mut c = sluice.connect();
    c.write_all(&v2_frame(
        "198.51.100.7:5555",
        "127.0.0.1:443",
        None,
        &[],
        &curl_hello(),
    ))
    .unwrap();
    assert_eq!(
        read_exact(&mut c, 7),
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49]
    );
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(close_reason(&mut sluice), "denied_client");
    // A denied name (AUTHORITY, no SNI in this plain request): no TLS, so no alert.
    let mut c = sluice.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x.blocked.test\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let lines = sluice.wait_for_count("reason=", 2, Duration::from_secs(5));
    assert!(lines[1].contains("reason=denied_name"), "{}", lines[1]);
    assert!(lines[1].contains(" route=route2 "), "{}", lines[1]);
}

#[test]
fn unknown_names_get_unrecognized_name_when_the_last_route_denies() {
    let (_l, addr) = listener();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &addr.to_string()),
        ("ENVOY_ROUTES", "sni=known.test allow; deny"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&curl_hello()).unwrap(); // SNI example.test: unknown
    assert_eq!(
        read_exact(&mut c, 7),
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]
    );
    assert_eq!(close_reason(&mut sluice), "denied_name");
}

#[test]
fn proxy_v2_mode_against_haproxy_accept_proxy() {
    let dir = TempDir::new("pp2");
    // Behind haproxy: a server that checks it gets the client's ClientHello, then answers.
    let hello = curl_hello();
    let expect = hello.clone();
    let (backend, _h) = recording_upstream(move |mut s| {
        let got = read_exact(&mut s, expect.len());
        assert_eq!(got, expect);
        s.write_all(b"from-backend").unwrap();
    });
    let port = free_port();
    let cfg = format!(
        "global\n    log stdout format raw local0\n\
         defaults\n    mode tcp\n    log global\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:{port} accept-proxy\n\
         \x20   log-format \"pp client=%ci:%cp authority=%[fc_pp_authority] uid=%[fc_pp_unique_id,hex]\"\n\
         \x20   default_backend be\n\
         backend be\n    server s1 {backend}\n"
    );
    std::fs::write(dir.path("haproxy.cfg"), cfg).unwrap();
    let mut child = Command::new(which("haproxy").expect("haproxy"))
        .args(["-db", "-f"])
        .arg(dir.path("haproxy.cfg"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&out);
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let _haproxy = Proc(child);
    wait_listening(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(10),
    );
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &format!("127.0.0.1:{port}")),
        ("ENVOY_UPSTREAM_MODE", "proxy-v2"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&v2_frame(
        "203.0.113.9:40000",
        "127.0.0.1:443",
        None,
        &[],
        &hello,
    ))
    .unwrap();
    assert_eq!(read_exact(&mut c, 12), b"from-backend");
    drop(c);
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    let unique_id = fields(&line)["unique_id"].to_ascii_uppercase();
    assert_eq!(unique_id.len(), 32, "16 bytes: {line}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let o = out.lock().unwrap().clone();
        if let Some(l) = o.lines().find(|l| l.contains("pp client=")) {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "haproxy logged nothing; sluice:\n{}",
            sluice.log()
        );
        thread::sleep(Duration::from_millis(50));
    };
    // haproxy saw the client address from sluice's header, the SNI as AUTHORITY, and the
    // UNIQUE_ID the close line names.
    assert!(logged.contains("client=203.0.113.9:40000"), "{logged}");
    assert!(logged.contains("authority=example.test"), "{logged}");
    assert!(logged.contains(&format!("uid={unique_id}")), "{logged}");
}

#[test]
fn proxy_v2_mode_passes_the_chosen_tlvs_and_a_crc32c_byte_exact() {
    let hello = curl_hello();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let n = hello.len();
    let (up, _h) = recording_upstream(move |mut s| {
        let mut got = vec![0u8; 16];
        s.read_exact(&mut got).unwrap();
        let len = u16::from_be_bytes([got[14], got[15]]) as usize;
        got.extend(read_exact(&mut s, len + n));
        tx.lock().unwrap().send(got).unwrap();
    });
    let aws = [0x01u8, b'v', b'p', b'c', b'e', b'-', b'1'];
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        (
            "ENVOY_ROUTES",
            &format!("sni=example.test allow upstream={up} mode=proxy-v2 tlvs=0xea crc32c=yes"),
        ),
    ]);
    let mut c = sluice.connect();
    let frame = v2_frame(
        "192.0.2.1:1234",
        "192.0.2.2:443",
        None,
        &[
            RawTlv {
                kind: 0xea,
                value: &aws,
            },
            RawTlv {
                kind: 0xeb,
                value: b"not-passed",
            },
        ],
        &hello,
    );
    c.write_all(&frame).unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream received a header");
    let Parsed::Complete(h, len) = proxy::parse(&got) else {
        panic!("not a valid v2 header: {got:?}")
    };
    assert_eq!(
        h.addrs,
        Addresses::Inet {
            src: "192.0.2.1:1234".parse().unwrap(),
            dst: "192.0.2.2:443".parse().unwrap()
        }
    );
    assert_eq!(h.tlvs.authority(), Some(&b"example.test"[..]));
    assert_eq!(
        h.tlvs.alpn(),
        None,
        "no ALPN TLV received: none sent (what the client offered is not what it uses)"
    );
    assert_eq!(h.tlvs.get(0xea), Some(&aws[..]));
    assert_eq!(h.tlvs.get(0xeb), None, "only the route's TLVs pass");
    assert!(
        h.crc32c.is_some(),
        "CRC32C present and verified by the parser"
    );
    assert_eq!(&got[len..], &hello[..], "then the ClientHello, unchanged");
    drop(c);
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    assert!(line.contains("reason=done"), "{line}");
    let uid = h.tlvs.unique_id().expect("a UNIQUE_ID");
    let hex: String = uid.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, fields(&line)["unique_id"], "the close line names it");
}

#[test]
fn connect_mode_sends_every_header_byte_exact() {
    let hello = curl_hello();
    let expect = hello.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let (proxy_addr, _h) = recording_upstream(move |mut s| {
        let head = read_head(&mut s);
        tx.lock().unwrap().send(head).unwrap();
        // The 2xx reply, with the first tunnel bytes in the same segment.
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\nearly")
            .unwrap();
        assert_eq!(read_exact(&mut s, expect.len()), expect);
        s.write_all(b"-late").unwrap();
    });
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &proxy_addr.to_string()),
        ("ENVOY_UPSTREAM_MODE", "connect"),
        ("ENVOY_COUNTRY", "de"),
        (
            "ENVOY_HEADERS",
            "X-Fleet: eu-1; Proxy-Authorization: Basic dTpw",
        ),
    ]);
    let mut c = sluice.connect();
    c.write_all(&v2_frame(
        "10.20.30.40:5555",
        "127.0.0.1:8443",
        None,
        &[],
        &hello,
    ))
    .unwrap();
    let head = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "CONNECT example.test:8443 HTTP/1.1\r\n\
         Host: example.test:8443\r\n\
         x-region-key: DE\r\n\
         x-session-key: 0a141e28\r\n\
         X-Fleet: eu-1\r\n\
         Proxy-Authorization: Basic dTpw\r\n\r\n"
    );
    assert_eq!(read_exact(&mut c, 10), b"early-late");
    drop(c);
    assert_eq!(close_reason(&mut sluice), "done");
}

#[test]
fn connect_mode_through_a_real_tinyproxy_to_s_server() {
    let dir = TempDir::new("tiny");
    let (_server, tls) = s_server(&dir);
    let tiny_port = free_port();
    let conf = format!(
        "Port {tiny_port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 50\nLogLevel Info\n"
    );
    std::fs::write(dir.path("tinyproxy.conf"), conf).unwrap();
    let _tiny = Proc(
        Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(dir.path("tinyproxy.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy"),
    );
    wait_listening(
        format!("127.0.0.1:{tiny_port}").parse().unwrap(),
        Duration::from_secs(10),
    );
    // No DNS here: the routed name must resolve at tinyproxy, so the client asks for localhost.
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        (
            "ENVOY_ROUTES",
            &format!(
                "sni=localhost allow upstream=127.0.0.1:{tiny_port} mode=connect connect_port={}",
                tls.port()
            ),
        ),
    ]);
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", sluice.addr.port()))
        .arg(format!("https://localhost:{}/", sluice.addr.port()))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("s_server"),
        "curl through tinyproxy got: {body}\n{}",
        sluice.log()
    );
    assert_eq!(close_reason(&mut sluice), "done");
}

fn connect_replying(reply: &'static [u8]) -> (Sluice, TcpStream) {
    let (proxy_addr, _h) = recording_upstream(move |mut s| {
        read_head(&mut s);
        let _ = s.write_all(reply);
        thread::sleep(Duration::from_millis(300));
    });
    let sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &proxy_addr.to_string()),
        ("ENVOY_UPSTREAM_MODE", "connect"),
    ]);
    let mut c = sluice.connect();
    c.write_all(&curl_hello()).unwrap();
    (sluice, c)
}

#[test]
fn connect_refusals_close_the_client_with_status_and_dump() {
    for (reply, reason, logged) in [
        (&b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..], "connect_rejected", "status=403 status_text=Forbidden"),
        (
            &b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"[..],
            "connect_rejected",
            "status=407 status_text=\"Proxy Authentication Required\"",
        ),
        (&b"HTTP/1.1 20 OK\r\n\r\n"[..], "invalid_connect_reply", "invalid CONNECT reply"),
    ] {
        let (mut sluice, mut c) = connect_replying(reply);
        assert!(closed_within(&mut c, Duration::from_secs(10)));
        assert_eq!(close_reason(&mut sluice), reason);
        let log = sluice.log();
        assert!(log.contains(logged), "{log}");
        assert!(
            log.contains("of=connect_reply offset=0000 hex=\"4854 5450 2f31 2e31"),
            "a dump of the reply:\n{log}"
        );
    }
}

#[test]
fn a_connect_reply_head_over_the_cap_is_refused() {
    static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let huge = HUGE.get_or_init(|| {
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        while v.len() < 20_000 {
            v.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        v
    });
    let (mut sluice, mut c) = connect_replying(huge);
    assert!(closed_within(&mut c, Duration::from_secs(10)));
    assert_eq!(close_reason(&mut sluice), "invalid_connect_reply");
}

/// A forward proxy that accepts and reads the CONNECT request but never answers: at the
/// connect timeout the route's next proxy is tried, and it gets the whole request (not what
/// was left of it after the silent one, and not an old reply's bytes).
#[test]
fn a_silent_connect_proxy_times_out_and_the_next_one_gets_the_whole_request() {
    let (silent, _s) = recording_upstream(|mut s| {
        read_head(&mut s);
        thread::sleep(Duration::from_secs(5));
    });
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    let hello = curl_hello();
    let expect = hello.clone();
    let (good, _g) = recording_upstream(move |mut s| {
        let head = read_head(&mut s);
        seen.lock().unwrap().push(head);
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        if read_exact(&mut s, expect.len()) == expect {
            s.write_all(b"tunnel").unwrap();
        }
    });
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CONNECT_TIMEOUT_MS", "500"),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        (
            "ENVOY_ROUTES",
            &format!("sni=example.test allow mode=connect upstream={silent},{good}"),
        ),
    ]);
    let mut c = sluice.connect();
    c.write_all(&hello).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = Read::by_ref(&mut c).take(6).read_to_end(&mut got);
    let heads = heads.lock().unwrap().clone();
    assert_eq!(
        got,
        b"tunnel",
        "through the second proxy; log:\n{}",
        sluice.log()
    );
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with(b"CONNECT example.test:443 HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&heads[0])
    );
    drop(c);
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    assert!(line.contains(&format!("upstream={good}")), "{line}");
    // by upstream and reason since issue 15: every series summed
    let body = sluice.scrape();
    assert_eq!(
        metric_total(&body, "sluice_upstream_connect_failures_total"),
        1
    );
}

#[test]
fn a_failing_first_upstream_falls_over_to_the_second() {
    let hello = curl_hello();
    let expect = hello.clone();
    let (good, _h) = recording_upstream(move |mut s| {
        assert_eq!(read_exact(&mut s, expect.len()), expect);
        s.write_all(b"second").unwrap();
    });
    let dead = format!("127.0.0.1:{}", free_port());
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        (
            "ENVOY_ROUTES",
            &format!("sni=example.test allow upstream={dead},{good}"),
        ),
    ]);
    let mut c = sluice.connect();
    c.write_all(&hello).unwrap();
    assert_eq!(read_exact(&mut c, 6), b"second");
    drop(c);
    let line = sluice.wait_for_log("reason=", Duration::from_secs(10));
    assert!(line.contains(&format!("upstream={good}")), "{line}");
}

#[test]
fn name_mismatch_policy_and_authority_routing() {
    let (a_addr, _a) = recording_upstream(|mut s| {
        let _ = s.write_all(b"A");
    });
    let (b_addr, _b) = recording_upstream(|mut s| {
        let _ = s.write_all(b"B");
    });
    let routes =
        format!("sni=example.test allow upstream={a_addr}; sni=other.test allow upstream={b_addr}");
    let frame = v2_frame(
        "10.0.0.1:1",
        "10.0.0.2:443",
        Some("other.test"),
        &[],
        &curl_hello(),
    );
    for (policy, expect) in [
        ("prefer-sni", Some(b'A')),
        ("prefer-authority", Some(b'B')),
        ("reject", None),
    ] {
        let mut sluice = Sluice::start(&[
            ("ENVOY_UPSTREAM", "127.0.0.1:1"),
            ("ENVOY_ROUTES", &routes),
            ("ENVOY_NAME_MISMATCH", policy),
        ]);
        let mut c = sluice.connect();
        c.write_all(&frame).unwrap();
        match expect {
            Some(b) => assert_eq!(read_exact(&mut c, 1), [b], "{policy}"),
            None => {
                assert_eq!(read_exact(&mut c, 7)[6], 112, "unrecognized_name alert");
                assert_eq!(close_reason(&mut sluice), "name_mismatch");
            }
        }
    }
    // AUTHORITY alone (no SNI: plain bytes after the header) routes too.
    let sluice = Sluice::start(&[("ENVOY_UPSTREAM", "127.0.0.1:1"), ("ENVOY_ROUTES", &routes)]);
    let mut c = sluice.connect();
    c.write_all(&v2_frame(
        "10.0.0.1:1",
        "10.0.0.2:443",
        Some("other.test"),
        &[],
        b"\x00raw",
    ))
    .unwrap();
    assert_eq!(read_exact(&mut c, 1), b"B");
}

#[test]
fn plain_http_is_routed_on_host_and_bad_hosts_are_refused() {
    let (up, _h) = recording_upstream(|mut s| {
        let head = read_head(&mut s);
        assert!(head.starts_with(b"GET /x HTTP/1.1\r\nHost: plain.test\r\n"));
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
    });
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        (
            "ENVOY_ROUTES",
            &format!("sni=plain.test proto=http allow upstream={up}; proto=other deny"),
        ),
    ]);
    let mut c = sluice.connect();
    c.write_all(b"GET /x HTTP/1.1\r\nHost: plain.test\r\nAccept: */*\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 12];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 204");
    drop(c);
    // A Host with a NUL byte: refused before it reaches any upstream.
    let mut c = sluice.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: evil\0.test\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    // Bytes that are neither TLS nor HTTP: the proto=other route denies them.
    let mut c = sluice.connect();
    c.write_all(b"\x00\x01binary").unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let lines = sluice.wait_for_count("reason=", 3, Duration::from_secs(5));
    let reasons: Vec<String> = lines.iter().map(|l| fields(l)["reason"].clone()).collect();
    assert!(reasons.contains(&"invalid_http".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"denied_name".to_string()), "{reasons:?}");
}

#[test]
fn ech_can_be_refused() {
    let (up, _h) = recording_upstream(|mut s| {
        let _ = s.write_all(b"ok");
    });
    let ech = with_extension(&curl_hello(), 0xfe0d, &[0x00, 0x00, 0x01, 0x00, 0x01]);
    let sluice = Sluice::start(&[("ENVOY_UPSTREAM", &up.to_string())]);
    let mut c = sluice.connect();
    c.write_all(&ech).unwrap();
    assert_eq!(
        read_exact(&mut c, 2),
        b"ok",
        "allowed by default, routed on the outer SNI"
    );
    drop(c);
    let mut sluice = Sluice::start(&[("ENVOY_UPSTREAM", &up.to_string()), ("ENVOY_ECH", "refuse")]);
    let mut c = sluice.connect();
    c.write_all(&ech).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(close_reason(&mut sluice), "ech_refused");
}

#[test]
fn crlf_in_an_authority_never_reaches_a_connect_request() {
    let (proxy_addr, _h) = recording_upstream(|mut s| {
        let head = read_head(&mut s);
        panic!("nothing may reach the proxy, got {head:?}");
    });
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &proxy_addr.to_string()),
        ("ENVOY_UPSTREAM_MODE", "connect"),
    ]);
    let mut c = sluice.connect();
    let frame = v2_frame(
        "10.0.0.1:1",
        "10.0.0.2:443",
        Some("a.test\r\nX-Injected: 1"),
        &[],
        b"\x00raw",
    );
    c.write_all(&frame).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(close_reason(&mut sluice), "invalid_authority");
    assert!(!sluice.log().contains("\r\nX-Injected"));
    c.shutdown(Shutdown::Both).ok();
}

#[test]
fn a_route_file_is_loaded_and_a_bad_line_is_refused_with_its_number() {
    let dir = TempDir::new("routes");
    let good = dir.path("good.routes");
    std::fs::write(
        &good,
        "# operators' set-up\nsni=*.example.test allow mode=connect\n\ndeny\n",
    )
    .unwrap();
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_UPSTREAM", "127.0.0.1:3128")
        .env("ENVOY_ROUTES_FILE", &good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path("bad.routes");
    std::fs::write(&bad, "sni=a.test allow\n\nsni=b.test allow mode=teleport\n").unwrap();
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_UPSTREAM", "127.0.0.1:3128")
        .env("ENVOY_ROUTES_FILE", &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ENVOY_ROUTES_FILE") && err.contains("line 3") && err.contains("bad mode"),
        "{err}"
    );
}

#[test]
fn the_readme_route_file_for_the_operators_set_up_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("# /etc/sluice/routes")
        .expect("the README shows a route file");
    let block: String = readme[start..]
        .lines()
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(block.lines().count() > 3);
    let dir = TempDir::new("readme-routes");
    std::fs::write(dir.path("routes"), &block).unwrap();
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_UPSTREAM", "127.0.0.1:3128")
        .env("ENVOY_UPSTREAM_MODE", "connect")
        .env("ENVOY_ROUTES_FILE", dir.path("routes"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
