//! What the keys name on this machine, checked before anything binds: the capture directory,
//! the control socket's path, the metrics address and the pid file (the config and route
//! files are read by the load itself); the account `ENVOY_USER` names, `ENVOY_CHROOT` and
//! what contradicts it, and that what the processes use after switching users is theirs to
//! use. `sluice run`, a standalone `sluice worker` and `sluice check-config` call [`check`];
//! a problem names its key and its path.
//!
//! Checks leave nothing behind where they can: a directory named by a key is created if
//! missing (as the proxy would), a write test file is removed at once, a metrics bind test is
//! released, and nothing that exists is ever removed or replaced. Started as root with
//! `ENVOY_USER`, what a check creates (the capture directory, a log file) is given to that
//! user; what exists already is never given away: the check says who cannot use it and how
//! to fix that. The control socket's rule (only a stale socket may be replaced) lives here
//! too, so that the admin plane binding it and the check agree.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::logger::Target;
use crate::privilege::{self, Account};
use crate::sys::account::Ids;

/// The longest UNIX socket path bind(2) takes: `sun_path` holds it and a NUL.
const MAX_SOCKET_PATH: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// One key whose resource cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, its path or address, and why.
    pub error: ConfigError,
    /// In use now by a live process (another sluice?): a start would fail, but a running
    /// instance checking its own config sees it so.
    pub busy: bool,
}

/// Which admin sockets a predecessor handed over (an upgrade): they are in use by design.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inherited {
    /// The control socket.
    pub control: bool,
    /// The metrics listener.
    pub metrics: bool,
}

impl Inherited {
    /// What this process inherited, from the variables a predecessor set (read before the
    /// supervisor adopts them).
    pub fn from_process_env() -> Inherited {
        Inherited {
            control: std::env::var_os(crate::handoff::INHERIT_CONTROL).is_some(),
            metrics: std::env::var_os(crate::handoff::INHERIT_METRICS).is_some(),
        }
    }
}

/// Every problem with what `cfg` names, in key order.
pub fn check(cfg: &Config, inherited: Inherited) -> Vec<Problem> {
    let me = crate::sys::account::current().ok();
    let root = me.as_ref().is_some_and(Ids::is_root);
    let mut out = Vec::new();
    let account = match privilege::account(cfg) {
        Ok(a) => a,
        Err(error) => {
            out.push(Problem { error, busy: false });
            None
        }
    };
    // Root about to switch: what the switched processes use must be theirs (mode bits).
    // Otherwise this process's own write tests say it.
    let switching_to = account.as_ref().filter(|a| root && a.uid != 0);
    let mut push = |key: &'static str, value: &str, r: Result<(), (String, bool)>| {
        if let Err((reason, busy)) = r {
            out.push(Problem {
                error: ConfigError {
                    key,
                    value: value.to_string(),
                    reason,
                },
                busy,
            });
        }
    };
    let not_busy = |r: Result<(), String>| r.map_err(|e| (e, false));
    if let (Some(acc), Some(me)) = (&account, &me) {
        if !root && !me.are(acc.uid, acc.gid) {
            let why = format!(
                "sluice runs as uid {} gid {}, not root: it cannot become {acc} gid {}",
                me.uids[1], me.gids[1], acc.gid
            );
            push("ENVOY_USER", &cfg.user, Err((why, false)));
        }
    }
    push(
        "ENVOY_CONTROL_GROUP",
        &cfg.control_group,
        not_busy(control_group(cfg, me.as_ref(), root)),
    );
    for (key, value, why) in chroot_contradictions(cfg, account.as_ref(), root) {
        push(key, &value, Err((why, false)));
    }
    push(
        "ENVOY_MAX_FILES",
        &cfg.max_files.map_or_else(String::new, |n| n.to_string()),
        not_busy(max_files(cfg, root)),
    );
    if let (Target::File(path), Some(acc), true) =
        (&cfg.log_target, switching_to, cfg.chroot.is_empty())
    {
        let value = path.display().to_string();
        push(
            "ENVOY_LOG_TARGET",
            &value,
            not_busy(log_file_for(path, acc)),
        );
    }
    if !cfg.control_socket.is_empty() && !inherited.control {
        let path = cfg.control_socket.as_str();
        push("ENVOY_CONTROL_SOCKET", path, control_socket(path));
    }
    if let (Some(addr), false) = (cfg.metrics_addr, inherited.metrics) {
        let listens = cfg.listeners.iter().any(|l| l.addr == addr);
        let r = if listens && addr.port() != 0 {
            Err((
                "the listen address (ENVOY_IP, ENVOY_PORT) is the same".into(),
                false,
            ))
        } else {
            bind_test(addr)
        };
        push("ENVOY_METRICS_ADDR", &addr.to_string(), r);
    }
    if !cfg.capture_dir.is_empty() {
        let dir = cfg.capture_dir.as_str();
        let r = if cfg.chroot.is_empty() {
            writable_dir_for(Path::new(dir), switching_to)
        } else if !dir.starts_with('/') {
            Err("with ENVOY_CHROOT, an absolute path inside it".into())
        } else {
            writable_dir_for(&in_chroot(cfg, dir), switching_to)
        };
        push("ENVOY_CAPTURE_DIR", dir, not_busy(r));
    }
    if !cfg.pid_file.is_empty() {
        let path = cfg.pid_file.as_str();
        // On Linux the supervisor writes it after switching (FreeBSD's stays root).
        let r = pid_file(path).and_then(|()| match switching_to {
            Some(acc) if cfg!(target_os = "linux") => usable_by(&parent_dir(path), acc, true)
                .map_err(|e| {
                    format!(
                        "the supervisor writes it as {} after switching, and {e}: name a file in a directory of that user's",
                        acc.user
                    )
                }),
            _ => Ok(()),
        });
        push("ENVOY_PID_FILE", path, not_busy(r));
    }
    out
}

