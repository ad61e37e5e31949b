//! The small admin connections served beside the sessions (control socket lines and HTTP
//! scrapes): non-blocking, bounded. A line longer than [`MAX_LINE`] is an error.

use std::io::{self, Read, Write};

/// Longest command line accepted.
pub const MAX_LINE: usize = 4096;

/// The socket of an admin connection.
pub enum AdminStream {
    /// The control socket.
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

/// One admin connection: what came in, what is left to send.
pub struct AdminConn {
    /// The socket.
    pub stream: AdminStream,
    /// Bytes received and not yet handled.
    pub input: Vec<u8>,
    /// Reply bytes not yet written.
    pub output: Vec<u8>,
    /// Close once `output` is written (metrics; or the peer closed).
    pub close_after_write: bool,
}

impl AdminConn {
    /// A new connection.
    pub fn new(stream: AdminStream) -> AdminConn {
        AdminConn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            close_after_write: false,
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

    /// Reads what is there. `Ok(false)`: the peer closed.
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.input.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if self.input.len() > 4 * MAX_LINE {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "input too long"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
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
