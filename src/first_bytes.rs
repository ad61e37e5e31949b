//! What the first bytes of a connection come to: the PROXY header (per ENVOY_PROXY_PROTOCOL
//! and the trusted sources), then a TLS ClientHello, a plain HTTP request head, or other
//! bytes; or why they are refused ([`Refusal`]), and how a connection that ended before
//! they were complete closes ([`cut_short`]). The one decision both the session's handshake
//! and `sluice inspect` take, so that a capture replays to the verdict the proxy reached.
//!
//! Pure: no I/O, no logging, no clock, no allocation; the parsing itself is `wire`'s. The
//! caller says what it knows of the world (the policy, whether the peer is trusted, whether
//! its buffer is full); what to do with the answer (log, count, close, route) is the
//! caller's.

use crate::config::ProxyPolicy;
use crate::wire::http::{self, HttpError, RequestHead};
use crate::wire::proxy::{self, Detected, ProxyError, ProxyHeader};
use crate::wire::tls::{self, ClientHello, TlsError};
use crate::wire::{name, Parsed};
use crate::worker::stats::CloseReason;

/// Why the first bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No PROXY header, and ENVOY_PROXY_PROTOCOL=required.
    MissingProxyHeader,
    /// A PROXY header from a peer outside ENVOY_TRUSTED_PROXIES.
    UntrustedProxy,
    /// The PROXY header does not parse.
    InvalidProxy(ProxyError),
    /// The PROXY AUTHORITY is not a host name.
    BadAuthority,
    /// A PROXY header where the ClientHello should be (a second one, or one smuggled in).
    HeaderInStream,
    /// A LOCAL header followed by bytes that are neither TLS nor HTTP.
    LocalThenGarbage,
    /// The ClientHello does not parse.
    InvalidTls(TlsError),
    /// The HTTP request head does not parse.
    InvalidHttp(HttpError),
    /// The first bytes fill the buffer before the PROXY header (`header`) or the hello is
    /// complete.
    TooLong {
        /// Still reading the PROXY header.
        header: bool,
    },
}

impl Refusal {
    /// The close reason.
    pub fn close_reason(self) -> CloseReason {
        match self {
            Refusal::MissingProxyHeader => CloseReason::MissingProxyHeader,
            Refusal::UntrustedProxy => CloseReason::UntrustedProxy,
            Refusal::InvalidProxy(_)
            | Refusal::HeaderInStream
            | Refusal::LocalThenGarbage
            | Refusal::TooLong { header: true } => CloseReason::InvalidProxy,
            Refusal::BadAuthority => CloseReason::InvalidAuthority,
            Refusal::InvalidTls(_) | Refusal::TooLong { header: false } => CloseReason::InvalidTls,
            Refusal::InvalidHttp(_) => CloseReason::InvalidHttp,
        }
    }

    /// The parse error counter it adds to: (parser, kind).
    pub fn counted_as(self) -> (&'static str, &'static str) {
        match self {
            Refusal::MissingProxyHeader => ("proxy", "missing"),
            Refusal::UntrustedProxy => ("proxy", "untrusted_source"),
            Refusal::InvalidProxy(e) => ("proxy", e.as_str()),
            Refusal::BadAuthority => ("proxy", "bad_authority"),
            Refusal::HeaderInStream => ("proxy", "header_in_stream"),
            Refusal::LocalThenGarbage => ("proxy", "local_then_garbage"),
            Refusal::InvalidTls(e) => ("tls", e.as_str()),
            Refusal::InvalidHttp(e) => ("http", e.as_str()),
            Refusal::TooLong { header: true } => ("proxy", "too_long"),
            Refusal::TooLong { header: false } => ("tls", "too_long"),
        }
    }
}

/// What the PROXY header stage came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStep<'a> {
    /// Not decided yet: more bytes are needed.
    NeedMore,
    /// The header (`None`: there is none, and none is required); `len` bytes of it.
    Done(Option<ProxyHeader<'a>>),
    /// Refused.
    Refused(Refusal),
}

