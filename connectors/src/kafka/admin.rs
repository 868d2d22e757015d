//! The Kafka admin client: topics (create, list, describe, delete, add
//! partitions, configs) and brokers (address, rack, leadership, health).
//!
//! Cluster health is computed from a [`ClusterSnapshot`] of the metadata,
//! which is plain data: the under-replicated summary and the "broker is
//! ready" rule are pure and tested without a broker.

use super::{blocking, client_err, Error, KafkaClientConfig, Result};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// How many partitions.
    pub partitions: i32,
    /// How many replicas of each partition.
    pub replication_factor: i32,
    /// Topic configs (`retention.ms`, `cleanup.policy`, `min.insync.replicas`, …).
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A topic with no config overrides.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        TopicSpec { name: name.into(), partitions, replication_factor, configs: BTreeMap::new() }
    }

    /// With one more config.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Invalid { what: format!("topic `{}`", self.name), reason });
        if self.name.is_empty() || self.name.len() > 249 {
            return bad(format!("the name has {} characters (expected 1 to 249)", self.name.len()));
        }
        if let Some(c) = self.name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
            return bad(format!("the name has `{c}` (expected only [a-zA-Z0-9._-])"));
        }
        if self.name == "." || self.name == ".." {
            return bad("`.` and `..` are not topic names".into());
        }
        if self.partitions < 1 {
            return bad(format!("{} partitions (expected 1 or more)", self.partitions));
        }
        if self.replication_factor < 1 {
            return bad(format!("replication factor {} (expected 1 or more)", self.replication_factor));
        }
        Ok(())
    }
}

/// A broker as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerAddress {
    /// The broker id (`node.id`).
    pub id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionDescription {
    /// The partition id.
    pub id: i32,
    /// The leader's broker id; None when the partition is offline.
    pub leader: Option<i32>,
    /// The replicas' broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The error the metadata reported for it, if any.
    pub error: Option<String>,
}

impl PartitionDescription {
    /// Fewer in-sync replicas than replicas.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    /// No leader: nobody can read or write it.
    pub fn offline(&self) -> bool {
        self.leader.is_none()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Its partitions, by id.
    pub partitions: Vec<PartitionDescription>,
    /// The error the metadata reported for it, if any.
    pub error: Option<String>,
}

impl TopicDescription {
    /// Kafka's own topics (`__consumer_offsets`, …).
    pub fn internal(&self) -> bool {
        self.name.starts_with("__")
    }

    /// The largest replica count among its partitions.
    pub fn replication_factor(&self) -> usize {
        self.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(0)
    }
}

/// A broker, with what it leads and how healthy its partitions are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerDescription {
    /// The broker id.
    pub id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
    /// Its `broker.rack`, when set and readable.
    pub rack: Option<String>,
    /// Partitions it leads.
    pub leader_count: usize,
    /// Partitions it holds a replica of.
    pub replica_count: usize,
    /// Under-replicated or offline partitions it leads or follows.
    pub under_replicated: usize,
}

impl BrokerDescription {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The partitions of the cluster that lack replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnderReplicatedSummary {
    /// Partitions in the cluster.
    pub partitions: usize,
    /// `(topic, partition)` with fewer in-sync replicas than replicas.
    pub under_replicated: Vec<(String, i32)>,
    /// `(topic, partition)` with no leader.
    pub offline: Vec<(String, i32)>,
}

impl UnderReplicatedSummary {
    /// Every partition fully replicated and led.
    pub fn healthy(&self) -> bool {
        self.under_replicated.is_empty() && self.offline.is_empty()
    }
}

/// Whether a broker is ready: registered in the metadata, and no partition
/// it leads or follows is under-replicated or offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerReadiness {
    /// The broker id.
    pub broker: i32,
    /// Ready or not.
    pub ready: bool,
    /// Why (not) — e.g. "not registered" or the partitions it lags on.
    pub reason: String,
}

/// A topic or broker config value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigValue {
    /// The value (None when sensitive or unset).
    pub value: Option<String>,
    /// Where it comes from: `DynamicTopic`, `StaticBroker`, `Default`, …
    pub source: String,
    /// The default value.
    pub is_default: bool,
    /// Cannot be altered.
    pub read_only: bool,
    /// A secret: the value is hidden.
    pub sensitive: bool,
}

