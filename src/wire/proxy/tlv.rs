//! The PROXY v2 TLVs: their type codes, and the read-only view of a validated TLV area
//! ([`Tlvs`], [`Tlv`], [`Ssl`], [`SslSub`]) that a [`super::ProxyHeader`] carries.
//!
//! A leaf shared by `proxy::header` and `proxy::v2`. Validation is `v2`'s job; the view
//! here trusts it for the sizes of typed TLVs but still walks the bytes through a bounded
//! [`Reader`], so that no input can make it read out of bounds or panic.
use crate::wire::reader::Reader;

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

/// The v2 TLV area after the addresses (empty for v1, LOCAL and UNSPEC), already
/// validated: every TLV and SSL sub-TLV fits, and the typed ones have legal sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tlvs<'a> {
    raw: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// No TLVs.
    pub const EMPTY: Tlvs<'static> = Tlvs { raw: &[] };

    /// Wraps a TLV area that [`super::v2::validate_tlvs`] accepted.
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
