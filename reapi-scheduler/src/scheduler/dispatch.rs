//! Dispatch: while some executor class has a free pool and some queue a
//! live action that class can run, the best such action (lowest priority
//! value, then oldest) is offered to the pool with the most free
//! executors. Each step looks only at queue heads and the free-pool index:
//! its cost does not grow with the length of the queues.

use std::collections::HashSet;
use std::sync::Arc;

use reapi_core::cluster::messages::LeaseOffer;
use reapi_core::cluster::SchedulerMessage;
use reapi_core::platform::ExecutorProperties;
use reapi_core::proto::time;

use super::state::{Lease, LeasePhase, Phase, State};
use super::Scheduler;
use crate::class_queues::{ClassId, Ticket};

/// Starts the task that dispatches whenever the scheduler is woken.
pub(super) fn spawn_dispatcher(scheduler: &Arc<Scheduler>) {
    let weak = Arc::downgrade(scheduler);
    let wake = scheduler.wake.clone();
    tokio::spawn(async move {
        loop {
            // Registered before dispatching, so a wake-up during the
            // dispatch is not lost.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match weak.upgrade() {
                Some(scheduler) => scheduler.dispatch(),
                None => return,
            }
            woken.await;
        }
    });
}

/// The best pairing found in one step.
struct Choice {
    priority: i32,
    seq: u64,
    class: ClassId,
    properties: ExecutorProperties,
}

impl Scheduler {
    /// Offers queued actions to free executors until either runs out.
    pub(super) fn dispatch(&self) {
        let mut state = self.state.lock();
        // (executor class, queue class) pairs where no pool had the CPUs or
        // memory free: skipped for the rest of this round.
        let mut blocked: HashSet<(ExecutorProperties, ClassId)> = HashSet::new();
        while state.queued > 0 {
            let Some(choice) = best_pairing(&mut state, &blocked) else {
                break;
            };
            if !self.offer(&mut state, &choice) {
                blocked.insert((choice.properties, choice.class));
            }
        }
    }

    /// Offers the head of `choice.class` to a free pool of
    /// `choice.properties` with room for it. False when no pool had room.
    fn offer(&self, state: &mut State, choice: &Choice) -> bool {
        let State {
            active,
            queues,
            workers,
            ..
        } = state;
        let Some(class) = queues.class_mut(choice.class) else {
            return false;
        };
        let Some(executor_class) = workers.classes.get(&choice.properties) else {
            return false;
        };
        let live = |t: &Ticket| is_live(active, t);
        let Some((_, head)) = class.queue.peek(live) else {
            return false;
        };
        let head = *head;
        let Some(op) = active.get(&head.op) else {
            return false;
        };
        // The pool with the most free executors whose ledger has room.
        let mut target = None;
        for &(_, conn, pool) in &executor_class.free {
            let Some(worker) = workers.by_conn.get(&conn) else {
                continue;
            };
            let Some(entry) = worker.pools.get(pool as usize) else {
                continue;
            };
            if let Some(reservation) = entry.ledger.try_reserve(&op.action.requirements) {
                target = Some((conn, pool, entry.free, reservation));
                break;
            }
        }
        let Some((conn, pool, free, reservation)) = target else {
            return false;
        };
        let popped = class.queue.pop(|t| is_live(active, t));
        debug_assert_eq!(popped, Some(head));
        queues.forget_if_empty(choice.class);

        let lease_id = state.next_lease_id();
        let op = state.active.get(&head.op).expect("the head is live");
        let op_digest = op.action.action_digest;
        let queued_at = op.queued_at;
        let offer = LeaseOffer {
            lease_id,
            pool,
            instance_name: op.action.instance_name.clone(),
            action_digest: Some(op.action.action_digest.to_proto()),
            action: Some(op.action.action.clone()),
            command: Some(op.action.command.clone()),
            timeout: Some(time::to_proto_duration(op.action.timeout)),
            queued_at: Some(time::timestamp(op.queued_at)),
            deadline: Some(time::timestamp(self.lease_deadline(op.action.timeout))),
            digest_function: op.action.action_digest.function().proto_value(),
        };
        state.set_phase(head.op, Phase::Leased(lease_id));
        state.leases.insert(
            lease_id,
            Lease {
                op: head.op,
                conn,
                pool,
                phase: LeasePhase::Offered,
                offered_at: std::time::Instant::now(),
                _reservation: Some(reservation),
            },
        );
        state.workers.set_free(conn, pool, free - 1);
        if let Some(worker) = state.workers.by_conn.get(&conn) {
            if let Some(offered) = worker.pools.get(pool as usize) {
                let waited = std::time::SystemTime::now()
                    .duration_since(queued_at)
                    .unwrap_or_default();
                crate::metrics::observe_queue_time(offered.name.to_string(), waited);
            }
            if let Some(op) = state.active.get_mut(&head.op) {
                op.worker = Some(worker.id.clone());
            }
        }
        if let Some(worker) = state.workers.by_conn.get_mut(&conn) {
            tracing::debug!(worker = %worker.id, lease = lease_id, action = %op_digest, "lease offered");
            worker.leases.insert(lease_id);
            worker.send(SchedulerMessage::offer(offer));
        }
        true
    }
}

fn is_live(
    active: &std::collections::HashMap<
        crate::operation::OperationId,
        super::state::ActiveOperation,
    >,
    ticket: &Ticket,
) -> bool {
    active
        .get(&ticket.op)
        .is_some_and(|op| op.phase == Phase::Queued { seq: ticket.seq })
}

/// The executor class with a free pool and the queue class whose head it
/// can run that come first: lowest priority value, then oldest ticket.
fn best_pairing(
    state: &mut State,
    blocked: &HashSet<(ExecutorProperties, ClassId)>,
) -> Option<Choice> {
    let State {
        active,
        queues,
        workers,
        ..
    } = state;
    let mut best: Option<Choice> = None;
    let mut emptied = Vec::new();
    for (class_id, class) in queues.classes_mut() {
        let Some((priority, head)) = class.queue.peek(|t| is_live(active, t)) else {
            emptied.push(class_id);
            continue;
        };
        let (priority, seq) = (priority, head.seq);
        if best
            .as_ref()
            .is_some_and(|b| (b.priority, b.seq) <= (priority, seq))
        {
            continue;
        }
        let runnable = workers.classes.iter().find(|(properties, executors)| {
            !executors.free.is_empty()
                && properties.satisfies(&class.requirements)
                && !blocked.contains(&((*properties).clone(), class_id))
        });
        if let Some((properties, _)) = runnable {
            best = Some(Choice {
                priority,
                seq,
                class: class_id,
                properties: properties.clone(),
            });
        }
    }
    for class_id in emptied {
        queues.forget_if_empty(class_id);
    }
    best
}
