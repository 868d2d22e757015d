//! `smack bench pipeline`: throughput of the data plane, for BENCHMARKS.md
//! (a benchmark, never a test). Build it optimised:
//! `cargo build --release -p smack`.
//!
//! Two parts, in one run on the same seeded fraud events
//! (`smack_pipelines::generate`):
//! - **CPU only** (always): the events' JSON payloads, held in memory, are
//!   cut into poll-sized batches and (1) decoded into Arrow alone, then
//!   (2) decoded and pushed through a [`StageRuntime`] of the pipeline file
//!   (the fraud example's hopping-window stage); the rows the sinks would get
//!   are counted and dropped. Events/s of wall time and per CPU-second of the
//!   process (user + system, from `/proc/self/stat`), so the figure is "per
//!   core" whatever threads the runtime used.
//! - **Kafka** (with `--bootstrap`): the events are produced to a fresh topic
//!   with the [`KafkaSink`]; then the topic is read twice from the start with
//!   a [`KafkaSource`] poll loop: (a) raw, counting records (the ceiling),
//!   (b) decode → runtime per poll, as the stage task does. The ratio (b)/(a)
//!   is printed.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use smack_connectors::format::{Decoder, RecordFormat};
use smack_connectors::kafka::{
    KafkaAdmin, KafkaClientConfig, KafkaSink, KafkaSource, PollLimits, SinkConfig, SourceConfig, StartPosition,
    TopicSpec,
};
use smack_pipelines::generate::{Generator, GeneratorKind, Options};
use smack_pipelines::runtime::StageRuntime;
use smack_pipelines::spec::PipelineSpec;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to benchmark.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Events/s through decode → windowed aggregation, in memory and (with
    /// --bootstrap) from a Kafka topic next to the raw consume rate.
    Pipeline(PipelineBenchArgs),
}

#[derive(Args)]
pub struct PipelineBenchArgs {
    /// The pipeline file whose first source and stages are run.
    #[arg(long, default_value = "examples/fraud-detection/pipeline.yaml")]
    file: PathBuf,
    /// How many fraud events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Records per micro-batch (one poll).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Event-time rate of the generator, events/s (sets how many events
    /// share a window).
    #[arg(long, default_value_t = 50_000.0)]
    event_rate: f64,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Kafka bootstrap servers: also produce the events and consume them back.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Partitions of the bench topic (read by one consumer).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// A librdkafka property for both consumers, KEY=VALUE (repeatable),
    /// e.g. `queued.min.messages=100000` to probe the ceiling.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
}

/// Runs a bench command.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Pipeline(args) => pipeline(args).await,
    }
}

/// Process CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu_time(&s)).unwrap_or(Duration::ZERO)
}

/// User + system time from the text of a `/proc/PID/stat` file (fields 14
/// and 15, in ticks of 1/100 s); None when the text does not have them.
fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces: count from the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// One measured phase.
struct Phase {
    name: String,
    events: u64,
    wall: Duration,
    cpu: Duration,
    rows_out: u64,
}

impl Phase {
    fn line(&self) -> String {
        let per_s = self.events as f64 / self.wall.as_secs_f64();
        let per_cpu = if self.cpu.is_zero() { f64::NAN } else { self.events as f64 / self.cpu.as_secs_f64() };
        format!(
            "{:<44} {:>10} events {:>8.3} s wall {:>8.3} s cpu {:>12.0} events/s {:>12.0} events/cpu-s {:>8} rows out",
            self.name,
            self.events,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            per_s,
            per_cpu,
            self.rows_out
        )
    }
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

/// Times `f`, wall and process CPU.
async fn timed<F, Fut>(name: &str, f: F) -> anyhow::Result<Phase>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, u64)>>,
{
    let (w, c) = (Instant::now(), cpu_time());
    let (events, rows_out) = f().await?;
    Ok(Phase { name: name.to_string(), events, wall: w.elapsed(), cpu: cpu_time().saturating_sub(c), rows_out })
}

async fn pipeline(args: PipelineBenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let spec = PipelineSpec::from_yaml(&text, &args.file.display().to_string())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let Some(source) = spec.sources.keys().next().cloned() else { bail!("{}: no source", args.file.display()) };
    let options = Options {
        seed: args.seed,
        rate: args.event_rate,
        count: Some(args.events),
        malformed_share: 0.001,
        ..Options::default()
    };
    let gen = Generator::new(GeneratorKind::Fraud, &options).context("fraud generator options")?;
    let events: Vec<(String, Vec<u8>)> = gen.filter(|e| e.source == source).map(|e| (e.key, e.payload)).collect();
    let bytes: usize = events.iter().map(|(_, p)| p.len()).sum();
    println!(
        "{} fraud events for source `{source}` ({:.1} MB of JSON, seed {}, event rate {}/s), batches of {}",
        events.len(),
        bytes as f64 / 1e6,
        args.seed,
        args.event_rate,
        args.batch
    );
    let probe = StageRuntime::with_lookups(&spec, &smack_pipelines::runtime::lookup::empty_lookups(&spec)).await?;
    let schema = probe.source_schema(&source).context("source schema")?;
    drop(probe);
    let decoder = Decoder::new(RecordFormat::Json, schema)?;
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
        timed("cpu: decode + stage runtime (sinks counted)", || async {
            let mut rt = StageRuntime::with_lookups(&spec, &smack_pipelines::runtime::lookup::empty_lookups(&spec)).await?;
            rt.assign_partitions(&source, &[0])?;
            let mut out_rows = 0u64;
            let mut offset = 0i64;
            for chunk in events.chunks(batch) {
                let d = decoder.decode(chunk.iter().map(|(_, p)| p.as_slice()));
                let first = offset;
                offset += chunk.len() as i64;
                let out = rt.push_range(&source, 0, first, offset, d.batch).await?;
                out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            }
            let out = rt.finish().await?;
            out_rows += out.sinks.iter().map(|s| s.batch.num_rows() as u64).sum::<u64>();
            Ok((events.len() as u64, out_rows))
        })
        .await?,
    );
    for p in &phases {
        println!("{}", p.line());
    }

    let Some(bootstrap) = args.bootstrap else { return Ok(()) };
    let client = KafkaClientConfig::new(bootstrap.clone());
    let topic = format!("bench-{}-{}", source, std::process::id());
    let admin = KafkaAdmin::connect(&client).await?;
    admin.create_topic(&TopicSpec::new(&topic, args.partitions, 1)).await?;
    admin.await_topic(&topic, Duration::from_secs(30)).await?;
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
            bail!("--consumer-property {kv}: expected KEY=VALUE, e.g. queued.min.messages=100000")
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
        let mut rt = StageRuntime::with_lookups(&spec, &smack_pipelines::runtime::lookup::empty_lookups(&spec)).await?;
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
    println!("{}", staged.line());
    println!("ratio (b)/(a): {:.2}", staged.rate() / raw.rate());
    if let Err(e) = admin.delete_topic(&topic).await {
        tracing::warn!(%topic, "could not delete the bench topic: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_time_sums_user_and_system_ticks() {
        let stat = "4242 (smack (x) y) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 3 0 100";
        assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(1750)));
    }

    #[test]
    fn stat_cpu_time_refuses_short_or_garbled_text() {
        assert_eq!(stat_cpu_time("4242 (smack) R 1 2"), None);
        assert_eq!(stat_cpu_time("no parenthesis at all"), None);
        assert_eq!(stat_cpu_time("1 (a) R 1 2 3 4 5 6 7 8 9 10 x 25"), None);
    }
}
