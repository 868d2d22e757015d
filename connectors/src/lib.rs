//! smack-connectors: the data plane's edges — the Kafka source and sink, the
//! Cassandra sink and lookup, and record formats (JSON, Avro, CSV) to and from
//! Arrow record batches.
//!
//! Must not depend on: `smack-operator` (connectors know nothing of offers or
//! plans) nor on `smack-pipelines` (the runtime uses connectors, not the other
//! way round).
//!
//! Nothing is here yet: the runtime arrives with the pipelines issue.
