//! Offset/limit arithmetic shared by the stores' `read`, and turning an
//! in-memory buffer into a chunk stream.

use std::ops::Range;

use bytes::Bytes;
use reapi_core::blob_store::ChunkStream;
use reapi_core::{Digest, Error, Result};

/// Chunk size of streams served from memory: large enough that per-chunk
/// overhead vanishes, small enough to stay under gRPC message limits.
pub const STREAM_CHUNK: usize = 1024 * 1024;

/// The byte range `offset..offset+limit` of a blob, clamped to its end.
/// OUT_OF_RANGE when `offset` is past the end.
pub fn slice_range(digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Range<usize>> {
    let size = digest.size();
    if offset > size {
        return Err(Error::out_of_range(format!(
            "read offset {offset} is past the end of blob {digest}"
        )));
    }
    let end = match limit {
        Some(limit) => offset.saturating_add(limit).min(size),
        None => size,
    };
    Ok(offset as usize..end as usize)
}

/// Streams a buffer in `STREAM_CHUNK` slices (no copies).
pub fn chunked_stream(data: Bytes) -> ChunkStream {
    let chunks: Vec<Result<Bytes>> = (0..data.len())
        .step_by(STREAM_CHUNK)
        .map(|start| Ok(data.slice(start..(start + STREAM_CHUNK).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}
