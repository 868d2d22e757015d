//! A phase: a named group of steps (usually one pod type) under one strategy.

use serde::{Deserialize, Serialize};

use super::strategy::ChildView;
use super::{PlanError, Status, Step, StepState, Strategy};

/// A named group of steps run by one strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// `broker`, `db`, `analyze`, …
    pub name: String,
    /// How the steps are ordered.
    pub strategy: Strategy,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Derived from the steps; refreshed by every [`super::Plan`] method.
    #[serde(default)]
    pub status: Status,
    /// Sibling phases (by name) that must be COMPLETE first, when the plan's
    /// strategy is `dependency`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Paused by the operator (`plan pause PLAN PHASE`).
    #[serde(default)]
    pub interrupted: bool,
    /// The operator let a canary phase go on past its first step.
    #[serde(default)]
    pub canary_resumed: bool,
    /// The phase waits for the order of its steps (a pod type's
    /// `update-order` hook) before any of them starts: while set, the phase
    /// hands out no candidates; [`Phase::apply_order`] clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_order: bool,
}

impl Phase {
    /// A phase of `steps` run by `strategy`.
    pub fn new(name: impl Into<String>, strategy: Strategy, steps: Vec<Step>) -> Phase {
        Phase {
            name: name.into(),
            strategy,
            steps,
            status: Status::Pending,
            dependencies: Vec::new(),
            interrupted: false,
            canary_resumed: false,
            awaiting_order: false,
        }
    }

    /// The same phase, waiting for its step order ([`Phase::apply_order`]).
    pub fn awaiting_order(mut self, awaiting: bool) -> Phase {
        self.awaiting_order = awaiting;
        self
    }

    /// Reorders the steps not yet started (PENDING) by `order`, a list of
    /// pod instances: the named ones first, in that order, then the others
    /// in their old order; steps already under way keep their places, the
    /// pending ones fill the remaining places. Names of no step here are
    /// ignored. Clears [`Phase::awaiting_order`]. Returns the pod instances
    /// in their new order.
    pub fn apply_order(&mut self, order: &[String]) -> Vec<String> {
        let slots: Vec<usize> = (0..self.steps.len()).filter(|&i| self.steps[i].state == StepState::Pending).collect();
        let mut pending: Vec<(usize, Step)> = slots.iter().map(|&i| (i, self.steps[i].clone())).collect();
        let rank = |s: &Step, old: usize| match order.iter().position(|p| *p == s.pod_instance) {
            Some(at) => (0, at, old),
            None => (1, 0, old),
        };
        pending.sort_by_key(|(old, s)| rank(s, *old));
        for (slot, (_, step)) in slots.into_iter().zip(pending) {
            self.steps[slot] = step;
        }
        self.awaiting_order = false;
        self.steps.iter().map(|s| s.pod_instance.clone()).collect()
    }

    /// The same phase, waiting for the named sibling phases.
    pub fn with_dependencies<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Phase {
        self.dependencies = deps.into_iter().map(Into::into).collect();
        self
    }

    /// The step called `name`, or else the one step working on pod instance
    /// `name` (so `broker-1` finds `broker-1:[broker]`).
    pub fn step_index(&self, plan: &str, name: &str) -> Result<usize, PlanError> {
        if let Some(i) = self.steps.iter().position(|s| s.name == name) {
            return Ok(i);
        }
        let by_pod: Vec<usize> = (0..self.steps.len()).filter(|&i| self.steps[i].pod_instance == name).collect();
        match by_pod.as_slice() {
            [i] => Ok(*i),
            [] => Err(PlanError::UnknownStep {
                plan: plan.to_string(),
                phase: self.name.clone(),
                step: name.to_string(),
                valid: self.steps.iter().map(|s| s.name.clone()).collect(),
            }),
            many => Err(PlanError::AmbiguousStep {
                phase: self.name.clone(),
                step: name.to_string(),
                matches: many.iter().map(|&i| self.steps[i].name.clone()).collect(),
            }),
        }
    }

