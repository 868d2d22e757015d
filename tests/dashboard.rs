//! Issue 6, "Dashboard": the master serves the dashboard; in headless
//! Chromium (driven by `tests/dashboard/check.mjs` through playwright-core)
//! the page signs in with the token, shows the agents and the deploy plan of
//! a running service with the reason a step waits, and a click on "Pause"
//! pauses the plan, which the scheduler's own API then confirms. A second
//! service's task (`smack test-service --metrics`, which serves a stage
//! task's `smack_stage_*` families with growing counters) is scraped through
//! the master's `/v1/tasks/{id}/metrics` and charted live on the page; the
//! page's "Scale" action raises that service's pod count (the scheduler's
//! API then has the new pod) and shows the scheduler's refusal of a lower
//! count without `allow-decommission: true`. A screenshot is kept as a CI
//! artifact (`$SMACK_ARTIFACTS_DIR/dashboard.png`, else
//! `target/dashboard.png`). The page's pure parts are unit-tested under Node
//! (`tests/dashboard/unit.mjs`) by a test of their own.
//!
//! Needs `node` (18+), a Chromium (`apt-get install -y chromium`) and
//! `npm ci` in `tests/dashboard`; `.ci/run` installs them. Without them the
//! test fails and says what to install.

use crate::support::smack_at as cli;
use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const GREETING: &str = "dashboard-check says hello";

/// Three pods, one per host, on two agents: two deploy, the third waits
/// (and says why), so the deploy plan stays in progress.
fn spec(bin: &str) -> String {
    format!(
        r#"name: board
pods:
  board:
    count: 3
    resources:
      cpus: 0.2
      mem: 64
      ports:
        http: 0
    volumes:
      - path: data
        type: ROOT
        size: 16
    placement:
      - unique: hostname
    tasks:
      server:
        cmd: echo "{GREETING}"; exec {bin} test-service --port $PORT_HTTP
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
      - name: board
        strategy: serial
        pod: board
"#
    )
}

/// One pod that serves a stage task's metric families on its `metrics` port
/// (and nothing else), scaled by the page.
fn stage_spec(bin: &str) -> String {
    format!(
        r#"name: stream
pods:
  analyze:
    count: 1
    resources:
      cpus: 0.1
      mem: 32
      ports:
        metrics: 0
    volumes:
      - path: data
        type: ROOT
        size: 8
    tasks:
      stage:
        cmd: exec {bin} test-service --metrics --port $PORT_METRICS
        goal: RUNNING
        kill-grace-period: 2s
        readiness-check:
          tcp: metrics
          interval: 1s
          timeout: 1s
plans:
  deploy:
    strategy: serial
    phases:
      - name: analyze
        strategy: serial
        pod: analyze
"#
    )
}

fn plan_json(dir: &Path) -> Option<Value> {
    serde_json::from_str(&cli(dir, &["plan", "show", "deploy", "--service", "board", "--output", "json"]).ok()?).ok()
}

