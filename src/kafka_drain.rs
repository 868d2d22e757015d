//! `smack kafka drain --broker N`: every partition replica moved off broker
//! N onto the remaining brokers (rack-aware, least loaded first), waiting
//! until the reassignment is done; the Kafka pods' decommission hook.
//!
//! rdkafka has no partition-reassignment call, so the reassignment is
//! submitted and awaited by a small Java program on Kafka's own client
//! jars (the JDK runs the source file directly), through the Admin API's
//! `alterPartitionReassignments` / `listPartitionReassignments` — the
//! calls `kafka-reassign-partitions.sh` makes. Refused when fewer brokers
//! would remain than a topic's replication factor.

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

/// The Java program: `Reassign BOOTSTRAP FILE` where each line of FILE is
/// `TOPIC PARTITION R1,R2,…`; submits the reassignment and waits for it.
const REASSIGN_JAVA: &str = r#"
import java.nio.file.*;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.TopicPartition;

public class Reassign {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new HashMap<>();
        for (String line : Files.readAllLines(Path.of(a[1]))) {
            String[] f = line.trim().split(" ");
            if (f.length != 3) continue;
            List<Integer> rs = new ArrayList<>();
            for (String r : f[2].split(",")) rs.add(Integer.parseInt(r));
            moves.put(new TopicPartition(f[0], Integer.parseInt(f[1])), Optional.of(new NewPartitionReassignment(rs)));
        }
        try (Admin admin = Admin.create(p)) {
            admin.alterPartitionReassignments(moves).all().get();
            System.out.println("REASSIGN submitted " + moves.size());
            while (true) {
                Map<TopicPartition, PartitionReassignment> left =
                    admin.listPartitionReassignments(moves.keySet()).reassignments().get();
                if (left.isEmpty()) break;
                System.out.println("REASSIGN in progress: " + left.size() + " partition(s)");
                Thread.sleep(1000);
            }
            System.out.println("REASSIGN done");
        }
    }
}
"#;

pub async fn drain(admin: &KafkaAdmin, bootstrap: &str, broker: i32, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let snap = admin.snapshot().await?;
    let racks: BTreeMap<i32, String> =
        admin.brokers().await?.into_iter().filter_map(|b| Some((b.id, b.rack?))).collect();
    let moves = plan_drain(&snap, &racks, broker)?;
    if moves.is_empty() {
        println!("broker {broker} holds no replica: nothing to move");
        return Ok(());
    }
    println!("moving {} partition(s) off broker {broker}", moves.len());
    let jars = crate::catalog_kafka::kafka_jars()?;
    let java = smack_operator::catalog::artifacts::java_binary()?;
    let dir = tempfile_dir()?;
    let src = dir.join("Reassign.java");
    std::fs::write(&src, REASSIGN_JAVA).with_context(|| format!("writing {}", src.display()))?;
    let plan = dir.join("moves.txt");
    let lines: Vec<String> = moves
        .iter()
        .map(|m| {
            let rs: Vec<String> = m.replicas.iter().map(i32::to_string).collect();
            format!("{} {} {}", m.topic, m.partition, rs.join(","))
        })
        .collect();
    std::fs::write(&plan, lines.join("\n") + "\n")?;
    let mut cmd = tokio::process::Command::new(&java);
    cmd.arg("-Xmx128m")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-Dlog4j2.level=WARN")
        .arg("-cp")
        .arg(&jars.classpath)
        .arg(&src)
        .arg(bootstrap)
        .arg(&plan)
        .kill_on_drop(true);
    let status = tokio::time::timeout(timeout, cmd.status())
        .await
        .map_err(|_| anyhow::anyhow!("the reassignment off broker {broker} did not finish within {timeout:?}"))?
        .with_context(|| format!("running {}", java.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("the reassignment off broker {broker} failed ({status}); see the output above");
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
    println!("broker {broker} drained: {} partition(s) moved in {:?}", moves.len(), started.elapsed());
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let base = std::env::var_os("SMACK_SANDBOX").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("smack-drain-{}", std::process::id()));
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
}
