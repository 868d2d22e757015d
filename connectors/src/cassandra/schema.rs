//! From Arrow schemas to CQL: the type mapping, identifiers, and the text of
//! the DDL and DML statements the session and the sink send. Pure.

use super::{Error, Result};
#[cfg(feature = "arrow")]
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::collections::BTreeMap;

/// The CQL types an Arrow column maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CqlType {
    /// `text` (Utf8, LargeUtf8, Utf8View).
    Text,
    /// `tinyint` (Int8).
    TinyInt,
    /// `smallint` (Int16, UInt8).
    SmallInt,
    /// `int` (Int32, UInt16).
    Int,
    /// `bigint` (Int64, UInt32).
    BigInt,
    /// `float` (Float32).
    Float,
    /// `double` (Float64).
    Double,
    /// `boolean` (Boolean).
    Boolean,
    /// `timestamp`, ms since the epoch (Timestamp of any unit and zone, Date64).
    Timestamp,
    /// `date` (Date32).
    Date,
    /// `blob` (Binary, LargeBinary, BinaryView, FixedSizeBinary).
    Blob,
}

impl CqlType {
    /// The CQL name.
    pub fn cql(self) -> &'static str {
        match self {
            CqlType::Text => "text",
            CqlType::TinyInt => "tinyint",
            CqlType::SmallInt => "smallint",
            CqlType::Int => "int",
            CqlType::BigInt => "bigint",
            CqlType::Float => "float",
            CqlType::Double => "double",
            CqlType::Boolean => "boolean",
            CqlType::Timestamp => "timestamp",
            CqlType::Date => "date",
            CqlType::Blob => "blob",
        }
    }

    /// The Arrow type a column of this CQL type reads back as.
    #[cfg(feature = "arrow")]
    pub fn arrow(self) -> DataType {
        use datafusion::arrow::datatypes::TimeUnit;
        match self {
            CqlType::Text => DataType::Utf8,
            CqlType::TinyInt => DataType::Int8,
            CqlType::SmallInt => DataType::Int16,
            CqlType::Int => DataType::Int32,
            CqlType::BigInt => DataType::Int64,
            CqlType::Float => DataType::Float32,
            CqlType::Double => DataType::Float64,
            CqlType::Boolean => DataType::Boolean,
            CqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            CqlType::Date => DataType::Date32,
            CqlType::Blob => DataType::Binary,
        }
    }
}

impl std::fmt::Display for CqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cql())
    }
}

#[cfg(feature = "arrow")]
const SUPPORTED: &str = "Utf8, Int8/16/32/64, UInt8/16/32, Float32/64, Boolean, Timestamp, Date32, Date64, Binary";

/// The CQL type of an Arrow type (dictionaries map as their values).
#[cfg(feature = "arrow")]
pub fn cql_type_of_type(t: &DataType) -> Option<CqlType> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => CqlType::Text,
        DataType::Int8 => CqlType::TinyInt,
        DataType::Int16 | DataType::UInt8 => CqlType::SmallInt,
        DataType::Int32 | DataType::UInt16 => CqlType::Int,
        DataType::Int64 | DataType::UInt32 => CqlType::BigInt,
        DataType::Float32 => CqlType::Float,
        DataType::Float64 => CqlType::Double,
        DataType::Boolean => CqlType::Boolean,
        DataType::Timestamp(_, _) | DataType::Date64 => CqlType::Timestamp,
        DataType::Date32 => CqlType::Date,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => CqlType::Blob,
        DataType::Dictionary(_, v) => return cql_type_of_type(v),
        _ => return None,
    })
}

/// The CQL type of an Arrow column, or an error naming the column, its
/// type and the types that map.
#[cfg(feature = "arrow")]
pub fn cql_type_of(field: &Field) -> Result<CqlType> {
    cql_type_of_type(field.data_type()).ok_or_else(|| Error::Schema {
        what: format!("column `{}`", field.name()),
        reason: match field.data_type() {
            DataType::UInt64 => "UInt64 has no CQL type holding every value (cast it to Int64)".into(),
            t => format!("Arrow type {t} has no CQL mapping (supported: {SUPPORTED})"),
        },
    })
}

/// CQL words that cannot be column names unquoted.
const RESERVED: &[&str] = &[
    "add",
    "allow",
    "alter",
    "and",
    "apply",
    "asc",
    "authorize",
    "batch",
    "begin",
    "by",
    "columnfamily",
    "create",
    "default",
    "delete",
    "desc",
    "describe",
    "drop",
    "entries",
    "execute",
    "from",
    "full",
    "grant",
    "if",
    "in",
    "index",
    "infinity",
    "insert",
    "into",
    "is",
    "keyspace",
    "limit",
    "materialized",
    "mbean",
    "mbeans",
    "modify",
    "nan",
    "norecursive",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "primary",
    "rename",
    "replace",
    "revoke",
    "schema",
    "select",
    "set",
    "table",
    "to",
    "token",
    "truncate",
    "unlogged",
    "unset",
    "update",
    "use",
    "using",
    "view",
    "where",
    "with",
];

