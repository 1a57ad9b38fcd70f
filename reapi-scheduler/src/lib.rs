//! The scheduling side of the REAPI service: the Execution and Operations
//! services, the priority queue, deduplication of identical in-flight
//! actions, and matching actions to executors by platform properties.
//!
//! The [`Scheduler`] owns the queue and hands each action to an executor of
//! an `ExecutorPool`; it never runs anything itself, so the pool can be local
//! or a set of remote workers.

pub mod action_loader;
pub mod config;
pub mod execution_service;
pub mod operation;
pub mod operations_service;
mod queue;
pub mod scheduler;
pub mod services;

pub use config::SchedulerConfig;
pub use execution_service::ExecutionService;
pub use operations_service::OperationsService;
pub use scheduler::Scheduler;
pub use services::ExecutionServices;
