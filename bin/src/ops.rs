//! What every binary offers operators: its [`Readiness`], the gRPC health
//! service on its gRPC port, and, with `--metrics_listen`, the HTTP port
//! with `/metrics`, `/healthz` and `/readyz` (plus a scheduler's status
//! page). The HTTP port stays up while the process drains, answering
//! not ready, and goes with the process.

use std::net::SocketAddr;

use axum::Router;
use reapi_cas::service::listener;
use reapi_cas::service::ops_http::{grpc_health_service, ops_router, serve_ops};
use reapi_core::health::Readiness;
use tonic::service::RoutesBuilder;

pub struct Ops {
    pub readiness: Readiness,
    /// Where the HTTP port listens, if it does.
    pub http: Option<SocketAddr>,
}

impl Ops {
    /// Not ready until the binary says so. With an address, serves the
    /// HTTP port there (port 0 picks one), with `extra` routes.
    pub async fn start(
        metrics_listen: Option<SocketAddr>,
        extra: Option<Router>,
    ) -> Result<Ops, String> {
        let readiness = Readiness::new("starting");
        let mut http = None;
        if let Some(addr) = metrics_listen {
            let port = listener::bind(addr).await.map_err(|e| e.to_string())?;
            let bound = port.local_addr().map_err(|e| e.to_string())?;
            let mut router = ops_router(readiness.clone());
            if let Some(extra) = extra {
                router = router.merge(extra);
            }
            tokio::spawn(async move {
                if let Err(e) = serve_ops(port, router, std::future::pending()).await {
                    tracing::error!(error = %e, "the operators' HTTP port stopped");
                }
            });
            tracing::info!(%bound, "serving metrics and health over HTTP");
            http = Some(bound);
        }
        Ok(Ops { readiness, http })
    }

    /// Prints where the HTTP port is, `NAME metrics on http://ADDR`: after
    /// the binary's own first line, which scripts and tests wait for.
    pub fn announce(&self, name: &str) {
        if let Some(addr) = self.http {
            println!("{name} metrics on http://{addr}");
        }
    }

    /// Adds the gRPC health service to a gRPC port's routes.
    pub async fn add_grpc_health(&self, routes: &mut RoutesBuilder) {
        routes.add_service(grpc_health_service(self.readiness.clone()).await);
    }
}
