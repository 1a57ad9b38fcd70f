//! [`GrpcSchedulerConnector`]: a link to a scheduler in another process,
//! over `WorkerLink.Connect`.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reapi_core::cluster::service::{SchedulerMessageStream, WorkerLinkClient};
use reapi_core::cluster::{SchedulerConnector, WorkerMessageStream};
use reapi_core::{Error, Result};
use tonic::transport::Endpoint;

/// How long connecting to a scheduler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct GrpcSchedulerConnector {
    target: String,
    endpoint: Endpoint,
}

impl GrpcSchedulerConnector {
    pub fn new(address: SocketAddr) -> Result<Self> {
        let target = address.to_string();
        let endpoint = reapi_core::cluster::transport::endpoint(&target)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A dead peer is noticed even when nothing is being sent.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(GrpcSchedulerConnector { target, endpoint })
    }
}

#[async_trait]
impl SchedulerConnector for GrpcSchedulerConnector {
    fn target(&self) -> &str {
        &self.target
    }

    async fn connect(&self, outbound: WorkerMessageStream) -> Result<SchedulerMessageStream> {
        let channel = self.endpoint.connect().await.map_err(|e| {
            Error::unavailable(format!("connecting to scheduler {}: {e}", self.target))
        })?;
        let inbound = WorkerLinkClient::new(channel)
            .connect(outbound)
            .await
            .map_err(Error::from)?;
        Ok(inbound.boxed())
    }
}
