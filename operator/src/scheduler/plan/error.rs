//! The plan engine's errors: every lookup or transition that can be refused.

use thiserror::Error;

use super::StepState;

/// Why a plan lookup, transition or operator command was refused.
///
/// Every variant names what was asked for and, where it helps, what would
/// have been valid, so a CLI can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A phase name that the plan does not have.
    #[error("plan {plan} has no phase {phase:?}; its phases are: {}", list(.valid))]
    UnknownPhase {
        /// The plan asked.
        plan: String,
        /// The phase asked for.
        phase: String,
        /// The phases the plan has.
        valid: Vec<String>,
    },
    /// A step name that the phase does not have.
    #[error("phase {phase} of plan {plan} has no step {step:?}; its steps are: {}", list(.valid))]
    UnknownStep {
        /// The plan asked.
        plan: String,
        /// The phase asked.
        phase: String,
        /// The step asked for.
        step: String,
        /// The steps the phase has.
        valid: Vec<String>,
    },
    /// A step name that matches more than one step of the phase by pod instance.
    #[error("step {step:?} is ambiguous in phase {phase}; name one of: {}", list(.matches))]
    AmbiguousStep {
        /// The phase asked.
        phase: String,
        /// The name given.
        step: String,
        /// The full names it matches.
        matches: Vec<String>,
    },
    /// A [`super::StepRef`] that points outside the plan (a stale reference).
    #[error("plan {plan} has no step at phase #{phase}, step #{step}")]
    NoSuchStepRef {
        /// The plan asked.
        plan: String,
        /// Phase index.
        phase: usize,
        /// Step index.
        step: usize,
    },
    /// A task name that the step does not run.
    #[error("step {step} has no task {task:?}; its tasks are: {}", list(.valid))]
    UnknownTask {
        /// The step.
        step: String,
        /// The task reported.
        task: String,
        /// The step's tasks.
        valid: Vec<String>,
    },
    /// A step was asked to make a transition that its state does not allow.
    #[error("step {step} cannot {event} while {from}")]
    InvalidTransition {
        /// The step.
        step: String,
        /// Its state when asked.
        from: StepState,
        /// What was asked: `start`, `launch`, `run`, …
        event: &'static str,
    },
    /// A DELAYED step was started before its backoff elapsed.
    #[error("step {step} is backing off until {until_ms} ms (asked at {now_ms} ms)")]
    BackingOff {
        /// The step.
        step: String,
        /// When it may start again.
        until_ms: u64,
        /// When it was asked to start.
        now_ms: u64,
    },
    /// `restart` named a step without naming its phase.
    #[error("a step can only be named together with its phase")]
    StepWithoutPhase,
    /// Two siblings share a name.
    #[error("{scope} has two children named {name:?}; names must be unique")]
    DuplicateName {
        /// The plan or phase holding them.
        scope: String,
        /// The repeated name.
        name: String,
    },
    /// A dependency names a sibling that does not exist.
    #[error("{name} in {scope} depends on {dependency:?}, which is not one of: {}", list(.valid))]
    UnknownDependency {
        /// The plan or phase holding the child.
        scope: String,
        /// The child declaring the dependency.
        name: String,
        /// The missing name.
        dependency: String,
        /// The siblings that exist.
        valid: Vec<String>,
    },
    /// Dependencies form a cycle, so none of them could ever start.
    #[error("dependency cycle in {scope}: {}", .cycle.join(" → "))]
    DependencyCycle {
        /// The plan or phase holding the children.
        scope: String,
        /// The names on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}
