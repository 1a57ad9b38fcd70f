//! `BlobStore` implementations, one per file.

pub mod bucket;
pub mod disk;
pub mod gcs;
pub mod grpc;
pub mod memory;
pub mod read_range;
pub mod s3;
pub mod write_through;

pub use bucket::ObjectBucket;
pub use disk::{DiskStore, DiskStoreConfig};
pub use gcs::{GcsConfig, GcsStore};
pub use grpc::GrpcStore;
pub use memory::MemoryStore;
pub use s3::{S3Config, S3Store};
pub use write_through::{WriteMode, WriteThroughStore};
