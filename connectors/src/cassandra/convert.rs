//! Arrow record batches to CQL rows (for the sink) and CQL rows back to
//! record batches (for reads and tests), following [`super::CqlType`]'s
//! mapping. Timestamps are milliseconds in CQL: finer units are floored.

use super::schema::cql_type_of;
use super::{Error, Result};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int8Array, LargeBinaryArray, LargeStringArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::*;
use scylla::value::{CqlDate, CqlTimestamp, CqlValue};
use std::sync::Arc;

/// CQL's `date` counts days from 2^31 days before the epoch.
const DATE_EPOCH: i64 = 1 << 31;

/// One column's cells as CQL values (None for null).
fn column_values(name: &str, array: &ArrayRef) -> Result<Vec<Option<CqlValue>>> {
    let array = match array.data_type() {
        DataType::Dictionary(_, v) => cast(array, v).map_err(|e| Error::Schema {
            what: format!("column `{name}`"),
            reason: format!("cannot unpack its dictionary: {e}"),
        })?,
        _ => array.clone(),
    };
    let n = array.len();
    macro_rules! prim {
        ($t:ty, $f:expr) => {{
            let a = array.as_primitive::<$t>();
            (0..n).map(|i| a.is_valid(i).then(|| $f(a.value(i)))).collect()
        }};
    }
    macro_rules! bytes {
        ($a:expr, $f:expr) => {{
            let a = $a;
            (0..n).map(|i| a.is_valid(i).then(|| $f(a.value(i)))).collect()
        }};
    }
    let ts = |ms: i64| CqlValue::Timestamp(CqlTimestamp(ms));
    let text = |s: &str| CqlValue::Text(s.to_string());
    let blob = |b: &[u8]| CqlValue::Blob(b.to_vec());
    Ok(match array.data_type() {
        DataType::Utf8 => bytes!(array.as_string::<i32>(), text),
        DataType::LargeUtf8 => bytes!(array.as_string::<i64>(), text),
        DataType::Utf8View => bytes!(array.as_string_view(), text),
        DataType::Binary => bytes!(array.as_binary::<i32>(), blob),
        DataType::LargeBinary => bytes!(array.as_binary::<i64>(), blob),
        DataType::BinaryView => bytes!(array.as_binary_view(), blob),
        DataType::FixedSizeBinary(_) => bytes!(array.as_fixed_size_binary(), blob),
        DataType::Boolean => bytes!(array.as_boolean(), CqlValue::Boolean),
        DataType::Int8 => prim!(Int8Type, CqlValue::TinyInt),
        DataType::Int16 => prim!(Int16Type, CqlValue::SmallInt),
        DataType::Int32 => prim!(Int32Type, CqlValue::Int),
        DataType::Int64 => prim!(Int64Type, CqlValue::BigInt),
        DataType::UInt8 => prim!(UInt8Type, |v: u8| CqlValue::SmallInt(i16::from(v))),
        DataType::UInt16 => prim!(UInt16Type, |v: u16| CqlValue::Int(i32::from(v))),
        DataType::UInt32 => prim!(UInt32Type, |v: u32| CqlValue::BigInt(i64::from(v))),
        DataType::Float32 => prim!(Float32Type, CqlValue::Float),
        DataType::Float64 => prim!(Float64Type, CqlValue::Double),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, |v: i64| ts(v.saturating_mul(1000))),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, ts),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            prim!(TimestampMicrosecondType, |v: i64| ts(v.div_euclid(1000)))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            prim!(TimestampNanosecondType, |v: i64| ts(v.div_euclid(1_000_000)))
        }
        DataType::Date64 => prim!(Date64Type, ts),
        DataType::Date32 => prim!(Date32Type, |d: i32| CqlValue::Date(CqlDate((i64::from(d) + DATE_EPOCH) as u32))),
        _ => {
            cql_type_of(&Field::new(name, array.data_type().clone(), true))?;
            return Err(Error::Schema {
                what: format!("column `{name}`"),
                reason: format!("no converter for {}", array.data_type()),
            });
        }
    })
}

/// The batch's rows as CQL values, columns in schema order (None for null).
pub fn batch_to_rows(batch: &RecordBatch) -> Result<Vec<Vec<Option<CqlValue>>>> {
    let schema = batch.schema();
    let mut columns: Vec<std::vec::IntoIter<Option<CqlValue>>> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| column_values(f.name(), a).map(Vec::into_iter))
        .collect::<Result<_>>()?;
    Ok((0..batch.num_rows()).map(|_| columns.iter_mut().map(|c| c.next().flatten()).collect()).collect())
}

