//! Operator scenarios: `pod replace`, `pod pause`/`resume`, spec updates
//! (a roll, a scale-up, refusals), custom plans with parameters,
//! `service delete` and `service diff`.

use super::{deployed, BROKER, HELLO};
use crate::resources::TaskState;
use crate::scheduler::plan::StepState;
use crate::scheduler::service::commands;
use crate::scheduler::sim::{launches, operation_kinds};

#[test]
fn sim_pod_replace_places_anew_and_cleans_up_the_old_reservation() {
    let mut s = deployed(HELLO);
    let old_agent = s.pod("hello-0").agent_id.clone().unwrap();
    let old_res = s.pod("hello-0").reservation_id.clone().unwrap();
    s.replace("hello-0").unwrap();
    assert_eq!(s.killing.len(), 1);
    assert_eq!(s.state.destructive_in_flight().unwrap(), "pod hello-0 is being replaced");
    s.kills_done();
    assert_eq!(s.step("recovery", "hello-0"), StepState::Pending);
    let d = s.offer_all();
    // The old agent's offer destroys the volume and unreserves; the pod goes
    // to the free agent (not its old host, not hello-1's).
    assert!(operation_kinds(&d).contains(&vec!["DESTROY_VOLUME", "UNRESERVE"]), "{:?}", operation_kinds(&d));
    assert!(operation_kinds(&d).contains(&vec!["RESERVE", "CREATE_VOLUME", "LAUNCH"]));
    assert!(s.state.orphans.is_empty());
    assert!(!s.agents[&old_agent].ledger.reservations.contains_key(&old_res));
    let new_agent = s.pod("hello-0").agent_id.clone().unwrap();
    assert_ne!(new_agent, old_agent);
    assert_ne!(Some(&new_agent), s.pod("hello-1").agent_id.as_ref());
    assert!(!s.pod("hello-0").replace);
    assert_eq!(d.recoveries, [true]);
}

#[test]
fn sim_pause_relaunches_with_sleep_and_resume_restores() {
    let mut s = deployed(HELLO);
    s.pause("hello-1", true).unwrap();
    assert_eq!(s.killing.len(), 1);
    s.kills_done();
    s.tick(1);
    let d = s.offer_all();
    let t = launches(&d)[0].clone();
    assert_eq!(t.command, "exec sleep 2147483647");
    assert!(t.health_check.is_none() && t.readiness_check.is_none());
    // A paused pod has no readiness check: running is enough.
    s.status(&t.id, TaskState::Running, None, "");
    assert_eq!(s.step("recovery", "hello-1"), StepState::Complete);
    // Pausing twice changes nothing.
    s.pause("hello-1", true).unwrap();
    assert!(s.killing.is_empty());
    s.pause("hello-1", false).unwrap();
    s.kills_done();
    // Its second end in a row: the recovery step backs off 1 s.
    s.tick(1000);
    let d = s.offer_all();
    assert!(launches(&d)[0].command.starts_with("./server"));
}

/// HELLO with the server's command changed.
fn hello_v2() -> String {
    HELLO.replace("./server --port", "./server --v2 --port")
}

#[test]
fn sim_an_update_rolls_the_pods_one_at_a_time() {
    let mut s = deployed(HELLO);
    let plans = s.update(&hello_v2()).unwrap();
    assert_eq!(plans, ["update"]);
    assert_eq!(s.state.spec_history.len(), 1);
    let d = s.offer_all();
    assert_eq!(d.kills, [s.task_id("hello-0", "server")], "the old task stops first");
    assert_eq!(s.step_message("update", "hello-0"), "stopping the old tasks before relaunch");
    assert!(s.state.stopping.contains("hello-0"));
    s.kills_done();
    assert!(!s.state.stopping.contains("hello-0"));
    assert!(!s.state.plans.contains_key("recovery"), "a stop on purpose is not recovered");
    let d = s.offer_all();
    let l = launches(&d);
    assert_eq!(l.len(), 1);
    assert!(l[0].command.contains("--v2"));
    assert_eq!(operation_kinds(&d), [vec!["LAUNCH"]], "on its own reservation");
    // hello-1 waits for hello-0 to be ready.
    let d = s.offer_all();
    assert!(d.kills.is_empty() && d.accepts.is_empty());
    s.settle(10);
    assert!(s.plan("update").is_complete());
}

#[test]
fn sim_an_unsafe_update_is_refused_and_the_target_kept() {
    let mut s = deployed(HELLO);
    let shrunk = HELLO.replace("size: 1024", "size: 512");
    let e = s.update(&shrunk).unwrap_err();
    assert!(matches!(e, crate::Error::Conflict(_)), "{e:?}");
    assert!(e.to_string().contains("unsafe change refused"), "{e}");
    assert_eq!(s.state.spec_yaml, HELLO);
    let fewer = HELLO.replace("count: 2", "count: 1");
    assert!(s.update(&fewer).is_err(), "count lowered without allow-decommission");
    assert_eq!(s.update(HELLO).unwrap(), Vec::<String>::new(), "no change, no plan");
}

#[test]
fn sim_a_change_waits_while_a_pod_is_replaced() {
    let mut s = deployed(HELLO);
    s.replace("hello-0").unwrap();
    let e = s.update(&hello_v2()).unwrap_err().to_string();
    assert!(e.contains("pod hello-0 is being replaced"), "{e}");
    let d = commands::diff_spec(&s.state, &s.spec, &hello_v2(), "x.yaml").unwrap();
    assert!(d.refused.iter().any(|r| r.contains("being replaced")), "{d:?}");
}

