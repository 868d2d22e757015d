//! `smack cassandra …`: the ring of a Cassandra service as its nodes see it.
//!
//! - `nodes`: address, zone (rack), state (`UN`, `DN`, `UJ`, …), load and
//!   tokens of every ring member.
//! - `ready` (the node task's readiness check): passes once this pod's
//!   node is `UN` as seen by every placed node (`smack_catalog::cassandra::service::node_ready`).
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
//!   (`check_scale_down`), while a node is not `UN`,
//!   or while the service's deploy, update or decommission is under way.
//!
//! The bodies (CQL, readiness, the hook, the scale driver) live in
//! `smack_catalog::cassandra`; this file parses, dispatches and prints.

use crate::catalog_cmd::Scheduler;
use crate::cluster::ClusterFile;
use crate::Output;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use smack_catalog::cassandra::cql::{self, NodeRow, NodeSettings};
use smack_catalog::cassandra::service as svc;
use smack_catalog::cassandra::{decommission, keyspace, readiness, scale};
use std::path::Path;
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

pub async fn run(state_dir: &Path, cluster: Option<ClusterFile>, cmd: CassandraCmd) -> Result<()> {
    match cmd {
        CassandraCmd::Nodes { service, contact_points, output } => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            let nodes = cql::ring(&cps).await?;
            print_nodes(&nodes, output)
        }
        CassandraCmd::Keyspace(KeyspaceCmd::Create { name, replication, datacenter, service, contact_points }) => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            let dc = keyspace::create_keyspace(&cps, &name, replication, datacenter.as_deref()).await?;
            println!("keyspace {name}: NetworkTopologyStrategy, {dc}: {replication}");
            Ok(())
        }
        CassandraCmd::Keyspace(KeyspaceCmd::Alter { name, replication, datacenter, service, contact_points }) => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            let rf = replication;
            let (dc, before) = keyspace::alter_keyspace(&cps, &name, rf, datacenter.as_deref()).await?;
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
        CassandraCmd::Settings { names, service, contact_points, output } => {
            let cps = contact_points_or_service(state_dir, cluster, service.as_deref(), contact_points).await?;
            settings(&cps, &names, output).await
        }
        CassandraCmd::Scale { nodes, service, timeout } => {
            let c = cluster.ok_or_else(|| anyhow!("no cluster: run inside a smack state dir (or pass --master)"))?;
            let sched = Scheduler { state_dir, cluster: &c, service: &service };
            if let Some(ring) = scale::scale(&sched, nodes, timeout).await? {
                println!("service {service} runs {nodes} node(s):");
                print_nodes(&ring, Output::Table)?;
            }
            Ok(())
        }
        CassandraCmd::Ready => Ok(readiness::ready().await?),
        CassandraCmd::Decommission => Ok(decommission::decommission().await?),
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

/// `smack cassandra settings`: each node's live values, over CQL.
async fn settings(contacts: &[String], names: &[String], output: Output) -> Result<()> {
    let answers: Vec<NodeSettings> = cql::settings(contacts, names).await;
    let unknown = cql::unknown_settings(&answers, names);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_nodetool() {
        assert_eq!(human_bytes(None), "-");
        assert_eq!(human_bytes(Some(512)), "512 B");
        assert_eq!(human_bytes(Some(3 * 1024 * 1024 / 2)), "1.5 MiB");
    }
}
