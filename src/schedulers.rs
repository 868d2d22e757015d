//! The service schedulers a state dir knows (`STATE_DIR/services/NAME/`:
//! `endpoint.json` with the scheduler's API URL, `scheduler.pid` and
//! `scheduler.log` of one started in the background) and how commands
//! reach them: a [`SchedulerClient`] of the operator's client layer.

use crate::cluster::ClusterFile;
use anyhow::{anyhow, bail, Context, Result};
use smack_operator::client::SchedulerClient;
use smack_operator::scheduler::api::{self, PlanSummary};
use std::path::{Path, PathBuf};

/// Where a service scheduler started from this state dir writes its API URL.
pub fn endpoint_file(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("services").join(service).join("endpoint.json")
}

/// The service a command is about: the one named, else the only one whose
/// scheduler was started from this state dir.
pub fn service_name(state_dir: &Path, service: Option<&str>) -> Result<String> {
    if let Some(s) = service {
        return Ok(s.to_string());
    }
    let dir = state_dir.join("services");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("which service? none was started from this state dir ({}): name one with --service", dir.display()),
        many => bail!("several services run here ({}): pick one with --service", many.join(", ")),
    }
}

/// The client of a service's scheduler: at the URL its `endpoint.json`
/// holds when it was started from this state dir, else through the master's
/// front door (`/v1/services/NAME/api`), which needs only the master's URL
/// and token.
pub fn scheduler(state_dir: &Path, c: &ClusterFile, service: Option<&str>) -> Result<SchedulerClient> {
    let name = service_name(state_dir, service)?;
    let ep = endpoint_file(state_dir, &name);
    let Ok(bytes) = std::fs::read(&ep) else {
        return Ok(c.master_client().scheduler_of_service(&name));
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("reading {}", ep.display()))?;
    let url = v["url"].as_str().ok_or_else(|| anyhow!("{}: no url", ep.display()))?;
    Ok(SchedulerClient::new(url, c.token.clone()))
}

/// A scheduler's refusal as its own words (the client's error says which
/// peer answered; a user wants only the reason).
pub fn said(e: smack_operator::Error) -> anyhow::Error {
    match e {
        smack_operator::Error::Api { message, .. } => anyhow!("{message}"),
        e => anyhow!(e),
    }
}

/// The plans of a running service, or an error if its scheduler does not
/// answer.
pub async fn plans(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<Vec<PlanSummary>> {
    scheduler(state_dir, c, Some(service))?.plans().await.map_err(said)
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
        match plan_view(state_dir, c, service, plan).await {
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
    scheduler(state_dir, c, Some(service))?.plan(plan).await.map_err(said)
}

/// The pods of a running service.
pub async fn pods_of(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<Vec<api::PodView>> {
    scheduler(state_dir, c, Some(service))?.pods().await.map_err(said)
}

/// The spec a running service follows (its YAML and file name).
pub async fn spec_of(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<api::SpecUpdate> {
    scheduler(state_dir, c, Some(service))?.spec().await.map_err(said)
}

/// Submits a changed spec to a running service; the plans it started, or
/// the scheduler's refusal.
pub async fn submit_spec(
    state_dir: &Path,
    c: &ClusterFile,
    service: &str,
    spec: &api::SpecUpdate,
) -> Result<Vec<String>> {
    Ok(scheduler(state_dir, c, Some(service))?.update_spec(spec).await.map_err(said)?.plans)
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

/// Writes where the scheduler of `service` answers, for the commands.
pub fn write_endpoint(state_dir: &Path, service: &str, url: &str) -> Result<()> {
    let ep = endpoint_file(state_dir, service);
    smack_storage::durable::ensure_dir(ep.parent().expect("has a parent"))?;
    smack_storage::durable::write_json_atomic(&ep, &serde_json::json!({ "url": url }))?;
    Ok(())
}

/// Deploys a spec no scheduler runs yet: starts `smack service run` in the
/// background (its own process group, logs in the state dir) and waits for
/// its API.
pub async fn start_detached(state_dir: &Path, c: &ClusterFile, name: &str, spec: &Path) -> Result<()> {
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
        .args(["--master", &c.master, "service", "run"])
        .arg(abs(spec))
        // The token goes in the environment, never on the command line
        // that `ps` shows every user.
        .env("SMACK_TOKEN", &c.token)
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
