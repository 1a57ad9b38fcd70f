//! Fetches an input tree's `Directory` messages, checks each one and
//! flattens the tree into an [`InputPlan`]: every directory, file and
//! symlink with its path from the input root.
//!
//! The walk is breadth first, one level at a time, with the directories of
//! a level fetched concurrently. Directories missing from the CAS are
//! collected rather than failing on the first, so the FAILED_PRECONDITION
//! names them all; then the files are checked with one `find_missing`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use reapi_core::input_tree::validate_directory;
use reapi_core::proto::remote_execution::Directory;
use reapi_core::{BlobStore, Digest, DigestFunction, Error, ErrorExt, Result};
use tonic::Code;

use super::directory_cache::DirectoryCache;

/// Largest `Directory` message we fetch (a directory of ~500k entries).
pub const MAX_DIRECTORY_BYTES: u64 = 64 << 20;

/// Most entries (directories, files, symlinks) one input tree may expand
/// to. Directories can be shared, so a small set of messages can describe
/// an enormous tree; this stops such a tree before it fills the disk.
pub const MAX_TREE_ENTRIES: usize = 4_000_000;

/// Directories fetched at once.
const FETCH_CONCURRENCY: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: String,
    pub digest: Digest,
    pub executable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSymlink {
    pub path: String,
    pub target: String,
}

/// The input tree, flattened. Paths are relative to the input root, use
/// `/`, and consist of names checked by `validate_directory`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputPlan {
    /// Every directory below the root, parents before children.
    pub directories: Vec<String>,
    pub files: Vec<PlannedFile>,
    pub symlinks: Vec<PlannedSymlink>,
}

impl InputPlan {
    fn entries(&self) -> usize {
        self.directories.len() + self.files.len() + self.symlinks.len()
    }
}

/// Where the walk gets `Directory` messages.
pub struct TreeSource<'a> {
    pub cas: &'a dyn BlobStore,
    pub cache: &'a DirectoryCache,
    pub instance: &'a str,
    pub allow_absolute_symlinks: bool,
}

impl TreeSource<'_> {
    /// Fetches and flattens the tree under `root`, then checks that every
    /// file is in the CAS. Missing blobs: FAILED_PRECONDITION listing them.
    pub async fn plan(&self, root: Digest) -> Result<InputPlan> {
        let mut plan = InputPlan::default();
        let mut missing = Vec::new();
        let mut level: Vec<(String, Digest)> = vec![(String::new(), root)];
        while !level.is_empty() {
            let fetched = self.fetch_level(&level).await?;
            let mut next = Vec::new();
            for (path, digest) in level {
                let Some(dir) = fetched.get(&digest).cloned().flatten() else {
                    missing.push(digest);
                    continue;
                };
                add_directory(
                    &mut plan,
                    &mut next,
                    &path,
                    digest.function(),
                    &dir,
                    self.allow_absolute_symlinks,
                )
                .with_context(|| format!("input directory {path:?} ({digest})"))?;
                if plan.entries() > MAX_TREE_ENTRIES {
                    return Err(Error::invalid_argument(format!(
                        "the input tree has more than {MAX_TREE_ENTRIES} entries"
                    )));
                }
            }
            level = next;
        }

        let mut files: Vec<Digest> = plan.files.iter().map(|f| f.digest).collect();
        files.sort_unstable();
        files.dedup();
        missing.extend(
            self.cas
                .find_missing(self.instance, &files)
                .await
                .context("checking the input files are in the CAS")?,
        );
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(Error::missing_blobs(&missing));
        }
        Ok(plan)
    }

    /// The directories of one level, `None` for those not in the CAS.
    async fn fetch_level(
        &self,
        level: &[(String, Digest)],
    ) -> Result<HashMap<Digest, Option<Arc<Directory>>>> {
        let mut unique: Vec<Digest> = level.iter().map(|(_, d)| *d).collect();
        unique.sort_unstable();
        unique.dedup();
        futures::stream::iter(unique)
            .map(|digest| async move { Ok((digest, self.fetch(&digest).await?)) })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn fetch(&self, digest: &Digest) -> Result<Option<Arc<Directory>>> {
        if let Some(dir) = self.cache.get(self.instance, digest) {
            return Ok(Some(dir));
        }
        if digest.size() > MAX_DIRECTORY_BYTES {
            return Err(Error::invalid_argument(format!(
                "Directory {digest} is larger than the {MAX_DIRECTORY_BYTES} bytes allowed"
            )));
        }
        let bytes = match self.cas.get(self.instance, digest).await {
            Ok(bytes) => bytes,
            Err(e) if e.code() == Code::NotFound => return Ok(None),
            Err(e) => return Err(e.context(format!("fetching Directory {digest}"))),
        };
        let dir = Directory::decode(bytes).map_err(|e| {
            Error::invalid_argument(format!(
                "blob {digest} is not a valid Directory message: {e}"
            ))
        })?;
        let dir = Arc::new(dir);
        self.cache.insert(self.instance, digest, Arc::clone(&dir));
        Ok(Some(dir))
    }
}

/// Checks one directory at `path`, whose digest was made with `function`,
/// and adds its entries to the plan and its subdirectories to the next level.
fn add_directory(
    plan: &mut InputPlan,
    next: &mut Vec<(String, Digest)>,
    path: &str,
    function: DigestFunction,
    dir: &Directory,
    allow_absolute_symlinks: bool,
) -> Result<()> {
    validate_directory(dir, path, allow_absolute_symlinks)?;
    if !path.is_empty() {
        plan.directories.push(path.to_string());
    }
    for file in &dir.files {
        let digest = Digest::from_proto_field(function, file.digest.as_ref(), "digest")?;
        plan.files.push(PlannedFile {
            path: join(path, &file.name),
            digest,
            executable: file.is_executable,
        });
    }
    for link in &dir.symlinks {
        plan.symlinks.push(PlannedSymlink {
            path: join(path, &link.name),
            target: link.target.clone(),
        });
    }
    for child in &dir.directories {
        let digest = Digest::from_proto_field(function, child.digest.as_ref(), "digest")?;
        next.push((join(path, &child.name), digest));
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}
