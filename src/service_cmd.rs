//! `smack service run`, and the `plan` and `pod` commands that talk to a
//! running service scheduler.

use crate::cluster::{self, ClusterFile};
use crate::schedulers::{self, said, scheduler};
pub use crate::schedulers::{plans, spec_of, stop_detached_schedulers, submit_spec, wait_plan_complete};
use crate::Output;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use smack_operator::scheduler::api::{self, PlanCommand, PlanView, PodView};
use smack_operator::scheduler::service::ServiceScheduler;
use smack_operator::state::FileStore;
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

pub async fn run_service(state_dir: &Path, c: &ClusterFile, args: ServiceRunArgs) -> Result<()> {
    let yaml = std::fs::read_to_string(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let file = args.spec.display().to_string();
    let store = FileStore::open(state_dir.join("scheduler")).context("opening the scheduler's state store")?;
    let s = ServiceScheduler::open(Arc::new(store), c.master_client(), &yaml, &file)?
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
    schedulers::write_endpoint(state_dir, &name, &url)?;
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
    let running = match scheduler(state_dir, c, Some(&name)) {
        Ok(s) => s.plans().await.is_ok(),
        Err(_) => false,
    };
    if !running {
        return schedulers::start_detached(state_dir, c, &name, spec).await;
    }
    let s = scheduler(state_dir, c, Some(&name))?;
    let r = s.update_spec(&api::SpecUpdate { yaml, file: spec.display().to_string() }).await.map_err(said)?;
    if r.plans.is_empty() {
        println!("no change");
    } else {
        println!("accepted: started {}", r.plans.join(", "));
    }
    Ok(())
}

pub async fn diff(state_dir: &Path, c: &ClusterFile, service: Option<&str>, spec: &Path, output: Output) -> Result<()> {
    let yaml = std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let s = scheduler(state_dir, c, service)?;
    let d = s.diff_spec(&api::SpecUpdate { yaml, file: spec.display().to_string() }).await.map_err(said)?;
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
    let s = scheduler(state_dir, c, service)?;
    let plans = s.plans().await.map_err(said)?;
    let pods = s.pods().await.map_err(said)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plans": plans, "pods": pods }))?);
        return Ok(());
    }
    for p in &plans {
        println!("plan {:<16} {}", p.name, p.status);
    }
    for v in &pods {
        let host = if v.pod.hostname.is_empty() { "-" } else { &v.pod.hostname };
        println!("pod  {:<16} {:<16} {}", v.pod.name, host, task_states(v));
    }
    Ok(())
}

pub async fn delete(state_dir: &Path, c: &ClusterFile, service: Option<&str>) -> Result<()> {
    let s = scheduler(state_dir, c, service)?;
    s.delete().await.map_err(said)?;
    println!("decommissioning every pod…");
    loop {
        let pods = s.pods().await.map_err(said)?;
        if pods.is_empty() {
            println!("deleted: no pods left; their reservations are released as their agents offer them");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

impl PlanCmd {
    /// The plan and the command a plan action posts; None for reads.
    fn action(self) -> Option<(String, &'static str, PlanCommand)> {
        let none = PlanCommand::default;
        Some(match self {
            PlanCmd::List | PlanCmd::Show { .. } => return None,
            PlanCmd::Pause { plan, phase } => (plan, "pause", PlanCommand { phase, ..none() }),
            PlanCmd::Resume { plan, phase } => (plan, "resume", PlanCommand { phase, ..none() }),
            PlanCmd::Restart { plan, phase, step } => (plan, "restart", PlanCommand { phase, step, ..none() }),
            PlanCmd::ForceComplete { plan, phase, step } => {
                (plan, "force-complete", PlanCommand { phase: Some(phase), step: Some(step), ..none() })
            }
            PlanCmd::Start { plan, params } => {
                (plan, "start", PlanCommand { parameters: params.into_iter().collect(), ..none() })
            }
            PlanCmd::Stop { plan } => (plan, "stop", none()),
        })
    }
}

pub async fn plan(
    state_dir: &Path,
    c: &ClusterFile,
    service: Option<&str>,
    cmd: PlanCmd,
    output: Output,
) -> Result<()> {
    let s = scheduler(state_dir, c, service)?;
    let view: PlanView = match cmd {
        PlanCmd::List => {
            let plans = s.plans().await.map_err(said)?;
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
                let v = s.plan(&plan).await.map_err(said)?;
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
        PlanCmd::Show { plan, .. } => s.plan(&plan).await.map_err(said)?,
        cmd => {
            let (plan, action, body) = cmd.action().expect("a plan action");
            s.plan_action(&plan, action, &body).await.map_err(said)?
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
    let s = scheduler(state_dir, c, service)?;
    let views: Vec<PodView> = match cmd {
        PodCmd::List | PodCmd::Status { pod: None } => s.pods().await.map_err(said)?,
        PodCmd::Status { pod: Some(p) } => vec![s.pod(&p).await.map_err(said)?],
        PodCmd::Restart { pod } => vec![s.pod_action(&pod, "restart").await.map_err(said)?],
        PodCmd::Replace { pod } => vec![s.pod_action(&pod, "replace").await.map_err(said)?],
        PodCmd::Pause { pod } => vec![s.pod_action(&pod, "pause").await.map_err(said)?],
        PodCmd::Resume { pod } => vec![s.pod_action(&pod, "resume").await.map_err(said)?],
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    println!("{:<16} {:<22} {:<16} {:<10} TASKS", "POD", "AGENT", "HOST", "ZONE");
    for v in views {
        let p = &v.pod;
        println!(
            "{:<16} {:<22} {:<16} {:<10} {}{}",
            p.name,
            p.agent_id.clone().unwrap_or_else(|| "-".into()),
            if p.hostname.is_empty() { "-" } else { &p.hostname },
            p.attributes.get("zone").map(String::as_str).unwrap_or("-"),
            task_states(&v),
            if p.paused { " (PAUSED)" } else { "" }
        );
        if let Some(w) = &p.waiting {
            println!("  waiting: {w}");
        }
    }
    Ok(())
}

/// `task=STATE …` of a pod's tasks (`LAUNCHING` before a first status).
fn task_states(v: &PodView) -> String {
    let state = |t: &smack_operator::scheduler::service::TaskRecord| t.state.map(|s| s.to_string());
    let states: Vec<String> =
        v.tasks.iter().map(|t| format!("{}={}", t.task, state(t).unwrap_or_else(|| "LAUNCHING".into()))).collect();
    states.join(" ")
}

pub fn resolve(state_dir: &Path, master: Option<String>, token: Option<String>) -> Result<ClusterFile> {
    cluster::resolve(master, token, state_dir)
}
