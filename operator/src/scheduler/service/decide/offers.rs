//! Offer decisions: what to do with one round of offers. Reservations nobody
//! owns are cleaned up first; then each plan's candidate steps (recovery
//! first, one plan per pod at a time) are matched against the offers: a
//! decommission runs its hook then stops and removes its pod, a roll stops
//! the old tasks first, and a pod that fits is launched (its task records
//! written before the accept). Offers left over are declined.

use super::{Decisions, Ids};
use crate::protocol::Accept;
use crate::resources::{Offer, Operation, Resources, TaskId};
use crate::scheduler::evaluator::{self, OfferMatch};
use crate::scheduler::placement::PlacementView;
use crate::scheduler::plan::{PlanKind, StepRef};
use crate::scheduler::service::requirement::{forget_lost_reservation, requirement};
use crate::scheduler::service::state::{
    pod_type_of, HookRun, PodRecord, SchedulerState, TaskRecord, DECOMMISSION_HOOK,
};
use crate::scheduler::service::task_env::{hook_task_info, peers_env, task_info, PODS_ENV};
use crate::scheduler::spec::ServiceSpec;
use std::collections::BTreeSet;

/// One offer round, being decided.
struct Round<'a> {
    spec: &'a ServiceSpec,
    offers: &'a [Offer],
    now: u64,
    /// Offers already given an accept.
    used: BTreeSet<String>,
    /// Pods some plan works on: no other plan may touch them this round.
    busy: BTreeSet<String>,
    view: PlacementView,
    out: Decisions,
}

/// Decides what to do with `offers`: see the module doc. The state is
/// updated (task records, pod placements, step states and messages) and
/// always to be persisted before the accepts go out.
pub fn on_offers(
    st: &mut SchedulerState,
    spec: &ServiceSpec,
    offers: &[Offer],
    now: u64,
    ids: &mut dyn Ids,
) -> Decisions {
    let mut round = Round {
        spec,
        offers,
        now,
        used: BTreeSet::new(),
        busy: BTreeSet::new(),
        view: PlacementView::new(),
        out: Decisions { persist: true, ..Default::default() },
    };
    round.clean_up_orphans(st);
    for p in st.pods.values() {
        if let Some(a) = &p.agent_id {
            round.view.insert(&p.pod_type, p.index as usize, a, &p.attributes);
        }
    }
    for o in offers {
        round.view.observe_agent(&o.attributes);
    }
    // Recovery first, then the other plans.
    let mut order: Vec<String> = st.plans.keys().cloned().collect();
    order.sort_by_key(|n| if PlanKind::of(n) == PlanKind::Recovery { 0 } else { 1 });
    for name in &order {
        round.busy.extend(st.plans[name].pods_in_work());
    }
    for name in order {
        let candidates = st.plans[&name].candidates_excluding(now, &round.busy);
        for r in candidates {
            round.step(st, &name, r, ids);
        }
    }
    let used = &round.used;
    round.out.declines = offers.iter().filter(|o| !used.contains(&o.id)).map(|o| o.id.clone()).collect();
    round.out
}

