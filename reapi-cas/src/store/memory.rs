//! `MemoryStore`: blobs in RAM with exact LRU eviction against a byte budget.
//!
//! For tests, small deployments and as the fast tier of a composite. Memory
//! held is bounded by the budget plus the writes in flight.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use reapi_core::blob_store::{BlobStore, BlobWriter, ChunkStream};
use reapi_core::{Digest, DigestHasher, Error, Result};

use super::read_range::{chunked_stream, slice_range};
use crate::lru::Lru;

type Blobs = Arc<Mutex<Lru<(Arc<str>, Digest), Bytes>>>;

pub struct MemoryStore {
    max_bytes: u64,
    blobs: Blobs,
}

impl MemoryStore {
    pub fn new(max_bytes: u64) -> Self {
        MemoryStore {
            max_bytes,
            blobs: Arc::new(Mutex::new(Lru::new(max_bytes))),
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.blobs.lock().used()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.lock().len()
    }

    fn lookup(&self, instance: &str, digest: &Digest) -> Option<Bytes> {
        if digest.is_empty_blob() {
            return Some(Bytes::new());
        }
        self.blobs
            .lock()
            .get(&(Arc::from(instance), *digest))
            .cloned()
    }

    fn check_fits(&self, digest: &Digest) -> Result<()> {
        if digest.size() > self.max_bytes {
            return Err(Error::resource_exhausted(format!(
                "blob {digest} is larger than the memory store's budget of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    fn max_blob_size(&self) -> Option<u64> {
        Some(self.max_bytes)
    }

    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let instance: Arc<str> = Arc::from(instance);
        let mut blobs = self.blobs.lock();
        Ok(digests
            .iter()
            .filter(|d| !d.is_empty_blob() && blobs.get(&(instance.clone(), **d)).is_none())
            .copied()
            .collect())
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        self.lookup(instance, digest)
            .ok_or_else(|| Error::not_found(format!("blob {digest} not found")))
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        let data = self.get(instance, digest).await?;
        let range = slice_range(digest, offset, limit)?;
        Ok(chunked_stream(data.slice(range)))
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        self.check_fits(digest)?;
        digest.verify_content(&data)?;
        if !digest.is_empty_blob() {
            let weight = data.len() as u64;
            self.blobs
                .lock()
                .insert((Arc::from(instance), *digest), data, weight);
        }
        Ok(())
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        self.check_fits(digest)?;
        Ok(Box::new(MemoryWriter {
            key: (Arc::from(instance), *digest),
            buffer: Vec::new(),
            hasher: digest.function().hasher(),
            blobs: self.blobs.clone(),
        }))
    }
}

struct MemoryWriter {
    key: (Arc<str>, Digest),
    buffer: Vec<u8>,
    hasher: DigestHasher,
    blobs: Blobs,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let digest = self.key.1;
        let total = self.hasher.bytes_hashed() + chunk.len() as u64;
        if total > digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {digest}: received {total} bytes, more than its size"
            )));
        }
        if self.buffer.is_empty() {
            self.buffer.reserve_exact(digest.size() as usize);
        }
        self.hasher.update(&chunk);
        self.buffer.extend_from_slice(&chunk);
        Ok(())
    }

    fn committed_size(&self) -> u64 {
        self.hasher.bytes_hashed()
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let MemoryWriter {
            key,
            buffer,
            hasher,
            blobs,
        } = *self;
        hasher.verify(&key.1)?;
        if !key.1.is_empty_blob() {
            let weight = buffer.len() as u64;
            blobs.lock().insert(key, Bytes::from(buffer), weight);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_core::blob_store::collect_stream;
    use tonic::Code;

    fn blob(s: &str) -> (Digest, Bytes) {
        (
            Digest::of_bytes(s.as_bytes()),
            Bytes::copy_from_slice(s.as_bytes()),
        )
    }

    #[tokio::test]
    async fn put_get_read_ranges() {
        let store = MemoryStore::new(1 << 20);
        let (d, data) = blob("hello world");
        store.put("", &d, data.clone()).await.unwrap();
        assert_eq!(store.get("", &d).await.unwrap(), data);
        let part = collect_stream(store.read("", &d, 6, Some(3)).await.unwrap(), 3)
            .await
            .unwrap();
        assert_eq!(&part[..], b"wor");
        let rest = collect_stream(store.read("", &d, 6, None).await.unwrap(), 5)
            .await
            .unwrap();
        assert_eq!(&rest[..], b"world");
        let at_end = collect_stream(store.read("", &d, 11, None).await.unwrap(), 0)
            .await
            .unwrap();
        assert!(at_end.is_empty());
        assert_eq!(
            store.read("", &d, 12, None).await.err().unwrap().code(),
            Code::OutOfRange
        );
    }

    #[tokio::test]
    async fn instances_are_separate() {
        let store = MemoryStore::new(1 << 20);
        let (d, data) = blob("x");
        store.put("a", &d, data).await.unwrap();
        assert_eq!(store.find_missing("a", &[d]).await.unwrap(), vec![]);
        assert_eq!(store.find_missing("b", &[d]).await.unwrap(), vec![d]);
        assert_eq!(store.get("b", &d).await.unwrap_err().code(), Code::NotFound);
    }

    #[tokio::test]
    async fn rejects_mismatches_and_stores_nothing() {
        let store = MemoryStore::new(1 << 20);
        let (d, _) = blob("hello");
        let err = store
            .put("", &d, Bytes::from_static(b"jello"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let mut w = store.begin_write("", &d).await.unwrap();
        w.write(Bytes::from_static(b"hel")).await.unwrap();
        assert_eq!(w.committed_size(), 3);
        assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
        let mut w = store.begin_write("", &d).await.unwrap();
        let err = w.write(Bytes::from_static(b"hello!")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(store.blob_count(), 0);
    }

    #[tokio::test]
    async fn empty_blob_always_present() {
        let store = MemoryStore::new(0);
        assert!(store
            .find_missing("any", &[Digest::EMPTY])
            .await
            .unwrap()
            .is_empty());
        assert!(store.get("any", &Digest::EMPTY).await.unwrap().is_empty());
        store
            .put("any", &Digest::EMPTY, Bytes::new())
            .await
            .unwrap();
        assert_eq!(store.blob_count(), 0);
    }

    #[tokio::test]
    async fn evicts_least_recently_used() {
        let store = MemoryStore::new(10);
        let (a, da) = blob("aaaa");
        let (b, db) = blob("bbbb");
        let (c, dc) = blob("cccc");
        store.put("", &a, da).await.unwrap();
        store.put("", &b, db).await.unwrap();
        // Asking about `a` makes it the most recently used.
        assert!(store.find_missing("", &[a]).await.unwrap().is_empty());
        store.put("", &c, dc).await.unwrap();
        assert_eq!(store.find_missing("", &[a, b, c]).await.unwrap(), vec![b]);
        assert_eq!(store.used_bytes(), 8);
        let big = Digest::of_bytes(&[0u8; 11]);
        assert_eq!(
            store.begin_write("", &big).await.err().unwrap().code(),
            Code::ResourceExhausted
        );
    }
}
