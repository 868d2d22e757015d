//! The lookups a stage task joins, read from their Cassandra tables.
//!
//! One provider per lookup the task's stages join, by the lookup's `cache:`
//! ([`crate::spec::CachePlan`]):
//!
//! - **Partial** ([`CassandraLookupProvider`]): per micro-batch the runtime
//!   hands it the batch's distinct keys (the input expressions the ON clause
//!   compares with the lookup's key, see
//!   [`crate::runtime::plan::lookup_keys_sql`]); it casts them to the key's
//!   declared types, answers what the bounded LRU cache holds, reads the
//!   misses by primary key with at most [`LOOKUP_CONCURRENCY`] queries in
//!   flight ([`CassandraLookup::get_many`]) and returns the rows found, in
//!   the lookup's declared schema. Absent rows are cached like present ones,
//!   but only for `missing-expire` (default 60 s), so a row written after a
//!   record asked for it is seen a minute later at most; rows found are
//!   forgotten after `expire-after-write` if set.
//! - **Full** ([`FullLookup`]): the whole table is read before the first
//!   batch ([`FullLookup::load`], a paged scan of the declared columns) and
//!   held in memory ([`LookupTable`]); every key is answered from it, a key
//!   not in it has no row, and Cassandra is not asked. A background task
//!   reads the table again every `reload` and swaps the new one in whole; a
//!   failed reload keeps the rows held, logs a warning, counts
//!   `smack_stage_lookup_reload_failures_total` and is tried again a period
//!   later.
//!
//! A key with no row is left out and the stage's SQL decides what that
//! means: NULLs for a LEFT JOIN, the input row dropped for a JOIN. A key with
//! a NULL part matches nothing (SQL equality) and is not read. Cache hits
//! and misses are counted on the task's metrics
//! (`smack_stage_lookup_cache_{hits,misses}_total`; a full cache answers
//! every key as a hit), and a full cache's rows and load time too
//! (`smack_stage_lookup_table_rows`, `smack_stage_lookup_load_duration_seconds`).

use super::metrics::{label, TaskMetrics};
use super::TaskError;
use crate::runtime::lookup::{lookup_schema, LookupProviders};
use crate::runtime::plan::tables_read;
use crate::runtime::{LookupFetch, LookupProvider};
use crate::spec::{CachePlan, Lookup, PipelineSpec};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use smack_connectors::cassandra::{
    batch_to_rows, key_bytes, load_table, rows_to_batch, BatchAnswer, CassandraLookup, CassandraSession, CqlValue,
    Expiry, LookupTable, SCAN_PAGE_SIZE,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Lookup queries in flight at once, per lookup.
pub const LOOKUP_CONCURRENCY: usize = 64;

/// Rows read by key, a batch of keys at a time, through a cache: what a
/// [`CassandraLookupProvider`] needs from its table ([`CassandraLookup`];
/// tests give it rows from memory).
pub trait KeyedRows: Send + Sync {
    /// Per key, in order: the row's cells in the lookup's column order, or
    /// `None`; with the cache's hits and misses.
    fn get_many<'a>(
        &'a self,
        keys: &'a [Vec<CqlValue>],
        concurrency: usize,
    ) -> Pin<Box<dyn Future<Output = Result<BatchAnswer, String>> + Send + 'a>>;
}

impl KeyedRows for CassandraLookup {
    fn get_many<'a>(
        &'a self,
        keys: &'a [Vec<CqlValue>],
        concurrency: usize,
    ) -> Pin<Box<dyn Future<Output = Result<BatchAnswer, String>> + Send + 'a>> {
        Box::pin(async move { CassandraLookup::get_many(self, keys, concurrency).await.map_err(|e| e.to_string()) })
    }
}

