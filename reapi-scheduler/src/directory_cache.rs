//! Decoded, checked `Directory` messages of input trees, kept between
//! Executes. Builds send thousands of actions over the same directories
//! (the toolchain's, the sources'), and reading and decoding each one from
//! the store for every action was a blocking-pool round trip per
//! directory. Content is immutable, so a cached message is always right;
//! whether the blob is still stored is asked of the store every time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use reapi_core::proto::remote_execution::Directory;
use reapi_core::Digest;

pub struct DirectoryCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Arc<Directory>>,
    /// Insertion order; the oldest goes first when full.
    order: VecDeque<Digest>,
}

impl DirectoryCache {
    pub fn new(capacity: usize) -> Self {
        DirectoryCache {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    pub fn get(&self, digest: &Digest) -> Option<Arc<Directory>> {
        self.state.lock().entries.get(digest).cloned()
    }

    /// Keeps a directory that decoded and passed validation.
    pub fn insert(&self, digest: Digest, directory: Arc<Directory>) {
        if self.capacity == 0 {
            return;
        }
        let mut state = self.state.lock();
        if state.entries.insert(digest, directory).is_some() {
            return;
        }
        state.order.push_back(digest);
        while state.entries.len() > self.capacity {
            match state.order.pop_front() {
                Some(old) => {
                    state.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_capacity_oldest_out_first() {
        let cache = DirectoryCache::new(2);
        let digests: Vec<Digest> = (0..3u8).map(|i| Digest::of_bytes(&[i])).collect();
        for d in &digests {
            cache.insert(*d, Arc::new(Directory::default()));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&digests[0]).is_none());
        assert!(cache.get(&digests[2]).is_some());
        let none = DirectoryCache::new(0);
        none.insert(digests[0], Arc::new(Directory::default()));
        assert!(none.is_empty());
    }
}
