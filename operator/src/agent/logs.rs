//! Logs on an agent: rotation with a size bound, reading across the
//! rotated files, and the agent's small HTTP API that serves them.
//!
//! **Rotation.** A task's `SANDBOX/stdout` and `SANDBOX/stderr` are kept as
//! `stdout`, `stdout.1` … `stdout.(N-1)` (newest first) of about
//! [`LogRotation::max_bytes`] each, N = [`LogRotation::max_files`]. The task
//! writes its output file through a descriptor opened with `O_APPEND` (see
//! [`super::executor`]) that outlives the agent, so the agent rotates by
//! *copy and truncate*: it checks the files every [`ROTATE_EVERY`] and moves
//! one that grew past the bound to `.1` (shifting the older ones, dropping
//! the oldest), then truncates it; the task's next write lands at the start
//! of the empty file. Output written during the copy itself can be lost, and
//! a file can overshoot the bound by what the task writes between checks.
//! The agent's own log ([`RotatingWriter`]) is rotated exactly, by renaming,
//! since the agent writes it itself.
//!
//! **Offsets.** Every log has a logical byte offset that never goes back:
//! the bytes rotated out so far (kept in `.NAME.rotated` next to the file)
//! plus the position in the current file. A reader that follows with
//! `offset=N` thus reads on across a rotation, from the rotated file where
//! it left off. Reading and rotating take one lock, so a reader never sees
//! a half-done rotation.
//!
//! **API.** Every route needs the cluster token (`Authorization: Bearer
//! TOKEN`); without it the answer is 401.
//!
//! `GET /v1/tasks/{id}/log?stream=stdout|stderr&offset=N&lines=N` and
//! `GET /v1/log?offset=N&lines=N` (the agent's own log):
//! - `lines=N`: the last N lines;
//! - `offset=N`: what follows logical offset N (at most [`MAX_READ`] bytes);
//! - neither: the whole log (at most its last [`MAX_READ`] bytes).
//!
//! The answer's `offset` is the logical offset of the end of what was
//! returned. `/metrics` (no token) serves the agent's registry when it was
//! given one ([`serve_with_metrics`]).

use super::runtime::Agent;
use crate::metrics::SharedRegistry;
use crate::protocol::{ApiError, TaskLog};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The most one answer carries; a follower reads the rest with `offset`.
pub const MAX_READ: u64 = 1 << 20;

/// How often the agent looks at its live tasks' output files.
pub const ROTATE_EVERY: Duration = Duration::from_millis(250);

/// Serializes rotations with reads in this process, so that a reader sees
/// either the files before a rotation or after it. Nothing logs while
/// holding it (the agent's own log writer takes it to rotate).
static ROTATION: Mutex<()> = Mutex::new(());

fn rotation_lock() -> std::sync::MutexGuard<'static, ()> {
    ROTATION.lock().unwrap_or_else(|p| p.into_inner())
}

/// How big a log may grow: `max_files` files (the current one and
/// `max_files - 1` rotated ones) of about `max_bytes` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub max_bytes: u64,
    pub max_files: u32,
}

impl Default for LogRotation {
    /// 10 MiB × 5 files.
    fn default() -> Self {
        LogRotation { max_bytes: 10 << 20, max_files: 5 }
    }
}

impl LogRotation {
    /// Checks the bounds: at least one byte and one file.
    pub fn new(max_bytes: u64, max_files: u32) -> Result<LogRotation, String> {
        if max_bytes == 0 {
            return Err("the log size bound must be at least 1 byte".into());
        }
        if max_files == 0 {
            return Err("at least 1 log file must be kept".into());
        }
        Ok(LogRotation { max_bytes, max_files })
    }
}

/// `PATH.n`: the n-th rotated file (1 is the newest).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Where the bytes rotated out of `path` so far are counted.
fn base_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.rotated"))
}

