//! The latency run: a stage task in this process while events are
//! produced at a fixed rate, each row's Cassandra write time against when
//! it was due (see the crate doc).

use crate::cards::prepare_bench;
use crate::copy::{bench_spec, bench_topics, keyspaces, measured_stage};
use crate::measure::{now_ms, percentile};
use crate::pipeline::full_lookups_loaded;
use crate::{refuse, BenchError, Context, PipelineBench};
use futures::TryStreamExt;
use smack_connectors::cassandra::{CassandraSession, CqlTimestamp};
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig, KafkaSink, SinkConfig};
use smack_pipelines::generate::{Generator, GeneratorKind, Options};
use smack_pipelines::spec::{PipelineSpec, Source};
use smack_pipelines::task::{StageTask, Step, TaskConfig, TaskError, TaskMetrics, TaskSummary};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per partition, what the producer sent: each time the partition's
/// largest event time rose, (that event time, when it was sent).
#[derive(Debug, Default, Clone)]
pub(crate) struct SendLog {
    pub(crate) rises: Vec<Vec<(i64, i64)>>,
}

impl SendLog {
    pub(crate) fn new(partitions: usize) -> SendLog {
        SendLog { rises: vec![Vec::new(); partitions] }
    }

    /// Notes an event of `event_time` sent to `partition` at `sent_ms`.
    pub(crate) fn note(&mut self, partition: usize, event_time: i64, sent_ms: i64) {
        let r = &mut self.rises[partition];
        if r.last().is_none_or(|(t, _)| event_time > *t) {
            r.push((event_time, sent_ms));
        }
    }

    /// When every partition had been sent an event at or after `t`: the
    /// latest of the first such sends (None if some partition has none).
    pub(crate) fn due(&self, t: i64) -> Option<i64> {
        let mut due = i64::MIN;
        for r in &self.rises {
            let i = r.partition_point(|(et, _)| *et < t);
            due = due.max(r.get(i)?.1);
        }
        Some(due)
    }
}

/// A key's partition, as the bench's producer places it (FNV-1a).
pub(crate) fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % partitions.max(1) as u64) as usize
}

/// The bench's cards, and how long building a generator of them took.
pub(crate) struct Generated<'a> {
    pub(crate) cards: &'a [(String, &'static str)],
    pub(crate) built_in: Duration,
}

