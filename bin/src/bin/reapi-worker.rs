//! `reapi-worker`: a worker of a cluster. Links to every scheduler, runs
//! the actions they lease to it with inputs from its disk store (fetched
//! from the cluster's CAS when missing), and writes outputs to the
//! cluster's CAS before reporting. SIGTERM drains it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reapi_bin::config::worker::{WorkerFlags, WorkerProcessConfig};
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::store::GrpcStore;
use reapi_core::cluster::discovery::DEFAULT_RESOLVE_INTERVAL;
use reapi_core::execution::ExecutorPool;
use reapi_executor::worker::worker_id;
use reapi_executor::{LocalExecutorPool, Worker, WorkerConfig};

fn main() -> ExitCode {
    main_with(
        "reapi-worker",
        || WorkerProcessConfig::load(WorkerFlags::parse()),
        work,
    )
}

async fn work(config: WorkerProcessConfig) -> Result<(), String> {
    let data_dir = config.storage.data_dir.clone();
    let id = worker_id::load_or_create(&data_dir).map_err(|e| e.to_string())?;
    let cas = GrpcStore::new(&config.cas).map_err(|e| e.to_string())?;
    let storage = config
        .storage
        .open_worker(Some(Arc::new(cas)))
        .await
        .map_err(|e| format!("opening storage in {}: {e}", data_dir.display()))?;
    let mut pools: Vec<Arc<dyn ExecutorPool>> = Vec::new();
    if config.executors != Some(0) {
        let pool = LocalExecutorPool::for_host(
            storage.store.clone(),
            storage.disk.clone(),
            data_dir.join("work"),
            &id,
            config.executors,
            &config.platform,
        )
        .await
        .map_err(|e| format!("starting executors: {e}"))?;
        pools.push(Arc::new(pool));
    }
    let worker = Worker::new(WorkerConfig::new(id.clone()), pools);
    worker.follow(config.schedulers.clone(), DEFAULT_RESOLVE_INTERVAL);
    tracing::info!(worker = %id, cas = %storage.upstream, "worker started");

    // Ready once a scheduler knows it; a signal before that stops it too.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        if worker.linked() > 0 {
            break;
        }
        tokio::select! {
            _ = &mut signal => {
                worker.shutdown().await;
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    println!("reapi-worker {id} ready, data in {}", data_dir.display());
    signal.await;
    let outcome = worker.drain(config.drain_grace).await;
    if outcome.abandoned > 0 {
        return Err(format!(
            "{} actions were still running after the drain grace of {:?}",
            outcome.abandoned, config.drain_grace
        ));
    }
    Ok(())
}
