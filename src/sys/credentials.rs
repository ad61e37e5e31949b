//! Changing who this process is: its supplementary groups, group and user ids and root
//! directory; on Linux its capability sets (`capset(2)` through a raw syscall: libc has no
//! wrapper), the bounding and ambient sets and `no_new_privs`; on FreeBSD `no_new_privs`
//! through `procctl(2)` where the kernel has it (14.0 and later). Each call is checked and
//! returns the OS error; what to call and in which order belongs to `privilege`. Nothing
//! here can give the process a privilege it does not hold already.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces the supplementary groups with `groups` (needs root, or CAP_SETGID on Linux).
pub fn set_groups(groups: &[u32]) -> io::Result<()> {
    // The count is a size_t on Linux, an int on FreeBSD.
    #[cfg(target_os = "linux")]
    let n = groups.len();
    #[cfg(not(target_os = "linux"))]
    let n = libc::c_int::try_from(groups.len()).map_err(io::Error::other)?;
    // SAFETY: setgroups reads `n` group ids from a slice that holds that many.
    check(unsafe { libc::setgroups(n, groups.as_ptr()) })
}

/// Sets the real, effective and saved group ids (as root; otherwise the effective one only).
pub fn set_gid(gid: u32) -> io::Result<()> {
    // SAFETY: setgid takes an integer; no memory involved.
    check(unsafe { libc::setgid(gid) })
}

/// Sets the real, effective and saved user ids (as root; otherwise the effective one only).
/// On Linux, going from root to another user clears the permitted, effective and ambient
/// capability sets, unless [`keep_capabilities_across_setuid`] said otherwise (permitted
/// only).
pub fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid takes an integer; no memory involved. glibc and FreeBSD's libc apply
    // it to every thread of the process.
    check(unsafe { libc::setuid(uid) })
}

/// Makes `dir` this process's root directory and moves into it (`chroot` then `chdir /`),
/// so that no descriptor-less path reaches outside it.
pub fn change_root(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: chroot reads a NUL-terminated path we own.
    check(unsafe { libc::chroot(c.as_ptr()) })?;
    std::env::set_current_dir("/")
}

/// Sets `no_new_privs`: from now on no exec can grant a privilege (set-user-ID bits and file
/// capabilities are ignored), and it cannot be unset. `Ok(false)` where the kernel has no
/// such switch (FreeBSD before 14.0, other systems).
#[cfg(target_os = "linux")]
pub fn no_new_privs() -> io::Result<bool> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(true)
}

/// See the Linux version.
#[cfg(target_os = "freebsd")]
pub fn no_new_privs() -> io::Result<bool> {
    let mut enable: libc::c_int = libc::PROC_NO_NEW_PRIVS_ENABLE;
    // SAFETY: procctl on our own pid reads one int we own.
    let rc = unsafe {
        libc::procctl(
            libc::P_PID,
            0,
            libc::PROC_NO_NEW_PRIVS_CTL,
            (&mut enable as *mut libc::c_int).cast(),
        )
    };
    match check(rc) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// See the Linux version.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub fn no_new_privs() -> io::Result<bool> {
    Ok(false)
}

/// Linux capability numbers this crate names (linux/capability.h).
#[cfg(target_os = "linux")]
pub mod cap {
    /// Change the capability sets (and the bounding set).
    pub const SETPCAP: u32 = 8;
    /// Bind a port below 1024.
    pub const NET_BIND_SERVICE: u32 = 10;
    /// chroot(2).
    pub const SYS_CHROOT: u32 = 18;
    /// The bit of `cap` in a set.
    pub const fn bit(cap: u32) -> u64 {
        1 << cap
    }
}

/// A thread's three capability sets, as bit masks (bit n: capability n).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    /// What the thread uses now.
    pub effective: u64,
    /// What it may use.
    pub permitted: u64,
    /// What an exec may pass on (with file capabilities or the ambient set).
    pub inheritable: u64,
}

#[cfg(target_os = "linux")]
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: 64-bit sets, as two 32-bit halves.
#[cfg(target_os = "linux")]
const CAP_VERSION_3: u32 = 0x2008_0522;

/// This thread's capability sets.
#[cfg(target_os = "linux")]
pub fn capabilities() -> io::Result<CapSets> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (the version 3 layout) into `data`, which holds
    // two, and reads the header we own.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let [lo, hi] = data;
    let join = |l: u32, h: u32| u64::from(h) << 32 | u64::from(l);
    Ok(CapSets {
        effective: join(lo.effective, hi.effective),
        permitted: join(lo.permitted, hi.permitted),
        inheritable: join(lo.inheritable, hi.inheritable),
    })
}

/// Sets this thread's capability sets. Lowering is always allowed; the kernel refuses any
/// raise beyond the permitted set (EPERM).
#[cfg(target_os = "linux")]
pub fn set_capabilities(sets: CapSets) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e, eh) = split(sets.effective);
    let (p, ph) = split(sets.permitted);
    let (i, ih) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e,
            permitted: p,
            inheritable: i,
        },
        CapData {
            effective: eh,
            permitted: ph,
            inheritable: ih,
        },
    ];
    // SAFETY: capset reads the header and two CapData (the version 3 layout) we own.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// With `on`, a switch from root to another user keeps the permitted capability set
/// (PR_SET_KEEPCAPS); exec always resets it.
#[cfg(target_os = "linux")]
pub fn keep_capabilities_across_setuid(on: bool) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_KEEPCAPS, 0 or 1) takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) })
}

/// Empties the ambient set (what an exec of an ordinary binary keeps). A kernel without
/// ambient capabilities (before 4.3) has nothing to empty.
#[cfg(target_os = "linux")]
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes integers only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    match check(rc) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// Adds `cap` to the ambient set: it must be permitted and inheritable already.
#[cfg(target_os = "linux")]
pub fn raise_ambient(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap) takes integers only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            libc::c_ulong::from(cap),
            0,
            0,
        )
    })
}

/// Drops from the bounding set (the most any later exec may grant) every capability not in
/// `keep`. Needs CAP_SETPCAP in the effective set (EPERM otherwise).
#[cfg(target_os = "linux")]
pub fn limit_bounding_set(keep: u64) -> io::Result<()> {
    for cap in 0..64u32 {
        // SAFETY: prctl(PR_CAPBSET_READ, cap) takes integers only.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) };
        if present < 0 {
            break; // beyond the kernel's last capability
        }
        if present == 1 && keep & cap::bit(cap) == 0 {
            // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers only.
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn capabilities_read_back_as_set() {
        // Lowering the inheritable set to what it is is always allowed: a round trip.
        let now = capabilities().unwrap();
        assert_eq!(now.effective & !now.permitted, 0);
        set_capabilities(now).unwrap();
        assert_eq!(capabilities().unwrap(), now);
    }

    #[test]
    fn a_missing_root_directory_is_an_error() {
        assert!(change_root(Path::new("/nonexistent/sluice-test")).is_err());
    }
}