impl Round<'_> {
    /// Every reservation of our role is this service's (one framework per
    /// role): one no pod owns is an orphan, destroyed and unreserved.
    fn clean_up_orphans(&mut self, st: &mut SchedulerState) {
        let known: BTreeSet<String> = st.pods.values().filter_map(|p| p.reservation_id.clone()).collect();
        for o in self.offers {
            let ops = evaluator::orphaned_reservations(o, known.iter().map(String::as_str));
            if ops.is_empty() {
                continue;
            }
            for op in &ops {
                if let Operation::Unreserve { id } = op {
                    st.orphans.remove(id);
                }
            }
            tracing::info!(agent = %o.agent_id, n = ops.len(), "cleaning up reservations nobody owns");
            self.used.insert(o.id.clone());
            self.out.accepts.push(Accept { offer_ids: vec![o.id.clone()], operations: ops, filter_ms: None });
        }
    }

    /// One candidate step `r` of plan `name`.
    fn step(&mut self, st: &mut SchedulerState, name: &str, r: StepRef, ids: &mut dyn Ids) {
        let pod = st.plans[name].get(r).map(|s| s.pod_instance.clone()).unwrap_or_default();
        // A pod still running its old tasks is stopped first (an update
        // rolls it; a decommission removes it).
        let live: Vec<TaskId> = st.live_tasks(&pod);
        let kind = PlanKind::of(name);
        if kind == PlanKind::Decommission {
            self.decommission(st, name, r, &pod, live, ids);
            return;
        }
        if !live.is_empty() && kind != PlanKind::Recovery {
            st.stopping.insert(pod.clone());
            self.out.kills.extend(live);
            let plan = st.plans.get_mut(name).expect("listed");
            let _ = plan.set_message(r, "stopping the old tasks before relaunch".to_string());
            self.busy.insert(pod);
            return;
        }
        self.launch(st, name, r, &pod, ids);
    }

    /// A decommission step: its pod's hook first (while the pod runs), then
    /// its tasks stopped, then the pod forgotten and its reservation an
    /// orphan. The step stays a candidate (PENDING) until the pod is gone,
    /// so each offer round looks again.
    fn decommission(
        &mut self,
        st: &mut SchedulerState,
        name: &str,
        r: StepRef,
        pod: &str,
        live: Vec<TaskId>,
        ids: &mut dyn Ids,
    ) {
        let hook = self.spec.pod(&pod_type_of(pod)).and_then(|p| p.hooks.decommission.clone());
        if let (false, Some(h)) = (live.is_empty(), hook) {
            let run = st.pods.get(pod).and_then(|p| p.hook.clone());
            let hook_state = run.as_ref().and_then(|r| st.tasks.get(&r.task_id)).and_then(|t| t.state);
            self.busy.insert(pod.to_string());
            let now = self.now;
            let plan = st.plans.get_mut(name).expect("listed");
            match &run {
                Some(run) if run.done => {}
                Some(run) if !hook_state.is_some_and(|s| s.is_terminal()) => {
                    let _ = plan.set_message(r, format!("running the decommission hook ({})", run.task_id));
                    return;
                }
                Some(run) if now < run.retry_at_ms => {
                    let _ = plan.set_message(
                        r,
                        format!(
                            "the decommission hook failed {} time(s) ({}); retrying in {} s",
                            run.failures,
                            run.message,
                            (run.retry_at_ms - now).div_ceil(1000)
                        ),
                    );
                    return;
                }
                _ => {
                    let rec = st.pods.get(pod).cloned().unwrap_or_default();
                    let agent = rec.agent_id.clone().unwrap_or_default();
                    let want = Resources::new(h.cpus, h.mem, 0);
                    let used = &self.used;
                    let offer = self.offers.iter().find(|o| {
                        o.agent_id == agent && !used.contains(&o.id) && o.unreserved.shortfall(&want).is_none()
                    });
                    let Some(offer) = offer else {
                        let _ = plan.set_message(
                            r,
                            format!(
                                "waiting for agent {agent} to offer {} cpus and {} MiB for the decommission hook",
                                h.cpus, h.mem
                            ),
                        );
                        return;
                    };
                    let tid = format!("{pod}-{DECOMMISSION_HOOK}__{}", ids.next_id());
                    let info = hook_task_info(self.spec, &rec, &h, &tid, want);
                    let _ = plan.set_message(r, format!("running the decommission hook ({tid})"));
                    st.tasks.insert(tid.clone(), TaskRecord::launched(&tid, pod, DECOMMISSION_HOOK, &agent, now));
                    if let Some(p) = st.pods.get_mut(pod) {
                        p.hook = Some(HookRun {
                            task_id: tid.clone(),
                            failures: run.as_ref().map(|r| r.failures).unwrap_or(0),
                            message: run.map(|r| r.message).unwrap_or_default(),
                            ..Default::default()
                        });
                    }
                    tracing::info!(pod = %pod, task = %tid, "running the decommission hook");
                    self.used.insert(offer.id.clone());
                    self.out.accepts.push(Accept {
                        offer_ids: vec![offer.id.clone()],
                        operations: vec![Operation::Launch { task: info }],
                        filter_ms: None,
                    });
                    return;
                }
            }
        }
        if live.is_empty() {
            if let Some(rec) = st.pods.remove(pod) {
                if let Some(res) = rec.reservation_id {
                    st.orphans.insert(res);
                }
            }
            let plan = st.plans.get_mut(name).expect("listed");
            let _ = plan.start_step(r, self.now);
            if let Some(s) = plan.phases.get_mut(r.phase).and_then(|ph| ph.steps.get_mut(r.step)) {
                s.force_complete();
                s.message = Some("decommissioned: tasks stopped, its disk to be released".into());
            }
            plan.refresh();
        } else {
            st.stopping.insert(pod.to_string());
            self.out.kills.extend(live);
        }
    }

    /// A step that launches its pod: the offers evaluated for it, the best
    /// fit taken (or the pod told why it waits), its records written and
    /// its launches added to the accept.
    fn launch(&mut self, st: &mut SchedulerState, name: &str, r: StepRef, pod: &str, ids: &mut dyn Ids) {
        let now = self.now;
        forget_lost_reservation(st, pod, self.offers);
        let Some(mut req) = requirement(self.spec, st, pod, ids) else { return };
        // A non-essential task that failed alone is relaunched alone, next
        // to its pod's live tasks, from their share.
        let all_tasks = st.plans[name].get(r).map(|s| s.tasks.clone()).unwrap_or_default();
        let live_names = st.live_task_names(pod);
        // A pod being replaced starts whole on its new placement: tasks
        // still live on its old agent are being killed and do not count.
        let replacing = st.pods.get(pod).is_some_and(|p| p.replace);
        let recovery = PlanKind::of(name) == PlanKind::Recovery;
        let partial = recovery && !live_names.is_empty() && !replacing;
        if partial {
            let pspec = self.spec.pod(&req.pod_type);
            let essential_missing = all_tasks
                .iter()
                .filter(|t| !live_names.contains(*t))
                .any(|t| pspec.and_then(|p| p.task(t)).is_none_or(|ts| ts.essential));
            if essential_missing {
                // Its other tasks are being stopped: the pod comes back whole.
                return;
            }
            let n = all_tasks.len().max(1) as f64;
            let missing = all_tasks.iter().filter(|t| !live_names.contains(*t)).count() as f64;
            req.cpus = req.cpus * missing / n;
            req.mem = (req.mem as f64 * missing / n) as u64;
            if all_tasks.first().is_some_and(|t| live_names.contains(t)) {
                req.ports.clear();
            }
        }
        let mut evals = Vec::new();
        let (mut fits, mut offered) = (Vec::new(), Vec::new());
        for o in self.offers.iter().filter(|o| !self.used.contains(&o.id)) {
            let e = evaluator::evaluate(&req, o, &self.view);
            self.out.evaluations.add(&e);
            offered.push(o);
            if e.passed() {
                fits.push(e);
                // A pod with a preference ranks every fit; others take the first.
                if req.prefer.is_none() {
                    break;
                }
                continue;
            }
            evals.push(e);
        }
        let waited = st.pods.get(pod).map_or(0, |p| p.prefer_waits);
        let (matched, prefer_wait) = match evaluator::choose_offer(&req, &offered, &fits, waited) {
            evaluator::OfferChoice::Take(i) => (fits.swap_remove(i).matched, None),
            evaluator::OfferChoice::Wait(why) => (None, Some(why)),
            evaluator::OfferChoice::NoFit => (None, None),
        };
        let Some(m) = matched else {
            let preferring = prefer_wait.is_some();
            let why = if let Some(w) = prefer_wait {
                w
            } else if evals.is_empty() {
                "waiting for offers".to_string()
            } else {
                evaluator::summarize(&evals)
            };
            let plan = st.plans.get_mut(name).expect("listed");
            let _ = plan.set_message(r, why.clone());
            let p = st.pods.entry(pod.to_string()).or_insert_with(|| PodRecord {
                name: pod.to_string(),
                pod_type: req.pod_type.clone(),
                index: req.index as u32,
                ..Default::default()
            });
            p.waiting = Some(why);
            p.prefer_waits += u32::from(preferring);
            return;
        };
        let offer = self.offers.iter().find(|o| o.id == m.offer_id).expect("matched offer");
        let peers = peers_env(st, pod, &m.hostname, &offer.attributes, &m.ports);
        // Record the pod and its task records before the accept goes out.
        let pod_type = req.pod_type.clone();
        let pspec = self.spec.pod(&pod_type).expect("requirement built from spec");
        let rec = st.pods.entry(pod.to_string()).or_default();
        // A pod placed anew after a replace tells its service whose place
        // it takes (a ring member's replace-address).
        let replaced_from = if rec.replace && m.new { rec.replaced_from.clone() } else { None };
        place(rec, pod, &pod_type, req.index as u32, &m, offer);
        let paused = rec.paused;
        let plan = st.plans.get_mut(name).expect("listed");
        let step_tasks = plan.get(r).map(|s| s.tasks.clone()).unwrap_or_default();
        let mut ops = m.operations.clone();
        let mut launched = Vec::new();
        let n = step_tasks.len().max(1) as f64;
        for (i, tname) in step_tasks.iter().enumerate() {
            if partial && live_names.contains(tname) {
                continue;
            }
            let Some(tspec) = pspec.task(tname) else { continue };
            let tid = format!("{pod}-{tname}__{}", ids.next_id());
            let mut res = Resources::new(pspec.resources.cpus / n, (pspec.resources.mem as f64 / n) as u64, 0);
            if i == 0 {
                res.ports = m.task_resources.ports.clone();
            }
            let mut info = task_info(self.spec, pspec, tspec, pod, req.index as u32, &tid, res, &m);
            // A custom plan's parameters reach the tasks it launches as env.
            info.env.extend(plan.parameters.clone());
            info.env.insert(PODS_ENV.into(), peers.clone());
            if let Some(from) = &replaced_from {
                info.env.insert("POD_REPLACED_FROM".into(), from.clone());
            }
            if paused {
                info.command = "exec sleep 2147483647".into();
                info.health_check = None;
                info.readiness_check = None;
            }
            launched.push((tname.clone(), tid.clone()));
            ops.push(Operation::Launch { task: info });
        }
        let _ = plan.start_step(r, now);
        let _ = plan.on_launched(r);
        // The tasks left running count as running and ready.
        for t in &live_names {
            let _ = plan.on_task_running(r, t);
            let _ = plan.on_task_ready(r, t);
        }
        for (tname, tid) in launched {
            st.tasks.insert(tid.clone(), TaskRecord::launched(&tid, pod, &tname, &m.agent_id, now));
            if let Some(rec) = st.pods.get_mut(pod) {
                rec.tasks.insert(tname, tid);
            }
        }
        self.view.insert(&pod_type, req.index, &m.agent_id, &offer.attributes);
        self.busy.insert(pod.to_string());
        self.used.insert(m.offer_id.clone());
        tracing::info!(pod = %pod, agent = %m.agent_id, new = m.new, "launching pod");
        if recovery {
            self.out.recoveries.push(m.new);
        }
        self.out.accepts.push(Accept { offer_ids: vec![m.offer_id.clone()], operations: ops, filter_ms: None });
    }
}

/// Writes a pod's new placement from the offer it matched.
fn place(rec: &mut PodRecord, pod: &str, pod_type: &str, index: u32, m: &OfferMatch, offer: &Offer) {
    rec.name = pod.to_string();
    rec.pod_type = pod_type.to_string();
    rec.index = index;
    rec.agent_id = Some(m.agent_id.clone());
    rec.hostname = m.hostname.clone();
    rec.attributes = offer.attributes.clone();
    rec.reservation_id = Some(m.reservation_id.clone());
    rec.volume_ids = m.volumes.iter().map(|v| v.id.clone()).collect();
    rec.ports = m.ports.clone();
    rec.replace = false;
    rec.replaced_from = None;
    rec.waiting = None;
    rec.prefer_waits = 0;
}
