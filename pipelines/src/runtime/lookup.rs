//! The spec's lookups as the runtime sees them: the Arrow schema of a
//! lookup's rows, providers with no rows (for what only needs schemas, such
//! as `prepare` and benchmarks: every key is missing), and providers whose
//! rows are given inline as records (`tests:` in a pipeline file).
//!
//! Where rows really come from at run time is the stage task's business
//! (`crate::task`: a Cassandra table read by key through a bounded cache).

use super::stage::{InlineLookup, LookupProvider};
use super::RuntimeError;
use crate::spec::{Lookup, PipelineSpec, Record};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use smack_connectors::format::{Decoder, RecordFormat};
use std::collections::HashMap;
use std::sync::Arc;

/// Where each lookup of a pipeline gets its rows, by lookup name.
pub type LookupProviders = HashMap<String, Arc<dyn LookupProvider>>;

/// The Arrow schema of a lookup's rows: its declared columns, in order,
/// all nullable.
pub fn lookup_schema(l: &Lookup) -> SchemaRef {
    Arc::new(Schema::new(
        l.schema().iter().map(|(c, ty)| Field::new(c, super::schema::arrow_type(*ty), true)).collect::<Vec<_>>(),
    ))
}

/// A provider for every lookup of `spec` that has no rows: a stage's LEFT
/// JOIN gives NULLs, its JOIN drops every row.
pub fn empty_lookups(spec: &PipelineSpec) -> LookupProviders {
    spec.lookups
        .iter()
        .map(|(name, l)| {
            let rows = RecordBatch::new_empty(lookup_schema(l));
            let p: Arc<dyn LookupProvider> = Arc::new(InlineLookup { rows, key: l.key().to_vec() });
            (name.clone(), p)
        })
        .collect()
}

