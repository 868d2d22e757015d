//! Resources, reservations, volumes, offers and the operations a framework
//! sends back in an accept: the vocabulary shared by master, agents and
//! frameworks, as plain serde types with no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Identifies an agent (a machine offering resources). Stable across agent
/// restarts: the agent keeps it in its checkpoint.
pub type AgentId = String;
/// Identifies a framework; one per deployed pipeline service.
pub type FrameworkId = String;
/// Identifies one offer; an offer is accepted or declined at most once.
pub type OfferId = String;
/// A reservation's id: the framework's own label (its resource id), so it
/// finds the reservation again after a restart.
pub type ReservationId = String;
/// A persistent volume's id, chosen by the framework.
pub type VolumeId = String;
/// A task's id, chosen by the framework, unique in the cluster.
pub type TaskId = String;

/// A closed range of ports, `begin..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub begin: u16,
    pub end: u16,
}

impl PortRange {
    pub fn new(begin: u16, end: u16) -> Self {
        PortRange { begin, end }
    }
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.begin) + 1
    }
    pub fn is_empty(&self) -> bool {
        self.end < self.begin
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}-{}]", self.begin, self.end)
    }
}

/// A set of ports kept as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortSet(Vec<PortRange>);

impl PortSet {
    pub fn new() -> Self {
        PortSet(Vec::new())
    }
    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        let mut s = PortSet::new();
        for r in ranges {
            s.insert_range(r);
        }
        s
    }
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        Self::from_ranges(ports.into_iter().map(|p| PortRange::new(p, p)))
    }
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of ports in the set.
    pub fn count(&self) -> u32 {
        self.0.iter().map(PortRange::len).sum()
    }
    pub fn contains_port(&self, p: u16) -> bool {
        self.0.iter().any(|r| r.begin <= p && p <= r.end)
    }
    pub fn contains(&self, other: &PortSet) -> bool {
        other.0.iter().all(|o| self.0.iter().any(|r| r.begin <= o.begin && o.end <= r.end))
    }
    pub fn insert_range(&mut self, r: PortRange) {
        if r.is_empty() {
            return;
        }
        self.0.push(r);
        self.0.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(self.0.len());
        for r in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if u32::from(r.begin) <= u32::from(last.end) + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r),
            }
        }
        self.0 = merged;
    }
    pub fn add(&mut self, other: &PortSet) {
        for r in &other.0 {
            self.insert_range(*r);
        }
    }
    /// Removes `other` from the set; ports of `other` not in the set are ignored.
    pub fn subtract(&mut self, other: &PortSet) {
        for o in &other.0 {
            let mut out = Vec::with_capacity(self.0.len() + 1);
            for r in self.0.drain(..) {
                if o.end < r.begin || o.begin > r.end {
                    out.push(r);
                    continue;
                }
                if r.begin < o.begin {
                    out.push(PortRange::new(r.begin, o.begin - 1));
                }
                if o.end < r.end {
                    out.push(PortRange::new(o.end + 1, r.end));
                }
            }
            self.0 = out;
        }
    }
    /// `n` ports taken from the largest ranges first (the lowest ports of
    /// each), if the set has that many. Dynamic ports come from here, so a
    /// small range offered for well-known ports (e.g. `smack up`'s 7000–7009
    /// beside each agent's own range) is left to the pods that name them.
    pub fn take_from_largest(&self, n: u32) -> Option<PortSet> {
        let mut ranges: Vec<&PortRange> = self.0.iter().collect();
        ranges.sort_by_key(|r| (std::cmp::Reverse(r.len()), r.begin));
        let mut left = n;
        let mut out = PortSet::new();
        for r in ranges {
            if left == 0 {
                break;
            }
            let k = left.min(r.len());
            out.insert_range(PortRange::new(r.begin, (u32::from(r.begin) + k - 1) as u16));
            left -= k;
        }
        (left == 0).then_some(out)
    }
    pub fn iter_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().flat_map(|r| r.begin..=r.end)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| if r.begin == r.end { r.begin.to_string() } else { format!("{}-{}", r.begin, r.end) })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// A whole disk mounted at `path` on an agent: reserved and used only whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MountDisk {
    pub path: String,
    /// Size in MiB.
    pub size: u64,
}

