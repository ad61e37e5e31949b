#![cfg(test)]
//! Observing sluice (issue 16): per-route series counted exactly and merged over workers by
//! route name, also across a reload that changes the route table; the status page and its
//! JSON served by the supervisor, rendered by a real headless Chromium while traffic flows;
//! `sluice ctl top` in an 80x24 tmux pane.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::traffic::*;
use util::*;

/// Runs `n` sessions of each kind, one after the other.
fn sessions_of_each_kind(addr: std::net::SocketAddr, n: usize) {
    let t = Traffic::start(addr, 1, 100);
    let until = Instant::now() + Duration::from_secs(30);
    while t.sessions.load(std::sync::atomic::Ordering::Relaxed) < (3 * n) as u64 {
        assert!(Instant::now() < until, "traffic too slow");
        thread::sleep(Duration::from_millis(5));
    }
}

fn check_metrics_if_promtool(body: &str) {
    let Some(promtool) = which("promtool") else {
        return eprintln!("SKIPPED promtool check: promtool absent (Debian package prometheus)");
    };
    promtool_check_metrics(&promtool, body);
}

/// Waits until the closes of `n` sessions are counted (each kind once per 3 sessions).
fn wait_closed(sluice: &mut Sluice, n: u64) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let body = sluice.scrape();
        let closed: u64 = body
            .lines()
            .filter(|l| l.starts_with("sluice_closed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if closed >= n {
            return body;
        }
        assert!(Instant::now() < until, "{closed} of {n} closed:\n{body}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn per_route_series_count_each_route_and_survive_a_reload_that_reorders_them() {
    let dir = TempDir::new("observe-routes");
    let (mut sluice, _) = start_observed(&dir, &[]);
    sessions_of_each_kind(sluice.addr, 6);
    let body = wait_closed(&mut sluice, 18);
    let m = |series: &str| metric_value(&body, series);
    // one kind of session per route, 6 each (the traffic thread may have begun a 19th)
    assert!(
        m("sluice_route_sessions_total{route=\"web\"}") >= 6,
        "{body}"
    );
    assert!(
        m("sluice_route_sessions_total{route=\"default\"}") >= 6,
        "{body}"
    );
    assert!(
        m("sluice_route_sessions_total{route=\"no-h2\"}") >= 6,
        "{body}"
    );
    assert_eq!(
        m("sluice_route_sessions_total{route=\"unused\"}"),
        0,
        "{body}"
    );
    assert!(
        body.contains("\nsluice_route_sessions_total{route=\"unused\"} 0\n"),
        "a route without traffic is still a series:\n{body}"
    );
    assert!(
        m("sluice_route_refused_total{route=\"no-h2\",reason=\"denied_name\"}") >= 6,
        "{body}"
    );
    assert_eq!(
        m("sluice_route_refused_total{route=\"web\",reason=\"denied_name\"}"),
        0
    );
    // every passing session echoes its hello and 100 bytes
    let hello = fixture("client-curl-7.88.1-http1.1.bin").len() as u64 + 100;
    let up = m("sluice_route_bytes_total{route=\"web\",direction=\"client_to_upstream\"}");
    assert!(up >= 6 * hello && up % hello == 0, "{up}:\n{body}");
    assert_eq!(
        m("sluice_route_bytes_total{route=\"no-h2\",direction=\"client_to_upstream\"}"),
        0
    );
    assert!(m("sluice_route_connect_seconds_count{route=\"web\"}") >= 6);
    assert_eq!(m("sluice_route_connect_seconds_count{route=\"no-h2\"}"), 0);
    assert!(m("sluice_route_session_duration_seconds_count{route=\"no-h2\"}") >= 6);
    assert!(body.contains("\nsluice_route_sessions{route=\"web\"} "));
    assert!(body.contains("sluice_route_upstream_info{route=\"web\",upstream=\""));
    // the workers' gauges, one series per worker, and the process facts
    assert!(
        body.contains("\nsluice_worker_sessions{worker=\"0\"} "),
        "{body}"
    );
    assert!(
        body.contains("\nsluice_worker_sessions{worker=\"1\"} "),
        "{body}"
    );
    assert!(m("sluice_process_start_time_seconds") > 1_600_000_000);
    assert_eq!(m("sluice_config_reloads_total{result=\"success\"}"), 0);
    assert!(m("sluice_config_last_reload_success_timestamp_seconds") > 1_600_000_000);
    check_metrics_if_promtool(&body);

    // A new table: `web` moves to the front, `no-h2` goes, `fresh` comes. Counts stay by name.
    let web_before = m("sluice_route_sessions_total{route=\"web\"}");
    let sock = dir.path("ctl.sock");
    let reply = ctl_ok(
        &sock,
        &[
            "set",
            "ENVOY_ROUTES",
            "sni=* allow name=web; alpn=h2 allow name=fresh",
        ],
    );
    assert!(reply.starts_with("ok: ENVOY_ROUTES set"), "{reply}");
    let bad = Command::new(sluice_bin())
        .args(["ctl", "set", "ENVOY_ROUTES", "nonsense"])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    sessions_of_each_kind(sluice.addr, 3);
    let body = wait_closed(&mut sluice, 27);
    let m = |series: &str| metric_value(&body, series);
    assert!(
        m("sluice_route_sessions_total{route=\"web\"}") >= web_before + 6,
        "{body}"
    );
    assert!(
        m("sluice_route_sessions_total{route=\"no-h2\"}") >= 6,
        "kept: {body}"
    );
    assert!(
        m("sluice_route_sessions_total{route=\"default\"}") >= 6,
        "{body}"
    );
    assert_eq!(
        m("sluice_route_sessions_total{route=\"fresh\"}"),
        0,
        "h2 goes to web first"
    );
    assert!(
        !body.contains("sluice_route_upstream_info{route=\"no-h2\""),
        "{body}"
    );
    assert_eq!(m("sluice_config_reloads_total{result=\"success\"}"), 1);
    assert_eq!(m("sluice_config_reloads_total{result=\"failure\"}"), 1);
    check_metrics_if_promtool(&body);
}

/// Chromium, headless, loads `url` with `budget_ms` of virtual time: the rendered DOM.
fn chromium_dom(chromium: &Path, dir: &TempDir, url: &str, budget_ms: u64) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path("chromium").display()
        ))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in a dumped DOM.
