#![cfg(test)]
//! The dashboard and alerts that ship in contrib/, tested against the real tools: the rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`, every alert
//! firing and not firing); every runbook link names a README section that exists; and a real
//! Prometheus scraping a running `sluice run` under traffic answers every expression of the
//! Grafana dashboard (and every metric the alerts read exists), so a renamed metric breaks
//! this test, not the dashboard.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::traffic::*;
use util::*;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

fn promtool() -> Option<PathBuf> {
    let p = which("promtool");
    if p.is_none() {
        eprintln!("SKIPPED: promtool absent (Debian package prometheus; `make deps` installs it)");
    }
    p
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The alert names of the rule file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests_cover_every_alert() {
    let Some(promtool) = promtool() else { return };
    let rules = contrib("prometheus/sluice-alerts.yml");
    let (ok, out) = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules));
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(contrib("prometheus/sluice-alerts.test.yml")));
    assert!(ok, "promtool test rules:\n{out}");

    let text = std::fs::read_to_string(&rules).unwrap();
    let tests = std::fs::read_to_string(contrib("prometheus/sluice-alerts.test.yml")).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let names = alert_names(&text);
    assert_eq!(names.len(), 8, "{names:?}");
    // each alert's block in the unit tests: one eval with no alert, one with some
    for name in &names {
        let evals: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|e| e.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            evals.iter().any(|e| e.contains("exp_alerts: []")),
            "{name}: no case where it does not fire"
        );
        assert!(
            evals.iter().any(|e| e.contains("exp_labels:")),
            "{name}: no case where it fires"
        );
        // the runbook: a README heading whose GitHub anchor is the alert's name
        let anchor = format!("README.md#{}", name.to_lowercase());
        assert!(
            text.contains(&format!("runbook_url: \"{anchor}\"")),
            "{name}: {anchor}"
        );
        assert!(
            readme.contains(&format!("\n#### {name}\n")),
            "README has no section for {name}"
        );
    }
}

/// Every `"expr": "..."` string of a dashboard, unescaped (a JSON string scanner: the
/// dashboard is plain JSON and the test has no JSON crate).
fn dashboard_exprs(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find("\"expr\":") {
        rest = rest[at + 7..].trim_start();
        let mut chars = rest.char_indices();
        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "expr not a string");
        let mut s = String::new();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = i + 1;
                    break;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('u') => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        s.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    Some(c) => s.push(c),
                    None => panic!("cut escape"),
                },
                c => s.push(c),
            }
        }
        out.push(s);
        rest = &rest[end..];
    }
    out
}

/// Grafana's variables as a query through the API needs them: every instance, route and
/// upstream; the rate interval a few scrapes long.
fn with_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m")
        .replace("$instance", ".*")
        .replace("$route", ".*")
        .replace("$upstream", ".*")
}

/// The `sluice_*` metric names an expression reads (histogram suffixes taken off).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sluice_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.push(base.to_string());
        rest = &tail[end..];
    }
    names
}

fn url_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A Prometheus query's JSON answer.
fn query(prom: std::net::SocketAddr, expr: &str) -> String {
    http_get(prom, &format!("/api/v1/query?query={}", url_encode(expr))).2
}

#[test]
fn a_real_prometheus_answers_every_dashboard_expression_under_traffic() {
    let Some(_) = promtool() else { return };
    let Some(prometheus) = which("prometheus") else {
        return eprintln!("SKIPPED: prometheus absent (Debian package prometheus)");
    };
    let dir = TempDir::new("prometheus");
    let (sluice, metrics) = start_observed(&dir, &[]);
    let traffic = Traffic::start(sluice.addr, 2, 500);

    let port = free_port();
    let config = dir.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{metrics}']\n",
            contrib("prometheus/sluice-alerts.yml").display()
        ),
    )
    .unwrap();
    let _prom = Proc(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(prom, Duration::from_secs(30));

    // enough scrapes for a rate over 15 s to have two samples with traffic between
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let a = query(prom, "sum(rate(sluice_route_sessions_total[15s])) > 0");
        if a.contains("\"result\":[{") {
            break;
        }
        assert!(Instant::now() < until, "no rate in Prometheus:\n{a}");
        thread::sleep(Duration::from_millis(500));
    }
    // a reload in another second than the start, seen by Prometheus: the dashboard marks reloads
    thread::sleep(Duration::from_millis(1100));
    let (ok, out) = run(Command::new(sluice_bin())
        .args(["ctl", "reload"])
        .env("ENVOY_CONTROL_SOCKET", dir.path("ctl.sock")));
    assert!(ok, "{out}");
    let rules = query(prom, "ALERTS");
    assert!(rules.contains("\"status\":\"success\""), "{rules}");

    let scraped = http_get(metrics, "/metrics").2;
    let exposed = |name: &str| scraped.contains(&format!("\n# TYPE {name} "));
    let dashboard = std::fs::read_to_string(contrib("grafana/sluice.json")).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 25, "{} expressions", exprs.len());
    let mut failed = Vec::new();
    for expr in &exprs {
        for m in metric_names(expr) {
            assert!(
                exposed(&m),
                "the dashboard reads {m}, which sluice does not expose: {expr}"
            );
        }
        let q = with_variables(expr);
        // a few more scrapes for what needs them (a rate of a series just born)
        let until = Instant::now() + Duration::from_secs(15);
        let answer = loop {
            let answer = query(prom, &q);
            let has_data =
                answer.contains("\"status\":\"success\"") && !answer.contains("\"result\":[]");
            if has_data || Instant::now() > until {
                break (has_data, answer);
            }
            thread::sleep(Duration::from_millis(500));
        };
        if !answer.0 {
            failed.push(format!("{q}\n  -> {}", answer.1));
        }
    }
    assert!(
        failed.is_empty(),
        "dashboard expressions without data:\n{}",
        failed.join("\n")
    );
    // the alerts read only what sluice exposes
    let rules = std::fs::read_to_string(contrib("prometheus/sluice-alerts.yml")).unwrap();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for name in metric_names(line) {
            assert!(
                exposed(&name),
                "an alert reads {name}, which sluice does not expose: {line}"
            );
        }
    }
    drop(traffic);
}

#[test]
fn the_expression_scanner_reads_json_strings() {
    let json = r#"{"a": {"expr": "sum(x{a=\"b\"}) \u003e 1", "other": 1}, "expr":"y"}"#;
    assert_eq!(dashboard_exprs(json), ["sum(x{a=\"b\"}) > 1", "y"]);
    assert_eq!(
        metric_names("rate(sluice_route_connect_seconds_bucket{x=\"1\"}[5m]) / sluice_a"),
        ["sluice_route_connect_seconds", "sluice_a"]
    );
}
