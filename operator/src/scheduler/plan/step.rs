//! A step: the work on one pod instance, and the state machine it moves through.
//!
//! ```text
//!            start            launched          all tasks running     all tasks ready
//! PENDING ─────────▶ PREPARED ────────▶ STARTING ─────────────────▶ STARTED ───────────▶ COMPLETE
//!    ▲                                     │ task failed               │                    │
//!    │ backoff elapsed (tick/start)        ▼                           │                    │
//!    └───────────────────────────────── DELAYED ◀──────────────────────┴────────────────────┘
//!
//! pause:  PENDING, PREPARED ─▶ WAITING      resume: WAITING ─▶ PENDING
//! any ─error─▶ ERROR     any ─restart─▶ PENDING     any ─force-complete─▶ COMPLETE
//! ```
//!
//! - `start` moves a PENDING step (or a DELAYED one whose backoff has elapsed)
//!   to PREPARED: the scheduler has picked it and evaluates offers for it.
//! - `launched`: the accept carrying its LAUNCH was sent → STARTING.
//! - Task reports: a step becomes STARTED when every task of it runs, and
//!   COMPLETE when every task is ready (readiness check passed, or no check)
//!   or, for a `FINISH`/`ONCE` goal task, finished. Reports for a COMPLETE
//!   step are ignored (reconciliation repeats them).
//! - A task failure moves STARTING, STARTED or COMPLETE to DELAYED with an
//!   exponential backoff (attempts counted, see [`BackoffPolicy`]); a second
//!   failure report while DELAYED is ignored. The scheduler sends failures of
//!   a finished deploy to the plan that owns recovery, so a deploy plan does
//!   not regress.
//! - Every state change clears the step's message unless it sets one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{PlanError, Status};

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepState {
    /// Not started.
    #[default]
    Pending,
    /// Picked by the scheduler; offers are being evaluated for it.
    Prepared,
    /// The launch was sent; its tasks are not all running yet.
    Starting,
    /// Every task runs; not every task is ready yet.
    Started,
    /// Done: every task is ready or finished, or the operator forced it.
    Complete,
    /// Paused by the operator before it started.
    Waiting,
    /// A task failed; waiting out a backoff before trying again.
    Delayed,
    /// Failed in a way that needs the operator (see the step's message).
    Error,
}

impl StepState {
    /// The state as the API and CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "PENDING",
            StepState::Prepared => "PREPARED",
            StepState::Starting => "STARTING",
            StepState::Started => "STARTED",
            StepState::Complete => "COMPLETE",
            StepState::Waiting => "WAITING",
            StepState::Delayed => "DELAYED",
            StepState::Error => "ERROR",
        }
    }

    /// The status this state counts as when a phase derives its own.
    pub fn status(self) -> Status {
        match self {
            StepState::Pending => Status::Pending,
            StepState::Prepared | StepState::Starting | StepState::Started | StepState::Delayed => Status::InProgress,
            StepState::Complete => Status::Complete,
            StepState::Waiting => Status::Waiting,
            StepState::Error => Status::Error,
        }
    }

    /// True while the step's pod instance is being worked on ("dirty"): no
    /// other step may touch that pod meanwhile.
    pub fn holds_pod(self) -> bool {
        matches!(self, StepState::Prepared | StepState::Starting | StepState::Started | StepState::Delayed)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far one task of a step has come since its launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskProgress {
    /// Reported running.
    Running,
    /// Ready (readiness check passed) or finished (goal `FINISH`/`ONCE`).
    Ready,
}

/// The crash-loop backoff of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Task failures counted so far.
    pub attempts: u32,
    /// The delay chosen after the last failure, in milliseconds.
    pub delay_ms: u64,
    /// The step may start again at this time (ms, the scheduler's clock).
    pub until_ms: u64,
}

/// How backoff grows. A first failure relaunches at once (a SIGKILLed broker
/// should be back as fast as the offer round allows); a crash loop then
/// waits `initial_ms`, doubled per further failure, capped at `max_ms`. A
/// failure more than `reset_after_ms` after the last backoff ended, on a
/// step that had come back (COMPLETE), counts as a first failure again: the
/// pod ran stably in between, so it is not looping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// Delay after the second failure in a row.
    pub initial_ms: u64,
    /// The delay never exceeds this.
    pub max_ms: u64,
    /// A failure this long after the last backoff ended starts the count anew.
    #[serde(default = "default_reset_after_ms")]
    pub reset_after_ms: u64,
}

fn default_reset_after_ms() -> u64 {
    60_000
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { initial_ms: 1_000, max_ms: 60_000, reset_after_ms: default_reset_after_ms() }
    }
}

