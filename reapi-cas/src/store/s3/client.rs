//! Builds the SDK client: endpoint, credentials, retries and timeouts.
//!
//! Timeouts, decided here and nowhere else:
//! - connecting: [`CONNECT_TIMEOUT`], so an unreachable endpoint fails fast;
//! - a request without a large body (HEAD, GET until its headers, creating
//!   and aborting multipart uploads): [`ATTEMPT_TIMEOUT`] per attempt, so a
//!   server that accepts connections but never answers fails within
//!   seconds;
//! - a request carrying a body (PutObject, UploadPart): [`upload_timeouts`],
//!   which grows with the body at an assumed minimum of 1 MiB/s;
//! - CompleteMultipartUpload, which S3 may take minutes to process:
//!   [`COMPLETE_TIMEOUT`];
//! - a response body that stops flowing: the SDK's stalled-stream
//!   protection (on by default) ends it.
//!
//! Retries: the SDK's standard mode, [`S3Config::max_attempts`] attempts with
//! jittered exponential backoff from [`INITIAL_BACKOFF`] up to
//! [`MAX_BACKOFF`]. It retries 5xx, throttling, timeouts and connection
//! errors, never other 4xx. With the defaults a stopped server is reported
//! within about two seconds.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use reapi_core::Result;

use super::config::S3Config;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const COMPLETE_TIMEOUT: Duration = Duration::from_secs(300);
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The slowest upload expected to succeed, in bytes per second.
const MIN_UPLOAD_THROUGHPUT: u64 = 1024 * 1024;

pub(super) async fn build(config: &S3Config) -> Result<Client> {
    let http = https_client();
    let credentials = match (&config.access_key_id, &config.secret_access_key) {
        (Some(id), Some(secret)) => Some(SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            None,
            None,
            "reapi-s3-config",
        ))),
        // The standard chain: environment, profile files, web identity,
        // container and instance metadata.
        _ => aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http.clone())
            .load()
            .await
            .credentials_provider(),
    };
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .http_client(http)
        .force_path_style(config.path_style)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(config.max_attempts)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(base_timeouts())
        // Blobs are verified with their SHA-256 before upload; the SDK's
        // extra CRC checksums (and the aws-chunked encoding that carries
        // them) are not understood by every S3-compatible server.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder.set_credentials_provider(credentials);
    Ok(Client::from_conf(builder.build()))
}

/// HTTPS (and plain HTTP) with rustls on ring and the system's roots.
fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn base_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// Timeouts for a request that sends `bytes`.
pub(super) fn upload_timeouts(bytes: u64) -> aws_sdk_s3::config::Builder {
    let transfer = Duration::from_secs(bytes / MIN_UPLOAD_THROUGHPUT);
    attempt_timeout(ATTEMPT_TIMEOUT + transfer)
}

/// Timeouts for CompleteMultipartUpload.
pub(super) fn complete_timeouts() -> aws_sdk_s3::config::Builder {
    attempt_timeout(COMPLETE_TIMEOUT)
}

/// A per-request override; the connect timeout is repeated so that the
/// request keeps the client's connection pool.
fn attempt_timeout(timeout: Duration) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(timeout)
            .build(),
    )
}
