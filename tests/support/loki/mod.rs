//! A local Loki API test server.
//!
//! [`LokiServer::start`] serves the read path of Loki's HTTP API on
//! `127.0.0.1:0` from log entries held in memory (given up front, loaded from a
//! push-format JSON file with [`LokiServer::start_from_file`], or added later with
//! [`LokiServer::push`] or `POST /loki/api/v1/push`):
//!
//! * `GET /loki/api/v1/query_range`: `query`, `start` (inclusive), `end`
//!   (exclusive), `limit` (default 100, at most [`LokiServer::set_max_limit`],
//!   5000 by default, like Loki's `max_entries_limit_per_query`) and `direction`
//!   (`forward`, or `backward`, the default). The `limit` entries nearest to the
//!   start (forward) or end (backward) are answered as `streams`, values in the
//!   query's direction. Times are parsed as Loki does: nanoseconds, seconds when
//!   ten digits or fewer, fractional seconds, or RFC 3339.
//! * `GET /loki/api/v1/labels`, `GET /loki/api/v1/label/<name>/values`,
//!   `GET /loki/api/v1/series?match[]=...` (optionally limited by `start`/`end`).
//! * `GET /loki/api/v1/tail` (WebSocket): replays the latest `limit` entries from
//!   `start` on, in frames of [`LokiServer::set_tail_frame_size`] entries, then
//!   sends each entry pushed later in a frame of its own, and
//!   [`LokiServer::push_dropped`] notices as `dropped_entries`.
//! * `POST /loki/api/v1/push` with Loki's JSON push payload.
//!
//! Queries are a small LogQL subset: a stream selector with `=`, `!=`, `=~`, `!~`
//! matchers, followed by line filters `|=`, `!=`, `|~`, `!~`. Anything else is a
//! 400 with a Loki-style `parse error at line 1, col N: ...` message.
//!
//! Faults are injected with [`LokiServer::set_fault`]; [`LokiServer::require_bearer`]
//! and [`LokiServer::require_tenant`] make the server answer 401 to requests
//! without the right `Authorization` or `X-Scope-OrgID`. Every request is
//! recorded ([`LokiServer::requests`]) with the headers it carried.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use regex::Regex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

mod api;
use api::*;
mod tail;
use tail::*;
mod logql;
pub use logql::*;

/// Labels of a stream.
pub type Labels = BTreeMap<String, String>;

/// One log entry the server holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LokiEntry {
    pub labels: Labels,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub line: String,
}

impl LokiEntry {
    pub fn new(labels: &[(&str, &str)], ts_ns: i64, line: impl Into<String>) -> Self {
        Self { labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ts_ns, line: line.into() }
    }
}

/// Parses Loki's JSON push payload:
/// `{"streams":[{"stream":{labels},"values":[["<ns>","<line>"],...]}]}`.
pub fn entries_from_push_json(text: &str) -> Result<Vec<LokiEntry>> {
    let payload: Value = serde_json::from_str(text).context("push payload is not JSON")?;
    let Some(streams) = payload.get("streams").and_then(Value::as_array) else {
        bail!("push payload has no \"streams\" array");
    };
    let mut out = Vec::new();
    for (i, stream) in streams.iter().enumerate() {
        let labels: Labels = serde_json::from_value(stream.get("stream").cloned().unwrap_or_else(|| json!({})))
            .with_context(|| format!("streams[{i}].stream is not a label map"))?;
        let values =
            stream.get("values").and_then(Value::as_array).with_context(|| format!("streams[{i}] has no values"))?;
        for (j, v) in values.iter().enumerate() {
            let ts = v.get(0).and_then(Value::as_str);
            let line = v.get(1).and_then(Value::as_str);
            let (Some(ts), Some(line)) = (ts, line) else {
                bail!("streams[{i}].values[{j}] is not [\"<ns>\", \"<line>\"]");
            };
            let ts_ns = ts.parse::<i64>().with_context(|| format!("streams[{i}].values[{j}]: bad timestamp {ts:?}"))?;
            out.push(LokiEntry { labels: labels.clone(), ts_ns, line: line.to_string() });
        }
    }
    Ok(out)
}

/// Renders entries as a push payload (the format [`entries_from_push_json`] reads).
pub fn push_json(entries: &[LokiEntry]) -> String {
    let refs: Vec<&LokiEntry> = entries.iter().collect();
    json!({"streams": streams_json(&refs)}).to_string()
}

