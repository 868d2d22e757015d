//! The master: agent registry, the ledger of reservations and volumes, the
//! DRF allocator, and the HTTP API.

pub mod allocator;
pub mod api;
pub mod core;
pub mod ledger;

pub use self::core::{Master, MasterConfig};
