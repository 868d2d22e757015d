//! The layout of a pipeline on the cluster: the service specs `pipeline
//! apply` hands to the operator framework, in the order it deploys them —
//! the Kafka and Cassandra catalog services (unless external), then one
//! stage service per stage (N pods, each with a small persistent volume for
//! its checkpoints), then the generator the pipeline may declare.
//!
//! Names: services are `<pipeline>-kafka`, `<pipeline>-cassandra`,
//! `<pipeline>-<stage>` (with `_` as `-`) and `<pipeline>-generator`. A
//! stage's pods are `<stage>-0 … <stage>-N-1`, pod `i` running stage task `i`
//! of `N`. Specs are YAML text, the format `smack service apply` reads; every
//! value that comes from the pipeline file is written as a JSON string, which
//! YAML reads back unchanged.
//!
//! Data locality: given where the sources' partitions are led from
//! ([`Leaders`]), pod `i` of a stage prefers (`prefer:` in its service spec)
//! the agent of the broker leading most of task `i`'s partitions, then that
//! broker's zone ([`stage_preferences`]). The scheduler uses it only when it
//! places a pod anew; a pod on its own volume stays where it is.

use crate::spec::{GeneratorSpec, PipelineSpec, PlacementRule, Sink, Source};
use smack_catalog::cassandra::service::{cassandra_service_yaml, CassandraServiceOptions};
use smack_catalog::kafka::service::{kafka_service_yaml, KafkaServiceOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One service spec to deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDoc {
    /// The service's name (its framework).
    pub name: String,
    /// The spec, as `smack service apply` reads it.
    pub yaml: String,
}

/// Where the pipeline's clusters answer, once they run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoints {
    /// Kafka bootstrap servers, `host:port,…`.
    pub bootstrap: String,
    /// Cassandra contact points, `host:port`.
    pub cassandra: Vec<String>,
}

/// What a layout keeps between applies: the Kafka cluster id is made once
/// and reused, so a re-apply never asks brokers to join another cluster.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayoutState {
    pub kafka_cluster_id: Option<String>,
}

/// Where the partitions of the pipeline's topics are led from, as the Kafka
/// admin API tells once the topics exist. Empty when unknown: the stages
/// then have no placement preference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leaders {
    /// Topic → partition id → its leader's broker id (`None`: no leader).
    pub topics: BTreeMap<String, BTreeMap<i32, Option<i32>>>,
    /// Broker id → where that broker runs.
    pub brokers: BTreeMap<i32, BrokerPlace>,
}

/// The agent a broker runs on: its hostname and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPlace {
    pub host: String,
    pub zone: Option<String>,
}

impl Leaders {
    /// Records a topic's partitions and their leaders.
    pub fn add_topic(&mut self, t: &smack_connectors::kafka::TopicDescription) {
        self.topics.insert(t.name.clone(), t.partitions.iter().map(|p| (p.id, p.leader)).collect());
    }
}

/// For each task of `stage` (0 … parallelism-1), the broker that leads most
/// of its partitions over every source topic the stage reads (task `i` of
/// `N` owns the partitions `assign_partition_ids` gives it), ties going to
/// the lowest broker id; `None` when no partition of the task has a known
/// leader.
pub fn stage_leaders(p: &PipelineSpec, stage: &str, leaders: &Leaders) -> Vec<Option<i32>> {
    let n = p.stages.get(stage).map_or(0, |s| s.parallelism);
    // The sources the stage reads, directly or through earlier stages.
    let sub = crate::task::stage_pipeline(p, stage).ok();
    let sources = sub.as_ref().map_or(&p.sources, |s| &s.sources);
    let topics: Vec<&BTreeMap<i32, Option<i32>>> = sources
        .values()
        .filter_map(|s| match s {
            Source::Kafka(k) => leaders.topics.get(&k.topic),
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut led: BTreeMap<i32, usize> = BTreeMap::new();
            for t in &topics {
                let ids: Vec<i32> = t.keys().copied().collect();
                let owned = smack_connectors::kafka::assign_partition_ids(&ids, i, n).unwrap_or_default();
                for leader in owned.iter().filter_map(|p| t.get(p).copied().flatten()) {
                    *led.entry(leader).or_default() += 1;
                }
            }
            // Most partitions first, then the lowest id (BTreeMap order).
            led.into_iter().fold(None, |best: Option<(i32, usize)>, (b, c)| match best {
                Some((_, bc)) if bc >= c => best,
                _ => Some((b, c)),
            })
        })
        .map(|best| best.map(|(b, _)| b))
        .collect()
}

