//! The service scheduler: one framework that turns a [`ServiceSpec`] into
//! running pods and keeps them so. It subscribes to the master, runs the
//! `deploy` plan through the offer evaluator, relaunches failed tasks in
//! place (the `recovery` plan, with crash-loop backoff), places replaced pods
//! anew, cleans up reservations nobody owns, and persists everything —
//! spec, pods, task records (before the accept that launches them), plans
//! and operator overrides — in the state store, so a restarted scheduler
//! carries on where it stopped.

use super::evaluator::{self, ExistingPlacement, PodRequirement, VolumeKind};
use super::placement::{PlacementRule as Rule, PlacementView, Preference};
use super::plan::{Phase, Plan, Step, StepState, Strategy};
use super::spec::{self, Goal, PodSpec, ServiceSpec, VolumeType};
use crate::client::MasterClient;
use crate::protocol::{Accept, Acknowledge, Decline, FrameworkEvent, Reconcile, Subscribe};
use crate::resources::{
    now_ms, AgentId, Attributes, Offer, Operation, ReservationId, Resources, TaskId, TaskInfo, TaskState, TaskStatus,
    VolumeId,
};
use crate::state::StateStore;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

pub mod update_order;

/// A pod instance as the scheduler keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub pod_type: String,
    pub index: u32,
    /// Where its reservation is, once placed.
    pub agent_id: Option<AgentId>,
    pub hostname: String,
    pub attributes: Attributes,
    pub reservation_id: Option<ReservationId>,
    pub volume_ids: Vec<VolumeId>,
    pub ports: BTreeMap<String, u16>,
    /// Task name → the id of its latest launch.
    pub tasks: BTreeMap<String, TaskId>,
    /// Set by `pod replace`: the next placement is fresh.
    pub replace: bool,
    /// The host a replaced pod left: its new placement avoids it.
    #[serde(default)]
    pub replaced_from: Option<String>,
    /// Why the pod waits for an offer, from the offer evaluator.
    pub waiting: Option<String>,
    /// In maintenance (`pod pause`): its tasks run `sleep` on its own disk
    /// so an operator can inspect the volume; rolls skip it.
    #[serde(default)]
    pub paused: bool,
    /// When its task was reported LOST (its agent unreachable); past the
    /// permanent-failure timeout the pod is replaced.
    #[serde(default)]
    pub lost_since_ms: Option<u64>,
    /// The decommission hook of a pod being decommissioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookRun>,
    /// Offer rounds this pod, placed anew, let pass waiting for its
    /// preferred agent (`prefer:`); bounded by
    /// [`evaluator::PREFER_WAIT_ROUNDS`], reset once placed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prefer_waits: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A decommission hook's progress, persisted so that a restart neither
/// skips it nor runs a finished one again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookRun {
    /// Its latest launch.
    pub task_id: TaskId,
    /// It exited 0: the pod may be removed.
    pub done: bool,
    /// Failed runs so far, and when the next may start.
    pub failures: u32,
    pub retry_at_ms: u64,
    /// Why the last run failed.
    pub message: String,
}

/// The task name a decommission hook runs under.
pub const DECOMMISSION_HOOK: &str = "decommission-hook";

/// A launched task as the scheduler keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub pod: String,
    pub task: String,
    pub agent_id: AgentId,
    pub state: Option<TaskState>,
    pub ready: bool,
    pub message: String,
    pub launched_ms: u64,
}

/// Everything the scheduler persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchedulerState {
    pub framework_id: Option<String>,
    /// The target spec, as its YAML text.
    pub spec_yaml: String,
    pub spec_file: String,
    pub pods: BTreeMap<String, PodRecord>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    pub plans: BTreeMap<String, Plan>,
    /// Reservations of ours that nobody owns any more (replaced pods).
    pub orphans: BTreeSet<ReservationId>,
    /// Earlier targets, oldest first (the last 10), with when they ended.
    #[serde(default)]
    pub spec_history: Vec<SpecVersion>,
    /// Pods whose tasks the scheduler stopped on purpose (an update roll,
    /// a decommission): their ends are not failures to recover.
    #[serde(default)]
    pub stopping: BTreeSet<String>,
}

/// A spec the service ran, kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecVersion {
    pub yaml: String,
    pub file: String,
    pub replaced_ms: u64,
}

/// What applying a spec would do, for `service diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecDiff {
    /// Pod instances that would be added.
    pub added: Vec<String>,
    /// Pod instances that would be decommissioned.
    pub removed: Vec<String>,
    /// Pod instances that would be restarted, with why.
    pub restarted: Vec<(String, String)>,
    /// Why the change would be refused, if it would.
    pub refused: Vec<String>,
}

const STATE_KEY: &str = "state";

/// A running service scheduler. Cheap to clone.
#[derive(Clone)]
pub struct ServiceScheduler {
    /// A pod whose task stays LOST this long is replaced (placed anew).
    permanent_failure_ms: u64,
    /// This scheduler's own HTTP API, announced to the master at subscribe.
    api_url: Option<String>,
    inner: Arc<Mutex<Inner>>,
    store: Arc<dyn StateStore>,
    client: MasterClient,
    wake: Arc<Notify>,
    /// `update-order` hooks running now, as `plan/phase` ([`update_order`]).
    order_hooks: Arc<Mutex<BTreeSet<String>>>,
    /// Recoveries and offer evaluations, served by [`super::api`] at `/metrics`.
    pub(crate) metrics: Arc<crate::metrics::SchedulerMetrics>,
}

struct Inner {
    spec: ServiceSpec,
    state: SchedulerState,
}

fn key(service: &str) -> String {
    format!("services/{service}/{STATE_KEY}")
}

fn short() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

impl ServiceScheduler {
    /// Opens the scheduler for `spec`: resumes its persisted state if any,
    /// else starts with a fresh deploy plan. A changed spec is refused here
    /// if unsafe, keeping the old target.
    pub fn open(store: Arc<dyn StateStore>, client: MasterClient, yaml: &str, file: &str) -> Result<Self> {
        let spec = ServiceSpec::from_yaml(yaml, file).map_err(|e| Error::Other(e.to_string()))?;
        let k = key(&spec.name);
        let saved: Option<SchedulerState> = match store.get(&k)? {
            Some(b) => Some(serde_json::from_slice(&b).map_err(|source| Error::Codec { key: k.clone(), source })?),
            None => None,
        };
        let (spec, state) = match saved {
            Some(st) => {
                let old =
                    ServiceSpec::from_yaml(&st.spec_yaml, &st.spec_file).map_err(|e| Error::Other(e.to_string()))?;
                check_update(&old, &spec)?;
                let mut st = st;
                if old != spec {
                    let plans = update_plans(&old, &spec, &st)?;
                    st.spec_yaml = yaml.to_string();
                    st.spec_file = file.to_string();
                    apply_update_plans(&mut st, plans);
                }
                (spec, st)
            }
            None => {
                let st = SchedulerState {
                    spec_yaml: yaml.to_string(),
                    spec_file: file.to_string(),
                    plans: [("deploy".to_string(), deploy_plan(&spec)?)].into(),
                    ..Default::default()
                };
                (spec, st)
            }
        };
        let mut state = state;
        add_custom_plans(&spec, &mut state)?;
        let metrics = crate::metrics::SchedulerMetrics::new(&spec.name);
        let s = ServiceScheduler {
            metrics,
            permanent_failure_ms: 5 * 60 * 1000,
            api_url: None,
            inner: Arc::new(Mutex::new(Inner { spec, state })),
            store,
            client,
            wake: Arc::new(Notify::new()),
            order_hooks: Arc::default(),
        };
        s.persist()?;
        Ok(s)
    }

