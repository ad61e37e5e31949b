#![cfg(test)]
//! Logs that pipelines can parse (issue 14, points 6 and 7): every kind of line sluice writes
//! is logfmt (free words, then `key=value` pairs, values quoted and escaped by one rule), each
//! with the keys this file lists for it, hex dumps one record a row; routes have names;
//! `sni=` is the SNI only and `host=` the HTTP Host; config values read as they are written.
//!
//! The reader is tests/util/logfmt.rs, strict and independent of sluice's code; every
//! integration test that starts sluice also holds all its lines to it when it ends.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::logfmt::{self, Record};
use util::*;

const T: Duration = Duration::from_secs(10);

/// The close line's keys, in order: the same on every close line.
const CLOSE_KEYS: &[&str] = &[
    "sid",
    "client",
    "listener",
    "sni",
    "host",
    "name",
    "route",
    "upstream",
    "state",
    "duration_ms",
    "bytes_up",
    "bytes_down",
    "reason",
    "unique_id",
];

/// Every kind of line the driven sessions and operations make: its free words and its keys,
/// in order.
const KINDS: &[(&str, &[&str])] = &[
    // start-up
    ("control socket listening", &["path"]),
    ("metrics listening", &["url"]),
    ("supervisor starting", &["pid", "workers", "addr"]),
    ("worker started", &["worker", "pid"]),
    (
        "listening",
        &[
            "addr",
            "upstream",
            "upstream_addrs",
            "mode",
            "routes",
            "max_sessions",
            "buffer_size",
            "proxy_protocol",
        ],
    ),
    ("variable ignored, not a key", &["variable", "nearest"]),
    // a session at debug
    ("accept", &["sid", "peer", "listener", "state"]),
    (
        "PROXY header",
        &[
            "sid",
            "listener",
            "bytes",
            "proxy",
            "proxy.command",
            "proxy.family",
            "proxy.src",
            "proxy.dst",
            "proxy.length",
        ],
    ),
    ("dump", &["sid", "of", "offset", "hex", "ascii"]),
    ("transition", &["sid", "listener", "from", "to"]),
    (
        "ClientHello",
        &["sid", "listener", "bytes", "records", "sni", "alpn", "ech"],
    ),
    (
        "upstream connected",
        &[
            "sid",
            "client",
            "listener",
            "name",
            "route",
            "upstream",
            "mode",
            "connect_ms",
        ],
    ),
    (
        "preamble",
        &["sid", "listener", "mode", "bytes", "unique_id"],
    ),
    ("close", CLOSE_KEYS),
    ("traced from here on", &["sid", "listener"]),
    // parse errors and refusals, each with its dump where it has one
    (
        "invalid PROXY header",
        &["sid", "peer", "listener", "error"],
    ),
    (
        "invalid ClientHello",
        &["sid", "client", "listener", "error"],
    ),
    (
        "invalid HTTP request head",
        &["sid", "client", "listener", "error"],
    ),
    ("dump", &["sid", "of", "offset", "not_shown"]),
    (
        "PROXY header inside the stream",
        &["sid", "client", "listener"],
    ),
    (
        "LOCAL PROXY header followed by bytes neither TLS nor HTTP",
        &["sid", "peer", "listener"],
    ),
    (
        "PROXY AUTHORITY is not a host name",
        &["sid", "peer", "listener", "authority"],
    ),
    (
        "first bytes fill the buffer without completing",
        &["sid", "peer", "listener", "bytes"],
    ),
    (
        "truncated ClientHello",
        &["sid", "client", "listener", "ended_by", "after_header"],
    ),
    (
        "no ClientHello after the PROXY header",
        &["sid", "client", "listener", "ended_by", "after_header"],
    ),
    (
        "SNI differs from PROXY AUTHORITY",
        &["sid", "client", "listener", "sni", "host", "authority"],
    ),
    ("ECH refused", &["sid", "client", "listener", "ech"]),
    (
        "denied by route",
        &["sid", "client", "listener", "name", "route", "alert"],
    ),
    (
        "no PROXY header",
        &["sid", "peer", "listener", "proxy_protocol"],
    ),
    (
        "PROXY header from a source not in ENVOY_TRUSTED_PROXIES",
        &["sid", "peer", "listener"],
    ),
    // the upstream leg
    (
        "CONNECT accepted",
        &["sid", "listener", "upstream", "status"],
    ),
    (
        "CONNECT refused",
        &[
            "sid",
            "client",
            "listener",
            "name",
            "upstream",
            "status",
            "status_text",
        ],
    ),
    (
        "invalid CONNECT reply",
        &["sid", "client", "listener", "upstream", "error"],
    ),
    ("connect failed", &["sid", "listener", "upstream", "error"]),
    (
        "no upstream accepted the connection",
        &["sid", "client", "listener", "route"],
    ),
    // reloads
    (
        "config applied to new sessions",
        &["signal", "routes", "upstream", "running_sessions"],
    ),
    ("reload refused, the old config stays", &["signal", "error"]),
    ("the log keys stay as they were", &["error"]),
    // drain and exit
    ("stopping, workers drain then exit", &["signal"]),
    ("draining", &["sessions", "timeout_ms"]),
    (
        "drain deadline reached, closing what is left",
        &["sessions"],
    ),
    ("drained, no session left, exiting", &[]),
    ("worker exited", &["worker", "pid", "status"]),
    ("every worker is gone, supervisor exiting", &["pid"]),
];

