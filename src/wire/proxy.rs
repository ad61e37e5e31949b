//! The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the types both
//! versions parse into, [`detect`] to tell which (if any) a connection starts with, and
//! [`parse`] to dispatch to [`super::proxy_v1`] or [`super::proxy_v2`].
//!
//! For: the event loop's `ExpectProxyProtocol` phase, `sluice inspect` and the fuzzers.
//! Must never do I/O, allocate, panic, or trust a length from the wire; a value of these
//! types borrows the caller's buffer and was fully validated when it was made, so reading
//! it (iterating TLVs included) cannot fail.
use core::fmt;
use std::net::SocketAddr;

use super::proxy_v2::{
    PP2_SUBTYPE_SSL_CIPHER, PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_KEY_ALG, PP2_SUBTYPE_SSL_SIG_ALG,
    PP2_SUBTYPE_SSL_VERSION, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_NETNS,
    PP2_TYPE_NOOP, PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID, SIGNATURE,
};
use super::reader::Reader;
use super::Parsed;

/// The v1 signature: a line starting with these six bytes.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the first bytes of a connection say about a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The 12-byte v2 signature is present.
    V2,
    /// `"PROXY "` is present.
    V1,
    /// The bytes differ from both signatures: whatever this is, it is not a PROXY header.
    NoHeader,
    /// The bytes so far are a strict prefix of a signature.
    NeedMore,
}

/// Where `buf` stands against one signature.
#[derive(PartialEq, Eq)]
enum Prefix {
    Full,
    Partial,
    Differs,
}

fn against(buf: &[u8], sig: &[u8]) -> Prefix {
    if buf.starts_with(sig) {
        Prefix::Full
    } else if sig.starts_with(buf) {
        Prefix::Partial
    } else {
        Prefix::Differs
    }
}

/// Tells from as few bytes as possible whether `buf` starts with a v1 or v2 header.
///
/// `NoHeader` as soon as one byte rules out both signatures (a TLS record's first byte
/// 0x16 does at once); `NeedMore` only while `buf` is a strict prefix of one of them.
pub fn detect(buf: &[u8]) -> Detected {
    let v2 = against(buf, &SIGNATURE);
    let v1 = against(buf, V1_PREFIX);
    if v2 == Prefix::Full {
        Detected::V2
    } else if v1 == Prefix::Full {
        Detected::V1
    } else if v2 == Prefix::Partial || v1 == Prefix::Partial {
        Detected::NeedMore
    } else {
        Detected::NoHeader
    }
}

/// Detects the version and parses the header; bytes that are no PROXY header at all are
/// `Invalid(ProxyError::NotProxy)`.
pub fn parse(buf: &[u8]) -> Parsed<ProxyHeader<'_>, ProxyError> {
    match detect(buf) {
        Detected::V2 => super::proxy_v2::parse(buf),
        Detected::V1 => super::proxy_v1::parse(buf),
        Detected::NeedMore => Parsed::NeedMore,
        Detected::NoHeader => Parsed::Invalid(ProxyError::NotProxy),
    }
}

/// The protocol version a header was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// v2's command. v1 has none; its headers are reported as `Proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The addresses are the original client's.
    Proxy,
    /// The sender speaks for itself (health checks): use the real socket endpoints.
    Local,
}

/// The address family the header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
    Unix,
    /// v2 `AF_UNSPEC`, or v1 `UNKNOWN`.
    Unspec,
}

/// The transport protocol the header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stream,
    Dgram,
    /// v2 `UNSPEC`, or v1 `UNKNOWN`.
    Unspec,
}

/// The original endpoints carried by the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses<'a> {
    /// LOCAL, UNSPEC or v1 UNKNOWN: the receiver uses the real socket endpoints.
    None,
    /// IPv4 (`SocketAddr::V4`) or IPv6 (`SocketAddr::V6`) endpoints.
    Inet { src: SocketAddr, dst: SocketAddr },
    /// Unix socket paths: the 108-byte v2 fields with trailing NULs trimmed.
    Unix { src: &'a [u8], dst: &'a [u8] },
}

/// A complete, validated PROXY header, borrowing the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader<'a> {
    pub version: Version,
    pub command: Command,
    pub family: Family,
    pub transport: Transport,
    pub addrs: Addresses<'a>,
    pub tlvs: Tlvs<'a>,
    /// The CRC32C TLV's value when one was present; a mismatch is never `Complete`.
    pub crc32c: Option<u32>,
    /// The header's length on the wire: the v1 line with its CRLF, or 16 + the v2 length field.
    pub len: usize,
}

