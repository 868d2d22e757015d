//! The catalog: Kafka, Cassandra and stage service templates, the artifacts
//! they run from, their readiness checks and custom plans.
