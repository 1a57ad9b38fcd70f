//! One multipart upload: parts go up as they are handed over, a bounded
//! number at a time, and the object appears only at `complete`.
//!
//! An upload that is neither completed nor aborted when dropped (the
//! writer was dropped, or the task holding it cancelled) is aborted in the
//! background, so its parts do not linger. A process killed mid-upload
//! cannot do that: give the bucket a lifecycle rule that aborts incomplete
//! multipart uploads after a day.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use reapi_core::{Error, Result};
use tokio::task::JoinSet;

use super::client::{complete_timeouts, upload_timeouts};
use super::error::{sdk_error, Op};

/// Parts uploading at once per writer, besides the one being filled.
pub(super) const PARTS_IN_FLIGHT: usize = 2;

/// S3's limit on the number of parts.
pub(super) const MAX_PARTS: u64 = 10_000;

pub(super) struct MultipartUpload {
    client: Client,
    bucket: String,
    key: String,
    /// `None` once completed or aborted.
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart>>,
    uploaded: Vec<CompletedPart>,
}

impl MultipartUpload {
    pub async fn create(client: Client, bucket: String, key: String) -> Result<Self> {
        let created = client
            .create_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| sdk_error(e, op("CreateMultipartUpload", &bucket, &key)))?;
        let upload_id = created.upload_id().map(str::to_string).ok_or_else(|| {
            Error::internal("CreateMultipartUpload returned no upload id")
                .context(format!("S3 s3://{bucket}/{key}"))
        })?;
        Ok(MultipartUpload {
            client,
            bucket,
            key,
            upload_id: Some(upload_id),
            next_part: 1,
            in_flight: JoinSet::new(),
            uploaded: Vec::new(),
        })
    }

    /// Starts uploading the next part, first waiting for a slot.
    pub async fn upload_part(&mut self, data: Bytes) -> Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.join_one().await?;
        }
        let upload_id = self.upload_id.clone().expect("upload is open");
        let part_number = self.next_part;
        self.next_part += 1;
        let len = data.len() as u64;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(len as i64)
            .body(ByteStream::from(data))
            .customize()
            .config_override(upload_timeouts(len));
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        self.in_flight.spawn(async move {
            let uploaded = request
                .send()
                .await
                .map_err(|e| sdk_error(e, op("UploadPart", &bucket, &key)))?;
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(uploaded.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(joined) = self.in_flight.join_next().await {
            let part =
                joined.map_err(|e| Error::internal(format!("part upload task failed: {e}")))??;
            self.uploaded.push(part);
        }
        Ok(())
    }

    /// Waits for the parts in flight and makes the object visible.
    pub async fn complete(mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let upload_id = self.upload_id.clone().expect("upload is open");
        let mut parts = std::mem::take(&mut self.uploaded);
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            .config_override(complete_timeouts())
            .send()
            .await
            .map_err(|e| sdk_error(e, op("CompleteMultipartUpload", &self.bucket, &self.key)))?;
        self.upload_id = None;
        Ok(())
    }

    /// Cancels the parts in flight and aborts the upload, waiting for S3
    /// to confirm.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload_id.take() {
            Some(upload_id) => {
                let in_flight = std::mem::take(&mut self.in_flight);
                abort(
                    self.client.clone(),
                    self.bucket.clone(),
                    self.key.clone(),
                    upload_id,
                    in_flight,
                )
                .await
            }
            None => Ok(()),
        }
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let in_flight = std::mem::take(&mut self.in_flight);
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = abort(client, bucket, key, upload_id, in_flight).await {
                        tracing::warn!("aborting an abandoned multipart upload: {err}");
                    }
                });
            }
            Err(_) => tracing::warn!(
                "multipart upload {upload_id} of s3://{bucket}/{key} dropped outside a Tokio \
                 runtime; it stays incomplete until a lifecycle rule removes it"
            ),
        }
    }
}

async fn abort(
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    mut in_flight: JoinSet<Result<CompletedPart>>,
) -> Result<()> {
    // A part still uploading when the upload is aborted could survive it.
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
    client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(upload_id)
        .send()
        .await
        .map_err(|e| sdk_error(e, op("AbortMultipartUpload", &bucket, &key)))?;
    Ok(())
}

fn op<'a>(name: &'static str, bucket: &'a str, key: &'a str) -> Op<'a> {
    Op { name, bucket, key }
}
