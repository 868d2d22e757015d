//! The client of the master's API, used by agents, frameworks and the CLI.
//! Event streams come back as an [`EventStream`] of typed events.

use super::{path, AgentClient, Api, SchedulerClient};
use crate::agent::logs::AgentLog;
use crate::protocol::*;
use crate::resources::TaskStatus;
use crate::{Error, Result};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// A client of one master.
#[derive(Clone)]
pub struct MasterClient {
    api: Api,
}

/// Events read off an NDJSON stream.
pub struct EventStream<T> {
    inner: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
    ready: VecDeque<T>,
    url: String,
}

impl<T: DeserializeOwned> EventStream<T> {
    /// The next event; `Ok(None)` when the master closed the stream.
    pub async fn next(&mut self) -> Result<Option<T>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            match self.inner.next().await {
                None => return Ok(None),
                Some(Err(source)) => return Err(Error::Http { url: self.url.clone(), source }),
                Some(Ok(chunk)) => {
                    self.buf.extend_from_slice(&chunk);
                    while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.buf.drain(..=pos).collect();
                        let line = &line[..line.len() - 1];
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let ev = serde_json::from_slice(line)
                            .map_err(|source| Error::Codec { key: self.url.clone(), source })?;
                        self.ready.push_back(ev);
                    }
                }
            }
        }
    }
}

impl MasterClient {
    /// A client of the master at `base` (e.g. `http://127.0.0.1:5050`).
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        MasterClient { api: Api::new(base, token, "master").with_timeout(Duration::from_secs(30)) }
    }

    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// The scheduler of a framework, through the master's forward
    /// (`/v1/frameworks/ID/api/…`), with this client's token.
    pub fn scheduler_of(&self, framework_id: &str) -> SchedulerClient {
        let base = self.api.url(&format!("{}/api", path(&["v1", "frameworks", framework_id])));
        SchedulerClient::from_api(self.api.at(base, "scheduler"))
    }

    /// The scheduler of the service `name`, through the master's front door
    /// (`/v1/services/NAME/api/…`): reachable from any machine that has the
    /// master's URL and token.
    pub fn scheduler_of_service(&self, name: &str) -> SchedulerClient {
        let base = self.api.url(&format!("{}/api", path(&["v1", "services", name])));
        SchedulerClient::from_api(self.api.at(base, "scheduler"))
    }

    /// The agent whose API is at `endpoint`, with this client's token.
    pub fn agent_at(&self, endpoint: &str) -> AgentClient {
        AgentClient::from_api(self.api.at(endpoint, "agent"))
    }

    async fn stream<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<EventStream<T>> {
        // A stream lasts as long as the master keeps it open: no timeout.
        let (mut req, url) = self.api.request_open(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.api.send(req, &url).await?;
        Ok(EventStream { inner: resp.bytes_stream().boxed(), buf: Vec::new(), ready: VecDeque::new(), url })
    }

    // ---- agents ----

    pub async fn register_agent(&self, req: &RegisterAgent) -> Result<Registered> {
        self.api.post("/v1/agents", req).await
    }

    pub async fn agent_events(&self, agent_id: &str) -> Result<EventStream<AgentEvent>> {
        self.stream(reqwest::Method::GET, &path(&["v1", "agents", agent_id, "events"]), None::<&()>).await
    }

    pub async fn heartbeat(&self, agent_id: &str) -> Result<()> {
        self.api.post_unit(&path(&["v1", "agents", agent_id, "heartbeat"]), &()).await
    }

    pub async fn status_update(&self, agent_id: &str, status: &TaskStatus) -> Result<()> {
        self.api.post_unit(&path(&["v1", "agents", agent_id, "status"]), status).await
    }

    pub async fn volumes_made(&self, agent_id: &str, reservations: &[crate::resources::Reservation]) -> Result<()> {
        self.api.post_unit(&path(&["v1", "agents", agent_id, "volumes"]), &reservations).await
    }

    /// An agent's own log, read through the master (`/v1/agents/ID/log`):
    /// the last `lines` lines, or what follows `offset`.
    pub async fn agent_log(&self, agent: &str, offset: Option<u64>, lines: Option<usize>) -> Result<AgentLog> {
        self.api.get(&format!("{}{}", path(&["v1", "agents", agent, "log"]), log_query(offset, lines))).await
    }

    // ---- frameworks ----

    pub async fn subscribe(&self, req: &Subscribe) -> Result<EventStream<FrameworkEvent>> {
        self.stream(reqwest::Method::POST, "/v1/frameworks/subscribe", Some(req)).await
    }

    fn framework(framework_id: &str, action: &str) -> String {
        path(&["v1", "frameworks", framework_id, action])
    }

    pub async fn accept(&self, framework_id: &str, req: &Accept) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "accept"), req).await
    }

    pub async fn decline(&self, framework_id: &str, req: &Decline) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "decline"), req).await
    }

    pub async fn suppress(&self, framework_id: &str) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "suppress"), &()).await
    }

    pub async fn revive(&self, framework_id: &str) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "revive"), &()).await
    }

    pub async fn acknowledge(&self, framework_id: &str, ack: &Acknowledge) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "acknowledge"), ack).await
    }

    pub async fn kill(&self, framework_id: &str, task_id: &str) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "kill"), &KillTask { task_id: task_id.into() }).await
    }

    pub async fn reconcile(&self, framework_id: &str, req: &Reconcile) -> Result<()> {
        self.api.post_unit(&Self::framework(framework_id, "reconcile"), req).await
    }

    // ---- reads ----

    pub async fn agents(&self) -> Result<Vec<AgentSummary>> {
        self.api.get("/v1/agents").await
    }

    pub async fn state(&self) -> Result<MasterState> {
        self.api.get("/v1/state").await
    }

    /// The agent that runs (or ran) a task, with its HTTP endpoint.
    pub async fn task_agent(&self, task_id: &str) -> Result<TaskAgent> {
        self.api.get(&path(&["v1", "tasks", task_id, "agent"])).await
    }

    /// Reads a task's log from its agent's API at `endpoint` (with this
    /// client's token): `stream` is `stdout` or `stderr`; see
    /// [`crate::agent::logs`] for `offset` and `lines`.
    pub async fn task_log(
        &self,
        endpoint: &str,
        task_id: &str,
        stream: &str,
        offset: Option<u64>,
        lines: Option<usize>,
    ) -> Result<TaskLog> {
        self.agent_at(endpoint).task_log(task_id, stream, offset, lines).await
    }
}

/// The query of one log read: `lines=N` for the first, `offset=N` after.
fn log_query(offset: Option<u64>, lines: Option<usize>) -> String {
    match (offset, lines) {
        (Some(o), _) => format!("?offset={o}"),
        (None, Some(n)) => format!("?lines={n}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_reads_ask_for_lines_first_and_an_offset_after() {
        assert_eq!(log_query(None, None), "");
        assert_eq!(log_query(None, Some(5)), "?lines=5");
        assert_eq!(log_query(Some(7), Some(5)), "?offset=7");
    }

    #[test]
    fn a_framework_scheduler_is_reached_through_the_masters_forward() {
        let m = MasterClient::new("http://127.0.0.1:5050/", "t");
        assert_eq!(m.scheduler_of("fw 1").base(), "http://127.0.0.1:5050/v1/frameworks/fw%201/api");
        assert_eq!(m.agent_at("http://127.0.1.2:4000/").base(), "http://127.0.1.2:4000");
    }
}
