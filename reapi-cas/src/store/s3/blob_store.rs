//! `BlobStore` for `S3Store`: HEAD for existence, GET (ranged) for reads,
//! PUT or multipart upload for writes, each verified before it is visible.

use std::collections::HashSet;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reapi_core::blob_store::{collect_stream, BlobStore, BlobWriter, ChunkStream};
use reapi_core::{Digest, Result};
use tonic::Code;

use super::error::{sdk_error, Op};
use super::read::read;
use super::writer::S3Writer;
use super::S3Store;

#[async_trait]
impl BlobStore for S3Store {
    /// Concurrent HEADs, at most `max_concurrency` at a time, one per
    /// distinct digest. S3 keeps no access times: asking does not refresh
    /// a blob's age (see the module docs on lifecycle rules).
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let unique: HashSet<Digest> = digests
            .iter()
            .filter(|d| !d.is_empty_blob())
            .copied()
            .collect();
        let checks = futures::stream::iter(unique)
            .map(|digest| async move {
                let present = self.exists(instance, &digest).await?;
                Ok::<_, reapi_core::Error>((!present).then_some(digest))
            })
            .buffer_unordered(self.config.max_concurrency);
        let missing: HashSet<Digest> = checks
            .try_filter_map(|d| async move { Ok(d) })
            .try_collect()
            .await?;
        Ok(digests
            .iter()
            .filter(|d| missing.contains(d))
            .copied()
            .collect())
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        if digest.is_empty_blob() {
            return Ok(Bytes::new());
        }
        let stream = self.read(instance, digest, 0, None).await?;
        collect_stream(stream, digest.size()).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        let key = self.keys.blob(instance, digest)?;
        read(&self.client, &self.bucket, &key, digest, offset, limit).await
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        let key = self.keys.blob(instance, digest)?;
        digest.verify_content(&data)?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        self.target(key).put(data).await
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        let key = self.keys.blob(instance, digest)?;
        Ok(Box::new(S3Writer::new(self.target(key), *digest)))
    }
}

impl S3Store {
    /// Whether the blob's object exists (HEAD).
    async fn exists(&self, instance: &str, digest: &Digest) -> Result<bool> {
        let key = self.keys.blob(instance, digest)?;
        let head = self
            .client
            .head_object()
            .bucket(&*self.bucket)
            .key(&key)
            .send()
            .await;
        match head {
            Ok(_) => Ok(true),
            Err(err) => {
                let op = Op {
                    name: "HeadObject",
                    bucket: &self.bucket,
                    key: &key,
                };
                let err = sdk_error(err, op);
                match err.code() {
                    Code::NotFound => Ok(false),
                    _ => Err(err),
                }
            }
        }
    }
}
