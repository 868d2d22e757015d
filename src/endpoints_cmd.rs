//! `smack endpoints kafka|…`: where clients connect to a catalog service,
//! read from the service's scheduler API (its placed pods' hosts and named
//! ports), e.g. Kafka's bootstrap servers `host:port,host:port`.

use crate::cluster::ClusterFile;
use crate::schedulers;
use crate::Output;
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use smack_catalog::kafka::service as kafka_service;
use smack_operator::scheduler::api::PodView;
use std::path::Path;

#[derive(Subcommand, Clone)]
pub enum EndpointsCmd {
    /// Kafka's bootstrap servers (the brokers' `client` ports).
    Kafka(EndpointArgs),
    /// Cassandra's contact points (the nodes' `native` CQL ports).
    Cassandra(EndpointArgs),
}

#[derive(Args, Clone)]
pub struct EndpointArgs {
    /// The service's name.
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
}

pub async fn run(state_dir: &Path, c: &ClusterFile, cmd: EndpointsCmd) -> Result<()> {
    let (service, port, args) = match &cmd {
        EndpointsCmd::Kafka(a) => (a.service.clone().unwrap_or_else(|| "kafka".into()), kafka_service::CLIENT_PORT, a),
        EndpointsCmd::Cassandra(a) => {
            (a.service.clone().unwrap_or_else(|| "cassandra".into()), smack_catalog::cassandra::service::NATIVE_PORT, a)
        }
    };
    let eps = endpoints(state_dir, c, &service, port).await?;
    if args.output == Output::Json {
        let v = serde_json::json!({ "service": service, "port": port, "endpoints": eps, "joined": eps.join(",") });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", eps.join(","));
    }
    Ok(())
}

/// The pods of `service` as its scheduler reports them.
pub async fn pods(state_dir: &Path, c: &ClusterFile, service: &str) -> Result<Vec<PodView>> {
    let s = schedulers::scheduler(state_dir, c, Some(service))?;
    s.pods().await.map_err(|e| match e {
        smack_operator::Error::Api { message, .. } => {
            anyhow!("service {service}: the scheduler refused to list pods: {message}")
        }
        e => anyhow!("service {service}: {e}"),
    })
}

/// `host:port` of every placed pod of `service` with a port named
/// `port_name`, in pod order; an error when there is none.
pub async fn endpoints(state_dir: &Path, c: &ClusterFile, service: &str, port_name: &str) -> Result<Vec<String>> {
    let views = pods(state_dir, c, service).await?;
    let eps = smack_catalog::placed_endpoints(&views, port_name);
    if eps.is_empty() {
        bail!("service {service} has no placed pod with a port named `{port_name}` yet ({} pod(s) known)", views.len());
    }
    Ok(eps)
}
