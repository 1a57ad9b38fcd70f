//! Uploads the blobs an action result names: one `find_missing` for all of
//! them, then only the missing ones, each streamed from its file in
//! 1 MiB chunks through a `BlobWriter` (small ones with one `put`).
//!
//! Hashing first and uploading second reads each new file twice, but a
//! file already in the CAS (a rebuilt output that did not change, an empty
//! stderr) is read once and never sent, and the digest must be known
//! before a write can start anyway. Between the two reads nothing can
//! change the file: the command's process group is dead. The store still
//! verifies what it receives.

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use reapi_core::blob_store::SMALL_BLOB_LIMIT;
use reapi_core::{BlobStore, Digest, ErrorExt, Result};
use tokio::io::AsyncReadExt;

use super::{BlobSource, Blobs};

/// Bytes per chunk of a streamed upload.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Uploads at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// Files up to this size are read whole and `put`.
const PUT_LIMIT: u64 = 256 * 1024;

/// Uploads every blob of `blobs` that the CAS does not hold.
pub async fn upload_missing(cas: &dyn BlobStore, instance: &str, blobs: &Blobs) -> Result<()> {
    let digests: Vec<Digest> = blobs.digests().collect();
    if digests.is_empty() {
        return Ok(());
    }
    let missing = cas
        .find_missing(instance, &digests)
        .await
        .context("checking which outputs the CAS holds")?;
    tracing::debug!(
        blobs = digests.len(),
        missing = missing.len(),
        "uploading outputs"
    );
    futures::stream::iter(missing)
        .map(|digest| async move {
            let Some(source) = blobs.source(&digest) else {
                return Ok(());
            };
            upload(cas, instance, &digest, source)
                .await
                .with_context(|| format!("uploading blob {digest}"))
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect()
        .await
}

async fn upload(
    cas: &dyn BlobStore,
    instance: &str,
    digest: &Digest,
    source: &BlobSource,
) -> Result<()> {
    match source {
        BlobSource::Bytes(bytes) if bytes.len() as u64 <= SMALL_BLOB_LIMIT => {
            cas.put(instance, digest, bytes.clone()).await
        }
        BlobSource::Bytes(bytes) => {
            let mut writer = cas.begin_write(instance, digest).await?;
            let mut offset = 0;
            while offset < bytes.len() {
                let end = (offset + CHUNK_BYTES).min(bytes.len());
                writer.write(bytes.slice(offset..end)).await?;
                offset = end;
            }
            writer.commit().await
        }
        BlobSource::File(path) if digest.size() <= PUT_LIMIT => {
            let data = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            cas.put(instance, digest, Bytes::from(data)).await
        }
        BlobSource::File(path) => {
            let mut file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let mut writer = cas.begin_write(instance, digest).await?;
            loop {
                let mut chunk = BytesMut::with_capacity(CHUNK_BYTES);
                while chunk.len() < CHUNK_BYTES {
                    let n = file
                        .read_buf(&mut chunk)
                        .await
                        .with_context(|| format!("reading {}", path.display()))?;
                    if n == 0 {
                        break;
                    }
                }
                if chunk.is_empty() {
                    break;
                }
                writer.write(chunk.freeze()).await?;
            }
            writer.commit().await
        }
    }
}
