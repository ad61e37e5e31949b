//! The properties the fuzz targets check, one function per target, so that each target in
//! `fuzz_targets/` stays a single call.
//!
//! The first property of every parser under `sluice::wire` is that it returns on any input
//! without panicking; libFuzzer catches that one by itself. The asserts here add what a
//! `Complete` answer promises: the consumed count lies inside the input, reading the value
//! (TLVs, sub-TLVs, ALPN, versions) cannot fail, the dispatcher agrees with the version
//! parsers, a strict prefix of a complete input is `NeedMore`, and what the emitters write
//! parses back to what they were given.

pub mod session;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use sluice::wire::proxy::v1::{self, MAX_V1_LEN};
use sluice::wire::proxy::v2::{self, RawTlv, V2Out, FIXED_LEN, MAX_V2_LEN};
use sluice::wire::proxy::{
    self, Addresses, Command, Detected, Family, ProxyError, ProxyHeader, SslSub, Tlv, Version,
};
use sluice::wire::tls::{self, MAX_HELLO_LEN};
use sluice::wire::Parsed;

/// `proxy::v1::parse`: a complete line lies inside the input and within 107 bytes, and the
/// line alone parses the same.
pub fn proxy_v1(data: &[u8]) {
    if let Parsed::Complete(h, n) = v1::parse(data) {
        assert!(n <= data.len() && n <= MAX_V1_LEN, "consumed {n}");
        assert_eq!((h.len, h.version), (n, Version::V1));
        assert_eq!(v1::parse(&data[..n]), Parsed::Complete(h, n));
        read_header(&h);
    }
}

/// `proxy::v2::parse`: a complete header lies inside the input, and every TLV and SSL
/// sub-TLV can be read, covering the TLV area exactly.
pub fn proxy_v2(data: &[u8]) {
    if let Parsed::Complete(h, n) = v2::parse(data) {
        assert!(
            n <= data.len() && n <= FIXED_LEN + MAX_V2_LEN,
            "consumed {n}"
        );
        assert_eq!((h.len, h.version), (n, Version::V2));
        assert_eq!(v2::parse(&data[..n]), Parsed::Complete(h, n));
        read_header(&h);
    }
}

/// `proxy::detect` and `proxy::parse` agree, and strict prefixes of a complete header are
/// `NeedMore` (a sample of them: every prefix would make each run quadratic).
pub fn proxy_detect(data: &[u8]) {
    let detected = proxy::detect(data);
    let parsed = proxy::parse(data);
    match detected {
        Detected::NoHeader => assert_eq!(parsed, Parsed::Invalid(ProxyError::NotProxy)),
        Detected::NeedMore => assert_eq!(parsed, Parsed::NeedMore),
        Detected::V1 => assert_eq!(parsed, v1::parse(data)),
        Detected::V2 => assert_eq!(parsed, v2::parse(data)),
    }
    if let Parsed::Complete(h, n) = parsed {
        let want = match h.version {
            Version::V1 => Detected::V1,
            Version::V2 => Detected::V2,
        };
        assert_eq!(detected, want);
        assert!(n <= data.len());
        let pick = usize::from(data.last().copied().unwrap_or(0)) % n.max(1);
        for k in [n - 1, n / 2, pick] {
            assert_eq!(
                proxy::parse(&data[..k]),
                Parsed::NeedMore,
                "prefix {k} of {n}"
            );
            assert_ne!(proxy::detect(&data[..k]), Detected::NoHeader, "prefix {k}");
        }
    }
}

