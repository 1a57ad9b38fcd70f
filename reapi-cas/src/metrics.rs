//! Storage metrics shared by every server in the process: action cache
//! lookups by outcome, and CAS bytes received and sent by the client-facing
//! services (ByteStream, batch calls). Registered on first use.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Unit;
use reapi_core::metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

struct StorageMetrics {
    lookups: Family<LookupLabels, Counter>,
    received: Counter,
    sent: Counter,
}

static STORAGE: LazyLock<StorageMetrics> = LazyLock::new(|| {
    let storage = StorageMetrics {
        lookups: Family::default(),
        received: Counter::default(),
        sent: Counter::default(),
    };
    metrics::register(|registry| {
        registry.register(
            "action_cache_lookups",
            "Action cache lookups by clients and by Execute, by result (hit or miss)",
            storage.lookups.clone(),
        );
        registry.register_with_unit(
            "cas_received",
            "Blob bytes clients uploaded (ByteStream Write, BatchUpdateBlobs)",
            Unit::Bytes,
            storage.received.clone(),
        );
        registry.register_with_unit(
            "cas_sent",
            "Blob bytes sent to clients (ByteStream Read, BatchReadBlobs)",
            Unit::Bytes,
            storage.sent.clone(),
        );
    });
    storage
});

/// Counts one action cache lookup.
pub fn action_cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    STORAGE
        .lookups
        .get_or_create(&LookupLabels { result })
        .inc();
}

/// The action cache lookups counted so far: (hits, misses).
pub fn action_cache_lookups() -> (u64, u64) {
    let count = |result| {
        STORAGE
            .lookups
            .get_or_create(&LookupLabels { result })
            .get()
    };
    (count("hit"), count("miss"))
}

pub fn cas_received(bytes: usize) {
    STORAGE.received.inc_by(bytes as u64);
}

pub fn cas_sent(bytes: usize) {
    STORAGE.sent.inc_by(bytes as u64);
}

/// A disk store's contents at every scrape: blobs, bytes used and the
/// budget. Register with `reapi_core::metrics::register_collector` for the
/// store a process serves; `role` tells a worker's replica share from its
/// execution cache.
#[derive(Debug)]
pub struct DiskStoreCollector {
    store: std::sync::Weak<crate::store::DiskStore>,
    role: &'static str,
}

impl DiskStoreCollector {
    pub fn new(store: &std::sync::Arc<crate::store::DiskStore>, role: &'static str) -> Self {
        DiskStoreCollector {
            store: std::sync::Arc::downgrade(store),
            role,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

impl prometheus_client::collector::Collector for DiskStoreCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let Some(store) = self.store.upgrade() else {
            return Ok(());
        };
        let labels = RoleLabels { role: self.role };
        let figures = [
            (
                "disk_blobs",
                "Blobs in the disk store",
                None,
                store.blob_count() as i64,
            ),
            (
                "disk_used",
                "Bytes of blobs in the disk store",
                Some(Unit::Bytes),
                store.used_bytes() as i64,
            ),
            (
                "disk_unfinished_uploads",
                "Bytes in temp files of unfinished uploads, in progress or parked; \
                 they count against the budget",
                Some(Unit::Bytes),
                store.temp_bytes() as i64,
            ),
            (
                "disk_capacity",
                "The disk store's budget (--disk_size or --replica_space)",
                Some(Unit::Bytes),
                store.max_bytes() as i64,
            ),
        ];
        for (name, help, unit, value) in figures {
            metrics::encode_gauges(
                &mut encoder,
                name,
                help,
                unit.as_ref(),
                [(labels.clone(), value)],
            )?;
        }
        Ok(())
    }
}