/// `path` (absolute) as the workers see it from inside `ENVOY_CHROOT`, seen from outside.
fn in_chroot(cfg: &Config, path: &str) -> PathBuf {
    Path::new(&cfg.chroot).join(path.trim_start_matches('/'))
}

/// The directory a file at `path` is created in.
fn parent_dir(path: &str) -> PathBuf {
    match Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A control group must exist, and be one sluice may give the socket to: root may give it
/// any; another user only a group it is in.
fn control_group(cfg: &Config, me: Option<&Ids>, root: bool) -> Result<(), String> {
    let gid = privilege::control_group(cfg).map_err(|e| e.reason)?;
    match (gid, me) {
        (Some(gid), Some(me)) if !root && me.gids[1] != gid && !me.groups.contains(&gid) => {
            Err(format!(
                "sluice runs as uid {}, neither root nor in that group: it cannot give the control socket to it",
                me.uids[1]
            ))
        }
        _ => Ok(()),
    }
}

/// A number above the hard limit can only be set by root.
fn max_files(cfg: &Config, root: bool) -> Result<(), String> {
    let limits = crate::sys::rlimit::open_files_limits().map_err(|e| e.to_string())?;
    match (cfg.max_files, limits.hard) {
        (Some(n), Some(hard)) if n > hard && !root => Err(format!(
            "above the hard limit {hard} (ulimit -Hn), which only root may raise"
        )),
        _ => Ok(()),
    }
}

/// What `ENVOY_CHROOT` needs and what it contradicts, as (key, value, reason).
fn chroot_contradictions(
    cfg: &Config,
    account: Option<&Account>,
    root: bool,
) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if cfg.chroot.is_empty() {
        return out;
    }
    let dir = Path::new(&cfg.chroot);
    let mut refuse = |key, value: &str, why: String| out.push((key, value.to_string(), why));
    let chroot = cfg.chroot.as_str();
    if account.is_none() {
        refuse(
            "ENVOY_CHROOT",
            chroot,
            "needs ENVOY_USER: a process that stays root can leave a chroot".into(),
        );
    } else if dir == Path::new("/") {
        refuse(
            "ENVOY_CHROOT",
            chroot,
            "is / already: leave ENVOY_CHROOT empty".into(),
        );
    } else if !dir.is_dir() {
        refuse("ENVOY_CHROOT", chroot, "not a directory".into());
    } else if !root && !can_chroot() {
        refuse(
            "ENVOY_CHROOT",
            chroot,
            "the workers chroot before switching users: start sluice as root (or with CAP_SYS_CHROOT)".into(),
        );
    }
    if let Target::File(path) = &cfg.log_target {
        refuse(
            "ENVOY_LOG_TARGET",
            &path.display().to_string(),
            "workers inside ENVOY_CHROOT could not reopen a file (rotation): use stderr or syslog"
                .into(),
        );
    }
    // Workers read these again on every reload, from inside the chroot.
    for key in ["ENVOY_CONFIG_FILE", "ENVOY_ROUTES_FILE"] {
        let value = entry(cfg, key).trim();
        if value.is_empty() || in_chroot(cfg, value).is_file() {
            continue;
        }
        refuse(
            key,
            value,
            format!(
                "workers re-read it on reload inside ENVOY_CHROOT, where {} does not exist: copy it there",
                in_chroot(cfg, value).display()
            ),
        );
    }
    out
}

