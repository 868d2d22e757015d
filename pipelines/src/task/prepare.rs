//! What a pipeline needs before its stage tasks start: the source topics,
//! one dead-letter topic per source, the Kafka sink topics, the keyspaces
//! and tables of the Cassandra sinks (columns from the schema of what each
//! sink reads, primary key as declared) and of the lookups (the declared
//! columns, the key as the partition key). Existing topics and tables are
//! left as they are. `pipeline apply` and the tests call this.
//!
//! [`fill_generated_lookups`] then writes the reference rows a pipeline's
//! generator implies: the fraud generator's cards have home countries, so
//! a lookup keyed by `card_id` with a `home_country` column gets every
//! card's home country (deterministic from the generator's seed and rate),
//! before the generator produces its first transaction.

use super::dead_letter::dead_letter_topic;
use super::TaskError;
use crate::layout::{BrokerPlace, Leaders};
use crate::runtime::lookup::{empty_lookups, lookup_schema};
use crate::runtime::StageRuntime;
use crate::spec::{FieldType, GeneratorExample, Lookup, PipelineSpec, Sink, Source};
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, CassandraSink, PrimaryKey, SinkOptions};
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig, TopicSpec};
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
    /// The tables (`keyspace.table`) of the Cassandra sinks it ensured.
    pub tables: Vec<String>,
    /// The tables (`keyspace.table`) of the lookups it ensured.
    pub lookup_tables: Vec<String>,
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

/// [`prepare`] against the clusters at `ep`, as `pipeline apply` does: it
/// connects to Kafka and (when there are contact points) Cassandra, with
/// each keyspace replicated as [`crate::layout::keyspaces`] says; the
/// Cassandra session comes back for [`fill_generated_lookups`].
pub async fn prepare_at(
    spec: &PipelineSpec,
    ep: &crate::layout::Endpoints,
) -> Result<(Prepared, Option<CassandraSession>), TaskError> {
    let config = KafkaClientConfig::new(&ep.bootstrap).with_client_id("smack-apply");
    let admin = KafkaAdmin::connect(&config)
        .await
        .map_err(TaskError::kafka(format!("connecting to Kafka at {}", ep.bootstrap)))?;
    let session = match ep.cassandra.as_slice() {
        [] => None,
        points => Some(
            CassandraSession::connect(&CassandraConfig::new(points))
                .await
                .map_err(TaskError::cassandra(format!("connecting to Cassandra at {}", points.join(","))))?,
        ),
    };
    let mut options = PrepareOptions::new("dc1", 1);
    if let Some(r) = crate::layout::keyspaces(spec).into_values().next() {
        options.keyspace_replication = r;
    }
    let done = prepare(spec, &admin, session.as_ref(), &options).await?;
    Ok((done, session))
}

