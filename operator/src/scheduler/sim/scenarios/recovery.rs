//! Recovery scenarios: a failed task relaunched in place on its reservation,
//! crash-loop backoff, failures while launching, LOST and the permanent-
//! failure timeout, essential and non-essential tasks, stale and late
//! statuses, acknowledgements.

use super::{deployed, DB, HELLO};
use crate::resources::TaskState;
use crate::scheduler::plan::StepState;
use crate::scheduler::pod::PodPhase;
use crate::scheduler::sim::{launches, operation_kinds};

#[test]
fn sim_a_failed_task_is_relaunched_in_place_on_its_reservation() {
    let mut s = deployed(HELLO);
    let agent = s.pod("hello-0").agent_id.clone().unwrap();
    let res = s.pod("hello-0").reservation_id.clone();
    let vols = s.pod("hello-0").volume_ids.clone();
    let old = s.task_id("hello-0", "server");
    s.status(&old, TaskState::Failed, None, "exit 1");
    assert_eq!(s.step("recovery", "hello-0"), StepState::Delayed, "a recovery step, backing off 0 s");
    s.tick(1);
    let d = s.offer(&[&agent]);
    assert_eq!(operation_kinds(&d), [vec!["LAUNCH"]], "no new reservation, no new volume");
    let t = launches(&d)[0];
    assert_eq!(t.reservation, res);
    assert_eq!(t.volumes, vols);
    assert_ne!(t.id, old);
    assert_eq!(d.recoveries, [false], "a transient recovery");
    s.running(&t.id.clone());
    assert_eq!(s.step("recovery", "hello-0"), StepState::Complete);
}

#[test]
fn sim_a_crash_loop_backs_off() {
    let mut s = deployed(HELLO);
    let agent = s.pod("hello-0").agent_id.clone().unwrap();
    // First failure: back at once.
    s.status(&s.task_id("hello-0", "server"), TaskState::Failed, None, "exit 1");
    s.tick(1);
    let d = s.offer(&[&agent]);
    assert_eq!(launches(&d).len(), 1);
    // Second failure in a row: 1 s of backoff.
    s.status(&s.task_id("hello-0", "server"), TaskState::Failed, None, "exit 1");
    assert_eq!(s.step("recovery", "hello-0"), StepState::Delayed);
    let due = s.state.next_backoff_end(s.now).expect("a backoff end");
    assert_eq!(due - s.now, 1000);
    let d = s.offer(&[&agent]);
    assert!(d.accepts.is_empty(), "no relaunch during the backoff");
    let d = s.tick(1000);
    assert_eq!(d.offer_call, Some(crate::scheduler::service::decide::OfferCall::Revive));
    let d = s.offer(&[&agent]);
    assert_eq!(launches(&d).len(), 1);
}

#[test]
fn sim_a_failure_while_launching_backs_the_deploy_step_off() {
    let mut s = super::sim(HELLO);
    s.offer(&["a1"]);
    let t = s.task_id("hello-0", "server");
    s.status(&t, TaskState::Failed, None, "exec format error");
    assert_eq!(s.step("deploy", "hello-0"), StepState::Delayed);
    assert!(!s.state.plans.contains_key("recovery"), "the deploy plan handles its own failure");
    s.tick(1);
    let d = s.offer(&["a1"]);
    assert_eq!(operation_kinds(&d), [vec!["LAUNCH"]], "back on the reservation made by the first try");
}

#[test]
fn sim_lost_starts_the_clock_and_running_stops_it() {
    let mut s = deployed(HELLO);
    let t = s.task_id("hello-0", "server");
    s.status(&t, TaskState::Lost, None, "agent unreachable");
    assert_eq!(s.pod("hello-0").lost_since_ms, Some(s.now));
    s.tick(60_000);
    assert!(!s.pod("hello-0").replace, "before the timeout it waits for the agent");
    // The task comes back (a partition healed) under its own id.
    s.status(&t, TaskState::Running, Some(true), "");
    assert_eq!(s.pod("hello-0").lost_since_ms, None);
}

