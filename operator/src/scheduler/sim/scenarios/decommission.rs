//! Decommission scenarios: a scale-down without a hook, a hook that
//! succeeds, fails and retries, or waits for room on its pod's agent.

use super::{deployed, BROKER};
use crate::resources::{Resources, TaskState};
use crate::scheduler::plan::StepState;
use crate::scheduler::service::DECOMMISSION_HOOK;
use crate::scheduler::sim::{launches, operation_kinds};

fn two_brokers() -> String {
    BROKER.replace("count: 3", "count: 2")
}

fn without_hook(yaml: &str) -> String {
    yaml.replace("    hooks:\n      decommission: { cmd: ./drain.sh, cpus: 0.5, mem: 128 }\n", "")
}

#[test]
fn sim_a_scale_down_stops_the_pod_then_releases_its_disk() {
    let mut s = deployed(&without_hook(BROKER));
    let agent = s.pod("broker-2").agent_id.clone().unwrap();
    assert_eq!(s.update(&without_hook(&two_brokers())).unwrap(), ["decommission"]);
    let d = s.offer_all();
    assert_eq!(d.kills, [s.task_id("broker-2", "broker")]);
    assert_eq!(s.step("decommission", "broker-2"), StepState::Pending, "until its pod is gone");
    s.kills_done();
    assert!(!s.state.plans.contains_key("recovery"), "stopped on purpose");
    let d = s.offer_all();
    assert_eq!(s.step("decommission", "broker-2"), StepState::Complete);
    assert!(s.step_message("decommission", "broker-2").contains("decommissioned"));
    assert!(!s.state.pods.contains_key("broker-2"));
    // The orphaned reservation goes with the next offer of its agent.
    assert!(d.accepts.is_empty() || !s.state.orphans.is_empty() || s.agents[&agent].ledger.reservations.is_empty());
    s.offer(&[&agent]);
    assert!(s.agents[&agent].ledger.reservations.is_empty(), "its volume destroyed, reservation released");
    assert!(s.state.orphans.is_empty());
}

#[test]
fn sim_the_decommission_hook_runs_first_then_the_pod_stops() {
    let mut s = deployed(BROKER);
    let agent = s.pod("broker-2").agent_id.clone().unwrap();
    s.update(&two_brokers()).unwrap();
    let d = s.offer_all();
    assert!(d.kills.is_empty(), "the pod runs while its hook runs");
    let l = launches(&d);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].name, format!("broker-2-{DECOMMISSION_HOOK}"));
    assert_eq!(l[0].reservation, None, "the hook runs unreserved");
    assert_eq!(l[0].command, "./drain.sh");
    assert_eq!(l[0].env["POD_INSTANCE"], "broker-2");
    assert!(l[0].env.contains_key("PORT_CLIENT"), "it can reach the pod");
    assert_eq!(s.running_on(&agent).len(), 2, "on the pod's own agent");
    let hook = l[0].id.clone();
    s.status(&hook, TaskState::Running, None, "");
    s.offer_all();
    assert!(s.step_message("decommission", "broker-2").starts_with("running the decommission hook"));
    s.status(&hook, TaskState::Finished, None, "");
    assert!(s.pod("broker-2").hook.as_ref().unwrap().done);
    let d = s.offer_all();
    assert_eq!(d.kills, [s.task_id("broker-2", "broker")]);
    s.kills_done();
    s.offer_all();
    assert_eq!(s.step("decommission", "broker-2"), StepState::Complete);
}

#[test]
fn sim_a_failed_decommission_hook_is_retried_after_a_backoff() {
    let mut s = deployed(BROKER);
    s.update(&two_brokers()).unwrap();
    let d = s.offer_all();
    let hook = launches(&d)[0].id.clone();
    s.status(&hook, TaskState::Failed, None, "exit 3");
    let run = s.pod("broker-2").hook.clone().unwrap();
    assert_eq!((run.failures, run.done), (1, false));
    assert_eq!(run.retry_at_ms, s.now + 2000);
    // A repeated end of the same run counts once.
    s.status(&hook, TaskState::Failed, None, "exit 3");
    assert_eq!(s.pod("broker-2").hook.as_ref().unwrap().failures, 1);
    let d = s.offer_all();
    assert!(d.accepts.is_empty());
    let msg = s.step_message("decommission", "broker-2");
    assert!(msg.contains("failed 1 time(s)") && msg.contains("retrying in 2 s"), "{msg}");
    s.tick(2000);
    let d = s.offer_all();
    let again = launches(&d)[0].id.clone();
    assert_ne!(again, hook);
    assert_eq!(s.pod("broker-2").hook.as_ref().unwrap().failures, 1, "the count is kept");
    s.status(&again, TaskState::Finished, None, "");
    let d = s.offer_all();
    assert_eq!(d.kills.len(), 1);
}

#[test]
fn sim_a_decommission_hook_waits_for_room_on_its_agent() {
    let mut s = super::sim(BROKER);
    s.agents.clear();
    // Room for a broker (1 cpu) and not for its hook next to it.
    for (id, zone) in [("a1", "z1"), ("a2", "z2"), ("a3", "z3")] {
        s.add_agent_with(
            id,
            zone,
            Resources::new(1.2, 1200, 4096).with_ports(crate::resources::PortSet::from_ports([9000])),
        );
    }
    s.settle(20);
    assert!(s.plan("deploy").is_complete());
    s.update(&two_brokers()).unwrap();
    let agent = s.pod("broker-2").agent_id.clone().unwrap();
    let d = s.offer_all();
    assert!(d.accepts.is_empty());
    let msg = s.step_message("decommission", "broker-2");
    assert_eq!(msg, format!("waiting for agent {agent} to offer 0.5 cpus and 128 MiB for the decommission hook"));
    // Offers from other agents do not help.
    assert_eq!(operation_kinds(&d), Vec::<Vec<&str>>::new());
}
