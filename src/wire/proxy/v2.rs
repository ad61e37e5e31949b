//! PROXY protocol version 2: the binary header (12-byte signature, version/command,
//! family/transport, 16-bit length, address block, TLVs), parsed and emitted.
//!
//! For: receiving v2 from load balancers (haproxy `send-proxy-v2`, AWS NLB, ...) and
//! sending it upstream. Must never allocate, panic, trust the length field beyond
//! [`MAX_V2_LEN`], read a TLV it has not bounds-checked, or accept a header whose CRC32C
//! does not match. Everything is validated here, once, so that reading the result cannot fail.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub use super::header::EmitError;
use super::header::{Addresses, Command, Family, ProxyError, ProxyHeader, Transport, Version};
use super::tlv::{
    Ssl, Tlvs, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID,
};
use crate::wire::crc32c;
use crate::wire::reader::Reader;
use crate::wire::writer::Out;
use crate::wire::Parsed;

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The largest length field (bytes after the 16-byte fixed part) sluice accepts.
///
/// The field could say 65535; real senders stay far below (haproxy with every option
/// and a client certificate CN is a few hundred bytes). A larger value is rejected as
/// soon as the fixed part is in, so a peer cannot make us hold 64 KiB waiting for it.
pub const MAX_V2_LEN: usize = 4096;

/// The spec's cap on the UNIQUE_ID TLV value.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// Offsets in the fixed part, smoltcp-style.
pub mod field {
    use core::ops::Range;
    pub const SIGNATURE: Range<usize> = 0..12;
    /// High nibble: version (2). Low nibble: command.
    pub const VER_CMD: usize = 12;
    /// High nibble: address family. Low nibble: transport.
    pub const FAM: usize = 13;
    /// Big-endian length of everything after the fixed part.
    pub const LEN: Range<usize> = 14..16;
    /// Length of the fixed part; the address block starts here.
    pub const FIXED_LEN: usize = 16;
}

/// The fixed part's length.
pub const FIXED_LEN: usize = field::FIXED_LEN;

const VERSION_2: u8 = 0x2;
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_UDP4: u8 = 0x12;
const FAM_TCP6: u8 = 0x21;
const FAM_UDP6: u8 = 0x22;
const FAM_UNIX_STREAM: u8 = 0x31;
const FAM_UNIX_DGRAM: u8 = 0x32;

/// Address block sizes: two addresses then (for IP) two ports.
pub const INET_ADDR_LEN: usize = 12;
pub const INET6_ADDR_LEN: usize = 36;
pub const UNIX_ADDR_LEN: usize = 216;
const UNIX_PATH_LEN: usize = 108;

/// A TLV header: type(1) length(2).
const TLV_HEADER_LEN: usize = 3;
const CRC32C_VALUE_LEN: usize = 4;

/// Parses a v2 header at the start of `buf`.
///
/// Fails as early as the bytes allow: a wrong signature byte, version, command or
/// family, or a length field above [`MAX_V2_LEN`] or below the address block, is
/// `Invalid` before the rest arrives. Otherwise `NeedMore` until all 16 + len bytes are in.
pub fn parse(buf: &[u8]) -> Parsed<ProxyHeader<'_>, ProxyError> {
    let sig_len = buf.len().min(SIGNATURE.len());
    if buf.get(..sig_len) != SIGNATURE.get(..sig_len) {
        return Parsed::Invalid(ProxyError::NotProxy);
    }
    let mut r = Reader::new(buf);
    if r.take(SIGNATURE.len()).is_none() {
        return Parsed::NeedMore;
    }
    let Some(ver_cmd) = r.u8() else {
        return Parsed::NeedMore;
    };
    if ver_cmd >> 4 != VERSION_2 {
        return Parsed::Invalid(ProxyError::V2BadVersion);
    }
    let command = match ver_cmd & 0x0f {
        CMD_LOCAL => Command::Local,
        CMD_PROXY => Command::Proxy,
        _ => return Parsed::Invalid(ProxyError::V2BadCommand),
    };
    let Some(fam) = r.u8() else {
        return Parsed::NeedMore;
    };
    let (family, transport) = match fam {
        FAM_UNSPEC => (Family::Unspec, Transport::Unspec),
        FAM_TCP4 => (Family::Inet, Transport::Stream),
        FAM_UDP4 => (Family::Inet, Transport::Dgram),
        FAM_TCP6 => (Family::Inet6, Transport::Stream),
        FAM_UDP6 => (Family::Inet6, Transport::Dgram),
        FAM_UNIX_STREAM => (Family::Unix, Transport::Stream),
        FAM_UNIX_DGRAM => (Family::Unix, Transport::Dgram),
        _ => return Parsed::Invalid(ProxyError::V2BadFamily),
    };
    let Some(len) = r.u16() else {
        return Parsed::NeedMore;
    };
    let len = usize::from(len);
    if len > MAX_V2_LEN {
        return Parsed::Invalid(ProxyError::V2TooLong);
    }
    // LOCAL and UNSPEC: the block is skipped whatever it holds, addresses and TLVs alike.
    let skip = command == Command::Local || family == Family::Unspec;
    let addr_len = if skip { 0 } else { addr_block_len(family) };
    if len < addr_len {
        return Parsed::Invalid(ProxyError::V2AddressTooShort);
    }
    let total = FIXED_LEN.saturating_add(len);
    let Some(mut block) = r.sub(len) else {
        return Parsed::NeedMore;
    };
    let mut header = ProxyHeader {
        version: Version::V2,
        command,
        family,
        transport,
        addrs: Addresses::None,
        tlvs: Tlvs::EMPTY,
        crc32c: None,
        len: total,
    };
    if skip {
        return Parsed::Complete(header, total);
    }
    let Some(addrs) = read_addrs(family, &mut block) else {
        return Parsed::Invalid(ProxyError::V2AddressTooShort);
    };
    let tlv_area = block.rest();
    let crc = match validate_tlvs(tlv_area) {
        Ok(crc) => crc,
        Err(e) => return Parsed::Invalid(e),
    };
    if let Some(crc) = crc {
        let at = FIXED_LEN
            .saturating_add(addr_len)
            .saturating_add(crc.value_at);
        let whole = buf.get(..total).unwrap_or(&[]);
        if header_crc(whole, at) != Some(crc.value) {
            return Parsed::Invalid(ProxyError::V2Crc32cMismatch);
        }
        header.crc32c = Some(crc.value);
    }
    header.addrs = addrs;
    header.tlvs = Tlvs::validated(tlv_area);
    Parsed::Complete(header, total)
}

