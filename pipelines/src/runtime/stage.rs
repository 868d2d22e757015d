//! The stage operators: each compiled [`StagePlan`] bound to a DataFusion
//! context whose input tables are swapped for every micro-batch, so a
//! query is planned once and only executed per batch.

use super::plan::{JoinPlan, PerBatchPlan, StagePlan, WindowedPlan, ORD_COL, ROW_COL, TIME_COL, WINDOWS_TABLE};
use super::replay::{LowWater, Origin};
use super::state::{AggKind, FastSet, NumClass, Value, WindowSnapshot, WindowState};
use super::time::closed;
use super::time::{MAX_WATERMARK, MIN_WATERMARK};
use super::{LateRows, RuntimeError};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type};
use datafusion::catalog::MemTable;
use datafusion::datasource::memory::PartitionData;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use smack_connectors::format::{format_timestamp, timestamp_type};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows moving from one table to the next within one push, each with its
/// time: the event time for a source's rows, the window end for a windowed
/// stage's, the stage's watermark for the others'.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub batch: RecordBatch,
    pub times: Vec<i64>,
}

impl Flow {
    /// Splits off the rows whose time is at most `w`.
    fn split(self, w: i64) -> Result<(Option<Flow>, Option<Flow>), RuntimeError> {
        if self.times.iter().all(|t| *t <= w) {
            return Ok((Some(self), None));
        }
        if self.times.iter().all(|t| *t > w) {
            return Ok((None, Some(self)));
        }
        let ready = BooleanArray::from(self.times.iter().map(|t| *t <= w).collect::<Vec<_>>());
        let rest = BooleanArray::from(self.times.iter().map(|t| *t > w).collect::<Vec<_>>());
        let part = |mask: &BooleanArray| -> Result<Flow, RuntimeError> {
            Ok(Flow {
                batch: filter_record_batch(&self.batch, mask)?,
                times: self.times.iter().zip(mask.values().iter()).filter(|(_, m)| *m).map(|(t, _)| *t).collect(),
            })
        };
        Ok((Some(part(&ready)?), Some(part(&rest)?)))
    }
}

fn context() -> SessionContext {
    // One partition: micro-batches are small and per-batch overhead matters
    // more than parallelism inside one query (tasks scale out instead).
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1).with_batch_size(8192))
}

/// The same schema with every field nullable and no metadata, so batches
/// from any producer fit the registered table.
fn relaxed(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
    ))
}

/// A registered table whose contents are replaced before each query.
struct Table {
    schema: SchemaRef,
    data: PartitionData,
}

impl Table {
    fn register(ctx: &SessionContext, name: &str, schema: &Schema) -> Result<Table, RuntimeError> {
        let schema = relaxed(schema);
        let mem = MemTable::try_new(schema.clone(), vec![vec![]]).map_err(|e| RuntimeError::sql(name, e))?;
        let data = mem.batches[0].clone();
        ctx.register_table(name, Arc::new(mem)).map_err(|e| RuntimeError::sql(name, e))?;
        Ok(Table { schema, data })
    }

    async fn set(&self, batches: &[RecordBatch]) -> Result<(), RuntimeError> {
        let mut fitted = Vec::with_capacity(batches.len());
        for b in batches {
            fitted.push(RecordBatch::try_new(self.schema.clone(), b.columns().to_vec())?);
        }
        *self.data.write().await = fitted;
        Ok(())
    }
}

/// Where a lookup's rows come from. `keys` holds distinct keys (the
/// lookup's key columns, by name); the answer holds the lookup's rows for
/// those of them that exist, in the lookup's schema. A key with no row is
/// left out: the stage's JOIN decides what that means (LEFT JOIN: NULLs;
/// JOIN: the input row is dropped).
pub trait LookupProvider: Send + Sync {
    fn fetch<'a>(&'a self, keys: &'a RecordBatch) -> LookupFetch<'a>;
}

/// What [`LookupProvider::fetch`] answers: the rows of the keys asked for,
/// in time.
pub type LookupFetch<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<RecordBatch, String>> + Send + 'a>>;

/// A lookup a stage joins: its table name and schema, the query listing
/// the keys a batch needs ([`super::plan::lookup_keys_sql`]), and where its
/// rows come from.
#[derive(Clone)]
pub struct LookupBinding {
    pub name: String,
    pub schema: SchemaRef,
    pub keys_sql: String,
    pub provider: Arc<dyn LookupProvider>,
}

/// Rows given inline (tests, `smack pipeline test`): a batch in the
/// lookup's schema and the names of its key columns.
pub struct InlineLookup {
    pub rows: RecordBatch,
    pub key: Vec<String>,
}

fn key_text(cols: &[ArrayRef], i: usize) -> Option<String> {
    let mut out = String::new();
    for c in cols {
        if c.is_null(i) {
            return None;
        }
        out.push_str(&datafusion::arrow::util::display::array_value_to_string(c, i).ok()?);
        out.push('\u{1}');
    }
    Some(out)
}

impl LookupProvider for InlineLookup {
    fn fetch<'a>(&'a self, keys: &'a RecordBatch) -> LookupFetch<'a> {
        Box::pin(async move {
            let pick = |b: &RecordBatch| -> Result<Vec<ArrayRef>, String> {
                self.key
                    .iter()
                    .map(|k| {
                        let c = b.column_by_name(k).ok_or_else(|| format!("no key column `{k}`"))?;
                        cast(c, &DataType::Utf8).map_err(|e| e.to_string())
                    })
                    .collect()
            };
            let wanted: std::collections::HashSet<String> = {
                let cols = pick(keys)?;
                (0..keys.num_rows()).filter_map(|i| key_text(&cols, i)).collect()
            };
            let cols = pick(&self.rows)?;
            let mask: BooleanArray = (0..self.rows.num_rows())
                .map(|i| Some(key_text(&cols, i).is_some_and(|k| wanted.contains(&k))))
                .collect();
            filter_record_batch(&self.rows, &mask).map_err(|e| e.to_string())
        })
    }
}