fn as_i64(v: &CqlValue) -> Option<i64> {
    match v {
        CqlValue::TinyInt(x) => Some(i64::from(*x)),
        CqlValue::SmallInt(x) => Some(i64::from(*x)),
        CqlValue::Int(x) => Some(i64::from(*x)),
        CqlValue::BigInt(x) => Some(*x),
        CqlValue::Counter(c) => Some(c.0),
        _ => None,
    }
}

fn as_f64(v: &CqlValue) -> Option<f64> {
    match v {
        CqlValue::Double(x) => Some(*x),
        CqlValue::Float(x) => Some(f64::from(*x)),
        _ => None,
    }
}

fn as_ms(v: &CqlValue) -> Option<i64> {
    match v {
        CqlValue::Timestamp(t) => Some(t.0),
        _ => None,
    }
}

fn as_text(v: &CqlValue) -> Option<String> {
    match v {
        CqlValue::Text(s) | CqlValue::Ascii(s) => Some(s.clone()),
        _ => None,
    }
}

/// One column of `rows` (index `j`), each cell converted by `f`.
fn cells<T>(
    field: &Field,
    rows: &[Vec<Option<CqlValue>>],
    j: usize,
    f: impl Fn(&CqlValue) -> Option<T>,
) -> Result<Vec<Option<T>>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| match r.get(j) {
            None | Some(None) => Ok(None),
            Some(Some(v)) => f(v).map(Some).ok_or_else(|| Error::Value {
                column: field.name().clone(),
                row: i,
                reason: format!("{v:?} does not read as {}", field.data_type()),
            }),
        })
        .collect()
}

fn narrow<T: TryFrom<i64>>(v: &CqlValue) -> Option<T> {
    as_i64(v).and_then(|x| T::try_from(x).ok())
}

