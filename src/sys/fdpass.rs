//! Passing descriptors over a UNIX stream socket (`SCM_RIGHTS`): the supervisor hands a
//! running worker the listening sockets it bound after the worker started. Bytes and
//! descriptors travel together; the descriptors arrive with (or before) the first byte sent
//! with them. Nothing here knows what a descriptor is for.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Descriptors taken per message at most (more are closed by the kernel: `MSG_CTRUNC`).
pub const MAX_FDS: usize = 16;

/// Room for one `SCM_RIGHTS` message of [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 128]);

fn space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `bytes` on `sock` with `fds` attached (at most [`MAX_FDS`]); returns the bytes
/// written (the descriptors went with the first of them).
pub fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS || bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "1 to 16 descriptors with at least one byte",
        ));
    }
    let mut cbuf = CmsgBuf([0; 128]);
    let clen = space(fds.len());
    if clen > cbuf.0.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many"));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = clen as _;
    // SAFETY: msg_control points at `clen` bytes, room for one header and `fds`
    // (CMSG_SPACE); CMSG_FIRSTHDR and CMSG_DATA stay inside it.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the descriptors"));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr() as *const u8,
            libc::CMSG_DATA(cmsg),
            std::mem::size_of_val(fds),
        );
        libc::sendmsg(sock, &msg, flags_nosignal())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(target_os = "linux")]
fn flags_nosignal() -> libc::c_int {
    libc::MSG_NOSIGNAL
}

#[cfg(not(target_os = "linux"))]
fn flags_nosignal() -> libc::c_int {
    0
}

/// Reads what `sock` holds into `buf`, like read(2); descriptors that came with the bytes
/// are appended to `fds` (close-on-exec). `Ok(0)`: the peer closed.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cbuf = CmsgBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space(MAX_FDS).min(cbuf.0.len()) as _;
    // SAFETY: the kernel writes at most iov_len bytes into `buf` and msg_controllen bytes
    // into `cbuf`.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the headers walked are those the kernel wrote into `cbuf` (msg_controllen
    // now says how much); each SCM_RIGHTS payload is `cmsg_len - CMSG_LEN(0)` bytes of
    // descriptors this process now owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(
                        data.add(i * std::mem::size_of::<RawFd>()) as *const RawFd
                    );
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_descriptor_crosses_with_its_bytes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            send_with_fds(a.as_raw_fd(), b"listen x\n", &[w.as_raw_fd()]).unwrap(),
            9
        );
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"listen x\n");
        assert_eq!(fds.len(), 1);
        // the passed descriptor is the same socket
        let mut passed = std::os::unix::net::UnixStream::from(fds.pop().unwrap());
        passed.write_all(b"hi").unwrap();
        drop(w.write_all(b""));
        let mut got = [0u8; 2];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        w.flush().unwrap();
    }
}
