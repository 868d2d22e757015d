//! The thin driver: [`ServiceScheduler`] holds the spec and state behind a
//! lock, subscribes to the master, feeds each event to a pure decision
//! function ([`super::decide`]), persists the state, then sends what was
//! decided. It owns no scheduling logic of its own.

use super::commands;
use super::decide::{self, Decisions, OfferCall, OfferFlow, RandomIds, DECLINE_FILTER_MS};
use super::state::{SchedulerState, SpecDiff};
use crate::client::MasterClient;
use crate::protocol::{Decline, FrameworkEvent, Reconcile, Subscribe};
use crate::resources::{now_ms, Offer, Operation, TaskId, TaskStatus};
use crate::scheduler::metrics::SchedulerMetrics;
use crate::scheduler::plan::Plan;
use crate::scheduler::spec::ServiceSpec;
use crate::state::StateStore;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

const STATE_KEY: &str = "state";

/// The default permanent-failure timeout: 5 minutes.
pub const PERMANENT_FAILURE_MS: u64 = 5 * 60 * 1000;

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
    pub(super) wake: Arc<Notify>,
    /// `update-order` hooks running now, as `plan/phase` ([`super::update_order`]).
    pub(super) order_hooks: Arc<Mutex<BTreeSet<String>>>,
    /// Recoveries and offer evaluations, served by [`crate::scheduler::api`] at `/metrics`.
    pub(crate) metrics: Arc<SchedulerMetrics>,
}

pub(super) struct Inner {
    pub(super) spec: ServiceSpec,
    pub(super) state: SchedulerState,
}

fn key(service: &str) -> String {
    format!("services/{service}/{STATE_KEY}")
}

