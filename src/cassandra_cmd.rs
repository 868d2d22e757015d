//! `smack cassandra …`: the ring of a Cassandra service as its nodes see it.
//!
//! - `nodes`: address, zone (rack), state (`UN`, `DN`, `UJ`, …), load and
//!   tokens of every ring member.
//! - `ready` (the node task's readiness check): passes once this pod's
//!   node is `UN` as seen by every placed node ([`cassandra_service::node_ready`]).
//! - `decommission` (the pod's decommission hook): `nodetool decommission`
//!   on the pod's own node, so a scale-down streams its data away first;
//!   it fails with the reason (and the scheduler retries it) while a user
//!   keyspace keeps more replicas than the nodes that would remain, however
//!   the count was lowered (`cassandra scale` or an edited spec).
//! - `keyspace create|alter`: a keyspace with `NetworkTopologyStrategy`,
//!   refused when it asks for more replicas than the datacenter has nodes.
//! - `settings [NAME…]`: the live value of settings on every node
//!   (`system_views.settings`), e.g. after a rolling config change.
//! - `scale --nodes N`: the service's spec with N nodes, submitted to its
//!   scheduler; more nodes join one at a time (the deploy of the `update`
//!   plan), fewer are decommissioned highest index first by their hook.
//!   Refused, naming the keyspaces, when fewer nodes would remain in the
//!   datacenter than a keyspace keeps replicas there
//!   ([`cassandra_service::check_scale_down`]), while a node is not `UN`,
//!   or while the service's deploy, update or decommission is under way.
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
    /// The live value of settings on every node (system_views.settings); all of them without NAMEs.
    Settings {
        names: Vec<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_delimiter = ',')]
        contact_points: Vec<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Change the number of nodes: new ones join one at a time; removed ones (highest index first)
    /// are decommissioned (their data streamed to the others) before their disks are released.
    /// Refused when fewer nodes would remain than a keyspace's replication in the datacenter.
    Scale {
        #[arg(long)]
        nodes: u32,
        /// The Cassandra service.
        #[arg(long, default_value = "cassandra")]
        service: String,
        /// Give up waiting for the plan and the ring after this long.
        #[arg(long, default_value = "60m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
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
    /// Change a keyspace's replication in one datacenter (others kept; refused above the node count).
    /// Lowering it leaves extra copies until `nodetool cleanup`; raising it needs a repair to fill the new replicas.
    Alter {
        name: String,
        /// Replicas in the datacenter.
        #[arg(long)]
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
        CassandraCmd::Keyspace(KeyspaceCmd::Alter { name, replication, datacenter, service, contact_points }) => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            alter_keyspace(&cps, &name, replication, datacenter.as_deref()).await
        }
        CassandraCmd::Settings { names, service, contact_points, output } => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            settings(&cps, &names, output).await
        }
        CassandraCmd::Scale { nodes, service, timeout } => {
            let c = cluster.ok_or_else(|| anyhow!("no cluster: run inside a smack state dir (or pass --master)"))?;
            scale(state_dir, &c, &service, nodes, timeout).await
        }
        CassandraCmd::Ready => ready().await,
        CassandraCmd::Decommission => decommission().await,
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
            // The first pass is remembered in the sandbox: when this start
            // of the node became UN everywhere (a roll's order, after the fact).
            if let Some(sb) = env("SMACK_SANDBOX") {
                let marker = Path::new(&sb).join(svc::READY_MARKER);
                if !marker.exists() {
                    let seen: Vec<String> = views.iter().map(|v| v.host.clone()).collect();
                    let line = svc::ready_marker_line(smack_operator::resources::now_ms(), &me.ip().to_string(), &seen);
                    if let Err(e) = std::fs::write(&marker, line) {
                        eprintln!("cannot write {}: {e}", marker.display());
                    }
                }
            }
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

