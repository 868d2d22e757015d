//! The dashboard the master serves: one static page (HTML, JS, CSS, embedded
//! in the binary, no build step, nothing fetched from elsewhere) and the two
//! API routes it needs besides `/v1/agents` and `/v1/state`, so that the page
//! talks to one origin with one token:
//!
//! - `GET|POST /v1/frameworks/{id}/api/{*rest}` forwards to the framework's
//!   own HTTP API (the URL it announced at subscribe) as `{api_url}/{rest}`,
//!   with the cluster token: a service scheduler's plans and pods;
//! - `GET /v1/tasks/{id}/log?stream=&offset=&lines=` forwards to the agent
//!   that runs (or ran) the task: its stdout or stderr;
//! - `GET /v1/tasks/{id}/metrics` scrapes a running task's own `/metrics`
//!   (OpenMetrics text, e.g. a stage task's `smack_stage_*` families) and
//!   answers it as is. The task's metrics are at
//!   `http://AGENT_HOST:PORT/metrics`, where AGENT_HOST is the host name of
//!   the agent the master's ledger has the task on (tasks bind to it, `$HOST`)
//!   and PORT is the port named `metrics` of the task's pod, read from the
//!   scheduler's own pod records (`GET /v1/pods` on the framework's API: the
//!   pod whose latest launch is this task). A framework without an API, or
//!   without a record of the task, falls back to the task's `PORT_METRICS`
//!   environment variable, which is how a port named `metrics` reaches a
//!   task. A task with neither gets 404 with the reason; a task that is not
//!   running gets 404 too. The cluster token is not sent to the task.
//!
//! The page's pure parts (OpenMetrics parsing, stage rates, sparklines, the
//! `count:` edit of a spec's YAML) are in `dashboard/lib.js`, unit-tested by
//! `tests/dashboard/unit.mjs` under Node.
//!
//! The page itself (`/dashboard/`) needs no token to load; it holds no data
//! and asks for the token before it shows anything. The API routes sit
//! behind the token like every other `/v1/` route.

