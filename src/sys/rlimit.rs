//! Resource limits of this process (`getrlimit(2)`, `setrlimit(2)`): the open-file limit,
//! read for `ENVOY_MAX_SESSIONS=auto` and set once at start (`ENVOY_MAX_FILES`). Children
//! inherit what is set here; nothing here decides the value.

use std::io;

/// The soft and hard limits on open descriptors; `None` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// What the process may open now.
    pub soft: Option<u64>,
    /// How far the soft limit may be raised without privilege.
    pub hard: Option<u64>,
}

/// The soft limit on open descriptors (RLIMIT_NOFILE), or `None` when it cannot be read.
pub fn open_files() -> Option<usize> {
    let lim = read().ok()?;
    // An unlimited soft limit becomes a huge count, as it always did.
    Some(lim.rlim_cur as usize)
}

/// How many descriptors this process holds now (Linux: `/proc/self/fd`; elsewhere `None`).
/// It reads a directory: per report, never per event.
pub fn open_descriptors() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // the directory's own descriptor, open while it was read
    Some(n.saturating_sub(1))
}

/// Both open-file limits now.
pub fn open_files_limits() -> io::Result<OpenFiles> {
    let lim = read()?;
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then(|| count(v));
    Ok(OpenFiles {
        soft: finite(lim.rlim_cur),
        hard: finite(lim.rlim_max),
    })
}

/// Sets both open-file limits (`None`: unlimited). Raising the hard limit needs privilege
/// (root, or CAP_SYS_RESOURCE); the kernel caps both (Linux: fs.nr_open).
pub fn set_open_files_limits(soft: u64, hard: Option<u64>) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: limit(soft),
        rlim_max: hard.map_or(libc::RLIM_INFINITY, limit),
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// rlim_t is u64 on Linux and i64 on FreeBSD.
#[cfg(not(target_os = "freebsd"))]
fn count(v: libc::rlim_t) -> u64 {
    v
}
#[cfg(target_os = "freebsd")]
fn count(v: libc::rlim_t) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
#[cfg(not(target_os = "freebsd"))]
fn limit(v: u64) -> libc::rlim_t {
    v
}
#[cfg(target_os = "freebsd")]
fn limit(v: u64) -> libc::rlim_t {
    libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY)
}

fn read() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(open_files().is_some_and(|n| n > 0));
        let l = open_files_limits().unwrap();
        assert!(l.soft.unwrap_or(u64::MAX) <= l.hard.unwrap_or(u64::MAX));
    }
}