/// `tls::parse_client_hello` with a 16 KiB scratch: a complete hello lies inside the input,
/// its ALPN list and versions iterate and format, and a strict prefix of it is `NeedMore`.
pub fn tls(data: &[u8]) {
    let mut scratch = [0u8; MAX_HELLO_LEN];
    let n = match tls::parse_client_hello(data, &mut scratch) {
        Parsed::Complete(hello, n) => {
            assert!(n <= data.len(), "consumed {n} of {}", data.len());
            read_hello(&hello);
            n
        }
        Parsed::NeedMore => return,
        Parsed::Invalid(e) => {
            black_box((e.as_str(), e.to_string()));
            return;
        }
    };
    for k in [n - 1, n / 2] {
        let mut scratch = [0u8; MAX_HELLO_LEN];
        let prefix = tls::parse_client_hello(&data[..k], &mut scratch).map(|_| ());
        assert_eq!(prefix, Parsed::NeedMore, "prefix {k} of {n}");
    }
}

/// Emits a v1 line and a v2 header built from the input, parses them back and compares.
pub fn emit_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // Running out of input midway is fine: whatever was built so far is not checked.
    let _ = roundtrip_v1(&mut u).and_then(|()| roundtrip_v2(&mut u));
}

/// Reads every part of a header the way the proxy and `sluice inspect` do.
fn read_header(h: &ProxyHeader<'_>) {
    black_box((h.src(), h.dst()));
    match (h.family, h.addrs) {
        (Family::Inet, Addresses::Inet { src, dst }) => assert!(src.is_ipv4() && dst.is_ipv4()),
        (Family::Inet6, Addresses::Inet { src, dst }) => assert!(src.is_ipv6() && dst.is_ipv6()),
        (Family::Unix, Addresses::Unix { src, dst }) => {
            assert!(src.len() <= 108 && dst.len() <= 108);
        }
        (_, Addresses::None) => {}
        (family, addrs) => panic!("{family:?} with {addrs:?}"),
    }
    let t = h.tlvs;
    black_box((t.authority(), t.alpn(), t.unique_id(), t.ssl(), t.netns()));
    black_box((t.get(0x00), t.get(0xea), t.get(0xff)));
    let mut covered = 0;
    for tlv in t.iter() {
        covered += 3 + match tlv {
            Tlv::Alpn(v)
            | Tlv::Authority(v)
            | Tlv::Noop(v)
            | Tlv::UniqueId(v)
            | Tlv::Netns(v)
            | Tlv::Unknown(_, v) => v.len(),
            Tlv::Crc32c(c) => {
                assert_eq!(h.crc32c, Some(c));
                4
            }
            Tlv::Ssl(ssl) => {
                black_box((
                    ssl.client,
                    ssl.verify,
                    ssl.version(),
                    ssl.cn(),
                    ssl.cipher(),
                ));
                let mut subs = 0;
                for sub in ssl.subs() {
                    subs += 3 + match sub {
                        SslSub::Version(v)
                        | SslSub::Cn(v)
                        | SslSub::Cipher(v)
                        | SslSub::SigAlg(v)
                        | SslSub::KeyAlg(v)
                        | SslSub::Other(_, v) => v.len(),
                    };
                }
                assert_eq!(subs, ssl.raw_subs().len(), "sub-TLVs cover the SSL TLV");
                5 + subs
            }
        };
    }
    assert_eq!(covered, t.raw().len(), "TLVs cover the TLV area");
}

fn read_hello(hello: &tls::ClientHello<'_>) {
    if let Some(alpn) = hello.alpn {
        for name in alpn {
            assert!(!name.is_empty());
        }
        black_box(alpn.to_string());
    }
    if let Some(versions) = hello.versions {
        for v in versions {
            assert!(!tls::is_grease(v));
        }
        black_box(versions.to_string());
    }
    if let Some(sni) = hello.sni {
        assert!(!sni.is_empty() && sni.len() <= 253, "{sni:?}");
    }
    assert_eq!(hello.iter_extensions().count(), hello.extension_count);
    assert!(hello.session_id.len() <= 32);
    assert!(hello.cipher_suite_count() > 0);
}

/// An IPv4 or IPv6 endpoint (no flow info or scope: neither version can carry them).
fn endpoint(u: &mut Unstructured<'_>) -> ArbResult<SocketAddr> {
    let ip = if u.arbitrary()? {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?))
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

