//! `smack kafka …`: topics and brokers of a Kafka service over the admin
//! API (rdkafka), the broker readiness gate the service's pods use, and
//! `drain`, the decommission hook that moves every replica off a broker;
//! `rebalance`, and `scale`, which changes the broker count through the
//! service's scheduler and moves the replicas to match; `quorum`, the
//! KRaft voters and the active controller; and `update-order`, the
//! controllers' `update-order` hook (the active controller restarts last).
//!
//! The bootstrap servers are `--bootstrap`, else the service's brokers as
//! its scheduler reports them (`smack endpoints kafka`).
//!
//! The bodies (planners, drivers, readiness, hooks, admin I/O) live in
//! `smack_catalog::kafka`; this file parses, dispatches and prints.

use crate::catalog_cmd::Scheduler;
use crate::cluster::ClusterFile;
use crate::endpoints_cmd;
use crate::Output;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use smack_catalog::kafka::plan::{check_replication, DEFAULT_THROTTLE};
use smack_catalog::kafka::{brokers::broker_rows, drain, readiness, scale, service as kafka_service};
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig, TopicDescription, TopicSpec};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct KafkaArgs {
    #[command(subcommand)]
    pub cmd: KafkaCmd,
    /// The Kafka service.
    #[arg(long, global = true, default_value = "kafka")]
    pub service: String,
    /// Bootstrap servers (`host:port,…`); else found through the service's scheduler.
    #[arg(long, global = true)]
    pub bootstrap: Option<String>,
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Subcommand, Clone)]
pub enum KafkaCmd {
    /// Topics: create, list, describe, delete, partitions, config.
    Topic {
        #[command(subcommand)]
        cmd: TopicCmd,
    },
    /// Brokers: id, host and pod, rack (zone), leader count, under-replicated partitions.
    Brokers,
    /// Exit 0 when broker N is registered and no partition it leads or follows is
    /// under-replicated; else exit 1 with the reason (the pods' readiness check).
    Ready {
        #[arg(long, required_unless_present = "controller")]
        broker: Option<i32>,
        /// A dedicated controller: ready once it is a voter (with --join-quorum).
        #[arg(long, conflicts_with = "broker")]
        controller: bool,
        /// First make this node (a controller, from its task env) a voter of
        /// the controller quorum, once per launch: not ready until it is.
        #[arg(long)]
        join_quorum: bool,
    },
    /// The `update-order` hook of the pods that are controllers: prints the
    /// pods of `UPDATE_PODS` with the active controller last (env from the
    /// scheduler: `POD_TYPE`, `UPDATE_PODS`, `SMACK_PODS`).
    UpdateOrder,
    /// Move every replica off broker N onto the others, wait until done, and
    /// take N out of the controller quorum (the pods' decommission hook).
    Drain {
        #[arg(long)]
        broker: i32,
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up after this long.
        #[arg(long, default_value = "30m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
    /// Move replicas so that every broker holds a fair share of each topic,
    /// rack-aware and throttled, and wait until done.
    Rebalance {
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up after this long.
        #[arg(long, default_value = "30m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
    /// The KRaft controller voters (Kafka's view); `--prune` removes the
    /// voters whose pod is gone.
    Quorum {
        #[arg(long)]
        prune: bool,
    },
    /// Change the number of brokers: more are deployed and then the replicas
    /// rebalanced onto them; fewer are decommissioned highest id first, each
    /// drained by its decommission hook. Refused when fewer brokers would
    /// remain than a topic's replication factor.
    Scale {
        #[arg(long)]
        brokers: u32,
        /// Replication throttle while replicas move, bytes/s per broker (0: none).
        #[arg(long, default_value_t = DEFAULT_THROTTLE)]
        throttle: u64,
        /// Give up waiting for the plans and the moves after this long.
        #[arg(long, default_value = "60m", value_parser = crate::commands::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Clone)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        replication: i32,
        /// Topic config KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List {
        /// Kafka's internal topics too.
        #[arg(long)]
        internal: bool,
    },
    /// A topic's partitions: leader, replicas, ISR.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Grow a topic to COUNT partitions.
    Partitions {
        name: String,
        #[arg(long)]
        count: usize,
    },
    /// Show a topic's configs, or change them with --set KEY=VALUE / --unset KEY.
    Config {
        name: String,
        #[arg(long, value_parser = parse_kv)]
        set: Vec<(String, String)>,
        #[arg(long)]
        unset: Vec<String>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Cluster access is only needed when the bootstrap servers are not given.
pub async fn run(state_dir: &Path, cluster: impl FnOnce() -> Result<ClusterFile>, args: KafkaArgs) -> Result<()> {
    match args.cmd {
        KafkaCmd::Scale { brokers, throttle, timeout } => {
            let c = cluster()?;
            let svc = Scheduler { state_dir, cluster: &c, service: &args.service };
            return Ok(scale::scale(&svc, brokers, throttle, timeout).await?);
        }
        KafkaCmd::Quorum { prune } => {
            let c = cluster()?;
            let svc = Scheduler { state_dir, cluster: &c, service: &args.service };
            let q = scale::prune_voters(&svc, prune).await?;
            if args.output == Output::Json {
                println!("{}", serde_json::to_string(&q)?);
            } else {
                println!("controller voters {:?}; active controller {}", q.voters, q.leader);
            }
            return Ok(());
        }
        KafkaCmd::UpdateOrder => return Ok(readiness::update_order().await?),
        KafkaCmd::Ready { controller: true, join_quorum, .. } => {
            if !join_quorum {
                bail!("`kafka ready --controller` checks the quorum: add --join-quorum");
            }
            return Ok(readiness::join_quorum_once().await?);
        }
        _ => {}
    }
    let json = args.output == Output::Json;
    let mut pods = Vec::new();
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => {
            let c = cluster()?;
            pods = endpoints_cmd::pods(state_dir, &c, &args.service).await?;
            let eps = smack_catalog::placed_endpoints(&pods, kafka_service::CLIENT_PORT);
            if eps.is_empty() {
                bail!(
                    "service {} has no placed broker yet; see `smack pod list --service {}`",
                    args.service,
                    args.service
                );
            }
            eps.join(",")
        }
    };
    let timeout = match args.cmd {
        KafkaCmd::Ready { .. } => Duration::from_secs(8),
        _ => Duration::from_secs(30),
    };
    let config = KafkaClientConfig::new(bootstrap.clone()).with_client_id("smack-cli").with_timeout(timeout);
    let admin = KafkaAdmin::connect(&config).await.with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    match args.cmd {
        KafkaCmd::Topic { cmd } => topic(&admin, cmd, json).await,
        KafkaCmd::Brokers => brokers(&admin, &pods, json).await,
        KafkaCmd::Ready { broker, join_quorum, .. } => {
            let broker = broker.context("--broker N is needed")?;
            let r = admin.broker_ready(broker).await?;
            if r.ready && join_quorum {
                readiness::join_quorum_once()
                    .await
                    .with_context(|| format!("broker {broker} is up but not a controller voter"))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
            if r.ready {
                if !json {
                    println!("broker {broker} ready: {}", r.reason);
                }
                Ok(())
            } else {
                bail!("broker {broker} not ready: {}", r.reason)
            }
        }
        KafkaCmd::Drain { broker, throttle, timeout } => {
            Ok(drain::drain(&admin, &bootstrap, broker, throttle, timeout).await?)
        }
        KafkaCmd::Rebalance { throttle, timeout } => {
            Ok(drain::rebalance(&admin, &bootstrap, throttle, timeout).await.map(|_| ())?)
        }
        KafkaCmd::Scale { .. } | KafkaCmd::Quorum { .. } | KafkaCmd::UpdateOrder => unreachable!("handled above"),
    }
}

async fn topic(admin: &KafkaAdmin, cmd: TopicCmd, json: bool) -> Result<()> {
    match cmd {
        TopicCmd::Create { name, partitions, replication, configs } => {
            let brokers = admin.snapshot().await?.brokers.len();
            check_replication(replication, brokers)?;
            let mut spec = TopicSpec::new(&name, partitions, replication);
            spec.configs = configs.into_iter().collect();
            admin.create_topic(&spec).await?;
            let t = admin.await_topic(&name, Duration::from_secs(30)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("created topic {name}: {partitions} partition(s), replication {replication}");
            }
        }
        TopicCmd::List { internal } => {
            let names = admin.list_topics(internal).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        TopicCmd::Describe { name } => {
            let t = admin.describe_topic(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", describe_table(&t));
            }
        }
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": name }));
            } else {
                println!("deleted topic {name}");
            }
        }
        TopicCmd::Partitions { name, count } => {
            admin.add_partitions(&name, count).await?;
            if json {
                println!("{}", serde_json::json!({ "topic": name, "partitions": count }));
            } else {
                println!("topic {name} now has {count} partitions");
            }
        }
        TopicCmd::Config { name, set, unset } => {
            if !set.is_empty() || !unset.is_empty() {
                let mut changes: BTreeMap<String, Option<String>> =
                    set.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(unset.into_iter().map(|k| (k, None)));
                admin.alter_topic_configs(&name, &changes).await?;
            }
            let cfg = admin.describe_topic_configs(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            } else {
                for (k, v) in cfg.iter().filter(|(_, v)| !v.is_default) {
                    println!("{k}={} ({})", v.value.as_deref().unwrap_or("-"), v.source);
                }
            }
        }
    }
    Ok(())
}

fn describe_table(t: &TopicDescription) -> String {
    let mut out =
        format!("topic {} ({} partitions, replication {})\n", t.name, t.partitions.len(), t.replication_factor());
    out.push_str(&format!("{:<10} {:<8} {:<16} {}\n", "PARTITION", "LEADER", "REPLICAS", "ISR"));
    for p in &t.partitions {
        let replicas = format!("{:?}", p.replicas);
        out.push_str(&format!(
            "{:<10} {:<8} {:<16} {:?}{}\n",
            p.id,
            p.leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
            replicas,
            p.isr,
            if p.under_replicated() { "  (under-replicated)" } else { "" }
        ));
    }
    out
}

async fn brokers(admin: &KafkaAdmin, pods: &[smack_operator::scheduler::api::PodView], json: bool) -> Result<()> {
    let rows = broker_rows(&admin.brokers().await?, pods);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<4} {:<22} {:<10} {:<18} {:<10} {:<8} {:<8} URP",
        "ID", "ADDRESS", "POD", "AGENT", "RACK", "LEADERS", "REPLICAS"
    );
    for r in rows {
        println!(
            "{:<4} {:<22} {:<10} {:<18} {:<10} {:<8} {:<8} {}",
            r.id,
            format!("{}:{}", r.host, r.port),
            r.pod.as_deref().unwrap_or("-"),
            r.agent_id.as_deref().unwrap_or("-"),
            r.rack.as_deref().unwrap_or("-"),
            r.leader_count,
            r.replica_count,
            r.under_replicated
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("nope").is_err());
        assert!(parse_kv("=x").is_err());
    }
}
