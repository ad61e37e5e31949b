//! The places log lines are written to, opened from a [`Target`]: a stream (stderr, a file,
//! a pipe) written in chunks of whole lines, or syslog, one datagram per line (RFC 5424,
//! or the BSD layout on Linux's local socket: `logger::syslog`). Opening never resolves a
//! name (the configuration did, at load).
//!
//! A write never waits: a sink that cannot take more says [`Outcome::Blocked`] and keeps
//! what it has not written for the next try; only [`Sink::wait_writable`] waits, and only as
//! long as it is told. What makes each kind of descriptor non-blocking is in
//! `sys::log_sink`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::queue::Batch;
use super::syslog::{self, Format, Header};
use super::target::{Facility, Target};
use crate::sys::log_sink::{self, Kind, SinkFd, PIPE_BUF};

/// Bytes per write to a regular file: whole lines, as many as fit.
const FILE_CHUNK: usize = 64 * 1024;
/// Largest datagram to the local syslog socket (syslogd and rsyslog take 8 KiB).
const LOCAL_DATAGRAM: usize = 8192;
/// Largest datagram over UDP (RFC 5426 asks collectors for 2048 at least; more may be cut
/// or fragmented on the way).
const UDP_DATAGRAM: usize = 2048;

/// What a write round ended with.
#[derive(Debug)]
pub enum Outcome {
    /// Everything given was written (or given up on, counted in the batch).
    Done,
    /// The sink takes no more now; the rest waits in the batch.
    Blocked,
    /// The sink failed; the caller gives up on the batch.
    Failed(io::Error),
}

/// An open sink.
pub struct Sink {
    inner: Inner,
    /// What to reopen; `None` for a descriptor handed over as it is.
    target: Option<Target>,
}

enum Inner {
    /// Whole lines, at most `max` bytes a write; `one_record`: a record a write
    /// (a datagram socket as stderr).
    Stream {
        fd: SinkFd,
        max: usize,
        one_record: bool,
    },
    Syslog(Syslog),
}

impl Sink {
    /// Opens `target`; `facility` is for syslog.
    pub fn open(target: &Target, facility: Facility) -> io::Result<Sink> {
        let inner = match target {
            Target::Stderr => stream(SinkFd::shared(io::stderr().as_fd())?),
            Target::File(path) => stream(SinkFd::open_append(path)?),
            Target::SyslogLocal(path) => Inner::Syslog(Syslog::local(path, facility)?),
            Target::SyslogUdp {
                addr: Some(addr), ..
            } => Inner::Syslog(Syslog::udp(*addr, facility)?),
            Target::SyslogUdp { host, .. } => {
                return Err(io::Error::other(format!("{host}: not resolved at load")))
            }
        };
        Ok(Sink {
            inner,
            target: Some(target.clone()),
        })
    }

    /// A sink on a descriptor shared with others (as stderr is), handled per kind.
    pub fn shared(fd: BorrowedFd<'_>) -> io::Result<Sink> {
        Ok(Sink {
            inner: stream(SinkFd::shared(fd)?),
            target: None,
        })
    }

