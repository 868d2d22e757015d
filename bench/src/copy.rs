//! A bench copy of a pipeline: its own topics, keyspaces and group, so runs
//! do not meet; what it made, to clean up at the end.

use crate::cards::{cards_keyspace, Population};
use crate::{refuse, BenchError};
use smack_pipelines::spec::{CassandraSink, Lookup, PipelineSpec, Sink, Source};
use smack_pipelines::task::card_home_lookups;

/// A copy of `spec` with names of its own (`tag`): the pipeline (so its
/// group and dead-letter topics), its sink topics and keyspaces; the first
/// source reads `topic`, every source has `partitions` and replication 1.
/// Its card lookups read the table of `population`'s cards
/// ([`Population::table`] in [`cards_keyspace`]), shared by every run.
pub(crate) fn bench_spec(
    spec: &PipelineSpec,
    tag: &str,
    topic: &str,
    partitions: u32,
    population: Population,
) -> PipelineSpec {
    let mut s = spec.clone();
    s.name = format!("{}-{tag}", spec.name);
    for (i, src) in s.sources.values_mut().enumerate() {
        let Source::Kafka(k) = src;
        k.topic = if i == 0 { topic.to_string() } else { format!("{tag}-{}", k.topic) };
        k.partitions = partitions;
        k.replication = 1;
    }
    for sink in s.sinks.values_mut() {
        match sink {
            Sink::Cassandra(c) => c.keyspace = format!("{}_{tag}", c.keyspace),
            Sink::Kafka(k) => k.topic = format!("{tag}-{}", k.topic),
        }
    }
    let card_lookups = card_home_lookups(spec);
    for (name, l) in s.lookups.iter_mut() {
        let Lookup::Cassandra(c) = l;
        if card_lookups.contains(name) {
            c.keyspace = cards_keyspace(&c.keyspace);
            c.table = population.table(&c.table);
        } else {
            c.keyspace = format!("{}_{tag}", c.keyspace);
        }
    }
    s
}

/// The stage the first Cassandra sink of `spec` reads, with that sink.
pub(crate) fn measured_stage(spec: &PipelineSpec) -> Result<(String, CassandraSink), BenchError> {
    for sink in spec.sinks.values() {
        if let Sink::Cassandra(c) = sink {
            if !spec.stages.contains_key(&c.from) {
                refuse!("sink of `{}.{}` reads `{}`, which is not a stage", c.keyspace, c.table, c.from);
            }
            return Ok((c.from.clone(), c.clone()));
        }
    }
    refuse!("the pipeline has no Cassandra sink")
}

/// The keyspaces of a bench copy's sinks and lookups, dropped at the end:
/// all but those of the card tables (kept for the next run).
pub(crate) fn keyspaces(spec: &PipelineSpec) -> Vec<String> {
    let card_lookups = card_home_lookups(spec);
    let mut out: Vec<String> = spec
        .sinks
        .values()
        .filter_map(|s| match s {
            Sink::Cassandra(c) => Some(c.keyspace.clone()),
            Sink::Kafka(_) => None,
        })
        .chain(spec.lookups.iter().filter(|(n, _)| !card_lookups.contains(n)).map(|(_, l)| match l {
            Lookup::Cassandra(c) => c.keyspace.clone(),
        }))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The topics of a bench copy: sources, Kafka sinks, dead letters.
pub(crate) fn bench_topics(spec: &PipelineSpec) -> Vec<String> {
    let mut out = Vec::new();
    for (name, s) in &spec.sources {
        let Source::Kafka(k) = s;
        out.push(k.topic.clone());
        out.push(smack_pipelines::task::dead_letter_topic(&spec.name, name));
    }
    for s in spec.sinks.values() {
        if let Sink::Kafka(k) = s {
            out.push(k.topic.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_copy_has_names_of_its_own() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fraud-detection/pipeline.yaml");
        let spec = smack_pipelines::load(&path).unwrap();
        let b = bench_spec(&spec, "bench7", "bench-tx-7", 3, Population { seed: 42, cards: 3_000_000 });
        assert_eq!(b.name, "fraud-detection-bench7");
        let Lookup::Cassandra(l) = &b.lookups["card_homes"];
        assert_eq!((l.keyspace.as_str(), l.table.as_str()), ("fraud_benchcards", "card_homes_s42_c3000000"));
        let Source::Kafka(k) = &b.sources["transactions"];
        assert_eq!((k.topic.as_str(), k.partitions, k.replication), ("bench-tx-7", 3, 1));
        assert_eq!(keyspaces(&b), vec!["fraud_bench7".to_string()], "the card table's keyspace is kept");
        assert!(bench_topics(&b).contains(&"bench7-fraud-alerts".to_string()), "{:?}", bench_topics(&b));
        let (stage, sink) = measured_stage(&b).unwrap();
        assert_eq!((stage.as_str(), sink.table.as_str()), ("card_velocity", "suspicious_cards"));
    }
}
