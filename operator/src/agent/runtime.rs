//! The agent's main loop: register with the master, apply the operations it
//! sends (reservations, volumes, launches, kills), watch the tasks, send
//! status updates until they are acknowledged, and checkpoint all of it on
//! the agent's own disk so a restarted agent re-attaches to its tasks.

use super::checks::{CheckEvent, CheckRunner};
use super::executor::{self, LaunchSpec, TaskProcess};
use super::metrics::{AgentMetrics, AgentSnapshot};
use crate::client::MasterClient;
use crate::protocol::{AgentEvent, RegisterAgent, RunningTaskReport};
use crate::resources::{
    now_ms, AgentId, Attributes, FrameworkId, Operation, Reservation, ReservationId, Resources, TaskId, TaskInfo,
    TaskState, TaskStatus, VolumeSource,
};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use smack_storage::durable;
use smack_storage::volumes::VolumeManager;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub master: String,
    pub token: String,
    /// Where sandboxes, ROOT volumes and the checkpoint live.
    pub work_dir: PathBuf,
    /// The host name (and address) tasks bind to and peers dial.
    pub hostname: String,
    pub attributes: Attributes,
    pub resources: Resources,
    pub heartbeat_interval: Duration,
    /// How often unacknowledged status updates are sent again.
    pub status_retry: Duration,
    /// The URL of the agent's own HTTP API (task logs), announced to the
    /// master on registration; see [`super::logs`].
    pub endpoint: Option<String>,
    /// How big tasks' stdout/stderr may grow; see [`super::logs`].
    pub log_rotation: super::logs::LogRotation,
    /// The agent's own log file, served at `/v1/log` (None: it keeps none).
    pub log_file: Option<PathBuf>,
    /// An agent that has not heard from its master for this long stops its
    /// tasks itself (fencing): by then the master has marked it unreachable
    /// and its pods may be replaced elsewhere, and a task cut off with its
    /// agent must never run beside its replacement. `None` never fences (the
    /// embedded default, where master and agents share one process).
    pub master_timeout: Option<Duration>,
}

impl AgentConfig {
    pub fn new(master: impl Into<String>, token: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            master: master.into(),
            token: token.into(),
            work_dir: work_dir.into(),
            hostname: "127.0.0.1".into(),
            attributes: Attributes::new(),
            resources: Resources::default(),
            heartbeat_interval: Duration::from_secs(1),
            status_retry: Duration::from_secs(2),
            endpoint: None,
            log_rotation: super::logs::LogRotation::default(),
            log_file: None,
            master_timeout: Some(DEFAULT_MASTER_TIMEOUT),
        }
    }
}

/// The default of [`AgentConfig::master_timeout`]: the master's default
/// agent timeout, so an agent fences itself about when the master gives up
/// on it, long before a lost pod is replaced (the permanent-failure timeout).
pub const DEFAULT_MASTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an agent whose master was last heard `silent` ago must fence
/// itself (stop every task), given its `timeout`.
pub fn master_lost(silent: Duration, timeout: Option<Duration>) -> bool {
    timeout.is_some_and(|t| silent > t)
}

/// A task as the agent checkpoints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub framework_id: FrameworkId,
    pub role: String,
    pub info: TaskInfo,
    pub sandbox: PathBuf,
    pub pid: Option<i32>,
    pub start_ticks: Option<u64>,
    pub state: TaskState,
}

/// What the agent keeps on its disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub agent_id: Option<AgentId>,
    pub reservations: BTreeMap<ReservationId, Reservation>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    /// Status updates not yet acknowledged, oldest first.
    pub pending: Vec<TaskStatus>,
}

struct Live {
    process: TaskProcess,
    kill_requested: bool,
    /// Why a requested kill happened, when the agent itself asked for it
    /// (fencing): the task's final status says so.
    kill_reason: Option<String>,
    /// Why the agent itself ended the task (a failing health check).
    failure: Option<String>,
    checks: Vec<CheckRunner>,
}

