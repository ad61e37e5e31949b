//! One proxied connection: its state machine and the two-direction shuffle.
//!
//! `Opened` (reading the PROXY header, per policy) → `HeaderParsed` (reading the ClientHello)
//! → `Connecting` (non-blocking upstream connect, trying each address in order) →
//! `Connected` (shuffling both ways) → `HalfClosed` (one direction finished) → `Closed`.
//! Every change of state goes through [`Session::set_state`], which logs `A => B` at debug.
//!
//! Readiness is edge-triggered: the session remembers which legs are readable and writable,
//! and every read and write loops until `WouldBlock`, within a budget per wakeup; a session
//! that exhausts its budget asks to be driven again ([`Step::Yield`]) instead of starving
//! the others. A direction holds a pool buffer only while it has bytes in flight. Parsing is
//! delegated to `wire`; this module never interprets `io::ErrorKind` (see `net::Io`).

pub mod preamble;

use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use log::{info, log_enabled, warn, Level};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::admin::capture::Capture;
use crate::admin::trace::TraceRule;
use crate::config::route::{self, Action, Alert, Mode, Proto, Route};
use crate::config::{Config, NameMismatch, ProxyPolicy};
use crate::hexdump::{Escaped, HexDump, ERROR_DUMP_LIMIT};
use crate::net::{self, Io};
use crate::wire::http::{self, HttpError};
use crate::wire::proxy::{self, Addresses, Detected};
use crate::wire::tls::{self, TlsError};
use crate::wire::Parsed;
use crate::worker::buffer::{Buffer, Pool};
use crate::worker::splice::{Pipe, PipePool, PIPE_CAP};
use crate::worker::stats::{CloseReason, Stats};
use crate::worker::timer::{Entry, Wheel};

/// Reads per direction per wakeup before the session yields to others.
const READ_BUDGET: usize = 16;

/// Bytes of a PROXY header or ClientHello dumped at debug level.
const DEBUG_DUMP_LIMIT: usize = 2048;

/// Which socket of a session an event is for. Packed into the low bit of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The accepted connection (from the load balancer or the client).
    Client = 0,
    /// The connection sluice opened.
    Upstream = 1,
}

/// The token for `leg` of the session at slab `key`.
pub fn token(key: usize, leg: Leg) -> Token {
    Token(key << 1 | leg as usize)
}

/// The slab key and leg of a session token.
pub fn untoken(t: Token) -> (usize, Leg) {
    (
        t.0 >> 1,
        if t.0 & 1 == 0 {
            Leg::Client
        } else {
            Leg::Upstream
        },
    )
}

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted; reading the PROXY header.
    Opened,
    /// The header is done (or not expected); reading the ClientHello.
    HeaderParsed,
    /// Connecting to the upstream.
    Connecting,
    /// Shuffling bytes both ways.
    Connected,
    /// One direction has finished (FIN passed on); the other still flows.
    HalfClosed,
    /// Gone.
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the loop should do after driving a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait for the next readiness event or timer.
    Wait,
    /// The budget ran out with work left: drive again on the next loop turn.
    Yield,
    /// Close the session for this reason.
    Close(CloseReason),
}

/// What the loop lends a session while it is driven.
pub struct Ctx<'a> {
    /// To register the upstream socket.
    pub registry: &'a Registry,
    /// Buffers for the directions.
    pub pool: &'a mut Pool,
    /// Splice pipes for bulk directions (Linux).
    pub pipes: &'a mut PipePool,
    /// Deadlines.
    pub wheel: &'a mut Wheel,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Where a ClientHello spanning several records is reassembled.
    pub scratch: &'a mut [u8],
    /// Milliseconds since the loop started.
    pub now_ms: u64,
    /// Which sessions are traced.
    pub traces: &'a [TraceRule],
    /// Where failed and traced sessions' first bytes go, if anywhere.
    pub capture: Option<&'a mut Capture>,
}

/// Logs at debug, or at info whatever the level for a traced session.
macro_rules! sdebug {
    ($s:expr, $($arg:tt)+) => {
        if $s.traced {
            crate::worker::session::forced(format_args!($($arg)+));
        } else {
            log::debug!($($arg)+);
        }
    };
}

/// Emits a line past the level filter (tracing shows at any level).
pub fn forced(args: fmt::Arguments<'_>) {
    log::logger().log(
        &log::Record::builder()
            .level(Level::Info)
            .target("sluice::trace")
            .args(args)
            .build(),
    );
}

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

/// What the first bytes said about the client.
#[derive(Clone, Copy, Default)]
pub struct Facts {
    /// The client: the PROXY header's source, else the socket's peer.
    pub src: Option<SocketAddr>,
    /// The destination the client connected to, from the PROXY header.
    pub dst: Option<SocketAddr>,
    /// Which PROXY header was seen: "v1", "v2" or none.
    pub proxy: Option<&'static str>,
    /// The ClientHello's server name (or a plain HTTP request's Host).
    pub sni: Inline<253>,
    /// The ClientHello's ALPN list, comma-separated (truncated at 64 bytes).
    pub alpn: Inline<64>,
    /// The ClientHello carried encrypted_client_hello.
    pub ech: bool,
    /// The first ALPN protocol the client offered.
    pub first_alpn: Inline<64>,
    /// The PROXY v2 AUTHORITY TLV (validated as a host name).
    pub authority: Inline<253>,
    /// The name routed on: SNI, else AUTHORITY, else Host, per ENVOY_NAME_MISMATCH.
    pub name: Inline<253>,
    /// What the first bytes were.
    pub proto: Option<Proto>,
    /// Bytes of PROXY header still at the front of the client buffer (until routed).
    pub header_len: usize,
    /// The PROXY header said LOCAL: the load balancer's own connection (a health check).
    pub local: bool,
}

/// One direction of the shuffle.
#[derive(Default)]
struct Flow {
    /// Bytes read and not yet written; `None` while idle.
    buf: Option<Buffer>,
    /// Bytes written to the destination.
    bytes: u64,
    /// The source sent FIN.
    eof: bool,
    /// FIN was passed on to the destination.
    shut: bool,
    /// A read filled the whole buffer: bulk; splice when the buffer is next empty.
    bulk: bool,
    /// The splice pipe holding this direction's bytes in flight, instead of `buf`.
    pipe: Option<Pipe>,
    /// Of `bytes`, those moved through the pipe.
    spliced: u64,
}

