//! Helpers for end-to-end tests: real `smack master` and `smack agent`
//! processes in temp dirs, and a small test framework speaking the API.

#![allow(dead_code)]

use smack_operator::client::{EventStream, MasterClient};
use smack_operator::protocol::{Accept, Acknowledge, Decline, FrameworkEvent, Subscribe};
use smack_operator::resources::{Offer, OfferId, Operation, TaskState, TaskStatus};
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

    /// A master in `dir` (no extra flags) and [`MasterProc::zoned_agents`]
    /// on the test's loopback prefix.
    pub async fn start_zoned(dir: &Path, zones: &[&str], ports: &str) -> (MasterProc, Vec<Proc>) {
        let m = MasterProc::start(dir, &[]).await;
        let agents = m.zoned_agents(&address_prefix(), zones, ports).await;
        (m, agents)
    }

    /// One agent per zone, `a1`, `a2`, … on `PREFIX.1`, `PREFIX.2`, … (the
    /// test's loopback prefix), each with 2 cpus, 3 GiB, 8 GB of disk and
    /// the `ports` range; returns when all are reachable.
    pub async fn zoned_agents(&self, prefix: &str, zones: &[&str], ports: &str) -> Vec<Proc> {
        let agents = zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let n = i + 1;
                let (name, host) = (format!("a{n}"), format!("{prefix}.{n}"));
                self.agent(
                    &name,
                    &host,
                    &["--zone", z, "--cpus", "2", "--mem", "3072", "--disk", "8000", "--ports", ports],
                )
            })
            .collect();
        self.wait_agents(zones.len()).await;
        agents
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
    /// Accepts offer `offer` with `operations`, filtering nothing.
    pub async fn accept(&self, offer: OfferId, operations: Vec<Operation>) -> smack_operator::Result<()> {
        self.client.accept(&self.id, &Accept { offer_ids: vec![offer], operations, filter_ms: None }).await
    }

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

// ---------------------------------------------------------------------------
// Real Kafka and Cassandra, run by a smack agent (shared by e2e tests that
// need a broker and a CQL node; tests/catalog.rs shows the same steps inline).

