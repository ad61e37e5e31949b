#![cfg(test)]
//! Least privilege, on the real binary started as root (Linux): with `ENVOY_USER=nobody`
//! every worker is nobody in all its ids, with no capability and `no_new_privs`; the
//! supervisor is nobody keeping CAP_NET_BIND_SERVICE only (also ambient, so that an
//! upgraded binary binds a port below 1024); traffic, captures, reload, respawn and upgrade
//! still work and every new process is as unprivileged; a worker's credentials cannot write
//! outside what was given to it; a bad user stops the start before anything is bound; the
//! open-file limit is raised and said; the control socket belongs to the user and the
//! control group; a chroot holds the workers. The shipped systemd unit rates "OK" under
//! `systemd-analyze security --offline=true` and systemd hears the main process only.
//!
//! Where a test needs root and is not, it says so and passes: `make test` runs as root.

mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const NOBODY: u32 = 65534;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;

/// True when this test process is root; otherwise says why the test does nothing.
fn root(test: &str) -> bool {
    let me = proc_status(std::process::id());
    let root = me
        .get("Uid")
        .is_some_and(|u| u.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("{test}: skipped: needs root (sluice is started as root and drops to nobody)");
    }
    root
}

/// `/proc/PID/status` as field -> value.
fn proc_status(pid: u32) -> HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The credential lines of a status, for messages.
fn creds(st: &HashMap<String, String>) -> String {
    let mut out: Vec<String> = st
        .iter()
        .filter(|(k, _)| {
            ["Uid", "Gid", "Groups", "NoNewPrivs"].contains(&k.as_str()) || k.starts_with("Cap")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.sort();
    out.join(" ")
}

fn ids(st: &HashMap<String, String>, field: &str) -> Vec<u32> {
    st.get(field)
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn caps(st: &HashMap<String, String>, field: &str) -> u64 {
    let v = st
        .get(field)
        .unwrap_or_else(|| panic!("no {field}: {st:?}"));
    u64::from_str_radix(v, 16).unwrap()
}

/// A worker: nobody in its real, effective, saved and filesystem ids, no group but nogroup,
/// no capability anywhere but the bounding set, and no_new_privs.
fn assert_unprivileged_worker(pid: u32) {
    let st = proc_status(pid);
    assert_eq!(ids(&st, "Uid"), [NOBODY; 4], "worker {pid}: {}", creds(&st));
    assert_eq!(ids(&st, "Gid"), [NOBODY; 4], "worker {pid}: {}", creds(&st));
    // Its group only (none when started with none, as setpriv --clear-groups does).
    assert!(
        ids(&st, "Groups").iter().all(|&g| g == NOBODY),
        "worker {pid}: {}",
        creds(&st)
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(caps(&st, set), 0, "worker {pid} {set}: {}", creds(&st));
    }
    assert_eq!(
        st.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{}",
        creds(&st)
    );
}

/// The supervisor on Linux: nobody too, keeping only CAP_NET_BIND_SERVICE (ambient as well,
/// for the binary an upgrade starts), nothing else even in the bounding set.
fn assert_binding_only_supervisor(pid: u32) {
    let st = proc_status(pid);
    assert_eq!(
        ids(&st, "Uid"),
        [NOBODY; 4],
        "supervisor {pid}: {}",
        creds(&st)
    );
    assert_eq!(
        ids(&st, "Gid"),
        [NOBODY; 4],
        "supervisor {pid}: {}",
        creds(&st)
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert_eq!(
            caps(&st, set),
            CAP_NET_BIND_SERVICE,
            "supervisor {pid} {set}: {}",
            creds(&st)
        );
    }
    assert_eq!(
        st.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{}",
        creds(&st)
    );
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn hello() -> Vec<u8> {
    fixture("client-curl-7.88.1-h2.bin")
}

/// An upstream that reads the ClientHello, answers its one-byte `tag`, then echoes.
fn tagged_upstream(tag: u8) -> SocketAddr {
    let (l, addr) = listener();
    let n = hello().len();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut h = vec![0u8; n];
                if s.read_exact(&mut h).is_err() {
                    return;
                }
                let _ = s.write_all(&[tag]);
                let mut buf = [0u8; 4096];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One session through `addr`: the upstream's tag, then 4 KiB echoed.
fn session(addr: SocketAddr) -> u8 {
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&hello()).unwrap();
    let tag = read_exact(&mut c, 1)[0];
    let data = Prng::new(7).bytes(4096);
    c.write_all(&data).unwrap();
    assert_eq!(read_exact(&mut c, data.len()), data);
    tag
}

fn command(sock: &Path, line: &str) -> Vec<String> {
    let mut conn = BufReader::new(UnixStream::connect(sock).expect("control socket"));
    writeln!(conn.get_mut(), "{line}").unwrap();
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        assert!(conn.read_line(&mut l).unwrap() > 0, "closed after {line:?}");
        let l = l.trim_end_matches('\n').to_string();
        if l.is_empty() {
            return out;
        }
        out.push(l);
    }
}

/// Runs `sh -c script` as uid/gid nobody (no other group): what a worker's credentials may do.
fn as_nobody(script: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A scratch directory every user may reach (its parent is /tmp).
fn open_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn captures(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn workers_are_nobody_without_capabilities_and_traffic_and_captures_still_work() {
    if !root("workers_are_nobody") {
        return;
    }
    let up = tagged_upstream(b'P');
    let dir = open_dir("privilege");
    let cap = dir.path("captures"); // missing: created at start and given to nobody
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_USER", "nobody"),
        ("ENVOY_WORKERS", "2"),
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CAPTURE_DIR", cap.to_str().unwrap()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    sluice.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    let workers = sluice.workers();
    assert_eq!(workers.len(), 2, "{}", sluice.log());
    for &w in &workers {
        assert_unprivileged_worker(w);
        // setgroups gave it exactly its group.
        assert_eq!(ids(&proc_status(w), "Groups"), [NOBODY]);
    }
    assert_binding_only_supervisor(sluice.child.id());
    sluice.wait_for_log(
        "privileges dropped user=nobody uid=65534 gid=65534",
        Duration::from_secs(5),
    );
    assert_eq!(session(sluice.addr), b'P');

    // Captures: a traced session and a failed one land in the capture directory, written by
    // the workers as nobody.
    let m = std::fs::metadata(&cap).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (NOBODY, NOBODY),
        "the capture directory is nobody's"
    );
    assert!(command(&sock, "trace example.test")[0].starts_with("ok:"));
    assert_eq!(session(sluice.addr), b'P');
    let mut c = TcpStream::connect(sluice.addr).unwrap();
    c.write_all(&fixture("edge-v1-longer-than-107.bin"))
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    wait_until("a traced and a failed capture", || {
        let names: Vec<String> = captures(&cap)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        names.iter().any(|n| n.contains("traced")) && names.iter().any(|n| n.contains("invalid"))
    });
    for f in captures(&cap) {
        assert_eq!(
            std::fs::metadata(&f).unwrap().uid(),
            NOBODY,
            "{}",
            f.display()
        );
    }

    // Who the processes are is decided at start: a `set` cannot change it.
    let reply = command(&sock, "set ENVOY_USER root");
    assert!(
        reply[0].starts_with("error: ENVOY_USER is applied at start only"),
        "{reply:?}"
    );

    // What those credentials may write: the capture directory, not /etc, nor the control
    // socket's directory (root's).
    let probe = cap.join("probe");
    assert!(as_nobody(&format!("touch {}", probe.display())));
    assert!(!as_nobody("touch /etc/sluice-privilege-test"));
    assert!(!Path::new("/etc/sluice-privilege-test").exists());
    assert!(!as_nobody(&format!(
        "touch {}",
        dir.path("outside").display()
    )));
}

/// A port below 1024 that is free now.
fn free_privileged_port() -> u16 {
    let mut rng = Prng::new(std::process::id() as u64);
    for _ in 0..200 {
        let port = rng.range(600, 1000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 1024");
}

fn supervisor_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter_map(|l| l.split("supervisor starting pid=").nth(1))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn reload_respawn_and_upgrade_keep_every_process_unprivileged() {
    if !root("reload_respawn_and_upgrade") {
        return;
    }
    let up = tagged_upstream(b'U');
    let dir = open_dir("privilege-upgrade");
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let config = dir.path("sluice.env");
    std::fs::write(&config, "ENVOY_LOG_LEVEL=info\n").unwrap();
    let run = dir.path("run"); // the pid file's directory: the user's, as the unit's would be
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut sluice = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_USER", "nobody"),
            ("ENVOY_WORKERS", "2"),
            ("ENVOY_UPSTREAM", &up.to_string()),
            ("ENVOY_CONFIG_FILE", config.to_str().unwrap()),
            ("ENVOY_PID_FILE", run.join("sluice.pid").to_str().unwrap()),
            ("ENVOY_DRAIN_TIMEOUT_MS", "2000"),
        ],
    );
    sluice.may_exit = true;
    let _stop = sluice.stop_all_generations();
    sluice.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    let first = sluice.child.id();
    assert_binding_only_supervisor(first);

    // Reload: the workers read the file again (as nobody) and keep serving.
    signal(first, "HUP");
    sluice.wait_for_count("signal=SIGHUP", 2, Duration::from_secs(10));
    assert_eq!(session(sluice.addr), b'U');

    // Respawn: a killed worker's replacement is started by the supervisor as it is now.
    let old = children(first);
    signal(old[0], "KILL");
    wait_until("a respawned worker", || {
        let now = children(first);
        now.len() == 2 && !now.contains(&old[0])
    });
    sluice.wait_for_count("listening addr=", 3, Duration::from_secs(10));
    for w in children(first) {
        assert_unprivileged_worker(w);
    }

    // Upgrade to a port below 1024: the new binary, started by the supervisor that is nobody
    // now, binds it with the capability it was left, and is as unprivileged.
    let port = free_privileged_port();
    std::fs::write(&config, format!("ENVOY_IP=127.0.0.1\nENVOY_PORT={port}\n")).unwrap();
    signal(first, "USR2");
    sluice.wait_for_log("upgrade done, old workers", Duration::from_secs(20));
    let second = *supervisor_pids(&sluice.log()).last().unwrap();
    assert_ne!(second, first);
    assert_binding_only_supervisor(second);
    wait_until("the new workers", || children(second).len() == 2);
    for w in children(second) {
        assert_unprivileged_worker(w);
    }
    let low: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(session(low), b'U');
    let pid_file = std::fs::read_to_string(run.join("sluice.pid")).unwrap();
    assert_eq!(
        pid_file.trim(),
        second.to_string(),
        "the new supervisor wrote its pid"
    );
}

#[test]
fn a_standalone_worker_started_as_root_keeps_no_capability_at_all() {
    if !root("a_standalone_worker") {
        return;
    }
    let up = tagged_upstream(b'S');
    let port = free_port();
    let child = Command::new(sluice_bin())
        .arg("worker")
        .env_clear()
        .env("ENVOY_USER", "nobody")
        .env("ENVOY_PORT", port.to_string())
        .env("ENVOY_UPSTREAM", up.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Proc(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, Duration::from_secs(10));
    wait_until("the drop", || {
        ids(&proc_status(child.0.id()), "Uid") == [NOBODY; 4]
    });
    let st = proc_status(child.0.id());
    assert_unprivileged_worker(child.0.id());
    assert_eq!(
        caps(&st, "CapBnd"),
        0,
        "root could empty the bounding set: {}",
        creds(&st)
    );
    assert_eq!(session(addr), b'S');
}

/// As systemd's unit starts it: already the user, with CAP_NET_BIND_SERVICE in the ambient
/// set (AmbientCapabilities=) and no_new_privs. The supervisor binds a port below 1024 and
/// keeps that one capability; the workers let it go.
#[test]
fn started_as_the_user_with_an_ambient_bind_capability_only_the_supervisor_keeps_it() {
    if !root("started_as_the_user") {
        return;
    }
    let Some(setpriv) = which("setpriv") else {
        eprintln!("started_as_the_user: skipped: no setpriv (util-linux) here");
        return;
    };
    let up = tagged_upstream(b'A');
    let port = free_privileged_port();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=+net_bind_service",
        "--ambient-caps=+net_bind_service",
        "--bounding-set=-all,+net_bind_service",
        "--no-new-privs",
    ])
    .arg(sluice_bin())
    .arg("run");
    let sluice = Sluice::start_cmd(
        cmd,
        &[
            ("ENVOY_USER", "nobody"),
            ("ENVOY_PORT", &port.to_string()),
            ("ENVOY_UPSTREAM", &up.to_string()),
        ],
    );
    assert_eq!(sluice.addr.port(), port);
    assert_binding_only_supervisor(sluice.child.id());
    for w in sluice.workers() {
        assert_unprivileged_worker(w);
    }
    assert_eq!(session(sluice.addr), b'A');
}

#[test]
fn a_bad_user_or_group_stops_the_start_before_anything_is_bound() {
    if !root("a_bad_user") {
        return;
    }
    let dir = open_dir("bad-user");
    for (key, env) in [
        ("ENVOY_USER", vec![("ENVOY_USER", "no-such-user-sluice")]),
        (
            "ENVOY_GROUP",
            vec![
                ("ENVOY_USER", "nobody"),
                ("ENVOY_GROUP", "no-such-group-sluice"),
            ],
        ),
    ] {
        let port = free_port();
        let sock = dir.path(&format!("{key}.sock"));
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("run")
            .env_clear()
            .env("ENVOY_PORT", port.to_string())
            .env("ENVOY_UPSTREAM", "127.0.0.1:1")
            .env("ENVOY_CONTROL_SOCKET", &sock)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Proc(cmd.spawn().unwrap());
        let until = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "{key}: still running: the start was not refused"
            );
            thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(&format!("invalid {key}=")), "{key}: {err}");
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{key}: nothing listens"
        );
        assert!(!sock.exists(), "{key}: no control socket was bound");
    }
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_said() {
    let hard: u64 = {
        let out = Command::new("sh")
            .arg("-c")
            .arg("ulimit -Hn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match text.parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("open-file limit test: skipped: the hard limit is {text:?}");
                return;
            }
        }
    };
    let soft = (hard / 2).min(1024);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -Sn {soft} && exec \"$0\" run"))
        .arg(sluice_bin());
    let mut sluice = Sluice::start_cmd(cmd, &[("ENVOY_UPSTREAM", "127.0.0.1:1")]);
    sluice.wait_for_log(
        &format!("open-file limit set soft={hard} hard={hard} was={soft}"),
        Duration::from_secs(5),
    );
    // ENVOY_MAX_SESSIONS=auto counts on the raised limit, and the worker inherits it.
    let line = sluice.wait_for_log("listening addr=", Duration::from_secs(5));
    assert!(
        line.contains(&format!("max_sessions={}", (hard - 64) / 2)),
        "{line}"
    );
    let w = sluice.workers()[0];
    let limits = std::fs::read_to_string(format!("/proc/{w}/limits")).unwrap();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, [hard.to_string(), hard.to_string()], "{row}");
}

