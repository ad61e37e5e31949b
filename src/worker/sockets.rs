//! The listening sockets a worker holds, each known by the address its listener is
//! configured with, and the configuration each served listener's sessions start with. The
//! data only: serving, accepting and `show listeners` are `worker::listeners`'. Never binds.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use mio::net::TcpListener;
use slab::Slab;

use crate::config::Config;

/// Listening sockets are `LISTENER_BASE + key`: above every session token, below the
/// admin plane's.
pub const LISTENER_BASE: usize = 1 << (usize::BITS - 3);

/// One listening socket this worker holds.
pub(crate) struct Held {
    /// The address its listener is configured with.
    pub addr: SocketAddr,
    pub socket: TcpListener,
    /// The configured listener it serves now (an index of `cfg.listeners`); `None`: held,
    /// not registered (not yet, or no more, configured).
    pub serving: Option<usize>,
    /// It may hold more connections than the last turn accepted.
    pub pending: bool,
    /// Its counters' slot in `Stats::listeners`.
    pub slot: usize,
}

/// The sockets and, per configured listener, the configuration its sessions start with.
#[derive(Default)]
pub(crate) struct Listeners {
    pub held: Slab<Held>,
    /// `Config::for_listener(i)` for each configured listener `i`.
    pub configs: Vec<Rc<Config>>,
}

impl Listeners {
    /// Takes a socket for the listener configured at `addr` (a newer one replaces an older).
    pub fn hold(&mut self, addr: SocketAddr, fd: OwnedFd) -> io::Result<()> {
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true)?;
        if let Some(k) = self.key_of(addr) {
            if self.held.get(k).is_some_and(|h| h.serving.is_some()) {
                return Ok(()); // the one serving stays: same address, same queue
            }
            self.held.remove(k);
        }
        self.held.insert(Held {
            addr,
            socket: TcpListener::from_std(std),
            serving: None,
            pending: false,
            slot: 0,
        });
        Ok(())
    }

    pub fn key_of(&self, addr: SocketAddr) -> Option<usize> {
        self.held
            .iter()
            .find(|(_, h)| h.addr == addr)
            .map(|(k, _)| k)
    }

    /// The first socket from key `from` on that serves and may hold connections.
    pub fn next_pending(&self, from: usize) -> Option<usize> {
        self.held
            .iter()
            .skip_while(|(k, _)| *k < from)
            .find(|(_, h)| h.pending && h.serving.is_some())
            .map(|(k, _)| k)
    }

    /// The address the first serving socket is bound to.
    pub fn first_local_addr(&self) -> io::Result<SocketAddr> {
        self.held
            .iter()
            .filter(|(_, h)| h.serving.is_some())
            .min_by_key(|(_, h)| h.serving)
            .map_or(Err(io::ErrorKind::NotConnected.into()), |(_, h)| {
                h.socket.local_addr()
            })
    }

    /// Lets go of the socket held for `addr`, serving or not; false when none is.
    pub fn release(&mut self, registry: &mio::Registry, addr: SocketAddr) -> bool {
        let Some(k) = self.key_of(addr) else {
            return false;
        };
        let mut h = self.held.remove(k);
        let _ = registry.deregister(&mut h.socket);
        true
    }
}
