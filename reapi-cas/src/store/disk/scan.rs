//! Opening a store: cleaning up after a crash and rebuilding the index from
//! the directory tree.
//!
//! Shard directories are scanned by a few threads in parallel. Anything that
//! is not a well-formed content file in the right place is deleted with a
//! warning; so is everything in `tmp/` (writes cut off by a crash or kill).
//! The initial LRU order is the order of the files' mtimes (when each blob
//! was written), which costs one `stat` per file; see [`LruOrder`]. The
//! mtimes also tell which blobs were written within the retention time
//! before the restart, which stay protected (see `retention.rs`).

use std::fs::{self, FileType};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use reapi_core::{Error, ErrorExt, Result};

use super::index::{Index, Key};
use super::instances::{InstanceId, Instances};
use super::layout::{self, CAS_DIR, TMP_DIR};
use super::retention::Retention;
use super::temp_space::TempSpace;
use super::{DiskStoreConfig, Inner};

/// How the scan orders blobs for LRU eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LruOrder {
    /// Oldest mtime first: one `stat` per file, and length-checks each file.
    Mtime,
    /// Directory order (effectively random): no `stat`.
    #[cfg_attr(not(test), allow(dead_code))]
    Directory,
}

/// Warnings logged one by one before they are only counted.
const JUNK_WARNINGS: u64 = 20;
/// Most threads used for the scan.
const MAX_SCAN_THREADS: usize = 8;

struct ShardDir {
    instance: InstanceId,
    prefix: u8,
    path: PathBuf,
}

/// Counts (and deletes) what does not belong.
#[derive(Default)]
struct Junk {
    count: AtomicU64,
}

impl Junk {
    fn remove(&self, path: &Path, is_dir: bool, reason: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n < JUNK_WARNINGS {
            tracing::warn!(path = %path.display(), "deleting from the disk store: {reason}");
        }
        let removed = if is_dir {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), "could not delete: {e}");
        }
    }
}

pub(super) fn open(config: DiskStoreConfig, order: LruOrder) -> Result<Inner> {
    let started = Instant::now();
    let root = config.root;
    let cas_dir = root.join(CAS_DIR);
    let tmp_dir = root.join(TMP_DIR);
    for dir in [&cas_dir, &tmp_dir] {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating the disk store directory {}", dir.display()))?;
    }
    let leftovers = clean_tmp(&tmp_dir)?;

    let instances = Instances::new(cas_dir.clone());
    let junk = Junk::default();
    let shard_dirs = list_shard_dirs(&cas_dir, &instances, &junk)?;
    let mut found = scan_shard_dirs(&shard_dirs, order, &junk)?;
    if order == LruOrder::Mtime {
        found.sort_unstable_by_key(|&(_, mtime)| mtime);
    }
    let retention = retention(config.retention, &found, order);
    let keys: Vec<Key> = found.into_iter().map(|(key, _)| key).collect();
    let index = Index::new();
    index.load(&keys);
    drop(keys);

    let inner = Inner {
        root,
        tmp_dir,
        max_bytes: config.max_bytes,
        index,
        instances,
        evict_lock: Mutex::new(()),
        retention,
        temp_space: TempSpace::new(config.max_bytes),
    };
    let junk = junk.count.into_inner();
    if junk > JUNK_WARNINGS {
        tracing::warn!(
            root = %inner.root.display(),
            deleted = junk,
            "deleted malformed entries from the disk store"
        );
    }
    tracing::info!(
        root = %inner.root.display(),
        retention_ms = inner.retention.as_ref().map_or(0, |r| r.window().as_millis() as u64),
        blobs = inner.index.count(),
        bytes = inner.index.used_bytes(),
        max_bytes = inner.max_bytes,
        index_bytes = inner.index.allocated_bytes(),
        tmp_leftovers = leftovers,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "disk store opened"
    );
    if inner.index.used_bytes() > inner.max_bytes {
        tracing::info!("disk store is over its budget; evicting");
        inner.evict_if_needed();
    }
    Ok(inner)
}

