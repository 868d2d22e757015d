//! From text to typed structs: the YAML tree is parsed once, then each part
//! is deserialized from its own node, collecting every error with its place.

use super::yaml::{field, key_pos, node_at, span_pos, value_pos, Cx, Pos};
use super::*;
use indexmap::IndexMap;
use marked_yaml::spanned_serde::Error as DeError;
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{FromNodeError, LoadError, LoaderOptions, Node};
use serde::de::DeserializeOwned;

const TOP: &[&str] =
    &["name", "services", "sources", "lookups", "stages", "sinks", "checkpoint-interval", "tests", "generator"];

/// Parses the text; `None` when the YAML itself or a required part is bad
/// (the errors are in `cx`).
pub(super) fn decode(cx: &mut Cx) -> Option<(PipelineSpec, Node)> {
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, cx.text, opts) {
        Ok(n) => n,
        Err(e) => {
            load_error(cx, e);
            return None;
        }
    };
    let Node::Mapping(top) = &root else {
        cx.err(Pos::START, "", "expected a mapping with `name`, `sources`, `stages` and `sinks`");
        return None;
    };
    let mut ok = true;
    for (k, _) in top.iter() {
        if !TOP.contains(&k.as_str()) {
            ok = false;
            cx.err(
                span_pos(k.span()).unwrap_or(Pos::START),
                "",
                format!("unknown field `{}`, expected one of {}", k.as_str(), quoted(TOP)),
            );
        }
    }
    let d = Decoder { root: &root };
    let name = match top.get_node("name") {
        Some(n) => d.de::<String>(cx, n, &["name"]),
        None => {
            cx.err(Pos::START, "", "missing field `name`: the pipeline's name");
            None
        }
    };
    let services = d.opt(cx, "services").unwrap_or_default();
    let sources = d.named(cx, "sources", |cx, path, n| {
        d.tagged(cx, path, n, &["kafka"], |cx, _, n| d.de::<KafkaSource>(cx, n, path).map(Source::Kafka))
    });
    let lookups = d.named(cx, "lookups", |cx, path, n| {
        d.tagged(cx, path, n, &["cassandra"], |cx, _, n| d.de::<CassandraLookup>(cx, n, path).map(Lookup::Cassandra))
    });
    let stages = d.named(cx, "stages", |cx, path, n| d.de::<Stage>(cx, n, path));
    let sinks = d.named(cx, "sinks", |cx, path, n| {
        d.tagged(cx, path, n, &["cassandra", "kafka"], |cx, t, n| match t {
            "cassandra" => d.de::<CassandraSink>(cx, n, path).map(Sink::Cassandra),
            _ => d.de::<KafkaSink>(cx, n, path).map(Sink::Kafka),
        })
    });
    let checkpoint_interval = match top.get_node("checkpoint-interval") {
        Some(n) => d.de::<Duration>(cx, n, &["checkpoint-interval"]),
        None => Some(Duration::from_secs(10)),
    };
    let tests = d.tests(cx);
    let generator = d.opt::<GeneratorSpec>(cx, "generator");
    let spec = PipelineSpec {
        name: name?,
        services,
        sources: sources?,
        lookups: lookups?,
        stages: stages?,
        sinks: sinks?,
        checkpoint_interval: checkpoint_interval?,
        tests: tests?,
        generator,
    };
    ok.then_some(())?;
    Some((spec, root))
}

