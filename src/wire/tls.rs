//! The TLS ClientHello, read (never answered) so that a session can be routed by its SNI
//! and ALPN while the TLS stream itself passes through untouched.
//!
//! [`parse_client_hello`] takes every byte received so far on the client socket (after any
//! PROXY header) and answers complete / need more / invalid. It first walks only the 5-byte
//! record headers, so that the repeated calls the event loop makes as bytes trickle in cost
//! little; only once the whole handshake message is present does it join the fragments and
//! read the hello. A hello carried by one record is borrowed from the input; a hello spread
//! over several records is joined in a caller-supplied scratch buffer.
//!
//! It must never: allocate, panic, read past a length it has not checked, decrypt or answer
//! anything, or trust a length from the wire without a hard cap (records
//! [`MAX_RECORD_LEN`], the hello [`MAX_HELLO_LEN`]).
use std::fmt;

use super::reader::Reader;
use super::Parsed;

/// Content type (1) + legacy_record_version (2) + length (2).
pub const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: a plaintext fragment is at most 2^14 bytes.
pub const MAX_RECORD_LEN: usize = 16384;
/// Our cap on the ClientHello handshake body; a larger declared length is Invalid at once.
pub const MAX_HELLO_LEN: usize = 16384;
/// msg_type (1) + 24-bit length (3).
pub const HANDSHAKE_HEADER_LEN: usize = 4;

/// ContentType handshake (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// HandshakeType client_hello (RFC 8446 §4).
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Every TLS (and SSL 3.0) record version has this major byte.
const RECORD_VERSION_MAJOR: u8 = 3;
/// Random (RFC 8446 §4.1.2).
const RANDOM_LEN: usize = 32;
/// legacy_session_id<0..32>.
const MAX_SESSION_ID_LEN: usize = 32;

/// Extension types read by this parser.
pub const EXT_SERVER_NAME: u16 = 0;
/// application_layer_protocol_negotiation (RFC 7301).
pub const EXT_ALPN: u16 = 16;
/// supported_versions (RFC 8446 §4.2.1).
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// encrypted_client_hello (draft-ietf-tls-esni).
pub const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// NameType host_name (RFC 6066 §3).
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Only a handshake record (0x16) can start a ClientHello; anything else is not TLS.
pub fn could_be_tls(first_byte: u8) -> bool {
    first_byte == CONTENT_HANDSHAKE
}

/// RFC 8701 GREASE: `0x?A?A` with both bytes equal (0x0a0a, 0x1a1a, ... 0xfafa).
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// Why the bytes can never become a ClientHello we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsError {
    /// The first byte is not a handshake record (plain text, SSLv2, anything else).
    NotTls,
    /// A record version's major byte is not 3.
    BadRecordVersion,
    /// A record declares length 0 (RFC 8446 §5.1 forbids empty handshake fragments).
    EmptyRecord,
    /// A record declares more than [`MAX_RECORD_LEN`] bytes.
    RecordTooLong,
    /// A record other than handshake arrived before the hello was complete.
    NotHandshakeRecord,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// The ClientHello declares more than [`MAX_HELLO_LEN`] bytes.
    HelloTooLong,
    /// The record holding the hello's last byte carries more bytes after it.
    NotOnRecordBoundary,
    /// The hello spans records and the scratch buffer cannot hold it.
    ScratchTooSmall,
    /// A fixed field or vector of the hello runs past its end.
    HelloOverrun,
    /// legacy_session_id is longer than 32 bytes.
    BadSessionId,
    /// cipher_suites is empty or of odd length.
    BadCipherSuites,
    /// legacy_compression_methods is empty.
    BadCompressionMethods,
    /// Bytes follow the extensions block inside the hello.
    TrailingData,
    /// An extension runs past the extensions block, or the block ends mid-extension.
    ExtensionOverrun,
    /// The same extension type appears twice (RFC 8446 §4.2).
    DuplicateExtension,
    /// server_name is malformed or its host_name is not a DNS name.
    BadSni,
    /// application_layer_protocol_negotiation is malformed.
    BadAlpn,
    /// supported_versions is malformed.
    BadSupportedVersions,
}

impl TlsError {
    /// A stable snake_case label, for metrics and log keys.
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsError::NotTls => "not_tls",
            TlsError::BadRecordVersion => "bad_record_version",
            TlsError::EmptyRecord => "empty_record",
            TlsError::RecordTooLong => "record_too_long",
            TlsError::NotHandshakeRecord => "not_handshake_record",
            TlsError::NotClientHello => "not_client_hello",
            TlsError::HelloTooLong => "hello_too_long",
            TlsError::NotOnRecordBoundary => "not_on_record_boundary",
            TlsError::ScratchTooSmall => "scratch_too_small",
            TlsError::HelloOverrun => "hello_overrun",
            TlsError::BadSessionId => "bad_session_id",
            TlsError::BadCipherSuites => "bad_cipher_suites",
            TlsError::BadCompressionMethods => "bad_compression_methods",
            TlsError::TrailingData => "trailing_data",
            TlsError::ExtensionOverrun => "extension_overrun",
            TlsError::DuplicateExtension => "duplicate_extension",
            TlsError::BadSni => "bad_sni",
            TlsError::BadAlpn => "bad_alpn",
            TlsError::BadSupportedVersions => "bad_supported_versions",
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsError::NotTls => "the client did not start with a TLS handshake record",
            TlsError::BadRecordVersion => "a TLS record has a version other than 3.x",
            TlsError::EmptyRecord => "a TLS handshake record is empty",
            TlsError::RecordTooLong => "a TLS record is longer than 16384 bytes",
            TlsError::NotHandshakeRecord => {
                "a non-handshake TLS record arrived before the ClientHello was complete"
            }
            TlsError::NotClientHello => "the first handshake message is not a ClientHello",
            TlsError::HelloTooLong => "the ClientHello is longer than 16384 bytes",
            TlsError::NotOnRecordBoundary => {
                "the record ending the ClientHello carries more data after it"
            }
            TlsError::ScratchTooSmall => {
                "the ClientHello spans records and does not fit the scratch buffer"
            }
            TlsError::HelloOverrun => "a ClientHello field runs past the end of the message",
            TlsError::BadSessionId => "the ClientHello session id is longer than 32 bytes",
            TlsError::BadCipherSuites => "the ClientHello cipher suite list is empty or odd",
            TlsError::BadCompressionMethods => "the ClientHello has no compression method",
            TlsError::TrailingData => "bytes follow the ClientHello extensions",
            TlsError::ExtensionOverrun => "a ClientHello extension runs past the extensions",
            TlsError::DuplicateExtension => "a ClientHello extension appears twice",
            TlsError::BadSni => "the ClientHello server name is malformed or not a DNS name",
            TlsError::BadAlpn => "the ClientHello ALPN extension is malformed",
            TlsError::BadSupportedVersions => {
                "the ClientHello supported_versions extension is malformed"
            }
        })
    }
}

/// ProtocolNameList from ALPN (RFC 7301), already checked: each name 1..=255 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolList<'a> {
    /// The list's contents, without its own u16 length.
    raw: &'a [u8],
}

impl<'a> ProtocolList<'a> {
    /// The protocol names, in the client's order of preference.
    pub fn iter(&self) -> Protocols<'a> {
        Protocols {
            r: Reader::new(self.raw),
        }
    }

    /// The raw list contents (u8-length-prefixed names), without the u16 list length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

impl<'a> IntoIterator for ProtocolList<'a> {
    type Item = &'a [u8];
    type IntoIter = Protocols<'a>;
    fn into_iter(self) -> Protocols<'a> {
        self.iter()
    }
}

/// Iterator over the names of a [`ProtocolList`].
#[derive(Debug, Clone)]
pub struct Protocols<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Protocols<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let n = self.r.u8()?;
        self.r.take(usize::from(n))
    }
}

/// `h2,http/1.1`; bytes outside `!`..=`~`, and `,` and `\` themselves, are shown as `\xNN`
/// so that a hostile name can neither forge a separator nor put control bytes in a log.
impl fmt::Display for ProtocolList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for &b in name {
                if b.is_ascii_graphic() && b != b',' && b != b'\\' {
                    fmt::Write::write_char(f, char::from(b))?;
                } else {
                    write!(f, "\\x{b:02x}")?;
                }
            }
        }
        Ok(())
    }
}

