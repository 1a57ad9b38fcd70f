//! Uploads whose ByteStream Write stream broke before `finish_write`, kept
//! so the client can resume at `QueryWriteStatus`'s `committed_size`
//! (ADR 0002).
//!
//! A parked upload is its writer, suspended first (its buffers flushed to
//! its temporary file), and a small record. Bounded in count, per instance
//! and in all (the oldest goes first), and in age: a task drops uploads not
//! resumed within [`MAX_AGE`], and dropping a `BlobWriter` deletes what it
//! held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use reapi_core::resource_name::WriteResource;
use reapi_core::BlobWriter;
use tokio::time::Instant;

/// Parked uploads at most, in all and per instance.
pub const MAX_PARKED_UPLOADS: usize = 1024;
pub const MAX_PARKED_PER_INSTANCE: usize = 256;

/// How long an upload waits to be resumed.
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// How long a resuming Write waits for its upload's previous stream to
/// be parked.
const PARKING_WAIT: Duration = Duration::from_secs(10);

/// How often expired uploads are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Identifies one upload: the same instance, uuid and digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadKey {
    instance: String,
    rest: String,
}

impl UploadKey {
    pub fn of(resource: &WriteResource) -> Self {
        UploadKey {
            instance: resource.instance_name.clone(),
            rest: format!("{}\0{}", resource.uuid, resource.digest),
        }
    }
}

struct ParkedUpload {
    writer: Box<dyn BlobWriter>,
    at: Instant,
}

type Parked = HashMap<UploadKey, ParkedUpload>;

pub struct PendingUploads {
    /// How long an upload waits to be resumed ([`MAX_AGE`]), and how often
    /// expired ones are looked for.
    max_age: Duration,
    sweep_interval: Duration,
    parked: Mutex<Parked>,
    /// Whether the task that drops expired uploads runs.
    sweeping: AtomicBool,
    /// Uploads whose stream is open now, with the bytes received so far, so
    /// QueryWriteStatus can answer while a write is in progress.
    active: Mutex<HashMap<UploadKey, Arc<AtomicU64>>>,
    /// Woken when an upload is parked or a stream ends, for
    /// [`PendingUploads::take_when_parked`].
    changed: tokio::sync::Notify,
}

/// Registration of an open Write stream; unregisters on drop.
pub struct ActiveUpload {
    uploads: Arc<PendingUploads>,
    key: UploadKey,
    received: Arc<AtomicU64>,
}

impl ActiveUpload {
    pub fn set_received(&self, bytes: u64) {
        self.received.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        let mut active = self.uploads.active.lock();
        // A newer stream for the same upload may have replaced this entry.
        if active
            .get(&self.key)
            .is_some_and(|r| Arc::ptr_eq(r, &self.received))
        {
            active.remove(&self.key);
        }
        drop(active);
        self.uploads.changed.notify_waiters();
    }
}

impl Default for PendingUploads {
    fn default() -> Self {
        PendingUploads::with_max_age(MAX_AGE, SWEEP_INTERVAL)
    }
}

