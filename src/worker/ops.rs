//! Live operations on a running worker: signals, reload, the control socket's commands,
//! `/metrics`, trace rules and capture. Everything here runs on the loop and is bounded; file
//! reads happen only on reload (an operator's action), never per session.

use std::fmt::Write as _;
use std::io;
use std::rc::Rc;

use log::{info, warn};
use mio::net::{TcpListener, UnixListener};
use mio::Interest;
use mio::Token;

use crate::admin::capture::Capture;
use crate::admin::command::{self, Command};
use crate::admin::conn::{AdminConn, AdminStream};
use crate::admin::metrics::{self, Gauges};
use crate::admin::trace::TraceRule;
use crate::config::{Config, Layers};
use crate::net;
use crate::wire::http;
use crate::wire::Parsed;
use crate::worker::stats::CloseReason;
use crate::worker::{Worker, ADMIN_BASE, CONTROL, LISTENER, METRICS};

impl Worker {
    /// Handles every signal that arrived.
    pub(crate) fn on_signals(&mut self) {
        for s in self.signals.drain() {
            match s {
                libc::SIGHUP => match self.reload(self.layers.clone()) {
                    Ok(msg) => info!("SIGHUP: {msg}"),
                    Err(e) => warn!("SIGHUP: reload refused, the old config stays: {e}"),
                },
                libc::SIGTERM => self.start_drain(self.cfg.drain_timeout_ms),
                libc::SIGINT => self.start_drain(self.cfg.drain_timeout_ms.min(1000)),
                other => warn!("signal {other} ignored"),
            }
        }
    }

    /// Loads `layers` whole and applies the result to new sessions, or changes nothing.
    pub(crate) fn reload(&mut self, layers: Layers) -> Result<String, String> {
        let cfg = layers.load().map_err(|e| e.to_string())?;
        self.apply(cfg)?;
        self.layers = layers;
        Ok(format!(
            "config applied to new sessions ({} route(s), upstream {}); {} running session(s) keep theirs",
            self.cfg.routes.len(),
            self.cfg.upstream.name,
            self.sessions.len()
        ))
    }

