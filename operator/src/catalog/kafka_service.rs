//! The Kafka catalog service: the service spec that runs a KRaft cluster as
//! pods `kafka-N` under the operator framework, and the pure half of the
//! broker task (`smack catalog kafka-broker`): its env decoded into a node
//! config, and whether its fresh volume starts the controller quorum or
//! joins it.
//!
//! Each pod runs one combined broker + controller with `node.id` = its
//! index for life, `log.dirs` on its ROOT volume `data`, listeners on the
//! agent's address and the pod's ports `client` and `controller`, and
//! `broker.rack` = the agent's zone.
//!
//! The controller quorum is dynamic (KIP-853), because pods are placed one
//! after another and broker N only knows brokers 0..=N (`SMACK_PODS`): the
//! first broker formats its fresh volume `--standalone` (the quorum of
//! one), every later one `--no-initial-controllers` with
//! `controller.quorum.bootstrap.servers` = the controllers placed so far and
//! `controller.quorum.auto.join.enable=true`, so it adds itself to the
//! voter set once it has caught up. A relaunch on a formatted volume never
//! formats again.
//!
//! Readiness is a cluster-level gate: `smack kafka ready` passes once the
//! broker is registered and no partition it leads or follows is
//! under-replicated, so the deploy and update plans (serial) roll one
//! broker at a time and never take the next one down while replicas are
//! still catching up.

use crate::catalog::kafka::{self, KafkaNodeConfig, Voter};
use crate::catalog::launch::heap_mb_for;
use crate::scheduler::service::{PodAddress, PODS_ENV};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The pod type (pods are `kafka-0`, `kafka-1`, …).
pub const POD_TYPE: &str = "kafka";
/// The broker task's name.
pub const TASK: &str = "broker";
/// The client (and inter-broker) listener's port name.
pub const CLIENT_PORT: &str = "client";
/// The controller listener's port name.
pub const CONTROLLER_PORT: &str = "controller";
/// The volume holding the log dirs (and the metadata log).
pub const DATA_VOLUME: &str = "data";
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
    /// Extra placement rules, one YAML flow item each (`unique: hostname`).
    pub placement: Vec<String>,
    /// Extra `server.properties` keys (they win over the template's).
    pub broker_config: BTreeMap<String, String>,
    /// Extra env of the broker task and its hooks (e.g. `SMACK_CACHE_DIR`,
    /// `JAVA_HOME`, `KAFKA_HOME`): agents give tasks only `PATH` of their own.
    pub env: BTreeMap<String, String>,
}

impl KafkaServiceOptions {
    /// `brokers` brokers of 1 cpu, 1 GiB (512 MiB heap) and a 2 GiB volume,
    /// one per host, spread over zones, with a fresh cluster id.
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
        }
    }
}

/// A YAML scalar for any string (JSON's string syntax is YAML's double-quoted one).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The service spec (YAML) of a Kafka cluster; parse it with
/// `ServiceSpec::from_yaml`. Placement: the options' rules, plus
/// `group-by: zone` unless a rule already names the zone.
pub fn kafka_service_yaml(o: &KafkaServiceOptions) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by smack: Apache Kafka {} (KRaft, combined brokers).",
        crate::catalog::artifacts::KAFKA_VERSION
    );
    let _ = writeln!(y, "name: {}", yaml_str(&o.name));
    let _ = writeln!(y, "pods:");
    let _ = writeln!(y, "  {POD_TYPE}:");
    let _ = writeln!(y, "    count: {}", o.brokers);
    let _ = writeln!(y, "    allow-decommission: true");
    let _ = writeln!(y, "    resources:");
    let _ = writeln!(y, "      cpus: {}", o.cpus);
    let _ = writeln!(y, "      mem: {}", o.mem_mb);
    let _ = writeln!(y, "      ports:");
    let _ = writeln!(y, "        {CLIENT_PORT}: 0");
    let _ = writeln!(y, "        {CONTROLLER_PORT}: 0");
    let _ = writeln!(y, "    volumes:");
    let _ = writeln!(y, "      - path: {DATA_VOLUME}");
    let _ = writeln!(y, "        type: ROOT");
    let _ = writeln!(y, "        size: {}", o.disk_mb);
    let mut rules: Vec<String> = o.placement.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
    if !rules.iter().any(|r| r.contains("zone")) {
        rules.push("group-by: zone".into());
    }
    let _ = writeln!(y, "    placement:");
    for r in &rules {
        let _ = writeln!(y, "      - {r}");
    }
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
        for (k, v) in &o.env {
            let _ = writeln!(y, "          {}: {}", yaml_str(k), yaml_str(v));
        }
    }
    let _ = writeln!(y, "    tasks:");
    let _ = writeln!(y, "      {TASK}:");
    let _ = writeln!(y, "        cmd: {}", yaml_str("exec \"$SMACK_BIN\" catalog kafka-broker"));
    let _ = writeln!(y, "        goal: RUNNING");
    let _ = writeln!(y, "        env:");
    let mut env = o.env.clone();
    env.insert(ENV_CLUSTER_ID.into(), o.cluster_id.clone());
    env.insert(ENV_BROKERS.into(), o.brokers.to_string());
    env.insert(ENV_HEAP_MB.into(), heap_mb_for(o.mem_mb).to_string());
    if !o.broker_config.is_empty() {
        env.insert(ENV_BROKER_CONFIG.into(), serde_json::to_string(&o.broker_config).unwrap_or_default());
    }
    for (k, v) in &env {
        let _ = writeln!(y, "          {}: {}", yaml_str(k), yaml_str(v));
    }
    // SIGTERM runs a controlled shutdown (leadership moved away first).
    let _ = writeln!(y, "        kill-grace-period: 120s");
    let _ = writeln!(y, "        readiness-check:");
    let _ = writeln!(
        y,
        "          cmd: {}",
        yaml_str(&format!(
            "\"$SMACK_BIN\" kafka ready --broker $POD_INSTANCE_INDEX --bootstrap $HOST:${}",
            port_env(CLIENT_PORT)
        ))
    );
    let _ = writeln!(y, "          interval: 2s");
    let _ = writeln!(y, "          timeout: 20s");
    y
}

