//! Scaling the Kafka catalog service with real brokers: three brokers over
//! four agents in three zones; `smack kafka scale --brokers 4` deploys a
//! fourth and rebalances replicas onto it (rack-aware, throttled, the
//! throttles removed after); `smack kafka scale --brokers 3` decommissions
//! it, its hook (`smack kafka drain`) moving every replica off and taking
//! it out of the controller quorum as its last act, after which it does
//! not join again before the pod is stopped (no voter is left to prune)
//! and its reservation and volume are released; every record stays
//! readable; and
//! `--brokers 2` is refused, naming the topic whose replication needs 3.

use crate::support::smack_at_verbose as cli;
use crate::support::*;
use smack_catalog::artifacts::Service;
use smack_catalog::kafka::service::kafka_service_yaml;
use smack_connectors::kafka::{
    KafkaAdmin, KafkaClientConfig, KafkaSource, SourceConfig, StartPosition, TopicDescription,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// JVMs starting one after another on two busy cores.
const DEPLOY: Duration = Duration::from_secs(900);
const T: Duration = Duration::from_secs(300);
const RECORDS: usize = 20_000;
const TOPIC: &str = "events";

/// A long-running CLI call off the async workers.
async fn cli_blocking(dir: &Path, args: &[&str]) -> Result<String, String> {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, &a)
    })
    .await
    .expect("the CLI call")
}

/// The topic with every partition led and its replicas (`rf`, on distinct
/// brokers among `brokers`) all in sync.
async fn settled(admin: &KafkaAdmin, rf: usize, brokers: &BTreeSet<i32>) -> Option<TopicDescription> {
    let t = admin.describe_topic(TOPIC).await.ok()?;
    t.partitions
        .iter()
        .all(|p| {
            let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
            p.leader.is_some()
                && p.replicas.len() == rf
                && distinct.len() == rf
                && distinct.is_subset(brokers)
                && p.isr.len() == rf
        })
        .then_some(t)
}