/// `prefer:` entries for the pods of `stage`: the agent (and zone) of the
/// broker [`stage_leaders`] names for each task; `None` for a task with no
/// known leader or whose leader's place is unknown.
pub fn stage_preferences(p: &PipelineSpec, stage: &str, leaders: &Leaders) -> Vec<Option<BrokerPlace>> {
    stage_leaders(p, stage, leaders).into_iter().map(|b| b.and_then(|b| leaders.brokers.get(&b).cloned())).collect()
}

/// Resources of one stage task and of the generator (not in the file yet).
const STAGE_CPUS: f64 = 0.5;
const STAGE_MEM_MB: u64 = 512;
const STAGE_VOLUME_MB: u64 = 256;
const GENERATOR_CPUS: f64 = 0.2;
const GENERATOR_MEM_MB: u64 = 128;

pub fn kafka_service_name(p: &PipelineSpec) -> String {
    format!("{}-kafka", p.name)
}
pub fn cassandra_service_name(p: &PipelineSpec) -> String {
    format!("{}-cassandra", p.name)
}
pub fn stage_service_name(p: &PipelineSpec, stage: &str) -> String {
    format!("{}-{}", p.name, dns(stage))
}
pub fn generator_service_name(p: &PipelineSpec) -> String {
    format!("{}-generator", p.name)
}

/// `card_velocity` → `card-velocity`: service and pod names take `-`.
fn dns(name: &str) -> String {
    name.replace('_', "-")
}

fn rule_yaml(r: &PlacementRule) -> String {
    match r {
        PlacementRule::Unique(a) => format!("unique: {a}"),
        PlacementRule::GroupBy(a) => format!("group-by: {a}"),
        PlacementRule::MaxPer(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("max-per: {{{}}}", inner.join(", "))
        }
    }
}

/// The services a pipeline deploys, in deploy order: its Kafka and its
/// Cassandra (when smack runs them), each stage, then the generator.
pub fn service_names(p: &PipelineSpec, state: &LayoutState) -> Vec<String> {
    let mut names = Vec::new();
    if kafka_service(p, &mut state.clone()).is_some() {
        names.push(kafka_service_name(p));
    }
    if cassandra_service(p).is_some() {
        names.push(cassandra_service_name(p));
    }
    names.extend(p.stages.keys().map(|s| stage_service_name(p, s)));
    if p.generator.is_some() {
        names.push(generator_service_name(p));
    }
    names
}

/// The Kafka catalog service, unless the pipeline uses an external cluster
/// or none; `state` gets the cluster id the first time.
pub fn kafka_service(p: &PipelineSpec, state: &mut LayoutState) -> Option<ServiceDoc> {
    let k = p.services.kafka.as_ref().filter(|k| k.external.is_none())?;
    let mut o = KafkaServiceOptions::new(k.brokers);
    o.name = kafka_service_name(p);
    o.cpus = k.cpus;
    o.mem_mb = k.mem.mib();
    o.disk_mb = k.disk.mib();
    o.placement = k.placement.iter().map(rule_yaml).collect();
    o.controllers = k.controllers.unwrap_or(0);
    match &state.kafka_cluster_id {
        Some(id) => o.cluster_id = id.clone(),
        None => state.kafka_cluster_id = Some(o.cluster_id.clone()),
    }
    Some(ServiceDoc { name: o.name.clone(), yaml: kafka_service_yaml(&o) })
}