    /// Sets the URL of this scheduler's HTTP API, told to the master when
    /// it subscribes (the dashboard reaches plans and pods through it).
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Sets the permanent-failure timeout (default 5 minutes).
    pub fn with_permanent_failure_timeout(mut self, d: Duration) -> Self {
        self.permanent_failure_ms = d.as_millis() as u64;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist_locked(&self, inner: &Inner) -> Result<()> {
        let k = key(&inner.spec.name);
        let bytes = serde_json::to_vec(&inner.state).map_err(|source| Error::Codec { key: k.clone(), source })?;
        self.store.put(&k, &bytes)
    }

    fn persist(&self) -> Result<()> {
        let inner = self.lock();
        self.persist_locked(&inner)
    }

    pub fn name(&self) -> String {
        self.lock().spec.name.clone()
    }

    /// A copy of the persisted state, for the API and tests.
    pub fn snapshot(&self) -> SchedulerState {
        self.lock().state.clone()
    }

    pub fn spec(&self) -> ServiceSpec {
        self.lock().spec.clone()
    }

    /// Applies an operator command to a plan and persists it.
    pub fn with_plan<T>(&self, plan: &str, f: impl FnOnce(&mut Plan) -> Result<T>) -> Result<T> {
        let mut inner = self.lock();
        let names: Vec<String> = inner.state.plans.keys().cloned().collect();
        let p = inner
            .state
            .plans
            .get_mut(plan)
            .ok_or_else(|| Error::Other(format!("no plan {plan:?}; plans: {}", names.join(", "))))?;
        let out = f(p)?;
        p.refresh();
        self.persist_locked(&inner)?;
        drop(inner);
        self.wake.notify_one();
        Ok(out)
    }

    /// Applies a changed spec to the running service: refused with the
    /// reasons (and the old target kept) when unsafe; otherwise an `update`
    /// plan rolls the pods whose config changed, new pods are deployed, and
    /// removed ones decommissioned.
    pub fn update_spec(&self, yaml: &str, file: &str) -> Result<Vec<String>> {
        let new = ServiceSpec::from_yaml(yaml, file).map_err(|e| Error::Other(e.to_string()))?;
        let mut inner = self.lock();
        check_update(&inner.spec, &new)?;
        if inner.spec == new {
            return Ok(Vec::new());
        }
        if let Some(why) = destructive_in_flight(&inner.state) {
            return Err(Error::Other(format!("change refused while {why}; apply it again once that completes")));
        }
        let old = SpecVersion {
            yaml: std::mem::take(&mut inner.state.spec_yaml),
            file: std::mem::take(&mut inner.state.spec_file),
            replaced_ms: now_ms(),
        };
        inner.state.spec_history.push(old);
        let excess = inner.state.spec_history.len().saturating_sub(10);
        inner.state.spec_history.drain(..excess);
        let plans = update_plans(&inner.spec, &new, &inner.state)?;
        let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
        inner.spec = new;
        inner.state.spec_yaml = yaml.to_string();
        inner.state.spec_file = file.to_string();
        apply_update_plans(&mut inner.state, plans);
        let inner_ref: &mut Inner = &mut inner;
        add_custom_plans(&inner_ref.spec, &mut inner_ref.state)?;
        self.persist_locked(&inner)?;
        drop(inner);
        self.wake.notify_one();
        Ok(names)
    }

    /// `service delete`: decommission every pod (tasks killed, volumes
    /// destroyed, reservations released). The scheduler keeps running
    /// until the caller stops it.
    pub fn delete_all(&self) -> Result<()> {
        let mut inner = self.lock();
        if let Some(why) = destructive_in_flight(&inner.state) {
            return Err(Error::Other(format!("delete refused while {why}")));
        }
        let mut phases = Vec::new();
        for pod in &inner.spec.pods {
            let tasks: Vec<String> = pod.tasks.iter().map(|t| t.name.clone()).collect();
            let mut names: Vec<&PodRecord> = inner.state.pods.values().filter(|p| p.pod_type == pod.name).collect();
            names.sort_by_key(|p| std::cmp::Reverse(p.index));
            let steps: Vec<Step> = names.iter().map(|p| Step::new(&p.name, tasks.clone())).collect();
            if !steps.is_empty() {
                phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps));
            }
        }
        // Nothing else may start work on these pods any more.
        let names: Vec<String> = inner.state.plans.keys().cloned().collect();
        for n in names {
            if let Some(p) = inner.state.plans.get_mut(&n) {
                let _ = p.pause(None);
            }
        }
        if !phases.is_empty() {
            let plan =
                Plan::from_phases("decommission", Strategy::Serial, phases).map_err(|e| Error::Other(e.to_string()))?;
            inner.state.plans.insert("decommission".into(), plan);
        }
        self.persist_locked(&inner)?;
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// What applying `yaml` would change, without changing anything.
    pub fn diff_spec(&self, yaml: &str, file: &str) -> Result<SpecDiff> {
        let new = ServiceSpec::from_yaml(yaml, file).map_err(|e| Error::Other(e.to_string()))?;
        let inner = self.lock();
        let mut d = SpecDiff {
            refused: spec::validate_update(&inner.spec, &new).iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        if let Some(why) = destructive_in_flight(&inner.state) {
            d.refused.push(format!("{why}: a change now would be refused"));
        }
        let changed = spec::changed_pods(&inner.spec, &new);
        for pod in &new.pods {
            let old_count = inner.spec.pod(&pod.name).map(|p| p.count).unwrap_or(0);
            for i in old_count..pod.count {
                d.added.push(pod.instance_name(i));
            }
            for i in pod.count..old_count {
                d.removed.push(pod.instance_name(i));
            }
            if changed.contains(&pod.name) {
                for i in 0..pod.count.min(old_count) {
                    let name = pod.instance_name(i);
                    let paused = inner.state.pods.get(&name).is_some_and(|p| p.paused);
                    if !paused {
                        d.restarted.push((name, format!("the `{}` pod's config changed", pod.name)));
                    }
                }
            }
        }
        Ok(d)
    }

    /// `pod pause`: relaunch the pod's tasks with `sleep` in place of their
    /// commands, on their own disk; `pod resume` ends it.
    pub async fn pause_pod(&self, pod: &str, paused: bool) -> Result<()> {
        {
            let mut inner = self.lock();
            let rec = inner.state.pods.get_mut(pod).ok_or_else(|| Error::Other(format!("no pod {pod:?}")))?;
            if rec.paused == paused {
                return Ok(());
            }
            rec.paused = paused;
            self.persist_locked(&inner)?;
        }
        self.restart_pod(pod).await
    }

    /// `pod restart`: kill the pod's tasks; they come back in place.
    pub async fn restart_pod(&self, pod: &str) -> Result<()> {
        let (fw, tasks) = self.pod_tasks(pod)?;
        for t in tasks {
            self.client.kill(&fw, &t).await?;
        }
        Ok(())
    }

    /// `pod replace`: kill the pod's tasks and place it anew with fresh
    /// volumes; its old reservation is destroyed when next offered.
    pub async fn replace_pod(&self, pod: &str) -> Result<()> {
        let (fw, tasks) = self.pod_tasks(pod)?;
        {
            let mut inner = self.lock();
            let rec = inner.state.pods.get_mut(pod).expect("checked");
            rec.replace = true;
            rec.lost_since_ms = None;
            let old = rec.reservation_id.take();
            rec.agent_id = None;
            rec.replaced_from = Some(std::mem::take(&mut rec.hostname)).filter(|h| !h.is_empty());
            rec.attributes.clear();
            rec.volume_ids.clear();
            rec.ports.clear();
            if let Some(old) = old {
                inner.state.orphans.insert(old);
            }
            let inner: &mut Inner = &mut inner;
            ensure_recovery_step(&mut inner.state, pod, &inner.spec);
            if let Some(p) = inner.state.plans.get_mut("recovery") {
                if let Ok(r) = p.step_ref("recover", pod) {
                    let _ = p.reset_backoff(r);
                    if let Some(s) = p.phases.get_mut(r.phase).and_then(|ph| ph.steps.get_mut(r.step)) {
                        s.restart();
                    }
                    p.refresh();
                }
            }
            self.persist_locked(inner)?;
        }
        for t in tasks {
            let _ = self.client.kill(&fw, &t).await;
        }
        self.wake.notify_one();
        Ok(())
    }

    fn pod_tasks(&self, pod: &str) -> Result<(String, Vec<TaskId>)> {
        let inner = self.lock();
        let rec = inner.state.pods.get(pod).ok_or_else(|| {
            let names: Vec<&str> = inner.state.pods.keys().map(String::as_str).collect();
            Error::Other(format!("no pod {pod:?}; pods: {}", names.join(", ")))
        })?;
        let fw = inner.state.framework_id.clone().ok_or_else(|| Error::Other("not subscribed yet".into()))?;
        let live: Vec<TaskId> = rec
            .tasks
            .values()
            .filter(|id| inner.state.tasks.get(*id).map(|t| !t.state.is_some_and(|s| s.is_terminal())).unwrap_or(false))
            .cloned()
            .collect();
        Ok((fw, live))
    }

    /// Runs the scheduler: subscribes (again after any disconnect) and
    /// handles offers and updates until the future is dropped.
    pub async fn run(&self) {
        loop {
            if let Err(e) = self.session().await {
                tracing::warn!(error = %e, "scheduler session ended; subscribing again");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn session(&self) -> Result<()> {
        let (fid, role, name) = {
            let inner = self.lock();
            (inner.state.framework_id.clone(), inner.spec.role.clone(), inner.spec.name.clone())
        };
        let sub = Subscribe { framework_id: fid, name, role, weight: 1.0, api_url: self.api_url.clone() };
        let mut events = self.client.subscribe(&sub).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut suppressed = false;
        let mut want_revive = false;
        let mut next_due: Option<u64> = None;
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev? else { return Err(Error::Other("the master closed the stream".into())) };
                    match ev {
                        FrameworkEvent::Subscribed { framework_id } => {
                            {
                                let mut inner = self.lock();
                                inner.state.framework_id = Some(framework_id.clone());
                                self.persist_locked(&inner)?;
                            }
                            tracing::info!(framework = %framework_id, "scheduler subscribed");
                            // Ask for every task we think is alive: one the master
                            // does not know (an accept lost in a crash) comes back
                            // LOST and its step is retried.
                            let ids: Vec<TaskId> = {
                                let inner = self.lock();
                                inner.state.tasks.values().filter(|t| !t.state.is_some_and(|s| s.is_terminal())).map(|t| t.id.clone()).collect()
                            };
                            if !ids.is_empty() {
                                self.client.reconcile(&framework_id, &Reconcile { task_ids: ids }).await?;
                            }
                            suppressed = false;
                        }
                        FrameworkEvent::Offers { offers } => self.handle_offers(offers).await?,
                        FrameworkEvent::Update { status } => {
                            // A task that became ready or ended may free the next
                            // step: revive, so offers declined while waiting come
                            // back now rather than when their filters expire.
                            want_revive |= status.ready == Some(true) || status.state.is_terminal();
                            self.handle_update(status).await?
                        }
                        FrameworkEvent::Rescind { .. } | FrameworkEvent::Heartbeat => {}
                    }
                }
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                // A step's backoff ends: hand it out now, not at the next tick.
                _ = sleep_until_ms(next_due) => {}
            }
            // Suppress offers while there is nothing to do; revive when there is.
            let gone: Vec<String> = {
                let inner = self.lock();
                let now = now_ms();
                inner
                    .state
                    .pods
                    .values()
                    .filter(|p| p.lost_since_ms.is_some_and(|t| now.saturating_sub(t) >= self.permanent_failure_ms))
                    .map(|p| p.name.clone())
                    .collect()
            };
            for pod in gone {
                tracing::warn!(pod = %pod, "task LOST past the permanent-failure timeout: replacing the pod");
                self.replace_pod(&pod).await?;
            }
            self.start_update_order_hooks();
            let (fw, work) = {
                let mut inner = self.lock();
                let now = now_ms();
                let mut moved = 0;
                for p in inner.state.plans.values_mut() {
                    moved += p.tick(now);
                }
                // A step whose backoff just ended wants offers at once; those
                // declined while it waited still carry their filters.
                want_revive |= moved > 0;
                next_due = next_backoff_end(&inner.state, now);
                (inner.state.framework_id.clone(), has_work(&inner.state))
            };
            if let Some(fw) = fw {
                if work && (suppressed || want_revive) {
                    self.client.revive(&fw).await?;
                    suppressed = false;
                    want_revive = false;
                } else if !work && !suppressed {
                    self.client.suppress(&fw).await?;
                    suppressed = true;
                }
            }
        }
    }

    async fn handle_offers(&self, offers: Vec<Offer>) -> Result<()> {
        let mut accepts: Vec<Accept> = Vec::new();
        let mut kills: Vec<TaskId> = Vec::new();
        let mut used: BTreeSet<String> = BTreeSet::new();
        let fw;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            fw = inner.state.framework_id.clone().unwrap_or_default();
            let now = now_ms();
            // Reservations nobody owns are destroyed and unreserved first.
            let known: BTreeSet<String> = inner.state.pods.values().filter_map(|p| p.reservation_id.clone()).collect();
            for o in &offers {
                // Every reservation of our role is this service's (one
                // framework per role): one no pod owns is an orphan.
                let ops = evaluator::orphaned_reservations(o, known.iter().map(String::as_str));
                if !ops.is_empty() {
                    for op in &ops {
                        if let Operation::Unreserve { id } = op {
                            inner.state.orphans.remove(id);
                        }
                    }
                    tracing::info!(agent = %o.agent_id, n = ops.len(), "cleaning up reservations nobody owns");
                    used.insert(o.id.clone());
                    accepts.push(Accept { offer_ids: vec![o.id.clone()], operations: ops, filter_ms: None });
                }
            }
            let mut view = PlacementView::new();
            for p in inner.state.pods.values() {
                if let Some(a) = &p.agent_id {
                    view.insert(&p.pod_type, p.index as usize, a, &p.attributes);
                }
            }
            for o in &offers {
                view.observe_agent(&o.attributes);
            }
            // Recovery first, then the other plans.
            let mut order: Vec<String> = inner.state.plans.keys().cloned().collect();
            order.sort_by_key(|n| if n == "recovery" { 0 } else { 1 });
            let mut busy: BTreeSet<String> = BTreeSet::new();
            for name in &order {
                busy.extend(inner.state.plans[name].pods_in_work());
            }
            for name in order {
                let candidates = inner.state.plans[&name].candidates_excluding(now, &busy);
                for r in candidates {
                    let pod = inner.state.plans[&name].get(r).map(|s| s.pod_instance.clone()).unwrap_or_default();
                    // A pod still running its old tasks is stopped first (an
                    // update rolls it; a decommission removes it).
                    let live: Vec<TaskId> = live_tasks(&inner.state, &pod);
                    if name == "decommission" {
                        let hook = inner.spec.pod(&pod_type_of(&pod)).and_then(|p| p.hooks.decommission.clone());
                        if let (false, Some(h)) = (live.is_empty(), hook) {
                            // The service hook runs first, while the pod still
                            // runs; the pod is stopped once it exits 0.
                            let run = inner.state.pods.get(&pod).and_then(|p| p.hook.clone());
                            let hook_state =
                                run.as_ref().and_then(|r| inner.state.tasks.get(&r.task_id)).and_then(|t| t.state);
                            // The step stays a candidate (PENDING) until the
                            // pod is gone, so each offer cycle looks again.
                            let plan = inner.state.plans.get_mut(&name).expect("listed");
                            busy.insert(pod.clone());
                            match &run {
                                Some(run) if run.done => {}
                                Some(run) if !hook_state.is_some_and(|s| s.is_terminal()) => {
                                    let _ =
                                        plan.set_message(r, format!("running the decommission hook ({})", run.task_id));
                                    continue;
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
                                    continue;
                                }
                                _ => {
                                    let rec = inner.state.pods.get(&pod).cloned().unwrap_or_default();
                                    let agent = rec.agent_id.clone().unwrap_or_default();
                                    let want = Resources::new(h.cpus, h.mem, 0);
                                    let offer = offers.iter().find(|o| {
                                        o.agent_id == agent
                                            && !used.contains(&o.id)
                                            && o.unreserved.shortfall(&want).is_none()
                                    });
                                    let Some(offer) = offer else {
                                        let _ = plan.set_message(
                                            r,
                                            format!(
                                                "waiting for agent {agent} to offer {} cpus and {} MiB for the decommission hook",
                                                h.cpus, h.mem
                                            ),
                                        );
                                        continue;
                                    };
                                    let tid = format!("{pod}-{DECOMMISSION_HOOK}__{}", short());
                                    let info = hook_task_info(&inner.spec, &rec, &h, &tid, want);
                                    let _ = plan.set_message(r, format!("running the decommission hook ({tid})"));
                                    inner.state.tasks.insert(
                                        tid.clone(),
                                        TaskRecord {
                                            id: tid.clone(),
                                            pod: pod.clone(),
                                            task: DECOMMISSION_HOOK.into(),
                                            agent_id: agent.clone(),
                                            state: None,
                                            ready: false,
                                            message: String::new(),
                                            launched_ms: now,
                                        },
                                    );
                                    let failures = run.as_ref().map(|r| r.failures).unwrap_or(0);
                                    if let Some(p) = inner.state.pods.get_mut(&pod) {
                                        p.hook = Some(HookRun {
                                            task_id: tid.clone(),
                                            failures,
                                            message: run.map(|r| r.message).unwrap_or_default(),
                                            ..Default::default()
                                        });
                                    }
                                    tracing::info!(pod = %pod, task = %tid, "running the decommission hook");
                                    used.insert(offer.id.clone());
                                    accepts.push(Accept {
                                        offer_ids: vec![offer.id.clone()],
                                        operations: vec![Operation::Launch { task: info }],
                                        filter_ms: None,
                                    });
                                    continue;
                                }
                            }
                        }
                        if live.is_empty() {
                            if let Some(rec) = inner.state.pods.remove(&pod) {
                                if let Some(res) = rec.reservation_id {
                                    inner.state.orphans.insert(res);
                                }
                            }
                            let plan = inner.state.plans.get_mut(&name).expect("listed");
                            let _ = plan.start_step(r, now);
                            if let Some(st) = plan.phases.get_mut(r.phase).and_then(|ph| ph.steps.get_mut(r.step)) {
                                st.force_complete();
                                st.message = Some("decommissioned: tasks stopped, its disk to be released".into());
                            }
                            plan.refresh();
                        } else {
                            inner.state.stopping.insert(pod.clone());
                            kills.extend(live);
                        }
                        continue;
                    }
                    if !live.is_empty() && name != "recovery" {
                        inner.state.stopping.insert(pod.clone());
                        kills.extend(live);
                        let plan = inner.state.plans.get_mut(&name).expect("listed");
                        let _ = plan.set_message(r, "stopping the old tasks before relaunch".to_string());
                        busy.insert(pod.clone());
                        continue;
                    }
                    forget_lost_reservation(&mut inner.state, &pod, &offers);
                    let Some(mut req) = requirement(&inner.spec, &inner.state, &pod) else { continue };
                    // A non-essential task that failed alone is relaunched
                    // alone, next to its pod's live tasks, from their share.
                    let all_tasks = inner.state.plans[&name].get(r).map(|s| s.tasks.clone()).unwrap_or_default();
                    let live_names = live_task_names(&inner.state, &pod);
                    // A pod being replaced starts whole on its new placement:
                    // tasks still live on its old agent are being killed and
                    // do not count.
                    let replacing = inner.state.pods.get(&pod).is_some_and(|p| p.replace);
                    let partial = name == "recovery" && !live_names.is_empty() && !replacing;
                    if partial {
                        let pspec = inner.spec.pod(&req.pod_type);
                        let essential_missing = all_tasks
                            .iter()
                            .filter(|t| !live_names.contains(*t))
                            .any(|t| pspec.and_then(|p| p.task(t)).is_none_or(|ts| ts.essential));
                        if essential_missing {
                            // Its other tasks are being stopped: the pod comes back whole.
                            continue;
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
                    for o in offers.iter().filter(|o| !used.contains(&o.id)) {
                        let e = evaluator::evaluate(&req, o, &view);
                        self.metrics.evaluated(&e);
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
                    let waited = inner.state.pods.get(&pod).map_or(0, |p| p.prefer_waits);
                    let (matched, prefer_wait) = match evaluator::choose_offer(&req, &offered, &fits, waited) {
                        evaluator::OfferChoice::Take(i) => (fits.swap_remove(i).matched, None),
                        evaluator::OfferChoice::Wait(why) => (None, Some(why)),
                        evaluator::OfferChoice::NoFit => (None, None),
                    };
                    let peers = matched
                        .as_ref()
                        .and_then(|m: &evaluator::OfferMatch| {
                            let o = offers.iter().find(|o| o.id == m.offer_id)?;
                            Some(peers_env(&inner.state, &pod, &m.hostname, &o.attributes, &m.ports))
                        })
                        .unwrap_or_default();
                    let plan = inner.state.plans.get_mut(&name).expect("listed");
                    let Some(m) = matched else {
                        let preferring = prefer_wait.is_some();
                        let why = if let Some(w) = prefer_wait {
                            w
                        } else if evals.is_empty() {
                            "waiting for offers".to_string()
                        } else {
                            evaluator::summarize(&evals)
                        };
                        let _ = plan.set_message(r, why.clone());
                        let p = inner.state.pods.entry(pod.clone()).or_insert_with(|| PodRecord {
                            name: pod.clone(),
                            pod_type: req.pod_type.clone(),
                            index: req.index as u32,
                            ..Default::default()
                        });
                        p.waiting = Some(why);
                        p.prefer_waits += u32::from(preferring);
                        continue;
                    };
                    // Record the pod and its task records before the accept goes out.
                    let pod_type = req.pod_type.clone();
                    let pspec = inner.spec.pod(&pod_type).expect("requirement built from spec").clone();
                    let offer = offers.iter().find(|o| o.id == m.offer_id).expect("matched offer");
                    let rec = inner.state.pods.entry(pod.clone()).or_default();
                    // A pod placed anew after a replace tells its service whose
                    // place it takes (Cassandra's replace-address).
                    let replaced_from = if rec.replace && m.new { rec.replaced_from.clone() } else { None };
                    rec.name = pod.clone();
                    rec.pod_type = pod_type.clone();
                    rec.index = req.index as u32;
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
                    let step_tasks = plan.get(r).map(|s| s.tasks.clone()).unwrap_or_default();
                    let mut ops = m.operations.clone();
                    let n = step_tasks.len().max(1) as f64;
                    for (i, tname) in step_tasks.iter().enumerate() {
                        if partial && live_names.contains(tname) {
                            continue;
                        }
                        let Some(tspec) = pspec.task(tname) else { continue };
                        let tid = format!("{pod}-{tname}__{}", short());
                        let mut res =
                            Resources::new(pspec.resources.cpus / n, (pspec.resources.mem as f64 / n) as u64, 0);
                        if i == 0 {
                            res.ports = m.task_resources.ports.clone();
                        }
                        let mut info = task_info(&inner.spec, &pspec, tspec, &pod, req.index as u32, &tid, res, &m);
                        // A custom plan's parameters reach the tasks it launches as env.
                        info.env.extend(plan.parameters.clone());
                        info.env.insert(PODS_ENV.into(), peers.clone());
                        if let Some(from) = &replaced_from {
                            info.env.insert("POD_REPLACED_FROM".into(), from.clone());
                        }
                        if rec.paused {
                            info.command = "exec sleep 2147483647".into();
                            info.health_check = None;
                            info.readiness_check = None;
                        }
                        rec.tasks.insert(tname.clone(), tid.clone());
                        inner.state.tasks.insert(
                            tid.clone(),
                            TaskRecord {
                                id: tid.clone(),
                                pod: pod.clone(),
                                task: tname.clone(),
                                agent_id: m.agent_id.clone(),
                                state: None,
                                ready: false,
                                message: String::new(),
                                launched_ms: now,
                            },
                        );
                        ops.push(Operation::Launch { task: info });
                    }
                    let _ = plan.start_step(r, now);
                    let _ = plan.on_launched(r);
                    // The tasks left running count as running and ready.
                    for t in &live_names {
                        let _ = plan.on_task_running(r, t);
                        let _ = plan.on_task_ready(r, t);
                    }
                    view.insert(&pod_type, req.index, &m.agent_id, &offer.attributes);
                    busy.insert(pod.clone());
                    used.insert(m.offer_id.clone());
                    tracing::info!(pod = %pod, agent = %m.agent_id, new = m.new, "launching pod");
                    if name == "recovery" {
                        self.metrics.recovered(m.new);
                    }
                    accepts.push(Accept { offer_ids: vec![m.offer_id.clone()], operations: ops, filter_ms: None });
                }
            }
            self.persist_locked(inner)?;
        }
        if std::env::var("SMACK_FAULT").as_deref() == Ok("scheduler-exit-before-accept")
            && accepts.iter().any(|a| a.operations.iter().any(|o| matches!(o, Operation::Launch { .. })))
        {
            // Fault injection for tests: die after the task records are
            // persisted and before the accept reaches the master.
            tracing::warn!("SMACK_FAULT: exiting before the accept");
            std::process::exit(86);
        }
        for t in kills {
            if let Err(e) = self.client.kill(&fw, &t).await {
                tracing::warn!(task = %t, error = %e, "kill failed");
            }
        }
        for a in accepts {
            if let Err(e) = self.client.accept(&fw, &a).await {
                tracing::warn!(error = %e, "accept refused");
            }
        }
        let unused: Vec<String> = offers.iter().filter(|o| !used.contains(&o.id)).map(|o| o.id.clone()).collect();
        if !unused.is_empty() {
            self.client.decline(&fw, &Decline { offer_ids: unused, filter_ms: Some(1000) }).await?;
        }
        Ok(())
    }

    async fn handle_update(&self, status: TaskStatus) -> Result<()> {
        let fw;
        let mut stale_kill: Option<TaskId> = None;
        let mut sibling_kills: Vec<TaskId> = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            fw = inner.state.framework_id.clone().unwrap_or_default();
            let now = now_ms();
            let stale = match inner.state.tasks.get(&status.task_id) {
                None => true,
                Some(t) => {
                    let pod = inner.state.pods.get(&t.pod);
                    pod.and_then(|p| p.tasks.get(&t.task)) != Some(&t.id)
                        && pod.and_then(|p| p.hook.as_ref()).map(|h| &h.task_id) != Some(&t.id)
                }
            };
            // A decommission hook's end decides whether its pod may go.
            if let Some(t) = inner.state.tasks.get(&status.task_id) {
                if let Some(run) = inner.state.pods.get_mut(&t.pod).and_then(|p| p.hook.as_mut()) {
                    if run.task_id == t.id && !run.done && status.state.is_terminal() {
                        if status.state == TaskState::Finished {
                            run.done = true;
                            tracing::info!(pod = %t.pod, "the decommission hook succeeded");
                        } else if t.state.is_none_or(|s| !s.is_terminal()) {
                            run.failures += 1;
                            let backoff = (1000u64 << run.failures.min(6)).min(60_000);
                            run.retry_at_ms = now + backoff;
                            run.message = format!("{}: {}", status.state, status.message);
                            tracing::warn!(pod = %t.pod, failures = run.failures, message = %status.message, "the decommission hook failed");
                        }
                    }
                }
            }
            if stale && !status.state.is_terminal() {
                // A task of ours that is not its pod's current one (an agent
                // came back after its pod was replaced): a pod is never live
                // on two agents at once.
                tracing::warn!(task = %status.task_id, "killing a task that is no longer its pod's");
                stale_kill = Some(status.task_id.clone());
            }
            if let Some(t) = inner.state.tasks.get(&status.task_id) {
                if let Some(p) = inner.state.pods.get_mut(&t.pod) {
                    if p.tasks.get(&t.task) == Some(&t.id) {
                        p.lost_since_ms = match status.state {
                            TaskState::Lost => p.lost_since_ms.or(Some(now)),
                            _ => None,
                        };
                    }
                }
            }
            // A late update (e.g. a readiness result sent just before the
            // task died) never brings an ended task back.
            let late = |t: &TaskRecord| t.state.is_some_and(|s| s.is_terminal()) && !status.state.is_terminal();
            if let Some(t) = inner.state.tasks.get_mut(&status.task_id).filter(|t| !late(t)) {
                let was_terminal = t.state.is_some_and(|s| s.is_terminal());
                t.state = Some(status.state);
                t.message = status.message.clone();
                if let Some(r) = status.ready {
                    t.ready = r;
                }
                // An ended task serves nothing, whatever it last reported.
                if status.state.is_terminal() {
                    t.ready = false;
                }
                let t = t.clone();
                let current = inner.state.pods.get(&t.pod).and_then(|p| p.tasks.get(&t.task)) == Some(&t.id);
                let spec_task = inner.spec.pod(&pod_type_of(&t.pod)).and_then(|p| p.task(&t.task)).cloned();
                if current && !was_terminal {
                    let paused = inner.state.pods.get(&t.pod).is_some_and(|p| p.paused);
                    let has_readiness =
                        !paused && spec_task.as_ref().map(|s| s.readiness_check.is_some()).unwrap_or(false);
                    let goal = spec_task.as_ref().map(|s| s.goal).unwrap_or(Goal::Running);
                    let on_purpose = status.state.is_terminal() && inner.state.stopping.contains(&t.pod);
                    for (name, plan) in inner.state.plans.iter_mut() {
                        if on_purpose && name == "recovery" {
                            continue;
                        }
                        let Some(r) = plan.step_for_task(&t.pod, &t.task) else { continue };
                        let Ok(step) = plan.get(r) else { continue };
                        let in_flight = matches!(step.state, StepState::Starting | StepState::Started);
                        let complete = step.state == StepState::Complete;
                        match status.state {
                            TaskState::Running if in_flight => {
                                let _ = plan.on_task_running(r, &t.task);
                                if !has_readiness || t.ready {
                                    let _ = plan.on_task_ready(r, &t.task);
                                }
                            }
                            TaskState::Finished if goal != Goal::Running && in_flight => {
                                let _ = plan.on_task_finished(r, &t.task);
                            }
                            // A failure while launching backs the step off; a
                            // failure after COMPLETE is the recovery plan's.
                            s if s.is_terminal() && (in_flight || (complete && name == "recovery")) => {
                                let _ = plan.on_task_failed(r, now);
                            }
                            _ => {}
                        }
                    }
                    // A RUNNING-goal task that ended gets a recovery step,
                    // unless the scheduler stopped it on purpose.
                    if on_purpose {
                        inner.state.stopping.remove(&t.pod);
                    }
                    if status.state.is_terminal() && goal == Goal::Running && !on_purpose {
                        // Unless another plan is working on the pod (and has just
                        // backed its step off), recovery relaunches it.
                        let handled_elsewhere = inner.state.plans.values().filter(|p| p.name != "recovery").any(|p| {
                            p.step_for_task(&t.pod, &t.task).and_then(|r| p.get(r).ok()).is_some_and(|s| {
                                matches!(
                                    s.state,
                                    StepState::Prepared | StepState::Starting | StepState::Started | StepState::Delayed
                                )
                            })
                        });
                        if !handled_elsewhere {
                            // An essential task brings its pod back whole: its other
                            // tasks stop too. A non-essential one comes back alone.
                            if spec_task.as_ref().is_none_or(|s| s.essential) {
                                sibling_kills = live_tasks(&inner.state, &t.pod);
                            }
                            let spec = inner.spec.clone();
                            ensure_recovery_step(&mut inner.state, &t.pod, &spec);
                            if let Some(p) = inner.state.plans.get_mut("recovery") {
                                if let Ok(r) = p.step_ref("recover", &t.pod) {
                                    let st = p.get(r).map(|s| s.state).unwrap_or(StepState::Pending);
                                    if st == StepState::Complete
                                        || st == StepState::Starting
                                        || st == StepState::Started
                                    {
                                        let _ = p.on_task_failed(r, now);
                                    }
                                }
                            }
                        }
                    }
                }
                for p in inner.state.plans.values_mut() {
                    p.refresh();
                }
            }
            self.persist_locked(inner)?;
        }
        for t in stale_kill.into_iter().chain(sibling_kills) {
            let _ = self.client.kill(&fw, &t).await;
        }
        if !status.uuid.is_empty() && !status.agent_id.is_empty() {
            self.client
                .acknowledge(
                    &fw,
                    &Acknowledge { agent_id: status.agent_id, task_id: status.task_id, uuid: status.uuid },
                )
                .await?;
        }
        self.wake.notify_one();
        Ok(())
    }
}

/// A placed pod with no live task whose agent offers without its
/// reservation: the reservation never came to be (an accept lost in a
/// scheduler crash) or is gone, so the pod is placed afresh.
fn forget_lost_reservation(st: &mut SchedulerState, pod: &str, offers: &[Offer]) {
    if !live_tasks(st, pod).is_empty() {
        return;
    }
    let Some(rec) = st.pods.get_mut(pod) else { return };
    let (Some(agent), Some(rid)) = (rec.agent_id.clone(), rec.reservation_id.clone()) else { return };
    let seen_without = offers.iter().any(|o| o.agent_id == agent && o.reservation(&rid).is_none());
    if seen_without {
        tracing::warn!(pod = %pod, reservation = %rid, "the pod's reservation is not on its agent: placing it anew");
        rec.agent_id = None;
        rec.reservation_id = None;
        rec.volume_ids.clear();
        rec.ports.clear();
        rec.hostname.clear();
        rec.attributes.clear();
    }
}

/// A replace or decommission still under way, if any.
fn destructive_in_flight(st: &SchedulerState) -> Option<String> {
    if let Some(p) = st.plans.get("decommission") {
        if !p.is_complete() {
            return Some("the decommission plan is in progress".into());
        }
    }
    st.pods.values().find(|p| p.replace).map(|p| format!("pod {} is being replaced", p.name))
}

fn check_update(old: &ServiceSpec, new: &ServiceSpec) -> Result<()> {
    let refusals = spec::validate_update(old, new);
    if refusals.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
    Err(Error::Other(format!("unsafe change refused; the running target is kept:\n  {}", msgs.join("\n  "))))
}

/// Names of a pod's tasks not yet ended.
fn live_task_names(st: &SchedulerState, pod: &str) -> BTreeSet<String> {
    let Some(rec) = st.pods.get(pod) else { return BTreeSet::new() };
    rec.tasks
        .iter()
        .filter(|(_, id)| st.tasks.get(*id).is_some_and(|t| !t.state.is_some_and(|s| s.is_terminal())))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Tasks of a pod not yet ended.
fn live_tasks(st: &SchedulerState, pod: &str) -> Vec<TaskId> {
    let Some(rec) = st.pods.get(pod) else { return Vec::new() };
    rec.tasks
        .values()
        .filter(|id| st.tasks.get(*id).is_some_and(|t| !t.state.is_some_and(|s| s.is_terminal())))
        .cloned()
        .collect()
}

/// The plans a spec change yields: `update` (pods whose config changed, one
/// at a time, each waiting for readiness; and new pods of a higher count),
/// and `decommission` (pods beyond a lowered count).
fn update_plans(old: &ServiceSpec, new: &ServiceSpec, st: &SchedulerState) -> Result<Vec<Plan>> {
    let changed = spec::changed_pods(old, new);
    let mut update_phases = Vec::new();
    let mut decommission_phases = Vec::new();
    for pod in &new.pods {
        let tasks: Vec<String> = pod.tasks.iter().map(|t| t.name.clone()).collect();
        let old_count = old.pod(&pod.name).map(|p| p.count).unwrap_or(0);
        let mut steps = Vec::new();
        if changed.contains(&pod.name) {
            for i in 0..pod.count.min(old_count) {
                if st.pods.get(&pod.instance_name(i)).is_some_and(|p| !p.paused) {
                    steps.push(Step::new(&pod.instance_name(i), tasks.clone()));
                }
            }
        }
        for i in old_count..pod.count {
            steps.push(Step::new(&pod.instance_name(i), tasks.clone()));
        }
        if !steps.is_empty() {
            // Restarts of running pods wait for the pod type's update-order hook.
            let ordered = changed.contains(&pod.name) && pod.hooks.update_order.is_some() && old_count > 0;
            update_phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps).awaiting_order(ordered));
        }
        if pod.count < old_count {
            let steps: Vec<Step> = (pod.count..old_count)
                .rev()
                .map(|i| pod.instance_name(i))
                .filter(|n| st.pods.contains_key(n))
                .map(|n| Step::new(&n, tasks.clone()))
                .collect();
            if !steps.is_empty() {
                decommission_phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps));
            }
        }
    }
    let mut plans = Vec::new();
    if !update_phases.is_empty() {
        plans.push(
            Plan::from_phases("update", Strategy::Serial, update_phases).map_err(|e| Error::Other(e.to_string()))?,
        );
    }
    if !decommission_phases.is_empty() {
        plans.push(
            Plan::from_phases("decommission", Strategy::Serial, decommission_phases)
                .map_err(|e| Error::Other(e.to_string()))?,
        );
    }
    Ok(plans)
}

