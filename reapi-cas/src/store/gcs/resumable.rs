//! The resumable-upload protocol of the JSON API: start a session, send
//! chunks (`Content-Range: bytes a-b/*`), finish with the one chunk that
//! names the total size, or cancel (DELETE the session URI).
//!
//! An object appears only when its last chunk is accepted, so a session
//! that is cancelled or simply abandoned leaves nothing behind. No request
//! here is ever an empty status query: the caller always keeps bytes back
//! for the last chunk, and a chunk whose response was lost is sent again
//! whole (GCS ignores bytes it already has). Emulators that finalize on an
//! empty query therefore behave like GCS.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, StatusCode};
use reapi_core::{Error, Result};
use tracing::debug;

use super::client::{read_small_body, Call, GcsClient};
use super::objects::OCTET_STREAM;

/// Rounds of "the server kept only part of the chunk, send the rest".
const MAX_PARTIAL_ROUNDS: u32 = 8;

/// An open upload session. The URI grants the right to upload: it is never
/// logged.
#[derive(Clone)]
pub(super) struct Session {
    client: Arc<GcsClient>,
    uri: Arc<str>,
    name: Arc<str>,
    total: u64,
}

impl Session {
    /// Starts a session for object `name` of `total` bytes.
    pub(super) async fn start(client: Arc<GcsClient>, name: &str, total: u64) -> Result<Session> {
        let metadata = serde_json::json!({ "name": name, "contentType": OCTET_STREAM });
        let what = format!("starting a resumable upload of {}", client.describe(name));
        let call = Call::new(
            Method::POST,
            client.upload_url(name, "resumable"),
            what.clone(),
        )
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .header(
            HeaderName::from_static("x-upload-content-type"),
            OCTET_STREAM,
        )
        .header(
            HeaderName::from_static("x-upload-content-length"),
            total.to_string(),
        )
        .body(Bytes::from(metadata.to_string()));
        let response = client.send(call).await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = read_small_body(response).await;
        let Some(location) = location else {
            return Err(
                Error::internal("GCS answered without a session URI (no Location header)")
                    .context(what),
            );
        };
        let uri = if location.starts_with('/') {
            format!("{}{location}", client.endpoint())
        } else {
            location
        };
        Ok(Session {
            client,
            uri: uri.into(),
            name: name.into(),
            total,
        })
    }

    /// Sends `chunk`, which starts at byte `start` of the object. `last`
    /// marks the final chunk, which completes the object; any other chunk's
    /// length must be a multiple of 256 KiB.
    pub(super) async fn put(&self, start: u64, chunk: Bytes, last: bool) -> Result<()> {
        let what = format!("resumable upload of {}", self.client.describe(&self.name));
        let end = start + chunk.len() as u64;
        let total = if last {
            self.total.to_string()
        } else {
            "*".to_owned()
        };
        let mut offset = start;
        for _ in 0..MAX_PARTIAL_ROUNDS {
            let part = chunk.slice((offset - start) as usize..);
            let call = Call::new(Method::PUT, self.uri.to_string(), what.clone())
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {offset}-{}/{total}", end - 1),
                )
                .header(header::CONTENT_TYPE, OCTET_STREAM)
                .body(part)
                .accept(&[308]);
            let response = self.client.send(call).await?;
            let status = response.status();
            let persisted = persisted_bytes(response.headers());
            let _ = read_small_body(response).await;
            if status != StatusCode::PERMANENT_REDIRECT {
                if last {
                    return Ok(());
                }
                return Err(
                    Error::internal("GCS completed the object before its last chunk").context(what),
                );
            }
            if !last && persisted == end {
                return Ok(());
            }
            if persisted < start || persisted >= end {
                return Err(Error::unavailable(format!(
                    "GCS backend unavailable: the session holds {persisted} bytes, \
                     expected {} after sending bytes {start}..{end}",
                    if last { self.total } else { end }
                ))
                .context(what));
            }
            debug!(target: "reapi_cas::gcs", upload = %what, persisted, end, "GCS kept part of a chunk; sending the rest");
            offset = persisted;
        }
        Err(Error::unavailable(
            "GCS backend unavailable: the server keeps accepting only part of a chunk",
        )
        .context(what))
    }

    /// Cancels the session (one attempt, best effort): whatever it received
    /// is discarded. GCS answers 499.
    pub(super) async fn cancel(&self) {
        let what = format!(
            "cancelling the resumable upload of {}",
            self.client.describe(&self.name)
        );
        let call = Call::new(Method::DELETE, self.uri.to_string(), what)
            .accept(&[499])
            .once();
        match self.client.send(call).await {
            Ok(response) => {
                let _ = read_small_body(response).await;
            }
            // The session expires by itself; nothing of it is visible.
            Err(e) => debug!(target: "reapi_cas::gcs", error = %e, "GCS upload cancel failed"),
        }
    }
}

/// Bytes the server holds, from the `Range: bytes=0-N` header of a 308;
/// none when the header is absent.
fn persisted_bytes(headers: &HeaderMap) -> u64 {
    headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes=0-"))
        .and_then(|last| last.trim().parse::<u64>().ok())
        .map_or(0, |last| last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_the_range_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(persisted_bytes(&headers), 0);
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-262143"));
        assert_eq!(persisted_bytes(&headers), 262144);
    }
}
