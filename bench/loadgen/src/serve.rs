//! `serve`: the benchmark upstream. For each connection: read until one whole TLS record has
//! arrived (5-byte header + its length; a ClientHello), answer 64 bytes, then wait for the
//! client's close and close. With `--echo`, every byte after that record is echoed back
//! (the `latency` scenario's requests). Runs until killed.

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::args::Args;
use crate::setup::ANSWER_LEN;

const LISTENER: Token = Token(usize::MAX);
const RECORD_HEADER: usize = 5;
/// Echoing stops reading while this much is waiting to be written (backpressure).
const OUT_CAP: usize = 256 * 1024;

struct Conn {
    stream: TcpStream,
    /// The first record's header, then how many bytes the whole record has.
    header: [u8; RECORD_HEADER],
    seen: usize,
    record_len: Option<usize>,
    answered: bool,
    out: Vec<u8>,
}

impl Conn {
    /// Takes `bytes` just read: completes the record, queues the answer, queues echoes.
    fn take(&mut self, bytes: &[u8], echo: bool) {
        let mut rest = bytes;
        if !self.answered {
            while self.seen < RECORD_HEADER && !rest.is_empty() {
                self.header[self.seen] = rest[0];
                self.seen += 1;
                rest = &rest[1..];
            }
            if self.seen >= RECORD_HEADER && self.record_len.is_none() {
                let body = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.record_len = Some(RECORD_HEADER + body);
            }
            if let Some(total) = self.record_len {
                let body_part = rest.len().min(total - self.seen);
                self.seen += body_part;
                rest = &rest[body_part..];
                if self.seen == total {
                    self.answered = true;
                    self.out.extend_from_slice(&[0x17; ANSWER_LEN]);
                }
            }
        }
        if self.answered && echo {
            self.out.extend_from_slice(rest);
        }
    }

    /// Writes what is queued. Ok(true) when all of it went.
    fn flush(&mut self) -> io::Result<bool> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Serves every readiness until the socket would block. Returns true when done.
    fn ready(&mut self, scratch: &mut [u8], echo: bool) -> bool {
        loop {
            match self.flush() {
                Ok(_) if self.out.len() >= OUT_CAP => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
            match self.stream.read(scratch) {
                // The client's close: whatever is still queued is abandoned with it.
                Ok(0) => return true,
                Ok(n) => self.take(&scratch[..n], echo),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

pub fn run(a: &Args) -> Result<(), String> {
    let addr = a.addr("listen")?;
    let echo = a.flag("echo");
    let mut listener = bind_shared(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "loadgen serve: listening on {} (echo: {echo})",
        listener.local_addr().map_err(|e| e.to_string())?
    );

    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&poll, &listener, &mut conns);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.ready(&mut scratch, echo) {
                conns.remove(key);
            }
        }
    }
}

/// A listener with SO_REUSEPORT, so that several `serve` processes can share a port (and
/// the kernel spreads connections among them): one process holds at most ~20,000
/// descriptors here, fewer than the 50,000-session memory run needs.
fn bind_shared(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = crate::setup::tcp_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn accept_all(poll: &Poll, listener: &TcpListener, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        header: [0; RECORD_HEADER],
                        seen: 0,
                        record_len: None,
                        answered: false,
                        out: Vec::new(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors or a connection gone before accept: try again on the next
            // readiness rather than spin.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        // A connected pair is not needed to test `take`; any stream will do.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        Conn {
            stream: TcpStream::from_std(s),
            header: [0; RECORD_HEADER],
            seen: 0,
            record_len: None,
            answered: false,
            out: Vec::new(),
        }
    }

    #[test]
    fn answers_after_the_whole_record_split_anywhere() {
        let record = [&[0x16, 0x03, 0x01, 0x00, 0x03][..], b"abc"].concat();
        for split in 0..=record.len() {
            let mut c = conn();
            c.take(&record[..split], false);
            assert_eq!(c.answered, split == record.len(), "split {split}");
            c.take(&record[split..], false);
            assert!(c.answered);
            assert_eq!(c.out.len(), ANSWER_LEN);
        }
    }

    #[test]
    fn echoes_only_after_the_record() {
        let mut c = conn();
        c.take(&[0x16, 0x03, 0x01, 0x00, 0x01, 0xff, b'h', b'i'], true);
        assert_eq!(c.out.len(), ANSWER_LEN + 2);
        assert_eq!(&c.out[ANSWER_LEN..], b"hi");
    }
}