/// A bundle of resources on one agent. `disk` is the ROOT disk in MiB;
/// `mounts` are whole MOUNT disks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub cpus: f64,
    /// MiB.
    #[serde(default)]
    pub mem: u64,
    /// ROOT disk, MiB.
    #[serde(default)]
    pub disk: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountDisk>,
    #[serde(default, skip_serializing_if = "PortSet::is_empty")]
    pub ports: PortSet,
}

/// Tolerance for comparing fractional cpus.
const EPS: f64 = 1e-9;

impl Resources {
    pub fn new(cpus: f64, mem: u64, disk: u64) -> Self {
        Resources { cpus, mem, disk, ..Default::default() }
    }
    pub fn with_ports(mut self, ports: PortSet) -> Self {
        self.ports = ports;
        self
    }
    pub fn with_mount(mut self, path: impl Into<String>, size: u64) -> Self {
        self.mounts.push(MountDisk { path: path.into(), size });
        self
    }
    pub fn is_empty(&self) -> bool {
        self.cpus <= EPS && self.mem == 0 && self.disk == 0 && self.mounts.is_empty() && self.ports.is_empty()
    }
    /// Total disk, ROOT plus MOUNT, in MiB.
    pub fn total_disk(&self) -> u64 {
        self.disk + self.mounts.iter().map(|m| m.size).sum::<u64>()
    }
    /// Whether every part of `other` fits in `self`.
    pub fn contains(&self, other: &Resources) -> bool {
        self.cpus + EPS >= other.cpus
            && self.mem >= other.mem
            && self.disk >= other.disk
            && other.mounts.iter().all(|m| self.mounts.contains(m))
            && self.ports.contains(&other.ports)
    }
    /// Names the first part of `want` that does not fit in `self`, for errors.
    pub fn shortfall(&self, want: &Resources) -> Option<String> {
        if self.cpus + EPS < want.cpus {
            return Some(format!("cpus {} wanted, {} available", want.cpus, self.cpus));
        }
        if self.mem < want.mem {
            return Some(format!("mem {} MiB wanted, {} MiB available", want.mem, self.mem));
        }
        if self.disk < want.disk {
            return Some(format!("disk {} MiB wanted, {} MiB available", want.disk, self.disk));
        }
        if let Some(m) = want.mounts.iter().find(|m| !self.mounts.contains(m)) {
            return Some(format!("MOUNT disk {} ({} MiB) wanted, not available", m.path, m.size));
        }
        if !self.ports.contains(&want.ports) {
            return Some(format!("ports {} wanted, {} available", want.ports, self.ports));
        }
        None
    }
    pub fn add(&mut self, other: &Resources) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        for m in &other.mounts {
            if !self.mounts.contains(m) {
                self.mounts.push(m.clone());
            }
        }
        self.mounts.sort();
        self.ports.add(&other.ports);
    }
    /// Subtracts `other`, which must be contained (see [`Resources::contains`]).
    pub fn subtract(&mut self, other: &Resources) {
        self.cpus = (self.cpus - other.cpus).max(0.0);
        if self.cpus < EPS {
            self.cpus = 0.0;
        }
        self.mem = self.mem.saturating_sub(other.mem);
        self.disk = self.disk.saturating_sub(other.disk);
        self.mounts.retain(|m| !other.mounts.contains(m));
        self.ports.subtract(&other.ports);
    }
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.subtract(other);
        r
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus:{} mem:{}MiB disk:{}MiB", self.cpus, self.mem, self.disk)?;
        for m in &self.mounts {
            write!(f, " mount:{}({}MiB)", m.path, m.size)?;
        }
        if !self.ports.is_empty() {
            write!(f, " ports:{}", self.ports)?;
        }
        Ok(())
    }
}

/// Where a persistent volume lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeSource {
    /// A directory on the agent's ROOT disk, `size` MiB of the reservation's disk.
    Root { size: u64 },
    /// A whole MOUNT disk of the reservation.
    Mount { path: String },
}