impl ProxyHeader<'_> {
    /// The original source as an IP endpoint, if the header carries one.
    pub fn src(&self) -> Option<SocketAddr> {
        match self.addrs {
            Addresses::Inet { src, .. } => Some(src),
            _ => None,
        }
    }

    /// The original destination as an IP endpoint, if the header carries one.
    pub fn dst(&self) -> Option<SocketAddr> {
        match self.addrs {
            Addresses::Inet { dst, .. } => Some(dst),
            _ => None,
        }
    }
}

/// The v2 TLV area after the addresses (empty for v1, LOCAL and UNSPEC), already
/// validated: every TLV and SSL sub-TLV fits, and the typed ones have legal sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tlvs<'a> {
    raw: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// No TLVs.
    pub const EMPTY: Tlvs<'static> = Tlvs { raw: &[] };

    /// Wraps a TLV area that [`super::proxy_v2::validate_tlvs`] accepted.
    pub(crate) fn validated(raw: &'a [u8]) -> Self {
        Tlvs { raw }
    }

    /// Every TLV in wire order.
    pub fn iter(&self) -> impl Iterator<Item = Tlv<'a>> {
        TlvIter {
            r: Reader::new(self.raw),
        }
    }

    /// Every TLV as (type, value), in header order, without interpretation: for passing
    /// received TLVs on to an upstream.
    pub fn raw_iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> {
        RawIter {
            r: Reader::new(self.raw),
        }
    }

    /// The first AUTHORITY (0x02) value: the host name the client asked for (SNI).
    pub fn authority(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|t| match t {
            Tlv::Authority(v) => Some(v),
            _ => None,
        })
    }

    /// The first ALPN (0x01) value: the one protocol that was negotiated.
    pub fn alpn(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|t| match t {
            Tlv::Alpn(v) => Some(v),
            _ => None,
        })
    }

    /// The first UNIQUE_ID (0x05) value (at most 128 bytes).
    pub fn unique_id(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|t| match t {
            Tlv::UniqueId(v) => Some(v),
            _ => None,
        })
    }

    /// The first SSL (0x20) TLV.
    pub fn ssl(&self) -> Option<Ssl<'a>> {
        self.iter().find_map(|t| match t {
            Tlv::Ssl(s) => Some(s),
            _ => None,
        })
    }

    /// The first NETNS (0x30) value.
    pub fn netns(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|t| match t {
            Tlv::Netns(v) => Some(v),
            _ => None,
        })
    }

    /// The value of the first TLV of type `kind`, whatever the type.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        RawIter {
            r: Reader::new(self.raw),
        }
        .find_map(|(k, v)| (k == kind).then_some(v))
    }

    /// The TLV area as it was on the wire.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True when there are no TLVs.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// One TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlv<'a> {
    Alpn(&'a [u8]),
    Authority(&'a [u8]),
    Crc32c(u32),
    Noop(&'a [u8]),
    UniqueId(&'a [u8]),
    Ssl(Ssl<'a>),
    Netns(&'a [u8]),
    /// Any other type (custom ones such as AWS's 0xEA included), with its raw value.
    Unknown(u8, &'a [u8]),
}

impl<'a> Tlv<'a> {
    /// Reads a TLV's value by its type. Values that could not have passed validation
    /// (a CRC32C not 4 bytes long, an SSL TLV shorter than 5) come back as `Unknown`.
    fn from_raw(kind: u8, value: &'a [u8]) -> Self {
        match kind {
            PP2_TYPE_ALPN => Tlv::Alpn(value),
            PP2_TYPE_AUTHORITY => Tlv::Authority(value),
            PP2_TYPE_CRC32C => match *value {
                [a, b, c, d] => Tlv::Crc32c(u32::from_be_bytes([a, b, c, d])),
                _ => Tlv::Unknown(kind, value),
            },
            PP2_TYPE_NOOP => Tlv::Noop(value),
            PP2_TYPE_UNIQUE_ID => Tlv::UniqueId(value),
            PP2_TYPE_SSL => match Ssl::from_value(value) {
                Some(ssl) => Tlv::Ssl(ssl),
                None => Tlv::Unknown(kind, value),
            },
            PP2_TYPE_NETNS => Tlv::Netns(value),
            other => Tlv::Unknown(other, value),
        }
    }
}

/// Walks type(1) length(2) value records; stops for good at the first one that does not fit.
struct RawIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for RawIter<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let mut r = self.r;
        let item = (|| {
            let kind = r.u8()?;
            let len = r.u16()?;
            Some((kind, r.take(usize::from(len))?))
        })();
        // On a record that does not fit, drop the rest so the iterator stays fused.
        self.r = if item.is_some() { r } else { Reader::new(&[]) };
        item
    }
}

struct TlvIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        let mut raw = RawIter { r: self.r };
        let item = raw.next();
        self.r = raw.r;
        item.map(|(k, v)| Tlv::from_raw(k, v))
    }
}

/// The SSL TLV (0x20): what the sender knows of the client's TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssl<'a> {
    /// Bit field: [`Ssl::CLIENT_SSL`], [`Ssl::CLIENT_CERT_CONN`], [`Ssl::CLIENT_CERT_SESS`].
    pub client: u8,
    /// 0 when the client presented a certificate and it was verified.
    pub verify: u32,
    subs: &'a [u8],
}

impl<'a> Ssl<'a> {
    /// The client connected over TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// The client sent a certificate on this connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// The client sent a certificate at least once in this TLS session.
    pub const CLIENT_CERT_SESS: u8 = 0x04;

    /// Splits an SSL TLV value into its fixed part and the sub-TLV area.
    pub(crate) fn from_value(value: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(value);
        let client = r.u8()?;
        let verify = r.u32()?;
        Some(Ssl {
            client,
            verify,
            subs: r.rest(),
        })
    }

    /// The sub-TLVs in wire order.
    pub fn subs(&self) -> impl Iterator<Item = SslSub<'a>> {
        RawIter {
            r: Reader::new(self.subs),
        }
        .map(|(k, v)| SslSub::from_raw(k, v))
    }

    /// The sub-TLV area as it was on the wire.
    pub fn raw_subs(&self) -> &'a [u8] {
        self.subs
    }

    /// The first VERSION sub-TLV, e.g. `TLSv1.3`.
    pub fn version(&self) -> Option<&'a [u8]> {
        self.subs().find_map(|s| match s {
            SslSub::Version(v) => Some(v),
            _ => None,
        })
    }

    /// The first CN sub-TLV: the client certificate's common name.
    pub fn cn(&self) -> Option<&'a [u8]> {
        self.subs().find_map(|s| match s {
            SslSub::Cn(v) => Some(v),
            _ => None,
        })
    }

    /// The first CIPHER sub-TLV.
    pub fn cipher(&self) -> Option<&'a [u8]> {
        self.subs().find_map(|s| match s {
            SslSub::Cipher(v) => Some(v),
            _ => None,
        })
    }
}

