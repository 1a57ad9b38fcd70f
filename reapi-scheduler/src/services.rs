//! Builds a scheduler's services (Execution, Operations and the cluster's
//! WorkerLink), ready to add to a tonic server beside the storage
//! services.

use std::sync::Arc;

use reapi_cas::service::{ExecutionSupport, MAX_DECODING_MESSAGE_SIZE};
use reapi_core::proto::longrunning::operations_server::OperationsServer;
use reapi_core::proto::remote_execution::execution_server::ExecutionServer;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tonic::service::RoutesBuilder;

use crate::{ExecutionService, OperationsService, Scheduler, WorkerLinkService};

pub struct ExecutionServices {
    pub scheduler: Arc<Scheduler>,
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
            store,
            action_cache,
            instances,
        } = self;
        routes.add_service(
            ExecutionServer::new(ExecutionService::new(
                scheduler.clone(),
                store,
                action_cache,
                instances,
            ))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(
            OperationsServer::new(OperationsService::new(scheduler.clone()))
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(WorkerLinkService::new(scheduler).into_server());
    }
}
