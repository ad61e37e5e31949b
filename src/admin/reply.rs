//! What a control command did on one worker, typed so that the supervisor merges the
//! workers' answers by what they mean, not by their text: how many running sessions a change
//! leaves alone, whether this worker held the session, its counters. Rendered for people
//! here, by a lone worker and after merging alike. Pure: no I/O.
//!
//! Workers under a supervisor send these over their channel (`admin::channel` writes and
//! reads them) rather than the text a person would get: a text reply would have to be parsed
//! back, and "no session 7" from one worker next to "session 7 closed" from another is only
//! right once it is known that they are about the same session.

use std::fmt;

use crate::admin::metrics;
use crate::admin::report::Report;
use crate::admin::upstreams;

/// The header line of `show sessions`.
pub const SESSIONS_HEADER: &str =
    "id state client sni host route upstream bytes_up bytes_down age_ms traced listener";

/// The header line of `show listeners`.
pub const LISTENERS_HEADER: &str = "name address state sessions accepted refused policy";

/// One worker's answer to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Text for people, the same on every worker (help, show config, untrace, log level).
    Text(String),
    /// A refusal or a failure: the text after `error: `.
    Error(String),
    /// A configuration applied to new sessions (`set KEY`, or `reload` without a key).
    Applied {
        /// The key `set` changed.
        key: Option<String>,
        /// What was applied.
        applied: Applied,
    },
    /// `show sessions`: one line per session, without the header.
    Sessions(Vec<String>),
    /// `show listeners`: one line per listener (`NAME ADDR STATE SESSIONS ACCEPTED REFUSED
    /// POLICY...`), without the header.
    Listeners(Vec<String>),
    /// `show stats`.
    Stats(Report),
    /// `metrics`: the same report, as Prometheus text.
    Metrics(Report),
    /// `show upstreams`: the same report, as a table per upstream.
    Upstreams(Report),
    /// `trace RULE`: the rule as people read it, and the running sessions it now traces.
    Traced {
        /// The rule, e.g. `session 7` or `name example.test`.
        rule: String,
        /// Running sessions now traced.
        sessions: u64,
    },
    /// `kill SID`: whether this worker held (and closed) the session.
    Killed {
        /// The session id.
        id: u64,
        /// True if this worker held it.
        found: bool,
    },
    /// `reopen-logs`: the log target, and how many processes reopened it.
    Reopened {
        /// The target as configured, e.g. `file:/var/log/sluice.log`.
        target: String,
        /// Processes that reopened it (one per worker, and the supervisor).
        processes: u64,
    },
    /// `drain`: sessions left to finish, and the deadline.
    Draining {
        /// Sessions running.
        sessions: u64,
        /// Milliseconds until what is left is closed.
        deadline_ms: u64,
    },
}

/// A configuration applied to new sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Routes in the new configuration.
    pub routes: u64,
    /// The default upstream's name.
    pub upstream: String,
    /// Running sessions, which keep the configuration they started with.
    pub running: u64,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config applied to new sessions ({} route(s), upstream {}); {} running session(s) keep theirs",
            self.routes, self.upstream, self.running
        )
    }
}

impl Reply {
    /// False for a refusal or a failure (`sluice ctl` then exits 1).
    pub fn is_ok(&self) -> bool {
        !matches!(self, Reply::Error(_) | Reply::Killed { found: false, .. })
    }

    /// The reply as a person reads it (without the blank line that ends it).
    pub fn render(&self) -> String {
        match self {
            Reply::Text(t) => t.clone(),
            Reply::Error(e) => format!("error: {e}"),
            Reply::Applied { key, applied } => match key {
                Some(k) => format!("ok: {k} set; {applied}"),
                None => format!("ok: {applied}"),
            },
            Reply::Sessions(rows) => {
                let mut o = String::from(SESSIONS_HEADER);
                o.push('\n');
                for r in rows {
                    o.push_str(r);
                    o.push('\n');
                }
                o
            }
            Reply::Listeners(rows) => {
                let mut o = String::from(LISTENERS_HEADER);
                o.push('\n');
                for r in rows {
                    o.push_str(r);
                    o.push('\n');
                }
                o
            }
            Reply::Stats(r) => r.show_stats(),
            Reply::Metrics(r) => metrics::render(r),
            Reply::Upstreams(r) => upstreams::render(r),
            Reply::Traced { rule, sessions } => {
                format!("ok: tracing {rule} ({sessions} running session(s) now traced)")
            }
            Reply::Killed { id, found: true } => format!("ok: session {id} closed"),
            Reply::Killed { id, found: false } => format!("error: no session {id}"),
            Reply::Draining {
                sessions,
                deadline_ms,
            } => format!("ok: draining {sessions} session(s), deadline in {deadline_ms} ms"),
            Reply::Reopened { target, processes } => {
                format!("ok: {target} reopened by {processes} process(es)")
            }
        }
    }
}