impl PendingUploads {
    /// Uploads kept `max_age`, looked at every `sweep_interval`.
    pub fn with_max_age(max_age: Duration, sweep_interval: Duration) -> Self {
        PendingUploads {
            max_age,
            sweep_interval,
            parked: Mutex::default(),
            sweeping: AtomicBool::new(false),
            active: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Takes a parked upload out so one stream at a time continues it.
    pub fn take(&self, key: &UploadKey) -> Option<Box<dyn BlobWriter>> {
        let mut writer = self.parked.lock().remove(key)?.writer;
        writer.resume();
        Some(writer)
    }

    /// [`PendingUploads::take`], but when the upload's previous stream is
    /// still being parked (it ended, and its writer is being suspended),
    /// waits for it: a client may resume as soon as QueryWriteStatus
    /// answered.
    pub async fn take_when_parked(&self, key: &UploadKey) -> Option<Box<dyn BlobWriter>> {
        let deadline = Instant::now() + PARKING_WAIT;
        loop {
            // Registered before looking, so a park in between still wakes.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(writer) = self.take(key) {
                return Some(writer);
            }
            if !self.active.lock().contains_key(key) {
                return None;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Registers an open Write stream for `key`.
    pub fn track(self: &Arc<Self>, key: UploadKey, received: u64) -> ActiveUpload {
        let counter = Arc::new(AtomicU64::new(received));
        self.active.lock().insert(key.clone(), counter.clone());
        ActiveUpload {
            uploads: Arc::clone(self),
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
            .map(|parked| parked.writer.committed_size())
    }

    /// Uploads parked now.
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.parked.lock().len()
    }

    /// Parks `writer` (already suspended) for resumption, making room by
    /// dropping expired uploads, then the oldest of its instance or of all.
    pub fn park(self: &Arc<Self>, key: UploadKey, writer: Box<dyn BlobWriter>) {
        self.start_sweeping();
        let now = Instant::now();
        // Writers are dropped outside the lock: dropping one deletes files.
        let mut dropped = self.take_expired(now);
        let mut crowded = 0;
        {
            let mut parked = self.parked.lock();
            let of_instance = parked.keys().filter(|k| k.instance == key.instance).count();
            let oldest = |parked: &Parked, same_instance: bool| {
                parked
                    .iter()
                    .filter(|(k, _)| !same_instance || k.instance == key.instance)
                    .min_by_key(|(_, p)| p.at)
                    .map(|(k, _)| k.clone())
            };
            let full = if of_instance >= MAX_PARKED_PER_INSTANCE {
                oldest(&parked, true)
            } else if parked.len() >= MAX_PARKED_UPLOADS {
                oldest(&parked, false)
            } else {
                None
            };
            if let Some(upload) = full.and_then(|k| parked.remove(&k)) {
                dropped.push(upload.writer);
                crowded += 1;
            }
            parked.insert(key, ParkedUpload { writer, at: now });
        }
        self.changed.notify_waiters();
        if crowded > 0 {
            tracing::warn!(
                max = MAX_PARKED_UPLOADS,
                max_per_instance = MAX_PARKED_PER_INSTANCE,
                "too many unfinished uploads parked; dropped the oldest"
            );
        }
        drop(dropped);
    }

    /// Drops the uploads parked longer than [`MAX_AGE`]; returns how many.
    pub fn expire(&self) -> usize {
        let expired = self.take_expired(Instant::now());
        let count = expired.len();
        if count > 0 {
            tracing::info!(
                count,
                max_age = ?self.max_age,
                "dropped unfinished uploads not resumed in time"
            );
        }
        count
    }

    fn take_expired(&self, now: Instant) -> Vec<Box<dyn BlobWriter>> {
        let mut parked = self.parked.lock();
        let expired: Vec<UploadKey> = parked
            .iter()
            .filter(|(_, p)| now.duration_since(p.at) > self.max_age)
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .iter()
            .filter_map(|k| parked.remove(k))
            .map(|p| p.writer)
            .collect()
    }

    /// Starts, once, the task that drops expired uploads; it ends with the
    /// service.
    fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.sweep_interval;
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(uploads) = weak.upgrade() else {
                    return;
                };
                uploads.expire();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use reapi_core::Result;
    use tokio::time::sleep;

    /// A writer that counts its drops.
    struct Counted(Arc<AtomicU64>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl BlobWriter for Counted {
        async fn write(&mut self, _: Bytes) -> Result<()> {
            Ok(())
        }
        fn committed_size(&self) -> u64 {
            7
        }
        async fn commit(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    fn key(instance: &str, n: usize) -> UploadKey {
        UploadKey {
            instance: instance.to_string(),
            rest: n.to_string(),
        }
    }

    #[tokio::test]
    async fn parked_uploads_expire_on_time_without_further_traffic() {
        let age = Duration::from_millis(400);
        let sweep = Duration::from_millis(50);
        let uploads = Arc::new(PendingUploads::with_max_age(age, sweep));
        let dropped = Arc::new(AtomicU64::new(0));
        uploads.park(key("", 1), Box::new(Counted(dropped.clone())));
        assert_eq!(uploads.committed_size(&key("", 1)), Some(7));
        sleep(age / 2).await;
        assert_eq!(uploads.parked(), 1, "dropped too early");
        // No other upload comes; the sweeping task drops it. Waited for
        // rather than timed, so a busy machine delaying the task cannot
        // fail the test; parking anything more would expire it here.
        let deadline = Instant::now() + Duration::from_secs(10);
        while uploads.parked() > 0 && Instant::now() < deadline {
            sleep(sweep).await;
        }
        assert_eq!(uploads.parked(), 0, "not dropped within 10 s");
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(uploads.committed_size(&key("", 1)), None);
    }

    #[tokio::test]
    async fn an_instance_cannot_take_every_place() {
        let uploads = Arc::new(PendingUploads::default());
        let dropped = Arc::new(AtomicU64::new(0));
        for n in 0..MAX_PARKED_PER_INSTANCE + 10 {
            uploads.park(key("greedy", n), Box::new(Counted(dropped.clone())));
        }
        assert_eq!(uploads.parked(), MAX_PARKED_PER_INSTANCE);
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
        // The oldest went first.
        assert_eq!(uploads.committed_size(&key("greedy", 0)), None);
        assert_eq!(
            uploads.committed_size(&key("greedy", MAX_PARKED_PER_INSTANCE + 9)),
            Some(7)
        );
        // Another instance still parks.
        uploads.park(key("other", 0), Box::new(Counted(dropped.clone())));
        assert_eq!(uploads.committed_size(&key("other", 0)), Some(7));
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn the_total_is_bounded_too() {
        let uploads = Arc::new(PendingUploads::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let instances = MAX_PARKED_UPLOADS / MAX_PARKED_PER_INSTANCE + 2;
        for i in 0..instances {
            for n in 0..MAX_PARKED_PER_INSTANCE {
                uploads.park(key(&i.to_string(), n), Box::new(Counted(dropped.clone())));
            }
        }
        assert_eq!(uploads.parked(), MAX_PARKED_UPLOADS);
        assert_eq!(
            dropped.load(Ordering::SeqCst) as usize,
            instances * MAX_PARKED_PER_INSTANCE - MAX_PARKED_UPLOADS
        );
    }

    #[tokio::test]
    async fn a_resume_waits_for_its_stream_to_be_parked_and_no_longer() {
        let uploads = Arc::new(PendingUploads::default());
        let dropped = Arc::new(AtomicU64::new(0));
        // A stream still open: its upload is parked a moment later.
        let progress = uploads.track(key("", 1), 7);
        let parking = {
            let uploads = Arc::clone(&uploads);
            let dropped = Arc::clone(&dropped);
            tokio::spawn(async move {
                sleep(Duration::from_millis(300)).await;
                uploads.park(key("", 1), Box::new(Counted(dropped)));
                drop(progress);
            })
        };
        let started = Instant::now();
        assert!(uploads.take_when_parked(&key("", 1)).await.is_some());
        // Woken by the park, not by PARKING_WAIT running out.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < PARKING_WAIT / 2,
            "{waited:?}"
        );
        parking.await.unwrap();

        // A stream that ends without parking: the wait ends with it.
        let progress = uploads.track(key("", 2), 7);
        tokio::spawn(async move {
            sleep(Duration::from_millis(200)).await;
            drop(progress);
        });
        let started = Instant::now();
        assert!(uploads.take_when_parked(&key("", 2)).await.is_none());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < PARKING_WAIT / 2,
            "{waited:?}"
        );
    }
}