/// One sub-TLV of the SSL TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslSub<'a> {
    /// 0x21
    Version(&'a [u8]),
    /// 0x22
    Cn(&'a [u8]),
    /// 0x23
    Cipher(&'a [u8]),
    /// 0x24
    SigAlg(&'a [u8]),
    /// 0x25
    KeyAlg(&'a [u8]),
    /// Any other sub-type, with its raw value.
    Other(u8, &'a [u8]),
}

impl<'a> SslSub<'a> {
    fn from_raw(kind: u8, value: &'a [u8]) -> Self {
        match kind {
            PP2_SUBTYPE_SSL_VERSION => SslSub::Version(value),
            PP2_SUBTYPE_SSL_CN => SslSub::Cn(value),
            PP2_SUBTYPE_SSL_CIPHER => SslSub::Cipher(value),
            PP2_SUBTYPE_SSL_SIG_ALG => SslSub::SigAlg(value),
            PP2_SUBTYPE_SSL_KEY_ALG => SslSub::KeyAlg(value),
            other => SslSub::Other(other, value),
        }
    }
}

/// Why bytes can never become a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither signature: not a PROXY header at all.
    NotProxy,
    /// v1: no CRLF within the first 107 bytes.
    V1TooLong,
    /// v1: a byte that cannot appear in a v1 line (control, NUL, non-ASCII).
    V1BadByte,
    /// v1: a bare LF, or a CR not followed by LF.
    V1BadLineEnd,
    /// v1: fields not separated by exactly one space, or too few / too many of them.
    V1BadSyntax,
    /// v1: the protocol is not TCP4, TCP6 or UNKNOWN.
    V1BadProtocol,
    /// v1: an address that is not strict dotted-quad (TCP4) or IPv6 text (TCP6).
    V1BadAddress,
    /// v1: a port that is not decimal 0-65535 without leading zeros.
    V1BadPort,
    /// v2: the version nibble is not 2.
    V2BadVersion,
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    V2BadCommand,
    /// v2: the family/transport byte is not one the spec defines.
    V2BadFamily,
    /// v2: the length field exceeds [`super::proxy_v2::MAX_V2_LEN`].
    V2TooLong,
    /// v2: the length field is smaller than the family's address block.
    V2AddressTooShort,
    /// v2: a TLV runs past the end of the header.
    V2TlvOverrun,
    /// v2: a CRC32C TLV whose value is not exactly 4 bytes.
    V2Crc32cLength,
    /// v2: more than one CRC32C TLV.
    V2Crc32cDuplicate,
    /// v2: the CRC32C TLV does not match the header.
    V2Crc32cMismatch,
    /// v2: a UNIQUE_ID TLV longer than [`super::proxy_v2::MAX_UNIQUE_ID_LEN`].
    V2UniqueIdTooLong,
    /// v2: an SSL TLV shorter than its 5-byte fixed part.
    V2SslTooShort,
    /// v2: an SSL sub-TLV runs past the end of the SSL TLV.
    V2SslSubTlvOverrun,
}

impl ProxyError {
    /// Every variant, for tests and for metric registration.
    pub const ALL: [ProxyError; 20] = [
        ProxyError::NotProxy,
        ProxyError::V1TooLong,
        ProxyError::V1BadByte,
        ProxyError::V1BadLineEnd,
        ProxyError::V1BadSyntax,
        ProxyError::V1BadProtocol,
        ProxyError::V1BadAddress,
        ProxyError::V1BadPort,
        ProxyError::V2BadVersion,
        ProxyError::V2BadCommand,
        ProxyError::V2BadFamily,
        ProxyError::V2TooLong,
        ProxyError::V2AddressTooShort,
        ProxyError::V2TlvOverrun,
        ProxyError::V2Crc32cLength,
        ProxyError::V2Crc32cDuplicate,
        ProxyError::V2Crc32cMismatch,
        ProxyError::V2UniqueIdTooLong,
        ProxyError::V2SslTooShort,
        ProxyError::V2SslSubTlvOverrun,
    ];

    /// A stable snake_case label, for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyError::NotProxy => "not_proxy",
            ProxyError::V1TooLong => "v1_too_long",
            ProxyError::V1BadByte => "v1_bad_byte",
            ProxyError::V1BadLineEnd => "v1_bad_line_end",
            ProxyError::V1BadSyntax => "v1_bad_syntax",
            ProxyError::V1BadProtocol => "v1_bad_protocol",
            ProxyError::V1BadAddress => "v1_bad_address",
            ProxyError::V1BadPort => "v1_bad_port",
            ProxyError::V2BadVersion => "v2_bad_version",
            ProxyError::V2BadCommand => "v2_bad_command",
            ProxyError::V2BadFamily => "v2_bad_family",
            ProxyError::V2TooLong => "v2_too_long",
            ProxyError::V2AddressTooShort => "v2_address_too_short",
            ProxyError::V2TlvOverrun => "v2_tlv_overrun",
            ProxyError::V2Crc32cLength => "v2_crc32c_length",
            ProxyError::V2Crc32cDuplicate => "v2_crc32c_duplicate",
            ProxyError::V2Crc32cMismatch => "v2_crc32c_mismatch",
            ProxyError::V2UniqueIdTooLong => "v2_unique_id_too_long",
            ProxyError::V2SslTooShort => "v2_ssl_too_short",
            ProxyError::V2SslSubTlvOverrun => "v2_ssl_sub_tlv_overrun",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyError::NotProxy => "the connection does not start with a PROXY protocol header",
            ProxyError::V1TooLong => "the PROXY v1 line has no CRLF within its first 107 bytes",
            ProxyError::V1BadByte => "the PROXY v1 line contains a byte that cannot appear in it",
            ProxyError::V1BadLineEnd => "the PROXY v1 line ends with something other than CRLF",
            ProxyError::V1BadSyntax => {
                "the PROXY v1 line does not have its fields separated by single spaces"
            }
            ProxyError::V1BadProtocol => "the PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ProxyError::V1BadAddress => "a PROXY v1 address is malformed or of the wrong family",
            ProxyError::V1BadPort => "a PROXY v1 port is not a decimal number from 0 to 65535",
            ProxyError::V2BadVersion => "the PROXY v2 version nibble is not 2",
            ProxyError::V2BadCommand => "the PROXY v2 command is neither LOCAL nor PROXY",
            ProxyError::V2BadFamily => "the PROXY v2 address family or transport is unknown",
            ProxyError::V2TooLong => "the PROXY v2 length field exceeds sluice's limit",
            ProxyError::V2AddressTooShort => {
                "the PROXY v2 length is too small for the declared address family"
            }
            ProxyError::V2TlvOverrun => "a PROXY v2 TLV runs past the end of the header",
            ProxyError::V2Crc32cLength => "the PROXY v2 CRC32C TLV is not exactly 4 bytes long",
            ProxyError::V2Crc32cDuplicate => "the PROXY v2 header has more than one CRC32C TLV",
            ProxyError::V2Crc32cMismatch => "the PROXY v2 CRC32C checksum does not match",
            ProxyError::V2UniqueIdTooLong => "the PROXY v2 UNIQUE_ID TLV is longer than 128 bytes",
            ProxyError::V2SslTooShort => "the PROXY v2 SSL TLV is shorter than its fixed part",
            ProxyError::V2SslSubTlvOverrun => {
                "a PROXY v2 SSL sub-TLV runs past the end of the SSL TLV"
            }
        })
    }
}

impl std::error::Error for ProxyError {}

/// Why an emitter could not write a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The output buffer cannot hold the header; nothing useful was written.
    BufferTooSmall,
    /// The v2 header would exceed [`super::proxy_v2::MAX_V2_LEN`] after the fixed part.
    TooLong,
    /// The UNIQUE_ID value is longer than [`super::proxy_v2::MAX_UNIQUE_ID_LEN`].
    UniqueIdTooLong,
    /// A LOCAL header was asked to carry addresses (receivers must ignore them).
    LocalWithAddresses,
    /// TLVs (or CRC32C) were asked for without addresses: receivers skip the whole
    /// block of LOCAL and UNSPEC headers, so they would never be read.
    TlvsWithoutAddresses,
    /// A raw TLV of type CRC32C: set `crc32c` instead, the emitter computes it.
    RawCrc32c,
    /// A raw TLV that the parser would reject (e.g. a malformed SSL TLV).
    InvalidTlv(ProxyError),
}

