//! Prometheus metrics of the master, the agents and the service schedulers,
//! in the OpenMetrics text format (`prometheus-client`).
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
//! | `smack_scheduler_pods` | gauge | `service`, `state` (see [`POD_STATES`]) |
//! | `smack_scheduler_recoveries_total` | counter | `service`, `kind` = `transient` \| `permanent` |
//! | `smack_scheduler_offer_evaluations_total` | counter | `service`, `stage` (`placement` … `launch`), `result` = `pass` \| `fail` |
//!
//! Resources are in the units the cluster speaks: cpus in cores, mem and disk
//! in MiB (disk counts ROOT and MOUNT disks). The master's gauges are
//! computed from its ledger on each scrape and cover reachable agents; the
//! agents' gauges are computed on each scrape from their checkpoints (volume
//! bytes by walking the volume, see
//! [`smack_storage::volumes::VolumeManager::usage_bytes`]).

use crate::resources::TaskState;
use crate::scheduler::evaluator::{Evaluation, Stage};
use crate::scheduler::plan::{Status, StepState};
use crate::scheduler::service::{PodRecord, SchedulerState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// A registry shared between the code that registers families and the
/// server that encodes them.
pub type SharedRegistry = Arc<RwLock<Registry>>;

/// The content type of an OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

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

fn encode_gauges(
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
fn encode_counts(
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

// ---- master ---------------------------------------------------------------

/// Resources as the metrics report them: cpus, mem (MiB), disk (MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceSums {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
}

impl ResourceSums {
    pub fn add(&mut self, r: &crate::resources::Resources) {
        self.cpus += r.cpus;
        self.mem += r.mem as f64;
        self.disk += r.total_disk() as f64;
    }

    fn labelled(&self, role: Option<&str>) -> [(Labels, f64); 3] {
        let l = |resource: &str| {
            let mut v = vec![("resource", resource.to_string())];
            if let Some(role) = role {
                v.push(("role", role.to_string()));
            }
            v
        };
        [(l("cpus"), self.cpus), (l("mem"), self.mem), (l("disk"), self.disk)]
    }
}

/// What the master's gauges show, read from its ledger on each scrape.
#[derive(Debug, Clone, Default)]
pub struct MasterSnapshot {
    pub agents_reachable: u64,
    pub agents_unreachable: u64,
    /// Total resources of the reachable agents.
    pub capacity: ResourceSums,
    /// Reserved on reachable agents, by role.
    pub reserved: BTreeMap<String, ResourceSums>,
    /// Used by live tasks on reachable agents, by the tasks' role.
    pub used: BTreeMap<String, ResourceSums>,
    pub frameworks_connected: u64,
}

type SnapshotFn = Box<dyn Fn() -> Option<MasterSnapshot> + Send + Sync>;

struct MasterGauges(SnapshotFn);

impl std::fmt::Debug for MasterGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterGauges")
    }
}

impl Collector for MasterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = (self.0)() else { return Ok(()) };
        encode_counts(
            &mut encoder,
            "smack_master_agents",
            "Agents known to the master, by state.",
            [
                (vec![("state", "REACHABLE".to_string())], s.agents_reachable),
                (vec![("state", "UNREACHABLE".to_string())], s.agents_unreachable),
            ],
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_capacity",
            "Total resources of the reachable agents (cpus in cores, mem and disk in MiB).",
            s.capacity.labelled(None),
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_reserved",
            "Resources reserved on reachable agents, by role (cpus in cores, mem and disk in MiB).",
            s.reserved.iter().flat_map(|(role, r)| r.labelled(Some(role))),
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_used",
            "Resources used by live tasks on reachable agents, by role (cpus in cores, mem and disk in MiB).",
            s.used.iter().flat_map(|(role, r)| r.labelled(Some(role))),
        )?;
        encode_counts(
            &mut encoder,
            "smack_master_frameworks_connected",
            "Frameworks with an open subscription stream.",
            [(Vec::new(), s.frameworks_connected)],
        )
    }
}

/// The master's counters and histogram; its gauges come from a snapshot
/// function given to [`MasterMetrics::register`].
#[derive(Debug)]
pub struct MasterMetrics {
    offers_made: Counter,
    offers_declined: Counter,
    offers_rescinded: Counter,
    allocation_cycle: Histogram,
    operations: Family<Labels, Counter>,
}

impl Default for MasterMetrics {
    fn default() -> Self {
        MasterMetrics {
            offers_made: Counter::default(),
            offers_declined: Counter::default(),
            offers_rescinded: Counter::default(),
            // 100µs … ~3.3s.
            allocation_cycle: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            operations: Family::default(),
        }
    }
}

