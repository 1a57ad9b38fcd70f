//! `BlobStore` implementations, one per file. The S3 and GCS stores are
//! behind the `s3` and `gcs` cargo features (on by default), so an embedder
//! without buckets does not link the AWS and Google stacks; their
//! configuration types are always there.

pub mod bucket;
pub mod cluster;
pub mod disk;
#[cfg(feature = "gcs")]
pub mod gcs;
pub mod gcs_config;
pub mod grpc;
pub mod memory;
pub mod read_range;
#[cfg(feature = "s3")]
pub mod s3;
pub mod s3_config;
pub mod write_through;

pub use bucket::ObjectBucket;
pub use cluster::{ClusterStore, LocalMember};
pub use disk::{DiskStore, DiskStoreConfig};
#[cfg(feature = "gcs")]
pub use gcs::GcsStore;
pub use gcs_config::GcsConfig;
pub use grpc::GrpcStore;
pub use memory::MemoryStore;
#[cfg(feature = "s3")]
pub use s3::S3Store;
pub use s3_config::S3Config;
pub use write_through::{WriteMode, WriteThroughStore};
