//! Descriptor plumbing: pipes, close-on-exec, non-blocking, the file-creation mask, and
//! adopting the descriptors a parent handed over through the environment. It never decides
//! what a descriptor is for, and never keeps one.
//!
//! Flag changes take a raw descriptor number: fcntl(2) involves no user memory, so a wrong
//! number is an `EBADF`, never undefined behaviour.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Adopts the descriptor whose number environment variable `var` holds, if it is set: the
/// variable is removed (so the same number is never adopted twice), the descriptor must be
/// open, and it becomes close-on-exec (a child inherits only what is passed on purpose).
pub fn adopt_inherited(var: &str) -> io::Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(None);
    };
    std::env::remove_var(var);
    let fd = parse_fd(var, &value.to_string_lossy())?;
    adopt(fd).map(Some)
}

/// Like [`adopt_inherited`] for a comma-separated list of numbers; empty when unset.
pub fn adopt_inherited_list(var: &str) -> io::Result<Vec<OwnedFd>> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(Vec::new());
    };
    std::env::remove_var(var);
    let value = value.to_string_lossy();
    let numbers = value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse_fd(var, s))
        .collect::<io::Result<Vec<RawFd>>>()?;
    numbers.into_iter().map(adopt).collect()
}

fn parse_fd(var: &str, s: &str) -> io::Result<RawFd> {
    s.trim()
        .parse()
        .ok()
        .filter(|&fd: &RawFd| fd >= 0)
        .ok_or_else(|| io::Error::other(format!("{var}={s:?}: not a descriptor number")))
}

fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF if `fd` is not
    // open, which is what we check.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open, and it was handed to this process to own through an environment
    // variable that the callers remove before adopting, so nothing else holds it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_raw_fd())?;
    Ok(owned)
}

/// Sets FD_CLOEXEC: the descriptor closes when this process execs.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    set_fd_flags(fd, libc::FD_CLOEXEC, true)
}

/// Clears FD_CLOEXEC so `fd` survives exec. Async-signal-safe (fcntl only), so that it may
/// run between fork and exec.
pub(crate) fn inheritable(fd: RawFd) -> io::Result<()> {
    set_fd_flags(fd, libc::FD_CLOEXEC, false)
}

fn set_fd_flags(fd: RawFd, flag: libc::c_int, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; no memory is involved (see the module header).
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFD);
        let new = if on { fl | flag } else { fl & !flag };
        if fl < 0 || (new != fl && libc::fcntl(fd, libc::F_SETFD, new) < 0) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; no memory is involved (see the module header).
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A new pipe (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: pipe writes two new descriptors into the array we own, of the length it expects.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [r, w] = fds;
    // SAFETY: both were just created by pipe(2) and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
    set_cloexec(r.as_raw_fd())?;
    set_cloexec(w.as_raw_fd())?;
    Ok((r, w))
}

/// A new pipe (read end, write end), both non-blocking and close-on-exec: one system call on
/// Linux (pipe2), three elsewhere.
pub fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: pipe2 writes two new descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let [r, w] = fds;
        // SAFETY: both were just created by pipe2(2) and are owned by nobody else.
        Ok(unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (r, w) = pipe()?;
        set_nonblocking(r.as_raw_fd())?;
        set_nonblocking(w.as_raw_fd())?;
        Ok((r, w))
    }
}

/// Runs `f` with the file-creation mask set to `mask`, then restores the old one: files and
/// sockets `f` creates get their permissions from the start, with no window in which they
/// are wider. The mask is per process; the loops that call this are single-threaded.
pub fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps this process's file-creation mask; it cannot fail.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above, putting the old mask back.
    unsafe { libc::umask(old) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_takes_an_open_descriptor_once() {
        let (r, _w) = pipe().unwrap();
        let var = "SLUICE_TEST_ADOPT_FD";
        let n = std::os::fd::IntoRawFd::into_raw_fd(r);
        std::env::set_var(var, n.to_string());
        let fd = adopt_inherited(var).unwrap().unwrap();
        assert_eq!(fd.as_raw_fd(), n);
        assert!(std::env::var_os(var).is_none(), "the variable is consumed");
        assert!(adopt_inherited(var).unwrap().is_none());
        // A number far above any this test process opens: not open, so refused.
        std::env::set_var(var, "1000000");
        assert!(
            adopt_inherited(var).is_err(),
            "a closed descriptor is refused"
        );
        std::env::set_var(var, "x");
        assert!(adopt_inherited(var).is_err());
    }

    #[test]
    fn flags_are_set_and_cleared() {
        let (r, _w) = pipe_nonblocking().unwrap();
        let fd = r.as_raw_fd();
        // SAFETY: reading the flags of a descriptor this test holds.
        let cloexec = || unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
        assert!(cloexec());
        inheritable(fd).unwrap();
        assert!(!cloexec());
        set_cloexec(fd).unwrap();
        assert!(cloexec());
        // SAFETY: as above.
        let status = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(status & libc::O_NONBLOCK != 0);
    }
}
