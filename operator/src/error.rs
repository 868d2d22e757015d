//! The operator crate's one error type, and the one place that says which
//! HTTP status each kind of error answers with ([`Error::http_status`]).

use crate::protocol::ApiError;
use crate::scheduler::plan::PlanError;
use crate::scheduler::spec::SpecErrors;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    /// A service spec that does not parse or is not valid: each error at
    /// its `file:line:column`.
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    /// The plan engine refused a command or could not build a plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A name matched nothing; the names that exist follow, when known.
    #[error("no {what} {name:?}{}", known_names(.what, .known))]
    Unknown {
        /// What kind of thing: `plan`, `pod`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// The names that exist, if the message should list them.
        known: Option<Vec<String>>,
    },
    /// A change refused because of the state it would meet (unsafe, or
    /// while a replace or decommission runs); nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// A request that is malformed or names no known action.
    #[error("{0}")]
    BadRequest(String),
    /// The scheduler has no framework id from the master yet.
    #[error("not subscribed yet")]
    NotSubscribed,
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

fn known_names(what: &str, known: &Option<Vec<String>>) -> String {
    match known {
        Some(names) => format!("; {what}s: {}", names.join(", ")),
        None => String::new(),
    }
}

impl Error {
    /// The HTTP status an API answers this error with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound { .. } | Error::Unknown { .. } => StatusCode::NOT_FOUND,
            Error::OperationRefused { .. } | Error::OfferNotOutstanding(_) | Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Spec(_) | Error::Plan(_) | Error::BadRequest(_) | Error::Other(_) => StatusCode::BAD_REQUEST,
            Error::NotSubscribed | Error::NotLeader { .. } | Error::Etcd { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::StateDirInUse { .. } => StatusCode::CONFLICT,
            Error::Api { .. } | Error::Http { .. } | Error::Storage(_) | Error::Codec { .. } | Error::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// An error as an API answer: its status and `{"error": message}`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.http_status(), Json(ApiError { error: self.to_string() })).into_response()
    }
}

/// The operator crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_status() {
        let unknown = Error::Unknown { what: "plan", name: "nope".into(), known: Some(vec!["deploy".into()]) };
        assert_eq!(unknown.to_string(), "no plan \"nope\"; plans: deploy");
        assert_eq!(unknown.http_status(), StatusCode::NOT_FOUND);
        let pod = Error::Unknown { what: "pod", name: "db-9".into(), known: None };
        assert_eq!(pod.to_string(), "no pod \"db-9\"");
        assert_eq!(Error::Conflict("refused".into()).http_status(), StatusCode::CONFLICT);
        assert_eq!(Error::BadRequest("what?".into()).http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(Error::NotSubscribed.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::Unauthorized.http_status(), StatusCode::UNAUTHORIZED);
        let spec = crate::scheduler::spec::ServiceSpec::from_yaml("name: x\n", "x.yaml").unwrap_err();
        let e = Error::from(spec);
        assert!(e.to_string().starts_with("x.yaml:1:1: missing field `pods`"), "{e}");
        assert_eq!(e.http_status(), StatusCode::BAD_REQUEST);
    }
}
