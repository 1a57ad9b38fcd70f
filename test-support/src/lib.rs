//! Helpers shared by the integration tests of `reapi-cas`,
//! `reapi-scheduler` and `reapi-executor`: servers on loopback over real
//! gRPC, typed clients, builders of actions and input trees, readers of
//! operation streams and an executor-pool harness.
//!
//! A dev-dependency of those crates, for their `tests/` only: their unit
//! tests compile the crate itself a second time, whose types this crate
//! does not share.

pub mod action_cache;
pub mod actions;
pub mod bytestream;
pub mod cas;
pub mod clients;
pub mod digests;
pub mod executor;
pub mod operations;
pub mod process;
pub mod server;
pub mod status;
pub mod timestamps;
pub mod trees;
pub mod wait;
