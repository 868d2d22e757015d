//! `smack up`: the embedded default. One foreground process with a master and
//! N local agents, each simulating a host on its own loopback address
//! (127.0.1.N), with its own work dir, zone, port range and disk budget.
//! Given a pipeline file, it also fetches the jars the pipeline needs and
//! deploys it (`pipeline apply`), then shows its rows arriving; Ctrl-C stops
//! the schedulers and every task, and a second run resumes on the same disks.

use crate::cluster;
use crate::commands::{bind_agent_api, parse_duration, serve_agent_api, shutdown_signal, start_master};
use anyhow::{bail, Result};
use clap::Args;
use smack_operator::agent::{Agent, AgentConfig};
use smack_operator::master::MasterConfig;
use smack_operator::metrics::AgentMetrics;
use smack_operator::resources::{Attributes, PortRange, PortSet, Resources};
use std::path::Path;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct UpArgs {
    /// A pipeline file to deploy on the embedded cluster.
    pub pipeline: Option<std::path::PathBuf>,
    /// How many local agents to run.
    #[arg(long, default_value_t = 3)]
    pub agents: u32,
    /// Address of the master's API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: String,
    /// The first three octets of the agents' loopback addresses: agent N
    /// gets PREFIX.N.
    #[arg(long, default_value = "127.0.1")]
    pub address_prefix: String,
    /// Agent N offers ports PORT_BASE + N*1000 .. +999.
    #[arg(long, default_value_t = 31000)]
    pub port_base: u16,
    /// cpus per agent.
    #[arg(long, default_value_t = 2.0)]
    pub agent_cpus: f64,
    /// mem per agent, MiB.
    #[arg(long, default_value_t = 6144)]
    pub agent_mem: u64,
    /// ROOT disk budget per agent, MiB.
    #[arg(long, default_value_t = 20480)]
    pub agent_disk: u64,
    /// An agent silent this long is unreachable.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub agent_timeout: Duration,
}

/// Ports every agent of `smack up` offers (Cassandra's default storage
/// port is the first).
const SHARED_PORTS: (u16, u16) = (7000, 7009);

/// How long `smack up` gives each catalog task after SIGTERM on Ctrl-C.
const CLUSTER_STOP_GRACE: Duration = Duration::from_secs(20);

const ZONES: [&str; 6] = ["zone-a", "zone-b", "zone-c", "zone-d", "zone-e", "zone-f"];

/// The log of `smack up`'s master and agents.
pub fn log_file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("up.log")
}

pub fn agent_config(args: &UpArgs, state_dir: &Path, n: u32, master: &str, token: &str) -> Result<AgentConfig> {
    let host = format!("{}.{}", args.address_prefix, n);
    let zone = ZONES[(n as usize - 1) % ZONES.len()].to_string();
    let mut attributes = Attributes::new();
    attributes.insert("hostname".into(), host.clone());
    attributes.insert("zone".into(), zone);
    attributes.insert("rack".into(), format!("rack-{n}"));
    let first = u32::from(args.port_base) + n * 1000;
    if first + 999 > u32::from(u16::MAX) {
        bail!("--port-base {} leaves no port range for agent {n}", args.port_base);
    }
    // Each agent's own range, plus a few ports every agent offers: a cluster
    // whose members must share a port (Cassandra's storage port) takes one
    // of those, each member on its own agent address.
    let ports = PortSet::from_ranges([
        PortRange::new(SHARED_PORTS.0, SHARED_PORTS.1),
        PortRange::new(first as u16, (first + 999) as u16),
    ]);
    let mut c = AgentConfig::new(master, token, state_dir.join("agents").join(format!("agent-{n}")));
    c.hostname = host;
    c.attributes = attributes;
    c.resources = Resources::new(args.agent_cpus, args.agent_mem, args.agent_disk).with_ports(ports);
    // One process, one log: every agent serves it as its own.
    c.log_file = Some(log_file(state_dir));
    // Master and agents share this process: an agent cannot lose its master
    // without losing itself, so it never fences.
    c.master_timeout = None;
    Ok(c)
}

