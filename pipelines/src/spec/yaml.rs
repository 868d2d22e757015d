//! Positions in the marked YAML tree: an error collector, and lookups of a
//! key's or a value's line and column by field path.

use super::SpecError;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

/// A line and column, both from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub(super) const START: Pos = Pos { line: 1, column: 1 };
}

/// Collects the errors of one file.
pub(super) struct Cx<'t> {
    file: String,
    pub text: &'t str,
    errors: Vec<SpecError>,
}

impl<'t> Cx<'t> {
    pub(super) fn new(file: &str, text: &'t str) -> Cx<'t> {
        Cx { file: file.to_string(), text, errors: Vec::new() }
    }

    pub(super) fn into_errors(self) -> Vec<SpecError> {
        self.errors
    }

    /// Records an error; set `.hint` on the result to add a hint.
    pub(super) fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) -> &mut SpecError {
        self.errors.push(SpecError {
            file: self.file.clone(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            field: field.to_string(),
            message: message.into(),
            hint: None,
        });
        self.errors.last_mut().expect("just pushed")
    }

    /// The text of line `line` (from 1), without its newline.
    pub(super) fn line_text(&self, line: usize) -> &'t str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

pub(super) fn span_pos(span: &Span) -> Option<Pos> {
    span.start().map(|m| Pos { line: m.line(), column: m.column() })
}

/// Where a node starts. A block mapping's own mark lies after its first
/// key, so a mapping starts at the earlier of that mark and its first key.
pub(super) fn node_pos(n: &Node) -> Pos {
    match n {
        Node::Mapping(m) => map_pos(m),
        _ => span_pos(n.span()).unwrap_or(Pos::START),
    }
}

fn map_pos(m: &MarkedMappingNode) -> Pos {
    let own = span_pos(m.span()).unwrap_or(Pos::START);
    match m.iter().next().and_then(|(k, _)| span_pos(k.span())) {
        Some(k) if k < own => k,
        _ => own,
    }
}

/// The key and value at `path` (map keys, or sequence indexes as numbers).
fn find<'n>(root: &'n Node, path: &[&str]) -> Vec<(Option<&'n MarkedScalarNode>, &'n Node)> {
    let mut trail = vec![(None, root)];
    let mut at = root;
    for seg in path {
        let next = match at {
            Node::Mapping(m) => m.iter().find(|(k, _)| k.as_str() == *seg).map(|(k, v)| (Some(k), v)),
            Node::Sequence(s) => seg.parse::<usize>().ok().and_then(|i| s.get(i)).map(|v| (None, v)),
            Node::Scalar(_) => None,
        };
        match next {
            Some((k, v)) => {
                trail.push((k, v));
                at = v;
            }
            None => break,
        }
    }
    trail
}

/// The node at `path`, if it exists.
pub(super) fn node_at<'n>(root: &'n Node, path: &[&str]) -> Option<&'n Node> {
    let trail = find(root, path);
    (trail.len() == path.len() + 1).then(|| trail.last().expect("root").1)
}

/// Where the key of `path` is; or of the nearest ancestor that exists.
pub(super) fn key_pos(root: &Node, path: &[&str]) -> Pos {
    let trail = find(root, path);
    trail
        .iter()
        .rev()
        .find_map(|(k, v)| match k {
            Some(k) => span_pos(k.span()),
            None if std::ptr::eq(*v, root) => Some(Pos::START),
            None => Some(node_pos(v)),
        })
        .unwrap_or(Pos::START)
}

/// Where the value at `path` is; or the key of the nearest ancestor.
pub(super) fn value_pos(root: &Node, path: &[&str]) -> Pos {
    let trail = find(root, path);
    if trail.len() == path.len() + 1 {
        return node_pos(trail.last().expect("root").1);
    }
    key_pos(root, path)
}

/// The path as written in errors: `sources.tx.partitions`, `tests.0.name`.
pub(super) fn field(path: &[&str]) -> String {
    path.join(".")
}
