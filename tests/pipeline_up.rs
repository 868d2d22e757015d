//! The README's first command, end to end: `smack up
//! examples/fraud-detection/pipeline.yaml` on a fresh state dir brings up
//! the embedded cluster, real Kafka brokers and a real Cassandra node, the
//! topics and tables, the stage and the generator, the card home-country
//! lookup table filled from the generator's seed, and suspicious-card rows
//! (with their count of transactions away from home) appear in Cassandra
//! while the generator runs; `pipeline status` agrees
//! in both formats; Ctrl-C stops every task and scheduler. A pipeline file
//! that does not validate starts nothing.

use crate::support::smack_at as cli;
use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, CqlValue};
use smack_pipelines::generate::{FraudGenerator, Options};
use std::path::Path;
use std::time::Duration;

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fraud-detection/pipeline.yaml").display().to_string()
}

/// Processes whose working dir is under `dir` (tasks and schedulers).
fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Zombies (PID 1 here may not reap them) are not running.
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            (cwd.starts_with(dir) && !zombie).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smack_up_with_the_fraud_example_shows_alerts_in_cassandra() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _reaper = TaskReaper(d.to_path_buf());
    let sd = d.display().to_string();
    let prefix = address_prefix();

    // A broken file starts nothing and says where it is broken.
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, std::fs::read_to_string(example()).unwrap().replace("FROM transactions", "FROM transaction"))
        .unwrap();
    let err = cli(d, &["up", bad.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap_err();
    assert!(err.contains("bad.yaml:") && err.contains("transaction") && err.contains("nothing was started"), "{err}");
    assert!(!d.join("cluster.json").exists(), "no cluster was started");

    let ex = example();
    let mut up = spawn(
        "up",
        &[
            "--state-dir",
            &sd,
            "up",
            &ex,
            "--listen",
            "127.0.0.1:0",
            "--address-prefix",
            &prefix,
            "--port-base",
            "52000",
        ],
        &d.join("logs"),
    );
    let diag = DumpOnPanic(d.to_path_buf(), up.log.clone());
    let status = wait_for("the pipeline's services are all deployed", Duration::from_secs(420), || async {
        let v: Value =
            serde_json::from_str(&cli(d, &["pipeline", "status", "fraud-detection", "--output", "json"]).ok()?).ok()?;
        let services = v["services"].as_array()?;
        (services.len() == 4 && services.iter().all(|s| s["deploy"] == "COMPLETE")).then_some(v)
    })
    .await;
    let names: Vec<&str> =
        status["services"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fraud-detection-kafka",
            "fraud-detection-cassandra",
            "fraud-detection-card-velocity",
            "fraud-detection-generator"
        ]
    );
    for s in status["services"].as_array().unwrap() {
        assert_eq!(s["pods"], s["running"], "every pod runs: {s}");
    }
    let table = cli(d, &["pipeline", "status", "fraud-detection"]).unwrap();
    assert!(table.lines().any(|l| l.starts_with("fraud-detection-card-velocity") && l.contains("COMPLETE")), "{table}");

    // The contact point, as a client would find it.
    let points = cli(d, &["endpoints", "cassandra", "--service", "fraud-detection-cassandra"]).unwrap();
    let points: Vec<String> = points.trim().split(',').map(String::from).collect();
    let session = CassandraSession::connect(&CassandraConfig::new(&points)).await.expect("connect to Cassandra");
    let rows = wait_for("suspicious cards reach Cassandra", Duration::from_secs(300), || async {
        let rows = session.read_rows("fraud", "suspicious_cards", None).await.ok()?;
        (!rows.rows.is_empty()).then_some(rows)
    })
    .await;
    // Every row is one the stage's HAVING lets through, and counts at most
    // all of its transactions as away from the card's home country.
    let col = |name: &str| rows.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no {name} column"));
    let (n, total, countries, abroad) = (col("txn_count"), col("total_amount"), col("countries"), col("abroad"));
    for r in &rows.rows {
        let int = |v: &Option<CqlValue>| match v {
            Some(CqlValue::BigInt(x)) => *x,
            Some(CqlValue::Int(x)) => i64::from(*x),
            other => panic!("not an integer: {other:?}"),
        };
        let amount = match &r[total] {
            Some(CqlValue::Double(x)) => *x,
            other => panic!("not a double: {other:?}"),
        };
        assert!(int(&r[n]) > 5 || amount > 5000.0 || int(&r[countries]) > 2, "{r:?}");
        assert!((0..=int(&r[n])).contains(&int(&r[abroad])), "{r:?}");
    }
    // The lookup table holds the generator's cards with their home
    // countries (written by apply before the first transaction).
    let homes = session.read_rows("fraud", "card_homes", Some(50)).await.expect("read card_homes");
    assert_eq!(homes.rows.len(), 50, "card_homes is filled");
    let generator = FraudGenerator::new(&Options { seed: 42, rate: 200.0, ..Options::default() }).unwrap();
    let (card, home) = (
        homes.columns.iter().position(|c| c == "card_id").unwrap(),
        homes.columns.iter().position(|c| c == "home_country").unwrap(),
    );
    for r in &homes.rows {
        let (Some(CqlValue::Text(c)), Some(CqlValue::Text(h))) = (&r[card], &r[home]) else { panic!("{r:?}") };
        assert_eq!(generator.home_country(c), Some(h.as_str()), "{c}");
    }

    // Ctrl-C: the stages, the generator, the clusters and their schedulers stop.
    up.signal(Signal::SIGINT);
    let st = up.wait_exit(Duration::from_secs(180));
    assert!(st.success(), "smack up exits cleanly: {st:?}");
    wait_for("no task or scheduler is left", Duration::from_secs(30), || async {
        processes_under(d).is_empty().then_some(())
    })
    .await;
    std::mem::forget(diag);
}

