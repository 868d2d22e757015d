//! The client of an agent's own API (`/v1/tasks/ID/log`, `/metrics`).

use super::{encode_segment, path, Api};
use crate::protocol::TaskLog;
use crate::Result;
use std::time::Duration;

/// A client of one agent's API, usually made by
/// [`super::MasterClient::agent_at`] from the endpoint the agent announced.
#[derive(Clone)]
pub struct AgentClient {
    api: Api,
}

impl AgentClient {
    /// The agent whose API is at `endpoint`, called with `token`.
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> Self {
        AgentClient::from_api(Api::new(endpoint, token, "agent"))
    }

    pub(super) fn from_api(api: Api) -> Self {
        AgentClient { api: api.with_timeout(Duration::from_secs(30)) }
    }

    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// A task's log: `stream` is `stdout` or `stderr`; see
    /// [`crate::agent::logs`] for `offset` and `lines`.
    pub async fn task_log(
        &self,
        task_id: &str,
        stream: &str,
        offset: Option<u64>,
        lines: Option<usize>,
    ) -> Result<TaskLog> {
        let mut p = format!("{}?stream={}", path(&["v1", "tasks", task_id, "log"]), encode_segment(stream));
        if let Some(o) = offset {
            p.push_str(&format!("&offset={o}"));
        }
        if let Some(n) = lines {
            p.push_str(&format!("&lines={n}"));
        }
        self.api.get(&p).await
    }

    /// Whether the agent serves its own `/metrics` (under `smack up` its
    /// families are in the master's registry instead); waits at most
    /// `timeout`.
    pub async fn serves_metrics(&self, timeout: Duration) -> bool {
        let (req, _) = self.api.request(reqwest::Method::GET, "/metrics");
        req.timeout(timeout).send().await.is_ok_and(|r| r.status().is_success())
    }
}
