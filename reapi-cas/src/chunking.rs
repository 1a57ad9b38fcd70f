//! Content-defined chunking of CAS blobs (SplitBlob, GetChunkMapping) and
//! splicing chunks back into a blob (SpliceBlob, RegisterChunkMapping).
//!
//! Chunks are cut with FastCDC 2020 (the `fastcdc` crate's v2020, the
//! reference the REAPI names) with the parameters the REAPI recommends and
//! Capabilities advertises: normalization level 2, an average of 512 KiB,
//! minimum a quarter and maximum four times that, seed 0. Blobs are chunked
//! as they stream from the store, holding at most one maximum chunk and one
//! read in memory; every chunk is stored in the CAS before its digest is
//! returned. Splicing streams the chunks into one write that the store
//! verifies against the expected digest, so a wrong list stores nothing.

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{FastCDC, Normalization};
use futures::StreamExt;
use reapi_core::{BlobStore, Digest, Error, Result};

/// FastCDC 2020's average chunk size, as advertised.
pub const AVERAGE_CHUNK: u32 = 512 * 1024;
pub const MIN_CHUNK: u32 = AVERAGE_CHUNK / 4;
pub const MAX_CHUNK: u32 = AVERAGE_CHUNK * 4;
/// The gear-table seed, as advertised.
pub const SEED: u32 = 0;

/// Cuts a stream of bytes into content-defined chunks.
#[derive(Default)]
pub struct Chunker {
    pending: BytesMut,
}

impl Chunker {
    /// Adds `data`; returns the chunks it completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.pending.extend_from_slice(data);
        let mut chunks = Vec::new();
        // With a maximum chunk's worth pending, the next cut is final: the
        // chunker never looks further than that.
        while self.pending.len() >= MAX_CHUNK as usize {
            let cut = first_cut(&self.pending);
            chunks.push(self.pending.split_to(cut).freeze());
        }
        chunks
    }

    /// The chunks of what is left at the end of the stream.
    pub fn finish(mut self) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        while !self.pending.is_empty() {
            let cut = first_cut(&self.pending);
            chunks.push(self.pending.split_to(cut).freeze());
        }
        chunks
    }
}

fn first_cut(data: &[u8]) -> usize {
    let chunker = FastCDC::with_level_and_seed(
        data,
        MIN_CHUNK,
        AVERAGE_CHUNK,
        MAX_CHUNK,
        Normalization::Level2,
        u64::from(SEED),
    );
    chunker.cut(0, data.len()).1
}

/// Splits the blob `digest` into chunks, stores each, and returns their
/// digests in order. A blob under the maximum chunk size is its own one
/// chunk, as clients upload such blobs whole.
pub async fn split(store: &dyn BlobStore, instance: &str, digest: &Digest) -> Result<Vec<Digest>> {
    let missing = store
        .find_missing(instance, std::slice::from_ref(digest))
        .await?;
    if !missing.is_empty() {
        return Err(Error::not_found(format!("blob {digest} is not in the CAS")));
    }
    if digest.size() < u64::from(MAX_CHUNK) {
        return Ok(vec![*digest]);
    }
    let mut stream = store.read(instance, digest, 0, None).await?;
    let mut chunker = Chunker::default();
    let mut digests = Vec::new();
    while let Some(data) = stream.next().await {
        for chunk in chunker.push(&data?) {
            digests.push(store_chunk(store, instance, digest, chunk).await?);
        }
    }
    for chunk in chunker.finish() {
        digests.push(store_chunk(store, instance, digest, chunk).await?);
    }
    Ok(digests)
}

/// Stores one chunk of `blob`, named with the blob's digest function.
async fn store_chunk(
    store: &dyn BlobStore,
    instance: &str,
    blob: &Digest,
    chunk: Bytes,
) -> Result<Digest> {
    let digest = blob.sibling_of(&chunk);
    let missing = store
        .find_missing(instance, std::slice::from_ref(&digest))
        .await?;
    if !missing.is_empty() {
        store.put(instance, &digest, chunk).await?;
    }
    Ok(digest)
}

