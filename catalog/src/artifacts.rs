//! The jars Kafka and Cassandra run from, and the `java` command lines that
//! start them.
//!
//! Every version smack runs is pinned here, in one place. [`resolve`] finds
//! a service's jars: a local install named by `KAFKA_HOME` /
//! `CASSANDRA_HOME` (its `libs/` or `lib/` directory) wins; otherwise smack
//! writes a throwaway pom (packaging `pom`) listing the server artifact and
//! runs Maven's `copy-dependencies` into `<cache>/<service>-<version>/lib`.
//! A finished cache directory carries a marker file written last, so an
//! interrupted download is redone and a finished one never is.
//!
//! Each service keeps its own directory: their logging, netty, guava and
//! jackson versions conflict. The classpath is `DIR/*`, passed to the JVM
//! unexpanded (the JVM expands it) — [`shell_exec`] quotes it so the task's
//! shell does not.
//!
//! The JVM option lists ([`kafka_jvm_options`], [`cassandra_jvm_options`])
//! are the ones that were started by hand on loopback and are recorded in
//! `docs/jvm-services.md`.
//!
//! [`resolve`] blocks (it may run Maven for a minute); call it from
//! `tokio::task::spawn_blocking` in async code.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Apache Kafka release (KRaft only; the 4.x line needs Java 17).
pub const KAFKA_VERSION: &str = "4.4.0";
/// The Scala binary version of the `kafka_2.13` server artifact.
pub const KAFKA_SCALA_VERSION: &str = "2.13";
/// SLF4J API that Kafka logs through; Kafka ships no backend in its pom.
pub const SLF4J_VERSION: &str = "2.0.17";
/// Log4j2 backend (api, core, slf4j2 binding) for Kafka.
pub const LOG4J2_VERSION: &str = "2.26.1";
/// Apache Cassandra release (`cassandra-all`; runs on Java 11 or 17).
pub const CASSANDRA_VERSION: &str = "5.0.8";
/// The Maven goal, with full plugin coordinates (no prefix look-up).
pub const MAVEN_COPY_DEPENDENCIES: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies";
/// How long one Maven run may take before it is killed.
pub const MAVEN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Written into a cache directory last, once its `lib/` is complete.
pub const COMPLETE_MARKER: &str = ".smack-complete";

/// What to install when `java` is missing.
pub const JAVA_INSTALL_HINT: &str =
    "install a Java 17 runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME";
/// What to install when `mvn` is missing.
pub const MAVEN_INSTALL_HINT: &str = "install Maven (Debian/Ubuntu: apt-get install maven), or set KAFKA_HOME / \
     CASSANDRA_HOME to a local install";

/// The JVM-run services of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Kafka,
    Cassandra,
}

impl Service {
    /// Lower-case name, used in cache directory names.
    pub fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Cassandra => "cassandra",
        }
    }

    /// The pinned version.
    pub fn version(self) -> &'static str {
        match self {
            Service::Kafka => KAFKA_VERSION,
            Service::Cassandra => CASSANDRA_VERSION,
        }
    }

    /// The environment variable naming a local install.
    pub fn home_var(self) -> &'static str {
        match self {
            Service::Kafka => "KAFKA_HOME",
            Service::Cassandra => "CASSANDRA_HOME",
        }
    }

    /// The file name of the server jar in a Maven-resolved `lib/`.
    pub fn main_jar(self) -> String {
        match self {
            Service::Kafka => format!("kafka_{KAFKA_SCALA_VERSION}-{KAFKA_VERSION}.jar"),
            Service::Cassandra => format!("cassandra-all-{CASSANDRA_VERSION}.jar"),
        }
    }

    /// The lowest Java feature version the service runs on.
    pub fn min_java(self) -> u32 {
        match self {
            Service::Kafka => 17,
            Service::Cassandra => 11,
        }
    }

    /// The highest Java feature version the service supports, if bounded.
    pub fn max_java(self) -> Option<u32> {
        match self {
            Service::Kafka => None,
            // Cassandra 5.0 supports 11 and 17; its start script refuses newer.
            Service::Cassandra => Some(17),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Maven dependency of the throwaway pom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub group: &'static str,
    pub artifact: String,
    pub version: &'static str,
    /// `(group, artifact)` pairs left out of its transitive dependencies.
    pub exclusions: Vec<(&'static str, &'static str)>,
}

impl Dependency {
    fn new(group: &'static str, artifact: impl Into<String>, version: &'static str) -> Self {
        Dependency { group, artifact: artifact.into(), version, exclusions: Vec::new() }
    }

    /// `group:artifact:version`.
    pub fn coordinates(&self) -> String {
        format!("{}:{}:{}", self.group, self.artifact, self.version)
    }
}

/// The dependencies of a service's pom.
///
/// Kafka's server pom brings no logging backend, so SLF4J 2 and Log4j2 are
/// added. Cassandra's `cassandra-all` brings everything it needs (logback
/// included) and resolved completely from Maven Central, so nothing is
/// excluded; if a transitive jar is ever refused, add its exclusion here
/// (e.g. netty's native epoll jars, then start with
/// `-Dcassandra.native.epoll.enabled=false`).
pub fn dependencies(service: Service) -> Vec<Dependency> {
    match service {
        Service::Kafka => vec![
            Dependency::new("org.apache.kafka", format!("kafka_{KAFKA_SCALA_VERSION}"), KAFKA_VERSION),
            Dependency::new("org.slf4j", "slf4j-api", SLF4J_VERSION),
            Dependency::new("org.apache.logging.log4j", "log4j-api", LOG4J2_VERSION),
            Dependency::new("org.apache.logging.log4j", "log4j-core", LOG4J2_VERSION),
            Dependency::new("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J2_VERSION),
        ],
        Service::Cassandra => vec![Dependency::new("org.apache.cassandra", "cassandra-all", CASSANDRA_VERSION)],
    }
}

/// The throwaway pom (packaging `pom`) whose runtime dependencies are the
/// service's jars.
pub fn pom_xml(service: Service) -> String {
    pom_xml_for(service.name(), service.version(), &dependencies(service))
}

/// A throwaway pom named `<name>-jars` listing `dependencies`.
pub fn pom_xml_for(name: &str, version: &str, dependencies: &[Dependency]) -> String {
    let mut deps = String::new();
    for d in dependencies {
        deps.push_str("    <dependency>\n");
        deps.push_str(&format!("      <groupId>{}</groupId>\n", d.group));
        deps.push_str(&format!("      <artifactId>{}</artifactId>\n", d.artifact));
        deps.push_str(&format!("      <version>{}</version>\n", d.version));
        if !d.exclusions.is_empty() {
            deps.push_str("      <exclusions>\n");
            for (g, a) in &d.exclusions {
                deps.push_str(&format!(
                    "        <exclusion><groupId>{g}</groupId><artifactId>{a}</artifactId></exclusion>\n"
                ));
            }
            deps.push_str("      </exclusions>\n");
        }
        deps.push_str("    </dependency>\n");
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by smack to fetch {name} {version} with copy-dependencies; not a build. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>smack.jars</groupId>
  <artifactId>{name}-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
</project>
"#
    )
}

/// Where a service's jars came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactSource {
    /// Resolved by Maven into smack's cache.
    Maven,
    /// A local install named by `KAFKA_HOME` / `CASSANDRA_HOME`.
    Home(PathBuf),
}

/// A service's jars, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub service: Service,
    /// The version; for a local install, read from its jar names
    /// (`unknown` when they do not say).
    pub version: String,
    /// The directory holding every jar.
    pub lib_dir: PathBuf,
    /// `LIB_DIR/*`, for `java -cp` unexpanded.
    pub classpath: String,
    pub source: ArtifactSource,
}

