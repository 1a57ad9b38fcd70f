//! Reading content files: whole (for `get`) or as a stream of large chunks
//! read on the blocking pool with one chunk of read-ahead.
//!
//! A stream holds no thread while its consumer is slow: each chunk is one
//! blocking-pool task, started as soon as the previous chunk is handed out.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use bytes::Bytes;
use futures::StreamExt;
use reapi_core::blob_store::ChunkStream;
use reapi_core::{Digest, Error, Result};
use tokio::task::JoinHandle;

use super::index::Key;
use super::{not_found, Inner};

/// Bytes per chunk of a streamed read: large enough that per-chunk costs
/// (a blocking-pool hop, an allocation) vanish next to the copy.
pub(super) const READ_CHUNK: u64 = 1 << 20;

impl Inner {
    /// Opens a content file, checks its length and seeks to `offset`.
    /// A missing or damaged file drops the blob from the index: NOT_FOUND.
    pub(super) fn open_at(
        &self,
        instance: &str,
        digest: &Digest,
        key: &Key,
        offset: u64,
    ) -> Result<File> {
        let path = self.path_of(key);
        let mut retried = false;
        let mut file = loop {
            let opened = File::open(&path).and_then(|file| {
                let len = file.metadata()?.size();
                Ok((file, len))
            });
            let reason = match opened {
                Ok((file, len)) if len == digest.size() => break file,
                Ok((_, len)) => format!("the file holds {len} bytes"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => "the file is gone".to_owned(),
                Err(e) => {
                    return Err(Error::io(
                        format!("opening blob {digest} at {}", path.display()),
                        e,
                    ))
                }
            };
            // Not forgotten: a concurrent write has just put a good file in
            // place, so try once more.
            if self.forget_damaged(key, &path, &reason) || retried {
                return Err(not_found(instance, digest));
            }
            retried = true;
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(|e| {
                Error::io(format!("seeking in blob {digest} at {}", path.display()), e)
            })?;
        }
        Ok(file)
    }

    /// Reads a whole blob.
    pub(super) fn read_whole(&self, instance: &str, digest: &Digest, key: &Key) -> Result<Bytes> {
        let file = self.open_at(instance, digest, key, 0)?;
        let size = usize::try_from(digest.size()).map_err(|_| {
            Error::resource_exhausted(format!("blob {digest} is too large to read into memory"))
        })?;
        let data = read_exact_len(&file, size).map_err(|e| {
            Error::io(
                format!("reading blob {digest} at {}", self.path_of(key).display()),
                e,
            )
        })?;
        Ok(Bytes::from(data))
    }
}

/// Reads exactly `len` bytes from the file's position, into a buffer that is
/// not zeroed first.
fn read_exact_len(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file ended after {} of {len} bytes", buf.len()),
        ));
    }
    Ok(buf)
}

type Pending = JoinHandle<(File, io::Result<Vec<u8>>)>;

fn spawn_read(file: File, len: u64) -> Pending {
    tokio::task::spawn_blocking(move || {
        // `len` is at most READ_CHUNK.
        let result = read_exact_len(&file, len as usize);
        (file, result)
    })
}

struct ReadAhead {
    pending: Option<Pending>,
    remaining: u64,
    digest: Digest,
}

/// Streams `len` bytes from the file's position.
pub(super) fn chunk_stream(file: File, len: u64, digest: Digest) -> ChunkStream {
    let first = len.min(READ_CHUNK);
    let state = ReadAhead {
        pending: (len > 0).then(|| spawn_read(file, first)),
        remaining: len,
        digest,
    };
    futures::stream::unfold(state, |mut state| async move {
        let pending = state.pending.take()?;
        let chunk = match pending.await {
            Ok((file, Ok(buf))) => {
                state.remaining -= buf.len() as u64;
                if state.remaining > 0 {
                    state.pending = Some(spawn_read(file, state.remaining.min(READ_CHUNK)));
                }
                Ok(Bytes::from(buf))
            }
            Ok((_, Err(e))) => Err(Error::io(
                format!(
                    "reading blob {} ({} bytes left)",
                    state.digest, state.remaining
                ),
                e,
            )),
            Err(e) => Err(Error::internal(format!(
                "reading blob {}: read task failed: {e}",
                state.digest
            ))),
        };
        Some((chunk, state))
    })
    .boxed()
}