impl Flow {
    fn done(&self) -> bool {
        self.eof && self.shut
    }

    fn pending(&self) -> usize {
        self.buf.as_ref().map_or(0, Buffer::len) + self.pipe.as_ref().map_or(0, |p| p.len)
    }

    fn release(&mut self, pool: &mut Pool) {
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }

    fn release_pipe(&mut self, pipes: &mut PipePool) {
        if let Some(p) = self.pipe.take() {
            pipes.give(p);
        }
    }
}

/// Readiness remembered between edge-triggered events.
#[derive(Default, Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) was reported: read on until a read says so, since no
    /// further edge will come.
    hup: bool,
}

impl Ready {
    /// After a read of `n` bytes into `room`: a short read drained the socket (as haproxy
    /// concludes too), so the EAGAIN read that would prove it is skipped; the next arrival
    /// brings a new edge. Not once FIN or an error was reported: that read must be made.
    fn after_read(&mut self, n: usize, room: usize) {
        if n < room && !self.hup {
            self.readable = false;
        }
    }
}

/// One client connection and, once opened, its upstream.
pub struct Session {
    /// The id that every log line of this session carries.
    pub id: u64,
    /// Transitions and hex dumps are logged whatever the level.
    pub traced: bool,
    key: usize,
    state: State,
    cfg: Rc<Config>,
    client: TcpStream,
    upstream: Option<TcpStream>,
    client_ready: Ready,
    upstream_ready: Ready,
    /// The socket peer (the load balancer, or the client itself).
    pub peer: SocketAddr,
    /// What the first bytes said.
    pub facts: Facts,
    /// Client to upstream.
    up: Flow,
    /// Upstream to client.
    down: Flow,
    /// Index of the route taken in `cfg.routes`; `None`: the default route.
    route: Option<usize>,
    /// The PROXY v2 header or CONNECT request, written upstream before anything else.
    pre: Option<Buffer>,
    /// CONNECT mode: the request is out (or going), the reply not yet in.
    awaiting_reply: bool,
    /// connect() was just issued and no upstream event has come since: the first write
    /// tries whether it completed (on loopback and near upstreams it usually has).
    connect_probe: bool,
    /// Which upstream address of the route is being tried.
    attempt: usize,
    connect_started_ms: u64,
    /// The upstream address connected to (or being tried).
    pub upstream_addr: Option<SocketAddr>,
    started_ms: u64,
    last_active_ms: u64,
    deadline_ms: u64,
    timer_gen: u32,
}

impl Session {
    /// A new session for an accepted connection, registered for readiness, with its header
    /// timer armed. The caller has put it at slab `key`.
    pub fn new(
        id: u64,
        key: usize,
        mut client: TcpStream,
        peer: SocketAddr,
        cfg: Rc<Config>,
        ctx: &mut Ctx<'_>,
    ) -> std::io::Result<Session> {
        net::accepted_nodelay(&client)?;
        ctx.registry.register(
            &mut client,
            token(key, Leg::Client),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let state = match cfg.proxy_protocol {
            ProxyPolicy::Off => State::HeaderParsed,
            _ => State::Opened,
        };
        let mut s = Session {
            id,
            traced: ctx
                .traces
                .iter()
                .any(|t| t.selects(id, b"", Some(peer.ip()))),
            key,
            state,
            client,
            upstream: None,
            // Optimistic: the caller drives the session at once, and a load balancer's
            // first bytes have usually arrived with the handshake.
            client_ready: Ready {
                readable: true,
                writable: true,
                hup: false,
            },
            upstream_ready: Ready::default(),
            peer,
            facts: Facts {
                src: Some(peer),
                ..Facts::default()
            },
            up: Flow::default(),
            down: Flow::default(),
            route: None,
            pre: None,
            awaiting_reply: false,
            connect_probe: false,
            attempt: 0,
            connect_started_ms: 0,
            upstream_addr: None,
            started_ms: ctx.now_ms,
            last_active_ms: ctx.now_ms,
            deadline_ms: 0,
            timer_gen: 0,
            cfg,
        };
        sdebug!(s, "sid={} accept peer={} state={}", s.id, peer, s.state);
        s.arm(ctx, ctx.now_ms + s.cfg.header_timeout_ms);
        Ok(s)
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes written to the upstream and to the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }

    /// Age in milliseconds.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.started_ms)
    }

    /// The one place the state changes.
    fn set_state(&mut self, next: State) {
        if next != self.state {
            sdebug!(self, "sid={} {} => {}", self.id, self.state, next);
            self.state = next;
        }
    }

    /// Arms the session's single timer for `deadline_ms`; older entries become stale.
    fn arm(&mut self, ctx: &mut Ctx<'_>, deadline_ms: u64) {
        // `now_ms` is truncated to the millisecond and taken when the loop woke: one more
        // millisecond keeps every timeout from firing early in real time.
        let deadline_ms = deadline_ms + 1;
        self.deadline_ms = deadline_ms;
        self.timer_gen = self.timer_gen.wrapping_add(1);
        ctx.wheel.insert(
            deadline_ms,
            Entry {
                key: self.key,
                gen: self.timer_gen,
            },
        );
    }

    /// Records readiness from an event on `leg`.
    pub fn on_event(&mut self, leg: Leg, event: &mio::event::Event) {
        let r = match leg {
            Leg::Client => &mut self.client_ready,
            Leg::Upstream => &mut self.upstream_ready,
        };
        let failed = event.is_error();
        r.readable |= event.is_readable() || event.is_read_closed() || failed;
        r.writable |= event.is_writable() || event.is_write_closed() || failed;
        r.hup |= event.is_read_closed() || failed;
        if leg == Leg::Upstream {
            self.connect_probe = false;
        }
    }

