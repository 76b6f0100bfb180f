//! `--user` / `--group`: run unprivileged once everything that needs root (portals on
//! port 3260, the management socket under /run, block devices) is open.

use std::ffi::CString;

use anyhow::{bail, Context};

/// The identity to switch to, resolved from names at startup so that a typo fails
/// before anything is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// None: keep the user (only `--group` given).
    pub uid: Option<libc::uid_t>,
    pub gid: libc::gid_t,
}

/// Resolve `--user` / `--group`. With only `--user`, the group is the user's primary
/// group. Must run before other threads exist (getpwnam/getgrnam are not reentrant).
pub fn resolve(user: Option<&str>, group: Option<&str>) -> anyhow::Result<Option<Identity>> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let mut uid = None;
    let mut gid = None;
    if let Some(name) = user {
        let c = CString::new(name).context("--user: name contains a NUL byte")?;
        // SAFETY: c is a valid C string; the returned record is read before any other
        // passwd lookup can overwrite it.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if pw.is_null() {
            bail!("--user {name}: no such user");
        }
        // SAFETY: pw is non-null and points to libc's static passwd record.
        let (u, g) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        uid = Some(u);
        gid = Some(g);
    }
    if let Some(name) = group {
        let c = CString::new(name).context("--group: name contains a NUL byte")?;
        // SAFETY: as for getpwnam above.
        let gr = unsafe { libc::getgrnam(c.as_ptr()) };
        if gr.is_null() {
            bail!("--group {name}: no such group");
        }
        // SAFETY: gr is non-null and points to libc's static group record.
        gid = Some(unsafe { (*gr).gr_gid });
    }
    Ok(Some(Identity {
        uid,
        gid: gid.expect("set by --user or --group"),
    }))
}

/// Switch to `id` for good: supplementary groups, then group, then user (the other
/// order would lose the right to change groups). glibc applies each call to every
/// thread of the process. Any failure, or a way back to root afterwards, is an error:
/// a daemon asked to drop privileges must not carry on with them.
pub fn drop_to(id: Identity) -> anyhow::Result<()> {
    let gid = id.gid;
    // SAFETY: plain syscalls on integers and a one-element array that outlives them.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            bail!("setgroups({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            bail!("setgid({gid}): {}", std::io::Error::last_os_error());
        }
        if let Some(uid) = id.uid {
            if libc::setuid(uid) != 0 {
                bail!("setuid({uid}): {}", std::io::Error::last_os_error());
            }
        }
    }
    // SAFETY: getters without preconditions.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if rgid != gid || egid != gid || id.uid.is_some_and(|u| ruid != u || euid != u) {
        bail!("privileges were not dropped (uid {ruid}/{euid}, gid {rgid}/{egid})");
    }
    // SAFETY: as above; this must fail for an unprivileged user.
    if id.uid.is_some_and(|u| u != 0) && unsafe { libc::setuid(0) } == 0 {
        bail!("could regain root after dropping privileges");
    }
    log::info!("running as uid {ruid} gid {rgid}");
    Ok(())
}
