//! The framework side: a service spec turned into running pods and kept so.
//!
//! Read in this order: [`spec`] (the YAML service spec and its checks),
//! [`pod`] (pod instances and phases), [`placement`] (placement rules over
//! agent attributes), [`evaluator`] (an offer through ordered stages, each
//! PASS or FAIL with a reason), [`plan`] (plans, phases, steps and
//! strategies: pure state machines), then [`service`] (state, commands and
//! the pure decisions on offers and statuses, with the thin driver that
//! runs them against the master), [`sim`] (those decisions driven
//! in-process, deterministically, against simulated agents), [`metrics`]
//! and [`api`] (its HTTP API). All but the driver and the API are pure and
//! tested with plain values.

pub mod api;
pub mod evaluator;
pub mod metrics;
pub mod placement;
pub mod plan;
pub mod pod;
pub mod service;
pub mod sim;
pub mod spec;
