//! Puts an [`InputPlan`] on disk: directories (writable by the action, so
//! it can create outputs in them, and by the worker, so it can remove
//! them), symlinks exactly as given (never followed), and files,
//! read-only: 0444, or 0555 when executable.
//!
//! A file comes, in order of preference, from
//! 1. the local disk store's content file: a hardlink to it (executables:
//!    to an executable copy, see [`super::executables`]) when the action
//!    runs as a user that cannot write to or `chmod` those files (see
//!    [`crate::identity`]), otherwise a copy of it;
//! 2. a copy of that file, when linking fails (another file system, too
//!    many links to one inode);
//! 3. a stream from the CAS, when the disk store does not hold the blob.
//!
//! Copying costs a read and a write of every input byte per run (ext4 has
//! no reflinks; `copy_file_range` keeps it in the kernel), where a
//! hardlink costs one metadata write. It is the price of running actions
//! as the server's own user or as root: a hardlink would let an action
//! that writes to its input in place change the blob in the CAS for every
//! later reader.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use reapi_cas::store::DiskStore;
use reapi_core::{BlobStore, Error, ErrorExt, Result};
use tokio::io::AsyncWriteExt;
use tonic::Code;

use super::executables::{ExecutableCache, EXECUTABLE_MODE};
use super::fetch::{InputPlan, PlannedFile};
use crate::action_dir::CancelFlag;
use crate::identity::give_to;

/// Mode of input files that are not executable.
pub const READ_ONLY_MODE: u32 = 0o444;
/// Mode of input directories.
pub const DIRECTORY_MODE: u32 = 0o755;

pub fn file_mode(executable: bool) -> u32 {
    if executable {
        EXECUTABLE_MODE
    } else {
        READ_ONLY_MODE
    }
}

/// Where files can be linked from, owned so it can move to a blocking
/// thread.
#[derive(Clone)]
pub struct LocalSource {
    pub disk: Option<Arc<DiskStore>>,
    pub instance: String,
    pub executables: Arc<ExecutableCache>,
    /// Cleared after a cross-device link failure: the store is on another
    /// file system, so copying is all that works.
    pub links_work: Arc<AtomicBool>,
    /// Whether files the server owns may be hardlinked into input trees
    /// ([`crate::identity::ActionIdentity::may_link_server_files`]); when
    /// not, they are copied.
    pub link_server_files: bool,
    /// Who gets the directories created for the action, when not the
    /// server's user.
    pub directory_owner: Option<(u32, u32)>,
}

/// Creates the directories and symlinks of `plan` under `root` and every
/// file the local disk store can provide. Returns the indices (into
/// `plan.files`) of the files still to fetch from the CAS.
pub fn lay_out_local(
    root: &Path,
    plan: &InputPlan,
    source: &LocalSource,
    cancel: &CancelFlag,
) -> Result<Vec<usize>> {
    let mut builder = fs::DirBuilder::new();
    builder.mode(DIRECTORY_MODE);
    for dir in &plan.directories {
        cancel.check()?;
        let path = root.join(dir);
        builder
            .create(&path)
            .and_then(|()| give_to(&path, source.directory_owner))
            .with_context(|| format!("creating input directory {dir:?}"))?;
    }
    for link in &plan.symlinks {
        cancel.check()?;
        std::os::unix::fs::symlink(&link.target, root.join(&link.path)).with_context(|| {
            format!(
                "creating input symlink {:?} -> {:?}",
                link.path, link.target
            )
        })?;
    }
    let mut to_fetch = Vec::new();
    for (i, file) in plan.files.iter().enumerate() {
        cancel.check()?;
        let dest = root.join(&file.path);
        let placed = place_local(file, &dest, source)
            .with_context(|| format!("placing input file {:?} ({})", file.path, file.digest))?;
        if !placed {
            to_fetch.push(i);
        }
    }
    Ok(to_fetch)
}

/// Places one file from local sources; false when it must be fetched.
fn place_local(file: &PlannedFile, dest: &Path, source: &LocalSource) -> io::Result<bool> {
    let mode = file_mode(file.executable);
    if file.digest.is_empty_blob() {
        // The empty blob is never stored as a file.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dest)?;
        return Ok(true);
    }
    let Some(store_file) = source
        .disk
        .as_ref()
        .and_then(|disk| disk.blob_path(&source.instance, &file.digest))
    else {
        return Ok(false);
    };
    if !source.link_server_files {
        // The action could write to a link: copy.
        return copy_from_store(&store_file, dest, mode);
    }
    let linked = if !source.links_work.load(Ordering::Relaxed) {
        Err(io::Error::from_raw_os_error(libc::EXDEV))
    } else if file.executable {
        source.executables.link(&file.digest, &store_file, dest)
    } else {
        fs::hard_link(&store_file, dest)
    };
    let err = match linked {
        Ok(()) => return Ok(true),
        Err(e) => e,
    };
    match err.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::EMLINK) | Some(libc::EPERM) => {
            if err.raw_os_error() == Some(libc::EXDEV)
                && source.links_work.swap(false, Ordering::Relaxed)
            {
                tracing::warn!(
                    "the disk store and the work directory are on different file systems: \
                     inputs are copied, not hardlinked"
                );
            }
            copy_from_store(&store_file, dest, mode)
        }
        // The store's file went away (evicted), or was not in place yet
        // when another write of the same blob raced this link: fetch it,
        // which places it again once the store holds it.
        _ if err.kind() == io::ErrorKind::NotFound => Ok(false),
        _ => Err(err),
    }
}

/// Copies the store's file to `dest` with `mode`; false when the store no
/// longer holds it (evicted meanwhile: it is fetched through the CAS).
fn copy_from_store(store_file: &Path, dest: &Path, mode: u32) -> io::Result<bool> {
    match copy_with_mode(store_file, dest, mode) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !store_file.exists() => {
            let _ = fs::remove_file(dest);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn copy_with_mode(source: &Path, dest: &Path, mode: u32) -> io::Result<()> {
    let _ = fs::remove_file(dest);
    fs::copy(source, dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
}

/// Streams one file from the CAS into `dest` (which must not exist).
pub async fn fetch_file(
    cas: &dyn BlobStore,
    instance: &str,
    file: &PlannedFile,
    dest: &Path,
) -> Result<()> {
    let digest = file.digest;
    let missing = |e: Error| {
        if e.code() == Code::NotFound {
            Error::missing_blobs(&[digest])
        } else {
            e
        }
    };
    let mut stream = cas
        .read(instance, &digest, 0, None)
        .await
        .map_err(missing)?;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(missing)?;
        written += chunk.len() as u64;
        if written > digest.size() {
            break;
        }
        out.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    if written != digest.size() {
        return Err(Error::internal(format!(
            "the CAS returned {written} bytes for blob {digest}"
        )));
    }
    out.flush()
        .await
        .with_context(|| format!("writing {}", dest.display()))?;
    drop(out);
    tokio::fs::set_permissions(dest, fs::Permissions::from_mode(file_mode(file.executable)))
        .await
        .with_context(|| format!("setting the mode of {}", dest.display()))
}
