//! HTTP/1.x heads as sluice meets them: the plain-text request a client opens with (read for
//! its Host header, so that non-TLS traffic can be routed by name), the reply a forward proxy
//! gives to CONNECT, and the CONNECT request sluice sends to open an upstream leg through one.
//!
//! [`parse_request_host`] and [`parse_connect_reply`] take every byte received so far and
//! answer complete / need more / invalid; they fail at the first byte that can never be valid
//! where it stands, and are strict where HTTP allows leniency (CRLF only, no line folding, one
//! Host) because two readers that disagree about a head are how requests get smuggled.
//! [`emit_connect`] is a security boundary: host names and header values come from SNI, PROXY
//! AUTHORITY TLVs and configuration, and none of them may carry a CR, LF or NUL upstream.
//!
//! It must never: allocate, panic, read past the bytes it was given, consume the bytes that
//! follow a head (they belong to the tunnel or to the request body), read past a hard cap
//! ([`MAX_REQUEST_HEAD`], [`MAX_REPLY_HEAD`]), or write a byte of a CONNECT request before
//! every input has been checked.
use core::fmt;

use super::name::{is_dns_name, is_host, is_ipv6_literal};
use super::Parsed;

/// Our cap on a request head, request line and blank line included.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// Our cap on a CONNECT reply head, status line and blank line included.
pub const MAX_REPLY_HEAD: usize = 8192;

/// Header names a configured CONNECT header may not use: sluice writes Host itself, and a
/// body length on CONNECT would make the proxy swallow the first tunnel bytes as a body.
const RESERVED_CONNECT_HEADERS: [&[u8]; 3] = [b"host", b"content-length", b"transfer-encoding"];

/// True when `first` can start an HTTP/1.x request: every registered method begins with an
/// uppercase ASCII letter. A TLS record (0x16) or a PROXY v2 signature (0x0D) cannot.
pub fn could_be_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// The head of a plain HTTP/1.x request, borrowing the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method, a token (`GET`, `POST`, ...).
    pub method: &'a [u8],
    /// The request target as sent (origin, absolute, authority or asterisk form).
    pub target: &'a [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The Host header's host, validated, without the port and without the brackets of an
    /// IPv6 literal (so it can be handed to [`emit_connect`] as is). `None` only for an
    /// HTTP/1.0 request without Host.
    pub host: Option<&'a [u8]>,
    /// The Host header's port, when it has one.
    pub port: Option<u16>,
    /// Bytes from the start of the request through the blank line; a body, if any, follows.
    pub head_len: usize,
}

/// A forward proxy's reply to CONNECT, borrowing the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply<'a> {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The status code, 100..=599; what it means is the caller's business (2xx connects).
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: &'a [u8],
    /// Bytes from the start of the reply through the blank line; what follows is tunnel data.
    pub head_len: usize,
}

/// Why bytes can never become a valid request or reply head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request method is empty, or holds a byte that is not a token character.
    BadMethod,
    /// The request target is empty, or holds a byte that is not visible ASCII.
    BadTarget,
    /// The request line does not end in `HTTP/1.0` or `HTTP/1.1`.
    BadVersion,
    /// The reply's status line is not `HTTP/1.x SP 3DIGIT [SP reason] CRLF`.
    BadStatusLine,
    /// A line ends with a bare LF, or a CR is not followed by LF.
    BadLineEnd,
    /// A header name is empty or holds a byte that is not a token character (space before
    /// the colon included).
    BadHeaderName,
    /// A header value holds a control byte other than HTAB.
    BadHeaderValue,
    /// A header line starts with SP or HTAB (obsolete line folding).
    LineFolding,
    /// More than one Host header.
    DuplicateHost,
    /// An HTTP/1.1 request without a Host header.
    MissingHost,
    /// The Host value is not a DNS name or IP literal with an optional port.
    BadHost,
    /// No blank line within the cap ([`MAX_REQUEST_HEAD`] or [`MAX_REPLY_HEAD`]).
    TooLong,
}

impl HttpError {
    /// Every variant, for tests and for metric registration.
    pub const ALL: [HttpError; 12] = [
        HttpError::BadMethod,
        HttpError::BadTarget,
        HttpError::BadVersion,
        HttpError::BadStatusLine,
        HttpError::BadLineEnd,
        HttpError::BadHeaderName,
        HttpError::BadHeaderValue,
        HttpError::LineFolding,
        HttpError::DuplicateHost,
        HttpError::MissingHost,
        HttpError::BadHost,
        HttpError::TooLong,
    ];

    /// A stable snake_case label, for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            HttpError::BadMethod => "http_bad_method",
            HttpError::BadTarget => "http_bad_target",
            HttpError::BadVersion => "http_bad_version",
            HttpError::BadStatusLine => "http_bad_status_line",
            HttpError::BadLineEnd => "http_bad_line_end",
            HttpError::BadHeaderName => "http_bad_header_name",
            HttpError::BadHeaderValue => "http_bad_header_value",
            HttpError::LineFolding => "http_line_folding",
            HttpError::DuplicateHost => "http_duplicate_host",
            HttpError::MissingHost => "http_missing_host",
            HttpError::BadHost => "http_bad_host",
            HttpError::TooLong => "http_too_long",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::BadMethod => "the HTTP request method is empty or not a token",
            HttpError::BadTarget => "the HTTP request target is empty or not visible ASCII",
            HttpError::BadVersion => "the HTTP request is neither HTTP/1.0 nor HTTP/1.1",
            HttpError::BadStatusLine => "the HTTP reply does not start with a valid status line",
            HttpError::BadLineEnd => "an HTTP line ends with something other than CRLF",
            HttpError::BadHeaderName => "an HTTP header name is empty or not a token",
            HttpError::BadHeaderValue => "an HTTP header value contains a control byte",
            HttpError::LineFolding => "an HTTP header line is folded onto the line before",
            HttpError::DuplicateHost => "the HTTP request has more than one Host header",
            HttpError::MissingHost => "the HTTP/1.1 request has no Host header",
            HttpError::BadHost => "the HTTP Host header is not a host name or IP with a port",
            HttpError::TooLong => "the HTTP head does not end within sluice's limit",
        })
    }
}

impl std::error::Error for HttpError {}

/// Parses the head of a plain HTTP/1.x request from all the bytes received so far.
///
/// `Complete(head, head.head_len)` once the blank line is in; bytes after it are not consumed.
/// `NeedMore` while `buf` is a valid prefix shorter than [`MAX_REQUEST_HEAD`]; `Invalid` at
/// the first byte that rules the head out, or `TooLong` when the cap is reached first.
pub fn parse_request_host(buf: &[u8]) -> Parsed<RequestHead<'_>, HttpError> {
    capped(buf, MAX_REQUEST_HEAD, request_head).map_len(|h| h.head_len)
}

