//! A stage task's metrics, in the OpenMetrics text format (prometheus-client):
//! records in per source, rows out per sink, dead letters by source and
//! reason, consumer lag per partition, watermark delay per source,
//! checkpoint duration and size, sink write and flush latency, lookup cache
//! hits and misses per lookup, and a full-cache lookup's rows, load time and
//! failed reloads.
//!
//! [`TaskMetrics`] is cheap to clone (the metrics are shared); the task loop
//! updates it and whoever serves `/metrics` calls [`TaskMetrics::encode`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of one stage task.
#[derive(Clone)]
pub struct TaskMetrics {
    registry: Arc<Mutex<Registry>>,
    /// Records read, per source.
    pub records_in: Family<Labels, Counter>,
    /// Rows written, per sink.
    pub rows_out: Family<Labels, Counter>,
    /// Records and rows sent to a dead-letter topic, per source and reason
    /// (`decode`, `late`, `no-event-time`, `other`).
    pub dead_lettered: Family<Labels, Counter>,
    /// Records that did not decode and were dropped (`on-decode-error: drop`), per source.
    pub dropped: Family<Labels, Counter>,
    /// Consumer lag, per source and partition (records), as of the last checkpoint.
    pub consumer_lag: Family<Labels, Gauge>,
    /// Wall clock minus the source's watermark, seconds.
    pub watermark_delay: Family<Labels, Gauge<f64, AtomicU64>>,
    /// How long a checkpoint took (flush, write, commit), seconds.
    pub checkpoint_duration: Histogram,
    /// The size of the last checkpoint, bytes.
    pub checkpoint_size: Gauge,
    /// Checkpoints written.
    pub checkpoints: Counter,
    /// When the last checkpoint was written, Unix seconds (its age is now
    /// minus this).
    pub last_checkpoint_timestamp: Gauge,
    /// How long handing a batch to a sink took (it waits when the sink is
    /// saturated), per sink, seconds.
    pub sink_write_latency: HistogramFamily,
    /// How long a sink's flush took, per sink, seconds.
    pub sink_flush_latency: HistogramFamily,
    /// Lookup keys answered from the cache, per lookup.
    pub lookup_cache_hits: Family<Labels, Counter>,
    /// Lookup keys read from the lookup's table, per lookup.
    pub lookup_cache_misses: Family<Labels, Counter>,
    /// Rows a full-cache lookup holds, per lookup.
    pub lookup_table_rows: Family<Labels, Gauge>,
    /// How long the last load of a full-cache lookup took, per lookup, seconds.
    pub lookup_load_duration: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Reloads of a full-cache lookup that failed (the rows held stay), per lookup.
    pub lookup_reload_failures: Family<Labels, Counter>,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics").finish_non_exhaustive()
    }
}

impl Default for TaskMetrics {
    fn default() -> Self {
        TaskMetrics::new()
    }
}

/// One label.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

/// Two labels.
pub fn labels2(a: (&str, &str), b: (&str, &str)) -> Labels {
    vec![(a.0.to_string(), a.1.to_string()), (b.0.to_string(), b.1.to_string())]
}

