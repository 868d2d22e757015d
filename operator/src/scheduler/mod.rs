//! The framework side: service specs, plans, the offer evaluator, placement
//! and recovery. Built on [`crate::client`] and [`crate::resources`]; it
//! arrives with the operator-framework issue.
pub mod spec;
pub mod placement;
pub mod evaluator;
pub mod plan;
pub mod service;
pub mod api;
