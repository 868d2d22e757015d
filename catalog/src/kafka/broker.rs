//! The node task of a `kafka-N` pod (`smack catalog kafka-broker`: a
//! broker, combined with a controller unless the service has dedicated
//! ones) and of a `controller-N` pod (a dedicated controller).
//!
//! Reads the task env (see [`super::service`]), finds the Kafka jars in the
//! artifact cache (it never downloads: an agent task must not wait a minute
//! on Maven), writes `server.properties` and the Log4j2 config into the
//! sandbox, formats the log dir only when the volume is fresh
//! (`--standalone` for the cluster's first controller,
//! `--no-initial-controllers` for the other controllers, which the
//! readiness check then adds to the quorum, no flag for a broker beside
//! dedicated controllers), refuses a volume formatted for another cluster
//! or node, records its pid and execs the node's JVM in its place.

use super::config as kafka;
use super::service::{BrokerEnv, FormatMode};
use crate::artifacts::{self, Artifact, KafkaJvm, Service};
use crate::error::{bail, Context, Result};
use crate::launch::{KAFKA_FORMAT_LINE, PID_FILE};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Prepares the node and `exec`s Kafka; returns only on failure.
pub fn run() -> Result<()> {
    let env = BrokerEnv::from_env(|k| std::env::var(k).ok())?;
    let sandbox = match std::env::var_os("SMACK_SANDBOX").filter(|s| !s.is_empty()) {
        Some(s) => PathBuf::from(s),
        None => std::env::current_dir().context("no SMACK_SANDBOX and no current dir")?,
    };
    let artifact = kafka_jars()?;
    let java = artifacts::java_binary()?;
    artifacts::check_java(Service::Kafka, artifacts::java_feature_version(&java)?)?;

    let node = env.node_config();
    node.validate()?;
    let log_dir = env.log_dir();
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating the log dir {}", log_dir.display()))?;
    // Refuses (exit 1, with the reason) a volume formatted for another
    // cluster or node before Kafka sees it.
    let formatted = kafka::check_meta(&log_dir, &env.cluster_id, env.node_id)?;

    let conf = sandbox.join("conf");
    let logs = sandbox.join("logs");
    for d in [&conf, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let props = conf.join("server.properties");
    let log4j = conf.join("log4j2.properties");
    write(&props, &kafka::kafka_server_properties(&node))?;
    write(&log4j, &kafka::kafka_log4j2_properties("INFO"))?;
    let jvm = KafkaJvm { heap_mb: env.heap_mb, logs_dir: logs, log4j2_config: log4j };

    if !formatted {
        let mode = env.format_mode();
        println!(
            "{KAFKA_FORMAT_LINE}: {} is fresh; node {} of cluster {} ({})",
            log_dir.display(),
            env.node_id,
            env.cluster_id,
            match mode {
                FormatMode::Standalone => "the first controller: a quorum of one",
                FormatMode::Join => "an observer until its readiness check adds it to the controller quorum",
                FormatMode::Broker => "a broker of the dedicated controllers' quorum",
            }
        );
        let mut args = artifacts::java_command_kafka_format(&artifact, &jvm, &props, &env.cluster_id, false);
        if let Some(flag) = mode.flag() {
            args.push(flag.into());
        }
        let status = Command::new(&java)
            .args(&args)
            .status()
            .with_context(|| format!("running {} (Kafka's StorageTool)", java.display()))?;
        if !status.success() {
            bail!("formatting {} failed ({status}); see the lines above", log_dir.display());
        }
        if !kafka::check_meta(&log_dir, &env.cluster_id, env.node_id)? {
            bail!("Kafka's StorageTool exited 0 but wrote no meta.properties into {}", log_dir.display());
        }
    } else {
        println!("smack: {} is formatted for node {}: starting on it as is", log_dir.display(), env.node_id);
    }

    // exec keeps the pid: the JVM is this process.
    write(&sandbox.join(PID_FILE), &format!("{}\n", std::process::id()))?;
    let err = Command::new(&java).args(artifacts::java_command_kafka(&artifact, &jvm, &props)).exec();
    bail!("cannot exec {}: {err}", java.display())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The Kafka jars: `KAFKA_HOME` when set, else a complete entry of the
/// artifact cache (never a download).
pub fn kafka_jars() -> Result<Artifact> {
    if std::env::var_os(Service::Kafka.home_var()).is_some_and(|h| !h.is_empty()) {
        return artifacts::resolve(Service::Kafka, &artifacts::default_cache_dir());
    }
    let cache = artifacts::default_cache_dir();
    let status = artifacts::status(Service::Kafka, &cache);
    if !status.complete {
        bail!(
            "the Kafka {} jars are not in the artifact cache {} (on this agent): run `smack artifacts fetch kafka` \
             here first (with SMACK_CACHE_DIR={} if the cache is elsewhere), or set KAFKA_HOME",
            Service::Kafka.version(),
            status.lib_dir.display(),
            cache.display()
        );
    }
    artifacts::resolve_cached(Service::Kafka, &cache)
}
