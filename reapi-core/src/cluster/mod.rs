//! The cluster protocol: how workers and schedulers talk
//! ([`messages`], [`service`]) and how every process places keys on members
//! without shared state ([`rendezvous`]). See docs/adr/0006 for why the
//! protocol has this shape.

pub mod discovery;
pub mod link;
pub mod messages;
pub mod placement;
pub mod rendezvous;
pub mod service;
pub mod transport;

pub use link::{SchedulerConnector, WorkerMessageStream};
pub use messages::{SchedulerMessage, WorkerMessage};
