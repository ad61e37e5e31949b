//! Processes: starting a child that inherits chosen descriptors across exec (and dies with
//! its parent where the OS offers it) and signalling a child. Never
//! waits for a child; the caller reaps.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Spawns `cmd` with the descriptors `inherit` kept open across exec (every other descriptor
/// of ours is close-on-exec and stays behind). With `parent_death`, the child gets that
/// signal when this process dies (Linux; elsewhere the child outlives us and is told by the
/// closed channel instead).
pub fn spawn_inheriting(
    cmd: &mut Command,
    inherit: &[RawFd],
    parent_death: Option<libc::c_int>,
) -> io::Result<Child> {
    let fds = inherit.to_vec();
    let hook = move || -> io::Result<()> {
        for &fd in &fds {
            super::fd::inheritable(fd)?;
        }
        if let Some(sig) = parent_death {
            die_with_parent(sig)?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes fcntl and prctl calls and allocates nothing (the descriptor
    // list was copied before the fork).
    unsafe {
        cmd.pre_exec(hook);
    }
    cmd.spawn()
}

/// This process gets `sig` when its parent dies (Linux; a no-op elsewhere). Linux forgets
/// it when the process changes its user or group ids: a worker that dropped privileges sets
/// it again.
#[cfg(target_os = "linux")]
pub fn die_with_parent(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes the signal number by value; no memory involved.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_sig: libc::c_int) -> io::Result<()> {
    Ok(())
}

/// The parent's pid (1, or a subreaper's, once the parent is gone).
pub fn parent_pid() -> u32 {
    // SAFETY: getppid takes nothing and cannot fail.
    let pid = unsafe { libc::getppid() };
    u32::try_from(pid).unwrap_or(0)
}

/// True while process `pid` exists (a zombie not yet reaped included): `kill(pid, 0)`
/// succeeds, or is refused for lack of permission (the process is someone else's).
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks; two integers, no memory involved.
    let sent = unsafe { libc::kill(pid, 0) } == 0;
    sent || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends `sig` to process `pid` (a child of ours: its pid cannot be reused before we reap it).
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) takes two integers; no memory involved.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_child_inherits_the_named_descriptor_only() {
        let (r, w) = super::super::fd::pipe().unwrap();
        let (r2, _w2) = super::super::fd::pipe().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "[ -e /dev/fd/{} ] && [ ! -e /dev/fd/{} ]",
            w.as_raw_fd(),
            r2.as_raw_fd()
        ));
        let mut child = spawn_inheriting(&mut cmd, &[w.as_raw_fd()], Some(libc::SIGTERM)).unwrap();
        assert!(child.wait().unwrap().success());
        drop(r);
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        assert!(is_alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(!is_alive(0));
    }
}
