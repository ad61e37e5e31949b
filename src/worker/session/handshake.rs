//! The handshake phase: reading the client's first bytes and parsing them, first the PROXY
//! header (per ENVOY_PROXY_PROTOCOL), then the ClientHello (or a plain HTTP request head, or
//! anything else). Each step hands back what it learned ([`Handshaking`]); the session
//! decides what to do with it.
//!
//! Never routes, never connects, never writes to the client. The bytes stay in the one
//! buffer the phase holds (the PROXY header too, until the route is chosen: its TLVs may be
//! passed on), and that buffer is handed on to the shuffle whole. Parsing itself is `wire`'s.

use log::{log_enabled, warn, Level};
use mio::net::TcpStream;

use crate::config::ProxyPolicy;
use crate::hexdump::{Escaped, HexDump, ERROR_DUMP_LIMIT};
use crate::net::{self, Io};
use crate::wire::http;
use crate::wire::proxy::{self, Addresses, Detected};
use crate::wire::tls::{self, TlsError};
use crate::wire::Parsed;
use crate::worker::buffer::{Buffer, Pool};
use crate::worker::pipe::{Flow, Ready, READ_BUDGET};
use crate::worker::session::core::{Core, DEBUG_DUMP_LIMIT};
use crate::worker::session::decide::{self, Refusal};
use crate::worker::session::facts::{HeaderFacts, Hello};
use crate::worker::session::logs::{sdebug, TARGET};
use crate::worker::stats::{CloseReason, Stats};

/// How far the handshake got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Looking for the PROXY header.
    Header,
    /// Past it (or none is looked for): reading the ClientHello, which starts `header_len`
    /// bytes into the buffer.
    Hello { header_len: usize },
}

/// The handshake phase's data.
pub struct Handshake {
    /// What the client sent so far; `None` while nothing came (no buffer held waiting).
    received: Option<Buffer>,
    /// The client sent FIN. Kept: a FIN right behind a complete ClientHello is passed on.
    eof: bool,
    stage: Stage,
}

