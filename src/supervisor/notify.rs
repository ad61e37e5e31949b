//! systemd's readiness protocol (sd_notify), spoken without libsystemd.

/// Tells systemd (Type=notify, NotifyAccess=main: only the main process is heard, so after
/// an upgrade the old supervisor names its successor with MAINPID=) something, if it is
/// listening.
pub(super) fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    if path.to_string_lossy().starts_with('@') {
        return; // abstract sockets: not supported here; systemd also offers a path
    }
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(msg.as_bytes(), &path);
    }
}
