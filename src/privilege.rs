//! Who sluice's processes are and what they may do (README "Running with least
//! privilege"). Every socket is bound as sluice was started; then:
//!
//! * a worker, once it holds its sockets, becomes the account `ENVOY_USER` / `ENVOY_GROUP`
//!   name ([`drop_worker`]): into `ENVOY_CHROOT` first when set, then `setgroups` (the group
//!   only), `setgid`, `setuid`, in that order; no capability left (Linux: bounding set
//!   emptied where it may be, ambient cleared, every set zero) and `no_new_privs`;
//! * on Linux, the supervisor started as root becomes the same account keeping only
//!   CAP_NET_BIND_SERVICE (and CAP_SYS_CHROOT when its workers chroot), ambient too, so that
//!   the binary an upgrade starts can bind a new address ([`switch_supervisor`]); on
//!   FreeBSD, which has no capabilities to keep one privilege with, it stays root;
//! * the open-file limit is set before the configuration's `auto` values count on it
//!   ([`set_open_files`]), and the control socket's owner and mode are decided here
//!   ([`control_socket_ownership`]).
//!
//! Nothing here raises a privilege. A step that fails is an error naming its key, and the
//! caller stops (exit 2) rather than run with more than it was asked to keep. Names are
//! looked up when a process starts, before any chroot; the configuration keeps the names.

use std::fmt;
use std::io;
use std::path::Path;

use log::info;

use crate::config::{Config, ConfigError};
use crate::sys::account::{self, Ids};
use crate::sys::credentials;
use crate::sys::rlimit;

/// The user and group the processes switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// ENVOY_USER.
    pub user: String,
    /// Its user id.
    pub uid: u32,
    /// ENVOY_GROUP, or the user's own group's name (its number when it has none).
    pub group: String,
    /// The group id.
    pub gid: u32,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user={} uid={} gid={}", self.user, self.uid, self.gid)
    }
}

fn refused(key: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The account `ENVOY_USER` and `ENVOY_GROUP` name, looked up now; `None` without
/// `ENVOY_USER`. A name the databases do not know is refused, naming its key.
pub fn account(cfg: &Config) -> Result<Option<Account>, ConfigError> {
    if cfg.user.is_empty() {
        if !cfg.group.is_empty() {
            return Err(refused(
                "ENVOY_GROUP",
                &cfg.group,
                "needs ENVOY_USER: a group is only switched to with a user",
            ));
        }
        return Ok(None);
    }
    let lookup = |e: io::Error| format!("cannot look it up: {e}");
    let user = account::user_named(&cfg.user)
        .map_err(|e| refused("ENVOY_USER", &cfg.user, lookup(e)))?
        .ok_or_else(|| refused("ENVOY_USER", &cfg.user, "no such user"))?;
    let (group, gid) = if cfg.group.is_empty() {
        let name = account::group_name(user.gid).unwrap_or_else(|| user.gid.to_string());
        (name, user.gid)
    } else {
        let gid = account::group_named(&cfg.group)
            .map_err(|e| refused("ENVOY_GROUP", &cfg.group, lookup(e)))?
            .ok_or_else(|| refused("ENVOY_GROUP", &cfg.group, "no such group"))?;
        (cfg.group.clone(), gid)
    };
    Ok(Some(Account {
        user: cfg.user.clone(),
        uid: user.uid,
        group,
        gid,
    }))
}

/// The group `ENVOY_CONTROL_GROUP` names, looked up now; `None` when empty.
pub fn control_group(cfg: &Config) -> Result<Option<u32>, ConfigError> {
    if cfg.control_group.is_empty() {
        return Ok(None);
    }
    let name = &cfg.control_group;
    account::group_named(name)
        .map_err(|e| {
            refused(
                "ENVOY_CONTROL_GROUP",
                name,
                format!("cannot look it up: {e}"),
            )
        })?
        .map(Some)
        .ok_or_else(|| refused("ENVOY_CONTROL_GROUP", name, "no such group"))
}

/// Who a control socket is given to once bound, and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// The owner (`None`: whoever bound it).
    pub uid: Option<u32>,
    /// The group (`None`: as created).
    pub gid: Option<u32>,
    /// 0600, or 0660 for a control group.
    pub mode: u32,
}

