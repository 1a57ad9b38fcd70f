//! Fetching a URI for FetchBlob. The server downloads what a client names,
//! so it does so only over http and https, only from the hosts an operator
//! allowed, within a size and a time limit. A download is streamed to a
//! file while it is hashed (memory stays bounded whatever its size), its
//! checksum, when the client gave one, is checked, and only then is it
//! stored in the CAS: a download that fails for any reason leaves nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::ConfigBuilderExt;
use reapi_core::digest::DigestFunction;
use reapi_core::{BlobStore, Digest, Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tonic::Code;

use super::qualifiers::Checksum;
use crate::http_client::error_chain;

/// Redirects followed before a fetch gives up.
const MAX_REDIRECTS: usize = 5;

/// How much of a download is sent to the CAS per write.
const STORE_CHUNK: usize = 1 << 20;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server may fetch.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Hosts it may fetch from: a name (`github.com`), every subdomain of
    /// one (`*.example.com`), or any host (`*`). Empty: it never fetches,
    /// and answers only from what was pushed or fetched before.
    pub allowed_hosts: Vec<String>,
    /// Largest download, in bytes.
    pub max_size: u64,
    /// Longest download; a request may ask for less.
    pub timeout: Duration,
    /// Where downloads are written while they arrive.
    pub scratch_dir: PathBuf,
}

impl FetchPolicy {
    /// Whether `host` is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            if allowed == "*" {
                return true;
            }
            match allowed.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => host == allowed,
            }
        })
    }
}

type HttpClient = crate::http_client::HttpsClient<Empty<Bytes>>;

pub struct Fetcher {
    policy: FetchPolicy,
    client: HttpClient,
    store: Arc<dyn BlobStore>,
}

impl Fetcher {
    /// A fetcher storing into `store`; clears what an earlier run left in
    /// the scratch directory.
    pub fn new(policy: FetchPolicy, store: Arc<dyn BlobStore>) -> Result<Fetcher> {
        let _ = std::fs::remove_dir_all(&policy.scratch_dir);
        std::fs::create_dir_all(&policy.scratch_dir)
            .map_err(|e| Error::io(format!("creating {}", policy.scratch_dir.display()), e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("configuring TLS for fetches: {e}")))?;
        let tls = match builder.clone().with_native_roots() {
            Ok(builder) => builder.with_no_client_auth(),
            Err(e) => {
                tracing::warn!("no system root certificates ({e}): https fetches will fail");
                builder
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let client = crate::http_client::build(tls, CONNECT_TIMEOUT, 4);
        Ok(Fetcher {
            policy,
            client,
            store,
        })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Downloads `uri` into the CAS of `instance` and returns its digest,
    /// made with `function`. `headers` go with the request to the URI's
    /// origin, and with redirects that stay on it.
    /// Errors carry the code FetchBlob reports: PERMISSION_DENIED for a
    /// host not allowed or an origin refusing, NOT_FOUND, DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED over the size limit, ABORTED for a checksum
    /// mismatch, INVALID_ARGUMENT for a URI it cannot fetch.
    pub async fn fetch(
        &self,
        instance: &str,
        function: DigestFunction,
        uri: &str,
        headers: &[(HeaderName, HeaderValue)],
        checksum: Option<&Checksum>,
        timeout: Option<Duration>,
    ) -> Result<Digest> {
        let limit = timeout.map_or(self.policy.timeout, |t| t.min(self.policy.timeout));
        let deadline = Instant::now() + limit;
        let download = Download::new(&self.policy.scratch_dir, function);
        let fetched =
            tokio::time::timeout_at(deadline, self.download(uri, headers, &download, checksum))
                .await
                .map_err(|_| {
                    Error::deadline_exceeded(format!("fetching {uri} took longer than {limit:?}"))
                })??;
        self.store_download(instance, &download, &fetched).await?;
        Ok(fetched)
    }

    async fn download(
        &self,
        uri: &str,
        headers: &[(HeaderName, HeaderValue)],
        download: &Download,
        checksum: Option<&Checksum>,
    ) -> Result<Digest> {
        let mut current: http::Uri = uri
            .parse()
            .map_err(|e| Error::invalid_argument(format!("URI {uri:?}: {e}")))?;
        let origin = (current.scheme().cloned(), current.authority().cloned());
        for _ in 0..=MAX_REDIRECTS {
            self.check_allowed(&current)?;
            let mut request = http::Request::get(current.clone())
                .header(http::header::USER_AGENT, "reapi-asset-fetch")
                .body(Empty::new())
                .map_err(|e| Error::invalid_argument(format!("URI {current}: {e}")))?;
            // The client's headers are usually its credentials for this
            // origin: a redirect elsewhere does not get them.
            if (current.scheme().cloned(), current.authority().cloned()) == origin {
                for (name, value) in headers {
                    request.headers_mut().insert(name.clone(), value.clone());
                }
            }
            let response = self.client.request(request).await.map_err(|e| {
                Error::unavailable(format!("fetching {current}: {}", error_chain(&e)))
            })?;
            let status = response.status();
            if status.is_redirection() {
                current = redirect_target(&current, response.headers())?;
                continue;
            }
            if !status.is_success() {
                let code = match status.as_u16() {
                    404 | 410 => Code::NotFound,
                    401 | 403 => Code::PermissionDenied,
                    429 => Code::ResourceExhausted,
                    _ => Code::Unavailable,
                };
                return Err(Error::new(
                    code,
                    format!("{current} answered HTTP {status}"),
                ));
            }
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(length) = declared.filter(|&l| l > self.policy.max_size) {
                return Err(self.too_large(&current, length));
            }
            return self
                .receive(&current, response.into_body(), download, checksum)
                .await;
        }
        Err(Error::unavailable(format!(
            "fetching {uri}: more than {MAX_REDIRECTS} redirects"
        )))
    }

    async fn receive(
        &self,
        uri: &http::Uri,
        mut body: hyper::body::Incoming,
        download: &Download,
        checksum: Option<&Checksum>,
    ) -> Result<Digest> {
        let mut file = tokio::fs::File::create(&download.path)
            .await
            .map_err(|e| Error::io("creating a download file", e))?;
        let mut digest = download.function.hasher();
        let mut checked = checksum.map(Checksum::hasher);
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::unavailable(format!("reading {uri}: {}", error_chain(&e))))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if digest.bytes_hashed() + data.len() as u64 > self.policy.max_size {
                return Err(self.too_large(uri, digest.bytes_hashed() + data.len() as u64));
            }
            digest.update(&data);
            if let Some(hasher) = checked.as_mut() {
                hasher.update(&data);
            }
            file.write_all(&data)
                .await
                .map_err(|e| Error::io("writing a download file", e))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::io("writing a download file", e))?;
        if let (Some(hasher), Some(expected)) = (checked, checksum) {
            hasher
                .check(expected)
                .map_err(|why| Error::new(Code::Aborted, format!("{uri}: {why}")))?;
        }
        Ok(digest.finish())
    }

    async fn store_download(
        &self,
        instance: &str,
        download: &Download,
        digest: &Digest,
    ) -> Result<()> {
        let missing = self
            .store
            .find_missing(instance, std::slice::from_ref(digest))
            .await?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(&download.path)
            .await
            .map_err(|e| Error::io("reopening a download file", e))?;
        let mut writer = self.store.begin_write(instance, digest).await?;
        let mut buffer = vec![0u8; STORE_CHUNK];
        loop {
            let n = file
                .read(&mut buffer)
                .await
                .map_err(|e| Error::io("reading a download file", e))?;
            if n == 0 {
                break;
            }
            writer.write(Bytes::copy_from_slice(&buffer[..n])).await?;
        }
        writer.commit().await
    }

    fn check_allowed(&self, uri: &http::Uri) -> Result<()> {
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(Error::invalid_argument(format!(
                    "cannot fetch {uri}: only http and https URIs are fetched"
                )))
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::invalid_argument(format!("URI {uri} has no host")))?;
        if !self.policy.allows(host) {
            return Err(Error::new(
                Code::PermissionDenied,
                format!("this server does not fetch from {host} (see --asset_fetch_hosts)"),
            ));
        }
        Ok(())
    }

