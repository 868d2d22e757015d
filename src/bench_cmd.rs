//! `smack bench pipeline`: throughput and latency of the data plane, for
//! BENCHMARKS.md (a benchmark, never a test). Build it optimised:
//! `CARGO_TARGET_DIR=/work/.target-release cargo build --release -p smack`.
//!
//! In one run, on the same seeded fraud events (`smack_pipelines::generate`,
//! a population of `--cards` cards whose home countries answer the
//! pipeline's lookups):
//! - **CPU only** (always): the events' JSON payloads, held in memory, are
//!   cut into poll-sized batches and (1) decoded into Arrow alone, (1')
//!   the same events as Confluent-framed Avro of the source's derived
//!   writer schema (the records `smack generate --format avro` produces)
//!   decoded alone, then (2) the JSON decoded and pushed through a
//!   [`StageRuntime`] of the pipeline file (the fraud example's
//!   hopping-window stage, its lookup answered from memory); the rows the
//!   sinks would get are counted and dropped.
//!   Events/s of wall time and per CPU-second of the process (user + system,
//!   from `/proc/self/stat`), so the figure is "per core" whatever threads
//!   the runtime used.
//! - **Kafka** (with `--bootstrap`): the events are produced to a fresh topic
//!   with the [`KafkaSink`]; then the topic is read from the start with a
//!   [`KafkaSource`] poll loop: (a) raw, counting records (the ceiling),
//!   (b) decode → runtime per poll, and the ratio (b)/(a).
//! - **Cassandra** (with `--cassandra` too): (c) the stage task itself
//!   ([`StageTask`], the loop `smack stage run` drives) over the same topic:
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

use crate::generate_cmd::{AvroPayloads, WireFormat};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchType};
use smack_connectors::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StringArray};
use smack_connectors::arrow::compute::cast;
use smack_connectors::arrow::datatypes::{DataType, SchemaRef};
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, Consistency, CqlTimestamp};
use smack_connectors::format::{AvroFormat, AvroFraming, Decoder, RecordFormat};
use smack_connectors::kafka::{
    KafkaAdmin, KafkaClientConfig, KafkaSink, KafkaSource, PollLimits, SinkConfig, SourceConfig, StartPosition,
    TopicSpec,
};
use smack_pipelines::generate::{Generator, GeneratorKind, Options};
use smack_pipelines::runtime::lookup::{lookup_schema, LookupProviders};
use smack_pipelines::runtime::{LookupProvider, StageRuntime};
use smack_pipelines::spec::CachePlan;
use smack_pipelines::spec::{Lookup, PipelineSpec, Sink, Source};
use smack_pipelines::task::metrics::label;
use smack_pipelines::task::{
    card_home_lookups, prepare, PrepareOptions, StageTask, Step, TaskConfig, TaskError, TaskMetrics, TaskSummary,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to benchmark.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Events/s through decode → windowed aggregation, in memory and (with
    /// --bootstrap) from a Kafka topic next to the raw consume rate.
    Pipeline(PipelineBenchArgs),
}

#[derive(Args)]
pub struct PipelineBenchArgs {
    /// The pipeline file whose first source and stages are run.
    #[arg(long, default_value = "examples/fraud-detection/pipeline.yaml")]
    file: PathBuf,
    /// How many fraud events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Records per micro-batch (one poll).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Event-time rate of the generator, events/s (sets how many events
    /// share a window).
    #[arg(long, default_value_t = 50_000.0)]
    event_rate: f64,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Kafka bootstrap servers: also produce the events and consume them back.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Partitions of the bench topic (read by one consumer).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// A librdkafka property for both consumers, KEY=VALUE (repeatable),
    /// e.g. `queued.min.messages=100000` to probe the ceiling.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
    /// The card population (the pipeline's lookups hold each card's home
    /// country). 100,000: the example generator's, and its lookup cache.
    #[arg(long, default_value_t = 100_000)]
    cards: u64,
    /// Cassandra contact points, host:port,...: also run the stage task
    /// with its Cassandra sink (needs --bootstrap).
    #[arg(long, value_delimiter = ',')]
    cassandra: Vec<String>,
    /// The Cassandra datacenter (keyspaces are replicated once in it).
    #[arg(long, default_value = "dc1")]
    local_dc: String,
    /// Measure produce → row latency for this many seconds of production
    /// (needs --bootstrap and --cassandra); 0 skips it.
    #[arg(long, default_value_t = 0)]
    latency_seconds: u64,
    /// Events produced per second during the latency run.
    #[arg(long, default_value_t = 50_000.0)]
    latency_rate: f64,
    /// Records per micro-batch of the stage task during the latency run (a
    /// poll returns when it has this many, or after 500 ms).
    #[arg(long, default_value_t = 1_000)]
    latency_batch: usize,
    /// Cassandra writes in flight at most, per sink, in the stage tasks (c)
    /// and the latency run.
    #[arg(long, default_value_t = 64)]
    cassandra_in_flight: usize,
    /// Rows due within this many seconds of the latency run's start are
    /// reported per window but left out of the percentiles (a partial lookup
    /// cache is cold then: every new card is a Cassandra read).
    #[arg(long, default_value_t = 30)]
    latency_warmup_seconds: u64,
    /// How long the latency run waits after the last event before reading
    /// the rows back.
    #[arg(long, default_value_t = 10)]
    latency_drain_seconds: u64,
    /// Rows per unlogged batch when filling the card lookup table (1: one
    /// upsert per request). Above 10, Cassandra's default
    /// `unlogged_batch_across_partitions_warn_threshold`, every batch draws
    /// a warning that the driver logs (silence it with
    /// `RUST_LOG=info,scylla=error`).
    #[arg(long, default_value_t = 10)]
    fill_batch: usize,
    /// Batches in flight at most when filling the card lookup table.
    #[arg(long, default_value_t = 1024)]
    fill_in_flight: usize,
    /// Fill the card lookup table even when a marker says an earlier run
    /// filled it with the same cards.
    #[arg(long)]
    refill: bool,
}

impl PipelineBenchArgs {
    fn population(&self) -> Population {
        Population { seed: self.seed, cards: self.cards }
    }

    fn fill(&self) -> FillOptions {
        FillOptions { batch: self.fill_batch, in_flight: self.fill_in_flight, refill: self.refill }
    }
}

/// Runs a bench command.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Pipeline(args) => pipeline(args).await,
    }
}

