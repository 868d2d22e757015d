//! A service scheduler's metric families: plan statuses, steps and pods
//! by state (gauges read from its state on each scrape), recoveries and
//! offer evaluation outcomes (`smack_scheduler_*`).

use crate::metrics::{encode_counts, Labels};
use crate::scheduler::evaluator::{Evaluation, Stage};
use crate::scheduler::plan::{Status, StepState};
use crate::scheduler::pod::PodPhase;
use crate::scheduler::service::SchedulerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Pods by phase.
    pub pods: BTreeMap<PodPhase, u64>,
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
            *pods.entry(st.pod_phase(p)).or_default() += 1;
        }
        SchedulerSnapshot { service: service.to_string(), plans, pods }
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
            PodPhase::ALL
                .iter()
                .map(|st| (vec![service(), ("state", st.as_str().to_string())], s.pods.get(st).copied().unwrap_or(0))),
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
    use crate::metrics::{encode, new_registry};
    use crate::resources::TaskState;
    use crate::scheduler::service::PodRecord;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
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
        let pods: BTreeMap<&str, u64> = snap.pods.iter().map(|(p, n)| (p.as_str(), *n)).collect();
        assert_eq!(pods, want);
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