/// The supported_versions list (RFC 8446 §4.2.1), already checked: even, non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionList<'a> {
    /// The list's contents, without its own u8 length.
    raw: &'a [u8],
}

impl<'a> VersionList<'a> {
    /// The versions in the client's order, GREASE values removed.
    pub fn iter(&self) -> Versions<'a> {
        Versions {
            r: Reader::new(self.raw),
        }
    }

    /// The raw list contents, GREASE included, without the u8 list length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

impl<'a> IntoIterator for VersionList<'a> {
    type Item = u16;
    type IntoIter = Versions<'a>;
    fn into_iter(self) -> Versions<'a> {
        self.iter()
    }
}

/// Iterator over a [`VersionList`], skipping GREASE.
#[derive(Debug, Clone)]
pub struct Versions<'a> {
    r: Reader<'a>,
}

impl Iterator for Versions<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        loop {
            let v = self.r.u16()?;
            if !is_grease(v) {
                return Some(v);
            }
        }
    }
}

/// `0x0304,0x0303`.
impl fmt::Display for VersionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "0x{v:04x}")?;
        }
        Ok(())
    }
}

/// Iterator over a checked extensions block: `(extension_type, extension_data)`, GREASE included.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let ty = self.r.u16()?;
        let n = self.r.u16()?;
        Some((ty, self.r.take(usize::from(n))?))
    }
}

/// A parsed ClientHello. Slices borrow from the input, or from the scratch buffer when the
/// hello spanned several records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// TLS records the ClientHello spanned.
    pub records: usize,
    /// legacy_record_version of the first record.
    pub record_version: u16,
    /// legacy_version inside the hello (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// legacy_session_id, 0..=32 bytes.
    pub session_id: &'a [u8],
    /// Raw cipher suites, 2 bytes each.
    pub cipher_suites: &'a [u8],
    /// Raw legacy_compression_methods, at least one.
    pub compression_methods: &'a [u8],
    /// The raw extensions block, without its u16 length (empty for a hello without one).
    pub extensions: &'a [u8],
    /// The first host_name of server_name, validated as a DNS name.
    pub sni: Option<&'a str>,
    /// ALPN protocol names.
    pub alpn: Option<ProtocolList<'a>>,
    /// supported_versions, GREASE removed when iterated.
    pub versions: Option<VersionList<'a>>,
    /// encrypted_client_hello (0xfe0d) is present: `sni` is then the public outer name.
    pub ech: bool,
    /// Extensions in the block, GREASE included.
    pub extension_count: usize,
}

impl<'a> ClientHello<'a> {
    /// Number of cipher suites offered (GREASE included).
    pub fn cipher_suite_count(&self) -> usize {
        self.cipher_suites.len() / 2
    }

    /// The extensions in wire order, GREASE included.
    pub fn iter_extensions(&self) -> Extensions<'a> {
        Extensions {
            r: Reader::new(self.extensions),
        }
    }
}

/// What the record walk learned once the whole handshake message is present.
#[derive(Debug, Clone, Copy)]
struct Framing {
    records: usize,
    record_version: u16,
    hello_len: usize,
    /// Bytes of input through the end of the record holding the hello's last byte.
    consumed: usize,
}

/// Parses the ClientHello at the start of `buf` (all client bytes so far, after any PROXY
/// header). `scratch` is used only when the hello spans several records; it must then hold
/// the hello body (at most [`MAX_HELLO_LEN`] bytes). The consumed count runs from the start
/// of `buf` through the end of the record holding the hello's last byte.
pub fn parse_client_hello<'a>(
    buf: &'a [u8],
    scratch: &'a mut [u8],
) -> Parsed<ClientHello<'a>, TlsError> {
    let framing = match walk_records(buf) {
        Parsed::Complete(f, _) => f,
        Parsed::NeedMore => return Parsed::NeedMore,
        Parsed::Invalid(e) => return Parsed::Invalid(e),
    };
    let body = match join_fragments(buf, &framing, scratch) {
        Ok(body) => body,
        Err(e) => return Parsed::Invalid(e),
    };
    match parse_body(body, &framing) {
        Ok(hello) => Parsed::Complete(hello, framing.consumed),
        Err(e) => Parsed::Invalid(e),
    }
}

/// Walks record headers only, checking each as soon as its bytes are present, until the
/// record that completes the handshake message. Copies nothing, reads no extension.
fn walk_records(buf: &[u8]) -> Parsed<Framing, TlsError> {
    match buf.first() {
        None => return Parsed::NeedMore,
        Some(&b) if !could_be_tls(b) => return Parsed::Invalid(TlsError::NotTls),
        Some(_) => {}
    }
    let mut r = Reader::new(buf);
    let mut records: usize = 0;
    let mut record_version: u16 = 0;
    // Handshake header bytes seen so far (it may itself be split across records).
    let mut hs_header_seen: usize = 0;
    // The 24-bit length, accumulated big-endian as its bytes arrive.
    let mut hello_len: usize = 0;
    // Handshake message bytes carried by the records before the current one.
    let mut msg_before: usize = 0;
    loop {
        let Some(content_type) = r.u8() else {
            return Parsed::NeedMore;
        };
        if content_type != CONTENT_HANDSHAKE {
            return Parsed::Invalid(if records == 0 {
                TlsError::NotTls
            } else {
                TlsError::NotHandshakeRecord
            });
        }
        let Some(major) = r.u8() else {
            return Parsed::NeedMore;
        };
        if major != RECORD_VERSION_MAJOR {
            return Parsed::Invalid(TlsError::BadRecordVersion);
        }
        let Some(minor) = r.u8() else {
            return Parsed::NeedMore;
        };
        let Some(len) = r.u16() else {
            return Parsed::NeedMore;
        };
        let len = usize::from(len);
        if len == 0 {
            return Parsed::Invalid(TlsError::EmptyRecord);
        }
        if len > MAX_RECORD_LEN {
            return Parsed::Invalid(TlsError::RecordTooLong);
        }
        if records == 0 {
            record_version = u16::from_be_bytes([major, minor]);
        }
        records = records.saturating_add(1);

        // The part of this record's fragment already received.
        let have = r.take(r.left().min(len)).unwrap_or(&[]);
        let mut frag = Reader::new(have);
        while hs_header_seen < HANDSHAKE_HEADER_LEN {
            let Some(b) = frag.u8() else { break };
            hs_header_seen = hs_header_seen.saturating_add(1);
            if hs_header_seen == 1 {
                if b != HANDSHAKE_CLIENT_HELLO {
                    return Parsed::Invalid(TlsError::NotClientHello);
                }
                continue;
            }
            hello_len = hello_len.saturating_mul(256).saturating_add(usize::from(b));
            // Refuse as soon as the known high bytes alone exceed the cap.
            let unknown_bytes = HANDSHAKE_HEADER_LEN.saturating_sub(hs_header_seen);
            let lower_bound = hello_len.checked_mul(1 << (8 * unknown_bytes));
            if lower_bound.is_none_or(|n| n > MAX_HELLO_LEN) {
                return Parsed::Invalid(TlsError::HelloTooLong);
            }
        }

        let msg_through_record = msg_before.saturating_add(len);
        if hs_header_seen == HANDSHAKE_HEADER_LEN {
            let msg_len = HANDSHAKE_HEADER_LEN.saturating_add(hello_len);
            if msg_through_record > msg_len {
                return Parsed::Invalid(TlsError::NotOnRecordBoundary);
            }
            if have.len() == len && msg_through_record == msg_len {
                return Parsed::Complete(
                    Framing {
                        records,
                        record_version,
                        hello_len,
                        consumed: r.pos(),
                    },
                    r.pos(),
                );
            }
        }
        if have.len() < len {
            return Parsed::NeedMore;
        }
        msg_before = msg_through_record;
    }
}

