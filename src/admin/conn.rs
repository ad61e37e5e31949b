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

/// What an HTTP request on the metrics address asks the loop for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAsk {
    /// `GET /metrics`: the Prometheus text.
    Metrics,
    /// `GET /status.json`: what the status page shows.
    StatusJson,
}

/// The Prometheus text format's content type.
pub const TEXT: &str = "text/plain; version=0.0.4";
/// The status page's.
pub const HTML: &str = "text/html; charset=utf-8";
/// `/status.json`'s.
pub const JSON: &str = "application/json";

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

    /// Reads the HTTP request head received so far: what the loop must answer (`GET
    /// /metrics`, `GET /status.json`); the status page itself, a 404 or a 400 are answered
    /// here (then close) and ask nothing. `None` while the head is incomplete, after the
    /// response, or when it was answered here.
    pub fn http_request(&mut self) -> Option<HttpAsk> {
        if self.close_after_write {
            return None;
        }
        let (status, kind, body) = match http::parse_request_host(&self.input) {
            Parsed::NeedMore => return None,
            Parsed::Complete(head, _) if head.method == b"GET" => {
                let path = head.target.split(|&b| b == b'?').next().unwrap_or(b"");
                match path {
                    b"/metrics" => return self.asks(HttpAsk::Metrics),
                    b"/status.json" => return self.asks(HttpAsk::StatusJson),
                    b"/" | b"/status" => ("200 OK", HTML, crate::admin::status::PAGE),
                    _ => ("404 Not Found", TEXT, "try /metrics or /status\n"),
                }
            }
            Parsed::Complete(..) => ("404 Not Found", TEXT, "try /metrics or /status\n"),
            Parsed::Invalid(_) => ("400 Bad Request", TEXT, "bad request\n"),
        };
        self.push_http(status, kind, body);
        None
    }

    fn asks(&mut self, ask: HttpAsk) -> Option<HttpAsk> {
        self.close_after_write = true;
        Some(ask)
    }

    /// Queues a reply to one command line: its text, then the blank line that ends it.
    pub fn push_reply(&mut self, text: &str) {
        self.output
            .extend_from_slice(text.trim_end_matches('\n').as_bytes());
        self.output.extend_from_slice(b"\n\n");
    }

    /// Queues the whole HTTP response (the connection closes once it is out).
    pub fn push_http(&mut self, status: &str, content_type: &str, body: &str) {
        self.output.extend_from_slice(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
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
