//! `smack bench pipeline`: the phases in order (CPU only; with Kafka; with
//! Cassandra; the latency run), each printed as it ends.

use crate::cards::{memory_lookups, prepare_bench};
use crate::copy::{bench_spec, bench_topics, keyspaces, measured_stage};
use crate::latency::{latency, Generated};
use crate::measure::{timed, PushTimes};
use crate::{refuse, BenchError, Context, PipelineBench};
use smack_connectors::cassandra::{CassandraConfig, CassandraSession};
use smack_connectors::format::{AvroFormat, AvroFraming, Decoder, RecordFormat};
use smack_connectors::kafka::{
    KafkaAdmin, KafkaClientConfig, KafkaSink, KafkaSource, PollLimits, SinkConfig, SourceConfig, StartPosition,
    TopicSpec,
};
use smack_pipelines::generate::{AvroPayloads, Generator, GeneratorKind, Options, WireFormat};
use smack_pipelines::runtime::StageRuntime;
use smack_pipelines::spec::{CachePlan, Lookup, PipelineSpec};
use smack_pipelines::task::metrics::label;
use smack_pipelines::task::{StageTask, Step, TaskConfig, TaskMetrics};
use std::time::{Duration, Instant};

/// The schema id of the bench's Avro records (Confluent-framed, the writer
/// schema derived from the source's declared fields: what `smack generate
/// --format avro` writes and a source with `format: avro` reads).
pub(crate) const AVRO_SCHEMA_ID: u32 = 1;

/// How a decoder reads the bench's Avro records.
pub(crate) fn avro_format() -> AvroFormat {
    AvroFormat { framing: AvroFraming::Confluent, writer: None, schema_id: Some(AVRO_SCHEMA_ID) }
}

/// `, lookup `name`: N rows loaded in S s` for each full-cache lookup of
/// `spec`, from a task's `metrics` (empty without one).
pub(crate) fn full_lookups_loaded(spec: &PipelineSpec, metrics: &TaskMetrics) -> String {
    let mut out = String::new();
    for (name, l) in &spec.lookups {
        let Lookup::Cassandra(c) = l;
        if let CachePlan::Full { .. } = c.cache_plan() {
            let rows = metrics.lookup_table_rows.get_or_create(&label("lookup", name)).get();
            let took = metrics.lookup_load_duration.get_or_create(&label("lookup", name)).get();
            out.push_str(&format!(", full lookup `{name}`: {rows} rows read in {took:.1} s"));
        }
    }
    out
}