/// The datacenter asked for, or the ring's only one.
fn pick_datacenter(nodes: &[NodeRow], dc: Option<&str>) -> Result<String> {
    let dcs: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.datacenter.as_str()).collect();
    Ok(match dc {
        Some(d) => d.to_string(),
        None if dcs.len() == 1 => dcs.iter().next().expect("one").to_string(),
        None => bail!(
            "the ring has several datacenters ({}): pick one with --datacenter",
            dcs.into_iter().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// `smack cassandra keyspace create`: refused with the reason when the
/// datacenter has fewer nodes than replicas.
async fn create_keyspace(contacts: &[String], name: &str, rf: u32, dc: Option<&str>) -> Result<()> {
    let nodes = ring(contacts).await?;
    let dc = pick_datacenter(&nodes, dc)?;
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

/// A CQL map of text (`replication`) as strings.
fn text_map(v: Option<&CqlValue>) -> BTreeMap<String, String> {
    match v {
        Some(CqlValue::Map(pairs)) => pairs.iter().map(|(k, v)| (text(Some(k)), text(Some(v)))).collect(),
        _ => BTreeMap::new(),
    }
}

/// Every keyspace's replication, from `system_schema.keyspaces`.
async fn keyspaces(s: &Session) -> Result<Vec<svc::KeyspaceReplication>> {
    let rows = select(s, "SELECT keyspace_name, replication FROM system_schema.keyspaces").await?;
    Ok(rows
        .iter()
        .map(|r| svc::KeyspaceReplication {
            name: text(r.get("keyspace_name")),
            replication: text_map(r.get("replication")),
        })
        .collect())
}

/// The keyspaces as the first of `contacts` that answers sees them.
async fn keyspaces_from(contacts: &[String]) -> Result<Vec<svc::KeyspaceReplication>> {
    let mut why = Vec::new();
    for c in contacts {
        let r = async {
            let s = node_session(resolve(c).await?).await?;
            keyspaces(&s).await
        }
        .await;
        match r {
            Ok(k) => return Ok(k),
            Err(e) => why.push(format!("{c}: {e:#}")),
        }
    }
    bail!("no node answered for the keyspaces' replication: {}", why.join("; "))
}

/// The replication map a keyspace gets when `dc` is set to `rf`: its other
/// datacenters kept when it already uses NetworkTopologyStrategy.
fn merged_replication(ks: &svc::KeyspaceReplication, dc: &str, rf: u32) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    let class = ks.replication.get("class").map(String::as_str).unwrap_or("");
    if class.ends_with("NetworkTopologyStrategy") {
        for other in ks.replication.keys().filter(|k| *k != "class" && *k != dc) {
            if let svc::Replicas::InDatacenter(n) = ks.replicas(other)? {
                out.insert(other.clone(), n);
            }
        }
    }
    out.insert(dc.to_string(), rf);
    Ok(out)
}

/// `ALTER KEYSPACE name WITH replication = {NetworkTopologyStrategy, dc: rf…}`.
fn alter_keyspace_cql(name: &str, replication: &BTreeMap<String, u32>) -> Result<String, String> {
    if name.is_empty() || name.len() > 48 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("keyspace name {name:?}: expected 1 to 48 letters, digits or `_`"));
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
    for (dc, rf) in replication {
        if *rf == 0 {
            return Err(format!("keyspace {name}: replication 0 in datacenter {dc} (expected 1 or more)"));
        }
        parts.push(format!("'{}': {rf}", dc.replace('\'', "''")));
    }
    Ok(format!("ALTER KEYSPACE {name} WITH replication = {{{}}}", parts.join(", ")))
}

/// `smack cassandra keyspace alter`: one datacenter's replication changed,
/// refused above that datacenter's node count.
async fn alter_keyspace(contacts: &[String], name: &str, rf: u32, dc: Option<&str>) -> Result<()> {
    let nodes = ring(contacts).await?;
    let dc = pick_datacenter(&nodes, dc)?;
    let count = nodes.iter().filter(|n| n.datacenter == dc).count() as u32;
    svc::check_replication(count, rf).map_err(|e| anyhow!("keyspace {name} alter refused: {e} (datacenter {dc})"))?;
    let all = keyspaces_from(contacts).await?;
    let ks = all.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> =
            all.iter().map(|k| k.name.as_str()).filter(|n| !svc::SYSTEM_KEYSPACES.contains(n)).collect();
        anyhow!("no keyspace {name}; the keyspaces are: {}", names.join(", "))
    })?;
    let before = ks.replicas(&dc).map_err(|e| anyhow!("{e}"))?;
    let merged = merged_replication(ks, &dc, rf).map_err(|e| anyhow!("{e}"))?;
    let cql = alter_keyspace_cql(name, &merged).map_err(|e| anyhow!("{e}"))?;
    let s = smack_connectors::cassandra::CassandraSession::connect(&smack_connectors::cassandra::CassandraConfig::new(
        contacts,
    ))
    .await
    .map_err(|e| anyhow!("{e}"))?;
    s.execute_ddl(&cql).await.map_err(|e| anyhow!("{e}"))?;
    println!("keyspace {name}: NetworkTopologyStrategy, {dc}: {rf} (was {before:?})");
    match before {
        svc::Replicas::InDatacenter(n) if n > rf => {
            println!("the extra copies stay on disk until `nodetool cleanup` runs on each node")
        }
        svc::Replicas::InDatacenter(n) if n < rf => {
            println!("the new replicas fill on writes and read repair; run a repair to copy what they miss")
        }
        _ => {}
    }
    Ok(())
}