#[test]
fn the_control_socket_is_the_users_and_its_group_may_use_it_without_root() {
    if !root("the_control_socket") {
        return;
    }
    // Another group than the user's own, that exists on Debian: adm.
    let Some(group) = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("adm:"))
        .and_then(|l| l.split(':').nth(2)?.parse::<u32>().ok())
    else {
        eprintln!("the_control_socket: skipped: no group adm here");
        return;
    };
    let dir = open_dir("control-group");
    let sock = dir.path("ctl.sock");
    let sluice = Sluice::start(&[
        ("ENVOY_USER", "nobody"),
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("ENVOY_CONTROL_GROUP", "adm"),
    ]);
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (NOBODY, group, 0o660));
    // An operator in that group (no root, no other group) uses `sluice ctl`; anyone else
    // cannot connect.
    let ctl = |uid: u32, gid: u32| {
        Command::new(sluice_bin())
            .args(["ctl", "show", "stats"])
            .env_clear()
            .env("ENVOY_CONTROL_SOCKET", &sock)
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap()
    };
    let operator = ctl(4242, group);
    assert!(
        operator.status.success(),
        "{}",
        String::from_utf8_lossy(&operator.stderr)
    );
    assert!(String::from_utf8_lossy(&operator.stdout).contains("workers"));
    let stranger = ctl(4242, 4242);
    assert_eq!(stranger.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("ermission denied"));
    drop(sluice);

    // Without a control group: the user's alone, 0600.
    let sock = dir.path("ctl2.sock");
    let _sluice = Sluice::start(&[
        ("ENVOY_USER", "nobody"),
        ("ENVOY_UPSTREAM", "127.0.0.1:1"),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o777),
        (NOBODY, NOBODY, 0o600)
    );
}

