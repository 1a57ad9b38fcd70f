//! `GcsStore`: blobs as objects in a Google Cloud Storage bucket, spoken to
//! over the JSON API with hyper and authenticated with gcp_auth tokens.
//!
//! Object names: `{prefix}/cas/{hash}-{size}` for the default instance,
//! `{prefix}/instances/{instance_dir::encode(name)}/cas/{hash}-{size}` for a
//! named one (see `keys.rs`). Every write is verified before the object
//! exists: small blobs are uploaded whole after hashing, large ones stream
//! through a resumable session whose last chunk is sent only after the hash
//! matched (see `writer.rs`).
//!
//! One file per job: `../gcs_config.rs` (settings, built with or without
//! the `gcs` feature), `client.rs` (HTTP, auth,
//! retries, timeouts), `errors.rs` (status -> gRPC code), `retry.rs`
//! (backoff), `keys.rs` (object names), `objects.rs` (stat, whole download
//! and upload), `download.rs` (ranged streams), `resumable.rs` (upload
//! sessions), `writer.rs` (`BlobWriter`).

mod client;
mod download;
mod errors;
mod keys;
mod objects;
mod resumable;
mod retry;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reapi_core::blob_store::{collect_stream, BlobStore, BlobWriter, ChunkStream};
use reapi_core::{Digest, ErrorExt, Result};

use super::gcs_config as config;
pub use super::gcs_config::{GcsConfig, CHUNK_GRANULARITY, DEFAULT_ENDPOINT};

use self::client::GcsClient;
use self::keys::Keys;
use self::writer::GcsWriter;
use super::bucket::ObjectBucket;
use super::read_range::slice_range;

pub struct GcsStore {
    client: Arc<GcsClient>,
    keys: Keys,
    resumable_threshold: u64,
    chunk_size: usize,
    max_concurrency: usize,
}

impl GcsStore {
    /// Builds the client and, unless `no_auth`, finds credentials. Sends no
    /// request to the bucket: call [`GcsStore::check`] for that.
    pub async fn new(config: GcsConfig) -> Result<Self> {
        config.validate()?;
        let client = GcsClient::new(&config).await?;
        Ok(GcsStore {
            client: Arc::new(client),
            keys: Keys::new(&config.prefix),
            resumable_threshold: config.resumable_threshold,
            chunk_size: config.chunk_size as usize,
            max_concurrency: config.max_concurrency,
        })
    }

    /// One cheap request to the bucket (a listing of at most one object
    /// under the prefix): a clear error at startup when the endpoint is
    /// unreachable (UNAVAILABLE), the bucket missing (NOT_FOUND) or the
    /// credentials refused (UNAUTHENTICATED, PERMISSION_DENIED).
    pub async fn check(&self) -> Result<()> {
        self.client.check_bucket(self.keys.prefix()).await
    }

    pub fn bucket(&self) -> &str {
        self.client.bucket()
    }

    fn blob_name(&self, instance: &str, digest: &Digest) -> Result<String> {
        self.keys.blob(instance, digest)
    }

    async fn is_present(&self, instance: &str, digest: &Digest) -> Result<bool> {
        if digest.is_empty_blob() {
            return Ok(true);
        }
        let name = self.blob_name(instance, digest)?;
        // An object of the wrong size is damaged: report it missing so that
        // the client uploads it again.
        Ok(self.client.stat(&name).await? == Some(digest.size()))
    }
}

#[async_trait]
impl BlobStore for GcsStore {
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let checks = digests.iter().copied().map(|digest| async move {
            let present = self.is_present(instance, &digest).await?;
            Ok::<_, reapi_core::Error>((!present).then_some(digest))
        });
        let missing: Vec<Option<Digest>> = futures::stream::iter(checks)
            .buffered(self.max_concurrency)
            .try_collect()
            .await?;
        Ok(missing.into_iter().flatten().collect())
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
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
        let range = slice_range(digest, offset, limit)?;
        if digest.is_empty_blob() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let name = self.blob_name(instance, digest)?;
        let context = || format!("reading blob {digest} of instance {instance:?}");
        if range.is_empty() {
            // Nothing to download (a range GCS would refuse), but a missing
            // blob is still NOT_FOUND.
            if self
                .client
                .stat(&name)
                .await
                .with_context(context)?
                .is_none()
            {
                return Err(reapi_core::Error::not_found(format!(
                    "blob {digest} not found in {}",
                    self.client.describe(&name)
                )));
            }
            return Ok(Box::pin(futures::stream::empty()));
        }
        download::open(
            self.client.clone(),
            name,
            range.start as u64,
            range.end as u64,
        )
        .await
        .with_context(context)
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        digest.verify_content(&data)?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        let name = self.blob_name(instance, digest)?;
        self.client.upload(&name, data).await
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        let name = self.blob_name(instance, digest)?;
        let chunk_size = (digest.size() > self.resumable_threshold).then_some(self.chunk_size);
        Ok(Box::new(GcsWriter::new(
            self.client.clone(),
            name,
            *digest,
            chunk_size,
        )))
    }
}

#[async_trait]
impl ObjectBucket for GcsStore {
    async fn get_object(&self, key: &str) -> Result<Option<Bytes>> {
        let name = self.keys.object(key)?;
        self.client.download(&name).await
    }

    async fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
        let name = self.keys.object(key)?;
        self.client.upload(&name, data).await
    }
}