fn element_text(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].to_string()
}

#[test]
fn the_status_page_renders_routes_upstreams_and_live_rates_in_chromium() {
    let dir = TempDir::new("observe-status");
    let (sluice, metrics) = start_observed(&dir, &[]);
    let traffic = Traffic::start(sluice.addr, 3, 2000);

    // the page itself: whole, no asset elsewhere
    let (status, kind, page) = http_get(metrics, "/");
    assert!(status.contains(" 200"), "{status}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(http_get(metrics, "/status").2, page);
    assert!(http_get(metrics, "/nope").0.contains(" 404"));

    // the JSON, once two samples (2 s apart) give rates
    let until = Instant::now() + Duration::from_secs(30);
    let json = loop {
        let (status, kind, json) = http_get(metrics, "/status.json");
        assert!(
            status.contains(" 200") && kind == "application/json",
            "{status} {kind}"
        );
        // the first session_rate is the overview's (the routes' come after)
        let rate: f64 = json
            .split("\"session_rate\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0.0);
        if rate > 0.0 && !json.contains("\"sessions\":[]") {
            break json;
        }
        assert!(Instant::now() < until, "no rates in time:\n{json}");
        thread::sleep(Duration::from_millis(500));
    };
    for needle in [
        "\"workers\":2,",
        "{\"name\":\"web\",\"in_force\":true,",
        "{\"name\":\"no-h2\",",
        "{\"name\":\"default\",",
        "\"reason\":\"denied_name\"",
        "\"worker_sessions\":[{\"worker\":\"0\",",
    ] {
        assert!(json.contains(needle), "{needle} in\n{json}");
    }

    let Some(chromium) = which("chromium").or_else(|| which("chromium-browser")) else {
        return eprintln!("SKIPPED the browser half: chromium absent (Debian package chromium)");
    };
    let url = format!("http://{metrics}/");
    // virtual time runs the page's 2 s refresh several times; fetches are real
    let dom = chromium_dom(&chromium, &dir, &url, 5000);
    for route in ["web", "no-h2", "default", "unused"] {
        assert!(
            dom.contains(&format!("<td class=\"text route-name\">{route}</td>")),
            "route {route} not rendered:\n{dom}"
        );
    }
    assert!(dom.contains("class=\"text upstream-name\""), "{dom}");
    let rate: f64 = element_text(&dom, "session-rate").parse().unwrap_or(0.0);
    assert!(rate > 0.0, "sessions/s {rate}:\n{dom}");
    let bytes = element_text(&dom, "bytes-rate");
    assert!(
        !bytes.starts_with("0 B") && bytes.ends_with("/s"),
        "bytes/s {bytes}"
    );
    assert!(dom.contains("<polyline"), "a sparkline is drawn:\n{dom}");
    assert_eq!(element_text(&dom, "workers"), "2");
    assert!(dom.contains("denied_name"), "{dom}");

    // the README's picture (doc/status.png) is taken with SLUICE_STATUS_SCREENSHOT=FILE,
    // after a minute of history for the sparklines
    let keep = std::env::var_os("SLUICE_STATUS_SCREENSHOT");
    if keep.is_some() {
        thread::sleep(Duration::from_secs(60));
    }
    let shot = dir.path("status.png");
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path("chromium").display()
        ))
        .args(["--virtual-time-budget=3000", "--window-size=1000,820"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = keep {
        std::fs::copy(&shot, keep).unwrap();
    }
    drop(traffic);
}

/// A tmux server of this test's own (its socket name), killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn ctl_top_fits_80x24_under_tmux_shows_live_rates_and_quits_on_q() {
    if which("tmux").is_none() {
        return eprintln!("SKIPPED: tmux absent (Debian package tmux)");
    }
    let dir = TempDir::new("observe-top");
    let (sluice, _) = start_observed(&dir, &[]);
    let traffic = Traffic::start(sluice.addr, 2, 500);
    let tmux = Tmux(format!("sluice-top-{}", std::process::id()));
    let command = format!(
        "ENVOY_CONTROL_SOCKET='{}' '{}' ctl top; echo top-exited-$?; sleep 60",
        dir.path("ctl.sock").display(),
        sluice_bin().display()
    );
    let made = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    assert!(made.status.success(), "{made:?}");

    // a few refreshes: rates need two samples
    let until = Instant::now() + Duration::from_secs(20);
    let screen = loop {
        let screen = tmux.screen();
        let rate: f64 = screen
            .lines()
            .find_map(|l| l.strip_prefix("rate "))
            .and_then(|l| l.split('/').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0.0);
        if rate > 0.0 && screen.contains("\nweb ") {
            break screen;
        }
        assert!(Instant::now() < until, "no live rates:\n{screen}");
        thread::sleep(Duration::from_millis(300));
    };
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.len() <= 24, "{screen}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{screen}");
    assert!(lines[0].starts_with("sluice 0.1.0"), "{screen}");
    for needle in [
        "ROUTE",
        "\nno-h2 ",
        "\ndefault ",
        "UPSTREAM",
        "SESSION",
        "denied_name",
    ] {
        assert!(screen.contains(needle), "{needle}:\n{screen}");
    }
    assert!(screen.contains("q quit"), "{screen}");

    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let screen = tmux.screen();
        if screen.contains("top-exited-0") {
            // the alternate screen is left: the view is gone
            assert!(!screen.contains("ROUTE"), "{screen}");
            break;
        }
        assert!(Instant::now() < until, "q did not quit:\n{screen}");
        thread::sleep(Duration::from_millis(200));
    }
    drop(traffic);
}

