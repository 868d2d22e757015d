//! A Kafka service with a dedicated KRaft controller quorum, end to end:
//! three `controller-N` pods and three `kafka-N` brokers over three agents
//! in three zones, the controllers deployed (and voters) before any broker
//! starts; then one rolling change of both pod types, in which the update
//! plan rolls the controllers first, one at a time, the active controller
//! (read before the change) last — the order the `update-order` hook
//! (`smack kafka update-order`) gave — and then the brokers, each ready
//! before the next; the quorum and every partition's ISR whole at the end.

use crate::support::smack_at as cli;
use crate::support::*;
use serde_json::Value;
use smack_catalog::artifacts::Service;
use smack_catalog::kafka::service::kafka_service_yaml;
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig, KafkaSink, SinkConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Six JVMs starting one after another on two busy cores.
const DEPLOY: Duration = Duration::from_secs(600);
const T: Duration = Duration::from_secs(180);
const TOPIC: &str = "orders";

/// One pod's current task.
#[derive(Debug, Clone, PartialEq)]
struct Current {
    task: String,
    launched_ms: u64,
    running: bool,
    ready: bool,
}

/// Pod name → its current task.
fn current_tasks(dir: &Path) -> Option<BTreeMap<String, Current>> {
    let pods = smack_json(dir, &["pod", "list"])?;
    let mut out = BTreeMap::new();
    for p in pods.as_array()? {
        let name = p["pod"]["name"].as_str()?.to_string();
        let tid = p["pod"]["tasks"].as_object()?.values().next()?.as_str()?.to_string();
        let t = p["tasks"].as_array()?.iter().find(|t| t["id"] == tid.as_str())?;
        let running = t["state"] == "RUNNING";
        let ready = t["ready"].as_bool().unwrap_or(false);
        out.insert(name, Current { task: tid, launched_ms: t["launched_ms"].as_u64()?, running, ready });
    }
    Some(out)
}

/// `smack kafka quorum`: (voters, active controller).
fn quorum(dir: &Path) -> Option<(Vec<i64>, i64)> {
    let q = smack_json(dir, &["kafka", "quorum"])?;
    let voters = q["voters"].as_array()?.iter().filter_map(Value::as_i64).collect();
    Some((voters, q["leader"].as_i64()?))
}

/// The pods of `pod_type`, ordered by when their current task launched.
fn launch_order(tasks: &BTreeMap<String, Current>, pod_type: &str) -> Vec<String> {
    let mut pods: Vec<(&String, &Current)> =
        tasks.iter().filter(|(n, _)| n.starts_with(&format!("{pod_type}-"))).collect();
    pods.sort_by_key(|(_, c)| c.launched_ms);
    pods.into_iter().map(|(n, _)| n.clone()).collect()
}

