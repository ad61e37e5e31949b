//! How a worker was started: alone, or by the supervisor with inherited sockets, which it
//! adopts from the environment here; and its CPU pinning. Runs once, before the loop.

use std::io;

use log::warn;
use mio::net::UnixStream;

use crate::handoff as env;
use crate::sys::fd::{adopt_inherited, adopt_inherited_list};

/// Worker side: the sockets the supervisor lent, from the environment.
pub fn worker_role() -> io::Result<crate::worker::Role> {
    let spec =
        std::env::var(env::WORKER).map_err(|_| io::Error::other("not started by a supervisor"))?;
    let (i, n) = spec
        .split_once('/')
        .ok_or_else(|| io::Error::other("bad SLUICE_WORKER"))?;
    let index: usize = i.parse().map_err(io::Error::other)?;
    let count: usize = n.parse().map_err(io::Error::other)?;
    let listeners = inherited_listeners()?;
    let c = adopt_inherited(env::CHANNEL_FD)?
        .map(std::os::unix::net::UnixStream::from)
        .ok_or_else(|| io::Error::other("no SLUICE_CHANNEL_FD"))?;
    let client_table = adopt_inherited(env::CLIENT_TABLE_FD)?;
    c.set_nonblocking(true)?;
    pin_to_core(index);
    Ok(crate::worker::Role {
        index,
        count,
        listeners,
        channel: Some(UnixStream::from_std(c)),
        client_table,
    })
}

/// Pins this process to one CPU of those it may run on (so `taskset`/`cpuset` on the
/// supervisor is respected): the `index % n`-th allowed one. A failure only logs.
fn pin_to_core(index: usize) {
    if let Err(e) = crate::sys::cpu::pin_to_allowed(index) {
        warn!(
            "not pinned to a core worker={index} error={}",
            crate::logfmt::Shown(&e)
        );
    }
}

/// The listening sockets in SLUICE_LISTEN_FDS (`ADDR=FD,...`), each with the address its
/// listener is configured with.
fn inherited_listeners() -> io::Result<Vec<(std::net::SocketAddr, std::os::fd::OwnedFd)>> {
    let spec = std::env::var(env::LISTEN_FDS).unwrap_or_default();
    let mut addrs = Vec::new();
    let mut fds = Vec::new();
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (addr, fd) = pair
            .rsplit_once('=')
            .ok_or_else(|| io::Error::other(format!("bad {} entry {pair:?}", env::LISTEN_FDS)))?;
        addrs.push(
            addr.parse()
                .map_err(|_| io::Error::other(format!("bad address in {pair:?}")))?,
        );
        fds.push(fd);
    }
    // adopted through the list helper: each number checked open, made close-on-exec
    std::env::set_var(env::LISTEN_FDS, fds.join(","));
    let fds = adopt_inherited_list(env::LISTEN_FDS)?;
    Ok(addrs.into_iter().zip(fds).collect())
}
