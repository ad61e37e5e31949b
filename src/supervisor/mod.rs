//! The supervisor: one worker process per core, each with its own SO_REUSEPORT listener that
//! the supervisor owns and lends; respawn with back-off; signals passed on; the control socket
//! and `/metrics` answered for all workers at once; and the binary upgrade.
//!
//! The supervisor keeps every listening socket (client listeners, control socket, metrics),
//! so a worker can die or be replaced without one being closed: closing a SO_REUSEPORT
//! listener would reset the connections queued in it. An upgrade hands all of them to the
//! new binary by inheritance; the new supervisor's workers accept on the very same sockets,
//! then the old workers stop accepting and drain. The supervisor never touches a session.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::net::{TcpListener, UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::admin::command::{self, Command as Ctl};
use crate::admin::conn::{AdminConn, AdminStream};
use crate::config::{Config, Layers};
use crate::net;
use crate::sys::signals::SignalPipe;
use crate::wire::http;
use crate::wire::Parsed;

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

/// Environment variables by which a supervisor hands sockets to its workers and successor.
pub mod env {
    /// `index/count` of a worker.
    pub const WORKER: &str = "SLUICE_WORKER";
    /// The worker's listening socket.
    pub const LISTEN_FD: &str = "SLUICE_LISTEN_FD";
    /// The worker's command channel.
    pub const CHANNEL_FD: &str = "SLUICE_CHANNEL_FD";
    /// Upgrade: the client listeners, comma-separated.
    pub const INHERIT_LISTEN: &str = "SLUICE_INHERIT_LISTEN_FDS";
    /// Upgrade: the control socket listener.
    pub const INHERIT_CONTROL: &str = "SLUICE_INHERIT_CONTROL_FD";
    /// Upgrade: the metrics listener.
    pub const INHERIT_METRICS: &str = "SLUICE_INHERIT_METRICS_FD";
    /// Upgrade: where the new supervisor writes `ready`.
    pub const UPGRADE_FD: &str = "SLUICE_UPGRADE_FD";
    /// Upgrade: control commands to replay (runtime `set`s and traces), newline-separated.
    pub const REPLAY: &str = "SLUICE_REPLAY";
}

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

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Starts worker `i` on its listener, with a fresh command channel.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let listen_fd = self.listeners[i].as_raw_fd();
        let chan_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("worker")
            .env(env::WORKER, format!("{i}/{}", self.cfg.workers))
            .env(env::LISTEN_FD, listen_fd.to_string())
            .env(env::CHANNEL_FD, chan_fd.to_string());
        // SAFETY: runs in the child between fork and exec; only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                inheritable(listen_fd)?;
                inheritable(chan_fd)?;
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let mut chan = UnixStream::from_std(ours);
        self.poll.registry().register(
            &mut chan,
            Token(WORKER_BASE + i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let now = self.now_ms();
        let slot = &mut self.workers[i];
        info!("worker {i} started, pid {}", child.id());
        slot.child = Some(child);
        slot.chan = Some(chan);
        slot.input.clear();
        slot.output.clear();
        slot.ready = false;
        slot.started_ms = now;
        slot.respawn_at = None;
        slot.awaiting.clear();
        // The worker speaks first ("ready"); then it catches up with the runtime changes.
        slot.awaiting.push_back(None);
        for line in self.replay.clone() {
            self.send(i, &line, None);
        }
        Ok(())
    }

    fn send(&mut self, i: usize, line: &str, request: Option<usize>) {
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

    fn flush_worker(&mut self, i: usize) {
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

    fn remove_control_socket(&mut self) {
        if let Some((mut l, path)) = self.control.take() {
            let _ = self.poll.registry().deregister(&mut l);
            let _ = std::fs::remove_file(path);
        }
    }

    fn on_signals(&mut self) {
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
    fn stop(&mut self) {
        self.stopping = true;
        self.listeners.clear();
    }

    fn signal_workers(&self, sig: libc::c_int) {
        for w in &self.workers {
            if let Some(c) = &w.child {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            }
        }
    }

    /// Collects exited workers; schedules respawns.
    fn reap(&mut self) {
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

    fn respawn_due(&mut self) {
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
    fn on_worker(&mut self, i: usize) {
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

    fn on_worker_ready(&mut self) {
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

    fn accept_clients(&mut self, metrics: bool) {
        loop {
            let accepted = if metrics {
                match self.metrics.as_ref().map(|l| l.accept()) {
                    Some(Ok((s, _))) => AdminStream::Tcp(s),
                    _ => return,
                }
            } else {
                match self.control.as_ref().map(|(l, _)| l.accept()) {
                    Some(Ok((s, _))) => AdminStream::Unix(s),
                    _ => return,
                }
            };
            let entry = self.clients.vacant_entry();
            let mut conn = AdminConn::new(accepted);
            let token = Token(CLIENT_BASE + entry.key());
            if conn.register(self.poll.registry(), token).is_ok() {
                entry.insert(conn);
            }
        }
    }

    fn on_client(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key) else {
            return;
        };
        let open = conn.fill();
        let is_metrics = matches!(conn.stream, AdminStream::Tcp(_));
        if is_metrics {
            if !conn.close_after_write && !conn.input.is_empty() {
                match http::parse_request_host(&conn.input) {
                    Parsed::NeedMore => {}
                    Parsed::Complete(head, _)
                        if head.method == b"GET" && head.target == b"/metrics" =>
                    {
                        conn.close_after_write = true;
                        self.fan_out(key, "metrics".into(), true);
                    }
                    _ => {
                        conn.output.extend_from_slice(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\nConnection: close\r\n\r\ntry /metrics\n",
                        );
                        conn.close_after_write = true;
                    }
                }
            }
        } else {
            let mut lines = Vec::new();
            while let Some(l) = self.clients.get_mut(key).and_then(AdminConn::next_line) {
                lines.push(l);
            }
            for line in lines {
                match line
                    .map_err(|e| e.to_string())
                    .and_then(|l| command::parse(&l).map(|c| (l, c)))
                {
                    Err(e) => self.answer(key, format!("error: {e}")),
                    Ok((_, Ctl::Upgrade)) => {
                        let r = match self.start_upgrade() {
                            Ok(pid) => format!("ok: upgrade started: new supervisor pid {pid}; the old workers drain once it is ready"),
                            Err(e) => format!("error: upgrade not started: {e}; still serving"),
                        };
                        self.answer(key, r);
                    }
                    Ok((l, cmd)) => {
                        if cmd == Ctl::Drain {
                            self.stop();
                        }
                        self.fan_out(key, l, false);
                    }
                }
            }
        }
        self.flush_client(key, open.unwrap_or(false));
    }

    fn answer(&mut self, key: usize, text: String) {
        if let Some(c) = self.clients.get_mut(key) {
            c.output
                .extend_from_slice(text.trim_end_matches('\n').as_bytes());
            c.output.extend_from_slice(b"\n\n");
        }
    }

    fn flush_client(&mut self, key: usize, peer_open: bool) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let waiting = self.requests.iter().any(|(_, r)| r.client == key);
        let done = match c.flush_out() {
            Err(_) => true,
            Ok(all_out) => all_out && !waiting && (!peer_open || c.close_after_write),
        };
        if done {
            let mut c = self.clients.remove(key);
            let _ = self.poll.registry().deregister(c.stream.source());
        }
    }

    fn fan_out(&mut self, client: usize, line: String, metrics: bool) {
        let n = self.workers.len();
        let r = self.requests.insert(Request {
            client,
            line: line.clone(),
            metrics,
            replies: vec![None; n],
            waiting: n,
        });
        for i in 0..n {
            self.send(i, &line, Some(r));
        }
        self.maybe_complete(r);
    }

    fn reply_from(&mut self, r: usize, i: usize, text: Option<String>) {
        let Some(req) = self.requests.get_mut(r) else {
            return;
        };
        if let Some(slot) = req.replies.get_mut(i) {
            *slot = text;
        }
        req.waiting = req.waiting.saturating_sub(1);
        self.maybe_complete(r);
    }

    fn maybe_complete(&mut self, r: usize) {
        if self.requests.get(r).is_none_or(|req| req.waiting > 0) {
            return;
        }
        let req = self.requests.remove(r);
        let replies: Vec<String> = req.replies.iter().flatten().cloned().collect();
        let text = if req.metrics {
            let body = merge_metrics(&replies, self.restarts);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            let merged = merge_replies(&req.line, &replies);
            let records = merged.starts_with("ok:") && !merged.contains("\nerror:");
            if records && is_replayed(&req.line) {
                self.replay.push(req.line.clone());
            }
            format!("{}\n\n", merged.trim_end_matches('\n'))
        };
        if let Some(c) = self.clients.get_mut(req.client) {
            c.output.extend_from_slice(text.as_bytes());
        }
        self.flush_client(req.client, true);
    }

    /// Starts the binary now on disk as a new supervisor holding every listening socket.
    fn start_upgrade(&mut self) -> io::Result<u32> {
        if self.upgrade.is_some() {
            return Err(io::Error::other("an upgrade is already running"));
        }
        let mut fds: Vec<RawFd> = self.listeners.iter().map(AsRawFd::as_raw_fd).collect();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run");
        cmd.env(
            env::INHERIT_LISTEN,
            fds.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        if let Some((l, _)) = &self.control {
            cmd.env(env::INHERIT_CONTROL, l.as_raw_fd().to_string());
            fds.push(l.as_raw_fd());
        }
        if let Some(m) = &self.metrics {
            cmd.env(env::INHERIT_METRICS, m.as_raw_fd().to_string());
            fds.push(m.as_raw_fd());
        }
        let (read_end, write_end) = pipe()?;
        cmd.env(env::UPGRADE_FD, write_end.as_raw_fd().to_string());
        fds.push(write_end.as_raw_fd());
        cmd.env(env::REPLAY, self.replay.join("\n"));
        // SAFETY: between fork and exec: only fcntl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    inheritable(fd)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(write_end);
        let pid = child.id();
        let file = std::fs::File::from(read_end);
        set_nonblocking(file.as_raw_fd())?;
        self.poll.registry().register(
            &mut SourceFd(&file.as_raw_fd()),
            UPGRADE,
            Interest::READABLE,
        )?;
        info!(
            "upgrade: started {} as pid {pid}; waiting for its workers",
            self.exe.display()
        );
        self.upgrade = Some((child, file, self.now_ms() + UPGRADE_TIMEOUT_MS));
        Ok(pid)
    }

    fn on_upgrade_pipe(&mut self) {
        let Some((child, file, _)) = self.upgrade.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16];
        let n = file.read(&mut buf).unwrap_or(0);
        if n > 0 && buf[..n].starts_with(b"ready") {
            let pid = child.id();
            info!("upgrade: new supervisor pid {pid} is serving; old workers stop accepting and drain");
            self.retire();
        } else if n == 0 {
            // The new process closed its end: it is exiting (its status comes with the next
            // check) or it dropped the descriptor (the timeout then decides).
            let fd = file.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn check_upgrade_timeout(&mut self) {
        let now = self.now_ms();
        let Some((child, _, deadline)) = self.upgrade.as_mut() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            let why = format!("the new binary exited ({status}) before it was ready");
            self.fail_upgrade(&why);
        } else if now >= *deadline {
            self.fail_upgrade("the new binary did not report ready in time");
        }
    }

    fn fail_upgrade(&mut self, why: &str) {
        if let Some((mut child, file, _)) = self.upgrade.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&file.as_raw_fd()));
            let _ = child.kill();
            let _ = child.wait();
            error!("upgrade failed: {why}; the old binary keeps serving");
        }
    }

    /// After a successful upgrade: let go of every socket, drain the workers, exit.
    fn retire(&mut self) {
        if let Some((_, file, _)) = self.upgrade.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&file.as_raw_fd()));
        }
        if let Some((mut l, _)) = self.control.take() {
            let _ = self.poll.registry().deregister(&mut l); // the path now belongs to the successor
        }
        if let Some(mut m) = self.metrics.take() {
            let _ = self.poll.registry().deregister(&mut m);
        }
        self.listeners.clear(); // our copies only; the successor holds the sockets
        self.stopping = true;
        self.retired = true;
        self.signal_workers(libc::SIGTERM);
    }
}

