//! What the keys name on this machine, checked before anything binds: the capture directory,
//! the control socket's path, the metrics address and the pid file (the config and route
//! files are read by the load itself). `sluice run`, a standalone `sluice worker` and
//! `sluice check-config` call [`check`]; a problem names its key and its path.
//!
//! Checks leave nothing behind where they can: a directory named by a key is created if
//! missing (as the proxy would), a write test file is removed at once, a metrics bind test is
//! released, and nothing that exists is ever removed or replaced. The control socket's rule
//! (only a stale socket may be replaced) lives here too, so that the admin plane binding it
//! and the check agree.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::config::{Config, ConfigError};

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
    let mut out = Vec::new();
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
    if !cfg.control_socket.is_empty() && !inherited.control {
        let path = cfg.control_socket.as_str();
        push("ENVOY_CONTROL_SOCKET", path, control_socket(path));
    }
    if let (Some(addr), false) = (cfg.metrics_addr, inherited.metrics) {
        let listen = cfg.listen_addr();
        let r = if addr == listen && addr.port() != 0 {
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
        push(
            "ENVOY_CAPTURE_DIR",
            dir,
            writable_dir(dir).map_err(|e| (e, false)),
        );
    }
    if !cfg.pid_file.is_empty() {
        let path = cfg.pid_file.as_str();
        push(
            "ENVOY_PID_FILE",
            path,
            pid_file(path).map_err(|e| (e, false)),
        );
    }
    out
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
