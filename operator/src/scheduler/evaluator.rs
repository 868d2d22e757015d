//! The offer evaluator: runs one offer through ordered stages — placement,
//! ports, cpus/mem, volumes, launch — each PASS or FAIL with a reason, and
//! says what to send when the offer fits. Pure: no I/O, no clock, no
//! randomness (fresh ids come from the caller's reservation id).
//!
//! A new pod takes unreserved resources: RESERVE them under the pod's
//! reservation id, then CREATE_VOLUME for each volume. An existing pod (one
//! with a reservation) matches only offers from its own agent that carry its
//! reservation and volumes, and is relaunched there with no new reservation.
//! Building the LAUNCH operations is the caller's: the evaluator returns the
//! resources, ports and volumes the pod's tasks get.

use super::placement::{Locality, PlacementRule, PlacementView, Preference};
use crate::resources::{
    AgentId, Attributes, MountDisk, Offer, OfferId, Operation, PortSet, ReservationId, ReservedOffer, Resources,
    Volume, VolumeId, VolumeSource,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Label on a reservation naming its resource id (the reservation id).
pub const LABEL_RESOURCE_ID: &str = "resource_id";
/// Label on a reservation naming the pod that owns it, e.g. `broker-0`.
pub const LABEL_POD: &str = "pod";

/// A named port of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRequest {
    /// Injected into tasks as `PORT_<NAME>`.
    pub name: String,
    /// A fixed port, or 0 for one picked from the offer.
    pub port: u16,
}

/// ROOT (a directory on the agent's root disk) or MOUNT (a whole disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeKind {
    /// A directory on the ROOT disk, sized exactly.
    Root,
    /// A whole MOUNT disk of at least the size.
    Mount,
}

/// A persistent volume a pod needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRequest {
    /// The name tasks see it under.
    pub container_path: String,
    /// MiB: exact for ROOT, the minimum for MOUNT.
    pub size: u64,
    /// ROOT or MOUNT.
    pub kind: VolumeKind,
}

/// Where an existing pod lives: it matches only offers carrying these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingPlacement {
    /// The agent holding its reservation.
    pub agent_id: AgentId,
    /// Its reservation.
    pub reservation_id: ReservationId,
    /// Its volumes on that reservation.
    pub volume_ids: Vec<VolumeId>,
    /// Ports it had (name → port); kept on relaunch when still free in the
    /// reservation. Names missing here get a free port of the reservation.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

/// What one pod instance needs from an offer. The lead maps the service
/// spec's resource set and placement onto this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRequirement {
    /// e.g. `broker`.
    pub pod_type: String,
    /// Stable index: `broker-0`, `broker-1`.
    pub index: usize,
    /// The reservation id a new pod reserves under, fresh per placement,
    /// e.g. `<service>-<pod>-<index>-<uuid>`; volume ids derive from it.
    pub reservation_id: ReservationId,
    /// Cpus for the whole pod.
    pub cpus: f64,
    /// MiB for the whole pod.
    pub mem: u64,
    /// Named ports, fixed or dynamic.
    #[serde(default)]
    pub ports: Vec<PortRequest>,
    /// Persistent volumes.
    #[serde(default)]
    pub volumes: Vec<VolumeRequest>,
    /// Placement rules; ignored for an existing pod (it goes back to its disk).
    #[serde(default)]
    pub rules: Vec<PlacementRule>,
    /// Set when the pod already holds a reservation.
    #[serde(default)]
    pub existing: Option<ExistingPlacement>,
    /// Where a new pod would rather go; ranks the offers that pass (see
    /// [`choose_offer`]). Ignored for an existing pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<Preference>,
}

impl PodRequirement {
    /// A pod needing `cpus` and `mem` MiB, to reserve as `reservation_id`.
    pub fn new(
        pod_type: impl Into<String>,
        index: usize,
        reservation_id: impl Into<String>,
        cpus: f64,
        mem: u64,
    ) -> Self {
        PodRequirement {
            pod_type: pod_type.into(),
            index,
            reservation_id: reservation_id.into(),
            cpus,
            mem,
            ports: Vec::new(),
            volumes: Vec::new(),
            rules: Vec::new(),
            existing: None,
            prefer: None,
        }
    }
    /// Adds a named port; 0 for a dynamic one.
    pub fn port(mut self, name: impl Into<String>, port: u16) -> Self {
        self.ports.push(PortRequest { name: name.into(), port });
        self
    }
    /// Adds a volume of `size` MiB.
    pub fn volume(mut self, container_path: impl Into<String>, size: u64, kind: VolumeKind) -> Self {
        self.volumes.push(VolumeRequest { container_path: container_path.into(), size, kind });
        self
    }
    /// Adds a placement rule.
    pub fn rule(mut self, rule: PlacementRule) -> Self {
        self.rules.push(rule);
        self
    }
    /// Sets the pod's soft placement preference.
    pub fn prefer(mut self, preference: Preference) -> Self {
        self.prefer = Some(preference);
        self
    }
    /// Marks the pod as living on an existing reservation.
    pub fn existing(mut self, existing: ExistingPlacement) -> Self {
        self.existing = Some(existing);
        self
    }
    /// The pod instance's name, e.g. `broker-0`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.pod_type, self.index)
    }
}

/// The evaluation stages, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Placement rules, or the pod's own agent and reservation.
    #[serde(rename = "placement")]
    Placement,
    /// Fixed and dynamic ports.
    #[serde(rename = "ports")]
    Ports,
    /// Cpus and memory.
    #[serde(rename = "cpus/mem")]
    CpusMem,
    /// ROOT disk and MOUNT disks, or the pod's own volumes.
    #[serde(rename = "volumes")]
    Volumes,
    /// The operations to send.
    #[serde(rename = "launch")]
    Launch,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [Stage::Placement, Stage::Ports, Stage::CpusMem, Stage::Volumes, Stage::Launch];

    /// The stage's name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Placement => "placement",
            Stage::Ports => "ports",
            Stage::CpusMem => "cpus/mem",
            Stage::Volumes => "volumes",
            Stage::Launch => "launch",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stage's answer for one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    /// Which stage.
    pub stage: Stage,
    /// PASS or FAIL.
    pub pass: bool,
    /// Why, in words a user can act on.
    pub reason: String,
}

