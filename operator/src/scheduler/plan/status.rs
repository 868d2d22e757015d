//! The status of a plan or phase, derived from its children by one rule set.
//!
//! A step has a [`super::StepState`]; a phase and a plan have a [`Status`]
//! computed from their children, never set by hand. The rules, first match
//! wins:
//!
//! 1. `ERROR` — the plan carries errors, or any child is `ERROR`.
//! 2. `COMPLETE` — every child is `COMPLETE` (an empty plan or phase too).
//! 3. `WAITING` — the element itself is paused (interrupted).
//! 4. `IN_PROGRESS` — any child is in progress (for a step: `PREPARED`,
//!    `STARTING`, `STARTED` or `DELAYED`).
//! 5. `WAITING` — nothing is in progress and the work left is paused, or a
//!    canary strategy waits for the operator's `resume`.
//! 6. `IN_PROGRESS` — some children are `COMPLETE`, the rest `PENDING`.
//! 7. `PENDING` — otherwise: nothing has started.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The derived status of a plan, a phase, or (mapped from its state) a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Nothing has started.
    #[default]
    Pending,
    /// Work is under way or partly done.
    InProgress,
    /// Paused by the operator, or waiting for the operator's `resume`.
    Waiting,
    /// Everything is done.
    Complete,
    /// Something failed in a way that needs the operator.
    Error,
}

impl Status {
    /// The status as the API and CLI spell it: `IN_PROGRESS`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::InProgress => "IN_PROGRESS",
            Status::Waiting => "WAITING",
            Status::Complete => "COMPLETE",
            Status::Error => "ERROR",
        }
    }

    /// Applies the module's rule set to one element's children.
    ///
    /// `interrupted` is the element's own pause; `awaiting_resume` is true
    /// when its canary strategy holds the rest for the operator.
    pub fn derive(
        children: impl IntoIterator<Item = Status>,
        interrupted: bool,
        awaiting_resume: bool,
        has_errors: bool,
    ) -> Status {
        let (mut any, mut error, mut complete, mut progress, mut waiting) = (false, false, 0usize, false, false);
        let mut total = 0usize;
        for child in children {
            any = true;
            total += 1;
            match child {
                Status::Error => error = true,
                Status::Complete => complete += 1,
                Status::InProgress => progress = true,
                Status::Waiting => waiting = true,
                Status::Pending => {}
            }
        }
        if has_errors || error {
            Status::Error
        } else if !any || complete == total {
            Status::Complete
        } else if interrupted {
            Status::Waiting
        } else if progress {
            Status::InProgress
        } else if waiting || awaiting_resume {
            Status::Waiting
        } else if complete > 0 {
            Status::InProgress
        } else {
            Status::Pending
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    fn d(children: &[Status]) -> Status {
        Status::derive(children.iter().copied(), false, false, false)
    }

    #[test]
    fn error_wins_over_everything() {
        assert_eq!(d(&[Complete, Error, InProgress]), Error);
        assert_eq!(Status::derive([Complete], false, false, true), Error);
    }

    #[test]
    fn all_complete_or_empty_is_complete() {
        assert_eq!(d(&[Complete, Complete]), Complete);
        assert_eq!(d(&[]), Complete);
        // A pause on finished work does not make it wait.
        assert_eq!(Status::derive([Complete], true, false, false), Complete);
    }

    #[test]
    fn pause_shows_waiting_even_with_work_in_flight() {
        assert_eq!(Status::derive([InProgress, Pending], true, false, false), Waiting);
    }

    #[test]
    fn progress_partial_and_pending() {
        assert_eq!(d(&[Complete, InProgress, Pending]), InProgress);
        assert_eq!(d(&[Complete, Pending]), InProgress);
        assert_eq!(d(&[Pending, Pending]), Pending);
    }

    #[test]
    fn waiting_children_or_canary_gate_make_waiting() {
        assert_eq!(d(&[Complete, Waiting]), Waiting);
        assert_eq!(d(&[InProgress, Waiting]), InProgress);
        assert_eq!(Status::derive([Complete, Pending], false, true, false), Waiting);
    }

    #[test]
    fn serde_and_display_spelling() {
        assert_eq!(serde_json::to_string(&InProgress).unwrap(), "\"IN_PROGRESS\"");
        assert_eq!(InProgress.to_string(), "IN_PROGRESS");
    }
}
