//! Name resolution for the whole machine, off every event loop: one helper thread asks the
//! system resolver (getaddrinfo, which may block for the resolver's timeout) for the names a
//! configuration needs and wakes the supervisor's loop with the answers; the supervisor
//! keeps them ([`Resolver::cache`]) and hands them to the workers, which never resolve.
//!
//! A name that stops resolving keeps its last addresses (a warning says so). Requests are
//! answered in the order they were made. Nothing here touches a worker or a socket but the
//! waker.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

use log::warn;
use mio::{Registry, Token, Waker};

use crate::admin::command::Command;
use crate::admin::plane::ConnId;
use crate::config::names::{Asked, Names};
use crate::config::upstream::{Resolve, SystemResolver};
use crate::config::Layers;
use crate::logfmt::Value;

/// What waits for a resolution.
pub(super) enum After {
    /// A control command (`set`, `reload`) that goes to the workers once the names it
    /// needs are known.
    Command {
        /// Who asked.
        conn: ConnId,
        /// The command line.
        line: String,
    },
    /// SIGHUP, passed on once the names are known.
    Sighup,
    /// The periodic re-resolution (ENVOY_RESOLVE_INTERVAL_MS).
    Refresh,
}

type Answers = Vec<(String, Result<Vec<SocketAddr>, String>)>;

/// The helper thread and what it has answered.
pub(super) struct Resolver {
    jobs: mpsc::Sender<Vec<String>>,
    answers: mpsc::Receiver<Answers>,
    waiting: VecDeque<After>,
    /// The latest addresses of every name resolved so far.
    pub cache: Names,
    /// ENVOY_RESOLVE_INTERVAL_MS (0: never), and when the next periodic resolution is due.
    every_ms: u64,
    due_ms: u64,
}

/// What a finished resolution came to.
pub(super) struct Resolved {
    /// What waited for it.
    pub after: After,
    /// The names whose addresses changed (new ones included).
    pub changed: Names,
}

impl Resolver {
    /// Starts the helper thread, which wakes the loop through `token`.
    pub fn start(registry: &Registry, token: Token) -> std::io::Result<Resolver> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (jobs, job_rx) = mpsc::channel::<Vec<String>>();
        let (answer_tx, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("sluice-resolver".into())
            .spawn(move || {
                for names in job_rx {
                    let answers: Answers = names
                        .into_iter()
                        .map(|n| {
                            let a = SystemResolver.addrs(&n);
                            (n, a)
                        })
                        .collect();
                    if answer_tx.send(answers).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Resolver {
            jobs,
            answers,
            waiting: VecDeque::new(),
            cache: Names::default(),
            every_ms: 0,
            due_ms: 0,
        })
    }

    /// Resolves again every `every_ms` (0: never) from `now_ms` on.
    pub fn every(&mut self, every_ms: u64, now_ms: u64) {
        self.every_ms = every_ms;
        self.due_ms = now_ms + every_ms;
    }

    /// Asks for `layers`' names again when the interval is up (one at a time).
    pub fn refresh_if_due(&mut self, layers: &Layers, now_ms: u64) {
        if self.every_ms == 0 || now_ms < self.due_ms || self.refreshing() {
            return;
        }
        self.due_ms = now_ms + self.every_ms;
        let names = Resolver::names_of(layers);
        if !names.is_empty() {
            self.request(names, After::Refresh);
        }
    }

    /// The names a command's new configuration needs (`set`, `reload`), else none.
    pub fn names_for(cmd: &Command, layers: &Layers) -> Vec<String> {
        match cmd {
            Command::Set(k, v) => layers
                .with_set(k, v)
                .map(|l| Resolver::names_of(&l))
                .unwrap_or_default(),
            Command::Reload => Resolver::names_of(layers),
            _ => Vec::new(),
        }
    }

    /// The names (`host:port` with a host name) a load of `layers` asks for; never blocks
    /// on a resolver (files are read).
    pub fn names_of(layers: &Layers) -> Vec<String> {
        let asked = Asked::default();
        let _ = layers.load_with(&asked);
        asked.names()
    }

    /// Resolves `names` now, on the caller's thread: at start only, before any loop runs.
    pub fn resolve_now(&mut self, names: &[String]) {
        for n in names {
            match SystemResolver.addrs(n) {
                Ok(a) => self.cache.set(n, a),
                Err(e) => warn!(
                    "name did not resolve upstream={} error={}",
                    Value::str(n),
                    Value::str(&e)
                ),
            }
        }
    }

    /// Asks the helper thread for `names`; `after` waits for the answers.
    pub fn request(&mut self, names: Vec<String>, after: After) {
        if self.jobs.send(names).is_ok() {
            self.waiting.push_back(after);
        }
    }

    /// True while a command of `conn` waits for names.
    pub fn holds(&self, conn: ConnId) -> bool {
        self.waiting
            .iter()
            .any(|a| matches!(a, After::Command { conn: c, .. } if *c == conn))
    }

    /// True while a periodic re-resolution is under way.
    pub fn refreshing(&self) -> bool {
        self.waiting.iter().any(|a| matches!(a, After::Refresh))
    }

    /// The resolutions the helper thread finished, in request order, with the cache
    /// updated: a name that did not resolve keeps its last addresses.
    pub fn finished(&mut self) -> Vec<Resolved> {
        let mut out = Vec::new();
        while let Ok(answers) = self.answers.try_recv() {
            let mut changed = Names::default();
            for (name, result) in answers {
                match result {
                    Ok(addrs) if !addrs.is_empty() => {
                        if self.cache.get(&name) != Some(addrs.as_slice()) {
                            changed.set(&name, addrs.clone());
                        }
                        self.cache.set(&name, addrs);
                    }
                    Ok(_) | Err(_) => {
                        let why = result.err().unwrap_or_else(|| "no address".into());
                        let kept = self.cache.get(&name).is_some();
                        warn!(
                            "name did not resolve upstream={} error={} kept_last_addresses={kept}",
                            Value::str(&name),
                            Value::str(&why)
                        );
                    }
                }
            }
            if let Some(after) = self.waiting.pop_front() {
                out.push(Resolved { after, changed });
            }
        }
        out
    }
}
