//! Moving Kafka partition replicas between brokers: `smack kafka drain
//! --broker N` (every replica off broker N, then N out of the controller
//! quorum; the Kafka pods' decommission hook) and `smack kafka rebalance`
//! (replicas onto the brokers that hold less than their share, e.g. after a
//! scale-up). Both plans are pure ([`plan_drain`], [`plan_rebalance`]) and
//! rack-aware (a partition's replicas on distinct racks where the brokers
//! allow); the moves are throttled and awaited.
//!
//! rdkafka has no partition-reassignment or quorum call, so those run in a
//! small Java program on Kafka's own client jars (the JDK runs the source
//! file directly), through the Admin API: `incrementalAlterConfigs` for the
//! replication throttles (set before the move, removed after it, on failure
//! too), `alterPartitionReassignments` / `listPartitionReassignments` (what
//! `kafka-reassign-partitions.sh` does), `electLeaders` (preferred leaders
//! once the replicas moved), and `describeMetadataQuorum` /
//! `removeRaftVoter` / `addRaftVoter` (what `kafka-metadata-quorum.sh
//! remove-controller` / `add-controller` do). A reassignment is Kafka's own durable state: if this process
//! dies, the move goes on inside Kafka; running the command again plans
//! from where the replicas are and removes the throttles at the end.

