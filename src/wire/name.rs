//! Host names as sluice accepts them from the wire (SNI, PROXY AUTHORITY, HTTP Host) and as it
//! sends them (the CONNECT request).
//!
//! One rule for all three: at most 253 bytes of ASCII letters, digits, `-`, `_` and dots,
//! labels of 1..=63, no leading, doubled or trailing dot. `_` is not a hostname character but
//! occurs in real names; NUL, CR, LF, space and non-ASCII never pass, so no name can inject a
//! header or a log line. A name whose last label reads as a number must be a strict dotted
//! quad: resolvers (inet_aton) take `127.1`, `0x7f.1`, `0177.0.0.1` and `2130706433` as
//! addresses, so any other numeric form would route on one name and connect to an address
//! the routes never saw.
//!
//! Two entry points, because the wire formats differ and not the rule: [`is_host_name`] for
//! the SNI, which carries names only (RFC 6066 §3: no address literals; sluice has always
//! let a dotted quad through, as clients send one); [`is_host`] for HTTP Host, the PROXY
//! AUTHORITY (a load balancer's copy of an SNI or a Host) and CONNECT, which may also carry an
//! IPv6 literal (`[2001:db8::1]` in HTTP's syntax, the brackets already stripped here).
//!
//! Pure functions over bytes: no allocation, no panic.

/// Longest name (RFC 1035 §2.3.4, without the root dot).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest IPv6 text form: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
pub const MAX_IPV6_TEXT_LEN: usize = 45;

/// Checks `name` as a (possibly partial) DNS name: every byte allowed, no empty label before
/// a dot, no label over 63, at most 253 bytes. Returns the length of the last label (0 when
/// the name is empty or ends with a dot, which a complete name may not), or `None`.
pub fn labels(name: &[u8]) -> Option<usize> {
    if name.len() > MAX_HOST_NAME_LEN {
        return None;
    }
    let mut label_len: usize = 0;
    for &b in name {
        if b == b'.' {
            if label_len == 0 {
                return None;
            }
            label_len = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label_len = label_len.saturating_add(1);
            if label_len > MAX_LABEL_LEN {
                return None;
            }
        } else {
            return None;
        }
    }
    Some(label_len)
}

/// The rule on a name that may still be arriving: with `complete` false, true while some
/// continuation could make `name` a host name (the HTTP parser refuses a Host value at its
/// first impossible byte); with `complete` true, the same answer as [`is_host_name`].
pub fn is_dns_name(name: &[u8], complete: bool) -> bool {
    match labels(name) {
        None => false,
        Some(_) if !complete => true,
        Some(0) => false,
        Some(last) => {
            let last_label = name.get(name.len().saturating_sub(last)..).unwrap_or(&[]);
            !is_numeric(last_label) || dotted_quad(name)
        }
    }
}

/// True for a complete host name under the one rule (see the module header): a DNS name, or
/// a strict dotted-quad IPv4 address.
pub fn is_host_name(name: &[u8]) -> bool {
    is_dns_name(name, true)
}

/// An IPv6 address in text form, without brackets or zone. With `complete` false, true while
/// `text` could still become one.
pub fn is_ipv6_literal(text: &[u8], complete: bool) -> bool {
    if text.len() > MAX_IPV6_TEXT_LEN
        || !text
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return false;
    }
    !complete
        || core::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
            .is_some()
}

/// True for a host in HTTP Host, PROXY AUTHORITY or a CONNECT request: a host name under the
/// one rule, or an IPv6 address without brackets. `@`, `/` and `:port` never pass.
pub fn is_host(name: &[u8]) -> bool {
    is_host_name(name) || is_ipv6_literal(name, true)
}

