//! splice(2) (Linux): bytes from one descriptor to another through a pipe without entering
//! user space. The raw call only; what its result means for a session is `worker::splice`'s.

use std::io;
use std::os::fd::RawFd;

/// Moves at most `len` bytes from `from` to `to` (one of them a pipe), non-blocking.
/// `Ok(0)`: the source is at its end.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: splice between two descriptor numbers with null offsets: no user memory is
    // involved, and a wrong number is an EBADF.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
