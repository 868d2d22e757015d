//! smack-storage: persistent volumes on agent disks, durable small-file
//! writes, and the stage checkpoint store.
//!
//! Start with [`durable`] (write to a temp file, fsync, rename, fsync the
//! directory — every other module writes through it), then [`volumes`]
//! (ROOT and MOUNT persistent volumes under an agent's work dir) and
//! [`checkpoint`] (a stage's last committed checkpoints on its volume).
//!
//! Must not depend on: anything about offers, frameworks, plans or records —
//! it knows directories, files and bytes.

use std::path::PathBuf;

use thiserror::Error;

pub mod checkpoint;
pub mod durable;
pub mod volumes;

pub use checkpoint::CheckpointStore;
pub use volumes::{VolumeKind, VolumeManager};

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
    /// A JSON file exists but does not decode; it is never silently ignored.
    #[error("cannot decode {}: {source}", .path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The serde error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON for writing.
    #[error("cannot encode the record for {}: {source}", .path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A file smack wrote holds something it could not have written.
    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A role or volume id would escape its directory or is otherwise unusable
    /// as one path component.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `role` or `volume id`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A MOUNT disk already holds another volume.
    #[error(
        "mount path {} already holds volume {existing:?}; refusing to create volume \
         {requested:?} there (destroy {existing:?} first)",
        .path.display()
    )]
    VolumeInUse {
        /// The mount point.
        path: PathBuf,
        /// The volume id in its `.smack-volume` marker.
        existing: String,
        /// The volume id asked for.
        requested: String,
    },
    /// A MOUNT disk holds data but no `.smack-volume` marker.
    #[error(
        "mount path {} is not empty and carries no .smack-volume marker; refusing to \
         claim a disk that holds other data",
        .path.display()
    )]
    MountNotEmpty {
        /// The mount point.
        path: PathBuf,
    },
    /// A destroy named a path that is not a smack volume.
    #[error(
        "{} is not a smack volume (neither a ROOT volume under {} nor a MOUNT path with \
         a .smack-volume marker); refusing to destroy it",
        .path.display(),
        .roles_dir.display()
    )]
    NotAVolume {
        /// The path given.
        path: PathBuf,
        /// Where ROOT volumes live on this agent.
        roles_dir: PathBuf,
    },
    /// A checkpoint commit did not move the epoch forward.
    #[error("checkpoint epoch {epoch} is not after the latest committed epoch {latest}")]
    StaleEpoch {
        /// The epoch offered.
        epoch: u64,
        /// The latest committed epoch.
        latest: u64,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// The storage crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
