//! Live operations on a running worker: signals, reload, the control socket's commands,
//! `/metrics`, trace rules and capture. Everything here runs on the loop and is bounded; file
//! reads happen only on reload (an operator's action), never per session. A command's answer
//! is a typed [`Reply`]: rendered as text for a person, or written in the channel's line
//! format for the supervisor, which merges every worker's.

use std::fmt::Write as _;
use std::io;
use std::rc::Rc;

use log::{info, warn};
use mio::Token;

use crate::admin::capture::Capture;
use crate::admin::channel;
use crate::admin::command::{self, Command};
use crate::admin::conn::Peer;
use crate::admin::metrics;
use crate::admin::plane::{Request, Requests};
use crate::admin::reply::{Applied, Reply};
use crate::admin::report::{Gauges, Process, Report, STATES};
use crate::admin::trace::TraceRule;

use crate::config::{Config, Layers};
use crate::limits::{self, policy::EVERY_ROUTE};
use crate::logfmt::{OrDash, Shown, Value};
use crate::logger;
use crate::worker::stats::CloseReason;
use crate::worker::Worker;

impl Worker {
    /// Handles every signal that arrived.
    pub(crate) fn on_signals(&mut self) {
        for s in self.signals.drain() {
            match s {
                libc::SIGHUP => match self.reload(self.layers.clone()) {
                    Ok(a) => info!(
                        "config applied to new sessions signal=SIGHUP routes={} upstream={} running_sessions={}",
                        a.routes,
                        Value::str(&a.upstream),
                        a.running
                    ),
                    Err(e) => warn!(
                        "reload refused, the old config stays signal=SIGHUP error={}",
                        Value::str(&e)
                    ),
                },
                libc::SIGUSR1 => {
                    if let Err(e) = logger::reopen() {
                        warn!(
                            "log not reopened signal=SIGUSR1 target={} error={}",
                            Shown(&self.cfg.log_target),
                            Shown(&e)
                        );
                    }
                }
                libc::SIGTERM => self.start_drain(self.cfg.drain_timeout_ms),
                libc::SIGINT => self.start_drain(self.cfg.drain_timeout_ms.min(1000)),
                other => warn!("signal ignored signal={other}"),
            }
        }
    }

    /// Loads `layers` whole and applies the result to new sessions, or changes nothing.
    pub(crate) fn reload(&mut self, layers: Layers) -> Result<Applied, String> {
        // Never a resolver on the loop: supervised, the supervisor resolved every name first;
        // a lone worker has the answers of its start (`cli::names_in`), and a name it has
        // not seen is refused (see README, Upstreams).
        let names = &self.names;
        let applied = layers
            .load_with(names)
            .map_err(|e| e.to_string())
            .and_then(|cfg| self.apply(cfg));
        if let Err(e) = applied {
            self.stats.reloads.failure += 1;
            return Err(e);
        }
        self.stats.reloads.success += 1;
        self.layers = layers;
        Ok(Applied {
            routes: self.cfg.routes.len() as u64,
            upstream: self.cfg.upstream_names(),
            running: self.sessions.len() as u64,
        })
    }

