//! The scheduler core: operations, deduplication of identical in-flight
//! actions, per-class fair queues, the workers connected to this scheduler
//! and the leases it gave them.
//!
//! - [`state`]: what is held under the one lock;
//! - `dispatch`: free executors take the best queued action they can run;
//! - `link`: one worker's stream (remote or in-process), its reports,
//!   answers and results;
//! - `leases`: how leases end: results, refusals, losses, cancellation;
//! - `watchdog`: dead workers, orphaned operations, expiry of finished
//!   ones.
//!
//! Ownership of timeouts (docs/adr/0004, 0006): the sandbox enforces the
//! action's timeout; the worker enforces the lease deadline; the scheduler
//! only decides that a silent worker is dead.

mod dispatch;
mod leases;
mod link;
pub(crate) mod state;
mod status;
mod watchdog;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use reapi_core::execution::ExecutionJob;
use reapi_core::platform::{ExecutorProperties, Requirements};
use reapi_core::proto::remote_execution::ExecuteResponse;
use reapi_core::{ActionCache, Digest, Error, Result};
use tokio::sync::{watch, Notify};

use crate::config::SchedulerConfig;
use crate::fair_queue::BuildId;
use crate::operation::{parse_name, OperationId, OperationState, OperationWatch, Progress};
use crate::request_labels::RequestLabels;
use state::{ActiveOperation, CompletedOperation, LeasePhase, Phase, State};

/// An action to queue.
pub struct Submission {
    pub job: ExecutionJob,
    pub requirements: Requirements,
    pub priority: i32,
    /// `Action.do_not_cache`: the result is not cached and the action is not
    /// merged with identical ones.
    pub do_not_cache: bool,
    /// From the client's RequestMetadata: the build it belongs to
    /// (`tool_invocation_id`, for fairness between builds; empty when the
    /// client sent none), its mnemonic and target (for the status page).
    pub labels: RequestLabels,
}

/// One pool of executors, for metrics and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolSummary {
    /// The pool's properties, as `name=value` pairs and resources.
    pub pool: String,
    /// Workers offering the pool, and how many of them drain.
    pub workers: usize,
    pub draining_workers: usize,
    pub executors: u64,
    /// Executors running a lease of this scheduler.
    pub used_executors: u64,
    /// Operations homed here, queued, that this pool could run (one that
    /// several pools could run counts for each).
    pub queued_actions: usize,
}

/// Workers and executors as this scheduler sees them, for status and
/// tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutorSummary {
    pub workers: usize,
    pub executors: u64,
    pub free: u64,
    pub leases: usize,
}

pub struct Scheduler {
    /// This scheduler's id: the home part of its operations' names.
    id: Arc<str>,
    state: Mutex<State>,
    action_cache: Arc<dyn ActionCache>,
    config: SchedulerConfig,
    /// Wakes the dispatcher: something was queued or an executor freed up.
    wake: Arc<Notify>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Lets the dispatcher notice the scheduler is gone and end.
        self.wake.notify_one();
    }
}

/// A fresh scheduler id: 12 hex digits, new at every start, so a restarted
/// scheduler never answers for operations its previous life gave out.
pub fn new_scheduler_id() -> String {
    let uuid = uuid::Uuid::new_v4();
    hex_prefix(uuid.as_bytes(), 6)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes[..n].iter().map(|b| format!("{b:02x}")).collect()
}

impl Scheduler {
    /// Creates the scheduler with a fresh id and starts its dispatcher and
    /// watchdog tasks.
    pub fn start(action_cache: Arc<dyn ActionCache>, config: SchedulerConfig) -> Arc<Self> {
        Self::start_with_id(new_scheduler_id(), action_cache, config)
    }

