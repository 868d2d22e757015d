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

pub use datafusion::arrow;

pub mod cassandra;
pub mod format;
pub mod kafka;
