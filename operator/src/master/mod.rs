//! The master: agent registry, the ledger of reservations and volumes, the
//! DRF allocator, the HTTP API and the dashboard.

pub mod allocator;
pub mod api;
pub mod core;
pub mod dashboard;
pub mod ledger;
pub mod metrics;

pub use self::core::{Master, MasterConfig};