#[test]
fn sim_a_scale_up_deploys_the_new_pods() {
    let mut s = deployed(HELLO);
    let three = HELLO.replace("count: 2", "count: 3");
    let d = commands::diff_spec(&s.state, &s.spec, &three, "x.yaml").unwrap();
    assert_eq!(d.added, ["hello-2"]);
    assert!(d.restarted.is_empty() && d.removed.is_empty());
    assert_eq!(s.update(&three).unwrap(), ["update"]);
    let d = s.offer_all();
    assert!(d.kills.is_empty(), "running pods are untouched");
    assert_eq!(launches(&d)[0].env["POD_INSTANCE"], "hello-2");
    assert_eq!(s.pod("hello-2").agent_id.as_deref(), Some("a3"));
}

#[test]
fn sim_a_paused_pod_is_left_out_of_a_roll() {
    let mut s = deployed(HELLO);
    s.pause("hello-1", true).unwrap();
    s.settle(10);
    let d = commands::diff_spec(&s.state, &s.spec, &hello_v2(), "x.yaml").unwrap();
    assert_eq!(d.restarted.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["hello-0"]);
    s.update(&hello_v2()).unwrap();
    let pods: Vec<String> = s.plan("update").steps().map(|(_, st)| st.pod_instance.clone()).collect();
    assert_eq!(pods, ["hello-0"]);
}

/// HELLO with a `job` pod whose ONCE task a custom plan runs.
fn hello_with_job() -> String {
    format!(
        "{HELLO}  job:
    count: 1
    resources: {{ cpus: 0.5, mem: 128 }}
    tasks:
      check: {{ cmd: ./check $MODE, goal: ONCE }}
plans:
  verify:
    parameters: {{ MODE: quick }}
    phases:
      - {{ name: verify, pod: job }}
"
    )
}

#[test]
fn sim_a_custom_plans_parameters_reach_its_tasks() {
    let mut s = deployed(&hello_with_job());
    let check = s.task_id("job-0", "check");
    s.status(&check, TaskState::Finished, None, "");
    assert!(!s.state.plans.contains_key("recovery"), "a ONCE task that finished is not recovered");
    assert!(s.plan("verify").interrupted, "a custom plan waits for `plan start`");
    commands::with_plan(&mut s.state, "verify", |p| {
        p.start([("MODE".to_string(), "full".to_string())].into());
        Ok(())
    })
    .unwrap();
    let d = s.offer_all();
    let l = launches(&d);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].name, "job-0-check");
    assert_eq!(l[0].env["MODE"], "full");
    let id = l[0].id.clone();
    s.status(&id, TaskState::Finished, None, "");
    assert_eq!(s.step("verify", "job-0"), StepState::Complete);
    assert!(commands::with_plan(&mut s.state, "nope", |_| Ok(())).is_err());
}

#[test]
fn sim_service_delete_decommissions_every_pod() {
    let mut s = deployed(
        BROKER.replace("    hooks:\n      decommission: { cmd: ./drain.sh, cpus: 0.5, mem: 128 }\n", "").as_str(),
    );
    commands::delete_all(&mut s.state, &s.spec).unwrap();
    assert!(s.plan("deploy").interrupted);
    let order: Vec<String> = s.plan("decommission").steps().map(|(_, st)| st.pod_instance.clone()).collect();
    assert_eq!(order, ["broker-2", "broker-1", "broker-0"]);
    s.settle(30);
    assert!(s.plan("decommission").is_complete());
    assert!(s.state.pods.is_empty());
    assert!(s.agents.values().all(|a| a.ledger.reservations.is_empty()), "every reservation released");
    assert!(s.agents.values().all(|a| a.ledger.tasks.is_empty()));
    let e = commands::delete_all(&mut s.state, &s.spec);
    assert!(e.is_ok(), "nothing left: a no-op");
}

/// Three `hello` pods whose rolls wait for an `update-order` hook.
fn ordered(version: &str) -> String {
    HELLO
        .replace("count: 2", "count: 3")
        .replace("    tasks:\n", "    hooks:\n      update-order: { cmd: ./leader-last.sh }\n    tasks:\n")
        .replace("./server --port", &format!("./server --{version} --port"))
}

#[test]
fn sim_an_update_waits_for_its_order_hook_and_rolls_in_that_order() {
    let mut s = deployed(&ordered("v1"));
    s.update(&ordered("v2")).unwrap();
    let d = s.offer_all();
    assert!(d.kills.is_empty(), "nothing stops before the order is known");
    let due = s.order_hooks();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].env["UPDATE_PODS"], "hello-0 hello-1 hello-2");
    assert_eq!(due[0].env["POD_TYPE"], "hello");
    assert!(due[0].env["SMACK_PODS"].contains("hello-2"));
    assert_eq!(s.step_message("update", "hello-0"), "waiting for the pod type's update-order hook");
    // The leader (hello-0) goes last.
    assert!(s.order_answer(&due[0], Ok(vec!["hello-2".into(), "hello-1".into(), "hello-0".into()])));
    let d = s.offer_all();
    assert_eq!(d.kills, [s.task_id("hello-2", "server")]);
    assert!(!s.order_answer(&due[0], Ok(vec![])), "a second answer finds the phase gone");
}

#[test]
fn sim_a_failed_order_hook_rolls_in_plan_order() {
    let mut s = deployed(&ordered("v1"));
    s.update(&ordered("v2")).unwrap();
    let due = s.order_hooks();
    s.order_answer(&due[0], Err("exit 1: no leader".into()));
    assert!(s.step_message("update", "hello-0").contains("the update-order hook failed (exit 1: no leader)"));
    let d = s.offer_all();
    assert_eq!(d.kills, [s.task_id("hello-0", "server")]);
}
