//! `smack pipeline apply|diff|status|delete` and the deploy half of `smack up
//! FILE`: a pipeline file becomes service specs (`pipelines::layout`) run by
//! service schedulers, in order — Kafka and Cassandra first (each waits for
//! its deploy plan), then topics, keyspaces and tables, then the stages and
//! the generator. A file that does not validate deploys nothing.
//!
//! What a pipeline deployed is kept under `STATE_DIR/pipelines/NAME/`: the
//! file as applied, the service specs, and the layout state (the Kafka
//! cluster id, made once).

use crate::cluster::ClusterFile;
use crate::schedulers;
use crate::service_cmd;
use crate::Output;
use anyhow::{anyhow, bail, Context, Result};
use smack_pipelines::layout::{self, Endpoints, LayoutState, ServiceDoc};
use smack_pipelines::PipelineSpec;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a service's deploy may take before apply gives up waiting (the
/// deploy goes on; `smack plan show deploy --service S` follows it).
const DEPLOY_WAIT: Duration = Duration::from_secs(900);

fn pipeline_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("pipelines").join(name)
}

/// Reads and validates the file: every error with file:line:column.
fn load(file: &Path) -> Result<(PipelineSpec, String)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec = PipelineSpec::from_yaml(&text, &file.display().to_string())
        .map_err(|e| anyhow!("{e}\nnothing was deployed"))?;
    Ok((spec, text))
}

