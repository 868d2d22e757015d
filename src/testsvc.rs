//! `smack test-service`: a small stateful service for trying the operator
//! framework without Kafka or Cassandra. It appends a line to a file on its
//! volume each time it starts, and serves that file over HTTP on its port
//! (`GET /` the lines, `GET /ready` 200 once started), so a readiness check
//! and a test can see it, and see that its data outlived a restart.
//! `GET /drain` appends a `drain` line (what a decommission hook would ask
//! of a real service); `smack test-service --drain PORT` is that hook: it
//! asks the service on PORT to drain and exits 0 only if it answered.

use anyhow::{Context, Result};
use clap::Args;
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
    tracing::info!(host = %args.host, port, "test service serving");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let log = log.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let body = if path == "/ready" {
                "ready\n".to_string()
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
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
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
