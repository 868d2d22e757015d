//! Cassandra node templates: `cassandra.yaml`, `cassandra-rackdc.properties`
//! and the logback config.
//!
//! Nodes sharing a machine each get their own loopback address (127.0.0.N)
//! and the same ports: the scylla driver dials peers at their `rpc_address`
//! with the control connection's port. The snitch is
//! `GossipingPropertyFileSnitch`, fed by the rackdc file, so dc and rack come
//! from the agent's zone and rack.
//!
//! On restart keep the whole data root (data, commitlog, hints, saved
//! caches) and never change `cluster_name`, `partitioner`, `num_tokens`, dc,
//! rack or the storage compatibility mode: the node refuses to start, or
//! worse, takes new tokens.
//!
//! See `docs/jvm-services.md` for the run that validated these templates.

use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Logged once the native (CQL) transport listens.
pub const CASSANDRA_CQL_READY_LINE: &str = "Starting listening for CQL clients";
/// Logged last at start-up, after the CQL line.
pub const CASSANDRA_READY_LINE: &str = "Startup complete";
/// The partitioner; fixed for a cluster's life.
pub const PARTITIONER: &str = "org.apache.cassandra.dht.Murmur3Partitioner";
/// The snitch the templates use.
pub const SNITCH: &str = "GossipingPropertyFileSnitch";
/// `storage_compatibility_mode`: smack only creates fresh 5.0 clusters, so
/// it runs without the 4.x compatibility limits. Never change it on a
/// running cluster.
pub const STORAGE_COMPATIBILITY_MODE: &str = "NONE";

/// A node's on-disk layout. Move all of it together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraDirs {
    pub data: Vec<PathBuf>,
    pub commitlog: PathBuf,
    pub hints: PathBuf,
    pub saved_caches: PathBuf,
    pub cdc_raw: PathBuf,
}

impl CassandraDirs {
    /// Everything under one root (a persistent volume): `root/data`,
    /// `root/commitlog`, `root/hints`, `root/saved_caches`, `root/cdc_raw`.
    pub fn under(root: &Path) -> Self {
        CassandraDirs {
            data: vec![root.join("data")],
            commitlog: root.join("commitlog"),
            hints: root.join("hints"),
            saved_caches: root.join("saved_caches"),
            cdc_raw: root.join("cdc_raw"),
        }
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.data.iter().chain([&self.commitlog, &self.hints, &self.saved_caches, &self.cdc_raw])
    }
}

/// Thread pools, memtables and caches. The default is sized for a small
/// machine (the values Cassandra's in-JVM tests use, give or take) and
/// fits a 256–512 MiB heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraTuning {
    pub concurrent_reads: u32,
    pub concurrent_writes: u32,
    pub concurrent_counter_writes: u32,
    pub concurrent_compactors: u32,
    pub memtable_flush_writers: u32,
    pub memtable_heap_mib: u32,
    pub memtable_offheap_mib: u32,
    pub key_cache_mib: u32,
    pub counter_cache_mib: u32,
    pub prepared_statements_cache_mib: u32,
    pub commitlog_segment_mib: u32,
    pub commitlog_total_mib: u32,
    pub native_transport_max_threads: u32,
}

impl Default for CassandraTuning {
    fn default() -> Self {
        CassandraTuning {
            concurrent_reads: 4,
            concurrent_writes: 4,
            concurrent_counter_writes: 4,
            concurrent_compactors: 1,
            memtable_flush_writers: 1,
            memtable_heap_mib: 64,
            memtable_offheap_mib: 64,
            key_cache_mib: 8,
            counter_cache_mib: 4,
            prepared_statements_cache_mib: 8,
            commitlog_segment_mib: 8,
            commitlog_total_mib: 64,
            native_transport_max_threads: 32,
        }
    }
}

