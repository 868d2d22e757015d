//! The scheduler's HTTP API under `/v1/`: plans and pods, read and acted
//! on. Same bearer token as the master; 401 without it.
//!
//! Outside `/v1/`, `GET /metrics` serves the scheduler's families
//! (OpenMetrics text, no token, like the master's; see [`crate::metrics`]):
//! plan statuses, step and pod counts by state, recoveries and offer
//! evaluation outcomes. The master forwards it as
//! `/v1/frameworks/{id}/api/metrics`.

use super::metrics::SchedulerSnapshot;
use super::plan::{render_tree, Plan, Status};
use super::pod::PodPhase;
use super::service::{PodRecord, ServiceScheduler, TaskRecord};
use crate::metrics;
use crate::Error;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
struct Ctx {
    scheduler: ServiceScheduler,
    token: Arc<String>,
}

/// A plan in `plan list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSummary {
    pub name: String,
    pub status: Status,
}

/// A plan with its rendered tree, for `plan show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanView {
    pub plan: Plan,
    pub tree: String,
}

/// A pod and its tasks, for `pod status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodView {
    pub pod: PodRecord,
    pub tasks: Vec<TaskRecord>,
    /// Where the pod is in its life, as the metrics count it.
    #[serde(default)]
    pub phase: PodPhase,
}

/// The body of a plan command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanCommand {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let ok = crate::protocol::bearer_matches(req.headers(), &ctx.token);
    if !ok {
        return Error::Unauthorized.into_response();
    }
    next.run(req).await
}

/// The scheduler's registry: its counters, and gauges read from its state
/// on each scrape.
pub fn registry(scheduler: &ServiceScheduler) -> metrics::SharedRegistry {
    let registry = metrics::new_registry();
    let s = scheduler.clone();
    scheduler.metrics.register(&mut registry.write().unwrap_or_else(|p| p.into_inner()), move || {
        Some(SchedulerSnapshot::of(&s.name(), &s.snapshot()))
    });
    registry
}

/// The scheduler's router: `/v1/` behind the token, `/metrics` without.
pub fn router(scheduler: ServiceScheduler, token: String) -> Router {
    let metrics = metrics::router(registry(&scheduler));
    let ctx = Ctx { scheduler, token: Arc::new(token) };
    Router::new()
        .route("/v1/plans", get(list_plans))
        .route("/v1/plans/{plan}", get(show_plan))
        .route("/v1/plans/{plan}/{action}", post(plan_action))
        .route("/v1/spec", get(get_spec).post(update_spec))
        .route("/v1/spec/diff", post(diff_spec))
        .route("/v1/delete", post(delete_service))
        .route("/v1/pods", get(list_pods))
        .route("/v1/pods/{pod}", get(show_pod))
        .route("/v1/pods/{pod}/{action}", post(pod_action))
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .with_state(ctx)
        .merge(metrics)
}

async fn list_plans(State(ctx): State<Ctx>) -> Json<Vec<PlanSummary>> {
    let st = ctx.scheduler.snapshot();
    Json(st.plans.values().map(|p| PlanSummary { name: p.name.clone(), status: p.status }).collect())
}

async fn show_plan(State(ctx): State<Ctx>, Path(plan): Path<String>) -> Response {
    let st = ctx.scheduler.snapshot();
    match st.plans.get(&plan) {
        Some(p) => Json(PlanView { plan: p.clone(), tree: render_tree(p) }).into_response(),
        None => {
            Error::Unknown { what: "plan", name: plan, known: Some(st.plans.keys().cloned().collect()) }.into_response()
        }
    }
}