/// Custom plans declared in the spec, stopped until `plan start`.
fn add_custom_plans(spec: &ServiceSpec, st: &mut SchedulerState) -> Result<()> {
    for ps in spec.plans.iter().filter(|p| p.is_custom()) {
        // A running custom plan keeps its steps; a stopped one follows the spec.
        if st.plans.get(&ps.name).is_some_and(|p| !p.interrupted) {
            continue;
        }
        let mut plan = plan_from_spec(spec, ps)?;
        plan.stop();
        plan.parameters = ps.parameters.clone();
        st.plans.insert(ps.name.clone(), plan);
    }
    Ok(())
}

fn apply_update_plans(st: &mut SchedulerState, plans: Vec<Plan>) {
    // A newer change supersedes an unfinished update.
    st.plans.remove("update");
    for p in plans {
        st.plans.insert(p.name.clone(), p);
    }
}

fn pod_type_of(pod: &str) -> String {
    pod.rsplit_once('-').map(|(t, _)| t.to_string()).unwrap_or_else(|| pod.to_string())
}

fn has_work(st: &SchedulerState) -> bool {
    !st.orphans.is_empty()
        || st.plans.values().filter(|p| !p.interrupted).any(|p| {
            p.steps().any(|(_, s)| matches!(s.state, StepState::Pending | StepState::Prepared | StepState::Delayed))
        })
}

