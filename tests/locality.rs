//! Data locality end to end: three agents in three zones, a three-broker
//! Kafka service (`kafka_service_yaml`) and a three-partition topic made by
//! the pipeline's own `prepare` (Kafka spreads the leaders over the brokers,
//! so each task has one broker leading most of its partitions; with six, a
//! task's two partitions are often led by two brokers, a tie); then the
//! pipeline's three-task stage service, laid out by `layout::stage_services`
//! with the partition leaders the admin API reports (as `pipeline apply`
//! does), run by its own scheduler with the real `smack stage run` tasks.
//! Each stage task must run on the agent whose broker leads most of its
//! partitions. Both sides are read back from the APIs, independently of the
//! layout's code: leaders from `smack kafka topic describe --output json`,
//! the brokers' and stage tasks' agents from `smack pod list --output json`;
//! the expected agent is computed here in plain code (task i of N owns the
//! partitions whose rank mod N is i).

use crate::support::smack_at as cli;
use crate::support::*;
use smack_catalog::artifacts::Service;
use smack_catalog::kafka::service::kafka_service_yaml;
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig};
use smack_pipelines::layout::{self, BrokerPlace, Endpoints, Leaders};
use smack_pipelines::task::{prepare, PrepareOptions};
use smack_pipelines::PipelineSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Three JVMs starting one after another on two busy cores.
const DEPLOY: Duration = Duration::from_secs(420);
const T: Duration = Duration::from_secs(180);
const TOPIC: &str = "events";

const PIPELINE: &str = "name: locality
services:
  kafka:
    brokers: 3
sources:
  events:
    type: kafka
    topic: events
    partitions: 3
    replication: 3
    format: json
    schema:
      k: string
      ts: timestamp
    event-time: ts
stages:
  pass_through:
    sql: SELECT k, ts FROM events
    parallelism: 3
sinks:
  out:
    type: kafka
    from: pass_through
    topic: events-out
";

async fn wait_deployed(dir: &Path, service: &str, within: Duration) {
    wait_for(&format!("service {service}: plan deploy COMPLETE"), within, || async {
        let v = smack_json(dir, &["plan", "show", "deploy", "--service", service])?;
        (v["status"] == "COMPLETE").then_some(())
    })
    .await
}

/// Pod index → (hostname, zone) of a service's placed pods, from `pod list`.
fn placed_pods(dir: &Path, service: &str) -> Option<BTreeMap<u32, (String, String)>> {
    let pods = smack_json(dir, &["pod", "list", "--service", service])?;
    let mut out = BTreeMap::new();
    for p in pods.as_array()? {
        let pod = &p["pod"];
        pod["agent_id"].as_str()?;
        let host = pod["hostname"].as_str()?.to_string();
        let zone = pod["attributes"]["zone"].as_str().unwrap_or("").to_string();
        out.insert(pod["index"].as_u64()? as u32, (host, zone));
    }
    Some(out)
}

/// Dumps the schedulers' plans, pods and log tails when the test fails.
struct Diag {
    dir: PathBuf,
    logs: Vec<(String, PathBuf)>,
}

