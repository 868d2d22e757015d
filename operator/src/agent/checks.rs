//! Health and readiness checks.
