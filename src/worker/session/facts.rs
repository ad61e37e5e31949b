//! What a session learned about its client from the first bytes, as plain values: what the
//! PROXY header said ([`HeaderFacts`]), what the ClientHello or HTTP head said ([`Hello`]),
//! and the session's sum of both ([`Facts`]), which log lines, tracing, routing and
//! `show sessions` read.
//!
//! Values only: nothing here reads a socket or parses bytes. Names are kept inline
//! ([`Inline`]) so that a session needs no heap for them.

use std::fmt;
use std::net::SocketAddr;

use crate::config::route::Proto;
use crate::hexdump::Escaped;
use crate::wire::tls::ProtocolList;
use crate::worker::session::decide::Source;

/// A short byte string kept inline (SNI, ALPN), so a session needs no heap for them.
#[derive(Clone, Copy)]
pub struct Inline<const N: usize> {
    len: usize,
    buf: [u8; N],
}

impl<const N: usize> Inline<N> {
    /// Empty.
    pub const fn new() -> Self {
        Inline {
            len: 0,
            buf: [0; N],
        }
    }

    /// Holds at most `N` bytes of `s`.
    pub fn from_bytes(s: &[u8]) -> Self {
        let mut out = Self::new();
        let n = s.len().min(N);
        if let (Some(dst), Some(src)) = (out.buf.get_mut(..n), s.get(..n)) {
            dst.copy_from_slice(src);
            out.len = n;
        }
        out
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for Inline<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Display for Inline<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("-")
        } else {
            Escaped(self.as_bytes()).fmt(f)
        }
    }
}

/// A host name, as long as DNS allows.
pub type HostName = Inline<253>;

impl<const N: usize> Inline<N> {
    /// Holds at most `N` bytes of `s` in place of what it held.
    pub fn set(&mut self, s: &[u8]) {
        self.len = 0;
        self.push(s);
    }

    /// Appends what fits of `s`.
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(N.saturating_sub(self.len));
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), s.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
    }
}

/// An ALPN list as logs show it: the text of its `Display` (`h2,http/1.1`; bytes outside
/// `!`..=`~`, and `,` and `\` themselves, as `\xNN`), cut at `N` bytes. Written byte by
/// byte rather than through `fmt`, since it runs for every TLS session; a test holds it to
/// the `Display`.
fn set_alpn_text<const N: usize>(out: &mut Inline<N>, list: ProtocolList<'_>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let shown = |b: u8| b.is_ascii_graphic() && b != b',' && b != b'\\';
    out.len = 0;
    for (i, name) in list.iter().enumerate() {
        if i > 0 {
            out.push(b",");
        }
        let mut rest = name;
        while !rest.is_empty() {
            let (plain, tail) =
                rest.split_at(rest.iter().position(|&b| !shown(b)).unwrap_or(rest.len()));
            out.push(plain);
            let Some((&b, tail)) = tail.split_first() else {
                break;
            };
            let (hi, lo) = (usize::from(b >> 4), usize::from(b & 0x0f));
            let hex = [
                b'\\',
                b'x',
                HEX.get(hi).copied().unwrap_or(b'0'),
                HEX.get(lo).copied().unwrap_or(b'0'),
            ];
            out.push(&hex);
            rest = tail;
        }
        if out.len == N {
            break;
        }
    }
}

/// What a PROXY header said; borrows the received bytes.
#[derive(Clone, Copy)]
pub struct HeaderFacts<'a> {
    /// "v1" or "v2".
    pub version: &'static str,
    /// Source and destination, for TCP over IPv4 or IPv6 (none for UNIX, UNSPEC, LOCAL).
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// The AUTHORITY TLV, already checked to be a host name.
    pub authority: Option<&'a [u8]>,
    /// The LOCAL command: the load balancer's own connection (a health check).
    pub local: bool,
    /// The header itself.
    pub bytes: &'a [u8],
}

/// What the bytes after the PROXY header said; borrows them.
#[derive(Clone, Copy)]
pub enum Hello<'a> {
    /// A TLS ClientHello.
    Tls {
        /// The server name.
        sni: Option<&'a str>,
        /// The ALPN list.
        alpn: Option<ProtocolList<'a>>,
        /// encrypted_client_hello was offered.
        ech: bool,
        /// How many TLS records it spanned.
        records: usize,
        /// The hello itself.
        bytes: &'a [u8],
    },
    /// A plain HTTP/1.x request head.
    Http {
        /// Its Host header.
        host: Option<&'a [u8]>,
    },
    /// Neither: bytes routed as `proto=other`.
    Other,
}

