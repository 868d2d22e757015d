//! Record formats: raw record bytes (one JSON object, one CSV line, or one
//! Avro datum per record) decoded straight into an Arrow [`RecordBatch`] of a
//! given schema, and record batches encoded back, a payload per row, in any
//! of the three ([`Encoder`]: what a Kafka sink writes).
//!
//! This is the stage's hot path, so decoding builds Arrow arrays with
//! builders and never materialises a `serde_json::Value`: a JSON record is
//! walked once with a serde visitor that writes each known field into a
//! typed slot, and the slots are appended to the builders only when the
//! whole record decoded. A record that does not decode is reported with its
//! index and the reason (`field amount: expected a number, got "abc"`) so
//! the caller can dead-letter it; the good records still form the batch.
//!
//! Supported column types: `Utf8`, `Int32`, `Int64`, `Float64`, `Boolean`
//! and `Timestamp(Millisecond, _)` — the event-time representation of the
//! whole data plane (see [`timestamp_type`]). A timestamp is read from RFC 3339
//! text (`2024-01-01T00:00:05Z`, `…05.250+01:00`; no offset means UTC) or
//! from an integer of epoch milliseconds, and written as RFC 3339 in UTC.
//! A field absent from a record, or JSON `null`, or an empty CSV field, is
//! null; a non-nullable field that is null fails the record. Fields a JSON
//! record has beyond the schema are ignored.
//!
//! Avro (the binary encoding, Confluent-framed or plain) is decoded by
//! [`avro`]; see that module for the writer's schema and how its fields map
//! onto columns.
//!
//! # Kafka metadata columns
//! A schema may hold the reserved columns [`KEY_COLUMN`] (`_key`, Utf8),
//! [`TIMESTAMP_COLUMN`] (`_timestamp`, Timestamp ms), [`PARTITION_COLUMN`]
//! (`_partition`, Int32) and [`OFFSET_COLUMN`] (`_offset`, Int64)
//! ([`metadata_fields`]). They are not part of the payload: decoding Kafka
//! records ([`RawRecord`] for [`KafkaRecord`]) fills them from each record's
//! key (as UTF-8, invalid sequences replaced by U+FFFD; null without a key),
//! timestamp (null without one), partition and offset; a JSON payload's own
//! keys of those names are then ignored. Decoding bare
//! payloads (config tests, benchmarks) has no metadata: a JSON record may
//! then carry them as ordinary fields (`"_key": "c1"`), CSV and Avro leave
//! them null. A non-nullable metadata column that ends up null (the event
//! time `_timestamp` of a record without a timestamp) fails the record.

use crate::kafka::KafkaRecord;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::Arc;

pub mod avro;
mod encode;
pub use avro::{
    check_avro, is_avro_name, AvroEncoder, AvroFormat, AvroFraming, AvroMismatch, AvroSchema, AvroSchemaError,
};
pub use encode::{encode_csv, Encoder};

/// The Arrow type of every timestamp and event time in the data plane:
/// epoch milliseconds, time zone `UTC`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A record encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per record.
    Json,
    /// One CSV line per record, fields in schema order (metadata columns left out).
    Csv,
    /// One Avro datum per record (see [`avro`]).
    Avro(AvroFormat),
}

/// The reserved column of the Kafka record's key (Utf8, nullable).
pub const KEY_COLUMN: &str = "_key";
/// The reserved column of the Kafka record's timestamp (Timestamp ms).
pub const TIMESTAMP_COLUMN: &str = "_timestamp";
/// The reserved column of the Kafka record's partition (Int32).
pub const PARTITION_COLUMN: &str = "_partition";
/// The reserved column of the Kafka record's offset (Int64).
pub const OFFSET_COLUMN: &str = "_offset";

/// The reserved Kafka metadata columns, in the order sources append them;
/// all nullable (a caller may make `_timestamp` required: the event time).
pub fn metadata_fields() -> Vec<Field> {
    vec![
        Field::new(KEY_COLUMN, DataType::Utf8, true),
        Field::new(TIMESTAMP_COLUMN, timestamp_type(), true),
        Field::new(PARTITION_COLUMN, DataType::Int32, true),
        Field::new(OFFSET_COLUMN, DataType::Int64, true),
    ]
}

/// Which Kafka metadata a reserved column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metadata {
    Key,
    Timestamp,
    Partition,
    Offset,
}

impl Metadata {
    /// The metadata a column name reserves, if any.
    pub(crate) fn of(name: &str) -> Option<Metadata> {
        match name {
            KEY_COLUMN => Some(Metadata::Key),
            TIMESTAMP_COLUMN => Some(Metadata::Timestamp),
            PARTITION_COLUMN => Some(Metadata::Partition),
            OFFSET_COLUMN => Some(Metadata::Offset),
            _ => None,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Metadata::Key => Kind::Str,
            Metadata::Timestamp => Kind::Ts,
            Metadata::Partition => Kind::I32,
            Metadata::Offset => Kind::I64,
        }
    }
}

/// Where a record came from: what fills the metadata columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata<'a> {
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The timestamp, ms since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// One record given to [`Decoder::decode`]: its payload, and its Kafka
/// metadata when it has some.
pub trait RawRecord {
    /// The encoded record (empty for a tombstone).
    fn payload(&self) -> &[u8];
    /// The Kafka metadata; `None` for a bare payload.
    fn metadata(&self) -> Option<RecordMetadata<'_>> {
        None
    }
}

impl RawRecord for &[u8] {
    fn payload(&self) -> &[u8] {
        self
    }
}

impl RawRecord for &Vec<u8> {
    fn payload(&self) -> &[u8] {
        self
    }
}

impl RawRecord for &KafkaRecord {
    fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
    fn metadata(&self) -> Option<RecordMetadata<'_>> {
        Some(RecordMetadata {
            key: self.key.as_deref(),
            timestamp_ms: self.timestamp_ms,
            partition: self.partition,
            offset: self.offset,
        })
    }
}

