//! Builds a scheduler's services (Execution, Operations and the cluster's
//! WorkerLink and SchedulerPeers), ready to add to a tonic server beside the storage
//! services.

use std::sync::Arc;

use reapi_cas::service::{ExecutionSupport, MAX_DECODING_MESSAGE_SIZE};
use reapi_core::proto::longrunning::operations_server::OperationsServer;
use reapi_core::proto::remote_execution::execution_server::ExecutionServer;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tonic::service::RoutesBuilder;

use crate::peers::PeerService;
use crate::{ExecutionService, OperationsService, Peers, Scheduler, WorkerLinkService};

pub struct ExecutionServices {
    pub scheduler: Arc<Scheduler>,
    /// The other schedulers of the cluster; `None` for a cluster of one.
    pub peers: Option<Arc<Peers>>,
    pub store: Arc<dyn BlobStore>,
    pub action_cache: Arc<dyn ActionCache>,
    pub instances: InstancePolicy,
}

impl ExecutionServices {
    /// What Capabilities should advertise for this scheduler.
    pub fn support(&self) -> ExecutionSupport {
        ExecutionSupport {
            priority_range: self.scheduler.config().priority_range,
        }
    }

    /// Adds Execution, Operations and WorkerLink to `routes`.
    pub fn add_to(self, routes: &mut RoutesBuilder) {
        let ExecutionServices {
            scheduler,
            peers,
            store,
            action_cache,
            instances,
        } = self;
        let peers = peers.unwrap_or_else(|| Peers::solo(scheduler.id()));
        routes.add_service(
            ExecutionServer::new(ExecutionService::new(
                scheduler.clone(),
                peers.clone(),
                store,
                action_cache,
                instances,
            ))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(
            OperationsServer::new(OperationsService::new(scheduler.clone(), peers.clone()))
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(WorkerLinkService::new(scheduler).into_server());
        routes.add_service(PeerService::new(peers).into_server());
    }
}