    /// The target this sink was opened from.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Opens the target again (a rotated file's new file, a restarted syslogd's socket);
    /// on failure the sink stays as it was.
    pub fn reopen(&mut self) -> io::Result<()> {
        match (&mut self.inner, &self.target) {
            (Inner::Syslog(s), _) => s.reconnect(),
            (inner, Some(target @ (Target::Stderr | Target::File(_)))) => {
                let fd = match target {
                    Target::File(path) => SinkFd::open_append(path)?,
                    _ => SinkFd::shared(io::stderr().as_fd())?,
                };
                *inner = stream(fd);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes from `batch` until it is empty or the sink takes no more.
    pub fn write(&mut self, batch: &mut Batch) -> Outcome {
        match &mut self.inner {
            Inner::Stream {
                fd,
                max,
                one_record,
            } => write_stream(fd, *max, *one_record, batch),
            Inner::Syslog(s) => s.write(batch),
        }
    }

    /// Waits until the sink may take a write, at most `timeout`.
    pub fn wait_writable(&mut self, timeout: Duration) -> io::Result<bool> {
        match &mut self.inner {
            Inner::Stream { fd, .. } => fd.wait_writable(timeout),
            Inner::Syslog(s) if s.broken => {
                // nothing to poll until syslogd is back: try again a little later
                std::thread::sleep(timeout.min(Duration::from_millis(10)));
                s.reconnect().map(|()| true).or(Ok(false))
            }
            Inner::Syslog(s) => log_sink::wait_writable(s.socket.as_fd(), timeout),
        }
    }

    /// The kind of descriptor behind a stream sink (`None` for syslog).
    pub fn kind(&self) -> Option<Kind> {
        match &self.inner {
            Inner::Stream { fd, .. } => Some(fd.kind()),
            Inner::Syslog(_) => None,
        }
    }
}

fn stream(fd: SinkFd) -> Inner {
    let (max, one_record) = match fd.kind() {
        Kind::File | Kind::Other => (FILE_CHUNK, false),
        Kind::DatagramSocket => (usize::MAX, true),
        // shared streams read as lines: a write must be atomic
        Kind::Pipe | Kind::Terminal | Kind::StreamSocket => (PIPE_BUF, false),
    };
    Inner::Stream {
        fd,
        max,
        one_record,
    }
}

fn write_stream(fd: &SinkFd, max: usize, one_record: bool, batch: &mut Batch) -> Outcome {
    while !batch.is_empty() {
        let chunk = if one_record {
            batch.record().unwrap_or_default()
        } else {
            batch.chunk(max)
        };
        if chunk.is_empty() {
            batch.skip_record(); // cannot happen (every record ends in \n); never spin
            continue;
        }
        match fd.write(chunk) {
            Ok(0) => return Outcome::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => batch.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if one_record && e.raw_os_error() == Some(libc::EMSGSIZE) => {
                batch.skip_record();
            }
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::Done
}

/// A syslog socket with the fields every message repeats.
struct Syslog {
    socket: Socket,
    header: Header,
    max: usize,
    message: Vec<u8>,
    /// The local socket refused (syslogd restarting): connect again before the next send.
    broken: bool,
}

enum Socket {
    Local(UnixDatagram, PathBuf),
    Udp(UdpSocket, SocketAddr),
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Local(s, _) => s.as_fd(),
            Socket::Udp(s, _) => s.as_fd(),
        }
    }
}

impl Syslog {
    fn new(socket: Socket, format: Format, facility: Facility, max: usize) -> Syslog {
        Syslog {
            socket,
            header: Header {
                format,
                facility,
                host: syslog::host_field(log_sink::hostname().as_deref()),
                pid: std::process::id(),
                utc_offset_s: log_sink::utc_offset_s(),
            },
            max,
            message: Vec::with_capacity(512),
            broken: false,
        }
    }

    fn local(path: &Path, facility: Facility) -> io::Result<Syslog> {
        let s = connect_local(path)?;
        Ok(Syslog::new(
            Socket::Local(s, path.to_path_buf()),
            syslog::LOCAL_FORMAT,
            facility,
            LOCAL_DATAGRAM,
        ))
    }

    fn udp(addr: SocketAddr, facility: Facility) -> io::Result<Syslog> {
        Ok(Syslog::new(
            Socket::Udp(connect_udp(addr)?, addr),
            Format::Rfc5424,
            facility,
            UDP_DATAGRAM,
        ))
    }

    fn reconnect(&mut self) -> io::Result<()> {
        self.socket = match &self.socket {
            Socket::Local(_, path) => Socket::Local(connect_local(path)?, path.clone()),
            Socket::Udp(_, addr) => Socket::Udp(connect_udp(*addr)?, *addr),
        };
        self.broken = false;
        // a reopen is also when a change of daylight saving time is seen
        self.header.utc_offset_s = log_sink::utc_offset_s();
        Ok(())
    }

    fn write(&mut self, batch: &mut Batch) -> Outcome {
        if self.broken && self.reconnect().is_err() {
            return Outcome::Blocked;
        }
        while let Some(rest) = batch.record() {
            // one datagram a line: a dump's rows are records of their own for the collector too
            let line = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => rest.get(..=end).unwrap_or(rest),
                None => rest,
            };
            syslog::message(&mut self.message, line, &self.header, self.max);
            let sent = match &self.socket {
                Socket::Local(s, _) => s.send(&self.message),
                Socket::Udp(s, _) => s.send(&self.message),
            };
            match sent {
                Ok(_) => batch.advance(line.len()),
                Err(e) => match (e.kind(), e.raw_os_error(), &self.socket) {
                    (io::ErrorKind::WouldBlock, ..) => return Outcome::Blocked,
                    (_, Some(libc::ENOBUFS), _) => return Outcome::Blocked,
                    (io::ErrorKind::Interrupted, ..) => {}
                    (_, Some(libc::EMSGSIZE), _) => batch.skip_record(),
                    // the collector is down (an earlier datagram's ICMP): this one is lost
                    (io::ErrorKind::ConnectionRefused, _, Socket::Udp(..)) => batch.skip_record(),
                    // syslogd restarting: keep the lines, connect again on the next try
                    (
                        io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NotFound
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::ConnectionReset,
                        _,
                        Socket::Local(..),
                    ) => {
                        self.broken = true;
                        return Outcome::Blocked;
                    }
                    _ => return Outcome::Failed(e),
                },
            }
        }
        Outcome::Done
    }
}

fn connect_local(path: &Path) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}
