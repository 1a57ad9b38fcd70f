//! The scheduler's side of the status page and the pool metrics: pools,
//! workers, running actions and recent failures, read under one lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reapi_core::platform::ExecutorProperties;

use super::state::{LeasePhase, State};
use super::{PoolSummary, Scheduler};
use crate::status::{ClusterStatus, MemberState, RunningAction, WorkerMember, MAX_RUNNING_LISTED};

/// Each pool by its name, with its properties; its queued actions counted
/// by matching the requirements of each class of queued operations.
pub(super) fn pools(state: &State) -> BTreeMap<Arc<str>, (PoolSummary, ExecutorProperties)> {
    let mut pools: BTreeMap<Arc<str>, (PoolSummary, ExecutorProperties)> = BTreeMap::new();
    for worker in state.workers.by_conn.values() {
        for pool in &worker.pools {
            let (summary, _) = pools.entry(pool.name.clone()).or_insert_with(|| {
                let summary = PoolSummary {
                    pool: pool.name.to_string(),
                    ..Default::default()
                };
                (summary, pool.properties.clone())
            });
            summary.workers += 1;
            summary.draining_workers += usize::from(worker.draining);
            summary.executors += u64::from(pool.capacity);
            summary.used_executors += u64::from(pool.capacity.saturating_sub(pool.free));
        }
    }
    for (requirements, queued) in &state.queued_by_requirements {
        for (summary, properties) in pools.values_mut() {
            if properties.satisfies(requirements) {
                summary.queued_actions += queued;
            }
        }
    }
    pools
}

impl Scheduler {
    /// Linked workers: (taking leases, draining or leaving).
    pub fn worker_states(&self) -> (usize, usize) {
        let state = self.state.lock();
        let draining = state
            .workers
            .by_conn
            .values()
            .filter(|w| w.draining || w.leaving)
            .count();
        (state.workers.by_conn.len() - draining, draining)
    }

    /// This scheduler's part of the status page: everything but its peers
    /// and the action cache's figures.
    pub fn status(&self) -> ClusterStatus {
        let state = self.state.lock();
        let now = Instant::now();
        let pools = pools(&state)
            .into_values()
            .map(|(summary, _)| summary)
            .collect();
        let mut workers: Vec<WorkerMember> = state
            .workers
            .by_conn
            .values()
            .map(|worker| {
                let executors = worker.pools.iter().map(|p| u64::from(p.capacity)).sum();
                let used = worker
                    .pools
                    .iter()
                    .map(|p| u64::from(p.capacity.saturating_sub(p.free)))
                    .sum();
                WorkerMember {
                    id: worker.id.to_string(),
                    address: worker.address.clone(),
                    state: if worker.draining || worker.leaving {
                        MemberState::Draining
                    } else {
                        MemberState::Live
                    },
                    replica_space: worker.replica_space,
                    executors,
                    used_executors: used,
                    last_heard: now.saturating_duration_since(worker.last_heard),
                }
            })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut running: Vec<RunningAction> = state
            .leases
            .values()
            .filter_map(|lease| {
                let op = state.active.get(&lease.op)?;
                let worker = state.workers.by_conn.get(&lease.conn);
                let pool = worker.and_then(|w| w.pools.get(lease.pool as usize));
                let running_for = now.saturating_duration_since(lease.offered_at);
                let offered = SystemTime::now()
                    .checked_sub(running_for)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some(RunningAction {
                    action_digest: op.action.action_digest,
                    mnemonic: op.mnemonic.to_string(),
                    target: op.target.to_string(),
                    worker: worker.map(|w| w.id.to_string()).unwrap_or_default(),
                    pool: pool.map(|p| p.name.to_string()).unwrap_or_default(),
                    phase: match lease.phase {
                        LeasePhase::Offered => "offered",
                        LeasePhase::Running => "running",
                        LeasePhase::Cancelling => "cancelling",
                    },
                    running_for,
                    queued_for: offered.duration_since(op.queued_at).unwrap_or_default(),
                })
            })
            .collect();
        let running_total = running.len();
        running.sort_by_key(|a| std::cmp::Reverse(a.running_for));
        running.truncate(MAX_RUNNING_LISTED);
        ClusterStatus {
            scheduler_id: self.id.to_string(),
            taken_at: SystemTime::now(),
            schedulers: Vec::new(),
            workers,
            pools,
            queued: state.queued,
            active: state.active.len(),
            running,
            running_total,
            failures: state.failures.newest_first(),
            cache: Default::default(),
        }
    }
}
