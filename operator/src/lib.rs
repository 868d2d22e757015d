//! smack-operator: the offer-based core of smack and the framework on top.
//!
//! Start with [`resources`] (the vocabulary: resources, reservations, volumes,
//! offers, operations, task states), then [`master`] (agent registry, the
//! ledger that applies an accept all-or-nothing, the DRF allocator, the HTTP
//! API), [`agent`] (tasks as process groups, checks, checkpoints),
//! [`client`] (the one HTTP client layer of the master, scheduler and agent
//! APIs, used by agents, frameworks and the CLI), and [`state`]
//! (the state store).
//!
//! Must not depend on: DataFusion, Arrow, Kafka or Cassandra client crates —
//! the operator knows nothing of SQL or records, so its tests build fast.
//! Disk work goes through `smack-storage`.

pub mod agent;
pub mod catalog;
pub mod client;
pub mod error;
pub mod master;
pub mod metrics;
pub mod protocol;
pub mod resources;
pub mod scheduler;
pub mod state;

pub use error::{Error, Result};