    /// [`Scheduler::start`] with a given id (lowercase letters, digits and
    /// dashes).
    pub fn start_with_id(
        id: String,
        action_cache: Arc<dyn ActionCache>,
        config: SchedulerConfig,
    ) -> Arc<Self> {
        debug_assert!(crate::operation::is_scheduler_id(&id), "{id:?}");
        let scheduler = Arc::new(Scheduler {
            id: Arc::from(id),
            state: Mutex::new(State::default()),
            action_cache,
            config,
            wake: Arc::new(Notify::new()),
        });
        dispatch::spawn_dispatcher(&scheduler);
        watchdog::spawn_watchdog(&scheduler);
        scheduler
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues an action, or joins an identical one already in flight.
    /// Returns a watch of the operation's state.
    pub fn submit(&self, submission: Submission) -> OperationWatch {
        let Submission {
            job,
            requirements,
            priority,
            do_not_cache,
            labels,
        } = submission;
        let cacheable = !do_not_cache;
        let key = (job.instance_name.clone(), job.action_digest);
        let mut state = self.state.lock();
        let joinable = state.actions.get(&key).and_then(|entry| entry.joinable);
        if let Some(id) = joinable.filter(|_| cacheable) {
            if let Some(active) = state.active.get(&id) {
                tracing::debug!(action = %key.1, "joining identical in-flight action");
                return active.watch(&self.id, id);
            }
        }
        let id = OperationId::random();
        let queued_at = job.queued_at;
        let action = state.share_action(key, job, requirements, cacheable.then_some(id));
        let priority = priority.clamp(self.config.priority_range.0, self.config.priority_range.1);
        let (progress, rx) = watch::channel(Progress::Queued);
        let watch = OperationWatch::new(self.id.clone(), id, action.action_digest, rx);
        state.active.insert(
            id,
            ActiveOperation {
                action,
                queued_at,
                priority,
                build: BuildId::from(labels.build),
                mnemonic: labels.mnemonic,
                target: labels.target,
                worker: None,
                cacheable,
                losses: 0,
                // Replaced by `enqueue` at once.
                phase: Phase::Finishing,
                progress,
                orphaned_since: None,
            },
        );
        state.enqueue(id, false);
        drop(state);
        self.wake.notify_one();
        watch
    }

    /// Registers an operation that finished without running (a cache hit
    /// found by Execute), so that its name answers WaitExecution and
    /// GetOperation like any other finished operation. Returns its name.
    pub fn record_finished(&self, action_digest: Digest, response: ExecuteResponse) -> String {
        let id = OperationId::random();
        let done = CompletedOperation {
            action_digest,
            response: Arc::new(response),
        };
        self.remember_completed(&mut self.state.lock(), id, done);
        id.name(&self.id)
    }

    /// Whether `name` is an operation name this scheduler gave out (it may
    /// have expired since).
    pub fn is_home_of(&self, name: &str) -> bool {
        parse_name(name).is_some_and(|(home, _)| home == &*self.id)
    }

    /// A watch of one of this scheduler's operations: live while it runs,
    /// the final state once finished. `None` for an unknown (or forgotten)
    /// name, or one of another scheduler.
    pub fn subscribe(&self, name: &str) -> Option<OperationWatch> {
        let (home, id) = parse_name(name)?;
        if home != &*self.id {
            return None;
        }
        let mut state = self.state.lock();
        self.expire_completed(&mut state);
        if let Some(active) = state.active.get_mut(&id) {
            // Asking about an operation (GetOperation polling included)
            // counts as watching it.
            active.orphaned_since = None;
            return Some(active.watch(&self.id, id));
        }
        let done = state.completed.get(&id)?;
        let (_, rx) = watch::channel(done.progress());
        Some(OperationWatch::new(
            self.id.clone(),
            id,
            done.action_digest,
            rx,
        ))
    }

    pub fn get(&self, name: &str) -> Option<OperationState> {
        self.subscribe(name).map(|watch| watch.state())
    }

    /// Every operation still known, running ones first.
    pub fn list(&self) -> Vec<OperationState> {
        let mut state = self.state.lock();
        self.expire_completed(&mut state);
        let mut ops: Vec<OperationState> = state
            .active
            .iter()
            .map(|(id, active)| {
                let progress = active.progress.borrow().clone();
                progress.to_state(&self.id, *id, active.action.action_digest)
            })
            .collect();
        ops.sort_by(|a, b| a.name.cmp(&b.name));
        let mut done: Vec<OperationState> = state
            .completed
            .iter()
            .map(|(id, done)| done.progress().to_state(&self.id, *id, done.action_digest))
            .collect();
        done.sort_by(|a, b| a.name.cmp(&b.name));
        ops.extend(done);
        ops
    }

    /// Operations queued or running.
    pub fn active_operations(&self) -> usize {
        self.state.lock().active.len()
    }

    /// Waits until no operation is queued or running, or `limit` passes;
    /// true when idle.
    pub async fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.active_operations() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        true
    }