/// True when a label reads as a number, decimal or hex (as inet_aton would take it).
fn is_numeric(label: &[u8]) -> bool {
    match label {
        [b'0', b'x' | b'X', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        digits => digits.iter().all(u8::is_ascii_digit),
    }
}

/// Four decimal octets 0..=255 without leading zeros, separated by single dots.
fn dotted_quad(name: &[u8]) -> bool {
    let mut octets: usize = 0;
    for part in name.split(|&b| b == b'.') {
        octets = octets.saturating_add(1);
        let well_formed = match part {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        let value = part.iter().fold(0u32, |v, &d| {
            v.saturating_mul(10)
                .saturating_add(u32::from(d.wrapping_sub(b'0')))
        });
        if !well_formed || value > 255 {
            return false;
        }
    }
    octets == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_host_name(b"example.test"));
        assert!(is_host_name(b"a_b-c.d"));
        for bad in [
            &b""[..],
            b".a",
            b"a..b",
            b"a.",
            b"a b",
            b"a\r\nb",
            b"a\0",
            b"\xc3\xa9.test",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        assert!(is_host_name(&[b'a'; 63]));
        assert!(!is_host_name(&[b'a'; 64]));
        let long: Vec<u8> = [
            b"a".repeat(63),
            b"b".repeat(63),
            b"c".repeat(63),
            b"d".repeat(61),
        ]
        .join(&b'.');
        assert_eq!(long.len(), 253);
        assert!(is_host_name(&long));
        assert!(!is_host_name(&[&long[..], b"e"].concat()));
        assert_eq!(labels(b"exam"), Some(4), "a viable prefix");
        assert_eq!(labels(b"example."), Some(0));
    }

    /// (name, a host name (SNI), a host (Host, AUTHORITY, CONNECT)).
    const THE_RULE: &[(&str, bool, bool)] = &[
        ("example.test", true, true),
        ("a", true, true),
        ("_dmarc.example-1.test", true, true),
        ("192.0.2.7", true, true),
        ("0.0.0.0", true, true),
        ("255.255.255.255", true, true),
        ("1.2.3.4.example", true, true),
        ("example.123x", true, true),
        ("0x7f.example", true, true),
        // A numeric last label that is not a strict dotted quad: an address to a resolver.
        ("127.1", false, false),
        ("0x7f.1", false, false),
        ("0x7f000001", false, false),
        ("2130706433", false, false),
        ("0177.0.0.1", false, false),
        ("1.2.3.04", false, false),
        ("1.2.3.256", false, false),
        ("1.2.3.4.5", false, false),
        ("example.0x1f", false, false),
        ("example.0X1F", false, false),
        ("example.0x", false, false),
        ("example.42", false, false),
        // IPv6: a host, never a host name.
        ("::1", false, true),
        ("2001:db8::1", false, true),
        ("::ffff:192.0.2.1", false, true),
        ("[::1]", false, false),
        ("example.test:443", false, false),
        ("a@b", false, false),
        ("a/b", false, false),
        ("", false, false),
        ("a.", false, false),
    ];

    #[test]
    fn the_one_rule_on_numeric_labels_and_literals() {
        for &(name, host_name, host) in THE_RULE {
            let n = name.as_bytes();
            assert_eq!(is_host_name(n), host_name, "is_host_name({name:?})");
            assert_eq!(is_host(n), host, "is_host({name:?})");
            assert_eq!(is_dns_name(n, true), host_name, "{name:?}");
            if host_name {
                for i in 0..n.len() {
                    assert!(is_dns_name(&n[..i], false), "{name:?}: prefix of {i}");
                }
            }
        }
    }

    /// A ClientHello in one record whose only extension is server_name = `name`.
    fn hello_with_sni(name: &[u8]) -> Vec<u8> {
        let be16 = |n: usize| (n as u16).to_be_bytes();
        let mut sni = be16(name.len() + 3).to_vec(); // server_name_list length
        sni.push(0); // name_type host_name
        sni.extend_from_slice(&be16(name.len()));
        sni.extend_from_slice(name);
        let mut ext = vec![0x00, 0x00]; // extension type server_name
        ext.extend_from_slice(&be16(sni.len()));
        ext.extend_from_slice(&sni);
        let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
        body.extend_from_slice(&[0x11; 32]); // random
        body.extend_from_slice(&[0x00]); // legacy_session_id: empty
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one suite: TLS_AES_128_GCM_SHA256
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        body.extend_from_slice(&be16(ext.len()));
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01, 0x00]; // ClientHello, 24-bit length (high byte 0)
        hs.extend_from_slice(&be16(body.len()));
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x01]; // handshake record, version 0x0301
        record.extend_from_slice(&be16(hs.len()));
        record.extend_from_slice(&hs);
        record
    }

    /// The three ways a name arrives agree on every name of the table: the SNI of a
    /// ClientHello, the Host of a plain request, and the PROXY AUTHORITY (which the session
    /// checks with [`is_host`]). IPv6 goes in brackets in Host and cannot be an SNI.
    #[test]
    fn sni_host_and_authority_follow_the_same_rule() {
        use crate::wire::http::parse_request_host;
        use crate::wire::tls::{parse_client_hello, TlsError, MAX_HELLO_LEN};
        use crate::wire::Parsed;
        let mut scratch = vec![0u8; MAX_HELLO_LEN];
        for &(name, host_name, host) in THE_RULE {
            let n = name.as_bytes();
            let sni = match parse_client_hello(&hello_with_sni(n), &mut scratch) {
                Parsed::Complete(h, _) => {
                    assert_eq!(h.sni, Some(name), "the SNI as sent");
                    true
                }
                Parsed::Invalid(TlsError::BadSni) => false,
                other => panic!("{name:?}: {:?}", other.map(|_| ())),
            };
            assert_eq!(sni, host_name, "SNI {name:?}");
            // In Host, a colon is the port's unless the host is in brackets.
            let bracketed = if n.contains(&b':') || n.starts_with(b"[") {
                format!("[{name}]")
            } else {
                name.to_string()
            };
            let request = format!("GET / HTTP/1.1\r\nHost: {bracketed}\r\n\r\n");
            let in_host = match parse_request_host(request.as_bytes()) {
                Parsed::Complete(h, _) => {
                    assert_eq!(h.host, Some(n), "the host as sent, without brackets");
                    true
                }
                Parsed::Invalid(_) => false,
                Parsed::NeedMore => panic!("{name:?}: a whole request is need-more"),
            };
            assert_eq!(in_host, host, "Host {bracketed:?}");
            assert_eq!(is_host(n), host, "AUTHORITY {name:?}");
        }
        let mut scratch = vec![0u8; MAX_HELLO_LEN];
        assert_eq!(
            parse_client_hello(&hello_with_sni(b"127.1"), &mut scratch).map(|_| ()),
            Parsed::Invalid(TlsError::BadSni),
            "127.1 is an address to a resolver, not a name"
        );
    }
}
