//! `MemoryActionCache`: action results in RAM, LRU-bounded by encoded size.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use prost::Message;
use reapi_core::proto::remote_execution::ActionResult;
use reapi_core::{ActionCache, Digest, Result};

use crate::lru::Lru;

type Results = Lru<(Arc<str>, Digest), Arc<ActionResult>>;

pub struct MemoryActionCache {
    entries: Mutex<Results>,
}

impl MemoryActionCache {
    pub fn new(max_bytes: u64) -> Self {
        MemoryActionCache {
            entries: Mutex::new(Lru::new(max_bytes)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up without going through the async trait (for layers above).
    pub fn lookup(&self, instance: &str, digest: &Digest) -> Option<Arc<ActionResult>> {
        self.entries
            .lock()
            .get(&(Arc::from(instance), *digest))
            .cloned()
    }

    pub fn store(&self, instance: &str, digest: &Digest, result: Arc<ActionResult>) {
        let weight = result.encoded_len() as u64;
        self.entries
            .lock()
            .insert((Arc::from(instance), *digest), result, weight);
    }
}

#[async_trait]
impl ActionCache for MemoryActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        Ok(self.lookup(instance, action_digest).map(|r| (*r).clone()))
    }

    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        self.store(instance, action_digest, Arc::new(result.clone()));
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
    async fn stores_per_instance() {
        let cache = MemoryActionCache::new(1 << 20);
        let d = Digest::of_bytes(b"action");
        cache.put("a", &d, &result(3)).await.unwrap();
        assert_eq!(cache.get("a", &d).await.unwrap().unwrap().exit_code, 3);
        assert!(cache.get("b", &d).await.unwrap().is_none());
        cache.put("a", &d, &result(4)).await.unwrap();
        assert_eq!(cache.get("a", &d).await.unwrap().unwrap().exit_code, 4);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn evicts_oldest_over_budget() {
        let one = result(1).encoded_len() as u64;
        let cache = MemoryActionCache::new(2 * one);
        let (a, b, c) = (
            Digest::of_bytes(b"a"),
            Digest::of_bytes(b"b"),
            Digest::of_bytes(b"c"),
        );
        cache.put("", &a, &result(1)).await.unwrap();
        cache.put("", &b, &result(1)).await.unwrap();
        cache.get("", &a).await.unwrap().unwrap();
        cache.put("", &c, &result(1)).await.unwrap();
        assert!(cache.get("", &a).await.unwrap().is_some());
        assert!(cache.get("", &b).await.unwrap().is_none());
        assert!(cache.get("", &c).await.unwrap().is_some());
    }
}
