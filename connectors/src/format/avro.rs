//! Avro records: the writer's schema ([`AvroSchema`], parsed from its JSON or
//! derived from the declared columns), the reading plan that maps the
//! writer's record fields onto the decoder's columns (checked once, when the
//! decoder is built: [`check_avro`]), the binary datum decoder behind
//! [`super::Decoder`], a small encoder of JSON objects ([`AvroEncoder`]) for
//! generators, benchmarks and tests, and the writer of record batches behind
//! [`super::Encoder`] (the `write` module: what a Kafka sink produces, its
//! schema from [`AvroSchema::of_rows`]).
//!
//! The binary encoding is decoded by hand, straight into the decoder's
//! slots (no intermediate values): zig-zag varints for `int` and `long`,
//! little-endian IEEE floats, length-prefixed `bytes` and `string`, a varint
//! branch index before a union's value, blocks for arrays and maps.
//!
//! # Framing
//! - [`AvroFraming::Confluent`] (the default): the Confluent wire format —
//!   magic byte `0`, a 4-byte big-endian schema id, then the datum. There is
//!   no schema registry here: every id is read with the one writer schema,
//!   unless [`AvroFormat::schema_id`] pins the id, when a record with another
//!   id does not decode.
//! - [`AvroFraming::Plain`]: the datum alone (Avro's single-object encoding
//!   and container files are not supported).
//!
//! # The writer's schema
//! A top-level `record`. When none is given it is derived from the columns
//! ([`AvroSchema::derive`]): one field per column in order, `string`,
//! `int`, `long`, `double`, `boolean`, and `long` with logical type
//! `timestamp-millis`; a nullable column's type is the union
//! `["null", T]`. The reserved Kafka metadata columns are never in it.
//!
//! # Reading into columns
//! Every payload column must be a field of the writer's record, by name;
//! writer fields no column names are read and skipped (any Avro type). A
//! field's type, or each non-null branch of its union, must fit its column:
//!
//! | column | Avro writer type |
//! | --- | --- |
//! | Utf8 | `string`, `enum` (the symbol) |
//! | Int32 | `int` |
//! | Int64 | `int`, `long` |
//! | Float64 | `int`, `long`, `float`, `double` |
//! | Boolean | `boolean` |
//! | Timestamp(ms) | `long` as `timestamp-millis` or plain epoch ms, `timestamp-micros` (floored to ms), `string` in RFC 3339 |
//!
//! A union's `null` branch gives a null cell (refused per record for the
//! non-nullable event-time column). A record with bytes left after the
//! datum does not decode, nor does one cut short.

use super::{parse_timestamp, Kind, Slot};

mod write;
pub use write::is_avro_name;
pub(super) use write::AvroWriter;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;

/// How Avro records are framed in Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AvroFraming {
    /// Magic byte 0, a 4-byte big-endian schema id, then the datum.
    #[default]
    Confluent,
    /// The binary datum alone.
    Plain,
}

/// The length of the Confluent header: magic byte and schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// The Confluent header of a record written with schema `id`.
pub fn confluent_header(id: u32) -> [u8; CONFLUENT_HEADER_LEN] {
    let b = id.to_be_bytes();
    [0, b[0], b[1], b[2], b[3]]
}

/// How a source's Avro records are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvroFormat {
    /// The framing.
    pub framing: AvroFraming,
    /// The writer's schema; `None` derives it from the decoder's columns.
    pub writer: Option<AvroSchema>,
    /// With Confluent framing: the only schema id accepted.
    pub schema_id: Option<u32>,
}

/// An Avro type of the writer's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// `long` with logical type `timestamp-millis`.
    TimestampMillis,
    /// `long` with logical type `timestamp-micros`.
    TimestampMicros,
    Array(Box<Ty>),
    Map(Box<Ty>),
    Union(Vec<Ty>),
    /// A record, enum or fixed: an index into [`AvroSchema::named`].
    Named(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    Record { name: String, fields: Vec<(String, Ty)> },
    Enum { name: String, symbols: Vec<String> },
    Fixed { name: String, size: usize },
}

impl Named {
    fn name(&self) -> &str {
        match self {
            Named::Record { name, .. } | Named::Enum { name, .. } | Named::Fixed { name, .. } => name,
        }
    }
}

