//! Record batches encoded for a Kafka sink: one payload per row, in the
//! sink's [`RecordFormat`].
//!
//! - JSON: one object per row ([`encode_json`](super::encode_json)).
//! - CSV: one header-less line per row, columns in the batch's order
//!   ([`encode_csv`]). A null cell is an empty field; an empty string is
//!   `""`; a field holding `,`, `"`, CR or LF is quoted with `"` and its
//!   quotes doubled (RFC 4180). Timestamps are RFC 3339 in UTC, dates
//!   `YYYY-MM-DD`, non-finite floats empty (as JSON's `null`), other types
//!   their Arrow display text. No line ends: the record is the line.
//! - Avro: one binary datum per row, Confluent-framed with the schema id
//!   given, or plain; the writer's schema is derived from the columns (see
//!   [`avro`](super::avro)'s `write` module for the types).
//!
//! What these write, [`Decoder`](super::Decoder) reads back: the same
//! batch, for the column types it decodes.

use super::avro::AvroWriter;
use super::{column_encoders, write_timestamp, AvroSchema, ColEncoder, FormatError, RecordFormat};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Date32Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::fmt::Write as _;

/// Encodes record batches of one schema in one format, a payload per row.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: RecordFormat,
    schema: SchemaRef,
    avro: Option<AvroWriter>,
}

impl Encoder {
    /// An encoder of rows of `schema` in `format`. For Avro, the writer's
    /// schema is `writer` if given (every column must be one of its fields
    /// with the type it is written as), otherwise
    /// [`AvroSchema::of_rows`] with the record name `record`; the
    /// Confluent framing needs the schema id to write, the plain framing
    /// takes none. Fails, naming the column, when Avro cannot hold it.
    pub fn new(format: RecordFormat, schema: SchemaRef) -> Result<Encoder, FormatError> {
        let avro = match &format {
            RecordFormat::Avro(a) => Some(AvroWriter::new(a, &schema)?),
            RecordFormat::Json | RecordFormat::Csv => None,
        };
        Ok(Encoder { format, schema, avro })
    }

    /// The format written.
    pub fn format(&self) -> &RecordFormat {
        &self.format
    }

    /// The schema of the rows this encoder was built for.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// With Avro: the writer's schema (what a consumer reads records with).
    pub fn avro_schema(&self) -> Option<&AvroSchema> {
        self.avro.as_ref().map(AvroWriter::schema)
    }

    /// One payload per row of `batch`, in order.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, FormatError> {
        match (&self.format, &self.avro) {
            (RecordFormat::Json, _) => super::encode_json(batch),
            (RecordFormat::Csv, _) => encode_csv(batch),
            (RecordFormat::Avro(_), Some(w)) => w.encode(batch),
            (RecordFormat::Avro(_), None) => {
                Err(FormatError::Avro { field: String::new(), reason: "no Avro writer (a bug)".into() })
            }
        }
    }
}

/// Encodes each row of `batch` as one header-less CSV line (see the module docs).
pub fn encode_csv(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, FormatError> {
    let encoders = column_encoders(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let mut line = String::with_capacity(16 * encoders.len());
        for (i, (_, enc)) in encoders.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            if enc.is_null(row) {
                continue;
            }
            match enc {
                ColEncoder::Null => {}
                ColEncoder::Str(a, get) => push_csv_text(&mut line, get(*a, row)),
                ColEncoder::Int(a, get) => {
                    let _ = write!(line, "{}", get(*a, row));
                }
                ColEncoder::UInt(a, get) => {
                    let _ = write!(line, "{}", get(*a, row));
                }
                ColEncoder::Float(a, get) => {
                    // The shortest text that reads back as the same number, as
                    // in JSON; none for a non-finite one.
                    if let Some(n) = serde_json::Number::from_f64(get(*a, row)) {
                        let _ = write!(line, "{n}");
                    }
                }
                ColEncoder::Bool(a) => line.push_str(if a.as_boolean().value(row) { "true" } else { "false" }),
                ColEncoder::Ts(a, div) => write_timestamp(&mut line, super::timestamp_millis(*a, *div, row)),
                ColEncoder::Date(a) => {
                    let (y, m, d) = super::civil_from_days(a.as_primitive::<Date32Type>().value(row) as i64);
                    let _ = write!(line, "{y:04}-{m:02}-{d:02}");
                }
                ColEncoder::Display(_, f) => {
                    text.clear();
                    let _ = write!(text, "{}", f.value(row));
                    push_csv_text(&mut line, &text);
                }
            }
        }
        out.push(line.into_bytes());
    }
    Ok(out)
}