/// What the first bytes said about the client.
#[derive(Clone, Copy, Default)]
pub struct Facts {
    /// The client: the PROXY header's source, else the socket's peer.
    pub src: Option<SocketAddr>,
    /// The destination the client connected to, from the PROXY header.
    pub dst: Option<SocketAddr>,
    /// Which PROXY header was seen: "v1", "v2" or none.
    pub proxy: Option<&'static str>,
    /// The ClientHello's server name.
    pub sni: HostName,
    /// A plain HTTP request's Host header.
    pub host: HostName,
    /// The ClientHello's ALPN list, comma-separated (truncated at 64 bytes).
    pub alpn: Inline<64>,
    /// The ClientHello carried encrypted_client_hello.
    pub ech: bool,
    /// The PROXY v2 AUTHORITY TLV (validated as a host name).
    pub authority: HostName,
    /// Where the name routed on comes from (see [`Facts::name`]); `None`: no name yet.
    pub routed_on: Option<Source>,
    /// What the first bytes were.
    pub proto: Option<Proto>,
    /// The PROXY header said LOCAL: the load balancer's own connection (a health check).
    pub local: bool,
}

impl Facts {
    /// Takes in what the PROXY header said.
    pub fn learn_header(&mut self, h: &HeaderFacts<'_>) {
        self.proxy = Some(h.version);
        if let Some((src, dst)) = h.addrs {
            self.src = Some(src);
            self.dst = Some(dst);
        }
        if let Some(a) = h.authority {
            self.authority.set(a);
        }
        self.local = h.local;
    }

    /// Takes in what the ClientHello or request head said.
    pub fn learn_hello(&mut self, hello: &Hello<'_>) {
        match *hello {
            Hello::Tls { sni, alpn, ech, .. } => {
                self.proto = Some(Proto::Tls);
                if let Some(sni) = sni {
                    self.sni.set(sni.as_bytes());
                }
                if let Some(list) = alpn {
                    set_alpn_text(&mut self.alpn, list);
                }
                self.ech = ech;
            }
            Hello::Http { host } => {
                self.proto = Some(Proto::Http);
                if let Some(host) = host {
                    self.host.set(host);
                }
            }
            Hello::Other => self.proto = Some(Proto::Other),
        }
    }

    /// The name routed on: the SNI (or Host), else AUTHORITY, per ENVOY_NAME_MISMATCH;
    /// provisionally the SNI once the ClientHello is in, so that a name trace sees it.
    pub fn name(&self) -> &HostName {
        const NONE: &HostName = &Inline::new();
        match self.routed_on {
            Some(Source::Hello) => self.asked_name(),
            Some(Source::Authority) => &self.authority,
            None => NONE,
        }
    }

