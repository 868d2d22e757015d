//! The service spec: YAML → typed structs → validation, every error at its
//! `file:line:column`.
//!
//! Start with [`ServiceSpec::from_yaml`]. A spec lists pod types ([`PodSpec`]:
//! a count, a resource set, volumes, placement rules, tasks) and plans
//! ([`PlanSpec`] → [`PhaseSpec`]). [`validate_update`] says which changes to a
//! running spec are unsafe, [`changed_pods`] which pod types an update plan
//! must roll, and [`render_template`] fills a task's config templates.
//!
//! Why `marked-yaml` and not `yaml_serde`: semantic errors (`colocate-with:
//! nosuch`, a phase naming an unknown task) must point at the offending value,
//! long after deserialization, and every error in a file should be reported in
//! one go. `yaml_serde` forgets positions once a value is deserialized and
//! stops at the first error. `marked-yaml` (pure Rust, on `yaml-rust2`) parses
//! into a tree whose every node carries its line and column; `decode` walks
//! that tree by hand, collecting all errors, and keeps the positions that the
//! cross-reference checks in `validate` need ([`Pos`] fields, skipped when
//! serializing and ignored by equality).

mod decode;
mod template;
mod update;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use template::{render_template, template_vars, TemplateError};
pub use update::{changed_pods, validate_update, UpdateRefusal};

use crate::resources::{Check, CheckSpec, MountDisk, PortSet, Resources, VolumeSource};
use crate::scheduler::plan::PlanKind;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A line and column (both from 1) in a spec file.
///
/// Positions are provenance, not content: any two compare equal, so two
/// specs that differ only in layout are equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl PartialEq for Pos {
    fn eq(&self, _: &Pos) -> bool {
        true
    }
}
impl Eq for Pos {}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field's path, e.g. `pods.hello.resources.cpus`.
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

/// Every problem found in a spec file, in file order; displays as one
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

/// A declared service: its pod types and plans.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceSpec {
    pub name: String,
    /// The role its reservations carry; defaults to `name`.
    pub role: String,
    /// Pod types in declaration order (the default deploy order).
    #[serde(serialize_with = "named_map")]
    pub pods: Vec<PodSpec>,
    /// Declared plans: overrides of `deploy`/`update`, and custom plans.
    #[serde(serialize_with = "named_map", skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<PlanSpec>,
}

impl ServiceSpec {
    /// Parses and validates a spec; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<ServiceSpec, SpecErrors> {
        let mut cx = yaml::Cx::new(file);
        let spec = decode::decode(&mut cx, text);
        if let Some(spec) = &spec {
            validate::validate(&mut cx, spec);
        }
        let mut errors = cx.into_errors();
        if errors.is_empty() {
            if let Some(spec) = spec {
                return Ok(spec);
            }
        }
        errors.sort_by_key(|e| (e.line, e.column));
        Err(SpecErrors(errors))
    }

    /// The pod type named `name`.
    pub fn pod(&self, name: &str) -> Option<&PodSpec> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// The declared plan named `name` (built-in plans not overridden are not
    /// declared; see [`ServiceSpec::deploy_plan`]).
    pub fn plan(&self, name: &str) -> Option<&PlanSpec> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// The deploy plan: the declared one, or one serial phase per pod type in
    /// declaration order, each rolling its pods serially.
    pub fn deploy_plan(&self) -> PlanSpec {
        if let Some(p) = self.plan(PlanKind::Deploy.as_str()) {
            return p.clone();
        }
        PlanSpec {
            name: PlanKind::Deploy.to_string(),
            strategy: Strategy::Serial,
            phases: self
                .pods
                .iter()
                .map(|p| PhaseSpec {
                    name: p.name.clone(),
                    strategy: Strategy::Serial,
                    pod: p.name.clone(),
                    steps: None,
                    tasks: None,
                    depends_on: Vec::new(),
                    at: PhasePositions::default(),
                })
                .collect(),
            parameters: BTreeMap::new(),
            pos: Pos::default(),
        }
    }
}

