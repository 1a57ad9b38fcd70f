//! `reapi-scheduler`: a scheduler of a cluster. Serves every REAPI service
//! over the cluster CAS (on the workers' disks; or, with --local_cas, its
//! own disk), queues actions and leases them to the workers linked to it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use reapi_bin::config::scheduler::{SchedulerFlags, SchedulerProcessConfig};
use reapi_bin::ops::Ops;
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::asset::AssetServices;
use reapi_cas::cluster_storage::MetadataReplication;
use reapi_cas::metrics::DiskStoreCollector;
use reapi_cas::service::listener;
use reapi_core::cluster::placement::placement_channel;
use reapi_scheduler::metrics::SchedulerCollector;
use reapi_scheduler::status::status_router;
use reapi_scheduler::{new_scheduler_id, ExecutionServices, Peers, Scheduler};
use tonic::service::RoutesBuilder;

/// How long a stopping scheduler lets the operations homed on it finish.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    main_with(
        "reapi-scheduler",
        || SchedulerProcessConfig::load(SchedulerFlags::parse()),
        serve,
    )
}

async fn serve(config: SchedulerProcessConfig) -> Result<(), String> {
    // Before any connection to a peer or worker, and before anything is
    // announced: unusable TLS or grants files stop the start.
    let front = config.front.open()?;
    let data_dir = config.storage.data_dir.clone();
    let opening = |e: reapi_core::Error| format!("opening storage in {}: {e}", data_dir.display());
    let listener = listener::bind(config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let id = new_scheduler_id();
    let peers = match &config.schedulers {
        None => None,
        Some(members) => {
            let advertise = match &config.advertise {
                Some(address) => address.clone(),
                None if addr.ip().is_unspecified() => {
                    return Err(
                        "listening on all interfaces: set --advertise to the address peers reach this scheduler at"
                            .into(),
                    )
                }
                None => addr.to_string(),
            };
            let timing = &config.scheduler;
            Some(Peers::start(
                &id,
                advertise,
                members.clone(),
                timing.heartbeat_interval / 2,
                timing.heartbeat_timeout,
            ))
        }
    };

    let (placement, following) = placement_channel();
    let mut own_share = None;
    let mut replicated = None;
    let (store, action_cache, instances, mut storage_services) = if config.local_cas {
        let storage = config.storage.open().await.map_err(opening)?;
        reapi_core::metrics::register_collector(DiskStoreCollector::new(&storage.disk, "cas"));
        let services = storage.services();
        (
            storage.store,
            storage.action_cache,
            storage.instances,
            services,
        )
    } else {
        // With peers, the action cache is spread over them.
        let metadata = peers.as_ref().map(|peers| {
            let (sender, receiver) = placement_channel();
            peers.publish_metadata_placement(sender);
            MetadataReplication {
                placement: receiver,
                replica_count: config.metadata_replica_count,
                self_id: peers.address().to_string(),
                restarts: Some(peers.restarts()),
            }
        });
        let storage = config
            .storage
            .open_cluster_scheduler(following, config.replica_count, metadata)
            .await
            .map_err(opening)?;
        let services = storage.services();
        own_share = storage.own_share.clone();
        replicated = storage.replicated.clone();
        (
            storage.store,
            storage.action_cache,
            storage.instances,
            services,
        )
    };
    let scheduler = Scheduler::start_with_id(id, action_cache.clone(), config.scheduler.clone());
    let collector = SchedulerCollector::new(&scheduler);
    reapi_core::metrics::register_collector(match &peers {
        Some(peers) => collector.with_peers(peers),
        None => collector,
    });
    scheduler.publish_placement(placement);

    let own_address = peers
        .as_ref()
        .map_or_else(|| addr.to_string(), |p| p.address().to_string());
    let status_page = status_router(&scheduler, own_address, peers.clone());
    let ops = Ops::start(config.metrics_listen, Some(status_page)).await?;
    let mut routes = RoutesBuilder::default();
    ops.add_grpc_health(&mut routes).await;
    AssetServices::with_policy(
        store.clone(),
        action_cache.clone(),
        instances.clone(),
        config.asset_fetch.clone(),
    )
    .map_err(|e| format!("remote asset services: {e}"))?
    .add_to(&mut routes);
    let execution = ExecutionServices {
        scheduler: scheduler.clone(),
        peers: peers.clone(),
        store,
        action_cache,
        instances,
    };
    storage_services.execution = Some(execution.support());
    execution.add_to(&mut routes);
    match own_share {
        Some(share) => storage_services.add_to_with_replica(&mut routes, share),
        None => storage_services.add_to(&mut routes),
    }

    println!(
        "reapi-scheduler listening on {addr}, data in {}",
        data_dir.display()
    );
    ops.announce("reapi-scheduler");
    tracing::info!(
        %addr,
        id = %scheduler.id(),
        data_dir = %data_dir.display(),
        tls = front.tls.is_some(),
        grants = front.grants.is_some(),
        cluster_tls = config.front.cluster.is_tls(),
        "scheduler serving"
    );
    // Ready once it knows its peers (at once without any); on SIGTERM:
    // home no new actions, finish the ones homed here (their clients are
    // still connected), then stop.
    match &peers {
        None => ops.readiness.set_ready(),
        Some(peers) => {
            ops.readiness.set_not_ready("resolving the schedulers");
            let (peers, readiness) = (peers.clone(), ops.readiness.clone());
            tokio::spawn(async move {
                peers.wait_resolved().await;
                if !peers.is_draining() {
                    readiness.set_ready();
                    tracing::info!(peers = ?peers.live_peers(), "scheduler peers resolved; ready");
                }
            });
        }
    }
    let drained = {
        let scheduler = scheduler.clone();
        let readiness = ops.readiness.clone();
        async move {
            shutdown_signal().await;
            readiness.set_not_ready("draining");
            if let Some(peers) = &peers {
                peers.set_draining();
            }
            let active = scheduler.active_operations();
            tracing::info!(active, "draining: finishing the operations homed here");
            if !scheduler.wait_idle(DRAIN_GRACE).await {
                tracing::warn!(
                    active = scheduler.active_operations(),
                    "drain grace over; stopping with operations unfinished"
                );
            }
            if let Some((cache, entries)) = &replicated {
                if let Err(e) = cache.hand_off(entries.as_ref()).await {
                    tracing::warn!(error = %e, "handing off the action cache share failed");
                }
            }
        }
    };
    listener::serve_behind(listener, routes.routes(), drained, front)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
