//! The master: agent registry, the ledger of reservations and volumes, the
//! DRF allocator, and the HTTP API.

pub mod allocator;
