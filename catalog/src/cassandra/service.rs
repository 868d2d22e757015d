//! Apache Cassandra as a catalog service: the service spec the operator
//! framework runs (pods `cassandra-N`, one node each, data on a ROOT
//! volume, spread over zones), and the pure decisions its node launcher,
//! readiness check and CLI share.
//!
//! - [`cassandra_service_yaml`]: the spec. Each pod has a CQL port
//!   `native` (dynamic), a gossip port `storage` (fixed: every node of a
//!   cluster must use the same one, so each agent needs its own address),
//!   and a local JMX port `jmx` (dynamic; only `nodetool decommission`
//!   uses it, from the pod's own agent). The task runs
//!   `smack catalog cassandra-node`; its readiness check runs
//!   `smack cassandra ready`, which passes only once the node is `UN` as
//!   seen by every other placed node, so the serial deploy joins nodes one
//!   at a time and a roll restarts the next node only after the ring has
//!   seen the last one come back. Scale-down runs a decommission hook
//!   (`smack cassandra decommission`) before the pod's disk is released.
//! - [`seed_hosts`]: the first node of each of up to three zones.
//! - [`node_ready`]: the readiness decision over each node's gossip view.
//! - [`check_replication`]: a keyspace may not ask for more replicas than
//!   there are nodes.
//! - [`apply_config_overrides`]: `cassandra.yaml` keys set by the user.
//! - [`check_scale_down`]: a scale-down may not leave a datacenter with
//!   fewer nodes than a keyspace keeps replicas there;
//!   [`with_node_count`] rewrites the spec's node count for `smack
//!   cassandra scale`.
//! - [`ready_marker_line`] / [`parse_ready_marker`]: the line the readiness
//!   check leaves in the task's sandbox the first time it passes (when the
//!   node became `UN` as seen by all), which shows a roll's order after
//!   the fact.

use crate::launch;
use smack_operator::scheduler::service::PodAddress;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The pod type (pods are `cassandra-0`, `cassandra-1`, …).
pub const POD_TYPE: &str = "cassandra";
/// The CQL (native transport) port's name.
pub const NATIVE_PORT: &str = "native";
/// The gossip/streaming port's name.
pub const STORAGE_PORT: &str = "storage";
/// The local JMX port's name (for `nodetool`).
pub const JMX_PORT: &str = "jmx";
/// Cassandra's default storage port, used unless the options say otherwise.
pub const DEFAULT_STORAGE_PORT: u16 = 7000;
/// At most this many seeds (one per zone).
pub const MAX_SEEDS: usize = 3;
/// The file on a node's volume that remembers the address it replaces, so
/// a replacement that fails half-way is retried as a replacement.
pub const REPLACE_MARKER: &str = "smack-replace-address";
/// The file in a node task's sandbox that records when its readiness check
/// first passed ([`ready_marker_line`]).
pub const READY_MARKER: &str = "smack-ready";
/// Keyspaces Cassandra keeps for itself: their replication (e.g.
/// `system_distributed` at 3 with `SimpleStrategy`) is Cassandra's
/// default, not a promise made to users, and Cassandra runs with fewer
/// nodes than that, so they never block a scale-down.
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_auth",
    "system_distributed",
    "system_schema",
    "system_traces",
    "system_views",
    "system_virtual_schema",
    "system_cluster_metadata",
];

/// What a Cassandra service looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct CassandraServiceOptions {
    /// The service name (and the framework's role).
    pub name: String,
    /// Number of nodes.
    pub nodes: u32,
    /// CPUs, memory (MiB) and disk (MiB) of each node.
    pub cpus: f64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    /// The datacenter name (GossipingPropertyFileSnitch's `dc`); the rack is the agent's zone.
    pub datacenter: String,
    /// Extra placement rules, as YAML (`"like: {zone: zone-[abc]}"`), added
    /// to `unique: hostname` and `group-by: zone`.
    pub placement: Vec<String>,
    /// `cassandra.yaml` overrides (key → YAML scalar).
    pub config: BTreeMap<String, String>,
    /// `cluster_name`; fixed for the cluster's life.
    pub cluster_name: String,
    /// The storage (gossip) port, the same on every node.
    pub storage_port: u16,
    /// `num_tokens`; fixed for a node's life.
    pub num_tokens: u32,
    /// `-Dcassandra.ring_delay_ms`: how long a joining node waits to learn
    /// the ring (Cassandra's default is 30000).
    pub ring_delay_ms: u32,
    /// The JVM heap; `None` is half the memory ([`launch::heap_mb_for`]).
    pub heap_mb: Option<u32>,
    /// `SMACK_CACHE_DIR` for the tasks (agents give tasks no env of their
    /// own, so the jar cache is named in the spec). `None` leaves it to the
    /// task's default.
    pub cache_dir: Option<String>,
}