/// A lookup registered in a stage's context, filled before each query with
/// the rows of the keys that query's input holds.
struct LookupTable {
    name: String,
    table: Table,
    keys: DataFrame,
    /// When the ON clause compares plain input columns with the key: per
    /// key column, (input column, key name), read straight from the batch
    /// instead of running `keys` (a query per micro-batch saved).
    direct: Option<Vec<(String, String)>>,
    provider: Arc<dyn LookupProvider>,
}

/// The (input column, key name) pairs of a keys query that only renames
/// input columns (`SELECT DISTINCT t.card_id AS card_id FROM tx t`).
fn direct_key_columns(keys: &DataFrame) -> Option<Vec<(String, String)>> {
    use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
    let mut plan = keys.logical_plan();
    loop {
        match plan {
            LogicalPlan::Distinct(Distinct::All(input)) => plan = input.as_ref(),
            LogicalPlan::Projection(p) => {
                return p
                    .expr
                    .iter()
                    .map(|e| match e {
                        Expr::Alias(a) => match a.expr.as_ref() {
                            Expr::Column(c) => Some((c.name.clone(), a.name.clone())),
                            _ => None,
                        },
                        Expr::Column(c) => Some((c.name.clone(), c.name.clone())),
                        _ => None,
                    })
                    .collect();
            }
            _ => return None,
        }
    }
}

impl LookupTable {
    /// Registers the lookups of `ctx`; the input tables must be registered.
    async fn register_all(
        ctx: &SessionContext,
        stage: &str,
        lookups: &[LookupBinding],
    ) -> Result<Vec<LookupTable>, RuntimeError> {
        let mut out = Vec::new();
        for l in lookups {
            let table = Table::register(ctx, &l.name, &l.schema)?;
            let keys = prepare(ctx, stage, &l.keys_sql).await?;
            out.push(LookupTable {
                name: l.name.clone(),
                table,
                direct: direct_key_columns(&keys),
                keys,
                provider: l.provider.clone(),
            });
        }
        Ok(out)
    }

    /// Fills every lookup with the rows the current input (`input`, also
    /// set as the input table) needs.
    async fn fill(all: &[LookupTable], stage: &str, input: &RecordBatch) -> Result<(), RuntimeError> {
        for l in all {
            let keys = match &l.direct {
                Some(cols) => {
                    let mut fields = Vec::with_capacity(cols.len());
                    let mut arrays = Vec::with_capacity(cols.len());
                    for (col, key) in cols {
                        let a = input.column_by_name(col).ok_or_else(|| RuntimeError::Compile {
                            stage: stage.to_string(),
                            message: format!("lookup `{}`: the input has no column `{col}`", l.name),
                        })?;
                        fields.push(Field::new(key, a.data_type().clone(), true));
                        arrays.push(a.clone());
                    }
                    vec![RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?]
                }
                None => run(&l.keys, stage).await?,
            };
            let mut rows = Vec::new();
            for k in keys.iter().filter(|k| k.num_rows() > 0) {
                let got = l.provider.fetch(k).await.map_err(|m| RuntimeError::Compile {
                    stage: stage.to_string(),
                    message: format!("lookup `{}`: {m}", l.name),
                })?;
                rows.push(got);
            }
            l.table.set(&rows).await?;
        }
        Ok(())
    }

    async fn clear(all: &[LookupTable]) -> Result<(), RuntimeError> {
        for l in all {
            l.table.set(&[]).await?;
        }
        Ok(())
    }
}

async fn prepare(ctx: &SessionContext, stage: &str, sql: &str) -> Result<DataFrame, RuntimeError> {
    ctx.sql(sql).await.map_err(|e| RuntimeError::sql(stage, e))
}

async fn run(df: &DataFrame, stage: &str) -> Result<Vec<RecordBatch>, RuntimeError> {
    df.clone().collect().await.map_err(|e| RuntimeError::sql(stage, e))
}

/// A compiled stage with its state.
pub(crate) enum StageOp {
    Windowed(Box<WindowedOp>),
    PerBatch(PerBatchOp),
    Join(JoinOp),
}

/// What a stage checkpoints.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum StageSnapshot {
    /// Window state as JSON (checkpoints written before the binary form).
    Windowed {
        wm_in: i64,
        windows: WindowSnapshot,
    },
    /// Window state in the binary form of [`WindowState::encode`] (a blob
    /// index).
    WindowedState {
        wm_in: i64,
        blob: usize,
    },
    PerBatch,
    /// Buffered rows per input, as Arrow IPC streams (blob indices).
    Join {
        last_eval: i64,
        buffers: Vec<Vec<usize>>,
    },
}

impl StageOp {
    /// Binds a plan; `inputs` are the schemas of the tables it reads.
    pub async fn compile(
        stage: &str,
        plan: StagePlan,
        inputs: &[(String, SchemaRef)],
        allowed_lateness: i64,
        lookups: &[LookupBinding],
    ) -> Result<StageOp, RuntimeError> {
        Ok(match plan {
            StagePlan::Windowed(p) => StageOp::Windowed(Box::new(
                WindowedOp::compile(stage, p, &inputs[0].1, allowed_lateness, lookups).await?,
            )),
            StagePlan::PerBatch(p) => StageOp::PerBatch(PerBatchOp::compile(stage, p, &inputs[0].1, lookups).await?),
            StagePlan::Join(p) if lookups.is_empty() => StageOp::Join(JoinOp::compile(stage, p, inputs).await?),
            StagePlan::Join(_) => return Err(RuntimeError::Compile {
                stage: stage.to_string(),
                message:
                    "a stage over several inputs cannot join a lookup yet; join the lookup in a stage over one input"
                        .into(),
            }),
        })
    }

