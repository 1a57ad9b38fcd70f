//! `BucketBackupActionCache`: every action result is also written to an
//! object-storage bucket (`ac/{instance dir}/{hash}-{size}` under the
//! store's prefix), and a local miss is looked up there, so wiping the
//! local data directory loses no results.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use reapi_core::proto::remote_execution::ActionResult;
use reapi_core::{ActionCache, Digest, ErrorExt, Result};

use crate::instance_dir;
use crate::store::ObjectBucket;

pub struct BucketBackupActionCache {
    local: Arc<dyn ActionCache>,
    bucket: Arc<dyn ObjectBucket>,
}

impl BucketBackupActionCache {
    pub fn new(local: Arc<dyn ActionCache>, bucket: Arc<dyn ObjectBucket>) -> Self {
        BucketBackupActionCache { local, bucket }
    }
}

fn object_key(instance: &str, digest: &Digest) -> Result<String> {
    Ok(format!(
        "ac/{}/{}",
        instance_dir::encode_checked(instance)?,
        digest.storage_name()
    ))
}

#[async_trait]
impl ActionCache for BucketBackupActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        if let Some(hit) = self.local.get(instance, action_digest).await? {
            return Ok(Some(hit));
        }
        let key = object_key(instance, action_digest)?;
        let Some(bytes) = self
            .bucket
            .get_object(&key)
            .await
            .with_context(|| format!("reading action result backup {key}"))?
        else {
            return Ok(None);
        };
        match ActionResult::decode(bytes) {
            Ok(result) => {
                self.local.put(instance, action_digest, &result).await?;
                Ok(Some(result))
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "action result backup does not decode; ignoring it");
                Ok(None)
            }
        }
    }

    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        let key = object_key(instance, action_digest)?;
        // The bucket first: a result only the local cache holds would be
        // lost with the data directory.
        self.bucket
            .put_object(&key, Bytes::from(result.encode_to_vec()))
            .await
            .with_context(|| format!("backing up action result {key}"))?;
        self.local.put(instance, action_digest, result).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action_cache::MemoryActionCache;
    use parking_lot::Mutex;
    use std::collections::HashMap;

    /// An in-memory bucket: the layer's contract with any bucket.
    #[derive(Default)]
    struct MapBucket(Mutex<HashMap<String, Bytes>>);

    #[async_trait]
    impl ObjectBucket for MapBucket {
        async fn get_object(&self, key: &str) -> Result<Option<Bytes>> {
            Ok(self.0.lock().get(key).cloned())
        }
        async fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
            self.0.lock().insert(key.to_string(), data);
            Ok(())
        }
    }

    #[tokio::test]
    async fn results_come_back_from_the_bucket() {
        let bucket = Arc::new(MapBucket::default());
        let d = Digest::of_bytes(b"action");
        let result = ActionResult {
            exit_code: 0,
            stdout_raw: b"hi".to_vec(),
            ..Default::default()
        };
        let first =
            BucketBackupActionCache::new(Arc::new(MemoryActionCache::new(1 << 20)), bucket.clone());
        first.put("team/a", &d, &result).await.unwrap();
        let key = format!("ac/team%2Fa/{}-{}", d.hash_hex(), d.size());
        assert!(
            bucket.0.lock().contains_key(&key),
            "{:?}",
            bucket.0.lock().keys()
        );
        // A fresh local cache (the data directory was wiped).
        let local = Arc::new(MemoryActionCache::new(1 << 20));
        let second = BucketBackupActionCache::new(local.clone(), bucket.clone());
        assert_eq!(second.get("team/a", &d).await.unwrap(), Some(result));
        assert!(
            local.lookup("team/a", &d).is_some(),
            "local cache was not filled"
        );
        assert_eq!(second.get("other", &d).await.unwrap(), None);
    }

    #[tokio::test]
    async fn undecodable_backup_is_a_miss() {
        let bucket = Arc::new(MapBucket::default());
        let d = Digest::of_bytes(b"action");
        bucket.0.lock().insert(
            object_key("", &d).unwrap(),
            Bytes::from_static(b"\xff\xff\xff"),
        );
        let cache = BucketBackupActionCache::new(Arc::new(MemoryActionCache::new(1 << 20)), bucket);
        assert_eq!(cache.get("", &d).await.unwrap(), None);
    }
}