impl Default for Ownership {
    fn default() -> Ownership {
        Ownership {
            uid: None,
            gid: None,
            mode: 0o600,
        }
    }
}

/// The control socket belongs to the service user (so that the processes can still remove
/// it once they switched) and, with `ENVOY_CONTROL_GROUP`, to that group with mode 0660:
/// its members use `sluice ctl` without root.
pub fn control_socket_ownership(cfg: &Config) -> Result<Ownership, ConfigError> {
    let account = account(cfg)?;
    let group = control_group(cfg)?;
    Ok(Ownership {
        uid: account.as_ref().map(|a| a.uid),
        gid: group.or(account.as_ref().map(|a| a.gid)),
        mode: if group.is_some() { 0o660 } else { 0o600 },
    })
}

/// `e` from `step`, said of `key`=`value`.
fn failed(key: &str, value: &str, step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{key}={value}: {step}: {e}"))
}

/// Makes this worker process the configured account, for good: it must hold every socket
/// and descriptor it will use already (it can open nothing outside the chroot afterwards,
/// nor anything the account may not). Without `ENVOY_USER`, nothing changes. Already that
/// account (started so by systemd, or by a supervisor that switched): only the capabilities
/// go. An error names the key of the step that failed; the caller must exit.
pub fn drop_worker(cfg: &Config) -> io::Result<()> {
    let Some(acc) = account(cfg).map_err(|e| io::Error::other(e.to_string()))? else {
        return Ok(());
    };
    let before = account::current()?;
    #[cfg(target_os = "linux")]
    lose_inherited_capabilities(&acc)?;
    if !cfg.chroot.is_empty() {
        credentials::change_root(Path::new(&cfg.chroot))
            .map_err(|e| failed("ENVOY_CHROOT", &cfg.chroot, "chroot", e))?;
    }
    become_account(&acc, &before)?;
    #[cfg(target_os = "linux")]
    credentials::set_capabilities(credentials::CapSets::default())
        .map_err(|e| failed("ENVOY_USER", &acc.user, "capset", e))?;
    credentials::no_new_privs().map_err(|e| failed("ENVOY_USER", &acc.user, "no_new_privs", e))?;
    verify(&acc, 0)?;
    let chroot = if cfg.chroot.is_empty() {
        String::new()
    } else {
        format!(" chroot={}", cfg.chroot)
    };
    info!("privileges dropped {acc}{chroot}");
    Ok(())
}

/// The sets a supervisor that switched left to its workers through exec (ambient) and the
/// bounding set, where the process may change it (it holds CAP_SETPCAP: it is root).
#[cfg(target_os = "linux")]
fn lose_inherited_capabilities(acc: &Account) -> io::Result<()> {
    let caps = credentials::capabilities()?;
    if caps.effective & credentials::cap::bit(credentials::cap::SETPCAP) != 0 {
        credentials::limit_bounding_set(0)
            .map_err(|e| failed("ENVOY_USER", &acc.user, "bounding set", e))?;
    }
    credentials::clear_ambient().map_err(|e| failed("ENVOY_USER", &acc.user, "ambient set", e))
}

/// setgroups, setgid, setuid, in that order (the groups can only change while still root),
/// unless the process is that account already.
fn become_account(acc: &Account, before: &Ids) -> io::Result<()> {
    if before.are(acc.uid, acc.gid) {
        return Ok(());
    }
    credentials::set_groups(&[acc.gid])
        .map_err(|e| failed("ENVOY_GROUP", &acc.group, "setgroups", e))?;
    credentials::set_gid(acc.gid).map_err(|e| failed("ENVOY_GROUP", &acc.group, "setgid", e))?;
    credentials::set_uid(acc.uid).map_err(|e| failed("ENVOY_USER", &acc.user, "setuid", e))
}

