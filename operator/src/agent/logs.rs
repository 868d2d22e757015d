//! The agent's own small HTTP API: tasks' stdout and stderr, read from
//! their sandboxes, for `smack task log`. Every route needs the cluster token
//! (`Authorization: Bearer TOKEN`); without it the answer is 401.
//!
//! `GET /v1/tasks/{id}/log?stream=stdout|stderr&offset=N&lines=N`:
//! - `lines=N`: the last N lines;
//! - `offset=N`: everything from byte N on (what `--follow` polls with);
//! - neither: the whole file (at most its last [`MAX_READ`] bytes).
//!
//! The answer's `offset` is the byte offset of the end of what was returned.

use super::runtime::Agent;
use crate::protocol::{ApiError, TaskLog};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The most one answer carries; a follower reads the rest with `offset`.
pub const MAX_READ: u64 = 1 << 20;

/// Reads part of a log file: from `offset` (at most [`MAX_READ`] bytes), or
/// the last `lines` lines, or the whole file (its last [`MAX_READ`] bytes).
/// Returns the end offset of what was read and the text. A missing file is
/// empty (the task has not written yet).
pub fn read_log(path: &Path, offset: Option<u64>, lines: Option<usize>) -> std::io::Result<(u64, String)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, String::new())),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = match offset {
        // A file shorter than the offset was truncated: start over.
        Some(o) if o <= len => o,
        Some(_) => 0,
        None => len.saturating_sub(MAX_READ),
    };
    let end = (start + MAX_READ).min(len);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((end - start) as usize);
    f.take(end - start).read_to_end(&mut buf)?;
    let mut end = start + buf.len() as u64;
    if offset.is_some() {
        // Stop after the last complete UTF-8 character: the rest comes next time.
        let cut = utf8_complete_len(&buf);
        end -= (buf.len() - cut) as u64;
        buf.truncate(cut);
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if let (None, Some(n)) = (offset, lines) {
        text = last_lines(&text, n).to_string();
    }
    Ok((end, text))
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
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| constant_time_eq(t.trim().as_bytes(), agent.config().token.as_bytes()))
        .unwrap_or(false);
    if !ok {
        return error(StatusCode::UNAUTHORIZED, crate::Error::Unauthorized.to_string());
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// The agent's API router.
pub fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/tasks/{id}/log", get(task_log))
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

/// Serves the agent's API on `listener` until the future is dropped.
pub async fn serve(agent: Agent, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(agent)).await
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
}