    /// Does every piece of work that readiness allows, within the budget.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Step {
        loop {
            let step = match self.state {
                State::Opened | State::HeaderParsed => self.read_handshake(ctx),
                State::Connecting => self.finish_connect(ctx),
                State::Connected | State::HalfClosed => return self.shuffle(ctx),
                State::Closed => return Step::Wait,
            };
            match step {
                // A state change may allow more work right away.
                Ok(true) => continue,
                Ok(false) => return Step::Wait,
                Err(step) => return step,
            }
        }
    }

    /// A timer entry fired with generation `gen`.
    pub fn on_timer(&mut self, gen: u32, ctx: &mut Ctx<'_>) -> Step {
        if gen != self.timer_gen {
            return Step::Wait; // stale: the session re-armed since
        }
        let now = ctx.now_ms;
        match self.state {
            State::Opened | State::HeaderParsed | State::Connecting if now < self.deadline_ms => {
                let d = self.deadline_ms;
                self.arm(ctx, d.saturating_sub(1)); // fired early (beyond the horizon): same deadline
                Step::Wait
            }
            State::Opened | State::HeaderParsed => Step::Close(CloseReason::HeaderTimeout),
            State::Connecting => {
                ctx.stats.connect_failures += 1;
                sdebug!(
                    self,
                    "sid={} connect to {} timed out",
                    self.id,
                    self.upstream_addr
                        .map_or_else(|| "-".into(), |a| a.to_string())
                );
                self.attempt += 1;
                match self.start_connect(ctx) {
                    Ok(_) => self.drive(ctx),
                    Err(_) => Step::Close(CloseReason::ConnectTimeout),
                }
            }
            State::Connected | State::HalfClosed => {
                let idle = self.idle_timeout_ms();
                if idle == 0 {
                    return Step::Wait;
                }
                let due = self.last_active_ms + idle;
                if now >= due {
                    Step::Close(CloseReason::IdleTimeout)
                } else {
                    self.arm(ctx, due);
                    Step::Wait
                }
            }
            State::Closed => Step::Wait,
        }
    }

    /// Opened / HeaderParsed: read what the client sent and parse as far as it goes.
    /// `Ok(true)`: the state moved on.
    fn read_handshake(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        if self.client_ready.readable && !self.up.eof {
            if self.up.buf.is_none() {
                self.up.buf = Some(ctx.pool.take().ok_or(Step::Close(CloseReason::NoBuffer))?);
            }
            let buf = self
                .up
                .buf
                .as_mut()
                .ok_or(Step::Close(CloseReason::NoBuffer))?;
            for _ in 0..READ_BUDGET {
                let room = buf.space().len();
                match net::read(&mut self.client, buf.space()) {
                    Io::Done(n) => {
                        buf.filled(n);
                        self.client_ready.after_read(n, room);
                        if !self.client_ready.readable {
                            break;
                        }
                    }
                    Io::WouldBlock => {
                        // A full buffer also lands here: the parsers below decide.
                        if !buf.space().is_empty() {
                            self.client_ready.readable = false;
                        }
                        break;
                    }
                    Io::Closed => {
                        // Kept: a FIN right behind a complete ClientHello is passed on later.
                        self.up.eof = true;
                        break;
                    }
                    Io::Error(_) => return Err(Step::Close(CloseReason::ClientReset)),
                }
            }
        }
        if self.up.buf.as_ref().is_some_and(Buffer::is_empty) {
            self.up.release(ctx.pool); // nothing came: no buffer held while waiting
        }
        let moved = match self.state {
            State::Opened => self.parse_proxy(ctx)?,
            _ => self.parse_hello(ctx)?,
        };
        if moved {
            return Ok(true);
        }
        let full = self.up.buf.as_ref().is_some_and(Buffer::is_full);
        if full {
            return Err(
                self.refuse_handshake(ctx, "first bytes fill the buffer without completing")
            );
        }
        if self.up.eof {
            return Err(Step::Close(CloseReason::ClientClosedEarly));
        }
        if self.client_ready.readable {
            return Err(Step::Yield);
        }
        Ok(false)
    }

    fn received(&self) -> &[u8] {
        self.up.buf.as_ref().map_or(&[], Buffer::data)
    }

    /// Opened: look for a PROXY header per policy. The header stays in the buffer (its TLVs
    /// may be passed on) until the route is chosen; `facts.header_len` marks its end.
    fn parse_proxy(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        let data = self.up.buf.as_ref().map_or(&[][..], Buffer::data);
        match proxy::detect(data) {
            Detected::NeedMore => return Ok(false),
            Detected::NoHeader => {
                if self.cfg.proxy_protocol == ProxyPolicy::Required {
                    ctx.stats.parse_error("proxy", "missing");
                    warn!(
                        "sid={} peer={} refused: no PROXY header (ENVOY_PROXY_PROTOCOL=required); first bytes:\n{}",
                        self.id,
                        self.peer,
                        HexDump::new(data, ERROR_DUMP_LIMIT)
                    );
                    return Err(Step::Close(CloseReason::MissingProxyHeader));
                }
                self.set_state(State::HeaderParsed);
                return Ok(true);
            }
            Detected::V1 | Detected::V2 => {}
        }
        if !self.cfg.is_trusted(self.peer.ip()) {
            ctx.stats.parse_error("proxy", "untrusted_source");
            warn!(
                "sid={} peer={} refused: PROXY header from a source not in ENVOY_TRUSTED_PROXIES",
                self.id, self.peer
            );
            return Err(Step::Close(CloseReason::UntrustedProxy));
        }
        match proxy::parse(data) {
            Parsed::NeedMore => Ok(false),
            Parsed::Invalid(e) => {
                ctx.stats.parse_error("proxy", e.as_str());
                warn!(
                    "sid={} peer={} invalid PROXY header: {}; first bytes:\n{}",
                    self.id,
                    self.peer,
                    e,
                    HexDump::new(data, ERROR_DUMP_LIMIT)
                );
                Err(Step::Close(CloseReason::InvalidProxy))
            }
            Parsed::Complete(h, n) => {
                if self.traced || log_enabled!(Level::Debug) {
                    sdebug!(
                        self,
                        "sid={} PROXY header, {} bytes:\n{}",
                        self.id,
                        n,
                        HexDump::new(data.get(..n).unwrap_or(data), DEBUG_DUMP_LIMIT)
                    );
                }
                self.facts.proxy = Some(match h.version {
                    proxy::Version::V1 => "v1",
                    proxy::Version::V2 => "v2",
                });
                if let Addresses::Inet { src, dst } = h.addrs {
                    self.facts.src = Some(src);
                    self.facts.dst = Some(dst);
                }
                if let Some(a) = h.tlvs.authority() {
                    if !crate::wire::name::is_host(a) {
                        ctx.stats.parse_error("proxy", "bad_authority");
                        warn!(
                            "sid={} peer={} refused: PROXY AUTHORITY {:?} is not a host name",
                            self.id,
                            self.peer,
                            Escaped(a).to_string()
                        );
                        return Err(Step::Close(CloseReason::InvalidAuthority));
                    }
                    self.facts.authority = Inline::from_bytes(a);
                }
                self.facts.header_len = n;
                self.facts.local = h.command == proxy::Command::Local;
                self.check_traced(ctx);
                self.set_state(State::HeaderParsed);
                Ok(true)
            }
        }
    }

    /// HeaderParsed: read the ClientHello (or a plain HTTP request head), then route.
    fn parse_hello(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        let all = self.up.buf.as_ref().map_or(&[][..], Buffer::data);
        let data = all.get(self.facts.header_len..).unwrap_or(&[]);
        match tls::parse_client_hello(data, ctx.scratch) {
            Parsed::NeedMore => return Ok(false),
            Parsed::Invalid(TlsError::NotTls) => return self.parse_plain(ctx),
            Parsed::Invalid(e) => {
                ctx.stats.parse_error("tls", e.as_str());
                warn!(
                    "sid={} client={} invalid ClientHello: {}; first bytes:\n{}",
                    self.id,
                    self.client_label(),
                    e,
                    HexDump::new(data, ERROR_DUMP_LIMIT)
                );
                return Err(Step::Close(CloseReason::InvalidTls));
            }
            Parsed::Complete(hello, n) => {
                self.facts.proto = Some(Proto::Tls);
                if let Some(sni) = hello.sni {
                    self.facts.sni = Inline::from_bytes(sni.as_bytes());
                }
                if let Some(alpn) = &hello.alpn {
                    self.facts.alpn = Inline::from_bytes(alpn.to_string().as_bytes());
                    if let Some(first) = alpn.iter().next() {
                        self.facts.first_alpn = Inline::from_bytes(first);
                    }
                }
                self.facts.ech = hello.ech;
                // Provisional until `decide` weighs AUTHORITY: lets a name trace see the hello.
                self.facts.name = self.facts.sni;
                let src = self.facts.src.map(|a| a.ip());
                if ctx
                    .traces
                    .iter()
                    .any(|t| t.selects(self.id, self.facts.name.as_bytes(), src))
                {
                    self.traced = true;
                }
                if self.traced || log_enabled!(Level::Debug) {
                    sdebug!(
                        self,
                        "sid={} ClientHello, {} bytes, {} record(s), sni={} alpn={} ech={}:\n{}",
                        self.id,
                        n,
                        hello.records,
                        self.facts.sni,
                        self.facts.alpn,
                        hello.ech,
                        HexDump::new(data.get(..n).unwrap_or(data), DEBUG_DUMP_LIMIT)
                    );
                }
            }
        }
        self.decide(ctx)?;
        Ok(true)
    }

    /// Not TLS: a plain HTTP/1.x request is routed on its Host header; anything else has no
    /// name and goes where the routes send `proto=other`.
    fn parse_plain(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        let all = self.up.buf.as_ref().map_or(&[][..], Buffer::data);
        let data = all.get(self.facts.header_len..).unwrap_or(&[]);
        if self.cfg.proxy_protocol != ProxyPolicy::Off {
            // A PROXY header where the ClientHello should be: a second header, or one smuggled
            // into the stream. Never forwarded.
            match proxy::detect(data) {
                Detected::NeedMore => return Ok(false),
                Detected::V1 | Detected::V2 => {
                    ctx.stats.parse_error("proxy", "header_in_stream");
                    warn!(
                        "sid={} client={} refused: a PROXY header inside the stream; first bytes:\n{}",
                        self.id,
                        self.client_label(),
                        HexDump::new(data, ERROR_DUMP_LIMIT)
                    );
                    return Err(Step::Close(CloseReason::InvalidProxy));
                }
                Detected::NoHeader => {}
            }
        }
        let looks_http = data.first().is_some_and(|&b| http::could_be_http(b));
        self.facts.proto = Some(Proto::Other);
        if looks_http {
            match http::parse_request_host(data) {
                Parsed::NeedMore => return Ok(false),
                Parsed::Complete(head, _) => {
                    self.facts.proto = Some(Proto::Http);
                    if let Some(host) = head.host {
                        self.facts.sni = Inline::from_bytes(host);
                    }
                }
                // The request line is not HTTP at all: other bytes, routed as such.
                Parsed::Invalid(
                    HttpError::BadMethod | HttpError::BadTarget | HttpError::BadVersion,
                ) => {}
                Parsed::Invalid(e) => {
                    ctx.stats.parse_error("http", e.as_str());
                    warn!(
                        "sid={} client={} invalid HTTP request head: {}; first bytes:\n{}",
                        self.id,
                        self.client_label(),
                        e,
                        HexDump::new(data, ERROR_DUMP_LIMIT)
                    );
                    return Err(Step::Close(CloseReason::InvalidHttp));
                }
            }
        }
        if self.facts.local && self.facts.proto == Some(Proto::Other) {
            ctx.stats.parse_error("proxy", "local_then_garbage");
            warn!(
                "sid={} peer={} refused: a LOCAL PROXY header followed by bytes that are neither TLS nor HTTP; first bytes:\n{}",
                self.id,
                self.peer,
                HexDump::new(data, ERROR_DUMP_LIMIT)
            );
            return Err(Step::Close(CloseReason::InvalidProxy));
        }
        self.decide(ctx)?;
        Ok(true)
    }

    /// Chooses the name and the route, refuses or starts the upstream leg.
    fn decide(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Step> {
        let (sni, authority) = (self.facts.sni, self.facts.authority);
        let name = match (sni.is_empty(), authority.is_empty()) {
            (false, false) if !sni.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => {
                ctx.stats.name_mismatches += 1;
                match self.cfg.name_mismatch {
                    NameMismatch::Reject => {
                        warn!(
                            "sid={} client={} refused: SNI {} differs from PROXY AUTHORITY {}",
                            self.id,
                            self.client_label(),
                            sni,
                            authority
                        );
                        return Err(self.refuse(CloseReason::NameMismatch, Alert::UnrecognizedName));
                    }
                    NameMismatch::PreferSni => sni,
                    NameMismatch::PreferAuthority => authority,
                }
            }
            (true, _) => authority,
            _ => sni,
        };
        self.facts.name = name;
        self.check_traced(ctx);
        if self.traced {
            if let Some(c) = ctx.capture.as_deref_mut() {
                c.save(self.id, "traced", self.received());
            }
        }
        if self.facts.ech && !self.cfg.allow_ech {
            info!(
                "sid={} client={} refused: ECH (ENVOY_ECH=refuse)",
                self.id,
                self.client_label()
            );
            return Err(self.refuse(CloseReason::EchRefused, Alert::None));
        }
        let cfg = Rc::clone(&self.cfg);
        let req = route::Request {
            name: (!name.is_empty()).then(|| name.as_bytes()),
            dst_port: self.facts.dst.map(|d| d.port()),
            client: self.facts.src.map(|s| s.ip()),
            alpn: self.facts.alpn.as_bytes(),
            proto: self.facts.proto,
        };
        let route = cfg.route(&req);
        self.route = cfg.routes.iter().position(|r| std::ptr::eq(r, route));
        if let Action::Deny(alert) = route.action {
            let reason = if route.matches_on_client() {
                CloseReason::DeniedClient
            } else {
                CloseReason::DeniedName
            };
            info!(
                "sid={} client={} name={} refused by {}",
                self.id,
                self.client_label(),
                name,
                route
            );
            return Err(self.refuse(reason, alert));
        }
        self.write_preamble(route, ctx)?;
        // The PROXY header is not replayed: the preamble (if any) speaks for it.
        if let Some(b) = self.up.buf.as_mut() {
            b.consume(self.facts.header_len);
        }
        self.facts.header_len = 0;
        self.start_connect(ctx).map_err(Step::Close)
    }

    /// Sends a TLS alert (for TLS sessions) and closes.
    fn refuse(&mut self, reason: CloseReason, alert: Alert) -> Step {
        if let (Some(Proto::Tls), Some(code)) = (self.facts.proto, alert.code()) {
            // Seven bytes into an empty socket buffer: cannot block; a failure changes nothing.
            let _ = net::write(&mut self.client, &preamble::alert_record(code));
        }
        Step::Close(reason)
    }

    /// Builds the route's PROXY v2 header or CONNECT request into `self.pre`.
    fn write_preamble(&mut self, route: &Route, ctx: &mut Ctx<'_>) -> Result<(), Step> {
        if route.mode == Mode::Direct {
            return Ok(());
        }
        let all = self.up.buf.as_ref().map_or(&[][..], Buffer::data);
        let header = all.get(..self.facts.header_len).unwrap_or(&[]);
        let local = self.client.local_addr().unwrap_or(self.peer);
        let id = self.id.to_string();
        let hello = preamble::Hello {
            src: self.facts.src.unwrap_or(self.peer),
            dst: self.facts.dst.unwrap_or(local),
            dst_from_header: self.facts.dst.is_some(),
            name: (!self.facts.name.is_empty()).then(|| self.facts.name.as_bytes()),
            alpn: (!self.facts.first_alpn.is_empty()).then(|| self.facts.first_alpn.as_bytes()),
            unique_id: id.as_bytes(),
            header,
        };
        let mut pre = ctx.pool.take().ok_or(Step::Close(CloseReason::NoBuffer))?;
        match preamble::preamble(route, &self.cfg, &hello, pre.space()) {
            Ok(n) => {
                pre.filled(n);
                if self.traced || log_enabled!(Level::Debug) {
                    sdebug!(
                        self,
                        "sid={} {} preamble, {} bytes:\n{}",
                        self.id,
                        route.mode.as_str(),
                        n,
                        HexDump::new(pre.data(), DEBUG_DUMP_LIMIT)
                    );
                }
                self.pre = Some(pre);
                Ok(())
            }
            Err(e) => {
                ctx.pool.give(pre);
                warn!(
                    "sid={} client={} refused: {} ({})",
                    self.id,
                    self.client_label(),
                    e,
                    route
                );
                Err(Step::Close(CloseReason::InvalidAuthority))
            }
        }
    }

    fn refuse_handshake(&mut self, ctx: &mut Ctx<'_>, why: &str) -> Step {
        let (parser, reason) = match self.state {
            State::Opened => ("proxy", CloseReason::InvalidProxy),
            _ => ("tls", CloseReason::InvalidTls),
        };
        ctx.stats.parse_error(parser, "too_long");
        warn!(
            "sid={} peer={} refused: {}; first bytes:\n{}",
            self.id,
            self.peer,
            why,
            HexDump::new(self.received(), ERROR_DUMP_LIMIT)
        );
        Step::Close(reason)
    }

    /// The route this session took.
    pub fn route(&self) -> &Route {
        self.route
            .and_then(|i| self.cfg.routes.get(i))
            .unwrap_or(&self.cfg.default_route)
    }

    fn connect_timeout_ms(&self) -> u64 {
        self.route()
            .connect_timeout_ms
            .unwrap_or(self.cfg.connect_timeout_ms)
    }

    fn idle_timeout_ms(&self) -> u64 {
        self.route()
            .idle_timeout_ms
            .unwrap_or(self.cfg.idle_timeout_ms)
    }

    /// Starts a connect to upstream address number `self.attempt` of the route, skipping
    /// addresses that fail at once. Errs when none is left.
    fn start_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CloseReason> {
        self.upstream = None;
        let cfg = Rc::clone(&self.cfg);
        let route = self
            .route
            .and_then(|i| cfg.routes.get(i))
            .unwrap_or(&cfg.default_route);
        while let Some(&addr) = route.addrs.get(self.attempt) {
            self.upstream_addr = Some(addr);
            let started = net::connect(addr).and_then(|mut s| {
                ctx.registry.register(
                    &mut s,
                    token(self.key, Leg::Upstream),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            });
            match started {
                Ok(s) => {
                    self.upstream = Some(s);
                    // Optimistic: the first write right away (see `finish_connect`).
                    self.upstream_ready = Ready {
                        writable: true,
                        ..Ready::default()
                    };
                    self.connect_probe = true;
                    self.set_state(State::Connecting);
                    self.connect_started_ms = ctx.now_ms;
                    let t = self.connect_timeout_ms();
                    self.arm(ctx, ctx.now_ms + t);
                    return Ok(());
                }
                Err(e) => {
                    ctx.stats.connect_failures += 1;
                    sdebug!(
                        self,
                        "sid={} connect to {} failed at once: {}",
                        self.id,
                        addr,
                        e
                    );
                    self.attempt += 1;
                }
            }
        }
        warn!(
            "sid={} client={} no upstream of {} accepted the connection",
            self.id,
            self.client_label(),
            route
        );
        Err(CloseReason::UpstreamRefused)
    }

    /// Connecting: on writability, learn whether the connect worked; in CONNECT mode, then
    /// send the request and wait for a 2xx reply.
    fn finish_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        if self.awaiting_reply {
            return self.await_reply(ctx);
        }
        if !self.upstream_ready.writable {
            return Ok(false);
        }
        let Some(up) = self.upstream.as_mut() else {
            return Err(Step::Close(CloseReason::UpstreamRefused));
        };
        // The first bytes say whether the connect completed: written, it did; EAGAIN (or
        // ENOTCONN) right after connect(), not yet; an error, it failed. That spares the
        // getsockopt + getpeername pair and, on near upstreams, a wakeup. With nothing to
        // write, or an unclear answer after a real event, the socket is asked.
        let probe = std::mem::take(&mut self.connect_probe);
        let (first, into_pre) = match (self.pre.as_mut(), self.up.buf.as_mut()) {
            (Some(p), _) => (Some(p), true),
            (None, b) => (b, false),
        };
        let Some(first) = first.filter(|b| !b.is_empty()) else {
            let verdict = net::connect_finished(up);
            return self.connect_verdict(verdict, ctx);
        };
        let not_yet = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
        let verdict = match net::write(up, first.data()) {
            Io::Done(n) => {
                first.consume(n);
                if !into_pre {
                    self.up.bytes += n as u64;
                    ctx.stats.bytes_up += n as u64;
                }
                Ok(true)
            }
            Io::WouldBlock if probe => Ok(false),
            Io::Error(e) if probe && not_yet(&e) => Ok(false),
            Io::Error(e) if !not_yet(&e) => Err(e),
            Io::Closed => Err(std::io::ErrorKind::BrokenPipe.into()),
            Io::WouldBlock | Io::Error(_) => net::connect_finished(up),
        };
        self.connect_verdict(verdict, ctx)
    }

    /// Connecting, once the socket answered: wait on, go on (CONNECT mode: to the reply),
    /// or try the next address.
    fn connect_verdict(
        &mut self,
        verdict: std::io::Result<bool>,
        ctx: &mut Ctx<'_>,
    ) -> Result<bool, Step> {
        match verdict {
            Ok(false) => {
                self.upstream_ready.writable = false;
                Ok(false)
            }
            Ok(true) => {
                ctx.stats
                    .connect_latency_ms(ctx.now_ms.saturating_sub(self.connect_started_ms));
                sdebug!(
                    self,
                    "sid={} upstream client={} name={} upstream={} mode={} connect_ms={}",
                    self.id,
                    self.client_label(),
                    self.facts.name,
                    self.upstream_label(),
                    self.route().mode.as_str(),
                    ctx.now_ms.saturating_sub(self.connect_started_ms)
                );
                if self.route().mode == Mode::Connect {
                    self.awaiting_reply = true;
                    return Ok(true);
                }
                self.enter_connected(ctx);
                Ok(true)
            }
            Err(e) => {
                ctx.stats.connect_failures += 1;
                sdebug!(
                    self,
                    "sid={} connect to {} failed: {}",
                    self.id,
                    self.upstream_label(),
                    e
                );
                self.attempt += 1;
                self.start_connect(ctx).map_err(Step::Close)?;
                Ok(true)
            }
        }
    }

    fn enter_connected(&mut self, ctx: &mut Ctx<'_>) {
        self.set_state(State::Connected);
        self.last_active_ms = ctx.now_ms;
        let idle = self.idle_timeout_ms();
        if idle > 0 {
            self.arm(ctx, ctx.now_ms + idle);
        } else {
            self.timer_gen = self.timer_gen.wrapping_add(1);
        }
    }

    /// CONNECT mode: flush the request, read the proxy's reply head. Bytes after the head
    /// belong to the tunnel and stay in the buffer for the client.
    fn await_reply(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        let (client, via) = (self.client_label(), self.upstream_label());
        let Some(up) = self.upstream.as_mut() else {
            return Err(Step::Close(CloseReason::UpstreamRefused));
        };
        if !flush_preamble(
            &mut self.pre,
            up,
            &mut self.upstream_ready.writable,
            ctx.pool,
        )
        .map_err(Step::Close)?
        {
            return Ok(false);
        }
        if !self.upstream_ready.readable {
            return Ok(false);
        }
        if self.down.buf.is_none() {
            self.down.buf = Some(ctx.pool.take().ok_or(Step::Close(CloseReason::NoBuffer))?);
        }
        let buf = self
            .down
            .buf
            .as_mut()
            .ok_or(Step::Close(CloseReason::NoBuffer))?;
        let mut eof = false;
        for _ in 0..READ_BUDGET {
            match net::read(up, buf.space()) {
                Io::Done(n) => buf.filled(n),
                Io::WouldBlock => {
                    if !buf.space().is_empty() {
                        self.upstream_ready.readable = false;
                    }
                    break;
                }
                Io::Closed => {
                    eof = true;
                    break;
                }
                Io::Error(_) => return Err(Step::Close(CloseReason::UpstreamReset)),
            }
        }
        let data = buf.data();
        match http::parse_connect_reply(data) {
            Parsed::Complete(reply, n) if (200..300).contains(&reply.status) => {
                sdebug!(self, "sid={} CONNECT {} via {}", self.id, reply.status, via);
                buf.consume(n);
                self.awaiting_reply = false;
                self.enter_connected(ctx);
                Ok(true)
            }
            Parsed::Complete(reply, n) => {
                *ctx.stats.connect_status.entry(reply.status).or_insert(0) += 1;
                warn!(
                    "sid={} client={} name={} CONNECT refused by {}: status {} {}; reply:\n{}",
                    self.id,
                    client,
                    self.facts.name,
                    via,
                    reply.status,
                    Escaped(reply.reason),
                    HexDump::new(data.get(..n).unwrap_or(data), ERROR_DUMP_LIMIT)
                );
                Err(Step::Close(CloseReason::ConnectRejected))
            }
            Parsed::NeedMore if !eof && !buf.is_full() => Ok(false),
            Parsed::NeedMore | Parsed::Invalid(_) => {
                let why = match http::parse_connect_reply(data) {
                    Parsed::Invalid(e) => e.to_string(),
                    _ if eof => "the proxy closed before its reply was complete".to_string(),
                    _ => "the reply head fills the buffer".to_string(),
                };
                ctx.stats.parse_error("connect_reply", "invalid");
                warn!(
                    "sid={} client={} invalid CONNECT reply from {}: {}; reply:\n{}",
                    self.id,
                    client,
                    via,
                    why,
                    HexDump::new(data, ERROR_DUMP_LIMIT)
                );
                Err(Step::Close(CloseReason::InvalidConnectReply))
            }
        }
    }

    /// Connected / HalfClosed: move bytes both ways.
    fn shuffle(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Some(upstream) = self.upstream.as_mut() else {
            return Step::Close(CloseReason::UpstreamReset);
        };
        let before = (self.up.bytes, self.down.bytes);
        let spliced_before = self.up.spliced + self.down.spliced;
        let flushed = match flush_preamble(
            &mut self.pre,
            upstream,
            &mut self.upstream_ready.writable,
            ctx.pool,
        ) {
            Ok(f) => f,
            Err(reason) => return Step::Close(reason),
        };
        // Until the preamble is out, nothing of the client's may overtake it.
        let mut no_write = false;
        let up_writable = if flushed {
            &mut self.upstream_ready.writable
        } else {
            &mut no_write
        };
        let a = pump(
            &mut self.client,
            &mut self.client_ready,
            upstream,
            up_writable,
            &mut self.up,
            (ctx.pool, ctx.pipes),
            (CloseReason::ClientReset, CloseReason::UpstreamReset),
        );
        if a.is_ok() {
            pass_fin(upstream, &mut self.up, self.down.done());
        }
        let b = pump(
            upstream,
            &mut self.upstream_ready,
            &mut self.client,
            &mut self.client_ready.writable,
            &mut self.down,
            (ctx.pool, ctx.pipes),
            (CloseReason::UpstreamReset, CloseReason::ClientReset),
        );
        if b.is_ok() {
            pass_fin(&mut self.client, &mut self.down, self.up.done());
        }
        ctx.stats.bytes_up += self.up.bytes - before.0;
        ctx.stats.bytes_down += self.down.bytes - before.1;
        ctx.stats.bytes_spliced += self.up.spliced + self.down.spliced - spliced_before;
        if (self.up.bytes, self.down.bytes) != before {
            self.last_active_ms = ctx.now_ms;
        }
        for r in [a, b] {
            if let Err(reason) = r {
                return Step::Close(reason);
            }
        }
        match (self.up.done(), self.down.done()) {
            (true, true) => return Step::Close(CloseReason::Done),
            (true, false) | (false, true) => self.set_state(State::HalfClosed),
            (false, false) => {}
        }
        if a == Ok(true) || b == Ok(true) {
            Step::Yield
        } else {
            Step::Wait
        }
    }

    /// True when `rule` selects this session.
    pub fn selected_by(&self, rule: &TraceRule) -> bool {
        rule.selects(
            self.id,
            self.facts.name.as_bytes(),
            self.facts.src.map(|a| a.ip()),
        )
    }

    fn check_traced(&mut self, ctx: &Ctx<'_>) {
        if !self.traced && ctx.traces.iter().any(|t| self.selected_by(t)) {
            self.traced = true;
            sdebug!(self, "sid={} traced from here on", self.id);
        }
    }

    /// Releases everything and logs the close line. The sockets close when dropped.
    pub fn close(mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        if reason.is_parse_failure() && matches!(self.state, State::Opened | State::HeaderParsed) {
            if let Some(c) = ctx.capture.as_deref_mut() {
                if !self.received().is_empty() {
                    c.save(self.id, reason.as_str(), self.received());
                }
            }
        }
        self.up.release(ctx.pool);
        self.down.release(ctx.pool);
        self.up.release_pipe(ctx.pipes);
        self.down.release_pipe(ctx.pipes);
        if let Some(b) = self.pre.take() {
            ctx.pool.give(b);
        }
        let from = self.state;
        self.set_state(State::Closed);
        ctx.stats.close(reason);
        ctx.stats
            .session_duration
            .observe(ctx.now_ms.saturating_sub(self.started_ms));
        info!(
            "sid={} close client={} sni={} name={} route={} upstream={} state={} duration_ms={} bytes_up={} bytes_down={} reason={}",
            self.id,
            self.client_label(),
            self.facts.sni,
            self.facts.name,
            self.route(),
            self.upstream_label(),
            from,
            ctx.now_ms.saturating_sub(self.started_ms),
            self.up.bytes,
            self.down.bytes,
            reason.as_str()
        );
    }

    pub(crate) fn client_label(&self) -> String {
        self.facts
            .src
            .map_or_else(|| self.peer.to_string(), |a| a.to_string())
    }

    pub(crate) fn upstream_label(&self) -> String {
        self.upstream_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    }
}

