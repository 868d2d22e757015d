//! What a pipeline needs before its stage tasks start: the source topics,
//! one dead-letter topic per source, the Kafka sink topics, and the
//! keyspaces and tables of the Cassandra sinks (columns from the schema of
//! what each sink reads, primary key as declared). Existing topics and
//! tables are left as they are. `pipeline apply` and the tests call this.

use super::dead_letter::dead_letter_topic;
use super::TaskError;
use crate::runtime::StageRuntime;
use crate::spec::{PipelineSpec, Sink, Source};
use smack_connectors::cassandra::{CassandraSession, PrimaryKey};
use smack_connectors::kafka::{KafkaAdmin, TopicSpec};
use std::collections::BTreeMap;
use std::time::Duration;

/// How [`prepare`] creates things.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// The replication of each keyspace: datacenter → replicas.
    pub keyspace_replication: BTreeMap<String, u32>,
    /// How long to wait for a new topic to have leaders.
    pub topic_wait: Duration,
}

impl PrepareOptions {
    /// Keyspaces replicated `replicas` times in `datacenter`; 60 s for topics.
    pub fn new(datacenter: impl Into<String>, replicas: u32) -> PrepareOptions {
        PrepareOptions {
            keyspace_replication: [(datacenter.into(), replicas)].into(),
            topic_wait: Duration::from_secs(60),
        }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Topics it created (the others existed).
    pub topics_created: Vec<String>,
    /// Every topic the pipeline uses.
    pub topics: Vec<String>,
    /// The tables (`keyspace.table`) it ensured.
    pub tables: Vec<String>,
}

/// The topics of a pipeline, with partitions and replication: each source's
/// topic and its dead-letter topic (one partition), then each Kafka sink's
/// topic (as many partitions as the widest source, replicated as the most
/// replicated one).
pub fn topic_specs(spec: &PipelineSpec) -> Vec<TopicSpec> {
    let mut out = Vec::new();
    let (mut partitions, mut replication) = (1, 1);
    for (name, source) in &spec.sources {
        let Source::Kafka(k) = source;
        partitions = partitions.max(k.partitions as i32);
        replication = replication.max(k.replication as i32);
        out.push(TopicSpec::new(k.topic.clone(), k.partitions as i32, k.replication as i32));
        out.push(TopicSpec::new(dead_letter_topic(&spec.name, name), 1, k.replication as i32));
    }
    for sink in spec.sinks.values() {
        if let Sink::Kafka(k) = sink {
            out.push(TopicSpec::new(k.topic.clone(), partitions, replication));
        }
    }
    out
}

/// Creates the topics and Cassandra tables `spec` needs (see the module
/// doc). `session` may be `None` when the pipeline has no Cassandra sink.
pub async fn prepare(
    spec: &PipelineSpec,
    admin: &KafkaAdmin,
    session: Option<&CassandraSession>,
    options: &PrepareOptions,
) -> Result<Prepared, TaskError> {
    let mut done = Prepared::default();
    for t in topic_specs(spec) {
        if done.topics.contains(&t.name) {
            continue;
        }
        let created = admin.ensure_topic(&t).await.map_err(TaskError::kafka(format!("create topic `{}`", t.name)))?;
        if created {
            done.topics_created.push(t.name.clone());
        }
        done.topics.push(t.name);
    }
    for name in &done.topics {
        admin
            .await_topic(name, options.topic_wait)
            .await
            .map_err(TaskError::kafka(format!("wait for topic `{name}`")))?;
    }

    let cassandra: Vec<(&String, &crate::spec::CassandraSink)> = spec
        .sinks
        .iter()
        .filter_map(|(n, s)| match s {
            Sink::Cassandra(c) => Some((n, c)),
            Sink::Kafka(_) => None,
        })
        .collect();
    if cassandra.is_empty() {
        return Ok(done);
    }
    let session = session.ok_or_else(|| {
        TaskError::Spec(format!("pipeline `{}` has Cassandra sinks but no Cassandra session was given", spec.name))
    })?;
    let rt = StageRuntime::new(spec).await?;
    let mut keyspaces: Vec<&str> = Vec::new();
    for (name, sink) in cassandra {
        if !keyspaces.contains(&sink.keyspace.as_str()) {
            session
                .create_keyspace(&sink.keyspace, &options.keyspace_replication)
                .await
                .map_err(TaskError::cassandra(format!("create keyspace `{}`", sink.keyspace)))?;
            keyspaces.push(&sink.keyspace);
        }
        let schema = rt
            .sink_schema(name)
            .ok_or_else(|| TaskError::Spec(format!("sink `{name}` reads `{}`, which has no schema", sink.from)))?;
        session
            .create_table(&sink.keyspace, &sink.table, &schema, &PrimaryKey::from_columns(&sink.primary_key))
            .await
            .map_err(TaskError::cassandra(format!("create the table of sink `{name}`")))?;
        done.tables.push(format!("{}.{}", sink.keyspace, sink.table));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_the_fraud_example() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fraud-detection/pipeline.yaml"))
                .expect("the example");
        let spec = PipelineSpec::from_yaml(&text, "pipeline.yaml").expect("valid");
        let t: Vec<(String, i32, i32)> =
            topic_specs(&spec).into_iter().map(|t| (t.name, t.partitions, t.replication_factor)).collect();
        assert_eq!(
            t,
            vec![
                ("transactions".to_string(), 6, 3),
                ("fraud-detection.transactions.dead-letter".to_string(), 1, 3),
                ("fraud-alerts".to_string(), 6, 3),
            ]
        );
    }
}
