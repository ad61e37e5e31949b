#![cfg(test)]
//! The command line and start-up as a new operator meets them: every command takes `--help`
//! and refuses what it does not know; `--version` names the build; every invalid value and
//! every unusable path or address a key names is reported at once, naming the key, before
//! anything binds; a misspelt variable is warned about with the nearest key; the config file
//! takes trailing comments; nothing but a stale socket is ever removed at the control
//! socket's path.

mod util;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// What a short-lived `sluice` did.
struct Ran {
    /// `None`: still running when the guard ran out, and killed (it should have exited).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `sluice ARGS` with only `env` (and PATH) set; a process that does not exit within
/// the guard (a proxy that started when it should have refused) is killed.
fn sluice(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ENVOY_UPSTREAM", "127.0.0.1:1")
        .env("ENVOY_WORKERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start sluice");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let code = match wait(&mut child, Duration::from_secs(10)) {
        Some(code) => Some(code),
        None => {
            // It serves when it should have refused: drain it (its workers go too), then kill.
            signal(child.id(), "TERM");
            if wait(&mut child, Duration::from_secs(3)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            None
        }
    };
    let stdout = out.join().unwrap();
    // A killed supervisor's workers may hold stderr open for a moment: do not wait on them.
    let stderr = if code.is_some() {
        err.join().unwrap()
    } else {
        String::from("(killed: still running)")
    };
    Ran {
        code,
        stdout,
        stderr,
    }
}

/// The exit code once `child` exits within `guard` (-1 for a signal), else `None`.
fn wait(child: &mut std::process::Child, guard: Duration) -> Option<i32> {
    let until = Instant::now() + guard;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() > until {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if nothing listens on `port` (it can be bound).
fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn every_command_takes_help() {
    for (args, first) in [
        (&["run", "--help"][..], "usage: sluice run"),
        (&["run", "-h"][..], "usage: sluice run"),
        (&["worker", "--help"][..], "usage: sluice worker"),
        (
            &["check-config", "--help"][..],
            "usage: sluice check-config",
        ),
        (&["ctl", "--help"][..], "usage: sluice ctl COMMAND..."),
        (&["inspect", "--help"][..], "usage: sluice inspect"),
        (&["--help"][..], "sluice - "),
    ] {
        let port = free_port();
        let r = sluice(args, &[("ENVOY_PORT", &port.to_string())]);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        assert!(r.stdout.starts_with(first), "{args:?}: {}", r.stdout);
        assert!(free(port), "{args:?} bound the listen port");
    }
    // The help names every command's help.
    let r = sluice(&["--help"], &[]);
    assert!(r.stdout.contains("sluice COMMAND --help"), "{}", r.stdout);
}

#[test]
fn unknown_arguments_are_refused_with_the_commands_usage() {
    for (args, usage) in [
        (&["run", "--port", "9000"][..], "usage: sluice run"),
        (&["run", "extra"][..], "usage: sluice run"),
        (&["run", "--help", "extra"][..], "usage: sluice run"),
        (&["worker", "--workers=2"][..], "usage: sluice worker"),
        (&["check-config", "-v"][..], "usage: sluice check-config"),
        (&["ctl", "--socket", "/x"][..], "usage: sluice ctl"),
        (&["inspect", "--bogus"][..], "usage: sluice inspect"),
        (&["frobnicate"][..], "usage:"),
    ] {
        let port = free_port();
        let r = sluice(args, &[("ENVOY_PORT", &port.to_string())]);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(usage), "{args:?}: {}", r.stderr);
        assert!(free(port), "{args:?} bound the listen port");
    }
    let r = sluice(&["run", "--port", "9000"], &[]);
    assert!(
        r.stderr.contains(r#"unknown argument "--port""#),
        "{}",
        r.stderr
    );
}

/// `sluice` alone prints the help and exits 2 (README, Command line): it does not start the
/// proxy on the defaults.
#[test]
fn sluice_alone_prints_the_help_and_binds_nothing() {
    let port = free_port();
    let r = sluice(&[], &[("ENVOY_PORT", &port.to_string())]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("sluice run "), "{}", r.stderr);
    assert!(r.stderr.contains("alone prints this help"), "{}", r.stderr);
    assert!(free(port));
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let r = sluice(&["--version"], &[]);
    assert_eq!(r.code, Some(0));
    let line = r.stdout.trim_end();
    // sluice 0.1.0 (commit 1a2b3c4, built 2026-01-31)
    let rest = line
        .strip_prefix(concat!("sluice ", env!("CARGO_PKG_VERSION"), " (commit "))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && [4, 2, 2] == [parts[0].len(), parts[1].len(), parts[2].len()],
        "{line}"
    );
}

#[test]
fn every_config_error_is_printed_at_once_one_a_line() {
    let env = [
        ("ENVOY_PORT", "x"),
        ("ENVOY_BUFFER_SIZE", "tiny"),
        ("ENVOY_BACKLOG", "0"),
        ("ENVOY_ECH", "maybe"),
    ];
    for command in ["run", "check-config", "worker"] {
        let r = sluice(&[command], &env);
        assert_eq!(r.code, Some(2), "{command}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        for key in [
            "ENVOY_PORT",
            "ENVOY_BUFFER_SIZE",
            "ENVOY_BACKLOG",
            "ENVOY_ECH",
        ] {
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("sluice: invalid {key}=")))
                    .count(),
                1,
                "{command}: {key} on a line of its own:\n{}",
                r.stderr
            );
        }
    }
}