/// The retention of a store whose index is loaded from `found` (in mtime
/// order with [`LruOrder::Mtime`]: then blobs written within the window
/// before now are protected).
fn retention(window: Duration, found: &Found, order: LruOrder) -> Option<Retention> {
    let loaded = found.len() as u64;
    if order != LruOrder::Mtime {
        return Retention::new(window, loaded, None);
    }
    // Read before the retention's own clock starts, so that its checkpoints
    // err towards protecting.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let written_before = |ago: Duration| {
        let cutoff = now - ago.as_nanos() as i128;
        found.partition_point(|&(_, (secs, nanos))| {
            i128::from(secs) * 1_000_000_000 + i128::from(nanos) < cutoff
        }) as u64
    };
    Retention::new(window, loaded, Some(&written_before))
}

/// Deletes everything in `tmp/` but its shard directories; returns how many
/// entries went.
fn clean_tmp(tmp_dir: &Path) -> Result<u64> {
    let mut removed = 0u64;
    for entry in read_dir(tmp_dir)? {
        let entry = entry?;
        let is_dir = entry.file_type.is_dir();
        if is_dir && entry.name.as_deref().is_some_and(layout::is_shard_dir_name) {
            for inner in read_dir(&entry.path())? {
                let inner = inner?;
                remove_leftover(&inner.path(), inner.file_type.is_dir())?;
                removed += 1;
            }
        } else {
            remove_leftover(&entry.path(), is_dir)?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            dir = %tmp_dir.display(),
            files = removed,
            "deleted temp files of writes cut off by a restart"
        );
    }
    Ok(removed)
}

fn remove_leftover(path: &Path, is_dir: bool) -> Result<()> {
    let result = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.with_context(|| format!("deleting the leftover temp file {}", path.display()))
}

/// Lists `cas/{instance}/{hh}` directories, interning the instances.
fn list_shard_dirs(cas_dir: &Path, instances: &Instances, junk: &Junk) -> Result<Vec<ShardDir>> {
    let mut shard_dirs = Vec::new();
    for entry in read_dir(cas_dir)? {
        let entry = entry?;
        let path = entry.path();
        let is_dir = entry.file_type.is_dir();
        let instance = entry.name.as_deref().and_then(layout::decode_instance);
        let (Some(instance), true) = (instance, is_dir) else {
            junk.remove(&path, is_dir, "not an instance directory");
            continue;
        };
        let id = match instances.intern(&instance) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(path = %path.display(), "skipping instance directory: {e}");
                continue;
            }
        };
        for entry in read_dir(&path)? {
            let entry = entry?;
            let path = entry.path();
            let prefix = entry
                .name
                .as_deref()
                .filter(|n| layout::is_shard_dir_name(n))
                .and_then(|n| hex::decode(n).ok())
                .and_then(|bytes| bytes.first().copied());
            match (prefix, entry.file_type.is_dir()) {
                (Some(prefix), true) => shard_dirs.push(ShardDir {
                    instance: id,
                    prefix,
                    path,
                }),
                (_, is_dir) => junk.remove(&path, is_dir, "not a shard directory"),
            }
        }
    }
    Ok(shard_dirs)
}

/// A directory entry with its UTF-8 name (if it is one) and its file type
/// (not following symlinks; from the directory itself on most file systems).
struct Entry {
    entry: fs::DirEntry,
    name: Option<String>,
    file_type: FileType,
}

impl Entry {
    fn path(&self) -> PathBuf {
        self.entry.path()
    }
}

fn read_dir(dir: &Path) -> Result<impl Iterator<Item = Result<Entry>> + '_> {
    let context = move || format!("scanning the disk store directory {}", dir.display());
    let entries = fs::read_dir(dir).with_context(context)?;
    Ok(entries.map(move |entry| {
        let entry = entry.with_context(context)?;
        let file_type = entry.file_type().with_context(context)?;
        let name = entry.file_name().into_string().ok();
        Ok(Entry {
            entry,
            name,
            file_type,
        })
    }))
}

type Found = Vec<(Key, (i64, i64))>;

fn scan_shard_dirs(shard_dirs: &[ShardDir], order: LruOrder, junk: &Junk) -> Result<Found> {
    // More threads than cores: on a cold cache the scan waits on reads.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get() * 2)
        .clamp(4, MAX_SCAN_THREADS)
        .min(shard_dirs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Found>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Found::new();
                    while let Some(dir) = shard_dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        scan_shard_dir(dir, order, junk, &mut found)?;
                    }
                    Ok(found)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(Error::internal("disk store scan thread panicked")))
            })
            .collect()
    });
    let mut all = Found::new();
    for found in results {
        let mut found = found?;
        if all.is_empty() {
            all = found;
        } else {
            all.append(&mut found);
        }
    }
    Ok(all)
}