impl Drop for Diag {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (service, log) in &self.logs {
            eprintln!("{service} deploy: {:?}", cli(&self.dir, &["plan", "show", "deploy", "--service", service]));
            eprintln!("{service} pods: {:?}", cli(&self.dir, &["pod", "list", "--service", service]));
            let text = read(log);
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("{service} scheduler log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_task_runs_on_the_agent_leading_most_of_its_partitions() {
    service_jars(Service::Kafka).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let _agents = m.zoned_agents(&p, &["zone-a", "zone-b", "zone-c"], "46000-46099").await;
    let sd = d.display().to_string();

    // Three brokers, one per zone.
    let opts = kafka_test_options(3);
    let kf = write_spec(&d.join("kafka.yaml"), &kafka_service_yaml(&opts));
    let kafka_sched = spawn("kafka-scheduler", &["--state-dir", &sd, "service", "run", &kf], &d.join("logs"));
    let mut diag = Diag { dir: d.to_path_buf(), logs: vec![(opts.name.clone(), kafka_sched.log.clone())] };
    wait_deployed(d, &opts.name, DEPLOY).await;
    let bootstrap = cli(d, &["endpoints", "kafka", "--service", &opts.name]).unwrap().trim().to_string();

    // The pipeline's topics, as `pipeline apply` makes them.
    let spec = PipelineSpec::from_yaml(PIPELINE, "locality.yaml").unwrap_or_else(|e| panic!("{e}"));
    let admin = KafkaAdmin::connect(&KafkaClientConfig::new(bootstrap.clone()).with_timeout(Duration::from_secs(30)))
        .await
        .expect("connect to the brokers");
    prepare(&spec, &admin, None, &PrepareOptions::new("dc1", 1)).await.expect("topics created");
    let described = admin.await_topic(TOPIC, T).await.expect("every partition has a leader");

    // The layout, with the leaders and the brokers' agents (broker id = pod index).
    let mut leaders = Leaders::default();
    leaders.add_topic(&described);
    let brokers = placed_pods(d, &opts.name).expect("the brokers' pods");
    for (index, (host, zone)) in &brokers {
        leaders.brokers.insert(*index as i32, BrokerPlace { host: host.clone(), zone: Some(zone.clone()) });
    }
    let ep = Endpoints { bootstrap: bootstrap.clone(), cassandra: Vec::new() };
    let docs = layout::stage_services(&spec, PIPELINE, &ep, &leaders);
    assert_eq!(docs.len(), 1);
    let stage = &docs[0];
    assert!(stage.yaml.contains("prefer:"), "the stage pods carry their preferences:\n{}", stage.yaml);
    let stage_file = d.join("stage.yaml");
    std::fs::write(&stage_file, &stage.yaml).unwrap();
    let sf = stage_file.display().to_string();
    cli(d, &["service", "validate", &sf]).unwrap_or_else(|e| panic!("the stage spec is refused: {e}"));
    let stage_sched = spawn("stage-scheduler", &["--state-dir", &sd, "service", "run", &sf], &d.join("logs"));
    diag.logs.push((stage.name.clone(), stage_sched.log.clone()));
    wait_deployed(d, &stage.name, T).await;

    // Both sides, read back from the APIs.
    let topic = smack_json(d, &["kafka", "topic", "describe", TOPIC, "--service", &opts.name]).expect("topic describe");
    let mut leader_of: BTreeMap<i64, i64> = BTreeMap::new();
    for part in topic["partitions"].as_array().expect("partitions") {
        let leader = part["leader"].as_i64().unwrap_or_else(|| panic!("partition without a leader: {topic:#}"));
        leader_of.insert(part["id"].as_i64().unwrap(), leader);
    }
    assert_eq!(leader_of.len(), 3, "{topic:#}");
    let brokers = placed_pods(d, &opts.name).expect("the brokers' pods");
    let tasks = placed_pods(d, &stage.name).expect("the stage's pods");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let n = 3;
    let mut summary = Vec::new();
    for (i, (host, _)) in &tasks {
        // Task i owns the partitions whose rank (ids sorted) mod N is i.
        let mut count: BTreeMap<i64, usize> = BTreeMap::new();
        for (rank, (_, leader)) in leader_of.iter().enumerate() {
            if rank % n == *i as usize {
                *count.entry(*leader).or_default() += 1;
            }
        }
        let most = count.values().copied().max().unwrap();
        let broker = count.iter().find(|(_, c)| **c == most).map(|(b, _)| *b).unwrap();
        let want = &brokers[&(broker as u32)].0;
        summary.push(format!("task {i}: leaders {count:?} → broker {broker} on {want}; runs on {host}"));
        assert_eq!(host, want, "stage task {i} runs where broker {broker} leads most of its partitions: {summary:#?}");
    }
    eprintln!("{}", summary.join("\n"));
}