#[test]
fn a_misspelt_variable_is_warned_about_with_the_nearest_key() {
    let r = sluice(&["check-config"], &[("ENVOY_PORTT", "9000")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("ENVOY_PORTT is set in the environment but is not a key (ignored); did you mean ENVOY_PORT?"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("ENVOY_PORT=8000 (default)"),
        "{}",
        r.stdout
    );
    let r = sluice(&["check-config"], &[("ENVOY_NOTHING_LIKE_A_KEY", "1")]);
    assert!(
        r.stderr
            .contains("ENVOY_NOTHING_LIKE_A_KEY is set in the environment but is not a key"),
        "{}",
        r.stderr
    );
    // At start, in the log.
    let mut s = Sluice::start(&[("ENVOY_UPSTREAM", "127.0.0.1:1"), ("ENVOY_WORKER", "2")]);
    let line = s.wait_for_log("nearest=ENVOY_WORKERS", Duration::from_secs(5));
    assert!(
        line.contains("WARN") && fields(&line)["variable"] == "ENVOY_WORKER",
        "{line}"
    );
}

#[test]
fn the_config_file_takes_trailing_comments_and_quotes_keep_a_hash() {
    let dir = TempDir::new("cli-file");
    let file = dir.path("sluice.env");
    std::fs::write(
        &file,
        "# settings\n\
         ENVOY_PORT=8443          # the LB's port\n\
         ENVOY_PROXY_PROTOCOL=required\t# tab, then a comment\n\
         ENVOY_HEADERS=\"X-Tag: #1\"   # quoted: the # inside stays\n\
         ENVOY_REGION_KEY=x-region#b\n",
    )
    .unwrap();
    let r = sluice(
        &["check-config"],
        &[("ENVOY_CONFIG_FILE", file.to_str().unwrap())],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for line in [
        "ENVOY_PORT=8443 (file)",
        "ENVOY_PROXY_PROTOCOL=required (file)",
        "ENVOY_HEADERS=X-Tag: #1 (file)",
        "ENVOY_REGION_KEY=x-region#b (file)",
    ] {
        assert!(r.stdout.lines().any(|l| l == line), "{line}:\n{}", r.stdout);
    }
}

#[test]
fn a_capture_dir_that_cannot_be_created_stops_start_up_before_anything_binds() {
    let dir = TempDir::new("cli-capture");
    std::fs::write(dir.path("file"), "x").unwrap();
    let bad = dir.path("file").join("captures");
    let bad = bad.to_str().unwrap();
    for command in ["run", "worker", "check-config"] {
        let port = free_port();
        let r = sluice(
            &[command],
            &[
                ("ENVOY_PORT", &port.to_string()),
                ("ENVOY_CAPTURE_DIR", bad),
            ],
        );
        assert_eq!(r.code, Some(2), "{command}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("ENVOY_CAPTURE_DIR=\"{bad}\": cannot create")),
            "{command}: {}",
            r.stderr
        );
        assert!(free(port), "{command} bound the listen port");
    }
    // A directory that exists but cannot be written in (even by root: /proc).
    let r = sluice(
        &["run"],
        &[("ENVOY_PORT", "0"), ("ENVOY_CAPTURE_DIR", "/proc")],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("ENVOY_CAPTURE_DIR=\"/proc\": cannot write in it"),
        "{}",
        r.stderr
    );
    // A missing one is created, and nothing is left in it.
    let made = dir.path("new/captures");
    let r = sluice(
        &["check-config"],
        &[("ENVOY_CAPTURE_DIR", made.to_str().unwrap())],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0);
}

#[test]
fn metrics_control_socket_and_pid_file_problems_name_their_key_all_at_once() {
    let dir = TempDir::new("cli-keys");
    let port = free_port();
    let sock = dir.path("missing/ctl.sock");
    let pid = dir.path("missing/sluice.pid");
    let env = [
        ("ENVOY_PORT", port.to_string()),
        // TEST-NET-1: never a local address.
        ("ENVOY_METRICS_ADDR", "192.0.2.1:9100".to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap().to_string()),
        ("ENVOY_PID_FILE", pid.to_str().unwrap().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for command in ["run", "check-config"] {
        let r = sluice(&[command], &env);
        assert_eq!(r.code, Some(2), "{command}: {}", r.stderr);
        for said in [
            "sluice: invalid ENVOY_METRICS_ADDR=\"192.0.2.1:9100\": cannot bind".to_string(),
            format!(
                "sluice: invalid ENVOY_CONTROL_SOCKET={:?}: its directory ",
                sock
            ),
            format!("sluice: invalid ENVOY_PID_FILE={:?}: cannot write ", pid),
        ] {
            assert!(r.stderr.contains(&said), "{command}: {said}\n{}", r.stderr);
        }
        assert!(!r.stderr.contains("cannot start on"), "{}", r.stderr);
        assert!(free(port));
    }
}

#[test]
fn a_metrics_address_in_use_stops_a_start_and_is_a_note_for_check_config() {
    let (held, addr) = listener();
    let port = free_port();
    let env = [
        ("ENVOY_PORT", port.to_string()),
        ("ENVOY_METRICS_ADDR", addr.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = sluice(&["run"], &env);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "sluice: invalid ENVOY_METRICS_ADDR=\"{addr}\": cannot bind: "
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("cannot start on"), "{}", r.stderr);
    assert!(free(port), "the listeners were bound");
    let r = sluice(&["check-config"], &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "sluice: note: ENVOY_METRICS_ADDR={addr}: cannot bind"
        )),
        "{}",
        r.stderr
    );
    drop(held);
}

/// ENVOY_CONTROL_SOCKET naming a regular file: refused with its path, and the file kept, by
/// `run`, by a standalone `worker`, and by a lone worker told at run time.
#[test]
fn a_file_at_the_control_socket_path_is_refused_and_never_removed() {
    let dir = TempDir::new("cli-ctl-file");
    let precious = dir.path("precious");
    std::fs::write(&precious, "do not delete\n").unwrap();
    let p = precious.to_str().unwrap();
    for command in ["run", "worker", "check-config"] {
        let port = free_port();
        let r = sluice(
            &[command],
            &[
                ("ENVOY_PORT", &port.to_string()),
                ("ENVOY_CONTROL_SOCKET", p),
            ],
        );
        assert_eq!(r.code, Some(2), "{command}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "ENVOY_CONTROL_SOCKET=\"{p}\": exists and is not a socket; not removed"
            )),
            "{command}: {}",
            r.stderr
        );
        assert_eq!(
            std::fs::read_to_string(&precious).unwrap(),
            "do not delete\n",
            "{command}"
        );
        assert!(free(port));
    }
    // At run time (a lone worker binds its own control socket on `set`).
    let sock = dir.path("ctl.sock");
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("worker");
    let _s = Sluice::start_cmd(
        cmd,
        &[
            ("ENVOY_UPSTREAM", "127.0.0.1:1"),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    let out = Command::new(sluice_bin())
        .args(["ctl", "set", "ENVOY_CONTROL_SOCKET", p])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.starts_with("error:") && reply.contains("not a socket"),
        "{reply}"
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "do not delete\n"
    );
    // The old socket still answers.
    let out = Command::new(sluice_bin())
        .args(["ctl", "show", "stats"])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn a_stale_control_socket_is_replaced_and_the_path_is_logged() {
    let dir = TempDir::new("cli-ctl-stale");
    let sock = dir.path("ctl.sock");
    // A socket whose process is gone: the file stays, nobody answers.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(Path::new(&sock).exists());
    let mut s = Sluice::start(&[
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    s.wait_for_log(
        &format!("control socket listening path={}", sock.display()),
        Duration::from_secs(5),
    );
    let out = Command::new(sluice_bin())
        .args(["ctl", "show", "stats"])
        .env("ENVOY_CONTROL_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second sluice on the same path: the live socket is not taken over.
    let port = free_port();
    let r = sluice(
        &["run"],
        &[
            ("ENVOY_PORT", &port.to_string()),
            ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("a live socket"), "{}", r.stderr);
    assert!(free(port));
    // check-config on the machine where it runs: a note, not an error.
    let r = sluice(
        &["check-config"],
        &[("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap())],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "sluice: note: ENVOY_CONTROL_SOCKET={}: a live socket",
            sock.display()
        )),
        "{}",
        r.stderr
    );
}

/// A variable that is not UTF-8 anywhere in the environment (a locale's, a stray one) used to
/// abort start-up with a panic; an ENVOY_* one is refused by its key like any bad value.
#[test]
fn a_variable_that_is_not_utf8_does_not_abort_start_up() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("SOMEONE_ELSES", bad)
        .env("ENVOY_UPSTREAM", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .env("ENVOY_COUNTRY", bad)
        .env("ENVOY_UPSTREAM", "127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("sluice: invalid ENVOY_COUNTRY="), "{err}");
}
