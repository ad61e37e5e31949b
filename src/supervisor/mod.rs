//! The supervisor: one worker process per core, each with its own SO_REUSEPORT listener that
//! the supervisor owns and lends; respawn with back-off; signals passed on. It never touches
//! a session.
//!
//! The supervisor keeps every listening socket (client listeners, control socket, metrics),
//! so a worker can die or be replaced without one being closed: closing a SO_REUSEPORT
//! listener would reset the connections queued in it. An upgrade hands all of them to the
//! new binary by inheritance; the new supervisor's workers accept on the very same sockets,
//! then the old workers stop accepting and drain.
//!
//! This file is the supervision itself: start, the loop, respawn, signals, and reacting to
//! what its parts report. The parts know nothing of it: `spawn` starts a worker and is the
//! supervisor's end of its channel, `fanout` collects and merges the workers' replies to
//! admin requests (the admin plane itself is `admin::plane`), `upgrade` hands over to a new
//! binary, `notify` talks to systemd.
//!
//! The supervisor logs like a worker: its lines are buffered while its loop runs and
//! written out without waiting (`logger::flush`), and it follows the workers in what the
//! log keys say (a `set`, a reload) so that its lines go where theirs go.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

mod client_table;
mod fanout;
mod health;
mod listeners;
mod notify;
mod resolve;
mod spawn;
mod start;
mod upgrade;

use crate::admin::channel::{self, Message};
use crate::admin::command::{self, Command};
use crate::admin::plane::{AdminPlane, ConnId, Request, Requests, Tokens};
use crate::admin::reply::{Merged, Reply};
use crate::admin::report::{Process, Report, Supervision};
use crate::admin::status::History;
use crate::config::{Config, Layers};
use crate::handoff as env;
use crate::limits::ClientTable;
use crate::logfmt::{Shown, Value};
use crate::logger;
use crate::sys::fd::adopt_inherited;
use crate::sys::signals::SignalPipe;
use client_table::client_table;
use fanout::{is_replayed, Answered, Asker, Fanout};
use listeners::{Bound, Staged};
use spawn::WorkerSlot;
use upgrade::{Handoff, PipeNews, Upgrade};

const SIGNALS: Token = Token(usize::MAX - 1);
const CONTROL: Token = Token(usize::MAX - 2);
const METRICS: Token = Token(usize::MAX - 3);
const UPGRADE: Token = Token(usize::MAX - 4);
const RESOLVED: Token = Token(usize::MAX - 5);
const HEALTH_BASE: usize = 1 << 30;
const WORKER_BASE: usize = 1 << 40;
const CLIENT_BASE: usize = 1 << 50;
const ADMIN_TOKENS: Tokens = Tokens {
    control: CONTROL,
    metrics: METRICS,
    conn_base: CLIENT_BASE,
};

/// Back-off before respawning a worker that keeps dying: 100 ms doubling up to 5 s.
const BACKOFF_MS: (u64, u64) = (100, 5000);
/// A worker that lived this long resets its back-off.
const HEALTHY_MS: u64 = 10_000;
/// How long a new binary has to report ready during an upgrade.
const UPGRADE_TIMEOUT_MS: u64 = 15_000;
/// The longest the loop sleeps (respawns and upgrade deadlines are checked this often).
const TICK: Duration = Duration::from_millis(100);
/// How often the client table's ledgers of gone workers and stuck claims are swept.
const SWEEP_MS: u64 = 5000;

