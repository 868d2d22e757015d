//! The Kafka catalog service: the service spec that runs a KRaft cluster as
//! pods `kafka-N` (and, when asked, `controller-N`) under the operator
//! framework, and the pure half of the node task (`smack catalog
//! kafka-broker`): its env decoded into a node config, and how its fresh
//! volume is formatted.
//!
//! Each broker runs with `node.id` = its index for life, `log.dirs` on its
//! ROOT volume `data`, listeners on the agent's address and the pod's
//! ports, and `broker.rack` = the agent's zone.
//!
//! Controllers. Small clusters run combined: every `kafka-N` is broker and
//! controller (port `controller`). With [`KafkaServiceOptions::controllers`]
//! set (3 in practice), pod type `controller` runs that many dedicated
//! controllers (`process.roles=controller`, node id
//! [`CONTROLLER_ID_BASE`] + index, the metadata log on their own small
//! volume `metadata`), spread over zones like the brokers and declared
//! first, so the deploy plan starts the quorum before any broker; the
//! brokers are then brokers only, bootstrapped from the controllers.
//!
//! The quorum is dynamic (KIP-853), because pods are placed one after
//! another and controller N only knows those placed before it
//! (`SMACK_PODS`): the first controller formats its fresh volume
//! `--standalone` (the quorum of one), every later one
//! `--no-initial-controllers` and starts as an observer; its readiness
//! check (`smack kafka ready --join-quorum`) adds it to the voter set once,
//! and only once per launch, so the deploy goes on only when the quorum has
//! grown. Auto-join is off: a drained broker's hook takes it out of the
//! voter set, and nothing adds it back before it is stopped. A relaunch on
//! a formatted volume never formats again.
//!
//! Readiness is a cluster-level gate: `smack kafka ready` passes once the
//! broker is registered and no partition it leads or follows is
//! under-replicated, so the deploy and update plans (serial) roll one
//! broker at a time and never take the next one down while replicas are
//! still catching up. The pod type whose pods are the controllers has an
//! `update-order` hook (`smack kafka update-order`): a rolling update
//! restarts the active controller last.

use super::config::{self as kafka, KafkaNodeConfig, Voter};
pub use crate::counts::{pod_count, with_pod_count};
use crate::launch::heap_mb_for;
use crate::{Error, Result};
use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The pod type (pods are `kafka-0`, `kafka-1`, …).
pub const POD_TYPE: &str = "kafka";
/// The broker task's name.
pub const TASK: &str = "broker";
/// The pod type of dedicated controllers (pods `controller-0`, …).
pub const CONTROLLER_POD_TYPE: &str = "controller";
/// The dedicated controller's task name.
pub const CONTROLLER_TASK: &str = "controller";
/// A dedicated controller's node id is this plus its pod index (brokers'
/// ids are their pod indices, so the two never meet).
pub const CONTROLLER_ID_BASE: u32 = 3000;
/// The client (and inter-broker) listener's port name.
pub const CLIENT_PORT: &str = "client";
/// The controller listener's port name.
pub const CONTROLLER_PORT: &str = "controller";
/// The volume holding the log dirs (and the metadata log).
pub const DATA_VOLUME: &str = "data";
/// A dedicated controller's volume, holding the metadata log.
pub const METADATA_VOLUME: &str = "metadata";
/// The log dir under the data volume.
pub const LOG_DIR: &str = "kafka";

/// Env: the cluster id, generated once and kept in the spec.
pub const ENV_CLUSTER_ID: &str = "KAFKA_CLUSTER_ID";
/// Env: how many brokers the service runs (sets replication defaults).
pub const ENV_BROKERS: &str = "KAFKA_BROKERS";
/// Env: the JVM heap in MiB.
pub const ENV_HEAP_MB: &str = "KAFKA_HEAP_MB";
/// Env: extra `server.properties` keys, a JSON object of strings.
pub const ENV_BROKER_CONFIG: &str = "KAFKA_BROKER_CONFIG";
/// Env: `process.roles` of the pod's node ([`NodeRole`]); combined when unset.
pub const ENV_PROCESS_ROLES: &str = "KAFKA_PROCESS_ROLES";

/// What a node of the service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Broker and controller in one process (`kafka-N` without dedicated controllers).
    Combined,
    /// A broker only (`kafka-N` beside dedicated controllers).
    Broker,
    /// A dedicated controller (`controller-N`).
    Controller,
}

impl NodeRole {
    /// `process.roles`, as [`ENV_PROCESS_ROLES`] carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Combined => "broker,controller",
            NodeRole::Broker => "broker",
            NodeRole::Controller => "controller",
        }
    }

    /// The role named by `process.roles` (in either order).
    pub fn parse(s: &str) -> Option<NodeRole> {
        let mut roles: Vec<&str> = s.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
        roles.sort_unstable();
        match roles.as_slice() {
            ["broker", "controller"] => Some(NodeRole::Combined),
            ["broker"] => Some(NodeRole::Broker),
            ["controller"] => Some(NodeRole::Controller),
            _ => None,
        }
    }

    /// Whether the node is (or becomes) a voter of the controller quorum.
    pub fn is_controller(self) -> bool {
        self != NodeRole::Broker
    }
}

/// The Kafka node id of pod `index` of pod type `pod_type`: the index for
/// a broker, [`CONTROLLER_ID_BASE`] + the index for a dedicated controller.
pub fn node_id_of(pod_type: &str, index: u32) -> u32 {
    if pod_type == CONTROLLER_POD_TYPE {
        CONTROLLER_ID_BASE + index
    } else {
        index
    }
}

/// The pod that runs Kafka node `id`, among `pods` (`SMACK_PODS`).
pub fn pod_of_node(pods: &[PodAddress], id: u32) -> Option<&PodAddress> {
    pods.iter().find(|p| {
        (p.pod_type == POD_TYPE || p.pod_type == CONTROLLER_POD_TYPE) && node_id_of(&p.pod_type, p.index) == id
    })
}

