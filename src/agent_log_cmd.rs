//! `smack agent` with its subcommands: without one it runs an agent (see
//! [`crate::commands::run_agent`]); `smack agent log AGENT [--lines N]
//! [--follow]` prints an agent's own log (`WORK_DIR/agent.log`, rotated like
//! task logs), read through the master's `/v1/agents/{id}/log`.

use crate::cluster::ClusterFile;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use smack_operator::agent::logs::{AgentLog, RotatingWriter};
use smack_operator::protocol::ApiError;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// `smack agent [FLAGS]` runs an agent; `smack agent log …` reads one's log.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCommand {
    #[command(subcommand)]
    pub cmd: Option<AgentSub>,
    #[command(flatten)]
    pub run: crate::commands::AgentArgs,
}

#[derive(Subcommand)]
pub enum AgentSub {
    /// Print an agent's own log (by agent id or host name), through the master.
    Log {
        /// The agent's id or host name (see `smack agents`).
        agent: String,
        /// Only the last N lines.
        #[arg(long, short = 'n')]
        lines: Option<usize>,
        /// Keep printing new lines until Ctrl-C.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

const POLL: Duration = Duration::from_millis(500);

/// The writer of the agent's own log (`WORK_DIR/agent.log`) when `cmd`
/// runs an agent; None for `smack agent log`, or when the file cannot be
/// opened (said on stderr: the agent still logs there).
pub fn own_log(cmd: &AgentCommand, state_dir: &Path) -> Option<RotatingWriter> {
    if cmd.cmd.is_some() {
        return None;
    }
    let path = cmd.run.log_file(state_dir);
    match RotatingWriter::open(&path, cmd.run.log_rotation()) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("cannot open the agent's log file {}: {e}; logging to stderr only", path.display());
            None
        }
    }
}

pub async fn run(c: &ClusterFile, sub: AgentSub) -> Result<()> {
    match sub {
        AgentSub::Log { agent, lines, follow } => log(c, &agent, lines, follow).await,
    }
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query of one read: `lines=N` for the first, `offset=N` after.
fn query(offset: Option<u64>, lines: Option<usize>) -> String {
    match (offset, lines) {
        (Some(o), _) => format!("?offset={o}"),
        (None, Some(n)) => format!("?lines={n}"),
        (None, None) => String::new(),
    }
}

async fn read(
    http: &reqwest::Client,
    c: &ClusterFile,
    agent: &str,
    offset: Option<u64>,
    lines: Option<usize>,
) -> Result<AgentLog> {
    let url = format!("{}/v1/agents/{}/log{}", c.master.trim_end_matches('/'), encode(agent), query(offset, lines));
    let resp = http
        .get(&url)
        .bearer_auth(&c.token)
        .send()
        .await
        .with_context(|| format!("cannot reach the master at {}", c.master))?;
    let status = resp.status();
    let body = resp.text().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let why = serde_json::from_str::<ApiError>(&body).map(|e| e.error).unwrap_or(body);
        bail!("reading the log of agent {agent}: {why} (HTTP {status})");
    }
    serde_json::from_str(&body).with_context(|| format!("bad answer from {url}: expected an agent log"))
}

async fn log(c: &ClusterFile, agent: &str, lines: Option<usize>, follow: bool) -> Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let first = read(&http, c, agent, None, lines).await?;
    let mut out = std::io::stdout();
    out.write_all(first.data.as_bytes())?;
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut offset = first.offset;
    let stop = crate::commands::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let next = read(&http, c, agent, Some(offset), None).await?;
        offset = next.offset;
        if !next.data.is_empty() {
            out.write_all(next.data.as_bytes())?;
            out.flush()?;
            continue;
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_segments() {
        assert_eq!(query(None, None), "");
        assert_eq!(query(None, Some(5)), "?lines=5");
        assert_eq!(query(Some(7), Some(5)), "?offset=7");
        assert_eq!(encode("127.0.1.1"), "127.0.1.1");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
