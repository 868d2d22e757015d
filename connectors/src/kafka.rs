//! Kafka through librdkafka (rdkafka): the stage's source (a consumer with an
//! explicit partition assignment, no consumer-group rebalancing), its sink (an
//! idempotent producer whose `flush` means "every record acknowledged") with
//! a dead-letter helper, and the admin client the catalog and the
//! `smack kafka …` commands use (topics, configs, brokers, readiness).
//!
//! Records cross this module as raw bytes ([`KafkaRecord`]); decoding them
//! into Arrow is `crate::format`'s job.
//!
//! Where to start: [`KafkaSource::open`], [`KafkaSink::new`],
//! [`KafkaAdmin::connect`]; the pure parts ([`assign_partitions`],
//! [`ClusterSnapshot`]) are usable without a broker.

mod admin;
mod assignment;
mod client;
mod sink;
mod source;

pub use admin::{
    BrokerAddress, BrokerDescription, BrokerReadiness, ClusterSnapshot, ConfigValue, KafkaAdmin, PartitionDescription,
    TopicDescription, TopicSpec, UnderReplicatedSummary,
};
pub use assignment::{assign_partition_ids, assign_partitions};
pub use client::KafkaClientConfig;
/// The broker's error codes, as [`Error::code`] returns them.
pub use rdkafka::types::RDKafkaErrorCode as ErrorCode;
pub use sink::{DeadLetter, KafkaSink, SinkConfig, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER};
pub use source::{KafkaRecord, KafkaSource, PartitionLag, PollLimits, SourceConfig, StartPosition};

/// The error of every Kafka operation in this module: what was asked (the
/// operation and its target) and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A librdkafka call failed (connecting, assigning, committing, fetching
    /// metadata, …).
    #[error("kafka: {op}: {source}")]
    Client {
        /// What was being done, with its target, e.g. "fetch watermarks of orders/3".
        op: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker answered a request for one resource with an error code.
    #[error("kafka: {op}: the broker refused: {code} ({})", code_hint(*code))]
    Refused {
        /// What was being done, with its target, e.g. "create topic `orders`".
        op: String,
        /// The broker's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// An argument cannot work (an empty topic name, task index out of range, …).
    #[error("kafka: {what}: {reason}")]
    Invalid {
        /// The argument or operation.
        what: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// Something asked for is not in the cluster's metadata.
    #[error("kafka: {what} was not found in the cluster metadata ({hint})")]
    NotFound {
        /// The topic, partition or broker.
        what: String,
        /// What the cluster has instead.
        hint: String,
    },
    /// `flush` found records the brokers never acknowledged.
    #[error("kafka: {failed} record(s) were not acknowledged; the first failure: {first}")]
    Undelivered {
        /// How many records failed since the last flush.
        failed: usize,
        /// The first failure: topic, and the client's reason.
        first: String,
    },
    /// A blocking client call running off the async runtime panicked or was cancelled.
    #[error("kafka: {op}: the blocking call did not complete: {reason}")]
    Blocking {
        /// The operation.
        op: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The broker's error code, when the broker refused.
    pub fn code(&self) -> Option<rdkafka::types::RDKafkaErrorCode> {
        match self {
            Error::Refused { code, .. } => Some(*code),
            Error::Client { source, .. } => source.rdkafka_error_code(),
            _ => None,
        }
    }
}

/// A short hint for the error codes an operator meets most.
fn code_hint(code: rdkafka::types::RDKafkaErrorCode) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    match code {
        C::TopicAlreadyExists => "the topic exists already",
        C::UnknownTopicOrPartition => "no such topic or partition",
        C::InvalidReplicationFactor => "the replication factor is larger than the number of brokers, or below 1",
        C::InvalidPartitions => "the partition count must be at least 1, and can only grow",
        C::InvalidConfig => "a config name or value is not valid for this resource",
        C::PolicyViolation => "the cluster's policy forbids this",
        C::InvalidTopic => "topic names are 1-249 characters of [a-zA-Z0-9._-]",
        C::RequestTimedOut | C::OperationTimedOut => "the cluster did not answer in time",
        _ => "see the Kafka protocol error codes",
    }
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a blocking librdkafka call on tokio's blocking pool.
async fn blocking<T, F>(op: impl Into<String>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let op = op.into();
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Error::Blocking { op, reason: e.to_string() }),
    }
}

/// Wraps an rdkafka error with what was being done.
fn client_err(op: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let op = op.into();
    move |source| Error::Client { op, source }
}
