//! The execution traits: [`ExecutorPool`] (executors the scheduler hands
//! actions to) and [`Sandbox`] (how one command runs in isolation).
//!
//! The scheduler owns the queue and decides which executor runs what; a pool
//! only runs what it is given. That split lets the worker side live in
//! another process: a remote pool's `run` is an RPC to a worker.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::ExecutorProperties;
use crate::proto::remote_execution::{Action, ActionResult, Command};

/// Names one executor within a pool; stable while the executor lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorId(pub String);

impl std::fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An executor as the scheduler sees it. Executors of one worker share its
/// `cpus` and `memory` (the properties give the worker's totals), so the
/// scheduler reserves those per worker.
#[derive(Clone, Debug)]
pub struct ExecutorInfo {
    pub id: ExecutorId,
    pub worker: String,
    pub properties: ExecutorProperties,
}

/// One action to run, with its Action and Command already fetched and
/// validated.
#[derive(Clone, Debug)]
pub struct ExecutionJob {
    pub instance_name: String,
    pub action_digest: Digest,
    pub action: Action,
    pub command: Command,
    /// The action's timeout, already capped by the server's maximum.
    pub timeout: Duration,
    pub queued_at: SystemTime,
}

/// What a run produced. A non-zero exit code is a result, not an error.
#[derive(Clone, Debug, Default)]
pub struct ExecutionOutcome {
    pub result: ActionResult,
    /// The action ran past its timeout and was killed; `result` holds what
    /// it wrote until then.
    pub timed_out: bool,
}

#[async_trait]
pub trait ExecutorPool: Send + Sync + 'static {
    /// The executors offered now; the set may change as workers come and go.
    fn executors(&self) -> Vec<ExecutorInfo>;

    /// Runs `job` on `executor`, which the scheduler has reserved for it.
    /// UNAVAILABLE means the executor vanished and the job may be retried
    /// elsewhere. Dropping the returned future cancels the run: everything
    /// it started is killed and its files removed.
    async fn run(&self, executor: &ExecutorId, job: ExecutionJob) -> Result<ExecutionOutcome>;
}

/// A command ready to run in a materialised input root.
#[derive(Clone, Debug)]
pub struct SandboxCommand {
    /// `arguments[0]` as the client gave it; the sandbox resolves it
    /// against the working directory and PATH (REAPI 2.3).
    pub arguments: Vec<String>,
    /// Exactly the client's environment: nothing is added.
    pub environment: Vec<(String, String)>,
    /// Absolute path of the directory the command starts in.
    pub working_directory: PathBuf,
    /// Files the command's stdout and stderr go to (on disk, so output size
    /// never costs memory).
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxOutcome {
    pub exit_code: i32,
    pub timed_out: bool,
    pub started: SystemTime,
    pub finished: SystemTime,
}

#[async_trait]
pub trait Sandbox: Send + Sync + 'static {
    /// Runs the command to completion or timeout. A command that cannot be
    /// started (not found, not executable) is an outcome with a non-zero
    /// exit code and the reason in its stderr file, not an error. Dropping
    /// the future kills everything the command started.
    async fn run(&self, command: SandboxCommand) -> Result<SandboxOutcome>;
}
