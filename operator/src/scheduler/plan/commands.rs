//! The operator's commands on a plan: pause, resume, restart, force-complete,
//! and start/stop of custom plans. Each is recorded in the plan value, so
//! persisting the plan persists the override.
//!
//! - `pause(None)` pauses the plan and each of its phases; `pause(Some(p))`
//!   pauses phase `p`. Steps not yet started (PENDING, PREPARED) become
//!   WAITING and no step of a paused phase is a candidate. Steps already
//!   launched are left to finish: a pause stops new work, it kills nothing.
//! - `resume(None)` ends every pause; `resume(Some(p))` ends phase `p`'s pause
//!   and the plan-wide one (the other phases stay paused if they were). A
//!   resume also opens a canary gate that waits for it — the plan's and every
//!   phase's for `None`, phase `p`'s for `Some(p)` — but never one whose first
//!   child is not yet complete: the operator approves a canary only after
//!   seeing it.
//! - `restart` puts steps back to PENDING (WAITING where paused) and forgets
//!   their backoff; restarting a whole phase or plan closes its canary gate.
//! - `force_complete` marks one step COMPLETE.
//! - Custom plans are built stopped ([`Plan::stop`]); `start(parameters)`
//!   restarts the plan from the beginning with those parameters.

use std::collections::BTreeMap;

use super::{Plan, PlanError};

impl Plan {
    /// Pauses the plan (`None`) or one phase: no new work starts.
    pub fn pause(&mut self, phase: Option<&str>) -> Result<(), PlanError> {
        match phase {
            None => {
                self.interrupted = true;
                self.phases.iter_mut().for_each(|p| p.interrupted = true);
            }
            Some(name) => {
                let i = self.phase_index(name)?;
                self.phases[i].interrupted = true;
            }
        }
        self.refresh();
        Ok(())
    }

    /// Ends a pause of the plan (`None`) or of one phase, and opens canary
    /// gates that wait for it.
    pub fn resume(&mut self, phase: Option<&str>) -> Result<(), PlanError> {
        match phase {
            None => {
                self.interrupted = false;
                if self.awaiting_resume() {
                    self.canary_resumed = true;
                }
                for p in &mut self.phases {
                    p.interrupted = false;
                    if p.awaiting_resume() {
                        p.canary_resumed = true;
                    }
                }
            }
            Some(name) => {
                let i = self.phase_index(name)?;
                self.interrupted = false;
                let p = &mut self.phases[i];
                p.interrupted = false;
                if p.awaiting_resume() {
                    p.canary_resumed = true;
                }
            }
        }
        self.refresh();
        Ok(())
    }

    /// Puts the whole plan, one phase, or one step back to PENDING.
    pub fn restart(&mut self, phase: Option<&str>, step: Option<&str>) -> Result<(), PlanError> {
        match (phase, step) {
            (None, Some(_)) => return Err(PlanError::StepWithoutPhase),
            (None, None) => {
                self.canary_resumed = false;
                for p in &mut self.phases {
                    p.canary_resumed = false;
                    p.steps.iter_mut().for_each(|s| s.restart());
                }
            }
            (Some(name), None) => {
                let i = self.phase_index(name)?;
                let p = &mut self.phases[i];
                p.canary_resumed = false;
                p.steps.iter_mut().for_each(|s| s.restart());
            }
            (Some(phase), Some(step)) => {
                let r = self.step_ref(phase, step)?;
                self.phases[r.phase].steps[r.step].restart();
            }
        }
        self.refresh();
        Ok(())
    }

    /// Marks one step COMPLETE by the operator's word.
    pub fn force_complete(&mut self, phase: &str, step: &str) -> Result<(), PlanError> {
        let r = self.step_ref(phase, step)?;
        self.phases[r.phase].steps[r.step].force_complete();
        self.refresh();
        Ok(())
    }

    /// Starts a custom plan from the beginning with `parameters`.
    pub fn start(&mut self, parameters: BTreeMap<String, String>) {
        self.parameters = parameters;
        self.interrupted = false;
        self.canary_resumed = false;
        for p in &mut self.phases {
            p.interrupted = false;
            p.canary_resumed = false;
            p.steps.iter_mut().for_each(|s| s.restart());
        }
        self.refresh();
    }

    /// Stops a custom plan: paused and reset, its parameters dropped, until
    /// the next [`Plan::start`]. Tasks already running are not killed here.
    pub fn stop(&mut self) {
        self.parameters.clear();
        self.interrupted = true;
        self.canary_resumed = false;
        for p in &mut self.phases {
            p.canary_resumed = false;
            p.steps.iter_mut().for_each(|s| s.restart());
        }
        self.refresh();
    }

    /// Records a plan-wide error: the plan becomes ERROR and offers no work.
    pub fn add_error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
        self.refresh();
    }

    /// Clears the plan-wide errors.
    pub fn clear_errors(&mut self) {
        self.errors.clear();
        self.refresh();
    }
}