/// Parses a forward proxy's reply to CONNECT from all the bytes received so far.
///
/// `Complete(reply, reply.head_len)` once the blank line is in; the bytes after it are the
/// first bytes of the tunnel and are not consumed. `Invalid(BadStatusLine)` as soon as the
/// status line goes wrong, `Invalid(TooLong)` when [`MAX_REPLY_HEAD`] is reached first.
pub fn parse_connect_reply(buf: &[u8]) -> Parsed<ConnectReply<'_>, HttpError> {
    capped(buf, MAX_REPLY_HEAD, reply_head).map_len(|r| r.head_len)
}

/// Runs `head` over at most `cap` bytes of `buf`; running out of bytes at the cap is TooLong.
fn capped<'a, T>(
    buf: &'a [u8],
    cap: usize,
    head: fn(&mut Scan<'a>) -> Scanned<T>,
) -> Result<T, Halt> {
    let window = buf.get(..cap).unwrap_or(buf);
    match head(&mut Scan::new(window)) {
        Err(Halt::NeedMore) if buf.len() >= cap => Err(Halt::Invalid(HttpError::TooLong)),
        other => other,
    }
}

/// Turns an internal step into the public outcome, reading the consumed length off the value.
trait IntoParsed<T> {
    fn map_len(self, len: impl FnOnce(&T) -> usize) -> Parsed<T, HttpError>;
}

impl<T> IntoParsed<T> for Scanned<T> {
    fn map_len(self, len: impl FnOnce(&T) -> usize) -> Parsed<T, HttpError> {
        match self {
            Ok(v) => {
                let n = len(&v);
                Parsed::Complete(v, n)
            }
            Err(Halt::NeedMore) => Parsed::NeedMore,
            Err(Halt::Invalid(e)) => Parsed::Invalid(e),
        }
    }
}

/// Why a scan stopped short of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    NeedMore,
    Invalid(HttpError),
}

impl From<HttpError> for Halt {
    fn from(e: HttpError) -> Self {
        Halt::Invalid(e)
    }
}

/// What a scan produced: the value, or why it stopped ([`Halt`]), so that `?` carries both
/// "need more" and "invalid" upwards. (Internal: the public answer is a [`Parsed`].)
type Scanned<T> = Result<T, Halt>;

/// A read position over the received bytes; `pos <= buf.len()` always holds, and running off
/// the end is `Halt::NeedMore`, never a panic.
struct Scan<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Scan { buf, pos: 0 }
    }

    /// The next byte, not consumed.
    fn peek(&self) -> Scanned<u8> {
        self.buf.get(self.pos).copied().ok_or(Halt::NeedMore)
    }

    /// Consumes one byte, if there is one.
    fn bump(&mut self) {
        if self.pos < self.buf.len() {
            self.pos = self.pos.saturating_add(1);
        }
    }

    /// The next byte, consumed.
    fn next(&mut self) -> Scanned<u8> {
        let b = self.peek()?;
        self.bump();
        Ok(b)
    }

    /// Consumes the longest run of bytes that satisfy `f` (possibly none).
    fn run(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.buf.get(self.pos).is_some_and(|&b| f(b)) {
            self.bump();
        }
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    /// Consumes `lit` exactly; `e` at the first byte that differs.
    fn expect(&mut self, lit: &[u8], e: HttpError) -> Scanned<()> {
        for &want in lit {
            if self.peek()? != want {
                return Err(e.into());
            }
            self.bump();
        }
        Ok(())
    }

    /// Consumes CRLF: `other` when the next byte is neither CR nor LF, `line_end` for a bare
    /// LF or a CR followed by anything but LF.
    fn crlf(&mut self, line_end: HttpError, other: HttpError) -> Scanned<()> {
        match self.next()? {
            b'\r' => match self.next()? {
                b'\n' => Ok(()),
                _ => Err(line_end.into()),
            },
            b'\n' => Err(line_end.into()),
            _ => Err(other.into()),
        }
    }
}

/// RFC 9110 §5.6.2 tchar: a byte of a method or a header name.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Visible ASCII, 0x21..=0x7E.
fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// A byte of a received field value or reason phrase: VCHAR, SP, HTAB or obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || is_vchar(b) || b >= 0x80
}

/// A byte sluice is willing to send in a header value: VCHAR, SP or HTAB, nothing else.
pub fn is_sendable_field_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || is_vchar(b)
}

/// `v` without leading and trailing SP / HTAB (RFC 9110 §5.5 OWS).
fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    v.get(start..end).unwrap_or(&[])
}

/// One header line, or the blank line that ends the head.
enum Line<'a> {
    /// Any header sluice does not look into.
    Field,
    /// A Host header, validated: the host (IPv6 without brackets) and the port if any.
    Host(&'a [u8], Option<u16>),
    /// The blank line.
    End,
}

/// Reads one header line. With `host_aware`, a Host header is validated byte by byte as it
/// arrives (a second one is refused at its colon); otherwise values are only checked for
/// control bytes.
fn header_line<'a>(s: &mut Scan<'a>, host_aware: bool, host_seen: bool) -> Scanned<Line<'a>> {
    match s.peek()? {
        b'\r' | b'\n' => {
            s.crlf(HttpError::BadLineEnd, HttpError::BadLineEnd)?;
            return Ok(Line::End);
        }
        b' ' | b'\t' => return Err(HttpError::LineFolding.into()),
        _ => {}
    }
    let name = s.run(is_tchar);
    if name.is_empty() {
        return Err(HttpError::BadHeaderName.into());
    }
    s.expect(b":", HttpError::BadHeaderName)?;
    let is_host = host_aware && name.eq_ignore_ascii_case(b"host");
    if is_host && host_seen {
        return Err(HttpError::DuplicateHost.into());
    }
    let raw = s.run(is_field_byte);
    match s.peek() {
        Err(Halt::NeedMore) => {
            // Fail early: refuse a partial Host value that no continuation can repair.
            if is_host && authority(trim_ows(raw), false).is_none() {
                return Err(HttpError::BadHost.into());
            }
            Err(Halt::NeedMore)
        }
        Ok(b'\r') if is_host => {
            // The CR ends the value whatever follows, so it can be judged now.
            let (host, port) = authority(trim_ows(raw), true).ok_or(HttpError::BadHost)?;
            s.crlf(HttpError::BadHost, HttpError::BadHost)?;
            Ok(Line::Host(host, port))
        }
        Ok(b'\r') | Ok(b'\n') if !is_host => {
            s.crlf(HttpError::BadLineEnd, HttpError::BadLineEnd)?;
            Ok(Line::Field)
        }
        // A bare LF, NUL, DEL or other control byte (in a Host value, also anything that
        // is not a host byte, which `authority` reports above once the line ends).
        _ if is_host => Err(HttpError::BadHost.into()),
        _ => Err(HttpError::BadHeaderValue.into()),
    }
}

