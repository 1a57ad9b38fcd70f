//! `WriteThroughStore`: a fast local store in front of a durable remote one
//! (S3, GCS). Reads try local first and fill it from remote on a miss;
//! concurrent misses for one blob fetch it once.
//!
//! Two write modes, one type:
//! - `WriteMode::Both` (write-through): a write succeeds only when both hold
//!   the blob. The remote commits first and the local copy only after it, so
//!   every locally present blob is also remote; that invariant lets
//!   `find_missing` ask the remote only about what is missing locally.
//! - `WriteMode::RemoteOnly` (read cache): writes go to the remote alone; the
//!   local store fills on reads.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use reapi_core::blob_store::{BlobStore, BlobWriter, ChunkStream, SMALL_BLOB_LIMIT};
use reapi_core::{Digest, ErrorExt, Result};
use tonic::Code;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Both,
    RemoteOnly,
}

type FetchKey = (String, Digest);

pub struct WriteThroughStore {
    local: Arc<dyn BlobStore>,
    remote: Arc<dyn BlobStore>,
    mode: WriteMode,
    /// One lock per blob being fetched from remote, so concurrent misses
    /// wait for the first fetch instead of repeating it.
    fetches: Mutex<HashMap<FetchKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl WriteThroughStore {
    pub fn new(local: Arc<dyn BlobStore>, remote: Arc<dyn BlobStore>, mode: WriteMode) -> Self {
        WriteThroughStore {
            local,
            remote,
            mode,
            fetches: Mutex::new(HashMap::new()),
        }
    }

    /// Makes sure the local store holds `digest`, copying it from remote if
    /// needed. NOT_FOUND when neither has it.
    async fn fill_local(&self, instance: &str, digest: &Digest) -> Result<()> {
        let key = (instance.to_string(), *digest);
        let lock = self.fetches.lock().entry(key.clone()).or_default().clone();
        let result = async {
            let _guard = lock.lock().await;
            if self
                .local
                .find_missing(instance, &[*digest])
                .await?
                .is_empty()
            {
                return Ok(()); // another fetch finished first
            }
            self.copy_from_remote(instance, digest).await
        }
        .await;
        let mut fetches = self.fetches.lock();
        // Drop the entry when no one else waits on it.
        if Arc::strong_count(&lock) <= 2 {
            fetches.remove(&key);
        }
        result
    }

    async fn copy_from_remote(&self, instance: &str, digest: &Digest) -> Result<()> {
        tracing::debug!(%digest, "fetching blob from the remote store");
        if digest.size() <= SMALL_BLOB_LIMIT {
            let data = self.remote.get(instance, digest).await?;
            return self.local.put(instance, digest, data).await;
        }
        let mut chunks = self.remote.read(instance, digest, 0, None).await?;
        let mut writer = self.local.begin_write(instance, digest).await?;
        while let Some(chunk) = chunks.next().await {
            writer.write(chunk?).await?;
        }
        // The local store verifies the hash: a corrupt remote copy is
        // refused here rather than served.
        writer
            .commit()
            .await
            .context("filling the local store from remote")
    }
}

fn is_not_found<T>(result: &Result<T>) -> bool {
    matches!(result, Err(e) if e.code() == Code::NotFound)
}

#[async_trait]
impl BlobStore for WriteThroughStore {
    /// Every blob passes through the local store.
    fn max_blob_size(&self) -> Option<u64> {
        self.local.max_blob_size()
    }

    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let locally_missing = self.local.find_missing(instance, digests).await?;
        if locally_missing.is_empty() {
            return Ok(locally_missing);
        }
        self.remote
            .find_missing(instance, &locally_missing)
            .await
            .context("asking the remote store")
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        let local = self.local.get(instance, digest).await;
        if !is_not_found(&local) {
            return local;
        }
        self.fill_local(instance, digest).await?;
        self.local.get(instance, digest).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        let local = self.local.read(instance, digest, offset, limit).await;
        if !is_not_found(&local) {
            return local;
        }
        self.fill_local(instance, digest).await?;
        self.local.read(instance, digest, offset, limit).await
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        self.remote
            .put(instance, digest, data.clone())
            .await
            .context("writing to the remote store")?;
        match self.mode {
            WriteMode::Both => self.local.put(instance, digest, data).await,
            WriteMode::RemoteOnly => Ok(()),
        }
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        let remote = self
            .remote
            .begin_write(instance, digest)
            .await
            .context("starting the remote write")?;
        let local = match self.mode {
            WriteMode::Both => Some(self.local.begin_write(instance, digest).await?),
            WriteMode::RemoteOnly => None,
        };
        Ok(Box::new(TeeWriter { remote, local }))
    }
}

/// Sends every chunk to both writers; commits the remote first.
struct TeeWriter {
    remote: Box<dyn BlobWriter>,
    local: Option<Box<dyn BlobWriter>>,
}

