//! `reapi-scheduler`: a scheduler of a cluster. Serves every REAPI service
//! over its storage (its own disk, or a bucket shared by the cluster),
//! queues actions and leases them to the workers linked to it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use reapi_bin::config::scheduler::{SchedulerFlags, SchedulerProcessConfig};
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::service::listener;
use reapi_scheduler::{ExecutionServices, Peers, Scheduler};
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
    let scheduler = Scheduler::start(storage.action_cache.clone(), config.scheduler.clone());
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
                scheduler.id(),
                advertise,
                members.clone(),
                timing.heartbeat_interval / 2,
                timing.heartbeat_timeout,
            ))
        }
    };

    let mut routes = RoutesBuilder::default();
    let mut storage_services = storage.services();
    let execution = ExecutionServices {
        scheduler: scheduler.clone(),
        peers: peers.clone(),
        store: storage.store.clone(),
        action_cache: storage.action_cache.clone(),
        instances: storage.instances.clone(),
    };
    storage_services.execution = Some(execution.support());
    execution.add_to(&mut routes);
    storage_services.add_to(&mut routes);

    println!(
        "reapi-scheduler listening on {addr}, data in {}",
        data_dir.display()
    );
    tracing::info!(%addr, id = %scheduler.id(), data_dir = %data_dir.display(), "scheduler serving");
    // On SIGTERM: home no new actions, finish the ones homed here (their
    // clients are still connected), then stop.
    let drained = {
        let scheduler = scheduler.clone();
        async move {
            shutdown_signal().await;
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
        }
    };
    listener::serve(listener, routes.routes(), drained)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
