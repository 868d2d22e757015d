//! Placement rules and the placement view: where a pod may go, given where
//! the service's pods already are. Pure and indexed — one check costs a few
//! hash lookups, never a scan of the pods.
//!
//! Counting rules (`unique`, `max-per`, `group-by`) count pods of the same
//! pod type as the one being placed: `unique: hostname` on `broker` keeps two
//! brokers off one host but lets a `db` node share it. `colocate-with`
//! and `avoid` name another pod type of the same service. The pod being
//! placed never counts against itself: if the view still holds it (a
//! replacement), its own entry is left out of every count.

use crate::resources::{AgentId, Attributes};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Where a pod may go. Attributes are the agent's (`hostname`, `zone`,
/// `rack`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PlacementRule {
    /// At most one pod of this type per value of `attribute`.
    Unique {
        /// e.g. `hostname`.
        attribute: String,
    },
    /// At most `max` pods of this type per value of `attribute`.
    MaxPer {
        /// e.g. `zone`.
        attribute: String,
        /// Pods allowed per value.
        max: usize,
    },
    /// Spread pods of this type evenly over the values of `attribute`: a pod
    /// may go to a value only if that value holds no more pods than the
    /// least-used value.
    GroupBy {
        /// e.g. `zone`.
        attribute: String,
        /// How many distinct values to expect; values not yet seen count as
        /// empty. Without it, the values the view has seen (pods and
        /// [`PlacementView::observe_agent`]) are the universe.
        #[serde(default)]
        count: Option<usize>,
    },
    /// The agent's `attribute` must match `pattern` (see [`pattern_matches`]).
    Like {
        /// The attribute to test.
        attribute: String,
        /// Exact value, `*` wildcards, `a|b` alternatives.
        pattern: String,
    },
    /// The agent's `attribute` must not match `pattern`; an agent without the
    /// attribute passes.
    Unlike {
        /// The attribute to test.
        attribute: String,
        /// Exact value, `*` wildcards, `a|b` alternatives.
        pattern: String,
    },
    /// The agent must already run a pod of `pod_type`.
    ColocateWith {
        /// The other pod type of the same service.
        pod_type: String,
    },
    /// The agent must not run a pod of `pod_type`.
    Avoid {
        /// The other pod type of the same service.
        pod_type: String,
    },
}

impl PlacementRule {
    /// `unique: ATTRIBUTE`.
    pub fn unique(attribute: impl Into<String>) -> Self {
        PlacementRule::Unique { attribute: attribute.into() }
    }
    /// `max-per: {ATTRIBUTE: MAX}`.
    pub fn max_per(attribute: impl Into<String>, max: usize) -> Self {
        PlacementRule::MaxPer { attribute: attribute.into(), max }
    }
    /// `group-by: ATTRIBUTE`, optionally expecting `count` values.
    pub fn group_by(attribute: impl Into<String>, count: Option<usize>) -> Self {
        PlacementRule::GroupBy { attribute: attribute.into(), count }
    }
    /// `like: {ATTRIBUTE: PATTERN}`.
    pub fn like(attribute: impl Into<String>, pattern: impl Into<String>) -> Self {
        PlacementRule::Like { attribute: attribute.into(), pattern: pattern.into() }
    }
    /// `unlike: {ATTRIBUTE: PATTERN}`.
    pub fn unlike(attribute: impl Into<String>, pattern: impl Into<String>) -> Self {
        PlacementRule::Unlike { attribute: attribute.into(), pattern: pattern.into() }
    }
    /// `colocate-with: POD_TYPE`.
    pub fn colocate_with(pod_type: impl Into<String>) -> Self {
        PlacementRule::ColocateWith { pod_type: pod_type.into() }
    }
    /// `avoid: POD_TYPE`.
    pub fn avoid(pod_type: impl Into<String>) -> Self {
        PlacementRule::Avoid { pod_type: pod_type.into() }
    }
}

