//! Task processes.
