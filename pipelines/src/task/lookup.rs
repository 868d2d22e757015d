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
use smack_connectors::cassandra::{batch_to_rows, rows_to_batch, CassandraLookup, CassandraSession, CqlValue};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Lookup queries in flight at once, per lookup.
pub const LOOKUP_CONCURRENCY: usize = 64;

/// A lookup read from its Cassandra table through a bounded cache.
pub struct CassandraLookupProvider {
    name: String,
    lookup: CassandraLookup,
    schema: SchemaRef,
    key: Vec<String>,
    concurrency: usize,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for CassandraLookupProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraLookupProvider").field("name", &self.name).field("lookup", &self.lookup).finish()
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
        Ok(CassandraLookupProvider {
            name: name.to_string(),
            lookup: read,
            schema: lookup_schema(lookup),
            key: c.key.clone(),
            concurrency: LOOKUP_CONCURRENCY,
            hits: metrics.lookup_cache_hits.get_or_create(&label("lookup", name)).clone(),
            misses: metrics.lookup_cache_misses.get_or_create(&label("lookup", name)).clone(),
        })
    }

    /// The cache's hits, misses and entries so far.
    pub fn stats(&self) -> smack_connectors::cassandra::LookupStats {
        self.lookup.stats()
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
            let answer = self.lookup.get_many(&wanted, self.concurrency).await.map_err(|e| e.to_string())?;
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
