//! The master's state machine: agent registry and heartbeats, frameworks and
//! their subscriptions, outstanding offers, accepts checked by the ledger,
//! status updates forwarded and acknowledged, and the allocation cycle.
//!
//! The HTTP API ([`super::api`]) and in-process frameworks call the same
//! methods here. Time comes in through [`Master::tick`], so the loop that
//! drives it lives at the edge ([`Master::run`]).

use super::allocator::{Allocator, AllocatorConfig};
use super::ledger::{apply_operations, AgentLedger, LedgerTask, OfferedPool};
use super::metrics::{MasterMetrics, MasterSnapshot};
use crate::metrics::SharedRegistry;
use crate::protocol::*;
use crate::resources::{
    now_ms, AgentId, Attributes, FrameworkId, Offer, OfferId, Operation, ReservedOffer, Resources, TaskId, TaskState,
    TaskStatus,
};
use crate::state::StateStore;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Timeouts and intervals of the master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// An agent silent this long is marked unreachable and its tasks `LOST`.
    pub agent_timeout: Duration,
    /// How often the allocator runs (it also runs when something changes).
    pub allocation_interval: Duration,
    /// An offer neither accepted nor declined this long is rescinded.
    pub offer_timeout: Duration,
    /// How long a declined agent is filtered when the framework names no time.
    pub default_filter: Duration,
    /// How often streams get a heartbeat event.
    pub stream_heartbeat: Duration,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            agent_timeout: Duration::from_secs(10),
            allocation_interval: Duration::from_millis(500),
            offer_timeout: Duration::from_secs(30),
            default_filter: Duration::from_secs(5),
            stream_heartbeat: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersistedAgent {
    id: AgentId,
    hostname: String,
    attributes: Attributes,
    ledger: AgentLedger,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersistedFramework {
    id: FrameworkId,
    name: String,
    role: String,
    weight: f64,
    #[serde(default)]
    api_url: Option<String>,
}

struct AgentEntry {
    id: AgentId,
    hostname: String,
    attributes: Attributes,
    ledger: AgentLedger,
    /// The agent's own HTTP API (task logs), as it registered it.
    endpoint: Option<String>,
    reachable: bool,
    last_heartbeat_ms: u64,
    /// Events not yet taken by the agent's stream.
    outbox: Vec<AgentEvent>,
    tx: Option<mpsc::UnboundedSender<AgentEvent>>,
    generation: u64,
}

impl AgentEntry {
    fn send(&mut self, ev: AgentEvent) {
        if let Some(tx) = &self.tx {
            if let Err(mpsc::error::SendError(ev)) = tx.send(ev) {
                self.tx = None;
                self.outbox.push(ev);
            }
        } else {
            self.outbox.push(ev);
        }
    }
}

struct FrameworkEntry {
    id: FrameworkId,
    name: String,
    role: String,
    weight: f64,
    suppressed: bool,
    tx: Option<mpsc::UnboundedSender<FrameworkEvent>>,
    generation: u64,
    allocated: Resources,
    /// The framework's own HTTP API, announced at subscribe.
    api_url: Option<String>,
}

impl FrameworkEntry {
    fn send(&mut self, ev: FrameworkEvent) -> bool {
        match &self.tx {
            Some(tx) => tx.send(ev).is_ok(),
            None => false,
        }
    }
}

struct OfferEntry {
    offer: Offer,
    created_ms: u64,
}

struct Inner {
    agents: BTreeMap<AgentId, AgentEntry>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    offers: HashMap<OfferId, OfferEntry>,
    /// The outstanding offers of each agent (an index of `offers`).
    offers_by_agent: HashMap<AgentId, BTreeSet<OfferId>>,
    allocator: Allocator,
    /// Latest status of each task, for reconciliation.
    latest: HashMap<TaskId, TaskStatus>,
    next_offer: u64,
    next_generation: u64,
    metrics: Arc<MasterMetrics>,
}

/// The master. Cheap to clone; every clone is the same master.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Mutex<Inner>>,
    store: Arc<dyn StateStore>,
    config: Arc<MasterConfig>,
    wake: Arc<Notify>,
    token: Arc<String>,
    registry: SharedRegistry,
}

/// A framework's live subscription: events, and a guard that marks the
/// framework disconnected when dropped.
pub struct FrameworkSubscription {
    pub framework_id: FrameworkId,
    pub events: mpsc::UnboundedReceiver<FrameworkEvent>,
    pub guard: StreamGuard,
}

/// An agent's live event stream.
pub struct AgentSubscription {
    pub events: mpsc::UnboundedReceiver<AgentEvent>,
    pub guard: StreamGuard,
}

/// Marks a framework or agent stream closed when dropped.
pub struct StreamGuard {
    master: Master,
    kind: StreamKind,
    id: String,
    generation: u64,
}

enum StreamKind {
    Framework,
    Agent,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        match self.kind {
            StreamKind::Framework => self.master.framework_disconnected(&self.id, self.generation),
            StreamKind::Agent => self.master.agent_stream_closed(&self.id, self.generation),
        }
    }
}

const AGENT_PREFIX: &str = "master/agents/";
const FRAMEWORK_PREFIX: &str = "master/frameworks/";

