//! The typed pipeline file: one struct per YAML mapping, kebab-case fields,
//! unknown fields refused. The JSON Schema is generated from these types.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{Duration, Size};

/// A pipeline: Kafka sources, SQL stages, sinks, and the services they need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name: lowercase letters, digits and `-`, starting with a
    /// letter. It names the framework and its role.
    pub name: String,
    /// The Kafka and Cassandra clusters: run by smack, or external.
    #[serde(default)]
    pub services: Services,
    /// Named sources: Kafka topics with a typed schema. SQL reads them by name.
    #[serde(default)]
    pub sources: IndexMap<String, Source>,
    /// Named lookup tables: stage SQL joins them on their key (e.g. a
    /// card's home country), read through a bounded cache.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub lookups: IndexMap<String, Lookup>,
    /// Named stages: SQL over sources and earlier stages, in file order.
    #[serde(default)]
    pub stages: IndexMap<String, Stage>,
    /// Named sinks: where a stage's (or a source's) rows go.
    #[serde(default)]
    pub sinks: IndexMap<String, Sink>,
    /// How often a stage flushes its sinks and checkpoints its state and
    /// offsets, e.g. `10s`.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
    /// Config tests run by `smack pipeline test`: input records per source,
    /// the rows each sink must receive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<PipelineTest>,
    /// A seeded event generator run as a pod beside the stages (the
    /// examples declare theirs), producing into the sources' topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSpec>,
}

/// A seeded event generator (`smack generate`) run as part of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Which example's events; its sources must be declared (`fraud`:
    /// `transactions`; `ad-tech`: `impressions` and `clicks`).
    pub example: GeneratorExample,
    /// Events per second, all sources together (default 100).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// The seed: the same seed gives the same events (default 1).
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// Stop after this many events (default: run until deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Share of malformed records (default 0.001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_share: Option<f64>,
    /// Share of events in fraud bursts (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud_share: Option<f64>,
}

/// The examples a generator can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorExample {
    /// Card transactions (source `transactions`).
    Fraud,
    /// Ad impressions and clicks (sources `impressions`, `clicks`).
    AdTech,
}

impl GeneratorExample {
    /// The sources the generator writes.
    pub fn sources(self) -> &'static [&'static str] {
        match self {
            GeneratorExample::Fraud => &["transactions"],
            GeneratorExample::AdTech => &["impressions", "clicks"],
        }
    }
    /// Its name on `smack generate`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorExample::Fraud => "fraud",
            GeneratorExample::AdTech => "ad-tech",
        }
    }
}

fn default_rate() -> f64 {
    100.0
}
fn one_u64() -> u64 {
    1
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

/// The services a pipeline needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Services {
    /// The Kafka cluster; needed by any source or Kafka sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaService>,
    /// The Cassandra cluster; needed by any Cassandra sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraService>,
}

/// Kafka brokers run by smack (KRaft mode), or an external cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaService {
    /// How many brokers (default 1).
    #[serde(default = "one")]
    pub brokers: u32,
    /// CPUs per broker (default 1).
    #[serde(default = "one_cpu")]
    pub cpus: f64,
    /// Memory per broker: MiB, or with a unit (`2Gi`). Default 2Gi.
    #[serde(default = "default_mem")]
    pub mem: Size,
    /// Data volume per broker: MiB, or with a unit (`10Gi`). Default 10Gi.
    #[serde(default = "default_disk")]
    pub disk: Size,
    /// Placement rules for the broker pods, e.g. `- unique: hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<PlacementRule>,
    /// Dedicated KRaft controllers, pods of their own deployed before the
    /// brokers: 3 for a quorum that outlives a lost controller. Default:
    /// none, every broker is a controller too (small clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<u32>,
    /// Use this cluster instead of running brokers; excludes the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalKafka>,
}

/// An external Kafka cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExternalKafka {
    /// `host:port` of one or more brokers.
    pub bootstrap_servers: Vec<String>,
}

/// Cassandra nodes run by smack, or an external cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CassandraService {
    /// How many nodes (default 1).
    #[serde(default = "one")]
    pub nodes: u32,
    /// CPUs per node (default 1).
    #[serde(default = "one_cpu")]
    pub cpus: f64,
    /// Memory per node: MiB, or with a unit (`4Gi`). Default 2Gi.
    #[serde(default = "default_mem")]
    pub mem: Size,
    /// Data volume per node: MiB, or with a unit (`10Gi`). Default 10Gi.
    #[serde(default = "default_disk")]
    pub disk: Size,
    /// The datacenter name (default `dc1`).
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// Placement rules for the node pods, e.g. `- unique: hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<PlacementRule>,
    /// Use this cluster instead of running nodes; excludes the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalCassandra>,
}