impl BackoffPolicy {
    /// The delay after the `attempts`-th failure in a row (1-based): 0, then
    /// `initial_ms`, doubling: 0 s, 1 s, 2 s, 4 s, … capped at `max_ms`.
    pub fn delay_ms(&self, attempts: u32) -> u64 {
        if attempts <= 1 {
            return 0;
        }
        let doublings = attempts.saturating_sub(2).min(63);
        self.initial_ms.saturating_mul(1u64 << doublings).min(self.max_ms)
    }
}

/// The work on one pod instance: launch its tasks and see them ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `broker-1:[broker]`: the pod instance and its tasks.
    pub name: String,
    /// The pod instance this step works on: `broker-1`.
    pub pod_instance: String,
    /// The pod's tasks this step launches: `broker`.
    pub tasks: Vec<String>,
    /// Where the step is.
    pub state: StepState,
    /// Why the step waits or failed, for `plan show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The crash-loop backoff, once a task of this step has failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Sibling steps (by name) that must be COMPLETE first; dependency strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Held by a pause of its phase or plan: it gets no new work.
    #[serde(default)]
    pub interrupted: bool,
    /// What each task has reported since the last launch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub progress: BTreeMap<String, TaskProgress>,
}

impl Step {
    /// A PENDING step for `pod_instance` running `tasks`, named `pod:[t1,t2]`.
    pub fn new<S: Into<String>>(pod_instance: &str, tasks: impl IntoIterator<Item = S>) -> Step {
        let tasks: Vec<String> = tasks.into_iter().map(Into::into).collect();
        Step {
            name: format!("{pod_instance}:[{}]", tasks.join(",")),
            pod_instance: pod_instance.to_string(),
            tasks,
            state: StepState::Pending,
            message: None,
            backoff: None,
            dependencies: Vec::new(),
            interrupted: false,
            progress: BTreeMap::new(),
        }
    }

    /// The same step, waiting for the named sibling steps (dependency strategy).
    pub fn with_dependencies<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Step {
        self.dependencies = deps.into_iter().map(Into::into).collect();
        self
    }

    /// True if the step may be handed out now: PENDING, PREPARED, or DELAYED
    /// with its backoff elapsed. Strategy and pauses are the plan's business.
    pub fn is_ready_for_work(&self, now_ms: u64) -> bool {
        match self.state {
            StepState::Pending | StepState::Prepared => true,
            StepState::Delayed => self.backoff.is_none_or(|b| b.until_ms <= now_ms),
            _ => false,
        }
    }

    fn set(&mut self, state: StepState) {
        self.state = state;
        self.message = None;
    }

    fn refuse(&self, event: &'static str) -> PlanError {
        PlanError::InvalidTransition { step: self.name.clone(), from: self.state, event }
    }

    /// PENDING (or DELAYED past its backoff) → PREPARED; PREPARED stays.
    pub fn start(&mut self, now_ms: u64) -> Result<(), PlanError> {
        match self.state {
            StepState::Pending => self.set(StepState::Prepared),
            StepState::Prepared => {}
            StepState::Delayed => match self.backoff {
                Some(b) if b.until_ms > now_ms => {
                    return Err(PlanError::BackingOff { step: self.name.clone(), until_ms: b.until_ms, now_ms })
                }
                _ => self.set(StepState::Prepared),
            },
            _ => return Err(self.refuse("start")),
        }
        Ok(())
    }

    /// PREPARED → STARTING: the accept with the LAUNCH went out.
    pub fn launched(&mut self) -> Result<(), PlanError> {
        match self.state {
            StepState::Prepared => {
                self.progress.clear();
                self.set(StepState::Starting);
                Ok(())
            }
            StepState::Starting => Ok(()),
            _ => Err(self.refuse("launch")),
        }
    }

    /// A task of this step runs.
    pub fn task_running(&mut self, task: &str) -> Result<(), PlanError> {
        self.report(task, TaskProgress::Running, "report a running task")
    }

    /// A task of this step passed its readiness check (or has none).
    pub fn task_ready(&mut self, task: &str) -> Result<(), PlanError> {
        self.report(task, TaskProgress::Ready, "report a ready task")
    }

    /// A `FINISH`/`ONCE`-goal task of this step finished successfully.
    pub fn task_finished(&mut self, task: &str) -> Result<(), PlanError> {
        self.report(task, TaskProgress::Ready, "report a finished task")
    }

