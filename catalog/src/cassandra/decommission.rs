//! The decommission hook of a Cassandra pod (`smack cassandra
//! decommission`): checks over CQL that every user keyspace keeps its
//! replicas without this node, then `nodetool decommission` on the pod's own
//! node over its local JMX port, so a scale-down streams the node's data
//! away before its disk is released.

use super::cql::{ask, keyspaces_from, ring, text};
use super::service as svc;
use crate::artifacts::{self, Service};
use crate::error::{bail, chain, format_err, Context, Result};

/// Whether this node may leave: every user keyspace keeps no more replicas
/// in its datacenter than the nodes that would remain there, as the node
/// itself (at `me`, its CQL address) sees the ring and the schema.
async fn safe_to_leave(me: &str) -> Result<Result<(), String>> {
    let members = ring(&[me.to_string()]).await?;
    let own = ask(me).await?;
    let dc = text(own.local.get("data_center"));
    let in_dc = members.iter().filter(|n| n.datacenter == dc).count() as u32;
    let spaces = keyspaces_from(&[me.to_string()]).await?;
    Ok(svc::check_scale_down(&dc, in_dc.saturating_sub(1), (members.len() as u32).saturating_sub(1), &spaces)
        .map_err(|e| format!("refusing to decommission {}: {e}", own.address)))
}

/// The `nodetool` arguments the hook runs, from [`safe_to_leave`]'s
/// answer. Unsafe: none — the hook fails with the reason, and the
/// scheduler retries it, so the scale-down goes on once the replication is
/// lowered. Checked: `decommission --force`, because Cassandra's own check
/// also counts its system keyspaces and refuses a 3-node ring outright
/// ("Not enough live nodes to maintain replication factor in keyspace
/// system_distributed (RF = 3, N = 3)"), whose replication is Cassandra's
/// default rather than the user's. Unchecked (the node does not answer
/// CQL, e.g. already decommissioned): Cassandra's own check applies.
fn decommission_args(check: &Result<Result<(), String>, String>) -> Result<Vec<&'static str>, String> {
    match check {
        Ok(Ok(())) => Ok(vec!["decommission", "--force"]),
        Ok(Err(why)) => Err(why.clone()),
        Err(_) => Ok(vec!["decommission"]),
    }
}

/// `smack cassandra decommission` (the pod's decommission hook): checks
/// the keyspaces over CQL, then `nodetool decommission` on this pod's node
/// over its local JMX port; a node already decommissioned is fine (the
/// hook may run again after a crash).
pub async fn decommission() -> Result<()> {
    let me = match (std::env::var("HOST"), std::env::var("PORT_NATIVE")) {
        (Ok(h), Ok(p)) if !h.is_empty() && !p.is_empty() => Some(format!("{h}:{p}")),
        _ => None,
    };
    let check = match &me {
        Some(me) => safe_to_leave(me).await.map_err(|e| chain(&e)),
        None => Err("HOST or PORT_NATIVE is not set".to_string()),
    };
    match &check {
        Ok(Ok(())) => println!("smack: every user keyspace keeps its replicas without this node"),
        Ok(Err(_)) => {}
        Err(e) => println!("smack: cannot check the keyspaces over CQL ({e}); Cassandra's own check applies"),
    }
    let args = decommission_args(&check).map_err(|why| format_err!("{why}"))?;
    tokio::task::spawn_blocking(move || nodetool_decommission(&args)).await?
}

/// Runs `nodetool ARGS` (a decommission) on this pod's node.
fn nodetool_decommission(args: &[&str]) -> Result<()> {
    let jmx = std::env::var("PORT_JMX")
        .map_err(|_| format_err!("PORT_JMX is not set: run as a Cassandra pod's decommission hook"))?;
    let cache = artifacts::default_cache_dir();
    if !artifacts::status(Service::Cassandra, &cache).complete {
        bail!("the Cassandra jars are not in {}: run `smack artifacts fetch cassandra`", cache.display());
    }
    let artifact = artifacts::resolve(Service::Cassandra, &cache)?;
    let java = artifacts::java_binary()?;
    let dir = std::env::var("SMACK_SANDBOX").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let logback = dir.join("nodetool-logback.xml");
    std::fs::write(&logback, super::config::cassandra_logback_xml("WARN"))
        .with_context(|| format!("writing {}", logback.display()))?;
    let nodetool = |args: &[&str]| -> Result<(bool, String)> {
        let mut cmd = std::process::Command::new(&java);
        cmd.arg("-Xmx128m").args(artifacts::CASSANDRA_JAVA17_MODULE_FLAGS);
        cmd.arg(format!("-Dlogback.configurationFile={}", logback.display()));
        cmd.args(["-cp", &artifact.classpath, "org.apache.cassandra.tools.NodeTool", "-h", "127.0.0.1", "-p", &jmx]);
        cmd.args(args);
        let out = cmd.output().with_context(|| format!("running {}", java.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    };
    println!("smack: nodetool {} (JMX 127.0.0.1:{jmx})", args.join(" "));
    let (ok, out) = nodetool(args)?;
    print!("{out}");
    if ok {
        println!("smack: decommissioned");
        return Ok(());
    }
    let (_, netstats) = nodetool(&["netstats"])?;
    if netstats.contains("DECOMMISSIONED") {
        println!("smack: already decommissioned");
        return Ok(());
    }
    bail!("nodetool decommission failed: {}", out.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_forces_only_after_checking_the_user_keyspaces() {
        assert_eq!(decommission_args(&Ok(Ok(()))), Ok(vec!["decommission", "--force"]));
        let why = "refusing to decommission h2: e2e".to_string();
        assert_eq!(decommission_args(&Ok(Err(why.clone()))), Err(why));
        assert_eq!(decommission_args(&Err("connection refused".into())), Ok(vec!["decommission"]));
    }
}
