//! The `smack` binary: the CLI and the process entry points. Thin: it parses
//! flags and delegates to the crates.

/// mimalloc for every smack process (see Cargo.toml): keyed window state is
/// millions of small allocations freed together when a window closes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent_log_cmd;
mod artifacts;
mod bench_cmd;
mod cassandra_cmd;
mod catalog_cmd;
mod cluster;
mod commands;
mod endpoints_cmd;
mod generate_cmd;
mod kafka_cmd;
mod metrics_cmd;
mod pipeline_cmd;
mod pipeline_deploy;
mod schedulers;
mod service_cmd;
mod stage_cmd;
mod task_cmd;
mod testsvc;
mod up;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "smack", version, about = "A stateful fast-data pipeline orchestrator")]
struct Cli {
    /// The state dir: cluster.json, the token, master and agent state.
    #[arg(long, global = true, env = "SMACK_STATE_DIR", default_value = ".smack")]
    state_dir: PathBuf,
    /// The master's URL (else read from STATE_DIR/cluster.json).
    #[arg(long, global = true, env = "SMACK_MASTER")]
    master: Option<String>,
    /// The cluster token (else read from STATE_DIR/cluster.json).
    #[arg(long, global = true, env = "SMACK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Log format for smack's own logs (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How read commands print.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded default: a master and N local agents in one process.
    Up(up::UpArgs),
    /// Run a master.
    Master(commands::MasterArgs),
    /// Run an agent that offers this machine's resources to a master
    /// (`smack agent log AGENT` prints an agent's own log).
    Agent(agent_log_cmd::AgentCommand),
    /// Metrics endpoints: `smack metrics targets --output json` (Prometheus file_sd).
    Metrics {
        #[command(subcommand)]
        cmd: metrics_cmd::MetricsCmd,
    },
    /// Run or check a service scheduler.
    #[command(subcommand)]
    Service(service_cmd::ServiceCommand),
    /// Plans of a running service: list, show, pause, resume, restart, …
    Plan {
        #[command(subcommand)]
        cmd: service_cmd::PlanCmd,
        /// The service (default: the only one in the state dir).
        #[arg(long, global = true)]
        service: Option<String>,
        #[arg(long, short, global = true, value_enum, default_value = "table")]
        output: Output,
    },
    /// Pods of a running service: list, status, restart, replace.
    Pod {
        #[command(subcommand)]
        cmd: service_cmd::PodCmd,
        #[arg(long, global = true)]
        service: Option<String>,
        #[arg(long, short, global = true, value_enum, default_value = "table")]
        output: Output,
    },
    /// Seeded events for the examples: `smack generate fraud|ad-tech --rate R --count N --seed S`.
    Generate(generate_cmd::GenerateArgs),
    /// Pipelines: validate, schema, test a file; apply, diff, status, delete on the cluster.
    Pipeline {
        #[command(subcommand)]
        cmd: pipeline_cmd::PipelineCmd,
    },
    /// Print a shell completion script: `smack completions bash > /etc/bash_completion.d/smack`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A small stateful service for trying the operator framework.
    #[command(hide = true)]
    TestService(testsvc::TestServiceArgs),
    /// Fetch and list the Kafka and Cassandra jars (Maven Central or *_HOME).
    Artifacts(artifacts::ArtifactsArgs),
    /// Tasks: read their logs (`smack task log TASK [--follow]`).
    Task {
        #[command(subcommand)]
        cmd: task_cmd::TaskCmd,
    },
    /// List agents with their total, reserved and used resources.
    Agents {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Kafka topics and brokers of a Kafka service (admin API).
    Kafka(kafka_cmd::KafkaArgs),
    /// Where clients connect: `smack endpoints kafka` prints the bootstrap servers.
    Endpoints {
        #[command(subcommand)]
        cmd: endpoints_cmd::EndpointsCmd,
    },
    /// The Cassandra ring of a Cassandra service: nodes, keyspaces.
    #[command(subcommand)]
    Cassandra(cassandra_cmd::CassandraCmd),
    /// Catalog service tasks (run by agents from service specs).
    #[command(hide = true, subcommand)]
    Catalog(catalog_cmd::CatalogCmd),
    /// Stage tasks (`smack stage run …`, launched by agents).
    #[command(hide = true, subcommand)]
    Stage(stage_cmd::StageCmd),
    /// Benchmarks (`smack bench pipeline`; build with --release), see BENCHMARKS.md.
    #[command(hide = true, subcommand)]
    Bench(bench_cmd::BenchCmd),
}

/// smack's own logs: to stderr, and also to `file` when given (an agent's
/// own log, served at its `/v1/log`), filtered by `RUST_LOG` (default info).
fn init_tracing(format: LogFormat, file: Option<smack_operator::agent::logs::RotatingWriter>, file_only: bool) {
    use tracing_subscriber::{fmt, prelude::*, registry::Registry, Layer};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,scylla=warn"));
    let file_only = file_only && file.is_some();
    let file = file.map(std::sync::Mutex::new);
    let stderr = || (!file_only).then_some(std::io::stderr);
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = match format {
        LogFormat::Text => [stderr().map(|w| fmt::layer().with_writer(w).boxed())]
            .into_iter()
            .chain([file.map(|f| fmt::layer().with_ansi(false).with_writer(f).boxed())])
            .flatten()
            .collect(),
        LogFormat::Json => [stderr().map(|w| fmt::layer().json().with_writer(w).boxed())]
            .into_iter()
            .chain([file.map(|f| fmt::layer().json().with_writer(f).boxed())])
            .flatten()
            .collect(),
    };
    tracing_subscriber::registry().with(layers).with(filter).init();
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    // Volumes, sandboxes and schedulers' state live under the state dir;
    // tasks and detached schedulers need it absolute.
    cli.state_dir = std::path::absolute(&cli.state_dir)?;
    if let Command::Completions { shell } = &cli.command {
        use clap::CommandFactory;
        let mut out = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "smack", &mut out);
        use std::io::Write;
        let _ = std::io::stdout().write_all(&out);
        return Ok(());
    }
    let own_log = match &cli.command {
        Command::Agent(a) => agent_log_cmd::own_log(a, &cli.state_dir),
        // `smack up` keeps the master's and agents' log in the state dir
        // (`smack agent log` reads it); with a pipeline, the terminal is
        // left to the deploy and the rows.
        Command::Up(_) => {
            let path = up::log_file(&cli.state_dir);
            smack_operator::agent::logs::RotatingWriter::open(&path, Default::default()).ok()
        }
        _ => None,
    };
    let file_only = matches!(&cli.command, Command::Up(a) if a.pipeline.is_some());
    if file_only {
        eprintln!("logs: {}", up::log_file(&cli.state_dir).display());
    }
    init_tracing(cli.log_format, own_log, file_only);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(&cli.state_dir, args).await,
            Command::Master(args) => commands::run_master(&cli.state_dir, cli.token, args).await,
            Command::Agent(agent_log_cmd::AgentCommand { cmd: Some(sub), .. }) => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir)?;
                agent_log_cmd::run(&c, sub).await
            }
            Command::Agent(a) => commands::run_agent(&cli.state_dir, cli.master, cli.token, a.run).await,
            Command::Metrics { cmd } => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir)?;
                metrics_cmd::run(&c, cmd).await
            }
            Command::Completions { .. } => Ok(()),
            Command::TestService(args) => testsvc::run(args).await,
            Command::Service(service_cmd::ServiceCommand::Validate { spec }) => service_cmd::validate(&spec),
            Command::Service(service_cmd::ServiceCommand::Update { spec, service }) => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::update(&cli.state_dir, &c, service.as_deref(), &spec).await
            }
            Command::Service(service_cmd::ServiceCommand::Diff { spec, service, output }) => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::diff(&cli.state_dir, &c, service.as_deref(), &spec, output).await
            }
            Command::Service(service_cmd::ServiceCommand::Status { service, output }) => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::status(&cli.state_dir, &c, service.as_deref(), output).await
            }
            Command::Service(service_cmd::ServiceCommand::Delete { service }) => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::delete(&cli.state_dir, &c, service.as_deref()).await
            }
            Command::Service(service_cmd::ServiceCommand::Run(args)) => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::run_service(&cli.state_dir, &c, args).await
            }
            Command::Plan { cmd, service, output } => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::plan(&cli.state_dir, &c, service.as_deref(), cmd, output).await
            }
            Command::Pod { cmd, service, output } => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                service_cmd::pod(&cli.state_dir, &c, service.as_deref(), cmd, output).await
            }
            Command::Artifacts(args) => artifacts::run(args).await,
            Command::Pipeline { cmd } if cmd.needs_cluster() => {
                let c = service_cmd::resolve(&cli.state_dir, cli.master, cli.token)?;
                pipeline_cmd::run_on_cluster(&cli.state_dir, &c, cmd).await
            }
            Command::Pipeline { cmd } => pipeline_cmd::run(cmd),
            Command::Generate(args) if args.kafka.is_some() => generate_cmd::run_to_kafka(args).await,
            Command::Generate(args) => generate_cmd::run(args),
            Command::Task { cmd } => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir)?;
                task_cmd::run(&c, cmd).await
            }
            Command::Agents { output } => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir)?;
                commands::agents(&c, output).await
            }
            Command::Kafka(args) => {
                let (master, token) = (cli.master, cli.token);
                kafka_cmd::run(&cli.state_dir, || cluster::resolve(master, token, &cli.state_dir), args).await
            }
            Command::Endpoints { cmd } => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir)?;
                endpoints_cmd::run(&cli.state_dir, &c, cmd).await
            }
            Command::Catalog(cmd) => catalog_cmd::run(cmd),
            Command::Stage(cmd) => stage_cmd::run(cmd).await,
            Command::Bench(cmd) => bench_cmd::run(cmd).await,
            Command::Cassandra(cmd) => {
                let c = cluster::resolve(cli.master, cli.token, &cli.state_dir).ok();
                cassandra_cmd::run(&cli.state_dir, c, cmd).await
            }
        }
    });
    // Errors read as one message with its causes, without a backtrace.
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