#[test]
fn a_lone_worker_serves_the_status_page_and_its_json_too() {
    let upstream = echo_upstream();
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("worker");
    let mut sluice = Sluice::start_cmd(
        cmd,
        &[
            ("ENVOY_UPSTREAM", &upstream.to_string()),
            ("ENVOY_ROUTES", ROUTES),
            ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let line = sluice.wait_for_log("metrics listening url=http://", Duration::from_secs(5));
    let url = fields(&line)["url"].clone();
    let metrics: std::net::SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(http_get(metrics, "/").2.starts_with("<!doctype html>"));
    sessions_of_each_kind(sluice.addr, 2);
    let (status, kind, json) = http_get(metrics, "/status.json");
    assert!(
        status.contains(" 200") && kind == "application/json",
        "{status}"
    );
    for needle in [
        "{\"name\":\"web\",\"in_force\":true,",
        "\"worker_sessions\":[{\"worker\":\"0\",",
        "\"history\":{\"interval_s\":2,",
    ] {
        assert!(json.contains(needle), "{needle} in\n{json}");
    }
}

#[test]
fn a_route_s_per_client_limit_counts_as_its_refusal() {
    let upstream = echo_upstream();
    let mut sluice = Sluice::start(&[
        ("ENVOY_UPSTREAM", &upstream.to_string()),
        (
            "ENVOY_ROUTES",
            "sni=* allow name=paced client_rate=1/s client_burst=1",
        ),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0"),
    ]);
    let hello = fixture("client-curl-7.88.1-http1.1.bin");
    for _ in 0..5 {
        let mut c = std::net::TcpStream::connect(sluice.addr).unwrap();
        use std::io::Write as _;
        c.write_all(&hello).unwrap();
        drop(c);
    }
    let body = wait_closed(&mut sluice, 5);
    let refused = metric_value(
        &body,
        "sluice_route_refused_total{route=\"paced\",reason=\"client_rate\"}",
    );
    assert!(refused >= 3, "1/s with a burst of 1, 5 at once:\n{body}");
    assert_eq!(
        metric_value(&body, "sluice_route_sessions_total{route=\"paced\"}"),
        5
    );
}