impl fmt::Display for StageOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        write!(f, "{verdict} {}: {}", self.stage, self.reason)
    }
}

/// What to do with an offer that fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferMatch {
    /// The offer to accept.
    pub offer_id: OfferId,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its agent's hostname (for the task env `HOST`).
    pub hostname: String,
    /// The reservation the pod's tasks launch from.
    pub reservation_id: ReservationId,
    /// RESERVE then CREATE_VOLUMEs for a new pod; empty for a relaunch.
    /// The caller appends a LAUNCH per task.
    pub operations: Vec<Operation>,
    /// What the pod's tasks may use (cpus, mem, its ports), to split among
    /// its tasks' `TaskInfo.resources`.
    pub task_resources: Resources,
    /// Port name → port.
    pub ports: BTreeMap<String, u16>,
    /// The pod's volumes (ids and container paths).
    pub volumes: Vec<Volume>,
    /// False when relaunching an existing pod on its reservation.
    pub new: bool,
}

/// The result of running one offer through every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The pod instance, e.g. `broker-0`.
    pub pod: String,
    /// The offer evaluated.
    pub offer_id: OfferId,
    /// The offer's agent.
    pub agent_id: AgentId,
    /// Every stage, in order.
    pub outcomes: Vec<StageOutcome>,
    /// Set when every stage passed.
    pub matched: Option<OfferMatch>,
}

impl Evaluation {
    /// Whether the offer fits.
    pub fn passed(&self) -> bool {
        self.matched.is_some()
    }
    /// The first failing stage: where the offer was declined.
    pub fn declined_at(&self) -> Option<&StageOutcome> {
        self.outcomes.iter().find(|o| !o.pass)
    }
}

/// Runs `offer` through every stage for `req`, against the service's current
/// placement `view`. Every stage runs and reports, so a waiting pod can say
/// all that is wrong with an offer; the offer matches only if all pass.
pub fn evaluate(req: &PodRequirement, offer: &Offer, view: &PlacementView) -> Evaluation {
    let mut outcomes = Vec::with_capacity(Stage::ALL.len());
    let matched = match &req.existing {
        None => evaluate_new(req, offer, view, &mut outcomes),
        Some(existing) => evaluate_existing(req, existing, offer, &mut outcomes),
    };
    Evaluation { pod: req.name(), offer_id: offer.id.clone(), agent_id: offer.agent_id.clone(), outcomes, matched }
}

fn outcome(stage: Stage, r: &Result<impl Sized, String>, pass: impl FnOnce() -> String) -> StageOutcome {
    match r {
        Ok(_) => StageOutcome { stage, pass: true, reason: pass() },
        Err(e) => StageOutcome { stage, pass: false, reason: e.clone() },
    }
}

fn launch_failed(outcomes: &[StageOutcome]) -> StageOutcome {
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.pass).map(|o| o.stage.as_str()).collect();
    StageOutcome { stage: Stage::Launch, pass: false, reason: format!("not launched: failed at {}", failed.join(", ")) }
}

/// The offer's attributes with `hostname` filled from the offer when the
/// agent did not report it.
fn attributes_of(offer: &Offer) -> Cow<'_, Attributes> {
    if offer.attributes.contains_key("hostname") || offer.hostname.is_empty() {
        Cow::Borrowed(&offer.attributes)
    } else {
        let mut a = offer.attributes.clone();
        a.insert("hostname".into(), offer.hostname.clone());
        Cow::Owned(a)
    }
}

fn evaluate_new(
    req: &PodRequirement,
    offer: &Offer,
    view: &PlacementView,
    out: &mut Vec<StageOutcome>,
) -> Option<OfferMatch> {
    let attrs = attributes_of(offer);
    let placement = view.placing(&req.pod_type, req.index).check_all(&req.rules, (&offer.agent_id, &*attrs));
    out.push(outcome(Stage::Placement, &placement, || match req.rules.len() {
        0 => "no placement rules".into(),
        n => format!("{n} placement rules satisfied"),
    }));

    let ports = pick_ports(&req.ports, &offer.unreserved.ports, None, "offered");
    out.push(outcome(Stage::Ports, &ports, || ports_reason(&req.ports, ports.as_ref().ok())));

    let cpus_mem = fits_cpus_mem(req, &offer.unreserved, "unreserved");
    out.push(outcome(Stage::CpusMem, &cpus_mem, || format!("cpus {} and mem {} MiB fit", req.cpus, req.mem)));

    let disks = pick_disks(&req.volumes, &offer.unreserved);
    out.push(outcome(Stage::Volumes, &disks, || volumes_reason(&req.volumes)));

    let (Ok(()), Ok((ports, port_set)), Ok(()), Ok((root, mounts))) = (placement, ports, cpus_mem, disks) else {
        out.push(launch_failed(out));
        return None;
    };

    let rid = &req.reservation_id;
    let task_resources = Resources { cpus: req.cpus, mem: req.mem, disk: 0, mounts: Vec::new(), ports: port_set };
    let mut reserved_mounts: Vec<MountDisk> = mounts.iter().flatten().cloned().collect();
    reserved_mounts.sort();
    let reserved = Resources { disk: root, mounts: reserved_mounts, ..task_resources.clone() };
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_RESOURCE_ID.to_string(), rid.clone());
    labels.insert(LABEL_POD.to_string(), req.name());
    let mut operations = Vec::with_capacity(1 + req.volumes.len());
    operations.push(Operation::Reserve { id: rid.clone(), resources: reserved, labels });
    let mut volumes = Vec::with_capacity(req.volumes.len());
    for (i, (v, mount)) in req.volumes.iter().zip(mounts).enumerate() {
        let source = match mount {
            Some(m) => VolumeSource::Mount { path: m.path },
            None => VolumeSource::Root { size: v.size },
        };
        let volume = Volume {
            id: volume_id(rid, &v.container_path, i, &req.volumes),
            source,
            container_path: v.container_path.clone(),
            host_path: String::new(),
        };
        operations.push(Operation::CreateVolume { reservation: rid.clone(), volume: volume.clone() });
        volumes.push(volume);
    }
    out.push(StageOutcome {
        stage: Stage::Launch,
        pass: true,
        reason: format!("reserve {rid} and create {} volumes", volumes.len()),
    });
    Some(OfferMatch {
        offer_id: offer.id.clone(),
        agent_id: offer.agent_id.clone(),
        hostname: offer.hostname.clone(),
        reservation_id: rid.clone(),
        operations,
        task_resources,
        ports,
        volumes,
        new: true,
    })
}

