//! The control socket and `/metrics` of a supervised sluice: each request goes to every
//! worker over its channel, and the replies come back merged into one answer.

use std::fmt::Write as _;

use mio::Token;

use super::{AdminConn, AdminStream, Ctl, Request, Supervisor, CLIENT_BASE};
use crate::admin::command;
use crate::wire::http;
use crate::wire::Parsed;

impl Supervisor {
    pub(super) fn accept_clients(&mut self, metrics: bool) {
        loop {
            let accepted = if metrics {
                match self.metrics.as_ref().map(|l| l.accept()) {
                    Some(Ok((s, _))) => AdminStream::Tcp(s),
                    _ => return,
                }
            } else {
                match self.control.as_ref().map(|(l, _)| l.accept()) {
                    Some(Ok((s, _))) => AdminStream::Unix(s),
                    _ => return,
                }
            };
            let entry = self.clients.vacant_entry();
            let mut conn = AdminConn::new(accepted);
            let token = Token(CLIENT_BASE + entry.key());
            if conn.register(self.poll.registry(), token).is_ok() {
                entry.insert(conn);
            }
        }
    }

    pub(super) fn on_client(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key) else {
            return;
        };
        let open = conn.fill();
        let is_metrics = matches!(conn.stream, AdminStream::Tcp(_));
        if is_metrics {
            if !conn.close_after_write && !conn.input.is_empty() {
                match http::parse_request_host(&conn.input) {
                    Parsed::NeedMore => {}
                    Parsed::Complete(head, _)
                        if head.method == b"GET" && head.target == b"/metrics" =>
                    {
                        conn.close_after_write = true;
                        self.fan_out(key, "metrics".into(), true);
                    }
                    _ => {
                        conn.output.extend_from_slice(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\nConnection: close\r\n\r\ntry /metrics\n",
                        );
                        conn.close_after_write = true;
                    }
                }
            }
        } else {
            let mut lines = Vec::new();
            while let Some(l) = self.clients.get_mut(key).and_then(AdminConn::next_line) {
                lines.push(l);
            }
            for line in lines {
                match line
                    .map_err(|e| e.to_string())
                    .and_then(|l| command::parse(&l).map(|c| (l, c)))
                {
                    Err(e) => self.answer(key, format!("error: {e}")),
                    Ok((_, Ctl::Upgrade)) => {
                        let r = match self.start_upgrade() {
                            Ok(pid) => format!("ok: upgrade started: new supervisor pid {pid}; the old workers drain once it is ready"),
                            Err(e) => format!("error: upgrade not started: {e}; still serving"),
                        };
                        self.answer(key, r);
                    }
                    Ok((l, cmd)) => {
                        if cmd == Ctl::Drain {
                            self.stop();
                        }
                        self.fan_out(key, l, false);
                    }
                }
            }
        }
        self.flush_client(key, open.unwrap_or(false));
    }

    pub(super) fn answer(&mut self, key: usize, text: String) {
        if let Some(c) = self.clients.get_mut(key) {
            c.output
                .extend_from_slice(text.trim_end_matches('\n').as_bytes());
            c.output.extend_from_slice(b"\n\n");
        }
    }

    pub(super) fn flush_client(&mut self, key: usize, peer_open: bool) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let waiting = self.requests.iter().any(|(_, r)| r.client == key);
        let done = match c.flush_out() {
            Err(_) => true,
            Ok(all_out) => all_out && !waiting && (!peer_open || c.close_after_write),
        };
        if done {
            let mut c = self.clients.remove(key);
            let _ = self.poll.registry().deregister(c.stream.source());
        }
    }

    pub(super) fn fan_out(&mut self, client: usize, line: String, metrics: bool) {
        let n = self.workers.len();
        let r = self.requests.insert(Request {
            client,
            line: line.clone(),
            metrics,
            replies: vec![None; n],
            waiting: n,
        });
        for i in 0..n {
            self.send(i, &line, Some(r));
        }
        self.maybe_complete(r);
    }

    pub(super) fn reply_from(&mut self, r: usize, i: usize, text: Option<String>) {
        let Some(req) = self.requests.get_mut(r) else {
            return;
        };
        if let Some(slot) = req.replies.get_mut(i) {
            *slot = text;
        }
        req.waiting = req.waiting.saturating_sub(1);
        self.maybe_complete(r);
    }

    pub(super) fn maybe_complete(&mut self, r: usize) {
        if self.requests.get(r).is_none_or(|req| req.waiting > 0) {
            return;
        }
        let req = self.requests.remove(r);
        let replies: Vec<String> = req.replies.iter().flatten().cloned().collect();
        let text = if req.metrics {
            let body = merge_metrics(&replies, self.restarts);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            let merged = merge_replies(&req.line, &replies);
            let records = merged.starts_with("ok:") && !merged.contains("\nerror:");
            if records && is_replayed(&req.line) {
                self.replay.push(req.line.clone());
            }
            format!("{}\n\n", merged.trim_end_matches('\n'))
        };
        if let Some(c) = self.clients.get_mut(req.client) {
            c.output.extend_from_slice(text.as_bytes());
        }
        self.flush_client(req.client, true);
    }
}

