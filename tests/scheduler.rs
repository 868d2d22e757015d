//! The operator framework end to end: a service scheduler process deploys a
//! small stateful service (`smack test-service`) on 4 agents in 3 zones by
//! its placement rules; its plan survives a scheduler restart while paused;
//! a killed task comes back on its own disk; a replaced pod moves with a
//! fresh volume and its old reservation is cleaned up.

use crate::support::smack_at as cli;
use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn spec(bin: &str) -> String {
    spec_with(bin, 3, "1", 16, false)
}

fn spec_with(bin: &str, count: u32, version: &str, size: u32, allow_decommission: bool) -> String {
    spec_hooked(bin, count, version, size, allow_decommission, "")
}

/// The spec with `hooks` (YAML at the pod's indent) added to the pod.
fn spec_hooked(bin: &str, count: u32, version: &str, size: u32, allow_decommission: bool, hooks: &str) -> String {
    format!(
        r#"name: hello
pods:
  hello:
    count: {count}
    allow-decommission: {allow_decommission}{hooks}
    resources:
      cpus: 0.2
      mem: 64
      ports:
        http: 0
    volumes:
      - path: data
        type: ROOT
        size: {size}
    placement:
      - unique: hostname
      - max-per: {{zone: 1}}
    tasks:
      server:
        cmd: exec {bin} test-service --port $PORT_HTTP
        env:
          CONFIG_VERSION: "{version}"
        goal: RUNNING
        kill-grace-period: 2s
        readiness-check:
          tcp: http
          interval: 1s
          timeout: 1s
plans:
  deploy:
    strategy: serial
    phases:
      - name: hello
        strategy: canary
        pod: hello
  restart-all:
    strategy: serial
    parameters:
      REASON: routine
    phases:
      - name: restart
        strategy: serial
        pod: hello
"#
    )
}

fn json(dir: &Path, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    serde_json::from_str(&cli(dir, &a).ok()?).ok()
}

async fn wait_plan(dir: &Path, plan: &str, want: &str) -> Value {
    wait_for(&format!("plan {plan} {want}"), T, || async {
        let v = json(dir, &["plan", "show", plan])?;
        (v["status"] == want).then_some(v)
    })
    .await
}

fn start_scheduler(dir: &Path, spec_file: &Path) -> Proc {
    let _ = std::fs::remove_file(dir.join("services/hello/endpoint.json"));
    let sd = dir.display().to_string();
    let sf = spec_file.display().to_string();
    spawn("scheduler", &["--state-dir", &sd, "service", "run", &sf], &dir.join("logs"))
}

/// Prints what the scheduler saw when a wait fails.
struct DiagOnPanic {
    dir: std::path::PathBuf,
    pod: String,
    plan: &'static str,
    log: std::path::PathBuf,
}

