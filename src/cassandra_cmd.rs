//! `smack cassandra …`: the ring of a Cassandra service as its nodes see it.
//!
//! - `nodes`: address, zone (rack), state (`UN`, `DN`, `UJ`, …), load and
//!   tokens of every ring member.
//! - `ready` (the node task's readiness check): passes once this pod's
//!   node is `UN` as seen by every placed node ([`cassandra_service::node_ready`]).
//! - `decommission` (the pod's decommission hook): `nodetool decommission`
//!   on the pod's own node, so a scale-down streams its data away first.
//! - `keyspace create`: a keyspace with `NetworkTopologyStrategy`, refused
//!   when it asks for more replicas than the datacenter has nodes.
//!
//! Why CQL and not `nodetool status` for the ring: CQL is the port every
//! node already serves to clients on the network, so one node's readiness
//! check can ask every other node (JMX stays on each node's loopback), and
//! a query costs milliseconds where a `nodetool` JVM costs seconds of CPU
//! on every check. Each node is asked on its own session, pinned to that
//! node, for its node-local tables: `system.local`, `system.peers_v2` and
//! `system_views.gossip_info` (gossip status and generation per endpoint,
//! and load). "Up" is: the node answers CQL (for `nodes`), or every other
//! node has heard from its current start (for `ready`, see `node_ready`).
//! Decommission has no CQL form, so it is the one `nodetool` call, over the
//! node's local JMX port, from its own agent.

use crate::cluster::ClusterFile;
use crate::Output;
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::host_filter::AllowListHostFilter;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::value::{CqlValue, Row};
use serde::Serialize;
use smack_operator::catalog::artifacts::{self, Service};
use smack_operator::catalog::cassandra_service::{self as svc, GossipRow, NodeView};
use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand, Clone)]
pub enum CassandraCmd {
    /// The ring: address, zone (rack), state (UN/DN/UJ/UL…), load and tokens of every node.
    Nodes {
        /// The Cassandra service (default: the only service in the state dir).
        #[arg(long)]
        service: Option<String>,
        /// Ask these nodes (host:port,…) instead of the service's pods.
        #[arg(long, value_delimiter = ',')]
        contact_points: Vec<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Keyspaces: `keyspace create NAME --replication N` (NetworkTopologyStrategy).
    #[command(subcommand)]
    Keyspace(KeyspaceCmd),
    /// Readiness check of a node task: exits 0 once the node is UN as seen by every placed node.
    #[command(hide = true)]
    Ready,
    /// Decommission hook of a node pod: streams its data to the others and leaves the ring.
    #[command(hide = true)]
    Decommission,
}

#[derive(Subcommand, Clone)]
pub enum KeyspaceCmd {
    /// Create a keyspace with NetworkTopologyStrategy (refused if the replication is above the node count).
    Create {
        name: String,
        /// Replicas in the datacenter.
        #[arg(long, default_value_t = 3)]
        replication: u32,
        /// The datacenter (default: the ring's only one).
        #[arg(long)]
        datacenter: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_delimiter = ',')]
        contact_points: Vec<String>,
    },
}

/// How long one node may take to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(state_dir: &Path, cluster: Option<ClusterFile>, cmd: CassandraCmd) -> Result<()> {
    match cmd {
        CassandraCmd::Nodes { service, contact_points, output } => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            let nodes = ring(&cps).await?;
            print_nodes(&nodes, output)
        }
        CassandraCmd::Keyspace(KeyspaceCmd::Create { name, replication, datacenter, service, contact_points }) => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            create_keyspace(&cps, &name, replication, datacenter.as_deref()).await
        }
        CassandraCmd::Ready => ready().await,
        CassandraCmd::Decommission => tokio::task::spawn_blocking(decommission).await?,
    }
}

async fn contact_points_or_service(
    state_dir: &Path,
    cluster: Option<ClusterFile>,
    service: Option<&str>,
    given: Vec<String>,
) -> Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given);
    }
    let c = cluster
        .ok_or_else(|| anyhow!("no cluster: pass --contact-points HOST:PORT or run inside a smack state dir"))?;
    contact_points(state_dir, &c, service).await
}

