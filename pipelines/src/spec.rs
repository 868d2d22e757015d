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
mod sql;
mod types;
mod units;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use types::*;
pub use units::{Duration, Size};

use std::fmt;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    /// Line and column, both from 1.
    pub line: usize,
    pub column: usize,
    /// The field's path, e.g. `sources.transactions.replication`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// How to fix it, where we can tell.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in a pipeline file, in file order; displays as one
/// `file:line:column: field: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn iter(&self) -> impl Iterator<Item = &SpecError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

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
