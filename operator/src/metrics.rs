//! Prometheus metrics of the master, the agents and the service schedulers,
//! in the OpenMetrics text format (`prometheus-client`): the shared parts
//! (registries, the `/metrics` route, gauge encoders) here; each
//! component's families next to it ([`crate::master::metrics`],
//! [`crate::agent::metrics`], [`crate::scheduler::metrics`]).
//!
//! Registries are passed explicitly, never global: the master owns one
//! ([`crate::master::Master::registry`]) and serves it at `GET /metrics` on
//! its API server; `smack agent --metrics-listen ADDR` serves an agent's own
//! registry at `ADDR/metrics`; `smack up` registers its agents' families into
//! the master's registry, so one scrape shows the whole embedded cluster (the
//! `agent` label keeps the agents apart). A service scheduler serves its own
//! registry at `/metrics` on its HTTP API ([`crate::scheduler::api`]), which
//! the master also forwards as `/v1/frameworks/{id}/api/metrics`.
//!
//! `/metrics` needs **no token**, unlike everything under `/v1/`: Prometheus
//! scrapes without secrets, and nothing sensitive is exported here — counts,
//! resource sums by role, durations and host names, never the token, task
//! commands, environments or labels.
//!
//! Families (counters get `_total` appended by the encoder):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `smack_master_agents` | gauge | `state` = `REACHABLE` \| `UNREACHABLE` |
//! | `smack_master_resources_capacity` | gauge | `resource` = `cpus` \| `mem` \| `disk` |
//! | `smack_master_resources_reserved` | gauge | `resource`, `role` |
//! | `smack_master_resources_used` | gauge | `resource`, `role` |
//! | `smack_master_frameworks_connected` | gauge | |
//! | `smack_master_offers_made_total` | counter | |
//! | `smack_master_offers_declined_total` | counter | |
//! | `smack_master_offers_rescinded_total` | counter | |
//! | `smack_master_operations_total` | counter | `type` (`RESERVE`, `LAUNCH`, …), `result` = `applied` \| `refused` |
//! | `smack_master_allocation_cycle_seconds` | histogram | |
//! | `smack_agent_tasks` | gauge | `agent`, `state` (`STAGING` … `LOST`) |
//! | `smack_agent_launches_total` | counter | `agent` |
//! | `smack_agent_kills_total` | counter | `agent` |
//! | `smack_agent_health_check_failures_total` | counter | `agent` |
//! | `smack_agent_volume_used_bytes` | gauge | `agent`, `volume` |
//! | `smack_scheduler_plan_status` | gauge (0/1) | `service`, `plan`, `status` (`PENDING` … `ERROR`) |
//! | `smack_scheduler_steps` | gauge | `service`, `plan`, `phase`, `state` (`PENDING` … `ERROR`) |
//! | `smack_scheduler_pods` | gauge | `service`, `state` (see [`PodPhase`](crate::scheduler::pod::PodPhase)) |
//! | `smack_scheduler_recoveries_total` | counter | `service`, `kind` = `transient` \| `permanent` |
//! | `smack_scheduler_offer_evaluations_total` | counter | `service`, `stage` (`placement` … `launch`), `result` = `pass` \| `fail` |
//!
//! Resources are in the units the cluster speaks: cpus in cores, mem and disk
//! in MiB (disk counts ROOT and MOUNT disks). The master's gauges are
//! computed from its ledger on each scrape and cover reachable agents; the
//! agents' gauges are computed on each scrape from their checkpoints (volume
//! bytes by walking the volume, see
//! [`smack_storage::volumes::VolumeManager::usage_bytes`]).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};

/// Re-exported for the binary, which registers its agents' families.
pub use crate::agent::metrics::AgentMetrics;

/// A registry shared between the code that registers families and the
/// server that encodes them.
pub type SharedRegistry = Arc<RwLock<Registry>>;

/// The content type of an OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set: (name, value) pairs.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// A fresh, empty shared registry.
pub fn new_registry() -> SharedRegistry {
    Arc::new(RwLock::new(Registry::default()))
}

/// The OpenMetrics text of every family in `registry`.
pub fn encode(registry: &SharedRegistry) -> String {
    let reg = registry.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        tracing::error!(error = %e, "could not encode metrics");
    }
    out
}

/// The `/metrics` answer: the encoded registry with its content type.
pub fn scrape(registry: &SharedRegistry) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(registry)).into_response()
}

/// A router serving `registry` at `GET /metrics` (no token; see the module doc).
pub fn router(registry: SharedRegistry) -> Router {
    Router::new().route("/metrics", get(move || async move { scrape(&registry) }))
}

/// Serves `registry` at `/metrics` on `listener` until the future is dropped.
pub async fn serve(registry: SharedRegistry, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(registry)).await
}

pub(crate) fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(v).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// As [`encode_gauges`], for counts (encoded without a fraction).
pub(crate) fn encode_counts(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