/// Checked, not assumed: every id is the account's, the capabilities are `caps` at most,
/// and root cannot be had back.
fn verify(acc: &Account, caps: u64) -> io::Result<()> {
    let now = account::current()?;
    let wrong = |what: String| {
        Err(failed(
            "ENVOY_USER",
            &acc.user,
            "check",
            io::Error::other(what),
        ))
    };
    if !now.are(acc.uid, acc.gid) {
        return wrong(format!(
            "ids are {:?} / {:?} after the switch",
            now.uids, now.gids
        ));
    }
    #[cfg(target_os = "linux")]
    {
        let c = credentials::capabilities()?;
        if (c.effective | c.permitted | c.inheritable) & !caps != 0 {
            return wrong(format!("capabilities left: {c:?}"));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = caps;
    if acc.uid != 0 && credentials::set_uid(0).is_ok() {
        return wrong("setuid(0) succeeded".into());
    }
    Ok(())
}

/// The capabilities a supervisor that switched keeps: binding (an upgrade may bind a new
/// address below 1024), and chroot when its workers need it.
#[cfg(target_os = "linux")]
fn supervisor_keeps(cfg: &Config) -> u64 {
    use credentials::cap;
    let chroot = if cfg.chroot.is_empty() {
        0
    } else {
        cap::bit(cap::SYS_CHROOT)
    };
    cap::bit(cap::NET_BIND_SERVICE) | chroot
}

/// On Linux, a supervisor started as root becomes the configured account once every socket
/// is bound and before any worker starts, keeping only what binding at upgrade time needs
/// (permitted, effective, inheritable and ambient, so that the upgraded binary it execs
/// has it; the bounding set holds nothing else). Started as that account already, it only
/// lets go of capabilities beyond those. Without `ENVOY_USER`, nothing changes.
#[cfg(target_os = "linux")]
pub fn switch_supervisor(cfg: &Config) -> io::Result<()> {
    let Some(acc) = account(cfg).map_err(|e| io::Error::other(e.to_string()))? else {
        return Ok(());
    };
    let keep = supervisor_keeps(cfg);
    let before = account::current()?;
    let fail = |step: &'static str| {
        let user = acc.user.clone();
        move |e| failed("ENVOY_USER", &user, step, e)
    };
    if !before.is_root() && !before.are(acc.uid, acc.gid) {
        let e = io::Error::other(format!("sluice runs as uid {}, not root", before.uids[1]));
        return Err(fail("switch")(e));
    }
    if before.is_root() {
        credentials::limit_bounding_set(keep).map_err(fail("bounding set"))?;
        credentials::keep_capabilities_across_setuid(true).map_err(fail("keepcaps"))?;
        become_account(&acc, &before)?;
        credentials::keep_capabilities_across_setuid(false).map_err(fail("keepcaps"))?;
    }
    let held = credentials::capabilities()?.permitted & keep;
    credentials::set_capabilities(credentials::CapSets {
        effective: held,
        permitted: held,
        inheritable: held,
    })
    .map_err(fail("capset"))?;
    credentials::clear_ambient().map_err(fail("ambient set"))?;
    for c in (0..64).filter(|c| held & credentials::cap::bit(*c) != 0) {
        credentials::raise_ambient(c).map_err(fail("ambient set"))?;
    }
    credentials::no_new_privs().map_err(fail("no_new_privs"))?;
    if before.is_root() {
        verify(&acc, keep)?;
        info!(
            "supervisor privileges dropped {acc} kept={}",
            cap_names(held)
        );
    }
    Ok(())
}

/// See the Linux version: elsewhere (FreeBSD) there is no capability to keep binding with,
/// so the supervisor stays as it was started; its workers switch.
#[cfg(not(target_os = "linux"))]
pub fn switch_supervisor(cfg: &Config) -> io::Result<()> {
    if let Some(acc) = account(cfg).map_err(|e| io::Error::other(e.to_string()))? {
        info!(
            "supervisor keeps its privileges (no capabilities here) workers_user={}",
            acc.user
        );
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn cap_names(set: u64) -> String {
    use credentials::cap;
    let names = [
        (cap::NET_BIND_SERVICE, "cap_net_bind_service"),
        (cap::SYS_CHROOT, "cap_sys_chroot"),
    ];
    let out: Vec<&str> = names
        .iter()
        .filter(|(c, _)| set & cap::bit(*c) != 0)
        .map(|(_, n)| *n)
        .collect();
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

/// The open-file limits before and after [`set_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesChange {
    /// Before.
    pub was: rlimit::OpenFiles,
    /// Now.
    pub now: rlimit::OpenFiles,
}

impl fmt::Display for OpenFilesChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
        write!(
            f,
            "soft={} hard={} was={}",
            n(self.now.soft),
            n(self.now.hard),
            n(self.was.soft)
        )
    }
}

/// Sets the open-file limit `ENVOY_MAX_FILES` asks for, once, at start: `hard` raises the
/// soft limit to the hard one (an unlimited hard limit leaves both as they are); a number
/// becomes the soft limit, and the hard one too when it is above it (which needs root).
/// Children inherit it, so a supervisor's workers count on it without setting it.
pub fn set_open_files(cfg: &Config) -> Result<OpenFilesChange, ConfigError> {
    let value = cfg
        .max_files
        .map_or_else(|| "hard".into(), |n| n.to_string());
    let fail = |e: io::Error| refused("ENVOY_MAX_FILES", &value, format!("setrlimit: {e}"));
    let was = rlimit::open_files_limits().map_err(fail)?;
    let target = match (cfg.max_files, was.hard) {
        (None, Some(hard)) => Some((hard, Some(hard))),
        (None, None) => None,
        (Some(n), Some(hard)) if n > hard => Some((n, Some(n))),
        (Some(n), hard) => Some((n, hard)),
    };
    if let Some((soft, hard)) = target {
        if (Some(soft), hard) != (was.soft, was.hard) {
            rlimit::set_open_files_limits(soft, hard).map_err(fail)?;
        }
    }
    let now = rlimit::open_files_limits().map_err(fail)?;
    Ok(OpenFilesChange { was, now })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layers;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let mut env: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("ENVOY_UPSTREAM".into(), "127.0.0.1:1".into());
        Layers {
            env,
            set: Default::default(),
        }
        .load()
        .unwrap()
    }

    #[test]
    fn names_resolve_or_are_refused_with_their_key() {
        assert_eq!(account(&cfg(&[])), Ok(None));
        let root = account(&cfg(&[("ENVOY_USER", "root")])).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.to_string(), "user=root uid=0 gid=0");
        let e = account(&cfg(&[("ENVOY_USER", "no-such-user-sluice")])).unwrap_err();
        assert_eq!((e.key, e.reason.as_str()), ("ENVOY_USER", "no such user"));
        let e = account(&cfg(&[
            ("ENVOY_USER", "root"),
            ("ENVOY_GROUP", "no-such-group-sluice"),
        ]))
        .unwrap_err();
        assert_eq!((e.key, e.reason.as_str()), ("ENVOY_GROUP", "no such group"));
        let e = account(&cfg(&[("ENVOY_GROUP", "root")])).unwrap_err();
        assert_eq!(e.key, "ENVOY_GROUP");
        let e =
            control_group(&cfg(&[("ENVOY_CONTROL_GROUP", "no-such-group-sluice")])).unwrap_err();
        assert_eq!(e.key, "ENVOY_CONTROL_GROUP");
    }

    #[test]
    fn the_control_socket_is_the_users_and_the_groups_with_0660() {
        assert_eq!(
            control_socket_ownership(&cfg(&[])),
            Ok(Ownership::default())
        );
        let o = control_socket_ownership(&cfg(&[("ENVOY_USER", "root")])).unwrap();
        assert_eq!((o.uid, o.gid, o.mode), (Some(0), Some(0), 0o600));
        let o = control_socket_ownership(&cfg(&[("ENVOY_CONTROL_GROUP", "root")])).unwrap();
        assert_eq!((o.uid, o.gid, o.mode), (None, Some(0), 0o660));
    }

    #[test]
    fn without_a_user_a_worker_changes_nothing() {
        let before = account::current().unwrap();
        drop_worker(&cfg(&[])).unwrap();
        switch_supervisor(&cfg(&[])).unwrap();
        assert_eq!(account::current().unwrap(), before);
    }

    #[test]
    fn the_open_file_limit_as_it_is_is_kept() {
        let now = rlimit::open_files_limits().unwrap();
        let Some(soft) = now.soft else { return };
        let change = set_open_files(&cfg(&[("ENVOY_MAX_FILES", &soft.to_string())])).unwrap();
        assert_eq!(change.now, now);
        assert_eq!(change.was, now);
        assert!(change
            .to_string()
            .starts_with(&format!("soft={soft} hard=")));
    }
}