/// A lookup read from its Cassandra table through a bounded cache.
pub struct CassandraLookupProvider {
    name: String,
    lookup: Box<dyn KeyedRows>,
    schema: SchemaRef,
    key: Vec<String>,
    concurrency: usize,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for CassandraLookupProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraLookupProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The partial cache's size and expiry for `plan` (`None` for a full cache).
pub fn partial_cache(plan: CachePlan) -> Option<(usize, Expiry)> {
    match plan {
        CachePlan::Partial { size, expire_after_write, missing_expire } => {
            Some((size as usize, Expiry { found: expire_after_write, missing: Some(missing_expire) }))
        }
        CachePlan::Full { .. } => None,
    }
}

impl CassandraLookupProvider {
    /// Prepares the read of lookup `name` (every declared column, by key)
    /// with the partial cache its `cache:` asks for (a full one is read as
    /// a partial cache of the default size: use [`FullLookup`] for it);
    /// hits and misses go to `metrics` under the label `lookup=<name>`.
    pub async fn new(
        session: &CassandraSession,
        name: &str,
        lookup: &Lookup,
        metrics: &TaskMetrics,
    ) -> Result<CassandraLookupProvider, TaskError> {
        let Lookup::Cassandra(c) = lookup;
        let columns: Vec<&String> = c.schema.keys().collect();
        let (size, expiry) =
            partial_cache(c.cache_plan()).unwrap_or((crate::spec::DEFAULT_CACHE_SIZE as usize, Expiry::default()));
        let read = CassandraLookup::new(session, &c.keyspace, &c.table, &c.key, &columns, size)
            .await
            .map_err(TaskError::cassandra(format!("prepare lookup `{name}`")))?
            .with_expiry(expiry);
        Ok(CassandraLookupProvider::with_rows(name, lookup, Box::new(read), metrics))
    }

    /// The same over any [`KeyedRows`] (rows in the lookup's column order).
    pub fn with_rows(
        name: &str,
        lookup: &Lookup,
        rows: Box<dyn KeyedRows>,
        metrics: &TaskMetrics,
    ) -> CassandraLookupProvider {
        CassandraLookupProvider {
            name: name.to_string(),
            lookup: rows,
            schema: lookup_schema(lookup),
            key: lookup.key().to_vec(),
            concurrency: LOOKUP_CONCURRENCY,
            hits: metrics.lookup_cache_hits.get_or_create(&label("lookup", name)).clone(),
            misses: metrics.lookup_cache_misses.get_or_create(&label("lookup", name)).clone(),
        }
    }
}

impl LookupProvider for CassandraLookupProvider {
    fn fetch<'a>(&'a self, keys: &'a RecordBatch) -> LookupFetch<'a> {
        Box::pin(async move {
            let wanted = key_values(keys, &self.schema, &self.key)?;
            if wanted.is_empty() {
                return Ok(RecordBatch::new_empty(self.schema.clone()));
            }
            let answer = self.lookup.get_many(&wanted, self.concurrency).await?;
            self.hits.inc_by(answer.hits);
            self.misses.inc_by(answer.misses);
            let found: Vec<Vec<Option<CqlValue>>> = answer.rows.into_iter().flatten().collect();
            rows_to_batch(self.schema.clone(), &found).map_err(|e| format!("a row of `{}`: {e}", self.name))
        })
    }
}

/// Reads a lookup's whole table (a [`FullLookup`]'s loads and reloads).
pub type TableLoader = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<LookupTable, smack_connectors::cassandra::Error>> + Send>>
        + Send
        + Sync,
>;

/// What a [`FullLookup`] has loaded so far ([`FullLookup::subscribe`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadState {
    /// Tables loaded (the first load and each reload that succeeded).
    pub loads: u64,
    /// Reloads that failed.
    pub failures: u64,
    /// Rows held now.
    pub rows: usize,
}

/// A lookup answered from its whole table in memory (`cache: {mode: full}`),
/// read again every `reload` by a background task (see the module docs).
///
/// To preload one (a benchmark, say): [`FullLookup::load`] returns once the
/// table is in memory (or [`FullLookup::from_table`] with rows already
/// read); [`FullLookup::state`] says how many loads have succeeded and
/// [`FullLookup::subscribe`] waits for the next; [`FullLookup::spawn_reloads`]
/// starts the periodic reload. It is the runtime's [`LookupProvider`] as is.
pub struct FullLookup {
    name: String,
    schema: SchemaRef,
    key: Vec<String>,
    table: RwLock<Arc<LookupTable>>,
    state: watch::Sender<LoadState>,
    reloads: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    hits: Counter,
    rows: Gauge,
    load_duration: Gauge<f64, AtomicU64>,
    failures: Counter,
}

