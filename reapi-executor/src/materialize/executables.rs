//! Executable copies of CAS blobs, to hardlink executable inputs from.
//!
//! Used only when actions run as a user that cannot write to or `chmod`
//! the server's files (see [`crate::identity`]): the copies are the
//! server's, mode 0555, and shared by every action that links them, so
//! otherwise executable inputs are plain copies of the store's file.
//!
//! Inputs are hardlinked from the disk store's content files, which are
//! read-only (0444). A hardlink is the same inode, so it has the same mode:
//! an input marked executable cannot be a link to the store's file (and
//! `chmod` on the link would change the store's file for everyone). So the
//! pool keeps one copy with mode 0555 per digest, made the first time an
//! action needs that blob as an executable, and hardlinks executable inputs
//! from there. Compilers and tools are the usual executable inputs, and a
//! build uses few of them many times, so the copies pay off at once.
//!
//! The cache lives in `{work}/executables/` (on the same file system as the
//! action directories, for the links) and is emptied when the pool starts:
//! its index is in memory only. It is bounded by bytes; the least recently
//! used copies are deleted first. Deleting a copy that a running action
//! has linked is harmless: the action's link keeps the inode alive.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use reapi_core::Digest;

/// Mode of the copies (and of every executable input).
pub const EXECUTABLE_MODE: u32 = 0o555;

pub struct ExecutableCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    temp_counter: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Digest to the tick of its last use.
    entries: HashMap<Digest, u64>,
    used_bytes: u64,
    tick: u64,
}

impl ExecutableCache {
    /// A cache in `dir`, which must exist and be empty (the pool resets it).
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        ExecutableCache {
            dir,
            max_bytes,
            state: Mutex::new(State::default()),
            temp_counter: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of copies held.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes
    }

    /// Hardlinks an executable copy of `digest` to `dest`, making the copy
    /// from `source` (the store's content file) when there is none.
    pub fn link(&self, digest: &Digest, source: &Path, dest: &Path) -> io::Result<()> {
        let copy = self.ensure(digest, source)?;
        match fs::hard_link(&copy, dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !copy.exists() => {
                // Evicted by another action between `ensure` and the link.
                self.forget(digest);
                let copy = self.ensure(digest, source)?;
                fs::hard_link(copy, dest)
            }
            other => other,
        }
    }

    /// The path of the copy of `digest`, made now if needed.
    fn ensure(&self, digest: &Digest, source: &Path) -> io::Result<PathBuf> {
        let path = self.path_of(digest);
        {
            let mut state = self.state.lock();
            state.tick += 1;
            let tick = state.tick;
            if let Some(used) = state.entries.get_mut(digest) {
                *used = tick;
                return Ok(path);
            }
        }
        // Copy outside the lock; two actions racing on one digest both copy
        // and the second rename replaces the first with equal content.
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".tmp-{n}"));
        let made = fs::copy(source, &temp)
            .and_then(|_| fs::set_permissions(&temp, fs::Permissions::from_mode(EXECUTABLE_MODE)))
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = made {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        let evicted = {
            let mut state = self.state.lock();
            state.tick += 1;
            let tick = state.tick;
            if state.entries.insert(*digest, tick).is_none() {
                state.used_bytes += digest.size();
            }
            self.evict_locked(&mut state, digest)
        };
        for victim in evicted {
            if let Err(e) = fs::remove_file(self.path_of(&victim)) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(digest = %victim, "removing an executable copy: {e}");
                }
            }
        }
        Ok(path)
    }

    /// Picks the least recently used entries (never `keep`) until the cache
    /// is within its budget, and drops them from the index.
    fn evict_locked(&self, state: &mut State, keep: &Digest) -> Vec<Digest> {
        if state.used_bytes <= self.max_bytes {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, Digest)> = state
            .entries
            .iter()
            .filter(|(d, _)| *d != keep)
            .map(|(d, t)| (*t, *d))
            .collect();
        by_age.sort_unstable();
        // Evict down to 90 % so the sort is paid once per many inserts.
        let target = self.max_bytes / 10 * 9;
        let mut victims = Vec::new();
        for (_, digest) in by_age {
            if state.used_bytes <= target {
                break;
            }
            state.entries.remove(&digest);
            state.used_bytes -= digest.size();
            victims.push(digest);
        }
        victims
    }

    fn forget(&self, digest: &Digest) {
        let mut state = self.state.lock();
        if state.entries.remove(digest).is_some() {
            state.used_bytes -= digest.size();
        }
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.storage_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn source(dir: &Path, content: &[u8]) -> (Digest, PathBuf) {
        let path = dir.join(format!("src-{}", content.len()));
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        (Digest::of_bytes(content), path)
    }

    #[test]
    fn links_share_one_executable_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let cache_dir = tmp.path().join("cache");
        fs::create_dir(&cache_dir).unwrap();
        let cache = ExecutableCache::new(cache_dir, 1 << 20);
        let (digest, src) = source(tmp.path(), b"#!/bin/sh\n");
        cache.link(&digest, &src, &tmp.path().join("a")).unwrap();
        cache.link(&digest, &src, &tmp.path().join("b")).unwrap();
        let a = fs::metadata(tmp.path().join("a")).unwrap();
        let b = fs::metadata(tmp.path().join("b")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mode() & 0o777, EXECUTABLE_MODE);
        // The store's file is untouched.
        let s = fs::metadata(&src).unwrap();
        assert_eq!(s.mode() & 0o777, 0o444);
        assert_ne!(s.ino(), a.ino());
        assert_eq!(cache.used_bytes(), digest.size());
    }

    #[test]
    fn evicts_least_recently_used_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let cache_dir = tmp.path().join("cache");
        fs::create_dir(&cache_dir).unwrap();
        let cache = ExecutableCache::new(cache_dir.clone(), 250);
        let blobs: Vec<_> = (1..=4u8)
            .map(|i| source(tmp.path(), &vec![i; 100 + i as usize]))
            .collect();
        for (i, (digest, src)) in blobs.iter().enumerate() {
            cache
                .link(digest, src, &tmp.path().join(format!("l{i}")))
                .unwrap();
            assert!(cache.used_bytes() <= 250);
        }
        let left = fs::read_dir(&cache_dir).unwrap().count();
        assert_eq!(left, cache.state.lock().entries.len());
        assert!(cache.state.lock().entries.contains_key(&blobs[3].0));
        // Links made earlier survive eviction of their copies.
        assert_eq!(fs::read(tmp.path().join("l0")).unwrap(), vec![1u8; 101]);
        // A copy removed behind the cache's back is made again.
        for entry in fs::read_dir(&cache_dir).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let (digest, src) = &blobs[3];
        cache.link(digest, src, &tmp.path().join("again")).unwrap();
        assert_eq!(fs::read(tmp.path().join("again")).unwrap(), vec![4u8; 104]);
    }
}
