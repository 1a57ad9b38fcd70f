//! `GcsWriter`: a streamed write, hashed as it arrives.
//!
//! A small blob (up to `resumable_threshold`) is buffered and uploaded in
//! one request at commit, after verification. A larger one goes through a
//! resumable session: each full chunk is sent as soon as it is buffered (one
//! chunk in flight while the next fills), and the rest, never empty, is held
//! back. Commit verifies size and hash first and only then sends that last
//! chunk, which is what makes the object exist. A mismatch, a failure or a
//! drop without commit cancels the session: nothing becomes visible.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reapi_core::blob_store::BlobWriter;
use reapi_core::{Digest, DigestHasher, Error, Result};
use tokio::task::JoinHandle;

use super::client::GcsClient;
use super::resumable::Session;

pub(super) struct GcsWriter {
    client: Arc<GcsClient>,
    name: String,
    digest: Digest,
    hasher: DigestHasher,
    buffer: BytesMut,
    /// `Some(chunk size)` when the blob goes through a resumable session.
    chunk_size: Option<usize>,
    /// Started with the first full chunk.
    session: Option<Session>,
    /// Bytes handed to the session, in flight included.
    sent: u64,
    in_flight: Option<JoinHandle<Result<()>>>,
    /// A chunk failed to upload: the write can no longer succeed.
    failed: Option<Error>,
    /// Commit ran (successfully or not): nothing is left for `Drop`.
    done: bool,
}

impl GcsWriter {
    pub(super) fn new(
        client: Arc<GcsClient>,
        name: String,
        digest: Digest,
        chunk_size: Option<usize>,
    ) -> Self {
        let capacity = match chunk_size {
            None => digest.size() as usize,
            Some(chunk) => (chunk + chunk / 4).min(digest.size() as usize),
        };
        GcsWriter {
            client,
            name,
            digest,
            hasher: digest.function().hasher(),
            buffer: BytesMut::with_capacity(capacity),
            chunk_size,
            session: None,
            sent: 0,
            in_flight: None,
            failed: None,
            done: false,
        }
    }

    /// Hands the first `chunk_size` buffered bytes to the session, after
    /// the previous chunk has gone through.
    async fn send_chunk(&mut self, chunk_size: usize) -> Result<()> {
        self.wait_in_flight().await?;
        let session = match &self.session {
            Some(session) => session.clone(),
            None => {
                let session =
                    Session::start(self.client.clone(), &self.name, self.digest.size()).await?;
                self.session = Some(session.clone());
                session
            }
        };
        let chunk = self.buffer.split_to(chunk_size).freeze();
        let start = self.sent;
        self.sent += chunk.len() as u64;
        self.in_flight = Some(tokio::spawn(async move {
            session.put(start, chunk, false).await
        }));
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> Result<()> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(Error::internal(format!(
                    "GCS chunk upload task failed: {e}"
                )))
            }),
        }
    }

    /// Verifies and makes the object visible.
    async fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.wait_in_flight().await?;
        std::mem::take(&mut self.hasher).verify(&self.digest)?;
        if self.digest.is_empty_blob() {
            return Ok(());
        }
        let rest: Bytes = self.buffer.split().freeze();
        match &self.session {
            None => self.client.upload(&self.name, rest).await,
            Some(session) => {
                debug_assert!(!rest.is_empty(), "the last chunk is never empty");
                session.put(self.sent, rest, true).await
            }
        }
    }
}

#[async_trait]
impl BlobWriter for GcsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let total = self.hasher.bytes_hashed() + chunk.len() as u64;
        if total > self.digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {}: received {total} bytes, more than its size",
                self.digest
            )));
        }
        self.hasher.update(&chunk);
        self.buffer.extend_from_slice(&chunk);
        if let Some(chunk_size) = self.chunk_size {
            // Strictly more than a chunk: the last chunk keeps at least one byte.
            while self.buffer.len() > chunk_size {
                if let Err(e) = self.send_chunk(chunk_size).await {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn committed_size(&self) -> u64 {
        self.hasher.bytes_hashed()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let result = self.finish().await;
        if result.is_err() {
            if let Some(session) = self.session.take() {
                session.cancel().await;
            }
        }
        self.done = true;
        result
    }
}

impl Drop for GcsWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(task) = self.in_flight.take() {
            task.abort();
        }
        if let Some(session) = self.session.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { session.cancel().await });
            }
        }
    }
}