impl Drop for DiagOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pod status: {:?}", cli(&self.dir, &["pod", "status", &self.pod, "--output", "json"]));
            eprintln!(
                "recovery: {:?}",
                cli(&self.dir, &["plan", "show", "recovery"]).map_err(|e| e.lines().next().unwrap_or("").to_string())
            );
            eprintln!("{}: {:?}", self.plan, cli(&self.dir, &["plan", "show", self.plan, "--output", "json"]));
            let log = read(&self.log);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("scheduler log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_deploys_by_its_rules_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let zones = ["zone-a", "zone-b", "zone-c", "zone-a"];
    let mut agents = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let n = i + 1;
        agents.push(m.agent(
            &format!("a{n}"),
            &format!("{p}.{n}"),
            &["--zone", z, "--cpus", "1", "--mem", "512", "--disk", "200", "--ports", "43000-43099"],
        ));
    }
    m.wait_agents(4).await;
    let spec_file = d.join("hello.yaml");
    std::fs::write(&spec_file, spec(smack_bin())).unwrap();
    assert!(cli(d, &["service", "validate", &spec_file.display().to_string()]).unwrap().contains("ok"));

    // Deploy (a canary phase: the first pod, then wait); pause after the
    // first pod is up, then kill the scheduler.
    let mut sched = start_scheduler(d, &spec_file);
    wait_for("the first deploy step COMPLETE", T, || async {
        let v = json(d, &["plan", "show", "deploy"])?;
        let steps = v["phases"][0]["steps"].as_array()?.clone();
        steps.iter().any(|s| s["state"] == "COMPLETE").then_some(())
    })
    .await;
    cli(d, &["plan", "pause", "deploy"]).unwrap();
    sched.kill9();
    let mut sched = start_scheduler(d, &spec_file);
    let v = wait_for("the restarted scheduler answers", T, || async { json(d, &["plan", "show", "deploy"]) }).await;
    assert_eq!(v["status"], "WAITING", "the pause survived the restart: {v:#}");
    assert_eq!(v["interrupted"], true, "{v:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = json(d, &["plan", "show", "deploy"]).unwrap();
    assert_eq!(v["status"], "WAITING", "a paused plan does not go on: {v:#}");
    let steps = v["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.iter().filter(|s| s["state"] == "COMPLETE").count(), 1, "{v:#}");
    let tree = cli(d, &["plan", "show", "deploy"]).unwrap();
    assert!(tree.contains("deploy (serial strategy) (WAITING)"), "{tree}");
    cli(d, &["plan", "resume", "deploy"]).unwrap();
    wait_plan(d, "deploy", "COMPLETE").await;

    // Placement: distinct agents, distinct zones.
    let pods = json(d, &["pod", "list"]).unwrap();
    let pods = pods.as_array().unwrap();
    assert_eq!(pods.len(), 3);
    let mut hosts: Vec<String> = pods.iter().map(|v| v["pod"]["hostname"].as_str().unwrap().to_string()).collect();
    let mut zs: Vec<String> =
        pods.iter().map(|v| v["pod"]["attributes"]["zone"].as_str().unwrap().to_string()).collect();
    hosts.sort();
    hosts.dedup();
    zs.sort();
    zs.dedup();
    assert_eq!((hosts.len(), zs.len()), (3, 3), "unique hostname and max-per zone 1: {pods:#?}");
    let table = cli(d, &["pod", "list"]).unwrap();
    for v in pods {
        // The table's line for the pod says what the json says.
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == v["pod"]["name"].as_str())
            .unwrap_or_else(|| panic!("{} not in:\n{table}", v["pod"]["name"]));
        for field in [&v["pod"]["agent_id"], &v["pod"]["hostname"], &v["pod"]["attributes"]["zone"]] {
            assert!(line.contains(field.as_str().unwrap()), "{field} not in {line}");
        }
        assert!(line.contains("server=RUNNING"), "{line}");
    }
    // `plan show` as a tree and as json: the same steps in the same states.
    let plan = json(d, &["plan", "show", "deploy"]).unwrap();
    let tree = cli(d, &["plan", "show", "deploy"]).unwrap();
    assert!(tree.starts_with(&format!("deploy (serial strategy) ({})", plan["status"].as_str().unwrap())), "{tree}");
    for st in plan["phases"][0]["steps"].as_array().unwrap() {
        let shown = format!("{} ({})", st["name"].as_str().unwrap(), st["state"].as_str().unwrap());
        assert!(tree.contains(&shown), "{shown} not in:\n{tree}");
    }

    // A killed task comes back on the same agent, with its volume data.
    let state = m.client().state().await.unwrap();
    let vol_of = |pod: &Value| -> std::path::PathBuf {
        let vid = pod["pod"]["volume_ids"][0].as_str().unwrap().to_string();
        let state = &state;
        state
            .agents
            .iter()
            .flat_map(|a| &a.reservations)
            .flat_map(|r| &r.volumes)
            .find(|v| v.id == vid)
            .map(|v| std::path::PathBuf::from(&v.host_path))
            .unwrap_or_else(|| panic!("volume {vid} not in the ledger"))
    };
    let victim = &pods[0];
    let name = victim["pod"]["name"].as_str().unwrap().to_string();
    let agent = victim["pod"]["agent_id"].as_str().unwrap().to_string();
    let vol = vol_of(victim);
    let pid: i32 = read(vol.join("pid")).trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for("the killed task restarts on its own volume", T, || async {
        (read(vol.join("starts.log")).lines().count() == 2).then_some(())
    })
    .await;
    let after = wait_for("the pod runs again", T, || async {
        let v = json(d, &["pod", "status", &name])?;
        let p = v.as_array()?.first()?.clone();
        (p["tasks"].as_array()?.iter().any(|t| t["state"] == "RUNNING")).then_some(p)
    })
    .await;
    assert_eq!(after["pod"]["agent_id"], agent.as_str(), "recovery in place");
    let rec = json(d, &["plan", "show", "recovery"]).unwrap();
    assert!(rec.to_string().contains(&name), "a recovery step for {name}: {rec:#}");

    // Killed again and again, it backs off longer each time (DELAYED).
    let mut last_delay = 0;
    for round in 2..=3 {
        let pid: i32 = wait_for("the relaunched task's pid", T, || async {
            let p: i32 = read(vol.join("pid")).trim().parse().ok()?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).ok().map(|_| p)
        })
        .await;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let step = wait_for(&format!("the recovery step DELAYED after failure {round}"), T, || async {
            let v = json(d, &["plan", "show", "recovery"])?;
            let step = v["phases"][0]["steps"].as_array()?.iter().find(|s| s["pod_instance"] == name.as_str())?.clone();
            (step["state"] == "DELAYED" && step["backoff"]["attempts"].as_u64()? >= round - 1).then_some(step)
        })
        .await;
        let delay = step["backoff"]["delay_ms"].as_u64().unwrap();
        assert!(delay > last_delay, "backoff grows: {delay} after {last_delay}");
        last_delay = delay;
        wait_for("the task restarts after its backoff", T, || async {
            (read(vol.join("starts.log")).lines().count() == round as usize + 1).then_some(())
        })
        .await;
    }

    // Replace the pod in zone-a: it moves to the other zone-a agent with a
    // fresh volume, and its old reservation is destroyed.
    let za = pods.iter().find(|v| v["pod"]["attributes"]["zone"] == "zone-a").unwrap();
    let za_name = za["pod"]["name"].as_str().unwrap().to_string();
    let za_agent = za["pod"]["agent_id"].as_str().unwrap().to_string();
    let za_res = za["pod"]["reservation_id"].as_str().unwrap().to_string();
    cli(d, &["pod", "replace", &za_name]).unwrap();
    let diag = DiagOnPanic { dir: d.to_path_buf(), pod: za_name.clone(), plan: "deploy", log: sched.log.clone() };
    let moved = wait_for("the replaced pod runs elsewhere", T, || async {
        let v = json(d, &["pod", "status", &za_name])?;
        let p = v.as_array()?.first()?.clone();
        let running = p["tasks"].as_array()?.iter().any(|t| t["state"] == "RUNNING");
        let agent = p["pod"]["agent_id"].as_str()?;
        let current = p["tasks"].as_array()?.iter().all(|t| t["agent_id"] == agent);
        (running && current && agent != za_agent).then_some(p)
    })
    .await;
    std::mem::forget(diag);
    assert_eq!(moved["pod"]["attributes"]["zone"], "zone-a");
    let c = m.client();
    wait_for("the old reservation leaves the ledger", T, || async {
        let s = c.state().await.ok()?;
        (!s.agents.iter().flat_map(|a| &a.reservations).any(|r| r.id == za_res)).then_some(())
    })
    .await;
    let new_state = c.state().await.unwrap();
    let new_vid = moved["pod"]["volume_ids"][0].as_str().unwrap();
    let new_vol = new_state
        .agents
        .iter()
        .flat_map(|a| &a.reservations)
        .flat_map(|r| &r.volumes)
        .find(|v| v.id == new_vid)
        .unwrap();
    // RUNNING comes as the process starts; its first line follows.
    let log = std::path::Path::new(&new_vol.host_path).join("starts.log");
    wait_for("the replaced pod's first start line", T, || async { (!read(&log).is_empty()).then_some(()) }).await;
    let lines = read(&log);
    assert_eq!(lines.lines().count(), 1, "a fresh volume: {lines:?}");

    // A config change rolls one pod at a time, each waiting for readiness.
    wait_for("all three pods running and ready", T, || async {
        let v = json(d, &["pod", "list"])?;
        let ready = v
            .as_array()?
            .iter()
            .filter(|p| {
                p["tasks"].as_array().is_some_and(|t| t.iter().any(|t| t["state"] == "RUNNING" && t["ready"] == true))
            })
            .count();
        (ready == 3).then_some(())
    })
    .await;
    let sf = spec_file.display().to_string();
    std::fs::write(&spec_file, spec_with(smack_bin(), 3, "2", 16, false)).unwrap();
    let diff = cli(d, &["service", "diff", &sf]).unwrap();
    for i in 0..3 {
        assert!(diff.contains(&format!("~ hello-{i}  (restarted: the `hello` pod's config changed)")), "{diff}");
    }
    let out = cli(d, &["service", "apply", &sf]).unwrap();
    assert!(out.contains("update"), "{out}");
    let mut most_down = 0;
    wait_for("the update plan COMPLETE", T, || {
        let v = json(d, &["pod", "list"]);
        let plan = json(d, &["plan", "show", "update"]);
        if let Some(v) = v {
            let down = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| {
                            !p["tasks"]
                                .as_array()
                                .is_some_and(|t| t.iter().any(|t| t["state"] == "RUNNING" && t["ready"] == true))
                        })
                        .count()
                })
                .unwrap_or(0);
            most_down = most_down.max(down);
        }
        async move { plan.filter(|p| p["status"] == "COMPLETE").map(|_| ()) }
    })
    .await;
    assert!(most_down <= 1, "at most one pod down at a time during the roll, saw {most_down}");
    let state = m.client().state().await.unwrap();
    for p in json(d, &["pod", "list"]).unwrap().as_array().unwrap() {
        let vid = p["pod"]["volume_ids"][0].as_str().unwrap();
        let vol =
            state.agents.iter().flat_map(|a| &a.reservations).flat_map(|r| &r.volumes).find(|v| v.id == vid).unwrap();
        let log = read(Path::new(&vol.host_path).join("starts.log"));
        assert!(log.lines().last().unwrap().ends_with("config=2"), "{}: {log}", p["pod"]["name"]);
    }

    // An unsafe change is refused; the old target keeps running.
    std::fs::write(&spec_file, spec_with(smack_bin(), 3, "2", 32, false)).unwrap();
    let err = cli(d, &["service", "update", &sf]).unwrap_err();
    assert!(err.contains("unsafe change refused") && err.contains("size"), "{err}");
    assert_eq!(json(d, &["plan", "show", "update"]).unwrap()["status"], "COMPLETE");

    // Scale 3 → 4: with one pod per zone and 3 zones the fourth cannot be
    // placed; it waits, and `pod status` says why.
    std::fs::write(&spec_file, spec_with(smack_bin(), 4, "2", 16, false)).unwrap();
    assert_eq!(cli(d, &["service", "diff", &sf]).unwrap().trim(), "+ hello-3  (new)");
    cli(d, &["service", "update", &sf]).unwrap();
    let why = wait_for("hello-3 says why it waits", T, || async {
        let v = json(d, &["pod", "status", "hello-3"])?;
        v[0]["pod"]["waiting"].as_str().map(String::from)
    })
    .await;
    assert!(why.contains("placement"), "{why}");
    let shown = cli(d, &["pod", "status", "hello-3"]).unwrap();
    assert!(shown.contains("waiting:"), "{shown}");

    // Lowering the count needs allow-decommission; with it, 4 → 2 removes
    // hello-2 (and the never-placed hello-3), and hello-2's reservation
    // and volume leave the master's ledger.
    std::fs::write(&spec_file, spec_with(smack_bin(), 2, "2", 16, false)).unwrap();
    let err = cli(d, &["service", "update", &sf]).unwrap_err();
    assert!(err.contains("allow-decommission"), "{err}");
    let gone_res =
        json(d, &["pod", "status", "hello-2"]).unwrap()[0]["pod"]["reservation_id"].as_str().unwrap().to_string();
    // The decommission hook runs first, while the pod still serves: its
    // first run fails (and is retried), its second asks the service to
    // drain, which only a live service answers. A never-placed pod has no
    // task to drain and runs no hook.
    let hook_log = d.join("hook.log");
    let first = d.join("hook-failed-once");
    let hooks = format!(
        "\n    hooks:\n      decommission:\n        cmd: if [ ! -f {first} ]; then touch {first}; echo not yet >&2; exit 3; fi; {bin} test-service --drain $PORT_HTTP && echo \"$POD_INSTANCE drained\" >> {log}",
        first = first.display(),
        bin = smack_bin(),
        log = hook_log.display()
    );
    std::fs::write(&spec_file, spec_hooked(smack_bin(), 2, "2", 16, true, &hooks)).unwrap();
    let diff = json(d, &["service", "diff", &sf]).unwrap();
    assert_eq!(diff["removed"], serde_json::json!(["hello-2", "hello-3"]), "{diff:#}");
    cli(d, &["service", "update", &sf]).unwrap();
    let diag =
        DiagOnPanic { dir: d.to_path_buf(), pod: "hello-2".into(), plan: "decommission", log: sched.log.clone() };
    wait_plan(d, "decommission", "COMPLETE").await;
    std::mem::forget(diag);
    assert!(first.exists(), "the hook's first run happened");
    assert_eq!(read(&hook_log), "hello-2 drained\n", "the hook ran once to success, for hello-2 only");
    wait_for("hello-2's reservation leaves the ledger", T, || async {
        let s = c.state().await.ok()?;
        (!s.agents.iter().flat_map(|a| &a.reservations).any(|r| r.id == gone_res)).then_some(())
    })
    .await;
    let pods = json(d, &["pod", "list"]).unwrap();
    let names: Vec<&str> = pods.as_array().unwrap().iter().map(|p| p["pod"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello-0", "hello-1"]);
    let s = c.state().await.unwrap();
    assert_eq!(s.agents.iter().flat_map(|a| &a.reservations).filter(|r| r.role == "hello").count(), 2);

    // Maintenance: a paused pod runs `sleep` on its own disk (no new start
    // line, its port closed); resumed, its command runs again.
    let h0 = json(d, &["pod", "status", "hello-0"]).unwrap()[0].clone();
    let vid = h0["pod"]["volume_ids"][0].as_str().unwrap().to_string();
    let s = c.state().await.unwrap();
    let vol0 = std::path::PathBuf::from(
        &s.agents
            .iter()
            .flat_map(|a| &a.reservations)
            .flat_map(|r| &r.volumes)
            .find(|v| v.id == vid)
            .unwrap()
            .host_path,
    );
    let starts = read(vol0.join("starts.log")).lines().count();
    let out = cli(d, &["pod", "pause", "hello-0"]).unwrap();
    assert!(out.contains("(PAUSED)"), "{out}");
    let paused_task = wait_for("hello-0 runs its maintenance task", T, || async {
        let v = json(d, &["pod", "status", "hello-0"])?;
        let t = v[0]["tasks"][0].clone();
        (t["state"] == "RUNNING" && t["id"] != h0["tasks"][0]["id"]).then_some(t)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(vol0.join("starts.log")).lines().count(), starts, "the service itself did not start while paused");
    cli(d, &["pod", "resume", "hello-0"]).unwrap();
    wait_for("hello-0 runs its service again", T, || async {
        let v = json(d, &["pod", "status", "hello-0"])?;
        let t = v[0]["tasks"][0].clone();
        let again = read(vol0.join("starts.log")).lines().count() == starts + 1;
        (t["state"] == "RUNNING" && t["id"] != paused_task["id"] && again).then_some(())
    })
    .await;

    // A custom plan, stopped until started with parameters that reach the
    // tasks it relaunches as env (here overriding CONFIG_VERSION).
    let v = json(d, &["plan", "show", "restart-all"]).unwrap();
    assert_eq!(v["interrupted"], true, "a custom plan waits for `plan start`: {v:#}");
    cli(d, &["plan", "start", "restart-all", "-p", "CONFIG_VERSION=custom"]).unwrap();
    wait_plan(d, "restart-all", "COMPLETE").await;
    let state = c.state().await.unwrap();
    for p in json(d, &["pod", "list"]).unwrap().as_array().unwrap() {
        let vid = p["pod"]["volume_ids"][0].as_str().unwrap();
        let vol =
            state.agents.iter().flat_map(|a| &a.reservations).flat_map(|r| &r.volumes).find(|v| v.id == vid).unwrap();
        let log = read(Path::new(&vol.host_path).join("starts.log"));
        assert!(log.lines().last().unwrap().ends_with("config=custom"), "{}: {log}", p["pod"]["name"]);
    }

    sched.signal(Signal::SIGTERM);
    let _ = sched.wait_exit(Duration::from_secs(10));
    drop(agents);
}

/// A scheduler killed after it recorded a launch and before its accept
/// reached the master: restarted, it finds the reservation never came to
/// be, places the pod afresh, and the deploy completes with exactly one
/// reservation per pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_before_its_accept_leaves_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let mut agents = Vec::new();
    for (i, z) in ["zone-a", "zone-b", "zone-c"].iter().enumerate() {
        let n = i + 1;
        agents.push(m.agent(
            &format!("a{n}"),
            &format!("{p}.{n}"),
            &["--zone", z, "--cpus", "1", "--mem", "512", "--disk", "200"],
        ));
    }
    m.wait_agents(3).await;
    let spec_file = d.join("hello.yaml");
    std::fs::write(&spec_file, spec(smack_bin())).unwrap();
    let log = d.join("logs/faulty-scheduler.log");
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let f = std::fs::File::create(&log).unwrap();
    let mut faulty = std::process::Command::new(smack_bin())
        .arg("--state-dir")
        .arg(d)
        .args(["service", "run"])
        .arg(&spec_file)
        .env("SMACK_FAULT", "scheduler-exit-before-accept")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || faulty.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(86), "the fault hook fired: {}", read(&log));
    let c = m.client();
    let reserved = |s: &smack_operator::protocol::MasterState| -> Vec<String> {
        s.agents.iter().flat_map(|a| &a.reservations).filter(|r| r.role == "hello").map(|r| r.id.clone()).collect()
    };
    assert!(reserved(&c.state().await.unwrap()).is_empty(), "the accept never reached the master");

    // `service apply` of a spec no scheduler runs starts one in the background.
    let out = cli(d, &["service", "apply", &spec_file.display().to_string()]).unwrap();
    assert!(out.contains("deploying hello"), "{out}");
    // Its command line (what `ps` shows every user) carries no token.
    let pid = read(d.join("services/hello/scheduler.pid"));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).expect("the scheduler runs");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("service run") && !cmdline.contains(&m.token), "token on the command line: {cmdline}");
    let _diag = DiagOnPanic {
        dir: d.to_path_buf(),
        pod: "hello-0".into(),
        plan: "deploy",
        log: d.join("services/hello/scheduler.log"),
    };
    // The spec's deploy phase is a canary: approve it once the first pod is up.
    wait_for("the canary pod COMPLETE", T, || async {
        let v = json(d, &["plan", "show", "deploy"])?;
        (v["phases"][0]["steps"][0]["state"] == "COMPLETE").then_some(())
    })
    .await;
    cli(d, &["plan", "resume", "deploy"]).unwrap();
    wait_plan(d, "deploy", "COMPLETE").await;
    let ids = reserved(&c.state().await.unwrap());
    assert_eq!(ids.len(), 3, "one reservation per pod, no duplicates: {ids:?}");
    let pods = json(d, &["pod", "list"]).unwrap();
    for p in pods.as_array().unwrap() {
        let rid = p["pod"]["reservation_id"].as_str().unwrap();
        assert!(ids.iter().any(|i| i == rid), "{rid} in the ledger {ids:?}");
    }

    // The master's front door: from a directory that knows nothing of the
    // cluster, the master's URL and token reach the service's scheduler.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(smack_bin())
            .arg("--state-dir")
            .arg(elsewhere.path())
            .args(["--master", &m.url])
            .args(args)
            .env("SMACK_TOKEN", &m.token)
            .output()
            .expect("run smack");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let plan: Value =
        serde_json::from_str(&remote(&["plan", "show", "deploy", "--service", "hello", "--output", "json"]).unwrap())
            .unwrap();
    assert_eq!(plan["status"], "COMPLETE", "{plan}");
    let listed: Value =
        serde_json::from_str(&remote(&["pod", "list", "--service", "hello", "--output", "json"]).unwrap()).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    let old_agent =
        listed.as_array().unwrap().iter().find(|p| p["pod"]["name"] == "hello-2").unwrap()["pod"]["agent_id"].clone();
    // Room for the replaced pod: an agent in a zone of its own.
    agents.push(m.agent(
        "a4",
        &format!("{p}.4"),
        &["--zone", "zone-d", "--cpus", "1", "--mem", "512", "--disk", "200"],
    ));
    m.wait_agents(4).await;
    remote(&["pod", "replace", "hello-2", "--service", "hello"]).expect("pod replace through the master");
    wait_for("hello-2 replaced onto another agent and running", T, || async {
        let v: Value =
            serde_json::from_str(&remote(&["pod", "list", "--service", "hello", "--output", "json"]).ok()?).ok()?;
        let p = v.as_array()?.iter().find(|p| p["pod"]["name"] == "hello-2")?;
        let running = p["tasks"].as_array()?.iter().any(|t| t["state"] == "RUNNING" && t["ready"] == true);
        (running && p["pod"]["agent_id"] != old_agent).then_some(())
    })
    .await;
    let err = remote(&["plan", "show", "deploy", "--service", "nope"]).unwrap_err();
    assert!(err.contains("no service \"nope\"") && err.contains("hello"), "{err}");
    drop(agents);
}

