//! `ActionCache` implementations and layers, one per file.

pub mod completeness;
pub mod disk;
pub mod memory;

pub use completeness::CompletenessCheckingActionCache;
pub use disk::DiskActionCache;
pub use memory::MemoryActionCache;
