//! Checks of a source's record format and of the reserved Kafka metadata
//! columns: declared fields may not take a metadata column's name; an
//! `avro:` section needs `format: avro`; with Avro, the writer's schema (the
//! one given inline, or the one derived from the declared fields) must hold
//! every declared field with a type that fits (the rules are
//! `smack_connectors::format::avro`'s). Each misfit is reported at the
//! declared field, so the error points at what the user wrote.
//!
//! A Kafka sink writes `json`, `csv` or `avro`; its `avro:` section (the
//! framing and the schema id to write) needs `format: avro`, the Confluent
//! framing needs a schema id and the plain one takes none, and with Avro
//! every column of the sink's input must be an Avro field name (the
//! writer's schema is derived from them: [`AvroSchema::of_rows`]).
//! [`KafkaSink::encoder`] builds what the stage task writes with.

use super::yaml::{field, key_pos, value_pos, Cx};
use super::*;
use crate::runtime::schema::{avro_writer_schema, source_schema};
use datafusion::arrow::datatypes::SchemaRef;
use marked_yaml::Node;
use smack_connectors::format::{
    check_avro, is_avro_name, AvroFormat, AvroFraming, AvroSchema, Encoder, FormatError, RecordFormat,
};

impl KafkaSink {
    /// The Avro record name of sink `name`'s writer schema: the sink's name
    /// with `-` as `_`.
    pub fn avro_record_name(name: &str) -> String {
        name.replace('-', "_")
    }

    /// The encoder of sink `name`'s rows of `schema`, in its format; with
    /// Avro, the writer's schema is derived from `schema`
    /// ([`AvroSchema::of_rows`], named [`KafkaSink::avro_record_name`]).
    pub fn encoder(&self, name: &str, schema: SchemaRef) -> Result<Encoder, FormatError> {
        let format = match self.format {
            Format::Json => RecordFormat::Json,
            Format::Csv => RecordFormat::Csv,
            Format::Avro => {
                let o = self.avro.clone().unwrap_or_default();
                RecordFormat::Avro(AvroFormat {
                    framing: match o.wire_format {
                        AvroWireFormat::Confluent => AvroFraming::Confluent,
                        AvroWireFormat::Plain => AvroFraming::Plain,
                    },
                    writer: Some(AvroSchema::of_rows(&KafkaSink::avro_record_name(name), &schema)?),
                    schema_id: o.schema_id,
                })
            }
        };
        Encoder::new(format, schema)
    }
}

/// Checks Kafka sink `name`'s format options; `columns` are those of its
/// input, when known.
pub(super) fn check_sink(cx: &mut Cx, root: &Node, name: &str, sink: &KafkaSink, columns: Option<&[String]>) {
    if let Some(avro) = &sink.avro {
        if sink.format != Format::Avro {
            let p = ["sinks", name, "avro"];
            cx.err(key_pos(root, &p), &field(&p), "`avro` options need `format: avro`");
            return;
        }
        if avro.schema_id.is_some() && avro.wire_format == AvroWireFormat::Plain {
            let p = ["sinks", name, "avro", "schema-id"];
            cx.err(
                key_pos(root, &p),
                &field(&p),
                "a schema id is part of the Confluent framing; with `wire-format: plain`, remove it",
            );
        }
    }
    if sink.format != Format::Avro {
        return;
    }
    let confluent = sink.avro.as_ref().is_none_or(|a| a.wire_format == AvroWireFormat::Confluent);
    if confluent && sink.avro.as_ref().and_then(|a| a.schema_id).is_none() {
        let p = ["sinks", name, "format"];
        let e = cx.err(
            value_pos(root, &p),
            &field(&p),
            "Avro records in the Confluent framing carry the id of their writer's schema; the sink needs `avro.schema-id`",
        );
        e.hint = Some(
            "add `avro: { schema-id: N }` (the id the schema is registered under), or `avro: { wire-format: plain }`"
                .into(),
        );
    }
    for c in columns.unwrap_or_default().iter().filter(|c| !is_avro_name(c)) {
        let p = ["sinks", name, "from"];
        let e = cx.err(
            value_pos(root, &p),
            &field(&p),
            format!(
                "column `{c}` of `{}` is not an Avro field name (letters, digits and `_`, not starting with a digit)",
                sink.from
            ),
        );
        e.hint = Some("name the column with `AS` in the stage's SQL".into());
    }
}

