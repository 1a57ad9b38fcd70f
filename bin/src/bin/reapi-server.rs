//! `reapi-server`: the all-in-one server. A scheduler and a worker with
//! local executors in one process, linked through the same lease protocol
//! as a cluster's (in-process), over storage under one data directory.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reapi_bin::config::server::{ServerConfig, ServerFlags};
use reapi_bin::ops::Ops;
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::asset::AssetServices;
use reapi_cas::metrics::DiskStoreCollector;
use reapi_cas::service::listener;
use reapi_executor::worker::worker_id;
use reapi_executor::{LocalExecutorPool, Worker, WorkerConfig};
use reapi_scheduler::metrics::SchedulerCollector;
use reapi_scheduler::{ExecutionServices, InProcessConnector, Scheduler};
use tonic::service::RoutesBuilder;

fn main() -> ExitCode {
    main_with(
        "reapi-server",
        || ServerConfig::load(ServerFlags::parse()),
        serve,
    )
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let data_dir = config.storage.data_dir.clone();
    let storage = config
        .storage
        .open()
        .await
        .map_err(|e| format!("opening storage in {}: {e}", data_dir.display()))?;
    let listener = listener::bind(config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let ops = Ops::start(config.metrics_listen, None).await?;

    reapi_core::metrics::register_collector(DiskStoreCollector::new(&storage.disk, "cas"));
    let mut routes = RoutesBuilder::default();
    ops.add_grpc_health(&mut routes).await;
    let mut storage_services = storage.services();
    let mut worker = None;
    if config.executors != Some(0) {
        let scheduler = Scheduler::start(storage.action_cache.clone(), config.scheduler.clone());
        reapi_core::metrics::register_collector(SchedulerCollector::new(&scheduler));
        let id = worker_id::load_or_create(&data_dir).map_err(|e| e.to_string())?;
        let pool = LocalExecutorPool::for_host(
            storage.store.clone(),
            storage.disk.clone(),
            data_dir.join("work"),
            &id,
            config.executors,
            &config.platform,
            config.sandbox,
        )
        .await
        .map_err(|e| format!("starting local executors: {e}"))?;
        let local = Worker::new(WorkerConfig::new(id), vec![Arc::new(pool)]);
        local.connect(Arc::new(InProcessConnector::new(scheduler.clone())));
        wait_for_worker(&scheduler).await?;
        let execution = ExecutionServices {
            scheduler,
            peers: None,
            store: storage.store.clone(),
            action_cache: storage.action_cache.clone(),
            instances: storage.instances.clone(),
        };
        storage_services.execution = Some(execution.support());
        execution.add_to(&mut routes);
        worker = Some(local);
    }
    storage_services.add_to(&mut routes);
    AssetServices::with_policy(
        storage.store.clone(),
        storage.action_cache.clone(),
        storage.instances.clone(),
        config.asset_fetch.clone(),
    )
    .map_err(|e| format!("remote asset services: {e}"))?
    .add_to(&mut routes);

    // Before anything is announced: unusable TLS or grants files stop the
    // start.
    let front = config.front.open()?;
    // The one line a user (and the test harness) reads to find the server.
    println!(
        "reapi-server listening on {addr}, data in {}",
        data_dir.display()
    );
    ops.announce("reapi-server");
    tracing::info!(
        %addr,
        data_dir = %data_dir.display(),
        disk_size = config.storage.disk_size,
        tls = front.tls.is_some(),
        grants = front.grants.is_some(),
        "serving"
    );
    ops.readiness.set_ready();
    let readiness = ops.readiness.clone();
    let stopping = async move {
        shutdown_signal().await;
        readiness.set_not_ready("shutting down");
    };
    listener::serve_behind(listener, routes.routes(), stopping, front)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(worker) = worker {
        worker.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits until the in-process worker has registered, so the first Execute
/// already sees its executors.
async fn wait_for_worker(scheduler: &Scheduler) -> Result<(), String> {
    for _ in 0..500 {
        if scheduler.executor_summary().workers > 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("the local worker did not register with the scheduler".into())
}
