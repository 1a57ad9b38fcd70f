//! The content-addressable storage trait.
//!
//! Every implementation (memory, disk, S3, GCS, composites) sits behind
//! `Arc<dyn BlobStore>`. Blobs are addressed by instance name and digest:
//! nothing of one instance is visible from another. Large blobs stream in
//! chunks; small blobs and batches have whole-buffer fast paths.
//!
//! Every write is verified (size and hash) before it becomes visible, and a
//! write that is not committed leaves nothing behind: a [`BlobWriter`] dropped
//! without [`BlobWriter::commit`] is an abort, never a short blob.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::digest::Digest;
use crate::error::Result;

/// A blob read as a stream of chunks. An `Err` item ends the stream.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Size up to which callers may use the whole-buffer calls
/// ([`BlobStore::get`], [`BlobStore::put`]) without holding too much memory.
pub const SMALL_BLOB_LIMIT: u64 = 4 * 1024 * 1024;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Returns the digests that are absent, in input order. Present blobs
    /// have their age refreshed, so they are the last to be evicted: a client
    /// that asked about a blob expects it to stay. The empty blob is always
    /// present.
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Reads a whole blob into memory. For blobs known to be small (protos,
    /// batch reads); NOT_FOUND when absent.
    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes>;

    /// Streams `limit` bytes (all when `None`) from `offset`. NOT_FOUND when
    /// absent, OUT_OF_RANGE when `offset` is past the end.
    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream>;

    /// Stores a whole blob after verifying it; INVALID_ARGUMENT on a size or
    /// hash mismatch, with nothing stored.
    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()>;

    /// Starts a streamed write of `digest`. The blob becomes visible only
    /// when [`BlobWriter::commit`] succeeds.
    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>>;

    /// The largest blob this store can ever hold (its whole budget), which
    /// services advertise as `max_cas_blob_size_bytes` and enforce before a
    /// client sends any of it; `None`: no limit it knows of.
    fn max_blob_size(&self) -> Option<u64> {
        None
    }
}

/// An in-progress streamed write. Dropping it without `commit` aborts the
/// write and frees whatever it held.
#[async_trait]
pub trait BlobWriter: Send + 'static {
    /// Appends a chunk. Fails with INVALID_ARGUMENT when the data runs past
    /// the digest's size.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;

    /// Bytes received so far: where a resumed upload continues.
    fn committed_size(&self) -> u64;

    /// Verifies size and hash and makes the blob visible. On a mismatch
    /// (INVALID_ARGUMENT) nothing is stored.
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Called before an unfinished upload is parked for resumption: puts
    /// what the writer buffers where it keeps the blob (a file) and lets
    /// go of the buffers, so a parked upload costs no memory beyond a small
    /// record. Writers that keep the blob in memory or cannot flush a
    /// partial part keep the default, which does nothing.
    async fn suspend(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called when a parked upload is taken up again, before its
    /// `committed_size` is compared with where the client resumes: a
    /// writer whose store gave up its suspended data for room reports 0
    /// from here on and starts again.
    fn resume(&mut self) {}
}

/// Concatenates a chunk stream into one buffer; for callers that know the
/// blob is small.
pub async fn collect_stream(mut stream: ChunkStream, size_hint: u64) -> Result<Bytes> {
    use futures::StreamExt;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    if chunks.len() == 1 {
        return Ok(chunks.swap_remove(0));
    }
    let total = chunks.iter().map(Bytes::len).sum::<usize>();
    let mut buf = Vec::with_capacity(total.max(size_hint.min(SMALL_BLOB_LIMIT) as usize));
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
