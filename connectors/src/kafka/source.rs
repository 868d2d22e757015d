//! The stage's Kafka source: a consumer that owns an explicit set of
//! partitions of one topic (no group rebalancing), starts from checkpointed
//! offsets or the group's committed ones, hands out bounded batches of raw
//! records, commits offsets explicitly (for lag visibility only: the
//! checkpoint on the task's volume is the truth) and reports its lag.
//!
//! Memory is bounded: librdkafka prefetches into one local queue capped at
//! [`SourceConfig::max_buffered_kbytes`], so a caller that stops polling
//! stops the fetching too.

use super::{blocking, client_err, Error, KafkaClientConfig, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where each owned partition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The group's committed offset; the earliest offset where none is committed.
    Committed,
    /// The earliest offset still in the log.
    Earliest,
    /// The end of the log: only records produced from now on.
    Latest,
    /// The next offset to read per partition (a checkpoint's offsets);
    /// partitions not listed start as [`StartPosition::Committed`].
    Offsets(BTreeMap<i32, i64>),
}

/// What a source reads and how.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Where the brokers are.
    pub client: KafkaClientConfig,
    /// The consumer group offsets are committed under (never used for rebalancing).
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The partitions this task owns (see [`super::assign_partitions`]).
    pub partitions: Vec<i32>,
    /// Where to start.
    pub start: StartPosition,
    /// The cap on prefetched, not yet polled records, in KiB (librdkafka's
    /// `queued.max.messages.kbytes`).
    pub max_buffered_kbytes: u32,
}

impl SourceConfig {
    /// A source of `partitions` of `topic`, starting from the committed
    /// offsets, with at most 16 MiB prefetched.
    pub fn new(
        client: KafkaClientConfig,
        group_id: impl Into<String>,
        topic: impl Into<String>,
        partitions: Vec<i32>,
    ) -> Self {
        SourceConfig {
            client,
            group_id: group_id.into(),
            topic: topic.into(),
            partitions,
            start: StartPosition::Committed,
            max_buffered_kbytes: 16 * 1024,
        }
    }

    /// With another start position.
    pub fn starting_at(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }
}

/// How much one [`KafkaSource::poll_batch`] may return, and how long it may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollLimits {
    /// At most this many records.
    pub max_records: usize,
    /// Stop once the keys and payloads add up to this many bytes (the record
    /// that crosses the limit is included, so one huge record still passes).
    pub max_bytes: usize,
    /// Return after this long, with whatever arrived (possibly nothing).
    pub max_wait: Duration,
}

impl Default for PollLimits {
    fn default() -> Self {
        PollLimits { max_records: 10_000, max_bytes: 8 << 20, max_wait: Duration::from_millis(500) }
    }
}

/// One record as read from Kafka: raw bytes and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload (None for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp (create or log-append time), ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The headers, in order (a null header value reads as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }
}

/// The lag of one owned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The next offset this source will read (its position; the committed
    /// offset or the log start if it has read nothing yet).
    pub position: i64,
    /// The offset the next produced record will get.
    pub high_watermark: i64,
    /// `high_watermark - position`, never negative.
    pub lag: i64,
}

/// A consumer of an explicit set of partitions of one topic.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    topic: Arc<str>,
    partitions: Vec<i32>,
    /// The next offset to read per partition, as far as this source knows.
    next: BTreeMap<i32, i64>,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("next", &self.next)
            .finish()
    }
}

