//! The handshake phase: reading the client's first bytes and parsing them, first the PROXY
//! header (per ENVOY_PROXY_PROTOCOL), then the ClientHello (or a plain HTTP request head, or
//! anything else). Each step hands back what it learned ([`Handshaking`]); the session
//! decides what to do with it.
//!
//! Never routes, never connects, never writes to the client. The bytes stay in the one
//! buffer the phase holds (the PROXY header too, until the route is chosen: its TLVs may be
//! passed on), and that buffer is handed on to the shuffle whole. What the bytes come to
//! (a header, a hello, a refusal) is `first_bytes`' decision, the one `sluice inspect` takes
//! on a capture; this phase reads, then logs and counts what it is told.

use log::{log_enabled, warn, Level};
use mio::net::TcpStream;

use crate::first_bytes::{self, First, HeaderStep, HelloStep, Refusal};
use crate::hexdump::{Address, DumpRows, ERROR_DUMP_LIMIT};
use crate::inspect::HeaderSummary;
use crate::logfmt::{Shown, Value};
use crate::net::{self, Io};
use crate::wire::proxy::{self, Addresses, ProxyHeader};
use crate::wire::Parsed;
use crate::worker::buffer::{Buffer, Pool};
use crate::worker::pipe::{Flow, Ready, READ_BUDGET};
use crate::worker::session::core::{Core, DEBUG_DUMP_LIMIT};
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

    /// The client sent its FIN: nothing more will come.
    pub fn client_finished(&self) -> bool {
        self.eof
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

    /// The length of the whole PROXY header received, even one not parsed yet (a reset
    /// read right behind it ends the handshake before the parse); 0 when there is none.
    /// For the close only: it may parse again.
    pub fn whole_header_len(&self, core: &Core) -> usize {
        if !self.reading_header() {
            return self.header_len();
        }
        let trusted = || core.cfg.is_trusted(core.peer.ip());
        match first_bytes::header(self.received(), core.cfg.proxy_protocol, trusted, || false) {
            HeaderStep::Done(Some(h)) => h.len,
            _ => 0,
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

    /// What followed the PROXY header (every byte read, when there was none).
    pub fn after_header(&self) -> &[u8] {
        self.received().get(self.header_len()..).unwrap_or(&[])
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
        let full = || self.received.as_ref().is_some_and(Buffer::is_full);
        let policy = core.cfg.proxy_protocol;
        let refused = match self.stage {
            Stage::Header => {
                let trusted = || core.cfg.is_trusted(core.peer.ip());
                match first_bytes::header(received, policy, trusted, full) {
                    HeaderStep::Done(header) => {
                        let header_len = header.map_or(0, |h| h.len);
                        self.stage = Stage::Hello { header_len };
                        let bytes = received.get(..header_len).unwrap_or(received);
                        return Handshaking::Header(header.map(|h| header_facts(&h, bytes)));
                    }
                    HeaderStep::NeedMore => None,
                    HeaderStep::Refused(r) => Some((r, received)),
                }
            }
            Stage::Hello { header_len } => {
                let data = received.get(header_len..).unwrap_or(&[]);
                match first_bytes::hello(data, policy, core.facts.local, full, scratch) {
                    HelloStep::Done(first) => return Handshaking::Hello(hello_of(first, data)),
                    HelloStep::NeedMore(_) => None,
                    HelloStep::Refused(r) => Some((r, data)),
                }
            }
        };
        if let Some((r, data)) = refused {
            log_refusal(r, core, data, received);
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

/// What a complete PROXY header says, for the session's facts; `bytes` is the header.
fn header_facts<'a>(h: &ProxyHeader<'a>, bytes: &'a [u8]) -> HeaderFacts<'a> {
    let addrs = match h.addrs {
        Addresses::Inet { src, dst } => Some((src, dst)),
        _ => None,
    };
    HeaderFacts {
        version: match h.version {
            proxy::Version::V1 => "v1",
            proxy::Version::V2 => "v2",
        },
        addrs,
        authority: h.tlvs.authority(),
        local: h.command == proxy::Command::Local,
        bytes,
    }
}

/// What complete first bytes say, for the session's facts; `data` is where they start.
fn hello_of<'a>(first: First<'a>, data: &'a [u8]) -> Hello<'a> {
    match first {
        First::Tls { hello, len } => Hello::Tls {
            sni: hello.sni,
            alpn: hello.alpn,
            ech: hello.ech,
            records: hello.records,
            bytes: data.get(..len).unwrap_or(data),
        },
        First::Http(head) => Hello::Http { host: head.host },
        First::Other => Hello::Other,
    }
}

/// Says why the first bytes were refused, with the offending bytes (`data`: those of the
/// stage that refused; `received`: every byte, for a buffer filled without completing):
/// what happened in words, the session, what is known, then the dump's rows (`reason=` is
/// the close line's alone: one line a session to count by reason).
fn log_refusal(r: Refusal, core: &Core, data: &[u8], received: &[u8]) {
    let (id, peer) = (core.id, Address(Some(core.peer)));
    let client = core.client_label();
    let listener = Value::str(core.cfg.listener_name());
    let dump = DumpRows::new(id, "first_bytes", data, ERROR_DUMP_LIMIT);
    match r {
        Refusal::MissingProxyHeader => warn!(
            target: TARGET,
            "no PROXY header sid={id} peer={peer} listener={listener} proxy_protocol={}{dump}",
            core.cfg.proxy_protocol_shown()
        ),
        Refusal::UntrustedProxy => warn!(
            target: TARGET,
            "PROXY header from a source not in ENVOY_TRUSTED_PROXIES sid={id} peer={peer} listener={listener}"
        ),
        Refusal::InvalidProxy(e) => warn!(
            target: TARGET,
            "invalid PROXY header sid={id} peer={peer} listener={listener} error={}{dump}",
            Shown(e)
        ),
        Refusal::BadAuthority => {
            let Parsed::Complete(h, n) = proxy::parse(data) else {
                return;
            };
            if core.traced || log_enabled!(Level::Debug) {
                let bytes = data.get(..n).unwrap_or(data);
                sdebug!(
                    core,
                    "PROXY header sid={} listener={} bytes={}{}{}",
                    id,
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    n,
                    HeaderSummary(&h),
                    DumpRows::new(id, "proxy_header", bytes, DEBUG_DUMP_LIMIT)
                );
            }
            warn!(
                target: TARGET,
                "PROXY AUTHORITY is not a host name sid={id} peer={peer} listener={listener} authority={}",
                Value(h.tlvs.authority().unwrap_or(&[]))
            );
        }
        Refusal::HeaderInStream => warn!(
            target: TARGET,
            "PROXY header inside the stream sid={id} client={client} listener={listener}{dump}"
        ),
        Refusal::LocalThenGarbage => warn!(
            target: TARGET,
            "LOCAL PROXY header followed by bytes neither TLS nor HTTP sid={id} peer={peer} listener={listener}{dump}"
        ),
        Refusal::InvalidTls(e) => warn!(
            target: TARGET,
            "invalid ClientHello sid={id} client={client} listener={listener} error={}{dump}",
            Shown(e)
        ),
        Refusal::InvalidHttp(e) => warn!(
            target: TARGET,
            "invalid HTTP request head sid={id} client={client} listener={listener} error={}{dump}",
            Shown(e)
        ),
        Refusal::TooLong { .. } => warn!(
            target: TARGET,
            "first bytes fill the buffer without completing sid={id} peer={peer} listener={listener} bytes={}{}",
            received.len(),
            DumpRows::new(id, "first_bytes", received, ERROR_DUMP_LIMIT)
        ),
    }
}