    fn too_large(&self, uri: &http::Uri, size: u64) -> Error {
        Error::resource_exhausted(format!(
            "{uri} is over this server's fetch limit of {} bytes ({size} bytes or more)",
            self.policy.max_size
        ))
    }
}

/// Where a redirect leads: an absolute URI, or a path on the same origin.
fn redirect_target(from: &http::Uri, headers: &http::HeaderMap) -> Result<http::Uri> {
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::unavailable(format!("{from} redirects without a Location")))?;
    let bad = |e: &dyn std::fmt::Display| {
        Error::unavailable(format!("{from} redirects to {location:?}: {e}"))
    };
    if location.starts_with('/') {
        let mut parts = from.clone().into_parts();
        parts.path_and_query = Some(location.parse().map_err(|e| bad(&e))?);
        return http::Uri::from_parts(parts).map_err(|e| bad(&e));
    }
    location.parse().map_err(|e| bad(&e))
}

/// A download's file, removed when the fetch ends however it ends.
struct Download {
    path: PathBuf,
    /// What the content is hashed with.
    function: DigestFunction,
}

impl Download {
    fn new(dir: &Path, function: DigestFunction) -> Download {
        Download {
            path: dir.join(format!("{}.part", uuid::Uuid::new_v4())),
            function,
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> FetchPolicy {
        FetchPolicy {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            max_size: 1 << 20,
            timeout: Duration::from_secs(5),
            scratch_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn hosts_are_allowed_by_name_by_domain_or_all() {
        let named = policy(&["mirror.example.com", "*.github.com"]);
        assert!(named.allows("mirror.example.com"));
        assert!(named.allows("MIRROR.example.com"));
        assert!(named.allows("codeload.github.com"));
        assert!(!named.allows("github.com"));
        assert!(!named.allows("evilgithub.com"));
        assert!(!named.allows("example.com"));
        assert!(!policy(&[]).allows("mirror.example.com"));
        assert!(policy(&["*"]).allows("anything.test"));
    }

    #[test]
    fn redirects_resolve_absolute_and_origin_relative_locations() {
        let from: http::Uri = "http://a.test:8080/dir/file?x=1".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::LOCATION, "/other".parse().unwrap());
        assert_eq!(
            redirect_target(&from, &headers).unwrap().to_string(),
            "http://a.test:8080/other"
        );
        headers.insert(http::header::LOCATION, "https://b.test/x".parse().unwrap());
        assert_eq!(
            redirect_target(&from, &headers).unwrap().to_string(),
            "https://b.test/x"
        );
        assert!(redirect_target(&from, &http::HeaderMap::new()).is_err());
    }
}