#[test]
fn sim_lost_past_the_timeout_replaces_the_pod_elsewhere() {
    let mut s = deployed(HELLO);
    let agent = s.pod("hello-0").agent_id.clone().unwrap();
    let host = s.pod("hello-0").hostname.clone();
    let old_res = s.pod("hello-0").reservation_id.clone().unwrap();
    assert_eq!(s.state.pod_phase(s.pod("hello-0")), PodPhase::Running);
    s.agent_down(&agent);
    assert_eq!(s.state.pod_phase(s.pod("hello-0")), PodPhase::Lost);
    let d = s.tick(s.permanent_failure_ms);
    assert_eq!(s.state.pod_phase(s.pod("hello-0")), PodPhase::Waiting);
    assert_eq!(d.replace, ["hello-0"]);
    assert!(s.state.orphans.contains(&old_res));
    assert!(s.pod("hello-0").agent_id.is_none());
    let d = s.offer_all();
    let l = launches(&d);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].env["POD_REPLACED_FROM"], host);
    assert_ne!(s.pod("hello-0").agent_id.as_deref(), Some(agent.as_str()));
    assert_eq!(d.recoveries, [true], "a permanent recovery");
}

#[test]
fn sim_an_essential_task_brings_its_pod_back_whole() {
    let mut s = deployed(DB);
    let node = s.task_id("db-0", "node");
    let sidecar = s.task_id("db-0", "sidecar");
    let d = s.status(&node, TaskState::Failed, None, "exit 2");
    assert_eq!(d.kills, [sidecar], "its sibling is stopped");
    s.tick(1);
    let d = s.offer_all();
    assert!(d.accepts.is_empty(), "waits for the sidecar to stop");
    s.kills_done();
    s.tick(1);
    let d = s.offer_all();
    let names: Vec<&str> = launches(&d).iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["db-0-node", "db-0-sidecar"]);
}

#[test]
fn sim_a_non_essential_task_comes_back_alone() {
    let mut s = deployed(DB);
    let node = s.task_id("db-0", "node");
    let sidecar = s.task_id("db-0", "sidecar");
    let d = s.status(&sidecar, TaskState::Failed, None, "exit 1");
    assert!(d.kills.is_empty(), "the node keeps running");
    s.tick(1);
    let d = s.offer_all();
    let l = launches(&d);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].name, "db-0-sidecar");
    assert_eq!(l[0].resources.cpus, 1.0, "its share of the pod");
    assert!(l[0].resources.ports.is_empty(), "the node holds the ports");
    assert_eq!(s.task_id("db-0", "node"), node);
    s.running(&l[0].id.clone());
    assert_eq!(s.step("recovery", "db-0"), StepState::Complete, "the live node counts as ready");
}

#[test]
fn sim_a_task_that_is_no_longer_its_pods_is_killed() {
    let mut s = deployed(HELLO);
    let d = s.status("hello-0-server__ghost", TaskState::Running, None, "");
    assert_eq!(d.kills, ["hello-0-server__ghost"]);
    // An ended unknown task needs nothing.
    let d = s.status("hello-0-server__ghost2", TaskState::Failed, None, "");
    assert!(d.kills.is_empty());
}

#[test]
fn sim_a_late_update_never_brings_an_ended_task_back() {
    let mut s = deployed(HELLO);
    let t = s.task_id("hello-1", "server");
    s.status(&t, TaskState::Failed, None, "exit 1");
    s.status(&t, TaskState::Running, Some(true), "a readiness result sent before it died");
    assert_eq!(s.task(&t).state, Some(TaskState::Failed));
    assert!(!s.task(&t).ready);
}

#[test]
fn sim_statuses_are_acknowledged() {
    let mut s = deployed(HELLO);
    let t = s.task_id("hello-0", "server");
    let d = s.running(&t);
    let ack = d.acknowledge.expect("an acknowledgement");
    assert_eq!(ack.task_id, t);
    assert_eq!(ack.agent_id, s.pod("hello-0").agent_id.clone().unwrap());
}
