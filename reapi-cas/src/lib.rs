//! Storage for the REAPI service: blob stores (memory, disk), action caches
//! and the gRPC services that expose them (Capabilities,
//! ContentAddressableStorage, ByteStream, ActionCache).
//!
//! Each store or cache layer is one file implementing `BlobStore` or
//! `ActionCache`; services only ever see `Arc<dyn BlobStore>` and
//! `Arc<dyn ActionCache>`.

pub mod action_cache;
pub mod asset;
pub mod chunking;
pub mod cluster_storage;
pub mod compression;
pub mod config;
pub mod http_client;
pub mod instance_dir;
mod lru;
pub mod metrics;
pub mod service;
pub mod store;
