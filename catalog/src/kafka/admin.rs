//! The Kafka admin calls rdkafka lacks, run in a small Java program on
//! Kafka's own client jars (the JDK runs the source file directly, or a copy
//! compiled once into the artifact cache): partition reassignments with
//! replication throttles (`incrementalAlterConfigs`,
//! `alterPartitionReassignments` / `listPartitionReassignments`, then
//! `electLeaders` for the preferred leaders), and the KRaft controller
//! quorum (`describeMetadataQuorum`, `removeRaftVoter`, `addRaftVoter`),
//! i.e. what `kafka-reassign-partitions.sh` and `kafka-metadata-quorum.sh
//! remove-controller` / `add-controller` do.
//!
//! A reassignment is Kafka's own durable state: if this process dies, the
//! move goes on inside Kafka; running it again plans from where the
//! replicas are and removes the throttles at the end.

use super::plan::Move;
use crate::error::{bail, format_err, Context, Result};
use smack_connectors::kafka::ClusterSnapshot;
use std::time::Duration;

/// The Java program on Kafka's client jars. Modes:
/// - `reassign BOOTSTRAP FILE THROTTLE`: each line of FILE is
///   `TOPIC PARTITION NEW1,NEW2,… OLD1,OLD2,…`; sets the throttles (unless
///   THROTTLE is 0), submits the reassignment, prints its progress until
///   it is done, elects the preferred leaders, and removes the throttles.
/// - `voters BOOTSTRAP`: prints `QUORUM voters=0,1,2 leader=0`.
/// - `remove-voter BOOTSTRAP ID`: takes controller ID out of the voter set
///   (nothing when it is not a voter).
/// - `join BOOTSTRAP ID DIRECTORY_ID HOST PORT SINCE_MS`: adds controller
///   ID (its metadata log dir's directory id, its controller listener) to
///   the voter set unless it is a voter, first removing a voter of the
///   same id and another directory (the node's old, lost disk); prints
///   `JOINED …` once the leader has seen it caught up since SINCE_MS (its
///   launch), else `WAITING …`.
///
/// BOOTSTRAP is `host:port,…` of brokers, or `controllers=host:port,…` of
/// controllers (`bootstrap.controllers`: dedicated controllers serve no
/// clients, and a controller not yet a voter must reach the quorum itself).
const ADMIN_JAVA: &str = include_str!("SmackKafkaAdmin.java");

/// Runs the Java admin program in `mode` and returns its stdout (with
/// `echo`, also printed line by line as it comes, for progress); an error with its
/// stderr's tail when it fails, or when it is still running after `timeout`.
async fn run_admin_java(mode: &str, args: &[String], echo: bool, timeout: Duration) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let jars = super::broker::kafka_jars()?;
    let java = crate::artifacts::java_binary()?;
    let dir = scratch_dir()?;
    let mut cmd = tokio::process::Command::new(&java);
    // A short-lived client: the first JIT tier and the serial collector
    // start fastest.
    cmd.arg("-Xmx128m")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-XX:+UseSerialGC")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-Dlog4j2.level=WARN");
    match compiled_admin(&java, &jars.classpath).await {
        Some(classes) => {
            cmd.arg("-cp").arg(format!("{}:{}", classes.display(), jars.classpath)).arg("SmackKafkaAdmin");
        }
        None => {
            // No javac: the JDK's source launcher compiles it in memory each time.
            let src = dir.join("SmackKafkaAdmin.java");
            std::fs::write(&src, ADMIN_JAVA).with_context(|| format!("writing {}", src.display()))?;
            cmd.arg("-cp").arg(&jars.classpath).arg(&src);
        }
    }
    cmd.arg(mode)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("running {}", java.display()))?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = child.stderr.take().expect("piped");
    let errs = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let run = async {
        let mut out = String::new();
        while let Some(line) = stdout.next_line().await? {
            if echo {
                println!("{line}");
            }
            out.push_str(&line);
            out.push('\n');
        }
        let status = child.wait().await?;
        Ok::<_, crate::Error>((status, out))
    };
    let result = tokio::time::timeout(timeout, run).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (status, out) = result.map_err(|_| format_err!("Kafka admin `{mode}` did not finish within {timeout:?}"))??;
    if !status.success() {
        let err = errs.await.unwrap_or_default();
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        bail!("Kafka admin `{mode}` failed ({status}): {}", tail[tail.len().saturating_sub(8)..].join("\n"));
    }
    Ok(out)
}

