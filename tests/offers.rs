//! The offer-based core with real processes: a master, agents, and a test
//! framework reserving disk, creating volumes and launching tasks.

use crate::support::*;
use nix::sys::signal::Signal;
use smack_operator::protocol::{Accept, AgentState};
use smack_operator::resources::*;
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn task(id: &str, reservation: Option<&str>, volumes: &[&str], cpus: f64, mem: u64, command: &str) -> TaskInfo {
    TaskInfo {
        reservation: reservation.map(String::from),
        volumes: volumes.iter().map(|s| s.to_string()).collect(),
        kill_grace_period_ms: 2000,
        ..TaskInfo::new(id, command, Resources::new(cpus, mem, 0))
    }
}

fn root_volume(id: &str, size: u64) -> Volume {
    Volume {
        id: id.into(),
        source: VolumeSource::Root { size },
        container_path: "data".into(),
        host_path: String::new(),
    }
}

/// Appends a line to the volume, records its pid there, and keeps running.
const WRITER: &str = r#"echo "run $TASK_ID" >> "$VOLUME_DATA/lines"; echo $$ > "$VOLUME_DATA/pid"; exec sleep 600"#;

fn pid_in(dir: &std::path::Path) -> nix::unistd::Pid {
    let s = read(dir.join("pid"));
    nix::unistd::Pid::from_raw(s.trim().parse().unwrap_or_else(|_| panic!("no pid file in {}", dir.display())))
}

async fn reserve_and_launch(fw: &mut TestFramework, first_task: &str) -> Offer {
    let offer = fw.offer_where("with 1 cpu unreserved", T, |o| o.unreserved.cpus >= 1.0).await;
    fw.accept(
        offer.id.clone(),
        vec![
            Operation::Reserve {
                id: "r1".into(),
                resources: Resources::new(0.5, 64, 100),
                labels: [("resource_id".to_string(), "r1".to_string())].into(),
            },
            Operation::CreateVolume { reservation: "r1".into(), volume: root_volume("v1", 50) },
            Operation::Launch { task: task(first_task, Some("r1"), &["v1"], 0.5, 64, WRITER) },
        ],
    )
    .await
    .expect("accept reserve+volume+launch");
    fw.status(first_task, TaskState::Running, T).await;
    offer
}

/// Issue 2, test 1: a task SIGKILLed is reported FAILED; relaunched on the
/// same reservation, it sees the line its earlier run wrote on the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_survives_a_task_crash() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000", "--ports", "41000-41010"]);
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    let offer = reserve_and_launch(&mut fw, "writer-1").await;
    let vol = volume_path(&m, "v1").await;
    wait_for("the task writes its pid", T, || async { (!read(vol.join("pid")).is_empty()).then_some(()) }).await;
    nix::sys::signal::kill(pid_in(&vol), Signal::SIGKILL).unwrap();
    let failed = fw.status("writer-1", TaskState::Failed, T).await;
    assert!(failed.message.contains("signal 9"), "{failed:?}");

    let again = fw
        .offer_where("with reservation r1 and volume v1 free", T, |o| {
            o.agent_id == offer.agent_id
                && o.reservation("r1")
                    .map(|r| r.free.cpus >= 0.5 && r.reservation.volumes.iter().any(|v| v.id == "v1"))
                    .unwrap_or(false)
        })
        .await;
    fw.accept(again.id, vec![Operation::Launch { task: task("writer-2", Some("r1"), &["v1"], 0.5, 64, WRITER) }])
        .await
        .expect("relaunch on the same reservation");
    fw.status("writer-2", TaskState::Running, T).await;
    wait_for("the second run appends its line", T, || async {
        (read(vol.join("lines")) == "run writer-1\nrun writer-2\n").then_some(())
    })
    .await;
}

