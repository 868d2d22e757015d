//! What a catalog driver (a scale, a quorum prune) asks of the service it
//! works on, through that service's scheduler. The binary implements it
//! over the master's HTTP API; a test can implement it with plain values.

use crate::Result;
use smack_operator::scheduler::api::{PlanSummary, PodView, SpecUpdate};
use std::time::Instant;

/// One service's scheduler, as the catalog's drivers use it.
#[allow(async_fn_in_trait)]
pub trait ServiceClient {
    /// The service's name.
    fn service(&self) -> &str;
    /// The spec the service runs.
    async fn spec(&self) -> Result<SpecUpdate>;
    /// Submits a changed spec; returns the plans it started.
    async fn submit_spec(&self, update: &SpecUpdate) -> Result<Vec<String>>;
    /// The service's plans and their status.
    async fn plans(&self) -> Result<Vec<PlanSummary>>;
    /// Waits until plan `plan` is complete (an error once `deadline` passes,
    /// or when the plan fails).
    async fn wait_plan_complete(&self, plan: &str, deadline: Instant) -> Result<()>;
    /// The service's pods as its scheduler reports them.
    async fn pods(&self) -> Result<Vec<PodView>>;
}

/// The `host:port` of port `port_name` of every placed pod, in pod type
/// and index order (a pod without an agent or a host is not placed yet).
pub fn placed_endpoints(views: &[PodView], port_name: &str) -> Vec<String> {
    let mut placed: Vec<(&str, u32, String)> = views
        .iter()
        .filter(|v| v.pod.agent_id.is_some() && !v.pod.hostname.is_empty())
        .filter_map(|v| {
            let port = v.pod.ports.get(port_name)?;
            Some((v.pod.pod_type.as_str(), v.pod.index, format!("{}:{port}", v.pod.hostname)))
        })
        .collect();
    placed.sort();
    placed.into_iter().map(|(_, _, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smack_operator::scheduler::service::PodRecord;

    fn view(name: &str, index: u32, host: &str, port: Option<u16>, placed: bool) -> PodView {
        let mut pod = PodRecord { name: name.into(), pod_type: "kafka".into(), index, ..Default::default() };
        pod.hostname = host.into();
        if placed {
            pod.agent_id = Some("a1".into());
        }
        if let Some(p) = port {
            pod.ports.insert("client".into(), p);
        }
        PodView { pod, tasks: Vec::new(), phase: Default::default() }
    }

    #[test]
    fn placed_pods_with_the_port_in_index_order() {
        let v = vec![
            view("kafka-10", 10, "h10", Some(9), true),
            view("kafka-2", 2, "h2", Some(2), true),
            view("kafka-1", 1, "", None, true),
            view("kafka-3", 3, "h3", Some(3), true),
            view("kafka-4", 4, "h4", Some(4), false),
        ];
        assert_eq!(placed_endpoints(&v, "client"), vec!["h2:2", "h3:3", "h10:9"]);
        assert!(placed_endpoints(&v, "controller").is_empty());
    }
}