impl EmitError {
    /// A stable snake_case label, for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            EmitError::BufferTooSmall => "emit_buffer_too_small",
            EmitError::TooLong => "emit_too_long",
            EmitError::UniqueIdTooLong => "emit_unique_id_too_long",
            EmitError::LocalWithAddresses => "emit_local_with_addresses",
            EmitError::TlvsWithoutAddresses => "emit_tlvs_without_addresses",
            EmitError::RawCrc32c => "emit_raw_crc32c",
            EmitError::InvalidTlv(_) => "emit_invalid_tlv",
        }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::BufferTooSmall => {
                f.write_str("the buffer is too small for the PROXY header")
            }
            EmitError::TooLong => f.write_str("the PROXY v2 header would exceed sluice's limit"),
            EmitError::UniqueIdTooLong => f.write_str("the UNIQUE_ID is longer than 128 bytes"),
            EmitError::LocalWithAddresses => f.write_str("a LOCAL header carries no addresses"),
            EmitError::TlvsWithoutAddresses => {
                f.write_str("TLVs need a PROXY header with addresses")
            }
            EmitError::RawCrc32c => {
                f.write_str("a CRC32C TLV cannot be given raw; the emitter computes it")
            }
            EmitError::InvalidTlv(e) => write!(f, "a raw TLV would not parse: {e}"),
        }
    }
}