/// The librdkafka settings of a source.
fn consumer_defaults(config: &SourceConfig) -> Vec<(&'static str, String)> {
    vec![
        ("group.id", config.group_id.clone()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("enable.partition.eof", "false".into()),
        ("allow.auto.create.topics", "false".into()),
        ("queued.max.messages.kbytes", config.max_buffered_kbytes.max(1).to_string()),
        // Fetch ahead while the queue holds fewer than this: at 1,000 a
        // partition was read at ~7,000 records/s, waiting on fetch round
        // trips (BENCHMARKS.md). Memory stays capped by the kbytes limit.
        ("queued.min.messages", "100000".into()),
    ]
}

/// The librdkafka offset a partition starts at.
fn start_offset(start: &StartPosition, partition: i32) -> Offset {
    match start {
        StartPosition::Committed => Offset::Stored,
        StartPosition::Earliest => Offset::Beginning,
        StartPosition::Latest => Offset::End,
        StartPosition::Offsets(m) => m.get(&partition).map_or(Offset::Stored, |o| Offset::Offset(*o)),
    }
}

fn validate(config: &SourceConfig) -> Result<Vec<i32>> {
    config.client.validate()?;
    let bad = |what: &str, reason: String| Err(Error::Invalid { what: what.into(), reason });
    if config.topic.is_empty() {
        return bad("source topic", "empty (expected a topic name)".into());
    }
    if config.group_id.is_empty() {
        return bad("source group id", format!("empty for topic `{}` (expected a group id)", config.topic));
    }
    if let Some(p) = config.partitions.iter().find(|p| **p < 0) {
        return bad("source partitions", format!("partition {p} of `{}` is negative", config.topic));
    }
    if let StartPosition::Offsets(m) = &config.start {
        if let Some((p, o)) = m.iter().find(|(_, o)| **o < 0) {
            return bad("source start offsets", format!("offset {o} for `{}`/{p} is negative", config.topic));
        }
    }
    let mut parts = config.partitions.clone();
    parts.sort_unstable();
    parts.dedup();
    Ok(parts)
}

impl KafkaSource {
    /// Connects, checks that the topic has every owned partition, and
    /// assigns them at their start offsets.
    pub async fn open(config: SourceConfig) -> Result<KafkaSource> {
        let partitions = validate(&config)?;
        let topic: Arc<str> = config.topic.as_str().into();
        let consumer: StreamConsumer = config
            .client
            .client_config(&consumer_defaults(&config))
            .create()
            .map_err(client_err(format!("create a consumer for `{topic}` (group `{}`)", config.group_id)))?;
        let consumer = Arc::new(consumer);
        let timeout = config.client.timeout;

        let (c, t) = (consumer.clone(), topic.clone());
        let have: Vec<i32> = blocking(format!("metadata of `{topic}`"), move || {
            let md =
                c.fetch_metadata(Some(&t), timeout).map_err(client_err(format!("fetch metadata of topic `{t}`")))?;
            let Some(mt) = md.topics().iter().find(|mt| mt.name() == &*t) else {
                return Err(Error::NotFound { what: format!("topic `{t}`"), hint: "no such topic".into() });
            };
            if let Some(err) = mt.error() {
                return Err(Error::NotFound { what: format!("topic `{t}`"), hint: format!("{err:?}") });
            }
            Ok(mt.partitions().iter().map(|p| p.id()).collect())
        })
        .await?;
        if let Some(p) = partitions.iter().find(|p| !have.contains(p)) {
            return Err(Error::NotFound {
                what: format!("partition {p} of topic `{topic}`"),
                hint: format!("the topic has {} partition(s): {have:?}", have.len()),
            });
        }

        let mut tpl = TopicPartitionList::new();
        let mut next = BTreeMap::new();
        for p in &partitions {
            let offset = start_offset(&config.start, *p);
            if let Offset::Offset(o) = offset {
                next.insert(*p, o);
            }
            tpl.add_partition_offset(&topic, *p, offset)
                .map_err(client_err(format!("set the start offset of `{topic}`/{p}")))?;
        }
        consumer.assign(&tpl).map_err(client_err(format!("assign `{topic}` partitions {partitions:?}")))?;
        tracing::info!(%topic, ?partitions, start = ?config.start, "kafka source assigned");
        Ok(KafkaSource { consumer, topic, partitions, next, timeout })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The owned partitions, sorted.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// The next offset to read per partition, for the partitions whose
    /// position is known (read from, or started at an explicit offset): what
    /// a checkpoint stores.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.next.clone()
    }

    /// Waits for records, and returns them once `limits` are reached or
    /// `limits.max_wait` has passed (possibly with none).
    pub async fn poll_batch(&mut self, limits: &PollLimits) -> Result<Vec<KafkaRecord>> {
        let deadline = Instant::now() + limits.max_wait;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < limits.max_records.max(1) && bytes < limits.max_bytes.max(1) {
            let msg = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => break,
                Ok(r) => r.map_err(client_err(format!("poll topic `{}`", self.topic)))?,
            };
            let headers = msg
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            let rec = KafkaRecord {
                topic: self.topic.clone(),
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                timestamp_ms: msg.timestamp().to_millis(),
                headers,
            };
            self.next.insert(rec.partition, rec.offset + 1);
            bytes += rec.size();
            out.push(rec);
        }
        Ok(out)
    }

    /// Commits `offsets` (next offset to read, per partition) to the group,
    /// asynchronously: this is for lag visibility, the checkpoint is the truth.
    pub fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .map_err(client_err(format!("commit offset {o} of `{}`/{p}", self.topic)))?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(client_err(format!("commit offsets {offsets:?} of `{}`", self.topic)))
    }

    /// Commits, per partition, an offset with a metadata string (Kafka keeps
    /// it with the offset; its default limit is 4096 bytes), asynchronously.
    pub fn commit_with_metadata(&self, offsets: &BTreeMap<i32, (i64, String)>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, (o, meta)) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .map_err(client_err(format!("commit offset {o} of `{}`/{p}", self.topic)))?;
            if let Some(mut e) = tpl.find_partition(&self.topic, *p) {
                e.set_metadata(meta);
            }
        }
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(client_err(format!("commit offsets of `{}` with metadata", self.topic)))
    }

    /// The group's committed offsets of the owned partitions with their
    /// metadata strings (None where nothing is committed).
    pub async fn committed_with_metadata(&self) -> Result<BTreeMap<i32, Option<(i64, String)>>> {
        let (c, topic, parts, timeout) =
            (self.consumer.clone(), self.topic.clone(), self.partitions.clone(), self.timeout);
        blocking(format!("committed offsets of `{topic}`"), move || {
            let mut tpl = TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition(&topic, *p);
            }
            let got = c
                .committed_offsets(tpl, timeout)
                .map_err(client_err(format!("read committed offsets of `{topic}`")))?;
            Ok(got
                .elements_for_topic(&topic)
                .iter()
                .map(|e| {
                    let o = match e.offset() {
                        Offset::Offset(o) => Some((o, e.metadata().to_string())),
                        _ => None,
                    };
                    (e.partition(), o)
                })
                .collect())
        })
        .await
    }

    /// Stops fetching `partitions` until [`KafkaSource::resume`] (records
    /// already fetched may still arrive).
    pub fn pause(&self, partitions: &[i32]) -> Result<()> {
        self.consumer
            .pause(&self.list(partitions))
            .map_err(client_err(format!("pause `{}` {partitions:?}", self.topic)))
    }

    /// Fetches paused `partitions` again.
    pub fn resume(&self, partitions: &[i32]) -> Result<()> {
        self.consumer
            .resume(&self.list(partitions))
            .map_err(client_err(format!("resume `{}` {partitions:?}", self.topic)))
    }

    fn list(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        tpl
    }

    /// Commits [`KafkaSource::positions`].
    pub fn commit_positions(&self) -> Result<()> {
        self.commit(&self.next)
    }

    /// The group's committed offsets of the owned partitions (None where
    /// nothing is committed), as the brokers have them now.
    pub async fn committed(&self) -> Result<BTreeMap<i32, Option<i64>>> {
        let (c, topic, parts, timeout) =
            (self.consumer.clone(), self.topic.clone(), self.partitions.clone(), self.timeout);
        blocking(format!("committed offsets of `{topic}`"), move || committed_offsets(&c, &topic, &parts, timeout))
            .await
    }

    /// The lag of each owned partition: high watermark − position.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let (c, topic, parts, timeout) =
            (self.consumer.clone(), self.topic.clone(), self.partitions.clone(), self.timeout);
        let known = self.next.clone();
        blocking(format!("lag of `{topic}`"), move || {
            let committed = if parts.iter().all(|p| known.contains_key(p)) {
                BTreeMap::new()
            } else {
                committed_offsets(&c, &topic, &parts, timeout)?
            };
            parts
                .iter()
                .map(|p| {
                    let (low, high) = c
                        .fetch_watermarks(&topic, *p, timeout)
                        .map_err(client_err(format!("fetch watermarks of `{topic}`/{p}")))?;
                    Ok(partition_lag(*p, known.get(p).copied(), committed.get(p).copied().flatten(), low, high))
                })
                .collect()
        })
        .await
    }
}

