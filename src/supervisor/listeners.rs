//! The supervisor's listening sockets: one SO_REUSEPORT socket per listener per worker,
//! bound (or taken over from a predecessor) here and lent to the workers; a change of the
//! listeners (reload, SIGHUP, `set ENVOY_LISTEN`, a new ENVOY_IP/ENVOY_PORT) bound whole
//! before anything is committed, handed to the running workers over their channel
//! (`SCM_RIGHTS`), and committed or rolled back once they answered.
//!
//! A listener's sockets are known by the address it is configured with (port 0 included):
//! a change that keeps an address keeps its sockets and their queues. Closing our copy of a
//! removed listener's sockets is what refuses new connects once the workers closed theirs.
//! Never touches a session; binding is the only blocking call, and it does not wait.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use log::info;

use super::spawn::WorkerSlot;
use crate::config::listener::Listener;
use crate::config::names::Names;
use crate::config::{Config, Layers};
use crate::handoff as env;
use crate::hexdump::Address;
use crate::logfmt::Value;
use crate::net;
use crate::sys::fd::adopt_inherited_list;

/// One listener's sockets.
pub(super) struct Bound {
    /// Its name (as the configuration that bound it, or last kept it, says).
    pub name: String,
    /// The address it is configured with.
    pub addr: SocketAddr,
    /// The address bound (port 0 resolved).
    pub local: SocketAddr,
    /// One socket per worker, by worker index.
    pub fds: Vec<OwnedFd>,
}

/// A change bound and handed out, not yet committed.
pub(super) struct Staged {
    /// The listeners added, their sockets bound.
    pub added: Vec<Bound>,
    /// The addresses of the listeners removed.
    pub removed: Vec<SocketAddr>,
    /// The names every listener has in the new configuration, by address.
    pub names: Vec<(SocketAddr, String)>,
}

/// The address a listening socket is bound to.
pub(super) fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

/// `workers` sockets on `addr` (port 0: the first one's port for the others too).
fn bind_one(l: &Listener, workers: usize, backlog: i32) -> io::Result<Bound> {
    let mut fds = Vec::with_capacity(workers);
    let mut at = l.addr;
    while fds.len() < workers {
        let s = net::listen(at, backlog)?;
        at = s.local_addr()?;
        fds.push(OwnedFd::from(s));
    }
    Ok(Bound {
        name: l.name.clone(),
        addr: l.addr,
        local: at,
        fds,
    })
}

/// Every listener of `cfg`, its sockets those a predecessor handed over (an upgrade) when
/// it listened on the same address, bound anew otherwise. Inherited sockets of listeners
/// gone from the configuration are closed here (the predecessor's copies stay until it
/// exits).
pub(super) fn bind_all(cfg: &Config) -> io::Result<Vec<Bound>> {
    let mut inherited: Vec<(SocketAddr, Vec<OwnedFd>)> = Vec::new();
    for fd in adopt_inherited_list(env::INHERIT_LISTEN)? {
        let a = local_addr(&fd)?;
        match inherited.iter_mut().find(|(b, _)| *b == a) {
            Some((_, v)) => v.push(fd),
            None => inherited.push((a, vec![fd])),
        }
    }
    let mut out = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let same = |a: &SocketAddr| *a == l.addr || (l.addr.port() == 0 && a.ip() == l.addr.ip());
        let bound = match inherited.iter().position(|(a, _)| same(a)) {
            Some(i) => {
                let (local, mut fds) = inherited.swap_remove(i);
                fds.truncate(cfg.workers);
                while fds.len() < cfg.workers {
                    fds.push(OwnedFd::from(net::listen(local, cfg.backlog)?));
                }
                Bound {
                    name: l.name.clone(),
                    addr: l.addr,
                    local,
                    fds,
                }
            }
            None => bind_one(l, cfg.workers, cfg.backlog).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start on {} (listener {}): {e}", l.addr, l.name),
                )
            })?,
        };
        out.push(bound);
    }
    for (a, _) in &inherited {
        info!(
            "listen address changed, the predecessor's socket is let go addr={}",
            Address(Some(*a))
        );
    }
    Ok(out)
}

