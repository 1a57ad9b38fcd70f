//! What the scheduler holds under its one lock: operations and the actions
//! they share, the queues, the workers and the leases. Every change of an
//! operation's phase goes through the methods here, so the count of queued
//! operations and the queue entries stay in step.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reapi_core::execution::ExecutionJob;
use reapi_core::platform::Requirements;
use reapi_core::proto::remote_execution::{Action, Command, ExecuteResponse};
use reapi_core::Digest;
use tokio::sync::watch;

use crate::class_queues::{ClassQueues, Ticket};
use crate::fair_queue::BuildId;
use crate::ledger::Reservation;
use crate::operation::{OperationId, OperationWatch, Progress};
use crate::status::RecentFailures;
use crate::workers::{ConnId, LeaseId, Workers};

/// Identical actions: same instance and action digest (SHA-256 is the only
/// digest function, so it is implied).
pub(crate) type ActionKey = (String, Digest);

/// What every operation of one action shares: the decoded Action and
/// Command and what follows from them. Operations of the same action are
/// common (`do_not_cache` ones are never merged), and the decoded messages
/// were the largest part of a queued operation when each kept its own.
pub(crate) struct SharedAction {
    pub instance_name: String,
    pub action_digest: Digest,
    pub action: Action,
    pub command: Command,
    /// Already capped by the server's maximum.
    pub timeout: Duration,
    pub requirements: Requirements,
}

impl SharedAction {
    pub fn key(&self) -> ActionKey {
        (self.instance_name.clone(), self.action_digest)
    }
}

/// An action with operations queued or running.
pub(crate) struct ActionEntry {
    pub action: Arc<SharedAction>,
    /// Its operations queued or running; the entry goes with the last one.
    pub operations: usize,
    /// The cacheable operation that identical cacheable submissions join.
    pub joinable: Option<OperationId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In a queue, under this ticket number.
    Queued { seq: u64 },
    /// Offered to or running on a worker under this lease.
    Leased(LeaseId),
    /// Its result is being written to the action cache.
    Finishing,
}

pub(crate) struct ActiveOperation {
    pub action: Arc<SharedAction>,
    pub queued_at: SystemTime,
    pub priority: i32,
    pub build: BuildId,
    /// The client's `action_mnemonic` and `target_id`, maybe empty.
    pub mnemonic: Box<str>,
    pub target: Box<str>,
    /// The worker of its latest lease.
    pub worker: Option<Arc<str>>,
    /// Not `do_not_cache`: its result is cached, and identical submissions
    /// join it.
    pub cacheable: bool,
    /// Leases of it lost with their worker so far.
    pub losses: u32,
    pub phase: Phase,
    pub progress: watch::Sender<Progress>,
    /// Since when no client has watched it.
    pub orphaned_since: Option<Instant>,
}

pub(crate) struct CompletedOperation {
    pub action_digest: Digest,
    pub response: Arc<ExecuteResponse>,
}

