//! How a worker was started: alone, or by the supervisor with inherited sockets, which it
//! takes from the environment here; and its CPU pinning.

use std::io;
use std::os::fd::FromRawFd;

use log::warn;
use mio::net::{TcpListener, UnixStream};

use crate::handoff as env;
use crate::sys::fd::inherited;

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