    pub(crate) fn step_views(&self) -> Vec<ChildView<'_>> {
        self.steps
            .iter()
            .map(|s| ChildView {
                name: &s.name,
                complete: s.state.status() == Status::Complete,
                dependencies: &s.dependencies,
            })
            .collect()
    }

    /// True when the phase's canary strategy waits for the operator's `resume`.
    pub fn awaiting_resume(&self) -> bool {
        self.strategy.awaiting_resume(&self.step_views(), self.canary_resumed)
    }

    /// The phase's status by the rules in [`super::status`].
    pub fn derive_status(&self) -> Status {
        Status::derive(self.steps.iter().map(|s| s.state.status()), self.interrupted, self.awaiting_resume(), false)
    }

    /// Indices of the steps the strategy lets work now (before pauses,
    /// backoff and pod conflicts are applied).
    pub(crate) fn eligible_steps(&self) -> Vec<usize> {
        self.strategy.eligible(&self.step_views(), self.canary_resumed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Plan;
    use super::*;

    fn phase(pods: &[&str]) -> Phase {
        Phase::new("broker", Strategy::Serial, pods.iter().map(|p| Step::new(p, ["broker"])).collect())
    }

    fn order(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_named_pods_go_first_in_their_order_and_the_rest_keep_theirs() {
        let mut p = phase(&["broker-0", "broker-1", "broker-2", "broker-3"]).awaiting_order(true);
        let got = p.apply_order(&order(&["broker-2", "broker-0"]));
        assert_eq!(got, ["broker-2", "broker-0", "broker-1", "broker-3"]);
        assert!(!p.awaiting_order);
        // The leader last: every other pod named before it.
        let mut p = phase(&["broker-0", "broker-1", "broker-2"]);
        assert_eq!(p.apply_order(&order(&["broker-1", "broker-2", "broker-0"])), ["broker-1", "broker-2", "broker-0"]);
        // The step names move with their pods.
        assert_eq!(p.steps[2].name, Step::new("broker-0", ["broker"]).name);
    }

    #[test]
    fn unknown_names_and_an_empty_order_change_nothing() {
        let mut p = phase(&["broker-0", "broker-1"]).awaiting_order(true);
        assert_eq!(p.apply_order(&order(&["broker-9", "db-0"])), ["broker-0", "broker-1"]);
        let mut p = phase(&["broker-0", "broker-1"]).awaiting_order(true);
        assert_eq!(p.apply_order(&[]), ["broker-0", "broker-1"]);
        assert!(!p.awaiting_order, "an empty order releases the phase too");
    }

    #[test]
    fn steps_under_way_keep_their_places() {
        let mut p = phase(&["broker-0", "broker-1", "broker-2", "broker-3"]);
        p.steps[0].state = StepState::Complete;
        p.steps[2].state = StepState::Starting;
        let got = p.apply_order(&order(&["broker-3", "broker-2", "broker-1", "broker-0"]));
        assert_eq!(got, ["broker-0", "broker-3", "broker-2", "broker-1"]);
    }

    #[test]
    fn a_phase_awaiting_its_order_hands_out_nothing_until_it_has_one() {
        let phases = vec![
            phase(&["controller-0", "controller-1", "controller-2"]).awaiting_order(true),
            Phase::new("brokers", Strategy::Serial, vec![Step::new("broker-0", ["broker"])]),
        ];
        let mut plan = Plan::from_phases("update", Strategy::Serial, phases).unwrap();
        assert!(plan.candidates(0).is_empty(), "the serial plan waits on its first phase");
        assert_eq!(plan.phases_awaiting_order(), [0]);
        assert_eq!(plan.status, Status::Pending);
        plan.phases[0].apply_order(&order(&["controller-1", "controller-2", "controller-0"]));
        plan.refresh();
        assert!(plan.phases_awaiting_order().is_empty());
        let first: Vec<&str> = plan.candidates(0).iter().map(|r| plan.get(*r).unwrap().pod_instance.as_str()).collect();
        assert_eq!(first, ["controller-1"]);
        // Paused plans run no hook.
        let mut paused =
            Plan::from_phases("update", Strategy::Serial, vec![phase(&["broker-0"]).awaiting_order(true)]).unwrap();
        paused.pause(None).unwrap();
        assert!(paused.phases_awaiting_order().is_empty());
    }

    #[test]
    fn the_flag_survives_a_round_trip_and_old_records_load_without_it() {
        let p = phase(&["broker-0"]).awaiting_order(true);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"awaiting_order\":true"), "{text}");
        let back: Phase = serde_json::from_str(&text).unwrap();
        assert!(back.awaiting_order);
        let old = serde_json::to_string(&phase(&["broker-0"])).unwrap();
        assert!(!old.contains("awaiting_order"), "{old}");
        assert!(!serde_json::from_str::<Phase>(&old).unwrap().awaiting_order);
    }
}
