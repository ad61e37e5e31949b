//! The admin plane's sockets, one implementation for a worker's loop and the supervisor's:
//! the control socket (UNIX, mode 0600 from the start, then given to the owner and group
//! `privilege` decides: 0660 for a control group) and the metrics listener, bound here or
//! adopted from a predecessor; the connections they accept, under the loop's tokens; what each
//! connection asks ([`Request`]); and the replies going back, framed.
//!
//! It decides nothing about what a request means: the loop that owns the plane answers it, at
//! once (a worker) or once its workers have (the supervisor). It never blocks, and it never
//! holds more than a bounded input per connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use log::{info, warn};
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::admin::conn::{self, AdminConn, AdminStream, HttpAsk, Peer};
use crate::preflight::{self, SocketPath};
use crate::privilege::Ownership;

/// The tokens a loop gives the plane: one per listener, and `conn_base + key` per connection.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    /// The control socket's listener.
    pub control: Token,
    /// The metrics listener.
    pub metrics: Token,
    /// The first connection token.
    pub conn_base: usize,
}

/// A connection as a loop names it while an answer is pending: its key, and a serial number
/// so that a late answer never reaches a newer connection that reused the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    key: usize,
    serial: u64,
}

#[cfg(test)]
impl ConnId {
    /// An id for tests that need one without a connection.
    pub(crate) fn for_tests(key: usize) -> ConnId {
        ConnId { key, serial: 0 }
    }
}

/// What a connection asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A command line (`Err`: why it could not be taken, e.g. too long).
    Line(Result<String, String>),
    /// `GET /metrics`.
    Scrape,
    /// `GET /status.json`.
    Status,
}

/// The requests that one readiness event brought.
pub struct Requests {
    /// From which connection.
    pub conn: ConnId,
    /// Who is there.
    pub peer: Peer,
    /// In order.
    pub requests: Vec<Request>,
}

/// The listeners and connections of one loop's admin plane.
pub struct AdminPlane {
    tokens: Tokens,
    /// The control socket and its path.
    control: Option<(UnixListener, String)>,
    /// Who a control socket bound here is given to.
    control_owner: Ownership,
    /// The metrics listener, and the address it was asked for (port 0 stays 0 here).
    metrics: Option<(TcpListener, Option<SocketAddr>)>,
    conns: Slab<(u64, AdminConn)>,
    next_serial: u64,
}

impl AdminPlane {
    /// No listener, no connection yet.
    pub fn new(tokens: Tokens) -> AdminPlane {
        AdminPlane {
            tokens,
            control: None,
            control_owner: Ownership::default(),
            metrics: None,
            conns: Slab::new(),
            next_serial: 0,
        }
    }

    /// Who the control sockets bound from now on belong to (an adopted one stays as it is).
    pub fn set_control_ownership(&mut self, owner: Ownership) {
        self.control_owner = owner;
    }

    /// Serves the control socket at `path` (empty: none): binds it unless it is already the
    /// one served, then closes the old one and removes its file. A path that cannot be bound
    /// leaves the old socket serving.
    pub fn set_control(&mut self, registry: &Registry, path: &str) -> io::Result<()> {
        if self.control.as_ref().map_or("", |(_, p)| p.as_str()) == path {
            return Ok(());
        }
        let new = if path.is_empty() {
            None
        } else {
            Some(bind_control_socket(path, self.control_owner)?)
        };
        self.close_control(registry, true);
        if let Some(l) = new {
            self.listen_control(registry, l, path)?;
        }
        Ok(())
    }

    /// Serves the control socket a predecessor bound at `path` and handed over.
    pub fn adopt_control(
        &mut self,
        registry: &Registry,
        fd: OwnedFd,
        path: &str,
    ) -> io::Result<()> {
        let l = std::os::unix::net::UnixListener::from(fd);
        l.set_nonblocking(true)?;
        self.close_control(registry, false);
        self.listen_control(registry, UnixListener::from_std(l), path)
    }