/// Where the sources' partitions are led from, for the stages' placement
/// preferences: the leaders from Kafka's admin API at `bootstrap`; each
/// broker's place from `brokers` when smack runs the Kafka service (broker
/// id = pod index), else from the brokers' advertised hosts.
pub async fn read_leaders(
    spec: &PipelineSpec,
    bootstrap: &str,
    brokers: Option<BTreeMap<i32, BrokerPlace>>,
) -> Result<Leaders, TaskError> {
    let config = KafkaClientConfig::new(bootstrap).with_client_id("smack-apply");
    let admin = KafkaAdmin::connect(&config).await.map_err(TaskError::kafka(format!("connecting to {bootstrap}")))?;
    let mut leaders = Leaders::default();
    for Source::Kafka(k) in spec.sources.values() {
        let t = admin.describe_topic(&k.topic).await.map_err(TaskError::kafka(format!("describing {}", k.topic)))?;
        leaders.add_topic(&t);
    }
    leaders.brokers = match brokers {
        Some(b) => b,
        None => {
            let snapshot = admin.snapshot().await.map_err(TaskError::kafka("listing the brokers"))?;
            snapshot.brokers.into_iter().map(|b| (b.id, BrokerPlace { host: b.host, zone: None })).collect()
        }
    };
    Ok(leaders)
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
    if cassandra.is_empty() && spec.lookups.is_empty() {
        return Ok(done);
    }
    let session = session.ok_or_else(|| {
        TaskError::Spec(format!(
            "pipeline `{}` has Cassandra sinks or lookups but no Cassandra session was given",
            spec.name
        ))
    })?;
    // Lookups only need their schemas here.
    let rt = StageRuntime::with_lookups(spec, &empty_lookups(spec)).await?;
    let mut keyspaces: Vec<&str> = Vec::new();
    for (name, sink) in cassandra {
        if !keyspaces.contains(&sink.keyspace.as_str()) {
            ensure_keyspace(session, &sink.keyspace, options).await?;
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
    for (name, lookup) in &spec.lookups {
        let Lookup::Cassandra(c) = lookup;
        if !keyspaces.contains(&c.keyspace.as_str()) {
            ensure_keyspace(session, &c.keyspace, options).await?;
            keyspaces.push(&c.keyspace);
        }
        let key = PrimaryKey::new(&c.key, &[] as &[&str]);
        session
            .create_table(&c.keyspace, &c.table, &lookup_schema(lookup), &key)
            .await
            .map_err(TaskError::cassandra(format!("create the table of lookup `{name}`")))?;
        done.lookup_tables.push(format!("{}.{}", c.keyspace, c.table));
    }
    Ok(done)
}

async fn ensure_keyspace(
    session: &CassandraSession,
    keyspace: &str,
    options: &PrepareOptions,
) -> Result<(), TaskError> {
    session
        .create_keyspace(keyspace, &options.keyspace_replication)
        .await
        .map_err(TaskError::cassandra(format!("create keyspace `{keyspace}`")))
}

/// The lookups of `spec` its generator can fill, with the rows' source:
/// for the fraud generator, every lookup keyed by `card_id` alone with a
/// `home_country` string column (its other columns stay empty).
pub fn generated_lookups(spec: &PipelineSpec) -> Vec<String> {
    let Some(g) = &spec.generator else { return Vec::new() };
    if g.example != GeneratorExample::Fraud {
        return Vec::new();
    }
    card_home_lookups(spec)
}

/// The lookups of `spec` that map a fraud card to its home country: keyed
/// by `card_id` alone, with a `home_country` string column.
pub fn card_home_lookups(spec: &PipelineSpec) -> Vec<String> {
    spec.lookups
        .iter()
        .filter(|(_, l)| {
            l.key() == ["card_id"]
                && l.schema().get("card_id") == Some(&FieldType::String)
                && l.schema().get("home_country") == Some(&FieldType::String)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Writes the rows of [`generated_lookups`] (upserts: running it again
/// writes the same rows); returns each lookup filled with its row count.
/// The tables must exist ([`prepare`]).
pub async fn fill_generated_lookups(
    spec: &PipelineSpec,
    session: &CassandraSession,
) -> Result<Vec<(String, u64)>, TaskError> {
    use crate::generate::{FraudGenerator, Options};
    use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, StringArray};
    let names = generated_lookups(spec);
    let Some(g) = spec.generator.as_ref().filter(|_| !names.is_empty()) else { return Ok(Vec::new()) };
    // The generator pod's options as far as cards go: the card population
    // follows the seed and the rate (`smack generate` sets no --keys).
    let options = Options { seed: g.seed, rate: g.rate, ..Options::default() };
    let generator =
        FraudGenerator::new(&options).map_err(|e| TaskError::Spec(format!("the pipeline's generator: {e}")))?;
    let cards: Vec<(String, &'static str)> = generator.cards().collect();
    let mut out = Vec::new();
    for name in names {
        let lookup = &spec.lookups[&name];
        let Lookup::Cassandra(c) = lookup;
        let schema = lookup_schema(lookup);
        let options = SinkOptions { max_in_flight: 256, ..SinkOptions::default() };
        let mut sink = CassandraSink::new(session, &c.keyspace, &c.table, &schema, options)
            .await
            .map_err(TaskError::cassandra(format!("prepare writing lookup `{name}`")))?;
        for chunk in cards.chunks(10_000) {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| -> ArrayRef {
                    match f.name().as_str() {
                        "card_id" => std::sync::Arc::new(StringArray::from_iter_values(chunk.iter().map(|c| &c.0))),
                        "home_country" => std::sync::Arc::new(StringArray::from_iter_values(chunk.iter().map(|c| c.1))),
                        _ => new_null_array(f.data_type(), chunk.len()),
                    }
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(crate::runtime::RuntimeError::from)?;
            sink.write(&batch).await.map_err(TaskError::cassandra(format!("write lookup `{name}`")))?;
        }
        sink.flush().await.map_err(TaskError::cassandra(format!("write lookup `{name}`")))?;
        tracing::info!(lookup = %name, rows = cards.len(), "filled the lookup with the generator's cards");
        out.push((name, cards.len() as u64));
    }
    Ok(out)
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
        assert_eq!(generated_lookups(&spec), vec!["card_homes".to_string()]);
        let mut no_generator = spec.clone();
        no_generator.generator = None;
        assert!(generated_lookups(&no_generator).is_empty());
    }
}
