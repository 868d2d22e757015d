//! Issue 6, metrics: the master's `/metrics` (no token) and an agent's
//! `--metrics-listen` show what a framework reserved and launched.

use crate::support::*;
use smack_operator::protocol::Accept;
use smack_operator::resources::*;
use std::collections::BTreeMap;
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
    let task = TaskInfo {
        id: "metered".into(),
        name: "metered".into(),
        command: r#"echo hello > "$VOLUME_DATA/hello"; exec sleep 600"#.into(),
        env: BTreeMap::new(),
        resources: Resources::new(0.5, 64, 0),
        reservation: Some("r1".into()),
        volumes: vec!["v1".into()],
        health_check: None,
        readiness_check: None,
        kill_grace_period_ms: 2000,
        labels: BTreeMap::new(),
    };
    fw.client
        .accept(
            &fw.id,
            &Accept {
                offer_ids: vec![offer.id],
                operations: vec![
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
                filter_ms: None,
            },
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