impl std::fmt::Debug for FullLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullLookup").field("name", &self.name).field("state", &self.state()).finish_non_exhaustive()
    }
}

impl Drop for FullLookup {
    fn drop(&mut self) {
        if let Some(h) = self.reloads.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}

/// A loader of a lookup's table from Cassandra: a paged scan of the
/// declared columns.
pub fn cassandra_loader(session: &CassandraSession, lookup: &Lookup) -> TableLoader {
    let Lookup::Cassandra(c) = lookup;
    let session = session.clone();
    let (keyspace, table, key) = (c.keyspace.clone(), c.table.clone(), c.key.clone());
    let schema = lookup_schema(lookup);
    Arc::new(move || {
        let (session, keyspace, table, key, schema) =
            (session.clone(), keyspace.clone(), table.clone(), key.clone(), schema.clone());
        Box::pin(async move { load_table(&session, &keyspace, &table, schema, &key, SCAN_PAGE_SIZE).await })
    })
}

impl FullLookup {
    /// Reads lookup `name`'s whole table from Cassandra and returns once it
    /// is in memory; its rows, load time and (later) failed reloads go to
    /// `metrics` under `lookup=<name>`. No reload runs yet
    /// ([`FullLookup::spawn_reloads`]).
    pub async fn load(
        session: &CassandraSession,
        name: &str,
        lookup: &Lookup,
        metrics: &TaskMetrics,
    ) -> Result<Arc<FullLookup>, TaskError> {
        FullLookup::load_with(name, lookup, cassandra_loader(session, lookup), metrics).await
    }

    /// The same with any loader.
    pub async fn load_with(
        name: &str,
        lookup: &Lookup,
        loader: TableLoader,
        metrics: &TaskMetrics,
    ) -> Result<Arc<FullLookup>, TaskError> {
        let started = Instant::now();
        let table = loader().await.map_err(TaskError::cassandra(format!("load lookup `{name}`")))?;
        let me = FullLookup::from_table(name, lookup, LookupTable::empty(lookup_schema(lookup)), metrics);
        me.swap(table, started.elapsed());
        Ok(me)
    }

    /// A full lookup holding `table` already (rows in the lookup's schema);
    /// it counts as no load.
    pub fn from_table(name: &str, lookup: &Lookup, table: LookupTable, metrics: &TaskMetrics) -> Arc<FullLookup> {
        let l = label("lookup", name);
        let rows = table.len();
        let me = FullLookup {
            name: name.to_string(),
            schema: lookup_schema(lookup),
            key: lookup.key().to_vec(),
            table: RwLock::new(Arc::new(table)),
            state: watch::Sender::new(LoadState { rows, ..LoadState::default() }),
            reloads: std::sync::Mutex::new(None),
            hits: metrics.lookup_cache_hits.get_or_create(&l).clone(),
            rows: metrics.lookup_table_rows.get_or_create(&l).clone(),
            load_duration: metrics.lookup_load_duration.get_or_create(&l).clone(),
            failures: metrics.lookup_reload_failures.get_or_create(&l).clone(),
        };
        me.rows.set(rows as i64);
        Arc::new(me)
    }

    /// The table held now.
    pub fn table(&self) -> Arc<LookupTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads and failures so far.
    pub fn state(&self) -> LoadState {
        *self.state.borrow()
    }

    /// Changes of [`FullLookup::state`]: `changed().await` returns after the
    /// next load or failed reload.
    pub fn subscribe(&self) -> watch::Receiver<LoadState> {
        self.state.subscribe()
    }

    /// Swaps `table` in (it took `took` to read).
    fn swap(&self, table: LookupTable, took: Duration) {
        let rows = table.len();
        let bytes = table.memory_bytes();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.rows.set(rows as i64);
        self.load_duration.set(took.as_secs_f64());
        self.state.send_modify(|s| {
            s.loads += 1;
            s.rows = rows;
        });
        tracing::info!(lookup = %self.name, rows, bytes, seconds = took.as_secs_f64(), "lookup table loaded");
    }

