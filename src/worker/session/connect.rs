//! The connecting phase: a non-blocking connect to the route's upstream addresses in order,
//! the first write that finds out whether it completed, and in CONNECT mode the request and
//! the forward proxy's reply. Hands the shuffle the upstream socket, what is left of the
//! preamble, the client's buffered bytes and, in CONNECT mode, the bytes that came after
//! the reply head.
//!
//! Never reads from the client, never routes; a refused or silent upstream moves on to the
//! next address of the same member, then to the next member of the route's pool that its
//! balancing chooses (`worker::upstreams::pick`).

use std::io;

use log::warn;
use mio::net::TcpStream;
use mio::Interest;

use crate::config::route::Mode;
use crate::hexdump::{Address, DumpRows, ERROR_DUMP_LIMIT};
use crate::logfmt::{OrDash, Shown, Value};
use crate::net::{self, Io};
use crate::wire::http;
use crate::wire::Parsed;
use crate::worker::buffer::{Buffer, Pool};
use crate::worker::pipe::{Flow, Ready, Reported, Shuffling, READ_BUDGET};
use crate::worker::session::core::Core;
use crate::worker::session::ctx::Ctx;
use crate::worker::session::logs::{sdebug, TARGET};
use crate::worker::splice::PipePool;
use crate::worker::stats::CloseReason;
use crate::worker::token::{token, Leg};
use crate::worker::upstreams::Failure;

/// Where the connect stands.
enum Stage {
    /// connect() was issued. `probe`: no upstream event has come since, so the first write
    /// tries whether it completed (on loopback and near upstreams it usually has).
    Dialing { probe: bool },
    /// CONNECT mode, connected: the request goes out, then the proxy's reply comes in.
    AwaitingReply(Reply),
}

/// A forward proxy's reply, as it arrives.
#[derive(Default)]
struct Reply {
    /// `None` until the first read.
    buf: Option<Buffer>,
}

/// The connecting phase's data.
pub struct Connecting {
    upstream: TcpStream,
    ready: Ready,
    /// When connect() was issued (the latency metric).
    started_ms: u64,
    /// The PROXY v2 header or CONNECT request; `None` in direct mode.
    preamble: Option<Buffer>,
    /// Bytes of the preamble written on this attempt. The CONNECT request stays whole until
    /// the reply, so that the next address can be sent all of it.
    sent: usize,
    /// The client's bytes (and FIN) read so far, replayed after the preamble.
    up: Flow,
    stage: Stage,
}

/// What a step of the connecting phase came to.
pub enum Dialed {
    /// Wait for the upstream's readiness (or the connect timer).
    Wait,
    /// Something moved on (connected in CONNECT mode, or a next address is being tried):
    /// step again now.
    Continue,
    /// The upstream is ready for the shuffle.
    Connected,
    /// Over.
    Close(CloseReason),
}

