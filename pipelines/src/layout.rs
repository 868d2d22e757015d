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

use crate::spec::{GeneratorSpec, PipelineSpec, PlacementRule, Sink, Source};
use smack_operator::catalog::cassandra_service::{cassandra_service_yaml, CassandraServiceOptions};
use smack_operator::catalog::kafka_service::{kafka_service_yaml, KafkaServiceOptions};
use std::collections::BTreeMap;

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

/// One stage service per stage, its tasks pointed at the clusters.
pub fn stage_services(p: &PipelineSpec, pipeline_yaml: &str, ep: &Endpoints) -> Vec<ServiceDoc> {
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
            let yaml = format!(
                "name: {name}\n\
                 pods:\n  {pod}:\n    count: {n}\n\
                 \x20   resources:\n      cpus: {STAGE_CPUS}\n      mem: {STAGE_MEM_MB}\n      ports:\n        metrics: 0\n\
                 \x20   volumes:\n      - path: state\n        type: ROOT\n        size: {STAGE_VOLUME_MB}\n\
                 \x20   placement:\n      - group-by: zone\n\
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
        assert_eq!(c.pods[0].count, p.services.cassandra.as_ref().unwrap().nodes);

        let ep = Endpoints { bootstrap: "10.0.0.1:9092,10.0.0.2:9092".into(), cassandra: vec!["10.0.0.1:9042".into()] };
        let stages = stage_services(&p, &text, &ep);
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
    }

    #[test]
    fn keyspaces_replicate_at_most_three_times_in_the_datacenter() {
        let (p, _) = example("fraud-detection");
        let ks = keyspaces(&p);
        let c = p.services.cassandra.as_ref().unwrap();
        assert_eq!(ks["fraud"][&c.datacenter], c.nodes.min(3));
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
