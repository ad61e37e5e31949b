//! Random bytes from the kernel (`getrandom(2)`, on Linux and FreeBSD alike), for values that
//! must differ between processes: read once at start, never on a session's path.
//!
//! Never blocks once the system has booted (the pool is initialised by then) and never
//! falls back to something guessable without saying so: the caller learns of a failure.

use std::io;

/// Fills `buf` with random bytes from the kernel.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        // SAFETY: getrandom writes at most `rest.len()` bytes into memory we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_draws_differ_and_fill_the_buffer() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 16]);
    }
}
