//! The readiness check of a Cassandra node task (`smack cassandra ready`):
//! passes once this pod's node is `UN` as seen by every placed node
//! ([`super::service::node_ready`]), and remembers in the sandbox when it
//! first did.

use super::cql::{gossip, node_session, resolve};
use super::service::{self as svc, GossipRow, NodeView};
use crate::error::{bail, chain, format_err, Context, Result};
use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
use std::path::Path;

/// `smack cassandra ready`: this pod's node, from the task's env.
pub async fn ready() -> Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = env("HOST").ok_or_else(|| format_err!("HOST is not set: run as a Cassandra pod's readiness check"))?;
    let port = env("PORT_NATIVE").ok_or_else(|| format_err!("PORT_NATIVE is not set"))?;
    let pods: Vec<PodAddress> = match env(PODS_ENV) {
        Some(s) => serde_json::from_str(&s).with_context(|| format!("{PODS_ENV}: not a JSON list of pods"))?,
        None => Vec::new(),
    };
    let me = resolve(&format!("{host}:{port}")).await?;
    let mut targets: Vec<String> = pods
        .iter()
        .filter(|p| p.pod_type == svc::POD_TYPE)
        .filter_map(|p| p.ports.get(svc::NATIVE_PORT).map(|n| format!("{}:{n}", p.host)))
        .collect();
    let mine = format!("{host}:{port}");
    if !targets.contains(&mine) {
        targets.push(mine);
    }
    let views = futures::future::join_all(targets.iter().map(|t| async move {
        let r: Result<(String, Vec<GossipRow>)> = async {
            let addr = resolve(t).await?;
            let s = node_session(addr).await?;
            Ok((addr.ip().to_string(), gossip(&s).await?.into_iter().map(|g| g.row).collect()))
        }
        .await;
        match r {
            Ok((host, rows)) => NodeView { host, rows: Ok(rows) },
            Err(e) => {
                NodeView { host: t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t).to_string(), rows: Err(chain(&e)) }
            }
        }
    }))
    .await;
    match svc::node_ready(&me.ip().to_string(), &views) {
        Ok(()) => {
            println!("{} is UN as seen by all {} placed node(s)", me.ip(), views.len());
            // The first pass is remembered in the sandbox: when this start
            // of the node became UN everywhere (a roll's order, after the fact).
            if let Some(sb) = env("SMACK_SANDBOX") {
                let marker = Path::new(&sb).join(svc::READY_MARKER);
                if !marker.exists() {
                    let seen: Vec<String> = views.iter().map(|v| v.host.clone()).collect();
                    let line = svc::ready_marker_line(smack_operator::resources::now_ms(), &me.ip().to_string(), &seen);
                    if let Err(e) = std::fs::write(&marker, line) {
                        eprintln!("cannot write {}: {e}", marker.display());
                    }
                }
            }
            Ok(())
        }
        Err(why) => bail!("not ready: {why}"),
    }
}