pub async fn run(state_dir: &Path, args: UpArgs) -> Result<()> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    // A pipeline that does not validate stops here, before anything starts.
    let pipeline = match &args.pipeline {
        Some(f) => {
            Some((f.clone(), smack_pipelines::load(f).map_err(|e| anyhow::anyhow!("{e}\nnothing was started"))?))
        }
        None => None,
    };
    if let Some((_, p)) = &pipeline {
        let mut need = Vec::new();
        if p.services.kafka.as_ref().is_some_and(|k| k.external.is_none()) {
            need.push(smack_catalog::artifacts::Service::Kafka);
        }
        if p.services.cassandra.as_ref().is_some_and(|c| c.external.is_none()) {
            need.push(smack_catalog::artifacts::Service::Cassandra);
        }
        let cache = smack_catalog::artifacts::default_cache_dir();
        tokio::task::spawn_blocking(move || crate::artifacts::fetch(&cache, &need)).await??;
    }
    let token = cluster::load_or_create_token(state_dir)?;
    let config = MasterConfig { agent_timeout: args.agent_timeout, ..MasterConfig::default() };
    let (master, url) = start_master(state_dir, &args.listen, token.clone(), config).await?;
    // Every agent's families go into the master's registry: one scrape of
    // the master's /metrics shows them all, told apart by their agent label.
    let agent_metrics = AgentMetrics::new();
    agent_metrics.register(&mut master.registry().write().unwrap_or_else(|p| p.into_inner()));
    let mut agents = Vec::new();
    for n in 1..=args.agents {
        let mut config = agent_config(&args, state_dir, n, &url, &token)?;
        // Each agent serves its task logs on its own loopback address.
        let (listener, endpoint) = bind_agent_api(&format!("{}:0", config.hostname), &config.hostname).await?;
        config.endpoint = Some(endpoint);
        let agent = Agent::open_with_metrics(config, agent_metrics.clone())?;
        serve_agent_api(agent.clone(), listener);
        let a = agent.clone();
        tokio::spawn(async move { a.run().await });
        agents.push(agent);
    }
    println!("smack is up: {} agents", args.agents);
    println!("  dashboard: {url}/dashboard/#token={token}");
    println!("  API:   {url}/v1/");
    println!("  metrics: {url}/metrics");
    println!("  token: {token}");
    println!("  (written to {})", cluster::cluster_file(state_dir).display());
    println!("Ctrl-C stops every task cleanly; run again with the same --state-dir to resume.");
    if let Some((file, p)) = pipeline {
        let c = cluster::ClusterFile { master: url.clone(), token: token.clone() };
        let sd = state_dir.to_path_buf();
        tokio::spawn(async move {
            match crate::pipeline_deploy::apply(&sd, &c, &file).await {
                Ok(()) => crate::pipeline_deploy::watch_rows(&sd, &c, &p).await,
                Err(e) => {
                    eprintln!("deploying {}: {e:#}\nfix it and run `smack pipeline apply {}`", p.name, file.display())
                }
            }
        });
    }
    shutdown_signal().await;
    println!("stopping the service schedulers…");
    crate::service_cmd::stop_detached_schedulers(state_dir);
    println!("stopping tasks…");
    // Stages and generators first, so a stage's last flush and checkpoint
    // still reach the brokers and nodes; then the catalog services.
    let catalog = |t: &smack_operator::resources::TaskInfo| {
        let pod = t.labels.get("pod").map(String::as_str).unwrap_or("");
        ["kafka-", "cassandra-"].iter().any(|p| pod.strip_prefix(p).is_some_and(|i| i.parse::<u32>().is_ok()))
    };
    futures::future::join_all(agents.iter().map(|a| a.kill_where(|t| !catalog(t), None))).await;
    // The whole cluster stops at once: a broker's controlled shutdown has no
    // one to hand its partitions to (and loses its quorum as the others go),
    // so its long grace would only be waited out. Restarts recover the logs.
    futures::future::join_all(agents.iter().map(|a| a.kill_all(Some(CLUSTER_STOP_GRACE)))).await;
    // Let the final status updates reach the master's ledger.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for a in &agents {
        a.shutdown();
    }
    println!("stopped.");
    Ok(())
}