#[async_trait]
impl BlobWriter for TeeWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        match &mut self.local {
            Some(local) => {
                let (remote, local) =
                    futures::join!(self.remote.write(chunk.clone()), local.write(chunk));
                remote.context("writing to the remote store")?;
                local
            }
            None => self
                .remote
                .write(chunk)
                .await
                .context("writing to the remote store"),
        }
    }

    fn committed_size(&self) -> u64 {
        self.remote.committed_size()
    }

    async fn suspend(&mut self) -> Result<()> {
        self.remote.suspend().await?;
        match &mut self.local {
            Some(local) => local.suspend().await,
            None => Ok(()),
        }
    }

    fn resume(&mut self) {
        self.remote.resume();
        if let Some(local) = &mut self.local {
            local.resume();
            // The local store gave up its part for room: the blob goes to
            // the remote store only (the local copy is a cache).
            if local.committed_size() != self.remote.committed_size() {
                self.local = None;
            }
        }
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let TeeWriter { remote, local } = *self;
        // A local copy must never exist without the remote one: on a remote
        // failure the local writer is dropped, which aborts it.
        remote
            .commit()
            .await
            .context("committing to the remote store")?;
        match local {
            Some(local) => local.commit().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use reapi_core::blob_store::collect_stream;
    use reapi_core::Error;

    fn stores(mode: WriteMode) -> (Arc<MemoryStore>, Arc<MemoryStore>, WriteThroughStore) {
        let local = Arc::new(MemoryStore::new(1 << 30));
        let remote = Arc::new(MemoryStore::new(1 << 30));
        let store = WriteThroughStore::new(local.clone(), remote.clone(), mode);
        (local, remote, store)
    }

    fn blob(size: usize, seed: u8) -> (Digest, Bytes) {
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        (Digest::of_bytes(&data), Bytes::from(data))
    }

    #[tokio::test]
    async fn writes_land_in_both() {
        let (local, remote, store) = stores(WriteMode::Both);
        let (d, data) = blob(100, 1);
        store.put("i", &d, data.clone()).await.unwrap();
        assert!(local.find_missing("i", &[d]).await.unwrap().is_empty());
        assert!(remote.find_missing("i", &[d]).await.unwrap().is_empty());
        let (big, big_data) = blob(5 << 20, 2);
        let mut w = store.begin_write("i", &big).await.unwrap();
        for chunk in big_data.chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        w.commit().await.unwrap();
        assert_eq!(remote.get("i", &big).await.unwrap(), big_data);
        assert_eq!(local.get("i", &big).await.unwrap(), big_data);
    }

    #[tokio::test]
    async fn read_cache_mode_writes_remote_only() {
        let (local, remote, store) = stores(WriteMode::RemoteOnly);
        let (d, data) = blob(10, 3);
        store.put("", &d, data).await.unwrap();
        assert_eq!(local.blob_count(), 0);
        assert_eq!(remote.blob_count(), 1);
        // A read fills the local store.
        store.get("", &d).await.unwrap();
        assert_eq!(local.blob_count(), 1);
    }

    #[tokio::test]
    async fn misses_fill_local_from_remote() {
        let (local, remote, store) = stores(WriteMode::Both);
        let (small, small_data) = blob(10, 4);
        let (big, big_data) = blob((SMALL_BLOB_LIMIT + 10) as usize, 5);
        remote.put("", &small, small_data.clone()).await.unwrap();
        remote.put("", &big, big_data.clone()).await.unwrap();
        assert!(store
            .find_missing("", &[small, big])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.get("", &small).await.unwrap(), small_data);
        let read = collect_stream(store.read("", &big, 5, Some(100)).await.unwrap(), 100)
            .await
            .unwrap();
        assert_eq!(read, big_data.slice(5..105));
        assert_eq!(local.blob_count(), 2);
        let (absent, _) = blob(7, 6);
        assert_eq!(
            store.get("", &absent).await.unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            store.find_missing("", &[absent]).await.unwrap(),
            vec![absent]
        );
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let (local, remote, store) = stores(WriteMode::Both);
        let store = Arc::new(store);
        let (d, data) = blob(1000, 7);
        remote.put("", &d, data.clone()).await.unwrap();
        let reads = (0..16).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("", &d).await })
        });
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.unwrap().unwrap(), data);
        }
        assert_eq!(local.blob_count(), 1);
        assert!(store.fetches.lock().is_empty());
    }

    /// A remote that refuses every write, to show nothing stays local.
    struct RefusingRemote(MemoryStore);

    #[async_trait]
    impl BlobStore for RefusingRemote {
        async fn find_missing(&self, i: &str, d: &[Digest]) -> Result<Vec<Digest>> {
            self.0.find_missing(i, d).await
        }
        async fn get(&self, i: &str, d: &Digest) -> Result<Bytes> {
            self.0.get(i, d).await
        }
        async fn read(&self, i: &str, d: &Digest, o: u64, l: Option<u64>) -> Result<ChunkStream> {
            self.0.read(i, d, o, l).await
        }
        async fn put(&self, _: &str, _: &Digest, _: Bytes) -> Result<()> {
            Err(Error::unavailable("remote is down"))
        }
        async fn begin_write(&self, i: &str, d: &Digest) -> Result<Box<dyn BlobWriter>> {
            Ok(Box::new(RefusingWriter(self.0.begin_write(i, d).await?)))
        }
    }

    struct RefusingWriter(Box<dyn BlobWriter>);

    #[async_trait]
    impl BlobWriter for RefusingWriter {
        async fn write(&mut self, chunk: Bytes) -> Result<()> {
            self.0.write(chunk).await
        }
        fn committed_size(&self) -> u64 {
            self.0.committed_size()
        }
        async fn commit(self: Box<Self>) -> Result<()> {
            Err(Error::unavailable("remote is down"))
        }
    }

    #[tokio::test]
    async fn remote_failure_leaves_nothing_local() {
        let local = Arc::new(MemoryStore::new(1 << 20));
        let remote = Arc::new(RefusingRemote(MemoryStore::new(1 << 20)));
        let store = WriteThroughStore::new(local.clone(), remote, WriteMode::Both);
        let (d, data) = blob(100, 8);
        assert_eq!(
            store.put("", &d, data.clone()).await.unwrap_err().code(),
            Code::Unavailable
        );
        let mut w = store.begin_write("", &d).await.unwrap();
        w.write(data).await.unwrap();
        assert_eq!(w.commit().await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(local.blob_count(), 0);
    }
}
