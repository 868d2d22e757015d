//! smack-catalog: the services smack runs for a pipeline, one folder each,
//! as dcos-commons keeps `frameworks/<svc>/` beside an SDK that names no
//! service.
//!
//! - [`kafka`]: Apache Kafka (KRaft): the service spec (pods `kafka-N`,
//!   optional `controller-N`), the node templates, the node launcher
//!   (`smack catalog kafka-broker`), readiness and the controller quorum,
//!   the drain (decommission hook) and rebalance planners and drivers, the
//!   broker-count scale, and the admin I/O (rdkafka's admin client, and a
//!   small Java program on Kafka's own jars for what rdkafka lacks).
//! - [`cassandra`]: Apache Cassandra: the service spec (pods `cassandra-N`),
//!   the node templates, the node launcher (`smack catalog cassandra-node`),
//!   readiness, the decommission hook, keyspaces, settings and scale, over
//!   CQL (and `nodetool` over local JMX for the decommission).
//! - Shared by both: [`artifacts`] (the pinned versions, their jars from
//!   Maven Central or `*_HOME`, the one artifact cache-dir rule, the `java`
//!   command lines) and [`launch`] (a node config turned into an agent
//!   task's shell command, and the readiness checks); [`counts`] (a pod
//!   type's count in a spec, changed in place, for the scale commands).
//!
//! Start with [`kafka::service`] or [`cassandra::service`]: the spec a
//! service runs from, and the env its tasks read. The drivers that talk to
//! a running service through its scheduler do so through
//! [`ServiceClient`], which the binary implements over the HTTP API.
//!
//! Depends on `smack-operator` (spec, scheduler and resource types) and on
//! `smack-connectors` without its Arrow side (Kafka admin, CQL). Must not
//! depend on: `smack-pipelines`, DataFusion or Arrow — the catalog knows no
//! SQL and no records; and the operator must never depend on it (the
//! operator names no service).

pub mod artifacts;
pub mod cassandra;
mod client;
pub mod counts;
pub mod error;
pub mod kafka;
pub mod launch;

pub use client::{placed_endpoints, ServiceClient};
pub use error::{Error, Result};
