//! `smack kafka …`: topics and brokers of a Kafka service over the admin
//! API (rdkafka), the broker readiness gate the service's pods use, and
//! `drain`, the decommission hook that moves every replica off a broker;
//! `rebalance`, and `scale`, which changes the broker count through the
//! service's scheduler and moves the replicas to match; `quorum`, the
//! KRaft voters and the active controller; and `update-order`, the
//! controllers' `update-order` hook (the active controller restarts last).
//!
//! The bootstrap servers are `--bootstrap`, else the service's brokers as
//! its scheduler reports them (`smack endpoints kafka`).

use crate::cluster::ClusterFile;
use crate::endpoints_cmd;
use crate::kafka_drain;
use crate::Output;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use smack_connectors::kafka::{
    BrokerDescription, ClusterSnapshot, KafkaAdmin, KafkaClientConfig, TopicDescription, TopicSpec,
};
use smack_operator::catalog::kafka_service;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct KafkaArgs {
    #[command(subcommand)]
    pub cmd: KafkaCmd,
    /// The Kafka service.
    #[arg(long, global = true, default_value = "kafka")]
    pub service: String,
    /// Bootstrap servers (`host:port,…`); else found through the service's scheduler.
    #[arg(long, global = true)]
    pub bootstrap: Option<String>,
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Subcommand, Clone)]
pub enum KafkaCmd {
    /// Topics: create, list, describe, delete, partitions, config.
    Topic {
        #[command(subcommand)]
        cmd: TopicCmd,
    },
    /// Brokers: id, host and pod, rack (zone), leader count, under-replicated partitions.
    Brokers,
    /// Exit 0 when broker N is registered and no partition it leads or follows is
    /// under-replicated; else exit 1 with the reason (the pods' readiness check).
    Ready {
        #[arg(long, required_unless_present = "controller")]
        broker: Option<i32>,
        /// A dedicated controller: ready once it is a voter (with --join-quorum).
        #[arg(long, conflicts_with = "broker")]
        controller: bool,
        /// First make this node (a controller, from its task env) a voter of
        /// the controller quorum, once per launch: not ready until it is.
        #[arg(long)]
        join_quorum: bool,
    },
    /// The `update-order` hook of the pods that are controllers: prints the
    /// pods of `UPDATE_PODS` with the active controller last (env from the
    /// scheduler: `POD_TYPE`, `UPDATE_PODS`, `SMACK_PODS`).
    UpdateOrder,
    /// Move every replica off broker N onto the others, wait until done, and
    /// take N out of the controller quorum (the pods' decommission hook).
    Drain {
        #[arg(long)]
        broker: i32,
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = kafka_drain::DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up after this long.
        #[arg(long, default_value = "30m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
    /// Move replicas so that every broker holds a fair share of each topic,
    /// rack-aware and throttled, and wait until done.
    Rebalance {
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = kafka_drain::DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up after this long.
        #[arg(long, default_value = "30m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
    /// The KRaft controller voters (Kafka's view); `--prune` removes the
    /// voters whose pod is gone.
    Quorum {
        #[arg(long)]
        prune: bool,
    },
    /// Change the number of brokers: more are deployed and then the replicas
    /// rebalanced onto them; fewer are decommissioned highest id first, each
    /// drained by its decommission hook. Refused when fewer brokers would
    /// remain than a topic's replication factor.
    Scale {
        #[arg(long)]
        brokers: u32,
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = kafka_drain::DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up waiting for the plans and the moves after this long.
        #[arg(long, default_value = "60m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Clone)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        replication: i32,
        /// Topic config KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List {
        /// Kafka's internal topics too.
        #[arg(long)]
        internal: bool,
    },
    /// A topic's partitions: leader, replicas, ISR.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Grow a topic to COUNT partitions.
    Partitions {
        name: String,
        #[arg(long)]
        count: usize,
    },
    /// Show a topic's configs, or change them with --set KEY=VALUE / --unset KEY.
    Config {
        name: String,
        #[arg(long, value_parser = parse_kv)]
        set: Vec<(String, String)>,
        #[arg(long)]
        unset: Vec<String>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Cluster access is only needed when the bootstrap servers are not given.
pub async fn run(state_dir: &Path, cluster: impl FnOnce() -> Result<ClusterFile>, args: KafkaArgs) -> Result<()> {
    match args.cmd {
        KafkaCmd::Scale { brokers, throttle, timeout } => {
            return scale(state_dir, &cluster()?, &args.service, brokers, throttle, timeout).await;
        }
        KafkaCmd::Quorum { prune } => {
            let q = prune_voters(state_dir, &cluster()?, &args.service, prune).await?;
            if args.output == Output::Json {
                println!("{}", serde_json::to_string(&q)?);
            } else {
                println!("controller voters {:?}; active controller {}", q.voters, q.leader);
            }
            return Ok(());
        }
        KafkaCmd::UpdateOrder => return update_order().await,
        KafkaCmd::Ready { controller: true, join_quorum, .. } => {
            if !join_quorum {
                bail!("`kafka ready --controller` checks the quorum: add --join-quorum");
            }
            return join_quorum_once().await;
        }
        _ => {}
    }
    let json = args.output == Output::Json;
    let mut pods = Vec::new();
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => {
            let c = cluster()?;
            pods = endpoints_cmd::pods(state_dir, &c, &args.service).await?;
            let eps = endpoints_cmd::endpoints_of(&pods, kafka_service::CLIENT_PORT);
            if eps.is_empty() {
                bail!(
                    "service {} has no placed broker yet; see `smack pod list --service {}`",
                    args.service,
                    args.service
                );
            }
            eps.join(",")
        }
    };
    let timeout = match args.cmd {
        KafkaCmd::Ready { .. } => Duration::from_secs(8),
        _ => Duration::from_secs(30),
    };
    let config = KafkaClientConfig::new(bootstrap.clone()).with_client_id("smack-cli").with_timeout(timeout);
    let admin = KafkaAdmin::connect(&config).await.with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    match args.cmd {
        KafkaCmd::Topic { cmd } => topic(&admin, cmd, json).await,
        KafkaCmd::Brokers => brokers(&admin, &pods, json).await,
        KafkaCmd::Ready { broker, join_quorum, .. } => {
            let broker = broker.context("--broker N is needed")?;
            let r = admin.broker_ready(broker).await?;
            if r.ready && join_quorum {
                join_quorum_once()
                    .await
                    .with_context(|| format!("broker {broker} is up but not a controller voter"))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
            if r.ready {
                if !json {
                    println!("broker {broker} ready: {}", r.reason);
                }
                Ok(())
            } else {
                bail!("broker {broker} not ready: {}", r.reason)
            }
        }
        KafkaCmd::Drain { broker, throttle, timeout } => {
            kafka_drain::drain(&admin, &bootstrap, broker, throttle, timeout).await
        }
        KafkaCmd::Rebalance { throttle, timeout } => {
            kafka_drain::rebalance(&admin, &bootstrap, throttle, timeout).await.map(|_| ())
        }
        KafkaCmd::Scale { .. } | KafkaCmd::Quorum { .. } | KafkaCmd::UpdateOrder => unreachable!("handled above"),
    }
}

/// The topics whose replication factor is above `brokers`, as
/// `name (replication N)`.
pub fn too_wide_topics(snap: &ClusterSnapshot, brokers: usize) -> Vec<String> {
    snap.topics
        .iter()
        .filter(|t| t.error.is_none() && t.replication_factor() > brokers)
        .map(|t| format!("{} (replication {})", t.name, t.replication_factor()))
        .collect()
}

/// `smack kafka scale --brokers N`: the service's spec with the new count,
/// submitted to its scheduler; then, growing, waits for the new brokers'
/// deploy steps and rebalances the replicas onto them; shrinking, waits for
/// the decommission plan (each removed broker drained by its hook first)
/// and takes any controller the removed brokers left behind out of the
/// quorum.
///
/// The rebalance runs here, in the CLI, not as a scheduler plan: it is one
/// cluster-wide Admin API call and a wait, not work on a pod (a scheduler
/// step would have to launch a task inside some broker's reservation), and
/// Kafka itself keeps the reassignment durably, so if this process dies the
/// move goes on and `smack kafka rebalance` picks it up.
async fn scale(
    state_dir: &Path,
    c: &ClusterFile,
    service: &str,
    brokers: u32,
    throttle: u64,
    timeout: Duration,
) -> Result<()> {
    if brokers == 0 {
        bail!("--brokers 0: a Kafka service needs at least one broker; use `smack service delete` to remove it");
    }
    let deadline = std::time::Instant::now() + timeout;
    let spec = crate::service_cmd::spec_of(state_dir, c, service)
        .await
        .with_context(|| format!("reading the spec of service {service}"))?;
    let now = kafka_service::pod_count(&spec.yaml, kafka_service::POD_TYPE)
        .map_err(|e| anyhow::anyhow!("service {service}: {e}"))?;
    if now == brokers {
        println!("service {service} already runs {brokers} broker(s): nothing to change");
        return Ok(());
    }
    let pods = endpoints_cmd::pods(state_dir, c, service).await?;
    let bootstrap = endpoints_cmd::endpoints_of(&pods, kafka_service::CLIENT_PORT).join(",");
    if bootstrap.is_empty() {
        bail!("service {service} has no placed broker yet; wait for its deploy (`smack plan show deploy`)");
    }
    let config =
        KafkaClientConfig::new(bootstrap.clone()).with_client_id("smack-cli").with_timeout(Duration::from_secs(30));
    let admin = KafkaAdmin::connect(&config).await.with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    if brokers < now {
        let too_wide = too_wide_topics(&admin.snapshot().await?, brokers as usize);
        if !too_wide.is_empty() {
            bail!(
                "refusing to scale service {service} from {now} to {brokers} broker(s): fewer brokers would remain \
                 than the replication factor of {}; lower those topics' replication or keep more brokers",
                too_wide.join(", ")
            );
        }
    }
    let yaml = kafka_service::with_pod_count(&spec.yaml, kafka_service::POD_TYPE, brokers)
        .map_err(|e| anyhow::anyhow!("service {service}: {e}"))?;
    let plans = crate::service_cmd::submit_spec(
        state_dir,
        c,
        service,
        &smack_operator::scheduler::api::SpecUpdate { yaml, file: spec.file.clone() },
    )
    .await
    .with_context(|| format!("service {service} refused the new broker count"))?;
    println!("service {service}: {now} -> {brokers} broker(s); started {}", plans.join(", "));
    if brokers > now {
        crate::service_cmd::wait_plan_complete(state_dir, c, service, "update", deadline).await?;
        let want: Vec<i32> = (now as i32..brokers as i32).collect();
        let mut missing = want.clone();
        while !missing.is_empty() {
            if std::time::Instant::now() > deadline {
                bail!("broker(s) {missing:?} did not register with the controller within {timeout:?}");
            }
            let snap = admin.snapshot().await?;
            missing.retain(|id| !snap.brokers.iter().any(|b| b.id == *id));
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        println!("broker(s) {want:?} registered; rebalancing");
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        kafka_drain::rebalance(&admin, &bootstrap, throttle, left).await?;
    } else {
        crate::service_cmd::wait_plan_complete(state_dir, c, service, "decommission", deadline).await?;
        // Each removed broker left the quorum in its drain hook and could
        // not join it again; a voter without a pod (a hook that failed
        // half-way, then force-completed) is taken out now.
        let q = prune_voters(state_dir, c, service, true).await?;
        println!("service {service} runs {brokers} broker(s); controller voters {:?}", q.voters);
    }
    Ok(())
}

/// The controller quorum (voters and active controller); with `prune`,
/// first removes every voter whose pod the service no longer has. Returns
/// the quorum left.
async fn prune_voters(state_dir: &Path, c: &ClusterFile, service: &str, prune: bool) -> Result<kafka_drain::Quorum> {
    let pods = endpoints_cmd::pods(state_dir, c, service).await?;
    let live = endpoints_cmd::endpoints_of(&pods, kafka_service::CLIENT_PORT).join(",");
    if live.is_empty() {
        bail!("service {service} has no placed broker");
    }
    let q = kafka_drain::quorum(&live).await?;
    let ids = controller_ids(pods.iter().map(|v| (v.pod.pod_type.as_str(), v.pod.index, &v.pod.ports)));
    let stale: Vec<i32> = q.voters.iter().copied().filter(|v| !ids.contains(v)).collect();
    if stale.is_empty() || !prune {
        if !stale.is_empty() {
            println!("controller(s) {stale:?} are voters without a pod; remove them with `smack kafka quorum --prune`");
        }
        return Ok(q);
    }
    for v in &stale {
        println!("controller {v} is still a voter but its pod is gone: removing it from the quorum");
        kafka_drain::remove_voter(&live, *v).await?;
    }
    kafka_drain::quorum(&live).await
}

/// The node ids of the pods that are controllers (they have a
/// `controller` port): brokers of a combined cluster, or dedicated
/// controllers.
pub fn controller_ids<'a>(pods: impl Iterator<Item = (&'a str, u32, &'a BTreeMap<String, u16>)>) -> Vec<i32> {
    pods.filter(|(_, _, ports)| ports.contains_key(kafka_service::CONTROLLER_PORT))
        .map(|(t, i, _)| kafka_service::node_id_of(t, i) as i32)
        .collect()
}

/// `kafka ready --join-quorum`: makes the node of this task env a voter
/// of the controller quorum and waits until the quorum's leader has seen
/// it caught up since its launch (so a roll never takes the next
/// controller down while this one still replays the log); once per
/// launch (a marker in the sandbox says it was done, and later checks
/// pass at once): a node taken out of the quorum while it runs (a drained
/// broker) is not added back. A broker beside dedicated controllers has
/// nothing to join.
async fn join_quorum_once() -> Result<()> {
    use smack_operator::catalog::kafka;
    let env = kafka_service::BrokerEnv::from_env(|k| std::env::var(k).ok())?;
    if !env.role.is_controller() {
        return Ok(());
    }
    let sandbox = match std::env::var_os("SMACK_SANDBOX").filter(|s| !s.is_empty()) {
        Some(s) => std::path::PathBuf::from(s),
        None => std::env::current_dir().context("no SMACK_SANDBOX and no current dir")?,
    };
    let marker = sandbox.join(VOTER_MARKER);
    if marker.exists() {
        println!("node {} joined the controller quorum at this launch", env.node_id);
        return Ok(());
    }
    let meta = kafka::read_meta_properties(&env.log_dir())?
        .with_context(|| format!("{} is not formatted yet", env.log_dir().display()))?;
    let dir = meta
        .directory_id
        .with_context(|| format!("{}/meta.properties has no directory.id", env.log_dir().display()))?;
    // The node's launch: its launcher writes the pid file right before it
    // execs the JVM.
    let pid_file = sandbox.join(smack_operator::catalog::launch::PID_FILE);
    let launched = std::fs::metadata(&pid_file)
        .and_then(|m| m.modified())
        .with_context(|| format!("node {} has not started yet (no {})", env.node_id, pid_file.display()))?;
    let since_ms = launched.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    // A JVM of the admin client costs seconds of CPU: none while the node
    // itself does not listen yet.
    let own = format!("{}:{}", env.host, env.controller_port);
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&own)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("node {} does not listen on its controller port {own} yet: {e}", env.node_id),
        Err(_) => bail!("node {} does not answer on its controller port {own} yet", env.node_id),
    }
    let controllers = env.controller_endpoints().join(",");
    let said =
        kafka_drain::join_quorum(&controllers, env.node_id, &dir, &env.host, env.controller_port, since_ms).await?;
    std::fs::write(&marker, format!("{said}\n")).with_context(|| format!("writing {}", marker.display()))?;
    println!("{said}");
    Ok(())
}

/// The marker `kafka ready --join-quorum` leaves in the task's sandbox.
pub const VOTER_MARKER: &str = ".smack-kafka-voter";

/// `kafka update-order`: `UPDATE_PODS` with the pod of the active
/// controller moved last, one per line.
async fn update_order() -> Result<()> {
    use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
    let var =
        |k: &str| std::env::var(k).with_context(|| format!("{k} is not set (the scheduler sets it for the hook)"));
    let pod_type = var("POD_TYPE")?;
    let order: Vec<String> = var("UPDATE_PODS")?.split_whitespace().map(String::from).collect();
    let pods: Vec<PodAddress> = serde_json::from_str(&var(PODS_ENV)?).context("SMACK_PODS is not a JSON list")?;
    let controllers: Vec<String> = pods
        .iter()
        .filter(|p| p.pod_type == pod_type)
        .filter_map(|p| Some(format!("{}:{}", p.host, p.ports.get(kafka_service::CONTROLLER_PORT)?)))
        .collect();
    if controllers.is_empty() {
        bail!("no pod of type {pod_type} has a `{}` port: they are no controllers", kafka_service::CONTROLLER_PORT);
    }
    let q = kafka_drain::quorum(&format!("controllers={}", controllers.join(","))).await?;
    let leader = u32::try_from(q.leader).ok().and_then(|id| kafka_service::pod_of_node(&pods, id));
    eprintln!(
        "active controller: node {} ({}); voters {:?}",
        q.leader,
        leader.map(|p| p.name.as_str()).unwrap_or("no pod"),
        q.voters
    );
    for p in leader_last(&order, leader.map(|p| p.name.as_str())) {
        println!("{p}");
    }
    Ok(())
}

/// `pods` with `leader` (if among them) moved last.
pub fn leader_last(pods: &[String], leader: Option<&str>) -> Vec<String> {
    let (mut last, mut out): (Vec<String>, Vec<String>) =
        pods.iter().cloned().partition(|p| Some(p.as_str()) == leader);
    out.append(&mut last);
    out
}

async fn topic(admin: &KafkaAdmin, cmd: TopicCmd, json: bool) -> Result<()> {
    match cmd {
        TopicCmd::Create { name, partitions, replication, configs } => {
            let brokers = admin.snapshot().await?.brokers.len();
            check_replication(replication, brokers)?;
            let mut spec = TopicSpec::new(&name, partitions, replication);
            spec.configs = configs.into_iter().collect();
            admin.create_topic(&spec).await?;
            let t = admin.await_topic(&name, Duration::from_secs(30)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("created topic {name}: {partitions} partition(s), replication {replication}");
            }
        }
        TopicCmd::List { internal } => {
            let names = admin.list_topics(internal).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        TopicCmd::Describe { name } => {
            let t = admin.describe_topic(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", describe_table(&t));
            }
        }
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": name }));
            } else {
                println!("deleted topic {name}");
            }
        }
        TopicCmd::Partitions { name, count } => {
            admin.add_partitions(&name, count).await?;
            if json {
                println!("{}", serde_json::json!({ "topic": name, "partitions": count }));
            } else {
                println!("topic {name} now has {count} partitions");
            }
        }
        TopicCmd::Config { name, set, unset } => {
            if !set.is_empty() || !unset.is_empty() {
                let mut changes: BTreeMap<String, Option<String>> =
                    set.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(unset.into_iter().map(|k| (k, None)));
                admin.alter_topic_configs(&name, &changes).await?;
            }
            let cfg = admin.describe_topic_configs(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            } else {
                for (k, v) in cfg.iter().filter(|(_, v)| !v.is_default) {
                    println!("{k}={} ({})", v.value.as_deref().unwrap_or("-"), v.source);
                }
            }
        }
    }
    Ok(())
}

/// Refuses a replication factor the cluster cannot hold, with the reason.
pub fn check_replication(replication: i32, brokers: usize) -> Result<()> {
    if replication < 1 {
        bail!("replication factor {replication}: expected at least 1");
    }
    if replication as usize > brokers {
        bail!(
            "replication factor {replication} is above the number of brokers ({brokers}): each replica needs a \
             broker of its own; add brokers first or ask for at most {brokers}"
        );
    }
    Ok(())
}

fn describe_table(t: &TopicDescription) -> String {
    let mut out =
        format!("topic {} ({} partitions, replication {})\n", t.name, t.partitions.len(), t.replication_factor());
    out.push_str(&format!("{:<10} {:<8} {:<16} {}\n", "PARTITION", "LEADER", "REPLICAS", "ISR"));
    for p in &t.partitions {
        let replicas = format!("{:?}", p.replicas);
        out.push_str(&format!(
            "{:<10} {:<8} {:<16} {:?}{}\n",
            p.id,
            p.leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
            replicas,
            p.isr,
            if p.under_replicated() { "  (under-replicated)" } else { "" }
        ));
    }
    out
}

/// A broker as `smack kafka brokers` shows it: Kafka's view joined with
/// the scheduler's pod (when the service was found through it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerRow {
    pub id: i32,
    pub host: String,
    pub port: i32,
    /// `broker.rack` (the agent's zone).
    pub rack: Option<String>,
    pub pod: Option<String>,
    pub agent_id: Option<String>,
    pub zone: Option<String>,
    pub leader_count: usize,
    pub replica_count: usize,
    pub under_replicated: usize,
}