/// Prints smack up's output and the schedulers' log tails when a wait fails.
struct DumpOnPanic(std::path::PathBuf, std::path::PathBuf);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let tail = |p: &Path, n: usize| {
            let t = read(p);
            let lines: Vec<&str> = t.lines().rev().take(n).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        eprintln!("smack up:\n{}", tail(&self.1, 60));
        if let Ok(rd) = std::fs::read_dir(self.0.join("services")) {
            for e in rd.flatten() {
                eprintln!("{}:\n{}", e.path().display(), tail(&e.path().join("scheduler.log"), 15));
            }
        }
    }
}

/// Bad pipeline files are refused by `validate` and by `apply` with
/// file:line:column, and `apply` deploys nothing (it never reaches the
/// master: the one named here does not exist).
#[test]
fn bad_pipeline_files_are_refused_by_validate_and_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = std::fs::read_to_string(example()).unwrap();
    let cases = [
        (
            "unknown-field",
            good.replacen("    parallelism: 3\n", "    parallelism: 3\n    paralelism: 3\n", 1),
            "paralelism",
        ),
        ("wrong-type", good.replacen("    parallelism: 3\n", "    parallelism: three\n", 1), "parallelism"),
        ("missing-column", good.replacen("SUM(amount)", "SUM(amount_eur)", 1), "amount_eur"),
        ("missing-stage", good.replacen("    from: card_velocity\n", "    from: card_speed\n", 1), "card_speed"),
    ];
    for (name, text, culprit) in cases {
        assert_ne!(text, good, "{name}: the edit applies");
        let file = d.join(format!("{name}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let f = file.to_str().unwrap();
        let validate = cli(d, &["pipeline", "validate", f]).unwrap_err();
        let apply = cli(d, &["--master", "http://127.0.0.1:9", "--token", "t", "pipeline", "apply", f]).unwrap_err();
        for (cmd, err) in [("validate", &validate), ("apply", &apply)] {
            let at = format!("{f}:");
            let located = err.lines().any(|l| {
                l.trim_start_matches("error: ").strip_prefix(&at).is_some_and(|rest| {
                    let mut p = rest.splitn(3, ':');
                    p.next().is_some_and(|l| l.parse::<u32>().is_ok())
                        && p.next().is_some_and(|c| c.parse::<u32>().is_ok())
                }) && l.contains(culprit)
            });
            assert!(located, "{name}: `{cmd}` names file:line:column and `{culprit}`:\n{err}");
        }
        assert!(apply.contains("nothing was deployed"), "{apply}");
    }
    assert!(!d.join("services").exists() && !d.join("pipelines").exists(), "nothing was deployed");
}
