//! Helpers for end-to-end tests: real `smack master` and `smack agent`
//! processes in temp dirs, and a small test framework speaking the API.

#![allow(dead_code)]

use smack_operator::client::{EventStream, MasterClient};
use smack_operator::protocol::{Acknowledge, Decline, FrameworkEvent, Subscribe};
use smack_operator::resources::{Offer, TaskState, TaskStatus};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn smack_bin() -> &'static str {
    env!("CARGO_BIN_EXE_smack")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A loopback /24 of its own for each cluster a test starts, so parallel
/// test processes never share addresses: 127.<pid-derived>.<counter>.
pub fn address_prefix() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let b = 20 + (std::process::id() % 200);
    format!("127.{b}.{}", 1 + n % 250)
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Waits for exit, with a deadline.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {within:?}; log:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(name: &str, args: &[&str], log_dir: &Path) -> Proc {
    std::fs::create_dir_all(log_dir).unwrap();
    let log = log_dir.join(format!("{name}.log"));
    let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let child = Command::new(smack_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn smack");
    Proc { child, name: name.to_string(), log }
}

/// Polls `f` until it returns Some, or panics with `what` after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("never happened within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `smack master` process on a free port, with its state dir.
pub struct MasterProc {
    pub proc: Proc,
    pub url: String,
    pub token: String,
    pub state_dir: PathBuf,
}

impl MasterProc {
    pub async fn start(state_dir: &Path, extra: &[&str]) -> MasterProc {
        let cluster_json = state_dir.join("cluster.json");
        let _ = std::fs::remove_file(&cluster_json);
        let sd = state_dir.display().to_string();
        let mut args = vec!["--state-dir", &sd, "master"];
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let proc = spawn("master", &args, &state_dir.join("logs"));
        let (url, token) = wait_for("the master writes cluster.json", Duration::from_secs(20), || async {
            let bytes = std::fs::read(&cluster_json).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            Some((v["master"].as_str()?.to_string(), v["token"].as_str()?.to_string()))
        })
        .await;
        MasterProc { proc, url, token, state_dir: state_dir.to_path_buf() }
    }

    pub fn client(&self) -> MasterClient {
        MasterClient::new(self.url.clone(), self.token.clone())
    }

    /// Starts an agent process on `hostname` with its own work dir.
    pub fn agent(&self, name: &str, hostname: &str, extra: &[&str]) -> Proc {
        let work = self.state_dir.join("agents").join(name);
        let work = work.display().to_string();
        let mut args =
            vec!["agent", "--master", &self.url, "--token", &self.token, "--work-dir", &work, "--hostname", hostname];
        args.extend_from_slice(extra);
        spawn(name, &args, &self.state_dir.join("logs"))
    }

    pub async fn wait_agents(&self, n: usize) -> Vec<smack_operator::protocol::AgentSummary> {
        let c = self.client();
        wait_for(&format!("{n} reachable agents"), Duration::from_secs(20), || {
            let c = c.clone();
            async move {
                let a = c.agents().await.ok()?;
                let up = a.iter().filter(|a| a.state == smack_operator::protocol::AgentState::Reachable).count();
                (up == n).then_some(a)
            }
        })
        .await
    }
}

/// Kills every process whose working directory lies under `dir`: the tasks
/// a test's agents launched (each in its own process group, so they outlive
/// an agent killed by the test).
pub fn kill_tasks_under(dir: &Path) {
    let Ok(rd) = std::fs::read_dir("/proc") else { return };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) else { continue };
        if cwd.starts_with(dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Kills the tasks under a dir when dropped (for tests without a MasterProc).
pub struct TaskReaper(pub PathBuf);

impl Drop for TaskReaper {
    fn drop(&mut self) {
        kill_tasks_under(&self.0);
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        kill_tasks_under(&self.state_dir);
    }
}

/// A test framework: subscribes, and collects offers and status updates.
pub struct TestFramework {
    pub id: String,
    pub client: MasterClient,
    events: EventStream<FrameworkEvent>,
    pub offers: Vec<Offer>,
    pub statuses: Vec<TaskStatus>,
    pub rescinded: Vec<String>,
}

impl TestFramework {
    pub async fn subscribe(client: MasterClient, role: &str) -> TestFramework {
        Self::resubscribe(client, role, None).await
    }

    pub async fn resubscribe(client: MasterClient, role: &str, id: Option<String>) -> TestFramework {
        let mut events = client
            .subscribe(&Subscribe {
                framework_id: id,
                name: format!("test-{role}"),
                role: role.into(),
                weight: 1.0,
                api_url: None,
            })
            .await
            .expect("subscribe");
        let id = match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Ok(Some(FrameworkEvent::Subscribed { framework_id }))) => framework_id,
            other => panic!("expected SUBSCRIBED first, got {other:?}"),
        };
        TestFramework { id, client, events, offers: Vec::new(), statuses: Vec::new(), rescinded: Vec::new() }
    }

    /// Reads one event (or times out), recording offers and statuses;
    /// status updates are acknowledged.
    async fn pump(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.events.next()).await {
            Err(_) => false,
            Ok(Err(e)) => panic!("framework stream failed: {e}"),
            Ok(Ok(None)) => panic!("the master closed the framework stream"),
            Ok(Ok(Some(ev))) => {
                match ev {
                    FrameworkEvent::Offers { offers } => self.offers.extend(offers),
                    FrameworkEvent::Rescind { offer_id } => {
                        self.offers.retain(|o| o.id != offer_id);
                        self.rescinded.push(offer_id);
                    }
                    FrameworkEvent::Update { status } => {
                        if !status.uuid.is_empty() && !status.agent_id.is_empty() {
                            let _ = self
                                .client
                                .acknowledge(
                                    &self.id,
                                    &Acknowledge {
                                        agent_id: status.agent_id.clone(),
                                        task_id: status.task_id.clone(),
                                        uuid: status.uuid.clone(),
                                    },
                                )
                                .await;
                        }
                        self.statuses.push(status);
                    }
                    _ => {}
                }
                true
            }
        }
    }

    /// Waits for an offer matching `pred`; it is removed from the held
    /// offers and returned. Others stay held.
    pub async fn offer_where(&mut self, what: &str, within: Duration, pred: impl Fn(&Offer) -> bool) -> Offer {
        let until = Instant::now() + within;
        loop {
            if let Some(i) = self.offers.iter().position(&pred) {
                return self.offers.remove(i);
            }
            if Instant::now() > until {
                panic!("no offer {what} within {within:?}; held offers: {:#?}", self.offers);
            }
            self.pump(until).await;
        }
    }

    /// Declines every held offer with a short filter.
    pub async fn decline_held(&mut self, filter_ms: u64) {
        if self.offers.is_empty() {
            return;
        }
        let ids: Vec<String> = self.offers.drain(..).map(|o| o.id).collect();
        let _ = self.client.decline(&self.id, &Decline { offer_ids: ids, filter_ms: Some(filter_ms) }).await;
    }

    /// Waits for a status of `task` in `state`; offers meanwhile are declined.
    pub async fn status(&mut self, task: &str, state: TaskState, within: Duration) -> TaskStatus {
        self.status_where(&format!("task {task} in {state}"), within, |s| s.task_id == task && s.state == state).await
    }

    /// Waits for a status matching `pred`; offers meanwhile are declined.
    pub async fn status_where(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&TaskStatus) -> bool,
    ) -> TaskStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(s) = self.statuses.iter().find(|s| pred(s)) {
                return s.clone();
            }
            if Instant::now() > until {
                let seen: Vec<String> =
                    self.statuses.iter().map(|s| format!("{} {} {}", s.task_id, s.state, s.message)).collect();
                panic!("never saw {what} within {within:?}; statuses seen: {seen:#?}");
            }
            self.decline_held(200).await;
            self.pump(until).await;
        }
    }

    /// Keeps reading events for `d`, declining offers.
    pub async fn idle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.pump(until).await;
        }
    }
}

/// Reads a file, or an empty string.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
