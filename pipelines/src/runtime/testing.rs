//! `smack pipeline test`: runs a pipeline file's `tests:` through the
//! runtime, with no cluster.
//!
//! Per test, a fresh [`StageRuntime`] whose lookups hold the rows the test
//! lists under `lookups:` (and nothing else); each source's records (in file order,
//! source after source) are decoded as JSON into the source's schema and
//! pushed **one record per micro-batch** on partition 0, so the watermark
//! moves record by record as it would on a live topic; then
//! [`StageRuntime::finish`] flushes every window. Each sink named in
//! `expect` must receive exactly the expected rows, in any order. A row
//! matches when every column the expected row names is equal: numbers within
//! a relative 1e-9, timestamps as instants (`2024-01-01T00:00:00Z` equals
//! `2024-01-01T00:00:00.000+00:00`); columns it does not name are not
//! compared. Sinks not named in `expect` are not checked. Late records are
//! reported (they are what the dead-letter topic would get), not failures.

use super::{LateRows, RuntimeError, StageRuntime};
use crate::spec::{PipelineSpec, PipelineTest, Record};
use datafusion::arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use serde_json::Value;
use smack_connectors::format::{parse_timestamp, to_json_rows, Decoder, RecordFormat};

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestReport {
    /// The test's name.
    pub name: String,
    /// Why it failed, one line each; empty when it passed.
    pub failures: Vec<String>,
    /// Records the stages found late (`reason: record`), for information.
    pub late: Vec<String>,
}

impl TestReport {
    /// Whether the test passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every test of `spec`.
pub async fn run_tests(spec: &PipelineSpec) -> Result<Vec<TestReport>, RuntimeError> {
    let mut out = Vec::new();
    for t in &spec.tests {
        out.push(run_test(spec, t).await?);
    }
    Ok(out)
}

/// Runs one test.
pub async fn run_test(spec: &PipelineSpec, test: &PipelineTest) -> Result<TestReport, RuntimeError> {
    let lookups = super::lookup::inline_lookups(spec, &test.lookups)?;
    let mut rt = StageRuntime::with_lookups(spec, &lookups).await?;
    let mut report = TestReport { name: test.name.clone(), failures: Vec::new(), late: Vec::new() };
    let mut got: IndexMap<String, Vec<RecordBatch>> = IndexMap::new();
    let mut late: Vec<LateRows> = Vec::new();
    for source in test.inputs.keys() {
        rt.assign_partitions(source, &[0])?;
    }
    for (source, records) in &test.inputs {
        let schema = rt.source_schema(source).ok_or_else(|| RuntimeError::UnknownSource(source.clone()))?;
        let decoder = Decoder::new(RecordFormat::Json, schema)
            .map_err(|e| RuntimeError::Format { name: source.clone(), message: e.to_string() })?;
        for (i, record) in records.iter().enumerate() {
            let bytes = serde_json::to_vec(record).unwrap_or_default();
            let decoded = decoder.decode([bytes.as_slice()]);
            if let Some(e) = decoded.errors.first() {
                report.failures.push(format!("inputs.{source}[{i}] does not decode: {}", e.reason));
                continue;
            }
            let out = rt.push(source, 0, i as i64 + 1, decoded.batch).await?;
            for s in out.sinks {
                got.entry(s.sink).or_default().push(s.batch);
            }
            late.extend(out.late);
        }
    }
    let out = rt.finish().await?;
    for s in out.sinks {
        got.entry(s.sink).or_default().push(s.batch);
    }
    late.extend(out.late);
    for l in &late {
        let rows = to_json_rows(&l.rows).map_err(RuntimeError::from)?;
        for (row, reason) in rows.iter().zip(&l.reasons) {
            report.late.push(format!("{reason}: {}", Value::Object(row.clone())));
        }
    }
    for (sink, expected) in &test.expect {
        let mut actual: Vec<Record> = Vec::new();
        for b in got.get(sink).into_iter().flatten() {
            actual.extend(to_json_rows(b).map_err(RuntimeError::from)?);
        }
        report.failures.extend(compare(sink, expected, actual));
    }
    Ok(report)
}

/// Matches expected rows to actual ones; one line per missing or
/// unexpected row.
pub fn compare(sink: &str, expected: &[Record], actual: Vec<Record>) -> Vec<String> {
    let mut unused: Vec<Option<Record>> = actual.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for e in expected {
        let hit = unused.iter_mut().find(|a| a.as_ref().is_some_and(|a| row_matches(e, a)));
        match hit {
            Some(slot) => *slot = None,
            None => out.push(format!("sink {sink}: missing    {}", Value::Object(e.clone()))),
        }
    }
    for a in unused.into_iter().flatten() {
        out.push(format!("sink {sink}: unexpected {}", Value::Object(a)));
    }
    out
}

fn row_matches(expected: &Record, actual: &Record) -> bool {
    expected.iter().all(|(k, e)| actual.get(k).is_some_and(|a| value_matches(e, a)))
}

fn value_matches(e: &Value, a: &Value) -> bool {
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((parse_timestamp(x), parse_timestamp(y)), (Some(p), Some(q)) if p == q)
        }
        _ => e == a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn rows_compare_as_sets_with_float_tolerance_and_instants() {
        let expected =
            vec![rec(json!({"k": "a", "n": 0.3, "ts": "2024-01-01T00:00:00Z"})), rec(json!({"k": "b", "n": 2}))];
        let actual = vec![
            rec(json!({"k": "b", "n": 2, "extra": true})),
            rec(json!({"k": "a", "n": 0.1 + 0.2, "ts": "2024-01-01T01:00:00+01:00"})),
        ];
        assert_eq!(compare("s", &expected, actual), Vec::<String>::new());
        let diff = compare("s", &expected, vec![rec(json!({"k": "a", "n": 0.31, "ts": "2024-01-01T00:00:00Z"}))]);
        assert_eq!(diff.len(), 3);
        assert!(diff[0].starts_with("sink s: missing    {\"k\":\"a\""), "{diff:?}");
        assert!(diff[2].starts_with("sink s: unexpected {\"k\":\"a\",\"n\":0.31"), "{diff:?}");
    }
}