    /// The schema of the rows the stage emits.
    pub fn schema(&self) -> SchemaRef {
        match self {
            StageOp::Windowed(w) => w.output.clone(),
            StageOp::PerBatch(p) => p.output.clone(),
            StageOp::Join(j) => j.output.clone(),
        }
    }

    /// The stage's output watermark for input watermark `w`.
    pub fn output_watermark(&self, w: i64) -> i64 {
        match self {
            StageOp::Windowed(op) if w != MAX_WATERMARK && w != MIN_WATERMARK => w.saturating_sub(op.lateness),
            _ => w,
        }
    }

    /// Processes the rows that reached the stage's inputs (one list per
    /// input, in [`StagePlan::inputs`] order) at input watermark `w` (the
    /// minimum over its inputs).
    pub async fn process(
        &mut self,
        stage: &str,
        inputs: &[(String, Vec<Flow>)],
        w: i64,
        late: &mut Vec<LateRows>,
    ) -> Result<Vec<Flow>, RuntimeError> {
        match self {
            StageOp::Windowed(op) => op.process(stage, &inputs[0].0, &inputs[0].1, w, late).await,
            StageOp::PerBatch(op) => op.process(stage, &inputs[0].1, w).await,
            StageOp::Join(op) => op.process(stage, inputs, w).await,
        }
    }

    /// Sets where the rows of the next `process` come from (see
    /// [`WindowState::set_origin`]).
    pub fn set_origin(&mut self, origin: Option<(Origin, i64)>) {
        if let StageOp::Windowed(op) = self {
            op.state.set_origin(origin);
        }
    }

    /// What the stage's open windows were fed from.
    pub fn low_water(&self) -> LowWater {
        match self {
            StageOp::Windowed(op) => op.state.low_water(),
            _ => LowWater::default(),
        }
    }

    /// The watermark up to which the stage has emitted: a windowed stage's
    /// input watermark, a join's last evaluation.
    /// How far (event-time ms) the input watermark is from closing the
    /// next window; None for a stage without fixed windows open.
    pub fn until_next_close(&self) -> Option<i64> {
        match self {
            StageOp::Windowed(op) => op.state.next_close().map(|c| c.saturating_sub(op.wm_in)),
            _ => None,
        }
    }

    pub fn mark(&self) -> i64 {
        match self {
            StageOp::Windowed(op) => op.wm_in,
            StageOp::PerBatch(_) => MIN_WATERMARK,
            StageOp::Join(op) => op.last_eval,
        }
    }

    /// After a replay: forgets what was emitted up to `mark` (windows
    /// closed at it, join rows evaluated at it) and goes on from there.
    /// Returns how many windows or rows were dropped.
    pub fn skip_to(&mut self, mark: i64) -> Result<usize, RuntimeError> {
        Ok(match self {
            StageOp::Windowed(op) => {
                op.wm_in = op.wm_in.max(mark);
                let (wm, lateness) = (op.wm_in, op.lateness);
                op.pre_closed.retain(|&(_, end), _| !closed(end, lateness, wm));
                op.state.close(mark).len()
            }
            StageOp::PerBatch(_) => 0,
            StageOp::Join(op) => {
                op.last_eval = op.last_eval.max(mark);
                let mut dropped = 0;
                for buf in op.buffers.iter_mut() {
                    let mut keep = Vec::new();
                    for f in buf.drain(..) {
                        let n = f.batch.num_rows();
                        let (_, k) = f.split(mark)?;
                        dropped += n - k.as_ref().map_or(0, |k| k.batch.num_rows());
                        keep.extend(k);
                    }
                    *buf = keep;
                }
                dropped
            }
        })
    }

    pub fn snapshot(&self, blobs: &mut Vec<Vec<u8>>) -> Result<StageSnapshot, RuntimeError> {
        Ok(match self {
            StageOp::Windowed(op) => {
                let mut bytes = Vec::new();
                op.state.encode(&mut bytes);
                blobs.push(bytes);
                StageSnapshot::WindowedState { wm_in: op.wm_in, blob: blobs.len() - 1 }
            }
            StageOp::PerBatch(_) => StageSnapshot::PerBatch,
            StageOp::Join(op) => {
                let mut buffers = Vec::new();
                for flows in &op.buffers {
                    let mut ids = Vec::new();
                    for f in flows {
                        ids.push(blobs.len());
                        blobs.push(flow_to_ipc(f)?);
                    }
                    buffers.push(ids);
                }
                StageSnapshot::Join { last_eval: op.last_eval, buffers }
            }
        })
    }

