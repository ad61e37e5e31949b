//! One worker's event loop: a `mio::Poll`, the listener, a `Slab<Session>`, the buffer
//! pool and the timer wheel; beside them the signal pipe and the admin plane (the control
//! socket, the metrics listener, or the supervisor's channel; their handling lives in `ops`).
//!
//! Tokens: a session's legs are `key << 1 | leg`; admin connections are `ADMIN_BASE + key`;
//! the listeners and the signal pipe have reserved tokens at the top of the range. Per event,
//! the cost is a slab lookup and the session's own work; timers cost per expiry, not per
//! session. Work per wakeup is bounded: at most ENVOY_ACCEPTORS accepts per turn, a read
//! budget per session; what is left is queued and served on the next turn before sleeping.
//! Log lines are buffered while the loop runs and written out once per turn without waiting
//! (`logger::flush`); a line another thread logs wakes the loop through [`LOG_WAKER`].
//! Nothing here blocks but `poll` itself, and the bounded flush of what is left at exit.

pub mod buffer;
pub mod listeners;
pub mod ops;
pub mod pipe;
pub mod role;
pub mod session;
pub mod sockets;
pub mod splice;
pub mod stats;
pub mod timer;
pub mod token;
pub mod upstreams;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::admin::capture::Capture;
use crate::admin::channel;
use crate::admin::conn::{AdminStream, Peer};
use crate::admin::plane::{AdminPlane, Tokens};
use crate::admin::trace::TraceRule;
use crate::config::names::Names;
use crate::config::{Config, Layers};
use crate::limits::ClientTable;
use crate::logfmt::Shown;
use crate::logger;
use crate::sys::signals::SignalPipe;
use crate::wire::tls::MAX_HELLO_LEN;
use buffer::Pool;
use session::{Ctx, Next, Session};
use splice::PipePool;
use stats::{CloseReason, Stats};
use timer::{Entry, Wheel};
use upstreams::Upstreams;

/// The signal self-pipe.
pub const SIGNALS: Token = Token(usize::MAX - 1);
/// The control socket listener.
pub const CONTROL: Token = Token(usize::MAX - 2);
/// The metrics listener.
pub const METRICS: Token = Token(usize::MAX - 3);
/// Woken by a thread other than the loop's (the capture writer) logging into an empty
/// log buffer: the loop may be asleep with nothing else to wake it.
pub const LOG_WAKER: Token = Token(usize::MAX - 4);
/// Admin connections (control and metrics) are `ADMIN_BASE + key`.
pub const ADMIN_BASE: usize = 1 << (usize::BITS - 2);
/// The admin plane's tokens.
const ADMIN_TOKENS: Tokens = Tokens {
    control: CONTROL,
    metrics: METRICS,
    conn_base: ADMIN_BASE,
};

/// Timer resolution. Timeouts fire up to one tick late, never early.
const TICK_MS: u64 = 50;
/// Slots of the wheel: 8192 x 50 ms covers 409 s, beyond the default idle timeout.
const WHEEL_SLOTS: usize = 8192;
/// How long accept() rests after running out of descriptors.
pub(crate) const ACCEPT_BACKOFF_MS: u64 = 100;
/// Readiness events taken per poll.
const EVENTS: usize = 1024;

/// How a worker was started: alone, or by the supervisor with inherited sockets.
#[derive(Default)]
pub struct Role {
    /// This worker's number, from 0.
    pub index: usize,
    /// How many workers there are.
    pub count: usize,
    /// The listening sockets the supervisor owns and lends (SO_REUSEPORT, already
    /// listening), each with the address its listener is configured with.
    pub listeners: Vec<(std::net::SocketAddr, std::os::fd::OwnedFd)>,
    /// The command channel to the supervisor.
    pub channel: Option<mio::net::UnixStream>,
    /// The machine's client table, which the supervisor made (alone: the worker makes one).
    pub client_table: Option<std::os::fd::OwnedFd>,
}