/// What a Kafka service looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaServiceOptions {
    /// The service name (`kafka`).
    pub name: String,
    pub brokers: u32,
    pub cpus: f64,
    /// Memory of each broker pod in MiB; the heap is half of it.
    pub mem_mb: u64,
    /// Size of each broker's ROOT volume in MiB.
    pub disk_mb: u64,
    /// Generated once by the caller ([`kafka::kafka_random_cluster_id`]) and
    /// kept in the spec: a changed id would orphan every volume.
    pub cluster_id: String,
    /// Extra placement rules, one YAML flow item each (`unique: hostname`);
    /// they apply to the controllers too.
    pub placement: Vec<String>,
    /// Extra `server.properties` keys of the brokers (they win over the template's).
    pub broker_config: BTreeMap<String, String>,
    /// Extra env of the tasks and hooks (e.g. `SMACK_CACHE_DIR`,
    /// `JAVA_HOME`, `KAFKA_HOME`): agents give tasks only `PATH` of their own.
    pub env: BTreeMap<String, String>,
    /// Dedicated KRaft controllers (pods `controller-N`, deployed before
    /// the brokers); 0 (the default, for small clusters): every broker is
    /// a controller too. Use an odd count, 3 in practice: a quorum of
    /// 2n+1 outlives n lost controllers.
    pub controllers: u32,
    pub controller_cpus: f64,
    /// Memory of each controller pod in MiB; the heap is half of it.
    pub controller_mem_mb: u64,
    /// Size of each controller's metadata volume in MiB.
    pub controller_disk_mb: u64,
    /// Extra `server.properties` keys of the dedicated controllers.
    pub controller_config: BTreeMap<String, String>,
}

impl KafkaServiceOptions {
    /// `brokers` brokers of 1 cpu, 1 GiB (512 MiB heap) and a 2 GiB volume,
    /// one per host, spread over zones, each a controller too, with a
    /// fresh cluster id. Dedicated controllers, when asked
    /// ([`KafkaServiceOptions::with_controllers`]), get half a cpu, 768 MiB
    /// and a 512 MiB volume each.
    pub fn new(brokers: u32) -> Self {
        KafkaServiceOptions {
            name: "kafka".into(),
            brokers,
            cpus: 1.0,
            mem_mb: 1024,
            disk_mb: 2048,
            cluster_id: kafka::kafka_random_cluster_id(),
            placement: vec!["unique: hostname".into()],
            broker_config: BTreeMap::new(),
            env: BTreeMap::new(),
            controllers: 0,
            controller_cpus: 0.5,
            controller_mem_mb: 768,
            controller_disk_mb: 512,
            controller_config: BTreeMap::new(),
        }
    }

    /// The same options with `n` dedicated controllers (0: combined).
    pub fn with_controllers(mut self, n: u32) -> Self {
        self.controllers = n;
        self
    }

    /// Whether the controllers are pods of their own.
    pub fn dedicated(&self) -> bool {
        self.controllers > 0
    }
}

/// A YAML scalar for any string (JSON's string syntax is YAML's double-quoted one).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A node task's env: the service's own, the cluster id, the broker count,
/// the heap for `mem_mb`, the node's roles (unset: broker and controller)
/// and its extra server.properties.
fn node_env(
    y: &mut String,
    o: &KafkaServiceOptions,
    mem_mb: u64,
    role: Option<NodeRole>,
    config: &BTreeMap<String, String>,
) {
    let mut env = o.env.clone();
    env.insert(ENV_CLUSTER_ID.into(), o.cluster_id.clone());
    env.insert(ENV_BROKERS.into(), o.brokers.to_string());
    env.insert(ENV_HEAP_MB.into(), heap_mb_for(mem_mb).to_string());
    if let Some(role) = role {
        env.insert(ENV_PROCESS_ROLES.into(), role.as_str().into());
    }
    if !config.is_empty() {
        env.insert(ENV_BROKER_CONFIG.into(), serde_json::to_string(config).unwrap_or_default());
    }
    env_lines(y, "          ", &env);
}

/// The service spec (YAML) of a Kafka cluster; parse it with
/// `ServiceSpec::from_yaml`. Placement: the options' rules, plus
/// `group-by: zone` unless a rule already names the zone. With dedicated
/// controllers, pod type `controller` comes first, so the deploy plan
/// (one serial phase per pod type, in order) starts the quorum before any
/// broker, and an update rolls the controllers before the brokers.
pub fn kafka_service_yaml(o: &KafkaServiceOptions) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by smack: Apache Kafka {} (KRaft, {}).",
        crate::artifacts::KAFKA_VERSION,
        if o.dedicated() { "dedicated controllers" } else { "combined brokers" }
    );
    let _ = writeln!(y, "name: {}", yaml_str(&o.name));
    let _ = writeln!(y, "pods:");
    if o.dedicated() {
        controller_pod(&mut y, o);
    }
    broker_pod(&mut y, o);
    y
}

/// The placement rules of either pod type.
fn placement(y: &mut String, o: &KafkaServiceOptions) {
    let mut rules: Vec<String> = o.placement.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
    if !rules.iter().any(|r| r.contains("zone")) {
        rules.push("group-by: zone".into());
    }
    let _ = writeln!(y, "    placement:");
    for r in &rules {
        let _ = writeln!(y, "      - {r}");
    }
}

fn env_lines(y: &mut String, indent: &str, env: &BTreeMap<String, String>) {
    for (k, v) in env {
        let _ = writeln!(y, "{indent}{}: {}", yaml_str(k), yaml_str(v));
    }
}

