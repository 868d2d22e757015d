//! Health and readiness checks.
//!
//! [`run_once`] runs one [`Check`]: a shell command in the task's sandbox
//! with the task's env (exit 0 passes), a TCP connect, or an HTTP/1.1 GET
//! whose 2xx or 3xx status passes. [`CheckRunner`] runs a [`CheckSpec`]
//! periodically next to a task and reports changes on a channel.

use crate::agent::executor::task_env;
use crate::resources::{Check, CheckSpec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How much of a command check's output is kept in its message.
const OUTPUT_TAIL: usize = 1024;
/// How much of an HTTP response is read looking for the status line.
const MAX_STATUS_LINE: usize = 8192;
/// The shortest interval a runner uses.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The result of one check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub passed: bool,
    /// What happened, in words: exit code and output, connect error, status.
    pub message: String,
}

impl CheckOutcome {
    fn pass(message: impl Into<String>) -> Self {
        CheckOutcome { passed: true, message: message.into() }
    }
    fn fail(message: impl Into<String>) -> Self {
        CheckOutcome { passed: false, message: message.into() }
    }
}

/// Runs `check` once. `host` is the address Tcp and Http checks connect
/// to (the agent's); `sandbox` and `env` are the task's, for Command
/// checks. Nothing runs longer than `timeout`.
pub async fn run_once(
    check: &Check,
    host: &str,
    sandbox: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> CheckOutcome {
    match check {
        Check::Command { command } => run_command(command, sandbox, env, timeout).await,
        Check::Tcp { port } => run_tcp(host, *port, timeout).await,
        Check::Http { port, path } => run_http(host, *port, path, timeout).await,
    }
}

async fn run_command(command: &str, sandbox: &Path, env: &BTreeMap<String, String>, timeout: Duration) -> CheckOutcome {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(sandbox)
        .env_clear()
        .envs(task_env(env, sandbox))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CheckOutcome::fail(format!("cannot run check command in {}: {e}", sandbox.display())),
    };
    let pgid = child.id().map(|p| p as i32);
    let stdout = child.stdout.take().map(|o| tokio::spawn(read_tail(o)));
    let stderr = child.stderr.take().map(|e| tokio::spawn(read_tail(e)));
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // No check process outlives its run, including background children.
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    if waited.is_err() {
        let _ = child.wait().await;
    }
    let mut output = Vec::new();
    for reader in [stdout, stderr].into_iter().flatten() {
        if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_millis(200), reader).await {
            output.extend_from_slice(&bytes);
        }
    }
    let output = tail_text(&output);
    let with_output = |head: String| {
        if output.is_empty() {
            head
        } else {
            format!("{head}: {output}")
        }
    };
    match waited {
        Err(_) => CheckOutcome::fail(with_output(format!("command timed out after {timeout:?}"))),
        Ok(Err(e)) => CheckOutcome::fail(format!("waiting for check command: {e}")),
        Ok(Ok(status)) if status.success() => CheckOutcome::pass(with_output("command exited 0".to_string())),
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            let head = match (status.code(), status.signal()) {
                (Some(c), _) => format!("command exited {c}"),
                (None, Some(s)) => format!("command killed by signal {s}"),
                (None, None) => "command failed".to_string(),
            };
            CheckOutcome::fail(with_output(head))
        }
    }
}

/// Reads a pipe to its end, keeping the last [`OUTPUT_TAIL`] bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > OUTPUT_TAIL {
            kept.drain(..kept.len() - OUTPUT_TAIL);
        }
    }
    kept
}

fn tail_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    TcpStream::connect((host, port)).await
}

async fn run_tcp(host: &str, port: u16, timeout: Duration) -> CheckOutcome {
    let addr = authority(host, port);
    match tokio::time::timeout(timeout, connect(host, port)).await {
        Ok(Ok(_)) => CheckOutcome::pass(format!("connected to {addr}")),
        Ok(Err(e)) => CheckOutcome::fail(format!("cannot connect to {addr}: {e}")),
        Err(_) => CheckOutcome::fail(format!("connecting to {addr} timed out after {timeout:?}")),
    }
}