/// Appends a text field, quoted when it is empty (an unquoted empty field
/// is null) or holds a comma, a quote or a line break.
fn push_csv_text(line: &mut String, s: &str) {
    if !s.is_empty() && !s.contains([',', '"', '\r', '\n']) {
        line.push_str(s);
        return;
    }
    line.push('"');
    for c in s.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::{timestamp_type, to_json_rows, AvroFormat, AvroFraming, Decoder, RecordFormat, KEY_COLUMN};
    use super::*;
    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array,
        Int64Array, Int8Array, LargeStringArray, NullArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    /// A batch of every column type the decoder reads, with nulls and
    /// values that need care (quotes, commas, line breaks, extremes).
    fn every_type() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int32, true),
            Field::new("l", DataType::Int64, true),
            Field::new("d", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("t", timestamp_type(), true),
            Field::new("id", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
        ]));
        let n = 7;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("plain"),
                None,
                Some(""),
                Some("a, \"b\""),
                Some("two\nlines\r\n"),
                Some("caf\u{e9} \u{1f600}"),
                Some(" spaced "),
            ])),
            Arc::new(Int32Array::from(vec![Some(1), None, Some(0), Some(i32::MIN), Some(i32::MAX), Some(-7), None])),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(i64::MIN), Some(i64::MAX), Some(-1), Some(300), None])),
            Arc::new(Float64Array::from(vec![
                Some(10.5),
                None,
                Some(0.1),
                Some(-1e300),
                Some(5e-324),
                Some(-0.0),
                Some(123456789.125),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
                None,
                Some(false),
                Some(true),
            ])),
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(1_704_067_201_000),
                    None,
                    Some(-1),
                    Some(0),
                    Some(1_709_164_800_123),
                    Some(-86_400_000 * 365 * 300 + 7),
                    None,
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from((0..n).map(|i| format!("k{i}")).collect::<Vec<_>>())),
            Arc::new(
                TimestampMillisecondArray::from((0..n).map(|i| 1_704_067_200_000 + i as i64).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn avro(framing: AvroFraming, schema_id: Option<u32>) -> RecordFormat {
        RecordFormat::Avro(AvroFormat { framing, writer: None, schema_id })
    }

    #[test]
    fn every_format_decodes_back_to_the_same_batch() {
        let batch = every_type();
        for format in [
            RecordFormat::Json,
            RecordFormat::Csv,
            avro(AvroFraming::Plain, None),
            avro(AvroFraming::Confluent, Some(7)),
        ] {
            let enc = Encoder::new(format.clone(), batch.schema()).unwrap();
            let payloads = enc.encode(&batch).unwrap();
            assert_eq!(payloads.len(), batch.num_rows());
            // The consumer side: a source of the same columns, same format.
            let read = match &format {
                RecordFormat::Avro(a) => RecordFormat::Avro(AvroFormat { schema_id: a.schema_id, ..a.clone() }),
                other => other.clone(),
            };
            let out = Decoder::new(read, batch.schema()).unwrap().decode(payloads.iter());
            assert!(out.errors.is_empty(), "{format:?}: {:?}", out.errors);
            assert_eq!(out.batch, batch, "{format:?}");
        }
    }

    #[test]
    fn csv_lines_quote_what_needs_it_and_leave_nulls_empty() {
        let lines: Vec<String> =
            encode_csv(&every_type()).unwrap().into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                "plain,1,1,10.5,true,2024-01-01T00:00:01Z,k0,2024-01-01T00:00:00Z",
                ",,,,,,k1,2024-01-01T00:00:00.001Z",
                "\"\",0,-9223372036854775808,0.1,false,1969-12-31T23:59:59.999Z,k2,2024-01-01T00:00:00.002Z",
                "\"a, \"\"b\"\"\",-2147483648,9223372036854775807,-1e+300,true,1970-01-01T00:00:00Z,k3,2024-01-01T00:00:00.003Z",
                "\"two\nlines\r\n\",2147483647,-1,5e-324,,2024-02-29T00:00:00.123Z,k4,2024-01-01T00:00:00.004Z",
                "caf\u{e9} \u{1f600},-7,300,-0.0,false,1670-03-14T00:00:00.007Z,k5,2024-01-01T00:00:00.005Z",
                " spaced ,,,123456789.125,true,,k6,2024-01-01T00:00:00.006Z",
            ]
        );
        // Non-finite floats are empty, as JSON writes them null.
        let s = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let b = RecordBatch::try_new(s, vec![Arc::new(Float64Array::from(vec![f64::NAN, f64::INFINITY]))]).unwrap();
        assert_eq!(encode_csv(&b).unwrap(), vec![b"".to_vec(), b"".to_vec()]);
    }

    /// The writer's schema a consumer of a sink needs, as JSON text: the
    /// one docs/sinks.md shows for a stage of these columns.
    #[test]
    fn the_derived_writer_schema_is_plain_avro_json() {
        let schema = Schema::new(vec![
            Field::new("card_id", DataType::Utf8, false),
            Field::new("window_start", timestamp_type(), false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Float64, true),
            Field::new("abroad", DataType::Boolean, true),
            Field::new(KEY_COLUMN, DataType::Utf8, true),
        ]);
        let w = AvroSchema::of_rows("alerts", &schema).unwrap();
        assert_eq!(
            serde_json::to_string(&w.to_json()).unwrap(),
            concat!(
                r#"{"fields":[{"name":"card_id","type":"string"},"#,
                r#"{"name":"window_start","type":{"logicalType":"timestamp-millis","type":"long"}},"#,
                r#"{"name":"n","type":"long"},{"name":"total","type":["null","double"]},"#,
                r#"{"name":"abroad","type":["null","boolean"]},{"name":"_key","type":["null","string"]}],"#,
                r#""name":"alerts","type":"record"}"#
            )
        );
        // It parses back as the same schema, and an encoder given it writes what it derives.
        assert_eq!(AvroSchema::parse(&w.to_json().to_string()).unwrap(), w);
        let fmt = AvroFormat { framing: AvroFraming::Plain, writer: Some(w.clone()), schema_id: None };
        let enc = Encoder::new(RecordFormat::Avro(fmt), Arc::new(schema)).unwrap();
        assert_eq!(enc.avro_schema(), Some(&w));
    }

    #[test]
    fn other_arrow_types_are_written_as_their_nearest_avro_type() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i8", DataType::Int8, false),
            Field::new("i16", DataType::Int16, false),
            Field::new("u8", DataType::UInt8, false),
            Field::new("u16", DataType::UInt16, false),
            Field::new("u32", DataType::UInt32, false),
            Field::new("u64", DataType::UInt64, false),
            Field::new("f32", DataType::Float32, false),
            Field::new("ls", DataType::LargeUtf8, false),
            Field::new("sv", DataType::Utf8View, false),
            Field::new("day", DataType::Date32, true),
            Field::new("secs", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("micros", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("dec", DataType::Decimal128(10, 2), false),
            Field::new("nothing", DataType::Null, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(vec![-8])),
            Arc::new(Int16Array::from(vec![-16])),
            Arc::new(UInt8Array::from(vec![200])),
            Arc::new(UInt16Array::from(vec![60_000])),
            Arc::new(UInt32Array::from(vec![4_000_000_000])),
            Arc::new(UInt64Array::from(vec![1u64 << 40])),
            Arc::new(Float32Array::from(vec![2.5])),
            Arc::new(LargeStringArray::from(vec!["large"])),
            Arc::new(StringViewArray::from(vec!["view"])),
            Arc::new(Date32Array::from(vec![Some(19_723)])),
            Arc::new(TimestampSecondArray::from(vec![1_704_067_201])),
            Arc::new(TimestampMicrosecondArray::from(vec![-1])),
            Arc::new(Decimal128Array::from(vec![12345]).with_precision_and_scale(10, 2).unwrap()),
            Arc::new(NullArray::new(1)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let enc = Encoder::new(avro(AvroFraming::Plain, None), schema).unwrap();
        let w = enc.avro_schema().unwrap().clone();
        let types: Vec<serde_json::Value> =
            w.to_json()["fields"].as_array().unwrap().iter().map(|f| f["type"].clone()).collect();
        let ts = serde_json::json!({"type": "long", "logicalType": "timestamp-millis"});
        assert_eq!(
            types,
            vec![
                "int".into(),
                "int".into(),
                "int".into(),
                "int".into(),
                "long".into(),
                "long".into(),
                "float".into(),
                "string".into(),
                "string".into(),
                serde_json::json!(["null", "string"]),
                ts.clone(),
                ts,
                "string".into(),
                "null".into()
            ]
        );
        let payloads = enc.encode(&batch).unwrap();
        // Read back with the writer's schema into the decoder's types.
        let read = Arc::new(Schema::new(vec![
            Field::new("i8", DataType::Int32, false),
            Field::new("u16", DataType::Int32, false),
            Field::new("u32", DataType::Int64, false),
            Field::new("u64", DataType::Int64, false),
            Field::new("f32", DataType::Float64, false),
            Field::new("ls", DataType::Utf8, false),
            Field::new("sv", DataType::Utf8, false),
            Field::new("day", DataType::Utf8, true),
            Field::new("secs", timestamp_type(), false),
            Field::new("micros", timestamp_type(), false),
            Field::new("dec", DataType::Utf8, false),
        ]));
        let fmt = AvroFormat { framing: AvroFraming::Plain, writer: Some(w), schema_id: None };
        let out = Decoder::new(RecordFormat::Avro(fmt), read).unwrap().decode(payloads.iter());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            serde_json::Value::Object(to_json_rows(&out.batch).unwrap()[0].clone()),
            serde_json::json!({
                "i8": -8, "u16": 60000, "u32": 4_000_000_000u64, "u64": 1u64 << 40, "f32": 2.5, "ls": "large",
                "sv": "view", "day": "2024-01-01", "secs": "2024-01-01T00:00:01Z",
                "micros": "1969-12-31T23:59:59.999Z", "dec": "123.45"
            })
        );
        // The same row as CSV.
        assert_eq!(
            String::from_utf8(encode_csv(&batch).unwrap().remove(0)).unwrap(),
            "-8,-16,200,60000,4000000000,1099511627776,2.5,large,view,2024-01-01,2024-01-01T00:00:01Z,1969-12-31T23:59:59.999Z,123.45,"
        );
    }

    fn one_column(name: &str, dt: DataType, nullable: bool) -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new(name, dt, nullable)]))
    }

    #[test]
    fn what_avro_cannot_hold_is_refused_with_the_column() {
        let e = |format: RecordFormat, schema: Arc<Schema>| Encoder::new(format, schema).unwrap_err().to_string();
        let plain = avro(AvroFraming::Plain, None);
        assert_eq!(
            e(plain.clone(), one_column("count(*)", DataType::Int64, false)),
            "Avro: field count(*): not an Avro field name (letters, digits and `_`, not starting with a digit); give the column a name with `AS` in SQL"
        );
        let twice = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("a", DataType::Utf8, false),
        ]));
        assert!(e(plain.clone(), twice).contains("two columns have this name"));
        assert_eq!(
            e(avro(AvroFraming::Confluent, None), one_column("a", DataType::Int64, false)),
            "Avro: field : the Confluent framing needs the schema id to write in each record's header"
        );
        assert!(e(avro(AvroFraming::Plain, Some(1)), one_column("a", DataType::Int64, false))
            .contains("a schema id is part of the Confluent framing"));
        // A given writer's schema must hold every column with the type it is written as.
        let w = AvroSchema::parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#).unwrap();
        let given = |framing| RecordFormat::Avro(AvroFormat { framing, writer: Some(w.clone()), schema_id: None });
        assert_eq!(
            e(given(AvroFraming::Plain), one_column("a", DataType::Int64, false)),
            "Avro: field a: the writer's type is int, but the column (Int64) is written as long"
        );
        assert_eq!(
            e(given(AvroFraming::Plain), one_column("b", DataType::Int32, false)),
            "Avro: field b: not a field of the writer's schema, which has a"
        );
        // Nulls the writer's type cannot hold, and values beyond a long, fail the batch with the row.
        let enc = Encoder::new(given(AvroFraming::Plain), one_column("a", DataType::Int32, true)).unwrap();
        let b = RecordBatch::try_new(
            one_column("a", DataType::Int32, true),
            vec![Arc::new(Int32Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        assert_eq!(
            enc.encode(&b).unwrap_err().to_string(),
            "Avro: field a: row 1 is null, but the writer's type of the field has no null"
        );
        let s = one_column("u", DataType::UInt64, false);
        let b = RecordBatch::try_new(s.clone(), vec![Arc::new(UInt64Array::from(vec![u64::MAX]))]).unwrap();
        let enc = Encoder::new(plain.clone(), s).unwrap();
        assert_eq!(
            enc.encode(&b).unwrap_err().to_string(),
            format!("Avro: field u: row 0: {} is beyond Avro's long", u64::MAX)
        );
        // A batch of other column types than the encoder's; a timestamp's unit may differ.
        let enc = Encoder::new(plain.clone(), one_column("u", DataType::Utf8, false)).unwrap();
        assert!(enc.encode(&b).unwrap_err().to_string().contains("the batch's column types (UInt64)"));
        let enc = Encoder::new(plain, one_column("t", timestamp_type(), false)).unwrap();
        let secs = DataType::Timestamp(TimeUnit::Second, None);
        let b = RecordBatch::try_new(one_column("t", secs, false), vec![Arc::new(TimestampSecondArray::from(vec![1]))])
            .unwrap();
        assert_eq!(enc.encode(&b).unwrap(), vec![vec![0xd0, 0x0f]]);
    }

    #[test]
    fn confluent_records_carry_the_schema_id_and_kafka_metadata_columns_are_written() {
        let s = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new(KEY_COLUMN, DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            s.clone(),
            vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec![Some("k")]))],
        )
        .unwrap();
        let enc = Encoder::new(avro(AvroFraming::Confluent, Some(258)), s).unwrap();
        // Header, n = 1 (zig-zag 2), _key: branch 1 (2), length 1 (2), "k".
        assert_eq!(enc.encode(&b).unwrap(), vec![vec![0, 0, 0, 1, 2, 2, 2, 2, b'k']]);
        assert_eq!(enc.avro_schema().unwrap().field_names(), vec!["n", "_key"]);
    }
}
