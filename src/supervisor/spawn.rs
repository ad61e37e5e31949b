//! A worker as the supervisor sees it: starting its process on its listener with a fresh
//! command channel, both inherited across exec; the supervisor's end of that channel
//! (command lines out, in order; messages in, each ended by a blank line); and what the
//! supervisor keeps to respawn it. It never reads what a message says (`admin::channel`
//! does) and never decides when to respawn.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::{Child, Command};

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use crate::handoff as env;
use crate::sys::process::spawn_inheriting;

/// One worker's process and channel, and its respawn bookkeeping.
#[derive(Default)]
pub(super) struct WorkerSlot {
    /// The process, until it is reaped.
    pub child: Option<Child>,
    /// The supervisor's end of its channel, while it lives.
    pub chan: Option<Channel>,
    /// It said `ready` since it was (re)started.
    pub ready: bool,
    /// When it was started (supervisor clock, ms).
    pub started_ms: u64,
    /// Deaths in a row without a healthy run, for the back-off.
    pub failures: u32,
    /// When to start it again, after a death.
    pub respawn_at: Option<u64>,
    /// The messages expected from it, in order: a request's reply, or `None` when nobody
    /// waits (its `ready`, and the replies to replayed commands).
    pub awaiting: VecDeque<Option<usize>>,
}

impl WorkerSlot {
    /// Takes a freshly started process and channel; its first message will be `ready`.
    pub fn started(&mut self, child: Child, chan: Channel, now_ms: u64) {
        self.child = Some(child);
        self.chan = Some(chan);
        self.ready = false;
        self.started_ms = now_ms;
        self.respawn_at = None;
        self.awaiting.clear();
        self.awaiting.push_back(None);
    }

    /// Sends one command line, whose reply belongs to `request`. False without a channel.
    pub fn send(&mut self, line: &str, request: Option<usize>) -> bool {
        let Some(chan) = self.chan.as_mut() else {
            return false;
        };
        chan.output.extend_from_slice(line.as_bytes());
        chan.output.push(b'\n');
        self.awaiting.push_back(request);
        chan.flush();
        true
    }

    /// Sends one command line with descriptor `fd` passed along (`SCM_RIGHTS`); nobody
    /// waits for its reply. False without a channel, or when the line cannot go now (its
    /// channel still holds unsent bytes, or the send failed).
    pub fn send_with_fd(&mut self, line: &str, fd: RawFd) -> bool {
        let Some(chan) = self.chan.as_mut() else {
            return false;
        };
        chan.flush();
        if !chan.output.is_empty() {
            return false;
        }
        let bytes = format!("{line}\n");
        match crate::sys::fdpass::send_with_fds(chan.stream.as_raw_fd(), bytes.as_bytes(), &[fd]) {
            Ok(n) => {
                // the descriptor went with the first byte; the rest follows as usual
                chan.output
                    .extend_from_slice(bytes.as_bytes().get(n..).unwrap_or(&[]));
                self.awaiting.push_back(None);
                chan.flush();
                true
            }
            Err(_) => false,
        }
    }

    /// The process is gone: closes the channel; returns the requests still waiting on it.
    pub fn gone(&mut self, registry: &Registry) -> Vec<usize> {
        self.child = None;
        if let Some(mut chan) = self.chan.take() {
            let _ = registry.deregister(&mut chan.stream);
        }
        self.awaiting.drain(..).flatten().collect()
    }
}

/// The supervisor's end of a worker's channel.
pub(super) struct Channel {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Channel {
    /// Writes what it can of the queued lines. A failure is not reported: the worker's exit
    /// will be noticed through SIGCHLD.
    pub fn flush(&mut self) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return,
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what is there; returns the complete messages (without their blank line).
    pub fn messages(&mut self) -> Vec<String> {
        let mut buf = [0u8; 16384];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.input.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        while let Some(end) = self.input.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.input.drain(..end + 2).collect();
            out.push(String::from_utf8_lossy(raw.get(..end).unwrap_or(&[])).into_owned());
        }
        out
    }
}

/// Starts worker `index` of `count` from `exe` on its listening sockets (`listeners`: the
/// SLUICE_LISTEN_FDS text and the descriptors), with a fresh channel registered under
/// `token`, mapping the client table `client_table`.
pub(super) fn start(
    exe: &Path,
    (index, count): (usize, usize),
    listeners: (&str, &[RawFd]),
    client_table: RawFd,
    registry: &Registry,
    token: Token,
    names: &str,
) -> io::Result<(Child, Channel)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let chan_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .env(env::WORKER, format!("{index}/{count}"))
        .env(env::LISTEN_FDS, listeners.0)
        .env(env::CHANNEL_FD, chan_fd.to_string())
        .env(env::CLIENT_TABLE_FD, client_table.to_string())
        .env(env::NAMES, names);
    let mut inherit = listeners.1.to_vec();
    inherit.extend([chan_fd, client_table]);
    let child = spawn_inheriting(&mut cmd, &inherit, Some(libc::SIGTERM))?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    let mut stream = UnixStream::from_std(ours);
    registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok((
        child,
        Channel {
            stream,
            input: Vec::new(),
            output: Vec::new(),
        },
    ))
}
