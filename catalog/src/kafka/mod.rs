//! Apache Kafka (KRaft) as a catalog service, in one folder.
//!
//! - [`service`]: the service spec (pods `kafka-N`, optional dedicated
//!   `controller-N`) and the broker task's env decoded into a node config.
//! - [`config`]: the node templates (`server.properties`, Log4j2, the
//!   cluster id, the `meta.properties` restart guard).
//! - [`broker`]: the node launcher (`smack catalog kafka-broker`).
//! - [`readiness`]: the controllers' quorum join (`smack kafka ready
//!   --join-quorum`) and the `update-order` hook.
//! - [`plan`]: pure decisions: the drain and rebalance moves, and the checks
//!   a topic, a scale or a roll make first.
//! - [`drain`]: the drivers that move replicas (the decommission hook
//!   `smack kafka drain`, and `smack kafka rebalance`).
//! - [`scale`]: `smack kafka scale` and the quorum prune, through the
//!   service's scheduler ([`crate::ServiceClient`]).
//! - [`admin`]: the admin calls rdkafka lacks (reassignments, the KRaft
//!   quorum), in a small Java program on Kafka's jars.
//! - [`brokers`]: the brokers as `smack kafka brokers` shows them.

pub mod admin;
pub mod broker;
pub mod brokers;
pub mod config;
pub mod drain;
pub mod plan;
pub mod readiness;
pub mod scale;
pub mod service;
