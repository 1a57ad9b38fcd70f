//! What repair shows operators: blobs found short of copies and not yet
//! repaired, the bytes of copies still to make, and counters of copies
//! and passes.
//!
//! Each repairer keeps its own [`RepairProgress`]; the gauges are their sum
//! at scrape time (a worker runs one repairer; a test process may hold
//! many). Counters are process-wide.
//!
//! A pass plans one chunk of blobs at a time: the gauges cover the chunks
//! planned so far in the current pass plus the blobs a previous pass could
//! not finish, not the chunks still to be looked at.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Unit;
use reapi_core::metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CopyLabels {
    result: &'static str,
}

struct RepairCounters {
    copies: Family<CopyLabels, Counter>,
    copied_bytes: Counter,
    passes: Counter,
    /// Every repairer's progress, for the gauges.
    progress: Mutex<Vec<Weak<RepairProgress>>>,
}

static REPAIR: LazyLock<RepairCounters> = LazyLock::new(|| {
    let repair = RepairCounters {
        copies: Family::default(),
        copied_bytes: Counter::default(),
        passes: Counter::default(),
        progress: Mutex::new(Vec::new()),
    };
    metrics::register(|registry| {
        registry.register(
            "repair_copies",
            "Copies made by repair, by result (ok or failed)",
            repair.copies.clone(),
        );
        registry.register_with_unit(
            "repair_copied",
            "Bytes copied by repair",
            Unit::Bytes,
            repair.copied_bytes.clone(),
        );
        registry.register(
            "repair_passes",
            "Repair passes over this process's blobs",
            repair.passes.clone(),
        );
    });
    metrics::register_collector(ProgressCollector);
    repair
});

/// One repairer's blobs short of copies and bytes still to copy.
#[derive(Debug, Default)]
pub struct RepairProgress {
    under_replicated: AtomicI64,
    backlog_bytes: AtomicI64,
    /// Blobs a pass left short of copies, counted again by the next pass.
    unfinished: AtomicI64,
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RepairProgress {
    /// A new repairer's progress, counted in the process's gauges.
    pub(super) fn new() -> Arc<RepairProgress> {
        let progress = Arc::new(RepairProgress::default());
        let mut all = REPAIR.progress.lock();
        all.retain(|p| p.strong_count() > 0);
        all.push(Arc::downgrade(&progress));
        progress
    }

    /// Blobs short of copies and not repaired yet.
    pub fn under_replicated(&self) -> i64 {
        self.under_replicated.load(Ordering::Relaxed)
    }

    /// Bytes of planned copies not made yet.
    pub fn backlog_bytes(&self) -> i64 {
        self.backlog_bytes.load(Ordering::Relaxed)
    }

    /// A pass starts: what the last one left unfinished it counts again.
    pub(super) fn pass_started(&self) {
        REPAIR.passes.inc();
        let left = self.unfinished.swap(0, Ordering::Relaxed);
        self.under_replicated.fetch_sub(left, Ordering::Relaxed);
    }

    /// A chunk's plan: `blobs` short of copies, `bytes` to copy.
    pub(super) fn planned(&self, blobs: u64, bytes: u64) {
        self.under_replicated
            .fetch_add(signed(blobs), Ordering::Relaxed);
        self.backlog_bytes
            .fetch_add(signed(bytes), Ordering::Relaxed);
    }

    /// One copy of `bytes` ended.
    pub(super) fn copy_ended(&self, bytes: u64, ok: bool) {
        self.backlog_bytes
            .fetch_sub(signed(bytes), Ordering::Relaxed);
        let result = if ok { "ok" } else { "failed" };
        REPAIR.copies.get_or_create(&CopyLabels { result }).inc();
        if ok {
            REPAIR.copied_bytes.inc_by(bytes);
        }
    }

    /// A blob's copies ended: repaired when all succeeded, else it stays
    /// counted until the next pass.
    pub(super) fn blob_ended(&self, repaired: bool) {
        if repaired {
            self.under_replicated.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.unfinished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sums every live repairer's progress at scrape time.
#[derive(Debug)]
struct ProgressCollector;

impl Collector for ProgressCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let (mut blobs, mut bytes) = (0, 0);
        for progress in REPAIR.progress.lock().iter().filter_map(Weak::upgrade) {
            blobs += progress.under_replicated();
            bytes += progress.backlog_bytes();
        }
        metrics::encode_gauge(
            &mut encoder,
            "under_replicated_blobs",
            "Blobs this process's repair found short of copies and has not repaired yet",
            None,
            blobs,
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "repair_backlog",
            "Bytes of the copies repair has planned and not made yet",
            Some(&Unit::Bytes),
            bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` in the rendered metrics.
    fn sample(text: &str, name: &str) -> Option<i64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn the_gauges_sum_the_live_repairers() {
        let one = RepairProgress::new();
        one.planned(2, 300);
        one.copy_ended(100, true);
        let text = reapi_core::metrics::render();
        // Other tests' repairers may add theirs.
        assert!(
            sample(&text, "reapi_under_replicated_blobs").is_some_and(|n| n >= 2),
            "{text}"
        );
        assert!(
            sample(&text, "reapi_repair_backlog_bytes").is_some_and(|n| n >= 200),
            "{text}"
        );
        one.blob_ended(true);
        one.blob_ended(false);
        assert_eq!(one.under_replicated(), 1, "the unrepaired blob stays");
        one.pass_started();
        assert_eq!(one.under_replicated(), 0, "the next pass counts it again");
    }
}