/// Adds one worker's `show listeners` row into `rows`: the same listener (name and
/// address) from several workers is one row, its numbers summed, active if any serves it.
fn merge_listener_row(rows: &mut Vec<Vec<String>>, row: &str) {
    let words: Vec<String> = row.splitn(7, ' ').map(String::from).collect();
    let key = |w: &[String]| (w.first().cloned(), w.get(1).cloned());
    let Some(have) = rows.iter_mut().find(|r| key(r) == key(&words)) else {
        rows.push(words);
        return;
    };
    for i in 3..6 {
        let sum = [have.get(i), words.get(i)]
            .iter()
            .filter_map(|w| w.and_then(|w| w.parse::<u64>().ok()))
            .sum::<u64>();
        if let Some(w) = have.get_mut(i) {
            *w = sum.to_string();
        }
    }
    if words.get(2).is_some_and(|s| s == "active") {
        if let Some(w) = have.get_mut(2) {
            *w = "active".into();
        }
    }
}

/// Several workers' replies to one command, made one.
#[derive(Debug, Clone, PartialEq)]
pub enum Merged {
    /// One reply stands for all.
    One(Reply),
    /// One reply, about what the listed workers held (the session killed or traced).
    On(Reply, Vec<usize>),
    /// Workers that disagree, each with its own reply.
    PerWorker(Vec<(usize, Reply)>),
}

impl Merged {
    /// False if any worker refused or failed.
    pub fn is_ok(&self) -> bool {
        match self {
            Merged::One(r) | Merged::On(r, _) => r.is_ok(),
            Merged::PerWorker(v) => v.iter().all(|(_, r)| r.is_ok()),
        }
    }

    /// Counts the supervisor's own reopening into a merged `reopen-logs`, or makes the answer
    /// a failure that says why the supervisor could not.
    pub fn add_reopened(&mut self, own: Result<(), String>) {
        match (own, &mut *self) {
            (Ok(()), Merged::One(Reply::Reopened { processes, .. })) => *processes += 1,
            (Ok(()), _) => {}
            (Err(e), _) => {
                let workers = self.render();
                *self = Merged::One(Reply::Error(format!(
                    "the supervisor's log not reopened: {e}; workers: {workers}"
                )));
            }
        }
    }

    /// Adds `extra` (the supervisor's own families) to a merged report.
    pub fn add_report(&mut self, extra: &Report) {
        if let Merged::One(Reply::Stats(r) | Reply::Metrics(r)) = self {
            r.merge(extra);
        }
    }

    /// The reply as a person reads it (without the blank line that ends it).
    pub fn render(&self) -> String {
        match self {
            Merged::One(r) => r.render(),
            Merged::On(r, workers) => {
                let list: Vec<String> = workers.iter().map(usize::to_string).collect();
                let s = if workers.len() == 1 { "" } else { "s" };
                format!("{} on worker{s} {}", r.render(), list.join(", "))
            }
            Merged::PerWorker(replies) => {
                let mut out = String::new();
                for (i, r) in replies {
                    for l in r.render().lines() {
                        match l.strip_prefix("error: ") {
                            Some(e) => out.push_str(&format!("error: worker {i}: {e}\n")),
                            None => out.push_str(&format!("worker {i}: {l}\n")),
                        }
                    }
                }
                out
            }
        }
    }
}

