//! The process's Prometheus metrics: one registry that every part running
//! in the process adds to, rendered in the text exposition format for an
//! HTTP `/metrics` endpoint.
//!
//! Counters and histograms that several instances of a part share (RPCs,
//! CAS bytes, action cache lookups) are process-wide singletons, registered
//! on first use. Gauges read from one component's state (a scheduler's
//! executors and queue) are [`Collector`]s that the binary registers for the
//! components it runs, so a test process holding many schedulers does not
//! export duplicates.

use std::fmt;
use std::hash::Hash;
use std::sync::LazyLock;

use parking_lot::Mutex;
pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Every metric name starts with this, then `_`.
pub const PREFIX: &str = "reapi";

static REGISTRY: LazyLock<Mutex<Registry>> =
    LazyLock::new(|| Mutex::new(Registry::with_prefix(PREFIX)));

/// Adds metrics to the process's registry.
pub fn register(add: impl FnOnce(&mut Registry)) {
    add(&mut REGISTRY.lock());
}

/// Adds a collector, asked for its metrics at every scrape.
pub fn register_collector(collector: impl Collector) {
    REGISTRY.lock().register_collector(Box::new(collector));
}

/// Every metric of the process, in the Prometheus text format.
pub fn render() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's error is its own bug
    // and leaves the output it wrote so far.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &REGISTRY.lock()) {
        tracing::warn!(error = %e, "rendering metrics failed part way");
    }
    text
}

/// Writes a gauge family whose values a collector read at scrape time:
/// one sample per distinct labels, the values of equal labels added up.
pub fn encode_gauges<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result
where
    L: EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).inc_by(value);
    }
    family.encode(encoder.encode_descriptor(name, help, unit, family.metric_type())?)
}

/// Writes one unlabelled gauge a collector read at scrape time.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: i64,
) -> fmt::Result {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

/// A count as a gauge value, saturating.
pub fn gauge_count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Latency buckets in seconds, 0.5 ms to about 9 minutes (factor 2): RPCs,
/// queue waits and executions all fit.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 21)
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[derive(Debug)]
    struct Members;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct StateLabels {
        state: &'static str,
    }

    impl Collector for Members {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            let states = [("live", 1), ("draining", 0), ("live", 1)];
            let values = states.map(|(state, n)| (StateLabels { state }, n));
            encode_gauges(&mut encoder, "test_members", "Members", None, values)?;
            encode_gauge(&mut encoder, "test_queue", "Queue", Some(&Unit::Bytes), 7)
        }
    }

    #[test]
    fn collected_gauges_add_up_equal_labels() {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(Members));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("reapi_test_members{state=\"live\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("reapi_test_members{state=\"draining\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("reapi_test_queue_bytes 7\n"), "{text}");
        assert_eq!(gauge_count(u64::MAX), i64::MAX);
    }

    #[test]
    fn registered_metrics_are_rendered_with_the_prefix() {
        let counter = Counter::<u64>::default();
        register(|r| r.register("test_render_things", "Things rendered", counter.clone()));
        counter.inc_by(3);
        let text = render();
        assert!(text.contains("reapi_test_render_things_total 3"), "{text}");
        assert!(
            text.contains("# HELP reapi_test_render_things Things rendered."),
            "{text}"
        );
    }
}
