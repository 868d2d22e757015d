//! A pod type's `count` in a service spec, read and changed in place (the
//! scale commands of every catalog service use it).

use crate::{Error, Result};

/// `spec_yaml` with pod type `pod_type`'s `count` set to `count`, every
/// other byte kept (comments, quoting, order); lowering the count also sets
/// `allow-decommission: true` (the scheduler refuses a lowered count
/// without it). The pod's `count` must be written in block style on a line
/// of its own, as the catalog's spec templates write it.
pub fn with_pod_count(spec_yaml: &str, pod_type: &str, count: u32) -> Result<String> {
    let bad = |what: String| Error::Other(format!("changing the count of pod type `{pod_type}`: {what}"));
    let root = marked_yaml::parse_yaml(0, spec_yaml).map_err(|e| bad(format!("the spec is not YAML: {e}")))?;
    let pod = root
        .as_mapping()
        .and_then(|m| m.get_mapping("pods"))
        .and_then(|m| m.get_mapping(pod_type))
        .ok_or_else(|| bad(format!("the spec has no `pods.{pod_type}` mapping")))?;
    let old = pod.get_scalar("count").ok_or_else(|| bad("the pod type has no `count`".into()))?;
    let old_count: u32 =
        old.as_str().trim().parse().map_err(|_| bad(format!("its count {:?} is not a number", old.as_str())))?;
    let mut lines: Vec<String> = spec_yaml.split('\n').map(String::from).collect();
    let at = old.span().start().ok_or_else(|| bad("no position for `count`".into()))?;
    let (line, col) = (at.line() - 1, at.column() - 1);
    let text = lines.get(line).cloned().ok_or_else(|| bad(format!("line {} is past the end", line + 1)))?;
    let chars: Vec<char> = text.chars().collect();
    let key_col = chars.iter().position(|c| !c.is_whitespace()).unwrap_or(0);
    if !chars[key_col..].iter().collect::<String>().starts_with("count:") {
        return Err(bad(format!(
            "`count` at line {} is not in block style (`count: N` on a line of its own)",
            line + 1
        )));
    }
    let end = (col..chars.len()).find(|i| chars[*i].is_whitespace() || chars[*i] == '#').unwrap_or(chars.len());
    let rebuilt: String = chars[..col]
        .iter()
        .chain(count.to_string().chars().collect::<Vec<_>>().iter())
        .chain(chars[end..].iter())
        .collect();
    lines[line] = rebuilt;
    if count < old_count {
        let allowed = pod.get_scalar("allow-decommission");
        match allowed {
            Some(a) if a.as_str().trim() == "true" => {}
            Some(a) => {
                let at = a.span().start().ok_or_else(|| bad("no position for `allow-decommission`".into()))?;
                let (l, c) = (at.line() - 1, at.column() - 1);
                let t: Vec<char> = lines[l].chars().collect();
                let end = (c..t.len())
                    .find(|i| t[*i].is_whitespace() || t[*i] == '#' || t[*i] == ',' || t[*i] == '}')
                    .unwrap_or(t.len());
                lines[l] = t[..c].iter().collect::<String>() + "true" + &t[end..].iter().collect::<String>();
            }
            None => {
                let indent: String = chars[..key_col].iter().collect();
                lines.insert(line + 1, format!("{indent}allow-decommission: true"));
            }
        }
    }
    let out = lines.join("\n");
    let check = smack_operator::scheduler::spec::ServiceSpec::from_yaml(&out, "the changed spec")
        .map_err(|e| bad(format!("the changed spec does not parse: {e}")))?;
    match check.pod(pod_type) {
        Some(p) if p.count == count && (count >= old_count || p.allow_decommission) => Ok(out),
        _ => Err(bad("the edit did not take (is `count` written more than once?)".into())),
    }
}

/// The count of pod type `pod_type` in a spec.
pub fn pod_count(spec_yaml: &str, pod_type: &str) -> Result<u32> {
    let spec = smack_operator::scheduler::spec::ServiceSpec::from_yaml(spec_yaml, "the service's spec")
        .map_err(|e| Error::Other(e.to_string()))?;
    spec.pod(pod_type).map(|p| p.count).ok_or_else(|| Error::Other(format!("the service has no pod type `{pod_type}`")))
}
