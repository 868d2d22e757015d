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
            let options = source.avro.clone().unwrap_or(AvroOptions {
                wire_format: AvroWireFormat::Confluent,
                schema: None,
                schema_id: None,
            });
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
}
