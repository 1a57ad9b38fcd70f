//! Object-storage buckets (S3, GCS) as the external stores and the
//! action-cache backup see them: whole small objects by key.
//!
//! Blob traffic goes through each store's `BlobStore` implementation, which
//! streams; this trait is for the small objects that sit beside the blobs
//! (action results).

use async_trait::async_trait;
use bytes::Bytes;
use reapi_core::Result;

#[async_trait]
pub trait ObjectBucket: Send + Sync + 'static {
    /// The object at `key` (relative to the store's prefix), or `None`.
    async fn get_object(&self, key: &str) -> Result<Option<Bytes>>;

    /// Writes the object at `key` whole, replacing any previous one.
    async fn put_object(&self, key: &str, data: Bytes) -> Result<()>;
}
