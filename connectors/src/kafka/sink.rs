//! The Kafka sink: an idempotent producer (`enable.idempotence`: no
//! duplicates or reordering from its own retries) that keeps track of every
//! record it sent, so [`KafkaSink::flush`] returns only once all of them are
//! acknowledged — the step a stage takes before it writes a checkpoint.
//! Also the dead-letter helper: the record as it came, with a reason header.

use super::{client_err, Error, KafkaClientConfig, Result};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// The header holding why a record went to the dead-letter topic.
pub const DLQ_REASON_HEADER: &str = "smack.dlq.reason";
/// The header holding where a dead-lettered record came from: `topic/partition@offset`.
pub const DLQ_SOURCE_HEADER: &str = "smack.dlq.source";

/// How the sink produces.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Where the brokers are.
    pub client: KafkaClientConfig,
    /// At most this many records sent and not yet acknowledged; `send`
    /// waits for acknowledgements beyond it (memory stays bounded).
    pub max_in_flight: usize,
    /// How long the producer batches records before sending (`linger.ms`).
    pub linger: Duration,
    /// How long one record may take to be acknowledged, retries included
    /// (`delivery.timeout.ms`); past it the record counts as failed.
    pub delivery_timeout: Duration,
}

impl SinkConfig {
    /// A sink with 100 000 records in flight at most, 5 ms linger, and a
    /// 2-minute delivery timeout.
    pub fn new(client: KafkaClientConfig) -> Self {
        SinkConfig {
            client,
            max_in_flight: 100_000,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// A record to dead-letter: the bytes as they came, where they came from,
/// and why they could not be processed.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The record's key.
    pub key: Option<&'a [u8]>,
    /// The record's payload.
    pub payload: Option<&'a [u8]>,
    /// Where it came from.
    pub source_topic: &'a str,
    /// Its partition.
    pub source_partition: i32,
    /// Its offset.
    pub source_offset: i64,
    /// Why it is dead-lettered (e.g. the decode error).
    pub reason: &'a str,
}

impl<'a> DeadLetter<'a> {
    /// The dead letter of a record read by a [`super::KafkaSource`].
    pub fn of(record: &'a super::KafkaRecord, reason: &'a str) -> Self {
        DeadLetter {
            key: record.key.as_deref(),
            payload: record.payload.as_deref(),
            source_topic: &record.topic,
            source_partition: record.partition,
            source_offset: record.offset,
            reason,
        }
    }

    /// The value of [`DLQ_SOURCE_HEADER`].
    pub fn source(&self) -> String {
        format!("{}/{}@{}", self.source_topic, self.source_partition, self.source_offset)
    }
}

type Pending = BoxFuture<'static, std::result::Result<(), String>>;

/// An idempotent producer that knows what is still unacknowledged.
pub struct KafkaSink {
    producer: FutureProducer,
    pending: FuturesUnordered<Pending>,
    max_in_flight: usize,
    failed: usize,
    first_failure: Option<String>,
    acknowledged: u64,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("pending", &self.pending.len())
            .field("failed", &self.failed)
            .field("acknowledged", &self.acknowledged)
            .finish()
    }
}

/// The librdkafka settings of the sink.
fn producer_defaults(config: &SinkConfig) -> Vec<(&'static str, String)> {
    vec![
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        ("linger.ms", config.linger.as_millis().to_string()),
        ("delivery.timeout.ms", config.delivery_timeout.as_millis().max(1).to_string()),
    ]
}

impl KafkaSink {
    /// Creates the producer (it connects lazily, on the first send).
    pub fn new(config: SinkConfig) -> Result<KafkaSink> {
        config.client.validate()?;
        let producer: FutureProducer = config
            .client
            .client_config(&producer_defaults(&config))
            .create()
            .map_err(client_err(format!("create an idempotent producer for {}", config.client.bootstrap_servers)))?;
        Ok(KafkaSink {
            producer,
            pending: FuturesUnordered::new(),
            max_in_flight: config.max_in_flight.max(1),
            failed: 0,
            first_failure: None,
            acknowledged: 0,
        })
    }

    /// Records sent and not yet acknowledged (or failed).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Records acknowledged since the sink was created.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Sends one keyed record (partitioned by its key's hash). Returns once
    /// it is queued; [`KafkaSink::flush`] says whether it arrived. Waits for
    /// earlier records first when `max_in_flight` are outstanding.
    pub async fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        self.send_to(topic, None, key, payload, headers).await
    }

    /// Like [`KafkaSink::send`], to an explicit partition (None: by key).
    pub async fn send_to(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        if topic.is_empty() {
            return Err(Error::Invalid { what: "sink topic".into(), reason: "empty (expected a topic name)".into() });
        }
        while self.pending.len() >= self.max_in_flight {
            self.settle_one().await;
        }
        let mut owned_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned_headers = owned_headers.insert(Header { key: k, value: Some(*v) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned_headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    let topic = topic.to_string();
                    self.pending.push(
                        delivery
                            .map(move |r| match r {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(format!("topic `{topic}`: {e}")),
                                Err(_) => Err(format!("topic `{topic}`: the producer was dropped before delivery")),
                            })
                            .boxed(),
                    );
                    return Ok(());
                }
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    if self.pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.settle_one().await;
                    }
                }
                Err((e, _)) => return Err(client_err(format!("send a record to `{topic}`"))(e)),
            }
        }
    }

    /// Sends a dead letter to `dlq_topic`: the original key and payload,
    /// with [`DLQ_REASON_HEADER`] and [`DLQ_SOURCE_HEADER`].
    pub async fn send_dead_letter(&mut self, dlq_topic: &str, letter: &DeadLetter<'_>) -> Result<()> {
        tracing::debug!(source = %letter.source(), reason = letter.reason, dlq_topic, "dead letter");
        let source = letter.source();
        self.send(
            dlq_topic,
            letter.key,
            letter.payload,
            &[(DLQ_REASON_HEADER, letter.reason.as_bytes()), (DLQ_SOURCE_HEADER, source.as_bytes())],
        )
        .await
    }

    /// Waits until every record sent so far is acknowledged by the brokers
    /// (`acks=all`). Errors if any failed since the last flush (counted,
    /// with the first reason); the failures are then cleared.
    pub async fn flush(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.settle_one().await;
        }
        match self.first_failure.take() {
            None => Ok(()),
            Some(first) => {
                let failed = std::mem::take(&mut self.failed);
                Err(Error::Undelivered { failed, first })
            }
        }
    }

    async fn settle_one(&mut self) {
        match self.pending.next().await {
            Some(Ok(())) => self.acknowledged += 1,
            Some(Err(why)) => {
                tracing::warn!(%why, "kafka record not delivered");
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
            None => {}
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            tracing::warn!(in_flight = self.pending.len(), "kafka sink dropped with unacknowledged records");
            let _ = self.producer.flush(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_is_idempotent_with_acks_all() {
        let d = producer_defaults(&SinkConfig::new(KafkaClientConfig::new("h:1")));
        let get = |k: &str| d.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("delivery.timeout.ms"), Some("120000"));
    }

    #[test]
    fn dead_letter_names_its_source() {
        let rec = crate::kafka::KafkaRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 17,
            key: Some(b"k".to_vec()),
            payload: Some(b"{bad".to_vec()),
            timestamp_ms: None,
            headers: vec![],
        };
        let dl = DeadLetter::of(&rec, "expected value at line 1 column 2");
        assert_eq!(dl.source(), "orders/2@17");
        assert_eq!(dl.payload, Some(&b"{bad"[..]));
        assert_eq!(dl.key, Some(&b"k"[..]));
    }
}
