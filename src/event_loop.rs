//! One worker's event loop: a `mio::Poll`, the listener, a `Slab<Session>`, the buffer
//! pool and the timer wheel.
//!
//! Tokens: a session's legs are `key << 1 | leg`; the listener has a reserved token at the
//! top of the range. Per event, the cost is a slab lookup and the session's own work; timers
//! cost per expiry, not per session. Work per wakeup is bounded: at most ENVOY_ACCEPTORS
//! accepts per listener event, a read budget per session; whatever is left over is queued
//! and served on the next turn before sleeping again. Nothing here blocks but `poll` itself.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::buffer::Pool;
use crate::config::Config;
use crate::net;
use crate::session::{self, Ctx, Session, Step};
use crate::stats::{CloseReason, Stats};
use crate::timer::{Entry, Wheel};
use crate::wire::tls::MAX_HELLO_LEN;

/// The listener's token; session tokens stay far below it.
pub const LISTENER: Token = Token(usize::MAX);

/// Timer resolution. Timeouts fire up to one tick late, never early.
const TICK_MS: u64 = 50;
/// Slots of the wheel: 8192 x 50 ms covers 409 s, beyond the default idle timeout.
const WHEEL_SLOTS: usize = 8192;
/// How long accept() rests after running out of descriptors.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// Readiness events taken per poll.
const EVENTS: usize = 1024;

/// One worker: everything its loop owns.
pub struct Worker {
    poll: Poll,
    listener: TcpListener,
    sessions: Slab<Session>,
    pool: Pool,
    wheel: Wheel,
    stats: Stats,
    cfg: Rc<Config>,
    scratch: Box<[u8]>,
    clock: Instant,
    now_ms: u64,
    next_id: u64,
    /// Sessions that yielded with work left: (key, id), so a reused key is not confused.
    ready: Vec<(usize, u64)>,
    /// The listener may hold more connections than the last turn accepted.
    accept_pending: bool,
    /// No accept before this time (descriptor exhaustion back-off).
    accept_paused_until: u64,
    /// When exhaustion was last logged, to log it at most once a second.
    exhausted_logged_ms: Option<u64>,
}

