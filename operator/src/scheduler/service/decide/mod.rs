//! The scheduler's decisions as values. Each `on_*` function takes the
//! state, the spec, what happened (offers, a task status, a tick) and the
//! time, updates the state in place (the changes to persist) and returns
//! [`Decisions`]: what to send to the master. No I/O, no clock, no random:
//! new ids come from an [`Ids`], so the same inputs give the same outputs.
//! The driver ([`super::ServiceScheduler`]) persists the state, then sends
//! the decisions: a task record is always durable before its launch.

mod offers;
mod status;
mod tick;

pub use offers::on_offers;
pub use status::hook_backoff_ms;
pub use status::on_status;
pub use tick::{expired_lost_pods, on_subscribed, on_tick, replace_expired, OfferFlow};

use crate::protocol::{Accept, Acknowledge};
use crate::resources::{OfferId, TaskId};
use crate::scheduler::evaluator::{Evaluation, Stage};
use std::collections::BTreeMap;

/// How long a declined offer's agent is filtered, in ms.
pub const DECLINE_FILTER_MS: u64 = 1000;

/// Where new ids come from: task ids (`<pod>-<task>__<id>`) and reservation
/// ids (`<service>-<pod>-<id>`) end in a short unique part.
pub trait Ids {
    /// A short id, unique among the service's tasks and reservations.
    fn next_id(&mut self) -> String;
}

/// Random ids: eight hex digits of a v4 UUID.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl Ids for RandomIds {
    fn next_id(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
    }
}

/// Counting ids (`00000001`, `00000002`, …): deterministic, for tests and
/// simulations.
#[derive(Debug, Clone, Default)]
pub struct SeqIds(pub u64);

impl Ids for SeqIds {
    fn next_id(&mut self) -> String {
        self.0 += 1;
        format!("{:08}", self.0)
    }
}

/// Whether to change the master's offer flow for this framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferCall {
    /// Nothing to do: stop sending offers.
    Suppress,
    /// Work waits: send offers again, filters cleared.
    Revive,
}

/// Offer-evaluation stage outcomes counted over one decision, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationCounts(pub BTreeMap<(Stage, bool), u64>);

impl EvaluationCounts {
    /// Counts each stage outcome of one evaluation.
    pub fn add(&mut self, e: &Evaluation) {
        for o in &e.outcomes {
            *self.0.entry((o.stage, o.pass)).or_default() += 1;
        }
    }
}

/// What to send to the master after one decision, in this order: kills,
/// accepts, the decline, the acknowledgement, a reconcile, then a suppress
/// or revive.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// Tasks to kill (a pod stopped for a roll or a decommission, the
    /// siblings of a failed essential task, a stale copy of a task).
    pub kills: Vec<TaskId>,
    /// Offers accepted, each with its operations (RESERVE, CREATE_VOLUME,
    /// LAUNCH, DESTROY_VOLUME, UNRESERVE).
    pub accepts: Vec<Accept>,
    /// Offers not used, declined for [`DECLINE_FILTER_MS`].
    pub declines: Vec<OfferId>,
    /// A task status to acknowledge.
    pub acknowledge: Option<Acknowledge>,
    /// Tasks whose state to ask the master for.
    pub reconcile: Vec<TaskId>,
    /// Pods just replaced, LOST past the permanent-failure timeout (their
    /// state already says so; see [`super::commands::replace_pod`]).
    pub replace: Vec<String>,
    /// A suppress or revive.
    pub offer_call: Option<OfferCall>,
    /// Whether the state changed and must be persisted before the rest.
    pub persist: bool,
    /// Pods launched by the recovery plan: true when placed anew (permanent).
    pub recoveries: Vec<bool>,
    /// Offer evaluation outcomes, for metrics.
    pub evaluations: EvaluationCounts,
}

impl Decisions {
    /// Every LAUNCH among the accepts.
    pub fn launches(&self) -> impl Iterator<Item = &crate::resources::TaskInfo> {
        self.accepts.iter().flat_map(|a| a.operations.iter()).filter_map(|o| match o {
            crate::resources::Operation::Launch { task } => Some(task),
            _ => None,
        })
    }
}
