//! PROXY protocol version 1: the human-readable line
//! `PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\r\n`, parsed and emitted.
//!
//! For: receiving v1 from load balancers (haproxy `send-proxy`, nginx stream, sniproxy)
//! and sending it upstream. Must never allocate, panic, read past 107 bytes, or wait for
//! more bytes once the line can no longer become valid.
use core::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use super::header::EmitError;
use super::header::{Addresses, Command, Family, ProxyError, ProxyHeader, Transport, Version};
use super::tlv::Tlvs;
use crate::wire::writer::Out;
use crate::wire::Parsed;

/// The v1 signature: a line starting with these six bytes.
pub const SIGNATURE: &[u8; 6] = b"PROXY ";

/// What makes bytes a v1 header, valid or not: the spec (§2.2) reads 8 or more bytes
/// starting with "PROXY" as version 1, and an invalid header aborts the connection. So
/// `PROXYjunk` or `PROXY\tTCP4` is a broken header, never payload.
pub const DECISIVE: &[u8; 5] = b"PROXY";

/// The longest v1 line the spec allows, CRLF included.
pub const MAX_V1_LEN: usize = 107;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const SP: u8 = b' ';

/// Field positions in the space-separated line.
const FIELD_SIGNATURE: usize = 0;
const FIELD_PROTOCOL: usize = 1;
const FIELD_SRC_ADDR: usize = 2;
const FIELD_DST_ADDR: usize = 3;
const FIELD_SRC_PORT: usize = 4;
const FIELD_DST_PORT: usize = 5;
const FIELD_COUNT: usize = 6;

/// Longest text of an IPv4 address (`255.255.255.255`).
const MAX_V4_TEXT: usize = 15;
/// Longest text of an IPv6 address (`ffff:...:ffff:255.255.255.255`, INET6_ADDRSTRLEN - 1).
const MAX_V6_TEXT: usize = 45;
/// Longest port text (`65535`).
const MAX_PORT_TEXT: usize = 5;

/// The line's protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Tcp4,
    Tcp6,
    Unknown,
}

/// What the fields of a (possibly unfinished) line amount to.
enum Line {
    /// Valid so far; the line has not ended.
    Partial,
    /// `PROXY UNKNOWN ...`.
    Unknown,
    Tcp(Protocol, SocketAddr, SocketAddr),
}

/// Parses a v1 line at the start of `buf`.
///
/// `NeedMore` while there is no CRLF, fewer than 107 bytes, and what is there can still
/// become a valid line; `Invalid` as soon as it cannot (a NUL or TLS byte, a bare LF, a
/// double space, a malformed complete field) or once 107 bytes hold no CRLF.
pub fn parse(buf: &[u8]) -> Parsed<ProxyHeader<'_>, ProxyError> {
    let sig_len = buf.len().min(DECISIVE.len());
    if buf.get(..sig_len) != DECISIVE.get(..sig_len) {
        return Parsed::Invalid(ProxyError::NotProxy);
    }
    if buf.get(DECISIVE.len()).is_some_and(|&b| b != SP) {
        return Parsed::Invalid(ProxyError::V1BadSignature);
    }
    let window = buf.get(..MAX_V1_LEN).unwrap_or(buf);
    for (i, &b) in window.iter().enumerate() {
        let before = window.get(..i).unwrap_or(&[]);
        match b {
            CR => match window.get(i.saturating_add(1)) {
                Some(&LF) => {
                    let len = i.saturating_add(2);
                    return match check_line(before, true) {
                        Ok(line) => Parsed::Complete(header(line, len), len),
                        Err(e) => Parsed::Invalid(earliest(before, e)),
                    };
                }
                // A CR ends the line whatever follows it, so a line broken before it says
                // so first, as a read that stopped at the CR would.
                Some(_) => return Parsed::Invalid(ended(before, ProxyError::V1BadLineEnd)),
                // The CR is the last byte we have: its LF may still come, unless that
                // LF would be byte 108.
                None if window.len() >= MAX_V1_LEN => {
                    return Parsed::Invalid(ended(before, ProxyError::V1TooLong))
                }
                // Only LF may follow, so the line before the CR must already be whole.
                None => {
                    return match check_line(before, true) {
                        Ok(_) => Parsed::NeedMore,
                        Err(e) => Parsed::Invalid(earliest(before, e)),
                    };
                }
            },
            LF => return Parsed::Invalid(earliest(before, ProxyError::V1BadLineEnd)),
            0x20..=0x7e => {}
            _ => return Parsed::Invalid(earliest(before, ProxyError::V1BadByte)),
        }
    }
    if window.len() >= MAX_V1_LEN {
        return Parsed::Invalid(earliest(window, ProxyError::V1TooLong));
    }
    match check_line(window, false) {
        Ok(_) => Parsed::NeedMore,
        Err(e) => Parsed::Invalid(e),
    }
}

