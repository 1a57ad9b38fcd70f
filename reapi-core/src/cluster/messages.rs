//! The messages of the cluster protocol (package `reapi.cluster.v1`),
//! written as prost structs rather than generated from a `.proto` file: the
//! protocol is small, and this keeps protoc out of the build. The wire
//! format is documented field by field in `docs/cluster-protocol.md`.
//!
//! - `WorkerLink.Connect`: one bidirectional stream per worker and
//!   scheduler. The worker sends [`WorkerMessage`]s (state reports, lease
//!   answers, results, goodbye); the scheduler sends [`SchedulerMessage`]s
//!   (welcome, lease offers, cancellations, notices about bad input).
//! - `SchedulerPeers.Heartbeat`: schedulers tell each other they are alive.

use crate::proto::protobuf::{Duration, Timestamp};
use crate::proto::remote_execution::{Action, ActionResult, Command, Digest, Platform};
use crate::proto::rpc::Status;

/// Worker to scheduler.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkerMessage {
    #[prost(oneof = "worker_message::Kind", tags = "1, 2, 3, 4")]
    pub kind: Option<worker_message::Kind>,
}

pub mod worker_message {
    // Messages are moved once, from the stream to their handler: boxing the
    // large variants would only add an allocation.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        /// The worker's whole state: sent first, as the heartbeat, and
        /// whenever an executor frees up.
        #[prost(message, tag = "1")]
        Report(super::StateReport),
        /// Accepts or refuses an offered lease.
        #[prost(message, tag = "2")]
        Answer(super::LeaseAnswer),
        /// How a lease's run ended.
        #[prost(message, tag = "3")]
        Result(super::LeaseResult),
        /// The worker leaves on purpose (drained); its stream ends next.
        #[prost(message, tag = "4")]
        Goodbye(super::Goodbye),
    }
}

/// A full, repeatable description of the worker as this scheduler should
/// see it: nothing in it depends on an earlier message having arrived.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StateReport {
    /// Stable across restarts (kept in the worker's data directory).
    #[prost(string, tag = "1")]
    pub worker_id: String,
    /// Where the worker serves its blobs, when it does (`host:port`).
    #[prost(string, tag = "2")]
    pub address: String,
    /// Groups of identical executors, in a fixed order: offers name a pool
    /// by its index here.
    #[prost(message, repeated, tag = "3")]
    pub pools: Vec<ExecutorGroup>,
    /// Leases from this scheduler that the worker is running now.
    #[prost(uint64, repeated, tag = "4")]
    pub running_leases: Vec<u64>,
    /// The highest lease id from this scheduler the worker had handled when
    /// it wrote this report: offers above it were still on their way.
    #[prost(uint64, tag = "5")]
    pub last_offer_seen: u64,
    /// The worker takes no new leases (it is shutting down).
    #[prost(bool, tag = "6")]
    pub draining: bool,
    /// Bytes of its disk given to the cluster's CAS: 0 for a worker that
    /// holds no replicas (execution only), which is never a placement
    /// target. A worker with replica space must give an `address`.
    #[prost(uint64, tag = "7")]
    pub replica_space: u64,
}

/// Executors with equal properties.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExecutorGroup {
    #[prost(message, optional, tag = "1")]
    pub properties: Option<Platform>,
    /// Executors in the group.
    #[prost(uint32, tag = "2")]
    pub executors: u32,
    /// Of which not running anything, for any scheduler.
    #[prost(uint32, tag = "3")]
    pub free: u32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LeaseAnswer {
    #[prost(uint64, tag = "1")]
    pub lease_id: u64,
    #[prost(bool, tag = "2")]
    pub accepted: bool,
    /// Why a lease was refused (the pool is full, the worker drains).
    #[prost(string, tag = "3")]
    pub reason: String,
}

/// The end of a lease's run. Exactly one of `result` and `error` is set:
/// an action that ran (whatever its exit code) has a result; `error` says
/// why it could not run or was stopped.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LeaseResult {
    #[prost(uint64, tag = "1")]
    pub lease_id: u64,
    #[prost(message, optional, tag = "2")]
    pub result: Option<ActionResult>,
    /// The action ran past its timeout; `result` holds what it wrote.
    #[prost(bool, tag = "3")]
    pub timed_out: bool,
    #[prost(message, optional, tag = "4")]
    pub error: Option<Status>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Goodbye {
    #[prost(string, tag = "1")]
    pub reason: String,
}

/// Scheduler to worker.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SchedulerMessage {
    #[prost(oneof = "scheduler_message::Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<scheduler_message::Kind>,
}

pub mod scheduler_message {
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        /// The first message, once the worker's first report is accepted.
        #[prost(message, tag = "1")]
        Welcome(super::Welcome),
        #[prost(message, tag = "2")]
        Offer(super::LeaseOffer),
        #[prost(message, tag = "3")]
        Cancel(super::LeaseCancel),
        /// Something the worker sent was refused; nothing else changed.
        #[prost(message, tag = "4")]
        Notice(super::Notice),
        /// The workers that hold the cluster's CAS, all of them, sent after
        /// the welcome and whenever the set changes.
        #[prost(message, tag = "5")]
        StorageMembers(super::StorageMembers),
    }
}