/// The supervisor's state.
pub struct Supervisor {
    poll: Poll,
    cfg: Config,
    /// Where `cfg` came from, with the `set`s the workers accepted: the log keys the
    /// supervisor follows are read from it.
    layers: Layers,
    exe: PathBuf,
    /// Every listener's sockets, one per worker each.
    listeners: Vec<Bound>,
    /// A listener change handed to the workers, waiting for their answer to request `.0`.
    staged: Option<(usize, Staged)>,
    plane: AdminPlane,
    workers: Vec<WorkerSlot>,
    fanout: Fanout,
    signals: SignalPipe,
    clock: Instant,
    /// Commands that changed state (set, trace, ...), replayed to a respawned worker.
    replay: Vec<String>,
    /// No respawn; exit when every worker is gone.
    stopping: bool,
    /// Upgrade in progress.
    upgrade: Option<Upgrade>,
    /// Ready pipe to the old supervisor, written once all workers are ready.
    tell_ready: Option<std::fs::File>,
    restarts: u64,
    /// A successor took over: the control socket's path is its, not ours to remove.
    retired: bool,
    /// Every worker reported ready once (pid file written, systemd told).
    serving: bool,
    /// The active health checks, one per checked upstream for every worker.
    health: health::Checker,
    /// Names resolved off the loop, for the supervisor and its workers.
    resolver: resolve::Resolver,
    /// Reports sampled for the status page.
    status: History,
    /// The machine's per-client counters, which every worker maps.
    clients: ClientTable,
    /// Claims in the client table seen unfinished at the last sweep, and when that was.
    stuck_claims: Vec<(usize, u64)>,
    swept_ms: u64,
}

impl Supervisor {
    /// Binds (or inherits) every socket and starts the workers. An error says what failed:
    /// `cannot start on ADDR: ...` for the listeners, the key for the control socket and the
    /// metrics address (`preflight` checked them, but another process may have been faster).
    pub fn start(cfg: Config) -> io::Result<Supervisor> {
        let mut s = Supervisor::bind(cfg)?;
        s.start_workers()?;
        Ok(s)
    }

