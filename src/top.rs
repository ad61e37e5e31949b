//! `sluice ctl top`: a live view of a running sluice in the terminal, refreshed every second
//! from the control socket (`metrics` and `show sessions`, the same merged numbers as
//! `/metrics`): totals and rates, sessions by state, a line per route and per upstream, the
//! refusal and failure reasons, the oldest sessions. Plain ANSI (no dependency), made to fit
//! 80x24 and to work over `ssh`; `q` (or Ctrl-C) quits.
//!
//! The screen is a pure function of two samples and the session rows ([`screen`]); the loop
//! around it only asks, waits for a key and draws. It never writes to the control socket
//! anything but those two read-only commands.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys::terminal;

/// One series of the Prometheus text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// The metrics at one instant.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    series: Vec<Series>,
}

impl Sample {
    /// Reads the Prometheus text exposition (what `metrics` answers); lines it cannot read
    /// are skipped.
    pub fn parse(text: &str) -> Sample {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(parse_series)
            .collect();
        Sample { series }
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// True when the family has at least one series labelled `label`.
    fn has_label(&self, name: &str, label: &str) -> bool {
        self.all(name).any(|s| s.label(label).is_some())
    }

    /// The sum of the family's series whose labels include every `(label, value)` given.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.all(name)
            .filter(|s| with.iter().all(|(l, v)| s.label(l) == Some(v)))
            .map(|s| s.value)
            .fold(0.0, |a, b| a + b)
    }

    /// The values of `label` in the family, in order of appearance.
    fn values_of(&self, name: &str, label: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.all(name) {
            if let Some(v) = s.label(label) {
                if !out.iter().any(|o| o == v) {
                    out.push(v.to_string());
                }
            }
        }
        out
    }

    /// The 99th percentile (seconds) of histogram `name` over its series with `with`: the
    /// upper bound of the bucket it falls in; `None` without observations.
    fn p99(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let mut bounds: Vec<(f64, f64)> = Vec::new();
        for s in self.all(&bucket) {
            if !with.iter().all(|(l, v)| s.label(l) == Some(v)) {
                continue;
            }
            let le = match s.label("le") {
                Some("+Inf") => f64::INFINITY,
                Some(x) => x.parse().ok()?,
                None => continue,
            };
            match bounds.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => bounds.push((le, s.value)),
            }
        }
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = bounds.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let finite_max = bounds.iter().rev().find(|(b, _)| b.is_finite())?.0;
        bounds
            .iter()
            .find(|(_, n)| *n >= total * 0.99)
            .map(|(b, _)| if b.is_finite() { *b } else { finite_max })
    }
}

impl Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `name{a="x",b="y"} 12` or `name 12`.
fn parse_series(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        None => (head, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        s = rest.get(end + 1..)?.trim_start_matches(',');
    }
    Some(out)
}

/// One row of `show sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    id: String,
    client: String,
    name: String,
    route: String,
    upstream: String,
    bytes: (u64, u64),
    age_ms: u64,
}

/// Reads `show sessions` (its header line, then a row per session).
pub fn parse_sessions(text: &str) -> Vec<SessionRow> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let get = |i: usize| w.get(i).copied().unwrap_or("-").to_string();
            let num = |i: usize| w.get(i).and_then(|x| x.parse().ok());
            let sni = get(3);
            Some(SessionRow {
                id: get(0),
                client: get(2),
                name: if sni == "-" { get(4) } else { sni },
                route: get(5),
                upstream: get(6),
                bytes: (num(7)?, num(8)?),
                age_ms: num(9)?,
            })
        })
        .collect()
}

/// Close reasons that are a session's ordinary end (not listed as failures).
const ORDINARY_ENDS: [&str; 7] = [
    "done",
    "client_reset",
    "upstream_reset",
    "idle_timeout",
    "health_check",
    "killed",
    "drained",
];

