//! The execution traits: [`ExecutorPool`] (a worker's executors, claimed
//! one lease at a time) and [`Sandbox`] (how one command runs in isolation).
//!
//! The scheduler owns the queue and decides which pool runs what; a pool
//! only runs what it is given, wherever it lives (see docs/adr/0006).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::{ExecutorProperties, Resources};
use crate::proto::remote_execution::{Action, ActionResult, Command};

/// Names one executor within a pool; stable while the executor lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorId(pub String);

impl std::fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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

/// One executor of a pool, held for one lease: nobody else can claim it
/// until the claim is dropped.
pub struct ExecutorClaim {
    executor: ExecutorId,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl ExecutorClaim {
    /// A claim on `executor` that calls `release` when dropped.
    pub fn new(executor: ExecutorId, release: impl FnOnce() + Send + Sync + 'static) -> Self {
        ExecutorClaim {
            executor,
            release: Some(Box::new(release)),
        }
    }

    pub fn executor(&self) -> &ExecutorId {
        &self.executor
    }
}

impl Drop for ExecutorClaim {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for ExecutorClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExecutorClaim")
            .field(&self.executor)
            .finish()
    }
}

/// Executors with equal properties, as a scheduler sees them through a
/// worker: the worker reports the pool (properties, capacity, free), a
/// lease the scheduler offers *claims* one executor or is refused, the
/// worker's heartbeats *renew* the leases it runs, and it *reports* each
/// run's end. The same trait serves the in-process executors of the
/// all-in-one server and those of remote workers: both run behind the
/// worker runtime of `reapi-executor`.
#[async_trait]
pub trait ExecutorPool: Send + Sync + 'static {
    /// What every executor of the pool offers.
    fn properties(&self) -> &ExecutorProperties;

    /// Executors in the pool.
    fn capacity(&self) -> usize;

    /// Executors not claimed now.
    fn free(&self) -> usize;

    /// Claims a free executor for one run; `None` when all are busy.
    fn claim(&self) -> Option<ExecutorClaim>;

    /// Runs `job` on the claimed executor. A failure to run (inputs
    /// missing, the sandbox broken) is an error; the action's own failure is
    /// an outcome. Dropping the future cancels the run: everything it
    /// started is killed and its files removed.
    async fn run(&self, claim: &ExecutorClaim, job: ExecutionJob) -> Result<ExecutionOutcome>;
}

/// A command ready to run in a materialised input root.
#[derive(Clone, Debug)]
pub struct SandboxCommand {
    /// `arguments[0]` as the client gave it; the sandbox resolves it
    /// against the working directory and PATH (REAPI 2.3).
    pub arguments: Vec<String>,
    /// Exactly the client's environment: nothing is added.
    pub environment: Vec<(String, String)>,
    /// Absolute path of the action's input root, which holds everything
    /// the command may write.
    pub input_root: PathBuf,
    /// Absolute path of the directory the command starts in (the input
    /// root or a directory under it).
    pub working_directory: PathBuf,
    /// Files the command's stdout and stderr go to (on disk, so output size
    /// never costs memory).
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub timeout: Duration,
    /// The CPUs and memory the action asked for (`cpus`, `memory`; zero
    /// when it did not say). A sandbox that can enforce them makes them
    /// limits.
    pub resources: Resources,
    /// The action asked for the host's network (`network=on`). A sandbox
    /// that can take the network away does so unless this is set.
    pub network: bool,
    /// What the action asked to see as `/` (`rootfs`); `None`: the
    /// sandbox's default.
    pub rootfs: Option<crate::platform::RootFs>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxOutcome {
    pub exit_code: i32,
    pub timed_out: bool,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// CPU time (user and system) of all the command's processes, when the
    /// sandbox can measure it.
    pub cpu_time: Option<Duration>,
}

#[async_trait]
pub trait Sandbox: Send + Sync + 'static {
    /// Runs the command to completion or timeout. A command that cannot be
    /// started (not found, not executable) is an outcome with a non-zero
    /// exit code and the reason in its stderr file, not an error. Dropping
    /// the future kills everything the command started.
    async fn run(&self, command: SandboxCommand) -> Result<SandboxOutcome>;

    /// `(name, value)` properties whose meaning this sandbox implements, for
    /// its executors to offer: [`crate::platform::NETWORK`] with the values
    /// it can honour.
    fn offered_properties(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}
