//! How a worker was started: alone, or by the supervisor with inherited sockets, which it
//! adopts from the environment here; and its CPU pinning. Runs once, before the loop.

use std::io;

use log::warn;
use mio::net::{TcpListener, UnixStream};

use crate::handoff as env;
use crate::sys::fd::adopt_inherited;

/// Worker side: the sockets the supervisor lent, from the environment.
pub fn worker_role() -> io::Result<crate::worker::Role> {
    let spec =
        std::env::var(env::WORKER).map_err(|_| io::Error::other("not started by a supervisor"))?;
    let (i, n) = spec
        .split_once('/')
        .ok_or_else(|| io::Error::other("bad SLUICE_WORKER"))?;
    let index: usize = i.parse().map_err(io::Error::other)?;
    let count: usize = n.parse().map_err(io::Error::other)?;
    let l = adopt_inherited(env::LISTEN_FD)?
        .map(std::net::TcpListener::from)
        .ok_or_else(|| io::Error::other("no SLUICE_LISTEN_FD"))?;
    let c = adopt_inherited(env::CHANNEL_FD)?
        .map(std::os::unix::net::UnixStream::from)
        .ok_or_else(|| io::Error::other("no SLUICE_CHANNEL_FD"))?;
    let client_table = adopt_inherited(env::CLIENT_TABLE_FD)?;
    l.set_nonblocking(true)?;
    c.set_nonblocking(true)?;
    pin_to_core(index);
    Ok(crate::worker::Role {
        index,
        count,
        listener: Some(TcpListener::from_std(l)),
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
