//! The upsert sink: record batches written as prepared INSERTs (an upsert
//! in CQL), with at most `max_in_flight` writes outstanding, each retried
//! with backoff while the error may pass, and a `flush` that returns once
//! every row written so far is acknowledged — what a stage does before it
//! writes a checkpoint.
//!
//! Rows owned by the same replicas go together in unlogged batches of up to
//! `batch_rows` (a window's close emits thousands of rows at once: one
//! request per row is what limits how fast they land). Rows are grouped by
//! the replica set of their partition key's token, as the driver's token
//! map knows it, so a batch never makes its coordinator forward rows to
//! other nodes; 10 rows at most by default, which is where Cassandra starts
//! warning about batches spanning partitions.

use super::convert::batch_to_rows;
use super::retry::{retryable, Backoff};
use super::schema::{cql_type_of, cql_type_of_type, insert_cql};
use super::session::CassandraSession;
use super::{query_err, Error, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlValue;
use std::collections::HashMap;
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
    /// Rows per unlogged batch, grouped by replica set; 1 writes each row
    /// on its own.
    pub batch_rows: usize,
}

impl Default for SinkOptions {
    /// 64 in flight, [`Backoff::default`], `LOCAL_QUORUM`, batches of up to
    /// 10 rows.
    fn default() -> Self {
        SinkOptions {
            max_in_flight: 64,
            backoff: Backoff::default(),
            consistency: Consistency::LocalQuorum,
            batch_rows: 10,
        }
    }
}

/// Upserts record batches into one table.
pub struct CassandraSink {
    session: Arc<Session>,
    insert: Arc<PreparedStatement>,
    /// The unlogged batch of `batch_rows` upserts.
    batch: Arc<Batch>,
    batch_rows: usize,
    keyspace: String,
    table_name: String,
    table: String,
    /// The columns written, with their CQL types, in INSERT order.
    columns: Vec<(String, super::CqlType)>,
    permits: Arc<Semaphore>,
    /// Each write: the rows it acknowledged, or the rows it lost and why.
    tasks: JoinSet<std::result::Result<usize, (usize, String)>>,
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
        let batch_rows = options.batch_rows.max(1);
        let mut batch = Batch::new_with_statements(
            BatchType::Unlogged,
            vec![BatchStatement::PreparedStatement(insert.clone()); batch_rows],
        );
        batch.set_consistency(options.consistency);
        batch.set_is_idempotent(true);
        Ok(CassandraSink {
            session: session.inner().clone(),
            insert: Arc::new(insert),
            batch: Arc::new(batch),
            batch_rows,
            keyspace: keyspace.to_string(),
            table_name: table.to_string(),
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
        for group in self.group(rows) {
            let permit = self.permits.clone().acquire_owned().await.expect("the sink never closes its semaphore");
            let (session, insert, batch, backoff, table) =
                (self.session.clone(), self.insert.clone(), self.batch.clone(), self.backoff, self.table.clone());
            self.tasks.spawn(async move {
                let r = write_rows(&session, &insert, &batch, group, backoff, &table).await;
                drop(permit);
                r
            });
            while let Some(done) = self.tasks.try_join_next() {
                self.settle(done);
            }
        }
        Ok(n)
    }

    /// Rows in groups of at most `batch_rows` whose partitions have the
    /// same replicas (as far as the driver's token map knows; rows whose
    /// token or replicas are unknown go on their own).
    fn group(&self, rows: Vec<Vec<Option<CqlValue>>>) -> Vec<Vec<Vec<Option<CqlValue>>>> {
        if self.batch_rows <= 1 {
            return rows.into_iter().map(|r| vec![r]).collect();
        }
        let cluster = self.session.get_cluster_state();
        let mut by_replicas: HashMap<Vec<_>, Vec<Vec<Option<CqlValue>>>> = HashMap::new();
        let mut out = Vec::new();
        for row in rows {
            let token = match self.insert.calculate_token(&row) {
                Ok(Some(t)) => t,
                _ => {
                    out.push(vec![row]);
                    continue;
                }
            };
            let mut replicas: Vec<_> = cluster
                .get_token_endpoints(&self.keyspace, &self.table_name, token)
                .iter()
                .map(|(node, _)| node.host_id)
                .collect();
            if replicas.is_empty() {
                out.push(vec![row]);
                continue;
            }
            replicas.sort_unstable();
            let group = by_replicas.entry(replicas).or_default();
            group.push(row);
            if group.len() == self.batch_rows {
                out.push(std::mem::take(group));
            }
        }
        out.extend(by_replicas.into_values().filter(|g| !g.is_empty()));
        out
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

    fn settle(
        &mut self,
        done: std::result::Result<std::result::Result<usize, (usize, String)>, tokio::task::JoinError>,
    ) {
        match done {
            Ok(Ok(rows)) => self.written += rows as u64,
            Ok(Err((rows, why))) => self.fail(rows, why),
            Err(e) => self.fail(1, format!("the write task ended: {e}")),
        }
    }

    fn fail(&mut self, rows: usize, why: String) {
        tracing::warn!(table = %self.table, rows, %why, "cassandra rows not written");
        self.failed += rows;
        self.first_failure.get_or_insert(why);
    }
}

/// One upsert, or an unlogged batch of them when `rows` fills the batch
/// statement (a shorter group goes as a batch of its own size), retried with
/// backoff while the error may pass. Upserts are idempotent: a retried batch
/// writes the same rows again.
async fn write_rows(
    session: &Session,
    insert: &PreparedStatement,
    batch: &Batch,
    rows: Vec<Vec<Option<CqlValue>>>,
    backoff: Backoff,
    table: &str,
) -> std::result::Result<usize, (usize, String)> {
    let n = rows.len();
    let short;
    let batch = match n {
        1 => None,
        _ if n == batch.statements.len() => Some(batch),
        _ => {
            let mut b = Batch::new_with_statements(BatchType::Unlogged, batch.statements[..n].to_vec());
            b.set_consistency(batch.get_consistency().unwrap_or(Consistency::LocalQuorum));
            b.set_is_idempotent(true);
            short = b;
            Some(&short)
        }
    };
    let mut retry = 0;
    loop {
        let r = match batch {
            None => session.execute_unpaged(insert, &rows[0]).await.map(drop),
            Some(b) => session.batch(b, &rows).await.map(drop),
        };
        match r {
            Ok(()) => return Ok(n),
            Err(e) => {
                retry += 1;
                match backoff.delay(retry).filter(|_| retryable(&e)) {
                    Some(wait) => {
                        tracing::debug!(%table, error = %e, ?wait, retry, rows = n, "cassandra write failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        return Err((n, format!("{e} (after {retry} attempt(s); {n} row(s), the first {:?})", rows[0])))
                    }
                }
            }
        }
    }
}