/// The screen: at most `rows` lines, each at most `cols` characters.
pub fn screen(
    now: &Sample,
    before: Option<(&Sample, f64)>,
    sessions: &[SessionRow],
    cols: usize,
    rows: usize,
) -> Vec<String> {
    let rate = |f: &dyn Fn(&Sample) -> f64| match before {
        Some((b, secs)) if secs > 0.0 => (f(now) - f(b)).max(0.0) / secs,
        _ => 0.0,
    };
    let mut head = Vec::new();
    let version = now
        .all("sluice_build_info")
        .next()
        .map(|s| {
            format!(
                "{} ({})",
                s.label("version").unwrap_or("?"),
                s.label("commit").unwrap_or("?")
            )
        })
        .unwrap_or_default();
    let start = now.sum("sluice_process_start_time_seconds", &[]);
    let uptime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - start;
    let generation = 1.0 + now.sum("sluice_config_reloads_total", &[("result", "success")]);
    head.push(format!(
        "sluice {version}  up {}  workers {}  config gen {generation}{}",
        duration(uptime),
        now.sum("sluice_workers", &[]),
        if now.sum("sluice_draining", &[]) > 0.0 {
            "  DRAINING"
        } else {
            ""
        }
    ));
    let state = |s: &str| now.sum("sluice_sessions", &[("state", s)]);
    head.push(format!(
        "sessions {} open: opened {} header {} connecting {} connected {} half-closed {}",
        now.sum("sluice_sessions", &[]),
        state("Opened"),
        state("HeaderParsed"),
        state("Connecting"),
        state("Connected"),
        state("HalfClosed"),
    ));
    let refused =
        |s: &Sample| s.sum("sluice_refused_total", &[]) + s.sum("sluice_route_refused_total", &[]);
    head.push(format!(
        "rate {}/s sessions  {}/s up  {}/s down  {}/s refused  total {}",
        number(rate(&|s| s.sum("sluice_accepted_total", &[]))),
        bytes(rate(&|s| s.sum(
            "sluice_bytes_total",
            &[("direction", "client_to_upstream")]
        ))),
        bytes(rate(&|s| s.sum(
            "sluice_bytes_total",
            &[("direction", "upstream_to_client")]
        ))),
        number(rate(&refused)),
        now.sum("sluice_accepted_total", &[]),
    ));
    let mut failures: Vec<(String, f64)> = now
        .values_of("sluice_closed_total", "reason")
        .into_iter()
        .filter(|r| !ORDINARY_ENDS.contains(&r.as_str()))
        .chain(now.values_of("sluice_refused_total", "reason"))
        .map(|r| {
            let n = rate(&|s| {
                s.sum("sluice_closed_total", &[("reason", &r)])
                    + s.sum("sluice_refused_total", &[("reason", &r)])
            });
            (r, n)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    failures.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = failures
        .iter()
        .take(4)
        .map(|(r, n)| format!("{r} {}/s", number(*n)))
        .collect();
    head.push(format!(
        "refused/failed: {}",
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join("  ")
        }
    ));

    let mut routes = vec![format!(
        "{:<16} {:>5} {:>8} {:>10} {:>9} {:>6} {:>7}",
        "ROUTE", "OPEN", "SESS/S", "BYTES/S", "REFUSED/S", "FAILS", "CONN99"
    )];
    for r in now.values_of("sluice_route_sessions_total", "route") {
        let of = |s: &Sample, name: &str| s.sum(name, &[("route", &r)]);
        routes.push(format!(
            "{:<16} {:>5} {:>8} {:>10} {:>9} {:>6} {:>7}",
            clip(&r, 16),
            of(now, "sluice_route_sessions"),
            number(rate(&|s| of(s, "sluice_route_sessions_total"))),
            bytes(rate(&|s| of(s, "sluice_route_bytes_total"))),
            number(rate(&|s| of(s, "sluice_route_refused_total"))),
            of(now, "sluice_route_connect_failures_total"),
            seconds(now.p99("sluice_route_connect_seconds", &[("route", &r)])),
        ));
    }

    // upstream rows: the routes' configured upstreams, and their own series once sluice
    // has them (upstream pools)
    let own = now.has_label("sluice_upstream_sessions_total", "upstream");
    let mut upstreams = vec![format!(
        "{:<22} {:<14} {:>5} {:>5} {:>8} {:>10} {:>6}",
        "UPSTREAM", "ROUTES", "STATE", "OPEN", "SESS/S", "BYTES/S", "FAILS"
    )];
    let mut names = now.values_of("sluice_route_upstream_info", "upstream");
    for u in now.values_of("sluice_upstream_sessions_total", "upstream") {
        if !names.contains(&u) {
            names.push(u);
        }
    }
    for u in names {
        let of = |s: &Sample, name: &str| s.sum(name, &[("upstream", &u)]);
        let used_by: Vec<String> = now
            .all("sluice_route_upstream_info")
            .filter(|s| s.label("upstream") == Some(&u))
            .filter_map(|s| s.label("route").map(String::from))
            .collect();
        let state = if !now.has_label("sluice_upstream_up", "upstream") {
            "-"
        } else if of(now, "sluice_upstream_up") > 0.0 {
            "up"
        } else {
            "DOWN"
        };
        let shown = |x: String| if own { x } else { "-".to_string() };
        upstreams.push(format!(
            "{:<22} {:<14} {:>5} {:>5} {:>8} {:>10} {:>6}",
            clip(&u, 22),
            clip(&used_by.join(","), 14),
            state,
            shown(of(now, "sluice_upstream_sessions").to_string()),
            shown(number(rate(&|s| of(s, "sluice_upstream_sessions_total")))),
            shown(bytes(rate(&|s| of(s, "sluice_upstream_bytes_total")))),
            shown(of(now, "sluice_upstream_connect_failures_total").to_string()),
        ));
    }

    let mut oldest: Vec<&SessionRow> = sessions.iter().collect();
    oldest.sort_by_key(|s| std::cmp::Reverse(s.age_ms));
    let mut slow = vec![format!(
        "{:<8} {:<20} {:<16} {:<10} {:>8} {:>6} {:>6}",
        "SESSION", "CLIENT", "NAME", "ROUTE", "AGE", "UP", "DOWN"
    )];
    for s in oldest {
        slow.push(format!(
            "{:<8} {:<20} {:<16} {:<10} {:>8} {:>6} {:>6}",
            clip(&s.id, 8),
            clip(&s.client, 20),
            clip(&s.name, 16),
            clip(&s.route, 10),
            duration(s.age_ms as f64 / 1000.0),
            bytes(s.bytes.0 as f64).replace("/s", ""),
            bytes(s.bytes.1 as f64).replace("/s", ""),
        ));
    }

    // fit: the head, then routes, upstreams and sessions sharing what is left (the footer
    // takes one line)
    let mut out = head;
    out.push(String::new());
    let left = rows.saturating_sub(out.len() + 1);
    let blocks = [routes, upstreams, slow];
    let mut budget = [0usize; 3];
    let wants: Vec<usize> = blocks.iter().map(Vec::len).collect();
    // every block gets its header and one line first, then routes, upstreams, sessions
    let mut remaining = left.saturating_sub(blocks.len() - 1); // blank lines between blocks
    for pass in 0..2 {
        for (b, want) in budget.iter_mut().zip(&wants) {
            let limit = if pass == 0 { (*want).min(2) } else { *want };
            let take = limit.saturating_sub(*b).min(remaining);
            *b += take;
            remaining -= take;
        }
    }
    for (i, (block, n)) in blocks.iter().zip(budget).enumerate() {
        if i > 0 && n > 0 {
            out.push(String::new());
        }
        out.extend(block.iter().take(n).cloned());
    }
    while out.len() + 1 < rows {
        out.push(String::new());
    }
    out.push("q quit - refreshed every second from the control socket".to_string());
    out.truncate(rows);
    out.into_iter().map(|l| clip(&l, cols)).collect()
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

fn number(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn bytes(x: f64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut x = x;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    let unit = units.get(i).copied().unwrap_or("");
    if i == 0 {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.1}{unit}")
    }
}

fn seconds(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) => format!("{s:.1}s"),
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{:02}s", s % 60)
    }
}