use anyhow::{bail, Context, Result};
use smack_connectors::kafka::{ClusterSnapshot, KafkaAdmin};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One partition's new replica list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// The moves that take every replica off `broker`: each replica of it is
/// replaced, in place (so a preferred leader is replaced by its
/// successor), by a remaining broker that does not hold the partition yet,
/// preferring a rack the partition's other replicas are not on, then the
/// broker with the fewest replicas. Refused, naming the topics, when a
/// topic's replication factor exceeds the brokers that would remain.
pub fn plan_drain(snap: &ClusterSnapshot, racks: &BTreeMap<i32, String>, broker: i32) -> Result<Vec<Move>> {
    let remaining: Vec<i32> = snap.brokers.iter().map(|b| b.id).filter(|id| *id != broker).collect();
    let mut too_wide = BTreeSet::new();
    for t in &snap.topics {
        if t.partitions.iter().any(|p| p.replicas.contains(&broker)) && t.replication_factor() > remaining.len() {
            too_wide.insert(format!("{} (replication {})", t.name, t.replication_factor()));
        }
    }
    if !too_wide.is_empty() {
        bail!(
            "cannot drain broker {broker}: {} broker(s) would remain, fewer than the replication factor of {}",
            remaining.len(),
            too_wide.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut load: BTreeMap<i32, usize> = remaining.iter().map(|b| (*b, 0)).collect();
    for p in snap.topics.iter().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for t in &snap.topics {
        for p in &t.partitions {
            if !p.replicas.contains(&broker) {
                continue;
            }
            let mut replicas = p.replicas.clone();
            for i in 0..replicas.len() {
                if replicas[i] != broker {
                    continue;
                }
                let used_racks: BTreeSet<&String> =
                    replicas.iter().filter(|r| **r != broker).filter_map(|r| racks.get(r)).collect();
                let pick = remaining
                    .iter()
                    .filter(|b| !replicas.contains(b))
                    .min_by_key(|b| {
                        let same_rack = racks.get(b).is_some_and(|r| used_racks.contains(r));
                        (same_rack, load.get(b).copied().unwrap_or(0), **b)
                    })
                    .copied();
                let Some(pick) = pick else {
                    bail!("cannot drain broker {broker}: no remaining broker can take {}/{}", t.name, p.id);
                };
                replicas[i] = pick;
                *load.entry(pick).or_default() += 1;
            }
            moves.push(Move { topic: t.name.clone(), partition: p.id, replicas });
        }
    }
    Ok(moves)
}

/// The moves that give every broker a fair share of each topic's replicas:
/// while a broker holds at least two replicas of a topic more than another
/// one, a replica moves from the fuller to the emptier broker, in place (so
/// the new broker may become a partition's preferred leader), never to a
/// broker that already holds the partition, and never so that the
/// partition's replicas span fewer racks than before. Among the candidate
/// moves the one that spreads racks most, then closes the widest gap (per
/// topic, then over all topics) goes first. Partitions on brokers that are
/// not registered are left alone. Pure: the same cluster gives the same moves.
pub fn plan_rebalance(snap: &ClusterSnapshot, racks: &BTreeMap<i32, String>) -> Vec<Move> {
    let brokers: Vec<i32> = snap.brokers.iter().map(|b| b.id).collect();
    if brokers.len() < 2 {
        return Vec::new();
    }
    let rack = |b: i32| racks.get(&b).cloned().unwrap_or_else(|| format!("(broker {b})"));
    let spread = |reps: &[i32]| reps.iter().map(|r| rack(*r)).collect::<BTreeSet<_>>().len();
    let mut total: BTreeMap<i32, i64> = brokers.iter().map(|b| (*b, 0)).collect();
    for r in snap.topics.iter().flat_map(|t| &t.partitions).flat_map(|p| &p.replicas) {
        if let Some(n) = total.get_mut(r) {
            *n += 1;
        }
    }
    let mut moves = Vec::new();
    for t in snap.topics.iter().filter(|t| t.error.is_none()) {
        let mut parts: Vec<(i32, Vec<i32>)> =
            t.partitions.iter().filter(|p| p.error.is_none()).map(|p| (p.id, p.replicas.clone())).collect();
        let mut load: BTreeMap<i32, i64> = brokers.iter().map(|b| (*b, 0)).collect();
        for r in parts.iter().flat_map(|(_, reps)| reps) {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
        // Every accepted move lowers the sum of squared loads: it ends.
        loop {
            let mut best: Option<(MoveKey, usize, usize, i32)> = None;
            for (pi, (_, reps)) in parts.iter().enumerate() {
                let before = spread(reps);
                for (slot, from) in reps.iter().enumerate() {
                    let Some(&from_load) = load.get(from) else { continue };
                    for to in &brokers {
                        if reps.contains(to) {
                            continue;
                        }
                        let gap = from_load - load[to];
                        if gap < 2 {
                            continue;
                        }
                        let mut after = reps.clone();
                        after[slot] = *to;
                        let after_spread = spread(&after);
                        if after_spread < before {
                            continue;
                        }
                        let key = (after_spread - before, gap, total[from] - total[to]);
                        if best.as_ref().is_none_or(|(k, ..)| key > *k) {
                            best = Some((key, pi, slot, *to));
                        }
                    }
                }
            }
            let Some((_, pi, slot, to)) = best else { break };
            let from = parts[pi].1[slot];
            parts[pi].1[slot] = to;
            for (m, d) in [(&mut load, 1), (&mut total, 1)] {
                *m.get_mut(&from).expect("a known broker") -= d;
                *m.get_mut(&to).expect("a known broker") += d;
            }
        }
        for (p, (id, reps)) in t.partitions.iter().filter(|p| p.error.is_none()).zip(parts) {
            if p.replicas != reps {
                moves.push(Move { topic: t.name.clone(), partition: id, replicas: reps });
            }
        }
    }
    moves
}

/// How good a rebalance move is: racks gained, then the topic's load gap
/// closed, then the cluster's.
type MoveKey = (usize, i64, i64);

/// Replication throttle in bytes per second while replicas move, per broker.
pub const DEFAULT_THROTTLE: u64 = 50 * 1024 * 1024;

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
const ADMIN_JAVA: &str = r#"
import java.nio.file.*;
import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;

public class SmackKafkaAdmin {
    static final String LEADER_RATE = "leader.replication.throttled.rate";
    static final String FOLLOWER_RATE = "follower.replication.throttled.rate";
    static final String LEADER_REPLICAS = "leader.replication.throttled.replicas";
    static final String FOLLOWER_REPLICAS = "follower.replication.throttled.replicas";

    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        if (a[1].startsWith("controllers=")) p.put("bootstrap.controllers", a[1].substring("controllers=".length()));
        else p.put("bootstrap.servers", a[1]);
        boolean quick = a[0].equals("join") || a[0].equals("voters");
        p.put("request.timeout.ms", quick ? "10000" : "60000");
        p.put("default.api.timeout.ms", quick ? "20000" : "120000");
        try (Admin admin = Admin.create(p)) {
            switch (a[0]) {
                case "reassign": reassign(admin, Path.of(a[2]), Long.parseLong(a[3])); break;
                case "voters": {
                    QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
                    String v = q.voters().stream().map(r -> String.valueOf(r.replicaId())).sorted().collect(Collectors.joining(","));
                    System.out.println("QUORUM voters=" + v + " leader=" + q.leaderId());
                    break;
                }
                case "remove-voter": removeVoter(admin, Integer.parseInt(a[2])); break;
                case "join": join(admin, Integer.parseInt(a[2]), a[3], a[4], Integer.parseInt(a[5]), Long.parseLong(a[6])); break;
                default: throw new IllegalArgumentException("unknown mode " + a[0]);
            }
        }
    }

    static void removeVoter(Admin admin, int id) throws Exception {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
        Optional<QuorumInfo.ReplicaState> v = q.voters().stream().filter(r -> r.replicaId() == id).findFirst();
        if (v.isEmpty()) {
            System.out.println("VOTER " + id + " is not a controller voter: nothing to remove");
            return;
        }
        admin.removeRaftVoter(id, v.get().replicaDirectoryId()).all().get();
        System.out.println("VOTER " + id + " removed from the controller quorum");
    }

    static void join(Admin admin, int id, String dir, String host, int port, long since) throws Exception {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
        Uuid want = Uuid.fromString(dir);
        Optional<QuorumInfo.ReplicaState> me = Optional.empty();
        for (QuorumInfo.ReplicaState v : q.voters()) {
            if (v.replicaId() != id) continue;
            if (v.replicaDirectoryId().equals(want)) {
                me = Optional.of(v);
                continue;
            }
            admin.removeRaftVoter(id, v.replicaDirectoryId()).all().get();
            System.out.println("JOIN removed voter " + id + " of directory " + v.replicaDirectoryId() + " (a lost disk)");
        }
        if (me.isEmpty()) {
            admin.addRaftVoter(id, want, Set.of(new RaftVoterEndpoint("CONTROLLER", host, port))).all().get();
            System.out.println("JOIN added " + id + " to the controller quorum (leader " + q.leaderId() + ")");
            q = admin.describeMetadataQuorum().quorumInfo().get();
            me = q.voters().stream().filter(v -> v.replicaId() == id && v.replicaDirectoryId().equals(want)).findFirst();
            if (me.isEmpty()) {
                System.out.println("WAITING " + id + " is not in the voter set yet");
                return;
            }
        }
        // The leader must have seen this node caught up since its launch: a
        // voter entry alone says nothing of a node that is restarting.
        long caught = q.leaderId() == id ? Long.MAX_VALUE : me.get().lastCaughtUpTimestamp().orElse(-1L);
        if (caught < since) {
            System.out.println("WAITING " + id + " is a voter but leader " + q.leaderId()
                + " has not seen it caught up since its launch (last at " + caught + ", launched at " + since + ")");
            return;
        }
        System.out.println("JOINED " + id + " is a controller voter, caught up with leader " + q.leaderId());
    }

    static void reassign(Admin admin, Path file, long throttle) throws Exception {
        Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new LinkedHashMap<>();
        Map<String, List<String>> leaders = new TreeMap<>(), followers = new TreeMap<>();
        Set<Integer> brokers = new TreeSet<>();
        for (String line : Files.readAllLines(file)) {
            String[] f = line.trim().split(" ");
            if (f.length != 4) continue;
            int part = Integer.parseInt(f[1]);
            List<Integer> target = ints(f[2]), current = ints(f[3]);
            moves.put(new TopicPartition(f[0], part), Optional.of(new NewPartitionReassignment(target)));
            for (int b : current) leaders.computeIfAbsent(f[0], k -> new ArrayList<>()).add(part + ":" + b);
            for (int b : target) if (!current.contains(b)) followers.computeIfAbsent(f[0], k -> new ArrayList<>()).add(part + ":" + b);
            brokers.addAll(target);
            brokers.addAll(current);
        }
        if (throttle > 0) {
            throttles(admin, leaders, followers, brokers, throttle, true);
            System.out.println("REASSIGN throttled to " + throttle + " bytes/s on brokers " + brokers);
        }
        try {
            admin.alterPartitionReassignments(moves).all().get();
            System.out.println("REASSIGN submitted " + moves.size() + " partition(s)");
            int last = -1;
            long lastAt = 0;
            while (true) {
                Map<TopicPartition, PartitionReassignment> left =
                    admin.listPartitionReassignments(moves.keySet()).reassignments().get();
                if (left.isEmpty()) break;
                long now = System.currentTimeMillis();
                if (left.size() != last || now - lastAt > 10000) {
                    String some = left.keySet().stream().limit(4).map(TopicPartition::toString).collect(Collectors.joining(", "));
                    System.out.println("REASSIGN " + (moves.size() - left.size()) + " of " + moves.size()
                        + " partition(s) moved; still moving " + left.size() + " (" + some + (left.size() > 4 ? ", ..." : "") + ")");
                    last = left.size();
                    lastAt = now;
                }
                Thread.sleep(1000);
            }
            System.out.println("REASSIGN done: " + moves.size() + " partition(s) moved");
            try {
                admin.electLeaders(ElectionType.PREFERRED, moves.keySet()).partitions().get();
                System.out.println("REASSIGN preferred leaders elected");
            } catch (Exception e) {
                System.out.println("REASSIGN preferred leader election: " + e.getMessage());
            }
        } finally {
            if (throttle > 0) {
                throttles(admin, leaders, followers, brokers, throttle, false);
                System.out.println("REASSIGN throttles removed");
            }
        }
    }

    static List<Integer> ints(String s) {
        List<Integer> out = new ArrayList<>();
        for (String r : s.split(",")) if (!r.isEmpty()) out.add(Integer.parseInt(r));
        return out;
    }

    static void throttles(Admin admin, Map<String, List<String>> leaders, Map<String, List<String>> followers,
                          Set<Integer> brokers, long rate, boolean set) throws Exception {
        Map<ConfigResource, Collection<AlterConfigOp>> ops = new HashMap<>();
        Set<String> topics = new TreeSet<>(leaders.keySet());
        topics.addAll(followers.keySet());
        for (String t : topics) {
            List<AlterConfigOp> l = new ArrayList<>();
            l.add(op(LEADER_REPLICAS, String.join(",", leaders.getOrDefault(t, List.of())), set));
            l.add(op(FOLLOWER_REPLICAS, String.join(",", followers.getOrDefault(t, List.of())), set));
            ops.put(new ConfigResource(ConfigResource.Type.TOPIC, t), l);
        }
        for (int b : brokers) {
            ops.put(new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(b)),
                List.of(op(LEADER_RATE, String.valueOf(rate), set), op(FOLLOWER_RATE, String.valueOf(rate), set)));
        }
        // A broker that is gone cannot be changed; the others still are.
        for (Map.Entry<ConfigResource, KafkaFuture<Void>> e : admin.incrementalAlterConfigs(ops).values().entrySet()) {
            try {
                e.getValue().get();
            } catch (Exception ex) {
                if (set && e.getKey().type() == ConfigResource.Type.TOPIC) throw ex;
                System.out.println("REASSIGN throttle on " + e.getKey() + ": " + ex.getMessage());
            }
        }
    }

    static AlterConfigOp op(String key, String value, boolean set) {
        return new AlterConfigOp(new ConfigEntry(key, set ? value : ""), set ? AlterConfigOp.OpType.SET : AlterConfigOp.OpType.DELETE);
    }
}
"#;

/// Runs the Java admin program in `mode` and returns its stdout (with
/// `echo`, also printed line by line as it comes, for progress); an error with its
/// stderr's tail when it fails, or when it is still running after `timeout`.
async fn run_admin_java(mode: &str, args: &[String], echo: bool, timeout: Duration) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let jars = crate::catalog_kafka::kafka_jars()?;
    let java = smack_operator::catalog::artifacts::java_binary()?;
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
        anyhow::Ok((status, out))
    };
    let result = tokio::time::timeout(timeout, run).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (status, out) =
        result.map_err(|_| anyhow::anyhow!("Kafka admin `{mode}` did not finish within {timeout:?}"))??;
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
    let base = crate::catalog_kafka::cache_dir().join("smack-kafka-admin");
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
        .ok_or_else(|| anyhow::anyhow!("Kafka's quorum description was not printed: {out}"))?;
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

