//! [`InProcessConnector`]: a worker in the scheduler's own process (the
//! all-in-one server's) links to it through channels, carrying the same
//! messages as a remote worker's gRPC stream to the same
//! [`Scheduler::serve_link`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use reapi_core::cluster::service::SchedulerMessageStream;
use reapi_core::cluster::{SchedulerConnector, WorkerMessageStream};
use reapi_core::Result;

use crate::Scheduler;

pub struct InProcessConnector {
    scheduler: Arc<Scheduler>,
}

impl InProcessConnector {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        InProcessConnector { scheduler }
    }
}

#[async_trait]
impl SchedulerConnector for InProcessConnector {
    fn target(&self) -> &str {
        "in-process"
    }

    async fn connect(&self, outbound: WorkerMessageStream) -> Result<SchedulerMessageStream> {
        Ok(self.scheduler.serve_link(outbound.map(Ok).boxed()))
    }
}
