//! Kafka (KRaft) node templates: `server.properties`, the Log4j2 config, the
//! cluster id, and the `meta.properties` check that guards restarts.
//!
//! A node whose id is in the controller quorum runs combined
//! (`process.roles=broker,controller`); any other node is a broker only,
//! and a node marked [`KafkaNodeConfig::controller_only`] is a dedicated
//! controller (`process.roles=controller`, only the controller listener).
//! The quorum is static (`controller.quorum.voters`: format every node with
//! the same cluster id and no `--standalone`) or dynamic
//! ([`KafkaNodeConfig::dynamic_quorum`]: `controller.quorum.bootstrap.servers`,
//! controllers added to the voter set one by one). A formatted log dir holds
//! `meta.properties`; never format it again, and keep its node id and
//! cluster id — [`check_meta`] refuses a dir formatted for another node or
//! cluster before the broker does.
//!
//! See `docs/jvm-services.md` for the run that validated these templates.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Printed by a node once its broker and controller are up.
pub const KAFKA_READY_LINE: &str = "Kafka Server started";
/// The listener names the templates use.
pub const BROKER_LISTENER: &str = "PLAINTEXT";
/// The controller listener name.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// One member of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: u32,
    pub host: String,
    /// Its controller port.
    pub port: u16,
}

impl Voter {
    pub fn new(id: u32, host: impl Into<String>, port: u16) -> Self {
        Voter { id, host: host.into(), port }
    }
}

/// `controller.quorum.voters`: `ID@HOST:PORT,…`.
pub fn quorum_voters(voters: &[Voter]) -> String {
    voters.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect::<Vec<_>>().join(",")
}

/// `host:port,…` of the brokers, for clients' `bootstrap.servers`.
pub fn bootstrap_servers(brokers: &[(String, u16)]) -> String {
    brokers.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
}

/// Everything that differs between Kafka nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaNodeConfig {
    /// `node.id`; stable for the pod's life (its index).
    pub node_id: u32,
    /// The address the node binds to and advertises.
    pub host: String,
    /// The client/inter-broker listener port.
    pub broker_port: u16,
    /// The controller listener port (used only if the node is a voter).
    pub controller_port: u16,
    /// `log.dirs`, absolute; the metadata log lives in the first unless
    /// `metadata_log_dir` is set.
    pub log_dirs: Vec<PathBuf>,
    pub metadata_log_dir: Option<PathBuf>,
    /// The controller quorum: the static voters, or with `dynamic_quorum`
    /// the controllers known so far (this node's included), used as
    /// `controller.quorum.bootstrap.servers`.
    pub voters: Vec<Voter>,
    /// A dynamic quorum (KIP-853): `controller.quorum.bootstrap.servers`
    /// instead of `controller.quorum.voters`, and controllers join the voter
    /// set by themselves (`controller.quorum.auto.join.enable`). The first
    /// node is formatted `--standalone`, later ones `--no-initial-controllers`.
    pub dynamic_quorum: bool,
    /// With a dynamic quorum, whether the controller adds itself to the
    /// voter set once caught up (`controller.quorum.auto.join.enable`).
    /// Off when something else adds voters: a node removed from the quorum
    /// (a drained broker) would otherwise join it again while it runs.
    pub auto_join: bool,
    /// A dedicated controller: `process.roles=controller`, no broker
    /// listener, none of the broker's topic settings. Its id must be in
    /// `voters`.
    pub controller_only: bool,
    /// `broker.rack` (the agent's zone or rack), for rack-aware replicas.
    pub rack: Option<String>,
    /// Replication of the internal topics (offsets, transactions, share state).
    pub internal_replication_factor: u16,
    /// `default.replication.factor` for new topics.
    pub default_replication_factor: u16,
    /// `min.insync.replicas` (and the transaction/share state topics' min ISR).
    pub min_insync_replicas: u16,
    /// `num.partitions` for topics created without a count.
    pub num_partitions: u32,
    pub auto_create_topics: bool,
    /// Extra keys, written last (they win over the template's).
    pub extra: BTreeMap<String, String>,
}