/// The latency run (see the module doc).
pub(crate) async fn latency(
    args: &PipelineBench,
    spec: &PipelineSpec,
    client: &KafkaClientConfig,
    admin: &KafkaAdmin,
    session: &CassandraSession,
    generated: &Generated<'_>,
    state_root: &std::path::Path,
) -> Result<(), BenchError> {
    if args.latency_seconds == 0 {
        return Ok(());
    }
    let pid = std::process::id();
    let Some(source) = spec.sources.keys().next().cloned() else { refuse!("no source") };
    let topic = format!("bench-lat-{source}-{pid}");
    let parts = args.partitions.max(1) as usize;
    let lspec = bench_spec(spec, &format!("lat{pid}"), &topic, parts as u32, args.population());
    prepare_bench(&lspec, admin, session, &args.local_dc, generated.cards, args.population(), args.fill()).await?;
    let (stage, sink) = measured_stage(&lspec)?;
    let Source::Kafka(k) = &lspec.sources[&source];
    let ooo = k.watermark.as_ref().map_or(0, |w| w.max_out_of_orderness.0.as_millis() as i64);
    let lateness = lspec.stages[&stage].window.as_ref().map_or(0, |w| w.allowed_lateness.0.as_millis() as i64);

    let mut config = TaskConfig::new(&stage, 0, 1, args.bootstrap.clone().unwrap_or_default(), state_root.join("lat"));
    config.cassandra = args.cassandra.clone();
    config.local_dc = Some(args.local_dc.clone());
    config.max_batch_records = args.latency_batch.max(1);
    config.cassandra_in_flight = args.cassandra_in_flight.max(1);
    // The one-time costs (partitions assigned, full lookups read) before
    // the first event: the producer starts once the task is open.
    let (opened, metrics) = (Instant::now(), TaskMetrics::new());
    let task = StageTask::open(&lspec, config, metrics.clone()).await?;
    println!(
        "latency: stage task open in {:.1} s{}",
        opened.elapsed().as_secs_f64(),
        full_lookups_loaded(&lspec, &metrics)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(drive(task, stop.clone()));

    // Events whose time is their produce time: the producer waits for each.
    let count = (args.latency_rate * args.latency_seconds as f64) as u64;
    let mut producer = KafkaSink::new(SinkConfig::new(client.clone()))?;
    // The first event half a second after the generator is built (it
    // places every event in time from `start`).
    let start = now_ms() + 500 + generated.built_in.as_millis() as i64;
    let options = Options {
        seed: args.seed,
        rate: args.latency_rate,
        start_ms: Some(start),
        count: Some(count),
        keys: Some(args.cards),
        malformed_share: 0.001,
        ..Options::default()
    };
    let gen = Generator::new(GeneratorKind::Fraud, &options).context("fraud generator options")?;
    let mut log = SendLog::new(parts);
    let (mut sent, mut behind_max, mut behind_at, mut newest) = (0u64, 0i64, 0i64, i64::MIN);
    println!(
        "latency: producing {count} events at {}/s for {} s to `{topic}` ({parts} partitions)",
        args.latency_rate, args.latency_seconds
    );
    for e in gen.filter(|e| e.source == source) {
        let ahead = e.event_time_ms - now_ms();
        if ahead > 0 {
            tokio::time::sleep(Duration::from_millis(ahead as u64)).await;
        }
        let p = partition_of(&e.key, parts);
        producer.send_to(&topic, Some(p as i32), Some(e.key.as_bytes()), Some(&e.payload), &[]).await?;
        let at = now_ms();
        // Late events are behind the newest on purpose: only in-order ones
        // say whether the producer keeps its schedule.
        if e.event_time_ms >= newest && at - e.event_time_ms > behind_max {
            (behind_max, behind_at) = (at - e.event_time_ms, e.event_time_ms - start);
        }
        newest = newest.max(e.event_time_ms);
        if !e.malformed {
            log.note(p, e.event_time_ms, at);
        }
        sent += 1;
    }
    producer.flush().await?;
    let produced_in = (now_ms() - start) as f64 / 1000.0;
    tokio::time::sleep(Duration::from_secs(args.latency_drain_seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let summary = task.await.context("the latency run's stage task")??;

    // Every row with its write time, against when it was due.
    let Some(value_column) = regular_column(session, &sink.keyspace, &sink.table).await? else {
        refuse!("{}.{}: no column outside the primary key to read WRITETIME of", sink.keyspace, sink.table)
    };
    let cql = format!("SELECT window_end, WRITETIME({value_column}) FROM {}.{}", sink.keyspace, sink.table);
    let pager = session.inner().query_iter(cql.as_str(), ()).await.with_context(|| cql.clone())?;
    let mut rows = pager.rows_stream::<(CqlTimestamp, Option<i64>)>().with_context(|| cql.clone())?;
    let mut per_window: BTreeMap<i64, (i64, Vec<f64>)> = BTreeMap::new();
    let mut undue = 0u64;
    while let Some((end, written)) = rows.try_next().await.with_context(|| cql.clone())? {
        let (Some(written), Some(due)) = (written, log.due(end.0 + lateness + ooo)) else {
            undue += 1;
            continue;
        };
        per_window.entry(end.0).or_insert((due, Vec::new())).1.push(written as f64 / 1000.0 - due as f64);
    }
    let warm = start + args.latency_warmup_seconds as i64 * 1000;
    let mut all: Vec<f64> =
        per_window.values().filter(|(due, _)| *due >= warm).flat_map(|(_, v)| v.iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    println!(
        "latency: {sent} events in {produced_in:.1} s ({:.0}/s; the producer was at most {behind_max} ms behind its schedule, \
         {:.1} s into the run); \
         the task: {}",
        sent as f64 / produced_in,
        behind_at as f64 / 1000.0,
        summary.line()
    );
    for (end, (due, v)) in &per_window {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        println!(
            "latency: window ending {end} (due {:.1} s into the run{}): {} rows, produce → row {:.1} .. {:.1} ms",
            (due - start) as f64 / 1000.0,
            if *due < warm { ", warm-up" } else { "" },
            v.len(),
            v[0],
            v[v.len() - 1]
        );
    }
    println!(
        "latency: produce → row in Cassandra over {} rows of {} windows due after the warm-up ({undue} rows not due \
         within the run): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        per_window.values().filter(|(due, _)| *due >= warm).count(),
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    for ks in keyspaces(&lspec) {
        let _ = session.execute_ddl(&format!("DROP KEYSPACE IF EXISTS {ks}")).await;
    }
    for t in bench_topics(&lspec) {
        let _ = admin.delete_topic(&t).await;
    }
    Ok(())
}

/// Steps an open stage task until `stop` is set (then flushes its sinks
/// and checkpoints), as `run_task` does after opening it.
pub(crate) async fn drive(mut task: StageTask, stop: Arc<AtomicBool>) -> Result<TaskSummary, TaskError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            if !task.is_replaying() {
                task.checkpoint().await?;
            }
            return Ok(task.summary().clone());
        }
        if task.step().await? == Step::Finished {
            return Ok(task.summary().clone());
        }
    }
}

/// A regular (non-key) column of `keyspace.table`, from the schema tables.
pub(crate) async fn regular_column(
    session: &CassandraSession,
    keyspace: &str,
    table: &str,
) -> Result<Option<String>, BenchError> {
    let cql = "SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?";
    let pager = session.inner().query_iter(cql, (keyspace, table)).await.context("read the table's columns")?;
    let mut rows = pager.rows_stream::<(String, String)>().context("read the table's columns")?;
    let mut names = Vec::new();
    while let Some((name, kind)) = rows.try_next().await.context("read the table's columns")? {
        if kind == "regular" {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_due_when_every_partition_was_sent_a_late_enough_event() {
        let mut log = SendLog::new(2);
        log.note(0, 1_000, 5);
        log.note(0, 900, 6); // older: the partition's clock does not move
        log.note(1, 1_100, 7);
        log.note(0, 2_000, 9);
        log.note(1, 1_900, 10);
        log.note(1, 2_500, 12);
        assert_eq!(log.due(1_000), Some(7), "partition 1 got 1,100 at 7");
        assert_eq!(log.due(2_000), Some(12), "partition 1 only passed 2,000 at 12");
        assert_eq!(log.due(1_950), Some(12));
        assert_eq!(log.due(2_001), None, "partition 0 never passed it");
        assert_eq!(log.rises[0], vec![(1_000, 5), (2_000, 9)]);
    }

    #[test]
    fn keys_spread_over_partitions_and_stay_put() {
        let mut seen = [0usize; 3];
        for i in 0..300 {
            let key = format!("card-{i}");
            let p = partition_of(&key, 3);
            assert_eq!(p, partition_of(&key, 3));
            seen[p] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(partition_of("x", 0), 0);
    }
}