/// A persistent volume: created from reserved disk, it outlives every task
/// that uses it and is removed only by `DESTROY_VOLUME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub source: VolumeSource,
    /// The name tasks see it under (env `VOLUME_<NAME>` and a sandbox link).
    pub container_path: String,
    /// The directory on the agent, filled in by the agent that created it.
    #[serde(default)]
    pub host_path: String,
}

/// Resources set aside on one agent for one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub role: String,
    pub resources: Resources,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

impl Reservation {
    /// ROOT disk of this reservation not taken by its volumes.
    pub fn free_root_disk(&self) -> u64 {
        let used: u64 = self
            .volumes
            .iter()
            .map(|v| match v.source {
                VolumeSource::Root { size } => size,
                VolumeSource::Mount { .. } => 0,
            })
            .sum();
        self.resources.disk.saturating_sub(used)
    }
}

/// Agent attributes used by placement rules.
pub type Attributes = BTreeMap<String, String>;

/// A health or readiness check run by the agent next to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Check {
    /// A shell command in the task's sandbox with its env; exit 0 passes.
    Command { command: String },
    /// A TCP connect to the agent's address at `port`.
    Tcp { port: u16 },
    /// An HTTP GET of `path` at `port`; a 2xx or 3xx passes.
    Http { port: u16, path: String },
}

/// How often and how patiently a check runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub check: Check,
    #[serde(default = "default_check_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures before a health check kills the task.
    #[serde(default = "default_check_failures")]
    pub max_consecutive_failures: u32,
    /// Time after launch during which failures do not count.
    #[serde(default)]
    pub grace_period_ms: u64,
}

fn default_check_interval_ms() -> u64 {
    1000
}
fn default_check_timeout_ms() -> u64 {
    1000
}
fn default_check_failures() -> u32 {
    3
}

/// What a framework asks an agent to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: TaskId,
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The resources the task uses; taken from `reservation` when set, else
    /// from the offer's unreserved resources.
    pub resources: Resources,
    #[serde(default)]
    pub reservation: Option<ReservationId>,
    /// Volumes of that reservation mounted into the task.
    #[serde(default)]
    pub volumes: Vec<VolumeId>,
    #[serde(default)]
    pub health_check: Option<CheckSpec>,
    #[serde(default)]
    pub readiness_check: Option<CheckSpec>,
    /// SIGTERM, then SIGKILL after this long.
    #[serde(default = "default_kill_grace_ms")]
    pub kill_grace_period_ms: u64,
    /// Free-form labels, kept with the task and echoed in status updates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_kill_grace_ms() -> u64 {
    5000
}

impl TaskInfo {
    /// A task named after its id, on unreserved resources, with no checks
    /// and the default kill grace; set the other fields as needed.
    pub fn new(id: impl Into<String>, command: impl Into<String>, resources: Resources) -> Self {
        let id = id.into();
        TaskInfo {
            name: id.clone(),
            id,
            command: command.into(),
            env: BTreeMap::new(),
            resources,
            reservation: None,
            volumes: Vec::new(),
            health_check: None,
            readiness_check: None,
            kill_grace_period_ms: default_kill_grace_ms(),
            labels: BTreeMap::new(),
        }
    }
}

/// An operation in an accept. All of an accept's operations apply, or none.
// An accept carries a handful of operations: boxing the task buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    /// Set aside unreserved resources of the offer for the framework's role.
    Reserve {
        id: ReservationId,
        resources: Resources,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    /// Return a reservation (with no volumes and no tasks) to the pool.
    Unreserve { id: ReservationId },
    /// Make a persistent volume from a reservation's disk.
    CreateVolume { reservation: ReservationId, volume: Volume },
    /// Remove a volume and its data.
    DestroyVolume { reservation: ReservationId, volume: VolumeId },
    /// Run a task.
    Launch { task: TaskInfo },
    /// Stop a task on the offered agent.
    Kill { task: TaskId },
}