fn evaluate_existing(
    req: &PodRequirement,
    existing: &ExistingPlacement,
    offer: &Offer,
    out: &mut Vec<StageOutcome>,
) -> Option<OfferMatch> {
    let rid = &existing.reservation_id;
    let own: Result<&ReservedOffer, String> = if offer.agent_id != existing.agent_id {
        Err(format!(
            "{} lives on agent {} (its reservation and volumes); this offer is from agent {}",
            req.name(),
            existing.agent_id,
            offer.agent_id
        ))
    } else {
        offer.reservation(rid).ok_or_else(|| format!("reservation {rid} is not in this offer"))
    };
    out.push(outcome(Stage::Placement, &own, || format!("its own agent {} with reservation {rid}", offer.agent_id)));
    let missing = || format!("reservation {rid} not offered");

    let ports = match &own {
        Ok(r) => pick_ports(&req.ports, &r.free.ports, Some(&existing.ports), "free in the reservation"),
        Err(_) => Err(missing()),
    };
    out.push(outcome(Stage::Ports, &ports, || ports_reason(&req.ports, ports.as_ref().ok())));

    let cpus_mem = match &own {
        Ok(r) => fits_cpus_mem(req, &r.free, "free in the reservation"),
        Err(_) => Err(missing()),
    };
    out.push(outcome(Stage::CpusMem, &cpus_mem, || format!("cpus {} and mem {} MiB free in {rid}", req.cpus, req.mem)));

    let volumes: Result<Vec<Volume>, String> = match &own {
        Ok(r) => existing
            .volume_ids
            .iter()
            .map(|id| {
                r.reservation
                    .volumes
                    .iter()
                    .find(|v| &v.id == id)
                    .cloned()
                    .ok_or_else(|| format!("volume {id} is missing from reservation {rid}"))
            })
            .collect(),
        Err(_) => Err(missing()),
    };
    out.push(outcome(Stage::Volumes, &volumes, || format!("its {} volumes are on {rid}", existing.volume_ids.len())));

    let (Ok(_), Ok((ports, port_set)), Ok(()), Ok(volumes)) = (own, ports, cpus_mem, volumes) else {
        out.push(launch_failed(out));
        return None;
    };
    out.push(StageOutcome {
        stage: Stage::Launch,
        pass: true,
        reason: format!("relaunch on reservation {rid} (no new reservation)"),
    });
    Some(OfferMatch {
        offer_id: offer.id.clone(),
        agent_id: offer.agent_id.clone(),
        hostname: offer.hostname.clone(),
        reservation_id: rid.clone(),
        operations: Vec::new(),
        task_resources: Resources { cpus: req.cpus, mem: req.mem, disk: 0, mounts: Vec::new(), ports: port_set },
        ports,
        volumes,
        new: false,
    })
}

fn fits_cpus_mem(req: &PodRequirement, have: &Resources, what: &str) -> Result<(), String> {
    if have.cpus + 1e-9 < req.cpus {
        return Err(format!("cpus {} wanted, {} {what}", req.cpus, have.cpus));
    }
    if have.mem < req.mem {
        return Err(format!("mem {} MiB wanted, {} MiB {what}", req.mem, have.mem));
    }
    Ok(())
}

/// Chooses a port for each request: fixed ones must be in `free`; dynamic
/// ones keep their `previous` port when still free, else take the lowest
/// free ports of the largest free ranges.
fn pick_ports(
    want: &[PortRequest],
    free: &PortSet,
    previous: Option<&BTreeMap<String, u16>>,
    what: &str,
) -> Result<(BTreeMap<String, u16>, PortSet), String> {
    let mut chosen = BTreeMap::new();
    if want.is_empty() {
        return Ok((chosen, PortSet::new()));
    }
    let mut taken: Vec<u16> = Vec::with_capacity(want.len());
    let mut dynamic = 0u32;
    for p in want {
        let keep = if p.port == 0 { previous.and_then(|m| m.get(&p.name)).copied() } else { Some(p.port) };
        match keep {
            Some(port) if free.contains_port(port) && !taken.contains(&port) => {
                taken.push(port);
                chosen.insert(p.name.clone(), port);
            }
            Some(port) if p.port != 0 && taken.contains(&port) => {
                return Err(format!("port {}={port} wanted, but another port of the pod asks for it too", p.name));
            }
            Some(port) if p.port != 0 => {
                return Err(format!("port {}={port} wanted, not {what} (ports {what}: {free})", p.name));
            }
            _ => dynamic += 1,
        }
    }
    if dynamic > 0 {
        let mut left = free.clone();
        left.subtract(&PortSet::from_ports(taken.iter().copied()));
        let Some(picked) = left.take_from_largest(dynamic) else {
            return Err(format!("{dynamic} dynamic ports wanted, {} {what} (ports {what}: {free})", left.count()));
        };
        let mut picked = picked.iter_ports();
        for p in want {
            if !chosen.contains_key(&p.name) {
                let port = picked.next().unwrap_or(0);
                taken.push(port);
                chosen.insert(p.name.clone(), port);
            }
        }
    }
    Ok((chosen, PortSet::from_ports(taken)))
}