/// Every live worker with replica space, as one scheduler sees them.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StorageMembers {
    #[prost(message, repeated, tag = "1")]
    pub members: Vec<StorageMember>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct StorageMember {
    /// The worker's stable id: what placement ranks.
    #[prost(string, tag = "1")]
    pub worker_id: String,
    /// Where it serves the REAPI CAS and ByteStream (`host:port`).
    #[prost(string, tag = "2")]
    pub address: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Welcome {
    #[prost(string, tag = "1")]
    pub scheduler_id: String,
    /// How often the scheduler expects a report; it declares the worker
    /// dead after `heartbeat_timeout` without any message.
    #[prost(message, optional, tag = "2")]
    pub heartbeat_interval: Option<Duration>,
    #[prost(message, optional, tag = "3")]
    pub heartbeat_timeout: Option<Duration>,
}

/// One run of an action, offered to a pool of the worker. Lease ids only
/// grow on one scheduler, so `StateReport.last_offer_seen` orders them.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LeaseOffer {
    #[prost(uint64, tag = "1")]
    pub lease_id: u64,
    /// Index into the worker's last reported `pools`.
    #[prost(uint32, tag = "2")]
    pub pool: u32,
    #[prost(string, tag = "3")]
    pub instance_name: String,
    #[prost(message, optional, tag = "4")]
    pub action_digest: Option<Digest>,
    #[prost(message, optional, tag = "5")]
    pub action: Option<Action>,
    #[prost(message, optional, tag = "6")]
    pub command: Option<Command>,
    /// The action's timeout, already capped by the scheduler.
    #[prost(message, optional, tag = "7")]
    pub timeout: Option<Duration>,
    #[prost(message, optional, tag = "8")]
    pub queued_at: Option<Timestamp>,
    /// After this the worker stops the run and reports DEADLINE_EXCEEDED:
    /// the action's timeout plus time to lay out inputs and upload outputs.
    #[prost(message, optional, tag = "9")]
    pub deadline: Option<Timestamp>,
    /// The function of `action_digest`, which every digest of the action
    /// and its result shares (a `DigestFunction.Value`; 0 is SHA-256, as
    /// from a scheduler that predates the field).
    #[prost(int32, tag = "10")]
    pub digest_function: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LeaseCancel {
    #[prost(uint64, tag = "1")]
    pub lease_id: u64,
    #[prost(string, tag = "2")]
    pub reason: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Notice {
    /// The lease the refused message named, if any.
    #[prost(uint64, tag = "1")]
    pub lease_id: u64,
    #[prost(message, optional, tag = "2")]
    pub status: Option<Status>,
}

/// A scheduler's heartbeat to a peer, and the peer's answer.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PeerHeartbeat {
    /// Random per process start: a restarted scheduler is a new member.
    #[prost(string, tag = "1")]
    pub scheduler_id: String,
    /// Where peers and clients reach it (`host:port`).
    #[prost(string, tag = "2")]
    pub address: String,
    /// It is shutting down: no action should be homed on it.
    #[prost(bool, tag = "3")]
    pub draining: bool,
}

impl WorkerMessage {
    pub fn report(report: StateReport) -> Self {
        WorkerMessage {
            kind: Some(worker_message::Kind::Report(report)),
        }
    }

    pub fn answer(answer: LeaseAnswer) -> Self {
        WorkerMessage {
            kind: Some(worker_message::Kind::Answer(answer)),
        }
    }

    pub fn result(result: LeaseResult) -> Self {
        WorkerMessage {
            kind: Some(worker_message::Kind::Result(result)),
        }
    }

    pub fn goodbye(reason: impl Into<String>) -> Self {
        WorkerMessage {
            kind: Some(worker_message::Kind::Goodbye(Goodbye {
                reason: reason.into(),
            })),
        }
    }
}

impl SchedulerMessage {
    pub fn storage_members(members: Vec<StorageMember>) -> Self {
        SchedulerMessage {
            kind: Some(scheduler_message::Kind::StorageMembers(StorageMembers {
                members,
            })),
        }
    }

    pub fn welcome(welcome: Welcome) -> Self {
        SchedulerMessage {
            kind: Some(scheduler_message::Kind::Welcome(welcome)),
        }
    }

    pub fn offer(offer: LeaseOffer) -> Self {
        SchedulerMessage {
            kind: Some(scheduler_message::Kind::Offer(offer)),
        }
    }

    pub fn cancel(lease_id: u64, reason: impl Into<String>) -> Self {
        SchedulerMessage {
            kind: Some(scheduler_message::Kind::Cancel(LeaseCancel {
                lease_id,
                reason: reason.into(),
            })),
        }
    }

    pub fn notice(lease_id: u64, error: &crate::Error) -> Self {
        SchedulerMessage {
            kind: Some(scheduler_message::Kind::Notice(Notice {
                lease_id,
                status: Some(error.to_rpc_status()),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn messages_round_trip() {
        let report = WorkerMessage::report(StateReport {
            worker_id: "w1".into(),
            pools: vec![ExecutorGroup {
                properties: Some(Platform::default()),
                executors: 4,
                free: 3,
            }],
            running_leases: vec![7, 9],
            last_offer_seen: 9,
            ..Default::default()
        });
        let bytes = report.encode_to_vec();
        assert_eq!(WorkerMessage::decode(bytes.as_slice()).unwrap(), report);
        let cancel = SchedulerMessage::cancel(3, "client gone");
        let bytes = cancel.encode_to_vec();
        assert_eq!(SchedulerMessage::decode(bytes.as_slice()).unwrap(), cancel);
    }

    #[test]
    fn an_empty_message_has_no_kind() {
        let decoded = WorkerMessage::decode(&[][..]).unwrap();
        assert!(decoded.kind.is_none());
    }
}