impl CassandraServiceOptions {
    /// `nodes` nodes of 1 CPU, 2 GiB (1 GiB heap) and 4 GiB of disk in
    /// datacenter `dc1`, storage port 7000, jars from this machine's cache.
    pub fn new(nodes: u32) -> Self {
        CassandraServiceOptions {
            name: "cassandra".into(),
            nodes,
            cpus: 1.0,
            mem_mb: 2048,
            disk_mb: 4096,
            datacenter: "dc1".into(),
            placement: Vec::new(),
            config: BTreeMap::new(),
            cluster_name: "smack".into(),
            storage_port: DEFAULT_STORAGE_PORT,
            num_tokens: 16,
            ring_delay_ms: 5000,
            heap_mb: None,
            cache_dir: Some(crate::artifacts::default_cache_dir().display().to_string()),
        }
    }

    /// The heap each node runs with.
    pub fn heap(&self) -> u32 {
        self.heap_mb.unwrap_or_else(|| launch::heap_mb_for(self.mem_mb))
    }
}

/// A YAML single-quoted scalar.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes a word for `/bin/sh` (single quotes unless it is plain).
fn shq(s: &str) -> String {
    crate::artifacts::shell_quote(s)
}

/// The node task's command line (what `smack catalog cassandra-node` is
/// told by the spec; everything per-node comes from the env).
pub fn node_command(o: &CassandraServiceOptions) -> String {
    let mut cmd = format!(
        "exec \"$SMACK_BIN\" catalog cassandra-node --cluster-name {} --datacenter {} --storage-port {} \
         --num-tokens {} --heap-mb {} --ring-delay-ms {}",
        shq(&o.cluster_name),
        shq(&o.datacenter),
        o.storage_port,
        o.num_tokens,
        o.heap(),
        o.ring_delay_ms
    );
    for (k, v) in &o.config {
        let _ = write!(cmd, " --set {}", shq(&format!("{k}={v}")));
    }
    cmd
}

/// The spec of a Cassandra service, for `ServiceSpec::from_yaml`.
pub fn cassandra_service_yaml(o: &CassandraServiceOptions) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "# Apache Cassandra {}, written by smack.", crate::artifacts::CASSANDRA_VERSION);
    let _ = writeln!(y, "name: {}", sq(&o.name));
    y.push_str("pods:\n");
    let _ = writeln!(y, "  {POD_TYPE}:");
    let _ = writeln!(y, "    count: {}", o.nodes);
    y.push_str("    allow-decommission: true\n");
    y.push_str("    resources:\n");
    let _ = writeln!(y, "      cpus: {}", o.cpus);
    let _ = writeln!(y, "      mem: {}", o.mem_mb);
    y.push_str("      ports:\n");
    let _ = writeln!(y, "        {NATIVE_PORT}: 0");
    let _ = writeln!(y, "        {STORAGE_PORT}: {}", o.storage_port);
    let _ = writeln!(y, "        {JMX_PORT}: 0");
    y.push_str("    volumes:\n      - path: data\n        type: ROOT\n");
    let _ = writeln!(y, "        size: {}", o.disk_mb);
    y.push_str("    placement:\n      - unique: hostname\n      - group-by: zone\n");
    for rule in &o.placement {
        let _ = writeln!(y, "      - {rule}");
    }
    let mut env = String::new();
    if let Some(dir) = &o.cache_dir {
        let _ = writeln!(env, "          SMACK_CACHE_DIR: {}", sq(dir));
    }
    y.push_str("    hooks:\n      decommission:\n");
    let _ = writeln!(y, "        cmd: {}", sq("exec \"$SMACK_BIN\" cassandra decommission"));
    if !env.is_empty() {
        y.push_str("        env:\n");
        y.push_str(&env);
    }
    y.push_str("        cpus: 0.2\n        mem: 256\n");
    y.push_str("    tasks:\n      node:\n");
    let _ = writeln!(y, "        cmd: {}", sq(&node_command(o)));
    y.push_str("        goal: RUNNING\n");
    if !env.is_empty() {
        y.push_str("        env:\n");
        y.push_str(&env);
    }
    // SIGTERM drains (flushes every memtable) before the JVM exits.
    y.push_str("        kill-grace-period: 60s\n");
    y.push_str("        readiness-check:\n");
    let _ = writeln!(y, "          cmd: {}", sq("exec \"$SMACK_BIN\" cassandra ready"));
    y.push_str("          interval: 2s\n          timeout: 30s\n");
    y
}