/// What a receiver reads back from a pair the emitters wrote: both IPv4, or both as IPv6
/// with an IPv4 side v4-mapped.
fn as_received(src: SocketAddr, dst: SocketAddr) -> (Family, Addresses<'static>) {
    if src.is_ipv4() && dst.is_ipv4() {
        return (Family::Inet, Addresses::Inet { src, dst });
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    let (src, dst) = (v6(src), v6(dst));
    (Family::Inet6, Addresses::Inet { src, dst })
}

fn roundtrip_v1(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let src = if u.arbitrary()? {
        Some(endpoint(u)?)
    } else {
        None
    };
    let dst = if u.arbitrary()? {
        Some(endpoint(u)?)
    } else {
        None
    };
    let mut out = [0u8; MAX_V1_LEN];
    // Every pair of endpoints fits the spec's 107 bytes: emit may not fail here.
    let n = v1::emit(src, dst, &mut out).expect("v1 emit into 107 bytes");
    let Parsed::Complete(h, m) = v1::parse(&out[..n]) else {
        panic!(
            "emitted v1 line does not parse: {:?}",
            String::from_utf8_lossy(&out[..n])
        );
    };
    assert_eq!((m, h.len, h.command), (n, n, Command::Proxy));
    let want = match (src, dst) {
        (Some(s), Some(d)) => as_received(s, d),
        _ => (Family::Unspec, Addresses::None),
    };
    assert_eq!((h.family, h.addrs), want);
    Ok(())
}

fn roundtrip_v2(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let command = if u.arbitrary()? {
        Command::Proxy
    } else {
        Command::Local
    };
    let addrs = if u.arbitrary()? {
        Some((endpoint(u)?, endpoint(u)?))
    } else {
        None
    };
    let authority: Option<&[u8]> = u.arbitrary()?;
    let alpn: Option<&[u8]> = u.arbitrary()?;
    let unique_id: Option<&[u8]> = u.arbitrary()?;
    let crc32c: bool = u.arbitrary()?;
    let mut raw = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        raw.push(RawTlv {
            kind: u.arbitrary()?,
            value: u.arbitrary()?,
        });
    }
    let out_h = V2Out {
        command,
        addrs,
        authority,
        alpn,
        unique_id,
        raw: &raw,
        crc32c,
    };
    let mut out = vec![0u8; FIXED_LEN + MAX_V2_LEN];
    let Ok(n) = v2::emit(&out_h, &mut out) else {
        return Ok(());
    };
    let Parsed::Complete(h, m) = v2::parse(&out[..n]) else {
        panic!("emitted v2 header does not parse: {:?}", &out[..n]);
    };
    assert_eq!((m, h.len, h.command), (n, n, command));
    let (family, addrs_back) = match addrs {
        Some((s, d)) => as_received(s, d),
        None => (Family::Unspec, Addresses::None),
    };
    assert_eq!((h.family, h.addrs), (family, addrs_back));
    assert_eq!(h.crc32c.is_some(), crc32c);
    read_header(&h);

    // The TLVs in the emitter's documented order: CRC32C, ALPN, AUTHORITY, UNIQUE_ID, raw.
    let mut want: Vec<(u8, &[u8])> = Vec::new();
    let crc_bytes = h.crc32c.map(u32::to_be_bytes);
    if let Some(c) = &crc_bytes {
        want.push((proxy::PP2_TYPE_CRC32C, &c[..]));
    }
    for (kind, v) in [
        (proxy::PP2_TYPE_ALPN, alpn),
        (proxy::PP2_TYPE_AUTHORITY, authority),
        (proxy::PP2_TYPE_UNIQUE_ID, unique_id),
    ] {
        if let Some(v) = v {
            want.push((kind, v));
        }
    }
    want.extend(raw.iter().map(|t| (t.kind, t.value)));
    assert_eq!(walk_tlvs(h.tlvs.raw()), want);
    Ok(())
}