impl fmt::Display for PlacementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementRule::Unique { attribute } => write!(f, "unique: {attribute}"),
            PlacementRule::MaxPer { attribute, max } => write!(f, "max-per: {attribute}={max}"),
            PlacementRule::GroupBy { attribute, count: None } => write!(f, "group-by: {attribute}"),
            PlacementRule::GroupBy { attribute, count: Some(n) } => {
                write!(f, "group-by: {attribute}, {n} values")
            }
            PlacementRule::Like { attribute, pattern } => write!(f, "like: {attribute}={pattern}"),
            PlacementRule::Unlike { attribute, pattern } => {
                write!(f, "unlike: {attribute}={pattern}")
            }
            PlacementRule::ColocateWith { pod_type } => write!(f, "colocate-with: {pod_type}"),
            PlacementRule::Avoid { pod_type } => write!(f, "avoid: {pod_type}"),
        }
    }
}

/// Whether `value` matches `pattern`: alternatives separated by `|`, each an
/// exact value in which `*` matches any run of characters (`zone-*`,
/// `rack-1|rack-2`, `*-ssd|*-nvme`). The whole value must match.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    pattern.split('|').any(|alt| glob(alt.as_bytes(), value.as_bytes()))
}

/// `*`-only glob over bytes, with the usual backtrack to the last star.
fn glob(p: &[u8], v: &[u8]) -> bool {
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A small multiply-rotate hasher for the view's interned keys: short
/// strings and integer tuples from our own agents and specs.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// Strings ↔ dense ids, so the indexes key on integers.
#[derive(Debug, Clone, Default)]
struct Interner {
    ids: FastMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// One placed pod: its agent and the agent's attributes, interned.
#[derive(Debug, Clone)]
struct PodEntry {
    agent: u32,
    attrs: Vec<(u32, u32)>,
}

/// Where the service's pods are: pod instance → (pod type, agent,
/// attributes), indexed by attribute value and by agent so each rule check
/// is a few hash lookups.
#[derive(Debug, Clone, Default)]
pub struct PlacementView {
    types: Interner,
    attrs: Interner,
    values: Interner,
    agents: Interner,
    pods: FastMap<(u32, usize), PodEntry>,
    /// (type, attribute, value) → indices of that type's pods there.
    by_value: FastMap<(u32, u32, u32), Vec<usize>>,
    /// (type, attribute) → histogram of pods per value: pods → number of
    /// values holding that many (only values holding at least one).
    spread: FastMap<(u32, u32), BTreeMap<usize, usize>>,
    /// type → agent → indices of that type's pods on it; agents in
    /// first-seen order.
    by_agent: FastMap<u32, BTreeMap<u32, Vec<usize>>>,
    /// attribute → every value seen on an agent.
    known: FastMap<u32, FastSet<u32>>,
}

impl PlacementView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pods in the view.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the view holds no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Records that pod `pod_type`-`index` runs (or is reserved) on `agent`
    /// with `attributes`; replaces any earlier placement of that pod.
    pub fn insert(&mut self, pod_type: &str, index: usize, agent: &str, attributes: &Attributes) {
        let t = self.types.intern(pod_type);
        if self.pods.contains_key(&(t, index)) {
            self.remove(pod_type, index);
        }
        let a = self.agents.intern(agent);
        let mut attrs = Vec::with_capacity(attributes.len());
        for (k, v) in attributes {
            let k = self.attrs.intern(k);
            let v = self.values.intern(v);
            self.known.entry(k).or_default().insert(v);
            let pods = self.by_value.entry((t, k, v)).or_default();
            pods.push(index);
            let now = pods.len();
            let hist = self.spread.entry((t, k)).or_default();
            bump(hist, now - 1, now);
            attrs.push((k, v));
        }
        self.by_agent.entry(t).or_default().entry(a).or_default().push(index);
        self.pods.insert((t, index), PodEntry { agent: a, attrs });
    }

    /// Forgets pod `pod_type`-`index`; false when it was not in the view.
    pub fn remove(&mut self, pod_type: &str, index: usize) -> bool {
        let Some(t) = self.types.get(pod_type) else {
            return false;
        };
        let Some(entry) = self.pods.remove(&(t, index)) else {
            return false;
        };
        for &(k, v) in &entry.attrs {
            if let Some(pods) = self.by_value.get_mut(&(t, k, v)) {
                let before = pods.len();
                pods.retain(|&i| i != index);
                let now = pods.len();
                if now == 0 {
                    self.by_value.remove(&(t, k, v));
                }
                if let Some(hist) = self.spread.get_mut(&(t, k)) {
                    bump(hist, before, now);
                }
            }
        }
        if let Some(agents) = self.by_agent.get_mut(&t) {
            if let Some(pods) = agents.get_mut(&entry.agent) {
                pods.retain(|&i| i != index);
                if pods.is_empty() {
                    agents.remove(&entry.agent);
                }
            }
        }
        true
    }

    /// Notes an agent's attribute values (e.g. from each offer), so
    /// `group-by` without a count knows values that hold no pod yet.
    pub fn observe_agent(&mut self, attributes: &Attributes) {
        for (k, v) in attributes {
            let k = self.attrs.intern(k);
            let v = self.values.intern(v);
            self.known.entry(k).or_default().insert(v);
        }
    }

    /// The agent pod `pod_type`-`index` is placed on, if it is in the view.
    pub fn agent_of(&self, pod_type: &str, index: usize) -> Option<&str> {
        let t = self.types.get(pod_type)?;
        self.pods.get(&(t, index)).map(|e| self.agents.name(e.agent))
    }

    /// Agents running at least one pod of `pod_type`, in the order they were
    /// first used: the candidates for `colocate-with: POD_TYPE`.
    pub fn agents_running(&self, pod_type: &str) -> impl Iterator<Item = &str> + '_ {
        self.types
            .get(pod_type)
            .and_then(|t| self.by_agent.get(&t))
            .into_iter()
            .flat_map(|m| m.keys().map(|&a| self.agents.name(a)))
    }

    /// The pod being placed, resolved once for checking several rules or
    /// agents.
    pub fn placing(&self, pod_type: &str, index: usize) -> Placing<'_> {
        let t = self.types.get(pod_type);
        let me = t.and_then(|t| self.pods.get(&(t, index)));
        Placing { view: self, pod_type: t, index, me }
    }
}