impl Artifact {
    fn new(service: Service, version: String, lib_dir: PathBuf, source: ArtifactSource) -> Self {
        let classpath = format!("{}/*", lib_dir.display());
        Artifact { service, version, lib_dir, classpath, source }
    }

    /// The first jar in `lib_dir` whose name starts with `prefix` and ends
    /// with `.jar` (e.g. `jamm-`).
    pub fn find_jar(&self, prefix: &str) -> Option<PathBuf> {
        let mut names: Vec<String> = fs::read_dir(&self.lib_dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".jar"))
            .collect();
        names.sort();
        names.first().map(|n| self.lib_dir.join(n))
    }
}

/// Where smack caches downloaded jars — the one rule, for `smack artifacts`,
/// `smack up`, the node launchers and the hooks alike: `$SMACK_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/smack/artifacts`, else `$HOME/.cache/smack/artifacts`.
/// Agents give tasks no `HOME`, so without any of the three the user's home
/// is looked up in `/etc/passwd`, as a login shell would
/// (`./.smack-cache/artifacts` when there is no home either).
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("SMACK_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("smack").join("artifacts");
    }
    match var("HOME").or_else(passwd_home) {
        Some(home) => home.join(".cache").join("smack").join("artifacts"),
        None => PathBuf::from(".smack-cache").join("artifacts"),
    }
}

/// This process's user's home from /etc/passwd.
fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").ok()?.uid();
    let text = fs::read_to_string("/etc/passwd").ok()?;
    passwd_home_of(&text, uid)
}

fn passwd_home_of(passwd: &str, uid: u32) -> Option<PathBuf> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid && !f[5].is_empty()).then(|| PathBuf::from(f[5]))
    })
}

/// What is on this machine for a service, without fetching anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStatus {
    pub service: Service,
    pub version: String,
    /// `maven` (smack's cache) or the `*_HOME` install.
    pub source: ArtifactSource,
    /// The directory the jars are (or would be) in.
    pub lib_dir: PathBuf,
    pub jars: usize,
    /// Whether it is ready to run: a finished cache entry, or a home with jars.
    pub complete: bool,
}

/// The state of a service's jars: the `*_HOME` install when that variable
/// is set (as [`resolve`] would use it), else the cache entry.
pub fn status(service: Service, cache_dir: &Path) -> ArtifactStatus {
    if let Some(home) = std::env::var_os(service.home_var()).filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        return match from_home(service, &home) {
            Ok(a) => ArtifactStatus {
                service,
                jars: jar_names(&a.lib_dir).len(),
                version: a.version,
                source: a.source,
                lib_dir: a.lib_dir,
                complete: true,
            },
            Err(_) => ArtifactStatus {
                service,
                version: "unknown".into(),
                lib_dir: home.join("libs"),
                source: ArtifactSource::Home(home),
                jars: 0,
                complete: false,
            },
        };
    }
    let entry = cache_entry(service, cache_dir);
    let lib = entry.join("lib");
    ArtifactStatus {
        service,
        version: service.version().into(),
        source: ArtifactSource::Maven,
        jars: jar_names(&lib).len(),
        lib_dir: lib,
        complete: is_complete(service, &entry),
    }
}

/// The directory Maven is downloading into right now for this process, if
/// any (`lib.partial-<pid>` of the cache entry), for progress reports.
pub fn partial_dir(service: Service, cache_dir: &Path) -> PathBuf {
    cache_entry(service, cache_dir).join(format!("lib.partial-{}", std::process::id()))
}

/// The number of jars in `dir` (0 when it does not exist).
pub fn jar_count(dir: &Path) -> usize {
    jar_names(dir).len()
}

