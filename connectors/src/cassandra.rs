//! Cassandra (or Scylla) over CQL with the scylla driver: a session from
//! contact points, DDL generated from Arrow schemas (keyspace with
//! `NetworkTopologyStrategy`, table with a primary key), the upsert sink a
//! stage writes its record batches with (prepared INSERTs, bounded
//! concurrency, retries with backoff, `flush` = everything acknowledged),
//! a cached lookup by key, and a read helper for tests and the CLI.
//!
//! Upserts on a deterministic primary key are what make a stage's replay
//! after a crash harmless: the same rows written twice are the same rows.
//!
//! Where to start: [`CassandraSession::connect`], [`CassandraSink::new`],
//! [`CassandraLookup::new`]; the pure parts ([`cql_type_of`],
//! [`create_table_cql`], [`Backoff`], [`LruCache`]) need no node.

#[cfg(feature = "arrow")]
mod convert;
#[cfg(feature = "arrow")]
mod lookup;
mod retry;
mod schema;
mod session;
#[cfg(feature = "arrow")]
mod sink;

#[cfg(feature = "arrow")]
pub use convert::{batch_to_rows, rows_to_batch};
#[cfg(feature = "arrow")]
pub use lookup::{
    batched, key_bytes, load_table, BatchAnswer, CachedRow, CassandraLookup, Expiry, LookupCache, LookupStats,
    LookupTable, LookupTableBuilder, LruCache, SCAN_PAGE_SIZE,
};
pub use retry::Backoff;
pub use schema::{
    cql_identifier, create_keyspace_cql, insert_cql, select_by_key_cql, ClusteringColumn, CqlType, PrimaryKey,
};
#[cfg(feature = "arrow")]
pub use schema::{cql_type_of, cql_type_of_type, create_table_cql};
pub use scylla::statement::Consistency;
pub use scylla::value::{CqlDate, CqlTimestamp, CqlValue};
pub use session::{CassandraConfig, CassandraSession, CqlRows};
#[cfg(feature = "arrow")]
pub use sink::{CassandraSink, SinkOptions};

/// A boxed driver error, kept as the source of ours.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every Cassandra operation in this module: what was asked
/// (the operation, the keyspace or table, the statement) and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No contact point answered.
    #[error("cassandra: cannot connect to {contact_points} within {timeout:?}: {reason}")]
    Connect {
        /// The contact points tried.
        contact_points: String,
        /// The connect timeout.
        timeout: std::time::Duration,
        /// The driver's reason.
        reason: String,
    },
    /// A statement failed (after the retries, for writes).
    #[error("cassandra: {op}: {source}")]
    Query {
        /// What was being done, with the table and the CQL, e.g.
        /// "create table `ks.t`: CREATE TABLE …".
        op: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// A schema that cannot be mapped to CQL (a column type with no CQL
    /// counterpart, a bad name, a primary key naming a missing column).
    #[error("cassandra: {what}: {reason}")]
    Schema {
        /// The schema element (column, key, keyspace, table).
        what: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A value that cannot be written or read as its column's type.
    #[error("cassandra: column `{column}`, row {row}: {reason}")]
    Value {
        /// The column.
        column: String,
        /// The row's index in its batch (or result).
        row: usize,
        /// What was wrong.
        reason: String,
    },
    /// Rows that could not be written, even after retries.
    #[error("cassandra: {failed} row(s) were not written to `{table}`; the first failure: {first}")]
    Unwritten {
        /// The table, `keyspace.table`.
        table: String,
        /// How many rows failed since the last flush.
        failed: usize,
        /// The first failure.
        first: String,
    },
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn query_err<E: std::error::Error + Send + Sync + 'static>(op: impl Into<String>) -> impl FnOnce(E) -> Error {
    let op = op.into();
    move |e| Error::Query { op, source: Box::new(e) }
}
