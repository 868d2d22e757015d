//! The task loop itself: [`StageTask::open`] (restore, assign, seek),
//! [`StageTask::step`] (one poll of every source, decoded, pushed, written),
//! [`StageTask::checkpoint`] (flush, store, commit) and [`run_task`], which
//! steps until stopped or, with `until_idle`, until the input is consumed.

use super::checkpoint::TaskCheckpoint;
use super::dead_letter::{dead_letter_topic, decode_reason, late_source, reason_label, source_partition, SentAlready};
use super::metrics::{label, labels2, TaskMetrics};
use super::subset::stage_pipeline;
use super::{TaskConfig, TaskError};
use crate::runtime::replay::{Replay, ResumePoint};
use crate::runtime::{Output, StageRuntime};
use crate::spec::{OnDecodeError, PipelineSpec, Sink, Source};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use indexmap::IndexMap;
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, CassandraSink, SinkOptions};
use smack_connectors::format::{encode_json, Decoder, Encoder};
use smack_connectors::kafka::{
    assign_partition_ids, KafkaAdmin, KafkaClientConfig, KafkaRecord, KafkaSink, KafkaSource, PartitionLag, PollLimits,
    SinkConfig, SourceConfig, StartPosition, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER,
};
use smack_storage::CheckpointStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a task has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSummary {
    /// The checkpoint epoch it resumed from, if the volume had one.
    pub resumed_from: Option<u64>,
    /// Records read (all sources).
    pub records_in: u64,
    /// Records and rows sent to dead-letter topics.
    pub dead_lettered: u64,
    /// Dead letters not sent again because the crashed run had sent them.
    pub dead_letters_skipped: u64,
    /// Records that did not decode and were dropped.
    pub dropped: u64,
    /// Rows handed to sinks.
    pub rows_out: u64,
    /// Checkpoints written by this run.
    pub checkpoints: u64,
    /// The last committed epoch.
    pub epoch: Option<u64>,
    /// True once the input was finished (`until_idle`).
    pub finished: bool,
    /// Records replayed from the low-water offsets committed to Kafka to
    /// rebuild window state (a fresh volume).
    pub replayed: u64,
}

impl TaskSummary {
    /// One line for the log.
    pub fn line(&self) -> String {
        format!(
            "{} records in, {} rows out, {} dead-lettered ({} skipped as already sent), {} dropped, {} checkpoints (last epoch {}){}{}",
            self.records_in,
            self.rows_out,
            self.dead_lettered,
            self.dead_letters_skipped,
            self.dropped,
            self.checkpoints,
            self.epoch.map_or("none".to_string(), |e| e.to_string()),
            self.resumed_from.map_or(String::new(), |e| format!(", resumed from epoch {e}")),
            if self.replayed > 0 {
                format!(", {} records replayed from Kafka to rebuild the window state", self.replayed)
            } else {
                String::new()
            },
        )
    }
}

/// The lag of each partition of source `s`.
async fn source_lag(s: &SourceIo) -> Result<Vec<PartitionLag>, TaskError> {
    s.consumer.lag().await.map_err(TaskError::kafka(format!("read the lag of source `{}`", s.name)))
}

/// What a [`StageTask::step`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More to do.
    Continue,
    /// `until_idle`: every partition was at its end; every window was
    /// emitted and the last checkpoint written.
    Finished,
}

struct SourceIo {
    name: String,
    topic: String,
    dead_letters: String,
    consumer: KafkaSource,
    decoder: Decoder,
    on_error: OnDecodeError,
    partitions: Vec<i32>,
    last_record: BTreeMap<i32, Instant>,
    idle: BTreeSet<i32>,
}

enum SinkIo {
    Cassandra(Box<CassandraSink>),
    Kafka { topic: String, encoder: Encoder },
}

/// One stage task: a runtime and its I/O. See the module doc of `task`.
pub struct StageTask {
    spec: PipelineSpec,
    config: TaskConfig,
    rt: StageRuntime,
    sources: Vec<SourceIo>,
    sinks: IndexMap<String, SinkIo>,
    /// The stage key: the Kafka key of sink rows and late rows.
    key: Option<String>,
    producer: KafkaSink,
    /// Per dead-letter topic, a consumer of all its partitions used only
    /// for their end offsets.
    dead_letter_probes: BTreeMap<String, KafkaSource>,
    sent_already: SentAlready,
    store: CheckpointStore,
    interval: Duration,
    last_checkpoint: Instant,
    /// How long the last checkpoint took (it stalls the task that long).
    last_checkpoint_took: Duration,
    last_idle_check: Instant,
    metrics: TaskMetrics,
    summary: TaskSummary,
    /// Failed polls in a row.
    poll_errors: u32,
    /// While rebuilding state on a fresh volume: per (source index,
    /// partition) still replaying, the checkpoint's position to replay up to.
    replay_until: BTreeMap<(usize, i32), i64>,
    /// Records read past their partition's replay while others still
    /// replay (their partitions are paused), processed once it ends.
    held: Vec<(usize, i32, Vec<KafkaRecord>)>,
}

/// Failed polls in a row (about 200 ms apart) before the task gives up.
const MAX_POLL_ERRORS: u32 = 150;

/// `fetch.wait.max.ms` of the task's consumers. Their offset queries (the
/// lag read by the idle check, at the end of the input and at each
/// checkpoint, and the dead-letter ends) wait on the broker behind the
/// fetch long-poll of the same connection: with librdkafka's default of
/// 500 ms, a consumer that had prefetched everything paid up to 500 ms per
/// partition and query, and a 6-partition task spent seconds per step.
const FETCH_WAIT_MS: &str = "100";

