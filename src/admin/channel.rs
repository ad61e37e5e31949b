//! The line format a worker answers its supervisor in: the one place that writes and reads
//! what crosses the channel from a worker, so that nothing else in the crate parses a
//! worker's output. Pure: no I/O.
//!
//! The supervisor sends control lines as people type them (`kill 7`, `show stats`, ...).
//! A worker answers each, in order, with one message: lines ended by a blank line. Its first
//! message, unasked, is `ready`. A message's first line says what it is:
//!
//! ```text
//! text                     a person's text, same on every worker; then its lines, each after '|'
//! error                    a refusal or failure; then its lines, each after '|'
//! applied R N K UPSTREAM   config applied: R running sessions, N routes, key K ('-': reload)
//! sessions                 `show sessions`; then one row per session, each after '|'
//! listeners                `show listeners`; then one row per listener, each after '|'
//! traced N RULE            `trace`: N running sessions now traced by RULE
//! killed ID F              `kill`: F is 1 if this worker held session ID, else 0
//! draining N MS            `drain`: N sessions left, MS until the deadline
//! reopened N TARGET        `reopen-logs`: N processes reopened TARGET
//! stats | metrics | upstreams   a report; then one line per family present (report::TABLE):
//!   KEY VALUE                      a family of one series
//!   KEY L=VALUE L=VALUE ...        by label values (several joined by '/')
//!   KEY B=N ... inf=N sum=MS       a histogram: count per bucket bound (ms), sum in ms
//!   KEY L=N,N,...,N,MS ...         histograms by label values: counts in bucket order
//!                                  (+Inf last), then the sum in ms
//!   KEY TEXT                       words, to the end of the line
//! ```
//!
//! For example, a worker's `show stats`:
//!
//! ```text
//! stats
//! build_info 0.1.0/abc1234=1
//! sessions Opened=0 HeaderParsed=0 Connecting=0 Connected=2 HalfClosed=0
//! accepted 10
//! parse_errors tls/not_client_hello=3
//! connect_seconds 1=0 2=4 5=1 10=0 25=0 50=0 100=0 250=0 500=0 1000=0 2500=0 5000=0 30000=0 300000=0 inf=0 sum=9
//! traces name example.test
//!
//! ```
//!
//! Label values are escaped (`%20` for a space, and `%`, `=`, `/`, newline likewise) so that
//! a token never holds a separator. Both ends are the same binary (an upgrade starts new
//! workers with the new supervisor), so the format has no version.

use crate::admin::reply::{Applied, Reply};
use crate::admin::report::{Def, Kind, Report, Value, TABLE};
use crate::worker::stats::Histogram;

/// A worker's first message.
pub const READY: &str = "ready";

/// What a worker said.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// It is up.
    Ready,
    /// Its answer to the oldest command not yet answered.
    Reply(Reply),
}

/// A reply as a message, without the blank line that ends it.
pub fn encode(reply: &Reply) -> String {
    let mut o = String::new();
    let lines = |o: &mut String, head: &str, body: &mut dyn Iterator<Item = &str>| {
        o.push_str(head);
        for l in body {
            o.push_str("\n|");
            o.push_str(l);
        }
    };
    match reply {
        Reply::Text(t) => lines(&mut o, "text", &mut t.lines()),
        Reply::Error(e) => lines(&mut o, "error", &mut e.lines()),
        Reply::Applied { key, applied } => {
            o = format!(
                "applied {} {} {} {}",
                applied.running,
                applied.routes,
                key.as_deref().map_or_else(|| "-".into(), escape),
                one_line(&applied.upstream)
            );
        }
        Reply::Sessions(rows) => {
            let rows: Vec<String> = rows.iter().map(|r| one_line(r)).collect();
            lines(&mut o, "sessions", &mut rows.iter().map(String::as_str))
        }
        Reply::Listeners(rows) => {
            let rows: Vec<String> = rows.iter().map(|r| one_line(r)).collect();
            lines(&mut o, "listeners", &mut rows.iter().map(String::as_str))
        }
        Reply::Stats(r) => report(&mut o, "stats", r),
        Reply::Metrics(r) => report(&mut o, "metrics", r),
        Reply::Upstreams(r) => report(&mut o, "upstreams", r),
        Reply::Traced { rule, sessions } => o = format!("traced {sessions} {}", one_line(rule)),
        Reply::Killed { id, found } => o = format!("killed {id} {}", u8::from(*found)),
        Reply::Draining {
            sessions,
            deadline_ms,
        } => o = format!("draining {sessions} {deadline_ms}"),
        Reply::Reopened { target, processes } => {
            o = format!("reopened {processes} {}", one_line(target))
        }
    }
    o
}

