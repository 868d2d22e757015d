//! `smack artifacts fetch|list`: prepare a machine's Kafka and Cassandra
//! jars ahead of time, and show what is there.

use crate::Output;
use clap::{Args, Subcommand, ValueEnum};
use smack_catalog::artifacts::{self, ArtifactSource, ArtifactStatus, Service};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ArtifactsArgs {
    /// Where jars are cached [default: $SMACK_CACHE_DIR, else
    /// $XDG_CACHE_HOME/smack/artifacts, else ~/.cache/smack/artifacts].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ArtifactsCommand,
}

#[derive(Subcommand)]
enum ArtifactsCommand {
    /// Fetch the pinned Kafka and/or Cassandra jars from Maven Central
    /// (or check the KAFKA_HOME / CASSANDRA_HOME install).
    Fetch {
        #[arg(value_enum, default_value = "all")]
        which: Which,
    },
    /// Show each service's version, source, path, jar count and whether it
    /// is ready to run.
    List {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Kafka,
    Cassandra,
    All,
}

impl Which {
    fn services(self) -> Vec<Service> {
        match self {
            Which::Kafka => vec![Service::Kafka],
            Which::Cassandra => vec![Service::Cassandra],
            Which::All => vec![Service::Kafka, Service::Cassandra],
        }
    }
}

pub async fn run(args: ArtifactsArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: ArtifactsArgs) -> anyhow::Result<()> {
    let cache = args.cache_dir.unwrap_or_else(artifacts::default_cache_dir);
    match args.command {
        ArtifactsCommand::Fetch { which } => fetch(&cache, &which.services()),
        ArtifactsCommand::List { output } => list(&cache, output),
    }
}

/// Checks Java for every service first (a fetch is useless without it),
/// then resolves each one, showing progress while Maven runs.
pub fn fetch(cache: &Path, services: &[Service]) -> anyhow::Result<()> {
    let java = artifacts::java_binary()?;
    let version = artifacts::java_feature_version(&java)?;
    for s in services {
        artifacts::check_java(*s, version)?;
    }
    println!("java: {} (Java {version})", java.display());
    for &service in services {
        let before = artifacts::status(service, cache);
        if before.complete {
            println!("{service} {}: ready, {} jars in {}", before.version, before.jars, before.lib_dir.display());
            continue;
        }
        if matches!(before.source, ArtifactSource::Maven) {
            artifacts::find_tool("mvn", None, artifacts::MAVEN_INSTALL_HINT)?;
        }
        println!(
            "{service} {}: fetching from Maven Central into {} (one-time; about 110 MB for both services on an empty ~/.m2)",
            service.version(),
            artifacts::cache_entry(service, cache).display()
        );
        let started = Instant::now();
        let cache_owned = cache.to_path_buf();
        let worker = std::thread::spawn(move || artifacts::resolve(service, &cache_owned));
        let partial = artifacts::partial_dir(service, cache);
        let tty = std::io::stderr().is_terminal();
        let mut last_line = Instant::now();
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            let secs = started.elapsed().as_secs();
            let jars = artifacts::jar_count(&partial);
            let msg = format!("  {service}: {secs} s, {jars} jars copied so far");
            if tty {
                eprint!("\r{} {msg}   ", spinner(started.elapsed()));
                let _ = std::io::stderr().flush();
            } else if last_line.elapsed() >= Duration::from_secs(5) {
                eprintln!("{msg}");
                last_line = Instant::now();
            }
        }
        if tty {
            eprintln!();
        }
        let a = worker.join().map_err(|_| anyhow::anyhow!("the fetch of {service} panicked"))??;
        println!(
            "{service} {}: ready, {} jars in {} ({:.1} s)",
            a.version,
            artifacts::jar_count(&a.lib_dir),
            a.lib_dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn spinner(elapsed: Duration) -> char {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    FRAMES[(elapsed.as_millis() / 250) as usize % FRAMES.len()]
}

fn source_text(s: &ArtifactSource) -> String {
    match s {
        ArtifactSource::Maven => "maven cache".into(),
        ArtifactSource::Home(home) => format!("local install ({})", home.display()),
    }
}

fn list(cache: &Path, output: Output) -> anyhow::Result<()> {
    let rows: Vec<ArtifactStatus> =
        [Service::Kafka, Service::Cassandra].into_iter().map(|s| artifacts::status(s, cache)).collect();
    if output == Output::Json {
        let v = serde_json::json!({ "cache_dir": cache, "artifacts": rows });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("cache: {}", cache.display());
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.service.to_string(),
                r.version.clone(),
                source_text(&r.source),
                if r.complete { "yes".into() } else { "no".into() },
                r.jars.to_string(),
                r.lib_dir.display().to_string(),
            ]
        })
        .collect();
    let header = ["SERVICE", "VERSION", "SOURCE", "COMPLETE", "JARS", "PATH"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &table {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.iter().any(|r| !r.complete) {
        println!("(run `smack artifacts fetch` to fetch what is missing)");
    }
    match artifacts::java_binary() {
        Ok(j) => match artifacts::java_feature_version(&j) {
            Ok(v) => println!("java: {} (Java {v})", j.display()),
            Err(e) => println!("java: {e}"),
        },
        Err(e) => println!("java: {e}"),
    }
    Ok(())
}
