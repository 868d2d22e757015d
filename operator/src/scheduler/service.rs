//! The service scheduler: one framework that turns a [`ServiceSpec`] into
//! running pods and keeps them so. It subscribes to the master, runs the
//! `deploy` plan through the offer evaluator, relaunches failed tasks in
//! place (the `recovery` plan, with crash-loop backoff), places replaced pods
//! anew, cleans up reservations nobody owns, and persists everything —
//! spec, pods, task records (before the accept that launches them), plans
//! and operator overrides — in the state store, so a restarted scheduler
//! carries on where it stopped.
//!
//! Read in this order: [`state`] (what is persisted), [`plans`] (plans built
//! from the spec and its changes), [`commands`] (operator commands),
//! [`task_env`] (what a launched task finds in its env), [`decide`] (the
//! pure decisions on offers, statuses and time, returned as values), then
//! [`driver`] (the thin async loop that persists, then sends them).
//! [`crate::scheduler::sim`] drives the decisions in-process.
//!
//! [`ServiceSpec`]: crate::scheduler::spec::ServiceSpec

pub mod commands;
pub mod decide;
pub mod driver;
pub mod plans;
pub mod requirement;
pub mod state;
pub mod task_env;
pub mod update_order;

pub use driver::{ServiceScheduler, PERMANENT_FAILURE_MS};
pub use state::{HookRun, PodRecord, SchedulerState, SpecDiff, SpecVersion, TaskRecord, DECOMMISSION_HOOK};
pub use task_env::{PodAddress, PODS_ENV};
