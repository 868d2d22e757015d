//! Config templates: text with `{{VAR}}` placeholders filled from a task's
//! env. No logic, no escapes: a placeholder is a name between `{{` and `}}`
//! (spaces around it allowed), and every name must be set.

use std::collections::BTreeMap;
use std::fmt;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// Variables the template uses that the env does not set (sorted).
    Missing(Vec<String>),
    /// A `{{` with no `}}` after it, at this byte offset.
    Unclosed { offset: usize },
    /// A placeholder whose content is not a variable name.
    BadName { offset: usize, name: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Missing(names) if names.len() == 1 => {
                write!(f, "template variable {} is not set", names[0])
            }
            TemplateError::Missing(names) => write!(f, "template variables {} are not set", names.join(", ")),
            TemplateError::Unclosed { offset } => {
                write!(f, "template placeholder opened at byte {offset} with `{{{{` is never closed with `}}}}`")
            }
            TemplateError::BadName { offset, name } => write!(
                f,
                "template placeholder `{{{{{name}}}}}` at byte {offset} is not a variable name (letters, digits, `_`)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// A piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed { offset: offset + start });
        };
        let name = after[..end].trim();
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(TemplateError::BadName { offset: offset + start, name: after[..end].to_string() });
        }
        pieces.push(Piece::Var(name));
        let consumed = start + 2 + end + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// The variables a template uses, sorted and without repeats; an error if
/// its placeholders are malformed.
pub fn template_vars(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut vars: Vec<String> = parse(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.to_string()),
            Piece::Text(_) => None,
        })
        .collect();
    vars.sort();
    vars.dedup();
    Ok(vars)
}

/// Fills `{{VAR}}` placeholders from `env`. Every variable must be set: the
/// error names all that are not.
pub fn render_template(template: &str, env: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let pieces = parse(template)?;
    let mut missing: Vec<String> = Vec::new();
    let mut out = String::with_capacity(template.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => match env.get(v) {
                Some(value) => out.push_str(value),
                None => missing.push(v.to_string()),
            },
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        missing.sort();
        missing.dedup();
        Err(TemplateError::Missing(missing))
    }
}
