//! A worker embedded in another program, running actions through a
//! `Sandbox` of its own: [`AuditingSandbox`] runs each command with the
//! stock process sandbox and keeps an audit record of it (what ran, how
//! long, how it ended). The same hook serves any wrapper an embedder needs:
//! a container runtime, a `nice` level, a metrics exporter.
//!
//! [`start_worker`] is all the composition: a CAS reached through the
//! scheduler, local executors running through the sandbox, and a worker
//! linked to the scheduler over the cluster protocol.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use reapi_cas::store::GrpcStore;
use reapi_core::execution::{ExecutorPool, Sandbox, SandboxCommand, SandboxOutcome};
use reapi_core::{BlobStore, Result};
use reapi_executor::host::host_properties;
use reapi_executor::worker::GrpcSchedulerConnector;
use reapi_executor::{
    LocalExecutorConfig, LocalExecutorPool, ProcessSandbox, Worker, WorkerConfig,
};

/// One command the sandbox ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub arguments: Vec<String>,
    pub exit_code: i32,
    pub timed_out: bool,
    pub took: Duration,
}

/// Runs commands with [`ProcessSandbox`] and remembers each one.
#[derive(Default)]
pub struct AuditingSandbox {
    inner: ProcessSandbox,
    log: Mutex<Vec<AuditEntry>>,
}

impl AuditingSandbox {
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.log.lock().clone()
    }
}

#[async_trait]
impl Sandbox for AuditingSandbox {
    async fn run(&self, command: SandboxCommand) -> Result<SandboxOutcome> {
        let arguments = command.arguments.clone();
        let outcome = self.inner.run(command).await?;
        let entry = AuditEntry {
            arguments,
            exit_code: outcome.exit_code,
            timed_out: outcome.timed_out,
            took: outcome
                .finished
                .duration_since(outcome.started)
                .unwrap_or_default(),
        };
        tracing::info!(?entry, "command ran");
        self.log.lock().push(entry);
        Ok(outcome)
    }
}

/// Starts a worker with `executors` executors running through `sandbox`,
/// its work files under `work_dir`, linked to the scheduler at
/// `scheduler` and reading and writing blobs through it.
///
/// The sandbox runs commands as this process's user, so inputs are copied
/// (not linked) into each action's directory: no action can change a
/// stored blob.
pub async fn start_worker(
    scheduler: SocketAddr,
    work_dir: &Path,
    executors: usize,
    sandbox: Arc<dyn Sandbox>,
) -> Result<Worker> {
    let cas: Arc<dyn BlobStore> = Arc::new(GrpcStore::new(&scheduler.to_string())?);
    let mut config = LocalExecutorConfig::new(work_dir)?;
    config.executors = executors;
    config.properties = host_properties::<&str>(&[])?;
    config.worker = "embedded".into();
    let pool = LocalExecutorPool::new(cas, None, sandbox, config).await?;
    let pools: Vec<Arc<dyn ExecutorPool>> = vec![Arc::new(pool)];
    let worker = Worker::new(WorkerConfig::new("embedded-worker"), pools);
    worker.connect(Arc::new(GrpcSchedulerConnector::new(scheduler)?));
    Ok(worker)
}
