//! `smack pipeline …`: commands on a pipeline file that need no cluster.

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
}

pub fn run(cmd: PipelineCmd) -> anyhow::Result<()> {
    match cmd {
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