impl MasterMetrics {
    /// Registers every master family in `registry`; `snapshot` is called on
    /// each scrape for the gauges (None: the master is gone, no gauges).
    pub fn register(
        &self,
        registry: &mut Registry,
        snapshot: impl Fn() -> Option<MasterSnapshot> + Send + Sync + 'static,
    ) {
        registry.register("smack_master_offers_made", "Offers sent to frameworks", self.offers_made.clone());
        registry.register(
            "smack_master_offers_declined",
            "Offers declined by frameworks",
            self.offers_declined.clone(),
        );
        registry.register(
            "smack_master_offers_rescinded",
            "Offers rescinded by the master (timeout, agent lost, framework gone, agent re-registered)",
            self.offers_rescinded.clone(),
        );
        registry.register(
            "smack_master_operations",
            "Operations in accepts, by type and result (an accept is all-or-nothing: a refused accept refuses each of its operations)",
            self.operations.clone(),
        );
        registry.register_with_unit(
            "smack_master_allocation_cycle",
            "Duration of one allocation cycle of the master (timeouts, rescinds, DRF allocation, offers sent)",
            Unit::Seconds,
            self.allocation_cycle.clone(),
        );
        registry.register_collector(Box::new(MasterGauges(Box::new(snapshot))));
    }

    pub fn offers_made(&self, n: u64) {
        self.offers_made.inc_by(n);
    }

    pub fn offer_declined(&self) {
        self.offers_declined.inc();
    }

    pub fn offer_rescinded(&self) {
        self.offers_rescinded.inc();
    }

    pub fn allocation_cycle(&self, took: Duration) {
        self.allocation_cycle.observe(took.as_secs_f64());
    }

    /// Counts one operation of an accept by its type (`RESERVE`, `LAUNCH`, …).
    pub fn operation(&self, kind: &str, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.operations.get_or_create(&vec![("type", kind.to_string()), ("result", result.to_string())]).inc();
    }
}

// ---- agents ---------------------------------------------------------------

/// What one agent's gauges show, read on each scrape.
#[derive(Debug, Clone, Default)]
pub struct AgentSnapshot {
    pub hostname: String,
    /// Tasks the agent checkpoints, by state.
    pub tasks: BTreeMap<TaskState, u64>,
    /// Bytes used on each persistent volume, by volume id.
    pub volumes: BTreeMap<String, u64>,
}

const TASK_STATES: [TaskState; 7] = [
    TaskState::Staging,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Finished,
    TaskState::Failed,
    TaskState::Killed,
    TaskState::Lost,
];

type AgentSource = Box<dyn Fn() -> Option<AgentSnapshot> + Send + Sync>;

struct AgentGauges(Arc<Mutex<Vec<AgentSource>>>);

impl std::fmt::Debug for AgentGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentGauges")
    }
}

impl Collector for AgentGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<AgentSnapshot> = {
            let sources = self.0.lock().unwrap_or_else(|p| p.into_inner());
            sources.iter().filter_map(|f| f()).collect()
        };
        let agent = |s: &AgentSnapshot| ("agent", s.hostname.clone());
        encode_counts(
            &mut encoder,
            "smack_agent_tasks",
            "Tasks an agent runs or has yet to report, by state.",
            snapshots.iter().flat_map(|s| {
                TASK_STATES.iter().map(move |st| {
                    (vec![agent(s), ("state", st.as_str().to_string())], s.tasks.get(st).copied().unwrap_or(0))
                })
            }),
        )?;
        encode_counts(
            &mut encoder,
            "smack_agent_volume_used_bytes",
            "Bytes used on each persistent volume of an agent.",
            snapshots
                .iter()
                .flat_map(|s| s.volumes.iter().map(move |(v, bytes)| (vec![agent(s), ("volume", v.clone())], *bytes))),
        )
    }
}

/// The agents' families. One set serves every agent of a process (each
/// sample carries its agent's host name), so `smack up` registers it once.
#[derive(Default)]
pub struct AgentMetrics {
    launches: Family<Labels, Counter>,
    kills: Family<Labels, Counter>,
    health_check_failures: Family<Labels, Counter>,
    sources: Arc<Mutex<Vec<AgentSource>>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics")
            .field("launches", &self.launches)
            .field("kills", &self.kills)
            .field("health_check_failures", &self.health_check_failures)
            .finish_non_exhaustive()
    }
}