/// The cache directory of a service's pinned version: `<cache>/<service>-<version>`.
pub fn cache_entry(service: Service, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{}-{}", service.name(), service.version()))
}

/// Finds (or fetches) the jars of `service`.
///
/// `KAFKA_HOME` / `CASSANDRA_HOME`, when set, win: their `libs/` (Kafka's
/// layout) or `lib/` (Cassandra's) must hold jars. Otherwise the pinned
/// version is resolved with Maven into `<cache_dir>/<service>-<version>/lib`,
/// unless that is already complete.
pub fn resolve(service: Service, cache_dir: &Path) -> Result<Artifact> {
    if let Some(home) = std::env::var_os(service.home_var()).filter(|h| !h.is_empty()) {
        return from_home(service, Path::new(&home));
    }
    resolve_cached(service, cache_dir)
}

/// The jars of a local install at `home` (`home/libs` or `home/lib`).
pub fn from_home(service: Service, home: &Path) -> Result<Artifact> {
    let var = service.home_var();
    for sub in ["libs", "lib"] {
        let dir = home.join(sub);
        let jars = jar_names(&dir);
        if !jars.is_empty() {
            let version = version_from_jars(service, &jars).unwrap_or_else(|| "unknown".to_string());
            return Ok(Artifact::new(service, version, dir, ArtifactSource::Home(home.to_path_buf())));
        }
    }
    Err(Error::Other(format!(
        "{var}={} has no jars in libs/ or lib/: point {var} at an unpacked {service} install, or unset it to \
         let smack fetch {service} {} from Maven Central",
        home.display(),
        service.version()
    )))
}

/// Resolves the pinned version into the cache, ignoring `*_HOME`.
pub fn resolve_cached(service: Service, cache_dir: &Path) -> Result<Artifact> {
    let entry = cache_entry(service, cache_dir);
    let lib = entry.join("lib");
    let artifact = Artifact::new(service, service.version().to_string(), lib.clone(), ArtifactSource::Maven);
    if is_complete(service, &entry) {
        return Ok(artifact);
    }
    fs::create_dir_all(&entry).map_err(|e| Error::io(format!("creating {}", entry.display()), e))?;

    // Another process may have finished the same entry: a `lib/` only ever
    // appears by renaming a finished download, so it is whole.
    if !lib.join(service.main_jar()).is_file() {
        find_tool("java", None, JAVA_INSTALL_HINT)?;
        let mvn = find_tool("mvn", None, MAVEN_INSTALL_HINT)?;
        let pom = entry.join("pom.xml");
        write_file(&pom, pom_xml(service).as_bytes())?;
        let partial = entry.join(format!("lib.partial-{}", std::process::id()));
        remove_dir_if_present(&partial)?;
        if let Err(e) = run_maven(&mvn, service, &pom, &partial) {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        if !partial.join(service.main_jar()).is_file() {
            let _ = fs::remove_dir_all(&partial);
            return Err(Error::Other(format!(
                "Maven finished but {} is missing from the download of {service} {}",
                service.main_jar(),
                service.version()
            )));
        }
        // A stale, incomplete lib/ (no marker, no main jar) is replaced.
        if lib.exists() && !lib.join(service.main_jar()).is_file() {
            remove_dir_if_present(&lib)?;
        }
        if let Err(e) = fs::rename(&partial, &lib) {
            let _ = fs::remove_dir_all(&partial);
            if !lib.join(service.main_jar()).is_file() {
                return Err(Error::io(format!("moving {} into place", lib.display()), e));
            }
        }
    }
    let jars = jar_names(&lib);
    let marker = format!("service={service}\nversion={}\njars={}\n", service.version(), jars.len());
    write_file(&entry.join(COMPLETE_MARKER), marker.as_bytes())?;
    Ok(artifact)
}

/// Whether `<entry>` holds a finished download (marker and main jar).
pub fn is_complete(service: Service, entry: &Path) -> bool {
    entry.join(COMPLETE_MARKER).is_file() && entry.join("lib").join(service.main_jar()).is_file()
}

/// The Maven command line that downloads a service's jars into `out_dir`.
pub fn maven_args(pom: &Path, out_dir: &Path) -> Vec<String> {
    vec![
        "-B".into(),
        "-q".into(),
        "-f".into(),
        pom.display().to_string(),
        MAVEN_COPY_DEPENDENCIES.into(),
        "-DincludeScope=runtime".into(),
        format!("-DoutputDirectory={}", out_dir.display()),
    ]
}

fn run_maven(mvn: &Path, service: Service, pom: &Path, out_dir: &Path) -> Result<()> {
    let dir = pom.parent().unwrap_or(Path::new("."));
    let log_path = dir.join("maven.log");
    let log = fs::File::create(&log_path).map_err(|e| Error::io(format!("creating {}", log_path.display()), e))?;
    let log_err = log.try_clone().map_err(|e| Error::io("duplicating the Maven log handle", e))?;
    let mut child = Command::new(mvn)
        .args(maven_args(pom, out_dir))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", mvn.display()), e))?;
    let deadline = Instant::now() + MAVEN_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| Error::io("waiting for Maven", e))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Other(format!(
                    "Maven did not finish fetching {service} {} within {} s (log: {})",
                    service.version(),
                    MAVEN_TIMEOUT.as_secs(),
                    log_path.display()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = output.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    Err(Error::Other(format!(
        "Maven could not fetch {service} {} ({}): {}\n{}\nIf Maven Central refused an artifact, pin another version \
         in catalog/src/artifacts.rs or exclude the refused jar; or set {} to a local install. Full log: {}",
        service.version(),
        dependencies(service).iter().map(Dependency::coordinates).collect::<Vec<_>>().join(", "),
        status,
        tail.join("\n"),
        service.home_var(),
        log_path.display()
    )))
}

/// Finds an executable: in `preferred` (e.g. `$JAVA_HOME/bin`) first, then
/// on `PATH`. A missing tool is an error saying what to install.
pub fn find_tool(name: &str, preferred: Option<&Path>, install_hint: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = preferred.map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| Error::Other(format!("`{name}` was not found on PATH: {install_hint}")))
}

/// The `java` to run services with: `$JAVA_HOME/bin/java`, else the first
/// `java` on `PATH`.
pub fn java_binary() -> Result<PathBuf> {
    let home_bin = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join("bin"));
    find_tool("java", home_bin.as_deref(), JAVA_INSTALL_HINT)
}