/// What a step of the handshake came to; what it learned borrows the received bytes.
pub enum Handshaking<'a> {
    /// Nothing complete yet: wait for bytes (or the header timer).
    Wait,
    /// The read budget ran out with bytes still coming: go on next turn.
    Again,
    /// Over: the client is refused, gone, or no buffer was left.
    Close(CloseReason),
    /// The PROXY header is done (`None`: there was none, and none is required).
    Header(Option<HeaderFacts<'a>>),
    /// The hello is complete: the session can route.
    Hello(Hello<'a>),
}

/// What one parse of the buffered bytes said.
enum Parse<T> {
    NeedMore,
    Done(T),
    Refused(Refusal),
}

impl Handshake {
    /// A handshake that starts with the PROXY header, or (`expect_header` false) without.
    pub fn new(expect_header: bool) -> Handshake {
        Handshake {
            received: None,
            eof: false,
            stage: if expect_header {
                Stage::Header
            } else {
                Stage::Hello { header_len: 0 }
            },
        }
    }

    /// Still looking for the PROXY header.
    pub fn reading_header(&self) -> bool {
        self.stage == Stage::Header
    }

    fn header_len(&self) -> usize {
        match self.stage {
            Stage::Header => 0,
            Stage::Hello { header_len } => header_len,
        }
    }

    /// Every byte read so far.
    pub fn received(&self) -> &[u8] {
        self.received.as_ref().map_or(&[][..], Buffer::data)
    }

    /// The PROXY header as received (empty when none).
    pub fn header(&self) -> &[u8] {
        self.received().get(..self.header_len()).unwrap_or(&[])
    }

    /// Drops the PROXY header from the buffer: it is not replayed (a preamble, if any,
    /// speaks for it).
    pub fn skip_header(&mut self) {
        let n = self.header_len();
        if let Some(b) = self.received.as_mut() {
            b.consume(n);
        }
        if let Stage::Hello { header_len } = &mut self.stage {
            *header_len = 0;
        }
    }

    /// Hands the buffer and the client's FIN on: the client-to-upstream direction of the
    /// shuffle starts with them.
    pub fn hand_on(&mut self) -> Flow {
        Flow::carrying(self.received.take(), self.eof)
    }

    /// Gives the buffer back.
    pub fn release(&mut self, pool: &mut Pool) {
        if let Some(b) = self.received.take() {
            pool.give(b);
        }
    }

    /// Reads what the client sent, then parses as far as it goes; `scratch` is where a
    /// hello spanning several records is put together.
    pub fn advance<'a>(
        &'a mut self,
        core: &mut Core,
        (pool, stats): (&mut Pool, &mut Stats),
        scratch: &'a mut [u8],
    ) -> Handshaking<'a> {
        if core.client_ready.readable && !self.eof {
            if let Err(reason) = self.read(&mut core.client, &mut core.client_ready, pool) {
                return Handshaking::Close(reason);
            }
        }
        if self.received.as_ref().is_some_and(Buffer::is_empty) {
            self.release(pool); // nothing came: no buffer held while waiting
        }
        let received = self.received.as_ref().map_or(&[][..], Buffer::data);
        let refused = match self.stage {
            Stage::Header => match parse_header(received, core) {
                Parse::Done(header) => {
                    let header_len = header.as_ref().map_or(0, |h| h.bytes.len());
                    self.stage = Stage::Hello { header_len };
                    return Handshaking::Header(header);
                }
                Parse::NeedMore => None,
                Parse::Refused(r) => Some(r),
            },
            Stage::Hello { header_len } => {
                let data = received.get(header_len..).unwrap_or(&[]);
                match parse_hello(data, core, scratch) {
                    Parse::Done(hello) => return Handshaking::Hello(hello),
                    Parse::NeedMore => None,
                    Parse::Refused(r) => Some(r),
                }
            }
        };
        let refused = refused.or_else(|| {
            let full = self.received.as_ref().is_some_and(Buffer::is_full);
            full.then(|| {
                warn!(
                    target: TARGET,
                    "sid={} peer={} refused: first bytes fill the buffer without completing; first bytes:\n{}",
                    core.id,
                    core.peer,
                    HexDump::new(received, ERROR_DUMP_LIMIT)
                );
                Refusal::TooLong {
                    header: self.stage == Stage::Header,
                }
            })
        });
        if let Some(r) = refused {
            let (parser, kind) = r.counted_as();
            stats.parse_error(parser, kind);
            return Handshaking::Close(r.close_reason());
        }
        if self.eof {
            return Handshaking::Close(CloseReason::ClientClosedEarly);
        }
        if core.client_ready.readable {
            return Handshaking::Again;
        }
        Handshaking::Wait
    }

    /// Reads within the budget; stops at a short read (drained), FIN or a full buffer.
    fn read(
        &mut self,
        client: &mut TcpStream,
        ready: &mut Ready,
        pool: &mut Pool,
    ) -> Result<(), CloseReason> {
        let buf = match self.received.take().or_else(|| pool.take()) {
            Some(b) => self.received.insert(b),
            None => return Err(CloseReason::NoBuffer),
        };
        for _ in 0..READ_BUDGET {
            let room = buf.space().len();
            match net::read(client, buf.space()) {
                Io::Done(n) => {
                    buf.filled(n);
                    ready.after_read(n, room);
                    if !ready.readable {
                        break;
                    }
                }
                Io::WouldBlock => {
                    // A full buffer also lands here: the parsers decide.
                    if !buf.space().is_empty() {
                        ready.readable = false;
                    }
                    break;
                }
                Io::Closed => {
                    self.eof = true;
                    break;
                }
                Io::Error(_) => return Err(CloseReason::ClientReset),
            }
        }
        Ok(())
    }
}

/// Looks for a PROXY header per policy in `data`, from a peer that may send one.
fn parse_header<'a>(data: &'a [u8], core: &Core) -> Parse<Option<HeaderFacts<'a>>> {
    match proxy::detect(data) {
        Detected::NeedMore => return Parse::NeedMore,
        Detected::NoHeader if core.cfg.proxy_protocol == ProxyPolicy::Required => {
            warn!(
                target: TARGET,
                "sid={} peer={} refused: no PROXY header (ENVOY_PROXY_PROTOCOL=required); first bytes:\n{}",
                core.id,
                core.peer,
                HexDump::new(data, ERROR_DUMP_LIMIT)
            );
            return Parse::Refused(Refusal::MissingProxyHeader);
        }
        Detected::NoHeader => return Parse::Done(None),
        Detected::V1 | Detected::V2 => {}
    }
    if !core.cfg.is_trusted(core.peer.ip()) {
        warn!(
            target: TARGET,
            "sid={} peer={} refused: PROXY header from a source not in ENVOY_TRUSTED_PROXIES",
            core.id, core.peer
        );
        return Parse::Refused(Refusal::UntrustedProxy);
    }
    match proxy::parse(data) {
        Parsed::NeedMore => Parse::NeedMore,
        Parsed::Invalid(e) => {
            warn!(
                target: TARGET,
                "sid={} peer={} invalid PROXY header: {}; first bytes:\n{}",
                core.id,
                core.peer,
                e,
                HexDump::new(data, ERROR_DUMP_LIMIT)
            );
            Parse::Refused(Refusal::InvalidProxy(e))
        }
        Parsed::Complete(h, n) => {
            let bytes = data.get(..n).unwrap_or(data);
            if core.traced || log_enabled!(Level::Debug) {
                sdebug!(
                    core,
                    "sid={} PROXY header, {} bytes:\n{}",
                    core.id,
                    n,
                    HexDump::new(bytes, DEBUG_DUMP_LIMIT)
                );
            }
            let authority = h.tlvs.authority();
            if let Some(a) = authority {
                if !crate::wire::name::is_host(a) {
                    warn!(
                        target: TARGET,
                        "sid={} peer={} refused: PROXY AUTHORITY {:?} is not a host name",
                        core.id,
                        core.peer,
                        Escaped(a).to_string()
                    );
                    return Parse::Refused(Refusal::BadAuthority);
                }
            }
            let addrs = match h.addrs {
                Addresses::Inet { src, dst } => Some((src, dst)),
                _ => None,
            };
            Parse::Done(Some(HeaderFacts {
                version: match h.version {
                    proxy::Version::V1 => "v1",
                    proxy::Version::V2 => "v2",
                },
                addrs,
                authority,
                local: h.command == proxy::Command::Local,
                bytes,
            }))
        }
    }
}