impl Operation {
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Reserve { .. } => "RESERVE",
            Operation::Unreserve { .. } => "UNRESERVE",
            Operation::CreateVolume { .. } => "CREATE_VOLUME",
            Operation::DestroyVolume { .. } => "DESTROY_VOLUME",
            Operation::Launch { .. } => "LAUNCH",
            Operation::Kill { .. } => "KILL",
        }
    }
}

/// Reserved resources of one reservation, as offered back to its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedOffer {
    pub reservation: Reservation,
    /// The part of the reservation no task currently uses.
    pub free: Resources,
}

/// A bundle of one agent's resources offered to one framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub attributes: Attributes,
    /// Unreserved resources free on the agent.
    pub unreserved: Resources,
    /// The role's own reservations on the agent.
    pub reserved: Vec<ReservedOffer>,
}

impl Offer {
    pub fn zone(&self) -> Option<&str> {
        self.attributes.get("zone").map(String::as_str)
    }
    /// The offer's reservation with this id, if any.
    pub fn reservation(&self, id: &str) -> Option<&ReservedOffer> {
        self.reserved.iter().find(|r| r.reservation.id == id)
    }
}

/// A task's state, as agents report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Finished,
    Failed,
    Killed,
    Lost,
}

impl TaskState {
    /// Whether the task has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Finished | TaskState::Failed | TaskState::Killed | TaskState::Lost)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "STAGING",
            TaskState::Starting => "STARTING",
            TaskState::Running => "RUNNING",
            TaskState::Finished => "FINISHED",
            TaskState::Failed => "FAILED",
            TaskState::Killed => "KILLED",
            TaskState::Lost => "LOST",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a task's state, sent by its agent until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Unique per update; the acknowledgement names it.
    pub uuid: String,
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    /// Readiness, when the task has a readiness check.
    #[serde(default)]
    pub ready: Option<bool>,
    /// Health, when the task has a health check.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Unix millis.
    pub timestamp_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets_merge_and_subtract() {
        let mut s = PortSet::from_ranges([PortRange::new(10, 20), PortRange::new(21, 25), PortRange::new(30, 30)]);
        assert_eq!(s.ranges(), &[PortRange::new(10, 25), PortRange::new(30, 30)]);
        assert_eq!(s.count(), 17);
        s.subtract(&PortSet::from_ports([12, 30]));
        assert_eq!(s.ranges(), &[PortRange::new(10, 11), PortRange::new(13, 25)]);
        assert!(s.contains(&PortSet::from_ports([10, 11, 13])));
        assert!(!s.contains(&PortSet::from_ports([12])));
        // The largest range first: 13-25 before 10-11.
        assert_eq!(s.take_from_largest(3).unwrap(), PortSet::from_ports([13, 14, 15]));
        assert_eq!(s.take_from_largest(15).unwrap(), PortSet::from_ports((10..=11).chain(13..=25)));
        assert!(s.take_from_largest(16).is_none());
        // `smack up`'s shared well-known range stays free for the pods naming it.
        let offered = PortSet::from_ranges([PortRange::new(7000, 7009), PortRange::new(45000, 45099)]);
        assert_eq!(offered.take_from_largest(2).unwrap(), PortSet::from_ports([45000, 45001]));
    }

    #[test]
    fn resources_contain_and_shortfall() {
        let have = Resources::new(2.0, 1024, 500).with_mount("/mnt/a", 1000);
        let want = Resources::new(1.5, 1024, 100).with_mount("/mnt/a", 1000);
        assert!(have.contains(&want));
        let left = have.minus(&want);
        assert_eq!(left.mem, 0);
        assert!(left.mounts.is_empty());
        let too_much = Resources::new(3.0, 1, 1);
        assert_eq!(have.shortfall(&too_much).unwrap(), "cpus 3 wanted, 2 available");
    }

    #[test]
    fn operations_serialize_with_type_tag() {
        let op = Operation::Unreserve { id: "r1".into() };
        let s = serde_json::to_string(&op).unwrap();
        assert_eq!(s, r#"{"type":"UNRESERVE","id":"r1"}"#);
        let back: Operation = serde_json::from_str(&s).unwrap();
        assert_eq!(back, op);
    }
}
