//! The stage task (`smack stage run`): the loop around a
//! [`StageRuntime`](crate::runtime::StageRuntime) that does its I/O — Kafka
//! in, Cassandra and Kafka out, dead letters, checkpoints on the task's
//! persistent volume, metrics. Library code, so the CLI, the tests and the
//! benchmark drive the very same loop.
//!
//! One task of a stage (task `i` of `N`) runs:
//! - the stage with the earlier stages it reads, fused ([`stage_pipeline`]);
//! - per source, the partitions `assign_partition_ids(ids, i, N)` gives it,
//!   read with an explicit assignment, starting from the checkpoint's
//!   offsets when the volume has one (the window state is restored with
//!   them), else from the group's committed offsets, else the earliest;
//! - on a fresh volume whose group has offsets committed by a stage task,
//!   the committed offsets are **low-water** offsets (per partition, the
//!   lowest one an open window still held) and their metadata a
//!   [`ResumePoint`](crate::runtime::replay::ResumePoint): the task replays
//!   from them up to the checkpoint's positions, emitting nothing, then
//!   restores the checkpoint's watermarks and drops what was emitted before
//!   it ([`crate::runtime::replay`]), so the open windows are rebuilt and a
//!   lost disk loses no result. Dead letters of replayed records are not
//!   sent again (they were sent before that checkpoint); those the lost task
//!   sent after it are read back from the dead-letter ends in the metadata
//!   and skipped. No checkpoint is written until the replay is over;
//! - bounded polls, decoded straight into Arrow; records that do not decode
//!   go to `<pipeline>.<source>.dead-letter` with the reason
//!   (`on-decode-error: dead-letter`), stop the task (`fail`) or are counted
//!   and skipped (`drop`); late rows go to the same topic, reason `late …`;
//! - sink batches written as they come: Cassandra upserts on the declared
//!   primary key, Kafka rows as JSON keyed by the stage key. A sink that is
//!   saturated makes `write` wait, so a slow sink slows consumption (the
//!   consumer's prefetch is bounded too);
//! - every checkpoint interval: flush every sink and the dead letters
//!   first, then write the header, window state and offsets atomically to
//!   the volume ([`smack_storage::CheckpointStore`]), then commit the
//!   low-water offsets with the resume point to Kafka (the volume is the
//!   truth while it lives; Kafka's committed lag therefore includes the
//!   span of the open windows);
//! - on stop (SIGTERM, through the `stop` flag): flush and checkpoint.
//!
//! Killed anywhere and relaunched on the same volume, the task resumes from
//! its last checkpoint and replays what came after: Cassandra rows are
//! upserts on deterministic keys, so they come out identical, and dead
//! letters the crashed run already sent after that checkpoint (read back
//! from the dead-letter topics from the ends the checkpoint recorded) are
//! not sent twice. The Kafka sink is at-least-once across a crash.
//!
//! [`prepare`] creates what a pipeline needs (topics, dead-letter topics,
//! keyspaces, tables); the deployer calls it before launching tasks.

mod checkpoint;
pub mod dead_letter;
pub mod lookup;
pub mod metrics;
mod prepare;
mod run;
mod subset;

pub use checkpoint::TaskCheckpoint;
pub use dead_letter::dead_letter_topic;
pub use metrics::TaskMetrics;
pub use prepare::{
    card_home_lookups, fill_generated_lookups, generated_lookups, prepare, prepare_at, read_leaders, PrepareOptions,
    Prepared,
};
pub use run::{run_task, StageTask, Step, TaskSummary};
pub use subset::stage_pipeline;

use crate::runtime::RuntimeError;
use std::path::PathBuf;
use std::time::Duration;

/// The errors of a stage task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The pipeline cannot run as asked (unknown stage, unsupported sink format, missing flag).
    #[error("{0}")]
    Spec(String),
    /// The runtime refused a batch or a checkpoint.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A Kafka call failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What the task was doing.
        context: String,
        /// The client's error.
        #[source]
        source: Box<smack_connectors::kafka::Error>,
    },
    /// A Cassandra call failed.
    #[error("{context}: {source}")]
    Cassandra {
        /// What the task was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: Box<smack_connectors::cassandra::Error>,
    },
    /// The checkpoint store on the volume failed.
    #[error("checkpoint store: {0}")]
    Storage(#[from] smack_storage::Error),
    /// A checkpoint that cannot be used.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A record did not decode and its source says `on-decode-error: fail`.
    #[error(
        "source {source_name}: record {topic}/{partition}@{offset} does not decode: {reason} \
         (the source says on-decode-error: fail)"
    )]
    DecodeFailed {
        /// The pipeline source.
        source_name: String,
        /// Its topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Why.
        reason: String,
    },
    /// Rows could not be encoded for a Kafka sink or a dead letter.
    #[error("encoding rows as JSON: {0}")]
    Format(#[from] smack_connectors::format::FormatError),
}

impl TaskError {
    fn kafka(context: impl Into<String>) -> impl FnOnce(smack_connectors::kafka::Error) -> TaskError {
        let context = context.into();
        move |source| TaskError::Kafka { context, source: Box::new(source) }
    }

    fn cassandra(context: impl Into<String>) -> impl FnOnce(smack_connectors::cassandra::Error) -> TaskError {
        let context = context.into();
        move |source| TaskError::Cassandra { context, source: Box::new(source) }
    }
}

/// How one stage task runs.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The stage.
    pub stage: String,
    /// This task's index, `0..task_count`.
    pub task_index: u32,
    /// The stage's number of tasks.
    pub task_count: u32,
    /// `host:port[,host:port…]` of the Kafka brokers.
    pub bootstrap: String,
    /// `host:port` of Cassandra nodes (needed when the stage has a Cassandra sink).
    pub cassandra: Vec<String>,
    /// The Cassandra datacenter to prefer.
    pub local_dc: Option<String>,
    /// The checkpoint directory (on the task's persistent volume).
    pub state_dir: PathBuf,
    /// Overrides the pipeline's `checkpoint-interval`.
    pub checkpoint_interval: Option<Duration>,
    /// At most this many records per poll (a micro-batch).
    pub max_batch_records: usize,
    /// Read at most this many records a second (`None`: as fast as the
    /// sinks allow) — to share a machine, or to replay gently.
    pub max_records_per_second: Option<f64>,
    /// How long a poll waits for records.
    pub max_wait: Duration,
    /// A partition silent this long and at its end stops holding the watermark back.
    pub idle_timeout: Duration,
    /// Finish (emit every window, checkpoint, return) once every owned
    /// partition is at its end: for tests and bounded replays.
    pub until_idle: bool,
    /// Cassandra writes in flight at most, per sink.
    pub cassandra_in_flight: usize,
}

impl TaskConfig {
    /// Task `task_index` of `task_count` of `stage`, reading from
    /// `bootstrap`, checkpointing into `state_dir`; the other settings are
    /// defaults (10 000-record batches, 500 ms polls, 30 s idle timeout,
    /// 64 Cassandra writes in flight, the pipeline's checkpoint interval).
    pub fn new(
        stage: impl Into<String>,
        task_index: u32,
        task_count: u32,
        bootstrap: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> TaskConfig {
        TaskConfig {
            stage: stage.into(),
            task_index,
            task_count,
            bootstrap: bootstrap.into(),
            cassandra: Vec::new(),
            local_dc: None,
            state_dir: state_dir.into(),
            checkpoint_interval: None,
            max_batch_records: 10_000,
            max_records_per_second: None,
            max_wait: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
            until_idle: false,
            cassandra_in_flight: 64,
        }
    }
}