    fn listen_control(
        &mut self,
        registry: &Registry,
        mut l: UnixListener,
        path: &str,
    ) -> io::Result<()> {
        registry.register(&mut l, self.tokens.control, Interest::READABLE)?;
        info!(
            "control socket listening path={}",
            crate::logfmt::Value::str(path)
        );
        self.control = Some((l, path.to_string()));
        Ok(())
    }

    /// Stops serving the control socket; removes its file if `remove_file` (not when a
    /// successor serves the same path).
    pub fn close_control(&mut self, registry: &Registry, remove_file: bool) {
        if let Some((mut l, path)) = self.control.take() {
            let _ = registry.deregister(&mut l);
            if remove_file {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Serves metrics on `addr` (`None`: not at all): binds it unless it is already served.
    pub fn set_metrics(&mut self, registry: &Registry, addr: Option<SocketAddr>) -> io::Result<()> {
        let serving = self.metrics.as_ref().map(|(_, a)| *a);
        if serving == Some(addr) || (serving.is_none() && addr.is_none()) {
            return Ok(());
        }
        self.close_metrics(registry);
        if let Some(a) = addr {
            self.listen_metrics(registry, TcpListener::bind(a)?, addr)?;
        }
        Ok(())
    }

    /// Serves metrics on the listener a predecessor bound and handed over.
    pub fn adopt_metrics(&mut self, registry: &Registry, fd: OwnedFd) -> io::Result<()> {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)?;
        let addr = l.local_addr().ok();
        self.close_metrics(registry);
        self.listen_metrics(registry, TcpListener::from_std(l), addr)
    }

    fn listen_metrics(
        &mut self,
        registry: &Registry,
        mut l: TcpListener,
        asked: Option<SocketAddr>,
    ) -> io::Result<()> {
        registry.register(&mut l, self.tokens.metrics, Interest::READABLE)?;
        info!(
            "metrics listening url=http://{}/metrics",
            crate::hexdump::Address(Some(l.local_addr()?))
        );
        self.metrics = Some((l, asked));
        Ok(())
    }

    /// Stops serving metrics.
    pub fn close_metrics(&mut self, registry: &Registry) {
        if let Some((mut l, _)) = self.metrics.take() {
            let _ = registry.deregister(&mut l);
        }
    }

    /// The listeners' descriptors (control, metrics), to hand to a successor.
    pub fn listener_fds(&self) -> (Option<RawFd>, Option<RawFd>) {
        (
            self.control.as_ref().map(|(l, _)| l.as_raw_fd()),
            self.metrics.as_ref().map(|(l, _)| l.as_raw_fd()),
        )
    }

    /// Serves a connection made elsewhere (a worker's channel to its supervisor).
    pub fn add(&mut self, registry: &Registry, stream: AdminStream, peer: Peer) -> Option<ConnId> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = AdminConn::new(stream, peer);
        conn.register(registry, Token(self.tokens.conn_base + key))
            .ok()?;
        self.next_serial += 1;
        entry.insert((self.next_serial, conn));
        Some(ConnId {
            key,
            serial: self.next_serial,
        })
    }

    /// Readiness on one of the plane's tokens: accepts on a listener; reads a connection and
    /// returns what it asks (the caller answers, then calls [`AdminPlane::flush`]). A
    /// connection that failed is closed here and asks nothing.
    pub fn on_event(&mut self, registry: &Registry, token: Token) -> Option<Requests> {
        if token == self.tokens.control {
            self.accept(registry, Peer::Control);
            return None;
        }
        if token == self.tokens.metrics {
            self.accept(registry, Peer::Scrape);
            return None;
        }
        let key = token.0.checked_sub(self.tokens.conn_base)?;
        let (serial, conn) = self.conns.get_mut(key)?;
        let id = ConnId {
            key,
            serial: *serial,
        };
        if conn.fill().is_err() {
            self.close(registry, key);
            return None;
        }
        let mut requests = Vec::new();
        match conn.peer {
            Peer::Scrape => match conn.http_request() {
                Some(HttpAsk::Metrics) => requests.push(Request::Scrape),
                Some(HttpAsk::StatusJson) => requests.push(Request::Status),
                None => {}
            },
            Peer::Control | Peer::Supervisor => {
                while let Some(line) = conn.next_line() {
                    requests.push(Request::Line(line));
                }
            }
        }
        Some(Requests {
            conn: id,
            peer: conn.peer,
            requests,
        })
    }

    fn accept(&mut self, registry: &Registry, peer: Peer) {
        loop {
            let accepted = match (peer, &self.control, &self.metrics) {
                (Peer::Scrape, _, Some((l, _))) => l.accept().map(|(s, _)| AdminStream::Tcp(s)),
                (Peer::Control, Some((l, _)), _) => l.accept().map(|(s, _)| AdminStream::Unix(s)),
                _ => return,
            };
            match accepted {
                Ok(stream) => {
                    let _ = self.add(registry, stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let what = if peer == Peer::Scrape {
                        "metrics"
                    } else {
                        "control"
                    };
                    warn!(
                        "accept failed listener={what} error={}",
                        crate::logfmt::Shown(&e)
                    );
                    return;
                }
            }
        }
    }

    fn get(&mut self, id: ConnId) -> Option<&mut AdminConn> {
        match self.conns.get_mut(id.key) {
            Some((serial, conn)) if *serial == id.serial => Some(conn),
            _ => None,
        }
    }

    /// The first descriptor connection `id` received (the supervisor's, with a `listen`).
    pub fn take_fd(&mut self, id: ConnId) -> Option<OwnedFd> {
        match self.conns.get_mut(id.key) {
            Some((serial, conn)) if *serial == id.serial => conn.fds.pop_front(),
            _ => None,
        }
    }

    /// Queues the reply to one command line (a connection gone since is skipped).
    pub fn reply(&mut self, id: ConnId, text: &str) {
        if let Some(c) = self.get(id) {
            c.push_reply(text);
        }
    }

    /// Queues the response to a scrape: `200 OK` with `body`.
    pub fn reply_scrape(&mut self, id: ConnId, body: &str) {
        if let Some(c) = self.get(id) {
            c.push_http("200 OK", conn::TEXT, body);
        }
    }

    /// Queues the response to `/status.json`.
    pub fn reply_status(&mut self, id: ConnId, json: &str) {
        if let Some(c) = self.get(id) {
            c.push_http("200 OK", conn::JSON, json);
        }
    }

    /// Writes what is queued; closes the connection once everything is out and it is done:
    /// the peer closed or the scrape was answered, and the loop owes it nothing (`busy`).
    pub fn flush(&mut self, registry: &Registry, id: ConnId, busy: bool) {
        let Some(c) = self.get(id) else { return };
        let done = match c.flush_out() {
            Err(_) => true,
            Ok(all_out) => all_out && !busy && (c.peer_closed || c.close_after_write),
        };
        if done {
            self.close(registry, id.key);
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some((_, mut c)) = self.conns.try_remove(key) {
            let _ = registry.deregister(c.stream.source());
        }
    }
}

/// Binds a UNIX socket that only the owner can use (mode 0600 from the start, via umask),
/// then gives it to `owner` (its mode last, so it is never wider than its owners).
/// Only a stale socket (a dead process's, nobody answers) is replaced: a live one, a file or
/// anything else at `path` is an error naming it, and stays as it is.
fn bind_control_socket(path: &str, owner: Ownership) -> io::Result<UnixListener> {
    match preflight::socket_path(path)? {
        SocketPath::Free => {}
        SocketPath::Stale => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
        SocketPath::Live => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{path}: a live socket: another process serves it"),
            ))
        }
        SocketPath::Other => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path}: {}", preflight::NOT_A_SOCKET),
            ))
        }
    }
    let l = crate::sys::fd::with_umask(0o177, || UnixListener::bind(path))?;
    let given = (|| -> io::Result<()> {
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::chown(path, owner.uid, owner.gid)?;
        }
        if owner.mode != 0o600 {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(owner.mode))?;
        }
        Ok(())
    })();
    if let Err(e) = given {
        let _ = std::fs::remove_file(path);
        return Err(io::Error::new(
            e.kind(),
            format!("{path}: cannot give it to its owner: {e}"),
        ));
    }
    Ok(l)
}