/// Looks for a ClientHello in `data` (what followed the PROXY header); `scratch` is where a
/// hello spanning several records is put together.
fn parse_hello<'a>(data: &'a [u8], core: &Core, scratch: &'a mut [u8]) -> Parse<Hello<'a>> {
    match tls::parse_client_hello(data, scratch) {
        Parsed::NeedMore => Parse::NeedMore,
        Parsed::Invalid(TlsError::NotTls) => parse_plain(data, core),
        Parsed::Invalid(e) => {
            warn!(
                target: TARGET,
                "sid={} client={} invalid ClientHello: {}; first bytes:\n{}",
                core.id,
                core.client_label(),
                e,
                HexDump::new(data, ERROR_DUMP_LIMIT)
            );
            Parse::Refused(Refusal::InvalidTls(e))
        }
        Parsed::Complete(hello, n) => Parse::Done(Hello::Tls {
            sni: hello.sni,
            alpn: hello.alpn,
            ech: hello.ech,
            records: hello.records,
            bytes: data.get(..n).unwrap_or(data),
        }),
    }
}

/// Not TLS: a plain HTTP/1.x request is routed on its Host header; anything else has no
/// name and goes where the routes send `proto=other`.
fn parse_plain<'a>(data: &'a [u8], core: &Core) -> Parse<Hello<'a>> {
    if core.cfg.proxy_protocol != ProxyPolicy::Off {
        // A PROXY header where the ClientHello should be: a second header, or one smuggled
        // into the stream. Never forwarded.
        match proxy::detect(data) {
            Detected::NeedMore => return Parse::NeedMore,
            Detected::V1 | Detected::V2 => {
                warn!(
                    target: TARGET,
                    "sid={} client={} refused: a PROXY header inside the stream; first bytes:\n{}",
                    core.id,
                    core.client_label(),
                    HexDump::new(data, ERROR_DUMP_LIMIT)
                );
                return Parse::Refused(Refusal::HeaderInStream);
            }
            Detected::NoHeader => {}
        }
    }
    let mut hello = Hello::Other;
    if data.first().is_some_and(|&b| http::could_be_http(b)) {
        match http::parse_request_host(data) {
            Parsed::NeedMore => return Parse::NeedMore,
            Parsed::Complete(head, _) => {
                hello = Hello::Http { host: head.host };
            }
            // The request line is not HTTP at all: other bytes, routed as such.
            Parsed::Invalid(e) if decide::not_http(e) => {}
            Parsed::Invalid(e) => {
                warn!(
                    target: TARGET,
                    "sid={} client={} invalid HTTP request head: {}; first bytes:\n{}",
                    core.id,
                    core.client_label(),
                    e,
                    HexDump::new(data, ERROR_DUMP_LIMIT)
                );
                return Parse::Refused(Refusal::InvalidHttp(e));
            }
        }
    }
    if core.facts.local && matches!(hello, Hello::Other) {
        warn!(
            target: TARGET,
            "sid={} peer={} refused: a LOCAL PROXY header followed by bytes that are neither TLS nor HTTP; first bytes:\n{}",
            core.id,
            core.peer,
            HexDump::new(data, ERROR_DUMP_LIMIT)
        );
        return Parse::Refused(Refusal::LocalThenGarbage);
    }
    Parse::Done(hello)
}
