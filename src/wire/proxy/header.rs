//! What a PROXY header is once parsed, whichever version carried it: [`ProxyHeader`] and
//! its parts, and the errors of the parsers and emitters ([`ProxyError`], [`EmitError`]).
//!
//! A leaf shared by `proxy` (detection), `proxy::v1` and `proxy::v2`; it parses nothing
//! itself, and must never name either version's code (that would tie the three in a cycle).
use core::fmt;
use std::net::SocketAddr;

use super::tlv::Tlvs;
use crate::wire::writer::BufferTooSmall;

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
    /// v2: the length field exceeds [`super::v2::MAX_V2_LEN`].
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
    /// v2: a UNIQUE_ID TLV longer than [`super::v2::MAX_UNIQUE_ID_LEN`].
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
    /// The v2 header would exceed [`super::v2::MAX_V2_LEN`] after the fixed part.
    TooLong,
    /// The UNIQUE_ID value is longer than [`super::v2::MAX_UNIQUE_ID_LEN`].
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

impl From<BufferTooSmall> for EmitError {
    fn from(_: BufferTooSmall) -> Self {
        EmitError::BufferTooSmall
    }
}