struct Inner {
    cp: Checkpoint,
    live: BTreeMap<TaskId, Live>,
}

/// A running agent. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    config: Arc<AgentConfig>,
    client: MasterClient,
    inner: Arc<Mutex<Inner>>,
    volumes: Arc<VolumeManager>,
    shutdown: Arc<Notify>,
    metrics: Arc<AgentMetrics>,
    /// When the master was last heard from (a registration, a heartbeat
    /// answered, an event): the fencing clock.
    contact: Arc<Mutex<Instant>>,
}

impl Agent {
    fn checkpoint_path(work_dir: &Path) -> PathBuf {
        work_dir.join("agent-checkpoint.json")
    }

    /// Opens the agent on its work dir: reads its checkpoint, re-attaches to
    /// tasks still alive and marks the others `LOST` (to be reported).
    pub fn open(config: AgentConfig) -> Result<Agent> {
        Self::open_with_metrics(config, AgentMetrics::new())
    }

    /// [`Agent::open`], counting into `metrics` (shared by the agents of one
    /// process, registered by the caller) and adding this agent's gauges.
    pub fn open_with_metrics(config: AgentConfig, metrics: Arc<AgentMetrics>) -> Result<Agent> {
        durable::ensure_dir(&config.work_dir)?;
        let path = Self::checkpoint_path(&config.work_dir);
        let mut cp: Checkpoint = durable::read_json(&path)?.unwrap_or_default();
        let mut live = BTreeMap::new();
        let agent_id = cp.agent_id.clone().unwrap_or_default();
        let mut lost = Vec::new();
        for (tid, rec) in cp.tasks.iter_mut() {
            if rec.state.is_terminal() {
                continue;
            }
            let adopted = match (rec.pid, rec.start_ticks) {
                (Some(pid), Some(st)) => executor::adopt_verified(pid, st),
                (Some(pid), None) => executor::adopt(pid),
                _ => None,
            };
            match adopted {
                Some(p) => {
                    tracing::info!(task = %tid, pid = p.pid(), "re-attached to a task that outlived the agent");
                    live.insert(
                        tid.clone(),
                        Live {
                            process: TaskProcess::Adopted(p),
                            kill_requested: false,
                            kill_reason: None,
                            failure: None,
                            checks: Vec::new(),
                        },
                    );
                }
                None => {
                    tracing::warn!(task = %tid, "task did not survive the agent restart: reporting it LOST");
                    rec.state = TaskState::Lost;
                    lost.push(status(
                        &agent_id,
                        rec,
                        tid,
                        TaskState::Lost,
                        "the task was gone when its agent restarted",
                    ));
                }
            }
        }
        cp.pending.extend(lost);
        let client = MasterClient::new(config.master.clone(), config.token.clone());
        let agent = Agent {
            volumes: Arc::new(VolumeManager::new(config.work_dir.clone())),
            config: Arc::new(config),
            client,
            inner: Arc::new(Mutex::new(Inner { cp, live })),
            shutdown: Arc::new(Notify::new()),
            metrics,
            contact: Arc::new(Mutex::new(Instant::now())),
        };
        agent.save()?;
        agent.add_gauges();
        let adopted: Vec<TaskId> = agent.lock().live.keys().cloned().collect();
        for tid in adopted {
            agent.watch(tid);
        }
        Ok(agent)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks by state and volume bytes, read on each scrape. Weak: the
    /// metrics must not keep a dropped agent alive.
    fn add_gauges(&self) {
        let inner = Arc::downgrade(&self.inner);
        let volumes = self.volumes.clone();
        let hostname = self.config.hostname.clone();
        self.metrics.add_agent(&self.config.hostname, move || {
            let inner = inner.upgrade()?;
            let mut snap = AgentSnapshot { hostname: hostname.clone(), ..Default::default() };
            let paths: Vec<(String, PathBuf)> = {
                let inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                for t in inner.cp.tasks.values() {
                    *snap.tasks.entry(t.state).or_default() += 1;
                }
                inner
                    .cp
                    .reservations
                    .values()
                    .flat_map(|r| r.volumes.iter())
                    .filter(|v| !v.host_path.is_empty())
                    .map(|v| (v.id.clone(), PathBuf::from(&v.host_path)))
                    .collect()
            };
            // Walked outside the lock: a big volume must not stall the agent.
            for (id, path) in paths {
                match volumes.usage_bytes(&path) {
                    Ok(bytes) => {
                        snap.volumes.insert(id, bytes);
                    }
                    Err(e) => tracing::warn!(volume = %id, error = %e, "could not measure a volume"),
                }
            }
            Some(snap)
        });
    }

    /// The metrics this agent counts into.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    fn save_locked(&self, inner: &Inner) -> Result<()> {
        durable::write_json_atomic(&Self::checkpoint_path(&self.config.work_dir), &inner.cp)?;
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let inner = self.lock();
        self.save_locked(&inner)
    }

