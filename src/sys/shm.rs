//! Memory shared between processes: an anonymous shared-memory object (Linux `memfd_create`,
//! FreeBSD `shm_open(SHM_ANON)`), sized with `ftruncate` and mapped `MAP_SHARED`, seen as a
//! slice of `AtomicU64` words. Its descriptor is what crosses `exec`: a child maps the same
//! pages by adopting it. Nothing here knows what the words mean; it never maps anything but
//! a whole object of whole words, and never hands out the memory other than as atomics.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

const WORD: usize = std::mem::size_of::<AtomicU64>();

/// A shared mapping of `len` words, and the descriptor that names it.
pub struct SharedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
    fd: OwnedFd,
}

impl SharedWords {
    /// A new object of `words` zeroed words, mapped. Close-on-exec: a child gets it only
    /// when it is passed on purpose. On Linux its size is sealed, so that no holder can
    /// shrink it under the others' mappings.
    pub fn create(words: usize) -> io::Result<SharedWords> {
        let bytes = words
            .checked_mul(WORD)
            .and_then(|b| libc::off_t::try_from(b).ok())
            .filter(|&b| b > 0)
            .ok_or_else(|| io::Error::other("shared memory size out of range"))?;
        let fd = anonymous()?;
        // SAFETY: ftruncate on a descriptor we own; no memory involved.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), bytes) } != 0 {
            return Err(io::Error::last_os_error());
        }
        seal_size(fd.as_raw_fd())?;
        map(fd, words)
    }

    /// Maps the object a parent handed over (its size is the object's).
    pub fn adopt(fd: OwnedFd) -> io::Result<SharedWords> {
        // SAFETY: fstat fills the zeroed struct we own; `fd` is open (we own it).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = usize::try_from(st.st_size).unwrap_or(0);
        if bytes == 0 || bytes % WORD != 0 {
            return Err(io::Error::other(format!(
                "shared memory of {bytes} bytes: not whole words"
            )));
        }
        map(fd, bytes / WORD)
    }

    /// The words. Every process that maps the object reads and writes them as atomics only.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is the start of a live MAP_SHARED mapping of `len` words (page
        // aligned, so aligned for AtomicU64), unmapped only in Drop, after every borrow of
        // `self` ended. AtomicU64 has u64's size and layout and allows the concurrent
        // access other processes make; they go through atomics too (the same code).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The descriptor to hand to a child.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; nothing borrows it any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len * WORD);
        }
    }
}

fn map(fd: OwnedFd, words: usize) -> io::Result<SharedWords> {
    let bytes = words * WORD;
    // SAFETY: a new shared mapping of the whole object; the kernel chooses the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(p.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap: null"))?;
    Ok(SharedWords {
        ptr,
        len: words,
        fd,
    })
}

#[cfg(target_os = "linux")]
fn anonymous() -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; the flags are plain integers.
    let fd = unsafe {
        libc::memfd_create(
            c"sluice-clients".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(target_os = "linux"))]
fn anonymous() -> io::Result<OwnedFd> {
    // SAFETY: SHM_ANON asks for an object without a name; no memory of ours is read.
    let fd = unsafe { libc::shm_open(libc::SHM_ANON, libc::O_RDWR, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    super::fd::set_cloexec(fd.as_raw_fd())?;
    Ok(fd)
}

#[cfg(target_os = "linux")]
fn seal_size(fd: RawFd) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor number with integer arguments; no memory involved.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn seal_size(_fd: RawFd) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_object_see_each_others_words() {
        let a = SharedWords::create(1000).unwrap();
        assert_eq!(a.words().len(), 1000);
        assert!(a.words().iter().all(|w| w.load(Ordering::Relaxed) == 0));
        // SAFETY: dup of a descriptor we hold, for a second owner in this test.
        let dup = unsafe { libc::dup(a.fd()) };
        assert!(dup >= 0);
        // SAFETY: the duplicate is ours alone.
        let b = SharedWords::adopt(unsafe { OwnedFd::from_raw_fd(dup) }).unwrap();
        assert_eq!(b.words().len(), 1000);
        a.words()[999].store(7, Ordering::Relaxed);
        assert_eq!(b.words()[999].fetch_add(1, Ordering::Relaxed), 7);
        assert_eq!(a.words()[999].load(Ordering::Relaxed), 8);
        assert!(SharedWords::create(0).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_size_is_sealed() {
        let a = SharedWords::create(16).unwrap();
        // SAFETY: ftruncate on a descriptor this test holds.
        assert_ne!(unsafe { libc::ftruncate(a.fd(), 8) }, 0, "cannot shrink");
    }
}