fn ports_reason(want: &[PortRequest], chosen: Option<&(BTreeMap<String, u16>, PortSet)>) -> String {
    match chosen {
        Some((m, _)) if !want.is_empty() => {
            let parts: Vec<String> = m.iter().map(|(n, p)| format!("{n}={p}")).collect();
            parts.join(", ")
        }
        _ => "no ports wanted".into(),
    }
}

/// ROOT disk to reserve, and the MOUNT disk picked for each volume (None for
/// ROOT volumes), in the order of `want`.
fn pick_disks(want: &[VolumeRequest], have: &Resources) -> Result<(u64, Vec<Option<MountDisk>>), String> {
    let root: u64 = want.iter().filter(|v| v.kind == VolumeKind::Root).map(|v| v.size).sum();
    if root > have.disk {
        let n = want.iter().filter(|v| v.kind == VolumeKind::Root).count();
        return Err(format!("ROOT disk {root} MiB wanted for {n} volumes, {} MiB free", have.disk));
    }
    let mut picks: Vec<Option<MountDisk>> = vec![None; want.len()];
    // Largest requests first, each taking the smallest disk that fits.
    let mut order: Vec<usize> = (0..want.len()).filter(|&i| want[i].kind == VolumeKind::Mount).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(want[i].size));
    let mut used = vec![false; have.mounts.len()];
    for i in order {
        let v = &want[i];
        let best =
            have.mounts.iter().enumerate().filter(|(k, m)| !used[*k] && m.size >= v.size).min_by_key(|(_, m)| m.size);
        match best {
            Some((k, m)) => {
                used[k] = true;
                picks[i] = Some(m.clone());
            }
            None => {
                let offered: Vec<String> = have.mounts.iter().map(|m| format!("{} {} MiB", m.path, m.size)).collect();
                let offered = if offered.is_empty() { "none".to_string() } else { offered.join(", ") };
                return Err(format!(
                    "no free MOUNT disk of at least {} MiB for {} (MOUNT disks offered: {offered})",
                    v.size, v.container_path
                ));
            }
        }
    }
    Ok((root, picks))
}

fn volumes_reason(want: &[VolumeRequest]) -> String {
    if want.is_empty() {
        return "no volumes wanted".into();
    }
    let parts: Vec<String> = want
        .iter()
        .map(|v| {
            let kind = match v.kind {
                VolumeKind::Root => "ROOT",
                VolumeKind::Mount => "MOUNT",
            };
            format!("{} {kind} {} MiB", v.container_path, v.size)
        })
        .collect();
    parts.join(", ")
}

/// A volume id from the reservation id and the container path, kept to
/// letters, digits, `-` and `_` (no `/`, no `..`); unique within the pod.
fn volume_id(rid: &str, container_path: &str, i: usize, all: &[VolumeRequest]) -> VolumeId {
    let clean = |p: &str| -> String {
        p.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
    };
    let mine = clean(container_path);
    let clash = all.iter().enumerate().any(|(j, v)| j != i && clean(&v.container_path) == mine);
    if clash || mine.is_empty() {
        format!("{rid}-{mine}-{i}")
    } else {
        format!("{rid}-{mine}")
    }
}

/// How many offer rounds a new pod with a preferred hostname lets pass
/// while that agent has no offer among them, before it takes the best of
/// the others. Declined offers come back after a second or so, and the
/// master allocates twice a second, so this is a wait of a few seconds.
pub const PREFER_WAIT_ROUNDS: u32 = 3;

/// Which of the offers that fit a pod to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferChoice {
    /// Take `fits[i]`.
    Take(usize),
    /// Take none this round: the preferred agent has not offered yet. Why,
    /// for the step's message.
    Wait(String),
    /// Nothing fits.
    NoFit,
}

/// Chooses among `fits` (the passing evaluations of one offer round, in
/// offer order) for `req`. Without a preference, or for a pod going back to
/// its reservation, the first fit. With one: the fit on the preferred
/// hostname; else, while that hostname is not among this round's `offered`
/// agents and the pod has waited fewer than [`PREFER_WAIT_ROUNDS`] rounds
/// (`rounds_waited`), wait; else the first fit in the preferred zone, else
/// the first fit. An offer from the preferred agent that does not fit is
/// not waited for: the next best is taken at once.
pub fn choose_offer(req: &PodRequirement, offered: &[&Offer], fits: &[Evaluation], rounds_waited: u32) -> OfferChoice {
    if fits.is_empty() {
        return OfferChoice::NoFit;
    }
    let Some(pref) = req.prefer.as_ref().filter(|_| req.existing.is_none()) else {
        return OfferChoice::Take(0);
    };
    let attrs: Vec<Cow<'_, Attributes>> = fits
        .iter()
        .map(|e| offered.iter().find(|o| o.id == e.offer_id).map(|o| attributes_of(o)).unwrap_or_default())
        .collect();
    let best = pref.best(attrs.iter().map(|a| &**a)).unwrap_or(0);
    if pref.locality(&attrs[best]) == Locality::Host {
        return OfferChoice::Take(best);
    }
    if let Some(host) = &pref.hostname {
        let host_offered = offered.iter().any(|o| attributes_of(o).get("hostname") == Some(host));
        if !host_offered && rounds_waited < PREFER_WAIT_ROUNDS {
            return OfferChoice::Wait(format!(
                "{} waits for an offer from its preferred agent {host} (round {} of {PREFER_WAIT_ROUNDS}; {} other offers fit)",
                req.name(),
                rounds_waited + 1,
                fits.len()
            ));
        }
    }
    OfferChoice::Take(best)
}

