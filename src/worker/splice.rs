//! Zero-copy forwarding on Linux: splice(2) from the source socket into a pipe and from the
//! pipe into the destination socket, so bulk bytes never cross into user space.
//!
//! A direction uses a pipe only once it is moving bulk (a read filled its whole buffer) and
//! its buffer is empty, so ordering is kept. It keeps the pipe until its source ends; at most
//! ENVOY_SPLICE_PIPES exist per worker, because each costs two descriptors. When no pipe can
//! be had (the limit, or no descriptor to spare), the direction stays on the copy path. Elsewhere than Linux,
//! `Pipe::new` always fails and everything uses the copy path.

use std::io;
use std::os::fd::RawFd;

use crate::net::Io;

/// Bytes a direction keeps in its pipe at most (the default pipe capacity).
pub const PIPE_CAP: usize = 64 * 1024;

/// A pipe holding bytes in flight for one direction.
pub struct Pipe {
    #[cfg(target_os = "linux")]
    r: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    w: std::os::fd::OwnedFd,
    /// Bytes in the pipe, not yet written out.
    pub len: usize,
}

impl Pipe {
    /// A new non-blocking pipe.
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<Pipe> {
        let (r, w) = crate::sys::fd::pipe_nonblocking()?;
        Ok(Pipe { r, w, len: 0 })
    }

    /// No splice here.
    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Moves at most `max` bytes from socket `src` into the pipe.
    #[cfg(target_os = "linux")]
    pub fn fill_from(&mut self, src: RawFd, max: usize) -> Io {
        use std::os::fd::AsRawFd;
        let r = splice(src, self.w.as_raw_fd(), max);
        if let Io::Done(n) = r {
            self.len += n;
        }
        r
    }

    /// Moves at most what the pipe holds into socket `dst`.
    #[cfg(target_os = "linux")]
    pub fn drain_to(&mut self, dst: RawFd) -> Io {
        use std::os::fd::AsRawFd;
        let r = splice(self.r.as_raw_fd(), dst, self.len);
        if let Io::Done(n) = r {
            self.len = self.len.saturating_sub(n);
        }
        r
    }

    /// Unreachable elsewhere: `new` never succeeds.
    #[cfg(not(target_os = "linux"))]
    pub fn fill_from(&mut self, _src: RawFd, _max: usize) -> Io {
        Io::WouldBlock
    }

    /// Unreachable elsewhere: `new` never succeeds.
    #[cfg(not(target_os = "linux"))]
    pub fn drain_to(&mut self, _dst: RawFd) -> Io {
        Io::WouldBlock
    }
}

#[cfg(target_os = "linux")]
fn splice(from: RawFd, to: RawFd, len: usize) -> Io {
    if len == 0 {
        return Io::WouldBlock;
    }
    match crate::sys::splice::splice(from, to, len) {
        Ok(0) => Io::Closed,
        Ok(n) => Io::Done(n),
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Io::WouldBlock,
            Some(libc::EPIPE) => Io::Closed,
            _ => Io::Error(e),
        },
    }
}

/// Idle pipes kept for reuse, and how many exist at most.
pub struct PipePool {
    free: Vec<Pipe>,
    keep: usize,
    limit: usize,
    lent: usize,
}

impl PipePool {
    /// At most `limit` pipes at once (0: splice off), `keep` of them idle.
    pub fn new(limit: usize, keep: usize) -> PipePool {
        PipePool {
            free: Vec::new(),
            keep,
            limit,
            lent: 0,
        }
    }

    /// A pipe, or `None` (limit reached, or no descriptor to make one).
    pub fn take(&mut self) -> Option<Pipe> {
        if self.lent >= self.limit {
            return None;
        }
        let p = match self.free.pop() {
            Some(p) => p,
            None => Pipe::new().ok()?,
        };
        self.lent += 1;
        Some(p)
    }

    /// Gives back an empty pipe (a pipe with bytes in it is closed instead).
    pub fn give(&mut self, p: Pipe) {
        self.lent = self.lent.saturating_sub(1);
        if p.len == 0 && self.free.len() < self.keep {
            self.free.push(p);
        }
    }

    /// Pipes lent now.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Changes the limit (a reload); idle pipes beyond it are closed.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.free.truncate(limit.min(self.keep));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn bytes_go_through_a_pipe_in_order() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&data[..50_000]).unwrap();
        let mut pool = PipePool::new(1, 1);
        let mut p = pool.take().unwrap();
        assert!(pool.take().is_none(), "the limit holds");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut moved = 0;
        while moved < 50_000 {
            if let Io::Done(n) = p.fill_from(b.as_raw_fd(), PIPE_CAP - p.len) {
                assert!(n > 0);
            }
            while p.len > 0 {
                if let Io::Done(n) = p.drain_to(c.as_raw_fd()) {
                    moved += n;
                }
            }
        }
        let mut got = vec![0u8; 50_000];
        d.read_exact(&mut got).unwrap();
        assert_eq!(got, &data[..50_000]);
        pool.give(p);
        assert_eq!(pool.lent(), 0);
    }
}