/// One node's answer for `smack cassandra settings`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeSettings {
    /// `host:port` asked.
    pub node: String,
    /// The settings asked for (every setting when none was named); a name
    /// the node does not know is absent.
    pub settings: BTreeMap<String, String>,
    /// Why the node did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rows of `system_views.settings` kept for `names` (all when empty).
fn pick_settings(rows: &[BTreeMap<String, CqlValue>], names: &[String]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|r| (text(r.get("name")), text(r.get("value"))))
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .collect()
}

/// Names asked for that no node knows.
fn unknown_settings(answers: &[NodeSettings], names: &[String]) -> Vec<String> {
    let answered: Vec<&NodeSettings> = answers.iter().filter(|a| a.error.is_none()).collect();
    if answered.is_empty() {
        return Vec::new();
    }
    names.iter().filter(|n| !answered.iter().any(|a| a.settings.contains_key(*n))).cloned().collect()
}

/// `smack cassandra settings`: each node's live values, over CQL.
async fn settings(contacts: &[String], names: &[String], output: Output) -> Result<()> {
    let answers: Vec<NodeSettings> = futures::future::join_all(contacts.iter().map(|c| async move {
        let r = async {
            let s = node_session(resolve(c).await?).await?;
            select(&s, "SELECT name, value FROM system_views.settings").await
        }
        .await;
        match r {
            Ok(rows) => NodeSettings { node: c.clone(), settings: pick_settings(&rows, names), error: None },
            Err(e) => NodeSettings { node: c.clone(), settings: BTreeMap::new(), error: Some(format!("{e:#}")) },
        }
    }))
    .await;
    let unknown = unknown_settings(&answers, names);
    if !unknown.is_empty() {
        bail!("no setting named {} (`smack cassandra settings` lists them all)", unknown.join(", "));
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answers)?);
    } else {
        println!("{:<22} {:<48} VALUE", "NODE", "SETTING");
        for a in &answers {
            match &a.error {
                Some(e) => println!("{:<22} {:<48} (no answer: {e})", a.node, "-"),
                None => {
                    for (k, v) in &a.settings {
                        println!("{:<22} {k:<48} {v}", a.node);
                    }
                }
            }
        }
    }
    let failed: Vec<String> =
        answers.iter().filter_map(|a| a.error.as_ref().map(|e| format!("{}: {e}", a.node))).collect();
    if !failed.is_empty() {
        bail!("{} node(s) did not answer: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// A scale needs a settled ring: every member `UN`.
fn check_ring_up(nodes: &[NodeRow]) -> Result<(), String> {
    let bad: Vec<String> =
        nodes.iter().filter(|n| n.state != "UN").map(|n| format!("{} is {}", n.address, n.state)).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the ring is not settled ({}): bring the node(s) back (or `smack pod replace` them) first",
            bad.join(", ")
        ))
    }
}

/// A scale waits for the service's own plans: a deploy, an update (a roll
/// would be cut short: a newer spec supersedes it) or a decommission still
/// under way is named, and the scale refused.
fn check_plans_settled(plans: &[smack_operator::scheduler::api::PlanSummary]) -> Result<(), String> {
    use smack_operator::scheduler::plan::Status;
    let busy: Vec<String> = plans
        .iter()
        .filter(|p| ["deploy", "update", "decommission"].contains(&p.name.as_str()) && p.status != Status::Complete)
        .map(|p| format!("plan {} is {}", p.name, p.status.as_str()))
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; scale once it completes (`smack plan show NAME`)", busy.join(", ")))
    }
}