    fn report(&mut self, task: &str, progress: TaskProgress, event: &'static str) -> Result<(), PlanError> {
        if !self.tasks.iter().any(|t| t == task) {
            return Err(PlanError::UnknownTask {
                step: self.name.clone(),
                task: task.to_string(),
                valid: self.tasks.clone(),
            });
        }
        match self.state {
            StepState::Complete => return Ok(()),
            StepState::Delayed | StepState::Error => return Err(self.refuse(event)),
            _ => {}
        }
        let entry = self.progress.entry(task.to_string()).or_insert(progress);
        if progress == TaskProgress::Ready {
            *entry = TaskProgress::Ready;
        }
        let ready = self.tasks.iter().all(|t| self.progress.get(t) == Some(&TaskProgress::Ready));
        let running = self.tasks.iter().all(|t| self.progress.contains_key(t));
        let next = if ready {
            StepState::Complete
        } else if running {
            StepState::Started
        } else {
            StepState::Starting
        };
        if next != self.state {
            self.set(next);
        }
        Ok(())
    }

    /// A task of this step failed: back off, then try again.
    pub fn task_failed(&mut self, now_ms: u64, policy: &BackoffPolicy) -> Result<(), PlanError> {
        match self.state {
            StepState::Starting | StepState::Started | StepState::Complete => {
                let stable = self.state == StepState::Complete
                    && self.backoff.is_some_and(|b| now_ms.saturating_sub(b.until_ms) >= policy.reset_after_ms);
                let before = if stable { 0 } else { self.backoff.map_or(0, |b| b.attempts) };
                let attempts = before.saturating_add(1);
                let delay_ms = policy.delay_ms(attempts);
                self.backoff = Some(Backoff { attempts, delay_ms, until_ms: now_ms.saturating_add(delay_ms) });
                self.progress.clear();
                self.set(StepState::Delayed);
                Ok(())
            }
            StepState::Delayed => Ok(()),
            _ => Err(self.refuse("fail a task")),
        }
    }

    /// Any state → ERROR, with why.
    pub fn error(&mut self, message: impl Into<String>) {
        self.state = StepState::Error;
        self.message = Some(message.into());
    }