/// The `update-order` hook of the pod type whose pods are the controllers:
/// the active controller restarts last.
fn update_order_hook(y: &mut String, o: &KafkaServiceOptions) {
    let _ = writeln!(y, "      update-order:");
    let _ = writeln!(y, "        cmd: {}", yaml_str("exec \"$SMACK_BIN\" kafka update-order"));
    if !o.env.is_empty() {
        let _ = writeln!(y, "        env:");
        env_lines(y, "          ", &o.env);
    }
}

fn controller_pod(y: &mut String, o: &KafkaServiceOptions) {
    let _ = writeln!(y, "  {CONTROLLER_POD_TYPE}:");
    let _ = writeln!(y, "    count: {}", o.controllers);
    let _ = writeln!(y, "    resources:");
    let _ = writeln!(y, "      cpus: {}", o.controller_cpus);
    let _ = writeln!(y, "      mem: {}", o.controller_mem_mb);
    let _ = writeln!(y, "      ports:");
    let _ = writeln!(y, "        {CONTROLLER_PORT}: 0");
    let _ = writeln!(y, "    volumes:");
    let _ = writeln!(y, "      - path: {METADATA_VOLUME}");
    let _ = writeln!(y, "        type: ROOT");
    let _ = writeln!(y, "        size: {}", o.controller_disk_mb);
    placement(y, o);
    let _ = writeln!(y, "    hooks:");
    update_order_hook(y, o);
    let _ = writeln!(y, "    tasks:");
    let _ = writeln!(y, "      {CONTROLLER_TASK}:");
    let _ = writeln!(y, "        cmd: {}", yaml_str("exec \"$SMACK_BIN\" catalog kafka-broker"));
    let _ = writeln!(y, "        goal: RUNNING");
    let _ = writeln!(y, "        env:");
    node_env(y, o, o.controller_mem_mb, Some(NodeRole::Controller), &o.controller_config);
    let _ = writeln!(y, "        kill-grace-period: 60s");
    let _ = writeln!(y, "        readiness-check:");
    let _ = writeln!(y, "          cmd: {}", yaml_str("\"$SMACK_BIN\" kafka ready --controller --join-quorum"));
    let _ = writeln!(y, "          interval: 2s");
    let _ = writeln!(y, "          timeout: 30s");
}

fn broker_pod(y: &mut String, o: &KafkaServiceOptions) {
    let role = if o.dedicated() { NodeRole::Broker } else { NodeRole::Combined };
    let _ = writeln!(y, "  {POD_TYPE}:");
    let _ = writeln!(y, "    count: {}", o.brokers);
    let _ = writeln!(y, "    allow-decommission: true");
    let _ = writeln!(y, "    resources:");
    let _ = writeln!(y, "      cpus: {}", o.cpus);
    let _ = writeln!(y, "      mem: {}", o.mem_mb);
    let _ = writeln!(y, "      ports:");
    let _ = writeln!(y, "        {CLIENT_PORT}: 0");
    if role.is_controller() {
        let _ = writeln!(y, "        {CONTROLLER_PORT}: 0");
    }
    let _ = writeln!(y, "    volumes:");
    let _ = writeln!(y, "      - path: {DATA_VOLUME}");
    let _ = writeln!(y, "        type: ROOT");
    let _ = writeln!(y, "        size: {}", o.disk_mb);
    placement(y, o);
    let _ = writeln!(y, "    hooks:");
    let _ = writeln!(y, "      decommission:");
    let _ = writeln!(
        y,
        "        cmd: {}",
        yaml_str(&format!(
            "exec \"$SMACK_BIN\" kafka drain --broker $POD_INSTANCE_INDEX --bootstrap $HOST:${}",
            port_env(CLIENT_PORT)
        ))
    );
    let _ = writeln!(y, "        cpus: 0.1");
    let _ = writeln!(y, "        mem: 256");
    if !o.env.is_empty() {
        let _ = writeln!(y, "        env:");
        env_lines(y, "          ", &o.env);
    }
    if role.is_controller() {
        update_order_hook(y, o);
    }
    let _ = writeln!(y, "    tasks:");
    let _ = writeln!(y, "      {TASK}:");
    let _ = writeln!(y, "        cmd: {}", yaml_str("exec \"$SMACK_BIN\" catalog kafka-broker"));
    let _ = writeln!(y, "        goal: RUNNING");
    let _ = writeln!(y, "        env:");
    node_env(y, o, o.mem_mb, o.dedicated().then_some(role), &o.broker_config);
    // SIGTERM runs a controlled shutdown (leadership moved away first).
    let _ = writeln!(y, "        kill-grace-period: 120s");
    let _ = writeln!(y, "        readiness-check:");
    let join = if role.is_controller() { " --join-quorum" } else { "" };
    let _ = writeln!(
        y,
        "          cmd: {}",
        yaml_str(&format!(
            "\"$SMACK_BIN\" kafka ready --broker $POD_INSTANCE_INDEX --bootstrap $HOST:${}{join}",
            port_env(CLIENT_PORT)
        ))
    );
    let _ = writeln!(y, "          interval: 2s");
    let _ = writeln!(y, "          timeout: 30s");
}

fn port_env(name: &str) -> String {
    format!("PORT_{}", smack_operator::scheduler::spec::env_suffix(name))
}

