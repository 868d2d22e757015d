//! The DRF allocator: decides which framework is offered each agent's free
//! resources, by weighted dominant resource fairness. Pure and sans-IO: the
//! master feeds it agents, frameworks and its ledger, and passes the time in.
//!
//! # How the master drives it
//!
//! - Agents: [`Allocator::add_agent`] (all of `total` starts free and
//!   unreserved), [`Allocator::update_agent`] whenever the master's ledger
//!   changes (what on the agent is free: neither offered nor used),
//!   [`Allocator::set_agent_reachable`], [`Allocator::remove_agent`].
//! - Frameworks: [`Allocator::add_framework`], [`Allocator::remove_framework`],
//!   [`Allocator::suppress`], [`Allocator::revive`] (which also clears the
//!   framework's decline filters), [`Allocator::decline`].
//! - Each framework's allocation is what it holds: offered plus used.
//!   [`Allocator::allocate`] counts what it offers by itself, and takes it out
//!   of the agent's free view. Launching tasks from an offer changes nothing
//!   (offered becomes used). When the unused part of an offer comes back
//!   (declined, rescinded, expired), call [`Allocator::recover`]: it leaves
//!   the framework's allocation and is free on the agent again. When a task
//!   ends, call [`Allocator::remove_allocation`] and tell the agent's new free
//!   view with [`Allocator::update_agent`]. [`Allocator::add_allocation`]
//!   counts resources the allocator did not offer (a master failing over and
//!   re-learning running tasks).
//!
//! Calls that name an agent or a framework return whether it was known; an
//! unknown id changes nothing (the master keeps its own registry).
//!
//! # One cycle
//!
//! [`Allocator::allocate`] visits every reachable agent with something free,
//! in an order shuffled each cycle by a seeded generator (fair over time,
//! deterministic for tests). On each agent, each role's reserved bundles go
//! to that role's framework with the lowest weighted dominant share; then the
//! unreserved free resources go to the lowest-share framework of all. Only
//! frameworks that are neither suppressed nor filtering that agent take
//! part. A framework's dominant share is the largest of its cpus, mem and
//! disk (ROOT plus MOUNT) over the reachable cluster's totals, divided by its
//! weight; ties go to the smaller framework id. Offered resources count at
//! once, so the next agent sees the updated shares.
//!
//! Shares are kept in ordered sets keyed by (share, id rank), one for all
//! frameworks and one per role, updated on every grant; finding a framework
//! for an agent walks the set from the lowest share and skips only the
//! frameworks that filter that agent. A cycle costs about
//! O(agents × log frameworks + filters), never agents × frameworks.

use crate::resources::{AgentId, Attributes, FrameworkId, ReservedOffer, Resources};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Settings of an [`Allocator`].
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorConfig {
    /// How long a declined agent is filtered for a framework when the
    /// decline names no duration, in milliseconds.
    pub default_filter_ms: u64,
    /// Unreserved free resources are offered only when they hold at least
    /// this many cpus or at least [`Self::min_allocatable_mem`] MiB.
    pub min_allocatable_cpus: f64,
    /// See [`Self::min_allocatable_cpus`]; MiB.
    pub min_allocatable_mem: u64,
    /// Seeds the agent-order shuffle; the same seed and the same calls give
    /// the same allocations.
    pub seed: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig { default_filter_ms: 5_000, min_allocatable_cpus: 0.01, min_allocatable_mem: 32, seed: 0 }
    }
}

/// What one framework is offered on one agent in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    /// Unreserved free resources of the agent (empty when the framework got
    /// only reserved bundles here).
    pub unreserved: Resources,
    /// Reserved bundles of the framework's role on the agent.
    pub reserved: Vec<ReservedOffer>,
}

/// The cpus, mem and disk that a share is computed from; disk counts ROOT and
/// MOUNT disks together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Scalars {
    cpus: f64,
    mem: f64,
    disk: f64,
}

impl Scalars {
    fn of(r: &Resources) -> Self {
        Scalars { cpus: r.cpus, mem: r.mem as f64, disk: r.total_disk() as f64 }
    }
    fn add(&mut self, o: &Scalars) {
        self.cpus += o.cpus;
        self.mem += o.mem;
        self.disk += o.disk;
    }
    /// Subtracts, flooring at zero (and snapping float dust to zero).
    fn sub(&mut self, o: &Scalars) {
        fn floor(x: f64) -> f64 {
            if x < 1e-9 {
                0.0
            } else {
                x
            }
        }
        self.cpus = floor(self.cpus - o.cpus);
        self.mem = floor(self.mem - o.mem);
        self.disk = floor(self.disk - o.disk);
    }
    fn to_resources(self) -> Resources {
        Resources::new(self.cpus, self.mem.round() as u64, self.disk.round() as u64)
    }
}