/// Writes the blob `blob` from `chunks` in order, given in batches so that a
/// long list never has to be held whole. Each batch's chunks must be in the
/// CAS (FAILED_PRECONDITION listing the missing ones), their sizes must add
/// up to the blob's, and their bytes must hash to it (INVALID_ARGUMENT);
/// otherwise nothing is stored.
pub struct Splice<'a> {
    store: &'a dyn BlobStore,
    instance: &'a str,
    blob: Digest,
    writer: Option<Box<dyn reapi_core::BlobWriter>>,
    written: u64,
}

impl<'a> Splice<'a> {
    /// `None` when the blob is already stored: there is nothing to splice.
    pub async fn start(
        store: &'a dyn BlobStore,
        instance: &'a str,
        blob: Digest,
    ) -> Result<Option<Splice<'a>>> {
        crate::service::check_blob_size(store, &blob)?;
        let missing = store
            .find_missing(instance, std::slice::from_ref(&blob))
            .await?;
        if missing.is_empty() {
            return Ok(None);
        }
        let writer = store.begin_write(instance, &blob).await?;
        Ok(Some(Splice {
            store,
            instance,
            blob,
            writer: Some(writer),
            written: 0,
        }))
    }

    /// Appends `chunks`.
    pub async fn append(&mut self, chunks: &[Digest]) -> Result<()> {
        let total = chunks
            .iter()
            .try_fold(self.written, |sum, c| sum.checked_add(c.size()));
        if total.is_none_or(|total| total > self.blob.size()) {
            return Err(self.too_long());
        }
        let missing = self.store.find_missing(self.instance, chunks).await?;
        if !missing.is_empty() {
            return Err(Error::missing_blobs(&missing));
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::internal("splice already finished"))?;
        for chunk in chunks {
            let mut data = self.store.read(self.instance, chunk, 0, None).await?;
            while let Some(piece) = data.next().await {
                let piece = piece?;
                self.written += piece.len() as u64;
                writer.write(piece).await?;
            }
        }
        Ok(())
    }

    /// Commits the blob once every chunk was appended.
    pub async fn finish(mut self) -> Result<Digest> {
        if self.written != self.blob.size() {
            return Err(Error::invalid_argument(format!(
                "the chunks add up to {} bytes, but blob {} has {}",
                self.written,
                self.blob,
                self.blob.size()
            )));
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::internal("splice already finished"))?;
        // The store verifies the bytes against the blob's digest:
        // INVALID_ARGUMENT when the chunks do not make it.
        writer
            .commit()
            .await
            .map_err(|e| e.context(format!("splicing blob {}", self.blob)))?;
        Ok(self.blob)
    }

    fn too_long(&self) -> Error {
        Error::invalid_argument(format!(
            "the chunks add up to more than the {} bytes of blob {}",
            self.blob.size(),
            self.blob
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that chunk like real data: a repeatable pseudo-random stream.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn streamed_chunks_are_the_reference_chunkers_in_any_read_size() {
        let blob = data(9 << 20, 7);
        let reference: Vec<usize> = FastCDC::with_level_and_seed(
            &blob,
            MIN_CHUNK,
            AVERAGE_CHUNK,
            MAX_CHUNK,
            Normalization::Level2,
            0,
        )
        .map(|chunk| chunk.length)
        .collect();
        assert!(reference.len() > 4, "{reference:?}");
        for read_size in [1000, 64 << 10, 3 << 20] {
            let mut chunker = Chunker::default();
            let mut lengths = Vec::new();
            for piece in blob.chunks(read_size) {
                lengths.extend(chunker.push(piece).iter().map(Bytes::len));
            }
            lengths.extend(chunker.finish().iter().map(Bytes::len));
            assert_eq!(lengths, reference, "reading {read_size} bytes at a time");
        }
    }

    #[test]
    fn an_edit_changes_only_the_chunks_around_it() {
        let blob = data(8 << 20, 3);
        let mut edited = blob.clone();
        edited.splice(4 << 20..4 << 20, b"inserted".iter().copied());
        let chunks = |bytes: &[u8]| {
            let mut chunker = Chunker::default();
            let mut all = chunker.push(bytes);
            all.extend(chunker.finish());
            all.iter().map(|c| Digest::of_bytes(c)).collect::<Vec<_>>()
        };
        let (before, after) = (chunks(&blob), chunks(&edited));
        let shared = after.iter().filter(|d| before.contains(d)).count();
        assert!(
            shared + 2 >= before.len(),
            "only {shared} of {} chunks survived an 8-byte insertion",
            before.len()
        );
    }
}
