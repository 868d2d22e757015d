//! Scenario tests of the plan engine: strategies, pauses across a restart,
//! backoff, operator overrides, and the rendered tree.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const BROKER: &[&str] = &["broker"];
const NODE: &[&str] = &["node"];

fn deploy(strategy: Strategy) -> Plan {
    Plan::deploy_for(&[("broker", 2, BROKER), ("db", 1, NODE)], strategy).unwrap()
}

fn names(plan: &Plan, refs: &[StepRef]) -> Vec<String> {
    refs.iter().map(|r| plan.get(*r).unwrap().name.clone()).collect()
}

fn candidates(plan: &Plan, now_ms: u64) -> Vec<String> {
    names(plan, &plan.candidates(now_ms))
}

fn r(plan: &Plan, phase: &str, step: &str) -> StepRef {
    plan.step_ref(phase, step).unwrap()
}

/// A step named by reference or by (phase, step) names.
trait At {
    fn at(&self, plan: &Plan) -> StepRef;
}

impl At for StepRef {
    fn at(&self, _: &Plan) -> StepRef {
        *self
    }
}

impl At for (&str, &str) {
    fn at(&self, plan: &Plan) -> StepRef {
        r(plan, self.0, self.1)
    }
}

/// Drives a step from where it is through launch to COMPLETE.
fn complete(plan: &mut Plan, step: impl At, now_ms: u64) {
    let step = step.at(plan);
    plan.start_step(step, now_ms).unwrap();
    plan.on_launched(step).unwrap();
    for task in plan.get(step).unwrap().tasks.clone() {
        plan.on_task_running(step, &task).unwrap();
        plan.on_task_ready(step, &task).unwrap();
    }
    assert_eq!(plan.get(step).unwrap().state, StepState::Complete);
}

fn launch(plan: &mut Plan, step: impl At, now_ms: u64) {
    let step = step.at(plan);
    plan.start_step(step, now_ms).unwrap();
    plan.on_launched(step).unwrap();
}

#[test]
fn serial_deploy_runs_one_step_at_a_time_in_order() {
    let mut plan = deploy(Strategy::Serial);
    assert_eq!(plan.status, Status::Pending);
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]"]);

    let k0 = r(&plan, "broker", "broker-0");
    plan.start_step(k0, 0).unwrap();
    assert_eq!(plan.status, Status::InProgress);
    // A PREPARED step stays a candidate: offers are still being evaluated.
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]"]);
    plan.on_launched(k0).unwrap();
    assert!(candidates(&plan, 0).is_empty(), "STARTING is waited on");
    plan.on_task_running(k0, "broker").unwrap();
    assert_eq!(plan.get(k0).unwrap().state, StepState::Started);
    assert!(candidates(&plan, 0).is_empty());
    plan.on_task_ready(k0, "broker").unwrap();

    assert_eq!(candidates(&plan, 0), ["broker-1:[broker]"]);
    complete(&mut plan, ("broker", "broker-1"), 0);
    assert_eq!(plan.phase("broker").unwrap().status, Status::Complete);
    assert_eq!(candidates(&plan, 0), ["db-0:[node]"]);
    complete(&mut plan, ("db", "db-0"), 0);
    assert_eq!(plan.status, Status::Complete);
    assert!(plan.is_complete());
    assert!(candidates(&plan, 0).is_empty());
}

#[test]
fn parallel_phase_offers_every_step_and_parallel_plan_every_phase() {
    let mut plan = deploy(Strategy::Parallel);
    assert_eq!(
        candidates(&plan, 0),
        ["broker-0:[broker]", "broker-1:[broker]"],
        "the deploy plan itself stays serial over phases"
    );
    launch(&mut plan, ("broker", "broker-0"), 0);
    assert_eq!(candidates(&plan, 0), ["broker-1:[broker]"]);

    let phases = vec![
        Phase::new("a", Strategy::Parallel, vec![Step::new("a-0", ["x"])]),
        Phase::new("b", Strategy::Parallel, vec![Step::new("b-0", ["y"])]),
    ];
    let plan = Plan::from_phases("both", Strategy::Parallel, phases).unwrap();
    assert_eq!(candidates(&plan, 0), ["a-0:[x]", "b-0:[y]"]);
}

