//! `BlobStore` implementations, one per file.

pub mod disk;
pub mod memory;
pub mod read_range;

pub use disk::{DiskStore, DiskStoreConfig};
pub use memory::MemoryStore;
