//! The worker runtime: a worker offers pools of executors
//! ([`ExecutorPool`]) to every scheduler it is linked to, takes the leases
//! they offer while it has free executors, runs them, and reports each
//! run's end to the scheduler that offered it.
//!
//! - `link`: one scheduler's link, reconnected until the worker stops;
//! - `lease`: one lease's run, stopped by a cancel, the lease deadline or
//!   the loss of its link;
//! - [`discovery`]: links to every scheduler a member list resolves to;
//! - [`worker_id`]: the stable id kept in the data directory;
//! - [`GrpcSchedulerConnector`]: the link to a scheduler in another process.
//!
//! The worker's state report is built and sent under the same lock that
//! admits and ends leases, so every report a scheduler reads agrees with
//! the answers and results sent before it on the same link (see
//! docs/adr/0006).

pub mod discovery;
mod grpc_connector;
mod lease;
mod link;
pub mod worker_id;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reapi_core::cluster::messages::{ExecutorGroup, StateReport, StorageMember};
use reapi_core::cluster::placement::{publish, Placement, PlacementSender};
use reapi_core::cluster::{SchedulerConnector, WorkerMessage};
use reapi_core::execution::ExecutorPool;
use reapi_core::proto::remote_execution::Platform;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

pub use grpc_connector::GrpcSchedulerConnector;

/// How a [`Worker`] is set up.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Stable across restarts ([`worker_id::load_or_create`]).
    pub id: String,
    /// Where the worker serves blobs, if it does (`host:port`).
    pub address: String,
    /// Bytes of its disk given to the cluster CAS (0: it holds no
    /// replicas); needs `address`.
    pub replica_space: u64,
    /// Where the cluster CAS's members, as the schedulers tell them, are
    /// published (the union of every linked scheduler's list).
    pub placement: Option<PlacementSender>,
    /// How often a state report is sent until a scheduler's welcome says
    /// otherwise.
    pub heartbeat_interval: Duration,
    /// Wait between attempts to reach a scheduler.
    pub reconnect_delay: Duration,
}

impl WorkerConfig {
    pub fn new(id: impl Into<String>) -> Self {
        WorkerConfig {
            id: id.into(),
            address: String::new(),
            replica_space: 0,
            placement: None,
            heartbeat_interval: Duration::from_secs(2),
            reconnect_delay: Duration::from_secs(1),
        }
    }
}

/// How long a draining worker with replica space waits for its schedulers
/// to take it out of the cluster CAS's members (one round trip each).
const MEMBERS_WAIT: Duration = Duration::from_secs(5);

/// Names one link of this worker for its lifetime.
type LinkId = u64;

/// A running worker; clones share it.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorkerConfig,
    pools: Vec<Arc<dyn ExecutorPool>>,
    /// Each pool's properties as reported (they never change).
    platforms: Vec<Platform>,
    state: Mutex<State>,
    /// No new leases: the worker is shutting down.
    draining: AtomicBool,
    /// Past draining: running leases are abandoned, not reported.
    closing: AtomicBool,
    /// Signalled whenever a lease ends.
    lease_ended: Notify,
    /// True once every link should end.
    shutdown: watch::Sender<bool>,
    link_tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    links: HashMap<LinkId, Link>,
    leases: HashMap<(LinkId, u64), RunningLease>,
    next_link: LinkId,
}

struct Link {
    target: String,
    outbound: mpsc::UnboundedSender<WorkerMessage>,
    /// The highest lease id this link's scheduler offered that the worker
    /// has handled.
    last_offer_seen: u64,
    /// The scheduler accepted the worker's first report.
    welcomed: bool,
    /// The cluster CAS's members as this scheduler last told them.
    storage_members: Vec<StorageMember>,
}

struct RunningLease {
    /// Stops the run, with the reason.
    cancel: Option<oneshot::Sender<String>>,
}

/// Stops one link (and keeps it from reconnecting).
pub struct LinkHandle {
    stop: watch::Sender<bool>,
}