    /// Records a failed reload (the table held stays).
    fn failed(&self, error: &str) {
        self.failures.inc();
        self.state.send_modify(|s| s.failures += 1);
        tracing::warn!(lookup = %self.name, %error, "reloading the lookup table failed; its rows held stay until the next reload");
    }

    /// Reads the table again with `loader` every `every` (counted from the
    /// end of the previous load, so slow reads never pile up), in a tokio
    /// task that ends when this lookup is dropped.
    pub fn spawn_reloads(self: &Arc<Self>, loader: TableLoader, every: Duration) {
        let every = every.max(Duration::from_millis(1));
        let ticks: Ticks = Box::new(move || {
            Box::pin(async move {
                tokio::time::sleep(every).await;
                true
            })
        });
        self.spawn_reloads_on(loader, ticks);
    }

    /// The same, reloading at each of `ticks` (until it gives `false`).
    pub fn spawn_reloads_on(self: &Arc<Self>, loader: TableLoader, mut ticks: Ticks) {
        let weak: Weak<FullLookup> = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            while ticks().await {
                let started = Instant::now();
                let result = loader().await;
                let Some(me) = weak.upgrade() else { return };
                match result {
                    Ok(table) => me.swap(table, started.elapsed()),
                    Err(e) => me.failed(&e.to_string()),
                }
            }
        });
        if let Some(old) = self.reloads.lock().unwrap_or_else(|p| p.into_inner()).replace(handle) {
            old.abort();
        }
    }
}

/// When a [`FullLookup`] reloads: each call waits for the next reload
/// (`false`: no more).
pub type Ticks = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

impl LookupProvider for FullLookup {
    fn fetch<'a>(&'a self, keys: &'a RecordBatch) -> LookupFetch<'a> {
        Box::pin(async move {
            let wanted = key_values(keys, &self.schema, &self.key)?;
            self.hits.inc_by(wanted.len() as u64);
            let (rows, _) = self.table().rows(&wanted).map_err(|e| format!("rows of `{}`: {e}", self.name))?;
            Ok(rows)
        })
    }
}

/// The distinct keys of `keys` (columns named like the lookup's key
/// columns) as CQL values of the key's declared types, in row order; rows
/// with a NULL key part are left out (they match nothing).
pub fn key_values(keys: &RecordBatch, schema: &Schema, key: &[String]) -> Result<Vec<Vec<CqlValue>>, String> {
    let mut fields = Vec::with_capacity(key.len());
    let mut columns = Vec::with_capacity(key.len());
    for k in key {
        let field = schema.field_with_name(k).map_err(|_| format!("key column `{k}` is not in the lookup's schema"))?;
        let col = keys.column_by_name(k).ok_or_else(|| format!("the keys have no column `{k}`"))?;
        let col = if col.data_type() == field.data_type() {
            col.clone()
        } else {
            cast(col, field.data_type()).map_err(|e| {
                format!(
                    "key `{k}`: cannot use {} where the lookup declares {}: {e}",
                    col.data_type(),
                    field.data_type()
                )
            })?
        };
        // A cast that could not convert a value leaves NULL: refuse rather
        // than silently find nothing.
        if col.null_count() > keys.column_by_name(k).map_or(0, |c| c.null_count()) {
            return Err(format!("key `{k}`: some values are not {}", field.data_type()));
        }
        fields.push(field.clone());
        columns.push(col);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("the keys of a batch: {e}"))?;
    let rows = batch_to_rows(&batch).map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().collect::<Option<Vec<CqlValue>>>())
        .filter(|r| seen.insert(key_bytes(r).unwrap_or_else(|| format!("{r:?}").into_bytes())))
        .collect())
}