/// A pod type: `count` pods (`NAME-0` … `NAME-{count-1}`), each a group of
/// tasks placed together, sharing one resource set and its volumes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PodSpec {
    #[serde(skip)]
    pub name: String,
    pub count: u32,
    pub resources: ResourceSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<Placement>,
    #[serde(serialize_with = "named_map")]
    pub tasks: Vec<TaskSpec>,
    /// Whether lowering `count` may decommission pods.
    pub allow_decommission: bool,
    /// Service hooks: commands run at points of a pod's life.
    #[serde(skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// `prefer:` — a soft placement preference per pod index (entry `i` is
    /// for pod `i`; an empty entry, or none, means no preference). See
    /// [`Preference`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<Preference>,
    /// Where the pod type's name is.
    #[serde(skip)]
    pub pos: Pos,
    #[serde(skip)]
    pub count_pos: Pos,
}

impl PodSpec {
    /// The name of pod `index`: `broker-0`.
    pub fn instance_name(&self, index: u32) -> String {
        format!("{}-{index}", self.name)
    }
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }
    pub fn port(&self, name: &str) -> Option<&PortSpec> {
        self.resources.ports.iter().find(|p| p.name == name)
    }
    /// The placement rules, without their positions.
    pub fn rules(&self) -> impl Iterator<Item = &PlacementRule> {
        self.placement.iter().map(|p| &p.rule)
    }
    /// The placement preference of pod `index`, if it has a non-empty one.
    pub fn preference(&self, index: u32) -> Option<&Preference> {
        self.prefer.get(index as usize).filter(|p| !p.is_empty())
    }
    /// Whether a rule spreads or groups this pod type by zone.
    pub fn is_zone_aware(&self) -> bool {
        self.rules().any(PlacementRule::is_zone_aware)
    }
    /// What one pod reserves, as far as the spec alone tells: cpus, mem, the
    /// ROOT disk of its ROOT volumes, and its fixed ports. MOUNT volumes and
    /// dynamic ports are matched against each offer.
    pub fn fixed_resources(&self) -> Resources {
        let disk = self.volumes.iter().filter(|v| v.kind == VolumeType::Root).map(|v| v.size).sum();
        let fixed = self.resources.ports.iter().filter(|p| p.port != 0).map(|p| p.port);
        Resources::new(self.resources.cpus, self.resources.mem, disk).with_ports(PortSet::from_ports(fixed))
    }
}

/// A pod's resource set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceSpec {
    pub cpus: f64,
    /// MiB.
    pub mem: u64,
    #[serde(serialize_with = "named_map", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// A named port: fixed, or dynamic (`port: 0`, picked from the offer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSpec {
    #[serde(skip)]
    pub name: String,
    /// 0 for a dynamic port.
    pub port: u16,
    /// The env var the port is injected as, when not `PORT_<NAME>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Where the port's name is.
    #[serde(skip)]
    pub pos: Pos,
    /// Where its number is.
    #[serde(skip)]
    pub port_pos: Pos,
}

impl PortSpec {
    pub fn is_dynamic(&self) -> bool {
        self.port == 0
    }
    /// The env var the task sees the port as: `env`, else `PORT_<NAME>`.
    pub fn env_name(&self) -> String {
        self.env.clone().unwrap_or_else(|| format!("PORT_{}", env_suffix(&self.name)))
    }
}

/// `ROOT`: a directory on the agent's root disk; `MOUNT`: a whole disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeType {
    Root,
    Mount,
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeType::Root => "ROOT",
            VolumeType::Mount => "MOUNT",
        })
    }
}

/// A persistent volume of a pod, mounted at `path` in each of its tasks'
/// sandboxes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeSpec {
    /// Defaults to the path.
    pub name: String,
    /// Relative to the sandbox.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: VolumeType,
    /// MiB (for MOUNT: the least size of disk accepted).
    pub size: u64,
    /// Where the volume's path is.
    #[serde(skip)]
    pub pos: Pos,
}

impl VolumeSpec {
    /// The env var the task sees the volume's path as: `VOLUME_<NAME>`.
    pub fn env_name(&self) -> String {
        format!("VOLUME_{}", env_suffix(&self.name))
    }
    /// Where the volume lives: ROOT needs no disk; MOUNT needs the whole
    /// MOUNT disk the offer evaluator picked (at least `size` MiB), and is
    /// `None` without one.
    pub fn source(&self, mount: Option<&MountDisk>) -> Option<VolumeSource> {
        match self.kind {
            VolumeType::Root => Some(VolumeSource::Root { size: self.size }),
            VolumeType::Mount => {
                mount.filter(|m| m.size >= self.size).map(|m| VolumeSource::Mount { path: m.path.clone() })
            }
        }
    }
}

