//! `ActionCache` implementations and layers, one per file.

pub mod bucket_backup;
pub mod completeness;
pub mod disk;
pub mod memory;
pub mod replicated;

pub use bucket_backup::BucketBackupActionCache;
pub use completeness::CompletenessCheckingActionCache;
pub use disk::DiskActionCache;
pub use memory::MemoryActionCache;
pub use replicated::{ReplicatedActionCache, REPLICA_HEADER};
