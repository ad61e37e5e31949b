#![cfg(test)]
//! A new operator's first hour, checked: every config example the README and contrib/ show
//! loads as it is; the README's quick start names what the set-up needs; `make deps` says
//! what it installs and why, waits for another apt's lock, and when not root prints the
//! command to run instead of failing obscurely; the demo's own readiness probes are not
//! sessions in sluice's log.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use util::*;

fn source(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(source(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The fenced blocks of a Markdown text, each as its lines.
fn fenced_blocks(markdown: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(b) => blocks.push(b),
                None => open = Some(Vec::new()),
            }
        } else if let Some(b) = open.as_mut() {
            b.push(line);
        }
    }
    blocks
}

/// A block is a config file when every line that is not blank or a comment sets a key.
fn is_config_file(block: &[&str]) -> bool {
    let settings: Vec<&&str> = block
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    !settings.is_empty()
        && settings.iter().all(|l| {
            l.split_once('=').is_some_and(|(k, _)| {
                k.starts_with("ENVOY_")
                    && k.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
        })
}

/// `sluice check-config` on `file` as ENVOY_CONFIG_FILE, nothing else set: every key the
/// file sets must show as coming from the file.
fn check_config_file(file: &Path, what: &str) {
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ENVOY_CONFIG_FILE", file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{what} does not load:\n{stderr}");
    let text = std::fs::read_to_string(file).unwrap();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let key = l.split_once('=').unwrap().0.trim();
        assert!(
            stdout
                .lines()
                .any(|o| o.starts_with(&format!("{key}=")) && o.ends_with(" (file)")),
            "{what}: {key} is not taken from the file:\n{stdout}"
        );
    }
}

#[test]
fn every_config_example_in_the_readme_and_contrib_loads_as_it_is() {
    let dir = TempDir::new("examples");
    let readme = read("README.md");
    let blocks = fenced_blocks(&readme);
    // Files the README names in their first line (`# /etc/sluice/routes`) are written where
    // the examples can find them: /etc/sluice/ is this scratch directory.
    for b in &blocks {
        if let Some(name) = b
            .first()
            .and_then(|l| l.strip_prefix("# /etc/sluice/"))
            .and_then(|l| l.split_whitespace().next())
        {
            std::fs::write(dir.path(name), b.join("\n") + "\n").unwrap();
        }
    }
    let mut examples = 0;
    for (i, b) in blocks.iter().enumerate() {
        if !is_config_file(b) {
            continue;
        }
        examples += 1;
        let text = (b.join("\n") + "\n").replace("/etc/sluice/", &format!("{}/", dir.0.display()));
        let file = dir.path(&format!("readme-example-{i}.env"));
        std::fs::write(&file, text).unwrap();
        check_config_file(&file, &format!("README block {i} ({:?})", b.first()));
    }
    assert!(examples >= 1, "the README's operator example was not found");
    let mut contrib = 0;
    for e in std::fs::read_dir(source("contrib")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "env") {
            contrib += 1;
            check_config_file(&p, &p.display().to_string());
        }
    }
    assert!(contrib >= 1, "contrib/ has an example config file");
}

#[test]
fn the_readme_quick_start_names_what_the_set_up_needs() {
    let readme = read("README.md");
    let quick = &readme[..readme.find("\n## ").unwrap()];
    let cargo = read("Cargo.toml");
    let rust = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    for needed in [
        format!("Rust {rust} or newer"),
        "Debian or Ubuntu".into(),
        "python3".into(),
        "make demo".into(),
        "`make run` proxies to `ENVOY_UPSTREAM`".into(),
        "root".into(),
    ] {
        assert!(
            quick.contains(&needed),
            "the quick start does not say {needed:?}"
        );
    }
}

/// apt-get runs in one place, scripts/deps, and both its runs (update, install) wait for
/// another apt or dpkg to release its lock.
#[test]
fn every_apt_get_waits_for_the_lock() {
    for rel in ["Makefile", "scripts/demo"] {
        for line in read(rel).lines() {
            let code = line.split('#').next().unwrap_or("");
            assert!(
                !code.contains("apt-get"),
                "{rel}: apt-get outside scripts/deps: {line}"
            );
        }
    }
    let deps = read("scripts/deps");
    assert!(deps.contains("apt=\"apt-get -o DPkg::Lock::Timeout=$timeout\""));
    assert!(deps.contains("\n$apt update") && deps.contains(" $apt install "));
    for line in deps.lines() {
        assert!(
            !line.trim_start().starts_with("apt-get"),
            "scripts/deps: apt-get without the lock timeout: {line}"
        );
    }
}

/// Not root: `make deps` says what is missing and why, prints the apt-get command (with the
/// lock timeout) and stops, before touching apt.
#[test]
fn make_deps_says_what_and_why_and_stops_with_the_command_when_not_root() {
    let mut cmd = if current_uid_is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "make"]);
        c
    } else {
        Command::new("make")
    };
    let out = cmd
        .args([
            "-s",
            "deps",
            "TEST_TOOLS=sluice-no-such-tool:sluice-no-such-package",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run make (and setpriv when root)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("sluice-no-such-tool (Debian package sluice-no-such-package)"),
        "what is missing and why:\n{stdout}"
    );
    assert!(
        stderr.contains("not root, so nothing was installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sudo apt-get -o DPkg::Lock::Timeout=")
            && stderr.contains("install -y --no-install-recommends sluice-no-such-package"),
        "the command to run:\n{stderr}"
    );
    assert!(!stderr.contains("Permission denied"), "{stderr}");
}

fn current_uid_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `make demo`'s script, run as it is: sluice's log holds one session, curl's, closed
/// `done`; no readiness probe shows as a failed session.
#[test]
fn the_demo_shows_only_curls_session() {
    let out = Command::new(source("scripts/demo"))
        .env("SLUICE_BIN", sluice_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = stdout
        .split("== sluice's log")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    let closes: Vec<&str> = log.lines().filter(|l| l.contains("] close sid=")).collect();
    assert_eq!(closes.len(), 1, "one session, curl's:\n{log}");
    assert_eq!(fields(closes[0])["reason"], "done", "{}", closes[0]);
    assert!(stdout.contains("s_server"), "curl got the page:\n{stdout}");
}