/// Where the screenshot goes: `$SMACK_ARTIFACTS_DIR`, else the repository's
/// `target/`.
fn artifacts_dir() -> PathBuf {
    match std::env::var_os("SMACK_ARTIFACTS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// The browser check's directory, after making sure what it needs is there.
fn browser_check_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "node is not installed: the dashboard's browser test needs Node.js 18+ \
             (`apt-get install -y nodejs npm`), then `npm ci` in {}",
            dir.display()
        ),
    }
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci` in {} (`.ci/run` does it)",
        dir.display()
    );
    dir
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap_or_default(), headers)
}

#[test]
fn the_dashboards_pure_parts_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    let out = Command::new("node").arg("unit.mjs").current_dir(&dir).output().unwrap_or_else(|e| {
        panic!("node is not installed ({e}): the dashboard's unit tests need Node.js 18+ (`apt-get install -y nodejs`)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tests/dashboard/unit.mjs failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cluster_and_pauses_a_plan_in_a_browser() {
    let check_dir = browser_check_dir();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let mut agents = Vec::new();
    for (i, z) in ["zone-a", "zone-b"].iter().enumerate() {
        let n = i + 1;
        agents.push(m.agent(
            &format!("a{n}"),
            &format!("{p}.{n}"),
            &["--zone", z, "--cpus", "1", "--mem", "512", "--disk", "200", "--ports", "45000-45099"],
        ));
    }
    let summaries = m.wait_agents(2).await;
    let spec_file = d.join("board.yaml");
    std::fs::write(&spec_file, spec(smack_bin())).unwrap();
    let out = cli(d, &["service", "apply", &spec_file.display().to_string()]).expect("service apply");
    assert!(out.contains("deploying board"), "{out}");
    let stage_file = d.join("stream.yaml");
    std::fs::write(&stage_file, stage_spec(smack_bin())).unwrap();
    let out = cli(d, &["service", "apply", &stage_file.display().to_string()]).expect("service apply stream");
    assert!(out.contains("deploying stream"), "{out}");

    // Two pods run; the third says why it waits.
    wait_for("two deploy steps COMPLETE and the third waiting with a reason", T, || async {
        let v = plan_json(d)?;
        let steps = v["phases"][0]["steps"].as_array()?.clone();
        let done = steps.iter().filter(|s| s["state"] == "COMPLETE").count();
        let why =
            steps.iter().any(|s| s["state"] != "COMPLETE" && s["message"].as_str().is_some_and(|m| !m.is_empty()));
        (done == 2 && why).then_some(())
    })
    .await;

    // The master knows the scheduler's API and forwards to it, behind the token.
    let c = m.client();
    let fw = c.state().await.unwrap().frameworks.into_iter().find(|f| f.name == "board").expect("framework board");
    let sched_url = fw.api_url.clone().expect("the scheduler announced its API URL at subscribe");
    let http = reqwest::Client::new();
    let plans_url = format!("{}/v1/frameworks/{}/api/v1/plans", m.url, fw.id);
    let (status, body, _) = get(&http, &plans_url, Some(&m.token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"deploy\""), "{body}");
    assert_eq!(get(&http, &plans_url, None).await.0, 401, "the forwarding route needs the token");
    let (status, page, headers) = get(&http, &format!("{}/dashboard/", m.url), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("app.js") && !page.contains(&m.token), "{page}");
    assert!(headers.get("content-security-policy").is_some(), "{headers:?}");

    // A task's log, through the master.
    let pods: Value =
        serde_json::from_str(&cli(d, &["pod", "list", "--service", "board", "--output", "json"]).unwrap_or_default())
            .unwrap_or_default();
    let running = pods
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["tasks"].as_array().cloned().unwrap_or_default())
        .find(|t| t["state"] == "RUNNING")
        .and_then(|t| t["id"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("a running task: {pods:#}"));
    let log_url = format!("{}/v1/tasks/{running}/log?stream=stdout", m.url);
    let text = wait_for("the task's stdout through the master", T, || {
        let (http, url, token) = (http.clone(), log_url.clone(), m.token.clone());
        async move {
            let (status, body, _) = get(&http, &url, Some(&token)).await;
            (status == 200 && body.contains(GREETING)).then_some(body)
        }
    })
    .await;
    assert!(text.contains("\"stream\":\"stdout\""), "{text}");

    // A task's metrics, through the master: the stage-like task has them, a
    // task without a `metrics` port gets 404 with the reason.
    let stream =
        c.state().await.unwrap().frameworks.into_iter().find(|f| f.name == "stream").expect("framework stream");
    let stream_url = stream.api_url.clone().expect("stream's scheduler announced its API URL");
    let pods_url = format!("{stream_url}/v1/pods");
    let stage_task = wait_for("stream's task RUNNING", T, || {
        let (http, url, token) = (http.clone(), pods_url.clone(), m.token.clone());
        async move {
            let (_, body, _) = get(&http, &url, Some(&token)).await;
            let v: Value = serde_json::from_str(&body).ok()?;
            let t = v.as_array()?.iter().flat_map(|p| p["tasks"].as_array().cloned().unwrap_or_default()).next()?;
            (t["state"] == "RUNNING").then(|| t["id"].as_str().map(String::from))?
        }
    })
    .await;
    let metrics_url = format!("{}/v1/tasks/{stage_task}/metrics", m.url);
    let scrape = wait_for("the stage task's metrics through the master", T, || {
        let (http, url, token) = (http.clone(), metrics_url.clone(), m.token.clone());
        async move {
            let (status, body, _) = get(&http, &url, Some(&token)).await;
            (status == 200 && body.contains("smack_stage_records_in_total{source=\"transactions\"}")).then_some(body)
        }
    })
    .await;
    for family in ["smack_stage_rows_out_total", "smack_stage_consumer_lag", "smack_stage_watermark_delay_seconds"] {
        assert!(scrape.contains(family), "{family} missing:\n{scrape}");
    }
    assert_eq!(get(&http, &metrics_url, None).await.0, 401, "the metrics route needs the token");
    let (status, body, _) = get(&http, &format!("{}/v1/tasks/{running}/metrics", m.url), Some(&m.token)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no port named `metrics`"), "{body}");
    let (status, body, _) = get(&http, &format!("{}/v1/tasks/no-such-task/metrics", m.url), Some(&m.token)).await;
    assert_eq!(status, 404, "{body}");

    // The browser.
    let shot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut args: Vec<String> = vec![
        check_dir.join("check.mjs").display().to_string(),
        m.url.clone(),
        m.token.clone(),
        "--shot".into(),
        shot.display().to_string(),
        "--service".into(),
        "board".into(),
        "--log-text".into(),
        GREETING.into(),
        "--stage-service".into(),
        "stream".into(),
        "--scale-pod".into(),
        "analyze".into(),
        "--scale-to".into(),
        "2".into(),
    ];
    for a in &summaries {
        args.extend(["--agent".to_string(), a.id.clone()]);
    }
    let out = tokio::task::spawn_blocking(move || Command::new("node").args(&args).current_dir(&check_dir).output())
        .await
        .unwrap()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(2) => panic!("the browser check cannot run; install what it names:\n{stderr}{stdout}"),
        _ => panic!("the browser check failed ({}):\n{stdout}\n{stderr}", out.status),
    }
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    assert!(shot.is_file(), "no screenshot at {}", shot.display());

    // The scheduler's own API agrees the plan is paused.
    let (status, body, _) = get(&http, &format!("{sched_url}/v1/plans/deploy"), Some(&m.token)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["plan"]["interrupted"], true, "{v:#}");
    assert_eq!(v["plan"]["status"], "WAITING", "{v:#}");

    // The scheduler's own API agrees stream was scaled to two pods (and
    // that the refused scale-down changed nothing).
    let (status, body, _) = get(&http, &format!("{stream_url}/v1/spec"), Some(&m.token)).await;
    assert_eq!(status, 200, "{body}");
    let spec: Value = serde_json::from_str(&body).unwrap();
    let yaml = spec["yaml"].as_str().unwrap_or_default();
    assert!(yaml.contains("    count: 2\n") && !yaml.contains("count: 1\n"), "{yaml}");
    let (status, body, _) = get(&http, &pods_url, Some(&m.token)).await;
    assert_eq!(status, 200, "{body}");
    let pods: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = pods.as_array().unwrap().iter().filter_map(|p| p["pod"]["name"].as_str()).collect();
    assert_eq!(names, ["analyze-0", "analyze-1"], "{pods:#}");
    drop(agents);
}