impl KafkaNodeConfig {
    /// A node with the small-machine defaults; replication is
    /// `min(3, voters)` and `min.insync.replicas` 2 from three replicas up.
    pub fn new(
        node_id: u32,
        host: impl Into<String>,
        broker_port: u16,
        controller_port: u16,
        log_dir: impl Into<PathBuf>,
        voters: Vec<Voter>,
    ) -> Self {
        let rf = voters.len().clamp(1, 3) as u16;
        KafkaNodeConfig {
            node_id,
            host: host.into(),
            broker_port,
            controller_port,
            log_dirs: vec![log_dir.into()],
            metadata_log_dir: None,
            voters,
            dynamic_quorum: false,
            auto_join: false,
            controller_only: false,
            rack: None,
            internal_replication_factor: rf,
            default_replication_factor: rf,
            min_insync_replicas: if rf >= 3 { 2 } else { 1 },
            num_partitions: 3,
            auto_create_topics: false,
            extra: BTreeMap::new(),
        }
    }

    /// Whether the node is in the controller quorum (and so runs combined).
    pub fn is_controller(&self) -> bool {
        self.controller_only || self.voters.iter().any(|v| v.id == self.node_id)
    }

    /// `process.roles`.
    pub fn process_roles(&self) -> &'static str {
        if self.controller_only {
            "controller"
        } else if self.is_controller() {
            "broker,controller"
        } else {
            "broker"
        }
    }

    /// Refuses a config the broker would refuse, or that would break a
    /// restart, saying why.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Other(format!("kafka node {}: {why}", self.node_id)));
        if self.host.trim().is_empty() {
            return bad("no host to bind to".into());
        }
        if self.log_dirs.is_empty() {
            return bad("no log dir".into());
        }
        if let Some(d) = self.log_dirs.iter().chain(&self.metadata_log_dir).find(|d| !d.is_absolute()) {
            return bad(format!("log dir {} is not absolute", d.display()));
        }
        if self.voters.is_empty() {
            return bad("the controller quorum is empty".into());
        }
        let mut ids: Vec<u32> = self.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return bad(format!("duplicate node id in the quorum {}", quorum_voters(&self.voters)));
        }
        if self.controller_only && !self.voters.iter().any(|v| v.id == self.node_id) {
            return bad(format!(
                "a dedicated controller must be in its quorum {}",
                self.voters.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect::<Vec<_>>().join(",")
            ));
        }
        if let Some(me) = self.voters.iter().find(|v| v.id == self.node_id) {
            if me.port != self.controller_port || me.host != self.host {
                return bad(format!(
                    "its quorum entry {}@{}:{} differs from its controller listener {}:{}",
                    me.id, me.host, me.port, self.host, self.controller_port
                ));
            }
            if !self.controller_only && self.broker_port == self.controller_port {
                return bad(format!("broker and controller share port {}", self.broker_port));
            }
        }
        if self.internal_replication_factor == 0 || self.default_replication_factor == 0 {
            return bad("a replication factor of 0".into());
        }
        if self.min_insync_replicas == 0
            || self.min_insync_replicas > self.internal_replication_factor
            || self.min_insync_replicas > self.default_replication_factor
        {
            return bad(format!(
                "min.insync.replicas {} must be between 1 and the replication factor",
                self.min_insync_replicas
            ));
        }
        Ok(())
    }
}