fn addr_block_len(family: Family) -> usize {
    match family {
        Family::Inet => INET_ADDR_LEN,
        Family::Inet6 => INET6_ADDR_LEN,
        Family::Unix => UNIX_ADDR_LEN,
        Family::Unspec => 0,
    }
}

fn read_addrs<'a>(family: Family, r: &mut Reader<'a>) -> Option<Addresses<'a>> {
    Some(match family {
        Family::Inet => {
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?);
            let (sport, dport) = (r.u16()?, r.u16()?);
            Addresses::Inet {
                src: SocketAddr::V4(SocketAddrV4::new(src, sport)),
                dst: SocketAddr::V4(SocketAddrV4::new(dst, dport)),
            }
        }
        Family::Inet6 => {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?);
            let (sport, dport) = (r.u16()?, r.u16()?);
            Addresses::Inet {
                src: SocketAddr::V6(SocketAddrV6::new(src, sport, 0, 0)),
                dst: SocketAddr::V6(SocketAddrV6::new(dst, dport, 0, 0)),
            }
        }
        Family::Unix => Addresses::Unix {
            src: trim_nuls(r.take(UNIX_PATH_LEN)?),
            dst: trim_nuls(r.take(UNIX_PATH_LEN)?),
        },
        Family::Unspec => Addresses::None,
    })
}

fn trim_nuls(mut path: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = path {
        path = rest;
    }
    path
}

/// Where a CRC32C TLV's value sits in the TLV area, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crc32cTlv {
    pub(crate) value_at: usize,
    pub(crate) value: u32,
}

/// Checks a whole TLV area: every TLV and SSL sub-TLV fits, CRC32C is 4 bytes and
/// unique, UNIQUE_ID is at most 128 bytes, SSL has its 5-byte fixed part.
pub(crate) fn validate_tlvs(area: &[u8]) -> Result<Option<Crc32cTlv>, ProxyError> {
    let mut r = Reader::new(area);
    let mut crc = None;
    while !r.is_empty() {
        let kind = r.u8().ok_or(ProxyError::V2TlvOverrun)?;
        let len = r.u16().ok_or(ProxyError::V2TlvOverrun)?;
        let value_at = r.pos();
        let value = r.take(usize::from(len)).ok_or(ProxyError::V2TlvOverrun)?;
        match kind {
            PP2_TYPE_CRC32C => {
                let bytes = <[u8; CRC32C_VALUE_LEN]>::try_from(value)
                    .map_err(|_| ProxyError::V2Crc32cLength)?;
                if crc.is_some() {
                    return Err(ProxyError::V2Crc32cDuplicate);
                }
                crc = Some(Crc32cTlv {
                    value_at,
                    value: u32::from_be_bytes(bytes),
                });
            }
            PP2_TYPE_UNIQUE_ID if value.len() > MAX_UNIQUE_ID_LEN => {
                return Err(ProxyError::V2UniqueIdTooLong);
            }
            PP2_TYPE_SSL => validate_ssl(value)?,
            _ => {}
        }
    }
    Ok(crc)
}

fn validate_ssl(value: &[u8]) -> Result<(), ProxyError> {
    let ssl = Ssl::from_value(value).ok_or(ProxyError::V2SslTooShort)?;
    let mut r = Reader::new(ssl.raw_subs());
    while !r.is_empty() {
        r.u8().ok_or(ProxyError::V2SslSubTlvOverrun)?;
        r.vec_u16().ok_or(ProxyError::V2SslSubTlvOverrun)?;
    }
    Ok(())
}