/// The errors of this module (bad records are not errors: see [`DecodeError`]).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A schema names a column type the decoder cannot produce.
    #[error("field {field}: type {data_type} cannot be decoded; expected Utf8, Int32, Int64, Float64, Boolean or Timestamp(Millisecond)")]
    UnsupportedType {
        /// The field.
        field: String,
        /// Its type.
        data_type: DataType,
    },
    /// A reserved metadata column has another type than its metadata's.
    #[error(
        "column {field}: the name is reserved for Kafka metadata of type {expected}, but the column is {data_type}"
    )]
    MetadataType {
        /// The column.
        field: String,
        /// Its type.
        data_type: DataType,
        /// The metadata's type.
        expected: DataType,
    },
    /// A column does not fit the Avro writer's schema (see [`avro`]).
    #[error("Avro: field {field}: {reason}")]
    Avro {
        /// The column (empty when the schema as a whole is at fault).
        field: String,
        /// Why.
        reason: String,
    },
    /// Building the batch failed (a bug: the builders follow the schema).
    #[error("building the record batch: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// One record that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The record's index in the input given to [`Decoder::decode`].
    pub index: usize,
    /// What was wrong, e.g. `field amount: expected a number, got "abc"`.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.index, self.reason)
    }
}

/// The result of decoding a set of records.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The records that decoded, in input order.
    pub batch: RecordBatch,
    /// For each row of `batch`, the index of its record in the input.
    pub rows: Vec<usize>,
    /// The records that did not decode, in input order.
    pub errors: Vec<DecodeError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    I32,
    I64,
    F64,
    Bool,
    Ts,
}

impl Kind {
    fn of(field: &Field) -> Result<Kind, FormatError> {
        Ok(match field.data_type() {
            DataType::Utf8 => Kind::Str,
            DataType::Int32 => Kind::I32,
            DataType::Int64 => Kind::I64,
            DataType::Float64 => Kind::F64,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(TimeUnit::Millisecond, _) => Kind::Ts,
            other => {
                return Err(FormatError::UnsupportedType { field: field.name().clone(), data_type: other.clone() })
            }
        })
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::I32 => "a 32-bit integer",
            Kind::I64 => "an integer",
            Kind::F64 => "a number",
            Kind::Bool => "true or false",
            Kind::Ts => "an RFC 3339 timestamp or epoch milliseconds",
        }
    }
}

/// One field's value in the record being decoded.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A range of the decoder's string scratch buffer.
    Str(usize, usize),
}

enum ColBuilder {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
}

/// Decodes raw records of one format into batches of one Arrow schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    format: RecordFormat,
    schema: SchemaRef,
    kinds: Vec<Kind>,
    names: HashMap<String, usize>,
    /// `names` without the metadata columns: the JSON keys read from a
    /// Kafka record's payload (its metadata fills those columns).
    payload_names: HashMap<String, usize>,
    /// The columns read from the payload (all but the metadata ones), in order.
    payload_columns: Vec<usize>,
    /// The metadata columns and what fills them.
    metadata: Vec<(usize, Metadata)>,
    avro: Option<Arc<avro::AvroReader>>,
}

