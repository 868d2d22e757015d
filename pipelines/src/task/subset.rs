//! The part of a pipeline one stage task runs: the named stage, the earlier
//! stages it reads (fused into the same task: there is no intermediate topic
//! between them), the sources under those, and the sinks reading the named
//! stage.

use super::TaskError;
use crate::runtime::plan::plan_stage_with_lookups;
use crate::spec::PipelineSpec;
use indexmap::IndexSet;

/// The pipeline a task of `stage` runs: `spec` reduced to `stage`, the
/// stages and sources it reads (directly or through earlier stages), and the
/// sinks whose `from` is `stage`. Config tests are dropped.
pub fn stage_pipeline(spec: &PipelineSpec, stage: &str) -> Result<PipelineSpec, TaskError> {
    if !spec.stages.contains_key(stage) {
        let have: Vec<&str> = spec.stages.keys().map(String::as_str).collect();
        return Err(TaskError::Spec(format!(
            "pipeline `{}` has no stage `{stage}`; expected one of: {}",
            spec.name,
            if have.is_empty() { "(no stages)".to_string() } else { have.join(", ") }
        )));
    }
    let mut stages: IndexSet<String> = IndexSet::new();
    let mut sources: IndexSet<String> = IndexSet::new();
    let lookups: Vec<String> = spec.lookups.keys().cloned().collect();
    let mut todo = vec![stage.to_string()];
    while let Some(name) = todo.pop() {
        if !stages.insert(name.clone()) {
            continue;
        }
        let sql = &spec.stages[&name].sql;
        // Lookups are not inputs: every task keeps them all (they are small).
        let plan = plan_stage_with_lookups(&name, sql, &lookups).map_err(TaskError::Spec)?;
        for input in plan.inputs() {
            if spec.sources.contains_key(&input) {
                sources.insert(input);
            } else if spec.stages.contains_key(&input) {
                todo.push(input);
            } else {
                return Err(TaskError::Spec(format!(
                    "stage `{name}` reads `{input}`, which is neither a source nor a stage of pipeline `{}`",
                    spec.name
                )));
            }
        }
    }
    let mut out = spec.clone();
    out.tests.clear();
    out.sources.retain(|n, _| sources.contains(n));
    out.stages.retain(|n, _| stages.contains(n));
    out.sinks.retain(|_, s| s.from() == stage);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: p
services:
  kafka: {}
sources:
  a:
    type: kafka
    topic: a
    schema: { k: string, v: long, ts: timestamp }
    event-time: ts
  b:
    type: kafka
    topic: b
    schema: { k: string, ts: timestamp }
    event-time: ts
stages:
  f:
    sql: SELECT k, v, ts FROM a WHERE v > 0
  g:
    sql: SELECT k, COUNT(*) AS n, window_start FROM f GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)
    key: k
  h:
    sql: SELECT k, ts FROM b
sinks:
  out:
    type: kafka
    from: g
    topic: out
  other:
    type: kafka
    from: h
    topic: other
"#;

    fn spec() -> PipelineSpec {
        PipelineSpec::from_yaml(YAML, "p.yaml").expect("valid")
    }

    #[test]
    fn a_stage_takes_its_upstream_stages_and_sources_and_its_sinks() {
        let sub = stage_pipeline(&spec(), "g").unwrap();
        assert_eq!(sub.stages.keys().collect::<Vec<_>>(), ["f", "g"], "file order kept");
        assert_eq!(sub.sources.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(sub.sinks.keys().collect::<Vec<_>>(), ["out"]);
        assert!(sub.tests.is_empty());
    }

    #[test]
    fn an_independent_stage_takes_only_its_own() {
        let sub = stage_pipeline(&spec(), "h").unwrap();
        assert_eq!(sub.stages.keys().collect::<Vec<_>>(), ["h"]);
        assert_eq!(sub.sources.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(sub.sinks.keys().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn a_lookup_a_stage_joins_is_not_an_input() {
        let with_lookup = YAML
            .replace(
                "stages:\n",
                "lookups:\n  cards: { type: cassandra, keyspace: k, table: c, key: [k], schema: { k: string, home: string } }\nstages:\n",
            )
            .replace("  kafka: {}\n", "  kafka: {}\n  cassandra: {}\n");
        let mut spec = PipelineSpec::from_yaml(&with_lookup, "p.yaml").expect("valid");
        spec.stages["h"].sql = "SELECT b.k, c.home, b.ts FROM b LEFT JOIN cards c ON b.k = c.k".into();
        let sub = stage_pipeline(&spec, "h").unwrap();
        assert_eq!(sub.sources.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(sub.lookups.keys().collect::<Vec<_>>(), ["cards"]);
    }

    #[test]
    fn an_unknown_stage_names_the_ones_there_are() {
        let e = stage_pipeline(&spec(), "nope").unwrap_err().to_string();
        assert!(e.contains("no stage `nope`") && e.contains("f, g, h"), "{e}");
    }
}