/// What the broker task reads from its env.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerEnv {
    /// `KAFKA_PROCESS_ROLES` (combined when unset).
    pub role: NodeRole,
    /// The pod type, from `POD_INSTANCE` (`kafka` when unset).
    pub pod_type: String,
    /// `POD_INSTANCE_INDEX`.
    pub index: u32,
    /// The node id, for life: the index, or [`CONTROLLER_ID_BASE`] + the
    /// index for a dedicated controller.
    pub node_id: u32,
    /// `HOST`: the agent's address, bound and advertised.
    pub host: String,
    /// `ZONE`: `broker.rack`.
    pub zone: Option<String>,
    /// 0 on a dedicated controller.
    pub client_port: u16,
    /// 0 on a broker beside dedicated controllers.
    pub controller_port: u16,
    /// `VOLUME_DATA` (`VOLUME_METADATA` on a dedicated controller): the
    /// persistent volume's absolute path.
    pub volume: PathBuf,
    pub cluster_id: String,
    /// The service's broker count (1 when not given).
    pub brokers: u32,
    pub heap_mb: u32,
    /// The other controllers placed so far (`SMACK_PODS`: the other
    /// `kafka` pods when combined, the `controller` pods otherwise).
    pub peers: Vec<PodAddress>,
    pub extra: BTreeMap<String, String>,
}

impl BrokerEnv {
    /// Decodes the task's env (`get` looks a variable up); every missing or
    /// malformed variable is named in the error.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<BrokerEnv> {
        let mut problems = Vec::new();
        let role = match get(ENV_PROCESS_ROLES).filter(|v| !v.trim().is_empty()) {
            None => NodeRole::Combined,
            Some(v) => NodeRole::parse(&v).unwrap_or_else(|| {
                problems
                    .push(format!("{ENV_PROCESS_ROLES}={v:?} is not `broker,controller`, `broker` or `controller`"));
                NodeRole::Combined
            }),
        };
        let mut need = |name: &str| match get(name).filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => {
                problems.push(format!("{name} is not set"));
                String::new()
            }
        };
        let host = need("HOST");
        let client = if role == NodeRole::Controller { String::new() } else { need(&port_env(CLIENT_PORT)) };
        let controller = if role.is_controller() { need(&port_env(CONTROLLER_PORT)) } else { String::new() };
        let volume_name = if role == NodeRole::Controller { METADATA_VOLUME } else { DATA_VOLUME };
        let volume = need(&format!("VOLUME_{}", smack_operator::scheduler::spec::env_suffix(volume_name)));
        let index = need("POD_INSTANCE_INDEX");
        let cluster_id = need(ENV_CLUSTER_ID);
        let mut num = |name: &str, v: &str, what: &str| -> u64 {
            if v.is_empty() {
                return 0;
            }
            v.trim().parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!("{name}={v:?} is not {what}"));
                0
            })
        };
        let client_port = num(&port_env(CLIENT_PORT), &client, "a port number") as u16;
        let controller_port = num(&port_env(CONTROLLER_PORT), &controller, "a port number") as u16;
        let index = num("POD_INSTANCE_INDEX", &index, "a pod index") as u32;
        let brokers = get(ENV_BROKERS).map(|v| num(ENV_BROKERS, &v, "a broker count")).unwrap_or(1).max(1) as u32;
        let heap_mb = get(ENV_HEAP_MB).map(|v| num(ENV_HEAP_MB, &v, "a heap size in MiB")).unwrap_or(512) as u32;
        if !cluster_id.is_empty() && !kafka::is_valid_cluster_id(&cluster_id) {
            problems.push(format!(
                "{ENV_CLUSTER_ID}={cluster_id:?} is not a Kafka cluster id (22 URL-safe base64 characters)"
            ));
        }
        let volume = PathBuf::from(volume);
        if !volume.as_os_str().is_empty() && !volume.is_absolute() {
            problems.push(format!("the data volume {} is not an absolute path", volume.display()));
        }
        let mut peers: Vec<PodAddress> = match get(PODS_ENV).filter(|v| !v.trim().is_empty()) {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                problems.push(format!("{PODS_ENV} is not a JSON list of pods: {e}"));
                Vec::new()
            }),
        };
        let default_type = if role == NodeRole::Controller { CONTROLLER_POD_TYPE } else { POD_TYPE };
        let pod_type = get("POD_INSTANCE")
            .and_then(|p| p.rsplit_once('-').map(|(t, _)| t.to_string()))
            .unwrap_or_else(|| default_type.to_string());
        let controllers_type = if role == NodeRole::Combined { pod_type.clone() } else { CONTROLLER_POD_TYPE.into() };
        peers.retain(|p| {
            p.pod_type == controllers_type
                && !(p.pod_type == pod_type && p.index == index)
                && p.ports.contains_key(CONTROLLER_PORT)
        });
        let extra: BTreeMap<String, String> = match get(ENV_BROKER_CONFIG).filter(|v| !v.trim().is_empty()) {
            None => BTreeMap::new(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                problems.push(format!("{ENV_BROKER_CONFIG} is not a JSON object of strings: {e}"));
                BTreeMap::new()
            }),
        };
        if !problems.is_empty() {
            return Err(Error::Other(format!("kafka {} task env: {}", role.as_str(), problems.join("; "))));
        }
        Ok(BrokerEnv {
            role,
            node_id: node_id_of(&pod_type, index),
            pod_type,
            index,
            host,
            zone: get("ZONE").filter(|z| !z.trim().is_empty()),
            client_port,
            controller_port,
            volume,
            cluster_id,
            brokers,
            heap_mb,
            peers,
            extra,
        })
    }

    /// The log dir on the volume.
    pub fn log_dir(&self) -> PathBuf {
        self.volume.join(LOG_DIR)
    }

    /// The controllers known to this node: the peers, and itself when it is one.
    pub fn voters(&self) -> Vec<Voter> {
        let mut voters: Vec<Voter> = self
            .peers
            .iter()
            .filter_map(|p| {
                Some(Voter::new(node_id_of(&p.pod_type, p.index), p.host.clone(), *p.ports.get(CONTROLLER_PORT)?))
            })
            .collect();
        if self.role.is_controller() {
            voters.push(Voter::new(self.node_id, self.host.clone(), self.controller_port));
        }
        voters.sort_by_key(|v| v.id);
        voters
    }

    /// `host:port` of every controller known to this node, for a client's
    /// `bootstrap.controllers`.
    pub fn controller_endpoints(&self) -> Vec<String> {
        self.voters().iter().map(|v| format!("{}:{}", v.host, v.port)).collect()
    }

    /// The node's config: by its role, a dynamic quorum bootstrapped from
    /// every controller placed so far, without auto-join (smack adds a
    /// controller to the voter set: `smack kafka ready --join-quorum`, and
    /// takes a drained broker out for good); replication of new and
    /// internal topics `min(3, brokers)`, `min.insync.replicas` 2 from
    /// three replicas up.
    pub fn node_config(&self) -> KafkaNodeConfig {
        let mut c = KafkaNodeConfig::new(
            self.node_id,
            self.host.clone(),
            self.client_port,
            self.controller_port,
            self.log_dir(),
            self.voters(),
        );
        c.dynamic_quorum = true;
        c.auto_join = false;
        c.controller_only = self.role == NodeRole::Controller;
        c.rack = self.zone.clone();
        let rf = self.brokers.clamp(1, 3) as u16;
        c.internal_replication_factor = rf;
        c.default_replication_factor = rf;
        c.min_insync_replicas = if rf >= 3 { 2 } else { 1 };
        c.extra = self.extra.clone();
        c
    }

    /// How a fresh volume is formatted: a broker beside dedicated
    /// controllers plainly; the first controller of the cluster (no other
    /// controller placed) starts the quorum; any other joins it.
    pub fn format_mode(&self) -> FormatMode {
        if !self.role.is_controller() {
            FormatMode::Broker
        } else if self.peers.is_empty() {
            FormatMode::Standalone
        } else {
            FormatMode::Join
        }
    }
}

