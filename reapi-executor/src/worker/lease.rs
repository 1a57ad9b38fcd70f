//! One lease: admitted (a free executor claimed) or refused, then run until
//! it ends, is cancelled, passes its deadline or loses its link; its end is
//! reported on the link it came from, followed by a fresh report to every
//! scheduler (an executor is free again).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reapi_core::cluster::messages::{LeaseAnswer, LeaseOffer, LeaseResult};
use reapi_core::cluster::WorkerMessage;
use reapi_core::execution::{ExecutionJob, ExecutionOutcome, ExecutorClaim, ExecutorPool};
use reapi_core::platform::Requirements;
use reapi_core::proto::time;
use reapi_core::{Digest, DigestFunction, Error, Result};
use tokio::sync::oneshot;

use super::{Inner, LinkId, RunningLease};

/// Deadline of an offer that names none: its timeout plus this.
const DEFAULT_SLACK: Duration = Duration::from_secs(10 * 60);

impl Inner {
    pub(super) fn on_offer(self: &Arc<Self>, link: LinkId, offer: LeaseOffer) {
        let lease_id = offer.lease_id;
        let mut state = self.state.lock();
        let Some(entry) = state.links.get_mut(&link) else {
            return;
        };
        entry.last_offer_seen = entry.last_offer_seen.max(lease_id);
        let outbound = entry.outbound.clone();
        let admitted = self.admit(&offer);
        let (pool, claim, job, deadline) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                tracing::debug!(lease = lease_id, %reason, "lease refused");
                let _ = outbound.send(WorkerMessage::answer(LeaseAnswer {
                    lease_id,
                    accepted: false,
                    reason,
                }));
                return;
            }
        };
        let (cancel, cancelled) = oneshot::channel();
        state.leases.insert(
            (link, lease_id),
            RunningLease {
                cancel: Some(cancel),
            },
        );
        let _ = outbound.send(WorkerMessage::answer(LeaseAnswer {
            lease_id,
            accepted: true,
            reason: String::new(),
        }));
        drop(state);
        tracing::debug!(lease = lease_id, action = %job.action_digest, executor = %claim.executor(), "lease accepted");
        let inner = self.clone();
        let action = job.action_digest;
        tokio::spawn(async move {
            let outcome = run(pool.as_ref(), &claim, job, deadline, cancelled).await;
            inner.finish(link, lease_id, action, claim, outcome);
        });
    }

    /// Claims an executor for the offer, or says why not.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        offer: &LeaseOffer,
    ) -> std::result::Result<
        (
            Arc<dyn ExecutorPool>,
            ExecutorClaim,
            ExecutionJob,
            SystemTime,
        ),
        String,
    > {
        if self.is_draining() {
            return Err("the worker is draining".into());
        }
        let pool = self
            .pools
            .get(offer.pool as usize)
            .ok_or_else(|| format!("the worker has no pool {}", offer.pool))?;
        let job = job_from_offer(offer).map_err(|e| e.to_string())?;
        let requirements =
            Requirements::for_action(&job.action, &job.command).map_err(|e| e.to_string())?;
        if !pool.properties().satisfies(&requirements) {
            return Err(format!(
                "pool {} ({}) does not offer {requirements}",
                offer.pool,
                pool.properties()
            ));
        }
        let deadline = offer
            .deadline
            .as_ref()
            .and_then(time::system_time)
            .unwrap_or_else(|| SystemTime::now() + job.timeout + DEFAULT_SLACK);
        let claim = pool.claim().ok_or_else(|| {
            format!(
                "all {} executors of pool {} are busy",
                pool.capacity(),
                offer.pool
            )
        })?;
        Ok((pool.clone(), claim, job, deadline))
    }

    /// Reports a run's end, frees its executor and tells every scheduler.
    fn finish(
        &self,
        link: LinkId,
        lease_id: u64,
        action: Digest,
        claim: ExecutorClaim,
        outcome: Result<ExecutionOutcome>,
    ) {
        let state = &mut *self.state.lock();
        let known = state.leases.remove(&(link, lease_id)).is_some();
        // The run is over (its future is gone): the executor may be claimed.
        drop(claim);
        if known && !self.is_closing() {
            match &outcome {
                Ok(_) => {
                    tracing::debug!(lease = lease_id, %action, "lease finished; result reported")
                }
                Err(e) => {
                    tracing::info!(lease = lease_id, %action, error = %e, "lease ended without a result")
                }
            }
            if let Some(entry) = state.links.get(&link) {
                let _ = entry
                    .outbound
                    .send(WorkerMessage::result(result_message(lease_id, outcome)));
            }
            self.send_reports_locked(state);
        }
        self.lease_ended.notify_waiters();
    }
}

/// Runs the job until it ends, the lease is cancelled or its deadline
/// passes; whichever comes first drops the others (killing the action).
async fn run(
    pool: &dyn ExecutorPool,
    claim: &ExecutorClaim,
    job: ExecutionJob,
    deadline: SystemTime,
    cancelled: oneshot::Receiver<String>,
) -> Result<ExecutionOutcome> {
    let action = job.action_digest;
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::select! {
        outcome = pool.run(claim, job) => outcome,
        reason = cancelled => Err(Error::cancelled(
            reason.unwrap_or_else(|_| "the lease was dropped".into()),
        )),
        _ = tokio::time::sleep(left) => Err(Error::deadline_exceeded(format!(
            "action {action} passed its lease deadline"
        ))),
    }
}

fn result_message(lease_id: u64, outcome: Result<ExecutionOutcome>) -> LeaseResult {
    match outcome {
        Ok(outcome) => LeaseResult {
            lease_id,
            result: Some(outcome.result),
            timed_out: outcome.timed_out,
            error: None,
        },
        Err(e) => LeaseResult {
            lease_id,
            result: None,
            timed_out: false,
            error: Some(e.to_rpc_status()),
        },
    }
}

/// The job an offer describes; INVALID_ARGUMENT when a field is missing or
/// malformed.
pub fn job_from_offer(offer: &LeaseOffer) -> Result<ExecutionJob> {
    let function = DigestFunction::from_proto(offer.digest_function)?;
    let action_digest =
        Digest::from_proto_field(function, offer.action_digest.as_ref(), "action_digest")?;
    let action = offer
        .action
        .clone()
        .ok_or_else(|| Error::invalid_argument("lease offer has no action"))?;
    let command = offer
        .command
        .clone()
        .ok_or_else(|| Error::invalid_argument("lease offer has no command"))?;
    let timeout = offer
        .timeout
        .as_ref()
        .and_then(time::duration)
        .ok_or_else(|| Error::invalid_argument("lease offer has no valid timeout"))?;
    let queued_at = offer
        .queued_at
        .as_ref()
        .and_then(time::system_time)
        .unwrap_or_else(SystemTime::now);
    Ok(ExecutionJob {
        instance_name: offer.instance_name.clone(),
        action_digest,
        action,
        command,
        timeout,
        queued_at,
    })
}
