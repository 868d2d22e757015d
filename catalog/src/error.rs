//! The catalog crate's one error type, and the small helpers (`bail!`,
//! `format_err!`, [`Context`]) its drivers use to say what they were doing.

/// A boxed error kept as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the catalog crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operator refused or failed (a service spec that does not parse,
    /// a state record, …).
    #[error(transparent)]
    Operator(#[from] smack_operator::Error),
    /// A Kafka admin call failed.
    #[error(transparent)]
    Kafka(#[from] smack_connectors::kafka::Error),
    /// A CQL session or statement failed.
    #[error(transparent)]
    Cassandra(#[from] smack_connectors::cassandra::Error),
    /// A file or process operation failed, with no more to say than the OS.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// A JSON document (a task env value, a printed row) did not encode or decode.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A blocking job panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// What was being done when its cause failed (the cause is the source,
    /// so `{:#}` prints `what: why`).
    #[error("{context}")]
    Context {
        /// What was being done, with its target.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A refusal or a failure described in words a user can act on.
    #[error("{0}")]
    Other(String),
}

/// The catalog crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Context { context: context.into(), source: Box::new(source) }
    }

    /// An error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }
}

/// An error and its causes on one line, `what: why: …` (as the binary
/// prints errors), for errors kept as text: a node that did not answer, a
/// hook's reason.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Adds what was being done to an error (or turns a `None` into one).
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with the context `f` builds (only on failure).
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.into(), source: Box::new(e) })
    }
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: f().into(), source: Box::new(e) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Other(context.into()))
    }
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Other(f().into()))
    }
}

/// An [`Error::Other`] from a format string.
macro_rules! format_err {
    ($($arg:tt)*) => {
        $crate::error::Error::Other(format!($($arg)*))
    };
}

/// Returns an [`Error::Other`] from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::format_err!($($arg)*))
    };
}

pub(crate) use bail;

pub(crate) use format_err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prints_what_then_why() {
        let e: Result<()> = Err(std::io::Error::other("refused")).context("connecting to h:1");
        let e = e.unwrap_err();
        assert_eq!(e.to_string(), "connecting to h:1");
        assert_eq!(chain(&e), "connecting to h:1: refused");
        let none: Result<u8> = None.context("no value");
        assert_eq!(chain(&none.unwrap_err()), "no value");
    }
}
