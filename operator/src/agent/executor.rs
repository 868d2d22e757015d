//! Task processes.
//!
//! Each task runs as `/bin/sh -c COMMAND` in its own process group (the
//! shell is the group leader, so its pid is the group id) with its sandbox
//! directory as working directory, stdin from `/dev/null` and stdout/stderr
//! appended to `SANDBOX/stdout` and `SANDBOX/stderr`. The files are opened
//! with `O_APPEND`, which is what lets the agent rotate them under a running
//! task by copy and truncate (see [`super::logs`]): after a truncate the
//! task's next write lands at the start of the emptied file, not at its old
//! offset.
//!
//! The environment is *not* inherited from the agent (which may hold the
//! cluster token): a task sees `PATH` (the agent's, unless the task sets its
//! own), the task's env and `SMACK_SANDBOX`.
//!
//! Limits: where `/sys/fs/cgroup` is a cgroup v2 hierarchy with the `cpu` and
//! `memory` controllers and the agent may write to it, every task gets
//! `/sys/fs/cgroup/smack/<task_id>` with `cpu.max` and `memory.max` set from
//! its resources. The pid is moved there right after spawn, so a process
//! the task forks in its first instants may stay outside. Elsewhere the
//! limits are only accounted ([`LimitsMode::Accounted`] says why).
//!
//! rlimits: only `RLIMIT_NOFILE`, applied by the task's own shell
//! (`ulimit -n N`) before the command runs. nix 0.30 has no `prlimit` and
//! `pre_exec` needs `unsafe`, which the workspace forbids; the shell builtin
//! has neither problem nor a window where the command runs unlimited.
//!
//! Exits are detected by a reaper task that owns the `Child`; tasks outlive
//! the agent (no kill-on-drop) and are re-attached with [`adopt`].

use crate::error::{Error, Result};
use crate::resources::{TaskInfo, TaskState};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where cgroup v2 is expected.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup (under the root) holding one child cgroup per task.
const CGROUP_PARENT: &str = "smack";
/// `cpu.max` period in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// How long `kill` waits for the group to go after SIGKILL before giving up.
const AFTER_SIGKILL: Duration = Duration::from_secs(10);
/// How often group liveness is polled while killing.
const KILL_POLL: Duration = Duration::from_millis(25);
/// How often an adopted (non-child) process is polled for liveness.
const ADOPT_POLL: Duration = Duration::from_millis(200);
/// Used when neither the task nor the agent has a `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and where.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub task_id: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// The task's working directory; created if missing.
    pub sandbox: PathBuf,
    /// cgroup `cpu.max` quota in cpus; 0 means unlimited.
    pub cpus: f64,
    /// cgroup `memory.max` in MiB; 0 means unlimited.
    pub mem_mb: u64,
    /// The grace between SIGTERM and SIGKILL the task asked for.
    pub kill_grace: Duration,
    /// `RLIMIT_NOFILE` (soft and hard) for the task, when set.
    pub nofile: Option<u64>,
}

impl LaunchSpec {
    /// The spec for a framework's task, run in `sandbox`.
    pub fn from_task(task: &TaskInfo, sandbox: impl Into<PathBuf>) -> Self {
        LaunchSpec {
            task_id: task.id.clone(),
            command: task.command.clone(),
            env: task.env.clone(),
            sandbox: sandbox.into(),
            cpus: task.resources.cpus,
            mem_mb: task.resources.mem,
            kill_grace: Duration::from_millis(task.kill_grace_period_ms),
            nofile: None,
        }
    }
}