    /// The name the client itself asked for: the SNI, or a plain HTTP request's Host (the
    /// close line and `show sessions` print each under its own key, `sni` and `host`).
    pub fn asked_name(&self) -> &HostName {
        if self.sni.is_empty() {
            &self.host
        } else {
            &self.sni
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_keeps_at_most_its_capacity_and_shows_a_dash_when_empty() {
        assert_eq!(Inline::<4>::from_bytes(b"abcdef").as_bytes(), b"abcd");
        assert_eq!(Inline::<4>::from_bytes(b"ab").as_bytes(), b"ab");
        assert_eq!(Inline::<4>::new().to_string(), "-");
        assert_eq!(Inline::<8>::from_bytes(b"a\nb").to_string(), "a\\x0ab");
    }

    #[test]
    fn pushed_bytes_are_cut_at_the_capacity() {
        let mut i = Inline::<5>::new();
        i.push(b"abc");
        i.push(b"def");
        assert_eq!(i.as_bytes(), b"abcde");
        i.push(b"more");
        assert_eq!(i.as_bytes(), b"abcde");
    }

    /// A ClientHello offering the ALPN list `raw` (u8-length-prefixed names), parsed.
    fn hello_offering(raw: &[u8], out: &mut Vec<u8>) {
        let mut ext = vec![0x00, 0x10]; // application_layer_protocol_negotiation
        ext.extend_from_slice(&((raw.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        ext.extend_from_slice(raw);
        let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0); // no session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01, 0x00]; // client_hello, u24 length
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        out.extend_from_slice(&[0x16, 0x03, 0x01]); // handshake record, TLS 1.0
        out.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        out.extend_from_slice(&hs);
    }

    #[test]
    fn the_alpn_list_is_kept_as_its_display_shows_it_and_cut_at_64_bytes() {
        let mut long = Vec::new();
        for _ in 0..10 {
            long.extend_from_slice(b"\x08http/1.1");
        }
        let mut every_byte = Vec::new();
        for b in 0..=255u8 {
            every_byte.extend_from_slice(&[1, b]);
        }
        let cases: [(&[u8], &[u8]); 5] = [
            (b"\x02h2\x08http/1.1", b"h2,http/1.1"),
            // a separator or a backslash inside a name cannot forge the list
            (b"\x03a,b\x02\\\n", b"a\\x2cb,\\x5c\\x0a"),
            (&long, &b"http/1.1,".repeat(8)[..64]),
            // a cut inside an escape
            (
                &[&[62u8][..], &[b'a'; 61], b"\x01"].concat(),
                &[&[b'a'; 61][..], b"\\x0"].concat(),
            ),
            (&every_byte, &[]),
        ];
        for (raw, shown) in cases {
            let mut bytes = Vec::new();
            hello_offering(raw, &mut bytes);
            let mut scratch = vec![0u8; crate::wire::tls::MAX_HELLO_LEN];
            let crate::wire::Parsed::Complete(hello, _) =
                crate::wire::tls::parse_client_hello(&bytes, &mut scratch)
            else {
                panic!("the test hello does not parse: {raw:?}");
            };
            let list = hello.alpn.unwrap();
            let mut f = Facts::default();
            f.learn_hello(&Hello::Tls {
                sni: None,
                alpn: Some(list),
                ech: false,
                records: 1,
                bytes: &[],
            });
            if !shown.is_empty() {
                assert_eq!(f.alpn.as_bytes(), shown, "{raw:?}");
            }
            let old = Inline::<64>::from_bytes(list.to_string().as_bytes());
            assert_eq!(f.alpn.as_bytes(), old.as_bytes(), "as before: {raw:?}");
        }
    }

    #[test]
    fn the_asked_name_is_the_sni_or_else_the_host() {
        let mut f = Facts::default();
        assert!(f.asked_name().is_empty());
        f.learn_hello(&Hello::Http {
            host: Some(b"plain.test"),
        });
        assert_eq!(f.asked_name().as_bytes(), b"plain.test");
        assert!(f.sni.is_empty(), "a Host is not an SNI");
        assert_eq!(f.proto, Some(Proto::Http));
        let mut t = Facts::default();
        t.learn_hello(&Hello::Tls {
            sni: Some("tls.test"),
            alpn: None,
            ech: true,
            records: 1,
            bytes: &[],
        });
        assert_eq!(t.asked_name().as_bytes(), b"tls.test");
        assert!(t.host.is_empty());
        assert!(t.ech);
        assert_eq!(t.proto, Some(Proto::Tls));
    }

    #[test]
    fn a_header_without_addresses_keeps_the_peer_as_the_client() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let mut f = Facts {
            src: Some(peer),
            ..Facts::default()
        };
        let local = HeaderFacts {
            version: "v2",
            addrs: None,
            authority: None,
            local: true,
            bytes: &[0; 16],
        };
        f.learn_header(&local);
        assert_eq!(
            (f.src, f.dst, f.proxy, f.local),
            (Some(peer), None, Some("v2"), true)
        );
        let (src, dst) = (
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:443".parse().unwrap(),
        );
        f.learn_header(&HeaderFacts {
            addrs: Some((src, dst)),
            authority: Some(b"a.test"),
            local: false,
            ..local
        });
        assert_eq!((f.src, f.dst), (Some(src), Some(dst)));
        assert_eq!(f.authority.as_bytes(), b"a.test");
    }
}