/// An external Cassandra (or Scylla) cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExternalCassandra {
    /// `host:port` of one or more nodes.
    pub contact_points: Vec<String>,
}

fn one() -> u32 {
    1
}
fn one_cpu() -> f64 {
    1.0
}
fn default_mem() -> Size {
    Size::from_mib(2048)
}
fn default_disk() -> Size {
    Size::from_mib(10240)
}
fn default_datacenter() -> String {
    "dc1".into()
}

/// Where a service's pods may go (the operator's placement rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PlacementRule {
    /// At most one pod per value of this attribute (`hostname`, `zone`, `rack`).
    Unique(String),
    /// At most N pods per value of an attribute, e.g. `{zone: 2}`.
    MaxPer(IndexMap<String, u32>),
    /// Spread pods evenly over the values of an attribute.
    GroupBy(String),
}

/// A source: records from a Kafka topic, decoded with a typed schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Source {
    /// A Kafka topic.
    Kafka(KafkaSource),
}

impl Source {
    /// The declared fields, in order.
    pub fn schema(&self) -> &IndexMap<String, FieldType> {
        match self {
            Source::Kafka(k) => &k.schema,
        }
    }
    /// The event-time field, if any.
    pub fn event_time(&self) -> Option<&str> {
        match self {
            Source::Kafka(k) => k.event_time.as_deref(),
        }
    }
    /// Every column SQL can read: the declared fields, then the reserved
    /// Kafka metadata columns ([`METADATA_COLUMNS`]).
    pub fn columns(&self) -> Vec<String> {
        self.schema().keys().cloned().chain(METADATA_COLUMNS.iter().map(|(n, _)| n.to_string())).collect()
    }
    /// The type of a declared field or a metadata column.
    pub fn column_type(&self, name: &str) -> Option<FieldType> {
        self.schema().get(name).copied().or_else(|| metadata_column(name))
    }
}

/// The columns every source has besides its declared fields, filled from
/// the Kafka record rather than its payload: the key (as UTF-8 text, null
/// when the record has none), the record's timestamp (epoch ms; it may be
/// the event time: `event-time: _timestamp`), its partition and offset.
/// Declared fields cannot take these names.
pub const METADATA_COLUMNS: [(&str, FieldType); 4] = [
    (smack_connectors::format::KEY_COLUMN, FieldType::String),
    (smack_connectors::format::TIMESTAMP_COLUMN, FieldType::Timestamp),
    (smack_connectors::format::PARTITION_COLUMN, FieldType::Int),
    (smack_connectors::format::OFFSET_COLUMN, FieldType::Long),
];

/// The type of a reserved metadata column, if `name` is one.
pub fn metadata_column(name: &str) -> Option<FieldType> {
    METADATA_COLUMNS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A Kafka topic read as a source (`type: kafka`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaSource {
    /// The topic; created on apply if missing.
    pub topic: String,
    /// Partitions of the topic, at least 1 (default 1).
    #[serde(default = "one")]
    pub partitions: u32,
    /// Replication factor, at most the number of brokers (default 1).
    #[serde(default = "one")]
    pub replication: u32,
    /// How records are encoded (default `json`).
    #[serde(default)]
    pub format: Format,
    /// The record's fields and their types, in order (CSV columns follow it).
    /// The Kafka metadata columns (`_key`, `_timestamp`, `_partition`,
    /// `_offset`) come on top, without being declared.
    pub schema: IndexMap<String, FieldType>,
    /// With `format: avro`: the framing and the writer's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avro: Option<AvroOptions>,
    /// The field holding the event time (a `timestamp` or `long` field, epoch
    /// milliseconds, or `_timestamp`: the Kafka record's). Windows run on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// The watermark over the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermark>,
    /// What happens to a record that does not decode (default `dead-letter`).
    #[serde(default)]
    pub on_decode_error: OnDecodeError,
}

/// A record encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON object per record.
    #[default]
    Json,
    /// Avro binary, Confluent-framed by default (see `avro:`); the writer's
    /// schema is derived from the declared fields unless `avro.schema` gives it.
    Avro,
    /// One CSV line per record, fields in declared order.
    Csv,
}

/// How a source's Avro records are framed and written (`avro:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AvroOptions {
    /// `confluent` (default): magic byte 0, a 4-byte schema id, the datum;
    /// `plain`: the datum alone.
    #[serde(default)]
    pub wire_format: AvroWireFormat,
    /// The writer's schema, inline: Avro JSON written as YAML or as a JSON
    /// string; a top-level record. Every declared field must be one of its
    /// fields, of a type that fits. Default: derived from the declared
    /// fields (nullable ones as `["null", T]`, timestamps as
    /// `timestamp-millis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// With the Confluent framing: the only schema id accepted (there is
    /// no registry; by default every id is read with the one schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
}