/// Whether a task's cpu and memory are enforced or only accounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsMode {
    /// The task runs in this cgroup v2 directory with `cpu.max` and `memory.max`.
    Enforced { cgroup: PathBuf },
    /// Resources are only booked by the master; nothing stops the task from
    /// using more.
    Accounted { reason: String },
}

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskExit {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl TaskExit {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The task state this exit means: `FINISHED` for code 0, `KILLED` when
    /// the agent asked for the kill, `FAILED` otherwise.
    pub fn task_state(&self, kill_requested: bool) -> TaskState {
        if self.success() {
            TaskState::Finished
        } else if kill_requested {
            TaskState::Killed
        } else {
            TaskState::Failed
        }
    }
}

impl fmt::Display for TaskExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
            (None, None) => f.write_str("ended, status unknown"),
        }
    }
}

/// A task process this agent launched (and is the parent of).
#[derive(Debug, Clone)]
pub struct RunningTask {
    task_id: String,
    pid: i32,
    start_ticks: Option<u64>,
    sandbox: PathBuf,
    kill_grace: Duration,
    limits: LimitsMode,
    exit: watch::Receiver<Option<TaskExit>>,
}

/// Launches a task: sandbox, output files, its own process group, limits.
pub async fn launch(spec: LaunchSpec) -> Result<RunningTask> {
    tokio::fs::create_dir_all(&spec.sandbox)
        .await
        .map_err(|e| Error::io(format!("creating sandbox {}", spec.sandbox.display()), e))?;
    let stdout = open_append(&spec.sandbox.join("stdout")).await?;
    let stderr = open_append(&spec.sandbox.join("stderr")).await?;

    let script = match spec.nofile {
        Some(n) => format!("ulimit -n {n} || exit 126\n{}", spec.command),
        None => spec.command.clone(),
    };
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(&spec.sandbox)
        .env_clear()
        .envs(task_env(&spec.env, &spec.sandbox))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("spawning task {}", spec.task_id), e))?;
    let pid =
        child.id().ok_or_else(|| Error::Other(format!("task {}: no pid right after spawn", spec.task_id)))? as i32;

    let limits = apply_limits(&spec, pid);
    let start_ticks = proc_stat(pid).map(|s| s.start_ticks);
    tracing::debug!(task = %spec.task_id, pid, sandbox = %spec.sandbox.display(), "task process spawned");

    let (tx, rx) = watch::channel(None);
    let cgroup = match &limits {
        LimitsMode::Enforced { cgroup } => Some(cgroup.clone()),
        LimitsMode::Accounted { .. } => None,
    };
    let task_id = spec.task_id.clone();
    tokio::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => TaskExit { code: status.code(), signal: status.signal() },
            Err(e) => {
                tracing::warn!(task = %task_id, pid, "waiting for task failed: {e}");
                TaskExit { code: None, signal: None }
            }
        };
        tracing::debug!(task = %task_id, pid, "task process {exit}");
        tx.send_replace(Some(exit));
        if let Some(dir) = cgroup {
            // Fails while escaped members remain; the next launch reuses it.
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!(task = %task_id, "keeping cgroup {}: {e}", dir.display());
            }
        }
    });

    Ok(RunningTask {
        task_id: spec.task_id,
        pid,
        start_ticks,
        sandbox: spec.sandbox,
        kill_grace: spec.kill_grace,
        limits,
        exit: rx,
    })
}

impl RunningTask {
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The process group id; equal to the pid.
    pub fn pgid(&self) -> i32 {
        self.pid
    }

    /// The process's start time (clock ticks after boot, `/proc/PID/stat`
    /// field 22): checkpoint it with the pid and pass it to
    /// [`adopt_verified`] so a reused pid is not mistaken for the task.
    pub fn start_ticks(&self) -> Option<u64> {
        self.start_ticks
    }

    pub fn sandbox(&self) -> &Path {
        &self.sandbox
    }