/// The hello body (after the 4-byte handshake header) as one slice: borrowed from `buf` when
/// one record holds it, else copied into `scratch`.
fn join_fragments<'a>(
    buf: &'a [u8],
    framing: &Framing,
    scratch: &'a mut [u8],
) -> Result<&'a [u8], TlsError> {
    let start = RECORD_HEADER_LEN.saturating_add(HANDSHAKE_HEADER_LEN);
    if framing.records == 1 {
        let end = start.saturating_add(framing.hello_len);
        return buf.get(start..end).ok_or(TlsError::HelloOverrun);
    }
    if scratch.len() < framing.hello_len {
        return Err(TlsError::ScratchTooSmall);
    }
    let mut r = Reader::new(buf.get(..framing.consumed).unwrap_or(&[]));
    let mut skip = HANDSHAKE_HEADER_LEN;
    let mut filled: usize = 0;
    while !r.is_empty() {
        // Type and version were checked by the walk; only the length matters here.
        r.take(3).ok_or(TlsError::HelloOverrun)?;
        let len = r.u16().ok_or(TlsError::HelloOverrun)?;
        let fragment = r.take(usize::from(len)).ok_or(TlsError::HelloOverrun)?;
        let dropped = skip.min(fragment.len());
        skip = skip.saturating_sub(dropped);
        let part = fragment.get(dropped..).unwrap_or(&[]);
        let end = filled.saturating_add(part.len());
        let dst = scratch
            .get_mut(filled..end)
            .ok_or(TlsError::ScratchTooSmall)?;
        dst.copy_from_slice(part);
        filled = end;
    }
    let joined: &'a [u8] = scratch;
    if filled != framing.hello_len {
        return Err(TlsError::HelloOverrun);
    }
    joined.get(..filled).ok_or(TlsError::HelloOverrun)
}

/// RFC 8446 §4.1.2, over exactly the hello body.
fn parse_body<'a>(body: &'a [u8], framing: &Framing) -> Result<ClientHello<'a>, TlsError> {
    use TlsError::HelloOverrun as Overrun;
    let mut r = Reader::new(body);
    let legacy_version = r.u16().ok_or(Overrun)?;
    r.take(RANDOM_LEN).ok_or(Overrun)?;
    let session_id = r.vec_u8().ok_or(Overrun)?.rest();
    if session_id.len() > MAX_SESSION_ID_LEN {
        return Err(TlsError::BadSessionId);
    }
    let cipher_suites = r.vec_u16().ok_or(Overrun)?.rest();
    if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
        return Err(TlsError::BadCipherSuites);
    }
    let compression_methods = r.vec_u8().ok_or(Overrun)?.rest();
    if compression_methods.is_empty() {
        return Err(TlsError::BadCompressionMethods);
    }
    // An SSL 3.0 / TLS 1.0-style hello may end here, with no extensions block at all.
    let extensions = if r.is_empty() {
        &[][..]
    } else {
        r.vec_u16().ok_or(TlsError::ExtensionOverrun)?.rest()
    };
    if !r.is_empty() {
        return Err(TlsError::TrailingData);
    }

    let mut hello = ClientHello {
        records: framing.records,
        record_version: framing.record_version,
        legacy_version,
        session_id,
        cipher_suites,
        compression_methods,
        extensions,
        sni: None,
        alpn: None,
        versions: None,
        ech: false,
        extension_count: 0,
    };
    let mut seen = SeenTypes::new();
    let mut exts = Reader::new(extensions);
    while !exts.is_empty() {
        let ty = exts.u16().ok_or(TlsError::ExtensionOverrun)?;
        let data = exts.vec_u16().ok_or(TlsError::ExtensionOverrun)?;
        hello.extension_count = hello.extension_count.saturating_add(1);
        if !seen.insert(ty) {
            return Err(TlsError::DuplicateExtension);
        }
        match ty {
            EXT_SERVER_NAME => hello.sni = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = Some(parse_alpn(data)?),
            EXT_SUPPORTED_VERSIONS => hello.versions = Some(parse_supported_versions(data)?),
            EXT_ENCRYPTED_CLIENT_HELLO => hello.ech = true,
            // GREASE and every other type: present, counted, not interpreted.
            _ => {}
        }
    }
    Ok(hello)
}

/// The extension types met so far, to refuse duplicates (RFC 8446 §4.2). Real hellos carry
/// about 10 to 20 extensions: those go in a small array scanned linearly; past
/// [`SeenTypes::SMALL`] (only a hostile hello), a bitmap of every type keeps it one pass.
struct SeenTypes {
    small: [u16; SeenTypes::SMALL],
    count: usize,
    bits: Option<[u64; 1024]>,
}

impl SeenTypes {
    const SMALL: usize = 64;

    fn new() -> Self {
        SeenTypes {
            small: [0; Self::SMALL],
            count: 0,
            bits: None,
        }
    }

    /// False when `ty` was already seen.
    fn insert(&mut self, ty: u16) -> bool {
        fn set(bits: &mut [u64; 1024], ty: u16) -> bool {
            let Some(word) = bits.get_mut(usize::from(ty >> 6)) else {
                return false;
            };
            let bit = 1u64 << (ty & 63);
            let fresh = *word & bit == 0;
            *word |= bit;
            fresh
        }
        if let Some(bits) = self.bits.as_mut() {
            return set(bits, ty);
        }
        let known = self.small.get(..self.count).unwrap_or(&[]);
        if known.contains(&ty) {
            return false;
        }
        if let Some(slot) = self.small.get_mut(self.count) {
            *slot = ty;
            self.count += 1;
            return true;
        }
        // More than SMALL distinct types: switch to the bitmap (only a hostile hello).
        let mut bits = [0u64; 1024];
        for &t in &self.small {
            set(&mut bits, t);
        }
        let fresh = set(&mut bits, ty);
        self.bits = Some(bits);
        fresh
    }
}

/// RFC 6066 §3 ServerNameList: the host_name entry, if any. Entries of unknown name types
/// are skipped as u16-length opaque data; a second host_name is refused.
fn parse_server_name(mut data: Reader<'_>) -> Result<Option<&str>, TlsError> {
    let mut list = data.vec_u16().ok_or(TlsError::BadSni)?;
    if !data.is_empty() || list.is_empty() {
        return Err(TlsError::BadSni);
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8().ok_or(TlsError::BadSni)?;
        let name = list.vec_u16().ok_or(TlsError::BadSni)?.rest();
        if name_type == NAME_TYPE_HOST_NAME {
            if host.is_some() {
                return Err(TlsError::BadSni);
            }
            host = Some(host_name(name).ok_or(TlsError::BadSni)?);
        }
    }
    Ok(host)
}

