//! What sluice says first on the upstream leg, per route mode: nothing (`direct`), a PROXY v2
//! header (`proxy-v2`), or an HTTP CONNECT request (`connect`); and the TLS alert a refused
//! client receives.
//!
//! Pure functions writing into caller buffers; the emitters in `wire` refuse any CR, LF or NUL
//! so nothing from the wire or from config can inject a header upstream. No I/O here.

use std::net::{IpAddr, SocketAddr};

use crate::config::route::{Mode, Route};
use crate::config::Config;
use crate::wire::http::{self, ConnectRequest};
use crate::wire::proxy::v2::{self as proxy_v2, RawTlv, V2Out};
use crate::wire::proxy::{self, Command};
use crate::wire::Parsed;

/// Most received TLVs passed on in one header.
const MAX_PASSED_TLVS: usize = 16;

/// A TLS alert record: fatal, with `code`. Sent in the clear before the handshake, as a
/// server that refuses a ClientHello would.
pub fn alert_record(code: u8) -> [u8; 7] {
    // content type 21 (alert), legacy version TLS 1.2, length 2, level 2 (fatal), description
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, code]
}

/// The session header value: the client IP as lowercase hex, 8 digits for IPv4, 32 for IPv6.
/// IPv4-mapped IPv6 addresses count as IPv4, so one client keeps one key.
pub fn session_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{:08x}", u32::from(v4)),
            None => format!("{:032x}", u128::from(v6)),
        },
    }
}

/// Who the client is and what it asked for, as a preamble announces it upstream.
pub struct Origin<'a> {
    /// The client (PROXY source, else the socket peer).
    pub src: SocketAddr,
    /// What the client connected to (PROXY destination, else sluice's own address).
    pub dst: SocketAddr,
    /// Whether `dst` came from a PROXY header (it then gives the CONNECT port).
    pub dst_from_header: bool,
    /// The routed name.
    pub name: Option<&'a [u8]>,
    /// The first ALPN protocol to announce upstream.
    pub alpn: Option<&'a [u8]>,
    /// The session id, sent as UNIQUE_ID.
    pub unique_id: &'a [u8],
    /// The PROXY header as received (for TLV pass-through), empty when none.
    pub header: &'a [u8],
}

/// Why no preamble could be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreambleError {
    /// CONNECT needs a name and the session has none.
    NoName,
    /// The PROXY v2 emitter refused (too long, bad TLV, ...).
    ProxyV2(proxy_v2::EmitError),
    /// The CONNECT emitter refused (a byte that may not appear in a header, too long).
    Connect(http::EmitError),
}

impl std::fmt::Display for PreambleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreambleError::NoName => {
                f.write_str("CONNECT mode needs a server name and the session has none")
            }
            PreambleError::ProxyV2(e) => write!(f, "PROXY v2 header: {e}"),
            PreambleError::Connect(e) => write!(f, "CONNECT request: {e}"),
        }
    }
}

/// Writes the route's preamble into `out`; returns its length (0 for direct).
pub fn preamble(
    route: &Route,
    cfg: &Config,
    h: &Origin<'_>,
    out: &mut [u8],
) -> Result<usize, PreambleError> {
    match route.mode {
        Mode::Direct => Ok(0),
        Mode::ProxyV2 => proxy_v2_header(route, h, out),
        Mode::Connect => connect_request(route, cfg, h, out),
    }
}

fn proxy_v2_header(route: &Route, h: &Origin<'_>, out: &mut [u8]) -> Result<usize, PreambleError> {
    let mut raw: [RawTlv<'_>; MAX_PASSED_TLVS] = [RawTlv {
        kind: 0,
        value: &[],
    }; MAX_PASSED_TLVS];
    let mut n = 0;
    let mut alpn = h.alpn;
    if let Parsed::Complete(received, _) = proxy::parse(h.header) {
        if received.tlvs.alpn().is_some() {
            alpn = received.tlvs.alpn();
        }
        for (kind, value) in received.tlvs.raw_iter() {
            if route.pass_tlvs.contains(&kind) {
                if let Some(slot) = raw.get_mut(n) {
                    *slot = RawTlv { kind, value };
                    n += 1;
                }
            }
        }
    }
    let v2 = V2Out {
        command: Command::Proxy,
        addrs: Some((h.src, h.dst)),
        authority: h.name,
        alpn,
        unique_id: Some(h.unique_id),
        raw: raw.get(..n).unwrap_or(&[]),
        crc32c: route.crc32c,
    };
    proxy_v2::emit(&v2, out).map_err(PreambleError::ProxyV2)
}

fn connect_request(
    route: &Route,
    cfg: &Config,
    h: &Origin<'_>,
    out: &mut [u8],
) -> Result<usize, PreambleError> {
    let name = h.name.ok_or(PreambleError::NoName)?;
    let port = if h.dst_from_header {
        h.dst.port()
    } else {
        route.connect_port.unwrap_or(443)
    };
    let key = session_key(h.src.ip());
    let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(2 + cfg.headers.len());
    headers.push((cfg.region_key.as_bytes(), cfg.country.as_bytes()));
    headers.push((cfg.session_key.as_bytes(), key.as_bytes()));
    for x in &cfg.headers {
        headers.push((x.name.as_bytes(), x.value.as_bytes()));
    }
    let req = ConnectRequest {
        host: name,
        port,
        headers: &headers,
    };
    http::emit_connect(out, &req).map_err(PreambleError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_fixed_width_hex() {
        assert_eq!(session_key("10.1.2.3".parse().unwrap()), "0a010203");
        assert_eq!(session_key("::ffff:10.1.2.3".parse().unwrap()), "0a010203");
        assert_eq!(
            session_key("2001:db8::1".parse().unwrap()),
            "20010db8000000000000000000000001"
        );
        assert_eq!(session_key("0.0.0.0".parse().unwrap()).len(), 8);
    }

    #[test]
    fn alert_records() {
        assert_eq!(alert_record(112), [0x15, 3, 3, 0, 2, 2, 112]);
    }
}