/// Checks source `name`'s format options and field names.
pub(super) fn check(cx: &mut Cx, root: &Node, name: &str, source: &Source) {
    let Source::Kafka(k) = source;
    for f in k.schema.keys() {
        if metadata_column(f).is_some() {
            let p = ["sources", name, "schema", f.as_str()];
            let all: Vec<&str> = METADATA_COLUMNS.iter().map(|(n, _)| *n).collect();
            let e = cx.err(
                key_pos(root, &p),
                &field(&p),
                format!(
                    "`{f}` is a reserved column filled from the Kafka record ({}); a declared field cannot take its name",
                    all.join(", ")
                ),
            );
            e.hint = Some(format!("rename the field; SQL reads the record's own `{f}` without declaring it"));
        }
    }
    let Some(avro) = &k.avro else { return };
    if k.format != Format::Avro {
        let p = ["sources", name, "avro"];
        cx.err(key_pos(root, &p), &field(&p), "`avro` options need `format: avro`");
        return;
    }
    if avro.schema_id.is_some() && avro.wire_format == AvroWireFormat::Plain {
        let p = ["sources", name, "avro", "schema-id"];
        cx.err(
            key_pos(root, &p),
            &field(&p),
            "a schema id is part of the Confluent framing; with `wire-format: plain`, remove it",
        );
    }
    let writer = match avro_writer_schema(avro) {
        Ok(Some(w)) => w,
        Ok(None) => return, // derived from the declared fields: it fits by construction
        Err(e) => {
            let p = ["sources", name, "avro", "schema"];
            let e = cx.err(value_pos(root, &p), &field(&p), e.to_string());
            e.hint = Some("give the writer's Avro schema inline: a record with `name` and `fields`".into());
            return;
        }
    };
    let schema_line = key_pos(root, &["sources", name, "avro", "schema"]).line;
    for m in check_avro(&writer, &source_schema(source)) {
        let p = ["sources", name, "schema", m.field.as_str()];
        cx.err(
            key_pos(root, &p),
            &field(&p),
            format!("does not fit the Avro schema (line {schema_line}): {}", m.reason),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// A valid pipeline with an Avro source; lines matter.
    const AVRO: &str = "\
name: t
services:
  kafka: { brokers: 1 }
sources:
  tx:
    type: kafka
    topic: tx
    format: avro
    schema: { card_id: string, amount: double, ts: timestamp }
    event-time: ts
stages:
  big:
    sql: SELECT card_id, amount, _key, _timestamp FROM tx WHERE _partition = 0 AND _key IS NOT NULL
sinks:
  out:
    type: kafka
    from: big
    topic: out
";

    fn errors(text: &str) -> Vec<String> {
        match PipelineSpec::from_yaml(text, "p.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn with(from: &str, to: &str) -> String {
        assert!(AVRO.contains(from), "no {from:?}");
        AVRO.replacen(from, to, 1)
    }

    #[test]
    fn an_avro_source_with_a_derived_schema_and_metadata_columns_is_valid() {
        let p = PipelineSpec::from_yaml(AVRO, "p.yaml").unwrap();
        let Source::Kafka(k) = &p.sources["tx"];
        assert_eq!((k.format, &k.avro), (Format::Avro, &None));
        assert_eq!(p.sources["tx"].columns()[3..], ["_key", "_timestamp", "_partition", "_offset"]);
        assert_eq!(p.sources["tx"].column_type("_offset"), Some(FieldType::Long));
    }

    #[test]
    fn the_kafka_timestamp_can_be_the_event_time() {
        let text =
            with("    event-time: ts\n", "    event-time: _timestamp\n    watermark: { max-out-of-orderness: 1s }\n");
        assert_eq!(errors(&text), Vec::<String>::new());
        let text = with("    event-time: ts\n", "    event-time: _key\n");
        let e = errors(&text);
        assert!(e.len() == 1 && e[0].contains("event-time field `_key` is a string"), "{e:?}");
    }

    #[test]
    fn declared_fields_cannot_take_reserved_names() {
        let e = errors(&with("ts: timestamp }", "ts: timestamp, _offset: long }"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("p.yaml:9:63: sources.tx.schema._offset: `_offset` is a reserved column"), "{e:?}");
    }

    #[test]
    fn an_inline_writer_schema_must_hold_every_declared_field_with_a_type_that_fits() {
        let good = with(
            "    event-time: ts\n",
            "    event-time: ts\n    avro:\n      wire-format: plain\n      schema:\n        type: record\n        name: Tx\n        fields:\n          - { name: extra, type: { type: array, items: string } }\n          - { name: card_id, type: [\"null\", string] }\n          - { name: amount, type: float }\n          - { name: ts, type: { type: long, logicalType: timestamp-micros } }\n",
        );
        assert_eq!(errors(&good), Vec::<String>::new());
        let as_text = with(
            "    event-time: ts\n",
            "    event-time: ts\n    avro:\n      schema: '{\"type\":\"record\",\"name\":\"Tx\",\"fields\":[{\"name\":\"card_id\",\"type\":\"long\"},{\"name\":\"ts\",\"type\":\"long\"}]}'\n",
        );
        let e = errors(&as_text);
        assert_eq!(
            e,
            vec![
                "p.yaml:9:15: sources.tx.schema.card_id: does not fit the Avro schema (line 12): the Avro field is long; expected string or enum",
                "p.yaml:9:32: sources.tx.schema.amount: does not fit the Avro schema (line 12): not a field of the Avro record, which has card_id, ts",
            ],
        );
        let broken =
            with("    event-time: ts\n", "    event-time: ts\n    avro:\n      schema: { type: record, name: Tx }\n");
        let e = errors(&broken);
        assert!(
            e.len() == 1
                && e[0]
                    .starts_with("p.yaml:12:15: sources.tx.avro.schema: Avro schema: record `Tx` has no `fields` list"),
            "{e:?}"
        );
    }

    /// The fraud example's `alerts` sink in Avro and CSV, run as `pipeline
    /// test` runs it (its first test's records through the runtime): the
    /// rows the stage gives the sink, encoded as the stage task encodes
    /// them, decode back to the same rows with the writer's schema a
    /// consumer gets (the one docs/sinks.md prints).
    #[tokio::test]
    async fn the_fraud_alerts_sink_writes_avro_and_csv_that_decode_back_to_its_rows() {
        use crate::runtime::{lookup::inline_lookups, StageRuntime};
        use smack_connectors::format::{to_json_rows, AvroFormat, AvroSchema, Decoder, RecordFormat};
        let path = format!("{}/../examples/fraud-detection/pipeline.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        for extra in ["    format: avro\n    avro: { schema-id: 1 }\n", "    format: csv\n"] {
            let text = text.replacen("    topic: fraud-alerts\n", &format!("    topic: fraud-alerts\n{extra}"), 1);
            let spec = PipelineSpec::from_yaml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            let test = &spec.tests[0];
            let mut rt =
                StageRuntime::with_lookups(&spec, &inline_lookups(&spec, &test.lookups).unwrap()).await.unwrap();
            rt.assign_partitions("transactions", &[0]).unwrap();
            let input = rt.decoder("transactions").unwrap();
            let mut batches = Vec::new();
            for (i, r) in test.inputs["transactions"].iter().enumerate() {
                let bytes = serde_json::to_vec(r).unwrap();
                let out =
                    rt.push("transactions", 0, i as i64 + 1, input.decode([bytes.as_slice()]).batch).await.unwrap();
                batches.extend(out.sinks.into_iter().filter(|s| s.sink == "alerts").map(|s| s.batch));
            }
            batches
                .extend(rt.finish().await.unwrap().sinks.into_iter().filter(|s| s.sink == "alerts").map(|s| s.batch));
            assert!(!batches.is_empty(), "the test flags a card");
            let Sink::Kafka(k) = &spec.sinks["alerts"] else { panic!("a Kafka sink") };
            let schema = rt.sink_schema("alerts").unwrap();
            let encoder = k.encoder("alerts", schema.clone()).unwrap();
            let read = match encoder.format() {
                RecordFormat::Avro(a) => {
                    let writer = encoder.avro_schema().unwrap();
                    assert_eq!(writer.to_json().to_string(), FRAUD_ALERTS_AVRO, "docs/sinks.md shows this schema");
                    let writer = AvroSchema::parse(&writer.to_json().to_string()).unwrap();
                    RecordFormat::Avro(AvroFormat { writer: Some(writer), ..a.clone() })
                }
                other => other.clone(),
            };
            if matches!(encoder.format(), RecordFormat::Csv) {
                let line = String::from_utf8(encoder.encode(&batches[0]).unwrap().remove(0)).unwrap();
                assert_eq!(line, "c1,2024-01-01T00:00:00Z,2024-01-01T00:01:00Z,6,40.0,3,2", "docs/sinks.md shows it");
            }
            let decoder = Decoder::new(read, schema).unwrap();
            for b in &batches {
                let payloads = encoder.encode(b).unwrap();
                let back = decoder.decode(payloads.iter());
                assert!(back.errors.is_empty(), "{extra}: {:?}", back.errors);
                assert_eq!(to_json_rows(&back.batch).unwrap(), to_json_rows(b).unwrap(), "{extra}");
            }
        }
    }

    /// The writer's schema of the fraud example's `alerts` sink in Avro.
    const FRAUD_ALERTS_AVRO: &str = concat!(
        r#"{"fields":[{"name":"card_id","type":["null","string"]},"#,
        r#"{"name":"window_start","type":["null",{"logicalType":"timestamp-millis","type":"long"}]},"#,
        r#"{"name":"window_end","type":["null",{"logicalType":"timestamp-millis","type":"long"}]},"#,
        r#"{"name":"txn_count","type":["null","long"]},{"name":"total_amount","type":["null","double"]},"#,
        r#"{"name":"countries","type":["null","long"]},{"name":"abroad","type":["null","long"]}],"#,
        r#""name":"alerts","type":"record"}"#
    );

    #[test]
    fn avro_options_need_the_avro_format_and_a_schema_id_the_confluent_framing() {
        let e = errors(&with("    format: avro\n", "    format: json\n    avro: { wire-format: plain }\n"));
        assert!(
            e.len() == 1 && e[0].starts_with("p.yaml:9:5: sources.tx.avro: `avro` options need `format: avro`"),
            "{e:?}"
        );
        let e =
            errors(&with("    format: avro\n", "    format: avro\n    avro: { wire-format: plain, schema-id: 3 }\n"));
        assert!(
            e.len() == 1 && e[0].contains("sources.tx.avro.schema-id: a schema id is part of the Confluent framing"),
            "{e:?}"
        );
        let e = errors(&with("    format: avro\n", "    format: avro\n    avro: { wire-format: snappy }\n"));
        assert!(e.len() == 1 && e[0].contains("wire-format"), "{e:?}");
    }
}
