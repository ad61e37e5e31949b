//! Signals into the event loop through a self-pipe: the handler only writes the signal
//! number to a non-blocking pipe (async-signal-safe); the loop reads it as an ordinary
//! readiness event. What each signal means is the loop's business, not this module's.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end, for the handler. -1 when no pipe is installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = signo as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// The read end of the self-pipe; register it with the loop and call [`SignalPipe::drain`].
pub struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Installs handlers for `signals` writing into a fresh non-blocking pipe.
    pub fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let (read, write) = super::fd::pipe_nonblocking()?;
        WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for &s in signals {
            // SAFETY: an empty sigaction with our handler; SA_RESTART keeps other calls going.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(s, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    /// The descriptor to register for readability.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Every signal received since the last call, in order.
    pub fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a buffer we own, from a descriptor we own.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend(buf.iter().take(n as usize).map(|&b| libc::c_int::from(b)));
        }
    }
}
