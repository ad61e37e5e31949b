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

use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use log::{debug, info, log_enabled, warn, Level};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::buffer::{Buffer, Pool};
use crate::config::{Config, ProxyPolicy};
use crate::hexdump::{Escaped, HexDump, ERROR_DUMP_LIMIT};
use crate::net::{self, Io};
use crate::stats::{CloseReason, Stats};
use crate::timer::{Entry, Wheel};
use crate::wire::proxy::{self, Addresses, Detected};
use crate::wire::tls::{self, TlsError};
use crate::wire::Parsed;

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
    /// Deadlines.
    pub wheel: &'a mut Wheel,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Where a ClientHello spanning several records is reassembled.
    pub scratch: &'a mut [u8],
    /// Milliseconds since the loop started.
    pub now_ms: u64,
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
        out.buf[..n].copy_from_slice(&s[..n]);
        out.len = n;
        out
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
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
    /// The ClientHello's server name.
    pub sni: Inline<253>,
    /// The ClientHello's ALPN list, comma-separated (truncated at 64 bytes).
    pub alpn: Inline<64>,
    /// The ClientHello carried encrypted_client_hello.
    pub ech: bool,
    /// The first bytes were not TLS.
    pub not_tls: bool,
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
}

impl Flow {
    fn done(&self) -> bool {
        self.eof && self.shut
    }

    fn pending(&self) -> usize {
        self.buf.as_ref().map_or(0, Buffer::len)
    }

    fn release(&mut self, pool: &mut Pool) {
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }
}

/// Readiness remembered between edge-triggered events.
#[derive(Default, Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
}

