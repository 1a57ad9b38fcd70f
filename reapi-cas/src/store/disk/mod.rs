//! A blob store on the local disk: one read-only file per blob, a compact
//! in-memory index rebuilt from the directory tree on start, and LRU
//! eviction against a byte budget.
//!
//! # On disk
//!
//! ```text
//! {root}/cas/{instance}/{hh}/{hash}-{size}   content files, mode 0444
//! {root}/tmp/{hh}/{uuid}                     writes in progress
//! ```
//!
//! `{instance}` encodes the instance name as one path component with the
//! crate's [`crate::instance_dir`] (`@default` for the empty name; names
//! whose encoding exceeds 255 bytes are refused) and `{hh}` is the first two
//! hex digits of the hash. The directory tree is the only state: the index
//! is rebuilt from it by [`DiskStore::open`], which also deletes everything
//! in `tmp/` (writes cut off by a crash) and anything malformed under
//! `cas/`.
//!
//! # Writes
//!
//! A write streams into a temp file while its SHA-256 is computed, is
//! checked against the digest, `fdatasync`ed, made read-only and renamed
//! into place; then the shard directory is `fsync`ed.
//!
//! * The file sync before the rename is what makes "a name always holds its
//!   whole content" true after a power cut: the index is rebuilt from names
//!   without rehashing, so a name pointing at a half-written file would be
//!   served as a valid blob.
//! * The directory sync after the rename makes the success reply true after
//!   a power cut. Without it a crash could only lose blobs (clients upload
//!   them again), never corrupt them; it costs one more journal commit per
//!   write, which we pay so that a blob a client was told is stored stays
//!   stored.
//!
//! Content files are hardlink sources for action inputs (see
//! [`DiskStore::blob_path`]) and are never modified in place.
//!
//! # Index and eviction
//!
//! See `index.rs`: 44 bytes per entry in 64 mutex-guarded shards; with
//! hash-table slack 51 to 103 bytes per blob depending on where the count
//! falls between two table doublings (94 at 1 M blobs, measured). Every access
//! (`find_missing`, `get`, `read`, `blob_path`, a repeated write) refreshes
//! a blob's age. When a commit takes the used bytes over `max_bytes`, the
//! least recently used blobs are deleted until usage is under 95 % of the
//! budget; a blob is never evicted between its commit and the caller
//! seeing success. The bytes in temp files of unfinished writes, in
//! progress or suspended for resumption, count as used: a write that takes
//! the store over budget evicts as it goes, and suspended uploads' files
//! are given up oldest first when evicting blobs cannot make the room, or
//! when they hold over a quarter of the budget (see `temp_space.rs`).
//!
//! With a retention time ([`DiskStoreConfig::retention`], the server's
//! `default_replica_timeout`, 3 h by default) a blob used within that time
//! is not evicted at all: Bazel's Build without the Bytes assumes a blob it
//! wrote, found with FindMissingBlobs or got from an action cache hit stays
//! for that long, and fails the build otherwise. Ages stay ticks; a list of
//! (time, tick) checkpoints sampled by a thread tells which ticks are recent
//! (see `retention.rs`), so entries do not grow. Such a store makes room
//! before a new blob is stored rather than after: when the protected blobs
//! leave no room, the write is refused with RESOURCE_EXHAUSTED (at
//! `begin_write`, or at commit if the store filled up during the upload,
//! its temp file deleted), while writes of blobs already stored succeed.
//! The budget can be exceeded by writes committing at the same moment.
//!
//! After a restart the LRU order is the order of the files' mtimes, i.e.
//! of when each blob was written: accesses are not persisted. Blobs written
//! within the retention time before the restart stay protected (by mtime);
//! blobs only used in that time do not.
//!
//! The empty blob is always present and never stored.

mod content_file;
mod evict;
mod index;
mod instances;
mod layout;
mod list;
mod read;
mod retention;
mod scan;
mod temp_space;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unfinished_writes_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use reapi_core::blob_store::{BlobStore, BlobWriter, ChunkStream};
use reapi_core::{Digest, Error, Result};

use self::index::{Index, Key};
use self::instances::Instances;
use self::retention::Retention;
use self::temp_space::TempSpace;
use super::read_range;

