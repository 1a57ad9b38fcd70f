//! Simulated workers speaking the cluster protocol
//! (`reapi.cluster.v1.WorkerLink`) to a scheduler: each links with a pool
//! of executors, takes every lease it is offered and finishes it at once
//! (accept, an empty successful result, a fresh report), so what is
//! measured is the scheduler's dispatch, not any execution. Every offer's
//! queue-to-start latency (arrival less the offer's `queued_at`) is
//! recorded. Each sends a report every second, as a real worker does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use hdrhistogram::Histogram;
use reapi_core::cluster::messages::{
    scheduler_message, ExecutorGroup, LeaseAnswer, LeaseResult, StateReport,
};
use reapi_core::cluster::service::WorkerLinkClient;
use reapi_core::cluster::WorkerMessage;
use reapi_core::proto::remote_execution::{platform, ActionResult, Platform};
use reapi_core::proto::time;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::stats::{new_histogram, record};

/// What every simulated worker shares with the scenario.
pub struct Shared {
    /// Leases finished.
    pub finished: AtomicU64,
    /// Workers welcomed by the scheduler.
    pub linked: AtomicU64,
    /// Whether workers report free executors (false: they hold still).
    open: AtomicBool,
    latency: Mutex<Histogram<u64>>,
    senders: Mutex<Vec<mpsc::UnboundedSender<WorkerMessage>>>,
    executors: u32,
}

impl Shared {
    /// Queue-to-start latencies recorded since the last call.
    pub fn take_latency(&self) -> Histogram<u64> {
        let mut h = self.latency.lock().expect("latency lock");
        std::mem::replace(&mut *h, new_histogram())
    }

    /// Lets every worker report its executors free (and so take leases).
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        let senders = self.senders.lock().expect("senders lock");
        for (i, tx) in senders.iter().enumerate() {
            let _ = tx.send(report(i, self.executors, self.executors, 0));
        }
    }

    fn free(&self) -> u32 {
        if self.open.load(Ordering::SeqCst) {
            self.executors
        } else {
            0
        }
    }
}

fn worker_id(index: usize) -> String {
    format!("simulated-{index}")
}

fn report(index: usize, executors: u32, free: u32, last_offer_seen: u64) -> WorkerMessage {
    WorkerMessage::report(StateReport {
        worker_id: worker_id(index),
        pools: vec![ExecutorGroup {
            properties: Some(Platform {
                properties: vec![platform::Property {
                    name: "OSFamily".into(),
                    value: "linux".into(),
                }],
            }),
            executors,
            free,
        }],
        last_offer_seen,
        ..Default::default()
    })
}

/// Links `workers` simulated workers of `executors` executors each, over
/// `channels`, initially reporting no free executor.
pub async fn start(
    channels: &[Channel],
    workers: usize,
    executors: u32,
) -> Result<Arc<Shared>, String> {
    let shared = Arc::new(Shared {
        finished: AtomicU64::new(0),
        linked: AtomicU64::new(0),
        open: AtomicBool::new(false),
        latency: Mutex::new(new_histogram()),
        senders: Mutex::new(Vec::new()),
        executors,
    });
    for index in 0..workers {
        let channel = channels[index % channels.len()].clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(report(index, executors, 0, 0));
        shared
            .senders
            .lock()
            .expect("senders lock")
            .push(tx.clone());
        let mut inbound = WorkerLinkClient::new(channel)
            .connect(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| format!("WorkerLink.Connect: {}: {}", s.code(), s.message()))?;
        // Heartbeats: a report every second, so the scheduler does not
        // declare a worker that holds still dead. The last offer seen is
        // raised only after that offer's result is queued, so no report
        // can make the scheduler think a lease was lost.
        let last_seen = Arc::new(AtomicU64::new(0));
        {
            let (shared, tx, last_seen) = (shared.clone(), tx.clone(), last_seen.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let beat = report(
                        index,
                        shared.executors,
                        shared.free(),
                        last_seen.load(Ordering::SeqCst),
                    );
                    if tx.send(beat).is_err() {
                        return;
                    }
                }
            });
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = inbound.next().await {
                match message.kind {
                    Some(scheduler_message::Kind::Welcome(_)) => {
                        shared.linked.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(scheduler_message::Kind::Offer(offer)) => {
                        if let Some(queued) = offer.queued_at.as_ref().and_then(time::system_time) {
                            let waited = SystemTime::now()
                                .duration_since(queued)
                                .unwrap_or(Duration::ZERO);
                            let mut h = shared.latency.lock().expect("latency lock");
                            record(&mut h, waited.as_nanos() as u64);
                        }
                        let _ = tx.send(WorkerMessage::answer(LeaseAnswer {
                            lease_id: offer.lease_id,
                            accepted: true,
                            reason: String::new(),
                        }));
                        let _ = tx.send(WorkerMessage::result(LeaseResult {
                            lease_id: offer.lease_id,
                            result: Some(ActionResult::default()),
                            ..Default::default()
                        }));
                        last_seen.store(offer.lease_id, Ordering::SeqCst);
                        let _ = tx.send(report(
                            index,
                            shared.executors,
                            shared.free(),
                            offer.lease_id,
                        ));
                        shared.finished.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        });
    }
    Ok(shared)
}