    pub fn restore(&mut self, stage: &str, snap: StageSnapshot, blobs: &[&[u8]]) -> Result<(), RuntimeError> {
        let bad = |m: String| RuntimeError::Checkpoint(format!("stage {stage}: {m}"));
        match (self, snap) {
            (StageOp::Windowed(op), StageSnapshot::Windowed { wm_in, windows }) => {
                op.wm_in = wm_in;
                op.pre_closed.clear();
                op.state.restore(windows).map_err(bad)?;
            }
            (StageOp::Windowed(op), StageSnapshot::WindowedState { wm_in, blob }) => {
                let bytes = blobs.get(blob).ok_or_else(|| bad(format!("missing blob {blob}")))?;
                op.wm_in = wm_in;
                op.pre_closed.clear();
                op.state.decode(bytes).map_err(bad)?;
            }
            (StageOp::PerBatch(_), StageSnapshot::PerBatch) => {}
            (StageOp::Join(op), StageSnapshot::Join { last_eval, buffers }) => {
                if buffers.len() != op.buffers.len() {
                    return Err(bad(format!("{} inputs buffered, the stage has {}", buffers.len(), op.buffers.len())));
                }
                op.last_eval = last_eval;
                for (slot, ids) in op.buffers.iter_mut().zip(buffers) {
                    slot.clear();
                    for id in ids {
                        let blob = blobs.get(id).ok_or_else(|| bad(format!("missing blob {id}")))?;
                        slot.push(flow_from_ipc(blob).map_err(|e| bad(e.to_string()))?);
                    }
                }
            }
            _ => return Err(bad("the checkpoint holds another kind of stage; was its SQL changed?".into())),
        }
        Ok(())
    }
}

fn flow_to_ipc(f: &Flow) -> Result<Vec<u8>, RuntimeError> {
    let mut fields: Vec<Field> = f.batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(TIME_COL, DataType::Int64, false));
    let mut cols = f.batch.columns().to_vec();
    cols.push(Arc::new(Int64Array::from(f.times.clone())));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    let mut out = Vec::new();
    let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(&batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

fn flow_from_ipc(bytes: &[u8]) -> Result<Flow, RuntimeError> {
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b?);
    }
    let Some(first) = batches.first() else {
        return Err(RuntimeError::Checkpoint("an empty buffered batch".into()));
    };
    let batch = datafusion::arrow::compute::concat_batches(&first.schema(), &batches)?;
    let n = batch.num_columns() - 1;
    let times = batch.column(n).as_primitive::<Int64Type>().values().to_vec();
    let batch = batch.project(&(0..n).collect::<Vec<_>>())?;
    Ok(Flow { batch, times })
}

// ---------------------------------------------------------------------------
// Windowed

/// How a key or argument column is read into [`Value`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Int,
    UInt,
    Float,
    Str,
    Bool,
    Null,
}

impl Class {
    fn of(dt: &DataType) -> Option<Class> {
        use DataType::*;
        Some(match dt {
            Null => Class::Null,
            Boolean => Class::Bool,
            Int8 | Int16 | Int32 | Int64 | Timestamp(..) | Date32 | Date64 | Time32(_) | Time64(_) | Duration(_) => {
                Class::Int
            }
            UInt8 | UInt16 | UInt32 | UInt64 => Class::UInt,
            Float16 | Float32 | Float64 => Class::Float,
            Utf8 | LargeUtf8 | Utf8View => Class::Str,
            _ => return None,
        })
    }

    fn num(self) -> NumClass {
        match self {
            Class::Int => NumClass::Int,
            Class::UInt => NumClass::UInt,
            Class::Float => NumClass::Float,
            _ => NumClass::Other,
        }
    }

    fn canonical(self) -> DataType {
        match self {
            Class::Int => DataType::Int64,
            Class::UInt => DataType::UInt64,
            Class::Float => DataType::Float64,
            Class::Str => DataType::Utf8,
            Class::Bool => DataType::Boolean,
            Class::Null => DataType::Null,
        }
    }
}

/// A column cast to its class's canonical type, read row by row.
struct Reader {
    class: Class,
    array: ArrayRef,
}

impl Reader {
    fn new(class: Class, a: &ArrayRef) -> Result<Reader, RuntimeError> {
        let array = cast(a, &class.canonical())?;
        Ok(Reader { class, array })
    }

    fn get(&self, i: usize) -> Value {
        if self.array.is_null(i) {
            return Value::Null;
        }
        match self.class {
            Class::Int => Value::Int(self.array.as_primitive::<Int64Type>().value(i)),
            Class::UInt => Value::UInt(self.array.as_primitive::<UInt64Type>().value(i)),
            Class::Float => Value::float(self.array.as_primitive::<Float64Type>().value(i)),
            Class::Str => Value::Str(self.array.as_string::<i32>().value(i).to_string()),
            Class::Bool => Value::Bool(self.array.as_boolean().value(i)),
            Class::Null => Value::Null,
        }
    }
}

/// Builds a column of type `dt` from values of `class`.
fn build(class: Class, dt: &DataType, values: &[&Value]) -> Result<ArrayRef, RuntimeError> {
    let a: ArrayRef = match class {
        Class::Int => Arc::new(Int64Array::from_iter(values.iter().map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }))),
        Class::UInt => Arc::new(UInt64Array::from_iter(values.iter().map(|v| match v {
            Value::UInt(u) => Some(*u),
            _ => None,
        }))),
        Class::Float => Arc::new(Float64Array::from_iter(values.iter().map(|v| match v {
            Value::Float(b) => Some(f64::from_bits(*b)),
            _ => None,
        }))),
        Class::Str => Arc::new(StringArray::from_iter(values.iter().map(|v| match v {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }))),
        Class::Bool => Arc::new(BooleanArray::from_iter(values.iter().map(|v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }))),
        Class::Null => datafusion::arrow::array::new_null_array(dt, values.len()),
    };
    if a.data_type() == dt {
        Ok(a)
    } else {
        Ok(cast(&a, dt)?)
    }
}

/// An aggregate's argument (class, pre-query column) and result (class, type).
type AggColumn = (Option<(Class, usize)>, Class, DataType);

