//! The HTTP side of `GcsStore`: one pooled hyper client (rustls on ring for
//! https endpoints, plain TCP for emulators), bearer tokens from gcp_auth,
//! and [`GcsClient::send`], which retries transient failures and maps the
//! rest to errors.
//!
//! Timeouts, decided here and nowhere else: connecting gives up after
//! [`CONNECT_TIMEOUT`]; a request must have its response headers within
//! [`REQUEST_TIMEOUT`] plus one second per MiB it uploads; a download body
//! may pause at most [`IDLE_TIMEOUT`] between frames (see `download.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gcp_auth::{CustomServiceAccount, TokenProvider};
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use reapi_core::{Error, Result};
use tonic::Code;
use tracing::warn;

use super::config::GcsConfig;
use super::errors::{self, error_chain};
use super::keys::escape;
use super::retry::{self, Backoff};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request to its response headers, for a request
/// without a large body.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between two frames of a response body.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Slowest upload tolerated: a request gets one more second per this many
/// bytes it sends.
const MIN_UPLOAD_RATE: usize = 1 << 20;
/// Largest error or metadata body read into memory.
const MAX_SMALL_BODY: usize = 64 * 1024;
/// The OAuth scope for reading and writing objects.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(super) struct GcsClient {
    http: HttpClient,
    endpoint: String,
    bucket: String,
    /// `None` with `no_auth`: requests carry no credentials.
    auth: Option<Arc<dyn TokenProvider>>,
}

/// One request, kept whole so that it can be sent again.
pub(super) struct Call {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// Statuses besides 2xx that the caller handles itself (308 of a
    /// resumable upload, 499 of a cancelled one).
    accept: &'static [u16],
    /// What the request is about, as error context ("gs://bucket/object").
    what: String,
    /// Whether a transient failure is tried again.
    retry: bool,
}

impl Call {
    pub(super) fn new(method: Method, url: String, what: String) -> Self {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
            accept: &[],
            what,
            retry: true,
        }
    }

    pub(super) fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        // Values are built from numbers and fixed strings: always valid.
        let value = HeaderValue::try_from(value.into()).expect("header value is ASCII");
        self.headers.push((name, value));
        self
    }

    pub(super) fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub(super) fn accept(mut self, statuses: &'static [u16]) -> Self {
        self.accept = statuses;
        self
    }

    /// One attempt only, for best-effort requests.
    pub(super) fn once(mut self) -> Self {
        self.retry = false;
        self
    }

    fn timeout(&self) -> Duration {
        REQUEST_TIMEOUT + Duration::from_secs((self.body.len() / MIN_UPLOAD_RATE) as u64)
    }
}

/// A failed attempt and whether another one may succeed.
struct Failure {
    error: Error,
    transient: bool,
}

impl GcsClient {
    pub(super) async fn new(config: &GcsConfig) -> Result<Self> {
        let endpoint = config.endpoint().to_owned();
        let tls = tls_config(endpoint.starts_with("https://"))?;
        let http = crate::http_client::build(tls, CONNECT_TIMEOUT, config.max_concurrency.max(8));
        let auth = if config.no_auth {
            None
        } else {
            Some(token_provider(config).await?)
        };
        Ok(GcsClient {
            http,
            endpoint,
            bucket: config.bucket.clone(),
            auth,
        })
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `gs://bucket/object`, for messages.
    pub(super) fn describe(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.bucket)
    }

    pub(super) fn bucket_url(&self) -> String {
        format!("{}/storage/v1/b/{}", self.endpoint, escape(&self.bucket))
    }

    /// The JSON API URL of an object (metadata; `?alt=media` for content).
    pub(super) fn object_url(&self, name: &str) -> String {
        format!("{}/o/{}", self.bucket_url(), escape(name))
    }