/// Process CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu_time(&s)).unwrap_or(Duration::ZERO)
}

/// User + system time from the text of a `/proc/PID/stat` file (fields 14
/// and 15, in ticks of 1/100 s); None when the text does not have them.
fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces: count from the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// One measured phase.
struct Phase {
    name: String,
    events: u64,
    wall: Duration,
    cpu: Duration,
    rows_out: u64,
}

impl Phase {
    fn line(&self) -> String {
        let per_s = self.events as f64 / self.wall.as_secs_f64();
        let per_cpu = if self.cpu.is_zero() { f64::NAN } else { self.events as f64 / self.cpu.as_secs_f64() };
        format!(
            "{:<44} {:>10} events {:>8.3} s wall {:>8.3} s cpu {:>12.0} events/s {:>12.0} events/cpu-s {:>8} rows out",
            self.name,
            self.events,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            per_s,
            per_cpu,
            self.rows_out
        )
    }
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

/// How long each push of the in-memory runtime phase took: a push that
/// closes windows carries the close (the final query over every key of the
/// window) and stalls the task for that long.
#[derive(Default)]
struct PushTimes {
    /// Per push: milliseconds, rows emitted.
    pushes: Vec<(f64, u64)>,
    /// One checkpoint of the state half-way: how long, how many bytes.
    checkpoint: Option<(Duration, usize)>,
}

impl PushTimes {
    fn note(&mut self, took: Duration, rows: u64) {
        self.pushes.push((took.as_secs_f64() * 1000.0, rows));
    }

    fn report(&self) -> String {
        let mut ms: Vec<f64> = self.pushes.iter().map(|p| p.0).collect();
        ms.sort_by(f64::total_cmp);
        let closing: Vec<&(f64, u64)> = self.pushes.iter().filter(|p| p.1 > 0).collect();
        let worst_close = closing.iter().map(|p| p.0).fold(0.0, f64::max);
        let mut out = format!(
            "  pushes: {} of them, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} emitted rows (slowest of those {:.1} ms)",
            ms.len(),
            percentile(&ms, 0.50),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
            closing.len(),
            worst_close
        );
        if let Some((took, bytes)) = self.checkpoint {
            out.push_str(&format!(
                "\n  checkpoint state half-way: {:.1} MB in {:.1} ms",
                bytes as f64 / 1e6,
                took.as_secs_f64() * 1000.0
            ));
        }
        out
    }
}

/// Times `f`, wall and process CPU.
async fn timed<F, Fut>(name: &str, f: F) -> anyhow::Result<Phase>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, u64)>>,
{
    let (w, c) = (Instant::now(), cpu_time());
    let (events, rows_out) = f().await?;
    Ok(Phase { name: name.to_string(), events, wall: w.elapsed(), cpu: cpu_time().saturating_sub(c), rows_out })
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The schema id of the bench's Avro records (Confluent-framed, the writer
/// schema derived from the source's declared fields: what `smack generate
/// --format avro` writes and a source with `format: avro` reads).
const AVRO_SCHEMA_ID: u32 = 1;

/// How a decoder reads the bench's Avro records.
fn avro_format() -> AvroFormat {
    AvroFormat { framing: AvroFraming::Confluent, writer: None, schema_id: Some(AVRO_SCHEMA_ID) }
}

/// `, lookup `name`: N rows loaded in S s` for each full-cache lookup of
/// `spec`, from a task's `metrics` (empty without one).
fn full_lookups_loaded(spec: &PipelineSpec, metrics: &TaskMetrics) -> String {
    let mut out = String::new();
    for (name, l) in &spec.lookups {
        let Lookup::Cassandra(c) = l;
        if let CachePlan::Full { .. } = c.cache_plan() {
            let rows = metrics.lookup_table_rows.get_or_create(&label("lookup", name)).get();
            let took = metrics.lookup_load_duration.get_or_create(&label("lookup", name)).get();
            out.push_str(&format!(", full lookup `{name}`: {rows} rows read in {took:.1} s"));
        }
    }
    out
}

/// A lookup answered from memory: each bench card's home country, for a
/// lookup keyed by `card_id` with a `home_country` column ([`card_home_lookups`]).
struct CardHomes {
    schema: SchemaRef,
    homes: Arc<HashMap<String, &'static str>>,
}

/// A batch of `schema` (a card lookup's) holding `rows`; columns other
/// than `card_id` and `home_country` are null.
fn card_batch(schema: &SchemaRef, rows: &[(&str, &str)]) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "card_id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                "home_country" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                _ => new_null_array(f.data_type(), rows.len()),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl LookupProvider for CardHomes {
    fn fetch<'a>(
        &'a self,
        keys: &'a RecordBatch,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RecordBatch, String>> + Send + 'a>> {
        Box::pin(async move {
            let col = keys.column_by_name("card_id").ok_or("the keys have no `card_id` column")?;
            let col = cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
            let col = col.as_string::<i32>();
            // One row per card, whatever the keys repeat (a repeated row
            // would multiply the joined transactions).
            let mut seen = std::collections::HashSet::new();
            let found: Vec<(&str, &str)> = (0..col.len())
                .filter(|i| !col.is_null(*i) && seen.insert(col.value(*i)))
                .filter_map(|i| self.homes.get(col.value(i)).map(|h| (col.value(i), *h)))
                .collect();
            card_batch(&self.schema, &found)
        })
    }
}

