//! `sluice inspect [--hexdump] FILE...`: reads captured frames (the bytes a proxy receives
//! on the client socket, from the first byte until the peer stopped sending) and prints
//! what they hold, one `key=value` fact a line. Offline: no sockets, no configuration.
//! It runs the very parsers the proxy runs (`wire::proxy::parse`,
//! `wire::tls::parse_client_hello`), so its verdict on the bytes is the proxy's (policy,
//! such as a required header or trusted sources, is not applied).
//!
//! Output, per file, in this order and only where the fact exists:
//!
//! ```text
//! file=<path>
//! proxy=v2|v1|none
//! proxy.command=PROXY|LOCAL            (v2 only: v1 has no command)
//! proxy.family=inet|inet6|unix|unspec  (v1 UNKNOWN is unspec)
//! proxy.src=<ip>:<port>                (IPv6 as [addr]:port; unix: the path, escaped)
//! proxy.dst=<ip>:<port>
//! proxy.tlv.alpn= .authority= .crc32c=ok .unique_id=<hex>
//! proxy.tlv.ssl.version= .cn= .cipher= .sig_alg= .key_alg=
//! proxy.tlv.netns=
//! proxy.tlv.0xNN=<hex>                 (each unknown TLV, in header order)
//! proxy.length=<bytes the header took>
//! tls=clienthello|none|incomplete|invalid
//! tls.records= tls.legacy_version= tls.versions= tls.sni= tls.alpn= tls.ech=yes|no
//! error=<part>: <reason>
//! ```
//!
//! Files are separated by a blank line; `--hexdump` adds, after each file's facts, a line
//! `hexdump:` and an xxd-style dump of the whole frame (at most [`HEXDUMP_LIMIT`] bytes).
//!
//! Exit status: 0 when every part present parsed; 1 when some part is invalid or cut short
//! (with `error=`); 2 on a usage or I/O error (message on stderr). With several files the
//! status is the worst of them; an unreadable file does not stop the others. `--` ends
//! the options.
//!
//! Verdicts, chosen to match what the proxy does when the peer then closes:
//!
//! * A frame that ends inside the PROXY header (the parser still says need-more; this
//!   includes a strict prefix of a signature) is `error=proxy: truncated ...`, exit 1: at
//!   EOF the proxy refuses it. For v2, the command and family that the fixed 16 bytes
//!   already tell are printed first (`edge-v2-len-exceeds-data.bin`). An invalid v2 header
//!   prints them too when its fixed part is well formed (e.g. a CRC32C mismatch).
//! * A header followed by nothing (a health check) is `tls=none`, exit 0; an empty file is
//!   `proxy=none` and `tls=none`, exit 0.
//! * Bytes whose first byte cannot start a TLS handshake record (plaintext after a
//!   TLS-terminating balancer) are `tls=none`, exit 0: the proxy passes them through.
//! * A ClientHello cut short is `tls=incomplete` and `error=tls: truncated ClientHello ...`,
//!   exit 1; a malformed one is `tls=invalid` with the parser's reason, exit 1.
//! * Bytes after a complete ClientHello are not looked at, as in the proxy.
//!
//! Wire text (TLV values, SNI, unix paths, the file name) goes through
//! [`Escaped`]; the ALPN list through its own `Display`, which also escapes `,`
//! so that a name cannot forge a separator. NOOP TLVs (padding), the SSL TLV's client and
//! verify fields and unknown SSL sub-TLVs are not printed; of a known TLV type that appears
//! twice, only the first is. Must never print a raw control byte from the wire, nor panic
//! on any input.
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::io::Write as _;

use crate::hexdump::{Escaped, Hex, HexDump};
use crate::wire::proxy::v2::{field, FIXED_LEN};
use crate::wire::proxy::{
    self, v1, Addresses, Command, Detected, Family, ProxyHeader, SslSub, Tlv, Version,
};
use crate::wire::tls::{self, ClientHello, TlsError};
use crate::wire::Parsed;

