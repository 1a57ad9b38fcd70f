//! ByteStream's `compressed-blobs/zstd/` resources (see
//! [`crate::compression`]).
//!
//! - Read: offsets count uncompressed bytes and `read_limit` must be 0
//!   (REAPI); the store's stream from the offset is compressed as it goes.
//! - Write: decompressed as it arrives into one verified write, never more
//!   than the digest declares. A compressed upload is not resumable: cut
//!   off, it is discarded, and the client starts again at 0. Completed, it
//!   answers the compressed bytes received; for a blob already stored, -1,
//!   as the REAPI specifies for compressed uploads.
//!
//! Compression runs on the blocking pool: a 1 MiB step takes milliseconds,
//! too long for an async worker.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reapi_core::proto::bytestream::WriteResponse;
use reapi_core::proto::bytestream_bytes;
use reapi_core::resource_name::{Compressor, WriteResource};
use reapi_core::{BlobStore, Digest, Error, ErrorExt, Result};
use tonic::Status;

use crate::compression::{ZstdDecoder, ZstdEncoder};

/// Refuses compressors other than zstd.
pub(crate) fn check_compressor(compressor: Compressor) -> Result<()> {
    match compressor {
        Compressor::Zstd => Ok(()),
        other => Err(Error::new(
            tonic::Code::Unimplemented,
            format!("compressor {other} is not supported (see supported_compressors: zstd)"),
        )),
    }
}

async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("compression task: {e}")))
}

/// `chunks` compressed into one zstd frame.
pub(crate) fn compress_stream(
    chunks: impl Stream<Item = Result<Bytes, Status>> + Send + Unpin + 'static,
) -> Result<impl Stream<Item = Result<Bytes, Status>> + Send + 'static> {
    let encoder = ZstdEncoder::new()?;
    let state = (chunks, Some(encoder));
    Ok(futures::stream::unfold(
        state,
        |(mut chunks, encoder)| async move {
            let mut encoder = encoder?;
            loop {
                match chunks.next().await {
                    Some(Ok(data)) => {
                        let step = off_thread(move || {
                            let out = encoder.encode(&data);
                            (encoder, out)
                        })
                        .await;
                        let (back, out) = match step {
                            Ok(step) => step,
                            Err(e) => return Some((Err(e.into()), (chunks, None))),
                        };
                        encoder = back;
                        match out {
                            Ok(out) if out.is_empty() => continue,
                            Ok(out) => return Some((Ok(out), (chunks, Some(encoder)))),
                            Err(e) => return Some((Err(e.into()), (chunks, None))),
                        }
                    }
                    Some(Err(status)) => return Some((Err(status), (chunks, None))),
                    None => {
                        let last = encoder.finish().map_err(Status::from);
                        return Some((last, (chunks, None)));
                    }
                }
            }
        },
    ))
}

/// Runs a compressed Write stream whose first message is `first`.
pub(crate) async fn write<S>(
    store: &dyn BlobStore,
    resource: &WriteResource,
    first: bytestream_bytes::WriteRequest,
    mut stream: S,
) -> Result<WriteResponse>
where
    S: Stream<Item = std::result::Result<bytestream_bytes::WriteRequest, Status>> + Send + Unpin,
{
    if first.write_offset != 0 {
        return Err(Error::invalid_argument(format!(
            "write_offset {}: compressed uploads are not resumable; start again at 0",
            first.write_offset
        )));
    }
    let digest: Digest = resource.digest;
    let instance = resource.instance_name.as_str();
    if store
        .find_missing(instance, std::slice::from_ref(&digest))
        .await?
        .is_empty()
    {
        return Ok(WriteResponse { committed_size: -1 });
    }
    let mut writer = store.begin_write(instance, &digest).await?;
    let mut decoder = Some(ZstdDecoder::new(digest.size())?);
    let name = first.resource_name.clone();
    let mut received: u64 = 0;
    let mut message = first;
    loop {
        if message.write_offset < 0 {
            return Err(Error::invalid_argument(format!(
                "write_offset {} is negative",
                message.write_offset
            )));
        }
        if !message.resource_name.is_empty() && message.resource_name != name {
            return Err(Error::invalid_argument(format!(
                "resource_name changed within one Write stream to {:?}",
                message.resource_name
            )));
        }
        received += message.data.len() as u64;
        crate::metrics::cas_received(message.data.len());
        let mut working = decoder
            .take()
            .ok_or_else(|| Error::internal("zstd decoder lost"))?;
        let data = message.data;
        let (back, pieces) = off_thread(move || {
            let pieces = working.decode(&data);
            (working, pieces)
        })
        .await?;
        for piece in pieces? {
            writer.write(piece).await?;
        }
        if message.finish_write {
            back.finish()?;
            writer
                .commit()
                .await
                .with_context(|| format!("compressed upload of {digest}"))?;
            return Ok(WriteResponse {
                committed_size: i64::try_from(received).unwrap_or(i64::MAX),
            });
        }
        decoder = Some(back);
        message = match stream.next().await {
            Some(Ok(next)) => next,
            None => {
                return Err(Error::invalid_argument(format!(
                    "compressed Write stream for {digest} ended before finish_write; \
                     compressed uploads are not resumable, start again at 0"
                )))
            }
            Some(Err(status)) => {
                return Err(Error::from(status).context(format!("Write stream for {digest}")))
            }
        };
    }
}
