//! The framework side: a service spec turned into running pods and kept so.
//!
//! Read in this order: [`spec`] (the YAML service spec and its checks),
//! [`placement`] (placement rules over agent attributes), [`evaluator`] (an
//! offer through ordered stages, each PASS or FAIL with a reason), [`plan`]
//! (plans, phases, steps and strategies: pure state machines), then
//! [`service`] (the scheduler that drives them against the master) and
//! [`api`] (its HTTP API). All but the last two are pure and tested with
//! plain values.

pub mod api;
pub mod evaluator;
pub mod metrics;
pub mod placement;
pub mod plan;
pub mod pod;
pub mod service;
pub mod sim;
pub mod spec;
