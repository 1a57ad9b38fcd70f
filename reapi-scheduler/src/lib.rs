//! The scheduling side of the REAPI service: the Execution and Operations
//! services, per-class fair queues, deduplication of identical in-flight
//! actions, and the workers that connect to run them.
//!
//! The [`Scheduler`] owns the queue and offers each action to a worker as
//! a lease; it never runs anything itself. Workers reach it over the
//! cluster protocol (`reapi_core::cluster`): remote ones through the
//! [`WorkerLinkService`], the all-in-one server's own through an
//! [`InProcessConnector`]; both land in [`Scheduler::serve_link`].

pub mod action_loader;
mod class_queues;
pub mod config;
mod directory_cache;
pub mod execution_service;
mod fair_queue;
pub mod in_process;
mod ledger;
pub mod metrics;
pub mod operation;
pub mod operations_service;
pub mod peers;
pub mod request_labels;
pub mod scheduler;
pub mod services;
pub mod status;
pub mod worker_link_service;
mod workers;

pub use config::SchedulerConfig;
pub use execution_service::ExecutionService;
pub use in_process::InProcessConnector;
pub use operations_service::OperationsService;
pub use peers::Peers;
pub use request_labels::RequestLabels;
pub use scheduler::{new_scheduler_id, PoolSummary, Scheduler, Submission};
pub use services::ExecutionServices;
pub use worker_link_service::WorkerLinkService;
