//! Opening one benchmark session: connect, send the frame, read the upstream's 64-byte
//! answer. Shared by `sessions` (which then closes), `latency` and `idle` (which keep it).
//!
//! The answer is what proves the whole path is up: through a proxy it means the proxy has
//! parsed the frame, connected upstream and replayed the ClientHello.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// How often sessions are checked against their timeout.
pub const SCAN_EVERY: Duration = Duration::from_millis(100);

/// What `serve` answers once a whole TLS record has arrived.
pub const ANSWER_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// connect() failed or the connection was refused.
    Connect,
    /// An error (reset) while sending or reading.
    Reset,
    /// The peer closed before the whole answer.
    Eof,
    /// No answer within the session timeout.
    Timeout,
}

/// Failures by kind, as printed.
#[derive(Default)]
pub struct Failures {
    pub connect: u64,
    pub reset: u64,
    pub eof: u64,
    pub timeout: u64,
}

impl Failures {
    pub fn count(&mut self, f: Failure) {
        match f {
            Failure::Connect => self.connect += 1,
            Failure::Reset => self.reset += 1,
            Failure::Eof => self.eof += 1,
            Failure::Timeout => self.timeout += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.eof + self.timeout
    }

    pub fn write(&self, line: &mut crate::report::Line) {
        line.int("errors", self.total())
            .int("err_connect", self.connect)
            .int("err_reset", self.reset)
            .int("err_eof", self.eof)
            .int("err_timeout", self.timeout);
    }
}

pub enum Step {
    Pending,
    Answered,
    Failed(Failure),
}

/// A session from connect() to the answer.
pub struct Opening {
    pub stream: TcpStream,
    pub started: Instant,
    connected: bool,
    sent: usize,
    got: usize,
}

impl Opening {
    /// Starts a non-blocking connect and registers it, readable and writable, as `token`.
    pub fn start(poll: &Poll, target: SocketAddr, token: Token) -> Result<Opening, Failure> {
        Opening::start_from(poll, target, None, token)
    }

    /// As [`Opening::start`], from the address `source` when given (any port): many
    /// loopback sources give many ephemeral port ranges, for 50,000 sessions and more.
    pub fn start_from(
        poll: &Poll,
        target: SocketAddr,
        source: Option<std::net::IpAddr>,
        token: Token,
    ) -> Result<Opening, Failure> {
        let started = Instant::now();
        let mut stream = match source {
            None => TcpStream::connect(target).map_err(|_| Failure::Connect)?,
            Some(ip) => connect_from(ip, target).map_err(|_| Failure::Connect)?,
        };
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|_| Failure::Connect)?;
        Ok(Opening {
            stream,
            started,
            connected: false,
            sent: 0,
            got: 0,
        })
    }

    /// Moves as far as the socket allows; called on every event (spurious ones included).
    pub fn advance(&mut self, frame: &[u8], scratch: &mut [u8]) -> Step {
        if !self.connected {
            match self.stream.take_error() {
                Ok(None) => {}
                _ => return Step::Failed(Failure::Connect),
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(_) => return Step::Failed(Failure::Connect),
            }
        }
        while self.sent < frame.len() {
            match self.stream.write(&frame[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Failed(Failure::Reset),
            }
        }
        while self.got < ANSWER_LEN {
            match self.stream.read(scratch) {
                Ok(0) => return Step::Failed(Failure::Eof),
                Ok(n) => self.got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Failed(Failure::Reset),
            }
        }
        Step::Answered
    }
}

/// `n` sessions opened, answered and kept; session `i` is registered as `Token(i)`.
pub struct Opened {
    pub streams: Vec<Option<TcpStream>>,
    pub failures: Failures,
    pub elapsed: Duration,
}

/// A non-blocking TCP socket of `addr`'s family.
pub fn tcp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking connect from `source` (port chosen by the kernel) to `target`.
fn connect_from(source: std::net::IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tcp_socket(target)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Opens `n` sessions with at most `max_opening` in progress at once (so that a listen
/// backlog is not what is measured), each failing after `timeout`; from `source` if given.
pub fn open_many(
    poll: &mut Poll,
    target: SocketAddr,
    source: Option<std::net::IpAddr>,
    frame: &[u8],
    n: usize,
    max_opening: usize,
    timeout: Duration,
) -> Opened {
    let start = Instant::now();
    let mut events = Events::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let mut opening: Vec<Option<Opening>> = (0..n).map(|_| None).collect();
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut failures = Failures::default();
    let mut next = 0;
    let mut in_progress = 0;
    let mut last_scan = start;
    loop {
        while next < n && in_progress < max_opening {
            match Opening::start_from(poll, target, source, Token(next)) {
                Ok(o) => {
                    opening[next] = Some(o);
                    in_progress += 1;
                }
                Err(f) => failures.count(f),
            }
            next += 1;
        }
        if in_progress == 0 {
            break;
        }
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        for event in events.iter() {
            let i = event.token().0;
            let Some(o) = opening.get_mut(i).and_then(|o| o.as_mut()) else {
                continue; // already open: its events matter only later
            };
            match o.advance(frame, &mut scratch) {
                Step::Pending => {}
                Step::Answered => {
                    streams[i] = opening[i].take().map(|o| o.stream);
                    in_progress -= 1;
                }
                Step::Failed(f) => {
                    failures.count(f);
                    opening[i] = None;
                    in_progress -= 1;
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_scan) < SCAN_EVERY {
            continue;
        }
        last_scan = now;
        for slot in opening.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|o| now.duration_since(o.started) > timeout)
            {
                *slot = None;
                failures.count(Failure::Timeout);
                in_progress -= 1;
            }
        }
    }
    Opened {
        streams,
        failures,
        elapsed: start.elapsed(),
    }
}
