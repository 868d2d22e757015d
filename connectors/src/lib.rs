//! smack-connectors: the data plane's edges — the Kafka source, sink and admin
//! client, the Cassandra sink, lookup and DDL, and record formats (JSON, CSV
//! and Avro into Arrow record batches, with the Kafka key, timestamp,
//! partition and offset as columns; JSON out of them).
//!
//! Arrow is `datafusion::arrow` (re-exported here as [`arrow`]) so its version
//! never drifts from the one the stage runtime's SQL uses. Schemas cross this
//! crate's boundary as Arrow schemas, never as pipeline-spec types.
//!
//! Must not depend on: `smack-operator` (connectors know nothing of offers or
//! plans) nor on `smack-pipelines` (the runtime uses connectors, not the other
//! way round).
//!
//! Feature `arrow` (on by default): the record formats, the Cassandra sink
//! and lookup, and everything else that speaks Arrow. Without it (as
//! `smack-catalog` uses this crate) only the Kafka clients and the CQL
//! session and DDL remain, and DataFusion is not built.

#[cfg(feature = "arrow")]
pub use datafusion::arrow;

pub mod cassandra;
#[cfg(feature = "arrow")]
pub mod format;
pub mod kafka;
