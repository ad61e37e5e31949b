//! The supervisor: one worker process per core, each with its own SO_REUSEPORT listener that
//! the supervisor owns and lends; respawn with back-off; signals passed on; the control socket
//! and `/metrics` answered for all workers at once; and the binary upgrade.
//!
//! The supervisor keeps every listening socket (client listeners, control socket, metrics),
//! so a worker can die or be replaced without one being closed: closing a SO_REUSEPORT
//! listener would reset the connections queued in it. An upgrade hands all of them to the
//! new binary by inheritance; the new supervisor's workers accept on the very same sockets,
//! then the old workers stop accepting and drain. The supervisor never touches a session.
//!
//! This file holds the supervision itself (start, the loop, respawn, signals); `spawn`
//! starts a worker, `fanout` answers admin clients for all workers, `upgrade` hands over
//! to a new binary, `notify` talks to systemd.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::net::{TcpListener, UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

mod fanout;
mod notify;
mod spawn;
mod upgrade;

use crate::sys::fd::inherited;
use notify::sd_notify;
use upgrade::{bind_listeners, local_addr};

use crate::admin::command::Command as Ctl;
use crate::admin::conn::{AdminConn, AdminStream};
use crate::config::{Config, Layers};
use crate::sys::signals::SignalPipe;

const SIGNALS: Token = Token(usize::MAX - 1);
const CONTROL: Token = Token(usize::MAX - 2);
const METRICS: Token = Token(usize::MAX - 3);
const UPGRADE: Token = Token(usize::MAX - 4);
const WORKER_BASE: usize = 1 << 40;
const CLIENT_BASE: usize = 1 << 50;

/// Back-off before respawning a worker that keeps dying: 100 ms doubling up to 5 s.
const BACKOFF_MS: (u64, u64) = (100, 5000);
/// A worker that lived this long resets its back-off.
const HEALTHY_MS: u64 = 10_000;
/// How long a new binary has to report ready during an upgrade.
const UPGRADE_TIMEOUT_MS: u64 = 15_000;

pub(crate) use crate::handoff as env;

struct Slot {
    child: Option<Child>,
    chan: Option<UnixStream>,
    input: Vec<u8>,
    output: Vec<u8>,
    ready: bool,
    started_ms: u64,
    failures: u32,
    respawn_at: Option<u64>,
    /// Requests whose reply from this worker is awaited, in order; `None`: discard.
    awaiting: VecDeque<Option<usize>>,
}

struct Request {
    client: usize,
    line: String,
    metrics: bool,
    replies: Vec<Option<String>>,
    waiting: usize,
}

/// The supervisor's state.
pub struct Supervisor {
    poll: Poll,
    cfg: Config,
    exe: PathBuf,
    listeners: Vec<OwnedFd>,
    control: Option<(UnixListener, String)>,
    metrics: Option<TcpListener>,
    workers: Vec<Slot>,
    clients: Slab<AdminConn>,
    requests: Slab<Request>,
    signals: SignalPipe,
    clock: Instant,
    /// Commands that changed state (set, trace, ...), replayed to a respawned worker.
    replay: Vec<String>,
    /// No respawn; exit when every worker is gone.
    stopping: bool,
    /// Upgrade in progress: the new supervisor and the read end of its ready pipe.
    upgrade: Option<(Child, std::fs::File, u64)>,
    /// Ready pipe to the old supervisor, written once all workers are ready.
    tell_ready: Option<std::fs::File>,
    restarts: u64,
    /// A successor took over: the control socket's path is its, not ours to remove.
    retired: bool,
    /// Every worker reported ready once (pid file written, systemd told).
    serving: bool,
}

