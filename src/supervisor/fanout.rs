//! Admin requests answered by every worker: a control line or a scrape goes to all of them;
//! their typed replies are collected, a missing one counted when its worker dies, and merged
//! (`admin::reply::merge`) once the last is in. It knows nothing of sockets or processes:
//! the supervisor sends the lines and delivers the merged answer.

use slab::Slab;

use crate::admin::plane::ConnId;
use crate::admin::reply::{self, Merged, Reply};

/// The requests waiting for workers' replies.
#[derive(Default)]
pub(super) struct Fanout {
    pending: Slab<Pending>,
}

/// Who asked, and what the merged answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asker {
    /// A control client: the reply rendered as text.
    Control(ConnId),
    /// A `/metrics` scrape: the Prometheus text.
    Scrape(ConnId),
    /// A `/status.json` request: the status page's JSON.
    Status(ConnId),
    /// The supervisor itself, sampling a report for the status page's history.
    Sample,
}

impl Asker {
    /// The connection waiting for the answer, if any.
    pub fn conn(self) -> Option<ConnId> {
        match self {
            Asker::Control(c) | Asker::Scrape(c) | Asker::Status(c) => Some(c),
            Asker::Sample => None,
        }
    }
}

struct Pending {
    asker: Asker,
    line: String,
    /// One per worker: its reply, once in (`None` too if it died first).
    replies: Vec<Option<Reply>>,
    waiting: usize,
}

/// A request every worker has answered (or died on).
pub(super) struct Answered {
    /// Who asked.
    pub asker: Asker,
    /// The command line sent to the workers.
    pub line: String,
    /// How many workers replied.
    pub replies: usize,
    /// Their replies, merged.
    pub merged: Merged,
}

impl Fanout {
    /// A request from `asker` about to go to `workers` workers; returns its number.
    pub fn open(&mut self, asker: Asker, line: &str, workers: usize) -> usize {
        self.pending.insert(Pending {
            asker,
            line: line.to_string(),
            replies: vec![None; workers],
            waiting: workers,
        })
    }

    /// A request from `client` about to go to one worker of `workers`: what every worker
    /// shares (the client table) needs one answer, not a sum.
    pub fn open_one(&mut self, client: ConnId, line: &str, workers: usize) -> usize {
        let r = self.open(Asker::Control(client), line, workers);
        if let Some(p) = self.pending.get_mut(r) {
            p.waiting = 1;
        }
        r
    }

    /// Worker `worker`'s reply to request `r` (`None`: it died or had no channel). Once every
    /// worker is accounted for, the request is done and comes back merged.
    pub fn reply(&mut self, r: usize, worker: usize, reply: Option<Reply>) -> Option<Answered> {
        let p = self.pending.get_mut(r)?;
        if let Some(slot) = p.replies.get_mut(worker) {
            *slot = reply;
        }
        p.waiting = p.waiting.saturating_sub(1);
        if p.waiting > 0 {
            return None;
        }
        let p = self.pending.remove(r);
        let replies: Vec<(usize, Reply)> = p
            .replies
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r?)))
            .collect();
        Some(Answered {
            asker: p.asker,
            line: p.line,
            replies: replies.len(),
            merged: reply::merge(replies),
        })
    }

    /// True while `client` waits for an answer.
    pub fn busy(&self, client: ConnId) -> bool {
        self.pending
            .iter()
            .any(|(_, p)| p.asker.conn() == Some(client))
    }

    /// True while a sample for the status page is out.
    pub fn sampling(&self) -> bool {
        self.pending.iter().any(|(_, p)| p.asker == Asker::Sample)
    }
}

/// The commands whose effect must survive a worker respawn or an upgrade.
pub(super) fn is_replayed(line: &str) -> bool {
    let verb = line.split_whitespace().next().unwrap_or("");
    matches!(verb, "set" | "trace" | "untrace" | "upstream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_done_when_every_worker_answered_or_died() {
        let client = ConnId::for_tests(3);
        let mut f = Fanout::default();
        let r = f.open(Asker::Control(client), "kill 4", 3);
        assert!(f.busy(client));
        assert!(f
            .reply(
                r,
                0,
                Some(Reply::Killed {
                    id: 4,
                    found: false
                })
            )
            .is_none());
        assert!(f.reply(r, 2, None).is_none(), "worker 2 died");
        let done = f
            .reply(r, 1, Some(Reply::Killed { id: 4, found: true }))
            .unwrap();
        assert_eq!(done.replies, 2);
        assert_eq!(done.merged.render(), "ok: session 4 closed on worker 1");
        assert!(!f.busy(client));
        assert!(f.reply(r, 1, None).is_none(), "a late reply is dropped");
        assert!(is_replayed("trace example.test") && !is_replayed("kill 4"));
    }
}
