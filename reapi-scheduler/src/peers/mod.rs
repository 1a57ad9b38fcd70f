//! Many schedulers: each knows the others ([`membership`]), every action
//! has a home among the live ones (rendezvous hash of instance and action
//! digest), and a scheduler that is not an action's home forwards the
//! client's Execute there ([`forward`]), so identical actions sent to
//! different schedulers queue and run once. Operation names carry their
//! home, so WaitExecution and GetOperation work from any scheduler; a dead
//! home's operations answer NOT_FOUND and the client executes again.

pub mod forward;
pub mod membership;
mod service;

pub use membership::{Peers, Target};
pub use service::PeerService;

/// Set on a request one scheduler forwards to another: the receiver runs
/// it itself, even if its view of the cluster names another home.
pub const FORWARDED_HEADER: &str = "reapi-forwarded-by";