/// A writer's schema: a top-level record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroSchema {
    named: Vec<Named>,
    /// The index of the top-level record in `named`.
    root: usize,
}

/// A schema that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Avro schema: {0}")]
pub struct AvroSchemaError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, AvroSchemaError> {
    Err(AvroSchemaError(msg.into()))
}

impl AvroSchema {
    /// Parses a schema from its JSON text.
    pub fn parse(text: &str) -> Result<AvroSchema, AvroSchemaError> {
        let v: Value = serde_json::from_str(text).map_err(|e| AvroSchemaError(format!("not JSON: {e}")))?;
        AvroSchema::from_json(&v)
    }

    /// Reads a schema from its JSON; the top level must be a record.
    pub fn from_json(v: &Value) -> Result<AvroSchema, AvroSchemaError> {
        let mut p = Parser { named: Vec::new(), names: HashMap::new() };
        let root = p.ty(v, "")?;
        match root {
            Ty::Named(i) if matches!(p.named[i], Named::Record { .. }) => Ok(AvroSchema { named: p.named, root: i }),
            _ => bad(format!("the top level is {}; expected a record", describe_json(v))),
        }
    }

    /// The schema of records with one field per column of `schema`, in
    /// order (the reserved metadata columns left out); see the module docs.
    pub fn derive(name: &str, schema: &Schema) -> Result<AvroSchema, AvroSchemaError> {
        let mut fields = Vec::new();
        for f in schema.fields() {
            if super::Metadata::of(f.name()).is_some() {
                continue;
            }
            let t = match f.data_type() {
                DataType::Utf8 => Ty::String,
                DataType::Int32 => Ty::Int,
                DataType::Int64 => Ty::Long,
                DataType::Float64 => Ty::Double,
                DataType::Boolean => Ty::Boolean,
                DataType::Timestamp(TimeUnit::Millisecond, _) => Ty::TimestampMillis,
                other => return bad(format!("column {}: type {other} has no Avro counterpart here", f.name())),
            };
            fields.push((f.name().clone(), if f.is_nullable() { Ty::Union(vec![Ty::Null, t]) } else { t }));
        }
        Ok(AvroSchema { named: vec![Named::Record { name: name.to_string(), fields }], root: 0 })
    }

    /// The schema as Avro JSON.
    pub fn to_json(&self) -> Value {
        let mut defined = vec![false; self.named.len()];
        self.ty_json(&Ty::Named(self.root), &mut defined)
    }

    fn ty_json(&self, t: &Ty, defined: &mut [bool]) -> Value {
        match t {
            Ty::Null => json!("null"),
            Ty::Boolean => json!("boolean"),
            Ty::Int => json!("int"),
            Ty::Long => json!("long"),
            Ty::Float => json!("float"),
            Ty::Double => json!("double"),
            Ty::Bytes => json!("bytes"),
            Ty::String => json!("string"),
            Ty::TimestampMillis => json!({"type": "long", "logicalType": "timestamp-millis"}),
            Ty::TimestampMicros => json!({"type": "long", "logicalType": "timestamp-micros"}),
            Ty::Array(i) => json!({"type": "array", "items": self.ty_json(i, defined)}),
            Ty::Map(v) => json!({"type": "map", "values": self.ty_json(v, defined)}),
            Ty::Union(b) => Value::Array(b.iter().map(|t| self.ty_json(t, defined)).collect()),
            Ty::Named(i) => {
                let n = &self.named[*i];
                if defined[*i] {
                    return json!(n.name());
                }
                defined[*i] = true;
                match n {
                    Named::Record { name, fields } => {
                        let fields: Vec<Value> =
                            fields.iter().map(|(f, t)| json!({"name": f, "type": self.ty_json(t, defined)})).collect();
                        json!({"type": "record", "name": name, "fields": fields})
                    }
                    Named::Enum { name, symbols } => json!({"type": "enum", "name": name, "symbols": symbols}),
                    Named::Fixed { name, size } => json!({"type": "fixed", "name": name, "size": size}),
                }
            }
        }
    }

    fn fields(&self) -> &[(String, Ty)] {
        match &self.named[self.root] {
            Named::Record { fields, .. } => fields,
            _ => &[],
        }
    }

