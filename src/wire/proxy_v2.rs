//! PROXY protocol version 2: the binary header (12-byte signature, version/command,
//! family/transport, 16-bit length, address block, TLVs), parsed and emitted.
//!
//! For: receiving v2 from load balancers (haproxy `send-proxy-v2`, AWS NLB, ...) and
//! sending it upstream. Must never allocate, panic, trust the length field beyond
//! [`MAX_V2_LEN`], read a TLV it has not bounds-checked, or accept a header whose CRC32C
//! does not match. Everything is validated here, once, so that reading the result cannot fail.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::crc32c;
pub use super::proxy::EmitError;
use super::proxy::{
    Addresses, Command, Family, Out, ProxyError, ProxyHeader, Ssl, Tlvs, Transport, Version,
};
use super::reader::Reader;
use super::Parsed;

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

pub const PP2_TYPE_ALPN: u8 = 0x01;
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_CRC32C: u8 = 0x03;
pub const PP2_TYPE_NOOP: u8 = 0x04;
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
pub const PP2_TYPE_NETNS: u8 = 0x30;

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
    w.put(value)
}