/// The feature version (`17`, `21`, `1` for 1.8 → `8`) of a `java` binary.
pub fn java_feature_version(java: &Path) -> Result<u32> {
    let out = Command::new(java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {} -version", java.display()), e))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    parse_java_version(&text)
        .ok_or_else(|| Error::Other(format!("cannot read the version of {}: {}", java.display(), text.trim())))
}

/// Reads the feature version out of `java -version` output.
pub fn parse_java_version(text: &str) -> Option<u32> {
    let quoted = text.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Refuses a Java version the service does not run on, saying what to install.
pub fn check_java(service: Service, feature_version: u32) -> Result<()> {
    let too_old = feature_version < service.min_java();
    let too_new = service.max_java().is_some_and(|max| feature_version > max);
    if too_old || too_new {
        let wanted = match service.max_java() {
            Some(max) => format!("Java {} to {max}", service.min_java()),
            None => format!("Java {} or newer", service.min_java()),
        };
        return Err(Error::Other(format!(
            "{service} {} needs {wanted}, found Java {feature_version}: {JAVA_INSTALL_HINT}",
            service.version()
        )));
    }
    Ok(())
}

/// JVM settings of a Kafka node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaJvm {
    /// `-Xms` = `-Xmx`, in MiB. 256 was enough for one broker on loopback.
    pub heap_mb: u32,
    /// `-Dkafka.logs.dir` (Kafka's own log files, not the data).
    pub logs_dir: PathBuf,
    /// The Log4j2 `.properties` file (see `kafka::kafka_log4j2_properties`).
    pub log4j2_config: PathBuf,
}

/// JVM options for Kafka: the start script's G1 settings plus a fixed heap.
pub fn kafka_jvm_options(jvm: &KafkaJvm) -> Vec<String> {
    vec![
        format!("-Xms{}m", jvm.heap_mb),
        format!("-Xmx{}m", jvm.heap_mb),
        "-XX:+UseG1GC".into(),
        "-XX:MaxGCPauseMillis=20".into(),
        "-XX:InitiatingHeapOccupancyPercent=35".into(),
        "-XX:+ExplicitGCInvokesConcurrent".into(),
        "-XX:+ExitOnOutOfMemoryError".into(),
        "-Djava.awt.headless=true".into(),
        format!("-Dkafka.logs.dir={}", jvm.logs_dir.display()),
        format!("-Dlog4j2.configurationFile={}", jvm.log4j2_config.display()),
    ]
}

/// `java` arguments (without the binary) that run a Kafka node in the
/// foreground: `kafka.Kafka SERVER_PROPERTIES`.
pub fn java_command_kafka(artifact: &Artifact, jvm: &KafkaJvm, server_properties: &Path) -> Vec<String> {
    let mut args = kafka_jvm_options(jvm);
    args.extend(["-cp".into(), artifact.classpath.clone(), "kafka.Kafka".into()]);
    args.push(server_properties.display().to_string());
    args
}

/// `java` arguments that format a Kafka node's log dirs with `cluster_id`.
///
/// With `ignore_formatted`, dirs that already hold `meta.properties` are
/// left alone and the command succeeds (exit 0); without it, formatting an
/// already formatted dir fails (exit 1). A small heap is enough.
pub fn java_command_kafka_format(
    artifact: &Artifact,
    jvm: &KafkaJvm,
    server_properties: &Path,
    cluster_id: &str,
    ignore_formatted: bool,
) -> Vec<String> {
    let mut args = vec![
        "-Xmx256m".to_string(),
        format!("-Dkafka.logs.dir={}", jvm.logs_dir.display()),
        format!("-Dlog4j2.configurationFile={}", jvm.log4j2_config.display()),
        "-cp".into(),
        artifact.classpath.clone(),
        "kafka.tools.StorageTool".into(),
        "format".into(),
        "-t".into(),
        cluster_id.into(),
        "-c".into(),
        server_properties.display().to_string(),
    ];
    if ignore_formatted {
        args.push("--ignore-formatted".into());
    }
    args
}

/// The `--add-exports` / `--add-opens` list Cassandra needs on Java 17
/// (the JPMS section of Cassandra's `conf/jvm17-server.options`, including
/// `java.nio`, which newer copies of that file add); accepted by Java 11 too.
pub const CASSANDRA_JAVA17_MODULE_FLAGS: &[&str] = &[
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
];

/// JVM settings of a Cassandra node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraJvm {
    /// `-Xms` = `-Xmx`, in MiB. 256 and 512 both started and served CQL.
    pub heap_mb: u32,
    /// The `cassandra.yaml` (passed as a `file://` URL).
    pub config_file: PathBuf,
    /// The `cassandra-rackdc.properties` read by GossipingPropertyFileSnitch.
    pub rackdc_file: PathBuf,
    /// The logback config (see `cassandra::cassandra_logback_xml`).
    pub logback_config: PathBuf,
    /// `-Dcassandra.storagedir`: the root of the node's data.
    pub storage_dir: PathBuf,
    /// `-Dcassandra.logdir`.
    pub log_dir: PathBuf,
    /// `-Djava.io.tmpdir`: JNA unpacks its native library here (not noexec).
    pub tmp_dir: PathBuf,
    /// `-javaagent:` jamm jar (recommended, not required); see [`Artifact::find_jar`].
    pub jamm_jar: Option<PathBuf>,
    /// `-Dcassandra.available_processors`; 0 leaves it unset.
    pub available_processors: u32,
    /// `-Dcassandra.ring_delay_ms` (default 30000 when unset).
    pub ring_delay_ms: Option<u32>,
    /// JMX on this local port; `None` leaves JMX off (a clash kills the node).
    pub jmx_local_port: Option<u16>,
    /// `-Dcassandra.replace_address_first_boot`: replace a dead node at this
    /// address, on an empty disk.
    pub replace_address_first_boot: Option<String>,
    /// `false` adds `-Dcassandra.native.epoll.enabled=false` (for a classpath
    /// without netty's native epoll jar).
    pub native_epoll: bool,
}