/// Weighted dominant share of `held` in a cluster of `total`.
fn dominant_share(held: &Scalars, total: &Scalars, weight: f64) -> f64 {
    let mut s: f64 = 0.0;
    if total.cpus > 0.0 {
        s = s.max(held.cpus / total.cpus);
    }
    if total.mem > 0.0 {
        s = s.max(held.mem / total.mem);
    }
    if total.disk > 0.0 {
        s = s.max(held.disk / total.disk);
    }
    s / weight
}

#[derive(Debug, Clone)]
struct AgentState {
    id: AgentId,
    total: Resources,
    attributes: Attributes,
    reachable: bool,
    /// Unreserved resources neither offered nor used.
    free: Resources,
    /// Reserved bundles neither offered nor fully used, with their role.
    reserved: Vec<(usize, ReservedOffer)>,
    /// Decline filters on this agent: framework slot → expiry (exclusive).
    filters: HashMap<usize, u64>,
}

#[derive(Debug, Clone)]
struct FrameworkState {
    id: FrameworkId,
    role: usize,
    weight: f64,
    suppressed: bool,
    allocated: Scalars,
    /// Agents this framework filters (mirror of the agents' `filters`).
    filtered_agents: HashSet<usize>,
}

/// Slots, so hot paths index vectors instead of hashing string ids; freed
/// slots are reused after every reference to them is cleared.
#[derive(Debug, Clone)]
struct Slab<T> {
    items: Vec<Option<T>>,
    vacant: Vec<usize>,
    index: HashMap<String, usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { items: Vec::new(), vacant: Vec::new(), index: HashMap::new() }
    }
}

