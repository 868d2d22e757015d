//! An in-process simulation of one service scheduler against simulated
//! agents: the real decisions ([`crate::scheduler::service::decide`]) on a
//! clock and ids the test controls, and the master's real accept checks
//! ([`crate::master::ledger::apply_operations`]) on each agent's ledger, so
//! every accept the scheduler sends is validated as the master would. No
//! process, no network, no sleep: send offers, expect a launch; fail a
//! task, expect a recovery. The scenarios live in `scenarios/` and run
//! with `cargo test -p smack-operator sim` (all of them in well under a
//! second).

use crate::master::ledger::{apply_operations, AgentLedger, OfferedPool};
use crate::protocol::Accept;
use crate::resources::{
    AgentId, Attributes, Offer, Operation, PortRange, PortSet, Resources, TaskId, TaskInfo, TaskState, TaskStatus,
};
use crate::scheduler::plan::{Plan, StepState};
use crate::scheduler::service::commands;
use crate::scheduler::service::decide::{self, Decisions, OfferCall, OfferFlow, SeqIds};
use crate::scheduler::service::update_order::{apply_hook_result, due_hooks, Due};
use crate::scheduler::service::{PodRecord, SchedulerState, TaskRecord, PERMANENT_FAILURE_MS};
use crate::scheduler::spec::ServiceSpec;
use crate::Result;
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod scenarios;

/// The framework id the simulated master gives the scheduler.
pub const FRAMEWORK_ID: &str = "fw-1";

/// One simulated agent: its attributes, its ledger, and whether it is up.
#[derive(Debug, Clone)]
pub struct SimAgent {
    pub id: AgentId,
    pub hostname: String,
    pub attributes: Attributes,
    pub ledger: AgentLedger,
    /// A down agent sends no offers.
    pub up: bool,
}

/// A scheduler driven in-process: its spec and state, a clock, agents.
pub struct Sim {
    pub spec: ServiceSpec,
    pub state: SchedulerState,
    /// The scheduler's clock, in ms.
    pub now: u64,
    pub ids: SeqIds,
    pub flow: OfferFlow,
    pub permanent_failure_ms: u64,
    pub agents: BTreeMap<AgentId, SimAgent>,
    /// Tasks killed by a decision and not yet reported ended.
    pub killing: Vec<TaskId>,
    /// Every suppress or revive sent, in order.
    pub offer_calls: Vec<OfferCall>,
    /// How many times the state would have been persisted.
    pub persists: u64,
    offer_seq: u64,
    status_seq: u64,
}

impl Sim {
    /// A fresh service of spec `yaml`, subscribed, at time 1 000 000 ms.
    pub fn new(yaml: &str) -> Result<Sim> {
        let (spec, state) = commands::open(None, yaml, "sim.yaml")?;
        Ok(Sim::resume(spec, state))
    }

    /// A service resumed from `state` (as after a scheduler restart).
    pub fn resume(spec: ServiceSpec, state: SchedulerState) -> Sim {
        let mut sim = Sim {
            spec,
            state,
            now: 1_000_000,
            ids: SeqIds::default(),
            flow: OfferFlow::default(),
            permanent_failure_ms: PERMANENT_FAILURE_MS,
            agents: BTreeMap::new(),
            killing: Vec::new(),
            offer_calls: Vec::new(),
            persists: 0,
            offer_seq: 0,
            status_seq: 0,
        };
        let d = decide::on_subscribed(&mut sim.state, FRAMEWORK_ID, &mut sim.flow);
        sim.take(d);
        sim
    }

    /// Adds an agent `id` (its hostname too) in `zone` with `resources`.
    pub fn add_agent_with(&mut self, id: &str, zone: &str, resources: Resources) -> &mut Sim {
        let attributes: Attributes =
            [("hostname".to_string(), id.to_string()), ("zone".to_string(), zone.to_string())].into();
        let agent = SimAgent {
            id: id.to_string(),
            hostname: id.to_string(),
            attributes,
            ledger: AgentLedger::new(resources),
            up: true,
        };
        self.agents.insert(id.to_string(), agent);
        self
    }

    /// Adds an agent with 8 cpus, 16 GiB, 100 GiB of ROOT disk and ports
    /// 10000–10099.
    pub fn add_agent(&mut self, id: &str, zone: &str) -> &mut Sim {
        let r = Resources::new(8.0, 16384, 102_400).with_ports(PortSet::from_ranges([PortRange::new(10000, 10099)]));
        self.add_agent_with(id, zone, r)
    }

