//! One proxied connection, as a sequence of phases that each hold what they need:
//!
//! `Handshake` (reading the PROXY header, then the ClientHello) → `Connecting` (the upstream
//! socket, the preamble, in CONNECT mode the proxy's reply) → `Shuffling` (both flows) →
//! closed. A transition hands the old phase's buffers on to the next. [`State`] is the label
//! of where a session stands, derived from its phase, for logs, metrics and `show sessions`;
//! every change of it is logged (`transition sid=3 from=A to=B`) at debug. See LIFECYCLE.md beside this file.
//!
//! The steps live beside: `handshake` reads and parses, `core` learns, decides and builds
//! the preamble, `connect` connects, `worker::pipe` shuffles; `decide` holds the pure
//! decisions. This module only sequences them and owns the timer's meaning per phase.
//! Nothing here interprets `io::ErrorKind` (see `net::Io`).

pub mod connect;
pub mod core;
pub mod ctx;
pub mod decide;
pub mod facts;
pub mod handshake;
pub mod logs;
pub mod preamble;
pub mod refusing;

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use log::{log, warn, Level};
use mio::net::TcpStream;
use mio::Interest;

use crate::admin::trace::TraceRule;
use crate::config::{Config, ProxyPolicy};
use crate::first_bytes::{self, CutShort};
use crate::hexdump::{Address, DumpRows, ERROR_DUMP_LIMIT};
use crate::net;
use crate::wire::tls;
use crate::worker::pipe::{Reported, Shuffled, Shuffling};
use crate::worker::stats::{CloseReason, Histogram};
use crate::worker::token::{token, Leg};
use crate::worker::upstreams::Failure;
use connect::{Connecting, Dialed};
use facts::Facts;
use handshake::{Handshake, Handshaking};
use logs::{sdebug, CloseLine, TARGET};
use refusing::Refusing;

pub use self::core::Core;
pub use ctx::{Ctx, Next};

/// Where a session stands: the label of its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted; reading the PROXY header.
    Opened,
    /// The header is done (or not expected); reading the ClientHello.
    HeaderParsed,
    /// Connecting to the upstream (and in CONNECT mode, awaiting the proxy's reply).
    Connecting,
    /// Shuffling bytes both ways.
    Connected,
    /// One direction has finished (FIN passed on); the other still flows.
    HalfClosed,
    /// Gone.
    Closed,
}

impl State {
    /// The label, as logs and `show sessions` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Opened => "Opened",
            State::HeaderParsed => "HeaderParsed",
            State::Connecting => "Connecting",
            State::Connected => "Connected",
            State::HalfClosed => "HalfClosed",
            State::Closed => "Closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a session is doing, with the data it needs for that.
enum Phase {
    /// Reading and parsing the client's first bytes.
    Handshake(Handshake),
    /// Opening the upstream leg.
    Connecting(Connecting),
    /// Moving bytes both ways.
    Shuffling(Shuffling),
    /// Refused after the first bytes: the alert is out, the FIN follows; dropping what the
    /// client still sends until its FIN (bounded).
    Refusing(Refusing),
    /// Holding nothing: only while a transition moves the old phase out, never driven.
    Closed,
}

/// One client connection and, once opened, its upstream.
pub struct Session {
    core: Core,
    phase: Phase,
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
        let expect_header = cfg.proxy_protocol != ProxyPolicy::Off;
        let mut s = Session {
            core: Core::new(id, key, client, peer, cfg, ctx),
            phase: Phase::Handshake(Handshake::new(expect_header)),
        };
        sdebug!(
            s.core,
            "accept sid={} peer={} listener={} state={}",
            id,
            Address(Some(peer)),
            crate::logfmt::Value::str(s.core.cfg.listener_name()),
            s.state()
        );
        let t = s.core.cfg.header_timeout_ms;
        s.core.arm(ctx.wheel, ctx.now_ms + t);
        Ok(s)
    }

    /// The id every log line of this session carries.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Logged whatever the level.
    pub fn traced(&self) -> bool {
        self.core.traced
    }

    /// Starts or stops tracing this session.
    pub fn set_traced(&mut self, on: bool) {
        self.core.traced = on;
    }

