//! `S3Config`: where the bucket is and how to talk to it; the
//! `[storage.s3]` section of the server's TOML file.

use std::fmt;

use reapi_core::{Error, Result};
use serde::Deserialize;

const MIB: u64 = 1024 * 1024;

/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL for servers other than AWS (`http://127.0.0.1:8333`);
    /// `None` is AWS itself, found from the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Key prefix under which everything lives (`reapi` puts blobs under
    /// `reapi/cas/...`); empty for the bucket's root.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual hosts
    /// (`bucket.endpoint/key`); most servers other than AWS need it.
    pub path_style: bool,
    /// Static credentials. When absent the standard AWS chain is used
    /// (environment, shared profile files, web identity, container and
    /// instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Streamed writes of blobs at least this large use multipart uploads;
    /// smaller ones are buffered and sent with one PutObject.
    pub multipart_threshold: u64,
    /// Size of a multipart part, and so about the memory a large write
    /// holds (plus the parts in flight). Raised for very large blobs to
    /// stay within S3's 10,000 parts.
    pub part_size: u64,
    /// Concurrent HEAD requests of one FindMissingBlobs call.
    pub max_concurrency: usize,
    /// Attempts per request, first included; transient failures (5xx,
    /// throttling, timeouts, refused connections) are retried with
    /// exponential backoff, other client errors never.
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            multipart_threshold: 16 * MIB,
            part_size: 16 * MIB,
            max_concurrency: 64,
            max_attempts: 4,
        }
    }
}

impl S3Config {
    /// Checks the values that would otherwise fail on the first request.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(Error::invalid_argument(msg).context("S3 configuration"));
        if self.bucket.is_empty() {
            return invalid("bucket is empty".into());
        }
        if self.region.is_empty() {
            return invalid("region is empty".into());
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return invalid(format!(
                    "endpoint {endpoint:?} is not an http:// or https:// URL"
                ));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return invalid(
                "access_key_id and secret_access_key must be given together (or neither, \
                 for the standard AWS credential chain)"
                    .into(),
            );
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return invalid(format!(
                "part_size {} is outside S3's limits {MIN_PART_SIZE}..={MAX_PART_SIZE}",
                self.part_size
            ));
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// Shows everything but the secret.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> S3Config {
        S3Config {
            bucket: "b".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI".into()),
            ..S3Config::default()
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown = format!("{:?}", config());
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    }

    #[test]
    fn validates_limits_and_credential_pairs() {
        config().validate().unwrap();
        let cases = [
            S3Config {
                bucket: String::new(),
                ..config()
            },
            S3Config {
                secret_access_key: None,
                ..config()
            },
            S3Config {
                part_size: MIN_PART_SIZE - 1,
                ..config()
            },
            S3Config {
                max_concurrency: 0,
                ..config()
            },
            S3Config {
                endpoint: Some("127.0.0.1:8333".into()),
                ..config()
            },
        ];
        for case in cases {
            let err = case.validate().unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{case:?}");
        }
    }
}

#[cfg(test)]
mod toml_tests {
    use super::*;

    #[test]
    fn parses_a_toml_section_with_defaults() {
        let config: S3Config = toml::from_str(
            r#"
            endpoint = "http://127.0.0.1:8333"
            bucket = "cache"
            path_style = true
            "#,
        )
        .unwrap();
        assert_eq!(config.bucket, "cache");
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.part_size, 16 * MIB);
        assert!(config.access_key_id.is_none());
        let unknown = toml::from_str::<S3Config>("bucket = \"b\"\nsecret = \"x\"\n");
        assert!(unknown.is_err());
    }
}
