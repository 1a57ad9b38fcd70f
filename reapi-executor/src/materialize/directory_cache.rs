//! A bounded cache of decoded `Directory` messages, keyed by instance and
//! digest: consecutive actions share most of their input trees (toolchains,
//! headers), so most directories are fetched and decoded once.
//!
//! Bounded by count with two generations, a cheap approximation of LRU:
//! entries go into the young map; when it is full it becomes the old map
//! (the previous old map is dropped); a hit in the old map moves the entry
//! back to the young one. So an entry used within the last `capacity / 2`
//! insertions is always kept, and at most `capacity` entries are held.
//!
//! Keyed by instance too: a directory being in one tenant's CAS says
//! nothing about another's.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use reapi_core::proto::remote_execution::Directory;
use reapi_core::Digest;

type Key = (String, Digest);

pub struct DirectoryCache {
    generation_size: usize,
    inner: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Key, Arc<Directory>>,
    old: HashMap<Key, Arc<Directory>>,
}

impl DirectoryCache {
    /// A cache holding at most `capacity` directories (0 disables it).
    pub fn new(capacity: usize) -> Self {
        DirectoryCache {
            generation_size: capacity / 2,
            inner: Mutex::new(Generations::default()),
        }
    }

    pub fn get(&self, instance: &str, digest: &Digest) -> Option<Arc<Directory>> {
        let key = (instance.to_string(), *digest);
        let mut inner = self.inner.lock();
        if let Some(dir) = inner.young.get(&key) {
            return Some(Arc::clone(dir));
        }
        let dir = inner.old.remove(&key)?;
        self.insert_locked(&mut inner, key, Arc::clone(&dir));
        Some(dir)
    }

    pub fn insert(&self, instance: &str, digest: &Digest, dir: Arc<Directory>) {
        if self.generation_size == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        self.insert_locked(&mut inner, (instance.to_string(), *digest), dir);
    }

    fn insert_locked(&self, inner: &mut Generations, key: Key, dir: Arc<Directory>) {
        if inner.young.len() >= self.generation_size {
            inner.old = std::mem::take(&mut inner.young);
        }
        inner.young.insert(key, dir);
    }

    /// Directories held now.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.young.len() + inner.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> (Digest, Arc<Directory>) {
        (
            Digest::of_bytes(&i.to_le_bytes()),
            Arc::new(Directory::default()),
        )
    }

    #[test]
    fn bounded_and_keeps_recent_entries() {
        let cache = DirectoryCache::new(10);
        let (hot, dir) = entry(0);
        cache.insert("", &hot, dir);
        for i in 1..100 {
            let (digest, dir) = entry(i);
            cache.insert("", &digest, dir);
            assert!(cache.get("", &hot).is_some(), "lost the hot entry at {i}");
            assert!(cache.len() <= 10);
        }
        assert!(cache.get("", &entry(1).0).is_none());
        assert!(cache.get("other", &hot).is_none());
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let cache = DirectoryCache::new(0);
        let (digest, dir) = entry(1);
        cache.insert("", &digest, dir);
        assert!(cache.get("", &digest).is_none());
        assert!(cache.is_empty());
    }
}
