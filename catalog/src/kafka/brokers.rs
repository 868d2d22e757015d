//! The brokers as `smack kafka brokers` shows them: Kafka's view joined
//! with the scheduler's pods.

use super::service as kafka_service;
use smack_connectors::kafka::BrokerDescription;
use smack_operator::scheduler::api::PodView;

/// A broker as `smack kafka brokers` shows it: Kafka's view joined with
/// the scheduler's pod (when the service was found through it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerRow {
    pub id: i32,
    pub host: String,
    pub port: i32,
    /// `broker.rack` (the agent's zone).
    pub rack: Option<String>,
    pub pod: Option<String>,
    pub agent_id: Option<String>,
    pub zone: Option<String>,
    pub leader_count: usize,
    pub replica_count: usize,
    pub under_replicated: usize,
}

pub fn broker_rows(brokers: &[BrokerDescription], pods: &[PodView]) -> Vec<BrokerRow> {
    brokers
        .iter()
        .map(|b| {
            let pod = pods.iter().find(|v| {
                v.pod.hostname == b.host
                    && v.pod.ports.get(kafka_service::CLIENT_PORT).is_some_and(|p| i32::from(*p) == b.port)
            });
            BrokerRow {
                id: b.id,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                pod: pod.map(|v| v.pod.name.clone()),
                agent_id: pod.and_then(|v| v.pod.agent_id.clone()),
                zone: pod.and_then(|v| v.pod.attributes.get("zone").cloned()),
                leader_count: b.leader_count,
                replica_count: b.replica_count,
                under_replicated: b.under_replicated,
            }
        })
        .collect()
}