/// How often silent partitions are checked for being at their end (a lag
/// query per source): a quarter of the idle timeout, 1 to 10 s.
fn idle_check_every(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

impl std::fmt::Debug for StageTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageTask")
            .field("pipeline", &self.spec.name)
            .field("stage", &self.config.stage)
            .field("task", &(self.config.task_index, self.config.task_count))
            .field("summary", &self.summary)
            .finish()
    }
}

/// A session to the task's Cassandra contact points, for `what` (a sink or
/// a lookup, named in the error when none was given).
async fn connect_cassandra(config: &TaskConfig, what: &str) -> Result<CassandraSession, TaskError> {
    if config.cassandra.is_empty() {
        return Err(TaskError::Spec(format!(
            "{what} reads or writes Cassandra, but no Cassandra contact point was given (--cassandra)"
        )));
    }
    let mut cc = CassandraConfig::new(&config.cassandra);
    cc.local_dc = config.local_dc.clone();
    CassandraSession::connect(&cc).await.map_err(TaskError::cassandra("connect to Cassandra"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl StageTask {
    /// Builds the runtime of the task's part of `spec`, restores the
    /// volume's checkpoint if any, assigns and seeks the sources, and
    /// prepares the sinks. Topics and tables must exist ([`super::prepare`]).
    pub async fn open(spec: &PipelineSpec, config: TaskConfig, metrics: TaskMetrics) -> Result<StageTask, TaskError> {
        let sub = stage_pipeline(spec, &config.stage)?;
        // Lookups the stages join are read from Cassandra (see `lookup`).
        let mut session: Option<CassandraSession> = None;
        let joined = super::lookup::joined_lookups(&sub);
        if let Some(first) = joined.first() {
            session = Some(connect_cassandra(&config, &format!("lookup `{first}`")).await?);
        }
        let providers = match session.as_ref() {
            Some(s) => super::lookup::cassandra_lookups(&sub, s, &metrics).await?,
            None => Default::default(),
        };
        let mut rt = StageRuntime::with_lookups(&sub, &providers).await?;
        let store = CheckpointStore::open(&config.state_dir)?;
        let client = KafkaClientConfig::new(config.bootstrap.clone())
            .with_client_id(format!("smack-{}-{}-{}", sub.name, config.stage, config.task_index));
        let admin = KafkaAdmin::connect(&client).await.map_err(TaskError::kafka("connect to Kafka"))?;
        let consumers = client.clone().with_property("fetch.wait.max.ms", FETCH_WAIT_MS);

        let mut summary = TaskSummary::default();
        let mut dead_letter_ends = BTreeMap::new();
        let fresh_volume = store.latest()?.is_none();
        let mut replay = Replay::default();
        let mut replay_until = BTreeMap::new();
        if let Some((epoch, bytes)) = store.latest()? {
            let (header, runtime) = TaskCheckpoint::decode(&bytes)?;
            header.check_owner(&sub.name, &config.stage, config.task_index, config.task_count)?;
            rt.restore(runtime)?;
            dead_letter_ends = header.dead_letter_ends;
            summary.resumed_from = Some(epoch);
            summary.epoch = Some(epoch);
            tracing::info!(epoch, dir = %store.dir().display(), "resuming from the checkpoint on the volume");
        }
        let offsets = rt.offsets();

        let group = format!("smack.{}.{}", sub.name, config.stage);
        let mut sources = Vec::new();
        let mut dead_letter_probes = BTreeMap::new();
        let mut sent_already = SentAlready::default();
        for (name, source) in &sub.sources {
            let Source::Kafka(k) = source;
            let desc = admin
                .describe_topic(&k.topic)
                .await
                .map_err(TaskError::kafka(format!("read the partitions of source `{name}`")))?;
            let ids: Vec<i32> = desc.partitions.iter().map(|p| p.id).collect();
            let partitions = assign_partition_ids(&ids, config.task_index, config.task_count)
                .map_err(TaskError::kafka(format!("assign the partitions of source `{name}`")))?;
            rt.assign_partitions(name, &partitions)?;
            let mut start: BTreeMap<i32, i64> = offsets
                .iter()
                .filter(|((s, p), _)| s == name && partitions.contains(p))
                .map(|((_, p), o)| (*p, *o))
                .collect();
            let unknown: Vec<i32> = partitions.iter().copied().filter(|p| !start.contains_key(p)).collect();
            if !unknown.is_empty() {
                for (p, (offset, point)) in committed_or_earliest(&client, &group, &k.topic, unknown).await? {
                    start.insert(p, offset);
                    // A fresh volume: the committed offset is the low-water
                    // offset and the metadata says how to rebuild from it.
                    let Some(point) = point.filter(|_| fresh_volume) else { continue };
                    replay.add(name, p, &point);
                    if point.pos > offset {
                        replay_until.insert((sources.len(), p), point.pos);
                    }
                    let ends: &mut BTreeMap<i32, i64> =
                        dead_letter_ends.entry(dead_letter_topic(&sub.name, name)).or_default();
                    for (dp, end) in &point.dead_letters {
                        ends.entry(*dp).and_modify(|e| *e = (*e).min(*end)).or_insert(*end);
                    }
                }
            }
            let consumer = KafkaSource::open(
                SourceConfig::new(consumers.clone(), group.clone(), k.topic.clone(), partitions.clone())
                    .starting_at(StartPosition::Offsets(start)),
            )
            .await
            .map_err(TaskError::kafka(format!("open source `{name}`")))?;
            let dead_letters = dead_letter_topic(&sub.name, name);
            let dl_desc = admin
                .describe_topic(&dead_letters)
                .await
                .map_err(TaskError::kafka(format!("read the dead-letter topic of source `{name}`")))?;
            let dl_ids: Vec<i32> = dl_desc.partitions.iter().map(|p| p.id).collect();
            if let Some(ends) = dead_letter_ends.get(&dead_letters) {
                read_sent_already(&client, &dead_letters, ends, &k.topic, &partitions, &mut sent_already).await?;
            }
            if !dead_letter_probes.contains_key(&dead_letters) {
                // Explicit start offsets, so its lag (the end offsets) needs
                // no group lookup; never polled, with a minimal prefetch.
                let start = StartPosition::Offsets(dl_ids.iter().map(|p| (*p, 0)).collect());
                let mut cfg = SourceConfig::new(
                    consumers.clone(),
                    format!("{group}.dead-letter-ends"),
                    dead_letters.clone(),
                    dl_ids,
                )
                .starting_at(start);
                cfg.max_buffered_kbytes = 1;
                let probe = KafkaSource::open(cfg)
                    .await
                    .map_err(TaskError::kafka(format!("open the dead-letter topic `{dead_letters}`")))?;
                dead_letter_probes.insert(dead_letters.clone(), probe);
            }
            let now = Instant::now();
            sources.push(SourceIo {
                name: name.clone(),
                topic: k.topic.clone(),
                dead_letters,
                consumer,
                decoder: rt.decoder(name)?,
                on_error: k.on_decode_error,
                last_record: partitions.iter().map(|p| (*p, now)).collect(),
                partitions,
                idle: BTreeSet::new(),
            });
        }
        if !sent_already.is_empty() {
            tracing::info!(count = sent_already.len(), "dead letters the crashed run sent will not be sent again");
        }
        let replaying = !replay.clocks.is_empty();
        if replaying {
            tracing::info!(
                partitions = ?replay_until,
                "no checkpoint on the volume: rebuilding the window state by replaying from the low-water offsets committed to Kafka"
            );
            rt.begin_replay(replay);
        }

        let mut sinks = IndexMap::new();
        for (name, sink) in &sub.sinks {
            match sink {
                Sink::Cassandra(c) => {
                    if session.is_none() {
                        session = Some(connect_cassandra(&config, &format!("sink `{name}`")).await?);
                    }
                    let Some(s) = session.as_ref() else { unreachable!("connected above") };
                    let schema = rt.sink_schema(name).ok_or_else(|| {
                        TaskError::Spec(format!("sink `{name}` reads `{}`, which has no schema", c.from))
                    })?;
                    let options = SinkOptions { max_in_flight: config.cassandra_in_flight, ..SinkOptions::default() };
                    let w = CassandraSink::new(s, &c.keyspace, &c.table, &schema, options)
                        .await
                        .map_err(TaskError::cassandra(format!("prepare sink `{name}`")))?;
                    sinks.insert(name.clone(), SinkIo::Cassandra(Box::new(w)));
                }
                Sink::Kafka(k) => {
                    let schema = rt.sink_schema(name).ok_or_else(|| {
                        TaskError::Spec(format!("sink `{name}` reads `{}`, which has no schema", k.from))
                    })?;
                    let encoder =
                        k.encoder(name, schema).map_err(|e| TaskError::Spec(format!("sink `{name}`: {e}")))?;
                    sinks.insert(name.clone(), SinkIo::Kafka { topic: k.topic.clone(), encoder });
                }
            }
        }
        let producer =
            KafkaSink::new(SinkConfig::new(client.clone())).map_err(TaskError::kafka("create the Kafka producer"))?;
        let key = sub.stages.get(&config.stage).and_then(|s| s.key.clone());
        let interval = config.checkpoint_interval.unwrap_or(sub.checkpoint_interval.0).max(Duration::from_millis(10));
        tracing::info!(
            pipeline = %sub.name,
            stage = %config.stage,
            task = config.task_index,
            of = config.task_count,
            partitions = ?sources.iter().map(|s| (s.name.clone(), s.partitions.clone())).collect::<Vec<_>>(),
            sinks = ?sinks.keys().collect::<Vec<_>>(),
            checkpoint_interval = ?interval,
            "stage task open"
        );
        let mut task = StageTask {
            spec: sub,
            config,
            rt,
            sources,
            sinks,
            key,
            producer,
            dead_letter_probes,
            sent_already,
            store,
            interval,
            last_checkpoint: Instant::now(),
            last_checkpoint_took: Duration::ZERO,
            last_idle_check: Instant::now(),
            metrics,
            summary,
            poll_errors: 0,
            replay_until,
            held: Vec::new(),
        };
        if replaying && task.replay_until.is_empty() {
            task.end_replay().await?;
        }
        if task.rt.is_replaying() {
            // Partitions with nothing to replay wait for the replay's end
            // (which resumes every partition): what they would fetch
            // meanwhile could only be held in memory.
            for (i, s) in task.sources.iter().enumerate() {
                let waiting = not_replaying(&s.partitions, |p| task.replay_until.contains_key(&(i, p)));
                if waiting.is_empty() {
                    continue;
                }
                if let Err(e) = s.consumer.pause(&waiting) {
                    tracing::warn!(source = %s.name, error = %e, "could not pause the partitions with nothing to replay; their records are held");
                }
            }
        }
        Ok(task)
    }

    /// What the task has done so far.
    pub fn summary(&self) -> &TaskSummary {
        &self.summary
    }

    /// The partitions this task owns, per source.
    pub fn partitions(&self) -> BTreeMap<String, Vec<i32>> {
        self.sources.iter().map(|s| (s.name.clone(), s.partitions.clone())).collect()
    }

    /// One round: poll every source once, decode, dead-letter, push, write;
    /// mark silent partitions idle; checkpoint when the interval is up;
    /// with `until_idle`, finish once every partition is at its end.
    pub async fn step(&mut self) -> Result<Step, TaskError> {
        let n = self.sources.len().max(1) as u32;
        let limits = PollLimits {
            max_records: self.config.max_batch_records.max(1),
            max_bytes: 64 << 20,
            max_wait: self.config.max_wait / n,
        };
        let mut got_any = false;
        for i in 0..self.sources.len() {
            let polled = self.sources[i].consumer.poll_batch(&limits).await;
            let records = match polled {
                Ok(r) => {
                    self.poll_errors = 0;
                    if let Some(rate) = self.config.max_records_per_second.filter(|r| *r > 0.0) {
                        tokio::time::sleep(Duration::from_secs_f64(r.len() as f64 / rate)).await;
                    }
                    r
                }
                // The consumer reports passing trouble (a coordinator that
                // moved, a broker restarting) and carries on: retry a while.
                Err(e) if self.poll_errors < MAX_POLL_ERRORS => {
                    self.poll_errors += 1;
                    tracing::warn!(source = %self.sources[i].name, error = %e, attempt = self.poll_errors, "poll failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    return Err(TaskError::kafka(format!(
                        "poll source `{}` ({MAX_POLL_ERRORS} failures in a row)",
                        self.sources[i].name
                    ))(e))
                }
            };
            if records.is_empty() {
                continue;
            }
            got_any = true;
            self.summary.records_in += records.len() as u64;
            self.metrics.records_in.get_or_create(&label("source", &self.sources[i].name)).inc_by(records.len() as u64);
            let mut by_partition: IndexMap<i32, Vec<KafkaRecord>> = IndexMap::new();
            for r in records {
                by_partition.entry(r.partition).or_default().push(r);
            }
            let now = Instant::now();
            for (p, recs) in by_partition {
                let s = &mut self.sources[i];
                s.last_record.insert(p, now);
                s.idle.remove(&p);
                self.process(i, p, recs).await?;
            }
        }
        if !got_any && !self.replay_until.is_empty() {
            self.replay_at_end().await?;
        }
        self.drain_held().await?;
        self.mark_idle().await?;
        for s in &self.sources {
            if let Some(w) = self.rt.watermark(&s.name) {
                if w > crate::runtime::time::MIN_WATERMARK && w < crate::runtime::time::MAX_WATERMARK {
                    let delay = (now_ms() - w) as f64 / 1000.0;
                    self.metrics.watermark_delay.get_or_create(&label("source", &s.name)).set(delay);
                }
            }
        }
        if !got_any && self.config.until_idle && self.at_end().await? {
            if self.rt.is_replaying() {
                // Finishing while replaying would emit nothing (watermarks
                // are held): end the replay with what the topic still had.
                tracing::warn!(
                    partitions = ?self.replay_until,
                    "the input ended before the replay reached the checkpoint's positions (records deleted by retention?)"
                );
                self.end_replay().await?;
                self.drain_held().await?;
            }
            let out = self.rt.finish().await?;
            self.emit(out, None).await?;
            self.checkpoint().await?;
            self.summary.finished = true;
            tracing::info!(summary = %self.summary.line(), "the input is consumed; every window was emitted");
            return Ok(Step::Finished);
        }
        // A replay's state is not a checkpoint's: the one committed to
        // Kafka stays the resume point until the replay is over.
        if self.last_checkpoint.elapsed() >= self.interval && !self.rt.is_replaying() && !self.close_is_near() {
            self.checkpoint().await?;
        }
        Ok(Step::Continue)
    }

    /// A checkpoint stalls the task for about as long as the last one
    /// took (large window state); one that would still run when a window
    /// is due to close would delay its rows, so it waits until just after
    /// the close — for at most one more interval.
    fn close_is_near(&self) -> bool {
        if self.last_checkpoint.elapsed() >= self.interval * 2 {
            return false;
        }
        let margin = (self.last_checkpoint_took * 2 + Duration::from_secs(1)).as_millis() as i64;
        matches!(self.rt.until_next_close(), Some(d) if (0..=margin).contains(&d))
    }

    /// Whether the task is still rebuilding its state from Kafka.
    pub fn is_replaying(&self) -> bool {
        self.rt.is_replaying()
    }

    /// Routes one partition's records: replayed (up to the checkpoint's
    /// position), held (past it while other partitions still replay), or
    /// processed.
    async fn process(&mut self, i: usize, partition: i32, mut recs: Vec<KafkaRecord>) -> Result<(), TaskError> {
        if self.rt.is_replaying() {
            if let Some(&until) = self.replay_until.get(&(i, partition)) {
                let (cut, done) = replay_cut(&recs, |r| r.offset, until);
                let rest = recs.split_off(cut);
                if !recs.is_empty() {
                    self.replay(i, partition, recs).await?;
                }
                if !done {
                    return Ok(());
                }
                self.replay_done(i, partition).await?;
                recs = rest;
            }
            if self.rt.is_replaying() {
                if !recs.is_empty() {
                    self.held.push((i, partition, recs));
                }
                return Ok(());
            }
        }
        self.drain_held().await?;
        self.process_now(i, partition, recs).await
    }

    /// Pushes records the lost task had processed before its checkpoint:
    /// their dead letters and output were sent then, so nothing is sent now.
    async fn replay(&mut self, i: usize, partition: i32, recs: Vec<KafkaRecord>) -> Result<(), TaskError> {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else { return Ok(()) };
        let (first, end) = (first.offset, last.offset + 1);
        let decoded = self.sources[i].decoder.decode(recs.iter());
        self.summary.replayed += recs.len() as u64;
        let name = self.sources[i].name.clone();
        let out = self.rt.push_range(&name, partition, first, end, decoded.batch).await?;
        debug_assert!(out.sinks.is_empty() && out.late.is_empty(), "a replay emits nothing");
        Ok(())
    }

    /// One partition reached the checkpoint's position: pause it while
    /// others replay, or end the replay when it was the last.
    async fn replay_done(&mut self, i: usize, partition: i32) -> Result<(), TaskError> {
        self.replay_until.remove(&(i, partition));
        if self.replay_until.is_empty() {
            return self.end_replay().await;
        }
        let s = &self.sources[i];
        if let Err(e) = s.consumer.pause(&[partition]) {
            tracing::warn!(source = %s.name, partition, error = %e, "could not pause a replayed partition; its records are held");
        }
        Ok(())
    }

    /// Every partition replayed: restore the checkpoint's watermarks, drop
    /// what was emitted before it, fetch paused partitions again.
    async fn end_replay(&mut self) -> Result<(), TaskError> {
        self.replay_until.clear();
        let out = self.rt.end_replay().await?;
        self.emit(out, None).await?;
        for s in &self.sources {
            if let Err(e) = s.consumer.resume(&s.partitions) {
                tracing::warn!(source = %s.name, error = %e, "could not resume the partitions paused by the replay");
            }
        }
        tracing::info!(replayed = self.summary.replayed, "the window state is rebuilt; the replay is over");
        Ok(())
    }

    /// Partitions still replaying that are at their end (the checkpoint's
    /// position lies beyond the last record, e.g. a transaction marker).
    async fn replay_at_end(&mut self) -> Result<(), TaskError> {
        let waiting: Vec<(usize, i32)> = self.replay_until.keys().copied().collect();
        for i in waiting.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>() {
            let lag = source_lag(&self.sources[i]).await?;
            for l in lag {
                if l.lag == 0 && self.replay_until.contains_key(&(i, l.partition)) {
                    self.replay_done(i, l.partition).await?;
                }
            }
        }
        Ok(())
    }

    /// Processes the records held during the replay, once it is over.
    async fn drain_held(&mut self) -> Result<(), TaskError> {
        if self.rt.is_replaying() || self.held.is_empty() {
            return Ok(());
        }
        for (i, p, recs) in std::mem::take(&mut self.held) {
            self.process_now(i, p, recs).await?;
        }
        Ok(())
    }

    /// Decodes one partition's records, dead-letters the bad ones, pushes
    /// the good ones and writes what the push produced.
    async fn process_now(&mut self, i: usize, partition: i32, recs: Vec<KafkaRecord>) -> Result<(), TaskError> {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else { return Ok(()) };
        let (first_offset, end_offset) = (first.offset, last.offset + 1);
        let decoded = self.sources[i].decoder.decode(recs.iter());
        for err in &decoded.errors {
            let rec = &recs[err.index];
            let why = if rec.payload.is_none() { "no payload (a tombstone)".to_string() } else { err.reason.clone() };
            let s = &self.sources[i];
            match s.on_error {
                OnDecodeError::Fail => {
                    return Err(TaskError::DecodeFailed {
                        source_name: s.name.clone(),
                        topic: s.topic.clone(),
                        partition,
                        offset: rec.offset,
                        reason: why,
                    })
                }
                OnDecodeError::Drop => {
                    self.summary.dropped += 1;
                    self.metrics.dropped.get_or_create(&label("source", &s.name)).inc();
                }
                OnDecodeError::DeadLetter => {
                    let (topic, source_name) = (s.dead_letters.clone(), s.name.clone());
                    let header = format!("{}/{}@{}", s.topic, partition, rec.offset);
                    let payload = rec.payload.as_deref().unwrap_or_default();
                    self.send_dead_letter(
                        &topic,
                        &source_name,
                        rec.key.as_deref(),
                        payload,
                        &decode_reason(&why),
                        &header,
                    )
                    .await?;
                }
            }
        }
        let name = self.sources[i].name.clone();
        let out = self.rt.push_range(&name, partition, first_offset, end_offset, decoded.batch).await?;
        self.emit(out, Some((i, partition))).await
    }

    /// Writes sink batches, and late rows to the dead-letter topic of the
    /// source they came from (`origin`: the source index and partition of
    /// the push that produced them).
    async fn emit(&mut self, out: Output, origin: Option<(usize, i32)>) -> Result<(), TaskError> {
        for sb in out.sinks {
            let started = Instant::now();
            let rows = sb.batch.num_rows();
            match self.sinks.get_mut(&sb.sink) {
                Some(SinkIo::Cassandra(w)) => {
                    w.write(&sb.batch).await.map_err(TaskError::cassandra(format!("write to sink `{}`", sb.sink)))?;
                }
                Some(SinkIo::Kafka { topic, encoder }) => {
                    let topic = topic.clone();
                    let keys = key_strings(&sb.batch, self.key.as_deref())?;
                    let payloads = encoder.encode(&sb.batch)?;
                    for (j, payload) in payloads.iter().enumerate() {
                        let key = keys.get(j).and_then(|k| k.as_deref()).map(str::as_bytes);
                        self.producer
                            .send(&topic, key, Some(payload), &[])
                            .await
                            .map_err(TaskError::kafka(format!("write to sink `{}`", sb.sink)))?;
                    }
                }
                None => continue,
            }
            self.summary.rows_out += rows as u64;
            self.metrics.rows_out.get_or_create(&label("sink", &sb.sink)).inc_by(rows as u64);
            self.metrics
                .sink_write_latency
                .get_or_create(&label("sink", &sb.sink))
                .observe(started.elapsed().as_secs_f64());
        }
        for late in out.late {
            // The source the rows came from: the input itself, or the
            // source of the push (a stage input's rows came through it).
            let si =
                self.sources.iter().position(|s| s.name == late.input).or(origin.map(|(i, _)| i)).unwrap_or_default();
            let Some(s) = self.sources.get(si) else { continue };
            let (topic, source_name) = (s.dead_letters.clone(), s.name.clone());
            let header = match origin {
                Some((_, p)) => late_source(&s.topic, p),
                None => s.topic.clone(),
            };
            let keys = key_strings(&late.rows, self.key.as_deref())?;
            let payloads = encode_json(&late.rows)?;
            for (j, payload) in payloads.iter().enumerate() {
                let reason = late.reasons.get(j).map_or("late", String::as_str).to_string();
                let key = keys.get(j).and_then(|k| k.as_deref()).map(str::as_bytes);
                self.send_dead_letter(&topic, &source_name, key, payload, &reason, &header).await?;
            }
        }
        Ok(())
    }

    async fn send_dead_letter(
        &mut self,
        topic: &str,
        source_name: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: &str,
        source_header: &str,
    ) -> Result<(), TaskError> {
        if self.sent_already.take(source_header, payload) {
            self.summary.dead_letters_skipped += 1;
            return Ok(());
        }
        self.producer
            .send(
                topic,
                key,
                Some(payload),
                &[(DLQ_REASON_HEADER, reason.as_bytes()), (DLQ_SOURCE_HEADER, source_header.as_bytes())],
            )
            .await
            .map_err(TaskError::kafka(format!("send a dead letter to `{topic}`")))?;
        self.summary.dead_lettered += 1;
        self.metrics
            .dead_lettered
            .get_or_create(&labels2(("source", source_name), ("reason", reason_label(reason))))
            .inc();
        Ok(())
    }

    /// Partitions silent for the idle timeout and at their end stop holding
    /// the watermark back; windows they held are then emitted.
    async fn mark_idle(&mut self) -> Result<(), TaskError> {
        let timeout = self.config.idle_timeout;
        let candidates: Vec<(usize, i32)> = self
            .sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.partitions
                    .iter()
                    .filter(|p| !s.idle.contains(p) && s.last_record.get(p).is_none_or(|t| t.elapsed() >= timeout))
                    .map(move |p| (i, *p))
            })
            .collect();
        if candidates.is_empty() || self.last_idle_check.elapsed() < idle_check_every(timeout) {
            return Ok(());
        }
        self.last_idle_check = Instant::now();
        let mut changed = false;
        for i in candidates.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>() {
            let lag = source_lag(&self.sources[i]).await?;
            for l in lag {
                if l.lag == 0 && candidates.contains(&(i, l.partition)) {
                    let s = &mut self.sources[i];
                    s.idle.insert(l.partition);
                    self.rt.set_idle(&s.name, l.partition, true)?;
                    tracing::info!(source = %s.name, partition = l.partition, "partition idle: it no longer holds the watermark back");
                    changed = true;
                }
            }
        }
        if changed {
            let out = self.rt.advance().await?;
            self.emit(out, None).await?;
        }
        Ok(())
    }

    /// Whether every owned partition of every source is at its end.
    async fn at_end(&mut self) -> Result<bool, TaskError> {
        for s in &self.sources {
            let lag =
                s.consumer.lag().await.map_err(TaskError::kafka(format!("read the lag of source `{}`", s.name)))?;
            if lag.iter().any(|l| l.lag > 0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Flushes every sink and the dead letters, writes the checkpoint to the
    /// volume, then commits the offsets to Kafka. Returns the epoch.
    pub async fn checkpoint(&mut self) -> Result<u64, TaskError> {
        let started = Instant::now();
        for (name, sink) in self.sinks.iter_mut() {
            if let SinkIo::Cassandra(w) = sink {
                let t = Instant::now();
                w.flush().await.map_err(TaskError::cassandra(format!("flush sink `{name}`")))?;
                self.metrics.sink_flush_latency.get_or_create(&label("sink", name)).observe(t.elapsed().as_secs_f64());
            }
        }
        let t = Instant::now();
        self.producer.flush().await.map_err(TaskError::kafka("flush the Kafka sinks and dead letters"))?;
        self.metrics.sink_flush_latency.get_or_create(&label("sink", "kafka")).observe(t.elapsed().as_secs_f64());

        let mut dead_letter_ends = BTreeMap::new();
        for (topic, probe) in &self.dead_letter_probes {
            let lag = probe.lag().await.map_err(TaskError::kafka(format!("read the end of `{topic}`")))?;
            dead_letter_ends.insert(topic.clone(), lag.iter().map(|l| (l.partition, l.high_watermark)).collect());
        }
        let header = TaskCheckpoint {
            version: 1,
            pipeline: self.spec.name.clone(),
            stage: self.config.stage.clone(),
            task_index: self.config.task_index,
            task_count: self.config.task_count,
            dead_letter_ends,
        };
        let bytes = header.encode(&self.rt.checkpoint_state()?)?;
        let epoch = self.summary.epoch.map_or(1, |e| e + 1);
        let store = self.store.clone();
        let size = bytes.len();
        tokio::task::spawn_blocking(move || store.commit(epoch, &bytes))
            .await
            .map_err(|e| TaskError::Checkpoint(format!("the checkpoint write did not complete: {e}")))??;
        self.summary.epoch = Some(epoch);
        self.summary.checkpoints += 1;

        // Kafka gets, per partition, the low-water offset (where a task on
        // a fresh volume replays from) and the resume point in its metadata.
        let offsets = self.rt.offsets();
        let low = self.rt.low_water();
        let marks = self.rt.stage_marks();
        for s in &self.sources {
            let mine: BTreeMap<i32, (i64, String)> = offsets
                .iter()
                .filter(|((n, _), _)| *n == s.name)
                .map(|((n, p), o)| {
                    let point = ResumePoint {
                        v: 1,
                        pos: *o,
                        clock: self.rt.partition_clock(n, *p),
                        stages: marks.clone(),
                        dead_letters: header.dead_letter_ends.get(&s.dead_letters).cloned().unwrap_or_default(),
                    };
                    let from = low.get(&(n.clone(), *p)).copied().unwrap_or(*o);
                    (*p, (from, point.encode()))
                })
                .collect();
            if let Err(e) = s.consumer.commit_with_metadata(&mine) {
                tracing::warn!(source = %s.name, error = %e, "could not commit offsets (lag only; the checkpoint holds them)");
            }
            match s.consumer.lag().await {
                Ok(lag) => {
                    for l in lag {
                        self.metrics
                            .consumer_lag
                            .get_or_create(&labels2(("source", &s.name), ("partition", &l.partition.to_string())))
                            .set(l.lag);
                    }
                }
                Err(e) => tracing::warn!(source = %s.name, error = %e, "could not read the consumer lag"),
            }
        }
        self.metrics.checkpoint_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.checkpoint_size.set(size as i64);
        self.metrics.checkpoints.inc();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.metrics.last_checkpoint_timestamp.set(now as i64);
        self.last_checkpoint = Instant::now();
        self.last_checkpoint_took = started.elapsed();
        tracing::debug!(epoch, size, took = ?started.elapsed(), "checkpoint");
        Ok(epoch)
    }
}

/// The partitions of `partitions` that have no replay (`replaying` says
/// which do), in order.
fn not_replaying(partitions: &[i32], replaying: impl Fn(i32) -> bool) -> Vec<i32> {
    partitions.iter().copied().filter(|p| !replaying(*p)).collect()
}

/// Where one partition's polled records (in offset order) stop being a
/// replay up to `until` (the checkpoint's position): how many of them to
/// replay, and whether the partition's replay is then done (a record at or
/// past `until` came, or the last replayed one is `until - 1`).
fn replay_cut<T>(recs: &[T], offset: impl Fn(&T) -> i64, until: i64) -> (usize, bool) {
    let cut = recs.partition_point(|r| offset(r) < until);
    let done = cut < recs.len() || recs[..cut].last().is_some_and(|r| offset(r) + 1 >= until);
    (cut, done)
}

/// The stage key's values as text, one per row (None where the key is
/// null or the batch has no such column).
fn key_strings(batch: &RecordBatch, key: Option<&str>) -> Result<Vec<Option<String>>, TaskError> {
    let Some(i) = key.and_then(|k| batch.schema().index_of(k).ok()) else {
        return Ok(Vec::new());
    };
    let col = cast(batch.column(i), &DataType::Utf8).map_err(crate::runtime::RuntimeError::from)?;
    let col = col.as_string::<i32>();
    Ok((0..col.len()).map(|j| (!col.is_null(j)).then(|| col.value(j).to_string())).collect())
}

/// Where partitions without a checkpointed offset start: the group's
/// committed offset (with the resume point in its metadata, if a stage task
/// wrote one), else the log start. Asked explicitly (and retried while the
/// group's coordinator is still being elected) so the consumer starts from
/// known offsets.
async fn committed_or_earliest(
    client: &KafkaClientConfig,
    group: &str,
    topic: &str,
    partitions: Vec<i32>,
) -> Result<BTreeMap<i32, (i64, Option<ResumePoint>)>, TaskError> {
    let probe = KafkaSource::open(
        SourceConfig::new(client.clone(), group, topic, partitions).starting_at(StartPosition::Latest),
    )
    .await
    .map_err(TaskError::kafka(format!("open `{topic}` to read the committed offsets")))?;
    let mut attempt = 0;
    loop {
        let got = match probe.lag().await {
            Ok(lag) => probe.committed_with_metadata().await.map(|meta| (lag, meta)),
            Err(e) => Err(e),
        };
        match got {
            Ok((lag, meta)) => {
                return Ok(lag
                    .iter()
                    .map(|l| {
                        let point = meta
                            .get(&l.partition)
                            .and_then(|m| m.as_ref())
                            .and_then(|(committed, m)| ResumePoint::decode(m).filter(|_| *committed == l.position));
                        (l.partition, (l.position, point))
                    })
                    .collect())
            }
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(%topic, %group, error = %e, attempt, "cannot read the committed offsets yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(TaskError::kafka(format!("read the committed offsets of `{topic}` (group `{group}`)"))(e))
            }
        }
    }
}

/// Reads a dead-letter topic from the ends a checkpoint recorded to its
/// current end, remembering the letters of `topic`'s `partitions` (what the
/// crashed run sent after that checkpoint).
async fn read_sent_already(
    client: &KafkaClientConfig,
    dead_letters: &str,
    ends: &BTreeMap<i32, i64>,
    topic: &str,
    partitions: &[i32],
    into: &mut SentAlready,
) -> Result<(), TaskError> {
    if ends.is_empty() {
        return Ok(());
    }
    let parts: Vec<i32> = ends.keys().copied().collect();
    let mut reader = KafkaSource::open(
        SourceConfig::new(client.clone(), format!("smack.dead-letter-replay.{dead_letters}"), dead_letters, parts)
            .starting_at(StartPosition::Offsets(ends.clone())),
    )
    .await
    .map_err(TaskError::kafka(format!("read back `{dead_letters}`")))?;
    let highs: BTreeMap<i32, i64> = reader
        .lag()
        .await
        .map_err(TaskError::kafka(format!("read the end of `{dead_letters}`")))?
        .iter()
        .map(|l| (l.partition, l.high_watermark))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let limits = PollLimits { max_records: 10_000, max_bytes: 16 << 20, max_wait: Duration::from_millis(200) };
    loop {
        let pos = reader.positions();
        if highs.iter().all(|(p, h)| pos.get(p).copied().unwrap_or(0) >= *h) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TaskError::Checkpoint(format!(
                "could not read `{dead_letters}` up to its end {highs:?} within 60 s (at {pos:?})"
            )));
        }
        for r in reader.poll_batch(&limits).await.map_err(TaskError::kafka(format!("read back `{dead_letters}`")))? {
            let Some(src) = r.header(DLQ_SOURCE_HEADER).and_then(|h| std::str::from_utf8(h).ok()) else { continue };
            if source_partition(src, topic).is_some_and(|p| partitions.contains(&p)) {
                into.insert(src.to_string(), r.payload.clone().unwrap_or_default());
            }
        }
    }
}