/// The most bytes of a frame `--hexdump` shows.
pub const HEXDUMP_LIMIT: usize = 64 * 1024;

/// The usage line, printed on a usage error.
pub const USAGE: &str = "usage: sluice inspect [--hexdump] FILE...";

/// Exit status: every part present parsed.
pub const EXIT_OK: i32 = 0;
/// Exit status: some part is invalid or truncated.
pub const EXIT_INVALID: i32 = 1;
/// Exit status: usage or I/O error.
pub const EXIT_USAGE: i32 = 2;

/// The verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every part present parsed (possibly no part at all).
    Valid,
    /// A part is invalid, or the frame ends inside one; an `error=` line was written.
    Invalid,
}

impl Outcome {
    /// The process exit status for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Valid => EXIT_OK,
            Outcome::Invalid => EXIT_INVALID,
        }
    }
}

/// Runs `sluice inspect` with its arguments (after `inspect`) and returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    let mut hexdump = false;
    let mut files: Vec<&OsStr> = Vec::new();
    let mut options_done = false;
    for arg in args {
        match arg.to_str() {
            Some("--") if !options_done => options_done = true,
            Some("--hexdump") if !options_done => hexdump = true,
            Some("-h") | Some("--help") if !options_done => {
                println!("{USAGE}");
                return EXIT_OK;
            }
            Some(s) if !options_done && s.starts_with('-') && s.len() > 1 => {
                eprintln!(
                    "sluice inspect: unknown option {}\n{USAGE}",
                    Escaped(s.as_bytes())
                );
                return EXIT_USAGE;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("sluice inspect: no FILE given\n{USAGE}");
        return EXIT_USAGE;
    }

    let mut status = EXIT_OK;
    let mut first = true;
    let stdout = std::io::stdout();
    for path in files {
        let name = Escaped(path.as_encoded_bytes());
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("sluice inspect: {name}: {e}");
                status = status.max(EXIT_USAGE);
                continue;
            }
        };
        let mut text = String::new();
        if !first {
            text.push('\n');
        }
        first = false;
        let outcome = match write_file(&mut text, &name, &bytes, hexdump) {
            Ok(o) => o,
            // Writing into a String cannot fail; should it ever, say so rather than lie.
            Err(fmt::Error) => {
                eprintln!("sluice inspect: {name}: cannot format the output");
                status = status.max(EXIT_USAGE);
                continue;
            }
        };
        status = status.max(outcome.exit_code());
        if let Err(e) = stdout.lock().write_all(text.as_bytes()) {
            eprintln!("sluice inspect: cannot write to stdout: {e}");
            return EXIT_USAGE;
        }
    }
    if let Err(e) = stdout.lock().flush() {
        eprintln!("sluice inspect: cannot write to stdout: {e}");
        return EXIT_USAGE;
    }
    status
}

/// One file's block: `file=`, the facts, and the dump when asked for.
fn write_file(
    out: &mut String,
    name: &Escaped<'_>,
    bytes: &[u8],
    hexdump: bool,
) -> Result<Outcome, fmt::Error> {
    writeln!(out, "file={name}")?;
    let outcome = inspect(bytes, out)?;
    if hexdump {
        writeln!(out, "hexdump:")?;
        if !bytes.is_empty() {
            writeln!(out, "{}", HexDump::new(bytes, HEXDUMP_LIMIT))?;
        }
    }
    Ok(outcome)
}

/// Writes the facts of one captured frame (every line but `file=`) and returns the verdict.
///
/// Pure: no I/O; the only allocation is the scratch buffer a multi-record ClientHello is
/// joined in. An `Err` comes only from `out` itself.
pub fn inspect(bytes: &[u8], out: &mut impl fmt::Write) -> Result<Outcome, fmt::Error> {
    let rest = match inspect_proxy(bytes, out)? {
        Some(rest) => rest,
        None => return Ok(Outcome::Invalid),
    };
    inspect_tls(rest, out)
}