impl Supervisor {
    /// Binds (or inherits) every socket and starts the workers.
    pub fn start(layers: Layers, cfg: Config) -> io::Result<Supervisor> {
        let _ = layers;
        let exe = std::env::current_exe()?;
        let poll = Poll::new()?;
        let signals = SignalPipe::install(&[
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR2,
            libc::SIGCHLD,
        ])?;
        poll.registry()
            .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)?;
        let listeners = bind_listeners(&cfg)?;
        let mut control = None;
        if let Some(fd) = inherited(env::INHERIT_CONTROL) {
            // SAFETY: the predecessor passed this listening UNIX socket for us to own.
            let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            l.set_nonblocking(true)?;
            control = Some((UnixListener::from_std(l), cfg.control_socket.clone()));
        } else if !cfg.control_socket.is_empty() {
            control = Some((
                crate::worker::ops::bind_unix_0600(&cfg.control_socket)?,
                cfg.control_socket.clone(),
            ));
        }
        if let Some((l, _)) = control.as_mut() {
            poll.registry().register(l, CONTROL, Interest::READABLE)?;
        }
        let mut metrics = match (inherited(env::INHERIT_METRICS), cfg.metrics_addr) {
            (Some(fd), _) => {
                // SAFETY: the predecessor passed this listening TCP socket for us to own.
                let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                l.set_nonblocking(true)?;
                Some(TcpListener::from_std(l))
            }
            (None, Some(addr)) => Some(TcpListener::bind(addr)?),
            (None, None) => None,
        };
        if let Some(m) = metrics.as_mut() {
            poll.registry().register(m, METRICS, Interest::READABLE)?;
            info!("metrics on http://{}/metrics", m.local_addr()?);
        }
        let tell_ready = inherited(env::UPGRADE_FD).map(|fd| {
            // SAFETY: the write end of the ready pipe, passed for us to own.
            unsafe { std::fs::File::from_raw_fd(fd) }
        });
        let replay: Vec<String> = std::env::var(env::REPLAY)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        for k in [
            env::INHERIT_LISTEN,
            env::INHERIT_CONTROL,
            env::INHERIT_METRICS,
            env::UPGRADE_FD,
            env::REPLAY,
        ] {
            std::env::remove_var(k);
        }
        let addr = local_addr(&listeners[0])?;
        info!(
            "supervisor pid={} starting {} worker(s) on {}",
            std::process::id(),
            cfg.workers,
            addr
        );
        let mut s = Supervisor {
            poll,
            exe,
            listeners,
            control,
            metrics,
            workers: Vec::new(),
            clients: Slab::new(),
            requests: Slab::new(),
            signals,
            clock: Instant::now(),
            replay,
            stopping: false,
            upgrade: None,
            tell_ready,
            restarts: 0,
            retired: false,
            serving: false,
            cfg,
        };
        for i in 0..s.cfg.workers {
            s.workers.push(Slot {
                child: None,
                chan: None,
                input: Vec::new(),
                output: Vec::new(),
                ready: false,
                started_ms: 0,
                failures: 0,
                respawn_at: None,
                awaiting: VecDeque::new(),
            });
            s.spawn(i)?;
        }
        Ok(s)
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    pub(super) fn send(&mut self, i: usize, line: &str, request: Option<usize>) {
        let slot = &mut self.workers[i];
        if slot.chan.is_none() {
            if let Some(r) = request.and_then(|r| self.requests.get_mut(r)) {
                r.waiting = r.waiting.saturating_sub(1);
            }
            return;
        }
        slot.output.extend_from_slice(line.as_bytes());
        slot.output.push(b'\n');
        slot.awaiting.push_back(request);
        self.flush_worker(i);
    }

