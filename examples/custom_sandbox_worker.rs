//! A worker embedded in a program of your own, with a custom `Sandbox`
//! (see `reapi_examples::custom_sandbox`): it links to a scheduler, runs
//! the actions it is leased, and prints an audit line per command.
//!
//! Run a scheduler (`cargo run --bin reapi-scheduler -- --listen 127.0.0.1:8980`),
//! then: `cargo run -p reapi-examples --example custom_sandbox_worker -- 127.0.0.1:8980`
//! and build with `--remote_executor=grpc://127.0.0.1:8980`. Ctrl-C drains it.

use std::sync::Arc;
use std::time::Duration;

use reapi_examples::custom_sandbox::{start_worker, AuditingSandbox};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let scheduler = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8980".into())
        .parse()?;
    let work_dir = std::env::temp_dir().join("reapi-custom-sandbox-worker");
    let sandbox = Arc::new(AuditingSandbox::default());
    let worker = start_worker(scheduler, &work_dir, 4, sandbox.clone()).await?;
    println!("worker linked to {scheduler}; ctrl-c drains it");
    tokio::signal::ctrl_c().await?;
    worker.drain(Duration::from_secs(60)).await;
    println!("ran {} commands", sandbox.entries().len());
    Ok(())
}
