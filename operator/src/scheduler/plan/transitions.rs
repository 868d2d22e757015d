//! The scheduler's reports, applied to a step of the plan by reference.
//! Each delegates to the step's state machine ([`super::step`]) and then
//! refreshes the plan's derived status.

use super::{Plan, PlanError, StepRef};

impl Plan {
    /// The scheduler picked the step and evaluates offers for it:
    /// PENDING (or DELAYED past its backoff) → PREPARED.
    pub fn start_step(&mut self, r: StepRef, now_ms: u64) -> Result<(), PlanError> {
        self.apply(r, |s| s.start(now_ms))
    }

    /// The accept with the step's LAUNCH went out: PREPARED → STARTING.
    pub fn on_launched(&mut self, r: StepRef) -> Result<(), PlanError> {
        self.apply(r, |s| s.launched())
    }

    /// `task` of the step runs: STARTED once all of its tasks do.
    pub fn on_task_running(&mut self, r: StepRef, task: &str) -> Result<(), PlanError> {
        self.apply(r, |s| s.task_running(task))
    }

    /// `task` of the step passed its readiness check (or has none):
    /// COMPLETE once all of its tasks are ready.
    pub fn on_task_ready(&mut self, r: StepRef, task: &str) -> Result<(), PlanError> {
        self.apply(r, |s| s.task_ready(task))
    }

    /// `task` (goal `FINISH` or `ONCE`) finished successfully: counts as ready.
    pub fn on_task_finished(&mut self, r: StepRef, task: &str) -> Result<(), PlanError> {
        self.apply(r, |s| s.task_finished(task))
    }

    /// A task of the step failed: DELAYED, with the plan's backoff policy.
    pub fn on_task_failed(&mut self, r: StepRef, now_ms: u64) -> Result<(), PlanError> {
        let policy = self.backoff_policy;
        self.apply(r, |s| s.task_failed(now_ms, &policy))
    }

    /// The step failed in a way that needs the operator: ERROR with `message`.
    pub fn on_error(&mut self, r: StepRef, message: impl Into<String>) -> Result<(), PlanError> {
        let message = message.into();
        self.apply(r, |s| {
            s.error(message);
            Ok(())
        })
    }

    /// Says why the step waits (e.g. "no agent in zone-c with 10 GiB free
    /// disk: 4 offers declined at the volume stage"); the next state change
    /// clears it.
    pub fn set_message(&mut self, r: StepRef, message: impl Into<String>) -> Result<(), PlanError> {
        self.step_mut(r)?.message = Some(message.into());
        Ok(())
    }

    /// Forgets a step's crash-loop count (e.g. its task ran stably for a while).
    pub fn reset_backoff(&mut self, r: StepRef) -> Result<(), PlanError> {
        self.step_mut(r)?.reset_backoff();
        Ok(())
    }

    /// Moves every DELAYED step whose backoff has elapsed back to PENDING
    /// (WAITING if paused). Returns how many moved.
    pub fn tick(&mut self, now_ms: u64) -> usize {
        let mut moved = 0;
        for phase in &mut self.phases {
            for step in &mut phase.steps {
                moved += usize::from(step.tick(now_ms));
            }
        }
        if moved > 0 {
            self.refresh();
        }
        moved
    }

    fn apply(
        &mut self,
        r: StepRef,
        f: impl FnOnce(&mut super::Step) -> Result<(), PlanError>,
    ) -> Result<(), PlanError> {
        let result = f(self.step_mut(r)?);
        self.refresh();
        result
    }
}
