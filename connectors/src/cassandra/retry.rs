//! Retries with exponential backoff for writes, and which driver errors are
//! worth retrying (an upsert is idempotent, so a retry is always safe; a
//! syntax or type error will never succeed, so it is not retried).

#[cfg(feature = "arrow")]
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use std::time::Duration;

/// Exponential backoff: `initial`, then ×`multiplier` per attempt, capped
/// at `max`; at most `max_retries` retries after the first attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The growth per retry (≥ 1).
    pub multiplier: f64,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

impl Default for Backoff {
    /// 100 ms, doubling, up to 5 s, 8 retries (about 20 s in all).
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), multiplier: 2.0, max_retries: 8 }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1-based), or None past
    /// `max_retries`.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let factor = self.multiplier.max(1.0).powi(retry.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Some(Duration::from_secs_f64(secs.max(0.0)))
    }

    /// Every wait, in order.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..=self.max_retries).filter_map(|r| self.delay(r))
    }
}

/// Whether a failed write may succeed if tried again.
#[cfg(feature = "arrow")]
pub(crate) fn retryable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => !matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::AlreadyExists { .. }
                | DbError::FunctionFailure { .. }
                | DbError::AuthenticationError
                | DbError::Unauthorized
                | DbError::ConfigError
        ),
        ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_)) => false,
        ExecutionError::BadQuery(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
            multiplier: 2.0,
            max_retries: 5,
        };
        let ms: Vec<u128> = b.delays().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 700, 700]);
        assert_eq!(b.delay(0), None);
        assert_eq!(b.delay(6), None);
    }

    #[test]
    fn no_retries_means_one_attempt() {
        let b = Backoff { max_retries: 0, ..Backoff::default() };
        assert_eq!(b.delays().count(), 0);
    }

    #[test]
    fn a_multiplier_below_one_does_not_shrink_the_wait() {
        let b = Backoff { multiplier: 0.5, ..Backoff::default() };
        assert_eq!(b.delay(3), Some(Duration::from_millis(100)));
    }

    #[test]
    fn huge_retry_counts_stay_capped() {
        let b = Backoff { max_retries: u32::MAX, ..Backoff::default() };
        assert_eq!(b.delay(10_000), Some(Duration::from_secs(5)));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let syntax = ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::SyntaxError, "x".into()));
        assert!(!retryable(&syntax));
        let overloaded =
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::Overloaded, "x".into()));
        assert!(retryable(&overloaded));
        assert!(retryable(&ExecutionError::RequestTimeout(Duration::from_secs(1))));
    }
}
