//! How a worker reaches a scheduler: a [`SchedulerConnector`] opens one
//! link, given everything the worker will send, and returns what the
//! scheduler sends back. A remote scheduler is reached over gRPC
//! (`WorkerLink.Connect`); the all-in-one server's own scheduler through
//! channels in the same process. Both carry the same messages and reach
//! the same code on the scheduler, so there is one dispatch path.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use super::messages::WorkerMessage;
use super::service::SchedulerMessageStream;
use crate::error::Result;

/// Everything a worker sends on one link.
pub type WorkerMessageStream = Pin<Box<dyn Stream<Item = WorkerMessage> + Send + 'static>>;

#[async_trait]
pub trait SchedulerConnector: Send + Sync + 'static {
    /// Names the scheduler for logs (`10.0.0.7:8980`, `in-process`).
    fn target(&self) -> &str;

    /// Opens a link. UNAVAILABLE when the scheduler cannot be reached.
    async fn connect(&self, outbound: WorkerMessageStream) -> Result<SchedulerMessageStream>;
}
