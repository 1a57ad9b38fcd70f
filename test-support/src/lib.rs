//! Helpers shared by the integration tests of `reapi-cas`,
//! `reapi-scheduler` and `reapi-executor`, and by the end-to-end tests of
//! `reapi-e2e`: servers on loopback over real gRPC, typed clients, builders
//! of actions and input trees, readers of operation streams, an
//! executor-pool harness, and ([`launch`], [`process`]) real processes: the
//! workspace's binaries, SeaweedFS, fake-gcs-server and haproxy.
//!
//! A dev-dependency of those crates, for their `tests/` only: their unit
//! tests compile the crate itself a second time, whose types this crate
//! does not share. `reapi-e2e`, a crate of tests only, depends on it
//! directly.

pub mod action_cache;
pub mod actions;
pub mod bytestream;
pub mod cas;
pub mod clients;
pub mod digests;
pub mod executor;
pub mod http_origin;
pub mod launch;
pub mod operations;
pub mod pki;
pub mod process;
pub mod server;
pub mod status;
pub mod system_image;
pub mod timestamps;
pub mod trees;
pub mod wait;
