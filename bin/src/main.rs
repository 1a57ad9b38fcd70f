//! `reapi-server`: the all-in-one server. Parses configuration, opens the
//! storage under the data directory, starts local executors and a
//! scheduler, and serves the REAPI services until SIGINT or SIGTERM.

mod config;

use std::io::IsTerminal;
use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;
use reapi_cas::config::Storage;
use reapi_executor::host::host_properties;
use reapi_executor::{LocalExecutorConfig, LocalExecutorPool};
use reapi_scheduler::{ExecutionServices, Scheduler, SchedulerConfig};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;

use config::{Flags, ServerConfig};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match ServerConfig::load(Flags::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("reapi-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reapi-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reapi-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let storage = config.storage.open().await.map_err(|e| {
        format!(
            "opening storage in {}: {e}",
            config.storage.data_dir.display()
        )
    })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let mut routes = RoutesBuilder::default();
    let mut storage_services = storage.services();
    let executors = match start_execution(&config, &storage).await? {
        Some(execution) => {
            storage_services.execution = Some(execution.support());
            let count = execution.scheduler.pool().executors().len();
            execution.add_to(&mut routes);
            count
        }
        None => 0,
    };
    storage_services.add_to(&mut routes);

    // The one line a user (and the test harness) reads to find the server.
    println!(
        "reapi-server listening on {addr}, data in {}",
        config.storage.data_dir.display()
    );
    tracing::info!(
        %addr,
        data_dir = %config.storage.data_dir.display(),
        disk_size = config.storage.disk_size,
        executors,
        "serving"
    );

    // Without TCP_NODELAY small responses wait for delayed ACKs (~40 ms
    // each), and `Server::tcp_nodelay` does not apply to our own listener.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// A scheduler over local executors, unless `--executors 0`.
async fn start_execution(
    config: &ServerConfig,
    storage: &Storage,
) -> Result<Option<ExecutionServices>, String> {
    if config.executors == Some(0) {
        return Ok(None);
    }
    let mut executor_config = LocalExecutorConfig::new(config.storage.data_dir.join("work"))
        .map_err(|e| format!("executor defaults: {e}"))?;
    executor_config.properties =
        host_properties(&config.platform).map_err(|e| format!("--platform: {e}"))?;
    if let Some(n) = config.executors {
        executor_config.executors = n;
    }
    // As root, actions run as `nobody`: never as root, and never as the
    // owner of the store's files (only then are inputs hardlinked). As any
    // other user, they run as that user and their inputs are copies.
    executor_config.run_as = reapi_executor::identity::default_run_as();
    let sandbox = executor_config.process_sandbox();
    let pool = LocalExecutorPool::new(
        storage.store.clone(),
        Some(storage.disk.clone()),
        Arc::new(sandbox),
        executor_config,
    )
    .await
    .map_err(|e| format!("starting local executors: {e}"))?;
    let scheduler = Scheduler::start(
        Arc::new(pool),
        storage.action_cache.clone(),
        SchedulerConfig::default(),
    );
    Ok(Some(ExecutionServices {
        scheduler,
        store: storage.store.clone(),
        action_cache: storage.action_cache.clone(),
        instances: storage.instances.clone(),
    }))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}
