//! The agent: runs tasks as process groups in sandboxes, checks their health
//! and readiness, and checkpoints what it runs.

pub mod checks;
pub mod executor;
pub mod logs;
pub mod metrics;
pub mod runtime;

pub use runtime::{Agent, AgentConfig};