/// Refuses a replication factor the nodes cannot hold, saying why.
pub fn check_replication(nodes: u32, rf: u32) -> Result<(), String> {
    if rf == 0 {
        return Err("replication factor 0: a keyspace needs at least 1 replica".into());
    }
    if rf > nodes {
        return Err(format!(
            "replication factor {rf} is above the {nodes} node(s) of the datacenter: Cassandra would keep fewer \
             replicas than asked and every write at consistency ALL or QUORUM would fail; add nodes or lower the \
             replication"
        ));
    }
    Ok(())
}

/// The seed hosts for the pod `me`: the first pod (by index) of each of up
/// to [`MAX_SEEDS`] zones among the placed pods, without `me` itself unless
/// it would be the only one (the very first node of a new cluster). A node
/// that is its own seed never bootstraps, so a replacement or a node added
/// to a cluster that holds data must not be one. Adding pods never changes
/// the seeds of the zones already seen.
pub fn seed_hosts(pods: &[PodAddress], me: &str) -> Vec<String> {
    let mut sorted: Vec<&PodAddress> = pods.iter().filter(|p| p.pod_type == POD_TYPE).collect();
    sorted.sort_by_key(|p| p.index);
    let mut zones = BTreeSet::new();
    let mut seeds: Vec<&PodAddress> = Vec::new();
    for p in sorted {
        if seeds.len() == MAX_SEEDS {
            break;
        }
        if zones.insert(p.zone.clone().unwrap_or_default()) {
            seeds.push(p);
        }
    }
    let others: Vec<String> = seeds.iter().filter(|p| p.name != me).map(|p| p.host.clone()).collect();
    if others.is_empty() {
        seeds.iter().map(|p| p.host.clone()).collect()
    } else {
        others
    }
}

/// One row of a node's gossip view (`system_views.gossip_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipRow {
    /// The endpoint's address.
    pub address: String,
    /// Its generation (the time it last started, in seconds).
    pub generation: i64,
    /// The first word of its gossip status: `NORMAL`, `BOOT`, `LEAVING`,
    /// `LEFT`, `shutdown`, … (empty when not gossiped yet).
    pub status: String,
}

/// A node's view of the ring, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node whose view this is.
    pub host: String,
    pub rows: Result<Vec<GossipRow>, String>,
}

/// The first word of a gossip `STATUS` / `STATUS_WITH_PORT` value
/// (`NORMAL,-123…` → `NORMAL`).
pub fn status_word(value: &str) -> &str {
    value.split(',').next().unwrap_or("").trim()
}