/// The admin program compiled once into the artifact cache (by the
/// `javac` beside `java`), keyed by its source and the Kafka jars: every
/// readiness check and hook then skips the in-memory compile of the
/// source launcher, seconds of CPU on a busy machine. `None` when there is
/// no `javac` or it fails (the caller falls back to the source launcher).
async fn compiled_admin(java: &std::path::Path, classpath: &str) -> Option<std::path::PathBuf> {
    let javac = java.with_file_name("javac");
    if !javac.is_file() {
        return None;
    }
    let key = fnv1a(&[ADMIN_JAVA.as_bytes(), classpath.as_bytes(), javac.as_os_str().as_encoded_bytes()]);
    let base = crate::artifacts::default_cache_dir().join("smack-kafka-admin");
    let dir = base.join(format!("{key:016x}"));
    if dir.join("SmackKafkaAdmin.class").is_file() {
        return Some(dir);
    }
    // Compiled beside, then renamed in: parallel checks never see half a dir.
    let tmp = base.join(format!("tmp-{}-{key:016x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).ok()?;
    let src = tmp.join("SmackKafkaAdmin.java");
    std::fs::write(&src, ADMIN_JAVA).ok()?;
    let out = tokio::process::Command::new(&javac)
        .arg("-J-XX:TieredStopAtLevel=1")
        .arg("-nowarn")
        .arg("-cp")
        .arg(classpath)
        .arg("-d")
        .arg(&tmp)
        .arg(&src)
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "javac of the Kafka admin program failed");
        let _ = std::fs::remove_dir_all(&tmp);
        return None;
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir.join("SmackKafkaAdmin.class").is_file().then_some(dir)
}

/// 64-bit FNV-1a over the parts, for cache keys.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Submits `moves` (with the replicas as they are in `snap`), throttled to
/// `throttle` bytes/s per broker (0: unthrottled), and waits until Kafka
/// reports the reassignment done.
pub async fn reassign(
    bootstrap: &str,
    snap: &ClusterSnapshot,
    moves: &[Move],
    throttle: u64,
    timeout: Duration,
) -> Result<()> {
    let dir = scratch_dir()?;
    let plan = dir.join("moves.txt");
    let join = |rs: &[i32]| rs.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let lines: Vec<String> = moves
        .iter()
        .map(|m| {
            let current = snap
                .topic(&m.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.id == m.partition))
                .map(|p| p.replicas.clone())
                .unwrap_or_default();
            format!("{} {} {} {}", m.topic, m.partition, join(&m.replicas), join(&current))
        })
        .collect();
    std::fs::write(&plan, lines.join("\n") + "\n").with_context(|| format!("writing {}", plan.display()))?;
    let r = run_admin_java(
        "reassign",
        &[bootstrap.to_string(), plan.display().to_string(), throttle.to_string()],
        true,
        timeout,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    r.map(|_| ())
}

/// The controller quorum as Kafka reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quorum {
    /// The voters' node ids, ascending.
    pub voters: Vec<i32>,
    /// The active controller (the quorum's leader); -1 while there is none.
    pub leader: i32,
}

/// Parses the admin program's `QUORUM voters=0,1,2 leader=0` line.
pub fn parse_quorum(out: &str) -> Result<Quorum> {
    let line = out
        .lines()
        .find(|l| l.starts_with("QUORUM "))
        .ok_or_else(|| format_err!("Kafka's quorum description was not printed: {out}"))?;
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("");
    let mut voters: Vec<i32> = field("voters=")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("voter id {s:?} in {line:?}")))
        .collect::<Result<_>>()?;
    voters.sort_unstable();
    let leader = field("leader=").parse().with_context(|| format!("the leader in {line:?}"))?;
    Ok(Quorum { voters, leader })
}

/// The controller quorum; `bootstrap` is brokers, or `controllers=…`.
pub async fn quorum(bootstrap: &str) -> Result<Quorum> {
    let out = run_admin_java("voters", &[bootstrap.to_string()], false, Duration::from_secs(60)).await?;
    parse_quorum(&out)
}

/// The controller quorum's voter ids, as Kafka reports them.
pub async fn quorum_voters(bootstrap: &str) -> Result<Vec<i32>> {
    Ok(quorum(bootstrap).await?.voters)
}

/// Adds controller `id` (directory `directory_id`, listening on
/// `host:port`) to the voter set through the controllers at `controllers`
/// (`host:port,…`), unless it is a voter already; `Ok` once the quorum's
/// leader has seen it caught up since `since_ms` (its launch), an error
/// saying why not otherwise. Returns what Kafka said.
pub async fn join_quorum(
    controllers: &str,
    id: u32,
    directory_id: &str,
    host: &str,
    port: u16,
    since_ms: u64,
) -> Result<String> {
    let args = [
        format!("controllers={controllers}"),
        id.to_string(),
        directory_id.to_string(),
        host.to_string(),
        port.to_string(),
        since_ms.to_string(),
    ];
    let out = run_admin_java("join", &args, false, Duration::from_secs(25)).await?;
    if !out.lines().any(|l| l.starts_with("JOINED ")) {
        let why: Vec<&str> = out.lines().filter(|l| l.starts_with("WAITING ") || l.starts_with("JOIN ")).collect();
        bail!(
            "controller {id} is not a caught-up voter yet: {}",
            if why.is_empty() { out.trim().to_string() } else { why.join("; ") }
        );
    }
    Ok(out.lines().filter(|l| l.starts_with("JOIN")).collect::<Vec<_>>().join("\n"))
}

/// Takes controller `id` out of the voter set (nothing when it is not a voter).
pub async fn remove_voter(bootstrap: &str, id: i32) -> Result<()> {
    let out = run_admin_java("remove-voter", &[bootstrap.to_string(), id.to_string()], false, Duration::from_secs(180))
        .await?;
    tracing::info!(voter = id, "{}", out.trim());
    Ok(())
}

fn scratch_dir() -> Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = std::env::var_os("SMACK_SANDBOX").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = base.join(format!("smack-kafka-admin-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_differ_by_part_and_boundary() {
        assert_eq!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"a", b"b"]));
        assert_ne!(fnv1a(&[b"ab", b""]), fnv1a(&[b"a", b"b"]));
        assert_ne!(fnv1a(&[b"x"]), fnv1a(&[b"y"]));
    }

    #[test]
    fn the_quorum_line_parses() {
        let q = parse_quorum("noise\nQUORUM voters=3002,3000,3001 leader=3001\n").unwrap();
        assert_eq!(q, Quorum { voters: vec![3000, 3001, 3002], leader: 3001 });
        assert_eq!(parse_quorum("QUORUM voters= leader=-1").unwrap(), Quorum { voters: vec![], leader: -1 });
        assert!(parse_quorum("nothing").unwrap_err().to_string().contains("not printed"));
        assert!(parse_quorum("QUORUM voters=a leader=0").unwrap_err().to_string().contains("voter id \"a\""));
    }
}