/// A placement rule with where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Placement {
    pub rule: PlacementRule,
    #[serde(skip)]
    pub pos: Pos,
}

/// Where a pod may go. Attributes are agent attributes (`hostname`, `zone`,
/// `rack`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementRule {
    /// `unique: ATTR` — at most one pod of this type per attribute value.
    Unique { attribute: String },
    /// `max-per: {ATTR: N}` — at most N pods of this type per value.
    MaxPer { attribute: String, max: u32 },
    /// `group-by: ATTR` or `group-by: {ATTR: N}` — spread evenly over the
    /// values (over N values when given).
    GroupBy { attribute: String, count: Option<u32> },
    /// `like: {ATTR: PATTERN}` — only agents whose attribute fully matches
    /// the pattern (a regular expression, or a plain value).
    Like { attribute: String, pattern: String },
    /// `unlike: {ATTR: PATTERN}` — never agents whose attribute matches.
    Unlike { attribute: String, pattern: String },
    /// `colocate-with: POD_TYPE` — only agents running a pod of that type.
    ColocateWith { pod: String },
    /// `avoid: POD_TYPE` — never agents running a pod of that type.
    Avoid { pod: String },
}

impl PlacementRule {
    /// The rule's key in YAML.
    pub fn keyword(&self) -> &'static str {
        match self {
            PlacementRule::Unique { .. } => "unique",
            PlacementRule::MaxPer { .. } => "max-per",
            PlacementRule::GroupBy { .. } => "group-by",
            PlacementRule::Like { .. } => "like",
            PlacementRule::Unlike { .. } => "unlike",
            PlacementRule::ColocateWith { .. } => "colocate-with",
            PlacementRule::Avoid { .. } => "avoid",
        }
    }
    /// Whether the rule spreads or groups by zone (`max-per`, `group-by` or
    /// `unique` on `zone`).
    pub fn is_zone_aware(&self) -> bool {
        match self {
            PlacementRule::Unique { attribute }
            | PlacementRule::MaxPer { attribute, .. }
            | PlacementRule::GroupBy { attribute, .. } => attribute == "zone",
            _ => false,
        }
    }
}

impl fmt::Display for PlacementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.keyword();
        match self {
            PlacementRule::Unique { attribute } => write!(f, "{k}: {attribute}"),
            PlacementRule::MaxPer { attribute, max } => write!(f, "{k}: {{{attribute}: {max}}}"),
            PlacementRule::GroupBy { attribute, count: None } => write!(f, "{k}: {attribute}"),
            PlacementRule::GroupBy { attribute, count: Some(n) } => write!(f, "{k}: {{{attribute}: {n}}}"),
            PlacementRule::Like { attribute, pattern } | PlacementRule::Unlike { attribute, pattern } => {
                write!(f, "{k}: {{{attribute}: {pattern}}}")
            }
            PlacementRule::ColocateWith { pod } | PlacementRule::Avoid { pod } => {
                write!(f, "{k}: {pod}")
            }
        }
    }
}

impl Serialize for PlacementRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        let k = self.keyword();
        match self {
            PlacementRule::Unique { attribute } | PlacementRule::GroupBy { attribute, count: None } => {
                m.serialize_entry(k, attribute)?
            }
            PlacementRule::MaxPer { attribute, max: n } | PlacementRule::GroupBy { attribute, count: Some(n) } => {
                m.serialize_entry(k, &BTreeMap::from([(attribute, n)]))?
            }
            PlacementRule::Like { attribute, pattern } | PlacementRule::Unlike { attribute, pattern } => {
                m.serialize_entry(k, &BTreeMap::from([(attribute, pattern)]))?
            }
            PlacementRule::ColocateWith { pod } | PlacementRule::Avoid { pod } => m.serialize_entry(k, pod)?,
        }
        m.end()
    }
}

/// Where one pod would rather go, when it is placed anew (first deployed,
/// or replaced): the agent with this `hostname`, else an agent in this
/// `zone`, else any agent its placement rules allow. Soft: it never makes
/// an offer fail, it only ranks the offers that pass. A pod that already
/// holds a reservation goes back to it whatever its preference says.
///
/// ```yaml
/// prefer:
///   - {hostname: 10.0.0.1, zone: zone-a}   # pod 0
///   - {zone: zone-b}                       # pod 1
///   - {}                                   # pod 2: no preference
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Where the entry is.
    #[serde(skip)]
    pub pos: Pos,
}

