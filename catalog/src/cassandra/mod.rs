//! Apache Cassandra as a catalog service, in one folder.
//!
//! - [`service`]: the service spec (pods `cassandra-N`) and the pure
//!   decisions its launcher, readiness check and CLI share (seeds,
//!   readiness over gossip views, replication checks, config overrides).
//! - [`config`]: the node templates (`cassandra.yaml`, rackdc, logback).
//! - [`node`]: the node launcher (`smack catalog cassandra-node`).
//! - [`readiness`]: `smack cassandra ready`, the node task's readiness check.
//! - [`decommission`]: the pods' decommission hook (`nodetool decommission`
//!   after a keyspace check over CQL).
//! - [`cql`]: the ring over CQL (node-local tables, one session per node),
//!   and live settings.
//! - [`keyspace`]: keyspaces created and altered, with their checks.
//! - [`scale`]: `smack cassandra scale`, through the service's scheduler
//!   ([`crate::ServiceClient`]).

pub mod config;
pub mod cql;
pub mod decommission;
pub mod keyspace;
pub mod node;
pub mod readiness;
pub mod scale;
pub mod service;