/// The value `key` was loaded from.
fn entry<'a>(cfg: &'a Config, key: &str) -> &'a str {
    cfg.entries
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or("", |(_, v, _)| v.as_str())
}

#[cfg(target_os = "linux")]
fn can_chroot() -> bool {
    use crate::sys::credentials::{cap, capabilities};
    capabilities().is_ok_and(|c| c.permitted & cap::bit(cap::SYS_CHROOT) != 0)
}

#[cfg(not(target_os = "linux"))]
fn can_chroot() -> bool {
    false
}

/// [`writable_dir`], and with `acc` (root about to switch): what it created is given to
/// that user, and the user must be able to write in it.
fn writable_dir_for(dir: &Path, acc: Option<&Account>) -> Result<(), String> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
        .map(Path::to_path_buf)
        .collect();
    if let (Some(acc), Some(top)) = (acc, missing.last()) {
        // Nothing is created where the user could not reach it anyway.
        let above = match top.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        usable_by(above, acc, false)?;
    }
    writable_dir(&dir.to_string_lossy())?;
    let Some(acc) = acc else { return Ok(()) };
    for created in missing.iter().rev() {
        give(created, acc)?;
    }
    usable_by(dir, acc, true).map_err(|e| format!("{e}: {}", give_it(acc)))
}

/// A log file the switched processes append to and reopen: created for `acc` if missing.
fn log_file_for(path: &Path, acc: &Account) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_err() {
        std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| format!("cannot create: {e}"))?;
        give(path, acc)?;
    }
    usable_by(path, acc, true).map_err(|e| format!("{e}: {}", give_it(acc)))
}

/// Gives what a check just created to `acc`.
fn give(path: &Path, acc: &Account) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(acc.uid), Some(acc.gid))
        .map_err(|e| format!("cannot give {} to {}: {e}", path.display(), acc.user))
}

/// Whether `acc` (its user, and its group only: the switched processes keep no other) may
/// reach `path` and, with `write`, write it (a directory: create files in it), by the mode
/// bits of the path and of every directory above it. ACLs are not read.
fn usable_by(path: &Path, acc: &Account, write: bool) -> Result<(), String> {
    let who = format!("user {} (uid {}, gid {})", acc.user, acc.uid, acc.gid);
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve it: {e}"))?;
    for dir in real.ancestors().skip(1) {
        let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !allows(&m, acc, 0o1) {
            return Err(format!("{} is not searchable by {who}", dir.display()));
        }
    }
    let m = std::fs::metadata(&real).map_err(|e| e.to_string())?;
    let want = match (m.is_dir(), write) {
        (true, true) => 0o3,
        (true, false) => 0o1,
        (false, true) => 0o2,
        (false, false) => 0o4,
    };
    if allows(&m, acc, want) {
        return Ok(());
    }
    let what = match (m.is_dir(), write) {
        (_, true) => "writable",
        (true, false) => "searchable",
        (false, false) => "readable",
    };
    Err(format!("{} is not {what} by {who}", real.display()))
}

/// The fix to suggest for a path [`usable_by`] refused: sluice gives away only what it
/// creates.
fn give_it(acc: &Account) -> String {
    format!(
        "name one that does not exist yet (it is created for {}) or one that user may write",
        acc.user
    )
}

/// The permission `bits` (rwx, as 0o7) the owner, group or other class grants `acc`: the
/// first class that matches decides, as the kernel does.
fn allows(m: &std::fs::Metadata, acc: &Account, bits: u32) -> bool {
    if acc.uid == 0 {
        return true;
    }
    let shift = if m.uid() == acc.uid {
        6
    } else if m.gid() == acc.gid {
        3
    } else {
        0
    };
    (m.mode() >> shift) & bits == bits
}

/// A directory the process can write files in: created if missing, then a file written and
/// removed.
pub fn writable_dir(dir: &str) -> Result<(), String> {
    let p = Path::new(dir);
    match std::fs::metadata(p) {
        Ok(m) if !m.is_dir() => return Err("exists and is not a directory".into()),
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(p).map_err(|e| format!("cannot create: {e}"))?,
    }
    write_test(p).map_err(|e| format!("cannot write in it: {e}"))
}

/// What is at a control socket's path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPath {
    /// Nothing.
    Free,
    /// A socket nobody answers on: left by a process that died; it may be replaced.
    Stale,
    /// A socket a live process answers on.
    Live,
    /// Something else (a file, a directory, a link...): never removed.
    Other,
}

/// Looks at `path` without changing it (a live socket sees a connection open and close).
pub fn socket_path(path: &str) -> std::io::Result<SocketPath> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            Ok(match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => SocketPath::Live,
                Err(_) => SocketPath::Stale,
            })
        }
        Ok(_) => Ok(SocketPath::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SocketPath::Free),
        Err(e) => Err(e),
    }
}