/// The CRC32C of a whole header with the 4 checksum bytes at `value_at` taken as zero,
/// computed in three pieces rather than on a zeroed copy.
fn header_crc(header: &[u8], value_at: usize) -> Option<u32> {
    let after_at = value_at.checked_add(CRC32C_VALUE_LEN)?;
    let before = header.get(..value_at)?;
    let after = header.get(after_at..)?;
    let c = crc32c::crc32c(before);
    let c = crc32c::update_zeros(c, CRC32C_VALUE_LEN);
    Some(crc32c::update(c, after))
}

/// A TLV to emit as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTlv<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

/// What to put in a v2 header. The transport is always STREAM.
#[derive(Debug, Clone, Copy)]
pub struct V2Out<'a> {
    pub command: Command,
    /// `None`: family UNSPEC. A v4/v6 mix is written as INET6 with v4-mapped addresses.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    pub authority: Option<&'a [u8]>,
    pub alpn: Option<&'a [u8]>,
    pub unique_id: Option<&'a [u8]>,
    /// Written after the typed TLVs, in order. CRC32C may not be among them.
    pub raw: &'a [RawTlv<'a>],
    /// Add a CRC32C TLV (first, as haproxy does) computed over the finished header.
    pub crc32c: bool,
}

/// Writes a v2 header into `out` and returns its length; nothing is written unless it fits.
///
/// TLV order: CRC32C, ALPN, AUTHORITY, UNIQUE_ID, then `raw`. The result always parses:
/// the TLV area goes through the same validation as on receipt.
pub fn emit(h: &V2Out<'_>, out: &mut [u8]) -> Result<usize, EmitError> {
    if h.command == Command::Local && h.addrs.is_some() {
        return Err(EmitError::LocalWithAddresses);
    }
    let typed = [
        (PP2_TYPE_ALPN, h.alpn),
        (PP2_TYPE_AUTHORITY, h.authority),
        (PP2_TYPE_UNIQUE_ID, h.unique_id),
    ];
    let has_tlvs = h.crc32c || !h.raw.is_empty() || typed.iter().any(|(_, v)| v.is_some());
    if h.addrs.is_none() && has_tlvs {
        return Err(EmitError::TlvsWithoutAddresses);
    }
    if h.unique_id.is_some_and(|v| v.len() > MAX_UNIQUE_ID_LEN) {
        return Err(EmitError::UniqueIdTooLong);
    }
    if h.raw.iter().any(|t| t.kind == PP2_TYPE_CRC32C) {
        return Err(EmitError::RawCrc32c);
    }
    let addrs = h.addrs.map(|(src, dst)| match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => IpPair::V4(s, d),
        (s, d) => IpPair::V6(as_v6(s), as_v6(d)),
    });
    let (fam, addr_len) = match addrs {
        None => (FAM_UNSPEC, 0),
        Some(IpPair::V4(..)) => (FAM_TCP4, INET_ADDR_LEN),
        Some(IpPair::V6(..)) => (FAM_TCP6, INET6_ADDR_LEN),
    };

    let tlv_len = |value: &[u8]| TLV_HEADER_LEN.checked_add(value.len());
    let mut len = Some(addr_len);
    if h.crc32c {
        len = len.and_then(|l| l.checked_add(TLV_HEADER_LEN + CRC32C_VALUE_LEN));
    }
    for value in typed.iter().filter_map(|(_, v)| *v) {
        len = len.and_then(|l| l.checked_add(tlv_len(value)?));
    }
    for t in h.raw {
        len = len.and_then(|l| l.checked_add(tlv_len(t.value)?));
    }
    let len = len.filter(|&l| l <= MAX_V2_LEN).ok_or(EmitError::TooLong)?;
    let len_field = u16::try_from(len).map_err(|_| EmitError::TooLong)?;
    if out.len() < FIXED_LEN.saturating_add(len) {
        return Err(EmitError::BufferTooSmall);
    }

    let cmd = match h.command {
        Command::Local => CMD_LOCAL,
        Command::Proxy => CMD_PROXY,
    };
    let mut w = Out::new(out);
    w.put(&SIGNATURE)?;
    w.put(&[VERSION_2 << 4 | cmd, fam])?;
    w.put(&len_field.to_be_bytes())?;
    match addrs {
        None => {}
        Some(IpPair::V4(s, d)) => {
            w.put(&s.ip().octets())?;
            w.put(&d.ip().octets())?;
            w.put(&s.port().to_be_bytes())?;
            w.put(&d.port().to_be_bytes())?;
        }
        Some(IpPair::V6((sip, sport), (dip, dport))) => {
            w.put(&sip.octets())?;
            w.put(&dip.octets())?;
            w.put(&sport.to_be_bytes())?;
            w.put(&dport.to_be_bytes())?;
        }
    }
    let tlv_start = w.pos();
    let crc_at = if h.crc32c {
        w.put(&[PP2_TYPE_CRC32C])?;
        w.put(&(CRC32C_VALUE_LEN as u16).to_be_bytes())?;
        let at = w.pos();
        w.put(&[0; CRC32C_VALUE_LEN])?;
        Some(at)
    } else {
        None
    };
    for (kind, value) in typed.iter().filter_map(|&(k, v)| Some((k, v?))) {
        put_tlv(&mut w, kind, value)?;
    }
    for t in h.raw {
        put_tlv(&mut w, t.kind, t.value)?;
    }
    let area = w.written().get(tlv_start..).unwrap_or(&[]);
    validate_tlvs(area).map_err(EmitError::InvalidTlv)?;
    if let Some(at) = crc_at {
        // The checksum field is still zero, so this is the CRC the receiver recomputes.
        let crc = crc32c::crc32c(w.written());
        let end = at.saturating_add(CRC32C_VALUE_LEN);
        w.written_mut()
            .get_mut(at..end)
            .ok_or(EmitError::BufferTooSmall)?
            .copy_from_slice(&crc.to_be_bytes());
    }
    Ok(w.pos())
}