impl TaskMetrics {
    /// Registers every metric under the `smack_stage` prefix.
    pub fn new() -> TaskMetrics {
        let mut r = Registry::with_prefix("smack_stage");
        let m = TaskMetrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            records_in: Family::default(),
            rows_out: Family::default(),
            dead_lettered: Family::default(),
            dropped: Family::default(),
            consumer_lag: Family::default(),
            watermark_delay: Family::default(),
            checkpoint_duration: latency_histogram(),
            checkpoint_size: Gauge::default(),
            checkpoints: Counter::default(),
            last_checkpoint_timestamp: Gauge::default(),
            sink_write_latency: Family::new_with_constructor(latency_histogram),
            sink_flush_latency: Family::new_with_constructor(latency_histogram),
            lookup_cache_hits: Family::default(),
            lookup_cache_misses: Family::default(),
            lookup_table_rows: Family::default(),
            lookup_load_duration: Family::default(),
            lookup_reload_failures: Family::default(),
        };
        r.register("records_in", "Records read, per source", m.records_in.clone());
        r.register("rows_out", "Rows written, per sink", m.rows_out.clone());
        r.register(
            "dead_lettered",
            "Records sent to the dead-letter topic, per source and reason",
            m.dead_lettered.clone(),
        );
        r.register("dropped", "Records that did not decode and were dropped, per source", m.dropped.clone());
        r.register(
            "consumer_lag",
            "Records behind the partition's end, per source and partition",
            m.consumer_lag.clone(),
        );
        r.register_with_unit(
            "watermark_delay",
            "Wall clock minus the source's watermark",
            Unit::Seconds,
            m.watermark_delay.clone(),
        );
        r.register_with_unit(
            "checkpoint_duration",
            "Time to flush the sinks, write the checkpoint and commit offsets",
            Unit::Seconds,
            m.checkpoint_duration.clone(),
        );
        r.register_with_unit("checkpoint_size", "Size of the last checkpoint", Unit::Bytes, m.checkpoint_size.clone());
        r.register("checkpoints", "Checkpoints written", m.checkpoints.clone());
        r.register(
            "last_checkpoint_timestamp_seconds",
            "When the last checkpoint was written, Unix seconds",
            m.last_checkpoint_timestamp.clone(),
        );
        r.register_with_unit(
            "sink_write_latency",
            "Time to hand one batch to a sink",
            Unit::Seconds,
            m.sink_write_latency.clone(),
        );
        r.register_with_unit(
            "sink_flush_latency",
            "Time for a sink to acknowledge everything written",
            Unit::Seconds,
            m.sink_flush_latency.clone(),
        );
        r.register("lookup_cache_hits", "Lookup keys answered from the cache, per lookup", m.lookup_cache_hits.clone());
        r.register(
            "lookup_cache_misses",
            "Lookup keys read from the lookup's table, per lookup",
            m.lookup_cache_misses.clone(),
        );
        r.register("lookup_table_rows", "Rows a full-cache lookup holds, per lookup", m.lookup_table_rows.clone());
        r.register_with_unit(
            "lookup_load_duration",
            "Time the last load of a full-cache lookup took, per lookup",
            Unit::Seconds,
            m.lookup_load_duration.clone(),
        );
        r.register(
            "lookup_reload_failures",
            "Failed reloads of a full-cache lookup (the rows held stay), per lookup",
            m.lookup_reload_failures.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = r;
        m
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
            tracing::warn!(error = %e, "encoding the stage metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_labels_and_units() {
        let m = TaskMetrics::new();
        m.records_in.get_or_create(&label("source", "tx")).inc_by(7);
        m.dead_lettered.get_or_create(&labels2(("source", "tx"), ("reason", "decode"))).inc();
        m.sink_write_latency.get_or_create(&label("sink", "cards")).observe(0.002);
        m.checkpoint_size.set(1234);
        m.lookup_cache_hits.get_or_create(&label("lookup", "homes")).inc_by(3);
        m.lookup_cache_misses.get_or_create(&label("lookup", "homes")).inc();
        let text = m.encode();
        assert!(text.contains("smack_stage_lookup_cache_hits_total{lookup=\"homes\"} 3"), "{text}");
        assert!(text.contains("smack_stage_lookup_cache_misses_total{lookup=\"homes\"} 1"), "{text}");
        assert!(text.contains("smack_stage_records_in_total{source=\"tx\"} 7"), "{text}");
        assert!(text.contains("smack_stage_dead_lettered_total{source=\"tx\",reason=\"decode\"} 1"), "{text}");
        assert!(text.contains("smack_stage_checkpoint_size_bytes 1234"), "{text}");
        assert!(text.contains("smack_stage_sink_write_latency_seconds_count{sink=\"cards\"} 1"), "{text}");
    }
}