use super::core::Master;
use crate::protocol::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const LIB_JS: &str = include_str!("dashboard/lib.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// The page's content security policy: everything from this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How long a forwarded call may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

/// How long reading a scheduler's pod records or a task's metrics may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the port a task serves its metrics on.
pub const METRICS_PORT: &str = "metrics";

/// The environment variable a port named `metrics` reaches a task as.
pub const METRICS_PORT_ENV: &str = "PORT_METRICS";

/// The HTTP client that forwards calls to frameworks and agents.
#[derive(Clone)]
struct Upstream(reqwest::Client);

/// The static page: `/` and `/dashboard` redirect to `/dashboard/`. No token.
pub fn pages() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/dashboard/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/dashboard/lib.js", get(|| async { asset("text/javascript; charset=utf-8", LIB_JS) }))
        .route("/dashboard/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
}

/// The forwarding routes, to be mounted under the master's token check.
pub fn api_routes() -> Router<Master> {
    let http = reqwest::Client::builder().timeout(UPSTREAM_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
    Router::new()
        .route("/v1/frameworks/{id}/api/{*rest}", get(framework_api).post(framework_api))
        .route("/v1/services/{name}/api/{*rest}", get(service_api).post(service_api))
        .route("/v1/tasks/{id}/log", get(task_log))
        .route("/v1/tasks/{id}/metrics", get(task_metrics))
        .layer(Extension(Upstream(http)))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn fail(status: StatusCode, error: String) -> Response {
    (status, Json(ApiError { error })).into_response()
}

/// Percent-encodes one path segment.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The part of a request path after `/v1/frameworks/{id}/api/`, as sent
/// (still percent-encoded), refusing `.` and `..` segments.
pub fn forwarded_path(request_path: &str) -> Result<&str, String> {
    let mut parts = request_path.splitn(6, '/');
    let head: Vec<&str> = parts.by_ref().take(5).collect();
    let rest = parts.next().unwrap_or("");
    if head.len() != 5 || head[0..2] != ["", "v1"] || !["frameworks", "services"].contains(&head[2]) || head[4] != "api"
    {
        return Err(format!("{request_path}: expected /v1/frameworks/ID/api/PATH or /v1/services/NAME/api/PATH"));
    }
    if rest.is_empty() {
        return Err(format!("{request_path}: no path after /api/ to forward"));
    }
    let dot = |s: &str| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if rest.split('/').any(dot) {
        return Err(format!("{request_path}: `.` and `..` segments are not forwarded"));
    }
    Ok(rest)
}

/// `{base}/{path}[?query]`, with exactly one slash between.
pub fn upstream_url(base: &str, path: &str, query: Option<&str>) -> String {
    let mut url = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Sends one call upstream (with the cluster token, when given) and turns
/// the answer into ours: same status, content type and body. `what` names
/// the upstream in errors.
async fn forward(
    http: &reqwest::Client,
    token: Option<&str>,
    method: Method,
    url: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
    what: &str,
) -> Response {
    let mut req = http.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct.clone());
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(url, error = %e, "forwarded call failed");
            return fail(StatusCode::BAD_GATEWAY, format!("cannot reach {what} at {url}: {e}"));
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_GATEWAY, format!("{what} at {url} broke off its answer: {e}")),
    };
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    if let Some(ct) = ct {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

/// The body of both API front doors: checks the forwarded path, looks up
/// the upstream's base URL (`base`; `missing` is the 404 reason when it
/// announced none), and forwards the call there. `what` names the upstream
/// in errors.
#[allow(clippy::too_many_arguments)]
async fn forward_api(
    m: &Master,
    http: &reqwest::Client,
    base: impl FnOnce() -> crate::Result<Option<String>>,
    missing: String,
    what: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = match forwarded_path(uri.path()) {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
    };
    let base = match base() {
        Ok(Some(u)) => u,
        Ok(None) => return fail(StatusCode::NOT_FOUND, missing),
        Err(e) => return e.into_response(),
    };
    let url = upstream_url(&base, rest, uri.query());
    forward(http, Some(m.token()), method, &url, headers.get(header::CONTENT_TYPE), body, &what).await
}

/// `GET|POST /v1/frameworks/{id}/api/{*rest}`.
async fn framework_api(
    State(m): State<Master>,
    Extension(Upstream(http)): Extension<Upstream>,
    Path((id, _rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let missing = format!("framework {id} announced no API URL when it subscribed; nothing to forward to");
    let what = format!("framework {id}");
    forward_api(&m, &http, || m.framework_api_url(&id), missing, what, method, uri, headers, body).await
}

/// `GET|POST /v1/services/{name}/api/{*rest}`: the front door to a service's
/// scheduler, by the service's name (DC/OS's admin router did the same), so
/// the CLI needs only the master's URL and token.
async fn service_api(
    State(m): State<Master>,
    Extension(Upstream(http)): Extension<Upstream>,
    Path((name, _rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let missing = format!("the scheduler of service {name} announced no API URL");
    let what = format!("the scheduler of service {name}");
    forward_api(&m, &http, || m.service_api_url(&name), missing, what, method, uri, headers, body).await
}

/// `GET /v1/tasks/{id}/log`: the log of a task, from its agent.
async fn task_log(
    State(m): State<Master>,
    Extension(Upstream(http)): Extension<Upstream>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let found = match m.task_agent(&id) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(endpoint) = found.endpoint else {
        return fail(
            StatusCode::NOT_FOUND,
            format!("task {id} is on agent {}, which announced no API endpoint for logs", found.agent_id),
        );
    };
    let path = format!("v1/tasks/{}/log", encode_segment(&id));
    let url = upstream_url(&endpoint, &path, query.as_deref());
    forward(&http, Some(m.token()), Method::GET, &url, None, Bytes::new(), &format!("agent {}", found.agent_id)).await
}

/// One pod from a scheduler's `GET /v1/pods`, as far as finding a task's
/// metrics needs it; other fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodPorts {
    pub pod: PodPortsRecord,
}

/// The part of a scheduler's pod record that [`metrics_port`] reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodPortsRecord {
    pub name: String,
    /// Port name → port.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Task name → the id of its latest launch.
    #[serde(default)]
    pub tasks: BTreeMap<String, String>,
}

/// The port a task serves its metrics on: the port named `metrics` of the
/// pod whose latest launch is `task_id` (from the scheduler's `pods`, when it
/// answered), else the task's `PORT_METRICS` variable. The error says why
/// the task has none.
pub fn metrics_port(task_id: &str, pods: Option<&[PodPorts]>, env: &BTreeMap<String, String>) -> Result<u16, String> {
    let pod = pods.and_then(|pods| pods.iter().map(|p| &p.pod).find(|p| p.tasks.values().any(|t| t == task_id)));
    if let Some(pod) = pod {
        return pod.ports.get(METRICS_PORT).copied().ok_or_else(|| {
            let names: Vec<&str> = pod.ports.keys().map(String::as_str).collect();
            let has = if names.is_empty() { "no ports".to_string() } else { format!("ports {}", names.join(", ")) };
            format!(
                "task {task_id}'s pod {} has no port named `{METRICS_PORT}` (it has {has}): it serves no metrics",
                pod.name
            )
        });
    }
    match env.get(METRICS_PORT_ENV) {
        Some(v) => v.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("task {task_id}'s {METRICS_PORT_ENV} is {v:?}, expected a port number from 1 to 65535")
        }),
        None => Err(format!(
            "task {task_id} has no port named `{METRICS_PORT}`: its scheduler has no pod record of it and it has no \
             {METRICS_PORT_ENV} variable, so it serves no metrics"
        )),
    }
}

/// `http://HOST:PORT/metrics`, with an IPv6 host in brackets.
pub fn metrics_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}/metrics")
    } else {
        format!("http://{host}:{port}/metrics")
    }
}

