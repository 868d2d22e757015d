//! Pure decisions over a Kafka cluster's replicas: which replicas move for
//! a drain ([`plan_drain`]: every replica off one broker) or a rebalance
//! ([`plan_rebalance`]: every broker a fair share of each topic), both
//! rack-aware; and the checks a topic, a scale or a roll make first.
//! Plain values in, plain values out: the drivers in [`super::drain`] do
//! the I/O.

use super::service as kafka_service;
use crate::error::{bail, Result};
use smack_connectors::kafka::ClusterSnapshot;
use std::collections::{BTreeMap, BTreeSet};

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

/// Replicas per broker, over every topic.
pub fn replica_counts(snap: &ClusterSnapshot) -> BTreeMap<i32, usize> {
    let mut out: BTreeMap<i32, usize> = snap.brokers.iter().map(|b| (b.id, 0)).collect();
    for r in snap.topics.iter().flat_map(|t| &t.partitions).flat_map(|p| &p.replicas) {
        *out.entry(*r).or_default() += 1;
    }
    out
}

/// The topics whose replication factor is above `brokers`, as
/// `name (replication N)`.
pub fn too_wide_topics(snap: &ClusterSnapshot, brokers: usize) -> Vec<String> {
    snap.topics
        .iter()
        .filter(|t| t.error.is_none() && t.replication_factor() > brokers)
        .map(|t| format!("{} (replication {})", t.name, t.replication_factor()))
        .collect()
}

/// Refuses a replication factor the cluster cannot hold, with the reason.
pub fn check_replication(replication: i32, brokers: usize) -> Result<()> {
    if replication < 1 {
        bail!("replication factor {replication}: expected at least 1");
    }
    if replication as usize > brokers {
        bail!(
            "replication factor {replication} is above the number of brokers ({brokers}): each replica needs a \
             broker of its own; add brokers first or ask for at most {brokers}"
        );
    }
    Ok(())
}

/// The node ids of the pods that are controllers (they have a
/// `controller` port): brokers of a combined cluster, or dedicated
/// controllers.
pub fn controller_ids<'a>(pods: impl Iterator<Item = (&'a str, u32, &'a BTreeMap<String, u16>)>) -> Vec<i32> {
    pods.filter(|(_, _, ports)| ports.contains_key(kafka_service::CONTROLLER_PORT))
        .map(|(t, i, _)| kafka_service::node_id_of(t, i) as i32)
        .collect()
}

/// `pods` with `leader` (if among them) moved last.
pub fn leader_last(pods: &[String], leader: Option<&str>) -> Vec<String> {
    let (mut last, mut out): (Vec<String>, Vec<String>) =
        pods.iter().cloned().partition(|p| Some(p.as_str()) == leader);
    out.append(&mut last);
    out
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
    fn replica_counts_cover_every_registered_broker() {
        let s = snap(&[0, 1, 2], &[&[0, 1], &[1, 0]]);
        assert_eq!(replica_counts(&s), [(0, 2), (1, 2), (2, 0)].into_iter().collect());
    }

    #[test]
    fn replication_above_the_broker_count_is_refused_with_the_reason() {
        check_replication(3, 3).unwrap();
        let e = check_replication(4, 3).unwrap_err().to_string();
        assert!(e.contains("replication factor 4 is above the number of brokers (3)"), "{e}");
        assert!(check_replication(0, 3).unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn the_active_controller_goes_last() {
        let pods: Vec<String> = ["kafka-0", "kafka-1", "kafka-2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(leader_last(&pods, Some("kafka-0")), ["kafka-1", "kafka-2", "kafka-0"]);
        assert_eq!(leader_last(&pods, Some("kafka-2")), ["kafka-0", "kafka-1", "kafka-2"]);
        assert_eq!(leader_last(&pods, Some("controller-1")), pods, "a leader not rolled here changes nothing");
        assert_eq!(leader_last(&pods, None), pods);
    }

    #[test]
    fn controllers_are_the_pods_with_a_controller_port() {
        let with: BTreeMap<String, u16> = [("client".to_string(), 1), ("controller".to_string(), 2)].into();
        let ctl: BTreeMap<String, u16> = [("controller".to_string(), 2)].into();
        let without: BTreeMap<String, u16> = [("client".to_string(), 1)].into();
        let combined = [("kafka", 0, &with), ("kafka", 1, &with)];
        assert_eq!(controller_ids(combined.iter().map(|(t, i, p)| (*t, *i, *p))), [0, 1]);
        let dedicated = [("controller", 0, &ctl), ("controller", 2, &ctl), ("kafka", 0, &without)];
        assert_eq!(controller_ids(dedicated.iter().map(|(t, i, p)| (*t, *i, *p))), [3000, 3002]);
    }

    #[test]
    fn topics_wider_than_the_brokers_left_are_named() {
        let topic = |name: &str, rf: usize| TopicDescription {
            name: name.into(),
            partitions: vec![PartitionDescription {
                id: 0,
                leader: Some(0),
                replicas: (0..rf as i32).collect(),
                isr: (0..rf as i32).collect(),
                error: None,
            }],
            error: None,
        };
        let snap = ClusterSnapshot { brokers: vec![], topics: vec![topic("events", 3), topic("small", 2)] };
        assert_eq!(too_wide_topics(&snap, 2), vec!["events (replication 3)"]);
        assert!(too_wide_topics(&snap, 3).is_empty());
        assert_eq!(too_wide_topics(&snap, 1).len(), 2);
    }
}