enum IpPair {
    V4(SocketAddrV4, SocketAddrV4),
    V6((Ipv6Addr, u16), (Ipv6Addr, u16)),
}

fn as_v6(a: SocketAddr) -> (Ipv6Addr, u16) {
    match a.ip() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), a.port()),
        IpAddr::V6(v6) => (v6, a.port()),
    }
}

fn put_tlv(w: &mut Out<'_>, kind: u8, value: &[u8]) -> Result<(), EmitError> {
    let len = u16::try_from(value.len()).map_err(|_| EmitError::TooLong)?;
    w.put(&[kind])?;
    w.put(&len.to_be_bytes())?;
    Ok(w.put(value)?)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::wire::proxy::{SslSub, Tlv};

    /// The 12 signature bytes, for building headers by hand.
    const SIG: [u8; 12] = SIGNATURE;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> ProxyHeader<'_> {
        match parse(buf) {
            Parsed::Complete(h, n) => {
                assert_eq!(n, h.len);
                h
            }
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    /// Signature + ver/cmd + fam + big-endian length of `body` + `body`.
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = SIG.to_vec();
        b.extend_from_slice(&[ver_cmd, fam]);
        b.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    /// An INET address block: 192.0.2.1:1234 -> 198.51.100.7:443.
    const INET_BLOCK: [u8; 12] = [
        192, 0, 2, 1, // src addr
        198, 51, 100, 7, // dst addr
        0x04, 0xd2, // src port 1234
        0x01, 0xbb, // dst port 443
    ];

    fn assert_prefixes_need_more(buf: &[u8]) {
        for n in 0..buf.len() {
            assert_eq!(parse(&buf[..n]), Parsed::NeedMore, "prefix {n}");
        }
    }

    #[test]
    fn local_with_a_non_empty_block_is_skipped() {
        #[rustfmt::skip]
        let buf = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x20,                   // version 2, command LOCAL
            0x11,                   // TCP over IPv4
            0x00, 0x0f,             // len 15: an address block and 3 more bytes
            10, 0, 0, 1,            // src addr (ignored)
            10, 0, 0, 2,            // dst addr (ignored)
            0x00, 0x50, 0x00, 0x51, // ports (ignored)
            0x02, 0xff, 0xff,       // a TLV header claiming 65535 bytes: never read for LOCAL
            0x16, 0x03, 0x01,       // the client's ClientHello begins
        ];
        let h = complete(&buf);
        assert_eq!(h.command, Command::Local);
        assert_eq!(h.family, Family::Inet);
        assert_eq!(h.addrs, Addresses::None);
        assert!(h.tlvs.is_empty());
        assert_eq!(h.len, 31);
        assert_prefixes_need_more(&buf[..31]);

        // LOCAL with a block shorter than its family's addresses is fine too.
        let short = v2(0x20, 0x21, &[1, 2, 3]);
        assert_eq!(complete(&short).len, 19);
    }

    #[test]
    fn declared_length_0xffff_is_invalid_at_once() {
        #[rustfmt::skip]
        let buf = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,       // version 2, PROXY
            0x11,       // TCP4
            0xff, 0xff, // len 65535 > MAX_V2_LEN
        ];
        assert_eq!(parse(&buf), Parsed::Invalid(ProxyError::V2TooLong));
        assert_eq!(parse(&buf[..15]), Parsed::NeedMore);
        // The cap itself is allowed (and waited for).
        let mut at_cap = buf;
        at_cap[14..16].copy_from_slice(&(MAX_V2_LEN as u16).to_be_bytes());
        assert_eq!(parse(&at_cap), Parsed::NeedMore);
        at_cap[14..16].copy_from_slice(&(MAX_V2_LEN as u16 + 1).to_be_bytes());
        assert_eq!(parse(&at_cap), Parsed::Invalid(ProxyError::V2TooLong));
    }

    #[test]
    fn bad_version_command_family_fail_on_their_byte() {
        #[rustfmt::skip]
        let bad_version = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x11, // version 1 (the binary format only exists as 2), PROXY
        ];
        assert_eq!(
            parse(&bad_version),
            Parsed::Invalid(ProxyError::V2BadVersion)
        );
        for vc in [0x01, 0x31, 0xf1] {
            let mut b = bad_version;
            b[12] = vc;
            assert_eq!(
                parse(&b),
                Parsed::Invalid(ProxyError::V2BadVersion),
                "{vc:#x}"
            );
        }
        #[rustfmt::skip]
        let bad_command = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x22, // version 2, command 2 (undefined)
        ];
        assert_eq!(
            parse(&bad_command),
            Parsed::Invalid(ProxyError::V2BadCommand)
        );
        #[rustfmt::skip]
        let bad_family = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21, // version 2, PROXY
            0x13, // AF_INET with transport 3 (undefined)
        ];
        assert_eq!(parse(&bad_family), Parsed::Invalid(ProxyError::V2BadFamily));
        for fam in [0x01, 0x02, 0x10, 0x20, 0x30, 0x41, 0xff] {
            let mut b = bad_family;
            b[13] = fam;
            assert_eq!(
                parse(&b),
                Parsed::Invalid(ProxyError::V2BadFamily),
                "{fam:#x}"
            );
        }
        for fam in [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32] {
            let mut b = bad_family;
            b[13] = fam;
            assert_eq!(parse(&b), Parsed::NeedMore, "{fam:#x}");
        }
    }

    #[test]
    fn address_block_shorter_than_family_is_invalid_at_once() {
        #[rustfmt::skip]
        let buf = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,       // version 2, PROXY
            0x11,       // TCP4: needs 12 address bytes
            0x00, 0x0b, // len 11
        ];
        assert_eq!(parse(&buf), Parsed::Invalid(ProxyError::V2AddressTooShort));
        for (fam, need) in [(0x21u8, INET6_ADDR_LEN), (0x31, UNIX_ADDR_LEN)] {
            let mut b = buf;
            b[13] = fam;
            b[14..16].copy_from_slice(&(need as u16 - 1).to_be_bytes());
            assert_eq!(parse(&b), Parsed::Invalid(ProxyError::V2AddressTooShort));
            b[14..16].copy_from_slice(&(need as u16).to_be_bytes());
            assert_eq!(parse(&b), Parsed::NeedMore);
        }
    }

    #[test]
    fn inet_and_udp() {
        let buf = v2(0x21, 0x12, &INET_BLOCK);
        let h = complete(&buf);
        assert_eq!((h.family, h.transport), (Family::Inet, Transport::Dgram));
        assert_eq!(
            h.addrs,
            Addresses::Inet {
                src: sa("192.0.2.1:1234"),
                dst: sa("198.51.100.7:443")
            }
        );
    }

    #[test]
    fn ipv6_tcp6() {
        #[rustfmt::skip]
        let buf = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,       // version 2, PROXY
            0x21,       // TCP over IPv6
            0x00, 0x24, // len 36
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src 2001:db8::1
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,             // dst ::1
            0xc3, 0x50, // src port 50000
            0x20, 0xfb, // dst port 8443
        ];
        let h = complete(&buf);
        assert_eq!((h.family, h.transport), (Family::Inet6, Transport::Stream));
        assert_eq!(
            h.addrs,
            Addresses::Inet {
                src: sa("[2001:db8::1]:50000"),
                dst: sa("[::1]:8443")
            }
        );
        assert_eq!(h.len, 52);
        assert_prefixes_need_more(&buf);
    }

    #[test]
    fn unix_paths_are_trimmed() {
        let mut block = [0u8; UNIX_ADDR_LEN];
        block[..11].copy_from_slice(b"/run/a.sock"); // src path, NUL padded to 108
        block[108..119].copy_from_slice(b"/run/b.sock"); // dst path, NUL padded to 108
        let buf = v2(0x21, 0x31, &block); // version 2 PROXY, UNIX stream
        let h = complete(&buf);
        assert_eq!((h.family, h.transport), (Family::Unix, Transport::Stream));
        assert_eq!(
            h.addrs,
            Addresses::Unix {
                src: b"/run/a.sock",
                dst: b"/run/b.sock"
            }
        );
        assert_eq!(h.src(), None);
        assert_eq!(h.len, 16 + 216);
        // A full 108-byte path has no NUL to trim.
        let block = [b'x'; UNIX_ADDR_LEN];
        let buf = v2(0x21, 0x32, &block);
        let h = complete(&buf);
        assert_eq!(h.transport, Transport::Dgram);
        assert_eq!(
            h.addrs,
            Addresses::Unix {
                src: &[b'x'; 108],
                dst: &[b'x'; 108]
            }
        );
    }

    #[test]
    fn proxy_unspec_skips_the_block() {
        let buf = v2(0x21, 0x00, &[0xde, 0xad, 0xbe, 0xef]); // PROXY, UNSPEC, 4 opaque bytes
        let h = complete(&buf);
        assert_eq!((h.command, h.family), (Command::Proxy, Family::Unspec));
        assert_eq!(h.addrs, Addresses::None);
        assert!(h.tlvs.is_empty());
        assert_eq!(h.len, 20);
    }

    #[test]
    fn tlv_overrun_is_invalid() {
        #[rustfmt::skip]
        let buf = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,       // version 2, PROXY
            0x11,       // TCP4
            0x00, 0x11, // len 17: 12 address bytes + 5 TLV bytes
            192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb, // addresses
            0x02,       // TLV type AUTHORITY
            0x00, 0x10, // TLV length 16, but only 2 bytes remain in the header
            b'a', b'b', // value (truncated)
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x00, 0x00, 0x00, // the ClientHello: must not be read as TLV data
        ];
        assert_eq!(parse(&buf), Parsed::Invalid(ProxyError::V2TlvOverrun));
        assert_prefixes_need_more(&buf[..33]);
        // A dangling TLV header (1 or 2 bytes) is an overrun too.
        for tail in [&[0x04][..], &[0x04, 0x00]] {
            let mut body = INET_BLOCK.to_vec();
            body.extend_from_slice(tail);
            assert_eq!(
                parse(&v2(0x21, 0x11, &body)),
                Parsed::Invalid(ProxyError::V2TlvOverrun)
            );
        }
    }

    #[test]
    fn ssl_tlvs() {
        #[rustfmt::skip]
        let ssl_overrun = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,       // version 2, PROXY
            0x11,       // TCP4
            0x00, 0x1b, // len 27: 12 address bytes + 15 TLV bytes
            192, 0, 2, 1, 198, 51, 100, 7, 0x04, 0xd2, 0x01, 0xbb, // addresses
            0x20,       // TLV type SSL
            0x00, 0x0c, // TLV length 12 (fits the header)
            0x07,       // client: SSL | CERT_CONN | CERT_SESS
            0, 0, 0, 0, // verify: 0 (ok)
            0x22,       // sub-TLV CN
            0x00, 0x09, // sub-TLV length 9, but only 4 bytes remain in the SSL TLV
            b'l', b'a', b'b', b'-', // value (truncated)
        ];
        assert_eq!(
            parse(&ssl_overrun),
            Parsed::Invalid(ProxyError::V2SslSubTlvOverrun)
        );

        // SSL TLV shorter than client(1) + verify(4).
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x20, 0x00, 0x03, 0x01, 0x00, 0x00]);
        assert_eq!(
            parse(&v2(0x21, 0x11, &body)),
            Parsed::Invalid(ProxyError::V2SslTooShort)
        );

        // A well-formed one with a known and an unknown sub-TLV.
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[
            0x20, 0x00, 0x0f, // SSL, length 15
            0x01, // client: SSL
            0x00, 0x00, 0x00, 0x01, // verify: 1 (failed)
            0x21, 0x00, 0x03, b'1', b'.', b'3', // VERSION "1.3"
            0x28, 0x00, 0x01, 0xaa, // sub-type 0x28 (not one of ours)
        ]);
        let buf = v2(0x21, 0x11, &body);
        let h = complete(&buf);
        let ssl = h.tlvs.ssl().unwrap();
        assert_eq!((ssl.client, ssl.verify), (Ssl::CLIENT_SSL, 1));
        assert_eq!(ssl.version(), Some(&b"1.3"[..]));
        let subs: Vec<_> = ssl.subs().collect();
        assert_eq!(
            subs,
            [SslSub::Version(b"1.3"), SslSub::Other(0x28, &[0xaa])]
        );
    }

    /// INET + one CRC32C TLV holding `value`.
    fn with_crc(value: [u8; 4]) -> Vec<u8> {
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x03, 0x00, 0x04]); // CRC32C, length 4
        body.extend_from_slice(&value);
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0x00, 0x00]); // NOOP padding after it
        v2(0x21, 0x11, &body)
    }

    #[test]
    fn crc32c_verified() {
        let zeroed = with_crc([0; 4]);
        let crc = crc32c::crc32c(&zeroed);
        assert_ne!(crc, 0);
        let good = with_crc(crc.to_be_bytes());
        let h = complete(&good);
        assert_eq!(h.crc32c, Some(crc));
        assert_eq!(h.tlvs.iter().next(), Some(Tlv::Crc32c(crc)));
        assert_prefixes_need_more(&good);

        // Mismatch: the value left at zero, or any bit flipped anywhere in the header.
        assert_eq!(
            parse(&zeroed),
            Parsed::Invalid(ProxyError::V2Crc32cMismatch)
        );
        let mut flipped = good.clone();
        flipped[17] ^= 0x01; // src address
        assert_eq!(
            parse(&flipped),
            Parsed::Invalid(ProxyError::V2Crc32cMismatch)
        );
        let mut flipped = good.clone();
        flipped[good.len() - 1] ^= 0x01; // the NOOP value after the CRC
        assert_eq!(
            parse(&flipped),
            Parsed::Invalid(ProxyError::V2Crc32cMismatch)
        );
    }

    #[test]
    fn crc32c_of_a_real_header_fails_when_changed() {
        let buf =
            include_bytes!("../../../fixtures/lb-haproxy-2.6-v2-alloptions-passthrough-curl.bin");
        assert!(matches!(parse(buf), Parsed::Complete(..)));
        let mut m = buf.to_vec();
        m[40] ^= 0x20; // a letter of UNIQUE_ID changes case
        assert_eq!(parse(&m), Parsed::Invalid(ProxyError::V2Crc32cMismatch));
    }

    #[test]
    fn crc32c_length_and_duplicates() {
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x03, 0x00, 0x03, 1, 2, 3]); // CRC32C with 3 bytes
        assert_eq!(
            parse(&v2(0x21, 0x11, &body)),
            Parsed::Invalid(ProxyError::V2Crc32cLength)
        );
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4]); // CRC32C
        body.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4]); // and another
        assert_eq!(
            parse(&v2(0x21, 0x11, &body)),
            Parsed::Invalid(ProxyError::V2Crc32cDuplicate)
        );
    }

    #[test]
    fn unique_id_cap() {
        for (n, ok) in [(128usize, true), (129, false)] {
            let mut body = INET_BLOCK.to_vec();
            body.push(0x05); // UNIQUE_ID
            body.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
            body.extend(std::iter::repeat_n(b'u', n));
            let buf = v2(0x21, 0x11, &body);
            if ok {
                assert_eq!(complete(&buf).tlvs.unique_id().map(<[u8]>::len), Some(128));
            } else {
                assert_eq!(parse(&buf), Parsed::Invalid(ProxyError::V2UniqueIdTooLong));
            }
        }
    }

    #[test]
    fn other_tlv_types() {
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // NOOP
        body.extend_from_slice(&[0x30, 0x00, 0x03, b'n', b's', b'1']); // NETNS "ns1"
        body.extend_from_slice(&[0xea, 0x00, 0x00]); // custom 0xEA, empty
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN "h2"
        let buf = v2(0x21, 0x11, &body);
        let h = complete(&buf);
        let all: Vec<_> = h.tlvs.iter().collect();
        assert_eq!(
            all,
            [
                Tlv::Noop(&[0]),
                Tlv::Netns(b"ns1"),
                Tlv::Unknown(0xea, b""),
                Tlv::Alpn(b"h2")
            ]
        );
        assert_eq!(h.tlvs.netns(), Some(&b"ns1"[..]));
        assert_eq!(h.tlvs.raw(), &body[12..]);
    }

    fn out(command: Command, addrs: Option<(SocketAddr, SocketAddr)>) -> V2Out<'static> {
        V2Out {
            command,
            addrs,
            authority: None,
            alpn: None,
            unique_id: None,
            raw: &[],
            crc32c: false,
        }
    }

    fn emit_vec(h: &V2Out<'_>) -> Vec<u8> {
        let mut buf = [0u8; 600];
        let n = emit(h, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn emit_local() {
        let bytes = emit_vec(&out(Command::Local, None));
        assert_eq!(
            bytes,
            include_bytes!("../../../fixtures/lb-haproxy-2.6-v2-healthcheck-local.bin")
        );
        let h = complete(&bytes);
        assert_eq!(
            (h.command, h.family, h.addrs),
            (Command::Local, Family::Unspec, Addresses::None)
        );
    }

    #[test]
    fn emit_reproduces_a_real_header() {
        let fixture = include_bytes!("../../../fixtures/lb-haproxy-2.6-v2-tcp4-curl.bin");
        let h = out(
            Command::Proxy,
            Some((sa("127.0.0.1:49234"), sa("127.0.0.1:20010"))),
        );
        assert_eq!(emit_vec(&h), &fixture[..28]);

        // haproxy's TLS-terminated header, CRC32C included, byte for byte.
        let fixture =
            include_bytes!("../../../fixtures/lb-haproxy-2.6-v2-tls-terminated-http1.bin");
        let parsed = complete(fixture);
        let ssl = parsed.tlvs.get(PP2_TYPE_SSL).unwrap();
        let raw = [RawTlv {
            kind: PP2_TYPE_SSL,
            value: ssl,
        }];
        let h = V2Out {
            command: Command::Proxy,
            addrs: Some((parsed.src().unwrap(), parsed.dst().unwrap())),
            authority: parsed.tlvs.authority(),
            alpn: parsed.tlvs.alpn(),
            unique_id: parsed.tlvs.unique_id(),
            raw: &raw,
            crc32c: true,
        };
        assert_eq!(emit_vec(&h), &fixture[..194]);
    }

    #[test]
    fn emit_round_trips() {
        let raw = [RawTlv {
            kind: 0xea,
            value: b"\x01vpce-0a1b2c3d4e5f67890",
        }];
        let cases = [
            (
                Some(("192.0.2.1:1234", "198.51.100.7:443")),
                false,
                Family::Inet,
            ),
            (
                Some(("192.0.2.1:1234", "198.51.100.7:443")),
                true,
                Family::Inet,
            ),
            (Some(("[2001:db8::1]:1", "[::1]:2")), true, Family::Inet6),
            (Some(("[2001:db8::1]:1", "[::1]:2")), false, Family::Inet6),
            // A v4/v6 mix: INET6 with the IPv4 side v4-mapped.
            (
                Some(("192.0.2.1:1234", "[2001:db8::2]:443")),
                true,
                Family::Inet6,
            ),
            (
                Some(("[2001:db8::2]:443", "192.0.2.1:1234")),
                false,
                Family::Inet6,
            ),
        ];
        for (addrs, crc, family) in cases {
            let addrs = addrs.map(|(s, d)| (sa(s), sa(d)));
            let h = V2Out {
                command: Command::Proxy,
                addrs,
                authority: Some(b"example.test"),
                alpn: Some(b"h2"),
                unique_id: Some(b"req-42"),
                raw: &raw,
                crc32c: crc,
            };
            let bytes = emit_vec(&h);
            let p = complete(&bytes);
            assert_eq!(p.len, bytes.len());
            assert_eq!((p.version, p.command), (Version::V2, Command::Proxy));
            assert_eq!((p.family, p.transport), (family, Transport::Stream));
            let (s, d) = addrs.unwrap();
            let mapped = |a: SocketAddr| match (family, a) {
                (Family::Inet6, SocketAddr::V4(v4)) => {
                    SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
                }
                _ => a,
            };
            assert_eq!(
                p.addrs,
                Addresses::Inet {
                    src: mapped(s),
                    dst: mapped(d)
                }
            );
            assert_eq!(p.tlvs.authority(), Some(&b"example.test"[..]));
            assert_eq!(p.tlvs.alpn(), Some(&b"h2"[..]));
            assert_eq!(p.tlvs.unique_id(), Some(&b"req-42"[..]));
            assert_eq!(p.tlvs.get(0xea), Some(raw[0].value));
            assert_eq!(p.crc32c.is_some(), crc);
            if let Some(c) = p.crc32c {
                assert_eq!(p.tlvs.iter().next(), Some(Tlv::Crc32c(c)));
            }
            assert_prefixes_need_more(&bytes);
        }
        // PROXY without addresses: UNSPEC.
        let bytes = emit_vec(&out(Command::Proxy, None));
        let p = complete(&bytes);
        assert_eq!(
            (p.command, p.family, p.len),
            (Command::Proxy, Family::Unspec, 16)
        );
    }

    #[test]
    fn emit_buffer_too_small() {
        let raw = [RawTlv {
            kind: 0xea,
            value: b"abc",
        }];
        let h = V2Out {
            authority: Some(b"example.test"),
            raw: &raw,
            crc32c: true,
            ..out(Command::Proxy, Some((sa("192.0.2.1:1"), sa("192.0.2.2:2"))))
        };
        let mut buf = [0u8; 128];
        let n = emit(&h, &mut buf).unwrap();
        for short in 0..n {
            assert_eq!(
                emit(&h, &mut buf[..short]),
                Err(EmitError::BufferTooSmall),
                "{short}"
            );
        }
    }

    #[test]
    fn emit_refuses_what_would_not_parse_back() {
        let inet = Some((sa("192.0.2.1:1"), sa("192.0.2.2:2")));
        let mut buf = [0u8; 8192];
        let local_addrs = out(Command::Local, inet);
        assert_eq!(
            emit(&local_addrs, &mut buf),
            Err(EmitError::LocalWithAddresses)
        );
        let local_tlv = V2Out {
            authority: Some(b"x"),
            ..out(Command::Local, None)
        };
        assert_eq!(
            emit(&local_tlv, &mut buf),
            Err(EmitError::TlvsWithoutAddresses)
        );
        let unspec_crc = V2Out {
            crc32c: true,
            ..out(Command::Proxy, None)
        };
        assert_eq!(
            emit(&unspec_crc, &mut buf),
            Err(EmitError::TlvsWithoutAddresses)
        );
        let uid = [b'u'; 129];
        let long_uid = V2Out {
            unique_id: Some(&uid),
            ..out(Command::Proxy, inet)
        };
        assert_eq!(emit(&long_uid, &mut buf), Err(EmitError::UniqueIdTooLong));
        let raw = [RawTlv {
            kind: PP2_TYPE_CRC32C,
            value: &[0; 4],
        }];
        let raw_crc = V2Out {
            raw: &raw,
            ..out(Command::Proxy, inet)
        };
        assert_eq!(emit(&raw_crc, &mut buf), Err(EmitError::RawCrc32c));
        let raw = [RawTlv {
            kind: PP2_TYPE_SSL,
            value: &[1, 0],
        }];
        let bad_ssl = V2Out {
            raw: &raw,
            ..out(Command::Proxy, inet)
        };
        assert_eq!(
            emit(&bad_ssl, &mut buf),
            Err(EmitError::InvalidTlv(ProxyError::V2SslTooShort))
        );
        let big = [0u8; MAX_V2_LEN];
        let raw = [RawTlv {
            kind: 0xe0,
            value: &big,
        }];
        let too_long = V2Out {
            raw: &raw,
            ..out(Command::Proxy, inet)
        };
        assert_eq!(emit(&too_long, &mut buf), Err(EmitError::TooLong));
        let huge = vec![0u8; 70_000];
        let raw = [RawTlv {
            kind: 0xe0,
            value: &huge,
        }];
        let too_long = V2Out {
            raw: &raw,
            ..out(Command::Proxy, inet)
        };
        assert_eq!(
            emit(&too_long, &mut vec![0u8; 80_000]),
            Err(EmitError::TooLong)
        );
    }
}