impl AgentMetrics {
    pub fn new() -> Arc<AgentMetrics> {
        Arc::new(AgentMetrics::default())
    }

    /// Registers the agent families in `registry` (once per registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("smack_agent_launches", "Task processes an agent started", self.launches.clone());
        registry.register(
            "smack_agent_kills",
            "Kills an agent was asked for (by a framework, or on shutdown)",
            self.kills.clone(),
        );
        registry.register(
            "smack_agent_health_check_failures",
            "Failed health checks of an agent's tasks",
            self.health_check_failures.clone(),
        );
        registry.register_collector(Box::new(AgentGauges(self.sources.clone())));
    }

    /// Adds an agent: its counters start at zero, and its gauges are read by
    /// `snapshot` on each scrape (None: the agent is gone, no gauges).
    pub fn add_agent(&self, agent: &str, snapshot: impl Fn() -> Option<AgentSnapshot> + Send + Sync + 'static) {
        let labels = Self::labels(agent);
        for family in [&self.launches, &self.kills, &self.health_check_failures] {
            drop(family.get_or_create(&labels));
        }
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(snapshot));
    }

    fn labels(agent: &str) -> Labels {
        vec![("agent", agent.to_string())]
    }

    pub fn launched(&self, agent: &str) {
        self.launches.get_or_create(&Self::labels(agent)).inc();
    }

    pub fn killed(&self, agent: &str) {
        self.kills.get_or_create(&Self::labels(agent)).inc();
    }

    pub fn health_checks_failed(&self, agent: &str, n: u64) {
        self.health_check_failures.get_or_create(&Self::labels(agent)).inc_by(n);
    }
}

// ---- frameworks (service schedulers) ---------------------------------------

/// Plan statuses as the gauges spell them, in order.
pub const PLAN_STATUSES: [Status; 5] =
    [Status::Pending, Status::InProgress, Status::Waiting, Status::Complete, Status::Error];

/// Step states as the gauges spell them, in order.
pub const STEP_STATES: [StepState; 8] = [
    StepState::Pending,
    StepState::Prepared,
    StepState::Starting,
    StepState::Started,
    StepState::Complete,
    StepState::Waiting,
    StepState::Delayed,
    StepState::Error,
];

/// The states a pod is counted in by `smack_scheduler_pods`.
pub const POD_STATES: [&str; 6] = ["RUNNING", "STARTING", "WAITING", "PAUSED", "LOST", "STOPPED"];

/// One phase's steps, counted by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseSnapshot {
    pub name: String,
    /// Step counts by state (as [`StepState::as_str`] spells it).
    pub steps: BTreeMap<&'static str, u64>,
}

/// One plan: its status and its phases' step counts.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSnapshot {
    pub name: String,
    pub status: Status,
    pub phases: Vec<PhaseSnapshot>,
}

/// What a scheduler's gauges show, read from its state on each scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerSnapshot {
    pub service: String,
    pub plans: Vec<PlanSnapshot>,
    /// Pods by state (one of [`POD_STATES`]).
    pub pods: BTreeMap<&'static str, u64>,
}

impl SchedulerSnapshot {
    /// Counts the plans, steps and pods of a scheduler's state.
    pub fn of(service: &str, st: &SchedulerState) -> SchedulerSnapshot {
        let plans = st
            .plans
            .values()
            .map(|p| PlanSnapshot {
                name: p.name.clone(),
                status: p.status,
                phases: p
                    .phases
                    .iter()
                    .map(|ph| {
                        let mut steps = BTreeMap::new();
                        for s in &ph.steps {
                            *steps.entry(s.state.as_str()).or_default() += 1;
                        }
                        PhaseSnapshot { name: ph.name.clone(), steps }
                    })
                    .collect(),
            })
            .collect();
        let mut pods = BTreeMap::new();
        for p in st.pods.values() {
            *pods.entry(pod_state(p, st)).or_default() += 1;
        }
        SchedulerSnapshot { service: service.to_string(), plans, pods }
    }
}

