//! The descriptor side of the log sinks: what kind of file a log descriptor is, and how to
//! write to it so that the caller never waits, without changing how the descriptor behaves
//! for the other processes that share it (the supervisor, the other workers, the shell).
//!
//! stderr is one open file description shared by every process that inherited it; its
//! `O_NONBLOCK` flag belongs to the description, so setting it on fd 2 would change what
//! the supervisor, the other workers and possibly the user's shell see. Per kind:
//!
//! * regular file: plain writes (a local file takes a write at once, it never waits on a
//!   reader). `/dev/null` and other character devices, see "terminal".
//! * socket (journald's stdout is a stream socket): `send(MSG_DONTWAIT | MSG_NOSIGNAL)`, a
//!   per-call flag; the description is untouched.
//! * pipe or FIFO: on Linux, a private description of the same pipe, opened through
//!   `/proc/self/fd/N` with `O_NONBLOCK` (the original's `O_APPEND`/`O_DIRECT` carried
//!   over). Where that is impossible (FreeBSD has no `/proc/self/fd`, or Linux without
//!   /proc): `O_NONBLOCK` on the shared description. Its other holders are sluice's own
//!   processes, whose logger handles `EAGAIN`; the flag stays set on that pipe.
//! * terminal (any character device): on Linux a private description as for a pipe;
//!   elsewhere `poll(POLLOUT, 0)` before each write, because a terminal's description is
//!   the user's shell's too and must never become non-blocking under it.
//!
//! Never blocks, except in [`wait_writable`], which is bounded by its timeout.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::Duration;

/// Bytes a pipe writes atomically: 4096 on Linux, 512 on FreeBSD (POSIX's minimum).
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// What a log descriptor is, which decides how much one write may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: any size per write.
    File,
    /// A pipe or FIFO: whole lines, at most [`PIPE_BUF`] bytes a write, so that the writes
    /// of several processes sharing it never interleave.
    Pipe,
    /// A character device (a terminal, /dev/null).
    Terminal,
    /// A stream socket (journald's stdout): read as a stream of lines like a pipe.
    StreamSocket,
    /// A datagram socket: one record per write.
    DatagramSocket,
    /// Anything else (a block device): written like a file.
    Other,
}

/// How a write is kept from waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The kind never makes a writer wait on a reader (regular files).
    Plain,
    /// `O_NONBLOCK` on a description only this process holds.
    Private,
    /// `O_NONBLOCK` on a description shared with other processes.
    Shared,
    /// `send(MSG_DONTWAIT)`: per call, the description untouched.
    DontWait,
    /// `poll(POLLOUT, 0)` first: the description untouched.
    PollFirst,
}

enum Handle {
    File(File),
    Socket(socket2::Socket),
}

/// A log descriptor with what it is and how it is written.
pub struct SinkFd {
    handle: Handle,
    kind: Kind,
    mode: Mode,
}

impl SinkFd {
    /// A sink on an inherited descriptor (stderr): shared with other processes, so it is
    /// handled per kind as the module header says. `fd` itself is left as it was, except
    /// for the shared `O_NONBLOCK` fallback on pipes.
    pub fn shared(fd: BorrowedFd<'_>) -> io::Result<SinkFd> {
        let dup = File::from(fd.try_clone_to_owned()?);
        let kind = kind_of(&dup)?;
        let (handle, mode) = match kind {
            Kind::File | Kind::Other => (Handle::File(dup), Mode::Plain),
            Kind::StreamSocket | Kind::DatagramSocket => {
                (Handle::Socket(OwnedFd::from(dup).into()), Mode::DontWait)
            }
            Kind::Pipe | Kind::Terminal => match reopen_private(&dup) {
                Ok(own) => (Handle::File(own), Mode::Private),
                Err(_) if kind == Kind::Pipe => {
                    crate::sys::fd::set_nonblocking(dup.as_raw_fd())?;
                    (Handle::File(dup), Mode::Shared)
                }
                Err(_) => (Handle::File(dup), Mode::PollFirst),
            },
        };
        Ok(SinkFd { handle, kind, mode })
    }

    /// A sink on a path this process opens itself, for appending (created 0640 if
    /// missing). Opened non-blocking, so a FIFO gets a private non-blocking description
    /// (and a FIFO with no reader is an error, `ENXIO`, instead of a wait).
    pub fn open_append(path: &Path) -> io::Result<SinkFd> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        let kind = kind_of(&file)?;
        let mode = match kind {
            Kind::File | Kind::Other => Mode::Plain,
            _ => Mode::Private,
        };
        Ok(SinkFd {
            handle: Handle::File(file),
            kind,
            mode,
        })
    }

    /// What the descriptor is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How writes are kept from waiting.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One write of `buf` (or less): `WouldBlock` when the reader is behind.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match (&self.handle, self.mode) {
            (Handle::Socket(s), _) => s.send_with_flags(buf, libc::MSG_DONTWAIT | NOSIGNAL),
            (Handle::File(f), Mode::PollFirst) => {
                if wait_writable(f.as_fd(), Duration::ZERO)? {
                    (&*f).write(buf)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            (Handle::File(f), _) => (&*f).write(buf),
        }
    }

    /// Waits until a write may go through, at most `timeout`; true when it may.
    pub fn wait_writable(&self, timeout: Duration) -> io::Result<bool> {
        wait_writable(self.as_fd(), timeout)
    }
}