impl CassandraJvm {
    /// Settings for a node whose files all live under `node_dir`
    /// (`conf/`, `data/`, `logs/`, `tmp/`), as they were run by hand.
    pub fn under(node_dir: &Path, heap_mb: u32) -> Self {
        let conf = node_dir.join("conf");
        CassandraJvm {
            heap_mb,
            config_file: conf.join("cassandra.yaml"),
            rackdc_file: conf.join("cassandra-rackdc.properties"),
            logback_config: conf.join("logback.xml"),
            storage_dir: node_dir.join("data"),
            log_dir: node_dir.join("logs"),
            tmp_dir: node_dir.join("tmp"),
            jamm_jar: None,
            available_processors: 2,
            ring_delay_ms: None,
            jmx_local_port: None,
            replace_address_first_boot: None,
            native_epoll: true,
        }
    }
}

impl CassandraJvm {
    /// Directories to create before launch: `java.io.tmpdir` (JNA unpacks
    /// its native library there; it must not be `noexec`) and the log dir.
    /// Cassandra creates its data directories itself.
    pub fn dirs_to_create(&self) -> Vec<PathBuf> {
        vec![self.tmp_dir.clone(), self.log_dir.clone()]
    }
}

/// A `file://` URL for an absolute path (Cassandra wants URLs for its
/// config files).
pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// JVM options for Cassandra 5.0 on Java 17: Cassandra's own server options
/// (G1, assertions, thread priorities, 256k stacks), minus the ones that
/// hurt small heaps (`AlwaysPreTouch`, `G1HeapRegionSize=16m`), plus the
/// module flags, the netty properties and the node's files.
pub fn cassandra_jvm_options(jvm: &CassandraJvm) -> Vec<String> {
    let mut o: Vec<String> = vec![
        format!("-Xms{}m", jvm.heap_mb),
        format!("-Xmx{}m", jvm.heap_mb),
        "-Xss256k".into(),
        "-ea".into(),
        "-da:net.openhft...".into(),
        "-XX:+UseThreadPriorities".into(),
        "-XX:+UseG1GC".into(),
        "-XX:+ParallelRefProcEnabled".into(),
        "-XX:MaxTenuringThreshold=1".into(),
        "-XX:G1RSetUpdatingPauseTimePercent=5".into(),
        "-XX:MaxGCPauseMillis=300".into(),
        "-XX:InitiatingHeapOccupancyPercent=70".into(),
        "-XX:+ExitOnOutOfMemoryError".into(),
        "-XX:+PerfDisableSharedMem".into(),
        "-XX:+UseTLAB".into(),
        "-XX:+ResizeTLAB".into(),
        "-Djava.net.preferIPv4Stack=true".into(),
        "-Djava.awt.headless=true".into(),
        "-Djdk.attach.allowAttachSelf=true".into(),
    ];
    o.extend(CASSANDRA_JAVA17_MODULE_FLAGS.iter().map(|s| s.to_string()));
    o.extend([
        "-Dio.netty.tryReflectionSetAccessible=true".to_string(),
        "-Dio.netty.allocator.useCacheForAllThreads=true".to_string(),
        "-Dio.netty.allocator.maxOrder=11".to_string(),
    ]);
    if let Some(jamm) = &jvm.jamm_jar {
        o.push(format!("-javaagent:{}", jamm.display()));
    }
    o.extend([
        format!("-Djava.io.tmpdir={}", jvm.tmp_dir.display()),
        format!("-Dcassandra.config={}", file_url(&jvm.config_file)),
        format!("-Dcassandra-rackdc.properties={}", file_url(&jvm.rackdc_file)),
        format!("-Dcassandra.storagedir={}", jvm.storage_dir.display()),
        format!("-Dcassandra.logdir={}", jvm.log_dir.display()),
        "-Dcassandra-foreground=yes".to_string(),
        format!("-Dlogback.configurationFile={}", jvm.logback_config.display()),
        "-Dcassandra.skip_wait_for_gossip_to_settle=0".to_string(),
    ]);
    if jvm.available_processors > 0 {
        o.push(format!("-Dcassandra.available_processors={}", jvm.available_processors));
    }
    if let Some(ms) = jvm.ring_delay_ms {
        o.push(format!("-Dcassandra.ring_delay_ms={ms}"));
    }
    if let Some(port) = jvm.jmx_local_port {
        o.push(format!("-Dcassandra.jmx.local.port={port}"));
    }
    if let Some(addr) = &jvm.replace_address_first_boot {
        o.push(format!("-Dcassandra.replace_address_first_boot={addr}"));
    }
    if !jvm.native_epoll {
        o.push("-Dcassandra.native.epoll.enabled=false".into());
    }
    o
}

