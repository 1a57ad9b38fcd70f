//! `DiskActionCache`: action results persisted as files, so a restart keeps
//! them, with a bounded in-memory cache in front.
//!
//! Layout: `{root}/{instance dir}/{hash}-{size}`, each file an encoded
//! `ActionResult`, written to a temp file and renamed into place so a crash
//! never leaves a half-written entry. A file that does not decode is treated
//! as a miss and removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use prost::Message;
use reapi_core::proto::remote_execution::ActionResult;
use reapi_core::{ActionCache, Digest, Error, ErrorExt, Result};

use super::memory::MemoryActionCache;
use crate::instance_dir;

/// Memory for the cache in front of the files, by encoded result size.
const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

pub struct DiskActionCache {
    root: PathBuf,
    tmp: PathBuf,
    memory: MemoryActionCache,
}

impl DiskActionCache {
    /// Opens (creating) the cache under `root` and removes temp files a
    /// crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .with_context(|| format!("removing leftover temp files in {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("creating action cache directory {}", tmp.display()))?;
        Ok(DiskActionCache {
            root,
            tmp,
            memory: MemoryActionCache::new(DEFAULT_MEMORY_BYTES),
        })
    }

    /// Every stored entry, as (instance, action digest): a walk of the
    /// directory tree, for re-replication.
    pub fn list_entries(&self) -> Result<Vec<(String, Digest)>> {
        let mut entries = Vec::new();
        let dirs = std::fs::read_dir(&self.root)
            .with_context(|| format!("listing {}", self.root.display()))?;
        for dir in dirs.flatten() {
            let path = dir.path();
            if path == self.tmp || !path.is_dir() {
                continue;
            }
            let Some(instance) = dir.file_name().to_str().and_then(instance_dir::decode) else {
                continue;
            };
            let Ok(files) = std::fs::read_dir(&path) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                if let Some(digest) = name.to_str().and_then(Digest::parse_storage_name) {
                    entries.push((instance.clone(), digest));
                }
            }
        }
        Ok(entries)
    }

    fn entry_path(&self, instance: &str, digest: &Digest) -> Result<PathBuf> {
        let dir = instance_dir::encode_checked(instance)?;
        Ok(self.root.join(dir).join(digest.storage_name()))
    }
}

fn read_entry(path: &Path) -> Result<Option<ActionResult>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    match ActionResult::decode(bytes.as_slice()) {
        Ok(result) => Ok(Some(result)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "removing undecodable action cache entry");
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
    }
}

fn write_entry(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| Error::internal(format!("{} has no parent", path.display())))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        // The entry must be whole after a crash: data first, then the name.
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    Ok(())
}

#[async_trait]
impl ActionCache for DiskActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        if let Some(hit) = self.memory.lookup(instance, action_digest) {
            return Ok(Some((*hit).clone()));
        }
        let path = self.entry_path(instance, action_digest)?;
        let found = tokio::task::spawn_blocking(move || read_entry(&path))
            .await
            .map_err(|e| Error::internal(format!("action cache read task: {e}")))??;
        if let Some(result) = &found {
            self.memory
                .store(instance, action_digest, Arc::new(result.clone()));
        }
        Ok(found)
    }

    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        let path = self.entry_path(instance, action_digest)?;
        let tmp = self.tmp.clone();
        let bytes = result.encode_to_vec();
        tokio::task::spawn_blocking(move || write_entry(&tmp, &path, &bytes))
            .await
            .map_err(|e| Error::internal(format!("action cache write task: {e}")))?
            .with_context(|| format!("storing action result for {action_digest}"))?;
        self.memory
            .store(instance, action_digest, Arc::new(result.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> ActionResult {
        ActionResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn survives_restart_and_separates_instances() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of_bytes(b"action");
        {
            let cache = DiskActionCache::open(dir.path()).unwrap();
            cache.put("a/b", &d, &result(7)).await.unwrap();
            cache.put("", &d, &result(8)).await.unwrap();
        }
        let cache = DiskActionCache::open(dir.path()).unwrap();
        assert_eq!(cache.get("a/b", &d).await.unwrap().unwrap().exit_code, 7);
        assert_eq!(cache.get("", &d).await.unwrap().unwrap().exit_code, 8);
        assert!(cache.get("a", &d).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn corrupt_entry_is_a_miss_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of_bytes(b"action");
        let cache = DiskActionCache::open(dir.path()).unwrap();
        let path = cache.entry_path("", &d).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\xff\xff\xff not a proto").unwrap();
        assert!(cache.get("", &d).await.unwrap().is_none());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn cleans_temp_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/partial"), b"x").unwrap();
        DiskActionCache::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