/// Where a [`DiskStore`] keeps its files and how much it may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskStoreConfig {
    /// The store's directory; created when missing. Holds `cas/` and `tmp/`,
    /// which must be on one file system.
    pub root: PathBuf,
    /// The byte budget for blob contents. A blob larger than this is
    /// refused with RESOURCE_EXHAUSTED.
    pub max_bytes: u64,
    /// How long a blob written, found by `find_missing` or otherwise used is
    /// kept whatever the budget; a store full of such blobs refuses new
    /// ones. Zero protects nothing (plain LRU).
    pub retention: Duration,
}

/// A blob store on the local disk; see the module documentation. Cloning
/// is cheap and shares the store.
#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    tmp_dir: PathBuf,
    max_bytes: u64,
    index: Index,
    instances: Instances,
    /// Held by the one thread evicting at a time.
    evict_lock: Mutex<()>,
    /// `None` without a retention time.
    retention: Option<Retention>,
    /// Temp files of unfinished writes, counted against the budget.
    temp_space: Arc<TempSpace>,
}

impl DiskStore {
    /// Opens (or creates) a store: deletes leftover temp files and malformed
    /// entries, rebuilds the index from the directory tree (in parallel over
    /// shard directories) and evicts down to the budget if it shrank.
    ///
    /// The scan runs on tokio's blocking pool, so this needs a tokio runtime;
    /// see [`DiskStore::open_blocking`] otherwise.
    pub async fn open(config: DiskStoreConfig) -> Result<DiskStore> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::internal(format!("opening the disk store: {e}")))?
    }

    /// [`DiskStore::open`] for callers outside an async context: blocks for
    /// the whole scan (1.5 to 3 s per million blobs on two cores).
    pub fn open_blocking(config: DiskStoreConfig) -> Result<DiskStore> {
        let inner = Arc::new(scan::open(config, scan::LruOrder::Mtime)?);
        if let Some(retention) = &inner.retention {
            // The sampler holds the store weakly and ends after it is gone.
            let store = Arc::downgrade(&inner);
            retention::spawn_sampler(retention.interval(), move || {
                let Some(inner) = store.upgrade() else {
                    return false;
                };
                if let Some(retention) = &inner.retention {
                    retention.sample(|| inner.index.clock());
                }
                true
            })?;
        }
        Ok(DiskStore { inner })
    }

    /// The content file of a stored blob, for hardlinking it into an input
    /// tree; `None` when absent. Refreshes the blob's age. The empty blob is
    /// never stored, so it has no file: callers create it themselves.
    ///
    /// The file is read-only and must never be modified. It may be evicted
    /// at any time after this returns: a caller linking it must handle
    /// NOT_FOUND from the link and treat the blob as missing.
    pub fn blob_path(&self, instance: &str, digest: &Digest) -> Option<PathBuf> {
        let key = self.inner.present(instance, digest)?;
        Some(self.inner.path_of(&key))
    }

    /// Bytes of blob content stored (the sum of the sizes of the blobs).
    pub fn used_bytes(&self) -> u64 {
        self.inner.index.used_bytes()
    }

    /// Bytes in temp files of unfinished writes, in progress or suspended
    /// for resumption; they count against the budget.
    pub fn temp_bytes(&self) -> u64 {
        self.inner.temp_space.bytes()
    }

    /// Number of blobs stored (the empty blob is not counted).
    pub fn blob_count(&self) -> usize {
        usize::try_from(self.inner.index.count()).unwrap_or(usize::MAX)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// How long used blobs are protected from eviction; zero for none.
    pub fn retention(&self) -> Duration {
        self.inner
            .retention
            .as_ref()
            .map_or(Duration::ZERO, Retention::window)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Memory held by the index's hash tables, in bytes.
    pub fn index_bytes(&self) -> usize {
        self.inner.index.allocated_bytes()
    }
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("root", &self.inner.root)
            .field("max_bytes", &self.inner.max_bytes)
            .field("retention", &self.retention())
            .field("used_bytes", &self.used_bytes())
            .field("blob_count", &self.blob_count())
            .finish()
    }
}

impl Inner {
    /// The key of a stored blob, refreshing its age; `None` when absent.
    fn present(&self, instance: &str, digest: &Digest) -> Option<Key> {
        let id = self.instances.lookup(instance)?;
        let key = Key::new(id, digest)?;
        self.index.touch(&key, self.index.tick()).then_some(key)
    }