/// Writes what is left of the preamble. `Ok(true)` once nothing of it is left.
fn flush_preamble(
    pre: &mut Option<Buffer>,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    pool: &mut Pool,
) -> Result<bool, CloseReason> {
    let Some(buf) = pre.as_mut() else {
        return Ok(true);
    };
    while !buf.is_empty() && *dst_writable {
        match net::write(dst, buf.data()) {
            Io::Done(n) => buf.consume(n),
            Io::WouldBlock => *dst_writable = false,
            Io::Closed | Io::Error(_) => return Err(CloseReason::UpstreamReset),
        }
    }
    if buf.is_empty() {
        if let Some(b) = pre.take() {
            pool.give(b);
        }
        return Ok(true);
    }
    Ok(false)
}

/// Moves bytes from `src` to `dst` through `flow`: through its splice pipe when it has one
/// (or can get one, once the direction is bulk and its buffer is empty), else through its
/// buffer. Stops when both sides would block, the buffer or pipe is full and `dst` cannot
/// take more (backpressure), the source ended, or the read budget is spent; the caller
/// passes FIN on ([`pass_fin`]). `Ok(true)`: budget spent with the
/// source still readable. Errors carry the close reason for (src, dst) failures.
fn pump(
    src: &mut TcpStream,
    src_ready: &mut Ready,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    flow: &mut Flow,
    (pool, pipes): (&mut Pool, &mut PipePool),
    fails: (CloseReason, CloseReason),
) -> Result<bool, CloseReason> {
    if flow.pipe.is_none() && flow.bulk && flow.pending() == 0 && !flow.eof {
        flow.bulk = false;
        flow.pipe = pipes.take();
        if flow.pipe.is_some() {
            flow.release(pool);
        }
    }
    if flow.pipe.is_some() {
        let readable = &mut src_ready.readable;
        return pump_pipe(src, readable, dst, dst_writable, flow, pipes, fails);
    }
    let (src_fail, dst_fail) = fails;
    let mut reads = 0;
    let mut more = false;
    loop {
        if let Some(buf) = flow.buf.as_mut() {
            if !buf.is_empty() && *dst_writable {
                match net::write(dst, buf.data()) {
                    Io::Done(n) => {
                        // A short write filled the socket: the EAGAIN write is skipped.
                        *dst_writable = n == buf.len();
                        buf.consume(n);
                        flow.bytes += n as u64;
                        continue;
                    }
                    Io::WouldBlock => *dst_writable = false,
                    Io::Closed | Io::Error(_) => return Err(dst_fail),
                }
            }
        }
        if flow.eof || !src_ready.readable || flow.buf.as_ref().is_some_and(Buffer::is_full) {
            break;
        }
        if reads == READ_BUDGET {
            more = true;
            break;
        }
        if flow.buf.is_none() {
            flow.buf = Some(pool.take().ok_or(CloseReason::NoBuffer)?);
        }
        let Some(buf) = flow.buf.as_mut() else { break };
        reads += 1;
        let room = buf.space().len();
        match net::read(src, buf.space()) {
            Io::Done(n) => {
                flow.bulk |= n == buf.capacity();
                buf.filled(n);
                src_ready.after_read(n, room);
            }
            Io::WouldBlock => src_ready.readable = false,
            Io::Closed => flow.eof = true,
            Io::Error(_) => return Err(src_fail),
        }
    }
    if flow.pending() == 0 {
        flow.release(pool);
    }
    Ok(more)
}