fn load_error(cx: &mut Cx, e: LoadError) {
    let (m, msg) = match &e {
        LoadError::TopLevelMustBeMapping(m) => {
            (*m, "expected a mapping with `name`, `sources`, `stages` and `sinks`".to_string())
        }
        LoadError::UnexpectedAnchor(m) => (*m, "YAML anchors are not supported".into()),
        LoadError::MappingKeyMustBeScalar(m) => (*m, "a mapping key must be a plain name".into()),
        LoadError::UnexpectedTag(m) => (*m, "YAML tags are not supported".into()),
        LoadError::ScanError(m, s) => (*m, format!("not valid YAML: {s}")),
        LoadError::DuplicateKey(d) => {
            let first = span_pos(d.prev_key.span()).unwrap_or(Pos::START);
            let pos = span_pos(d.key.span()).unwrap_or(Pos::START);
            cx.err(
                pos,
                "",
                format!("duplicate key `{}` (first at line {}); names must be unique", d.key.as_str(), first.line),
            );
            return;
        }
        other => {
            cx.err(Pos::START, "", other.to_string());
            return;
        }
    };
    cx.err(Pos { line: m.line(), column: m.column() }, "", msg);
}

struct Decoder<'n> {
    root: &'n Node,
}

impl<'n> Decoder<'n> {
    /// Deserializes `n` (found at `path`), recording an error on failure.
    fn de<T: DeserializeOwned>(&self, cx: &mut Cx, n: &Node, path: &[&str]) -> Option<T> {
        match marked_yaml::from_node::<T>(n) {
            Ok(v) => Some(v),
            Err(e) => {
                self.de_error(cx, path, e);
                None
            }
        }
    }

    fn de_error(&self, cx: &mut Cx, base: &[&str], e: FromNodeError) {
        let rel: Vec<String> = e.path().map(split_path).unwrap_or_default();
        let mut full: Vec<&str> = base.to_vec();
        full.extend(rel.iter().map(String::as_str));
        let span = e.start_mark().map(|m| Pos { line: m.line(), column: m.column() });
        let (pos, msg) = match &*e {
            DeError::UnknownFieldError(f, expected, _) => {
                // Report the mapping that holds the unknown key, not the key.
                if full.last() == Some(&f.as_str()) {
                    full.pop();
                }
                let msg = format!("unknown field `{f}`, expected one of {}", quoted(expected));
                (span.unwrap_or_else(|| key_pos(self.root, &full)), msg)
            }
            DeError::IntegerParseFailure(..) => {
                (span.unwrap_or_default(), format!("expected a whole number, found `{}`", found(self.root, &full)))
            }
            DeError::FloatParseFailure(..) => {
                (span.unwrap_or_default(), format!("expected a number, found `{}`", found(self.root, &full)))
            }
            DeError::NotBoolean(_) => {
                (span.unwrap_or_default(), format!("expected `true` or `false`, found `{}`", found(self.root, &full)))
            }
            DeError::Other(m, _) if m.starts_with("missing field") => (key_pos(self.root, &full), m.clone()),
            DeError::Other(m, _) => (value_pos(self.root, &full), m.clone()),
        };
        cx.err(pos, &field(&full), msg);
    }

    /// An optional top-level part deserialized as a whole.
    fn opt<T: DeserializeOwned>(&self, cx: &mut Cx, key: &str) -> Option<T> {
        let n = node_at(self.root, &[key])?;
        if matches!(n, Node::Scalar(s) if is_empty(s)) {
            return None;
        }
        self.de(cx, n, &[key])
    }

