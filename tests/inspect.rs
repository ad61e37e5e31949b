#![cfg(test)]
//! `sluice inspect` end to end: the real binary over every `fixtures/*.bin`, checked
//! against the facts in `fixtures/MANIFEST.tsv` (read here with a small parser of its own),
//! so a fixture added with its MANIFEST line is covered without touching this file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn inspect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("run sluice inspect")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// Splits `s` at `sep` (a char) where it is outside quotes and brackets of any kind.
fn split_top(s: &str, is_sep: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' | '(' if !quoted => depth += 1,
            ']' | '}' | ')' if !quoted => depth -= 1,
            _ => {}
        }
        if !quoted && depth == 0 && is_sep(c) {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a quoted string: {v}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `[a,b]` -> Some("a,b"); `[(none)]` or `[none]` -> None.
fn list(v: &str) -> Option<String> {
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a list: {v}"));
    (inner != "(none)" && inner != "none").then(|| inner.to_string())
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// What `sluice inspect` must print for one fixture, derived from its MANIFEST facts.
#[derive(Debug)]
struct Expected {
    /// Every line after `file=`, except that an `error=` line is matched by prefix.
    lines: Vec<String>,
    /// The prefix the `error=` line must have, when one is expected.
    error: Option<&'static str>,
}

/// The PROXY facts: `proxy=... cmd=... fam=... src=... dst=... hdr_len=... tlvs=[...]`.
/// Returns false when the header is invalid (a PARSE_ERROR, or a CRC32C marked INVALID):
/// then only what the fixed part tells is expected.
fn expected_proxy(kv: &HashMap<String, String>, lines: &mut Vec<String>) -> bool {
    let version = kv.get("proxy").expect("proxy= fact");
    lines.push(format!("proxy={version}"));
    let valid =
        !kv.contains_key("PARSE_ERROR") && !kv.get("tlvs").is_some_and(|t| t.contains("(INVALID)"));
    if let Some(cmd) = kv.get("cmd") {
        lines.push(format!("proxy.command={cmd}"));
    }
    if let Some(fam) = kv.get("fam").filter(|_| valid || version == "v2") {
        let name = fam.split('(').next().unwrap_or(fam);
        let family = match name {
            "TCP4" | "UDP4" => "inet",
            "TCP6" | "UDP6" => "inet6",
            "UNIX_STREAM" | "UNIX_DGRAM" | "UNIX" => "unix",
            "UNSPEC" | "UNKNOWN" => "unspec",
            other => panic!("unknown family {other}"),
        };
        lines.push(format!("proxy.family={family}"));
    }
    if !valid {
        return false;
    }
    for key in ["src", "dst"] {
        if let Some(v) = kv.get(key) {
            lines.push(format!("proxy.{key}={v}"));
        }
    }
    let mut typed: HashMap<&str, String> = HashMap::new();
    let mut ssl: HashMap<&str, String> = HashMap::new();
    let mut unknown = Vec::new();
    if let Some(tlvs) = kv.get("tlvs").and_then(|t| list(t)) {
        for tlv in split_top(&tlvs, |c| c == ';') {
            let tlv = tlv.trim();
            let name = tlv.split('(').next().unwrap_or(tlv);
            let value = tlv.split_once(")=").map(|(_, v)| v);
            match name {
                "ALPN" => typed.insert("alpn", unquote(value.unwrap()).to_string()),
                "AUTHORITY" => typed.insert("authority", unquote(value.unwrap()).to_string()),
                "CRC32C" => {
                    assert!(tlv.ends_with("(valid)"), "a CRC32C not valid: {tlv}");
                    typed.insert("crc32c", "ok".to_string())
                }
                "UNIQUE_ID" => typed.insert("unique_id", hex(unquote(value.unwrap()).as_bytes())),
                "NETNS" => typed.insert("netns", unquote(value.unwrap()).to_string()),
                "SSL" => {
                    let body = tlv
                        .split_once('{')
                        .and_then(|(_, b)| b.strip_suffix('}'))
                        .expect("SSL{...}");
                    for sub in split_top(body, |c| c == ',') {
                        let Some((sub_name, v)) = sub.split_once(")=") else {
                            continue; // client=, verify=
                        };
                        let key = match sub_name.split('(').next().unwrap() {
                            "VERSION" => "version",
                            "CN" => "cn",
                            "CIPHER" => "cipher",
                            "SIG_ALG" => "sig_alg",
                            "KEY_ALG" => "key_alg",
                            other => panic!("unknown SSL sub-TLV {other}"),
                        };
                        ssl.insert(key, unquote(v).to_string());
                    }
                    None
                }
                "UNKNOWN" => {
                    let kind = tlv
                        .strip_prefix("UNKNOWN(0x")
                        .and_then(|t| t.split_once(')'))
                        .map(|(k, _)| k.to_ascii_lowercase())
                        .expect("UNKNOWN(0xNN)");
                    let v = value.unwrap().strip_prefix("0x").expect("0x hex value");
                    unknown.push(format!("proxy.tlv.0x{kind}={}", v.to_ascii_lowercase()));
                    None
                }
                other => panic!("TLV {other} not understood by this test"),
            };
        }
    }
    for key in ["alpn", "authority", "crc32c", "unique_id"] {
        if let Some(v) = typed.get(key) {
            lines.push(format!("proxy.tlv.{key}={v}"));
        }
    }
    for key in ["version", "cn", "cipher", "sig_alg", "key_alg"] {
        if let Some(v) = ssl.get(key) {
            lines.push(format!("proxy.tlv.ssl.{key}={v}"));
        }
    }
    if let Some(v) = typed.get("netns") {
        lines.push(format!("proxy.tlv.netns={v}"));
    }
    lines.extend(unknown);
    if let Some(len) = kv.get("hdr_len") {
        lines.push(format!("proxy.length={len}"));
    }
    true
}

/// The TLS facts after `tls:`: records, legacy_version, sni, alpn, supported_versions,
/// ech_ext, complete.
fn expected_tls(kv: &HashMap<String, String>, lines: &mut Vec<String>) -> Option<&'static str> {
    if kv.get("complete").map(String::as_str) == Some("no") {
        lines.push("tls=incomplete".into());
        // The frame ends there: the proxy closes it as the client going away early.
        lines.push("reason=client_closed_early".into());
        return Some("error=tls: truncated ClientHello");
    }
    lines.push("tls=clienthello".into());
    lines.push(format!("tls.records={}", kv["records"]));
    lines.push(format!("tls.legacy_version={}", kv["legacy_version"]));
    if let Some(versions) = kv.get("supported_versions").and_then(|v| list(v)) {
        let kept: Vec<&str> = versions
            .split(',')
            .filter(|v| {
                let n = u16::from_str_radix(v.trim_start_matches("0x"), 16).expect("version");
                !is_grease(n)
            })
            .collect();
        lines.push(format!("tls.versions={}", kept.join(",")));
    }
    if let Some(sni) = kv.get("sni").filter(|s| *s != "(none)" && *s != "none") {
        lines.push(format!("tls.sni={sni}"));
    }
    if let Some(alpn) = kv.get("alpn").and_then(|v| list(v)) {
        lines.push(format!("tls.alpn={alpn}"));
    }
    lines.push(format!("tls.ech={}", kv["ech_ext"]));
    None
}

/// Reads MANIFEST.tsv: file name -> expected output.
fn manifest() -> HashMap<String, Expected> {
    let text = std::fs::read_to_string(fixtures_dir().join("MANIFEST.tsv")).expect("MANIFEST");
    let mut all = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "MANIFEST line with {} columns", cols.len());
        let (name, facts) = (cols[0], cols[2]);
        // Only the facts up to `total=`: after it come notes and what other receivers
        // saw, which reuse keys such as sni=.
        let facts = facts.split("; total=").next().unwrap();
        let (proxy_part, rest) = match facts.split_once("; tls: ") {
            Some((p, t)) => (p, Some(("tls", t))),
            None => match facts.split_once("; payload=") {
                Some((p, t)) => (p, Some(("payload", t))),
                None => (facts, None),
            },
        };
        let kv = |s: &str| -> HashMap<String, String> {
            let mut m = HashMap::new();
            for tok in split_top(s, |c| c.is_whitespace() || c == ';') {
                if let Some((k, v)) = tok.split_once('=') {
                    m.entry(k.to_string()).or_insert_with(|| v.to_string());
                }
            }
            m
        };
        let verdict = cols[2]
            .split_once("expect: ")
            .map_or("", |(_, v)| v.split_whitespace().next().unwrap_or(""));
        let proxy_kv = kv(proxy_part);
        let mut lines = Vec::new();
        let mut error = None;
        if !expected_proxy(&proxy_kv, &mut lines) {
            // Cut short (INCOMPLETE: the proxy waits, then closes at EOF) or invalid;
            // nothing after the header is read.
            if verdict.starts_with("INCOMPLETE") {
                lines.push("reason=client_closed_early".into());
                error = Some("error=proxy: truncated");
            } else {
                lines.push("reason=invalid_proxy".into());
                error = Some("error=proxy: ");
            }
        } else {
            match rest {
                Some(("tls", t)) => error = expected_tls(&kv(t), &mut lines),
                // No bytes after the header: a load balancer's health check.
                Some(("payload", t)) if t.starts_with("none") => {
                    lines.push("tls=none".into());
                    lines.push("reason=health_check".into());
                }
                // Bytes that are not TLS: a plain HTTP request head, decoded.
                Some((_, t)) => {
                    lines.push("tls=none".into());
                    if let Some((_, head)) = t.split_once("; http: ") {
                        let head = kv(head);
                        lines.push("http=request".into());
                        for key in ["method", "target", "version", "host", "port"] {
                            if let Some(v) = head.get(key) {
                                lines.push(format!("http.{key}={v}"));
                            }
                        }
                    }
                }
                None => panic!("{name}: neither tls: nor payload= nor PARSE_ERROR"),
            }
        }
        all.insert(name.to_string(), Expected { lines, error });
    }
    all
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
}