impl CompletedOperation {
    pub fn progress(&self) -> Progress {
        Progress::Completed(self.response.clone())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeasePhase {
    /// Sent; the worker has not answered yet.
    Offered,
    Running,
    /// Its operation ended (cancelled); the executor stays busy until the
    /// worker says the run has stopped.
    Cancelling,
}

pub(crate) struct Lease {
    pub op: OperationId,
    pub conn: ConnId,
    pub pool: u32,
    pub phase: LeasePhase,
    pub offered_at: Instant,
    /// CPUs and memory held on the pool; given back when the lease ends.
    pub _reservation: Option<Reservation>,
}

#[derive(Default)]
pub(crate) struct State {
    pub active: HashMap<OperationId, ActiveOperation>,
    pub actions: HashMap<ActionKey, ActionEntry>,
    pub completed: HashMap<OperationId, CompletedOperation>,
    pub completed_order: VecDeque<(Instant, OperationId)>,
    pub queues: ClassQueues,
    /// Operations in the `Queued` phase.
    pub queued: usize,
    /// The same, by their requirements (no entry for none), so the pool
    /// figures cost a match per class rather than per queued operation.
    pub queued_by_requirements: HashMap<Requirements, usize>,
    pub workers: Workers,
    pub leases: HashMap<LeaseId, Lease>,
    pub last_lease: LeaseId,
    pub next_seq: u64,
    pub failures: RecentFailures,
}

impl ActiveOperation {
    pub fn watch(&self, home: &Arc<str>, id: OperationId) -> OperationWatch {
        OperationWatch::new(
            home.clone(),
            id,
            self.action.action_digest,
            self.progress.subscribe(),
        )
    }
}

impl State {
    /// The shared form of a submitted action, counting one more operation
    /// of it. The submission's own decoded messages are dropped when the
    /// action is already known.
    pub fn share_action(
        &mut self,
        key: ActionKey,
        job: ExecutionJob,
        requirements: Requirements,
        joinable: Option<OperationId>,
    ) -> Arc<SharedAction> {
        let entry = self.actions.entry(key).or_insert_with(|| ActionEntry {
            action: Arc::new(SharedAction {
                instance_name: job.instance_name,
                action_digest: job.action_digest,
                action: job.action,
                command: job.command,
                timeout: job.timeout,
                requirements,
            }),
            operations: 0,
            joinable: None,
        });
        entry.operations += 1;
        if joinable.is_some() {
            entry.joinable = joinable;
        }
        entry.action.clone()
    }

    /// Counts one operation of `action` fewer, once it has ended.
    pub fn release_action(&mut self, action: &SharedAction, id: OperationId) {
        let key = action.key();
        let Some(entry) = self.actions.get_mut(&key) else {
            return;
        };
        if entry.joinable == Some(id) {
            entry.joinable = None;
        }
        entry.operations -= 1;
        if entry.operations == 0 {
            self.actions.remove(&key);
        }
    }

    /// Puts an operation in its class's queue: at the back for a new one,
    /// at the front for one that lost its worker or was refused.
    pub fn enqueue(&mut self, id: OperationId, front: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(op) = self.active.get_mut(&id) else {
            return;
        };
        if !matches!(op.phase, Phase::Queued { .. }) {
            self.queued += 1;
            *self
                .queued_by_requirements
                .entry(op.action.requirements.clone())
                .or_default() += 1;
        }
        op.phase = Phase::Queued { seq };
        self.queues.push(
            &op.action.requirements,
            op.priority,
            &op.build,
            Ticket { op: id, seq },
            front,
        );
    }

    /// Moves an operation out of the `Queued` phase (its queue entry goes
    /// stale and is dropped when reached).
    pub fn set_phase(&mut self, id: OperationId, phase: Phase) {
        let Some(op) = self.active.get_mut(&id) else {
            return;
        };
        if matches!(op.phase, Phase::Queued { .. }) && !matches!(phase, Phase::Queued { .. }) {
            self.queued -= 1;
            unqueued(&mut self.queued_by_requirements, &op.action.requirements);
        }
        op.phase = phase;
    }

    /// Takes an operation out of the active set (its phase is left; the
    /// caller completes it).
    pub fn take_active(&mut self, id: OperationId) -> Option<ActiveOperation> {
        let op = self.active.remove(&id)?;
        if matches!(op.phase, Phase::Queued { .. }) {
            self.queued -= 1;
            unqueued(&mut self.queued_by_requirements, &op.action.requirements);
        }
        Some(op)
    }

    pub fn next_lease_id(&mut self) -> LeaseId {
        self.last_lease += 1;
        self.last_lease
    }
}

/// Counts one operation of `requirements` out of the `Queued` phase.
fn unqueued(counts: &mut HashMap<Requirements, usize>, requirements: &Requirements) {
    if let Some(count) = counts.get_mut(requirements) {
        *count -= 1;
        if *count == 0 {
            counts.remove(requirements);
        }
    }
}