    /// The configuration it started with, settled for its listener.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }

    /// What the first bytes said.
    pub fn facts(&self) -> &Facts {
        &self.core.facts
    }

    /// Where the session stands.
    #[inline]
    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Handshake(h) if h.reading_header() => State::Opened,
            // A refused session got no further than its first bytes.
            Phase::Handshake(_) | Phase::Refusing(_) => State::HeaderParsed,
            Phase::Connecting(_) => State::Connecting,
            Phase::Shuffling(s) if s.half_closed() => State::HalfClosed,
            Phase::Shuffling(_) => State::Connected,
            Phase::Closed => State::Closed,
        }
    }

    /// Bytes written to the upstream and to the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        match &self.phase {
            Phase::Connecting(c) => c.bytes(),
            Phase::Shuffling(s) => s.bytes(),
            Phase::Handshake(_) | Phase::Refusing(_) | Phase::Closed => (0, 0),
        }
    }

    /// Age in milliseconds.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.core.started_ms)
    }

    /// The client as log lines show it.
    pub fn client_label(&self) -> Address {
        self.core.client_label()
    }

    /// The slot of the route chosen in the worker's per-route counters, once one is.
    pub fn route_slot(&self) -> Option<usize> {
        self.core.route_slot
    }

    /// The name of the route chosen, `default` until one is (what `show sessions` says).
    pub fn route_name(&self) -> &str {
        &self.core.route().name
    }

    /// The upstream address as log lines show it.
    pub fn upstream_label(&self) -> Address {
        self.core.upstream_label()
    }

    /// True when `rule` selects this session.
    pub fn selected_by(&self, rule: &TraceRule) -> bool {
        self.core.selected_by(rule)
    }

    /// Logs the change of label since `from`, if any: the one place a transition is said.
    #[inline]
    fn transition(&self, from: State) {
        let to = self.state();
        if to != from {
            sdebug!(
                self.core,
                "transition sid={} listener={} from={} to={}",
                self.core.id,
                crate::logfmt::Value::str(self.core.cfg.listener_name()),
                from,
                to
            );
        }
    }

    /// Records readiness from an event on `leg`.
    #[inline]
    pub fn on_event(&mut self, leg: Leg, event: &mio::event::Event) {
        let reported = Reported {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        };
        match (leg, &mut self.phase) {
            (Leg::Client, _) => self.core.client_ready.record(reported),
            (Leg::Upstream, Phase::Connecting(c)) => c.on_event(reported),
            (Leg::Upstream, Phase::Shuffling(s)) => s.upstream_ready().record(reported),
            // No upstream socket in this phase: a late event of one already closed.
            (Leg::Upstream, Phase::Handshake(_) | Phase::Refusing(_) | Phase::Closed) => {}
        }
    }

    /// Does every piece of work that readiness allows, within the budget: read → parse →
    /// decide → connect → shuffle. The close is the loop's, on [`Next::Close`].
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Next {
        loop {
            match &mut self.phase {
                Phase::Handshake(h) => {
                    // read, parse
                    let hello = match h.advance(&mut self.core, (ctx.pool, ctx.stats), ctx.scratch)
                    {
                        Handshaking::Header(header) => {
                            self.core.learn_header(header.as_ref(), ctx.traces);
                            self.transition(State::Opened);
                            continue;
                        }
                        Handshaking::Hello(hello) => hello,
                        Handshaking::Wait => return Next::Wait,
                        Handshaking::Again => return Next::Again,
                        Handshaking::Close(reason) => return Next::Close(reason),
                    };
                    self.core.learn_hello(&hello, ctx.traces);
                    // decide
                    if let Err(reason) = self.core.decide(h.received(), ctx) {
                        if h.client_finished() {
                            return Next::Close(reason); // nothing more can come to drop
                        }
                        h.release(ctx.pool);
                        self.phase = Phase::Refusing(Refusing::new(reason, &mut self.core));
                        self.core.arm(ctx.wheel, ctx.now_ms + refusing::LINGER_MS);
                        continue;
                    }
                    let preamble = match self.core.preamble(h.header(), h.after_header(), ctx) {
                        Ok(p) => p,
                        Err(reason) => return Next::Close(reason),
                    };
                    h.skip_header();
                    // connect
                    let dialed = match connect::dial(&mut self.core, ctx) {
                        Ok(d) => d,
                        Err(reason) => {
                            if let Some(b) = preamble {
                                ctx.pool.give(b);
                            }
                            return Next::Close(reason);
                        }
                    };
                    let up = h.hand_on();
                    self.phase =
                        Phase::Connecting(Connecting::new(dialed, preamble, up, ctx.now_ms));
                    self.transition(State::HeaderParsed);
                    let t = self.core.connect_timeout_ms();
                    self.core.arm(ctx.wheel, ctx.now_ms + t);
                }
                Phase::Connecting(c) => match c.advance(&mut self.core, ctx) {
                    Dialed::Continue => {}
                    Dialed::Connected => self.enter_shuffling(ctx),
                    Dialed::Wait => return Next::Wait,
                    Dialed::Close(reason) => return Next::Close(reason),
                },
                Phase::Shuffling(s) => {
                    // shuffle
                    let was_half_closed = s.half_closed();
                    let shuffled = s.shuffle(
                        &mut self.core.client,
                        &mut self.core.client_ready,
                        (ctx.pool, ctx.pipes),
                        ctx.stats,
                        ctx.now_ms,
                    );
                    if s.half_closed() != was_half_closed {
                        self.transition(State::Connected);
                    }
                    return match shuffled {
                        Shuffled::Wait => Next::Wait,
                        Shuffled::Again => Next::Again,
                        Shuffled::Over(reason) => Next::Close(reason),
                    };
                }
                Phase::Refusing(r) => return r.drain(&mut self.core, ctx.scratch),
                Phase::Closed => return Next::Wait,
            }
        }
    }

    /// Connecting → Shuffling, with the idle timer in place of the connect timer.
    fn enter_shuffling(&mut self, ctx: &mut Ctx<'_>) {
        self.phase = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Connecting(c) => Phase::Shuffling(c.into_shuffling(ctx.pool, ctx.now_ms)),
            other => other,
        };
        self.transition(State::Connecting);
        let idle = self.core.idle_timeout_ms();
        if idle > 0 {
            self.core.arm(ctx.wheel, ctx.now_ms + idle);
        } else {
            self.core.disarm();
        }
    }

    /// A timer entry fired with generation `gen`: the header, connect or idle timeout,
    /// whichever the phase armed.
    pub fn on_timer(&mut self, gen: u32, ctx: &mut Ctx<'_>) -> Next {
        if gen != self.core.timer_gen() {
            return Next::Wait; // stale: the session re-armed since
        }
        let now = ctx.now_ms;
        let deadline = self.core.deadline_ms();
        match &mut self.phase {
            Phase::Handshake(_) | Phase::Connecting(_) | Phase::Refusing(_) if now < deadline => {
                // fired early (beyond the wheel's horizon): the same deadline again
                self.core.arm(ctx.wheel, deadline.saturating_sub(1));
                Next::Wait
            }
            Phase::Handshake(_) => Next::Close(CloseReason::HeaderTimeout),
            // The client had its time to read the alert and close.
            Phase::Refusing(r) => Next::Close(r.reason()),
            Phase::Connecting(c) => {
                if let Some(r) = ctx.stats.route(self.core.route_slot) {
                    r.connect_failures += 1;
                }
                sdebug!(
                    self.core,
                    "connect timed out sid={} listener={} upstream={}",
                    self.core.id,
                    crate::logfmt::Value::str(self.core.cfg.listener_name()),
                    self.core.upstream_label()
                );
                match c.redial(&mut self.core, Failure::Timeout, ctx) {
                    Ok(()) => self.drive(ctx),
                    Err(_) => Next::Close(CloseReason::ConnectTimeout),
                }
            }
            Phase::Shuffling(s) => {
                let idle = self.core.idle_timeout_ms();
                if idle == 0 {
                    return Next::Wait;
                }
                let due = s.last_active_ms() + idle;
                if now >= due {
                    Next::Close(CloseReason::IdleTimeout)
                } else {
                    self.core.arm(ctx.wheel, due);
                    Next::Wait
                }
            }
            Phase::Closed => Next::Wait,
        }
    }

    /// Releases everything and logs the close line. The sockets close when dropped.
    pub fn close(mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        let from = self.state();
        let (bytes_up, bytes_down) = self.bytes();
        let mut reason = reason;
        match &mut self.phase {
            Phase::Handshake(h) => {
                reason = handshake_close(h, &self.core, reason);
                if reason.is_parse_failure() && !h.received().is_empty() {
                    if let Some(c) = ctx.capture.as_deref_mut() {
                        c.save(self.core.id, reason.as_str(), h.received());
                    }
                }
                h.release(ctx.pool);
            }
            Phase::Connecting(c) => c.release(ctx.pool, ctx.pipes),
            Phase::Shuffling(s) => s.release(ctx.pool, ctx.pipes),
            Phase::Refusing(_) | Phase::Closed => {}
        }
        if from != State::Closed {
            sdebug!(
                self.core,
                "transition sid={} listener={} from={} to={}",
                self.core.id,
                crate::logfmt::Value::str(self.core.cfg.listener_name()),
                from,
                State::Closed
            );
        }
        self.core.pick.close(ctx.upstreams, bytes_up, bytes_down);
        if let Some(t) = self.core.ticket.take() {
            ctx.clients.release(t);
        }
        ctx.stats.close(reason);
        let duration_ms = ctx.now_ms.saturating_sub(self.core.started_ms);
        let bucket = Histogram::bucket(duration_ms);
        ctx.stats.session_duration.observe_in(bucket, duration_ms);
        if let Some(r) = ctx.stats.route(self.core.route_slot) {
            // its bytes counted while it ran come from the live sessions at each report
            r.close(reason, bucket, duration_ms, (bytes_up, bytes_down));
        }
        let core = &self.core;
        // A health check is the load balancer's business, every few seconds: not news.
        let level = if reason == CloseReason::HealthCheck && !core.traced {
            Level::Debug
        } else {
            Level::Info
        };
        // built inside the macro: nothing of it is made when the level is off
        log!(
            target: TARGET,
            level,
            "{}",
            CloseLine {
                sid: core.id,
                client: core.client(),
                listener: core.cfg.listener_name(),
                sni: core.facts.sni.as_bytes(),
                host: core.facts.host.as_bytes(),
                name: core.facts.name().as_bytes(),
                route: &core.route().name,
                upstream: core.upstream_addr(),
                state: from.as_str(),
                duration_ms,
                bytes_up,
                bytes_down,
                reason: reason.as_str(),
                unique_id: core
                    .sent_unique_id
                    .then(|| preamble::unique_id(ctx.unique_prefix, core.id)),
            }
        );
    }
}