/// In-memory providers for the lookups of `spec`; each must be one the
/// fraud generator's cards answer.
fn memory_lookups(spec: &PipelineSpec, cards: &[(String, &'static str)]) -> anyhow::Result<LookupProviders> {
    let answerable = card_home_lookups(spec);
    let mut out = LookupProviders::new();
    if spec.lookups.is_empty() {
        return Ok(out);
    }
    let homes: HashMap<String, &'static str> = cards.iter().cloned().collect();
    let homes = Arc::new(homes);
    for (name, l) in &spec.lookups {
        if !answerable.contains(name) {
            bail!("lookup `{name}`: the bench only answers the fraud generator's card_id → home_country lookups");
        }
        let p = CardHomes { schema: lookup_schema(l), homes: homes.clone() };
        out.insert(name.clone(), Arc::new(p) as Arc<dyn LookupProvider>);
    }
    Ok(out)
}

/// The card population of a run: the generator's seed and card count
/// (the cards and their homes follow from these two alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Population {
    seed: u64,
    cards: u64,
}

/// Cassandra's longest table name.
const MAX_TABLE_NAME: usize = 48;

impl Population {
    /// The table of this population's cards for a lookup of table `base`:
    /// `<base>_s<seed>_c<cards>`, `base` cut short so the name fits.
    fn table(&self, base: &str) -> String {
        let suffix = format!("_s{}_c{}", self.seed, self.cards);
        let base: String = base.chars().take(MAX_TABLE_NAME.saturating_sub(suffix.len())).collect();
        format!("{base}{suffix}")
    }
}

/// The keyspace of the card tables of lookups in `keyspace` (kept between
/// runs, see the module doc).
fn cards_keyspace(keyspace: &str) -> String {
    format!("{keyspace}_benchcards")
}

/// A copy of `spec` with names of its own (`tag`): the pipeline (so its
/// group and dead-letter topics), its sink topics and keyspaces; the first
/// source reads `topic`, every source has `partitions` and replication 1.
/// Its card lookups read the table of `population`'s cards
/// ([`Population::table`] in [`cards_keyspace`]), shared by every run.
fn bench_spec(spec: &PipelineSpec, tag: &str, topic: &str, partitions: u32, population: Population) -> PipelineSpec {
    let mut s = spec.clone();
    s.name = format!("{}-{tag}", spec.name);
    for (i, src) in s.sources.values_mut().enumerate() {
        let Source::Kafka(k) = src;
        k.topic = if i == 0 { topic.to_string() } else { format!("{tag}-{}", k.topic) };
        k.partitions = partitions;
        k.replication = 1;
    }
    for sink in s.sinks.values_mut() {
        match sink {
            Sink::Cassandra(c) => c.keyspace = format!("{}_{tag}", c.keyspace),
            Sink::Kafka(k) => k.topic = format!("{tag}-{}", k.topic),
        }
    }
    let card_lookups = card_home_lookups(spec);
    for (name, l) in s.lookups.iter_mut() {
        let Lookup::Cassandra(c) = l;
        if card_lookups.contains(name) {
            c.keyspace = cards_keyspace(&c.keyspace);
            c.table = population.table(&c.table);
        } else {
            c.keyspace = format!("{}_{tag}", c.keyspace);
        }
    }
    s
}

/// The stage the first Cassandra sink of `spec` reads, with that sink.
fn measured_stage(spec: &PipelineSpec) -> anyhow::Result<(String, smack_pipelines::spec::CassandraSink)> {
    for sink in spec.sinks.values() {
        if let Sink::Cassandra(c) = sink {
            if !spec.stages.contains_key(&c.from) {
                bail!("sink of `{}.{}` reads `{}`, which is not a stage", c.keyspace, c.table, c.from);
            }
            return Ok((c.from.clone(), c.clone()));
        }
    }
    bail!("the pipeline has no Cassandra sink")
}

/// How the card lookup tables are filled.
#[derive(Debug, Clone, Copy)]
struct FillOptions {
    /// Rows per unlogged batch.
    batch: usize,
    /// Batches in flight at most.
    in_flight: usize,
    /// Fill even when the marker says it was.
    refill: bool,
}

/// The table of fill markers in a cards keyspace: one row per card table
/// that a run filled completely.
const FILL_MARKERS: &str = "bench_fills";

/// Why a card table must be filled, or `None` when it holds the cards
/// already: its marker (the seed and card count of the fill that
/// completed, if any) against `population`, and how many of `samples`
/// sample cards were read back with their home.
fn fill_reason(
    marker: Option<(i64, i64)>,
    population: Population,
    found: usize,
    samples: usize,
    refill: bool,
) -> Option<&'static str> {
    if refill {
        return Some("--refill");
    }
    match marker {
        None => Some("no run has filled it yet"),
        Some((seed, cards)) if seed != population.seed as i64 || cards != population.cards as i64 => {
            Some("its marker is of other cards")
        }
        Some(_) if found < samples => Some("sample cards are missing"),
        Some(_) => None,
    }
}

/// The cards read back to check a filled table: the first, the middle
/// and the last of `n`.
fn sample_cards(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n.saturating_sub(1)];
    v.retain(|i| *i < n);
    v.dedup();
    v
}

