//! The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): [`detect`] tells
//! which version (if any) a connection starts with, and [`parse`] hands the bytes to [`v1`]
//! or [`v2`]. What both versions parse into (the header, its TLVs, the errors) lives in two
//! leaves that the versions share and this module re-exports: `header` and `tlv`.
//!
//! For: the session's first phase (reading the PROXY header), `sluice inspect` and the
//! fuzzers. Must never do I/O, allocate, panic, or trust a length from the wire; a value of
//! these types borrows the caller's buffer and was fully validated when it was made, so
//! reading it (iterating TLVs included) cannot fail.

mod header;
mod tlv;
pub mod v1;
pub mod v2;

pub use header::{
    Addresses, Command, EmitError, Family, ProxyError, ProxyHeader, Transport, Version,
};
pub use tlv::{
    Ssl, SslSub, Tlv, Tlvs, PP2_SUBTYPE_SSL_CIPHER, PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_KEY_ALG,
    PP2_SUBTYPE_SSL_SIG_ALG, PP2_SUBTYPE_SSL_VERSION, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C, PP2_TYPE_NETNS, PP2_TYPE_NOOP, PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID,
};

use super::Parsed;

/// What the first bytes of a connection say about a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The bytes start like the v2 signature through its NUL byte
    /// ([`v2::DECISIVE_LEN`]): a v2 header, valid or not (the parser says which).
    V2,
    /// The bytes start with `PROXY` ([`v1::DECISIVE`]): a v1 header, valid or not.
    V1,
    /// The bytes differ from both: whatever this is, it is not a PROXY header.
    NoHeader,
    /// The bytes so far are a strict prefix of what decides (`PROX`, `\r\n\r`, ...).
    NeedMore,
}

/// Where `buf` stands against what decides one version.
#[derive(PartialEq, Eq)]
enum Prefix {
    Full,
    Partial,
    Differs,
}

fn against(buf: &[u8], decisive: &[u8]) -> Prefix {
    if buf.starts_with(decisive) {
        Prefix::Full
    } else if decisive.starts_with(buf) {
        Prefix::Partial
    } else {
        Prefix::Differs
    }
}

