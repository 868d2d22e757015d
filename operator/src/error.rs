//! The operator crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in the operator crate.
#[derive(Debug, Error)]
pub enum Error {
    /// An accept was refused; nothing was applied.
    #[error("operation {index} ({kind}) refused: {reason}")]
    OperationRefused {
        /// Position of the refused operation in the accept.
        index: usize,
        /// `RESERVE`, `LAUNCH`, …
        kind: &'static str,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// The offer is unknown, rescinded or already used.
    #[error("offer {0} is not outstanding (rescinded, expired or already used)")]
    OfferNotOutstanding(String),
    /// A request named something that does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing: `agent`, `framework`, `task`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request lacked a valid cluster token.
    #[error("unauthorized: a valid cluster token is required (Authorization: Bearer TOKEN)")]
    Unauthorized,
    /// The master answered with an error.
    #[error("master answered {status}: {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// The master's message.
        message: String,
    },
    /// The master could not be reached.
    #[error("cannot reach the master at {url}: {source}")]
    Http {
        /// The URL tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Persistent storage failed.
    #[error(transparent)]
    Storage(#[from] smack_storage::Error),
    /// A state store record could not be encoded or decoded.
    #[error("state record {key}: {source}")]
    Codec {
        /// The record's key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A process or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the state dir (a second master or `smack up`
    /// on the same directory).
    #[error(
        "{} is in use by another smack process (a master or `smack up` on the same state dir): stop it, or pass another --state-dir",
        path.display()
    )]
    StateDirInUse {
        /// The locked directory.
        path: std::path::PathBuf,
    },
    /// etcd (the HA masters' state store) could not be reached or refused
    /// a call.
    #[error("etcd at {endpoints}: {message}")]
    Etcd {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What failed.
        message: String,
    },
    /// A write under a leader's fence found the leadership gone: this
    /// master no longer leads and must not act.
    #[error("not the leader anymore: the write of {key} was refused (another master leads now)")]
    NotLeader {
        /// The key the refused write was for.
        key: String,
    },
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

/// The operator crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