fn check(block: &str, path: &Path, want: &Expected) {
    let mut got: Vec<&str> = block.lines().collect();
    assert_eq!(
        got.first().copied(),
        Some(format!("file={}", path.display()).as_str()),
        "{block}"
    );
    got.remove(0);
    if let Some(prefix) = want.error {
        let last = got.pop().unwrap_or("");
        assert!(
            last.starts_with(prefix),
            "{}: want {prefix}..., got:\n{block}",
            path.display()
        );
    }
    assert_eq!(got, want.lines, "{}", path.display());
}

#[test]
fn every_fixture_matches_its_manifest_facts() {
    let manifest = manifest();
    let files = fixture_files();
    assert!(files.len() >= 20, "fixtures found: {}", files.len());
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let want = manifest
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no MANIFEST line"));
        let out = inspect(&[path.to_str().unwrap()]);
        let text = stdout(&out);
        check(&text, path, want);
        let code = if want.error.is_some() { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(code), "{name}:\n{text}");
        assert!(out.stderr.is_empty(), "{name}: stderr {:?}", out.stderr);
    }
}

#[test]
fn several_files_blank_line_separated_worst_status() {
    let manifest = manifest();
    let files = fixture_files();
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let out = inspect(&args);
    let text = stdout(&out);
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), files.len(), "{text}");
    for (block, path) in blocks.iter().zip(&files) {
        check(
            block,
            path,
            &manifest[path.file_name().unwrap().to_str().unwrap()],
        );
    }
    // Some fixtures are invalid or truncated: the worst status wins.
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn rejected_headers_exit_1_with_an_error() {
    for (name, prefix) in [
        ("edge-v1-longer-than-107.bin", "error=proxy: "),
        ("edge-v2-len-exceeds-data.bin", "error=proxy: truncated"),
    ] {
        let path = fixtures_dir().join(name);
        let out = inspect(&[path.to_str().unwrap()]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        let last = text.lines().last().unwrap_or("");
        assert!(last.starts_with(prefix), "{name}: {text}");
    }
}

/// The first 16 bytes as `xxd` prints them.
fn xxd_first_line(bytes: &[u8]) -> String {
    let line = &bytes[..16];
    let hex: Vec<String> = line.chunks(2).map(hex).collect();
    let ascii: String = line
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("00000000: {}  {ascii}", hex.join(" "))
}

#[test]
fn hexdump_shows_the_frame() {
    for name in [
        "lb-haproxy-2.6-v2-tcp4-curl.bin",
        "lb-haproxy-2.6-v1-tcp4-openssl.bin",
    ] {
        let path = fixtures_dir().join(name);
        let bytes = std::fs::read(&path).unwrap();
        let out = inspect(&["--hexdump", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        let text = stdout(&out);
        let (facts, dump) = text.split_once("hexdump:\n").expect("hexdump: line");
        assert!(facts.ends_with("tls.ech=no\n"), "{facts}");
        assert_eq!(dump.lines().next(), Some(xxd_first_line(&bytes).as_str()));
        assert_eq!(dump.lines().count(), bytes.len().div_ceil(16));
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = fixtures_dir().join("no-such-file.bin");
    let out = inspect(&[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());

    // A missing file among good ones: the others are still inspected.
    let good = fixtures_dir().join("client-curl-7.88.1-h2.bin");
    let out = inspect(&[good.to_str().unwrap(), missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("tls.sni=example.test"));

    for args in [
        &[][..],
        &["--hexdump"],
        &["--bogus", good.to_str().unwrap()],
    ] {
        let out = inspect(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage:"),
            "{args:?}"
        );
    }
}
