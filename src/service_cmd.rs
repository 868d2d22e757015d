//! `smack service run`, and the `plan` and `pod` commands that talk to a
//! running service scheduler.

use crate::cluster::{self, ClusterFile};
use crate::Output;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use smack_operator::client::MasterClient;
use smack_operator::protocol::ApiError;
use smack_operator::scheduler::api::{self, PlanCommand, PlanSummary, PlanView, PodView};
use smack_operator::scheduler::service::ServiceScheduler;
use smack_operator::state::FileStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Clone)]
pub struct ServiceRunArgs {
    /// The service spec (YAML).
    pub spec: PathBuf,
    /// Address of the scheduler's API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// A pod whose task stays LOST (agent unreachable) this long is replaced.
    #[arg(long, default_value = "5m", value_parser = crate::commands::parse_duration)]
    pub permanent_failure_timeout: std::time::Duration,
}

#[derive(Subcommand, Clone)]
pub enum ServiceCommand {
    /// Run a service scheduler for SPEC against the master.
    Run(ServiceRunArgs),
    /// Check a service spec without deploying it.
    Validate { spec: PathBuf },
    /// Apply a changed spec to the running service (refused if unsafe).
    #[command(alias = "apply")]
    Update {
        spec: PathBuf,
        #[arg(long)]
        service: Option<String>,
    },
    /// Plans and pods of the running service at a glance.
    Status {
        #[arg(long)]
        service: Option<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Decommission every pod of the service: tasks killed, volumes destroyed, reservations released.
    Delete {
        #[arg(long)]
        service: Option<String>,
    },
    /// Show what applying a spec would change: pods added, removed, restarted, and why.
    Diff {
        spec: PathBuf,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Subcommand, Clone)]
pub enum PlanCmd {
    /// List the service's plans.
    List,
    /// Show a plan as a tree.
    Show {
        plan: String,
        /// Redraw the tree in place every second until the plan completes.
        #[arg(long)]
        watch: bool,
    },
    /// Pause a plan (or one phase): no new work starts.
    Pause { plan: String, phase: Option<String> },
    /// Resume a paused plan or phase (and approve a canary).
    Resume { plan: String, phase: Option<String> },
    /// Put a plan, phase or step back to PENDING.
    Restart { plan: String, phase: Option<String>, step: Option<String> },
    /// Mark a step COMPLETE.
    ForceComplete { plan: String, phase: String, step: String },
    /// Start a custom plan with parameters.
    Start {
        plan: String,
        #[arg(short = 'p', long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
    },
    /// Stop a custom plan.
    Stop { plan: String },
}

#[derive(Subcommand, Clone)]
pub enum PodCmd {
    /// List pods with their agent and tasks.
    List,
    /// Show one pod (or all) with its tasks and why it waits.
    Status { pod: Option<String> },
    /// Restart a pod in place, on its own disk.
    Restart { pod: String },
    /// Replace a pod: new placement, fresh volume.
    Replace { pod: String },
    /// Maintenance: relaunch the pod with `sleep` in place of its commands, on its own disk.
    Pause { pod: String },
    /// End maintenance: relaunch the pod's real commands.
    Resume { pod: String },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn endpoint_file(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("services").join(service).join("endpoint.json")
}

pub async fn run_service(state_dir: &Path, c: &ClusterFile, args: ServiceRunArgs) -> Result<()> {
    let yaml = std::fs::read_to_string(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let file = args.spec.display().to_string();
    let store = FileStore::open(state_dir.join("scheduler")).context("opening the scheduler's state store")?;
    let client = MasterClient::new(c.master.clone(), c.token.clone());
    let s = ServiceScheduler::open(Arc::new(store), client, &yaml, &file)?
        .with_permanent_failure_timeout(args.permanent_failure_timeout);
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let s = s.with_api_url(url.clone());
    let app = api::router(s.clone(), c.token.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let name = s.name();
    let ep = endpoint_file(state_dir, &name);
    smack_storage::durable::ensure_dir(ep.parent().expect("has a parent"))?;
    smack_storage::durable::write_json_atomic(&ep, &serde_json::json!({ "url": url }))?;
    println!("service {name}: scheduler API at {url}/v1/");
    let run = s.clone();
    tokio::select! {
        _ = run.run() => {}
        _ = crate::commands::shutdown_signal() => {}
    }
    Ok(())
}

pub fn validate(spec: &Path) -> Result<()> {
    let yaml = std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    match smack_operator::scheduler::spec::ServiceSpec::from_yaml(&yaml, &spec.display().to_string()) {
        Ok(s) => {
            println!("{}: ok ({} pod types)", spec.display(), s.pods.len());
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}

pub async fn update(state_dir: &Path, c: &ClusterFile, service: Option<&str>, spec: &Path) -> Result<()> {
    let yaml = std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let parsed = smack_operator::scheduler::spec::ServiceSpec::from_yaml(&yaml, &spec.display().to_string())
        .map_err(|e| anyhow!("{e}"))?;
    let name = service.map(String::from).unwrap_or_else(|| parsed.name.clone());
    let running = match SchedulerClient::find(state_dir, c, Some(&name)) {
        Ok(s) => s.call::<Vec<PlanSummary>>(reqwest::Method::GET, "/v1/plans", None).await.is_ok(),
        Err(_) => false,
    };
    if !running {
        return start_detached(state_dir, c, &name, spec).await;
    }
    let s = SchedulerClient::find(state_dir, c, Some(&name))?;
    let body = serde_json::json!({ "yaml": yaml, "file": spec.display().to_string() });
    let r: api::SpecUpdated = s.call(reqwest::Method::POST, "/v1/spec", Some(body)).await?;
    if r.plans.is_empty() {
        println!("no change");
    } else {
        println!("accepted: started {}", r.plans.join(", "));
    }
    Ok(())
}

pub async fn diff(state_dir: &Path, c: &ClusterFile, service: Option<&str>, spec: &Path, output: Output) -> Result<()> {
    let yaml = std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let s = SchedulerClient::find(state_dir, c, service)?;
    let body = serde_json::json!({ "yaml": yaml, "file": spec.display().to_string() });
    let d: smack_operator::scheduler::service::SpecDiff =
        s.call(reqwest::Method::POST, "/v1/spec/diff", Some(body)).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    for p in &d.added {
        println!("+ {p}  (new)");
    }
    for p in &d.removed {
        println!("- {p}  (decommissioned: tasks killed, volumes destroyed)");
    }
    for (p, why) in &d.restarted {
        println!("~ {p}  (restarted: {why})");
    }
    for r in &d.refused {
        println!("! refused: {r}");
    }
    if d.added.is_empty() && d.removed.is_empty() && d.restarted.is_empty() && d.refused.is_empty() {
        println!("no change");
    }
    Ok(())
}

pub async fn status(state_dir: &Path, c: &ClusterFile, service: Option<&str>, output: Output) -> Result<()> {
    let s = SchedulerClient::find(state_dir, c, service)?;
    let plans: Vec<PlanSummary> = s.call(reqwest::Method::GET, "/v1/plans", None).await?;
    let pods: Vec<PodView> = s.call(reqwest::Method::GET, "/v1/pods", None).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plans": plans, "pods": pods }))?);
        return Ok(());
    }
    for p in &plans {
        println!("plan {:<16} {}", p.name, p.status);
    }
    for v in &pods {
        let states: Vec<String> = v
            .tasks
            .iter()
            .map(|t| format!("{}={}", t.task, t.state.map(|s| s.to_string()).unwrap_or_else(|| "LAUNCHING".into())))
            .collect();
        println!(
            "pod  {:<16} {:<16} {}",
            v.pod.name,
            if v.pod.hostname.is_empty() { "-" } else { &v.pod.hostname },
            states.join(" ")
        );
    }
    Ok(())
}

pub async fn delete(state_dir: &Path, c: &ClusterFile, service: Option<&str>) -> Result<()> {
    let s = SchedulerClient::find(state_dir, c, service)?;
    let _: serde_json::Value = s.call(reqwest::Method::POST, "/v1/delete", None).await?;
    println!("decommissioning every pod…");
    loop {
        let pods: Vec<PodView> = s.call(reqwest::Method::GET, "/v1/pods", None).await?;
        if pods.is_empty() {
            println!("deleted: no pods left; their reservations are released as their agents offer them");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The plans of a running service, or an error if its scheduler does not
/// answer.
pub async fn plans(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<Vec<PlanSummary>> {
    SchedulerClient::find(state_dir, c, Some(service))?.call(reqwest::Method::GET, "/v1/plans", None).await
}

/// Waits until `plan` of the service is COMPLETE, printing its steps as
/// they change; an ERROR step or the deadline is an error.
pub async fn wait_plan_complete(
    state_dir: &Path,
    c: &ClusterFile,
    service: &str,
    plan: &str,
    deadline: std::time::Instant,
) -> Result<()> {
    use smack_operator::scheduler::plan::Status;
    let mut shown = String::new();
    loop {
        // The scheduler may be busy (or briefly unreachable): try again.
        match crate::service_cmd::plan_view(state_dir, c, service, plan).await {
            Ok(v) => {
                let mut lines = Vec::new();
                for s in v.plan.phases.iter().flat_map(|p| &p.steps) {
                    lines.push(format!(
                        "  {plan} {:<24} {}{}",
                        s.name,
                        s.state,
                        s.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                    ));
                }
                let now = lines.join("\n");
                if now != shown {
                    println!("{now}");
                    shown = now;
                }
                match v.plan.status {
                    Status::Complete => return Ok(()),
                    Status::Error => bail!("plan {plan} of service {service} failed: {}", v.plan.errors.join("; ")),
                    _ => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading plan {plan}"),
        }
        if std::time::Instant::now() > deadline {
            bail!("plan {plan} of service {service} did not complete in time; see `smack plan show {plan}`");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One plan of a running service, with its rendered tree.
pub async fn plan_view(state_dir: &Path, c: &ClusterFile, service: &str, plan: &str) -> Result<api::PlanView> {
    SchedulerClient::find(state_dir, c, Some(service))?
        .call(reqwest::Method::GET, &format!("/v1/plans/{plan}"), None)
        .await
}

/// The pods of a running service.
pub async fn pods_of(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<Vec<PodView>> {
    SchedulerClient::find(state_dir, c, Some(service))?.call(reqwest::Method::GET, "/v1/pods", None).await
}

/// The spec a running service follows (its YAML and file name).
pub async fn spec_of(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<api::SpecUpdate> {
    SchedulerClient::find(state_dir, c, Some(service))?.call(reqwest::Method::GET, "/v1/spec", None).await
}

/// Submits a changed spec to a running service; the plans it started, or
/// the scheduler's refusal.
pub async fn submit_spec(
    state_dir: &Path,
    c: &ClusterFile,
    service: &str,
    spec: &api::SpecUpdate,
) -> Result<Vec<String>> {
    let body = serde_json::to_value(spec)?;
    let r: api::SpecUpdated =
        SchedulerClient::find(state_dir, c, Some(service))?.call(reqwest::Method::POST, "/v1/spec", Some(body)).await?;
    Ok(r.plans)
}

/// Stops the scheduler processes started from this state dir (`smack up`
/// on Ctrl-C); their state stays in the store for the next start.
pub fn stop_detached_schedulers(state_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(state_dir.join("services")) else { return };
    for e in rd.flatten() {
        let pid_file = e.path().join("scheduler.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
            continue;
        };
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(e.path().join("endpoint.json"));
    }
}

/// Deploys a spec no scheduler runs yet: starts `smack service run` in the
/// background (its own process group, logs in the state dir) and waits for
/// its API.
async fn start_detached(state_dir: &Path, c: &ClusterFile, name: &str, spec: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = state_dir.join("services").join(name);
    smack_storage::durable::ensure_dir(&dir)?;
    let _ = std::fs::remove_file(endpoint_file(state_dir, name));
    let log = dir.join("scheduler.log");
    let f = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("--state-dir")
        .arg(abs(state_dir))
        .args(["--master", &c.master, "--token", &c.token, "service", "run"])
        .arg(abs(spec))
        .stdin(std::process::Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .process_group(0)
        .current_dir(&dir)
        .spawn()
        .context("starting the service scheduler")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !endpoint_file(state_dir, name).exists() {
        if std::time::Instant::now() > deadline {
            bail!("the scheduler for {name} did not come up within 20 s; see {}", log.display());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    std::fs::write(dir.join("scheduler.pid"), child.id().to_string())?;
    println!("deploying {name}: scheduler started (pid {}, log {})", child.id(), log.display());
    println!("watch it with `smack plan show deploy --watch`");
    Ok(())
}

/// A client of one service scheduler's API.
struct SchedulerClient {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl SchedulerClient {
    fn find(state_dir: &Path, c: &ClusterFile, service: Option<&str>) -> Result<Self> {
        let dir = state_dir.join("services");
        let name = match service {
            Some(s) => s.to_string(),
            None => {
                let names: Vec<String> = std::fs::read_dir(&dir)
                    .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                match names.as_slice() {
                    [one] => one.clone(),
                    [] => bail!(
                        "no service is running here ({} is empty): start one with `smack service run SPEC`",
                        dir.display()
                    ),
                    many => bail!("several services run here ({}): pick one with --service", many.join(", ")),
                }
            }
        };
        let ep = endpoint_file(state_dir, &name);
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&ep).with_context(|| format!("service {name}: no endpoint at {}", ep.display()))?,
        )?;
        let url = v["url"].as_str().ok_or_else(|| anyhow!("{}: no url", ep.display()))?.to_string();
        Ok(SchedulerClient { url, token: c.token.clone(), http: reqwest::Client::new() })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach the scheduler at {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
            bail!("{msg}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

pub async fn plan(
    state_dir: &Path,
    c: &ClusterFile,
    service: Option<&str>,
    cmd: PlanCmd,
    output: Output,
) -> Result<()> {
    let s = SchedulerClient::find(state_dir, c, service)?;
    let post = |plan: &str, action: &str, body: PlanCommand| {
        let path = format!("/v1/plans/{plan}/{action}");
        let body = serde_json::to_value(body).expect("serializable");
        (path, body)
    };
    let view: PlanView = match cmd {
        PlanCmd::List => {
            let plans: Vec<PlanSummary> = s.call(reqwest::Method::GET, "/v1/plans", None).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&plans)?);
            } else {
                println!("{:<16} STATUS", "PLAN");
                for p in plans {
                    println!("{:<16} {}", p.name, p.status);
                }
            }
            return Ok(());
        }
        PlanCmd::Show { plan, watch: true } if output != Output::Json => {
            loop {
                let v: PlanView = s.call(reqwest::Method::GET, &format!("/v1/plans/{plan}"), None).await?;
                // Clear the screen and draw the tree again in place.
                print!("\x1b[2J\x1b[H{}", v.tree);
                use std::io::Write;
                let _ = std::io::stdout().flush();
                if v.plan.status == smack_operator::scheduler::plan::Status::Complete {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = crate::commands::shutdown_signal() => return Ok(()),
                }
            }
        }
        PlanCmd::Show { plan, .. } => s.call(reqwest::Method::GET, &format!("/v1/plans/{plan}"), None).await?,
        PlanCmd::Pause { plan, phase } => {
            let (p, b) = post(&plan, "pause", PlanCommand { phase, ..Default::default() });
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
        PlanCmd::Resume { plan, phase } => {
            let (p, b) = post(&plan, "resume", PlanCommand { phase, ..Default::default() });
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
        PlanCmd::Restart { plan, phase, step } => {
            let (p, b) = post(&plan, "restart", PlanCommand { phase, step, ..Default::default() });
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
        PlanCmd::ForceComplete { plan, phase, step } => {
            let (p, b) = post(
                &plan,
                "force-complete",
                PlanCommand { phase: Some(phase), step: Some(step), ..Default::default() },
            );
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
        PlanCmd::Start { plan, params } => {
            let parameters: BTreeMap<String, String> = params.into_iter().collect();
            let (p, b) = post(&plan, "start", PlanCommand { parameters, ..Default::default() });
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
        PlanCmd::Stop { plan } => {
            let (p, b) = post(&plan, "stop", PlanCommand::default());
            s.call(reqwest::Method::POST, &p, Some(b)).await?
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&view.plan)?);
    } else {
        print!("{}", view.tree);
    }
    Ok(())
}

pub async fn pod(state_dir: &Path, c: &ClusterFile, service: Option<&str>, cmd: PodCmd, output: Output) -> Result<()> {
    let s = SchedulerClient::find(state_dir, c, service)?;
    let views: Vec<PodView> = match cmd {
        PodCmd::List | PodCmd::Status { pod: None } => s.call(reqwest::Method::GET, "/v1/pods", None).await?,
        PodCmd::Status { pod: Some(p) } => vec![s.call(reqwest::Method::GET, &format!("/v1/pods/{p}"), None).await?],
        PodCmd::Restart { pod } => vec![s.call(reqwest::Method::POST, &format!("/v1/pods/{pod}/restart"), None).await?],
        PodCmd::Replace { pod } => vec![s.call(reqwest::Method::POST, &format!("/v1/pods/{pod}/replace"), None).await?],
        PodCmd::Pause { pod } => vec![s.call(reqwest::Method::POST, &format!("/v1/pods/{pod}/pause"), None).await?],
        PodCmd::Resume { pod } => vec![s.call(reqwest::Method::POST, &format!("/v1/pods/{pod}/resume"), None).await?],
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    println!("{:<16} {:<22} {:<16} {:<10} TASKS", "POD", "AGENT", "HOST", "ZONE");
    for v in views {
        let p = &v.pod;
        let tasks: Vec<String> = v
            .tasks
            .iter()
            .map(|t| format!("{}={}", t.task, t.state.map(|s| s.to_string()).unwrap_or_else(|| "LAUNCHING".into())))
            .collect();
        println!(
            "{:<16} {:<22} {:<16} {:<10} {}{}",
            p.name,
            p.agent_id.clone().unwrap_or_else(|| "-".into()),
            if p.hostname.is_empty() { "-" } else { &p.hostname },
            p.attributes.get("zone").map(String::as_str).unwrap_or("-"),
            tasks.join(" "),
            if p.paused { " (PAUSED)" } else { "" }
        );
        if let Some(w) = &p.waiting {
            println!("  waiting: {w}");
        }
    }
    Ok(())
}

pub fn resolve(state_dir: &Path, master: Option<String>, token: Option<String>) -> Result<ClusterFile> {
    cluster::resolve(master, token, state_dir)
}