/// The error for a line refused for `e` at the end of `before`, unless `before` was already
/// broken, which a shorter read would have said: so the error does not depend on how the
/// bytes arrived (the first_bytes fuzz target checks it). Only on the way out of a refusal.
#[cold]
fn earliest(before: &[u8], e: ProxyError) -> ProxyError {
    check_line(before, false).err().unwrap_or(e)
}

/// The error for a line that ends (a CR) at the end of `before` and is refused for `e` past
/// it: what is wrong with `before` as a whole line comes first.
#[cold]
fn ended(before: &[u8], e: ProxyError) -> ProxyError {
    match check_line(before, true) {
        Err(first) => earliest(before, first),
        Ok(_) => e,
    }
}

fn header(line: Line, len: usize) -> ProxyHeader<'static> {
    let (family, transport, addrs) = match line {
        Line::Tcp(Protocol::Tcp4, src, dst) => (
            Family::Inet,
            Transport::Stream,
            Addresses::Inet { src, dst },
        ),
        Line::Tcp(_, src, dst) => (
            Family::Inet6,
            Transport::Stream,
            Addresses::Inet { src, dst },
        ),
        Line::Unknown | Line::Partial => (Family::Unspec, Transport::Unspec, Addresses::None),
    };
    ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        family,
        transport,
        addrs,
        tlvs: Tlvs::EMPTY,
        crc32c: None,
        len,
    }
}

/// Checks the fields of a line body (printable ASCII, no CRLF). With `ended` false the
/// last field may be unfinished and is checked only as a prefix of a valid field.
fn check_line(body: &[u8], ended: bool) -> Result<Line, ProxyError> {
    let count = body.iter().filter(|&&b| b == SP).count().saturating_add(1);
    let mut proto = Protocol::Unknown;
    let (mut src_ip, mut dst_ip) = (None, None);
    let (mut src_port, mut dst_port) = (0u16, 0u16);
    for (i, field) in body.split(|&b| b == SP).enumerate() {
        let complete = ended || i.saturating_add(1) < count;
        if complete && field.is_empty() {
            return Err(ProxyError::V1BadSyntax);
        }
        match i {
            FIELD_SIGNATURE => {
                let sig = SIGNATURE.get(..5).unwrap_or(&[]);
                let ok = if complete {
                    field == sig
                } else {
                    sig.starts_with(field)
                };
                if !ok {
                    return Err(ProxyError::NotProxy);
                }
            }
            FIELD_PROTOCOL => {
                const PROTOS: [(&[u8], Protocol); 3] = [
                    (b"TCP4", Protocol::Tcp4),
                    (b"TCP6", Protocol::Tcp6),
                    (b"UNKNOWN", Protocol::Unknown),
                ];
                if !complete {
                    return if PROTOS.iter().any(|(name, _)| name.starts_with(field)) {
                        Ok(Line::Partial)
                    } else {
                        Err(ProxyError::V1BadProtocol)
                    };
                }
                proto = PROTOS
                    .iter()
                    .find(|(name, _)| *name == field)
                    .map(|&(_, p)| p)
                    .ok_or(ProxyError::V1BadProtocol)?;
                if proto == Protocol::Unknown {
                    // The spec: the receiver ignores everything after UNKNOWN up to CRLF.
                    return Ok(if ended { Line::Unknown } else { Line::Partial });
                }
            }
            FIELD_SRC_ADDR | FIELD_DST_ADDR => {
                if !complete {
                    return addr_prefix(proto, field).map(|_| Line::Partial);
                }
                let ip = parse_addr(proto, field).ok_or(ProxyError::V1BadAddress)?;
                if i == FIELD_SRC_ADDR {
                    src_ip = Some(ip);
                } else {
                    dst_ip = Some(ip);
                }
            }
            FIELD_SRC_PORT | FIELD_DST_PORT => {
                if !complete {
                    return port_prefix(field).map(|_| Line::Partial);
                }
                let port = parse_port(field).ok_or(ProxyError::V1BadPort)?;
                if i == FIELD_SRC_PORT {
                    src_port = port;
                } else {
                    dst_port = port;
                }
            }
            _ => return Err(ProxyError::V1BadSyntax),
        }
    }
    if !ended {
        return Ok(Line::Partial);
    }
    match (src_ip, dst_ip) {
        (Some(s), Some(d)) if count == FIELD_COUNT => Ok(Line::Tcp(
            proto,
            SocketAddr::new(s, src_port),
            SocketAddr::new(d, dst_port),
        )),
        _ => Err(ProxyError::V1BadSyntax),
    }
}