/// `METHOD SP target SP HTTP/1.x CRLF *(header CRLF) CRLF`, with exactly one valid Host
/// (none allowed for HTTP/1.0).
fn request_head<'a>(s: &mut Scan<'a>) -> Scanned<RequestHead<'a>> {
    let method = s.run(is_tchar);
    if method.is_empty() {
        s.peek()?;
        return Err(HttpError::BadMethod.into());
    }
    s.expect(b" ", HttpError::BadMethod)?;
    let target = s.run(is_vchar);
    if target.is_empty() {
        s.peek()?;
        return Err(HttpError::BadTarget.into());
    }
    s.expect(b" ", HttpError::BadTarget)?;
    s.expect(b"HTTP/1.", HttpError::BadVersion)?;
    let version_minor = match s.next()? {
        b'0' => 0,
        b'1' => 1,
        _ => return Err(HttpError::BadVersion.into()),
    };
    s.crlf(HttpError::BadLineEnd, HttpError::BadVersion)?;

    let mut host: Option<(&[u8], Option<u16>)> = None;
    loop {
        // The blank line's CR already settles a missing Host.
        if host.is_none() && version_minor == 1 && s.peek()? == b'\r' {
            return Err(HttpError::MissingHost.into());
        }
        match header_line(s, true, host.is_some())? {
            Line::End => break,
            Line::Host(h, p) => host = Some((h, p)),
            Line::Field => {}
        }
    }
    Ok(RequestHead {
        method,
        target,
        version_minor,
        host: host.map(|(h, _)| h),
        port: host.and_then(|(_, p)| p),
        head_len: s.pos,
    })
}

/// `HTTP/1.x SP 3DIGIT [SP reason] CRLF *(header CRLF) CRLF`.
fn reply_head<'a>(s: &mut Scan<'a>) -> Scanned<ConnectReply<'a>> {
    const BAD: HttpError = HttpError::BadStatusLine;
    s.expect(b"HTTP/1.", BAD)?;
    let version_minor = match s.next()? {
        b'0' => 0,
        b'1' => 1,
        _ => return Err(BAD.into()),
    };
    s.expect(b" ", BAD)?;
    let mut status: u16 = 0;
    for i in 0..3 {
        let b = s.next()?;
        // RFC 9110 §15: the first digit is the class, 1 to 5.
        let ok = if i == 0 {
            (b'1'..=b'5').contains(&b)
        } else {
            b.is_ascii_digit()
        };
        if !ok {
            return Err(BAD.into());
        }
        status = status
            .checked_mul(10)
            .and_then(|v| v.checked_add(u16::from(b - b'0')))
            .ok_or(BAD)?;
    }
    let reason = match s.peek()? {
        b' ' => {
            s.bump();
            s.run(is_field_byte)
        }
        _ => &[],
    };
    s.crlf(BAD, BAD)?;
    while let Line::Field | Line::Host(..) = header_line(s, false, false)? {}
    Ok(ConnectReply {
        version_minor,
        status,
        reason,
        head_len: s.pos,
    })
}

/// Splits a Host value (OWS already trimmed) into host and port and validates both: a DNS
/// name or IPv4 literal, or a bracketed IPv6 literal, then optionally `:port` (1..=65535,
/// decimal, no leading zero). The host comes back without brackets.
///
/// With `complete` false, `v` is only what has arrived of the value: the answer is `Some`
/// (with a meaningless value) when some continuation could still make it valid.
fn authority(v: &[u8], complete: bool) -> Option<(&[u8], Option<u16>)> {
    let (host, after) = match v.strip_prefix(b"[") {
        Some(inner) => match inner.iter().position(|&b| b == b']') {
            Some(close) => {
                let literal = inner.get(..close)?;
                if !is_ipv6_literal(literal, true) {
                    return None;
                }
                (literal, inner.get(close.checked_add(1)?..)?)
            }
            None => {
                return (!complete && is_ipv6_literal(inner, false)).then_some((inner, None));
            }
        },
        None => {
            let colon = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            let name = v.get(..colon)?;
            // A colon ends the name, so the name is whole even if the value is not.
            if !is_dns_name(name, complete || colon < v.len()) {
                return None;
            }
            (name, v.get(colon..)?)
        }
    };
    let port = match after.split_first() {
        None => None,
        Some((b':', digits)) => Some(port(digits, complete)?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// A port: 1..=65535 in decimal without a leading zero. Partial: a viable prefix.
fn port(digits: &[u8], complete: bool) -> Option<u16> {
    if digits.first() == Some(&b'0') || (complete && digits.is_empty()) {
        return None;
    }
    let mut value: u16 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u16::from(b - b'0'))?;
    }
    Some(value)
}

/// A CONNECT request to send to a forward proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// The destination host: a name, an IPv4 address, or an IPv6 address without brackets
    /// (the emitter adds them).
    pub host: &'a [u8],
    /// The destination port, 1..=65535.
    pub port: u16,
    /// Extra headers in order (e.g. `Proxy-Authorization`), each written `name: value`.
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

/// Why [`emit_connect`] refused to write a request; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The host is not a host name or IPv6 address (see [`super::name::is_host`]).
    BadHost,
    /// The port is 0.
    BadPort,
    /// The name of the header at this index is empty or not a token.
    BadHeaderName(usize),
    /// The header at this index is one sluice writes itself or must never send on CONNECT
    /// (Host, Content-Length, Transfer-Encoding).
    ReservedHeader(usize),
    /// The value of the header at this index holds a byte other than visible ASCII, SP, HTAB.
    BadHeaderValue(usize),
    /// The output buffer cannot hold the request.
    BufferTooSmall,
}

impl EmitError {
    /// A stable snake_case label, for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            EmitError::BadHost => "emit_connect_bad_host",
            EmitError::BadPort => "emit_connect_bad_port",
            EmitError::BadHeaderName(_) => "emit_connect_bad_header_name",
            EmitError::ReservedHeader(_) => "emit_connect_reserved_header",
            EmitError::BadHeaderValue(_) => "emit_connect_bad_header_value",
            EmitError::BufferTooSmall => "emit_connect_buffer_too_small",
        }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::BadHost => f.write_str("the CONNECT host is not a host name or IP address"),
            EmitError::BadPort => f.write_str("the CONNECT port is 0"),
            EmitError::BadHeaderName(i) => {
                write!(f, "the name of CONNECT header {i} is empty or not a token")
            }
            EmitError::ReservedHeader(i) => {
                write!(
                    f,
                    "CONNECT header {i} is one sluice must not send as configured"
                )
            }
            EmitError::BadHeaderValue(i) => write!(
                f,
                "the value of CONNECT header {i} holds a byte other than visible ASCII, SP or HTAB"
            ),
            EmitError::BufferTooSmall => {
                f.write_str("the buffer is too small for the CONNECT request")
            }
        }
    }
}

