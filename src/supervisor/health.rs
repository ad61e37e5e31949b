//! Active health checks (`check=tcp|proxy-v2-local|connect`, haproxy's `check inter rise
//! fall`): one probe per checked upstream for the whole machine, run on the supervisor's
//! loop, whose verdicts the supervisor sends to every worker (`health HOST:PORT up|down`).
//!
//! A probe is a non-blocking connect to the upstream's first address, then what its kind
//! sends (nothing; a PROXY v2 LOCAL header; a CONNECT request, whose reply must be 2xx),
//! within its timeout. `rise` passes in a row mark a down upstream up, `fall` failures in a
//! row mark an up one down; an upstream starts up (a check never holds traffic back at
//! start). An upstream in `maint` is not checked. Never blocks, never resolves a name
//! (addresses come from the configuration), never touches a session.

use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::admin::command::Command;
use crate::config::pool::{Check, CheckKind};
use crate::config::Config;
use crate::net::{self, Io};
use crate::wire::proxy::v2::{self as proxy_v2, V2Out};
use crate::wire::proxy::Command as PpCommand;
use crate::wire::{http, Parsed};
use crate::worker::upstreams::Admin;

/// The most bytes of a CONNECT reply head read.
const MAX_REPLY: usize = 4096;

/// One checked upstream.
struct Probe {
    name: String,
    addr: SocketAddr,
    check: Check,
    up: bool,
    passes: u32,
    fails: u32,
    maint: bool,
    /// When the next check starts.
    due_ms: u64,
    running: Option<Running>,
}

/// A check under way.
struct Running {
    stream: TcpStream,
    deadline_ms: u64,
    connected: bool,
    /// What the kind sends, and how much of it went.
    request: Vec<u8>,
    sent: usize,
    reply: Vec<u8>,
}

/// Every active check of the configuration.
pub(super) struct Checker {
    probes: Vec<Probe>,
    /// The token of probe `i` is `base + i`.
    base: usize,
}

impl Checker {
    /// No checks yet; probe `i` will use `Token(base + i)`.
    pub fn new(base: usize) -> Checker {
        Checker {
            probes: Vec::new(),
            base,
        }
    }

    /// The probes `cfg`'s pools ask for (the first pool naming an upstream with a check
    /// sets its check). What is known of an upstream still checked is kept; checks under
    /// way stop.
    pub fn configure(&mut self, cfg: &Config, registry: &Registry, now_ms: u64) {
        let mut probes: Vec<Probe> = Vec::new();
        let pools = cfg
            .routes
            .iter()
            .map(|r| &r.pool)
            .chain(std::iter::once(&cfg.default_route.pool));
        for pool in pools {
            let Some(check) = &pool.check else { continue };
            for u in &pool.members {
                let Some(&addr) = u.addrs.first() else {
                    continue;
                };
                if probes.iter().any(|p| p.name == u.name) {
                    continue;
                }
                let old = self.probes.iter().find(|p| p.name == u.name);
                probes.push(Probe {
                    name: u.name.clone(),
                    addr,
                    check: check.clone(),
                    up: old.is_none_or(|p| p.up),
                    passes: 0,
                    fails: 0,
                    maint: old.is_some_and(|p| p.maint),
                    due_ms: now_ms,
                    running: None,
                });
            }
        }
        for p in &mut self.probes {
            p.stop(registry);
        }
        self.probes = probes;
    }

    /// The operator put `name` in maintenance (no checks) or took it out.
    pub fn set_maint(&mut self, name: &str, maint: bool, registry: &Registry) {
        for p in self.probes.iter_mut().filter(|p| p.name == name) {
            p.maint = maint;
            p.stop(registry);
        }
    }

    /// Follows the operator: `upstream NAME maint` stops its checks, another state starts
    /// them again.
    pub fn follow(&mut self, command: &Result<Command, String>, registry: &Registry) {
        if let Ok(Command::SetUpstream(name, state)) = command {
            self.set_maint(name, *state == Admin::Maint, registry);
        }
    }

    /// The commands that tell a new worker the upstreams down now.
    pub fn down_lines(&self) -> Vec<String> {
        self.verdicts()
            .filter(|(_, up)| !up)
            .map(|(name, _)| format!("health {name} down"))
            .collect()
    }

    /// True when `token` is one of the probes'.
    pub fn owns(&self, token: Token) -> bool {
        (self.base..self.base + self.probes.len()).contains(&token.0)
    }