/// An address of the protocol's family, or `None`.
fn parse_addr(proto: Protocol, text: &[u8]) -> Option<IpAddr> {
    match proto {
        Protocol::Tcp4 => parse_ipv4(text).map(IpAddr::V4),
        Protocol::Tcp6 => core::str::from_utf8(text)
            .ok()?
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        Protocol::Unknown => None,
    }
}

/// Could `text` still grow into an address of the protocol's family?
fn addr_prefix(proto: Protocol, text: &[u8]) -> Result<(), ProxyError> {
    let ok = match proto {
        Protocol::Tcp4 => {
            text.len() <= MAX_V4_TEXT && text.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        }
        Protocol::Tcp6 => {
            text.len() <= MAX_V6_TEXT
                && text
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        Protocol::Unknown => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ProxyError::V1BadAddress)
    }
}

/// Strict dotted quad: four decimal octets 0-255, no leading zeros, nothing else.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for slot in octets.iter_mut() {
        *slot = parse_decimal(parts.next()?, 3).and_then(|v| u8::try_from(v).ok())?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_port(text: &[u8]) -> Option<u16> {
    parse_decimal(text, MAX_PORT_TEXT).and_then(|v| u16::try_from(v).ok())
}

/// Could `text` still grow into a port?
fn port_prefix(text: &[u8]) -> Result<(), ProxyError> {
    let ok = text.is_empty()
        || parse_decimal(text, MAX_PORT_TEXT).is_some_and(|v| v <= u32::from(u16::MAX));
    if ok {
        Ok(())
    } else {
        Err(ProxyError::V1BadPort)
    }
}