/// Runs a stage task until `stop` is set (then flushes and checkpoints) or,
/// with `until_idle`, until its input is consumed.
pub async fn run_task(
    spec: &PipelineSpec,
    config: TaskConfig,
    metrics: TaskMetrics,
    stop: &AtomicBool,
) -> Result<TaskSummary, TaskError> {
    let mut task = StageTask::open(spec, config, metrics).await?;
    loop {
        if stop.load(Ordering::SeqCst) && task.is_replaying() {
            tracing::info!(summary = %task.summary().line(), "stopped during the replay: the resume point committed to Kafka still holds");
            return Ok(task.summary().clone());
        }
        if stop.load(Ordering::SeqCst) {
            let epoch = task.checkpoint().await?;
            tracing::info!(epoch, summary = %task.summary().line(), "stopped: sinks flushed, checkpoint written");
            return Ok(task.summary().clone());
        }
        if task.step().await? == Step::Finished {
            return Ok(task.summary().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replay_cut;

    fn cut(offsets: &[i64], until: i64) -> (usize, bool) {
        replay_cut(offsets, |o| *o, until)
    }

    #[test]
    fn partitions_with_no_replay_wait_for_it() {
        use super::not_replaying;
        let replaying = [0, 2];
        assert_eq!(not_replaying(&[0, 1, 2, 3], |p| replaying.contains(&p)), [1, 3]);
        assert!(not_replaying(&[0, 2], |p| replaying.contains(&p)).is_empty());
    }

    #[test]
    fn records_below_the_resume_position_are_replayed() {
        assert_eq!(cut(&[10, 11, 12], 20), (3, false), "all below, the replay goes on");
        assert_eq!(cut(&[17, 18, 19], 20), (3, true), "the last one before the position ends it");
        assert_eq!(cut(&[18, 19, 20, 21], 20), (2, true), "the rest is processed as new records");
        assert_eq!(cut(&[20, 21], 20), (0, true), "nothing left to replay");
    }

    #[test]
    fn silent_partitions_are_checked_a_few_times_per_idle_timeout() {
        use super::idle_check_every;
        use std::time::Duration;
        assert_eq!(idle_check_every(Duration::from_secs(30)), Duration::from_millis(7_500));
        assert_eq!(idle_check_every(Duration::from_secs(2)), Duration::from_secs(1), "at most once a second");
        assert_eq!(idle_check_every(Duration::from_secs(3600)), Duration::from_secs(10), "at least every 10 s");
    }

    #[test]
    fn gaps_in_offsets_end_the_replay_at_the_first_record_past_it() {
        // Compacted topics and transaction markers leave gaps: `until - 1`
        // may never come.
        assert_eq!(cut(&[15, 17], 19), (2, false));
        assert_eq!(cut(&[15, 17, 23], 19), (2, true));
        assert_eq!(cut(&[], 19), (0, false), "an empty poll changes nothing");
    }
}
