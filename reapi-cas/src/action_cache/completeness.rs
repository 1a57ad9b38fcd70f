//! `CompletenessCheckingActionCache`: returns a hit only while every blob the
//! result names is still in the CAS (output files, output directory trees and
//! every file in them, stdout and stderr).
//!
//! The check goes through `BlobStore::find_missing`, which also refreshes the
//! blobs' age: a client that got a hit will download those outputs (or, with
//! Build without the Bytes, rely on them staying), so they must be the last
//! to be evicted.

use std::sync::Arc;

use async_trait::async_trait;
use prost::Message;
use reapi_core::proto::remote_execution::{ActionResult, Tree};
use reapi_core::tree::{action_result_direct_digests, tree_file_digests};
use reapi_core::{ActionCache, BlobStore, Digest, ErrorExt, Result};
use tonic::Code;

pub struct CompletenessCheckingActionCache {
    inner: Arc<dyn ActionCache>,
    cas: Arc<dyn BlobStore>,
}

impl CompletenessCheckingActionCache {
    pub fn new(inner: Arc<dyn ActionCache>, cas: Arc<dyn BlobStore>) -> Self {
        CompletenessCheckingActionCache { inner, cas }
    }

    /// Whether every blob `result` refers to is present; refreshes them all.
    async fn is_complete(&self, instance: &str, result: &ActionResult) -> Result<bool> {
        let direct = match action_result_direct_digests(result) {
            Ok(direct) => direct,
            Err(e) => {
                tracing::warn!(error = %e, "stored action result has malformed digests");
                return Ok(false);
            }
        };
        let mut wanted = direct.blobs;
        for tree_digest in &direct.trees {
            let bytes = match self.cas.get(instance, tree_digest).await {
                Ok(bytes) => bytes,
                Err(e) if e.code() == Code::NotFound => return Ok(false),
                Err(e) => return Err(e.context(format!("reading output tree {tree_digest}"))),
            };
            let files = Tree::decode(bytes)
                .map_err(|e| e.to_string())
                .and_then(|tree| tree_file_digests(&tree).map_err(|e| e.to_string()));
            match files {
                Ok(files) => wanted.extend(files),
                Err(e) => {
                    tracing::warn!(tree = %tree_digest, error = %e, "output tree does not decode");
                    return Ok(false);
                }
            }
            wanted.push(*tree_digest);
        }
        wanted.sort_unstable();
        wanted.dedup();
        let missing = self
            .cas
            .find_missing(instance, &wanted)
            .await
            .context("checking the outputs of a cached action")?;
        Ok(missing.is_empty())
    }
}

#[async_trait]
impl ActionCache for CompletenessCheckingActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        let Some(result) = self.inner.get(instance, action_digest).await? else {
            return Ok(None);
        };
        if self.is_complete(instance, &result).await? {
            Ok(Some(result))
        } else {
            tracing::debug!(action = %action_digest, "action result names blobs no longer stored");
            Ok(None)
        }
    }

    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        self.inner.put(instance, action_digest, result).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action_cache::MemoryActionCache;
    use crate::store::MemoryStore;
    use bytes::Bytes;
    use reapi_core::proto::remote_execution::{Directory, FileNode, OutputDirectory, OutputFile};

    struct Fixture {
        cas: Arc<MemoryStore>,
        cache: CompletenessCheckingActionCache,
    }

    fn fixture() -> Fixture {
        let cas = Arc::new(MemoryStore::new(1 << 20));
        let cache = CompletenessCheckingActionCache::new(
            Arc::new(MemoryActionCache::new(1 << 20)),
            cas.clone(),
        );
        Fixture { cas, cache }
    }

    async fn store(cas: &MemoryStore, data: &[u8]) -> Digest {
        let d = Digest::of_bytes(data);
        cas.put("", &d, Bytes::copy_from_slice(data)).await.unwrap();
        d
    }

    #[tokio::test]
    async fn hit_only_when_files_and_tree_contents_present() {
        let f = fixture();
        let out = store(&f.cas, b"output").await;
        let inner_file = Digest::of_bytes(b"inside the tree");
        let tree = Tree {
            root: Some(Directory {
                files: vec![FileNode {
                    name: "x".into(),
                    digest: Some(inner_file.to_proto()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            children: vec![],
        };
        let tree_digest = store(&f.cas, &tree.encode_to_vec()).await;
        let result = ActionResult {
            output_files: vec![OutputFile {
                path: "o".into(),
                digest: Some(out.to_proto()),
                ..Default::default()
            }],
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                tree_digest: Some(tree_digest.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = Digest::of_bytes(b"action");
        f.cache.put("", &action, &result).await.unwrap();
        // The file inside the output directory is missing: no hit.
        assert!(f.cache.get("", &action).await.unwrap().is_none());
        store(&f.cas, b"inside the tree").await;
        assert_eq!(f.cache.get("", &action).await.unwrap(), Some(result));
    }

    #[tokio::test]
    async fn missing_stdout_is_a_miss() {
        let f = fixture();
        let result = ActionResult {
            stdout_digest: Some(Digest::of_bytes(b"gone").to_proto()),
            ..Default::default()
        };
        let action = Digest::of_bytes(b"action");
        f.cache.put("", &action, &result).await.unwrap();
        assert!(f.cache.get("", &action).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn undecodable_tree_is_a_miss() {
        let f = fixture();
        let bogus = store(&f.cas, b"\xff\xff\xff\xff").await;
        let result = ActionResult {
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                tree_digest: Some(bogus.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = Digest::of_bytes(b"action");
        f.cache.put("", &action, &result).await.unwrap();
        assert!(f.cache.get("", &action).await.unwrap().is_none());
    }
}