    /// The grace the task was launched with.
    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }

    pub fn limits(&self) -> &LimitsMode {
        &self.limits
    }

    /// The exit, if the process has already ended.
    pub fn try_exit(&self) -> Option<TaskExit> {
        *self.exit.borrow()
    }

    /// Waits for the process (the group leader) to exit.
    pub async fn wait(&self) -> TaskExit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The reaper always sends before it ends.
                return (*rx.borrow()).unwrap_or(TaskExit { code: None, signal: None });
            }
        }
    }

    /// SIGTERM to the whole group; after `grace`, SIGKILL to the group.
    /// Returns once the leader has exited and no live process is left in
    /// the group, with the leader's exit.
    pub async fn kill(&self, grace: Duration) -> Result<TaskExit> {
        if let Some(exit) = self.settled() {
            return Ok(exit);
        }
        signal_group(self.pid, Signal::SIGTERM);
        if let Some(exit) = self.settle(Instant::now() + grace).await {
            return Ok(exit);
        }
        tracing::info!(task = %self.task_id, pid = self.pid, "still running {grace:?} after SIGTERM, sending SIGKILL");
        signal_group(self.pid, Signal::SIGKILL);
        if let LimitsMode::Enforced { cgroup } = &self.limits {
            // Also reaches processes that left the group (setsid).
            let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
        }
        self.settle(Instant::now() + AFTER_SIGKILL).await.ok_or_else(|| {
            Error::Other(format!(
                "task {} (pid {}) still running {AFTER_SIGKILL:?} after SIGKILL",
                self.task_id, self.pid
            ))
        })
    }

    fn settled(&self) -> Option<TaskExit> {
        self.try_exit().filter(|_| !process_group_alive(self.pid))
    }

    async fn settle(&self, deadline: Instant) -> Option<TaskExit> {
        let mut rx = self.exit.clone();
        loop {
            if let Some(exit) = self.settled() {
                return Some(exit);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let nap = tokio::time::sleep_until(deadline.min(now + KILL_POLL));
            if self.try_exit().is_none() {
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = nap => {}
                }
            } else {
                nap.await;
            }
        }
    }
}

/// A task process found alive after an agent restart. It is not this
/// agent's child, so its exit status cannot be known: the caller reports
/// it `FAILED` or `LOST` when it goes.
#[derive(Debug, Clone)]
pub struct AdoptedTask {
    pid: i32,
    start_ticks: u64,
}

/// Re-attaches to `pid` if it is alive (not a zombie) and leads its own
/// process group.
pub fn adopt(pid: i32) -> Option<AdoptedTask> {
    let stat = proc_stat(pid)?;
    (stat.live() && stat.pgrp == pid).then_some(AdoptedTask { pid, start_ticks: stat.start_ticks })
}

/// [`adopt`], and the process must also have started at `start_ticks`
/// (from [`RunningTask::start_ticks`]), so a reused pid is refused.
pub fn adopt_verified(pid: i32, start_ticks: u64) -> Option<AdoptedTask> {
    adopt(pid).filter(|t| t.start_ticks == start_ticks)
}

impl AdoptedTask {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The process group id; equal to the pid.
    pub fn pgid(&self) -> i32 {
        self.pid
    }

    pub fn start_ticks(&self) -> u64 {
        self.start_ticks
    }

    /// Whether the process itself (not its group) is still alive.
    pub fn is_alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.live() && s.start_ticks == self.start_ticks)
    }

    /// Waits, polling every 200 ms, until the process is gone or a zombie.
    pub async fn wait(&self) {
        while self.is_alive() {
            tokio::time::sleep(ADOPT_POLL).await;
        }
    }

    /// As [`RunningTask::kill`]: SIGTERM to the group, SIGKILL after
    /// `grace`; returns once no live process is left in the group.
    pub async fn kill(&self, grace: Duration) -> Result<()> {
        if !self.group_alive() {
            return Ok(());
        }
        signal_group(self.pid, Signal::SIGTERM);
        if self.settle(Instant::now() + grace).await {
            return Ok(());
        }
        tracing::info!(pid = self.pid, "adopted task still running {grace:?} after SIGTERM, sending SIGKILL");
        signal_group(self.pid, Signal::SIGKILL);
        if self.settle(Instant::now() + AFTER_SIGKILL).await {
            Ok(())
        } else {
            Err(Error::Other(format!("adopted task (pid {}) still running {AFTER_SIGKILL:?} after SIGKILL", self.pid)))
        }
    }

    fn group_alive(&self) -> bool {
        self.is_alive() || process_group_alive(self.pid)
    }

    async fn settle(&self, deadline: Instant) -> bool {
        loop {
            if !self.group_alive() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep_until(deadline.min(now + KILL_POLL)).await;
        }
    }
}