fn read_base(path: &Path) -> u64 {
    std::fs::read_to_string(base_path(path)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_base(path: &Path, base: u64) -> std::io::Result<()> {
    let p = base_path(path);
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, base.to_string())?;
    std::fs::rename(&tmp, &p)
}

fn len_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Drops the oldest rotated file and renames `.n` to `.n+1`, making room
/// for a new `.1`. Files past the bound (left by a larger earlier bound)
/// go too.
fn shift_rotated(path: &Path, rot: LogRotation) -> std::io::Result<()> {
    let keep = rot.max_files.saturating_sub(1);
    let mut n = keep.max(1);
    while len_of(&rotated_path(path, n)).is_some() {
        std::fs::remove_file(rotated_path(path, n))?;
        n += 1;
    }
    for n in (1..keep).rev() {
        let from = rotated_path(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated_path(path, n + 1))?;
        }
    }
    Ok(())
}

/// Rotates `path` by copy and truncate if it holds more than
/// `rot.max_bytes`: for files another process writes with `O_APPEND` (a
/// task's output). Returns whether it rotated.
pub fn rotate_copy_truncate(path: &Path, rot: LogRotation) -> std::io::Result<bool> {
    let _lock = rotation_lock();
    let Some(len) = len_of(path) else { return Ok(false) };
    if len <= rot.max_bytes {
        return Ok(false);
    }
    shift_rotated(path, rot)?;
    let copied = if rot.max_files > 1 { std::fs::copy(path, rotated_path(path, 1))? } else { len };
    // Counted before the truncate: a crash in between repeats nothing and
    // at worst skips the offsets of what the copy got.
    write_base(path, read_base(path) + copied)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Rotates `path` by renaming it to `.1` (shifting the older ones): for a
/// file this process writes itself, which it reopens afterwards.
fn rotate_rename(path: &Path, rot: LogRotation) -> std::io::Result<()> {
    let _lock = rotation_lock();
    let len = len_of(path).unwrap_or(0);
    shift_rotated(path, rot)?;
    if rot.max_files > 1 {
        std::fs::rename(path, rotated_path(path, 1))?;
    } else {
        std::fs::remove_file(path)?;
    }
    write_base(path, read_base(path) + len)
}

/// A log file this process writes itself (the agent's own `tracing` log),
/// rotated by renaming once a write would take it past the bound. Wrap it
/// in a `Mutex` to use it as a `tracing_subscriber` writer.
#[derive(Debug)]
pub struct RotatingWriter {
    path: PathBuf,
    rot: LogRotation,
    file: Option<std::fs::File>,
    len: u64,
}

impl RotatingWriter {
    /// Opens (appends to) `path`, creating its directory.
    pub fn open(path: impl Into<PathBuf>, rot: LogRotation) -> std::io::Result<RotatingWriter> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut w = RotatingWriter { path, rot, file: None, len: 0 };
        w.reopen()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.len = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }
}

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.len > 0 && self.len + buf.len() as u64 > self.rot.max_bytes {
            self.file = None;
            rotate_rename(&self.path, self.rot)?;
            self.reopen()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let f = self.file.as_mut().expect("opened above");
        let n = f.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// One file of a log and the logical offset it starts at.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    path: PathBuf,
    start: u64,
    len: u64,
}

/// The files of the log at `path`, oldest first, with their logical
/// offsets; the last one is the current file (possibly empty).
fn segments(path: &Path) -> Vec<Segment> {
    let base = read_base(path);
    let mut out = vec![Segment { path: path.to_path_buf(), start: base, len: len_of(path).unwrap_or(0) }];
    let mut start = base;
    let mut n = 1;
    while let Some(len) = len_of(&rotated_path(path, n)) {
        start = start.saturating_sub(len);
        out.push(Segment { path: rotated_path(path, n), start, len });
        n += 1;
    }
    out.reverse();
    out
}