/// One line saying why a pod waits (or how many offers fit), from its
/// evaluations across offers: each declined offer counts at its first
/// failing stage, with that stage's most common reasons.
pub fn summarize<'a>(evaluations: impl IntoIterator<Item = &'a Evaluation>) -> String {
    let mut pod = None;
    let mut total = 0usize;
    let mut matched = 0usize;
    let mut per_stage: BTreeMap<Stage, BTreeMap<&str, usize>> = BTreeMap::new();
    for e in evaluations {
        pod.get_or_insert(e.pod.as_str());
        total += 1;
        match e.declined_at() {
            None => matched += 1,
            Some(o) => *per_stage.entry(o.stage).or_default().entry(o.reason.as_str()).or_default() += 1,
        }
    }
    let pod = pod.unwrap_or("pod");
    if total == 0 {
        return format!("{pod} waits: no offers evaluated yet");
    }
    if matched > 0 {
        return format!("{pod}: {matched} of {total} offers match");
    }
    // (stage, declined offers, (reason, offers) most frequent first)
    type StageCount<'r> = (Stage, usize, Vec<(&'r str, usize)>);
    let mut stages: Vec<StageCount> = per_stage
        .into_iter()
        .map(|(stage, reasons)| {
            let n = reasons.values().sum();
            let mut reasons: Vec<(&str, usize)> = reasons.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            (stage, n, reasons)
        })
        .collect();
    stages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let parts: Vec<String> = stages
        .iter()
        .enumerate()
        .map(|(k, (stage, n, reasons))| {
            let shown: Vec<String> =
                reasons.iter().take(2).map(|(r, c)| if *c > 1 { format!("{r} ×{c}") } else { r.to_string() }).collect();
            let more = match reasons.len().saturating_sub(2) {
                0 => String::new(),
                m => format!("; {m} other reasons"),
            };
            let offers = if k == 0 {
                if *n == 1 {
                    " offer"
                } else {
                    " offers"
                }
            } else {
                ""
            };
            format!("{n}{offers} declined at the {stage} stage ({}{more})", shown.join("; "))
        })
        .collect();
    format!("{pod} waits: {}", parts.join(", "))
}