impl<T> Slab<T> {
    fn slot(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
    fn get(&self, slot: usize) -> &T {
        self.items[slot].as_ref().expect("live slot")
    }
    fn get_mut(&mut self, slot: usize) -> &mut T {
        self.items[slot].as_mut().expect("live slot")
    }
    fn insert(&mut self, id: String, item: T) -> usize {
        let slot = match self.vacant.pop() {
            Some(s) => {
                self.items[s] = Some(item);
                s
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        };
        self.index.insert(id, slot);
        slot
    }
    fn remove(&mut self, id: &str) -> Option<(usize, T)> {
        let slot = self.index.remove(id)?;
        let item = self.items[slot].take().expect("live slot");
        self.vacant.push(slot);
        Some((slot, item))
    }
    fn live(&self) -> impl Iterator<Item = (usize, &T)> {
        self.items.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// The DRF allocator. Cheap to clone (the benchmark clones it per cycle).
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: Slab<AgentState>,
    frameworks: Slab<FrameworkState>,
    /// Interned role names; a role's index never changes.
    roles: Vec<String>,
    role_index: HashMap<String, usize>,
    /// State of the agent-order shuffle (splitmix64).
    rng: u64,
}

/// Key of a framework in the share order: (share bits, rank of its id, slot).
/// Non-negative finite f64s order like their bit patterns.
type ShareKey = (u64, u32, u32);

/// The share order for one cycle: all active frameworks, and per role.
struct ShareOrder {
    all: BTreeSet<ShareKey>,
    by_role: Vec<BTreeSet<ShareKey>>,
    /// Current key per framework slot, for active frameworks.
    keys: Vec<Option<ShareKey>>,
}

impl ShareOrder {
    fn insert(&mut self, slot: usize, role: usize, key: ShareKey) {
        self.all.insert(key);
        self.by_role[role].insert(key);
        self.keys[slot] = Some(key);
    }
    /// Re-keys `slot` after its allocation changed.
    fn update(&mut self, slot: usize, fw: &FrameworkState, total: &Scalars) {
        if let Some(old) = self.keys[slot] {
            self.all.remove(&old);
            self.by_role[fw.role].remove(&old);
            let share = dominant_share(&fw.allocated, total, fw.weight);
            self.insert(slot, fw.role, (share.to_bits(), old.1, old.2));
        }
    }
}

/// Whether unreserved `r` is worth offering under `config`'s minimums.
fn allocatable(config: &AllocatorConfig, r: &Resources) -> bool {
    !r.is_empty() && (r.cpus >= config.min_allocatable_cpus || r.mem >= config.min_allocatable_mem)
}

/// The lowest-share framework in `set` that does not filter `agent` at
/// `now_ms`. Expired filters met on the way are noted for removal.
fn pick(set: &BTreeSet<ShareKey>, agent: &AgentState, now_ms: u64, expired: &mut Vec<usize>) -> Option<usize> {
    if agent.filters.is_empty() {
        return set.first().map(|k| k.2 as usize);
    }
    for k in set {
        let slot = k.2 as usize;
        match agent.filters.get(&slot) {
            Some(&until) if now_ms < until => continue,
            Some(_) => {
                expired.push(slot);
                return Some(slot);
            }
            None => return Some(slot),
        }
    }
    None
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        let rng = config.seed;
        Allocator {
            config,
            agents: Slab::default(),
            frameworks: Slab::default(),
            roles: Vec::new(),
            role_index: HashMap::new(),
            rng,
        }
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    fn role(&mut self, name: &str) -> usize {
        if let Some(&r) = self.role_index.get(name) {
            return r;
        }
        self.roles.push(name.to_string());
        self.role_index.insert(name.to_string(), self.roles.len() - 1);
        self.roles.len() - 1
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    // ---- agents ----

    /// Adds an agent, reachable, with all of `total` free and unreserved
    /// (tell its reservations and usage with [`Self::update_agent`]). Adding
    /// a known agent replaces its total and attributes and keeps the rest.
    pub fn add_agent(&mut self, id: impl Into<AgentId>, total: Resources, attributes: Attributes) {
        let id = id.into();
        if let Some(slot) = self.agents.slot(&id) {
            let a = self.agents.get_mut(slot);
            a.total = total;
            a.attributes = attributes;
            return;
        }
        let state = AgentState {
            id: id.clone(),
            free: total.clone(),
            total,
            attributes,
            reachable: true,
            reserved: Vec::new(),
            filters: HashMap::new(),
        };
        self.agents.insert(id, state);
    }

    /// Forgets an agent and every filter on it. What frameworks hold there
    /// stays in their allocations until the master removes it with
    /// [`Self::remove_allocation`].
    pub fn remove_agent(&mut self, id: &str) -> bool {
        let Some((slot, agent)) = self.agents.remove(id) else {
            return false;
        };
        for fw in agent.filters.keys() {
            if let Some(f) = self.frameworks.items[*fw].as_mut() {
                f.filtered_agents.remove(&slot);
            }
        }
        true
    }

    /// An unreachable agent is offered nothing, reserved or not, and does not
    /// count in the cluster totals that shares are computed against.
    pub fn set_agent_reachable(&mut self, id: &str, reachable: bool) -> bool {
        let Some(slot) = self.agents.slot(id) else {
            return false;
        };
        self.agents.get_mut(slot).reachable = reachable;
        true
    }

    /// Replaces what the allocator sees free on an agent: unreserved
    /// resources and reserved bundles (with their role) that are neither
    /// offered nor used.
    pub fn update_agent(
        &mut self,
        id: &str,
        unreserved_free: Resources,
        reserved: Vec<(String, ReservedOffer)>,
    ) -> bool {
        let Some(slot) = self.agents.slot(id) else {
            return false;
        };
        let reserved: Vec<(usize, ReservedOffer)> =
            reserved.into_iter().map(|(role, bundle)| (self.role(&role), bundle)).collect();
        let a = self.agents.get_mut(slot);
        a.free = unreserved_free;
        a.reserved = reserved;
        true
    }

    /// The agent's unreserved free resources, as the allocator sees them.
    pub fn agent_free(&self, id: &str) -> Option<&Resources> {
        self.agents.slot(id).map(|s| &self.agents.get(s).free)
    }

    /// The agent's reserved bundles not offered nor fully used, with roles.
    pub fn agent_reserved(&self, id: &str) -> Option<Vec<(&str, &ReservedOffer)>> {
        self.agents
            .slot(id)
            .map(|s| self.agents.get(s).reserved.iter().map(|(r, b)| (self.roles[*r].as_str(), b)).collect())
    }

    pub fn agent_attributes(&self, id: &str) -> Option<&Attributes> {
        self.agents.slot(id).map(|s| &self.agents.get(s).attributes)
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    // ---- frameworks ----

    /// Adds a framework of `role`; a weight of 2 earns twice the share of a
    /// weight of 1. A weight that is not finite and positive counts as 1.
    /// Adding a known framework updates its role and weight and keeps its
    /// allocation, filters and suppression.
    pub fn add_framework(&mut self, id: impl Into<FrameworkId>, role: impl AsRef<str>, weight: f64) {
        let id = id.into();
        let weight = if weight.is_finite() && weight > 0.0 { weight } else { 1.0 };
        let role = self.role(role.as_ref());
        if let Some(slot) = self.frameworks.slot(&id) {
            let f = self.frameworks.get_mut(slot);
            f.role = role;
            f.weight = weight;
            return;
        }
        let state = FrameworkState {
            id: id.clone(),
            role,
            weight,
            suppressed: false,
            allocated: Scalars::default(),
            filtered_agents: HashSet::new(),
        };
        self.frameworks.insert(id, state);
    }

    /// Forgets a framework, its allocation and its filters.
    pub fn remove_framework(&mut self, id: &str) -> bool {
        let Some((slot, fw)) = self.frameworks.remove(id) else {
            return false;
        };
        for a in fw.filtered_agents {
            if let Some(agent) = self.agents.items[a].as_mut() {
                agent.filters.remove(&slot);
            }
        }
        true
    }

    /// The framework gets no offers until [`Self::revive`].
    pub fn suppress(&mut self, id: &str) -> bool {
        let Some(slot) = self.frameworks.slot(id) else {
            return false;
        };
        self.frameworks.get_mut(slot).suppressed = true;
        true
    }

    /// The framework gets offers again, from every agent: its filters go.
    pub fn revive(&mut self, id: &str) -> bool {
        let Some(slot) = self.frameworks.slot(id) else {
            return false;
        };
        let fw = self.frameworks.get_mut(slot);
        fw.suppressed = false;
        for a in fw.filtered_agents.drain() {
            if let Some(agent) = self.agents.items[a].as_mut() {
                agent.filters.remove(&slot);
            }
        }
        true
    }

    /// The framework declined an offer of `agent`: it is not offered that
    /// agent again before `now_ms + filter_ms` (default
    /// [`AllocatorConfig::default_filter_ms`]); a zero filter sets none.
    /// The declined resources themselves come back with [`Self::recover`].
    pub fn decline(&mut self, framework: &str, agent: &str, filter_ms: Option<u64>, now_ms: u64) -> bool {
        let Some(f) = self.frameworks.slot(framework) else {
            return false;
        };
        let Some(a) = self.agents.slot(agent) else {
            return false;
        };
        let ms = filter_ms.unwrap_or(self.config.default_filter_ms);
        if ms == 0 {
            return true;
        }
        let until = now_ms.saturating_add(ms);
        let filters = &mut self.agents.get_mut(a).filters;
        let e = filters.entry(f).or_insert(until);
        *e = (*e).max(until);
        self.frameworks.get_mut(f).filtered_agents.insert(a);
        true
    }

    /// Whether `framework` filters `agent` at `now_ms`.
    pub fn is_filtered(&self, framework: &str, agent: &str, now_ms: u64) -> bool {
        match (self.frameworks.slot(framework), self.agents.slot(agent)) {
            (Some(f), Some(a)) => self.agents.get(a).filters.get(&f).is_some_and(|&until| now_ms < until),
            _ => false,
        }
    }

    pub fn framework_count(&self) -> usize {
        self.frameworks.len()
    }

    // ---- allocations ----

    /// Counts resources the allocator did not offer in the framework's
    /// allocation (tasks re-learned after a master failover).
    pub fn add_allocation(&mut self, framework: &str, resources: &Resources) -> bool {
        let Some(f) = self.frameworks.slot(framework) else {
            return false;
        };
        self.frameworks.get_mut(f).allocated.add(&Scalars::of(resources));
        true
    }

    /// Takes resources out of the framework's allocation (its task ended).
    /// Does not make them free on any agent: see [`Self::update_agent`].
    pub fn remove_allocation(&mut self, framework: &str, resources: &Resources) -> bool {
        let Some(f) = self.frameworks.slot(framework) else {
            return false;
        };
        self.frameworks.get_mut(f).allocated.sub(&Scalars::of(resources));
        true
    }

    /// The unused part of an offer came back (declined, rescinded, expired):
    /// it leaves the framework's allocation and is free on the agent again.
    /// Reserved bundles merge with the agent's bundle of the same
    /// reservation. An unknown agent only shrinks the allocation.
    pub fn recover(
        &mut self,
        framework: &str,
        agent: &str,
        unreserved: &Resources,
        reserved: &[ReservedOffer],
    ) -> bool {
        if let Some(f) = self.frameworks.slot(framework) {
            let fw = self.frameworks.get_mut(f);
            fw.allocated.sub(&Scalars::of(unreserved));
            for b in reserved {
                fw.allocated.sub(&Scalars::of(&b.free));
            }
        }
        let Some(a) = self.agents.slot(agent) else {
            return false;
        };
        let roles: Vec<usize> = reserved.iter().map(|b| self.role(&b.reservation.role)).collect();
        let st = self.agents.get_mut(a);
        st.free.add(unreserved);
        for (bundle, role) in reserved.iter().zip(roles) {
            match st.reserved.iter_mut().find(|(_, b)| b.reservation.id == bundle.reservation.id) {
                Some((_, have)) => have.free.add(&bundle.free),
                None => st.reserved.push((role, bundle.clone())),
            }
        }
        self.frameworks.slot(framework).is_some()
    }

    /// What the framework holds (offered plus used): cpus, mem, and disk
    /// counting ROOT and MOUNT disks together.
    pub fn allocation(&self, framework: &str) -> Option<Resources> {
        self.frameworks.slot(framework).map(|f| self.frameworks.get(f).allocated.to_resources())
    }

    /// Totals of the reachable agents, which shares are computed against.
    fn cluster_total(&self) -> Scalars {
        let mut t = Scalars::default();
        for (_, a) in self.agents.live() {
            if a.reachable {
                t.add(&Scalars::of(&a.total));
            }
        }
        t
    }

    /// Cluster totals of the reachable agents (cpus, mem, ROOT+MOUNT disk).
    pub fn cluster_resources(&self) -> Resources {
        self.cluster_total().to_resources()
    }

    /// Every framework's weighted dominant share, by framework id.
    pub fn shares(&self) -> Vec<(FrameworkId, f64)> {
        let total = self.cluster_total();
        let mut out: Vec<(FrameworkId, f64)> = self
            .frameworks
            .live()
            .map(|(_, f)| (f.id.clone(), dominant_share(&f.allocated, &total, f.weight)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// One framework's weighted dominant share.
    pub fn share(&self, framework: &str) -> Option<f64> {
        let f = self.frameworks.slot(framework)?;
        let fw = self.frameworks.get(f);
        Some(dominant_share(&fw.allocated, &self.cluster_total(), fw.weight))
    }

    /// The share order of the active (not suppressed) frameworks.
    fn share_order(&self, total: &Scalars) -> ShareOrder {
        let mut active: Vec<(usize, &FrameworkState)> = self.frameworks.live().filter(|(_, f)| !f.suppressed).collect();
        active.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        let mut order = ShareOrder {
            all: BTreeSet::new(),
            by_role: vec![BTreeSet::new(); self.roles.len()],
            keys: vec![None; self.frameworks.items.len()],
        };
        for (rank, (slot, f)) in active.into_iter().enumerate() {
            let share = dominant_share(&f.allocated, total, f.weight);
            order.insert(slot, f.role, (share.to_bits(), rank as u32, slot as u32));
        }
        order
    }

    /// Runs one allocation cycle at `now_ms` and returns the offers to make:
    /// at most one [`Allocation`] per (framework, agent). What is offered is
    /// no longer free and already counts in the framework's allocation.
    pub fn allocate(&mut self, now_ms: u64) -> Vec<Allocation> {
        let total = self.cluster_total();
        let mut order = self.share_order(&total);
        let mut agents: Vec<usize> = self
            .agents
            .live()
            .filter(|(_, a)| a.reachable && (!a.reserved.is_empty() || allocatable(&self.config, &a.free)))
            .map(|(s, _)| s)
            .collect();
        for i in (1..agents.len()).rev() {
            let j = (self.next_random() % (i as u64 + 1)) as usize;
            agents.swap(i, j);
        }

        let mut out: Vec<Allocation> = Vec::with_capacity(agents.len());
        let mut expired: Vec<(usize, usize)> = Vec::new();
        let mut expired_here: Vec<usize> = Vec::new();
        // (framework slot, index in `out`) of this agent's allocations.
        let mut granted: Vec<(usize, usize)> = Vec::new();

        for a in agents {
            let agent = self.agents.items[a].as_mut().expect("live agent");
            granted.clear();
            expired_here.clear();

            if !agent.reserved.is_empty() {
                let mut bundles = std::mem::take(&mut agent.reserved);
                bundles.sort_by_key(|(role, _)| *role);
                let mut kept = Vec::new();
                let mut rest = bundles.into_iter().peekable();
                while let Some((role, first)) = rest.next() {
                    let mut group = vec![first];
                    while let Some((_, b)) = rest.next_if(|(r, _)| *r == role) {
                        group.push(b);
                    }
                    group.retain(|b| !b.free.is_empty());
                    if group.is_empty() {
                        continue;
                    }
                    let Some(f) = pick(&order.by_role[role], agent, now_ms, &mut expired_here) else {
                        kept.extend(group.into_iter().map(|b| (role, b)));
                        continue;
                    };
                    let fw = self.frameworks.items[f].as_mut().expect("live framework");
                    for b in &group {
                        fw.allocated.add(&Scalars::of(&b.free));
                    }
                    order.update(f, fw, &total);
                    match granted.iter().find(|(g, _)| *g == f) {
                        Some(&(_, i)) => out[i].reserved.extend(group),
                        None => {
                            granted.push((f, out.len()));
                            out.push(Allocation {
                                framework_id: fw.id.clone(),
                                agent_id: agent.id.clone(),
                                unreserved: Resources::default(),
                                reserved: group,
                            });
                        }
                    }
                }
                agent.reserved = kept;
            }

            if allocatable(&self.config, &agent.free) {
                if let Some(f) = pick(&order.all, agent, now_ms, &mut expired_here) {
                    let free = std::mem::take(&mut agent.free);
                    let fw = self.frameworks.items[f].as_mut().expect("live framework");
                    fw.allocated.add(&Scalars::of(&free));
                    order.update(f, fw, &total);
                    match granted.iter().find(|(g, _)| *g == f) {
                        Some(&(_, i)) => out[i].unreserved = free,
                        None => out.push(Allocation {
                            framework_id: fw.id.clone(),
                            agent_id: agent.id.clone(),
                            unreserved: free,
                            reserved: Vec::new(),
                        }),
                    }
                }
            }
            expired.extend(expired_here.iter().map(|&f| (a, f)));
        }

        for (a, f) in expired {
            if let Some(agent) = self.agents.items[a].as_mut() {
                if agent.filters.get(&f).is_some_and(|&until| until <= now_ms) {
                    agent.filters.remove(&f);
                    if let Some(fw) = self.frameworks.items[f].as_mut() {
                        fw.filtered_agents.remove(&a);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Reservation;
    use std::collections::BTreeMap;

    const GIB: u64 = 1024;

    fn alloc() -> Allocator {
        Allocator::new(AllocatorConfig { default_filter_ms: 1_000, seed: 7, ..Default::default() })
    }

    fn bundle(id: &str, role: &str, r: Resources) -> ReservedOffer {
        ReservedOffer {
            reservation: Reservation {
                id: id.into(),
                role: role.into(),
                resources: r.clone(),
                labels: BTreeMap::new(),
                volumes: Vec::new(),
            },
            free: r,
        }
    }

    fn frameworks_of(out: &[Allocation]) -> Vec<&str> {
        out.iter().map(|a| a.framework_id.as_str()).collect()
    }

    #[test]
    fn lowest_share_wins() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(10.0, 10 * GIB, 100), Attributes::new());
        al.add_framework("a", "r", 1.0);
        al.add_framework("b", "r", 1.0);
        assert!(al.add_allocation("a", &Resources::new(4.0, 0, 0)));
        assert!(al.add_allocation("b", &Resources::new(1.0, 0, 0)));
        let out = al.allocate(0);
        assert_eq!(frameworks_of(&out), ["b"]);
        assert_eq!(out[0].unreserved, Resources::new(10.0, 10 * GIB, 100));
        assert_eq!(al.allocation("b").unwrap().cpus, 11.0);
    }

    #[test]
    fn dominant_resource_decides() {
        // a holds little cpu but much memory: its dominant share is mem.
        let mut al = alloc();
        al.add_agent("a1", Resources::new(10.0, 10 * GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        al.add_framework("b", "r", 1.0);
        assert!(al.add_allocation("a", &Resources::new(1.0, 6 * GIB, 0)));
        assert!(al.add_allocation("b", &Resources::new(5.0, 0, 0)));
        assert_eq!(al.shares(), vec![("a".to_string(), 0.6), ("b".to_string(), 0.5)]);
        assert_eq!(frameworks_of(&al.allocate(0)), ["b"]);
    }

    #[test]
    fn ties_go_to_smaller_id() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("zeta", "r", 1.0);
        al.add_framework("alpha", "r", 1.0);
        assert_eq!(frameworks_of(&al.allocate(0)), ["alpha"]);
    }

    #[test]
    fn weights_scale_shares() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(8.0, 8 * GIB, 0), Attributes::new());
        al.add_framework("a", "r", 2.0);
        al.add_framework("b", "r", 1.0);
        // a: 4/8 / 2 = 0.25; b: 3/8 = 0.375.
        assert!(al.add_allocation("a", &Resources::new(4.0, 0, 0)));
        assert!(al.add_allocation("b", &Resources::new(3.0, 0, 0)));
        assert_eq!(al.share("a"), Some(0.25));
        assert_eq!(frameworks_of(&al.allocate(0)), ["a"]);
    }

    #[test]
    fn shares_update_within_a_cycle() {
        let mut al = alloc();
        for i in 0..4 {
            al.add_agent(format!("a{i}"), Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        }
        al.add_framework("a", "r", 1.0);
        al.add_framework("b", "r", 1.0);
        let out = al.allocate(0);
        assert_eq!(out.len(), 4);
        let a = out.iter().filter(|o| o.framework_id == "a").count();
        assert_eq!(a, 2, "each framework gets half the agents: {out:?}");
        assert_eq!(al.shares(), vec![("a".to_string(), 0.5), ("b".to_string(), 0.5)]);
        // Offered resources are no longer free.
        assert!(al.allocate(1).is_empty());
    }

    /// The example of the DRF paper (Ghodsi et al., NSDI 2011): 9 cpus and
    /// 18 GiB; A runs tasks of <1 cpu, 4 GiB>, B of <3 cpus, 1 GiB>. Each
    /// framework launches one task per offer and returns the rest.
    #[test]
    fn classic_drf_example() {
        let mut al = alloc();
        al.add_agent("s1", Resources::new(9.0, 18 * GIB, 0), Attributes::new());
        al.add_framework("A", "a", 1.0);
        al.add_framework("B", "b", 1.0);
        let demand = |fw: &str| match fw {
            "A" => Resources::new(1.0, 4 * GIB, 0),
            _ => Resources::new(3.0, GIB, 0),
        };
        let mut tasks: BTreeMap<String, u32> = BTreeMap::new();
        let mut order = Vec::new();
        for now in 0..100u64 {
            let out = al.allocate(now);
            if out.is_empty() {
                break;
            }
            for o in out {
                let want = demand(&o.framework_id);
                if o.unreserved.contains(&want) {
                    *tasks.entry(o.framework_id.clone()).or_default() += 1;
                    order.push(o.framework_id.clone());
                    assert!(al.recover(&o.framework_id, &o.agent_id, &o.unreserved.minus(&want), &[],));
                } else {
                    assert!(al.recover(&o.framework_id, &o.agent_id, &o.unreserved, &[]));
                    assert!(al.decline(&o.framework_id, &o.agent_id, Some(3_600_000), now));
                }
            }
        }
        assert_eq!(tasks.get("A"), Some(&3));
        assert_eq!(tasks.get("B"), Some(&2));
        assert_eq!(order, ["A", "B", "A", "B", "A"]);
        assert_eq!(al.allocation("A").unwrap(), Resources::new(3.0, 12 * GIB, 0));
        assert_eq!(al.allocation("B").unwrap(), Resources::new(6.0, 2 * GIB, 0));
        let shares = al.shares();
        assert!((shares[0].1 - 2.0 / 3.0).abs() < 1e-12 && (shares[1].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(al.agent_free("s1").unwrap(), &Resources::new(0.0, 4 * GIB, 0));
    }

    #[test]
    fn suppressed_frameworks_get_nothing_until_revived() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        assert!(al.suppress("a"));
        assert!(al.allocate(0).is_empty());
        assert!(al.revive("a"));
        assert_eq!(frameworks_of(&al.allocate(1)), ["a"]);
    }

    #[test]
    fn revive_clears_filters() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        assert!(al.decline("a", "a1", Some(60_000), 0));
        assert!(al.allocate(1).is_empty());
        assert!(al.revive("a"));
        assert!(!al.is_filtered("a", "a1", 1));
        assert_eq!(frameworks_of(&al.allocate(2)), ["a"]);
    }

    #[test]
    fn decline_filters_until_expiry() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        al.add_framework("b", "r", 1.0);
        let out = al.allocate(0);
        assert_eq!(frameworks_of(&out), ["a"]);
        assert!(al.recover("a", "a1", &out[0].unreserved, &[]));
        assert!(al.decline("a", "a1", None, 100)); // default: 1000 ms
        assert!(al.add_allocation("b", &Resources::new(0.5, 0, 0)));
        // b holds more, but a filters a1 until 1100.
        let out = al.allocate(500);
        assert_eq!(frameworks_of(&out), ["b"]);
        assert!(al.recover("b", "a1", &out[0].unreserved, &[]));
        assert!(al.is_filtered("a", "a1", 1099));
        assert!(!al.is_filtered("a", "a1", 1100));
        assert_eq!(frameworks_of(&al.allocate(1100)), ["a"]);
        // The expired filter was dropped.
        assert!(al.agents.get(0).filters.is_empty());
        assert!(al.frameworks.get(0).filtered_agents.is_empty());
    }

    #[test]
    fn zero_filter_sets_none() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        assert!(al.decline("a", "a1", Some(0), 0));
        assert!(!al.is_filtered("a", "a1", 0));
        assert_eq!(frameworks_of(&al.allocate(0)), ["a"]);
    }

    #[test]
    fn all_filtered_leaves_agent_free() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        al.add_framework("b", "r", 1.0);
        assert!(al.decline("a", "a1", Some(10), 0));
        assert!(al.decline("b", "a1", Some(10), 0));
        assert!(al.allocate(5).is_empty());
        assert_eq!(al.agent_free("a1").unwrap(), &Resources::new(1.0, GIB, 0));
    }

    #[test]
    fn reserved_bundles_go_only_to_their_role() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(8.0, 8 * GIB, 1000), Attributes::new());
        al.add_framework("a", "other", 1.0);
        al.add_framework("b", "broker", 1.0);
        let res = bundle("broker-0", "broker", Resources::new(2.0, 2 * GIB, 500));
        assert!(al.update_agent("a1", Resources::new(6.0, 6 * GIB, 500), vec![("broker".into(), res.clone())],));
        assert!(al.add_allocation("b", &Resources::new(1.0, 0, 0)));
        let mut out = al.allocate(0);
        out.sort_by(|x, y| x.framework_id.cmp(&y.framework_id));
        assert_eq!(out.len(), 2);
        // b gets its role's reservation; a (lower share then) the unreserved.
        assert_eq!(out[0].framework_id, "a");
        assert!(out[0].reserved.is_empty());
        assert_eq!(out[0].unreserved, Resources::new(6.0, 6 * GIB, 500));
        assert_eq!(out[1].framework_id, "b");
        assert_eq!(out[1].reserved, vec![res]);
        assert!(out[1].unreserved.is_empty());
        assert_eq!(al.allocation("b").unwrap(), Resources::new(3.0, 2 * GIB, 500));
    }

    #[test]
    fn reserved_and_unreserved_merge_into_one_allocation() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_framework("a", "broker", 1.0);
        let res = bundle("r1", "broker", Resources::new(1.0, GIB, 0));
        assert!(al.update_agent("a1", Resources::new(3.0, 3 * GIB, 0), vec![("broker".into(), res.clone())],));
        let out = al.allocate(0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reserved, vec![res.clone()]);
        assert_eq!(out[0].unreserved, Resources::new(3.0, 3 * GIB, 0));
        // Recovered reserved bundles are free again, for the role only.
        assert!(al.recover("a", "a1", &Resources::default(), std::slice::from_ref(&res)));
        assert_eq!(al.agent_reserved("a1").unwrap(), vec![("broker", &res)]);
        assert_eq!(al.allocation("a").unwrap(), Resources::new(3.0, 3 * GIB, 0));
    }

    #[test]
    fn reserved_bundles_wait_without_a_framework_of_their_role() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_framework("a", "other", 1.0);
        let res = bundle("r1", "broker", Resources::new(4.0, 4 * GIB, 0));
        assert!(al.update_agent("a1", Resources::default(), vec![("broker".into(), res)]));
        assert!(al.allocate(0).is_empty());
        assert_eq!(al.agent_reserved("a1").unwrap().len(), 1);
        al.add_framework("k", "broker", 1.0);
        assert_eq!(frameworks_of(&al.allocate(1)), ["k"]);
        assert!(al.agent_reserved("a1").unwrap().is_empty());
    }

    #[test]
    fn unreachable_agents_are_offered_nothing() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_agent("a2", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_framework("k", "broker", 1.0);
        let res = bundle("r1", "broker", Resources::new(1.0, GIB, 0));
        assert!(al.update_agent("a1", Resources::new(3.0, 3 * GIB, 0), vec![("broker".into(), res)],));
        assert!(al.set_agent_reachable("a1", false));
        let out = al.allocate(0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].agent_id, "a2");
        // Shares count reachable agents only.
        assert_eq!(al.share("k"), Some(1.0));
        assert!(al.set_agent_reachable("a1", true));
        let out = al.allocate(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].agent_id, "a1");
        assert_eq!(out[0].reserved.len(), 1);
    }

    #[test]
    fn tiny_leftovers_are_not_offered() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        assert!(al.update_agent("a1", Resources::new(0.001, 16, 100), vec![]));
        assert!(al.allocate(0).is_empty());
        assert!(al.update_agent("a1", Resources::new(0.0, 64, 0), vec![]));
        assert_eq!(al.allocate(1).len(), 1);
    }

    #[test]
    fn same_seed_same_allocations_and_order_rotates() {
        let build = || {
            let mut al = alloc();
            for i in 0..50 {
                al.add_agent(format!("a{i:02}"), Resources::new(1.0, GIB, 0), Attributes::new());
            }
            for i in 0..5 {
                al.add_framework(format!("f{i}"), "r", 1.0);
            }
            al
        };
        let (mut x, mut y) = (build(), build());
        let mut firsts = BTreeSet::new();
        for now in 0..5 {
            let (ox, oy) = (x.allocate(now), y.allocate(now));
            assert_eq!(ox, oy);
            assert_eq!(ox.len(), 50);
            firsts.insert(ox[0].agent_id.clone());
            for o in &ox {
                assert!(x.recover(&o.framework_id, &o.agent_id, &o.unreserved, &[]));
                assert!(y.recover(&o.framework_id, &o.agent_id, &o.unreserved, &[]));
            }
        }
        assert!(firsts.len() > 1, "agent order never changed: {firsts:?}");
        // Each cycle spreads 50 agents evenly over 5 frameworks.
        assert!(x.shares().iter().all(|(_, s)| *s == 0.0));
    }

    #[test]
    fn removing_clears_state_and_unknown_ids_fail() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(1.0, GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        assert!(al.decline("a", "a1", Some(100), 0));
        assert!(al.remove_framework("a"));
        assert!(al.agents.get(0).filters.is_empty());
        al.add_framework("b", "r", 1.0); // reuses the slot
        assert!(!al.is_filtered("b", "a1", 0));
        assert_eq!(frameworks_of(&al.allocate(0)), ["b"]);
        assert!(al.remove_agent("a1"));
        assert!(al.allocate(1).is_empty());
        assert!(!al.suppress("nope"));
        assert!(!al.remove_agent("a1"));
        assert!(!al.decline("b", "a1", None, 0));
    }

    #[test]
    fn update_agent_replaces_the_free_view() {
        let mut al = alloc();
        al.add_agent("a1", Resources::new(4.0, 4 * GIB, 0), Attributes::new());
        al.add_framework("a", "r", 1.0);
        let out = al.allocate(0);
        assert_eq!(out[0].unreserved.cpus, 4.0);
        // The framework launched 3 cpus and declined the rest; a task ended.
        assert!(al.recover("a", "a1", &Resources::new(1.0, GIB, 0), &[]));
        assert!(al.remove_allocation("a", &Resources::new(1.0, GIB, 0)));
        assert!(al.update_agent("a1", Resources::new(2.0, 2 * GIB, 0), vec![]));
        assert_eq!(al.allocation("a").unwrap(), Resources::new(2.0, 2 * GIB, 0));
        assert_eq!(al.allocate(1)[0].unreserved, Resources::new(2.0, 2 * GIB, 0));
    }
}