/// Rows (cells in `schema`'s column order) as a record batch of `schema`.
/// Errors name the column and row of a cell that does not fit its type.
pub fn rows_to_batch(schema: SchemaRef, rows: &[Vec<Option<CqlValue>>]) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (j, field) in schema.fields().iter().enumerate() {
        let f = field.as_ref();
        let a: ArrayRef = match f.data_type() {
            DataType::Utf8 => Arc::new(StringArray::from(cells(f, rows, j, as_text)?)),
            DataType::LargeUtf8 => Arc::new(LargeStringArray::from(cells(f, rows, j, as_text)?)),
            DataType::Int8 => Arc::new(Int8Array::from(cells(f, rows, j, narrow::<i8>)?)),
            DataType::Int16 => Arc::new(Int16Array::from(cells(f, rows, j, narrow::<i16>)?)),
            DataType::Int32 => Arc::new(Int32Array::from(cells(f, rows, j, narrow::<i32>)?)),
            DataType::Int64 => Arc::new(Int64Array::from(cells(f, rows, j, as_i64)?)),
            DataType::Float32 => Arc::new(Float32Array::from(cells(f, rows, j, |v| match v {
                CqlValue::Float(x) => Some(*x),
                _ => None,
            })?)),
            DataType::Float64 => Arc::new(Float64Array::from(cells(f, rows, j, as_f64)?)),
            DataType::Boolean => Arc::new(BooleanArray::from(cells(f, rows, j, |v| match v {
                CqlValue::Boolean(b) => Some(*b),
                _ => None,
            })?)),
            DataType::Date32 => Arc::new(Date32Array::from(cells(f, rows, j, |v| match v {
                CqlValue::Date(d) => i32::try_from(i64::from(d.0) - DATE_EPOCH).ok(),
                _ => None,
            })?)),
            DataType::Timestamp(unit, tz) => {
                let ms = cells(f, rows, j, as_ms)?;
                let tz = tz.clone();
                match unit {
                    TimeUnit::Second => Arc::new(
                        TimestampSecondArray::from(
                            ms.into_iter().map(|o| o.map(|v| v.div_euclid(1000))).collect::<Vec<_>>(),
                        )
                        .with_timezone_opt(tz),
                    ),
                    TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(ms).with_timezone_opt(tz)),
                    TimeUnit::Microsecond => Arc::new(
                        TimestampMicrosecondArray::from(
                            ms.into_iter().map(|o| o.map(|v| v.saturating_mul(1000))).collect::<Vec<_>>(),
                        )
                        .with_timezone_opt(tz),
                    ),
                    TimeUnit::Nanosecond => Arc::new(
                        TimestampNanosecondArray::from(
                            ms.into_iter().map(|o| o.map(|v| v.saturating_mul(1_000_000))).collect::<Vec<_>>(),
                        )
                        .with_timezone_opt(tz),
                    ),
                }
            }
            DataType::Binary | DataType::LargeBinary => {
                let b = cells(f, rows, j, |v| match v {
                    CqlValue::Blob(b) => Some(b.clone()),
                    _ => None,
                })?;
                if matches!(f.data_type(), DataType::Binary) {
                    Arc::new(BinaryArray::from_iter(b.iter().map(|o| o.as_deref())))
                } else {
                    Arc::new(LargeBinaryArray::from_iter(b.iter().map(|o| o.as_deref())))
                }
            }
            other => {
                return Err(Error::Schema {
                    what: format!("column `{}`", f.name()),
                    reason: format!("reading CQL into Arrow {other} is not supported"),
                })
            }
        };
        arrays.push(a);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::Schema {
        what: "rows read back".into(),
        reason: format!("they do not form a batch of the schema ({e}); is a non-nullable column null?"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
            Field::new("d", DataType::Date32, true),
            Field::new("i", DataType::Int32, true),
            Field::new("blob", DataType::Binary, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.0)])),
                Arc::new(BooleanArray::from(vec![None, Some(true)])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None]).with_timezone("UTC")),
                Arc::new(Date32Array::from(vec![Some(0), Some(-1)])),
                Arc::new(Int32Array::from(vec![Some(7), None])),
                Arc::new(BinaryArray::from_iter(vec![Some(&b"\x00\x01"[..]), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_hold_cql_values_and_nulls() {
        let rows = batch_to_rows(&batch()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], Some(CqlValue::Text("a".into())));
        assert_eq!(rows[0][1], Some(CqlValue::BigInt(1)));
        assert_eq!(rows[1][1], None);
        assert_eq!(rows[0][4], Some(CqlValue::Timestamp(CqlTimestamp(1_700_000_000_123))));
        assert_eq!(rows[0][5], Some(CqlValue::Date(CqlDate(1 << 31))));
        assert_eq!(rows[1][5], Some(CqlValue::Date(CqlDate((1u32 << 31) - 1))));
        assert_eq!(rows[0][7], Some(CqlValue::Blob(vec![0, 1])));
    }

    #[test]
    fn batches_survive_the_round_trip() {
        let b = batch();
        let back = rows_to_batch(b.schema(), &batch_to_rows(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn finer_timestamps_are_floored_to_milliseconds() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(TimestampMicrosecondArray::from(vec![1_999, -1]))]).unwrap();
        let rows = batch_to_rows(&b).unwrap();
        assert_eq!(rows[0][0], Some(CqlValue::Timestamp(CqlTimestamp(1))));
        assert_eq!(rows[1][0], Some(CqlValue::Timestamp(CqlTimestamp(-1))));
    }

    #[test]
    fn dictionaries_and_unsigned_ints_convert() {
        use datafusion::arrow::array::{DictionaryArray, UInt32Array};
        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", dict.data_type().clone(), false),
            Field::new("u", DataType::UInt32, false),
        ]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(dict), Arc::new(UInt32Array::from(vec![1, 2, u32::MAX]))])
            .unwrap();
        let rows = batch_to_rows(&b).unwrap();
        assert_eq!(rows[2][0], Some(CqlValue::Text("x".into())));
        assert_eq!(rows[2][1], Some(CqlValue::BigInt(i64::from(u32::MAX))));
    }

    #[test]
    fn a_cell_of_the_wrong_type_names_column_and_row() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int8, true)]));
        let e = rows_to_batch(schema.clone(), &[vec![Some(CqlValue::Int(1))], vec![Some(CqlValue::Int(1000))]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("column `n`, row 1"), "{e}");
        let e = rows_to_batch(schema, &[vec![Some(CqlValue::Text("x".into()))]]).unwrap_err().to_string();
        assert!(e.contains("row 0") && e.contains("Int8"), "{e}");
    }

    #[test]
    fn unmappable_columns_are_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("u", DataType::UInt64, false)]));
        let b =
            RecordBatch::try_new(schema, vec![Arc::new(datafusion::arrow::array::UInt64Array::from(vec![1]))]).unwrap();
        let e = batch_to_rows(&b).unwrap_err().to_string();
        assert!(e.contains("column `u`") && e.contains("Int64"), "{e}");
    }
}