/// The state a pod is counted in: PAUSED (maintenance), LOST (its agent is
/// unreachable), WAITING (no placement yet, or waiting for an offer),
/// RUNNING (every current task runs), STOPPED (every current task ended),
/// else STARTING.
pub fn pod_state(pod: &PodRecord, st: &SchedulerState) -> &'static str {
    if pod.paused {
        return "PAUSED";
    }
    if pod.lost_since_ms.is_some() {
        return "LOST";
    }
    if pod.agent_id.is_none() || pod.waiting.is_some() || pod.tasks.is_empty() {
        return "WAITING";
    }
    let states: Vec<Option<TaskState>> = pod.tasks.values().map(|id| st.tasks.get(id).and_then(|t| t.state)).collect();
    if states.iter().all(|s| *s == Some(TaskState::Running)) {
        "RUNNING"
    } else if states.iter().all(|s| s.is_some_and(|s| s.is_terminal())) {
        "STOPPED"
    } else {
        "STARTING"
    }
}

type SchedulerSource = Box<dyn Fn() -> Option<SchedulerSnapshot> + Send + Sync>;

struct SchedulerGauges(SchedulerSource);

impl std::fmt::Debug for SchedulerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchedulerGauges")
    }
}

impl Collector for SchedulerGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = (self.0)() else { return Ok(()) };
        let service = || ("service", s.service.clone());
        encode_counts(
            &mut encoder,
            "smack_scheduler_plan_status",
            "1 for a plan's current status, 0 for the others.",
            s.plans.iter().flat_map(|p| {
                PLAN_STATUSES.iter().map(move |st| {
                    (
                        vec![service(), ("plan", p.name.clone()), ("status", st.as_str().to_string())],
                        u64::from(p.status == *st),
                    )
                })
            }),
        )?;
        encode_counts(
            &mut encoder,
            "smack_scheduler_steps",
            "Steps of each plan and phase, by state.",
            s.plans.iter().flat_map(|p| {
                p.phases.iter().flat_map(move |ph| {
                    STEP_STATES.iter().map(move |st| {
                        (
                            vec![
                                service(),
                                ("plan", p.name.clone()),
                                ("phase", ph.name.clone()),
                                ("state", st.as_str().to_string()),
                            ],
                            ph.steps.get(st.as_str()).copied().unwrap_or(0),
                        )
                    })
                })
            }),
        )?;
        encode_counts(
            &mut encoder,
            "smack_scheduler_pods",
            "Pod instances of the service, by state.",
            POD_STATES
                .iter()
                .map(|st| (vec![service(), ("state", st.to_string())], s.pods.get(st).copied().unwrap_or(0))),
        )
    }
}

/// A service scheduler's counters (recoveries, offer evaluations); its
/// gauges come from a snapshot function given to [`SchedulerMetrics::register`].
#[derive(Debug)]
pub struct SchedulerMetrics {
    service: String,
    recoveries: Family<Labels, Counter>,
    evaluations: Family<Labels, Counter>,
}

impl SchedulerMetrics {
    /// The counters of the service `service`, every series at zero.
    pub fn new(service: &str) -> Arc<SchedulerMetrics> {
        let m = SchedulerMetrics {
            service: service.to_string(),
            recoveries: Family::default(),
            evaluations: Family::default(),
        };
        for kind in ["transient", "permanent"] {
            drop(m.recoveries.get_or_create(&m.labels([("kind", kind)])));
        }
        for stage in Stage::ALL {
            for result in ["pass", "fail"] {
                drop(m.evaluations.get_or_create(&m.labels([("stage", stage.as_str()), ("result", result)])));
            }
        }
        Arc::new(m)
    }

