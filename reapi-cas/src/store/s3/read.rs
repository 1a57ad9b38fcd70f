//! Streaming reads: one GetObject (ranged unless the whole blob is asked
//! for) whose body becomes the `ChunkStream`.
//!
//! The stream checks what it carries: a body shorter or longer than the
//! range ends with an error, and a whole-blob read is hashed as it streams
//! and ends with DATA_LOSS when the content does not match the digest (an
//! object changed behind our back), so a consumer never takes a bad blob
//! for a good one.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::stream;
use reapi_core::blob_store::ChunkStream;
use reapi_core::{Digest, DigestHasher, Error, Result};
use tonic::Code;

use super::error::{chain, sdk_error, Op};
use crate::store::read_range::slice_range;

/// Chunks smaller than this are joined: the HTTP body arrives in pieces of
/// a few KiB, each of which would otherwise become a gRPC message.
const MIN_CHUNK: usize = 256 * 1024;

pub(super) async fn read(
    client: &Client,
    bucket: &str,
    key: &str,
    digest: &Digest,
    offset: u64,
    limit: Option<u64>,
) -> Result<ChunkStream> {
    let range = slice_range(digest, offset, limit)?;
    if range.is_empty() {
        return Ok(Box::pin(stream::empty()));
    }
    let (start, end) = (range.start as u64, range.end as u64);
    let whole = start == 0 && end == digest.size();
    let op = Op {
        name: "GetObject",
        bucket,
        key,
    };
    let mut request = client.get_object().bucket(bucket).key(key);
    if !whole {
        request = request.range(format!("bytes={start}-{}", end - 1));
    }
    let output = request.send().await.map_err(|e| sdk_error(e, op))?;
    let expected = end - start;
    if let Some(length) = output.content_length() {
        if length as u64 != expected {
            return Err(Error::new(
                Code::DataLoss,
                format!("object has {length} bytes in range {start}..{end}, expected {expected}"),
            )
            .context(format!("S3 GetObject s3://{bucket}/{key}")));
        }
    }
    Ok(body_stream(
        output.body,
        expected,
        whole.then_some(*digest),
        format!("S3 GetObject s3://{bucket}/{key}"),
    ))
}

struct Body {
    body: ByteStream,
    /// Bytes still expected.
    remaining: u64,
    /// Set for a whole-blob read: the content is checked against it.
    verify: Option<(DigestHasher, Digest)>,
    context: String,
    done: bool,
}

fn body_stream(
    body: ByteStream,
    expected: u64,
    verify: Option<Digest>,
    context: String,
) -> ChunkStream {
    let state = Body {
        body,
        remaining: expected,
        verify: verify.map(|d| (d.function().hasher(), d)),
        context,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        match state.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), state)),
            Ok(None) => None,
            Err(err) => {
                state.done = true;
                Some((Err(err.context(state.context.clone())), state))
            }
        }
    }))
}

impl Body {
    /// The next chunk of at least `MIN_CHUNK` bytes (less at the end), or
    /// `None` after the last one was checked.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let mut joined = BytesMut::new();
        loop {
            let piece = match self.body.next().await {
                Some(Ok(piece)) => piece,
                Some(Err(err)) => {
                    return Err(Error::unavailable(format!(
                        "S3 backend unavailable: reading the object body: {}",
                        chain(&err)
                    )))
                }
                None => {
                    self.done = true;
                    self.finish()?;
                    return Ok((!joined.is_empty()).then(|| joined.freeze()));
                }
            };
            if piece.len() as u64 > self.remaining {
                return Err(Error::new(
                    Code::DataLoss,
                    "the object body is longer than the blob",
                ));
            }
            self.remaining -= piece.len() as u64;
            if let Some((hasher, _)) = &mut self.verify {
                hasher.update(&piece);
            }
            if joined.is_empty() && piece.len() >= MIN_CHUNK {
                return Ok(Some(piece));
            }
            joined.extend_from_slice(&piece);
            if joined.len() >= MIN_CHUNK {
                return Ok(Some(joined.freeze()));
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::unavailable(format!(
                "S3 backend unavailable: the object body ended {} bytes early",
                self.remaining
            )));
        }
        if let Some((hasher, digest)) = self.verify.take() {
            hasher.verify(&digest).map_err(|e| {
                Error::new(Code::DataLoss, format!("stored object is corrupt: {e}"))
            })?;
        }
        Ok(())
    }
}
