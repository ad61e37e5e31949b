//! Starting one worker process: its listener and a fresh command channel, inherited across
//! exec; then the runtime changes are replayed to it.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use log::info;
use mio::net::UnixStream;
use mio::{Interest, Token};

use super::{env, Supervisor, WORKER_BASE};
use crate::sys::fd::inheritable;

impl Supervisor {
    /// Starts worker `i` on its listener, with a fresh command channel.
    pub(super) fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let listen_fd = self.listeners[i].as_raw_fd();
        let chan_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("worker")
            .env(env::WORKER, format!("{i}/{}", self.cfg.workers))
            .env(env::LISTEN_FD, listen_fd.to_string())
            .env(env::CHANNEL_FD, chan_fd.to_string());
        // SAFETY: runs in the child between fork and exec; only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                inheritable(listen_fd)?;
                inheritable(chan_fd)?;
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let mut chan = UnixStream::from_std(ours);
        self.poll.registry().register(
            &mut chan,
            Token(WORKER_BASE + i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let now = self.now_ms();
        let slot = &mut self.workers[i];
        info!("worker {i} started, pid {}", child.id());
        slot.child = Some(child);
        slot.chan = Some(chan);
        slot.input.clear();
        slot.output.clear();
        slot.ready = false;
        slot.started_ms = now;
        slot.respawn_at = None;
        slot.awaiting.clear();
        // The worker speaks first ("ready"); then it catches up with the runtime changes.
        slot.awaiting.push_back(None);
        for line in self.replay.clone() {
            self.send(i, &line, None);
        }
        Ok(())
    }
}
