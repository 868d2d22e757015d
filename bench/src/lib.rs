//! smack-bench: the whole-system benchmark harness behind `smack bench
//! pipeline`: throughput and latency of the data plane, for BENCHMARKS.md
//! (a benchmark, never a test). Build it optimised:
//! `CARGO_TARGET_DIR=/work/.target-release cargo build --release -p smack`.
//!
//! Start with [`PipelineBench`] and [`run_pipeline`]; the phases are in
//! `pipeline`, the card lookups in `cards`, the latency run in `latency`.
//! Must not depend on: the binary, or `smack-operator` directly (it drives
//! the data plane alone, with no cluster); DataFusion and Arrow only
//! through `smack-pipelines` and `smack-connectors`; `anyhow` (its one error
//! is [`BenchError`]).
//!
//! In one run, on the same seeded fraud events (`smack_pipelines::generate`,
//! a population of `--cards` cards whose home countries answer the
//! pipeline's lookups):
//! - **CPU only** (always): the events' JSON payloads, held in memory, are
//!   cut into poll-sized batches and (1) decoded into Arrow alone, (1')
//!   the same events as Confluent-framed Avro of the source's derived
//!   writer schema (the records `smack generate --format avro` produces)
//!   decoded alone, then (2) the JSON decoded and pushed through a
//!   [`StageRuntime`](smack_pipelines::runtime::StageRuntime) of the pipeline file (the fraud example's
//!   hopping-window stage, its lookup answered from memory); the rows the
//!   sinks would get are counted and dropped.
//!   Events/s of wall time and per CPU-second of the process (user + system,
//!   from `/proc/self/stat`), so the figure is "per core" whatever threads
//!   the runtime used.
//! - **Kafka** (with `--bootstrap`): the events are produced to a fresh topic
//!   with the [`KafkaSink`](smack_connectors::kafka::KafkaSink); then the topic is read from the start with a
//!   [`KafkaSource`](smack_connectors::kafka::KafkaSource) poll loop: (a) raw, counting records (the ceiling),
//!   (b) decode → runtime per poll, and the ratio (b)/(a).
//! - **Cassandra** (with `--cassandra` too): (c) the stage task itself
//!   ([`StageTask`](smack_pipelines::task::StageTask), the loop `smack stage run` drives) over the same topic:
//!   decode → windowed aggregation → lookups read from Cassandra (a full
//!   cache, `benches/pipeline-latency.yaml`, reads the table whole when the
//!   task opens, outside the timed part) → the
//!   Cassandra and Kafka sinks, dead letters and checkpoints, to the end of
//!   the topic. Its pipeline is a copy of the file with its own topics,
//!   keyspaces and group (suffixed with the process id). Its card lookups
//!   read a table named by the seed and the card count
//!   (`<keyspace>_benchcards.<table>_s<seed>_c<cards>`, kept between runs):
//!   filled with unlogged batches of upserts (`--fill-batch` rows,
//!   `--fill-in-flight` batches at once; the rate is printed) unless a
//!   marker row in `<keyspace>_benchcards.bench_fills`, written when a fill
//!   completes, names this seed and card count (and three sample cards read
//!   back have their homes); `--refill` fills it anyway.
//! - **Latency** (with `--latency-seconds N`): a stage task runs in this
//!   process while events are produced at `--latency-rate` events/s for N
//!   seconds, each event's time being its produce time (the producer waits
//!   for it). The task is opened first (its partitions assigned, a full
//!   lookup cache read whole) and the first event is due only half a second
//!   after that (and after the producer's generator is built), so the
//!   one-time costs are not in the latency. A window's row can exist once
//!   every partition has a record at or after `window end + allowed
//!   lateness + max out-of-orderness` (the watermark then passes the
//!   window's end plus the lateness); the
//!   producer notes when it sent that record on each partition, the latest
//!   of those is the row's *due* time. After a drain the rows are read back
//!   with `WRITETIME` (the microsecond the Cassandra coordinator applied the
//!   write: the driver sends no client timestamp), and `writetime − due` is
//!   the produce → row latency of each row (same machine, one clock). The
//!   window length and the lateness are not latency: they are the query's.

mod cards;
mod copy;
mod latency;
mod measure;
mod pipeline;

use cards::{FillOptions, Population};
use std::path::PathBuf;

