//! `S3Writer`: a streamed write that is hashed as it arrives and becomes
//! visible only after its digest checked out.
//!
//! Below the multipart threshold the data is buffered and sent with one
//! PutObject at commit, after verification. From the threshold on, parts go
//! up as they fill; commit verifies size and hash before
//! CompleteMultipartUpload and aborts the upload on a mismatch. Memory held
//! is the part being filled plus at most
//! [`PARTS_IN_FLIGHT`](super::multipart::PARTS_IN_FLIGHT) parts uploading.
//! A writer dropped without commit aborts its multipart upload.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reapi_core::blob_store::BlobWriter;
use reapi_core::{Digest, DigestHasher, Error, Result};

use super::multipart::MultipartUpload;
use super::put::Target;

pub(super) struct S3Writer {
    target: Target,
    digest: Digest,
    hasher: DigestHasher,
    /// Data not yet handed to S3: the whole blob below the threshold, the
    /// current part above it.
    buffer: BytesMut,
    /// `Some(part size)` for a multipart write.
    part_size: Option<usize>,
    /// Created with the first full part.
    upload: Option<MultipartUpload>,
    /// A part upload failed; the writer can only be dropped.
    failed: bool,
}

impl S3Writer {
    pub fn new(target: Target, digest: Digest) -> Self {
        let part_size = (!digest.is_empty_blob() && target.uses_multipart(digest.size()))
            .then(|| target.part_size_for(digest.size()) as usize);
        S3Writer {
            target,
            digest,
            hasher: digest.function().hasher(),
            buffer: BytesMut::new(),
            part_size,
            upload: None,
            failed: false,
        }
    }

    /// Hands the full buffer to the multipart upload, creating it first.
    async fn send_part(&mut self) -> Result<()> {
        let part = std::mem::take(&mut self.buffer).freeze();
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self.upload.insert(
                MultipartUpload::create(
                    self.target.client.clone(),
                    self.target.bucket.clone(),
                    self.target.key.clone(),
                )
                .await?,
            ),
        };
        upload.upload_part(part).await
    }

    async fn write_parts(&mut self, mut chunk: Bytes, part_size: usize) -> Result<()> {
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer.reserve(part_size);
            }
            let take = chunk.len().min(part_size - self.buffer.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.failed {
            return Err(Error::internal(format!(
                "blob {}: an earlier part upload failed",
                self.digest
            )));
        }
        let total = self.hasher.bytes_hashed() + chunk.len() as u64;
        if total > self.digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {}: received {total} bytes, more than its size",
                self.digest
            )));
        }
        self.hasher.update(&chunk);
        match self.part_size {
            None => {
                if self.buffer.capacity() == 0 {
                    self.buffer.reserve(self.digest.size() as usize);
                }
                self.buffer.extend_from_slice(&chunk);
                Ok(())
            }
            Some(part_size) => {
                let result = self.write_parts(chunk, part_size).await;
                self.failed = result.is_err();
                result
            }
        }
    }

    fn committed_size(&self) -> u64 {
        self.hasher.bytes_hashed()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.failed {
            return Err(Error::internal(format!(
                "blob {}: an earlier part upload failed",
                self.digest
            )));
        }
        let verified = std::mem::take(&mut self.hasher).verify(&self.digest);
        if let Err(err) = verified {
            if let Some(upload) = self.upload.take() {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!("{err}; aborting its multipart upload also failed: {abort}");
                }
            }
            return Err(err);
        }
        if self.digest.is_empty_blob() {
            return Ok(());
        }
        if self.part_size.is_none() {
            let data = std::mem::take(&mut self.buffer).freeze();
            return self.target.put_object(data).await;
        }
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        match self.upload.take() {
            Some(upload) => upload.complete().await,
            None => Err(Error::internal(format!(
                "blob {}: multipart write without parts",
                self.digest
            ))),
        }
    }
}
