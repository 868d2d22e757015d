//! The stage runtime: a pipeline's stages run in-process over Arrow
//! micro-batches, with event time, watermarks, keyed window state and
//! checkpoints. No I/O happens here: the task loop (Kafka in, sinks out)
//! drives a [`StageRuntime`] and does the I/O around it.
//!
//! The loop, in short:
//! 1. `StageRuntime::new(&spec).await?`; `assign_partitions` for each source.
//! 2. On restart: `restore(&bytes)` from the last checkpoint, then seek each
//!    partition to [`StageRuntime::offsets`].
//! 3. Per poll: decode records with [`StageRuntime::decoder`] (bad records go
//!    to the dead-letter topic), then `push(source, partition, end_offset,
//!    batch)`; write each [`SinkBatch`] of the [`Output`] to its sink and each
//!    [`LateRows`] to the dead-letter topic.
//! 4. Every checkpoint interval: flush the sinks, then store
//!    [`StageRuntime::checkpoint_state`] (state and offsets together) durably.
//! 5. On a bounded input (tests, replays): [`StageRuntime::finish`].
//!
//! Semantics, precisely:
//! - A source's watermark is, over the task's partitions, the minimum of
//!   `max event time seen − max-out-of-orderness` ([`time`]). It advances
//!   after each pushed batch; records in a batch are judged against the
//!   watermark from *before* that batch.
//! - A windowed stage's window `[start, end)` is emitted once its input
//!   watermark `W` satisfies `end + allowed_lateness <= W`. A record is
//!   **late** when every window it belongs to has already been emitted
//!   (for a session: when the session it would open or join has). A late
//!   record changes nothing and is returned in [`Output::late`] with the
//!   reason. A record of a hopping window whose earlier windows closed but
//!   a later one is open is counted in the open one and is not late.
//! - A windowed stage's output watermark is its input's minus the allowed
//!   lateness; other stages pass theirs through (a join takes the minimum
//!   over its inputs).
//! - Replay on a fresh volume ([`replay`]): [`StageRuntime::low_water`] is,
//!   per partition, the lowest offset an open window still holds;
//!   between [`StageRuntime::begin_replay`] and [`StageRuntime::end_replay`]
//!   watermarks stay at their minimum and nothing is emitted; `end_replay`
//!   restores the checkpoint's watermarks and drops what was emitted before.
//! - Checkpoint bytes ([`StageRuntime::checkpoint_state`]): `SMACKRT1`, a
//!   little-endian u64 length, a JSON document (version, per source the
//!   partition clocks and next offsets, per stage its state: open windows
//!   with accumulators, floats by their bits so they restore exactly), then
//!   length-prefixed Arrow IPC streams for rows a join still buffers.

mod codec;
pub mod lookup;
pub mod plan;
pub mod replay;
pub mod schema;
mod stage;
pub use stage::{InlineLookup, LookupBinding, LookupFetch, LookupProvider};
pub mod state;
pub mod testing;
pub mod time;

use crate::spec::{OnDecodeError, PipelineSpec, Source};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use indexmap::IndexMap;
use replay::{Origin, Replay, StageMark};
use smack_connectors::format::{Decoder, FormatError};
use stage::{Flow, StageOp, StageSnapshot};
use std::collections::BTreeMap;
use time::{SourceWatermark, MAX_WATERMARK, MIN_WATERMARK};

/// The errors of the stage runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A stage's SQL cannot run as a stream stage.
    #[error("stage {stage}: {message}")]
    Compile {
        /// The stage.
        stage: String,
        /// Why.
        message: String,
    },
    /// DataFusion refused or failed a stage's query.
    #[error("stage {stage}: {source}")]
    Sql {
        /// The stage (or table) concerned.
        stage: String,
        /// DataFusion's error.
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// A name that is not a source of this runtime.
    #[error("unknown source `{0}`; expected one of the pipeline's sources")]
    UnknownSource(String),
    /// A pushed batch does not have the source's schema.
    #[error("source {name}: the batch does not have the source's schema: expected {expected}, got {got}")]
    Schema {
        /// The source.
        name: String,
        /// Its columns.
        expected: String,
        /// The batch's columns.
        got: String,
    },
    /// A source's format cannot be decoded.
    #[error("source {name}: {message}")]
    Format {
        /// The source.
        name: String,
        /// Why.
        message: String,
    },
    /// An Arrow kernel failed.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A checkpoint could not be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl RuntimeError {
    fn sql(stage: &str, source: datafusion::error::DataFusionError) -> RuntimeError {
        RuntimeError::Sql { stage: stage.to_string(), source }
    }
}

