//! The one HTTP client layer of smack's APIs: the master ([`MasterClient`]),
//! a service scheduler ([`SchedulerClient`]) and an agent ([`AgentClient`]).
//!
//! All three are built on one [`Api`]: a base URL, the cluster token sent as
//! a bearer token on every call, paths built from segments (each
//! percent-encoded by [`encode_segment`]), and one way of reading an error
//! answer (an [`ApiError`] body, else the text) into [`Error::Api`]
//! (`401` is [`Error::Unauthorized`]). Agents, frameworks and the CLI use
//! these clients; nothing else in smack speaks HTTP to a smack API.
//!
//! A scheduler is reached directly at its own API URL, or through the
//! master's forward (`/v1/frameworks/ID/api/…`, see
//! [`MasterClient::scheduler_of`]).

mod agent;
mod master;
mod scheduler;

pub use agent::AgentClient;
pub use master::{EventStream, MasterClient};
pub use scheduler::SchedulerClient;

use crate::protocol::ApiError;
use crate::{Error, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// What a path segment may hold unencoded: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes one path segment (a task id, a pod or plan name, an
/// agent's host name): everything but `A-Z a-z 0-9 - _ . ~`.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `/a/b/c` from segments, each encoded.
pub fn path(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{}", encode_segment(s))).collect()
}

/// One HTTP API at a base URL, called with the cluster token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The whole-call limit, when there is one.
    timeout: Option<Duration>,
    /// What answers at `base`, for errors: `master`, `scheduler`, `agent`.
    peer: &'static str,
}

impl Api {
    /// An API at `base` (e.g. `http://127.0.0.1:5050`), called with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>, peer: &'static str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client without TLS always builds");
        Api { base: base.into().trim_end_matches('/').to_string(), token: token.into(), http, timeout: None, peer }
    }

    /// The same API with every call limited to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same token and HTTP client at another base URL.
    pub fn at(&self, base: impl Into<String>, peer: &'static str) -> Api {
        Api { base: base.into().trim_end_matches('/').to_string(), peer, ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The full URL of `path` (already encoded, see [`path`]).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `path` with the token (and the timeout, if any).
    pub fn request(&self, method: reqwest::Method, path: &str) -> (reqwest::RequestBuilder, String) {
        let url = self.url(path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        (req, url)
    }

    /// A request to `path` with the token and no overall time limit (a
    /// stream of events, open as long as the peer keeps it).
    pub fn request_open(&self, method: reqwest::Method, path: &str) -> (reqwest::RequestBuilder, String) {
        let url = self.url(path);
        (self.http.request(method, &url).bearer_auth(&self.token), url)
    }

    /// The transport error of a call to `url`.
    fn unreachable(&self, url: String, source: reqwest::Error) -> Error {
        match self.peer {
            "master" => Error::Http { url, source },
            peer => Error::Other(format!("cannot reach the {peer} at {}: {source}", self.base)),
        }
    }

    /// Sends a request; a non-success answer becomes [`Error::Api`] (or
    /// [`Error::Unauthorized`]) with the peer's message.
    pub async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|source| self.unreachable(url.to_string(), source))?;
        check(resp).await
    }

    /// `method path` with an optional JSON body; the answer decoded as `T`.
    pub async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let (mut req, url) = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(req, &url).await?;
        let bytes = resp.bytes().await.map_err(|source| self.unreachable(url.clone(), source))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("bad answer from the {} at {url}: {e}", self.peer)))
    }

    /// `GET path`, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<T, ()>(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, the answer decoded as `T`.
    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `POST path` without a body, the answer decoded as `T`.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<T, ()>(reqwest::Method::POST, path, None).await
    }

    /// `POST path` with a JSON body, the answer dropped.
    pub async fn post_unit<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<()> {
        let (req, url) = self.request(reqwest::Method::POST, path);
        self.send(req.json(body), &url).await.map(drop)
    }
}

/// A success answer as it is; an error answer as [`Error::Api`] with the
/// message of its [`ApiError`] body (or the body's text).
pub async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Unauthorized);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(Error::Api { status: status.as_u16(), message: error_message(text) })
}

/// The message of an error answer's body: its [`ApiError`], else the text.
pub fn error_message(body: String) -> String {
    serde_json::from_str::<ApiError>(&body).map(|e| e.error).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("127.0.1.1"), "127.0.1.1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("broker-0__server~x"), "broker-0__server~x");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(path(&["v1", "tasks", "a/b", "log"]), "/v1/tasks/a%2Fb/log");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(error_message(r#"{"error":"no pod x"}"#.into()), "no pod x");
        assert_eq!(error_message("plain text".into()), "plain text");
    }

    #[test]
    fn bases_lose_their_trailing_slash() {
        let api = Api::new("http://h:1/", "t", "master");
        assert_eq!(api.url("/v1/state"), "http://h:1/v1/state");
        assert_eq!(api.at("http://h:2/x/", "scheduler").url("/v1/pods"), "http://h:2/x/v1/pods");
    }
}