fn strategy_of(s: spec::Strategy) -> Strategy {
    match s {
        spec::Strategy::Serial => Strategy::Serial,
        spec::Strategy::Parallel => Strategy::Parallel,
        spec::Strategy::Canary => Strategy::Canary,
        spec::Strategy::Dependency => Strategy::Dependency,
    }
}

/// The deploy plan of a spec: its declared plan, or a serial phase per pod.
fn deploy_plan(spec: &ServiceSpec) -> Result<Plan> {
    plan_from_spec(spec, &spec.deploy_plan())
}

fn plan_from_spec(spec: &ServiceSpec, ps: &spec::PlanSpec) -> Result<Plan> {
    let mut phases = Vec::new();
    for ph in &ps.phases {
        let Some(pod) = spec.pod(&ph.pod) else { continue };
        let tasks: Vec<String> = match &ph.tasks {
            Some(t) => t.clone(),
            None => pod.tasks.iter().map(|t| t.name.clone()).collect(),
        };
        let indices: Vec<u32> = match &ph.steps {
            Some(s) => s.clone(),
            None => (0..pod.count).collect(),
        };
        let steps = indices.iter().map(|i| Step::new(&pod.instance_name(*i), tasks.clone())).collect();
        phases.push(Phase::new(ph.name.clone(), strategy_of(ph.strategy), steps));
    }
    Plan::from_phases(ps.name.clone(), strategy_of(ps.strategy), phases).map_err(|e| Error::Other(e.to_string()))
}

