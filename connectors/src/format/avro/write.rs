//! Avro records written from Arrow record batches, one datum per row: what
//! a Kafka sink with `format: avro` produces. The writer's schema is
//! derived from the batch's columns ([`AvroSchema::of_rows`]) or given, in
//! which case every column must be one of its fields with the type the
//! column is written as.
//!
//! | column | Avro type written |
//! | --- | --- |
//! | Utf8, LargeUtf8, Utf8View | `string` |
//! | Int8, Int16, Int32, UInt8, UInt16 | `int` |
//! | Int64, UInt32, UInt64 | `long` (a UInt64 above the long range fails the row) |
//! | Float32 | `float` |
//! | Float64 | `double` |
//! | Boolean | `boolean` |
//! | Timestamp (any unit) | `long` with logical type `timestamp-millis` (floored to ms) |
//! | Null | `null` |
//! | Date32 | `string` `YYYY-MM-DD` |
//! | anything else | `string`, Arrow's display text |
//!
//! A nullable column's type is the union `["null", T]`: branch 0 for a
//! null cell, 1 for a value.

use super::super::{civil_from_days, column_encoders, timestamp_millis, ColEncoder, FormatError};
use super::{put_long, AvroFormat, AvroFraming, AvroSchema, Named, Ty, CONFLUENT_HEADER_LEN};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use std::fmt::Write as _;

/// Whether `s` is an Avro name: a letter or `_`, then letters, digits and `_`.
pub fn is_avro_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Avro type a column of type `dt` is written as (never a union).
fn row_ty(dt: &DataType) -> Ty {
    match dt {
        DataType::Null => Ty::Null,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ty::String,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => Ty::Int,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Ty::Long,
        DataType::Float32 => Ty::Float,
        DataType::Float64 => Ty::Double,
        DataType::Boolean => Ty::Boolean,
        DataType::Timestamp(_, _) => Ty::TimestampMillis,
        _ => Ty::String,
    }
}

fn err(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::Avro { field: field.to_string(), reason: reason.into() }
}

impl AvroSchema {
    /// The writer's schema of rows of `schema` as a sink writes them: a
    /// record named `name` with one field per column, in order, the Kafka
    /// metadata columns included; types as in the table of
    /// [this module](self). Fails on a name that is not an Avro name
    /// (`count(*)`: alias it in SQL) or a column named twice.
    pub fn of_rows(name: &str, schema: &Schema) -> Result<AvroSchema, FormatError> {
        if name.is_empty() || !name.split('.').all(is_avro_name) {
            return Err(err(
                "",
                format!("`{name}` is not an Avro record name (letters, digits and `_`, not starting with a digit)"),
            ));
        }
        let mut fields: Vec<(String, Ty)> = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            if !is_avro_name(f.name()) {
                return Err(err(
                    f.name(),
                    "not an Avro field name (letters, digits and `_`, not starting with a digit); give the column a name with `AS` in SQL",
                ));
            }
            if fields.iter().any(|(n, _)| n == f.name()) {
                return Err(err(f.name(), "two columns have this name; an Avro record holds each field once"));
            }
            let t = row_ty(f.data_type());
            let t = if f.is_nullable() && t != Ty::Null { Ty::Union(vec![Ty::Null, t]) } else { t };
            fields.push((f.name().clone(), t));
        }
        Ok(AvroSchema { named: vec![Named::Record { name: name.to_string(), fields }], root: 0 })
    }
}

/// How one writer field is written.
#[derive(Debug, Clone)]
struct FieldWrite {
    name: String,
    /// The column it is read from.
    col: usize,
    /// The type of the value (not a union).
    ty: Ty,
    /// Within a union: the branch of a null cell, and of a value.
    branches: Option<(Option<i64>, i64)>,
}

/// Writes the rows of batches with one column layout as Avro records.
#[derive(Debug, Clone)]
pub(in crate::format) struct AvroWriter {
    schema: AvroSchema,
    header: Option<[u8; CONFLUENT_HEADER_LEN]>,
    /// The column types the writer was built for (shown in messages).
    columns: Vec<DataType>,
    fields: Vec<FieldWrite>,
}

impl AvroWriter {
    /// The writer for rows of `schema`: the writer's schema is
    /// `format.writer`, or [`AvroSchema::of_rows`] named `record`. The
    /// Confluent framing needs `format.schema_id` (the id written in each
    /// header); the plain framing takes none.
    pub(in crate::format) fn new(format: &AvroFormat, schema: &Schema) -> Result<AvroWriter, FormatError> {
        let header = match (format.framing, format.schema_id) {
            (AvroFraming::Confluent, Some(id)) => Some(super::confluent_header(id)),
            (AvroFraming::Confluent, None) => {
                return Err(err("", "the Confluent framing needs the schema id to write in each record's header"))
            }
            (AvroFraming::Plain, None) => None,
            (AvroFraming::Plain, Some(_)) => {
                return Err(err("", "a schema id is part of the Confluent framing; the plain framing has none"))
            }
        };
        let writer = match &format.writer {
            Some(w) => w.clone(),
            None => AvroSchema::of_rows("record", schema)?,
        };
        for f in schema.fields() {
            if !writer.fields().iter().any(|(n, _)| n == f.name()) {
                return Err(err(
                    f.name(),
                    format!("not a field of the writer's schema, which has {}", writer.field_names().join(", ")),
                ));
            }
        }
        let mut fields = Vec::with_capacity(writer.fields().len());
        for (name, t) in writer.fields() {
            let Some(col) = schema.fields().iter().position(|f| f.name() == name) else {
                return Err(err(name, "a field of the writer's schema that no column fills"));
            };
            let ty = row_ty(schema.field(col).data_type());
            let branches = match t {
                t if *t == ty => None,
                Ty::Union(bs) => match bs.iter().position(|b| *b == ty) {
                    Some(v) => Some((bs.iter().position(|b| *b == Ty::Null).map(|n| n as i64), v as i64)),
                    None => return Err(mismatch(&writer, name, t, &ty, schema.field(col).data_type())),
                },
                _ => return Err(mismatch(&writer, name, t, &ty, schema.field(col).data_type())),
            };
            fields.push(FieldWrite { name: name.clone(), col, ty, branches });
        }
        let columns = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        Ok(AvroWriter { schema: writer, header, columns, fields })
    }