/// Tells from as few bytes as possible whether `buf` starts with a v1 or v2 header.
///
/// The spec (§2.2) makes a header of whatever begins like one: `PROXY` is version 1
/// whatever follows, and so is the v2 signature's start through its NUL byte for version 2;
/// an invalid header then aborts the connection rather than pass as payload. `NoHeader` as
/// soon as one byte rules both out (a TLS record's first byte 0x16 does at once);
/// `NeedMore` only while `buf` is a strict prefix of what decides one of them.
pub fn detect(buf: &[u8]) -> Detected {
    let v2 = against(buf, v2::SIGNATURE.get(..v2::DECISIVE_LEN).unwrap_or(&[]));
    let v1 = against(buf, v1::DECISIVE);
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
        Detected::V2 => v2::parse(buf),
        Detected::V1 => v1::parse(buf),
        Detected::NeedMore => Parsed::NeedMore,
        Detected::NoHeader => Parsed::Invalid(ProxyError::NotProxy),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!("../../../fixtures/", $name, ".bin"))[..],
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
            Detected::V2 => v2::DECISIVE_LEN,
            _ => v1::DECISIVE.len(),
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
        // The MANIFEST's reason (no CRLF within 107 bytes) holds, but the line is broken
        // earlier: after "... 50000 20012" (42 bytes) only CRLF may come, so the padding
        // space is refused at once, and a read of any length says the same.
        assert_eq!(parse(buf), Parsed::Invalid(ProxyError::V1BadSyntax));
        assert_eq!(parse(&buf[..107]), Parsed::Invalid(ProxyError::V1BadSyntax));
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
        assert_eq!(detect(b"PROX"), Detected::NeedMore);
        assert_eq!(detect(b"PROXY"), Detected::V1);
        assert_eq!(detect(b"PROXY "), Detected::V1);
        assert_eq!(detect(b"PROXY TCP4"), Detected::V1);
        assert_eq!(detect(b"PROXZ"), Detected::NoHeader);
        // "PROXY" decides: what follows it only makes the header valid or not.
        assert_eq!(detect(b"PROXY\r"), Detected::V1);
        assert_eq!(detect(b"\r"), Detected::NeedMore);
        assert_eq!(detect(b"\r\n\r\n"), Detected::NeedMore);
        assert_eq!(detect(b"\r\n\r\n\0"), Detected::V2);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT"), Detected::V2);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT\n"), Detected::V2);
        assert_eq!(detect(b"\r\n\r\n\x01"), Detected::NoHeader);
        assert_eq!(detect(b"\r\nGET / HTTP/1.1\r\n"), Detected::NoHeader);
        assert_eq!(detect(b"\r\n\r\n\0\r\nQUIT\r"), Detected::V2);
        assert_eq!(
            parse(b"\r\n\r\n\x01"),
            Parsed::Invalid(ProxyError::NotProxy)
        );
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIT\r"),
            Parsed::Invalid(ProxyError::V2BadSignature)
        );
    }

    /// Frames that begin like a header and then break it (issue 14: each was passed on as
    /// payload). Each is a header, an invalid one, from the byte that decides it on; every
    /// shorter prefix waits; and split anywhere, the pieces grown byte by byte come to the
    /// same answer.
    #[test]
    fn a_frame_that_begins_like_a_header_and_breaks_it_is_an_invalid_header() {
        let v2_sig = &v2::SIGNATURE;
        let cases: Vec<(Vec<u8>, Detected, ProxyError)> = vec![
            (
                b"PROXYjunk TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Detected::V1,
                ProxyError::V1BadSignature,
            ),
            (
                b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Detected::V1,
                ProxyError::V1BadSignature,
            ),
            (
                b"PROXY-TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Detected::V1,
                ProxyError::V1BadSignature,
            ),
            (
                b"PROXY\r\n".to_vec(),
                Detected::V1,
                ProxyError::V1BadSignature,
            ),
            (
                b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Detected::V1,
                ProxyError::V1BadSyntax,
            ),
        ];
        let mut cases = cases;
        // The v2 signature broken at each byte after the NUL.
        for at in v2::DECISIVE_LEN..v2_sig.len() {
            let mut b = v2_sig.to_vec();
            b[at] ^= 0x20;
            b.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]); // what would follow
            cases.push((b, Detected::V2, ProxyError::V2BadSignature));
        }
        for (frame, version, error) in &cases {
            let decided_at = match version {
                Detected::V2 => v2::DECISIVE_LEN,
                _ => v1::DECISIVE.len(),
            };
            // Where the parser sees the header can no longer become valid.
            let invalid_at = (0..=frame.len())
                .find(|&n| matches!(parse(&frame[..n]), Parsed::Invalid(_)))
                .unwrap_or_else(|| panic!("{frame:?} never invalid"));
            for n in 0..=frame.len() {
                let want = if n < decided_at {
                    Detected::NeedMore
                } else {
                    *version
                };
                assert_eq!(detect(&frame[..n]), want, "{frame:?} detect at {n}");
                if n < invalid_at {
                    assert_eq!(parse(&frame[..n]), Parsed::NeedMore, "{frame:?} at {n}");
                } else {
                    assert_eq!(
                        parse(&frame[..n]),
                        Parsed::Invalid(*error),
                        "{frame:?} at {n}"
                    );
                }
            }
            // Split at every byte: what the first piece alone says, then the whole.
            for split in 0..=frame.len() {
                let first = parse(&frame[..split]);
                assert!(
                    first == Parsed::NeedMore || first == Parsed::Invalid(*error),
                    "{frame:?} split at {split}: {first:?}"
                );
                assert_eq!(parse(frame), Parsed::Invalid(*error), "{frame:?}");
            }
        }
        // A stray CRLF before a request, or any text that only shares a first byte, stays
        // payload.
        for frame in [
            &b"\r\nGET / HTTP/1.1\r\n"[..],
            b"PROXZ",
            b"\r\n\r\nX",
            b"POST /",
        ] {
            assert_eq!(detect(frame), Detected::NoHeader, "{frame:?}");
            assert_eq!(parse(frame), Parsed::Invalid(ProxyError::NotProxy));
        }
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
