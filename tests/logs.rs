//! Issue 6, "Logs": `smack task log` reads a task's stdout/stderr from the
//! agent that runs (or ran) it, through the master; `--follow` streams.

use crate::support::*;
use smack_operator::resources::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn task(id: &str, command: &str) -> TaskInfo {
    TaskInfo { kill_grace_period_ms: 1000, ..TaskInfo::new(id, command, Resources::new(0.1, 16, 0)) }
}

/// Runs `smack task log ARGS…` against the master; (success, stdout, stderr).
fn task_log(m: &MasterProc, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(smack_bin())
        .args(["--master", &m.url, "--token", &m.token, "task", "log"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run smack task log");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `smack task log ARGS…` until its output satisfies `ok`.
async fn log_until(m: &MasterProc, what: &str, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    wait_for(what, T, || {
        let (success, out, _) = task_log(m, args);
        let r = (success && ok(&out)).then_some(out);
        async move { r }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_log_reads_running_and_finished_tasks_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "2", "--mem", "1024", "--disk", "1000", "--ports", "41000-41010"]);
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "logs").await;
    let offer = fw.offer_where("with 1 cpu", T, |o| o.unreserved.cpus >= 1.0).await;
    fw.accept(
        offer.id,
        vec![
            Operation::Launch {
                task: task("runner", "for i in 1 2 3; do echo line-$i; done; echo err >&2; sleep 600"),
            },
            Operation::Launch { task: task("done-1", "echo done-task; exit 0") },
            Operation::Launch { task: task("ticker", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done") },
        ],
    )
    .await
    .expect("launch");
    fw.status("runner", TaskState::Running, T).await;
    fw.status("done-1", TaskState::Finished, T).await;
    fw.status("ticker", TaskState::Running, T).await;

    // A running task: stdout, stderr, the last line.
    let out = log_until(&m, "runner's stdout has 3 lines", &["runner"], |o| o.contains("line-3")).await;
    assert_eq!(out, "line-1\nline-2\nline-3\n");
    let err = log_until(&m, "runner's stderr", &["runner", "--stderr"], |o| o.contains("err")).await;
    assert_eq!(err, "err\n");
    let (ok, last, e) = task_log(&m, &["runner", "--lines", "1"]);
    assert!(ok, "{e}");
    assert_eq!(last, "line-3\n");

    // A finished task, its final status acknowledged (so the agent dropped
    // it from its checkpoint): its log is still there.
    fw.idle(Duration::from_millis(500)).await;
    let (ok, done, e) = task_log(&m, &["done-1"]);
    assert!(ok, "{e}");
    assert_eq!(done, "done-task\n");

    // An unknown task: a clear error naming the known ones.
    let (ok, _, e) = task_log(&m, &["no-such-task"]);
    assert!(!ok);
    assert!(e.contains("no task no-such-task") && e.contains("runner"), "{e}");

    // --follow streams new lines.
    let mut follow = Command::new(smack_bin())
        .args(["--master", &m.url, "--token", &m.token, "task", "log", "ticker", "--follow"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn smack task log --follow");
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let tick = |l: &str| l.strip_prefix("tick-").and_then(|n| n.parse::<u64>().ok());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    let mut newest = 0;
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let n = tick(&line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert!(n > newest, "lines out of order or repeated: {n} after {newest}");
        newest = n;
        let f = *first.get_or_insert(n);
        // Some seconds of new lines after the ones already there at start.
        if n >= f + 10 {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let f = first.expect("--follow printed nothing");
    assert!(newest >= f + 10, "--follow stopped streaming: first tick-{f}, last tick-{newest}");
}

/// The numbers of `line-N` lines, in order; panics on anything else.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| l.strip_prefix("line-").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("odd line {l:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_bound_and_task_log_reads_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent(
        "a1",
        &host,
        &["--cpus", "1", "--mem", "512", "--ports", "41100-41110", "--log-max-bytes", "2000", "--log-max-files", "3"],
    );
    m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "rot").await;
    let offer = fw.offer_where("with 1 cpu", T, |o| o.unreserved.cpus >= 0.5).await;
    // ~30 kB over some seconds: many rotations of 2000-byte files.
    let cmd = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line-$i; \
               if [ $((i % 100)) -eq 0 ]; then sleep 0.1; fi; done; exec sleep 600";
    fw.accept(offer.id, vec![Operation::Launch { task: task("chatty", cmd) }]).await.expect("launch");
    fw.status("chatty", TaskState::Running, T).await;

    // Written out, and the current file back within the bound (the agent
    // checks every 250 ms): nothing changes any more.
    let sandbox =
        wait_for("the chatty task's sandbox", T, || async { agent_task_sandbox(&m.state_dir, "a1", "chatty") }).await;
    let stdout = sandbox.join("stdout");
    wait_for("the last line written and the file rotated within its bound", T, || {
        let (ok, last, _) = task_log(&m, &["chatty", "--lines", "1"]);
        let size = std::fs::metadata(&stdout).map(|md| md.len()).unwrap_or(u64::MAX);
        let r = (ok && last == "line-3000\n" && size <= 2000).then_some(());
        async move { r }
    })
    .await;

    // At most 3 files: stdout, stdout.1, stdout.2.
    let mut names: Vec<String> = std::fs::read_dir(&sandbox)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("stdout"))
        .collect();
    names.sort();
    assert_eq!(names, ["stdout", "stdout.1", "stdout.2"], "in {}", sandbox.display());

    // The last lines, across the current file and the rotated ones.
    let current = std::fs::read_to_string(&stdout).unwrap().lines().count();
    let want = current + 20;
    let (ok, out, e) = task_log(&m, &["chatty", "--lines", &want.to_string()]);
    assert!(ok, "{e}");
    let nums = line_numbers(&out);
    assert_eq!(nums.len(), want, "{out}");
    assert_eq!(nums.last(), Some(&3000));
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "lines out of order:\n{out}");
    // The whole log: what the kept files hold, oldest first, and never the
    // first lines (rotated away).
    let (ok, all, e) = task_log(&m, &["chatty"]);
    assert!(ok, "{e}");
    let nums = line_numbers(&all);
    assert!(nums.len() > want && nums[0] > 1, "{} lines from line-{}", nums.len(), nums[0]);
    assert!(nums.windows(2).all(|w| w[0] < w[1]) && nums.last() == Some(&3000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_log_returns_what_the_agent_logged() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), &[]).await;
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent("a1", &host, &["--cpus", "1", "--mem", "512", "--ports", "41200-41210"]);
    let agents = m.wait_agents(1).await;
    let mut fw = TestFramework::subscribe(m.client(), "agentlog").await;
    let offer = fw.offer_where("with cpus", T, |o| o.unreserved.cpus >= 0.5).await;
    fw.accept(offer.id, vec![Operation::Launch { task: task("noted", "exec sleep 600") }]).await.expect("launch");
    fw.status("noted", TaskState::Running, T).await;

    let agent_log = |args: &[&str]| {
        let out = Command::new(smack_bin())
            .args(["--master", &m.url, "--token", &m.token, "agent", "log"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run smack agent log");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // By host name and by id: the agent's own lines, kept in its work dir.
    let by_host = wait_for("the agent's log shows the launch", T, || {
        let (ok, out, _) = agent_log(&[&host]);
        let r = (ok && out.contains("registered with the master") && out.contains("task launched")).then_some(out);
        async move { r }
    })
    .await;
    assert!(by_host.lines().any(|l| l.contains("task launched") && l.contains("noted")), "{by_host}");
    let (ok, by_id, e) = agent_log(&[&agents[0].id, "--lines", "1"]);
    assert!(ok, "{e}");
    assert_eq!(by_id.lines().count(), 1, "{by_id}");
    let file = std::fs::read_to_string(m.state_dir.join("agents/a1/agent.log")).unwrap();
    assert!(file.contains("registered with the master"), "{file}");

    // An unknown agent: an error naming the known ones.
    let (ok, _, e) = agent_log(&["no-such-agent"]);
    assert!(!ok);
    assert!(e.contains("no agent no-such-agent") && e.contains(&host), "{e}");
}
