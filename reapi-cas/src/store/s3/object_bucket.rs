//! `ObjectBucket` for `S3Store`: whole small objects at `{prefix}/{key}`,
//! for the action-cache backup.

use async_trait::async_trait;
use bytes::Bytes;
use reapi_core::{Error, Result};
use tonic::Code;

use super::error::{chain, sdk_error, Op};
use super::S3Store;
use crate::store::ObjectBucket;

#[async_trait]
impl ObjectBucket for S3Store {
    async fn get_object(&self, key: &str) -> Result<Option<Bytes>> {
        let key = self.keys.object(key);
        let op = Op {
            name: "GetObject",
            bucket: &self.bucket,
            key: &key,
        };
        let output = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) => {
                let err = sdk_error(err, op);
                return match err.code() {
                    Code::NotFound => Ok(None),
                    _ => Err(err),
                };
            }
        };
        let body = output.body.collect().await.map_err(|e| {
            Error::unavailable(format!(
                "S3 backend unavailable: reading the object body: {}",
                chain(&e)
            ))
            .context(format!("S3 GetObject s3://{}/{key}", self.bucket))
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
        self.target(self.keys.object(key)).put_object(data).await
    }
}