impl std::error::Error for EmitError {}

/// Writes `CONNECT <authority> HTTP/1.1`, `Host: <authority>`, the extra headers and the
/// blank line into `out`, and returns the number of bytes written. `<authority>` is
/// `host:port`, with an IPv6 host in brackets.
///
/// Every input is checked before the first byte is written; on error `out` is untouched.
pub fn emit_connect(out: &mut [u8], req: &ConnectRequest<'_>) -> Result<usize, EmitError> {
    if !is_host(req.host) {
        return Err(EmitError::BadHost);
    }
    if req.port == 0 {
        return Err(EmitError::BadPort);
    }
    for (i, (name, value)) in req.headers.iter().enumerate() {
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(EmitError::BadHeaderName(i));
        }
        if RESERVED_CONNECT_HEADERS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
        {
            return Err(EmitError::ReservedHeader(i));
        }
        if !value.iter().all(|&b| is_sendable_field_byte(b)) {
            return Err(EmitError::BadHeaderValue(i));
        }
    }

    let mut port_text = [0u8; 5];
    let port = decimal(req.port, &mut port_text);
    let bracketed = req.host.contains(&b':');
    let (open, close): (&[u8], &[u8]) = if bracketed { (b"[", b"]") } else { (b"", b"") };
    let authority: [&[u8]; 5] = [open, req.host, close, b":", port];

    let mut len = Some(0usize);
    let mut add = |n: usize| len = len.and_then(|l| l.checked_add(n));
    let authority_len: usize = authority.iter().map(|p| p.len()).sum();
    add(b"CONNECT ".len());
    add(authority_len);
    add(b" HTTP/1.1\r\nHost: ".len());
    add(authority_len);
    add(b"\r\n".len());
    for (name, value) in req.headers {
        add(name.len());
        add(b": ".len());
        add(value.len());
        add(b"\r\n".len());
    }
    add(b"\r\n".len());
    let len = len.ok_or(EmitError::BufferTooSmall)?;
    let out = out.get_mut(..len).ok_or(EmitError::BufferTooSmall)?;

    let mut w = Out::new(out);
    w.put(b"CONNECT ")?;
    w.put_all(&authority)?;
    w.put(b" HTTP/1.1\r\nHost: ")?;
    w.put_all(&authority)?;
    w.put(b"\r\n")?;
    for (name, value) in req.headers {
        w.put_all(&[name, b": ", value, b"\r\n"])?;
    }
    w.put(b"\r\n")?;
    Ok(w.pos())
}

/// `n` in decimal, written at the end of `buf`; returns the digits.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0'.saturating_add((n % 10) as u8);
        start = start.saturating_sub(1);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or(&[])
}

use super::writer::Out;

impl From<super::writer::BufferTooSmall> for EmitError {
    fn from(_: super::writer::BufferTooSmall) -> Self {
        EmitError::BufferTooSmall
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// The request curl 7.88.1 sends for `curl http://example.test/`.
    const CURL_GET: &[u8] =
        b"GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

    /// The fixture's PROXY v2 header length (16 + its length field 178).
    const FIXTURE_PROXY_LEN: usize = 194;

    type Parser = for<'a> fn(&'a [u8]) -> Parsed<(), HttpError>;

    fn req_unit(buf: &[u8]) -> Parsed<(), HttpError> {
        parse_request_host(buf).map(|_| ())
    }

    fn reply_unit(buf: &[u8]) -> Parsed<(), HttpError> {
        parse_connect_reply(buf).map(|_| ())
    }

