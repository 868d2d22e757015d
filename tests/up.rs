//! `smack up`, the embedded default: agents on their own loopback addresses
//! and zones, `smack agents` in both formats, Ctrl-C stops every task, and a
//! second run on the same state dir has the same agents, reservations and
//! volume data.

use crate::support::*;
use nix::sys::signal::Signal;
use smack_operator::client::MasterClient;
use smack_operator::protocol::{Accept, AgentState, AgentSummary};
use smack_operator::resources::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn start_up(dir: &Path, prefix: &str) -> (Proc, MasterClient) {
    let _ = std::fs::remove_file(dir.join("cluster.json"));
    let sd = dir.display().to_string();
    let up = spawn(
        "up",
        &["--state-dir", &sd, "up", "--listen", "127.0.0.1:0", "--address-prefix", prefix, "--agent-cpus", "1"],
        &dir.join("logs"),
    );
    let (url, token) = wait_for("smack up writes cluster.json", T, || async {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).ok()?).ok()?;
        Some((v["master"].as_str()?.to_string(), v["token"].as_str()?.to_string()))
    })
    .await;
    (up, MasterClient::new(url, token))
}

fn smack_cli(dir: &Path, args: &[&str]) -> String {
    let out = smack_output(dir, args);
    assert!(out.status.success(), "smack {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn three_agents(c: &MasterClient) -> Vec<AgentSummary> {
    wait_for("3 reachable agents", T, || async {
        let a = c.agents().await.ok()?;
        (a.iter().filter(|a| a.state == AgentState::Reachable).count() == 3).then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_agents_and_resumes_with_the_same_reservations_and_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let _reaper = TaskReaper(dir.path().to_path_buf());
    let prefix = address_prefix();
    let (mut up, c) = start_up(dir.path(), &prefix).await;
    let agents = three_agents(&c).await;
    let mut zones: Vec<&str> = agents.iter().map(|a| a.zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
    let mut hosts: Vec<String> = agents.iter().map(|a| a.hostname.clone()).collect();
    hosts.sort();
    assert_eq!(hosts, [1, 2, 3].map(|n| format!("{prefix}.{n}")));

    // `smack agents` finds the cluster through cluster.json; json and table agree.
    let json: Vec<AgentSummary> =
        serde_json::from_str(&smack_cli(dir.path(), &["agents", "--output", "json"])).unwrap();
    assert_eq!(json.len(), 3);
    let table = smack_cli(dir.path(), &["agents"]);
    for a in &json {
        let line = table.lines().find(|l| l.starts_with(&a.id)).unwrap_or_else(|| panic!("{} not in:\n{table}", a.id));
        assert!(line.contains(&a.hostname) && line.contains(&a.zone) && line.contains("REACHABLE"), "{line}");
        assert!(line.contains("1.0/6144/20480"), "totals in {line}");
    }

    // A framework reserves disk on one agent, makes a volume, runs a writer.
    let mut fw = TestFramework::subscribe(c.clone(), "keeper").await;
    let offer = fw.offer_where("any", T, |o| o.unreserved.cpus >= 0.5).await;
    let writer = |id: &str| {
        volume_task(
            id,
            r#"echo "run $TASK_ID in $ZONE" >> "$VOLUME_DATA/lines"; echo $$ > "$VOLUME_DATA/pid"; exec sleep 600"#,
        )
    };
    c.accept(
        &fw.id,
        &Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![
                Operation::Reserve {
                    id: "r1".into(),
                    resources: Resources::new(0.5, 64, 100),
                    labels: BTreeMap::new(),
                },
                Operation::CreateVolume {
                    reservation: "r1".into(),
                    volume: Volume {
                        id: "v1".into(),
                        source: VolumeSource::Root { size: 64 },
                        container_path: "data".into(),
                        host_path: String::new(),
                    },
                },
                Operation::Launch { task: writer("w1") },
            ],
            filter_ms: None,
        },
    )
    .await
    .unwrap();
    fw.status("w1", TaskState::Running, T).await;
    let vol = wait_for("the volume's path in the ledger", T, || async {
        let s = c.state().await.ok()?;
        s.agents
            .iter()
            .flat_map(|a| &a.reservations)
            .flat_map(|r| &r.volumes)
            .find(|v| v.id == "v1" && !v.host_path.is_empty())
            .map(|v| std::path::PathBuf::from(&v.host_path))
    })
    .await;
    let pid: i32 = wait_for("pid file", T, || async { read(vol.join("pid")).trim().parse().ok() }).await;
    let zone = offer.zone().unwrap().to_string();

    // Ctrl-C stops every task cleanly.
    up.signal(Signal::SIGINT);
    let st = up.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "smack up exited with {st:?}:\n{}", up.log_text());
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(), "the task outlived smack up");
    drop(fw);

    // Run again: the same agents, the reservation and its volume offered
    // back to the same role, and the volume's data still there.
    let (_up2, c2) = start_up(dir.path(), &prefix).await;
    let again = three_agents(&c2).await;
    let ids = |v: &[AgentSummary]| {
        let mut i: Vec<String> = v.iter().map(|a| a.id.clone()).collect();
        i.sort();
        i
    };
    assert_eq!(ids(&again), ids(&agents), "agents keep their ids across runs");
    let mut fw = TestFramework::resubscribe(c2.clone(), "keeper", None).await;
    let o = fw
        .offer_where("with reservation r1 and volume v1", T, |o| {
            o.reservation("r1").map(|r| r.reservation.volumes.iter().any(|v| v.id == "v1")).unwrap_or(false)
        })
        .await;
    assert_eq!(o.agent_id, offer.agent_id);
    c2.accept(
        &fw.id,
        &Accept { offer_ids: vec![o.id], operations: vec![Operation::Launch { task: writer("w2") }], filter_ms: None },
    )
    .await
    .unwrap();
    fw.status("w2", TaskState::Running, T).await;
    wait_for("the second run sees the first run's line", T, || async {
        (read(vol.join("lines")) == format!("run w1 in {zone}\nrun w2 in {zone}\n")).then_some(())
    })
    .await;
}

#[test]
fn shell_completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(smack_bin()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for cmd in ["agents", "plan", "pod", "service", "up"] {
            assert!(text.contains(cmd), "{shell} completion lacks {cmd}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_master_on_the_same_state_dir_is_refused_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterProc::start(dir.path(), &[]).await;
    let cluster_json = read(dir.path().join("cluster.json"));
    for cmd in [&["master", "--listen", "127.0.0.1:0"][..], &["up", "--listen", "127.0.0.1:0", "--agents", "1"][..]] {
        let out = std::process::Command::new(smack_bin())
            .arg("--state-dir")
            .arg(dir.path())
            .args(cmd)
            .output()
            .expect("run smack");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "smack {cmd:?} on a used state dir succeeded: {stderr}");
        let master_dir = dir.path().join("master").display().to_string();
        assert!(
            stderr.contains("in use by another smack process") && stderr.contains(&master_dir),
            "smack {cmd:?}: the error names neither the state dir nor the reason: {stderr}"
        );
    }
    assert_eq!(read(dir.path().join("cluster.json")), cluster_json, "the refused process rewrote cluster.json");
    master.client().agents().await.expect("the first master still serves");
}