/// When the earliest backoff of a DELAYED step ends, if any ends after `now`.
fn next_backoff_end(st: &SchedulerState, now: u64) -> Option<u64> {
    st.plans
        .values()
        .flat_map(|p| p.phases.iter().flat_map(|ph| ph.steps.iter()))
        .filter(|s| s.state == StepState::Delayed)
        .filter_map(|s| s.backoff.map(|b| b.until_ms))
        .filter(|&t| t > now)
        .min()
}

/// Sleeps until the scheduler's clock reads `at` (ms); forever for `None`.
async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await,
        None => std::future::pending().await,
    }
}

fn ensure_recovery_step(st: &mut SchedulerState, pod: &str, spec: &ServiceSpec) {
    let tasks: Vec<String> = spec
        .pod(&pod_type_of(pod))
        .map(|p| p.tasks.iter().filter(|t| t.goal == Goal::Running).map(|t| t.name.clone()).collect())
        .unwrap_or_default();
    let plan = st.plans.entry("recovery".into()).or_insert_with(|| {
        Plan::from_phases("recovery", Strategy::Parallel, vec![Phase::new("recover", Strategy::Parallel, vec![])])
            .expect("an empty recovery plan is valid")
    });
    if plan.step_ref("recover", pod).is_err() {
        let mut step = Step::new(pod, tasks);
        step.state = StepState::Complete;
        plan.phases[0].steps.push(step);
    }
    plan.refresh();
}