fn report(o: &mut String, head: &str, r: &Report) {
    o.push_str(head);
    for (def, value) in r.families() {
        let body = match value {
            Value::Absent => continue,
            Value::One(n) => n.to_string(),
            Value::Labelled(series) => series
                .iter()
                .map(|(labels, n)| {
                    let l: Vec<String> = labels.iter().map(|v| escape(v)).collect();
                    format!("{}={n}", l.join("/"))
                })
                .collect::<Vec<_>>()
                .join(" "),
            Value::Histogram(h) => {
                let mut t: Vec<String> = Histogram::BOUNDS_MS
                    .iter()
                    .map(|b| b.to_string())
                    .chain(std::iter::once("inf".to_string()))
                    .zip(h.counts)
                    .map(|(b, n)| format!("{b}={n}"))
                    .collect();
                t.push(format!("sum={}", h.sum_ms));
                t.join(" ")
            }
            Value::Histograms(series) => series
                .iter()
                .map(|(labels, h)| {
                    let l: Vec<String> = labels.iter().map(|v| escape(v)).collect();
                    let counts: Vec<String> = h.counts.iter().map(u64::to_string).collect();
                    format!("{}={},{}", l.join("/"), counts.join(","), h.sum_ms)
                })
                .collect::<Vec<_>>()
                .join(" "),
            Value::Text(t) => one_line(t),
        };
        o.push('\n');
        o.push_str(def.key);
        o.push(' ');
        o.push_str(&body);
    }
}

/// Reads one message (its lines, without the blank line that ended it).
pub fn decode(message: &str) -> Result<Message, String> {
    let mut lines = message.lines();
    let head = lines.next().unwrap_or("");
    let (verb, args) = head.split_once(' ').unwrap_or((head, ""));
    let mut body = || -> Result<Vec<String>, String> {
        lines
            .by_ref()
            .map(|l| {
                l.strip_prefix('|')
                    .map(String::from)
                    .ok_or_else(|| format!("a body line without '|': {l:?}"))
            })
            .collect()
    };
    let mut words = args.splitn(4, ' ');
    let mut word = |what: &str| -> Result<&str, String> {
        words.next().ok_or_else(|| format!("{verb}: no {what}"))
    };
    let number = |w: &str| -> Result<u64, String> {
        w.parse()
            .map_err(|_| format!("{verb}: not a number: {w:?}"))
    };
    let reply = match verb {
        READY if args.is_empty() => return Ok(Message::Ready),
        "text" => Reply::Text(body()?.join("\n")),
        "error" => Reply::Error(body()?.join("\n")),
        "sessions" => Reply::Sessions(body()?),
        "listeners" => Reply::Listeners(body()?),
        "applied" => {
            let running = number(word("count")?)?;
            let routes = number(word("routes")?)?;
            let key = match word("key")? {
                "-" => None,
                k => Some(unescape(k)?),
            };
            let upstream = word("upstream")?.to_string();
            Reply::Applied {
                key,
                applied: Applied {
                    routes,
                    upstream,
                    running,
                },
            }
        }
        "traced" => {
            let (n, rule) = args.split_once(' ').unwrap_or((args, ""));
            Reply::Traced {
                rule: rule.to_string(),
                sessions: number(n)?,
            }
        }
        "killed" => Reply::Killed {
            id: number(word("session id")?)?,
            found: word("flag")? == "1",
        },
        "draining" => Reply::Draining {
            sessions: number(word("count")?)?,
            deadline_ms: number(word("deadline")?)?,
        },
        "reopened" => {
            let (n, target) = args.split_once(' ').unwrap_or((args, ""));
            Reply::Reopened {
                target: target.to_string(),
                processes: number(n)?,
            }
        }
        "stats" => Reply::Stats(decode_report(lines)?),
        "metrics" => Reply::Metrics(decode_report(lines)?),
        "upstreams" => Reply::Upstreams(decode_report(lines)?),
        _ => return Err(format!("unknown message {head:?}")),
    };
    Ok(Message::Reply(reply))
}