/// Starts a connect to the address the session's pool cursor is on, else to the next
/// member its balancing chooses (`upstreams::pick`), skipping addresses that fail at once.
/// Errs when no member is left.
pub fn dial(core: &mut Core, ctx: &mut Ctx<'_>) -> Result<TcpStream, CloseReason> {
    let client = core.client().ip();
    loop {
        let (pool, pick) = core.pool_and_pick();
        let addr = pick
            .at()
            .and_then(|(m, a)| pool.members.get(m)?.addrs.get(a).copied());
        let Some(addr) = addr else {
            if pick.advance(pool, ctx.upstreams, client, ctx.now_ms) {
                continue;
            }
            break;
        };
        core.upstream_addr = Some(addr);
        let started = net::connect(addr).and_then(|mut s| {
            ctx.registry.register(
                &mut s,
                token(core.key, Leg::Upstream),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match started {
            Ok(s) => return Ok(s),
            Err(e) => {
                ctx.stats.connect_failures += 1;
                core.pick
                    .failed(ctx.upstreams, Failure::Refused, ctx.now_ms);
                if let Some(r) = ctx.stats.route(core.route_slot) {
                    r.connect_failures += 1;
                }
                sdebug!(
                    core,
                    "connect failed at once sid={} listener={} upstream={} error={}",
                    core.id,
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    Address(Some(addr)),
                    Shown(&e)
                );
                core.pick.next_addr();
            }
        }
    }
    warn!(
        target: TARGET,
        "no upstream accepted the connection sid={} client={} listener={} route={}",
        core.id,
        core.client_label(),
        crate::logfmt::Value::str(core.cfg.listener_name()),
        core.route().name
    );
    Err(CloseReason::UpstreamRefused)
}

impl Connecting {
    /// The phase for a connect [`dial`] started at `now_ms`.
    pub fn new(upstream: TcpStream, preamble: Option<Buffer>, up: Flow, now_ms: u64) -> Connecting {
        Connecting {
            upstream,
            // Optimistic: the first write right away (see `Stage::Dialing`).
            ready: Ready {
                writable: true,
                ..Ready::default()
            },
            started_ms: now_ms,
            preamble,
            sent: 0,
            up,
            stage: Stage::Dialing { probe: true },
        }
    }

    /// Records an event on the upstream socket.
    #[inline]
    pub fn on_event(&mut self, reported: Reported) {
        self.ready.record(reported);
        if let Stage::Dialing { probe } = &mut self.stage {
            *probe = false;
        }
    }

    /// Bytes written to the upstream and to the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.bytes(), 0)
    }

    /// Gives every buffer back.
    pub fn release(&mut self, pool: &mut Pool, pipes: &mut PipePool) {
        if let Some(b) = self.preamble.take() {
            pool.give(b);
        }
        self.up.release(pool, pipes);
        if let Stage::AwaitingReply(reply) = &mut self.stage {
            reply.release(pool);
        }
    }

    /// Counts the failure (`why`) against the upstream tried and tries the next address of
    /// the pool (the member's next, else the next member): `Err` when none is left. The
    /// socket tried so far closes.
    pub fn redial(
        &mut self,
        core: &mut Core,
        why: Failure,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CloseReason> {
        ctx.stats.connect_failures += 1;
        core.pick.failed(ctx.upstreams, why, ctx.now_ms);
        core.pick.next_addr();
        let dialed = dial(core, ctx)?;
        if let Stage::AwaitingReply(reply) = &mut self.stage {
            reply.release(ctx.pool);
        }
        let (preamble, up) = (self.preamble.take(), std::mem::take(&mut self.up));
        *self = Connecting::new(dialed, preamble, up, ctx.now_ms);
        let t = core.connect_timeout_ms();
        core.arm(ctx.wheel, ctx.now_ms + t);
        Ok(())
    }

    /// On writability, learns whether the connect worked; in CONNECT mode, then sends the
    /// request and reads the reply.
    pub fn advance(&mut self, core: &mut Core, ctx: &mut Ctx<'_>) -> Dialed {
        let probe = match &mut self.stage {
            Stage::AwaitingReply(reply) => {
                // The reply is read only once the whole request is out.
                match send_request(
                    &mut self.upstream,
                    &mut self.ready.writable,
                    self.preamble.as_ref(),
                    &mut self.sent,
                ) {
                    Ok(true) => {}
                    Ok(false) => return Dialed::Wait,
                    Err(reason) => return Dialed::Close(reason),
                }
                if !self.ready.readable {
                    return Dialed::Wait;
                }
                return reply.receive(&mut self.upstream, &mut self.ready, core, ctx);
            }
            Stage::Dialing { .. } if !self.ready.writable => return Dialed::Wait,
            Stage::Dialing { probe } => std::mem::take(probe),
        };
        let verdict = self.first_write(probe, ctx);
        self.verdict(verdict, core, ctx)
    }

    /// The first bytes say whether the connect completed: written, it did; EAGAIN (or
    /// ENOTCONN) right after connect(), not yet; an error, it failed. That spares the
    /// getsockopt + getpeername pair and, on near upstreams, a wakeup. With nothing to
    /// write, or an unclear answer after a real event, the socket is asked.
    fn first_write(&mut self, probe: bool, ctx: &mut Ctx<'_>) -> io::Result<bool> {
        let up = &mut self.upstream;
        let written = match self.preamble.as_ref() {
            Some(p) => (!p.is_empty()).then(|| net::write(up, p.data())),
            None => self.up.waiting().map(|b| net::write(up, b.data())),
        };
        let Some(written) = written else {
            return net::connect_finished(up);
        };
        let not_yet = |e: &io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
        match written {
            Io::Done(n) => {
                if self.preamble.is_some() {
                    self.sent = n;
                } else {
                    self.up.wrote(n);
                    ctx.stats.bytes_up += n as u64;
                }
                Ok(true)
            }
            Io::WouldBlock if probe => Ok(false),
            Io::Error(e) if probe && not_yet(&e) => Ok(false),
            Io::Error(e) if !not_yet(&e) => Err(e),
            Io::Closed => Err(io::ErrorKind::BrokenPipe.into()),
            Io::WouldBlock | Io::Error(_) => net::connect_finished(up),
        }
    }

    /// Once the socket answered: wait on, go on (CONNECT mode: to the reply), or try the
    /// next address.
    fn verdict(&mut self, verdict: io::Result<bool>, core: &mut Core, ctx: &mut Ctx<'_>) -> Dialed {
        match verdict {
            Ok(false) => {
                self.ready.writable = false;
                Dialed::Wait
            }
            Ok(true) => {
                let took = ctx.now_ms.saturating_sub(self.started_ms);
                core.pick.connected(ctx.upstreams, took);
                if let Some(r) = ctx.stats.route(core.route_slot) {
                    r.connect.observe(took);
                }
                sdebug!(
                    core,
                    "upstream connected sid={} client={} listener={} name={} route={} upstream={} mode={} connect_ms={}",
                    core.id,
                    core.client_label(),
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    OrDash(core.facts.name().as_bytes()),
                    core.route().name,
                    core.upstream_label(),
                    core.route().mode.as_str(),
                    took
                );
                if core.route().mode == Mode::Connect {
                    self.stage = Stage::AwaitingReply(Reply::default());
                    return Dialed::Continue;
                }
                Dialed::Connected
            }
            Err(e) => {
                if let Some(r) = ctx.stats.route(core.route_slot) {
                    r.connect_failures += 1;
                }
                sdebug!(
                    core,
                    "connect failed sid={} listener={} upstream={} error={}",
                    core.id,
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    core.upstream_label(),
                    Shown(&e)
                );
                match self.redial(core, Failure::Refused, ctx) {
                    Ok(()) => Dialed::Continue,
                    Err(reason) => Dialed::Close(reason),
                }
            }
        }
    }

    /// The shuffle, with everything this phase holds handed on.
    pub fn into_shuffling(self, pool: &mut Pool, now_ms: u64) -> Shuffling {
        let Connecting {
            upstream,
            ready,
            mut preamble,
            sent,
            up,
            stage,
            ..
        } = self;
        let down = match stage {
            Stage::AwaitingReply(reply) => {
                // The request is out whole (the reply is read only then): its buffer goes.
                if let Some(b) = preamble.take() {
                    pool.give(b);
                }
                // What followed the reply head belongs to the tunnel, for the client.
                Flow::carrying(reply.buf, false)
            }
            Stage::Dialing { .. } => {
                if let Some(b) = preamble.as_mut() {
                    b.consume(sent);
                }
                Flow::default()
            }
        };
        Shuffling::new(upstream, ready, preamble, (up, down), now_ms)
    }
}

/// Writes what is left of the CONNECT request from `sent` on. `Ok(true)` once it is all out.
fn send_request(
    dst: &mut TcpStream,
    writable: &mut bool,
    request: Option<&Buffer>,
    sent: &mut usize,
) -> Result<bool, CloseReason> {
    let data = request.map_or(&[][..], Buffer::data);
    while *sent < data.len() && *writable {
        match net::write(dst, data.get(*sent..).unwrap_or(&[])) {
            Io::Done(n) => *sent += n,
            Io::WouldBlock => *writable = false,
            Io::Closed | Io::Error(_) => return Err(CloseReason::UpstreamReset),
        }
    }
    Ok(*sent >= data.len())
}

impl Reply {
    fn release(&mut self, pool: &mut Pool) {
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }

    /// Reads the proxy's reply head. Bytes after the head belong to the tunnel and stay in
    /// the buffer for the client.
    fn receive(
        &mut self,
        upstream: &mut TcpStream,
        ready: &mut Ready,
        core: &Core,
        ctx: &mut Ctx<'_>,
    ) -> Dialed {
        let buf = match self.buf.take().or_else(|| ctx.pool.take()) {
            Some(b) => self.buf.insert(b),
            None => return Dialed::Close(CloseReason::NoBuffer),
        };
        let mut eof = false;
        for _ in 0..READ_BUDGET {
            match net::read(upstream, buf.space()) {
                Io::Done(n) => buf.filled(n),
                Io::WouldBlock => {
                    if !buf.space().is_empty() {
                        ready.readable = false;
                    }
                    break;
                }
                Io::Closed => {
                    eof = true;
                    break;
                }
                Io::Error(_) => return Dialed::Close(CloseReason::UpstreamReset),
            }
        }
        let data = buf.data();
        match http::parse_connect_reply(data) {
            Parsed::Complete(reply, n) if (200..300).contains(&reply.status) => {
                sdebug!(
                    core,
                    "CONNECT accepted sid={} listener={} upstream={} status={}",
                    core.id,
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    core.upstream_label(),
                    reply.status
                );
                buf.consume(n);
                Dialed::Connected
            }
            Parsed::Complete(reply, n) => {
                *ctx.stats.connect_status.entry(reply.status).or_insert(0) += 1;
                warn!(
                    target: TARGET,
                    "CONNECT refused sid={} client={} listener={} name={} upstream={} status={} status_text={}{}",
                    core.id,
                    core.client_label(),
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    OrDash(core.facts.name().as_bytes()),
                    core.upstream_label(),
                    reply.status,
                    Value(reply.reason),
                    DumpRows::new(
                        core.id,
                        "connect_reply",
                        data.get(..n).unwrap_or(data),
                        ERROR_DUMP_LIMIT
                    )
                );
                Dialed::Close(CloseReason::ConnectRejected)
            }
            Parsed::NeedMore if !eof && !buf.is_full() => Dialed::Wait,
            Parsed::NeedMore | Parsed::Invalid(_) => {
                let why = match http::parse_connect_reply(data) {
                    Parsed::Invalid(e) => e.to_string(),
                    _ if eof => "the proxy closed before its reply was complete".to_string(),
                    _ => "the reply head fills the buffer".to_string(),
                };
                ctx.stats.parse_error("connect_reply", "invalid");
                warn!(
                    target: TARGET,
                    "invalid CONNECT reply sid={} client={} listener={} upstream={} error={}{}",
                    core.id,
                    core.client_label(),
                    crate::logfmt::Value::str(core.cfg.listener_name()),
                    core.upstream_label(),
                    Value::str(&why),
                    DumpRows::new(core.id, "connect_reply", data, ERROR_DUMP_LIMIT)
                );
                Dialed::Close(CloseReason::InvalidConnectReply)
            }
        }
    }
}