impl Decoder {
    /// A decoder for `format` into `schema`; fails when a column's type
    /// cannot be decoded, a reserved metadata column has the wrong type, or
    /// (Avro) a column does not fit the writer's schema.
    pub fn new(format: RecordFormat, schema: SchemaRef) -> Result<Decoder, FormatError> {
        let kinds = schema.fields().iter().map(|f| Kind::of(f)).collect::<Result<Vec<_>, _>>()?;
        let names = schema.fields().iter().enumerate().map(|(i, f)| (f.name().clone(), i)).collect();
        let mut payload_columns = Vec::new();
        let mut metadata = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            match Metadata::of(f.name()) {
                Some(m) => {
                    let expected =
                        metadata_fields().into_iter().find(|x| x.name() == f.name()).map(|x| x.data_type().clone());
                    if m.kind() != kinds[i] {
                        return Err(FormatError::MetadataType {
                            field: f.name().clone(),
                            data_type: f.data_type().clone(),
                            expected: expected.unwrap_or(DataType::Null),
                        });
                    }
                    metadata.push((i, m));
                }
                None => payload_columns.push(i),
            }
        }
        let avro = match &format {
            RecordFormat::Avro(a) => Some(Arc::new(avro::AvroReader::new(a, &schema)?)),
            _ => None,
        };
        let payload_names = payload_columns.iter().map(|i| (schema.field(*i).name().clone(), *i)).collect();
        Ok(Decoder { format, schema, kinds, names, payload_names, payload_columns, metadata, avro })
    }

    /// The schema of the batches this decoder builds.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes `records`; good ones form the batch, bad ones are reported.
    /// Records with Kafka metadata fill the metadata columns.
    pub fn decode<R, I>(&self, records: I) -> Decoded
    where
        R: RawRecord,
        I: IntoIterator<Item = R>,
    {
        let records = records.into_iter();
        let capacity = records.size_hint().0;
        let mut builders: Vec<ColBuilder> = self
            .schema
            .fields()
            .iter()
            .zip(&self.kinds)
            .map(|(f, k)| match k {
                Kind::Str => ColBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 8)),
                Kind::I32 => ColBuilder::I32(Int32Builder::with_capacity(capacity)),
                Kind::I64 => ColBuilder::I64(Int64Builder::with_capacity(capacity)),
                Kind::F64 => ColBuilder::F64(Float64Builder::with_capacity(capacity)),
                Kind::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
                Kind::Ts => {
                    let tz = match f.data_type() {
                        DataType::Timestamp(_, tz) => tz.clone(),
                        _ => None,
                    };
                    ColBuilder::Ts(TimestampMillisecondBuilder::with_capacity(capacity).with_timezone_opt(tz))
                }
            })
            .collect();
        let mut slots = vec![Slot::Null; self.kinds.len()];
        let mut buf = String::new();
        let mut rows = Vec::with_capacity(capacity);
        let mut errors = Vec::new();
        for (index, record) in records.enumerate() {
            slots.iter_mut().for_each(|s| *s = Slot::Null);
            buf.clear();
            let payload = record.payload();
            let meta = record.metadata();
            let result = match &self.format {
                RecordFormat::Json => {
                    let names = if meta.is_some() { &self.payload_names } else { &self.names };
                    self.json_record(payload, names, &mut slots, &mut buf)
                }
                RecordFormat::Csv => self.csv_record(payload, &mut slots, &mut buf),
                RecordFormat::Avro(_) => match &self.avro {
                    Some(a) => a.record(payload, &mut slots, &mut buf),
                    None => Err("no Avro reader (a bug)".into()),
                },
            }
            .and_then(|()| {
                if let Some(meta) = &meta {
                    self.fill_metadata(meta, &mut slots, &mut buf);
                }
                self.check_nulls(&slots)
            });
            match result {
                Ok(()) => {
                    append(&mut builders, &slots, &buf);
                    rows.push(index);
                }
                Err(reason) => errors.push(DecodeError { index, reason }),
            }
        }
        let columns: Vec<ArrayRef> = builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    ColBuilder::Str(mut b) => Arc::new(b.finish()),
                    ColBuilder::I32(mut b) => Arc::new(b.finish()),
                    ColBuilder::I64(mut b) => Arc::new(b.finish()),
                    ColBuilder::F64(mut b) => Arc::new(b.finish()),
                    ColBuilder::Bool(mut b) => Arc::new(b.finish()),
                    ColBuilder::Ts(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch = match RecordBatch::try_new(self.schema.clone(), columns) {
            Ok(b) => b,
            // The builders follow the schema and nullability was checked per
            // record, so this cannot happen; keep the errors rather than panic.
            Err(e) => {
                let reason = format!("building the batch: {e}");
                errors.extend(rows.drain(..).map(|index| DecodeError { index, reason: reason.clone() }));
                errors.sort_by_key(|e| e.index);
                RecordBatch::new_empty(self.schema.clone())
            }
        };
        Decoded { batch, rows, errors }
    }

    /// Overwrites the metadata columns with a Kafka record's metadata.
    fn fill_metadata(&self, meta: &RecordMetadata<'_>, slots: &mut [Slot], buf: &mut String) {
        for (col, m) in &self.metadata {
            slots[*col] = match m {
                Metadata::Key => match meta.key {
                    Some(k) => {
                        let start = buf.len();
                        buf.push_str(&String::from_utf8_lossy(k));
                        Slot::Str(start, buf.len())
                    }
                    None => Slot::Null,
                },
                Metadata::Timestamp => meta.timestamp_ms.map_or(Slot::Null, Slot::Int),
                Metadata::Partition => Slot::Int(meta.partition as i64),
                Metadata::Offset => Slot::Int(meta.offset),
            };
        }
    }

    fn check_nulls(&self, slots: &[Slot]) -> Result<(), String> {
        for (f, s) in self.schema.fields().iter().zip(slots) {
            if matches!(s, Slot::Null) && !f.is_nullable() {
                if f.name() == TIMESTAMP_COLUMN {
                    return Err(format!("field {}: the Kafka record has no timestamp (it is required)", f.name()));
                }
                return Err(format!("field {}: missing (it is required)", f.name()));
            }
        }
        Ok(())
    }

    fn json_record(
        &self,
        record: &[u8],
        names: &HashMap<String, usize>,
        slots: &mut [Slot],
        buf: &mut String,
    ) -> Result<(), String> {
        let mut reason = None;
        let seed = RecordSeed { dec: self, names, slots, buf, reason: &mut reason };
        let mut de = serde_json::Deserializer::from_slice(record);
        let result = seed.deserialize(&mut de).and_then(|()| de.end());
        match (result, reason) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(reason)) => Err(reason),
            (Err(e), None) => Err(format!("invalid JSON: {e}")),
        }
    }

    fn csv_record(&self, record: &[u8], slots: &mut [Slot], buf: &mut String) -> Result<(), String> {
        let line = std::str::from_utf8(record).map_err(|e| format!("not UTF-8: {e}"))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields: Vec<(String, bool)> = Vec::with_capacity(self.payload_columns.len());
        split_csv(line, &mut fields)?;
        if fields.len() != self.payload_columns.len() {
            return Err(format!(
                "expected {} comma-separated fields ({}), got {}",
                self.payload_columns.len(),
                self.payload_columns
                    .iter()
                    .map(|i| self.schema.field(*i).name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                fields.len()
            ));
        }
        for (&i, (text, quoted)) in self.payload_columns.iter().zip(fields.iter()) {
            if text.is_empty() && !quoted {
                continue;
            }
            let name = self.schema.field(i).name();
            let kind = self.kinds[i];
            let got = || format!("field {name}: expected {}, got {text:?}", kind.expected());
            slots[i] = match kind {
                Kind::Str => {
                    let start = buf.len();
                    buf.push_str(text);
                    Slot::Str(start, buf.len())
                }
                Kind::I32 => Slot::Int(text.trim().parse::<i32>().map_err(|_| got())? as i64),
                Kind::I64 => Slot::Int(text.trim().parse::<i64>().map_err(|_| got())?),
                Kind::F64 => Slot::Float(text.trim().parse::<f64>().map_err(|_| got())?),
                Kind::Bool => match text.trim() {
                    "true" => Slot::Bool(true),
                    "false" => Slot::Bool(false),
                    _ => return Err(got()),
                },
                Kind::Ts => {
                    let t = text.trim();
                    match t.parse::<i64>() {
                        Ok(ms) => Slot::Int(ms),
                        Err(_) => Slot::Int(parse_timestamp(t).ok_or_else(got)?),
                    }
                }
            };
        }
        Ok(())
    }
}

fn append(builders: &mut [ColBuilder], slots: &[Slot], buf: &str) {
    for (b, s) in builders.iter_mut().zip(slots) {
        match (b, *s) {
            (ColBuilder::Str(b), Slot::Str(from, to)) => b.append_value(&buf[from..to]),
            (ColBuilder::I32(b), Slot::Int(v)) => b.append_value(v as i32),
            (ColBuilder::I64(b), Slot::Int(v)) => b.append_value(v),
            (ColBuilder::Ts(b), Slot::Int(v)) => b.append_value(v),
            (ColBuilder::F64(b), Slot::Float(v)) => b.append_value(v),
            (ColBuilder::Bool(b), Slot::Bool(v)) => b.append_value(v),
            (ColBuilder::Str(b), _) => b.append_null(),
            (ColBuilder::I32(b), _) => b.append_null(),
            (ColBuilder::I64(b), _) => b.append_null(),
            (ColBuilder::Ts(b), _) => b.append_null(),
            (ColBuilder::F64(b), _) => b.append_null(),
            (ColBuilder::Bool(b), _) => b.append_null(),
        }
    }
}