/// What a close during the handshake comes to: a health check for a PROXY header closed or
/// reset before any payload; and a truncated or missing ClientHello is said at warn with its
/// bytes, as a malformed one is (a health check is not: it is the load balancer's own).
fn handshake_close(h: &Handshake, core: &Core, reason: CloseReason) -> CloseReason {
    let cut_short = matches!(
        reason,
        CloseReason::ClientClosedEarly | CloseReason::ClientReset
    );
    if cut_short
        && first_bytes::cut_short(h.whole_header_len(core), h.received().len())
            == CutShort::HealthCheck
    {
        return CloseReason::HealthCheck;
    }
    let silent_or_gone = matches!(
        reason,
        CloseReason::ClientClosedEarly | CloseReason::HeaderTimeout
    );
    if silent_or_gone && !h.reading_header() && !h.received().is_empty() {
        let rest = h.after_header();
        let what = match rest.first() {
            None => "no ClientHello after the PROXY header",
            Some(&b) if tls::could_be_tls(b) => "truncated ClientHello",
            Some(_) => "truncated first bytes",
        };
        warn!(
            target: TARGET,
            "{} sid={} client={} listener={} ended_by={} after_header={}{}",
            what,
            core.id,
            core.client_label(),
            crate::logfmt::Value::str(core.cfg.listener_name()),
            reason.as_str(),
            rest.len(),
            DumpRows::new(core.id, "first_bytes", h.received(), ERROR_DUMP_LIMIT)
        );
    }
    reason
}