/// Everything that differs between Cassandra nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraNodeConfig {
    /// Fixed for the cluster's life.
    pub cluster_name: String,
    /// Gossip/storage address (this node's own loopback address locally).
    pub listen_address: String,
    /// CQL address; `None` means the listen address.
    pub rpc_address: Option<String>,
    pub storage_port: u16,
    pub native_port: u16,
    /// Seed addresses, `host` or `host:storage_port`.
    pub seeds: Vec<String>,
    pub dirs: CassandraDirs,
    /// Fixed for the node's life.
    pub num_tokens: u32,
    /// Token allocation optimised for this replication factor.
    pub allocate_tokens_for_rf: u32,
    pub dc: String,
    pub rack: String,
    /// `false` for the nodes of a new cluster (and seeds); `true` for a node
    /// added to a cluster that holds data, so it streams its ranges first.
    pub auto_bootstrap: bool,
    pub tuning: CassandraTuning,
}

impl CassandraNodeConfig {
    /// A node of a new cluster with small-machine tuning, 16 tokens, and its
    /// data under `data_root`.
    pub fn new(
        cluster_name: impl Into<String>,
        listen_address: impl Into<String>,
        storage_port: u16,
        native_port: u16,
        seeds: Vec<String>,
        data_root: &Path,
    ) -> Self {
        CassandraNodeConfig {
            cluster_name: cluster_name.into(),
            listen_address: listen_address.into(),
            rpc_address: None,
            storage_port,
            native_port,
            seeds,
            dirs: CassandraDirs::under(data_root),
            num_tokens: 16,
            allocate_tokens_for_rf: 3,
            dc: "dc1".into(),
            rack: "rack1".into(),
            auto_bootstrap: false,
            tuning: CassandraTuning::default(),
        }
    }

    /// The CQL address.
    pub fn rpc_address(&self) -> &str {
        self.rpc_address.as_deref().unwrap_or(&self.listen_address)
    }

    /// Refuses a config Cassandra would refuse, saying why.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Other(format!("cassandra node {}: {why}", self.listen_address)));
        if self.cluster_name.trim().is_empty() {
            return bad("empty cluster name".into());
        }
        if self.listen_address.trim().is_empty() {
            return bad("no listen address".into());
        }
        if self.seeds.is_empty() {
            return bad("no seeds (a first node lists itself)".into());
        }
        if self.storage_port == self.native_port {
            return bad(format!("storage and native transport share port {}", self.storage_port));
        }
        if self.dirs.data.is_empty() {
            return bad("no data directory".into());
        }
        if let Some(d) = self.dirs.all().find(|d| !d.is_absolute()) {
            return bad(format!("directory {} is not absolute", d.display()));
        }
        if self.num_tokens == 0 || self.allocate_tokens_for_rf == 0 {
            return bad("num_tokens and the token allocation factor must be at least 1".into());
        }
        if !is_rackdc_name(&self.dc) || !is_rackdc_name(&self.rack) {
            return bad(format!("dc {:?} / rack {:?}: use letters, digits, '-', '_' or '.'", self.dc, self.rack));
        }
        Ok(())
    }
}

fn is_rackdc_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `host:port` seed entries for hosts sharing one storage port.
pub fn seed_list<S: AsRef<str>>(hosts: &[S], storage_port: u16) -> Vec<String> {
    hosts.iter().map(|h| format!("{}:{storage_port}", h.as_ref())).collect()
}

/// A YAML double-quoted scalar.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

