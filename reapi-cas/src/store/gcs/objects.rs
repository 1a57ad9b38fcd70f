//! Whole-object operations of the JSON API: stat (metadata GET), download,
//! one-request upload and the bucket check.

use bytes::Bytes;
use http::{header, Method};
use http_body_util::BodyExt;
use reapi_core::{Error, Result};
use tonic::Code;

use super::client::{read_small_body, Call, GcsClient, IDLE_TIMEOUT};
use super::errors::error_chain;
use super::keys::escape;

pub(super) const OCTET_STREAM: &str = "application/octet-stream";

impl GcsClient {
    /// The size of an object, or `None` when it does not exist.
    pub(super) async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let url = format!("{}?fields=size", self.object_url(name));
        let call = Call::new(Method::GET, url, self.describe(name));
        let response = match self.send(call).await {
            Ok(response) => response,
            Err(e) if e.code() == Code::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = read_small_body(response).await?;
        let size = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["size"].as_str().and_then(|s| s.parse::<u64>().ok()));
        match size {
            Some(size) => Ok(Some(size)),
            None => Err(Error::internal(format!(
                "{}: GCS metadata has no size: {}",
                self.describe(name),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }

    /// An object's content, or `None` when it does not exist. For small
    /// objects: the whole body is held in memory.
    pub(super) async fn download(&self, name: &str) -> Result<Option<Bytes>> {
        let url = format!("{}?alt=media", self.object_url(name));
        let call = Call::new(Method::GET, url, self.describe(name));
        let response = match self.send(call).await {
            Ok(response) => response,
            Err(e) if e.code() == Code::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let allowed = IDLE_TIMEOUT + std::time::Duration::from_secs(length >> 20);
        match tokio::time::timeout(allowed, response.into_body().collect()).await {
            Ok(Ok(collected)) => Ok(Some(collected.to_bytes())),
            Ok(Err(e)) => Err(Error::unavailable(format!(
                "GCS backend unavailable: {}: reading the object: {}",
                self.describe(name),
                error_chain(&e)
            ))),
            Err(_) => Err(Error::unavailable(format!(
                "GCS backend unavailable: {}: download took longer than {allowed:?}",
                self.describe(name)
            ))),
        }
    }

    /// Creates or replaces an object with `data` in one request
    /// (`uploadType=media`).
    pub(super) async fn upload(&self, name: &str, data: Bytes) -> Result<()> {
        let call = Call::new(
            Method::POST,
            self.upload_url(name, "media"),
            self.describe(name),
        )
        .header(header::CONTENT_TYPE, OCTET_STREAM)
        .body(data);
        let response = self.send(call).await?;
        // Drain the object resource so that the connection goes back to the pool.
        let _ = read_small_body(response).await;
        Ok(())
    }

    /// Fails with a clear error unless the bucket exists and the
    /// credentials may list objects under `prefix`. Listing (one result at
    /// most) needs only the object permissions the store needs anyway,
    /// where a bucket GET would also need `storage.buckets.get`, which
    /// object-level roles lack.
    pub(super) async fn check_bucket(&self, prefix: &str) -> Result<()> {
        let url = format!(
            "{}/o?maxResults=1&prefix={}&fields=kind",
            self.bucket_url(),
            escape(prefix)
        );
        let what = format!(
            "checking GCS bucket {:?} at {}",
            self.bucket(),
            self.endpoint()
        );
        let call = Call::new(Method::GET, url, what);
        let response = self.send(call).await.map_err(|e| {
            if e.code() == Code::NotFound {
                Error::not_found(format!(
                    "GCS bucket {:?} does not exist at {}",
                    self.bucket(),
                    self.endpoint()
                ))
            } else {
                e
            }
        })?;
        read_small_body(response).await?;
        Ok(())
    }
}