async fn run_http(host: &str, port: u16, path: &str, timeout: Duration) -> CheckOutcome {
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let url = format!("http://{}{path}", authority(host, port));
    match tokio::time::timeout(timeout, http_status(host, port, &path)).await {
        Err(_) => CheckOutcome::fail(format!("GET {url} timed out after {timeout:?}")),
        Ok(Err(e)) => CheckOutcome::fail(format!("GET {url}: {e}")),
        Ok(Ok((code, line))) if (200..400).contains(&code) => CheckOutcome::pass(format!("GET {url}: {line}")),
        Ok(Ok((_, line))) => CheckOutcome::fail(format!("GET {url}: {line}")),
    }
}

/// Sends a minimal GET and returns the status code and status line.
async fn http_status(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = connect(host, port).await.map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: smack-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        authority(host, port)
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending request: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            head.truncate(end);
            break;
        }
        if head.len() >= MAX_STATUS_LINE {
            return Err("no status line in the first 8 KiB of the response".to_string());
        }
        let n = stream.read(&mut buf).await.map_err(|e| format!("reading response: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).trim().to_string();
    match parse_status_line(&line) {
        Some(code) => Ok((code, line)),
        None if line.is_empty() => Err("connection closed without a response".to_string()),
        None => Err(format!("not an HTTP status line: {line:?}")),
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// Where a check runs: the agent's address and the task's sandbox and env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckContext {
    pub host: String,
    pub sandbox: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// A change worth telling: the pass/fail state changed, or the failures
/// reached `max_consecutive_failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvent {
    pub passed: bool,
    /// 0 when passed.
    pub consecutive_failures: u32,
    pub message: String,
}

/// Runs a check periodically on a tokio task. Dropping it (or [`stop`])
/// stops the checks; the event channel then closes.
///
/// The first run is immediate, then one every `interval_ms` (a run that
/// overruns delays the next). Failures during `grace_period_ms` after the
/// start are ignored; the first pass ends the grace period early.
///
/// [`stop`]: CheckRunner::stop
#[derive(Debug)]
pub struct CheckRunner {
    handle: JoinHandle<()>,
}

impl CheckRunner {
    /// Starts checking now; the grace period counts from now.
    pub fn spawn(spec: CheckSpec, ctx: CheckContext, events: mpsc::Sender<CheckEvent>) -> Self {
        Self::spawn_since(spec, ctx, events, Instant::now())
    }

    /// [`spawn`](CheckRunner::spawn) with a new channel: checks at `host`,
    /// in `sandbox` with `env`; returns the runner and its events.
    pub fn start(
        spec: CheckSpec,
        host: String,
        sandbox: PathBuf,
        env: BTreeMap<String, String>,
    ) -> (Self, mpsc::Receiver<CheckEvent>) {
        let (tx, rx) = mpsc::channel(16);
        (Self::spawn(spec, CheckContext { host, sandbox, env }, tx), rx)
    }

    /// Starts checking now; the grace period counts from `launched_at`
    /// (a task re-attached after an agent restart is long past it).
    pub fn spawn_since(
        spec: CheckSpec,
        ctx: CheckContext,
        events: mpsc::Sender<CheckEvent>,
        launched_at: Instant,
    ) -> Self {
        let handle = tokio::spawn(run_loop(spec, ctx, events, launched_at));
        CheckRunner { handle }
    }

    /// Stops the checks.
    pub fn stop(self) {}

    /// Whether the runner has ended (its receiver was dropped).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for CheckRunner {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn run_loop(spec: CheckSpec, ctx: CheckContext, events: mpsc::Sender<CheckEvent>, launched_at: Instant) {
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    let mut ticker = tokio::time::interval(Duration::from_millis(spec.interval_ms).max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tracker =
        Tracker::new(spec.max_consecutive_failures, launched_at + Duration::from_millis(spec.grace_period_ms));
    loop {
        ticker.tick().await;
        let outcome = run_once(&spec.check, &ctx.host, &ctx.sandbox, &ctx.env, timeout).await;
        tracing::trace!(passed = outcome.passed, "check: {}", outcome.message);
        if let Some(event) = tracker.observe(outcome, Instant::now()) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Counts consecutive failures and decides when to emit an event.
#[derive(Debug)]
struct Tracker {
    max_failures: u32,
    grace_until: Option<Instant>,
    last: Option<bool>,
    failures: u32,
}

impl Tracker {
    fn new(max_failures: u32, grace_until: Instant) -> Self {
        Tracker { max_failures: max_failures.max(1), grace_until: Some(grace_until), last: None, failures: 0 }
    }

    fn observe(&mut self, outcome: CheckOutcome, now: Instant) -> Option<CheckEvent> {
        if outcome.passed {
            self.grace_until = None;
            self.failures = 0;
            let changed = self.last != Some(true);
            self.last = Some(true);
            return changed.then_some(CheckEvent { passed: true, consecutive_failures: 0, message: outcome.message });
        }
        if self.grace_until.is_some_and(|g| now < g) {
            return None;
        }
        self.grace_until = None;
        self.failures = self.failures.saturating_add(1);
        let changed = self.last != Some(false);
        self.last = Some(false);
        (changed || self.failures == self.max_failures).then_some(CheckEvent {
            passed: false,
            consecutive_failures: self.failures,
            message: outcome.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const DEADLINE: Duration = Duration::from_secs(15);
    const TIMEOUT: Duration = Duration::from_secs(5);

    async fn once(check: Check, sandbox: &Path, env: &BTreeMap<String, String>) -> CheckOutcome {
        tokio::time::timeout(DEADLINE, run_once(&check, "127.0.0.1", sandbox, env, TIMEOUT))
            .await
            .expect("check did not finish")
    }

    fn cmd(c: &str) -> Check {
        Check::Command { command: c.into() }
    }

    #[tokio::test]
    async fn command_checks_pass_and_fail() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "").unwrap();
        let env = BTreeMap::from([("X".to_string(), "y".to_string())]);
        let ok = once(cmd("test \"$X\" = y && test -f marker && test \"$SMACK_SANDBOX\" = \"$PWD\""), dir.path(), &env)
            .await;
        assert!(ok.passed, "{ok:?}");
        let bad = once(cmd("echo broken >&2; exit 2"), dir.path(), &env).await;
        assert!(!bad.passed);
        assert_eq!(bad.message, "command exited 2: broken");
        let missing = once(cmd("true"), &dir.path().join("nope"), &env).await;
        assert!(!missing.passed);
    }

    #[tokio::test]
    async fn command_check_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let check = cmd("sleep 30 & sleep 30");
        let out = tokio::time::timeout(
            DEADLINE,
            run_once(&check, "127.0.0.1", dir.path(), &BTreeMap::new(), Duration::from_millis(200)),
        )
        .await
        .unwrap();
        assert!(!out.passed);
        assert!(out.message.contains("timed out"), "{}", out.message);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn tcp_checks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let ok = once(Check::Tcp { port }, dir.path(), &BTreeMap::new()).await;
        assert!(ok.passed, "{ok:?}");
        drop(listener);
        // A socket bound but not listening holds a port nobody else can take
        // while the test runs, so the refusal does not race other tests.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = held.local_addr().unwrap().port();
        let closed = once(Check::Tcp { port }, dir.path(), &BTreeMap::new()).await;
        assert!(!closed.passed);
        assert!(closed.message.contains("cannot connect"), "{}", closed.message);
    }

    /// Answers every request with `status`; sends request lines on `seen`.
    async fn http_server(status: &'static str, seen: mpsc::UnboundedSender<String>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 512];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&req);
                    let _ = seen.send(text.lines().next().unwrap_or("").to_string());
                    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn http_checks() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let port = http_server("200 OK", tx.clone()).await;
        let ok = once(Check::Http { port, path: "/health".into() }, dir.path(), &BTreeMap::new()).await;
        assert!(ok.passed, "{ok:?}");
        assert!(ok.message.ends_with("HTTP/1.1 200 OK"), "{}", ok.message);
        assert_eq!(rx.recv().await.unwrap(), "GET /health HTTP/1.1");

        let port = http_server("302 Found", tx.clone()).await;
        assert!(once(Check::Http { port, path: "x".into() }, dir.path(), &BTreeMap::new()).await.passed);
        assert_eq!(rx.recv().await.unwrap(), "GET /x HTTP/1.1");

        let port = http_server("500 Internal Server Error", tx).await;
        let bad = once(Check::Http { port, path: "/".into() }, dir.path(), &BTreeMap::new()).await;
        assert!(!bad.passed);
        assert!(bad.message.contains("500"), "{}", bad.message);

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!once(Check::Http { port, path: "/".into() }, dir.path(), &BTreeMap::new()).await.passed);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 x"), None);
        assert_eq!(authority("::1", 80), "[::1]:80");
    }

    fn spec(check: Check, max: u32, grace_ms: u64) -> CheckSpec {
        CheckSpec { check, interval_ms: 20, timeout_ms: 5000, max_consecutive_failures: max, grace_period_ms: grace_ms }
    }

    fn ctx(dir: &Path) -> CheckContext {
        CheckContext { host: "127.0.0.1".into(), sandbox: dir.to_path_buf(), env: BTreeMap::new() }
    }

    async fn next(rx: &mut mpsc::Receiver<CheckEvent>) -> CheckEvent {
        tokio::time::timeout(DEADLINE, rx.recv()).await.expect("no event in time").expect("runner ended")
    }

    #[tokio::test]
    async fn runner_reports_after_max_consecutive_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let runner = CheckRunner::spawn(spec(cmd("exit 1"), 3, 0), ctx(dir.path()), tx);
        let first = next(&mut rx).await;
        assert_eq!((first.passed, first.consecutive_failures), (false, 1));
        assert_eq!(first.message, "command exited 1");
        let third = next(&mut rx).await;
        assert_eq!((third.passed, third.consecutive_failures), (false, 3));
        drop(runner);
        // Aborting the runner drops its sender: the channel closes.
        let end = tokio::time::timeout(DEADLINE, async { while rx.recv().await.is_some() {} }).await;
        assert!(end.is_ok(), "runner kept running after drop");
    }

    #[tokio::test]
    async fn runner_reports_state_changes() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("flag");
        let (tx, mut rx) = mpsc::channel(16);
        let _runner = CheckRunner::spawn(spec(cmd("test -f flag"), 1000, 0), ctx(dir.path()), tx);
        assert!(!next(&mut rx).await.passed);
        std::fs::write(&flag, "").unwrap();
        let up = next(&mut rx).await;
        assert_eq!((up.passed, up.consecutive_failures), (true, 0));
        std::fs::remove_file(&flag).unwrap();
        let down = next(&mut rx).await;
        assert_eq!((down.passed, down.consecutive_failures), (false, 1));
    }

    #[tokio::test]
    async fn runner_ignores_failures_in_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let _runner = CheckRunner::spawn(spec(cmd("exit 1"), 2, 300), ctx(dir.path()), tx);
        let first = next(&mut rx).await;
        assert!(started.elapsed() >= grace);
        assert_eq!((first.passed, first.consecutive_failures), (false, 1));
        assert_eq!(next(&mut rx).await.consecutive_failures, 2);
    }

    #[test]
    fn tracker_rules() {
        let t0 = Instant::now();
        let fail = || CheckOutcome::fail("no");
        let pass = || CheckOutcome::pass("yes");
        let mut t = Tracker::new(2, t0 + Duration::from_secs(10));
        assert!(t.observe(fail(), t0).is_none(), "failure in grace");
        assert!(t.observe(pass(), t0).unwrap().passed);
        assert!(t.observe(pass(), t0).is_none(), "no change");
        // The pass ended the grace period: failures count now.
        assert_eq!(t.observe(fail(), t0).unwrap().consecutive_failures, 1);
        assert_eq!(t.observe(fail(), t0).unwrap().consecutive_failures, 2);
        assert!(t.observe(fail(), t0).is_none(), "past max, no change");
        assert!(t.observe(pass(), t0).unwrap().passed);
    }
}
