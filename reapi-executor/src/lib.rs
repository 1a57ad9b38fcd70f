//! The worker side of the REAPI service: executors that materialise an
//! action's inputs from the CAS, run it in a sandbox and upload its outputs.
//!
//! - [`LocalExecutorPool`] (`pool.rs`) offers N executors on this host and
//!   runs one action at a time on each. One run ([`action`]) goes through
//!   four steps, each in its own module:
//!   1. [`command`]: check the `Command` (arguments, environment, working
//!      directory, output paths) before anything touches a disk;
//!   2. [`materialize`]: lay the input tree out in a fresh per-action
//!      directory ([`action_dir`]), hardlinking from the local disk store
//!      when actions run as a user that cannot write to its files, copying
//!      otherwise ([`identity`]); then [`paths`] checks the working
//!      directory and creates the parents of the output paths;
//!   3. a [`reapi_core::Sandbox`] runs the command: [`ProcessSandbox`] gives
//!      it its own process group, killed as a whole on timeout or cancel;
//!   4. [`upload`]: outputs, stdout and stderr into the CAS.
//! - [`host`] reads the host's figures for the executors' default
//!   properties.
//!
//! Dropping a run's future cancels it: the process group is killed and the
//! action directory removed.

pub mod action;
pub mod action_dir;
pub mod command;
pub mod host;
pub mod identity;
pub mod materialize;
mod metadata;
pub mod paths;
pub mod pool;
pub mod sandbox;
pub mod upload;
pub mod worker;

pub use pool::{LocalExecutorConfig, LocalExecutorPool, SandboxChoice};
pub use sandbox::ProcessSandbox;
pub use worker::{Worker, WorkerConfig};