pub(crate) struct WindowedOp {
    plan: WindowedPlan,
    lateness: i64,
    input: Table,
    lookups: Vec<LookupTable>,
    pre: DataFrame,
    windows: Table,
    fin: DataFrame,
    state: WindowState,
    /// Key columns: class and type.
    keys: Vec<(Class, DataType)>,
    /// Per aggregate: its argument's class and position in the pre-query
    /// output, and the result's class and type.
    aggs: Vec<AggColumn>,
    /// The input watermark at the end of the last push.
    wm_in: i64,
    output: SchemaRef,
    /// The final query's schema (its ordinal and time columns included).
    fin_schema: SchemaRef,
    /// Rows of pre-closed windows (see [`WindowState::pre_close`]), by
    /// (start, end), emitted when the window closes.
    pre_closed: BTreeMap<(i64, i64), Kept>,
}

impl WindowedOp {
    async fn compile(
        stage: &str,
        plan: WindowedPlan,
        input: &SchemaRef,
        lateness: i64,
        lookups: &[LookupBinding],
    ) -> Result<WindowedOp, RuntimeError> {
        let ctx = context();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW_COL, DataType::UInt32, false));
        let input_table = Table::register(&ctx, &plan.input, &Schema::new(fields))?;
        let lookups = LookupTable::register_all(&ctx, stage, lookups).await?;
        let pre = prepare(&ctx, stage, &plan.pre_sql).await?;
        let pre_schema = pre.schema().as_arrow().clone();
        let bad = |m: String| RuntimeError::Compile { stage: stage.to_string(), message: m };
        let ts_type = pre_schema.field(1).data_type();
        if !matches!(ts_type, DataType::Timestamp(..) | DataType::Int64 | DataType::Int32) {
            return Err(bad(format!(
                "the window's time column is {ts_type}; expected a timestamp or epoch milliseconds (long)"
            )));
        }
        let mut keys = Vec::new();
        let mut win_fields = Vec::new();
        for (i, name) in plan.keys.iter().enumerate() {
            let f = pre_schema.field(2 + i);
            let class = Class::of(f.data_type()).ok_or_else(|| {
                bad(format!("GROUP BY column `{name}` has type {}, which cannot key state", f.data_type()))
            })?;
            keys.push((class, f.data_type().clone()));
            win_fields.push(Field::new(name, f.data_type().clone(), true));
        }
        win_fields.push(Field::new("window_start", timestamp_type(), false));
        win_fields.push(Field::new("window_end", timestamp_type(), false));
        win_fields.push(Field::new(ORD_COL, DataType::UInt32, false));
        let mut aggs = Vec::new();
        let mut col = 2 + plan.keys.len();
        let mut kinds = Vec::new();
        for (i, a) in plan.aggs.iter().enumerate() {
            let arg = match &a.arg {
                None => None,
                Some(_) => {
                    let f = pre_schema.field(col);
                    col += 1;
                    let class = Class::of(f.data_type()).ok_or_else(|| {
                        bad(format!("`{}`: cannot aggregate values of type {}", a.text, f.data_type()))
                    })?;
                    Some((class, f.data_type().clone()))
                }
            };
            let numeric = |c: Class| matches!(c, Class::Int | Class::UInt | Class::Float);
            let (out_class, out_type) = match (a.kind, &arg) {
                (AggKind::CountStar | AggKind::Count | AggKind::CountDistinct, _) => (Class::Int, DataType::Int64),
                (AggKind::Sum, Some((c, dt))) if numeric(*c) && !matches!(dt, DataType::Timestamp(..)) => {
                    (*c, c.canonical())
                }
                (AggKind::Avg, Some((c, dt))) if numeric(*c) && !matches!(dt, DataType::Timestamp(..)) => {
                    (Class::Float, DataType::Float64)
                }
                (AggKind::Min | AggKind::Max, Some((c, dt))) => (*c, dt.clone()),
                (_, Some((_, dt))) => return Err(bad(format!("`{}`: expected numbers, the argument is {dt}", a.text))),
                (_, None) => return Err(bad(format!("`{}`: expected an argument", a.text))),
            };
            kinds.push((a.kind, arg.as_ref().map_or(NumClass::Other, |(c, _)| c.num())));
            win_fields.push(Field::new(format!("__smack_agg{i}"), out_type.clone(), true));
            aggs.push((arg.map(|(c, _)| (c, col - 1)), out_class, out_type));
        }
        let windows = Table::register(&ctx, WINDOWS_TABLE, &Schema::new(win_fields))?;
        let fin = prepare(&ctx, stage, &plan.final_sql).await?;
        let fin_schema = fin.schema().as_arrow();
        // The final query ends with the ordinal and the time column.
        let n = fin_schema.fields().len() - 2;
        let output =
            relaxed(&Schema::new(fin_schema.fields().iter().take(n).map(|f| f.as_ref().clone()).collect::<Vec<_>>()));
        let fin_schema = Arc::new(fin_schema.clone());
        let state = WindowState::new(plan.window, lateness, kinds);
        Ok(WindowedOp {
            plan,
            lateness,
            input: input_table,
            lookups,
            pre,
            windows,
            fin,
            state,
            keys,
            aggs,
            wm_in: MIN_WATERMARK,
            output,
            fin_schema,
            pre_closed: BTreeMap::new(),
        })
    }

    async fn process(
        &mut self,
        stage: &str,
        input_name: &str,
        flows: &[Flow],
        w: i64,
        late: &mut Vec<LateRows>,
    ) -> Result<Vec<Flow>, RuntimeError> {
        for flow in flows {
            let n = flow.batch.num_rows();
            let mut cols = flow.batch.columns().to_vec();
            cols.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
            let with_rows = RecordBatch::try_new(self.input.schema.clone(), cols)?;
            self.input.set(std::slice::from_ref(&with_rows)).await?;
            LookupTable::fill(&self.lookups, stage, &with_rows).await?;
            let results = run(&self.pre, stage).await;
            LookupTable::clear(&self.lookups).await?;
            self.input.set(&[]).await?;
            let results = results?;
            let mut late_rows: Vec<u32> = Vec::new();
            let mut reasons: Vec<String> = Vec::new();
            for r in &results {
                let rows = r.column(0).as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
                let ts_col = r.column(1);
                let ts = match ts_col.data_type() {
                    DataType::Timestamp(_, tz) => {
                        cast(&cast(ts_col, &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()))?, &DataType::Int64)?
                    }
                    _ => cast(ts_col, &DataType::Int64)?,
                };
                let ts = ts.as_primitive::<Int64Type>();
                let keys: Vec<Reader> = self
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| Reader::new(*c, r.column(2 + i)))
                    .collect::<Result<_, _>>()?;
                let args: Vec<Option<Reader>> = self
                    .aggs
                    .iter()
                    .map(|(arg, _, _)| arg.map(|(c, col)| Reader::new(c, r.column(col))).transpose())
                    .collect::<Result<_, _>>()?;
                let mut key = Vec::with_capacity(keys.len());
                let mut vals = Vec::with_capacity(args.len());
                for i in 0..r.num_rows() {
                    if ts.is_null(i) {
                        late_rows.push(rows.value(i));
                        reasons.push(format!("stage {stage}: the event time is null"));
                        continue;
                    }
                    let t = ts.value(i);
                    key.clear();
                    key.extend(keys.iter().map(|k| k.get(i)));
                    vals.clear();
                    vals.extend(args.iter().map(|a| a.as_ref().map_or(Value::Null, |a| a.get(i))));
                    if let Err(l) = self.state.update(&key, t, &vals, self.wm_in) {
                        late_rows.push(rows.value(i));
                        reasons.push(format!(
                            "late for stage {stage}: event time {} falls in window [{}, {}), closed at watermark {} (allowed lateness {} ms)",
                            format_timestamp(t),
                            format_timestamp(l.start),
                            format_timestamp(l.end),
                            format_timestamp(self.wm_in),
                            self.lateness
                        ));
                    }
                }
            }
            if !late_rows.is_empty() {
                let rows = take_record_batch(&flow.batch, &UInt32Array::from(late_rows))?;
                late.push(LateRows { stage: stage.to_string(), input: input_name.to_string(), rows, reasons });
            }
        }
        self.wm_in = self.wm_in.max(w);
        let closing = self.state.close_after_pre(self.wm_in);
        let mut kept = Vec::new();
        for (id, changed) in &closing.pre_closed {
            // Rows of the keys changed since the pre-close are computed again below.
            if let Some(k) = self.pre_closed.remove(id) {
                kept.push(k.without(changed)?);
            }
        }
        // Windows closed at once (a watermark jump, a replay's skip) leave no
        // pre-computed rows behind.
        let (wm, lateness) = (self.wm_in, self.lateness);
        self.pre_closed.retain(|&(_, end), _| !closed(end, lateness, wm));
        let rows = &closing.rows;
        if !rows.is_empty() {
            let batch = self.windows_batch(
                rows.len(),
                &|i| rows[i].key.as_slice(),
                &|i| (rows[i].start, rows[i].end),
                &|i, a| rows[i].results[a].clone(),
            )?;
            let out = self.evaluate(stage, batch).await?;
            kept.extend(Kept::of(out, &|i| (rows[i].end, rows[i].start, rows[i].key.clone()))?);
        }
        drop(closing);
        // Windows that just ended: their rows now, while they wait out their
        // allowed lateness, so that closing them only emits.
        for (start, end) in self.state.pre_close(self.wm_in) {
            let keys = self.state.window_keys(start, end);
            let batch =
                self.windows_batch(keys.len(), &|i| keys[i].0, &|_| (start, end), &|i, a| keys[i].1[a].result())?;
            let out = self.evaluate(stage, batch).await?;
            let k = Kept::of(out, &|i| (end, start, keys[i].0.to_vec()))?;
            drop(keys);
            self.pre_closed.insert((start, end), k.unwrap_or_else(|| Kept::empty(&self.fin_schema)));
        }
        let _ = &self.plan;
        Kept::into_flows(kept, &self.output)
    }

    /// The closed-windows table of `n` rows: row i has key `key(i)`, bounds
    /// `bounds(i)` (start, end) and aggregate a's result `result(i, a)`.
    fn windows_batch<'k>(
        &self,
        n: usize,
        key: &dyn Fn(usize) -> &'k [Value],
        bounds: &dyn Fn(usize) -> (i64, i64),
        result: &dyn Fn(usize, usize) -> Value,
    ) -> Result<RecordBatch, RuntimeError> {
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (c, (class, dt)) in self.keys.iter().enumerate() {
            let vals: Vec<&Value> = (0..n).map(|i| &key(i)[c]).collect();
            cols.push(build(*class, dt, &vals)?);
        }
        let start = Int64Array::from_iter_values((0..n).map(|i| bounds(i).0));
        let end = Int64Array::from_iter_values((0..n).map(|i| bounds(i).1));
        cols.push(cast(&start, &timestamp_type())?);
        cols.push(cast(&end, &timestamp_type())?);
        cols.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
        for (a, (_, class, dt)) in self.aggs.iter().enumerate() {
            let vals: Vec<Value> = (0..n).map(|i| result(i, a)).collect();
            let refs: Vec<&Value> = vals.iter().collect();
            cols.push(build(*class, dt, &refs)?);
        }
        Ok(RecordBatch::try_new(self.windows.schema.clone(), cols)?)
    }

    /// Runs the final query (SELECT and HAVING) over a closed-windows table.
    async fn evaluate(&self, stage: &str, batch: RecordBatch) -> Result<Vec<RecordBatch>, RuntimeError> {
        self.windows.set(&[batch]).await?;
        let out = run(&self.fin, stage).await;
        self.windows.set(&[]).await?;
        out
    }
}

