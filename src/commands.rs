//! `smack master`, `smack agent` and the read commands that talk to a master.

use crate::cluster::{self, ClusterFile};
use crate::Output;
use anyhow::{bail, Context, Result};
use clap::Args;
use smack_operator::agent::logs::LogRotation;
use smack_operator::agent::{Agent, AgentConfig};
use smack_operator::master::{api, Master, MasterConfig};
use smack_operator::metrics::{self, AgentMetrics};
use smack_operator::resources::{Attributes, PortRange, PortSet, Resources};
use smack_operator::state::FileStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Parses `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration: expected e.g. 500ms, 10s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}: expected ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `31000-31999` or `31000`, comma-separated.
pub fn parse_ports(s: &str) -> Result<PortSet, String> {
    let mut set = PortSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u16 = a.trim().parse().map_err(|_| format!("{part:?}: expected a port range like 31000-31999"))?;
        let b: u16 = b.trim().parse().map_err(|_| format!("{part:?}: expected a port range like 31000-31999"))?;
        if b < a {
            return Err(format!("{part:?}: the range ends before it begins"));
        }
        set.insert_range(PortRange::new(a, b));
    }
    Ok(set)
}

/// Parses `PATH:SIZE_MiB` for a MOUNT disk.
pub fn parse_mount(s: &str) -> Result<(String, u64), String> {
    let (path, size) =
        s.rsplit_once(':').ok_or_else(|| format!("{s:?}: expected PATH:SIZE_MIB, e.g. /mnt/disk1:10240"))?;
    let size: u64 = size.parse().map_err(|_| format!("{s:?}: the size must be a whole number of MiB"))?;
    if !path.starts_with('/') {
        return Err(format!("{s:?}: the mount path must be absolute"));
    }
    Ok((path.to_string(), size))
}

#[derive(Args, Clone)]
pub struct MasterArgs {
    /// Address to serve the API on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: String,
    /// An agent silent this long is unreachable and its tasks LOST.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub agent_timeout: Duration,
    /// How long a declined agent is filtered by default.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub default_filter: Duration,
    /// An offer not answered this long is rescinded.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub offer_timeout: Duration,
}

impl MasterArgs {
    pub fn config(&self) -> MasterConfig {
        MasterConfig {
            agent_timeout: self.agent_timeout,
            default_filter: self.default_filter,
            offer_timeout: self.offer_timeout,
            ..MasterConfig::default()
        }
    }
}

/// Opens the master on `state_dir/master`, serves it, and writes cluster.json.
pub async fn start_master(
    state_dir: &Path,
    listen: &str,
    token: String,
    config: MasterConfig,
) -> Result<(Master, String)> {
    let store = FileStore::open_exclusive(state_dir.join("master")).context("opening the master's state store")?;
    let master = Master::open(Arc::new(store), config, token.clone())?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    tokio::spawn(master.clone().run());
    let m = master.clone();
    tokio::spawn(async move {
        if let Err(e) = api::serve(m, listener).await {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    cluster::write_cluster_file(state_dir, &ClusterFile { master: url.clone(), token })?;
    Ok((master, url))
}

pub async fn run_master(state_dir: &Path, token: Option<String>, args: MasterArgs) -> Result<()> {
    let token = match token {
        Some(t) => t,
        None => cluster::load_or_create_token(state_dir)?,
    };
    let (_master, url) = start_master(state_dir, &args.listen, token, args.config()).await?;
    println!("master API at {url}/v1/ (token in {})", cluster::cluster_file(state_dir).display());
    println!("master metrics at {url}/metrics (no token)");
    shutdown_signal().await;
    Ok(())
}

#[derive(Args, Clone)]
pub struct AgentArgs {
    /// The agent's work dir: sandboxes, ROOT volumes, its checkpoint.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The address tasks bind to and peers dial.
    #[arg(long, default_value = "127.0.0.1")]
    pub hostname: String,
    #[arg(long, default_value = "zone-a")]
    pub zone: String,
    #[arg(long)]
    pub rack: Option<String>,
    /// Extra attributes, KEY=VALUE.
    #[arg(long = "attribute")]
    pub attributes: Vec<String>,
    #[arg(long, default_value_t = 4.0)]
    pub cpus: f64,
    /// MiB.
    #[arg(long, default_value_t = 8192)]
    pub mem: u64,
    /// ROOT disk, MiB.
    #[arg(long, default_value_t = 20480)]
    pub disk: u64,
    #[arg(long, default_value = "31000-31999", value_parser = parse_ports)]
    pub ports: PortSet,
    /// A whole MOUNT disk, PATH:SIZE_MIB (repeatable).
    #[arg(long = "mount", value_parser = parse_mount)]
    pub mounts: Vec<(String, u64)>,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Stop every task when the master has not been heard from for this
    /// long (the agent fences itself: a cut-off agent's tasks never run
    /// beside their replacements). `0s` never fences.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub master_timeout: Duration,
    /// Serve this agent's Prometheus metrics at ADDR/metrics (OpenMetrics
    /// text, no token; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve this agent's API (task logs, token required) on ADDR
    /// (default: HOSTNAME:0, a free port on --hostname). It also serves the
    /// agent's metrics at /metrics (no token).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Rotate a task's stdout or stderr (and the agent's own log,
    /// WORK_DIR/agent.log) once it grows past this many bytes.
    #[arg(long, default_value_t = 10 << 20, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_max_bytes: u64,
    /// How many files each log keeps: the current one and N-1 rotated ones.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub log_max_files: u32,
}

impl AgentArgs {
    /// The work dir: `--work-dir`, else `STATE_DIR/agent`.
    pub fn work_dir(&self, state_dir: &Path) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| state_dir.join("agent"))
    }

    /// The agent's own log file, served at its `/v1/log`.
    pub fn log_file(&self, state_dir: &Path) -> PathBuf {
        self.work_dir(state_dir).join("agent.log")
    }

    /// The size bound of task logs and of the agent's own log.
    pub fn log_rotation(&self) -> LogRotation {
        LogRotation { max_bytes: self.log_max_bytes, max_files: self.log_max_files }
    }

    pub fn config(&self, master: String, token: String, work_dir: PathBuf) -> Result<AgentConfig> {
        let mut attributes = Attributes::new();
        attributes.insert("hostname".into(), self.hostname.clone());
        attributes.insert("zone".into(), self.zone.clone());
        attributes.insert("rack".into(), self.rack.clone().unwrap_or_else(|| self.hostname.clone()));
        for a in &self.attributes {
            let Some((k, v)) = a.split_once('=') else {
                bail!("--attribute {a:?}: expected KEY=VALUE");
            };
            attributes.insert(k.to_string(), v.to_string());
        }
        let mut resources = Resources::new(self.cpus, self.mem, self.disk).with_ports(self.ports.clone());
        for (p, s) in &self.mounts {
            resources = resources.with_mount(p.clone(), *s);
        }
        let mut c = AgentConfig::new(master, token, work_dir);
        c.hostname = self.hostname.clone();
        c.attributes = attributes;
        c.resources = resources;
        c.heartbeat_interval = self.heartbeat_interval;
        c.master_timeout = (!self.master_timeout.is_zero()).then_some(self.master_timeout);
        c.log_rotation = self.log_rotation();
        Ok(c)
    }
}

pub async fn run_agent(state_dir: &Path, master: Option<String>, token: Option<String>, args: AgentArgs) -> Result<()> {
    let c = cluster::resolve(master, token, state_dir)?;
    let work_dir = args.work_dir(state_dir);
    let agent_metrics = AgentMetrics::new();
    let listen = args.http_listen.clone().unwrap_or_else(|| format!("{}:0", args.hostname));
    let (api_listener, endpoint) = bind_agent_api(&listen, &args.hostname).await?;
    let mut config = args.config(c.master, c.token, work_dir)?;
    config.endpoint = Some(endpoint.clone());
    config.log_file = Some(args.log_file(state_dir));
    let agent = Agent::open_with_metrics(config, agent_metrics.clone())?;
    let registry = metrics::new_registry();
    agent_metrics.register(&mut registry.write().unwrap_or_else(|p| p.into_inner()));
    let api_registry = registry.clone();
    let a = agent.clone();
    tokio::spawn(async move {
        if let Err(e) = smack_operator::agent::logs::serve_with_metrics(a, api_listener, Some(api_registry)).await {
            tracing::error!(error = %e, "the agent API server stopped");
        }
    });
    println!("agent API (task logs, its own log) at {endpoint}/v1/, metrics at {endpoint}/metrics");
    if let Some(listen) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding --metrics-listen {listen}"))?;
        println!("agent metrics at http://{}/metrics", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(registry, listener).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        });
    }
    let a = agent.clone();
    let run = tokio::spawn(async move { a.run().await });
    shutdown_signal().await;
    // A stopped agent leaves its tasks running; the next agent on this work
    // dir re-attaches to them.
    agent.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), run).await;
    Ok(())
}

/// Binds an agent's API on `listen`; returns the listener and the URL others
/// reach it at (`hostname` stands in for an unspecified bind address).
pub async fn bind_agent_api(listen: &str, hostname: &str) -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the agent API on {listen} (set --http-listen)"))?;
    let addr = listener.local_addr()?;
    let endpoint = if addr.ip().is_unspecified() {
        format!("http://{hostname}:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    Ok((listener, endpoint))
}

/// Serves an agent's API (see `smack_operator::agent::logs`) in the background.
pub fn serve_agent_api(agent: Agent, listener: tokio::net::TcpListener) {
    tokio::spawn(async move {
        if let Err(e) = smack_operator::agent::logs::serve(agent, listener).await {
            tracing::error!(error = %e, "the agent API server stopped");
        }
    });
}

/// Writes `text` to stdout and flushes it, so a followed log shows at once.
pub fn print_now(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn fmt_res(r: &Resources) -> String {
    format!("{:.1}/{}/{}", r.cpus, r.mem, r.total_disk())
}

pub async fn agents(c: &ClusterFile, output: Output) -> Result<()> {
    let agents = c.master_client().agents().await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&agents)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<14} {:<8} {:<12} {:>22} {:>22} {:>22} {:>5}",
        "ID", "HOSTNAME", "ZONE", "STATE", "TOTAL cpu/mem/disk", "RESERVED", "USED", "TASKS"
    );
    for a in agents {
        println!(
            "{:<20} {:<14} {:<8} {:<12} {:>22} {:>22} {:>22} {:>5}",
            a.id,
            a.hostname,
            a.zone,
            a.state.to_string(),
            fmt_res(&a.total),
            fmt_res(&a.reserved),
            fmt_res(&a.used),
            a.tasks
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("x").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn ports_and_mounts() {
        assert_eq!(parse_ports("31000-31002,31010").unwrap().count(), 4);
        assert!(parse_ports("9-1").unwrap_err().contains("ends before"));
        assert!(parse_ports("a-b").unwrap_err().contains("expected a port range"));
        assert_eq!(parse_mount("/mnt/d:100").unwrap(), ("/mnt/d".to_string(), 100));
        assert!(parse_mount("d:100").unwrap_err().contains("absolute"));
        assert!(parse_mount("/mnt/d").unwrap_err().contains("PATH:SIZE_MIB"));
    }
}
