//! The client of a service scheduler's API (`scheduler::api`): plans, pods,
//! the spec, delete.

use super::{path, Api};
use crate::scheduler::api::{PlanCommand, PlanSummary, PlanView, PodView, SpecUpdate, SpecUpdated};
use crate::scheduler::service::SpecDiff;
use crate::Result;

/// A client of one service scheduler, at its own API URL or through the
/// master's forward ([`super::MasterClient::scheduler_of`]).
#[derive(Clone)]
pub struct SchedulerClient {
    api: Api,
}

impl SchedulerClient {
    /// The scheduler whose API is at `url`, called with `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        SchedulerClient { api: Api::new(url, token, "scheduler") }
    }

    pub(super) fn from_api(api: Api) -> Self {
        SchedulerClient { api }
    }

    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// Every plan with its status.
    pub async fn plans(&self) -> Result<Vec<PlanSummary>> {
        self.api.get("/v1/plans").await
    }

    /// One plan with its rendered tree.
    pub async fn plan(&self, plan: &str) -> Result<PlanView> {
        self.api.get(&path(&["v1", "plans", plan])).await
    }

    /// `pause`, `resume`, `restart`, `force-complete`, `start` or `stop` on
    /// a plan; the plan afterwards.
    pub async fn plan_action(&self, plan: &str, action: &str, command: &PlanCommand) -> Result<PlanView> {
        self.api.post(&path(&["v1", "plans", plan, action]), command).await
    }

    /// Every pod with its tasks.
    pub async fn pods(&self) -> Result<Vec<PodView>> {
        self.api.get("/v1/pods").await
    }

    /// One pod with its tasks.
    pub async fn pod(&self, pod: &str) -> Result<PodView> {
        self.api.get(&path(&["v1", "pods", pod])).await
    }

    /// `restart`, `replace`, `pause` or `resume` on a pod; the pod afterwards.
    pub async fn pod_action(&self, pod: &str, action: &str) -> Result<PodView> {
        self.api.post_empty(&path(&["v1", "pods", pod, action])).await
    }

    /// The spec the service follows (its YAML and file name).
    pub async fn spec(&self) -> Result<SpecUpdate> {
        self.api.get("/v1/spec").await
    }

    /// Submits a changed spec: the plans it started, or the refusal.
    pub async fn update_spec(&self, spec: &SpecUpdate) -> Result<SpecUpdated> {
        self.api.post("/v1/spec", spec).await
    }

    /// What applying `spec` would change.
    pub async fn diff_spec(&self, spec: &SpecUpdate) -> Result<SpecDiff> {
        self.api.post("/v1/spec/diff", spec).await
    }

    /// Starts decommissioning every pod of the service.
    pub async fn delete(&self) -> Result<()> {
        self.api.post_empty::<serde_json::Value>("/v1/delete").await.map(drop)
    }
}