pub(crate) async fn pipeline(args: PipelineBench) -> Result<(), BenchError> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let spec = PipelineSpec::from_yaml(&text, &args.file.display().to_string())
        .map_err(|e| BenchError::Refused(format!("{}: {e}", args.file.display())))?;
    let Some(source) = spec.sources.keys().next().cloned() else { refuse!("{}: no source", args.file.display()) };
    let options = Options {
        seed: args.seed,
        rate: args.event_rate,
        count: Some(args.events),
        keys: Some(args.cards),
        malformed_share: 0.001,
        ..Options::default()
    };
    let built = Instant::now();
    let gen = Generator::new(GeneratorKind::Fraud, &options).context("fraud generator options")?;
    // The latency run builds one as large: its first event is this much later.
    let gen_build = built.elapsed();
    let cards: Vec<(String, &'static str)> = match &gen {
        Generator::Fraud(g) => g.cards().collect(),
        Generator::AdTech(_) => Vec::new(),
    };
    let avro = AvroPayloads::new(GeneratorKind::Fraud, Some(&args.file), WireFormat::Confluent, AVRO_SCHEMA_ID)?;
    let mut avro_events: Vec<Vec<u8>> = Vec::new();
    let mut events: Vec<(String, Vec<u8>)> = Vec::new();
    for e in gen.filter(|e| e.source == source) {
        avro_events.push(avro.encode(&e)?);
        events.push((e.key, e.payload));
    }
    let bytes: usize = events.iter().map(|(_, p)| p.len()).sum();
    let avro_bytes: usize = avro_events.iter().map(Vec::len).sum();
    println!(
        "{} fraud events for source `{source}` ({:.1} MB of JSON, {:.1} MB of Avro, seed {}, event rate {}/s, {} cards), \
         batches of {}",
        events.len(),
        bytes as f64 / 1e6,
        avro_bytes as f64 / 1e6,
        args.seed,
        args.event_rate,
        cards.len(),
        args.batch
    );
    let lookups = memory_lookups(&spec, &cards)?;
    let probe = StageRuntime::with_lookups(&spec, &lookups).await?;
    let schema = probe.source_schema(&source).context("source schema")?;
    drop(probe);
    let decoder = Decoder::new(RecordFormat::Json, schema.clone())?;
    let avro_decoder = Decoder::new(RecordFormat::Avro(avro_format()), schema)?;
    let batch = args.batch.max(1);

    let mut phases = Vec::new();
    phases.push(
        timed("cpu: decode only", || async {
            let mut rows = 0u64;
            for chunk in events.chunks(batch) {
                let d = decoder.decode(chunk.iter().map(|(_, p)| p.as_slice()));
                rows += d.batch.num_rows() as u64;
            }
            Ok((events.len() as u64, rows))
        })
        .await?,
    );
    phases.push(
        timed("cpu: decode only (avro)", || async {
            let mut rows = 0u64;
            for chunk in avro_events.chunks(batch) {
                let d = avro_decoder.decode(chunk.iter().map(Vec::as_slice));
                rows += d.batch.num_rows() as u64;
            }
            Ok((avro_events.len() as u64, rows))
        })
        .await?,
    );
    drop(avro_events);
    phases.push(
        timed("cpu: decode + stage runtime (sinks counted)", || async {
            let mut rt = StageRuntime::with_lookups(&spec, &lookups).await?;
            rt.assign_partitions(&source, &[0])?;
            let mut out_rows = 0u64;
            let mut offset = 0i64;
            let mut pushes = PushTimes::default();
            let chunks = events.len().div_ceil(batch);
            for (i, chunk) in events.chunks(batch).enumerate() {
                let d = decoder.decode(chunk.iter().map(|(_, p)| p.as_slice()));
                let first = offset;
                offset += chunk.len() as i64;
                let t = Instant::now();
                let out = rt.push_range(&source, 0, first, offset, d.batch).await?;
                let rows = out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
                pushes.note(t.elapsed(), rows);
                out_rows += rows;
                if i == chunks / 2 {
                    let t = Instant::now();
                    let bytes = rt.checkpoint_state()?;
                    pushes.checkpoint = Some((t.elapsed(), bytes.len()));
                }
            }
            let out = rt.finish().await?;
            out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            println!("{}", pushes.report());
            Ok((events.len() as u64, out_rows))
        })
        .await?,
    );
    for p in &phases {
        println!("{}", p.line());
    }

    let Some(bootstrap) = args.bootstrap.clone() else { return Ok(()) };
    let client = KafkaClientConfig::new(bootstrap.clone());
    let pid = std::process::id();
    let topic = format!("bench-{source}-{pid}");
    let admin = KafkaAdmin::connect(&client).await?;
    let session = if args.cassandra.is_empty() {
        None
    } else {
        let mut cc = CassandraConfig::new(&args.cassandra);
        cc.local_dc = Some(args.local_dc.clone());
        Some(CassandraSession::connect(&cc).await?)
    };
    let tag = format!("bench{pid}");
    let staged_spec = bench_spec(&spec, &tag, &topic, args.partitions.max(1) as u32, args.population());
    match &session {
        Some(session) => {
            prepare_bench(&staged_spec, &admin, session, &args.local_dc, &cards, args.population(), args.fill()).await?
        }
        None => {
            admin.create_topic(&TopicSpec::new(&topic, args.partitions, 1)).await?;
            admin.await_topic(&topic, Duration::from_secs(30)).await?;
        }
    }
    let produce = timed("kafka: produce (KafkaSink, acks all)", || async {
        let mut sink = KafkaSink::new(SinkConfig::new(client.clone()))?;
        for (key, payload) in &events {
            sink.send(&topic, Some(key.as_bytes()), Some(payload), &[]).await?;
        }
        sink.flush().await?;
        Ok((events.len() as u64, 0))
    })
    .await?;
    println!("{}", produce.line());
    let n = events.len() as u64;
    let partitions: Vec<i32> = (0..args.partitions).collect();
    let limits = PollLimits { max_records: batch, ..PollLimits::default() };
    let mut consumer_client = client.clone();
    for kv in &args.consumer_properties {
        let Some((k, v)) = kv.split_once('=') else {
            refuse!("--consumer-property {kv}: expected KEY=VALUE, e.g. queued.min.messages=100000")
        };
        consumer_client = consumer_client.with_property(k.trim(), v.trim());
    }
    let open = |group: &str| {
        SourceConfig::new(consumer_client.clone(), group.to_string(), topic.clone(), partitions.clone())
            .starting_at(StartPosition::Earliest)
    };
    let mut src = KafkaSource::open(open(&format!("{topic}-raw"))).await?;
    let raw = timed("kafka (a): raw consume (KafkaSource poll)", || async {
        let mut got = 0u64;
        while got < n {
            got += src.poll_batch(&limits).await?.len() as u64;
        }
        Ok((got, 0))
    })
    .await?;
    drop(src);
    println!("{}", raw.line());
    let mut src = KafkaSource::open(open(&format!("{topic}-stage"))).await?;
    let staged = timed("kafka (b): consume + decode + stage runtime", || async {
        let mut rt = StageRuntime::with_lookups(&spec, &lookups).await?;
        rt.assign_partitions(&source, &partitions)?;
        let (mut got, mut out_rows) = (0u64, 0u64);
        while got < n {
            let records = src.poll_batch(&limits).await?;
            got += records.len() as u64;
            for p in &partitions {
                let mine: Vec<&smack_connectors::kafka::KafkaRecord> =
                    records.iter().filter(|r| r.partition == *p).collect();
                let (Some(first), Some(last)) = (mine.first(), mine.last()) else { continue };
                let d = decoder.decode(mine.iter().map(|r| r.payload.as_deref().unwrap_or(&[])));
                let out = rt.push_range(&source, *p, first.offset, last.offset + 1, d.batch).await?;
                out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            }
        }
        let out = rt.finish().await?;
        out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
        Ok((got, out_rows))
    })
    .await?;
    drop(src);
    println!("{}", staged.line());
    println!("ratio (b)/(a): {:.2}", staged.rate() / raw.rate());

    let state_root = std::env::temp_dir().join(format!("smack-bench-{pid}"));
    if let Some(session) = &session {
        let (stage, _) = measured_stage(&staged_spec)?;
        let mut config = TaskConfig::new(&stage, 0, 1, bootstrap.clone(), state_root.join("task"));
        config.cassandra = args.cassandra.clone();
        config.local_dc = Some(args.local_dc.clone());
        config.max_batch_records = batch;
        config.cassandra_in_flight = args.cassandra_in_flight.max(1);
        config.until_idle = true;
        let (opened, metrics) = (Instant::now(), TaskMetrics::new());
        let mut task = StageTask::open(&staged_spec, config, metrics.clone()).await?;
        println!(
            "kafka (c): stage task open in {:.1} s{}",
            opened.elapsed().as_secs_f64(),
            full_lookups_loaded(&staged_spec, &metrics)
        );
        let full = timed("kafka (c): stage task (+ lookups, Cassandra and Kafka sinks, checkpoints)", || async {
            while task.step().await? != Step::Finished {}
            Ok((task.summary().records_in, task.summary().rows_out))
        })
        .await?;
        println!("{}", full.line());
        println!("ratio (c)/(a): {:.2}", full.rate() / raw.rate());
        drop(task); // its lookup tables, before the latency run reads its own
        let generated = Generated { cards: &cards, built_in: gen_build };
        latency(&args, &spec, &client, &admin, session, &generated, &state_root).await?;
        for ks in keyspaces(&staged_spec) {
            if let Err(e) = session.execute_ddl(&format!("DROP KEYSPACE IF EXISTS {ks}")).await {
                tracing::warn!(%ks, "could not drop the bench keyspace: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&state_root);
    for t in bench_topics(&staged_spec) {
        if let Err(e) = admin.delete_topic(&t).await {
            tracing::warn!(topic = %t, "could not delete the bench topic: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_pipelines::runtime::schema::source_schema;

    #[test]
    fn avro_events_decode_like_their_json_and_malformed_ones_do_not() {
        use smack_connectors::format::to_json_rows;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/pipeline-latency.yaml");
        let spec = smack_pipelines::load(&path).unwrap();
        let source = &spec.sources["transactions"];
        let avro = AvroPayloads::new(GeneratorKind::Fraud, Some(&path), WireFormat::Confluent, AVRO_SCHEMA_ID).unwrap();
        let json = Decoder::new(RecordFormat::Json, source_schema(source)).unwrap();
        let decoder = Decoder::new(RecordFormat::Avro(avro_format()), source_schema(source)).unwrap();
        let options = Options { seed: 5, count: Some(2_000), malformed_share: 0.02, ..Options::default() };
        let (mut good, mut bad) = (0, 0);
        for e in Generator::new(GeneratorKind::Fraud, &options).unwrap() {
            let bytes = avro.encode(&e).unwrap();
            let (a, j) = (decoder.decode([bytes.as_slice()]), json.decode([e.payload.as_slice()]));
            if e.malformed {
                assert_eq!((a.errors.len(), a.batch.num_rows()), (1, 0), "{e:?}");
                bad += 1;
            } else {
                assert!(a.errors.is_empty(), "{:?} {e:?}", a.errors);
                assert_eq!(to_json_rows(&a.batch).unwrap(), to_json_rows(&j.batch).unwrap());
                good += 1;
            }
        }
        assert!(good > 1_500 && bad > 0, "{good} good, {bad} malformed");
    }
}