#[test]
fn canary_runs_first_step_then_waits_for_resume_then_goes_serially() {
    let phases = vec![Phase::new(
        "broker",
        Strategy::Canary,
        (0..3).map(|i| Step::new(&format!("broker-{i}"), ["broker"])).collect(),
    )];
    let mut plan = Plan::from_phases("update", Strategy::Serial, phases).unwrap();
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]"]);

    let k0 = r(&plan, "broker", "broker-0");
    launch(&mut plan, k0, 0);
    // A resume before the canary is done approves nothing.
    plan.resume(None).unwrap();
    assert!(!plan.phases[0].canary_resumed);
    plan.on_task_running(k0, "broker").unwrap();
    plan.on_task_ready(k0, "broker").unwrap();

    assert!(candidates(&plan, 0).is_empty(), "the canary gate holds the rest");
    assert_eq!(plan.status, Status::Waiting);
    assert_eq!(plan.phase("broker").unwrap().status, Status::Waiting);
    assert!(render_tree(&plan).contains("canary: broker-0:[broker] is done"));

    plan.resume(Some("broker")).unwrap();
    assert_eq!(plan.status, Status::InProgress);
    assert_eq!(candidates(&plan, 0), ["broker-1:[broker]"], "serially after the gate");
    complete(&mut plan, ("broker", "broker-1"), 0);
    assert_eq!(candidates(&plan, 0), ["broker-2:[broker]"]);
    complete(&mut plan, ("broker", "broker-2"), 0);
    assert_eq!(plan.status, Status::Complete);
}

#[test]
fn canary_at_plan_level_gates_phases() {
    let mut plan = Plan::deploy_for(&[("a", 1, &["x"]), ("b", 1, &["y"])], Strategy::Serial).unwrap();
    plan.strategy = Strategy::Canary;
    complete(&mut plan, ("a", "a-0"), 0);
    assert!(plan.candidates(0).is_empty());
    assert!(plan.awaiting_resume());
    plan.resume(None).unwrap();
    assert_eq!(candidates(&plan, 0), ["b-0:[y]"]);
}

#[test]
fn dependency_strategy_orders_steps_and_shows_what_blocks() {
    let steps = vec![
        Step::new("schema-0", ["create"]),
        Step::new("seed-0", ["load"]).with_dependencies(["schema-0:[create]"]),
        Step::new("report-0", ["run"]).with_dependencies(["schema-0:[create]", "seed-0:[load]"]),
        Step::new("metrics-0", ["scrape"]),
    ];
    let phases = vec![Phase::new("setup", Strategy::Dependency, steps)];
    let mut plan = Plan::from_phases("init", Strategy::Serial, phases).unwrap();

    assert_eq!(candidates(&plan, 0), ["schema-0:[create]", "metrics-0:[scrape]"]);
    let tree = render_tree(&plan);
    assert!(tree.contains("waits for: schema-0:[create], seed-0:[load]"), "{tree}");

    let schema = r(&plan, "setup", "schema-0");
    plan.start_step(schema, 0).unwrap();
    plan.on_launched(schema).unwrap();
    plan.on_task_finished(schema, "create").unwrap();
    assert_eq!(candidates(&plan, 0), ["seed-0:[load]", "metrics-0:[scrape]"]);
    complete(&mut plan, ("setup", "seed-0"), 0);
    assert_eq!(candidates(&plan, 0), ["report-0:[run]", "metrics-0:[scrape]"]);
}

#[test]
fn dependency_strategy_over_phases() {
    let phases = vec![
        Phase::new("stages", Strategy::Serial, vec![Step::new("analyze-0", ["stage"])])
            .with_dependencies(["broker", "db"]),
        Phase::new("broker", Strategy::Serial, vec![Step::new("broker-0", ["broker"])]),
        Phase::new("db", Strategy::Serial, vec![Step::new("db-0", ["node"])]),
    ];
    let mut plan = Plan::from_phases("deploy", Strategy::Dependency, phases).unwrap();
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]", "db-0:[node]"]);
    assert!(render_tree(&plan).contains("waits for: broker, db"));
    complete(&mut plan, ("broker", "broker-0"), 0);
    assert_eq!(candidates(&plan, 0), ["db-0:[node]"]);
    complete(&mut plan, ("db", "db-0"), 0);
    assert_eq!(candidates(&plan, 0), ["analyze-0:[stage]"]);
}