/// Escapes a value for a Java `.properties` file.
fn prop_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// `server.properties` for one node. Validate the config first
/// ([`KafkaNodeConfig::validate`]); this only renders it.
///
/// Small-machine settings (those of Kafka's own test harness): no initial
/// rebalance delay, 5 partitions for the offsets/transaction/share-state
/// topics, a 2 MiB cleaner buffer (default 128 MiB of heap), 2 network, io
/// and background threads.
pub fn kafka_server_properties(c: &KafkaNodeConfig) -> String {
    if c.controller_only {
        return render(c, controller_only_properties(c, quorum_properties(c)));
    }
    let join = |dirs: &[PathBuf]| dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",");
    let mut kv = quorum_properties(c);
    let mut put = |k: &str, v: String| kv.push((k.to_string(), v));
    let broker = format!("{BROKER_LISTENER}://{}:{}", c.host, c.broker_port);
    if c.is_controller() {
        put("listeners", format!("{broker},{CONTROLLER_LISTENER}://{}:{}", c.host, c.controller_port));
    } else {
        put("listeners", broker.clone());
    }
    put("advertised.listeners", broker);
    put("listener.security.protocol.map", format!("{BROKER_LISTENER}:PLAINTEXT,{CONTROLLER_LISTENER}:PLAINTEXT"));
    put("controller.listener.names", CONTROLLER_LISTENER.into());
    put("inter.broker.listener.name", BROKER_LISTENER.into());
    put("log.dirs", join(&c.log_dirs));
    if let Some(m) = &c.metadata_log_dir {
        put("metadata.log.dir", m.display().to_string());
    }
    if let Some(rack) = &c.rack {
        put("broker.rack", rack.clone());
    }
    let rf = c.internal_replication_factor.to_string();
    let isr = c.min_insync_replicas.min(c.internal_replication_factor).to_string();
    put("num.partitions", c.num_partitions.to_string());
    put("default.replication.factor", c.default_replication_factor.to_string());
    put("min.insync.replicas", c.min_insync_replicas.to_string());
    put("offsets.topic.replication.factor", rf.clone());
    put("transaction.state.log.replication.factor", rf.clone());
    put("transaction.state.log.min.isr", isr.clone());
    put("share.coordinator.state.topic.replication.factor", rf);
    put("share.coordinator.state.topic.min.isr", isr);
    put("offsets.topic.num.partitions", "5".into());
    put("transaction.state.log.num.partitions", "5".into());
    put("share.coordinator.state.topic.num.partitions", "5".into());
    put("group.initial.rebalance.delay.ms", "0".into());
    put("log.cleaner.dedupe.buffer.size", "2097152".into());
    put("num.network.threads", "2".into());
    put("num.io.threads", "2".into());
    put("background.threads", "2".into());
    put("num.recovery.threads.per.data.dir", "1".into());
    put("auto.create.topics.enable", c.auto_create_topics.to_string());
    for (k, v) in &c.extra {
        put(k, v.clone());
    }
    render(c, kv)
}

/// The roles, the node id and the quorum: what every node's file opens with.
fn quorum_properties(c: &KafkaNodeConfig) -> Vec<(String, String)> {
    let mut kv: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| kv.push((k.to_string(), v));
    put("process.roles", c.process_roles().into());
    put("node.id", c.node_id.to_string());
    if c.dynamic_quorum {
        let servers: Vec<String> = c.voters.iter().map(|v| format!("{}:{}", v.host, v.port)).collect();
        put("controller.quorum.bootstrap.servers", servers.join(","));
        if c.auto_join && c.is_controller() {
            put("controller.quorum.auto.join.enable", "true".into());
        }
    } else {
        put("controller.quorum.voters", quorum_voters(&c.voters));
    }
    kv
}

/// A dedicated controller's keys after the quorum's: its listener, its
/// metadata log dir, small thread pools, and the extra keys.
fn controller_only_properties(c: &KafkaNodeConfig, mut kv: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut put = |k: &str, v: String| kv.push((k.to_string(), v));
    put("listeners", format!("{CONTROLLER_LISTENER}://{}:{}", c.host, c.controller_port));
    put("listener.security.protocol.map", format!("{CONTROLLER_LISTENER}:PLAINTEXT"));
    put("controller.listener.names", CONTROLLER_LISTENER.into());
    let dirs: Vec<String> = c.log_dirs.iter().map(|d| d.display().to_string()).collect();
    put("log.dirs", dirs.join(","));
    if let Some(m) = &c.metadata_log_dir {
        put("metadata.log.dir", m.display().to_string());
    }
    put("num.network.threads", "2".into());
    put("num.io.threads", "2".into());
    put("background.threads", "2".into());
    for (k, v) in &c.extra {
        put(k, v.clone());
    }
    kv
}

