//! The master's HTTP API under `/v1/`: JSON requests, and event streams as
//! newline-delimited JSON. Every route under `/v1/` needs the cluster token
//! (`Authorization: Bearer TOKEN`); without it the answer is 401.
//!
//! Outside `/v1/`, `GET /metrics` serves the master's registry (OpenMetrics
//! text) without a token, for Prometheus; see [`crate::metrics`] for why
//! that is safe. `/dashboard/` serves the dashboard page (it holds no data
//! and asks for the token); see [`super::dashboard`].

use super::core::Master;
use crate::protocol::*;
use crate::resources::TaskStatus;
use crate::Error;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Serialize;

type ApiResult<T> = Result<T, Error>;

async fn require_token(State(master): State<Master>, req: Request, next: Next) -> Response {
    let ok = crate::protocol::bearer_matches(req.headers(), master.token());
    if !ok {
        return Error::Unauthorized.into_response();
    }
    next.run(req).await
}

/// Turns a receiver of events into an NDJSON body; `guard` lives as long
/// as the body, so a closed connection marks the stream closed.
fn ndjson<T: Serialize + Send + 'static, G: Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
    guard: G,
) -> Response {
    let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), (rx, guard)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream.boxed()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The API router: the token check on every `/v1/` route, and `/metrics`
/// and the dashboard's static page without it.
pub fn router(master: Master) -> Router {
    let metrics = crate::metrics::router(master.registry());
    Router::new()
        .route("/v1/agents", get(list_agents).post(register_agent))
        .route("/v1/agents/{id}/events", get(agent_events))
        .route("/v1/agents/{id}/heartbeat", post(heartbeat))
        .route("/v1/agents/{id}/status", post(status_update))
        .route("/v1/agents/{id}/volumes", post(volumes_made))
        .route("/v1/frameworks/subscribe", post(subscribe))
        .route("/v1/frameworks/{id}/accept", post(accept))
        .route("/v1/frameworks/{id}/decline", post(decline))
        .route("/v1/frameworks/{id}/suppress", post(suppress))
        .route("/v1/frameworks/{id}/revive", post(revive))
        .route("/v1/frameworks/{id}/acknowledge", post(acknowledge))
        .route("/v1/frameworks/{id}/kill", post(kill))
        .route("/v1/frameworks/{id}/reconcile", post(reconcile))
        .route("/v1/tasks/{id}/agent", get(task_agent))
        .route("/v1/agents/{id}/log", get(agent_log))
        .route("/v1/state", get(state))
        .route("/v1/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .merge(super::dashboard::api_routes())
        .layer(middleware::from_fn_with_state(master.clone(), require_token))
        .with_state(master)
        .merge(metrics)
        .merge(super::dashboard::pages())
}

async fn list_agents(State(m): State<Master>) -> Json<Vec<AgentSummary>> {
    Json(m.agents())
}

async fn register_agent(State(m): State<Master>, Json(req): Json<RegisterAgent>) -> ApiResult<Json<Registered>> {
    Ok(Json(m.register_agent(req)?))
}

async fn agent_events(State(m): State<Master>, Path(id): Path<String>) -> ApiResult<Response> {
    let sub = m.agent_events(&id)?;
    Ok(ndjson(sub.events, sub.guard))
}

async fn heartbeat(State(m): State<Master>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    m.heartbeat(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status_update(
    State(m): State<Master>,
    Path(id): Path<String>,
    Json(status): Json<TaskStatus>,
) -> ApiResult<StatusCode> {
    m.status_update(&id, status)?;
    Ok(StatusCode::ACCEPTED)
}

async fn volumes_made(
    State(m): State<Master>,
    Path(id): Path<String>,
    Json(reservations): Json<Vec<crate::resources::Reservation>>,
) -> ApiResult<StatusCode> {
    m.volumes_made(&id, reservations)?;
    Ok(StatusCode::ACCEPTED)
}

async fn subscribe(State(m): State<Master>, Json(req): Json<Subscribe>) -> ApiResult<Response> {
    let sub = m.subscribe(req)?;
    Ok(ndjson(sub.events, sub.guard))
}

async fn accept(State(m): State<Master>, Path(id): Path<String>, Json(req): Json<Accept>) -> ApiResult<StatusCode> {
    m.accept(&id, req)?;
    Ok(StatusCode::ACCEPTED)
}

async fn decline(State(m): State<Master>, Path(id): Path<String>, Json(req): Json<Decline>) -> ApiResult<StatusCode> {
    m.decline(&id, req)?;
    Ok(StatusCode::ACCEPTED)
}

async fn suppress(State(m): State<Master>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    m.suppress(&id)?;
    Ok(StatusCode::ACCEPTED)
}

async fn revive(State(m): State<Master>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    m.revive(&id)?;
    Ok(StatusCode::ACCEPTED)
}

async fn acknowledge(
    State(m): State<Master>,
    Path(id): Path<String>,
    Json(req): Json<Acknowledge>,
) -> ApiResult<StatusCode> {
    m.acknowledge(&id, req)?;
    Ok(StatusCode::ACCEPTED)
}

async fn kill(State(m): State<Master>, Path(id): Path<String>, Json(req): Json<KillTask>) -> ApiResult<StatusCode> {
    m.kill(&id, &req.task_id)?;
    Ok(StatusCode::ACCEPTED)
}

async fn reconcile(
    State(m): State<Master>,
    Path(id): Path<String>,
    Json(req): Json<Reconcile>,
) -> ApiResult<StatusCode> {
    m.reconcile(&id, req)?;
    Ok(StatusCode::ACCEPTED)
}

async fn task_agent(State(m): State<Master>, Path(id): Path<String>) -> ApiResult<Json<TaskAgent>> {
    Ok(Json(m.task_agent(&id)?))
}

/// `GET /v1/agents/{id}/log?offset=&lines=`: an agent's own log (by agent id
/// or host name), read from the agent's API; see [`crate::agent::logs`].
async fn agent_log(
    State(m): State<Master>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let agents = m.agents();
    let Some(agent) = agents.iter().find(|a| a.id == id).or_else(|| agents.iter().find(|a| a.hostname == id)) else {
        let known: Vec<String> = agents.iter().map(|a| format!("{} ({})", a.id, a.hostname)).collect();
        let error = format!("no agent {id}: known agents: {}", known.join(", "));
        return (StatusCode::NOT_FOUND, Json(ApiError { error })).into_response();
    };
    let Some(endpoint) = &agent.endpoint else {
        let error = format!("agent {id} announced no API endpoint: its log cannot be read");
        return (StatusCode::NOT_FOUND, Json(ApiError { error })).into_response();
    };
    let mut url = format!("{}/v1/log", endpoint.trim_end_matches('/'));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url = format!("{url}?{q}");
    }
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15)).build().unwrap_or_default();
    match http.get(&url).bearer_auth(m.token()).send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match resp.bytes().await {
                Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => Error::Other(format!("agent {id} at {url} broke off its answer: {e}")).into_response(),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, Json(ApiError { error: format!("cannot reach agent {id} at {url}: {e}") }))
            .into_response(),
    }
}

async fn state(State(m): State<Master>) -> Json<MasterState> {
    Json(m.state())
}

/// Serves the API on `listener` until the future is dropped.
pub async fn serve(master: Master, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(master)).await
}
