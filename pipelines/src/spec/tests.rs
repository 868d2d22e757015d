//! Unit tests: every kind of error at its exact line and column, both
//! examples valid, and the JSON Schema.

use super::*;

/// A valid pipeline; tests replace parts of it. Line numbers matter.
const BASE: &str = "\
name: t
services:
  kafka: { brokers: 1 }
  cassandra: { nodes: 1 }
sources:
  tx:
    type: kafka
    topic: tx
    partitions: 2
    replication: 1
    schema: { card_id: string, amount: double, ts: timestamp }
    event-time: ts
stages:
  agg:
    sql: |
      SELECT card_id, window_start, COUNT(*) AS n, SUM(amount) AS total
      FROM tx
      GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE)
    key: card_id
sinks:
  out:
    type: cassandra
    from: agg
    keyspace: k
    table: t
    primary-key: [card_id, window_start]
";

fn errors(text: &str) -> Vec<String> {
    match PipelineSpec::from_yaml(text, "p.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

/// Exactly one error, starting with `prefix` (`p.yaml:L:C: field: message`).
#[track_caller]
fn one_error(text: &str, prefix: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert!(errs[0].starts_with(prefix), "expected {prefix:?}, got {:?}", errs[0]);
}

#[test]
fn base_is_valid() {
    let p = PipelineSpec::from_yaml(BASE, "p.yaml").unwrap();
    assert_eq!(p.name, "t");
    let Source::Kafka(k) = &p.sources["tx"];
    assert_eq!((k.partitions, k.replication, k.format), (2, 1, Format::Json));
    assert_eq!(k.on_decode_error, OnDecodeError::DeadLetter);
    assert_eq!(p.stages["agg"].key.as_deref(), Some("card_id"));
    assert_eq!(p.sinks["out"].from(), "agg");
    assert_eq!(p.checkpoint_interval, Duration::from_secs(10));
}

#[test]
fn examples_are_valid() {
    for (file, counts) in [("fraud-detection", (1, 1, 2)), ("ad-tech", (2, 3, 1))] {
        let path = format!("{}/../examples/{file}/pipeline.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let p = PipelineSpec::from_yaml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.sources.len(), p.stages.len(), p.sinks.len()), counts, "{file}");
        assert!(!p.tests.is_empty(), "{file} has tests");
    }
}

#[test]
fn unknown_top_level_field() {
    one_error(&format!("{BASE}colour: red\n"), "p.yaml:27:1: unknown field `colour`, expected one of `name`");
}

#[test]
fn unknown_field_in_a_source() {
    one_error(
        &edit("    event-time: ts\n", "    event-time: ts\n    colour: red\n"),
        "p.yaml:13:5: sources.tx: unknown field `colour`, expected one of `topic`",
    );
}

#[test]
fn unknown_field_in_a_stage_and_a_sink_both_reported() {
    let text =
        edit("    key: card_id\n", "    key: card_id\n    paralelism: 2\n").replace("    table: t\n", "    tabel: t\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with("p.yaml:20:5: stages.agg: unknown field `paralelism`"), "{}", errs[0]);
    assert!(errs[1].starts_with("p.yaml:26:5: sinks.out: unknown field `tabel`"), "{}", errs[1]);
}

#[test]
fn wrong_type() {
    one_error(
        &edit("partitions: 2", "partitions: two"),
        "p.yaml:9:17: sources.tx.partitions: expected a whole number, found `two`",
    );
    one_error(
        &edit("amount: double", "amount: decimal"),
        "p.yaml:11:40: sources.tx.schema.amount: unknown variant `decimal`",
    );
}

#[test]
fn missing_field() {
    one_error(&edit("    topic: tx\n", ""), "p.yaml:6:3: sources.tx: missing field `topic`");
}

#[test]
fn unknown_type() {
    one_error(
        &edit("type: cassandra", "type: postgres"),
        "p.yaml:22:11: sinks.out.type: unknown type `postgres`, expected `cassandra` or `kafka`",
    );
}

#[test]
fn dedicated_controllers_are_an_odd_count_of_a_cluster_smack_runs() {
    assert!(errors(&edit("  kafka: { brokers: 1 }", "  kafka: { brokers: 1, controllers: 3 }")).is_empty());
    one_error(
        &edit("  kafka: { brokers: 1 }", "  kafka: { brokers: 1, controllers: 2 }"),
        "p.yaml:3:37: services.kafka.controllers: 2 controllers: expected an odd number from 1 to 9 (hint: 3 controllers outlive the loss of one; leave it out to run controllers on the brokers)",
    );
    one_error(
        &edit("  kafka: { brokers: 1 }", "  kafka: { controllers: 3, external: { bootstrap-servers: [\"h:9092\"] } }"),
        "p.yaml:3:12: services.kafka.controllers: `controllers` sizes a kafka cluster that smack runs; with `external`, remove it",
    );
}

/// BASE with a Kafka sink `alerts` of agg's rows, its `format:` line 31 followed by `rest`.
fn kafka_sink(format: &str, rest: &str) -> String {
    format!("{BASE}  alerts:\n    type: kafka\n    from: agg\n    topic: alerts\n    format: {format}\n{rest}")
}

#[test]
fn a_kafka_sink_writes_json_csv_or_avro() {
    for (format, rest) in [
        ("json", ""),
        ("csv", ""),
        ("avro", "    avro: { schema-id: 7 }\n"),
        ("avro", "    avro: { wire-format: plain }\n"),
        ("avro", "    avro:\n      wire-format: confluent\n      schema-id: 0\n"),
    ] {
        let text = kafka_sink(format, rest);
        let p = PipelineSpec::from_yaml(&text, "p.yaml").unwrap_or_else(|e| panic!("{format} {rest:?}: {e}"));
        let Sink::Kafka(k) = &p.sinks["alerts"] else { panic!("a kafka sink") };
        assert_eq!(format!("{:?}", k.format).to_lowercase(), format);
    }
    let p = PipelineSpec::from_yaml(&kafka_sink("avro", "    avro: { schema-id: 7 }\n"), "p.yaml").unwrap();
    let Sink::Kafka(k) = &p.sinks["alerts"] else { panic!("a kafka sink") };
    assert_eq!(k.avro, Some(SinkAvroOptions { wire_format: AvroWireFormat::Confluent, schema_id: Some(7) }));
    // The options survive the JSON round trip of the spec.
    let back: PipelineSpec = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back.sinks["alerts"], p.sinks["alerts"]);
}

#[test]
fn a_kafka_sink_in_avro_needs_a_schema_id_in_the_confluent_framing_and_none_in_the_plain_one() {
    one_error(
        &kafka_sink("avro", ""),
        "p.yaml:31:13: sinks.alerts.format: Avro records in the Confluent framing carry the id of their writer's schema; the sink needs `avro.schema-id` (hint: add `avro: { schema-id: N }`",
    );
    one_error(
        &kafka_sink("avro", "    avro: { wire-format: confluent }\n"),
        "p.yaml:31:13: sinks.alerts.format: Avro records in the Confluent framing",
    );
    one_error(
        &kafka_sink("avro", "    avro: { wire-format: plain, schema-id: 3 }\n"),
        "p.yaml:32:33: sinks.alerts.avro.schema-id: a schema id is part of the Confluent framing; with `wire-format: plain`, remove it",
    );
}

#[test]
fn avro_options_on_a_json_or_csv_sink_and_unknown_options_are_refused() {
    for format in ["json", "csv"] {
        one_error(
            &kafka_sink(format, "    avro: { wire-format: plain }\n"),
            "p.yaml:32:5: sinks.alerts.avro: `avro` options need `format: avro`",
        );
    }
    // A sink's writer schema is derived from its input's columns: no `schema` option.
    let e = errors(&kafka_sink("avro", "    avro: { schema-id: 1, schema: { type: record } }\n"));
    assert!(e.len() == 1 && e[0].starts_with("p.yaml:32:") && e[0].contains("schema"), "{e:?}");
    assert!(e[0].contains("wire-format") && e[0].contains("schema-id"), "the known keys are listed: {e:?}");
    // CSV takes no options: there is no header, delimiter or quote to choose.
    let e = errors(&kafka_sink("csv", "    header: true\n"));
    assert!(e.len() == 1 && e[0].starts_with("p.yaml:32:5: sinks.alerts") && e[0].contains("header"), "{e:?}");
    let e = errors(&kafka_sink("xml", ""));
    assert!(e.len() == 1 && e[0].starts_with("p.yaml:31:13: ") && e[0].contains("json"), "{e:?}");
}

#[test]
fn an_avro_sink_needs_columns_with_avro_names() {
    let named = |text: String| text.replacen("COUNT(*) AS n", "COUNT(*) AS \"n-rows\"", 1);
    one_error(
        &named(kafka_sink("avro", "    avro: { wire-format: plain }\n")),
        "p.yaml:29:11: sinks.alerts.from: column `n-rows` of `agg` is not an Avro field name (letters, digits and `_`, not starting with a digit) (hint: name the column with `AS` in the stage's SQL)",
    );
    // JSON and CSV take any column name. (An expression without a name has
    // no known column name here: the stage task refuses it when it starts.)
    assert_eq!(errors(&named(kafka_sink("csv", ""))), Vec::<String>::new());
}

#[test]
fn bad_sink_from() {
    one_error(&edit("from: agg", "from: agg2"), "p.yaml:23:11: sinks.out.from: `agg2` is not a stage or source; expected one of `tx` or `agg` (hint: did you mean `agg`?)");
}

#[test]
fn sql_parse_error_is_mapped_into_the_file() {
    // Line 2 of the SQL is line 17 of the file; the block is indented 6.
    one_error(
        &edit("      FROM tx\n", "      FROM tx WHERE amount > > 3\n"),
        "p.yaml:17:30: stages.agg.sql: SQL does not parse: Expected: an expression, found: >",
    );
}

#[test]
fn sql_parse_error_in_a_one_line_sql() {
    let text = edit(
        "    sql: |\n      SELECT card_id, window_start, COUNT(*) AS n, SUM(amount) AS total\n      FROM tx\n      GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE)\n",
        "    sql: \"SELECT card_id,, amount FROM tx\"\n",
    );
    // SQL column 16 is file column 11 + 15: the value's quote is at 10.
    let errs = errors(&text);
    assert!(
        errs[0].starts_with("p.yaml:15:26: stages.agg.sql: SQL does not parse: Expected: an expression, found: ,"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_table() {
    one_error(&edit("      FROM tx\n", "      FROM txs\n"), "p.yaml:17:12: stages.agg.sql: unknown table `txs`, expected a source or an earlier stage: `tx` (hint: did you mean `tx`?)");
}

#[test]
fn stage_reading_a_later_stage() {
    let text = format!("{}  later:\n    sql: SELECT card_id FROM tx\n", BASE.split("sinks:").next().unwrap())
        + "sinks:"
        + BASE.split("sinks:").nth(1).unwrap();
    let text = text.replace("      FROM tx\n", "      FROM later\n");
    one_error(&text, "p.yaml:17:12: stages.agg.sql: stage `later` is declared after `agg`");
}

#[test]
fn unknown_column() {
    one_error(&edit("SUM(amount)", "SUM(amont)"), "p.yaml:16:56: stages.agg.sql: unknown column `amont` in `tx`");
}

#[test]
fn unknown_column_in_where() {
    one_error(
        &edit("      FROM tx\n", "      FROM tx WHERE merchant = 'x'\n"),
        "p.yaml:17:21: stages.agg.sql: unknown column `merchant`",
    );
}

#[test]
fn key_not_in_group_by() {
    one_error(
        &edit("key: card_id", "key: amount"),
        "p.yaml:19:10: stages.agg.key: key `amount` is not among the GROUP BY expressions",
    );
}

#[test]
fn group_by_without_key() {
    one_error(&edit("    key: card_id\n", ""), "p.yaml:14:3: stages.agg: a stage with GROUP BY needs `key`");
}

#[test]
fn window_outside_group_by() {
    one_error(
        &edit("SELECT card_id, window_start,", "SELECT card_id, TUMBLE(ts, INTERVAL '1' MINUTE) AS w, window_start,"),
        "p.yaml:16:23: stages.agg.sql: `TUMBLE` belongs in GROUP BY",
    );
}

#[test]
fn hop_and_session_are_accepted_and_checked() {
    assert!(errors(&edit("TUMBLE(ts, INTERVAL '1' MINUTE)", "HOP(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)"))
        .is_empty());
    assert!(errors(&edit("TUMBLE(ts, INTERVAL '1' MINUTE)", "SESSION(ts, INTERVAL '5' MINUTE)")).is_empty());
    one_error(
        &edit("TUMBLE(ts, INTERVAL '1' MINUTE)", "HOP(ts, INTERVAL '1' MINUTE)"),
        "p.yaml:18:25: stages.agg.sql: expected `HOP(ts, INTERVAL",
    );
    one_error(
        &edit("TUMBLE(ts,", "TUMBLE(card_id,"),
        "p.yaml:18:32: stages.agg.sql: `TUMBLE` runs on the source's event time: expected `ts`",
    );
}

#[test]
fn replication_above_brokers() {
    one_error(
        &edit("replication: 1", "replication: 3"),
        "p.yaml:10:18: sources.tx.replication: replication 3 is more than the 1 Kafka broker",
    );
}

#[test]
fn partitions_at_least_one() {
    one_error(&edit("partitions: 2", "partitions: 0"), "p.yaml:9:17: sources.tx.partitions: must be at least 1");
}

#[test]
fn primary_key_column_not_produced() {
    one_error(
        &edit("[card_id, window_start]", "[card_id, window_end]"),
        "p.yaml:26:28: sinks.out.primary-key.1: primary-key column `window_end` is not produced by stage `agg`",
    );
}

#[test]
fn durations() {
    assert!(errors(&format!("{BASE}checkpoint-interval: 1m\n")).is_empty());
    one_error(
        &format!("{BASE}checkpoint-interval: 10\n"),
        "p.yaml:27:22: checkpoint-interval: expected a duration like `10s`, `1m` or `500ms`, found `10`",
    );
    one_error(
        &format!("{BASE}checkpoint-interval: 10 parsecs\n"),
        "p.yaml:27:22: checkpoint-interval: expected a duration like `10s`",
    );
    assert_eq!(Duration::parse("500ms").unwrap().0.as_millis(), 500);
    assert_eq!(Duration::parse("2h").unwrap().to_string(), "2h");
}

#[test]
fn duplicate_names() {
    one_error(
        &edit("sinks:\n  out:", "sinks:\n  agg:"),
        "p.yaml:21:3: sinks.agg: the name `agg` is taken by stages.agg",
    );
    let dup = edit("  agg:\n", "  tx:\n    sql: SELECT card_id FROM tx\n  agg:\n");
    let errs = errors(&dup);
    assert!(
        errs.iter().any(|e| e.starts_with("p.yaml:14:3: stages.tx: the name `tx` is taken by sources.tx")),
        "{errs:#?}"
    );
}

#[test]
fn duplicate_key_in_a_mapping() {
    one_error(
        &edit("    key: card_id\n", "    key: card_id\n    key: n\n"),
        "p.yaml:20:5: duplicate key `key` (first at line 19)",
    );
}

#[test]
fn invalid_names() {
    one_error(
        &edit("  tx:\n", "  Tx-1:\n").replace("FROM tx", "FROM \"Tx-1\""),
        "p.yaml:6:3: sources.Tx-1: invalid name `Tx-1`",
    );
}

#[test]
fn services_needed_and_external_exclusive() {
    one_error(
        &edit("  cassandra: { nodes: 1 }\n", ""),
        "p.yaml:21:11: sinks.out.type: a Cassandra sink needs `services.cassandra`",
    );
    one_error(
        &edit("  kafka: { brokers: 1 }", "  kafka: { brokers: 1, external: { bootstrap-servers: [\"h:9092\"] } }"),
        "p.yaml:3:12: services.kafka.brokers: `brokers` sizes a kafka cluster that smack runs",
    );
}

#[test]
fn errors_are_collected_in_file_order() {
    let text = edit("replication: 1", "replication: 3")
        .replace("SUM(amount)", "SUM(amont)")
        .replace("from: agg", "from: nope");
    let errs = errors(&text);
    let positions: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(positions, ["p.yaml:10:18", "p.yaml:16:56", "p.yaml:23:11"], "{errs:#?}");
}

#[test]
fn complex_sql_is_parsed_not_column_checked() {
    let text = edit("      FROM tx\n", "      FROM tx WHERE card_id IN (SELECT card_id FROM tx WHERE whatever > 1)\n");
    assert_eq!(errors(&text), Vec::<String>::new());
}

#[test]
fn tests_section() {
    let ok = format!("{BASE}tests:\n  - name: one\n    inputs:\n      tx:\n        - {{ card_id: c1, amount: 1.5, ts: 1000 }}\n    expect:\n      out:\n        - {{ card_id: c1, n: 1 }}\n");
    let p = PipelineSpec::from_yaml(&ok, "p.yaml").unwrap();
    assert_eq!(p.tests[0].inputs["tx"][0]["amount"], serde_json::json!(1.5));
    assert_eq!(p.tests[0].expect["out"][0]["n"], serde_json::json!(1));
    one_error(
        &ok.replace("amount: 1.5", "amnt: 1.5"),
        "p.yaml:31:26: tests.0.inputs.tx.0.amnt: `amnt` is not a field of source `tx`",
    );
    one_error(&ok.replace("      out:", "      nope:"), "p.yaml:33:7: tests.0.expect.nope: `nope` is not a sink");
}

#[test]
fn round_trips_through_json() {
    let p = PipelineSpec::from_yaml(BASE, "p.yaml").unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["sources"]["tx"]["type"], "kafka");
    assert_eq!(json["checkpoint-interval"], "10s");
    let back: PipelineSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn schema_has_the_top_level_properties() {
    let s = json_schema();
    let props = s["properties"].as_object().expect("properties");
    for k in ["name", "services", "sources", "stages", "sinks", "checkpoint-interval", "tests"] {
        assert!(props.contains_key(k), "schema lacks {k}");
    }
    assert_eq!(s["additionalProperties"], serde_json::json!(false));
    assert!(s["required"].as_array().unwrap().contains(&serde_json::json!("name")));
}

#[test]
fn a_generator_names_its_example_and_needs_its_sources() {
    let with = format!("{BASE}generator: {{ example: fraud, rate: 50, seed: 7 }}\n");
    let errs = errors(&with);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("p.yaml:27:23: generator.example: the fraud generator writes source `transactions`"),
        "{}",
        errs[0]
    );
    let renamed = edit("  tx:\n", "  transactions:\n").replace("FROM tx", "FROM transactions");
    let ok = format!("{renamed}generator: {{ example: fraud, rate: 50, seed: 7 }}\n");
    let spec = PipelineSpec::from_yaml(&ok, "p.yaml").unwrap();
    let g = spec.generator.unwrap();
    assert_eq!((g.example, g.rate, g.seed, g.count), (GeneratorExample::Fraud, 50.0, 7, None));
    let bad = format!("{renamed}generator: {{ example: fraud, rate: 0, malformed-share: 2 }}\n");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("generator.rate: expected events per second"), "{}", errs[0]);
    assert!(errs[1].contains("generator.malformed-share: expected a share"), "{}", errs[1]);
    let unknown = format!("{renamed}generator: {{ example: poker }}\n");
    let errs = errors(&unknown);
    assert!(errs[0].contains("generator.example") && errs[0].contains("poker"), "{errs:#?}");
}

const LOOKUP: &str = "\
lookups:
  cards:
    type: cassandra
    keyspace: k
    table: cards
    key: [card_id]
    schema: { card_id: string, home_country: string }
    cache: 100
stages:";

#[test]
fn lookups_parse_and_are_checked_where_they_are_written() {
    let p = PipelineSpec::from_yaml(&edit("stages:", LOOKUP), "p.yaml").unwrap();
    let Lookup::Cassandra(c) = &p.lookups["cards"];
    assert_eq!((c.table.as_str(), c.key.as_slice()), ("cards", &["card_id".to_string()][..]));
    assert_eq!(c.cache, LookupCache::Size(100));
    assert_eq!(p.lookups["cards"].schema().len(), 2);
    // Line 13 is `lookups:`; the key list is on line 18.
    one_error(
        &edit("stages:", &LOOKUP.replace("key: [card_id]", "key: [card]")),
        "p.yaml:18:11: lookups.cards.key.0: `card` is not a column of the lookup",
    );
    one_error(
        &edit("stages:", &LOOKUP.replace("cache: 100", "cache: 0")),
        "p.yaml:20:12: lookups.cards.cache: expected at least 1",
    );
    one_error(&edit("stages:", &LOOKUP.replace("type: cassandra", "type: redis")), "p.yaml:15:11");
    one_error(
        &edit("stages:", &LOOKUP.replace("cards:", "tx:")),
        "p.yaml:14:3: lookups.tx: the name `tx` is taken by sources.tx",
    );
    let e = errors(&edit("stages:", LOOKUP).replace("  cassandra: { nodes: 1 }\n", ""));
    assert!(
        e.iter()
            .any(|e| e.starts_with("p.yaml:14:11: lookups.cards.type: a Cassandra lookup needs `services.cassandra`")),
        "{e:#?}"
    );
    let e = errors(&edit("stages:", &LOOKUP.replace("    cache: 100\n", "    cache: 100\n    ttl: 5\n")));
    assert!(e.len() == 1 && e[0].contains("ttl"), "{e:#?}");
}

/// LOOKUP with its `cache: 100` line (line 20, the value at column 12)
/// replaced by `cache`.
fn with_cache(cache: &str) -> String {
    edit("stages:", &LOOKUP.replace("    cache: 100\n", &format!("    cache: {cache}\n")))
}

fn cache_of(text: &str) -> LookupCache {
    let p = PipelineSpec::from_yaml(text, "p.yaml").unwrap();
    let Lookup::Cassandra(c) = &p.lookups["cards"];
    c.cache.clone()
}

#[test]
fn lookup_cache_modes_parse_with_their_defaults() {
    let secs = std::time::Duration::from_secs;
    // The shorthand: a partial cache of N keys; absences expire after 60 s.
    let plan = cache_of(&with_cache("100")).plan();
    assert_eq!(plan, CachePlan::Partial { size: 100, expire_after_write: None, missing_expire: secs(60) });
    let none = edit("stages:", &LOOKUP.replace("    cache: 100\n", ""));
    assert_eq!(cache_of(&none), LookupCache::Size(10_000));
    let c = cache_of(&with_cache("{mode: partial, size: 5000, expire-after-write: 10m, missing-expire: 30s}"));
    assert_eq!(
        c.plan(),
        CachePlan::Partial { size: 5000, expire_after_write: Some(secs(600)), missing_expire: secs(30) }
    );
    // Partial by default; `0s` does not cache absent keys.
    let c = cache_of(&with_cache("{missing-expire: 0s}"));
    assert_eq!(c.plan(), CachePlan::Partial { size: 10_000, expire_after_write: None, missing_expire: secs(0) });
    assert_eq!(cache_of(&with_cache("{mode: full, reload: 5m}")).plan(), CachePlan::Full { reload: secs(300) });
    assert_eq!(cache_of(&with_cache("{mode: full}")).plan(), CachePlan::Full { reload: secs(3600) });
    // Block style too.
    let block = with_cache("\n      mode: full\n      reload: 30s");
    assert_eq!(cache_of(&block).plan(), CachePlan::Full { reload: secs(30) });
    // Written back as read.
    let LookupCache::Options(o) = c else { panic!("options") };
    let yaml = serde_json::to_value(&o).unwrap();
    assert_eq!(yaml, serde_json::json!({"mode": "partial", "missing-expire": "0s"}));
}

#[test]
fn lookup_cache_options_are_refused_where_they_are_written() {
    // `cache:` is on line 20; a flow mapping's keys start at column 13.
    one_error(&with_cache("0"), "p.yaml:20:12: lookups.cards.cache: expected at least 1 cached key");
    one_error(
        &with_cache("{mode: fuzzy}"),
        "p.yaml:20:19: lookups.cards.cache.mode: unknown variant `fuzzy`, expected `partial` or `full`",
    );
    one_error(&with_cache("{size: 0}"), "p.yaml:20:19: lookups.cards.cache.size: expected at least 1 cached key");
    one_error(
        &with_cache("{mode: full, size: 100}"),
        "p.yaml:20:25: lookups.cards.cache.size: `size` is an option of `mode: partial`",
    );
    one_error(
        &with_cache("{mode: full, missing-expire: 10s}"),
        "p.yaml:20:25: lookups.cards.cache.missing-expire: `missing-expire` is an option of `mode: partial`",
    );
    one_error(
        &with_cache("{mode: full, expire-after-write: 10s}"),
        "p.yaml:20:25: lookups.cards.cache.expire-after-write: `expire-after-write` is an option of `mode: partial`",
    );
    one_error(
        &with_cache("{mode: full, reload: 0s}"),
        "p.yaml:20:33: lookups.cards.cache.reload: expected a reload period of more than 0s, e.g. `5m`",
    );
    one_error(
        &with_cache("{reload: 5m}"),
        "p.yaml:20:13: lookups.cards.cache.reload: `reload` is an option of `mode: full`",
    );
    one_error(
        &with_cache("{expire-after-write: 0s}"),
        "p.yaml:20:33: lookups.cards.cache.expire-after-write: expected a duration of more than 0s",
    );
    one_error(
        &with_cache("{mode: full, reload: 5}"),
        "p.yaml:20:33: lookups.cards.cache.reload: expected a duration like `10s`, `1m` or `500ms`, found `5`",
    );
    one_error(
        &with_cache("{mode: full, ttl: 5m}"),
        "p.yaml:20:25: lookups.cards.cache: unknown field `ttl`, expected one of `mode`, `size`",
    );
    one_error(&with_cache("lots"), "p.yaml:20:12: lookups.cards.cache: expected a number of keys like `100000`");
    one_error(&with_cache("-3"), "p.yaml:20:12: lookups.cards.cache: expected a number of keys like `100000`");
    one_error(&with_cache("[1]"), "p.yaml:20:12: lookups.cards.cache: ");
    // Several at once, each at its place.
    let e = errors(&with_cache("{mode: full, size: 10, reload: 0s}"));
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn the_json_schema_has_both_cache_forms() {
    let schema = json_schema().to_string();
    for word in ["expire-after-write", "missing-expire", "reload", "\"full\"", "\"partial\""] {
        assert!(schema.contains(word), "the schema lacks {word}");
    }
}

/// The BASE stage joining the `cards` lookup: FROM is on line 25.
fn joined(select: &str, join: &str) -> String {
    edit("stages:", LOOKUP)
        .replacen("      SELECT card_id, window_start, COUNT(*) AS n, SUM(amount) AS total\n", select, 1)
        .replacen("      FROM tx\n", join, 1)
        .replacen("GROUP BY card_id,", "GROUP BY tx.card_id,", 1)
}

const JOIN_SELECT: &str = "      SELECT tx.card_id, window_start, COUNT(*) AS n, COUNT(c.home_country) AS known\n";
const JOIN: &str = "      FROM tx LEFT JOIN cards c ON tx.card_id = c.card_id\n";

#[test]
fn stage_sql_joining_a_lookup_is_checked_against_the_lookups_schema_and_key() {
    let p = PipelineSpec::from_yaml(&joined(JOIN_SELECT, JOIN), "p.yaml").unwrap();
    assert!(p.stages["agg"].sql.contains("LEFT JOIN cards"));
    // The ON clause must compare the lookup's key with `=`; `cards` is at 25:25.
    let e = errors(&joined(JOIN_SELECT, &JOIN.replace("tx.card_id = c.card_id", "tx.card_id > c.card_id")));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("p.yaml:25:25: stages.agg.sql: the ON clause of the join to lookup `cards` does not compare its key `card_id`"), "{}", e[0]);
    // A lookup column that is not declared.
    let e = errors(&joined(&JOIN_SELECT.replace("c.home_country", "c.home_cuntry"), JOIN));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("p.yaml:24:63: stages.agg.sql: unknown column `home_cuntry` in lookup `cards`"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("did you mean `home_country`?"), "{}", e[0]);
    // A column both tables have must name its table.
    let e = errors(&joined(&JOIN_SELECT.replace("SELECT tx.card_id", "SELECT card_id"), JOIN));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(
            "p.yaml:24:14: stages.agg.sql: column `card_id` is ambiguous: both `tx` and lookup `cards` have it"
        ),
        "{}",
        e[0]
    );
    // An unknown column of neither.
    let e = errors(&joined(&JOIN_SELECT.replace("COUNT(*)", "COUNT(amout)"), JOIN));
    assert!(e.len() == 1 && e[0].contains("unknown column `amout` in `tx` or lookup `cards`"), "{e:#?}");
    // The lookup is joined, never the input.
    let e = errors(&joined(JOIN_SELECT, "      FROM cards c LEFT JOIN tx ON tx.card_id = c.card_id\n"));
    assert!(e.iter().any(|e| e.starts_with("p.yaml:25:12: stages.agg.sql: `cards` is a lookup")), "{e:#?}");
    // RIGHT JOIN is not a lookup join.
    let e = errors(&joined(JOIN_SELECT, &JOIN.replace("LEFT JOIN", "RIGHT JOIN")));
    assert!(e.len() == 1 && e[0].contains("JOIN or LEFT JOIN only"), "{e:#?}");
}
