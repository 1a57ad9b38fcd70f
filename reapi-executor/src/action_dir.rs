//! The per-action directory: `{work}/actions/{name}/` holding the input
//! root (`root/`), and the command's `stdout` and `stderr` files beside it
//! (outside the root, so no output path can name them).
//!
//! When actions run as another user than the server, the input root is
//! that user's, and the action directory stays the server's but can be
//! passed through by anyone (0755): the stdout and stderr files are
//! opened by the server and handed to the command.
//!
//! An [`ActionDir`] removes its directory when dropped, so the files go on
//! error and on cancel as well; the normal path calls
//! [`ActionDir::remove`] to wait for the removal. Dropping also raises the
//! cancel flag that long blocking work (laying out inputs) checks, so such
//! work stops instead of racing the removal.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reapi_core::{Error, ErrorExt, Result};

use crate::identity::give_to;

/// Set when the run that owns an action directory is gone.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// CANCELLED when the flag is raised.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::cancelled("the run was cancelled"));
        }
        Ok(())
    }
}

/// One action's private directory, removed when dropped.
#[derive(Debug)]
pub struct ActionDir {
    path: PathBuf,
    cancel: CancelFlag,
    removed: bool,
}

impl ActionDir {
    /// Creates `path` (which must not exist) and the empty input root in
    /// it, owned by `root_owner` when given (the user actions run as, when
    /// not the server's).
    pub fn create(path: PathBuf, root_owner: Option<(u32, u32)>) -> Result<ActionDir> {
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let dir = ActionDir {
            path,
            cancel: CancelFlag::default(),
            removed: false,
        };
        if root_owner.is_some() {
            // Whatever the umask, the action's user must get through.
            fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting the mode of {}", dir.path.display()))?;
        }
        let root = dir.input_root();
        fs::create_dir(&root)
            .and_then(|()| give_to(&root, root_owner))
            .with_context(|| format!("creating {}", root.display()))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the input tree is laid out and the command runs.
    pub fn input_root(&self) -> PathBuf {
        self.path.join("root")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.path.join("stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.path.join("stderr")
    }

    pub fn cancel_flag(&self) -> CancelFlag {
        self.cancel.clone()
    }

    /// Removes the directory and waits until it is gone.
    pub async fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.cancel.cancel();
        let path = self.path.clone();
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || remove_tree(&path))
            .await
            .map_err(|e| Error::internal(format!("removing {shown}: {e}")))?
            .with_context(|| format!("removing {shown}"))
    }
}

impl Drop for ActionDir {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        self.cancel.cancel();
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), "removing an action directory: {e}");
            }
        };
        // Off the async threads when there is a runtime to do it.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Removes a directory tree that may hold read-only directories (an action
/// may `chmod` its outputs), retrying a few times: a process being killed,
/// or input layout being stopped, may still add an entry meanwhile. A
/// missing tree is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => make_dirs_writable(path),
            Err(_) => std::thread::sleep(Duration::from_millis(20 * u64::from(attempt))),
        }
    }
}

/// Gives the owner full access to every directory under `path` (symlinks
/// are not followed), ignoring errors: what cannot be fixed shows up in the
/// next removal attempt.
fn make_dirs_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Empties `dir` of everything but keeps it (creating it when missing).
pub fn reset_dir(dir: &Path) -> Result<()> {
    remove_tree(dir).with_context(|| format!("cleaning {}", dir.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_trees_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("t");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), "x").unwrap();
        fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        remove_tree(&tree).unwrap();
    }

    #[tokio::test]
    async fn dropping_removes_and_cancels() {
        let base = tempfile::tempdir().unwrap();
        let dir = ActionDir::create(base.path().join("a"), None).unwrap();
        fs::write(dir.stdout_path(), "out").unwrap();
        let flag = dir.cancel_flag();
        let path = dir.path().to_owned();
        assert!(dir.input_root().is_dir());
        drop(dir);
        assert!(flag.is_cancelled());
        for _ in 0..200 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!path.exists());

        let dir = ActionDir::create(base.path().join("b"), None).unwrap();
        let path = dir.path().to_owned();
        dir.remove().await.unwrap();
        assert!(!path.exists());
    }
}