/// The newest sandbox of `pod`'s task on any agent.
fn server_properties(dir: &Path, task: &str) -> String {
    (1..=3)
        .find_map(|a| agent_task_sandbox(dir, &format!("a{a}"), task))
        .map(|s| read(s.join("conf/server.properties")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_controllers_deploy_first_and_roll_with_the_active_one_last() {
    let started = Instant::now();
    service_jars(Service::Kafka).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zones = ["zone-a", "zone-b", "zone-c"];
    let (_m, _agents) = MasterProc::start_zoned(d, &zones, "47000-47099").await;

    let mut opts = kafka_test_options(3).with_controllers(3);
    opts.controller_cpus = 0.25;
    opts.controller_mem_mb = 512;
    opts.controller_disk_mb = 256;
    let spec_file = d.join("kafka.yaml");
    let sf = write_spec(&spec_file, &kafka_service_yaml(&opts));
    cli(d, &["service", "validate", &sf]).unwrap_or_else(|e| panic!("the generated spec is refused: {e}"));
    let sched = service_scheduler("scheduler", d, &sf);
    let _diag =
        PanicDump { dir: d.to_path_buf(), sched_log: sched.log.clone(), plans: &["deploy", "update", "recovery"] };

    // Deploy: the quorum first, then the brokers.
    let deploy = wait_plan(d, "deploy", "COMPLETE", DEPLOY).await;
    let deployed_in = started.elapsed();
    let phases: Vec<&str> = deploy["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases, ["controller", "kafka"]);
    let tasks = current_tasks(d).unwrap();
    let last_controller = tasks.iter().filter(|(n, _)| n.starts_with("controller-")).map(|(_, c)| c.launched_ms).max();
    let first_broker = tasks.iter().filter(|(n, _)| n.starts_with("kafka-")).map(|(_, c)| c.launched_ms).min();
    assert!(last_controller.unwrap() < first_broker.unwrap(), "every controller launched before any broker: {tasks:?}");
    let (voters, leader) = wait_for("the three controllers are the voters", T, || async {
        quorum(d).filter(|(v, l)| *v == [3000, 3001, 3002] && v.contains(l))
    })
    .await;
    let brokers = smack_json(d, &["kafka", "brokers"]).unwrap();
    let ids: Vec<i64> = brokers.as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 2], "the controllers are no brokers: {brokers:#}");
    let props = server_properties(d, &tasks["controller-0"].task);
    assert!(props.contains("process.roles=controller\n"), "{props}");
    let props = server_properties(d, &tasks["kafka-0"].task);
    assert!(props.contains("process.roles=broker\n"), "{props}");
    assert!(!props.contains("auto.join"), "{props}");

    // Some data, replicated three times, to keep the broker roll honest.
    let bootstrap = cli(d, &["endpoints", "kafka"]).unwrap().trim().to_string();
    cli(d, &["kafka", "topic", "create", TOPIC, "--partitions", "3", "--replication", "3"]).unwrap();
    let client = KafkaClientConfig::new(bootstrap.clone()).with_timeout(Duration::from_secs(30));
    let mut sink = KafkaSink::new(SinkConfig::new(client.clone())).unwrap();
    for i in 0..2_000 {
        let key = format!("key-{}", i % 100);
        sink.send(TOPIC, Some(key.as_bytes()), Some(format!("order-{i}").as_bytes()), &[]).await.unwrap();
    }
    sink.flush().await.unwrap();
    drop(sink);

    // One rolling change of both pod types; the active controller is read
    // right before it.
    let rolled_from = Instant::now();
    let (_, leader_before) = quorum(d).expect("the quorum before the change");
    let leader_pod = format!("controller-{}", leader_before - 3000);
    let before = current_tasks(d).unwrap();
    opts.controller_config.insert("num.io.threads".into(), "3".into());
    opts.broker_config.insert("num.io.threads".into(), "3".into());
    write_spec(&spec_file, &kafka_service_yaml(&opts));
    cli(d, &["service", "update", &sf]).unwrap_or_else(|e| panic!("service update: {e}"));
    // Readiness is cluster-wide (a broker with an under-replicated
    // partition is not ready), so count the nodes whose task is not RUNNING.
    let mut worst_down = 0usize;
    let deadline = Instant::now() + DEPLOY;
    let update = loop {
        assert!(Instant::now() < deadline, "the update plan did not complete within {DEPLOY:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(now) = current_tasks(d) else { continue };
        worst_down = worst_down.max(now.values().filter(|c| !c.running).count());
        let Some(v) = smack_json(d, &["plan", "show", "update"]) else { continue };
        if v["status"] == "COMPLETE" && now.values().all(|c| c.running && c.ready) {
            break v;
        }
    };
    let rolled_in = rolled_from.elapsed();
    let after = current_tasks(d).unwrap();
    for (pod, c) in &after {
        assert_ne!(c.task, before[pod].task, "{pod} restarted");
    }
    assert!(worst_down <= 1, "more than one node was down at a time during the roll ({worst_down})");

    // The plan: controllers first, in the hook's order, the leader last.
    let phases = update["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["controller", "kafka"], "{update:#}");
    let step_pods: Vec<&str> =
        phases[0]["steps"].as_array().unwrap().iter().map(|s| s["pod_instance"].as_str().unwrap()).collect();
    assert_eq!(step_pods.len(), 3);
    assert_eq!(step_pods.last(), Some(&leader_pod.as_str()), "the active controller's step is last: {update:#}");
    assert!(read(&sched.log).contains("update order from the hook"), "the scheduler ran the update-order hook");
    // The task launches agree with the plan.
    let controllers = launch_order(&after, "controller");
    assert_eq!(controllers, step_pods, "controllers restarted in the plan's order");
    assert_eq!(controllers.last(), Some(&leader_pod), "the active controller {leader_pod} restarted last");
    let last_controller = after.iter().filter(|(n, _)| n.starts_with("controller-")).map(|(_, c)| c.launched_ms).max();
    let first_broker = after.iter().filter(|(n, _)| n.starts_with("kafka-")).map(|(_, c)| c.launched_ms).min();
    assert!(last_controller.unwrap() < first_broker.unwrap(), "controllers rolled before brokers: {after:?}");
    let broker_steps: Vec<&str> =
        phases[1]["steps"].as_array().unwrap().iter().map(|s| s["pod_instance"].as_str().unwrap()).collect();
    assert_eq!(launch_order(&after, "kafka"), broker_steps, "brokers restarted in the plan's order");

    // The new configs run, the quorum is whole, every partition in sync.
    for (pod, c) in &after {
        let props = server_properties(d, &c.task);
        assert!(props.contains("num.io.threads=3\n"), "{pod} runs the new config:\n{props}");
    }
    let (voters_after, leader_after) = wait_for("the quorum after the roll", T, || async {
        quorum(d).filter(|(v, l)| *v == [3000, 3001, 3002] && v.contains(l))
    })
    .await;
    wait_for("every partition in sync after the roll", T, || {
        let client = client.clone();
        async move {
            let admin = KafkaAdmin::connect(&client).await.ok()?;
            let t = admin.describe_topic(TOPIC).await.ok()?;
            t.partitions.iter().all(|p| p.leader.is_some() && p.isr.len() == 3).then_some(())
        }
    })
    .await;

    eprintln!(
        "kafka controllers e2e: deployed 3 controllers + 3 brokers in {deployed_in:?} (voters {voters:?}, \
         leader {leader}); rolled both pod types in {rolled_in:?}: controllers {controllers:?} (leader \
         {leader_before} last), brokers {broker_steps:?}; quorum after {voters_after:?} leader {leader_after}; \
         total {:?}",
        started.elapsed()
    );
}