/// Permanent failure: an agent gone past the permanent-failure timeout gets
/// its pod replaced elsewhere; when the agent comes back, the pod's old task
/// is killed (never live on two agents) and its old reservation destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_lost_for_good_is_replaced_and_its_old_task_killed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &["--agent-timeout", "2s"]).await;
    let p = address_prefix();
    let args = ["--zone", "zone-a", "--cpus", "1", "--mem", "512", "--disk", "200"];
    let mut a1 = Some(m.agent("a1", &format!("{p}.1"), &args));
    let mut a2 = Some(m.agent("a2", &format!("{p}.2"), &args));
    m.wait_agents(2).await;
    let spec_file = d.join("hello.yaml");
    let text = spec_with(smack_bin(), 1, "1", 16, false).replace("strategy: canary", "strategy: serial");
    std::fs::write(&spec_file, text).unwrap();
    let sd = d.display().to_string();
    let sf = spec_file.display().to_string();
    let _sched = spawn(
        "scheduler",
        &["--state-dir", &sd, "service", "run", &sf, "--permanent-failure-timeout", "3s"],
        &d.join("logs"),
    );
    wait_plan(d, "deploy", "COMPLETE").await;
    let pod = json(d, &["pod", "status", "hello-0"]).unwrap()[0].clone();
    let first_agent = pod["pod"]["agent_id"].as_str().unwrap().to_string();
    let first_host = pod["pod"]["hostname"].as_str().unwrap().to_string();
    let first_res = pod["pod"]["reservation_id"].as_str().unwrap().to_string();
    let c = m.client();
    let state = c.state().await.unwrap();
    let vid = pod["pod"]["volume_ids"][0].as_str().unwrap();
    let vol = state.agents.iter().flat_map(|a| &a.reservations).flat_map(|r| &r.volumes).find(|v| v.id == vid).unwrap();
    let old_pid: i32 = read(Path::new(&vol.host_path).join("pid")).trim().parse().unwrap();

    // The agent dies (its task lives on, cut off): LOST, then replaced.
    let name = if first_host.ends_with(".1") { "a1" } else { "a2" };
    if name == "a1" {
        a1.take().unwrap().kill9()
    } else {
        a2.take().unwrap().kill9()
    }
    let moved = wait_for("hello-0 replaced onto the other agent", T, || async {
        let v = json(d, &["pod", "status", "hello-0"])?;
        let p = v[0].clone();
        let agent = p["pod"]["agent_id"].as_str()?;
        let running = p["tasks"].as_array()?.iter().any(|t| t["state"] == "RUNNING" && t["agent_id"] == agent);
        (agent != first_agent && running).then_some(p)
    })
    .await;
    assert_ne!(moved["pod"]["reservation_id"], first_res.as_str());
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), None).is_ok(), "the cut-off task still runs");

    // The agent comes back: the old task is killed, the old reservation goes.
    let _back = m.agent(name, &first_host, &args);
    wait_for("the old task is killed", T, || async {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), None).is_err().then_some(())
    })
    .await;
    wait_for("the old reservation leaves the ledger", T, || async {
        let s = c.state().await.ok()?;
        let ids: Vec<&str> = s
            .agents
            .iter()
            .flat_map(|a| &a.reservations)
            .filter(|r| r.role == "hello")
            .map(|r| r.id.as_str())
            .collect();
        (ids.len() == 1 && ids[0] != first_res).then_some(())
    })
    .await;

    // `service status` sums it up; `service delete` removes every pod and,
    // once offered, every reservation of the service.
    let st = json(d, &["service", "status"]).unwrap();
    assert_eq!(st["pods"].as_array().unwrap().len(), 1, "{st:#}");
    let out = cli(d, &["service", "delete"]).unwrap();
    assert!(out.contains("deleted"), "{out}");
    wait_for("no reservation of the service is left", T, || async {
        let s = c.state().await.ok()?;
        (!s.agents.iter().flat_map(|a| &a.reservations).any(|r| r.role == "hello")).then_some(())
    })
    .await;
}