/// One worker: everything its loop owns.
pub struct Worker {
    pub(crate) poll: Poll,
    pub(crate) listeners: sockets::Listeners,
    pub(crate) sessions: Slab<Session>,
    pub(crate) pool: Pool,
    pub(crate) pipes: PipePool,
    pub(crate) wheel: Wheel,
    pub(crate) stats: Stats,
    /// Every configured upstream: state, health, counters (kept across reloads).
    pub(crate) upstreams: Upstreams,
    /// The addresses of names, as the supervisor resolved them: loads read them here.
    pub(crate) names: Names,
    /// This worker's number under its supervisor (0 alone): `sluice_worker_sessions`' label.
    pub(crate) index: usize,
    /// Reports sampled for the status page (served by a lone worker only).
    pub(crate) status: crate::admin::status::History,
    pub(crate) cfg: Rc<Config>,
    pub(crate) layers: Layers,
    scratch: Box<[u8]>,
    clock: Instant,
    /// Added to the clock: time moved forward by [`Worker::warp`].
    skew_ms: u64,
    /// Expired timers of this turn (kept to reuse its memory).
    due: Vec<Entry>,
    pub(crate) now_ms: u64,
    next_id: u64,
    id_step: u64,
    /// The random half of every UNIQUE_ID this process sends (see `preamble::unique_id`).
    unique_prefix: u64,
    /// Sessions that yielded with work left: (key, id), so a reused key is not confused.
    ready: Vec<(usize, u64)>,
    /// The listener may hold more connections than the last turn accepted.
    accept_pending: bool,
    /// No accept before this time (descriptor exhaustion back-off).
    accept_paused_until: u64,
    /// When exhaustion was last logged, to log it at most once a second.
    exhausted_logged_ms: Option<u64>,
    pub(crate) signals: SignalPipe,
    /// The control socket and metrics listener (alone), or the supervisor's channel.
    pub(crate) plane: AdminPlane,
    pub(crate) traces: Vec<TraceRule>,
    pub(crate) capture: Option<Capture>,
    /// Set while draining: the time after which the remaining sessions are closed.
    pub(crate) drain_deadline: Option<u64>,
    /// Started by a supervisor, which owns the listener.
    pub(crate) supervised: bool,
    /// Log lines wait in the buffer (batched, or the sink took no more): the loop must not
    /// sleep for ever.
    log_waiting: bool,
    /// The per-client counters every worker of the machine shares.
    pub(crate) clients: ClientTable,
}

/// The random half of this process's UNIQUE_IDs: from the kernel, so that no two workers,
/// restarts or upgrades share one. Should the kernel refuse, the pid and the clock still
/// keep processes apart (said at warn).
fn unique_prefix() -> u64 {
    let mut b = [0u8; 8];
    match crate::sys::random::fill(&mut b) {
        Ok(()) => u64::from_be_bytes(b),
        Err(e) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            warn!(
                "no random bytes for UNIQUE_IDs, using the pid and the clock error={}",
                Shown(&e)
            );
            (u64::from(std::process::id()) << 32) ^ nanos
        }
    }
}

impl Worker {
    /// Binds everything and sets up. Nothing runs until [`Worker::run`].
    pub fn new(layers: Layers, cfg: Config) -> io::Result<Worker> {
        Worker::with_role(layers, cfg, Role::default())
    }

    /// A worker under a supervisor: its listener and command channel are inherited, its
    /// session ids are `index + 1 + k * count` so that ids are unique across workers.
    pub fn with_role(layers: Layers, cfg: Config, role: Role) -> io::Result<Worker> {
        let mut w = Worker::bound(layers, cfg, role)?;
        w.start_capture_writer()?;
        Ok(w)
    }

