//! `smack generate fraud|ad-tech`: the example pipelines' seeded event
//! generators (smack_pipelines::generate) on the command line, writing
//! NDJSON to stdout or files, paced in wall-clock time when asked.
//!
//! With `--format avro` (and `--kafka`) each record is produced as Avro
//! instead: the writer's schema of a source is the one its pipeline derives
//! from the declared fields (the example's pipeline file, built in, or
//! `--pipeline FILE`), Confluent-framed with `--schema-id` unless
//! `--avro-wire-format plain`. A malformed event becomes a datum cut short
//! (half of a record holding only its event time), which never decodes.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use smack_pipelines::generate::{parse_rfc3339_ms, AvroPayloads, Generator, GeneratorKind, LineSink, Options};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How records are encoded.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadFormat {
    /// One JSON object per record.
    Json,
    /// Avro binary of the source's derived writer schema (needs --kafka).
    Avro,
}

/// The Avro framing.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WireFormat {
    /// Magic byte 0, a 4-byte schema id, the datum.
    Confluent,
    /// The datum alone.
    Plain,
}

impl From<WireFormat> for smack_pipelines::generate::WireFormat {
    fn from(w: WireFormat) -> Self {
        match w {
            WireFormat::Confluent => Self::Confluent,
            WireFormat::Plain => Self::Plain,
        }
    }
}

/// Which example pipeline the events are for.
#[derive(Clone, Copy, ValueEnum)]
pub enum Example {
    /// Card transactions (`examples/fraud-detection`, source `transactions`).
    Fraud,
    /// Impressions and clicks (`examples/ad-tech`).
    AdTech,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Which example's events.
    #[arg(value_enum)]
    example: Example,
    /// Events per second, all sources together: writing is paced to it in
    /// wall-clock time, and event time advances at it. 0 writes as fast as
    /// possible, with event time at --event-rate.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Events per second of event time [default: --rate, or 1000 when --rate is 0].
    #[arg(long)]
    event_rate: Option<f64>,
    /// How many events in all [default: no end].
    #[arg(long)]
    count: Option<u64>,
    /// The seed: the same seed and options give the same events, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first event, RFC 3339 [default: midnight UTC of a day in 2024 chosen by the seed].
    #[arg(long, value_parser = parse_rfc3339_ms)]
    start: Option<i64>,
    /// Key population: cards (fraud) or campaigns (ad-tech) [default: fraud 100 × event rate, between 100000 and 10 million; ad-tech 200].
    #[arg(long)]
    keys: Option<u64>,
    /// Share of events in fraud bursts (a card paying 8-16 times within a minute; for ad-tech, click spam), at most 0.5.
    #[arg(long, default_value_t = 0.01)]
    fraud_share: f64,
    /// Share of malformed records: cut-short JSON, a field of the wrong type, a missing `ts`.
    #[arg(long, default_value_t = 0.001)]
    malformed_share: f64,
    /// Share of events a few seconds late, within the watermark.
    #[arg(long, default_value_t = 0.02)]
    late_share: f64,
    /// Share of events late by more than the watermark (plus a minute or two).
    #[arg(long, default_value_t = 0.0)]
    beyond_watermark_share: f64,
    /// The sources' watermark out-of-orderness, which late events stay within.
    #[arg(long, default_value = "5s", value_parser = parse_duration_ms)]
    max_out_of_orderness: i64,
    /// Write only this source's events (ad-tech: `impressions` or `clicks`);
    /// all are still generated, so they are the same events as without it.
    #[arg(long)]
    source: Option<String>,
    /// Write `KEY<SEP>PAYLOAD` lines (for `kcat -K<SEP>`) instead of the payload alone.
    #[arg(long)]
    key_separator: Option<String>,
    /// Write to this file instead of stdout; `{source}` in the name writes one file per source.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// At the end, write the counts (total, malformed, fraud bursts, late, …) as JSON to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Produce into Kafka at these bootstrap servers (`host:port,…`) instead
    /// of writing lines; each source goes to the topic named like it unless
    /// --topic says otherwise. Records are keyed by the stage key.
    #[arg(long, value_name = "BOOTSTRAP")]
    pub kafka: Option<String>,
    /// With --kafka: the topic of a source, `SOURCE=TOPIC` (repeatable).
    #[arg(long = "topic", value_name = "SOURCE=TOPIC", value_parser = parse_topic)]
    topics: Vec<(String, String)>,
    /// The record encoding; `avro` is binary, so it needs --kafka.
    #[arg(long, value_enum, default_value = "json")]
    format: PayloadFormat,
    /// With --format avro: the framing.
    #[arg(long, value_enum, default_value = "confluent")]
    avro_wire_format: WireFormat,
    /// With --format avro and the Confluent framing: the schema id written.
    #[arg(long, default_value_t = 1)]
    schema_id: u32,
    /// With --format avro: the pipeline file whose sources give the writer
    /// schemas (their `avro:` options, or their declared fields) [default:
    /// the example's, built in].
    #[arg(long)]
    pipeline: Option<PathBuf>,
}