/// `pump` for a direction holding a splice pipe.
fn pump_pipe(
    src: &mut TcpStream,
    src_readable: &mut bool,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    flow: &mut Flow,
    pipes: &mut PipePool,
    (src_fail, dst_fail): (CloseReason, CloseReason),
) -> Result<bool, CloseReason> {
    use std::os::fd::AsRawFd;
    let Some(pipe) = flow.pipe.as_mut() else {
        return Ok(false);
    };
    let mut reads = 0;
    let mut more = false;
    loop {
        if pipe.len > 0 && *dst_writable {
            match pipe.drain_to(dst.as_raw_fd()) {
                Io::Done(n) => {
                    flow.bytes += n as u64;
                    flow.spliced += n as u64;
                    continue;
                }
                Io::WouldBlock => *dst_writable = false,
                Io::Closed | Io::Error(_) => return Err(dst_fail),
            }
        }
        if flow.eof || !*src_readable || pipe.len >= PIPE_CAP {
            break;
        }
        if reads == READ_BUDGET {
            more = true;
            break;
        }
        reads += 1;
        match pipe.fill_from(src.as_raw_fd(), PIPE_CAP - pipe.len) {
            Io::Done(_) => {}
            // EAGAIN means "socket empty" or "pipe full" (its capacity counts pages, not
            // bytes): only an empty pipe proves the socket is drained; otherwise drain first.
            Io::WouldBlock if pipe.len == 0 => *src_readable = false,
            Io::WouldBlock if !*dst_writable => break,
            Io::WouldBlock => {}
            Io::Closed => flow.eof = true,
            Io::Error(_) => return Err(src_fail),
        }
    }
    if pipe.len == 0 && flow.eof {
        flow.release_pipe(pipes); // this direction is over: the descriptors go back
    }
    Ok(more)
}

/// Once the source ended and nothing is left in flight, FIN goes on to the destination.
/// When the other direction is over (`last`), the session closes at once and the close
/// sends the FIN: no shutdown call (both sockets were read to EOF, so it is a FIN, not RST).
fn pass_fin(dst: &mut TcpStream, flow: &mut Flow, last: bool) {
    if flow.eof && !flow.shut && flow.pending() == 0 {
        // Not an error if the peer is already gone: the other direction will tell.
        if !last {
            let _ = dst.shutdown(Shutdown::Write);
        }
        flow.shut = true;
    }
}
