//! Repair: brings every blob a member holds back to `replica_count`
//! copies on its current holders, after membership changed.
//!
//! Each member with replica space runs it over its own disk: for every
//! blob it holds, it asks the blob's holders (one batched FindMissingBlobs
//! per member) who has it. The first holder in rank order that has it
//! copies it to the holders that lack it; when no holder has it (this
//! member held it off its place), this member does. So after a worker
//! dies, each of its blobs is re-copied once, by the best surviving holder;
//! after a worker joins, it receives the blobs that now place on it.
//!
//! A member handing off its share before it leaves ([`Repairer::hand_off`])
//! ranks without itself and copies every blob to every holder that lacks
//! it, whoever else holds it: the others may not have seen it go yet.
//!
//! Copies are limited in bytes per second and in number at once, so repair
//! does not starve builds of disk and network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use reapi_core::blob_store::BlobStore;
use reapi_core::cluster::placement::Placement;
use reapi_core::{Digest, Result};

use super::read::copy_blob;
use super::repair_metrics::RepairProgress;
use super::ClusterStore;

/// Digests handled per round: bounds the memory of one pass.
const CHUNK: usize = 50_000;

/// Lists what a member holds: (instance, digests) per instance.
pub trait LocalBlobs: Send + Sync + 'static {
    fn list_blobs(&self) -> Vec<(String, Vec<Digest>)>;
}

#[derive(Clone, Debug)]
pub struct RepairConfig {
    /// Bytes copied per second, at most.
    pub bytes_per_second: u64,
    /// Copies at once.
    pub concurrency: usize,
    /// Wait after a membership change before a pass, so that changes
    /// arriving together are handled once.
    pub settle: Duration,
    /// A pass also runs this often without a change, to finish copies
    /// that failed.
    pub period: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            bytes_per_second: 200 << 20,
            concurrency: 8,
            settle: Duration::from_secs(2),
            period: Duration::from_secs(300),
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Blobs this member holds that were looked at.
    pub checked: u64,
    /// Copies made to holders that lacked the blob.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Copies that failed (retried at the next pass).
    pub failed: u64,
}

/// Repairs the share of the member `store`'s local member.
#[derive(Clone)]
pub struct Repairer {
    store: ClusterStore,
    local_id: Arc<str>,
    local: Arc<dyn BlobStore>,
    blobs: Arc<dyn LocalBlobs>,
    config: RepairConfig,
    limiter: Arc<RateLimiter>,
    progress: Arc<RepairProgress>,
}

impl Repairer {
    /// `None` when `store` has no local member: nothing to repair from.
    pub fn new(
        store: ClusterStore,
        blobs: Arc<dyn LocalBlobs>,
        config: RepairConfig,
    ) -> Option<Repairer> {
        let local = store.inner.local.clone()?;
        Some(Repairer {
            limiter: Arc::new(RateLimiter::new(config.bytes_per_second)),
            progress: RepairProgress::new(),
            local_id: Arc::from(local.id.as_str()),
            local: local.store,
            store,
            blobs,
            config,
        })
    }