    /// The top-level record's field names, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields().iter().map(|(n, _)| n.as_str()).collect()
    }

    /// A short description of a type, for messages: `int`, `["null", "string"]`, `record Foo`.
    fn describe(&self, t: &Ty) -> String {
        match t {
            Ty::Null => "null".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Int => "int".into(),
            Ty::Long => "long".into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::Bytes => "bytes".into(),
            Ty::String => "string".into(),
            Ty::TimestampMillis => "long (timestamp-millis)".into(),
            Ty::TimestampMicros => "long (timestamp-micros)".into(),
            Ty::Array(_) => "array".into(),
            Ty::Map(_) => "map".into(),
            Ty::Union(b) => format!("[{}]", b.iter().map(|t| self.describe(t)).collect::<Vec<_>>().join(", ")),
            Ty::Named(i) => match &self.named[*i] {
                Named::Record { name, .. } => format!("record {name}"),
                Named::Enum { name, .. } => format!("enum {name}"),
                Named::Fixed { name, .. } => format!("fixed {name}"),
            },
        }
    }
}

fn describe_json(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "a union".into(),
        Value::Object(o) => match o.get("type") {
            Some(Value::String(t)) => format!("a {t}"),
            _ => "an object without a `type`".into(),
        },
        other => format!("`{other}`"),
    }
}

struct Parser {
    named: Vec<Named>,
    /// Full names (and, for a name without a namespace, the name) → index.
    names: HashMap<String, usize>,
}

