//! The task environment contract: what a launched task finds in its env
//! (`SERVICE_NAME`, `POD_INSTANCE`, `POD_INSTANCE_INDEX`, `TASK_NAME`, its
//! ports, rendered config files, and [`PODS_ENV`] listing every placed pod
//! as [`PodAddress`]es). Services' node launchers read this; pure.

use super::state::{PodRecord, SchedulerState, DECOMMISSION_HOOK};
use crate::resources::{Attributes, Resources, TaskInfo};
use crate::scheduler::evaluator;
use crate::scheduler::pod::PodInstance;
use crate::scheduler::spec::{self, PodSpec, ServiceSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The env var that lists the service's placed pods, for services whose
/// members must know each other (a controller quorum, a ring's seeds): a
/// JSON array of [`PodAddress`], ordered by pod name.
pub const PODS_ENV: &str = "SMACK_PODS";

/// Where a placed pod of the service is: for `SMACK_PODS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodAddress {
    pub name: String,
    pub pod_type: String,
    pub index: u32,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub ports: BTreeMap<String, u16>,
}

/// Every pod of the service that has a place, with its address.
pub fn placed_pods(st: &SchedulerState) -> Vec<PodAddress> {
    st.pods
        .values()
        .filter(|p| p.agent_id.is_some())
        .map(|p| PodAddress {
            name: p.name.clone(),
            pod_type: p.pod_type.clone(),
            index: p.index,
            host: p.hostname.clone(),
            zone: p.attributes.get("zone").cloned(),
            ports: p.ports.clone(),
        })
        .collect()
}

/// `SMACK_PODS` for a pod about to launch at `host`: every placed pod of
/// the service, this one with its new place.
pub fn peers_env(
    st: &SchedulerState,
    pod: &str,
    host: &str,
    attrs: &Attributes,
    ports: &BTreeMap<String, u16>,
) -> String {
    let mut out: Vec<PodAddress> = placed_pods(st).into_iter().filter(|p| p.name != pod).collect();
    let instance = PodInstance::parse(pod).unwrap_or_else(|| PodInstance::new(pod, 0));
    out.push(PodAddress {
        name: pod.to_string(),
        pod_type: instance.pod_type,
        index: instance.index,
        host: host.to_string(),
        zone: attrs.get("zone").cloned(),
        ports: ports.clone(),
    });
    out.sort_by(|a, b| (&a.pod_type, a.index).cmp(&(&b.pod_type, b.index)));
    serde_json::to_string(&out).unwrap_or_default()
}

/// A decommission hook's task: on the pod's agent, unreserved, with the
/// pod's env and ports so it can reach the pod's running tasks.
pub fn hook_task_info(
    spec: &ServiceSpec,
    rec: &PodRecord,
    h: &spec::HookSpec,
    tid: &str,
    resources: Resources,
) -> TaskInfo {
    let mut info = TaskInfo::new(tid, h.cmd.clone(), resources);
    info.name = format!("{}-{DECOMMISSION_HOOK}", rec.name);
    info.env = h.env.clone();
    info.env.insert("SERVICE_NAME".into(), spec.name.clone());
    info.env.insert("POD_INSTANCE".into(), rec.name.clone());
    info.env.insert("POD_INSTANCE_INDEX".into(), rec.index.to_string());
    info.env.insert("TASK_NAME".into(), info.name.clone());
    if let Some(pod) = spec.pod(&rec.pod_type) {
        for p in &pod.resources.ports {
            if let Some(port) = rec.ports.get(&p.name) {
                info.env.insert(p.env_name(), port.to_string());
            }
        }
    }
    info.labels.insert("pod".into(), rec.name.clone());
    info
}

#[allow(clippy::too_many_arguments)]
pub fn task_info(
    spec: &ServiceSpec,
    pod: &PodSpec,
    t: &spec::TaskSpec,
    instance: &str,
    index: u32,
    tid: &str,
    resources: Resources,
    m: &evaluator::OfferMatch,
) -> TaskInfo {
    let mut env: BTreeMap<String, String> = t.env.clone();
    env.insert("SERVICE_NAME".into(), spec.name.clone());
    env.insert("POD_INSTANCE".into(), instance.to_string());
    env.insert("POD_INSTANCE_INDEX".into(), index.to_string());
    env.insert("TASK_NAME".into(), format!("{instance}-{}", t.name));
    for p in &pod.resources.ports {
        if let Some(port) = m.ports.get(&p.name) {
            env.insert(p.env_name(), port.to_string());
        }
    }
    // Config files are rendered with what the scheduler knows and written by
    // the task's shell before its command runs.
    let mut vars = env.clone();
    vars.insert("HOST".into(), m.hostname.clone());
    let mut prelude = String::new();
    for c in &t.configs {
        let text = spec::render_template(&c.template, &vars).unwrap_or_else(|e| format!("# template error: {e}\n"));
        prelude.push_str(&format!(
            "mkdir -p \"$(dirname '{dest}')\" && printf '%s' '{body}' > '{dest}' && ",
            dest = c.dest.replace('\'', "'\\''"),
            body = text.replace('\'', "'\\''")
        ));
    }
    let port_of = |name: &str| m.ports.get(name).copied();
    TaskInfo {
        id: tid.to_string(),
        name: format!("{instance}-{}", t.name),
        command: format!("{prelude}{}", t.cmd),
        env,
        resources,
        reservation: Some(m.reservation_id.clone()),
        volumes: m.volumes.iter().map(|v| v.id.clone()).collect(),
        health_check: t.health_check.as_ref().and_then(|c| c.to_check_spec(port_of)),
        readiness_check: t.readiness_check.as_ref().and_then(|c| c.to_check_spec(port_of)),
        kill_grace_period_ms: t.kill_grace_period_ms,
        labels: [("pod".to_string(), instance.to_string())].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_env_lists_placed_pods_and_the_one_launching() {
        let mut st = SchedulerState::default();
        let placed = |name: &str, index: u32, host: &str, zone: &str, port: u16| PodRecord {
            name: name.into(),
            pod_type: "broker".into(),
            index,
            agent_id: Some(format!("agent-{index}")),
            hostname: host.into(),
            attributes: [("zone".to_string(), zone.to_string())].into(),
            ports: [("client".to_string(), port)].into(),
            ..Default::default()
        };
        st.pods.insert("broker-0".into(), placed("broker-0", 0, "10.0.0.1", "zone-a", 9092));
        // Waiting for an offer: not placed, not listed.
        st.pods.insert("broker-10".into(), PodRecord { name: "broker-10".into(), index: 10, ..Default::default() });
        // Its old place is replaced by the new one.
        st.pods.insert("broker-2".into(), placed("broker-2", 2, "10.0.0.9", "zone-c", 9092));
        let attrs: Attributes = [("zone".to_string(), "zone-b".to_string())].into();
        let env = peers_env(&st, "broker-2", "10.0.0.3", &attrs, &[("client".to_string(), 9094)].into());
        let pods: Vec<PodAddress> = serde_json::from_str(&env).unwrap();
        let names: Vec<(&str, &str)> = pods.iter().map(|p| (p.name.as_str(), p.host.as_str())).collect();
        assert_eq!(names, [("broker-0", "10.0.0.1"), ("broker-2", "10.0.0.3")]);
        assert_eq!(pods[1].zone.as_deref(), Some("zone-b"));
        assert_eq!(pods[1].ports["client"], 9094);
    }
}
