//! The binary upgrade: the binary now on disk starts as a new supervisor holding every
//! listening socket (inherited across exec); once its workers are ready it says so on a pipe,
//! and this supervisor lets go of the sockets and drains its workers.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use log::{error, info};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::Interest;

use super::{env, Supervisor, UPGRADE, UPGRADE_TIMEOUT_MS};
use crate::config::Config;
use crate::net;
use crate::sys::fd::{inheritable, pipe, set_nonblocking};

impl Supervisor {
    /// Starts the binary now on disk as a new supervisor holding every listening socket.
    pub(super) fn start_upgrade(&mut self) -> io::Result<u32> {
        if self.upgrade.is_some() {
            return Err(io::Error::other("an upgrade is already running"));
        }
        let mut fds: Vec<RawFd> = self.listeners.iter().map(AsRawFd::as_raw_fd).collect();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run");
        cmd.env(
            env::INHERIT_LISTEN,
            fds.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        if let Some((l, _)) = &self.control {
            cmd.env(env::INHERIT_CONTROL, l.as_raw_fd().to_string());
            fds.push(l.as_raw_fd());
        }
        if let Some(m) = &self.metrics {
            cmd.env(env::INHERIT_METRICS, m.as_raw_fd().to_string());
            fds.push(m.as_raw_fd());
        }
        let (read_end, write_end) = pipe()?;
        cmd.env(env::UPGRADE_FD, write_end.as_raw_fd().to_string());
        fds.push(write_end.as_raw_fd());
        cmd.env(env::REPLAY, self.replay.join("\n"));
        // SAFETY: between fork and exec: only fcntl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    inheritable(fd)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(write_end);
        let pid = child.id();
        let file = std::fs::File::from(read_end);
        set_nonblocking(file.as_raw_fd())?;
        self.poll.registry().register(
            &mut SourceFd(&file.as_raw_fd()),
            UPGRADE,
            Interest::READABLE,
        )?;
        info!(
            "upgrade: started {} as pid {pid}; waiting for its workers",
            self.exe.display()
        );
        self.upgrade = Some((child, file, self.now_ms() + UPGRADE_TIMEOUT_MS));
        Ok(pid)
    }

    pub(super) fn on_upgrade_pipe(&mut self) {
        let Some((child, file, _)) = self.upgrade.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16];
        let n = file.read(&mut buf).unwrap_or(0);
        if n > 0 && buf[..n].starts_with(b"ready") {
            let pid = child.id();
            info!("upgrade: new supervisor pid {pid} is serving; old workers stop accepting and drain");
            self.retire();
        } else if n == 0 {
            // The new process closed its end: it is exiting (its status comes with the next
            // check) or it dropped the descriptor (the timeout then decides).
            let fd = file.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    pub(super) fn check_upgrade_timeout(&mut self) {
        let now = self.now_ms();
        let Some((child, _, deadline)) = self.upgrade.as_mut() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            let why = format!("the new binary exited ({status}) before it was ready");
            self.fail_upgrade(&why);
        } else if now >= *deadline {
            self.fail_upgrade("the new binary did not report ready in time");
        }
    }

    pub(super) fn fail_upgrade(&mut self, why: &str) {
        if let Some((mut child, file, _)) = self.upgrade.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&file.as_raw_fd()));
            let _ = child.kill();
            let _ = child.wait();
            error!("upgrade failed: {why}; the old binary keeps serving");
        }
    }

    /// After a successful upgrade: let go of every socket, drain the workers, exit.
    pub(super) fn retire(&mut self) {
        if let Some((_, file, _)) = self.upgrade.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&file.as_raw_fd()));
        }
        if let Some((mut l, _)) = self.control.take() {
            let _ = self.poll.registry().deregister(&mut l); // the path now belongs to the successor
        }
        if let Some(mut m) = self.metrics.take() {
            let _ = self.poll.registry().deregister(&mut m);
        }
        self.listeners.clear(); // our copies only; the successor holds the sockets
        self.stopping = true;
        self.retired = true;
        self.signal_workers(libc::SIGTERM);
    }
}

/// One SO_REUSEPORT listener per worker on the configured address (inherited on upgrade).
pub(super) fn bind_listeners(cfg: &Config) -> io::Result<Vec<OwnedFd>> {
    let mut out: Vec<OwnedFd> = Vec::new();
    if let Ok(list) = std::env::var(env::INHERIT_LISTEN) {
        for fd in list.split(',').filter_map(|f| f.parse::<RawFd>().ok()) {
            // SAFETY: the predecessor passed these listening sockets for us to own.
            out.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    out.truncate(cfg.workers);
    let mut addr = cfg.listen_addr();
    if let Some(first) = out.first() {
        let inherited = local_addr(first)?;
        let moved =
            inherited.ip() != addr.ip() || (addr.port() != 0 && inherited.port() != addr.port());
        if moved {
            // An upgrade is how the listen address changes: bind the new one; the old
            // sockets close when the old supervisor and its workers are gone.
            info!("listen address {inherited} -> {addr}: binding the new one");
            out.clear();
        } else {
            addr = inherited;
        }
    }
    while out.len() < cfg.workers {
        let l = net::listen(addr, cfg.backlog)?;
        addr = l.local_addr()?; // port 0: the others join the port the first one got
        out.push(unsafe_into_std(l));
    }
    Ok(out)
}

fn unsafe_into_std(l: TcpListener) -> OwnedFd {
    // SAFETY: into_raw_fd hands over sole ownership of the descriptor.
    unsafe { OwnedFd::from_raw_fd(l.into_raw_fd()) }
}

pub(super) fn local_addr(fd: &OwnedFd) -> io::Result<std::net::SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}
