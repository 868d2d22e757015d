//! Issue 6, metrics: the master's `/metrics` (no token) and an agent's
//! `--metrics-listen` show what a framework reserved and launched.

use crate::support::*;
use smack_operator::resources::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The value of the sample whose name and labels are exactly `series`
/// (e.g. `smack_master_agents{state="REACHABLE"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes `url` without any token; checks the content type.
async fn scrape(url: &str) -> Option<String> {
    let resp = reqwest::get(url).await.ok()?;
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(ct, OPENMETRICS, "GET {url}");
    let text = resp.text().await.ok()?;
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF:\n{text}");
    Some(text)
}

/// A series and what its value must satisfy.
type Check<'a> = (&'a str, fn(f64) -> bool);

/// Waits until every `(series, check)` holds on a scrape of `url`.
async fn scrape_until(url: &str, what: &str, checks: &[Check<'_>]) -> String {
    let mut last = String::new();
    let found = tokio::time::timeout(T, async {
        loop {
            if let Some(text) = scrape(url).await {
                if checks.iter().all(|(series, ok)| sample(&text, series).is_some_and(ok)) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{url} never showed {what} within {T:?}; last scrape:\n{last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_agent_metrics_after_a_launch() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let agent =
        m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000", "--metrics-listen", "127.0.0.1:0"]);
    m.wait_agents(1).await;
    let agent_metrics = wait_for("the agent prints its metrics address", T, || async {
        agent.log_text().lines().find_map(|l| l.split("agent metrics at ").nth(1).map(|u| u.trim().to_string()))
    })
    .await;

    let mut fw = TestFramework::subscribe(m.client(), "store").await;
    let offer = fw.offer_where("with 1 cpu unreserved", T, |o| o.unreserved.cpus >= 1.0).await;
    let task = volume_task("metered", r#"echo hello > "$VOLUME_DATA/hello"; exec sleep 600"#);
    fw.accept(
        offer.id,
        vec![
            Operation::Reserve {
                id: "r1".into(),
                resources: Resources::new(0.5, 64, 100),
                labels: [("resource_id".to_string(), "r1".to_string())].into(),
            },
            Operation::CreateVolume {
                reservation: "r1".into(),
                volume: Volume {
                    id: "v1".into(),
                    source: VolumeSource::Root { size: 50 },
                    container_path: "data".into(),
                    host_path: String::new(),
                },
            },
            Operation::Launch { task },
        ],
    )
    .await
    .expect("accept reserve+volume+launch");
    fw.status("metered", TaskState::Running, T).await;

    // The master's /metrics, without the token that /v1/ needs.
    let master_metrics = format!("{}/metrics", m.url);
    let text = scrape_until(
        &master_metrics,
        "one reachable agent, 0.5 cpus reserved for store, offers made, an applied RESERVE",
        &[
            (r#"smack_master_agents{state="REACHABLE"}"#, |v| v == 1.0),
            (r#"smack_master_agents{state="UNREACHABLE"}"#, |v| v == 0.0),
            (r#"smack_master_resources_reserved{resource="cpus",role="store"}"#, |v| (v - 0.5).abs() < 1e-9),
            (r#"smack_master_resources_reserved{resource="mem",role="store"}"#, |v| v == 64.0),
            (r#"smack_master_resources_used{resource="cpus",role="store"}"#, |v| (v - 0.5).abs() < 1e-9),
            (r#"smack_master_resources_capacity{resource="cpus"}"#, |v| v == 2.0),
            ("smack_master_offers_made_total", |v| v > 0.0),
            (r#"smack_master_operations_total{type="RESERVE",result="applied"}"#, |v| v == 1.0),
            (r#"smack_master_operations_total{type="LAUNCH",result="applied"}"#, |v| v == 1.0),
            ("smack_master_frameworks_connected", |v| v == 1.0),
            ("smack_master_allocation_cycle_seconds_count", |v| v > 0.0),
        ],
    )
    .await;
    for family in ["smack_master_offers_declined_total ", "smack_master_offers_rescinded_total "] {
        assert!(text.lines().any(|l| l.starts_with(family)), "{family}missing:\n{text}");
    }
    // The API itself still needs the token.
    let v1 = reqwest::get(format!("{}/v1/agents", m.url)).await.unwrap();
    assert_eq!(v1.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The agent's own /metrics.
    let launches = format!(r#"smack_agent_launches_total{{agent="{host}"}}"#);
    let running = format!(r#"smack_agent_tasks{{agent="{host}",state="RUNNING"}}"#);
    let volume = format!(r#"smack_agent_volume_used_bytes{{agent="{host}",volume="v1"}}"#);
    let kills = format!(r#"smack_agent_kills_total{{agent="{host}"}}"#);
    let text = scrape_until(
        &agent_metrics,
        "one launch, one running task, bytes on the volume",
        &[(&launches, |v| v == 1.0), (&running, |v| v == 1.0), (&volume, |v| v == 6.0)],
    )
    .await;
    let failures = format!(r#"smack_agent_health_check_failures_total{{agent="{host}"}}"#);
    assert_eq!(sample(&text, &kills), Some(0.0), "nothing was killed yet:\n{text}");
    assert_eq!(sample(&text, &failures), Some(0.0), "no health check failed:\n{text}");
}

/// A small stateful service: `count` pods of 0.25 cpus and 64 MiB, each with
/// a ROOT volume and a readiness check.
fn service_spec(count: u32) -> String {
    format!(
        r#"name: metered
pods:
  web:
    count: {count}
    resources:
      cpus: 0.25
      mem: 64
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
        kill-grace-period: 2s
        readiness-check:
          tcp: http
          interval: 1s
          timeout: 1s
"#,
        bin = smack_bin()
    )
}

/// Runs `smack ARGS…` against the state dir; its stdout on success.
fn smack(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(smack_bin())
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SMACK_MASTER")
        .env_remove("SMACK_TOKEN")
        .output()
        .expect("run smack");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_metrics_after_a_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = MasterProc::start(d, &[]).await;
    let p = address_prefix();
    let _agents: Vec<_> = (1..=2)
        .map(|n| {
            m.agent(&format!("a{n}"), &format!("{p}.{n}"), &["--cpus", "1", "--mem", "512", "--ports", "44100-44199"])
        })
        .collect();
    m.wait_agents(2).await;
    let spec_file = d.join("metered.yaml");
    std::fs::write(&spec_file, service_spec(3)).unwrap();
    let sd = d.display().to_string();
    let sf = spec_file.display().to_string();
    let _sched = spawn("scheduler", &["--state-dir", &sd, "service", "run", &sf], &d.join("logs"));
    let endpoint = d.join("services/metered/endpoint.json");
    let api = wait_for("the scheduler writes its endpoint", T, || async {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&endpoint).ok()?).ok()?;
        Some(v["url"].as_str()?.to_string())
    })
    .await;

    // The scheduler's own /metrics, without a token: every deploy step
    // COMPLETE, every pod RUNNING, evaluations counted, no recovery.
    let series = |family: &str, labels: &str| format!(r#"{family}{{service="metered",{labels}}}"#);
    let complete = series("smack_scheduler_steps", r#"plan="deploy",phase="web",state="COMPLETE""#);
    let pending = series("smack_scheduler_steps", r#"plan="deploy",phase="web",state="PENDING""#);
    let plan_complete = series("smack_scheduler_plan_status", r#"plan="deploy",status="COMPLETE""#);
    let plan_pending = series("smack_scheduler_plan_status", r#"plan="deploy",status="PENDING""#);
    let running = series("smack_scheduler_pods", r#"state="RUNNING""#);
    let waiting = series("smack_scheduler_pods", r#"state="WAITING""#);
    let placement_pass = series("smack_scheduler_offer_evaluations_total", r#"stage="placement",result="pass""#);
    let transient = series("smack_scheduler_recoveries_total", r#"kind="transient""#);
    let permanent = series("smack_scheduler_recoveries_total", r#"kind="permanent""#);
    let text = scrape_until(
        &format!("{api}/metrics"),
        "the deploy plan COMPLETE with 3 steps and 3 pods RUNNING",
        &[
            (&complete, |v| v == 3.0),
            (&pending, |v| v == 0.0),
            (&plan_complete, |v| v == 1.0),
            (&plan_pending, |v| v == 0.0),
            (&running, |v| v == 3.0),
            (&waiting, |v| v == 0.0),
            (&placement_pass, |v| v >= 3.0),
        ],
    )
    .await;
    assert_eq!(sample(&text, &transient), Some(0.0), "nothing failed:\n{text}");
    assert_eq!(sample(&text, &permanent), Some(0.0), "nothing was replaced:\n{text}");

    // The master reserved what the pods asked for: 3 × 0.25 cpus, 3 × 64 MiB.
    let reserved = scrape_until(
        &format!("{}/metrics", m.url),
        "0.75 cpus and 192 MiB reserved for the service's role",
        &[
            (r#"smack_master_resources_reserved{resource="cpus",role="metered"}"#, |v| (v - 0.75).abs() < 1e-9),
            (r#"smack_master_resources_reserved{resource="mem",role="metered"}"#, |v| v == 192.0),
            (r#"smack_master_resources_used{resource="cpus",role="metered"}"#, |v| (v - 0.75).abs() < 1e-9),
        ],
    )
    .await;
    assert!(reserved.contains("smack_master_operations_total{type=\"LAUNCH\",result=\"applied\"}"), "{reserved}");

    // The same families through the master's forward to the framework (token).
    let fw = m.client().state().await.unwrap().frameworks.into_iter().find(|f| f.name == "metered").unwrap();
    let forwarded = reqwest::Client::new()
        .get(format!("{}/v1/frameworks/{}/api/metrics", m.url, fw.id))
        .bearer_auth(&m.token)
        .send()
        .await
        .unwrap();
    assert!(forwarded.status().is_success(), "{}", forwarded.status());
    let text = forwarded.text().await.unwrap();
    assert_eq!(sample(&text, &complete), Some(3.0), "{text}");

    // `smack metrics targets`: the master, both agents and the scheduler,
    // as Prometheus file_sd JSON.
    let out = smack(d, &["metrics", "targets", "--output", "json"]).expect("smack metrics targets");
    let groups: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let role = |r: &str| groups.iter().filter(|g| g["labels"]["smack_role"] == r).count();
    assert_eq!((role("master"), role("agent"), role("scheduler")), (1, 2, 1), "{out}");
    let sched = groups.iter().find(|g| g["labels"]["smack_role"] == "scheduler").unwrap();
    assert_eq!(sched["labels"]["service"], "metered");
    assert_eq!(format!("http://{}", sched["targets"][0].as_str().unwrap()), api);
    let mut scraped = String::new();
    for g in &groups {
        let target = g["targets"][0].as_str().unwrap();
        let text =
            scrape(&format!("http://{target}/metrics")).await.unwrap_or_else(|| panic!("{target} does not answer"));
        scraped.push_str(&text);
    }

    // Every master, agent and scheduler series the example Grafana dashboard
    // charts is in those scrapes (stage families come from stage tasks).
    for family in dashboard_families() {
        if family.starts_with("smack_stage_") {
            continue;
        }
        let found = scraped.lines().any(|l| {
            l.strip_prefix(family.as_str()).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(found, "the dashboard charts {family}, which no target serves:\n{scraped}");
    }
}

/// The `smack_*` series the example Grafana dashboard's queries use.
fn dashboard_families() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../examples/monitoring/grafana-dashboard.json")).expect("dashboard JSON");
    let mut families = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a query");
            let mut rest = expr;
            while let Some(i) = rest.find("smack_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                families.insert(name);
            }
        }
    }
    assert!(families.len() > 20, "{families:?}");
    families.into_iter().collect()
}
