//! `sluice inspect [--hexdump] [--proxy-protocol=POLICY] [--buffer-size=BYTES] FILE...`:
//! reads captured frames (the bytes a proxy receives on the client socket, from the first
//! byte until the peer stopped sending) and prints what they hold, one `key=value` fact a
//! line. Offline: no sockets, no configuration files. What the bytes come to is decided by
//! `first_bytes`, the very function the session's handshake calls, so that its verdict on a
//! capture is the proxy's: `--proxy-protocol` and `--buffer-size` say what ENVOY_PROXY_PROTOCOL
//! and ENVOY_BUFFER_SIZE said (default `optional` and 16384, the proxy's defaults); the peer
//! is taken as trusted (an untrusted peer's header is refused before it is read, and never
//! captured).
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
//! http=request|incomplete|invalid      (when the bytes after the header are HTTP/1.x)
//! http.method= http.target= http.version= http.host= http.port=
//! reason=<close reason>                (when the proxy closes the session on these bytes)
//! error=<part>: <reason>
//! ```
//!
//! Files are separated by a blank line; `--hexdump` adds, after each file's facts, a line
//! `hexdump:` and an xxd-style dump of the whole frame (at most [`HEXDUMP_LIMIT`] bytes).
//!
//! Exit status: 0 when every part present parsed; 1 when a part is invalid or truncated
//! (with `error=`); 2 on a usage or I/O error (message on stderr). With several files the
//! status is the worst of them; an unreadable file does not stop the others. `--` ends
//! the options.
//!
//! `reason=` is the close reason the session gives when its peer sends these bytes and then
//! closes (a capture ends where the peer stopped sending):
//!
//! * Refused bytes: the refusal's reason (`invalid_proxy`, `invalid_authority`,
//!   `invalid_tls`, `invalid_http`, `missing_proxy_header`), with `error=`, exit 1.
//! * A frame that ends inside the PROXY header, the ClientHello or the HTTP head:
//!   `client_closed_early` and `error=<part>: truncated ...`, exit 1. The proxy closes the
//!   same bytes as `header_timeout` when the peer stays silent instead: a capture named so
//!   replays as `client_closed_early` (the silence is not in the bytes). For v2, the
//!   command and family that the fixed 16 bytes already tell are printed first
//!   (`edge-v2-len-exceeds-data.bin`); an invalid v2 header prints them too when its fixed
//!   part is well formed (e.g. a CRC32C mismatch).
//! * A header followed by nothing: `health_check` (a load balancer's check), exit 0; an
//!   empty frame: `client_closed_early`, exit 0 (nothing invalid in it).
//! * Bytes that complete (a ClientHello, a request head, other bytes routed as
//!   `proto=other`): no `reason=`, exit 0: the proxy routes them. Bytes after a complete
//!   ClientHello or request head are not looked at, as in the proxy.
//!
//! Wire text (TLV values, SNI, Host, unix paths, the file name) goes through
//! [`Escaped`]; the ALPN list through its own `Display`, which also escapes `,`
//! so that a name cannot forge a separator. NOOP TLVs (padding), the SSL TLV's client and
//! verify fields and unknown SSL sub-TLVs are not printed; of a known TLV type that appears
//! twice, only the first is. Must never print a raw control byte from the wire, nor panic
//! on any input.
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::io::Write as _;

use crate::config::ProxyPolicy;
use crate::first_bytes::{self, CutShort, First, HeaderStep, HelloStep, Part, Refusal};
use crate::hexdump::{Escaped, Hex, HexDump};
use crate::wire::http::RequestHead;
use crate::wire::proxy::v2::{field, FIXED_LEN};
use crate::wire::proxy::{
    self, v1, Addresses, Command, Detected, Family, ProxyHeader, SslSub, Tlv, Version,
};
use crate::wire::tls::{self, ClientHello};
use crate::wire::Parsed;
use crate::worker::stats::CloseReason;

/// The most bytes of a frame `--hexdump` shows.
pub const HEXDUMP_LIMIT: usize = 64 * 1024;

/// The usage line, printed on a usage error.
pub const USAGE: &str = "usage: sluice inspect [--hexdump] [--proxy-protocol=required|optional|off] [--buffer-size=BYTES] FILE...";

