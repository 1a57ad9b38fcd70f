//! How leases end: the worker accepts or refuses an offer, reports a
//! result, or loses the lease (its stream broke, it went silent, or its
//! report no longer lists the lease). A lost lease sends its operation
//! back to the queue, EXECUTING -> QUEUED, until it has been lost
//! `max_attempts` times; then the operation fails with UNAVAILABLE.

use std::sync::Arc;

use reapi_core::cluster::messages::{LeaseAnswer, LeaseResult};
use reapi_core::cluster::SchedulerMessage;
use reapi_core::execution::ExecutionOutcome;
use reapi_core::proto::remote_execution::ExecuteResponse;
use reapi_core::Error;
use tonic::Code;

use super::state::{LeasePhase, Phase, State};
use super::Scheduler;
use crate::operation::Progress;
use crate::workers::{ConnId, LeaseId};

impl Scheduler {
    pub(super) fn on_answer(&self, conn: ConnId, answer: LeaseAnswer) {
        let mut state = self.state.lock();
        let Some(lease) = held_lease(&mut state, conn, answer.lease_id) else {
            notify_unknown_lease(&state, conn, answer.lease_id, "an answer");
            return;
        };
        if answer.accepted {
            if lease.phase == LeasePhase::Offered {
                lease.phase = LeasePhase::Running;
            }
            let op = lease.op;
            if let Some(active) = state.active.get(&op) {
                if active.phase == Phase::Leased(answer.lease_id) {
                    active.progress.send_replace(Progress::Executing);
                }
            }
            return;
        }
        // Refused: the pool was full (another scheduler took the executor)
        // or the worker is draining. Not the action's fault: no loss is
        // counted, and it goes first in line again.
        tracing::debug!(lease = answer.lease_id, reason = %answer.reason, "lease refused");
        let lease = state
            .leases
            .remove(&answer.lease_id)
            .expect("held_lease found it");
        if let Some(worker) = state.workers.by_conn.get_mut(&conn) {
            worker.leases.remove(&answer.lease_id);
        }
        // Offer nothing more on that pool until the worker reports again.
        state.workers.set_free(conn, lease.pool, 0);
        if state.active.get(&lease.op).map(|a| a.phase) == Some(Phase::Leased(answer.lease_id)) {
            requeue(&mut state, lease.op);
        }
        drop(state);
        self.wake.notify_one();
    }