/// The contact points (`host:native`) of a Cassandra service's placed
/// pods, from its scheduler's API (`smack endpoints cassandra`).
pub async fn contact_points(state_dir: &Path, c: &ClusterFile, service: Option<&str>) -> Result<Vec<String>> {
    crate::endpoints_cmd::endpoints(state_dir, c, service.unwrap_or(svc::POD_TYPE), svc::NATIVE_PORT).await
}

/// Resolves `host:port` to a socket address.
async fn resolve(hostport: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .ok_or_else(|| anyhow!("{hostport} resolves to no address"))
}

/// A session that talks to the node at `addr` only (its node-local tables
/// are what we ask for).
async fn node_session(addr: SocketAddr) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(NODE_TIMEOUT))
        .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(NodeIdentifier::NodeAddress(addr), None))
        .build();
    let filter = AllowListHostFilter::new([addr]).map_err(|e| anyhow!("{addr}: {e}"))?;
    let builder = SessionBuilder::new()
        .known_node_addr(addr)
        .host_filter(Arc::new(filter))
        .connection_timeout(NODE_TIMEOUT)
        .default_execution_profile_handle(profile.into_handle())
        .fetch_schema_metadata(false)
        .fetch_full_schema_metadata(false);
    let built = builder.build();
    match tokio::time::timeout(NODE_TIMEOUT * 2, built).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(anyhow!("{e}")),
        Err(_) => Err(anyhow!("no answer within {:?}", NODE_TIMEOUT * 2)),
    }
}

/// A query's rows as column name → value maps.
async fn select(s: &Session, cql: &str) -> Result<Vec<BTreeMap<String, CqlValue>>> {
    let res = s.query_unpaged(cql, ()).await.with_context(|| format!("`{cql}`"))?;
    let rows = res.into_rows_result().with_context(|| format!("`{cql}` returned no rows"))?;
    let names: Vec<String> = rows.column_specs().iter().map(|c| c.name().to_string()).collect();
    let mut out = Vec::new();
    for r in rows.rows::<Row>().with_context(|| format!("`{cql}`"))? {
        let r = r.with_context(|| format!("`{cql}`"))?;
        out.push(names.iter().cloned().zip(r.columns).filter_map(|(n, v)| v.map(|v| (n, v))).collect());
    }
    Ok(out)
}

fn text(v: Option<&CqlValue>) -> String {
    match v {
        None => String::new(),
        Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => s.clone(),
        Some(CqlValue::Inet(ip)) => ip.to_string(),
        Some(CqlValue::Int(i)) => i.to_string(),
        Some(CqlValue::BigInt(i)) => i.to_string(),
        Some(CqlValue::Uuid(u)) => u.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

fn int(v: Option<&CqlValue>) -> i64 {
    match v {
        Some(CqlValue::Int(i)) => i64::from(*i),
        Some(CqlValue::BigInt(i)) => *i,
        Some(other) => text(Some(other)).trim().parse().unwrap_or(0),
        None => 0,
    }
}

fn set_len(v: Option<&CqlValue>) -> usize {
    match v {
        Some(CqlValue::Set(s)) | Some(CqlValue::List(s)) => s.len(),
        _ => 0,
    }
}

/// One gossip row of a node's view.
#[derive(Debug, Clone)]
struct Gossip {
    row: GossipRow,
    load: Option<f64>,
}

async fn gossip(s: &Session) -> Result<Vec<Gossip>> {
    let rows = select(s, "SELECT * FROM system_views.gossip_info").await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status = [r.get("status_with_port"), r.get("status")]
                .into_iter()
                .map(|v| text(v))
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            Gossip {
                row: GossipRow {
                    address: text(r.get("address")),
                    generation: int(r.get("generation")),
                    status: svc::status_word(&status).to_string(),
                },
                load: text(r.get("load")).trim().parse().ok(),
            }
        })
        .collect())
}

