//! The HTTP client of the master API, used by agents, frameworks and the
//! CLI. Event streams come back as a [`EventStream`] of typed events.

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
    base: String,
    token: String,
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client without TLS always builds");
        MasterClient { base: base.into().trim_end_matches('/').to_string(), token: token.into(), http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
        Err(Error::Api { status: status.as_u16(), message })
    }

    async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<reqwest::Response> {
        let url = self.url(path);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await
            .map_err(|source| Error::Http { url: url.clone(), source })?;
        Self::check(resp).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| Error::Http { url: url.clone(), source })?;
        let resp = Self::check(resp).await?;
        resp.json().await.map_err(|source| Error::Http { url, source })
    }

    async fn stream<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, url: String) -> Result<EventStream<T>> {
        let resp =
            req.bearer_auth(&self.token).send().await.map_err(|source| Error::Http { url: url.clone(), source })?;
        let resp = Self::check(resp).await?;
        Ok(EventStream { inner: resp.bytes_stream().boxed(), buf: Vec::new(), ready: VecDeque::new(), url })
    }

    // ---- agents ----

    pub async fn register_agent(&self, req: &RegisterAgent) -> Result<Registered> {
        let resp = self.post("/v1/agents", req).await?;
        resp.json().await.map_err(|source| Error::Http { url: self.url("/v1/agents"), source })
    }

    pub async fn agent_events(&self, agent_id: &str) -> Result<EventStream<AgentEvent>> {
        let url = self.url(&format!("/v1/agents/{agent_id}/events"));
        self.stream(self.http.get(&url), url).await
    }

    pub async fn heartbeat(&self, agent_id: &str) -> Result<()> {
        self.post(&format!("/v1/agents/{agent_id}/heartbeat"), &()).await.map(drop)
    }

    pub async fn status_update(&self, agent_id: &str, status: &TaskStatus) -> Result<()> {
        self.post(&format!("/v1/agents/{agent_id}/status"), status).await.map(drop)
    }

    pub async fn volumes_made(&self, agent_id: &str, reservations: &[crate::resources::Reservation]) -> Result<()> {
        self.post(&format!("/v1/agents/{agent_id}/volumes"), &reservations).await.map(drop)
    }

    // ---- frameworks ----

    pub async fn subscribe(&self, req: &Subscribe) -> Result<EventStream<FrameworkEvent>> {
        let url = self.url("/v1/frameworks/subscribe");
        self.stream(self.http.post(&url).json(req), url).await
    }

    pub async fn accept(&self, framework_id: &str, req: &Accept) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/accept"), req).await.map(drop)
    }

    pub async fn decline(&self, framework_id: &str, req: &Decline) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/decline"), req).await.map(drop)
    }

    pub async fn suppress(&self, framework_id: &str) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/suppress"), &()).await.map(drop)
    }

    pub async fn revive(&self, framework_id: &str) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/revive"), &()).await.map(drop)
    }

    pub async fn acknowledge(&self, framework_id: &str, ack: &Acknowledge) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/acknowledge"), ack).await.map(drop)
    }

    pub async fn kill(&self, framework_id: &str, task_id: &str) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/kill"), &KillTask { task_id: task_id.into() }).await.map(drop)
    }

    pub async fn reconcile(&self, framework_id: &str, req: &Reconcile) -> Result<()> {
        self.post(&format!("/v1/frameworks/{framework_id}/reconcile"), req).await.map(drop)
    }

    // ---- reads ----

    pub async fn agents(&self) -> Result<Vec<AgentSummary>> {
        self.get_json("/v1/agents").await
    }

    pub async fn state(&self) -> Result<MasterState> {
        self.get_json("/v1/state").await
    }

    /// The agent that runs (or ran) a task, with its HTTP endpoint.
    pub async fn task_agent(&self, task_id: &str) -> Result<TaskAgent> {
        self.get_json(&format!("/v1/tasks/{}/agent", encode(task_id))).await
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
        let mut url = format!("{}/v1/tasks/{}/log?stream={stream}", endpoint.trim_end_matches('/'), encode(task_id));
        if let Some(o) = offset {
            url.push_str(&format!("&offset={o}"));
        }
        if let Some(n) = lines {
            url.push_str(&format!("&lines={n}"));
        }
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| Error::Other(format!("cannot reach the agent at {endpoint}: {e}")))?;
        let resp = Self::check(resp).await?;
        resp.json().await.map_err(|e| Error::Other(format!("bad answer from the agent at {endpoint}: {e}")))
    }
}

/// Percent-encodes a path segment (task ids are usually safe already).
fn encode(segment: &str) -> String {
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
