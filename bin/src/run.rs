//! Process plumbing shared by the binaries: logging to stderr, the tokio
//! runtime, and the signals that stop a process.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Logs to stderr (`RUST_LOG` filters; `info` by default).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// A binary's whole life: logging, its configuration (a bad one exits
/// with status 2), then `serve` on the runtime.
pub fn main_with<C, F>(
    name: &str,
    load: impl FnOnce() -> Result<C, String>,
    serve: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    init_logging();
    match load() {
        Ok(config) => block_on(name, serve(config)),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `main` on a multi-threaded runtime; an error is printed with the
/// binary's name and fails the process.
pub fn block_on<F>(name: &str, main: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
