//! Resource limits of this process, read through `getrlimit(2)`. Reads only: nothing here
//! raises or lowers a limit.

/// The soft limit on open descriptors (RLIMIT_NOFILE), or `None` when it cannot be read.
pub fn open_files() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and has no other effect.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    // rlim_t is u64 on Linux and i64 on FreeBSD; RLIM_INFINITY becomes a huge count.
    ok.then_some(lim.rlim_cur as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(open_files().is_some_and(|n| n > 0));
    }
}