/// Looks for the PROXY header at the start of `data` per `policy`. `trusted` says whether
/// the peer may send one; it is asked only when a header is there (it costs a CIDR scan).
/// `full` says whether more bytes can still come (the buffer is full: what still needs more
/// is too long); it is asked only then.
#[inline]
pub fn header<'a>(
    data: &'a [u8],
    policy: ProxyPolicy,
    trusted: impl FnOnce() -> bool,
    full: impl FnOnce() -> bool,
) -> HeaderStep<'a> {
    let too_long = || {
        if full() {
            HeaderStep::Refused(Refusal::TooLong { header: true })
        } else {
            HeaderStep::NeedMore
        }
    };
    if policy == ProxyPolicy::Off {
        return HeaderStep::Done(None);
    }
    match proxy::detect(data) {
        Detected::NeedMore => return too_long(),
        Detected::NoHeader if policy == ProxyPolicy::Required => {
            return HeaderStep::Refused(Refusal::MissingProxyHeader)
        }
        Detected::NoHeader => return HeaderStep::Done(None),
        Detected::V1 | Detected::V2 => {}
    }
    if !trusted() {
        return HeaderStep::Refused(Refusal::UntrustedProxy);
    }
    match proxy::parse(data) {
        Parsed::NeedMore => too_long(),
        Parsed::Invalid(e) => HeaderStep::Refused(Refusal::InvalidProxy(e)),
        Parsed::Complete(h, _) => match h.tlvs.authority() {
            Some(a) if !name::is_host(a) => HeaderStep::Refused(Refusal::BadAuthority),
            _ => HeaderStep::Done(Some(h)),
        },
    }
}

/// What the bytes after the PROXY header are, once complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First<'a> {
    /// A TLS ClientHello, `len` bytes of records.
    Tls {
        /// The hello.
        hello: ClientHello<'a>,
        /// Bytes of the records it took.
        len: usize,
    },
    /// A plain HTTP/1.x request head.
    Http(RequestHead<'a>),
    /// Neither: bytes routed as `proto=other`.
    Other,
}

/// Which part the bytes after the header were still short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Nothing came after the header yet.
    Nothing,
    /// A ClientHello, cut short.
    Tls,
    /// A PROXY signature's beginning where the hello should be (a second header?).
    Proxy,
    /// An HTTP request head, cut short.
    Http,
}

/// What the hello stage came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloStep<'a> {
    /// Not decided yet: more bytes of this part are needed.
    NeedMore(Part),
    /// Complete.
    Done(First<'a>),
    /// Refused.
    Refused(Refusal),
}

/// Looks at what followed the PROXY header (`data`; everything, when there was none).
/// `local`: the header said LOCAL; `full` as for [`header`]; `scratch` is where a hello
/// spanning several records is put together.
#[inline]
pub fn hello<'a>(
    data: &'a [u8],
    policy: ProxyPolicy,
    local: bool,
    full: impl FnOnce() -> bool,
    scratch: &'a mut [u8],
) -> HelloStep<'a> {
    let need_more = |part| {
        if full() {
            HelloStep::Refused(Refusal::TooLong { header: false })
        } else {
            HelloStep::NeedMore(part)
        }
    };
    match tls::parse_client_hello(data, scratch) {
        Parsed::Complete(hello, len) => HelloStep::Done(First::Tls { hello, len }),
        Parsed::NeedMore if data.is_empty() => need_more(Part::Nothing),
        Parsed::NeedMore => need_more(Part::Tls),
        Parsed::Invalid(TlsError::NotTls) => match plain(data, policy, local) {
            HelloStep::NeedMore(part) => need_more(part),
            other => other,
        },
        Parsed::Invalid(e) => HelloStep::Refused(Refusal::InvalidTls(e)),
    }
}

/// Not TLS: a plain HTTP/1.x request is routed on its Host header; anything else has no
/// name and goes where the routes send `proto=other`.
fn plain(data: &[u8], policy: ProxyPolicy, local: bool) -> HelloStep<'_> {
    if policy != ProxyPolicy::Off {
        // A PROXY header where the ClientHello should be: a second header, or one smuggled
        // into the stream. Never forwarded.
        match proxy::detect(data) {
            Detected::NeedMore => return HelloStep::NeedMore(Part::Proxy),
            Detected::V1 | Detected::V2 => return HelloStep::Refused(Refusal::HeaderInStream),
            Detected::NoHeader => {}
        }
    }
    let mut first = First::Other;
    if data.first().is_some_and(|&b| http::could_be_http(b)) {
        match http::parse_request_host(data) {
            Parsed::NeedMore => return HelloStep::NeedMore(Part::Http),
            Parsed::Complete(head, _) => first = First::Http(head),
            // The request line is not HTTP at all: other bytes, routed as such.
            Parsed::Invalid(e) if not_http(e) => {}
            Parsed::Invalid(e) => return HelloStep::Refused(Refusal::InvalidHttp(e)),
        }
    }
    if local && first == First::Other {
        return HelloStep::Refused(Refusal::LocalThenGarbage);
    }
    HelloStep::Done(first)
}