impl Worker {
    /// Binds the listener and sets everything up. Nothing runs until [`Worker::run`].
    pub fn new(cfg: Config) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut listener = net::listen(cfg.listen_addr(), cfg.backlog)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let pool = Pool::new(cfg.buffer_size, cfg.max_sessions * 2, 1024);
        Ok(Worker {
            poll,
            listener,
            sessions: Slab::with_capacity(cfg.max_sessions.min(65536)),
            pool,
            wheel: Wheel::new(WHEEL_SLOTS, TICK_MS, 0),
            stats: Stats::default(),
            cfg: Rc::new(cfg),
            scratch: vec![0u8; MAX_HELLO_LEN].into_boxed_slice(),
            clock: Instant::now(),
            now_ms: 0,
            next_id: 1,
            ready: Vec::new(),
            accept_pending: false,
            accept_paused_until: 0,
            exhausted_logged_ms: None,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Runs until an unrecoverable poll error.
    pub fn run(&mut self) -> io::Result<()> {
        info!(
            "listening on {} upstream={} ({}) max_sessions={} buffer_size={} proxy_protocol={:?}",
            self.listener.local_addr()?,
            self.cfg.upstream.name,
            self.cfg
                .upstream
                .addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            self.cfg.max_sessions,
            self.cfg.buffer_size,
            self.cfg.proxy_protocol
        );
        let mut events = Events::with_capacity(EVENTS);
        let mut due = Vec::new();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("poll failed: {e}");
                return Err(e);
            }
            self.now_ms = self.clock.elapsed().as_millis() as u64;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_pending = true,
                    t => {
                        let (key, leg) = session::untoken(t);
                        if let Some(s) = self.sessions.get_mut(key) {
                            s.on_event(leg, event);
                            self.drive(key);
                        }
                    }
                }
            }
            let ready = std::mem::take(&mut self.ready);
            for (key, id) in ready {
                if self.sessions.get(key).is_some_and(|s| s.id == id) {
                    self.drive(key);
                }
            }
            if self.accept_pending && self.now_ms >= self.accept_paused_until {
                self.accept();
            }
            self.wheel.expire(self.now_ms, &mut due);
            for Entry { key, gen } in due.drain(..) {
                self.on_timer(key, gen);
            }
        }
    }

    /// Zero while work is queued; otherwise until the next timer tick (or forever when idle).
    fn poll_timeout(&mut self) -> Option<Duration> {
        let backlog = !self.ready.is_empty()
            || (self.accept_pending && self.now_ms >= self.accept_paused_until);
        if backlog {
            return Some(Duration::ZERO);
        }
        if self.wheel.is_empty() && !self.accept_pending {
            return None;
        }
        let now = self.clock.elapsed().as_millis() as u64;
        let next_tick = (now / TICK_MS + 1) * TICK_MS;
        Some(Duration::from_millis(next_tick - now))
    }

    fn ctx(&mut self) -> (&mut Slab<Session>, Ctx<'_>) {
        (
            &mut self.sessions,
            Ctx {
                registry: self.poll.registry(),
                pool: &mut self.pool,
                wheel: &mut self.wheel,
                stats: &mut self.stats,
                scratch: &mut self.scratch,
                now_ms: self.now_ms,
            },
        )
    }

    fn drive(&mut self, key: usize) {
        let (sessions, mut ctx) = self.ctx();
        let Some(s) = sessions.get_mut(key) else {
            return;
        };
        let step = s.drive(&mut ctx);
        self.after(key, step);
    }

    fn on_timer(&mut self, key: usize, gen: u32) {
        let (sessions, mut ctx) = self.ctx();
        let Some(s) = sessions.get_mut(key) else {
            return;
        };
        let step = s.on_timer(gen, &mut ctx);
        self.after(key, step);
    }

    fn after(&mut self, key: usize, step: Step) {
        match step {
            Step::Wait => {}
            Step::Yield => {
                if let Some(s) = self.sessions.get(key) {
                    self.ready.push((key, s.id));
                }
            }
            Step::Close(reason) => self.close(key, reason),
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        if !self.sessions.contains(key) {
            return;
        }
        let s = self.sessions.remove(key);
        let (_, mut ctx) = self.ctx();
        s.close(reason, &mut ctx);
    }

    /// Accepts up to ENVOY_ACCEPTORS connections; leaves `accept_pending` set if there may be more.
    fn accept(&mut self) {
        for _ in 0..self.cfg.acceptors {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.sessions.len() >= self.cfg.max_sessions {
                        self.stats.refused_max_sessions += 1;
                        debug!(
                            "refused {peer}: ENVOY_MAX_SESSIONS={} reached",
                            self.cfg.max_sessions
                        );
                        drop(stream);
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let cfg = Rc::clone(&self.cfg);
                    let (sessions, mut ctx) = self.ctx();
                    let entry = sessions.vacant_entry();
                    let key = entry.key();
                    match Session::new(id, key, stream, peer, cfg, &mut ctx) {
                        Ok(s) => {
                            entry.insert(s);
                            self.stats.accepted += 1;
                        }
                        Err(e) => warn!("sid={id} peer={peer} could not be set up: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if net::is_resource_exhaustion(&e) => {
                    self.stats.accept_exhausted += 1;
                    self.accept_paused_until = self.now_ms + ACCEPT_BACKOFF_MS;
                    let quiet = self
                        .exhausted_logged_ms
                        .is_some_and(|t| self.now_ms < t + 1000);
                    if !quiet {
                        self.exhausted_logged_ms = Some(self.now_ms);
                        warn!(
                            "accept: {e}; pausing accepts for {ACCEPT_BACKOFF_MS} ms ({} times so far, {} sessions open)",
                            self.stats.accept_exhausted,
                            self.sessions.len()
                        );
                    }
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    debug!("accept: {e}");
                }
            }
        }
        // The budget ran out: there may be more waiting, and no new edge will say so.
        self.accept_pending = true;
    }
}