/// Rows a final query kept (every column, its trailing ordinal and
/// [`TIME_COL`] included), each with the (end, start, key) of its window:
/// the order rows are emitted in. Closed windows come unsorted, and a
/// pre-closed window's rows wait here until it closes; ordering only what
/// HAVING keeps is what makes closing a window of millions of keys cheap.
pub(crate) struct Kept {
    batch: RecordBatch,
    order: Vec<(i64, i64, Vec<Value>)>,
}

impl Kept {
    fn empty(schema: &SchemaRef) -> Kept {
        Kept { batch: RecordBatch::new_empty(schema.clone()), order: Vec::new() }
    }

    /// The final query's output; `window(i)` says where the closed-windows
    /// row with ordinal i comes from. None when it kept nothing.
    fn of(
        batches: Vec<RecordBatch>,
        window: &dyn Fn(usize) -> (i64, i64, Vec<Value>),
    ) -> Result<Option<Kept>, RuntimeError> {
        let Some(first) = batches.first() else { return Ok(None) };
        let batch = concat_batches(&first.schema(), &batches)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let ord = batch.column(batch.num_columns() - 2).as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
        let order = ord.values().iter().map(|&o| window(o as usize)).collect();
        Ok(Some(Kept { batch, order }))
    }

    /// Without the rows of the keys in `changed`.
    fn without(self, changed: &FastSet<Vec<Value>>) -> Result<Kept, RuntimeError> {
        if changed.is_empty() {
            return Ok(self);
        }
        let keep: Vec<bool> = self.order.iter().map(|(_, _, k)| !changed.contains(k)).collect();
        let batch = filter_record_batch(&self.batch, &BooleanArray::from(keep.clone()))?;
        let order = self.order.into_iter().zip(keep).filter(|(_, k)| *k).map(|(o, _)| o).collect();
        Ok(Kept { batch, order })
    }

