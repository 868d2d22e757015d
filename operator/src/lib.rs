//! smack-operator: the offer-based core of smack and the framework on top.
//!
//! Start with [`resources`] (the vocabulary: resources, reservations, volumes,
//! offers, operations, task states), then [`master`] (agent registry, the
//! ledger that applies an accept all-or-nothing, the DRF allocator, the HTTP
//! API), [`agent`] (tasks as process groups, checks, checkpoints),
//! [`client`] (the one HTTP client layer of the master, scheduler and agent
//! APIs, used by agents, frameworks and the CLI), and [`state`]
//! (the state store). The services it runs live beside it, in
//! `smack-catalog` (one folder per service); the operator names none of them.
//!
//! Must not depend on: `smack-catalog`, DataFusion, Arrow, or the clients of
//! the services it runs — the operator knows nothing of SQL, records or any
//! one service, so its tests build fast. Disk work goes through
//! `smack-storage`.

pub mod agent;
pub mod client;
pub mod error;
pub mod master;
pub mod metrics;
pub mod protocol;
pub mod resources;
pub mod scheduler;
pub mod state;

pub use error::{Error, Result};