/// Merges the replies of the workers that answered (worker index, reply): counts are summed,
/// a session is found where it lives, rows and reports are put together; identical replies
/// are shown once; anything else is shown worker by worker.
pub fn merge(mut replies: Vec<(usize, Reply)>) -> Merged {
    if replies.len() <= 1 {
        return Merged::One(
            replies
                .pop()
                .map_or_else(|| Reply::Error("no worker answered".into()), |(_, r)| r),
        );
    }
    if let Some(m) = merge_same_kind(&replies) {
        return m;
    }
    let first = replies.first().map(|(_, r)| r.clone());
    if let Some(first) = first.filter(|f| replies.iter().all(|(_, r)| r == f)) {
        return Merged::One(first);
    }
    Merged::PerWorker(replies)
}

/// Replies of one kind that carry counts, rows or reports.
fn merge_same_kind(replies: &[(usize, Reply)]) -> Option<Merged> {
    let (_, first) = replies.first()?;
    let rest = replies.get(1..).unwrap_or(&[]);
    match first {
        Reply::Stats(_) | Reply::Metrics(_) | Reply::Upstreams(_) => {
            let mut total = first.clone();
            for (_, r) in rest {
                match (&mut total, r) {
                    (Reply::Stats(t), Reply::Stats(x))
                    | (Reply::Metrics(t), Reply::Metrics(x))
                    | (Reply::Upstreams(t), Reply::Upstreams(x)) => t.merge(x),
                    _ => return None,
                }
            }
            Some(Merged::One(total))
        }
        Reply::Listeners(_) => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for (_, r) in replies {
                let Reply::Listeners(r) = r else { return None };
                for row in r {
                    merge_listener_row(&mut rows, row);
                }
            }
            let rows = rows.into_iter().map(|r| r.join(" ")).collect();
            Some(Merged::One(Reply::Listeners(rows)))
        }
        Reply::Sessions(_) => {
            let mut rows = Vec::new();
            for (_, r) in replies {
                let Reply::Sessions(r) = r else { return None };
                rows.extend(r.iter().cloned());
            }
            Some(Merged::One(Reply::Sessions(rows)))
        }
        Reply::Applied { key, applied } => {
            let mut running = 0;
            for (_, r) in replies {
                match r {
                    Reply::Applied { key: k, applied: a }
                        if k == key
                            && a.routes == applied.routes
                            && a.upstream == applied.upstream =>
                    {
                        running += a.running
                    }
                    _ => return None,
                }
            }
            Some(Merged::One(Reply::Applied {
                key: key.clone(),
                applied: Applied {
                    running,
                    ..applied.clone()
                },
            }))
        }
        Reply::Traced { rule, .. } => {
            let mut total = 0;
            let mut on = Vec::new();
            for (i, r) in replies {
                match r {
                    Reply::Traced { rule: r, sessions } if r == rule => {
                        total += sessions;
                        if *sessions > 0 {
                            on.push(*i);
                        }
                    }
                    _ => return None,
                }
            }
            let reply = Reply::Traced {
                rule: rule.clone(),
                sessions: total,
            };
            Some(if on.is_empty() {
                Merged::One(reply)
            } else {
                Merged::On(reply, on)
            })
        }
        Reply::Killed { id, .. } => {
            let mut on = Vec::new();
            for (i, r) in replies {
                match r {
                    Reply::Killed { id: x, found } if x == id => {
                        if *found {
                            on.push(*i);
                        }
                    }
                    _ => return None,
                }
            }
            let found = !on.is_empty();
            let reply = Reply::Killed { id: *id, found };
            Some(if found {
                Merged::On(reply, on)
            } else {
                Merged::One(reply)
            })
        }
        Reply::Draining { deadline_ms, .. } => {
            let mut sessions = 0;
            for (_, r) in replies {
                let Reply::Draining { sessions: n, .. } = r else {
                    return None;
                };
                sessions += n;
            }
            Some(Merged::One(Reply::Draining {
                sessions,
                deadline_ms: *deadline_ms,
            }))
        }
        Reply::Reopened { target, .. } => {
            let mut processes = 0;
            for (_, r) in replies {
                match r {
                    Reply::Reopened {
                        target: t,
                        processes: n,
                    } if t == target => processes += n,
                    _ => return None,
                }
            }
            Some(Merged::One(Reply::Reopened {
                target: target.clone(),
                processes,
            }))
        }
        Reply::Text(_) | Reply::Error(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(running: u64) -> Reply {
        Reply::Applied {
            key: Some("ENVOY_IDLE_TIMEOUT_MS".into()),
            applied: Applied {
                routes: 0,
                upstream: "up:1".into(),
                running,
            },
        }
    }

    #[test]
    fn a_kill_is_reported_by_the_worker_that_held_the_session() {
        let m = merge(vec![
            (
                0,
                Reply::Killed {
                    id: 4,
                    found: false,
                },
            ),
            (1, Reply::Killed { id: 4, found: true }),
        ]);
        assert!(m.is_ok());
        assert_eq!(m.render(), "ok: session 4 closed on worker 1");
        let m = merge(vec![
            (
                0,
                Reply::Killed {
                    id: 9,
                    found: false,
                },
            ),
            (
                1,
                Reply::Killed {
                    id: 9,
                    found: false,
                },
            ),
        ]);
        assert!(!m.is_ok());
        assert_eq!(m.render(), "error: no session 9");
    }

    #[test]
    fn counts_are_summed_over_workers() {
        let m = merge(vec![(0, applied(2)), (1, applied(3))]);
        assert_eq!(
            m.render(),
            "ok: ENVOY_IDLE_TIMEOUT_MS set; config applied to new sessions (0 route(s), upstream up:1); 5 running session(s) keep theirs"
        );
        let traced = |n| Reply::Traced {
            rule: "name a.test".into(),
            sessions: n,
        };
        let m = merge(vec![(0, traced(2)), (1, traced(1)), (2, traced(0))]);
        assert_eq!(
            m.render(),
            "ok: tracing name a.test (3 running session(s) now traced) on workers 0, 1"
        );
        let m = merge(vec![(0, traced(0)), (1, traced(0))]);
        assert_eq!(
            m.render(),
            "ok: tracing name a.test (0 running session(s) now traced)"
        );
        let m = merge(vec![
            (
                0,
                Reply::Draining {
                    sessions: 1,
                    deadline_ms: 9,
                },
            ),
            (
                1,
                Reply::Draining {
                    sessions: 2,
                    deadline_ms: 9,
                },
            ),
        ]);
        assert_eq!(m.render(), "ok: draining 3 session(s), deadline in 9 ms");
        let reopened = |target: &str| Reply::Reopened {
            target: target.into(),
            processes: 1,
        };
        let mut m = merge(vec![(0, reopened("file:/l")), (1, reopened("file:/l"))]);
        m.add_reopened(Ok(()));
        assert_eq!(m.render(), "ok: file:/l reopened by 3 process(es)");
        m.add_reopened(Err("permission denied".into()));
        assert!(!m.is_ok());
        assert_eq!(
            m.render(),
            "error: the supervisor's log not reopened: permission denied; workers: ok: file:/l reopened by 3 process(es)"
        );
        let m = merge(vec![
            (0, reopened("file:/l")),
            (1, Reply::Error("file:/l not reopened: EACCES".into())),
        ]);
        assert!(!m.is_ok());
    }

    #[test]
    fn identical_replies_once_rows_together_differences_per_worker() {
        let help = Reply::Text("help".into());
        assert_eq!(
            merge(vec![(0, help.clone()), (1, help.clone())]),
            Merged::One(help)
        );
        let m = merge(vec![
            (0, Reply::Sessions(vec!["1 Connected".into()])),
            (1, Reply::Sessions(vec!["2 Opened".into()])),
        ]);
        assert_eq!(
            m.render(),
            format!("{SESSIONS_HEADER}\n1 Connected\n2 Opened\n")
        );
        let m = merge(vec![
            (0, applied(1)),
            (1, Reply::Error("bind: in use".into())),
        ]);
        assert!(!m.is_ok());
        assert_eq!(
            m.render(),
            "worker 0: ok: ENVOY_IDLE_TIMEOUT_MS set; config applied to new sessions (0 route(s), upstream up:1); 1 running session(s) keep theirs\nerror: worker 1: bind: in use\n"
        );
        assert_eq!(merge(vec![]).render(), "error: no worker answered");
        let one = merge(vec![(0, Reply::Killed { id: 1, found: true })]);
        assert_eq!(
            one.render(),
            "ok: session 1 closed",
            "one worker: as it said"
        );
    }
}