    /// Operations waiting for an executor.
    pub fn queue_len(&self) -> usize {
        self.state.lock().queued
    }

    /// The distinct properties of the live workers' pools: what an action
    /// can ask for.
    pub fn offered_properties(&self) -> Vec<ExecutorProperties> {
        self.state.lock().workers.offered()
    }

    /// Keeps `sender` up to date with the cluster CAS's members: the
    /// linked workers with replica space. A process's cluster store
    /// follows the other end.
    pub fn publish_placement(&self, sender: reapi_core::cluster::placement::PlacementSender) {
        self.state.lock().workers.publish_placement(sender);
    }

    /// Each pool (executors with equal properties, across workers) as this
    /// scheduler sees it, sorted by its properties.
    pub fn pool_summaries(&self) -> Vec<PoolSummary> {
        status::pools(&self.state.lock())
            .into_values()
            .map(|(summary, _)| summary)
            .collect()
    }

    pub fn executor_summary(&self) -> ExecutorSummary {
        let state = self.state.lock();
        let (executors, free) = state.workers.executor_counts();
        ExecutorSummary {
            workers: state.workers.by_conn.len(),
            executors,
            free,
            leases: state.leases.len(),
        }
    }

    /// Cancels a queued or running operation: it completes with CANCELLED
    /// for every client waiting on it, and a running action is killed.
    pub fn cancel(&self, name: &str) -> Result<()> {
        let unknown = || Error::not_found(format!("operation {name:?} is unknown"));
        let (home, id) = parse_name(name).ok_or_else(unknown)?;
        if home != &*self.id {
            return Err(unknown());
        }
        let mut state = self.state.lock();
        if !state.active.contains_key(&id) {
            return if state.completed.contains_key(&id) {
                Ok(())
            } else {
                Err(unknown())
            };
        }
        self.cancel_locked(
            &mut state,
            id,
            Error::cancelled(format!("operation {name} was cancelled")),
        );
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Ends an active operation with `error`; a running lease is told to
    /// stop, and its executor stays busy until the worker confirms.
    fn cancel_locked(&self, state: &mut State, id: OperationId, error: Error) {
        let Some(active) = state.take_active(id) else {
            return;
        };
        if let Phase::Leased(lease_id) = active.phase {
            if let Some(lease) = state.leases.get_mut(&lease_id) {
                lease.phase = LeasePhase::Cancelling;
                if let Some(worker) = state.workers.by_conn.get(&lease.conn) {
                    worker.send(reapi_core::cluster::SchedulerMessage::cancel(
                        lease_id,
                        error.message().to_string(),
                    ));
                }
            }
        }
        let response = ExecuteResponse {
            status: Some(error.to_rpc_status()),
            ..Default::default()
        };
        self.complete(state, id, active, response);
    }

    fn complete(
        &self,
        state: &mut State,
        id: OperationId,
        active: ActiveOperation,
        response: ExecuteResponse,
    ) {
        state.release_action(&active.action, id);
        state.failures.record(&active, &response);
        let done = CompletedOperation {
            action_digest: active.action.action_digest,
            response: Arc::new(response),
        };
        active.progress.send_replace(done.progress());
        self.remember_completed(state, id, done);
    }

    /// Keeps a finished operation for GetOperation and WaitExecution, for
    /// the configured retention.
    fn remember_completed(&self, state: &mut State, id: OperationId, done: CompletedOperation) {
        state.completed.insert(id, done);
        state.completed_order.push_back((Instant::now(), id));
        self.expire_completed(state);
    }

    fn expire_completed(&self, state: &mut State) {
        let now = Instant::now();
        while let Some((at, id)) = state.completed_order.front() {
            let expired = now.duration_since(*at) > self.config.completed_retention;
            if !expired && state.completed_order.len() <= self.config.max_completed {
                break;
            }
            state.completed.remove(id);
            state.completed_order.pop_front();
        }
    }

    /// When a lease handed to a worker must end, counted from now.
    fn lease_deadline(&self, timeout: std::time::Duration) -> SystemTime {
        SystemTime::now() + timeout + self.config.lease_slack
    }
}

#[cfg(test)]
mod tests;
