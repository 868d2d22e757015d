//! The Kafka catalog service end to end: three real brokers (Apache Kafka
//! 4.4, KRaft, dynamic controller quorum) deployed by a `smack service run`
//! scheduler from `kafka_service_yaml` over three agents in three zones;
//! topics through `smack kafka`; 100,000 keyed records survive a SIGKILL of
//! the busiest broker, which comes back on its own agent, volume and id and
//! catches up into the ISR; a rolling config change restarts one broker at
//! a time, the active controller last; an unsafe replication factor is
//! refused with the reason.

use crate::support::smack_at as cli;
use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use smack_catalog::artifacts::{self, Service};
use smack_catalog::kafka::config as kafka;
use smack_catalog::kafka::service::kafka_service_yaml;
use smack_catalog::launch;
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig, KafkaSource, PollLimits, SourceConfig, StartPosition};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Three JVMs starting one after another on two busy cores.
const DEPLOY: Duration = Duration::from_secs(420);
const T: Duration = Duration::from_secs(180);
const RECORDS: usize = 100_000;
const TOPIC: &str = "events";

/// Pod name → (agent id, current broker task id, task state, ready).
fn broker_tasks(dir: &Path) -> Option<BTreeMap<String, (String, String, String, bool)>> {
    let pods = smack_json(dir, &["pod", "list"])?;
    let mut out = BTreeMap::new();
    for p in pods.as_array()? {
        let name = p["pod"]["name"].as_str()?.to_string();
        let tid = p["pod"]["tasks"]["broker"].as_str()?.to_string();
        let t = p["tasks"].as_array()?.iter().find(|t| t["id"] == tid.as_str())?;
        out.insert(
            name,
            (
                p["pod"]["agent_id"].as_str()?.to_string(),
                tid,
                t["state"].as_str().unwrap_or("").to_string(),
                t["ready"].as_bool().unwrap_or(false),
            ),
        );
    }
    Some(out)
}

/// Every partition of the topic has its full replica set in sync.
async fn isr_full(admin: &KafkaAdmin) -> Option<Value> {
    let t = admin.describe_topic(TOPIC).await.ok()?;
    t.partitions
        .iter()
        .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len() && p.replicas.len() == 3)
        .then(|| serde_json::to_value(&t).ok())?
}

/// Kafka's own view of the KRaft quorum (the Admin API's
/// `describeMetadataQuorum`), on the broker's classpath: `QUORUM voters=…`.
const QUORUM_PROBE: &str = r#"
import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;

public class QuorumProbe {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        try (Admin admin = Admin.create(p)) {
            QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
            String voters = q.voters().stream().map(v -> String.valueOf(v.replicaId())).sorted().collect(Collectors.joining(","));
            System.out.println("QUORUM voters=" + voters + " leader=" + q.leaderId());
        }
    }
}
"#;