/// Either kind of task process, for callers that keep both in one table.
#[derive(Debug, Clone)]
pub enum TaskProcess {
    Launched(RunningTask),
    Adopted(AdoptedTask),
}

impl TaskProcess {
    pub fn pid(&self) -> i32 {
        match self {
            TaskProcess::Launched(t) => t.pid(),
            TaskProcess::Adopted(t) => t.pid(),
        }
    }

    /// Waits for the exit; `None` when it cannot be known (adopted).
    pub async fn wait(&self) -> Option<TaskExit> {
        match self {
            TaskProcess::Launched(t) => Some(t.wait().await),
            TaskProcess::Adopted(t) => {
                t.wait().await;
                None
            }
        }
    }

    /// Kills the group; the exit when it can be known.
    pub async fn kill(&self, grace: Duration) -> Result<Option<TaskExit>> {
        match self {
            TaskProcess::Launched(t) => t.kill(grace).await.map(Some),
            TaskProcess::Adopted(t) => t.kill(grace).await.map(|()| None),
        }
    }
}

/// Whether any process that is not a zombie is in process group `pgid`.
///
/// Zombies are skipped: orphans whose new parent does not reap them (as
/// with some container inits) would otherwise keep a group "alive" forever.
pub fn process_group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    if let Err(Errno::ESRCH) = killpg(Pid::from_raw(pgid), None) {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        // No /proc to tell zombies apart: trust the signal probe.
        return true;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(proc_stat)
        .any(|s| s.pgrp == pgid && s.live())
}

/// The environment a task (and its command checks) runs with: `PATH`, the
/// task's env, `SMACK_SANDBOX`. Nothing else of the agent's.
pub fn task_env(env: &BTreeMap<String, String>, sandbox: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()));
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.insert("SMACK_SANDBOX".to_string(), sandbox.display().to_string());
    out
}

fn signal_group(pgid: i32, sig: Signal) {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, "sending {} to process group: {e}", sig.as_str()),
    }
}

async fn open_append(path: &Path) -> Result<std::fs::File> {
    let f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    Ok(f.into_std().await)
}

/// The fields of `/proc/PID/stat` this module needs.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    state: char,
    pgrp: i32,
    start_ticks: u64,
}