    /// The configuration again with the addresses `names` now holds for its upstreams'
    /// names, for new sessions (running ones keep theirs); how many upstreams changed.
    fn take_new_addresses(&mut self) -> Result<usize, String> {
        let mut cfg = (*self.cfg).clone();
        let mut changed = 0;
        let members = cfg
            .routes
            .iter_mut()
            .flat_map(|r| r.pool.members.iter_mut())
            .chain(cfg.default_route.pool.members.iter_mut())
            .chain(cfg.upstream.iter_mut());
        for u in members {
            if let Some(addrs) = self.names.get(&u.name).filter(|_| u.is_name()) {
                if addrs != u.addrs.as_slice() {
                    u.addrs = addrs.to_vec();
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.apply(cfg)?;
        }
        Ok(changed)
    }

    /// Switches to `cfg`: rebinds what moved, resizes the pool, sets the log level and
    /// target.
    fn apply(&mut self, mut cfg: Config) -> Result<(), String> {
        let old = Rc::clone(&self.cfg);
        if let Some(key) = old.start_only_change(&cfg) {
            // Who the processes are and their limits were set before they served.
            return Err(format!(
                "{key} is applied at start only (it names who the processes are or their \
                 limits); restart sluice to change it"
            ));
        }
        // A new log target is opened before anything changes: if it cannot be, nothing does.
        let log_sink = if (&cfg.log_target, cfg.log_facility) != (&old.log_target, old.log_facility)
        {
            let sink = logger::Sink::open(&cfg.log_target, cfg.log_facility)
                .map_err(|e| format!("ENVOY_LOG_TARGET {}: {e}", cfg.log_target))?;
            Some(sink)
        } else {
            None
        };
        if cfg.clients.table_size != self.clients.capacity() {
            // The table is one piece of memory every worker maps: it cannot grow under them.
            return Err(format!(
                "ENVOY_CLIENT_TABLE_SIZE {} -> {}: the client table is memory every worker \
                 shares, made at start; a new size takes an upgrade (sluice ctl upgrade) or a restart",
                self.clients.capacity(),
                cfg.clients.table_size
            ));
        }
        // The pools' and routes' slots first: each listener's configuration is made from
        // this one. (A failure below leaves only entries no session reaches.)
        self.upstreams.take(&mut cfg);
        self.stats.take_in(&mut cfg);
        // Bind (alone) or take up the new listeners: a failure leaves everything as it was.
        self.serve_listeners(&cfg).map_err(|e| e.to_string())?;
        self.open_admin_listeners(&cfg).map_err(|e| e.to_string())?;
        if cfg.capture_dir != old.capture_dir {
            self.capture = self.start_capture(&cfg).map_err(|e| e.to_string())?;
        }
        self.pool.reconfigure(cfg.buffer_size, cfg.max_sessions * 3);
        self.pipes.set_limit(cfg.splice_pipes);
        log::set_max_level(cfg.log_level);
        if let Some(sink) = log_sink {
            info!(
                "log lines go to a new target target={}",
                Shown(&cfg.log_target)
            );
            logger::global().set_sink(sink);
        }
        self.cfg = Rc::new(cfg);
        Ok(())
    }

    /// Serves the control socket and metrics listener `cfg` names (rebinding what changed).
    /// A supervised worker serves neither: the supervisor owns both and asks over the channel.
    pub(crate) fn open_admin_listeners(&mut self, cfg: &Config) -> io::Result<()> {
        if self.supervised {
            return Ok(());
        }
        let registry = self.poll.registry();
        self.plane.set_control(registry, &cfg.control_socket)?;
        self.plane.set_metrics(registry, cfg.metrics_addr)
    }

    pub(crate) fn start_capture(&self, cfg: &Config) -> io::Result<Option<Capture>> {
        if cfg.capture_dir.is_empty() {
            return Ok(None);
        }
        Capture::start(
            &cfg.capture_dir,
            cfg.capture_max_files,
            cfg.capture_max_bytes,
        )
        .map(Some)
    }

    /// Readiness on one of the admin plane's tokens: every request it brought is answered
    /// at once.
    pub(crate) fn on_admin(&mut self, token: Token) {
        let Some(Requests {
            conn,
            peer,
            requests,
        }) = self.plane.on_event(self.poll.registry(), token)
        else {
            return;
        };
        for request in requests {
            match request {
                Request::Scrape => {
                    let body = metrics::render(&self.report());
                    self.plane.reply_scrape(conn, &body);
                }
                Request::Status => {
                    // a lone worker samples when asked: the page's polls make its history
                    let report = self.report();
                    let json = self.status.json(self.now_ms, &report);
                    self.status.record(self.now_ms, &report);
                    self.plane.reply_status(conn, &json);
                }
                Request::Line(line) => {
                    let reply = match line.and_then(|l| command::parse(&l)) {
                        Ok(Command::Listen(addr)) if peer == Peer::Supervisor => {
                            let fd = self.plane.take_fd(conn);
                            self.take_listener(addr, fd)
                        }
                        Ok(Command::Unlisten(addr)) if peer == Peer::Supervisor => {
                            self.drop_listener(addr)
                        }
                        Ok(cmd) => self.execute(cmd),
                        Err(e) => Reply::Error(e),
                    };
                    let text = match peer {
                        Peer::Supervisor => channel::encode(&reply),
                        Peer::Control | Peer::Scrape => reply.render(),
                    };
                    self.plane.reply(conn, &text);
                }
            }
        }
        self.plane.flush(self.poll.registry(), conn, false);
    }

    /// This worker's counters and gauges now.
    fn report(&self) -> Report {
        Report::of_worker(&self.stats, &self.gauges())
    }

    fn gauges(&self) -> Gauges {
        let mut g = Gauges {
            buffers_in_use: self.pool.lent() as u64,
            buffer_size: self.pool.size() as u64,
            draining: self.drain_deadline.is_some(),
            splice_pipes_in_use: self.pipes.lent() as u64,
            captures: self.capture.as_ref().map(|c| (c.queued, c.dropped)),
            log: logger::counters(),
            traces: self
                .traces
                .iter()
                .map(TraceRule::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            process: Process::this(self.clock),
            upstreams: self.upstreams.members().to_vec(),
            now_ms: self.now_ms,
            worker: self.index,
            descriptors: (
                crate::sys::rlimit::open_descriptors(),
                crate::sys::rlimit::open_files().map(|n| n as u64),
            ),
            route_sessions: vec![0; self.stats.routes.names.len()],
            route_live_bytes: vec![(0, 0); self.stats.routes.names.len()],
            routes_in_force: self
                .cfg
                .routes
                .iter()
                .chain(std::iter::once(&self.cfg.default_route))
                .map(|r| {
                    let ups = r.pool.members.iter().map(|u| u.name.clone()).collect();
                    (r.name.clone(), ups)
                })
                .collect(),
            client_table: (self.clients.entries(), self.clients.capacity() as u64),
            ..Gauges::default()
        };
        for (_, s) in self.sessions.iter() {
            if let Some(i) = s.route_slot() {
                if let Some(n) = g.route_sessions.get_mut(i) {
                    *n += 1;
                }
                if let Some(b) = g.route_live_bytes.get_mut(i) {
                    let (up, down) = s.bytes();
                    *b = (b.0 + up, b.1 + down);
                }
            }
            if let Some(i) = STATES.iter().position(|st| *st == s.state()) {
                if let Some(n) = g.sessions_by_state.get_mut(i) {
                    *n += 1;
                }
            }
        }
        g
    }

    /// The rows of `show sessions`.
    fn session_rows(&self) -> Vec<String> {
        let mut rows = Vec::with_capacity(self.sessions.len());
        for (_, s) in self.sessions.iter() {
            let (up, down) = s.bytes();
            let mut row = String::new();
            let _ = write!(
                row,
                "{} {} {} {} {} {} {} {} {} {} {} {}",
                s.id(),
                s.state(),
                s.client_label(),
                OrDash(s.facts().sni.as_bytes()),
                OrDash(s.facts().host.as_bytes()),
                OrDash(s.route_name().as_bytes()),
                s.upstream_label(),
                up,
                down,
                s.age_ms(self.now_ms),
                if s.traced() { "yes" } else { "no" },
                Value::str(s.config().listener_name())
            );
            rows.push(row);
        }
        rows
    }

    /// `show clients`: the top clients of the machine's table, named by route.
    fn show_clients(&self) -> String {
        let routes: Vec<(u64, String)> = self
            .cfg
            .routes
            .iter()
            .filter_map(|r| r.limited.map(|l| (l.limit.scope, r.to_string())))
            .collect();
        let label = |scope: u64| {
            if scope == EVERY_ROUTE {
                return "all".to_string();
            }
            routes
                .iter()
                .find(|(s, _)| *s == scope)
                .map_or_else(|| format!("{scope:016x}"), |(_, r)| r.clone())
        };
        limits::show_clients(
            self.clients.rows(self.now_ms),
            label,
            self.clients.entries(),
            self.clients.capacity(),
        )
    }

    /// Runs one control command.
    pub(crate) fn execute(&mut self, cmd: Command) -> Reply {
        match cmd {
            Command::Help => Reply::Text(command::HELP.to_string()),
            Command::ShowConfig => {
                let mut o = String::new();
                for (k, v, src) in &self.cfg.entries {
                    let _ = writeln!(o, "{k}={v} ({src})");
                }
                Reply::Text(o)
            }
            Command::Set(key, value) => match self.layers.with_set(&key, &value) {
                Ok(layers) => match self.reload(layers) {
                    Ok(applied) => Reply::Applied {
                        key: Some(key),
                        applied,
                    },
                    Err(e) => Reply::Error(format!("{e}; nothing changed")),
                },
                Err(e) => Reply::Error(format!("{e}; nothing changed")),
            },
            Command::SetLogLevel(level) => {
                let value = level.to_string().to_ascii_lowercase();
                match self.layers.with_set("ENVOY_LOG_LEVEL", &value) {
                    Ok(layers) => match self.reload(layers) {
                        Ok(_) => Reply::Text(format!("ok: log level {value}")),
                        Err(e) => Reply::Error(e),
                    },
                    Err(e) => Reply::Error(e.to_string()),
                }
            }
            Command::Reload => match self.reload(self.layers.clone()) {
                Ok(applied) => Reply::Applied { key: None, applied },
                Err(e) => Reply::Error(format!("reload refused, the old config stays: {e}")),
            },
            Command::ShowSessions => Reply::Sessions(self.session_rows()),
            Command::ShowListeners => Reply::Listeners(self.listener_rows()),
            Command::Listen(addr) | Command::Unlisten(addr) => Reply::Error(format!(
                "{addr}: only the supervisor hands sockets to a worker and takes them back"
            )),
            Command::ShowStats => Reply::Stats(self.report()),
            Command::ShowClients => Reply::Text(self.show_clients()),
            Command::Forget(cidr) => {
                let f = self.clients.forget(&cidr);
                Reply::Text(format!(
                    "ok: forgot {} client entr{} in {cidr}: {} dropped (no session running), \
                     {} running session(s) still counted until they end",
                    f.reset,
                    if f.reset == 1 { "y" } else { "ies" },
                    f.dropped,
                    f.running
                ))
            }
            Command::Metrics => Reply::Metrics(self.report()),
            Command::ShowUpstreams => Reply::Upstreams(self.report()),
            Command::Names(names) => {
                self.names.merge(&names);
                match self.take_new_addresses() {
                    Ok(n) => Reply::Text(format!("ok: {n} upstream(s) with new addresses")),
                    Err(e) => Reply::Error(e),
                }
            }
            Command::Health(name, up) => {
                if self.upstreams.set_check(&name, up) {
                    Reply::Text(format!(
                        "ok: upstream {name} {}",
                        if up { "up" } else { "down" }
                    ))
                } else {
                    Reply::Error(format!("no upstream {name} in the configuration"))
                }
            }
            Command::SetUpstream(name, state) => {
                if self.upstreams.set_admin(&name, state) {
                    Reply::Text(format!("ok: upstream {name} {}", state.as_str()))
                } else {
                    Reply::Error(format!(
                        "no upstream {name} in the configuration (show upstreams lists them)"
                    ))
                }
            }
            Command::Trace(rule) => {
                let mut n = 0;
                for (_, s) in self.sessions.iter_mut() {
                    if s.selected_by(&rule) {
                        s.set_traced(true);
                        n += 1;
                    }
                }
                let reply = Reply::Traced {
                    rule: rule.to_string(),
                    sessions: n,
                };
                if !self.traces.contains(&rule) {
                    self.traces.push(rule);
                }
                reply
            }
            Command::Untrace(rule) => {
                let before = self.traces.len();
                match &rule {
                    Some(r) => self.traces.retain(|t| t != r),
                    None => self.traces.clear(),
                }
                for (_, s) in self.sessions.iter_mut() {
                    let keep = self.traces.iter().any(|t| s.selected_by(t));
                    if !keep && rule.as_ref().is_none_or(|r| s.selected_by(r)) {
                        s.set_traced(false);
                    }
                }
                Reply::Text(format!(
                    "ok: {} trace rule(s) removed",
                    before - self.traces.len()
                ))
            }
            Command::Kill(id) => {
                let key = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.id() == id)
                    .map(|(k, _)| k);
                if let Some(k) = key {
                    self.close(k, CloseReason::Killed);
                }
                Reply::Killed {
                    id,
                    found: key.is_some(),
                }
            }
            Command::Drain => {
                self.start_drain(self.cfg.drain_timeout_ms);
                Reply::Draining {
                    sessions: self.sessions.len() as u64,
                    deadline_ms: self.cfg.drain_timeout_ms,
                }
            }
            Command::ReopenLogs => match logger::reopen() {
                Ok(()) => Reply::Reopened {
                    target: self.cfg.log_target.to_string(),
                    processes: 1,
                },
                Err(e) => Reply::Error(format!("{} not reopened: {e}", self.cfg.log_target)),
            },
            Command::Upgrade => {
                Reply::Error("upgrade is the supervisor's (sluice run starts one)".to_string())
            }
        }
    }
}