impl Master {
    /// Opens the master on its state store, recovering the agent registry,
    /// reservations and frameworks from an earlier run.
    pub fn open(store: Arc<dyn StateStore>, config: MasterConfig, token: String) -> Result<Master> {
        let mut allocator = Allocator::new(AllocatorConfig {
            default_filter_ms: config.default_filter.as_millis() as u64,
            ..AllocatorConfig::default()
        });
        let now = now_ms();
        let mut agents = BTreeMap::new();
        for key in store.list(AGENT_PREFIX)? {
            let Some(bytes) = store.get(&key)? else { continue };
            let p: PersistedAgent =
                serde_json::from_slice(&bytes).map_err(|source| Error::Codec { key: key.clone(), source })?;
            allocator.add_agent(p.id.clone(), p.ledger.total.clone(), p.attributes.clone());
            allocator.set_agent_reachable(&p.id, false);
            agents.insert(
                p.id.clone(),
                AgentEntry {
                    id: p.id,
                    hostname: p.hostname,
                    attributes: p.attributes,
                    ledger: p.ledger,
                    endpoint: None,
                    reachable: false,
                    last_heartbeat_ms: now,
                    outbox: Vec::new(),
                    tx: None,
                    generation: 0,
                },
            );
        }
        let mut frameworks = BTreeMap::new();
        for key in store.list(FRAMEWORK_PREFIX)? {
            let Some(bytes) = store.get(&key)? else { continue };
            let p: PersistedFramework =
                serde_json::from_slice(&bytes).map_err(|source| Error::Codec { key: key.clone(), source })?;
            frameworks.insert(
                p.id.clone(),
                FrameworkEntry {
                    id: p.id,
                    name: p.name,
                    role: p.role,
                    weight: p.weight,
                    suppressed: false,
                    tx: None,
                    generation: 0,
                    allocated: Resources::default(),
                    api_url: p.api_url,
                },
            );
        }
        tracing::info!(agents = agents.len(), frameworks = frameworks.len(), "master state recovered");
        let metrics = Arc::new(MasterMetrics::default());
        let inner = Arc::new(Mutex::new(Inner {
            agents,
            frameworks,
            offers: HashMap::new(),
            offers_by_agent: HashMap::new(),
            allocator,
            latest: HashMap::new(),
            next_offer: 1,
            next_generation: 1,
            metrics: metrics.clone(),
        }));
        let registry = crate::metrics::new_registry();
        {
            // Weak: the registry must not keep a dropped master alive.
            let weak = Arc::downgrade(&inner);
            let mut reg = registry.write().unwrap_or_else(|p| p.into_inner());
            metrics.register(&mut reg, move || {
                let inner = weak.upgrade()?;
                let inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                Some(Self::metrics_snapshot(&inner))
            });
        }
        Ok(Master {
            inner,
            store,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            token: Arc::new(token),
            registry,
        })
    }

    /// The master's metrics registry, served at `GET /metrics`. Others in
    /// the same process (the agents of `smack up`) may register into it.
    pub fn registry(&self) -> SharedRegistry {
        self.registry.clone()
    }

    /// The gauges' values, read from the ledger: reachable agents only.
    fn metrics_snapshot(inner: &Inner) -> MasterSnapshot {
        let mut s = MasterSnapshot::default();
        for a in inner.agents.values() {
            if !a.reachable {
                s.agents_unreachable += 1;
                continue;
            }
            s.agents_reachable += 1;
            s.capacity.add(&a.ledger.total);
            for r in a.ledger.reservations.values() {
                s.reserved.entry(r.role.clone()).or_default().add(&r.resources);
            }
            for t in a.ledger.tasks.values().filter(|t| t.state != TaskState::Lost) {
                s.used.entry(t.role.clone()).or_default().add(&t.info.resources);
            }
        }
        s.frameworks_connected = inner.frameworks.values().filter(|f| f.tx.is_some()).count() as u64;
        s
    }

