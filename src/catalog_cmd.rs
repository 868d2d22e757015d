//! `smack catalog …` (hidden): the entry points of the catalog services'
//! tasks, run by agents from the service specs, never by hand. Each reads
//! its task env, renders its configs and execs its JVM (the bodies live in
//! `smack_catalog`). Also the scheduler access the catalog's drivers use
//! ([`Scheduler`]).

use crate::cluster::ClusterFile;
use clap::{Args, Subcommand};
use smack_catalog::cassandra::node::NodeOptions;
use smack_catalog::cassandra::service as cassandra_service;
use smack_operator::scheduler::api::{PlanSummary, PodView, SpecUpdate};
use std::path::Path;
use std::time::Instant;

#[derive(Subcommand, Clone)]
pub enum CatalogCmd {
    /// A Kafka broker (KRaft, combined with a controller) of a `kafka-N` pod.
    KafkaBroker,
    /// A Cassandra node of a `cassandra-N` pod.
    CassandraNode(CassandraNodeArgs),
}

#[derive(Args, Clone, Debug)]
pub struct CassandraNodeArgs {
    /// `cluster_name` (fixed for the cluster's life).
    #[arg(long, default_value = "smack")]
    pub cluster_name: String,
    /// The datacenter (the rack is the agent's zone).
    #[arg(long, default_value = "dc1")]
    pub datacenter: String,
    /// The storage (gossip) port, the same on every node.
    #[arg(long, default_value_t = cassandra_service::DEFAULT_STORAGE_PORT)]
    pub storage_port: u16,
    #[arg(long, default_value_t = 16)]
    pub num_tokens: u32,
    /// JVM heap (MiB).
    #[arg(long, default_value_t = 1024)]
    pub heap_mb: u32,
    /// `-Dcassandra.ring_delay_ms`.
    #[arg(long, default_value_t = 5000)]
    pub ring_delay_ms: u32,
    /// A `cassandra.yaml` override, KEY=VALUE (repeatable).
    #[arg(long = "set", value_parser = cassandra_service::parse_override)]
    pub overrides: Vec<(String, String)>,
    /// Cassandra's log level (INFO shows the startup lines).
    #[arg(long, default_value = "INFO")]
    pub log_level: String,
}

impl From<CassandraNodeArgs> for NodeOptions {
    fn from(a: CassandraNodeArgs) -> Self {
        NodeOptions {
            cluster_name: a.cluster_name,
            datacenter: a.datacenter,
            storage_port: a.storage_port,
            num_tokens: a.num_tokens,
            heap_mb: a.heap_mb,
            ring_delay_ms: a.ring_delay_ms,
            overrides: a.overrides,
            log_level: a.log_level,
        }
    }
}

pub fn run(cmd: CatalogCmd) -> anyhow::Result<()> {
    match cmd {
        CatalogCmd::KafkaBroker => Ok(smack_catalog::kafka::broker::run()?),
        CatalogCmd::CassandraNode(args) => Ok(smack_catalog::cassandra::node::run(args.into())?),
    }
}

/// One service's scheduler, found through the state dir and the cluster,
/// as the catalog's drivers (`kafka scale`, `cassandra scale`, `kafka
/// quorum`) use it.
pub struct Scheduler<'a> {
    pub state_dir: &'a Path,
    pub cluster: &'a ClusterFile,
    pub service: &'a str,
}

/// The CLI's error, kept whole (its causes on one line) for the catalog.
fn lift(e: anyhow::Error) -> smack_catalog::Error {
    smack_catalog::Error::Other(format!("{e:#}"))
}

impl smack_catalog::ServiceClient for Scheduler<'_> {
    fn service(&self) -> &str {
        self.service
    }
    async fn spec(&self) -> smack_catalog::Result<SpecUpdate> {
        crate::service_cmd::spec_of(self.state_dir, self.cluster, self.service).await.map_err(lift)
    }
    async fn submit_spec(&self, update: &SpecUpdate) -> smack_catalog::Result<Vec<String>> {
        crate::service_cmd::submit_spec(self.state_dir, self.cluster, self.service, update).await.map_err(lift)
    }
    async fn plans(&self) -> smack_catalog::Result<Vec<PlanSummary>> {
        crate::service_cmd::plans(self.state_dir, self.cluster, self.service).await.map_err(lift)
    }
    async fn wait_plan_complete(&self, plan: &str, deadline: Instant) -> smack_catalog::Result<()> {
        crate::service_cmd::wait_plan_complete(self.state_dir, self.cluster, self.service, plan, deadline)
            .await
            .map_err(lift)
    }
    async fn pods(&self) -> smack_catalog::Result<Vec<PodView>> {
        crate::endpoints_cmd::pods(self.state_dir, self.cluster, self.service).await.map_err(lift)
    }
}
