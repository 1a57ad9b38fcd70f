//! Uploads whose ByteStream Write stream broke before `finish_write`, kept
//! so the client can resume at `QueryWriteStatus`'s `committed_size`.
//!
//! Bounded in count and age: an upload that is not resumed in time is
//! dropped, and dropping a `BlobWriter` deletes what it held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reapi_core::resource_name::WriteResource;
use reapi_core::BlobWriter;

const MAX_PARKED: usize = 1024;
const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Identifies one upload: the same instance, uuid and digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadKey(String);

impl UploadKey {
    pub fn of(resource: &WriteResource) -> Self {
        UploadKey(format!(
            "{}\0{}\0{}",
            resource.instance_name, resource.uuid, resource.digest
        ))
    }
}

type Parked = HashMap<UploadKey, (Box<dyn BlobWriter>, Instant)>;

#[derive(Default)]
pub struct PendingUploads {
    parked: Mutex<Parked>,
    /// Uploads whose stream is open now, with the bytes received so far, so
    /// QueryWriteStatus can answer while a write is in progress.
    active: Mutex<HashMap<UploadKey, Arc<AtomicU64>>>,
}

/// Registration of an open Write stream; unregisters on drop.
pub struct ActiveUpload<'a> {
    uploads: &'a PendingUploads,
    key: UploadKey,
    received: Arc<AtomicU64>,
}

impl ActiveUpload<'_> {
    pub fn set_received(&self, bytes: u64) {
        self.received.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for ActiveUpload<'_> {
    fn drop(&mut self) {
        let mut active = self.uploads.active.lock();
        // A newer stream for the same upload may have replaced this entry.
        if active
            .get(&self.key)
            .is_some_and(|r| Arc::ptr_eq(r, &self.received))
        {
            active.remove(&self.key);
        }
    }
}

impl PendingUploads {
    /// Takes a parked upload out so one stream at a time continues it.
    pub fn take(&self, key: &UploadKey) -> Option<Box<dyn BlobWriter>> {
        self.parked.lock().remove(key).map(|(writer, _)| writer)
    }

    /// Bytes a parked upload holds, if there is one.
    /// Registers an open Write stream for `key`.
    pub fn track(&self, key: UploadKey, received: u64) -> ActiveUpload<'_> {
        let counter = Arc::new(AtomicU64::new(received));
        self.active.lock().insert(key.clone(), counter.clone());
        ActiveUpload {
            uploads: self,
            key,
            received: counter,
        }
    }

    /// Bytes received for an upload in progress or parked, if there is one.
    pub fn committed_size(&self, key: &UploadKey) -> Option<u64> {
        if let Some(received) = self.active.lock().get(key) {
            return Some(received.load(Ordering::Relaxed));
        }
        self.parked
            .lock()
            .get(key)
            .map(|(writer, _)| writer.committed_size())
    }

    pub fn park(&self, key: UploadKey, writer: Box<dyn BlobWriter>) {
        let now = Instant::now();
        // Writers are dropped outside the lock: dropping one deletes files.
        let mut dropped = Vec::new();
        {
            let mut parked = self.parked.lock();
            let expired: Vec<UploadKey> = parked
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) > MAX_AGE)
                .map(|(k, _)| k.clone())
                .collect();
            dropped.extend(expired.iter().filter_map(|k| parked.remove(k)));
            if parked.len() >= MAX_PARKED {
                let oldest = parked
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                dropped.extend(oldest.and_then(|k| parked.remove(&k)));
            }
            parked.insert(key, (writer, now));
        }
        if !dropped.is_empty() {
            tracing::debug!(count = dropped.len(), "dropping abandoned uploads");
        }
    }
}
