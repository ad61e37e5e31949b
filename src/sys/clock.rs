//! The machine's monotonic clock (`CLOCK_MONOTONIC`), the same in every process of the
//! machine: times written into memory shared between processes are read against it. Read
//! once at a process's start; the loops then add their own elapsed time (std's `Instant`
//! counts on the same clock), never calling it per session.

/// Milliseconds of `CLOCK_MONOTONIC` (since boot, on Linux and FreeBSD alike).
pub fn monotonic_ms() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes into the one we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; CLOCK_MONOTONIC always exists, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_moves_forward_with_instant() {
        let (a, i) = (super::monotonic_ms(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, d) = (super::monotonic_ms(), i.elapsed().as_millis() as u64);
        assert!(b >= a + 20 && b - a <= d + 2, "{a} {b} {d}");
    }
}
