//! `smack bench pipeline`: the flags of the data-plane benchmark, run by
//! the `smack-bench` crate (see its doc for what each phase measures).

use clap::{Args, Subcommand};
use smack_bench::PipelineBench;
use std::path::PathBuf;

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
    /// The card population (the pipeline's lookups hold each card's home
    /// country). 100,000: the example generator's, and its lookup cache.
    #[arg(long, default_value_t = 100_000)]
    cards: u64,
    /// Cassandra contact points, host:port,...: also run the stage task
    /// with its Cassandra sink (needs --bootstrap).
    #[arg(long, value_delimiter = ',')]
    cassandra: Vec<String>,
    /// The Cassandra datacenter (keyspaces are replicated once in it).
    #[arg(long, default_value = "dc1")]
    local_dc: String,
    /// Measure produce → row latency for this many seconds of production
    /// (needs --bootstrap and --cassandra); 0 skips it.
    #[arg(long, default_value_t = 0)]
    latency_seconds: u64,
    /// Events produced per second during the latency run.
    #[arg(long, default_value_t = 50_000.0)]
    latency_rate: f64,
    /// Records per micro-batch of the stage task during the latency run (a
    /// poll returns when it has this many, or after 500 ms).
    #[arg(long, default_value_t = 1_000)]
    latency_batch: usize,
    /// Cassandra writes in flight at most, per sink, in the stage tasks (c)
    /// and the latency run.
    #[arg(long, default_value_t = 64)]
    cassandra_in_flight: usize,
    /// Rows due within this many seconds of the latency run's start are
    /// reported per window but left out of the percentiles (a partial lookup
    /// cache is cold then: every new card is a Cassandra read).
    #[arg(long, default_value_t = 30)]
    latency_warmup_seconds: u64,
    /// How long the latency run waits after the last event before reading
    /// the rows back.
    #[arg(long, default_value_t = 10)]
    latency_drain_seconds: u64,
    /// Rows per unlogged batch when filling the card lookup table (1: one
    /// upsert per request). Above 10, Cassandra's default
    /// `unlogged_batch_across_partitions_warn_threshold`, every batch draws
    /// a warning that the driver logs (silence it with
    /// `RUST_LOG=info,scylla=error`).
    #[arg(long, default_value_t = 10)]
    fill_batch: usize,
    /// Batches in flight at most when filling the card lookup table.
    #[arg(long, default_value_t = 1024)]
    fill_in_flight: usize,
    /// Fill the card lookup table even when a marker says an earlier run
    /// filled it with the same cards.
    #[arg(long)]
    refill: bool,
}

impl From<PipelineBenchArgs> for PipelineBench {
    fn from(a: PipelineBenchArgs) -> Self {
        PipelineBench {
            file: a.file,
            events: a.events,
            batch: a.batch,
            event_rate: a.event_rate,
            seed: a.seed,
            bootstrap: a.bootstrap,
            partitions: a.partitions,
            consumer_properties: a.consumer_properties,
            cards: a.cards,
            cassandra: a.cassandra,
            local_dc: a.local_dc,
            latency_seconds: a.latency_seconds,
            latency_rate: a.latency_rate,
            latency_batch: a.latency_batch,
            cassandra_in_flight: a.cassandra_in_flight,
            latency_warmup_seconds: a.latency_warmup_seconds,
            latency_drain_seconds: a.latency_drain_seconds,
            fill_batch: a.fill_batch,
            fill_in_flight: a.fill_in_flight,
            refill: a.refill,
        }
    }
}

/// Runs a bench command.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Pipeline(args) => Ok(smack_bench::run_pipeline(args.into()).await?),
    }
}