#[test]
fn builders_refuse_bad_dependencies_and_duplicates() {
    let cycle = vec![Phase::new(
        "p",
        Strategy::Dependency,
        vec![
            Step::new("a-0", ["t"]).with_dependencies(["b-0:[t]"]),
            Step::new("b-0", ["t"]).with_dependencies(["a-0:[t]"]),
        ],
    )];
    let err = Plan::from_phases("x", Strategy::Serial, cycle).unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle in phase p: a-0:[t] → b-0:[t] → a-0:[t]");

    let unknown =
        vec![Phase::new("p", Strategy::Dependency, vec![Step::new("a-0", ["t"]).with_dependencies(["nope"])])];
    let err = Plan::from_phases("x", Strategy::Serial, unknown).unwrap_err();
    assert!(matches!(err, PlanError::UnknownDependency { .. }));
    assert!(err.to_string().contains("which is not one of: a-0:[t]"), "{err}");

    let dup = Plan::deploy_for(&[("broker", 1, BROKER), ("broker", 1, BROKER)], Strategy::Serial);
    assert!(matches!(dup, Err(PlanError::DuplicateName { .. })));
}

#[test]
fn pause_mid_deploy_survives_serialization_and_resume_completes() {
    let mut plan = deploy(Strategy::Serial);
    complete(&mut plan, ("broker", "broker-0"), 0);
    let k1 = r(&plan, "broker", "broker-1");
    launch(&mut plan, k1, 0);

    plan.pause(None).unwrap();
    assert_eq!(plan.status, Status::Waiting);
    assert!(plan.candidates(0).is_empty());
    assert_eq!(plan.step("db", "db-0").unwrap().state, StepState::Waiting);
    assert_eq!(plan.get(k1).unwrap().state, StepState::Starting, "a pause kills nothing");

    // The scheduler restarts: the plan comes back from the state store.
    let json = serde_json::to_string(&plan).unwrap();
    let mut plan: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(plan.status, Status::Waiting);
    assert!(plan.interrupted);
    assert!(plan.candidates(10_000).is_empty(), "still paused after restart");

    // The launch in flight still finishes while paused.
    plan.on_task_running(k1, "broker").unwrap();
    plan.on_task_ready(k1, "broker").unwrap();
    assert!(plan.candidates(10_000).is_empty());
    assert_eq!(plan.status, Status::Waiting);

    plan.resume(None).unwrap();
    assert_eq!(plan.step("db", "db-0").unwrap().state, StepState::Pending);
    assert_eq!(candidates(&plan, 0), ["db-0:[node]"]);
    complete(&mut plan, ("db", "db-0"), 0);
    assert_eq!(plan.status, Status::Complete);
}

#[test]
fn pausing_one_phase_leaves_the_others_running() {
    let phases = vec![
        Phase::new("a", Strategy::Serial, vec![Step::new("a-0", ["x"])]),
        Phase::new("b", Strategy::Serial, vec![Step::new("b-0", ["y"])]),
    ];
    let mut plan = Plan::from_phases("both", Strategy::Parallel, phases).unwrap();
    plan.pause(Some("b")).unwrap();
    assert_eq!(candidates(&plan, 0), ["a-0:[x]"]);
    assert_eq!(plan.phase("b").unwrap().status, Status::Waiting);
    assert!(render_tree(&plan).contains("paused: `smack plan resume both b` continues it"));

    // Pausing the plan, then resuming one phase, lets only that phase go.
    plan.pause(None).unwrap();
    plan.resume(Some("a")).unwrap();
    assert_eq!(candidates(&plan, 0), ["a-0:[x]"]);
    plan.resume(Some("b")).unwrap();
    assert_eq!(candidates(&plan, 0), ["a-0:[x]", "b-0:[y]"]);

    let err = plan.pause(Some("c")).unwrap_err();
    assert_eq!(err.to_string(), "plan both has no phase \"c\"; its phases are: a, b");
}

