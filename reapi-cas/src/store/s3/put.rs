//! Uploading a whole buffer that was already verified: one PutObject, or
//! a multipart upload of slices of it when it is large.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use reapi_core::Result;

use super::client::upload_timeouts;
use super::error::{sdk_error, Op};
use super::multipart::{MultipartUpload, MAX_PARTS};

/// Where a write goes and how it is split.
#[derive(Clone)]
pub(super) struct Target {
    pub client: Client,
    pub bucket: String,
    pub key: String,
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl Target {
    /// The part size for an object of `size` bytes: the configured one,
    /// raised (to whole MiB) when the object would need more than S3's
    /// 10,000 parts.
    pub fn part_size_for(&self, size: u64) -> u64 {
        const MIB: u64 = 1024 * 1024;
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }

    pub fn uses_multipart(&self, size: u64) -> bool {
        size >= self.multipart_threshold
    }

    /// Uploads `data` as the whole object.
    pub async fn put(&self, data: Bytes) -> Result<()> {
        if !self.uses_multipart(data.len() as u64) {
            return self.put_object(data).await;
        }
        let part_size = self.part_size_for(data.len() as u64) as usize;
        let mut upload =
            MultipartUpload::create(self.client.clone(), self.bucket.clone(), self.key.clone())
                .await?;
        for start in (0..data.len()).step_by(part_size) {
            let end = (start + part_size).min(data.len());
            upload.upload_part(data.slice(start..end)).await?;
        }
        upload.complete().await
    }

    /// One PutObject.
    pub async fn put_object(&self, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_length(len as i64)
            .body(ByteStream::from(data))
            .customize()
            .config_override(upload_timeouts(len))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    e,
                    Op {
                        name: "PutObject",
                        bucket: &self.bucket,
                        key: &self.key,
                    },
                )
            })?;
        Ok(())
    }
}
