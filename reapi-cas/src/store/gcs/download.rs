//! Streamed, ranged downloads (`alt=media` with a `Range` header).
//!
//! The first response is awaited before the stream is handed out, so a
//! missing object is an error of the call (NOT_FOUND), not of the stream.
//! Small body frames are gathered into chunks of about `STREAM_CHUNK`. A body
//! cut off mid-way is requested again from the byte where it stopped, a few
//! times, before the stream ends with UNAVAILABLE: it never ends short.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use reapi_core::blob_store::ChunkStream;
use reapi_core::{Error, Result};
use tracing::warn;

use super::client::{Call, GcsClient, IDLE_TIMEOUT};
use super::errors::error_chain;
use crate::store::read_range::STREAM_CHUNK;

/// Times a cut-off body is requested again.
const MAX_RESUMES: u32 = 3;

/// Streams bytes `start..end` (end exclusive, `start < end`) of object
/// `name`.
pub(super) async fn open(
    client: Arc<GcsClient>,
    name: String,
    start: u64,
    end: u64,
) -> Result<ChunkStream> {
    debug_assert!(start < end);
    let mut download = Download {
        client,
        name,
        next: start,
        end,
        body: None,
        skip: 0,
        resumes_left: MAX_RESUMES,
        buffer: BytesMut::new(),
        done: false,
    };
    download.request().await?;
    Ok(Box::pin(futures::stream::unfold(
        download,
        |mut download| async move {
            if download.done {
                return None;
            }
            match download.next_chunk().await {
                Some(Ok(chunk)) => Some((Ok(chunk), download)),
                Some(Err(e)) => {
                    download.done = true;
                    Some((Err(e), download))
                }
                None => None,
            }
        },
    )))
}

struct Download {
    client: Arc<GcsClient>,
    name: String,
    /// Offset of the next byte wanted.
    next: u64,
    /// End of the range, exclusive.
    end: u64,
    body: Option<Incoming>,
    /// Bytes of `body` to drop before `next`: a server that ignores `Range`
    /// sends the object from its start.
    skip: u64,
    resumes_left: u32,
    buffer: BytesMut,
    /// An error was yielded: the stream is over.
    done: bool,
}

impl Download {
    /// Requests `next..end` and makes it the current body.
    async fn request(&mut self) -> Result<()> {
        let url = format!("{}?alt=media", self.client.object_url(&self.name));
        let call = Call::new(Method::GET, url, self.client.describe(&self.name)).header(
            header::RANGE,
            format!("bytes={}-{}", self.next, self.end - 1),
        );
        let response = self.client.send(call).await?;
        self.skip = if response.status() == StatusCode::PARTIAL_CONTENT {
            0
        } else {
            self.next
        };
        self.body = Some(response.into_body());
        Ok(())
    }

    /// The next gathered chunk; `None` once the range has been delivered.
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        while self.next < self.end {
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.request().await {
                    return Some(Err(e));
                }
                continue;
            };
            let failure = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.take(data);
                        if self.buffer.len() >= STREAM_CHUNK {
                            return Some(Ok(self.buffer.split().freeze()));
                        }
                    }
                    continue;
                }
                Ok(Some(Err(e))) => format!("reading the object: {}", error_chain(&e)),
                Ok(None) => format!("the response ended at byte {} of {}", self.next, self.end),
                Err(_) => format!("no data for {IDLE_TIMEOUT:?}"),
            };
            self.body = None;
            let what = self.client.describe(&self.name);
            if self.resumes_left == 0 {
                return Some(Err(Error::unavailable(format!(
                    "GCS backend unavailable: {what}: {failure}"
                ))));
            }
            self.resumes_left -= 1;
            warn!(
                target: "reapi_cas::gcs",
                object = %what,
                offset = self.next,
                "GCS download interrupted ({failure}); requesting the rest"
            );
        }
        self.body = None;
        (!self.buffer.is_empty()).then(|| Ok(self.buffer.split().freeze()))
    }

    /// Adds the wanted part of a body frame to the buffer.
    fn take(&mut self, mut data: Bytes) {
        let skipped = self.skip.min(data.len() as u64);
        data.advance(skipped as usize);
        self.skip -= skipped;
        let wanted = (self.end - self.next).min(data.len() as u64) as usize;
        self.buffer.extend_from_slice(&data[..wanted]);
        self.next += wanted as u64;
    }
}