    /// [`Worker::with_role`] up to its sockets: everything is bound or adopted and
    /// registered, no thread is started and no capture is written yet, so that the process
    /// can drop its privileges (`privilege::drop_worker`) before
    /// [`Worker::start_capture_writer`].
    pub fn bound(layers: Layers, mut cfg: Config, role: Role) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let supervised = role.channel.is_some();
        let mut held = sockets::Listeners::default();
        for (addr, fd) in role.listeners {
            held.hold(addr, fd)?;
        }
        let signals = SignalPipe::install(&[
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ])?;
        poll.registry()
            .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)?;
        let pool = Pool::new(cfg.buffer_size, cfg.max_sessions * 3, 1024);
        let mut upstreams = Upstreams::default();
        upstreams.take(&mut cfg);
        let mut stats = Stats::default();
        stats.take_in(&mut cfg);
        let mut clients = match role.client_table {
            Some(fd) => ClientTable::adopt(fd),
            None => ClientTable::create(cfg.clients.table_size, 1),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("client table: {e}")))?;
        match clients.join() {
            Ok(0) => {}
            Ok(n) => {
                info!("client table ledger of a dead worker taken over sessions_given_back={n}")
            }
            Err(e) => {
                warn!(
                    "client table ledger unavailable, were this worker killed its sessions would stay counted error={}",
                    Shown(&e)
                )
            }
        }
        let clock = Instant::now();
        clients.set_origin();
        let mut w = Worker {
            poll,
            listeners: held,
            sessions: Slab::with_capacity(cfg.max_sessions.min(65536)),
            pool,
            pipes: PipePool::new(cfg.splice_pipes, 0),
            wheel: Wheel::new(WHEEL_SLOTS, TICK_MS, 0),
            stats,
            upstreams,
            names: Names::default(),
            index: role.index,
            status: Default::default(),
            cfg: Rc::new(cfg),
            layers,
            scratch: vec![0u8; MAX_HELLO_LEN].into_boxed_slice(),
            clock,
            skew_ms: 0,
            due: Vec::new(),
            now_ms: 0,
            next_id: role.index as u64 + 1,
            id_step: role.count.max(1) as u64,
            unique_prefix: unique_prefix(),
            ready: Vec::new(),
            accept_pending: false,
            accept_paused_until: 0,
            exhausted_logged_ms: None,
            signals,
            plane: AdminPlane::new(ADMIN_TOKENS),
            traces: Vec::new(),
            capture: None,
            drain_deadline: None,
            supervised,
            log_waiting: false,
            clients,
        };
        let cfg = Rc::clone(&w.cfg);
        w.serve_listeners(&cfg)?;
        if let Some(chan) = role.channel {
            // The supervisor's channel: commands come in as lines, typed replies go back;
            // "ready" first, unasked.
            let registry = w.poll.registry();
            if let Some(id) = w
                .plane
                .add(registry, AdminStream::Unix(chan), Peer::Supervisor)
            {
                w.plane.reply(id, channel::READY);
                w.plane.flush(registry, id, false);
            }
        } else {
            let owner = crate::privilege::control_socket_ownership(&cfg)
                .map_err(|e| io::Error::other(e.to_string()))?;
            w.plane.set_control_ownership(owner);
            w.open_admin_listeners(&cfg)?;
        }
        Ok(w)
    }

    /// Starts the capture writer (a thread) for `ENVOY_CAPTURE_DIR`, as the process is now
    /// (inside its chroot, as its user).
    pub fn start_capture_writer(&mut self) -> io::Result<()> {
        let cfg = Rc::clone(&self.cfg);
        self.capture = self.start_capture(&cfg)?;
        Ok(())
    }

    /// The worker, knowing the addresses the supervisor resolved.
    pub fn with_names(mut self, names: Names) -> Worker {
        self.names = names;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listeners.first_local_addr()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Milliseconds since the loop started.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.clock).as_millis() as u64 + self.skew_ms
    }

    /// Runs until drained, or an unrecoverable poll error. Log lines are buffered while it
    /// runs (the loop writes them without waiting); what is left is written at the end,
    /// waiting [`logger::EXIT_FLUSH`] at most, and logging is direct again.
    pub fn run(&mut self) -> io::Result<()> {
        let waker = mio::Waker::new(self.poll.registry(), LOG_WAKER).map(std::sync::Arc::new);
        match (logger::set_buffered(true), waker) {
            (Ok(()), Ok(w)) => logger::set_waker(Some(w)),
            (Ok(()), Err(e)) => warn!(
                "log lines of other threads wait for the next event error={}",
                Shown(&e)
            ),
            (Err(e), _) => warn!(
                "log lines are written as they come, waiting for stderr error={}",
                Shown(&e)
            ),
        }
        let result = self.serve();
        logger::set_waker(None);
        logger::flush_blocking(Instant::now() + logger::EXIT_FLUSH);
        let _ = logger::set_buffered(false);
        result
    }

    fn serve(&mut self) -> io::Result<()> {
        self.log_listening_all();
        let mut events = Events::with_capacity(EVENTS);
        self.log_waiting = logger::flush(Instant::now()).is_some();
        loop {
            let timeout = self.poll_timeout();
            if !self.turn(&mut events, timeout)? {
                return Ok(());
            }
        }
    }

    /// One turn of the loop: waits for readiness up to `timeout`, handles every event, the
    /// sessions that yielded, pending accepts and expired timers. False once drained.
    /// [`Worker::run`] is these turns back to back; tests and the session fuzz target call
    /// it directly with a zero timeout.
    pub fn turn(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<bool> {
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true);
            }
            error!("poll failed error={}", Shown(&e));
            return Err(e);
        }
        let now = Instant::now();
        self.now_ms = self.ms_at(now);
        for event in events.iter() {
            match event.token() {
                SIGNALS => self.on_signals(),
                LOG_WAKER => {} // the flush below writes what was logged
                // The admin plane's listeners (CONTROL, METRICS) and connections.
                t if t.0 >= ADMIN_BASE => self.on_admin(t),
                t if t.0 >= sockets::LISTENER_BASE => self.on_listener(t),
                t => {
                    let (key, leg) = token::untoken(t);
                    if let Some(s) = self.sessions.get_mut(key) {
                        s.on_event(leg, event);
                        self.drive(key);
                    }
                }
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for (key, id) in ready {
            if self.sessions.get(key).is_some_and(|s| s.id() == id) {
                self.drive(key);
            }
        }
        if self.accept_pending && self.now_ms >= self.accept_paused_until {
            self.accept();
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(self.now_ms, &mut due);
        for Entry { key, gen } in due.drain(..) {
            self.on_timer(key, gen);
        }
        if due.capacity() <= 4096 {
            self.due = due; // a burst of expiries gives its memory back
        }
        if let Some(deadline) = self.drain_deadline {
            if self.now_ms >= deadline && !self.sessions.is_empty() {
                warn!(
                    "drain deadline reached, closing what is left sessions={}",
                    self.sessions.len()
                );
                let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
                for k in keys {
                    self.close(k, CloseReason::Drained);
                }
            }
            if self.sessions.is_empty() {
                info!("drained, no session left, exiting");
                self.plane.close_control(self.poll.registry(), true);
                return Ok(false);
            }
        }
        self.log_waiting = logger::flush(now).is_some();
        Ok(true)
    }

    /// Moves this worker's clock `ms` forward, as if that much time had passed: the timers
    /// due by then fire on the next turn. For tests and the session fuzz target.
    pub fn warp(&mut self, ms: u64) {
        self.skew_ms += ms;
    }

    /// Sessions open, buffers lent out of the pool, splice pipes lent: all zero when idle.
    pub fn held(&self) -> (usize, usize, usize) {
        (self.sessions.len(), self.pool.lent(), self.pipes.lent())
    }

    /// Zero while work is queued; otherwise until the next timer tick (or forever when idle
    /// with no log line waiting).
    fn poll_timeout(&mut self) -> Option<Duration> {
        let backlog = !self.ready.is_empty()
            || (self.accept_pending && self.now_ms >= self.accept_paused_until);
        if backlog {
            return Some(Duration::ZERO);
        }
        let idle = self.wheel.is_empty() && !self.accept_pending && self.drain_deadline.is_none();
        if idle && !self.log_waiting {
            return None;
        }
        // Buffered log lines wait for the next tick at the latest (every turn flushes what
        // is due), never for a timer of their own: a timeout shorter than the tick re-arms
        // the kernel's timer on every wait, an MSR write and a VM exit each under KVM,
        // which cost more than the lines (issue 20).
        let now = self.clock_ms();
        let next_tick = (now / TICK_MS + 1) * TICK_MS;
        Some(Duration::from_millis(next_tick - now))
    }

    fn ctx(&mut self) -> (&mut Slab<Session>, Ctx<'_>) {
        (
            &mut self.sessions,
            Ctx {
                registry: self.poll.registry(),
                pool: &mut self.pool,
                pipes: &mut self.pipes,
                wheel: &mut self.wheel,
                stats: &mut self.stats,
                upstreams: &mut self.upstreams,
                scratch: &mut self.scratch,
                now_ms: self.now_ms,
                traces: &self.traces,
                capture: self.capture.as_mut(),
                unique_prefix: self.unique_prefix,
                clients: &self.clients,
            },
        )
    }

    fn drive(&mut self, key: usize) {
        let (sessions, mut ctx) = self.ctx();
        let Some(s) = sessions.get_mut(key) else {
            return;
        };
        let next = s.drive(&mut ctx);
        self.after(key, next);
    }

    fn on_timer(&mut self, key: usize, gen: u32) {
        let (sessions, mut ctx) = self.ctx();
        let Some(s) = sessions.get_mut(key) else {
            return;
        };
        let next = s.on_timer(gen, &mut ctx);
        self.after(key, next);
    }

    fn after(&mut self, key: usize, next: Next) {
        match next {
            Next::Wait => {}
            Next::Again => {
                if let Some(s) = self.sessions.get(key) {
                    self.ready.push((key, s.id()));
                }
            }
            Next::Close(reason) => self.close(key, reason),
        }
    }

    /// Closes the session at `key` for `reason`.
    pub(crate) fn close(&mut self, key: usize, reason: CloseReason) {
        if !self.sessions.contains(key) {
            return;
        }
        let s = self.sessions.remove(key);
        self.wheel.cancel(key);
        let (_, mut ctx) = self.ctx();
        s.close(reason, &mut ctx);
    }

    /// Stops accepting: the listener is closed. Sessions finish until `deadline_ms`.
    pub(crate) fn start_drain(&mut self, timeout_ms: u64) {
        self.close_listeners();
        self.accept_pending = false;
        let deadline = self.now_ms + timeout_ms;
        self.drain_deadline = Some(self.drain_deadline.map_or(deadline, |d| d.min(deadline)));
        info!(
            "draining sessions={} timeout_ms={timeout_ms}",
            self.sessions.len()
        );
    }
}