/// `smack cassandra ready`: this pod's node, from the task's env.
async fn ready() -> Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = env("HOST").ok_or_else(|| anyhow!("HOST is not set: run as a Cassandra pod's readiness check"))?;
    let port = env("PORT_NATIVE").ok_or_else(|| anyhow!("PORT_NATIVE is not set"))?;
    let pods: Vec<PodAddress> = match env(PODS_ENV) {
        Some(s) => serde_json::from_str(&s).with_context(|| format!("{PODS_ENV}: not a JSON list of pods"))?,
        None => Vec::new(),
    };
    let me = resolve(&format!("{host}:{port}")).await?;
    let mut targets: Vec<String> = pods
        .iter()
        .filter(|p| p.pod_type == svc::POD_TYPE)
        .filter_map(|p| p.ports.get(svc::NATIVE_PORT).map(|n| format!("{}:{n}", p.host)))
        .collect();
    let mine = format!("{host}:{port}");
    if !targets.contains(&mine) {
        targets.push(mine);
    }
    let views = futures::future::join_all(targets.iter().map(|t| async move {
        let r: Result<(String, Vec<GossipRow>)> = async {
            let addr = resolve(t).await?;
            let s = node_session(addr).await?;
            Ok((addr.ip().to_string(), gossip(&s).await?.into_iter().map(|g| g.row).collect()))
        }
        .await;
        match r {
            Ok((host, rows)) => NodeView { host, rows: Ok(rows) },
            Err(e) => NodeView {
                host: t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t).to_string(),
                rows: Err(format!("{e:#}")),
            },
        }
    }))
    .await;
    match svc::node_ready(&me.ip().to_string(), &views) {
        Ok(()) => {
            println!("{} is UN as seen by all {} placed node(s)", me.ip(), views.len());
            Ok(())
        }
        Err(why) => bail!("not ready: {why}"),
    }
}

/// A ring member as `smack cassandra nodes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeRow {
    pub address: String,
    /// `host:port` of its CQL transport, when known.
    pub native: Option<String>,
    pub datacenter: String,
    /// The rack, which smack sets to the agent's zone.
    pub rack: String,
    /// `U`/`D` + `N`/`J`/`L`/`M`, as `nodetool status` prints it.
    pub state: String,
    /// Its gossip status (`NORMAL`, `BOOT`, `LEAVING`, `shutdown`, …).
    pub status: String,
    /// It answered CQL just now.
    pub up: bool,
    pub load_bytes: Option<u64>,
    pub tokens: usize,
    pub host_id: String,
}

/// What one node told us about itself and the ring.
struct Asked {
    address: String,
    local: BTreeMap<String, CqlValue>,
    peers: Vec<BTreeMap<String, CqlValue>>,
    gossip: Vec<Gossip>,
}

async fn ask(contact: &str) -> Result<Asked> {
    let addr = resolve(contact).await?;
    let s = node_session(addr).await.with_context(|| format!("node {contact}"))?;
    let local = select(&s, "SELECT * FROM system.local").await?.into_iter().next().unwrap_or_default();
    let peers = select(&s, "SELECT * FROM system.peers_v2").await?;
    let gossip = gossip(&s).await?;
    let address = text(local.get("broadcast_address"));
    Ok(Asked { address: if address.is_empty() { addr.ip().to_string() } else { address }, local, peers, gossip })
}

fn state_letter(status: &str) -> char {
    match status {
        "NORMAL" | "shutdown" => 'N',
        "BOOT" | "BOOT_REPLACE" => 'J',
        "LEAVING" | "LEFT" | "REMOVING" | "REMOVED" => 'L',
        "MOVING" => 'M',
        _ => '?',
    }
}