    fn labels<const N: usize>(&self, extra: [(&'static str, &str); N]) -> Labels {
        let mut l = vec![("service", self.service.clone())];
        l.extend(extra.into_iter().map(|(k, v)| (k, v.to_string())));
        l
    }

    /// Registers the scheduler families in `registry`; `snapshot` is called
    /// on each scrape for the gauges.
    pub fn register(
        &self,
        registry: &mut Registry,
        snapshot: impl Fn() -> Option<SchedulerSnapshot> + Send + Sync + 'static,
    ) {
        registry.register(
            "smack_scheduler_recoveries",
            "Pods relaunched by the recovery plan: transient (in place, on its own reservation) or permanent (placed anew: replaced or its reservation lost)",
            self.recoveries.clone(),
        );
        registry.register(
            "smack_scheduler_offer_evaluations",
            "Offer evaluation stage outcomes (an offer for a pod runs through every stage)",
            self.evaluations.clone(),
        );
        registry.register_collector(Box::new(SchedulerGauges(Box::new(snapshot))));
    }

    /// Counts one recovery launch; `permanent` when the pod was placed anew.
    pub fn recovered(&self, permanent: bool) {
        let kind = if permanent { "permanent" } else { "transient" };
        self.recoveries.get_or_create(&self.labels([("kind", kind)])).inc();
    }

    /// Counts `n` outcomes of one stage.
    pub fn evaluated_n(&self, stage: Stage, pass: bool, n: u64) {
        let result = if pass { "pass" } else { "fail" };
        self.evaluations.get_or_create(&self.labels([("stage", stage.as_str()), ("result", result)])).inc_by(n);
    }

    /// Counts each stage outcome of one offer evaluation.
    pub fn evaluated(&self, e: &Evaluation) {
        for o in &e.outcomes {
            let result = if o.pass { "pass" } else { "fail" };
            self.evaluations.get_or_create(&self.labels([("stage", o.stage.as_str()), ("result", result)])).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn master_families_encode_as_openmetrics() {
        let reg = new_registry();
        let m = MasterMetrics::default();
        m.register(&mut reg.write().unwrap(), || {
            let mut s = MasterSnapshot { agents_reachable: 2, frameworks_connected: 1, ..Default::default() };
            s.capacity.cpus = 4.0;
            s.reserved.entry("store".into()).or_default().cpus = 0.5;
            Some(s)
        });
        m.offers_made(3);
        m.offer_declined();
        m.operation("RESERVE", true);
        m.operation("LAUNCH", false);
        m.allocation_cycle(Duration::from_millis(2));
        let text = encode(&reg);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            line(&text, "smack_master_agents{state=\"REACHABLE\"}"),
            Some("smack_master_agents{state=\"REACHABLE\"} 2")
        );
        assert!(line(&text, "smack_master_agents{state=\"UNREACHABLE\"} 0").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_made_total 3").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_declined_total 1").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_rescinded_total 0").is_some(), "{text}");
        assert!(
            line(&text, "smack_master_operations_total{type=\"RESERVE\",result=\"applied\"} 1").is_some(),
            "{text}"
        );
        assert!(line(&text, "smack_master_operations_total{type=\"LAUNCH\",result=\"refused\"} 1").is_some(), "{text}");
        assert!(
            line(&text, "smack_master_resources_reserved{resource=\"cpus\",role=\"store\"} 0.5").is_some(),
            "{text}"
        );
        assert!(line(&text, "smack_master_resources_capacity{resource=\"cpus\"} 4").is_some(), "{text}");
        assert!(line(&text, "smack_master_allocation_cycle_seconds_count 1").is_some(), "{text}");
        assert!(line(&text, "smack_master_frameworks_connected 1").is_some(), "{text}");
    }

    #[test]
    fn agents_share_one_set_of_families() {
        let reg = new_registry();
        let m = AgentMetrics::new();
        m.register(&mut reg.write().unwrap());
        for host in ["127.0.1.1", "127.0.1.2"] {
            let h = host.to_string();
            m.add_agent(host, move || {
                Some(AgentSnapshot {
                    hostname: h.clone(),
                    tasks: [(TaskState::Running, 1)].into(),
                    volumes: [("v1".to_string(), 123)].into(),
                })
            });
        }
        m.add_agent("127.0.1.3", || None);
        m.launched("127.0.1.1");
        m.killed("127.0.1.2");
        m.health_checks_failed("127.0.1.2", 1);
        let text = encode(&reg);
        assert_eq!(text.matches("# TYPE smack_agent_tasks gauge").count(), 1, "{text}");
        assert!(line(&text, "smack_agent_launches_total{agent=\"127.0.1.1\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_kills_total{agent=\"127.0.1.2\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_health_check_failures_total{agent=\"127.0.1.2\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_tasks{agent=\"127.0.1.2\",state=\"RUNNING\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_tasks{agent=\"127.0.1.1\",state=\"LOST\"} 0").is_some(), "{text}");
        assert!(line(&text, "smack_agent_kills_total{agent=\"127.0.1.3\"} 0").is_some(), "{text}");
        assert!(!text.contains("smack_agent_tasks{agent=\"127.0.1.3\""), "{text}");
        assert!(!text.contains(".."), "{text}");
        assert!(
            line(&text, "smack_agent_volume_used_bytes{agent=\"127.0.1.1\",volume=\"v1\"} 123").is_some(),
            "{text}"
        );
    }

    fn scheduler_state() -> SchedulerState {
        use crate::scheduler::plan::{Phase, Plan, Step, Strategy};
        use crate::scheduler::service::TaskRecord;
        let mut done = Step::new("hello-0", ["server"]);
        done.state = StepState::Complete;
        let mut starting = Step::new("hello-1", ["server"]);
        starting.state = StepState::Starting;
        let plan = Plan::from_phases(
            "deploy",
            Strategy::Serial,
            vec![Phase::new("hello", Strategy::Serial, vec![done, starting, Step::new("hello-2", ["server"])])],
        )
        .unwrap();
        let mut st = SchedulerState { plans: [("deploy".to_string(), plan)].into(), ..Default::default() };
        let pod = |name: &str, task: &str| PodRecord {
            name: name.into(),
            agent_id: Some("a1".into()),
            tasks: [("server".to_string(), task.to_string())].into(),
            ..Default::default()
        };
        st.pods.insert("hello-0".into(), pod("hello-0", "t0"));
        st.pods.insert("hello-1".into(), pod("hello-1", "t1"));
        st.pods.insert("hello-2".into(), PodRecord { name: "hello-2".into(), ..Default::default() });
        st.pods.insert("hello-3".into(), PodRecord { paused: true, ..pod("hello-3", "t3") });
        st.pods.insert("hello-4".into(), PodRecord { lost_since_ms: Some(1), ..pod("hello-4", "t4") });
        st.pods.insert("hello-5".into(), pod("hello-5", "t5"));
        for (id, state) in [
            ("t0", Some(TaskState::Running)),
            ("t1", None),
            ("t4", Some(TaskState::Lost)),
            ("t5", Some(TaskState::Failed)),
        ] {
            st.tasks.insert(
                id.into(),
                TaskRecord {
                    id: id.into(),
                    pod: String::new(),
                    task: "server".into(),
                    agent_id: "a1".into(),
                    state,
                    ready: false,
                    message: String::new(),
                    launched_ms: 0,
                },
            );
        }
        st
    }

    #[test]
    fn pods_are_counted_by_state() {
        let st = scheduler_state();
        let snap = SchedulerSnapshot::of("hello", &st);
        let want: BTreeMap<&str, u64> =
            [("RUNNING", 1), ("STARTING", 1), ("WAITING", 1), ("PAUSED", 1), ("LOST", 1), ("STOPPED", 1)].into();
        assert_eq!(snap.pods, want);
        assert_eq!(snap.plans.len(), 1);
        assert_eq!(snap.plans[0].phases[0].steps, [("COMPLETE", 1), ("STARTING", 1), ("PENDING", 1)].into());
    }

    #[test]
    fn scheduler_families_encode_with_every_state() {
        let reg = new_registry();
        let m = SchedulerMetrics::new("hello");
        let st = scheduler_state();
        m.register(&mut reg.write().unwrap(), move || Some(SchedulerSnapshot::of("hello", &st)));
        m.recovered(false);
        m.recovered(false);
        m.recovered(true);
        let outcome = |stage, pass| crate::scheduler::evaluator::StageOutcome { stage, pass, reason: String::new() };
        m.evaluated(&Evaluation {
            pod: "hello-0".into(),
            offer_id: "o1".into(),
            agent_id: "a1".into(),
            outcomes: vec![outcome(Stage::Placement, true), outcome(Stage::CpusMem, false)],
            matched: None,
        });
        let text = encode(&reg);
        let has = |l: &str| assert!(line(&text, l).is_some(), "{l} missing:\n{text}");
        has("smack_scheduler_recoveries_total{service=\"hello\",kind=\"transient\"} 2");
        has("smack_scheduler_recoveries_total{service=\"hello\",kind=\"permanent\"} 1");
        has("smack_scheduler_offer_evaluations_total{service=\"hello\",stage=\"placement\",result=\"pass\"} 1");
        has("smack_scheduler_offer_evaluations_total{service=\"hello\",stage=\"cpus/mem\",result=\"fail\"} 1");
        has("smack_scheduler_offer_evaluations_total{service=\"hello\",stage=\"volumes\",result=\"fail\"} 0");
        has("smack_scheduler_plan_status{service=\"hello\",plan=\"deploy\",status=\"IN_PROGRESS\"} 1");
        has("smack_scheduler_plan_status{service=\"hello\",plan=\"deploy\",status=\"COMPLETE\"} 0");
        has("smack_scheduler_steps{service=\"hello\",plan=\"deploy\",phase=\"hello\",state=\"COMPLETE\"} 1");
        has("smack_scheduler_steps{service=\"hello\",plan=\"deploy\",phase=\"hello\",state=\"ERROR\"} 0");
        has("smack_scheduler_pods{service=\"hello\",state=\"LOST\"} 1");
        assert_eq!(text.matches("# TYPE smack_scheduler_steps gauge").count(), 1, "{text}");
    }
}