fn decode_report<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Report, String> {
    let mut values = vec![Value::Absent; TABLE.len()];
    for l in lines {
        let (key, rest) = l.split_once(' ').unwrap_or((l, ""));
        let (i, def) = TABLE
            .iter()
            .enumerate()
            .find(|(_, d)| d.key == key)
            .ok_or_else(|| format!("unknown family {key:?}"))?;
        let v = decode_value(def, rest).map_err(|e| format!("{key}: {e}"))?;
        if let Some(slot) = values.get_mut(i) {
            *slot = v;
        }
    }
    Ok(Report::from_values(values))
}

fn decode_value(def: &Def, rest: &str) -> Result<Value, String> {
    let number =
        |w: &str| -> Result<u64, String> { w.parse().map_err(|_| format!("not a number: {w:?}")) };
    let pairs = || {
        rest.split(' ').filter(|t| !t.is_empty()).map(|t| {
            t.rsplit_once('=')
                .ok_or_else(|| format!("not NAME=VALUE: {t:?}"))
        })
    };
    match def.kind {
        Kind::Text => Ok(Value::Text(rest.to_string())),
        Kind::Histogram if !def.labels.is_empty() => {
            let mut series = Vec::new();
            for p in pairs() {
                let (labels, numbers) = p?;
                let labels = labels
                    .split('/')
                    .map(unescape)
                    .collect::<Result<Vec<_>, _>>()?;
                if labels.len() != def.labels.len() {
                    return Err(format!("{} label value(s)", labels.len()));
                }
                let numbers = numbers
                    .split(',')
                    .map(number)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut h = Histogram::default();
                let (sum, counts) = numbers.split_last().ok_or("no counts")?;
                if counts.len() != h.counts.len() {
                    return Err(format!("{} buckets", counts.len()));
                }
                h.counts.copy_from_slice(counts);
                h.sum_ms = *sum;
                series.push((labels, h));
            }
            Ok(Value::Histograms(series))
        }
        Kind::Histogram => {
            let mut h = Histogram::default();
            let mut buckets = 0;
            for p in pairs() {
                let (b, n) = p?;
                if b == "sum" {
                    h.sum_ms = number(n)?;
                    continue;
                }
                let slot = h.counts.get_mut(buckets).ok_or("too many buckets")?;
                let bound = Histogram::BOUNDS_MS.get(buckets).map(u64::to_string);
                if bound.as_deref().unwrap_or("inf") != b {
                    return Err(format!("bucket {b:?} out of place"));
                }
                *slot = number(n)?;
                buckets += 1;
            }
            if buckets != h.counts.len() {
                return Err(format!("{buckets} buckets"));
            }
            Ok(Value::Histogram(h))
        }
        Kind::Counter | Kind::Gauge if def.labels.is_empty() => Ok(Value::One(number(rest)?)),
        Kind::Counter | Kind::Gauge => {
            let mut series = Vec::new();
            for p in pairs() {
                let (labels, n) = p?;
                let labels = labels
                    .split('/')
                    .map(unescape)
                    .collect::<Result<Vec<_>, _>>()?;
                if labels.len() != def.labels.len() {
                    return Err(format!("{} label value(s)", labels.len()));
                }
                series.push((labels, number(n)?));
            }
            Ok(Value::Labelled(series))
        }
    }
}

/// Text kept to one line (words never hold a line end; this only guards the framing).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

