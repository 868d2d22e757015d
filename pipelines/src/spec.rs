//! The pipeline file: YAML → typed structs ([`PipelineSpec`]) → validation,
//! every error at its `file:line:column` with what was expected.
//!
//! Start with [`PipelineSpec::from_yaml`]; [`json_schema`] gives the JSON
//! Schema of the file, generated from the types.
//!
//! As in `smack-operator`'s `scheduler::spec`, the file is parsed with
//! `marked-yaml`, whose tree keeps every node's line and column. Each part
//! (`services`, every source, stage, sink and test) is deserialized from its
//! own node with serde (so one bad source does not hide the errors of the
//! next), and the checks that come after deserialization (references, SQL,
//! keys, replication) look positions up in the same tree. SQL is parsed with
//! `sqlparser` (the version DataFusion uses); an error inside the SQL is
//! mapped back to the line and column in the file.

mod decode;
mod formats;
pub(crate) mod sql;
mod types;
mod units;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use types::*;
pub use units::{Duration, Size};

// Errors in a pipeline file have the same shape as those in a service spec
// (file:line:column, field, message, hint): one type serves both.
pub use smack_operator::scheduler::spec::{SpecError, SpecErrors};

impl PipelineSpec {
    /// Parses and validates a pipeline file; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<PipelineSpec, SpecErrors> {
        let mut cx = yaml::Cx::new(file, text);
        let parsed = decode::decode(&mut cx);
        if let Some((spec, root)) = &parsed {
            validate::validate(&mut cx, root, spec);
        }
        let mut errors = cx.into_errors();
        if errors.is_empty() {
            if let Some((spec, _)) = parsed {
                return Ok(spec);
            }
        }
        errors.sort_by_key(|e| (e.line, e.column));
        errors.dedup();
        Err(SpecErrors(errors))
    }
}

/// The JSON Schema (draft 2020-12) of a pipeline file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PipelineSpec)).expect("a schema is JSON")
}