/// Splits one CSV line (RFC 4180 quoting: `"a ""b"", c"`) into its fields,
/// each with whether it was quoted.
fn split_csv(line: &str, out: &mut Vec<(String, bool)>) -> Result<(), String> {
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("field {}: unterminated quoted field", out.len() + 1)),
                }
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(c) => {
                    return Err(format!("field {}: expected `,` after a quoted field, got {c:?}", out.len() + 1))
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        out.push((field, quoted));
        match chars.next() {
            Some(',') => continue,
            _ => return Ok(()),
        }
    }
}

struct RecordSeed<'a> {
    dec: &'a Decoder,
    names: &'a HashMap<String, usize>,
    slots: &'a mut [Slot],
    buf: &'a mut String,
    reason: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key_seed(KeySeed(self.names))? {
            match field {
                Some(i) => map.next_value_seed(ValueSeed {
                    name: self.dec.schema.field(i).name(),
                    kind: self.dec.kinds[i],
                    slot: &mut self.slots[i],
                    buf: self.buf,
                    reason: self.reason,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        *self.reason = Some("expected a JSON object, got an array".into());
        Err(de::Error::custom("not an object"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        *self.reason = Some(format!("expected a JSON object, got {v:?}"));
        Err(E::custom("not an object"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        *self.reason = Some(format!("expected a JSON object, got {v}"));
        Err(E::custom("not an object"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_i64(v as i64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        *self.reason = Some(format!("expected a JSON object, got {v}"));
        Err(E::custom("not an object"))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        *self.reason = Some(format!("expected a JSON object, got {v}"));
        Err(E::custom("not an object"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        *self.reason = Some("expected a JSON object, got null".into());
        Err(E::custom("not an object"))
    }
}

/// A JSON key → the schema field's index, or `None` for an unknown key.
struct KeySeed<'a>(&'a HashMap<String, usize>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(v).copied())
    }
}

/// One field's JSON value → its slot, or the reason it does not fit.
struct ValueSeed<'a> {
    name: &'a str,
    kind: Kind,
    slot: &'a mut Slot,
    buf: &'a mut String,
    reason: &'a mut Option<String>,
}

impl ValueSeed<'_> {
    fn wrong<E: de::Error>(self, got: String) -> Result<(), E> {
        *self.reason = Some(format!("field {}: expected {}, got {got}", self.name, self.kind.expected()));
        Err(E::custom("wrong type"))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.kind.expected())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.kind {
            Kind::Str => {
                let start = self.buf.len();
                self.buf.push_str(v);
                *self.slot = Slot::Str(start, self.buf.len());
                Ok(())
            }
            Kind::Ts => match parse_timestamp(v) {
                Some(ms) => {
                    *self.slot = Slot::Int(ms);
                    Ok(())
                }
                None => self.wrong(format!("{v:?}")),
            },
            _ => self.wrong(format!("{v:?}")),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.kind {
            Kind::I32 if i32::try_from(v).is_err() => self.wrong(format!("{v}, out of range")),
            Kind::I32 | Kind::I64 | Kind::Ts => {
                *self.slot = Slot::Int(v);
                Ok(())
            }
            Kind::F64 => {
                *self.slot = Slot::Float(v as f64);
                Ok(())
            }
            _ => self.wrong(v.to_string()),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) if self.kind == Kind::F64 => {
                *self.slot = Slot::Float(v as f64);
                Ok(())
            }
            Err(_) => self.wrong(format!("{v}, out of range")),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.kind {
            Kind::F64 => {
                *self.slot = Slot::Float(v);
                Ok(())
            }
            _ => self.wrong(v.to_string()),
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.kind {
            Kind::Bool => {
                *self.slot = Slot::Bool(v);
                Ok(())
            }
            _ => self.wrong(v.to_string()),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        *self.slot = Slot::Null;
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.wrong("an object".into())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.wrong("an array".into())
    }
}

// ---------------------------------------------------------------------------
// Timestamps

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses RFC 3339 text (`2024-01-01T00:00:05Z`, `2024-01-01 00:00:05.25+01:00`;
/// without an offset the time is UTC) into epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as i64))
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)? as u32, num(8, 2)? as u32);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Formats epoch milliseconds as RFC 3339 in UTC: `2024-01-01T00:00:05Z`,
/// with `.250` when there are milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_timestamp(&mut s, ms);
    s
}

fn write_timestamp(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, frac) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
    out.push('Z');
}

// ---------------------------------------------------------------------------
// Encoding

/// Encodes each row of `batch` as one JSON object (`{"column": value, …}`),
/// columns in schema order. Timestamps become RFC 3339 text in UTC, dates
/// `YYYY-MM-DD`; non-finite floats become `null`; other types their
/// Arrow display text.
pub fn encode_json(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, FormatError> {
    let encoders = column_encoders(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let mut buf = Vec::with_capacity(64 * encoders.len());
        buf.push(b'{');
        for (i, (name, enc)) in encoders.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(name);
            buf.push(b':');
            enc.write(row, &mut buf, &mut text)?;
        }
        buf.push(b'}');
        out.push(buf);
    }
    Ok(out)
}

/// The rows of `batch` as JSON maps, e.g. to compare or print them.
pub fn to_json_rows(batch: &RecordBatch) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, FormatError> {
    encode_json(batch)?
        .into_iter()
        .map(|b| {
            serde_json::from_slice(&b).map_err(|e| {
                FormatError::Arrow(datafusion::arrow::error::ArrowError::JsonError(format!("re-reading a row: {e}")))
            })
        })
        .collect()
}

enum ColEncoder<'a> {
    Str(&'a dyn Array, fn(&dyn Array, usize) -> &str),
    Int(&'a dyn Array, fn(&dyn Array, usize) -> i64),
    UInt(&'a dyn Array, fn(&dyn Array, usize) -> u64),
    Float(&'a dyn Array, fn(&dyn Array, usize) -> f64),
    Bool(&'a dyn Array),
    /// The divisor to epoch milliseconds (negative: a multiplier).
    Ts(&'a dyn Array, i64),
    Date(&'a dyn Array),
    Null,
    Display(&'a dyn Array, datafusion::arrow::util::display::ArrayFormatter<'a>),
}

fn column_encoders(batch: &RecordBatch) -> Result<Vec<(Vec<u8>, ColEncoder<'_>)>, FormatError> {
    use datafusion::arrow::datatypes::*;
    let mut out = Vec::with_capacity(batch.num_columns());
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let col: &dyn Array = col.as_ref();
        let name = serde_json::to_vec(field.name()).unwrap_or_default();
        let enc = match col.data_type() {
            DataType::Null => ColEncoder::Null,
            DataType::Utf8 => ColEncoder::Str(col, |a, i| a.as_string::<i32>().value(i)),
            DataType::LargeUtf8 => ColEncoder::Str(col, |a, i| a.as_string::<i64>().value(i)),
            DataType::Utf8View => ColEncoder::Str(col, |a, i| a.as_string_view().value(i)),
            DataType::Int8 => ColEncoder::Int(col, |a, i| a.as_primitive::<Int8Type>().value(i) as i64),
            DataType::Int16 => ColEncoder::Int(col, |a, i| a.as_primitive::<Int16Type>().value(i) as i64),
            DataType::Int32 => ColEncoder::Int(col, |a, i| a.as_primitive::<Int32Type>().value(i) as i64),
            DataType::Int64 => ColEncoder::Int(col, |a, i| a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => ColEncoder::UInt(col, |a, i| a.as_primitive::<UInt8Type>().value(i) as u64),
            DataType::UInt16 => ColEncoder::UInt(col, |a, i| a.as_primitive::<UInt16Type>().value(i) as u64),
            DataType::UInt32 => ColEncoder::UInt(col, |a, i| a.as_primitive::<UInt32Type>().value(i) as u64),
            DataType::UInt64 => ColEncoder::UInt(col, |a, i| a.as_primitive::<UInt64Type>().value(i)),
            DataType::Float32 => ColEncoder::Float(col, |a, i| a.as_primitive::<Float32Type>().value(i) as f64),
            DataType::Float64 => ColEncoder::Float(col, |a, i| a.as_primitive::<Float64Type>().value(i)),
            DataType::Boolean => ColEncoder::Bool(col),
            DataType::Timestamp(unit, _) => {
                let div = match unit {
                    TimeUnit::Second => -1000,
                    TimeUnit::Millisecond => 1,
                    TimeUnit::Microsecond => 1000,
                    TimeUnit::Nanosecond => 1_000_000,
                };
                ColEncoder::Ts(col, div)
            }
            DataType::Date32 => ColEncoder::Date(col),
            _ => ColEncoder::Display(
                col,
                datafusion::arrow::util::display::ArrayFormatter::try_new(col, &Default::default())?,
            ),
        };
        out.push((name, enc));
    }
    Ok(out)
}

/// A timestamp cell in epoch milliseconds; `div` is [`ColEncoder::Ts`]'s.
fn timestamp_millis(a: &dyn Array, div: i64, row: usize) -> i64 {
    use datafusion::arrow::datatypes::*;
    let raw = match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => a.as_primitive::<TimestampSecondType>().value(row),
        DataType::Timestamp(TimeUnit::Millisecond, _) => a.as_primitive::<TimestampMillisecondType>().value(row),
        DataType::Timestamp(TimeUnit::Microsecond, _) => a.as_primitive::<TimestampMicrosecondType>().value(row),
        _ => a.as_primitive::<TimestampNanosecondType>().value(row),
    };
    if div < 0 {
        raw.saturating_mul(-div)
    } else {
        raw.div_euclid(div)
    }
}

impl ColEncoder<'_> {
    fn is_null(&self, row: usize) -> bool {
        match self {
            ColEncoder::Null => true,
            ColEncoder::Str(a, _)
            | ColEncoder::Int(a, _)
            | ColEncoder::UInt(a, _)
            | ColEncoder::Float(a, _)
            | ColEncoder::Bool(a)
            | ColEncoder::Ts(a, _)
            | ColEncoder::Date(a)
            | ColEncoder::Display(a, _) => a.is_null(row),
        }
    }

    fn write(&self, row: usize, buf: &mut Vec<u8>, text: &mut String) -> Result<(), FormatError> {
        use datafusion::arrow::datatypes::*;
        if self.is_null(row) {
            buf.extend_from_slice(b"null");
            return Ok(());
        }
        match self {
            ColEncoder::Null => {}
            ColEncoder::Str(a, get) => write_json_str(buf, get(*a, row)),
            ColEncoder::Int(a, get) => {
                let _ = write!(buf, "{}", get(*a, row));
            }
            ColEncoder::UInt(a, get) => {
                let _ = write!(buf, "{}", get(*a, row));
            }
            ColEncoder::Float(a, get) => {
                let v = get(*a, row);
                if v.is_finite() {
                    let _ = serde_json::to_writer(&mut *buf, &v);
                } else {
                    buf.extend_from_slice(b"null");
                }
            }
            ColEncoder::Bool(a) => {
                buf.extend_from_slice(if a.as_boolean().value(row) { b"true" } else { b"false" });
            }
            ColEncoder::Ts(a, div) => {
                let ms = timestamp_millis(*a, *div, row);
                text.clear();
                text.push('"');
                write_timestamp(text, ms);
                text.push('"');
                buf.extend_from_slice(text.as_bytes());
            }
            ColEncoder::Date(a) => {
                let (y, m, d) = civil_from_days(a.as_primitive::<Date32Type>().value(row) as i64);
                let _ = write!(buf, "\"{y:04}-{m:02}-{d:02}\"");
            }
            ColEncoder::Display(_, f) => {
                text.clear();
                let _ = write!(text, "{}", f.value(row));
                write_json_str(buf, text);
            }
        }
        Ok(())
    }
}

fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::Schema;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("big", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("ts", timestamp_type(), false),
        ]))
    }

    fn json(records: &[&str]) -> Decoded {
        let d = Decoder::new(RecordFormat::Json, schema()).unwrap();
        d.decode(records.iter().map(|r| r.as_bytes()))
    }

    #[test]
    fn json_records_decode_into_typed_columns() {
        let out = json(&[
            r#"{"card_id":"c1","amount":10.5,"n":3,"big":9000000000,"ok":true,"ts":"2024-01-01T00:00:01Z","extra":[1,{"a":2}]}"#,
            r#"{"ts":1704067202000,"amount":7,"card_id":"c\"2\u00e9"}"#,
        ]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.rows, vec![0, 1]);
        let b = &out.batch;
        assert_eq!(b.num_rows(), 2);
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.value(0), "c1");
        assert_eq!(ids.value(1), "c\"2é");
        let amounts = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!((amounts.value(0), amounts.value(1)), (10.5, 7.0));
        let n = b.column(2).as_any().downcast_ref::<Int32Array>().unwrap();
        assert!(n.is_valid(0) && n.is_null(1));
        assert_eq!(b.column(3).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 9_000_000_000);
        let ts = b.column(5).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!((ts.value(0), ts.value(1)), (1_704_067_201_000, 1_704_067_202_000));
    }

    #[test]
    fn bad_json_records_are_reported_and_the_good_ones_kept() {
        let out = json(&[
            r#"{"card_id":"c1","amount":"abc","ts":0}"#,
            r#"{"card_id":"c2","amount":1.0,"ts":0}"#,
            r#"{"card_id":"c3","ts":0"#,
            r#"{"card_id":"c4"}"#,
            r#"[1,2]"#,
            r#"{"n":3000000000,"ts":0}"#,
            r#"{"ts":"yesterday"}"#,
            r#"{"n":1.5,"ts":0}"#,
            r#"{"card_id":"c5","ts":0} trailing"#,
        ]);
        assert_eq!(out.rows, vec![1]);
        let reasons: Vec<(usize, &str)> = out.errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(reasons[0], (0, r#"field amount: expected a number, got "abc""#));
        assert_eq!(reasons[1].0, 2);
        assert!(reasons[1].1.starts_with("invalid JSON: EOF"), "{}", reasons[1].1);
        assert_eq!(reasons[2], (3, "field ts: missing (it is required)"));
        assert_eq!(reasons[3], (4, "expected a JSON object, got an array"));
        assert_eq!(reasons[4], (5, "field n: expected a 32-bit integer, got 3000000000, out of range"));
        assert_eq!(
            reasons[5],
            (6, r#"field ts: expected an RFC 3339 timestamp or epoch milliseconds, got "yesterday""#)
        );
        assert_eq!(reasons[6], (7, "field n: expected a 32-bit integer, got 1.5"));
        assert!(reasons[7].1.starts_with("invalid JSON: trailing characters"), "{}", reasons[7].1);
        assert_eq!(out.batch.num_rows(), 1);
    }

    #[test]
    fn csv_lines_decode_with_quotes_and_empty_fields() {
        let d = Decoder::new(RecordFormat::Csv, schema()).unwrap();
        let lines: [&[u8]; 4] = [
            b"c1,10.5,3,,true,2024-01-01T00:00:01Z\n",
            b"\"a, \"\"b\"\"\",,,,,1704067202000\r\n",
            b"c3,abc,1,1,true,0",
            b"c4,1.0",
        ];
        let out = d.decode(lines);
        assert_eq!(out.rows, vec![0, 1]);
        let ids = out.batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.value(1), "a, \"b\"");
        assert!(out.batch.column(1).is_null(1));
        assert_eq!(
            out.errors[0],
            DecodeError { index: 2, reason: r#"field amount: expected a number, got "abc""#.into() }
        );
        assert!(out.errors[1].reason.starts_with("expected 6 comma-separated fields"), "{}", out.errors[1].reason);
    }

    #[test]
    fn unsupported_types_are_refused() {
        let s = Arc::new(Schema::new(vec![Field::new("x", DataType::Date64, true)]));
        let e = Decoder::new(RecordFormat::Json, s).unwrap_err();
        assert!(e.to_string().starts_with("field x: type Date64 cannot be decoded"), "{e}");
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-01-01T00:00:01Z"), Some(1_704_067_201_000));
        assert_eq!(parse_timestamp("2024-01-01 01:00:01.5+01:00"), Some(1_704_067_201_500));
        assert_eq!(parse_timestamp("2024-02-29T00:00:00"), Some(1_709_164_800_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_timestamp("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_timestamp("2024-01-01T00:00:00X"), None);
        assert_eq!(parse_timestamp("2024-01-01"), None);
        for ms in [0, -1, 1_704_067_201_000, 1_709_164_800_123, -86_400_000 * 365 * 300 + 7] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms), "{}", format_timestamp(ms));
        }
        assert_eq!(format_timestamp(1_704_067_201_000), "2024-01-01T00:00:01Z");
        assert_eq!(format_timestamp(1_704_067_201_050), "2024-01-01T00:00:01.050Z");
    }

    fn kafka(payload: &[u8], key: Option<&[u8]>, ts: Option<i64>, offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: "t".into(),
            partition: 2,
            offset,
            key: key.map(<[u8]>::to_vec),
            payload: Some(payload.to_vec()),
            timestamp_ms: ts,
            headers: Vec::new(),
        }
    }

    fn with_metadata(fields: Vec<Field>) -> SchemaRef {
        let mut all = fields;
        all.extend(metadata_fields());
        Arc::new(Schema::new(all))
    }

    #[test]
    fn kafka_records_fill_the_metadata_columns() {
        let s = with_metadata(vec![Field::new("n", DataType::Int64, true)]);
        let d = Decoder::new(RecordFormat::Json, s.clone()).unwrap();
        let recs = [
            kafka(
                br#"{"n":1,"_key":"ignored","_offset":"not even a number"}"#,
                Some(b"k1"),
                Some(1_704_067_200_000),
                7,
            ),
            kafka(br#"{"n":2}"#, None, None, 8),
            kafka(b"{\"n\":3}", Some(&[0x66, 0xff]), Some(5), 9),
        ];
        let out = d.decode(recs.iter());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let rows = to_json_rows(&out.batch).unwrap();
        assert_eq!(
            serde_json::Value::Object(rows[0].clone()),
            serde_json::json!({"n":1,"_key":"k1","_timestamp":"2024-01-01T00:00:00Z","_partition":2,"_offset":7})
        );
        assert_eq!(rows[1]["_key"], serde_json::Value::Null);
        assert_eq!(rows[1]["_timestamp"], serde_json::Value::Null);
        assert_eq!(rows[2]["_key"], "f\u{fffd}", "an invalid UTF-8 key is read lossily");
        // Bare payloads: JSON may carry the metadata columns itself.
        let bare = d.decode([br#"{"n":1,"_key":"k9","_offset":3}"#.as_slice()]);
        let rows = to_json_rows(&bare.batch).unwrap();
        assert_eq!((&rows[0]["_key"], &rows[0]["_offset"]), (&serde_json::json!("k9"), &serde_json::json!(3)));
        // `_timestamp` as the (required) event time: a record without one fails.
        let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[2] = Field::new(TIMESTAMP_COLUMN, timestamp_type(), false);
        let d = Decoder::new(RecordFormat::Json, Arc::new(Schema::new(fields))).unwrap();
        let out = d.decode([kafka(b"{}", None, None, 0), kafka(b"{}", None, Some(1), 1)].iter());
        assert_eq!(out.rows, vec![1]);
        assert_eq!(out.errors[0].reason, "field _timestamp: the Kafka record has no timestamp (it is required)");
    }

    #[test]
    fn csv_lines_skip_the_metadata_columns_and_reserved_names_keep_their_types() {
        let s = with_metadata(vec![Field::new("a", DataType::Utf8, true), Field::new("n", DataType::Int32, true)]);
        let d = Decoder::new(RecordFormat::Csv, s).unwrap();
        let out = d.decode([kafka(b"x,3", Some(b"k"), Some(1), 4)].iter());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(to_json_rows(&out.batch).unwrap()[0]["_key"], "k");
        let bad = Arc::new(Schema::new(vec![Field::new(KEY_COLUMN, DataType::Int64, true)]));
        let e = Decoder::new(RecordFormat::Json, bad).unwrap_err().to_string();
        assert!(e.contains("reserved for Kafka metadata of type Utf8"), "{e}");
    }

    /// The Avro datum of the test schema's fields, as the derived writer
    /// schema has them (nullable → union index first), written by hand.
    fn avro_datum(id: Option<&str>, amount: Option<f64>, n: Option<i32>, ok: Option<bool>, ts: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let opt = |out: &mut Vec<u8>, present: bool| out.push(if present { 2 } else { 0 });
        opt(&mut out, id.is_some());
        if let Some(id) = id {
            avro::put_long(&mut out, id.len() as i64);
            out.extend_from_slice(id.as_bytes());
        }
        opt(&mut out, amount.is_some());
        if let Some(a) = amount {
            out.extend_from_slice(&a.to_le_bytes());
        }
        opt(&mut out, n.is_some());
        if let Some(n) = n {
            avro::put_long(&mut out, n as i64);
        }
        opt(&mut out, false); // big: null
        opt(&mut out, ok.is_some());
        if let Some(ok) = ok {
            out.push(ok as u8);
        }
        avro::put_long(&mut out, ts);
        out
    }

    fn confluent(id: u32, datum: &[u8]) -> Vec<u8> {
        let mut v = avro::confluent_header(id).to_vec();
        v.extend_from_slice(datum);
        v
    }

    #[test]
    fn avro_records_decode_with_the_derived_schema_in_both_framings() {
        let derived = AvroSchema::derive("tx", &schema()).unwrap();
        assert_eq!(
            derived.to_json()["fields"][5],
            serde_json::json!({"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}})
        );
        assert_eq!(derived.to_json()["fields"][0], serde_json::json!({"name":"card_id","type":["null","string"]}));
        let a = avro_datum(Some("c\u{e9}1"), Some(10.5), Some(-3), Some(true), 1_704_067_201_000);
        let b = avro_datum(None, None, None, None, -1);
        let plain = Decoder::new(
            RecordFormat::Avro(AvroFormat { framing: AvroFraming::Plain, ..Default::default() }),
            schema(),
        )
        .unwrap();
        let out = plain.decode([a.as_slice(), b.as_slice()]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let rows = to_json_rows(&out.batch).unwrap();
        assert_eq!(
            serde_json::Value::Object(rows[0].clone()),
            serde_json::json!({"card_id":"c\u{e9}1","amount":10.5,"n":-3,"big":null,"ok":true,"ts":"2024-01-01T00:00:01Z"})
        );
        assert_eq!(rows[1]["card_id"], serde_json::Value::Null);
        assert_eq!(rows[1]["ts"], "1969-12-31T23:59:59.999Z");
        let framed = Decoder::new(RecordFormat::Avro(AvroFormat::default()), schema()).unwrap();
        let (ca, cb) = (confluent(7, &a), confluent(7, &b));
        let again = framed.decode([ca.as_slice(), cb.as_slice()]);
        assert_eq!(again.batch, out.batch);
        // Pinned schema id.
        let pinned = AvroFormat { schema_id: Some(8), ..Default::default() };
        let out = Decoder::new(RecordFormat::Avro(pinned), schema()).unwrap().decode([ca.as_slice()]);
        assert_eq!(out.errors[0].reason, "schema id 7: expected 8 (the writer schema of the pipeline file)");
    }

    #[test]
    fn bad_avro_records_are_reported_with_the_field_and_the_good_ones_kept() {
        let d = Decoder::new(RecordFormat::Avro(AvroFormat::default()), schema()).unwrap();
        let good = confluent(1, &avro_datum(Some("c1"), Some(1.0), None, None, 0));
        let mut cut = good.clone();
        cut.truncate(9);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut bad_branch = good.clone();
        bad_branch[5] = 6; // union index 3
        let mut bad_len = good.clone();
        bad_len[6] = 3; // string length -2
        let mut bad_bool = confluent(1, &avro_datum(None, None, None, Some(true), 0));
        bad_bool[10] = 2;
        let records: Vec<&[u8]> =
            vec![&good, b"{\"json\":1}", &[0, 0, 1], &cut, &trailing, &bad_branch, &bad_len, &bad_bool, &[]];
        let out = d.decode(records);
        assert_eq!(out.rows, vec![0]);
        let reasons: Vec<&str> = out.errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                "first byte 0x7b: expected the Confluent magic byte 0",
                "3 byte(s): shorter than the Confluent header (magic byte 0 and a 4-byte schema id)",
                "field amount: the record ended at byte 4 (a number expected)",
                "1 byte(s) left after the Avro record",
                "field card_id: union branch 3 out of range (the union has 2)",
                "field card_id: negative length -2 at byte 2",
                "field ok: boolean byte 2, expected 0 or 1",
                "0 byte(s): shorter than the Confluent header (magic byte 0 and a 4-byte schema id)",
            ]
        );
    }

    #[test]
    fn an_explicit_writer_schema_is_read_by_name_skipping_other_fields() {
        let writer = AvroSchema::parse(
            r#"{"type":"record","name":"Tx","fields":[
                {"name":"extra","type":{"type":"array","items":{"type":"map","values":"string"}}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
                {"name":"card_id","type":{"type":"enum","name":"Card","symbols":["A","B"]}},
                {"name":"blob","type":["null",{"type":"fixed","name":"F","size":3}]},
                {"name":"amount","type":"float"},
                {"name":"n","type":["null","int"]},
                {"name":"big","type":"int"},
                {"name":"ok","type":"boolean"},
                {"name":"rec","type":{"type":"record","name":"In","fields":[{"name":"x","type":"bytes"}]}}]}"#,
        )
        .unwrap();
        let mut d = Vec::new();
        // extra: one block of 1 map {"k": "v"}, then a block by size, then the end.
        avro::put_long(&mut d, 1);
        avro::put_long(&mut d, 1);
        for s in ["k", "v"] {
            avro::put_long(&mut d, 1);
            d.extend_from_slice(s.as_bytes());
        }
        avro::put_long(&mut d, 0);
        avro::put_long(&mut d, -1);
        avro::put_long(&mut d, 1);
        d.push(0);
        avro::put_long(&mut d, 0);
        avro::put_long(&mut d, 1_704_067_201_123_456); // ts (µs)
        avro::put_long(&mut d, 1); // card_id: B
        avro::put_long(&mut d, 1);
        d.extend_from_slice(b"xyz"); // blob
        d.extend_from_slice(&2.5f32.to_le_bytes());
        avro::put_long(&mut d, 0); // n: null
        avro::put_long(&mut d, 42); // big
        d.push(1);
        avro::put_long(&mut d, 2);
        d.extend_from_slice(b"zz"); // rec
        let fmt = AvroFormat { framing: AvroFraming::Plain, writer: Some(writer.clone()), schema_id: None };
        let out = Decoder::new(RecordFormat::Avro(fmt), schema()).unwrap().decode([d.as_slice()]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            serde_json::Value::Object(to_json_rows(&out.batch).unwrap()[0].clone()),
            serde_json::json!({"card_id":"B","amount":2.5,"n":null,"big":42,"ok":true,"ts":"2024-01-01T00:00:01.123Z"})
        );
        // Misfits: a missing field, a type that does not fit.
        let narrow = AvroSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"card_id","type":"long"},{"name":"amount","type":"double"}]}"#,
        )
        .unwrap();
        let m = check_avro(&narrow, &schema());
        assert_eq!(
            m[0],
            AvroMismatch { field: "card_id".into(), reason: "the Avro field is long; expected string or enum".into() }
        );
        assert_eq!(m[1].field, "n");
        assert_eq!(m[1].reason, "not a field of the Avro record, which has card_id, amount");
        assert_eq!(m.len(), 5);
        let fmt = AvroFormat { writer: Some(narrow), ..Default::default() };
        let e = Decoder::new(RecordFormat::Avro(fmt), schema()).unwrap_err().to_string();
        assert_eq!(e, "Avro: field card_id: the Avro field is long; expected string or enum");
    }

    #[test]
    fn the_avro_encoder_writes_what_the_decoder_reads() {
        let enc = AvroEncoder::new(AvroSchema::derive("tx", &schema()).unwrap());
        let rec = serde_json::json!({"card_id":"c1","amount":7,"n":3,"ok":false,"ts":"2024-01-01T00:00:01Z"});
        let mut out = avro::confluent_header(3).to_vec();
        enc.encode(rec.as_object().unwrap(), &mut out).unwrap();
        let d = Decoder::new(RecordFormat::Avro(AvroFormat::default()), schema()).unwrap();
        let got = d.decode([out.as_slice()]);
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        assert_eq!(to_json_rows(&got.batch).unwrap()[0]["amount"], 7.0);
        let e = enc.encode(serde_json::json!({"n": "x", "ts": 0}).as_object().unwrap(), &mut Vec::new()).unwrap_err();
        assert!(e.starts_with("field n: expected"), "{e}");
    }

    #[test]
    fn batches_encode_to_json_objects() {
        let out =
            json(&[r#"{"card_id":"c\"1","amount":10.5,"n":3,"ok":false,"ts":"2024-01-01T00:00:01Z"}"#, r#"{"ts":0}"#]);
        let rows = encode_json(&out.batch).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"card_id":"c\"1","amount":10.5,"n":3,"big":null,"ok":false,"ts":"2024-01-01T00:00:01Z"}"#
        );
        assert_eq!(
            String::from_utf8(rows[1].clone()).unwrap(),
            r#"{"card_id":null,"amount":null,"n":null,"big":null,"ok":null,"ts":"1970-01-01T00:00:00Z"}"#
        );
        // Decoding what was encoded gives the same batch back.
        let again = json(&rows.iter().map(|r| std::str::from_utf8(r).unwrap()).collect::<Vec<_>>());
        assert_eq!(again.batch, out.batch);
        assert_eq!(to_json_rows(&out.batch).unwrap()[0]["amount"], serde_json::json!(10.5));
    }
}