/// The brokers' racks (`broker.rack`), by id.
async fn racks(admin: &KafkaAdmin) -> Result<BTreeMap<i32, String>> {
    Ok(admin.brokers().await?.into_iter().filter_map(|b| Some((b.id, b.rack?))).collect())
}

/// Replicas per broker, over every topic.
pub fn replica_counts(snap: &ClusterSnapshot) -> BTreeMap<i32, usize> {
    let mut out: BTreeMap<i32, usize> = snap.brokers.iter().map(|b| (b.id, 0)).collect();
    for r in snap.topics.iter().flat_map(|t| &t.partitions).flat_map(|p| &p.replicas) {
        *out.entry(*r).or_default() += 1;
    }
    out
}

/// `smack kafka drain`: every replica off `broker` (throttled, awaited,
/// checked against Kafka's own view), then `broker` out of the controller
/// quorum if it is a voter.
pub async fn drain(admin: &KafkaAdmin, bootstrap: &str, broker: i32, throttle: u64, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let snap = admin.snapshot().await?;
    let racks = racks(admin).await?;
    let moves = plan_drain(&snap, &racks, broker)?;
    if moves.is_empty() {
        println!("broker {broker} holds no replica: nothing to move");
    } else {
        println!("moving {} partition(s) off broker {broker}", moves.len());
        for m in &moves {
            println!("  {}/{} -> {:?}", m.topic, m.partition, m.replicas);
        }
        reassign(bootstrap, &snap, &moves, throttle, timeout).await?;
    }
    // Kafka's own view must agree: no replica left on the broker.
    let left: Vec<String> = admin
        .snapshot()
        .await?
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| p.replicas.contains(&broker)).map(move |p| format!("{}/{}", t.name, p.id))
        })
        .collect();
    if !left.is_empty() {
        bail!("broker {broker} still holds replicas of {} after the reassignment", left.join(", "));
    }
    println!(
        "DRAINED broker {broker}: 0 replicas left ({} partition(s) moved in {:?})",
        moves.len(),
        started.elapsed()
    );
    // The last act: the broker leaves the voter set. Its controller does
    // not join again (auto-join is off, and its readiness check adds a
    // node at most once per launch), so it is no voter when it is stopped.
    let voters = quorum_voters(bootstrap).await?;
    if voters.contains(&broker) {
        if voters.len() < 2 {
            bail!("broker {broker} is the only controller voter; it cannot leave the quorum");
        }
        remove_voter(bootstrap, broker).await?;
        let after = quorum_voters(bootstrap).await?;
        if after.contains(&broker) {
            bail!("broker {broker} is still a controller voter after its removal (voters {after:?})");
        }
        println!("broker {broker} left the controller quorum (voters were {voters:?}, now {after:?})");
    } else {
        println!("broker {broker} is not a controller voter (voters {voters:?})");
    }
    Ok(())
}

