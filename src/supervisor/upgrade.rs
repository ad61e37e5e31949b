//! The binary upgrade, successor side and predecessor side: the binary now on disk starts as
//! a new supervisor holding every listening socket (inherited across exec); once its workers
//! are ready it says so on a pipe. Here: starting the successor, watching its pipe and its
//! deadline (taking the client listeners over is `supervisor::listeners`'). Letting go of the
//! sockets and draining is the supervisor's own decision once this says "ready".

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::{Child, Command};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::handoff as env;
use crate::sys::fd::{pipe, set_nonblocking};
use crate::sys::process::spawn_inheriting;

/// What the successor inherits.
pub(super) struct Handoff<'a> {
    /// The binary to start.
    pub exe: &'a Path,
    /// The client listeners: every listener's, one per worker each.
    pub listeners: &'a [RawFd],
    /// The control socket's listener.
    pub control: Option<RawFd>,
    /// The metrics listener.
    pub metrics: Option<RawFd>,
    /// The runtime changes to replay, one command a line.
    pub replay: &'a [String],
    /// The machine's client table (its counts go on across the upgrade).
    pub client_table: RawFd,
}

/// An upgrade under way: the successor, the read end of its ready pipe, and its deadline.
pub(super) struct Upgrade {
    child: Child,
    ready: std::fs::File,
    deadline_ms: u64,
}

/// What the ready pipe said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PipeNews {
    /// The successor's workers are all ready: it serves.
    Ready,
    /// Nothing yet (or the successor dropped its end; its exit or the deadline decides).
    Nothing,
}

impl Upgrade {
    /// Starts `h.exe` as a new supervisor holding every socket; its ready pipe is registered
    /// under `token`; it must be ready by `deadline_ms`.
    pub fn start(
        h: &Handoff<'_>,
        registry: &Registry,
        token: Token,
        deadline_ms: u64,
    ) -> io::Result<Upgrade> {
        let mut fds: Vec<RawFd> = h.listeners.to_vec();
        let mut cmd = Command::new(h.exe);
        cmd.arg("run");
        cmd.env(
            env::INHERIT_LISTEN,
            fds.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        if let Some(fd) = h.control {
            cmd.env(env::INHERIT_CONTROL, fd.to_string());
            fds.push(fd);
        }
        if let Some(fd) = h.metrics {
            cmd.env(env::INHERIT_METRICS, fd.to_string());
            fds.push(fd);
        }
        cmd.env(env::INHERIT_CLIENT_TABLE, h.client_table.to_string());
        fds.push(h.client_table);
        let (read_end, write_end) = pipe()?;
        cmd.env(env::UPGRADE_FD, write_end.as_raw_fd().to_string());
        fds.push(write_end.as_raw_fd());
        cmd.env(env::REPLAY, h.replay.join("\n"));
        let child = spawn_inheriting(&mut cmd, &fds, None)?;
        drop(write_end);
        let ready = std::fs::File::from(read_end);
        set_nonblocking(ready.as_raw_fd())?;
        registry.register(&mut SourceFd(&ready.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Upgrade {
            child,
            ready,
            deadline_ms,
        })
    }

    /// The successor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the ready pipe.
    pub fn on_pipe(&mut self, registry: &Registry) -> PipeNews {
        let mut buf = [0u8; 16];
        match self.ready.read(&mut buf) {
            Ok(n) if n > 0 => {
                if buf.get(..n).is_some_and(|b| b.starts_with(b"ready")) {
                    PipeNews::Ready
                } else {
                    PipeNews::Nothing
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => PipeNews::Nothing,
            _ => {
                // The successor closed its end: it is exiting (its status comes with the next
                // check) or it dropped the descriptor (the deadline then decides).
                let _ = registry.deregister(&mut SourceFd(&self.ready.as_raw_fd()));
                PipeNews::Nothing
            }
        }
    }

    /// Why the upgrade failed by `now_ms`, if it did: the successor exited, or is late.
    pub fn failure(&mut self, now_ms: u64) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(format!(
                "the new binary exited ({status}) before it was ready"
            ));
        }
        (now_ms >= self.deadline_ms).then(|| "the new binary did not report ready in time".into())
    }

    /// Gives up: the successor is killed and reaped.
    pub fn abandon(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.ready.as_raw_fd()));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The successor serves: stop watching it (it is no child to wait for any more).
    pub fn finish(self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.ready.as_raw_fd()));
    }
}
