//! `smack agent` with its subcommands: without one it runs an agent (see
//! [`crate::commands::run_agent`]); `smack agent log AGENT [--lines N]
//! [--follow]` prints an agent's own log (`WORK_DIR/agent.log`, rotated like
//! task logs), read through the master's `/v1/agents/{id}/log`.

use crate::cluster::ClusterFile;
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use smack_operator::agent::logs::{AgentLog, RotatingWriter};
use smack_operator::client::MasterClient;
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

async fn read(master: &MasterClient, agent: &str, offset: Option<u64>, lines: Option<usize>) -> Result<AgentLog> {
    master.agent_log(agent, offset, lines).await.map_err(|e| match e {
        smack_operator::Error::Api { status, message } => {
            anyhow!("reading the log of agent {agent}: {message} (HTTP {status})")
        }
        e => anyhow!("reading the log of agent {agent}: {e}"),
    })
}

async fn log(c: &ClusterFile, agent: &str, lines: Option<usize>, follow: bool) -> Result<()> {
    let master = c.master_client();
    let first = read(&master, agent, None, lines).await?;
    crate::commands::print_now(&first.data)?;
    if !follow {
        return Ok(());
    }
    let mut offset = first.offset;
    let stop = crate::commands::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let next = read(&master, agent, Some(offset), None).await?;
        offset = next.offset;
        if !next.data.is_empty() {
            crate::commands::print_now(&next.data)?;
            continue;
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
