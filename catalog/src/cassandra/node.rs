//! The node launcher of a Cassandra pod (`smack catalog cassandra-node`).
//!
//! Run by the agent inside the pod's sandbox, it turns what the scheduler
//! put in its env into one Cassandra node and `exec`s the JVM (which keeps
//! the task's pid, so the agent's kill and the pid file reach Cassandra):
//!
//! - `HOST` → `listen_address` / `rpc_address`; `ZONE` → the rack;
//!   `PORT_NATIVE` → CQL; `PORT_JMX` → local JMX (for `nodetool`); the
//!   storage port is the one the spec fixes for every node (`--storage-port`).
//! - `VOLUME_DATA` → data, commit log, hints and saved caches under
//!   `VOLUME_DATA/cassandra`, so a restarted node finds its disk as it was.
//! - `SMACK_PODS` → the seeds: the first node of each of up to three zones
//!   ([`svc::seed_hosts`]).
//! - `POD_REPLACED_FROM` (a replaced pod's first launch on a fresh disk) →
//!   `-Dcassandra.replace_address_first_boot=OLD_HOST`; the address is kept
//!   on the volume so a replacement interrupted half-way is retried as one.
//!
//! The jars come from the artifact cache (`SMACK_CACHE_DIR`, which the
//! spec passes); a missing cache is an error that says to run
//! `smack artifacts fetch cassandra`, never a Maven run on the agent.

use super::config::{self as cassandra, CassandraNodeConfig};
use super::service::{self as svc, apply_config_overrides};
use crate::artifacts::{self, CassandraJvm, Service};
use crate::error::{bail, format_err, Context, Result};
use smack_operator::scheduler::service::{PodAddress, PODS_ENV};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node's settings, from the task's command line (the spec writes
/// them; `smack catalog cassandra-node --help` lists their defaults).
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// `cluster_name` (fixed for the cluster's life).
    pub cluster_name: String,
    /// The datacenter (the rack is the agent's zone).
    pub datacenter: String,
    /// The storage (gossip) port, the same on every node.
    pub storage_port: u16,
    pub num_tokens: u32,
    /// JVM heap (MiB).
    pub heap_mb: u32,
    /// `-Dcassandra.ring_delay_ms`.
    pub ring_delay_ms: u32,
    /// `cassandra.yaml` overrides, KEY=VALUE.
    pub overrides: Vec<(String, String)>,
    /// Cassandra's log level (INFO shows the startup lines).
    pub log_level: String,
}

/// Everything the node needs, decided from the flags and the env (pure).
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    pub node: CassandraNodeConfig,
    pub sandbox: PathBuf,
    /// `VOLUME_DATA/cassandra`.
    pub data_root: PathBuf,
    pub jmx_port: Option<u16>,
    /// The address this node replaces, if it was launched as a replacement.
    pub replaces: Option<String>,
    pub overrides: BTreeMap<String, String>,
}

fn var<'a>(env: &'a BTreeMap<String, String>, name: &str, what: &str) -> Result<&'a str> {
    env.get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format_err!("{name} is not set: expected {what} (the scheduler sets it for every pod task)"))
}

fn port(env: &BTreeMap<String, String>, name: &str) -> Result<u16> {
    let v = var(env, name, "a port number")?;
    v.trim().parse().map_err(|_| format_err!("{name}={v:?}: expected a port number 1..=65535"))
}

/// A zone as a rack name (GossipingPropertyFileSnitch wants plain words).
fn rack_name(zone: &str) -> String {
    let r: String =
        zone.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if r.is_empty() {
        "rack1".into()
    } else {
        r
    }
}

impl NodePlan {
    /// Decides the node from the flags and the task's env.
    pub fn from_env(args: &NodeOptions, env: &BTreeMap<String, String>) -> Result<NodePlan> {
        let host = var(env, "HOST", "the agent's address")?.to_string();
        let sandbox = PathBuf::from(var(env, "SMACK_SANDBOX", "the task's sandbox dir")?);
        let volume = PathBuf::from(var(env, "VOLUME_DATA", "the path of the pod's `data` volume")?);
        let native = port(env, "PORT_NATIVE")?;
        let jmx_port = if env.contains_key("PORT_JMX") { Some(port(env, "PORT_JMX")?) } else { None };
        let me = env.get("POD_INSTANCE").cloned().unwrap_or_default();
        let pods: Vec<PodAddress> = match env.get(PODS_ENV).filter(|s| !s.trim().is_empty()) {
            Some(s) => serde_json::from_str(s)
                .with_context(|| format!("{PODS_ENV}: expected a JSON array of placed pods, got {s:?}"))?,
            None => Vec::new(),
        };
        let mut seeds = svc::seed_hosts(&pods, &me);
        if seeds.is_empty() {
            seeds.push(host.clone());
        }
        let data_root = volume.join("cassandra");
        let mut node = CassandraNodeConfig::new(
            args.cluster_name.clone(),
            host.clone(),
            args.storage_port,
            native,
            cassandra::seed_list(&seeds, args.storage_port),
            &data_root,
        );
        node.num_tokens = args.num_tokens;
        node.dc = args.datacenter.clone();
        node.rack = rack_name(env.get("ZONE").map(String::as_str).unwrap_or(""));
        // A node that is not its own seed streams its ranges when it joins
        // (a seed, i.e. the first node of a new cluster, never does).
        node.auto_bootstrap = true;
        node.validate().map_err(|e| format_err!("{e}"))?;
        let replaces = env.get("POD_REPLACED_FROM").filter(|s| !s.trim().is_empty()).cloned();
        Ok(NodePlan {
            node,
            sandbox,
            data_root,
            jmx_port,
            replaces,
            overrides: args.overrides.iter().cloned().collect(),
        })
    }