/// What `cfg` changes of `have`: its new listeners bound (all or none), the addresses of
/// those gone. The error names the listener that could not be bound.
pub(super) fn stage(cfg: &Config, have: &[Bound], workers: usize) -> Result<Staged, String> {
    let mut added = Vec::new();
    for l in &cfg.listeners {
        if have.iter().any(|b| b.addr == l.addr) {
            continue;
        }
        // All or nothing: what was bound so far closes when `added` drops.
        added.push(
            bind_one(l, workers, cfg.backlog)
                .map_err(|e| format!("cannot listen on {} (listener {}): {e}", l.addr, l.name))?,
        );
    }
    let removed = have
        .iter()
        .filter(|b| !cfg.listeners.iter().any(|l| l.addr == b.addr))
        .map(|b| b.addr)
        .collect();
    let names = cfg
        .listeners
        .iter()
        .map(|l| (l.addr, l.name.clone()))
        .collect();
    Ok(Staged {
        added,
        removed,
        names,
    })
}

/// Applies a staged change to `have`: the added join, the removed are closed (our copies).
pub(super) fn commit(have: &mut Vec<Bound>, staged: Staged) {
    for b in &staged.added {
        info!(
            "listener added listener={} addr={}",
            Value::str(&b.name),
            Address(Some(b.local))
        );
    }
    have.extend(staged.added);
    have.retain(|b| {
        let keep = !staged.removed.contains(&b.addr);
        if !keep {
            info!(
                "listener removed, new connects are refused, its sessions finish listener={} addr={}",
                Value::str(&b.name),
                Address(Some(b.local))
            );
        }
        keep
    });
    for b in have.iter_mut() {
        if let Some((_, n)) = staged.names.iter().find(|(a, _)| *a == b.addr) {
            b.name.clone_from(n);
        }
    }
}

/// What worker `i` inherits: `ADDR=FD,...` for SLUICE_LISTEN_FDS, and the descriptors.
pub(super) fn for_worker(have: &[Bound], i: usize) -> (String, Vec<i32>) {
    let mut spec = Vec::new();
    let mut fds = Vec::new();
    for b in have {
        if let Some(fd) = b.fds.get(i) {
            spec.push(format!("{}={}", b.addr, fd.as_raw_fd()));
            fds.push(fd.as_raw_fd());
        }
    }
    (spec.join(","), fds)
}

/// Every socket, for the successor of an upgrade.
pub(super) fn all_fds(have: &[Bound]) -> Vec<i32> {
    have.iter()
        .flat_map(|b| b.fds.iter().map(AsRawFd::as_raw_fd))
        .collect()
}

/// Hands the sockets of `staged`'s new listeners to every running worker (`listen ADDR`
/// with the socket passed along). A worker that cannot take one now fails the whole
/// change: the sockets already handed are taken back.
pub(super) fn hand_out(staged: &Staged, workers: &mut [WorkerSlot]) -> Result<(), String> {
    for b in &staged.added {
        for (i, w) in workers.iter_mut().enumerate() {
            let Some(fd) = b.fds.get(i) else { continue };
            if w.chan.is_some() && !w.send_with_fd(&format!("listen {}", b.addr), fd.as_raw_fd()) {
                take_back(&staged.added, workers);
                return Err(format!(
                    "the socket of {} (listener {}) could not be handed to worker {i}",
                    b.addr, b.name
                ));
            }
        }
    }
    Ok(())
}

/// Takes back from every worker the sockets of `added` (a change not committed).
pub(super) fn take_back(added: &[Bound], workers: &mut [WorkerSlot]) {
    for b in added {
        for w in workers.iter_mut() {
            w.send(&format!("unlisten {}", b.addr), None);
        }
    }
}

/// The listener change `layers` makes, its new sockets bound and handed to the running
/// `workers`; `None` when the configuration is invalid (the workers say why). The names are
/// resolved already (`names`: the command waited for them), so nothing blocks.
pub(super) fn stage_from(
    layers: &Layers,
    names: &Names,
    have: &[Bound],
    workers: &mut [WorkerSlot],
) -> Result<Option<Staged>, String> {
    let Ok(cfg) = layers.load_with(names) else {
        return Ok(None);
    };
    let staged = stage(&cfg, have, workers.len())?;
    hand_out(&staged, workers)?;
    Ok(Some(staged))
}