/// The pod records of a framework's scheduler, if it has an API and answers.
async fn scheduler_pods(http: &reqwest::Client, token: &str, api_url: &str) -> Option<Vec<PodPorts>> {
    let url = upstream_url(api_url, "v1/pods", None);
    let resp = http.get(&url).bearer_auth(token).timeout(SCRAPE_TIMEOUT).send().await;
    match resp {
        Ok(r) if r.status().is_success() => match r.json::<Vec<PodPorts>>().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(url, error = %e, "pod records not understood; using the task's environment");
                None
            }
        },
        Ok(r) => {
            tracing::debug!(url, status = %r.status(), "no pod records; using the task's environment");
            None
        }
        Err(e) => {
            tracing::debug!(url, error = %e, "scheduler unreachable; using the task's environment");
            None
        }
    }
}

/// `GET /v1/tasks/{id}/metrics`: a running task's own `/metrics`, scraped
/// from where it runs (see the module doc for how the port is found).
async fn task_metrics(
    State(m): State<Master>,
    Extension(Upstream(http)): Extension<Upstream>,
    Path(id): Path<String>,
) -> Response {
    let st = m.state();
    let found = st.agents.iter().find_map(|a| a.tasks.iter().find(|t| t.info.id == id).map(|t| (a.id.clone(), t)));
    let Some((agent_id, task)) = found else {
        return match m.task_agent(&id) {
            Ok(f) => fail(
                StatusCode::NOT_FOUND,
                format!(
                    "task {id} is not running (last seen {} on agent {}): only a running task serves metrics",
                    f.state.map(|s| s.as_str()).unwrap_or("UNKNOWN"),
                    f.agent_id
                ),
            ),
            Err(e) => e.into_response(),
        };
    };
    let Some(host) = m.agents().into_iter().find(|a| a.id == agent_id).map(|a| a.hostname) else {
        return fail(StatusCode::NOT_FOUND, format!("task {id} is on agent {agent_id}, which is no longer registered"));
    };
    let api_url = st.frameworks.iter().find(|f| f.id == task.framework_id).and_then(|f| f.api_url.clone());
    let pods = match &api_url {
        Some(api) => scheduler_pods(&http, m.token(), api).await,
        None => None,
    };
    let port = match metrics_port(&id, pods.as_deref(), &task.info.env) {
        Ok(p) => p,
        Err(e) => return fail(StatusCode::NOT_FOUND, e),
    };
    let url = metrics_url(&host, port);
    forward(&http, None, Method::GET, &url, None, Bytes::new(), &format!("task {id}'s metrics")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_path_is_what_follows_api() {
        assert_eq!(forwarded_path("/v1/frameworks/fw-1/api/v1/plans").unwrap(), "v1/plans");
        assert_eq!(forwarded_path("/v1/frameworks/fw-1/api/v1/plans/deploy/pause").unwrap(), "v1/plans/deploy/pause");
        assert_eq!(forwarded_path("/v1/frameworks/fw-1/api/v1/pods/a%20b").unwrap(), "v1/pods/a%20b");
    }

    #[test]
    fn dot_segments_and_odd_paths_are_refused() {
        for bad in [
            "/v1/frameworks/fw-1/api/v1/../x",
            "/v1/frameworks/fw-1/api/./v1",
            "/v1/frameworks/fw-1/api/v1/%2E%2e/x",
            "/v1/frameworks/fw-1/api/",
            "/v1/frameworks/fw-1/accept",
            "/v1/agents",
        ] {
            let e = forwarded_path(bad).unwrap_err();
            assert!(e.starts_with(bad), "{e}");
        }
    }

    #[test]
    fn upstream_urls_join_with_one_slash_and_keep_the_query() {
        assert_eq!(upstream_url("http://h:1", "v1/plans", None), "http://h:1/v1/plans");
        assert_eq!(upstream_url("http://h:1/", "/v1/plans", Some("")), "http://h:1/v1/plans");
        assert_eq!(
            upstream_url("http://h:1", "v1/tasks/t/log", Some("stream=stderr&lines=5")),
            "http://h:1/v1/tasks/t/log?stream=stderr&lines=5"
        );
    }

    #[test]
    fn task_ids_are_encoded_as_one_segment() {
        assert_eq!(encode_segment("hello-0-server__ab12"), "hello-0-server__ab12");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    fn pod(name: &str, ports: &[(&str, u16)], tasks: &[(&str, &str)]) -> PodPorts {
        PodPorts {
            pod: PodPortsRecord {
                name: name.into(),
                ports: ports.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                tasks: tasks.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
        }
    }

    #[test]
    fn the_metrics_port_is_the_pods_port_named_metrics() {
        let pods = vec![
            pod("web-0", &[("http", 41000)], &[("server", "web-0-server__1")]),
            pod("analyze-0", &[("http", 41001), ("metrics", 41002)], &[("stage", "analyze-0-stage__2")]),
        ];
        let env: BTreeMap<String, String> = [("PORT_METRICS".to_string(), "1".to_string())].into();
        assert_eq!(metrics_port("analyze-0-stage__2", Some(&pods), &env), Ok(41002));
        // The pod record wins over the environment.
        let e = metrics_port("web-0-server__1", Some(&pods), &env).unwrap_err();
        assert!(e.contains("pod web-0 has no port named `metrics` (it has ports http)"), "{e}");
    }

    #[test]
    fn without_a_pod_record_the_environment_names_the_port() {
        let env = |v: &str| -> BTreeMap<String, String> { [("PORT_METRICS".to_string(), v.to_string())].into() };
        let other = vec![pod("x-0", &[("metrics", 1)], &[("t", "someone-else")])];
        assert_eq!(metrics_port("t1", None, &env("40007")), Ok(40007));
        assert_eq!(metrics_port("t1", Some(&other), &env(" 40007 ")), Ok(40007));
        for bad in ["", "0", "70000", "http"] {
            let e = metrics_port("t1", None, &env(bad)).unwrap_err();
            assert!(e.contains("expected a port number"), "{e}");
        }
        let e = metrics_port("t1", Some(&[]), &BTreeMap::new()).unwrap_err();
        assert!(e.starts_with("task t1 has no port named `metrics`"), "{e}");
    }

    #[test]
    fn pod_records_parse_from_a_schedulers_answer() {
        let json = r#"[{"pod":{"name":"analyze-0","pod_type":"analyze","index":0,"hostname":"127.0.1.1",
            "ports":{"metrics":41002},"tasks":{"stage":"analyze-0-stage__2"},"replace":false},"tasks":[]}]"#;
        let pods: Vec<PodPorts> = serde_json::from_str(json).unwrap();
        assert_eq!(metrics_port("analyze-0-stage__2", Some(&pods), &BTreeMap::new()), Ok(41002));
    }

    #[test]
    fn metrics_urls_bracket_ipv6_hosts() {
        assert_eq!(metrics_url("127.0.1.2", 41002), "http://127.0.1.2:41002/metrics");
        assert_eq!(metrics_url("::1", 9), "http://[::1]:9/metrics");
        assert_eq!(metrics_url("[::1]", 9), "http://[::1]:9/metrics");
    }

    #[test]
    fn the_page_refers_only_to_its_own_assets() {
        assert!(INDEX_HTML.contains("app.js") && INDEX_HTML.contains("lib.js") && INDEX_HTML.contains("app.css"));
        for text in [INDEX_HTML, APP_JS, LIB_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"), "the page must work offline");
        }
    }
}
