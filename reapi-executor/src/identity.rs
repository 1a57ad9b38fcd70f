//! Who actions run as, and what that allows when laying out their inputs.
//!
//! Input files can be hardlinks to the local disk store's content files
//! (and to the executable copies) only if the action cannot write to them
//! or change their mode: a write through the link would change the blob
//! for every later reader. Those files are read-only (0444 or 0555) and
//! owned by the server's user, so that holds exactly when the action runs
//! under another uid that is not root (root ignores modes; an owner can
//! `chmod`). Otherwise inputs are copied.
//!
//! When actions run as another user, the directories they write in (every
//! directory of the input tree, the input root, the parents of output
//! paths) are given to that user, and the path to the input root must be
//! searchable by it.
//!
//! An identity is a `(uid, gid)` pair; `None` means "the server's own".
//! The sandbox that runs the commands and the pool that lays out their
//! inputs must agree on it (see [`crate::LocalExecutorConfig::run_as`]).

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use reapi_core::{ErrorExt, Result};

/// The uid and gid of `nobody` when the user database has no such user.
pub const NOBODY_FALLBACK: (u32, u32) = (65534, 65534);

/// The server's effective user and group.
pub fn server_identity() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The uid and gid of the user `name` in the user database.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `pwd` and `result` are out-parameters; `buf` outlives the
        // call and its length is passed along.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some((pwd.pw_uid, pwd.pw_gid));
    }
}

/// The uid and gid of `nobody` ([`NOBODY_FALLBACK`] when it is not in the
/// user database).
pub fn nobody() -> (u32, u32) {
    lookup_user("nobody").unwrap_or(NOBODY_FALLBACK)
}

/// The identity a server should run actions as: `nobody` when the server
/// runs as root (actions must not run as root, and must not run as the
/// owner of the store's files if those are to be hardlinked), otherwise
/// the server's own user (`None`; inputs are then copied).
pub fn default_run_as() -> Option<(u32, u32)> {
    if server_identity().0 == 0 {
        Some(nobody())
    } else {
        None
    }
}

/// What the identity actions run as means for laying out their inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionIdentity {
    run_as: Option<(u32, u32)>,
    server_uid: u32,
}

impl ActionIdentity {
    /// For actions running as `run_as` (`None`: as the server).
    pub fn new(run_as: Option<(u32, u32)>) -> Self {
        ActionIdentity {
            run_as,
            server_uid: server_identity().0,
        }
    }

    /// Whether input files may be hardlinks to files the server owns and
    /// made read-only (the disk store's, the executable copies): only when
    /// the action's uid is neither root nor the server's.
    pub fn may_link_server_files(&self) -> bool {
        matches!(self.run_as, Some((uid, _)) if uid != 0 && uid != self.server_uid)
    }

    /// The owner to give the directories the action writes in, when that
    /// is not the server's user (otherwise they stay the server's).
    pub fn directory_owner(&self) -> Option<(u32, u32)> {
        self.run_as.filter(|&(uid, _)| uid != self.server_uid)
    }
}

/// Gives `path` (a directory just created for the action) to `owner`, when
/// there is one.
pub fn give_to(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Whether the user `(uid, gid)`, with no supplementary groups, may search
/// (pass through) a directory with metadata `meta`.
fn searchable_by(meta: &fs::Metadata, (uid, gid): (u32, u32)) -> bool {
    let mode = meta.mode();
    if uid == 0 {
        return true;
    }
    if meta.uid() == uid {
        mode & 0o100 != 0
    } else if meta.gid() == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Makes sure the user `(uid, gid)` can reach `dir` (which must exist) by
/// its path: each directory on the way that it cannot search gets search
/// permission for others (`o+x`; not read, so it still cannot list it),
/// with a warning naming it. `dir` itself is included.
pub fn make_reachable(dir: &Path, user: (u32, u32)) -> Result<()> {
    let dir = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for path in ancestors {
        let meta = fs::metadata(path).with_context(|| format!("inspecting {}", path.display()))?;
        if searchable_by(&meta, user) {
            continue;
        }
        let mode = meta.permissions().mode() | 0o001;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| {
            format!(
                "letting uid {} reach the action directories through {}",
                user.0,
                path.display()
            )
        })?;
        tracing::warn!(
            path = %path.display(),
            uid = user.0,
            "added search permission for others (o+x) so actions can reach their directories"
        );
    }
    Ok(())
}

/// The name of the user with `uid`, for messages.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `lookup_user`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_non_root_user_may_share_server_files() {
        let (me, my_gid) = server_identity();
        assert!(!ActionIdentity::new(None).may_link_server_files());
        assert_eq!(ActionIdentity::new(None).directory_owner(), None);
        let same = ActionIdentity::new(Some((me, my_gid)));
        assert!(!same.may_link_server_files());
        assert_eq!(same.directory_owner(), None);
        assert!(!ActionIdentity::new(Some((0, 0))).may_link_server_files());
        let other = if me == 12345 { 12346 } else { 12345 };
        let other_id = ActionIdentity::new(Some((other, 7)));
        assert!(other_id.may_link_server_files());
        assert_eq!(other_id.directory_owner(), Some((other, 7)));
    }

    #[test]
    fn root_resolves_and_nobody_has_an_identity() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-here"), None);
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let (uid, _) = nobody();
        assert_ne!(uid, 0);
        match default_run_as() {
            Some((uid, _)) => {
                assert_eq!(server_identity().0, 0);
                assert_ne!(uid, 0);
            }
            None => assert_ne!(server_identity().0, 0),
        }
    }

    #[test]
    fn unsearchable_directories_on_the_way_get_o_plus_x() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("a/b");
        fs::create_dir_all(&deep).unwrap();
        fs::set_permissions(base.path().join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o750)).unwrap();
        let stranger = (54321, 54321);
        make_reachable(&deep, stranger).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&base.path().join("a")), 0o701);
        assert_eq!(mode(&deep), 0o751);
        // Nothing changes the second time.
        make_reachable(&deep, stranger).unwrap();
        assert_eq!(mode(&deep), 0o751);
    }
}