/// The commands whose effect must survive a worker respawn or an upgrade.
fn is_replayed(line: &str) -> bool {
    let verb = line.split_whitespace().next().unwrap_or("");
    matches!(verb, "set" | "trace" | "untrace")
}

/// One reply from several workers: identical ones once; `show sessions` concatenated;
/// `show stats` summed; otherwise every worker's, prefixed, errors first.
fn merge_replies(line: &str, replies: &[String]) -> String {
    if replies.is_empty() {
        return "error: no worker answered".into();
    }
    if replies.iter().all(|r| r == &replies[0]) {
        return replies[0].clone();
    }
    match line.trim() {
        "show sessions" => {
            let mut out = String::new();
            for (i, r) in replies.iter().enumerate() {
                for (j, l) in r.lines().enumerate() {
                    if j > 0 || i == 0 {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
            out
        }
        "show stats" => {
            let mut keys: Vec<String> = Vec::new();
            let mut sums: std::collections::HashMap<String, Result<u64, String>> =
                Default::default();
            for r in replies {
                for l in r.lines() {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    if !sums.contains_key(k) {
                        keys.push(k.to_string());
                    }
                    let e = sums.entry(k.to_string()).or_insert(Ok(0));
                    *e = match (e.clone(), v.parse::<u64>()) {
                        (Ok(a), Ok(b)) => Ok(a + b),
                        (Err(s), _) => Err(s),
                        (Ok(_), Err(_)) => Err(v.to_string()),
                    };
                }
            }
            let mut out = String::new();
            for k in keys {
                match &sums[&k] {
                    Ok(n) => writeln!(out, "{k}={n}"),
                    Err(s) => writeln!(out, "{k}={s}"),
                }
                .ok();
            }
            out
        }
        _ => {
            let ok = replies.iter().all(|r| r.starts_with("ok:"));
            if ok {
                return replies[0].clone();
            }
            let mut out = String::new();
            for (i, r) in replies.iter().enumerate() {
                for l in r.lines() {
                    match l.strip_prefix("error: ") {
                        Some(e) => writeln!(out, "error: worker {i}: {e}"),
                        None => writeln!(out, "worker {i}: {l}"),
                    }
                    .ok();
                }
            }
            out
        }
    }
}

/// Sums the workers' expositions series by series (a few gauges take the maximum).
fn merge_metrics(replies: &[String], restarts: u64) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut values: std::collections::HashMap<String, f64> = Default::default();
    for r in replies {
        for l in r.lines() {
            if l.starts_with('#') {
                if !values.contains_key(l) {
                    values.insert(l.to_string(), 0.0);
                    order.push(l.to_string());
                }
                continue;
            }
            let Some((series, v)) = l.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            let max = series.starts_with("sluice_buffer_size_bytes")
                || series.starts_with("sluice_build_info")
                || series.starts_with("sluice_draining");
            match values.get_mut(series) {
                Some(x) if max => *x = x.max(v),
                Some(x) => *x += v,
                None => {
                    values.insert(series.to_string(), v);
                    order.push(series.to_string());
                }
            }
        }
    }
    let mut out = String::new();
    for k in order {
        if k.starts_with('#') {
            out.push_str(&k);
        } else {
            let _ = write!(out, "{k} {}", values[&k]);
        }
        out.push('\n');
    }
    let _ = writeln!(out, "# HELP sluice_workers Worker processes answering this scrape.\n# TYPE sluice_workers gauge\nsluice_workers {}", replies.len());
    let _ = writeln!(out, "# HELP sluice_worker_restarts_total Workers respawned after dying.\n# TYPE sluice_worker_restarts_total counter\nsluice_worker_restarts_total {restarts}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn replies_merge() {
        assert_eq!(
            merge_replies("show config", &["a=1".into(), "a=1".into()]),
            "a=1"
        );
        let s = merge_replies(
            "show stats",
            &["accepted=2\ntraces=x".into(), "accepted=3\ntraces=x".into()],
        );
        assert_eq!(s, "accepted=5\ntraces=x\n");
        let s = merge_replies(
            "show sessions",
            &["id state\n1 Connected".into(), "id state\n2 Opened".into()],
        );
        assert_eq!(
            s,
            "id state\n1 Connected\nid state\n2 Opened\n".replacen("id state\n2", "2", 1)
        );
        let s = merge_replies(
            "kill 3",
            &["error: no session 3".into(), "ok: session 3 closed".into()],
        );
        assert!(s.starts_with("error: worker 0: no session 3"), "{s}");
    }

    #[test]
    pub(super) fn metrics_merge_sums_and_keeps_help_once() {
        let w = "# HELP x X.\n# TYPE x counter\nx{a=\"1\"} 2\nsluice_buffer_size_bytes 16384\n"
            .to_string();
        let m = merge_metrics(&[w.clone(), w], 0);
        assert_eq!(m.matches("# HELP x").count(), 1);
        assert!(m.contains("x{a=\"1\"} 4\n"));
        assert!(m.contains("sluice_buffer_size_bytes 16384\n"));
        assert!(m.contains("sluice_workers 2\n"));
    }
}
