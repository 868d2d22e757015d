//! The upsert sink: record batches written as prepared INSERTs (an upsert
//! in CQL), with at most `max_in_flight` writes outstanding, each retried
//! with backoff while the error may pass, and a `flush` that returns once
//! every row written so far is acknowledged — what a stage does before it
//! writes a checkpoint.

use super::convert::batch_to_rows;
use super::retry::{retryable, Backoff};
use super::schema::{cql_type_of, cql_type_of_type, insert_cql};
use super::session::CassandraSession;
use super::{query_err, Error, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlValue;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How the sink writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkOptions {
    /// Writes outstanding at most; `write` waits beyond it.
    pub max_in_flight: usize,
    /// Retries of a failed write.
    pub backoff: Backoff,
    /// The write consistency.
    pub consistency: Consistency,
}

impl Default for SinkOptions {
    /// 64 in flight, [`Backoff::default`], `LOCAL_QUORUM`.
    fn default() -> Self {
        SinkOptions { max_in_flight: 64, backoff: Backoff::default(), consistency: Consistency::LocalQuorum }
    }
}

/// Upserts record batches into one table.
pub struct CassandraSink {
    session: Arc<Session>,
    insert: Arc<PreparedStatement>,
    table: String,
    /// The columns written, with their CQL types, in INSERT order.
    columns: Vec<(String, super::CqlType)>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<std::result::Result<(), String>>,
    backoff: Backoff,
    written: u64,
    failed: usize,
    first_failure: Option<String>,
}

impl std::fmt::Debug for CassandraSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSink")
            .field("table", &self.table)
            .field("in_flight", &self.tasks.len())
            .field("written", &self.written)
            .finish()
    }
}

impl CassandraSink {
    /// Prepares the upsert of `schema`'s columns into `keyspace.table`
    /// (which must exist with those columns).
    pub async fn new(
        session: &CassandraSession,
        keyspace: &str,
        table: &str,
        schema: &Schema,
        options: SinkOptions,
    ) -> Result<CassandraSink> {
        let columns: Vec<(String, super::CqlType)> =
            schema.fields().iter().map(|f| Ok((f.name().clone(), cql_type_of(f)?))).collect::<Result<_>>()?;
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let cql = insert_cql(keyspace, table, &names)?;
        let mut insert = session
            .inner()
            .prepare(cql.as_str())
            .await
            .map_err(query_err(format!("prepare the upsert into `{keyspace}.{table}`: {cql}")))?;
        insert.set_consistency(options.consistency);
        insert.set_is_idempotent(true);
        Ok(CassandraSink {
            session: session.inner().clone(),
            insert: Arc::new(insert),
            table: format!("{keyspace}.{table}"),
            columns,
            permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            tasks: JoinSet::new(),
            backoff: options.backoff,
            written: 0,
            failed: 0,
            first_failure: None,
        })
    }

    /// Rows acknowledged since the sink was created.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes outstanding.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Queues every row of `batch` for writing; returns once they are all
    /// in flight (waiting while `max_in_flight` are). The batch must have
    /// the sink's columns (by name, with types of the same CQL type; extra
    /// columns are ignored). Returns the number of rows queued.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<usize> {
        let schema = batch.schema();
        let mut indices = Vec::with_capacity(self.columns.len());
        for (name, cql) in &self.columns {
            let Ok(i) = schema.index_of(name) else {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::Schema {
                    what: format!("batch written to `{}`", self.table),
                    reason: format!("it lacks column `{name}` (it has: {})", have.join(", ")),
                });
            };
            let got = cql_type_of_type(schema.field(i).data_type());
            if got != Some(*cql) {
                return Err(Error::Schema {
                    what: format!("batch written to `{}`", self.table),
                    reason: format!(
                        "column `{name}` is {} (expected a type that maps to CQL {cql})",
                        schema.field(i).data_type()
                    ),
                });
            }
            indices.push(i);
        }
        let projected = batch
            .project(&indices)
            .map_err(|e| Error::Schema { what: format!("batch written to `{}`", self.table), reason: e.to_string() })?;
        let rows = batch_to_rows(&projected)?;
        let n = rows.len();
        for row in rows {
            let permit = self.permits.clone().acquire_owned().await.expect("the sink never closes its semaphore");
            let (session, insert, backoff, table) =
                (self.session.clone(), self.insert.clone(), self.backoff, self.table.clone());
            self.tasks.spawn(async move {
                let r = write_row(&session, &insert, row, backoff, &table).await;
                drop(permit);
                r
            });
            while let Some(done) = self.tasks.try_join_next() {
                self.settle(done);
            }
        }
        Ok(n)
    }

    /// Waits until every row written so far is acknowledged. Errors if any
    /// failed (after its retries) since the last flush, with how many and
    /// the first reason; the failures are then cleared.
    pub async fn flush(&mut self) -> Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            self.settle(done);
        }
        match self.first_failure.take() {
            None => Ok(()),
            Some(first) => {
                Err(Error::Unwritten { table: self.table.clone(), failed: std::mem::take(&mut self.failed), first })
            }
        }
    }

    fn settle(&mut self, done: std::result::Result<std::result::Result<(), String>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(())) => self.written += 1,
            Ok(Err(why)) => self.fail(why),
            Err(e) => self.fail(format!("the write task ended: {e}")),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::warn!(table = %self.table, %why, "cassandra row not written");
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }
}

/// One upsert, retried with backoff while the error may pass.
async fn write_row(
    session: &Session,
    insert: &PreparedStatement,
    row: Vec<Option<CqlValue>>,
    backoff: Backoff,
    table: &str,
) -> std::result::Result<(), String> {
    let mut retry = 0;
    loop {
        match session.execute_unpaged(insert, &row).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                retry += 1;
                match backoff.delay(retry).filter(|_| retryable(&e)) {
                    Some(wait) => {
                        tracing::debug!(%table, error = %e, ?wait, retry, "cassandra write failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(format!("{e} (after {retry} attempt(s); row {row:?})")),
                }
            }
        }
    }
}
