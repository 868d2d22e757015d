//! What the scheduler persists: its pods, task records, plans and spec
//! history ([`SchedulerState`]), and the read-only questions the decisions
//! ask of it (which tasks of a pod live, whether there is work to do).

use crate::resources::{AgentId, Attributes, ReservationId, TaskId, TaskState, VolumeId};
use crate::scheduler::plan::{Plan, PlanKind, StepState};
use crate::scheduler::pod::{PodInstance, PodPhase};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A pod instance as the scheduler keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub pod_type: String,
    pub index: u32,
    /// Where its reservation is, once placed.
    pub agent_id: Option<AgentId>,
    pub hostname: String,
    pub attributes: Attributes,
    pub reservation_id: Option<ReservationId>,
    pub volume_ids: Vec<VolumeId>,
    pub ports: BTreeMap<String, u16>,
    /// Task name → the id of its latest launch.
    pub tasks: BTreeMap<String, TaskId>,
    /// Set by `pod replace`: the next placement is fresh.
    pub replace: bool,
    /// The host a replaced pod left: its new placement avoids it.
    #[serde(default)]
    pub replaced_from: Option<String>,
    /// Why the pod waits for an offer, from the offer evaluator.
    pub waiting: Option<String>,
    /// In maintenance (`pod pause`): its tasks run `sleep` on its own disk
    /// so an operator can inspect the volume; rolls skip it.
    #[serde(default)]
    pub paused: bool,
    /// When its task was reported LOST (its agent unreachable); past the
    /// permanent-failure timeout the pod is replaced.
    #[serde(default)]
    pub lost_since_ms: Option<u64>,
    /// The decommission hook of a pod being decommissioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookRun>,
    /// Offer rounds this pod, placed anew, let pass waiting for its
    /// preferred agent (`prefer:`); bounded by
    /// [`PREFER_WAIT_ROUNDS`](crate::scheduler::evaluator::PREFER_WAIT_ROUNDS),
    /// reset once placed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prefer_waits: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A decommission hook's progress, persisted so that a restart neither
/// skips it nor runs a finished one again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookRun {
    /// Its latest launch.
    pub task_id: TaskId,
    /// It exited 0: the pod may be removed.
    pub done: bool,
    /// Failed runs so far, and when the next may start.
    pub failures: u32,
    pub retry_at_ms: u64,
    /// Why the last run failed.
    pub message: String,
}

/// The task name a decommission hook runs under.
pub const DECOMMISSION_HOOK: &str = "decommission-hook";

/// A launched task as the scheduler keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub pod: String,
    pub task: String,
    pub agent_id: AgentId,
    pub state: Option<TaskState>,
    pub ready: bool,
    pub message: String,
    pub launched_ms: u64,
}

impl TaskRecord {
    /// A task just launched: no state reported yet.
    pub fn launched(id: &str, pod: &str, task: &str, agent_id: &str, now_ms: u64) -> TaskRecord {
        TaskRecord {
            id: id.to_string(),
            pod: pod.to_string(),
            task: task.to_string(),
            agent_id: agent_id.to_string(),
            state: None,
            ready: false,
            message: String::new(),
            launched_ms: now_ms,
        }
    }

    /// Whether its agent reported an end.
    pub fn is_terminal(&self) -> bool {
        self.state.is_some_and(|s| s.is_terminal())
    }
}

/// Everything the scheduler persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchedulerState {
    pub framework_id: Option<String>,
    /// The target spec, as its YAML text.
    pub spec_yaml: String,
    pub spec_file: String,
    pub pods: BTreeMap<String, PodRecord>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    pub plans: BTreeMap<String, Plan>,
    /// Reservations of ours that nobody owns any more (replaced pods).
    pub orphans: BTreeSet<ReservationId>,
    /// Earlier targets, oldest first (the last 10), with when they ended.
    #[serde(default)]
    pub spec_history: Vec<SpecVersion>,
    /// Pods whose tasks the scheduler stopped on purpose (an update roll,
    /// a decommission): their ends are not failures to recover.
    #[serde(default)]
    pub stopping: BTreeSet<String>,
}

/// A spec the service ran, kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecVersion {
    pub yaml: String,
    pub file: String,
    pub replaced_ms: u64,
}

/// What applying a spec would do, for `service diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecDiff {
    /// Pod instances that would be added.
    pub added: Vec<String>,
    /// Pod instances that would be decommissioned.
    pub removed: Vec<String>,
    /// Pod instances that would be restarted, with why.
    pub restarted: Vec<(String, String)>,
    /// Why the change would be refused, if it would.
    pub refused: Vec<String>,
}