/// 1..=`max_digits` ASCII digits without a leading zero (except "0" itself).
fn parse_decimal(text: &[u8], max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || (text.len() > 1 && text.first() == Some(&b'0'))
    {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &b| {
        let digit = b.is_ascii_digit().then(|| u32::from(b - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// Writes a v1 line into `out` and returns its length.
///
/// Both endpoints known: `TCP4` when both are IPv4, otherwise `TCP6` (an IPv4 endpoint
/// written v4-mapped, `::ffff:a.b.c.d`). Either one unknown: `PROXY UNKNOWN\r\n`.
pub fn emit(
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
    out: &mut [u8],
) -> Result<usize, EmitError> {
    let mut w = Out::new(out);
    let written = match (src, dst) {
        (Some(SocketAddr::V4(s)), Some(SocketAddr::V4(d))) => write!(
            w,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        (Some(s), Some(d)) => write!(
            w,
            "PROXY TCP6 {} {} {} {}\r\n",
            as_v6(s.ip()),
            as_v6(d.ip()),
            s.port(),
            d.port()
        ),
        _ => w.write_str("PROXY UNKNOWN\r\n"),
    };
    written.map_err(|_| EmitError::BufferTooSmall)?;
    Ok(w.pos())
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> ProxyHeader<'_> {
        match parse(buf) {
            Parsed::Complete(h, n) => {
                assert_eq!(n, h.len);
                h
            }
            other => panic!(
                "expected Complete for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn invalid(buf: &[u8]) -> ProxyError {
        match parse(buf) {
            Parsed::Invalid(e) => e,
            other => panic!(
                "expected Invalid for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    /// Every strict prefix of a valid line is NeedMore, the line alone is Complete.
    fn assert_prefixes(line: &[u8]) {
        for n in 0..line.len() {
            assert_eq!(
                parse(&line[..n]),
                Parsed::NeedMore,
                "prefix {n} of {:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(parse(line), Parsed::Complete(_, n) if n == line.len()));
    }

    /// A TCP6 line of exactly `len` bytes: 11 + a + 1 + b + 1 + 11 + 2.
    fn tcp6_line(len: usize) -> Vec<u8> {
        let src = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"; // 45, the longest
        let fixed = "PROXY TCP6 ".len() + src.len() + 1 + 1 + "65535 65535\r\n".len();
        let dst_len = len - fixed;
        // "ffff:...:1.2.3.4" shortened by dropping leading hex digits of the first group.
        let mut dst = String::from("ffff:ffff:ffff:ffff:ffff:ffff:1.2.3.4"); // 37
        while dst.len() > dst_len {
            dst.remove(0);
        }
        assert_eq!(dst.len(), dst_len, "cannot build a {len}-byte line");
        let line = format!("PROXY TCP6 {src} {dst} 65535 65535\r\n").into_bytes();
        assert_eq!(line.len(), len);
        line
    }

    #[test]
    fn tcp4_line() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\x16\x03\x01"); // the ClientHello that follows
        let h = complete(&buf);
        assert_eq!((h.version, h.command), (Version::V1, Command::Proxy));
        assert_eq!((h.family, h.transport), (Family::Inet, Transport::Stream));
        assert_eq!(
            h.addrs,
            Addresses::Inet {
                src: sa("192.0.2.1:56324"),
                dst: sa("198.51.100.7:443")
            }
        );
        assert_eq!(h.len, line.len());
        assert!(h.tlvs.is_empty());
        assert_prefixes(line);
    }

    #[test]
    fn tcp6_line_parses() {
        let line = b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 65535\r\n";
        let h = complete(line);
        assert_eq!(h.family, Family::Inet6);
        assert_eq!(
            h.addrs,
            Addresses::Inet {
                src: sa("[2001:db8::1]:0"),
                dst: sa("[::ffff:192.0.2.1]:65535")
            }
        );
        assert_prefixes(line);
    }

    /// Found by the first_bytes fuzz target: a line broken early and then too long said
    /// `V1BadSyntax` when read in pieces and `V1TooLong` when read at once.
    #[test]
    fn a_broken_line_is_broken_however_it_is_read() {
        let mut line = b"PROXY TCP4 127.0.0.1 127.0.0.1 50000 20012".to_vec();
        line.resize(200, b' ');
        for k in 43..=line.len() {
            assert_eq!(invalid(&line[..k]), ProxyError::V1BadSyntax, "{k} bytes");
        }
        let mut cr = line[..106].to_vec();
        cr.push(b'\r');
        assert_eq!(invalid(&cr), ProxyError::V1BadSyntax);
        // A CR ends the line: what the line lacks at the CR is said, whatever follows.
        let cut = b"PROXY TCP4 127.\rJ";
        for k in 16..=cut.len() {
            assert_eq!(invalid(&cut[..k]), ProxyError::V1BadAddress, "{k} bytes");
        }
        // ... and broken before a byte that may never stand in a line.
        line[60] = 0xf2;
        for k in 43..=line.len() {
            assert_eq!(invalid(&line[..k]), ProxyError::V1BadSyntax, "{k} bytes");
        }
    }

    #[test]
    fn exactly_107_bytes_is_valid_108_is_not() {
        let line = tcp6_line(107);
        let h = complete(&line);
        assert_eq!(h.len, MAX_V1_LEN);
        assert_prefixes(&line);
        let long = tcp6_line(108);
        assert_eq!(invalid(&long), ProxyError::V1TooLong);
        // Decided at 107 bytes (the CR is the 107th: its LF would be the 108th).
        assert_eq!(invalid(&long[..107]), ProxyError::V1TooLong);
        assert_eq!(parse(&long[..106]), Parsed::NeedMore);
    }

    #[test]
    fn unknown_forms() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ::2 1 2\r\n",
            b"PROXY UNKNOWN whatever, even  double spaces\r\n",
        ] {
            let h = complete(line);
            assert_eq!((h.family, h.transport), (Family::Unspec, Transport::Unspec));
            assert_eq!(h.addrs, Addresses::None);
            assert_eq!(h.command, Command::Proxy);
            assert_prefixes(line);
        }
        assert_eq!(invalid(b"PROXY UNKNOWNX\r\n"), ProxyError::V1BadProtocol);
        assert_eq!(invalid(b"PROXY UNKNOWN \xff"), ProxyError::V1BadByte);
    }

    #[test]
    fn line_endings() {
        // Bare LF.
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            ProxyError::V1BadLineEnd
        );
        // CR followed by something other than LF.
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
            ProxyError::V1BadLineEnd
        );
        // A CR at the end may still get its LF.
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), Parsed::NeedMore);
        // ... but not when the line is already wrong before it.
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r"),
            ProxyError::V1BadSyntax
        );
    }

    #[test]
    fn ports() {
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            ProxyError::V1BadPort
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
            ProxyError::V1BadPort
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -1\r\n"),
            ProxyError::V1BadPort
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 655350\r\n"),
            ProxyError::V1BadPort
        );
        // Rejected while the port is still being typed.
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 00"),
            ProxyError::V1BadPort
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536"),
            ProxyError::V1BadPort
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 6553"), Parsed::NeedMore);
        let h = complete(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n");
        assert_eq!(h.src().unwrap().port(), 0);
        assert_eq!(h.dst().unwrap().port(), 65535);
    }

    #[test]
    fn addresses_must_match_the_family() {
        assert_eq!(
            invalid(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            ProxyError::V1BadAddress
        );
        assert_eq!(invalid(b"PROXY TCP4 2001:db8::1"), ProxyError::V1BadAddress);
        assert_eq!(
            invalid(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
            ProxyError::V1BadAddress
        );
        // Strict dotted quad.
        for bad in [
            &b"127.000.0.1"[..],
            b"127.0.0.01",
            b"256.0.0.1",
            b"1.2.3",
            b"1.2.3.4.5",
            b"1..2.3",
        ] {
            let mut line = b"PROXY TCP4 ".to_vec();
            line.extend_from_slice(bad);
            line.extend_from_slice(b" 5.6.7.8 1 2\r\n");
            assert_eq!(
                invalid(&line),
                ProxyError::V1BadAddress,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            invalid(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
            ProxyError::V1BadAddress
        );
    }

    #[test]
    fn syntax() {
        assert_eq!(
            invalid(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            ProxyError::V1BadSyntax
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
            ProxyError::V1BadSyntax
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
            ProxyError::V1BadSyntax
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            ProxyError::V1BadSyntax
        );
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
            ProxyError::V1BadSyntax
        );
        assert_eq!(invalid(b"PROXY TCP4\r\n"), ProxyError::V1BadSyntax);
        assert_eq!(invalid(b"PROXY \r\n"), ProxyError::V1BadSyntax);
        assert_eq!(
            invalid(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"),
            ProxyError::V1BadProtocol
        );
        assert_eq!(invalid(b"PROXY UDP4"), ProxyError::V1BadProtocol);
        assert_eq!(invalid(b"PROXY\tTCP4"), ProxyError::V1BadSignature);
        assert_eq!(invalid(b"GET / HTTP/1.1\r\n"), ProxyError::NotProxy);
        assert_eq!(parse(b"PRO"), Parsed::NeedMore);
        assert_eq!(parse(b""), Parsed::NeedMore);
    }

    #[test]
    fn impossible_bytes_fail_at_once() {
        assert_eq!(invalid(b"PROXY TCP4 1\0"), ProxyError::V1BadByte);
        assert_eq!(invalid(b"PROXY \x16"), ProxyError::V1BadByte);
        assert_eq!(
            invalid(b"PROXY TCP4 1.2.3.4 \xc3\xa9"),
            ProxyError::V1BadByte
        );
        assert_eq!(invalid(b"PROXY TCP4 1.2.3.4\t"), ProxyError::V1BadByte);
        // Letters are not digits: TCP4 fields reject them before the line ends.
        assert_eq!(invalid(b"PROXY TCP4 1.2.x"), ProxyError::V1BadAddress);
    }

    #[test]
    fn emit_round_trips() {
        type Case = (
            Option<SocketAddr>,
            Option<SocketAddr>,
            &'static [u8],
            Family,
            Addresses<'static>,
        );
        let cases: [Case; 5] = [
            (
                Some(sa("192.0.2.1:56324")),
                Some(sa("198.51.100.7:443")),
                b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
                Family::Inet,
                Addresses::Inet {
                    src: sa("192.0.2.1:56324"),
                    dst: sa("198.51.100.7:443"),
                },
            ),
            (
                Some(sa("[2001:db8::1]:1")),
                Some(sa("[::1]:65535")),
                b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
                Family::Inet6,
                Addresses::Inet {
                    src: sa("[2001:db8::1]:1"),
                    dst: sa("[::1]:65535"),
                },
            ),
            (
                // A v4/v6 mix: TCP6 with the IPv4 side v4-mapped.
                Some(sa("192.0.2.1:5000")),
                Some(sa("[2001:db8::2]:443")),
                b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5000 443\r\n",
                Family::Inet6,
                Addresses::Inet {
                    src: sa("[::ffff:192.0.2.1]:5000"),
                    dst: sa("[2001:db8::2]:443"),
                },
            ),
            (
                None,
                None,
                b"PROXY UNKNOWN\r\n",
                Family::Unspec,
                Addresses::None,
            ),
            (
                Some(sa("192.0.2.1:1")),
                None,
                b"PROXY UNKNOWN\r\n",
                Family::Unspec,
                Addresses::None,
            ),
        ];
        for (src, dst, text, family, addrs) in cases {
            let mut out = [0u8; MAX_V1_LEN];
            let n = emit(src, dst, &mut out).unwrap();
            assert_eq!(&out[..n], text);
            let h = complete(&out[..n]);
            assert_eq!((h.family, h.addrs, h.len), (family, addrs, n));
        }
    }

    #[test]
    fn emit_longest_fits_in_107() {
        let ip = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535";
        let mut out = [0u8; MAX_V1_LEN];
        let n = emit(Some(sa(ip)), Some(sa(ip)), &mut out).unwrap();
        assert!(n <= MAX_V1_LEN);
        assert!(matches!(parse(&out[..n]), Parsed::Complete(..)));
    }

    #[test]
    fn emit_buffer_too_small() {
        let (src, dst) = (Some(sa("192.0.2.1:56324")), Some(sa("198.51.100.7:443")));
        let mut out = [0u8; 64];
        let n = emit(src, dst, &mut out).unwrap();
        for short in 0..n {
            assert_eq!(
                emit(src, dst, &mut out[..short]),
                Err(EmitError::BufferTooSmall),
                "{short}"
            );
        }
        assert_eq!(
            emit(None, None, &mut [0u8; 14]),
            Err(EmitError::BufferTooSmall)
        );
    }
}