    /// The cluster token every API call must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist_agent(&self, a: &AgentEntry) {
        let p = PersistedAgent {
            id: a.id.clone(),
            hostname: a.hostname.clone(),
            attributes: a.attributes.clone(),
            ledger: a.ledger.clone(),
        };
        let key = format!("{AGENT_PREFIX}{}", a.id);
        match serde_json::to_vec(&p) {
            Ok(bytes) => {
                if let Err(e) = self.store.put(&key, &bytes) {
                    tracing::error!(agent = %a.id, error = %e, "could not persist agent record");
                }
            }
            Err(e) => tracing::error!(agent = %a.id, error = %e, "could not encode agent record"),
        }
    }

    fn persist_framework(&self, f: &FrameworkEntry) -> Result<()> {
        let p = PersistedFramework {
            id: f.id.clone(),
            name: f.name.clone(),
            role: f.role.clone(),
            weight: f.weight,
            api_url: f.api_url.clone(),
        };
        let key = format!("{FRAMEWORK_PREFIX}{}", f.id);
        let bytes = serde_json::to_vec(&p).map_err(|source| Error::Codec { key: key.clone(), source })?;
        self.store.put(&key, &bytes)
    }

    /// Tells the allocator what on this agent is free and not offered.
    fn refresh_allocator(inner: &mut Inner, agent_id: &str) {
        let Some(a) = inner.agents.get(agent_id) else { return };
        let mut free = a.ledger.unreserved_free();
        let mut reserved: Vec<(String, ReservedOffer)> = a.ledger.reserved_offers();
        let outstanding = inner.offers_by_agent.get(agent_id).into_iter().flatten();
        for o in outstanding.filter_map(|id| inner.offers.get(id)) {
            free.subtract(&o.offer.unreserved);
            for ro in &o.offer.reserved {
                reserved.retain(|(_, r)| r.reservation.id != ro.reservation.id);
            }
        }
        reserved.retain(|(_, r)| !r.free.is_empty());
        inner.allocator.update_agent(agent_id, free, reserved);
    }

    // ---- agents -------------------------------------------------------

    /// Registers an agent, or re-registers one after its restart or a
    /// master restart. The agent's checkpointed reservations are taken as
    /// the truth for what is on its disks.
    pub fn register_agent(&self, req: RegisterAgent) -> Result<Registered> {
        let now = now_ms();
        let mut inner = self.lock();
        let id = req.agent_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("agent-{}", short_id()));
        let reported: BTreeMap<TaskId, LedgerTask> = req
            .tasks
            .iter()
            .map(|t| {
                (
                    t.info.id.clone(),
                    LedgerTask {
                        framework_id: t.framework_id.clone(),
                        role: t.role.clone(),
                        info: t.info.clone(),
                        state: t.state,
                    },
                )
            })
            .collect();
        let mut lost = Vec::new();
        let mut back: Vec<(FrameworkId, TaskId, TaskState)> = Vec::new();
        let known = inner.agents.contains_key(&id);
        if known {
            let a = inner.agents.get_mut(&id).expect("known");
            for (tid, t) in &a.ledger.tasks {
                if !reported.contains_key(tid) && t.state != TaskState::Lost {
                    lost.push((t.framework_id.clone(), tid.clone()));
                }
            }
            a.hostname = req.hostname.clone();
            a.attributes = req.attributes.clone();
            a.endpoint = req.endpoint.clone();
            a.ledger.total = req.total.clone();
            a.ledger.reservations = req.reservations.iter().map(|r| (r.id.clone(), r.clone())).collect();
            // Tasks the master had given up as LOST are alive after all: tell
            // their frameworks (a replaced pod's old task is then killed).
            for (tid, t) in &reported {
                let was_lost = a.ledger.tasks.get(tid).is_none_or(|old| old.state == TaskState::Lost);
                if was_lost && !t.state.is_terminal() {
                    back.push((t.framework_id.clone(), tid.clone(), t.state));
                }
            }
            a.ledger.tasks = reported;
            a.reachable = true;
            a.last_heartbeat_ms = now;
        } else {
            let mut ledger = AgentLedger::new(req.total.clone());
            ledger.reservations = req.reservations.iter().map(|r| (r.id.clone(), r.clone())).collect();
            ledger.tasks = reported;
            inner.agents.insert(
                id.clone(),
                AgentEntry {
                    id: id.clone(),
                    hostname: req.hostname.clone(),
                    attributes: req.attributes.clone(),
                    ledger,
                    endpoint: req.endpoint.clone(),
                    reachable: true,
                    last_heartbeat_ms: now,
                    outbox: Vec::new(),
                    tx: None,
                    generation: 0,
                },
            );
            inner.allocator.add_agent(id.clone(), req.total.clone(), req.attributes.clone());
        }
        // Offers made before (re-)registration describe a ledger that is gone.
        let stale: Vec<OfferId> =
            inner.offers.values().filter(|o| o.offer.agent_id == id).map(|o| o.offer.id.clone()).collect();
        for oid in stale {
            Self::rescind_offer(&mut inner, &oid);
        }
        inner.allocator.set_agent_reachable(&id, true);
        for (fw, tid, state) in back {
            let status = TaskStatus {
                uuid: String::new(),
                task_id: tid,
                framework_id: fw,
                agent_id: id.clone(),
                state,
                message: "the agent re-registered with this task".into(),
                ready: None,
                healthy: None,
                timestamp_ms: now,
            };
            Self::forward_status(&mut inner, status);
        }
        for (fw, tid) in lost {
            let status = TaskStatus {
                uuid: uuid::Uuid::new_v4().to_string(),
                task_id: tid.clone(),
                framework_id: fw.clone(),
                agent_id: id.clone(),
                state: TaskState::Lost,
                message: "the agent re-registered without this task".into(),
                ready: None,
                healthy: None,
                timestamp_ms: now,
            };
            Self::forward_status(&mut inner, status);
        }
        Self::recompute_allocations(&mut inner);
        Self::refresh_allocator(&mut inner, &id);
        let entry = &inner.agents[&id];
        self.persist_agent(entry);
        tracing::info!(agent = %id, hostname = %req.hostname, reregistered = known, "agent registered");
        drop(inner);
        self.wake.notify_one();
        Ok(Registered { agent_id: id })
    }

    /// Opens the agent's event stream; queued events are delivered first.
    pub fn agent_events(&self, agent_id: &str) -> Result<AgentSubscription> {
        let mut inner = self.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let a = inner
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| Error::NotFound { what: "agent", id: agent_id.to_string() })?;
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in a.outbox.drain(..) {
            let _ = tx.send(ev);
        }
        a.tx = Some(tx);
        a.generation = generation;
        drop(inner);
        Ok(AgentSubscription {
            events: rx,
            guard: StreamGuard { master: self.clone(), kind: StreamKind::Agent, id: agent_id.to_string(), generation },
        })
    }

    fn agent_stream_closed(&self, agent_id: &str, generation: u64) {
        let mut inner = self.lock();
        if let Some(a) = inner.agents.get_mut(agent_id) {
            if a.generation == generation {
                a.tx = None;
            }
        }
    }

    /// Records an agent's heartbeat. An agent the master has marked
    /// unreachable must register again.
    pub fn heartbeat(&self, agent_id: &str) -> Result<()> {
        let mut inner = self.lock();
        let a = inner
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| Error::NotFound { what: "agent", id: agent_id.to_string() })?;
        if !a.reachable {
            return Err(Error::NotFound { what: "reachable agent", id: agent_id.to_string() });
        }
        a.last_heartbeat_ms = now_ms();
        Ok(())
    }

    /// The agent reports where it made volumes: the master records each
    /// volume's `host_path`. Reservations themselves are the master's to
    /// change; unknown ones are ignored.
    pub fn volumes_made(&self, agent_id: &str, reservations: Vec<crate::resources::Reservation>) -> Result<()> {
        let mut inner = self.lock();
        let a = inner
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| Error::NotFound { what: "agent", id: agent_id.to_string() })?;
        let mut changed = false;
        for r in reservations {
            let Some(mine) = a.ledger.reservations.get_mut(&r.id) else { continue };
            for v in mine.volumes.iter_mut() {
                if let Some(theirs) = r.volumes.iter().find(|x| x.id == v.id) {
                    if v.host_path != theirs.host_path {
                        v.host_path = theirs.host_path.clone();
                        changed = true;
                    }
                }
            }
        }
        if changed {
            let entry = &inner.agents[agent_id];
            self.persist_agent(entry);
        }
        Ok(())
    }

    /// A status update from an agent: recorded, and forwarded to the
    /// task's framework, which acknowledges it.
    pub fn status_update(&self, agent_id: &str, status: TaskStatus) -> Result<()> {
        let mut inner = self.lock();
        let Some(a) = inner.agents.get_mut(agent_id) else {
            return Err(Error::NotFound { what: "agent", id: agent_id.to_string() });
        };
        let mut changed = false;
        let mut ended = None;
        if let Some(t) = a.ledger.tasks.get_mut(&status.task_id) {
            if status.state.is_terminal() {
                ended = a.ledger.tasks.remove(&status.task_id);
                changed = true;
            } else if t.state != status.state {
                t.state = status.state;
                changed = true;
            }
        }
        if changed {
            let entry = &inner.agents[agent_id];
            self.persist_agent(entry);
        }
        if let Some(t) = ended {
            // Its resources are no longer the framework's share.
            if let Some(f) = inner.frameworks.get_mut(&t.framework_id) {
                f.allocated.subtract(&t.info.resources);
            }
            inner.allocator.remove_allocation(&t.framework_id, &t.info.resources);
            Self::refresh_allocator(&mut inner, agent_id);
        }
        Self::forward_status(&mut inner, status);
        drop(inner);
        if changed {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn forward_status(inner: &mut Inner, status: TaskStatus) {
        inner.latest.insert(status.task_id.clone(), status.clone());
        if let Some(f) = inner.frameworks.get_mut(&status.framework_id) {
            f.send(FrameworkEvent::Update { status });
        }
    }

    // ---- frameworks ---------------------------------------------------

    /// Subscribes a framework (or resumes one by id after its restart).
    pub fn subscribe(&self, req: Subscribe) -> Result<FrameworkSubscription> {
        if req.role.trim().is_empty() {
            return Err(Error::BadRequest("a framework needs a non-empty role".into()));
        }
        if !(req.weight > 0.0 && req.weight.is_finite()) {
            return Err(Error::BadRequest(format!("weight must be a positive number, got {}", req.weight)));
        }
        let mut inner = self.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let id = req.framework_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("fw-{}", short_id()));
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(FrameworkEvent::Subscribed { framework_id: id.clone() });
        let existing = inner.frameworks.contains_key(&id);
        if existing {
            let role = inner.frameworks[&id].role.clone();
            if role != req.role {
                return Err(Error::BadRequest(format!(
                    "framework {id} is registered with role {role}; it cannot resubscribe as {}",
                    req.role
                )));
            }
            // Offers of the old subscription are gone with it.
            let old: Vec<OfferId> =
                inner.offers.values().filter(|o| o.offer.framework_id == id).map(|o| o.offer.id.clone()).collect();
            for oid in old {
                Self::rescind_offer(&mut inner, &oid);
            }
            let f = inner.frameworks.get_mut(&id).expect("exists");
            f.tx = Some(tx);
            f.generation = generation;
            f.suppressed = false;
            f.name = req.name.clone();
            if f.api_url != req.api_url {
                f.api_url = req.api_url.clone();
                let f = &inner.frameworks[&id];
                self.persist_framework(f)?;
            }
        } else {
            let f = FrameworkEntry {
                id: id.clone(),
                name: req.name.clone(),
                role: req.role.clone(),
                weight: req.weight,
                suppressed: false,
                tx: Some(tx),
                generation,
                allocated: Resources::default(),
                api_url: req.api_url.clone(),
            };
            self.persist_framework(&f)?;
            inner.frameworks.insert(id.clone(), f);
        }
        let f = &inner.frameworks[&id];
        let (fid, role, weight) = (f.id.clone(), f.role.clone(), f.weight);
        inner.allocator.add_framework(fid, role, weight);
        inner.allocator.revive(&id);
        Self::recompute_allocations(&mut inner);
        drop(inner);
        tracing::info!(framework = %id, role = %req.role, resumed = existing, "framework subscribed");
        self.wake.notify_one();
        Ok(FrameworkSubscription {
            framework_id: id.clone(),
            events: rx,
            guard: StreamGuard { master: self.clone(), kind: StreamKind::Framework, id, generation },
        })
    }

    fn framework_disconnected(&self, id: &str, generation: u64) {
        let mut inner = self.lock();
        let Some(f) = inner.frameworks.get_mut(id) else { return };
        if f.generation != generation {
            return;
        }
        f.tx = None;
        let offers: Vec<OfferId> =
            inner.offers.values().filter(|o| o.offer.framework_id == id).map(|o| o.offer.id.clone()).collect();
        for oid in offers {
            Self::rescind_offer(&mut inner, &oid);
        }
        inner.allocator.suppress(id);
        tracing::info!(framework = %id, "framework disconnected; its offers are rescinded");
        drop(inner);
        self.wake.notify_one();
    }

    fn framework(inner: &Inner, id: &str) -> Result<(String, bool)> {
        let f = inner.frameworks.get(id).ok_or_else(|| Error::NotFound { what: "framework", id: id.to_string() })?;
        Ok((f.role.clone(), f.tx.is_some()))
    }

    /// Removes an offer, returning its resources to the pool (no event).
    fn drop_offer(inner: &mut Inner, offer_id: &str) -> Option<Offer> {
        let o = inner.offers.remove(offer_id)?.offer;
        if let Some(ids) = inner.offers_by_agent.get_mut(&o.agent_id) {
            ids.remove(offer_id);
        }
        let mut offered = o.unreserved.clone();
        for r in &o.reserved {
            offered.add(&r.free);
        }
        if let Some(f) = inner.frameworks.get_mut(&o.framework_id) {
            f.allocated.subtract(&offered);
        }
        inner.allocator.remove_allocation(&o.framework_id, &offered);
        Self::refresh_allocator(inner, &o.agent_id);
        Some(o)
    }

    fn rescind_offer(inner: &mut Inner, offer_id: &str) {
        if let Some(o) = Self::drop_offer(inner, offer_id) {
            inner.metrics.offer_rescinded();
            if let Some(f) = inner.frameworks.get_mut(&o.framework_id) {
                f.send(FrameworkEvent::Rescind { offer_id: o.id.clone() });
            }
        }
    }

    /// Accepts offers with operations, all-or-nothing. A refused accept
    /// changes nothing: the ledger is as before and the offers stay
    /// outstanding.
    pub fn accept(&self, framework_id: &str, req: Accept) -> Result<()> {
        let kinds: Vec<&'static str> = req.operations.iter().map(Operation::kind).collect();
        let result = self.accept_inner(framework_id, req);
        let metrics = self.lock().metrics.clone();
        for kind in kinds {
            metrics.operation(kind, result.is_ok());
        }
        result
    }

    fn accept_inner(&self, framework_id: &str, req: Accept) -> Result<()> {
        let mut inner = self.lock();
        let (role, _) = Self::framework(&inner, framework_id)?;
        if req.offer_ids.is_empty() {
            return Err(Error::BadRequest("an accept needs at least one offer id".into()));
        }
        let mut agent_id: Option<AgentId> = None;
        let mut pool = OfferedPool::default();
        for oid in &req.offer_ids {
            let o = inner.offers.get(oid).ok_or_else(|| Error::OfferNotOutstanding(oid.clone()))?;
            if o.offer.framework_id != framework_id {
                return Err(Error::OfferNotOutstanding(oid.clone()));
            }
            match &agent_id {
                None => agent_id = Some(o.offer.agent_id.clone()),
                Some(a) if a != &o.offer.agent_id => {
                    return Err(Error::BadRequest(format!(
                        "offers {} are on different agents; one accept works on one agent",
                        req.offer_ids.join(", ")
                    )))
                }
                Some(_) => {}
            }
            pool.unreserved.add(&o.offer.unreserved);
            for r in &o.offer.reserved {
                pool.reserved.insert(r.reservation.id.clone(), r.free.clone());
            }
        }
        let agent_id = agent_id.expect("at least one offer");
        let applied = {
            let a =
                inner.agents.get(&agent_id).ok_or_else(|| Error::NotFound { what: "agent", id: agent_id.clone() })?;
            apply_operations(&a.ledger, &pool, framework_id, &role, &req.operations)?
        };
        for oid in &req.offer_ids {
            Self::drop_offer(&mut inner, oid);
        }
        let a = inner.agents.get_mut(&agent_id).expect("checked");
        let before = task_shares(&a.ledger);
        a.ledger = applied.ledger;
        let after = task_shares(&a.ledger);
        // Kills are delivered as events; the task stays in the ledger until
        // its terminal status arrives.
        a.send(AgentEvent::Apply {
            framework_id: framework_id.to_string(),
            role: role.clone(),
            operations: req.operations.clone(),
        });
        let snapshot = PersistedAgent {
            id: a.id.clone(),
            hostname: a.hostname.clone(),
            attributes: a.attributes.clone(),
            ledger: a.ledger.clone(),
        };
        let key = format!("{AGENT_PREFIX}{}", agent_id);
        self.store
            .put(&key, &serde_json::to_vec(&snapshot).map_err(|source| Error::Codec { key: key.clone(), source })?)?;
        if let Some(ms) = req.filter_ms {
            inner.allocator.decline(framework_id, &agent_id, Some(ms), now_ms());
        }
        Self::charge_task_changes(&mut inner, before, after);
        Self::refresh_allocator(&mut inner, &agent_id);
        let kinds: Vec<&str> = req.operations.iter().map(Operation::kind).collect();
        tracing::info!(framework = %framework_id, agent = %agent_id, operations = ?kinds, "accept applied");
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Declines offers; their agents are filtered for this framework for
    /// `filter_ms` (or the default).
    pub fn decline(&self, framework_id: &str, req: Decline) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        let now = now_ms();
        for oid in &req.offer_ids {
            let owned = inner.offers.get(oid).map(|o| o.offer.framework_id == framework_id).unwrap_or(false);
            if !owned {
                return Err(Error::OfferNotOutstanding(oid.clone()));
            }
        }
        for oid in &req.offer_ids {
            if let Some(o) = Self::drop_offer(&mut inner, oid) {
                inner.metrics.offer_declined();
                inner.allocator.decline(framework_id, &o.agent_id, req.filter_ms, now);
            }
        }
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Stops offers to a framework until it revives.
    pub fn suppress(&self, framework_id: &str) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        inner.allocator.suppress(framework_id);
        if let Some(f) = inner.frameworks.get_mut(framework_id) {
            f.suppressed = true;
        }
        Ok(())
    }

    /// Resumes offers to a framework and clears its filters.
    pub fn revive(&self, framework_id: &str) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        inner.allocator.revive(framework_id);
        if let Some(f) = inner.frameworks.get_mut(framework_id) {
            f.suppressed = false;
        }
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// A framework acknowledges a status update; the agent stops resending it.
    pub fn acknowledge(&self, framework_id: &str, ack: Acknowledge) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        if let Some(a) = inner.agents.get_mut(&ack.agent_id) {
            a.send(AgentEvent::Acknowledged { uuid: ack.uuid });
        }
        Ok(())
    }

    /// Kills a task of the framework wherever it runs.
    pub fn kill(&self, framework_id: &str, task_id: &str) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        for a in inner.agents.values_mut() {
            if let Some(t) = a.ledger.tasks.get(task_id) {
                if t.framework_id != framework_id {
                    return Err(Error::BadRequest(format!("task {task_id} belongs to another framework")));
                }
                a.send(AgentEvent::Kill { task_id: task_id.to_string() });
                return Ok(());
            }
        }
        Err(Error::NotFound { what: "task", id: task_id.to_string() })
    }

    /// Sends the framework the latest state of its tasks (all when empty).
    /// A task the master does not know is reported `LOST`.
    pub fn reconcile(&self, framework_id: &str, req: Reconcile) -> Result<()> {
        let mut inner = self.lock();
        Self::framework(&inner, framework_id)?;
        let now = now_ms();
        let mut out = Vec::new();
        let mut live: BTreeMap<TaskId, (AgentId, TaskState)> = BTreeMap::new();
        for a in inner.agents.values() {
            for (tid, t) in &a.ledger.tasks {
                if t.framework_id == framework_id {
                    live.insert(tid.clone(), (a.id.clone(), t.state));
                }
            }
        }
        let wanted: Vec<TaskId> = if req.task_ids.is_empty() { live.keys().cloned().collect() } else { req.task_ids };
        for tid in wanted {
            let st = match (inner.latest.get(&tid), live.get(&tid)) {
                (Some(s), _) => s.clone(),
                (None, Some((agent, state))) => TaskStatus {
                    uuid: String::new(),
                    task_id: tid.clone(),
                    framework_id: framework_id.to_string(),
                    agent_id: agent.clone(),
                    state: *state,
                    message: "reconciliation".into(),
                    ready: None,
                    healthy: None,
                    timestamp_ms: now,
                },
                (None, None) => TaskStatus {
                    uuid: String::new(),
                    task_id: tid.clone(),
                    framework_id: framework_id.to_string(),
                    agent_id: String::new(),
                    state: TaskState::Lost,
                    message: "the master knows no such task".into(),
                    ready: None,
                    healthy: None,
                    timestamp_ms: now,
                },
            };
            out.push(st);
        }
        if let Some(f) = inner.frameworks.get_mut(framework_id) {
            for s in out {
                f.send(FrameworkEvent::Update { status: s });
            }
        }
        Ok(())
    }

    /// Recomputes each framework's allocation (offered plus used) and
    /// hands it to the allocator.
    /// Moves frameworks' shares from `before` to `after`: the tasks' resources
    /// per framework on one agent before and after a change of its ledger.
    /// The same as [`Master::recompute_allocations`] for a change on one
    /// agent, without walking every agent's tasks (an accept costs the same
    /// on 10 agents or 10,000).
    fn charge_task_changes(
        inner: &mut Inner,
        before: BTreeMap<FrameworkId, Resources>,
        after: BTreeMap<FrameworkId, Resources>,
    ) {
        let ids: BTreeSet<FrameworkId> = before.keys().chain(after.keys()).cloned().collect();
        let none = Resources::default();
        for id in ids {
            let (old, new) = (before.get(&id).unwrap_or(&none), after.get(&id).unwrap_or(&none));
            if old == new {
                continue;
            }
            if let Some(f) = inner.frameworks.get_mut(&id) {
                f.allocated.subtract(old);
                f.allocated.add(new);
            }
            inner.allocator.remove_allocation(&id, old);
            inner.allocator.add_allocation(&id, new);
        }
    }

    fn recompute_allocations(inner: &mut Inner) {
        let mut alloc: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
        for a in inner.agents.values() {
            for t in a.ledger.tasks.values() {
                alloc.entry(t.framework_id.clone()).or_default().add(&t.info.resources);
            }
        }
        for o in inner.offers.values() {
            let e = alloc.entry(o.offer.framework_id.clone()).or_default();
            e.add(&o.offer.unreserved);
            for r in &o.offer.reserved {
                e.add(&r.free);
            }
        }
        let ids: Vec<FrameworkId> = inner.frameworks.keys().cloned().collect();
        for id in ids {
            let want = alloc.remove(&id).unwrap_or_default();
            let f = inner.frameworks.get_mut(&id).expect("listed");
            let old = std::mem::replace(&mut f.allocated, want.clone());
            inner.allocator.remove_allocation(&id, &old);
            inner.allocator.add_allocation(&id, &want);
        }
    }

    // ---- time -----------------------------------------------------------

    /// One step of the master's clock: marks silent agents unreachable
    /// (their tasks `LOST`), rescinds stale offers, and runs the allocator.
    pub fn tick(&self) {
        let started = std::time::Instant::now();
        let now = now_ms();
        let mut inner = self.lock();
        let timeout = self.config.agent_timeout.as_millis() as u64;
        let mut gone = Vec::new();
        for a in inner.agents.values_mut() {
            let silent = now.saturating_sub(a.last_heartbeat_ms) > timeout;
            let has_live = a.ledger.tasks.values().any(|t| t.state != TaskState::Lost);
            if silent && (a.reachable || has_live) {
                a.reachable = false;
                a.tx = None;
                gone.push(a.id.clone());
            }
        }
        for id in gone {
            tracing::warn!(agent = %id, "agent missed its heartbeats: marked unreachable, its tasks LOST");
            inner.allocator.set_agent_reachable(&id, false);
            let offers: Vec<OfferId> =
                inner.offers.values().filter(|o| o.offer.agent_id == id).map(|o| o.offer.id.clone()).collect();
            for oid in offers {
                Self::rescind_offer(&mut inner, &oid);
            }
            let mut statuses = Vec::new();
            if let Some(a) = inner.agents.get_mut(&id) {
                for (tid, t) in a.ledger.tasks.iter_mut() {
                    if t.state != TaskState::Lost {
                        t.state = TaskState::Lost;
                        statuses.push(TaskStatus {
                            uuid: uuid::Uuid::new_v4().to_string(),
                            task_id: tid.clone(),
                            framework_id: t.framework_id.clone(),
                            agent_id: id.clone(),
                            state: TaskState::Lost,
                            message: "the agent is unreachable".into(),
                            ready: None,
                            healthy: None,
                            timestamp_ms: now,
                        });
                    }
                }
                let snapshot = &inner.agents[&id];
                self.persist_agent(snapshot);
            }
            for s in statuses {
                Self::forward_status(&mut inner, s);
            }
        }
        let offer_timeout = self.config.offer_timeout.as_millis() as u64;
        let stale: Vec<OfferId> = inner
            .offers
            .values()
            .filter(|o| now.saturating_sub(o.created_ms) > offer_timeout)
            .map(|o| o.offer.id.clone())
            .collect();
        for oid in stale {
            Self::rescind_offer(&mut inner, &oid);
        }
        // Frameworks without a stream get nothing.
        let disconnected: Vec<FrameworkId> =
            inner.frameworks.values().filter(|f| f.tx.is_none()).map(|f| f.id.clone()).collect();
        for id in &disconnected {
            inner.allocator.suppress(id);
        }
        let allocations = inner.allocator.allocate(now);
        let mut batches: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for al in allocations {
            let Some(a) = inner.agents.get(&al.agent_id) else { continue };
            if al.unreserved.is_empty() && al.reserved.is_empty() {
                continue;
            }
            let offer = Offer {
                id: format!("offer-{}", inner.next_offer),
                framework_id: al.framework_id.clone(),
                agent_id: al.agent_id.clone(),
                hostname: a.hostname.clone(),
                attributes: a.attributes.clone(),
                unreserved: al.unreserved,
                reserved: al.reserved,
            };
            inner.next_offer += 1;
            let mut offered = offer.unreserved.clone();
            for r in &offer.reserved {
                offered.add(&r.free);
            }
            if let Some(f) = inner.frameworks.get_mut(&al.framework_id) {
                f.allocated.add(&offered);
            }
            inner.offers_by_agent.entry(offer.agent_id.clone()).or_default().insert(offer.id.clone());
            inner.offers.insert(offer.id.clone(), OfferEntry { offer: offer.clone(), created_ms: now });
            batches.entry(al.framework_id).or_default().push(offer);
        }
        for (fid, offers) in batches {
            let ids: Vec<OfferId> = offers.iter().map(|o| o.id.clone()).collect();
            let delivered =
                inner.frameworks.get_mut(&fid).map(|f| f.send(FrameworkEvent::Offers { offers })).unwrap_or(false);
            if delivered {
                inner.metrics.offers_made(ids.len() as u64);
            } else {
                for oid in ids {
                    Self::drop_offer(&mut inner, &oid);
                }
            }
        }
        inner.metrics.allocation_cycle(started.elapsed());
    }

    /// Sends a heartbeat event on every open stream.
    pub fn heartbeat_streams(&self) {
        let mut inner = self.lock();
        for f in inner.frameworks.values_mut() {
            f.send(FrameworkEvent::Heartbeat);
        }
        for a in inner.agents.values_mut() {
            if let Some(tx) = &a.tx {
                let _ = tx.send(AgentEvent::Heartbeat);
            }
        }
    }

    /// Drives the master's clock until the task is dropped.
    pub async fn run(self) {
        let mut alloc = tokio::time::interval(self.config.allocation_interval);
        let mut hb = tokio::time::interval(self.config.stream_heartbeat);
        alloc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = alloc.tick() => {}
                _ = self.wake.notified() => {
                    // Let a burst of changes settle into one cycle.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = hb.tick() => { self.heartbeat_streams(); continue; }
            }
            self.tick();
        }
    }

    // ---- reads ----------------------------------------------------------

    /// Agents with their total, reserved and used resources.
    pub fn agents(&self) -> Vec<AgentSummary> {
        let inner = self.lock();
        inner
            .agents
            .values()
            .map(|a| {
                let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
                for r in a.ledger.reservations.values() {
                    by_role.entry(r.role.clone()).or_default().add(&r.resources);
                }
                AgentSummary {
                    id: a.id.clone(),
                    hostname: a.hostname.clone(),
                    zone: a.attributes.get("zone").cloned().unwrap_or_default(),
                    state: if a.reachable { AgentState::Reachable } else { AgentState::Unreachable },
                    attributes: a.attributes.clone(),
                    total: a.ledger.total.clone(),
                    reserved: a.ledger.reserved(),
                    used: a.ledger.used(),
                    reserved_by_role: by_role,
                    tasks: a.ledger.tasks.len(),
                    last_heartbeat_ms: a.last_heartbeat_ms,
                    endpoint: a.endpoint.clone(),
                }
            })
            .collect()
    }

    /// The URL of a framework's own HTTP API, as it announced it at
    /// subscribe (`None` if it announced none).
    pub fn framework_api_url(&self, framework_id: &str) -> Result<Option<String>> {
        let inner = self.lock();
        let f = inner
            .frameworks
            .get(framework_id)
            .ok_or_else(|| Error::NotFound { what: "framework", id: framework_id.to_string() })?;
        Ok(f.api_url.clone())
    }

    /// The API URL of the scheduler of service `name` (its framework's
    /// name): the connected framework of that name, else the last one known.
    /// No framework of that name is [`Error::Unknown`] with the names known.
    pub fn service_api_url(&self, name: &str) -> Result<Option<String>> {
        let inner = self.lock();
        let named: Vec<&FrameworkEntry> = inner.frameworks.values().filter(|f| f.name == name).collect();
        let Some(f) = named.iter().find(|f| f.tx.is_some()).or(named.last()) else {
            let known: BTreeSet<String> = inner.frameworks.values().map(|f| f.name.clone()).collect();
            return Err(Error::Unknown {
                what: "service",
                name: name.to_string(),
                known: Some(known.into_iter().collect()),
            });
        };
        Ok(f.api_url.clone())
    }

    /// The agent running a task (from the ledger), or the one that ran it
    /// (from the latest status the master saw, kept in memory for every
    /// task), with the agent's HTTP endpoint for reading the task's logs.
    pub fn task_agent(&self, task_id: &str) -> Result<TaskAgent> {
        let inner = self.lock();
        let found = inner
            .agents
            .values()
            .find_map(|a| a.ledger.tasks.get(task_id).map(|t| (a.id.clone(), Some(t.state))))
            .or_else(|| inner.latest.get(task_id).map(|s| (s.agent_id.clone(), Some(s.state))));
        let Some((agent_id, state)) = found.filter(|(a, _)| !a.is_empty()) else {
            return Err(Error::NotFound { what: "task", id: task_id.to_string() });
        };
        // A newer status may be ahead of the ledger's state (or the ledger
        // has already dropped a task that ended).
        let state = inner.latest.get(task_id).map(|s| s.state).or(state);
        let endpoint = inner.agents.get(&agent_id).and_then(|a| a.endpoint.clone());
        Ok(TaskAgent { task_id: task_id.to_string(), agent_id, endpoint, state })
    }

    /// The whole ledger and the frameworks.
    pub fn state(&self) -> MasterState {
        let inner = self.lock();
        let shares: HashMap<FrameworkId, f64> = inner.allocator.shares().into_iter().collect();
        let agents = inner
            .agents
            .values()
            .map(|a| AgentLedgerView {
                id: a.id.clone(),
                state: if a.reachable { AgentState::Reachable } else { AgentState::Unreachable },
                reservations: a.ledger.reservations.values().cloned().collect(),
                tasks: a.ledger.tasks.values().cloned().collect(),
                unreserved_free: a.ledger.unreserved_free(),
            })
            .collect();
        let frameworks = inner
            .frameworks
            .values()
            .map(|f| FrameworkSummary {
                id: f.id.clone(),
                name: f.name.clone(),
                role: f.role.clone(),
                weight: f.weight,
                connected: f.tx.is_some(),
                suppressed: f.suppressed,
                allocated: f.allocated.clone(),
                share: shares.get(&f.id).copied().unwrap_or(0.0),
                outstanding_offers: inner.offers.values().filter(|o| o.offer.framework_id == f.id).count(),
                api_url: f.api_url.clone(),
            })
            .collect();
        MasterState { agents, frameworks }
    }
}

