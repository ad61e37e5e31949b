//! The session's decisions that need no socket, as pure functions: which name a session is
//! routed on when the ClientHello and the PROXY header disagree, why first bytes are refused
//! and how each refusal is closed and counted, what a route's denial becomes, and which
//! clients hear a TLS alert.
//!
//! No I/O, no logging, no state: each answer depends on its arguments only, so each is
//! table-tested below.

use crate::config::route::{Action, Alert, Proto};
use crate::config::NameMismatch;
use crate::wire::http::HttpError;
use crate::wire::proxy::ProxyError;
use crate::wire::tls::TlsError;
use crate::worker::stats::CloseReason;

/// Where the routed name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The SNI (or a plain HTTP request's Host).
    Hello,
    /// The PROXY v2 AUTHORITY TLV.
    Authority,
}

/// The name choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameChoice {
    /// The names agree, or at most one was given: route on this one.
    Agreed(Source),
    /// They differ; ENVOY_NAME_MISMATCH picked this one.
    Mismatched(Source),
    /// They differ and ENVOY_NAME_MISMATCH=reject.
    Refused,
}

/// Chooses between the name the client asked for (`hello`: SNI or Host) and the load
/// balancer's AUTHORITY. Names compare without regard to ASCII case.
pub fn choose_name(hello: &[u8], authority: &[u8], policy: NameMismatch) -> NameChoice {
    match (hello.is_empty(), authority.is_empty()) {
        (true, _) => NameChoice::Agreed(Source::Authority),
        (false, true) => NameChoice::Agreed(Source::Hello),
        (false, false) if hello.eq_ignore_ascii_case(authority) => {
            NameChoice::Agreed(Source::Hello)
        }
        (false, false) => match policy {
            NameMismatch::Reject => NameChoice::Refused,
            NameMismatch::PreferSni => NameChoice::Mismatched(Source::Hello),
            NameMismatch::PreferAuthority => NameChoice::Mismatched(Source::Authority),
        },
    }
}

/// What a route's action means for a session: `None` lets it through; a denial closes it
/// with `denied_client` when the route names clients (else `denied_name`) and its alert.
pub fn denial(action: Action, on_client: bool) -> Option<(CloseReason, Alert)> {
    match action {
        Action::Allow => None,
        Action::Deny(alert) if on_client => Some((CloseReason::DeniedClient, alert)),
        Action::Deny(alert) => Some((CloseReason::DeniedName, alert)),
    }
}

/// The alert record's code a refused client hears: TLS clients only (anything else would
/// read the bytes as garbage), and only when there is one.
pub fn alert_code(proto: Option<Proto>, alert: Alert) -> Option<u8> {
    match proto {
        Some(Proto::Tls) => alert.code(),
        _ => None,
    }
}

/// A request head error that says the bytes are not HTTP at all (rather than broken HTTP):
/// they are routed as `proto=other`.
pub fn not_http(e: HttpError) -> bool {
    matches!(
        e,
        HttpError::BadMethod | HttpError::BadTarget | HttpError::BadVersion
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_choice_under_each_mismatch_policy() {
        use NameChoice::*;
        use NameMismatch::*;
        use Source::*;
        let any = [Reject, PreferSni, PreferAuthority];
        // (hello, authority, policy, choice)
        let mut cases: Vec<(&[u8], &[u8], NameMismatch, NameChoice)> = Vec::new();
        for p in any {
            cases.push((b"", b"", p, Agreed(Authority))); // nothing: the (empty) AUTHORITY
            cases.push((b"", b"lb.test", p, Agreed(Authority)));
            cases.push((b"a.test", b"", p, Agreed(Hello)));
            cases.push((b"a.test", b"a.test", p, Agreed(Hello)));
            cases.push((b"A.Test", b"a.TEST", p, Agreed(Hello))); // case does not count
        }
        cases.push((b"a.test", b"b.test", Reject, Refused));
        cases.push((b"a.test", b"b.test", PreferSni, Mismatched(Hello)));
        cases.push((b"a.test", b"b.test", PreferAuthority, Mismatched(Authority)));
        for (hello, authority, policy, choice) in cases {
            assert_eq!(
                choose_name(hello, authority, policy),
                choice,
                "hello={:?} authority={:?} {policy:?}",
                String::from_utf8_lossy(hello),
                String::from_utf8_lossy(authority)
            );
        }
    }

    #[test]
    fn a_denial_names_the_client_or_the_name_and_keeps_its_alert() {
        let cases = [
            (Action::Allow, false, None),
            (Action::Allow, true, None),
            (
                Action::Deny(Alert::UnrecognizedName),
                false,
                Some((CloseReason::DeniedName, Alert::UnrecognizedName)),
            ),
            (
                Action::Deny(Alert::AccessDenied),
                true,
                Some((CloseReason::DeniedClient, Alert::AccessDenied)),
            ),
            (
                Action::Deny(Alert::None),
                true,
                Some((CloseReason::DeniedClient, Alert::None)),
            ),
        ];
        for (action, on_client, expected) in cases {
            assert_eq!(
                denial(action, on_client),
                expected,
                "{action:?} {on_client}"
            );
        }
    }

    #[test]
    fn only_tls_clients_hear_an_alert() {
        let cases = [
            (Some(Proto::Tls), Alert::UnrecognizedName, Some(112)),
            (Some(Proto::Tls), Alert::AccessDenied, Some(49)),
            (Some(Proto::Tls), Alert::None, None),
            (Some(Proto::Http), Alert::AccessDenied, None),
            (Some(Proto::Other), Alert::AccessDenied, None),
            (None, Alert::UnrecognizedName, None),
        ];
        for (proto, alert, code) in cases {
            assert_eq!(alert_code(proto, alert), code, "{proto:?} {alert:?}");
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
}