impl SchedulerState {
    /// Names of a pod's tasks not yet ended.
    pub fn live_task_names(&self, pod: &str) -> BTreeSet<String> {
        let Some(rec) = self.pods.get(pod) else { return BTreeSet::new() };
        rec.tasks
            .iter()
            .filter(|(_, id)| self.tasks.get(*id).is_some_and(|t| !t.is_terminal()))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Tasks of a pod not yet ended.
    pub fn live_tasks(&self, pod: &str) -> Vec<TaskId> {
        let Some(rec) = self.pods.get(pod) else { return Vec::new() };
        rec.tasks.values().filter(|id| self.tasks.get(*id).is_some_and(|t| !t.is_terminal())).cloned().collect()
    }

    /// Every task the scheduler thinks is alive (for a reconcile).
    pub fn unended_tasks(&self) -> Vec<TaskId> {
        self.tasks.values().filter(|t| !t.is_terminal()).map(|t| t.id.clone()).collect()
    }

    /// A replace or decommission still under way, if any.
    pub fn destructive_in_flight(&self) -> Option<String> {
        if let Some(p) = self.plans.get(PlanKind::Decommission.as_str()) {
            if !p.is_complete() {
                return Some("the decommission plan is in progress".into());
            }
        }
        self.pods.values().find(|p| p.replace).map(|p| format!("pod {} is being replaced", p.name))
    }

    /// Whether offers are wanted: reservations to clean up, or a step of a
    /// running plan waiting for one.
    pub fn has_work(&self) -> bool {
        !self.orphans.is_empty()
            || self.plans.values().filter(|p| !p.interrupted).any(|p| {
                p.steps().any(|(_, s)| matches!(s.state, StepState::Pending | StepState::Prepared | StepState::Delayed))
            })
    }

    /// The phase of `pod`: PAUSED (maintenance), LOST (its agent is
    /// unreachable), WAITING (no placement yet, or waiting for an offer),
    /// RUNNING (every current task runs), STOPPED (every current task
    /// ended), else STARTING.
    pub fn pod_phase(&self, pod: &PodRecord) -> PodPhase {
        if pod.paused {
            return PodPhase::Paused;
        }
        if pod.lost_since_ms.is_some() {
            return PodPhase::Lost;
        }
        if pod.agent_id.is_none() || pod.waiting.is_some() || pod.tasks.is_empty() {
            return PodPhase::Waiting;
        }
        let states: Vec<Option<TaskState>> =
            pod.tasks.values().map(|id| self.tasks.get(id).and_then(|t| t.state)).collect();
        if states.iter().all(|s| *s == Some(TaskState::Running)) {
            PodPhase::Running
        } else if states.iter().all(|s| s.is_some_and(|s| s.is_terminal())) {
            PodPhase::Stopped
        } else {
            PodPhase::Starting
        }
    }

    /// When the earliest backoff of a DELAYED step ends, if any ends after `now`.
    pub fn next_backoff_end(&self, now: u64) -> Option<u64> {
        self.plans
            .values()
            .flat_map(|p| p.phases.iter().flat_map(|ph| ph.steps.iter()))
            .filter(|s| s.state == StepState::Delayed)
            .filter_map(|s| s.backoff.map(|b| b.until_ms))
            .filter(|&t| t > now)
            .min()
    }
}

/// The pod type of a pod instance name (`broker-0` → `broker`).
pub fn pod_type_of(pod: &str) -> String {
    PodInstance::type_of(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plan::{Phase, Step, Strategy};

    #[test]
    fn a_change_waits_for_destructive_work_in_flight() {
        let mut st = SchedulerState::default();
        assert_eq!(st.destructive_in_flight(), None);
        st.pods.insert("db-1".into(), PodRecord { name: "db-1".into(), replace: true, ..Default::default() });
        assert_eq!(st.destructive_in_flight().unwrap(), "pod db-1 is being replaced");
        st.pods.clear();
        let plan = Plan::from_phases(
            "decommission",
            Strategy::Serial,
            vec![Phase::new("db", Strategy::Serial, vec![Step::new("db-2", ["node"])])],
        )
        .unwrap();
        st.plans.insert("decommission".into(), plan);
        assert_eq!(st.destructive_in_flight().unwrap(), "the decommission plan is in progress");
    }

    #[test]
    fn pod_types_come_from_instance_names() {
        assert_eq!(pod_type_of("broker-0"), "broker");
        assert_eq!(pod_type_of("my-db-12"), "my-db");
    }
}
