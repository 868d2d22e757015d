//! Spec field types → Arrow: the schema a source's records decode into.

use crate::spec::{FieldType, Format, Source};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use smack_connectors::format::{timestamp_type, RecordFormat};
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

/// The Arrow schema of a source: its fields in declared order, all
/// nullable except the event-time field (a record without one cannot be
/// placed in time, so it does not decode).
pub fn source_schema(source: &Source) -> SchemaRef {
    let et = source.event_time();
    Arc::new(Schema::new(
        source
            .schema()
            .iter()
            .map(|(name, t)| Field::new(name, arrow_type(*t), Some(name.as_str()) != et))
            .collect::<Vec<_>>(),
    ))
}

/// The record format of a spec format; `None` for the ones not decoded yet (Avro).
pub fn record_format(f: Format) -> Option<RecordFormat> {
    match f {
        Format::Json => Some(RecordFormat::Json),
        Format::Csv => Some(RecordFormat::Csv),
        Format::Avro => None,
    }
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
            ]
        );
        assert_eq!(record_format(Format::Csv), Some(RecordFormat::Csv));
        assert_eq!(record_format(Format::Avro), None);
    }
}