#[test]
fn a_chroot_holds_the_workers_and_their_captures_land_inside_it() {
    if !root("a_chroot") {
        return;
    }
    let up = tagged_upstream(b'C');
    let dir = open_dir("chroot");
    let jail = dir.path("jail");
    std::fs::create_dir(&jail).unwrap();
    let sock = dir.path("ctl.sock");
    let mut sluice = Sluice::start(&[
        ("ENVOY_USER", "nobody"),
        ("ENVOY_CHROOT", jail.to_str().unwrap()),
        ("ENVOY_CAPTURE_DIR", "/captures"),
        ("ENVOY_UPSTREAM", &up.to_string()),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let w = sluice.workers()[0];
    assert_eq!(std::fs::read_link(format!("/proc/{w}/root")).unwrap(), jail);
    assert_unprivileged_worker(w);
    sluice.wait_for_log(
        &format!(
            "privileges dropped user=nobody uid=65534 gid=65534 chroot={}",
            jail.display()
        ),
        Duration::from_secs(5),
    );
    assert!(command(&sock, "trace example.test")[0].starts_with("ok:"));
    assert_eq!(session(sluice.addr), b'C');
    wait_until("a capture inside the chroot", || {
        !captures(&jail.join("captures")).is_empty()
    });
}

/// `systemd-analyze security --offline=true` on the shipped unit: "OK" (at most 2.0).
#[test]
fn the_systemd_unit_rates_ok_under_systemd_analyze() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sluice.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("the unit's exposure: skipped: systemd-analyze cannot run here ({e})");
            return;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sluice.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// Type=notify with NotifyAccess=main: the supervisor says READY=1; after an upgrade the old
/// one (systemd's main process) names its successor, which says nothing itself.
#[test]
fn systemd_hears_the_main_process_only_across_an_upgrade() {
    let dir = open_dir("notify");
    let notify = dir.path("notify.sock");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let bin = dir.path("sluice");
    std::fs::copy(sluice_bin(), &bin).unwrap();
    let mut sluice = Sluice::start_bin(
        &bin,
        &[
            ("ENVOY_UPSTREAM", "127.0.0.1:1"),
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("ENVOY_DRAIN_TIMEOUT_MS", "1000"),
        ],
    );
    sluice.may_exit = true;
    let _stop = sluice.stop_all_generations();
    let first = sluice.child.id();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY=1 from the supervisor");
    assert_eq!(&buf[..n], format!("READY=1\nMAINPID={first}").as_bytes());
    signal(first, "USR2");
    let n = rx.recv(&mut buf).expect("the new main pid");
    sluice.wait_for_log("upgrade done, old workers", Duration::from_secs(20));
    let second = *supervisor_pids(&sluice.log()).last().unwrap();
    assert_ne!(second, first);
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        format!("MAINPID={second}"),
        "the old supervisor names the new one"
    );
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        rx.recv(&mut buf).is_err(),
        "nothing else: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// The FreeBSD rc.d script passes sluice_user / sluice_group on to sluice (not to rc.subr,
/// which would su(1) to the user before sluice could bind), and is valid sh.
#[test]
fn the_rc_script_drops_to_sluice_user_and_parses() {
    let rc = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sluice.rc");
    let text = std::fs::read_to_string(&rc).unwrap();
    for needle in [
        "sluice_envoy_user=\"${sluice_user}\"",
        "sluice_envoy_group=\"${sluice_group}\"",
        "ENVOY_USER=${sluice_envoy_user}",
        "ENVOY_GROUP=${sluice_envoy_group}",
        "/usr/local/etc/sluice.env",
    ] {
        assert!(text.contains(needle), "contrib/sluice.rc lacks {needle}");
    }
    let ok = Command::new("sh").arg("-n").arg(&rc).status().unwrap();
    assert!(ok.success(), "sh -n contrib/sluice.rc");
}