/// The Cassandra catalog service, unless external or not needed.
pub fn cassandra_service(p: &PipelineSpec) -> Option<ServiceDoc> {
    let c = p.services.cassandra.as_ref().filter(|c| c.external.is_none())?;
    let mut o = CassandraServiceOptions::new(c.nodes);
    o.name = cassandra_service_name(p);
    o.cpus = c.cpus;
    o.mem_mb = c.mem.mib();
    o.disk_mb = c.disk.mib();
    o.datacenter = c.datacenter.clone();
    o.placement = c.placement.iter().map(rule_yaml).collect();
    Some(ServiceDoc { name: o.name.clone(), yaml: cassandra_service_yaml(&o) })
}

/// The endpoints of external clusters the file names (the rest are known
/// once the catalog services run).
pub fn external_endpoints(p: &PipelineSpec) -> Endpoints {
    Endpoints {
        bootstrap: p
            .services
            .kafka
            .as_ref()
            .and_then(|k| k.external.as_ref())
            .map(|e| e.bootstrap_servers.join(","))
            .unwrap_or_default(),
        cassandra: p
            .services
            .cassandra
            .as_ref()
            .and_then(|c| c.external.as_ref())
            .map(|e| e.contact_points.clone())
            .unwrap_or_default(),
    }
}

/// The replication of each keyspace the sinks write: NetworkTopologyStrategy
/// with the pipeline's datacenter at min(3, nodes).
pub fn keyspaces(p: &PipelineSpec) -> BTreeMap<String, BTreeMap<String, u32>> {
    let (dc, nodes) = match &p.services.cassandra {
        Some(c) => (c.datacenter.clone(), if c.external.is_some() { 3 } else { c.nodes }),
        None => ("dc1".to_string(), 1),
    };
    let rf = nodes.clamp(1, 3);
    p.sinks
        .values()
        .filter_map(|s| match s {
            Sink::Cassandra(c) => Some((c.keyspace.clone(), [(dc.clone(), rf)].into())),
            Sink::Kafka(_) => None,
        })
        .collect()
}

/// One stage service per stage, its tasks pointed at the clusters, each pod
/// preferring the agent that leads most of its partitions (`leaders`; no
/// preference where it is empty).
pub fn stage_services(p: &PipelineSpec, pipeline_yaml: &str, ep: &Endpoints, leaders: &Leaders) -> Vec<ServiceDoc> {
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    p.stages
        .iter()
        .map(|(stage, st)| {
            let name = stage_service_name(p, stage);
            let pod = dns(stage);
            let mut cmd = format!(
                "printf '%s' \"$SMACK_PIPELINE_YAML\" > pipeline.yaml && exec \"$SMACK_BIN\" stage run \
                 --pipeline pipeline.yaml --stage {stage} --task-index $POD_INSTANCE_INDEX --task-count {n} \
                 --state-dir-volume \"$VOLUME_STATE\" --metrics-port $PORT_METRICS",
                n = st.parallelism
            );
            if !ep.bootstrap.is_empty() {
                cmd.push_str(&format!(" --bootstrap {}", ep.bootstrap));
            }
            if !ep.cassandra.is_empty() {
                cmd.push_str(&format!(" --cassandra {}", ep.cassandra.join(",")));
            }
            let prefs = stage_preferences(p, stage, leaders);
            let mut prefer = String::new();
            if prefs.iter().any(Option::is_some) {
                prefer.push_str("    prefer:\n");
                for pref in &prefs {
                    let _ = match pref {
                        Some(BrokerPlace { host, zone: Some(z) }) => {
                            writeln!(prefer, "      - {{hostname: {}, zone: {}}}", q(host), q(z))
                        }
                        Some(BrokerPlace { host, zone: None }) => writeln!(prefer, "      - {{hostname: {}}}", q(host)),
                        None => writeln!(prefer, "      - {{}}"),
                    };
                }
            }
            let yaml = format!(
                "name: {name}\n\
                 pods:\n  {pod}:\n    count: {n}\n\
                 \x20   resources:\n      cpus: {STAGE_CPUS}\n      mem: {STAGE_MEM_MB}\n      ports:\n        metrics: 0\n\
                 \x20   volumes:\n      - path: state\n        type: ROOT\n        size: {STAGE_VOLUME_MB}\n\
                 \x20   placement:\n      - group-by: zone\n{prefer}\
                 \x20   tasks:\n      run:\n        cmd: {cmd}\n        goal: RUNNING\n        kill-grace-period: 20s\n\
                 \x20       env:\n          SMACK_PIPELINE_YAML: {text}\n\
                 \x20       readiness-check:\n          http: {{ port: metrics, path: /metrics }}\n          interval: 2s\n          timeout: 2s\n",
                n = st.parallelism,
                cmd = q(&cmd),
                text = q(pipeline_yaml),
            );
            ServiceDoc { name, yaml }
        })
        .collect()
}

