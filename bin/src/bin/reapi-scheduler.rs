//! `reapi-scheduler`: a scheduler of a cluster. Serves every REAPI service
//! over its storage (its own disk, or a bucket shared by the cluster),
//! queues actions and leases them to the workers linked to it.

use std::process::ExitCode;

use clap::Parser;
use reapi_bin::config::scheduler::{SchedulerFlags, SchedulerProcessConfig};
use reapi_bin::run::{main_with, shutdown_signal};
use reapi_cas::service::listener;
use reapi_scheduler::{ExecutionServices, Scheduler};
use tonic::service::RoutesBuilder;

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

    let mut routes = RoutesBuilder::default();
    let mut storage_services = storage.services();
    let execution = ExecutionServices {
        scheduler: scheduler.clone(),
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
    listener::serve(listener, routes.routes(), shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