/// A connection to the control socket kept open for the whole view.
struct Control {
    out: UnixStream,
    replies: BufReader<UnixStream>,
}

impl Control {
    fn connect(path: &str) -> io::Result<Control> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Control {
            replies: BufReader::new(s.try_clone()?),
            out: s,
        })
    }

    /// Sends one command and reads its reply (up to the blank line that ends it).
    fn ask(&mut self, command: &str) -> io::Result<String> {
        writeln!(self.out, "{command}")?;
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.replies.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the control socket closed",
                ));
            }
            if line == "\n" {
                return Ok(reply);
            }
            reply.push_str(&line);
        }
    }
}

/// Runs the view against the control socket at `path` until `q`; the exit status. Without
/// a terminal on stdin and stdout, prints one screen (80x24) and returns.
pub fn run(path: &str) -> i32 {
    match view(path) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice ctl top: {path}: {e}");
            2
        }
    }
}

fn view(path: &str) -> io::Result<()> {
    let mut control = Control::connect(path)?;
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    let stdout = io::stdout();
    let interactive = terminal::is_terminal(fd) && terminal::is_terminal(stdout.as_raw_fd());
    let mut out = stdout.lock();
    if !interactive {
        let now = Sample::parse(&control.ask("metrics")?);
        let sessions = parse_sessions(&control.ask("show sessions")?);
        for line in screen(&now, None, &sessions, 80, 24) {
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let _raw = terminal::RawMode::enter(fd)?;
    // the alternate screen, the cursor hidden; both undone on the way out
    write!(out, "\x1b[?1049h\x1b[?25l")?;
    let result = frames(&mut control, fd, &mut out);
    write!(out, "\x1b[?25h\x1b[?1049l")?;
    out.flush()?;
    result
}

fn frames(control: &mut Control, fd: i32, out: &mut impl Write) -> io::Result<()> {
    let mut before: Option<(Sample, Instant)> = None;
    loop {
        let now = Sample::parse(&control.ask("metrics")?);
        let taken = Instant::now();
        let sessions = parse_sessions(&control.ask("show sessions")?);
        let (cols, rows) = terminal::size(fd).unwrap_or((80, 24));
        let prev = before
            .as_ref()
            .map(|(s, t)| (s, taken.duration_since(*t).as_secs_f64()));
        let lines = screen(&now, prev, &sessions, cols.into(), rows.into());
        let mut frame = String::from("\x1b[H");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                frame.push_str("\r\n");
            }
            frame.push_str(l);
            frame.push_str("\x1b[K");
        }
        frame.push_str("\x1b[J");
        out.write_all(frame.as_bytes())?;
        out.flush()?;
        before = Some((now, taken));
        // a key, or the next second
        let next = taken + Duration::from_secs(1);
        while let Some(wait) = next.checked_duration_since(Instant::now()) {
            let ms = i32::try_from(wait.as_millis()).unwrap_or(1000).max(1);
            if terminal::readable_within(fd, ms)? {
                let mut key = [0u8; 16];
                let n = io::Read::read(&mut io::stdin(), &mut key)?;
                if key
                    .get(..n)
                    .is_some_and(|k| k.contains(&b'q') || k.contains(&3))
                {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP sluice_build_info Build information.
sluice_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1
sluice_workers 2
sluice_sessions{state=\"Opened\"} 1
sluice_sessions{state=\"Connected\"} 3
sluice_accepted_total 100
sluice_bytes_total{direction=\"client_to_upstream\"} 1000
sluice_bytes_total{direction=\"upstream_to_client\"} 4096
sluice_closed_total{reason=\"done\"} 90
sluice_closed_total{reason=\"invalid_tls\"} 4
sluice_route_upstream_info{route=\"web\",upstream=\"10.0.0.1:443\"} 1
sluice_route_upstream_info{route=\"default\",upstream=\"localhost:10000\"} 1
sluice_route_sessions{route=\"web\"} 3
sluice_route_sessions_total{route=\"web\"} 80
sluice_route_sessions_total{route=\"default\"} 20
sluice_route_bytes_total{route=\"web\",direction=\"client_to_upstream\"} 900
sluice_route_connect_seconds_bucket{route=\"web\",le=\"0.001\"} 98
sluice_route_connect_seconds_bucket{route=\"web\",le=\"0.005\"} 100
sluice_route_connect_seconds_bucket{route=\"web\",le=\"+Inf\"} 100
";

    fn later() -> Sample {
        Sample::parse(
            &METRICS
                .replace("sluice_accepted_total 100", "sluice_accepted_total 120")
                .replace("invalid_tls\"} 4", "invalid_tls\"} 6"),
        )
    }

    #[test]
    fn labels_with_escapes_parse() {
        let s = parse_series("x{a=\"q\\\"uote\",b=\"c,d\"} 1.5").unwrap();
        assert_eq!(s.label("a"), Some("q\"uote"));
        assert_eq!(s.label("b"), Some("c,d"));
        assert_eq!(s.value, 1.5);
        assert!(parse_series("x{a=\"cut} 1").is_none());
    }

    #[test]
    fn the_screen_fits_80x24_and_shows_rates_routes_upstreams_and_sessions() {
        let before = Sample::parse(METRICS);
        let now = later();
        let sessions = parse_sessions(
            "id state client sni host route upstream bytes_up bytes_down age_ms traced\n\
             7 Connected 10.1.1.1:5000 example.test - web 10.0.0.1:443 10 2048 65000 no\n\
             9 Connected 10.1.1.2:5000 - - default 127.0.0.1:10000 1 1 100 no\n",
        );
        let lines = screen(&now, Some((&before, 2.0)), &sessions, 80, 24);
        assert_eq!(lines.len(), 24);
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        let text = lines.join("\n");
        assert!(text.contains("sluice 0.1.0 (abc1234)"), "{text}");
        assert!(text.contains("rate 10.0/s sessions"), "{text}");
        assert!(text.contains("invalid_tls 1.0/s"), "{text}");
        assert!(text.contains("\nweb "), "{text}");
        assert!(text.contains("10.0.0.1:443"), "{text}");
        assert!(
            text.contains(" 5ms"),
            "web's p99 (98 of 100 within 1 ms): {text}"
        );
        assert!(!text.contains("-0"), "{text}");
        assert!(text.contains("\nSESSION "), "{text}");
        let seven = text.find("\n7 ").expect("session 7");
        let nine = text.find("\n9 ").expect("session 9");
        assert!(seven < nine, "oldest first: {text}");
        assert!(text.ends_with("q quit - refreshed every second from the control socket"));
    }

    #[test]
    fn a_small_terminal_still_gets_the_head_and_the_footer() {
        let lines = screen(&later(), None, &[], 40, 8);
        assert_eq!(lines.len(), 8);
        assert!(lines[0].starts_with("sluice"));
        assert!(lines[7].starts_with("q quit"));
    }
}
