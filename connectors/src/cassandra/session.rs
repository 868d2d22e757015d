//! A CQL session from contact points, with a connect timeout and a clear
//! error; DDL from Arrow schemas (waiting for schema agreement); and reads
//! of whole tables for tests and the CLI.

#[cfg(feature = "arrow")]
use super::convert::rows_to_batch;
use super::schema::{create_keyspace_cql, select_all_cql};
#[cfg(feature = "arrow")]
use super::schema::{create_table_cql, PrimaryKey};
use super::{query_err, Error, Result};
#[cfg(feature = "arrow")]
use datafusion::arrow::array::RecordBatch;
#[cfg(feature = "arrow")]
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use futures::TryStreamExt;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::{CqlValue, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the nodes are and how long to wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraConfig {
    /// `host:port` of one or more nodes (the native transport port, 9042 by default).
    pub contact_points: Vec<String>,
    /// The local datacenter, preferred for requests.
    pub local_dc: Option<String>,
    /// How long connecting may take in all.
    pub connect_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
}

impl CassandraConfig {
    /// Contact points with a 30 s connect and a 12 s request timeout.
    pub fn new<S: AsRef<str>>(contact_points: &[S]) -> Self {
        CassandraConfig {
            contact_points: contact_points.iter().map(|c| c.as_ref().to_string()).collect(),
            local_dc: None,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(12),
        }
    }
}

/// A connected session (cheap to clone: one pool shared).
#[derive(Clone)]
pub struct CassandraSession {
    session: Arc<Session>,
    contact_points: String,
}

impl std::fmt::Debug for CassandraSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSession").field("contact_points", &self.contact_points).finish()
    }
}

/// Rows read from a table: the column names and each row's cells.
#[derive(Debug, Clone, PartialEq)]
pub struct CqlRows {
    /// The column names, in the order of the cells.
    pub columns: Vec<String>,
    /// The rows (None for null cells).
    pub rows: Vec<Vec<Option<CqlValue>>>,
}

impl CqlRows {
    /// The rows as JSON objects (`{column: value}`), for `--output json`:
    /// numbers and booleans as JSON, timestamps as ms, blobs as hex, the
    /// rest as their CQL text.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        self.columns
                            .iter()
                            .cloned()
                            .zip(r.iter().map(|c| c.as_ref().map_or(serde_json::Value::Null, cql_json)))
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

fn cql_json(v: &CqlValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        CqlValue::Text(s) | CqlValue::Ascii(s) => J::String(s.clone()),
        CqlValue::Boolean(b) => J::Bool(*b),
        CqlValue::TinyInt(x) => J::from(*x),
        CqlValue::SmallInt(x) => J::from(*x),
        CqlValue::Int(x) => J::from(*x),
        CqlValue::BigInt(x) => J::from(*x),
        CqlValue::Counter(c) => J::from(c.0),
        CqlValue::Float(x) => J::from(*x),
        CqlValue::Double(x) => J::from(*x),
        CqlValue::Timestamp(t) => J::from(t.0),
        CqlValue::Blob(b) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        CqlValue::Uuid(u) => J::String(u.to_string()),
        other => J::String(format!("{other:?}")),
    }
}