/// Issue 2, test 2: an agent restarted re-attaches to its running task, and
/// its reservation and volume are offered again to the same role; a task
/// that died while the agent was down is reported LOST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_reattaches_and_offers_reservations_again() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let args = ["--cpus", "2", "--mem", "1024", "--disk", "1000"];
    let mut agent = m.agent("a1", &host, &args);
    let agent_id = m.wait_agents(1).await[0].id.clone();
    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    reserve_and_launch(&mut fw, "keeper").await;
    // A second task, unreserved, that will die while the agent is down.
    let o = fw.offer_where("with 0.5 cpu", T, |o| o.unreserved.cpus >= 0.5).await;
    fw.accept(
        o.id,
        vec![Operation::Launch {
            task: task("mayfly", None, &[], 0.5, 32, r#"echo $$ > "$SMACK_SANDBOX/pid"; exec sleep 600"#),
        }],
    )
    .await
    .unwrap();
    fw.status("mayfly", TaskState::Running, T).await;
    let vol = volume_path(&m, "v1").await;
    wait_for("pid file", T, || async { (!read(vol.join("pid")).is_empty()).then_some(()) }).await;
    let keeper_pid = pid_in(&vol);
    let mayfly_sandbox = std::fs::read_dir(dir.path().join("agents/a1/sandboxes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("mayfly-"))
        .unwrap();
    let mayfly_pid = wait_for("mayfly pid", T, || async {
        let s = read(mayfly_sandbox.join("pid"));
        s.trim().parse::<i32>().ok()
    })
    .await;

    agent.kill9();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mayfly_pid), Signal::SIGKILL).unwrap();
    assert!(nix::sys::signal::kill(keeper_pid, None).is_ok(), "the task outlives its agent");
    fw.decline_held(100).await;
    fw.offers.clear();

    let _agent = m.agent("a1", &host, &args);
    let lost = fw.status("mayfly", TaskState::Lost, T).await;
    assert_eq!(lost.agent_id, agent_id);
    let again = fw
        .offer_where("with reservation r1 again", T, |o| o.agent_id == agent_id && o.reservation("r1").is_some())
        .await;
    let r1 = again.reservation("r1").unwrap();
    assert_eq!(r1.reservation.role, "store");
    assert!(r1.reservation.volumes.iter().any(|v| v.id == "v1"), "{r1:?}");
    assert_eq!(r1.free.cpus, 0.0, "the re-attached task still uses its reservation: {r1:?}");
    let state = m.client().state().await.unwrap();
    let a = state.agents.iter().find(|a| a.id == agent_id).unwrap();
    assert_eq!(a.state, AgentState::Reachable);
    assert!(a.tasks.iter().any(|t| t.info.id == "keeper" && t.state == TaskState::Running), "{a:#?}");
    // The re-attached task is watched: its death is reported.
    nix::sys::signal::kill(keeper_pid, Signal::SIGKILL).unwrap();
    fw.status("keeper", TaskState::Failed, T).await;
}

/// Issue 2, test 3: an agent gone for good is unreachable within the
/// timeout, its tasks LOST, and its reservations offered to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_gone_is_unreachable_and_its_tasks_lost() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &["--agent-timeout", "2s"]).await;
    let p = address_prefix();
    let args = ["--cpus", "2", "--mem", "1024", "--disk", "1000"];
    let mut a1 = m.agent("a1", &format!("{p}.1"), &args);
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    let offer = reserve_and_launch(&mut fw, "doomed").await;
    let gone = offer.agent_id.clone();
    // A second agent keeps offers flowing while the first is gone.
    let _a2 = m.agent("a2", &format!("{p}.2"), &args);
    m.wait_agents(2).await;
    // The agent and its task die together, as with a machine failure.
    let vol = volume_path(&m, "v1").await;
    let pid = pid_in(&vol);
    a1.kill9();
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    let started = std::time::Instant::now();
    let lost = fw.status("doomed", TaskState::Lost, Duration::from_secs(15)).await;
    assert!(started.elapsed() < Duration::from_secs(10), "LOST took {:?}", started.elapsed());
    assert!(lost.message.contains("unreachable"), "{lost:?}");
    let summary = m.client().agents().await.unwrap();
    assert_eq!(summary.iter().find(|a| a.id == gone).unwrap().state, AgentState::Unreachable);
    // For a while, no offer names the gone agent or its reservation.
    fw.decline_held(0).await;
    fw.idle(Duration::from_secs(3)).await;
    assert!(fw.offers.iter().any(|o| o.agent_id != gone), "the other agent is still offered");
    assert!(
        fw.offers.iter().all(|o| o.agent_id != gone && o.reservation("r1").is_none()),
        "offers of an unreachable agent: {:#?}",
        fw.offers
    );
}