/// An essential task brings its pod back whole; a non-essential one that
/// fails comes back alone, next to the pod's running task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essential_and_non_essential_tasks_recover_differently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let _a1 = m.agent("a1", &format!("{p}.1"), &["--cpus", "1", "--mem", "512", "--disk", "200"]);
    m.wait_agents(1).await;
    let bin = smack_bin();
    let spec = format!(
        r#"name: duo
pods:
  duo:
    count: 1
    resources:
      cpus: 0.4
      mem: 128
      ports:
        http: 0
    volumes:
      - path: data
        type: ROOT
        size: 16
    tasks:
      server:
        cmd: exec {bin} test-service --port $PORT_HTTP
        goal: RUNNING
      sidecar:
        cmd: echo $$ > "$VOLUME_DATA/sidecar.pid"; exec sleep 600
        goal: RUNNING
        essential: false
"#
    );
    let spec_file = d.join("duo.yaml");
    std::fs::write(&spec_file, spec).unwrap();
    let out = cli(d, &["service", "apply", &spec_file.display().to_string()]).unwrap();
    assert!(out.contains("deploying duo"), "{out}");
    wait_plan(d, "deploy", "COMPLETE").await;
    let c = m.client();
    let s = c.state().await.unwrap();
    let vol = s
        .agents
        .iter()
        .flat_map(|a| &a.reservations)
        .flat_map(|r| &r.volumes)
        .find(|v| v.id.ends_with("-data"))
        .unwrap();
    let vol = std::path::PathBuf::from(&vol.host_path);
    let pid_of = |f: &str| -> i32 { read(vol.join(f)).trim().parse().unwrap_or(0) };
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    // RUNNING is reported at the spawn: each task writes its pid file a moment later.
    let (server, sidecar) = wait_for("both tasks' pid files", T, || async {
        let (server, sidecar) = (pid_of("pid"), pid_of("sidecar.pid"));
        (server > 0 && sidecar > 0).then_some((server, sidecar))
    })
    .await;

    // The sidecar dies: it alone comes back; the server keeps running.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sidecar), Signal::SIGKILL).unwrap();
    wait_for("a new sidecar", T, || async {
        let p = pid_of("sidecar.pid");
        (p != sidecar && p > 0 && alive(p)).then_some(())
    })
    .await;
    assert!(alive(server), "the server was left alone");
    assert_eq!(read(vol.join("starts.log")).lines().count(), 1);

    // The server dies: the whole pod comes back, sidecar included.
    let sidecar2 = pid_of("sidecar.pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), Signal::SIGKILL).unwrap();
    wait_for("the pod back whole", T, || async {
        let (s2, c2) = (pid_of("pid"), pid_of("sidecar.pid"));
        (s2 != server && c2 != sidecar2 && alive(s2) && alive(c2) && read(vol.join("starts.log")).lines().count() == 2)
            .then_some(())
    })
    .await;
    assert!(!alive(sidecar2), "the old sidecar was stopped");
}