/// The resources of one agent's tasks, per framework.
fn task_shares(ledger: &AgentLedger) -> BTreeMap<FrameworkId, Resources> {
    let mut shares: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
    for t in ledger.tasks.values() {
        shares.entry(t.framework_id.clone()).or_default().add(&t.info.resources);
    }
    shares
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[cfg(test)]
mod tests {
    //! The framework API used in-process: the same calls the HTTP API makes.
    use super::*;
    use crate::state::MemoryStore;

    fn agent_registration(host: &str) -> RegisterAgent {
        RegisterAgent {
            agent_id: None,
            hostname: host.into(),
            attributes: [("zone".to_string(), "zone-a".to_string())].into(),
            total: Resources::new(4.0, 4096, 1000),
            reservations: vec![],
            tasks: vec![],
            endpoint: None,
        }
    }

    fn next_offers(sub: &mut FrameworkSubscription) -> Vec<Offer> {
        loop {
            match sub.events.try_recv() {
                Ok(FrameworkEvent::Offers { offers }) => return offers,
                Ok(_) => continue,
                Err(e) => panic!("no offers queued: {e}"),
            }
        }
    }

    #[test]
    fn in_process_framework_reserves_and_the_master_remembers() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let m = Master::open(store.clone(), MasterConfig::default(), "t".into()).unwrap();
        let agent = m.register_agent(agent_registration("127.0.1.1")).unwrap().agent_id;
        let mut sub = m
            .subscribe(Subscribe { framework_id: None, name: "f".into(), role: "r".into(), weight: 1.0, api_url: None })
            .unwrap();
        m.tick();
        let offers = next_offers(&mut sub);
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].unreserved.cpus, 4.0);
        let reserve = Operation::Reserve {
            id: "res-1".into(),
            resources: Resources::new(1.0, 512, 100),
            labels: Default::default(),
        };
        m.accept(
            &sub.framework_id,
            Accept { offer_ids: vec![offers[0].id.clone()], operations: vec![reserve], filter_ms: None },
        )
        .unwrap();
        let a = &m.agents()[0];
        assert_eq!(a.reserved.cpus, 1.0);
        assert_eq!(a.reserved_by_role["r"].mem, 512);
        // The reservation comes back in the next offer, to the same role.
        m.tick();
        let again = next_offers(&mut sub);
        assert!(again[0].reservation("res-1").is_some());
        // A master opened on the same store knows the agent and reservation.
        drop(sub);
        let m2 = Master::open(store, MasterConfig::default(), "t".into()).unwrap();
        let st = m2.state();
        assert_eq!(st.agents[0].id, agent);
        assert_eq!(st.agents[0].state, AgentState::Unreachable);
        assert_eq!(st.agents[0].reservations[0].id, "res-1");
    }

    /// Frameworks' shares kept up per accept and per ended task equal the
    /// shares recomputed from every agent's tasks and outstanding offers.
    #[test]
    fn shares_kept_per_change_equal_shares_recomputed() {
        let m = Master::open(Arc::new(MemoryStore::new()), MasterConfig::default(), "t".into()).unwrap();
        let agents: Vec<String> =
            (1..=3).map(|i| m.register_agent(agent_registration(&format!("h{i}"))).unwrap().agent_id).collect();
        let mut subs: Vec<FrameworkSubscription> = ["f1", "f2"]
            .iter()
            .map(|n| {
                m.subscribe(Subscribe {
                    framework_id: None,
                    name: (*n).into(),
                    role: (*n).into(),
                    weight: 1.0,
                    api_url: None,
                })
                .unwrap()
            })
            .collect();
        let mut launched = Vec::new();
        for round in 0..3 {
            m.tick();
            for sub in subs.iter_mut() {
                while let Ok(ev) = sub.events.try_recv() {
                    let FrameworkEvent::Offers { offers } = ev else { continue };
                    for o in offers {
                        let id = format!("{}-{}-{round}", sub.framework_id, o.agent_id);
                        let task = crate::resources::TaskInfo::new(&id, "sleep 1", Resources::new(0.5, 128, 0));
                        m.accept(
                            &sub.framework_id,
                            Accept {
                                offer_ids: vec![o.id.clone()],
                                operations: vec![Operation::Launch { task }],
                                filter_ms: None,
                            },
                        )
                        .unwrap();
                        launched.push((o.agent_id.clone(), sub.framework_id.clone(), id));
                    }
                }
            }
        }
        assert!(launched.len() >= 3, "{launched:?}");
        // Some tasks run, some end.
        for (i, (agent, fw, task)) in launched.iter().enumerate() {
            let state = if i % 2 == 0 { TaskState::Running } else { TaskState::Finished };
            let status = TaskStatus {
                uuid: format!("u{i}"),
                task_id: task.clone(),
                framework_id: fw.clone(),
                agent_id: agent.clone(),
                state,
                message: String::new(),
                ready: None,
                healthy: None,
                timestamp_ms: now_ms(),
            };
            m.status_update(agent, status).unwrap();
        }
        m.tick();
        let kept: Vec<(String, f64, u64)> =
            m.state().frameworks.iter().map(|f| (f.id.clone(), f.allocated.cpus, f.allocated.mem)).collect();
        {
            let mut inner = m.lock();
            Master::recompute_allocations(&mut inner);
        }
        let recomputed: Vec<(String, f64, u64)> =
            m.state().frameworks.iter().map(|f| (f.id.clone(), f.allocated.cpus, f.allocated.mem)).collect();
        assert_eq!(kept, recomputed);
        assert_eq!(agents.len(), 3);
    }

    #[test]
    fn suppressed_frameworks_get_no_offers_until_revived() {
        let m = Master::open(Arc::new(MemoryStore::new()), MasterConfig::default(), "t".into()).unwrap();
        m.register_agent(agent_registration("127.0.1.1")).unwrap();
        let mut sub = m
            .subscribe(Subscribe { framework_id: None, name: "f".into(), role: "r".into(), weight: 1.0, api_url: None })
            .unwrap();
        m.suppress(&sub.framework_id).unwrap();
        m.tick();
        while let Ok(ev) = sub.events.try_recv() {
            assert!(!matches!(ev, FrameworkEvent::Offers { .. }), "offers while suppressed");
        }
        m.revive(&sub.framework_id).unwrap();
        m.tick();
        assert_eq!(next_offers(&mut sub).len(), 1);
    }

    #[test]
    fn a_framework_api_url_is_kept_updated_and_remembered() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let m = Master::open(store.clone(), MasterConfig::default(), "t".into()).unwrap();
        let sub = |id: Option<String>, url: Option<&str>| Subscribe {
            framework_id: id,
            name: "f".into(),
            role: "r".into(),
            weight: 1.0,
            api_url: url.map(String::from),
        };
        let first = m.subscribe(sub(None, Some("http://127.0.0.1:1"))).unwrap();
        let id = first.framework_id.clone();
        assert_eq!(m.framework_api_url(&id).unwrap().as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(m.state().frameworks[0].api_url.as_deref(), Some("http://127.0.0.1:1"));
        // A restarted scheduler announces its new port.
        drop(first);
        let again = m.subscribe(sub(Some(id.clone()), Some("http://127.0.0.1:2"))).unwrap();
        assert_eq!(m.framework_api_url(&id).unwrap().as_deref(), Some("http://127.0.0.1:2"));
        drop(again);
        let m2 = Master::open(store, MasterConfig::default(), "t".into()).unwrap();
        assert_eq!(m2.framework_api_url(&id).unwrap().as_deref(), Some("http://127.0.0.1:2"));
        assert!(matches!(m2.framework_api_url("fw-nope"), Err(Error::NotFound { what: "framework", .. })));
    }
}
