//! smack-storage: persistent volumes on agent disks, durable small-file
//! writes, and the stage checkpoint store.
//!
//! Must not depend on: anything about offers, frameworks, plans or records —
//! it knows directories, files and bytes.

use thiserror::Error;

/// Everything that can go wrong in the storage crate.
#[derive(Debug, Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The storage crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