/// Creates the topics, keyspaces and tables of `spec` and fills its card
/// lookups with `cards` (of `population`), unless a marker says an earlier
/// run did (see the module doc).
async fn prepare_bench(
    spec: &PipelineSpec,
    admin: &KafkaAdmin,
    session: &CassandraSession,
    dc: &str,
    cards: &[(String, &'static str)],
    population: Population,
    fill: FillOptions,
) -> anyhow::Result<()> {
    prepare(spec, admin, Some(session), &PrepareOptions::new(dc, 1)).await?;
    for name in card_home_lookups(spec) {
        let Lookup::Cassandra(c) = &spec.lookups[&name];
        let (ks, table) = (c.keyspace.as_str(), c.table.as_str());
        session
            .execute_ddl(&format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{FILL_MARKERS} \
                 (table_name text PRIMARY KEY, seed bigint, cards bigint, filled_at timestamp, seconds double)"
            ))
            .await?;
        let cql = format!("SELECT seed, cards FROM {ks}.{FILL_MARKERS} WHERE table_name = ?");
        let marker = session
            .inner()
            .query_unpaged(cql.as_str(), (table,))
            .await
            .with_context(|| cql.clone())?
            .into_rows_result()
            .with_context(|| cql.clone())?
            .maybe_first_row::<(Option<i64>, Option<i64>)>()
            .with_context(|| cql.clone())?
            .and_then(|(seed, n)| Some((seed?, n?)));
        let samples = sample_cards(cards.len());
        let mut found = 0;
        let cql = format!("SELECT home_country FROM {ks}.{table} WHERE card_id = ?");
        for i in &samples {
            let (id, home) = &cards[*i];
            let row = session
                .inner()
                .query_unpaged(cql.as_str(), (id.as_str(),))
                .await
                .with_context(|| cql.clone())?
                .into_rows_result()
                .with_context(|| cql.clone())?
                .maybe_first_row::<(Option<String>,)>()
                .with_context(|| cql.clone())?;
            if row.and_then(|r| r.0).as_deref() == Some(*home) {
                found += 1;
            }
        }
        let Some(why) = fill_reason(marker, population, found, samples.len(), fill.refill) else {
            println!(
                "lookup `{name}`: {ks}.{table} holds the {} cards of seed {} already (its marker in {ks}.{FILL_MARKERS}, \
                 {found} sample cards read back): fill skipped",
                population.cards, population.seed
            );
            continue;
        };
        println!("lookup `{name}`: filling {ks}.{table} with {} cards ({why})", cards.len());
        let took = fill_cards(session, ks, table, cards, fill).await?;
        let cql = format!(
            "INSERT INTO {ks}.{FILL_MARKERS} (table_name, seed, cards, filled_at, seconds) VALUES (?, ?, ?, ?, ?)"
        );
        let values =
            (table, population.seed as i64, population.cards as i64, CqlTimestamp(now_ms()), took.as_secs_f64());
        session.inner().query_unpaged(cql.as_str(), values).await.with_context(|| cql.clone())?;
        println!(
            "lookup `{name}`: {} cards written to {ks}.{table} in {:.1} s: {:.0} rows/s (unlogged batches of {}, {} in flight)",
            cards.len(),
            took.as_secs_f64(),
            cards.len() as f64 / took.as_secs_f64(),
            fill.batch.max(1),
            fill.in_flight.max(1)
        );
    }
    Ok(())
}

/// Upserts every card into `keyspace.table` (`card_id`, `home_country`;
/// other columns stay null) in unlogged batches of `fill.batch` rows,
/// `fill.in_flight` batches at once, each retried a few times; prints the
/// progress every tenth. Returns how long it took.
async fn fill_cards(
    session: &CassandraSession,
    keyspace: &str,
    table: &str,
    cards: &[(String, &'static str)],
    fill: FillOptions,
) -> anyhow::Result<Duration> {
    let cql = format!("INSERT INTO {keyspace}.{table} (card_id, home_country) VALUES (?, ?)");
    let mut insert = session.inner().prepare(cql.as_str()).await.with_context(|| format!("prepare `{cql}`"))?;
    insert.set_consistency(Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let size = fill.batch.max(1);
    let batch_of = |rows: usize| {
        let mut b = Batch::new(BatchType::Unlogged);
        for _ in 0..rows {
            b.append_statement(insert.clone());
        }
        b.set_consistency(Consistency::LocalQuorum);
        b.set_is_idempotent(true);
        b
    };
    let (full, last) = (batch_of(size), batch_of(cards.len() % size));
    let s = session.inner();
    let started = Instant::now();
    let tenth = (cards.len() / 10).max(1);
    futures::stream::iter(cards.chunks(size))
        .map(|chunk| {
            let batch = if chunk.len() == size { &full } else { &last };
            async move {
                let values: Vec<(&str, &str)> = chunk.iter().map(|(id, home)| (id.as_str(), *home)).collect();
                let mut attempt = 0u32;
                loop {
                    match s.batch(batch, &values).await {
                        Ok(_) => return anyhow::Ok(chunk.len()),
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            tracing::debug!(error = %e, attempt, "a batch of cards was not written; retrying");
                            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                        }
                        Err(e) => {
                            bail!("write {} cards into {keyspace}.{table} (after {attempt} retries): {e}", chunk.len())
                        }
                    }
                }
            }
        })
        .buffer_unordered(fill.in_flight.max(1))
        .try_fold(0usize, |done, n| async move {
            if (done + n) / tenth > done / tenth {
                let t = started.elapsed().as_secs_f64();
                println!("  {} of {} cards in {t:.1} s ({:.0} rows/s)", done + n, cards.len(), (done + n) as f64 / t);
            }
            Ok(done + n)
        })
        .await?;
    Ok(started.elapsed())
}

/// The nearest-rank percentile `q` (0..=1) of sorted `v`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Per partition, what the producer sent: each time the partition's
/// largest event time rose, (that event time, when it was sent).
#[derive(Debug, Default, Clone)]
struct SendLog {
    rises: Vec<Vec<(i64, i64)>>,
}

impl SendLog {
    fn new(partitions: usize) -> SendLog {
        SendLog { rises: vec![Vec::new(); partitions] }
    }

    /// Notes an event of `event_time` sent to `partition` at `sent_ms`.
    fn note(&mut self, partition: usize, event_time: i64, sent_ms: i64) {
        let r = &mut self.rises[partition];
        if r.last().is_none_or(|(t, _)| event_time > *t) {
            r.push((event_time, sent_ms));
        }
    }

    /// When every partition had been sent an event at or after `t`: the
    /// latest of the first such sends (None if some partition has none).
    fn due(&self, t: i64) -> Option<i64> {
        let mut due = i64::MIN;
        for r in &self.rises {
            let i = r.partition_point(|(et, _)| *et < t);
            due = due.max(r.get(i)?.1);
        }
        Some(due)
    }
}

/// A key's partition, as the bench's producer places it (FNV-1a).
fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % partitions.max(1) as u64) as usize
}

async fn pipeline(args: PipelineBenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let spec = PipelineSpec::from_yaml(&text, &args.file.display().to_string())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let Some(source) = spec.sources.keys().next().cloned() else { bail!("{}: no source", args.file.display()) };
    let options = Options {
        seed: args.seed,
        rate: args.event_rate,
        count: Some(args.events),
        keys: Some(args.cards),
        malformed_share: 0.001,
        ..Options::default()
    };
    let built = Instant::now();
    let gen = Generator::new(GeneratorKind::Fraud, &options).context("fraud generator options")?;
    // The latency run builds one as large: its first event is this much later.
    let gen_build = built.elapsed();
    let cards: Vec<(String, &'static str)> = match &gen {
        Generator::Fraud(g) => g.cards().collect(),
        Generator::AdTech(_) => Vec::new(),
    };
    let avro = AvroPayloads::new(GeneratorKind::Fraud, Some(&args.file), WireFormat::Confluent, AVRO_SCHEMA_ID)?;
    let mut avro_events: Vec<Vec<u8>> = Vec::new();
    let mut events: Vec<(String, Vec<u8>)> = Vec::new();
    for e in gen.filter(|e| e.source == source) {
        avro_events.push(avro.encode(&e)?);
        events.push((e.key, e.payload));
    }
    let bytes: usize = events.iter().map(|(_, p)| p.len()).sum();
    let avro_bytes: usize = avro_events.iter().map(Vec::len).sum();
    println!(
        "{} fraud events for source `{source}` ({:.1} MB of JSON, {:.1} MB of Avro, seed {}, event rate {}/s, {} cards), \
         batches of {}",
        events.len(),
        bytes as f64 / 1e6,
        avro_bytes as f64 / 1e6,
        args.seed,
        args.event_rate,
        cards.len(),
        args.batch
    );
    let lookups = memory_lookups(&spec, &cards)?;
    let probe = StageRuntime::with_lookups(&spec, &lookups).await?;
    let schema = probe.source_schema(&source).context("source schema")?;
    drop(probe);
    let decoder = Decoder::new(RecordFormat::Json, schema.clone())?;
    let avro_decoder = Decoder::new(RecordFormat::Avro(avro_format()), schema)?;
    let batch = args.batch.max(1);

    let mut phases = Vec::new();
    phases.push(
        timed("cpu: decode only", || async {
            let mut rows = 0u64;
            for chunk in events.chunks(batch) {
                let d = decoder.decode(chunk.iter().map(|(_, p)| p.as_slice()));
                rows += d.batch.num_rows() as u64;
            }
            Ok((events.len() as u64, rows))
        })
        .await?,
    );
    phases.push(
        timed("cpu: decode only (avro)", || async {
            let mut rows = 0u64;
            for chunk in avro_events.chunks(batch) {
                let d = avro_decoder.decode(chunk.iter().map(Vec::as_slice));
                rows += d.batch.num_rows() as u64;
            }
            Ok((avro_events.len() as u64, rows))
        })
        .await?,
    );
    drop(avro_events);
    phases.push(
        timed("cpu: decode + stage runtime (sinks counted)", || async {
            let mut rt = StageRuntime::with_lookups(&spec, &lookups).await?;
            rt.assign_partitions(&source, &[0])?;
            let mut out_rows = 0u64;
            let mut offset = 0i64;
            let mut pushes = PushTimes::default();
            let chunks = events.len().div_ceil(batch);
            for (i, chunk) in events.chunks(batch).enumerate() {
                let d = decoder.decode(chunk.iter().map(|(_, p)| p.as_slice()));
                let first = offset;
                offset += chunk.len() as i64;
                let t = Instant::now();
                let out = rt.push_range(&source, 0, first, offset, d.batch).await?;
                let rows = out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
                pushes.note(t.elapsed(), rows);
                out_rows += rows;
                if i == chunks / 2 {
                    let t = Instant::now();
                    let bytes = rt.checkpoint_state()?;
                    pushes.checkpoint = Some((t.elapsed(), bytes.len()));
                }
            }
            let out = rt.finish().await?;
            out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            println!("{}", pushes.report());
            Ok((events.len() as u64, out_rows))
        })
        .await?,
    );
    for p in &phases {
        println!("{}", p.line());
    }

    let Some(bootstrap) = args.bootstrap.clone() else { return Ok(()) };
    let client = KafkaClientConfig::new(bootstrap.clone());
    let pid = std::process::id();
    let topic = format!("bench-{source}-{pid}");
    let admin = KafkaAdmin::connect(&client).await?;
    let session = if args.cassandra.is_empty() {
        None
    } else {
        let mut cc = CassandraConfig::new(&args.cassandra);
        cc.local_dc = Some(args.local_dc.clone());
        Some(CassandraSession::connect(&cc).await?)
    };
    let tag = format!("bench{pid}");
    let staged_spec = bench_spec(&spec, &tag, &topic, args.partitions.max(1) as u32, args.population());
    match &session {
        Some(session) => {
            prepare_bench(&staged_spec, &admin, session, &args.local_dc, &cards, args.population(), args.fill()).await?
        }
        None => {
            admin.create_topic(&TopicSpec::new(&topic, args.partitions, 1)).await?;
            admin.await_topic(&topic, Duration::from_secs(30)).await?;
        }
    }
    let produce = timed("kafka: produce (KafkaSink, acks all)", || async {
        let mut sink = KafkaSink::new(SinkConfig::new(client.clone()))?;
        for (key, payload) in &events {
            sink.send(&topic, Some(key.as_bytes()), Some(payload), &[]).await?;
        }
        sink.flush().await?;
        Ok((events.len() as u64, 0))
    })
    .await?;
    println!("{}", produce.line());
    let n = events.len() as u64;
    let partitions: Vec<i32> = (0..args.partitions).collect();
    let limits = PollLimits { max_records: batch, ..PollLimits::default() };
    let mut consumer_client = client.clone();
    for kv in &args.consumer_properties {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--consumer-property {kv}: expected KEY=VALUE, e.g. queued.min.messages=100000")
        };
        consumer_client = consumer_client.with_property(k.trim(), v.trim());
    }
    let open = |group: &str| {
        SourceConfig::new(consumer_client.clone(), group.to_string(), topic.clone(), partitions.clone())
            .starting_at(StartPosition::Earliest)
    };
    let mut src = KafkaSource::open(open(&format!("{topic}-raw"))).await?;
    let raw = timed("kafka (a): raw consume (KafkaSource poll)", || async {
        let mut got = 0u64;
        while got < n {
            got += src.poll_batch(&limits).await?.len() as u64;
        }
        Ok((got, 0))
    })
    .await?;
    drop(src);
    println!("{}", raw.line());
    let mut src = KafkaSource::open(open(&format!("{topic}-stage"))).await?;
    let staged = timed("kafka (b): consume + decode + stage runtime", || async {
        let mut rt = StageRuntime::with_lookups(&spec, &lookups).await?;
        rt.assign_partitions(&source, &partitions)?;
        let (mut got, mut out_rows) = (0u64, 0u64);
        while got < n {
            let records = src.poll_batch(&limits).await?;
            got += records.len() as u64;
            for p in &partitions {
                let mine: Vec<&smack_connectors::kafka::KafkaRecord> =
                    records.iter().filter(|r| r.partition == *p).collect();
                let (Some(first), Some(last)) = (mine.first(), mine.last()) else { continue };
                let d = decoder.decode(mine.iter().map(|r| r.payload.as_deref().unwrap_or(&[])));
                let out = rt.push_range(&source, *p, first.offset, last.offset + 1, d.batch).await?;
                out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            }
        }
        let out = rt.finish().await?;
        out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
        Ok((got, out_rows))
    })
    .await?;
    drop(src);
    println!("{}", staged.line());
    println!("ratio (b)/(a): {:.2}", staged.rate() / raw.rate());

    let state_root = std::env::temp_dir().join(format!("smack-bench-{pid}"));
    if let Some(session) = &session {
        let (stage, _) = measured_stage(&staged_spec)?;
        let mut config = TaskConfig::new(&stage, 0, 1, bootstrap.clone(), state_root.join("task"));
        config.cassandra = args.cassandra.clone();
        config.local_dc = Some(args.local_dc.clone());
        config.max_batch_records = batch;
        config.cassandra_in_flight = args.cassandra_in_flight.max(1);
        config.until_idle = true;
        let (opened, metrics) = (Instant::now(), TaskMetrics::new());
        let mut task = StageTask::open(&staged_spec, config, metrics.clone()).await?;
        println!(
            "kafka (c): stage task open in {:.1} s{}",
            opened.elapsed().as_secs_f64(),
            full_lookups_loaded(&staged_spec, &metrics)
        );
        let full = timed("kafka (c): stage task (+ lookups, Cassandra and Kafka sinks, checkpoints)", || async {
            while task.step().await? != Step::Finished {}
            Ok((task.summary().records_in, task.summary().rows_out))
        })
        .await?;
        println!("{}", full.line());
        println!("ratio (c)/(a): {:.2}", full.rate() / raw.rate());
        drop(task); // its lookup tables, before the latency run reads its own
        let generated = Generated { cards: &cards, built_in: gen_build };
        latency(&args, &spec, &client, &admin, session, &generated, &state_root).await?;
        for ks in keyspaces(&staged_spec) {
            if let Err(e) = session.execute_ddl(&format!("DROP KEYSPACE IF EXISTS {ks}")).await {
                tracing::warn!(%ks, "could not drop the bench keyspace: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&state_root);
    for t in bench_topics(&staged_spec) {
        if let Err(e) = admin.delete_topic(&t).await {
            tracing::warn!(topic = %t, "could not delete the bench topic: {e}");
        }
    }
    Ok(())
}

/// The keyspaces of a bench copy's sinks and lookups, dropped at the end:
/// all but those of the card tables (kept for the next run).
fn keyspaces(spec: &PipelineSpec) -> Vec<String> {
    let card_lookups = card_home_lookups(spec);
    let mut out: Vec<String> = spec
        .sinks
        .values()
        .filter_map(|s| match s {
            Sink::Cassandra(c) => Some(c.keyspace.clone()),
            Sink::Kafka(_) => None,
        })
        .chain(spec.lookups.iter().filter(|(n, _)| !card_lookups.contains(n)).map(|(_, l)| match l {
            Lookup::Cassandra(c) => c.keyspace.clone(),
        }))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The topics of a bench copy: sources, Kafka sinks, dead letters.
fn bench_topics(spec: &PipelineSpec) -> Vec<String> {
    let mut out = Vec::new();
    for (name, s) in &spec.sources {
        let Source::Kafka(k) = s;
        out.push(k.topic.clone());
        out.push(smack_pipelines::task::dead_letter_topic(&spec.name, name));
    }
    for s in spec.sinks.values() {
        if let Sink::Kafka(k) = s {
            out.push(k.topic.clone());
        }
    }
    out
}

/// The bench's cards, and how long building a generator of them took.
struct Generated<'a> {
    cards: &'a [(String, &'static str)],
    built_in: Duration,
}

/// The latency run (see the module doc).
async fn latency(
    args: &PipelineBenchArgs,
    spec: &PipelineSpec,
    client: &KafkaClientConfig,
    admin: &KafkaAdmin,
    session: &CassandraSession,
    generated: &Generated<'_>,
    state_root: &std::path::Path,
) -> anyhow::Result<()> {
    if args.latency_seconds == 0 {
        return Ok(());
    }
    let pid = std::process::id();
    let Some(source) = spec.sources.keys().next().cloned() else { bail!("no source") };
    let topic = format!("bench-lat-{source}-{pid}");
    let parts = args.partitions.max(1) as usize;
    let lspec = bench_spec(spec, &format!("lat{pid}"), &topic, parts as u32, args.population());
    prepare_bench(&lspec, admin, session, &args.local_dc, generated.cards, args.population(), args.fill()).await?;
    let (stage, sink) = measured_stage(&lspec)?;
    let Source::Kafka(k) = &lspec.sources[&source];
    let ooo = k.watermark.as_ref().map_or(0, |w| w.max_out_of_orderness.0.as_millis() as i64);
    let lateness = lspec.stages[&stage].window.as_ref().map_or(0, |w| w.allowed_lateness.0.as_millis() as i64);

    let mut config = TaskConfig::new(&stage, 0, 1, args.bootstrap.clone().unwrap_or_default(), state_root.join("lat"));
    config.cassandra = args.cassandra.clone();
    config.local_dc = Some(args.local_dc.clone());
    config.max_batch_records = args.latency_batch.max(1);
    config.cassandra_in_flight = args.cassandra_in_flight.max(1);
    // The one-time costs (partitions assigned, full lookups read) before
    // the first event: the producer starts once the task is open.
    let (opened, metrics) = (Instant::now(), TaskMetrics::new());
    let task = StageTask::open(&lspec, config, metrics.clone()).await?;
    println!(
        "latency: stage task open in {:.1} s{}",
        opened.elapsed().as_secs_f64(),
        full_lookups_loaded(&lspec, &metrics)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(drive(task, stop.clone()));

    // Events whose time is their produce time: the producer waits for each.
    let count = (args.latency_rate * args.latency_seconds as f64) as u64;
    let mut producer = KafkaSink::new(SinkConfig::new(client.clone()))?;
    // The first event half a second after the generator is built (it
    // places every event in time from `start`).
    let start = now_ms() + 500 + generated.built_in.as_millis() as i64;
    let options = Options {
        seed: args.seed,
        rate: args.latency_rate,
        start_ms: Some(start),
        count: Some(count),
        keys: Some(args.cards),
        malformed_share: 0.001,
        ..Options::default()
    };
    let gen = Generator::new(GeneratorKind::Fraud, &options).context("fraud generator options")?;
    let mut log = SendLog::new(parts);
    let (mut sent, mut behind_max, mut behind_at, mut newest) = (0u64, 0i64, 0i64, i64::MIN);
    println!(
        "latency: producing {count} events at {}/s for {} s to `{topic}` ({parts} partitions)",
        args.latency_rate, args.latency_seconds
    );
    for e in gen.filter(|e| e.source == source) {
        let ahead = e.event_time_ms - now_ms();
        if ahead > 0 {
            tokio::time::sleep(Duration::from_millis(ahead as u64)).await;
        }
        let p = partition_of(&e.key, parts);
        producer.send_to(&topic, Some(p as i32), Some(e.key.as_bytes()), Some(&e.payload), &[]).await?;
        let at = now_ms();
        // Late events are behind the newest on purpose: only in-order ones
        // say whether the producer keeps its schedule.
        if e.event_time_ms >= newest && at - e.event_time_ms > behind_max {
            (behind_max, behind_at) = (at - e.event_time_ms, e.event_time_ms - start);
        }
        newest = newest.max(e.event_time_ms);
        if !e.malformed {
            log.note(p, e.event_time_ms, at);
        }
        sent += 1;
    }
    producer.flush().await?;
    let produced_in = (now_ms() - start) as f64 / 1000.0;
    tokio::time::sleep(Duration::from_secs(args.latency_drain_seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let summary = task.await.context("the latency run's stage task")??;

    // Every row with its write time, against when it was due.
    let Some(value_column) = regular_column(session, &sink.keyspace, &sink.table).await? else {
        bail!("{}.{}: no column outside the primary key to read WRITETIME of", sink.keyspace, sink.table)
    };
    let cql = format!("SELECT window_end, WRITETIME({value_column}) FROM {}.{}", sink.keyspace, sink.table);
    let pager = session.inner().query_iter(cql.as_str(), ()).await.with_context(|| cql.clone())?;
    let mut rows = pager.rows_stream::<(CqlTimestamp, Option<i64>)>().with_context(|| cql.clone())?;
    let mut per_window: BTreeMap<i64, (i64, Vec<f64>)> = BTreeMap::new();
    let mut undue = 0u64;
    while let Some((end, written)) = rows.try_next().await.with_context(|| cql.clone())? {
        let (Some(written), Some(due)) = (written, log.due(end.0 + lateness + ooo)) else {
            undue += 1;
            continue;
        };
        per_window.entry(end.0).or_insert((due, Vec::new())).1.push(written as f64 / 1000.0 - due as f64);
    }
    let warm = start + args.latency_warmup_seconds as i64 * 1000;
    let mut all: Vec<f64> =
        per_window.values().filter(|(due, _)| *due >= warm).flat_map(|(_, v)| v.iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    println!(
        "latency: {sent} events in {produced_in:.1} s ({:.0}/s; the producer was at most {behind_max} ms behind its schedule, \
         {:.1} s into the run); \
         the task: {}",
        sent as f64 / produced_in,
        behind_at as f64 / 1000.0,
        summary.line()
    );
    for (end, (due, v)) in &per_window {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        println!(
            "latency: window ending {end} (due {:.1} s into the run{}): {} rows, produce → row {:.1} .. {:.1} ms",
            (due - start) as f64 / 1000.0,
            if *due < warm { ", warm-up" } else { "" },
            v.len(),
            v[0],
            v[v.len() - 1]
        );
    }
    println!(
        "latency: produce → row in Cassandra over {} rows of {} windows due after the warm-up ({undue} rows not due \
         within the run): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        per_window.values().filter(|(due, _)| *due >= warm).count(),
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    for ks in keyspaces(&lspec) {
        let _ = session.execute_ddl(&format!("DROP KEYSPACE IF EXISTS {ks}")).await;
    }
    for t in bench_topics(&lspec) {
        let _ = admin.delete_topic(&t).await;
    }
    Ok(())
}

/// Steps an open stage task until `stop` is set (then flushes its sinks
/// and checkpoints), as `run_task` does after opening it.
async fn drive(mut task: StageTask, stop: Arc<AtomicBool>) -> Result<TaskSummary, TaskError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            if !task.is_replaying() {
                task.checkpoint().await?;
            }
            return Ok(task.summary().clone());
        }
        if task.step().await? == Step::Finished {
            return Ok(task.summary().clone());
        }
    }
}

/// A regular (non-key) column of `keyspace.table`, from the schema tables.
async fn regular_column(session: &CassandraSession, keyspace: &str, table: &str) -> anyhow::Result<Option<String>> {
    let cql = "SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?";
    let pager = session.inner().query_iter(cql, (keyspace, table)).await.context("read the table's columns")?;
    let mut rows = pager.rows_stream::<(String, String)>().context("read the table's columns")?;
    let mut names = Vec::new();
    while let Some((name, kind)) = rows.try_next().await.context("read the table's columns")? {
        if kind == "regular" {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_pipelines::runtime::schema::source_schema;

    #[test]
    fn stat_cpu_time_sums_user_and_system_ticks() {
        let stat = "4242 (smack (x) y) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 3 0 100";
        assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(1750)));
    }

    #[test]
    fn stat_cpu_time_refuses_short_or_garbled_text() {
        assert_eq!(stat_cpu_time("4242 (smack) R 1 2"), None);
        assert_eq!(stat_cpu_time("no parenthesis at all"), None);
        assert_eq!(stat_cpu_time("1 (a) R 1 2 3 4 5 6 7 8 9 10 x 25"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn a_row_is_due_when_every_partition_was_sent_a_late_enough_event() {
        let mut log = SendLog::new(2);
        log.note(0, 1_000, 5);
        log.note(0, 900, 6); // older: the partition's clock does not move
        log.note(1, 1_100, 7);
        log.note(0, 2_000, 9);
        log.note(1, 1_900, 10);
        log.note(1, 2_500, 12);
        assert_eq!(log.due(1_000), Some(7), "partition 1 got 1,100 at 7");
        assert_eq!(log.due(2_000), Some(12), "partition 1 only passed 2,000 at 12");
        assert_eq!(log.due(1_950), Some(12));
        assert_eq!(log.due(2_001), None, "partition 0 never passed it");
        assert_eq!(log.rises[0], vec![(1_000, 5), (2_000, 9)]);
    }

    #[test]
    fn keys_spread_over_partitions_and_stay_put() {
        let mut seen = [0usize; 3];
        for i in 0..300 {
            let key = format!("card-{i}");
            let p = partition_of(&key, 3);
            assert_eq!(p, partition_of(&key, 3));
            seen[p] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(partition_of("x", 0), 0);
    }

    #[test]
    fn a_card_table_is_named_by_its_population_and_fits_cassandra() {
        assert_eq!(Population { seed: 7, cards: 100_000 }.table("card_homes"), "card_homes_s7_c100000");
        let long = Population { seed: u64::MAX, cards: u64::MAX }.table("card_homes");
        assert_eq!(long.len(), MAX_TABLE_NAME, "{long}");
        assert!(long.starts_with("card_s") && long.ends_with(&format!("_c{}", u64::MAX)), "{long}");
        let other = Population { seed: 8, cards: 100_000 }.table("card_homes");
        assert_ne!(other, "card_homes_s7_c100000");
    }

    #[test]
    fn a_card_table_is_filled_unless_its_marker_and_samples_say_it_holds_the_cards() {
        let p = Population { seed: 42, cards: 3_000_000 };
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 3, 3, false), None);
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 3, 3, true), Some("--refill"));
        assert_eq!(fill_reason(None, p, 3, 3, false), Some("no run has filled it yet"));
        assert_eq!(fill_reason(Some((42, 100_000)), p, 3, 3, false), Some("its marker is of other cards"));
        assert_eq!(fill_reason(Some((41, 3_000_000)), p, 3, 3, false), Some("its marker is of other cards"));
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 2, 3, false), Some("sample cards are missing"));
    }

    #[test]
    fn sample_cards_are_the_first_middle_and_last() {
        assert_eq!(sample_cards(3_000_000), vec![0, 1_500_000, 2_999_999]);
        assert_eq!(sample_cards(2), vec![0, 1]);
        assert_eq!(sample_cards(1), vec![0]);
        assert!(sample_cards(0).is_empty());
    }

    #[test]
    fn avro_events_decode_like_their_json_and_malformed_ones_do_not() {
        use smack_connectors::format::to_json_rows;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pipeline-latency.yaml");
        let spec = smack_pipelines::load(&path).unwrap();
        let source = &spec.sources["transactions"];
        let avro = AvroPayloads::new(GeneratorKind::Fraud, Some(&path), WireFormat::Confluent, AVRO_SCHEMA_ID).unwrap();
        let json = Decoder::new(RecordFormat::Json, source_schema(source)).unwrap();
        let decoder = Decoder::new(RecordFormat::Avro(avro_format()), source_schema(source)).unwrap();
        let options = Options { seed: 5, count: Some(2_000), malformed_share: 0.02, ..Options::default() };
        let (mut good, mut bad) = (0, 0);
        for e in Generator::new(GeneratorKind::Fraud, &options).unwrap() {
            let bytes = avro.encode(&e).unwrap();
            let (a, j) = (decoder.decode([bytes.as_slice()]), json.decode([e.payload.as_slice()]));
            if e.malformed {
                assert_eq!((a.errors.len(), a.batch.num_rows()), (1, 0), "{e:?}");
                bad += 1;
            } else {
                assert!(a.errors.is_empty(), "{:?} {e:?}", a.errors);
                assert_eq!(to_json_rows(&a.batch).unwrap(), to_json_rows(&j.batch).unwrap());
                good += 1;
            }
        }
        assert!(good > 1_500 && bad > 0, "{good} good, {bad} malformed");
    }

    #[test]
    fn a_bench_copy_has_names_of_its_own() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fraud-detection/pipeline.yaml");
        let spec = smack_pipelines::load(&path).unwrap();
        let b = bench_spec(&spec, "bench7", "bench-tx-7", 3, Population { seed: 42, cards: 3_000_000 });
        assert_eq!(b.name, "fraud-detection-bench7");
        let Lookup::Cassandra(l) = &b.lookups["card_homes"];
        assert_eq!((l.keyspace.as_str(), l.table.as_str()), ("fraud_benchcards", "card_homes_s42_c3000000"));
        let Source::Kafka(k) = &b.sources["transactions"];
        assert_eq!((k.topic.as_str(), k.partitions, k.replication), ("bench-tx-7", 3, 1));
        assert_eq!(keyspaces(&b), vec!["fraud_bench7".to_string()], "the card table's keyspace is kept");
        assert!(bench_topics(&b).contains(&"bench7-fraud-alerts".to_string()), "{:?}", bench_topics(&b));
        let (stage, sink) = measured_stage(&b).unwrap();
        assert_eq!((stage.as_str(), sink.table.as_str()), ("card_velocity", "suspicious_cards"));
    }
}