    pub(super) fn on_result(self: &Arc<Self>, conn: ConnId, result: LeaseResult) {
        let mut state = self.state.lock();
        if held_lease(&mut state, conn, result.lease_id).is_none() {
            notify_unknown_lease(&state, conn, result.lease_id, "a result");
            return;
        }
        let lease = state
            .leases
            .remove(&result.lease_id)
            .expect("held_lease found it");
        let free_now = state.workers.by_conn.get_mut(&conn).map(|worker| {
            worker.leases.remove(&result.lease_id);
            worker.pools.get(lease.pool as usize).map_or(0, |p| p.free)
        });
        if let Some(free) = free_now {
            state.workers.set_free(conn, lease.pool, free + 1);
        }
        let current = state
            .active
            .get(&lease.op)
            .is_some_and(|a| a.phase == Phase::Leased(result.lease_id));
        if lease.phase == LeasePhase::Cancelling || !current {
            tracing::debug!(
                lease = result.lease_id,
                "result of a lease no longer current; dropped"
            );
            drop(state);
            self.wake.notify_one();
            return;
        }
        if let (Some(action_result), Some(pool)) = (
            &result.result,
            state
                .workers
                .by_conn
                .get(&conn)
                .and_then(|w| w.pools.get(lease.pool as usize)),
        ) {
            crate::metrics::observe_execution(pool.name.to_string(), action_result);
        }
        let outcome = match (result.error, result.result) {
            (Some(status), _) => Err(Error::from_rpc_status(&status)),
            (None, Some(action_result)) => Ok(ExecutionOutcome {
                result: action_result,
                timed_out: result.timed_out,
            }),
            (None, None) => Err(Error::internal(format!(
                "worker sent neither result nor error for lease {}",
                result.lease_id
            ))),
        };
        let op = lease.op;
        if let Some(active) = state.active.get(&op) {
            tracing::debug!(
                worker = %worker_name(&state, conn),
                lease = result.lease_id,
                action = %active.action.action_digest,
                ok = outcome.is_ok(),
                "lease result"
            );
        }
        match outcome {
            Err(e) if e.code() == Code::Unavailable => {
                // The worker could not reach what the run needed (the CAS):
                // another worker may do better.
                let worker = worker_name(&state, conn);
                self.lose(&mut state, op, &format!("{worker}: {e}"));
            }
            Err(e) => {
                if let Some(active) = state.take_active(op) {
                    let response = ExecuteResponse {
                        status: Some(e.to_rpc_status()),
                        ..Default::default()
                    };
                    self.complete(&mut state, op, active, response);
                }
            }
            Ok(outcome) => {
                state.set_phase(op, Phase::Finishing);
                let scheduler = self.clone();
                tokio::spawn(async move { scheduler.finish(op, outcome).await });
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Caches a successful result, then publishes it to every waiter.
    async fn finish(&self, op: crate::operation::OperationId, outcome: ExecutionOutcome) {
        let (action, cacheable) = {
            let state = self.state.lock();
            match state.active.get(&op) {
                Some(active) => (active.action.clone(), active.cacheable),
                None => return, // cancelled meanwhile
            }
        };
        let succeeded = outcome.result.exit_code == 0 && !outcome.timed_out;
        if cacheable && succeeded {
            if let Err(e) = self
                .action_cache
                .put(
                    &action.instance_name,
                    &action.action_digest,
                    &outcome.result,
                )
                .await
            {
                tracing::warn!(action = %action.action_digest, error = %e, "caching the action result failed");
            }
        }
        let status = outcome.timed_out.then(|| {
            Error::deadline_exceeded(format!(
                "action {} exceeded its timeout of {:?}",
                action.action_digest, action.timeout
            ))
            .to_rpc_status()
        });
        let response = ExecuteResponse {
            result: Some(outcome.result),
            status,
            ..Default::default()
        };
        let mut state = self.state.lock();
        if let Some(active) = state.take_active(op) {
            self.complete(&mut state, op, active, response);
        }
    }

    /// Ends a lease whose worker lost it; its operation is requeued or,
    /// after too many losses, failed.
    pub(super) fn lease_lost(&self, state: &mut State, lease_id: LeaseId, why: &str) {
        let Some(lease) = state.leases.remove(&lease_id) else {
            return;
        };
        if let Some(worker) = state.workers.by_conn.get_mut(&lease.conn) {
            worker.leases.remove(&lease_id);
        }
        if lease.phase == LeasePhase::Cancelling {
            return;
        }
        if state.active.get(&lease.op).map(|a| a.phase) == Some(Phase::Leased(lease_id)) {
            self.lose(state, lease.op, why);
        }
    }

    /// Counts a loss against an operation: back to the queue, or failed
    /// once it has been lost `max_attempts` times.
    fn lose(&self, state: &mut State, op: crate::operation::OperationId, why: &str) {
        let Some(active) = state.active.get_mut(&op) else {
            return;
        };
        active.losses += 1;
        let (losses, digest) = (active.losses, active.action.action_digest);
        if losses < self.config.max_attempts {
            tracing::warn!(action = %digest, attempt = losses, reason = why, "action lost its worker; requeued");
            requeue(state, op);
            return;
        }
        tracing::warn!(action = %digest, attempts = losses, reason = why, "action lost its worker too often; failing it");
        if let Some(active) = state.take_active(op) {
            let error = Error::unavailable(format!(
                "action {digest} was lost with its worker {losses} times; giving up after {losses} attempts (last: {why})"
            ));
            let response = ExecuteResponse {
                status: Some(error.to_rpc_status()),
                ..Default::default()
            };
            self.complete(state, op, active, response);
        }
    }
}

/// Back to the front of its queue, stage QUEUED again.
fn requeue(state: &mut State, op: crate::operation::OperationId) {
    state.enqueue(op, true);
    if let Some(active) = state.active.get(&op) {
        active.progress.send_replace(Progress::Queued);
    }
}

/// The lease, if this worker holds it.
fn held_lease(
    state: &mut State,
    conn: ConnId,
    lease_id: LeaseId,
) -> Option<&mut super::state::Lease> {
    state
        .leases
        .get_mut(&lease_id)
        .filter(|lease| lease.conn == conn)
}

fn notify_unknown_lease(state: &State, conn: ConnId, lease_id: LeaseId, what: &str) {
    let Some(worker) = state.workers.by_conn.get(&conn) else {
        return;
    };
    tracing::warn!(worker = %worker.id, lease = lease_id, "{what} for a lease the worker does not hold; dropped");
    worker.send(SchedulerMessage::notice(
        lease_id,
        &Error::not_found(format!(
            "{what} for lease {lease_id}, which worker {} does not hold, was dropped",
            worker.id
        )),
    ));
}

pub(super) fn worker_name(state: &State, conn: ConnId) -> String {
    state
        .workers
        .by_conn
        .get(&conn)
        .map_or_else(|| format!("link {conn}"), |w| format!("worker {}", w.id))
}
