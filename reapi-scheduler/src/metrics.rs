//! A scheduler's gauges, read from its state at every scrape: executors and
//! used executors per pool (what an autoscaler scales the execution pool
//! on), workers per pool, queued and active operations, leases; and the
//! process-wide histograms of queue and execution time per pool.
//!
//! Every worker links to every scheduler, so each scheduler reports the
//! same executors: aggregate across schedulers with `max` or `avg`, not
//! `sum`.

use std::fmt;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use reapi_core::metrics::{encode_gauge, encode_gauges, gauge_count};
use reapi_core::proto::remote_execution::ActionResult;

use crate::status::MemberState;
use crate::{Peers, Scheduler};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    kind: &'static str,
    state: &'static str,
}

/// Register with `reapi_core::metrics::register_collector` for the
/// scheduler a process runs. Holds it weakly: a stopped scheduler exports
/// nothing.
#[derive(Debug)]
pub struct SchedulerCollector {
    scheduler: Weak<Scheduler>,
    peers: Option<Weak<Peers>>,
}

impl SchedulerCollector {
    pub fn new(scheduler: &Arc<Scheduler>) -> Self {
        SchedulerCollector {
            scheduler: Arc::downgrade(scheduler),
            peers: None,
        }
    }

    /// Also reports the scheduler peers by state.
    pub fn with_peers(mut self, peers: &Arc<Peers>) -> Self {
        self.peers = Some(Arc::downgrade(peers));
        self
    }

    /// `cluster_members{kind, state}`: this scheduler and its peers, and
    /// the workers linked to it, by state.
    fn encode_members(
        &self,
        encoder: &mut DescriptorEncoder,
        scheduler: &Scheduler,
    ) -> fmt::Result {
        let mut counts: Vec<(MemberLabels, i64)> = Vec::new();
        let mut add = |kind, state: &MemberState, n: usize| {
            counts.push((
                MemberLabels {
                    kind,
                    state: state.as_str(),
                },
                gauge_count(n),
            ));
        };
        let peers = self.peers.as_ref().and_then(Weak::upgrade);
        let this_state = if peers.as_ref().is_some_and(|p| p.is_draining()) {
            MemberState::Draining
        } else {
            MemberState::Live
        };
        add("scheduler", &this_state, 1);
        for peer in peers.iter().flat_map(|p| p.members()) {
            add("scheduler", &peer.state, 1);
        }
        let (live, draining) = scheduler.worker_states();
        add("worker", &MemberState::Live, live);
        add("worker", &MemberState::Draining, draining);
        encode_gauges(
            encoder,
            "cluster_members",
            "Schedulers (this one and its peers) and linked workers, by state",
            None,
            counts,
        )
    }
}

/// A gauge family labelled by pool.
fn encode_pool_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (String, i64)>,
) -> fmt::Result {
    let values = values.map(|(pool, value)| (PoolLabels { pool }, value));
    encode_gauges(encoder, name, help, None, values)
}

fn encode_count(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> fmt::Result {
    encode_gauge(encoder, name, help, None, value)
}

impl Collector for SchedulerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(scheduler) = self.scheduler.upgrade() else {
            return Ok(());
        };
        let pools = scheduler.pool_summaries();
        encode_pool_family(
            &mut encoder,
            "executors",
            "Executors of the linked workers, by pool",
            pools
                .iter()
                .map(|p| (p.pool.clone(), gauge_count(p.executors))),
        )?;
        encode_pool_family(
            &mut encoder,
            "used_executors",
            "Executors running an action, by pool",
            pools
                .iter()
                .map(|p| (p.pool.clone(), gauge_count(p.used_executors))),
        )?;
        encode_pool_family(
            &mut encoder,
            "pool_queued_actions",
            "Operations homed here waiting for an executor that the pool could run, by pool",
            pools
                .iter()
                .map(|p| (p.pool.clone(), gauge_count(p.queued_actions))),
        )?;
        encode_pool_family(
            &mut encoder,
            "workers",
            "Linked workers offering the pool",
            pools
                .iter()
                .map(|p| (p.pool.clone(), gauge_count(p.workers))),
        )?;
        encode_pool_family(
            &mut encoder,
            "draining_workers",
            "Linked workers offering the pool that are draining",
            pools
                .iter()
                .map(|p| (p.pool.clone(), gauge_count(p.draining_workers))),
        )?;
        self.encode_members(&mut encoder, &scheduler)?;
        let summary = scheduler.executor_summary();
        encode_count(
            &mut encoder,
            "linked_workers",
            "Workers linked to this scheduler",
            gauge_count(summary.workers),
        )?;
        encode_count(
            &mut encoder,
            "queued_actions",
            "Operations homed here waiting for an executor",
            gauge_count(scheduler.queue_len()),
        )?;
        encode_count(
            &mut encoder,
            "active_operations",
            "Operations homed here, queued or running",
            gauge_count(scheduler.active_operations()),
        )?;
        encode_count(
            &mut encoder,
            "leases",
            "Actions leased to workers by this scheduler",
            gauge_count(summary.leases),
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolTimeLabels {
    pool: String,
}

type TimeFamily = Family<PoolTimeLabels, Histogram, fn() -> Histogram>;

struct Times {
    queued: TimeFamily,
    executed: TimeFamily,
}

fn time_histogram() -> Histogram {
    Histogram::new(reapi_core::metrics::latency_buckets())
}

static TIMES: LazyLock<Times> = LazyLock::new(|| {
    let times = Times {
        queued: TimeFamily::new_with_constructor(time_histogram),
        executed: TimeFamily::new_with_constructor(time_histogram),
    };
    reapi_core::metrics::register(|registry| {
        registry.register_with_unit(
            "queue",
            "Time from an action's submission to its lease, by the pool that took it",
            Unit::Seconds,
            times.queued.clone(),
        );
        registry.register_with_unit(
            "execution",
            "Time an action ran (its execution metadata's start to completion), by pool",
            Unit::Seconds,
            times.executed.clone(),
        );
    });
    times
});

/// An action was leased to `pool` after waiting `waited`.
pub(crate) fn observe_queue_time(pool: String, waited: Duration) {
    TIMES
        .queued
        .get_or_create(&PoolTimeLabels { pool })
        .observe(waited.as_secs_f64());
}

/// An action ran on `pool`, as its result's execution metadata says.
pub(crate) fn observe_execution(pool: String, result: &ActionResult) {
    let Some(metadata) = &result.execution_metadata else {
        return;
    };
    let (Some(start), Some(end)) = (
        &metadata.execution_start_timestamp,
        &metadata.execution_completed_timestamp,
    ) else {
        return;
    };
    let seconds = (end.seconds - start.seconds) as f64 + f64::from(end.nanos - start.nanos) / 1e9;
    if seconds >= 0.0 {
        TIMES
            .executed
            .get_or_create(&PoolTimeLabels { pool })
            .observe(seconds);
    }
}