impl LinkHandle {
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Leases still running when the grace period ran out (abandoned:
    /// their schedulers run them elsewhere).
    pub abandoned: usize,
}

impl Worker {
    pub fn new(config: WorkerConfig, pools: Vec<Arc<dyn ExecutorPool>>) -> Worker {
        let platforms = pools.iter().map(|p| p.properties().to_platform()).collect();
        let (shutdown, _) = watch::channel(false);
        Worker {
            inner: Arc::new(Inner {
                config,
                pools,
                platforms,
                state: Mutex::new(State::default()),
                draining: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                lease_ended: Notify::new(),
                shutdown,
                link_tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    /// Keeps a link to the scheduler `connector` reaches, reconnecting
    /// whenever it breaks, until the handle is stopped or the worker shuts
    /// down. Dropping the handle leaves the link up.
    pub fn connect(&self, connector: Arc<dyn SchedulerConnector>) -> LinkHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(link::run_link(self.inner.clone(), connector, stopped));
        self.inner.link_tasks.lock().push(task);
        LinkHandle { stop }
    }

    /// Leases running now.
    pub fn running(&self) -> usize {
        self.inner.state.lock().leases.len()
    }

    /// Schedulers that accepted this worker (welcomed it) on links up now.
    pub fn linked(&self) -> usize {
        self.inner
            .state
            .lock()
            .links
            .values()
            .filter(|link| link.welcomed)
            .count()
    }

    /// Stops taking leases, waits up to `grace` for the running ones to
    /// finish and be reported, says goodbye to every scheduler and ends the
    /// links. Leases still running after `grace` are killed and left to
    /// their schedulers to run elsewhere.
    pub async fn drain(&self, grace: Duration) -> DrainOutcome {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        inner.send_reports();
        tracing::info!(running = self.running(), ?grace, "draining: no new leases");
        let deadline = tokio::time::Instant::now() + grace;
        inner
            .wait_out_of_placement(deadline.min(tokio::time::Instant::now() + MEMBERS_WAIT))
            .await;
        loop {
            let ended = inner.lease_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if inner.state.lock().leases.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                break;
            }
        }
        let abandoned = {
            let mut state = inner.state.lock();
            let abandoned = state.leases.len();
            if abandoned > 0 {
                inner.closing.store(true, Ordering::SeqCst);
                for lease in state.leases.values_mut() {
                    if let Some(cancel) = lease.cancel.take() {
                        let _ = cancel.send("the worker shut down".into());
                    }
                }
            } else {
                for link in state.links.values() {
                    let _ = link
                        .outbound
                        .send(WorkerMessage::goodbye("the worker drained"));
                }
            }
            abandoned
        };
        self.stop_links().await;
        if abandoned > 0 {
            tracing::warn!(abandoned, "grace period over; running leases abandoned");
        } else {
            tracing::info!("drained: every lease finished and was reported");
        }
        DrainOutcome { abandoned }
    }

    /// Ends every link at once; running leases are killed unreported
    /// (their schedulers run them elsewhere).
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        inner.closing.store(true, Ordering::SeqCst);
        {
            let mut state = inner.state.lock();
            let idle = state.leases.is_empty();
            for lease in state.leases.values_mut() {
                if let Some(cancel) = lease.cancel.take() {
                    let _ = cancel.send("the worker shut down".into());
                }
            }
            if idle {
                for link in state.links.values() {
                    let _ = link
                        .outbound
                        .send(WorkerMessage::goodbye("the worker stopped"));
                }
            }
        }
        self.stop_links().await;
    }

    async fn stop_links(&self) {
        self.inner.shutdown.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.link_tasks.lock());
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Inner {
    /// Publishes the union of the storage members every link reported.
    fn publish_placement(&self, state: &State) {
        let Some(sender) = &self.config.placement else {
            return;
        };
        let placement = Placement::new(state.links.values().flat_map(|l| &l.storage_members));
        publish(sender, placement, "cluster CAS members");
    }

    /// A draining worker with replica space hands its share off to the
    /// members it knows once it is gone. Its schedulers take it out of the
    /// members when they read its draining report, and may take out
    /// others draining at the same time: waits (until `deadline`) for the
    /// list they send back, in which it is no member any more, so the
    /// hand-off goes to the members that stay.
    async fn wait_out_of_placement(&self, deadline: tokio::time::Instant) {
        let Some(sender) = &self.config.placement else {
            return;
        };
        if self.config.replica_space == 0 {
            return;
        }
        let id = self.config.id.as_str();
        let mut members = sender.subscribe();
        let left = members.wait_for(|placement| !placement.contains(id));
        if tokio::time::timeout_at(deadline, left).await.is_err() {
            tracing::warn!(
                "the schedulers still list this worker as a cluster CAS member; \
                 its share goes to the members known"
            );
        }
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The report for one link; built under the state lock, so it agrees
    /// with every answer and result already sent on the link.
    fn report(&self, state: &State, link: LinkId) -> WorkerMessage {
        let last_offer_seen = state.links.get(&link).map_or(0, |l| l.last_offer_seen);
        let running_leases = state
            .leases
            .keys()
            .filter(|(l, _)| *l == link)
            .map(|(_, lease)| *lease)
            .collect();
        WorkerMessage::report(StateReport {
            worker_id: self.config.id.clone(),
            address: self.config.address.clone(),
            pools: self
                .pools
                .iter()
                .zip(&self.platforms)
                .map(|(pool, platform)| ExecutorGroup {
                    properties: Some(platform.clone()),
                    executors: pool.capacity() as u32,
                    free: pool.free() as u32,
                })
                .collect(),
            running_leases,
            last_offer_seen,
            draining: self.is_draining(),
            replica_space: self.config.replica_space,
        })
    }

    fn send_report(&self, link: LinkId) {
        let state = self.state.lock();
        if let Some(entry) = state.links.get(&link) {
            let _ = entry.outbound.send(self.report(&state, link));
        }
    }

    /// A report to every scheduler: an executor freed up, or the worker
    /// started draining.
    fn send_reports(&self) {
        let state = self.state.lock();
        self.send_reports_locked(&state);
    }

    fn send_reports_locked(&self, state: &State) {
        for (link, entry) in &state.links {
            let _ = entry.outbound.send(self.report(state, *link));
        }
    }

    /// Registers a link about to connect and queues its first report.
    fn add_link(&self, target: &str, outbound: mpsc::UnboundedSender<WorkerMessage>) -> LinkId {
        let mut state = self.state.lock();
        state.next_link += 1;
        let link = state.next_link;
        state.links.insert(
            link,
            Link {
                target: target.to_string(),
                outbound,
                last_offer_seen: 0,
                welcomed: false,
                storage_members: Vec::new(),
            },
        );
        let first = self.report(&state, link);
        let _ = state.links[&link].outbound.send(first);
        link
    }

    /// Forgets a link that ended; the runs of its leases are stopped (its
    /// scheduler runs them elsewhere).
    fn remove_link(&self, link: LinkId) {
        let mut state = self.state.lock();
        let Some(entry) = state.links.remove(&link) else {
            return;
        };
        // A link this worker closes because it stops says nothing about the
        // members: the last list stays, for the hand-off of its share.
        if !entry.storage_members.is_empty() && !*self.shutdown.borrow() {
            self.publish_placement(&state);
        }
        let mut stopped = 0;
        for ((lease_link, _), lease) in state.leases.iter_mut() {
            if *lease_link == link {
                if let Some(cancel) = lease.cancel.take() {
                    let _ = cancel.send(format!("the link to scheduler {} was lost", entry.target));
                    stopped += 1;
                }
            }
        }
        if stopped > 0 {
            tracing::warn!(scheduler = %entry.target, stopped, "link lost; its runs were stopped");
        }
    }
}
