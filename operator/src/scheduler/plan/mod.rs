//! The plan engine: plan → phase → step, strategies, transitions and operator
//! commands, as pure values the scheduler persists.
//!
//! Sans-IO: nothing here reads a clock, touches a disk or talks to the
//! master. The scheduler passes time in as `now_ms`, asks a [`Plan`] for its
//! [`Plan::candidates`], works on them, reports what happened through the
//! transition methods (`start_step`, `on_launched`, `on_task_running`, …),
//! and stores the plan (it is `serde`-serializable) after each change, so
//! progress and operator overrides (pause, force-complete) survive a
//! restart.
//!
//! Where to read on: [`step`] (the step state machine), [`strategy`] (who
//! may work when), [`status`] (how a phase's and a plan's status is derived),
//! [`Plan::candidates`] (strategy + pauses + backoff + pods already in
//! work), the operator commands ([`Plan::pause`], [`Plan::resume`],
//! [`Plan::restart`], [`Plan::force_complete`], and [`Plan::start`] /
//! [`Plan::stop`] for custom plans), the builders ([`Plan::deploy_for`],
//! [`Plan::from_phases`]), and [`render_tree`] (what `smack plan show`
//! prints).

mod build;
mod candidates;
mod commands;
mod error;
pub mod kind;
mod phase;
mod render;
pub mod status;
pub mod step;
pub mod strategy;
mod transitions;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use error::PlanError;
pub use kind::PlanKind;
pub use phase::Phase;
pub use render::render_tree;
pub use status::Status;
pub use step::{Backoff, BackoffPolicy, Step, StepState, TaskProgress};
pub use strategy::Strategy;

use strategy::ChildView;

/// The work a framework does: `deploy`, `update`, `recovery`,
/// `decommission`, or a custom plan such as `rebalance`.
///
/// Fields are public for reading and for `--output json`; change a plan
/// through its methods, which keep `status` and the pause marks consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `deploy`, `update`, …
    pub name: String,
    /// How the phases are ordered.
    pub strategy: Strategy,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// Derived from the phases; refreshed by every method that changes the plan.
    #[serde(default)]
    pub status: Status,
    /// Plan-wide errors (e.g. a spec that cannot be rolled out); any makes the
    /// plan `ERROR`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Paused as a whole (`plan pause PLAN`, or a custom plan not started).
    #[serde(default)]
    pub interrupted: bool,
    /// The operator let a canary plan go on past its first phase.
    #[serde(default)]
    pub canary_resumed: bool,
    /// The parameters a custom plan was started with (`plan start -p K=V`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// How crash-loop backoff grows for this plan's steps.
    #[serde(default)]
    pub backoff_policy: BackoffPolicy,
}

/// Points at one step of a plan: phase index, step index. Candidates and
/// lookups hand these out; they stay valid because a plan's shape never
/// changes after it is built (a changed spec makes a new plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepRef {
    /// Index into [`Plan::phases`].
    pub phase: usize,
    /// Index into that phase's steps.
    pub step: usize,
}

impl Plan {
    /// The phase called `name`.
    pub fn phase(&self, name: &str) -> Result<&Phase, PlanError> {
        self.phase_index(name).map(|i| &self.phases[i])
    }

    /// The step `step` of phase `phase`; `step` is the full name
    /// (`broker-1:[broker]`) or the pod instance (`broker-1`) if that is unique.
    pub fn step(&self, phase: &str, step: &str) -> Result<&Step, PlanError> {
        let r = self.step_ref(phase, step)?;
        Ok(&self.phases[r.phase].steps[r.step])
    }

    /// The reference of the step named as in [`Plan::step`].
    pub fn step_ref(&self, phase: &str, step: &str) -> Result<StepRef, PlanError> {
        let p = self.phase_index(phase)?;
        let s = self.phases[p].step_index(&self.name, step)?;
        Ok(StepRef { phase: p, step: s })
    }

    /// The step a reference points at.
    pub fn get(&self, r: StepRef) -> Result<&Step, PlanError> {
        self.phases.get(r.phase).and_then(|p| p.steps.get(r.step)).ok_or_else(|| self.no_such(r))
    }

    /// Every step with its reference, in plan order.
    pub fn steps(&self) -> impl Iterator<Item = (StepRef, &Step)> + '_ {
        self.phases.iter().enumerate().flat_map(|(p, phase)| {
            phase.steps.iter().enumerate().map(move |(s, step)| (StepRef { phase: p, step: s }, step))
        })
    }

    /// The step of this plan that a task report of `pod_instance`/`task`
    /// belongs to: the one holding that pod if any, else the first that
    /// runs that task and is not complete.
    pub fn step_for_task(&self, pod_instance: &str, task: &str) -> Option<StepRef> {
        let runs = |s: &Step| s.pod_instance == pod_instance && s.tasks.iter().any(|t| t == task);
        self.steps()
            .find(|(_, s)| runs(s) && s.state.holds_pod())
            .or_else(|| self.steps().find(|(_, s)| runs(s) && s.state != StepState::Complete))
            .map(|(r, _)| r)
    }

    /// The plan's status by the rules in [`status`], computed now.
    pub fn derive_status(&self) -> Status {
        Status::derive(
            self.phases.iter().map(Phase::derive_status),
            self.interrupted,
            self.awaiting_resume(),
            !self.errors.is_empty(),
        )
    }

    /// True when the plan's canary strategy waits for the operator's `resume`.
    pub fn awaiting_resume(&self) -> bool {
        self.strategy.awaiting_resume(&self.phase_views(), self.canary_resumed)
    }

    /// True when every step is COMPLETE.
    pub fn is_complete(&self) -> bool {
        self.derive_status() == Status::Complete
    }

    pub(crate) fn phase_views(&self) -> Vec<ChildView<'_>> {
        self.phases
            .iter()
            .map(|p| ChildView {
                name: &p.name,
                complete: p.derive_status() == Status::Complete,
                dependencies: &p.dependencies,
            })
            .collect()
    }

    pub(crate) fn phase_index(&self, name: &str) -> Result<usize, PlanError> {
        self.phases.iter().position(|p| p.name == name).ok_or_else(|| PlanError::UnknownPhase {
            plan: self.name.clone(),
            phase: name.to_string(),
            valid: self.phases.iter().map(|p| p.name.clone()).collect(),
        })
    }

    pub(crate) fn no_such(&self, r: StepRef) -> PlanError {
        PlanError::NoSuchStepRef { plan: self.name.clone(), phase: r.phase, step: r.step }
    }

    pub(crate) fn step_mut(&mut self, r: StepRef) -> Result<&mut Step, PlanError> {
        let err = self.no_such(r);
        self.phases.get_mut(r.phase).and_then(|p| p.steps.get_mut(r.step)).ok_or(err)
    }

    /// Re-applies pauses to the steps and recomputes every cached status.
    /// Every method that changes the plan ends here; call it after loading a
    /// plan from an older record or after editing its fields by hand.
    pub fn refresh(&mut self) {
        let plan_paused = self.interrupted;
        for phase in &mut self.phases {
            let paused = plan_paused || phase.interrupted;
            for step in &mut phase.steps {
                step.hold(paused);
            }
            phase.status = phase.derive_status();
        }
        self.status = self.derive_status();
    }
}

impl Plan {
    /// What the plan is for, from its name.
    pub fn kind(&self) -> PlanKind {
        PlanKind::of(&self.name)
    }
}
