//! Reading the position-marked YAML tree: an error collector, mappings
//! checked against their allowed fields, and decoders for scalars (numbers,
//! sizes, durations, names), each recording errors at the node's position.

use super::*;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

/// Collects errors for one file.
pub(super) struct Cx {
    file: String,
    errors: Vec<SpecError>,
}

impl Cx {
    pub(super) fn new(file: &str) -> Cx {
        Cx { file: file.to_string(), errors: Vec::new() }
    }

    pub(super) fn into_errors(self) -> Vec<SpecError> {
        self.errors
    }

    /// Records an error; set `.hint` on the result to add a hint.
    pub(super) fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) -> &mut SpecError {
        self.errors.push(SpecError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message: message.into(),
            hint: None,
        });
        self.errors.last_mut().expect("just pushed")
    }
}

pub(super) fn pos(span: &Span) -> Pos {
    span.start().map(|m| Pos { line: m.line(), column: m.column() }).unwrap_or_default()
}

/// Where a node starts. A block mapping's own mark lies after its first
/// key, so a mapping starts at the earlier of that mark and its first key.
pub(super) fn npos(n: &Node) -> Pos {
    match n {
        Node::Mapping(m) => map_pos(m),
        _ => pos(n.span()),
    }
}

pub(super) fn map_pos(m: &MarkedMappingNode) -> Pos {
    let own = pos(m.span());
    match m.iter().next().map(|(k, _)| pos(k.span())) {
        Some(k) if (k.line, k.column) < (own.line, own.column) => k,
        _ => own,
    }
}

pub(super) fn is_null_scalar(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

pub(super) fn is_null(n: &Node) -> bool {
    matches!(n, Node::Scalar(s) if is_null_scalar(s))
}

/// What a node is, for "found …".
pub(super) fn describe(n: &Node) -> String {
    match n {
        Node::Scalar(s) if is_null_scalar(s) => "nothing".into(),
        Node::Scalar(s) => {
            let v = s.as_str();
            if v.chars().count() > 40 {
                format!("`{}…`", v.chars().take(40).collect::<String>())
            } else {
                format!("`{v}`")
            }
        }
        Node::Mapping(_) => "a mapping".into(),
        Node::Sequence(_) => "a list".into(),
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// The candidate closest to `word`, when it is close enough to be a typo.
pub(super) fn similar<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A mapping whose keys were checked against the allowed fields.
pub(super) struct Fields<'n> {
    pub(super) map: &'n MarkedMappingNode,
    pub(super) path: String,
    pub(super) pos: Pos,
}

/// Opens `node` as a mapping with fields `allowed`; reports every unknown
/// field (with the valid ones, and a guess).
pub(super) fn fields<'n>(cx: &mut Cx, node: &'n Node, path: &str, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
    let Node::Mapping(map) = node else {
        cx.err(npos(node), path, format!("expected {what}, found {}", describe(node)));
        return None;
    };
    for (k, _) in map.iter() {
        if !allowed.contains(&k.as_str()) {
            let e = cx.err(
                pos(k.span()),
                &join(path, k.as_str()),
                format!("unknown field `{}`; valid fields here are {}", k.as_str(), quoted_list(allowed)),
            );
            if let Some(s) = similar(k.as_str(), allowed) {
                e.hint = Some(format!("did you mean `{s}`?"));
            }
        }
    }
    Some(Fields { map, path: path.to_string(), pos: map_pos(map) })
}

impl<'n> Fields<'n> {
    /// The field's value; absent when missing or empty.
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.map.get_node(key).filter(|n| !is_null(n))
    }

    pub(super) fn key_pos(&self, key: &str) -> Pos {
        self.map.iter().find(|(k, _)| k.as_str() == key).map(|(k, _)| pos(k.span())).unwrap_or(self.pos)
    }

    pub(super) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The field's value; a missing or empty one is an error.
    pub(super) fn required(&self, cx: &mut Cx, key: &str, expected: &str) -> Option<&'n Node> {
        match self.map.get_node(key) {
            Some(n) if !is_null(n) => Some(n),
            Some(_) => {
                cx.err(self.key_pos(key), &self.path(key), format!("`{key}` is empty; expected {expected}"));
                None
            }
            None => {
                cx.err(self.pos, &self.path, format!("missing field `{key}` ({expected})"));
                None
            }
        }
    }
}

pub(super) fn scalar<'n>(cx: &mut Cx, n: &'n Node, path: &str, expected: &str) -> Option<&'n MarkedScalarNode> {
    match n {
        Node::Scalar(s) if !is_null_scalar(s) => Some(s),
        other => {
            cx.err(npos(other), path, format!("expected {expected}, found {}", describe(other)));
            None
        }
    }
}

pub(super) fn string(cx: &mut Cx, n: &Node, path: &str, expected: &str) -> Option<String> {
    scalar(cx, n, path, expected).map(|s| s.as_str().to_string())
}

/// A whole number in `min..=max`.
pub(super) fn uint(cx: &mut Cx, n: &Node, path: &str, expected: &str, min: u64, max: u64) -> Option<u64> {
    let s = scalar(cx, n, path, expected)?;
    let p = npos(n);
    match s.as_str().trim().parse::<i128>() {
        Ok(v) if v < min as i128 => {
            let why = if v < 0 { "must not be negative".to_string() } else { format!("must be at least {min}") };
            cx.err(p, path, format!("expected {expected}, found {v}: {why}"));
            None
        }
        Ok(v) if v > max as i128 => {
            cx.err(p, path, format!("expected {expected}, found {v}: must be at most {max}"));
            None
        }
        Ok(v) => Some(v as u64),
        Err(_) => {
            cx.err(p, path, format!("expected {expected}, found {}", describe(n)));
            None
        }
    }
}

