//! Deploy scenarios: the first launch with its reservation and volume, the
//! serial order and readiness, waiting for offers, declines, suppress and
//! revive, the reconcile after a restart, and a reservation lost in a crash.

use super::{deployed, sim, DB, HELLO};
use crate::resources::{PortRange, PortSet, Resources, TaskState};
use crate::scheduler::plan::StepState;
use crate::scheduler::service::decide::OfferCall;
use crate::scheduler::service::PODS_ENV;
use crate::scheduler::sim::{launches, operation_kinds, Sim};

#[test]
fn sim_first_offer_reserves_creates_the_volume_and_launches() {
    let mut s = sim(HELLO);
    let d = s.offer(&["a1"]);
    assert_eq!(operation_kinds(&d), [vec!["RESERVE", "CREATE_VOLUME", "LAUNCH"]]);
    assert!(d.persist, "task records are persisted before the accept");
    let pod = s.pod("hello-0");
    assert_eq!(pod.agent_id.as_deref(), Some("a1"));
    assert_eq!(pod.volume_ids.len(), 1);
    let tid = s.task_id("hello-0", "server");
    assert_eq!(s.task(&tid).state, None, "the record exists before any status");
    let t = launches(&d)[0];
    assert_eq!(t.id, tid);
    assert_eq!(t.reservation, pod.reservation_id);
    assert_eq!(t.env["SERVICE_NAME"], "hello");
    assert_eq!(t.env["POD_INSTANCE"], "hello-0");
    assert_eq!(t.env["TASK_NAME"], "hello-0-server");
    assert_eq!(t.env["PORT_HTTP"], pod.ports["http"].to_string());
    assert!(t.env[PODS_ENV].contains("\"hello-0\""), "{}", t.env[PODS_ENV]);
    assert!(t.readiness_check.is_some() && t.health_check.is_some());
    assert_eq!(s.step("deploy", "hello-0"), StepState::Starting);
    assert_eq!(s.running_on("a1"), [tid]);
}

#[test]
fn sim_serial_deploy_waits_for_readiness() {
    let mut s = sim(HELLO);
    s.offer(&["a1"]);
    let t0 = s.task_id("hello-0", "server");
    // Running, not yet ready: the next pod waits.
    s.status(&t0, TaskState::Running, None, "");
    assert_eq!(s.step("deploy", "hello-0"), StepState::Started);
    let d = s.offer(&["a2"]);
    assert!(d.accepts.is_empty(), "hello-1 must wait for hello-0 to be ready");
    assert_eq!(d.declines.len(), 1);
    s.status(&t0, TaskState::Running, Some(true), "");
    assert_eq!(s.step("deploy", "hello-0"), StepState::Complete);
    let d = s.offer(&["a2"]);
    assert_eq!(launches(&d)[0].env["POD_INSTANCE"], "hello-1");
}

#[test]
fn sim_unique_hostname_spreads_the_pods() {
    let s = deployed(HELLO);
    assert_ne!(s.pod("hello-0").agent_id, s.pod("hello-1").agent_id);
    // The second pod learns where the first is.
    let peers = s.state.pods.values().filter(|p| p.agent_id.is_some()).count();
    assert_eq!(peers, 2);
}

#[test]
fn sim_an_offer_too_small_is_declined_with_the_reasons() {
    let mut s = Sim::new(HELLO).unwrap();
    s.add_agent_with("tiny", "z1", Resources::new(0.5, 128, 100).with_ports(PortSet::from_ports([9000])));
    let d = s.offer(&["tiny"]);
    assert!(d.accepts.is_empty());
    assert_eq!(d.declines.len(), 1);
    let why = s.pod("hello-0").waiting.clone().unwrap();
    assert!(why.contains("cpus"), "{why}");
    assert_eq!(s.step_message("deploy", "hello-0"), why);
    assert!(d.evaluations.0.keys().any(|(_, pass)| !pass), "failing stages are counted");
}

#[test]
fn sim_without_offers_a_pod_waits_for_offers() {
    let mut s = sim(HELLO);
    s.offers(Vec::new());
    assert_eq!(s.pod("hello-0").waiting.as_deref(), Some("waiting for offers"));
    assert_eq!(s.step("deploy", "hello-0"), StepState::Pending);
}

#[test]
fn sim_unused_offers_are_declined() {
    let mut s = sim(HELLO);
    let d = s.offer_all();
    assert_eq!(d.accepts.len(), 1);
    assert_eq!(d.declines.len(), 2);
    assert!(!d.declines.contains(&d.accepts[0].offer_ids[0]));
}