    /// DELAYED past its backoff → PENDING. Returns whether it changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let elapsed = self.backoff.is_none_or(|b| b.until_ms <= now_ms);
        if self.state == StepState::Delayed && elapsed {
            self.set(StepState::Pending);
            return true;
        }
        false
    }

    /// Forgets the crash-loop count, e.g. after a task ran stably for a while.
    pub fn reset_backoff(&mut self) {
        self.backoff = None;
    }

    /// Any state → PENDING, forgetting backoff and task reports.
    pub fn restart(&mut self) {
        self.progress.clear();
        self.backoff = None;
        self.set(StepState::Pending);
    }

    /// Any state → COMPLETE, by the operator's word.
    pub fn force_complete(&mut self) {
        self.backoff = None;
        self.state = StepState::Complete;
        self.message = Some("force-completed by the operator".to_string());
    }

    /// Applies a pause (`true`) or its end to this step: PENDING and PREPARED
    /// become WAITING, WAITING becomes PENDING again.
    pub(crate) fn hold(&mut self, paused: bool) {
        self.interrupted = paused;
        match (paused, self.state) {
            (true, StepState::Pending | StepState::Prepared) => self.set(StepState::Waiting),
            (false, StepState::Waiting) => self.set(StepState::Pending),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Step {
        Step::new("broker-1", ["broker"])
    }

    #[test]
    fn name_lists_pod_and_tasks() {
        assert_eq!(broker().name, "broker-1:[broker]");
        assert_eq!(Step::new("app-0", ["a", "b"]).name, "app-0:[a,b]");
    }

    #[test]
    fn happy_path_through_every_state() {
        let mut s = broker();
        s.start(0).unwrap();
        assert_eq!(s.state, StepState::Prepared);
        s.launched().unwrap();
        assert_eq!(s.state, StepState::Starting);
        s.task_running("broker").unwrap();
        assert_eq!(s.state, StepState::Started);
        s.task_ready("broker").unwrap();
        assert_eq!(s.state, StepState::Complete);
        // Reconciliation repeats reports: ignored.
        s.task_running("broker").unwrap();
        assert_eq!(s.state, StepState::Complete);
    }

    #[test]
    fn multi_task_step_waits_for_every_task() {
        let mut s = Step::new("app-0", ["a", "b"]);
        s.start(0).unwrap();
        s.launched().unwrap();
        s.task_running("a").unwrap();
        assert_eq!(s.state, StepState::Starting);
        s.task_ready("a").unwrap();
        assert_eq!(s.state, StepState::Starting);
        s.task_running("b").unwrap();
        assert_eq!(s.state, StepState::Started);
        s.task_finished("b").unwrap();
        assert_eq!(s.state, StepState::Complete);
    }

    #[test]
    fn finish_goal_task_completes_without_running_report() {
        let mut s = Step::new("setup-0", ["init"]);
        s.start(0).unwrap();
        s.launched().unwrap();
        s.task_finished("init").unwrap();
        assert_eq!(s.state, StepState::Complete);
    }

    #[test]
    fn unknown_task_lists_the_valid_ones() {
        let mut s = broker();
        let err = s.task_running("zookeeper").unwrap_err();
        assert!(err.to_string().contains("its tasks are: broker"), "{err}");
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let mut s = broker();
        let err = s.launched().unwrap_err();
        assert_eq!(err.to_string(), "step broker-1:[broker] cannot launch while PENDING");
        assert!(s.task_failed(0, &BackoffPolicy::default()).is_err());
        s.error("disk gone");
        assert!(s.start(0).is_err());
        assert_eq!(s.message.as_deref(), Some("disk gone"));
    }

    #[test]
    fn policy_doubles_and_caps() {
        let p = BackoffPolicy::default();
        let delays: Vec<u64> = (1..=9).map(|a| p.delay_ms(a)).collect();
        assert_eq!(delays, [0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        assert_eq!(p.delay_ms(u32::MAX), 60_000);
    }

    #[test]
    fn duplicate_failure_reports_count_once() {
        let p = BackoffPolicy::default();
        let mut s = broker();
        s.start(0).unwrap();
        s.launched().unwrap();
        s.task_failed(10, &p).unwrap();
        s.task_failed(11, &p).unwrap();
        assert_eq!(s.backoff, Some(Backoff { attempts: 1, delay_ms: 0, until_ms: 10 }));
    }

    /// Brings a step to COMPLETE after a (re)launch at `now`.
    fn complete(s: &mut Step, now: u64) {
        s.start(now).unwrap();
        s.launched().unwrap();
        s.task_running("broker").unwrap();
        s.task_ready("broker").unwrap();
        assert_eq!(s.state, StepState::Complete);
    }

    #[test]
    fn a_first_failure_relaunches_at_once_a_loop_backs_off() {
        let p = BackoffPolicy::default();
        let mut s = broker();
        complete(&mut s, 0);
        s.task_failed(5_000, &p).unwrap();
        assert!(s.is_ready_for_work(5_000), "no wait after a first failure");
        complete(&mut s, 5_000);
        s.task_failed(6_000, &p).unwrap();
        assert_eq!(s.backoff, Some(Backoff { attempts: 2, delay_ms: 1_000, until_ms: 7_000 }));
        assert!(!s.is_ready_for_work(6_999));
        assert!(s.is_ready_for_work(7_000));
    }

    #[test]
    fn a_failure_after_a_stable_run_counts_as_the_first() {
        let p = BackoffPolicy::default();
        let mut s = broker();
        complete(&mut s, 0);
        for now in [1_000, 2_000, 5_000] {
            s.task_failed(now, &p).unwrap();
            let until = s.backoff.unwrap().until_ms;
            complete(&mut s, until);
        }
        assert_eq!(s.backoff.unwrap().attempts, 3);
        let until = s.backoff.unwrap().until_ms;
        // Ran a minute past its last backoff: not a loop any more.
        s.task_failed(until + 60_000, &p).unwrap();
        assert_eq!(s.backoff.unwrap().attempts, 1);
        assert_eq!(s.backoff.unwrap().delay_ms, 0);
        // A failure while still starting never resets the count.
        s.start(until + 60_000).unwrap();
        s.launched().unwrap();
        s.task_failed(until + 200_000, &p).unwrap();
        assert_eq!(s.backoff.unwrap().attempts, 2);
    }

    #[test]
    fn delayed_start_respects_until() {
        let p = BackoffPolicy::default();
        let mut s = broker();
        s.start(0).unwrap();
        s.launched().unwrap();
        s.task_failed(0, &p).unwrap();
        s.start(0).unwrap();
        s.launched().unwrap();
        s.task_failed(0, &p).unwrap();
        assert!(matches!(s.start(999), Err(PlanError::BackingOff { until_ms: 1_000, .. })));
        assert!(!s.tick(999));
        assert!(s.tick(1_000));
        assert_eq!(s.state, StepState::Pending);
        assert_eq!(s.backoff.unwrap().attempts, 2, "the count survives the retry");
    }

    #[test]
    fn serde_spelling() {
        assert_eq!(serde_json::to_string(&StepState::Delayed).unwrap(), "\"DELAYED\"");
        let back: StepState = serde_json::from_str("\"STARTED\"").unwrap();
        assert_eq!(back, StepState::Started);
        assert_eq!(StepState::Prepared.to_string(), "PREPARED");
    }
}
