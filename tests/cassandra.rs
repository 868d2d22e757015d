//! Issue 4, Cassandra: a real 3-node Cassandra service deployed by smack's
//! own scheduler (`smack service run` of the catalog's spec) over three
//! zones, rows at replication 3, a SIGKILLed node back on its own disk,
//! and a `pod replace`d node streaming its data onto a fresh disk in its
//! zone — every row read back at consistency ALL. One cluster for all of it.

use crate::support::smack_at as cli;
use crate::support::*;
use serde_json::Value;
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, Consistency};
use smack_operator::catalog::artifacts::{self, Service};
use smack_operator::catalog::cassandra_service::{cassandra_service_yaml, CassandraServiceOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The fixed storage port every node shares (each agent has its own address).
const STORAGE_PORT: u16 = 46000;
/// Agents' extra ports (CQL on the agent's address, JMX on 127.0.0.1, so
/// each agent gets a range of its own): 46010 + 10·i ….
const PORT_BASE: u16 = 46010;
/// Three serial joins of a JVM each on two busy cores.
const DEPLOY: Duration = Duration::from_secs(420);
const RECOVER: Duration = Duration::from_secs(300);
const ROWS: i32 = 500;

fn json(dir: &Path, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    serde_json::from_str(&cli(dir, &a).ok()?).ok()
}

/// Every task sandbox of every agent under `work`.
fn sandboxes(work: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in std::fs::read_dir(work.join("agents")).into_iter().flatten().flatten() {
        for s in std::fs::read_dir(a.path().join("sandboxes")).into_iter().flatten().flatten() {
            out.push(s.path());
        }
    }
    out
}

/// The sandbox of task `task_id` (sandboxes are `<task id>-<run>`).
fn sandbox_of(work: &Path, task_id: &str) -> Option<PathBuf> {
    sandboxes(work)
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{task_id}-"))))
}

fn tail(path: &Path, n: usize) -> String {
    let t = read(path);
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Prints the scheduler's view and the node logs when the test fails.
struct Diag {
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Diag {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for plan in ["deploy", "recovery"] {
            eprintln!("--- plan {plan}:\n{}", cli(&self.dir, &["plan", "show", plan]).unwrap_or_else(|e| e));
        }
        eprintln!("--- pods:\n{}", cli(&self.dir, &["pod", "status"]).unwrap_or_else(|e| e));
        eprintln!("--- scheduler log (tail):\n{}", tail(&self.log, 30));
        for sb in sandboxes(&self.dir) {
            let name = sb.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("cassandra-") {
                let files: Vec<String> = std::fs::read_dir(&sb)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|f| f.file_name().to_string_lossy().to_string())
                    .collect();
                let head: Vec<String> = read(sb.join("stdout")).lines().take(3).map(String::from).collect();
                eprintln!("--- {} files {files:?}, stdout head:\n{}", sb.display(), head.join("\n"));
                eprintln!("--- {name} stderr:\n{}", tail(&sb.join("stderr"), 15));
                eprintln!("--- {name} stdout:\n{}", tail(&sb.join("stdout"), 25));
            }
        }
    }
}

/// One pod as `smack pod status NAME --output json` shows it.
struct PodNow {
    agent: String,
    zone: String,
    host: String,
    volumes: Vec<String>,
    task_id: String,
    ready: bool,
}

fn pod_now(dir: &Path, pod: &str) -> Option<PodNow> {
    let v = json(dir, &["pod", "status", pod])?;
    let v = v.get(0)?;
    let task_id = v["pod"]["tasks"]["node"].as_str()?.to_string();
    let task = v["tasks"].as_array()?.iter().find(|t| t["id"] == task_id.as_str())?;
    Some(PodNow {
        agent: v["pod"]["agent_id"].as_str()?.to_string(),
        zone: v["pod"]["attributes"]["zone"].as_str().unwrap_or("").to_string(),
        host: v["pod"]["hostname"].as_str()?.to_string(),
        volumes: v["pod"]["volume_ids"].as_array()?.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        ready: task["ready"] == true && task["state"] == "RUNNING",
        task_id,
    })
}

/// `smack cassandra nodes --output json`, once every node is UN and there
/// are `n` of them.
async fn wait_ring(dir: &Path, n: usize, within: Duration, what: &str) -> Vec<Value> {
    wait_for(what, within, || async {
        let v = json(dir, &["cassandra", "nodes"])?;
        let nodes = v.as_array()?.clone();
        (nodes.len() == n && nodes.iter().all(|x| x["state"] == "UN")).then_some(nodes)
    })
    .await
}

async fn read_all(s: &CassandraSession) -> BTreeSet<(i32, String)> {
    let mut q = scylla::statement::Statement::new("SELECT k, v FROM e2e.kv");
    q.set_consistency(Consistency::All);
    q.set_page_size(1000);
    let pager = s.inner().query_iter(q, ()).await.expect("select at ALL");
    use futures::TryStreamExt;
    let rows: Vec<(i32, String)> =
        pager.rows_stream::<(i32, String)>().expect("typed rows").try_collect().await.expect("read at ALL");
    rows.into_iter().collect()
}

async fn session(dir: &Path) -> CassandraSession {
    let eps = cli(dir, &["endpoints", "cassandra"]).expect("smack endpoints cassandra");
    let cps: Vec<&str> = eps.trim().split(',').collect();
    let mut cfg = CassandraConfig::new(&cps);
    cfg.request_timeout = Duration::from_secs(30);
    CassandraSession::connect(&cfg).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_service_deploys_recovers_on_its_disk_and_replaces_a_node() {
    let started = Instant::now();
    let cache = artifacts::default_cache_dir();
    let c2 = cache.clone();
    tokio::task::spawn_blocking(move || artifacts::resolve(Service::Cassandra, &c2))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot obtain Cassandra (cache {}): {e}", cache.display()));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let m = MasterProc::start(&dir, &[]).await;
    let prefix = address_prefix();
    // Zones a, b, c, and a second agent in zone a for the replacement.
    let zones = ["zone-a", "zone-b", "zone-c", "zone-a"];
    let mut agents = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let host = format!("{prefix}.{}", i + 1);
        let lo = PORT_BASE + 10 * i as u16;
        let ports = format!("{STORAGE_PORT},{lo}-{}", lo + 9);
        agents.push(m.agent(
            &format!("a{}", i + 1),
            &host,
            &["--zone", z, "--cpus", "2", "--mem", "2048", "--disk", "4000", "--ports", &ports],
        ));
    }
    m.wait_agents(4).await;

    let mut o = CassandraServiceOptions::new(3);
    o.cluster_name = "smack-e2e".into();
    o.storage_port = STORAGE_PORT;
    o.cpus = 0.5;
    o.mem_mb = 1024;
    o.heap_mb = Some(512);
    o.disk_mb = 1500;
    o.ring_delay_ms = 3000;
    o.cache_dir = Some(cache.display().to_string());
    let spec = dir.join("cassandra.yaml");
    std::fs::write(&spec, cassandra_service_yaml(&o)).unwrap();
    let sd = dir.display().to_string();
    let sched =
        spawn("scheduler", &["--state-dir", &sd, "service", "run", &spec.display().to_string()], &dir.join("logs"));
    let _diag = Diag { dir: dir.clone(), log: sched.log.clone() };

    // 1. Three nodes over three zones, joined one at a time.
    wait_for("the deploy plan completes", DEPLOY, || async {
        let v = json(&dir, &["plan", "show", "deploy"])?;
        (v["status"] == "COMPLETE").then_some(())
    })
    .await;
    let deployed_in = started.elapsed();
    let nodes = wait_ring(&dir, 3, Duration::from_secs(60), "3 UN nodes").await;
    let racks: BTreeSet<&str> = nodes.iter().filter_map(|n| n["rack"].as_str()).collect();
    assert_eq!(racks, BTreeSet::from(["zone-a", "zone-b", "zone-c"]), "{nodes:#?}");
    assert!(nodes.iter().all(|n| n["datacenter"] == "dc1" && n["tokens"] == 16), "{nodes:#?}");

    // Replication above the node count is refused with the reason.
    let refused = cli(&dir, &["cassandra", "keyspace", "create", "too_many", "--replication", "4"]).unwrap_err();
    assert!(refused.contains("replication factor 4 is above the 3 node(s)"), "{refused}");
    cli(&dir, &["cassandra", "keyspace", "create", "e2e", "--replication", "3"]).expect("keyspace e2e");

    let s = session(&dir).await;
    s.execute_ddl("CREATE TABLE IF NOT EXISTS e2e.kv (k int PRIMARY KEY, v text)").await.unwrap();
    let mut ins = s.inner().prepare("INSERT INTO e2e.kv (k, v) VALUES (?, ?)").await.unwrap();
    ins.set_consistency(Consistency::All);
    let want: BTreeSet<(i32, String)> = (0..ROWS).map(|k| (k, format!("value-{k}"))).collect();
    // A replica may still be learning the new table (INCOMPATIBLE_SCHEMA):
    // upserts are idempotent, so a failed chunk is written again.
    for chunk in want.iter().collect::<Vec<_>>().chunks(50) {
        let (s, ins) = (&s, &ins);
        wait_for("a chunk of rows written at ALL", Duration::from_secs(60), || async move {
            let writes = chunk.iter().map(|(k, v)| s.inner().execute_unpaged(ins, (*k, v.as_str())));
            let results = futures::future::join_all(writes).await;
            match results.into_iter().find_map(|r| r.err()) {
                None => Some(()),
                Some(e) => {
                    eprintln!("write at ALL failed, retrying: {e}");
                    None
                }
            }
        })
        .await;
    }
    assert_eq!(read_all(&s).await, want);
    drop(s);

    // 2. SIGKILL a node: it comes back on the same agent and volume.
    let before = pod_now(&dir, "cassandra-1").expect("cassandra-1");
    let sb = sandbox_of(&dir, &before.task_id).expect("sandbox of cassandra-1");
    let pid: i32 = read(sb.join("pid")).trim().parse().expect("pid file");
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let after = wait_for("cassandra-1 relaunched and ready", RECOVER, || async {
        let p = pod_now(&dir, "cassandra-1")?;
        (p.task_id != before.task_id && p.ready).then_some(p)
    })
    .await;
    let recovered_in = killed_at.elapsed();
    assert_eq!((&after.agent, &after.volumes, &after.host), (&before.agent, &before.volumes, &before.host));
    let starts = launcher_lines(&dir, "cassandra-1");
    assert!(starts.len() >= 2 && starts.iter().all(|l| !l.contains("replacing")), "{starts:#?}");
    wait_ring(&dir, 3, Duration::from_secs(60), "3 UN nodes after the SIGKILL").await;
    let s = session(&dir).await;
    assert_eq!(read_all(&s).await, want, "every row after the SIGKILL");
    drop(s);

    // 3. Replace a node of zone a: a fresh disk on the other zone-a agent,
    //    replace_address_first_boot, streaming; every row at ALL.
    //    (zone a is the one with a spare agent.)
    let victim = (0..3)
        .map(|i| format!("cassandra-{i}"))
        .find(|p| pod_now(&dir, p).is_some_and(|p| p.zone == "zone-a"))
        .expect("a node in zone-a");
    let old = pod_now(&dir, &victim).unwrap();
    let replaced_at = Instant::now();
    cli(&dir, &["pod", "replace", &victim]).expect("pod replace");
    let new = wait_for(&format!("{victim} placed anew and ready"), RECOVER, || async {
        let p = pod_now(&dir, &victim)?;
        (p.task_id != old.task_id && !p.host.is_empty() && p.host != old.host && p.ready).then_some(p)
    })
    .await;
    assert_eq!(new.zone, "zone-a");
    let replaced_in = replaced_at.elapsed();
    assert_ne!(new.volumes, old.volumes);
    let expected_zone_a: BTreeSet<String> = [format!("{prefix}.1"), format!("{prefix}.4")].into();
    assert!(expected_zone_a.contains(&new.host) && expected_zone_a.contains(&old.host), "{} → {}", old.host, new.host);
    let starts = launcher_lines(&dir, &victim);
    assert!(starts.iter().any(|l| l.ends_with(&format!("replacing {})", old.host))), "{starts:#?}");
    let nodes = wait_ring(&dir, 3, Duration::from_secs(120), "3 UN nodes after the replace").await;
    let addrs: BTreeSet<&str> = nodes.iter().filter_map(|n| n["address"].as_str()).collect();
    assert!(addrs.contains(new.host.as_str()) && !addrs.contains(old.host.as_str()), "{nodes:#?}");
    let s = session(&dir).await;
    assert_eq!(read_all(&s).await, want, "every row at ALL after the replace");

    eprintln!(
        "cassandra e2e: deployed 3 nodes in {:.1?}, SIGKILL→ready {:.1?}, replace→ready {:.1?}, total {:.1?}",
        deployed_in,
        recovered_in,
        replaced_in,
        started.elapsed()
    );
    drop(sched);
    drop(agents);
}

/// The `smack: starting Cassandra …` lines of every launch of `pod`
/// (from its sandboxes' stdout, rotated files included).
fn launcher_lines(work: &Path, pod: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sb in sandboxes(work) {
        let name = sb.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with(&format!("{pod}-node__")) {
            continue;
        }
        for f in std::fs::read_dir(&sb).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().starts_with("stdout") {
                out.extend(read(f.path()).lines().filter(|l| l.starts_with("smack: starting")).map(String::from));
            }
        }
    }
    out
}
