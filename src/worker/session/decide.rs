//! The session's decisions that need no socket, as pure functions: which name a session is
//! routed on when the ClientHello and the PROXY header disagree, what a route's denial
//! becomes, and which clients hear a TLS alert. (What the first bytes come to, and why they
//! are refused, is `first_bytes`': `sluice inspect` takes the same decision.)
//!
//! No I/O, no logging, no state: each answer depends on its arguments only, so each is
//! table-tested below.

use crate::config::route::{Action, Alert, Proto};
use crate::config::NameMismatch;
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
}
