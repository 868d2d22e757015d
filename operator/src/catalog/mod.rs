//! The catalog: Kafka, Cassandra and stage service templates, the artifacts
//! they run from, their readiness checks and custom plans.
//!
//! - [`artifacts`]: the pinned Kafka and Cassandra versions, fetching their
//!   jars with Maven (or using `KAFKA_HOME` / `CASSANDRA_HOME`), and the
//!   verified `java` command lines.
//! - [`kafka`]: KRaft node templates (`server.properties`, Log4j2 config,
//!   cluster id, the `meta.properties` restart guard).
//! - [`cassandra`]: Cassandra node templates (`cassandra.yaml`, rackdc,
//!   logback).
//! - [`launch`]: a node config turned into an agent task's shell command
//!   (configs written into the sandbox, data on the volume, `exec java`),
//!   and the readiness checks.
//! - [`kafka_service`]: the Kafka service spec (pods `kafka-N`) and the
//!   broker task's env decoded into a node config (dynamic KRaft quorum).

pub mod artifacts;
pub mod cassandra;
pub mod cassandra_service;
pub mod kafka;
pub mod kafka_service;
pub mod launch;
