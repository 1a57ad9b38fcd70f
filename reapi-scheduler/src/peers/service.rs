//! The `SchedulerPeers` gRPC service: answers a peer's heartbeat with this
//! scheduler's, and counts the peer as live.

use std::sync::Arc;

use reapi_core::cluster::messages::PeerHeartbeat;
use reapi_core::cluster::service::{SchedulerPeers, SchedulerPeersServer};
use tonic::{Request, Response, Status};

use super::Peers;

pub struct PeerService {
    peers: Arc<Peers>,
}

impl PeerService {
    pub fn new(peers: Arc<Peers>) -> Self {
        PeerService { peers }
    }

    pub fn into_server(self) -> SchedulerPeersServer<Self> {
        SchedulerPeersServer::from_arc(Arc::new(self))
    }
}

#[tonic::async_trait]
impl SchedulerPeers for PeerService {
    async fn heartbeat(
        &self,
        request: Request<PeerHeartbeat>,
    ) -> Result<Response<PeerHeartbeat>, Status> {
        let beat = request.into_inner();
        if !crate::operation::is_scheduler_id(&beat.scheduler_id) {
            return Err(Status::invalid_argument(format!(
                "scheduler id {:?} is not lowercase letters, digits and dashes",
                beat.scheduler_id
            )));
        }
        // A peer that names no address cannot be forwarded to; it still
        // learns who this scheduler is.
        if !beat.address.is_empty() {
            self.peers.heard(&beat.address, &beat);
        }
        Ok(Response::new(self.peers.beat()))
    }
}