    /// The JVM settings (config in the sandbox, data on the volume).
    pub fn jvm(&self, args: &NodeOptions, jamm: Option<PathBuf>, replace: Option<String>) -> CassandraJvm {
        let mut jvm = CassandraJvm::under(&self.sandbox, args.heap_mb);
        jvm.storage_dir = self.data_root.clone();
        jvm.jamm_jar = jamm;
        jvm.ring_delay_ms = Some(args.ring_delay_ms);
        jvm.jmx_local_port = self.jmx_port;
        jvm.replace_address_first_boot = replace;
        jvm
    }
}

/// Whether the node's disk has never held a node (no system keyspace).
fn fresh_disk(data_root: &Path) -> bool {
    !data_root.join("data").join("system").exists()
}

/// The address to replace on this launch: a fresh disk launched as a
/// replacement records it on the volume; a disk that recorded one keeps
/// passing it (Cassandra ignores it once the node has bootstrapped).
pub fn replace_address(plan: &NodePlan) -> Result<Option<String>> {
    let marker = plan.data_root.join(svc::REPLACE_MARKER);
    if let Some(old) = &plan.replaces {
        if fresh_disk(&plan.data_root) {
            std::fs::create_dir_all(&plan.data_root)
                .with_context(|| format!("creating {}", plan.data_root.display()))?;
            smack_storage::durable::write_atomic(&marker, old.as_bytes())
                .with_context(|| format!("writing {}", marker.display()))?;
        }
    }
    match std::fs::read_to_string(&marker) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        _ => Ok(None),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Prepares the node and `exec`s Cassandra; returns only on failure.
pub fn run(args: NodeOptions) -> Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let plan = NodePlan::from_env(&args, &env)?;
    let cache = artifacts::default_cache_dir();
    let status = artifacts::status(Service::Cassandra, &cache);
    if !status.complete {
        bail!(
            "the Cassandra {} jars are not in {} (found {} jars): run `smack artifacts fetch cassandra` on this \
             machine first (with SMACK_CACHE_DIR={} if the cache is elsewhere), or set CASSANDRA_HOME",
            status.version,
            status.lib_dir.display(),
            status.jars,
            cache.display()
        );
    }
    let artifact = artifacts::resolve(Service::Cassandra, &cache)?;
    let java = artifacts::java_binary()?;
    let feature = artifacts::java_feature_version(&java)?;
    artifacts::check_java(Service::Cassandra, feature)?;

    let replace = replace_address(&plan)?;
    let jvm = plan.jvm(&args, artifact.find_jar("jamm-"), replace.clone());
    let yaml = apply_config_overrides(&cassandra::cassandra_yaml(&plan.node), &plan.overrides)
        .map_err(|e| format_err!("--set: {e}"))?;
    write(&jvm.config_file, &yaml)?;
    write(&jvm.rackdc_file, &cassandra::cassandra_rackdc_properties(&plan.node.dc, &plan.node.rack))?;
    write(&jvm.logback_config, &cassandra::cassandra_logback_xml(&args.log_level))?;
    for d in jvm.dirs_to_create() {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::create_dir_all(&plan.data_root).with_context(|| format!("creating {}", plan.data_root.display()))?;
    // `exec` keeps this pid: the pid file names the JVM.
    write(&plan.sandbox.join(crate::launch::PID_FILE), &format!("{}\n", std::process::id()))?;

    let mut words = artifacts::no_memlock_prefix(artifacts::running_as_root());
    words.push(java.display().to_string());
    words.extend(artifacts::java_command_cassandra(&artifact, &jvm));
    println!(
        "smack: starting Cassandra {} node {} (dc {}, rack {}, seeds {}{})",
        artifact.version,
        plan.node.listen_address,
        plan.node.dc,
        plan.node.rack,
        plan.node.seeds.join(","),
        replace.as_deref().map(|r| format!(", replacing {r}")).unwrap_or_default()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&words[0]).args(&words[1..]).current_dir(&plan.sandbox).exec();
    Err(format_err!("cannot start {}: {err}", words[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line's defaults, with `--storage-port 42000
    /// --datacenter east` and `--set` for each of `overrides`.
    fn args(overrides: &[(&str, &str)]) -> NodeOptions {
        NodeOptions {
            cluster_name: "smack".into(),
            datacenter: "east".into(),
            storage_port: 42000,
            num_tokens: 16,
            heap_mb: 1024,
            ring_delay_ms: 5000,
            overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log_level: "INFO".into(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut e: BTreeMap<String, String> = [
            ("HOST", "127.0.9.2"),
            ("SMACK_SANDBOX", "/sb"),
            ("VOLUME_DATA", "/vol"),
            ("PORT_NATIVE", "42005"),
            ("PORT_JMX", "42006"),
            ("ZONE", "zone b"),
            ("POD_INSTANCE", "cassandra-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            e.insert(k.to_string(), v.to_string());
        }
        e
    }

    const PODS: &str = r#"[{"name":"cassandra-0","pod_type":"cassandra","index":0,"host":"127.0.9.1","zone":"zone-a","ports":{"native":42001}},
        {"name":"cassandra-1","pod_type":"cassandra","index":1,"host":"127.0.9.2","zone":"zone b","ports":{"native":42005}}]"#;

    #[test]
    fn the_env_becomes_a_node_on_its_volume_with_zone_seeds() {
        let a = args(&[("concurrent_writes", "8")]);
        let p = NodePlan::from_env(&a, &env(&[(PODS_ENV, PODS)])).unwrap();
        assert_eq!(p.node.listen_address, "127.0.9.2");
        assert_eq!(p.node.native_port, 42005);
        assert_eq!(p.node.storage_port, 42000);
        assert_eq!(p.node.seeds, vec!["127.0.9.1:42000"]);
        assert_eq!(p.node.dc, "east");
        assert_eq!(p.node.rack, "zone_b");
        assert!(p.node.auto_bootstrap);
        assert_eq!(p.node.dirs.commitlog, PathBuf::from("/vol/cassandra/commitlog"));
        assert_eq!(p.data_root, PathBuf::from("/vol/cassandra"));
        assert_eq!(p.jmx_port, Some(42006));
        assert_eq!(p.replaces, None);
        assert_eq!(p.overrides.get("concurrent_writes").map(String::as_str), Some("8"));
        let jvm = p.jvm(&a, None, Some("127.0.9.7".into()));
        assert_eq!(jvm.config_file, PathBuf::from("/sb/conf/cassandra.yaml"));
        assert_eq!(jvm.storage_dir, PathBuf::from("/vol/cassandra"));
        assert_eq!(jvm.jmx_local_port, Some(42006));
        let opts = artifacts::cassandra_jvm_options(&jvm);
        assert!(opts.contains(&"-Dcassandra.replace_address_first_boot=127.0.9.7".to_string()));
        assert!(opts.contains(&"-Dcassandra.ring_delay_ms=5000".to_string()));
        assert!(opts.contains(&"-Xmx1024m".to_string()));
    }

    #[test]
    fn a_first_node_seeds_itself_and_missing_env_is_named() {
        let p = NodePlan::from_env(&args(&[]), &env(&[])).unwrap();
        assert_eq!(p.node.seeds, vec!["127.0.9.2:42000"]);
        let mut e = env(&[]);
        e.remove("VOLUME_DATA");
        let err = NodePlan::from_env(&args(&[]), &e).unwrap_err().to_string();
        assert!(err.contains("VOLUME_DATA is not set"), "{err}");
        let err = NodePlan::from_env(&args(&[]), &env(&[("PORT_NATIVE", "x")])).unwrap_err().to_string();
        assert!(err.contains("PORT_NATIVE=\"x\""), "{err}");
        let err = NodePlan::from_env(&args(&[]), &env(&[(PODS_ENV, "{")])).unwrap_err().to_string();
        assert!(err.contains("SMACK_PODS"), "{err}");
    }

    #[test]
    fn a_replacement_remembers_the_old_address_on_its_volume() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().display().to_string();
        let e = env(&[("VOLUME_DATA", &vol), ("POD_REPLACED_FROM", "127.0.9.3")]);
        let p = NodePlan::from_env(&args(&[]), &e).unwrap();
        assert_eq!(p.replaces.as_deref(), Some("127.0.9.3"));
        assert_eq!(replace_address(&p).unwrap().as_deref(), Some("127.0.9.3"));
        // Relaunched without the env (a retry after a crash): still a replacement.
        let p2 = NodePlan::from_env(&args(&[]), &env(&[("VOLUME_DATA", &vol)])).unwrap();
        assert_eq!(replace_address(&p2).unwrap().as_deref(), Some("127.0.9.3"));
        // A disk that already holds a node is never turned into a replacement.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("cassandra/data/system")).unwrap();
        let ov = other.path().display().to_string();
        let p3 = NodePlan::from_env(&args(&[]), &env(&[("VOLUME_DATA", &ov), ("POD_REPLACED_FROM", "x")])).unwrap();
        assert_eq!(replace_address(&p3).unwrap(), None);
    }
}
