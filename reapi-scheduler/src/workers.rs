//! The workers a scheduler knows: one entry per live link, with its pools
//! of executors, what this scheduler believes is free on each, and the
//! leases it holds. Pools of equal properties form an executor class; each
//! class keeps an ordered index of its pools with free executors, so
//! dispatch finds a free executor without walking every worker.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use reapi_core::cluster::messages::{StateReport, StorageMember};
use reapi_core::cluster::placement::{Placement, PlacementSender};
use reapi_core::cluster::SchedulerMessage;
use reapi_core::platform::ExecutorProperties;
use reapi_core::{Error, Result};
use tokio::sync::{mpsc, Notify};
use tonic::Status;

use crate::ledger::ResourceLedger;

/// Names one link (one connection of one worker) for its lifetime.
pub(crate) type ConnId = u64;
pub(crate) type LeaseId = u64;

/// Where the scheduler's messages to one worker go.
pub(crate) type Outbound = mpsc::UnboundedSender<Result<SchedulerMessage, Status>>;

pub(crate) struct WorkerPool {
    pub properties: ExecutorProperties,
    /// The properties as text, made once: the pool's label in metrics and
    /// on the status page.
    pub name: Arc<str>,
    pub capacity: u32,
    /// Executors this scheduler may still offer leases on.
    pub free: u32,
    /// The CPUs and memory this scheduler's leases hold on the pool.
    pub ledger: ResourceLedger,
}

pub(crate) struct Worker {
    pub id: Arc<str>,
    /// Where it serves blobs, if it does.
    pub address: String,
    /// Bytes it gives to the cluster CAS; 0: it holds no replicas.
    pub replica_space: u64,
    pub outbound: Outbound,
    pub pools: Vec<WorkerPool>,
    pub leases: HashSet<LeaseId>,
    pub last_heard: Instant,
    pub draining: bool,
    /// Said goodbye: its stream ending is a clean departure.
    pub leaving: bool,
    /// Tells the link's task to stop reading (the worker was declared dead
    /// or replaced by a newer link).
    pub closed: Arc<Notify>,
}

impl Worker {
    pub fn send(&self, message: SchedulerMessage) {
        // A closed channel means the link is ending; its end removes the
        // worker and requeues what it held.
        let _ = self.outbound.send(Ok(message));
    }
}

/// Pools with equal properties, across workers.
#[derive(Default)]
pub(crate) struct ExecutorClass {
    /// Pools of live workers in this class.
    pub pools: usize,
    /// Pools with free executors, most free first.
    pub free: BTreeSet<(Reverse<u32>, ConnId, u32)>,
}

#[derive(Default)]
pub(crate) struct Workers {
    pub by_conn: HashMap<ConnId, Worker>,
    /// Stable worker id to its current link.
    pub by_id: HashMap<String, ConnId>,
    pub classes: HashMap<ExecutorProperties, ExecutorClass>,
    next_conn: ConnId,
    /// The workers with replica space, sorted: the cluster CAS's members.
    storage_members: Vec<StorageMember>,
    /// Where this process's cluster store follows the members.
    placement: Option<PlacementSender>,
}

/// `host:port` with a non-empty host and a numeric port.
fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && address.len() <= 256
                && !address
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '/')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// A state report's pools, checked.
pub(crate) struct ReportedPool {
    pub properties: ExecutorProperties,
    pub capacity: u32,
    pub free: u32,
}

/// Checks a state report: INVALID_ARGUMENT naming the first problem.
pub(crate) fn check_report(report: &StateReport) -> Result<Vec<ReportedPool>> {
    if report.worker_id.is_empty() {
        return Err(Error::invalid_argument("state report has no worker_id"));
    }
    if report.worker_id.len() > 256 || report.worker_id.chars().any(char::is_control) {
        return Err(Error::invalid_argument(format!(
            "worker_id {:?} is not a printable name of at most 256 bytes",
            report.worker_id
        )));
    }
    if report.replica_space > 0 && !is_host_port(&report.address) {
        return Err(Error::invalid_argument(format!(
            "worker {} has replica space but its address {:?} is not host:port",
            report.worker_id, report.address
        )));
    }
    let mut pools = Vec::with_capacity(report.pools.len());
    for (i, group) in report.pools.iter().enumerate() {
        let properties = group
            .properties
            .as_ref()
            .map(ExecutorProperties::from_platform)
            .transpose()
            .map_err(|e| e.context(format!("pool {i} of worker {}", report.worker_id)))?
            .unwrap_or_default();
        if group.executors == 0 {
            return Err(Error::invalid_argument(format!(
                "pool {i} of worker {} has no executors",
                report.worker_id
            )));
        }
        if group.free > group.executors {
            return Err(Error::invalid_argument(format!(
                "pool {i} of worker {} reports {} free of {} executors",
                report.worker_id, group.free, group.executors
            )));
        }
        pools.push(ReportedPool {
            properties,
            capacity: group.executors,
            free: group.free,
        });
    }
    Ok(pools)
}

