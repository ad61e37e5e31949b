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

/// What a PROXY header said.
#[derive(Clone, Copy)]
pub struct HeaderFacts {
    /// "v1" or "v2".
    pub version: &'static str,
    /// Source and destination, for TCP over IPv4 or IPv6 (none for UNIX, UNSPEC, LOCAL).
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// The AUTHORITY TLV, already checked to be a host name; empty when absent.
    pub authority: HostName,
    /// The LOCAL command: the load balancer's own connection (a health check).
    pub local: bool,
    /// The header's length in bytes.
    pub len: usize,
}

/// What the bytes after the PROXY header said.
#[derive(Clone, Copy)]
pub enum Hello {
    /// A TLS ClientHello.
    Tls {
        /// The server name; empty when absent.
        sni: HostName,
        /// The ALPN list, comma-separated (truncated at 64 bytes).
        alpn: Inline<64>,
        /// The first ALPN protocol offered.
        first_alpn: Inline<64>,
        /// encrypted_client_hello was offered.
        ech: bool,
        /// The hello's length in bytes.
        len: usize,
        /// How many TLS records it spanned.
        records: usize,
    },
    /// A plain HTTP/1.x request head.
    Http {
        /// Its Host header; empty when absent.
        host: HostName,
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
    /// The first ALPN protocol the client offered.
    pub first_alpn: Inline<64>,
    /// The PROXY v2 AUTHORITY TLV (validated as a host name).
    pub authority: HostName,
    /// The name routed on: the SNI (or Host), else AUTHORITY, per ENVOY_NAME_MISMATCH.
    pub name: HostName,
    /// What the first bytes were.
    pub proto: Option<Proto>,
    /// The PROXY header said LOCAL: the load balancer's own connection (a health check).
    pub local: bool,
}

impl Facts {
    /// Takes in what the PROXY header said.
    pub fn learn_header(&mut self, h: &HeaderFacts) {
        self.proxy = Some(h.version);
        if let Some((src, dst)) = h.addrs {
            self.src = Some(src);
            self.dst = Some(dst);
        }
        self.authority = h.authority;
        self.local = h.local;
    }

    /// Takes in what the ClientHello or request head said.
    pub fn learn_hello(&mut self, hello: &Hello) {
        match hello {
            Hello::Tls {
                sni,
                alpn,
                first_alpn,
                ech,
                ..
            } => {
                self.proto = Some(Proto::Tls);
                self.sni = *sni;
                self.alpn = *alpn;
                self.first_alpn = *first_alpn;
                self.ech = *ech;
            }
            Hello::Http { host } => {
                self.proto = Some(Proto::Http);
                self.host = *host;
            }
            Hello::Other => self.proto = Some(Proto::Other),
        }
    }

    /// The name the client itself asked for: the SNI, or a plain HTTP request's Host. What the
    /// close line and `show sessions` print as `sni` (one column for both, as before).
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
    fn the_asked_name_is_the_sni_or_else_the_host() {
        let mut f = Facts::default();
        assert!(f.asked_name().is_empty());
        f.learn_hello(&Hello::Http {
            host: HostName::from_bytes(b"plain.test"),
        });
        assert_eq!(f.asked_name().as_bytes(), b"plain.test");
        assert!(f.sni.is_empty(), "a Host is not an SNI");
        assert_eq!(f.proto, Some(Proto::Http));
        let mut t = Facts::default();
        t.learn_hello(&Hello::Tls {
            sni: HostName::from_bytes(b"tls.test"),
            alpn: Inline::from_bytes(b"h2,http/1.1"),
            first_alpn: Inline::from_bytes(b"h2"),
            ech: true,
            len: 512,
            records: 1,
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
            authority: HostName::new(),
            local: true,
            len: 16,
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
            authority: HostName::from_bytes(b"a.test"),
            local: false,
            ..local
        });
        assert_eq!((f.src, f.dst), (Some(src), Some(dst)));
        assert_eq!(f.authority.as_bytes(), b"a.test");
    }
}