/// No replication throttle left on any broker or on the topic.
async fn no_throttles(admin: &KafkaAdmin, brokers: &BTreeSet<i32>) -> Option<()> {
    let set = |v: &smack_connectors::kafka::ConfigValue| {
        !v.is_default && v.value.as_deref().is_some_and(|s| !s.is_empty()) && !v.source.contains("STATIC")
    };
    for b in brokers {
        let cfg = admin.describe_broker_configs(*b).await.ok()?;
        for k in ["leader.replication.throttled.rate", "follower.replication.throttled.rate"] {
            if cfg.get(k).is_some_and(set) {
                return None;
            }
        }
    }
    let cfg = admin.describe_topic_configs(TOPIC).await.ok()?;
    for k in ["leader.replication.throttled.replicas", "follower.replication.throttled.replicas"] {
        if cfg.get(k).is_some_and(set) {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_scales_up_with_a_rebalance_and_down_with_a_drain() {
    let started = Instant::now();
    service_jars(Service::Kafka).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zones = ["zone-a", "zone-b", "zone-c", "zone-a"];
    let (m, _agents) = MasterProc::start_zoned(d, &zones, "45000-45099").await;

    let opts = kafka_test_options(3);
    let sf = write_spec(&d.join("kafka.yaml"), &kafka_service_yaml(&opts));
    let sched = service_scheduler("scheduler", d, &sf);
    let _diag = PanicDump {
        dir: d.to_path_buf(),
        sched_log: sched.log.clone(),
        plans: &["deploy", "update", "decommission", "recovery"],
    };

    // Three brokers, each ready before the next.
    wait_plan(d, "deploy", "COMPLETE", DEPLOY).await;
    let deployed_in = started.elapsed();
    let three: BTreeSet<i32> = [0, 1, 2].into();
    let four: BTreeSet<i32> = [0, 1, 2, 3].into();
    let bootstrap = cli(d, &["endpoints", "kafka"]).unwrap().trim().to_string();
    cli(d, &["kafka", "topic", "create", TOPIC, "--partitions", "6", "--replication", "3"]).unwrap();

    let client = KafkaClientConfig::new(bootstrap.clone()).with_timeout(Duration::from_secs(30));
    let admin = KafkaAdmin::connect(&client).await.unwrap();
    produce_keyed(&client, TOPIC, RECORDS, 500).await;
    wait_for("the topic settled on 3 brokers", T, || settled(&admin, 3, &three)).await;

    // 3 → 4: the new broker is deployed, then holds a share of the replicas.
    let up_from = Instant::now();
    let out = cli_blocking(d, &["kafka", "scale", "--brokers", "4"]).await.unwrap_or_else(|e| panic!("scale up: {e}"));
    let up_in = up_from.elapsed();
    eprintln!("--- smack kafka scale --brokers 4 ---\n{out}");
    assert!(out.contains("broker(s) [3] registered; rebalancing"), "{out}");
    assert!(out.contains("REASSIGN throttled to"), "the move was throttled: {out}");
    assert!(out.contains("REASSIGN done") && out.contains("REASSIGN throttles removed"), "{out}");
    let t = wait_for("the topic settled on 4 brokers", T, || settled(&admin, 3, &four)).await;
    let on_new = t.partitions.iter().filter(|p| p.replicas.contains(&3)).count();
    assert!(on_new >= 1, "broker 3 holds replicas of {TOPIC} after the rebalance: {t:?}");
    let brokers = wait_for("4 brokers with racks", T, || async {
        let v = smack_json(d, &["kafka", "brokers"])?;
        (v.as_array()?.len() == 4 && v.as_array()?.iter().all(|b| b["rack"].is_string())).then_some(v)
    })
    .await;
    let racks: BTreeMap<i32, String> = brokers
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_i64().unwrap() as i32, b["rack"].as_str().unwrap().to_string()))
        .collect();
    for p in &t.partitions {
        let spread: BTreeSet<&String> = p.replicas.iter().map(|b| &racks[b]).collect();
        assert_eq!(
            spread.len(),
            3,
            "partition {} spans three racks after the rebalance: {:?} {racks:?}",
            p.id,
            p.replicas
        );
    }
    wait_for("no replication throttle left", T, || no_throttles(&admin, &four)).await;
    // The new broker's readiness check made it a voter before the scale-up ended.
    let quorum = smack_json(d, &["kafka", "quorum"]).expect("smack kafka quorum");
    assert_eq!(quorum["voters"], serde_json::json!([0, 1, 2, 3]), "broker 3 joined the quorum: {quorum}");

    // The new pod's reservation and volume, to watch them leave the ledger.
    let status = smack_json(d, &["pod", "status", "kafka-3"]).unwrap();
    let res_id = status[0]["pod"]["reservation_id"].as_str().unwrap().to_string();
    let vol_id = status[0]["pod"]["volume_ids"][0].as_str().unwrap().to_string();
    let host = status[0]["pod"]["hostname"].as_str().unwrap().to_string();
    let agent_name = format!("a{}", host.rsplit('.').next().unwrap());
    let ledger = m.client().state().await.unwrap();
    assert!(ledger.agents.iter().flat_map(|a| &a.reservations).any(|r| r.id == res_id), "kafka-3 reserved");

    // 4 → 3: the decommission plan runs the drain hook, then stops kafka-3.
    let down_from = Instant::now();
    let out =
        cli_blocking(d, &["kafka", "scale", "--brokers", "3"]).await.unwrap_or_else(|e| panic!("scale down: {e}"));
    let down_in = down_from.elapsed();
    eprintln!("--- smack kafka scale --brokers 3 ---\n{out}");
    assert!(out.contains("controller voters [0, 1, 2]"), "the quorum is 0,1,2 again: {out}");
    // Broker 3 left the quorum in its hook and was no voter when stopped:
    // nothing was left for the scale command to prune.
    assert!(!out.contains("still a voter but its pod is gone"), "broker 3 joined the quorum again: {out}");
    let quorum = smack_json(d, &["kafka", "quorum"]).expect("smack kafka quorum");
    assert_eq!(quorum["voters"], serde_json::json!([0, 1, 2]), "Kafka's controller voters");
    let hook_out = std::fs::read_dir(d.join("agents").join(&agent_name).join("sandboxes"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kafka-3-decommission-hook"))
        .map(|e| read(e.path().join("stdout")))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("--- the decommission hook of kafka-3 ---\n{hook_out}");
    assert!(hook_out.contains("DRAINED broker 3: 0 replicas left"), "the hook drained broker 3:\n{hook_out}");
    assert!(hook_out.contains("REASSIGN throttles removed") || hook_out.contains("holds no replica"), "{hook_out}");
    assert!(
        hook_out.contains("broker 3 left the controller quorum (voters were [0, 1, 2, 3], now [0, 1, 2])"),
        "the hook took broker 3 out of the quorum as its last act: {hook_out}"
    );
    let hook_tail = hook_out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(hook_tail.contains("left the controller quorum"), "the removal is the hook's last act: {hook_out}");
    assert!(read(&sched.log).contains("the decommission hook succeeded"), "the scheduler saw the hook exit 0");
    wait_for("kafka-3's reservation and volume leave the ledger", T, || async {
        let s = m.client().state().await.ok()?;
        let res = s.agents.iter().flat_map(|a| &a.reservations);
        let gone = !res.clone().any(|r| r.id == res_id) && !res.flat_map(|r| &r.volumes).any(|v| v.id == vol_id);
        gone.then_some(())
    })
    .await;
    let pods = smack_json(d, &["pod", "list"]).unwrap();
    let names: Vec<&str> = pods.as_array().unwrap().iter().map(|p| p["pod"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kafka-0", "kafka-1", "kafka-2"]);
    let admin = KafkaAdmin::connect(&client).await.unwrap();
    let t = wait_for("the topic settled on brokers 0..2", T, || settled(&admin, 3, &three)).await;
    let ids: BTreeSet<i32> = admin.snapshot().await.unwrap().brokers.iter().map(|b| b.id).collect();
    assert_eq!(ids, three, "broker 3 left the cluster");

    // Every record, once.
    let source_cfg = SourceConfig::new(client.clone(), "kafka-scale-e2e", TOPIC, (0..6).collect())
        .starting_at(StartPosition::Earliest);
    let mut source = KafkaSource::open(source_cfg).await.unwrap();
    let (seen, _) = read_distinct(&mut source, RECORDS, T).await;
    assert!((0..RECORDS).all(|i| seen.contains(&format!("record-{i}"))));
    drop(source);

    // 3 → 2 would leave fewer brokers than the topic's replication: refused.
    let refused = cli_blocking(d, &["kafka", "scale", "--brokers", "2"]).await.expect_err("2 brokers for RF 3");
    assert!(refused.contains("events (replication 3)"), "{refused}");
    assert!(refused.contains("refusing to scale service kafka from 3 to 2"), "{refused}");
    let pods = smack_json(d, &["pod", "list"]).unwrap();
    assert_eq!(pods.as_array().unwrap().len(), 3, "nothing was decommissioned");

    eprintln!(
        "kafka scale e2e: deployed 3 brokers in {deployed_in:?}; scale 3→4 with rebalance in {up_in:?} \
         ({on_new} partition(s) of {TOPIC} on broker 3); scale 4→3 with drain in {down_in:?}; total {:?}\n{t:?}",
        started.elapsed()
    );
}
