//! `smack catalog …` (hidden): the entry points of the catalog services'
//! tasks, run by agents from the service specs, never by hand. Each reads
//! its task env, renders its configs and execs its JVM.

use clap::Subcommand;

#[derive(Subcommand, Clone)]
pub enum CatalogCmd {
    /// A Kafka broker (KRaft, combined with a controller) of a `kafka-N` pod.
    KafkaBroker,
    /// A Cassandra node of a `cassandra-N` pod.
    CassandraNode(crate::catalog_cassandra::CassandraNodeArgs),
}

pub fn run(cmd: CatalogCmd) -> anyhow::Result<()> {
    match cmd {
        CatalogCmd::KafkaBroker => crate::catalog_kafka::run(),
        CatalogCmd::CassandraNode(args) => crate::catalog_cassandra::run(args),
    }
}
