//! smack-pipelines: the pipeline YAML spec and its validation, the layout of a
//! pipeline into service specs, and the stage runtime (micro-batches, event
//! time and watermarks, windows, keyed state, checkpoints, DataFusion SQL).
//!
//! Must not depend on: `smack-operator`'s master or agent internals; it hands
//! service specs to the operator through the scheduler's public types only.
//! DataFusion lives here and nowhere else.
//!
//! Start with [`spec`]: [`PipelineSpec::from_yaml`] parses and validates a
//! pipeline file, [`spec::json_schema`] describes it. The layout and the
//! runtime arrive with the rest of the pipelines issue.

pub mod generate;
pub mod layout;
pub mod runtime;
pub mod spec;
pub mod task;

pub use spec::{PipelineSpec, SpecError, SpecErrors};

use std::path::{Path, PathBuf};

/// The errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline file is not valid; every problem, one per line.
    #[error("{0}")]
    Invalid(#[from] SpecErrors),
}

/// Reads, parses and validates the pipeline file at `path`; errors name it
/// as given.
pub fn load(path: &Path) -> Result<PipelineSpec, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    Ok(PipelineSpec::from_yaml(&text, &path.display().to_string())?)
}
