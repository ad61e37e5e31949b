//! A worker's listening sockets: the ones the supervisor handed it (at start through the
//! environment, later over the channel with `SCM_RIGHTS`), or, alone, the ones it bound
//! itself; which configured listener each serves; accepting on them; their counters and
//! `show listeners`.
//!
//! A socket is known by the address its listener is configured with (port 0 included), so
//! that a reload that keeps an address keeps its socket and its queue. A configuration
//! applied here serves every configured listener it holds a socket for; a socket no longer
//! configured is deregistered and closed at once (new connects are refused once the
//! supervisor let go of its copy), and the sessions that came through it finish on the
//! configuration they started with. Never binds under a supervisor, never blocks.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use log::{debug, info, warn};
use mio::{Interest, Token};

use crate::admin::reply::Reply;
use crate::config::Config;
use crate::hexdump::Address;
use crate::logfmt::{Shown, Value};
use crate::net;
use crate::worker::session::Session;
use crate::worker::sockets::LISTENER_BASE;
use crate::worker::stats::ListenerCount;
use crate::worker::{Worker, ACCEPT_BACKOFF_MS};

impl Worker {
    /// Serves `cfg`'s listeners: a socket held for each (bound here when alone) is
    /// registered; one no longer configured is closed. Under a supervisor, a listener
    /// without a socket is not served yet (the supervisor sends the socket before the
    /// configuration that names it). A bind that fails (alone) changes nothing.
    pub(crate) fn serve_listeners(&mut self, cfg: &Config) -> io::Result<()> {
        if !self.supervised {
            let mut bound = Vec::new();
            for l in &cfg.listeners {
                if self.listeners.key_of(l.addr).is_none() {
                    let s = net::listen(l.addr, cfg.backlog).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr))
                    })?;
                    bound.push((l.addr, OwnedFd::from(s)));
                }
            }
            for (addr, fd) in bound {
                self.listeners.hold(addr, fd)?;
            }
        }
        let first_start = self.listeners.configs.is_empty();
        let registry = self.poll.registry();
        let gone: Vec<usize> = self
            .listeners
            .held
            .iter()
            .filter(|(_, h)| h.serving.is_some() && !cfg.listeners.iter().any(|l| l.addr == h.addr))
            .map(|(k, _)| k)
            .collect();
        for k in gone {
            let mut h = self.listeners.held.remove(k);
            let _ = registry.deregister(&mut h.socket);
            let name = self
                .stats
                .listeners
                .get(h.slot)
                .map_or("", |c| c.name.as_str());
            info!(
                "listener closed, its sessions finish listener={} addr={}",
                Value::str(name),
                Address(h.socket.local_addr().ok())
            );
        }
        for (i, l) in cfg.listeners.iter().enumerate() {
            let Some(k) = self.listeners.key_of(l.addr) else {
                if self.supervised {
                    debug!(
                        "listener not served yet, no socket from the supervisor listener={} addr={}",
                        Value::str(&l.name),
                        Address(Some(l.addr))
                    );
                }
                continue;
            };
            let slot = match self.stats.listeners.iter().position(|c| c.name == l.name) {
                Some(s) => s,
                None => {
                    self.stats.listeners.push(ListenerCount {
                        name: l.name.clone(),
                        ..ListenerCount::default()
                    });
                    self.stats.listeners.len() - 1
                }
            };
            let Some(h) = self.listeners.held.get_mut(k) else {
                continue;
            };
            h.slot = slot;
            let new = h.serving.is_none();
            if new {
                registry.register(&mut h.socket, Token(LISTENER_BASE + k), Interest::READABLE)?;
                // Connections may wait in it already: no edge will say so.
                h.pending = true;
                self.accept_pending = true;
            }
            h.serving = Some(i);
            if new && !first_start {
                let bound = h.socket.local_addr().ok();
                self.log_listening(&cfg.for_listener(i), bound, true);
            }
        }
        let mut configs = Vec::with_capacity(cfg.listeners.len());
        for i in 0..cfg.listeners.len() {
            // A listener's own `upstream=` is a pool of its own: its members get their
            // entries and its default route its counters, as the base's did.
            let mut c = cfg.for_listener(i);
            self.upstreams.take(&mut c);
            self.stats.take_in(&mut c);
            configs.push(Rc::new(c));
        }
        self.listeners.configs = configs;
        Ok(())
    }

    /// `listen ADDR`: the supervisor's socket for the listener configured at `addr`, held
    /// and served at once if the configuration already names it (the configuration and the
    /// socket may come in either order).
    pub(crate) fn take_listener(&mut self, addr: SocketAddr, fd: Option<OwnedFd>) -> Reply {
        let Some(fd) = fd else {
            return Reply::Error(format!("listen {addr}: no socket came with the line"));
        };
        if let Err(e) = self.listeners.hold(addr, fd) {
            return Reply::Error(format!("listen {addr}: {e}"));
        }
        let cfg = Rc::clone(&self.cfg);
        match self.serve_listeners(&cfg) {
            Ok(()) => Reply::Text(format!("ok: holding the socket of {addr}")),
            Err(e) => Reply::Error(format!("listen {addr}: {e}")),
        }
    }

    /// `unlisten ADDR`: the socket held for `addr` let go (the supervisor did not commit
    /// the change that brought it).
    pub(crate) fn drop_listener(&mut self, addr: SocketAddr) -> Reply {
        let registry = self.poll.registry();
        if self.listeners.release(registry, addr) {
            Reply::Text(format!("ok: socket of {addr} let go"))
        } else {
            Reply::Text(format!("ok: no socket of {addr} held"))
        }
    }

    /// The `listening` line of one listener (`listener=` unless it is the implicit one):
    /// what its sessions get, the key's text where the listener overrides nothing.
    pub(crate) fn log_listening(&self, c: &Config, addr: Option<SocketAddr>, named: bool) {
        let r = &c.default_route;
        let o = c.listeners.get(c.listener).map(|l| &l.overrides);
        let upstream = match o.and_then(|o| o.upstreams.as_ref()) {
            Some(ups) => ups
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            None => c.shown("ENVOY_UPSTREAM").to_string(),
        };
        let mode = match o.and_then(|o| o.mode) {
            Some(m) => m.as_str().to_string(),
            None => c.shown("ENVOY_UPSTREAM_MODE").to_string(),
        };
        let proxy = match o.and_then(|o| o.proxy_protocol) {
            Some(_) => crate::logfmt::Value::str(policy_name(c.proxy_protocol)).to_string(),
            None => c.shown("ENVOY_PROXY_PROTOCOL").to_string(),
        };
        let listener = if named {
            format!(" listener={}", Value::str(c.listener_name()))
        } else {
            String::new()
        };
        info!(
            target: "sluice::worker",
            "listening addr={} upstream={upstream} upstream_addrs={} mode={mode} routes={} max_sessions={} buffer_size={} proxy_protocol={proxy}{listener}",
            Address(addr),
            Shown(
                r.pool
                    .members
                    .iter()
                    .flat_map(|u| u.addrs.iter().map(|a| a.to_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            c.routes.len(),
            c.max_sessions,
            c.buffer_size,
        );
    }

    /// The `listening` lines at start: one per listener served.
    pub(crate) fn log_listening_all(&self) {
        let implicit = self.cfg.listeners.len() == 1
            && self
                .cfg
                .listeners
                .first()
                .is_some_and(|l| l.origin == "ENVOY_IP/ENVOY_PORT");
        let mut served: Vec<(usize, Option<SocketAddr>)> = self
            .listeners
            .held
            .iter()
            .filter_map(|(_, h)| h.serving.map(|i| (i, h.socket.local_addr().ok())))
            .collect();
        served.sort_by_key(|(i, _)| *i);
        for (i, addr) in served {
            if let Some(c) = self.listeners.configs.get(i) {
                self.log_listening(c, addr, !implicit);
            }
        }
    }

    /// Readiness on listener token `t`.
    pub(crate) fn on_listener(&mut self, t: Token) {
        if let Some(h) = self.listeners.held.get_mut(t.0 - LISTENER_BASE) {
            h.pending = true;
            self.accept_pending = true;
        }
    }

    /// Stops accepting on every socket (drain): deregistered and closed.
    pub(crate) fn close_listeners(&mut self) {
        for mut h in self.listeners.held.drain() {
            let _ = self.poll.registry().deregister(&mut h.socket);
        }
    }

    /// Accepts up to ENVOY_ACCEPTORS connections per listener; leaves `accept_pending` set
    /// if any may hold more.
    pub(crate) fn accept(&mut self) {
        let mut more = false;
        // No list of keys is made: this runs for every accepted connection.
        let mut from = 0;
        while let Some(k) = self.listeners.next_pending(from) {
            from = k + 1;
            match self.accept_on(k) {
                Some(true) => more = true,
                Some(false) => {}
                None => return, // out of descriptors: paused
            }
        }
        self.accept_pending = more;
    }

    /// Accepts on socket `k`: `Some(true)` when the budget ran out with more maybe waiting,
    /// `None` when accepts are paused (descriptors exhausted).
    fn accept_on(&mut self, k: usize) -> Option<bool> {
        for _ in 0..self.cfg.acceptors {
            let h = self.listeners.held.get_mut(k)?;
            let (slot, serving) = (h.slot, h.serving?);
            match h.socket.accept() {
                Ok((stream, peer)) => {
                    if self.sessions.len() >= self.cfg.max_sessions {
                        self.stats.refused_max_sessions += 1;
                        if let Some(c) = self.stats.listeners.get_mut(slot) {
                            c.refused_max_sessions += 1;
                        }
                        debug!(
                            "refused at accept, ENVOY_MAX_SESSIONS reached peer={} max_sessions={}",
                            Address(Some(peer)),
                            self.cfg.max_sessions
                        );
                        drop(stream);
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += self.id_step;
                    let Some(cfg) = self.listeners.configs.get(serving).map(Rc::clone) else {
                        return Some(false);
                    };
                    let (sessions, mut ctx) = self.ctx();
                    let entry = sessions.vacant_entry();
                    let key = entry.key();
                    match Session::new(id, key, stream, peer, cfg, &mut ctx) {
                        Ok(s) => {
                            entry.insert(s);
                            self.stats.accepted += 1;
                            if let Some(c) = self.stats.listeners.get_mut(slot) {
                                c.accepted += 1;
                            }
                            // Its first bytes are usually there already: no wakeup waited for.
                            self.drive(key);
                        }
                        Err(e) => warn!(
                            "session not set up sid={id} peer={} error={}",
                            Address(Some(peer)),
                            Shown(&e)
                        ),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(h) = self.listeners.held.get_mut(k) {
                        h.pending = false;
                    }
                    return Some(false);
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
                            "accept failed, pausing accepts error={} pause_ms={ACCEPT_BACKOFF_MS} times={} sessions={}",
                            Shown(&e),
                            self.stats.accept_exhausted,
                            self.sessions.len()
                        );
                    }
                    self.accept_pending = true;
                    return None;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    debug!("accept failed error={}", Shown(&e));
                }
            }
        }
        // The budget ran out: there may be more waiting, and no new edge will say so.
        Some(true)
    }

    /// `show listeners`: one row per listener this worker serves or still has sessions of:
    /// `name addr state sessions accepted refused policy`.
    pub(crate) fn listener_rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, l) in self.cfg.listeners.iter().enumerate() {
            let served = self
                .listeners
                .held
                .iter()
                .find(|(_, h)| h.serving == Some(i))
                .map(|(_, h)| h.socket.local_addr().ok());
            let addr = served.flatten().unwrap_or(l.addr);
            let state = if served.is_some() {
                "active"
            } else {
                "unbound"
            };
            names.push(&l.name);
            rows.push(self.listener_row(&l.name, addr, state, &l.policy));
        }
        // Listeners gone from the configuration whose sessions still run.
        for (_, s) in self.sessions.iter() {
            let c = s.config();
            let name = c.listener_name();
            if !names.contains(&name) {
                names.push(name);
                let l = c.listeners.get(c.listener);
                let addr = l.map_or(c.listen_addr(), |l| l.addr);
                let policy = l.map_or("-", |l| l.policy.as_str());
                rows.push(self.listener_row(name, addr, "draining", policy));
            }
        }
        rows
    }

    fn listener_row(&self, name: &str, addr: SocketAddr, state: &str, policy: &str) -> String {
        let sessions = self
            .sessions
            .iter()
            .filter(|(_, s)| s.config().listener_name() == name)
            .count();
        let c = self.stats.listeners.iter().find(|c| c.name == name);
        format!(
            "{name} {} {state} {sessions} {} {} {policy}",
            Address(Some(addr)),
            c.map_or(0, |c| c.accepted),
            c.map_or(0, |c| c.refused_max_sessions),
        )
    }
}

fn policy_name(p: crate::config::ProxyPolicy) -> &'static str {
    match p {
        crate::config::ProxyPolicy::Required => "required",
        crate::config::ProxyPolicy::Optional => "optional",
        crate::config::ProxyPolicy::Off => "off",
    }
}
