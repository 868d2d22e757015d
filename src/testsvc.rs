//! `smack test-service`: a small stateful service for trying the operator
//! framework without Kafka or Cassandra. It appends a line to a file on its
//! volume each time it starts, and serves that file over HTTP on its port
//! (`GET /` the lines, `GET /ready` 200 once started), so a readiness check
//! and a test can see it, and see that its data outlived a restart.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Clone)]
pub struct TestServiceArgs {
    /// The directory to keep data in (default: $VOLUME_DATA).
    #[arg(long, env = "VOLUME_DATA")]
    pub data: PathBuf,
    /// Port to serve on (default: $PORT_HTTP, else $PORT0).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind (default: $HOST, else 127.0.0.1).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
}

pub async fn run(args: TestServiceArgs) -> Result<()> {
    let port = match args.port {
        Some(p) => p,
        None => std::env::var("PORT_HTTP")
            .or_else(|_| std::env::var("PORT0"))
            .context("no --port, and neither PORT_HTTP nor PORT0 is set")?
            .parse()
            .context("the port must be a number")?,
    };
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let log = args.data.join("starts.log");
    let name = std::env::var("TASK_NAME").unwrap_or_else(|_| "test-service".into());
    let line = format!("start {name} config={}\n", std::env::var("CONFIG_VERSION").unwrap_or_default());
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::write(args.data.join("pid"), std::process::id().to_string())?;
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