/// Issue 2, test 4: every invalid accept is refused with its reason and
/// changes nothing in the master's ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_accepts_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000"]);
    m.wait_agents(1).await;
    let c = m.client();
    // Another role holds a reservation on the agent.
    let mut other = TestFramework::subscribe(c.clone(), "other").await;
    let o = other.offer_where("any", T, |_| true).await;
    c.accept(
        &other.id,
        &Accept {
            offer_ids: vec![o.id],
            operations: vec![Operation::Reserve {
                id: "theirs".into(),
                resources: Resources::new(0.5, 64, 100),
                labels: BTreeMap::new(),
            }],
            filter_ms: None,
        },
    )
    .await
    .unwrap();
    c.suppress(&other.id).await.unwrap();
    other.decline_held(60_000).await;

    let mut fw = TestFramework::subscribe(c.clone(), "mine").await;
    let offer = fw.offer_where("any", T, |o| o.unreserved.cpus > 1.0).await;
    let before = c.state().await.unwrap().agents;
    let cases: Vec<(Vec<Operation>, &str)> = vec![
        (
            vec![Operation::Reserve {
                id: "big".into(),
                resources: Resources::new(64.0, 1, 1),
                labels: BTreeMap::new(),
            }],
            "operation 0 (RESERVE) refused: more than offered: cpus 64 wanted",
        ),
        (
            vec![Operation::CreateVolume { reservation: "nope".into(), volume: root_volume("v", 10) }],
            "operation 0 (CREATE_VOLUME) refused: a volume must be made on reserved disk",
        ),
        (
            vec![Operation::Launch { task: task("t", Some("theirs"), &[], 0.1, 8, "true") }],
            "holds resources of another role (other)",
        ),
        (
            vec![
                Operation::Reserve { id: "ok".into(), resources: Resources::new(0.5, 64, 10), labels: BTreeMap::new() },
                Operation::Launch { task: task("t", None, &[], 4.0, 8, "true") },
            ],
            "operation 1 (LAUNCH) refused: more than offered",
        ),
    ];
    for (ops, want) in cases {
        let err = c
            .accept(&fw.id, &Accept { offer_ids: vec![offer.id.clone()], operations: ops, filter_ms: None })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("409") && err.contains(want), "got {err:?}, want {want:?}");
        assert_eq!(c.state().await.unwrap().agents, before, "a refused accept changed the ledger");
    }
    // A used offer cannot be used again.
    c.accept(
        &fw.id,
        &Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![Operation::Reserve {
                id: "mine".into(),
                resources: Resources::new(0.2, 8, 8),
                labels: BTreeMap::new(),
            }],
            filter_ms: None,
        },
    )
    .await
    .unwrap();
    let after_ok = c.state().await.unwrap().agents;
    let err = c
        .accept(
            &fw.id,
            &Accept {
                offer_ids: vec![offer.id.clone()],
                operations: vec![Operation::Unreserve { id: "mine".into() }],
                filter_ms: None,
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not outstanding (rescinded, expired or already used)"), "{err}");
    // Another framework's offer id is not usable either.
    let err = c
        .accept(&other.id, &Accept { offer_ids: vec!["offer-999999".into()], operations: vec![], filter_ms: None })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not outstanding"), "{err}");
    assert_eq!(c.state().await.unwrap().agents, after_ok);
}

/// Issue 2, test 5: two frameworks with equal weights on a contended
/// cluster end with the shares DRF computes: the classic example of
/// 9 cpus / 18 GiB, tasks <1 cpu, 4 GiB> and <3 cpus, 1 GiB> → 3 and 2
/// tasks, both at a dominant share of 2/3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frameworks_get_drf_shares() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &["--default-filter", "100ms"]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "9", "--mem", "18432", "--disk", "100"]);
    m.wait_agents(1).await;
    let c = m.client();
    let mut a = TestFramework::subscribe(c.clone(), "alpha").await;
    let mut b = TestFramework::subscribe(c.clone(), "beta").await;
    let demands = [(1.0, 4096u64), (3.0, 1024u64)];
    let mut launched = [0usize, 0usize];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_rounds = 0;
    while std::time::Instant::now() < deadline && quiet_rounds < 12 {
        let mut progress = false;
        for (i, fw) in [&mut a, &mut b].into_iter().enumerate() {
            fw.idle(Duration::from_millis(150)).await;
            let offers: Vec<Offer> = fw.offers.drain(..).collect();
            for o in offers {
                let (cpus, mem) = demands[i];
                if o.unreserved.cpus + 1e-9 >= cpus && o.unreserved.mem >= mem {
                    launched[i] += 1;
                    let t = task(&format!("{}-{}", i, launched[i]), None, &[], cpus, mem, "exec sleep 600");
                    c.accept(
                        &fw.id,
                        &Accept {
                            offer_ids: vec![o.id],
                            operations: vec![Operation::Launch { task: t }],
                            filter_ms: Some(0),
                        },
                    )
                    .await
                    .unwrap();
                    progress = true;
                } else {
                    c.decline(
                        &fw.id,
                        &smack_operator::protocol::Decline { offer_ids: vec![o.id], filter_ms: Some(100) },
                    )
                    .await
                    .unwrap();
                }
            }
        }
        quiet_rounds = if progress { 0 } else { quiet_rounds + 1 };
    }
    assert_eq!(launched, [3, 2], "tasks per framework");
    let state = c.state().await.unwrap();
    let used = |role: &str| -> Resources {
        let mut r = Resources::default();
        for ag in &state.agents {
            for t in ag.tasks.iter().filter(|t| t.role == role) {
                r.add(&t.info.resources);
            }
        }
        r
    };
    for role in ["alpha", "beta"] {
        let u = used(role);
        let share = (u.cpus / 9.0).max(u.mem as f64 / 18432.0);
        assert!((share - 2.0 / 3.0).abs() < 0.03, "{role}: dominant share {share}, DRF says 2/3");
    }
}

