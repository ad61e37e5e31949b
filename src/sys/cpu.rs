//! CPU pinning: this process onto one of the CPUs it is allowed to run on, so that `taskset`
//! or `cpuset` applied to the supervisor is respected by its workers. Never pins a thread
//! other than the caller's process, and never widens the allowed set.

use std::io;

/// The last OS error, named after the call that failed (the log shows which).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn os_error(call: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Pins this process to the `index % n`-th of the `n` CPUs it may run on; returns that CPU.
/// `Ok(None)` where the OS has no affinity call we use.
#[cfg(target_os = "linux")]
pub fn pin_to_allowed(index: usize) -> io::Result<Option<usize>> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size` bytes into the set we own (pid 0: us).
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return Err(os_error("sched_getaffinity"));
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the set's capacity.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else {
        return Ok(None);
    };
    // SAFETY: as above, an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the range below CPU_SETSIZE, the set's capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads `size` bytes from the set we own.
    if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
        return Err(os_error("sched_setaffinity"));
    }
    Ok(Some(cpu))
}

/// Pins this process to the `index % n`-th of the `n` CPUs of its inherited cpuset; returns
/// that CPU. `Ok(None)` where the OS has no affinity call we use.
#[cfg(target_os = "freebsd")]
pub fn pin_to_allowed(index: usize) -> io::Result<Option<usize>> {
    let size = std::mem::size_of::<libc::cpuset_t>();
    // SAFETY: an all-zero cpuset_t is a valid empty set.
    let mut allowed: libc::cpuset_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpuset_getaffinity writes at most `size` bytes into the set we own (id -1: us).
    let got = unsafe {
        libc::cpuset_getaffinity(
            libc::CPU_LEVEL_WHICH,
            libc::CPU_WHICH_PID,
            -1,
            size,
            &mut allowed,
        )
    };
    if got != 0 {
        return Err(os_error("cpuset_getaffinity"));
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the set's capacity.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else {
        return Ok(None);
    };
    // SAFETY: as above, an empty set.
    let mut set: libc::cpuset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the range below CPU_SETSIZE, the set's capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: cpuset_setaffinity reads `size` bytes from the set we own (id -1: us).
    let set_ok = unsafe {
        libc::cpuset_setaffinity(libc::CPU_LEVEL_WHICH, libc::CPU_WHICH_PID, -1, size, &set)
    };
    if set_ok != 0 {
        return Err(os_error("cpuset_setaffinity"));
    }
    Ok(Some(cpu))
}

/// No affinity call used here.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub fn pin_to_allowed(_index: usize) -> io::Result<Option<usize>> {
    Ok(None)
}