pub(super) fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    let s = scalar(cx, n, path, "true or false")?;
    match s.as_str() {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => {
            cx.err(npos(n), path, format!("expected true or false, found {}", describe(n)));
            None
        }
    }
}

/// A value from a fixed set, matched ignoring case.
pub(super) fn one_of<T: Copy>(cx: &mut Cx, n: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
    let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
    let expected = format!("one of {}", quoted_list(&names));
    let s = scalar(cx, n, path, &expected)?;
    if let Some((_, v)) = choices.iter().find(|(k, _)| k.eq_ignore_ascii_case(s.as_str())) {
        return Some(*v);
    }
    let e = cx.err(npos(n), path, format!("expected {expected}, found {}", describe(n)));
    if let Some(g) = similar(s.as_str(), &names) {
        e.hint = Some(format!("did you mean `{g}`?"));
    }
    None
}

/// Parses a size in MiB: a plain number of MiB, or a number with `Mi`,
/// `Gi` or `Ti` (powers of 1024; `MiB`, `GiB`, `TiB` too).
pub(super) fn parse_size_mib(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let factor: f64 = match unit {
        "" | "Mi" | "MiB" => 1.0,
        "Gi" | "GiB" => 1024.0,
        "Ti" | "TiB" => 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit `{unit}`")),
    };
    let n: f64 = num.parse().map_err(|_| "not a number".to_string())?;
    let mib = n * factor;
    if mib.fract() != 0.0 {
        return Err("not a whole number of MiB".into());
    }
    if mib > u64::MAX as f64 / 2.0 {
        return Err("too large".into());
    }
    Ok(mib as u64)
}

/// A size in MiB, at least 1.
pub(super) fn size(cx: &mut Cx, n: &Node, path: &str) -> Option<u64> {
    const EXPECTED: &str = "a size: MiB, or a number with Mi, Gi or Ti (e.g. 512Mi, 2Gi)";
    let s = scalar(cx, n, path, EXPECTED)?;
    match parse_size_mib(s.as_str()) {
        Ok(0) => {
            cx.err(npos(n), path, "must be greater than 0");
            None
        }
        Ok(v) => Some(v),
        Err(why) => {
            cx.err(npos(n), path, format!("expected {EXPECTED}, found {} ({why})", describe(n))).hint =
                Some("units are powers of 1024: Mi, Gi, Ti".into());
            None
        }
    }
}

/// Parses a duration: `0`, or numbers with `ms`, `s`, `m`, `h`, as in
/// `10s`, `1m30s`, `250ms`.
pub(super) fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err("expected a number".into());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err("missing unit".into()),
            u => return Err(format!("unknown unit `{u}`")),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(factor).and_then(|v| total.checked_add(v)).ok_or("too large")?;
    }
    Ok(total)
}

pub(super) fn duration(cx: &mut Cx, n: &Node, path: &str) -> Option<u64> {
    const EXPECTED: &str = "a duration such as 10s, 500ms, 2m or 1m30s";
    let s = scalar(cx, n, path, EXPECTED)?;
    match parse_duration_ms(s.as_str()) {
        Ok(v) => Some(v),
        Err(why) => {
            let e = cx.err(npos(n), path, format!("expected {EXPECTED}, found {} ({why})", describe(n)));
            if s.as_str().trim().parse::<u64>().is_ok() {
                e.hint = Some(format!("add a unit: `{}s` or `{}ms`", s.as_str().trim(), s.as_str().trim()));
            }
            None
        }
    }
}

/// A list of scalars, each with its position.
pub(super) fn string_list(cx: &mut Cx, n: &Node, path: &str, expected: &str) -> Vec<(String, Pos)> {
    let Node::Sequence(seq) = n else {
        cx.err(npos(n), path, format!("expected a list of {expected}, found {}", describe(n)));
        return Vec::new();
    };
    seq.iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let p = format!("{path}[{i}]");
            string(cx, item, &p, expected).map(|s| (s, npos(item)))
        })
        .collect()
}

/// Whether `s` is a DNS label: lower-case letters, digits and `-`, not
/// starting or ending with `-`, at most 63 characters.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a valid environment variable name.
pub(super) fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub(super) fn check_dns_name(cx: &mut Cx, p: Pos, path: &str, name: &str, what: &str) {
    if !is_dns_label(name) {
        cx.err(p, path, format!("`{name}` is not a valid {what}: expected lower-case letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters"))
            .hint = Some(format!("try `{}`", suggest_dns(name)));
    }
}

pub(super) fn suggest_dns(name: &str) -> String {
    let s: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "a-name".into()
    } else {
        s.chars().take(63).collect()
    }
}

/// A relative path inside the sandbox: not empty, not absolute, no `..`.
pub(super) fn check_relative_path(cx: &mut Cx, p: Pos, path: &str, value: &str) -> bool {
    let why = if value.is_empty() {
        Some("must not be empty")
    } else if value.starts_with('/') {
        Some("must be relative to the task's sandbox, not absolute")
    } else if value.split('/').any(|c| c == "..") {
        Some("must not contain `..`")
    } else {
        None
    };
    if let Some(why) = why {
        cx.err(p, path, format!("path `{value}` {why}")).hint = Some(format!(
            "write a path below the sandbox, e.g. `{}`",
            value.split('/').filter(|c| !c.is_empty() && *c != ".." && *c != ".").collect::<Vec<_>>().join("/")
        ));
        return false;
    }
    true
}