#[test]
fn crash_loop_backoff_grows_and_gates_the_step() {
    let mut plan = deploy(Strategy::Serial);
    let k0 = r(&plan, "broker", "broker-0");
    let mut now = 0;
    let mut delays = Vec::new();
    for attempt in 1..=8u32 {
        launch(&mut plan, k0, now);
        plan.on_task_running(k0, "broker").unwrap();
        plan.on_task_failed(k0, now).unwrap();
        let step = plan.get(k0).unwrap();
        assert_eq!(step.state, StepState::Delayed);
        let b = step.backoff.unwrap();
        assert_eq!(b.attempts, attempt);
        delays.push(b.delay_ms / 1_000);

        if b.delay_ms > 0 {
            assert!(plan.candidates(b.until_ms - 1).is_empty(), "eligible only after until_ms");
            assert!(matches!(plan.start_step(k0, b.until_ms - 1), Err(PlanError::BackingOff { .. })));
        }
        // Serial: the delayed step holds back the ones after it.
        assert_eq!(plan.status, Status::InProgress);
        now = b.until_ms;
        assert_eq!(candidates(&plan, now), ["broker-0:[broker]"]);
    }
    assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60]);

    // tick turns an elapsed DELAYED step back into PENDING.
    assert_eq!(plan.tick(now), 1);
    assert_eq!(plan.get(k0).unwrap().state, StepState::Pending);
    assert_eq!(plan.get(k0).unwrap().backoff.unwrap().attempts, 8);
    plan.reset_backoff(k0).unwrap();
    assert_eq!(plan.get(k0).unwrap().backoff, None);
}

#[test]
fn backoff_policy_is_per_plan() {
    let policy = BackoffPolicy { initial_ms: 100, max_ms: 250, ..BackoffPolicy::default() };
    let mut plan = deploy(Strategy::Serial).with_backoff_policy(policy);
    let k0 = r(&plan, "broker", "broker-0");
    let mut until = Vec::new();
    let mut now = 0;
    for _ in 0..4 {
        launch(&mut plan, k0, now);
        plan.on_task_failed(k0, now).unwrap();
        now = plan.get(k0).unwrap().backoff.unwrap().until_ms;
        until.push(now);
    }
    assert_eq!(until, [0, 100, 300, 550]);
}

#[test]
fn a_pod_in_work_is_never_handed_out_twice() {
    // Two phases touching the same pod instance, run in parallel.
    let phases = vec![
        Phase::new("config", Strategy::Serial, vec![Step::new("broker-0", ["broker"])]),
        Phase::new("hooks", Strategy::Serial, vec![Step::new("broker-0", ["move-partitions"])]),
    ];
    let mut plan = Plan::from_phases("update", Strategy::Parallel, phases).unwrap();
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]"], "one step per pod");
    launch(&mut plan, ("config", "broker-0"), 0);
    assert!(plan.candidates(0).is_empty(), "broker-0 is dirty");
    assert_eq!(plan.pods_in_work(), BTreeSet::from(["broker-0".to_string()]));

    // Pods another plan works on (say, recovery) are skipped too.
    let deploy = deploy(Strategy::Parallel);
    let busy = BTreeSet::from(["broker-0".to_string()]);
    assert_eq!(names(&deploy, &deploy.candidates_excluding(0, &busy)), ["broker-1:[broker]"]);
}

