//! The Kafka pods' readiness and hooks that talk to the controller quorum:
//! `smack kafka ready --join-quorum` (a controller joins the voter set once
//! per launch, and is ready once the leader has seen it caught up) and
//! `smack kafka update-order` (a roll restarts the active controller last).
//! Both read the task env the scheduler gives them.

use super::admin;
use super::config as kafka;
use super::plan::leader_last;
use super::service as kafka_service;
use crate::error::{bail, Context, Result};
use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
use std::time::Duration;

/// `kafka ready --join-quorum`: makes the node of this task env a voter
/// of the controller quorum and waits until the quorum's leader has seen
/// it caught up since its launch (so a roll never takes the next
/// controller down while this one still replays the log); once per
/// launch (a marker in the sandbox says it was done, and later checks
/// pass at once): a node taken out of the quorum while it runs (a drained
/// broker) is not added back. A broker beside dedicated controllers has
/// nothing to join.
pub async fn join_quorum_once() -> Result<()> {
    let env = kafka_service::BrokerEnv::from_env(|k| std::env::var(k).ok())?;
    if !env.role.is_controller() {
        return Ok(());
    }
    let sandbox = match std::env::var_os("SMACK_SANDBOX").filter(|s| !s.is_empty()) {
        Some(s) => std::path::PathBuf::from(s),
        None => std::env::current_dir().context("no SMACK_SANDBOX and no current dir")?,
    };
    let marker = sandbox.join(VOTER_MARKER);
    if marker.exists() {
        println!("node {} joined the controller quorum at this launch", env.node_id);
        return Ok(());
    }
    let meta = kafka::read_meta_properties(&env.log_dir())?
        .with_context(|| format!("{} is not formatted yet", env.log_dir().display()))?;
    let dir = meta
        .directory_id
        .with_context(|| format!("{}/meta.properties has no directory.id", env.log_dir().display()))?;
    // The node's launch: its launcher writes the pid file right before it
    // execs the JVM.
    let pid_file = sandbox.join(crate::launch::PID_FILE);
    let launched = std::fs::metadata(&pid_file)
        .and_then(|m| m.modified())
        .with_context(|| format!("node {} has not started yet (no {})", env.node_id, pid_file.display()))?;
    let since_ms = launched.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    // A JVM of the admin client costs seconds of CPU: none while the node
    // itself does not listen yet.
    let own = format!("{}:{}", env.host, env.controller_port);
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&own)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("node {} does not listen on its controller port {own} yet: {e}", env.node_id),
        Err(_) => bail!("node {} does not answer on its controller port {own} yet", env.node_id),
    }
    let controllers = env.controller_endpoints().join(",");
    let said = admin::join_quorum(&controllers, env.node_id, &dir, &env.host, env.controller_port, since_ms).await?;
    std::fs::write(&marker, format!("{said}\n")).with_context(|| format!("writing {}", marker.display()))?;
    println!("{said}");
    Ok(())
}

/// The marker `kafka ready --join-quorum` leaves in the task's sandbox.
pub const VOTER_MARKER: &str = ".smack-kafka-voter";

/// `kafka update-order`: `UPDATE_PODS` with the pod of the active
/// controller moved last, one per line.
pub async fn update_order() -> Result<()> {
    let var =
        |k: &str| std::env::var(k).with_context(|| format!("{k} is not set (the scheduler sets it for the hook)"));
    let pod_type = var("POD_TYPE")?;
    let order: Vec<String> = var("UPDATE_PODS")?.split_whitespace().map(String::from).collect();
    let pods: Vec<PodAddress> = serde_json::from_str(&var(PODS_ENV)?).context("SMACK_PODS is not a JSON list")?;
    let controllers: Vec<String> = pods
        .iter()
        .filter(|p| p.pod_type == pod_type)
        .filter_map(|p| Some(format!("{}:{}", p.host, p.ports.get(kafka_service::CONTROLLER_PORT)?)))
        .collect();
    if controllers.is_empty() {
        bail!("no pod of type {pod_type} has a `{}` port: they are no controllers", kafka_service::CONTROLLER_PORT);
    }
    let q = admin::quorum(&format!("controllers={}", controllers.join(","))).await?;
    let leader = u32::try_from(q.leader).ok().and_then(|id| kafka_service::pod_of_node(&pods, id));
    eprintln!(
        "active controller: node {} ({}); voters {:?}",
        q.leader,
        leader.map(|p| p.name.as_str()).unwrap_or("no pod"),
        q.voters
    );
    for p in leader_last(&order, leader.map(|p| p.name.as_str())) {
        println!("{p}");
    }
    Ok(())
}