impl From<FormatError> for RuntimeError {
    fn from(e: FormatError) -> RuntimeError {
        RuntimeError::Format { name: String::new(), message: e.to_string() }
    }
}

/// Rows for one sink, produced by one push.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The sink's name.
    pub sink: String,
    /// The rows, with the schema of the sink's `from`.
    pub batch: RecordBatch,
}

/// Input rows a windowed stage did not count, for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct LateRows {
    /// The stage that refused them.
    pub stage: String,
    /// The table they came from (a source or an earlier stage).
    pub input: String,
    /// The rows, with that table's schema.
    pub rows: RecordBatch,
    /// One reason per row.
    pub reasons: Vec<String>,
}

/// What one push (or `advance`, or `finish`) produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Rows per sink, in sink order; sinks with no rows are absent.
    pub sinks: Vec<SinkBatch>,
    /// Late rows, for the dead-letter topic.
    pub late: Vec<LateRows>,
}

struct SourceRt {
    schema: SchemaRef,
    source: Source,
    event_time: Option<usize>,
    watermark: SourceWatermark,
    /// Per partition, the next offset to read.
    offsets: BTreeMap<i32, i64>,
}

struct StageRt {
    op: StageOp,
    inputs: Vec<String>,
    out_wm: i64,
}

/// A pipeline's stages, run in-process. See the module doc.
pub struct StageRuntime {
    sources: IndexMap<String, SourceRt>,
    stages: IndexMap<String, StageRt>,
    /// Sink name → the table it reads.
    sinks: IndexMap<String, String>,
    finished: bool,
    /// A replay in progress (see [`replay`]).
    replaying: Option<Replay>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    version: u32,
    finished: bool,
    sources: BTreeMap<String, SourceCheckpoint>,
    stages: BTreeMap<String, StageCheckpoint>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SourceCheckpoint {
    watermark: SourceWatermark,
    offsets: BTreeMap<i32, i64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StageCheckpoint {
    out_wm: i64,
    state: StageSnapshot,
}

const MAGIC: &[u8; 8] = b"SMACKRT1";

impl StageRuntime {
    /// Compiles every stage of `spec` (in file order; a stage reads sources
    /// and earlier stages) and wires the sinks.
    pub async fn new(spec: &PipelineSpec) -> Result<StageRuntime, RuntimeError> {
        StageRuntime::with_lookups(spec, &std::collections::HashMap::new()).await
    }

    /// Like [`StageRuntime::new`], with where each of the spec's lookups
    /// gets its rows; a stage that joins a lookup without a provider is
    /// refused.
    pub async fn with_lookups(
        spec: &PipelineSpec,
        providers: &std::collections::HashMap<String, std::sync::Arc<dyn LookupProvider>>,
    ) -> Result<StageRuntime, RuntimeError> {
        let lookup_names: Vec<String> = spec.lookups.keys().cloned().collect();
        let mut sources = IndexMap::new();
        let mut schemas: IndexMap<String, SchemaRef> = IndexMap::new();
        for (name, src) in &spec.sources {
            let schema = schema::source_schema(src);
            let event_time = src.event_time().and_then(|et| schema.index_of(et).ok());
            let bound = match src {
                Source::Kafka(k) => k.watermark.as_ref().map_or(0, |w| w.max_out_of_orderness.0.as_millis() as i64),
            };
            schemas.insert(name.clone(), schema.clone());
            sources.insert(
                name.clone(),
                SourceRt {
                    schema,
                    source: src.clone(),
                    event_time,
                    watermark: SourceWatermark::new(bound),
                    offsets: BTreeMap::new(),
                },
            );
        }
        let mut stages = IndexMap::new();
        for (name, st) in &spec.stages {
            let compile_err = |m: String| RuntimeError::Compile { stage: name.clone(), message: m };
            let plan = plan::plan_stage_with_lookups(name, &st.sql, &lookup_names).map_err(compile_err)?;
            let mut bindings = Vec::new();
            for t in plan::tables_read(&st.sql) {
                let Some(l) = spec.lookups.get(&t) else { continue };
                let provider = providers
                    .get(&t)
                    .ok_or_else(|| compile_err(format!("joins lookup `{t}`, which has no rows provider here")))?;
                let fields: Vec<datafusion::arrow::datatypes::Field> = l
                    .schema()
                    .iter()
                    .map(|(c, ty)| datafusion::arrow::datatypes::Field::new(c, schema::arrow_type(*ty), true))
                    .collect();
                bindings.push(LookupBinding {
                    name: t.clone(),
                    schema: std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
                    keys_sql: plan::lookup_keys_sql(name, &st.sql, &t, l.key()).map_err(compile_err)?,
                    provider: provider.clone(),
                });
            }
            let inputs = plan.inputs();
            let mut input_schemas = Vec::new();
            for i in &inputs {
                let s = schemas.get(i).ok_or_else(|| RuntimeError::Compile {
                    stage: name.clone(),
                    message: format!("reads `{i}`, which is not a source or an earlier stage"),
                })?;
                input_schemas.push((i.clone(), s.clone()));
            }
            let lateness = st.window.as_ref().map_or(0, |w| w.allowed_lateness.0.as_millis() as i64);
            let op = StageOp::compile(name, plan, &input_schemas, lateness, &bindings).await?;
            schemas.insert(name.clone(), op.schema());
            stages.insert(name.clone(), StageRt { op, inputs, out_wm: MIN_WATERMARK });
        }
        let sinks = spec.sinks.iter().map(|(n, s)| (n.clone(), s.from().to_string())).collect();
        Ok(StageRuntime { sources, stages, sinks, finished: false, replaying: None })
    }

    /// The Arrow schema a source's batches must have.
    pub fn source_schema(&self, source: &str) -> Option<SchemaRef> {
        self.sources.get(source).map(|s| s.schema.clone())
    }

    /// The schema of the rows a sink receives.
    pub fn sink_schema(&self, sink: &str) -> Option<SchemaRef> {
        let from = self.sinks.get(sink)?;
        match self.stages.get(from) {
            Some(s) => Some(s.op.schema()),
            None => self.source_schema(from),
        }
    }

    /// A decoder for a source's records, in its declared format.
    pub fn decoder(&self, source: &str) -> Result<Decoder, RuntimeError> {
        let s = self.sources.get(source).ok_or_else(|| RuntimeError::UnknownSource(source.to_string()))?;
        let Source::Kafka(k) = &s.source;
        let err = |message: String| RuntimeError::Format { name: source.to_string(), message };
        let format = schema::record_format(k).map_err(err)?;
        Decoder::new(format, s.schema.clone()).map_err(|e| err(e.to_string()))
    }

    /// What a source does with records that do not decode.
    pub fn on_decode_error(&self, source: &str) -> Option<OnDecodeError> {
        self.sources.get(source).map(|s| match &s.source {
            Source::Kafka(k) => k.on_decode_error,
        })
    }

    /// Declares the partitions of a source this task owns: the watermark
    /// waits for each of them.
    pub fn assign_partitions(&mut self, source: &str, partitions: &[i32]) -> Result<(), RuntimeError> {
        let s = self.sources.get_mut(source).ok_or_else(|| RuntimeError::UnknownSource(source.to_string()))?;
        s.watermark.assign(partitions);
        Ok(())
    }

    /// Marks a partition idle (it stops holding the watermark back) or
    /// active; call [`StageRuntime::advance`] to let windows close.
    pub fn set_idle(&mut self, source: &str, partition: i32, idle: bool) -> Result<(), RuntimeError> {
        let s = self.sources.get_mut(source).ok_or_else(|| RuntimeError::UnknownSource(source.to_string()))?;
        s.watermark.set_idle(partition, idle);
        Ok(())
    }

    /// A source's or stage's current watermark (epoch ms; [`MIN_WATERMARK`]
    /// before any record, [`MAX_WATERMARK`] after `finish`).
    pub fn watermark(&self, table: &str) -> Option<i64> {
        if let Some(s) = self.sources.get(table) {
            return Some(self.source_wm(s));
        }
        self.stages.get(table).map(|s| s.out_wm)
    }

    fn source_wm(&self, s: &SourceRt) -> i64 {
        if self.replaying.is_some() {
            // Nothing closes and nothing is late while a replay rebuilds state.
            MIN_WATERMARK
        } else if self.finished {
            MAX_WATERMARK
        } else if s.event_time.is_none() {
            // Without event time nothing waits on this source.
            MAX_WATERMARK
        } else {
            s.watermark.current()
        }
    }

    /// Per (source, partition), the next offset to read: where to seek after
    /// [`StageRuntime::restore`].
    pub fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.sources.iter().flat_map(|(n, s)| s.offsets.iter().map(move |(p, o)| ((n.clone(), *p), *o))).collect()
    }

    /// Per (source, partition), the lowest offset that fed a window still
    /// open, else the next offset to read: where a replay on a fresh volume
    /// starts (see [`replay`]).
    pub fn low_water(&self) -> BTreeMap<(String, i32), i64> {
        let lows: Vec<_> = self.stages.values().map(|st| st.op.low_water()).collect();
        let mut out = BTreeMap::new();
        for (i, (name, s)) in self.sources.iter().enumerate() {
            for (p, next) in &s.offsets {
                let origin: Origin = (i as u32, *p);
                let low = lows.iter().filter_map(|l| l.get(origin)).min().map_or(*next, |l| l.min(*next));
                out.insert((name.clone(), *p), low);
            }
        }
        out
    }

    /// A partition's largest event time so far.
    pub fn partition_clock(&self, source: &str, partition: i32) -> Option<i64> {
        self.sources.get(source)?.watermark.partitions.get(&partition)?.max_event_time
    }

    /// Per stage, its watermarks now: what [`StageRuntime::end_replay`]
    /// restores on a fresh volume.
    pub fn stage_marks(&self) -> BTreeMap<String, StageMark> {
        self.stages.iter().map(|(n, st)| (n.clone(), StageMark { wm_in: st.op.mark(), out_wm: st.out_wm })).collect()
    }

    /// Starts a replay (see [`replay`]): until [`StageRuntime::end_replay`],
    /// watermarks stay at their minimum and pushes emit nothing.
    pub fn begin_replay(&mut self, replay: Replay) {
        self.replaying = Some(replay);
    }

    /// How far (event-time ms) the nearest windowed stage's input watermark
    /// is from closing its next window; None when no fixed window is open.
    pub fn until_next_close(&self) -> Option<i64> {
        self.stages.values().filter_map(|st| st.op.until_next_close()).min()
    }

    /// Whether a replay is in progress.
    pub fn is_replaying(&self) -> bool {
        self.replaying.is_some()
    }

    /// Ends a replay: restores the partition clocks and each stage's
    /// watermarks from the checkpoint, drops what was emitted before it, and
    /// emits what the restored watermarks close (normally nothing).
    pub async fn end_replay(&mut self) -> Result<Output, RuntimeError> {
        let Some(replay) = self.replaying.take() else { return Ok(Output::default()) };
        for ((source, p), clock) in &replay.clocks {
            if let Some(s) = self.sources.get_mut(source) {
                // A partition the task marked idle during the replay stays
                // idle: nothing would mark it again until it has records.
                let idle = s.watermark.partitions.get(p).is_some_and(|c| c.idle);
                s.watermark.observe(*p, *clock);
                s.watermark.set_idle(*p, idle);
            }
        }
        for (name, st) in self.stages.iter_mut() {
            let Some(m) = replay.stages.get(name) else { continue };
            let dropped = st.op.skip_to(m.wm_in)?;
            st.out_wm = st.out_wm.max(m.out_wm);
            tracing::info!(stage = %name, dropped, watermark = m.wm_in, "replay done: what was emitted before the checkpoint is dropped");
        }
        self.run(IndexMap::new(), None).await
    }

    /// Runs a decoded batch of `source`'s `partition` through the stages;
    /// `end_offset` is the offset after its last record (the next to read).
    /// The batch is taken to start at `end_offset - rows` (every record
    /// decoded); [`StageRuntime::push_range`] says where it starts.
    pub async fn push(
        &mut self,
        source: &str,
        partition: i32,
        end_offset: i64,
        batch: RecordBatch,
    ) -> Result<Output, RuntimeError> {
        let first = end_offset - batch.num_rows() as i64;
        self.push_range(source, partition, first, end_offset, batch).await
    }

    /// Runs a decoded batch of `source`'s `partition`, read from
    /// `first_offset` up to `end_offset` (exclusive), through the stages.
    pub async fn push_range(
        &mut self,
        source: &str,
        partition: i32,
        first_offset: i64,
        end_offset: i64,
        batch: RecordBatch,
    ) -> Result<Output, RuntimeError> {
        let index = self.sources.get_index_of(source).ok_or_else(|| RuntimeError::UnknownSource(source.to_string()))?;
        let origin = Some(((index as u32, partition), first_offset));
        let s = self.sources.get_mut(source).ok_or_else(|| RuntimeError::UnknownSource(source.to_string()))?;
        let fits = batch.num_columns() == s.schema.fields().len()
            && batch
                .schema()
                .fields()
                .iter()
                .zip(s.schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !fits {
            let cols = |sc: &SchemaRef| {
                sc.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
            };
            return Err(RuntimeError::Schema {
                name: source.to_string(),
                expected: cols(&s.schema),
                got: cols(&batch.schema()),
            });
        }
        let times: Vec<i64> = match s.event_time {
            Some(i) => {
                let t = cast(batch.column(i), &DataType::Int64)?;
                let t = t.as_primitive::<Int64Type>();
                (0..t.len()).map(|j| if t.is_null(j) { MIN_WATERMARK } else { t.value(j) }).collect()
            }
            None => vec![MIN_WATERMARK; batch.num_rows()],
        };
        let max = times.iter().copied().filter(|t| *t != MIN_WATERMARK).max();
        s.watermark.observe(partition, max);
        s.offsets.insert(partition, end_offset);
        let mut pending: IndexMap<String, Vec<Flow>> = IndexMap::new();
        if batch.num_rows() > 0 {
            pending.insert(source.to_string(), vec![Flow { batch, times }]);
        }
        self.run(pending, origin).await
    }

    /// Re-evaluates watermarks (after `set_idle`) and emits what closed.
    pub async fn advance(&mut self) -> Result<Output, RuntimeError> {
        self.run(IndexMap::new(), None).await
    }

    /// Ends the input: every watermark goes to [`MAX_WATERMARK`], every
    /// window is emitted and every buffered join row evaluated.
    pub async fn finish(&mut self) -> Result<Output, RuntimeError> {
        self.finished = true;
        self.run(IndexMap::new(), None).await
    }

    async fn run(
        &mut self,
        mut pending: IndexMap<String, Vec<Flow>>,
        origin: Option<(Origin, i64)>,
    ) -> Result<Output, RuntimeError> {
        let mut wms: BTreeMap<String, i64> = self.sources.iter().map(|(n, s)| (n.clone(), self.source_wm(s))).collect();
        let mut late = Vec::new();
        for (name, st) in self.stages.iter_mut() {
            let inputs: Vec<(String, Vec<Flow>)> =
                st.inputs.iter().map(|i| (i.clone(), pending.get(i).cloned().unwrap_or_default())).collect();
            let w =
                st.inputs.iter().map(|i| wms.get(i).copied().unwrap_or(MIN_WATERMARK)).min().unwrap_or(MIN_WATERMARK);
            st.op.set_origin(origin);
            let out = st.op.process(name, &inputs, w, &mut late).await;
            st.op.set_origin(None);
            let out = out?;
            st.out_wm = st.out_wm.max(st.op.output_watermark(w));
            wms.insert(name.clone(), st.out_wm);
            if !out.is_empty() {
                pending.insert(name.clone(), out);
            }
        }
        if self.replaying.is_some() {
            // What replayed records produce was emitted before the checkpoint.
            return Ok(Output::default());
        }
        let mut sinks = Vec::new();
        for (sink, from) in &self.sinks {
            let Some(flows) = pending.get(from) else { continue };
            let batches: Vec<&RecordBatch> = flows.iter().map(|f| &f.batch).filter(|b| b.num_rows() > 0).collect();
            if let Some(first) = batches.first() {
                let batch = concat_batches(&first.schema(), batches.iter().copied())?;
                sinks.push(SinkBatch { sink: sink.clone(), batch });
            }
        }
        Ok(Output { sinks, late })
    }

    /// The state and source offsets, as bytes to store durably (format in
    /// the module doc).
    pub fn checkpoint_state(&self) -> Result<Vec<u8>, RuntimeError> {
        let mut blobs = Vec::new();
        let mut stages = BTreeMap::new();
        for (name, st) in &self.stages {
            stages.insert(name.clone(), StageCheckpoint { out_wm: st.out_wm, state: st.op.snapshot(&mut blobs)? });
        }
        let cp = Checkpoint {
            version: 1,
            finished: self.finished,
            sources: self
                .sources
                .iter()
                .map(|(n, s)| {
                    (n.clone(), SourceCheckpoint { watermark: s.watermark.clone(), offsets: s.offsets.clone() })
                })
                .collect(),
            stages,
        };
        let json = serde_json::to_vec(&cp).map_err(|e| RuntimeError::Checkpoint(e.to_string()))?;
        let mut out = Vec::with_capacity(16 + json.len() + blobs.iter().map(|b| b.len() + 8).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for b in &blobs {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        Ok(out)
    }

    /// Restores what [`StageRuntime::checkpoint_state`] wrote, into a runtime
    /// built from the same pipeline.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RuntimeError> {
        let bad = |m: &str| RuntimeError::Checkpoint(m.to_string());
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("not a stage checkpoint (bad magic)"))?;
        let (json, mut rest) = take_blob(rest).ok_or_else(|| bad("truncated"))?;
        let mut blobs = Vec::new();
        while !rest.is_empty() {
            let (b, r) = take_blob(rest).ok_or_else(|| bad("truncated"))?;
            blobs.push(b);
            rest = r;
        }
        let cp: Checkpoint =
            serde_json::from_slice(json).map_err(|e| RuntimeError::Checkpoint(format!("reading its JSON: {e}")))?;
        if cp.version != 1 {
            return Err(RuntimeError::Checkpoint(format!("version {}, expected 1", cp.version)));
        }
        for (name, s) in cp.sources {
            let Some(rt) = self.sources.get_mut(&name) else {
                return Err(RuntimeError::Checkpoint(format!("source `{name}` is no longer in the pipeline")));
            };
            rt.watermark.partitions = s.watermark.partitions;
            rt.offsets = s.offsets;
        }
        for (name, st) in cp.stages {
            let Some(rt) = self.stages.get_mut(&name) else {
                return Err(RuntimeError::Checkpoint(format!("stage `{name}` is no longer in the pipeline")));
            };
            rt.out_wm = st.out_wm;
            rt.op.restore(&name, st.state, &blobs)?;
        }
        self.finished = cp.finished;
        Ok(())
    }
}

fn take_blob(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let body = b.get(8..8usize.checked_add(len)?)?;
    Some((body, &b[8 + len..]))
}

#[cfg(test)]
mod tests;