/// The `.properties` text of `kv`, a later duplicate key winning.
fn render(c: &KafkaNodeConfig, kv: Vec<(String, String)>) -> String {
    // A later duplicate wins: keep only the last occurrence of each key.
    let mut seen = std::collections::BTreeSet::new();
    let mut lines: Vec<String> = Vec::new();
    for (k, v) in kv.into_iter().rev() {
        if seen.insert(k.clone()) {
            lines.push(format!("{k}={}", prop_value(&v)));
        }
    }
    lines.reverse();
    let mut out = format!("# Written by smack for Kafka node {}; rewritten on every launch.\n", c.node_id);
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// Log4j2 `.properties` config: everything to the console (the agent keeps
/// stdout as the task's log), at `level` (`INFO` shows the readiness line),
/// without the full config dump each Kafka component prints at start.
pub fn kafka_log4j2_properties(level: &str) -> String {
    format!(
        "# Written by smack.
status = warn
name = smack-kafka
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"
    )
}

/// A fresh cluster id, as `StorageTool random-uuid` makes one: 16 random
/// bytes in URL-safe base64 without padding (22 characters), never starting
/// with `-` (which a command line would take for a flag).
pub fn kafka_random_cluster_id() -> String {
    loop {
        let id = base64url(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Whether `id` is a cluster id Kafka accepts (22 URL-safe base64
/// characters encoding 16 bytes).
pub fn is_valid_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        // The last character carries 2 bits and 4 zero bits of padding.
        && id.bytes().last().is_some_and(|b| base64url_value(b).is_some_and(|v| v & 0x0f == 0))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

fn base64url_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// What a formatted log dir's `meta.properties` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: u32,
    pub directory_id: Option<String>,
}

/// Parses `meta.properties` (version 1, as `StorageTool format` writes it).
pub fn parse_meta_properties(text: &str) -> Option<MetaProperties> {
    let mut map = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Some(MetaProperties {
        cluster_id: map.get("cluster.id")?.clone(),
        node_id: map.get("node.id")?.parse().ok()?,
        directory_id: map.get("directory.id").cloned(),
    })
}

/// `meta.properties` of a log dir, if it has been formatted.
pub fn read_meta_properties(log_dir: &Path) -> Result<Option<MetaProperties>> {
    let path = log_dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_meta_properties(&text)
            .map(Some)
            .ok_or_else(|| Error::Other(format!("{} lacks cluster.id or node.id", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Whether `log_dir` is already formatted for this node and cluster
/// (`Ok(true)`: start it as is), fresh (`Ok(false)`: format it), or
/// formatted for another node or cluster (an error: formatting or starting
/// would lose or mix data).
pub fn check_meta(log_dir: &Path, cluster_id: &str, node_id: u32) -> Result<bool> {
    match read_meta_properties(log_dir)? {
        None => Ok(false),
        Some(m) if m.cluster_id == cluster_id && m.node_id == node_id => Ok(true),
        Some(m) => Err(Error::Other(format!(
            "{} belongs to Kafka node {} of cluster {}, not node {node_id} of cluster {cluster_id}: \
             refusing to reuse it",
            log_dir.display(),
            m.node_id,
            m.cluster_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_voters() -> Vec<Voter> {
        (0..3).map(|i| Voter::new(i, format!("127.0.1.{}", i + 1), 19093)).collect()
    }

    fn value<'a>(props: &'a str, key: &str) -> Option<&'a str> {
        props.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn single_combined_node_as_run_by_hand() {
        let c = KafkaNodeConfig::new(0, "127.0.0.1", 19092, 19093, "/n/data", vec![Voter::new(0, "127.0.0.1", 19093)]);
        c.validate().unwrap();
        let p = kafka_server_properties(&c);
        assert_eq!(value(&p, "process.roles"), Some("broker,controller"));
        assert_eq!(value(&p, "node.id"), Some("0"));
        assert_eq!(value(&p, "controller.quorum.voters"), Some("0@127.0.0.1:19093"));
        assert_eq!(value(&p, "listeners"), Some("PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"));
        assert_eq!(value(&p, "advertised.listeners"), Some("PLAINTEXT://127.0.0.1:19092"));
        assert_eq!(value(&p, "controller.listener.names"), Some("CONTROLLER"));
        assert_eq!(value(&p, "inter.broker.listener.name"), Some("PLAINTEXT"));
        assert_eq!(value(&p, "log.dirs"), Some("/n/data"));
        assert_eq!(value(&p, "offsets.topic.replication.factor"), Some("1"));
        assert_eq!(value(&p, "transaction.state.log.min.isr"), Some("1"));
        assert_eq!(value(&p, "share.coordinator.state.topic.replication.factor"), Some("1"));
        assert_eq!(value(&p, "group.initial.rebalance.delay.ms"), Some("0"));
        assert_eq!(value(&p, "log.cleaner.dedupe.buffer.size"), Some("2097152"));
        assert_eq!(value(&p, "auto.create.topics.enable"), Some("false"));
        assert_eq!(value(&p, "broker.rack"), None);
        assert_eq!(value(&p, "metadata.log.dir"), None);
    }

    #[test]
    fn three_node_quorum_rack_and_overrides() {
        let mut c = KafkaNodeConfig::new(1, "127.0.1.2", 19092, 19093, "/v/kafka", three_voters());
        c.rack = Some("zone-b".into());
        c.metadata_log_dir = Some("/v/meta".into());
        c.extra.insert("num.partitions".into(), "12".into());
        c.validate().unwrap();
        let p = kafka_server_properties(&c);
        assert_eq!(
            value(&p, "controller.quorum.voters"),
            Some("0@127.0.1.1:19093,1@127.0.1.2:19093,2@127.0.1.3:19093")
        );
        assert_eq!(value(&p, "broker.rack"), Some("zone-b"));
        assert_eq!(value(&p, "metadata.log.dir"), Some("/v/meta"));
        assert_eq!(value(&p, "offsets.topic.replication.factor"), Some("3"));
        assert_eq!(value(&p, "min.insync.replicas"), Some("2"));
        assert_eq!(value(&p, "num.partitions"), Some("12"), "extra wins");
        assert_eq!(p.lines().filter(|l| l.starts_with("num.partitions=")).count(), 1);
    }

    #[test]
    fn broker_only_node_has_no_controller_listener() {
        let c = KafkaNodeConfig::new(7, "127.0.1.4", 19092, 19093, "/v", three_voters());
        c.validate().unwrap();
        assert!(!c.is_controller());
        let p = kafka_server_properties(&c);
        assert_eq!(value(&p, "process.roles"), Some("broker"));
        assert_eq!(value(&p, "listeners"), Some("PLAINTEXT://127.0.1.4:19092"));
    }

    #[test]
    fn a_dedicated_controller_has_only_its_listener_and_its_quorum() {
        let voters: Vec<Voter> = (0..3).map(|i| Voter::new(3000 + i, format!("127.0.1.{}", i + 1), 19093)).collect();
        let mut c = KafkaNodeConfig::new(3001, "127.0.1.2", 0, 19093, "/v/meta", voters.clone());
        c.controller_only = true;
        c.dynamic_quorum = true;
        c.extra.insert("num.io.threads".into(), "3".into());
        c.validate().unwrap();
        let p = kafka_server_properties(&c);
        assert_eq!(value(&p, "process.roles"), Some("controller"));
        assert_eq!(value(&p, "node.id"), Some("3001"));
        assert_eq!(
            value(&p, "controller.quorum.bootstrap.servers"),
            Some("127.0.1.1:19093,127.0.1.2:19093,127.0.1.3:19093")
        );
        assert_eq!(value(&p, "controller.quorum.auto.join.enable"), None, "voters are added by smack");
        assert_eq!(value(&p, "listeners"), Some("CONTROLLER://127.0.1.2:19093"));
        assert_eq!(value(&p, "listener.security.protocol.map"), Some("CONTROLLER:PLAINTEXT"));
        assert_eq!(value(&p, "log.dirs"), Some("/v/meta"));
        assert_eq!(value(&p, "num.io.threads"), Some("3"), "extra wins");
        for broker_only in
            ["advertised.listeners", "inter.broker.listener.name", "broker.rack", "offsets.topic.replication.factor"]
        {
            assert_eq!(value(&p, broker_only), None, "{broker_only}: {p}");
        }
        // Not in its own quorum: refused.
        let mut lost = c.clone();
        lost.node_id = 3009;
        assert!(lost.validate().unwrap_err().to_string().contains("must be in its quorum"));
        // A broker of the same quorum is a broker only, bootstrapped from the controllers.
        let mut b = KafkaNodeConfig::new(0, "127.0.1.4", 19092, 0, "/v/kafka", voters);
        b.dynamic_quorum = true;
        b.auto_join = true;
        b.validate().unwrap();
        let p = kafka_server_properties(&b);
        assert_eq!(value(&p, "process.roles"), Some("broker"));
        assert_eq!(value(&p, "listeners"), Some("PLAINTEXT://127.0.1.4:19092"));
        assert_eq!(value(&p, "controller.quorum.auto.join.enable"), None, "only controllers join");
    }

    #[test]
    fn auto_join_is_written_only_when_asked() {
        let mut c = KafkaNodeConfig::new(0, "h", 1, 2, "/v", vec![Voter::new(0, "h", 2)]);
        c.dynamic_quorum = true;
        assert_eq!(value(&kafka_server_properties(&c), "controller.quorum.auto.join.enable"), None);
        c.auto_join = true;
        assert_eq!(value(&kafka_server_properties(&c), "controller.quorum.auto.join.enable"), Some("true"));
    }

    #[test]
    fn validation_refuses_broken_configs() {
        let ok = KafkaNodeConfig::new(0, "127.0.1.1", 19092, 19093, "/v", three_voters());
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.log_dirs = vec!["relative".into()];
        assert!(c.validate().unwrap_err().to_string().contains("not absolute"));
        let mut c = ok.clone();
        c.controller_port = 19094;
        assert!(c.validate().unwrap_err().to_string().contains("quorum entry"));
        let mut c = ok.clone();
        c.voters.push(Voter::new(0, "127.0.1.9", 19093));
        assert!(c.validate().unwrap_err().to_string().contains("duplicate"));
        let mut c = ok.clone();
        c.min_insync_replicas = 4;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.voters.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn property_values_are_escaped() {
        let mut c = KafkaNodeConfig::new(0, "h", 1, 2, "/a\\b", vec![Voter::new(0, "h", 2)]);
        c.extra.insert("x".into(), "line\nbreak".into());
        let p = kafka_server_properties(&c);
        assert!(p.contains("log.dirs=/a\\\\b"));
        assert!(p.contains("x=line\\nbreak"));
    }

    #[test]
    fn log4j2_config_logs_to_console_at_level() {
        let l = kafka_log4j2_properties("INFO");
        assert!(l.contains("appender.out.type = Console"));
        assert!(l.contains("rootLogger.level = INFO"));
        assert!(l.contains("logger.config.level = WARN"));
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        // The id StorageTool random-uuid printed on this machine.
        assert!(is_valid_cluster_id("3fy0FDB0SnyvNhjkH2CQ_w"));
        assert!(!is_valid_cluster_id("3fy0FDB0SnyvNhjkH2CQ_"));
        assert!(!is_valid_cluster_id("3fy0FDB0SnyvNhjkH2CQ_x"), "non-zero padding bits");
        assert!(!is_valid_cluster_id("3fy0FDB0SnyvNhjkH2CQ+w"));
        for _ in 0..200 {
            let id = kafka_random_cluster_id();
            assert!(is_valid_cluster_id(&id), "{id}");
            assert!(!id.starts_with('-'));
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(b"Man"), "TWFu");
    }

    #[test]
    fn meta_properties_guard_restarts() {
        let text = "#\n#Tue Nov 24 19:46:50 UTC 2026\nnode.id=0\ndirectory.id=9N7cnKbJvWB8dLvxbRw_BQ\nversion=1\n\
                    cluster.id=3fy0FDB0SnyvNhjkH2CQ_w\n";
        let m = parse_meta_properties(text).unwrap();
        assert_eq!(m.node_id, 0);
        assert_eq!(m.cluster_id, "3fy0FDB0SnyvNhjkH2CQ_w");
        assert_eq!(m.directory_id.as_deref(), Some("9N7cnKbJvWB8dLvxbRw_BQ"));
        assert!(parse_meta_properties("node.id=1\n").is_none());

        let dir = tempfile::tempdir().unwrap();
        assert!(!check_meta(dir.path(), "3fy0FDB0SnyvNhjkH2CQ_w", 0).unwrap(), "fresh dir");
        std::fs::write(dir.path().join("meta.properties"), text).unwrap();
        assert!(check_meta(dir.path(), "3fy0FDB0SnyvNhjkH2CQ_w", 0).unwrap());
        assert!(check_meta(dir.path(), "3fy0FDB0SnyvNhjkH2CQ_w", 1).is_err());
        assert!(check_meta(dir.path(), "AAAAAAAAAAAAAAAAAAAAAA", 0).is_err());
    }

    #[test]
    fn bootstrap_list() {
        let b = bootstrap_servers(&[("127.0.1.1".into(), 19092), ("127.0.1.2".into(), 19092)]);
        assert_eq!(b, "127.0.1.1:19092,127.0.1.2:19092");
    }
}