/// What `smack bench pipeline` runs (the CLI's flags, with their meaning).
#[derive(Debug, Clone)]
pub struct PipelineBench {
    /// The pipeline file whose first source and stages are run.
    pub file: PathBuf,
    /// How many fraud events.
    pub events: u64,
    /// Records per micro-batch (one poll).
    pub batch: usize,
    /// Event-time rate of the generator, events/s (sets how many events
    /// share a window).
    pub event_rate: f64,
    /// The generator's seed.
    pub seed: u64,
    /// Kafka bootstrap servers: also produce the events and consume them back.
    pub bootstrap: Option<String>,
    /// Partitions of the bench topic (read by one consumer).
    pub partitions: i32,
    /// A librdkafka property for both consumers, KEY=VALUE (repeatable),
    /// e.g. `queued.min.messages=100000` to probe the ceiling.
    pub consumer_properties: Vec<String>,
    /// The card population (the pipeline's lookups hold each card's home
    /// country). 100,000: the example generator's, and its lookup cache.
    pub cards: u64,
    /// Cassandra contact points, host:port,...: also run the stage task
    /// with its Cassandra sink (needs --bootstrap).
    pub cassandra: Vec<String>,
    /// The Cassandra datacenter (keyspaces are replicated once in it).
    pub local_dc: String,
    /// Measure produce → row latency for this many seconds of production
    /// (needs --bootstrap and --cassandra); 0 skips it.
    pub latency_seconds: u64,
    /// Events produced per second during the latency run.
    pub latency_rate: f64,
    /// Records per micro-batch of the stage task during the latency run (a
    /// poll returns when it has this many, or after 500 ms).
    pub latency_batch: usize,
    /// Cassandra writes in flight at most, per sink, in the stage tasks (c)
    /// and the latency run.
    pub cassandra_in_flight: usize,
    /// Rows due within this many seconds of the latency run's start are
    /// reported per window but left out of the percentiles (a partial lookup
    /// cache is cold then: every new card is a Cassandra read).
    pub latency_warmup_seconds: u64,
    /// How long the latency run waits after the last event before reading
    /// the rows back.
    pub latency_drain_seconds: u64,
    /// Rows per unlogged batch when filling the card lookup table (1: one
    /// upsert per request). Above 10, Cassandra's default
    /// `unlogged_batch_across_partitions_warn_threshold`, every batch draws
    /// a warning that the driver logs (silence it with
    /// `RUST_LOG=info,scylla=error`).
    pub fill_batch: usize,
    /// Batches in flight at most when filling the card lookup table.
    pub fill_in_flight: usize,
    /// Fill the card lookup table even when a marker says an earlier run
    /// filled it with the same cards.
    pub refill: bool,
}

impl PipelineBench {
    fn population(&self) -> Population {
        Population { seed: self.seed, cards: self.cards }
    }

    fn fill(&self) -> FillOptions {
        FillOptions { batch: self.fill_batch, in_flight: self.fill_in_flight, refill: self.refill }
    }
}

/// Runs the pipeline bench, printing each phase's figures as it ends.
pub async fn run_pipeline(bench: PipelineBench) -> Result<(), BenchError> {
    pipeline::pipeline(bench).await
}

/// Why a bench run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The bench cannot run as asked (a flag, the pipeline file).
    #[error("{0}")]
    Refused(String),
    /// A step failed; `what` says which.
    #[error("{what}: {source}")]
    Step {
        /// What the bench was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Kafka call failed.
    #[error(transparent)]
    Kafka(#[from] smack_connectors::kafka::Error),
    /// A Cassandra call failed.
    #[error(transparent)]
    Cassandra(#[from] smack_connectors::cassandra::Error),
    /// Records could not be decoded as asked.
    #[error(transparent)]
    Format(#[from] smack_connectors::format::FormatError),
    /// The stage runtime refused a batch.
    #[error(transparent)]
    Runtime(#[from] smack_pipelines::runtime::RuntimeError),
    /// The stage task failed.
    #[error(transparent)]
    Task(#[from] smack_pipelines::task::TaskError),
    /// Events could not be written as Avro.
    #[error(transparent)]
    Payload(#[from] smack_pipelines::generate::PayloadError),
}

/// `bail!` for the bench: returns a [`BenchError::Refused`] with the message.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::BenchError::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;

/// Says what the bench was doing when a call failed.
pub(crate) trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, BenchError>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, BenchError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T, BenchError> {
        self.map_err(|e| BenchError::Step { what: what.into(), source: Box::new(e) })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, BenchError> {
        self.map_err(|e| BenchError::Step { what: what().into(), source: Box::new(e) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T, BenchError> {
        self.ok_or_else(|| BenchError::Refused(what.into()))
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, BenchError> {
        self.ok_or_else(|| BenchError::Refused(what().into()))
    }
}