/// The (type, value) records of a TLV area the parser accepted.
fn walk_tlvs(mut area: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let [kind, hi, lo, rest @ ..] = area {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (value, next) = rest.split_at(len);
        out.push((*kind, value));
        area = next;
    }
    assert!(area.is_empty(), "a validated TLV area ends on a record");
    out
}

/// The plain-HTTP request head parser (routing on Host): consumed stays inside the input,
/// a complete head's Host passes the host-name rule, and strict prefixes need more.
pub fn http_request(data: &[u8]) {
    use sluice::wire::{http, name};
    if let Parsed::Complete(head, n) = http::parse_request_host(data) {
        assert!(n <= data.len() && n == head.head_len);
        if let Some(h) = head.host {
            assert!(name::is_host(h), "a Host that passed must be a valid host");
            assert!(!h.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        }
        let prefix = &data[..n - 1];
        assert!(!matches!(http::parse_request_host(prefix), Parsed::Complete(..)));
    }
}

/// The CONNECT reply parser: consumed stays inside the input, the status is 3 digits, and
/// the bytes after the head (tunnel bytes) are never consumed.
pub fn connect_reply(data: &[u8]) {
    use sluice::wire::http;
    if let Parsed::Complete(reply, n) = http::parse_connect_reply(data) {
        assert!(n <= data.len() && n == reply.head_len);
        assert!((100..=599).contains(&reply.status));
        assert!(data[..n].ends_with(b"\r\n\r\n"));
        let mut longer = data[..n].to_vec();
        longer.extend_from_slice(b"tunnel bytes");
        assert!(matches!(http::parse_connect_reply(&longer), Parsed::Complete(_, m) if m == n));
    }
}

/// `first_bytes::header` then `first_bytes::hello`, the verdict the session and `inspect`
/// share: whatever a prefix of the input decides (anything but "need more", with more bytes
/// still able to come) the whole input decides the same, so no split of the bytes into reads
/// changes a session's fate. The first byte picks the policy, whether the peer is trusted and
/// whether the header was LOCAL.
pub fn first_bytes(data: &[u8]) {
    use sluice::config::ProxyPolicy;
    use sluice::first_bytes::{header, hello, HeaderStep, HelloStep};
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let policy = match knobs % 3 {
        0 => ProxyPolicy::Required,
        1 => ProxyPolicy::Optional,
        _ => ProxyPolicy::Off,
    };
    let trusted = knobs & 4 != 0;
    let local = knobs & 8 != 0;
    let whole = header(data, policy, || trusted, || false);
    let mut cuts: Vec<usize> = (0..data.len().min(64)).collect();
    cuts.push(data.len() / 2);
    for &k in &cuts {
        let part = header(&data[..k], policy, || trusted, || false);
        if part != HeaderStep::NeedMore {
            assert_eq!(part, whole, "header decided on {k} of {} bytes", data.len());
        }
    }
    let rest = match whole {
        HeaderStep::Done(Some(h)) => &data[h.len..],
        HeaderStep::Done(None) => data,
        _ => return,
    };
    let mut scratch = vec![0u8; MAX_HELLO_LEN];
    let mut scratch2 = vec![0u8; MAX_HELLO_LEN];
    let whole = hello(rest, policy, local, || false, &mut scratch);
    let mut cuts: Vec<usize> = (0..rest.len().min(64)).collect();
    cuts.push(rest.len() / 2);
    for &k in &cuts {
        let part = hello(&rest[..k], policy, local, || false, &mut scratch2);
        if !matches!(part, HelloStep::NeedMore(_)) {
            assert_eq!(part, whole, "hello decided on {k} of {} bytes", rest.len());
        }
    }
    black_box(hello(rest, policy, local, || true, &mut scratch2));
}