impl Workers {
    /// Adds a worker from its first report; returns its link id.
    pub fn add(
        &mut self,
        report: &StateReport,
        pools: Vec<ReportedPool>,
        outbound: Outbound,
        closed: Arc<Notify>,
    ) -> ConnId {
        self.next_conn += 1;
        let conn = self.next_conn;
        let pools = pools
            .into_iter()
            .map(|p| WorkerPool {
                ledger: ResourceLedger::for_executor(&p.properties),
                name: Arc::from(p.properties.to_string()),
                properties: p.properties,
                capacity: p.capacity,
                free: p.free,
            })
            .collect::<Vec<_>>();
        for pool in &pools {
            self.classes
                .entry(pool.properties.clone())
                .or_default()
                .pools += 1;
        }
        self.by_conn.insert(
            conn,
            Worker {
                id: Arc::from(report.worker_id.as_str()),
                address: report.address.clone(),
                replica_space: report.replica_space,
                outbound,
                pools,
                leases: HashSet::new(),
                last_heard: Instant::now(),
                draining: report.draining,
                leaving: false,
                closed,
            },
        );
        self.by_id.insert(report.worker_id.clone(), conn);
        for pool in 0..self.by_conn[&conn].pools.len() {
            self.reindex(conn, pool as u32);
        }
        if !self.storage_members_changed() {
            // The newcomer still needs the list the others already have.
            self.by_conn[&conn].send(SchedulerMessage::storage_members(
                self.storage_members.clone(),
            ));
        }
        conn
    }

    /// Publishes the cluster CAS's members to `sender` from now on.
    pub fn publish_placement(&mut self, sender: PlacementSender) {
        sender.send_replace(std::sync::Arc::new(Placement::new(&self.storage_members)));
        self.placement = Some(sender);
    }

    /// Recomputes the storage members; when they changed, tells every
    /// worker and this process's cluster store. Returns whether they
    /// changed.
    fn storage_members_changed(&mut self) -> bool {
        let mut members: Vec<StorageMember> = self
            .by_conn
            .values()
            // A draining worker hands its share off: it is no placement
            // target any more, and its blobs move to the others.
            .filter(|w| w.replica_space > 0 && !w.draining && !w.leaving)
            .map(|w| StorageMember {
                worker_id: w.id.to_string(),
                address: w.address.clone(),
            })
            .collect();
        members.sort();
        if members == self.storage_members {
            return false;
        }
        tracing::info!(
            members = members.len(),
            "cluster CAS members changed: {}",
            members
                .iter()
                .map(|m| m.worker_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.storage_members = members;
        if let Some(sender) = &self.placement {
            sender.send_replace(std::sync::Arc::new(Placement::new(&self.storage_members)));
        }
        for worker in self.by_conn.values() {
            worker.send(SchedulerMessage::storage_members(
                self.storage_members.clone(),
            ));
        }
        true
    }

    /// Removes a worker and its pools from the indexes.
    pub fn remove(&mut self, conn: ConnId) -> Option<Worker> {
        let worker = self.by_conn.remove(&conn)?;
        if self.by_id.get(&*worker.id) == Some(&conn) {
            self.by_id.remove(&*worker.id);
        }
        for (i, pool) in worker.pools.iter().enumerate() {
            if let Some(class) = self.classes.get_mut(&pool.properties) {
                class.free.remove(&(Reverse(pool.free), conn, i as u32));
                class.pools -= 1;
                if class.pools == 0 {
                    self.classes.remove(&pool.properties);
                }
            }
        }
        self.storage_members_changed();
        Some(worker)
    }

    /// Sets what this scheduler may still offer on a pool, keeping the
    /// class index in step.
    pub fn set_free(&mut self, conn: ConnId, pool: u32, free: u32) {
        let Some(worker) = self.by_conn.get_mut(&conn) else {
            return;
        };
        let Some(entry) = worker.pools.get_mut(pool as usize) else {
            return;
        };
        if let Some(class) = self.classes.get_mut(&entry.properties) {
            class.free.remove(&(Reverse(entry.free), conn, pool));
        }
        entry.free = free.min(entry.capacity);
        self.reindex(conn, pool);
    }

    /// Puts a pool in its class's free index if it has free executors and
    /// its worker takes leases.
    fn reindex(&mut self, conn: ConnId, pool: u32) {
        let Some(worker) = self.by_conn.get(&conn) else {
            return;
        };
        let Some(entry) = worker.pools.get(pool as usize) else {
            return;
        };
        let Some(class) = self.classes.get_mut(&entry.properties) else {
            return;
        };
        let key = (Reverse(entry.free), conn, pool);
        if entry.free > 0 && !worker.draining && !worker.leaving {
            class.free.insert(key);
        } else {
            class.free.remove(&key);
        }
    }

    /// Marks a worker as taking no new leases (draining or leaving).
    pub fn set_draining(&mut self, conn: ConnId, draining: bool) {
        let Some(worker) = self.by_conn.get_mut(&conn) else {
            return;
        };
        if worker.draining == draining {
            return;
        }
        worker.draining = draining;
        for pool in 0..worker.pools.len() {
            self.reindex(conn, pool as u32);
        }
        self.storage_members_changed();
    }

    pub fn set_leaving(&mut self, conn: ConnId) {
        if let Some(worker) = self.by_conn.get_mut(&conn) {
            worker.leaving = true;
            for pool in 0..worker.pools.len() {
                self.reindex(conn, pool as u32);
            }
        }
        self.storage_members_changed();
    }

    /// The distinct properties of live workers' pools.
    pub fn offered(&self) -> Vec<ExecutorProperties> {
        self.classes.keys().cloned().collect()
    }

    /// Executors of live workers: (in all, free as this scheduler sees it).
    pub fn executor_counts(&self) -> (u64, u64) {
        self.by_conn
            .values()
            .flat_map(|w| &w.pools)
            .fold((0, 0), |(all, free), p| {
                (all + u64::from(p.capacity), free + u64::from(p.free))
            })
    }
}
