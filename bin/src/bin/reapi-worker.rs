//! `reapi-worker`: a worker of a cluster. Links to every scheduler, runs
//! the actions they lease to it with inputs from its disk store (fetched
//! from the cluster CAS when missing), and writes outputs to the cluster
//! CAS before reporting. With replica space it also holds its share of the
//! cluster CAS and serves it to the others. SIGTERM drains it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reapi_bin::config::worker::{WorkerCas, WorkerFlags, WorkerProcessConfig};
use reapi_bin::ops::Ops;
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::config::WorkerStorage;
use reapi_cas::metrics::DiskStoreCollector;
use reapi_cas::service::listener;
use reapi_cas::service::storage::add_blob_services;
use reapi_cas::store::cluster::repair::{RepairConfig, Repairer};
use reapi_cas::store::GrpcStore;
use reapi_core::cluster::discovery::DEFAULT_RESOLVE_INTERVAL;
use reapi_core::cluster::placement::placement_channel;
use reapi_core::execution::ExecutorPool;
use reapi_executor::worker::worker_id;
use reapi_executor::{LocalExecutorPool, Worker, WorkerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::RoutesBuilder;

fn main() -> ExitCode {
    main_with(
        "reapi-worker",
        || WorkerProcessConfig::load(WorkerFlags::parse()),
        work,
    )
}

/// The worker's share of the cluster CAS, served until the worker stops.
struct BlobServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn work(config: WorkerProcessConfig) -> Result<(), String> {
    // Before any connection to a scheduler or worker: unusable TLS or
    // grants files stop the start.
    let front = config.front.open()?;
    let data_dir = config.storage.data_dir.clone();
    let id = worker_id::load_or_create(&data_dir).map_err(|e| e.to_string())?;
    let opening = |e: reapi_core::Error| format!("opening storage in {}: {e}", data_dir.display());
    let mut worker_config = WorkerConfig::new(id.clone());
    let mut blob_server = None;
    let mut repairer = None;
    let ops = Ops::start(config.metrics_listen, None).await?;
    let storage: WorkerStorage = match &config.cas {
        WorkerCas::Through(address) => {
            let cas = GrpcStore::new(address).map_err(|e| e.to_string())?;
            config
                .storage
                .open_worker(Some(Arc::new(cas)))
                .await
                .map_err(opening)?
        }
        WorkerCas::Cluster {
            listen,
            advertise,
            replica_space,
            replica_count,
        } => {
            let holds_replicas = *replica_space > 0;
            let budget = if holds_replicas {
                *replica_space
            } else {
                config.storage.disk_size
            };
            let disk = config
                .storage
                .open_disk(budget, holds_replicas)
                .await
                .map_err(opening)?;
            let (placement, following) = placement_channel();
            let storage = config
                .storage
                .open_cluster_worker(
                    disk.clone(),
                    following,
                    *replica_count,
                    holds_replicas.then_some(id.as_str()),
                )
                .await
                .map_err(opening)?;
            if holds_replicas {
                let listener = listener::bind(*listen).await.map_err(|e| e.to_string())?;
                let bound = listener.local_addr().map_err(|e| e.to_string())?;
                let address = match advertise {
                    Some(address) => address.clone(),
                    None if bound.ip().is_unspecified() => {
                        return Err("listening on all interfaces: set --advertise to the address others reach this worker at".into())
                    }
                    None => bound.to_string(),
                };
                let mut routes = RoutesBuilder::default();
                ops.add_grpc_health(&mut routes).await;
                add_blob_services(&mut routes, disk.clone(), config.storage.instance_policy());
                let (stop, stopped) = oneshot::channel::<()>();
                let (tls, grants) = (front.tls.is_some(), front.grants.is_some());
                let front = front.clone();
                let task = tokio::spawn(async move {
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    let served = listener::serve_behind(listener, routes.routes(), shutdown, front);
                    if let Err(e) = served.await {
                        tracing::error!(error = %e, "serving the cluster CAS share failed");
                    }
                });
                tracing::info!(
                    %address,
                    replica_space,
                    tls,
                    grants,
                    "serving this worker's share of the cluster CAS"
                );
                blob_server = Some(BlobServer { stop, task });
                repairer = storage.cluster.clone().and_then(|cluster| {
                    let mut repair = RepairConfig::default();
                    if let Some(period) = config.repair_period {
                        repair.period = period;
                    }
                    Repairer::new(cluster, disk.clone(), repair)
                });
                worker_config.address = address;
                worker_config.replica_space = *replica_space;
            }
            worker_config.placement = Some(placement);
            storage
        }
    };
    let role = if worker_config.replica_space > 0 {
        "replicas"
    } else {
        "cache"
    };
    reapi_core::metrics::register_collector(DiskStoreCollector::new(&storage.disk, role));
    let mut pools: Vec<Arc<dyn ExecutorPool>> = Vec::new();
    if config.executors != Some(0) {
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
        .map_err(|e| format!("starting executors: {e}"))?;
        pools.push(Arc::new(pool));
    }
    let worker = Worker::new(worker_config, pools);
    worker.follow(config.schedulers.clone(), DEFAULT_RESOLVE_INTERVAL);
    tracing::info!(worker = %id, cas = %storage.upstream, "worker started");

    let repair_task = repairer.clone().map(Repairer::spawn);
    let outcome = run_until_signal(&worker, &id, &data_dir, config.drain_grace, &ops).await;
    if let Some(task) = repair_task {
        task.abort();
    }
    if let (Some(repairer), true) = (&repairer, outcome.drained) {
        hand_off(repairer).await;
    }
    if let Some(server) = blob_server {
        let _ = server.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    }
    outcome.result
}

/// Copies every blob whose copies would drop below the replica count when
/// this worker leaves to the holders it has without it; a few passes, as
/// members may fail meanwhile.
async fn hand_off(repairer: &Repairer) {
    const PASSES: usize = 3;
    for pass in 1..=PASSES {
        let report = repairer.hand_off().await;
        tracing::info!(
            ?report,
            pass,
            "handed off this worker's share of the cluster CAS"
        );
        if report.failed == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::error!("some blobs could not be handed off; their other copies remain");
}

struct RunOutcome {
    result: Result<(), String>,
    /// Stopped by a drain (not before it was ready).
    drained: bool,
}

/// Ready once a scheduler knows the worker; drains on the first signal
/// (a signal before that stops it at once).
async fn run_until_signal(
    worker: &Worker,
    id: &str,
    data_dir: &std::path::Path,
    grace: Duration,
    ops: &Ops,
) -> RunOutcome {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        if worker.linked() > 0 {
            break;
        }
        tokio::select! {
            _ = &mut signal => {
                worker.shutdown().await;
                return RunOutcome { result: Ok(()), drained: false };
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    ops.readiness.set_ready();
    println!("reapi-worker {id} ready, data in {}", data_dir.display());
    ops.announce("reapi-worker");
    signal.await;
    ops.readiness.set_not_ready("draining");
    let outcome = worker.drain(grace).await;
    let result = if outcome.abandoned > 0 {
        Err(format!(
            "{} actions were still running after the drain grace of {:?}",
            outcome.abandoned, grace
        ))
    } else {
        Ok(())
    };
    RunOutcome {
        result,
        drained: true,
    }
}