const ESCAPED: [char; 8] = ['%', ' ', '=', '/', '@', ',', '\n', '\r'];

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if ESCAPED.contains(&c) {
            o.push_str(&format!("%{:02X}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

fn unescape(s: &str) -> Result<String, String> {
    let mut o = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        o.push_str(rest.get(..i).unwrap_or(""));
        let hex = rest.get(i + 1..i + 3).ok_or("a cut escape")?;
        let c = u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape %{hex}"))?;
        o.push(char::from(c));
        rest = rest.get(i + 3..).unwrap_or("");
    }
    o.push_str(rest);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::{Gauges, Supervision};
    use crate::worker::stats::{CloseReason, Stats};
    use crate::worker::upstreams::Member;

    fn round_trip(r: Reply) {
        let text = encode(&r);
        assert!(!text.contains("\n\n") && !text.ends_with('\n'), "{text:?}");
        assert_eq!(decode(&text), Ok(Message::Reply(r)), "{text}");
    }

    #[test]
    fn every_reply_comes_back_as_it_went() {
        round_trip(Reply::Text("line one\n\nline three".into()));
        round_trip(Reply::Text(String::new()));
        round_trip(Reply::Error("no such key".into()));
        round_trip(Reply::Sessions(vec![
            "1 Connected a b".into(),
            "3 Opened".into(),
        ]));
        round_trip(Reply::Sessions(vec![]));
        round_trip(Reply::Listeners(vec![
            "lb 127.0.0.1:8443 active 2 10 0 proxy_protocol=required".into(),
        ]));
        for key in [None, Some("ENVOY_X".to_string())] {
            round_trip(Reply::Applied {
                key,
                applied: Applied {
                    routes: 2,
                    upstream: "up.example:443".into(),
                    running: 7,
                },
            });
        }
        round_trip(Reply::Traced {
            rule: "client 10.0.0.0/8".into(),
            sessions: 3,
        });
        round_trip(Reply::Killed {
            id: 42,
            found: true,
        });
        round_trip(Reply::Killed {
            id: 42,
            found: false,
        });
        round_trip(Reply::Draining {
            sessions: 2,
            deadline_ms: 30000,
        });
        round_trip(Reply::Reopened {
            target: "file:/var/log/a b.log".into(),
            processes: 1,
        });
        assert_eq!(decode(READY), Ok(Message::Ready));
    }

    #[test]
    fn a_report_comes_back_whole() {
        let mut s = Stats {
            accepted: 10,
            listeners: vec![crate::worker::stats::ListenerCount {
                name: "default".into(),
                accepted: 10,
                refused_max_sessions: 0,
            }],
            ..Stats::default()
        };
        s.close(CloseReason::InvalidTls);
        s.parse_error("tls", "not_client_hello");
        s.connect_status.insert(403, 1);
        let mut up = Member::new("db.internal:5432", 1000);
        up.connect.observe(2);
        up.connect.observe(400_000);
        let g = Gauges {
            upstreams: vec![up],
            captures: Some((1, 0)),
            traces: "name example.test, client 10.0.0.0/8".into(),
            ..Gauges::default()
        };
        let mut r = Report::of_worker(&s, &g);
        round_trip(Reply::Stats(r.clone()));
        r.merge(&Report::of_supervisor(&Supervision {
            workers: 2,
            restarts: 1,
            ..Supervision::default()
        }));
        round_trip(Reply::Metrics(r));
        let text = encode(&Reply::Stats(Report::of_worker(&s, &g)));
        assert!(text.contains("\naccepted default=10\n"), "{text}");
        assert!(
            text.contains("\nparse_errors tls/not_client_hello=1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nconnect_seconds db.internal:5432=0,1,0,0,0,0,0,0,0,0,0,0,0,0,1,400002\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn label_values_with_separators_survive() {
        for v in ["a b", "x=y/z", "100%", "\n"] {
            assert_eq!(unescape(&escape(v)).as_deref(), Ok(v));
            assert!(!escape(v).contains([' ', '=', '/', '\n']));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for m in [
            "",
            "frob",
            "killed x 1",
            "applied 1",
            "text\nno bar",
            "stats\nnope 1",
            "stats\naccepted x",
            "stats\nclosed done",
            "stats\nconnect_seconds 1=0",
            "stats\nparse_errors a=1",
            "stats\nrefused %zz=1",
        ] {
            assert!(decode(m).is_err(), "{m:?}");
        }
    }
}