/// The cluster's metadata as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterSnapshot {
    /// The brokers registered.
    pub brokers: Vec<BrokerAddress>,
    /// Every topic (internal ones too), by name.
    pub topics: Vec<TopicDescription>,
}

impl ClusterSnapshot {
    fn from_metadata(md: &Metadata) -> Self {
        let mut brokers: Vec<BrokerAddress> = md
            .brokers()
            .iter()
            .map(|b| BrokerAddress { id: b.id(), host: b.host().to_string(), port: b.port() })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let mut topics: Vec<TopicDescription> = md
            .topics()
            .iter()
            .map(|t| {
                let mut partitions: Vec<PartitionDescription> = t
                    .partitions()
                    .iter()
                    .map(|p| PartitionDescription {
                        id: p.id(),
                        leader: (p.leader() >= 0).then_some(p.leader()),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                        error: p.error().map(|e| format!("{e:?}")),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                TopicDescription { name: t.name().to_string(), partitions, error: t.error().map(|e| format!("{e:?}")) }
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterSnapshot { brokers, topics }
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicDescription> {
        self.topics.iter().find(|t| t.name == name && t.error.is_none())
    }

    /// Every partition that is under-replicated or offline.
    pub fn under_replicated(&self) -> UnderReplicatedSummary {
        let mut s = UnderReplicatedSummary::default();
        for t in &self.topics {
            for p in &t.partitions {
                s.partitions += 1;
                if p.offline() {
                    s.offline.push((t.name.clone(), p.id));
                } else if p.under_replicated() {
                    s.under_replicated.push((t.name.clone(), p.id));
                }
            }
        }
        s
    }

    /// Each broker with its leader count and the unhealthy partitions it
    /// leads or follows; `racks` as read from the brokers' configs.
    pub fn describe_brokers(&self, racks: &BTreeMap<i32, String>) -> Vec<BrokerDescription> {
        self.brokers
            .iter()
            .map(|b| {
                let mut d = BrokerDescription {
                    id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: racks.get(&b.id).cloned(),
                    leader_count: 0,
                    replica_count: 0,
                    under_replicated: 0,
                };
                for p in self.topics.iter().flat_map(|t| &t.partitions) {
                    if p.leader == Some(b.id) {
                        d.leader_count += 1;
                    }
                    if p.replicas.contains(&b.id) || p.leader == Some(b.id) {
                        d.replica_count += 1;
                        if p.under_replicated() || p.offline() {
                            d.under_replicated += 1;
                        }
                    }
                }
                d
            })
            .collect()
    }

    /// Whether broker `id` is ready (see [`BrokerReadiness`]).
    pub fn broker_readiness(&self, id: i32) -> BrokerReadiness {
        if !self.brokers.iter().any(|b| b.id == id) {
            let known: Vec<i32> = self.brokers.iter().map(|b| b.id).collect();
            return BrokerReadiness {
                broker: id,
                ready: false,
                reason: format!("broker {id} is not registered (registered: {known:?})"),
            };
        }
        let lagging: Vec<String> = self
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.replicas.contains(&id) || p.leader == Some(id))
            .filter(|(_, p)| p.under_replicated() || p.offline())
            .map(|(t, p)| {
                let why = if p.offline() {
                    "offline".to_string()
                } else if !p.isr.contains(&id) {
                    "not in sync on this broker".to_string()
                } else {
                    format!("isr {:?} of replicas {:?}", p.isr, p.replicas)
                };
                format!("{}/{} ({why})", t.name, p.id)
            })
            .collect();
        if lagging.is_empty() {
            BrokerReadiness { broker: id, ready: true, reason: "registered; all its partitions in sync".into() }
        } else {
            const SHOWN: usize = 5;
            let more = lagging.len().saturating_sub(SHOWN);
            let mut reason = format!(
                "{} partition(s) it leads or follows are under-replicated: {}",
                lagging.len(),
                lagging[..lagging.len().min(SHOWN)].join(", ")
            );
            if more > 0 {
                reason.push_str(&format!(", and {more} more"));
            }
            BrokerReadiness { broker: id, ready: false, reason }
        }
    }
}

/// The admin client.
#[derive(Clone)]
pub struct KafkaAdmin {
    client: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
    bootstrap: String,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin").field("bootstrap", &self.bootstrap).finish()
    }
}

impl KafkaAdmin {
    /// Creates the client and fetches the metadata once, so an unreachable
    /// cluster is reported here, with the address tried.
    pub async fn connect(config: &KafkaClientConfig) -> Result<KafkaAdmin> {
        config.validate()?;
        let client: AdminClient<DefaultClientContext> = config
            .client_config(&[])
            .create()
            .map_err(client_err(format!("create an admin client for {}", config.bootstrap_servers)))?;
        let admin = KafkaAdmin {
            client: Arc::new(client),
            timeout: config.timeout,
            bootstrap: config.bootstrap_servers.clone(),
        };
        admin.snapshot().await?;
        Ok(admin)
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// The cluster's metadata: brokers, topics, partitions.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot> {
        let (c, timeout) = (self.client.clone(), self.timeout);
        let op = format!("fetch the cluster metadata from {} (within {timeout:?})", self.bootstrap);
        let op2 = op.clone();
        blocking(op, move || {
            let md = c.inner().fetch_metadata(None, timeout).map_err(client_err(op2))?;
            Ok(ClusterSnapshot::from_metadata(&md))
        })
        .await
    }

    /// Creates a topic; errors if it exists ([`Error::code`] is then
    /// `TopicAlreadyExists`).
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        spec.validate()?;
        let mut nt = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(spec.replication_factor));
        for (k, v) in &spec.configs {
            nt = nt.set(k, v);
        }
        let op = format!(
            "create topic `{}` ({} partitions, replication factor {}, configs {:?})",
            spec.name, spec.partitions, spec.replication_factor, spec.configs
        );
        let results = self.client.create_topics([&nt], &self.options()).await.map_err(client_err(op.clone()))?;
        one_result(op, results)
    }

    /// Creates a topic unless one by that name exists; true if it created it.
    /// An existing topic is left as it is, whatever its partitions.
    pub async fn ensure_topic(&self, spec: &TopicSpec) -> Result<bool> {
        match self.create_topic(spec).await {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Topic names, sorted; Kafka's internal ones only if asked.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>> {
        Ok(self
            .snapshot()
            .await?
            .topics
            .into_iter()
            .filter(|t| include_internal || !t.internal())
            .map(|t| t.name)
            .collect())
    }

    /// A topic's partitions with leader, replicas and ISR.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let snap = self.snapshot().await?;
        match snap.topic(name) {
            Some(t) => Ok(t.clone()),
            None => Err(Error::NotFound { what: format!("topic `{name}`"), hint: topics_hint(&snap) }),
        }
    }

    /// Waits until topic `name` exists and every partition has a leader
    /// (metadata spreads to brokers shortly after a create).
    pub async fn await_topic(&self, name: &str, within: Duration) -> Result<TopicDescription> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let snap = self.snapshot().await?;
            if let Some(t) = snap.topic(name) {
                if !t.partitions.is_empty() && t.partitions.iter().all(|p| !p.offline()) {
                    return Ok(t.clone());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotFound {
                    what: format!("topic `{name}` with a leader for every partition (waited {within:?})"),
                    hint: match snap.topic(name) {
                        Some(t) => format!("partitions: {:?}", t.partitions),
                        None => topics_hint(&snap),
                    },
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let op = format!("delete topic `{name}`");
        let results = self.client.delete_topics(&[name], &self.options()).await.map_err(client_err(op.clone()))?;
        one_result(op, results)
    }

    /// Grows a topic to `total` partitions (Kafka never shrinks one).
    pub async fn add_partitions(&self, name: &str, total: usize) -> Result<()> {
        let current = self.describe_topic(name).await?.partitions.len();
        if total <= current {
            return Err(Error::Invalid {
                what: format!("add partitions to topic `{name}`"),
                reason: format!("it has {current} partition(s); asked for {total} (expected more than {current})"),
            });
        }
        let op = format!("grow topic `{name}` from {current} to {total} partitions");
        let np = NewPartitions::new(name, total);
        let results = self.client.create_partitions([&np], &self.options()).await.map_err(client_err(op.clone()))?;
        one_result(op, results)
    }

    /// A topic's configs, by name.
    pub async fn describe_topic_configs(&self, name: &str) -> Result<BTreeMap<String, ConfigValue>> {
        self.describe_configs(ResourceSpecifier::Topic(name), format!("describe the configs of topic `{name}`")).await
    }

    /// A broker's configs, by name.
    pub async fn describe_broker_configs(&self, id: i32) -> Result<BTreeMap<String, ConfigValue>> {
        self.describe_configs(ResourceSpecifier::Broker(id), format!("describe the configs of broker {id}")).await
    }

    async fn describe_configs(&self, spec: ResourceSpecifier<'_>, op: String) -> Result<BTreeMap<String, ConfigValue>> {
        let results = self.client.describe_configs([&spec], &self.options()).await.map_err(client_err(op.clone()))?;
        let resource = match results.into_iter().next() {
            Some(Ok(r)) => r,
            Some(Err(code)) => return Err(Error::Refused { op, code }),
            None => return Err(Error::Blocking { op, reason: "the cluster returned no result".into() }),
        };
        Ok(resource
            .entries
            .into_iter()
            .map(|e| {
                let v = ConfigValue {
                    value: e.value,
                    source: format!("{:?}", e.source),
                    is_default: e.is_default || e.source == ConfigSource::Default,
                    read_only: e.is_read_only,
                    sensitive: e.is_sensitive,
                };
                (e.name, v)
            })
            .collect())
    }

    /// Sets (Some) or removes (None: back to the default) topic configs,
    /// keeping the topic's other overrides as they are.
    pub async fn alter_topic_configs(&self, name: &str, changes: &BTreeMap<String, Option<String>>) -> Result<()> {
        let current = self.describe_topic_configs(name).await?;
        let mut wanted: BTreeMap<String, String> = current
            .into_iter()
            .filter(|(_, v)| v.source == format!("{:?}", ConfigSource::DynamicTopic))
            .filter_map(|(k, v)| v.value.map(|v| (k, v)))
            .collect();
        for (k, v) in changes {
            match v {
                Some(v) => wanted.insert(k.clone(), v.clone()),
                None => wanted.remove(k),
            };
        }
        let op = format!("alter the configs of topic `{name}` ({changes:?})");
        let mut ac = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &wanted {
            ac = ac.set(k, v);
        }
        let results = self.client.alter_configs([&ac], &self.options()).await.map_err(client_err(op.clone()))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(Error::Refused { op, code }),
            None => Err(Error::Blocking { op, reason: "the cluster returned no result".into() }),
        }
    }

    /// Every broker: address, rack (from its `broker.rack` config, when
    /// readable), leader count and unhealthy partitions.
    pub async fn brokers(&self) -> Result<Vec<BrokerDescription>> {
        let snap = self.snapshot().await?;
        let mut racks = BTreeMap::new();
        for b in &snap.brokers {
            match self.describe_broker_configs(b.id).await {
                Ok(cfg) => {
                    if let Some(rack) = cfg.get("broker.rack").and_then(|v| v.value.clone()).filter(|r| !r.is_empty()) {
                        racks.insert(b.id, rack);
                    }
                }
                Err(e) => tracing::debug!(broker = b.id, error = %e, "cannot read broker.rack"),
            }
        }
        Ok(snap.describe_brokers(&racks))
    }

    /// The cluster's under-replicated and offline partitions.
    pub async fn under_replicated(&self) -> Result<UnderReplicatedSummary> {
        Ok(self.snapshot().await?.under_replicated())
    }

    /// Whether broker `id` is ready (registered, all its partitions in sync).
    pub async fn broker_ready(&self, id: i32) -> Result<BrokerReadiness> {
        Ok(self.snapshot().await?.broker_readiness(id))
    }
}

fn topics_hint(snap: &ClusterSnapshot) -> String {
    let names: Vec<&str> = snap.topics.iter().filter(|t| !t.internal()).map(|t| t.name.as_str()).collect();
    if names.is_empty() {
        "the cluster has no topics".into()
    } else {
        format!("topics: {}", names.join(", "))
    }
}

fn one_result(op: String, results: Vec<rdkafka::admin::TopicResult>) -> Result<()> {
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(Error::Refused { op, code }),
        None => Err(Error::Blocking { op, reason: "the cluster returned no result".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionDescription {
        PartitionDescription {
            id,
            leader: (leader >= 0).then_some(leader),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            error: None,
        }
    }

    fn snap() -> ClusterSnapshot {
        ClusterSnapshot {
            brokers: (0..3).map(|id| BrokerAddress { id, host: format!("h{id}"), port: 9092 }).collect(),
            topics: vec![
                TopicDescription {
                    name: "orders".into(),
                    partitions: vec![
                        part(0, 0, &[0, 1], &[0, 1]),
                        part(1, 1, &[1, 2], &[1]),
                        part(2, -1, &[2, 0], &[]),
                    ],
                    error: None,
                },
                TopicDescription {
                    name: "__consumer_offsets".into(),
                    partitions: vec![part(0, 0, &[0], &[0])],
                    error: None,
                },
            ],
        }
    }

    #[test]
    fn urp_summary_separates_offline_from_lagging() {
        let s = snap().under_replicated();
        assert_eq!(s.partitions, 4);
        assert_eq!(s.under_replicated, vec![("orders".to_string(), 1)]);
        assert_eq!(s.offline, vec![("orders".to_string(), 2)]);
        assert!(!s.healthy());
    }

    #[test]
    fn brokers_count_leadership_and_unhealthy_partitions() {
        let racks = [(1, "zone-b".to_string())].into();
        let b = snap().describe_brokers(&racks);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].leader_count, b[0].replica_count, b[0].under_replicated), (2, 3, 1));
        assert_eq!((b[1].leader_count, b[1].replica_count, b[1].under_replicated), (1, 2, 1));
        assert_eq!((b[2].leader_count, b[2].replica_count, b[2].under_replicated), (0, 2, 2));
        assert_eq!(b[1].rack.as_deref(), Some("zone-b"));
        assert_eq!(b[0].rack, None);
        assert_eq!(b[2].address(), "h2:9092");
    }

    #[test]
    fn readiness_needs_registration_and_in_sync_partitions() {
        let mut s = snap();
        let r = s.broker_readiness(7);
        assert!(!r.ready && r.reason.contains("not registered"), "{r:?}");
        let r = s.broker_readiness(2);
        assert!(!r.ready, "{r:?}");
        assert!(r.reason.contains("orders/1 (not in sync on this broker)"), "{r:?}");
        assert!(r.reason.contains("orders/2 (offline)"), "{r:?}");
        // Broker 0 follows the offline partition 2.
        assert!(!s.broker_readiness(0).ready);
        s.topics[0].partitions.truncate(1);
        let r = s.broker_readiness(0);
        assert!(r.ready, "{r:?}");
        // A broker with no partitions at all is ready once registered.
        assert!(s.broker_readiness(2).ready);
    }

    #[test]
    fn topic_lookup_and_replication_factor() {
        let s = snap();
        assert_eq!(s.topic("orders").unwrap().replication_factor(), 2);
        assert!(s.topic("__consumer_offsets").unwrap().internal());
        assert!(s.topic("missing").is_none());
        assert_eq!(topics_hint(&s), "topics: orders");
    }

    #[test]
    fn topic_specs_are_checked_before_asking_the_cluster() {
        assert!(TopicSpec::new("orders.v1_x-y", 3, 1).validate().is_ok());
        let e = TopicSpec::new("bad name", 3, 1).validate().unwrap_err().to_string();
        assert!(e.contains("`bad name`") && e.contains("[a-zA-Z0-9._-]"), "{e}");
        let e = TopicSpec::new("t", 0, 1).validate().unwrap_err().to_string();
        assert!(e.contains("0 partitions"), "{e}");
        let e = TopicSpec::new("t", 1, 0).validate().unwrap_err().to_string();
        assert!(e.contains("replication factor 0"), "{e}");
        assert!(TopicSpec::new("", 1, 1).validate().is_err());
        assert!(TopicSpec::new("..", 1, 1).validate().is_err());
    }
}
