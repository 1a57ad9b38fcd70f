//! One scheduler's link, kept up until it is stopped: connect, send the
//! first report, then answer offers and cancels and send a report every
//! heartbeat interval. When the link breaks, the runs of its leases are
//! stopped (the scheduler has already given them to others) and the link
//! is made again after a pause.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reapi_core::cluster::messages::scheduler_message;
use reapi_core::cluster::{SchedulerConnector, SchedulerMessage};
use reapi_core::proto::time;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Inner, LinkId};

/// The shortest heartbeat interval a scheduler may ask for.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// How long a stopping worker waits for a scheduler to read its last
/// messages and close the link.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run_link(
    inner: Arc<Inner>,
    connector: Arc<dyn SchedulerConnector>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let target = connector.target().to_string();
    let mut failures = 0u32;
    loop {
        if *stopped.borrow() || *shutdown.borrow() {
            return;
        }
        let (outbound, rx) = mpsc::unbounded_channel();
        let link = inner.add_link(&target, outbound);
        match connector
            .connect(Box::pin(UnboundedReceiverStream::new(rx)))
            .await
        {
            Err(e) => {
                inner.remove_link(link);
                failures += 1;
                if failures == 1 {
                    tracing::warn!(scheduler = %target, error = %e, "cannot reach scheduler; retrying");
                } else {
                    tracing::debug!(scheduler = %target, error = %e, "cannot reach scheduler");
                }
            }
            Ok(mut inbound) => {
                failures = 0;
                let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
                tick.reset();
                let why = loop {
                    tokio::select! {
                        message = inbound.next() => match message {
                            Some(Ok(message)) => {
                                if let Some(interval) = inner.on_message(link, message) {
                                    tick = tokio::time::interval(interval);
                                    tick.reset();
                                }
                            }
                            Some(Err(status)) => break format!("{}: {}", status.code(), status.message()),
                            None => break "the scheduler ended it".to_string(),
                        },
                        _ = tick.tick() => inner.send_report(link),
                        _ = raised(&mut stopped) => break "stopped".to_string(),
                        _ = raised(&mut shutdown) => break "the worker stopped".to_string(),
                    }
                };
                inner.remove_link(link);
                if *stopped.borrow() || *shutdown.borrow() {
                    // The last results and the goodbye may still be queued:
                    // with the link's sender gone, the request stream ends
                    // after them. The scheduler ends its side once it has
                    // read them; dropping the call before then would lose
                    // them, and their actions would run again elsewhere.
                    let flushed = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Some(Ok(_)) = inbound.next().await {}
                    })
                    .await;
                    if flushed.is_err() {
                        tracing::warn!(scheduler = %target, timeout = ?CLOSE_TIMEOUT, "the scheduler did not close the link in time");
                    }
                    tracing::info!(scheduler = %target, "link closed");
                    return;
                }
                tracing::warn!(scheduler = %target, reason = %why, "link to scheduler lost; reconnecting");
            }
        }
        let pause = inner.config.reconnect_delay * failures.clamp(1, 5);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = raised(&mut stopped) => {}
            _ = raised(&mut shutdown) => {}
        }
    }
}

/// Resolves once `flag` is true. A flag whose sender is gone can no longer
/// be raised: this then never resolves (a dropped `LinkHandle` leaves its
/// link running).
pub(super) async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Inner {
    /// Applies one message from a scheduler; returns a new heartbeat
    /// interval when the scheduler set one.
    pub(super) fn on_message(
        self: &Arc<Self>,
        link: LinkId,
        message: SchedulerMessage,
    ) -> Option<Duration> {
        match message.kind {
            Some(scheduler_message::Kind::Welcome(welcome)) => {
                if let Some(entry) = self.state.lock().links.get_mut(&link) {
                    entry.welcomed = true;
                }
                let target = self.link_target(link);
                tracing::info!(scheduler = %target, id = %welcome.scheduler_id, "linked to scheduler");
                welcome
                    .heartbeat_interval
                    .as_ref()
                    .and_then(time::duration)
                    .map(|d| d.max(MIN_HEARTBEAT))
            }
            Some(scheduler_message::Kind::Offer(offer)) => {
                self.on_offer(link, offer);
                None
            }
            Some(scheduler_message::Kind::Cancel(cancel)) => {
                let mut state = self.state.lock();
                if let Some(lease) = state.leases.get_mut(&(link, cancel.lease_id)) {
                    if let Some(stop) = lease.cancel.take() {
                        tracing::info!(lease = cancel.lease_id, reason = %cancel.reason, "lease cancelled");
                        let _ = stop.send(cancel.reason);
                    }
                }
                None
            }
            Some(scheduler_message::Kind::StorageMembers(list)) => {
                let mut state = self.state.lock();
                if let Some(entry) = state.links.get_mut(&link) {
                    entry.storage_members = list.members;
                    self.publish_placement(&state);
                }
                None
            }
            Some(scheduler_message::Kind::Notice(notice)) => {
                let status = notice.status.unwrap_or_default();
                tracing::warn!(
                    scheduler = %self.link_target(link),
                    lease = notice.lease_id,
                    code = status.code,
                    message = %status.message,
                    "the scheduler refused a message"
                );
                None
            }
            None => {
                tracing::warn!(scheduler = %self.link_target(link), "scheduler message without a kind; ignored");
                None
            }
        }
    }

    fn link_target(&self, link: LinkId) -> String {
        self.state
            .lock()
            .links
            .get(&link)
            .map_or_else(String::new, |l| l.target.clone())
    }
}
