//! The control socket's line protocol and the small admin connections (control socket and
//! `/metrics`) that the event loop serves beside the sessions.
//!
//! One command a line, one reply ending in a blank line; a bad command gets `error: ...` and
//! the connection stays usable. Parsing is pure; the loop executes commands. Admin
//! connections are non-blocking and bounded: a line longer than [`MAX_LINE`] is an error.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::route::NamePattern;

/// Longest command line accepted.
pub const MAX_LINE: usize = 4096;

/// The text of `help`.
pub const HELP: &str = "\
help                          this list
show config                   every key, its value and its source (default, environment, file, set)
set <KEY> <VALUE>             change a key for new sessions (validated like start-up)
set log-level <level>         off, error, warn, info, debug, trace
reload                        re-read ENVOY_CONFIG_FILE and the routes, apply for new sessions
show sessions                 id state client sni upstream bytes_up bytes_down age_ms
show stats                    counters
trace <sid|name|cidr>         log hex dumps and transitions of matching sessions at any level
untrace <sid|name|cidr|all>   stop tracing
kill <sid>                    close a session
drain                         stop accepting; exit when the last session is gone
upgrade                       start the binary now on disk, hand it the sockets, drain the old workers";

/// What a trace rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceRule {
    /// One session by id.
    Session(u64),
    /// Sessions whose routed name matches.
    Name(String, NamePattern),
    /// Sessions whose client (PROXY source, else peer) is in the block.
    Client(Cidr),
}

impl TraceRule {
    /// True when a session with this id, name and client is selected.
    pub fn selects(&self, id: u64, name: &[u8], client: Option<IpAddr>) -> bool {
        match self {
            TraceRule::Session(s) => *s == id,
            TraceRule::Name(_, p) => !name.is_empty() && p.matches(name),
            TraceRule::Client(c) => client.is_some_and(|ip| c.contains(ip)),
        }
    }

    fn parse(arg: &str) -> Option<TraceRule> {
        if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
            return arg.parse().ok().map(TraceRule::Session);
        }
        if let Ok(c) = arg.parse::<Cidr>() {
            return Some(TraceRule::Client(c));
        }
        NamePattern::parse(arg).map(|p| TraceRule::Name(arg.to_ascii_lowercase(), p))
    }
}