fn to_rule(r: &spec::PlacementRule) -> Rule {
    match r {
        spec::PlacementRule::Unique { attribute } => Rule::unique(attribute),
        spec::PlacementRule::MaxPer { attribute, max } => Rule::max_per(attribute, *max as usize),
        spec::PlacementRule::GroupBy { attribute, count } => {
            Rule::GroupBy { attribute: attribute.clone(), count: count.map(|c| c as usize) }
        }
        spec::PlacementRule::Like { attribute, pattern } => Rule::like(attribute, pattern),
        spec::PlacementRule::Unlike { attribute, pattern } => Rule::unlike(attribute, pattern),
        spec::PlacementRule::ColocateWith { pod } => Rule::colocate_with(pod),
        spec::PlacementRule::Avoid { pod } => Rule::avoid(pod),
    }
}

/// What a pod instance needs from an offer: fresh, or back on its own disk.
fn requirement(spec: &ServiceSpec, st: &SchedulerState, pod: &str) -> Option<PodRequirement> {
    let pod_type = pod_type_of(pod);
    let index: usize = pod.rsplit_once('-')?.1.parse().ok()?;
    let ps: &PodSpec = spec.pod(&pod_type)?;
    let rid = format!("{}-{pod}-{}", spec.name, short());
    let mut req = PodRequirement::new(&pod_type, index, rid, ps.resources.cpus, ps.resources.mem);
    for p in &ps.resources.ports {
        req = req.port(&p.name, p.port);
    }
    for v in &ps.volumes {
        let kind = match v.kind {
            VolumeType::Root => VolumeKind::Root,
            VolumeType::Mount => VolumeKind::Mount,
        };
        req = req.volume(&v.path, v.size, kind);
    }
    for r in ps.rules() {
        req = req.rule(to_rule(r));
    }
    if let Some(p) = ps.preference(index as u32) {
        req = req.prefer(Preference { hostname: p.hostname.clone(), zone: p.zone.clone() });
    }
    if let Some(rec) = st.pods.get(pod) {
        if let (true, Some(old)) = (rec.replace, &rec.replaced_from) {
            req = req.rule(Rule::unlike("hostname", old));
        }
        if let (Some(agent), Some(res)) = (&rec.agent_id, &rec.reservation_id) {
            if !rec.replace {
                req = req.existing(ExistingPlacement {
                    agent_id: agent.clone(),
                    reservation_id: res.clone(),
                    volume_ids: rec.volume_ids.clone(),
                    ports: rec.ports.clone(),
                });
            }
        }
    }
    Some(req)
}

