//! `smack test-service`: a small stateful service for trying the operator
//! framework without Kafka or Cassandra. It appends a line to a file on its
//! volume each time it starts, and serves that file over HTTP on its port
//! (`GET /` the lines, `GET /ready` 200 once started), so a readiness check
//! and a test can see it, and see that its data outlived a restart.
//! `GET /drain` appends a `drain` line (what a decommission hook would ask
//! of a real service); `smack test-service --drain PORT` is that hook: it
//! asks the service on PORT to drain and exits 0 only if it answered.
//!
//! With `--metrics` it also serves `GET /metrics`: a stage task's families
//! (`smack_stage_*`, encoded by the stage runtime's own
//! [`TaskMetrics`](smack_pipelines::task::metrics::TaskMetrics)) with made-up
//! values that move each second: records in and rows out grow, a few
//! records are dead-lettered (`decode`, `late`), consumer lag and watermark
//! delay wander, and a checkpoint is counted every few seconds. It lets the
//! dashboard's stage charts be tried without Kafka or Cassandra.

use anyhow::{Context, Result};
use clap::Args;
use smack_pipelines::task::metrics::{label, labels2, TaskMetrics};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Clone)]
pub struct TestServiceArgs {
    /// The directory to keep data in (default: $VOLUME_DATA).
    #[arg(long, env = "VOLUME_DATA")]
    pub data: Option<PathBuf>,
    /// Port to serve on (default: $PORT_HTTP, else $PORT0).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind (default: $HOST, else 127.0.0.1).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Ask the service on this port to drain, and exit (a decommission hook).
    #[arg(long, value_name = "PORT")]
    pub drain: Option<u16>,
    /// Also serve made-up stage metrics (smack_stage_*) at /metrics.
    #[arg(long)]
    pub metrics: bool,
}

pub async fn run(args: TestServiceArgs) -> Result<()> {
    if let Some(port) = args.drain {
        return drain(&args.host, port).await;
    }
    let port = match args.port {
        Some(p) => p,
        None => std::env::var("PORT_HTTP")
            .or_else(|_| std::env::var("PORT0"))
            .context("no --port, and neither PORT_HTTP nor PORT0 is set")?
            .parse()
            .context("the port must be a number")?,
    };
    let data = args.data.context("no --data, and VOLUME_DATA is not set: the service keeps its data on a volume")?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let log = data.join("starts.log");
    let name = std::env::var("TASK_NAME").unwrap_or_else(|_| "test-service".into());
    let line = format!("start {name} config={}\n", std::env::var("CONFIG_VERSION").unwrap_or_default());
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::write(data.join("pid"), std::process::id().to_string())?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), port))
        .await
        .with_context(|| format!("binding {}:{port}", args.host))?;
    tracing::info!(host = %args.host, port, metrics = args.metrics, "test service serving");
    let metrics = args.metrics.then(|| {
        let m = TaskMetrics::new();
        tokio::spawn(fake_stage(m.clone()));
        m
    });
    loop {
        let (mut sock, _) = listener.accept().await?;
        let log = log.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let mut content_type = "text/plain";
            let body = if path == "/ready" {
                "ready\n".to_string()
            } else if let (Some(m), "/metrics") = (&metrics, path) {
                content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                m.encode()
            } else if path == "/drain" {
                use std::io::Write;
                let ok = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .and_then(|mut f| f.write_all(b"drain\n").and_then(|_| f.sync_all()));
                if ok.is_ok() {
                    "drained\n".to_string()
                } else {
                    String::new()
                }
            } else {
                std::fs::read_to_string(&log).unwrap_or_default()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Moves the made-up stage metrics once a second, for as long as the
/// service runs.
async fn fake_stage(m: TaskMetrics) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    for i in 0u64.. {
        tick.tick().await;
        let (records, rows, lag, delay) = fake_stage_values(i);
        m.records_in.get_or_create(&label("source", "transactions")).inc_by(records);
        m.rows_out.get_or_create(&label("sink", "alerts")).inc_by(rows);
        if i % 3 == 0 {
            m.dead_lettered.get_or_create(&labels2(("source", "transactions"), ("reason", "decode"))).inc();
        }
        if i % 5 == 0 {
            m.dead_lettered.get_or_create(&labels2(("source", "transactions"), ("reason", "late"))).inc();
        }
        for (p, l) in lag.iter().enumerate() {
            m.consumer_lag.get_or_create(&labels2(("source", "transactions"), ("partition", &p.to_string()))).set(*l);
        }
        m.watermark_delay.get_or_create(&label("source", "transactions")).set(delay);
        if i % 4 == 0 {
            m.checkpoint_duration.observe(0.01 + (i % 7) as f64 / 100.0);
            m.checkpoint_size.set(4096 + (i as i64 % 13) * 512);
            m.checkpoints.inc();
        }
    }
}

/// The made-up values of second `i`: records read, rows written, the lag
/// of two partitions and the watermark delay in seconds.
fn fake_stage_values(i: u64) -> (u64, u64, [i64; 2], f64) {
    let wave = [0i64, 3, 6, 8, 9, 8, 6, 3, 0, 1][(i % 10) as usize];
    (40 + (i % 7) * 6, 8 + i % 4, [20 + wave * 15, 5 + wave * 4], 1.5 + wave as f64 * 0.4)
}

/// The decommission hook's side: asks the service to drain.
async fn drain(host: &str, port: u16) -> Result<()> {
    let mut sock = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to the service at {host}:{port}"))?;
    sock.write_all(b"GET /drain HTTP/1.1\r\nconnection: close\r\n\r\n").await?;
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await?;
    if resp.starts_with("HTTP/1.1 200") && resp.ends_with("drained\n") {
        println!("drained the service at {host}:{port}");
        Ok(())
    } else {
        anyhow::bail!("the service at {host}:{port} did not drain: {}", resp.lines().next().unwrap_or("no answer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_stage_values_stay_in_range_and_counters_grow() {
        for i in 0..100 {
            let (records, rows, lag, delay) = fake_stage_values(i);
            assert!(records >= 40 && rows >= 8, "second {i}: counters must grow every second");
            assert!(lag.iter().all(|l| *l >= 0) && delay > 0.0, "second {i}");
        }
    }
}
