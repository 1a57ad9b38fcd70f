//! Core of the REAPI service: the protocol types, [`Digest`], the one
//! [`Error`] type, ByteStream resource names, instance-name policy and the
//! traits every storage and execution part implements.
//!
//! Users embedding the service depend on this crate alone for the protocol:
//! the generated types of the `bazel-remote-apis` crate are re-exported in
//! [`proto`].

pub mod action_cache;
pub mod blob_store;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod error;
pub mod execution;
pub mod health;
pub mod input_tree;
pub mod instance;
pub mod metrics;
pub mod platform;
pub mod proto;
pub mod resource_name;
pub mod tree;

pub use action_cache::ActionCache;
pub use blob_store::{BlobStore, BlobWriter, ChunkStream};
pub use digest::{Digest, DigestFunction, DigestHasher};
pub use error::{Error, ErrorExt, Result};
pub use execution::{ExecutorClaim, ExecutorPool, Sandbox};
pub use instance::InstancePolicy;
