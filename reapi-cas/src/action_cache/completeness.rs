//! `CompletenessCheckingActionCache`: returns a hit only while every blob the
//! result names is still in the CAS (output files, output directory trees and
//! every file in them, stdout and stderr).
//!
//! The check goes through `BlobStore::find_missing`, which also refreshes the
//! blobs' age: a client that got a hit will download those outputs (or, with
//! Build without the Bytes, rely on them staying), so they must be the last
//! to be evicted.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use prost::Message;
use reapi_core::proto::remote_execution::{ActionResult, Directory, Tree};
use reapi_core::tree::{action_result_direct_digests, directory_children, tree_file_digests};
use reapi_core::{ActionCache, BlobStore, Digest, DigestFunction, ErrorExt, Result};
use tonic::Code;

/// Directories read at once while walking an output directory.
const DIRECTORY_READS_AT_ONCE: usize = 32;

/// The most directories an output directory without a `Tree` may have for
/// its result to count as a hit: bounds the memory and reads of one
/// lookup.
const MAX_OUTPUT_DIRECTORIES: usize = 100_000;

pub struct CompletenessCheckingActionCache {
    inner: Arc<dyn ActionCache>,
    cas: Arc<dyn BlobStore>,
}

impl CompletenessCheckingActionCache {
    pub fn new(inner: Arc<dyn ActionCache>, cas: Arc<dyn BlobStore>) -> Self {
        CompletenessCheckingActionCache { inner, cas }
    }

    /// Whether every blob `result` refers to is present; refreshes them all.
    /// Its digests are made with `function`, the action digest's.
    async fn is_complete(
        &self,
        instance: &str,
        function: DigestFunction,
        result: &ActionResult,
    ) -> Result<bool> {
        let direct = match action_result_direct_digests(function, result) {
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
                .and_then(|tree| tree_file_digests(function, &tree).map_err(|e| e.to_string()));
            match files {
                Ok(files) => wanted.extend(files),
                Err(e) => {
                    tracing::warn!(tree = %tree_digest, error = %e, "output tree does not decode");
                    return Ok(false);
                }
            }
            wanted.push(*tree_digest);
        }
        for root in &direct.roots {
            match self.directory_hierarchy(instance, root).await? {
                Some(blobs) => wanted.extend(blobs),
                None => return Ok(false),
            }
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

impl CompletenessCheckingActionCache {
    /// Every blob under the root `Directory` of an output directory that
    /// has no `Tree` (`DIRECTORY_ONLY`): its directories, read level by
    /// level, and their files. `None` when a directory is missing, does
    /// not decode, or there are more than [`MAX_OUTPUT_DIRECTORIES`].
    async fn directory_hierarchy(
        &self,
        instance: &str,
        root: &Digest,
    ) -> Result<Option<Vec<Digest>>> {
        let mut seen: HashSet<Digest> = HashSet::from([*root]);
        let mut level = vec![*root];
        let mut blobs = vec![*root];
        while !level.is_empty() {
            let fetched: Vec<(Digest, Result<Bytes>)> = stream::iter(level)
                .map(|digest| async move { (digest, self.cas.get(instance, &digest).await) })
                .buffer_unordered(DIRECTORY_READS_AT_ONCE)
                .collect()
                .await;
            let mut next = Vec::new();
            for (digest, bytes) in fetched {
                let bytes = match bytes {
                    Ok(bytes) => bytes,
                    Err(e) if e.code() == Code::NotFound => return Ok(None),
                    Err(e) => return Err(e.context(format!("reading output directory {digest}"))),
                };
                let children = Directory::decode(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|dir| {
                        directory_children(digest.function(), &dir).map_err(|e| e.to_string())
                    });
                let (files, dirs) = match children {
                    Ok(children) => children,
                    Err(e) => {
                        tracing::warn!(directory = %digest, error = %e, "output directory does not decode");
                        return Ok(None);
                    }
                };
                blobs.extend(files);
                for dir in dirs {
                    if seen.insert(dir) {
                        blobs.push(dir);
                        next.push(dir);
                    }
                }
            }
            if seen.len() > MAX_OUTPUT_DIRECTORIES {
                tracing::warn!(root = %root, "output directory has too many directories to check");
                return Ok(None);
            }
            level = next;
        }
        Ok(Some(blobs))
    }
}

#[async_trait]
impl ActionCache for CompletenessCheckingActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        let Some(result) = self.inner.get(instance, action_digest).await? else {
            return Ok(None);
        };
        if self
            .is_complete(instance, action_digest.function(), &result)
            .await?
        {
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
    use reapi_core::proto::remote_execution::{
        DirectoryNode, FileNode, OutputDirectory, OutputFile,
    };

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
    async fn a_root_directory_without_a_tree_is_walked_to_its_last_file() {
        let f = fixture();
        let deep_file = Digest::of_bytes(b"deep file");
        let leaf = Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(deep_file.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let leaf_digest = Digest::of_bytes(&leaf.encode_to_vec());
        // The leaf twice under the root: one copy to store and check.
        let root = Directory {
            directories: ["a", "b"]
                .map(|name| DirectoryNode {
                    name: name.into(),
                    digest: Some(leaf_digest.to_proto()),
                })
                .to_vec(),
            ..Default::default()
        };
        let root_digest = store(&f.cas, &root.encode_to_vec()).await;
        let result = ActionResult {
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                root_directory_digest: Some(root_digest.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = Digest::of_bytes(b"action");
        f.cache.put("", &action, &result).await.unwrap();
        assert!(f.cache.get("", &action).await.unwrap().is_none(), "no leaf");
        store(&f.cas, &leaf.encode_to_vec()).await;
        assert!(f.cache.get("", &action).await.unwrap().is_none(), "no file");
        store(&f.cas, b"deep file").await;
        assert_eq!(f.cache.get("", &action).await.unwrap(), Some(result));
    }

    #[tokio::test]
    async fn an_undecodable_root_directory_is_a_miss() {
        let f = fixture();
        let bogus = store(&f.cas, b"\xff\xff\xff\xff").await;
        let result = ActionResult {
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                root_directory_digest: Some(bogus.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = Digest::of_bytes(b"action");
        f.cache.put("", &action, &result).await.unwrap();
        assert!(f.cache.get("", &action).await.unwrap().is_none());
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