fn read_range(path: &Path, from: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads part of a log (the file at `path` and its rotated files): from
/// logical offset `offset` (at most [`MAX_READ`] bytes, from one file), or
/// the last `lines` lines, or the whole log (its last [`MAX_READ`] bytes).
/// Returns the logical offset of the end of what was read and the text. A
/// missing file is empty (the task has not written yet).
pub fn read_log(path: &Path, offset: Option<u64>, lines: Option<usize>) -> std::io::Result<(u64, String)> {
    let _lock = rotation_lock();
    let segs = segments(path);
    let first = segs.first().map(|s| s.start).unwrap_or(0);
    let current = segs.last().expect("the current file is always listed").clone();
    let end = current.start + current.len;
    let Some(offset) = offset else {
        // The tail of the whole log, across files.
        let mut want = MAX_READ;
        let mut parts = Vec::new();
        for seg in segs.iter().rev() {
            if want == 0 {
                break;
            }
            let take = seg.len.min(want);
            parts.push(read_range(&seg.path, seg.len - take, take)?);
            want -= take;
        }
        let buf: Vec<u8> = parts.into_iter().rev().flatten().collect();
        let text = String::from_utf8_lossy(&buf);
        let text = match lines {
            Some(n) => last_lines(&text, n).to_string(),
            None => text.into_owned(),
        };
        return Ok((end, text));
    };
    let offset = if offset > end {
        // Past the end: the file was truncated by someone else; start over
        // at the current file.
        current.start
    } else {
        // Before the oldest kept byte: rotated away; start at the oldest.
        offset.max(first)
    };
    let Some(seg) = segs.iter().find(|s| offset < s.start + s.len) else {
        return Ok((end, String::new()));
    };
    let from = offset - seg.start;
    let mut buf = read_range(&seg.path, from, (seg.len - from).min(MAX_READ))?;
    // Stop after the last complete UTF-8 character: the rest comes next time.
    buf.truncate(utf8_complete_len(&buf));
    Ok((offset + buf.len() as u64, String::from_utf8_lossy(&buf).into_owned()))
}

/// Rotates the output files of the agent's live tasks every
/// [`ROTATE_EVERY`], until the returned handle is aborted.
pub fn spawn_rotation(agent: Agent) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let rot = agent.config().log_rotation;
        let mut tick = tokio::time::interval(ROTATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sandboxes: Vec<PathBuf> = agent
                .checkpoint()
                .tasks
                .values()
                .filter(|t| !t.state.is_terminal())
                .map(|t| t.sandbox.clone())
                .collect();
            if sandboxes.is_empty() {
                continue;
            }
            let done = tokio::task::spawn_blocking(move || {
                let mut failed = Vec::new();
                for sandbox in sandboxes {
                    for stream in ["stdout", "stderr"] {
                        let path = sandbox.join(stream);
                        if let Err(e) = rotate_copy_truncate(&path, rot) {
                            failed.push((path, e));
                        }
                    }
                }
                failed
            })
            .await;
            for (path, e) in done.unwrap_or_default() {
                tracing::warn!(file = %path.display(), error = %e, "could not rotate a task log");
            }
        }
    })
}

/// The length of `buf` without an incomplete UTF-8 sequence at its end.
fn utf8_complete_len(buf: &[u8]) -> usize {
    match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    }
}

/// The last `n` lines of `text` (a final newline does not start a line).
pub fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.bytes().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// The agent's answer to `GET /v1/log`: part of its own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLog {
    /// The agent's host name.
    pub hostname: String,
    /// The logical offset of the end of `data`: pass it back as `offset`.
    pub offset: u64,
    pub data: String,
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    lines: Option<usize>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

async fn require_token(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    let ok = crate::protocol::bearer_matches(req.headers(), &agent.config().token);
    if !ok {
        return error(StatusCode::UNAUTHORIZED, crate::Error::Unauthorized.to_string());
    }
    next.run(req).await
}