async fn plan_action(
    State(ctx): State<Ctx>,
    Path((plan, action)): Path<(String, String)>,
    body: Option<Json<PlanCommand>>,
) -> Response {
    let mut cmd = body.map(|b| b.0).unwrap_or_default();
    // A custom plan's declared parameters are defaults for `plan start`.
    if action == "start" {
        let mut merged = ctx.scheduler.spec().plan(&plan).map(|p| p.parameters.clone()).unwrap_or_default();
        merged.extend(std::mem::take(&mut cmd.parameters));
        cmd.parameters = merged;
    }
    let phase = cmd.phase.clone();
    let step = cmd.step.clone();
    let r = ctx.scheduler.with_plan(&plan, |p| match action.as_str() {
        "pause" => Ok(p.pause(phase.as_deref())?),
        "resume" => Ok(p.resume(phase.as_deref())?),
        "restart" => Ok(p.restart(phase.as_deref(), step.as_deref())?),
        "force-complete" => match (&phase, &step) {
            (Some(ph), Some(st)) => Ok(p.force_complete(ph, st)?),
            _ => Err(Error::BadRequest("force-complete needs a phase and a step".into())),
        },
        "start" => {
            p.start(cmd.parameters.clone());
            Ok(())
        }
        "stop" => {
            p.stop();
            Ok(())
        }
        other => Err(Error::BadRequest(format!(
            "unknown plan action {other:?}: expected pause, resume, restart, force-complete, start or stop"
        ))),
    });
    match r {
        Ok(()) => show_plan(State(ctx), Path(plan)).await,
        Err(e) => e.into_response(),
    }
}

/// A changed spec, for `service update`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecUpdate {
    pub yaml: String,
    #[serde(default)]
    pub file: String,
}

/// What an accepted update started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecUpdated {
    pub plans: Vec<String>,
}

async fn get_spec(State(ctx): State<Ctx>) -> Json<SpecUpdate> {
    let st = ctx.scheduler.snapshot();
    Json(SpecUpdate { yaml: st.spec_yaml, file: st.spec_file })
}

async fn update_spec(State(ctx): State<Ctx>, Json(u): Json<SpecUpdate>) -> Response {
    let file = if u.file.is_empty() { "spec.yaml".to_string() } else { u.file };
    match ctx.scheduler.update_spec(&u.yaml, &file) {
        Ok(plans) => Json(SpecUpdated { plans }).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn diff_spec(State(ctx): State<Ctx>, Json(u): Json<SpecUpdate>) -> Response {
    let file = if u.file.is_empty() { "spec.yaml".to_string() } else { u.file };
    match ctx.scheduler.diff_spec(&u.yaml, &file) {
        Ok(d) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_service(State(ctx): State<Ctx>) -> Response {
    match ctx.scheduler.delete_all() {
        Ok(()) => Json(serde_json::json!({"deleting": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn pod_views(s: &ServiceScheduler) -> Vec<PodView> {
    let st = s.snapshot();
    st.pods
        .values()
        .map(|p| PodView {
            pod: p.clone(),
            tasks: p.tasks.values().filter_map(|id| st.tasks.get(id).cloned()).collect(),
            phase: st.pod_phase(p),
        })
        .collect()
}

async fn list_pods(State(ctx): State<Ctx>) -> Json<Vec<PodView>> {
    Json(pod_views(&ctx.scheduler))
}

async fn show_pod(State(ctx): State<Ctx>, Path(pod): Path<String>) -> Response {
    match pod_views(&ctx.scheduler).into_iter().find(|p| p.pod.name == pod) {
        Some(v) => Json(v).into_response(),
        None => Error::Unknown { what: "pod", name: pod, known: None }.into_response(),
    }
}

async fn pod_action(State(ctx): State<Ctx>, Path((pod, action)): Path<(String, String)>) -> Response {
    let r = match action.as_str() {
        "restart" => ctx.scheduler.restart_pod(&pod).await,
        "replace" => ctx.scheduler.replace_pod(&pod).await,
        "pause" => ctx.scheduler.pause_pod(&pod, true).await,
        "resume" => ctx.scheduler.pause_pod(&pod, false).await,
        other => {
            Err(Error::BadRequest(format!("unknown pod action {other:?}: expected restart, replace, pause or resume")))
        }
    };
    match r {
        Ok(()) => show_pod(State(ctx), Path(pod)).await,
        Err(e) => e.into_response(),
    }
}