impl ServiceScheduler {
    /// Opens the scheduler for `spec`: resumes its persisted state if any,
    /// else starts with a fresh deploy plan. A changed spec is refused here
    /// if unsafe, keeping the old target.
    pub fn open(store: Arc<dyn StateStore>, client: MasterClient, yaml: &str, file: &str) -> Result<Self> {
        let name = ServiceSpec::from_yaml(yaml, file)?.name;
        let k = key(&name);
        let saved: Option<SchedulerState> = match store.get(&k)? {
            Some(b) => Some(serde_json::from_slice(&b).map_err(|source| Error::Codec { key: k.clone(), source })?),
            None => None,
        };
        let (spec, state) = commands::open(saved, yaml, file)?;
        let metrics = SchedulerMetrics::new(&spec.name);
        let s = ServiceScheduler {
            metrics,
            permanent_failure_ms: PERMANENT_FAILURE_MS,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn persist_locked(&self, inner: &Inner) -> Result<()> {
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

    /// Runs a pure command on the state, persists it, and wakes the loop.
    fn command<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        let mut inner = self.lock();
        let out = f(&mut inner)?;
        self.persist_locked(&inner)?;
        drop(inner);
        self.wake.notify_one();
        Ok(out)
    }

    /// Applies an operator command to a plan and persists it.
    pub fn with_plan<T>(&self, plan: &str, f: impl FnOnce(&mut Plan) -> Result<T>) -> Result<T> {
        self.command(|inner| commands::with_plan(&mut inner.state, plan, f))
    }

    /// Applies a changed spec to the running service: refused with the
    /// reasons (and the old target kept) when unsafe; otherwise an `update`
    /// plan rolls the pods whose config changed, new pods are deployed, and
    /// removed ones decommissioned.
    pub fn update_spec(&self, yaml: &str, file: &str) -> Result<Vec<String>> {
        let mut inner = self.lock();
        let Inner { spec, state } = &mut *inner;
        let plans = commands::update_spec(state, spec, yaml, file, now_ms())?;
        self.persist_locked(&inner)?;
        drop(inner);
        self.wake.notify_one();
        Ok(plans)
    }

    /// `service delete`: decommission every pod (tasks killed, volumes
    /// destroyed, reservations released). The scheduler keeps running
    /// until the caller stops it.
    pub fn delete_all(&self) -> Result<()> {
        self.command(|inner| commands::delete_all(&mut inner.state, &inner.spec))
    }

    /// What applying `yaml` would change, without changing anything.
    pub fn diff_spec(&self, yaml: &str, file: &str) -> Result<SpecDiff> {
        let inner = self.lock();
        commands::diff_spec(&inner.state, &inner.spec, yaml, file)
    }

    /// `pod pause`: relaunch the pod's tasks with `sleep` in place of their
    /// commands, on their own disk; `pod resume` ends it.
    pub async fn pause_pod(&self, pod: &str, paused: bool) -> Result<()> {
        {
            let mut inner = self.lock();
            if !commands::set_paused(&mut inner.state, pod, paused)? {
                return Ok(());
            }
            self.persist_locked(&inner)?;
        }
        self.restart_pod(pod).await
    }

    /// `pod restart`: kill the pod's tasks; they come back in place.
    pub async fn restart_pod(&self, pod: &str) -> Result<()> {
        let (fw, tasks) = commands::pod_tasks(&self.lock().state, pod)?;
        for t in tasks {
            self.client.kill(&fw, &t).await?;
        }
        Ok(())
    }

    /// `pod replace`: kill the pod's tasks and place it anew with fresh
    /// volumes; its old reservation is destroyed when next offered.
    pub async fn replace_pod(&self, pod: &str) -> Result<()> {
        let (fw, tasks) = {
            let mut inner = self.lock();
            let Inner { spec, state } = &mut *inner;
            let out = commands::replace_pod(state, spec, pod)?;
            self.persist_locked(&inner)?;
            out
        };
        for t in tasks {
            let _ = self.client.kill(&fw, &t).await;
        }
        self.wake.notify_one();
        Ok(())
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

    /// Decides under the lock, persists when the decision says so, and
    /// returns the decisions with the framework id to send them as.
    fn decide(&self, f: impl FnOnce(&mut Inner) -> Decisions) -> Result<(String, Decisions)> {
        let mut inner = self.lock();
        let d = f(&mut inner);
        if d.persist {
            self.persist_locked(&inner)?;
        }
        Ok((inner.state.framework_id.clone().unwrap_or_default(), d))
    }

    async fn session(&self) -> Result<()> {
        let (fid, role, name) = {
            let inner = self.lock();
            (inner.state.framework_id.clone(), inner.spec.role.clone(), inner.spec.name.clone())
        };
        let sub = Subscribe { framework_id: fid, name, role, weight: 1.0, api_url: self.api_url.clone() };
        let mut events = self.client.subscribe(&sub).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut flow = OfferFlow::default();
        let mut next_due: Option<u64> = None;
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev? else { return Err(Error::Other("the master closed the stream".into())) };
                    match ev {
                        FrameworkEvent::Subscribed { framework_id } => {
                            let (fw, d) = self.decide(|i| decide::on_subscribed(&mut i.state, &framework_id, &mut flow))?;
                            tracing::info!(framework = %fw, "scheduler subscribed");
                            self.execute(&fw, d).await?;
                        }
                        FrameworkEvent::Offers { offers } => self.handle_offers(offers).await?,
                        FrameworkEvent::Update { status } => {
                            flow.on_status(&status);
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
            let timeout = self.permanent_failure_ms;
            let (fw, d) = self.decide(|i| decide::replace_expired(&mut i.state, &i.spec, now_ms(), timeout))?;
            self.execute(&fw, d).await?;
            self.start_update_order_hooks();
            let (fw, d) = {
                let mut inner = self.lock();
                let now = now_ms();
                let d = decide::on_tick(&mut inner.state, now, &mut flow);
                next_due = inner.state.next_backoff_end(now);
                (inner.state.framework_id.clone().unwrap_or_default(), d)
            };
            self.execute(&fw, d).await?;
        }
    }

    async fn handle_offers(&self, offers: Vec<Offer>) -> Result<()> {
        let (fw, d) = self.decide(|i| decide::on_offers(&mut i.state, &i.spec, &offers, now_ms(), &mut RandomIds))?;
        for (&(stage, pass), &n) in &d.evaluations.0 {
            self.metrics.evaluated_n(stage, pass, n);
        }
        for &permanent in &d.recoveries {
            self.metrics.recovered(permanent);
        }
        if std::env::var("SMACK_FAULT").as_deref() == Ok("scheduler-exit-before-accept")
            && d.accepts.iter().any(|a| a.operations.iter().any(|o| matches!(o, Operation::Launch { .. })))
        {
            // Fault injection for tests: die after the task records are
            // persisted and before the accept reaches the master.
            tracing::warn!("SMACK_FAULT: exiting before the accept");
            std::process::exit(86);
        }
        self.execute(&fw, d).await
    }

    async fn handle_update(&self, status: TaskStatus) -> Result<()> {
        let (fw, d) = self.decide(|i| decide::on_status(&mut i.state, &i.spec, &status, now_ms()))?;
        self.execute(&fw, d).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Sends decisions (their state already persisted): kills and accepts
    /// are best effort, logged when refused; the rest fails the session.
    async fn execute(&self, fw: &str, d: Decisions) -> Result<()> {
        for t in &d.kills {
            if let Err(e) = self.client.kill(fw, t).await {
                tracing::warn!(task = %t, error = %e, "kill failed");
            }
        }
        for a in &d.accepts {
            if let Err(e) = self.client.accept(fw, a).await {
                tracing::warn!(error = %e, "accept refused");
            }
        }
        if !d.declines.is_empty() {
            let decline = Decline { offer_ids: d.declines, filter_ms: Some(DECLINE_FILTER_MS) };
            self.client.decline(fw, &decline).await?;
        }
        if let Some(ack) = &d.acknowledge {
            self.client.acknowledge(fw, ack).await?;
        }
        if !d.reconcile.is_empty() {
            let ids: Vec<TaskId> = d.reconcile;
            self.client.reconcile(fw, &Reconcile { task_ids: ids }).await?;
        }
        match d.offer_call {
            Some(OfferCall::Revive) => self.client.revive(fw).await?,
            Some(OfferCall::Suppress) => self.client.suppress(fw).await?,
            None => {}
        }
        if !d.replace.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Sleeps until the scheduler's clock reads `at` (ms); forever for `None`.
async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await,
        None => std::future::pending().await,
    }
}