pub fn broker_rows(brokers: &[BrokerDescription], pods: &[smack_operator::scheduler::api::PodView]) -> Vec<BrokerRow> {
    brokers
        .iter()
        .map(|b| {
            let pod = pods.iter().find(|v| {
                v.pod.hostname == b.host
                    && v.pod.ports.get(kafka_service::CLIENT_PORT).is_some_and(|p| i32::from(*p) == b.port)
            });
            BrokerRow {
                id: b.id,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                pod: pod.map(|v| v.pod.name.clone()),
                agent_id: pod.and_then(|v| v.pod.agent_id.clone()),
                zone: pod.and_then(|v| v.pod.attributes.get("zone").cloned()),
                leader_count: b.leader_count,
                replica_count: b.replica_count,
                under_replicated: b.under_replicated,
            }
        })
        .collect()
}

async fn brokers(admin: &KafkaAdmin, pods: &[smack_operator::scheduler::api::PodView], json: bool) -> Result<()> {
    let rows = broker_rows(&admin.brokers().await?, pods);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<4} {:<22} {:<10} {:<18} {:<10} {:<8} {:<8} URP",
        "ID", "ADDRESS", "POD", "AGENT", "RACK", "LEADERS", "REPLICAS"
    );
    for r in rows {
        println!(
            "{:<4} {:<22} {:<10} {:<18} {:<10} {:<8} {:<8} {}",
            r.id,
            format!("{}:{}", r.host, r.port),
            r.pod.as_deref().unwrap_or("-"),
            r.agent_id.as_deref().unwrap_or("-"),
            r.rack.as_deref().unwrap_or("-"),
            r.leader_count,
            r.replica_count,
            r.under_replicated
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_above_the_broker_count_is_refused_with_the_reason() {
        check_replication(3, 3).unwrap();
        let e = check_replication(4, 3).unwrap_err().to_string();
        assert!(e.contains("replication factor 4 is above the number of brokers (3)"), "{e}");
        assert!(check_replication(0, 3).unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn the_active_controller_goes_last() {
        let pods: Vec<String> = ["kafka-0", "kafka-1", "kafka-2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(leader_last(&pods, Some("kafka-0")), ["kafka-1", "kafka-2", "kafka-0"]);
        assert_eq!(leader_last(&pods, Some("kafka-2")), ["kafka-0", "kafka-1", "kafka-2"]);
        assert_eq!(leader_last(&pods, Some("controller-1")), pods, "a leader not rolled here changes nothing");
        assert_eq!(leader_last(&pods, None), pods);
    }

    #[test]
    fn controllers_are_the_pods_with_a_controller_port() {
        let with: BTreeMap<String, u16> = [("client".to_string(), 1), ("controller".to_string(), 2)].into();
        let ctl: BTreeMap<String, u16> = [("controller".to_string(), 2)].into();
        let without: BTreeMap<String, u16> = [("client".to_string(), 1)].into();
        let combined = [("kafka", 0, &with), ("kafka", 1, &with)];
        assert_eq!(controller_ids(combined.iter().map(|(t, i, p)| (*t, *i, *p))), [0, 1]);
        let dedicated = [("controller", 0, &ctl), ("controller", 2, &ctl), ("kafka", 0, &without)];
        assert_eq!(controller_ids(dedicated.iter().map(|(t, i, p)| (*t, *i, *p))), [3000, 3002]);
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("nope").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn topics_wider_than_the_brokers_left_are_named() {
        use smack_connectors::kafka::{PartitionDescription, TopicDescription};
        let topic = |name: &str, rf: usize| TopicDescription {
            name: name.into(),
            partitions: vec![PartitionDescription {
                id: 0,
                leader: Some(0),
                replicas: (0..rf as i32).collect(),
                isr: (0..rf as i32).collect(),
                error: None,
            }],
            error: None,
        };
        let snap = ClusterSnapshot { brokers: vec![], topics: vec![topic("events", 3), topic("small", 2)] };
        assert_eq!(too_wide_topics(&snap, 2), vec!["events (replication 3)"]);
        assert!(too_wide_topics(&snap, 3).is_empty());
        assert_eq!(too_wide_topics(&snap, 1).len(), 2);
    }
}