/// How `StorageTool format` is run on a fresh volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatMode {
    /// `--standalone`: this controller is the quorum of one.
    Standalone,
    /// `--no-initial-controllers`: an observer until added to the quorum.
    Join,
    /// A broker only: no quorum flag.
    Broker,
}

impl FormatMode {
    /// The `StorageTool format` flag, if any.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            FormatMode::Standalone => Some("--standalone"),
            FormatMode::Join => Some("--no-initial-controllers"),
            FormatMode::Broker => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_operator::scheduler::spec::{CheckKind, PlacementRule, ServiceSpec, VolumeType};

    #[test]
    fn the_spec_parses_and_has_what_a_broker_needs() {
        let mut o = KafkaServiceOptions::new(3);
        o.broker_config.insert("num.io.threads".into(), "4".into());
        o.env.insert("SMACK_CACHE_DIR".into(), "/c a/\"x\"".into());
        let yaml = kafka_service_yaml(&o);
        let spec = ServiceSpec::from_yaml(&yaml, "kafka.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(spec.name, "kafka");
        let pod = spec.pod(POD_TYPE).unwrap();
        assert_eq!(pod.count, 3);
        assert!(pod.allow_decommission);
        assert!(pod.port(CLIENT_PORT).unwrap().is_dynamic());
        assert!(pod.port(CONTROLLER_PORT).unwrap().is_dynamic());
        assert_eq!(pod.volumes.len(), 1);
        assert_eq!(
            (pod.volumes[0].path.as_str(), pod.volumes[0].kind, pod.volumes[0].size),
            ("data", VolumeType::Root, 2048)
        );
        let rules: Vec<&PlacementRule> = pod.rules().collect();
        assert!(rules.contains(&&PlacementRule::Unique { attribute: "hostname".into() }), "{rules:?}");
        assert!(pod.is_zone_aware(), "{rules:?}");
        let t = pod.task(TASK).unwrap();
        assert_eq!(t.cmd, "exec \"$SMACK_BIN\" catalog kafka-broker");
        assert_eq!(t.env.get(ENV_CLUSTER_ID), Some(&o.cluster_id));
        assert_eq!(t.env.get(ENV_BROKERS).map(String::as_str), Some("3"));
        assert_eq!(t.env.get(ENV_HEAP_MB).map(String::as_str), Some("512"));
        assert_eq!(t.env.get("SMACK_CACHE_DIR").map(String::as_str), Some("/c a/\"x\""));
        let cfg: BTreeMap<String, String> = serde_json::from_str(&t.env[ENV_BROKER_CONFIG]).unwrap();
        assert_eq!(cfg.get("num.io.threads").map(String::as_str), Some("4"));
        assert!(t.kill_grace_period_ms >= 60_000);
        match &t.readiness_check.as_ref().unwrap().kind {
            CheckKind::Cmd(c) => {
                assert!(c.contains("kafka ready --broker $POD_INSTANCE_INDEX --bootstrap $HOST:$PORT_CLIENT"), "{c}")
            }
            other => panic!("{other:?}"),
        }
        let hook = pod.hooks.decommission.as_ref().unwrap();
        assert!(hook.cmd.contains("kafka drain --broker $POD_INSTANCE_INDEX"), "{}", hook.cmd);
        assert_eq!(hook.env.get("SMACK_CACHE_DIR").map(String::as_str), Some("/c a/\"x\""));
    }

    #[test]
    fn a_zone_rule_of_the_caller_replaces_the_default_spread() {
        let mut o = KafkaServiceOptions::new(6);
        o.placement = vec!["max-per: {zone: 2}".into()];
        o.name = "events".into();
        let spec = ServiceSpec::from_yaml(&kafka_service_yaml(&o), "k.yaml").unwrap();
        assert_eq!(spec.name, "events");
        let rules: Vec<&PlacementRule> = spec.pod(POD_TYPE).unwrap().rules().collect();
        assert_eq!(rules, vec![&PlacementRule::MaxPer { attribute: "zone".into(), max: 2 }]);
        assert!(!spec.pod(POD_TYPE).unwrap().tasks[0].env.contains_key(ENV_BROKER_CONFIG));
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    fn broker_env(index: &str, pods: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOST", "127.0.1.2".into()),
            ("ZONE", "zone-b".into()),
            ("PORT_CLIENT", "31000".into()),
            ("PORT_CONTROLLER", "31001".into()),
            ("VOLUME_DATA", "/agents/a2/volumes/v1".into()),
            ("POD_INSTANCE", format!("kafka-{index}")),
            ("POD_INSTANCE_INDEX", index.into()),
            (ENV_CLUSTER_ID, "MkU3OEVBNTcwNTJENDM2Qg".into()),
            (ENV_BROKERS, "3".into()),
            (PODS_ENV, pods.into()),
            (ENV_BROKER_CONFIG, r#"{"num.io.threads":"4"}"#.into()),
        ]
    }

    fn decode(pairs: &[(&'static str, String)]) -> Result<BrokerEnv> {
        let v: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        BrokerEnv::from_env(env_of(&v))
    }

    #[test]
    fn the_first_broker_starts_the_quorum_and_later_ones_join_it() {
        let first = decode(&broker_env(
            "0",
            r#"[{"name":"kafka-0","pod_type":"kafka","index":0,"host":"127.0.1.2","zone":"zone-b","ports":{"client":31000,"controller":31001}}]"#,
        ))
        .unwrap();
        assert_eq!(first.format_mode(), FormatMode::Standalone);
        let c = first.node_config();
        c.validate().unwrap();
        let p = kafka::kafka_server_properties(&c);
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.1.2:31001\n"), "{p}");
        assert!(!p.contains("controller.quorum.auto.join.enable"), "smack adds voters: {p}");
        assert!(!p.contains("controller.quorum.voters"), "{p}");
        assert!(p.contains("process.roles=broker,controller\n"));
        assert!(p.contains("broker.rack=zone-b\n"));
        assert!(p.contains("log.dirs=/agents/a2/volumes/v1/kafka\n"));
        assert!(p.contains("offsets.topic.replication.factor=3\n") && p.contains("min.insync.replicas=2\n"));
        assert!(p.contains("num.io.threads=4\n"));

        let pods = r#"[{"name":"kafka-0","pod_type":"kafka","index":0,"host":"127.0.1.1","zone":"zone-a","ports":{"client":31000,"controller":31001}},
            {"name":"kafka-1","pod_type":"kafka","index":1,"host":"127.0.1.2","zone":"zone-b","ports":{"client":31000,"controller":31001}},
            {"name":"cassandra-0","pod_type":"cassandra","index":0,"host":"127.0.1.9","ports":{"native":9042}}]"#;
        let second = decode(&broker_env("1", pods)).unwrap();
        assert_eq!(second.format_mode(), FormatMode::Join);
        assert_eq!(second.peers.len(), 1, "itself and other pod types left out");
        let p = kafka::kafka_server_properties(&second.node_config());
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.1.1:31001,127.0.1.2:31001\n"), "{p}");
        assert!(p.contains("node.id=1\n"));
        assert_eq!(FormatMode::Join.flag(), Some("--no-initial-controllers"));
        assert_eq!(second.node_id, 1);
        assert_eq!(second.controller_endpoints(), ["127.0.1.1:31001", "127.0.1.2:31001"]);
    }

    fn dedicated() -> KafkaServiceOptions {
        let mut o = KafkaServiceOptions::new(3).with_controllers(3);
        o.controller_config.insert("num.io.threads".into(), "3".into());
        o.broker_config.insert("num.io.threads".into(), "4".into());
        o.env.insert("SMACK_CACHE_DIR".into(), "/c".into());
        o
    }

    #[test]
    fn dedicated_controllers_are_a_pod_type_deployed_before_the_brokers() {
        let o = dedicated();
        let yaml = kafka_service_yaml(&o);
        let spec = ServiceSpec::from_yaml(&yaml, "kafka.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let types: Vec<&str> = spec.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(types, [CONTROLLER_POD_TYPE, POD_TYPE], "controllers first");
        let phases: Vec<String> = spec.deploy_plan().phases.iter().map(|p| p.pod.clone()).collect();
        assert_eq!(phases, [CONTROLLER_POD_TYPE, POD_TYPE], "the deploy plan starts the quorum first");
        let c = spec.pod(CONTROLLER_POD_TYPE).unwrap();
        assert_eq!(c.count, 3);
        assert!(!c.allow_decommission, "the quorum is not scaled by count");
        assert!(c.port(CONTROLLER_PORT).unwrap().is_dynamic());
        assert!(c.port(CLIENT_PORT).is_none());
        assert_eq!((c.volumes[0].path.as_str(), c.volumes[0].size), (METADATA_VOLUME, 512));
        assert!(c.is_zone_aware());
        assert!(c.rules().any(|r| *r == PlacementRule::Unique { attribute: "hostname".into() }));
        assert!(c.hooks.decommission.is_none());
        let order = c.hooks.update_order.as_ref().expect("the controllers' update-order hook");
        assert!(order.cmd.contains("kafka update-order"), "{}", order.cmd);
        assert_eq!(order.env.get("SMACK_CACHE_DIR").map(String::as_str), Some("/c"));
        let t = c.task(CONTROLLER_TASK).unwrap();
        assert_eq!(t.env.get(ENV_PROCESS_ROLES).map(String::as_str), Some("controller"));
        assert_eq!(t.env.get(ENV_HEAP_MB).map(String::as_str), Some("384"));
        let cfg: BTreeMap<String, String> = serde_json::from_str(&t.env[ENV_BROKER_CONFIG]).unwrap();
        assert_eq!(cfg["num.io.threads"], "3");
        match &t.readiness_check.as_ref().unwrap().kind {
            CheckKind::Cmd(c) => assert!(c.contains("kafka ready --controller --join-quorum"), "{c}"),
            other => panic!("{other:?}"),
        }
        let b = spec.pod(POD_TYPE).unwrap();
        assert!(b.port(CONTROLLER_PORT).is_none(), "brokers only");
        assert!(b.hooks.update_order.is_none(), "brokers are not controllers");
        assert!(b.hooks.decommission.is_some());
        let t = b.task(TASK).unwrap();
        assert_eq!(t.env.get(ENV_PROCESS_ROLES).map(String::as_str), Some("broker"));
        let cfg: BTreeMap<String, String> = serde_json::from_str(&t.env[ENV_BROKER_CONFIG]).unwrap();
        assert_eq!(cfg["num.io.threads"], "4");
        match &t.readiness_check.as_ref().unwrap().kind {
            CheckKind::Cmd(c) => assert!(!c.contains("--join-quorum"), "{c}"),
            other => panic!("{other:?}"),
        }
        // Scaling the brokers leaves the controllers alone.
        let up = with_pod_count(&yaml, POD_TYPE, 5).unwrap();
        assert_eq!((pod_count(&up, POD_TYPE).unwrap(), pod_count(&up, CONTROLLER_POD_TYPE).unwrap()), (5, 3));
        let down = ServiceSpec::from_yaml(&with_pod_count(&yaml, POD_TYPE, 2).unwrap(), "k").unwrap();
        assert!(smack_operator::scheduler::spec::validate_update(&spec, &down).is_empty());
        assert_eq!(smack_operator::scheduler::spec::changed_pods(&spec, &down), Vec::<String>::new());
    }

    #[test]
    fn combined_brokers_order_their_updates_and_join_the_quorum() {
        let spec = ServiceSpec::from_yaml(&kafka_service_yaml(&KafkaServiceOptions::new(3)), "k").unwrap();
        assert_eq!(spec.pods.len(), 1);
        let b = spec.pod(POD_TYPE).unwrap();
        assert!(b.hooks.update_order.as_ref().unwrap().cmd.contains("kafka update-order"));
        assert!(!b.tasks[0].env.contains_key(ENV_PROCESS_ROLES), "combined is the default role");
        match &b.tasks[0].readiness_check.as_ref().unwrap().kind {
            CheckKind::Cmd(c) => assert!(c.ends_with("--join-quorum"), "{c}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_controller_change_rolls_only_the_controllers() {
        let o = dedicated();
        let before = ServiceSpec::from_yaml(&kafka_service_yaml(&o), "k").unwrap();
        let mut changed = o.clone();
        changed.controller_config.insert("num.io.threads".into(), "4".into());
        let after = ServiceSpec::from_yaml(&kafka_service_yaml(&changed), "k").unwrap();
        assert_eq!(smack_operator::scheduler::spec::changed_pods(&before, &after), [CONTROLLER_POD_TYPE]);
        let mut changed = o;
        changed.broker_config.insert("num.io.threads".into(), "5".into());
        let after = ServiceSpec::from_yaml(&kafka_service_yaml(&changed), "k").unwrap();
        assert_eq!(smack_operator::scheduler::spec::changed_pods(&before, &after), [POD_TYPE]);
    }

    const PLACED: &str = r#"[
        {"name":"controller-0","pod_type":"controller","index":0,"host":"127.0.1.1","zone":"zone-a","ports":{"controller":31010}},
        {"name":"controller-1","pod_type":"controller","index":1,"host":"127.0.1.2","zone":"zone-b","ports":{"controller":31011}},
        {"name":"kafka-0","pod_type":"kafka","index":0,"host":"127.0.1.3","zone":"zone-c","ports":{"client":31000}}]"#;

    fn dedicated_env(pod: &str, index: &str, role: &str) -> Vec<(&'static str, String)> {
        let mut e = broker_env(index, PLACED);
        e.retain(|(k, _)| !["POD_INSTANCE", "VOLUME_DATA", "PORT_CONTROLLER", "PORT_CLIENT"].contains(k));
        e.push(("POD_INSTANCE", format!("{pod}-{index}")));
        e.push((ENV_PROCESS_ROLES, role.into()));
        if role == "controller" {
            e.push(("VOLUME_METADATA", "/agents/a2/volumes/m1".into()));
            e.push(("PORT_CONTROLLER", "31011".into()));
        } else {
            e.push(("VOLUME_DATA", "/agents/a3/volumes/d1".into()));
            e.push(("PORT_CLIENT", "31000".into()));
        }
        e
    }

    #[test]
    fn a_dedicated_controller_joins_the_controllers_placed_before_it() {
        let c = decode(&dedicated_env("controller", "1", "controller")).unwrap();
        assert_eq!((c.role, c.node_id, c.client_port), (NodeRole::Controller, 3001, 0));
        assert_eq!(c.log_dir(), PathBuf::from("/agents/a2/volumes/m1/kafka"));
        assert_eq!(c.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["controller-0"]);
        assert_eq!(c.format_mode(), FormatMode::Join);
        let cfg = c.node_config();
        cfg.validate().unwrap();
        let p = kafka::kafka_server_properties(&cfg);
        assert!(p.contains("process.roles=controller\n"), "{p}");
        assert!(p.contains("node.id=3001\n"), "{p}");
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.1.1:31010,127.0.1.2:31011\n"), "{p}");
        assert!(p.contains("listeners=CONTROLLER://127.0.1.2:31011\n"), "{p}");
        assert!(p.contains("log.dirs=/agents/a2/volumes/m1/kafka\n"), "{p}");
        assert!(p.contains("num.io.threads=4\n"), "the extra keys apply: {p}");
        // The first controller starts the quorum.
        let first = decode(
            &dedicated_env("controller", "0", "controller")
                .into_iter()
                .map(|(k, v)| if k == PODS_ENV { (k, "[]".to_string()) } else { (k, v) })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!((first.node_id, first.format_mode()), (3000, FormatMode::Standalone));
    }

    #[test]
    fn a_broker_beside_dedicated_controllers_is_a_broker_only() {
        let b = decode(&dedicated_env("kafka", "0", "broker")).unwrap();
        assert_eq!((b.role, b.node_id, b.controller_port), (NodeRole::Broker, 0, 0));
        assert_eq!(b.format_mode(), FormatMode::Broker);
        assert_eq!(FormatMode::Broker.flag(), None);
        assert_eq!(b.controller_endpoints(), ["127.0.1.1:31010", "127.0.1.2:31011"]);
        let cfg = b.node_config();
        cfg.validate().unwrap();
        let p = kafka::kafka_server_properties(&cfg);
        assert!(p.contains("process.roles=broker\n"), "{p}");
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.1.1:31010,127.0.1.2:31011\n"), "{p}");
        assert!(p.contains("listeners=PLAINTEXT://127.0.1.2:31000\n"), "{p}");
        assert!(p.contains("broker.rack=zone-b\n") && p.contains("log.dirs=/agents/a3/volumes/d1/kafka\n"), "{p}");
        // Without a controller placed, the config is refused with the reason.
        let lone = decode(
            &dedicated_env("kafka", "0", "broker")
                .into_iter()
                .map(|(k, v)| if k == PODS_ENV { (k, "[]".to_string()) } else { (k, v) })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(lone.node_config().validate().unwrap_err().to_string().contains("quorum is empty"));
    }

    #[test]
    fn roles_parse_and_node_ids_map_back_to_pods() {
        assert_eq!(NodeRole::parse("controller,broker"), Some(NodeRole::Combined));
        assert_eq!(NodeRole::parse(" broker "), Some(NodeRole::Broker));
        assert_eq!(NodeRole::parse("controller"), Some(NodeRole::Controller));
        assert_eq!(NodeRole::parse("zookeeper"), None);
        assert_eq!(NodeRole::parse(""), None);
        for r in [NodeRole::Combined, NodeRole::Broker, NodeRole::Controller] {
            assert_eq!(NodeRole::parse(r.as_str()), Some(r));
        }
        let pods: Vec<PodAddress> = serde_json::from_str(PLACED).unwrap();
        assert_eq!(pod_of_node(&pods, 3001).map(|p| p.name.as_str()), Some("controller-1"));
        assert_eq!(pod_of_node(&pods, 0).map(|p| p.name.as_str()), Some("kafka-0"));
        assert!(pod_of_node(&pods, 1).is_none());
        let mut e = dedicated_env("kafka", "0", "broker");
        e.push((ENV_PROCESS_ROLES, "zookeeper".into()));
        let err = decode(&e).unwrap_err().to_string();
        assert!(err.contains("KAFKA_PROCESS_ROLES=\"zookeeper\""), "{err}");
    }

    #[test]
    fn a_bad_env_names_every_problem() {
        let mut e = broker_env("x", "[oops");
        e.retain(|(k, _)| *k != "HOST");
        e.push((ENV_CLUSTER_ID, "short".into()));
        let err = decode(&e).unwrap_err().to_string();
        for want in
            ["HOST is not set", "POD_INSTANCE_INDEX=\"x\"", "SMACK_PODS is not a JSON list", "not a Kafka cluster id"]
        {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn one_broker_replicates_once() {
        let mut e = broker_env("0", "");
        e.retain(|(k, _)| *k != ENV_BROKERS && *k != ENV_BROKER_CONFIG);
        let b = decode(&e).unwrap();
        assert_eq!((b.brokers, b.heap_mb), (1, 512));
        let c = b.node_config();
        assert_eq!((c.internal_replication_factor, c.min_insync_replicas), (1, 1));
        c.validate().unwrap();
    }

    #[test]
    fn the_count_changes_and_nothing_else() {
        let o = KafkaServiceOptions::new(3);
        let yaml = kafka_service_yaml(&o);
        let up = with_pod_count(&yaml, POD_TYPE, 4).unwrap();
        assert_eq!(pod_count(&up, POD_TYPE).unwrap(), 4);
        let changed: Vec<(&str, &str)> = yaml.lines().zip(up.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed, vec![("    count: 3", "    count: 4")]);
        // Lowering without `allow-decommission` adds it beside the count.
        let hand = "name: k\npods:\n  kafka:\n    count: 12 # brokers\n    resources: { cpus: 1, mem: 64 }\n    tasks:\n      broker: { cmd: x }\n";
        let down = with_pod_count(hand, POD_TYPE, 3).unwrap();
        assert!(down.contains("    count: 3 # brokers\n    allow-decommission: true\n"), "{down}");
        let spec = ServiceSpec::from_yaml(&down, "k").unwrap();
        assert!(spec.pod(POD_TYPE).unwrap().allow_decommission);
        let off = hand.replace("    count: 12 # brokers\n", "    count: 2\n    allow-decommission: false\n");
        let down = with_pod_count(&off, POD_TYPE, 1).unwrap();
        assert!(down.contains("allow-decommission: true\n"), "{down}");
        // Unknown pod types and flow style are refused with the reason.
        let e = with_pod_count(&yaml, "zookeeper", 1).unwrap_err().to_string();
        assert!(e.contains("no `pods.zookeeper`"), "{e}");
        let flow = "name: k\npods:\n  kafka: { count: 2, resources: { cpus: 1, mem: 64 }, tasks: { b: { cmd: x } } }\n";
        let e = with_pod_count(flow, POD_TYPE, 3).unwrap_err().to_string();
        assert!(e.contains("block style"), "{e}");
    }
}