fn parse_topic(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("`{s}`: expected SOURCE=TOPIC, e.g. transactions=card-transactions")),
    }
}

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let d = smack_pipelines::spec::Duration::parse(s)?;
    i64::try_from(d.0.as_millis()).map_err(|_| format!("`{s}` is too long"))
}

/// Checks the flags and builds the generator.
fn generator_of(args: &GenerateArgs) -> anyhow::Result<(GeneratorKind, Generator)> {
    let kind = match args.example {
        Example::Fraud => GeneratorKind::Fraud,
        Example::AdTech => GeneratorKind::AdTech,
    };
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate: {}, expected events per second, 0 or more (0 = as fast as possible)", args.rate);
    }
    if let Some(s) = &args.source {
        if !kind.sources().contains(&s.as_str()) {
            bail!(
                "--source: `{s}` is not a source of the {} example, expected one of: {}",
                kind.name(),
                kind.sources().join(", ")
            );
        }
    }
    let event_rate = args.event_rate.unwrap_or(if args.rate > 0.0 { args.rate } else { 1000.0 });
    let options = Options {
        seed: args.seed,
        rate: event_rate,
        start_ms: args.start,
        count: args.count,
        keys: args.keys,
        fraud_share: args.fraud_share,
        malformed_share: args.malformed_share,
        late_share: args.late_share,
        beyond_watermark_share: args.beyond_watermark_share,
        max_out_of_orderness_ms: args.max_out_of_orderness,
    };
    for (source, _) in &args.topics {
        if !kind.sources().contains(&source.as_str()) {
            bail!(
                "--topic {source}=…: `{source}` is not a source of the {} example, expected one of: {}",
                kind.name(),
                kind.sources().join(", ")
            );
        }
    }
    Ok((kind, Generator::new(kind, &options)?))
}