impl CassandraSession {
    /// Connects to the contact points; fails within `connect_timeout` with
    /// the addresses tried and the driver's reason.
    pub async fn connect(config: &CassandraConfig) -> Result<CassandraSession> {
        let contact_points = config.contact_points.join(",");
        if config.contact_points.is_empty() {
            return Err(Error::Connect {
                contact_points: "(none)".into(),
                timeout: config.connect_timeout,
                reason: "no contact points given (expected host:port of at least one node)".into(),
            });
        }
        let profile = ExecutionProfile::builder().request_timeout(Some(config.request_timeout)).build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .connection_timeout(config.connect_timeout)
            .default_execution_profile_handle(profile.into_handle())
            .schema_agreement_timeout(Duration::from_secs(60));
        if let Some(dc) = &config.local_dc {
            builder = builder.prefer_datacenter(dc.clone());
        }
        let built = tokio::time::timeout(config.connect_timeout, builder.build()).await;
        let session = match built {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Error::Connect { contact_points, timeout: config.connect_timeout, reason: e.to_string() })
            }
            Err(_) => {
                return Err(Error::Connect {
                    contact_points,
                    timeout: config.connect_timeout,
                    reason: "no node answered in time".into(),
                })
            }
        };
        tracing::info!(%contact_points, "cassandra session connected");
        Ok(CassandraSession { session: Arc::new(session), contact_points })
    }

    /// The driver's session, for statements this module does not cover.
    pub fn inner(&self) -> &Arc<Session> {
        &self.session
    }

    /// Runs one DDL statement and waits until every node agrees on the schema.
    pub async fn execute_ddl(&self, cql: &str) -> Result<()> {
        self.session.query_unpaged(cql, ()).await.map_err(query_err(format!("run `{cql}`")))?;
        self.session.await_schema_agreement().await.map_err(query_err(format!("agree on the schema after `{cql}`")))?;
        Ok(())
    }

    /// Creates keyspace `name` (if absent) with `NetworkTopologyStrategy`,
    /// `replication` mapping each datacenter to its replication factor.
    pub async fn create_keyspace(&self, name: &str, replication: &BTreeMap<String, u32>) -> Result<()> {
        self.execute_ddl(&create_keyspace_cql(name, replication)?).await
    }

    /// Creates table `keyspace.table` (if absent) with `schema`'s columns
    /// and `key` as its primary key.
    #[cfg(feature = "arrow")]
    pub async fn create_table(&self, keyspace: &str, table: &str, schema: &Schema, key: &PrimaryKey) -> Result<()> {
        self.execute_ddl(&create_table_cql(keyspace, table, schema, key)?).await
    }

    /// Every row of `keyspace.table` (all pages), at most `limit` of them.
    pub async fn read_rows(&self, keyspace: &str, table: &str, limit: Option<usize>) -> Result<CqlRows> {
        let cql = select_all_cql::<&str>(keyspace, table, &[])?;
        self.select(&cql, limit).await
    }

    async fn select(&self, cql: &str, limit: Option<usize>) -> Result<CqlRows> {
        let op = format!("read `{cql}`");
        let pager = self.session.query_iter(cql, ()).await.map_err(query_err(op.clone()))?;
        let columns: Vec<String> = pager.column_specs().iter().map(|c| c.name().to_string()).collect();
        let mut stream = pager.rows_stream::<Row>().map_err(query_err(op.clone()))?;
        let mut rows = Vec::new();
        while limit.is_none_or(|l| rows.len() < l) {
            match stream.try_next().await.map_err(query_err(op.clone()))? {
                Some(r) => rows.push(r.columns),
                None => break,
            }
        }
        Ok(CqlRows { columns, rows })
    }

    /// Every row of `keyspace.table` as one record batch of `schema` (its
    /// columns are selected by name), in the table's token order.
    #[cfg(feature = "arrow")]
    pub async fn read_batch(&self, keyspace: &str, table: &str, schema: SchemaRef) -> Result<RecordBatch> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let cql = select_all_cql(keyspace, table, &names)?;
        let rows = self.select(&cql, None).await?;
        rows_to_batch(schema, &rows.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::value::CqlTimestamp;

    #[test]
    fn rows_as_json_objects() {
        let rows = CqlRows {
            columns: vec!["k".into(), "n".into(), "t".into(), "b".into(), "x".into()],
            rows: vec![vec![
                Some(CqlValue::Text("a".into())),
                Some(CqlValue::BigInt(3)),
                Some(CqlValue::Timestamp(CqlTimestamp(5))),
                Some(CqlValue::Blob(vec![0xab, 1])),
                None,
            ]],
        };
        assert_eq!(rows.to_json(), serde_json::json!([{"k": "a", "n": 3, "t": 5, "b": "ab01", "x": null}]));
    }

    #[tokio::test]
    async fn no_contact_points_is_a_clear_error() {
        let e = CassandraSession::connect(&CassandraConfig::new::<&str>(&[])).await.unwrap_err().to_string();
        assert!(e.contains("no contact points"), "{e}");
    }
}
