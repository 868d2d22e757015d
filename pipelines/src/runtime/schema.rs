//! Spec field types → Arrow: the schema a source's records decode into
//! (its declared fields, then the Kafka metadata columns), and the record
//! format a source's options describe.

use crate::spec::{AvroOptions, AvroWireFormat, FieldType, Format, KafkaSource, Source, METADATA_COLUMNS};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use smack_connectors::format::{timestamp_type, AvroFormat, AvroFraming, AvroSchema, AvroSchemaError, RecordFormat};
use std::sync::Arc;

/// The Arrow type of a declared field type. Timestamps are epoch
/// milliseconds in UTC, as everywhere in the data plane.
pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Int => DataType::Int32,
        FieldType::Long => DataType::Int64,
        FieldType::Double => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => timestamp_type(),
    }
}

/// The Arrow schema of a source: its fields in declared order, then the
/// Kafka metadata columns (`_key`, `_timestamp`, `_partition`, `_offset`),
/// all nullable except the event-time column (a record without one cannot
/// be placed in time, so it does not decode).
pub fn source_schema(source: &Source) -> SchemaRef {
    let et = source.event_time();
    let declared = source.schema().iter().map(|(name, t)| (name.as_str(), *t));
    Arc::new(Schema::new(
        declared
            .chain(METADATA_COLUMNS.iter().copied())
            .map(|(name, t)| Field::new(name, arrow_type(t), Some(name) != et))
            .collect::<Vec<_>>(),
    ))
}

/// `columns` for a source's declared fields, then null columns for the
/// rest of `schema` (the metadata columns): a batch of a source built
/// without Kafka records (tests, tools).
pub fn with_null_metadata(
    schema: &SchemaRef,
    mut columns: Vec<datafusion::arrow::array::ArrayRef>,
) -> Vec<datafusion::arrow::array::ArrayRef> {
    let rows = columns.first().map_or(0, |c| c.len());
    let rest = schema.fields().iter().skip(columns.len());
    columns.extend(rest.map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows)));
    columns
}

/// The writer's schema an `avro:` section gives, if it gives one: Avro
/// JSON inline as YAML, or as a string of JSON text.
pub fn avro_writer_schema(options: &AvroOptions) -> Result<Option<AvroSchema>, AvroSchemaError> {
    match &options.schema {
        None => Ok(None),
        Some(serde_json::Value::String(text)) => AvroSchema::parse(text).map(Some),
        Some(v) => AvroSchema::from_json(v).map(Some),
    }
}

