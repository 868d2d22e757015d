//! Strategies: which children of a plan (phases) or a phase (steps) may work now.
//!
//! One [`Strategy`] value orders a plan's phases and, separately, each phase's
//! steps; the rule is the same at both levels:
//!
//! - `serial`: the first child that is not `COMPLETE`, and only it. A child in
//!   `ERROR` blocks the ones after it.
//! - `parallel`: every child that is not `COMPLETE`.
//! - `canary`: the first child alone; once it is `COMPLETE` the element waits
//!   (status `WAITING`) until the operator runs `resume`, after which the
//!   rest go one at a time, in order, as with `serial`. The gate is persisted;
//!   `restart` of the whole element closes it again.
//! - `dependency`: every child that is not `COMPLETE` and whose named
//!   dependencies (siblings, by name) are all `COMPLETE`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How an element orders its children's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One child at a time, in order.
    #[default]
    Serial,
    /// All children at once.
    Parallel,
    /// The first child, then wait for `resume`, then the rest serially.
    Canary,
    /// A child when all its dependencies are complete.
    Dependency,
}

/// What a strategy needs to know of one child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildView<'a> {
    /// The child's name, as dependencies refer to it.
    pub name: &'a str,
    /// Whether the child is done.
    pub complete: bool,
    /// The siblings it waits for (dependency strategy only).
    pub dependencies: &'a [String],
}

impl Strategy {
    /// The strategy as specs and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Serial => "serial",
            Strategy::Parallel => "parallel",
            Strategy::Canary => "canary",
            Strategy::Dependency => "dependency",
        }
    }

    /// Indices of the children that may work now. `canary_resumed` is the
    /// element's persisted canary gate.
    pub(crate) fn eligible(self, children: &[ChildView<'_>], canary_resumed: bool) -> Vec<usize> {
        let first_open = || children.iter().position(|c| !c.complete);
        match self {
            Strategy::Serial => first_open().into_iter().collect(),
            Strategy::Parallel => (0..children.len()).filter(|&i| !children[i].complete).collect(),
            Strategy::Canary => match children.first() {
                None => Vec::new(),
                Some(first) if !first.complete => vec![0],
                Some(_) if !canary_resumed => Vec::new(),
                Some(_) => first_open().into_iter().collect(),
            },
            Strategy::Dependency => {
                (0..children.len()).filter(|&i| !children[i].complete && unmet(children, i).is_empty()).collect()
            }
        }
    }

    /// True when a canary strategy holds unfinished children for the operator.
    pub(crate) fn awaiting_resume(self, children: &[ChildView<'_>], canary_resumed: bool) -> bool {
        self == Strategy::Canary
            && !canary_resumed
            && children.first().is_some_and(|c| c.complete)
            && children.iter().any(|c| !c.complete)
    }
}

/// The dependencies of child `i` that are not yet complete (or do not exist).
pub(crate) fn unmet<'a>(children: &[ChildView<'a>], i: usize) -> Vec<&'a str> {
    children[i]
        .dependencies
        .iter()
        .filter(|dep| !children.iter().any(|c| c.name == dep.as_str() && c.complete))
        .map(String::as_str)
        .collect()
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "serial" => Ok(Strategy::Serial),
            "parallel" => Ok(Strategy::Parallel),
            "canary" => Ok(Strategy::Canary),
            "dependency" => Ok(Strategy::Dependency),
            other => Err(format!("unknown strategy {other:?}; expected one of: serial, parallel, canary, dependency")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views<'a>(spec: &'a [(&'a str, bool, Vec<String>)]) -> Vec<ChildView<'a>> {
        spec.iter().map(|(name, complete, deps)| ChildView { name, complete: *complete, dependencies: deps }).collect()
    }

    #[test]
    fn serial_takes_first_open_child() {
        let spec = [("a", true, vec![]), ("b", false, vec![]), ("c", false, vec![])];
        assert_eq!(Strategy::Serial.eligible(&views(&spec), false), vec![1]);
    }

    #[test]
    fn parallel_takes_all_open_children() {
        let spec = [("a", true, vec![]), ("b", false, vec![]), ("c", false, vec![])];
        assert_eq!(Strategy::Parallel.eligible(&views(&spec), false), vec![1, 2]);
    }

    #[test]
    fn canary_gate() {
        let fresh = [("a", false, vec![]), ("b", false, vec![])];
        assert_eq!(Strategy::Canary.eligible(&views(&fresh), false), vec![0]);
        let first_done = [("a", true, vec![]), ("b", false, vec![]), ("c", false, vec![])];
        let v = views(&first_done);
        assert!(Strategy::Canary.eligible(&v, false).is_empty());
        assert!(Strategy::Canary.awaiting_resume(&v, false));
        assert_eq!(Strategy::Canary.eligible(&v, true), vec![1]);
        assert!(!Strategy::Canary.awaiting_resume(&v, true));
    }

    #[test]
    fn dependency_waits_for_named_siblings() {
        let spec = [("a", false, vec![]), ("b", false, vec!["a".to_string()]), ("c", false, vec![])];
        let v = views(&spec);
        assert_eq!(Strategy::Dependency.eligible(&v, false), vec![0, 2]);
        assert_eq!(unmet(&v, 1), vec!["a"]);
    }

    #[test]
    fn spelling_round_trips() {
        for s in ["serial", "parallel", "canary", "dependency"] {
            let parsed: Strategy = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
            assert_eq!(serde_json::to_string(&parsed).unwrap(), format!("\"{s}\""));
        }
        assert!("rolling".parse::<Strategy>().unwrap_err().contains("serial"));
    }
}