fn scan_shard_dir(dir: &ShardDir, order: LruOrder, junk: &Junk, found: &mut Found) -> Result<()> {
    for entry in read_dir(&dir.path)? {
        let entry = entry?;
        let digest = entry
            .name
            .as_deref()
            .and_then(layout::parse_blob_file_name)
            .filter(|d| d.hash()[0] == dir.prefix && !d.is_empty_blob());
        let key = digest.and_then(|d| Key::new(dir.instance, &d));
        let (Some(key), true) = (key, entry.file_type.is_file()) else {
            junk.remove(
                &entry.path(),
                entry.file_type.is_dir(),
                "not a content file",
            );
            continue;
        };
        let mtime = match order {
            LruOrder::Directory => (0, 0),
            LruOrder::Mtime => {
                // fstatat relative to the directory: no path walk.
                let meta = match entry.entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(Error::io(format!("scanning {}", entry.path().display()), e));
                    }
                };
                if meta.len() != key.size() {
                    let reason =
                        format!("holds {} bytes, its name says {}", meta.len(), key.size());
                    junk.remove(&entry.path(), false, &reason);
                    continue;
                }
                (meta.mtime(), meta.mtime_nsec())
            }
        };
        found.push((key, mtime));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use reapi_core::Digest;

    use super::*;

    /// Creates `n` small content files directly in the layout, with mtimes
    /// in creation order.
    fn populate(root: &Path, n: u64) {
        let instance_dir = root.join(CAS_DIR).join(crate::instance_dir::encode(""));
        for prefix in 0..=255u8 {
            fs::create_dir_all(instance_dir.join(hex::encode([prefix]))).unwrap();
        }
        let threads = 2;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let instance_dir = &instance_dir;
                scope.spawn(move || {
                    let body = [b'x'; 128];
                    for i in (t..n).step_by(threads as usize) {
                        let size = 1 + i % 128;
                        let hash = *Digest::of_bytes(&i.to_le_bytes()).hash();
                        let digest = Digest::new(reapi_core::DigestFunction::Sha256, hash, size);
                        let path = layout::blob_path(instance_dir, &digest);
                        let mut file = fs::File::create(&path).unwrap();
                        file.write_all(&body[..size as usize]).unwrap();
                    }
                });
            }
        });
    }

    fn drop_caches() -> bool {
        fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
    }

    /// Rebuild time with 1 M small blobs, in both LRU orders. Run with
    /// `cargo test -p reapi-cas --release -- --ignored --nocapture rebuild_1m_small_blobs`
    /// (`REAPI_REBUILD_BLOBS` changes the count; needs ~5 GB of disk).
    #[test]
    #[ignore]
    fn rebuild_1m_small_blobs() {
        let n: u64 = std::env::var("REAPI_REBUILD_BLOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        populate(dir.path(), n);
        println!(
            "created {n} files in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let config = DiskStoreConfig {
            root: dir.path().to_owned(),
            max_bytes: u64::MAX,
            retention: Duration::ZERO,
        };
        for (order, cold) in [
            (LruOrder::Mtime, false),
            (LruOrder::Directory, false),
            (LruOrder::Mtime, false),
            (LruOrder::Directory, false),
            (LruOrder::Mtime, true),
            (LruOrder::Directory, true),
        ] {
            if cold && !drop_caches() {
                println!("cannot drop the page cache; no cold-cache figures");
                break;
            }
            let started = Instant::now();
            let inner = open(config.clone(), order).unwrap();
            let elapsed = started.elapsed();
            assert_eq!(inner.index.count(), n);
            println!(
                "open with {n} blobs, LRU order {order:?}, {} cache: {:.2} s; \
                 index {:.1} bytes/blob",
                if cold { "cold" } else { "warm" },
                elapsed.as_secs_f64(),
                inner.index.allocated_bytes() as f64 / n as f64
            );
        }
    }
}
