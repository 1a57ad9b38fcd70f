//! Benchmarks of the REAPI service: a load generator that speaks plain REAPI
//! to any server (`reapi-bench`), and micro-benchmarks of the hot paths
//! (`benches/`).
//!
//! The load generator's parts: [`client`] (several gRPC channels),
//! [`content`] (cheap unique blobs), [`runner`] (warm-up, measured phase,
//! progress), [`stats`] (HDR histograms), [`report`] (table and JSON),
//! [`scenarios`] (one module per family of calls), [`simulated_workers`]
//! (workers speaking the cluster protocol), [`limits`] (what the
//! machine can do at best) and [`summary`] (Markdown from a results
//! directory).

pub mod client;
pub mod content;
pub mod limits;
pub mod options;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod simulated_workers;
pub mod stats;
pub mod summary;
pub mod transfer;