/// `cassandra.yaml` for one node. Validate the config first
/// ([`CassandraNodeConfig::validate`]); this only renders it.
pub fn cassandra_yaml(c: &CassandraNodeConfig) -> String {
    let t = &c.tuning;
    let mut y = String::new();
    let _ = writeln!(y, "# Written by smack for Cassandra node {}; rewritten on every launch.", c.listen_address);
    let _ = writeln!(y, "cluster_name: {}", q(&c.cluster_name));
    let _ = writeln!(y, "num_tokens: {}", c.num_tokens);
    let _ = writeln!(y, "allocate_tokens_for_local_replication_factor: {}", c.allocate_tokens_for_rf);
    let _ = writeln!(y, "partitioner: {PARTITIONER}");
    let _ = writeln!(y, "endpoint_snitch: {SNITCH}");
    let _ = writeln!(y, "storage_compatibility_mode: {STORAGE_COMPATIBILITY_MODE}");
    let _ = writeln!(y, "auto_bootstrap: {}", c.auto_bootstrap);
    y.push_str("seed_provider:\n  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n    parameters:\n");
    let _ = writeln!(y, "      - seeds: {}", q(&c.seeds.join(",")));
    let _ = writeln!(y, "listen_address: {}", q(&c.listen_address));
    let _ = writeln!(y, "rpc_address: {}", q(c.rpc_address()));
    let _ = writeln!(y, "storage_port: {}", c.storage_port);
    let _ = writeln!(y, "native_transport_port: {}", c.native_port);
    y.push_str("start_native_transport: true\n");
    y.push_str("data_file_directories:\n");
    for d in &c.dirs.data {
        let _ = writeln!(y, "  - {}", qp(d));
    }
    let _ = writeln!(y, "commitlog_directory: {}", qp(&c.dirs.commitlog));
    let _ = writeln!(y, "hints_directory: {}", qp(&c.dirs.hints));
    let _ = writeln!(y, "saved_caches_directory: {}", qp(&c.dirs.saved_caches));
    let _ = writeln!(y, "cdc_raw_directory: {}", qp(&c.dirs.cdc_raw));
    y.push_str("commitlog_sync: periodic\ncommitlog_sync_period: 10000ms\n");
    let _ = writeln!(y, "commitlog_segment_size: {}MiB", t.commitlog_segment_mib);
    let _ = writeln!(y, "commitlog_total_space: {}MiB", t.commitlog_total_mib);
    let _ = writeln!(y, "concurrent_reads: {}", t.concurrent_reads);
    let _ = writeln!(y, "concurrent_writes: {}", t.concurrent_writes);
    let _ = writeln!(y, "concurrent_counter_writes: {}", t.concurrent_counter_writes);
    let _ = writeln!(y, "concurrent_materialized_view_writes: {}", t.concurrent_writes.min(2));
    let _ = writeln!(y, "concurrent_compactors: {}", t.concurrent_compactors);
    let _ = writeln!(y, "memtable_flush_writers: {}", t.memtable_flush_writers);
    let _ = writeln!(y, "memtable_heap_space: {}MiB", t.memtable_heap_mib);
    let _ = writeln!(y, "memtable_offheap_space: {}MiB", t.memtable_offheap_mib);
    let _ = writeln!(y, "key_cache_size: {}MiB", t.key_cache_mib);
    let _ = writeln!(y, "counter_cache_size: {}MiB", t.counter_cache_mib);
    let _ = writeln!(y, "prepared_statements_cache_size: {}MiB", t.prepared_statements_cache_mib);
    let _ = writeln!(y, "native_transport_max_threads: {}", t.native_transport_max_threads);
    y.push_str("compaction_throughput: 64MiB/s\n");
    y
}

/// `cassandra-rackdc.properties` for `GossipingPropertyFileSnitch`.
pub fn cassandra_rackdc_properties(dc: &str, rack: &str) -> String {
    format!("# Written by smack.\ndc={dc}\nrack={rack}\nprefer_local=true\n")
}