impl Parser {
    fn full_name(name: &str, namespace: &str) -> String {
        if name.contains('.') || namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}.{name}")
        }
    }

    fn define(
        &mut self,
        o: &serde_json::Map<String, Value>,
        ns: &str,
        n: Named,
    ) -> Result<(usize, String), AvroSchemaError> {
        let name = n.name().to_string();
        if name.is_empty() || !name.split('.').all(|p| p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')) {
            return bad(format!("invalid name `{name}`"));
        }
        let ns = match o.get("namespace") {
            Some(Value::String(s)) => s.clone(),
            _ => ns.to_string(),
        };
        let full = Parser::full_name(&name, &ns);
        if self.names.contains_key(&full) {
            return bad(format!("`{full}` is defined twice"));
        }
        let i = self.named.len();
        self.named.push(n);
        self.names.insert(full.clone(), i);
        // The namespace a definition's own fields resolve names in.
        let inner = full.rsplit_once('.').map_or(String::new(), |(n, _)| n.to_string());
        Ok((i, inner))
    }

    fn ty(&mut self, v: &Value, ns: &str) -> Result<Ty, AvroSchemaError> {
        match v {
            Value::String(s) => self.by_name(s, ns),
            Value::Array(branches) => {
                let mut out = Vec::new();
                for b in branches {
                    let t = self.ty(b, ns)?;
                    if matches!(t, Ty::Union(_)) {
                        return bad("a union inside a union");
                    }
                    out.push(t);
                }
                if out.is_empty() {
                    return bad("an empty union");
                }
                Ok(Ty::Union(out))
            }
            Value::Object(o) => {
                let Some(t) = o.get("type") else { return bad("an object without a `type`") };
                let t = match t {
                    Value::String(t) => t.as_str(),
                    // `{"type": ["null", "string"]}` or `{"type": {...}}`: the inner type.
                    other => return self.ty(other, ns),
                };
                let logical = o.get("logicalType").and_then(Value::as_str);
                let name = || match o.get("name") {
                    Some(Value::String(n)) => Ok(n.clone()),
                    _ => bad(format!("a {t} without a `name`")),
                };
                match t {
                    "record" | "error" => {
                        let (i, inner) = self.define(o, ns, Named::Record { name: name()?, fields: Vec::new() })?;
                        let Some(Value::Array(fs)) = o.get("fields") else {
                            return bad(format!("record `{}` has no `fields` list", self.named[i].name()));
                        };
                        let mut fields = Vec::new();
                        for f in fs {
                            let Some(fname) = f.get("name").and_then(Value::as_str) else {
                                return bad(format!("a field of record `{}` has no `name`", self.named[i].name()));
                            };
                            let Some(ft) = f.get("type") else {
                                return bad(format!("field `{fname}` has no `type`"));
                            };
                            let ft = self
                                .ty(ft, &inner)
                                .map_err(|e| AvroSchemaError(format!("field `{fname}`: {}", e.0)))?;
                            if fields.iter().any(|(n, _)| n == fname) {
                                return bad(format!("field `{fname}` is listed twice"));
                            }
                            fields.push((fname.to_string(), ft));
                        }
                        if let Named::Record { fields: f, .. } = &mut self.named[i] {
                            *f = fields;
                        }
                        Ok(Ty::Named(i))
                    }
                    "enum" => {
                        let symbols: Vec<String> = match o.get("symbols") {
                            Some(Value::Array(s)) => s.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
                            _ => return bad(format!("enum `{}` has no `symbols` list", name()?)),
                        };
                        Ok(Ty::Named(self.define(o, ns, Named::Enum { name: name()?, symbols })?.0))
                    }
                    "fixed" => {
                        // YAML may give the size as text.
                        let size = o.get("size").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
                        let Some(size) = size else {
                            return bad(format!("fixed `{}` has no `size`", name()?));
                        };
                        Ok(Ty::Named(self.define(o, ns, Named::Fixed { name: name()?, size: size as usize })?.0))
                    }
                    "array" => match o.get("items") {
                        Some(i) => Ok(Ty::Array(Box::new(self.ty(i, ns)?))),
                        None => bad("an array without `items`"),
                    },
                    "map" => match o.get("values") {
                        Some(i) => Ok(Ty::Map(Box::new(self.ty(i, ns)?))),
                        None => bad("a map without `values`"),
                    },
                    "long" if logical == Some("timestamp-millis") => Ok(Ty::TimestampMillis),
                    "long" if logical == Some("timestamp-micros") => Ok(Ty::TimestampMicros),
                    // Other logical types (date, time-*, decimal, uuid) read as their base type.
                    prim => self.by_name(prim, ns),
                }
            }
            // An unquoted `null` in YAML.
            Value::Null => Ok(Ty::Null),
            other => bad(format!("`{other}` is not a type")),
        }
    }

    fn by_name(&self, s: &str, ns: &str) -> Result<Ty, AvroSchemaError> {
        Ok(match s {
            "null" => Ty::Null,
            "boolean" => Ty::Boolean,
            "int" => Ty::Int,
            "long" => Ty::Long,
            "float" => Ty::Float,
            "double" => Ty::Double,
            "bytes" => Ty::Bytes,
            "string" => Ty::String,
            name => match self.names.get(&Parser::full_name(name, ns)).or_else(|| self.names.get(name)) {
                Some(i) => Ty::Named(*i),
                None => return bad(format!("unknown type `{name}` (named types must be defined before use)")),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// The reading plan

/// How one writer value becomes a slot.
#[derive(Debug, Clone, PartialEq)]
enum Read {
    Null,
    Bool,
    /// `int` or `long` into an integer slot (`int` checked into the i32 range by type).
    Int,
    /// `int`/`long` into a float slot.
    IntToFloat,
    Float,
    Double,
    Str,
    /// The symbol of an enum.
    Symbol(usize),
    MicrosToMillis,
    /// RFC 3339 text into a timestamp slot.
    TextTime,
    Union(Vec<Read>),
}

/// One writer field: read into a column, or skipped.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Column(usize, Read),
    Skip(Ty),
}

/// A declared column that does not fit the writer's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroMismatch {
    /// The column.
    pub field: String,
    /// Why, e.g. `the Avro field is a string; expected int or long`.
    pub reason: String,
}

/// The compiled reader: the writer's schema and one step per writer field.
#[derive(Debug, Clone)]
pub(super) struct AvroReader {
    format: AvroFormat,
    schema: AvroSchema,
    steps: Vec<Step>,
}

fn accepts(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "string or enum",
        Kind::I32 => "int",
        Kind::I64 => "int or long",
        Kind::F64 => "int, long, float or double",
        Kind::Bool => "boolean",
        Kind::Ts => "long (timestamp-millis, timestamp-micros or epoch ms) or RFC 3339 string",
    }
}

impl AvroSchema {
    fn read_for(&self, t: &Ty, kind: Kind) -> Option<Read> {
        Some(match (t, kind) {
            (Ty::Null, _) => Read::Null,
            (Ty::String, Kind::Str) => Read::Str,
            (Ty::Named(i), Kind::Str) if matches!(self.named[*i], Named::Enum { .. }) => Read::Symbol(*i),
            (Ty::Int, Kind::I32 | Kind::I64) => Read::Int,
            (Ty::Long | Ty::TimestampMillis | Ty::TimestampMicros, Kind::I64) => Read::Int,
            (Ty::Int | Ty::Long, Kind::F64) => Read::IntToFloat,
            (Ty::Float, Kind::F64) => Read::Float,
            (Ty::Double, Kind::F64) => Read::Double,
            (Ty::Boolean, Kind::Bool) => Read::Bool,
            (Ty::Long | Ty::TimestampMillis, Kind::Ts) => Read::Int,
            (Ty::TimestampMicros, Kind::Ts) => Read::MicrosToMillis,
            (Ty::String, Kind::Ts) => Read::TextTime,
            (Ty::Union(branches), _) => {
                let reads: Vec<Read> = branches.iter().map(|b| self.read_for(b, kind)).collect::<Option<_>>()?;
                if reads.iter().all(|r| *r == Read::Null) {
                    return None;
                }
                Read::Union(reads)
            }
            _ => return None,
        })
    }
}

/// Checks that every payload column of `schema` is a field of `writer`
/// with a type that fits (see the module docs); one entry per misfit.
pub fn check_avro(writer: &AvroSchema, schema: &Schema) -> Vec<AvroMismatch> {
    match plan(writer, schema) {
        Ok(_) => Vec::new(),
        Err(m) => m,
    }
}

fn plan(writer: &AvroSchema, schema: &Schema) -> Result<Vec<Step>, Vec<AvroMismatch>> {
    let mut steps: Vec<Step> = writer.fields().iter().map(|(_, t)| Step::Skip(t.clone())).collect();
    let mut misfits = Vec::new();
    for (col, f) in schema.fields().iter().enumerate() {
        if super::Metadata::of(f.name()).is_some() {
            continue;
        }
        let Ok(kind) = Kind::of(f) else {
            misfits.push(AvroMismatch {
                field: f.name().clone(),
                reason: format!("type {} cannot be decoded", f.data_type()),
            });
            continue;
        };
        let Some(at) = writer.fields().iter().position(|(n, _)| n == f.name()) else {
            let names = writer.field_names();
            misfits.push(AvroMismatch {
                field: f.name().clone(),
                reason: format!("not a field of the Avro record, which has {}", names.join(", ")),
            });
            continue;
        };
        let t = &writer.fields()[at].1;
        match writer.read_for(t, kind) {
            Some(read) => steps[at] = Step::Column(col, read),
            None => misfits.push(AvroMismatch {
                field: f.name().clone(),
                reason: format!("the Avro field is {}; expected {}", writer.describe(t), accepts(kind)),
            }),
        }
    }
    if misfits.is_empty() {
        Ok(steps)
    } else {
        Err(misfits)
    }
}

impl AvroReader {
    /// Compiles the reader for the decoder's columns; a misfit is an error.
    pub(super) fn new(format: &AvroFormat, schema: &Schema) -> Result<AvroReader, super::FormatError> {
        let writer = match &format.writer {
            Some(w) => w.clone(),
            None => AvroSchema::derive("record", schema)
                .map_err(|e| super::FormatError::Avro { field: String::new(), reason: e.0 })?,
        };
        let steps = plan(&writer, schema).map_err(|m| {
            let first = m.into_iter().next().unwrap_or(AvroMismatch { field: String::new(), reason: String::new() });
            super::FormatError::Avro { field: first.field, reason: first.reason }
        })?;
        Ok(AvroReader { format: format.clone(), schema: writer, steps })
    }

    /// Decodes one record's bytes into the slots.
    pub(super) fn record(&self, record: &[u8], slots: &mut [Slot], buf: &mut String) -> Result<(), String> {
        let datum = match self.format.framing {
            AvroFraming::Plain => record,
            AvroFraming::Confluent => {
                if record.len() < CONFLUENT_HEADER_LEN {
                    return Err(format!(
                        "{} byte(s): shorter than the Confluent header (magic byte 0 and a 4-byte schema id)",
                        record.len()
                    ));
                }
                if record[0] != 0 {
                    return Err(format!("first byte {:#04x}: expected the Confluent magic byte 0", record[0]));
                }
                let id = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
                if let Some(want) = self.format.schema_id.filter(|w| *w != id) {
                    return Err(format!("schema id {id}: expected {want} (the writer schema of the pipeline file)"));
                }
                &record[CONFLUENT_HEADER_LEN..]
            }
        };
        let mut c = Cursor { b: datum, at: 0 };
        for (i, step) in self.steps.iter().enumerate() {
            let r = match step {
                Step::Column(col, read) => self.read(&mut c, read, &mut slots[*col], buf),
                Step::Skip(t) => self.skip(&mut c, t, 0),
            };
            r.map_err(|e| format!("field {}: {e}", self.schema.fields()[i].0))?;
        }
        if c.at != datum.len() {
            return Err(format!("{} byte(s) left after the Avro record", datum.len() - c.at));
        }
        Ok(())
    }

    fn read(&self, c: &mut Cursor<'_>, read: &Read, slot: &mut Slot, buf: &mut String) -> Result<(), String> {
        *slot = match read {
            Read::Null => Slot::Null,
            Read::Bool => match c.byte()? {
                0 => Slot::Bool(false),
                1 => Slot::Bool(true),
                b => return Err(format!("boolean byte {b}, expected 0 or 1")),
            },
            Read::Int => Slot::Int(c.long()?),
            Read::IntToFloat => Slot::Float(c.long()? as f64),
            Read::Float => Slot::Float(f32::from_le_bytes(c.take(4)?.try_into().unwrap_or_default()) as f64),
            Read::Double => Slot::Float(f64::from_le_bytes(c.take(8)?.try_into().unwrap_or_default())),
            Read::Str => {
                let s = c.str()?;
                let start = buf.len();
                buf.push_str(s);
                Slot::Str(start, buf.len())
            }
            Read::Symbol(i) => {
                let Named::Enum { symbols, .. } = &self.schema.named[*i] else { return Err("not an enum".into()) };
                let n = c.long()?;
                let s = usize::try_from(n)
                    .ok()
                    .and_then(|n| symbols.get(n))
                    .ok_or_else(|| format!("enum index {n} out of range (the enum has {})", symbols.len()))?;
                let start = buf.len();
                buf.push_str(s);
                Slot::Str(start, buf.len())
            }
            Read::MicrosToMillis => Slot::Int(c.long()?.div_euclid(1000)),
            Read::TextTime => {
                let s = c.str()?;
                Slot::Int(parse_timestamp(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp"))?)
            }
            Read::Union(branches) => {
                let n = c.long()?;
                let b = usize::try_from(n)
                    .ok()
                    .and_then(|n| branches.get(n))
                    .ok_or_else(|| format!("union branch {n} out of range (the union has {})", branches.len()))?;
                return self.read(c, b, slot, buf);
            }
        };
        Ok(())
    }

    /// Reads past one value of type `t`.
    fn skip(&self, c: &mut Cursor<'_>, t: &Ty, depth: usize) -> Result<(), String> {
        if depth > 64 {
            return Err("values nested more than 64 deep".into());
        }
        match t {
            Ty::Null => {}
            Ty::Boolean => {
                c.byte()?;
            }
            Ty::Int | Ty::Long | Ty::TimestampMillis | Ty::TimestampMicros => {
                c.long()?;
            }
            Ty::Float => {
                c.take(4)?;
            }
            Ty::Double => {
                c.take(8)?;
            }
            Ty::Bytes | Ty::String => {
                let n = c.len()?;
                c.take(n)?;
            }
            Ty::Array(items) => self.blocks(c, |me, c| me.skip(c, items, depth + 1))?,
            Ty::Map(values) => self.blocks(c, |me, c| {
                let n = c.len()?;
                c.take(n)?;
                me.skip(c, values, depth + 1)
            })?,
            Ty::Union(branches) => {
                let n = c.long()?;
                let b = usize::try_from(n)
                    .ok()
                    .and_then(|n| branches.get(n))
                    .ok_or_else(|| format!("union branch {n} out of range (the union has {})", branches.len()))?;
                self.skip(c, b, depth + 1)?;
            }
            Ty::Named(i) => match &self.schema.named[*i] {
                Named::Record { fields, .. } => {
                    for (_, ft) in fields {
                        self.skip(c, ft, depth + 1)?;
                    }
                }
                Named::Enum { .. } => {
                    c.long()?;
                }
                Named::Fixed { size, .. } => {
                    c.take(*size)?;
                }
            },
        }
        Ok(())
    }

    /// Array and map blocks: a count (negative: followed by the block's
    /// byte size), items, until a zero count.
    fn blocks(
        &self,
        c: &mut Cursor<'_>,
        mut item: impl FnMut(&Self, &mut Cursor<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let n = c.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                let size = c.len()?;
                c.take(size)?;
                continue;
            }
            if n > MAX_BLOCK_ITEMS {
                return Err(format!("a block of {n} items (at most {MAX_BLOCK_ITEMS})"));
            }
            for _ in 0..n {
                item(self, c)?;
            }
        }
    }
}

/// The most items one array or map block may claim: items of `null` take
/// no bytes, so a count is not bounded by the record's length.
const MAX_BLOCK_ITEMS: i64 = 1 << 24;

/// A read position in a datum.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn ended(&self, want: &str) -> String {
        format!("the record ended at byte {} ({want} expected)", self.at)
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.b.get(self.at).ok_or_else(|| self.ended("a byte"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end =
            self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or_else(|| {
                format!("{n} byte(s) wanted at byte {}, but the record has {}", self.at, self.b.len())
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// A zig-zag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.b.get(self.at).ok_or_else(|| self.ended("a number"))?;
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(format!("a varint longer than 10 bytes at byte {}", self.at))
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative length {n} at byte {}", self.at))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|e| format!("a string that is not UTF-8 ({e})"))
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Appends the zig-zag varint of `v`.
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Writes JSON objects as Avro data of a writer's schema (top-level fields
/// of primitive types, enums and unions of them): for the generator, the
/// benchmark and tests. Timestamps take RFC 3339 text or epoch ms.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    schema: AvroSchema,
}

impl AvroEncoder {
    /// An encoder of `schema`'s records.
    pub fn new(schema: AvroSchema) -> AvroEncoder {
        AvroEncoder { schema }
    }

    /// The schema.
    pub fn schema(&self) -> &AvroSchema {
        &self.schema
    }

    /// Appends the datum of `record` (a field it lacks is null); fails,
    /// saying which field, when a value does not fit.
    pub fn encode(&self, record: &serde_json::Map<String, Value>, out: &mut Vec<u8>) -> Result<(), String> {
        for (name, t) in self.schema.fields() {
            let v = record.get(name).unwrap_or(&Value::Null);
            self.value(t, v, out).map_err(|e| format!("field {name}: {e}"))?;
        }
        Ok(())
    }

    fn value(&self, t: &Ty, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let want = |w: &str| Err(format!("expected {w}, got {v}"));
        match (t, v) {
            (Ty::Null, Value::Null) => {}
            (Ty::Boolean, Value::Bool(b)) => out.push(*b as u8),
            (Ty::Int, Value::Number(n)) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n) => put_long(out, n as i64),
                None => return want("a 32-bit integer"),
            },
            (Ty::Long, Value::Number(n)) => match n.as_i64() {
                Some(n) => put_long(out, n),
                None => return want("an integer"),
            },
            (Ty::Float, Value::Number(n)) => {
                out.extend_from_slice(&(n.as_f64().unwrap_or(f64::NAN) as f32).to_le_bytes())
            }
            (Ty::Double, Value::Number(n)) => out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes()),
            (Ty::String, Value::String(s)) => {
                put_long(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            }
            (Ty::Bytes, Value::String(s)) => {
                put_long(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            }
            (Ty::TimestampMillis | Ty::TimestampMicros, v) => {
                let ms = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => parse_timestamp(s),
                    _ => None,
                };
                let Some(ms) = ms else { return want("an RFC 3339 timestamp or epoch ms") };
                put_long(out, if *t == Ty::TimestampMicros { ms.saturating_mul(1000) } else { ms });
            }
            (Ty::Named(i), Value::String(s)) if matches!(self.schema.named[*i], Named::Enum { .. }) => {
                let Named::Enum { symbols, .. } = &self.schema.named[*i] else { unreachable!() };
                match symbols.iter().position(|x| x == s) {
                    Some(p) => put_long(out, p as i64),
                    None => return want(&format!("one of the symbols {}", symbols.join(", "))),
                }
            }
            (Ty::Union(branches), v) => {
                let mut last = String::new();
                for (i, b) in branches.iter().enumerate() {
                    let mut tmp = Vec::new();
                    match self.value(b, v, &mut tmp) {
                        Ok(()) => {
                            put_long(out, i as i64);
                            out.extend_from_slice(&tmp);
                            return Ok(());
                        }
                        Err(e) => last = e,
                    }
                }
                return Err(last);
            }
            (t, _) => {
                let mut w = String::new();
                let _ = write!(w, "a value of type {}", self.schema.describe(t));
                return want(&w);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn varints_are_zig_zag() {
        for (v, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (-64, vec![0x7f]), (64, vec![0x80, 1])] {
            assert_eq!(datum(|o| put_long(o, v)), bytes, "{v}");
            let mut c = Cursor { b: &bytes, at: 0 };
            assert_eq!(c.long().unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, 1_704_067_200_000, -300] {
            let b = datum(|o| put_long(o, v));
            assert_eq!(Cursor { b: &b, at: 0 }.long().unwrap(), v);
        }
        let e = Cursor { b: &[0xff; 11], at: 0 }.long().unwrap_err();
        assert!(e.contains("longer than 10 bytes"), "{e}");
    }

    #[test]
    fn yaml_flavoured_schemas_and_huge_blocks() {
        let s = AvroSchema::from_json(&serde_json::json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": [null, "int"]},
            {"name": "f", "type": {"type": "fixed", "name": "F", "size": "2"}},
            {"name": "xs", "type": {"type": "array", "items": "null"}}]}))
        .unwrap();
        assert_eq!(s.to_json()["fields"][1]["type"]["size"], 2);
        let reader = AvroReader {
            format: AvroFormat { framing: AvroFraming::Plain, ..Default::default() },
            steps: s.fields().iter().map(|(_, t)| Step::Skip(t.clone())).collect(),
            schema: s,
        };
        let mut d = vec![0, b'a', b'b'];
        put_long(&mut d, i64::MAX);
        let e = reader.record(&d, &mut [], &mut String::new()).unwrap_err();
        assert!(e.starts_with("field xs: a block of"), "{e}");
        let mut d = vec![2, 4, b'a', b'b'];
        put_long(&mut d, 3);
        put_long(&mut d, 0);
        assert_eq!(reader.record(&d, &mut [], &mut String::new()), Ok(()));
    }

    #[test]
    fn schemas_parse_with_named_types_and_round_trip_to_json() {
        let text = r#"{"type":"record","name":"Tx","namespace":"com.shop","fields":[
            {"name":"id","type":"string"},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
            {"name":"again","type":["null","Kind"]},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"tags","type":{"type":"map","values":{"type":"array","items":"com.shop.Kind"}}},
            {"name":"next","type":["null","Tx"]}]}"#;
        let s = AvroSchema::parse(text).unwrap();
        assert_eq!(s.field_names(), vec!["id", "kind", "again", "ts", "tags", "next"]);
        assert_eq!(AvroSchema::from_json(&s.to_json()).unwrap(), s);
        for (bad, want) in [
            (r#""string""#, "expected a record"),
            (r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#, "unknown type `Nope`"),
            (r#"{"type":"record","name":"R","fields":[{"name":"a","type":[]}]}"#, "empty union"),
            (r#"{"type":"record","name":"R"}"#, "no `fields`"),
            (r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#, "twice"),
            ("{", "not JSON"),
            (
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":[null,"int"]},{"name":"f","type":{"type":"fixed","name":"F","size":"x"}}]}"#,
                "fixed `F` has no `size`",
            ),
        ] {
            let e = AvroSchema::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