    /// Switches to `cfg`: rebinds what moved, resizes the pool, sets the log level.
    fn apply(&mut self, cfg: Config) -> Result<(), String> {
        let old = Rc::clone(&self.cfg);
        if cfg.listen_addr() != old.listen_addr() && self.supervised {
            // The supervisor owns the listeners (so no worker change can close one under
            // queued connections); a new address is bound by an upgrade, which hands over.
            return Err(format!(
                "ENVOY_IP/ENVOY_PORT {} -> {}: the listening sockets belong to the supervisor; \
                 apply the new address with an upgrade (kill -USR2 <supervisor> or `sluice ctl upgrade`)",
                old.listen_addr(),
                cfg.listen_addr()
            ));
        }
        if cfg.listen_addr() != old.listen_addr() && self.listener.is_some() {
            // Bind the new address first: a failure leaves everything as it was.
            let mut l = net::listen(cfg.listen_addr(), cfg.backlog)
                .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen_addr()))?;
            self.poll
                .registry()
                .register(&mut l, LISTENER, Interest::READABLE)
                .map_err(|e| e.to_string())?;
            if let Some(mut old_l) = self.listener.replace(l) {
                let _ = self.poll.registry().deregister(&mut old_l);
            }
            info!(
                "now listening on {} (was {})",
                cfg.listen_addr(),
                old.listen_addr()
            );
        }
        self.open_admin_listeners(Some(&old), &cfg)
            .map_err(|e| e.to_string())?;
        if cfg.capture_dir != old.capture_dir {
            self.capture = self.start_capture(&cfg).map_err(|e| e.to_string())?;
        }
        self.pool.reconfigure(cfg.buffer_size, cfg.max_sessions * 3);
        self.pipes.set_limit(cfg.splice_pipes);
        log::set_max_level(cfg.log_level);
        self.cfg = Rc::new(cfg);
        Ok(())
    }

    /// Opens the control socket and metrics listener named in `new` (if they changed).
    pub(crate) fn open_admin_listeners(
        &mut self,
        old: Option<&Config>,
        new: &Config,
    ) -> io::Result<()> {
        if old.is_none_or(|o| o.control_socket != new.control_socket) {
            self.remove_control_socket();
            if !new.control_socket.is_empty() {
                let mut l = bind_unix_0600(&new.control_socket)?;
                self.poll
                    .registry()
                    .register(&mut l, CONTROL, Interest::READABLE)?;
                self.control = Some((l, new.control_socket.clone()));
            }
        }
        if old.is_none_or(|o| o.metrics_addr != new.metrics_addr) {
            if let Some(mut m) = self.metrics.take() {
                let _ = self.poll.registry().deregister(&mut m);
            }
            if let Some(addr) = new.metrics_addr {
                let mut l = TcpListener::bind(addr)?;
                self.poll
                    .registry()
                    .register(&mut l, METRICS, Interest::READABLE)?;
                info!("metrics on http://{}/metrics", l.local_addr()?);
                self.metrics = Some(l);
            }
        }
        Ok(())
    }

    /// Removes the control socket file, if this worker made one.
    pub(crate) fn remove_control_socket(&mut self) {
        if let Some((mut l, path)) = self.control.take() {
            let _ = self.poll.registry().deregister(&mut l);
            let _ = std::fs::remove_file(path);
        }
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

    pub(crate) fn accept_control(&mut self) {
        loop {
            let Some((l, _)) = self.control.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, _)) => self.add_admin(AdminStream::Unix(s)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("control accept: {e}");
                    return;
                }
            }
        }
    }

    pub(crate) fn accept_metrics(&mut self) {
        loop {
            let Some(l) = self.metrics.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, _)) => self.add_admin(AdminStream::Tcp(s)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("metrics accept: {e}");
                    return;
                }
            }
        }
    }

    pub(crate) fn add_admin(&mut self, stream: AdminStream) {
        let entry = self.admin.vacant_entry();
        let token = Token(ADMIN_BASE + entry.key());
        let mut conn = AdminConn::new(stream);
        if conn.register(self.poll.registry(), token).is_ok() {
            entry.insert(conn);
        }
    }

    /// Readiness on admin connection `key`: read, answer, write, maybe close.
    pub(crate) fn on_admin(&mut self, key: usize) {
        let Some(conn) = self.admin.get_mut(key) else {
            return;
        };
        let is_metrics = matches!(conn.stream, AdminStream::Tcp(_));
        let open = conn.fill();
        let mut replies = String::new();
        if is_metrics {
            if !conn.close_after_write {
                if let Some(reply) = self.metrics_reply(key) {
                    replies = reply;
                }
            }
        } else {
            let mut lines = Vec::new();
            while let Some(l) = self.admin.get_mut(key).and_then(AdminConn::next_line) {
                lines.push(l);
            }
            for line in lines {
                let reply = match line
                    .map_err(|e| e.to_string())
                    .and_then(|l| command::parse(&l))
                {
                    Ok(cmd) => self.execute(cmd),
                    Err(e) => format!("error: {e}"),
                };
                replies.push_str(reply.trim_end_matches('\n'));
                replies.push_str("\n\n");
            }
        }
        let Some(conn) = self.admin.get_mut(key) else {
            return;
        };
        conn.output.extend_from_slice(replies.as_bytes());
        if is_metrics && !replies.is_empty() {
            conn.close_after_write = true;
        }
        let flushed = conn.flush_out();
        let done = match (open, flushed) {
            (Err(_), _) | (_, Err(_)) => true,
            (Ok(peer_open), Ok(all_out)) => all_out && (!peer_open || conn.close_after_write),
        };
        if done {
            let mut conn = self.admin.remove(key);
            let _ = self.poll.registry().deregister(conn.stream.source());
        }
    }

    /// A complete HTTP request on metrics connection `key` gets its whole response.
    fn metrics_reply(&mut self, key: usize) -> Option<String> {
        let conn = self.admin.get(key)?;
        let (status, body) = match http::parse_request_host(&conn.input) {
            Parsed::NeedMore => return None,
            Parsed::Complete(head, _) if head.target == b"/metrics" && head.method == b"GET" => {
                ("200 OK", metrics::render(&self.stats, &self.gauges()))
            }
            Parsed::Complete(..) => ("404 Not Found", "try /metrics\n".to_string()),
            Parsed::Invalid(_) => ("400 Bad Request", "bad request\n".to_string()),
        };
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    fn gauges(&self) -> Gauges {
        let mut g = Gauges {
            buffers_in_use: self.pool.lent() as u64,
            buffer_size: self.pool.size() as u64,
            draining: u64::from(self.drain_deadline.is_some()),
            ..Gauges::default()
        };
        for (_, s) in self.sessions.iter() {
            if let Some(i) = metrics::STATES.iter().position(|st| *st == s.state()) {
                if let Some(n) = g.sessions_by_state.get_mut(i) {
                    *n += 1;
                }
            }
        }
        g
    }

    /// Runs one control command; the reply without its closing blank line.
    pub(crate) fn execute(&mut self, cmd: Command) -> String {
        match cmd {
            Command::Help => command::HELP.to_string(),
            Command::ShowConfig => {
                let mut o = String::new();
                for (k, v, src) in &self.cfg.entries {
                    let _ = writeln!(o, "{k}={v} ({src})");
                }
                o
            }
            Command::Set(key, value) => match self.layers.with_set(&key, &value) {
                Ok(layers) => match self.reload(layers) {
                    Ok(msg) => format!("ok: {key} set; {msg}"),
                    Err(e) => format!("error: {e}; nothing changed"),
                },
                Err(e) => format!("error: {e}; nothing changed"),
            },
            Command::SetLogLevel(level) => {
                let value = level.to_string().to_ascii_lowercase();
                match self.layers.with_set("ENVOY_LOG_LEVEL", &value) {
                    Ok(layers) => match self.reload(layers) {
                        Ok(_) => format!("ok: log level {value}"),
                        Err(e) => format!("error: {e}"),
                    },
                    Err(e) => format!("error: {e}"),
                }
            }
            Command::Reload => match self.reload(self.layers.clone()) {
                Ok(msg) => format!("ok: {msg}"),
                Err(e) => format!("error: reload refused, the old config stays: {e}"),
            },
            Command::ShowSessions => {
                let mut o = String::from(
                    "id state client sni upstream bytes_up bytes_down age_ms traced\n",
                );
                for (_, s) in self.sessions.iter() {
                    let (up, down) = s.bytes();
                    let _ = writeln!(
                        o,
                        "{} {} {} {} {} {} {} {} {}",
                        s.id(),
                        s.state(),
                        s.client_label(),
                        s.facts().asked_name(),
                        s.upstream_label(),
                        up,
                        down,
                        s.age_ms(self.now_ms),
                        if s.traced() { "yes" } else { "no" }
                    );
                }
                o
            }
            Command::ShowStats => self.stats_text(),
            Command::Metrics => metrics::render(&self.stats, &self.gauges()),
            Command::Trace(rule) => {
                let mut n = 0;
                for (_, s) in self.sessions.iter_mut() {
                    if s.selected_by(&rule) {
                        s.set_traced(true);
                        n += 1;
                    }
                }
                let msg = format!("ok: tracing {rule} ({n} running session(s) now traced)");
                if !self.traces.contains(&rule) {
                    self.traces.push(rule);
                }
                msg
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
                format!("ok: {} trace rule(s) removed", before - self.traces.len())
            }
            Command::Kill(id) => {
                let key = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.id() == id)
                    .map(|(k, _)| k);
                match key {
                    Some(k) => {
                        self.close(k, CloseReason::Killed);
                        format!("ok: session {id} closed")
                    }
                    None => format!("error: no session {id}"),
                }
            }
            Command::Drain => {
                self.start_drain(self.cfg.drain_timeout_ms);
                format!(
                    "ok: draining {} session(s), deadline in {} ms",
                    self.sessions.len(),
                    self.cfg.drain_timeout_ms
                )
            }
            Command::Upgrade => {
                "error: upgrade is the supervisor's (sluice run starts one)".to_string()
            }
        }
    }

    fn stats_text(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let _ = writeln!(o, "sessions={}", self.sessions.len());
        let _ = writeln!(o, "accepted={}", s.accepted);
        let _ = writeln!(o, "refused_max_sessions={}", s.refused_max_sessions);
        let _ = writeln!(o, "accept_exhausted={}", s.accept_exhausted);
        for (r, n) in s.closed_by_reason() {
            let _ = writeln!(o, "closed.{}={n}", r.as_str());
        }
        let _ = writeln!(o, "bytes_up={}", s.bytes_up);
        let _ = writeln!(o, "bytes_down={}", s.bytes_down);
        let _ = writeln!(o, "bytes_spliced={}", s.bytes_spliced);
        let _ = writeln!(o, "bytes_spliced={}", s.bytes_spliced);
        let _ = writeln!(o, "connect_failures={}", s.connect_failures);
        for ((p, k), n) in &s.parse_errors {
            let _ = writeln!(o, "parse_errors.{p}.{k}={n}");
        }
        let _ = writeln!(o, "buffers_in_use={}", self.pool.lent());
        let _ = writeln!(o, "splice_pipes_in_use={}", self.pipes.lent());
        if let Some(c) = &self.capture {
            let _ = writeln!(o, "captures_queued={}", c.queued);
            let _ = writeln!(o, "captures_dropped={}", c.dropped);
        }
        let _ = writeln!(
            o,
            "traces={}",
            self.traces
                .iter()
                .map(TraceRule::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        o
    }
}

/// Binds a UNIX socket that only the owner can use (mode 0600 from the start, via umask).
pub(crate) fn bind_unix_0600(path: &str) -> io::Result<UnixListener> {
    // A stale socket from a dead process would make bind fail; a live one answers connect.
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    // SAFETY: umask only changes this process's file-creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound
}