/// How a source's records decode: its format, with its Avro options.
pub fn record_format(source: &KafkaSource) -> Result<RecordFormat, String> {
    Ok(match source.format {
        Format::Json => RecordFormat::Json,
        Format::Csv => RecordFormat::Csv,
        Format::Avro => {
            let options = source.avro.clone().unwrap_or_default();
            RecordFormat::Avro(AvroFormat {
                framing: match options.wire_format {
                    AvroWireFormat::Confluent => AvroFraming::Confluent,
                    AvroWireFormat::Plain => AvroFraming::Plain,
                },
                writer: avro_writer_schema(&options).map_err(|e| e.to_string())?,
                schema_id: options.schema_id,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::KafkaSource;
    use indexmap::IndexMap;

    #[test]
    fn a_source_maps_to_an_arrow_schema_with_a_required_event_time() {
        let mut schema = IndexMap::new();
        for (n, t) in [
            ("s", FieldType::String),
            ("i", FieldType::Int),
            ("l", FieldType::Long),
            ("d", FieldType::Double),
            ("b", FieldType::Boolean),
            ("ts", FieldType::Timestamp),
        ] {
            schema.insert(n.to_string(), t);
        }
        let src = Source::Kafka(KafkaSource {
            topic: "t".into(),
            partitions: 1,
            replication: 1,
            format: Format::Json,
            schema,
            avro: None,
            event_time: Some("ts".into()),
            watermark: None,
            on_decode_error: Default::default(),
        });
        let s = source_schema(&src);
        let types: Vec<(&str, &DataType, bool)> =
            s.fields().iter().map(|f| (f.name().as_str(), f.data_type(), f.is_nullable())).collect();
        assert_eq!(
            types,
            vec![
                ("s", &DataType::Utf8, true),
                ("i", &DataType::Int32, true),
                ("l", &DataType::Int64, true),
                ("d", &DataType::Float64, true),
                ("b", &DataType::Boolean, true),
                ("ts", &timestamp_type(), false),
                ("_key", &DataType::Utf8, true),
                ("_timestamp", &timestamp_type(), true),
                ("_partition", &DataType::Int32, true),
                ("_offset", &DataType::Int64, true),
            ]
        );
        let Source::Kafka(mut k) = src;
        assert_eq!(record_format(&k), Ok(RecordFormat::Json));
        k.format = Format::Avro;
        assert_eq!(record_format(&k), Ok(RecordFormat::Avro(AvroFormat::default())));
        k.avro = Some(AvroOptions {
            wire_format: AvroWireFormat::Plain,
            schema: Some(serde_json::json!(r#"{"type":"record","name":"r","fields":[{"name":"s","type":"string"}]}"#)),
            schema_id: None,
        });
        let RecordFormat::Avro(a) = record_format(&k).unwrap() else { panic!("avro") };
        assert_eq!((a.framing, a.writer.unwrap().field_names()), (AvroFraming::Plain, vec!["s"]));
        k.avro.as_mut().unwrap().schema = Some(serde_json::json!({"type": "string"}));
        assert!(record_format(&k).unwrap_err().contains("expected a record"), "{:?}", record_format(&k));
    }

    #[test]
    fn the_kafka_timestamp_can_be_the_required_event_time() {
        let mut schema = IndexMap::new();
        schema.insert("s".to_string(), FieldType::String);
        let src = Source::Kafka(KafkaSource {
            topic: "t".into(),
            partitions: 1,
            replication: 1,
            format: Format::Csv,
            schema,
            avro: None,
            event_time: Some("_timestamp".into()),
            watermark: None,
            on_decode_error: Default::default(),
        });
        let s = source_schema(&src);
        assert!(!s.field_with_name("_timestamp").unwrap().is_nullable());
        assert!(s.field_with_name("_key").unwrap().is_nullable());
    }

    #[tokio::test]
    async fn a_stage_groups_avro_records_by_kafka_key_over_kafka_timestamps() {
        use smack_connectors::format::{avro::confluent_header, to_json_rows, AvroEncoder};
        use smack_connectors::kafka::KafkaRecord;
        let spec = crate::spec::PipelineSpec::from_yaml(
            "name: t
services: { kafka: { brokers: 1 } }
sources:
  tx:
    type: kafka
    topic: tx
    format: avro
    schema: { amount: double }
    event-time: _timestamp
stages:
  per_key:
    sql: |
      SELECT _key AS card, window_start, COUNT(*) AS n, SUM(amount) AS total, MAX(_offset) AS last_offset
      FROM tx WHERE _partition = 3
      GROUP BY _key, TUMBLE(_timestamp, INTERVAL '1' MINUTE)
    key: _key
sinks:
  out: { type: kafka, from: per_key, topic: out }
",
            "p.yaml",
        )
        .unwrap();
        let mut rt = crate::runtime::StageRuntime::new(&spec).await.unwrap();
        rt.assign_partitions("tx", &[3]).unwrap();
        let decoder = rt.decoder("tx").unwrap();
        let enc = AvroEncoder::new(AvroSchema::derive("tx", &rt.source_schema("tx").unwrap()).unwrap());
        let t0 = 1_704_067_200_000;
        let record = |offset: i64, key: Option<&str>, ts: Option<i64>, amount: f64| {
            let mut payload = confluent_header(1).to_vec();
            enc.encode(serde_json::json!({ "amount": amount }).as_object().unwrap(), &mut payload).unwrap();
            KafkaRecord {
                topic: "tx".into(),
                partition: 3,
                offset,
                key: key.map(|k| k.as_bytes().to_vec()),
                payload: Some(payload),
                timestamp_ms: ts,
                headers: Vec::new(),
            }
        };
        let recs = [
            record(0, Some("k1"), Some(t0 + 1_000), 1.5),
            record(1, Some("k2"), Some(t0 + 2_000), 2.0),
            record(2, Some("k1"), Some(t0 + 59_000), 3.0),
            record(3, None, Some(t0 + 61_000), 4.0),
            record(4, Some("k1"), None, 5.0),
        ];
        let decoded = decoder.decode(recs.iter());
        assert_eq!(decoded.rows, vec![0, 1, 2, 3]);
        assert_eq!(decoded.errors[0].reason, "field _timestamp: the Kafka record has no timestamp (it is required)");
        let pushed = rt.push_range("tx", 3, 0, 5, decoded.batch).await.unwrap();
        let mut rows: Vec<String> = Vec::new();
        for sb in pushed.sinks.into_iter().chain(rt.finish().await.unwrap().sinks) {
            rows.extend(to_json_rows(&sb.batch).unwrap().into_iter().map(|r| serde_json::Value::Object(r).to_string()));
        }
        rows.sort();
        assert_eq!(
            rows,
            vec![
                r#"{"card":"k1","last_offset":2,"n":2,"total":4.5,"window_start":"2024-01-01T00:00:00Z"}"#,
                r#"{"card":"k2","last_offset":1,"n":1,"total":2.0,"window_start":"2024-01-01T00:00:00Z"}"#,
                r#"{"card":null,"last_offset":3,"n":1,"total":4.0,"window_start":"2024-01-01T00:01:00Z"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn config_tests_give_the_metadata_columns_in_their_records() {
        let spec = crate::spec::PipelineSpec::from_yaml(
            "name: t
services: { kafka: { brokers: 1 } }
sources:
  tx:
    type: kafka
    topic: tx
    schema: { amount: double }
    event-time: _timestamp
stages:
  per_key:
    sql: SELECT _key, window_start, COUNT(*) AS n FROM tx GROUP BY _key, TUMBLE(_timestamp, INTERVAL '1' MINUTE)
    key: _key
sinks:
  out: { type: kafka, from: per_key, topic: out }
tests:
  - name: keys and Kafka timestamps
    inputs:
      tx:
        - { _key: a, _timestamp: '2024-01-01T00:00:01Z', amount: 1 }
        - { _key: a, _timestamp: '2024-01-01T00:00:02Z', amount: 2 }
        - { _key: b, _timestamp: '2024-01-01T00:01:02Z', amount: 2 }
    expect:
      out:
        - { _key: a, window_start: '2024-01-01T00:00:00Z', n: 2 }
        - { _key: b, window_start: '2024-01-01T00:01:00Z', n: 1 }
",
            "p.yaml",
        )
        .unwrap();
        let reports = crate::runtime::testing::run_tests(&spec).await.unwrap();
        assert!(reports[0].passed(), "{:?}", reports[0].failures);
    }
}