    /// All of them in window order, without the ordinal and time columns.
    fn into_flows(kept: Vec<Kept>, output: &SchemaRef) -> Result<Vec<Flow>, RuntimeError> {
        let kept: Vec<Kept> = kept.into_iter().filter(|k| k.batch.num_rows() > 0).collect();
        let Some(first) = kept.first() else { return Ok(Vec::new()) };
        let all = concat_batches(&first.batch.schema(), kept.iter().map(|k| &k.batch))?;
        let order: Vec<&(i64, i64, Vec<Value>)> = kept.iter().flat_map(|k| &k.order).collect();
        let mut rows: Vec<u32> = (0..all.num_rows() as u32).collect();
        rows.sort_by(|&a, &b| order[a as usize].cmp(order[b as usize]));
        let sorted = take_record_batch(&all, &UInt32Array::from(rows))?;
        let n = sorted.num_columns() - 2;
        let times = cast(sorted.column(n + 1), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>().iter().map(|t| t.unwrap_or(MAX_WATERMARK)).collect();
        let batch = RecordBatch::try_new(output.clone(), sorted.columns()[..n].to_vec())?;
        Ok(vec![Flow { batch, times }])
    }
}

// ---------------------------------------------------------------------------
// Per batch

pub(crate) struct PerBatchOp {
    input: Table,
    lookups: Vec<LookupTable>,
    df: DataFrame,
    output: SchemaRef,
}

impl PerBatchOp {
    async fn compile(
        stage: &str,
        plan: PerBatchPlan,
        input: &SchemaRef,
        lookups: &[LookupBinding],
    ) -> Result<PerBatchOp, RuntimeError> {
        let ctx = context();
        let table = Table::register(&ctx, &plan.input, input)?;
        let lookups = LookupTable::register_all(&ctx, stage, lookups).await?;
        let df = prepare(&ctx, stage, &plan.sql).await?;
        let output = relaxed(df.schema().as_arrow());
        Ok(PerBatchOp { input: table, lookups, df, output })
    }