impl std::error::Error for EmitError {}

pub(crate) use super::writer::Out;

impl From<super::writer::BufferTooSmall> for EmitError {
    fn from(_: super::writer::BufferTooSmall) -> Self {
        EmitError::BufferTooSmall
    }
}

/// Text formatting straight into the output buffer (for v1), without allocating.
impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!("../../fixtures/", $name, ".bin"))[..],
            )
        };
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> ProxyHeader<'_> {
        match parse(buf) {
            Parsed::Complete(h, n) => {
                assert_eq!(n, h.len, "consumed == header len");
                h
            }
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    /// Every strict prefix of the header is NeedMore (detect included), and the header
    /// alone, without what follows it, parses the same as the whole capture.
    fn assert_prefixes_need_more(name: &str, buf: &[u8], hdr_len: usize, version: Detected) {
        let sig_len = match version {
            Detected::V2 => SIGNATURE.len(),
            _ => V1_PREFIX.len(),
        };
        for n in 0..hdr_len {
            assert_eq!(
                parse(&buf[..n]),
                Parsed::NeedMore,
                "{name}: prefix of {n} bytes"
            );
            let want = if n < sig_len {
                Detected::NeedMore
            } else {
                version
            };
            assert_eq!(detect(&buf[..n]), want, "{name}: detect on {n} bytes");
        }
        assert_eq!(parse(&buf[..hdr_len]), parse(buf), "{name}: header alone");
    }

    fn inet(h: &ProxyHeader<'_>) -> (SocketAddr, SocketAddr) {
        match h.addrs {
            Addresses::Inet { src, dst } => (src, dst),
            other => panic!("expected Inet addresses, got {other:?}"),
        }
    }

    #[test]
    fn v1_fixtures_tcp() {
        let cases = [
            (
                fixture!("lb-haproxy-2.6-v1-tcp4-openssl"),
                Family::Inet,
                "127.0.0.1:37216",
                "127.0.0.1:20012",
                44,
            ),
            (
                fixture!("lb-haproxy-2.6-v1-tcp6-openssl"),
                Family::Inet6,
                "[::1]:47236",
                "[::1]:20013",
                32,
            ),
            (
                fixture!("lb-haproxy-2.6-v1-healthcheck"),
                Family::Inet,
                "127.0.0.1:39686",
                "127.0.0.1:20004",
                44,
            ),
            (
                fixture!("lb-nginx-1.22-stream-v1-tcp4-curl"),
                Family::Inet,
                "127.0.0.1:60380",
                "127.0.0.1:20020",
                44,
            ),
            (
                fixture!("lb-sniproxy-0.6.0-v1-tcp4-openssl"),
                Family::Inet,
                "127.0.0.1:46906",
                "127.0.0.1:20030",
                44,
            ),
        ];
        for ((name, buf), family, src, dst, len) in cases {
            let h = complete(buf);
            assert_eq!(h.version, Version::V1, "{name}");
            assert_eq!(h.command, Command::Proxy, "{name}");
            assert_eq!(h.family, family, "{name}");
            assert_eq!(h.transport, Transport::Stream, "{name}");
            assert_eq!(inet(&h), (sa(src), sa(dst)), "{name}");
            assert_eq!(h.len, len, "{name}");
            assert!(h.tlvs.is_empty() && h.crc32c.is_none(), "{name}");
            assert_prefixes_need_more(name, buf, len, Detected::V1);
        }
    }

    #[test]
    fn v1_fixtures_unknown() {
        for ((name, buf), len) in [
            (fixture!("edge-v1-unknown-short"), 15),
            (fixture!("edge-v1-unknown-max-107"), 107),
        ] {
            let h = complete(buf);
            assert_eq!(h.version, Version::V1, "{name}");
            assert_eq!(h.family, Family::Unspec, "{name}");
            assert_eq!(h.addrs, Addresses::None, "{name}");
            assert_eq!(h.len, len, "{name}");
            assert_prefixes_need_more(name, buf, len, Detected::V1);
        }
    }

    #[test]
    fn v1_fixture_longer_than_107_is_invalid() {
        let (_, buf) = fixture!("edge-v1-longer-than-107");
        assert_eq!(parse(buf), Parsed::Invalid(ProxyError::V1TooLong));
        assert_eq!(parse(&buf[..107]), Parsed::Invalid(ProxyError::V1TooLong));
        // After "... 50000 20012" (42 bytes) only CRLF may come; the padding space is
        // rejected at once instead of waiting for 107 bytes.
        assert_eq!(&buf[..42], b"PROXY TCP4 127.0.0.1 127.0.0.1 50000 20012");
        assert_eq!(parse(&buf[..42]), Parsed::NeedMore);
        assert_eq!(parse(&buf[..43]), Parsed::Invalid(ProxyError::V1BadSyntax));
    }

    #[test]
    fn v2_fixture_tcp4_no_tlvs() {
        let (name, buf) = fixture!("lb-haproxy-2.6-v2-tcp4-curl");
        let h = complete(buf);
        assert_eq!(h.version, Version::V2);
        assert_eq!(h.command, Command::Proxy);
        assert_eq!((h.family, h.transport), (Family::Inet, Transport::Stream));
        assert_eq!(inet(&h), (sa("127.0.0.1:49234"), sa("127.0.0.1:20010")));
        assert_eq!(h.len, 28);
        assert!(h.tlvs.is_empty());
        assert_eq!(h.crc32c, None);
        assert_prefixes_need_more(name, buf, 28, Detected::V2);
    }

    #[test]
    fn v2_fixtures_local() {
        for (name, buf) in [
            fixture!("lb-haproxy-2.6-v2-healthcheck-local"),
            fixture!("edge-v2-local-unspec-then-clienthello"),
        ] {
            let h = complete(buf);
            assert_eq!(h.command, Command::Local, "{name}");
            assert_eq!((h.family, h.transport), (Family::Unspec, Transport::Unspec));
            assert_eq!(h.addrs, Addresses::None, "{name}");
            assert_eq!(h.len, 16, "{name}");
            assert!(h.tlvs.is_empty(), "{name}");
            assert_prefixes_need_more(name, buf, 16, Detected::V2);
        }
    }

    #[test]
    fn v2_fixture_alloptions_passthrough() {
        let (name, buf) = fixture!("lb-haproxy-2.6-v2-alloptions-passthrough-curl");
        let h = complete(buf);
        assert_eq!(inet(&h), (sa("127.0.0.1:59774"), sa("127.0.0.1:20014")));
        assert_eq!(h.len, 92);
        assert_eq!(h.crc32c, Some(0x9e66_a2ff));
        let uid: &[u8] = b"7F000001:E97E_7F000001:4E2E_6B05D4EE_0004:1FC0";
        let tlvs: Vec<Tlv<'_>> = h.tlvs.iter().collect();
        assert_eq!(tlvs.len(), 3);
        assert_eq!(tlvs[0], Tlv::Crc32c(0x9e66_a2ff));
        assert_eq!(tlvs[1], Tlv::UniqueId(uid));
        let Tlv::Ssl(ssl) = tlvs[2] else {
            panic!("expected SSL, got {:?}", tlvs[2])
        };
        assert_eq!((ssl.client, ssl.verify), (0x00, 0));
        assert_eq!(ssl.subs().count(), 0);
        assert_eq!(h.tlvs.unique_id(), Some(uid));
        assert_eq!(h.tlvs.authority(), None);
        assert_eq!(h.tlvs.alpn(), None);
        assert_prefixes_need_more(name, buf, 92, Detected::V2);
    }

    #[test]
    fn v2_fixture_tls_terminated_all_tlvs() {
        let (name, buf) = fixture!("lb-haproxy-2.6-v2-tls-terminated-http1");
        let h = complete(buf);
        assert_eq!(inet(&h), (sa("127.0.0.1:49564"), sa("127.0.0.1:20018")));
        assert_eq!(h.len, 194);
        assert_eq!(h.crc32c, Some(0x9c3e_2436));
        assert_eq!(h.tlvs.alpn(), Some(&b"http/1.1"[..]));
        assert_eq!(h.tlvs.authority(), Some(&b"example.test"[..]));
        let uid: &[u8] = b"7F000001:C19C_7F000001:4E32_6B05D4F9_0009:1FC0";
        assert_eq!(h.tlvs.unique_id(), Some(uid));
        let kinds: Vec<_> = h
            .tlvs
            .iter()
            .map(|t| match t {
                Tlv::Crc32c(_) => 0x03,
                Tlv::Alpn(_) => 0x01,
                Tlv::Authority(_) => 0x02,
                Tlv::UniqueId(_) => 0x05,
                Tlv::Ssl(_) => 0x20,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, [0x03, 0x01, 0x02, 0x05, 0x20]);
        let ssl = h.tlvs.ssl().unwrap();
        assert_eq!(ssl.client, 0x07);
        assert_eq!(ssl.verify, 0);
        let subs: Vec<SslSub<'_>> = ssl.subs().collect();
        assert_eq!(
            subs,
            [
                SslSub::Version(b"TLSv1.3"),
                SslSub::Cn(b"lab-client"),
                SslSub::KeyAlg(b"EC256"),
                SslSub::SigAlg(b"ecdsa-with-SHA256"),
                SslSub::Cipher(b"TLS_AES_256_GCM_SHA384"),
            ]
        );
        assert_eq!(ssl.cn(), Some(&b"lab-client"[..]));
        // What follows is the plaintext request haproxy forwarded.
        assert!(buf[h.len..].starts_with(b"GET / HTTP/1.1"));
        assert_prefixes_need_more(name, buf, 194, Detected::V2);
    }

    #[test]
    fn v2_fixture_seed_talk_authority() {
        let (name, buf) = fixture!("seed-talk-haproxy-v2-authority-httpbin");
        let h = complete(buf);
        assert_eq!(inet(&h), (sa("100.64.0.0:28197"), sa("100.64.0.0:443")));
        assert_eq!(h.len, 42);
        assert_eq!(h.tlvs.authority(), Some(&b"httpbin.org"[..]));
        assert_eq!(h.tlvs.iter().count(), 1);
        assert_eq!(h.crc32c, None);
        assert_prefixes_need_more(name, buf, 42, Detected::V2);
    }

    #[test]
    fn v2_fixture_custom_tlv_0xea() {
        let (name, buf) = fixture!("edge-v2-custom-tlv-0xea-aws-vpce");
        let h = complete(buf);
        assert_eq!(inet(&h), (sa("127.0.0.1:49234"), sa("127.0.0.1:20010")));
        assert_eq!(h.len, 54);
        let tlvs: Vec<_> = h.tlvs.iter().collect();
        assert_eq!(tlvs, [Tlv::Unknown(0xea, b"\x01vpce-0a1b2c3d4e5f67890")]);
        assert_eq!(h.tlvs.get(0xea), Some(&b"\x01vpce-0a1b2c3d4e5f67890"[..]));
        assert_prefixes_need_more(name, buf, 54, Detected::V2);
    }

    #[test]
    fn v2_fixture_len_exceeds_data_needs_more() {
        let (_, buf) = fixture!("edge-v2-len-exceeds-data");
        // Length field 4095: within MAX_V2_LEN, so wait; the caller rejects at EOF/timeout.
        assert_eq!(&buf[14..16], &[0x0f, 0xff]);
        assert_eq!(parse(buf), Parsed::NeedMore);
        for n in 0..buf.len() {
            assert_eq!(parse(&buf[..n]), Parsed::NeedMore, "prefix {n}");
        }
    }

    #[test]
    fn fixtures_without_header_are_rejected_from_their_first_byte() {
        for (name, buf) in [
            fixture!("client-curl-7.88.1-h2"),
            fixture!("client-curl-7.88.1-http1.1"),
            fixture!("client-openssl-3.0.19-s_client-default"),
            fixture!("client-openssl-3.0.19-s_client-noservername"),
            fixture!("client-openssl-3.0.19-s_client-tls1_2"),
            fixture!("edge-clienthello-2-records-split-in-sni"),
            fixture!("edge-clienthello-truncated"),
        ] {
            assert_eq!(buf[0], 0x16, "{name}");
            assert_eq!(detect(&buf[..1]), Detected::NoHeader, "{name}");
            assert_eq!(detect(buf), Detected::NoHeader, "{name}");
            assert_eq!(
                parse(&buf[..1]),
                Parsed::Invalid(ProxyError::NotProxy),
                "{name}"
            );
            assert_eq!(parse(buf), Parsed::Invalid(ProxyError::NotProxy), "{name}");
        }
    }

    #[test]
    fn detect_decides_from_as_few_bytes_as_possible() {
        assert_eq!(detect(b""), Detected::NeedMore);
        assert_eq!(detect(b"\x16"), Detected::NoHeader);
        assert_eq!(detect(b"G"), Detected::NoHeader);
        assert_eq!(detect(b"P"), Detected::NeedMore);
        assert_eq!(detect(b"PROXY"), Detected::NeedMore);
        assert_eq!(detect(b"PROXY "), Detected::V1);
        assert_eq!(detect(b"PROXY TCP4"), Detected::V1);
        assert_eq!(detect(b"PROXZ"), Detected::NoHeader);
        assert_eq!(detect(b"PROXY\r"), Detected::NoHeader);
        assert_eq!(detect(b"\r"), Detected::NeedMore);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT"), Detected::NeedMore);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT\n"), Detected::V2);
        assert_eq!(detect(b"\r\n\r\n\x01"), Detected::NoHeader);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT\r"), Detected::NoHeader);
        assert_eq!(
            parse(b"\r\n\r\n\x01"),
            Parsed::Invalid(ProxyError::NotProxy)
        );
    }

    #[test]
    fn error_labels_are_unique_snake_case_and_displayed() {
        let mut seen = std::collections::HashSet::new();
        for e in ProxyError::ALL {
            let label = e.as_str();
            assert!(seen.insert(label), "duplicate label {label}");
            assert!(label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(e.to_string().len() > 20, "{label}: {e}");
        }
        assert_eq!(ProxyError::V1TooLong.as_str(), "v1_too_long");
        assert_eq!(ProxyError::V2Crc32cMismatch.as_str(), "v2_crc32c_mismatch");
        assert_eq!(ProxyError::V2TlvOverrun.as_str(), "v2_tlv_overrun");
        assert_eq!(ProxyError::V2TooLong.as_str(), "v2_too_long");
        assert_eq!(ProxyError::NotProxy.as_str(), "not_proxy");
        assert!(EmitError::InvalidTlv(ProxyError::V2SslTooShort)
            .to_string()
            .contains("SSL"));
    }

    /// Every single-byte change to every fixture header: no panic, and whatever parses
    /// stays within the buffer and can be walked completely.
    #[test]
    fn single_byte_mutations_never_panic() {
        for (_, buf) in [
            fixture!("lb-haproxy-2.6-v2-tls-terminated-http1"),
            fixture!("lb-haproxy-2.6-v2-alloptions-passthrough-curl"),
            fixture!("edge-v2-custom-tlv-0xea-aws-vpce"),
            fixture!("lb-haproxy-2.6-v1-tcp6-openssl"),
            fixture!("edge-v1-unknown-max-107"),
        ] {
            let hdr_len = complete(buf).len;
            let mut m = buf[..hdr_len + 8].to_vec();
            for i in 0..hdr_len {
                let orig = m[i];
                for v in [0x00, 0xff, orig.wrapping_add(1), orig ^ 0x80, b' ', b'\r'] {
                    m[i] = v;
                    if let Parsed::Complete(h, n) = parse(&m) {
                        assert!(n <= m.len() && n == h.len);
                        for t in h.tlvs.iter() {
                            if let Tlv::Ssl(s) = t {
                                let _ = s.subs().count();
                            }
                        }
                    }
                    for n in 0..m.len() {
                        let _ = parse(&m[..n]);
                    }
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn iterators_stop_on_garbage_without_panicking() {
        // Not reachable through parse(), but the iterators must be safe regardless.
        let t = Tlvs::validated(&[0x02, 0x00, 0x05, b'a']);
        assert_eq!(t.iter().count(), 0);
        let t = Tlvs::validated(&[0x04, 0x00, 0x00, 0x03, 0x00, 0x02, 1, 2, 0x20, 0x00]);
        let all: Vec<_> = t.iter().collect();
        assert_eq!(all, [Tlv::Noop(b""), Tlv::Unknown(0x03, &[1, 2])]);
        assert_eq!(Ssl::from_value(&[1, 2, 3]), None);
        let ssl = Ssl::from_value(&[1, 0, 0, 0, 0, 0x22, 0x00, 0x09, b'x']).unwrap();
        assert_eq!(ssl.subs().count(), 0);
    }
}