impl AsFd for SinkFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.handle {
            Handle::File(f) => f.as_fd(),
            Handle::Socket(s) => s.as_fd(),
        }
    }
}

/// A broken pipe or reset socket is an error to report, never a signal to die of.
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;

fn kind_of(file: &File) -> io::Result<Kind> {
    let t = file.metadata()?.file_type();
    Ok(if t.is_file() {
        Kind::File
    } else if t.is_fifo() {
        Kind::Pipe
    } else if t.is_char_device() {
        Kind::Terminal
    } else if t.is_socket() {
        match socket2::SockRef::from(file).r#type()? {
            socket2::Type::DGRAM => Kind::DatagramSocket,
            _ => Kind::StreamSocket,
        }
    } else {
        Kind::Other
    })
}

/// A new open file description of the pipe or terminal `file` refers to, non-blocking,
/// with the original's `O_APPEND` (and on Linux `O_DIRECT`, a packet-mode pipe) carried
/// over. Checked to be the same object (device and inode) before it is trusted.
#[cfg(target_os = "linux")]
fn reopen_private(file: &File) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let own = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    use std::os::unix::fs::MetadataExt as _;
    let (a, b) = (file.metadata()?, own.metadata()?);
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(io::Error::other("/proc/self/fd reopened another file"));
    }
    let carried = status_flags(file.as_fd())? & (libc::O_APPEND | libc::O_DIRECT);
    if carried != 0 {
        set_status_flags(own.as_fd(), status_flags(own.as_fd())? | carried)?;
    }
    Ok(own)
}

/// FreeBSD's `/dev/fd/N` duplicates unless fdescfs is mounted with `nodup`: there is no
/// portable way to a second description of an anonymous pipe.
#[cfg(not(target_os = "linux"))]
fn reopen_private(_file: &File) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The descriptor's file status flags (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: fcntl(F_GETFL) on a descriptor the borrow keeps open; no memory is passed.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl)
}

/// Sets the descriptor's file status flags (`F_SETFL`): they belong to the open file
/// description, so every process sharing it sees the change.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFL) on a descriptor the borrow keeps open; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` takes a write (or reports an error a write would return), at most
/// `timeout` (zero: just look). True when it does.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout
        .as_nanos()
        .div_ceil(1_000_000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for a descriptor the borrow keeps open.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => {
            Ok(pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
        }
    }
}

/// Local time's offset from UTC now, in seconds (`localtime_r`'s `tm_gmtoff`); 0 when it
/// cannot be told. The first call may read the time zone file: not on the loop's hot path.
pub fn utc_offset_s() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Ok(now) = libc::time_t::try_from(now) else {
        return 0;
    };
    // SAFETY: tm is plain data (integers and a pointer libc may set); all-zero is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to values we own, valid for the call.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// This machine's host name, if it has a printable one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the array we own.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(buf.get(..len)?).ok()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_pipe_gets_a_private_non_blocking_description() {
        let (r, w) = crate::sys::fd::pipe().unwrap();
        let sink = SinkFd::shared(w.as_fd()).unwrap();
        assert_eq!(sink.kind(), Kind::Pipe);
        #[cfg(target_os = "linux")]
        {
            assert_eq!(sink.mode(), Mode::Private);
            // the inherited description stays blocking
            assert_eq!(status_flags(w.as_fd()).unwrap() & libc::O_NONBLOCK, 0);
        }
        let mut n = 0;
        loop {
            match sink.write(&[b'x'; 1024]) {
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(n >= 4096, "{n}");
        assert!(!sink.wait_writable(Duration::ZERO).unwrap());
        let mut buf = vec![0; n];
        File::from(r).read_exact(&mut buf).unwrap();
        assert!(sink.wait_writable(Duration::ZERO).unwrap());
    }

    #[test]
    fn a_socket_is_sent_to_without_waiting() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let sink = SinkFd::shared(a.as_fd()).unwrap();
        assert_eq!(
            (sink.kind(), sink.mode()),
            (Kind::StreamSocket, Mode::DontWait)
        );
        let mut sent = 0;
        loop {
            match sink.write(&[b'y'; 4096]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent > 0);
        let mut buf = [0; 16];
        b.read_exact(&mut buf).unwrap();
    }

    #[test]
    fn a_regular_file_is_written_plainly() {
        let path = std::env::temp_dir().join(format!("sluice-sinkfd-{}", std::process::id()));
        let sink = SinkFd::open_append(&path).unwrap();
        assert_eq!((sink.kind(), sink.mode()), (Kind::File, Mode::Plain));
        assert_eq!(sink.write(b"one\n").unwrap(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_utc_offset_is_within_a_day() {
        assert!(utc_offset_s().abs() < 86_400);
    }

    #[test]
    fn the_host_name_is_known() {
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