    /// A mapping of named parts, each decoded by `f`; `None` if any failed.
    fn named<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        f: impl Fn(&mut Cx, &[&str], &Node) -> Option<T>,
    ) -> Option<IndexMap<String, T>> {
        let mut out = IndexMap::new();
        let Some(n) = node_at(self.root, &[key]) else {
            return Some(out);
        };
        let m = match n {
            Node::Mapping(m) => m,
            Node::Scalar(s) if is_empty(s) => return Some(out),
            _ => {
                cx.err(value_pos(self.root, &[key]), key, "expected a mapping of names to definitions");
                return None;
            }
        };
        let mut ok = true;
        for (name, v) in m.iter() {
            match f(cx, &[key, name.as_str()], v) {
                Some(t) => {
                    out.insert(name.as_str().to_string(), t);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A part with a `type:` that picks its variant: `f` gets the type and
    /// the mapping without `type`.
    fn tagged<T>(
        &self,
        cx: &mut Cx,
        path: &[&str],
        n: &Node,
        types: &[&str],
        f: impl Fn(&mut Cx, &str, &Node) -> Option<T>,
    ) -> Option<T> {
        let Node::Mapping(m) = n else {
            cx.err(
                value_pos(self.root, path),
                &field(path),
                format!("expected a mapping with `type: {}`", types.join(" | ")),
            );
            return None;
        };
        let Some(t) = m.get_node("type") else {
            cx.err(key_pos(self.root, path), &field(path), format!("missing field `type`, expected {}", quoted(types)));
            return None;
        };
        let t = t.as_scalar().map(|s| s.as_str()).unwrap_or("");
        if !types.contains(&t) {
            let mut p = path.to_vec();
            p.push("type");
            cx.err(value_pos(self.root, &p), &field(&p), format!("unknown type `{t}`, expected {}", quoted(types)));
            return None;
        }
        let rest: MarkedMappingNode = MarkedMappingNode::new(
            *m.span(),
            m.iter().filter(|(k, _)| k.as_str() != "type").map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        f(cx, t, &Node::Mapping(rest))
    }

    /// `tests:`: a list of tests; records keep their YAML scalar types.
    fn tests(&self, cx: &mut Cx) -> Option<Vec<PipelineTest>> {
        let Some(n) = node_at(self.root, &["tests"]) else {
            return Some(Vec::new());
        };
        let items = match n {
            Node::Sequence(s) => s,
            Node::Scalar(s) if is_empty(s) => return Some(Vec::new()),
            _ => {
                cx.err(value_pos(self.root, &["tests"]), "tests", "expected a list of tests (`- name: ...`)");
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, t) in items.iter().enumerate() {
            let idx = i.to_string();
            let path = ["tests", idx.as_str()];
            match serde_json::from_value::<PipelineTest>(to_json(t)) {
                Ok(t) => out.push(t),
                Err(e) => {
                    ok = false;
                    let msg = e.to_string();
                    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                    cx.err(value_pos(self.root, &path), &field(&path), msg);
                }
            }
        }
        ok.then_some(out)
    }
}

/// A YAML node as JSON, plain scalars read as null, booleans and numbers
/// where they look like them.
pub(super) fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::Value;
    match n {
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                return Value::String(text.to_string());
            }
            if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
                return Value::Null;
            }
            if let Some(b) = s.as_bool() {
                return Value::Bool(b);
            }
            if let Ok(i) = text.parse::<i64>() {
                return Value::from(i);
            }
            if let Ok(f) = text.parse::<f64>() {
                if let Some(n) = serde_json::Number::from_f64(f) {
                    return Value::Number(n);
                }
            }
            Value::String(text.to_string())
        }
        Node::Sequence(s) => Value::Array(s.iter().map(to_json).collect()),
        Node::Mapping(m) => Value::Object(m.iter().map(|(k, v)| (k.as_str().to_string(), to_json(v))).collect()),
    }
}

/// `a.b[2].c` → `["a", "b", "2", "c"]`.
fn split_path(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in p.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(rest[..i].to_string());
            }
            rest = &rest[i..];
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                out.push(idx.trim_end_matches(']').to_string());
            }
        } else if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

fn found(root: &Node, path: &[&str]) -> String {
    match node_at(root, path) {
        Some(Node::Scalar(s)) => s.as_str().to_string(),
        Some(Node::Mapping(_)) => "a mapping".into(),
        Some(Node::Sequence(_)) => "a list".into(),
        None => "nothing".into(),
    }
}

pub(super) fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match q.len() {
        0 => "nothing".into(),
        1 => q[0].clone(),
        n => format!("{} or {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

/// An empty or null scalar: the part is absent.
fn is_empty(s: &marked_yaml::types::MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}
