//! The lookups a stage task joins, read from their Cassandra tables.
//!
//! One [`CassandraLookupProvider`] per lookup the task's stages join. Per
//! micro-batch the runtime hands it the batch's distinct keys (the input
//! expressions the ON clause compares with the lookup's key, see
//! [`crate::runtime::plan::lookup_keys_sql`]); it casts them to the key's
//! declared types, answers what the bounded LRU cache holds, reads the
//! misses by primary key with at most [`LOOKUP_CONCURRENCY`] queries in
//! flight ([`CassandraLookup::get_many`]) and returns the rows found, in the
//! lookup's declared schema. A key with no row is left out and the stage's
//! SQL decides what that means: NULLs for a LEFT JOIN, the input row
//! dropped for a JOIN. A key with a NULL part matches nothing (SQL equality)
//! and is not read.
//!
//! Absent rows are cached like present ones: a lookup table is reference
//! data, written before the records that need it (the fraud example's is
//! filled by `prepare`'s [`super::fill_generated_lookups`] before any
//! transaction is produced). Cache hits and misses are counted on the
//! task's metrics (`smack_stage_lookup_cache_{hits,misses}_total`).

use super::metrics::{label, TaskMetrics};
use super::TaskError;
use crate::runtime::lookup::{lookup_schema, LookupProviders};
use crate::runtime::plan::tables_read;
use crate::runtime::LookupProvider;
use crate::spec::{Lookup, PipelineSpec};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use prometheus_client::metrics::counter::Counter;
use smack_connectors::cassandra::{
    batch_to_rows, rows_to_batch, BatchAnswer, CassandraLookup, CassandraSession, CqlValue,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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

impl CassandraLookupProvider {
    /// Prepares the read of lookup `name` (every declared column, by key)
    /// with a cache of the lookup's `cache` keys; hits and misses go to
    /// `metrics` under the label `lookup=<name>`.
    pub async fn new(
        session: &CassandraSession,
        name: &str,
        lookup: &Lookup,
        metrics: &TaskMetrics,
    ) -> Result<CassandraLookupProvider, TaskError> {
        let Lookup::Cassandra(c) = lookup;
        let columns: Vec<&String> = c.schema.keys().collect();
        let read = CassandraLookup::new(session, &c.keyspace, &c.table, &c.key, &columns, c.cache as usize)
            .await
            .map_err(TaskError::cassandra(format!("prepare lookup `{name}`")))?;
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
    fn fetch<'a>(
        &'a self,
        keys: &'a RecordBatch,
    ) -> Pin<Box<dyn Future<Output = Result<RecordBatch, String>> + Send + 'a>> {
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
        .filter(|r| seen.insert(format!("{r:?}")))
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

/// A [`CassandraLookupProvider`] for each lookup the stages of `spec` join.
pub async fn cassandra_lookups(
    spec: &PipelineSpec,
    session: &CassandraSession,
    metrics: &TaskMetrics,
) -> Result<LookupProviders, TaskError> {
    let mut out = LookupProviders::new();
    for name in joined_lookups(spec) {
        let p = CassandraLookupProvider::new(session, &name, &spec.lookups[&name], metrics).await?;
        out.insert(name, Arc::new(p) as Arc<dyn LookupProvider>);
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

    /// Card homes in memory behind the same batching and cache as the
    /// table's; counts the reads.
    struct Homes {
        rows: std::collections::HashMap<String, &'static str>,
        cache: std::sync::Mutex<smack_connectors::cassandra::LruCache<Vec<u8>, smack_connectors::cassandra::CachedRow>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl KeyedRows for Homes {
        fn get_many<'a>(
            &'a self,
            keys: &'a [Vec<CqlValue>],
            concurrency: usize,
        ) -> Pin<Box<dyn Future<Output = Result<BatchAnswer, String>> + Send + 'a>> {
            Box::pin(async move {
                smack_connectors::cassandra::batched(&self.cache, keys, concurrency, |k| async move {
                    self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let CqlValue::Text(card) = &k[0] else { return Ok(None) };
                    Ok(self.rows.get(card).map(|h| vec![Some(k[0].clone()), Some(CqlValue::Text(h.to_string()))]))
                })
                .await
                .map_err(|e| e.to_string())
            })
        }
    }

    #[tokio::test]
    async fn the_fraud_stage_reads_each_card_once_and_counts_hits_and_misses() {
        use crate::runtime::StageRuntime;
        use smack_connectors::format::to_json_rows;
        let spec = crate::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/fraud-detection/pipeline.yaml"
        )))
        .unwrap();
        let homes = Arc::new(Homes {
            rows: [("c1".to_string(), "FR"), ("c2".to_string(), "DE")].into_iter().collect(),
            cache: std::sync::Mutex::new(smack_connectors::cassandra::LruCache::new(100)),
            reads: Default::default(),
        });
        struct Shared(Arc<Homes>);
        impl KeyedRows for Shared {
            fn get_many<'a>(
                &'a self,
                keys: &'a [Vec<CqlValue>],
                concurrency: usize,
            ) -> Pin<Box<dyn Future<Output = Result<BatchAnswer, String>> + Send + 'a>> {
                self.0.get_many(keys, concurrency)
            }
        }
        let metrics = TaskMetrics::new();
        let provider = CassandraLookupProvider::with_rows(
            "card_homes",
            &spec.lookups["card_homes"],
            Box::new(Shared(homes.clone())),
            &metrics,
        );
        let providers: LookupProviders =
            [("card_homes".to_string(), Arc::new(provider) as Arc<dyn LookupProvider>)].into_iter().collect();
        let mut rt = StageRuntime::with_lookups(&spec, &providers).await.unwrap();
        rt.assign_partitions("transactions", &[0]).unwrap();
        let dec = rt.decoder("transactions").unwrap();
        // Six purchases of c1 (two abroad), six of c2 (none abroad), six of
        // c3 (no home row: none abroad), over two micro-batches.
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
        assert_eq!(got, vec!["\"c1\" 6 2", "\"c2\" 6 0", "\"c3\" 6 0"]);
        // Three distinct cards read once each (c3's absence cached too);
        // the second batch is answered from the cache.
        assert_eq!(homes.reads.load(std::sync::atomic::Ordering::SeqCst), 3);
        let text = metrics.encode();
        assert!(text.contains("smack_stage_lookup_cache_misses_total{lookup=\"card_homes\"} 3"), "{text}");
        assert!(text.contains("smack_stage_lookup_cache_hits_total{lookup=\"card_homes\"} 3"), "{text}");
    }

    #[test]
    fn joined_lookups_are_the_ones_stage_sql_reads() {
        let spec = crate::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/fraud-detection/pipeline.yaml"
        )))
        .unwrap();
        assert_eq!(joined_lookups(&spec), spec.lookups.keys().cloned().collect::<Vec<_>>());
    }
}