/// `smack generate … --kafka BOOTSTRAP`: produces the events into Kafka
/// with the idempotent producer, paced by --rate, flushed at the end.
pub async fn run_to_kafka(args: GenerateArgs) -> anyhow::Result<()> {
    use smack_connectors::kafka::{KafkaClientConfig, KafkaSink, SinkConfig};
    let (kind, mut generator) = generator_of(&args)?;
    let avro = match args.format {
        PayloadFormat::Json => None,
        PayloadFormat::Avro => {
            Some(AvroPayloads::new(kind, args.pipeline.as_deref(), args.avro_wire_format.into(), args.schema_id)?)
        }
    };
    let bootstrap = args.kafka.clone().unwrap_or_default();
    let topic_of = |source: &str| {
        args.topics.iter().find(|(s, _)| s == source).map(|(_, t)| t.clone()).unwrap_or_else(|| source.to_string())
    };
    let client = KafkaClientConfig::new(&bootstrap).with_client_id("smack-generate");
    let mut sink = KafkaSink::new(SinkConfig::new(client)).with_context(|| format!("producing to {bootstrap}"))?;
    let began = Instant::now();
    let mut sent = 0u64;
    for (i, ev) in (0u64..).zip(generator.by_ref()) {
        if args.rate > 0.0 {
            let due = began + Duration::from_secs_f64(i as f64 / args.rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep(due - now).await;
            }
        }
        if args.source.as_deref().is_some_and(|s| s != ev.source) {
            continue;
        }
        let topic = topic_of(ev.source);
        let avro_payload = avro.as_ref().map(|a| a.encode(&ev)).transpose()?;
        let payload = avro_payload.as_deref().unwrap_or(&ev.payload);
        sink.send(&topic, Some(ev.key.as_bytes()), Some(payload), &[])
            .await
            .with_context(|| format!("producing to {topic} at {bootstrap}"))?;
        sent += 1;
        if sent.is_multiple_of(10_000) {
            sink.flush().await.with_context(|| format!("producing to {bootstrap}"))?;
            tracing::info!(sent, "events produced");
        }
    }
    sink.flush().await.with_context(|| format!("producing to {bootstrap}"))?;
    let summary = generator.summary();
    if let Some(path) = &args.summary {
        let json = serde_json::to_vec_pretty(summary)?;
        std::fs::write(path, json).with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    eprintln!("{} (produced to {bootstrap})", summary.line());
    Ok(())
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.format == PayloadFormat::Avro {
        bail!("--format avro writes binary records, which do not fit in lines: use it with --kafka BOOTSTRAP");
    }
    let (kind, mut generator) = generator_of(&args)?;
    let mut sink = LineSink::open(args.output.as_deref(), kind.sources())?;
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    let only = args.source.as_deref();
    let where_to = args.output.as_ref().map_or("stdout".to_string(), |p| p.display().to_string());
    let began = Instant::now();
    let mut closed = false;
    for (i, ev) in (0u64..).zip(generator.by_ref()) {
        if args.rate > 0.0 {
            let due = began + Duration::from_secs_f64(i as f64 / args.rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                sink.flush().with_context(|| format!("writing to {where_to}"))?;
                std::thread::sleep(due - now);
            }
        }
        if only.is_some_and(|s| s != ev.source) {
            continue;
        }
        match sink.write(&ev, sep) {
            Ok(()) => {}
            // The reader went away (`| head`): stop, and say what was made.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                closed = true;
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("writing to {where_to}")),
        }
    }
    if !closed {
        match sink.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).with_context(|| format!("writing to {where_to}"));
            }
            _ => {}
        }
    }
    let summary = generator.summary();
    if let Some(path) = &args.summary {
        let json = serde_json::to_vec_pretty(summary)?;
        std::fs::write(path, json).with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    eprintln!("{}", summary.line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }

    fn run_with(argv: &[&str]) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(std::iter::once("generate").chain(argv.iter().copied()))?;
        run(cli.args)
    }

    #[test]
    fn writes_one_file_per_source_and_a_summary_and_the_same_bytes_twice() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("{source}.ndjson");
        let summary = dir.path().join("summary.json");
        let argv = [
            "ad-tech",
            "--count",
            "3000",
            "--seed",
            "5",
            "--malformed-share",
            "0.01",
            "--key-separator",
            "\t",
            "--output",
            out.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ];
        run_with(&argv).unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let (impressions, clicks) = (read("impressions.ndjson"), read("clicks.ndjson"));
        let s: serde_json::Value = serde_json::from_slice(&read("summary.json")).unwrap();
        let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
        assert_eq!(s["total"], 3000);
        assert_eq!(s["by_source"]["impressions"], lines(&impressions));
        assert_eq!(s["by_source"]["clicks"], lines(&clicks));
        assert!(s["malformed"].as_u64().unwrap() > 0);
        let first = String::from_utf8_lossy(&impressions);
        let (key, payload) = first.lines().next().unwrap().split_once('\t').unwrap();
        assert!(payload.contains(&format!("\"campaign_id\":\"{key}\"")), "{payload}");
        run_with(&argv).unwrap();
        assert_eq!(read("impressions.ndjson"), impressions);
        assert_eq!(read("clicks.ndjson"), clicks);
    }

    #[test]
    fn avro_needs_kafka() {
        let err = run_with(&["fraud", "--count", "1", "--format", "avro"]).unwrap_err().to_string();
        assert!(err.contains("--kafka"), "{err}");
    }

    #[test]
    fn bad_flags_say_what_was_expected() {
        let err = run_with(&["ad-tech", "--count", "1", "--source", "clickz"]).unwrap_err().to_string();
        assert!(err.contains("impressions, clicks"), "{err}");
        let err = run_with(&["fraud", "--count", "1", "--rate=-1"]).unwrap_err().to_string();
        assert!(err.contains("--rate"), "{err}");
        let err = run_with(&["fraud", "--count", "1", "--max-out-of-orderness", "5 seconds"]).unwrap_err().to_string();
        assert!(err.contains("10s"), "{err}");
        let err = run_with(&["fraud", "--count", "1", "--late-share", "2"]).unwrap_err().to_string();
        assert!(err.contains("--late-share"), "{err}");
    }
}