#[test]
fn force_complete_moves_on_and_is_persisted() {
    let mut plan = deploy(Strategy::Serial);
    let k0 = r(&plan, "broker", "broker-0");
    plan.on_error(k0, "volume on agent-2 is gone").unwrap();
    assert_eq!(plan.status, Status::Error);
    assert!(plan.candidates(0).is_empty(), "serial: ERROR blocks what follows");

    plan.force_complete("broker", "broker-0").unwrap();
    let back: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
    let step = back.step("broker", "broker-0:[broker]").unwrap();
    assert_eq!(step.state, StepState::Complete);
    assert_eq!(step.message.as_deref(), Some("force-completed by the operator"));
    assert_eq!(candidates(&back, 0), ["broker-1:[broker]"]);

    let err = plan.force_complete("broker", "broker-7").unwrap_err();
    assert_eq!(
        err.to_string(),
        "phase broker of plan deploy has no step \"broker-7\"; its steps are: broker-0:[broker], broker-1:[broker]"
    );
}

#[test]
fn restart_puts_steps_back_to_pending() {
    let mut plan = deploy(Strategy::Serial);
    complete(&mut plan, ("broker", "broker-0"), 0);
    complete(&mut plan, ("broker", "broker-1"), 0);

    plan.restart(Some("broker"), Some("broker-1")).unwrap();
    assert_eq!(plan.step("broker", "broker-1").unwrap().state, StepState::Pending);
    assert_eq!(plan.step("broker", "broker-0").unwrap().state, StepState::Complete);
    assert_eq!(candidates(&plan, 0), ["broker-1:[broker]"]);

    plan.restart(Some("broker"), None).unwrap();
    assert_eq!(candidates(&plan, 0), ["broker-0:[broker]"]);
    assert_eq!(plan.status, Status::Pending);

    assert_eq!(plan.restart(None, Some("broker-0")), Err(PlanError::StepWithoutPhase));

    // Restarting a paused plan keeps it paused.
    plan.pause(None).unwrap();
    plan.restart(None, None).unwrap();
    assert!(plan.candidates(0).is_empty());
    assert_eq!(plan.status, Status::Waiting);
}

#[test]
fn restart_closes_a_canary_gate() {
    let steps = (0..2).map(|i| Step::new(&format!("c-{i}"), ["t"])).collect();
    let mut plan = Plan::from_phases("p", Strategy::Serial, vec![Phase::new("c", Strategy::Canary, steps)]).unwrap();
    complete(&mut plan, ("c", "c-0"), 0);
    plan.resume(None).unwrap();
    assert!(plan.phases[0].canary_resumed);
    plan.restart(None, None).unwrap();
    assert!(!plan.phases[0].canary_resumed);
    complete(&mut plan, ("c", "c-0"), 0);
    assert!(plan.candidates(0).is_empty());
}

#[test]
fn statuses_derive_from_children() {
    let mut plan = deploy(Strategy::Serial);
    assert_eq!(plan.status, Status::Pending);
    complete(&mut plan, ("broker", "broker-0"), 0);
    assert_eq!(plan.phase("broker").unwrap().status, Status::InProgress);
    assert_eq!(plan.phase("db").unwrap().status, Status::Pending);
    assert_eq!(plan.status, Status::InProgress);

    plan.add_error("spec refused: volume size changed");
    assert_eq!(plan.status, Status::Error);
    assert!(plan.candidates(0).is_empty());
    plan.clear_errors();
    assert_eq!(plan.status, Status::InProgress);

    let c0 = r(&plan, "db", "db-0");
    plan.on_error(c0, "boom").unwrap();
    assert_eq!(plan.phase("db").unwrap().status, Status::Error);
    assert_eq!(plan.status, Status::Error);
    plan.force_complete("db", "db-0").unwrap();
    plan.force_complete("broker", "broker-1").unwrap();
    assert_eq!(plan.status, Status::Complete);
    assert_eq!(plan.status, plan.derive_status());
}

