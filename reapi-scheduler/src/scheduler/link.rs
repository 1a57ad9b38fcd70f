//! One worker's link, whatever carries it (a gRPC stream from a remote
//! worker, channels from the in-process one): the first message must be a
//! state report, which registers the worker; then reports, answers and
//! results are applied as they come. When the link ends (the stream broke,
//! the worker said goodbye, or the watchdog declared it dead) the worker is
//! removed and the leases it held go back to the queue.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use reapi_core::cluster::messages::{worker_message, StateReport, Welcome};
use reapi_core::cluster::service::SchedulerMessageStream;
use reapi_core::cluster::{SchedulerMessage, WorkerMessage};
use reapi_core::proto::time;
use reapi_core::Error;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

use super::leases::worker_name;
use super::state::State;
use super::Scheduler;
use crate::workers::{check_report, ConnId};

pub type WorkerMessages = Pin<Box<dyn Stream<Item = Result<WorkerMessage, Status>> + Send>>;

impl Scheduler {
    /// Serves one worker's link: `inbound` is what the worker sends; the
    /// returned stream is what the scheduler sends back. Remote workers
    /// (the `WorkerLink` gRPC service) and the in-process worker both come
    /// through here.
    pub fn serve_link(self: &Arc<Self>, inbound: WorkerMessages) -> SchedulerMessageStream {
        let (outbound, rx) = mpsc::unbounded_channel();
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.run_link(inbound, outbound).await });
        Box::pin(UnboundedReceiverStream::new(rx))
    }

    async fn run_link(
        self: Arc<Self>,
        mut inbound: WorkerMessages,
        outbound: crate::workers::Outbound,
    ) {
        let first = tokio::time::timeout(self.config.heartbeat_timeout, inbound.next()).await;
        let report = match first {
            Ok(Some(Ok(WorkerMessage {
                kind: Some(worker_message::Kind::Report(report)),
            }))) => report,
            Ok(Some(Ok(_))) => {
                let _ = outbound.send(Err(Status::invalid_argument(
                    "the first message on a worker link must be a state report",
                )));
                return;
            }
            Ok(Some(Err(status))) => {
                tracing::debug!(%status, "worker link failed before registering");
                return;
            }
            Ok(None) => return,
            Err(_) => {
                let _ = outbound.send(Err(Status::deadline_exceeded(
                    "no state report within the heartbeat timeout",
                )));
                return;
            }
        };
        let closed = Arc::new(Notify::new());
        let conn = match self.register(&report, outbound.clone(), closed.clone()) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(worker = %report.worker_id, error = %e, "worker refused");
                let _ = outbound.send(Err(e.into()));
                return;
            }
        };
        drop(outbound);
        let why = loop {
            tokio::select! {
                _ = closed.notified() => break None,
                message = inbound.next() => match message {
                    Some(Ok(message)) => self.on_message(conn, message),
                    Some(Err(status)) => break Some(format!("its stream failed: {}", status.message())),
                    None => break Some("its stream ended".to_string()),
                },
            }
        };
        if let Some(why) = why {
            self.remove_worker(conn, &why);
        }
    }

    /// Registers a worker from its first report. A newer link of the same
    /// worker replaces the old one, whose leases are lost.
    fn register(
        &self,
        report: &StateReport,
        outbound: crate::workers::Outbound,
        closed: Arc<Notify>,
    ) -> Result<ConnId, Error> {
        let pools = check_report(report)?;
        let mut state = self.state.lock();
        if let Some(old) = state.workers.by_id.get(&report.worker_id).copied() {
            self.remove_worker_locked(&mut state, old, "it connected again");
        }
        let summary: Vec<String> = pools
            .iter()
            .map(|p| format!("{} x [{}]", p.capacity, p.properties))
            .collect();
        // The welcome goes out first, under the lock: nothing the scheduler
        // says about this link (notices, cancels, offers) can overtake it.
        let _ = outbound.send(Ok(SchedulerMessage::welcome(Welcome {
            scheduler_id: self.id.to_string(),
            heartbeat_interval: Some(time::to_proto_duration(self.config.heartbeat_interval)),
            heartbeat_timeout: Some(time::to_proto_duration(self.config.heartbeat_timeout)),
        })));
        let conn = state.workers.add(report, pools, outbound, closed);
        tracing::info!(worker = %report.worker_id, address = %report.address, pools = %summary.join(", "), "worker joined");
        // Leases it says it runs are not ours: this is a new link.
        self.reconcile(&mut state, conn, report);
        drop(state);
        self.wake.notify_one();
        Ok(conn)
    }

    fn on_message(self: &Arc<Self>, conn: ConnId, message: WorkerMessage) {
        if let Some(worker) = self.state.lock().workers.by_conn.get_mut(&conn) {
            worker.last_heard = std::time::Instant::now();
        }
        match message.kind {
            Some(worker_message::Kind::Report(report)) => self.on_report(conn, report),
            Some(worker_message::Kind::Answer(answer)) => self.on_answer(conn, answer),
            Some(worker_message::Kind::Result(result)) => self.on_result(conn, result),
            Some(worker_message::Kind::Goodbye(goodbye)) => {
                let mut state = self.state.lock();
                state.workers.set_leaving(conn);
                if let Some(worker) = state.workers.by_conn.get(&conn) {
                    tracing::info!(worker = %worker.id, reason = %goodbye.reason, "worker is leaving");
                }
            }
            None => self.notice(
                conn,
                0,
                Error::invalid_argument("worker message has no kind"),
            ),
        }
    }

    fn on_report(&self, conn: ConnId, report: StateReport) {
        let pools = match check_report(&report) {
            Ok(pools) => pools,
            Err(e) => return self.notice(conn, 0, e.context("state report ignored")),
        };
        let mut state = self.state.lock();
        let Some(worker) = state.workers.by_conn.get(&conn) else {
            return;
        };
        let same_pools = *worker.id == *report.worker_id
            && worker.pools.len() == pools.len()
            && worker
                .pools
                .iter()
                .zip(&pools)
                .all(|(a, b)| a.properties == b.properties && a.capacity == b.capacity);
        if !same_pools {
            let error = Error::invalid_argument(format!(
                "state report of worker {} changes its id or pools; reconnect to change them; report ignored",
                worker.id
            ));
            drop(state);
            return self.notice(conn, 0, error);
        }
        state.workers.set_draining(conn, report.draining);
        self.reconcile(&mut state, conn, &report);
        drop(state);
        self.wake.notify_one();
    }

    /// Brings the leases of a worker in line with its report: leases it
    /// has handled but no longer runs are lost; leases it runs that it does
    /// not hold from us are cancelled; free executors are what it reports
    /// less the offers it had not seen yet.
    fn reconcile(&self, state: &mut State, conn: ConnId, report: &StateReport) {
        let running: HashSet<u64> = report.running_leases.iter().copied().collect();
        let held: Vec<u64> = match state.workers.by_conn.get(&conn) {
            Some(worker) => worker.leases.iter().copied().collect(),
            None => return,
        };
        for lease_id in held {
            if lease_id <= report.last_offer_seen && !running.contains(&lease_id) {
                let why = format!(
                    "{} no longer runs lease {lease_id}",
                    worker_name(state, conn)
                );
                self.lease_lost(state, lease_id, &why);
            }
        }
        for lease_id in &running {
            let ours = state
                .leases
                .get(lease_id)
                .is_some_and(|lease| lease.conn == conn);
            if !ours {
                let worker = worker_name(state, conn);
                let error = Error::failed_precondition(format!(
                    "{worker} runs lease {lease_id}, which it does not hold from scheduler {}; stop it",
                    self.id
                ));
                tracing::warn!("{error}");
                if let Some(worker) = state.workers.by_conn.get(&conn) {
                    worker.send(SchedulerMessage::notice(*lease_id, &error));
                    worker.send(SchedulerMessage::cancel(
                        *lease_id,
                        "the lease is not held by this worker",
                    ));
                }
            }
        }
        let mut unseen = vec![0u32; report.pools.len()];
        if let Some(worker) = state.workers.by_conn.get(&conn) {
            for lease_id in &worker.leases {
                let Some(lease) = state.leases.get(lease_id) else {
                    continue;
                };
                if *lease_id > report.last_offer_seen {
                    if let Some(count) = unseen.get_mut(lease.pool as usize) {
                        *count += 1;
                    }
                }
            }
        }
        for (pool, group) in report.pools.iter().enumerate() {
            state
                .workers
                .set_free(conn, pool as u32, group.free.saturating_sub(unseen[pool]));
        }
    }

    /// Tells a worker that something it sent was refused.
    fn notice(&self, conn: ConnId, lease_id: u64, error: Error) {
        let state = self.state.lock();
        if let Some(worker) = state.workers.by_conn.get(&conn) {
            tracing::warn!(worker = %worker.id, error = %error, "bad message from worker");
            worker.send(SchedulerMessage::notice(lease_id, &error));
        }
    }

    /// Removes a worker whose link ended; its leases are lost.
    pub(super) fn remove_worker(&self, conn: ConnId, why: &str) {
        let mut state = self.state.lock();
        self.remove_worker_locked(&mut state, conn, why);
        drop(state);
        self.wake.notify_one();
    }

    pub(super) fn remove_worker_locked(&self, state: &mut State, conn: ConnId, why: &str) {
        let Some(worker) = state.workers.by_conn.get(&conn) else {
            return;
        };
        let (id, leaving) = (worker.id.clone(), worker.leaving);
        worker.closed.notify_one();
        let leases: Vec<u64> = worker.leases.iter().copied().collect();
        let lost_why = format!("worker {id} was lost: {why}");
        for lease_id in &leases {
            self.lease_lost(state, *lease_id, &lost_why);
        }
        state.workers.remove(conn);
        if leaving && leases.is_empty() {
            tracing::info!(worker = %id, "worker left cleanly");
        } else if leases.is_empty() {
            tracing::info!(worker = %id, reason = why, "worker disconnected");
        } else {
            tracing::warn!(worker = %id, leases = leases.len(), reason = why, "worker lost; its leases were requeued");
        }
    }
}