/// The reason a control socket cannot be bound at a path that holds something else.
pub const NOT_A_SOCKET: &str =
    "exists and is not a socket; not removed (remove it or name another path)";

fn control_socket(path: &str) -> Result<(), (String, bool)> {
    let fail = |why: String| Err((why, false));
    if path.len() > MAX_SOCKET_PATH {
        return fail(format!(
            "longer than the {MAX_SOCKET_PATH} bytes a UNIX socket path may have"
        ));
    }
    match socket_path(path) {
        Err(e) => return fail(format!("cannot look at it: {e}")),
        Ok(SocketPath::Other) => return fail(NOT_A_SOCKET.into()),
        Ok(SocketPath::Live) => {
            return Err((
                "a live socket: another process (a running sluice?) serves it".into(),
                true,
            ))
        }
        Ok(SocketPath::Free | SocketPath::Stale) => {}
    }
    // Binding creates the socket (and replacing a stale one removes it) in its directory.
    let dir = match Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return fail(format!("{} is not a directory", dir.display())),
        Err(e) => return fail(format!("its directory {}: {e}", dir.display())),
    }
    write_test(dir).or_else(|e| fail(format!("cannot create it in {}: {e}", dir.display())))
}

fn bind_test(addr: SocketAddr) -> Result<(), (String, bool)> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err((format!("cannot bind: {e} (a running sluice?)"), true))
        }
        Err(e) => Err((format!("cannot bind: {e}"), false)),
    }
}

/// The supervisor writes `PATH.tmp` and renames it over `PATH`: both are tried, nothing kept.
fn pid_file(path: &str) -> Result<(), String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err("is a directory".into());
    }
    let tmp = format!("{path}.tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(b"0\n"));
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| format!("cannot write {tmp}: {e}"))
}

/// Creates, writes and removes a file of its own in `dir`.
fn write_test(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".sluice-write-test-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"sluice\n"));
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-preflight-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_directory_is_created_then_written_and_nothing_stays() {
        let d = scratch("dir");
        let cap = d.join("a/b");
        assert_eq!(writable_dir(cap.to_str().unwrap()), Ok(()));
        assert!(cap.is_dir());
        assert_eq!(std::fs::read_dir(&cap).unwrap().count(), 0);
        let file = d.join("file");
        std::fs::write(&file, "x").unwrap();
        let under_file = file.join("c");
        assert!(writable_dir(under_file.to_str().unwrap())
            .unwrap_err()
            .starts_with("cannot create: "));
        assert_eq!(
            writable_dir(file.to_str().unwrap()).unwrap_err(),
            "exists and is not a directory"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_control_socket_path_holding_a_file_is_refused_and_kept() {
        let d = scratch("sock");
        let file = d.join("ctl.sock");
        std::fs::write(&file, "precious").unwrap();
        let p = file.to_str().unwrap();
        assert_eq!(socket_path(p).unwrap(), SocketPath::Other);
        assert_eq!(control_socket(p), Err((NOT_A_SOCKET.to_string(), false)));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
        let live = d.join("live.sock");
        let l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert_eq!(
            socket_path(live.to_str().unwrap()).unwrap(),
            SocketPath::Live
        );
        assert!(
            control_socket(live.to_str().unwrap()).unwrap_err().1,
            "busy"
        );
        drop(l);
        assert_eq!(
            socket_path(live.to_str().unwrap()).unwrap(),
            SocketPath::Stale
        );
        assert_eq!(control_socket(live.to_str().unwrap()), Ok(()));
        let free = d.join("free.sock");
        assert_eq!(
            socket_path(free.to_str().unwrap()).unwrap(),
            SocketPath::Free
        );
        assert_eq!(control_socket(free.to_str().unwrap()), Ok(()));
        let nowhere = d.join("missing/ctl.sock");
        assert!(control_socket(nowhere.to_str().unwrap())
            .unwrap_err()
            .0
            .starts_with("its directory "));
        let long = format!("/tmp/{}", "x".repeat(MAX_SOCKET_PATH));
        assert!(control_socket(&long)
            .unwrap_err()
            .0
            .starts_with("longer than"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_metrics_address_in_use_is_busy_and_a_foreign_one_is_not() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = bind_test(held.local_addr().unwrap());
        assert!(r.unwrap_err().1, "in use: busy");
        // TEST-NET-1 is never a local address.
        let r = bind_test("192.0.2.1:9100".parse().unwrap());
        assert!(!r.unwrap_err().1);
        assert_eq!(bind_test("127.0.0.1:0".parse().unwrap()), Ok(()));
    }
}