/// `smack kafka rebalance`: the replicas moved so that every broker holds a
/// fair share ([`plan_rebalance`]), throttled and awaited; returns the moves.
pub async fn rebalance(admin: &KafkaAdmin, bootstrap: &str, throttle: u64, timeout: Duration) -> Result<Vec<Move>> {
    let started = Instant::now();
    let snap = admin.snapshot().await?;
    let racks = racks(admin).await?;
    let moves = plan_rebalance(&snap, &racks);
    let before = replica_counts(&snap);
    if moves.is_empty() {
        println!("replicas per broker {before:?}: already balanced, nothing to move");
        return Ok(moves);
    }
    println!("rebalancing {} partition(s); replicas per broker now {before:?}", moves.len());
    reassign(bootstrap, &snap, &moves, throttle, timeout).await?;
    let after = replica_counts(&admin.snapshot().await?);
    println!("rebalanced in {:?}: replicas per broker {after:?}", started.elapsed());
    Ok(moves)
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
    use smack_connectors::kafka::{BrokerAddress, PartitionDescription, TopicDescription};

    fn snap(brokers: &[i32], parts: &[&[i32]]) -> ClusterSnapshot {
        ClusterSnapshot {
            brokers: brokers.iter().map(|id| BrokerAddress { id: *id, host: format!("h{id}"), port: 9092 }).collect(),
            topics: vec![TopicDescription {
                name: "t".into(),
                partitions: parts
                    .iter()
                    .enumerate()
                    .map(|(i, r)| PartitionDescription {
                        id: i as i32,
                        leader: r.first().copied(),
                        replicas: r.to_vec(),
                        isr: r.to_vec(),
                        error: None,
                    })
                    .collect(),
                error: None,
            }],
        }
    }

    #[test]
    fn replicas_move_to_another_rack_and_the_least_loaded_broker() {
        let s = snap(&[0, 1, 2, 3], &[&[3, 0, 1], &[0, 1], &[1, 2]]);
        let racks: BTreeMap<i32, String> =
            [(0, "a"), (1, "b"), (2, "b"), (3, "c")].into_iter().map(|(k, v)| (k, v.to_string())).collect();
        let m = plan_drain(&s, &racks, 0).unwrap();
        assert_eq!(m.len(), 2, "{m:?}");
        // 3,0,1 (racks c,a,b): 2 is the only broker left; it replaces 0 in place.
        assert_eq!(m[0].replicas, vec![3, 2, 1]);
        // 0,1 on rack b: 3 (rack c) is preferred over 2 (rack b).
        assert_eq!(m[1].replicas, vec![3, 1]);
        assert!(m.iter().all(|m| !m.replicas.contains(&0)));
    }

    #[test]
    fn too_few_brokers_left_is_refused_with_the_reason() {
        let s = snap(&[0, 1, 2], &[&[0, 1, 2]]);
        let e = plan_drain(&s, &BTreeMap::new(), 2).unwrap_err().to_string();
        assert!(e.contains("2 broker(s) would remain, fewer than the replication factor of t (replication 3)"), "{e}");
        assert!(plan_drain(&snap(&[0, 1, 2], &[&[0, 1]]), &BTreeMap::new(), 2).unwrap().is_empty());
    }

    fn racks(pairs: &[(i32, &str)]) -> BTreeMap<i32, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn a_new_broker_gets_a_fair_share_without_losing_rack_spread() {
        // Three brokers in three racks, a fourth in rack a beside broker 0.
        let parts: Vec<&[i32]> = vec![&[0, 1, 2], &[1, 2, 0], &[2, 0, 1], &[0, 2, 1], &[1, 0, 2], &[2, 1, 0]];
        let s = snap(&[0, 1, 2, 3], &parts);
        let r = racks(&[(0, "a"), (1, "b"), (2, "c"), (3, "a")]);
        let moves = plan_rebalance(&s, &r);
        assert_eq!(moves.len(), 3, "{moves:?}");
        let mut after: Vec<Vec<i32>> = parts.iter().map(|p| p.to_vec()).collect();
        for m in &moves {
            after[m.partition as usize] = m.replicas.clone();
        }
        let count = |b: i32| after.iter().filter(|p| p.contains(&b)).count();
        // Only broker 0 shares its rack with 3: they split its six replicas.
        assert_eq!((count(0), count(1), count(2), count(3)), (3, 6, 6, 3));
        for p in &after {
            let spread: BTreeSet<&String> = p.iter().map(|b| &r[b]).collect();
            assert_eq!(spread.len(), 3, "{p:?} keeps three racks");
        }
        // The same cluster gives the same moves; applied, nothing more to move.
        assert_eq!(plan_rebalance(&s, &r), moves);
        let done: Vec<&[i32]> = after.iter().map(|p| p.as_slice()).collect();
        assert!(plan_rebalance(&snap(&[0, 1, 2, 3], &done), &r).is_empty());
    }

    #[test]
    fn without_racks_every_broker_ends_within_one_replica_of_the_others() {
        let parts: Vec<&[i32]> = vec![&[0, 1], &[1, 0], &[0, 1], &[1, 0], &[0, 1], &[1, 0], &[0, 1], &[1, 0]];
        let s = snap(&[0, 1, 2, 3], &parts);
        let moves = plan_rebalance(&s, &BTreeMap::new());
        let mut after: Vec<Vec<i32>> = parts.iter().map(|p| p.to_vec()).collect();
        for m in &moves {
            assert_ne!(m.replicas[0], m.replicas[1], "{m:?}");
            after[m.partition as usize] = m.replicas.clone();
        }
        let counts: Vec<usize> = (0..4).map(|b| after.iter().filter(|p| p.contains(&b)).count()).collect();
        assert_eq!(counts, vec![4, 4, 4, 4], "{moves:?}");
    }

    #[test]
    fn a_rack_spread_improves_when_it_can_and_single_brokers_stay() {
        // Both replicas in rack a; broker 2 in rack b takes one of them.
        let s = snap(&[0, 1, 2], &[&[0, 1], &[0, 1], &[0, 1]]);
        let r = racks(&[(0, "a"), (1, "a"), (2, "b")]);
        let moves = plan_rebalance(&s, &r);
        assert!(!moves.is_empty());
        assert!(moves.iter().all(|m| m.replicas.contains(&2)), "{moves:?}");
        assert!(plan_rebalance(&snap(&[0], &[&[0]]), &r).is_empty());
        // A replica on an unregistered broker is left where it is.
        assert!(plan_rebalance(&snap(&[0, 1], &[&[5, 0]]), &BTreeMap::new()).is_empty());
    }

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

    #[test]
    fn replica_counts_cover_every_registered_broker() {
        let s = snap(&[0, 1, 2], &[&[0, 1], &[1, 0]]);
        assert_eq!(replica_counts(&s), [(0, 2), (1, 2), (2, 0)].into_iter().collect());
    }
}