/// A partition's lag: its position is what this source knows, else the
/// committed offset, else the log start.
fn partition_lag(partition: i32, known: Option<i64>, committed: Option<i64>, low: i64, high: i64) -> PartitionLag {
    let position = known.or(committed).unwrap_or(low);
    PartitionLag { partition, position, high_watermark: high, lag: (high - position).max(0) }
}

fn committed_offsets(
    c: &StreamConsumer,
    topic: &str,
    parts: &[i32],
    timeout: Duration,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition(topic, *p);
    }
    let got = c.committed_offsets(tpl, timeout).map_err(client_err(format!("read committed offsets of `{topic}`")))?;
    Ok(got
        .elements_for_topic(topic)
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), o)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SourceConfig {
        SourceConfig::new(KafkaClientConfig::new("127.0.0.1:9092"), "g", "t", vec![3, 1, 1])
    }

    #[test]
    fn start_offsets_follow_the_position() {
        let m = StartPosition::Offsets([(1, 42)].into());
        assert_eq!(start_offset(&m, 1), Offset::Offset(42));
        assert_eq!(start_offset(&m, 2), Offset::Stored);
        assert_eq!(start_offset(&StartPosition::Earliest, 0), Offset::Beginning);
        assert_eq!(start_offset(&StartPosition::Latest, 0), Offset::End);
        assert_eq!(start_offset(&StartPosition::Committed, 0), Offset::Stored);
    }

    #[test]
    fn validation_sorts_partitions_and_refuses_bad_input() {
        assert_eq!(validate(&cfg()).unwrap(), vec![1, 3]);
        let mut c = cfg();
        c.topic.clear();
        assert!(validate(&c).unwrap_err().to_string().contains("source topic"));
        let mut c = cfg();
        c.partitions.push(-2);
        assert!(validate(&c).unwrap_err().to_string().contains("partition -2"));
        let c = cfg().starting_at(StartPosition::Offsets([(1, -5)].into()));
        assert!(validate(&c).unwrap_err().to_string().contains("offset -5"));
        let mut c = cfg();
        c.group_id.clear();
        assert!(validate(&c).unwrap_err().to_string().contains("group id"));
    }

    #[test]
    fn consumer_never_commits_or_rebalances_by_itself() {
        let d = consumer_defaults(&cfg());
        let get = |k: &str| d.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.auto.commit"), Some("false"));
        assert_eq!(get("enable.auto.offset.store"), Some("false"));
        assert_eq!(get("queued.max.messages.kbytes"), Some("16384"));
    }

    #[test]
    fn lag_falls_back_from_position_to_committed_to_log_start() {
        assert_eq!(partition_lag(0, Some(7), Some(3), 0, 10).lag, 3);
        assert_eq!(partition_lag(0, None, Some(3), 0, 10).lag, 7);
        let l = partition_lag(2, None, None, 4, 10);
        assert_eq!((l.partition, l.position, l.high_watermark, l.lag), (2, 4, 10, 6));
        // A position past a (stale) high watermark is no negative lag.
        assert_eq!(partition_lag(0, Some(12), None, 0, 10).lag, 0);
    }

    #[test]
    fn record_size_counts_key_and_payload() {
        let r = KafkaRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: Some(b"ab".to_vec()),
            payload: Some(b"cde".to_vec()),
            timestamp_ms: None,
            headers: vec![("h".into(), b"v".to_vec())],
        };
        assert_eq!(r.size(), 5);
        assert_eq!(r.header("h"), Some(&b"v"[..]));
        assert_eq!(r.header("x"), None);
    }
}