/// One client connection and, once opened, its upstream.
pub struct Session {
    /// The id that every log line of this session carries.
    pub id: u64,
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
    /// Which upstream address is being tried.
    attempt: usize,
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
        client.set_nodelay(true)?;
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
            key,
            state,
            client,
            upstream: None,
            client_ready: Ready::default(),
            upstream_ready: Ready::default(),
            peer,
            facts: Facts {
                src: Some(peer),
                ..Facts::default()
            },
            up: Flow::default(),
            down: Flow::default(),
            attempt: 0,
            upstream_addr: None,
            started_ms: ctx.now_ms,
            last_active_ms: ctx.now_ms,
            deadline_ms: 0,
            timer_gen: 0,
            cfg,
        };
        debug!("sid={} accept peer={} state={}", s.id, peer, s.state);
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
            debug!("sid={} {} => {}", self.id, self.state, next);
            self.state = next;
        }
    }

    /// Arms the session's single timer for `deadline_ms`; older entries become stale.
    fn arm(&mut self, ctx: &mut Ctx<'_>, deadline_ms: u64) {
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
                self.arm(ctx, d); // fired early (beyond the wheel's horizon)
                Step::Wait
            }
            State::Opened | State::HeaderParsed => Step::Close(CloseReason::HeaderTimeout),
            State::Connecting => {
                ctx.stats.connect_failures += 1;
                debug!(
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
                let idle = self.cfg.idle_timeout_ms;
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
                match net::read(&mut self.client, buf.space()) {
                    Io::Done(n) => buf.filled(n),
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

    /// Opened: look for a PROXY header per policy.
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
                if log_enabled!(Level::Debug) {
                    debug!(
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
                if let Some(b) = self.up.buf.as_mut() {
                    b.consume(n);
                }
                self.set_state(State::HeaderParsed);
                Ok(true)
            }
        }
    }

    /// HeaderParsed: read the ClientHello, then connect.
    fn parse_hello(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        let data = self.up.buf.as_ref().map_or(&[][..], Buffer::data);
        match tls::parse_client_hello(data, ctx.scratch) {
            Parsed::NeedMore => return Ok(false),
            Parsed::Invalid(TlsError::NotTls) => {
                // Not TLS: the bytes pass as they are (routing on them comes with routes).
                self.facts.not_tls = true;
            }
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
                if let Some(sni) = hello.sni {
                    self.facts.sni = Inline::from_bytes(sni.as_bytes());
                }
                if let Some(alpn) = &hello.alpn {
                    self.facts.alpn = Inline::from_bytes(alpn.to_string().as_bytes());
                }
                self.facts.ech = hello.ech;
                if log_enabled!(Level::Debug) {
                    debug!(
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
        self.start_connect(ctx).map_err(Step::Close)?;
        Ok(true)
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

    /// Starts a connect to upstream address number `self.attempt`, skipping addresses
    /// that fail at once. Errs when none is left.
    fn start_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CloseReason> {
        self.upstream = None;
        while let Some(&addr) = self.cfg.upstream.addrs.get(self.attempt) {
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
                    self.upstream_ready = Ready::default();
                    self.set_state(State::Connecting);
                    self.arm(ctx, ctx.now_ms + self.cfg.connect_timeout_ms);
                    return Ok(());
                }
                Err(e) => {
                    ctx.stats.connect_failures += 1;
                    debug!("sid={} connect to {} failed at once: {}", self.id, addr, e);
                    self.attempt += 1;
                }
            }
        }
        warn!(
            "sid={} client={} no upstream of {} accepted the connection",
            self.id,
            self.client_label(),
            self.cfg.upstream.name
        );
        Err(CloseReason::UpstreamRefused)
    }

    /// Connecting: on writability, learn whether the connect worked.
    fn finish_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Step> {
        if !self.upstream_ready.writable {
            return Ok(false);
        }
        let Some(up) = self.upstream.as_ref() else {
            return Err(Step::Close(CloseReason::UpstreamRefused));
        };
        match net::connect_finished(up) {
            Ok(false) => {
                self.upstream_ready.writable = false;
                Ok(false)
            }
            Ok(true) => {
                self.set_state(State::Connected);
                self.last_active_ms = ctx.now_ms;
                if self.cfg.idle_timeout_ms > 0 {
                    self.arm(ctx, ctx.now_ms + self.cfg.idle_timeout_ms);
                } else {
                    self.timer_gen = self.timer_gen.wrapping_add(1);
                }
                debug!(
                    "sid={} upstream client={} sni={} upstream={} connect_ms={}",
                    self.id,
                    self.client_label(),
                    self.facts.sni,
                    self.upstream_label(),
                    ctx.now_ms.saturating_sub(self.started_ms)
                );
                Ok(true)
            }
            Err(e) => {
                ctx.stats.connect_failures += 1;
                debug!(
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

    /// Connected / HalfClosed: move bytes both ways.
    fn shuffle(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Some(upstream) = self.upstream.as_mut() else {
            return Step::Close(CloseReason::UpstreamReset);
        };
        let before = (self.up.bytes, self.down.bytes);
        let a = pump(
            &mut self.client,
            &mut self.client_ready.readable,
            upstream,
            &mut self.upstream_ready.writable,
            &mut self.up,
            ctx.pool,
            (CloseReason::ClientReset, CloseReason::UpstreamReset),
        );
        let b = pump(
            upstream,
            &mut self.upstream_ready.readable,
            &mut self.client,
            &mut self.client_ready.writable,
            &mut self.down,
            ctx.pool,
            (CloseReason::UpstreamReset, CloseReason::ClientReset),
        );
        ctx.stats.bytes_up += self.up.bytes - before.0;
        ctx.stats.bytes_down += self.down.bytes - before.1;
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

    /// Releases everything and logs the close line. The sockets close when dropped.
    pub fn close(mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        self.up.release(ctx.pool);
        self.down.release(ctx.pool);
        let from = self.state;
        self.set_state(State::Closed);
        ctx.stats.close(reason);
        info!(
            "sid={} close client={} sni={} upstream={} state={} duration_ms={} bytes_up={} bytes_down={} reason={}",
            self.id,
            self.client_label(),
            self.facts.sni,
            self.upstream_label(),
            from,
            ctx.now_ms.saturating_sub(self.started_ms),
            self.up.bytes,
            self.down.bytes,
            reason.as_str()
        );
    }

    fn client_label(&self) -> String {
        self.facts
            .src
            .map_or_else(|| self.peer.to_string(), |a| a.to_string())
    }

    fn upstream_label(&self) -> String {
        self.upstream_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    }
}

/// Moves bytes from `src` to `dst` through `flow` until both would block, the buffer is full
/// and `dst` cannot take more (backpressure), the source ended, or the read budget is spent.
/// Passes FIN on once the source ended and everything was written. `Ok(true)`: budget spent
/// with the source still readable. Errors carry the close reason for (src, dst) failures.
fn pump(
    src: &mut TcpStream,
    src_readable: &mut bool,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    flow: &mut Flow,
    pool: &mut Pool,
    (src_fail, dst_fail): (CloseReason, CloseReason),
) -> Result<bool, CloseReason> {
    let mut reads = 0;
    let mut more = false;
    loop {
        if let Some(buf) = flow.buf.as_mut() {
            if !buf.is_empty() && *dst_writable {
                match net::write(dst, buf.data()) {
                    Io::Done(n) => {
                        buf.consume(n);
                        flow.bytes += n as u64;
                        continue;
                    }
                    Io::WouldBlock => *dst_writable = false,
                    Io::Closed | Io::Error(_) => return Err(dst_fail),
                }
            }
        }
        if flow.eof || !*src_readable || flow.buf.as_ref().is_some_and(Buffer::is_full) {
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
        match net::read(src, buf.space()) {
            Io::Done(n) => buf.filled(n),
            Io::WouldBlock => *src_readable = false,
            Io::Closed => flow.eof = true,
            Io::Error(_) => return Err(src_fail),
        }
    }
    if flow.pending() == 0 {
        flow.release(pool);
        if flow.eof && !flow.shut {
            // Not an error if the peer is already gone: the other direction will tell.
            let _ = dst.shutdown(Shutdown::Write);
            flow.shut = true;
        }
    }
    Ok(more)
}