/// The PROXY part. Returns the bytes after the header (all of them when there is none),
/// or `None` when the header is invalid or cut short (then `error=` was written).
fn inspect_proxy<'a>(
    bytes: &'a [u8],
    out: &mut impl fmt::Write,
) -> Result<Option<&'a [u8]>, fmt::Error> {
    let version = match proxy::detect(bytes) {
        Detected::NoHeader => {
            writeln!(out, "proxy=none")?;
            return Ok(Some(bytes));
        }
        // The empty frame is a prefix of both signatures, but holds no header at all.
        Detected::NeedMore if bytes.is_empty() => {
            writeln!(out, "proxy=none")?;
            return Ok(Some(bytes));
        }
        Detected::NeedMore if v1::SIGNATURE.starts_with(bytes) => Version::V1,
        Detected::NeedMore | Detected::V2 => Version::V2,
        Detected::V1 => Version::V1,
    };
    let parsed = proxy::parse(bytes);
    if let Parsed::Complete(h, n) = parsed {
        write_header(&h, out)?;
        return Ok(Some(bytes.get(n..).unwrap_or(&[])));
    }
    match version {
        Version::V1 => writeln!(out, "proxy=v1")?,
        Version::V2 => {
            writeln!(out, "proxy=v2")?;
            write_v2_fixed(bytes, out)?;
        }
    }
    match parsed {
        Parsed::Invalid(e) => writeln!(out, "error=proxy: {e}")?,
        Parsed::NeedMore => write_proxy_truncated(version, bytes, out)?,
        Parsed::Complete(..) => {}
    }
    Ok(None)
}

/// The command and family of a v2 header that did not parse, from its fixed part, as far
/// as the bytes present are well formed. The parser checked these bytes (or rejected the
/// header for them); this only names them, mirroring `proxy::v2`'s values from the spec.
fn write_v2_fixed(bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    let Some(&ver_cmd) = bytes.get(field::VER_CMD) else {
        return Ok(());
    };
    let command = match ver_cmd {
        0x20 => "LOCAL",
        0x21 => "PROXY",
        _ => return Ok(()),
    };
    writeln!(out, "proxy.command={command}")?;
    let family = match bytes.get(field::FAM) {
        Some(0x00) => "unspec",
        Some(0x11 | 0x12) => "inet",
        Some(0x21 | 0x22) => "inet6",
        Some(0x31 | 0x32) => "unix",
        _ => return Ok(()),
    };
    writeln!(out, "proxy.family={family}")
}

/// `error=proxy: truncated ...` for a frame that ends inside the header.
fn write_proxy_truncated(version: Version, bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    let have = bytes.len();
    match version {
        Version::V1 => writeln!(
            out,
            "error=proxy: truncated PROXY v1 header: the frame ends after {have} bytes, before the CRLF"
        ),
        Version::V2 => match bytes.get(field::LEN) {
            Some(&[hi, lo]) => {
                let declared = FIXED_LEN.saturating_add(usize::from(u16::from_be_bytes([hi, lo])));
                writeln!(
                    out,
                    "error=proxy: truncated PROXY v2 header: it declares {declared} bytes, the frame ends after {have}"
                )
            }
            _ => writeln!(
                out,
                "error=proxy: truncated PROXY v2 header: the frame ends after {have} bytes, inside the {FIXED_LEN}-byte fixed part"
            ),
        },
    }
}

