//! `smack metrics targets [--output json]`: every `/metrics` endpoint of the
//! cluster, as a Prometheus file-based service discovery list
//! (`file_sd_configs`): the master, each agent that serves its own
//! registry, each framework's scheduler API, and each pod with a port named
//! `metrics` (stage tasks). See `examples/monitoring/`.
//!
//! Every target carries `smack_role` (`master`, `agent`, `scheduler`,
//! `stage`) and, where it applies, `agent`, `service` and `pod`. Under
//! `smack up` the agents' families are in the master's registry, so agents
//! whose API answers no `/metrics` are left out rather than listed down.

use crate::cluster::ClusterFile;
use crate::Output;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use smack_operator::scheduler::api::PodView;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Subcommand)]
pub enum MetricsCmd {
    /// List every /metrics endpoint (Prometheus file_sd JSON with --output json).
    Targets {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
}

/// One entry of a Prometheus `file_sd_configs` file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The port named `metrics`, that a pod's metrics are served on.
const METRICS_PORT: &str = "metrics";

/// `host:port` of an `http://host:port[/…]` URL.
fn host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let hp = rest.split('/').next()?;
    (!hp.is_empty() && hp.contains(':')).then(|| hp.to_string())
}

fn group(target: String, role: &str, labels: &[(&str, &str)]) -> TargetGroup {
    let mut l: BTreeMap<String, String> = [("smack_role".to_string(), role.to_string())].into();
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TargetGroup { targets: vec![target], labels: l }
}

/// Stage (and any) pods with a `metrics` port, as targets of `service`.
fn pod_targets(service: &str, pods: &[PodView]) -> Vec<TargetGroup> {
    pods.iter()
        .filter(|p| !p.pod.hostname.is_empty())
        .filter_map(|p| {
            let port = p.pod.ports.get(METRICS_PORT)?;
            Some(group(format!("{}:{port}", p.pod.hostname), "stage", &[("service", service), ("pod", &p.pod.name)]))
        })
        .collect()
}

/// Every target of the cluster, in a stable order.
pub async fn targets(c: &ClusterFile) -> Result<Vec<TargetGroup>> {
    let client = c.master_client();
    let mut out = Vec::new();
    let master = host_port(&c.master).with_context(|| format!("the master URL {} has no host:port", c.master))?;
    out.push(group(master, "master", &[]));
    for a in client.agents().await.context("listing agents")? {
        let Some(ep) = a.endpoint.as_deref() else { continue };
        let Some(hp) = host_port(ep) else { continue };
        if client.agent_at(ep).serves_metrics(Duration::from_secs(5)).await {
            out.push(group(hp, "agent", &[("agent", &a.hostname)]));
        }
    }
    let state = client.state().await.context("reading the master's state")?;
    for fw in state.frameworks {
        let Some(api) = fw.api_url.as_deref() else { continue };
        let Some(hp) = host_port(api) else { continue };
        out.push(group(hp, "scheduler", &[("service", &fw.name)]));
        // Its pods, through the master's forward, with the token.
        let pods = client.scheduler_of(&fw.id).pods().await.unwrap_or_default();
        out.extend(pod_targets(&fw.name, &pods));
    }
    Ok(out)
}

pub async fn run(c: &ClusterFile, cmd: MetricsCmd) -> Result<()> {
    match cmd {
        MetricsCmd::Targets { output } => {
            let groups = targets(c).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&groups)?);
                return Ok(());
            }
            println!("{:<10} {:<24} LABELS", "ROLE", "TARGET");
            for g in &groups {
                let labels: Vec<String> =
                    g.labels.iter().filter(|(k, _)| *k != "smack_role").map(|(k, v)| format!("{k}={v}")).collect();
                let role = g.labels.get("smack_role").map(String::as_str).unwrap_or("");
                println!("{:<10} {:<24} {}", role, g.targets.join(","), labels.join(" "));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_operator::scheduler::service::PodRecord;

    #[test]
    fn host_ports_from_urls() {
        assert_eq!(host_port("http://127.0.0.1:5050").as_deref(), Some("127.0.0.1:5050"));
        assert_eq!(host_port("http://127.0.1.2:40001/").as_deref(), Some("127.0.1.2:40001"));
        assert_eq!(host_port("http://h:1/v1/x").as_deref(), Some("h:1"));
        assert_eq!(host_port("http://nohost"), None);
        assert_eq!(host_port(""), None);
    }

    #[test]
    fn pods_with_a_metrics_port_are_stage_targets() {
        let pod = |name: &str, host: &str, ports: &[(&str, u16)]| PodView {
            pod: PodRecord {
                name: name.into(),
                hostname: host.into(),
                ports: ports.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                ..Default::default()
            },
            tasks: Vec::new(),
            phase: Default::default(),
        };
        let pods = vec![
            pod("analyze-0", "127.0.1.1", &[("metrics", 41001)]),
            pod("kafka-0", "127.0.1.2", &[("broker", 9092)]),
            pod("analyze-1", "", &[("metrics", 41002)]),
        ];
        let t = pod_targets("fraud", &pods);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].targets, ["127.0.1.1:41001"]);
        assert_eq!(t[0].labels["smack_role"], "stage");
        assert_eq!(t[0].labels["service"], "fraud");
        assert_eq!(t[0].labels["pod"], "analyze-0");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json[0]["targets"][0], "127.0.1.1:41001", "file_sd shape: {json}");
    }
}