/// The controller voters' ids, sorted, e.g. `0,1,2`.
async fn quorum_voters(dir: &Path, classpath: &str, bootstrap: &str) -> Option<String> {
    let src = dir.join("QuorumProbe.java");
    std::fs::write(&src, QUORUM_PROBE).ok()?;
    let java = artifacts::java_binary().ok()?;
    let out = tokio::process::Command::new(java)
        .args(["-Xmx128m", "-Dlog4j2.level=WARN", "-cp", classpath])
        .arg(&src)
        .arg(bootstrap)
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("QUORUM "))?;
    Some(line.split_whitespace().find_map(|w| w.strip_prefix("voters="))?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_over_three_zones_survive_a_sigkill_and_roll_a_config_change() {
    let started = Instant::now();
    let jars = service_jars(Service::Kafka).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zones = ["zone-a", "zone-b", "zone-c"];
    let (m, _agents) = MasterProc::start_zoned(d, &zones, "44000-44099").await;

    let mut opts = kafka_test_options(3);
    let spec_file = d.join("kafka.yaml");
    let sf = write_spec(&spec_file, &kafka_service_yaml(&opts));
    cli(d, &["service", "validate", &sf]).unwrap_or_else(|e| panic!("the generated spec is refused: {e}"));
    let sched = service_scheduler("scheduler", d, &sf);
    let _diag =
        PanicDump { dir: d.to_path_buf(), sched_log: sched.log.clone(), plans: &["deploy", "recovery", "update"] };

    // Deploy: three brokers, one per zone, each ready before the next.
    wait_plan(d, "deploy", "COMPLETE", DEPLOY).await;
    let deployed_in = started.elapsed();
    let brokers = wait_for("3 brokers with their racks", T, || async {
        let v = smack_json(d, &["kafka", "brokers"])?;
        (v.as_array()?.len() == 3 && v.as_array()?.iter().all(|b| b["rack"].is_string())).then_some(v)
    })
    .await;
    let racks: BTreeSet<&str> = brokers.as_array().unwrap().iter().map(|b| b["rack"].as_str().unwrap()).collect();
    assert_eq!(racks, zones.iter().copied().collect(), "broker.rack = the agents' zones: {brokers:#}");
    for b in brokers.as_array().unwrap() {
        assert_eq!(b["rack"], b["zone"], "rack of the pod's agent: {b:#}");
        assert_eq!(b["pod"], format!("kafka-{}", b["id"]), "broker id = pod index: {b:#}");
    }
    let bootstrap = cli(d, &["endpoints", "kafka"]).unwrap().trim().to_string();
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
    // The dynamic quorum: kafka-0 started it alone, kafka-1 and kafka-2 joined it.
    let mut last = None;
    let deadline = Instant::now() + T;
    while last.as_deref() != Some("0,1,2") {
        assert!(Instant::now() < deadline, "the controller voters are {last:?}, not 0,1,2, after {T:?}");
        last = quorum_voters(d, &jars.classpath, &bootstrap).await;
    }

    // A topic over all three zones; replication above the broker count is refused.
    cli(d, &["kafka", "topic", "create", TOPIC, "--partitions", "6", "--replication", "3"]).unwrap();
    let refused = cli(d, &["kafka", "topic", "create", "too-wide", "--partitions", "1", "--replication", "4"])
        .expect_err("replication 4 on 3 brokers");
    assert!(refused.contains("replication factor 4 is above the number of brokers (3)"), "{refused}");
    let listed = smack_json(d, &["kafka", "topic", "list"]).unwrap();
    assert_eq!(listed, serde_json::json!([TOPIC]));

    // 100,000 keyed records, acknowledged by all in-sync replicas.
    let client = KafkaClientConfig::new(bootstrap.clone()).with_timeout(Duration::from_secs(30));
    let admin = KafkaAdmin::connect(&client).await.unwrap();
    produce_keyed(&client, TOPIC, RECORDS, 1000).await;
    let produced_at = started.elapsed();

    // SIGKILL the broker that leads the most partitions.
    let t = admin.describe_topic(TOPIC).await.unwrap();
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    for p in &t.partitions {
        *leads.entry(p.leader.expect("a leader")).or_default() += 1;
    }
    let (&victim, _) = leads.iter().max_by_key(|(id, n)| (**n, -**id)).unwrap();
    let pod = format!("kafka-{victim}");
    let before = broker_tasks(d).unwrap();
    let (agent_id, old_task, _, _) = before[&pod].clone();
    let status = smack_json(d, &["pod", "status", &pod]).unwrap();
    let host = status[0]["pod"]["hostname"].as_str().unwrap().to_string();
    let agent_name = format!("a{}", host.rsplit('.').next().unwrap());
    let vid = status[0]["pod"]["volume_ids"][0].as_str().unwrap().to_string();
    let state = m.client().state().await.unwrap();
    let vol = state
        .agents
        .iter()
        .flat_map(|a| &a.reservations)
        .flat_map(|r| &r.volumes)
        .find(|v| v.id == vid)
        .map(|v| PathBuf::from(&v.host_path))
        .expect("the volume in the ledger");
    let meta_before = read(vol.join("kafka/meta.properties"));
    let meta = kafka::parse_meta_properties(&meta_before).expect("meta.properties on the volume");
    assert_eq!((meta.node_id, meta.cluster_id.as_str()), (victim as u32, opts.cluster_id.as_str()));
    let sandbox = agent_task_sandbox(d, &agent_name, &old_task).expect("the broker's sandbox");
    let pid: i32 = read(sandbox.join(launch::PID_FILE)).trim().parse().expect("the broker's pid file");
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();

    // Recovery relaunches it in place, and it catches up into the ISR.
    let after = wait_for(&format!("{pod} relaunched and ready"), T, || async {
        let b = broker_tasks(d)?;
        let (a, tid, st, ready) = b.get(&pod)?.clone();
        (tid != old_task && st == "RUNNING" && ready).then_some((a, tid))
    })
    .await;
    let back_in = killed_at.elapsed();
    assert_eq!(after.0, agent_id, "recovered on the same agent");
    let described = wait_for("the ISR full again", T, || isr_full(&admin)).await;
    let isr_in = killed_at.elapsed();
    assert_eq!(read(vol.join("kafka/meta.properties")), meta_before, "same volume, same id, not reformatted");
    let new_sandbox = agent_task_sandbox(d, &agent_name, &after.1).expect("the new sandbox");
    let out = read(new_sandbox.join("stdout"));
    assert!(!out.contains(launch::KAFKA_FORMAT_LINE), "the relaunch formatted the volume again:\n{out}");
    assert!(out.contains("is formatted for node"), "{out}");
    let rec = smack_json(d, &["plan", "show", "recovery"]).unwrap();
    assert!(rec.to_string().contains(&pod), "a recovery step for {pod}: {rec:#}");

    // Every record, once.
    let source_cfg =
        SourceConfig::new(client.clone(), "kafka-e2e", TOPIC, (0..6).collect()).starting_at(StartPosition::Earliest);
    let mut source = KafkaSource::open(source_cfg).await.unwrap();
    let (mut seen, mut dup) = read_distinct(&mut source, RECORDS, T).await;
    let limits = PollLimits::default();
    // Drain what is left: nothing past the 100,000.
    for _ in 0..3 {
        for r in source.poll_batch(&limits).await.unwrap() {
            if !seen.insert(String::from_utf8(r.payload.unwrap_or_default()).unwrap()) {
                dup += 1;
            }
        }
    }
    assert_eq!((seen.len(), dup), (RECORDS, 0), "every record once");
    assert!((0..RECORDS).all(|i| seen.contains(&format!("record-{i}"))));
    drop(source);

    // A rolling config change: one broker at a time, each ready before the
    // next, the active controller (read right before) last.
    let rolled_from = Instant::now();
    let quorum = smack_json(d, &["kafka", "quorum"]).expect("smack kafka quorum");
    let leader = format!("kafka-{}", quorum["leader"].as_i64().expect("an active controller"));
    let tasks_before = broker_tasks(d).unwrap();
    opts.broker_config.insert("num.io.threads".into(), "3".into());
    write_spec(&spec_file, &kafka_service_yaml(&opts));
    cli(d, &["service", "update", &sf]).unwrap_or_else(|e| panic!("service update: {e}"));
    // Readiness is cluster-wide (no under-replicated partition a broker
    // leads or follows), so while one broker restarts the others report
    // not ready too: count brokers whose task is not RUNNING, and the
    // update steps at work at once.
    let mut worst_down = 0usize;
    let mut worst_active = 0usize;
    let mut restarted_order: Vec<String> = Vec::new();
    let mut completed_order: Vec<String> = Vec::new();
    let deadline = Instant::now() + DEPLOY;
    loop {
        assert!(Instant::now() < deadline, "the update plan did not complete within {DEPLOY:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(b) = broker_tasks(d) else { continue };
        worst_down = worst_down.max(b.values().filter(|(_, _, st, _)| st != "RUNNING").count());
        for (pod, (_, tid, _, _)) in &b {
            if tid != &tasks_before[pod].1 && !restarted_order.contains(pod) {
                restarted_order.push(pod.clone());
            }
        }
        let Some(v) = smack_json(d, &["plan", "show", "update"]) else { continue };
        let steps = v["phases"][0]["steps"].as_array().cloned().unwrap_or_default();
        let active = steps.iter().filter(|s| s["state"] != "PENDING" && s["state"] != "COMPLETE").count();
        worst_active = worst_active.max(active);
        for s in steps.iter().filter(|s| s["state"] == "COMPLETE") {
            let pod = s["pod_instance"].as_str().unwrap_or("?").to_string();
            if !completed_order.contains(&pod) {
                completed_order.push(pod);
            }
        }
        if v["status"] == "COMPLETE" && b.values().all(|(_, _, st, ready)| st == "RUNNING" && *ready) {
            break;
        }
    }
    let rolled_in = rolled_from.elapsed();
    assert!(worst_down <= 1, "more than one broker was down at a time during the roll ({worst_down})");
    assert_eq!(worst_active, 1, "one update step at a time");
    assert_eq!(restarted_order.len(), 3, "every broker restarted: {restarted_order:?}");
    assert_eq!(completed_order, restarted_order, "each broker ready (its step COMPLETE) before the next restarts");
    assert_eq!(restarted_order.last(), Some(&leader), "the active controller restarted last: {restarted_order:?}");
    wait_for("the ISR full after the roll", T, || isr_full(&admin)).await;
    for b in 0..3 {
        // A fresh client: the old one's connections all went through restarts.
        let io_threads = wait_for(&format!("broker {b}'s config"), T, || {
            let client = client.clone();
            async move {
                let admin = KafkaAdmin::connect(&client).await.ok()?;
                let cfg = admin.describe_broker_configs(b).await.ok()?;
                cfg.get("num.io.threads").map(|v| v.value.clone())
            }
        })
        .await;
        assert_eq!(io_threads.as_deref(), Some("3"), "broker {b} runs with the new config");
    }

    eprintln!(
        "kafka e2e: deployed 3 brokers in {deployed_in:?}; 100k records produced by {produced_at:?}; \
         broker {victim} relaunched and ready {back_in:?} after SIGKILL, ISR full after {isr_in:?}; \
         rolling config change in {rolled_in:?} (order {restarted_order:?}); total {:?}\n{described}",
        started.elapsed()
    );
}
