//! From a node config to the command of an agent task.
//!
//! An agent runs a task as `/bin/sh -c COMMAND` in a fresh sandbox, with
//! `SMACK_SANDBOX` and `VOLUME_<NAME>` (one per mounted volume) in its env.
//! The scheduler does not know those paths when it launches (the sandbox is
//! new on every run, and a volume created in the same accept has no path
//! yet), so node configs are rendered with *task paths*: [`in_sandbox`] and
//! [`in_volume`] give absolute-looking paths rooted at `/${SMACK_SANDBOX}`
//! or `/${VOLUME_<NAME>}` (so the templates' "absolute" checks hold), and
//! the script written here lets the task's shell expand them. Everything
//! else in a config or a command line is quoted so the shell leaves it
//! alone (the classpath star included).
//!
//! The scripts write their config files into the sandbox (rewritten on
//! every launch), keep data on the volume, record the shell's pid in
//! `SANDBOX/pid` and then `exec` the JVM, so the JVM keeps that pid and
//! leads the task's process group.
//!
//! Kafka: storage is formatted only when a log dir has no `meta.properties`;
//! a dir formatted for another cluster or node stops the task before the
//! broker starts (as [`kafka::check_meta`] does in Rust).

use crate::artifacts::{self, Artifact, CassandraJvm, KafkaJvm};
use crate::cassandra::config as cassandra;
use crate::kafka::config as kafka;
use crate::{Error, Result};
use smack_operator::resources::{Check, CheckSpec};
use std::path::{Path, PathBuf};

/// The env var the agent sets to the task's sandbox.
pub const SANDBOX_VAR: &str = "SMACK_SANDBOX";
/// The file in the sandbox holding the pid of the task's JVM.
pub const PID_FILE: &str = "pid";
/// Printed by a Kafka task's script before it formats storage.
pub const KAFKA_FORMAT_LINE: &str = "smack: formatting Kafka storage";

/// The env var under which the agent exposes the volume mounted at
/// `container_path` (`data` → `VOLUME_DATA`).
pub fn volume_var(container_path: &str) -> String {
    let name: String =
        container_path.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("VOLUME_{name}")
}

/// The root of the task's sandbox, as a task path.
pub fn sandbox_root() -> PathBuf {
    PathBuf::from(format!("/${{{SANDBOX_VAR}}}"))
}

/// `rel` under the task's sandbox, as a task path.
pub fn in_sandbox(rel: &str) -> PathBuf {
    sandbox_root().join(rel)
}

/// The root of the volume mounted at `container_path`, as a task path.
pub fn volume_root(container_path: &str) -> PathBuf {
    PathBuf::from(format!("/${{{}}}", volume_var(container_path)))
}

/// `rel` under the volume mounted at `container_path`, as a task path.
pub fn in_volume(container_path: &str, rel: &str) -> PathBuf {
    volume_root(container_path).join(rel)
}