/// What the proxy's configuration says about the first bytes: ENVOY_PROXY_PROTOCOL and
/// ENVOY_BUFFER_SIZE, as `--proxy-protocol` and `--buffer-size` give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether a PROXY header is required, optional or not looked for.
    pub proxy_protocol: ProxyPolicy,
    /// The session's buffer: first bytes that fill it without completing are refused.
    pub buffer_size: usize,
}

impl Default for Policy {
    /// The proxy's defaults.
    fn default() -> Self {
        Policy {
            proxy_protocol: ProxyPolicy::Optional,
            buffer_size: 16384,
        }
    }
}

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
    let mut policy = Policy::default();
    let mut files: Vec<&OsStr> = Vec::new();
    let mut options_done = false;
    for arg in args {
        match arg.to_str() {
            Some("--") if !options_done => options_done = true,
            Some("--hexdump") if !options_done => hexdump = true,
            Some(s) if !options_done && s.starts_with("--proxy-protocol=") => {
                policy.proxy_protocol = match s.trim_start_matches("--proxy-protocol=") {
                    "required" => ProxyPolicy::Required,
                    "optional" => ProxyPolicy::Optional,
                    "off" => ProxyPolicy::Off,
                    other => {
                        eprintln!(
                            "sluice inspect: bad --proxy-protocol {} (required, optional, off)\n{USAGE}",
                            Escaped(other.as_bytes())
                        );
                        return EXIT_USAGE;
                    }
                }
            }
            Some(s) if !options_done && s.starts_with("--buffer-size=") => {
                match s.trim_start_matches("--buffer-size=").parse::<usize>() {
                    Ok(n) if (2048..=1 << 20).contains(&n) => policy.buffer_size = n,
                    _ => {
                        eprintln!(
                            "sluice inspect: bad {} (2048..=1048576, as ENVOY_BUFFER_SIZE)\n{USAGE}",
                            Escaped(s.as_bytes())
                        );
                        return EXIT_USAGE;
                    }
                }
            }
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
        let outcome = match write_file(&mut text, &name, &bytes, hexdump, policy) {
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
    policy: Policy,
) -> Result<Outcome, fmt::Error> {
    writeln!(out, "file={name}")?;
    let outcome = inspect_with(bytes, policy, out)?;
    if hexdump {
        writeln!(out, "hexdump:")?;
        if !bytes.is_empty() {
            writeln!(out, "{}", HexDump::new(bytes, HEXDUMP_LIMIT))?;
        }
    }
    Ok(outcome)
}

/// Writes the facts of one captured frame (every line but `file=`) and returns the verdict,
/// under the proxy's default policy.
///
/// Pure: no I/O; the only allocation is the scratch buffer a multi-record ClientHello is
/// joined in. An `Err` comes only from `out` itself.
pub fn inspect(bytes: &[u8], out: &mut impl fmt::Write) -> Result<Outcome, fmt::Error> {
    inspect_with(bytes, Policy::default(), out)
}

/// [`inspect`] under `policy`.
pub fn inspect_with(
    bytes: &[u8],
    policy: Policy,
    out: &mut impl fmt::Write,
) -> Result<Outcome, fmt::Error> {
    let full = bytes.len() >= policy.buffer_size;
    let pp = policy.proxy_protocol;
    // The proxy asks about trust only for a header it then reads; a captured one was read.
    let (header, rest) = match first_bytes::header(bytes, pp, || true, || full) {
        HeaderStep::Done(None) => {
            writeln!(out, "proxy=none")?;
            (None, bytes)
        }
        HeaderStep::Done(Some(h)) => {
            write_header(&h, out)?;
            (Some(h), bytes.get(h.len..).unwrap_or(&[]))
        }
        HeaderStep::NeedMore if bytes.is_empty() => {
            // The empty frame is a prefix of both signatures, but holds no part at all.
            writeln!(out, "proxy=none")?;
            writeln!(out, "tls=none")?;
            writeln!(out, "reason={}", CloseReason::ClientClosedEarly.as_str())?;
            return Ok(Outcome::Valid);
        }
        HeaderStep::NeedMore => {
            write_broken_header(bytes, out)?;
            writeln!(out, "reason={}", CloseReason::ClientClosedEarly.as_str())?;
            write_proxy_truncated(bytes, out)?;
            return Ok(Outcome::Invalid);
        }
        HeaderStep::Refused(r) => return refused_header(r, bytes, policy, out),
    };
    let local = header.is_some_and(|h| h.command == Command::Local);
    // Allocated here, not in the parser: the proxy lends one from its worker instead.
    let mut scratch = vec![0u8; tls::MAX_HELLO_LEN];
    match first_bytes::hello(rest, pp, local, || full, &mut scratch) {
        HelloStep::Done(First::Tls { hello, .. }) => {
            write_hello(&hello, out)?;
            Ok(Outcome::Valid)
        }
        HelloStep::Done(First::Http(head)) => {
            writeln!(out, "tls=none")?;
            write_http(&head, out)?;
            Ok(Outcome::Valid)
        }
        HelloStep::Done(First::Other) => {
            writeln!(out, "tls=none")?;
            Ok(Outcome::Valid)
        }
        HelloStep::NeedMore(part) => {
            let header_len = header.map_or(0, |h| h.len);
            let why = match first_bytes::cut_short(header_len, bytes.len()) {
                CutShort::HealthCheck => CloseReason::HealthCheck,
                CutShort::Early => CloseReason::ClientClosedEarly,
            };
            hello_cut_short(part, rest.len(), why, out)
        }
        HelloStep::Refused(r) => refused_hello(r, rest, policy, out),
    }
}

/// `proxy=` (and a v2 header's fixed part) of a header that did not parse.
fn write_broken_header(bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    match broken_version(bytes) {
        Version::V1 => writeln!(out, "proxy=v1"),
        Version::V2 => {
            writeln!(out, "proxy=v2")?;
            write_v2_fixed(bytes, out)
        }
    }
}

/// Which version a header that did not parse was going to be.
fn broken_version(bytes: &[u8]) -> Version {
    match proxy::detect(bytes) {
        Detected::V1 => Version::V1,
        Detected::NeedMore if v1::SIGNATURE.starts_with(bytes) => Version::V1,
        Detected::NeedMore | Detected::V2 | Detected::NoHeader => Version::V2,
    }
}

/// The PROXY header stage refused the frame.
fn refused_header(
    r: Refusal,
    bytes: &[u8],
    policy: Policy,
    out: &mut impl fmt::Write,
) -> Result<Outcome, fmt::Error> {
    let error = match r {
        Refusal::MissingProxyHeader => {
            writeln!(out, "proxy=none")?;
            "proxy: no PROXY header, and the policy requires one (--proxy-protocol=required)"
                .to_string()
        }
        Refusal::BadAuthority => {
            if let Parsed::Complete(h, _) = proxy::parse(bytes) {
                write_header(&h, out)?;
            }
            "proxy: the AUTHORITY TLV is not a host name".to_string()
        }
        Refusal::InvalidProxy(e) => {
            write_broken_header(bytes, out)?;
            format!("proxy: {e}")
        }
        Refusal::TooLong { .. } => {
            write_broken_header(bytes, out)?;
            format!(
                "proxy: the first {} bytes fill the session's buffer (--buffer-size={}) before the PROXY header is complete",
                bytes.len(),
                policy.buffer_size
            )
        }
        other => {
            writeln!(out, "proxy=none")?;
            format!("proxy: refused ({})", other.counted_as().1)
        }
    };
    writeln!(out, "reason={}", r.close_reason().as_str())?;
    writeln!(out, "error={error}")?;
    Ok(Outcome::Invalid)
}

/// The frame ends before the bytes after the header were complete (`have` of them).
fn hello_cut_short(
    part: Part,
    have: usize,
    why: CloseReason,
    out: &mut impl fmt::Write,
) -> Result<Outcome, fmt::Error> {
    let error = match part {
        Part::Nothing => {
            writeln!(out, "tls=none")?;
            writeln!(out, "reason={}", why.as_str())?;
            return Ok(Outcome::Valid);
        }
        Part::Tls => {
            writeln!(out, "tls=incomplete")?;
            format!(
                "tls: truncated ClientHello: the frame ends after {have} bytes of TLS records, before the handshake message is complete"
            )
        }
        Part::Http => {
            writeln!(out, "tls=none")?;
            writeln!(out, "http=incomplete")?;
            format!(
                "http: truncated request head: the frame ends after {have} bytes, before the blank line"
            )
        }
        Part::Proxy => {
            writeln!(out, "tls=none")?;
            format!(
                "proxy: truncated: the frame ends after {have} bytes that begin like a second PROXY header"
            )
        }
    };
    writeln!(out, "reason={}", why.as_str())?;
    writeln!(out, "error={error}")?;
    Ok(Outcome::Invalid)
}

/// The stage after the header refused the bytes (`rest`).
fn refused_hello(
    r: Refusal,
    rest: &[u8],
    policy: Policy,
    out: &mut impl fmt::Write,
) -> Result<Outcome, fmt::Error> {
    let error = match r {
        Refusal::InvalidTls(e) => {
            writeln!(out, "tls=invalid")?;
            format!("tls: {e}")
        }
        Refusal::InvalidHttp(e) => {
            writeln!(out, "tls=none")?;
            writeln!(out, "http=invalid")?;
            format!("http: {e}")
        }
        Refusal::HeaderInStream => {
            writeln!(out, "tls=none")?;
            "proxy: a PROXY header inside the stream, where the ClientHello should be".to_string()
        }
        Refusal::LocalThenGarbage => {
            writeln!(out, "tls=none")?;
            "proxy: a LOCAL header followed by bytes that are neither TLS nor HTTP".to_string()
        }
        Refusal::TooLong { .. } => {
            let tls = rest.first().is_some_and(|&b| tls::could_be_tls(b));
            writeln!(out, "tls={}", if tls { "incomplete" } else { "none" })?;
            format!(
                "first bytes: {} bytes fill the session's buffer (--buffer-size={}) before the ClientHello or request head is complete",
                rest.len(),
                policy.buffer_size
            )
        }
        other => {
            writeln!(out, "tls=none")?;
            format!("refused ({})", other.counted_as().1)
        }
    };
    writeln!(out, "reason={}", r.close_reason().as_str())?;
    writeln!(out, "error={error}")?;
    Ok(Outcome::Invalid)
}

fn write_http(h: &RequestHead<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    writeln!(out, "http=request")?;
    writeln!(out, "http.method={}", Escaped(h.method))?;
    writeln!(out, "http.target={}", Escaped(h.target))?;
    writeln!(out, "http.version=HTTP/1.{}", h.version_minor)?;
    if let Some(host) = h.host {
        writeln!(out, "http.host={}", Escaped(host))?;
    }
    if let Some(port) = h.port {
        writeln!(out, "http.port={port}")?;
    }
    Ok(())
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
fn write_proxy_truncated(bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    let have = bytes.len();
    match broken_version(bytes) {
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
    header_facts(h, |key, value| match value {
        Fact::Shown(v) => writeln!(out, "{key}={v}"),
        Fact::Bytes(b) => writeln!(out, "{key}={}", Escaped(b)),
    })
}

/// A PROXY header's facts as `key=value` pairs after a space each, in `inspect`'s words and
/// order, values by the log's rule (`logfmt`): how the session's debug line decodes the
/// header it dumps.
pub struct HeaderSummary<'a, 'h>(pub &'a ProxyHeader<'h>);

impl fmt::Display for HeaderSummary<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        header_facts(self.0, |key, value| match value {
            Fact::Shown(v) => write!(f, " {key}={}", crate::logfmt::Shown(v)),
            Fact::Bytes(b) => write!(f, " {key}={}", crate::logfmt::Value(b)),
        })
    }
}

/// One fact's value: text already made for people, or bytes from the wire that each
/// reader escapes its own way (inspect for a terminal, a log line by logfmt's rule).
enum Fact<'a> {
    Shown(&'a dyn fmt::Display),
    Bytes(&'a [u8]),
}

/// Each fact of a parsed header, as (key, value), in the order `inspect` prints them.
fn header_facts(
    h: &ProxyHeader<'_>,
    mut each: impl FnMut(&str, Fact<'_>) -> fmt::Result,
) -> fmt::Result {
    match h.version {
        Version::V1 => each("proxy", Fact::Shown(&"v1"))?,
        Version::V2 => {
            each("proxy", Fact::Shown(&"v2"))?;
            let command = match h.command {
                Command::Proxy => "PROXY",
                Command::Local => "LOCAL",
            };
            each("proxy.command", Fact::Shown(&command))?;
        }
    }
    let family = match h.family {
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
        Family::Unix => "unix",
        Family::Unspec => "unspec",
    };
    each("proxy.family", Fact::Shown(&family))?;
    match h.addrs {
        Addresses::None => {}
        Addresses::Inet { src, dst } => {
            each("proxy.src", Fact::Shown(&src))?;
            each("proxy.dst", Fact::Shown(&dst))?;
        }
        Addresses::Unix { src, dst } => {
            each("proxy.src", Fact::Bytes(src))?;
            each("proxy.dst", Fact::Bytes(dst))?;
        }
    }
    let tlvs = &h.tlvs;
    if let Some(v) = tlvs.alpn() {
        each("proxy.tlv.alpn", Fact::Bytes(v))?;
    }
    if let Some(v) = tlvs.authority() {
        each("proxy.tlv.authority", Fact::Bytes(v))?;
    }
    // The parser never completes a header whose checksum does not match.
    if h.crc32c.is_some() {
        each("proxy.tlv.crc32c", Fact::Shown(&"ok"))?;
    }
    if let Some(v) = tlvs.unique_id() {
        each("proxy.tlv.unique_id", Fact::Shown(&Hex(v)))?;
    }
    if let Some(ssl) = tlvs.ssl() {
        let sub = |want: fn(SslSub<'_>) -> Option<&[u8]>| ssl.subs().find_map(want);
        let fields: [(&str, Option<&[u8]>); 5] = [
            ("proxy.tlv.ssl.version", ssl.version()),
            ("proxy.tlv.ssl.cn", ssl.cn()),
            ("proxy.tlv.ssl.cipher", ssl.cipher()),
            (
                "proxy.tlv.ssl.sig_alg",
                sub(|s| match s {
                    SslSub::SigAlg(v) => Some(v),
                    _ => None,
                }),
            ),
            (
                "proxy.tlv.ssl.key_alg",
                sub(|s| match s {
                    SslSub::KeyAlg(v) => Some(v),
                    _ => None,
                }),
            ),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                each(key, Fact::Bytes(v))?;
            }
        }
    }
    if let Some(v) = tlvs.netns() {
        each("proxy.tlv.netns", Fact::Bytes(v))?;
    }
    for t in tlvs.iter() {
        if let Tlv::Unknown(kind, v) = t {
            each(&format!("proxy.tlv.0x{kind:02x}"), Fact::Shown(&Hex(v)))?;
        }
    }
    each("proxy.length", Fact::Shown(&h.len))
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
    use crate::wire::tls::TlsError;

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
        assert_eq!(
            lines(&out),
            ["proxy=none", "tls=none", "reason=client_closed_early"]
        );
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
                "reason=health_check",
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
        assert!(
            out.contains("tls=invalid\nreason=invalid_tls\nerror=tls: "),
            "{out}"
        );
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
                out.starts_with("proxy=v1\nreason=client_closed_early\nerror=proxy: truncated"),
                "{n}: {out}"
            );
        }
        let body = [192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb]; // TCP4 addresses
        let full = v2(0x21, 0x11, &body);
        for n in 1..full.len() {
            let (out, outcome) = facts(&full[..n]);
            assert_eq!(outcome, Outcome::Invalid, "{n}");
            let want = match n {
                0..=12 => "proxy=v2\nreason=client_closed_early\nerror=proxy: truncated",
                13 => "proxy=v2\nproxy.command=PROXY\nreason=client_closed_early\nerror=proxy: truncated",
                _ => "proxy=v2\nproxy.command=PROXY\nproxy.family=inet\nreason=client_closed_early\nerror=proxy: truncated",
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
                "reason=invalid_proxy",
                &format!("error=proxy: {}", proxy::ProxyError::V2BadFamily),
            ]
        );
        // LOCAL header, then a record that is not a ClientHello.
        let mut buf = v2(0x20, 0x00, &[]);
        buf.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]);
        let (out, outcome) = facts(&buf);
        assert_eq!(outcome, Outcome::Invalid);
        assert!(out.ends_with(&format!(
            "proxy.length=16\ntls=invalid\nreason=invalid_tls\nerror=tls: {}\n",
            TlsError::NotClientHello
        )));
        // No header, not TLS: a request head, decoded.
        let (out, outcome) = facts(b"GET /x HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
        assert_eq!(
            (lines(&out), outcome),
            (
                vec![
                    "proxy=none",
                    "tls=none",
                    "http=request",
                    "http.method=GET",
                    "http.target=/x",
                    "http.version=HTTP/1.1",
                    "http.host=plain.test",
                    "http.port=8080"
                ],
                Outcome::Valid
            )
        );
        // HTTP/1.1 without Host: the proxy refuses it, so does inspect.
        let (out, outcome) = facts(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(outcome, Outcome::Invalid);
        assert_eq!(
            lines(&out),
            [
                "proxy=none",
                "tls=none",
                "http=invalid",
                "reason=invalid_http",
                &format!("error=http: {}", crate::wire::http::HttpError::MissingHost),
            ]
        );
        // A ClientHello cut short.
        let h = hello(&[]);
        let (out, outcome) = facts(&h[..h.len() - 1]);
        assert_eq!(outcome, Outcome::Invalid);
        assert!(out.starts_with(
            "proxy=none\ntls=incomplete\nreason=client_closed_early\nerror=tls: truncated ClientHello"
        ));
    }

    /// Every refusal the session can reach on the bytes alone, and how inspect words it:
    /// the verdict is `first_bytes`', the same function the handshake calls.
    #[test]
    fn the_proxy_refusals_are_inspect_verdicts() {
        let hello = hello(&[(0x0000, b"\x00\x09\x00\x00\x06a.test")]);
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n".to_vec();
        let local = v2(0x20, 0x00, &[]);
        let authority = {
            let mut body = vec![192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb];
            body.extend_from_slice(&[0x02, 0x00, 0x04, b'a', b' ', b'b', b'c']); // AUTHORITY "a bc"
            v2(0x21, 0x11, &body)
        };
        let required = Policy {
            proxy_protocol: ProxyPolicy::Required,
            ..Policy::default()
        };
        let small = Policy {
            buffer_size: 2048,
            ..Policy::default()
        };
        let cases: Vec<(&str, Vec<u8>, Policy, &str, &str)> = vec![
            (
                "in stream",
                [&v1[..], &v1[..], &hello[..]].concat(),
                Policy::default(),
                "invalid_proxy",
                "error=proxy: a PROXY header inside the stream",
            ),
            (
                "local then garbage",
                [&local[..], b"\x00\x01junk"].concat(),
                Policy::default(),
                "invalid_proxy",
                "error=proxy: a LOCAL header followed by",
            ),
            (
                "bad authority",
                [&authority[..], &hello[..]].concat(),
                Policy::default(),
                "invalid_authority",
                "error=proxy: the AUTHORITY TLV is not a host name",
            ),
            (
                "missing",
                hello.clone(),
                required,
                "missing_proxy_header",
                "error=proxy: no PROXY header",
            ),
            (
                "too long",
                [
                    &v1[..],
                    &b"GET / HTTP/1.1\r\nX-Long: "[..],
                    &[b'a'; 2100][..],
                ]
                .concat(),
                small,
                "invalid_tls",
                "error=first bytes: ",
            ),
            (
                "broken v1 signature",
                [&b"PROXYjunk"[..], &hello[..]].concat(),
                Policy::default(),
                "invalid_proxy",
                "error=proxy: the bytes start with",
            ),
            (
                "truncated request head",
                b"GET / HTTP/1.1\r\nHost: a.te".to_vec(),
                Policy::default(),
                "client_closed_early",
                "error=http: truncated request head",
            ),
            (
                "header then half a signature",
                [&v1[..], b"PRO"].concat(),
                Policy::default(),
                "client_closed_early",
                "error=proxy: truncated",
            ),
        ];
        for (name, bytes, policy, reason, error) in cases {
            let mut out = String::new();
            let outcome = inspect_with(&bytes, policy, &mut out).unwrap();
            assert_eq!(outcome, Outcome::Invalid, "{name}: {out}");
            let l = lines(&out);
            assert_eq!(l[l.len() - 2], format!("reason={reason}"), "{name}: {out}");
            assert!(l[l.len() - 1].starts_with(error), "{name}: {out}");
        }
        // Policy off: a PROXY line is only bytes.
        let off = Policy {
            proxy_protocol: ProxyPolicy::Off,
            ..Policy::default()
        };
        let mut out = String::new();
        let outcome = inspect_with(&[&v1[..], &hello[..]].concat(), off, &mut out).unwrap();
        assert_eq!(
            (lines(&out), outcome),
            (vec!["proxy=none", "tls=none"], Outcome::Valid)
        );
    }

    #[test]
    fn the_header_summary_is_inspects_facts_on_one_line() {
        let buf = v2(
            0x21,
            0x11,
            &[192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb],
        );
        let Parsed::Complete(h, _) = proxy::parse(&buf) else {
            panic!()
        };
        assert_eq!(
            HeaderSummary(&h).to_string(),
            " proxy=v2 proxy.command=PROXY proxy.family=inet proxy.src=192.0.2.1:1234 proxy.dst=198.51.100.7:443 proxy.length=28"
        );
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