/// The ring as the nodes at `contacts` (and every member they name) see it.
pub async fn ring(contacts: &[String]) -> Result<Vec<NodeRow>> {
    let mut asked: BTreeMap<String, Result<Asked, String>> = BTreeMap::new();
    let mut todo: Vec<String> = contacts.to_vec();
    // Two rounds: the contacts, then ring members they name that we have not asked.
    for _ in 0..2 {
        let results = futures::future::join_all(todo.iter().map(|c| async move { (c.clone(), ask(c).await) })).await;
        for (c, r) in results {
            asked.insert(c, r.map_err(|e| format!("{e:#}")));
        }
        let known: Vec<String> = asked.values().filter_map(|a| a.as_ref().ok()).map(|a| a.address.clone()).collect();
        todo = asked
            .values()
            .filter_map(|a| a.as_ref().ok())
            .flat_map(|a| a.peers.iter())
            .filter_map(|p| {
                let addr = text(p.get("native_address"));
                let port = int(p.get("native_port"));
                (!addr.is_empty() && port > 0 && !known.contains(&text(p.get("peer"))))
                    .then(|| format!("{addr}:{port}"))
            })
            .filter(|c| !asked.contains_key(c))
            .collect();
        todo.sort();
        todo.dedup();
        if todo.is_empty() {
            break;
        }
    }
    let answered: Vec<&Asked> = asked.values().filter_map(|a| a.as_ref().ok()).collect();
    if answered.is_empty() {
        let why: Vec<String> =
            asked.iter().map(|(c, r)| format!("{c}: {}", r.as_ref().err().cloned().unwrap_or_default())).collect();
        bail!("no Cassandra node answered: {}", why.join("; "));
    }
    let mut members: BTreeMap<String, NodeRow> = BTreeMap::new();
    let mut add = |address: String, row: &BTreeMap<String, CqlValue>, native: Option<String>| {
        members.entry(address.clone()).or_insert_with(|| NodeRow {
            address,
            native,
            datacenter: text(row.get("data_center")),
            rack: text(row.get("rack")),
            state: String::new(),
            status: String::new(),
            up: false,
            load_bytes: None,
            tokens: set_len(row.get("tokens")),
            host_id: text(row.get("host_id")),
        });
    };
    for a in &answered {
        let port = int(a.local.get("native_port"));
        let rpc = text(a.local.get("rpc_address"));
        add(a.address.clone(), &a.local, (port > 0).then(|| format!("{rpc}:{port}")));
    }
    for a in &answered {
        for p in &a.peers {
            let port = int(p.get("native_port"));
            let native = text(p.get("native_address"));
            add(text(p.get("peer")), p, (port > 0).then(|| format!("{native}:{port}")));
        }
    }
    for m in members.values_mut() {
        m.up = answered.iter().any(|a| a.address == m.address);
        // Its own view first, else any other node's.
        let own = answered
            .iter()
            .find(|a| a.address == m.address)
            .and_then(|a| a.gossip.iter().find(|g| g.row.address == m.address));
        let g = own.or_else(|| answered.iter().flat_map(|a| a.gossip.iter()).find(|g| g.row.address == m.address));
        if let Some(g) = g {
            m.status = g.row.status.clone();
            m.load_bytes = g.load.map(|l| l as u64);
        }
        m.state = format!("{}{}", if m.up { 'U' } else { 'D' }, state_letter(&m.status));
    }
    Ok(members.into_values().collect())
}

fn human_bytes(b: Option<u64>) -> String {
    let Some(b) = b else { return "-".into() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn print_nodes(nodes: &[NodeRow], output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(nodes)?);
        return Ok(());
    }
    println!("{:<6} {:<16} {:<10} {:<12} {:<11} {:<7} HOST ID", "STATE", "ADDRESS", "DC", "ZONE", "LOAD", "TOKENS");
    for n in nodes {
        println!(
            "{:<6} {:<16} {:<10} {:<12} {:<11} {:<7} {}",
            n.state,
            n.address,
            n.datacenter,
            n.rack,
            human_bytes(n.load_bytes),
            n.tokens,
            n.host_id
        );
    }
    Ok(())
}