#[test]
fn sim_offers_are_suppressed_when_done_and_revived_for_new_work() {
    let mut s = deployed(HELLO);
    s.tick(500);
    assert_eq!(s.offer_calls.last(), Some(&OfferCall::Suppress));
    let n = s.offer_calls.len();
    s.tick(500);
    assert_eq!(s.offer_calls.len(), n, "suppressed once, not again");
    // A task ends: the recovery step wants offers.
    let t = s.task_id("hello-1", "server");
    s.status(&t, TaskState::Failed, None, "exit 1");
    let d = s.tick(500);
    assert_eq!(d.offer_call, Some(OfferCall::Revive));
}

#[test]
fn sim_a_restarted_scheduler_reconciles_its_unended_tasks() {
    let s = deployed(HELLO);
    let mut again = Sim::resume(s.spec.clone(), s.state.clone());
    let mut ids = again.state.unended_tasks();
    ids.sort();
    let mut want = vec![s.task_id("hello-0", "server"), s.task_id("hello-1", "server")];
    want.sort();
    assert_eq!(ids, want);
    // And it picks up where it stopped: nothing to launch.
    again.agents = s.agents.clone();
    let d = again.offer_all();
    assert!(d.accepts.is_empty());
}

#[test]
fn sim_a_reservation_lost_in_a_crash_is_made_anew() {
    let mut s = sim(HELLO);
    s.offer(&["a1"]);
    let t0 = s.task_id("hello-0", "server");
    let first = s.pod("hello-0").reservation_id.clone();
    // The accept never reached the master: the agent has nothing.
    s.agents.get_mut("a1").unwrap().ledger.reservations.clear();
    s.agents.get_mut("a1").unwrap().ledger.tasks.clear();
    s.status(&t0, TaskState::Lost, None, "unknown to the master");
    s.tick(1);
    let d = s.offer(&["a1"]);
    assert_eq!(operation_kinds(&d), [vec!["RESERVE", "CREATE_VOLUME", "LAUNCH"]]);
    assert_ne!(s.pod("hello-0").reservation_id, first);
}

#[test]
fn sim_ports_come_from_the_offered_range() {
    let mut s = Sim::new(DB).unwrap();
    let r = Resources::new(4.0, 4096, 10_000).with_ports(PortSet::from_ranges([PortRange::new(31000, 31001)]));
    s.add_agent_with("a1", "z1", r);
    let d = s.offer(&["a1"]);
    let port = s.pod("db-0").ports["client"];
    assert!((31000..=31001).contains(&port), "{port}");
    // The first task holds the pod's ports; the others share its cpus.
    let ls = launches(&d);
    assert_eq!(ls.len(), 2);
    assert!(ls[0].resources.ports.contains_port(port));
    assert!(ls[1].resources.ports.is_empty());
    assert_eq!(ls[0].resources.cpus + ls[1].resources.cpus, 2.0);
}

#[test]
fn sim_a_reservation_nobody_owns_is_destroyed_and_released() {
    let mut s = sim(HELLO);
    s.offer(&["a1"]);
    s.all_running();
    // The service forgets the pod (as if its state were lost): its
    // reservation, volume and all, belongs to nobody.
    let rid = s.pod("hello-0").reservation_id.clone().unwrap();
    s.agents.get_mut("a1").unwrap().ledger.tasks.clear();
    s.state.pods.remove("hello-0");
    s.state.orphans.insert(rid.clone());
    let d = s.offer(&["a1"]);
    assert_eq!(operation_kinds(&d)[0], ["DESTROY_VOLUME", "UNRESERVE"]);
    assert!(!s.state.orphans.contains(&rid));
    assert!(s.agents["a1"].ledger.reservations.is_empty());
    // That offer is spent on the clean-up; the next one places the pod.
    let d = s.offer(&["a1"]);
    assert_eq!(operation_kinds(&d), [vec!["RESERVE", "CREATE_VOLUME", "LAUNCH"]]);
}

#[test]
fn sim_each_launch_lists_every_placed_pod() {
    let mut s = sim(HELLO);
    s.offer(&["a1"]);
    s.all_running();
    let d = s.offer(&["a2"]);
    let pods: Vec<crate::scheduler::service::PodAddress> =
        serde_json::from_str(&launches(&d)[0].env[PODS_ENV]).unwrap();
    let names: Vec<(&str, &str)> = pods.iter().map(|p| (p.name.as_str(), p.host.as_str())).collect();
    assert_eq!(names, [("hello-0", "a1"), ("hello-1", "a2")]);
    assert_eq!(pods[1].zone.as_deref(), Some("z2"));
    assert_eq!(pods[1].ports["http"], s.pod("hello-1").ports["http"]);
}