/// The Cassandra daemon's main class.
pub const CASSANDRA_MAIN_CLASS: &str = "org.apache.cassandra.service.CassandraDaemon";

/// `java` arguments (without the binary) that run a Cassandra node in the
/// foreground.
pub fn java_command_cassandra(artifact: &Artifact, jvm: &CassandraJvm) -> Vec<String> {
    let mut args = cassandra_jvm_options(jvm);
    args.extend(["-cp".into(), artifact.classpath.clone(), CASSANDRA_MAIN_CLASS.into()]);
    args
}

/// A prefix that keeps a process run as root from locking its memory.
///
/// Cassandra calls `mlockall(MCL_CURRENT)` at start, unconditionally. Run
/// as root (`CAP_IPC_LOCK`) it succeeds and the whole committed heap stays
/// resident: one node with a 512 MiB heap measured 948 MB RSS, against
/// 470 MB without the lock. Dropping the capability makes the call fail
/// against `RLIMIT_MEMLOCK` (Cassandra logs a warning and runs on). Only
/// root may drop it, so for anyone else this is empty.
pub fn no_memlock_prefix(running_as_root: bool) -> Vec<String> {
    if running_as_root {
        vec!["setpriv".into(), "--inh-caps=-ipc_lock".into(), "--bounding-set=-ipc_lock".into()]
    } else {
        Vec::new()
    }
}

/// Whether this process runs with effective uid 0 (read from
/// `/proc/self/status`; `false` where that cannot be read).
pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?.to_string();
            uids.split_whitespace().nth(1).map(|e| e == "0")
        })
        .unwrap_or(false)
}

/// Quotes one word for `/bin/sh` (single quotes; `*` stays literal).
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A `/bin/sh -c` command that `exec`s `program` with `args`, every word
/// quoted (the agent runs task commands through the shell; `exec` keeps the
/// JVM as the process-group leader).
pub fn shell_exec<S: AsRef<str>>(program: &Path, args: &[S]) -> String {
    let mut cmd = format!("exec {}", shell_quote(&program.display().to_string()));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a.as_ref()));
    }
    cmd
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn jar_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| Path::new(n).extension() == Some(OsStr::new("jar")))
        .filter_map(|n| n.into_string().ok())
        .collect();
    names.sort();
    names
}