/// A column name as CQL text: as is when it is a plain lowercase
/// identifier, double-quoted (case kept, `"` doubled) otherwise.
pub fn cql_identifier(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::Schema { what: "column name".into(), reason: "empty (expected a name)".into() });
    }
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    Ok(if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) })
}

/// A keyspace or table name: 1–48 characters of `[A-Za-z0-9_]` (Cassandra's
/// rule); quoted when not all lowercase.
fn schema_name(kind: &str, name: &str) -> Result<String> {
    if name.is_empty() || name.len() > 48 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Schema {
            what: format!("{kind} name `{name}`"),
            reason: "expected 1 to 48 characters of [A-Za-z0-9_]".into(),
        });
    }
    cql_identifier(name)
}

/// `keyspace.table`, each part checked and quoted as needed.
fn qualified(keyspace: &str, table: &str) -> Result<String> {
    Ok(format!("{}.{}", schema_name("keyspace", keyspace)?, schema_name("table", table)?))
}

/// A clustering column and its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusteringColumn {
    /// The column.
    pub name: String,
    /// Newest (largest) first.
    pub descending: bool,
}

/// A table's primary key: the partition key (one or more columns) and the
/// clustering columns, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKey {
    /// The partition key's columns.
    pub partition: Vec<String>,
    /// The clustering columns.
    pub clustering: Vec<ClusteringColumn>,
}

impl PrimaryKey {
    /// The first column is the partition key, the others cluster ascending.
    pub fn from_columns<S: AsRef<str>>(columns: &[S]) -> Self {
        let mut it = columns.iter().map(|c| c.as_ref().to_string());
        PrimaryKey {
            partition: it.next().into_iter().collect(),
            clustering: it.map(|name| ClusteringColumn { name, descending: false }).collect(),
        }
    }

    /// A composite partition key and ascending clustering columns.
    pub fn new<S: AsRef<str>, T: AsRef<str>>(partition: &[S], clustering: &[T]) -> Self {
        PrimaryKey {
            partition: partition.iter().map(|c| c.as_ref().to_string()).collect(),
            clustering: clustering
                .iter()
                .map(|c| ClusteringColumn { name: c.as_ref().to_string(), descending: false })
                .collect(),
        }
    }

    /// Makes clustering column `name` descending.
    pub fn descending(mut self, name: &str) -> Self {
        for c in &mut self.clustering {
            if c.name == name {
                c.descending = true;
            }
        }
        self
    }

    /// Every key column: partition first, then clustering.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.partition.iter().map(String::as_str).chain(self.clustering.iter().map(|c| c.name.as_str()))
    }

    #[cfg(feature = "arrow")]
    fn validate(&self, schema: &Schema) -> Result<()> {
        let bad = |reason: String| Err(Error::Schema { what: "primary key".into(), reason });
        if self.partition.is_empty() {
            return bad("no partition key column (expected at least one)".into());
        }
        let mut seen = Vec::new();
        for c in self.columns() {
            if schema.field_with_name(c).is_err() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return bad(format!("column `{c}` is not in the schema (columns: {})", names.join(", ")));
            }
            if seen.contains(&c) {
                return bad(format!("column `{c}` is named twice"));
            }
            seen.push(c);
        }
        Ok(())
    }
}

