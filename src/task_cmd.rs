//! `smack task log TASK [--stderr] [--lines N] [--follow]`: asks the master
//! which agent runs (or ran) the task, then reads the log from that agent.
//!
//! Agents rotate task output (`stdout`, `stdout.1`, …; see
//! `smack_operator::agent::logs`): `--lines` and the whole-log read span the
//! rotated files, and `--follow` passes back logical offsets that go on
//! across a rotation, so no line is printed twice.

use crate::cluster::ClusterFile;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use smack_operator::client::MasterClient;
use smack_operator::protocol::TaskAgent;
use smack_operator::Error;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum TaskCmd {
    /// Print a task's stdout (or stderr), running or finished, from its agent.
    Log {
        /// The task id.
        task: String,
        /// Read stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Only the last N lines.
        #[arg(long, short = 'n')]
        lines: Option<usize>,
        /// Keep printing new output until Ctrl-C (or until the task has
        /// ended and nothing new came for 2 s).
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

const POLL: Duration = Duration::from_millis(500);
const QUIET_AFTER_END: Duration = Duration::from_secs(2);

pub async fn run(c: &ClusterFile, cmd: TaskCmd) -> Result<()> {
    match cmd {
        TaskCmd::Log { task, stderr, lines, follow } => {
            log(c, &task, if stderr { "stderr" } else { "stdout" }, lines, follow).await
        }
    }
}

/// Where the task runs, with a clear error for an unknown task.
async fn locate(client: &MasterClient, task: &str) -> Result<(TaskAgent, String)> {
    let found = match client.task_agent(task).await {
        Ok(f) => f,
        Err(Error::Api { status: 404, .. }) => {
            let known: Vec<String> = client
                .state()
                .await
                .map(|s| s.agents.iter().flat_map(|a| a.tasks.iter().map(|t| t.info.id.clone())).collect())
                .unwrap_or_default();
            if known.is_empty() {
                bail!("no task {task}: the master knows no running task");
            }
            bail!("no task {task}: known running tasks: {}", known.join(", "));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(endpoint) = found.endpoint.clone() else {
        bail!(
            "task {task} is on agent {}, which announced no API endpoint (an agent older than `smack task log`?)",
            found.agent_id
        );
    };
    Ok((found, endpoint))
}

async fn log(c: &ClusterFile, task: &str, stream: &str, lines: Option<usize>, follow: bool) -> Result<()> {
    let client = c.master_client();
    let (found, endpoint) = locate(&client, task).await?;
    let read = |offset: Option<u64>, lines: Option<usize>| {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        let agent_id = found.agent_id.clone();
        async move {
            client
                .task_log(&endpoint, task, stream, offset, lines)
                .await
                .map_err(|e| anyhow!("reading the {stream} of task {task} from agent {agent_id}: {e}"))
        }
    };
    let first = read(None, lines).await?;
    crate::commands::print_now(&first.data)?;
    if !follow {
        return Ok(());
    }
    let mut offset = first.offset;
    let mut last_data = Instant::now();
    let stop = crate::commands::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
        let next = read(Some(offset), None).await?;
        offset = next.offset;
        if !next.data.is_empty() {
            crate::commands::print_now(&next.data)?;
            last_data = Instant::now();
            continue;
        }
        if last_data.elapsed() >= QUIET_AFTER_END {
            let state = client.task_agent(task).await.ok().and_then(|t| t.state);
            if let Some(s) = state.filter(|s| s.is_terminal()) {
                eprintln!("task {task} has ended ({s}) and wrote nothing more for 2s: stopping");
                return Ok(());
            }
        }
    }
}