    pub(super) fn flush_worker(&mut self, i: usize) {
        let slot = &mut self.workers[i];
        let Some(chan) = slot.chan.as_mut() else {
            return;
        };
        while !slot.output.is_empty() {
            match chan.write(&slot.output) {
                Ok(n) => {
                    slot.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return, // the child's exit will be noticed through SIGCHLD
            }
        }
    }

    /// Runs until every worker is gone after a drain, stop or upgrade.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = Some(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(),
                    CONTROL => self.accept_clients(false),
                    METRICS => self.accept_clients(true),
                    UPGRADE => self.on_upgrade_pipe(),
                    Token(t) if t >= CLIENT_BASE => self.on_client(t - CLIENT_BASE),
                    Token(t) if t >= WORKER_BASE => self.on_worker(t - WORKER_BASE),
                    _ => {}
                }
            }
            self.reap();
            self.respawn_due();
            self.check_upgrade_timeout();
            if self.stopping && self.workers.iter().all(|w| w.child.is_none()) {
                info!(
                    "supervisor pid={}: every worker is gone, exiting",
                    std::process::id()
                );
                if !self.retired {
                    self.remove_control_socket();
                    if !self.cfg.pid_file.is_empty() {
                        let _ = std::fs::remove_file(&self.cfg.pid_file);
                    }
                }
                return Ok(());
            }
        }
    }

    pub(super) fn remove_control_socket(&mut self) {
        if let Some((mut l, path)) = self.control.take() {
            let _ = self.poll.registry().deregister(&mut l);
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn on_signals(&mut self) {
        for s in self.signals.drain() {
            match s {
                libc::SIGCHLD => {}
                libc::SIGHUP => self.signal_workers(libc::SIGHUP),
                libc::SIGTERM | libc::SIGINT => {
                    info!(
                        "supervisor: {} received: workers drain, then exit",
                        if s == libc::SIGTERM {
                            "SIGTERM"
                        } else {
                            "SIGINT"
                        }
                    );
                    self.stop();
                    self.signal_workers(s);
                }
                libc::SIGUSR2 => {
                    if let Err(e) = self.start_upgrade() {
                        error!("upgrade not started: {e}; still serving");
                    }
                }
                other => warn!("supervisor: signal {other} ignored"),
            }
        }
    }

    /// A stop (not an upgrade): no respawn, and our copies of the listeners close, so that
    /// once the workers close theirs new connections are refused rather than queued.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        self.listeners.clear();
    }

    pub(super) fn signal_workers(&self, sig: libc::c_int) {
        for w in &self.workers {
            if let Some(c) = &w.child {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            }
        }
    }

    /// Collects exited workers; schedules respawns.
    pub(super) fn reap(&mut self) {
        let now = self.now_ms();
        for i in 0..self.workers.len() {
            let Some(child) = self.workers[i].child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            let pid = child.id();
            let slot = &mut self.workers[i];
            slot.child = None;
            if let Some(mut chan) = slot.chan.take() {
                let _ = self.poll.registry().deregister(&mut chan);
            }
            let pending: Vec<usize> = slot.awaiting.drain(..).flatten().collect();
            for r in pending {
                self.reply_from(r, i, None);
            }
            let slot = &mut self.workers[i];
            if self.stopping || status.success() {
                info!("worker {i} (pid {pid}) exited: {status}");
                continue;
            }
            slot.failures = if now.saturating_sub(slot.started_ms) > HEALTHY_MS {
                0
            } else {
                slot.failures + 1
            };
            let delay = (BACKOFF_MS.0 << slot.failures.min(6)).min(BACKOFF_MS.1);
            slot.respawn_at = Some(now + delay);
            self.restarts += 1;
            warn!(
                "worker {i} (pid {pid}) died: {status}; respawning in {delay} ms (restart {} so far)",
                self.restarts
            );
        }
    }

    pub(super) fn respawn_due(&mut self) {
        let now = self.now_ms();
        for i in 0..self.workers.len() {
            if self.workers[i].respawn_at.is_some_and(|t| now >= t) && !self.stopping {
                if let Err(e) = self.spawn(i) {
                    error!("worker {i} could not be started: {e}");
                    self.workers[i].respawn_at = Some(now + BACKOFF_MS.1);
                }
            }
        }
    }

    /// A reply (or EOF) on worker `i`'s channel.
    pub(super) fn on_worker(&mut self, i: usize) {
        self.flush_worker(i);
        let slot = &mut self.workers[i];
        let Some(chan) = slot.chan.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16384];
        loop {
            match chan.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => slot.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        while let Some(end) = find(&self.workers[i].input, b"\n\n") {
            let raw: Vec<u8> = self.workers[i].input.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw[..end]).to_string();
            let waiting = self.workers[i].awaiting.pop_front().flatten();
            if !self.workers[i].ready && text == "ready" {
                self.workers[i].ready = true;
                self.on_worker_ready();
                continue;
            }
            if let Some(r) = waiting {
                self.reply_from(r, i, Some(text));
            }
        }
    }

    pub(super) fn on_worker_ready(&mut self) {
        if self.workers.iter().all(|w| w.ready) && !self.serving {
            self.serving = true;
            let pid = std::process::id();
            if !self.cfg.pid_file.is_empty() {
                let tmp = format!("{}.tmp", self.cfg.pid_file);
                let written = std::fs::write(&tmp, format!("{pid}\n"))
                    .and_then(|_| std::fs::rename(&tmp, &self.cfg.pid_file));
                if let Err(e) = written {
                    warn!("ENVOY_PID_FILE {}: {e}", self.cfg.pid_file);
                }
            }
            sd_notify(&format!("READY=1\nMAINPID={pid}"));
            if let Some(mut f) = self.tell_ready.take() {
                let _ = f.write_all(b"ready\n");
                info!(
                    "supervisor pid={}: every worker is ready; told the old supervisor",
                    std::process::id()
                );
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