    /// What agent `id` offers now: its free unreserved resources and the
    /// service role's reservations with their free parts.
    pub fn offer_of(&mut self, id: &str) -> Offer {
        self.offer_seq += 1;
        let a = &self.agents[id];
        let role = &self.spec.role;
        Offer {
            id: format!("offer-{}", self.offer_seq),
            framework_id: FRAMEWORK_ID.into(),
            agent_id: a.id.clone(),
            hostname: a.hostname.clone(),
            attributes: a.attributes.clone(),
            unreserved: a.ledger.unreserved_free(),
            reserved: a.ledger.reserved_offers().into_iter().filter(|(r, _)| r == role).map(|(_, o)| o).collect(),
        }
    }

    /// One offer round from the agents named, decided and applied.
    pub fn offer(&mut self, agents: &[&str]) -> Decisions {
        let offers: Vec<Offer> = agents.iter().map(|a| self.offer_of(a)).collect();
        self.offers(offers)
    }

    /// One offer round from every agent that is up.
    pub fn offer_all(&mut self) -> Decisions {
        let ids: Vec<String> = self.agents.values().filter(|a| a.up).map(|a| a.id.clone()).collect();
        let offers: Vec<Offer> = ids.iter().map(|a| self.offer_of(a)).collect();
        self.offers(offers)
    }

    /// Decides on `offers` and applies the accepts to the agents' ledgers;
    /// an accept the master would refuse panics, naming why.
    pub fn offers(&mut self, offers: Vec<Offer>) -> Decisions {
        let d = decide::on_offers(&mut self.state, &self.spec, &offers, self.now, &mut self.ids);
        for a in &d.accepts {
            let offer = offers.iter().find(|o| a.offer_ids.contains(&o.id)).expect("accept of an offer of this round");
            self.apply(offer, a);
        }
        self.take(d)
    }

    fn apply(&mut self, offer: &Offer, a: &Accept) {
        let pool = OfferedPool {
            unreserved: offer.unreserved.clone(),
            reserved: offer.reserved.iter().map(|r| (r.reservation.id.clone(), r.free.clone())).collect(),
        };
        let role = self.spec.role.clone();
        let agent = self.agents.get_mut(&offer.agent_id).expect("offer of a known agent");
        match apply_operations(&agent.ledger, &pool, FRAMEWORK_ID, &role, &a.operations) {
            Ok(applied) => agent.ledger = applied.ledger,
            Err(e) => panic!("the master would refuse this accept: {e}\n{:#?}", a.operations),
        }
    }

    /// Books what a decision sends: kills pending, suppress/revive, persists.
    fn take(&mut self, d: Decisions) -> Decisions {
        if d.persist {
            self.persists += 1;
        }
        self.killing.extend(d.kills.iter().cloned());
        if let Some(c) = d.offer_call {
            self.offer_calls.push(c);
        }
        d
    }

