//! A timer with microsecond precision for open-loop pacing: a `timerfd` in the same `Poll`.
//!
//! `Poll::poll`'s own timeout is rounded up to whole milliseconds by epoll, which would make
//! a 5,000/s schedule leave in bursts of five and add up to a millisecond to every latency
//! measured from the moment a request was due.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

pub struct Pacer {
    fd: OwnedFd,
}

impl Pacer {
    pub fn new(poll: &Poll, token: Token) -> io::Result<Pacer> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        poll.registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Pacer { fd })
    }

    /// Fires once, `after` from now (at least 1 ns: zero would disarm the timer).
    pub fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and pointers; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Consumes the expiry so that the next one is a new edge.
    pub fn clear(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64; EAGAIN when not expired is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                8,
            )
        };
    }
}