    /// [`Supervisor::start`] up to its workers: every socket is bound or inherited, so
    /// that the process can switch users (`privilege::switch_supervisor`) before
    /// [`Supervisor::start_workers`].
    pub fn bind(cfg: Config) -> io::Result<Supervisor> {
        let exe = std::env::current_exe()?;
        let poll = Poll::new()?;
        let signals = SignalPipe::install(&[
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
        ])?;
        poll.registry()
            .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)?;
        let (replay, layers) = start::replayed();
        let mut cfg = cfg;
        if !layers.set.is_empty() {
            // an upgrade: the listeners the old generation's `set`s made are bound here too
            if let Ok(c) = layers.load() {
                cfg.listeners = c.listeners;
            }
        }
        // Adopting a descriptor consumes its variable: the workers inherit none of them.
        let listeners = listeners::bind_all(&cfg)?;
        let plane = start::admin_plane(poll.registry(), &cfg, ADMIN_TOKENS)?;
        let clients = client_table(&cfg)?;
        let tell_ready = adopt_inherited(env::UPGRADE_FD)?.map(std::fs::File::from);
        start::say_starting(&cfg, &listeners)?;
        let mut resolver = resolve::Resolver::start(poll.registry(), RESOLVED)?;
        // At start, before any loop: the names of the configuration, resolved here once
        // and handed to every worker.
        resolver.resolve_now(&resolve::Resolver::names_of(&layers));
        resolver.every(cfg.resolve_interval_ms, 0);
        let mut s = Supervisor {
            poll,
            layers,
            exe,
            listeners,
            staged: None,
            plane,
            workers: Vec::new(),
            fanout: Fanout::default(),
            signals,
            clock: Instant::now(),
            replay,
            stopping: false,
            upgrade: None,
            tell_ready,
            restarts: 0,
            retired: false,
            serving: false,
            health: health::Checker::new(HEALTH_BASE),
            resolver,
            status: History::default(),
            clients,
            stuck_claims: Vec::new(),
            swept_ms: 0,
            cfg,
        };
        s.health.configure(&s.cfg, s.poll.registry(), 0);
        for line in s.replay.clone() {
            s.health.follow(&command::parse(&line), s.poll.registry());
        }
        if !s.layers.set.is_empty() {
            // an upgrade: the old generation's `set`s, log keys included, hold here too
            s.follow_log_keys(s.layers.clone());
        }
        Ok(s)
    }

    /// Starts one worker per listener.
    pub fn start_workers(&mut self) -> io::Result<()> {
        for i in 0..self.cfg.workers {
            self.workers.push(WorkerSlot::default());
            self.spawn(i)?;
        }
        Ok(())
    }

    /// The configuration it started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Starts worker `i` on its listener, with a fresh channel; then replays the runtime
    /// changes to it.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (spec, fds) = listeners::for_worker(&self.listeners, i);
        let (child, chan) = spawn::start(
            &self.exe,
            (i, self.cfg.workers),
            (&spec, &fds),
            self.clients.fd(),
            self.poll.registry(),
            Token(WORKER_BASE + i),
            &self.resolver.cache.encode(),
        )?;
        info!("worker started worker={i} pid={}", child.id());
        let now = self.now_ms();
        if let Some(slot) = self.workers.get_mut(i) {
            slot.started(child, chan, now);
        }
        for line in self.replay.clone() {
            self.send(i, &line, None);
        }
        for line in self.health.down_lines() {
            self.send(i, &line, None);
        }
        Ok(())
    }

    /// Sends a command line to worker `i`; its reply belongs to `request`.
    fn send(&mut self, i: usize, line: &str, request: Option<usize>) {
        let sent = self
            .workers
            .get_mut(i)
            .is_some_and(|w| w.send(line, request));
        if let (false, Some(r)) = (sent, request) {
            self.answer(r, i, None);
        }
    }

    /// Runs until every worker is gone after a drain, stop or upgrade. Log lines are
    /// buffered while it runs; what is left is written at the end, waiting
    /// [`logger::EXIT_FLUSH`] at most, and logging is direct again.
    pub fn run(&mut self) -> io::Result<()> {
        if let Err(e) = logger::set_buffered(true) {
            warn!(
                "log lines are written as they come, waiting for stderr error={}",
                Shown(&e)
            );
        }
        let result = self.supervise();
        logger::flush_blocking(Instant::now() + logger::EXIT_FLUSH);
        let _ = logger::set_buffered(false);
        result
    }

    fn supervise(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut flush_in = logger::flush(Instant::now());
        loop {
            let timeout = Some(flush_in.map_or(TICK, |d: Duration| d.min(TICK)));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(),
                    RESOLVED => self.on_resolved(),
                    UPGRADE => self.on_upgrade_pipe(),
                    t @ (CONTROL | METRICS) => self.on_admin(t),
                    Token(t) if t >= CLIENT_BASE => self.on_admin(Token(t)),
                    Token(t) if t >= WORKER_BASE => self.on_worker(t - WORKER_BASE),
                    t if self.health.owns(t) => self.on_health(Some(t)),
                    _ => {}
                }
            }
            self.on_health(None);
            self.refresh_names_due();
            self.reap();
            self.sweep_clients();
            self.respawn_due();
            self.check_upgrade();
            self.sample_status();
            flush_in = logger::flush(Instant::now());
            if self.stopping && self.workers.iter().all(|w| w.child.is_none()) {
                info!(
                    "every worker is gone, supervisor exiting pid={}",
                    std::process::id()
                );
                if !self.retired {
                    self.plane.close_control(self.poll.registry(), true);
                    if !self.cfg.pid_file.is_empty() {
                        let _ = std::fs::remove_file(&self.cfg.pid_file);
                    }
                }
                return Ok(());
            }
        }
    }

    fn on_signals(&mut self) {
        for s in self.signals.drain() {
            match s {
                libc::SIGCHLD => {}
                libc::SIGHUP => {
                    let names = resolve::Resolver::names_of(&self.layers);
                    if names.is_empty() {
                        self.on_sighup();
                    } else {
                        self.resolver.request(names, resolve::After::Sighup);
                    }
                }
                libc::SIGUSR1 => {
                    self.signal_workers(libc::SIGUSR1);
                    if let Err(e) = logger::reopen() {
                        warn!(
                            "log not reopened signal=SIGUSR1 target={} error={}",
                            Shown(&self.cfg.log_target),
                            Shown(&e)
                        );
                    }
                }
                libc::SIGTERM | libc::SIGINT => {
                    info!(
                        "stopping, workers drain then exit signal={}",
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
                        error!("upgrade not started, still serving error={}", Shown(&e));
                    }
                }
                other => warn!("signal ignored signal={other}"),
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
        for c in self.workers.iter().filter_map(|w| w.child.as_ref()) {
            let _ = crate::sys::process::kill(c.id(), sig);
        }
    }

    /// Collects exited workers; schedules respawns.
    fn reap(&mut self) {
        let now = self.now_ms();
        for i in 0..self.workers.len() {
            let Some(slot) = self.workers.get_mut(i) else {
                continue;
            };
            let Some(child) = slot.child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            let pid = child.id();
            let pending = slot.gone(self.poll.registry());
            let (given, _) = self.clients.sweep(Some(pid), None);
            if given > 0 {
                info!("client table given back sessions={given} worker={i} pid={pid}");
            }
            if self.stopping || status.success() {
                info!(
                    "worker exited worker={i} pid={pid} status={}",
                    Shown(&status)
                );
            } else {
                slot.failures = if now.saturating_sub(slot.started_ms) > HEALTHY_MS {
                    0
                } else {
                    slot.failures + 1
                };
                let delay = (BACKOFF_MS.0 << slot.failures.min(6)).min(BACKOFF_MS.1);
                slot.respawn_at = Some(now + delay);
                self.restarts += 1;
                warn!(
                    "worker died, respawning worker={i} pid={pid} status={} respawn_in_ms={delay} restarts={}",
                    Shown(&status),
                    self.restarts
                );
            }
            for r in pending {
                self.answer(r, i, None);
            }
        }
    }

    /// Every [`SWEEP_MS`]: gives back what the ledgers of workers gone unreaped by us list
    /// (an older generation's whose supervisor is gone) and frees claims left half-done.
    fn sweep_clients(&mut self) {
        let now = self.now_ms();
        if now < self.swept_ms + SWEEP_MS {
            return;
        }
        self.swept_ms = now;
        let (given, freed) = self.clients.sweep(None, Some(&mut self.stuck_claims));
        if given > 0 || freed > 0 {
            info!("client table swept sessions_given_back={given} claims_freed={freed}");
        }
    }

    fn respawn_due(&mut self) {
        if self.stopping {
            return;
        }
        let now = self.now_ms();
        for i in 0..self.workers.len() {
            let due = self
                .workers
                .get(i)
                .and_then(|w| w.respawn_at)
                .is_some_and(|t| now >= t);
            if due {
                if let Err(e) = self.spawn(i) {
                    error!("worker not started worker={i} error={}", Shown(&e));
                    if let Some(w) = self.workers.get_mut(i) {
                        w.respawn_at = Some(now + BACKOFF_MS.1);
                    }
                }
            }
        }
    }

    /// Messages (or EOF) on worker `i`'s channel.
    fn on_worker(&mut self, i: usize) {
        let Some(chan) = self.workers.get_mut(i).and_then(|w| w.chan.as_mut()) else {
            return;
        };
        chan.flush();
        for text in chan.messages() {
            let Some(slot) = self.workers.get_mut(i) else {
                return;
            };
            let waiting = slot.awaiting.pop_front().flatten();
            match channel::decode(&text) {
                Ok(Message::Ready) if !slot.ready => {
                    slot.ready = true;
                    self.on_worker_ready();
                }
                Ok(Message::Ready) => {}
                Ok(Message::Reply(reply)) => {
                    if let Some(r) = waiting {
                        self.answer(r, i, Some(reply));
                    }
                }
                Err(e) => {
                    warn!(
                        "unreadable message from a worker worker={i} error={}",
                        Shown(&e)
                    );
                    if let Some(r) = waiting {
                        let e = Reply::Error(format!("unreadable reply: {e}"));
                        self.answer(r, i, Some(e));
                    }
                }
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
                    warn!(
                        "pid file not written path={} error={}",
                        Value::str(&self.cfg.pid_file),
                        Shown(&e)
                    );
                }
            }
            if let Some(mut f) = self.tell_ready.take() {
                // systemd hears the main process only (NotifyAccess=main): the old
                // supervisor names this one as the new main process.
                let _ = f.write_all(b"ready\n");
                info!(
                    "every worker is ready, told the old supervisor pid={}",
                    std::process::id()
                );
            } else {
                notify::sd_notify(&format!("READY=1\nMAINPID={pid}"));
            }
        }
    }

    /// Readiness on the admin plane: `upgrade` is answered here; every other command and
    /// every scrape goes to all workers (`drain` also stops respawns first).
    fn on_admin(&mut self, token: Token) {
        let Some(Requests { conn, requests, .. }) =
            self.plane.on_event(self.poll.registry(), token)
        else {
            return;
        };
        for request in requests {
            match request {
                Request::Scrape => self.fan_out(Asker::Scrape(conn), "metrics"),
                Request::Status => self.fan_out(Asker::Status(conn), "metrics"),
                Request::Line(line) => {
                    match line.and_then(|l| command::parse(&l).map(|c| (l, c))) {
                        Err(e) => self.plane.reply(conn, &format!("error: {e}")),
                        Ok((_, Command::Upgrade)) => {
                            let r = match self.start_upgrade() {
                            Ok(pid) => format!("ok: upgrade started: new supervisor pid {pid}; the old workers drain once it is ready"),
                            Err(e) => format!("error: upgrade not started: {e}; still serving"),
                        };
                            self.plane.reply(conn, &r);
                        }
                        Ok((line, Command::ShowClients | Command::Forget(_))) => {
                            self.ask_one(conn, &line)
                        }
                        Ok((_, Command::Listen(_) | Command::Unlisten(_))) => self.plane.reply(
                            conn,
                            "error: listen and unlisten are the supervisor's own, to its workers",
                        ),
                        Ok((line, cmd)) => {
                            if cmd == Command::Drain {
                                self.stop();
                            }
                            // The names a new configuration needs are resolved off the
                            // loop first; the workers then load it without resolving.
                            let names = resolve::Resolver::names_for(&cmd, &self.layers);
                            if names.is_empty() {
                                self.dispatch(conn, &line);
                            } else {
                                let after = resolve::After::Command { conn, line };
                                self.resolver.request(names, after);
                            }
                        }
                    }
                }
            }
        }
        let busy = self.fanout.busy(conn) || self.resolver.holds(conn);
        self.plane.flush(self.poll.registry(), conn, busy);
    }

    /// SIGHUP, its names known: new listeners' sockets go to the workers first (a worker
    /// serves them whichever of socket and signal it reads first; our copies of removed ones
    /// close), then the workers reload, the supervisor follows.
    fn on_sighup(&mut self) {
        let staged = match self.staged {
            Some(_) => Err("a listener change is being applied".to_string()),
            None => listeners::stage_from(
                &self.layers,
                &self.resolver.cache,
                &self.listeners,
                &mut self.workers,
            ),
        };
        match staged {
            Ok(Some(staged)) => listeners::commit(&mut self.listeners, staged),
            Ok(None) => {}
            Err(e) => {
                // A listener that cannot be bound: nothing of the reload applies.
                error!(
                    "reload refused, the old config stays signal=SIGHUP error={}",
                    Value::str(&e)
                );
                return;
            }
        }
        self.signal_workers(libc::SIGHUP);
        self.follow_log_keys(self.layers.clone());
        self.configure_checks();
    }

    /// The resolver thread answered: the workers get the addresses first, then what
    /// waited for them goes on.
    fn on_resolved(&mut self) {
        for done in self.resolver.finished() {
            if !done.changed.is_empty() {
                let line = format!("names {}", done.changed.encode());
                for i in 0..self.workers.len() {
                    self.send(i, &line, None);
                }
            }
            match done.after {
                resolve::After::Command { conn, line } => {
                    self.dispatch(conn, &line);
                    let busy = self.fanout.busy(conn) || self.resolver.holds(conn);
                    self.plane.flush(self.poll.registry(), conn, busy);
                }
                resolve::After::Sighup => self.on_sighup(),
                resolve::After::Refresh if !done.changed.is_empty() => {
                    info!(
                        "upstream addresses changed, for new sessions names={}",
                        Value::str(&done.changed.encode())
                    );
                    self.configure_checks();
                }
                resolve::After::Refresh => {}
            }
        }
    }

    /// Every ENVOY_RESOLVE_INTERVAL_MS, the configuration's names again.
    fn refresh_names_due(&mut self) {
        let now = self.now_ms();
        self.resolver.refresh_if_due(&self.layers, now);
    }

    /// A control command whose names are known: `set` and `reload` may change listeners.
    fn dispatch(&mut self, conn: ConnId, line: &str) {
        match command::parse(line) {
            Ok(cmd @ (Command::Set(..) | Command::Reload)) => self.change_config(conn, line, &cmd),
            _ => self.fan_out(Asker::Control(conn), line),
        }
    }

    /// `set` or `reload`: the listeners it adds are bound and handed to the workers before
    /// the line goes to them (all or nothing); committed once they all applied it.
    fn change_config(&mut self, conn: ConnId, line: &str, cmd: &Command) {
        let layers = match cmd {
            Command::Set(k, v) => self.layers.with_set(k, v).ok(),
            _ => Some(self.layers.clone()),
        };
        let staged = match layers {
            _ if self.staged.is_some() => Err("a listener change is being applied".into()),
            Some(l) => {
                listeners::stage_from(&l, &self.resolver.cache, &self.listeners, &mut self.workers)
            }
            None => Ok(None),
        };
        match staged {
            Ok(staged) => self.fan_out_staged(Asker::Control(conn), line, staged),
            Err(e) => self
                .plane
                .reply(conn, &format!("error: {e}; nothing changed")),
        }
    }

    fn fan_out(&mut self, asker: Asker, line: &str) {
        self.fan_out_staged(asker, line, None);
    }

    fn fan_out_staged(&mut self, asker: Asker, line: &str, st: Option<Staged>) {
        let n = self.workers.len();
        let r = self.fanout.open(asker, line, n);
        self.staged = st.map(|s| (r, s)).or(self.staged.take());
        for i in 0..n {
            self.send(i, line, Some(r));
        }
    }

    /// Asks one worker (the first with a channel): the client table is the same for all.
    fn ask_one(&mut self, client: ConnId, line: &str) {
        let n = self.workers.len();
        let r = self.fanout.open_one(client, line, n);
        let first = self.workers.iter().position(|w| w.chan.is_some());
        self.send(first.unwrap_or(0), line, Some(r));
    }

    /// Worker `i`'s reply to request `r` (`None`: none will come); delivers the merged answer
    /// once it is complete.
    fn answer(&mut self, r: usize, i: usize, reply: Option<Reply>) {
        let Some(Answered {
            asker,
            line,
            replies,
            mut merged,
        }) = self.fanout.reply(r, i, reply)
        else {
            return;
        };
        merged.add_report(&Report::of_supervisor(&Supervision {
            workers: replies as u64,
            restarts: self.restarts,
            process: Process::this(self.clock),
            log: logger::counters(),
        }));
        if self.staged.as_ref().is_some_and(|(s, _)| *s == r) {
            if let Some((_, staged)) = self.staged.take() {
                if merged.is_ok() {
                    listeners::commit(&mut self.listeners, staged);
                } else {
                    listeners::take_back(&staged.added, &mut self.workers);
                }
            }
        }
        let command = command::parse(&line);
        if command == Ok(Command::ReopenLogs) {
            let target = &self.cfg.log_target;
            merged.add_reopened(logger::reopen().map_err(|e| format!("{target}: {e}")));
        }
        let client = match asker {
            Asker::Sample | Asker::Status(_) => {
                let now_ms = self.now_ms();
                if let Merged::One(Reply::Metrics(report)) = &merged {
                    self.status.record(now_ms, report);
                }
                let Asker::Status(client) = asker else { return };
                if let Merged::One(Reply::Metrics(report)) = &merged {
                    let json = self.status.json(now_ms, report);
                    self.plane.reply_status(client, &json);
                } else {
                    self.plane.reply_status(client, "{}");
                }
                client
            }
            Asker::Scrape(client) => {
                self.plane.reply_scrape(client, &merged.render());
                client
            }
            Asker::Control(client) => {
                if merged.is_ok() {
                    self.health.follow(&command, self.poll.registry());
                    self.follow(command);
                }
                if merged.is_ok() && is_replayed(&line) {
                    self.replay.push(line);
                }
                self.plane.reply(client, &merged.render());
                client
            }
        };
        let busy = self.fanout.busy(client) || self.resolver.holds(client);
        self.plane.flush(self.poll.registry(), client, busy);
    }

    /// Asks the workers for a report for the status page's history, every
    /// `status::SAMPLE_MS` while metrics are served (the page then shows the last minutes as
    /// soon as it opens, and its rates are over real seconds).
    fn sample_status(&mut self) {
        let serving_metrics = self.plane.listener_fds().1.is_some();
        if !serving_metrics
            || self.stopping
            || self.fanout.sampling()
            || !self.status.due(self.now_ms())
            || self.workers.is_empty()
        {
            return;
        }
        self.fan_out(Asker::Sample, "metrics");
    }

    /// Keeps the `set`s the workers accepted; one that may change a log key (or a reload)
    /// is applied to the supervisor itself.
    fn follow(&mut self, command: Result<Command, String>) {
        let (key, value) = match command {
            Ok(Command::Set(k, v)) => (k, v),
            Ok(Command::SetLogLevel(level)) => (
                "ENVOY_LOG_LEVEL".to_string(),
                level.to_string().to_ascii_lowercase(),
            ),
            Ok(Command::Reload) => {
                self.follow_log_keys(self.layers.clone());
                return self.configure_checks();
            }
            _ => return,
        };
        let Ok(layers) = self.layers.with_set(&key, &value) else {
            return;
        };
        match key.as_str() {
            "ENVOY_LOG_LEVEL" | "ENVOY_LOG_TARGET" | "ENVOY_LOG_FACILITY" | "ENVOY_CONFIG_FILE" => {
                self.follow_log_keys(layers)
            }
            _ => self.layers = layers,
        }
        self.configure_checks();
    }

    /// The checks of the configuration the workers now have (loaded again here: the
    /// supervisor keeps only the layers).
    fn configure_checks(&mut self) {
        match self.layers.load_with(&self.resolver.cache) {
            Ok(cfg) => {
                let now = self.now_ms();
                self.health.configure(&cfg, self.poll.registry(), now);
                self.resolver.every(cfg.resolve_interval_ms, now);
            }
            Err(e) => warn!("health checks stay as they were error={}", Shown(&e)),
        }
    }

    /// Moves the health checks on (`token`: a probe's readiness); a changed verdict goes to
    /// every worker.
    fn on_health(&mut self, token: Option<Token>) {
        let now = self.now_ms();
        for (name, up) in self.health.run(self.poll.registry(), token, now) {
            let health = if up { "up" } else { "down" };
            info!(
                "upstream health changed upstream={} health={health}",
                Value::str(&name)
            );
            let line = format!("health {name} {health}");
            for i in 0..self.workers.len() {
                self.send(i, &line, None);
            }
        }
    }

    /// Takes `layers` (the workers accepted them) and applies what they say of the log to
    /// the supervisor itself: level, target, facility. A new target is opened before the old
    /// one is let go; if it cannot be, the supervisor keeps logging where it did.
    fn follow_log_keys(&mut self, layers: Layers) {
        let cfg = match layers.load_with(&self.resolver.cache) {
            Ok(c) => c,
            Err(e) => return warn!("the log keys stay as they were error={}", Shown(&e)),
        };
        self.layers = layers;
        log::set_max_level(cfg.log_level);
        self.cfg.log_level = cfg.log_level;
        if (&cfg.log_target, cfg.log_facility) == (&self.cfg.log_target, self.cfg.log_facility) {
            return;
        }
        match logger::Sink::open(&cfg.log_target, cfg.log_facility) {
            Ok(sink) => {
                info!(
                    "log lines go to a new target target={}",
                    Shown(&cfg.log_target)
                );
                logger::global().set_sink(sink);
                self.cfg.log_target = cfg.log_target;
                self.cfg.log_facility = cfg.log_facility;
            }
            Err(e) => error!(
                "log target refused, logging to the old one still target={} error={} old={}",
                Shown(&cfg.log_target),
                Shown(&e),
                Shown(&self.cfg.log_target)
            ),
        }
    }

    /// Starts the binary now on disk as a new supervisor holding every listening socket.
    fn start_upgrade(&mut self) -> io::Result<u32> {
        if self.upgrade.is_some() {
            return Err(io::Error::other("an upgrade is already running"));
        }
        let (control, metrics) = self.plane.listener_fds();
        let fds = listeners::all_fds(&self.listeners);
        let handoff = Handoff {
            exe: &self.exe,
            listeners: &fds,
            control,
            metrics,
            replay: &self.replay,
            client_table: self.clients.fd(),
        };
        let deadline = self.now_ms() + UPGRADE_TIMEOUT_MS;
        let up = Upgrade::start(&handoff, self.poll.registry(), UPGRADE, deadline)?;
        let pid = up.pid();
        info!(
            "upgrade started, waiting for its workers exe={} pid={pid}",
            Shown(self.exe.display())
        );
        self.upgrade = Some(up);
        Ok(pid)
    }

    fn on_upgrade_pipe(&mut self) {
        let Some(up) = self.upgrade.as_mut() else {
            return;
        };
        if up.on_pipe(self.poll.registry()) == PipeNews::Ready {
            info!(
                "upgrade done, old workers stop accepting and drain new_pid={}",
                up.pid()
            );
            notify::sd_notify(&format!("MAINPID={}", up.pid()));
            self.retire();
        }
    }

    fn check_upgrade(&mut self) {
        let now = self.now_ms();
        let Some(why) = self.upgrade.as_mut().and_then(|up| up.failure(now)) else {
            return;
        };
        if let Some(up) = self.upgrade.take() {
            up.abandon(self.poll.registry());
            error!(
                "upgrade failed, the old binary keeps serving error={}",
                Shown(&why)
            );
        }
    }

    /// After a successful upgrade: let go of every socket, drain the workers, exit.
    fn retire(&mut self) {
        if let Some(up) = self.upgrade.take() {
            up.finish(self.poll.registry());
        }
        // The control socket's path now belongs to the successor: not removed.
        self.plane.close_control(self.poll.registry(), false);
        self.plane.close_metrics(self.poll.registry());
        self.listeners.clear(); // our copies only; the successor holds the sockets
        self.stopping = true;
        self.retired = true;
        self.signal_workers(libc::SIGTERM);
    }
}