/// The version in a local install's jar names: `kafka_2.13-X.jar` (Kafka's
/// `libs/`), `apache-cassandra-X.jar` (Cassandra's tarball) or
/// `cassandra-all-X.jar`.
pub fn version_from_jars(service: Service, names: &[String]) -> Option<String> {
    let prefixes: &[&str] = match service {
        Service::Kafka => &["kafka_2.13-", "kafka_2.12-"],
        Service::Cassandra => &["apache-cassandra-", "cassandra-all-"],
    };
    names.iter().find_map(|n| {
        let stem = n.strip_suffix(".jar")?;
        let v = prefixes.iter().find_map(|p| stem.strip_prefix(p))?;
        let starts_with_digit = v.chars().next().is_some_and(|c| c.is_ascii_digit());
        let is_extra = ["-test", "-sources", "-javadoc", "-scaladoc"].iter().any(|s| v.ends_with(s));
        (starts_with_digit && !is_extra).then(|| v.to_string())
    })
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// Writes `path` whole: a temporary file, fsync, rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let ctx = || format!("writing {}", path.display());
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
    f.write_all(bytes).map_err(|e| Error::io(ctx(), e))?;
    f.sync_all().map_err(|e| Error::io(ctx(), e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(ctx(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_pom_lists_server_and_logging_backend() {
        let pom = pom_xml(Service::Kafka);
        assert!(pom.contains("<packaging>pom</packaging>"));
        assert!(pom.contains("<groupId>org.apache.kafka</groupId>"));
        assert!(pom.contains("<artifactId>kafka_2.13</artifactId>"));
        assert!(pom.contains(&format!("<version>{KAFKA_VERSION}</version>")));
        for a in ["slf4j-api", "log4j-api", "log4j-core", "log4j-slf4j2-impl"] {
            assert!(pom.contains(&format!("<artifactId>{a}</artifactId>")), "{a} missing");
        }
        assert!(pom.contains(&format!("<version>{LOG4J2_VERSION}</version>")));
    }

    #[test]
    fn cassandra_pom_lists_cassandra_all() {
        let pom = pom_xml(Service::Cassandra);
        assert!(pom.contains("<groupId>org.apache.cassandra</groupId>"));
        assert!(pom.contains("<artifactId>cassandra-all</artifactId>"));
        assert!(pom.contains(&format!("<version>{CASSANDRA_VERSION}</version>")));
        assert!(!pom.contains("kafka"));
    }

    #[test]
    fn exclusions_render_inside_their_dependency() {
        let mut d = dependencies(Service::Cassandra);
        d[0].exclusions.push(("io.netty", "netty-transport-native-epoll"));
        let xml = pom_xml_for("cassandra", CASSANDRA_VERSION, &d);
        let dep = xml.split("<dependency>").nth(1).unwrap();
        assert!(dep.contains(
            "<exclusion><groupId>io.netty</groupId><artifactId>netty-transport-native-epoll</artifactId></exclusion>"
        ));
        assert!(xml.contains("<artifactId>cassandra-jars</artifactId>"));
        assert_eq!(d[0].coordinates(), format!("org.apache.cassandra:cassandra-all:{CASSANDRA_VERSION}"));
    }

    #[test]
    fn maven_args_use_full_plugin_coordinates() {
        let args = maven_args(Path::new("/c/pom.xml"), Path::new("/c/lib"));
        assert!(args.contains(&"-B".to_string()));
        assert!(args.contains(&MAVEN_COPY_DEPENDENCIES.to_string()));
        assert!(args.contains(&"-DincludeScope=runtime".to_string()));
        assert!(args.contains(&"-DoutputDirectory=/c/lib".to_string()));
        assert!(args.windows(2).any(|w| w == ["-f", "/c/pom.xml"]));
    }

    #[test]
    fn cache_entry_and_classpath() {
        let entry = cache_entry(Service::Kafka, Path::new("/cache"));
        assert_eq!(entry, PathBuf::from(format!("/cache/kafka-{KAFKA_VERSION}")));
        let a = Artifact::new(Service::Kafka, KAFKA_VERSION.into(), entry.join("lib"), ArtifactSource::Maven);
        assert_eq!(a.classpath, format!("/cache/kafka-{KAFKA_VERSION}/lib/*"));
    }

    #[test]
    fn complete_cache_is_reused_without_maven() {
        let dir = tempfile::tempdir().unwrap();
        let entry = cache_entry(Service::Cassandra, dir.path());
        fs::create_dir_all(entry.join("lib")).unwrap();
        fs::write(entry.join("lib").join(Service::Cassandra.main_jar()), b"").unwrap();
        fs::write(entry.join("lib").join("jamm-0.4.0.jar"), b"").unwrap();
        assert!(!is_complete(Service::Cassandra, &entry), "no marker yet");
        fs::write(entry.join(COMPLETE_MARKER), b"done").unwrap();
        assert!(is_complete(Service::Cassandra, &entry));
        let a = resolve_cached(Service::Cassandra, dir.path()).unwrap();
        assert_eq!(a.lib_dir, entry.join("lib"));
        assert_eq!(a.version, CASSANDRA_VERSION);
        assert_eq!(a.find_jar("jamm-"), Some(entry.join("lib").join("jamm-0.4.0.jar")));
    }

    #[test]
    fn a_finished_lib_without_marker_gets_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let entry = cache_entry(Service::Kafka, dir.path());
        fs::create_dir_all(entry.join("lib")).unwrap();
        fs::write(entry.join("lib").join(Service::Kafka.main_jar()), b"").unwrap();
        resolve_cached(Service::Kafka, dir.path()).unwrap();
        let marker = fs::read_to_string(entry.join(COMPLETE_MARKER)).unwrap();
        assert!(marker.contains(&format!("version={KAFKA_VERSION}")));
        assert!(marker.contains("jars=1"));
    }

    #[test]
    fn home_install_uses_libs_and_reads_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("libs")).unwrap();
        fs::write(dir.path().join("libs/kafka_2.13-4.1.0-test.jar"), b"").unwrap();
        fs::write(dir.path().join("libs/kafka_2.13-4.1.0.jar"), b"").unwrap();
        let a = from_home(Service::Kafka, dir.path()).unwrap();
        assert_eq!(a.version, "4.1.0");
        assert_eq!(a.classpath, format!("{}/libs/*", dir.path().display()));
        assert_eq!(a.source, ArtifactSource::Home(dir.path().to_path_buf()));

        let empty = tempfile::tempdir().unwrap();
        let err = from_home(Service::Cassandra, empty.path()).unwrap_err().to_string();
        assert!(err.contains("CASSANDRA_HOME"), "{err}");
    }

    #[test]
    fn cassandra_version_from_tarball_jar() {
        let names = vec!["apache-cassandra-5.0.4.jar".to_string(), "jamm-0.4.0.jar".to_string()];
        assert_eq!(version_from_jars(Service::Cassandra, &names).as_deref(), Some("5.0.4"));
        assert_eq!(version_from_jars(Service::Kafka, &names), None);
    }

    #[test]
    fn missing_tool_says_what_to_install() {
        let err = find_tool("smack-no-such-tool", None, MAVEN_INSTALL_HINT).unwrap_err().to_string();
        assert!(err.contains("smack-no-such-tool"), "{err}");
        assert!(err.contains("apt-get install maven"), "{err}");
        assert!(JAVA_INSTALL_HINT.contains("apt-get install openjdk-17-jre-headless"));
    }

    #[test]
    fn java_versions_parse_and_check() {
        let j17 = "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment";
        assert_eq!(parse_java_version(j17), Some(17));
        assert_eq!(parse_java_version("java version \"1.8.0_392\""), Some(8));
        assert_eq!(parse_java_version("openjdk version \"21\" 2023-09-19"), Some(21));
        assert_eq!(parse_java_version("nonsense"), None);
        assert!(check_java(Service::Kafka, 17).is_ok());
        assert!(check_java(Service::Kafka, 21).is_ok());
        assert!(check_java(Service::Kafka, 11).is_err());
        assert!(check_java(Service::Cassandra, 11).is_ok());
        assert!(check_java(Service::Cassandra, 17).is_ok());
        let err = check_java(Service::Cassandra, 21).unwrap_err().to_string();
        assert!(err.contains("Java 11 to 17"), "{err}");
    }

    fn artifact(service: Service) -> Artifact {
        Artifact::new(service, service.version().into(), PathBuf::from("/j/lib"), ArtifactSource::Maven)
    }

    #[test]
    fn kafka_command_has_heap_gc_and_main_class() {
        let jvm = KafkaJvm {
            heap_mb: 256,
            logs_dir: PathBuf::from("/n/logs"),
            log4j2_config: PathBuf::from("/n/conf/log4j2.properties"),
        };
        let args = java_command_kafka(&artifact(Service::Kafka), &jvm, Path::new("/n/conf/server.properties"));
        for flag in ["-Xms256m", "-Xmx256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"] {
            assert!(args.contains(&flag.to_string()), "{flag} missing");
        }
        assert!(args.contains(&"-Dlog4j2.configurationFile=/n/conf/log4j2.properties".to_string()));
        assert!(args.contains(&"-Dkafka.logs.dir=/n/logs".to_string()));
        let n = args.len();
        assert_eq!(args[n - 4..], ["-cp", "/j/lib/*", "kafka.Kafka", "/n/conf/server.properties"]);
    }

    #[test]
    fn kafka_format_command() {
        let jvm = KafkaJvm { heap_mb: 256, logs_dir: "/l".into(), log4j2_config: "/c".into() };
        let args = java_command_kafka_format(&artifact(Service::Kafka), &jvm, Path::new("/s.properties"), "ID", true);
        let tail: Vec<&str> = args.iter().map(String::as_str).skip_while(|a| *a != "kafka.tools.StorageTool").collect();
        assert_eq!(
            tail,
            ["kafka.tools.StorageTool", "format", "-t", "ID", "-c", "/s.properties", "--ignore-formatted"]
        );
        let strict = java_command_kafka_format(&artifact(Service::Kafka), &jvm, Path::new("/s"), "ID", false);
        assert!(!strict.contains(&"--ignore-formatted".to_string()));
    }

    #[test]
    fn cassandra_options_have_module_flags_heap_and_files() {
        let mut jvm = CassandraJvm::under(Path::new("/n"), 512);
        jvm.jamm_jar = Some(PathBuf::from("/j/lib/jamm-0.4.0.jar"));
        jvm.ring_delay_ms = Some(1000);
        let o = cassandra_jvm_options(&jvm);
        for flag in [
            "-Xms512m",
            "-Xmx512m",
            "-Xss256k",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djdk.attach.allowAttachSelf=true",
            "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/java.util=ALL-UNNAMED",
            "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-javaagent:/j/lib/jamm-0.4.0.jar",
            "-Dcassandra.config=file:///n/conf/cassandra.yaml",
            "-Dcassandra-rackdc.properties=file:///n/conf/cassandra-rackdc.properties",
            "-Dcassandra.storagedir=/n/data",
            "-Dcassandra-foreground=yes",
            "-Dlogback.configurationFile=/n/conf/logback.xml",
            "-Djava.io.tmpdir=/n/tmp",
            "-Dcassandra.available_processors=2",
            "-Dcassandra.ring_delay_ms=1000",
        ] {
            assert!(o.contains(&flag.to_string()), "{flag} missing from {o:?}");
        }
        assert!(!o.iter().any(|f| f.contains("AlwaysPreTouch") || f.contains("G1HeapRegionSize")));
        assert!(!o.iter().any(|f| f.contains("cassandra.jmx")), "JMX stays off unless asked");
        jvm.jmx_local_port = Some(17199);
        jvm.native_epoll = false;
        jvm.replace_address_first_boot = Some("127.0.0.3".into());
        let o = cassandra_jvm_options(&jvm);
        assert!(o.contains(&"-Dcassandra.jmx.local.port=17199".to_string()));
        assert!(o.contains(&"-Dcassandra.native.epoll.enabled=false".to_string()));
        assert!(o.contains(&"-Dcassandra.replace_address_first_boot=127.0.0.3".to_string()));
        assert_eq!(jvm.dirs_to_create(), [PathBuf::from("/n/tmp"), PathBuf::from("/n/logs")]);
        let cmd = java_command_cassandra(&artifact(Service::Cassandra), &jvm);
        assert_eq!(cmd[cmd.len() - 3..], ["-cp", "/j/lib/*", CASSANDRA_MAIN_CLASS]);
    }

    #[test]
    fn shell_exec_keeps_the_classpath_star_literal() {
        let cmd = shell_exec(Path::new("/usr/bin/java"), &["-cp", "/j/lib/*", "it's"]);
        assert_eq!(cmd, r"exec /usr/bin/java -cp '/j/lib/*' 'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("-Dkafka.logs.dir=/a/b"), "-Dkafka.logs.dir=/a/b");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn status_reports_cache_entries_without_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let st = status(Service::Cassandra, dir.path());
        if std::env::var_os("CASSANDRA_HOME").is_none() {
            assert!(!st.complete);
            assert_eq!(st.jars, 0);
            assert_eq!(st.source, ArtifactSource::Maven);
            let entry = cache_entry(Service::Cassandra, dir.path());
            fs::create_dir_all(entry.join("lib")).unwrap();
            fs::write(entry.join("lib").join(Service::Cassandra.main_jar()), b"").unwrap();
            fs::write(entry.join(COMPLETE_MARKER), b"done").unwrap();
            let st = status(Service::Cassandra, dir.path());
            assert!(st.complete);
            assert_eq!(st.jars, 1);
            assert_eq!(st.lib_dir, entry.join("lib"));
        }
        assert!(partial_dir(Service::Kafka, dir.path()).ends_with(format!("lib.partial-{}", std::process::id())));
        assert!(default_cache_dir().is_absolute() || std::env::var_os("HOME").is_none());
    }

    #[test]
    fn the_home_of_a_uid_from_passwd() {
        let p = "root:x:0:0:root:/root:/bin/bash\n# c\nbad\nkafka:x:1001:1001::/home/kafka:/bin/sh\n";
        assert_eq!(passwd_home_of(p, 0), Some(PathBuf::from("/root")));
        assert_eq!(passwd_home_of(p, 1001), Some(PathBuf::from("/home/kafka")));
        assert_eq!(passwd_home_of(p, 7), None);
    }

    #[test]
    fn no_memlock_prefix_only_for_root() {
        assert!(no_memlock_prefix(false).is_empty());
        assert_eq!(no_memlock_prefix(true)[0], "setpriv");
    }
}