async fn task_log(State(agent): State<Agent>, UrlPath(id): UrlPath<String>, Query(q): Query<LogQuery>) -> Response {
    let stream = q.stream.unwrap_or_else(|| "stdout".into());
    if stream != "stdout" && stream != "stderr" {
        return error(StatusCode::BAD_REQUEST, format!("stream {stream:?}: expected stdout or stderr"));
    }
    let Some(sandbox) = agent.sandbox_of(&id) else {
        return error(StatusCode::NOT_FOUND, format!("task {id} has no sandbox on this agent"));
    };
    let path = sandbox.join(&stream);
    let (offset, lines) = (q.offset, q.lines);
    let read = tokio::task::spawn_blocking(move || read_log(&path, offset, lines)).await;
    match read {
        Ok(Ok((offset, data))) => Json(TaskLog { task_id: id, stream, offset, data }).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the {stream} of task {id}: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/log`: the agent's own log.
async fn agent_log(State(agent): State<Agent>, Query(q): Query<LogQuery>) -> Response {
    let hostname = agent.config().hostname.clone();
    let Some(path) = agent.config().log_file.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("agent {hostname} keeps no log file (it was started without one; its log went to stderr)"),
        );
    };
    let (offset, lines) = (q.offset, q.lines);
    let read = tokio::task::spawn_blocking(move || read_log(&path, offset, lines)).await;
    match read {
        Ok(Ok((offset, data))) => Json(AgentLog { hostname, offset, data }).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the log of agent {hostname}: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The agent's API router.
pub fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/tasks/{id}/log", get(task_log))
        .route("/v1/log", get(agent_log))
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

/// Serves the agent's API on `listener` until the future is dropped.
pub async fn serve(agent: Agent, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_with_metrics(agent, listener, None).await
}

/// [`serve`], and `registry` at `/metrics` without a token (see
/// [`crate::metrics`]) when given.
pub async fn serve_with_metrics(
    agent: Agent,
    listener: tokio::net::TcpListener,
    registry: Option<SharedRegistry>,
) -> std::io::Result<()> {
    let mut app = router(agent);
    if let Some(r) = registry {
        app = app.merge(crate::metrics::router(r));
    }
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_and_offsets() {
        let dir = std::env::temp_dir().join(format!("smack-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("stdout");
        assert_eq!(read_log(&p, None, Some(3)).unwrap(), (0, String::new()));
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(read_log(&p, None, Some(1)).unwrap(), (6, "c\n".into()));
        assert_eq!(read_log(&p, None, Some(2)).unwrap(), (6, "b\nc\n".into()));
        assert_eq!(read_log(&p, None, Some(9)).unwrap(), (6, "a\nb\nc\n".into()));
        assert_eq!(read_log(&p, None, None).unwrap(), (6, "a\nb\nc\n".into()));
        assert_eq!(read_log(&p, Some(2), None).unwrap(), (6, "b\nc\n".into()));
        assert_eq!(read_log(&p, Some(6), None).unwrap(), (6, String::new()));
        // Truncated under the follower: start over.
        assert_eq!(read_log(&p, Some(60), None).unwrap(), (6, "a\nb\nc\n".into()));
        // Half a character at the end waits for the next read.
        std::fs::write(&p, [b'x', 0xc3]).unwrap();
        assert_eq!(read_log(&p, Some(0), None).unwrap(), (1, "x".into()));
        assert_eq!(last_lines("no newline", 1), "no newline");
        assert_eq!(last_lines("a\nb", 1), "b");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rot(max_bytes: u64, max_files: u32) -> LogRotation {
        LogRotation::new(max_bytes, max_files).unwrap()
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Every file of the log at `path`, oldest first, with its text.
    fn files(path: &Path) -> Vec<String> {
        segments(path).iter().map(|s| std::fs::read_to_string(&s.path).unwrap_or_default()).collect()
    }

    /// Reads the whole log from `offset` on, as a follower does.
    fn follow(path: &Path, mut offset: u64) -> (u64, String) {
        let mut out = String::new();
        loop {
            let (next, text) = read_log(path, Some(offset), None).unwrap();
            if text.is_empty() {
                return (next, out);
            }
            out.push_str(&text);
            offset = next;
        }
    }

    #[test]
    fn bounds_are_checked() {
        assert!(LogRotation::new(0, 3).unwrap_err().contains("1 byte"));
        assert!(LogRotation::new(10, 0).unwrap_err().contains("1 log file"));
        assert_eq!(rotated_path(Path::new("/s/stdout"), 2), Path::new("/s/stdout.2"));
        assert_eq!(base_path(Path::new("/s/stdout")), Path::new("/s/.stdout.rotated"));
    }

    #[test]
    fn copy_truncate_keeps_at_most_the_bound_and_reads_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stdout");
        let r = rot(10, 3);
        assert!(!rotate_copy_truncate(&p, r).unwrap(), "a missing file is not rotated");
        append(&p, "a1\na2\na3\na4\n");
        assert!(rotate_copy_truncate(&p, r).unwrap());
        assert_eq!(files(&p), ["a1\na2\na3\na4\n", ""]);
        append(&p, "b1\nb2\n");
        assert!(!rotate_copy_truncate(&p, r).unwrap(), "6 bytes are within the bound");
        append(&p, "b3\nb4\n");
        assert!(rotate_copy_truncate(&p, r).unwrap());
        append(&p, "c1\nc2\nc3\nc4\n");
        assert!(rotate_copy_truncate(&p, r).unwrap());
        append(&p, "d1\n");
        // The oldest file went: the current one and two rotated ones remain.
        assert_eq!(files(&p), ["b1\nb2\nb3\nb4\n", "c1\nc2\nc3\nc4\n", "d1\n"]);
        assert!(!rotated_path(&p, 3).exists());
        // 12 + 12 + 12 bytes rotated out, 3 in the current file.
        assert_eq!(read_log(&p, None, None).unwrap(), (39, "b1\nb2\nb3\nb4\nc1\nc2\nc3\nc4\nd1\n".into()));
        assert_eq!(read_log(&p, None, Some(3)).unwrap(), (39, "c3\nc4\nd1\n".into()));
        assert_eq!(read_log(&p, None, Some(1)).unwrap(), (39, "d1\n".into()));
        // A follower at offset 15 (inside the b file) reads on across files.
        assert_eq!(follow(&p, 15), (39, "b2\nb3\nb4\nc1\nc2\nc3\nc4\nd1\n".into()));
        // One whose offset was rotated away starts at the oldest kept byte.
        assert_eq!(follow(&p, 0), (39, "b1\nb2\nb3\nb4\nc1\nc2\nc3\nc4\nd1\n".into()));
        // One past the end (the file was replaced under it) starts at the current file.
        assert_eq!(follow(&p, 1000), (39, "d1\n".into()));
        assert_eq!(read_log(&p, Some(39), None).unwrap(), (39, String::new()));
        // A smaller bound drops the files past it on the next rotation.
        append(&p, "e1\ne2\ne3\ne4\n");
        assert!(rotate_copy_truncate(&p, rot(10, 2)).unwrap());
        assert_eq!(files(&p), ["d1\ne1\ne2\ne3\ne4\n", ""]);
    }

    #[test]
    fn one_file_means_truncate_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stderr");
        append(&p, "0123456789abc\n");
        assert!(rotate_copy_truncate(&p, rot(5, 1)).unwrap());
        append(&p, "x\n");
        assert_eq!(files(&p), ["x\n"]);
        assert_eq!(read_log(&p, None, None).unwrap(), (16, "x\n".into()));
        assert_eq!(follow(&p, 3), (16, "x\n".into()));
    }

    #[test]
    fn the_writer_rotates_by_renaming_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logs/agent.log");
        let mut w = RotatingWriter::open(&p, rot(64, 4)).unwrap();
        let mut all = String::new();
        for i in 0..100 {
            let line = format!("line {i:03}\n");
            w.write_all(line.as_bytes()).unwrap();
            all.push_str(&line);
        }
        w.flush().unwrap();
        let kept = files(&p);
        assert_eq!(kept.len(), 4, "{kept:?}");
        for f in &kept {
            assert!(f.len() <= 64, "{f:?}");
            assert!(f.ends_with('\n'), "whole lines per file: {f:?}");
        }
        assert_eq!(kept.concat(), all[all.len() - kept.concat().len()..]);
        assert_eq!(read_log(&p, None, Some(2)).unwrap(), (900, "line 098\nline 099\n".into()));
        let (end, text) = follow(&p, 800);
        assert_eq!((end, text.as_str()), (900, &all[800..]));
        // Reopening appends and keeps counting.
        drop(w);
        let mut w = RotatingWriter::open(&p, rot(64, 4)).unwrap();
        w.write_all(b"again\n").unwrap();
        assert_eq!(read_log(&p, None, Some(1)).unwrap(), (906, "again\n".into()));
    }
}