/// The datacenter of the service's nodes (those at `hosts`), which must be one.
fn service_datacenter(nodes: &[NodeRow], hosts: &[String]) -> Result<String, String> {
    let dcs: std::collections::BTreeSet<&str> =
        nodes.iter().filter(|n| hosts.contains(&n.address)).map(|n| n.datacenter.as_str()).collect();
    match dcs.len() {
        1 => Ok(dcs.into_iter().next().expect("one").to_string()),
        0 => Err(format!("none of the service's nodes ({}) is in the ring", hosts.join(", "))),
        _ => Err(format!(
            "the service's nodes are in several datacenters ({})",
            dcs.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `smack cassandra scale --nodes N`.
async fn scale(state_dir: &Path, c: &ClusterFile, service: &str, nodes: u32, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let spec = crate::service_cmd::spec_of(state_dir, c, service)
        .await
        .with_context(|| format!("reading the spec of service {service}"))?;
    let now = svc::node_count(&spec.yaml).map_err(|e| anyhow!("service {service}: {e}"))?;
    let yaml = svc::with_node_count(&spec.yaml, nodes).map_err(|e| anyhow!("service {service}: {e}"))?;
    if now == nodes {
        println!("service {service} already runs {nodes} node(s): nothing to change");
        return Ok(());
    }
    let plans = crate::service_cmd::plans(state_dir, c, service).await?;
    check_plans_settled(&plans).map_err(|e| anyhow!("refusing to scale service {service}: {e}"))?;
    let pods = crate::endpoints_cmd::pods(state_dir, c, service).await?;
    let cps = crate::endpoints_cmd::endpoints_of(&pods, svc::NATIVE_PORT);
    if cps.is_empty() {
        bail!("service {service} has no placed node yet; wait for its deploy (`smack plan show deploy`)");
    }
    let members = ring(&cps).await?;
    check_ring_up(&members).map_err(|e| anyhow!("refusing to scale service {service}: {e}"))?;
    if nodes < now {
        let hosts: Vec<String> = pods.iter().map(|p| p.pod.hostname.clone()).filter(|h| !h.is_empty()).collect();
        let dc = service_datacenter(&members, &hosts).map_err(|e| anyhow!("service {service}: {e}"))?;
        let removed = now - nodes;
        let in_dc = members.iter().filter(|n| n.datacenter == dc).count() as u32;
        let spaces = keyspaces_from(&cps).await?;
        svc::check_scale_down(
            &dc,
            in_dc.saturating_sub(removed),
            (members.len() as u32).saturating_sub(removed),
            &spaces,
        )
        .map_err(|e| anyhow!("refusing to scale service {service} from {now} to {nodes} node(s): {e}"))?;
    }
    let plans = crate::service_cmd::submit_spec(
        state_dir,
        c,
        service,
        &smack_operator::scheduler::api::SpecUpdate { yaml, file: spec.file.clone() },
    )
    .await
    .with_context(|| format!("service {service} refused the new node count"))?;
    println!("service {service}: {now} -> {nodes} node(s); started {}", plans.join(", "));
    let plan = if nodes > now { "update" } else { "decommission" };
    crate::service_cmd::wait_plan_complete(state_dir, c, service, plan, deadline).await?;
    // Then the ring as the remaining nodes see it: N members, all UN (a
    // decommissioned node has left it, not gone down in it).
    loop {
        let pods = crate::endpoints_cmd::pods(state_dir, c, service).await?;
        let cps = crate::endpoints_cmd::endpoints_of(&pods, svc::NATIVE_PORT);
        let last = match ring(&cps).await {
            Ok(r) if r.len() == nodes as usize && check_ring_up(&r).is_ok() => {
                println!("service {service} runs {nodes} node(s):");
                return print_nodes(&r, Output::Table);
            }
            Ok(r) => r.iter().map(|n| format!("{} {}", n.address, n.state)).collect::<Vec<_>>().join(", "),
            Err(e) => format!("{e:#}"),
        };
        if std::time::Instant::now() > deadline {
            bail!("the ring did not settle at {nodes} UN node(s) within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether this node may leave: every user keyspace keeps no more replicas
/// in its datacenter than the nodes that would remain there, as the node
/// itself (at `me`, its CQL address) sees the ring and the schema.
async fn safe_to_leave(me: &str) -> Result<Result<(), String>> {
    let members = ring(&[me.to_string()]).await?;
    let own = ask(me).await?;
    let dc = text(own.local.get("data_center"));
    let in_dc = members.iter().filter(|n| n.datacenter == dc).count() as u32;
    let spaces = keyspaces_from(&[me.to_string()]).await?;
    Ok(svc::check_scale_down(&dc, in_dc.saturating_sub(1), (members.len() as u32).saturating_sub(1), &spaces)
        .map_err(|e| format!("refusing to decommission {}: {e}", own.address)))
}

/// The `nodetool` arguments the hook runs, from [`safe_to_leave`]'s
/// answer. Unsafe: none — the hook fails with the reason, and the
/// scheduler retries it, so the scale-down goes on once the replication is
/// lowered. Checked: `decommission --force`, because Cassandra's own check
/// also counts its system keyspaces and refuses a 3-node ring outright
/// ("Not enough live nodes to maintain replication factor in keyspace
/// system_distributed (RF = 3, N = 3)"), whose replication is Cassandra's
/// default rather than the user's. Unchecked (the node does not answer
/// CQL, e.g. already decommissioned): Cassandra's own check applies.
fn decommission_args(check: &Result<Result<(), String>, String>) -> Result<Vec<&'static str>, String> {
    match check {
        Ok(Ok(())) => Ok(vec!["decommission", "--force"]),
        Ok(Err(why)) => Err(why.clone()),
        Err(_) => Ok(vec!["decommission"]),
    }
}

/// `smack cassandra decommission` (the pod's decommission hook): checks
/// the keyspaces over CQL, then `nodetool decommission` on this pod's node
/// over its local JMX port; a node already decommissioned is fine (the
/// hook may run again after a crash).
async fn decommission() -> Result<()> {
    let me = match (std::env::var("HOST"), std::env::var("PORT_NATIVE")) {
        (Ok(h), Ok(p)) if !h.is_empty() && !p.is_empty() => Some(format!("{h}:{p}")),
        _ => None,
    };
    let check = match &me {
        Some(me) => safe_to_leave(me).await.map_err(|e| format!("{e:#}")),
        None => Err("HOST or PORT_NATIVE is not set".to_string()),
    };
    match &check {
        Ok(Ok(())) => println!("smack: every user keyspace keeps its replicas without this node"),
        Ok(Err(_)) => {}
        Err(e) => println!("smack: cannot check the keyspaces over CQL ({e}); Cassandra's own check applies"),
    }
    let args = decommission_args(&check).map_err(|why| anyhow!("{why}"))?;
    tokio::task::spawn_blocking(move || nodetool_decommission(&args)).await?
}

/// Runs `nodetool ARGS` (a decommission) on this pod's node.
fn nodetool_decommission(args: &[&str]) -> Result<()> {
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
    println!("smack: nodetool {} (JMX 127.0.0.1:{jmx})", args.join(" "));
    let (ok, out) = nodetool(args)?;
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

    fn node(address: &str, dc: &str, state: &str) -> NodeRow {
        NodeRow {
            address: address.into(),
            native: None,
            datacenter: dc.into(),
            rack: "zone-a".into(),
            state: state.into(),
            status: "NORMAL".into(),
            up: state.starts_with('U'),
            load_bytes: None,
            tokens: 16,
            host_id: String::new(),
        }
    }

    #[test]
    fn a_scale_needs_every_node_up_and_normal() {
        assert_eq!(check_ring_up(&[node("h0", "dc1", "UN"), node("h1", "dc1", "UN")]), Ok(()));
        let e =
            check_ring_up(&[node("h0", "dc1", "UN"), node("h1", "dc1", "DN"), node("h2", "dc1", "UJ")]).unwrap_err();
        assert!(e.contains("h1 is DN, h2 is UJ"), "{e}");
        assert_eq!(check_ring_up(&[]), Ok(()));
    }

    #[test]
    fn the_service_datacenter_is_the_one_its_nodes_are_in() {
        let ring = [node("h0", "dc1", "UN"), node("h1", "dc1", "UN"), node("x9", "dc2", "UN")];
        assert_eq!(service_datacenter(&ring, &["h0".into(), "h1".into()]), Ok("dc1".into()));
        assert!(service_datacenter(&ring, &["h0".into(), "x9".into()]).unwrap_err().contains("dc1, dc2"));
        assert!(service_datacenter(&ring, &["zz".into()]).unwrap_err().contains("none of the service's nodes (zz)"));
        assert_eq!(pick_datacenter(&ring[..2], None).unwrap(), "dc1");
        assert_eq!(pick_datacenter(&ring, Some("dc2")).unwrap(), "dc2");
        assert!(pick_datacenter(&ring, None).unwrap_err().to_string().contains("several datacenters (dc1, dc2)"));
    }

    fn ks(name: &str, pairs: &[(&str, &str)]) -> svc::KeyspaceReplication {
        svc::KeyspaceReplication {
            name: name.into(),
            replication: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn altering_one_datacenter_keeps_the_others() {
        let nts = "org.apache.cassandra.locator.NetworkTopologyStrategy";
        let k = ks("e2e", &[("class", nts), ("dc1", "3"), ("dc2", "2")]);
        let m = merged_replication(&k, "dc1", 2).unwrap();
        assert_eq!(m, BTreeMap::from([("dc1".to_string(), 2), ("dc2".to_string(), 2)]));
        assert_eq!(
            alter_keyspace_cql("e2e", &m).unwrap(),
            "ALTER KEYSPACE e2e WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 2, 'dc2': 2}"
        );
        // SimpleStrategy becomes NetworkTopologyStrategy in the one datacenter.
        let simple = ks("s", &[("class", "org.apache.cassandra.locator.SimpleStrategy"), ("replication_factor", "3")]);
        assert_eq!(merged_replication(&simple, "dc1", 2).unwrap(), BTreeMap::from([("dc1".to_string(), 2)]));
        assert!(merged_replication(&ks("b", &[("class", nts), ("dc2", "x")]), "dc1", 1).is_err());
        assert!(alter_keyspace_cql("e2e; DROP", &m).unwrap_err().contains("keyspace name"));
        assert!(alter_keyspace_cql("", &m).is_err());
        let zero = BTreeMap::from([("dc1".to_string(), 0)]);
        assert!(alter_keyspace_cql("k", &zero).unwrap_err().contains("replication 0 in datacenter dc1"));
        let quoted = BTreeMap::from([("d'c".to_string(), 1)]);
        assert!(alter_keyspace_cql("k", &quoted).unwrap().contains("'d''c': 1"));
    }

    #[test]
    fn settings_are_picked_by_name_and_unknown_names_reported() {
        let rows: Vec<BTreeMap<String, CqlValue>> = [("concurrent_writes", "48"), ("concurrent_reads", "32")]
            .iter()
            .map(|(n, v)| {
                BTreeMap::from([
                    ("name".to_string(), CqlValue::Text(n.to_string())),
                    ("value".to_string(), CqlValue::Text(v.to_string())),
                ])
            })
            .collect();
        let want = vec!["concurrent_writes".to_string()];
        let picked = pick_settings(&rows, &want);
        assert_eq!(picked, BTreeMap::from([("concurrent_writes".to_string(), "48".to_string())]));
        assert_eq!(pick_settings(&rows, &[]).len(), 2);
        let ok = NodeSettings { node: "h0:1".into(), settings: picked, error: None };
        let down = NodeSettings { node: "h1:1".into(), settings: BTreeMap::new(), error: Some("refused".into()) };
        assert!(unknown_settings(&[ok.clone(), down.clone()], &want).is_empty());
        let typo = vec!["concurent_writes".to_string()];
        assert_eq!(unknown_settings(&[ok, down.clone()], &typo), typo);
        // No node answered: the names are not blamed.
        assert!(unknown_settings(&[down], &typo).is_empty());
        let map = CqlValue::Map(vec![(CqlValue::Text("class".into()), CqlValue::Text("X".into()))]);
        assert_eq!(text_map(Some(&map)), BTreeMap::from([("class".to_string(), "X".to_string())]));
        assert!(text_map(None).is_empty());
    }

    #[test]
    fn the_hook_forces_only_after_checking_the_user_keyspaces() {
        assert_eq!(decommission_args(&Ok(Ok(()))), Ok(vec!["decommission", "--force"]));
        let why = "refusing to decommission h2: e2e".to_string();
        assert_eq!(decommission_args(&Ok(Err(why.clone()))), Err(why));
        assert_eq!(decommission_args(&Err("connection refused".into())), Ok(vec!["decommission"]));
    }

    #[test]
    fn a_scale_waits_for_the_service_plans() {
        use smack_operator::scheduler::api::PlanSummary;
        use smack_operator::scheduler::plan::Status;
        let plan = |name: &str, status| PlanSummary { name: name.into(), status };
        let settled = vec![plan("deploy", Status::Complete), plan("recovery", Status::InProgress)];
        assert_eq!(check_plans_settled(&settled), Ok(()));
        let custom = vec![plan("deploy", Status::Complete), plan("backup", Status::Waiting)];
        assert_eq!(check_plans_settled(&custom), Ok(()));
        let rolling = vec![plan("deploy", Status::Complete), plan("update", Status::InProgress)];
        assert!(check_plans_settled(&rolling).unwrap_err().starts_with("plan update is IN_PROGRESS"));
        let both = vec![plan("deploy", Status::Pending), plan("decommission", Status::Error)];
        let e = check_plans_settled(&both).unwrap_err();
        assert!(e.contains("plan deploy is PENDING, plan decommission is ERROR"), "{e}");
    }
}
