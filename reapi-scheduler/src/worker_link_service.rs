//! The `WorkerLink` gRPC service: a remote worker's stream, handed to
//! [`Scheduler::serve_link`].

use std::sync::Arc;

use reapi_core::cluster::service::{SchedulerMessageStream, WorkerLink, WorkerLinkServer};
use reapi_core::cluster::WorkerMessage;
use tonic::{Request, Response, Status, Streaming};

use crate::Scheduler;

pub struct WorkerLinkService {
    scheduler: Arc<Scheduler>,
}

impl WorkerLinkService {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        WorkerLinkService { scheduler }
    }

    pub fn into_server(self) -> WorkerLinkServer<Self> {
        WorkerLinkServer::from_arc(Arc::new(self))
    }
}

#[tonic::async_trait]
impl WorkerLink for WorkerLinkService {
    async fn connect(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<SchedulerMessageStream>, Status> {
        let inbound: Streaming<WorkerMessage> = request.into_inner();
        Ok(Response::new(self.scheduler.serve_link(Box::pin(inbound))))
    }
}