    fn request(buf: &[u8]) -> RequestHead<'_> {
        match parse_request_host(buf) {
            Parsed::Complete(h, n) => {
                assert_eq!(n, h.head_len, "consumed == head_len");
                h
            }
            other => panic!("expected Complete for {:?}, got {other:?}", show(buf)),
        }
    }

    fn reply(buf: &[u8]) -> ConnectReply<'_> {
        match parse_connect_reply(buf) {
            Parsed::Complete(r, n) => {
                assert_eq!(n, r.head_len, "consumed == head_len");
                r
            }
            other => panic!("expected Complete for {:?}, got {other:?}", show(buf)),
        }
    }

    fn show(buf: &[u8]) -> String {
        buf.escape_ascii().to_string()
    }

    /// Every strict prefix of the head is NeedMore, and a stream cut in two at any byte
    /// (the first part read, then the rest appended) gives NeedMore or the final answer
    /// after the first part and the final answer after both.
    fn assert_prefixes_and_splits(parse: Parser, buf: &[u8], head_len: usize) {
        let whole = parse(buf);
        assert!(matches!(whole, Parsed::Complete(..)), "{:?}", show(buf));
        for n in 0..head_len {
            assert_eq!(
                parse(&buf[..n]),
                Parsed::NeedMore,
                "prefix {n} of {:?}",
                show(buf)
            );
        }
        for cut in 0..=buf.len() {
            let mut stream = buf[..cut].to_vec();
            let first = parse(&stream);
            if cut < head_len {
                assert_eq!(first, Parsed::NeedMore, "first part {cut}");
            } else {
                assert_eq!(first, whole, "first part {cut} already holds the head");
            }
            stream.extend_from_slice(&buf[cut..]);
            assert_eq!(parse(&stream), whole, "split at {cut}");
        }
    }

    /// NeedMore up to (not including) byte `at`, `Invalid(e)` once it is in: the parser
    /// fails at the first byte that can never be valid, and not before.
    fn assert_fails_at(parse: Parser, buf: &[u8], at: usize, e: HttpError) {
        for n in 0..=at {
            assert_eq!(
                parse(&buf[..n]),
                Parsed::NeedMore,
                "prefix {n} of {:?}",
                show(buf)
            );
        }
        assert_eq!(
            parse(&buf[..=at]),
            Parsed::Invalid(e),
            "through byte {at} of {:?}",
            show(buf)
        );
        assert_eq!(parse(buf), Parsed::Invalid(e), "all of {:?}", show(buf));
    }

    /// A request line, a Host header with `value`, and the blank line; and where the value starts.
    fn with_host(value: &[u8]) -> (Vec<u8>, usize) {
        let mut v = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        let at = v.len();
        v.extend_from_slice(value);
        v.extend_from_slice(b"\r\nAccept: */*\r\n\r\n");
        (v, at)
    }

    // ---- request heads ----

    #[test]
    fn curl_request_head() {
        let h = request(CURL_GET);
        assert_eq!(h.method, b"GET");
        assert_eq!(h.target, b"/");
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.host, Some(&b"example.test"[..]));
        assert_eq!(h.port, None);
        assert_eq!(h.head_len, CURL_GET.len());
        assert_prefixes_and_splits(req_unit, CURL_GET, CURL_GET.len());
    }

    #[test]
    fn host_with_port_and_a_body_after_the_head() {
        let head: &[u8] = b"POST /submit HTTP/1.1\r\nHost: example.test:8080\r\n\
            User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: 5\r\n\
            Content-Type: application/x-www-form-urlencoded\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"a=b&c");
        let h = request(&buf);
        assert_eq!(h.method, b"POST");
        assert_eq!(h.target, b"/submit");
        assert_eq!(h.host, Some(&b"example.test"[..]));
        assert_eq!(h.port, Some(8080));
        assert_eq!(h.head_len, head.len(), "the body is not consumed");
        assert_prefixes_and_splits(req_unit, &buf, head.len());
    }

    #[test]
    fn ipv6_and_ipv4_literals() {
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\
            User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
        let h = request(buf);
        assert_eq!(h.host, Some(&b"2001:db8::1"[..]), "brackets are removed");
        assert_eq!(h.port, Some(8443));
        assert_prefixes_and_splits(req_unit, buf, buf.len());

        let (buf, _) = with_host(b"[::1]");
        let h = request(&buf);
        assert_eq!((h.host, h.port), (Some(&b"::1"[..]), None));

        let (buf, _) = with_host(b"[::ffff:192.0.2.1]:80");
        assert_eq!(request(&buf).host, Some(&b"::ffff:192.0.2.1"[..]));

        let (buf, _) = with_host(b"192.0.2.7:65535");
        let h = request(&buf);
        assert_eq!((h.host, h.port), (Some(&b"192.0.2.7"[..]), Some(65535)));
    }

    #[test]
    fn http10_without_host_is_complete_with_no_host() {
        let buf: &[u8] = b"GET /index.html HTTP/1.0\r\nUser-Agent: Wget/1.21\r\n\r\n";
        let h = request(buf);
        assert_eq!(h.version_minor, 0);
        assert_eq!((h.host, h.port), (None, None));
        assert_eq!(h.head_len, buf.len());
        assert_prefixes_and_splits(req_unit, buf, buf.len());

        let bare: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(request(bare).host, None);

        let with: &[u8] = b"GET / HTTP/1.0\r\nHost: example.test\r\n\r\n";
        assert_eq!(request(with).host, Some(&b"example.test"[..]));
    }

    #[test]
    fn request_after_haproxy_tls_termination() {
        let capture = include_bytes!("../../fixtures/lb-haproxy-2.6-v2-tls-terminated-http1.bin");
        let buf = &capture[FIXTURE_PROXY_LEN..];
        let h = request(buf);
        assert_eq!(h.method, b"GET");
        assert_eq!(h.target, b"/");
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.host, Some(&b"example.test"[..]));
        assert_eq!(h.port, Some(20018));
        assert_eq!(h.head_len, buf.len());
        assert_prefixes_and_splits(req_unit, buf, buf.len());
        // And the whole capture is no HTTP request: it starts with the v2 signature.
        assert!(!could_be_http(capture[0]));
    }

    #[test]
    fn host_name_is_case_insensitive_and_ows_is_trimmed() {
        let buf: &[u8] = b"GET / HTTP/1.1\r\nhOST:\t example.test:443 \t\r\n\r\n";
        let h = request(buf);
        assert_eq!((h.host, h.port), (Some(&b"example.test"[..]), Some(443)));
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost:example.test\r\n\r\n";
        assert_eq!(request(buf).host, Some(&b"example.test"[..]));
    }

    #[test]
    fn other_values_may_carry_obs_text_and_tabs() {
        // "caf\xc3\xa9" is UTF-8 for "café": obs-text, legal outside Host.
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Name: caf\xc3\xa9\tx\r\n\r\n";
        assert_eq!(request(buf).host, Some(&b"example.test"[..]));
    }

    /// Each bad Host value, and the offset in it of the first byte that rules it out
    /// (`None`: only the CR that ends the value does).
    const BAD_HOSTS: &[(&[u8], Option<usize>)] = &[
        (b"exa\0mple.test", Some(3)),
        // "exa" alone would be a fine host: the byte after the CR is the bad one.
        (b"exa\rmple.test", Some(4)),
        (b"exa\nmple.test", Some(3)),
        // The space could be trailing OWS until the 'm' shows it is inside.
        (b"exa mple.test", Some(4)),
        (b"exa\tmple.test", Some(4)),
        (b"ex\xc3\xa9mple.test", Some(2)),
        (b"ex\x7fmple.test", Some(2)),
        (b"user@example.test", Some(4)),
        // "user:" could still be "user:8080"; the 'p' cannot.
        (b"user:pass@example.test", Some(5)),
        (b"example.test/path", Some(12)),
        (b"example..test", Some(8)),
        (b".example.test", Some(0)),
        (b"example.test.", None),
        (b"", None),
        (b"example.test:", None),
        (b"example.test:0", Some(13)),
        (b"example.test:08080", Some(13)),
        (b"example.test:65536", Some(17)),
        (b"example.test:80a", Some(15)),
        (b"example.test:80:81", Some(15)),
        (b"127.1", None),
        (b"0x7f000001", None),
        (b"0177.0.0.1", None),
        (b"256.0.0.1", None),
        (b"1.2.3.4.5", None),
        (b"[::1", None),
        (b"[::1]:", None),
        (b"[::1]x", Some(5)),
        (b"[fe80::1%25eth0]", Some(8)),
        // Inside brackets only the alphabet and length are checked byte by byte; the
        // address itself is judged at the ']'.
        (b"[1:2:3:4:5:6:7:8:9]", Some(18)),
        (b"[example.test]", Some(2)),
        (b"::1", Some(0)),
    ];

    #[test]
    fn bad_hosts_fail_at_the_first_bad_byte() {
        for &(value, bad) in BAD_HOSTS {
            let (buf, at) = with_host(value);
            let at = at + bad.unwrap_or(value.len());
            assert_fails_at(req_unit, &buf, at, HttpError::BadHost);
        }
    }

    #[test]
    fn host_length_limits() {
        let label63 = [b'a'; 63];
        let mut ok = b"a".repeat(63);
        ok.extend_from_slice(b".test");
        let (buf, _) = with_host(&ok);
        assert_eq!(request(&buf).host, Some(&ok[..]));

        let mut long_label = b"a".repeat(64);
        long_label.extend_from_slice(b".test");
        let (buf, at) = with_host(&long_label);
        assert_fails_at(req_unit, &buf, at + 63, HttpError::BadHost);

        // 3 labels of 63 and their dots, then 61: 253 bytes, the most a name may have.
        let mut name = Vec::new();
        for _ in 0..3 {
            name.extend_from_slice(&label63);
            name.push(b'.');
        }
        name.extend_from_slice(&[b'b'; 61]);
        assert_eq!(name.len(), 253);
        let (buf, _) = with_host(&name);
        assert_eq!(request(&buf).host, Some(&name[..]));
        name.push(b'b');
        let (buf, at) = with_host(&name);
        assert_fails_at(req_unit, &buf, at + 253, HttpError::BadHost);
    }

    #[test]
    fn two_host_headers_fail_at_the_second_colon() {
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\n\r\n";
        let at = buf.iter().rposition(|&b| b == b':').unwrap();
        assert_fails_at(req_unit, buf, at, HttpError::DuplicateHost);
        // Even the same value twice.
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n";
        assert_eq!(req_unit(buf), Parsed::Invalid(HttpError::DuplicateHost));
    }

    #[test]
    fn http11_without_host_fails_at_the_blank_line() {
        let buf: &[u8] = b"GET / HTTP/1.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
        assert_fails_at(req_unit, buf, buf.len() - 2, HttpError::MissingHost);
    }

    #[test]
    fn bare_lf_and_lone_cr_are_refused() {
        let cases: &[(&[u8], &[u8])] = &[
            // Bare LF after the request line.
            (b"GET / HTTP/1.1\n", b"\n"),
            // Bare LF after a header.
            (
                b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: */*\n",
                b"\n",
            ),
            // Bare LF as the blank line.
            (b"GET / HTTP/1.1\r\nHost: example.test\r\n\n", b"\n"),
            // A CR followed by something other than LF.
            (
                b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: */*\rX",
                b"X",
            ),
            (b"GET / HTTP/1.1\rX", b"X"),
            (b"GET / HTTP/1.1\r\nHost: example.test\r\n\rX", b"X"),
        ];
        for &(buf, bad) in cases {
            let at = buf.len() - bad.len();
            assert_fails_at(req_unit, buf, at, HttpError::BadLineEnd);
        }
    }

    #[test]
    fn line_folding_is_refused() {
        let buf: &[u8] = b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Long: a\r\n b\r\n\r\n";
        let at = buf.len() - 6;
        assert_eq!(buf[at], b' ');
        assert_fails_at(req_unit, buf, at, HttpError::LineFolding);
        let buf: &[u8] = b"GET / HTTP/1.1\r\n\tHost: example.test\r\n\r\n";
        assert_fails_at(req_unit, buf, 16, HttpError::LineFolding);
    }

    #[test]
    fn too_long_head() {
        // A valid head of exactly the cap parses.
        let mut buf = b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Pad: ".to_vec();
        let pad = MAX_REQUEST_HEAD - buf.len() - 4;
        buf.extend(std::iter::repeat_n(b'p', pad));
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(buf.len(), MAX_REQUEST_HEAD);
        assert_eq!(request(&buf).head_len, MAX_REQUEST_HEAD);
        // One byte more in the header and the blank line's LF falls beyond the cap.
        let mut over = buf[..buf.len() - 4].to_vec();
        over.push(b'p');
        over.extend_from_slice(b"\r\n\r\n");
        assert_eq!(over.len(), MAX_REQUEST_HEAD + 1);
        assert_eq!(req_unit(&over[..MAX_REQUEST_HEAD - 1]), Parsed::NeedMore);
        assert_eq!(
            req_unit(&over[..MAX_REQUEST_HEAD]),
            Parsed::Invalid(HttpError::TooLong)
        );
        assert_eq!(req_unit(&over), Parsed::Invalid(HttpError::TooLong));
    }

    #[test]
    fn bad_request_lines_fail_at_once() {
        let cases: &[(&[u8], usize, HttpError)] = &[
            // A TLS handshake record.
            (b"\x16\x03\x01\x02\x00", 0, HttpError::BadMethod),
            (b" / HTTP/1.1\r\n", 0, HttpError::BadMethod),
            (b"GE(T / HTTP/1.1\r\n", 2, HttpError::BadMethod),
            (b"GET\t/ HTTP/1.1\r\n", 3, HttpError::BadMethod),
            (b"GET  / HTTP/1.1\r\n", 4, HttpError::BadTarget),
            (b"GET /\x01 HTTP/1.1\r\n", 5, HttpError::BadTarget),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\n", 8, HttpError::BadTarget),
            // HTTP/0.9: no version.
            (b"GET /\r\n", 5, HttpError::BadTarget),
            (b"GET / HTTP/2.0\r\n", 11, HttpError::BadVersion),
            (b"GET / HTTP/1.2\r\n", 13, HttpError::BadVersion),
            (b"GET / HTTP/1.10\r\n", 14, HttpError::BadVersion),
            (b"GET / http/1.1\r\n", 6, HttpError::BadVersion),
            (b"GET / HTTP/1.1 \r\n", 14, HttpError::BadVersion),
            (
                b"GET / HTTP/1.1\r\nHost : x\r\n",
                20,
                HttpError::BadHeaderName,
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n", 16, HttpError::BadHeaderName),
            (
                b"GET / HTTP/1.1\r\nX(Y: x\r\n",
                17,
                HttpError::BadHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nX: a\0b\r\n",
                20,
                HttpError::BadHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nX: a\x7fb\r\n",
                20,
                HttpError::BadHeaderValue,
            ),
        ];
        for &(buf, at, e) in cases {
            assert_fails_at(req_unit, buf, at, e);
        }
    }

    #[test]
    fn could_be_http_takes_uppercase_letters() {
        for b in b'A'..=b'Z' {
            assert!(could_be_http(b));
        }
        for b in [0x16, 0x0d, b'P' | 0x20, b'0', b' ', 0x80, 0xff] {
            assert!(!could_be_http(b), "{b:#x}");
        }
        assert!(
            could_be_http(b'P'),
            "PROXY v1 starts like a method; detect it first"
        );
    }

    #[test]
    fn error_labels_are_distinct_and_sentences_are_written() {
        for (i, a) in HttpError::ALL.iter().enumerate() {
            assert!(a.as_str().starts_with("http_"));
            assert!(!a.to_string().is_empty());
            for b in &HttpError::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
                assert_ne!(a.to_string(), b.to_string());
            }
        }
    }

    // ---- CONNECT replies ----

    #[test]
    fn connection_established() {
        let buf: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
        let r = reply(buf);
        assert_eq!(r.version_minor, 1);
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, b"Connection established");
        assert_eq!(r.head_len, buf.len());
        assert_prefixes_and_splits(reply_unit, buf, buf.len());
    }

    #[test]
    fn tinyproxy_reply() {
        let buf: &[u8] =
            b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n";
        let r = reply(buf);
        assert_eq!((r.version_minor, r.status), (0, 200));
        assert_eq!(r.reason, b"Connection established");
        assert_eq!(r.head_len, buf.len());
        assert_prefixes_and_splits(reply_unit, buf, buf.len());
    }

    #[test]
    fn refusals_are_complete_replies() {
        let forbidden: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        let r = reply(forbidden);
        assert_eq!((r.status, r.reason), (403, &b"Forbidden"[..]));
        assert_prefixes_and_splits(reply_unit, forbidden, forbidden.len());

        let auth: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
            Proxy-Authenticate: Basic realm=\"sluice\"\r\nContent-Length: 0\r\n\r\n";
        let r = reply(auth);
        assert_eq!(r.status, 407);
        assert_eq!(r.reason, b"Proxy Authentication Required");
        assert_eq!(r.head_len, auth.len());
        assert_prefixes_and_splits(reply_unit, auth, auth.len());
    }

    #[test]
    fn tunnel_bytes_after_the_head_are_not_consumed() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";
        let mut buf = head.to_vec();
        // The server's first TLS record header: handshake, TLS 1.2, length 0x007a.
        buf.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x7a]);
        // Even tunnel bytes that look like CRLF or a header.
        buf.extend_from_slice(b"\r\nX: y\r\n\r\n");
        assert_eq!(
            parse_connect_reply(&buf),
            Parsed::Complete(
                ConnectReply {
                    version_minor: 1,
                    status: 200,
                    reason: b"OK",
                    head_len: head.len(),
                },
                head.len()
            )
        );
        assert_prefixes_and_splits(reply_unit, &buf, head.len());
    }

    #[test]
    fn reason_may_be_empty_or_missing() {
        for buf in [&b"HTTP/1.1 200\r\n\r\n"[..], b"HTTP/1.1 200 \r\n\r\n"] {
            let r = reply(buf);
            assert_eq!((r.status, r.reason), (200, &b""[..]));
        }
        let r = reply(b"HTTP/1.1 502 Bad\tGateway \xe2\x9c\x97\r\n\r\n");
        assert_eq!(r.reason, b"Bad\tGateway \xe2\x9c\x97");
    }

    #[test]
    fn malformed_status_lines_fail_at_once() {
        let cases: &[(&[u8], usize)] = &[
            (b"HTTP/1.1 20 OK\r\n\r\n", 11),
            (b"HTTP/2 200\r\n\r\n", 5),
            (b"FOO", 0),
            (b"http/1.1 200 OK\r\n\r\n", 0),
            (b"HTTP/1.2 200 OK\r\n\r\n", 7),
            (b"HTTP/1.1  200 OK\r\n\r\n", 9),
            (b"HTTP/1.1 099 x\r\n\r\n", 9),
            (b"HTTP/1.1 600 x\r\n\r\n", 9),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", 10),
            (b"HTTP/1.1 2000 OK\r\n\r\n", 12),
            (b"HTTP/1.1 200OK\r\n\r\n", 12),
            (b"HTTP/1.1 200 OK\n\r\n", 15),
            (b"HTTP/1.1 200 OK\rX", 16),
            (b"HTTP/1.1 200 O\0K\r\n\r\n", 14),
        ];
        for &(buf, at) in cases {
            assert_fails_at(reply_unit, buf, at, HttpError::BadStatusLine);
        }
    }

    #[test]
    fn reply_headers_are_checked() {
        let cases: &[(&[u8], usize, HttpError)] = &[
            (
                b"HTTP/1.1 200 OK\r\nVia: 1.1 p\n\r\n",
                27,
                HttpError::BadLineEnd,
            ),
            (b"HTTP/1.1 200 OK\r\n\n", 17, HttpError::BadLineEnd),
            (
                b"HTTP/1.1 200 OK\r\nVia: 1\0\r\n\r\n",
                23,
                HttpError::BadHeaderValue,
            ),
            (
                b"HTTP/1.1 200 OK\r\nVia : 1\r\n\r\n",
                20,
                HttpError::BadHeaderName,
            ),
            (
                b"HTTP/1.1 200 OK\r\nVia: 1\r\n 2\r\n\r\n",
                25,
                HttpError::LineFolding,
            ),
        ];
        for &(buf, at, e) in cases {
            assert_fails_at(reply_unit, buf, at, e);
        }
        // Hosts are not looked into in replies: two of them, or an odd one, are just headers.
        let r = reply(b"HTTP/1.1 200 OK\r\nHost: a@b\r\nHost: c\r\n\r\n");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn reply_head_over_the_cap() {
        let mut buf = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        buf.resize(MAX_REPLY_HEAD - 1, b'p');
        assert_eq!(reply_unit(&buf), Parsed::NeedMore);
        buf.push(b'p');
        assert_eq!(reply_unit(&buf), Parsed::Invalid(HttpError::TooLong));
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(reply_unit(&buf), Parsed::Invalid(HttpError::TooLong));
    }

    // ---- CONNECT requests ----

    /// One configured header, name and value.
    type Header<'a> = (&'a [u8], &'a [u8]);

    fn emit(req: &ConnectRequest<'_>) -> Result<Vec<u8>, EmitError> {
        let mut out = [0u8; 512];
        let n = emit_connect(&mut out, req)?;
        Ok(out[..n].to_vec())
    }

    #[test]
    fn emit_for_a_name_is_byte_exact() {
        let headers: &[(&[u8], &[u8])] = &[
            (b"Proxy-Authorization", b"Basic c2x1aWNlOnNlY3JldA=="),
            (b"User-Agent", b"sluice/0.1"),
        ];
        let req = ConnectRequest {
            host: b"example.test",
            port: 443,
            headers,
        };
        assert_eq!(
            emit(&req).unwrap(),
            b"CONNECT example.test:443 HTTP/1.1\r\n\
              Host: example.test:443\r\n\
              Proxy-Authorization: Basic c2x1aWNlOnNlY3JldA==\r\n\
              User-Agent: sluice/0.1\r\n\
              \r\n"
        );
    }

    #[test]
    fn emit_brackets_an_ipv6_literal() {
        let req = ConnectRequest {
            host: b"2001:db8::1",
            port: 8443,
            headers: &[],
        };
        assert_eq!(
            emit(&req).unwrap(),
            b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"
        );
        let req = ConnectRequest {
            host: b"192.0.2.7",
            port: 1,
            headers: &[],
        };
        assert_eq!(
            emit(&req).unwrap(),
            b"CONNECT 192.0.2.7:1 HTTP/1.1\r\nHost: 192.0.2.7:1\r\n\r\n"
        );
    }

    #[test]
    fn emit_refuses_injection_and_writes_nothing() {
        let ok: &[(&[u8], &[u8])] = &[(b"X-Ok", b"fine")];
        let cases: &[(&[u8], &[Header<'_>], EmitError)] = &[
            (b"example.test\r\nX-Evil: 1", ok, EmitError::BadHost),
            (b"example.test\nX-Evil: 1", ok, EmitError::BadHost),
            (b"example.test\r", ok, EmitError::BadHost),
            (b"example.test\0", ok, EmitError::BadHost),
            (b"exa mple.test", ok, EmitError::BadHost),
            (b"user@example.test", ok, EmitError::BadHost),
            (b"example.test:443", ok, EmitError::BadHost),
            (b"[::1]", ok, EmitError::BadHost),
            (b"", ok, EmitError::BadHost),
            (b"ex\xc3\xa9mple.test", ok, EmitError::BadHost),
            (
                b"example.test",
                &[(b"X-Ok", b"a"), (b"X\r\nEvil", b"1")],
                EmitError::BadHeaderName(1),
            ),
            (
                b"example.test",
                &[(b"X\n", b"1")],
                EmitError::BadHeaderName(0),
            ),
            (
                b"example.test",
                &[(b"X\0", b"1")],
                EmitError::BadHeaderName(0),
            ),
            (
                b"example.test",
                &[(b"X Y", b"1")],
                EmitError::BadHeaderName(0),
            ),
            (b"example.test", &[(b"", b"1")], EmitError::BadHeaderName(0)),
            (
                b"example.test",
                &[(b"X", b"1\r\nHost: evil")],
                EmitError::BadHeaderValue(0),
            ),
            (
                b"example.test",
                &[(b"X", b"1\n")],
                EmitError::BadHeaderValue(0),
            ),
            (
                b"example.test",
                &[(b"X", b"1\r")],
                EmitError::BadHeaderValue(0),
            ),
            (
                b"example.test",
                &[(b"X", b"\0")],
                EmitError::BadHeaderValue(0),
            ),
            (
                b"example.test",
                &[(b"X", b"caf\xc3\xa9")],
                EmitError::BadHeaderValue(0),
            ),
            (
                b"example.test",
                &[(b"host", b"evil.test")],
                EmitError::ReservedHeader(0),
            ),
            (
                b"example.test",
                &[(b"Content-Length", b"5")],
                EmitError::ReservedHeader(0),
            ),
            (
                b"example.test",
                &[(b"Transfer-Encoding", b"chunked")],
                EmitError::ReservedHeader(0),
            ),
        ];
        for &(host, headers, e) in cases {
            let mut out = [0xaa; 256];
            let req = ConnectRequest {
                host,
                port: 443,
                headers,
            };
            assert_eq!(emit_connect(&mut out, &req), Err(e), "{:?}", show(host));
            assert!(out.iter().all(|&b| b == 0xaa), "nothing written for {e:?}");
            assert!(!e.to_string().is_empty() && e.as_str().starts_with("emit_connect_"));
        }
        let zero = ConnectRequest {
            host: b"example.test",
            port: 0,
            headers: &[],
        };
        assert_eq!(emit(&zero), Err(EmitError::BadPort));
    }

    #[test]
    fn emit_buffer_too_small() {
        let headers: &[(&[u8], &[u8])] = &[(b"Proxy-Authorization", b"Basic Zm9vOmJhcg==")];
        let req = ConnectRequest {
            host: b"example.test",
            port: 443,
            headers,
        };
        let want = emit(&req).unwrap();
        for n in 0..want.len() {
            let mut out = vec![0xaa; n];
            assert_eq!(
                emit_connect(&mut out, &req),
                Err(EmitError::BufferTooSmall),
                "{n}"
            );
            assert!(
                out.iter().all(|&b| b == 0xaa),
                "nothing written into {n} bytes"
            );
        }
        let mut out = vec![0xaa; want.len()];
        assert_eq!(emit_connect(&mut out, &req), Ok(want.len()));
        assert_eq!(out, want);
    }

    #[test]
    fn emitted_requests_parse_back() {
        for (host, port, authority) in [
            (&b"example.test"[..], 443, &b"example.test:443"[..]),
            (b"192.0.2.7", 65535, b"192.0.2.7:65535"),
            (b"2001:db8::1", 80, b"[2001:db8::1]:80"),
            (b"::ffff:192.0.2.1", 1, b"[::ffff:192.0.2.1]:1"),
        ] {
            let headers: &[(&[u8], &[u8])] = &[(b"Proxy-Authorization", b"Basic Zm9vOmJhcg==")];
            let req = ConnectRequest {
                host,
                port,
                headers,
            };
            let wire = emit(&req).unwrap();
            let h = request(&wire);
            assert_eq!(h.method, b"CONNECT");
            assert_eq!(h.target, authority);
            assert_eq!(h.version_minor, 1);
            assert_eq!(h.host, Some(host));
            assert_eq!(h.port, Some(port));
            assert_eq!(h.head_len, wire.len());
        }
    }

    #[test]
    fn is_host_agrees_with_the_host_header() {
        for good in [
            &b"example.test"[..],
            b"a",
            b"_dmarc.example-1.test",
            b"xn--caf-dma.test",
            b"192.0.2.7",
            b"0.0.0.0",
            b"::1",
            b"2001:db8::1",
            b"1.2.3.4.example",
        ] {
            assert!(is_host(good), "{:?}", show(good));
            let (buf, _) = with_host(
                if good.contains(&b':') {
                    return_bracketed(good)
                } else {
                    good.to_vec()
                }
                .as_slice(),
            );
            assert_eq!(request(&buf).host, Some(good));
        }
        // Bare IPv6 is a host here (brackets are the Host header's syntax, not the host's).
        for &(bad, _) in BAD_HOSTS.iter().filter(|(h, _)| *h != b"::1") {
            assert!(!is_host(bad), "{:?}", show(bad));
        }
        for bad in [
            &b"[::1]"[..],
            b"example.test:80",
            b"a.b:c",
            b"\r\n",
            b"1.2.3.04",
        ] {
            assert!(!is_host(bad), "{:?}", show(bad));
        }
    }

    fn return_bracketed(h: &[u8]) -> Vec<u8> {
        [&b"["[..], h, b"]"].concat()
    }
}