/// `CREATE KEYSPACE IF NOT EXISTS … WITH replication = {'class':
/// 'NetworkTopologyStrategy', 'dc': rf, …}`.
pub fn create_keyspace_cql(keyspace: &str, replication: &BTreeMap<String, u32>) -> Result<String> {
    let ks = schema_name("keyspace", keyspace)?;
    if replication.is_empty() {
        return Err(Error::Schema {
            what: format!("keyspace `{keyspace}` replication"),
            reason: "no datacenter (expected at least one dc: replication factor)".into(),
        });
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
    for (dc, rf) in replication {
        if dc.is_empty() || *rf == 0 {
            return Err(Error::Schema {
                what: format!("keyspace `{keyspace}` replication"),
                reason: format!("datacenter `{dc}` with replication factor {rf} (expected a name and 1 or more)"),
            });
        }
        parts.push(format!("'{}': {rf}", dc.replace('\'', "''")));
    }
    Ok(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{{}}}", parts.join(", ")))
}

/// `CREATE TABLE IF NOT EXISTS ks.t (col type, …, PRIMARY KEY ((p…), c…))`
/// with `CLUSTERING ORDER BY` when a clustering column is descending.
#[cfg(feature = "arrow")]
pub fn create_table_cql(keyspace: &str, table: &str, schema: &Schema, key: &PrimaryKey) -> Result<String> {
    let name = qualified(keyspace, table)?;
    if schema.fields().is_empty() {
        return Err(Error::Schema { what: format!("table `{keyspace}.{table}`"), reason: "no columns".into() });
    }
    key.validate(schema)?;
    let mut cols = Vec::new();
    for f in schema.fields() {
        cols.push(format!("{} {}", cql_identifier(f.name())?, cql_type_of(f)?));
    }
    let ids = |names: &mut dyn Iterator<Item = &str>| -> Result<Vec<String>> { names.map(cql_identifier).collect() };
    let partition = ids(&mut key.partition.iter().map(String::as_str))?.join(", ");
    let clustering = ids(&mut key.clustering.iter().map(|c| c.name.as_str()))?;
    let mut pk = format!("({partition})");
    for c in &clustering {
        pk.push_str(", ");
        pk.push_str(c);
    }
    let mut cql = format!("CREATE TABLE IF NOT EXISTS {name} ({}, PRIMARY KEY ({pk}))", cols.join(", "));
    if key.clustering.iter().any(|c| c.descending) {
        let order: Vec<String> = key
            .clustering
            .iter()
            .zip(&clustering)
            .map(|(c, id)| format!("{id} {}", if c.descending { "DESC" } else { "ASC" }))
            .collect();
        cql.push_str(&format!(" WITH CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    Ok(cql)
}

/// `INSERT INTO ks.t (a, b) VALUES (?, ?)`: an upsert of every column.
pub fn insert_cql<S: AsRef<str>>(keyspace: &str, table: &str, columns: &[S]) -> Result<String> {
    let name = qualified(keyspace, table)?;
    if columns.is_empty() {
        return Err(Error::Schema { what: format!("insert into `{keyspace}.{table}`"), reason: "no columns".into() });
    }
    let ids: Vec<String> = columns.iter().map(|c| cql_identifier(c.as_ref())).collect::<Result<_>>()?;
    let marks = vec!["?"; ids.len()].join(", ");
    Ok(format!("INSERT INTO {name} ({}) VALUES ({marks})", ids.join(", ")))
}

/// `SELECT v… FROM ks.t WHERE k1 = ? AND k2 = ? LIMIT 1`.
pub fn select_by_key_cql<S: AsRef<str>, T: AsRef<str>>(
    keyspace: &str,
    table: &str,
    key_columns: &[S],
    value_columns: &[T],
) -> Result<String> {
    let name = qualified(keyspace, table)?;
    if key_columns.is_empty() || value_columns.is_empty() {
        return Err(Error::Schema {
            what: format!("lookup in `{keyspace}.{table}`"),
            reason: "expected at least one key column and one value column".into(),
        });
    }
    let values: Vec<String> = value_columns.iter().map(|c| cql_identifier(c.as_ref())).collect::<Result<_>>()?;
    let conds: Vec<String> =
        key_columns.iter().map(|c| Ok(format!("{} = ?", cql_identifier(c.as_ref())?))).collect::<Result<_>>()?;
    Ok(format!("SELECT {} FROM {name} WHERE {} LIMIT 1", values.join(", "), conds.join(" AND ")))
}

/// `SELECT c… FROM ks.t` (every column when `columns` is empty).
pub(crate) fn select_all_cql<S: AsRef<str>>(keyspace: &str, table: &str, columns: &[S]) -> Result<String> {
    let name = qualified(keyspace, table)?;
    let cols = if columns.is_empty() {
        "*".to_string()
    } else {
        columns.iter().map(|c| cql_identifier(c.as_ref())).collect::<Result<Vec<_>>>()?.join(", ")
    };
    Ok(format!("SELECT {cols} FROM {name}"))
}

#[cfg(all(test, feature = "arrow"))]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;
    use std::sync::Arc;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("window_start", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("total", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("Flagged", DataType::Boolean, true),
        ])
    }

    #[test]
    fn arrow_types_map_to_cql() {
        let cases = [
            (DataType::Utf8, CqlType::Text),
            (DataType::LargeUtf8, CqlType::Text),
            (DataType::Int8, CqlType::TinyInt),
            (DataType::Int16, CqlType::SmallInt),
            (DataType::Int32, CqlType::Int),
            (DataType::Int64, CqlType::BigInt),
            (DataType::UInt8, CqlType::SmallInt),
            (DataType::UInt16, CqlType::Int),
            (DataType::UInt32, CqlType::BigInt),
            (DataType::Float32, CqlType::Float),
            (DataType::Float64, CqlType::Double),
            (DataType::Boolean, CqlType::Boolean),
            (DataType::Timestamp(TimeUnit::Nanosecond, None), CqlType::Timestamp),
            (DataType::Date64, CqlType::Timestamp),
            (DataType::Date32, CqlType::Date),
            (DataType::Binary, CqlType::Blob),
            (DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), CqlType::Text),
        ];
        for (arrow, cql) in cases {
            assert_eq!(cql_type_of(&Field::new("c", arrow.clone(), true)).unwrap(), cql, "{arrow}");
        }
        assert_eq!(CqlType::BigInt.to_string(), "bigint");
        assert_eq!(CqlType::Timestamp.arrow(), DataType::Timestamp(TimeUnit::Millisecond, None));
    }

    #[test]
    fn unmappable_types_name_the_column_and_the_choices() {
        let e = cql_type_of(&Field::new("big", DataType::UInt64, true)).unwrap_err().to_string();
        assert!(e.contains("column `big`") && e.contains("cast it to Int64"), "{e}");
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let e = cql_type_of(&Field::new("tags", list, true)).unwrap_err().to_string();
        assert!(e.contains("column `tags`") && e.contains("supported:"), "{e}");
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(cql_identifier("user_id").unwrap(), "user_id");
        assert_eq!(cql_identifier("Flagged").unwrap(), "\"Flagged\"");
        assert_eq!(cql_identifier("select").unwrap(), "\"select\"");
        assert_eq!(cql_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(cql_identifier("1st").unwrap(), "\"1st\"");
        assert!(cql_identifier("").is_err());
    }

    #[test]
    fn keyspace_with_network_topology() {
        let r = [("dc1".to_string(), 3), ("dc'2".to_string(), 1)].into();
        assert_eq!(
            create_keyspace_cql("fraud", &r).unwrap(),
            "CREATE KEYSPACE IF NOT EXISTS fraud WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc''2': 1, 'dc1': 3}"
        );
        assert!(create_keyspace_cql("fraud", &BTreeMap::new()).is_err());
        assert!(create_keyspace_cql("fraud", &[("dc1".to_string(), 0)].into()).is_err());
        let e = create_keyspace_cql("bad-name", &[("dc1".to_string(), 1)].into()).unwrap_err().to_string();
        assert!(e.contains("keyspace name `bad-name`"), "{e}");
    }

    #[test]
    fn table_from_schema_and_first_column_key() {
        let key = PrimaryKey::from_columns(&["user_id", "window_start"]);
        assert_eq!(
            create_table_cql("fraud", "totals", &schema(), &key).unwrap(),
            "CREATE TABLE IF NOT EXISTS fraud.totals (user_id text, window_start timestamp, total double, \
             n bigint, \"Flagged\" boolean, PRIMARY KEY ((user_id), window_start))"
        );
    }

    #[test]
    fn table_with_composite_partition_and_descending_clustering() {
        let key = PrimaryKey::new(&["user_id", "n"], &["window_start"]).descending("window_start");
        assert_eq!(
            create_table_cql("ks", "t", &schema(), &key).unwrap(),
            "CREATE TABLE IF NOT EXISTS ks.t (user_id text, window_start timestamp, total double, n bigint, \
             \"Flagged\" boolean, PRIMARY KEY ((user_id, n), window_start)) \
             WITH CLUSTERING ORDER BY (window_start DESC)"
        );
    }

    #[test]
    fn bad_primary_keys_are_explained() {
        let e = create_table_cql("ks", "t", &schema(), &PrimaryKey::from_columns(&["nope"])).unwrap_err();
        assert!(e.to_string().contains("column `nope` is not in the schema (columns: user_id,"), "{e}");
        let e = create_table_cql("ks", "t", &schema(), &PrimaryKey::from_columns::<&str>(&[])).unwrap_err();
        assert!(e.to_string().contains("no partition key"), "{e}");
        let e = create_table_cql("ks", "t", &schema(), &PrimaryKey::from_columns(&["n", "n"])).unwrap_err();
        assert!(e.to_string().contains("named twice"), "{e}");
    }

    #[test]
    fn dml_text() {
        assert_eq!(
            insert_cql("ks", "t", &["a", "Flagged"]).unwrap(),
            "INSERT INTO ks.t (a, \"Flagged\") VALUES (?, ?)"
        );
        assert_eq!(
            select_by_key_cql("ks", "t", &["a", "b"], &["c"]).unwrap(),
            "SELECT c FROM ks.t WHERE a = ? AND b = ? LIMIT 1"
        );
        assert_eq!(select_all_cql::<&str>("ks", "T", &[]).unwrap(), "SELECT * FROM ks.\"T\"");
        assert_eq!(select_all_cql("ks", "t", &["a", "b"]).unwrap(), "SELECT a, b FROM ks.t");
        assert!(insert_cql::<&str>("ks", "t", &[]).is_err());
        assert!(select_by_key_cql::<&str, &str>("ks", "t", &[], &["c"]).is_err());
    }
}