/// The framing of Avro records in Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AvroWireFormat {
    /// The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the datum.
    #[default]
    Confluent,
    /// The binary datum alone.
    Plain,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer.
    Long,
    /// 64-bit float.
    Double,
    /// `true` or `false`.
    Boolean,
    /// A point in time: RFC 3339 text, or epoch milliseconds.
    Timestamp,
}

/// The watermark: how far event time may run backwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Watermark {
    /// Records up to this much older than the newest seen still count, e.g. `5s`.
    pub max_out_of_orderness: Duration,
}

/// What a source does with a record that does not decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnDecodeError {
    /// Send it to the dead-letter topic with the reason, and count it.
    #[default]
    DeadLetter,
    /// Stop the stage task with an error.
    Fail,
    /// Skip it, and count it.
    Drop,
}

/// A lookup table: rows fetched by key as stages need them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Lookup {
    /// A Cassandra table.
    Cassandra(CassandraLookup),
}

impl Lookup {
    /// The declared columns, in order.
    pub fn schema(&self) -> &IndexMap<String, FieldType> {
        match self {
            Lookup::Cassandra(c) => &c.schema,
        }
    }
    /// The key columns.
    pub fn key(&self) -> &[String] {
        match self {
            Lookup::Cassandra(c) => &c.key,
        }
    }
}

/// A Cassandra table read by key (`type: cassandra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CassandraLookup {
    /// The keyspace; created on apply if missing.
    pub keyspace: String,
    /// The table; created on apply (with `schema`) if missing.
    pub table: String,
    /// The primary key columns a stage joins on; each a column of `schema`.
    pub key: Vec<String>,
    /// The table's columns and their types, in order.
    pub schema: IndexMap<String, FieldType>,
    /// How rows are cached: a number is the size of a partial cache (the
    /// keys most recently used, at least 1; default 10000); a mapping picks
    /// the mode, `{mode: partial, size: 100000, expire-after-write: 10m,
    /// missing-expire: 30s}` or `{mode: full, reload: 5m}`.
    #[serde(default)]
    pub cache: LookupCache,
}

impl CassandraLookup {
    /// The cache the lookup's options ask for, with the defaults filled in.
    pub fn cache_plan(&self) -> CachePlan {
        self.cache.plan()
    }
}

/// A lookup's `cache:`: a size (shorthand for a partial cache of that many
/// keys) or a mapping with the mode and its options.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LookupCache {
    /// A partial cache of this many keys, at least 1.
    Size(#[schemars(range(min = 1))] u32),
    /// The mode and its options.
    Options(LookupCacheOptions),
}

impl Default for LookupCache {
    fn default() -> Self {
        LookupCache::Size(DEFAULT_CACHE_SIZE)
    }
}

/// A partial cache's size when none is given.
pub const DEFAULT_CACHE_SIZE: u32 = 10_000;

/// How long a partial cache remembers that a key has no row when
/// `missing-expire` is not given.
pub const DEFAULT_MISSING_EXPIRE: Duration = Duration::from_secs(60);

/// How often a full cache reads its table again when `reload` is not given.
pub const DEFAULT_RELOAD: Duration = Duration::from_secs(3600);

/// `cache:` as a mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LookupCacheOptions {
    /// `partial` (default): the keys most recently used, read by key on a
    /// miss; `full`: the whole table in memory, read at start and every
    /// `reload`.
    #[serde(default)]
    pub mode: CacheMode,
    /// Partial only: how many keys the cache holds, at least 1 (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub size: Option<u32>,
    /// Partial only: a row found is read again this long after it was read
    /// (default: kept until evicted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_write: Option<Duration>,
    /// Partial only: a key with no row is asked again this long after (default
    /// `60s`; `0s` does not cache absent keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_expire: Option<Duration>,
    /// Full only: how often the table is read again, more than `0s` (default
    /// `1h`). A failed read keeps the rows held and is tried again a period later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Duration>,
}

/// How a lookup caches its table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// The keys most recently used; misses are read by key.
    #[default]
    Partial,
    /// The whole table, held in memory and read again periodically.
    Full,
}

/// A lookup's cache with its defaults filled in ([`CassandraLookup::cache_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePlan {
    /// The `size` keys most recently used; a row found is forgotten after
    /// `expire_after_write` (never if `None`), an absence after
    /// `missing_expire` (zero: absences are not cached).
    Partial { size: u32, expire_after_write: Option<std::time::Duration>, missing_expire: std::time::Duration },
    /// The whole table, read again every `reload`.
    Full { reload: std::time::Duration },
}