impl Preference {
    /// No hostname and no zone: no preference.
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.zone.is_none()
    }
}

/// What a task is for: run forever, run to completion each time the pod is
/// (re)deployed, or run to completion once in the pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Goal {
    Running,
    Finish,
    Once,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Goal::Running => "RUNNING",
            Goal::Finish => "FINISH",
            Goal::Once => "ONCE",
        })
    }
}

/// One task of a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskSpec {
    #[serde(skip)]
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub cmd: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Files rendered from templates with the task's env before launch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigSpec>,
    pub goal: Goal,
    /// Whether the pod fails when this task fails.
    pub essential: bool,
    /// SIGTERM, then SIGKILL after this long.
    #[serde(rename = "kill-grace-period", serialize_with = "ser_duration")]
    pub kill_grace_period_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<TaskCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_check: Option<TaskCheck>,
    /// Where the task's name is.
    #[serde(skip)]
    pub pos: Pos,
}

/// Commands run at points of a pod's life, beside its tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hooks {
    /// Run before a decommissioned pod's tasks are killed, on the pod's
    /// agent with the pod's env (ports, `POD_INSTANCE`, …), while its tasks
    /// still run: a broker moves its partitions off, a ring member
    /// leaves the ring. The pod is removed only once the hook exits 0; a
    /// failing hook is retried with backoff and keeps the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decommission: Option<HookSpec>,
    /// `update-order`: run by the scheduler (in its own process, not on an
    /// agent) right before an update plan starts rolling this pod type's
    /// existing pods; its stdout names the pods in the order to restart
    /// them (e.g. a quorum's leader last). Its env is the hook's `env`
    /// plus `SERVICE_NAME`, `POD_TYPE`, `UPDATE_PODS` (the pods to roll, in
    /// plan order) and `SMACK_PODS`. A failing hook leaves the plan order.
    /// `cpus` and `mem` do not apply. See `scheduler::service::update_order`.
    #[serde(rename = "update-order", skip_serializing_if = "Option::is_none")]
    pub update_order: Option<HookSpec>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.decommission.is_none() && self.update_order.is_none()
    }
}

/// One hook: a shell command with its own small resources (taken
/// unreserved on the pod's agent, since the pod's tasks hold its
/// reservation while the hook runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookSpec {
    pub cmd: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub cpus: f64,
    /// MiB.
    pub mem: u64,
    #[serde(skip)]
    pub pos: Pos,
}

/// A config file: `template` rendered with the task's env into `dest`
/// (relative to the sandbox).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigSpec {
    pub template: String,
    pub dest: String,
    #[serde(skip)]
    pub pos: Pos,
}

/// What a health or readiness check probes; ports are named, and resolved
/// when the pod's ports are known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A shell command in the task's sandbox with its env; exit 0 passes.
    Cmd(String),
    /// A TCP connect to the named port.
    Tcp(String),
    /// An HTTP GET of `path` on the named port; 2xx or 3xx passes.
    Http { port: String, path: String },
}

impl CheckKind {
    /// The port the check names, if any.
    pub fn port(&self) -> Option<&str> {
        match self {
            CheckKind::Cmd(_) => None,
            CheckKind::Tcp(p) | CheckKind::Http { port: p, .. } => Some(p),
        }
    }
}

/// A health or readiness check as declared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskCheck {
    #[serde(flatten)]
    pub kind: CheckKind,
    #[serde(rename = "interval", serialize_with = "ser_duration")]
    pub interval_ms: u64,
    #[serde(rename = "timeout", serialize_with = "ser_duration")]
    pub timeout_ms: u64,
    /// Consecutive failures before the check counts as failed.
    pub max_failures: u32,
    /// Time after launch during which failures do not count.
    #[serde(rename = "grace-period", serialize_with = "ser_duration")]
    pub grace_period_ms: u64,
    /// Where the named port is (or the check, for `cmd`).
    #[serde(skip)]
    pub port_pos: Pos,
}