/// Issue 2, test 6: a request without the token, or with a wrong one, is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    for path in ["/v1/agents", "/v1/state", "/v1/health"] {
        let r = http.get(format!("{}{path}", m.url)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = http.get(format!("{}{path}", m.url)).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("cluster token"));
    }
    let r = http.post(format!("{}/v1/agents", m.url)).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401, "agent registration without a token");
    let r = http.get(format!("{}/v1/agents", m.url)).bearer_auth(&m.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let err = smack_operator::client::MasterClient::new(m.url.clone(), "bad").agents().await.unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
}

/// The master's registry and reservations survive a master restart, and a
/// status update sent while the master was down is delivered afterwards:
/// the agent resends it until it is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_restart_keeps_the_registry_and_loses_no_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000"]);
    let agent_id = m.wait_agents(1).await[0].id.clone();
    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    reserve_and_launch(&mut fw, "survivor").await;
    let vol = volume_path(&m, "v1").await;
    let pid = pid_in(&vol);
    let fw_id = fw.id.clone();
    drop(fw);

    let listen = m.url.trim_start_matches("http://").to_string();
    m.proc.kill9();
    // The task dies while no master is there to hear it.
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let m2 = MasterProc::start(dir.path(), &["--listen", &listen]).await;
    let state = m2.client().state().await.unwrap();
    let a = state.agents.iter().find(|a| a.id == agent_id).expect("the agent is in the recovered registry");
    let r1 = a.reservations.iter().find(|r| r.id == "r1").expect("reservation r1 survived the restart");
    assert_eq!(r1.role, "store");
    assert!(r1.volumes.iter().any(|v| v.id == "v1"));
    assert!(state.frameworks.iter().any(|f| f.id == fw_id), "the framework is remembered");

    let mut fw = TestFramework::resubscribe(m2.client(), "store", Some(fw_id.clone())).await;
    assert_eq!(fw.id, fw_id);
    let failed = fw.status("survivor", TaskState::Failed, T).await;
    assert!(failed.message.contains("signal 9"), "{failed:?}");
    m2.wait_agents(1).await;
    let o = fw.offer_where("with r1 again", T, |o| o.agent_id == agent_id && o.reservation("r1").is_some()).await;
    assert_eq!(o.reservation("r1").unwrap().free.cpus, 0.5);
}