/// Operations that release reservations of our role no pod owns any more
/// (after a replace or a decommission): DESTROY_VOLUME for each of their
/// volumes, then UNRESERVE. A reservation a task still uses (its free part
/// is less than the whole) is left alone: kill the task first, or all of
/// the accept would be refused. `offer.reserved` holds only our role's
/// reservations.
pub fn orphaned_reservations<'a>(
    offer: &Offer,
    known_reservation_ids: impl IntoIterator<Item = &'a str>,
) -> Vec<Operation> {
    let known: HashSet<&str> = known_reservation_ids.into_iter().collect();
    let orphans: Vec<&ReservedOffer> = offer
        .reserved
        .iter()
        .filter(|r| !known.contains(r.reservation.id.as_str()) && r.free.contains(&r.reservation.resources))
        .collect();
    let mut ops = Vec::new();
    for r in &orphans {
        for v in &r.reservation.volumes {
            ops.push(Operation::DestroyVolume { reservation: r.reservation.id.clone(), volume: v.id.clone() });
        }
    }
    for r in &orphans {
        ops.push(Operation::Unreserve { id: r.reservation.id.clone() });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{PortRange, Reservation};

    fn offer(n: usize, zone: &str, unreserved: Resources) -> Offer {
        let mut attributes = Attributes::new();
        attributes.insert("hostname".into(), format!("127.0.1.{n}"));
        attributes.insert("zone".into(), zone.into());
        Offer {
            id: format!("o{n}"),
            framework_id: "f".into(),
            agent_id: format!("a{n}"),
            hostname: format!("127.0.1.{n}"),
            attributes,
            unreserved,
            reserved: Vec::new(),
        }
    }

    fn big(n: usize, zone: &str) -> Offer {
        offer(
            n,
            zone,
            Resources::new(8.0, 16384, 100_000).with_ports(PortSet::from_ranges([PortRange::new(31000, 31010)])),
        )
    }

    fn hello(index: usize) -> PodRequirement {
        PodRequirement::new("hello", index, format!("svc-hello-{index}-u1"), 1.0, 1024)
            .port("http", 0)
            .volume("data", 1000, VolumeKind::Root)
            .rule(PlacementRule::unique("hostname"))
            .rule(PlacementRule::max_per("zone", 1))
    }

    fn place(view: &mut PlacementView, pod: &PodRequirement, o: &Offer) {
        view.insert(&pod.pod_type, pod.index, &o.agent_id, &o.attributes);
    }

    fn fail_at(e: &Evaluation, stage: Stage) -> &str {
        let o = e.outcomes.iter().find(|o| o.stage == stage).unwrap();
        assert!(!o.pass, "{stage} passed: {}", o.reason);
        &o.reason
    }

    #[test]
    fn new_pod_reserves_and_creates_volumes() {
        let view = PlacementView::new();
        let e = evaluate(&hello(0), &big(1, "zone-a"), &view);
        assert!(e.passed(), "{:?}", e.outcomes);
        assert_eq!(e.outcomes.len(), 5);
        assert!(e.outcomes.iter().all(|o| o.pass));
        let m = e.matched.unwrap();
        assert!(m.new);
        assert_eq!(m.ports["http"], 31000);
        let Operation::Reserve { id, resources, labels } = &m.operations[0] else { panic!("{:?}", m.operations) };
        assert_eq!(id, "svc-hello-0-u1");
        assert_eq!(resources, &Resources::new(1.0, 1024, 1000).with_ports(PortSet::from_ports([31000])));
        assert_eq!(labels[LABEL_RESOURCE_ID], "svc-hello-0-u1");
        assert_eq!(labels[LABEL_POD], "hello-0");
        let Operation::CreateVolume { reservation, volume } = &m.operations[1] else { panic!() };
        assert_eq!(reservation, "svc-hello-0-u1");
        assert_eq!(volume.id, "svc-hello-0-u1-data");
        assert_eq!(volume.source, VolumeSource::Root { size: 1000 });
        assert_eq!(m.operations.len(), 2);
        assert_eq!(m.task_resources.disk, 0);
        assert_eq!(m.volumes.len(), 1);
    }

    #[test]
    fn unique_hostname_and_max_per_zone_decline_with_reasons() {
        let mut view = PlacementView::new();
        let a1 = big(1, "zone-a");
        place(&mut view, &hello(0), &a1);
        let e = evaluate(&hello(1), &a1, &view);
        assert_eq!(fail_at(&e, Stage::Placement), "hostname 127.0.1.1 already runs hello-0 (unique: hostname)");
        assert_eq!(e.declined_at().unwrap().stage, Stage::Placement);
        assert_eq!(fail_at(&e, Stage::Launch), "not launched: failed at placement");
        let e = evaluate(&hello(1), &big(2, "zone-a"), &view);
        assert_eq!(fail_at(&e, Stage::Placement), "zone zone-a has 1 of at most 1 pods (max-per: zone=1)");
        assert!(evaluate(&hello(1), &big(3, "zone-b"), &view).passed());
    }

    #[test]
    fn group_by_spreads_pods_over_zones() {
        let mut view = PlacementView::new();
        let pod =
            |i| PodRequirement::new("w", i, format!("w-{i}"), 0.1, 10).rule(PlacementRule::group_by("zone", Some(2)));
        let (a, a2, b) = (big(1, "zone-a"), big(2, "zone-a"), big(3, "zone-b"));
        assert!(evaluate(&pod(0), &a, &view).passed());
        place(&mut view, &pod(0), &a);
        assert!(!evaluate(&pod(1), &a2, &view).passed());
        assert!(evaluate(&pod(1), &b, &view).passed());
        place(&mut view, &pod(1), &b);
        assert!(evaluate(&pod(2), &a2, &view).passed());
    }

    #[test]
    fn like_unlike_colocate_avoid_in_the_placement_stage() {
        let mut view = PlacementView::new();
        let (a, c) = (big(1, "zone-a"), big(3, "zone-c"));
        let like = PodRequirement::new("x", 0, "x-0", 0.1, 10).rule(PlacementRule::like("zone", "zone-a|zone-b"));
        assert!(evaluate(&like, &a, &view).passed());
        assert!(!evaluate(&like, &c, &view).passed());
        let unlike = PodRequirement::new("x", 0, "x-0", 0.1, 10).rule(PlacementRule::unlike("zone", "zone-c"));
        assert!(evaluate(&unlike, &a, &view).passed());
        assert!(!evaluate(&unlike, &c, &view).passed());
        view.insert("broker", 0, &a.agent_id, &a.attributes);
        let co = PodRequirement::new("stage", 0, "s-0", 0.1, 10).rule(PlacementRule::colocate_with("broker"));
        assert!(evaluate(&co, &a, &view).passed());
        assert_eq!(
            fail_at(&evaluate(&co, &c, &view), Stage::Placement),
            "agent 127.0.1.3 runs no broker pod (colocate-with: broker)"
        );
        let avoid = PodRequirement::new("db", 0, "c-0", 0.1, 10).rule(PlacementRule::avoid("broker"));
        assert!(evaluate(&avoid, &c, &view).passed());
        assert_eq!(
            fail_at(&evaluate(&avoid, &a, &view), Stage::Placement),
            "agent 127.0.1.1 already runs broker-0 (avoid: broker)"
        );
    }

    #[test]
    fn fixed_and_dynamic_ports() {
        let view = PlacementView::new();
        let o = big(1, "zone-a");
        let pod = PodRequirement::new("k", 0, "k-0", 0.1, 10).port("a", 0).port("broker", 31000).port("b", 0);
        let m = evaluate(&pod, &o, &view).matched.unwrap();
        assert_eq!(m.ports["broker"], 31000);
        assert_eq!(m.ports["a"], 31001);
        assert_eq!(m.ports["b"], 31002);
        assert_eq!(m.task_resources.ports, PortSet::from_ports([31000, 31001, 31002]));

        let fixed = PodRequirement::new("k", 0, "k-0", 0.1, 10).port("broker", 9092);
        let e = evaluate(&fixed, &o, &view);
        assert_eq!(fail_at(&e, Stage::Ports), "port broker=9092 wanted, not offered (ports offered: 31000-31010)");
        let twice = PodRequirement::new("k", 0, "k-0", 0.1, 10).port("a", 31005).port("b", 31005);
        assert!(fail_at(&evaluate(&twice, &o, &view), Stage::Ports).contains("another port of the pod asks for it too"));

        let few = offer(2, "zone-a", Resources::new(1.0, 100, 0).with_ports(PortSet::from_ports([31000])));
        let two = PodRequirement::new("k", 0, "k-0", 0.1, 10).port("a", 0).port("b", 0);
        let e = evaluate(&two, &few, &view);
        assert_eq!(fail_at(&e, Stage::Ports), "2 dynamic ports wanted, 1 offered (ports offered: 31000)");
    }

    #[test]
    fn insufficient_cpus_mem_and_disk_name_the_shortfall() {
        let view = PlacementView::new();
        let small = offer(1, "zone-a", Resources::new(0.5, 512, 4096));
        let pod = PodRequirement::new("big", 0, "b-0", 1.0, 1024).volume("data", 10240, VolumeKind::Root);
        let e = evaluate(&pod, &small, &view);
        assert_eq!(fail_at(&e, Stage::CpusMem), "cpus 1 wanted, 0.5 unreserved");
        assert_eq!(fail_at(&e, Stage::Volumes), "ROOT disk 10240 MiB wanted for 1 volumes, 4096 MiB free");
        assert_eq!(fail_at(&e, Stage::Launch), "not launched: failed at cpus/mem, volumes");
        assert_eq!(e.declined_at().unwrap().stage, Stage::CpusMem);
        let mem = offer(2, "zone-a", Resources::new(2.0, 512, 40960));
        let e = evaluate(&pod, &mem, &view);
        assert_eq!(fail_at(&e, Stage::CpusMem), "mem 1024 MiB wanted, 512 MiB unreserved");
        assert!(e.outcomes[Stage::Volumes as usize].pass);
    }

    #[test]
    fn mount_volume_takes_the_smallest_whole_disk_that_fits() {
        let view = PlacementView::new();
        let o = offer(
            1,
            "zone-a",
            Resources::new(4.0, 4096, 100)
                .with_mount("/mnt/big", 50_000)
                .with_mount("/mnt/mid", 20_000)
                .with_mount("/mnt/small", 5_000),
        );
        let pod = PodRequirement::new("c", 0, "c-0", 1.0, 1024)
            .volume("data", 10_000, VolumeKind::Mount)
            .volume("log", 30_000, VolumeKind::Mount)
            .volume("tmp", 50, VolumeKind::Root);
        let m = evaluate(&pod, &o, &view).matched.unwrap();
        let Operation::Reserve { resources, .. } = &m.operations[0] else { panic!() };
        assert_eq!(resources.disk, 50);
        let paths: Vec<&str> = resources.mounts.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/mnt/big", "/mnt/mid"]);
        assert_eq!(m.volumes[0].source, VolumeSource::Mount { path: "/mnt/mid".into() });
        assert_eq!(m.volumes[1].source, VolumeSource::Mount { path: "/mnt/big".into() });
        assert_eq!(m.volumes[2].source, VolumeSource::Root { size: 50 });
        assert_eq!(m.operations.len(), 4);

        let huge = PodRequirement::new("c", 0, "c-0", 1.0, 1024).volume("data", 60_000, VolumeKind::Mount);
        assert_eq!(
            fail_at(&evaluate(&huge, &o, &view), Stage::Volumes),
            "no free MOUNT disk of at least 60000 MiB for data (MOUNT disks offered: /mnt/big 50000 MiB, /mnt/mid 20000 MiB, /mnt/small 5000 MiB)"
        );
    }

    fn reserved_offer(n: usize, rid: &str, volumes: &[&str], free: Resources) -> Offer {
        let mut o = big(n, "zone-a");
        let total = Resources::new(1.0, 1024, 1000).with_ports(PortSet::from_ports([31005]));
        o.reserved.push(ReservedOffer {
            reservation: Reservation {
                id: rid.into(),
                role: "svc".into(),
                resources: total,
                labels: BTreeMap::new(),
                volumes: volumes
                    .iter()
                    .map(|id| Volume {
                        id: id.to_string(),
                        source: VolumeSource::Root { size: 1000 },
                        container_path: "data".into(),
                        host_path: format!("/work/{id}"),
                    })
                    .collect(),
            },
            free,
        });
        o
    }

    /// Every offer's evaluation for `req`, and the fits among them.
    fn round(req: &PodRequirement, offers: &[Offer], view: &PlacementView) -> Vec<Evaluation> {
        offers.iter().map(|o| evaluate(req, o, view)).filter(Evaluation::passed).collect()
    }

    #[test]
    fn a_preference_picks_the_host_then_waits_a_bounded_while_then_its_zone() {
        let view = PlacementView::new();
        let pref = Preference { hostname: Some("127.0.1.3".into()), zone: Some("zone-b".into()) };
        let req = hello(0).prefer(pref.clone());
        let offers = [big(1, "zone-a"), big(2, "zone-b"), big(3, "zone-b"), big(4, "zone-c")];
        let offered: Vec<&Offer> = offers.iter().collect();
        // The preferred host, wherever it is in the round.
        let fits = round(&req, &offers, &view);
        assert_eq!(choose_offer(&req, &offered, &fits, 0), OfferChoice::Take(2));
        // Its agent not offering: wait, at most PREFER_WAIT_ROUNDS rounds…
        let without: Vec<&Offer> = offered.iter().copied().filter(|o| o.agent_id != "a3").collect();
        let fits = round(&req, &without.iter().map(|o| (*o).clone()).collect::<Vec<_>>(), &view);
        let OfferChoice::Wait(why) = choose_offer(&req, &without, &fits, 0) else { panic!("waits") };
        assert_eq!(
            why,
            "hello-0 waits for an offer from its preferred agent 127.0.1.3 (round 1 of 3; 3 other offers fit)"
        );
        assert!(matches!(choose_offer(&req, &without, &fits, PREFER_WAIT_ROUNDS - 1), OfferChoice::Wait(_)));
        // …then the first of its zone (a2 is fits[1]), else the first fit.
        assert_eq!(choose_offer(&req, &without, &fits, PREFER_WAIT_ROUNDS), OfferChoice::Take(1));
        let elsewhere = [big(1, "zone-a"), big(4, "zone-c")];
        let fits = round(&req, &elsewhere, &view);
        assert_eq!(choose_offer(&req, &elsewhere.iter().collect::<Vec<_>>(), &fits, 9), OfferChoice::Take(0));
        // The preferred agent offering too little: no wait, its zone at once.
        let mut small = big(3, "zone-b");
        small.unreserved = Resources::new(0.1, 64, 10);
        let offers = [big(1, "zone-a"), small, big(2, "zone-b")];
        let fits = round(&req, &offers, &view);
        assert_eq!(fits.len(), 2);
        assert_eq!(choose_offer(&req, &offers.iter().collect::<Vec<_>>(), &fits, 0), OfferChoice::Take(1));
        // Nothing fits.
        assert_eq!(choose_offer(&req, &offered, &[], 0), OfferChoice::NoFit);
    }

    #[test]
    fn a_preference_never_beats_a_rule_or_a_reservation() {
        // Placement rules first: hello-0 on 127.0.1.3 makes zone-b full for hello-1.
        let mut view = PlacementView::new();
        let b3 = big(3, "zone-b");
        place(&mut view, &hello(0), &b3);
        let req = hello(1).prefer(Preference { hostname: Some("127.0.1.3".into()), zone: Some("zone-b".into()) });
        let offers = [big(1, "zone-a"), big(2, "zone-b"), b3];
        let offered: Vec<&Offer> = offers.iter().collect();
        let fits = round(&req, &offers, &view);
        assert_eq!(fits.len(), 1, "only zone-a passes max-per zone");
        assert_eq!(choose_offer(&req, &offered, &fits, 0), OfferChoice::Take(0));
        // No preference: the first fit, as before.
        let plain = hello(1);
        let fits = round(&plain, &offers, &PlacementView::new());
        assert_eq!(choose_offer(&plain, &offered, &fits, 0), OfferChoice::Take(0));
        // A pod on its reservation ignores its preference and never waits.
        let existing = ExistingPlacement {
            agent_id: "a1".into(),
            reservation_id: "r1".into(),
            volume_ids: vec!["v1".into()],
            ports: BTreeMap::new(),
        };
        let back = hello(0).existing(existing).prefer(Preference { hostname: Some("elsewhere".into()), zone: None });
        let own =
            reserved_offer(1, "r1", &["v1"], Resources::new(1.0, 1024, 1000).with_ports(PortSet::from_ports([31005])));
        let fits = round(&back, std::slice::from_ref(&own), &view);
        assert_eq!(choose_offer(&back, &[&own], &fits, 0), OfferChoice::Take(0));
    }

    #[test]
    fn existing_pod_matches_only_its_own_reservation_and_volumes() {
        let view = PlacementView::new();
        let free = Resources::new(1.0, 1024, 1000).with_ports(PortSet::from_ports([31005]));
        let existing = ExistingPlacement {
            agent_id: "a1".into(),
            reservation_id: "r-old".into(),
            volume_ids: vec!["r-old-data".into()],
            ports: BTreeMap::from([("http".to_string(), 31005)]),
        };
        let pod = hello(0).existing(existing);
        let own = reserved_offer(1, "r-old", &["r-old-data"], free.clone());
        let e = evaluate(&pod, &own, &view);
        assert!(e.passed(), "{:?}", e.outcomes);
        let m = e.matched.unwrap();
        assert!(!m.new);
        assert!(m.operations.is_empty());
        assert_eq!(m.reservation_id, "r-old");
        assert_eq!(m.ports["http"], 31005);
        assert_eq!(m.volumes[0].host_path, "/work/r-old-data");

        // Another agent, even with free unreserved resources: no.
        let e = evaluate(&pod, &big(2, "zone-b"), &view);
        assert_eq!(
            fail_at(&e, Stage::Placement),
            "hello-0 lives on agent a1 (its reservation and volumes); this offer is from agent a2"
        );
        // Its agent but without its reservation: no.
        let e = evaluate(&pod, &big(1, "zone-a"), &view);
        assert_eq!(fail_at(&e, Stage::Placement), "reservation r-old is not in this offer");
        assert_eq!(fail_at(&e, Stage::Volumes), "reservation r-old not offered");
        // Its reservation without its volume: no.
        let e = evaluate(&pod, &reserved_offer(1, "r-old", &["other"], free), &view);
        assert_eq!(fail_at(&e, Stage::Volumes), "volume r-old-data is missing from reservation r-old");
        // Its reservation, but a task still holds the cpus.
        let e = evaluate(&pod, &reserved_offer(1, "r-old", &["r-old-data"], Resources::new(0.0, 1024, 0)), &view);
        assert_eq!(fail_at(&e, Stage::CpusMem), "cpus 1 wanted, 0 free in the reservation");
    }

    #[test]
    fn orphaned_reservations_are_destroyed_then_unreserved() {
        let free = Resources::new(1.0, 1024, 1000).with_ports(PortSet::from_ports([31005]));
        let mut o = reserved_offer(1, "r-gone", &["v1", "v2"], free.clone());
        let keep = reserved_offer(1, "r-keep", &["v3"], free.clone()).reserved.remove(0);
        let busy = reserved_offer(1, "r-busy", &["v4"], Resources::new(0.0, 0, 1000)).reserved.remove(0);
        o.reserved.push(keep);
        o.reserved.push(busy);
        let ops = orphaned_reservations(&o, ["r-keep"]);
        assert_eq!(
            ops,
            vec![
                Operation::DestroyVolume { reservation: "r-gone".into(), volume: "v1".into() },
                Operation::DestroyVolume { reservation: "r-gone".into(), volume: "v2".into() },
                Operation::Unreserve { id: "r-gone".into() },
            ]
        );
        assert!(orphaned_reservations(&o, ["r-keep", "r-gone"]).is_empty());
    }

    #[test]
    fn summarize_counts_declines_per_stage() {
        let view = PlacementView::new();
        let pod = PodRequirement::new("db", 2, "c-2", 1.0, 1024)
            .volume("data", 10240, VolumeKind::Root)
            .rule(PlacementRule::like("zone", "zone-c"));
        let small = |n| offer(n, "zone-c", Resources::new(4.0, 8192, 4096));
        let wrong_zone = big(9, "zone-a");
        let evals: Vec<Evaluation> =
            [small(1), small(2), small(3), small(4), wrong_zone].iter().map(|o| evaluate(&pod, o, &view)).collect();
        assert_eq!(
            summarize(&evals),
            "db-2 waits: 4 offers declined at the volumes stage \
             (ROOT disk 10240 MiB wanted for 1 volumes, 4096 MiB free ×4), \
             1 declined at the placement stage (zone zone-a does not match zone-c (like: zone=zone-c))"
        );
        assert_eq!(summarize(&[]), "pod waits: no offers evaluated yet");
        let fits = evaluate(&pod, &offer(5, "zone-c", Resources::new(4.0, 8192, 20_000)), &view);
        let mut all = evals.clone();
        all.push(fits);
        assert_eq!(summarize(&all), "db-2: 1 of 6 offers match");
    }

    #[test]
    fn replacement_does_not_count_itself() {
        let mut view = PlacementView::new();
        let a1 = big(1, "zone-a");
        place(&mut view, &hello(0), &a1);
        // hello-0 replaced: still in the view, its own entry does not block it.
        assert!(evaluate(&hello(0), &a1, &view).passed());
    }

    #[test]
    fn volume_ids_are_safe_and_unique() {
        let vols = vec![
            VolumeRequest { container_path: "a/b".into(), size: 1, kind: VolumeKind::Root },
            VolumeRequest { container_path: "a_b".into(), size: 1, kind: VolumeKind::Root },
            VolumeRequest { container_path: "../x".into(), size: 1, kind: VolumeKind::Root },
        ];
        assert_eq!(volume_id("r", "a/b", 0, &vols), "r-a_b-0");
        assert_eq!(volume_id("r", "a_b", 1, &vols), "r-a_b-1");
        assert_eq!(volume_id("r", "../x", 2, &vols), "r-___x");
    }
}
