//! The drivers that move Kafka replicas: `smack kafka drain --broker N`
//! (every replica off broker N, then N out of the controller quorum; the
//! Kafka pods' decommission hook) and `smack kafka rebalance` (replicas
//! onto the brokers that hold less than their share, e.g. after a
//! scale-up). The plans are [`super::plan`]'s; the moves are throttled and
//! awaited through [`super::admin`]. Progress goes to stdout, which is the
//! hook task's log.

use super::admin::{quorum_voters, reassign, remove_voter};
use super::plan::{plan_drain, plan_rebalance, replica_counts, Move};
use crate::error::{bail, Result};
use smack_connectors::kafka::KafkaAdmin;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The brokers' racks (`broker.rack`), by id.
async fn racks(admin: &KafkaAdmin) -> Result<BTreeMap<i32, String>> {
    Ok(admin.brokers().await?.into_iter().filter_map(|b| Some((b.id, b.rack?))).collect())
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