/// Moves one value from `before` pods to `now` pods in a spread histogram.
fn bump(hist: &mut BTreeMap<usize, usize>, before: usize, now: usize) {
    if before > 0 {
        if let Some(n) = hist.get_mut(&before) {
            *n -= 1;
            if *n == 0 {
                hist.remove(&before);
            }
        }
    }
    if now > 0 {
        *hist.entry(now).or_default() += 1;
    }
}

/// A pod being placed, with its own view entry (if any) left out of counts.
#[derive(Debug, Clone, Copy)]
pub struct Placing<'a> {
    view: &'a PlacementView,
    pod_type: Option<u32>,
    index: usize,
    me: Option<&'a PodEntry>,
}

impl Placing<'_> {
    /// Checks every rule against the agent; the first failure's reason.
    pub fn check_all(&self, rules: &[PlacementRule], agent: (&AgentId, &Attributes)) -> Result<(), String> {
        rules.iter().try_for_each(|r| self.check(r, agent))
    }

    /// Checks one rule against the agent.
    pub fn check(&self, rule: &PlacementRule, agent: (&AgentId, &Attributes)) -> Result<(), String> {
        let (agent_id, attributes) = agent;
        match rule {
            PlacementRule::Unique { attribute } => {
                let value = required(attributes, attribute, agent_id, rule)?;
                let (n, example) = self.count_on(attribute, value);
                if n > 0 {
                    let name = self.pod_name(example);
                    return Err(format!("{attribute} {value} already runs {name} ({rule})"));
                }
                Ok(())
            }
            PlacementRule::MaxPer { attribute, max } => {
                let value = required(attributes, attribute, agent_id, rule)?;
                let (n, _) = self.count_on(attribute, value);
                if n >= *max {
                    return Err(format!("{attribute} {value} has {n} of at most {max} pods ({rule})"));
                }
                Ok(())
            }
            PlacementRule::GroupBy { attribute, count } => {
                let value = required(attributes, attribute, agent_id, rule)?;
                let (n, _) = self.count_on(attribute, value);
                if n == 0 {
                    return Ok(());
                }
                let least = self.least_used(attribute, count.unwrap_or(0));
                if n > least {
                    return Err(format!(
                        "{attribute} {value} has {n} pods, the least-used {attribute} has {least} ({rule})"
                    ));
                }
                Ok(())
            }
            PlacementRule::Like { attribute, pattern } => match attributes.get(attribute) {
                None => Err(format!("agent {} has no attribute {attribute} ({rule})", label(agent))),
                Some(value) if pattern_matches(pattern, value) => Ok(()),
                Some(value) => Err(format!("{attribute} {value} does not match {pattern} ({rule})")),
            },
            PlacementRule::Unlike { attribute, pattern } => match attributes.get(attribute) {
                Some(value) if pattern_matches(pattern, value) => {
                    Err(format!("{attribute} {value} matches {pattern} ({rule})"))
                }
                _ => Ok(()),
            },
            PlacementRule::ColocateWith { pod_type } => {
                if self.on_agent(pod_type, agent_id).is_none() {
                    return Err(format!("agent {} runs no {pod_type} pod ({rule})", label(agent)));
                }
                Ok(())
            }
            PlacementRule::Avoid { pod_type } => {
                if let Some(i) = self.on_agent(pod_type, agent_id) {
                    return Err(format!("agent {} already runs {pod_type}-{i} ({rule})", label(agent)));
                }
                Ok(())
            }
        }
    }

    /// Pods of this type on `attribute`=`value`, without this pod, and one
    /// of them by index.
    fn count_on(&self, attribute: &str, value: &str) -> (usize, usize) {
        let v = self.view;
        let (Some(t), Some(k), Some(val)) = (self.pod_type, v.attrs.get(attribute), v.values.get(value)) else {
            return (0, 0);
        };
        let Some(pods) = v.by_value.get(&(t, k, val)) else {
            return (0, 0);
        };
        let mine = self.me.is_some_and(|e| e.attrs.contains(&(k, val)));
        let n = pods.len() - usize::from(mine);
        let example = pods.iter().copied().find(|&i| !mine || i != self.index).unwrap_or(0);
        (n, example)
    }

    /// Fewest pods of this type on any value of `attribute`, with this pod
    /// left out; 0 when some value expected or known holds none.
    fn least_used(&self, attribute: &str, expected: usize) -> usize {
        let v = self.view;
        let (Some(t), Some(k)) = (self.pod_type, v.attrs.get(attribute)) else {
            return 0;
        };
        let Some(hist) = v.spread.get(&(t, k)) else {
            return 0;
        };
        // This pod's own value: it holds one pod fewer once this one is left out.
        let mine = self
            .me
            .and_then(|e| e.attrs.iter().find(|(a, _)| *a == k))
            .map(|&(_, val)| v.by_value.get(&(t, k, val)).map_or(0, Vec::len));
        let mut distinct: usize = hist.values().sum();
        let mut least = usize::MAX;
        for (&pods, &values) in hist {
            let values = values - usize::from(mine == Some(pods));
            if values > 0 {
                least = pods;
                break;
            }
        }
        if let Some(c) = mine {
            if c > 1 {
                least = least.min(c - 1);
            } else {
                distinct -= 1;
                least = 0;
            }
        }
        let universe = expected.max(v.known.get(&k).map_or(0, |s| s.len()));
        if distinct < universe || least == usize::MAX {
            return 0;
        }
        least
    }

    /// The index of a pod of `pod_type` on `agent` other than this pod.
    fn on_agent(&self, pod_type: &str, agent: &str) -> Option<usize> {
        let v = self.view;
        let t = v.types.get(pod_type)?;
        let a = v.agents.get(agent)?;
        let pods = v.by_agent.get(&t)?.get(&a)?;
        pods.iter().copied().find(|&i| !(Some(t) == self.pod_type && self.me.is_some() && i == self.index))
    }

    fn pod_name(&self, index: usize) -> String {
        let t = self.pod_type.map_or("", |t| self.view.types.name(t));
        format!("{t}-{index}")
    }
}