/// Whether `name` is a variable a task path may name.
fn is_task_var(name: &str) -> bool {
    name == SANDBOX_VAR
        || name.strip_prefix("VOLUME_").is_some_and(|n| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Splits `text` into literal runs and task-path roots (`/${VAR}` → `VAR`).
fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'/' && text[i..].starts_with("/${") {
            if let Some(end) = text[i + 3..].find('}') {
                let name = &text[i + 3..i + 3 + end];
                if is_task_var(name) {
                    if lit_start < i {
                        out.push(Segment::Lit(&text[lit_start..i]));
                    }
                    out.push(Segment::Var(name));
                    i += 3 + end + 1;
                    lit_start = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    if lit_start < text.len() {
        out.push(Segment::Lit(&text[lit_start..]));
    }
    out
}

enum Segment<'a> {
    Lit(&'a str),
    Var(&'a str),
}

/// The task variables named by `text`'s task paths.
fn vars_in(text: &str) -> Vec<String> {
    segments(text)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Var(v) => Some(v.to_string()),
            Segment::Lit(_) => None,
        })
        .collect()
}

/// One shell word: single-quoted when it holds no task path, else
/// double-quoted with everything but the task paths escaped.
pub fn shell_word(word: &str) -> String {
    let segs = segments(word);
    if !segs.iter().any(|s| matches!(s, Segment::Var(_))) {
        return artifacts::shell_quote(word);
    }
    let mut out = String::from("\"");
    for s in segs {
        match s {
            Segment::Var(v) => out.push_str(&format!("${{{v}}}")),
            Segment::Lit(l) => {
                for c in l.chars() {
                    if matches!(c, '"' | '\\' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out.push('"');
    out
}

/// The body of an unquoted here-document: task paths expand, nothing else.
fn heredoc_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for s in segments(text) {
        match s {
            Segment::Var(v) => out.push_str(&format!("${{{v}}}")),
            Segment::Lit(l) => {
                for c in l.chars() {
                    if matches!(c, '\\' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A `/bin/sh` script for an agent task, built line by line.
#[derive(Debug, Clone, Default)]
pub struct TaskScript {
    lines: Vec<String>,
    vars: Vec<String>,
}

impl TaskScript {
    pub fn new() -> Self {
        TaskScript::default()
    }

    fn note_vars(&mut self, text: &str) {
        for v in vars_in(text) {
            if !self.vars.contains(&v) {
                self.vars.push(v);
            }
        }
    }

    /// A raw line (no quoting: the caller quotes).
    pub fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.lines.push(line.into());
        self
    }

    /// `mkdir -p` of `dirs`.
    pub fn mkdirs<P: AsRef<Path>>(&mut self, dirs: &[P]) -> &mut Self {
        if dirs.is_empty() {
            return self;
        }
        let mut l = "mkdir -p".to_string();
        for d in dirs {
            let d = d.as_ref().display().to_string();
            self.note_vars(&d);
            l.push(' ');
            l.push_str(&shell_word(&d));
        }
        self.line(l)
    }

    /// Writes `contents` to `path` (task paths in the contents expand).
    pub fn write_file(&mut self, path: &Path, contents: &str) -> &mut Self {
        let p = path.display().to_string();
        self.note_vars(&p);
        self.note_vars(contents);
        let body = heredoc_body(contents);
        let mut delim = "SMACK_EOF".to_string();
        while body.lines().any(|l| l == delim) {
            delim.push('_');
        }
        self.line(format!("cat > {} <<{delim}\n{body}{delim}", shell_word(&p)))
    }

    /// Records the shell's pid (which `exec` hands to the program) in `path`.
    pub fn write_pid(&mut self, path: &Path) -> &mut Self {
        let p = path.display().to_string();
        self.note_vars(&p);
        self.line(format!("echo $$ > {}", shell_word(&p)))
    }

    /// `program args…` as a command (not the last one).
    pub fn run<S: AsRef<str>>(&mut self, program: &str, args: &[S]) -> &mut Self {
        let l = self.command_words(program, args);
        self.line(l)
    }

    /// `exec program args…`: the last line.
    pub fn exec<S: AsRef<str>>(&mut self, program: &str, args: &[S]) -> &mut Self {
        let l = format!("exec {}", self.command_words(program, args));
        self.line(l)
    }

    fn command_words<S: AsRef<str>>(&mut self, program: &str, args: &[S]) -> String {
        let mut l = shell_word(program);
        self.note_vars(program);
        for a in args {
            self.note_vars(a.as_ref());
            l.push(' ');
            l.push_str(&shell_word(a.as_ref()));
        }
        l
    }

    /// The script: `set -eu`, a check that every task variable it uses is
    /// set (a missing volume stops the task with the reason), then the lines.
    pub fn render(&self) -> String {
        let mut out = String::from("set -eu\n");
        for v in &self.vars {
            out.push_str(&format!(": \"${{{v}:?{v} is not set: the task lacks its sandbox or volume}}\"\n"));
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Everything a Kafka node task needs.
#[derive(Debug, Clone)]
pub struct KafkaLaunch {
    pub artifact: Artifact,
    /// The `java` to run (an absolute path, or a name on the task's PATH).
    pub java: PathBuf,
    /// The node; its log dirs are task paths on its volume ([`in_volume`]).
    pub node: kafka::KafkaNodeConfig,
    /// The cluster id, generated once per cluster and kept by the framework.
    pub cluster_id: String,
    pub heap_mb: u32,
    /// Log4j2 level (`INFO` shows the readiness line).
    pub log_level: String,
}

impl KafkaLaunch {
    pub fn new(
        artifact: Artifact,
        java: PathBuf,
        node: kafka::KafkaNodeConfig,
        cluster_id: impl Into<String>,
        heap_mb: u32,
    ) -> Self {
        KafkaLaunch { artifact, java, node, cluster_id: cluster_id.into(), heap_mb, log_level: "INFO".into() }
    }
}

/// The task command of a Kafka node: write `server.properties` and the
/// Log4j2 config into the sandbox, refuse log dirs formatted for another
/// cluster or node, format the ones without `meta.properties` (never a
/// formatted one), record the pid, and `exec` the broker.
pub fn kafka_task_command(l: &KafkaLaunch) -> Result<String> {
    l.node.validate()?;
    if !kafka::is_valid_cluster_id(&l.cluster_id) {
        return Err(Error::Other(format!(
            "{:?} is not a Kafka cluster id (22 URL-safe base64 characters)",
            l.cluster_id
        )));
    }
    let conf = in_sandbox("conf");
    let props = conf.join("server.properties");
    let log4j = conf.join("log4j2.properties");
    let jvm = KafkaJvm { heap_mb: l.heap_mb, logs_dir: in_sandbox("logs"), log4j2_config: log4j.clone() };
    let java = l.java.display().to_string();
    let dirs: Vec<PathBuf> = l.node.log_dirs.iter().chain(&l.node.metadata_log_dir).cloned().collect();

    let mut s = TaskScript::new();
    let mut mk = vec![conf.clone(), jvm.logs_dir.clone()];
    mk.extend(dirs.iter().cloned());
    s.mkdirs(&mk);
    s.write_file(&props, &kafka::kafka_server_properties(&l.node));
    s.write_file(&log4j, &kafka::kafka_log4j2_properties(&l.log_level));
    s.line("unformatted=0");
    let want_cluster = format!("cluster.id={}", l.cluster_id);
    let want_node = format!("node.id={}", l.node.node_id);
    for d in &dirs {
        let meta = shell_word(&d.join("meta.properties").display().to_string());
        s.note_vars(&d.display().to_string());
        s.line(format!(
            "if [ -f {meta} ]; then\n  if ! grep -qxF {c} {meta} || ! grep -qxF {n} {meta}; then\n    \
             echo \"smack: \"{meta}\" belongs to another Kafka cluster or node (want {wc}, {wn}); refusing to start\" >&2\n    \
             exit 78\n  fi\nelse\n  unformatted=1\nfi",
            c = artifacts::shell_quote(&want_cluster),
            n = artifacts::shell_quote(&want_node),
            wc = want_cluster,
            wn = want_node,
        ));
    }
    s.line("if [ \"$unformatted\" = 1 ]; then");
    s.line(format!("  echo '{KAFKA_FORMAT_LINE}'"));
    let format = artifacts::java_command_kafka_format(&l.artifact, &jvm, &props, &l.cluster_id, true);
    let words = s.command_words(&java, &format);
    s.line(format!("  {words}"));
    s.line("fi");
    s.write_pid(&in_sandbox(PID_FILE));
    s.exec(&java, &artifacts::java_command_kafka(&l.artifact, &jvm, &props));
    Ok(s.render())
}

/// Everything a Cassandra node task needs.
#[derive(Debug, Clone)]
pub struct CassandraLaunch {
    pub artifact: Artifact,
    pub java: PathBuf,
    /// The node; its directories are task paths on its volume.
    pub node: cassandra::CassandraNodeConfig,
    /// JVM settings; see [`cassandra_task_jvm`].
    pub jvm: CassandraJvm,
    /// Whether the agent runs tasks as root: then the JVM is started
    /// without `CAP_IPC_LOCK` (see [`artifacts::no_memlock_prefix`]).
    pub as_root: bool,
    /// Logback level (`INFO` shows the readiness lines).
    pub log_level: String,
}

/// JVM settings of a Cassandra task: config, logs and `java.io.tmpdir` in
/// the sandbox, `cassandra.storagedir` at `storage_dir` (on the volume),
/// jamm from the artifact.
pub fn cassandra_task_jvm(artifact: &Artifact, heap_mb: u32, storage_dir: PathBuf) -> CassandraJvm {
    let mut jvm = CassandraJvm::under(&sandbox_root(), heap_mb);
    jvm.storage_dir = storage_dir;
    jvm.jamm_jar = artifact.find_jar("jamm-");
    jvm
}

/// The task command of a Cassandra node: write `cassandra.yaml`, the rackdc
/// properties and the logback config into the sandbox, create its dirs,
/// record the pid, and `exec` the daemon (without memory locking as root).
pub fn cassandra_task_command(l: &CassandraLaunch) -> Result<String> {
    l.node.validate()?;
    let java = l.java.display().to_string();
    let mut s = TaskScript::new();
    let mut mk: Vec<PathBuf> =
        vec![l.jvm.config_file.parent().map(Path::to_path_buf).unwrap_or_else(|| in_sandbox("conf"))];
    mk.extend(l.jvm.dirs_to_create());
    mk.push(l.jvm.storage_dir.clone());
    mk.extend(l.node.dirs.data.iter().cloned());
    mk.extend([l.node.dirs.commitlog.clone(), l.node.dirs.hints.clone(), l.node.dirs.saved_caches.clone()]);
    mk.dedup();
    s.mkdirs(&mk);
    s.write_file(&l.jvm.config_file, &cassandra::cassandra_yaml(&l.node));
    s.write_file(&l.jvm.rackdc_file, &cassandra::cassandra_rackdc_properties(&l.node.dc, &l.node.rack));
    s.write_file(&l.jvm.logback_config, &cassandra::cassandra_logback_xml(&l.log_level));
    s.write_pid(&in_sandbox(PID_FILE));
    let mut words = artifacts::no_memlock_prefix(l.as_root);
    words.push(java);
    words.extend(artifacts::java_command_cassandra(&l.artifact, &l.jvm));
    s.exec(&words[0].clone(), &words[1..]);
    Ok(s.render())
}

/// A readiness check passing once `line` is in the task's stdout.
pub fn log_line_check(line: &str) -> CheckSpec {
    CheckSpec {
        check: Check::Command {
            command: format!("grep -qF {} \"$SMACK_SANDBOX/stdout\"", artifacts::shell_quote(line)),
        },
        interval_ms: 500,
        timeout_ms: 2000,
        max_consecutive_failures: 3,
        grace_period_ms: 0,
    }
}

/// Kafka's readiness: the node logged that its server started.
pub fn kafka_readiness_check() -> CheckSpec {
    log_line_check(kafka::KAFKA_READY_LINE)
}

/// Cassandra's readiness: the node logged `Startup complete` (after CQL
/// started listening).
pub fn cassandra_readiness_check() -> CheckSpec {
    log_line_check(cassandra::CASSANDRA_READY_LINE)
}

/// The heap for a JVM task with `mem_mb` of memory: half of it (the rest is
/// metaspace, direct buffers, threads and the page cache), at least 256 MiB
/// and at most 8 GiB (`cassandra-env.sh` caps at 8 GiB too).
pub fn heap_mb_for(mem_mb: u64) -> u32 {
    (mem_mb / 2).clamp(256, 8192) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{ArtifactSource, Service};
    use std::fs;
    use std::process::Command;

    fn artifact(service: Service, lib: &Path) -> Artifact {
        fs::create_dir_all(lib).unwrap();
        fs::write(lib.join("jamm-0.4.0.jar"), b"").unwrap();
        Artifact {
            service,
            version: service.version().into(),
            lib_dir: lib.to_path_buf(),
            classpath: format!("{}/*", lib.display()),
            source: ArtifactSource::Maven,
        }
    }

    /// A fake `java` that records its arguments, one per line, per run.
    fn fake_java(dir: &Path) -> PathBuf {
        let p = dir.join("java");
        fs::write(
            &p,
            "#!/bin/sh\nn=$(ls \"$SMACK_SANDBOX\" | grep -c '^java-args' || true)\n\
             printf '%s\\n' \"$@\" > \"$SMACK_SANDBOX/java-args-$n\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn run(script: &str, sandbox: &Path, volume: Option<&Path>) -> std::process::Output {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script).env_clear().env("PATH", "/usr/bin:/bin");
        c.env("SMACK_SANDBOX", sandbox).current_dir(sandbox);
        if let Some(v) = volume {
            c.env("VOLUME_DATA", v);
        }
        c.output().unwrap()
    }

    #[test]
    fn task_paths_expand_and_the_rest_stays_literal() {
        assert_eq!(volume_var("data"), "VOLUME_DATA");
        assert_eq!(volume_var("kafka-logs"), "VOLUME_KAFKA_LOGS");
        assert_eq!(in_volume("data", "kafka").display().to_string(), "/${VOLUME_DATA}/kafka");
        assert!(in_sandbox("conf").is_absolute());
        assert_eq!(shell_word("/j/lib/*"), "'/j/lib/*'");
        assert_eq!(
            shell_word("-Dcassandra.config=file:///${SMACK_SANDBOX}/conf/c.yaml"),
            "\"-Dcassandra.config=file://${SMACK_SANDBOX}/conf/c.yaml\""
        );
        // Unknown variables and other shell syntax stay literal.
        assert_eq!(shell_word("/${HOME}/x"), "'/${HOME}/x'");
        assert_eq!(shell_word("/${VOLUME_DATA}/a $b`c`\"d\""), "\"${VOLUME_DATA}/a \\$b\\`c\\`\\\"d\\\"\"");
    }

    #[test]
    fn scripts_write_files_with_expanded_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        fs::create_dir_all(&sandbox).unwrap();
        let mut s = TaskScript::new();
        let f = in_sandbox("conf/x");
        s.mkdirs(&[in_sandbox("conf")]);
        s.write_file(&f, "dir=/${SMACK_SANDBOX}/d\nlit=$HOME `id` \\n ${x}\nSMACK_EOF\n");
        s.write_pid(&in_sandbox("pid"));
        let out = run(&s.render(), &sandbox, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = fs::read_to_string(sandbox.join("conf/x")).unwrap();
        assert_eq!(text, format!("dir={}/d\nlit=$HOME `id` \\n ${{x}}\nSMACK_EOF\n", sandbox.display()));
        assert!(!fs::read_to_string(sandbox.join("pid")).unwrap().trim().is_empty());
    }

    #[test]
    fn a_missing_volume_stops_the_script_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TaskScript::new();
        s.mkdirs(&[in_volume("data", "x")]);
        let out = run(&s.render(), dir.path(), None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("VOLUME_DATA is not set"));
    }

    fn kafka_launch(dir: &Path) -> KafkaLaunch {
        let a = artifact(Service::Kafka, &dir.join("lib"));
        let node = kafka::KafkaNodeConfig::new(
            0,
            "127.0.0.1",
            19092,
            19093,
            in_volume("data", "kafka"),
            vec![kafka::Voter::new(0, "127.0.0.1", 19093)],
        );
        KafkaLaunch::new(a, fake_java(dir), node, kafka::kafka_random_cluster_id(), 256)
    }

    #[test]
    fn kafka_formats_a_fresh_volume_only() {
        let dir = tempfile::tempdir().unwrap();
        let l = kafka_launch(dir.path());
        let script = kafka_task_command(&l).unwrap();
        let vol = dir.path().join("vol");
        fs::create_dir_all(&vol).unwrap();

        let sb1 = dir.path().join("sb1");
        fs::create_dir_all(&sb1).unwrap();
        let out = run(&script, &sb1, Some(&vol));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(KAFKA_FORMAT_LINE));
        let format = fs::read_to_string(sb1.join("java-args-0")).unwrap();
        let start = fs::read_to_string(sb1.join("java-args-1")).unwrap();
        assert!(format.contains("kafka.tools.StorageTool\nformat\n-t\n"), "{format}");
        assert!(format.contains(&format!("{}/lib/*\n", dir.path().display())), "the star stays literal: {format}");
        assert!(start.ends_with(&format!("kafka.Kafka\n{}/conf/server.properties\n", sb1.display())), "{start}");
        let props = fs::read_to_string(sb1.join("conf/server.properties")).unwrap();
        assert!(props.contains(&format!("log.dirs={}/kafka\n", vol.display())), "{props}");
        assert!(vol.join("kafka").is_dir());
        assert!(fs::read_to_string(sb1.join("pid")).unwrap().trim().parse::<u32>().is_ok());

        // Formatted for this cluster and node: started as is.
        fs::write(vol.join("kafka/meta.properties"), format!("#\nnode.id=0\nversion=1\ncluster.id={}\n", l.cluster_id))
            .unwrap();
        let sb2 = dir.path().join("sb2");
        fs::create_dir_all(&sb2).unwrap();
        let out = run(&script, &sb2, Some(&vol));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(KAFKA_FORMAT_LINE));
        assert!(fs::read_to_string(sb2.join("java-args-0")).unwrap().contains("kafka.Kafka\n"));
        assert!(!sb2.join("java-args-1").exists());

        // Formatted for another cluster: refused before any java runs.
        fs::write(vol.join("kafka/meta.properties"), "node.id=0\nversion=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
            .unwrap();
        let sb3 = dir.path().join("sb3");
        fs::create_dir_all(&sb3).unwrap();
        let out = run(&script, &sb3, Some(&vol));
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to another Kafka cluster"));
        assert!(!sb3.join("java-args-0").exists());
    }

    #[test]
    fn kafka_refuses_a_bad_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = kafka_launch(dir.path());
        l.cluster_id = "nope".into();
        assert!(kafka_task_command(&l).unwrap_err().to_string().contains("cluster id"));
    }

    #[test]
    fn cassandra_script_puts_data_on_the_volume_and_drops_memlock_as_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = artifact(Service::Cassandra, &dir.path().join("lib"));
        let node = cassandra::CassandraNodeConfig::new(
            "c",
            "127.0.0.1",
            17000,
            19042,
            cassandra::seed_list(&["127.0.0.1"], 17000),
            &in_volume("data", "cassandra"),
        );
        let jvm = cassandra_task_jvm(&a, 256, in_volume("data", "cassandra"));
        assert!(jvm.jamm_jar.is_some());
        let mut l = CassandraLaunch {
            artifact: a,
            java: fake_java(dir.path()),
            node,
            jvm,
            as_root: true,
            log_level: "INFO".into(),
        };
        let script = cassandra_task_command(&l).unwrap();
        assert!(script.contains("exec setpriv --inh-caps=-ipc_lock"), "{script}");
        l.as_root = false;
        let script = cassandra_task_command(&l).unwrap();
        let vol = dir.path().join("vol");
        let sb = dir.path().join("sb");
        fs::create_dir_all(&vol).unwrap();
        fs::create_dir_all(&sb).unwrap();
        let out = run(&script, &sb, Some(&vol));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let yaml = fs::read_to_string(sb.join("conf/cassandra.yaml")).unwrap();
        assert!(yaml.contains(&format!("\"{}/cassandra/data\"", vol.display())), "{yaml}");
        assert!(yaml.contains(&format!("commitlog_directory: \"{}/cassandra/commitlog\"", vol.display())), "{yaml}");
        let args = fs::read_to_string(sb.join("java-args-0")).unwrap();
        assert!(args.contains(&format!("-Dcassandra.config=file://{}/conf/cassandra.yaml\n", sb.display())), "{args}");
        assert!(args.contains(&format!("-Dcassandra.storagedir={}/cassandra\n", vol.display())));
        assert!(args.contains(&format!("-Djava.io.tmpdir={}/tmp\n", sb.display())));
        assert!(args.ends_with(&format!("-cp\n{}/lib/*\n{}\n", dir.path().display(), artifacts::CASSANDRA_MAIN_CLASS)));
        assert!(sb.join("tmp").is_dir() && vol.join("cassandra/commitlog").is_dir());
        assert!(fs::read_to_string(sb.join("conf/cassandra-rackdc.properties")).unwrap().contains("dc=dc1"));
    }

    #[test]
    fn readiness_checks_grep_the_sandbox_log() {
        match kafka_readiness_check().check {
            Check::Command { command } => {
                assert_eq!(command, "grep -qF 'Kafka Server started' \"$SMACK_SANDBOX/stdout\"")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(heap_mb_for(1024), 512);
        assert_eq!(heap_mb_for(300), 256);
        assert_eq!(heap_mb_for(64 * 1024), 8192);
    }
}
