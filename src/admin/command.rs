//! The control socket's line protocol: one command a line, parsed here into a [`Command`];
//! the loop that received it executes it. Pure: no I/O, no state.

use crate::admin::trace::TraceRule;
use crate::cidr::Cidr;
use crate::config::names::Names;
use crate::worker::upstreams::Admin;

/// The text of `help`.
pub const HELP: &str = "\
help                          this list
show config                   every key, its value and its source (default, environment, file, set)
set <KEY> <VALUE>             change a key for new sessions (validated like start-up)
set log-level <level>         off, error, warn, info, debug, trace
reload                        re-read ENVOY_CONFIG_FILE and the routes, apply for new sessions
show sessions                 id state client sni upstream bytes_up bytes_down age_ms listener
show listeners                name address state sessions accepted refused policy
show stats                    counters
show upstreams                per upstream: state, health, sessions, failures, ejections, connect p50/p99
upstream <HOST:PORT> <state>  ready, drain (no new sessions) or maint (drain, and no health checks)
health <HOST:PORT> up|down    an active check's verdict (the supervisor sends it; until the next one)
names <HOST:PORT=ADDR,...>    addresses of names (the supervisor's resolver sends them)
show clients                  top clients by sessions and by rate (the machine's client table)
forget <cidr>                 reset those clients' rate and refusals; idle entries dropped
trace <sid|name|cidr>         log hex dumps and transitions of matching sessions at any level
untrace <sid|name|cidr|all>   stop tracing
kill <sid>                    close a session
reopen-logs                   reopen the log target (a file:PATH after rotation; also SIGUSR1)
drain                         stop accepting; exit when the last session is gone
upgrade                       start the binary now on disk, hand it the sockets, drain the old workers";

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
    /// `show upstreams`
    ShowUpstreams,
    /// `upstream HOST:PORT ready|drain|maint`: the operator's state of an upstream, by its
    /// name as configured.
    SetUpstream(String, Admin),
    /// `health HOST:PORT up|down`: an active check's verdict (the supervisor's checker
    /// sends it to every worker).
    Health(String, bool),
    /// `names HOST:PORT=ADDR,... ...`: addresses the supervisor resolved (workers never
    /// resolve); running configurations take changed ones for new sessions.
    Names(Names),
    /// `show clients`: the top clients of the machine's client table.
    ShowClients,
    /// `forget CIDR`: reset the counters of the clients in the block.
    Forget(Cidr),
    /// `trace RULE`
    Trace(TraceRule),
    /// `untrace RULE`, or all with `None`
    Untrace(Option<TraceRule>),
    /// `kill SID`
    Kill(u64),
    /// `reopen-logs`: the log target opened again (log rotation).
    ReopenLogs,
    /// `drain`
    Drain,
    /// `metrics`: the Prometheus exposition (the supervisor merges the workers').
    Metrics,
    /// `upgrade`: start the binary now on disk and hand it the sockets (supervisor only).
    Upgrade,
    /// `show listeners`
    ShowListeners,
    /// `listen ADDR`: the supervisor hands a worker the socket (passed with the line) of the
    /// listener configured at ADDR.
    Listen(std::net::SocketAddr),
    /// `unlisten ADDR`: the supervisor takes back a socket it handed out (a change it did
    /// not commit).
    Unlisten(std::net::SocketAddr),
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
        ("show", ["upstreams"]) => Ok(Command::ShowUpstreams),
        ("upstream", [name, state]) => match Admin::parse(state) {
            Some(a) => Ok(Command::SetUpstream(name.to_string(), a)),
            None => Err(format!("unknown state {state:?}: ready, drain, maint")),
        },
        ("upstream", _) => Err("usage: upstream <HOST:PORT> ready|drain|maint".into()),
        ("health", [name, "up"]) => Ok(Command::Health(name.to_string(), true)),
        ("health", [name, "down"]) => Ok(Command::Health(name.to_string(), false)),
        ("health", _) => Err("usage: health <HOST:PORT> up|down".into()),
        ("names", entries) => Names::decode(&entries.join(" ")).map(Command::Names),
        ("show", ["clients"]) => Ok(Command::ShowClients),
        ("show", ["listeners"]) => Ok(Command::ShowListeners),
        ("show", _) => Err("usage: show config|sessions|stats|upstreams|clients|listeners".into()),
        ("listen" | "unlisten", _) => {
            let a = one("addr:port")?;
            let addr = a.parse().map_err(|_| format!("not ADDR:PORT: {a:?}"))?;
            Ok(if verb == "listen" {
                Command::Listen(addr)
            } else {
                Command::Unlisten(addr)
            })
        }
        ("forget", _) => {
            let a = one("cidr")?;
            a.parse()
                .map(Command::Forget)
                .map_err(|()| format!("not an address or CIDR: {a:?}"))
        }
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
        ("reopen-logs", []) => Ok(Command::ReopenLogs),
        ("drain", []) => Ok(Command::Drain),
        ("metrics", []) => Ok(Command::Metrics),
        ("upgrade", []) => Ok(Command::Upgrade),
        ("", _) => Err("empty command (try help)".into()),
        _ => Err(format!("unknown command {verb:?} (try help)")),
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
        assert_eq!(parse("show upstreams"), Ok(Command::ShowUpstreams));
        assert_eq!(
            parse("upstream 10.0.0.1:443 maint"),
            Ok(Command::SetUpstream("10.0.0.1:443".into(), Admin::Maint))
        );
        assert!(parse("upstream 10.0.0.1:443 down").is_err());
        assert_eq!(parse("reopen-logs"), Ok(Command::ReopenLogs));
        assert_eq!(parse("show clients"), Ok(Command::ShowClients));
        assert_eq!(
            parse("forget 192.0.2.0/24"),
            Ok(Command::Forget("192.0.2.0/24".parse().unwrap()))
        );
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
            ("forget", "usage: forget <cidr>"),
            ("forget 300.1.1.1", "not an address or CIDR"),
            ("trace", "usage: trace"),
            ("trace bad\u{1}name", "not a session id, name or CIDR"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line:?}: {e}");
        }
    }
}
