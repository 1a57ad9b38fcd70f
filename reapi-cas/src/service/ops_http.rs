//! The HTTP port for operators (`--metrics_listen`): Prometheus metrics at
//! `/metrics`, liveness at `/healthz` (the process answers), readiness at
//! `/readyz` (it should get traffic: started, not draining). A scheduler
//! adds its status page to the same router.
//!
//! The same readiness drives the standard gRPC health service on the main
//! port ([`grpc_health_service`]), which gRPC-aware probes and load
//! balancers ask instead.

use std::future::Future;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use reapi_core::health::{Readiness, ReadyState};
use reapi_core::{metrics, Error, Result};
use tokio::net::TcpListener;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::ServingStatus;

/// What Prometheus expects of the text `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`, `/healthz` and `/readyz`.
pub fn ops_router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async { ([(header::CONTENT_TYPE, OPENMETRICS)], metrics::render()) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let state = readiness.state();
                async move {
                    match state {
                        ReadyState::Ready => (StatusCode::OK, "ready\n".to_owned()),
                        ReadyState::NotReady(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n"),
                        ),
                    }
                    .into_response()
                }
            }),
        )
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve_ops(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("serving the operators' HTTP port", e))
}

/// The gRPC health service (`grpc.health.v1.Health`), reporting the whole
/// server (service name "") SERVING exactly while `readiness` is ready. The
/// task following readiness ends with the process.
pub async fn grpc_health_service(readiness: Readiness) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    let serving = |state: &ReadyState| match state {
        ReadyState::Ready => ServingStatus::Serving,
        ReadyState::NotReady(_) => ServingStatus::NotServing,
    };
    // The reporter starts "" as SERVING; set the truth before anyone asks.
    let mut changes = readiness.subscribe();
    let status = serving(&changes.borrow_and_update());
    reporter.set_service_status("", status).await;
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let status = serving(&changes.borrow_and_update());
            reporter.set_service_status("", status).await;
        }
    });
    service
}
