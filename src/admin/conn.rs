//! One admin connection served beside the sessions — a control client, a metrics scrape, or
//! (in a worker) the supervisor's channel — and its framing: command lines in, replies out
//! each ended by a blank line; an HTTP request head in, one HTTP response out. Non-blocking
//! and bounded: a line longer than [`MAX_LINE`] is an error, and so is input that piles up.

use std::io::{self, Read, Write};

use crate::wire::http;
use crate::wire::Parsed;

/// Longest command line accepted.
pub const MAX_LINE: usize = 4096;

/// The socket of an admin connection.
pub enum AdminStream {
    /// The control socket, or a worker's channel to its supervisor.
    Unix(mio::net::UnixStream),
    /// A metrics scrape.
    Tcp(mio::net::TcpStream),
}

impl AdminStream {
    /// The mio source, to (de)register.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            AdminStream::Unix(s) => s,
            AdminStream::Tcp(s) => s,
        }
    }
}

impl Read for AdminStream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            AdminStream::Unix(s) => s.read(b),
            AdminStream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for AdminStream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            AdminStream::Unix(s) => s.write(b),
            AdminStream::Tcp(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Who is at the other end, which says how requests are framed and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A person or a script on the control socket: command lines, text replies.
    Control,
    /// A Prometheus scrape: one HTTP request, one response, then close.
    Scrape,
    /// The supervisor, on a worker's channel: command lines, typed replies (`admin::channel`).
    Supervisor,
}

/// One admin connection: what came in, what is left to send.
pub struct AdminConn {
    /// The socket.
    pub stream: AdminStream,
    /// Who is at the other end.
    pub peer: Peer,
    /// Bytes received and not yet handled.
    pub input: Vec<u8>,
    /// Reply bytes not yet written.
    pub output: Vec<u8>,
    /// Close once `output` is written (a scrape was answered).
    pub close_after_write: bool,
    /// The peer closed its side: close once every reply is out.
    pub peer_closed: bool,
    /// Descriptors the supervisor passed with its lines (`SCM_RIGHTS`), in order; each
    /// `listen` line takes the first.
    pub fds: std::collections::VecDeque<std::os::fd::OwnedFd>,
}

impl AdminConn {
    /// A new connection.
    pub fn new(stream: AdminStream, peer: Peer) -> AdminConn {
        AdminConn {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            close_after_write: false,
            peer_closed: false,
            fds: Default::default(),
        }
    }

    /// Registers the connection for reading and writing under `token`.
    pub fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        registry.register(
            self.stream.source(),
            token,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
    }

    /// Reads what is there; notes when the peer closed.
    pub fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let read = match (&self.stream, self.peer) {
                (AdminStream::Unix(s), Peer::Supervisor) => {
                    // Descriptors come with the bytes (and only from the supervisor).
                    let mut fds = Vec::new();
                    let n = crate::sys::fdpass::recv_with_fds(
                        std::os::fd::AsRawFd::as_raw_fd(s),
                        &mut buf,
                        &mut fds,
                    );
                    self.fds.extend(fds);
                    n
                }
                _ => self.stream.read(&mut buf),
            };
            match read {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.input.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if self.input.len() > 4 * MAX_LINE {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "input too long"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the next complete line, if any.
    pub fn next_line(&mut self) -> Option<Result<String, String>> {
        let end = self.input.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.input.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.len() > MAX_LINE {
            return Some(Err("line too long".into()));
        }
        Some(Ok(line))
    }

    /// Reads the HTTP request head received so far: `Some(true)` for `GET /metrics`;
    /// `Some(false)` once anything else was answered here (404 or 400, then close); `None`
    /// while the head is incomplete or after the response.
    pub fn scrape_request(&mut self) -> Option<bool> {
        if self.close_after_write {
            return None;
        }
        let (status, body) = match http::parse_request_host(&self.input) {
            Parsed::NeedMore => return None,
            Parsed::Complete(head, _) if head.method == b"GET" && head.target == b"/metrics" => {
                self.close_after_write = true;
                return Some(true);
            }
            Parsed::Complete(..) => ("404 Not Found", "try /metrics\n"),
            Parsed::Invalid(_) => ("400 Bad Request", "bad request\n"),
        };
        self.push_http(status, body);
        Some(false)
    }

    /// Queues a reply to one command line: its text, then the blank line that ends it.
    pub fn push_reply(&mut self, text: &str) {
        self.output
            .extend_from_slice(text.trim_end_matches('\n').as_bytes());
        self.output.extend_from_slice(b"\n\n");
    }

    /// Queues the whole HTTP response (the connection closes once it is out).
    pub fn push_http(&mut self, status: &str, body: &str) {
        self.output.extend_from_slice(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.close_after_write = true;
    }

    /// Writes what it can. `Ok(true)` when everything is out.
    pub fn flush_out(&mut self) -> io::Result<bool> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