impl fmt::Display for TraceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceRule::Session(s) => write!(f, "session {s}"),
            TraceRule::Name(n, _) => write!(f, "name {n}"),
            TraceRule::Client(c) => write!(f, "client {c}"),
        }
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help`
    Help,
    /// `show config`
    ShowConfig,
    /// `set KEY VALUE`
    Set(String, String),
    /// `set log-level LEVEL`
    SetLogLevel(log::LevelFilter),
    /// `reload`
    Reload,
    /// `show sessions`
    ShowSessions,
    /// `show stats`
    ShowStats,
    /// `trace RULE`
    Trace(TraceRule),
    /// `untrace RULE`, or all with `None`
    Untrace(Option<TraceRule>),
    /// `kill SID`
    Kill(u64),
    /// `drain`
    Drain,
    /// `metrics`: the Prometheus exposition (the supervisor merges the workers').
    Metrics,
    /// `upgrade`: start the binary now on disk and hand it the sockets (supervisor only).
    Upgrade,
}

/// Parses one command line (without its line end).
pub fn parse(line: &str) -> Result<Command, String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let one = |what: &str| -> Result<&str, String> {
        match rest.as_slice() {
            [a] => Ok(*a),
            _ => Err(format!("usage: {verb} <{what}>")),
        }
    };
    match (verb, rest.as_slice()) {
        ("help", []) => Ok(Command::Help),
        ("show", ["config"]) => Ok(Command::ShowConfig),
        ("show", ["sessions"]) => Ok(Command::ShowSessions),
        ("show", ["stats"]) => Ok(Command::ShowStats),
        ("show", _) => Err("usage: show config|sessions|stats".into()),
        ("set", ["log-level", level]) => level.parse().map(Command::SetLogLevel).map_err(|_| {
            format!("unknown log level {level:?}: off, error, warn, info, debug, trace")
        }),
        ("set", [key, value @ ..]) if !value.is_empty() => {
            Ok(Command::Set(key.to_string(), value.join(" ")))
        }
        ("set", _) => Err("usage: set <KEY> <VALUE> | set log-level <level>".into()),
        ("reload", []) => Ok(Command::Reload),
        ("trace", _) => {
            let a = one("sid|name|cidr")?;
            TraceRule::parse(a)
                .map(Command::Trace)
                .ok_or(format!("not a session id, name or CIDR: {a:?}"))
        }
        ("untrace", ["all"]) => Ok(Command::Untrace(None)),
        ("untrace", _) => {
            let a = one("sid|name|cidr|all")?;
            TraceRule::parse(a)
                .map(|r| Command::Untrace(Some(r)))
                .ok_or(format!("not a session id, name or CIDR: {a:?}"))
        }
        ("kill", _) => {
            let a = one("sid")?;
            a.parse()
                .map(Command::Kill)
                .map_err(|_| format!("not a session id: {a:?}"))
        }
        ("drain", []) => Ok(Command::Drain),
        ("metrics", []) => Ok(Command::Metrics),
        ("upgrade", []) => Ok(Command::Upgrade),
        ("", _) => Err("empty command (try help)".into()),
        _ => Err(format!("unknown command {verb:?} (try help)")),
    }
}

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
                    self.input.extend_from_slice(&buf[..n]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("show config"), Ok(Command::ShowConfig));
        assert_eq!(
            parse("set ENVOY_UPSTREAM 127.0.0.1:9"),
            Ok(Command::Set("ENVOY_UPSTREAM".into(), "127.0.0.1:9".into()))
        );
        assert_eq!(
            parse("set ENVOY_HEADERS X-A: 1; X-B: 2"),
            Ok(Command::Set(
                "ENVOY_HEADERS".into(),
                "X-A: 1; X-B: 2".into()
            ))
        );
        assert_eq!(
            parse("set log-level debug"),
            Ok(Command::SetLogLevel(log::LevelFilter::Debug))
        );
        assert_eq!(
            parse("trace 42"),
            Ok(Command::Trace(TraceRule::Session(42)))
        );
        assert!(matches!(
            parse("trace 10.0.0.0/8"),
            Ok(Command::Trace(TraceRule::Client(_)))
        ));
        assert!(matches!(
            parse("trace *.example.com"),
            Ok(Command::Trace(TraceRule::Name(..)))
        ));
        assert_eq!(parse("untrace all"), Ok(Command::Untrace(None)));
        assert_eq!(parse("kill 7"), Ok(Command::Kill(7)));
        assert_eq!(parse("drain"), Ok(Command::Drain));
    }

    #[test]
    fn bad_commands_say_why() {
        for (line, why) in [
            ("", "empty"),
            ("frobnicate", "unknown command"),
            ("show", "usage: show"),
            ("set log-level loud", "unknown log level"),
            ("set ENVOY_PORT", "usage: set"),
            ("kill x", "not a session id"),
            ("trace", "usage: trace"),
            ("trace bad\u{1}name", "not a session id, name or CIDR"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line:?}: {e}");
        }
    }

    #[test]
    fn trace_rules_select() {
        let ip = Some("10.1.2.3".parse().unwrap());
        assert!(TraceRule::parse("5").unwrap().selects(5, b"", None));
        assert!(TraceRule::parse("*.example.com")
            .unwrap()
            .selects(1, b"a.example.com", None));
        assert!(!TraceRule::parse("*.example.com")
            .unwrap()
            .selects(1, b"example.org", ip));
        assert!(TraceRule::parse("10.0.0.0/8").unwrap().selects(1, b"", ip));
    }
}