/// A request head error that says the bytes are not HTTP at all (rather than broken HTTP):
/// they are routed as `proto=other`.
pub fn not_http(e: HttpError) -> bool {
    matches!(
        e,
        HttpError::BadMethod | HttpError::BadTarget | HttpError::BadVersion
    )
}

/// How a connection whose peer ended it (FIN or reset) before its first bytes were complete
/// closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutShort {
    /// A PROXY header and not one byte after it: a load balancer's health check (from a
    /// trusted source: a header is read from no other). Counted on its own, never captured.
    HealthCheck,
    /// Anything else: the client went away early (`client_closed_early`, or `client_reset`).
    Early,
}

/// `header_len`: bytes of the PROXY header received whole (0: none, or not yet whole);
/// `received`: every byte the peer sent.
pub fn cut_short(header_len: usize, received: usize) -> CutShort {
    if header_len > 0 && received == header_len {
        CutShort::HealthCheck
    } else {
        CutShort::Early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read(p).unwrap()
    }

    #[test]
    fn each_refusal_closes_and_counts_as_before() {
        use CloseReason as C;
        let cases = [
            (
                Refusal::MissingProxyHeader,
                C::MissingProxyHeader,
                ("proxy", "missing"),
            ),
            (
                Refusal::UntrustedProxy,
                C::UntrustedProxy,
                ("proxy", "untrusted_source"),
            ),
            (
                Refusal::InvalidProxy(ProxyError::V1BadSyntax),
                C::InvalidProxy,
                ("proxy", ProxyError::V1BadSyntax.as_str()),
            ),
            (
                Refusal::BadAuthority,
                C::InvalidAuthority,
                ("proxy", "bad_authority"),
            ),
            (
                Refusal::HeaderInStream,
                C::InvalidProxy,
                ("proxy", "header_in_stream"),
            ),
            (
                Refusal::LocalThenGarbage,
                C::InvalidProxy,
                ("proxy", "local_then_garbage"),
            ),
            (
                Refusal::InvalidTls(TlsError::NotClientHello),
                C::InvalidTls,
                ("tls", TlsError::NotClientHello.as_str()),
            ),
            (
                Refusal::InvalidHttp(HttpError::MissingHost),
                C::InvalidHttp,
                ("http", "http_missing_host"),
            ),
            (
                Refusal::TooLong { header: true },
                C::InvalidProxy,
                ("proxy", "too_long"),
            ),
            (
                Refusal::TooLong { header: false },
                C::InvalidTls,
                ("tls", "too_long"),
            ),
        ];
        for (refusal, reason, counter) in cases {
            assert_eq!(refusal.close_reason(), reason, "{refusal:?}");
            assert_eq!(refusal.counted_as(), counter, "{refusal:?}");
            // what the close captures (the first bytes of a failed parse), as before
            let captured = !matches!(refusal, Refusal::UntrustedProxy);
            assert_eq!(reason.is_parse_failure(), captured, "{refusal:?}");
        }
    }

    #[test]
    fn a_request_line_that_is_not_http_is_other_bytes_not_an_error() {
        for e in [
            HttpError::BadMethod,
            HttpError::BadTarget,
            HttpError::BadVersion,
        ] {
            assert!(not_http(e), "{e:?}");
        }
        for e in [
            HttpError::BadLineEnd,
            HttpError::BadHeaderName,
            HttpError::MissingHost,
            HttpError::BadHost,
            HttpError::DuplicateHost,
            HttpError::TooLong,
        ] {
            assert!(!not_http(e), "{e:?}");
        }
    }

    #[test]
    fn the_header_stage_per_policy_and_trust() {
        use ProxyPolicy::*;
        let v2 = fixture("lb-haproxy-2.6-v2-tcp4-curl.bin");
        let hello = fixture("client-curl-7.88.1-h2.bin");
        let yes = || true;
        assert!(matches!(
            header(&v2, Optional, yes, || false),
            HeaderStep::Done(Some(h)) if h.len == 28
        ));
        assert_eq!(
            header(&hello, Optional, yes, || false),
            HeaderStep::Done(None)
        );
        assert_eq!(
            header(&hello, Required, yes, || false),
            HeaderStep::Refused(Refusal::MissingProxyHeader)
        );
        assert_eq!(header(&v2, Off, yes, || false), HeaderStep::Done(None));
        assert_eq!(
            header(&v2, Optional, || false, || false),
            HeaderStep::Refused(Refusal::UntrustedProxy)
        );
        // Trust is asked only when a header is there.
        assert_eq!(
            header(&hello, Optional, || panic!("asked"), || false),
            HeaderStep::Done(None)
        );
        assert_eq!(
            header(&v2[..20], Optional, yes, || false),
            HeaderStep::NeedMore
        );
        assert_eq!(
            header(b"PRO", Optional, yes, || false),
            HeaderStep::NeedMore
        );
        assert_eq!(
            header(&v2[..20], Optional, yes, || true),
            HeaderStep::Refused(Refusal::TooLong { header: true })
        );
        assert_eq!(
            header(b"PROXYjunk", Optional, yes, || false),
            HeaderStep::Refused(Refusal::InvalidProxy(ProxyError::V1BadSignature))
        );
    }

    #[test]
    fn the_hello_stage_tells_tls_http_other_and_refusals() {
        use ProxyPolicy::*;
        let mut scratch = vec![0u8; tls::MAX_HELLO_LEN];
        let hello = fixture("client-curl-7.88.1-h2.bin");
        assert!(matches!(
            super::hello(&hello, Optional, false, || false, &mut scratch),
            HelloStep::Done(First::Tls { len, .. }) if len == hello.len()
        ));
        assert_eq!(
            super::hello(&hello[..40], Optional, false, || false, &mut scratch),
            HelloStep::NeedMore(Part::Tls)
        );
        assert_eq!(
            super::hello(&hello[..40], Optional, false, || true, &mut scratch),
            HelloStep::Refused(Refusal::TooLong { header: false })
        );
        assert_eq!(
            super::hello(b"", Optional, false, || false, &mut scratch),
            HelloStep::NeedMore(Part::Nothing)
        );
        let get = b"GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n";
        assert!(matches!(
            super::hello(get, Optional, false, || false, &mut scratch),
            HelloStep::Done(First::Http(h)) if h.host == Some(&b"plain.test"[..])
        ));
        assert_eq!(
            super::hello(&get[..20], Optional, false, || false, &mut scratch),
            HelloStep::NeedMore(Part::Http)
        );
        assert_eq!(
            super::hello(
                b"GET / HTTP/1.1\r\n\r\n",
                Optional,
                false,
                || false,
                &mut scratch
            ),
            HelloStep::Refused(Refusal::InvalidHttp(HttpError::MissingHost))
        );
        assert_eq!(
            super::hello(b"\x00\x01garbage", Optional, false, || false, &mut scratch),
            HelloStep::Done(First::Other)
        );
        assert_eq!(
            super::hello(b"\x00\x01garbage", Optional, true, || false, &mut scratch),
            HelloStep::Refused(Refusal::LocalThenGarbage)
        );
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert_eq!(
            super::hello(v1, Optional, false, || false, &mut scratch),
            HelloStep::Refused(Refusal::HeaderInStream)
        );
        assert_eq!(
            super::hello(b"PRO", Required, false, || false, &mut scratch),
            HelloStep::NeedMore(Part::Proxy)
        );
        // With the policy off, a PROXY line is only bytes (it is not HTTP either).
        assert_eq!(
            super::hello(v1, Off, false, || false, &mut scratch),
            HelloStep::Done(First::Other)
        );
    }

    #[test]
    fn a_header_and_nothing_after_it_is_a_health_check() {
        assert_eq!(cut_short(16, 16), CutShort::HealthCheck);
        assert_eq!(cut_short(44, 44), CutShort::HealthCheck);
        assert_eq!(cut_short(16, 17), CutShort::Early, "a byte of payload");
        assert_eq!(cut_short(0, 10), CutShort::Early, "no whole header");
        assert_eq!(cut_short(0, 0), CutShort::Early, "nothing at all");
    }
}