/// The sandbox dir of `task` on agent `agent` (tasks' sandboxes are named
/// `<task id>-<suffix>`).
pub fn agent_task_sandbox(work: &Path, agent: &str, task: &str) -> Option<PathBuf> {
    std::fs::read_dir(work.join("agents").join(agent).join("sandboxes"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{task}-"))))
}

/// The last lines of a task's stderr and stdout, for failure messages.
pub fn agent_task_log_tails(work: &Path, agent: &str, task: &str, lines: usize) -> String {
    let tail = |p: PathBuf| {
        let text = read(p);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    };
    match agent_task_sandbox(work, agent, task) {
        Some(sb) => format!(
            "--- {task} stderr (tail) ---\n{}\n--- {task} stdout (tail) ---\n{}",
            tail(sb.join("stderr")),
            tail(sb.join("stdout"))
        ),
        None => format!("(no sandbox for {task})"),
    }
}

/// One Kafka broker (KRaft, combined broker + controller) and one Cassandra
/// node, launched by a real smack agent from the catalog's templates on
/// reserved ROOT volumes, both ready. Dropping it stops the agent and
/// kills the tasks (through [`MasterProc`]'s drop).
pub struct KafkaAndCassandra {
    pub fw: TestFramework,
    pub agent: Proc,
    pub master: MasterProc,
    /// The agent's own loopback address.
    pub host: String,
    /// `host:port` of the broker.
    pub bootstrap: String,
    /// `host:port` of Cassandra's native (CQL) transport.
    pub cql: String,
    /// Cassandra's datacenter name.
    pub dc: String,
    /// From the call to both tasks ready (jars resolved included).
    pub ready_in: Duration,
}

/// Starts [`KafkaAndCassandra`] under `work`, on ports `port_base..port_base+4`
/// of an agent with a loopback address of its own (so the ports never clash
/// with other tests). Fails with the tasks' logs if either is not ready
/// within 90 s.
pub async fn start_kafka_and_cassandra(work: &Path, port_base: u16) -> KafkaAndCassandra {
    use smack_catalog::artifacts::{self, Service};
    use smack_catalog::{kafka::config as kafka, launch};
    use smack_operator::resources::*;

    const READY: Duration = Duration::from_secs(90);
    let started = Instant::now();
    let cache = artifacts::default_cache_dir();
    let (kafka_jars, cassandra_jars) = tokio::task::spawn_blocking(move || {
        let get = |s: Service| {
            artifacts::resolve(s, &cache)
                .unwrap_or_else(|e| panic!("cannot obtain {s} (cache {}): {e}", cache.display()))
        };
        (get(Service::Kafka), get(Service::Cassandra))
    })
    .await
    .expect("resolving artifacts");
    let java = artifacts::java_binary().expect("java");
    for s in [Service::Kafka, Service::Cassandra] {
        artifacts::check_java(s, artifacts::java_feature_version(&java).unwrap()).unwrap();
    }

    let master = MasterProc::start(work, &[]).await;
    let host = format!("{}.1", address_prefix());
    let ports = format!("{}-{}", port_base, port_base + 9);
    let agent = master.agent(
        "a1",
        &host,
        &["--cpus", "4", "--mem", "4096", "--disk", "4000", "--ports", &ports, "--zone", "zone-a"],
    );
    master.wait_agents(1).await;

    let (broker_port, controller_port, storage_port, native_port) =
        (port_base, port_base + 1, port_base + 2, port_base + 3);
    let kafka_cmd = one_node_kafka_command(
        kafka_jars,
        java.clone(),
        &host,
        broker_port,
        controller_port,
        kafka::kafka_random_cluster_id(),
    );

    let cnode = one_node_cassandra(&host, storage_port, native_port);
    let dc = cnode.dc.clone();
    let cass_cmd = one_node_cassandra_command(cassandra_jars, java, cnode);

    let pods = [
        (
            "kafka-0",
            Resources::new(1.0, 1024, 0).with_ports(PortSet::from_ports([broker_port, controller_port])),
            1000u64,
            kafka_cmd,
            launch::kafka_readiness_check(),
        ),
        (
            "cassandra-0",
            Resources::new(1.5, 1536, 0).with_ports(PortSet::from_ports([storage_port, native_port])),
            1500u64,
            cass_cmd,
            launch::cassandra_readiness_check(),
        ),
    ];
    let mut fw = TestFramework::subscribe(master.client(), "services").await;
    let offer = fw
        .offer_where("with room for Kafka and Cassandra", Duration::from_secs(30), |o| o.unreserved.cpus >= 2.5)
        .await;
    let mut ops = Vec::new();
    for (pod, resources, disk, command, readiness) in &pods {
        let mut r = resources.clone();
        r.disk = *disk;
        let volume = format!("{pod}-data");
        ops.push(Operation::Reserve {
            id: pod.to_string(),
            resources: r,
            labels: [("resource_id".to_string(), pod.to_string())].into(),
        });
        ops.push(Operation::CreateVolume {
            reservation: pod.to_string(),
            volume: Volume {
                id: volume.clone(),
                source: VolumeSource::Root { size: *disk },
                container_path: "data".into(),
                host_path: String::new(),
            },
        });
        ops.push(Operation::Launch {
            task: TaskInfo {
                reservation: Some(pod.to_string()),
                volumes: vec![volume],
                readiness_check: Some(readiness.clone()),
                kill_grace_period_ms: 10_000,
                ..TaskInfo::new(format!("{pod}-run1"), command.clone(), resources.clone())
            },
        });
    }
    fw.client
        .accept(&fw.id, &Accept { offer_ids: vec![offer.id], operations: ops, filter_ms: None })
        .await
        .expect("accept reserve + volumes + launch");

    for task in ["kafka-0-run1", "cassandra-0-run1"] {
        let found = tokio::time::timeout(
            READY,
            fw.status_where(&format!("{task} ready"), READY + Duration::from_secs(5), |s| {
                s.task_id == task && (s.ready == Some(true) || s.state.is_terminal())
            }),
        )
        .await;
        match found {
            Ok(s) if s.state == TaskState::Running => {}
            Ok(s) => panic!(
                "{task} ended before it was ready: {} {}\n{}",
                s.state,
                s.message,
                agent_task_log_tails(work, "a1", task, 30)
            ),
            Err(_) => panic!("{task} was not ready within {READY:?}\n{}", agent_task_log_tails(work, "a1", task, 30)),
        }
    }
    KafkaAndCassandra {
        fw,
        agent,
        master,
        bootstrap: format!("{host}:{broker_port}"),
        cql: format!("{host}:{native_port}"),
        host,
        dc,
        ready_in: started.elapsed(),
    }
}

/// Runs `smack --state-dir DIR ARGS…` (the cluster found through the state
/// dir's cluster.json): its stdout on success, its stderr on failure.
pub fn smack_at(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = smack_output(dir, args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// [`smack_at`], with the command's stdout added to the error text (for
/// commands that report progress before they fail).
pub fn smack_at_verbose(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = smack_output(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{}\n(stdout: {stdout})", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `smack --state-dir DIR ARGS… --output json`, parsed; `None` on any failure.
pub fn smack_json(dir: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    serde_json::from_str(&smack_at(dir, &a).ok()?).ok()
}

/// Waits until plan `plan` (of the state dir's one service) reads `want`.
pub async fn wait_plan(dir: &Path, plan: &str, want: &str, within: Duration) -> serde_json::Value {
    wait_for(&format!("plan {plan} {want}"), within, || async {
        let v = smack_json(dir, &["plan", "show", plan])?;
        (v["status"] == want).then_some(v)
    })
    .await
}

/// When a test panics while this is alive, prints what an operator would
/// look at: the service's plans, its pods, the scheduler log's tail and the
/// last lines of every task sandbox on every agent under `dir`.
pub struct PanicDump {
    pub dir: PathBuf,
    pub sched_log: PathBuf,
    pub plans: &'static [&'static str],
}

impl Drop for PanicDump {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for plan in self.plans {
            eprintln!("plan {plan}: {:?}", smack_at(&self.dir, &["plan", "show", plan]));
        }
        eprintln!("pods: {:?}", smack_at(&self.dir, &["pod", "list"]));
        eprintln!("scheduler log tail:\n{}", tail_lines(&self.sched_log, 40));
        let mut agents: Vec<PathBuf> =
            std::fs::read_dir(self.dir.join("agents")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        agents.sort();
        for a in agents {
            let agent = a.file_name().unwrap_or_default().to_string_lossy().into_owned();
            for e in std::fs::read_dir(a.join("sandboxes")).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let (stderr, stdout) =
                    (tail_lines(&e.path().join("stderr"), 15), tail_lines(&e.path().join("stdout"), 15));
                eprintln!("--- {agent}/{name} stderr ---\n{stderr}\n--- stdout ---\n{stdout}");
            }
        }
    }
}

/// The last `n` lines of a file ("" when it cannot be read).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let t = read(path);
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `smack --state-dir DIR ARGS…` without the caller's cluster variables
/// and waits for it, retrying while the binary is being replaced.
pub fn smack_output(dir: &Path, args: &[&str]) -> std::process::Output {
    let run = || {
        std::process::Command::new(smack_bin())
            .arg("--state-dir")
            .arg(dir)
            .args(args)
            .env_remove("SMACK_MASTER")
            .env_remove("SMACK_TOKEN")
            .output()
    };
    // A `cargo build` elsewhere in the tree replaces the binary for a moment.
    let mut tries = 0;
    loop {
        match run() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other.expect("run smack"),
        }
    }
}

/// The jars of a catalog service from the artifact cache (fetched from Maven
/// Central on first use); a test cannot run without them.
pub async fn service_jars(service: smack_catalog::artifacts::Service) -> smack_catalog::artifacts::Artifact {
    use smack_catalog::artifacts;
    let cache = artifacts::default_cache_dir();
    let c2 = cache.clone();
    tokio::task::spawn_blocking(move || artifacts::resolve(service, &c2))
        .await
        .expect("the artifact fetch")
        .unwrap_or_else(|e| panic!("cannot obtain {service:?} (cache {}): {e}", cache.display()))
}

/// The volume's path on its agent, as the master's ledger records it.
pub async fn volume_path(m: &MasterProc, vol: &str) -> PathBuf {
    let c = m.client();
    wait_for(&format!("the master's ledger shows where volume {vol} is"), Duration::from_secs(30), || {
        let c = c.clone();
        async move {
            let state = c.state().await.ok()?;
            state
                .agents
                .iter()
                .flat_map(|a| a.reservations.iter())
                .flat_map(|r| r.volumes.iter())
                .find(|v| v.id == vol && !v.host_path.is_empty())
                .map(|v| PathBuf::from(&v.host_path))
        }
    })
    .await
}

/// The options of a test Kafka service of `brokers` brokers: sized for the
/// test agents, with the artifact cache and this binary's path in the tasks'
/// environment (the agents' own executable path goes stale, "… (deleted)",
/// when the binary is rebuilt while they run; tasks, checks and hooks use
/// the path).
pub fn kafka_test_options(brokers: u32) -> smack_catalog::kafka::service::KafkaServiceOptions {
    let mut opts = smack_catalog::kafka::service::KafkaServiceOptions::new(brokers);
    opts.cpus = 0.5;
    opts.mem_mb = 768;
    opts.disk_mb = 1024;
    opts.env.insert("SMACK_CACHE_DIR".into(), smack_catalog::artifacts::default_cache_dir().display().to_string());
    opts.env.insert("SMACK_BIN".into(), smack_bin().into());
    opts
}

/// Writes a service spec to `path`; answers the path as a CLI argument.
pub fn write_spec(path: &Path, yaml: &str) -> String {
    std::fs::write(path, yaml).unwrap();
    path.display().to_string()
}

/// The task command of a one-node Kafka on `host`: a combined broker and
/// controller in rack `zone-a`, its data on volume `data`, a 256 MiB heap.
pub fn one_node_kafka_command(
    jars: smack_catalog::artifacts::Artifact,
    java: PathBuf,
    host: &str,
    broker_port: u16,
    controller_port: u16,
    cluster_id: String,
) -> String {
    use smack_catalog::{kafka::config as kafka, launch};
    let mut node = kafka::KafkaNodeConfig::new(
        0,
        host.to_string(),
        broker_port,
        controller_port,
        launch::in_volume("data", "kafka"),
        vec![kafka::Voter::new(0, host.to_string(), controller_port)],
    );
    node.rack = Some("zone-a".into());
    launch::kafka_task_command(&launch::KafkaLaunch::new(jars, java, node, cluster_id, 256)).expect("kafka command")
}

/// A one-node Cassandra on `host`: cluster `smack-e2e`, its own seed, rack
/// `zone-a`, everything on volume `data`.
pub fn one_node_cassandra(
    host: &str,
    storage_port: u16,
    native_port: u16,
) -> smack_catalog::cassandra::config::CassandraNodeConfig {
    use smack_catalog::{cassandra::config as cassandra, launch};
    let mut node = cassandra::CassandraNodeConfig::new(
        "smack-e2e",
        host.to_string(),
        storage_port,
        native_port,
        cassandra::seed_list(&[host], storage_port),
        &launch::in_volume("data", "cassandra"),
    );
    node.allocate_tokens_for_rf = 1;
    node.rack = "zone-a".into();
    node
}

/// The task command of Cassandra node `node` (from [`one_node_cassandra`]):
/// a 256 MiB heap, a short ring delay, logs at INFO.
pub fn one_node_cassandra_command(
    jars: smack_catalog::artifacts::Artifact,
    java: PathBuf,
    node: smack_catalog::cassandra::config::CassandraNodeConfig,
) -> String {
    use smack_catalog::{artifacts, launch};
    let mut jvm = launch::cassandra_task_jvm(&jars, 256, launch::in_volume("data", "cassandra"));
    jvm.ring_delay_ms = Some(1000);
    launch::cassandra_task_command(&launch::CassandraLaunch {
        artifact: jars,
        java,
        node,
        jvm,
        as_root: artifacts::running_as_root(),
        log_level: "INFO".into(),
    })
    .expect("cassandra command")
}

/// Task `id` running `command` on reservation `r1` with volume `v1`
/// (0.5 cpus, 64 MiB, a 2 s kill grace period).
pub fn volume_task(id: &str, command: &str) -> smack_operator::resources::TaskInfo {
    smack_operator::resources::TaskInfo {
        id: id.into(),
        name: id.into(),
        command: command.into(),
        env: Default::default(),
        resources: smack_operator::resources::Resources::new(0.5, 64, 0),
        reservation: Some("r1".into()),
        volumes: vec!["v1".into()],
        health_check: None,
        readiness_check: None,
        kill_grace_period_ms: 2000,
        labels: Default::default(),
    }
}

/// `smack service run SPEC` with its state in `dir`, as process `name`.
pub fn service_scheduler(name: &str, dir: &Path, spec: &str) -> Proc {
    let sd = dir.display().to_string();
    spawn(name, &["--state-dir", &sd, "service", "run", spec], &dir.join("logs"))
}

/// Sends `records` records (`record-{i}`, keyed `key-{i % keys}`) to
/// `topic`, each acknowledged, and flushes.
pub async fn produce_keyed(
    client: &smack_connectors::kafka::KafkaClientConfig,
    topic: &str,
    records: usize,
    keys: usize,
) {
    use smack_connectors::kafka::{KafkaSink, SinkConfig};
    let mut sink = KafkaSink::new(SinkConfig::new(client.clone())).unwrap();
    for i in 0..records {
        let key = format!("key-{}", i % keys);
        let value = format!("record-{i}");
        sink.send(topic, Some(key.as_bytes()), Some(value.as_bytes()), &[]).await.unwrap();
    }
    sink.flush().await.unwrap();
}

/// Polls `source` until it has read `records` distinct payloads (failing
/// after `within`); answers them and how many came more than once.
pub async fn read_distinct(
    source: &mut smack_connectors::kafka::KafkaSource,
    records: usize,
    within: Duration,
) -> (std::collections::BTreeSet<String>, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut dup = 0usize;
    let limits = smack_connectors::kafka::PollLimits::default();
    let deadline = Instant::now() + within;
    while seen.len() < records {
        assert!(Instant::now() < deadline, "only {} of {records} records read back within {within:?}", seen.len());
        for r in source.poll_batch(&limits).await.unwrap() {
            if !seen.insert(String::from_utf8(r.payload.unwrap_or_default()).unwrap()) {
                dup += 1;
            }
        }
    }
    (seen, dup)
}