/// `smack cassandra keyspace create`: refused with the reason when the
/// datacenter has fewer nodes than replicas.
async fn create_keyspace(contacts: &[String], name: &str, rf: u32, dc: Option<&str>) -> Result<()> {
    let nodes = ring(contacts).await?;
    let dcs: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.datacenter.as_str()).collect();
    let dc = match dc {
        Some(d) => d.to_string(),
        None if dcs.len() == 1 => dcs.iter().next().expect("one").to_string(),
        None => bail!(
            "the ring has several datacenters ({}): pick one with --datacenter",
            dcs.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let count = nodes.iter().filter(|n| n.datacenter == dc).count() as u32;
    svc::check_replication(count, rf).map_err(|e| anyhow!("keyspace {name} refused: {e} (datacenter {dc})"))?;
    let s = smack_connectors::cassandra::CassandraSession::connect(&smack_connectors::cassandra::CassandraConfig::new(
        contacts,
    ))
    .await
    .map_err(|e| anyhow!("{e}"))?;
    s.create_keyspace(name, &BTreeMap::from([(dc.clone(), rf)])).await.map_err(|e| anyhow!("{e}"))?;
    println!("keyspace {name}: NetworkTopologyStrategy, {dc}: {rf}");
    Ok(())
}

/// `smack cassandra decommission`: `nodetool decommission` on this pod's
/// node over its local JMX port; a node already decommissioned is fine
/// (the hook may run again after a crash).
fn decommission() -> Result<()> {
    let jmx = std::env::var("PORT_JMX")
        .map_err(|_| anyhow!("PORT_JMX is not set: run as a Cassandra pod's decommission hook"))?;
    let cache = artifacts::default_cache_dir();
    if !artifacts::status(Service::Cassandra, &cache).complete {
        bail!("the Cassandra jars are not in {}: run `smack artifacts fetch cassandra`", cache.display());
    }
    let artifact = artifacts::resolve(Service::Cassandra, &cache).map_err(|e| anyhow!("{e}"))?;
    let java = artifacts::java_binary().map_err(|e| anyhow!("{e}"))?;
    let dir = std::env::var("SMACK_SANDBOX").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let logback = dir.join("nodetool-logback.xml");
    std::fs::write(&logback, smack_operator::catalog::cassandra::cassandra_logback_xml("WARN"))
        .with_context(|| format!("writing {}", logback.display()))?;
    let nodetool = |args: &[&str]| -> Result<(bool, String)> {
        let mut cmd = std::process::Command::new(&java);
        cmd.arg("-Xmx128m").args(artifacts::CASSANDRA_JAVA17_MODULE_FLAGS);
        cmd.arg(format!("-Dlogback.configurationFile={}", logback.display()));
        cmd.args(["-cp", &artifact.classpath, "org.apache.cassandra.tools.NodeTool", "-h", "127.0.0.1", "-p", &jmx]);
        cmd.args(args);
        let out = cmd.output().with_context(|| format!("running {}", java.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    };
    println!("smack: nodetool decommission (JMX 127.0.0.1:{jmx})");
    let (ok, out) = nodetool(&["decommission"])?;
    print!("{out}");
    if ok {
        println!("smack: decommissioned");
        return Ok(());
    }
    let (_, netstats) = nodetool(&["netstats"])?;
    if netstats.contains("DECOMMISSIONED") {
        println!("smack: already decommissioned");
        return Ok(());
    }
    bail!("nodetool decommission failed: {}", out.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_sizes_read_like_nodetool() {
        assert_eq!(state_letter("NORMAL"), 'N');
        assert_eq!(state_letter("BOOT_REPLACE"), 'J');
        assert_eq!(state_letter("LEAVING"), 'L');
        assert_eq!(state_letter(""), '?');
        assert_eq!(human_bytes(None), "-");
        assert_eq!(human_bytes(Some(512)), "512 B");
        assert_eq!(human_bytes(Some(3 * 1024 * 1024 / 2)), "1.5 MiB");
        assert_eq!(int(Some(&CqlValue::Text(" 42".into()))), 42);
        assert_eq!(text(Some(&CqlValue::Inet("127.0.0.1".parse().unwrap()))), "127.0.0.1");
    }
}