    async fn process(&mut self, stage: &str, flows: &[Flow], w: i64) -> Result<Vec<Flow>, RuntimeError> {
        let mut out = Vec::new();
        for flow in flows {
            self.input.set(std::slice::from_ref(&flow.batch)).await?;
            LookupTable::fill(&self.lookups, stage, &flow.batch).await?;
            let result = run(&self.df, stage).await;
            LookupTable::clear(&self.lookups).await?;
            for b in result? {
                if b.num_rows() > 0 {
                    let batch = RecordBatch::try_new(self.output.clone(), b.columns().to_vec())?;
                    out.push(Flow { times: vec![w; batch.num_rows()], batch });
                }
            }
        }
        self.input.set(&[]).await?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Join

pub(crate) struct JoinOp {
    tables: Vec<Table>,
    buffers: Vec<Vec<Flow>>,
    df: DataFrame,
    last_eval: i64,
    output: SchemaRef,
}

impl JoinOp {
    async fn compile(stage: &str, plan: JoinPlan, inputs: &[(String, SchemaRef)]) -> Result<JoinOp, RuntimeError> {
        let ctx = context();
        let mut tables = Vec::new();
        for (name, schema) in inputs {
            tables.push(Table::register(&ctx, name, schema)?);
        }
        let df = prepare(&ctx, stage, &plan.sql).await?;
        let output = relaxed(df.schema().as_arrow());
        Ok(JoinOp { buffers: vec![Vec::new(); tables.len()], tables, df, last_eval: MIN_WATERMARK, output })
    }

    async fn process(
        &mut self,
        stage: &str,
        inputs: &[(String, Vec<Flow>)],
        w: i64,
    ) -> Result<Vec<Flow>, RuntimeError> {
        for (buf, (_, flows)) in self.buffers.iter_mut().zip(inputs) {
            buf.extend(flows.iter().filter(|f| f.batch.num_rows() > 0).cloned());
        }
        if w <= self.last_eval {
            return Ok(Vec::new());
        }
        self.last_eval = w;
        let mut any = false;
        let mut ready: Vec<Vec<RecordBatch>> = Vec::new();
        for buf in self.buffers.iter_mut() {
            let mut now = Vec::new();
            let mut keep = Vec::new();
            for f in buf.drain(..) {
                let (r, k) = f.split(w)?;
                now.extend(r.map(|r| r.batch));
                keep.extend(k);
            }
            any |= !now.is_empty();
            *buf = keep;
            ready.push(now);
        }
        if !any {
            return Ok(Vec::new());
        }
        for (t, batches) in self.tables.iter().zip(&ready) {
            t.set(batches).await?;
        }
        let result = run(&self.df, stage).await;
        for t in &self.tables {
            t.set(&[]).await?;
        }
        let mut out = Vec::new();
        for b in result? {
            if b.num_rows() > 0 {
                let batch = RecordBatch::try_new(self.output.clone(), b.columns().to_vec())?;
                out.push(Flow { times: vec![w; batch.num_rows()], batch });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod lookup_tests {
    use super::*;
    use crate::runtime::plan::{lookup_keys_sql, plan_stage_with_lookups};
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::util::display::array_value_to_string;

    fn cards() -> LookupBinding {
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("home_country", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c1", "c2", "c9"])),
                Arc::new(StringArray::from(vec!["FR", "DE", "US"])),
            ],
        )
        .unwrap();
        LookupBinding {
            name: "cards".into(),
            schema,
            keys_sql: String::new(),
            provider: Arc::new(InlineLookup { rows, key: vec!["card_id".into()] }),
        }
    }

    fn tx() -> (SchemaRef, Flow) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
        ]));
        let ts = vec![1_000, 2_000, 3_000, 4_000];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c1", "c1", "c2", "c3"])),
                Arc::new(StringArray::from(vec!["FR", "BR", "DE", "IT"])),
                Arc::new(TimestampMillisecondArray::from(ts.clone()).with_timezone("UTC")),
            ],
        )
        .unwrap();
        (schema, Flow { batch, times: ts })
    }

    /// Runs `sql` (reading `tx` and the `cards` lookup) over the four rows,
    /// closing every window; the output rows as text, sorted.
    async fn run_stage(sql: &str) -> Vec<String> {
        let plan = plan_stage_with_lookups("s", sql, &["cards".to_string()]).unwrap();
        let mut l = cards();
        l.keys_sql = lookup_keys_sql("s", sql, "cards", &["card_id".to_string()]).unwrap();
        let (schema, flow) = tx();
        let mut op = StageOp::compile("s", plan, &[("tx".into(), schema)], 0, &[l]).await.unwrap();
        let mut late = Vec::new();
        let mut out = op.process("s", &[("tx".into(), vec![flow])], 10_000, &mut late).await.unwrap();
        out.extend(op.process("s", &[("tx".into(), vec![])], MAX_WATERMARK, &mut late).await.unwrap());
        let mut rows: Vec<String> = out
            .iter()
            .flat_map(|f| {
                (0..f.batch.num_rows()).map(move |i| {
                    let cells: Vec<String> = f
                        .batch
                        .columns()
                        .iter()
                        .map(|c| if c.is_null(i) { "NULL".into() } else { array_value_to_string(c, i).unwrap() })
                        .collect();
                    cells.join(" ")
                })
            })
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn a_windowed_stage_counts_purchases_away_from_the_cards_home_country() {
        let sql = "SELECT t.card_id, COUNT(*) AS abroad FROM tx t JOIN cards c ON t.card_id = c.card_id \
                   WHERE t.country <> c.home_country GROUP BY t.card_id, TUMBLE(t.ts, INTERVAL '1' MINUTE)";
        assert_eq!(run_stage(sql).await, vec!["c1 1"]);
    }

    #[tokio::test]
    async fn a_missing_key_gives_nulls_with_left_join_and_drops_with_join() {
        let left = "SELECT t.card_id, t.country, c.home_country FROM tx t LEFT JOIN cards c ON t.card_id = c.card_id";
        assert_eq!(run_stage(left).await, vec!["c1 BR FR", "c1 FR FR", "c2 DE DE", "c3 IT NULL"]);
        let inner = "SELECT t.card_id, c.home_country FROM tx t JOIN cards c ON c.card_id = t.card_id";
        assert_eq!(run_stage(inner).await, vec!["c1 FR", "c1 FR", "c2 DE"]);
        let windowed = "SELECT t.card_id, c.home_country, COUNT(*) AS n FROM tx t LEFT JOIN cards c \
                        ON t.card_id = c.card_id GROUP BY t.card_id, c.home_country, TUMBLE(t.ts, INTERVAL '1' MINUTE)";
        let rows = run_stage(windowed).await;
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows[2].starts_with("c3 NULL 1"), "{rows:?}");
    }
}