fn write_header(h: &ProxyHeader<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    match h.version {
        Version::V1 => writeln!(out, "proxy=v1")?,
        Version::V2 => {
            writeln!(out, "proxy=v2")?;
            let command = match h.command {
                Command::Proxy => "PROXY",
                Command::Local => "LOCAL",
            };
            writeln!(out, "proxy.command={command}")?;
        }
    }
    let family = match h.family {
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
        Family::Unix => "unix",
        Family::Unspec => "unspec",
    };
    writeln!(out, "proxy.family={family}")?;
    match h.addrs {
        Addresses::None => {}
        Addresses::Inet { src, dst } => {
            writeln!(out, "proxy.src={src}")?;
            writeln!(out, "proxy.dst={dst}")?;
        }
        Addresses::Unix { src, dst } => {
            writeln!(out, "proxy.src={}", Escaped(src))?;
            writeln!(out, "proxy.dst={}", Escaped(dst))?;
        }
    }
    let tlvs = &h.tlvs;
    if let Some(v) = tlvs.alpn() {
        writeln!(out, "proxy.tlv.alpn={}", Escaped(v))?;
    }
    if let Some(v) = tlvs.authority() {
        writeln!(out, "proxy.tlv.authority={}", Escaped(v))?;
    }
    // The parser never completes a header whose checksum does not match.
    if h.crc32c.is_some() {
        writeln!(out, "proxy.tlv.crc32c=ok")?;
    }
    if let Some(v) = tlvs.unique_id() {
        writeln!(out, "proxy.tlv.unique_id={}", Hex(v))?;
    }
    if let Some(ssl) = tlvs.ssl() {
        let sub = |want: fn(SslSub<'_>) -> Option<&[u8]>| ssl.subs().find_map(want);
        let fields: [(&str, Option<&[u8]>); 5] = [
            ("version", ssl.version()),
            ("cn", ssl.cn()),
            ("cipher", ssl.cipher()),
            (
                "sig_alg",
                sub(|s| match s {
                    SslSub::SigAlg(v) => Some(v),
                    _ => None,
                }),
            ),
            (
                "key_alg",
                sub(|s| match s {
                    SslSub::KeyAlg(v) => Some(v),
                    _ => None,
                }),
            ),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                writeln!(out, "proxy.tlv.ssl.{key}={}", Escaped(v))?;
            }
        }
    }
    if let Some(v) = tlvs.netns() {
        writeln!(out, "proxy.tlv.netns={}", Escaped(v))?;
    }
    for t in tlvs.iter() {
        if let Tlv::Unknown(kind, v) = t {
            writeln!(out, "proxy.tlv.0x{kind:02x}={}", Hex(v))?;
        }
    }
    writeln!(out, "proxy.length={}", h.len)
}

/// The TLS part: whatever follows the header (or the whole frame).
fn inspect_tls(rest: &[u8], out: &mut impl fmt::Write) -> Result<Outcome, fmt::Error> {
    if rest.is_empty() {
        writeln!(out, "tls=none")?;
        return Ok(Outcome::Valid);
    }
    // Allocated here, not in the parser: the proxy lends one from its worker instead.
    let mut scratch = vec![0u8; tls::MAX_HELLO_LEN];
    match tls::parse_client_hello(rest, &mut scratch) {
        Parsed::Complete(hello, _) => {
            write_hello(&hello, out)?;
            Ok(Outcome::Valid)
        }
        // As in the proxy: bytes that cannot start a handshake record pass as they are.
        Parsed::Invalid(TlsError::NotTls) => {
            writeln!(out, "tls=none")?;
            Ok(Outcome::Valid)
        }
        Parsed::Invalid(e) => {
            writeln!(out, "tls=invalid")?;
            writeln!(out, "error=tls: {e}")?;
            Ok(Outcome::Invalid)
        }
        Parsed::NeedMore => {
            writeln!(out, "tls=incomplete")?;
            writeln!(
                out,
                "error=tls: truncated ClientHello: the frame ends after {} bytes of TLS records, before the handshake message is complete",
                rest.len()
            )?;
            Ok(Outcome::Invalid)
        }
    }
}