/// The agent's value of `attribute`, or a reason naming the rule.
fn required<'a>(
    attributes: &'a Attributes,
    attribute: &str,
    agent: &AgentId,
    rule: &PlacementRule,
) -> Result<&'a str, String> {
    attributes
        .get(attribute)
        .map(String::as_str)
        .ok_or_else(|| format!("agent {agent} has no attribute {attribute} ({rule})"))
}

/// The agent's hostname when it has one, else its id.
fn label<'a>(agent: (&'a AgentId, &'a Attributes)) -> &'a str {
    agent.1.get("hostname").map_or(agent.0.as_str(), String::as_str)
}

/// Checks one rule for pod `pod_type`-`pod_index` on `agent`; the pod's own
/// entry in the view (on replacement) does not count.
pub fn check(
    rule: &PlacementRule,
    pod_type: &str,
    pod_index: usize,
    agent: (&AgentId, &Attributes),
    view: &PlacementView,
) -> Result<(), String> {
    view.placing(pod_type, pod_index).check(rule, agent)
}

/// A soft placement preference of one pod placed anew (the service spec's
/// `prefer:` entry for its index): an agent by hostname, else one in a zone.
/// Unlike a [`PlacementRule`] it never refuses an agent; it only ranks the
/// agents whose offers passed every rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    /// The preferred agent's `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The zone to fall back to (usually the preferred agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// How near an agent is to a [`Preference`], best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Locality {
    /// The preferred hostname.
    Host,
    /// Another agent of the preferred zone.
    Zone,
    /// Anywhere else.
    Elsewhere,
}