/// The generator's service, producing into the sources' topics.
pub fn generator_service(p: &PipelineSpec, g: &GeneratorSpec, ep: &Endpoints) -> ServiceDoc {
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let name = generator_service_name(p);
    let mut cmd = format!(
        "exec \"$SMACK_BIN\" generate {} --rate {} --seed {} --kafka {}",
        g.example.name(),
        g.rate,
        g.seed,
        ep.bootstrap
    );
    for src in g.example.sources() {
        if let Some(Source::Kafka(k)) = p.sources.get(*src) {
            cmd.push_str(&format!(" --topic {src}={}", k.topic));
        }
    }
    // Avro sources get Avro records: the schema the source derives from its
    // fields (the generator cannot carry an inline writer schema), with the
    // source's framing and schema id.
    let avro = g.example.sources().iter().find_map(|src| match p.sources.get(*src) {
        Some(Source::Kafka(k)) if k.format == crate::spec::Format::Avro => Some(k.avro.clone().unwrap_or_default()),
        _ => None,
    });
    if let Some(a) = avro {
        cmd.push_str(" --format avro");
        if a.wire_format == crate::spec::AvroWireFormat::Plain {
            cmd.push_str(" --avro-wire-format plain");
        }
        if let Some(id) = a.schema_id {
            cmd.push_str(&format!(" --schema-id {id}"));
        }
    }
    if let Some(n) = g.count {
        cmd.push_str(&format!(" --count {n}"));
    }
    if let Some(s) = g.malformed_share {
        cmd.push_str(&format!(" --malformed-share {s}"));
    }
    if let Some(s) = g.fraud_share {
        cmd.push_str(&format!(" --fraud-share {s}"));
    }
    let goal = if g.count.is_some() { "FINISH" } else { "RUNNING" };
    let yaml = format!(
        "name: {name}\n\
         pods:\n  generator:\n    count: 1\n\
         \x20   resources:\n      cpus: {GENERATOR_CPUS}\n      mem: {GENERATOR_MEM_MB}\n\
         \x20   tasks:\n      produce:\n        cmd: {cmd}\n        goal: {goal}\n",
        cmd = q(&cmd),
    );
    ServiceDoc { name, yaml }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_operator::scheduler::spec::ServiceSpec;
    use std::path::Path;

    fn example(name: &str) -> (PipelineSpec, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}/pipeline.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        (crate::load(&path).unwrap(), text)
    }

    fn parse(doc: &ServiceDoc) -> ServiceSpec {
        ServiceSpec::from_yaml(&doc.yaml, &doc.name).unwrap_or_else(|e| panic!("{}:\n{e}\n{}", doc.name, doc.yaml))
    }

    #[test]
    fn the_fraud_example_lays_out_into_valid_service_specs() {
        let (p, text) = example("fraud-detection");
        let mut st = LayoutState::default();
        let kafka = kafka_service(&p, &mut st).expect("kafka is run by smack");
        assert_eq!(kafka.name, "fraud-detection-kafka");
        let k = parse(&kafka);
        assert_eq!(k.pods[0].count, p.services.kafka.as_ref().unwrap().brokers);
        let id = st.kafka_cluster_id.clone().expect("a cluster id is made once");
        // Applied again, the layout keeps the cluster id.
        let again = kafka_service(&p, &mut st).unwrap();
        assert_eq!(again.yaml, kafka.yaml);
        assert_eq!(st.kafka_cluster_id.as_deref(), Some(id.as_str()));
        let c = parse(&cassandra_service(&p).expect("cassandra is run by smack"));
        let names = service_names(&p, &st);
        assert_eq!(names[..2], ["fraud-detection-kafka", "fraud-detection-cassandra"]);
        assert_eq!(names.len(), 2 + p.stages.len() + usize::from(p.generator.is_some()));
        assert_eq!(c.pods[0].count, p.services.cassandra.as_ref().unwrap().nodes);

        let ep = Endpoints { bootstrap: "10.0.0.1:9092,10.0.0.2:9092".into(), cassandra: vec!["10.0.0.1:9042".into()] };
        let stages = stage_services(&p, &text, &ep, &Leaders::default());
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].name, "fraud-detection-card-velocity");
        let s = parse(&stages[0]);
        let pod = &s.pods[0];
        assert_eq!(pod.name, "card-velocity");
        assert_eq!(pod.count, 3);
        assert_eq!(pod.volumes[0].path, "state");
        let task = &pod.tasks[0];
        assert!(
            task.cmd.contains("--stage card_velocity --task-index $POD_INSTANCE_INDEX --task-count 3"),
            "{}",
            task.cmd
        );
        assert!(task.cmd.contains("--bootstrap 10.0.0.1:9092,10.0.0.2:9092 --cassandra 10.0.0.1:9042"), "{}", task.cmd);
        // The pipeline text reaches the task unchanged.
        assert_eq!(task.env["SMACK_PIPELINE_YAML"], text);

        let g = generator_service(&p, p.generator.as_ref().expect("the example declares its generator"), &ep);
        let g = parse(&g);
        let cmd = &g.pods[0].tasks[0].cmd;
        assert!(cmd.contains("generate fraud") && cmd.contains("--topic transactions=transactions"), "{cmd}");
        assert!(!cmd.contains("--format"), "{cmd}");
        let mut avro = p.clone();
        if let Some(Source::Kafka(k)) = avro.sources.get_mut("transactions") {
            k.format = crate::spec::Format::Avro;
            k.avro = Some(crate::spec::AvroOptions { schema_id: Some(7), ..Default::default() });
        }
        let g = generator_service(&avro, avro.generator.as_ref().expect("the example declares its generator"), &ep);
        assert!(g.yaml.contains("--format avro --schema-id 7"), "{}", g.yaml);
    }

    /// Leaders of the fraud example's `transactions` (6 partitions; task i
    /// of 3 owns partitions i and i+3), and of a topic no stage reads.
    fn fraud_leaders(leaders: [Option<i32>; 6]) -> Leaders {
        let mut l = Leaders::default();
        l.topics.insert("transactions".into(), leaders.into_iter().enumerate().map(|(p, b)| (p as i32, b)).collect());
        l.topics.insert("unrelated".into(), (0..6).map(|p| (p, Some(1))).collect());
        l.brokers.insert(0, BrokerPlace { host: "10.0.0.1".into(), zone: Some("zone-a".into()) });
        l.brokers.insert(1, BrokerPlace { host: "10.0.0.2".into(), zone: Some("zone-b".into()) });
        l.brokers.insert(2, BrokerPlace { host: "10.0.0.3".into(), zone: None });
        l
    }

    #[test]
    fn each_stage_task_prefers_the_broker_leading_most_of_its_partitions() {
        let (p, text) = example("fraud-detection");
        // Task 0: partitions 0, 3 both led by 2. Task 1: 1 → 0 and 4 → 1, a
        // tie to the lowest id. Task 2: 2 → 1, 5 without a leader.
        let l = fraud_leaders([Some(2), Some(0), Some(1), Some(2), Some(1), None]);
        assert_eq!(stage_leaders(&p, "card_velocity", &l), [Some(2), Some(0), Some(1)]);
        // Only the task's own partitions count.
        let l2 = fraud_leaders([Some(1), Some(0), Some(2), Some(1), Some(0), Some(2)]);
        assert_eq!(stage_leaders(&p, "card_velocity", &l2), [Some(1), Some(0), Some(2)]);
        // No leaders known: no preference, and no `prefer:` in the spec.
        assert_eq!(stage_leaders(&p, "card_velocity", &Leaders::default()), [None, None, None]);
        let ep = Endpoints { bootstrap: "10.0.0.1:9092".into(), cassandra: vec![] };
        let plain = stage_services(&p, &text, &ep, &Leaders::default());
        assert!(!plain[0].yaml.contains("prefer"), "{}", plain[0].yaml);

        let docs = stage_services(&p, &text, &ep, &l);
        let s = parse(&docs[0]);
        let pod = &s.pods[0];
        let p0 = pod.preference(0).expect("task 0 prefers broker 2's agent");
        assert_eq!((p0.hostname.as_deref(), p0.zone.as_deref()), (Some("10.0.0.3"), None));
        let p1 = pod.preference(1).expect("task 1 prefers broker 0's agent");
        assert_eq!((p1.hostname.as_deref(), p1.zone.as_deref()), (Some("10.0.0.1"), Some("zone-a")));
        let p2 = pod.preference(2).expect("task 2 prefers broker 1's agent");
        assert_eq!((p2.hostname.as_deref(), p2.zone.as_deref()), (Some("10.0.0.2"), Some("zone-b")));
        // A leader whose place is unknown gives no preference.
        let mut l3 = l.clone();
        l3.brokers.remove(&2);
        let prefs = stage_preferences(&p, "card_velocity", &l3);
        assert!(prefs[0].is_none() && prefs[1].is_some());
        let s = parse(&stage_services(&p, &text, &ep, &l3)[0]);
        assert!(s.pods[0].preference(0).is_none());
        assert_eq!(s.pods[0].prefer.len(), 3);
    }

    #[test]
    fn keyspaces_replicate_at_most_three_times_in_the_datacenter() {
        let (p, _) = example("fraud-detection");
        let ks = keyspaces(&p);
        let c = p.services.cassandra.as_ref().unwrap();
        assert_eq!(ks["fraud"][&c.datacenter], c.nodes.min(3));
    }

    #[test]
    fn dedicated_kafka_controllers_when_asked() {
        let (mut p, _) = example("ad-tech");
        p.services.kafka.as_mut().unwrap().controllers = Some(3);
        let dedicated = parse(&kafka_service(&p, &mut LayoutState::default()).unwrap());
        let types: Vec<&str> = dedicated.pods.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(types, ["controller", "kafka"], "asked-for controllers come first");
        assert_eq!(dedicated.pods[0].count, 3);
    }

    #[test]
    fn external_clusters_are_not_deployed() {
        let (mut p, _) = example("ad-tech");
        p.services.kafka.as_mut().unwrap().external =
            Some(crate::spec::ExternalKafka { bootstrap_servers: vec!["k1:9092".into(), "k2:9092".into()] });
        assert!(kafka_service(&p, &mut LayoutState::default()).is_none());
        assert_eq!(external_endpoints(&p).bootstrap, "k1:9092,k2:9092");
    }
}
