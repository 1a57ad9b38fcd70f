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

use std::sync::LazyLock;

use parking_lot::Mutex;
pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;

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

/// Latency buckets in seconds, 0.5 ms to about 9 minutes (factor 2): RPCs,
/// queue waits and executions all fit.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 21)
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

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
