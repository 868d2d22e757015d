//! The ring of a Cassandra cluster over CQL: a session pinned to one node,
//! its node-local tables (`system.local`, `system.peers_v2`,
//! `system_views.gossip_info`, `system_views.settings`,
//! `system_schema.keyspaces`), and the ring as `smack cassandra nodes`
//! shows it.
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

use super::service::{self as svc, GossipRow};
use crate::error::{bail, chain, format_err, Context, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::host_filter::AllowListHostFilter;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::value::{CqlValue, Row};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one node may take to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `host:port` to a socket address.
pub(crate) async fn resolve(hostport: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .ok_or_else(|| format_err!("{hostport} resolves to no address"))
}

/// A session that talks to the node at `addr` only (its node-local tables
/// are what we ask for).
pub(crate) async fn node_session(addr: SocketAddr) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(NODE_TIMEOUT))
        .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(NodeIdentifier::NodeAddress(addr), None))
        .build();
    let filter = AllowListHostFilter::new([addr]).map_err(|e| format_err!("{addr}: {e}"))?;
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
        Ok(Err(e)) => Err(format_err!("{e}")),
        Err(_) => Err(format_err!("no answer within {:?}", NODE_TIMEOUT * 2)),
    }
}

/// A query's rows as column name → value maps.
pub(crate) async fn select(s: &Session, cql: &str) -> Result<Vec<BTreeMap<String, CqlValue>>> {
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

pub(crate) fn text(v: Option<&CqlValue>) -> String {
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

pub(crate) fn int(v: Option<&CqlValue>) -> i64 {
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
pub(crate) struct Gossip {
    pub(crate) row: GossipRow,
    pub(crate) load: Option<f64>,
}

pub(crate) async fn gossip(s: &Session) -> Result<Vec<Gossip>> {
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
pub(crate) struct Asked {
    pub(crate) address: String,
    pub(crate) local: BTreeMap<String, CqlValue>,
    peers: Vec<BTreeMap<String, CqlValue>>,
    gossip: Vec<Gossip>,
}

pub(crate) async fn ask(contact: &str) -> Result<Asked> {
    let addr = resolve(contact).await?;
    let s = node_session(addr).await.with_context(|| format!("node {contact}"))?;
    let local = select(&s, "SELECT * FROM system.local").await?.into_iter().next().unwrap_or_default();
    let peers = select(&s, "SELECT * FROM system.peers_v2").await?;
    let gossip = gossip(&s).await?;
    let address = text(local.get("broadcast_address"));
    Ok(Asked { address: if address.is_empty() { addr.ip().to_string() } else { address }, local, peers, gossip })
}

pub(crate) fn state_letter(status: &str) -> char {
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
            asked.insert(c, r.map_err(|e| chain(&e)));
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
pub(crate) async fn keyspaces_from(contacts: &[String]) -> Result<Vec<svc::KeyspaceReplication>> {
    let mut why = Vec::new();
    for c in contacts {
        let r = async {
            let s = node_session(resolve(c).await?).await?;
            keyspaces(&s).await
        }
        .await;
        match r {
            Ok(k) => return Ok(k),
            Err(e) => why.push(format!("{c}: {}", chain(&e))),
        }
    }
    bail!("no node answered for the keyspaces' replication: {}", why.join("; "))
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
pub fn unknown_settings(answers: &[NodeSettings], names: &[String]) -> Vec<String> {
    let answered: Vec<&NodeSettings> = answers.iter().filter(|a| a.error.is_none()).collect();
    if answered.is_empty() {
        return Vec::new();
    }
    names.iter().filter(|n| !answered.iter().any(|a| a.settings.contains_key(*n))).cloned().collect()
}

/// Each node's live settings (`names`, every one when empty) over CQL;
/// a node that does not answer is kept, with its error.
pub async fn settings(contacts: &[String], names: &[String]) -> Vec<NodeSettings> {
    futures::future::join_all(contacts.iter().map(|c| async move {
        let r = async {
            let s = node_session(resolve(c).await?).await?;
            select(&s, "SELECT name, value FROM system_views.settings").await
        }
        .await;
        match r {
            Ok(rows) => NodeSettings { node: c.clone(), settings: pick_settings(&rows, names), error: None },
            Err(e) => NodeSettings { node: c.clone(), settings: BTreeMap::new(), error: Some(chain(&e)) },
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_values_read_like_nodetool() {
        assert_eq!(state_letter("NORMAL"), 'N');
        assert_eq!(state_letter("BOOT_REPLACE"), 'J');
        assert_eq!(state_letter("LEAVING"), 'L');
        assert_eq!(state_letter(""), '?');
        assert_eq!(int(Some(&CqlValue::Text(" 42".into()))), 42);
        assert_eq!(text(Some(&CqlValue::Inet("127.0.0.1".parse().unwrap()))), "127.0.0.1");
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
}