impl TaskCheck {
    /// The agent-side check, with the named port resolved by `port_of`;
    /// `None` when the port is unknown.
    pub fn to_check_spec(&self, port_of: impl Fn(&str) -> Option<u16>) -> Option<CheckSpec> {
        let check = match &self.kind {
            CheckKind::Cmd(c) => Check::Command { command: c.clone() },
            CheckKind::Tcp(p) => Check::Tcp { port: port_of(p)? },
            CheckKind::Http { port, path } => Check::Http { port: port_of(port)?, path: path.clone() },
        };
        Some(CheckSpec {
            check,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            max_consecutive_failures: self.max_failures,
            grace_period_ms: self.grace_period_ms,
        })
    }
}

/// How a plan orders its phases, or a phase its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One after another.
    Serial,
    /// All at once.
    Parallel,
    /// The first one, then wait for `resume`, then the rest serially.
    Canary,
    /// Each as soon as everything it `depends-on` is complete.
    Dependency,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Serial => "serial",
            Strategy::Parallel => "parallel",
            Strategy::Canary => "canary",
            Strategy::Dependency => "dependency",
        })
    }
}

/// A declared plan: an override of `deploy` or `update`, or a custom plan
/// started with parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSpec {
    #[serde(skip)]
    pub name: String,
    pub strategy: Strategy,
    pub phases: Vec<PhaseSpec>,
    /// Custom plans only: parameter → default, given to the plan's tasks as
    /// env and overridable with `plan start -p KEY=VALUE`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    #[serde(skip)]
    pub pos: Pos,
}

impl PlanSpec {
    pub fn is_custom(&self) -> bool {
        !PlanKind::of(&self.name).is_built_in()
    }
    pub fn phase(&self, name: &str) -> Option<&PhaseSpec> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// A phase: steps over the pods of one pod type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PhaseSpec {
    pub name: String,
    pub strategy: Strategy,
    pub pod: String,
    /// Pod indices in the order to run them; all, ascending, when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u32>>,
    /// The tasks each step launches; all of the pod's, when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<String>>,
    /// Phases of the same plan that must complete first (plan strategy
    /// `dependency`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(skip)]
    pub at: PhasePositions,
}

/// Where a phase's parts are, for errors found after decoding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhasePositions {
    pub name: Pos,
    pub pod: Pos,
    /// One per entry of `steps`.
    pub steps: Vec<Pos>,
    /// One per entry of `tasks`.
    pub tasks: Vec<Pos>,
    /// One per entry of `depends_on`.
    pub depends_on: Vec<Pos>,
}

/// The part of an env var name made from a port or volume name: upper case,
/// with `-`, `.` and `/` as `_`.
pub fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' | '/' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Things serialized as a map keyed by their name.
trait Named {
    fn name(&self) -> &str;
}
impl Named for PodSpec {
    fn name(&self) -> &str {
        &self.name
    }
}
impl Named for TaskSpec {
    fn name(&self) -> &str {
        &self.name
    }
}
impl Named for PortSpec {
    fn name(&self) -> &str {
        &self.name
    }
}
impl Named for PlanSpec {
    fn name(&self) -> &str {
        &self.name
    }
}

fn named_map<S: Serializer, T: Named + Serialize>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(items.len()))?;
    for item in items {
        m.serialize_entry(item.name(), item)?;
    }
    m.end()
}

fn ser_duration<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*ms))
}

/// A duration in the spec's syntax: `10s`, `1m30s`, `250ms`.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let (s, sub_second) = (ms / 1000, ms % 1000);
    if sub_second != 0 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

/// A small, valid spec: three `hello` pods, one per host and per zone, each
/// with a volume, a dynamic port, a readiness check and a config file.
pub const HELLO_SPEC: &str = r#"name: hello
pods:
  hello:
    count: 3
    resources:
      cpus: 0.5
      mem: 256Mi
      ports:
        http: { port: 0 }
    volumes:
      - path: data
        type: ROOT
        size: 1Gi
    placement:
      - unique: hostname
      - max-per: { zone: 1 }
    tasks:
      server:
        cmd: ./hello-server --port $PORT_HTTP --data $VOLUME_DATA
        env:
          GREETING: hello
        configs:
          - template: "greeting={{GREETING}}\nport={{PORT_HTTP}}\n"
            dest: hello.conf
        kill-grace-period: 10s
        readiness-check:
          http: { port: http, path: /ready }
          interval: 1s
          timeout: 1s
        health-check:
          tcp: http
          interval: 5s
          max-failures: 3
          grace-period: 30s
plans:
  deploy:
    strategy: serial
    phases:
      - name: hello
        strategy: serial
        pod: hello
"#;