/// Providers for the lookups of `spec` with rows given as records (JSON
/// objects of the lookup's columns); lookups without records get none.
/// A record that does not fit the lookup's schema is an error naming the
/// lookup and the record's index.
pub fn inline_lookups(
    spec: &PipelineSpec,
    records: &indexmap::IndexMap<String, Vec<Record>>,
) -> Result<LookupProviders, RuntimeError> {
    let mut out = empty_lookups(spec);
    for (name, recs) in records {
        let l = spec.lookups.get(name).ok_or_else(|| RuntimeError::Format {
            name: name.clone(),
            message: format!(
                "rows are given for `{name}`, which is not a lookup of the pipeline; expected one of: {}",
                spec.lookups.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let schema = lookup_schema(l);
        let decoder = Decoder::new(RecordFormat::Json, schema.clone())
            .map_err(|e| RuntimeError::Format { name: name.clone(), message: e.to_string() })?;
        let bytes: Vec<Vec<u8>> = recs.iter().map(|r| serde_json::to_vec(r).unwrap_or_default()).collect();
        let decoded = decoder.decode(bytes.iter().map(Vec::as_slice));
        if let Some(e) = decoded.errors.first() {
            return Err(RuntimeError::Format {
                name: name.clone(),
                message: format!("lookup row {} does not fit the lookup's schema: {}", e.index, e.reason),
            });
        }
        let p: Arc<dyn LookupProvider> = Arc::new(InlineLookup { rows: decoded.batch, key: l.key().to_vec() });
        out.insert(name.clone(), p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, StringArray};

    fn spec() -> PipelineSpec {
        let text = "\
name: p
services:
  kafka: {brokers: 1}
  cassandra: {nodes: 1}
sources:
  tx:
    type: kafka
    topic: tx
    partitions: 1
    replication: 1
    schema: {card_id: string, country: string, ts: timestamp}
    event-time: ts
lookups:
  homes:
    type: cassandra
    keyspace: ks
    table: homes
    key: [card_id]
    schema: {card_id: string, home_country: string, since: long}
stages:
  s:
    sql: SELECT t.card_id, h.home_country FROM tx t LEFT JOIN homes h ON t.card_id = h.card_id
sinks:
  out: {type: kafka, from: s, topic: out}
";
        PipelineSpec::from_yaml(text, "p.yaml").unwrap()
    }

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn inline_rows_answer_the_keys_asked_and_bad_rows_say_where() {
        let s = spec();
        assert_eq!(lookup_schema(&s.lookups["homes"]).fields().len(), 3);
        let rows = [(
            "homes".to_string(),
            vec![
                rec(serde_json::json!({"card_id": "c1", "home_country": "FR"})),
                rec(serde_json::json!({"card_id": "c2", "home_country": "DE", "since": 2019})),
            ],
        )]
        .into_iter()
        .collect();
        let p = inline_lookups(&s, &rows).unwrap();
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("card_id", datafusion::arrow::datatypes::DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["c2", "c9"]))],
        )
        .unwrap();
        let got = p["homes"].fetch(&keys).await.unwrap();
        assert_eq!(got.num_rows(), 1);
        assert_eq!(got.column(1).as_string::<i32>().value(0), "DE");
        let none = empty_lookups(&s)["homes"].fetch(&keys).await.unwrap();
        assert_eq!(none.num_rows(), 0);

        let bad = [("homes".to_string(), vec![rec(serde_json::json!({"card_id": "c1", "since": "old"}))])]
            .into_iter()
            .collect();
        let e = inline_lookups(&s, &bad).err().unwrap().to_string();
        assert!(e.contains("homes") && e.contains("row 0"), "{e}");
        let unknown = [("cards".to_string(), vec![])].into_iter().collect();
        let e = inline_lookups(&s, &unknown).err().unwrap().to_string();
        assert!(e.contains("`cards`") && e.contains("homes"), "{e}");
    }
}

#[cfg(test)]
mod same_rows {
    use super::*;
    use crate::runtime::StageRuntime;
    use smack_connectors::format::to_json_rows;

    /// The rows of sink `suspicious_cards` for `events` pushed in batches of `batch`.
    async fn rows(spec: &PipelineSpec, events: &[Vec<u8>], batch: usize) -> Vec<String> {
        let mut rt = StageRuntime::with_lookups(spec, &empty_lookups(spec)).await.unwrap();
        rt.assign_partitions("transactions", &[0]).unwrap();
        let dec = rt.decoder("transactions").unwrap();
        let mut out = Vec::new();
        let mut offset = 0;
        for chunk in events.chunks(batch) {
            offset += chunk.len() as i64;
            let d = dec.decode(chunk.iter().map(Vec::as_slice));
            let o = rt.push("transactions", 0, offset, d.batch).await.unwrap();
            out.extend(o.sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch));
        }
        out.extend(
            rt.finish().await.unwrap().sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch),
        );
        let mut rows: Vec<String> = out
            .iter()
            .flat_map(|b| to_json_rows(b).unwrap())
            .map(|mut r| {
                r.remove("abroad");
                serde_json::Value::Object(r).to_string()
            })
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn joining_an_empty_lookup_changes_no_row() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fraud-detection/pipeline.yaml");
        let with = crate::load(&path).unwrap();
        let mut without = with.clone();
        without.lookups.clear();
        let st = without.stages.get_index_mut(0).unwrap().1;
        st.sql = st
            .sql
            .replace("t.card_id", "card_id")
            .replace(",\n       COUNT(CASE WHEN country <> home_country THEN 1 END) AS abroad", "")
            .replace("FROM transactions t\nLEFT JOIN card_homes h ON card_id = h.card_id", "FROM transactions");
        assert!(!st.sql.contains("JOIN"), "{}", st.sql);
        let o = crate::generate::Options { seed: 42, rate: 1000.0, count: Some(20_000), ..Default::default() };
        let events: Vec<Vec<u8>> = crate::generate::Generator::new(crate::generate::GeneratorKind::Fraud, &o)
            .unwrap()
            .filter(|e| !e.malformed)
            .map(|e| e.payload)
            .collect();
        let a = rows(&without, &events, 2000).await;
        let b = rows(&with, &events, 2000).await;
        assert_eq!(a.len(), b.len());
        assert_eq!(a, b);
    }
}