    /// Runs a pass after every membership change (once it settles) and
    /// every `period`, until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut placement = self.store.inner.placement.clone();
            loop {
                let changed = tokio::time::timeout(self.config.period, placement.changed()).await;
                if matches!(changed, Ok(Err(_))) {
                    return; // the sender is gone: the process is stopping
                }
                tokio::time::sleep(self.config.settle).await;
                placement.mark_unchanged();
                let report = self.pass().await;
                if report.copied > 0 || report.failed > 0 {
                    tracing::info!(?report, "cluster CAS repair pass");
                } else {
                    tracing::debug!(?report, "cluster CAS repair pass: nothing to copy");
                }
            }
        })
    }

    /// One pass over this member's blobs with the current members.
    pub async fn pass(&self) -> RepairReport {
        let placement = self.store.placement();
        self.run(&placement, false).await
    }

    /// Copies every blob this member holds to the holders it has without
    /// this member, before it leaves. Returns when every copy was made or
    /// failed.
    pub async fn hand_off(&self) -> RepairReport {
        let placement = self.store.placement().without(&self.local_id);
        self.run(&placement, true).await
    }

    /// Blobs short of copies and bytes still to copy, as this repairer
    /// knows them.
    pub fn progress(&self) -> &RepairProgress {
        &self.progress
    }

    async fn run(&self, placement: &Placement, leaving: bool) -> RepairReport {
        let mut report = RepairReport::default();
        self.progress.pass_started();
        let k = placement.copies_wanted(self.store.replica_count());
        if k == 0 {
            return report;
        }
        let blobs = self.blobs.list_blobs();
        for (instance, digests) in &blobs {
            for chunk in digests.chunks(CHUNK) {
                let copies = self.plan(placement, k, instance, chunk, leaving).await;
                report.checked += chunk.len() as u64;
                // A blob's copies are next to each other in the plan.
                let short = copies
                    .iter()
                    .enumerate()
                    .filter(|(i, (digest, _))| *i == 0 || copies[i - 1].0 != *digest)
                    .count();
                let bytes = copies.iter().map(|(digest, _)| digest.size()).sum();
                self.progress.planned(short as u64, bytes);
                let done: Vec<(Digest, bool)> = stream::iter(copies)
                    .map(|(digest, target)| async move {
                        self.limiter.take(digest.size()).await;
                        let result = self.copy(instance, &digest, &target).await;
                        if let Err(e) = &result {
                            tracing::warn!(%digest, member = %target, error = %e, "repair copy failed");
                        }
                        self.progress.copy_ended(digest.size(), result.is_ok());
                        (digest, result.is_ok())
                    })
                    .buffer_unordered(self.config.concurrency.max(1))
                    .collect()
                    .await;
                let mut repaired: HashMap<Digest, bool> = HashMap::with_capacity(short);
                for (digest, ok) in done {
                    if ok {
                        report.copied += 1;
                        report.copied_bytes += digest.size();
                    } else {
                        report.failed += 1;
                    }
                    *repaired.entry(digest).or_insert(true) &= ok;
                }
                for ok in repaired.into_values() {
                    self.progress.blob_ended(ok);
                }
            }
        }
        report
    }

    /// The copies to make for `digests`: (blob, holder id lacking it).
    async fn plan(
        &self,
        placement: &Placement,
        k: usize,
        instance: &str,
        digests: &[Digest],
        leaving: bool,
    ) -> Vec<(Digest, Arc<str>)> {
        let holders = placement.holders();
        let mut top_of: Vec<Vec<usize>> = Vec::with_capacity(digests.len());
        let mut ask: Vec<Vec<Digest>> = vec![Vec::new(); holders.len()];
        let mut top = Vec::with_capacity(k);
        for digest in digests {
            placement.top_indices(instance, digest, k, &mut top);
            for &m in &top {
                if *holders[m].id != *self.local_id {
                    ask[m].push(*digest);
                }
            }
            top_of.push(top.clone());
        }
        // Who holds what among the holders; a member that cannot answer is
        // left alone this pass (it may be dying: the next pass sees).
        let answers = futures::future::join_all(ask.iter().enumerate().map(|(m, list)| {
            let holder = &holders[m];
            async move {
                if list.is_empty() {
                    return None;
                }
                let store = self.store.store_of(holder).ok()?;
                match store.find_missing(instance, list).await {
                    Ok(missing) => Some(missing.into_iter().collect::<HashSet<Digest>>()),
                    Err(e) => {
                        tracing::debug!(member = %holder.id, error = %e, "repair: member did not answer");
                        None
                    }
                }
            }
        }))
        .await;
        let mut copies = Vec::new();
        for (digest, top) in digests.iter().zip(&top_of) {
            let mut lacking = Vec::new();
            // Whether the best-ranked holder known to have the blob is
            // this member; `None`: no holder is known to have it.
            let mut first_holder_is_me = None;
            for &m in top {
                let is_me = *holders[m].id == *self.local_id;
                let has = is_me
                    || match &answers[m] {
                        Some(missing) if missing.contains(digest) => {
                            lacking.push(m);
                            false
                        }
                        Some(_) => true,
                        None => false, // unknown: neither relied on nor copied to
                    };
                if has && first_holder_is_me.is_none() {
                    first_holder_is_me = Some(is_me);
                }
            }
            if !lacking.is_empty() && (leaving || first_holder_is_me.unwrap_or(true)) {
                copies.extend(
                    lacking
                        .into_iter()
                        .map(|m| (*digest, holders[m].id.clone())),
                );
            }
        }
        copies
    }

    async fn copy(&self, instance: &str, digest: &Digest, target: &Arc<str>) -> Result<()> {
        let placement = self.store.placement();
        let holder = placement
            .holders()
            .iter()
            .find(|h| h.id == *target)
            .cloned()
            .ok_or_else(|| {
                reapi_core::Error::unavailable(format!("member {target} left before the copy"))
            })?;
        let store = self.store.store_of(&holder)?;
        copy_blob(self.local.as_ref(), store.as_ref(), instance, digest).await
    }
}

/// Copying may run this far ahead of the rate.
const BURST: Duration = Duration::from_secs(1);

/// A token bucket over bytes: `take` waits until the bytes fit the rate.
struct RateLimiter {
    bytes_per_second: u64,
    /// When the bytes taken so far will have been paid for.
    paid_until: Mutex<Instant>,
}

impl RateLimiter {
    fn new(bytes_per_second: u64) -> Self {
        RateLimiter {
            bytes_per_second: bytes_per_second.max(1),
            paid_until: Mutex::new(Instant::now()),
        }
    }

    async fn take(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let wait = {
            let mut paid = self.paid_until.lock();
            let now = Instant::now();
            if *paid < now {
                *paid = now; // unused rate is not saved up beyond the burst
            }
            *paid += cost;
            paid.saturating_duration_since(now).saturating_sub(BURST)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