impl Preference {
    /// How near the agent with `attributes` (with `hostname` among them) is.
    pub fn locality(&self, attributes: &Attributes) -> Locality {
        let is = |want: &Option<String>, key: &str| want.is_some() && attributes.get(key) == want.as_ref();
        if is(&self.hostname, "hostname") {
            Locality::Host
        } else if is(&self.zone, "zone") {
            Locality::Zone
        } else {
            Locality::Elsewhere
        }
    }

    /// The index of the best of `agents` (attributes of the agents whose
    /// offers passed, in offer order): the first on the preferred hostname,
    /// else the first in the preferred zone, else the first; `None` when
    /// empty.
    pub fn best<'a>(&self, agents: impl IntoIterator<Item = &'a Attributes>) -> Option<usize> {
        agents.into_iter().enumerate().min_by_key(|(i, a)| (self.locality(a), *i)).map(|(i, _)| i)
    }
}

impl fmt::Display for Preference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.hostname, &self.zone) {
            (Some(h), Some(z)) => write!(f, "hostname {h} (zone {z})"),
            (Some(h), None) => write!(f, "hostname {h}"),
            (None, Some(z)) => write!(f, "zone {z}"),
            (None, None) => f.write_str("no preference"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_rank_the_host_then_its_zone_then_offer_order() {
        let (a1, a2, a3, a4) = (attrs("h1", "za"), attrs("h2", "zb"), attrs("h3", "zb"), attrs("h4", "zc"));
        let p = Preference { hostname: Some("h3".into()), zone: Some("zb".into()) };
        assert_eq!(p.locality(&a3), Locality::Host);
        assert_eq!(p.locality(&a2), Locality::Zone);
        assert_eq!(p.locality(&a1), Locality::Elsewhere);
        assert_eq!(p.best([&a1, &a2, &a3, &a4]), Some(2), "the preferred host wins wherever it is");
        assert_eq!(p.best([&a1, &a4, &a2]), Some(2), "then the first agent of its zone");
        assert_eq!(p.best([&a4, &a1]), Some(0), "then the first that passed");
        assert_eq!(p.best(std::iter::empty()), None);
        // A zone alone, or a hostname alone.
        let zone = Preference { hostname: None, zone: Some("zc".into()) };
        assert_eq!(zone.best([&a1, &a2, &a4]), Some(2));
        let host = Preference { hostname: Some("h2".into()), zone: None };
        assert_eq!(host.best([&a3, &a2]), Some(1));
        assert_eq!(host.locality(&a3), Locality::Elsewhere, "no zone named: a zone-mate is not nearer");
        // An agent without the attribute is never a match for it.
        assert_eq!(Preference::default().locality(&Attributes::new()), Locality::Elsewhere);
        assert_eq!(p.to_string(), "hostname h3 (zone zb)");
    }

    fn attrs(host: &str, zone: &str) -> Attributes {
        let mut a = Attributes::new();
        a.insert("hostname".into(), host.into());
        a.insert("zone".into(), zone.into());
        a
    }

    fn agent(n: usize, zone: &str) -> (AgentId, Attributes) {
        (format!("a{n}"), attrs(&format!("127.0.1.{n}"), zone))
    }

    fn ck(rule: &PlacementRule, t: &str, i: usize, a: &(AgentId, Attributes), v: &PlacementView) -> Result<(), String> {
        check(rule, t, i, (&a.0, &a.1), v)
    }

    #[test]
    fn patterns_match_exact_wildcards_and_alternatives() {
        assert!(pattern_matches("zone-a", "zone-a"));
        assert!(!pattern_matches("zone-a", "zone-ab"));
        assert!(pattern_matches("zone-*", "zone-ab"));
        assert!(pattern_matches("*-ssd|*-nvme", "rack1-nvme"));
        assert!(!pattern_matches("*-ssd|*-nvme", "rack1-hdd"));
        assert!(pattern_matches("a*b*c", "aXXbYYbc"));
        assert!(!pattern_matches("a*b*c", "aXXbYYbd"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("rack-1|rack-2", "rack-2"));
    }

    #[test]
    fn unique_hostname_refuses_a_second_pod_on_a_host() {
        let mut v = PlacementView::new();
        let a1 = agent(1, "zone-a");
        let a2 = agent(2, "zone-a");
        v.insert("hello", 0, &a1.0, &a1.1);
        let rule = PlacementRule::unique("hostname");
        assert_eq!(
            ck(&rule, "hello", 1, &a1, &v).unwrap_err(),
            "hostname 127.0.1.1 already runs hello-0 (unique: hostname)"
        );
        assert!(ck(&rule, "hello", 1, &a2, &v).is_ok());
        // Another pod type may share the host.
        assert!(ck(&rule, "world", 0, &a1, &v).is_ok());
        // The pod itself, being replaced, does not count.
        assert!(ck(&rule, "hello", 0, &a1, &v).is_ok());
    }

    #[test]
    fn max_per_zone_counts_pods_of_the_type_in_the_zone() {
        let mut v = PlacementView::new();
        let a1 = agent(1, "zone-a");
        let a2 = agent(2, "zone-a");
        let a3 = agent(3, "zone-b");
        v.insert("hello", 0, &a1.0, &a1.1);
        let rule = PlacementRule::max_per("zone", 1);
        assert_eq!(
            ck(&rule, "hello", 1, &a2, &v).unwrap_err(),
            "zone zone-a has 1 of at most 1 pods (max-per: zone=1)"
        );
        assert!(ck(&rule, "hello", 1, &a3, &v).is_ok());
        let two = PlacementRule::max_per("zone", 2);
        assert!(ck(&two, "hello", 1, &a2, &v).is_ok());
        v.insert("hello", 1, &a2.0, &a2.1);
        assert!(ck(&two, "hello", 2, &a2, &v).is_err());
        // Moving hello-1 within zone-a is allowed: it does not count itself.
        assert!(ck(&two, "hello", 1, &a1, &v).is_ok());
        assert!(v.remove("hello", 1));
        assert!(ck(&two, "hello", 2, &a2, &v).is_ok());
        assert!(!v.remove("hello", 1));
    }

    #[test]
    fn missing_attribute_fails_counting_rules() {
        let v = PlacementView::new();
        let bare = ("a9".to_string(), Attributes::new());
        assert_eq!(
            ck(&PlacementRule::unique("rack"), "hello", 0, &bare, &v).unwrap_err(),
            "agent a9 has no attribute rack (unique: rack)"
        );
    }

    #[test]
    fn group_by_spreads_evenly_over_expected_values() {
        let mut v = PlacementView::new();
        let (za, zb, zc) = (agent(1, "zone-a"), agent(2, "zone-b"), agent(3, "zone-c"));
        let za2 = agent(4, "zone-a");
        let rule = PlacementRule::group_by("zone", Some(3));
        assert!(ck(&rule, "hello", 0, &za, &v).is_ok());
        v.insert("hello", 0, &za.0, &za.1);
        // zone-b and zone-c are expected but empty: zone-a must wait.
        assert_eq!(
            ck(&rule, "hello", 1, &za2, &v).unwrap_err(),
            "zone zone-a has 1 pods, the least-used zone has 0 (group-by: zone, 3 values)"
        );
        assert!(ck(&rule, "hello", 1, &zb, &v).is_ok());
        v.insert("hello", 1, &zb.0, &zb.1);
        assert!(ck(&rule, "hello", 2, &za2, &v).is_err());
        v.insert("hello", 2, &zc.0, &zc.1);
        // Every zone holds one: any zone will do.
        assert!(ck(&rule, "hello", 3, &za2, &v).is_ok());
        v.insert("hello", 3, &za2.0, &za2.1);
        assert!(ck(&rule, "hello", 4, &za, &v).is_err());
        assert!(ck(&rule, "hello", 4, &zc, &v).is_ok());
        // Replacing hello-3 (in zone-a): zone-a back to 1, it may stay there.
        assert!(ck(&rule, "hello", 3, &za, &v).is_ok());
    }

    #[test]
    fn group_by_without_count_uses_observed_values() {
        let mut v = PlacementView::new();
        let (za, zb) = (agent(1, "zone-a"), agent(2, "zone-b"));
        let za2 = agent(3, "zone-a");
        let rule = PlacementRule::group_by("zone", None);
        v.insert("hello", 0, &za.0, &za.1);
        // Only zone-a is known: it is the least used.
        assert!(ck(&rule, "hello", 1, &za2, &v).is_ok());
        v.observe_agent(&zb.1);
        assert!(ck(&rule, "hello", 1, &za2, &v).is_err());
        assert!(ck(&rule, "hello", 1, &zb, &v).is_ok());
    }

    #[test]
    fn like_and_unlike_match_attribute_patterns() {
        let v = PlacementView::new();
        let a = agent(1, "zone-a");
        let c = agent(3, "zone-c");
        let like = PlacementRule::like("zone", "zone-a|zone-b");
        assert!(ck(&like, "hello", 0, &a, &v).is_ok());
        assert_eq!(
            ck(&like, "hello", 0, &c, &v).unwrap_err(),
            "zone zone-c does not match zone-a|zone-b (like: zone=zone-a|zone-b)"
        );
        let unlike = PlacementRule::unlike("zone", "*-c");
        assert!(ck(&unlike, "hello", 0, &a, &v).is_ok());
        assert_eq!(ck(&unlike, "hello", 0, &c, &v).unwrap_err(), "zone zone-c matches *-c (unlike: zone=*-c)");
        let rack = PlacementRule::like("rack", "r1");
        assert_eq!(ck(&rack, "hello", 0, &a, &v).unwrap_err(), "agent 127.0.1.1 has no attribute rack (like: rack=r1)");
        assert!(ck(&PlacementRule::unlike("rack", "r1"), "hello", 0, &a, &v).is_ok());
    }

    #[test]
    fn colocate_and_avoid_look_at_other_pod_types_on_the_agent() {
        let mut v = PlacementView::new();
        let a1 = agent(1, "zone-a");
        let a2 = agent(2, "zone-a");
        v.insert("broker", 2, &a1.0, &a1.1);
        let co = PlacementRule::colocate_with("broker");
        assert!(ck(&co, "analyze", 0, &a1, &v).is_ok());
        assert_eq!(
            ck(&co, "analyze", 0, &a2, &v).unwrap_err(),
            "agent 127.0.1.2 runs no broker pod (colocate-with: broker)"
        );
        let avoid = PlacementRule::avoid("broker");
        assert_eq!(ck(&avoid, "db", 0, &a1, &v).unwrap_err(), "agent 127.0.1.1 already runs broker-2 (avoid: broker)");
        assert!(ck(&avoid, "db", 0, &a2, &v).is_ok());
        // Avoiding its own type: broker-2 itself does not count.
        assert!(ck(&avoid, "broker", 2, &a1, &v).is_ok());
        assert!(ck(&avoid, "broker", 3, &a1, &v).is_err());
        assert_eq!(v.agents_running("broker").collect::<Vec<_>>(), vec!["a1"]);
        assert_eq!(v.agent_of("broker", 2), Some("a1"));
        // Moving broker-2 updates every index.
        v.insert("broker", 2, &a2.0, &a2.1);
        assert_eq!(v.len(), 1);
        assert!(ck(&co, "analyze", 0, &a1, &v).is_err());
        assert!(ck(&co, "analyze", 0, &a2, &v).is_ok());
    }

    #[test]
    fn rules_display_as_in_the_spec() {
        assert_eq!(PlacementRule::max_per("zone", 1).to_string(), "max-per: zone=1");
        assert_eq!(PlacementRule::group_by("zone", None).to_string(), "group-by: zone");
        let json = serde_json::to_string(&PlacementRule::max_per("zone", 2)).unwrap();
        assert_eq!(json, r#"{"type":"max-per","attribute":"zone","max":2}"#);
    }
}