/// Readiness and health checks run next to the task: a readiness check that
/// passes is reported `ready`, a health check that keeps failing gets the
/// task killed and reported `FAILED` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_report_readiness_and_kill_unhealthy_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000"]);
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "checked").await;
    let o = fw.offer_where("any", T, |o| o.unreserved.cpus >= 1.0).await;
    let mut t = task("flaky", None, &[], 0.5, 32, r#"touch "$SMACK_SANDBOX/ready"; exec sleep 600"#);
    t.readiness_check = Some(CheckSpec {
        check: Check::Command { command: r#"test -f "$SMACK_SANDBOX/ready""#.into() },
        interval_ms: 200,
        timeout_ms: 1000,
        max_consecutive_failures: 3,
        grace_period_ms: 0,
    });
    // Healthy while the sandbox has no "sick" file; the test makes it sick.
    t.health_check = Some(CheckSpec {
        check: Check::Command { command: r#"test ! -f "$SMACK_SANDBOX/sick""#.into() },
        interval_ms: 200,
        timeout_ms: 1000,
        max_consecutive_failures: 2,
        grace_period_ms: 0,
    });
    fw.client
        .accept(
            &fw.id,
            &Accept { offer_ids: vec![o.id], operations: vec![Operation::Launch { task: t }], filter_ms: None },
        )
        .await
        .unwrap();
    fw.status_where("flaky RUNNING with ready=true", T, |s| s.task_id == "flaky" && s.ready == Some(true)).await;
    let sandbox = std::fs::read_dir(dir.path().join("agents/a1/sandboxes")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(sandbox.join("sick"), b"").unwrap();
    let failed = fw.status("flaky", TaskState::Failed, T).await;
    assert!(failed.message.contains("health check failed"), "{failed:?}");
}

/// An agent cut off from its master past its `--master-timeout` stops its
/// tasks itself (fencing), and reports them `KILLED` with the reason once
/// the master is back: a task cut off with its agent never runs beside the
/// replacement the master's side may start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_lost_its_master_stops_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &["--agent-timeout", "2s"]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000", "--master-timeout", "3s"]);
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    reserve_and_launch(&mut fw, "cut-off").await;
    let vol = volume_path(&m, "v1").await;
    let pid = pid_in(&vol);
    // The master stops answering (as behind a broken link): the agent's
    // heartbeats go unanswered.
    m.proc.signal(Signal::SIGSTOP);
    let stopped = std::time::Instant::now();
    let alive = || nix::sys::signal::kill(pid, None).is_ok();
    while alive() && stopped.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone_after = stopped.elapsed();
    m.proc.signal(Signal::SIGCONT);
    assert!(!alive(), "the task still runs {gone_after:?} after its agent lost the master");
    assert!(gone_after >= Duration::from_secs(3), "the agent fenced before its timeout: {gone_after:?}");
    let killed = fw.status("cut-off", TaskState::Killed, T).await;
    assert!(killed.message.contains("lost its master"), "{killed:?}");
}
