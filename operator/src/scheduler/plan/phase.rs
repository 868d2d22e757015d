//! A phase: a named group of steps (usually one pod type) under one strategy.

use serde::{Deserialize, Serialize};

use super::strategy::ChildView;
use super::{PlanError, Status, Step, Strategy};

/// A named group of steps run by one strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// `kafka`, `cassandra`, `analyze`, …
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
        }
    }

    /// The same phase, waiting for the named sibling phases.
    pub fn with_dependencies<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Phase {
        self.dependencies = deps.into_iter().map(Into::into).collect();
        self
    }

    /// The step called `name`, or else the one step working on pod instance
    /// `name` (so `kafka-1` finds `kafka-1:[broker]`).
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