fn load_state(dir: &Path) -> LayoutState {
    std::fs::read(dir.join("layout.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Writes a service spec under the pipeline's dir and applies it.
async fn apply_service(state_dir: &Path, c: &ClusterFile, dir: &Path, doc: &ServiceDoc) -> Result<()> {
    let path = dir.join(format!("{}.yaml", doc.name));
    smack_storage::durable::write_atomic(&path, doc.yaml.as_bytes())?;
    service_cmd::update(state_dir, c, Some(&doc.name), &path).await.with_context(|| format!("applying {}", doc.name))
}

/// Waits for the services' deploy plans to complete, side by side: in a
/// terminal one live progress bar per service (steps complete of all, the
/// step in work and why it waits); otherwise a line per change.
async fn wait_deployed(state_dir: &Path, c: &ClusterFile, services: &[String]) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    use smack_operator::scheduler::plan::StepState;
    let started = Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let multi =
        MultiProgress::with_draw_target(if tty { ProgressDrawTarget::stdout() } else { ProgressDrawTarget::hidden() });
    let style = ProgressStyle::with_template("  {prefix:<32} [{bar:20}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let bars: Vec<ProgressBar> = services
        .iter()
        .map(|s| {
            let b = multi.add(ProgressBar::new(1));
            b.set_style(style.clone());
            b.set_prefix(s.clone());
            b
        })
        .collect();
    let mut last: Vec<String> = vec![String::new(); services.len()];
    let mut done = vec![false; services.len()];
    while done.iter().any(|d| !d) {
        for (i, service) in services.iter().enumerate() {
            if done[i] {
                continue;
            }
            let Ok(v) = schedulers::plan_view(state_dir, c, service, "deploy").await else { continue };
            let steps: Vec<_> = v.plan.phases.iter().flat_map(|p| &p.steps).collect();
            let complete = steps.iter().filter(|s| s.state == StepState::Complete).count();
            let status = v.plan.status.to_string();
            let working = steps.iter().find(|s| s.state != StepState::Complete);
            let detail = working
                .map(|s| match &s.message {
                    Some(m) => format!("{} {} — {m}", s.name, s.state),
                    None => format!("{} {}", s.name, s.state),
                })
                .unwrap_or_default();
            bars[i].set_length(steps.len().max(1) as u64);
            bars[i].set_position(complete as u64);
            bars[i].set_message(format!("{status} {detail}"));
            let line = format!("{service}: deploy {status} ({complete}/{} steps)", steps.len());
            if !tty && line != last[i] {
                println!("  {line} ({} s)", started.elapsed().as_secs());
            }
            last[i] = line;
            if status == "COMPLETE" {
                bars[i].finish_with_message(format!("COMPLETE in {} s", started.elapsed().as_secs()));
                done[i] = true;
            } else if status == "ERROR" {
                bars[i].abandon_with_message("ERROR");
                bail!("{service}: the deploy plan failed:\n{}", v.tree);
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
        if started.elapsed() > DEPLOY_WAIT {
            let waiting: Vec<&str> =
                services.iter().zip(&done).filter(|(_, d)| !**d).map(|(s, _)| s.as_str()).collect();
            bail!(
                "not deployed after {} s: {}; follow with `smack plan show deploy --service NAME --watch`",
                DEPLOY_WAIT.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    Ok(())
}

/// `host:port` of each pod's `port` in a service.
async fn endpoints(state_dir: &Path, c: &ClusterFile, service: &str, port: &str) -> Result<Vec<String>> {
    let pods = schedulers::pods_of(state_dir, c, service).await?;
    let mut out: Vec<String> = pods
        .iter()
        .filter(|p| p.pod.agent_id.is_some())
        .filter_map(|p| p.pod.ports.get(port).map(|n| format!("{}:{n}", p.pod.hostname)))
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("{service} has no placed pod with a `{port}` port yet");
    }
    Ok(out)
}

/// `smack pipeline apply FILE`.
pub async fn apply(state_dir: &Path, c: &ClusterFile, file: &Path) -> Result<()> {
    let (spec, text) = load(file)?;
    let dir = pipeline_dir(state_dir, &spec.name);
    smack_storage::durable::ensure_dir(&dir)?;
    let mut st = load_state(&dir);
    let kafka = layout::kafka_service(&spec, &mut st);
    let cassandra = layout::cassandra_service(&spec);
    smack_storage::durable::write_json_atomic(&dir.join("layout.json"), &st)?;
    println!(
        "pipeline {}: {} sources, {} stages, {} sinks",
        spec.name,
        spec.sources.len(),
        spec.stages.len(),
        spec.sinks.len()
    );

    // The clusters first, side by side; then wait for both.
    for doc in kafka.iter().chain(cassandra.iter()) {
        apply_service(state_dir, c, &dir, doc).await?;
    }
    let clusters: Vec<String> = kafka.iter().chain(cassandra.iter()).map(|d| d.name.clone()).collect();
    wait_deployed(state_dir, c, &clusters).await?;
    let mut ep = layout::external_endpoints(&spec);
    if let Some(k) = &kafka {
        ep.bootstrap = endpoints(state_dir, c, &k.name, "client").await?.join(",");
    }
    if let Some(cs) = &cassandra {
        ep.cassandra = endpoints(state_dir, c, &cs.name, "native").await?;
    }
    prepare(&spec, &ep).await?;

    let leaders = partition_leaders(state_dir, c, &spec, &ep).await;
    let stages = layout::stage_services(&spec, &text, &ep, &leaders);
    for doc in &stages {
        apply_service(state_dir, c, &dir, doc).await?;
    }
    if let Some(g) = &spec.generator {
        apply_service(state_dir, c, &dir, &layout::generator_service(&spec, g, &ep)).await?;
    }
    smack_storage::durable::write_atomic(&dir.join("pipeline.yaml"), text.as_bytes())?;
    wait_deployed(state_dir, c, &stages.iter().map(|d| d.name.clone()).collect::<Vec<_>>()).await?;
    println!("pipeline {} is running; `smack pipeline status {}` shows it", spec.name, spec.name);
    Ok(())
}

/// Topics (sources, Kafka sinks, dead letters), keyspaces and tables, once
/// the clusters answer: a relaunched node may still be starting when its
/// deploy plan reads COMPLETE (a second `smack up`). Idempotent.
async fn prepare(spec: &PipelineSpec, ep: &Endpoints) -> Result<()> {
    println!("  creating topics, keyspaces and tables…");
    let started = Instant::now();
    let (done, session) = loop {
        match smack_pipelines::task::prepare_at(spec, ep).await {
            Ok(r) => break r,
            Err(e) if started.elapsed() < DEPLOY_WAIT => {
                println!("  the clusters do not answer yet ({e}); retrying in 3 s");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(e) => bail!("preparing topics and tables (for {} s): {e}", started.elapsed().as_secs()),
        }
    };
    println!(
        "  topics: {} ({} new); tables: {}",
        done.topics.join(", "),
        done.topics_created.len(),
        if done.tables.is_empty() { "none".to_string() } else { done.tables.join(", ") }
    );
    if let Some(session) = session.as_ref().filter(|_| !smack_pipelines::task::generated_lookups(spec).is_empty()) {
        println!("  writing the generator's reference rows into lookup tables…");
        for (lookup, rows) in smack_pipelines::task::fill_generated_lookups(spec, session)
            .await
            .map_err(|e| anyhow!("filling lookup tables: {e}"))?
        {
            println!("  lookup {lookup}: {rows} rows");
        }
    }
    Ok(())
}

/// Where the sources' partitions are led from, for the stages' placement
/// preferences (`smack_pipelines::task::read_leaders`), each broker's agent
/// from the Kafka service's pods when smack runs it. Locality is an
/// optimization: when it cannot be read, the stages go without it (and a
/// warning says why).
async fn partition_leaders(state_dir: &Path, c: &ClusterFile, spec: &PipelineSpec, ep: &Endpoints) -> layout::Leaders {
    let read = async {
        let internal = spec.services.kafka.as_ref().is_some_and(|k| k.external.is_none());
        let brokers = match internal {
            true => Some(
                schedulers::pods_of(state_dir, c, &layout::kafka_service_name(spec))
                    .await?
                    .into_iter()
                    .map(|p| {
                        let zone = p.pod.attributes.get("zone").cloned();
                        (p.pod.index as i32, layout::BrokerPlace { host: p.pod.hostname, zone })
                    })
                    .collect(),
            ),
            false => None,
        };
        anyhow::Ok(smack_pipelines::task::read_leaders(spec, &ep.bootstrap, brokers).await?)
    };
    read.await.unwrap_or_else(|e| {
        eprintln!("  warning: the stages are placed without data locality: cannot read the partition leaders: {e:#}");
        layout::Leaders::default()
    })
}

/// The services a pipeline deployed, in deploy order.
fn services_of(state_dir: &Path, name: &str) -> Result<(PipelineSpec, Vec<String>)> {
    let dir = pipeline_dir(state_dir, name);
    let file = dir.join("pipeline.yaml");
    if !file.exists() {
        bail!("no pipeline `{name}` was applied here ({} has none)", dir.display());
    }
    let (spec, _) = load(&file)?;
    let names = layout::service_names(&spec, &load_state(&dir));
    Ok((spec, names))
}

/// `smack pipeline status NAME`.
pub async fn status(state_dir: &Path, c: &ClusterFile, name: &str, output: Output) -> Result<()> {
    let (_, names) = services_of(state_dir, name)?;
    let mut rows = Vec::new();
    for s in &names {
        let deploy = schedulers::plan_view(state_dir, c, s, "deploy").await.ok().map(|v| v.plan.status.to_string());
        let pods = schedulers::pods_of(state_dir, c, s).await.unwrap_or_default();
        let running = pods
            .iter()
            .filter(|p| p.tasks.iter().any(|t| t.state == Some(smack_operator::resources::TaskState::Running)))
            .count();
        rows.push(serde_json::json!({
            "service": s,
            "deploy": deploy.unwrap_or_else(|| "NOT RUNNING".into()),
            "pods": pods.len(),
            "running": running,
        }));
    }
    match output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "pipeline": name, "services": rows }))?)
        }
        Output::Table => {
            println!("pipeline {name}");
            println!("{:<36} {:<14} {:>5} {:>8}", "SERVICE", "DEPLOY", "PODS", "RUNNING");
            for r in &rows {
                println!(
                    "{:<36} {:<14} {:>5} {:>8}",
                    r["service"].as_str().unwrap_or(""),
                    r["deploy"].as_str().unwrap_or(""),
                    r["pods"].as_u64().unwrap_or(0),
                    r["running"].as_u64().unwrap_or(0)
                );
            }
        }
    }
    Ok(())
}

/// `smack pipeline diff FILE`: what an apply would change, per service.
pub async fn diff(state_dir: &Path, c: &ClusterFile, file: &Path) -> Result<()> {
    let (spec, text) = load(file)?;
    let dir = pipeline_dir(state_dir, &spec.name);
    let mut st = load_state(&dir);
    let mut docs: Vec<ServiceDoc> = Vec::new();
    docs.extend(layout::kafka_service(&spec, &mut st));
    docs.extend(layout::cassandra_service(&spec));
    // The stages' endpoints are those of the running clusters, if any.
    let mut ep = layout::external_endpoints(&spec);
    if let Some(k) = docs.iter().find(|d| d.name == layout::kafka_service_name(&spec)) {
        ep.bootstrap = endpoints(state_dir, c, &k.name, "client").await.map(|v| v.join(",")).unwrap_or_default();
    }
    if let Some(cs) = docs.iter().find(|d| d.name == layout::cassandra_service_name(&spec)) {
        ep.cassandra = endpoints(state_dir, c, &cs.name, "native").await.unwrap_or_default();
    }
    let leaders = if ep.bootstrap.is_empty() {
        layout::Leaders::default()
    } else {
        partition_leaders(state_dir, c, &spec, &ep).await
    };
    docs.extend(layout::stage_services(&spec, &text, &ep, &leaders));
    if let Some(g) = &spec.generator {
        docs.push(layout::generator_service(&spec, g, &ep));
    }
    let tmp = tempfile_dir(&dir)?;
    for d in &docs {
        if service_cmd::plans(state_dir, c, &d.name).await.is_err() {
            println!("+ service {}  (new)", d.name);
            continue;
        }
        let path = tmp.join(format!("{}.yaml", d.name));
        std::fs::write(&path, &d.yaml)?;
        println!("service {}:", d.name);
        service_cmd::diff(state_dir, c, Some(&d.name), &path, Output::Table).await?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn tempfile_dir(dir: &Path) -> Result<PathBuf> {
    let t = dir.join(format!(".diff-{}", std::process::id()));
    std::fs::create_dir_all(&t).with_context(|| format!("creating {}", t.display()))?;
    Ok(t)
}

/// `smack pipeline delete NAME`: the generator and stages first, then the
/// clusters; every pod is decommissioned and its disk released.
pub async fn delete(state_dir: &Path, c: &ClusterFile, name: &str) -> Result<()> {
    let (_, mut names) = services_of(state_dir, name)?;
    names.reverse();
    for s in &names {
        if service_cmd::plans(state_dir, c, s).await.is_err() {
            println!("{s}: not running");
            continue;
        }
        println!("{s}:");
        service_cmd::delete(state_dir, c, Some(s)).await?;
    }
    std::fs::remove_dir_all(pipeline_dir(state_dir, name))?;
    println!("pipeline {name} deleted");
    Ok(())
}

/// For `smack up FILE`: prints, every few seconds, how many rows each
/// Cassandra sink holds, so a user sees results arriving.
pub async fn watch_rows(state_dir: &Path, c: &ClusterFile, spec: &PipelineSpec) {
    use smack_connectors::cassandra::{CassandraConfig, CassandraSession};
    use smack_pipelines::spec::Sink;
    let tables: Vec<(String, String, String)> = spec
        .sinks
        .iter()
        .filter_map(|(n, s)| match s {
            Sink::Cassandra(cs) => Some((n.clone(), cs.keyspace.clone(), cs.table.clone())),
            Sink::Kafka(_) => None,
        })
        .collect();
    if tables.is_empty() {
        return;
    }
    let points = match &spec.services.cassandra {
        Some(cs) if cs.external.is_some() => layout::external_endpoints(spec).cassandra,
        _ => endpoints(state_dir, c, &layout::cassandra_service_name(spec), "native").await.unwrap_or_default(),
    };
    let Ok(session) = CassandraSession::connect(&CassandraConfig::new(&points)).await else {
        eprintln!("cannot reach Cassandra at {} to show the rows", points.join(","));
        return;
    };
    let mut last: Vec<usize> = vec![0; tables.len()];
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut parts = Vec::new();
        for (i, (sink, ks, table)) in tables.iter().enumerate() {
            if let Ok(rows) = session.read_rows(ks, table, Some(100_000)).await {
                let n = rows.rows.len();
                parts.push(format!("{sink} ({ks}.{table}): {n} rows (+{})", n.saturating_sub(last[i])));
                last[i] = n;
            }
        }
        if !parts.is_empty() {
            println!("  {}", parts.join("; "));
        }
    }
}
