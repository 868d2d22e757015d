//! Issue 4, Cassandra: a real 3-node Cassandra service deployed by smack's
//! own scheduler (`smack service run` of the catalog's spec) over three
//! zones, rows at replication 3, a SIGKILLed node back on its own disk,
//! a `pod replace`d node streaming its data onto a fresh disk in its zone,
//! a rolling `concurrent_writes` change (one node at a time, each UN as
//! seen by every node before the next restarts, the new value live on
//! each), a scale-down refused while a keyspace needs the node and then
//! done by decommission, and a scale back up by bootstrap — every row read
//! back at consistency ALL after each. One cluster for all of it.

use crate::support::smack_at as cli;
use crate::support::*;
use serde_json::Value;
use smack_catalog::artifacts::{self, Service};
use smack_catalog::cassandra::service::{self as cassandra_service, cassandra_service_yaml, CassandraServiceOptions};
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, Consistency};
use std::collections::{BTreeMap, BTreeSet};
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
        for plan in ["deploy", "recovery", "update", "decommission"] {
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
    launched_ms: u64,
    zone: String,
    host: String,
    volumes: Vec<String>,
    task_id: String,
    /// Its task runs (readiness aside: while one node restarts, the
    /// others' cluster-level checks fail too).
    running: bool,
    ready: bool,
}

fn pod_now(dir: &Path, pod: &str) -> Option<PodNow> {
    let v = json(dir, &["pod", "status", pod])?;
    pod_of(v.get(0)?)
}

/// Every pod, from one `smack pod list`.
fn pods_now(dir: &Path) -> Option<BTreeMap<String, PodNow>> {
    let v = json(dir, &["pod", "list"])?;
    Some(v.as_array()?.iter().filter_map(|p| Some((p["pod"]["name"].as_str()?.to_string(), pod_of(p)?))).collect())
}

