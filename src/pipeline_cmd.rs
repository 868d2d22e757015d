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
        PipelineCmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&smack_pipelines::spec::json_schema())?);
            Ok(())
        }
    }
}
