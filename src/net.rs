//! Socket set-up and the one place raw socket I/O results are interpreted.
//!
//! The listener is built with socket2 (SO_REUSEADDR, SO_REUSEPORT or FreeBSD's
//! SO_REUSEPORT_LB, backlog), both legs get TCP_NODELAY, and reads and writes come back as
//! an [`Io`] so that session code never matches on `io::ErrorKind`. Nothing here blocks:
//! every socket is non-blocking.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

/// What one read or write did.
#[derive(Debug)]
pub enum Io {
    /// Moved this many bytes (never 0).
    Done(usize),
    /// Nothing can move now; wait for readiness.
    WouldBlock,
    /// Read: the peer sent FIN. Write: the peer will read nothing more.
    Closed,
    /// A reset or another hard error.
    Error(io::Error),
}

fn classify(r: io::Result<usize>) -> Io {
    match r {
        Ok(0) => Io::Closed,
        Ok(n) => Io::Done(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Io::WouldBlock,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::WouldBlock,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Io::Closed,
        Err(e) => Io::Error(e),
    }
}

/// Reads into `buf` once.
pub fn read(stream: &mut TcpStream, buf: &mut [u8]) -> Io {
    if buf.is_empty() {
        return Io::WouldBlock;
    }
    classify(stream.read(buf))
}

/// Writes from `buf` once.
pub fn write(stream: &mut TcpStream, buf: &[u8]) -> Io {
    if buf.is_empty() {
        return Io::Done(0);
    }
    classify(stream.write(buf))
}

/// Shuts the write side: a FIN follows what was written. A failure (the peer is gone)
/// changes nothing the caller could act on.
pub fn shutdown_write(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// A non-blocking listener on `addr` with address and port reuse, so that one process per
/// core can each hold its own listener on the same port.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    set_reuse_port(&socket)?;
    if addr.is_ipv6() {
        // [::] means IPv6 only; listen on 0.0.0.0 too with a second worker config if wanted.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one syscall less per
    // session (see `accepted_nodelay`).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(target_os = "freebsd")]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    // FreeBSD's SO_REUSEPORT does not balance; SO_REUSEPORT_LB does.
    socket.set_reuse_port_lb(true)
}

#[cfg(not(target_os = "freebsd"))]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

/// Makes sure an accepted socket has TCP_NODELAY: inherited from the listener on Linux,
/// set explicitly elsewhere.
pub fn accepted_nodelay(stream: &TcpStream) -> io::Result<()> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        stream.set_nodelay(true)
    }
}

/// Starts a non-blocking connect to `addr`; completion is signalled by writability.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// After a writable event on a connecting socket: `Ok(true)` connected, `Ok(false)` not yet,
/// `Err` the connect failed (refused, unreachable, ...).
pub fn connect_finished(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// True for the accept errors that mean "out of descriptors or memory": back off, do not spin.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_have_nodelay() {
        let l = listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut accepted = None;
        for _ in 0..100 {
            if let Ok((s, _)) = l.accept() {
                accepted = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let s = accepted.unwrap();
        accepted_nodelay(&s).unwrap();
        assert!(s.nodelay().unwrap(), "TCP_NODELAY on the client leg");
    }
}