/// `spec_yaml` with pod type `pod_type`'s `count` set to `count`, every
/// other byte kept (comments, quoting, order); lowering the count also sets
/// `allow-decommission: true` (the scheduler refuses a lowered count
/// without it). The pod's `count` must be written in block style on a line
/// of its own, as `kafka_service_yaml` writes it.
pub fn with_pod_count(spec_yaml: &str, pod_type: &str, count: u32) -> Result<String> {
    let bad = |what: String| Error::Other(format!("changing the count of pod type `{pod_type}`: {what}"));
    let root = marked_yaml::parse_yaml(0, spec_yaml).map_err(|e| bad(format!("the spec is not YAML: {e}")))?;
    let pod = root
        .as_mapping()
        .and_then(|m| m.get_mapping("pods"))
        .and_then(|m| m.get_mapping(pod_type))
        .ok_or_else(|| bad(format!("the spec has no `pods.{pod_type}` mapping")))?;
    let old = pod.get_scalar("count").ok_or_else(|| bad("the pod type has no `count`".into()))?;
    let old_count: u32 =
        old.as_str().trim().parse().map_err(|_| bad(format!("its count {:?} is not a number", old.as_str())))?;
    let mut lines: Vec<String> = spec_yaml.split('\n').map(String::from).collect();
    let at = old.span().start().ok_or_else(|| bad("no position for `count`".into()))?;
    let (line, col) = (at.line() - 1, at.column() - 1);
    let text = lines.get(line).cloned().ok_or_else(|| bad(format!("line {} is past the end", line + 1)))?;
    let chars: Vec<char> = text.chars().collect();
    let key_col = chars.iter().position(|c| !c.is_whitespace()).unwrap_or(0);
    if !chars[key_col..].iter().collect::<String>().starts_with("count:") {
        return Err(bad(format!(
            "`count` at line {} is not in block style (`count: N` on a line of its own)",
            line + 1
        )));
    }
    let end = (col..chars.len()).find(|i| chars[*i].is_whitespace() || chars[*i] == '#').unwrap_or(chars.len());
    let rebuilt: String = chars[..col]
        .iter()
        .chain(count.to_string().chars().collect::<Vec<_>>().iter())
        .chain(chars[end..].iter())
        .collect();
    lines[line] = rebuilt;
    if count < old_count {
        let allowed = pod.get_scalar("allow-decommission");
        match allowed {
            Some(a) if a.as_str().trim() == "true" => {}
            Some(a) => {
                let at = a.span().start().ok_or_else(|| bad("no position for `allow-decommission`".into()))?;
                let (l, c) = (at.line() - 1, at.column() - 1);
                let t: Vec<char> = lines[l].chars().collect();
                let end = (c..t.len())
                    .find(|i| t[*i].is_whitespace() || t[*i] == '#' || t[*i] == ',' || t[*i] == '}')
                    .unwrap_or(t.len());
                lines[l] = t[..c].iter().collect::<String>() + "true" + &t[end..].iter().collect::<String>();
            }
            None => {
                let indent: String = chars[..key_col].iter().collect();
                lines.insert(line + 1, format!("{indent}allow-decommission: true"));
            }
        }
    }
    let out = lines.join("\n");
    let check = crate::scheduler::spec::ServiceSpec::from_yaml(&out, "the changed spec")
        .map_err(|e| bad(format!("the changed spec does not parse: {e}")))?;
    match check.pod(pod_type) {
        Some(p) if p.count == count && (count >= old_count || p.allow_decommission) => Ok(out),
        _ => Err(bad("the edit did not take (is `count` written more than once?)".into())),
    }
}