/// A fault for [`LokiServer::set_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LokiFault {
    /// Answer 400 with `message` (plain text, like Loki) to every `query_range`
    /// and tail request whose `query` is exactly `query`, until cleared.
    BadQuery { query: String, message: String },
    /// Answer the next `times` API requests (tail handshakes included) with 429
    /// and `Retry-After: retry_after_secs`.
    RateLimited { retry_after_secs: u64, times: usize },
    /// Answer the next `times` API requests with 500.
    ServerError { times: usize },
    /// Answer the next `times` JSON answers with the first half of the body
    /// (status 200, valid HTTP, truncated JSON).
    TruncatedBody { times: usize },
    /// Drop the next `times` tail connections abruptly (no close frame) after
    /// they were sent `after_frames` frames.
    DropTail { after_frames: usize, times: usize },
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct LokiRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// The `X-Scope-OrgID` header.
    pub tenant: Option<String>,
    /// Whether it asked for a WebSocket upgrade.
    pub websocket: bool,
    /// Status answered (101 for an accepted WebSocket).
    pub status: u16,
}

impl LokiRequest {
    /// Decoded query parameters, repeated ones included.
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_params(self.query.as_deref())
    }

    /// The first value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_params().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

#[derive(Clone, Debug)]
enum Live {
    Entry(LokiEntry),
    Dropped(Vec<(Labels, i64)>),
}

struct Inner {
    entries: Vec<LokiEntry>,
    requests: Vec<LokiRequest>,
    bad_queries: HashMap<String, String>,
    /// Transient faults, consumed in order.
    faults: Vec<LokiFault>,
    bearer: Option<String>,
    tenant: Option<String>,
    max_limit: u32,
    tail_frame_size: usize,
    tail_connections: usize,
    subscribers: Vec<mpsc::UnboundedSender<Live>>,
}

type Shared = Arc<Mutex<Inner>>;

/// Handle of a running test server; it stops when dropped.
pub struct LokiServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LokiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LokiServer {
    /// Starts the server on a free loopback port with `entries`. Must be called
    /// inside a Tokio runtime.
    pub async fn start(entries: Vec<LokiEntry>) -> Result<Self> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            entries,
            requests: Vec::new(),
            bad_queries: HashMap::new(),
            faults: Vec::new(),
            bearer: None,
            tenant: None,
            max_limit: 5000,
            tail_frame_size: 100,
            tail_connections: 0,
            subscribers: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the Loki test server")?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/loki/api/v1/tail", get(tail_handler))
            .fallback(http_handler)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// Starts the server with the entries of a push-format JSON file.
    pub async fn start_from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading Loki test data {}", path.display()))?;
        let entries =
            entries_from_push_json(&text).with_context(|| format!("parsing Loki test data {}", path.display()))?;
        Self::start(entries).await
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Adds an entry; live tails whose query matches it receive it.
    pub fn push(&self, entry: LokiEntry) {
        self.push_all(vec![entry]);
    }

    /// Adds entries; live tails receive the matching ones.
    pub fn push_all(&self, entries: Vec<LokiEntry>) {
        let mut inner = self.inner.lock().unwrap();
        push_locked(&mut inner, entries);
    }

    /// Tells live tails that these entries were dropped (`dropped_entries`).
    pub fn push_dropped(&self, dropped: Vec<(Labels, i64)>) {
        let mut inner = self.inner.lock().unwrap();
        inner.subscribers.retain(|s| s.send(Live::Dropped(dropped.clone())).is_ok());
    }

    /// Every entry held, in insertion order.
    pub fn entries(&self) -> Vec<LokiEntry> {
        self.inner.lock().unwrap().entries.clone()
    }

    /// Injects a fault. [`LokiFault::BadQuery`] stays until [`LokiServer::clear_faults`];
    /// the others are used up by the requests they hit.
    pub fn set_fault(&self, fault: LokiFault) {
        let mut inner = self.inner.lock().unwrap();
        match fault {
            LokiFault::BadQuery { query, message } => {
                inner.bad_queries.insert(query, message);
            }
            other => inner.faults.push(other),
        }
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.bad_queries.clear();
        inner.faults.clear();
    }

    /// Answers 401 unless `Authorization: Bearer <token>` is sent.
    pub fn require_bearer(&self, token: &str) {
        self.inner.lock().unwrap().bearer = Some(format!("Bearer {token}"));
    }

    /// Answers 401 `no org id` unless `X-Scope-OrgID: <tenant>` is sent.
    pub fn require_tenant(&self, tenant: &str) {
        self.inner.lock().unwrap().tenant = Some(tenant.to_string());
    }

    /// The largest `limit` accepted (Loki's `max_entries_limit_per_query`).
    pub fn set_max_limit(&self, limit: u32) {
        self.inner.lock().unwrap().max_limit = limit;
    }

    /// How many entries the tail replays per frame (at least 1).
    pub fn set_tail_frame_size(&self, entries: usize) {
        self.inner.lock().unwrap().tail_frame_size = entries.max(1);
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<LokiRequest> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<LokiRequest> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// How many tail WebSocket connections were accepted.
    pub fn tail_connections(&self) -> usize {
        self.inner.lock().unwrap().tail_connections
    }

    /// How many tail connections are open now.
    pub fn live_tails(&self) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.subscribers.retain(|s| !s.is_closed());
        inner.subscribers.len()
    }
}

#[cfg(test)]
mod tests;