/// An upstream that takes connections and keeps them, reading until the client goes; each
/// connection handled by `f` first.
fn upstream(f: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let (l, addr) = listener();
    let f = Arc::new(f);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let f = Arc::clone(&f);
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                f(&mut s);
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A forward proxy that reads the CONNECT head and answers `reply`.
fn connect_proxy(reply: &'static [u8]) -> SocketAddr {
    upstream(move |s| {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut b), Ok(1)) {
            head.push(b[0]);
        }
        let _ = s.write_all(reply);
    })
}

/// A PROXY v2 header (`command` 0x21 PROXY, 0x20 LOCAL) from 203.0.113.9:40000 to
/// 192.0.2.1:443 with `tlvs`.
fn v2(command: u8, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = vec![203, 0, 113, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x01, 0xbb]; // addresses, ports
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec(); // signature
    h.extend_from_slice(&[command, 0x11]); // version 2 and the command, TCP4
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

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

/// Sends `bytes` as one client, then waits until sluice closes it (or, with `fin`, shuts
/// its side first).
fn one(sluice: &Sluice, bytes: &[u8], fin: bool) {
    let mut c = sluice.connect();
    c.write_all(bytes).unwrap();
    if fin {
        c.shutdown(std::net::Shutdown::Write).unwrap();
    }
    closed_within(&mut c, T);
}

/// Waits until `n` records have the free words `message`.
fn wait_records(sluice: &Sluice, message: &str, n: usize) -> Vec<Record> {
    let until = Instant::now() + T;
    loop {
        let found = sluice.records_of(message);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < until,
            "{} of {n} lines {message:?}; log tail:\n{}",
            found.len(),
            tail(&sluice.log(), 30)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_kind_of_line_is_logfmt_with_its_keys() {
    let dir = TempDir::new("logfmt-kinds");
    let sock = dir.path("ctl.sock");
    let config = dir.path("sluice.env");
    std::fs::write(&config, "ENVOY_IDLE_TIMEOUT_MS=0\n").unwrap();
    let up = upstream(|_| {});
    let refusing = connect_proxy(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    let garbled = connect_proxy(b"HTTP/1.1 20 OK\r\n\r\n");
    let tunnel = connect_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let dead = format!("127.0.0.1:{}", free_port());
    let routes = format!(
        "sni=deny.test deny name=blocked;\
         sni=v2.test allow name=pp upstream={up} mode=proxy-v2;\
         sni=refuse.test allow name=cx upstream={refusing} mode=connect;\
         sni=garbled.test allow upstream={garbled} mode=connect;\
         sni=tunnel.test allow upstream={tunnel} mode=connect;\
         sni=dead.test allow name=dead upstream={dead}"
    );
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_LOG_LEVEL", "debug"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ("ENVOY_CONFIG_FILE", config.to_str().unwrap()),
        ("ENVOY_HEADER_TIMEOUT_MS", "300"),
        ("ENVOY_BUFFER_SIZE", "2048"),
        ("ENVOY_ECH", "refuse"),
        ("ENVOY_NAME_MISMATCH", "reject"),
        ("ENVOY_DRAIN_TIMEOUT_MS", "300"),
        ("ENVOY_ROUTES", &routes),
        ("ENVOY_PORTT", "1"),
    ]);
    let hello = curl_hello();

    // a whole TLS session behind a PROXY v2 header, traced by the client's block; another
    // one untraced
    ctl_ok(&sock, &["trace", "203.0.113.0/24"]);
    one(&sluice, &[&v2(0x21, &[])[..], &hello[..]].concat(), true);
    wait_records(&sluice, "close", 1);
    ctl_ok(&sock, &["untrace", "all"]);
    one(&sluice, &[&v2(0x21, &[])[..], &hello[..]].concat(), true);
    wait_records(&sluice, "close", 2);
    // plain HTTP: routed on the Host, each route by its name
    one(&sluice, b"GET / HTTP/1.1\r\nHost: v2.test\r\n\r\n", true);
    one(&sluice, b"GET / HTTP/1.1\r\nHost: deny.test\r\n\r\n", false);
    one(
        &sluice,
        b"GET / HTTP/1.1\r\nHost: refuse.test\r\n\r\n",
        false,
    );
    one(
        &sluice,
        b"GET / HTTP/1.1\r\nHost: garbled.test\r\n\r\n",
        false,
    );
    one(
        &sluice,
        b"GET / HTTP/1.1\r\nHost: tunnel.test\r\n\r\n",
        true,
    );
    one(&sluice, b"GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n", false);
    // every parse error and refusal of the first bytes
    one(&sluice, &fixture("edge-v1-longer-than-107.bin"), false);
    one(&sluice, b"\x16\x03\x01\x00\x05\x02garbage, n", false);
    let long_head = format!(
        "GET / HTTP/1.1\r\nX-Pad: {}\r\nHost: bad host\r\n\r\n",
        "p".repeat(600)
    );
    one(&sluice, long_head.as_bytes(), false);
    one(&sluice, &[v2(0x21, &[]), v2(0x21, &[])].concat(), false);
    one(
        &sluice,
        &[&v2(0x20, &[])[..], b"xyz garbage"].concat(),
        false,
    );
    one(&sluice, &v2(0x21, &[(0x02, b"bad name!")]), false);
    let mut big = vec![
        0x16, 0x03, 0x01, 0x30, 0x00, 0x01, 0x00, 0x2f, 0xfc, 0x03, 0x03,
    ];
    big.resize(2100, 0);
    one(&sluice, &big, false);
    one(&sluice, &[&v2(0x21, &[])[..], &hello[..100]].concat(), true);
    one(&sluice, &v2(0x21, &[]), false); // then silence until the header timeout
    one(
        &sluice,
        &[&v2(0x21, &[(0x02, b"other.test")])[..], &hello[..]].concat(),
        false,
    );
    one(
        &sluice,
        &with_extension(&hello, 0xfe0d, &[0x00, 0x00, 0x01, 0x00, 0x01]),
        false,
    );
    ctl_ok(&sock, &["set", "ENVOY_PROXY_PROTOCOL", "required"]);
    one(&sluice, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", false);
    ctl_ok(&sock, &["set", "ENVOY_TRUSTED_PROXIES", "10.0.0.0/8"]);
    one(&sluice, &[&v2(0x21, &[])[..], &hello[..]].concat(), false);
    ctl_ok(&sock, &["set", "ENVOY_TRUSTED_PROXIES", "127.0.0.0/8"]);

    // reloads: one applied, one refused
    signal(sluice.child.id(), "HUP");
    wait_records(&sluice, "config applied to new sessions", 1);
    std::fs::write(&config, "ENVOY_IDLE_TIMEOUT_MS=soon\n").unwrap();
    signal(sluice.child.id(), "HUP");
    wait_records(&sluice, "reload refused, the old config stays", 1);

    // a drain with a session still open at its deadline
    let connected = sluice.records_of("upstream connected").len();
    let mut held = sluice.connect();
    held.write_all(&[&v2(0x21, &[])[..], &hello[..]].concat())
        .unwrap();
    wait_records(&sluice, "upstream connected", connected + 1);
    let closes = sluice.records_of("close").len();
    signal(sluice.child.id(), "TERM");
    let until = Instant::now() + T;
    while sluice.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "no exit after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }
    wait_records(&sluice, "close", closes + 1);
    drop(held);
    thread::sleep(Duration::from_millis(100)); // the reader thread takes the last lines

    // every line parses (this panics, naming the line, on one that does not)...
    let records = sluice.records();
    // ...and each kind is there with its keys, in order
    let mut missing = Vec::new();
    for (message, keys) in KINDS {
        let of_kind: Vec<&Record> = records.iter().filter(|r| r.message() == *message).collect();
        if !of_kind.iter().any(|r| r.keys() == *keys) {
            missing.push(format!(
                "{message:?} with {keys:?}; seen: {:?}",
                of_kind.iter().map(|r| r.keys()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}\n{}", sluice.log());
    // every close line has the same keys
    for r in records.iter().filter(|r| r.message() == "close") {
        assert_eq!(r.keys(), CLOSE_KEYS, "{r:?}");
    }
    // a few values: as written in the environment, names of routes, sni and host apart
    let get = |message: &str, key: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.message() == message)
            .filter_map(|r| r.get(key))
            .collect()
    };
    assert_eq!(get("listening", "proxy_protocol"), ["optional"]);
    assert_eq!(get("listening", "mode"), ["direct"]);
    let close_of = |host: &str| -> Record {
        records
            .iter()
            .find(|r| r.message() == "close" && r.get("host").as_deref() == Some(host))
            .unwrap_or_else(|| panic!("no close line with host={host}"))
            .clone()
    };
    let v2_test = close_of("v2.test");
    assert_eq!(v2_test.get("sni").as_deref(), Some("-"), "{v2_test:?}");
    assert_eq!(v2_test.get("name").as_deref(), Some("v2.test"));
    assert_eq!(v2_test.get("route").as_deref(), Some("pp"));
    assert_eq!(v2_test.get("unique_id").map(|u| u.len()), Some(32));
    assert_eq!(
        close_of("deny.test").get("route").as_deref(),
        Some("blocked")
    );
    assert_eq!(
        close_of("garbled.test").get("route").as_deref(),
        Some("route4")
    );
    let tls = records
        .iter()
        .find(|r| r.message() == "close" && r.get("sni").as_deref() == Some("example.test"))
        .expect("the TLS session's close line");
    assert_eq!(tls.get("host").as_deref(), Some("-"));
    assert_eq!(tls.get("route").as_deref(), Some("default"));
    assert_eq!(tls.get("unique_id").as_deref(), Some("-"));
    // the traced session's lines are the trace target's, at info
    assert!(records.iter().any(|r| r.target == "sluice::trace"
        && r.level == "INFO"
        && r.message() == "traced from here on"));
    // a value with a space and a quote is quoted and escaped, and reads back whole
    assert_eq!(
        get("CONNECT refused", "status_text"),
        ["Forbidden"],
        "a bare value"
    );
    let errors = get("invalid HTTP request head", "error");
    assert!(errors.iter().all(|e| e.contains(' ')), "{errors:?}");
    assert_eq!(
        get("PROXY AUTHORITY is not a host name", "authority"),
        ["bad name!"]
    );
    // a dump's rows, one record each, in order, right after their line
    let at = records
        .iter()
        .position(|r| r.message() == "ClientHello")
        .unwrap();
    let sid = records[at].get("sid");
    let rows: Vec<&Record> = records[at + 1..]
        .iter()
        .take_while(|r| r.message() == "dump" && r.get("sid") == sid)
        .collect();
    assert!(rows
        .iter()
        .all(|r| r.get("of").as_deref() == Some("client_hello")));
    assert_eq!(
        rows.len(),
        hello.len().div_ceil(16),
        "one row of 16 bytes a record"
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get("offset"), Some(format!("{:04x}", i * 16)));
    }
    let hex: Vec<String> = hello[..16]
        .chunks(2)
        .map(|p| format!("{:02x}{:02x}", p[0], p[1]))
        .collect();
    assert_eq!(rows[0].get("hex"), Some(hex.join(" ")), "{:?}", rows[0]);
    let last = hello.len() / 16 * 16;
    assert_eq!(
        rows.last().unwrap().pairs.last().unwrap().1,
        hello[last..]
            .iter()
            .map(|&b| if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'.'
            })
            .collect::<Vec<u8>>(),
        "the ASCII column of the last row"
    );
}

/// The reader itself: what it takes, and the forms before issue 14 that it refuses.
#[test]
fn the_strict_reader_takes_logfmt_and_nothing_else() {
    const P: &str = "2026-11-25T13:14:04.057Z INFO  [sluice::session] ";
    let ok = |m: &str| {
        logfmt::parse(format!("{P}{m}").as_bytes()).unwrap_or_else(|e| panic!("{m:?}: {e}"))
    };
    let bad = |m: &str| {
        assert!(
            logfmt::parse(format!("{P}{m}").as_bytes()).is_err(),
            "{m:?}"
        )
    };
    let r = ok(r#"close sid=3 client=127.0.0.1:1 host=- e="a \"b\" \\ \n\u00ff" x="""#);
    assert_eq!(r.words, ["close"]);
    assert_eq!(r.get("sid").as_deref(), Some("3"));
    assert_eq!(r.pairs[3].1, b"a \"b\" \\ \n\xff");
    assert_eq!(r.get("x").as_deref(), Some(""));
    assert_eq!(
        (r.level.as_str(), r.target.as_str()),
        ("INFO", "sluice::session")
    );
    ok("invalid ClientHello sid=1 client=127.0.0.1:2 error=\"not a ClientHello\"");
    ok("drained, no session left, exiting");
    ok("dump sid=1 of=x offset=0000 hex=\"1603 0100\" ascii=..ab");
    // the forms before
    bad("sid=3 close client=127.0.0.1:1 route=ENVOY_ROUTES route 1 upstream=-");
    bad("sid=1 client=127.0.0.1:2 invalid ClientHello: the first handshake message is not a ClientHello; first bytes:");
    bad("listening on 127.0.0.1:8000 upstream=localhost:10000 (127.0.0.1:10000) mode=direct");
    // and other ways to break it
    for m in [
        "sid=3",
        "close  sid=3",
        "close sid=3 ",
        " close",
        "close sid=",
        "close sid=a=b",
        "close sid=3 sid=4",
        "close e=\"open",
        "close e=\"a\"b",
        "close e=\"\\x41\"",
        "close e=a\\b",
        "close e=\"\t\"",
        "a \"quoted\" word",
        "close 1st=x",
    ] {
        bad(m);
    }
    for line in [
        &b"00000000: 1603 0100 0402 0000 00                 ........."[..],
        "2026-11-25T13:14:04.057Z INFO  [x] name=caf\u{e9}".as_bytes(),
        b"2026-11-25T13:14:04.057Z INFO [x] a",
        b"2026-11-25T13:14:04.057Z INFO  [x] a\r",
        b"thread 'main' panicked at src/main.rs:1:1:",
    ] {
        assert!(logfmt::parse(line).is_err(), "{line:?}");
    }
}

/// A route's name is a short token, unique among the routes (ENVOY_ROUTES_FILE's too);
/// anything else is refused at load, naming the route.
#[test]
fn route_names_are_checked_at_load() {
    let dir = TempDir::new("logfmt-names");
    let file = dir.path("routes");
    std::fs::write(&file, "sni=b.test allow name=api\n").unwrap();
    for (routes, file_too, said) in [
        (
            "sni=a.test allow name=api; deny name=api",
            false,
            "ENVOY_ROUTES route 2: name api is already the name of ENVOY_ROUTES route 1",
        ),
        (
            "sni=a.test allow name=api",
            true,
            "line 1: name api is already the name of ENVOY_ROUTES route 1",
        ),
        ("sni=a.test allow name=two\\ words", false, "bad name"),
        ("allow name=default", false, "the default route's"),
    ] {
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("check-config")
            .env("ENVOY_UPSTREAM", "127.0.0.1:1")
            .env("ENVOY_ROUTES", routes);
        if file_too {
            cmd.env("ENVOY_ROUTES_FILE", &file);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{routes}: {err}");
        assert!(err.contains(said), "{routes}: {err}");
    }
}