/// Whether node `target` is `UN` as seen by itself and by every other
/// node: it answers, gossips `NORMAL`, and every other node has heard from
/// its current incarnation (the same gossip generation — a node restarted
/// after a crash starts a new one, and a peer that learnt it has marked it
/// alive) with status `NORMAL`. `views` holds each placed node's view,
/// the target's own included.
pub fn node_ready(target: &str, views: &[NodeView]) -> Result<(), String> {
    let own =
        views.iter().find(|v| v.host == target).ok_or_else(|| format!("node {target}: not among the placed nodes"))?;
    let rows = own.rows.as_ref().map_err(|e| format!("node {target} does not answer CQL yet: {e}"))?;
    let me = rows
        .iter()
        .find(|r| r.address == target)
        .ok_or_else(|| format!("node {target}: its gossip has no entry for itself yet"))?;
    if me.status != "NORMAL" {
        let s = if me.status.is_empty() { "no status yet" } else { me.status.as_str() };
        return Err(format!("node {target} is not NORMAL in its own view ({s})"));
    }
    for v in views.iter().filter(|v| v.host != target) {
        let rows = v.rows.as_ref().map_err(|e| format!("node {} cannot be asked about {target}: {e}", v.host))?;
        match rows.iter().find(|r| r.address == target) {
            None => return Err(format!("node {} has not heard of {target} yet", v.host)),
            Some(r) if r.generation != me.generation => {
                return Err(format!(
                    "node {} still sees an earlier start of {target} (generation {} ≠ {})",
                    v.host, r.generation, me.generation
                ))
            }
            Some(r) if r.status != "NORMAL" => return Err(format!("node {} sees {target} as {}", v.host, r.status)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// `cassandra.yaml` with `overrides` applied: a top-level key already in
/// `yaml` has its line replaced, others are appended. Keys must be
/// `cassandra.yaml` names (lower case, digits, `_`) and values one line.
pub fn apply_config_overrides(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<String, String> {
    for (k, v) in overrides {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(format!("cassandra.yaml key {k:?}: expected lower-case letters, digits and `_`"));
        }
        if v.contains('\n') || v.trim().is_empty() {
            return Err(format!("cassandra.yaml key {k}: the value must be one non-empty line, got {v:?}"));
        }
    }
    let mut out = String::with_capacity(yaml.len() + 64);
    let mut done = BTreeSet::new();
    for line in yaml.lines() {
        let key = line.split_once(':').map(|(k, _)| k).filter(|k| !k.starts_with([' ', '#', '-']));
        match key.and_then(|k| overrides.get_key_value(k)) {
            Some((k, v)) => {
                let _ = writeln!(out, "{k}: {v}");
                done.insert(k.clone());
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (k, v) in overrides.iter().filter(|(k, _)| !done.contains(*k)) {
        let _ = writeln!(out, "{k}: {v}");
    }
    Ok(out)
}

/// `spec_yaml` (a Cassandra service's spec) with `nodes` nodes, every
/// other byte kept; lowering the count keeps `allow-decommission: true`.
pub fn with_node_count(spec_yaml: &str, nodes: u32) -> Result<String, String> {
    if nodes == 0 {
        return Err(
            "0 nodes: a Cassandra service needs at least one node; use `smack service delete` to remove it".into()
        );
    }
    crate::counts::with_pod_count(spec_yaml, POD_TYPE, nodes).map_err(|e| e.to_string())
}

/// The node count of a Cassandra service's spec.
pub fn node_count(spec_yaml: &str) -> Result<u32, String> {
    crate::counts::pod_count(spec_yaml, POD_TYPE).map_err(|e| e.to_string())
}

/// A keyspace and its `replication` map, as `system_schema.keyspaces`
/// holds them (`{'class': '…NetworkTopologyStrategy', 'dc1': '3'}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceReplication {
    pub name: String,
    pub replication: BTreeMap<String, String>,
}

/// How many replicas a keyspace keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// In one datacenter (`NetworkTopologyStrategy`).
    InDatacenter(u32),
    /// Over the whole ring, whatever the datacenter (`SimpleStrategy`).
    InRing(u32),
    /// No fixed count there (`LocalStrategy`, `EverywhereStrategy`, or a
    /// datacenter the keyspace does not name).
    None,
}

/// A replication factor value: `3`, or `3/1` (full/transient: all count).
fn parse_rf(keyspace: &str, key: &str, v: &str) -> Result<u32, String> {
    let full = v.split('/').next().unwrap_or("").trim();
    full.parse().map_err(|_| {
        format!("keyspace {keyspace}: replication `{key}: {v}` is not a replication factor (expected a number)")
    })
}

impl KeyspaceReplication {
    /// What the keyspace keeps in datacenter `dc`.
    pub fn replicas(&self, dc: &str) -> Result<Replicas, String> {
        let class = self.replication.get("class").map(String::as_str).unwrap_or("");
        let short = class.rsplit('.').next().unwrap_or(class);
        match short {
            "NetworkTopologyStrategy" => match self.replication.get(dc) {
                Some(v) => Ok(Replicas::InDatacenter(parse_rf(&self.name, dc, v)?)),
                None => Ok(Replicas::None),
            },
            "SimpleStrategy" => {
                let v = self
                    .replication
                    .get("replication_factor")
                    .ok_or_else(|| format!("keyspace {}: SimpleStrategy without a replication_factor", self.name))?;
                Ok(Replicas::InRing(parse_rf(&self.name, "replication_factor", v)?))
            }
            _ => Ok(Replicas::None),
        }
    }
}

/// Refuses a scale-down that would leave `remaining_in_dc` nodes in
/// datacenter `dc` (and `remaining_total` in the ring) when a user
/// keyspace keeps more replicas than that: Cassandra's decommission would
/// refuse too, and writes at `ALL` (or `QUORUM` at RF 2) would fail. The
/// error names every such keyspace and its replication.
pub fn check_scale_down(
    dc: &str,
    remaining_in_dc: u32,
    remaining_total: u32,
    keyspaces: &[KeyspaceReplication],
) -> Result<(), String> {
    let mut too_wide = Vec::new();
    for ks in keyspaces.iter().filter(|k| !SYSTEM_KEYSPACES.contains(&k.name.as_str())) {
        match ks.replicas(dc)? {
            Replicas::InDatacenter(rf) if rf > remaining_in_dc => {
                too_wide.push(format!("{} (replication {rf} in datacenter {dc})", ks.name))
            }
            Replicas::InRing(rf) if rf > remaining_total => {
                too_wide.push(format!("{} (SimpleStrategy, replication {rf})", ks.name))
            }
            _ => {}
        }
    }
    if too_wide.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{remaining_in_dc} node(s) would remain in datacenter {dc}, fewer than the replicas of keyspace(s) {}; \
         lower their replication first (`smack cassandra keyspace alter NAME --replication {remaining_in_dc}`) or \
         keep more nodes",
        too_wide.join(", ")
    ))
}

/// The line the readiness check writes to [`READY_MARKER`] the first time
/// it passes: when (ms since the epoch), which node, and who saw it `UN`.
pub fn ready_marker_line(at_ms: u64, node: &str, seen_by: &[String]) -> String {
    format!("{at_ms} {node} UN as seen by {}\n", seen_by.join(","))
}

/// The time (ms since the epoch) in a [`READY_MARKER`] file.
pub fn parse_ready_marker(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Parses `KEY=VALUE` (a `--set` flag).
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_operator::scheduler::spec::{CheckKind, PlacementRule, ServiceSpec, VolumeType};

    fn pod(index: u32, host: &str, zone: &str) -> PodAddress {
        PodAddress {
            name: format!("cassandra-{index}"),
            pod_type: POD_TYPE.into(),
            index,
            host: host.into(),
            zone: Some(zone.into()),
            ports: BTreeMap::new(),
        }
    }

    #[test]
    fn the_spec_parses_with_its_ports_volume_placement_hook_and_checks() {
        let mut o = CassandraServiceOptions::new(3);
        o.cache_dir = Some("/var/cache/it's".into());
        o.config.insert("concurrent_writes".into(), "8".into());
        o.placement.push("like: {zone: 'zone-[abc]'}".into());
        let yaml = cassandra_service_yaml(&o);
        let spec = ServiceSpec::from_yaml(&yaml, "cassandra.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(spec.name, "cassandra");
        let p = spec.pod(POD_TYPE).unwrap();
        assert_eq!(p.count, 3);
        assert!(p.allow_decommission);
        let ports: Vec<(&str, u16)> = p.resources.ports.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(ports, vec![(NATIVE_PORT, 0), (STORAGE_PORT, 7000), (JMX_PORT, 0)]);
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(p.volumes[0].path, "data");
        assert_eq!(p.volumes[0].kind, VolumeType::Root);
        assert_eq!(p.volumes[0].size, 4096);
        let rules: Vec<&PlacementRule> = p.placement.iter().map(|r| &r.rule).collect();
        assert!(rules.contains(&&PlacementRule::Unique { attribute: "hostname".into() }));
        assert!(rules.contains(&&PlacementRule::GroupBy { attribute: "zone".into(), count: None }));
        assert_eq!(rules.len(), 3);
        let hook = p.hooks.decommission.as_ref().unwrap();
        assert!(hook.cmd.contains("cassandra decommission"));
        assert_eq!(hook.env.get("SMACK_CACHE_DIR").map(String::as_str), Some("/var/cache/it's"));
        let t = p.task("node").unwrap();
        assert!(t.cmd.starts_with("exec \"$SMACK_BIN\" catalog cassandra-node "), "{}", t.cmd);
        assert!(t.cmd.contains("--storage-port 7000"));
        assert!(t.cmd.contains("--heap-mb 1024"));
        assert!(t.cmd.contains("--set concurrent_writes=8"));
        assert_eq!(t.env.get("SMACK_CACHE_DIR").map(String::as_str), Some("/var/cache/it's"));
        assert_eq!(t.kill_grace_period_ms, 60_000);
        let r = t.readiness_check.as_ref().unwrap();
        assert!(matches!(&r.kind, CheckKind::Cmd(c) if c.contains("cassandra ready")), "{:?}", r.kind);
    }

    #[test]
    fn the_spec_without_a_cache_dir_and_with_a_fixed_heap() {
        let mut o = CassandraServiceOptions::new(1);
        o.cache_dir = None;
        o.heap_mb = Some(512);
        o.storage_port = 42000;
        let yaml = cassandra_service_yaml(&o);
        let spec = ServiceSpec::from_yaml(&yaml, "c.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let p = spec.pod(POD_TYPE).unwrap();
        assert!(p.task("node").unwrap().env.is_empty());
        assert!(p.task("node").unwrap().cmd.contains("--heap-mb 512 "));
        assert_eq!(p.resources.ports[1].port, 42000);
    }

    #[test]
    fn replication_above_the_node_count_is_refused_with_the_reason() {
        assert_eq!(check_replication(3, 3), Ok(()));
        assert_eq!(check_replication(3, 1), Ok(()));
        let e = check_replication(3, 4).unwrap_err();
        assert!(e.contains("replication factor 4 is above the 3 node(s)"), "{e}");
        assert!(check_replication(3, 0).is_err());
    }

    #[test]
    fn seeds_are_the_first_node_of_each_of_up_to_three_zones() {
        let pods = vec![pod(0, "h0", "a"), pod(1, "h1", "b"), pod(2, "h2", "a"), pod(3, "h3", "c"), pod(4, "h4", "d")];
        assert_eq!(seed_hosts(&pods, "cassandra-2"), vec!["h0", "h1", "h3"]);
        assert_eq!(seed_hosts(&pods, "cassandra-4"), vec!["h0", "h1", "h3"]);
        // A seed does not list itself (it must be able to bootstrap or replace).
        assert_eq!(seed_hosts(&pods, "cassandra-1"), vec!["h0", "h3"]);
        // The first node of a new cluster is its own seed.
        assert_eq!(seed_hosts(&pods[..1], "cassandra-0"), vec!["h0"]);
        // Stable as pods are added: the seeds of node 2 with only 0..=2 placed.
        assert_eq!(seed_hosts(&pods[..3], "cassandra-2"), vec!["h0", "h1"]);
        // Order of SMACK_PODS does not matter; other pod types are ignored.
        let mut shuffled = pods.clone();
        shuffled.reverse();
        shuffled.push(PodAddress { pod_type: "kafka".into(), ..pod(0, "k0", "z") });
        assert_eq!(seed_hosts(&shuffled, "cassandra-2"), vec!["h0", "h1", "h3"]);
    }

    fn row(address: &str, generation: i64, status: &str) -> GossipRow {
        GossipRow { address: address.into(), generation, status: status.into() }
    }

    #[test]
    fn ready_only_when_every_node_sees_the_current_start_as_normal() {
        let own = NodeView { host: "h1".into(), rows: Ok(vec![row("h0", 5, "NORMAL"), row("h1", 9, "NORMAL")]) };
        let peer_ok = NodeView { host: "h0".into(), rows: Ok(vec![row("h0", 5, "NORMAL"), row("h1", 9, "NORMAL")]) };
        assert_eq!(node_ready("h1", &[own.clone(), peer_ok.clone()]), Ok(()));
        assert_eq!(node_ready("h1", std::slice::from_ref(&own)), Ok(()));

        let stale = NodeView { host: "h0".into(), rows: Ok(vec![row("h1", 7, "NORMAL")]) };
        let e = node_ready("h1", &[own.clone(), stale]).unwrap_err();
        assert!(e.contains("earlier start"), "{e}");
        let joining = NodeView { host: "h0".into(), rows: Ok(vec![row("h1", 9, "BOOT")]) };
        assert!(node_ready("h1", &[own.clone(), joining]).unwrap_err().contains("sees h1 as BOOT"));
        let unheard = NodeView { host: "h0".into(), rows: Ok(vec![row("h0", 5, "NORMAL")]) };
        assert!(node_ready("h1", &[own.clone(), unheard]).unwrap_err().contains("has not heard"));
        let down = NodeView { host: "h0".into(), rows: Err("connection refused".into()) };
        assert!(node_ready("h1", &[own.clone(), down]).unwrap_err().contains("cannot be asked"));

        let not_up = NodeView { host: "h1".into(), rows: Err("refused".into()) };
        assert!(node_ready("h1", &[not_up, peer_ok.clone()]).unwrap_err().contains("does not answer"));
        let booting = NodeView { host: "h1".into(), rows: Ok(vec![row("h1", 9, "BOOT_REPLACE")]) };
        assert!(node_ready("h1", &[booting, peer_ok.clone()]).unwrap_err().contains("BOOT_REPLACE"));
        assert!(node_ready("h9", &[own, peer_ok]).unwrap_err().contains("not among"));
        assert_eq!(status_word("NORMAL,-9223372036854775808"), "NORMAL");
        assert_eq!(status_word(""), "");
    }

    #[test]
    fn config_overrides_replace_or_append_top_level_keys() {
        let yaml = "cluster_name: \"c\"\nconcurrent_writes: 4\nseed_provider:\n  - class_name: x\n";
        let o = BTreeMap::from([
            ("concurrent_writes".to_string(), "8".to_string()),
            ("class_name".to_string(), "nope".to_string()),
            ("read_request_timeout".to_string(), "10000ms".to_string()),
        ]);
        let out = apply_config_overrides(yaml, &o).unwrap();
        assert_eq!(
            out,
            "cluster_name: \"c\"\nconcurrent_writes: 8\nseed_provider:\n  - class_name: x\nclass_name: nope\n\
             read_request_timeout: 10000ms\n"
        );
        let bad = BTreeMap::from([("Bad Key".to_string(), "1".to_string())]);
        assert!(apply_config_overrides(yaml, &bad).unwrap_err().contains("Bad Key"));
        let bad = BTreeMap::from([("k".to_string(), "a\nb".to_string())]);
        assert!(apply_config_overrides(yaml, &bad).is_err());
        assert_eq!(parse_override("a = 1").unwrap(), ("a".into(), "1".into()));
        assert!(parse_override("a").is_err());
    }

    fn ks(name: &str, pairs: &[(&str, &str)]) -> KeyspaceReplication {
        KeyspaceReplication {
            name: name.into(),
            replication: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const NTS: &str = "org.apache.cassandra.locator.NetworkTopologyStrategy";

    #[test]
    fn replicas_are_read_per_strategy() {
        assert_eq!(ks("a", &[("class", NTS), ("dc1", "3")]).replicas("dc1"), Ok(Replicas::InDatacenter(3)));
        assert_eq!(ks("a", &[("class", NTS), ("dc1", "3/1")]).replicas("dc1"), Ok(Replicas::InDatacenter(3)));
        assert_eq!(ks("a", &[("class", NTS), ("dc2", "3")]).replicas("dc1"), Ok(Replicas::None));
        assert_eq!(
            ks("a", &[("class", "NetworkTopologyStrategy"), ("dc1", "2")]).replicas("dc1"),
            Ok(Replicas::InDatacenter(2))
        );
        let simple = ks("s", &[("class", "org.apache.cassandra.locator.SimpleStrategy"), ("replication_factor", "2")]);
        assert_eq!(simple.replicas("dc1"), Ok(Replicas::InRing(2)));
        assert_eq!(
            ks("l", &[("class", "org.apache.cassandra.locator.LocalStrategy")]).replicas("dc1"),
            Ok(Replicas::None)
        );
        let e = ks("bad", &[("class", NTS), ("dc1", "three")]).replicas("dc1").unwrap_err();
        assert!(e.contains("keyspace bad") && e.contains("dc1: three"), "{e}");
        let e = ks("s", &[("class", "SimpleStrategy")]).replicas("dc1").unwrap_err();
        assert!(e.contains("without a replication_factor"), "{e}");
    }

    #[test]
    fn a_scale_down_below_a_keyspace_replication_is_refused_naming_it() {
        let spaces = vec![
            ks("e2e", &[("class", NTS), ("dc1", "3")]),
            ks("small", &[("class", NTS), ("dc1", "2")]),
            ks("other_dc", &[("class", NTS), ("dc2", "5")]),
            ks("system_distributed", &[("class", "SimpleStrategy"), ("replication_factor", "3")]),
            ks("system_traces", &[("class", "SimpleStrategy"), ("replication_factor", "2")]),
        ];
        let e = check_scale_down("dc1", 2, 2, &spaces).unwrap_err();
        assert!(e.contains("e2e (replication 3 in datacenter dc1)"), "{e}");
        assert!(!e.contains("small") && !e.contains("system") && !e.contains("other_dc"), "{e}");
        assert!(e.contains("2 node(s) would remain in datacenter dc1"), "{e}");
        assert!(e.contains("keyspace alter NAME --replication 2"), "{e}");
        assert_eq!(check_scale_down("dc1", 3, 3, &spaces), Ok(()));
        // Both named when both are too wide.
        let e = check_scale_down("dc1", 1, 1, &spaces).unwrap_err();
        assert!(e.contains("e2e (") && e.contains("small ("), "{e}");
        // SimpleStrategy counts the whole ring.
        let simple = vec![ks("s", &[("class", "SimpleStrategy"), ("replication_factor", "3")])];
        assert!(check_scale_down("dc1", 1, 3, &simple).is_ok());
        assert!(check_scale_down("dc1", 1, 2, &simple).unwrap_err().contains("s (SimpleStrategy, replication 3)"));
        // A malformed replication is an error, not a silent pass.
        let bad = vec![ks("bad", &[("class", NTS), ("dc1", "x")])];
        assert!(check_scale_down("dc1", 5, 5, &bad).unwrap_err().contains("keyspace bad"));
        assert_eq!(check_scale_down("dc1", 0, 0, &[]), Ok(()));
    }

    #[test]
    fn the_node_count_is_rewritten_and_nothing_else() {
        let o = CassandraServiceOptions::new(3);
        let yaml = cassandra_service_yaml(&o);
        assert_eq!(node_count(&yaml), Ok(3));
        let two = with_node_count(&yaml, 2).unwrap();
        assert_eq!(node_count(&two), Ok(2));
        let spec = ServiceSpec::from_yaml(&two, "c.yaml").unwrap();
        assert!(spec.pod(POD_TYPE).unwrap().allow_decommission);
        let changed: Vec<(&str, &str)> = yaml.lines().zip(two.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed, vec![("    count: 3", "    count: 2")]);
        assert_eq!(yaml.lines().count(), two.lines().count());
        let five = with_node_count(&two, 5).unwrap();
        assert_eq!(node_count(&five), Ok(5));
        assert!(with_node_count(&yaml, 0).unwrap_err().contains("at least one node"));
        assert!(with_node_count("name: x\npods: {}\n", 2).is_err());
        assert!(node_count("not: [a spec").is_err());
    }

    #[test]
    fn the_ready_marker_carries_its_time() {
        let line = ready_marker_line(1_700_000_000_123, "10.0.0.2", &["10.0.0.1".into(), "10.0.0.2".into()]);
        assert_eq!(line, "1700000000123 10.0.0.2 UN as seen by 10.0.0.1,10.0.0.2\n");
        assert_eq!(parse_ready_marker(&line), Some(1_700_000_000_123));
        assert_eq!(parse_ready_marker(""), None);
        assert_eq!(parse_ready_marker("soon"), None);
    }
}