    /// The upload URL of an object (`media` or `resumable`).
    pub(super) fn upload_url(&self, name: &str, upload_type: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&name={}",
            self.endpoint,
            escape(&self.bucket),
            escape(name)
        )
    }

    /// Sends `call`, retrying transient failures (connection errors,
    /// timeouts, 408, 429, 5xx) with backoff. Returns the response of a 2xx
    /// or accepted status; any other status is an error with the call's
    /// context.
    pub(super) async fn send(&self, call: Call) -> Result<Response<Incoming>> {
        let mut backoff = Backoff::new();
        loop {
            let failure = match self.attempt(&call).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if failure.transient && call.retry {
                if let Some(delay) = backoff.next_delay() {
                    warn!(
                        target: "reapi_cas::gcs",
                        request = %call.what,
                        attempt = backoff.attempts() - 1,
                        error = %failure.error,
                        "GCS request failed; retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return Err(failure.error.context(call.what.clone()));
        }
    }

    async fn attempt(&self, call: &Call) -> std::result::Result<Response<Incoming>, Failure> {
        let permanent = |error| Failure {
            error,
            transient: false,
        };
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&call.url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(auth) = &self.auth {
            request = request.header(
                header::AUTHORIZATION,
                bearer(auth.as_ref()).await.map_err(permanent)?,
            );
        }
        let request = request
            .body(Full::new(call.body.clone()))
            .map_err(|e| permanent(Error::internal(format!("building a GCS request: {e}"))))?;
        let timeout = call.timeout();
        let response = match tokio::time::timeout(timeout, self.http.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(Failure {
                    error: errors::unavailable(&self.endpoint, &e),
                    transient: true,
                })
            }
            Err(_) => {
                return Err(Failure {
                    error: Error::unavailable(format!(
                        "GCS backend unavailable: {}: no response within {timeout:?}",
                        self.endpoint
                    )),
                    transient: true,
                })
            }
        };
        let status = response.status();
        if status.is_success() || call.accept.contains(&status.as_u16()) {
            return Ok(response);
        }
        let body = read_small_body(response).await.unwrap_or_default();
        Err(Failure {
            error: errors::from_status(status, &body),
            transient: retry::is_transient(status),
        })
    }
}

/// Reads a small response body (metadata, an error) whole.
pub(super) async fn read_small_body(response: Response<Incoming>) -> Result<Bytes> {
    let body = Limited::new(response.into_body(), MAX_SMALL_BODY);
    match tokio::time::timeout(IDLE_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(Error::unavailable(format!(
            "GCS backend unavailable: reading a response: {}",
            error_chain(e.as_ref())
        ))),
        Err(_) => Err(Error::unavailable(format!(
            "GCS backend unavailable: response body stalled for {IDLE_TIMEOUT:?}"
        ))),
    }
}

/// The `Authorization` header value, marked sensitive so that it never
/// shows in debug output.
async fn bearer(auth: &dyn TokenProvider) -> Result<HeaderValue> {
    let token = auth.token(&[SCOPE]).await.map_err(|e| {
        Error::new(
            Code::Unauthenticated,
            format!("getting a GCP access token: {}", error_chain(&e)),
        )
    })?;
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.as_str()))
        .map_err(|_| Error::new(Code::Unauthenticated, "the GCP access token is not ASCII"))?;
    value.set_sensitive(true);
    Ok(value)
}

async fn token_provider(config: &GcsConfig) -> Result<Arc<dyn TokenProvider>> {
    match &config.credentials_file {
        Some(path) => match CustomServiceAccount::from_file(path) {
            Ok(account) => Ok(Arc::new(account)),
            Err(e) => Err(Error::new(
                Code::Unauthenticated,
                format!(
                    "reading GCP service-account key {}: {}",
                    path.display(),
                    error_chain(&e)
                ),
            )),
        },
        None => gcp_auth::provider().await.map_err(|e| {
            Error::new(
                Code::Unauthenticated,
                format!(
                    "no GCP credentials found (set credentials_file, \
                     GOOGLE_APPLICATION_CREDENTIALS or gcloud application-default \
                     credentials; no_auth = true for an emulator): {}",
                    error_chain(&e)
                ),
            )
        }),
    }
}

/// TLS with rustls on ring (the provider the S3 client uses too) and the
/// system's root certificates; without roots for a plain-http endpoint, so
/// that an emulator works on a machine without CA certificates.
fn tls_config(https: bool) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("configuring TLS for GCS: {e}")))?;
    if !https {
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    }
    let builder = builder.with_native_roots().map_err(|e| {
        Error::failed_precondition(format!(
            "loading the system's root certificates for GCS over https: {e}"
        ))
    })?;
    Ok(builder.with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_credentials_file_is_a_clear_error() {
        let config = GcsConfig {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            credentials_file: Some("/nonexistent/key.json".into()),
            ..GcsConfig::default()
        };
        let err = GcsClient::new(&config).await.err().unwrap();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.to_string().contains("/nonexistent/key.json"), "{err}");
    }

    #[tokio::test]
    async fn urls_escape_names() {
        let config = GcsConfig {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9/".into()),
            no_auth: true,
            ..GcsConfig::default()
        };
        let client = GcsClient::new(&config).await.unwrap();
        assert_eq!(
            client.object_url("p/cas/x-1"),
            "http://127.0.0.1:9/storage/v1/b/b/o/p%2Fcas%2Fx-1"
        );
        assert_eq!(
            client.upload_url("p/x", "media"),
            "http://127.0.0.1:9/upload/storage/v1/b/b/o?uploadType=media&name=p%2Fx"
        );
        assert_eq!(client.describe("p/x"), "gs://b/p/x");
    }
}