    /// Every upstream checked and whether it is up now.
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, bool)> {
        self.probes.iter().map(|p| (p.name.as_str(), p.up))
    }

    /// Starts the checks that are due, moves the running ones on (`token`'s readiness, if
    /// any, or their deadline), and returns the verdicts that changed.
    pub fn run(
        &mut self,
        registry: &Registry,
        token: Option<Token>,
        now_ms: u64,
    ) -> Vec<(String, bool)> {
        let mut changed = Vec::new();
        for (i, p) in self.probes.iter_mut().enumerate() {
            if p.maint {
                continue;
            }
            if p.running.is_none() && now_ms >= p.due_ms {
                p.due_ms = now_ms + p.check.interval_ms;
                match p.start(registry, Token(self.base + i), now_ms) {
                    Ok(r) => p.running = Some(r),
                    Err(()) => {
                        if let Some(c) = p.record(false) {
                            changed.push((p.name.clone(), c));
                        }
                        continue;
                    }
                }
            }
            let poked = token == Some(Token(self.base + i));
            let Some(r) = p.running.as_mut() else {
                continue;
            };
            let outcome = if now_ms >= r.deadline_ms {
                Some(false)
            } else if poked || !r.connected {
                r.advance(p.check.kind)
            } else {
                None
            };
            if let Some(passed) = outcome {
                p.stop(registry);
                if let Some(c) = p.record(passed) {
                    changed.push((p.name.clone(), c));
                }
            }
        }
        changed
    }
}

impl Probe {
    fn start(&self, registry: &Registry, token: Token, now_ms: u64) -> Result<Running, ()> {
        let mut stream = net::connect(self.addr).map_err(|_| ())?;
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|_| ())?;
        let request = match self.check.kind {
            CheckKind::Tcp => Vec::new(),
            CheckKind::ProxyV2Local => {
                let mut out = [0u8; 64];
                let local = V2Out {
                    command: PpCommand::Local,
                    addrs: None,
                    authority: None,
                    alpn: None,
                    unique_id: None,
                    raw: &[],
                    crc32c: false,
                };
                let n = proxy_v2::emit(&local, &mut out).map_err(|_| ())?;
                out.get(..n).unwrap_or(&[]).to_vec()
            }
            CheckKind::Connect => {
                let host = self.check.host.as_deref().unwrap_or("");
                format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
            }
        };
        Ok(Running {
            stream,
            deadline_ms: now_ms + self.check.timeout_ms,
            connected: false,
            request,
            sent: 0,
            reply: Vec::new(),
        })
    }

    fn stop(&mut self, registry: &Registry) {
        if let Some(mut r) = self.running.take() {
            let _ = registry.deregister(&mut r.stream);
        }
    }

    /// Counts a result; the new verdict when it changed.
    fn record(&mut self, passed: bool) -> Option<bool> {
        if passed {
            self.passes += 1;
            self.fails = 0;
            if !self.up && self.passes >= self.check.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.fails += 1;
            self.passes = 0;
            if self.up && self.fails >= self.check.fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

impl Running {
    /// What the check came to so far: `Some(passed)` once known.
    fn advance(&mut self, kind: CheckKind) -> Option<bool> {
        if !self.connected {
            match net::connect_finished(&self.stream) {
                Ok(true) => self.connected = true,
                Ok(false) => return None,
                Err(_) => return Some(false),
            }
        }
        while self.sent < self.request.len() {
            match net::write(
                &mut self.stream,
                self.request.get(self.sent..).unwrap_or(&[]),
            ) {
                Io::Done(n) => self.sent += n,
                Io::WouldBlock => return None,
                Io::Closed | Io::Error(_) => return Some(false),
            }
        }
        if kind != CheckKind::Connect {
            return Some(true);
        }
        let mut buf = [0u8; 1024];
        loop {
            match net::read(&mut self.stream, &mut buf) {
                Io::Done(n) => self.reply.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Io::WouldBlock => break,
                Io::Closed | Io::Error(_) => return Some(false),
            }
            if self.reply.len() > MAX_REPLY {
                return Some(false);
            }
        }
        match http::parse_connect_reply(&self.reply) {
            Parsed::Complete(reply, _) => Some((200..300).contains(&reply.status)),
            Parsed::NeedMore => None,
            Parsed::Invalid(_) => Some(false),
        }
    }
}