/// Logback config: everything to the console (the agent keeps stdout as
/// the task's log) at `level`; `INFO` shows the readiness lines.
pub fn cassandra_logback_xml(level: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by smack. -->
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="{level}">
    <appender-ref ref="STDOUT"/>
  </root>
  <logger name="org.apache.cassandra" level="{level}"/>
</configuration>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> CassandraNodeConfig {
        CassandraNodeConfig::new(
            "smack-probe",
            "127.0.0.2",
            17000,
            19042,
            seed_list(&["127.0.0.2"], 17000),
            Path::new("/n/data"),
        )
    }

    fn value<'a>(yaml: &'a str, key: &str) -> Option<&'a str> {
        yaml.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
    }

    #[test]
    fn single_node_as_run_by_hand() {
        let c = node();
        c.validate().unwrap();
        let y = cassandra_yaml(&c);
        assert_eq!(value(&y, "cluster_name"), Some("\"smack-probe\""));
        assert_eq!(value(&y, "listen_address"), Some("\"127.0.0.2\""));
        assert_eq!(value(&y, "rpc_address"), Some("\"127.0.0.2\""));
        assert_eq!(value(&y, "storage_port"), Some("17000"));
        assert_eq!(value(&y, "native_transport_port"), Some("19042"));
        assert_eq!(value(&y, "commitlog_sync"), Some("periodic"));
        assert_eq!(value(&y, "partitioner"), Some(PARTITIONER));
        assert_eq!(value(&y, "endpoint_snitch"), Some("GossipingPropertyFileSnitch"));
        assert_eq!(value(&y, "storage_compatibility_mode"), Some("NONE"));
        assert_eq!(value(&y, "num_tokens"), Some("16"));
        assert_eq!(value(&y, "auto_bootstrap"), Some("false"));
        assert!(y.contains("class_name: org.apache.cassandra.locator.SimpleSeedProvider"));
        assert!(y.contains("      - seeds: \"127.0.0.2:17000\""));
        assert!(y.contains("data_file_directories:\n  - \"/n/data/data\"\n"));
        assert_eq!(value(&y, "commitlog_directory"), Some("\"/n/data/commitlog\""));
        assert_eq!(value(&y, "hints_directory"), Some("\"/n/data/hints\""));
        assert_eq!(value(&y, "saved_caches_directory"), Some("\"/n/data/saved_caches\""));
        assert_eq!(value(&y, "concurrent_compactors"), Some("1"));
        assert_eq!(value(&y, "memtable_heap_space"), Some("64MiB"));
        assert_eq!(value(&y, "commitlog_segment_size"), Some("8MiB"));
    }

    #[test]
    fn three_nodes_with_separate_rpc_and_tuning() {
        let mut c = CassandraNodeConfig::new(
            "prod \"one\"",
            "127.0.1.3",
            17000,
            19042,
            seed_list(&["127.0.1.1", "127.0.1.2"], 17000),
            Path::new("/v/cass"),
        );
        c.rpc_address = Some("127.0.1.33".into());
        c.dc = "zone-a".into();
        c.rack = "r2".into();
        c.auto_bootstrap = true;
        c.num_tokens = 8;
        c.tuning.concurrent_writes = 8;
        c.validate().unwrap();
        let y = cassandra_yaml(&c);
        assert_eq!(value(&y, "cluster_name"), Some("\"prod \\\"one\\\"\""));
        assert!(y.contains("      - seeds: \"127.0.1.1:17000,127.0.1.2:17000\""));
        assert_eq!(value(&y, "rpc_address"), Some("\"127.0.1.33\""));
        assert_eq!(value(&y, "auto_bootstrap"), Some("true"));
        assert_eq!(value(&y, "num_tokens"), Some("8"));
        assert_eq!(value(&y, "concurrent_writes"), Some("8"));
        assert_eq!(value(&y, "concurrent_materialized_view_writes"), Some("2"));
    }

    #[test]
    fn validation_refuses_broken_configs() {
        let mut c = node();
        c.seeds.clear();
        assert!(c.validate().unwrap_err().to_string().contains("seeds"));
        let mut c = node();
        c.native_port = 17000;
        assert!(c.validate().is_err());
        let mut c = node();
        c.dirs.hints = "hints".into();
        assert!(c.validate().unwrap_err().to_string().contains("not absolute"));
        let mut c = node();
        c.rack = "rack 1".into();
        assert!(c.validate().is_err());
        let mut c = node();
        c.cluster_name = " ".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn rackdc_and_logback() {
        let r = cassandra_rackdc_properties("zone-a", "rack-2");
        assert!(r.contains("dc=zone-a\n"));
        assert!(r.contains("rack=rack-2\n"));
        let l = cassandra_logback_xml("INFO");
        assert!(l.contains("ch.qos.logback.core.ConsoleAppender"));
        assert!(l.contains("<root level=\"INFO\">"));
        assert!(l.contains("%date{ISO8601}"));
    }
}