/// The env var that lists the service's placed pods, for services whose
/// members must know each other (Kafka's controller quorum, Cassandra's
/// seeds): a JSON array of [`PodAddress`], ordered by pod name.
pub const PODS_ENV: &str = "SMACK_PODS";

/// Where a placed pod of the service is: for `SMACK_PODS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodAddress {
    pub name: String,
    pub pod_type: String,
    pub index: u32,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub ports: BTreeMap<String, u16>,
}

/// Every pod of the service that has a place, with its address.
fn placed_pods(st: &SchedulerState) -> Vec<PodAddress> {
    st.pods
        .values()
        .filter(|p| p.agent_id.is_some())
        .map(|p| PodAddress {
            name: p.name.clone(),
            pod_type: p.pod_type.clone(),
            index: p.index,
            host: p.hostname.clone(),
            zone: p.attributes.get("zone").cloned(),
            ports: p.ports.clone(),
        })
        .collect()
}

/// `SMACK_PODS` for a pod about to launch at `host`: every placed pod of
/// the service, this one with its new place.
fn peers_env(st: &SchedulerState, pod: &str, host: &str, attrs: &Attributes, ports: &BTreeMap<String, u16>) -> String {
    let mut out: Vec<PodAddress> = placed_pods(st).into_iter().filter(|p| p.name != pod).collect();
    out.push(PodAddress {
        name: pod.to_string(),
        pod_type: pod_type_of(pod),
        index: pod.rsplit_once('-').and_then(|(_, i)| i.parse().ok()).unwrap_or(0),
        host: host.to_string(),
        zone: attrs.get("zone").cloned(),
        ports: ports.clone(),
    });
    out.sort_by(|a, b| (&a.pod_type, a.index).cmp(&(&b.pod_type, b.index)));
    serde_json::to_string(&out).unwrap_or_default()
}