/// The commands whose effect must survive a worker respawn or an upgrade.
fn is_replayed(line: &str) -> bool {
    let verb = line.split_whitespace().next().unwrap_or("");
    matches!(verb, "set" | "trace" | "untrace")
}

/// One reply from several workers: identical ones once; `show sessions` concatenated;
/// `show stats` summed; otherwise every worker's, prefixed, errors first.
fn merge_replies(line: &str, replies: &[String]) -> String {
    if replies.is_empty() {
        return "error: no worker answered".into();
    }
    if replies.iter().all(|r| r == &replies[0]) {
        return replies[0].clone();
    }
    match line.trim() {
        "show sessions" => {
            let mut out = String::new();
            for (i, r) in replies.iter().enumerate() {
                for (j, l) in r.lines().enumerate() {
                    if j > 0 || i == 0 {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
            out
        }
        "show stats" => {
            let mut keys: Vec<String> = Vec::new();
            let mut sums: std::collections::HashMap<String, Result<u64, String>> =
                Default::default();
            for r in replies {
                for l in r.lines() {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    if !sums.contains_key(k) {
                        keys.push(k.to_string());
                    }
                    let e = sums.entry(k.to_string()).or_insert(Ok(0));
                    *e = match (e.clone(), v.parse::<u64>()) {
                        (Ok(a), Ok(b)) => Ok(a + b),
                        (Err(s), _) => Err(s),
                        (Ok(_), Err(_)) => Err(v.to_string()),
                    };
                }
            }
            let mut out = String::new();
            for k in keys {
                match &sums[&k] {
                    Ok(n) => writeln!(out, "{k}={n}"),
                    Err(s) => writeln!(out, "{k}={s}"),
                }
                .ok();
            }
            out
        }
        _ => {
            let ok = replies.iter().all(|r| r.starts_with("ok:"));
            if ok {
                return replies[0].clone();
            }
            let mut out = String::new();
            for (i, r) in replies.iter().enumerate() {
                for l in r.lines() {
                    match l.strip_prefix("error: ") {
                        Some(e) => writeln!(out, "error: worker {i}: {e}"),
                        None => writeln!(out, "worker {i}: {l}"),
                    }
                    .ok();
                }
            }
            out
        }
    }
}

/// Sums the workers' expositions series by series (a few gauges take the maximum).
fn merge_metrics(replies: &[String], restarts: u64) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut values: std::collections::HashMap<String, f64> = Default::default();
    for r in replies {
        for l in r.lines() {
            if l.starts_with('#') {
                if !values.contains_key(l) {
                    values.insert(l.to_string(), 0.0);
                    order.push(l.to_string());
                }
                continue;
            }
            let Some((series, v)) = l.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            let max = series.starts_with("sluice_buffer_size_bytes")
                || series.starts_with("sluice_build_info")
                || series.starts_with("sluice_draining");
            match values.get_mut(series) {
                Some(x) if max => *x = x.max(v),
                Some(x) => *x += v,
                None => {
                    values.insert(series.to_string(), v);
                    order.push(series.to_string());
                }
            }
        }
    }
    let mut out = String::new();
    for k in order {
        if k.starts_with('#') {
            out.push_str(&k);
        } else {
            let _ = write!(out, "{k} {}", values[&k]);
        }
        out.push('\n');
    }
    let _ = writeln!(out, "# HELP sluice_workers Worker processes answering this scrape.\n# TYPE sluice_workers gauge\nsluice_workers {}", replies.len());
    let _ = writeln!(out, "# HELP sluice_worker_restarts_total Workers respawned after dying.\n# TYPE sluice_worker_restarts_total counter\nsluice_worker_restarts_total {restarts}");
    out
}

/// Tells systemd (Type=notify, NotifyAccess=all) something, if it is listening.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    if path.to_string_lossy().starts_with('@') {
        return; // abstract sockets: not supported here; systemd also offers a path
    }
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(msg.as_bytes(), &path);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One SO_REUSEPORT listener per worker on the configured address (inherited on upgrade).
fn bind_listeners(cfg: &Config) -> io::Result<Vec<OwnedFd>> {
    let mut out: Vec<OwnedFd> = Vec::new();
    if let Ok(list) = std::env::var(env::INHERIT_LISTEN) {
        for fd in list.split(',').filter_map(|f| f.parse::<RawFd>().ok()) {
            // SAFETY: the predecessor passed these listening sockets for us to own.
            out.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    out.truncate(cfg.workers);
    let mut addr = cfg.listen_addr();
    if let Some(first) = out.first() {
        let inherited = local_addr(first)?;
        let moved =
            inherited.ip() != addr.ip() || (addr.port() != 0 && inherited.port() != addr.port());
        if moved {
            // An upgrade is how the listen address changes: bind the new one; the old
            // sockets close when the old supervisor and its workers are gone.
            info!("listen address {inherited} -> {addr}: binding the new one");
            out.clear();
        } else {
            addr = inherited;
        }
    }
    while out.len() < cfg.workers {
        let l = net::listen(addr, cfg.backlog)?;
        addr = l.local_addr()?; // port 0: the others join the port the first one got
        out.push(unsafe_into_std(l));
    }
    Ok(out)
}

fn unsafe_into_std(l: TcpListener) -> OwnedFd {
    // SAFETY: into_raw_fd hands over sole ownership of the descriptor.
    unsafe { OwnedFd::from_raw_fd(l.into_raw_fd()) }
}

fn local_addr(fd: &OwnedFd) -> io::Result<std::net::SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

fn inherited(var: &str) -> Option<RawFd> {
    std::env::var(var).ok()?.parse().ok()
}

/// Clears FD_CLOEXEC so `fd` survives exec. Async-signal-safe.
fn inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process holds.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFD);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process holds.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into our array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [r.as_raw_fd(), w.as_raw_fd()] {
        // SAFETY: fcntl on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((r, w))
}

/// Worker side: the sockets the supervisor lent, from the environment.
pub fn worker_role() -> io::Result<crate::worker::Role> {
    let spec =
        std::env::var(env::WORKER).map_err(|_| io::Error::other("not started by a supervisor"))?;
    let (i, n) = spec
        .split_once('/')
        .ok_or_else(|| io::Error::other("bad SLUICE_WORKER"))?;
    let index: usize = i.parse().map_err(io::Error::other)?;
    let count: usize = n.parse().map_err(io::Error::other)?;
    let lfd = inherited(env::LISTEN_FD).ok_or_else(|| io::Error::other("no SLUICE_LISTEN_FD"))?;
    let cfd = inherited(env::CHANNEL_FD).ok_or_else(|| io::Error::other("no SLUICE_CHANNEL_FD"))?;
    // SAFETY: the supervisor passed these two descriptors for this process to own.
    let (l, c) = unsafe {
        (
            std::net::TcpListener::from_raw_fd(lfd),
            std::os::unix::net::UnixStream::from_raw_fd(cfd),
        )
    };
    for fd in [lfd, cfd] {
        // SAFETY: fcntl on descriptors we own: keep them from leaking into anything we exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    l.set_nonblocking(true)?;
    c.set_nonblocking(true)?;
    pin_to_core(index);
    Ok(crate::worker::Role {
        index,
        count,
        listener: Some(TcpListener::from_std(l)),
        channel: Some(UnixStream::from_std(c)),
    })
}

/// Pins this process to one CPU of those it may run on (so `taskset`/`cpuset` on the
/// supervisor is respected): the `index % n`-th allowed one. A failure only logs.
#[cfg(target_os = "linux")]
fn pin_to_core(index: usize) {
    // SAFETY: cpu_set_t values we own, passed by pointer with their size.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else {
            return;
        };
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            warn!(
                "worker {index}: sched_setaffinity: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Pins this process to core `index % cores` with cpuset_setaffinity.
#[cfg(target_os = "freebsd")]
fn pin_to_core(index: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpuset_t with one bit set, for this process (id -1).
    unsafe {
        let mut set: libc::cpuset_t = std::mem::zeroed();
        libc::CPU_SET(index % cores, &mut set);
        if libc::cpuset_setaffinity(
            libc::CPU_LEVEL_WHICH,
            libc::CPU_WHICH_PID,
            -1,
            std::mem::size_of::<libc::cpuset_t>(),
            &set,
        ) != 0
        {
            warn!(
                "worker {index}: cpuset_setaffinity: {}",
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn pin_to_core(_index: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_merge() {
        assert_eq!(
            merge_replies("show config", &["a=1".into(), "a=1".into()]),
            "a=1"
        );
        let s = merge_replies(
            "show stats",
            &["accepted=2\ntraces=x".into(), "accepted=3\ntraces=x".into()],
        );
        assert_eq!(s, "accepted=5\ntraces=x\n");
        let s = merge_replies(
            "show sessions",
            &["id state\n1 Connected".into(), "id state\n2 Opened".into()],
        );
        assert_eq!(
            s,
            "id state\n1 Connected\nid state\n2 Opened\n".replacen("id state\n2", "2", 1)
        );
        let s = merge_replies(
            "kill 3",
            &["error: no session 3".into(), "ok: session 3 closed".into()],
        );
        assert!(s.starts_with("error: worker 0: no session 3"), "{s}");
    }

    #[test]
    fn metrics_merge_sums_and_keeps_help_once() {
        let w = "# HELP x X.\n# TYPE x counter\nx{a=\"1\"} 2\nsluice_buffer_size_bytes 16384\n"
            .to_string();
        let m = merge_metrics(&[w.clone(), w], 0);
        assert_eq!(m.matches("# HELP x").count(), 1);
        assert!(m.contains("x{a=\"1\"} 4\n"));
        assert!(m.contains("sluice_buffer_size_bytes 16384\n"));
        assert!(m.contains("sluice_workers 2\n"));
    }
}