impl LookupCache {
    /// The plan with the defaults filled in.
    pub fn plan(&self) -> CachePlan {
        let partial = |size: Option<u32>, after: Option<Duration>, missing: Option<Duration>| CachePlan::Partial {
            size: size.unwrap_or(DEFAULT_CACHE_SIZE),
            expire_after_write: after.map(|d| d.0),
            missing_expire: missing.unwrap_or(DEFAULT_MISSING_EXPIRE).0,
        };
        match self {
            LookupCache::Size(n) => partial(Some(*n), None, None),
            LookupCache::Options(o) => match o.mode {
                CacheMode::Partial => partial(o.size, o.expire_after_write, o.missing_expire),
                CacheMode::Full => CachePlan::Full { reload: o.reload.unwrap_or(DEFAULT_RELOAD).0 },
            },
        }
    }
}

impl<'de> Deserialize<'de> for LookupCache {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LookupCache, D::Error> {
        use serde::de::{self, Visitor};
        struct V;
        const EXPECTED: &str = "a number of keys like `100000`, or a mapping like \
             `{mode: partial, size: 100000, expire-after-write: 10m}` or `{mode: full, reload: 5m}`";
        impl<'de> Visitor<'de> for V {
            type Value = LookupCache;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LookupCache, E> {
                u32::try_from(v)
                    .map(LookupCache::Size)
                    .map_err(|_| E::custom(format!("expected at most {} cached keys, found {v}", u32::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LookupCache, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("expected {EXPECTED}, found `{v}`"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LookupCache, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("expected {EXPECTED}, found `{v}`"))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<LookupCache, A::Error> {
                LookupCacheOptions::deserialize(de::value::MapAccessDeserializer::new(map)).map(LookupCache::Options)
            }
        }
        d.deserialize_any(V)
    }
}

/// A stage: SQL over sources and earlier stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Stage {
    /// One SELECT. Tables are source and stage names. Event-time windows go in
    /// GROUP BY: `TUMBLE(ts, INTERVAL '1' MINUTE)`, `HOP(ts, slide, size)`,
    /// `SESSION(ts, gap)`; the SELECT list may then use `window_start` and
    /// `window_end`.
    pub sql: String,
    /// How many stage tasks (default 1).
    #[serde(default = "one")]
    pub parallelism: u32,
    /// The column that partitions the stage's state; with GROUP BY, one of
    /// the GROUP BY expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Window options, for a stage with a window in GROUP BY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowOptions>,
}

/// Options of a windowed stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WindowOptions {
    /// How long after the watermark passes a window's end its late records
    /// still update it (default `0s`); later ones are dead-lettered.
    #[serde(default)]
    pub allowed_lateness: Duration,
}

/// A sink: where rows go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Sink {
    /// Upserts into a Cassandra table.
    Cassandra(CassandraSink),
    /// Produces to a Kafka topic.
    Kafka(KafkaSink),
}

impl Sink {
    /// The stage or source this sink reads.
    pub fn from(&self) -> &str {
        match self {
            Sink::Cassandra(s) => &s.from,
            Sink::Kafka(s) => &s.from,
        }
    }
}

/// A Cassandra table (`type: cassandra`); rows are upserts on the primary key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CassandraSink {
    /// The stage or source whose rows are written.
    pub from: String,
    /// The keyspace; created on apply if missing.
    pub keyspace: String,
    /// The table; created on apply if missing.
    pub table: String,
    /// The primary key columns, partition key first; each a column of `from`.
    pub primary_key: Vec<String>,
}

/// A Kafka topic (`type: kafka`), written by an idempotent producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaSink {
    /// The stage or source whose rows are written.
    pub from: String,
    /// The topic; created on apply if missing.
    pub topic: String,
    /// How rows are encoded (default `json`): a JSON object, a header-less
    /// CSV line or an Avro record per row (see docs/sinks.md).
    #[serde(default)]
    pub format: Format,
    /// With `format: avro`: the framing and the schema id to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avro: Option<SinkAvroOptions>,
}

/// How a Kafka sink frames its Avro records (`avro:`). The writer's schema
/// is derived from the columns of the sink's input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SinkAvroOptions {
    /// `confluent` (default): magic byte 0, the 4-byte schema id, the datum;
    /// `plain`: the datum alone.
    #[serde(default)]
    pub wire_format: AvroWireFormat,
    /// With the Confluent framing: the schema id written in each record's
    /// header (required: the id consumers look the writer's schema up by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
}

/// One config test: records into sources, the rows each sink must get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PipelineTest {
    /// What the test shows.
    pub name: String,
    /// Records per source name, in the order they are produced.
    pub inputs: IndexMap<String, Vec<Record>>,
    /// Rows per lookup name: what the lookup's table holds during the test
    /// (a lookup not listed holds no rows).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub lookups: IndexMap<String, Vec<Record>>,
    /// Rows per sink name, in any order.
    pub expect: IndexMap<String, Vec<Record>>,
}

/// One record or row: field name → value.
pub type Record = serde_json::Map<String, serde_json::Value>;