/// The lookups some stage of `spec` joins.
pub fn joined_lookups(spec: &PipelineSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for st in spec.stages.values() {
        for t in tables_read(&st.sql) {
            if spec.lookups.contains_key(&t) && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// A provider for each lookup the stages of `spec` join: a
/// [`CassandraLookupProvider`] for a partial cache, a [`FullLookup`] for a
/// full one, its table read before this returns and reloaded in the
/// background from then on.
pub async fn cassandra_lookups(
    spec: &PipelineSpec,
    session: &CassandraSession,
    metrics: &TaskMetrics,
) -> Result<LookupProviders, TaskError> {
    let mut out = LookupProviders::new();
    for name in joined_lookups(spec) {
        let lookup = &spec.lookups[&name];
        let Lookup::Cassandra(c) = lookup;
        let p: Arc<dyn LookupProvider> = match c.cache_plan() {
            CachePlan::Partial { .. } => Arc::new(CassandraLookupProvider::new(session, &name, lookup, metrics).await?),
            CachePlan::Full { reload } => {
                let full = FullLookup::load(session, &name, lookup, metrics).await?;
                full.spawn_reloads(cassandra_loader(session, lookup), reload);
                full
            }
        };
        out.insert(name, p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("bank", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("home", DataType::Utf8, true),
        ])
    }

    #[test]
    fn keys_are_cast_to_the_declared_types_deduplicated_and_nulls_skipped() {
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int32, true),
                Field::new("bank", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int32Array::from(vec![Some(1), Some(2), Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("b"), Some("b"), Some("b"), Some("b"), None])),
            ],
        )
        .unwrap();
        let key = vec!["bank".to_string(), "id".to_string()];
        let got = key_values(&keys, &schema(), &key).unwrap();
        let k = |b: &str, i: i64| vec![CqlValue::Text(b.into()), CqlValue::BigInt(i)];
        assert_eq!(got, vec![k("b", 1), k("b", 2)]);
    }

    #[test]
    fn keys_that_do_not_fit_the_declared_type_are_refused() {
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["7", "seven"]))],
        )
        .unwrap();
        let e = key_values(&keys, &schema(), &["id".to_string()]).unwrap_err();
        assert!(e.contains("key `id`"), "{e}");
        let e = key_values(&keys, &schema(), &["bank".to_string()]).unwrap_err();
        assert!(e.contains("no column `bank`"), "{e}");
    }

    /// A card table that changes, read by key through a partial cache whose
    /// clock the test moves.
    struct Cards {
        rows: std::sync::Mutex<std::collections::HashMap<String, String>>,
        cache: std::sync::Mutex<smack_connectors::cassandra::LookupCache>,
        now: std::sync::Mutex<Instant>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Cards {
        fn new(rows: &[(&str, &str)], size: usize, expiry: Expiry) -> Arc<Cards> {
            Arc::new(Cards {
                rows: std::sync::Mutex::new(rows.iter().map(|(c, h)| (c.to_string(), h.to_string())).collect()),
                cache: std::sync::Mutex::new(smack_connectors::cassandra::LookupCache::new(size, expiry)),
                now: std::sync::Mutex::new(Instant::now()),
                reads: Default::default(),
            })
        }
    }

    impl KeyedRows for Arc<Cards> {
        fn get_many<'a>(
            &'a self,
            keys: &'a [Vec<CqlValue>],
            concurrency: usize,
        ) -> Pin<Box<dyn Future<Output = Result<BatchAnswer, String>> + Send + 'a>> {
            let now = *self.now.lock().unwrap();
            Box::pin(async move {
                smack_connectors::cassandra::batched(&self.cache, keys, concurrency, now, |k| async move {
                    self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let CqlValue::Text(card) = &k[0] else { return Ok(None) };
                    let home = self.rows.lock().unwrap().get(card).cloned();
                    Ok(home.map(|h| vec![Some(k[0].clone()), Some(CqlValue::Text(h))]))
                })
                .await
                .map_err(|e| e.to_string())
            })
        }
    }

    /// The fraud stage over 18 purchases in two micro-batches, joining
    /// `card_homes` through `provider`: per flagged window, "card count
    /// abroad". Six purchases of c1 (two abroad), six of c2 (none abroad),
    /// six of c3 (none abroad).
    async fn fraud_rows(provider: Arc<dyn LookupProvider>) -> Vec<String> {
        use crate::runtime::StageRuntime;
        use smack_connectors::format::to_json_rows;
        let spec = fraud_spec();
        let providers: LookupProviders = [("card_homes".to_string(), provider)].into_iter().collect();
        let mut rt = StageRuntime::with_lookups(&spec, &providers).await.unwrap();
        rt.assign_partitions("transactions", &[0]).unwrap();
        let dec = rt.decoder("transactions").unwrap();
        let tx = |card: &str, country: &str, s: u32| {
            format!(
                r#"{{"card_id":"{card}","amount":1.0,"merchant":"m","country":"{country}","ts":"2024-01-01T00:00:{s:02}Z"}}"#
            )
        };
        let mut recs = Vec::new();
        for (i, s) in [1u32, 5, 9, 13, 17, 21].iter().enumerate() {
            recs.push(tx("c1", if i % 3 == 0 { "US" } else { "FR" }, *s));
            recs.push(tx("c2", "DE", *s));
            recs.push(tx("c3", "IT", *s));
        }
        let mut out = Vec::new();
        for (n, half) in recs.chunks(9).enumerate() {
            let d = dec.decode(half.iter().map(|r| r.as_bytes()));
            assert!(d.errors.is_empty(), "{:?}", d.errors);
            out.extend(rt.push("transactions", 0, 9 * (n as i64 + 1), d.batch).await.unwrap().sinks);
        }
        out.extend(rt.finish().await.unwrap().sinks);
        let mut got: Vec<String> = out
            .iter()
            .filter(|s| s.sink == "suspicious_cards")
            .flat_map(|s| to_json_rows(&s.batch).unwrap())
            .map(|r| format!("{} {} {}", r["card_id"], r["txn_count"], r["abroad"]))
            .collect();
        got.sort();
        got.dedup();
        got
    }

    const FRAUD_ROWS: [&str; 3] = ["\"c1\" 6 2", "\"c2\" 6 0", "\"c3\" 6 0"];

    #[tokio::test]
    async fn the_fraud_stage_reads_each_card_once_and_counts_hits_and_misses() {
        let spec = fraud_spec();
        let homes = Cards::new(&[("c1", "FR"), ("c2", "DE")], 100, Expiry::default());
        let metrics = TaskMetrics::new();
        let provider = CassandraLookupProvider::with_rows(
            "card_homes",
            &spec.lookups["card_homes"],
            Box::new(homes.clone()),
            &metrics,
        );
        assert_eq!(fraud_rows(Arc::new(provider)).await, FRAUD_ROWS);
        // Three distinct cards read once each (c3's absence cached too);
        // the second batch is answered from the cache.
        assert_eq!(homes.reads.load(std::sync::atomic::Ordering::SeqCst), 3);
        let text = metrics.encode();
        assert!(text.contains("smack_stage_lookup_cache_misses_total{lookup=\"card_homes\"} 3"), "{text}");
        assert!(text.contains("smack_stage_lookup_cache_hits_total{lookup=\"card_homes\"} 3"), "{text}");
    }

    fn fraud_spec() -> PipelineSpec {
        crate::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/fraud-detection/pipeline.yaml"
        )))
        .unwrap()
    }

    fn card_keys(cards: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("card_id", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(cards.to_vec()))],
        )
        .unwrap()
    }

    /// `card: home` of each row of a lookup answer.
    fn homes_of(b: &RecordBatch) -> Vec<String> {
        use datafusion::arrow::array::AsArray;
        let (c, h) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
        (0..b.num_rows()).map(|i| format!("{}: {}", c.value(i), h.value(i))).collect()
    }

    #[tokio::test]
    async fn a_partial_cache_sees_a_row_added_after_its_absence_once_missing_expire_passes() {
        let spec = fraud_spec();
        let mut lookup = spec.lookups["card_homes"].clone();
        let Lookup::Cassandra(c) = &mut lookup;
        c.cache = crate::spec::LookupCache::Options(crate::spec::LookupCacheOptions {
            mode: crate::spec::CacheMode::Partial,
            size: Some(100),
            expire_after_write: Some(crate::spec::Duration::from_secs(600)),
            missing_expire: Some(crate::spec::Duration::from_secs(30)),
            reload: None,
        });
        let (size, expiry) = partial_cache(c.cache_plan()).unwrap();
        assert_eq!(expiry, Expiry { found: Some(Duration::from_secs(600)), missing: Some(Duration::from_secs(30)) });
        let cards = Cards::new(&[("c1", "FR")], size, expiry);
        let t0 = *cards.now.lock().unwrap();
        let metrics = TaskMetrics::new();
        let p = CassandraLookupProvider::with_rows("card_homes", &lookup, Box::new(cards.clone()), &metrics);
        let at = |secs: u64| *cards.now.lock().unwrap() = t0 + Duration::from_secs(secs);
        let keys = card_keys(&["c1", "c9"]);
        assert_eq!(homes_of(&p.fetch(&keys).await.unwrap()), ["c1: FR"]);
        // c9 gets a home, and c1 moves, after both were read.
        cards.rows.lock().unwrap().insert("c9".into(), "DE".into());
        cards.rows.lock().unwrap().insert("c1".into(), "ES".into());
        at(29);
        assert_eq!(homes_of(&p.fetch(&keys).await.unwrap()), ["c1: FR"], "both answered from the cache");
        at(30);
        assert_eq!(homes_of(&p.fetch(&keys).await.unwrap()), ["c1: FR", "c9: DE"], "c9's absence expired");
        at(600);
        assert_eq!(homes_of(&p.fetch(&keys).await.unwrap()), ["c1: ES", "c9: DE"], "c1's row expired");
        assert_eq!(cards.reads.load(std::sync::atomic::Ordering::SeqCst), 4);
        let text = metrics.encode();
        assert!(text.contains("smack_stage_lookup_cache_misses_total{lookup=\"card_homes\"} 4"), "{text}");
        assert!(text.contains("smack_stage_lookup_cache_hits_total{lookup=\"card_homes\"} 4"), "{text}");
    }

    /// A card table in memory read whole by a [`TableLoader`], which the
    /// test can make fail; counts the loads.
    struct Source {
        rows: std::sync::Mutex<Vec<(String, String)>>,
        down: std::sync::atomic::AtomicBool,
        loads: std::sync::atomic::AtomicUsize,
    }

    fn loader(src: &Arc<Source>, lookup: &Lookup) -> TableLoader {
        let (src, schema, key) = (src.clone(), lookup_schema(lookup), lookup.key().to_vec());
        Arc::new(move || {
            let (src, schema, key) = (src.clone(), schema.clone(), key.clone());
            Box::pin(async move {
                use std::sync::atomic::Ordering::SeqCst;
                src.loads.fetch_add(1, SeqCst);
                if src.down.load(SeqCst) {
                    return Err(smack_connectors::cassandra::Error::Schema {
                        what: "load".into(),
                        reason: "the table is down".into(),
                    });
                }
                let mut b = LookupTable::builder(schema, &key)?;
                for (card, home) in src.rows.lock().unwrap().iter() {
                    b.push(vec![Some(CqlValue::Text(card.clone())), Some(CqlValue::Text(home.clone()))])?;
                }
                b.finish()
            })
        })
    }

    /// Waits for the lookup's next state change (a load or a failure).
    async fn next(rx: &mut watch::Receiver<LoadState>) -> LoadState {
        rx.changed().await.expect("the lookup is alive");
        *rx.borrow_and_update()
    }

    #[tokio::test]
    async fn a_full_cache_answers_from_memory_and_reloads_swap_the_table_whole() {
        use std::sync::atomic::Ordering::SeqCst;
        let spec = fraud_spec();
        let lookup = &spec.lookups["card_homes"];
        let src = Arc::new(Source {
            rows: std::sync::Mutex::new(vec![("c1".into(), "FR".into()), ("c2".into(), "DE".into())]),
            down: Default::default(),
            loads: Default::default(),
        });
        let metrics = TaskMetrics::new();
        let full = FullLookup::load_with("card_homes", lookup, loader(&src, lookup), &metrics).await.unwrap();
        assert_eq!(full.state(), LoadState { loads: 1, failures: 0, rows: 2 });
        let keys = card_keys(&["c2", "c3", "c1", "c2"]);
        assert_eq!(homes_of(&full.fetch(&keys).await.unwrap()), ["c2: DE", "c1: FR"]);
        assert_eq!(src.loads.load(SeqCst), 1, "answers come from memory; absent c3 reads nothing");

        // Reloads on the test's ticks.
        let (tick_tx, tick_rx) = tokio::sync::mpsc::channel::<()>(1);
        let tick_rx = Arc::new(tokio::sync::Mutex::new(tick_rx));
        let ticks: Ticks = Box::new(move || {
            let rx = tick_rx.clone();
            Box::pin(async move { rx.lock().await.recv().await.is_some() })
        });
        let mut states = full.subscribe();
        full.spawn_reloads_on(loader(&src, lookup), ticks);

        src.rows.lock().unwrap().push(("c3".into(), "IT".into()));
        tick_tx.send(()).await.unwrap();
        assert_eq!(next(&mut states).await, LoadState { loads: 2, failures: 0, rows: 3 });
        assert_eq!(homes_of(&full.fetch(&keys).await.unwrap()), ["c2: DE", "c3: IT", "c1: FR"]);

        // A failed reload keeps the table and is counted.
        src.down.store(true, SeqCst);
        tick_tx.send(()).await.unwrap();
        assert_eq!(next(&mut states).await, LoadState { loads: 2, failures: 1, rows: 3 });
        assert_eq!(homes_of(&full.fetch(&keys).await.unwrap()), ["c2: DE", "c3: IT", "c1: FR"]);
        // The next one works again: c2 is gone from the table.
        src.down.store(false, SeqCst);
        src.rows.lock().unwrap().retain(|(c, _)| c != "c2");
        tick_tx.send(()).await.unwrap();
        assert_eq!(next(&mut states).await, LoadState { loads: 3, failures: 1, rows: 2 });
        assert_eq!(homes_of(&full.fetch(&keys).await.unwrap()), ["c3: IT", "c1: FR"]);

        let text = metrics.encode();
        assert!(text.contains("smack_stage_lookup_table_rows{lookup=\"card_homes\"} 2"), "{text}");
        assert!(text.contains("smack_stage_lookup_reload_failures_total{lookup=\"card_homes\"} 1"), "{text}");
        assert!(text.contains("smack_stage_lookup_load_duration_seconds{lookup=\"card_homes\"}"), "{text}");
        assert!(text.contains("smack_stage_lookup_cache_hits_total{lookup=\"card_homes\"} 12"), "{text}");

        // Dropping the lookup ends its reload task (which held the ticks).
        drop(full);
        tick_tx.closed().await;
    }

    #[tokio::test]
    async fn the_fraud_stage_gives_the_same_rows_with_a_full_cache() {
        let spec = fraud_spec();
        let lookup = &spec.lookups["card_homes"];
        let mut b = LookupTable::builder(lookup_schema(lookup), lookup.key()).unwrap();
        for (c, h) in [("c1", "FR"), ("c2", "DE")] {
            b.push(vec![Some(CqlValue::Text(c.into())), Some(CqlValue::Text(h.into()))]).unwrap();
        }
        let metrics = TaskMetrics::new();
        let full = FullLookup::from_table("card_homes", lookup, b.finish().unwrap(), &metrics);
        assert_eq!(full.state(), LoadState { loads: 0, failures: 0, rows: 2 });
        assert_eq!(fraud_rows(full).await, FRAUD_ROWS);
        let text = metrics.encode();
        assert!(text.contains("smack_stage_lookup_table_rows{lookup=\"card_homes\"} 2"), "{text}");
    }

    #[test]
    fn joined_lookups_are_the_ones_stage_sql_reads() {
        let spec = fraud_spec();
        assert_eq!(joined_lookups(&spec), spec.lookups.keys().cloned().collect::<Vec<_>>());
    }
}
