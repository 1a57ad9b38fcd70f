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
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use reapi_core::proto::remote_execution::ActionResult;

use crate::Scheduler;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// Register with `reapi_core::metrics::register_collector` for the
/// scheduler a process runs. Holds it weakly: a stopped scheduler exports
/// nothing.
#[derive(Debug)]
pub struct SchedulerCollector {
    scheduler: Weak<Scheduler>,
}

impl SchedulerCollector {
    pub fn new(scheduler: &Arc<Scheduler>) -> Self {
        SchedulerCollector {
            scheduler: Arc::downgrade(scheduler),
        }
    }
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> fmt::Result {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn encode_pool_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (String, i64)>,
) -> fmt::Result {
    let family = Family::<PoolLabels, Gauge>::default();
    for (pool, value) in values {
        family.get_or_create(&PoolLabels { pool }).set(value);
    }
    family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
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
            pools.iter().map(|p| (p.pool.clone(), count(p.executors))),
        )?;
        encode_pool_family(
            &mut encoder,
            "used_executors",
            "Executors running an action, by pool",
            pools
                .iter()
                .map(|p| (p.pool.clone(), count(p.used_executors))),
        )?;
        encode_pool_family(
            &mut encoder,
            "workers",
            "Linked workers offering the pool",
            pools.iter().map(|p| (p.pool.clone(), count(p.workers))),
        )?;
        encode_pool_family(
            &mut encoder,
            "draining_workers",
            "Linked workers offering the pool that are draining",
            pools
                .iter()
                .map(|p| (p.pool.clone(), count(p.draining_workers))),
        )?;
        let summary = scheduler.executor_summary();
        encode_gauge(
            &mut encoder,
            "linked_workers",
            "Workers linked to this scheduler",
            count(summary.workers),
        )?;
        encode_gauge(
            &mut encoder,
            "queued_actions",
            "Operations homed here waiting for an executor",
            count(scheduler.queue_len()),
        )?;
        encode_gauge(
            &mut encoder,
            "active_operations",
            "Operations homed here, queued or running",
            count(scheduler.active_operations()),
        )?;
        encode_gauge(
            &mut encoder,
            "leases",
            "Actions leased to workers by this scheduler",
            count(summary.leases),
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