impl ProcStat {
    fn live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) state ppid pgrp ... starttime ...`; `comm` may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

// ---- cgroup v2 ----

/// Whether this host can enforce limits: the parent cgroup or why not.
/// Probed once; the answer is logged once.
fn cgroup_support() -> &'static std::result::Result<PathBuf, String> {
    static SUPPORT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let probed = probe_cgroup_v2(Path::new(CGROUP_ROOT));
        match &probed {
            Ok(dir) => tracing::info!("task cpu and memory limits enforced with cgroup v2 under {}", dir.display()),
            Err(reason) => tracing::warn!("task cpu and memory limits are only accounted, not enforced: {reason}"),
        }
        probed
    })
}

/// What limits mode tasks launched on this host get, without launching one.
pub fn host_limits_mode() -> LimitsMode {
    match cgroup_support() {
        Ok(dir) => LimitsMode::Enforced { cgroup: dir.clone() },
        Err(reason) => LimitsMode::Accounted { reason: reason.clone() },
    }
}

/// Checks for cgroup v2 with `cpu` and `memory` at `root`, then makes
/// `root/smack` with both controllers enabled for its children.
fn probe_cgroup_v2(root: &Path) -> std::result::Result<PathBuf, String> {
    let controllers_file = root.join("cgroup.controllers");
    let controllers = std::fs::read_to_string(&controllers_file).map_err(|e| {
        format!(
            "no cgroup v2 hierarchy at {} ({}: {e}); the host uses cgroup v1 or a hybrid layout",
            root.display(),
            controllers_file.display()
        )
    })?;
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = ["cpu", "memory"].into_iter().filter(|c| !have.contains(c)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 at {} lacks the {} controller(s) (has: {})",
            root.display(),
            missing.join(", "),
            controllers.trim()
        ));
    }
    enable_controllers(root)?;
    let parent = root.join(CGROUP_PARENT);
    match std::fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", parent.display())),
    }
    enable_controllers(&parent)?;
    Ok(parent)
}

fn enable_controllers(dir: &Path) -> std::result::Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    let enabled: Vec<&str> = current.split_whitespace().collect();
    if enabled.contains(&"cpu") && enabled.contains(&"memory") {
        return Ok(());
    }
    std::fs::write(&file, "+cpu +memory").map_err(|e| {
        format!(
            "cannot enable cpu and memory in {} (is the agent root, or is the cgroup delegated?): {e}",
            file.display()
        )
    })
}

/// A cgroup directory name from a task id: no separators, no dot-names.
fn cgroup_name(task_id: &str) -> String {
    let name: String = task_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("task_{name}")
    } else {
        name
    }
}

/// `cpu.max` for `cpus` (0 or less: unlimited).
fn cpu_max(cpus: f64) -> String {
    if cpus > 0.0 {
        let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
        format!("{quota} {CPU_PERIOD_US}")
    } else {
        format!("max {CPU_PERIOD_US}")
    }
}

/// `memory.max` for `mem_mb` (0: unlimited).
fn memory_max(mem_mb: u64) -> String {
    if mem_mb > 0 {
        (mem_mb * 1024 * 1024).to_string()
    } else {
        "max".to_string()
    }
}

/// Makes the task's cgroup under `parent`, sets its limits, moves `pid` in.
fn place_in_cgroup(parent: &Path, spec: &LaunchSpec, pid: i32) -> std::result::Result<PathBuf, String> {
    let dir = parent.join(cgroup_name(&spec.task_id));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), &value)
            .map_err(|e| format!("cannot write {value:?} to {}: {e}", dir.join(file).display()))
    };
    write("cpu.max", cpu_max(spec.cpus))?;
    write("memory.max", memory_max(spec.mem_mb))?;
    write("cgroup.procs", pid.to_string())?;
    Ok(dir)
}

fn apply_limits(spec: &LaunchSpec, pid: i32) -> LimitsMode {
    match cgroup_support() {
        Err(reason) => LimitsMode::Accounted { reason: reason.clone() },
        Ok(parent) => match place_in_cgroup(parent, spec, pid) {
            Ok(cgroup) => LimitsMode::Enforced { cgroup },
            Err(reason) => {
                tracing::warn!(task = %spec.task_id, "limits only accounted: {reason}");
                LimitsMode::Accounted { reason }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(15);

    fn spec(dir: &Path, command: &str) -> LaunchSpec {
        LaunchSpec {
            task_id: format!("test-{}", uuid::Uuid::new_v4()),
            command: command.into(),
            env: BTreeMap::new(),
            sandbox: dir.join("sandbox"),
            cpus: 0.5,
            mem_mb: 64,
            kill_grace: Duration::from_secs(5),
            nofile: None,
        }
    }

    /// Polls `cond` until it holds or the deadline passes.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn file_has(path: &Path, needle: &str) -> bool {
        std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
    }

    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, f).await.expect("timed out")
    }

    #[tokio::test]
    async fn stdout_goes_to_the_sandbox_file_and_env_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(
            dir.path(),
            "echo hi; echo \"v=$FOO s=$SMACK_SANDBOX c=${CARGO_PKG_NAME:-none}\"; echo oops >&2; sleep 30",
        );
        s.env.insert("FOO".into(), "bar".into());
        let task = launch(s).await.unwrap();
        let sandbox = dir.path().join("sandbox");
        let out = sandbox.join("stdout");
        eventually("stdout lines", || file_has(&out, "c=")).await;
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("hi\n"), "{text}");
        assert!(text.contains(&format!("v=bar s={} c=none", sandbox.display())), "{text}");
        eventually("stderr line", || file_has(&sandbox.join("stderr"), "oops")).await;
        assert_eq!(task.pgid(), task.pid());
        assert!(task.start_ticks().is_some());
        assert!(task.try_exit().is_none());
        let exit = bounded(task.kill(Duration::from_secs(5))).await.unwrap();
        assert_eq!(exit.signal, Some(15));
    }

    #[tokio::test]
    async fn exit_code_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "exit 3")).await.unwrap();
        let exit = bounded(task.wait()).await;
        assert_eq!(exit, TaskExit { code: Some(3), signal: None });
        assert_eq!(exit.task_state(false), TaskState::Failed);
        assert_eq!(exit.to_string(), "exited with code 3");
        // Kill after exit returns the same exit at once.
        assert_eq!(bounded(task.kill(Duration::from_secs(5))).await.unwrap(), exit);
    }

    #[tokio::test]
    async fn nofile_limit_applies() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "echo nofile=$(ulimit -n)");
        s.nofile = Some(321);
        let task = launch(s).await.unwrap();
        assert!(bounded(task.wait()).await.success());
        assert!(file_has(&dir.path().join("sandbox/stdout"), "nofile=321"));
    }

    #[tokio::test]
    async fn sigkill_from_outside_shows_as_signal_9() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "sleep 30")).await.unwrap();
        nix::sys::signal::kill(Pid::from_raw(task.pid()), Signal::SIGKILL).unwrap();
        let exit = bounded(task.wait()).await;
        assert_eq!(exit, TaskExit { code: None, signal: Some(9) });
        assert_eq!(exit.task_state(true), TaskState::Killed);
        assert_eq!(exit.to_string(), "killed by signal 9 (SIGKILL)");
    }

    #[tokio::test]
    async fn kill_escalates_to_sigkill_when_term_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "trap '' TERM; echo ready; sleep 60")).await.unwrap();
        let out = dir.path().join("sandbox/stdout");
        eventually("trap set", || file_has(&out, "ready")).await;
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let exit = bounded(task.kill(grace)).await.unwrap();
        assert!(started.elapsed() >= grace);
        assert_eq!(exit.signal, Some(9));
        assert!(!process_group_alive(task.pgid()));
    }

    #[tokio::test]
    async fn kill_stops_a_plain_sleep_with_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "sleep 60")).await.unwrap();
        let started = Instant::now();
        let exit = bounded(task.kill(Duration::from_secs(30))).await.unwrap();
        assert_eq!(exit.signal, Some(15));
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn kill_takes_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "sleep 60 & echo $! > child.pid; wait")).await.unwrap();
        let pidfile = dir.path().join("sandbox/child.pid");
        eventually("child pid", || file_has(&pidfile, "\n")).await;
        let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let stat = proc_stat(child).expect("child running");
        assert_eq!(stat.pgrp, task.pgid());
        assert!(process_group_alive(task.pgid()));
        // The child is in the group but does not lead it.
        assert!(adopt(child).is_none());
        bounded(task.kill(Duration::from_secs(5))).await.unwrap();
        assert!(!process_group_alive(task.pgid()));
        assert!(proc_stat(child).is_none_or(|s| !s.live()));
    }

    #[tokio::test]
    async fn adopt_sees_a_live_process_and_notices_its_death() {
        let dir = tempfile::tempdir().unwrap();
        let task = launch(spec(dir.path(), "sleep 60")).await.unwrap();
        let adopted = adopt_verified(task.pid(), task.start_ticks().unwrap()).expect("adoptable");
        assert!(adopted.is_alive());
        assert!(adopt_verified(task.pid(), task.start_ticks().unwrap() + 1).is_none());
        nix::sys::signal::kill(Pid::from_raw(task.pid()), Signal::SIGKILL).unwrap();
        bounded(adopted.wait()).await;
        assert!(!adopted.is_alive());
        assert!(adopt(task.pid()).is_none());
        assert!(adopt(i32::MAX).is_none());
    }

    #[tokio::test]
    async fn adopted_kill_escalates_and_plain_kill_uses_term() {
        let dir = tempfile::tempdir().unwrap();
        let stubborn = launch(spec(dir.path(), "trap '' TERM; echo ready; sleep 60")).await.unwrap();
        eventually("trap set", || file_has(&dir.path().join("sandbox/stdout"), "ready")).await;
        let adopted = adopt(stubborn.pid()).unwrap();
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        bounded(TaskProcess::Adopted(adopted.clone()).kill(grace)).await.unwrap();
        assert!(started.elapsed() >= grace);
        assert!(!process_group_alive(adopted.pgid()));
        assert_eq!(bounded(stubborn.wait()).await.signal, Some(9));

        let dir2 = tempfile::tempdir().unwrap();
        let plain = launch(spec(dir2.path(), "sleep 60")).await.unwrap();
        let adopted = adopt(plain.pid()).unwrap();
        bounded(adopted.kill(Duration::from_secs(30))).await.unwrap();
        assert_eq!(bounded(plain.wait()).await.signal, Some(15));
    }

    #[test]
    fn stat_parsing_handles_odd_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.pgrp, s.start_ticks), ('S', 1234, 98765));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn limit_values() {
        assert_eq!(cpu_max(0.5), "50000 100000");
        assert_eq!(cpu_max(2.0), "200000 100000");
        assert_eq!(cpu_max(0.0), "max 100000");
        assert_eq!(memory_max(64), "67108864");
        assert_eq!(memory_max(0), "max");
        assert_eq!(cgroup_name("web-0/server"), "web-0_server");
        assert_eq!(cgroup_name(".."), "task_..");
    }

    #[test]
    fn cgroup_v2_setup_in_a_fake_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        assert!(probe_cgroup_v2(root.path()).unwrap_err().contains("no cgroup v2"));
        std::fs::write(root.path().join("cgroup.controllers"), "cpuset io pids\n").unwrap();
        assert!(probe_cgroup_v2(root.path()).unwrap_err().contains("cpu, memory"));
        std::fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let parent = probe_cgroup_v2(root.path()).unwrap();
        assert_eq!(parent, root.path().join("smack"));
        let sub = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert_eq!(sub, "+cpu +memory");
        let s = spec(root.path(), "true");
        let dir = place_in_cgroup(&parent, &s, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("cpu.max")).unwrap(), "50000 100000");
        assert_eq!(std::fs::read_to_string(dir.join("memory.max")).unwrap(), "67108864");
        assert_eq!(std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(), "4242");
    }

    #[tokio::test]
    async fn limits_mode_matches_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "true");
        let id = s.task_id.clone();
        let task = launch(s).await.unwrap();
        match (task.limits(), host_limits_mode()) {
            (LimitsMode::Accounted { reason }, LimitsMode::Accounted { .. }) => {
                assert!(!reason.is_empty())
            }
            (LimitsMode::Enforced { cgroup }, LimitsMode::Enforced { .. }) => {
                assert!(cgroup.ends_with(format!("smack/{id}")))
            }
            (LimitsMode::Accounted { reason }, LimitsMode::Enforced { .. }) => {
                panic!("host supports cgroup v2 but the task got no cgroup: {reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        bounded(task.wait()).await;
    }
}
