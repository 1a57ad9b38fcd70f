//! `GcsConfig`: where the bucket is, how to authenticate and how to upload.
//! Deserialized from the `[storage.gcs]` TOML section; every field but
//! `bucket` has a default.

use std::path::PathBuf;

use reapi_core::{Error, Result};
use serde::Deserialize;

/// The public endpoint of the GCS JSON API.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// GCS accepts intermediate chunks of a resumable upload only in multiples
/// of this size.
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// Bucket name (required).
    pub bucket: String,
    /// Object-name prefix under which everything lives ("" for the bucket
    /// root; a trailing `/` is optional).
    pub prefix: String,
    /// JSON API endpoint; `None` is [`DEFAULT_ENDPOINT`]. An emulator is
    /// typically `http://127.0.0.1:4443`.
    pub endpoint: Option<String>,
    /// Send no credentials at all (for emulators).
    pub no_auth: bool,
    /// A service-account key file; `None` uses gcp_auth's default chain
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default
    /// credentials, the metadata server, the `gcloud` tool).
    pub credentials_file: Option<PathBuf>,
    /// Blobs larger than this are uploaded as they stream in, through a
    /// resumable upload session; smaller ones are buffered and sent in one
    /// request at commit.
    pub resumable_threshold: u64,
    /// Bytes per request of a resumable upload; a multiple of 256 KiB.
    pub chunk_size: u64,
    /// Requests in flight at once for one `find_missing` call.
    pub max_concurrency: usize,
}

impl Default for GcsConfig {
    fn default() -> Self {
        GcsConfig {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            no_auth: false,
            credentials_file: None,
            resumable_threshold: 8 * 1024 * 1024,
            chunk_size: 16 * 1024 * 1024,
            max_concurrency: 64,
        }
    }
}

impl GcsConfig {
    /// The endpoint without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
    }

    /// Rejects settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(Error::invalid_argument(format!("GCS config: {msg}")));
        if self.bucket.is_empty() {
            return invalid("`bucket` is required".into());
        }
        if self.bucket.contains('/') {
            return invalid(format!("bucket {:?} contains '/'", self.bucket));
        }
        let endpoint = self.endpoint();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return invalid(format!(
                "endpoint {endpoint:?} must start with https:// or http://"
            ));
        }
        if self.chunk_size == 0 || !self.chunk_size.is_multiple_of(CHUNK_GRANULARITY) {
            return invalid(format!(
                "chunk_size {} is not a positive multiple of 256 KiB ({CHUNK_GRANULARITY})",
                self.chunk_size
            ));
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let config: GcsConfig =
            serde_json::from_str(r#"{"bucket": "b", "no_auth": true}"#).unwrap();
        assert_eq!(config.bucket, "b");
        assert!(config.no_auth);
        assert_eq!(config.chunk_size, 16 << 20);
        assert_eq!(config.endpoint(), DEFAULT_ENDPOINT);
        config.validate().unwrap();
        assert!(serde_json::from_str::<GcsConfig>(r#"{"bucket": "b", "secret": 1}"#).is_err());
    }

    #[test]
    fn rejects_unusable_settings() {
        let ok = GcsConfig {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:1/".into()),
            ..GcsConfig::default()
        };
        assert_eq!(ok.endpoint(), "http://127.0.0.1:1");
        ok.validate().unwrap();
        for bad in [
            GcsConfig::default(),
            GcsConfig {
                chunk_size: 1000,
                ..ok.clone()
            },
            GcsConfig {
                endpoint: Some("storage.googleapis.com".into()),
                ..ok.clone()
            },
            GcsConfig {
                max_concurrency: 0,
                ..ok.clone()
            },
        ] {
            assert_eq!(
                bad.validate().unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