#[test]
fn custom_plan_starts_with_parameters_and_stops() {
    let phases = vec![Phase::new("rebalance", Strategy::Serial, vec![Step::new("broker-0", ["reassign"])])];
    let mut plan = Plan::from_phases("rebalance", Strategy::Serial, phases).unwrap();
    plan.stop();
    assert_eq!(plan.status, Status::Waiting);
    assert!(plan.candidates(0).is_empty());

    let params = BTreeMap::from([("TOPIC".to_string(), "payments".to_string())]);
    plan.start(params.clone());
    assert_eq!(plan.parameters, params);
    assert_eq!(candidates(&plan, 0), ["broker-0:[reassign]"]);
    let s = r(&plan, "rebalance", "broker-0");
    launch(&mut plan, s, 0);
    assert!(render_tree(&plan).contains("parameters: TOPIC=payments"));

    plan.stop();
    assert!(plan.parameters.is_empty());
    assert_eq!(plan.get(s).unwrap().state, StepState::Waiting);
    assert!(plan.candidates(0).is_empty());

    plan.start(BTreeMap::new());
    plan.start_step(s, 0).unwrap();
    plan.on_launched(s).unwrap();
    plan.on_task_finished(s, "reassign").unwrap();
    assert_eq!(plan.status, Status::Complete);
}

#[test]
fn task_reports_find_their_step() {
    let mut plan = deploy(Strategy::Serial);
    let k1 = r(&plan, "broker", "broker-1");
    assert_eq!(plan.step_for_task("broker-1", "broker"), Some(k1));
    assert_eq!(plan.step_for_task("broker-1", "zookeeper"), None);
    complete(&mut plan, k1, 0);
    assert_eq!(plan.step_for_task("broker-1", "broker"), None);
    assert!(matches!(plan.on_launched(StepRef { phase: 9, step: 0 }), Err(PlanError::NoSuchStepRef { .. })));
}

#[test]
fn json_shape_is_stable() {
    let plan = deploy(Strategy::Canary);
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["name"], "deploy");
    assert_eq!(v["strategy"], "serial");
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["phases"][0]["strategy"], "canary");
    assert_eq!(v["phases"][0]["steps"][1]["name"], "broker-1:[broker]");
    assert_eq!(v["phases"][0]["steps"][1]["pod_instance"], "broker-1");
    assert_eq!(v["phases"][0]["steps"][1]["state"], "PENDING");
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn render_tree_snapshot() {
    let mut plan = deploy(Strategy::Serial);
    complete(&mut plan, ("broker", "broker-0"), 0);
    launch(&mut plan, ("broker", "broker-1"), 0);
    assert_eq!(
        render_tree(&plan),
        "\
deploy (serial strategy) (IN_PROGRESS)
├─ broker (serial strategy) (IN_PROGRESS)
│  ├─ broker-0:[broker] (COMPLETE)
│  └─ broker-1:[broker] (STARTING)
└─ db (serial strategy) (PENDING)
   └─ db-0:[node] (PENDING)
"
    );
}

#[test]
fn render_tree_shows_why_steps_wait() {
    let mut plan = Plan::deploy_for(&[("broker", 3, BROKER), ("db", 1, NODE)], Strategy::Parallel).unwrap();
    let k0 = r(&plan, "broker", "broker-0");
    let k1 = r(&plan, "broker", "broker-1");
    let k2 = r(&plan, "broker", "broker-2");
    let mut now = 100_000;
    for _ in 0..3 {
        launch(&mut plan, k0, now);
        plan.on_task_failed(k0, now).unwrap();
        now = plan.get(k0).unwrap().backoff.unwrap().until_ms;
    }
    plan.on_error(k1, "volume vol-7 on agent-2 is gone").unwrap();
    plan.start_step(k2, 0).unwrap();
    plan.set_message(k2, "no agent in zone-c with 10 GiB free disk: 4 offers declined at the volume stage").unwrap();
    plan.pause(Some("db")).unwrap();
    assert_eq!(
        render_tree(&plan),
        "\
deploy (serial strategy) (ERROR)
├─ broker (parallel strategy) (ERROR)
│  ├─ broker-0:[broker] (DELAYED)
│  │  crash-loop backoff: 3 failures, retry 2s after the last
│  ├─ broker-1:[broker] (ERROR)
│  │  error: volume vol-7 on agent-2 is gone
│  └─ broker-2:[broker] (PREPARED)
│     no agent in zone-c with 10 GiB free disk: 4 offers declined at the volume stage
└─ db (parallel strategy) (WAITING)
   │  paused: `smack plan resume deploy db` continues it
   └─ db-0:[node] (WAITING)
"
    );
}