/// The name as text when it passes the one host-name rule ([`super::name::is_host_name`]:
/// the one HTTP Host and PROXY AUTHORITY follow too), so that `127.1` is refused here as it
/// is there; NUL, CR, LF, space and non-ASCII never get through.
fn host_name(name: &[u8]) -> Option<&str> {
    if !super::name::is_host_name(name) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// RFC 7301 §3.1: ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>, exactly consumed.
fn parse_alpn(mut data: Reader<'_>) -> Result<ProtocolList<'_>, TlsError> {
    let list = data.vec_u16().ok_or(TlsError::BadAlpn)?;
    if !data.is_empty() || list.is_empty() {
        return Err(TlsError::BadAlpn);
    }
    let raw = list.rest();
    let mut names = list;
    while !names.is_empty() {
        let name = names.vec_u8().ok_or(TlsError::BadAlpn)?;
        if name.is_empty() {
            return Err(TlsError::BadAlpn);
        }
    }
    Ok(ProtocolList { raw })
}

/// RFC 8446 §4.2.1 (ClientHello form): ProtocolVersion versions<2..254>, exactly consumed.
fn parse_supported_versions(mut data: Reader<'_>) -> Result<VersionList<'_>, TlsError> {
    let list = data.vec_u8().ok_or(TlsError::BadSupportedVersions)?;
    if !data.is_empty() || list.is_empty() || list.left() % 2 != 0 {
        return Err(TlsError::BadSupportedVersions);
    }
    Ok(VersionList { raw: list.rest() })
}

#[cfg(test)]
mod tests {

    use super::*;

    // ---------------------------------------------------------------- helpers

    /// Parses with a roomy scratch and keeps only the outcome, for the Invalid/NeedMore cases.
    fn verdict(bytes: &[u8]) -> Parsed<(), TlsError> {
        let mut scratch = [0u8; MAX_HELLO_LEN];
        parse_client_hello(bytes, &mut scratch).map(|_| ())
    }

    /// Parses and renders the facts the tests compare, so the result outlives the scratch.
    #[derive(Debug, PartialEq, Eq)]
    struct Facts {
        records: usize,
        record_version: u16,
        legacy_version: u16,
        sni: Option<String>,
        alpn: Option<String>,
        versions: Option<String>,
        ech: bool,
        ciphers: usize,
        exts: usize,
        hello_len: usize,
        consumed: usize,
    }

    fn facts_of(h: &ClientHello<'_>, consumed: usize) -> Facts {
        Facts {
            records: h.records,
            record_version: h.record_version,
            legacy_version: h.legacy_version,
            sni: h.sni.map(str::to_owned),
            alpn: h.alpn.map(|a| a.to_string()),
            versions: h.versions.map(|v| v.to_string()),
            ech: h.ech,
            ciphers: h.cipher_suite_count(),
            exts: h.extension_count,
            // version + random + three length prefixes + the extensions length prefix.
            hello_len: 2
                + 32
                + 1
                + h.session_id.len()
                + 2
                + h.cipher_suites.len()
                + 1
                + h.compression_methods.len()
                + if h.extension_count > 0 {
                    2 + h.extensions.len()
                } else {
                    0
                },
            consumed,
        }
    }

    fn facts(bytes: &[u8]) -> Facts {
        let mut scratch = vec![0u8; MAX_HELLO_LEN];
        match parse_client_hello(bytes, &mut scratch) {
            Parsed::Complete(h, n) => facts_of(&h, n),
            other => panic!("expected a complete hello, got {:?}", other.map(|_| ())),
        }
    }

    const RANDOM: [u8; 32] = [0x11; 32];

    /// A ClientHello body: TLS 1.2 legacy_version, fixed random, no session id, one suite
    /// (TLS_AES_128_GCM_SHA256), null compression, then `exts` as an extensions block.
    fn body(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&RANDOM);
        b.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        let mut block = Vec::new();
        for (ty, data) in exts {
            block.extend_from_slice(&ty.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        b.extend_from_slice(&(block.len() as u16).to_be_bytes());
        b.extend_from_slice(&block);
        b
    }

    /// A handshake message: type, 24-bit length, body.
    fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len() as u32;
        let mut m = vec![msg_type];
        m.extend_from_slice(&n.to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    /// One record of `content_type`, version 0x0301, around `payload`.
    fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0x03, 0x01];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    /// `payload` framed as handshake records of the given fragment sizes, the rest in a last one.
    fn records(payload: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = payload;
        for &n in sizes {
            let (a, b) = rest.split_at(n);
            out.extend(record(22, a));
            rest = b;
        }
        if !rest.is_empty() {
            out.extend(record(22, rest));
        }
        out
    }

    /// A whole single-record ClientHello with these extensions.
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        record(22, &handshake(1, &body(exts)))
    }

    /// server_name extension_data holding one host_name.
    fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![0x00]; // name_type host_name
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend(entry);
        (EXT_SERVER_NAME, d)
    }

    fn alpn(names: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for n in names {
            list.push(n.len() as u8);
            list.extend_from_slice(n);
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        (EXT_ALPN, d)
    }

    fn versions(vs: &[u16]) -> (u16, Vec<u8>) {
        let mut d = vec![(vs.len() * 2) as u8];
        for v in vs {
            d.extend_from_slice(&v.to_be_bytes());
        }
        (EXT_SUPPORTED_VERSIONS, d)
    }

    /// Every strict prefix is NeedMore, and the whole input parses to `expected`.
    fn assert_prefixes_need_more(bytes: &[u8]) {
        for k in 0..bytes.len() {
            assert_eq!(
                verdict(&bytes[..k]),
                Parsed::NeedMore,
                "prefix of {k} bytes"
            );
        }
    }

    // ---------------------------------------------------------------- fixtures

    const MANIFEST: &str = include_str!("../../fixtures/MANIFEST.tsv");

    /// Every fixture holding a whole ClientHello.
    const HELLO_FIXTURES: &[(&str, &[u8])] = &[
        (
            "client-curl-7.88.1-h2.bin",
            include_bytes!("../../fixtures/client-curl-7.88.1-h2.bin"),
        ),
        (
            "client-curl-7.88.1-http1.1.bin",
            include_bytes!("../../fixtures/client-curl-7.88.1-http1.1.bin"),
        ),
        (
            "client-openssl-3.0.19-s_client-default.bin",
            include_bytes!("../../fixtures/client-openssl-3.0.19-s_client-default.bin"),
        ),
        (
            "client-openssl-3.0.19-s_client-noservername.bin",
            include_bytes!("../../fixtures/client-openssl-3.0.19-s_client-noservername.bin"),
        ),
        (
            "client-openssl-3.0.19-s_client-tls1_2.bin",
            include_bytes!("../../fixtures/client-openssl-3.0.19-s_client-tls1_2.bin"),
        ),
        (
            "edge-clienthello-2-records-split-in-sni.bin",
            include_bytes!("../../fixtures/edge-clienthello-2-records-split-in-sni.bin"),
        ),
        (
            "edge-v1-unknown-max-107.bin",
            include_bytes!("../../fixtures/edge-v1-unknown-max-107.bin"),
        ),
        (
            "edge-v1-unknown-short.bin",
            include_bytes!("../../fixtures/edge-v1-unknown-short.bin"),
        ),
        (
            "edge-v2-custom-tlv-0xea-aws-vpce.bin",
            include_bytes!("../../fixtures/edge-v2-custom-tlv-0xea-aws-vpce.bin"),
        ),
        (
            "edge-v2-local-unspec-then-clienthello.bin",
            include_bytes!("../../fixtures/edge-v2-local-unspec-then-clienthello.bin"),
        ),
        (
            "lb-haproxy-2.6-v1-tcp4-openssl.bin",
            include_bytes!("../../fixtures/lb-haproxy-2.6-v1-tcp4-openssl.bin"),
        ),
        (
            "lb-haproxy-2.6-v1-tcp6-openssl.bin",
            include_bytes!("../../fixtures/lb-haproxy-2.6-v1-tcp6-openssl.bin"),
        ),
        (
            "lb-haproxy-2.6-v2-alloptions-passthrough-curl.bin",
            include_bytes!("../../fixtures/lb-haproxy-2.6-v2-alloptions-passthrough-curl.bin"),
        ),
        (
            "lb-haproxy-2.6-v2-tcp4-curl.bin",
            include_bytes!("../../fixtures/lb-haproxy-2.6-v2-tcp4-curl.bin"),
        ),
        (
            "lb-nginx-1.22-stream-v1-tcp4-curl.bin",
            include_bytes!("../../fixtures/lb-nginx-1.22-stream-v1-tcp4-curl.bin"),
        ),
        (
            "lb-sniproxy-0.6.0-v1-tcp4-openssl.bin",
            include_bytes!("../../fixtures/lb-sniproxy-0.6.0-v1-tcp4-openssl.bin"),
        ),
    ];

    /// The third MANIFEST column for `file`.
    fn manifest_facts(file: &str) -> &'static str {
        MANIFEST
            .lines()
            .find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(file)).then(|| cols.nth(1).unwrap())
            })
            .unwrap_or_else(|| panic!("{file} is not in MANIFEST.tsv"))
    }

    /// The value of ` key=` in a MANIFEST facts column, up to the next space or `;`.
    fn fact<'m>(facts: &'m str, key: &str) -> Option<&'m str> {
        let pat = format!(" {key}=");
        let at = facts.find(&pat)? + pat.len();
        let rest = &facts[at..];
        Some(&rest[..rest.find([' ', ';']).unwrap_or(rest.len())])
    }

    fn hex_u16(s: &str) -> u16 {
        u16::from_str_radix(s.strip_prefix("0x").unwrap(), 16).unwrap()
    }

    /// `[a,b]` -> Some("a,b"), `[(none)]` -> None.
    fn list_fact(s: &str) -> Option<String> {
        let inner = s.strip_prefix('[').unwrap().strip_suffix(']').unwrap();
        (inner != "(none)").then(|| inner.to_owned())
    }

    /// The bytes after the PROXY header, per the MANIFEST's hdr_len (0 when there is none).
    fn after_header(file: &str, bytes: &'static [u8]) -> &'static [u8] {
        let hdr = fact(manifest_facts(file), "hdr_len").map_or(0, |n| n.parse().unwrap());
        &bytes[hdr..]
    }

    fn expected_facts(file: &str) -> Facts {
        let m = manifest_facts(file);
        let f = |k: &str| fact(m, k).unwrap_or_else(|| panic!("{file}: no {k}="));
        let records: usize = f("records").parse().unwrap();
        let record_lens: usize = f("record_len")
            .split('+')
            .map(|n| n.parse::<usize>().unwrap())
            .sum();
        let hello_len = m.split("ClientHello(len=").nth(1).unwrap();
        let hello_len = hello_len[..hello_len.find(')').unwrap()].parse().unwrap();
        let hdr: usize = fact(m, "hdr_len").map_or(0, |n| n.parse().unwrap());
        let total: usize = f("total").parse().unwrap();
        assert_eq!(
            records * RECORD_HEADER_LEN + record_lens,
            total - hdr,
            "{file}: MANIFEST sums"
        );
        assert_eq!(f("ech_ext"), "no");
        assert_eq!(f("complete"), "yes");
        Facts {
            records,
            record_version: hex_u16(f("record_version")),
            legacy_version: hex_u16(f("legacy_version")),
            sni: Some(f("sni")).filter(|s| *s != "(none)").map(str::to_owned),
            alpn: list_fact(f("alpn")),
            versions: list_fact(f("supported_versions")),
            ech: false,
            ciphers: f("ciphers").parse().unwrap(),
            exts: f("exts").parse().unwrap(),
            hello_len,
            consumed: total - hdr,
        }
    }

    #[test]
    fn fixture_table_covers_every_complete_hello_in_manifest() {
        let mut listed: Vec<&str> = MANIFEST
            .lines()
            .filter(|l| l.contains(" complete=yes"))
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        listed.sort_unstable();
        let mut ours: Vec<&str> = HELLO_FIXTURES.iter().map(|(n, _)| *n).collect();
        ours.sort_unstable();
        assert_eq!(listed, ours);
    }

    #[test]
    fn fixtures_match_manifest_facts() {
        for &(file, bytes) in HELLO_FIXTURES {
            let tls = after_header(file, bytes);
            assert_eq!(facts(tls), expected_facts(file), "{file}");
        }
    }

    #[test]
    fn fixtures_every_strict_prefix_is_need_more() {
        for &(file, bytes) in HELLO_FIXTURES {
            let tls = after_header(file, bytes);
            for k in 0..tls.len() {
                assert_eq!(verdict(&tls[..k]), Parsed::NeedMore, "{file}: prefix {k}");
            }
        }
    }

    /// As the event loop sees it: one receive buffer growing read by read, one scratch reused
    /// (and left dirty) across calls; split once at every byte boundary, and byte by byte.
    #[test]
    fn fixtures_growing_buffer_split_at_every_byte() {
        for &(file, bytes) in HELLO_FIXTURES {
            let tls = after_header(file, bytes);
            let want = expected_facts(file);
            let mut scratch = vec![0xa5u8; MAX_HELLO_LEN];
            for split in 1..tls.len() {
                let mut rx = Vec::with_capacity(tls.len());
                for chunk in [&tls[..split], &tls[split..]] {
                    rx.extend_from_slice(chunk);
                    match parse_client_hello(&rx, &mut scratch) {
                        Parsed::Complete(h, n) => {
                            assert_eq!(rx.len(), tls.len(), "{file}: complete early at {split}");
                            assert_eq!(facts_of(&h, n), want, "{file}: split at {split}");
                        }
                        Parsed::NeedMore => assert!(rx.len() < tls.len(), "{file}: {split}"),
                        Parsed::Invalid(e) => panic!("{file}: split at {split}: {e}"),
                    }
                }
            }
            let mut rx = Vec::new();
            for (i, &b) in tls.iter().enumerate() {
                rx.push(b);
                let done = i + 1 == tls.len();
                match parse_client_hello(&rx, &mut scratch) {
                    Parsed::Complete(h, n) if done => assert_eq!(facts_of(&h, n), want),
                    Parsed::NeedMore if !done => {}
                    other => panic!("{file}: after {} bytes: {:?}", i + 1, other.map(|_| ())),
                }
            }
        }
    }

    #[test]
    fn fixture_single_record_borrows_input_and_leaves_scratch_alone() {
        let (file, bytes) = HELLO_FIXTURES[0];
        let tls = after_header(file, bytes);
        let mut scratch = [0xa5u8; 64];
        let in_buf = tls.as_ptr_range();
        match parse_client_hello(tls, &mut scratch) {
            Parsed::Complete(h, _) => {
                assert!(in_buf.contains(&h.sni.unwrap().as_ptr()));
                assert!(in_buf.contains(&h.extensions.as_ptr()));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(scratch.iter().all(|&b| b == 0xa5), "scratch was written");
        // An empty scratch is enough for a one-record hello.
        assert!(matches!(
            parse_client_hello(tls, &mut []),
            Parsed::Complete(..)
        ));
    }

    #[test]
    fn fixture_split_in_sni_is_joined_in_scratch() {
        let file = "edge-clienthello-2-records-split-in-sni.bin";
        let tls = after_header(
            file,
            include_bytes!("../../fixtures/edge-clienthello-2-records-split-in-sni.bin"),
        );
        let mut scratch = vec![0u8; MAX_HELLO_LEN];
        let in_scratch = scratch.as_ptr_range();
        match parse_client_hello(tls, &mut scratch) {
            Parsed::Complete(h, n) => {
                assert_eq!(h.sni, Some("example.test"));
                assert!(in_scratch.contains(&h.sni.unwrap().as_ptr()));
                assert_eq!(n, tls.len());
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // The body is 309 bytes: one short of it is refused, exactly 309 is enough.
        assert_eq!(
            parse_client_hello(tls, &mut [0u8; 308]).map(|_| ()),
            Parsed::Invalid(TlsError::ScratchTooSmall)
        );
        assert!(matches!(
            parse_client_hello(tls, &mut [0u8; 309]),
            Parsed::Complete(..)
        ));
    }

    #[test]
    fn truncated_fixtures_need_more() {
        let truncated = include_bytes!("../../fixtures/edge-clienthello-truncated.bin");
        assert_eq!(verdict(truncated), Parsed::NeedMore);
        let file = "seed-talk-haproxy-v2-authority-httpbin.bin";
        let seed = after_header(
            file,
            include_bytes!("../../fixtures/seed-talk-haproxy-v2-authority-httpbin.bin"),
        );
        assert_eq!(seed.len(), 288 - 42);
        assert_eq!(verdict(seed), Parsed::NeedMore);
    }

    #[test]
    fn tls_terminated_fixture_is_plaintext_not_tls() {
        let file = "lb-haproxy-2.6-v2-tls-terminated-http1.bin";
        let rest = after_header(
            file,
            include_bytes!("../../fixtures/lb-haproxy-2.6-v2-tls-terminated-http1.bin"),
        );
        assert!(rest.starts_with(b"GET "));
        for k in 1..=rest.len() {
            assert_eq!(
                verdict(&rest[..k]),
                Parsed::Invalid(TlsError::NotTls),
                "{k}"
            );
        }
    }

    // ---------------------------------------------------------------- hand-built, literal

    /// A 70-byte ClientHello over three records; the second ends inside the host name
    /// ("exam" | "ple.com"), so only joining the fragments yields the right SNI.
    const THREE_RECORDS: [u8; 89] = [
        // record 1
        0x16, // content type: handshake
        0x03, 0x01, // legacy_record_version: TLS 1.0
        0x00, 0x26, // record length: 38
        0x01, // handshake type: client_hello
        0x00, 0x00, 0x46, // handshake length: 70
        0x03, 0x03, // legacy_version: TLS 1.2
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[0..8]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[8..16]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[16..24]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[24..32]
        // record 2
        0x16, // content type: handshake
        0x03, 0x01, // legacy_record_version: TLS 1.0
        0x00, 0x16, // record length: 22
        0x00, // session_id length: 0
        0x00, 0x02, // cipher_suites length: 2
        0x13, 0x01, // TLS_AES_128_GCM_SHA256
        0x01, // compression_methods length: 1
        0x00, // null compression
        0x00, 0x1b, // extensions length: 27
        0x00, 0x00, // extension type: server_name
        0x00, 0x10, // extension length: 16
        0x00, 0x0e, // server_name_list length: 14
        0x00, // name_type: host_name
        0x00, 0x0b, // host_name length: 11
        b'e', b'x', b'a', b'm', // host_name[0..4]
        // record 3
        0x16, // content type: handshake
        0x03, 0x01, // legacy_record_version: TLS 1.0
        0x00, 0x0e, // record length: 14
        b'p', b'l', b'e', b'.', b'c', b'o', b'm', // host_name[4..11]
        0x00, 0x2b, // extension type: supported_versions
        0x00, 0x03, // extension length: 3
        0x02, // versions length: 2
        0x03, 0x04, // TLS 1.3
    ];

    /// A one-record ClientHello whose host name carries a NUL: "ex\0.com".
    const SNI_WITH_NUL: [u8; 68] = [
        0x16, // content type: handshake
        0x03, 0x01, // legacy_record_version: TLS 1.0
        0x00, 0x3f, // record length: 63
        0x01, // handshake type: client_hello
        0x00, 0x00, 0x3b, // handshake length: 59
        0x03, 0x03, // legacy_version: TLS 1.2
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[0..8]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[8..16]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[16..24]
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random[24..32]
        0x00, // session_id length: 0
        0x00, 0x02, // cipher_suites length: 2
        0x13, 0x01, // TLS_AES_128_GCM_SHA256
        0x01, // compression_methods length: 1
        0x00, // null compression
        0x00, 0x10, // extensions length: 16
        0x00, 0x00, // extension type: server_name
        0x00, 0x0c, // extension length: 12
        0x00, 0x0a, // server_name_list length: 10
        0x00, // name_type: host_name
        0x00, 0x07, // host_name length: 7
        b'e', b'x', 0x00, b'.', b'c', b'o', b'm', // host_name "ex\0.com"
    ];

    #[test]
    fn three_records_split_inside_sni() {
        let mut scratch = [0u8; 128];
        let in_scratch = scratch.as_ptr_range();
        match parse_client_hello(&THREE_RECORDS, &mut scratch) {
            Parsed::Complete(h, n) => {
                assert_eq!(n, THREE_RECORDS.len());
                assert_eq!(h.records, 3);
                assert_eq!(h.record_version, 0x0301);
                assert_eq!(h.legacy_version, 0x0303);
                assert_eq!(h.sni, Some("example.com"));
                assert!(in_scratch.contains(&h.sni.unwrap().as_ptr()));
                assert_eq!(h.versions.unwrap().iter().collect::<Vec<_>>(), [0x0304]);
                assert_eq!(h.cipher_suites, [0x13, 0x01]);
                assert_eq!(h.compression_methods, [0x00]);
                assert!(h.session_id.is_empty() && h.alpn.is_none() && !h.ech);
                assert_eq!(h.extension_count, 2);
                let types: Vec<u16> = h.iter_extensions().map(|(t, _)| t).collect();
                assert_eq!(types, [EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS]);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_prefixes_need_more(&THREE_RECORDS);
        // The body is 70 bytes.
        assert_eq!(
            parse_client_hello(&THREE_RECORDS, &mut [0u8; 69]).map(|_| ()),
            Parsed::Invalid(TlsError::ScratchTooSmall)
        );
        // Bytes after the last record (the client's next flight) are not consumed.
        let mut more = THREE_RECORDS.to_vec();
        more.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        assert_eq!(facts(&more).consumed, THREE_RECORDS.len());
    }

    #[test]
    fn sni_with_nul_is_bad_sni() {
        assert_eq!(verdict(&SNI_WITH_NUL), Parsed::Invalid(TlsError::BadSni));
        // The same bytes with 'a' in place of the NUL are fine: the NUL is what is refused.
        let mut fixed = SNI_WITH_NUL;
        fixed[SNI_WITH_NUL.len() - 5] = b'a';
        assert_eq!(facts(&fixed).sni.as_deref(), Some("exa.com"));
        assert_prefixes_need_more(&SNI_WITH_NUL);
    }

    // ---------------------------------------------------------------- hand-built, builder

    #[test]
    fn builder_matches_the_literal_arrays() {
        let three = records(
            &handshake(1, &body(&[sni(b"example.com"), versions(&[0x0304])])),
            &[38, 22],
        );
        assert_eq!(three, THREE_RECORDS);
        assert_eq!(hello(&[sni(b"ex\0.com")]), SNI_WITH_NUL);
    }

    #[test]
    fn sni_rejects_what_a_dns_name_cannot_hold() {
        let long_label = [b'a'; 64];
        let too_long = [b"a.".repeat(126).as_slice(), b"ab"].concat(); // 254 bytes
        let bad: &[&[u8]] = &[
            b"example.test\r\nHost: evil",
            b"exa mple.test",
            b"ex\xc3\xa4mple.test",
            b"example.test.",
            b".example.test",
            b"example..test",
            b"example/test",
            b"example.test:443",
            b"",
            &long_label,
            &too_long,
        ];
        for name in bad {
            assert_eq!(
                verdict(&hello(&[sni(name)])),
                Parsed::Invalid(TlsError::BadSni),
                "{name:?}"
            );
        }
        let max_len = [b"a.".repeat(126).as_slice(), b"a"].concat(); // 253 bytes
        let max_label = [b'a'; 63];
        let good: &[&[u8]] = &[
            b"a",
            b"_acme-challenge.Example-1.test",
            &max_label,
            &max_len,
        ];
        for name in good {
            let got = facts(&hello(&[sni(name)])).sni.unwrap();
            assert_eq!(got.as_bytes(), *name);
        }
    }

    #[test]
    fn server_name_extension_shapes() {
        let bad = |data: Vec<u8>| verdict(&hello(&[(EXT_SERVER_NAME, data)]));
        // Empty extension_data: what a server sends back, never a client.
        assert_eq!(bad(vec![]), Parsed::Invalid(TlsError::BadSni));
        // An empty server_name_list.
        assert_eq!(bad(vec![0x00, 0x00]), Parsed::Invalid(TlsError::BadSni));
        // A list length past the extension.
        assert_eq!(
            bad(vec![0x00, 0x05, 0x00, 0x00, 0x01, b'a']),
            Parsed::Invalid(TlsError::BadSni)
        );
        // Bytes after the list.
        let mut trailing = sni(b"a.test").1;
        trailing.push(0);
        assert_eq!(bad(trailing), Parsed::Invalid(TlsError::BadSni));
        // Two host_name entries.
        let two = [0x00, 0x08, 0x00, 0x00, 0x01, b'a', 0x00, 0x00, 0x01, b'b'].to_vec();
        assert_eq!(bad(two), Parsed::Invalid(TlsError::BadSni));
        // An unknown name_type (skipped as u16-length data) before the host_name.
        let other_type = [
            0x00, 0x09, 0x07, 0x00, 0x02, 0xff, 0xfe, 0x00, 0x00, 0x01, b'h',
        ]
        .to_vec();
        assert_eq!(
            facts(&hello(&[(EXT_SERVER_NAME, other_type)]))
                .sni
                .as_deref(),
            Some("h")
        );
    }

    #[test]
    fn extension_overrunning_the_block_is_invalid() {
        let mut b = body(&[sni(b"a.test")]);
        // The server_name extension length, just after the block length and the type.
        let at = 2 + 32 + 1 + 4 + 2 + 2 + 2;
        b[at + 1] += 1;
        assert_eq!(
            verdict(&record(22, &handshake(1, &b))),
            Parsed::Invalid(TlsError::ExtensionOverrun)
        );
        // A block ending with a partial extension header.
        let mut b = body(&[]);
        let n = b.len();
        b[n - 1] = 3;
        b.extend_from_slice(&[0x00, 0x01, 0x00]);
        assert_eq!(
            verdict(&record(22, &handshake(1, &b))),
            Parsed::Invalid(TlsError::ExtensionOverrun)
        );
        // An extensions block longer than the rest of the hello.
        let mut b = body(&[]);
        let n = b.len();
        b[n - 1] = 4;
        assert_eq!(
            verdict(&record(22, &handshake(1, &b))),
            Parsed::Invalid(TlsError::ExtensionOverrun)
        );
        // Bytes after the extensions block, inside the hello.
        let mut b = body(&[]);
        b.push(0);
        assert_eq!(
            verdict(&record(22, &handshake(1, &b))),
            Parsed::Invalid(TlsError::TrailingData)
        );
    }

    #[test]
    fn oversized_lengths_are_invalid_at_once() {
        // Record length 0xffff, nothing else received yet.
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0xff, 0xff]),
            Parsed::Invalid(TlsError::RecordTooLong)
        );
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0x40, 0x01]),
            Parsed::Invalid(TlsError::RecordTooLong)
        );
        assert_eq!(verdict(&[0x16, 0x03, 0x01, 0x40, 0x00]), Parsed::NeedMore);
        // Handshake length 0xffff: known too long once its middle byte is in.
        let declared_ffff = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff];
        assert_eq!(verdict(&declared_ffff[..7]), Parsed::NeedMore);
        assert_eq!(
            verdict(&declared_ffff[..8]),
            Parsed::Invalid(TlsError::HelloTooLong)
        );
        assert_eq!(
            verdict(&declared_ffff),
            Parsed::Invalid(TlsError::HelloTooLong)
        );
        // Handshake length 0xffffff: known too long from its first byte.
        let declared_ffffff = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
        assert_eq!(verdict(&declared_ffffff[..6]), Parsed::NeedMore);
        assert_eq!(
            verdict(&declared_ffffff[..7]),
            Parsed::Invalid(TlsError::HelloTooLong)
        );
        assert_eq!(
            verdict(&declared_ffffff),
            Parsed::Invalid(TlsError::HelloTooLong)
        );
        // Exactly the cap waits; one more is refused.
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00]),
            Parsed::NeedMore
        );
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x01]),
            Parsed::Invalid(TlsError::HelloTooLong)
        );
        // The handshake length split across 1-byte records is checked just the same.
        let split = records(&[0x01, 0x00, 0xff, 0xff], &[1, 1, 1]);
        assert_eq!(verdict(&split), Parsed::Invalid(TlsError::HelloTooLong));
    }

    #[test]
    fn empty_records_are_invalid() {
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Parsed::Invalid(TlsError::EmptyRecord)
        );
        let mut b = records(&handshake(1, &body(&[])), &[10]);
        b.truncate(RECORD_HEADER_LEN + 10);
        b.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x00]);
        assert_eq!(verdict(&b), Parsed::Invalid(TlsError::EmptyRecord));
    }

    #[test]
    fn non_handshake_record_before_the_hello_ends_is_invalid() {
        let msg = handshake(1, &body(&[sni(b"a.test")]));
        let first = record(22, &msg[..20]);
        for content_type in [0x14, 0x15, 0x17] {
            let mut b = first.clone();
            b.push(content_type);
            assert_eq!(verdict(&b), Parsed::Invalid(TlsError::NotHandshakeRecord));
            b.truncate(first.len());
            b.extend(record(content_type, &[0x01]));
            b.extend(record(22, &msg[20..]));
            assert_eq!(verdict(&b), Parsed::Invalid(TlsError::NotHandshakeRecord));
        }
    }

    #[test]
    fn other_record_headers_are_checked() {
        for first in [b'G', b'P', 0x80, 0x00, 0x14, 0x15, 0x17] {
            assert!(!could_be_tls(first));
            assert_eq!(verdict(&[first]), Parsed::Invalid(TlsError::NotTls));
        }
        assert!(could_be_tls(0x16));
        assert_eq!(verdict(&[]), Parsed::NeedMore);
        assert_eq!(verdict(&[0x16]), Parsed::NeedMore);
        assert_eq!(
            verdict(&[0x16, 0x02]),
            Parsed::Invalid(TlsError::BadRecordVersion)
        );
        let mut b = records(&handshake(1, &body(&[])), &[10]);
        b[RECORD_HEADER_LEN + 10 + 1] = 0x04;
        assert_eq!(verdict(&b), Parsed::Invalid(TlsError::BadRecordVersion));
        // SSL 3.0 and TLS 1.3-style record versions are accepted.
        for minor in [0x00, 0x03] {
            let mut b = hello(&[]);
            b[2] = minor;
            assert_eq!(facts(&b).record_version, 0x0300 | u16::from(minor));
        }
    }

    #[test]
    fn server_hello_is_not_client_hello() {
        let b = record(22, &handshake(2, &body(&[])));
        assert_eq!(verdict(&b[..6]), Parsed::Invalid(TlsError::NotClientHello));
        assert_eq!(verdict(&b), Parsed::Invalid(TlsError::NotClientHello));
    }

    #[test]
    fn duplicate_extensions_are_invalid() {
        let dup_sni = hello(&[sni(b"a.test"), sni(b"a.test")]);
        assert_eq!(
            verdict(&dup_sni),
            Parsed::Invalid(TlsError::DuplicateExtension)
        );
        let dup_unknown = hello(&[(0xff01, vec![0]), (0x1234, vec![]), (0xff01, vec![0])]);
        assert_eq!(
            verdict(&dup_unknown),
            Parsed::Invalid(TlsError::DuplicateExtension)
        );
        let distinct = hello(&[(0xff01, vec![0]), (0x1234, vec![]), (0xffff, vec![])]);
        assert_eq!(facts(&distinct).exts, 3);
    }

    #[test]
    fn grease_is_ignored_but_counted() {
        let b = hello(&[
            (0x0a0a, vec![]),                            // GREASE extension, empty
            versions(&[0x3a3a, 0x0304, 0x0303, 0xfafa]), // GREASE first and last
            alpn(&[b"h2"]),
            (0xdada, vec![0x00]), // GREASE extension, one byte
        ]);
        let f = facts(&b);
        assert_eq!(f.versions.as_deref(), Some("0x0304,0x0303"));
        assert_eq!(f.exts, 4);
        let mut scratch = [];
        let Parsed::Complete(h, _) = parse_client_hello(&b, &mut scratch) else {
            panic!()
        };
        assert_eq!(h.versions.unwrap().as_bytes().len(), 8);
        assert_eq!(
            h.versions.unwrap().into_iter().collect::<Vec<_>>(),
            [0x0304, 0x0303]
        );
        for v in [0x0a0a, 0x1a1a, 0x7a7a, 0xaaaa, 0xfafa] {
            assert!(is_grease(v), "{v:#06x}");
        }
        for v in [0x0a1a, 0x0b0b, 0x0304, 0xabab, 0x0a0b, 0xfe0d] {
            assert!(!is_grease(v), "{v:#06x}");
        }
    }

    #[test]
    fn ech_present_keeps_the_outer_sni() {
        let ech_outer = vec![
            0x00, // ECHClientHello type: outer
            0x00, 0x01, 0x00, 0x01, // cipher suite: HKDF-SHA256, AES-128-GCM
            0x2a, // config_id
            0x00, 0x00, // enc length (empty here)
            0x00, 0x02, 0xde, 0xad, // payload length and payload
        ];
        let b = hello(&[
            sni(b"public.example"),
            (EXT_ENCRYPTED_CLIENT_HELLO, ech_outer),
        ]);
        let f = facts(&b);
        assert!(f.ech);
        assert_eq!(f.sni.as_deref(), Some("public.example"));
        assert!(!facts(&hello(&[sni(b"public.example")])).ech);
    }

    #[test]
    fn scratch_too_small_for_a_split_hello() {
        let msg = handshake(1, &body(&[sni(b"a.test"), alpn(&[b"h2"])]));
        let b = records(&msg, &[30]);
        let body_len = msg.len() - HANDSHAKE_HEADER_LEN;
        let mut small = vec![0u8; body_len - 1];
        assert_eq!(
            parse_client_hello(&b, &mut small).map(|_| ()),
            Parsed::Invalid(TlsError::ScratchTooSmall)
        );
        // Still NeedMore while incomplete: the scratch is not looked at before then.
        assert_eq!(
            parse_client_hello(&b[..b.len() - 1], &mut small).map(|_| ()),
            Parsed::NeedMore
        );
        let mut enough = vec![0u8; body_len];
        assert!(matches!(
            parse_client_hello(&b, &mut enough),
            Parsed::Complete(..)
        ));
    }

    #[test]
    fn hello_without_extensions_is_valid() {
        let mut b = body(&[]);
        b.truncate(b.len() - 2); // drop the (empty) extensions block entirely
        let bytes = record(22, &handshake(1, &b));
        let mut scratch = [];
        let Parsed::Complete(h, n) = parse_client_hello(&bytes, &mut scratch) else {
            panic!()
        };
        assert_eq!(n, bytes.len());
        assert_eq!(h.extension_count, 0);
        assert!(h.extensions.is_empty());
        assert!(h.sni.is_none() && h.alpn.is_none() && h.versions.is_none() && !h.ech);
        assert_prefixes_need_more(&bytes);
        // An empty extensions block is valid too.
        assert_eq!(facts(&hello(&[])).exts, 0);
        // One stray byte where the block length would be is not.
        let mut b1 = b.clone();
        b1.push(0);
        assert_eq!(
            verdict(&record(22, &handshake(1, &b1))),
            Parsed::Invalid(TlsError::ExtensionOverrun)
        );
    }

    #[test]
    fn one_byte_records_are_joined() {
        let msg = handshake(
            1,
            &body(&[sni(b"tiny.example"), alpn(&[b"h2", b"http/1.1"])]),
        );
        let b = records(&msg, &vec![1; msg.len() - 1]);
        let f = facts(&b);
        assert_eq!(f.records, msg.len());
        assert_eq!(f.consumed, msg.len() * (RECORD_HEADER_LEN + 1));
        assert_eq!(f.sni.as_deref(), Some("tiny.example"));
        assert_eq!(f.alpn.as_deref(), Some("h2,http/1.1"));
        assert_prefixes_need_more(&b);
    }

    #[test]
    fn record_carrying_more_than_the_hello_is_invalid() {
        let mut payload = handshake(1, &body(&[]));
        payload.extend_from_slice(&[0x0b, 0x00, 0x00, 0x00]); // an empty Certificate after it
        let b = record(22, &payload);
        assert_eq!(verdict(&b), Parsed::Invalid(TlsError::NotOnRecordBoundary));
        // Known as soon as the handshake header is in, before the record is complete.
        assert_eq!(
            verdict(&b[..9]),
            Parsed::Invalid(TlsError::NotOnRecordBoundary)
        );
    }

    #[test]
    fn fixed_fields_are_checked() {
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = body(&[]);
            f(&mut b);
            verdict(&record(22, &handshake(1, &b)))
        };
        // session_id of 33 bytes.
        let sid = with(&|b| {
            b[34] = 33;
            b.splice(35..35, [0u8; 33]);
        });
        assert_eq!(sid, Parsed::Invalid(TlsError::BadSessionId));
        // 32 is the most allowed.
        let sid32 = with(&|b| {
            b[34] = 32;
            b.splice(35..35, [0u8; 32]);
        });
        assert_eq!(
            sid32,
            Parsed::Complete((), 5 + 4 + 2 + 32 + 1 + 32 + 4 + 2 + 2)
        );
        // Empty and odd cipher suite lists.
        assert_eq!(
            with(&|b| {
                b.splice(35..39, [0x00, 0x00]);
            }),
            Parsed::Invalid(TlsError::BadCipherSuites)
        );
        assert_eq!(
            with(&|b| {
                b.splice(35..39, [0x00, 0x01, 0x13]);
            }),
            Parsed::Invalid(TlsError::BadCipherSuites)
        );
        // No compression method.
        assert_eq!(
            with(&|b| {
                b.splice(39..41, [0x00]);
            }),
            Parsed::Invalid(TlsError::BadCompressionMethods)
        );
        // A hello that ends inside the random, or with a cipher list past its end.
        assert_eq!(
            with(&|b| b.truncate(20)),
            Parsed::Invalid(TlsError::HelloOverrun)
        );
        assert_eq!(
            with(&|b| b[36] = 0x40),
            Parsed::Invalid(TlsError::HelloOverrun)
        );
        assert_eq!(
            with(&|b| b.clear()),
            Parsed::Invalid(TlsError::HelloOverrun)
        );
    }

    #[test]
    fn alpn_shapes() {
        let f = facts(&hello(&[alpn(&[b"h2", b"http/1.1"])]));
        assert_eq!(f.alpn.as_deref(), Some("h2,http/1.1"));
        let bytes = hello(&[alpn(&[b"h2", b"a,b\\", b"\x00\r\n \xff"])]);
        let mut scratch = [];
        let Parsed::Complete(h, _) = parse_client_hello(&bytes, &mut scratch) else {
            panic!()
        };
        let list = h.alpn.unwrap();
        assert_eq!(list.to_string(), r"h2,a\x2cb\x5c,\x00\x0d\x0a\x20\xff");
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [&b"h2"[..], b"a,b\\", b"\x00\r\n \xff"]
        );
        assert_eq!(list.as_bytes()[0], 2);
        let long = [b'x'; 255];
        assert_eq!(facts(&hello(&[alpn(&[&long])])).alpn.unwrap().len(), 255);

        let bad = |data: Vec<u8>| verdict(&hello(&[(EXT_ALPN, data)]));
        assert_eq!(bad(vec![]), Parsed::Invalid(TlsError::BadAlpn)); // no list length
        assert_eq!(bad(vec![0x00, 0x00]), Parsed::Invalid(TlsError::BadAlpn)); // empty list
        assert_eq!(
            bad(vec![0x00, 0x01, 0x00]),
            Parsed::Invalid(TlsError::BadAlpn)
        ); // empty name
        assert_eq!(
            bad(vec![0x00, 0x03, 0x03, b'h', b'2']),
            Parsed::Invalid(TlsError::BadAlpn)
        ); // name past list
        assert_eq!(
            bad(vec![0x00, 0x04, 0x02, b'h', b'2']),
            Parsed::Invalid(TlsError::BadAlpn)
        ); // list past ext
        assert_eq!(
            bad(vec![0x00, 0x03, 0x02, b'h', b'2', 0x00]),
            Parsed::Invalid(TlsError::BadAlpn)
        ); // trailing
    }

    #[test]
    fn supported_versions_shapes() {
        let f = facts(&hello(&[versions(&[0x0304, 0x0303, 0x0302, 0x0301])]));
        assert_eq!(f.versions.as_deref(), Some("0x0304,0x0303,0x0302,0x0301"));
        let bad = |data: Vec<u8>| verdict(&hello(&[(EXT_SUPPORTED_VERSIONS, data)]));
        let invalid = Parsed::Invalid(TlsError::BadSupportedVersions);
        assert_eq!(bad(vec![]), invalid); // no list length
        assert_eq!(bad(vec![0x00]), invalid); // empty list
        assert_eq!(bad(vec![0x03, 0x03, 0x04, 0x03]), invalid); // odd length
        assert_eq!(bad(vec![0x04, 0x03, 0x04]), invalid); // list past ext
        assert_eq!(bad(vec![0x02, 0x03, 0x04, 0x00]), invalid); // trailing
    }

    #[test]
    fn errors_have_distinct_labels_and_sentences() {
        use TlsError::*;
        let all = [
            NotTls,
            BadRecordVersion,
            EmptyRecord,
            RecordTooLong,
            NotHandshakeRecord,
            NotClientHello,
            HelloTooLong,
            NotOnRecordBoundary,
            ScratchTooSmall,
            HelloOverrun,
            BadSessionId,
            BadCipherSuites,
            BadCompressionMethods,
            TrailingData,
            ExtensionOverrun,
            DuplicateExtension,
            BadSni,
            BadAlpn,
            BadSupportedVersions,
        ];
        let mut labels: Vec<&str> = all.iter().map(TlsError::as_str).collect();
        for l in &labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        for e in all {
            let s = e.to_string();
            assert!(s.len() > 10 && !s.ends_with('.'), "{s}");
        }
        assert_eq!(NotTls.as_str(), "not_tls");
        assert_eq!(ScratchTooSmall.as_str(), "scratch_too_small");
    }
}