    /// The writer's schema.
    pub(in crate::format) fn schema(&self) -> &AvroSchema {
        &self.schema
    }

    /// One record per row of `batch`, whose columns must be written as the
    /// same Avro types as those this writer was built for (a timestamp's
    /// unit or time zone may differ).
    pub(in crate::format) fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, FormatError> {
        let schema = batch.schema();
        let got: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        if got.len() != self.columns.len() || got.iter().zip(&self.columns).any(|(a, b)| row_ty(a) != row_ty(b)) {
            return Err(err(
                "",
                format!(
                    "the batch's column types ({}) are not the ones the writer's schema was derived from ({})",
                    got.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
                    self.columns.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let encoders = column_encoders(batch)?;
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut text = String::new();
        for row in 0..batch.num_rows() {
            let mut buf = Vec::with_capacity(16 + 12 * self.fields.len());
            if let Some(h) = &self.header {
                buf.extend_from_slice(h);
            }
            for f in &self.fields {
                let enc = &encoders[f.col].1;
                if enc.is_null(row) {
                    match (f.branches, &f.ty) {
                        (_, Ty::Null) => {}
                        (Some((Some(n), _)), _) => put_long(&mut buf, n),
                        _ => {
                            return Err(err(
                                &f.name,
                                format!("row {row} is null, but the writer's type of the field has no null"),
                            ))
                        }
                    }
                    continue;
                }
                if let Some((_, v)) = f.branches {
                    put_long(&mut buf, v);
                }
                write_value(f, enc, row, &mut buf, &mut text)?;
            }
            out.push(buf);
        }
        Ok(out)
    }
}

fn mismatch(writer: &AvroSchema, name: &str, t: &Ty, ty: &Ty, dt: &DataType) -> FormatError {
    err(
        name,
        format!(
            "the writer's type is {}, but the column ({dt}) is written as {}",
            writer.describe(t),
            writer.describe(ty)
        ),
    )
}

fn write_value(
    f: &FieldWrite,
    enc: &ColEncoder<'_>,
    row: usize,
    buf: &mut Vec<u8>,
    text: &mut String,
) -> Result<(), FormatError> {
    let put_str = |buf: &mut Vec<u8>, s: &str| {
        put_long(buf, s.len() as i64);
        buf.extend_from_slice(s.as_bytes());
    };
    match (&f.ty, enc) {
        (Ty::Null, _) => {}
        (Ty::String, ColEncoder::Str(a, get)) => put_str(buf, get(*a, row)),
        (Ty::String, ColEncoder::Date(a)) => {
            let days = a.as_primitive::<datafusion::arrow::datatypes::Date32Type>().value(row);
            let (y, m, d) = civil_from_days(days as i64);
            text.clear();
            let _ = write!(text, "{y:04}-{m:02}-{d:02}");
            put_str(buf, text);
        }
        (Ty::String, ColEncoder::Display(_, fmt)) => {
            text.clear();
            let _ = write!(text, "{}", fmt.value(row));
            put_str(buf, text);
        }
        (Ty::Int | Ty::Long, ColEncoder::Int(a, get)) => put_long(buf, get(*a, row)),
        (Ty::Int | Ty::Long, ColEncoder::UInt(a, get)) => {
            let v = get(*a, row);
            let v = i64::try_from(v).map_err(|_| err(&f.name, format!("row {row}: {v} is beyond Avro's long")))?;
            put_long(buf, v);
        }
        (Ty::Float, ColEncoder::Float(a, get)) => buf.extend_from_slice(&(get(*a, row) as f32).to_le_bytes()),
        (Ty::Double, ColEncoder::Float(a, get)) => buf.extend_from_slice(&get(*a, row).to_le_bytes()),
        (Ty::Boolean, ColEncoder::Bool(a)) => buf.push(a.as_boolean().value(row) as u8),
        (Ty::TimestampMillis, ColEncoder::Ts(a, div)) => put_long(buf, timestamp_millis(*a, *div, row)),
        (t, _) => {
            // `row_ty` and `column_encoders` follow the same column types.
            return Err(err(&f.name, format!("no way to write this column as {t:?} (a bug)")));
        }
    }
    Ok(())
}