/// A decommission hook's task: on the pod's agent, unreserved, with the
/// pod's env and ports so it can reach the pod's running tasks.
fn hook_task_info(
    spec: &ServiceSpec,
    rec: &PodRecord,
    h: &spec::HookSpec,
    tid: &str,
    resources: Resources,
) -> TaskInfo {
    let mut info = TaskInfo::new(tid, h.cmd.clone(), resources);
    info.name = format!("{}-{DECOMMISSION_HOOK}", rec.name);
    info.env = h.env.clone();
    info.env.insert("SERVICE_NAME".into(), spec.name.clone());
    info.env.insert("POD_INSTANCE".into(), rec.name.clone());
    info.env.insert("POD_INSTANCE_INDEX".into(), rec.index.to_string());
    info.env.insert("TASK_NAME".into(), info.name.clone());
    if let Some(pod) = spec.pod(&rec.pod_type) {
        for p in &pod.resources.ports {
            if let Some(port) = rec.ports.get(&p.name) {
                info.env.insert(p.env_name(), port.to_string());
            }
        }
    }
    info.labels.insert("pod".into(), rec.name.clone());
    info
}

#[allow(clippy::too_many_arguments)]
fn task_info(
    spec: &ServiceSpec,
    pod: &PodSpec,
    t: &spec::TaskSpec,
    instance: &str,
    index: u32,
    tid: &str,
    resources: Resources,
    m: &evaluator::OfferMatch,
) -> TaskInfo {
    let mut env: BTreeMap<String, String> = t.env.clone();
    env.insert("SERVICE_NAME".into(), spec.name.clone());
    env.insert("POD_INSTANCE".into(), instance.to_string());
    env.insert("POD_INSTANCE_INDEX".into(), index.to_string());
    env.insert("TASK_NAME".into(), format!("{instance}-{}", t.name));
    for p in &pod.resources.ports {
        if let Some(port) = m.ports.get(&p.name) {
            env.insert(p.env_name(), port.to_string());
        }
    }
    // Config files are rendered with what the scheduler knows and written by
    // the task's shell before its command runs.
    let mut vars = env.clone();
    vars.insert("HOST".into(), m.hostname.clone());
    let mut prelude = String::new();
    for c in &t.configs {
        let text = spec::render_template(&c.template, &vars).unwrap_or_else(|e| format!("# template error: {e}\n"));
        prelude.push_str(&format!(
            "mkdir -p \"$(dirname '{dest}')\" && printf '%s' '{body}' > '{dest}' && ",
            dest = c.dest.replace('\'', "'\\''"),
            body = text.replace('\'', "'\\''")
        ));
    }
    let port_of = |name: &str| m.ports.get(name).copied();
    TaskInfo {
        id: tid.to_string(),
        name: format!("{instance}-{}", t.name),
        command: format!("{prelude}{}", t.cmd),
        env,
        resources,
        reservation: Some(m.reservation_id.clone()),
        volumes: m.volumes.iter().map(|v| v.id.clone()).collect(),
        health_check: t.health_check.as_ref().and_then(|c| c.to_check_spec(port_of)),
        readiness_check: t.readiness_check.as_ref().and_then(|c| c.to_check_spec(port_of)),
        kill_grace_period_ms: t.kill_grace_period_ms,
        labels: [("pod".to_string(), instance.to_string())].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_waits_for_destructive_work_in_flight() {
        let mut st = SchedulerState::default();
        assert_eq!(destructive_in_flight(&st), None);
        st.pods.insert("db-1".into(), PodRecord { name: "db-1".into(), replace: true, ..Default::default() });
        assert_eq!(destructive_in_flight(&st).unwrap(), "pod db-1 is being replaced");
        st.pods.clear();
        let plan = Plan::from_phases(
            "decommission",
            Strategy::Serial,
            vec![Phase::new("db", Strategy::Serial, vec![Step::new("db-2", ["node"])])],
        )
        .unwrap();
        st.plans.insert("decommission".into(), plan);
        assert_eq!(destructive_in_flight(&st).unwrap(), "the decommission plan is in progress");
    }

    #[test]
    fn pod_types_come_from_instance_names() {
        assert_eq!(pod_type_of("kafka-0"), "kafka");
        assert_eq!(pod_type_of("my-db-12"), "my-db");
    }

    #[test]
    fn pods_env_lists_placed_pods_and_the_one_launching() {
        let mut st = SchedulerState::default();
        let placed = |name: &str, index: u32, host: &str, zone: &str, port: u16| PodRecord {
            name: name.into(),
            pod_type: "kafka".into(),
            index,
            agent_id: Some(format!("agent-{index}")),
            hostname: host.into(),
            attributes: [("zone".to_string(), zone.to_string())].into(),
            ports: [("client".to_string(), port)].into(),
            ..Default::default()
        };
        st.pods.insert("kafka-0".into(), placed("kafka-0", 0, "10.0.0.1", "zone-a", 9092));
        // Waiting for an offer: not placed, not listed.
        st.pods.insert("kafka-10".into(), PodRecord { name: "kafka-10".into(), index: 10, ..Default::default() });
        // Its old place is replaced by the new one.
        st.pods.insert("kafka-2".into(), placed("kafka-2", 2, "10.0.0.9", "zone-c", 9092));
        let attrs: Attributes = [("zone".to_string(), "zone-b".to_string())].into();
        let env = peers_env(&st, "kafka-2", "10.0.0.3", &attrs, &[("client".to_string(), 9094)].into());
        let pods: Vec<PodAddress> = serde_json::from_str(&env).unwrap();
        let names: Vec<(&str, &str)> = pods.iter().map(|p| (p.name.as_str(), p.host.as_str())).collect();
        assert_eq!(names, [("kafka-0", "10.0.0.1"), ("kafka-2", "10.0.0.3")]);
        assert_eq!(pods[1].zone.as_deref(), Some("zone-b"));
        assert_eq!(pods[1].ports["client"], 9094);
    }
}