/// The count of pod type `pod_type` in a spec.
pub fn pod_count(spec_yaml: &str, pod_type: &str) -> Result<u32> {
    let spec = crate::scheduler::spec::ServiceSpec::from_yaml(spec_yaml, "the service's spec")
        .map_err(|e| Error::Other(e.to_string()))?;
    spec.pod(pod_type).map(|p| p.count).ok_or_else(|| Error::Other(format!("the service has no pod type `{pod_type}`")))
}

fn port_env(name: &str) -> String {
    format!("PORT_{}", crate::scheduler::spec::env_suffix(name))
}

/// What the broker task reads from its env.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerEnv {
    /// `POD_INSTANCE_INDEX`: the node id, for life.
    pub node_id: u32,
    /// `HOST`: the agent's address, bound and advertised.
    pub host: String,
    /// `ZONE`: `broker.rack`.
    pub zone: Option<String>,
    pub client_port: u16,
    pub controller_port: u16,
    /// `VOLUME_DATA`: the persistent volume's absolute path.
    pub volume: PathBuf,
    pub cluster_id: String,
    /// The service's broker count (1 when not given).
    pub brokers: u32,
    pub heap_mb: u32,
    /// The other Kafka pods placed so far (`SMACK_PODS`, this one left out).
    pub peers: Vec<PodAddress>,
    pub extra: BTreeMap<String, String>,
}

impl BrokerEnv {
    /// Decodes the task's env (`get` looks a variable up); every missing or
    /// malformed variable is named in the error.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<BrokerEnv> {
        let mut problems = Vec::new();
        let mut need = |name: &str| match get(name).filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => {
                problems.push(format!("{name} is not set"));
                String::new()
            }
        };
        let host = need("HOST");
        let client = need(&port_env(CLIENT_PORT));
        let controller = need(&port_env(CONTROLLER_PORT));
        let volume = need(&format!("VOLUME_{}", crate::scheduler::spec::env_suffix(DATA_VOLUME)));
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
        let node_id = num("POD_INSTANCE_INDEX", &index, "a pod index") as u32;
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
        let pod_type = get("POD_INSTANCE")
            .and_then(|p| p.rsplit_once('-').map(|(t, _)| t.to_string()))
            .unwrap_or_else(|| POD_TYPE.to_string());
        peers.retain(|p| p.pod_type == pod_type && p.index != node_id);
        let extra: BTreeMap<String, String> = match get(ENV_BROKER_CONFIG).filter(|v| !v.trim().is_empty()) {
            None => BTreeMap::new(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                problems.push(format!("{ENV_BROKER_CONFIG} is not a JSON object of strings: {e}"));
                BTreeMap::new()
            }),
        };
        if !problems.is_empty() {
            return Err(Error::Other(format!("kafka broker task env: {}", problems.join("; "))));
        }
        Ok(BrokerEnv {
            node_id,
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

    /// The node's config: combined broker + controller, dynamic quorum
    /// bootstrapped from every Kafka pod placed so far, replication of new
    /// and internal topics `min(3, brokers)`, `min.insync.replicas` 2 from
    /// three replicas up.
    pub fn node_config(&self) -> KafkaNodeConfig {
        let mut voters: Vec<Voter> = self
            .peers
            .iter()
            .filter_map(|p| Some(Voter::new(p.index, p.host.clone(), *p.ports.get(CONTROLLER_PORT)?)))
            .collect();
        voters.push(Voter::new(self.node_id, self.host.clone(), self.controller_port));
        voters.sort_by_key(|v| v.id);
        let mut c = KafkaNodeConfig::new(
            self.node_id,
            self.host.clone(),
            self.client_port,
            self.controller_port,
            self.log_dir(),
            voters,
        );
        c.dynamic_quorum = true;
        c.rack = self.zone.clone();
        let rf = self.brokers.clamp(1, 3) as u16;
        c.internal_replication_factor = rf;
        c.default_replication_factor = rf;
        c.min_insync_replicas = if rf >= 3 { 2 } else { 1 };
        c.extra = self.extra.clone();
        c
    }

    /// How a fresh volume is formatted: the first broker of the cluster
    /// (no other Kafka pod placed) starts the quorum; any other joins it.
    pub fn format_mode(&self) -> FormatMode {
        if self.peers.is_empty() {
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
    /// `--no-initial-controllers`: join the existing quorum (auto-join).
    Join,
}

impl FormatMode {
    /// The `StorageTool format` flag.
    pub fn flag(self) -> &'static str {
        match self {
            FormatMode::Standalone => "--standalone",
            FormatMode::Join => "--no-initial-controllers",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::spec::{CheckKind, PlacementRule, ServiceSpec, VolumeType};

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
        assert!(p.contains("controller.quorum.auto.join.enable=true\n"), "{p}");
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
        assert_eq!(FormatMode::Join.flag(), "--no-initial-controllers");
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