/// A pod view (`{pod, tasks}`) of the scheduler's API.
fn pod_of(v: &Value) -> Option<PodNow> {
    let task_id = v["pod"]["tasks"]["node"].as_str()?.to_string();
    let task = v["tasks"].as_array()?.iter().find(|t| t["id"] == task_id.as_str())?;
    Some(PodNow {
        agent: v["pod"]["agent_id"].as_str()?.to_string(),
        launched_ms: task["launched_ms"].as_u64().unwrap_or(0),
        zone: v["pod"]["attributes"]["zone"].as_str().unwrap_or("").to_string(),
        host: v["pod"]["hostname"].as_str()?.to_string(),
        volumes: v["pod"]["volume_ids"].as_array()?.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        ready: task["ready"] == true && task["state"] == "RUNNING",
        running: task["state"] == "RUNNING",
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
async fn cassandra_service_deploys_recovers_replaces_rolls_and_scales() {
    let started = Instant::now();
    service_jars(Service::Cassandra).await;

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
    o.cache_dir = Some(artifacts::default_cache_dir().display().to_string());
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
    drop(s);

    // 4. A rolling config change: concurrent_writes (4, as smack renders it) → 48 in the spec.
    let rolled_at = Instant::now();
    let rolled_in = roll_concurrent_writes(&dir, &mut o, &spec).await;
    let s = session(&dir).await;
    assert_eq!(read_all(&s).await, want, "every row at ALL after the roll");
    drop(s);

    // 5. Scale down: refused while keyspace e2e keeps 3 replicas; at RF 2
    //    the highest node decommissions (its hook streams its ranges away),
    //    leaves the ring and gives its disk back.
    let refused = cli(&dir, &["cassandra", "scale", "--nodes", "2"]).expect_err("3 → 2 nodes under RF 3");
    assert!(
        refused.contains("from 3 to 2 node(s)") && refused.contains("e2e (replication 3 in datacenter dc1)"),
        "{refused}"
    );
    assert!(json(&dir, &["plan", "show", "decommission"]).is_none(), "a refused scale started a decommission");
    // The hook refuses too, however the count was lowered (an edited
    // spec): its command, run as the scheduler would on cassandra-2's
    // agent, stops before `nodetool` with the reason.
    let c2 = json(&dir, &["pod", "status", "cassandra-2"]).expect("cassandra-2");
    let port = |name: &str| c2[0]["pod"]["ports"][name].as_u64().expect("a port").to_string();
    let hook = std::process::Command::new(smack_bin())
        .args(["cassandra", "decommission"])
        .env("HOST", c2[0]["pod"]["hostname"].as_str().unwrap())
        .env("PORT_NATIVE", port("native"))
        .env("PORT_JMX", port("jmx"))
        .env("SMACK_SANDBOX", dir.join("hook-refusal"))
        .output()
        .expect("run the decommission hook");
    let hook_err = String::from_utf8_lossy(&hook.stderr);
    assert!(!hook.status.success(), "the hook decommissioned a node keyspace e2e needs");
    assert!(
        hook_err.contains("refusing to decommission") && hook_err.contains("e2e (replication 3 in datacenter dc1)"),
        "{hook_err}"
    );
    assert!(!String::from_utf8_lossy(&hook.stdout).contains("nodetool"), "the hook ran nodetool");
    let too_many = cli(&dir, &["cassandra", "keyspace", "alter", "e2e", "--replication", "4"]).unwrap_err();
    assert!(too_many.contains("replication factor 4 is above the 3 node(s)"), "{too_many}");
    cli(&dir, &["cassandra", "keyspace", "alter", "e2e", "--replication", "2"]).expect("keyspace alter e2e");
    let leaving = pod_now(&dir, "cassandra-2").expect("cassandra-2");
    let scaled_down_at = Instant::now();
    let out = cli(&dir, &["cassandra", "scale", "--nodes", "2", "--timeout", "5m"])
        .unwrap_or_else(|e| panic!("scale 3 → 2: {e}"));
    let scaled_down_in = scaled_down_at.elapsed();
    assert!(out.contains("3 -> 2 node(s)") && out.contains("decommission"), "{out}");
    let plan = json(&dir, &["plan", "show", "decommission"]).expect("the decommission plan");
    let steps = plan["phases"][0]["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 1, "{plan:#}");
    assert_eq!((&steps[0]["pod_instance"], &steps[0]["state"]), (&"cassandra-2".into(), &"COMPLETE".into()));
    assert!(steps[0]["message"].as_str().unwrap_or("").contains("decommissioned"), "{plan:#}");
    let hook = sandboxes(&dir)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("cassandra-2-decommission-hook__"))
        .expect("the decommission hook's sandbox");
    let hook_out = read(hook.join("stdout"));
    assert!(
        hook_out.contains("smack: nodetool decommission") && hook_out.contains("smack: decommissioned"),
        "{hook_out}"
    );
    let node_log = read(sandbox_of(&dir, &leaving.task_id).expect("the removed node's sandbox").join("stdout"));
    assert!(node_log.contains("DECOMMISSIONED"), "the node's own log shows no decommission");
    assert!(pod_now(&dir, "cassandra-2").is_none(), "cassandra-2 is still a pod");
    let nodes = wait_ring(&dir, 2, Duration::from_secs(60), "2 UN nodes after the scale-down").await;
    assert!(
        nodes.iter().all(|n| n["address"] != leaving.host.as_str()),
        "{} still in the ring: {nodes:#?}",
        leaving.host
    );
    wait_for("the removed node's disk released", Duration::from_secs(60), || async {
        let st = m.client().state().await.ok()?;
        let held: Vec<&str> =
            st.agents.iter().flat_map(|a| &a.reservations).flat_map(|r| &r.volumes).map(|v| v.id.as_str()).collect();
        leaving.volumes.iter().all(|v| !held.contains(&v.as_str())).then_some(())
    })
    .await;
    let s = session(&dir).await;
    assert_eq!(read_all(&s).await, want, "every row at ALL (RF 2) after the scale-down");
    drop(s);

    // 6. Scale up again: a new cassandra-2 bootstraps and is UN everywhere.
    let scaled_up_at = Instant::now();
    let out = cli(&dir, &["cassandra", "scale", "--nodes", "3", "--timeout", "5m"])
        .unwrap_or_else(|e| panic!("scale 2 → 3: {e}"));
    let scaled_up_in = scaled_up_at.elapsed();
    assert!(out.contains("2 -> 3 node(s)"), "{out}");
    let joined = pod_now(&dir, "cassandra-2").expect("cassandra-2 again");
    assert!(joined.ready && joined.volumes != leaving.volumes, "a fresh disk");
    // (Earlier cassandra-2 sandboxes may be the zone-a replacement's.)
    let log = read(sandbox_of(&dir, &joined.task_id).expect("the new node's sandbox").join("stdout"));
    let start = log.lines().find(|l| l.starts_with("smack: starting")).unwrap_or("");
    assert!(start.contains("smack: starting") && !start.contains("replacing"), "{start}");
    let boot: Vec<&str> = log.lines().filter(|l| l.to_lowercase().contains("bootstrap")).collect();
    assert!(boot.iter().any(|l| l.contains("JOINING")), "no bootstrap in the new node's log: {boot:#?}");
    let nodes = wait_ring(&dir, 3, Duration::from_secs(60), "3 UN nodes after the scale-up").await;
    assert!(nodes.iter().any(|n| n["address"] == joined.host.as_str()), "{nodes:#?}");
    let s = session(&dir).await;
    assert_eq!(read_all(&s).await, want, "every row at ALL after the scale-up");

    eprintln!(
        "cassandra e2e: deployed 3 nodes in {:.1?}, SIGKILL→ready {:.1?}, replace→ready {:.1?}, roll of 3 in \
         {rolled_in:.1?} (from {:.1?}), scale 3→2 {scaled_down_in:.1?}, 2→3 {scaled_up_in:.1?}, total {:.1?}",
        deployed_in,
        recovered_in,
        replaced_in,
        rolled_at.duration_since(started),
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

/// Changes `concurrent_writes` in the spec and watches the `update` plan
/// roll it: one step at a time, each node restarted only after the last
/// one's readiness check (UN as seen by every node) passed — read from the
/// scheduler's plan and task launch times, and from the marker each check
/// leaves when it first passes — and the value live on every node.
async fn roll_concurrent_writes(dir: &Path, o: &mut CassandraServiceOptions, spec: &Path) -> Duration {
    let pods = ["cassandra-0", "cassandra-1", "cassandra-2"];
    let before: BTreeMap<&str, String> =
        pods.iter().map(|p| (*p, pod_now(dir, p).expect("a pod before the roll").task_id)).collect();
    let writes_now = || {
        let v = json(dir, &["cassandra", "settings", "concurrent_writes"]).expect("smack cassandra settings");
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["settings"]["concurrent_writes"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<String>>()
    };
    let old = writes_now();
    assert!(old.len() == 3 && old.iter().all(|v| v == &old[0] && v != "48"), "before the change: {old:?}");
    let from = Instant::now();
    o.config.insert("concurrent_writes".into(), "48".into());
    std::fs::write(spec, cassandra_service_yaml(o)).unwrap();
    let started = cli(dir, &["service", "update", &spec.display().to_string()]).expect("service update");
    assert!(started.contains("update"), "{started}");
    let mut restarted: Vec<String> = Vec::new();
    let mut completed: Vec<String> = Vec::new();
    let (mut worst_active, mut worst_down) = (0usize, 0usize);
    let mut now: BTreeMap<&str, PodNow> = BTreeMap::new();
    let mut order: Vec<String>;
    let deadline = Instant::now() + DEPLOY;
    loop {
        assert!(Instant::now() < deadline, "the update plan did not complete within {DEPLOY:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(plan) = json(dir, &["plan", "show", "update"]) else { continue };
        let Some(all) = pods_now(dir) else { continue };
        now.clear();
        for (name, n) in all {
            if let Some(p) = pods.iter().find(|p| **p == name) {
                now.insert(p, n);
            }
        }
        worst_down = worst_down.max(pods.len() - now.values().filter(|n| n.running).count());
        for (p, n) in &now {
            if n.task_id != before[p] && !restarted.iter().any(|r| r == p) {
                restarted.push(p.to_string());
            }
        }
        let steps = plan["phases"][0]["steps"].as_array().cloned().unwrap_or_default();
        let active = steps.iter().filter(|s| s["state"] != "PENDING" && s["state"] != "COMPLETE").count();
        worst_active = worst_active.max(active);
        for st in steps.iter().filter(|s| s["state"] == "COMPLETE") {
            let p = st["pod_instance"].as_str().unwrap_or("?").to_string();
            if !completed.contains(&p) {
                completed.push(p);
            }
        }
        order = steps.iter().filter_map(|s| s["pod_instance"].as_str().map(String::from)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, pods, "the update plan has one step per node: {plan:#}");
        if plan["status"] == "COMPLETE" && now.len() == 3 && now.values().all(|n| n.ready) {
            break;
        }
    }
    let took = from.elapsed();
    assert_eq!(restarted, order, "every node restarted, in the plan's order");
    assert_eq!(completed, restarted, "each node's step COMPLETE before the next restarts");
    assert_eq!(worst_active, 1, "one update step at a time");
    assert!(worst_down <= 1, "{worst_down} nodes were down at once during the roll");
    // From the record: each node launched only after the previous one's
    // readiness check had seen it UN from all three nodes.
    let mut ready_at = Vec::new();
    for p in order.iter().map(String::as_str) {
        let n = &now[p];
        assert_ne!(n.task_id, before[p]);
        let sb = sandbox_of(dir, &n.task_id).expect("the new sandbox");
        let marker = read(sb.join(cassandra_service::READY_MARKER));
        let at = cassandra_service::parse_ready_marker(&marker).unwrap_or_else(|| panic!("{p}: marker {marker:?}"));
        let seen_by = marker.split("seen by ").nth(1).unwrap_or("").trim().split(',').count();
        assert_eq!(seen_by, 3, "{p} was ready as seen by all three nodes: {marker}");
        assert!(at >= n.launched_ms, "{p} ready at {at} before its launch at {}", n.launched_ms);
        ready_at.push((p, n.launched_ms, at));
    }
    for w in ready_at.windows(2) {
        let ((prev, _, prev_ready), (next, next_launch, _)) = (w[0], w[1]);
        assert!(
            next_launch >= prev_ready,
            "{next} launched at {next_launch}, before {prev} was UN everywhere at {prev_ready}: {ready_at:?}"
        );
    }
    wait_ring(dir, 3, Duration::from_secs(60), "3 UN nodes after the roll").await;
    assert_eq!(writes_now(), vec!["48"; 3], "the new value live on every node");
    eprintln!("roll: {ready_at:?}");
    took
}
