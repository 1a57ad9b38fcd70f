//! What a scheduler's status page shows, gathered at each request: the
//! cluster's members (schedulers and workers) and their state, the pools
//! with used and total executors and their queues, the running actions with
//! the mnemonic and target their client named, the latest failed actions,
//! and the action cache's hit rate.
//!
//! - [`ClusterStatus`]: one snapshot, plain data;
//! - `page`: the snapshot as a self-refreshing HTML page;
//! - `http`: the routes on the operators' HTTP port.

mod http;
mod page;

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use reapi_core::proto::remote_execution::ExecuteResponse;
use reapi_core::Digest;
use tonic::Code;

pub use http::status_router;
pub use page::render;

use crate::scheduler::state::ActiveOperation;
use crate::{Peers, PoolSummary, Scheduler};

/// How many failed actions the page remembers.
pub const RECENT_FAILURES: usize = 25;

/// The most running actions the page lists (the oldest first).
pub const MAX_RUNNING_LISTED: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Serving; for a worker, taking leases.
    Live,
    /// Finishing its work before it leaves; takes nothing new.
    Draining,
    /// A forward to it failed; routed around until its next heartbeat.
    Suspected,
    /// Not heard from within the peer timeout; forgotten soon.
    Silent,
}

impl MemberState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberState::Live => "live",
            MemberState::Draining => "draining",
            MemberState::Suspected => "suspected",
            MemberState::Silent => "silent",
        }
    }
}

/// A scheduler of the cluster, this one included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerMember {
    pub id: String,
    pub address: String,
    pub state: MemberState,
    pub this_one: bool,
    /// Since its last good heartbeat; `None` for this scheduler.
    pub last_heard: Option<Duration>,
}

/// A worker linked to this scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerMember {
    pub id: String,
    /// Where it serves blobs; empty when it holds none.
    pub address: String,
    pub state: MemberState,
    /// Bytes it gives to the cluster CAS.
    pub replica_space: u64,
    pub executors: u64,
    /// Executors running this scheduler's leases.
    pub used_executors: u64,
    pub last_heard: Duration,
}

/// An action leased to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningAction {
    pub action_digest: Digest,
    pub mnemonic: String,
    pub target: String,
    pub worker: String,
    pub pool: String,
    /// Offered and not yet accepted, running, or being cancelled.
    pub phase: &'static str,
    /// Since the lease was offered.
    pub running_for: Duration,
    /// From submission to the lease.
    pub queued_for: Duration,
}

/// An action that ended badly: a non-zero exit, a timeout, or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedAction {
    pub at: SystemTime,
    pub action_digest: Digest,
    pub mnemonic: String,
    pub target: String,
    /// The worker of its last lease, if it had one.
    pub worker: String,
    /// "exit code 1", or the status code and message.
    pub what: String,
}

/// The action cache lookups this process served (GetActionResult and
/// Execute's own), since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheLookups {
    pub hits: u64,
    pub misses: u64,
}

impl CacheLookups {
    /// Hits per lookup, or `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

/// Everything the page shows, as one scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStatus {
    pub scheduler_id: String,
    pub taken_at: SystemTime,
    pub schedulers: Vec<SchedulerMember>,
    pub workers: Vec<WorkerMember>,
    pub pools: Vec<PoolSummary>,
    /// Operations homed here waiting for an executor.
    pub queued: usize,
    /// Operations homed here, queued or running.
    pub active: usize,
    /// Oldest first, at most [`MAX_RUNNING_LISTED`].
    pub running: Vec<RunningAction>,
    /// Running actions, listed or not.
    pub running_total: usize,
    /// Newest first.
    pub failures: Vec<FailedAction>,
    pub cache: CacheLookups,
}

/// The last [`RECENT_FAILURES`] failed actions of this scheduler.
#[derive(Default)]
pub(crate) struct RecentFailures {
    failures: VecDeque<FailedAction>,
}

impl RecentFailures {
    /// Remembers `op` if `response` says it failed. Cancellations are the
    /// client's choice and not failures.
    pub fn record(&mut self, op: &ActiveOperation, response: &ExecuteResponse) {
        let Some(what) = failure_of(response) else {
            return;
        };
        if self.failures.len() == RECENT_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(FailedAction {
            at: SystemTime::now(),
            action_digest: op.action.action_digest,
            mnemonic: op.mnemonic.to_string(),
            target: op.target.to_string(),
            worker: op.worker.as_deref().unwrap_or_default().to_string(),
            what,
        });
    }

    /// Newest first.
    pub fn newest_first(&self) -> Vec<FailedAction> {
        self.failures.iter().rev().cloned().collect()
    }
}

/// What went wrong, if anything: the status when it is not OK (nor
/// CANCELLED), else a non-zero exit code.
fn failure_of(response: &ExecuteResponse) -> Option<String> {
    if let Some(status) = &response.status {
        let code = Code::from_i32(status.code);
        match code {
            Code::Ok => {}
            Code::Cancelled => return None,
            _ => return Some(format!("{code:?}: {}", status.message)),
        }
    }
    let exit_code = response.result.as_ref()?.exit_code;
    (exit_code != 0).then(|| format!("exit code {exit_code}"))
}

impl ClusterStatus {
    /// A snapshot of `scheduler`, reached at `address`, and of its peers
    /// when it has some.
    pub fn gather(scheduler: &Scheduler, address: &str, peers: Option<&Peers>) -> ClusterStatus {
        let mut status = scheduler.status();
        let draining = peers.is_some_and(|p| p.is_draining());
        status.schedulers.push(SchedulerMember {
            id: scheduler.id().to_string(),
            address: address.to_string(),
            state: if draining {
                MemberState::Draining
            } else {
                MemberState::Live
            },
            this_one: true,
            last_heard: None,
        });
        if let Some(peers) = peers {
            status.schedulers.extend(peers.members());
        }
        let (hits, misses) = reapi_cas::metrics::action_cache_lookups();
        status.cache = CacheLookups { hits, misses };
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_core::proto::remote_execution::ActionResult;
    use reapi_core::Error;

    fn with_exit(exit_code: i32) -> ExecuteResponse {
        ExecuteResponse {
            result: Some(ActionResult {
                exit_code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn failures_are_non_zero_exits_and_errors_but_not_cancellations() {
        assert_eq!(failure_of(&with_exit(0)), None);
        assert_eq!(failure_of(&with_exit(2)).as_deref(), Some("exit code 2"));
        let timed_out = ExecuteResponse {
            status: Some(Error::deadline_exceeded("too slow").to_rpc_status()),
            ..with_exit(0)
        };
        assert_eq!(
            failure_of(&timed_out).as_deref(),
            Some("DeadlineExceeded: too slow")
        );
        let cancelled = ExecuteResponse {
            status: Some(Error::cancelled("by the client").to_rpc_status()),
            ..Default::default()
        };
        assert_eq!(failure_of(&cancelled), None);
    }

    #[test]
    fn the_hit_rate_waits_for_a_lookup() {
        assert_eq!(CacheLookups::default().hit_rate(), None);
        let lookups = CacheLookups { hits: 3, misses: 1 };
        assert_eq!(lookups.hit_rate(), Some(0.75));
    }
}
