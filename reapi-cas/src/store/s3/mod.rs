//! `S3Store`: blobs in an S3 bucket (AWS or any S3-compatible server), on
//! `aws-sdk-s3`.
//!
//! One file per job: `../s3_config.rs` (the `[storage.s3]` section, built
//! with or without the `s3` feature), `client.rs`
//! (SDK client, retries, timeouts), `keys.rs` (key layout), `error.rs`
//! (S3 failures as gRPC codes), `read.rs` (streaming ranged GETs),
//! `writer.rs` + `multipart.rs` + `put.rs` (verified uploads),
//! `blob_store.rs` and `object_bucket.rs` (the trait implementations).
//!
//! Keys: `{prefix}/cas/{hash}-{size}` for the default instance,
//! `{prefix}/instances/{instance_dir}/cas/{hash}-{size}` for a named one.
//! Every write is checked against its digest before the object appears; a
//! write that fails or is dropped leaves no object.
//!
//! Permissions needed: s3:GetObject, s3:PutObject, s3:AbortMultipartUpload
//! and s3:ListBucket (without it S3 answers HEAD of an absent key with 403
//! rather than 404, and FindMissingBlobs fails with PERMISSION_DENIED).
//!
//! S3 keeps no access times, so FindMissingBlobs does not refresh a blob's
//! age: expire blobs with a bucket lifecycle rule well past the longest
//! build (and add one that aborts incomplete multipart uploads after a day,
//! for processes killed mid-upload).

mod blob_store;
mod client;
mod error;
mod keys;
mod multipart;
mod object_bucket;
mod put;
mod read;
mod writer;

use std::sync::Arc;

use aws_sdk_s3::Client;
use reapi_core::Result;

use super::s3_config as config;
pub use super::s3_config::S3Config;
use error::{sdk_error, Op};
use keys::KeyLayout;
use put::Target;

/// Blobs in an S3 bucket. Cheap to share behind an `Arc`; the SDK client
/// inside pools its connections.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: Arc<str>,
    keys: KeyLayout,
    config: Arc<S3Config>,
}

impl S3Store {
    /// Builds the client. Makes no request: call [`S3Store::check`] to find
    /// out at startup whether the bucket is reachable.
    pub async fn new(config: S3Config) -> Result<S3Store> {
        config.validate()?;
        let client = client::build(&config).await?;
        Ok(S3Store {
            client,
            bucket: Arc::from(config.bucket.as_str()),
            keys: KeyLayout::new(&config.prefix),
            config: Arc::new(config),
        })
    }

    /// HeadBucket: OK when the bucket exists and the credentials may use
    /// it; otherwise an error that says which (missing bucket,
    /// FAILED_PRECONDITION; rejected credentials, PERMISSION_DENIED;
    /// unreachable endpoint, UNAVAILABLE).
    pub async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&*self.bucket)
            .send()
            .await
            .map_err(|err| {
                let err = sdk_error(
                    err,
                    Op {
                        name: "HeadBucket",
                        bucket: &self.bucket,
                        key: "",
                    },
                );
                // HEAD responses carry no error code: a 404 here is the bucket.
                match err.code() {
                    tonic::Code::NotFound => reapi_core::Error::failed_precondition(format!(
                        "S3 bucket {:?} does not exist{}",
                        &*self.bucket,
                        self.config
                            .endpoint
                            .as_ref()
                            .map(|e| format!(" at {e}"))
                            .unwrap_or_default()
                    )),
                    _ => err,
                }
            })?;
        Ok(())
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The underlying SDK client, for tools and tests (creating buckets).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn target(&self, key: String) -> Target {
        Target {
            client: self.client.clone(),
            bucket: self.bucket.to_string(),
            key,
            multipart_threshold: self.config.multipart_threshold,
            part_size: self.config.part_size,
        }
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
