//! The user and group databases (`getpwnam_r`, `getgrnam_r`, through the system's NSS, so
//! LDAP or systemd's dynamic users resolve as `id` would) and this process's own ids
//! (`getresuid`, `getresgid`, `getgroups`). Reads only: nothing here changes an id.

use std::ffi::{CStr, CString};
use std::io;

/// A user as the password database gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its user id.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// Who this process is: real, effective and saved ids, and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// Real, effective, saved user id.
    pub uids: [u32; 3],
    /// Real, effective, saved group id.
    pub gids: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Ids {
    /// The effective user id is 0.
    pub fn is_root(&self) -> bool {
        self.uids[1] == 0
    }

    /// Every user id is `uid` and every group id `gid` (what a completed drop leaves).
    pub fn are(&self, uid: u32, gid: u32) -> bool {
        self.uids.iter().all(|&u| u == uid) && self.gids.iter().all(|&g| g == gid)
    }
}

/// The getpw*_r / getgr*_r scratch buffer: doubled on ERANGE up to this.
const MAX_BUFFER: usize = 1 << 20;

/// The user named `name`, `None` when the database has none.
pub fn user_named(name: &str) -> io::Result<Option<User>> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain old data; getpwnam_r fills it with pointers into `buf`,
        // which outlives every read of it below.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `buf` is
        // writable for its length, `pw` and `found` are ours.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => {
                return Ok(Some(User {
                    uid: pw.pw_uid,
                    gid: pw.pw_gid,
                }))
            }
            libc::ERANGE if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            // glibc says "not found" with these too when a source has no such entry.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The id of the group named `name`, `None` when the database has none.
pub fn group_named(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: group is plain old data; getgrnam_r fills it with pointers into `buf`.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as for getpwnam_r above.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(gr.gr_gid)),
            libc::ERANGE if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The name of group `gid` (for messages), `None` when the database has none.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: as in group_named.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `buf` is writable for its length; `gr` and `found` are ours.
        let rc = unsafe {
            libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        match rc {
            0 if found.is_null() || gr.gr_name.is_null() => return None,
            // SAFETY: gr_name points into `buf`, NUL-terminated by getgrgid_r.
            0 => {
                return Some(
                    unsafe { CStr::from_ptr(gr.gr_name) }
                        .to_string_lossy()
                        .into(),
                )
            }
            libc::ERANGE if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            _ => return None,
        }
    }
}

/// This process's ids now.
pub fn current() -> io::Result<Ids> {
    let (mut ru, mut eu, mut su) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: getresuid and getresgid write three ids each into variables we own.
    let ok = unsafe {
        libc::getresuid(&mut ru, &mut eu, &mut su) == 0
            && libc::getresgid(&mut rg, &mut eg, &mut sg) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    Ok(Ids {
        uids: [ru, eu, su],
        gids: [rg, eg, sg],
        groups: groups()?,
    })
}

fn groups() -> io::Result<Vec<u32>> {
    // SAFETY: with a size of 0, getgroups only returns how many groups there are.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    let mut out: Vec<libc::gid_t> = vec![0; len + 1];
    let cap = libc::c_int::try_from(out.len()).map_err(io::Error::other)?;
    // SAFETY: `out` is writable for `cap` entries.
    let n = unsafe { libc::getgroups(cap, out.as_mut_ptr()) };
    let Ok(len) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group_resolve_and_a_made_up_name_does_not() {
        assert_eq!(user_named("root").unwrap().map(|u| u.uid), Some(0));
        assert_eq!(
            group_named("root")
                .unwrap()
                .or(group_named("wheel").unwrap()),
            Some(0)
        );
        assert_eq!(user_named("no-such-user-sluice-test").unwrap(), None);
        assert_eq!(group_named("no-such-group-sluice-test").unwrap(), None);
        assert!(user_named("a\0b").is_err());
    }

    #[test]
    fn a_file_this_process_creates_is_owned_by_its_effective_ids() {
        use std::os::unix::fs::MetadataExt as _;
        let ids = current().unwrap();
        let p = std::env::temp_dir().join(format!("sluice-account-{}", std::process::id()));
        std::fs::write(&p, "x").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(m.uid(), ids.uids[1]);
        assert_eq!(ids.is_root(), m.uid() == 0);
    }
}