    /// The agent's id, once registered.
    pub fn id(&self) -> Option<AgentId> {
        self.lock().cp.agent_id.clone()
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// A copy of the checkpoint, for status views and tests.
    pub fn checkpoint(&self) -> Checkpoint {
        self.lock().cp.clone()
    }

    fn registration(&self) -> RegisterAgent {
        let inner = self.lock();
        RegisterAgent {
            agent_id: inner.cp.agent_id.clone(),
            hostname: self.config.hostname.clone(),
            attributes: self.config.attributes.clone(),
            total: self.config.resources.clone(),
            reservations: inner.cp.reservations.values().cloned().collect(),
            tasks: inner
                .cp
                .tasks
                .values()
                .filter(|t| !t.state.is_terminal())
                .map(|t| RunningTaskReport {
                    framework_id: t.framework_id.clone(),
                    role: t.role.clone(),
                    info: t.info.clone(),
                    state: t.state,
                })
                .collect(),
            endpoint: self.config.endpoint.clone(),
        }
    }

    /// The sandbox of a task: from the checkpoint while the agent tracks it,
    /// else the newest `sandboxes/<task_id>-<run>` dir (a finished task's
    /// record is dropped once its final status is acknowledged).
    pub fn sandbox_of(&self, task_id: &str) -> Option<PathBuf> {
        if let Some(t) = self.lock().cp.tasks.get(task_id) {
            return Some(t.sandbox.clone());
        }
        let prefix = format!("{task_id}-");
        let rd = std::fs::read_dir(self.config.work_dir.join("sandboxes")).ok()?;
        rd.flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                // The run suffix is 8 hex digits: `t-1-…` must not match `t`.
                name.strip_prefix(&prefix)
                    .is_some_and(|run| run.len() == 8 && run.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .max_by_key(|(modified, _)| *modified)
            .map(|(_, path)| path)
    }

    /// Runs the agent until [`Agent::shutdown`] (tasks keep running: they
    /// are re-attached by the next agent on this work dir).
    pub async fn run(&self) {
        let rotation = super::logs::spawn_rotation(self.clone());
        let _stop_rotation = AbortOnDrop(rotation);
        let _stop_fencing =
            self.config.master_timeout.map(|t| AbortOnDrop(tokio::spawn(self.clone().fence_when_lost(t))));
        let mut backoff = Duration::from_millis(200);
        loop {
            let reg = self.registration();
            let registered = tokio::select! {
                r = self.client.register_agent(&reg) => r,
                _ = self.shutdown.notified() => return,
            };
            let agent_id = match registered {
                Ok(r) => r.agent_id,
                Err(e) => {
                    tracing::warn!(error = %e, "registration with the master failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.notified() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            self.heard_from_master();
            {
                let mut inner = self.lock();
                if inner.cp.agent_id.as_deref() != Some(&agent_id) {
                    inner.cp.agent_id = Some(agent_id.clone());
                    for s in inner.cp.pending.iter_mut() {
                        s.agent_id = agent_id.clone();
                    }
                    if let Err(e) = self.save_locked(&inner) {
                        tracing::error!(error = %e, "could not checkpoint the agent id");
                    }
                }
            }
            tracing::info!(agent = %agent_id, "registered with the master");
            if self.session(&agent_id).await {
                return;
            }
        }
    }

    /// One registration's life: events, heartbeats and resends. Returns true
    /// on shutdown, false when the agent must register again.
    async fn session(&self, agent_id: &str) -> bool {
        let mut events = match self.client.agent_events(agent_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not open the event stream");
                tokio::time::sleep(Duration::from_millis(300)).await;
                return false;
            }
        };
        self.resend_pending();
        let mut hb = tokio::time::interval(self.config.heartbeat_interval);
        let mut retry = tokio::time::interval(self.config.status_retry);
        loop {
            tokio::select! {
                _ = self.shutdown.notified() => return true,
                ev = events.next() => match ev {
                    Ok(Some(ev)) => {
                        self.heard_from_master();
                        self.handle(ev)
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("event stream from the master closed; registering again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return false;
                    }
                },
                _ = hb.tick() => {
                    if let Err(e) = self.client.heartbeat(agent_id).await {
                        tracing::warn!(error = %e, "heartbeat refused; registering again");
                        return false;
                    }
                    self.heard_from_master();
                }
                _ = retry.tick() => self.resend_pending(),
            }
        }
    }

    fn heard_from_master(&self) {
        *self.contact.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// The fencing watch: once the master has been silent past `timeout`,
    /// every task is killed (each with its grace) and reported `KILLED` with
    /// the reason when the master is back. It fences once per silence.
    async fn fence_when_lost(self, timeout: Duration) {
        let mut tick = tokio::time::interval((timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)));
        let mut fenced = false;
        loop {
            tick.tick().await;
            let silent = self.contact.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
            if !master_lost(silent, Some(timeout)) {
                fenced = false;
                continue;
            }
            if fenced {
                continue;
            }
            fenced = true;
            let reason = format!(
                "the agent lost its master for {}s (past its master timeout of {}s) and stopped its tasks itself, \
                 so that they never run beside replacements",
                silent.as_secs(),
                timeout.as_secs_f64()
            );
            let n = {
                let mut inner = self.lock();
                inner.live.values_mut().map(|l| l.kill_reason = Some(reason.clone())).count()
            };
            tracing::warn!(tasks = n, silent_s = silent.as_secs(), "master lost: fencing, every task is stopped");
            let agent = self.clone();
            tokio::spawn(async move { agent.kill_all(None).await });
        }
    }

    /// Stops the agent's loop. Tasks keep running.
    pub fn shutdown(&self) {
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
    }

    /// Kills every task (used by `smack up` on Ctrl-C), each with its grace
    /// (at most `max_grace`).
    pub async fn kill_all(&self, max_grace: Option<Duration>) {
        self.kill_where(|_| true, max_grace).await
    }

    /// Kills the running tasks `pred` picks, each with its grace period (at
    /// most `max_grace`), and waits for them (`smack up` stops the data
    /// plane before the clusters it writes to).
    pub async fn kill_where(&self, pred: impl Fn(&TaskInfo) -> bool, max_grace: Option<Duration>) {
        let procs: Vec<(TaskId, TaskProcess, Duration)> = {
            let mut inner = self.lock();
            let Inner { live, cp } = &mut *inner;
            live.iter_mut()
                .filter(|(id, _)| cp.tasks.get(*id).is_none_or(|t| pred(&t.info)))
                .map(|(id, l)| {
                    l.kill_requested = true;
                    let grace = cp.tasks.get(id).map(|t| t.info.kill_grace_period_ms).unwrap_or(5000);
                    let grace = Duration::from_millis(grace);
                    (id.clone(), l.process.clone(), max_grace.map_or(grace, |m| grace.min(m)))
                })
                .collect()
        };
        for _ in &procs {
            self.metrics.killed(&self.config.hostname);
        }
        let kills = procs.into_iter().map(|(id, p, grace)| async move {
            if let Err(e) = p.kill(grace).await {
                tracing::warn!(task = %id, error = %e, "kill failed");
            }
        });
        futures::future::join_all(kills).await;
    }

    fn handle(&self, ev: AgentEvent) {
        match ev {
            AgentEvent::Heartbeat => {}
            AgentEvent::Acknowledged { uuid } => {
                let mut inner = self.lock();
                let before = inner.cp.pending.len();
                let acked: Vec<TaskStatus> = inner.cp.pending.iter().filter(|s| s.uuid == uuid).cloned().collect();
                inner.cp.pending.retain(|s| s.uuid != uuid);
                for s in acked {
                    // A terminal update acknowledged: the task's record can go.
                    if s.state.is_terminal() {
                        let drop_it = inner.cp.tasks.get(&s.task_id).map(|t| t.state.is_terminal()).unwrap_or(false);
                        if drop_it {
                            inner.cp.tasks.remove(&s.task_id);
                        }
                    }
                }
                if inner.cp.pending.len() != before {
                    if let Err(e) = self.save_locked(&inner) {
                        tracing::error!(error = %e, "checkpoint failed");
                    }
                }
            }
            AgentEvent::Kill { task_id } => self.kill(&task_id),
            AgentEvent::Apply { framework_id, role, operations } => {
                let made_volume = operations.iter().any(|o| matches!(o, Operation::CreateVolume { .. }));
                for op in operations {
                    if let Err(e) = self.apply(&framework_id, &role, op) {
                        tracing::error!(error = %e, "operation failed on the agent");
                    }
                }
                if made_volume {
                    self.report_volumes();
                }
            }
        }
    }

    /// Tells the master where this agent's volumes are.
    fn report_volumes(&self) {
        let (id, reservations) = {
            let inner = self.lock();
            (inner.cp.agent_id.clone(), inner.cp.reservations.values().cloned().collect::<Vec<_>>())
        };
        let Some(id) = id else { return };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.volumes_made(&id, &reservations).await {
                tracing::warn!(error = %e, "could not report volume paths to the master");
            }
        });
    }

    fn apply(&self, framework_id: &str, role: &str, op: Operation) -> Result<()> {
        match op {
            Operation::Reserve { id, resources, labels } => {
                let mut inner = self.lock();
                inner.cp.reservations.insert(
                    id.clone(),
                    Reservation { id, role: role.to_string(), resources, labels, volumes: Vec::new() },
                );
                self.save_locked(&inner)
            }
            Operation::Unreserve { id } => {
                let mut inner = self.lock();
                inner.cp.reservations.remove(&id);
                self.save_locked(&inner)
            }
            Operation::CreateVolume { reservation, mut volume } => {
                let path = match &volume.source {
                    VolumeSource::Root { .. } => self.volumes.create_root(role, &volume.id)?,
                    VolumeSource::Mount { path } => self.volumes.create_mount(Path::new(path), &volume.id)?,
                };
                volume.host_path = path.display().to_string();
                let mut inner = self.lock();
                let res = reservation_mut(&mut inner.cp, &reservation)?;
                res.volumes.retain(|v| v.id != volume.id);
                tracing::info!(volume = %volume.id, path = %volume.host_path, "persistent volume created");
                res.volumes.push(volume);
                self.save_locked(&inner)
            }
            Operation::DestroyVolume { reservation, volume } => {
                let mut inner = self.lock();
                let res = reservation_mut(&mut inner.cp, &reservation)?;
                if let Some(v) = res.volumes.iter().find(|v| v.id == volume) {
                    if !v.host_path.is_empty() {
                        self.volumes.destroy(Path::new(&v.host_path))?;
                    }
                    tracing::info!(volume = %volume, "persistent volume destroyed");
                }
                res.volumes.retain(|v| v.id != volume);
                self.save_locked(&inner)
            }
            Operation::Launch { task } => {
                self.launch(framework_id, role, task);
                Ok(())
            }
            Operation::Kill { task } => {
                self.kill(&task);
                Ok(())
            }
        }
    }

    /// The environment a task gets: ports, volumes, where it runs.
    fn task_env(&self, framework_id: &str, task: &TaskInfo, sandbox: &Path) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let agent_id = self.id().unwrap_or_default();
        env.insert("HOST".into(), self.config.hostname.clone());
        env.insert("TASK_ID".into(), task.id.clone());
        env.insert("TASK_NAME".into(), task.name.clone());
        env.insert("FRAMEWORK_ID".into(), framework_id.to_string());
        env.insert("AGENT_ID".into(), agent_id);
        // Tasks may run smack's own subcommands (e.g. `stage run`).
        if let Ok(exe) = std::env::current_exe() {
            env.insert("SMACK_BIN".into(), smack_bin_path(&exe));
        }
        for (k, v) in &self.config.attributes {
            env.insert(k.to_uppercase().replace('-', "_"), v.clone());
        }
        let ports: Vec<String> = task.resources.ports.iter_ports().map(|p| p.to_string()).collect();
        for (i, p) in ports.iter().enumerate() {
            env.insert(format!("PORT{i}"), p.clone());
        }
        env.insert("PORTS".into(), ports.join(","));
        if let Some(rid) = &task.reservation {
            let inner = self.lock();
            if let Some(res) = inner.cp.reservations.get(rid) {
                for vid in &task.volumes {
                    if let Some(v) = res.volumes.iter().find(|v| &v.id == vid) {
                        let name: String = v
                            .container_path
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
                            .collect();
                        env.insert(format!("VOLUME_{name}"), v.host_path.clone());
                        let link = sandbox.join(&v.container_path);
                        let _ = std::fs::create_dir_all(sandbox);
                        let _ = std::os::unix::fs::symlink(&v.host_path, &link);
                    }
                }
            }
        }
        env.extend(task.env.clone());
        env
    }

    fn launch(&self, framework_id: &str, role: &str, task: TaskInfo) {
        let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let sandbox = self.config.work_dir.join("sandboxes").join(format!("{}-{run}", task.id));
        let env = self.task_env(framework_id, &task, &sandbox);
        let mut spec = LaunchSpec::from_task(&task, sandbox.clone());
        spec.env = env.clone();
        let rec = TaskRecord {
            framework_id: framework_id.to_string(),
            role: role.to_string(),
            info: task.clone(),
            sandbox: sandbox.clone(),
            pid: None,
            start_ticks: None,
            state: TaskState::Staging,
        };
        {
            let mut inner = self.lock();
            inner.cp.tasks.insert(task.id.clone(), rec);
            let _ = self.save_locked(&inner);
        }
        let agent = self.clone();
        tokio::spawn(async move {
            let tid = task.id.clone();
            match executor::launch(spec).await {
                Ok(running) => {
                    let mut checks = Vec::new();
                    if let Some(c) = &task.readiness_check {
                        checks.push(("readiness", c.clone()));
                    }
                    if let Some(c) = &task.health_check {
                        checks.push(("health", c.clone()));
                    }
                    {
                        let mut inner = agent.lock();
                        if let Some(r) = inner.cp.tasks.get_mut(&tid) {
                            r.pid = Some(running.pid());
                            r.start_ticks = running.start_ticks();
                        }
                        inner.live.insert(
                            tid.clone(),
                            Live {
                                process: TaskProcess::Launched(running),
                                kill_requested: false,
                                kill_reason: None,
                                failure: None,
                                checks: Vec::new(),
                            },
                        );
                    }
                    tracing::info!(task = %tid, "task launched");
                    agent.metrics.launched(&agent.config.hostname);
                    agent.transition(&tid, TaskState::Running, "task launched", None, None);
                    for (kind, spec) in checks {
                        agent.start_check(&tid, kind, spec, env.clone(), sandbox.clone());
                    }
                    agent.watch(tid);
                }
                Err(e) => {
                    tracing::error!(task = %tid, error = %e, "launch failed");
                    agent.transition(&tid, TaskState::Failed, &format!("launch failed: {e}"), None, None);
                }
            }
        });
    }

    fn start_check(
        &self,
        tid: &str,
        kind: &'static str,
        spec: crate::resources::CheckSpec,
        env: BTreeMap<String, String>,
        sandbox: PathBuf,
    ) {
        let (runner, mut rx) = CheckRunner::start(spec.clone(), self.config.hostname.clone(), sandbox, env);
        {
            let mut inner = self.lock();
            match inner.live.get_mut(tid) {
                Some(l) => l.checks.push(runner),
                None => return,
            }
        }
        let agent = self.clone();
        let tid = tid.to_string();
        tokio::spawn(async move {
            // The runner reports changes, not every check: failures are
            // counted from the streak length each event carries.
            let mut counted = 0u32;
            while let Some(CheckEvent { passed, consecutive_failures, message }) = rx.recv().await {
                if kind == "readiness" {
                    if passed {
                        tracing::info!(task = %tid, "task ready");
                    } else {
                        tracing::info!(task = %tid, %message, "task not ready");
                    }
                    agent.transition(
                        &tid,
                        TaskState::Running,
                        &format!("readiness check: {message}"),
                        Some(passed),
                        None,
                    );
                } else {
                    if passed {
                        counted = 0;
                    } else {
                        let new = consecutive_failures.saturating_sub(counted);
                        agent.metrics.health_checks_failed(&agent.config.hostname, u64::from(new));
                        counted = counted.max(consecutive_failures);
                    }
                    agent.transition(&tid, TaskState::Running, &format!("health check: {message}"), None, Some(passed));
                    if !passed && consecutive_failures >= spec.max_consecutive_failures {
                        tracing::warn!(task = %tid, "health check failed {consecutive_failures} times: killing the task");
                        agent.kill_unhealthy(&tid, &message);
                        return;
                    }
                }
            }
        });
    }

    fn kill_unhealthy(&self, tid: &str, why: &str) {
        let proc_and_grace = {
            let mut inner = self.lock();
            let grace = inner.cp.tasks.get(tid).map(|t| t.info.kill_grace_period_ms).unwrap_or(5000);
            inner.live.get_mut(tid).map(|l| {
                l.failure = Some(format!("health check failed: {why}"));
                (l.process.clone(), Duration::from_millis(grace))
            })
        };
        if let Some((p, grace)) = proc_and_grace {
            // Not a requested kill: the exit is reported FAILED.
            tokio::spawn(async move {
                let _ = p.kill(grace).await;
            });
        }
    }

    /// Watches a live task until it ends, then reports its final state.
    fn watch(&self, tid: TaskId) {
        let agent = self.clone();
        tokio::spawn(async move {
            let Some(process) = agent.lock().live.get(&tid).map(|l| l.process.clone()) else { return };
            let exit = process.wait().await;
            let (kill_requested, kill_reason, failure) = {
                let mut inner = agent.lock();
                let l = inner.live.remove(&tid);
                l.map(|l| (l.kill_requested, l.kill_reason, l.failure)).unwrap_or((false, None, None))
            };
            let (state, message) = match (exit, failure) {
                (_, Some(why)) => (TaskState::Failed, why),
                (exit, None) if kill_requested && kill_reason.is_some() => {
                    let why = kill_reason.unwrap_or_default();
                    (TaskState::Killed, exit.map_or(why.clone(), |e| format!("{why} ({e})")))
                }
                (exit, None) => match exit {
                    Some(e) => (e.task_state(kill_requested), e.to_string()),
                    None if kill_requested => (TaskState::Killed, "killed".to_string()),
                    None => {
                        (TaskState::Failed, "the re-attached process ended; its exit status is unknown".to_string())
                    }
                },
            };
            tracing::info!(task = %tid, state = %state, %message, "task ended");
            agent.transition(&tid, state, &message, None, None);
        });
    }

    fn kill(&self, tid: &str) {
        let found = {
            let mut inner = self.lock();
            let grace = inner.cp.tasks.get(tid).map(|t| t.info.kill_grace_period_ms).unwrap_or(5000);
            inner.live.get_mut(tid).map(|l| {
                l.kill_requested = true;
                (l.process.clone(), Duration::from_millis(grace))
            })
        };
        match found {
            Some((p, grace)) => {
                self.metrics.killed(&self.config.hostname);
                let tid = tid.to_string();
                tokio::spawn(async move {
                    if let Err(e) = p.kill(grace).await {
                        tracing::warn!(task = %tid, error = %e, "kill failed");
                    }
                });
            }
            None => {
                let known = self.lock().cp.tasks.get(tid).map(|t| t.state);
                match known {
                    Some(s) if !s.is_terminal() => {
                        self.metrics.killed(&self.config.hostname);
                        self.transition(tid, TaskState::Killed, "killed before it started", None, None)
                    }
                    _ => tracing::info!(task = %tid, "kill of a task this agent does not run"),
                }
            }
        }
    }

    /// Records a state change and queues its status update.
    fn transition(&self, tid: &str, state: TaskState, message: &str, ready: Option<bool>, healthy: Option<bool>) {
        let st = {
            let mut inner = self.lock();
            let agent_id = inner.cp.agent_id.clone().unwrap_or_default();
            let Some(rec) = inner.cp.tasks.get_mut(tid) else { return };
            if rec.state.is_terminal() {
                return;
            }
            rec.state = state;
            let mut st = status(&agent_id, rec, tid, state, message);
            st.ready = ready;
            st.healthy = healthy;
            inner.cp.pending.push(st.clone());
            if let Err(e) = self.save_locked(&inner) {
                tracing::error!(error = %e, "checkpoint failed");
            }
            st
        };
        let agent = self.clone();
        tokio::spawn(async move {
            if !st.agent_id.is_empty() {
                let _ = agent.client.status_update(&st.agent_id, &st).await;
            }
        });
    }

    fn resend_pending(&self) {
        let pending = self.lock().cp.pending.clone();
        if pending.is_empty() {
            return;
        }
        let agent = self.clone();
        tokio::spawn(async move {
            for st in pending {
                if st.agent_id.is_empty() {
                    continue;
                }
                if let Err(e) = agent.client.status_update(&st.agent_id, &st).await {
                    tracing::debug!(error = %e, "status resend failed; will retry");
                    break;
                }
            }
        });
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn reservation_mut<'a>(cp: &'a mut Checkpoint, id: &str) -> Result<&'a mut Reservation> {
    cp.reservations.get_mut(id).ok_or_else(|| Error::Other(format!("reservation {id} unknown on this agent")))
}

fn status(agent_id: &str, rec: &TaskRecord, tid: &str, state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        uuid: uuid::Uuid::new_v4().to_string(),
        task_id: tid.to_string(),
        framework_id: rec.framework_id.clone(),
        agent_id: agent_id.to_string(),
        state,
        message: message.to_string(),
        ready: None,
        healthy: None,
        timestamp_ms: now_ms(),
    }
}

/// The path tasks run smack from. Once the binary is replaced on disk (a
/// rebuild, an upgrade), Linux names the running one `PATH (deleted)`; the
/// new file at PATH is the one to run.
fn smack_bin_path(exe: &std::path::Path) -> String {
    let s = exe.display().to_string();
    s.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod smack_bin_tests {
    use super::master_lost;
    use std::time::Duration;
    #[test]
    fn an_agent_fences_only_past_its_master_timeout() {
        let t = Some(Duration::from_secs(10));
        assert!(!master_lost(Duration::from_secs(3), t));
        assert!(!master_lost(Duration::from_secs(10), t));
        assert!(master_lost(Duration::from_millis(10_001), t));
        assert!(!master_lost(Duration::from_secs(3600), None), "no timeout never fences");
    }

    #[test]
    fn a_replaced_binary_is_run_from_its_path() {
        let p = std::path::Path::new("/opt/smack/bin/smack (deleted)");
        assert_eq!(super::smack_bin_path(p), "/opt/smack/bin/smack");
        assert_eq!(super::smack_bin_path(std::path::Path::new("/usr/bin/smack")), "/usr/bin/smack");
    }
}
