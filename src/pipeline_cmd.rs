//! `smack pipeline …`: commands on a pipeline file. `validate`, `schema` and
//! `test` need no cluster; `apply`, `diff`, `status` and `delete` talk to
//! the cluster (see `pipeline_deploy`).

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PipelineCmd {
    /// Check pipeline files (fields, SQL, references, keys) without a cluster.
    Validate {
        /// The pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of a pipeline file.
    Schema,
    /// Run a pipeline file's `tests:` through the stage runtime, without a
    /// cluster: records in, the rows each sink gets compared to `expect`.
    Test {
        /// The pipeline file.
        file: PathBuf,
    },
    /// Deploy a pipeline: its Kafka and Cassandra services, topics and
    /// tables, then its stages (and generator). Nothing is deployed if the
    /// file does not validate.
    Apply {
        /// The pipeline file.
        file: PathBuf,
    },
    /// Show what `apply` would change, service by service, without doing it.
    Diff {
        /// The pipeline file.
        file: PathBuf,
    },
    /// The services of an applied pipeline and their deploy state.
    Status {
        /// The pipeline's name.
        name: String,
        #[arg(long, short, value_enum, default_value = "table")]
        output: crate::Output,
    },
    /// Remove an applied pipeline: stages and generator first, then its
    /// clusters; every pod's disk is released.
    Delete {
        /// The pipeline's name.
        name: String,
    },
}

impl PipelineCmd {
    /// Whether the command talks to the cluster.
    pub fn needs_cluster(&self) -> bool {
        matches!(
            self,
            PipelineCmd::Apply { .. }
                | PipelineCmd::Diff { .. }
                | PipelineCmd::Status { .. }
                | PipelineCmd::Delete { .. }
        )
    }
}

/// The commands that talk to the cluster.
pub async fn run_on_cluster(
    state_dir: &std::path::Path,
    c: &crate::cluster::ClusterFile,
    cmd: PipelineCmd,
) -> anyhow::Result<()> {
    use crate::pipeline_deploy as d;
    match cmd {
        PipelineCmd::Apply { file } => d::apply(state_dir, c, &file).await,
        PipelineCmd::Diff { file } => d::diff(state_dir, c, &file).await,
        PipelineCmd::Status { name, output } => d::status(state_dir, c, &name, output).await,
        PipelineCmd::Delete { name } => d::delete(state_dir, c, &name).await,
        other => run(other),
    }
}

pub fn run(cmd: PipelineCmd) -> anyhow::Result<()> {
    match cmd {
        PipelineCmd::Apply { .. }
        | PipelineCmd::Diff { .. }
        | PipelineCmd::Status { .. }
        | PipelineCmd::Delete { .. } => {
            anyhow::bail!("this pipeline command needs the cluster")
        }
        PipelineCmd::Validate { files } => {
            let mut failed = false;
            for f in &files {
                match smack_pipelines::load(f) {
                    Ok(p) => println!(
                        "{}: ok ({} sources, {} stages, {} sinks)",
                        f.display(),
                        p.sources.len(),
                        p.stages.len(),
                        p.sinks.len()
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{e}");
                    }
                }
            }
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        PipelineCmd::Test { file } => {
            let spec = match smack_pipelines::load(&file) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            // `run` is called inside the CLI's multi-threaded runtime.
            let reports = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(smack_pipelines::runtime::testing::run_tests(&spec))
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if reports.is_empty() {
                println!("{}: no tests", file.display());
            }
            let failed = reports.iter().filter(|r| !r.passed()).count();
            for r in &reports {
                println!("{} {}", if r.passed() { "PASS" } else { "FAIL" }, r.name);
                for f in &r.failures {
                    println!("     {f}");
                }
                for l in &r.late {
                    println!("     dead-letter: {l}");
                }
            }
            println!("{}: {} of {} tests passed", file.display(), reports.len() - failed, reports.len());
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        PipelineCmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&smack_pipelines::spec::json_schema())?);
            Ok(())
        }
    }
}
