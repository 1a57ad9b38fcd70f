//! Input tree materialisation: from an input root digest to files on disk.
//!
//! 1. [`fetch`]: fetch and check every `Directory` message (through a
//!    [`directory_cache`]), flatten the tree into a plan, and check that
//!    every file is in the CAS (FAILED_PRECONDITION listing what is not);
//! 2. [`place`]: create directories and symlinks and hardlink or copy files
//!    from the local disk store (executables from [`executables`]), on a
//!    blocking thread; hardlinks only when the action runs as a user that
//!    cannot write to them ([`crate::identity`]);
//! 3. stream the files the disk store does not hold from the CAS.

pub mod directory_cache;
pub mod executables;
pub mod fetch;
pub mod place;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use reapi_cas::store::DiskStore;
use reapi_core::{BlobStore, Digest, Error, Result};

use self::directory_cache::DirectoryCache;
use self::executables::ExecutableCache;
use self::fetch::TreeSource;
use self::place::{fetch_file, lay_out_local, LocalSource};
use crate::action_dir::CancelFlag;
use crate::identity::ActionIdentity;

/// Files streamed from the CAS at once.
const FILE_FETCH_CONCURRENCY: usize = 16;

/// Lays input trees out on disk; shared by all executors of a pool.
pub struct Materializer {
    cas: Arc<dyn BlobStore>,
    local: LocalSource,
    directories: DirectoryCache,
    allow_absolute_symlinks: bool,
}

impl Materializer {
    /// `cas` is where inputs come from; `disk`, when given, is the local
    /// disk store whose content files are hardlinked or copied (usually the
    /// local layer of `cas`); `executables` holds executable copies and must
    /// be on the same file system as the directories inputs are laid out
    /// in; `identity` says who the actions run as, which decides between
    /// hardlinks and copies and who owns the directories.
    pub fn new(
        cas: Arc<dyn BlobStore>,
        disk: Option<Arc<DiskStore>>,
        executables: ExecutableCache,
        identity: ActionIdentity,
        directory_cache_capacity: usize,
        allow_absolute_symlinks: bool,
    ) -> Self {
        Materializer {
            cas,
            local: LocalSource {
                disk,
                instance: String::new(),
                executables: Arc::new(executables),
                links_work: Arc::new(AtomicBool::new(true)),
                link_server_files: identity.may_link_server_files(),
                directory_owner: identity.directory_owner(),
            },
            directories: DirectoryCache::new(directory_cache_capacity),
            allow_absolute_symlinks,
        }
    }

    /// Lays out the tree `root_digest` of `instance` in `dest`, an existing
    /// empty directory (which the caller gives to the action's user). Stops
    /// early with CANCELLED when `cancel` is raised.
    pub async fn materialize(
        &self,
        instance: &str,
        root_digest: &Digest,
        dest: &Path,
        cancel: &CancelFlag,
    ) -> Result<()> {
        let plan = TreeSource {
            cas: self.cas.as_ref(),
            cache: &self.directories,
            instance,
            allow_absolute_symlinks: self.allow_absolute_symlinks,
        }
        .plan(*root_digest)
        .await?;
        tracing::debug!(
            directories = plan.directories.len(),
            files = plan.files.len(),
            symlinks = plan.symlinks.len(),
            "laying out the input tree"
        );

        let local = LocalSource {
            instance: instance.to_string(),
            ..self.local.clone()
        };
        let root = dest.to_path_buf();
        let flag = cancel.clone();
        let (plan, to_fetch) = tokio::task::spawn_blocking(move || {
            let to_fetch = lay_out_local(&root, &plan, &local, &flag);
            (plan, to_fetch)
        })
        .await
        .map_err(|e| Error::internal(format!("laying out the input tree: {e}")))?;
        let to_fetch = to_fetch?;

        futures::stream::iter(to_fetch)
            .map(|i| {
                let file = &plan.files[i];
                let path = dest.join(&file.path);
                async move {
                    cancel.check()?;
                    fetch_file(self.cas.as_ref(), instance, file, &path).await
                }
            })
            .buffer_unordered(FILE_FETCH_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Directory messages held in the cache.
    pub fn cached_directories(&self) -> usize {
        self.directories.len()
    }
}