    /// Sends a status for `task` from its agent, decided and applied: an
    /// ended task leaves its agent's ledger.
    pub fn status(&mut self, task: &str, state: TaskState, ready: Option<bool>, message: &str) -> Decisions {
        self.status_seq += 1;
        let agent = self.state.tasks.get(task).map(|t| t.agent_id.clone()).unwrap_or_default();
        let status = TaskStatus {
            uuid: format!("u-{}", self.status_seq),
            task_id: task.to_string(),
            framework_id: FRAMEWORK_ID.into(),
            agent_id: agent.clone(),
            state,
            message: message.to_string(),
            ready,
            healthy: None,
            timestamp_ms: self.now,
        };
        if state.is_terminal() {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.ledger.tasks.remove(task);
            }
            self.killing.retain(|t| t != task);
        }
        self.flow.on_status(&status);
        let d = decide::on_status(&mut self.state, &self.spec, &status, self.now);
        self.take(d)
    }

    /// `task` reports RUNNING and ready.
    pub fn running(&mut self, task: &str) -> Decisions {
        self.status(task, TaskState::Running, Some(true), "")
    }

    /// Every task launched and not yet reported reports RUNNING, ready.
    pub fn all_running(&mut self) {
        let fresh: Vec<TaskId> =
            self.state.tasks.values().filter(|t| t.state.is_none()).map(|t| t.id.clone()).collect();
        for t in fresh {
            self.running(&t);
        }
    }

    /// Every task killed by a decision reports KILLED.
    pub fn kills_done(&mut self) {
        for t in std::mem::take(&mut self.killing) {
            self.status(&t, TaskState::Killed, None, "killed");
        }
    }

    /// Lets `ms` pass: pods LOST past the timeout are replaced, backoffs
    /// end, offers are suppressed or revived.
    pub fn tick(&mut self, ms: u64) -> Decisions {
        self.now += ms;
        let d = decide::replace_expired(&mut self.state, &self.spec, self.now, self.permanent_failure_ms);
        let mut d = self.take(d);
        let t = decide::on_tick(&mut self.state, self.now, &mut self.flow);
        let t = self.take(t);
        d.offer_call = t.offer_call;
        d
    }

    /// Offers and reports RUNNING until no step waits or `rounds` rounds
    /// passed: a whole deploy in one call.
    pub fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.kills_done();
            self.offer_all();
            self.all_running();
            self.tick(1000);
            if !self.state.has_work() && self.killing.is_empty() {
                return;
            }
        }
    }

    /// Applies a changed spec, as `service update` does.
    pub fn update(&mut self, yaml: &str) -> Result<Vec<String>> {
        commands::update_spec(&mut self.state, &mut self.spec, yaml, "sim.yaml", self.now)
    }

    /// The `update-order` hooks due now (none of them running), with the
    /// phases without a hook let go; the hooks themselves are not run:
    /// answer them with [`Sim::order_answer`].
    pub fn order_hooks(&mut self) -> Vec<Due> {
        let (released, due) = due_hooks(&mut self.state, &self.spec, &BTreeSet::new(), Some("smack"));
        if released {
            self.persists += 1;
        }
        due
    }

    /// A hook's answer: the pods in its order, or why it failed.
    pub fn order_answer(&mut self, due: &Due, result: std::result::Result<Vec<String>, String>) -> bool {
        apply_hook_result(&mut self.state, due, result)
    }

    /// `pod replace`.
    pub fn replace(&mut self, pod: &str) -> Result<()> {
        let (_, kills) = commands::replace_pod(&mut self.state, &self.spec, pod)?;
        self.killing.extend(kills);
        Ok(())
    }

    /// `pod pause` / `pod resume`: marked, then its tasks killed.
    pub fn pause(&mut self, pod: &str, paused: bool) -> Result<()> {
        if commands::set_paused(&mut self.state, pod, paused)? {
            let (_, kills) = commands::pod_tasks(&self.state, pod)?;
            self.killing.extend(kills);
        }
        Ok(())
    }

    /// An agent goes down: its tasks report LOST, it offers nothing more.
    pub fn agent_down(&mut self, id: &str) {
        let tasks: Vec<TaskId> =
            self.state.tasks.values().filter(|t| t.agent_id == id && !t.is_terminal()).map(|t| t.id.clone()).collect();
        if let Some(a) = self.agents.get_mut(id) {
            a.up = false;
        }
        for t in tasks {
            self.status(&t, TaskState::Lost, None, "agent unreachable");
        }
    }

    // ---- reading the state -------------------------------------------

    pub fn pod(&self, name: &str) -> &PodRecord {
        self.state.pods.get(name).unwrap_or_else(|| panic!("no pod {name}; pods: {:?}", self.state.pods.keys()))
    }

    /// The current task id of `pod`'s task `task`.
    pub fn task_id(&self, pod: &str, task: &str) -> TaskId {
        self.pod(pod).tasks.get(task).cloned().unwrap_or_else(|| panic!("pod {pod} has no task {task}"))
    }

    pub fn task(&self, id: &str) -> &TaskRecord {
        &self.state.tasks[id]
    }

    pub fn plan(&self, name: &str) -> &Plan {
        self.state.plans.get(name).unwrap_or_else(|| panic!("no plan {name}; plans: {:?}", self.state.plans.keys()))
    }

    /// The state of `pod`'s step in plan `plan`.
    pub fn step(&self, plan: &str, pod: &str) -> StepState {
        let p = self.plan(plan);
        p.steps()
            .find(|(_, s)| s.pod_instance == pod)
            .map(|(_, s)| s.state)
            .unwrap_or_else(|| panic!("plan {plan} has no step for {pod}"))
    }

    /// The message on `pod`'s step in plan `plan`.
    pub fn step_message(&self, plan: &str, pod: &str) -> String {
        let p = self.plan(plan);
        p.steps().find(|(_, s)| s.pod_instance == pod).and_then(|(_, s)| s.message.clone()).unwrap_or_default()
    }

    /// The tasks agent `id` runs, per the master's ledger.
    pub fn running_on(&self, id: &str) -> Vec<TaskId> {
        self.agents[id].ledger.tasks.keys().cloned().collect()
    }
}

/// The launches of a decision, as (pod label, task info).
pub fn launches(d: &Decisions) -> Vec<&TaskInfo> {
    d.launches().collect()
}

/// The operation kinds of each accept of a decision (`RESERVE`, `LAUNCH`…).
pub fn operation_kinds(d: &Decisions) -> Vec<Vec<&'static str>> {
    d.accepts.iter().map(|a| a.operations.iter().map(Operation::kind).collect()).collect()
}
