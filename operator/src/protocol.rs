//! The messages of the master's API: what agents and frameworks send, and
//! the events streamed back to them (one JSON object a line); and the check
//! of the cluster token every API (master, agent, scheduler) asks for.

use crate::master::ledger::LedgerTask;
use crate::resources::{
    AgentId, Attributes, FrameworkId, Offer, OfferId, Operation, Reservation, Resources, TaskId, TaskInfo, TaskStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether `headers` carry `Authorization: Bearer TOKEN` with `token`
/// (compared in constant time).
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An agent's registration (and re-registration after a restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// Empty on first registration; the master assigns one.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    pub hostname: String,
    pub attributes: Attributes,
    pub total: Resources,
    /// The reservations (with volumes) the agent has checkpointed.
    #[serde(default)]
    pub reservations: Vec<Reservation>,
    /// Tasks the agent still runs (re-attached after its restart).
    #[serde(default)]
    pub tasks: Vec<RunningTaskReport>,
    /// The URL of the agent's own HTTP API (task logs), e.g.
    /// `http://10.0.0.5:41234`.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// A task an agent reports on (re-)registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningTaskReport {
    pub framework_id: FrameworkId,
    pub role: String,
    pub info: TaskInfo,
    pub state: crate::resources::TaskState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub agent_id: AgentId,
}

/// What the master tells an agent, streamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentEvent {
    /// Apply a framework's accepted operations (already checked by the master).
    Apply { framework_id: FrameworkId, role: String, operations: Vec<Operation> },
    /// Kill a task (outside an accept: a framework's kill call, or a task
    /// the master no longer knows).
    Kill { task_id: TaskId },
    /// A status update was acknowledged by its framework; stop resending it.
    Acknowledged { uuid: String },
    /// Keeps the stream alive.
    Heartbeat,
}

/// A framework's subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscribe {
    /// Set to resume an earlier subscription (after a scheduler restart).
    #[serde(default)]
    pub framework_id: Option<FrameworkId>,
    pub name: String,
    pub role: String,
    #[serde(default = "one")]
    pub weight: f64,
    /// The URL of the framework's own HTTP API (plans, pods), e.g.
    /// `http://127.0.0.1:40123`, like Mesos' `FrameworkInfo.webui_url`: the
    /// master proxies `/v1/frameworks/{id}/api/...` onto it for the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// What the master tells a framework, streamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FrameworkEvent {
    Subscribed { framework_id: FrameworkId },
    Offers { offers: Vec<Offer> },
    Rescind { offer_id: OfferId },
    Update { status: TaskStatus },
    Heartbeat,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accept {
    pub offer_ids: Vec<OfferId>,
    pub operations: Vec<Operation>,
    /// Filter the rest of these agents' resources for this long.
    #[serde(default)]
    pub filter_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decline {
    pub offer_ids: Vec<OfferId>,
    #[serde(default)]
    pub filter_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acknowledge {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub uuid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillTask {
    pub task_id: TaskId,
}

/// Ask for the latest known state of tasks (all of the framework's when empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconcile {
    #[serde(default)]
    pub task_ids: Vec<TaskId>,
}

/// An agent as `smack agents` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub id: AgentId,
    pub hostname: String,
    pub zone: String,
    pub state: AgentState,
    pub attributes: Attributes,
    pub total: Resources,
    pub reserved: Resources,
    pub used: Resources,
    /// Reserved resources by role.
    pub reserved_by_role: BTreeMap<String, Resources>,
    pub tasks: usize,
    /// Unix millis of the last heartbeat.
    pub last_heartbeat_ms: u64,
    /// The URL of the agent's own HTTP API (task logs).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `GET /v1/tasks/{id}/agent`: where a task runs or ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAgent {
    pub task_id: TaskId,
    pub agent_id: AgentId,
    /// The agent's HTTP API, if it announced one.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The task's latest known state, if the master has seen one.
    #[serde(default)]
    pub state: Option<crate::resources::TaskState>,
}

/// An agent's answer to `GET /v1/tasks/{id}/log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskLog {
    pub task_id: TaskId,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The byte offset of the end of `data` in the file: pass it back as
    /// `offset` to read what follows.
    pub offset: u64,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    Reachable,
    Unreachable,
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentState::Reachable => "REACHABLE",
            AgentState::Unreachable => "UNREACHABLE",
        })
    }
}

/// One agent's part of the master's ledger, for `GET /v1/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLedgerView {
    pub id: AgentId,
    pub state: AgentState,
    pub reservations: Vec<Reservation>,
    pub tasks: Vec<LedgerTask>,
    pub unreserved_free: Resources,
}

/// A framework as the master knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkSummary {
    pub id: FrameworkId,
    pub name: String,
    pub role: String,
    pub weight: f64,
    pub connected: bool,
    pub suppressed: bool,
    /// Resources offered to it or used by its tasks.
    pub allocated: Resources,
    /// Its weighted dominant share.
    pub share: f64,
    pub outstanding_offers: usize,
    /// The framework's own HTTP API, if it announced one at subscribe.
    #[serde(default)]
    pub api_url: Option<String>,
}

/// `GET /v1/state`: the ledger and the frameworks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterState {
    pub agents: Vec<AgentLedgerView>,
    pub frameworks: Vec<FrameworkSummary>,
}

/// An error body of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
