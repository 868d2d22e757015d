//! `smack stage run`: one stage task, launched by an agent (never by hand).
//! Parses the flags, loads the pipeline, serves the task's metrics on
//! `/metrics`, turns SIGTERM/SIGINT into a clean stop (flush, checkpoint),
//! and runs [`smack_pipelines::task::run_task`].

use anyhow::Context;
use clap::{Args, Subcommand};
use smack_pipelines::task::{run_task, TaskConfig, TaskMetrics};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum StageCmd {
    /// Run one task of a pipeline's stage.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(long)]
    pipeline: PathBuf,
    /// The stage to run (with the earlier stages it reads).
    #[arg(long)]
    stage: String,
    /// This task's index, 0..task-count.
    #[arg(long, default_value_t = 0)]
    task_index: u32,
    /// The stage's number of tasks.
    #[arg(long, default_value_t = 1)]
    task_count: u32,
    /// Kafka brokers, host:port[,host:port…].
    #[arg(long)]
    bootstrap: String,
    /// Cassandra nodes, host:port[,host:port…] (needed for Cassandra sinks).
    #[arg(long, value_delimiter = ',')]
    cassandra: Vec<String>,
    /// The Cassandra datacenter to prefer.
    #[arg(long)]
    local_dc: Option<String>,
    /// The task's persistent volume: checkpoints go to its `checkpoints/` dir.
    #[arg(long)]
    state_dir_volume: PathBuf,
    /// Serve metrics on this port (at /metrics).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// The address to serve metrics on (the agent's address).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    metrics_host: String,
    /// Overrides the pipeline's checkpoint-interval (e.g. 1s, 500ms).
    #[arg(long)]
    checkpoint_interval: Option<String>,
    /// At most this many records per micro-batch.
    #[arg(long, default_value_t = 10_000)]
    max_batch_records: usize,
    /// Cassandra write requests outstanding at most, per sink (each an
    /// upsert or an unlogged batch of up to 10 rows).
    #[arg(long, default_value_t = 64)]
    cassandra_in_flight: usize,
    /// Read at most this many records a second [default: no limit].
    #[arg(long)]
    max_records_per_second: Option<f64>,
    /// A partition silent this long (and at its end) stops holding the watermark back.
    #[arg(long, default_value = "30s")]
    idle_timeout: String,
    /// Finish once every owned partition is at its end: emit every window,
    /// checkpoint, exit 0 (tests and bounded replays).
    #[arg(long)]
    until_idle: bool,
}

fn duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    smack_pipelines::spec::Duration::parse(s).map(|d| d.0).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

pub async fn run(cmd: StageCmd) -> anyhow::Result<()> {
    let StageCmd::Run(a) = cmd;
    let spec = smack_pipelines::load(&a.pipeline)?;
    let mut config =
        TaskConfig::new(a.stage, a.task_index, a.task_count, a.bootstrap, a.state_dir_volume.join("checkpoints"));
    config.cassandra = a.cassandra.into_iter().filter(|c| !c.trim().is_empty()).collect();
    config.local_dc = a.local_dc;
    config.checkpoint_interval =
        a.checkpoint_interval.as_deref().map(|s| duration("checkpoint-interval", s)).transpose()?;
    config.max_batch_records = a.max_batch_records.max(1);
    config.cassandra_in_flight = a.cassandra_in_flight.max(1);
    config.max_records_per_second = a.max_records_per_second;
    config.idle_timeout = duration("idle-timeout", &a.idle_timeout)?;
    config.until_idle = a.until_idle;

    let metrics = TaskMetrics::new();
    if let Some(port) = a.metrics_port {
        let listener = tokio::net::TcpListener::bind((a.metrics_host.as_str(), port))
            .await
            .with_context(|| format!("serving metrics on {}:{port}", a.metrics_host))?;
        let m = metrics.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the metrics server stopped");
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::warn!("cannot install the SIGTERM handler; the task stops without a last checkpoint");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping: flushing the sinks and writing a checkpoint");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let summary = run_task(&spec, config, metrics, &stop).await?;
    println!("{}", summary.line());
    Ok(())
}