    /// Like [`Inner::present`], with NOT_FOUND when absent.
    fn require(&self, instance: &str, digest: &Digest) -> Result<Key> {
        self.present(instance, digest)
            .ok_or_else(|| not_found(instance, digest))
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        layout::blob_path(&self.instances.dir(key.instance()), &key.digest())
    }

    /// Checks that a blob could be stored at all: its instance name fits in
    /// a directory name and it fits in the budget.
    fn check_storable(&self, instance: &str, digest: &Digest) -> Result<()> {
        instances::encode(instance)?;
        if digest.size() > self.max_bytes || digest.size() > Key::MAX_SIZE {
            return Err(Error::resource_exhausted(format!(
                "blob {digest} is larger than the disk store's whole budget of {} bytes",
                self.max_bytes.min(Key::MAX_SIZE)
            )));
        }
        Ok(())
    }

    /// Drops an index entry whose file is missing or damaged, so the blob
    /// reads as absent and clients upload it again. The file is checked
    /// again under the index lock: a concurrent write may have just
    /// replaced it with a good one. Returns whether it was forgotten.
    fn forget_damaged(&self, key: &Key, path: &Path, reason: &str) -> bool {
        let forgotten = self
            .index
            .remove_if(key, || match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_file() && meta.len() == key.size() => false,
                Ok(_) => {
                    if let Err(e) = std::fs::remove_file(path) {
                        tracing::warn!(path = %path.display(), "removing damaged blob: {e}");
                    }
                    true
                }
                Err(_) => true,
            });
        if forgotten {
            tracing::warn!(
                blob = %key.digest(),
                path = %path.display(),
                "dropped blob from the disk store index: {reason}"
            );
        }
        forgotten
    }
}

fn not_found(instance: &str, digest: &Digest) -> Error {
    Error::not_found(format!(
        "blob {digest} is not in the disk store (instance {instance:?})"
    ))
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("disk store task failed: {e}")))?
}

#[async_trait]
impl BlobStore for DiskStore {
    fn max_blob_size(&self) -> Option<u64> {
        Some(self.inner.max_bytes.min(Key::MAX_SIZE))
    }

    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let inner = &self.inner;
        let Some(id) = inner.instances.lookup(instance) else {
            return Ok(digests
                .iter()
                .filter(|d| !d.is_empty_blob())
                .copied()
                .collect());
        };
        let tick = inner.index.tick();
        Ok(digests
            .iter()
            .filter(|d| {
                !d.is_empty_blob()
                    && !Key::new(id, d).is_some_and(|key| inner.index.touch(&key, tick))
            })
            .copied()
            .collect())
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        if digest.is_empty_blob() {
            return Ok(Bytes::new());
        }
        let key = self.inner.require(instance, digest)?;
        let inner = Arc::clone(&self.inner);
        let instance = instance.to_owned();
        let digest = *digest;
        blocking(move || inner.read_whole(&instance, &digest, &key)).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        let key = if digest.is_empty_blob() {
            None
        } else {
            Some(self.inner.require(instance, digest)?)
        };
        let len = read_range::slice_range(digest, offset, limit)?.len() as u64;
        let Some(key) = key.filter(|_| len > 0) else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let inner = Arc::clone(&self.inner);
        let instance = instance.to_owned();
        let digest = *digest;
        let file = blocking(move || inner.open_at(&instance, &digest, &key, offset)).await?;
        Ok(read::chunk_stream(file, len, digest))
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let instance = instance.to_owned();
        let digest = *digest;
        blocking(move || inner.put_blocking(&instance, &digest, &data)).await
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        if !digest.is_empty_blob() {
            self.inner.check_storable(instance, digest)?;
            // A store full of protected blobs refuses a new one now rather
            // than after its upload (commit checks again).
            let inner = &self.inner;
            if inner.retention.is_some()
                && !inner.fits(digest.size())
                && inner.present(instance, digest).is_none()
            {
                let inner = Arc::clone(inner);
                let digest = *digest;
                blocking(move || inner.make_room(&digest, digest.size())).await?;
            }
        }
        Ok(Box::new(writer::DiskWriter::new(
            Arc::clone(&self.inner),
            instance,
            *digest,
        )))
    }
}
