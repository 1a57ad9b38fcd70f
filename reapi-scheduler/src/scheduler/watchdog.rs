//! The scheduler's periodic checks: a worker silent for longer than the
//! heartbeat timeout is dead (its leases go back to the queue); an
//! operation no client has watched for the orphan timeout is cancelled
//! (its client is gone, and a running action would only waste an
//! executor); finished operations past their retention are forgotten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reapi_core::Error;

use super::Scheduler;

/// Orphans are looked for every this many rounds.
const ORPHAN_ROUNDS: u64 = 4;

/// Starts the watchdog task; it ends with the scheduler.
pub(super) fn spawn_watchdog(scheduler: &Arc<Scheduler>) {
    let weak = Arc::downgrade(scheduler);
    let period = (scheduler.config.heartbeat_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tick.tick().await;
            let Some(scheduler) = weak.upgrade() else {
                return;
            };
            scheduler.check_workers();
            // Walks every active operation: less often than the workers.
            if round % ORPHAN_ROUNDS == 0 {
                scheduler.check_orphans();
            }
        }
    });
}

impl Scheduler {
    fn check_workers(&self) {
        let now = Instant::now();
        let timeout = self.config.heartbeat_timeout;
        let mut state = self.state.lock();
        let silent: Vec<(u64, Duration)> = state
            .workers
            .by_conn
            .iter()
            .filter_map(|(conn, worker)| {
                let quiet = now.duration_since(worker.last_heard);
                (quiet > timeout).then_some((*conn, quiet))
            })
            .collect();
        for (conn, quiet) in &silent {
            let why = format!("no message for {:.1}s", quiet.as_secs_f64());
            self.remove_worker_locked(&mut state, *conn, &why);
        }
        drop(state);
        if !silent.is_empty() {
            self.wake.notify_one();
        }
    }

    fn check_orphans(&self) {
        let now = Instant::now();
        let timeout = self.config.orphan_timeout;
        let mut state = self.state.lock();
        let mut orphans = Vec::new();
        for (id, op) in state.active.iter_mut() {
            if op.progress.receiver_count() > 0 {
                op.orphaned_since = None;
                continue;
            }
            let since = *op.orphaned_since.get_or_insert(now);
            if now.duration_since(since) >= timeout {
                orphans.push(*id);
            }
        }
        for id in &orphans {
            tracing::info!(operation = %id.name(&self.id), "no client waits for the operation; cancelling it");
            self.cancel_locked(
                &mut state,
                *id,
                Error::cancelled(format!(
                    "no client watched the operation for {timeout:?}; cancelled"
                )),
            );
        }
        self.expire_completed(&mut state);
        drop(state);
        if !orphans.is_empty() {
            self.wake.notify_one();
        }
    }
}