fn write_hello(h: &ClientHello<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    writeln!(out, "tls=clienthello")?;
    writeln!(out, "tls.records={}", h.records)?;
    writeln!(out, "tls.legacy_version=0x{:04x}", h.legacy_version)?;
    if let Some(versions) = h.versions {
        writeln!(out, "tls.versions={versions}")?;
    }
    if let Some(sni) = h.sni {
        writeln!(out, "tls.sni={}", Escaped(sni.as_bytes()))?;
    }
    if let Some(alpn) = h.alpn {
        writeln!(out, "tls.alpn={alpn}")?;
    }
    writeln!(out, "tls.ech={}", if h.ech { "yes" } else { "no" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proxy::v2 as proxy_v2;

    fn facts(bytes: &[u8]) -> (String, Outcome) {
        let mut out = String::new();
        let outcome = inspect(bytes, &mut out).unwrap();
        (out, outcome)
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    /// A v2 header with the given version/command, family and body.
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = proxy_v2::SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    /// A minimal ClientHello in one record: no session id, one suite, null compression,
    /// and the extensions given as (type, data).
    fn hello(exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut ext_block = Vec::new();
        for (ty, data) in exts {
            ext_block.extend_from_slice(&ty.to_be_bytes());
            ext_block.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            ext_block.extend_from_slice(data);
        }
        let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0x00); // session id: empty
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        body.extend_from_slice(&u16::try_from(ext_block.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&ext_block);
        let mut msg = vec![0x01, 0x00]; // ClientHello, 24-bit length follows
        msg.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        msg.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record version
        rec.extend_from_slice(&u16::try_from(msg.len()).unwrap().to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    #[test]
    fn empty_frame_has_no_parts() {
        let (out, outcome) = facts(b"");
        assert_eq!(lines(&out), ["proxy=none", "tls=none"]);
        assert_eq!(outcome, Outcome::Valid);
    }

    #[test]
    fn v2_unix_header_then_nothing() {
        let mut body = Vec::new();
        let mut src = b"/run/lb.sock".to_vec();
        src.resize(108, 0); // src path, NUL-padded to 108 bytes
        let mut dst = b"/run/evil\r\n\x1b[31m".to_vec();
        dst.resize(108, 0); // dst path with control bytes, NUL-padded
        body.extend_from_slice(&src);
        body.extend_from_slice(&dst);
        body.extend_from_slice(&[0x30, 0x00, 0x03, b'n', b's', b'1']); // NETNS "ns1"
        body.extend_from_slice(&[0xe0, 0x00, 0x02, 0xab, 0xcd]); // custom 0xE0
        let buf = v2(0x21, 0x31, &body); // PROXY, UNIX stream
        let (out, outcome) = facts(&buf);
        assert_eq!(
            lines(&out),
            [
                "proxy=v2",
                "proxy.command=PROXY",
                "proxy.family=unix",
                "proxy.src=/run/lb.sock",
                "proxy.dst=/run/evil\\x0d\\x0a\\x1b[31m",
                "proxy.tlv.netns=ns1",
                "proxy.tlv.0xe0=abcd",
                "proxy.length=243",
                "tls=none",
            ]
        );
        assert_eq!(outcome, Outcome::Valid);
        assert!(!out.bytes().any(|b| b.is_ascii_control() && b != b'\n'));
    }

    #[test]
    fn v1_ipv6_then_clienthello() {
        let mut buf = b"PROXY TCP6 2001:db8::1 ::1 56324 443\r\n".to_vec();
        buf.extend(hello(&[
            (0x0000, b"\x00\x0a\x00\x00\x07a.test\x00"), // server_name: host_name "a.test\0"
        ]));
        let (out, outcome) = facts(&buf);
        // A NUL in the host name: not a DNS name, so the whole hello is refused.
        assert!(out.contains("tls=invalid\nerror=tls: "), "{out}");
        assert_eq!(outcome, Outcome::Invalid);

        let mut buf = b"PROXY TCP6 2001:db8::1 ::1 56324 443\r\n".to_vec();
        buf.extend(hello(&[
            (0x0000, b"\x00\x09\x00\x00\x06a.test"), // server_name: list 9, host_name, len 6
            (0x0010, b"\x00\x0c\x02h2\x08http/1.1"), // ALPN: list 12, "h2", "http/1.1"
            (0x002b, b"\x06\x3a\x3a\x03\x04\x03\x03"), // versions: GREASE, 1.3, 1.2
        ]));
        let (out, outcome) = facts(&buf);
        assert_eq!(
            lines(&out),
            [
                "proxy=v1",
                "proxy.family=inet6",
                "proxy.src=[2001:db8::1]:56324",
                "proxy.dst=[::1]:443",
                "proxy.length=38",
                "tls=clienthello",
                "tls.records=1",
                "tls.legacy_version=0x0303",
                "tls.versions=0x0304,0x0303",
                "tls.sni=a.test",
                "tls.alpn=h2,http/1.1",
                "tls.ech=no",
            ]
        );
        assert_eq!(outcome, Outcome::Valid);
    }

    #[test]
    fn truncated_headers_are_errors() {
        let full = b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n";
        for n in 1..full.len() {
            let (out, outcome) = facts(&full[..n]);
            assert_eq!(outcome, Outcome::Invalid, "{n}");
            assert!(
                out.starts_with("proxy=v1\nerror=proxy: truncated"),
                "{n}: {out}"
            );
        }
        let body = [192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb]; // TCP4 addresses
        let full = v2(0x21, 0x11, &body);
        for n in 1..full.len() {
            let (out, outcome) = facts(&full[..n]);
            assert_eq!(outcome, Outcome::Invalid, "{n}");
            let want = match n {
                0..=12 => "proxy=v2\nerror=proxy: truncated",
                13 => "proxy=v2\nproxy.command=PROXY\nerror=proxy: truncated",
                _ => "proxy=v2\nproxy.command=PROXY\nproxy.family=inet\nerror=proxy: truncated",
            };
            assert!(out.starts_with(want), "{n}: {out}");
            assert_eq!(out.lines().count(), want.lines().count(), "{n}: {out}");
        }
        let (out, _) = facts(&full[..20]);
        assert!(
            out.contains("it declares 28 bytes, the frame ends after 20"),
            "{out}"
        );
    }

    #[test]
    fn invalid_parts() {
        // v2 with a bad family: no family line, the parser's sentence.
        let (out, outcome) = facts(&v2(0x21, 0x44, &[]));
        assert_eq!(outcome, Outcome::Invalid);
        assert_eq!(
            lines(&out),
            [
                "proxy=v2",
                "proxy.command=PROXY",
                &format!("error=proxy: {}", proxy::ProxyError::V2BadFamily),
            ]
        );
        // LOCAL header, then a record that is not a ClientHello.
        let mut buf = v2(0x20, 0x00, &[]);
        buf.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]);
        let (out, outcome) = facts(&buf);
        assert_eq!(outcome, Outcome::Invalid);
        assert!(out.ends_with(&format!(
            "proxy.length=16\ntls=invalid\nerror=tls: {}\n",
            TlsError::NotClientHello
        )));
        // No header, not TLS: nothing wrong.
        let (out, outcome) = facts(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            (lines(&out), outcome),
            (vec!["proxy=none", "tls=none"], Outcome::Valid)
        );
        // A ClientHello cut short.
        let h = hello(&[]);
        let (out, outcome) = facts(&h[..h.len() - 1]);
        assert_eq!(outcome, Outcome::Invalid);
        assert!(out.starts_with("proxy=none\ntls=incomplete\nerror=tls: truncated ClientHello"));
    }

    #[test]
    fn no_input_panics_or_leaks_control_bytes() {
        let base = {
            let mut b = v2(0x21, 0x11, &[192, 0, 2, 1, 198, 51, 100, 7, 0, 1, 0, 2]);
            b.extend(hello(&[(0x0010, b"\x00\x03\x02h2")]));
            b
        };
        let mut m = base.clone();
        for i in 0..m.len() {
            let orig = m[i];
            for v in [0x00, 0xff, b'\n', orig ^ 0x01] {
                m[i] = v;
                let (out, _) = facts(&m);
                assert!(!out.bytes().any(|b| b.is_ascii_control() && b != b'\n'));
            }
            m[i] = orig;
        }
    }
}
