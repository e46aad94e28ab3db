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

fn push_locked(inner: &mut Inner, entries: Vec<LokiEntry>) {
    for e in entries {
        inner.subscribers.retain(|s| s.send(Live::Entry(e.clone())).is_ok());
        inner.entries.push(e);
    }
}

fn parse_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// An error answer: a status and Loki's plain-text message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// What the common checks decided for a request.
enum Gate {
    Pass { truncate: bool },
    Answer(Response),
}

/// Records the request, checks credentials and applies transient faults.
fn gate(inner: &mut Inner, method: &Method, uri: &Uri, headers: &HeaderMap, websocket: bool) -> Gate {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    inner.requests.push(LokiRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        authorization: header_str("authorization"),
        tenant: header_str("x-scope-orgid"),
        websocket,
        status: 0,
    });
    if let Some(expected) = &inner.bearer {
        if header_str("authorization").as_deref() != Some(expected.as_str()) {
            return Gate::Answer(text(StatusCode::UNAUTHORIZED, "unauthorized\n"));
        }
    }
    if let Some(expected) = &inner.tenant {
        if header_str("x-scope-orgid").as_deref() != Some(expected.as_str()) {
            return Gate::Answer(text(StatusCode::UNAUTHORIZED, "no org id\n"));
        }
    }
    let mut truncate = false;
    let mut answer = None;
    let mut used = None;
    for (i, fault) in inner.faults.iter_mut().enumerate() {
        match fault {
            LokiFault::RateLimited { retry_after_secs, times } if *times > 0 => {
                *times -= 1;
                answer = Some(
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, retry_after_secs.to_string())],
                        "too many outstanding requests\n",
                    )
                        .into_response(),
                );
                used = Some(i);
            }
            LokiFault::ServerError { times } if *times > 0 => {
                *times -= 1;
                answer = Some(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "rpc error: code = Internal desc = injected failure\n",
                ));
                used = Some(i);
            }
            LokiFault::TruncatedBody { times } if *times > 0 && !websocket => {
                *times -= 1;
                truncate = true;
                used = Some(i);
            }
            _ => continue,
        }
        break;
    }
    if let Some(i) = used {
        let spent = matches!(
            inner.faults[i],
            LokiFault::RateLimited { times: 0, .. }
                | LokiFault::ServerError { times: 0 }
                | LokiFault::TruncatedBody { times: 0 }
        );
        if spent {
            inner.faults.remove(i);
        }
    }
    match answer {
        Some(response) => Gate::Answer(response),
        None => Gate::Pass { truncate },
    }
}

fn set_last_status(inner: &mut Inner, status: u16) {
    if let Some(last) = inner.requests.last_mut() {
        last.status = status;
    }
}

async fn http_handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = state.lock().unwrap();
    let response = match gate(&mut inner, &method, &uri, &headers, false) {
        Gate::Answer(response) => response,
        Gate::Pass { truncate } => {
            let params = parse_params(uri.query());
            match route(&mut inner, &method, uri.path(), &params, &body) {
                Ok(value) => {
                    let mut body = value.to_string();
                    if truncate {
                        let mut cut = body.len() / 2;
                        while !body.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        body.truncate(cut);
                    }
                    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                Err(error) => error.into_response(),
            }
        }
    };
    set_last_status(&mut inner, response.status().as_u16());
    response
}

/// The JSON answer of an API call, or an error response.
fn route(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> std::result::Result<Value, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["loki", "api", "v1", "query_range"]) => query_range(inner, params),
        ("GET", ["loki", "api", "v1", "labels"] | ["loki", "api", "v1", "label"]) => {
            let (start, end) = optional_range(params)?;
            let names: BTreeSet<&String> = in_range(&inner.entries, start, end).flat_map(|e| e.labels.keys()).collect();
            Ok(json!({"status": "success", "data": names}))
        }
        ("GET", ["loki", "api", "v1", "label", name, "values"]) => {
            let name = percent_decode(name);
            let (start, end) = optional_range(params)?;
            let values: BTreeSet<&String> =
                in_range(&inner.entries, start, end).filter_map(|e| e.labels.get(&name)).collect();
            Ok(json!({"status": "success", "data": values}))
        }
        ("GET" | "POST", ["loki", "api", "v1", "series"]) => {
            let selectors: Vec<&str> =
                params.iter().filter(|(k, _)| k == "match[]" || k == "match").map(|(_, v)| v.as_str()).collect();
            if selectors.is_empty() {
                return Err(bad_request("match[] is required\n".into()));
            }
            let mut parsed = Vec::new();
            for s in selectors {
                let q = parse_logql(s).map_err(bad_request)?;
                parsed.push(q);
            }
            let (start, end) = optional_range(params)?;
            let sets: BTreeSet<&Labels> = in_range(&inner.entries, start, end)
                .filter(|e| parsed.iter().any(|q| q.matches_labels(&e.labels)))
                .map(|e| &e.labels)
                .collect();
            Ok(json!({"status": "success", "data": sets}))
        }
        ("POST", ["loki", "api", "v1", "push"]) => {
            let text_body = String::from_utf8_lossy(body);
            let entries = entries_from_push_json(&text_body).map_err(|e| bad_request(format!("{e:#}\n")))?;
            push_locked(inner, entries);
            Ok(json!({}))
        }
        ("GET", ["ready"]) => Ok(json!("ready")),
        _ => Err(ApiError(StatusCode::NOT_FOUND, "404 page not found\n".into())),
    }
}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn in_range(entries: &[LokiEntry], start: Option<i64>, end: Option<i64>) -> impl Iterator<Item = &LokiEntry> {
    entries.iter().filter(move |e| start.is_none_or(|s| e.ts_ns >= s) && end.is_none_or(|x| e.ts_ns < x))
}

fn optional_range(params: &[(String, String)]) -> std::result::Result<(Option<i64>, Option<i64>), ApiError> {
    let parse = |key: &str| -> std::result::Result<Option<i64>, ApiError> {
        match param(params, key) {
            None => Ok(None),
            Some(v) => parse_time(v).map(Some).map_err(bad_request),
        }
    };
    Ok((parse("start")?, parse("end")?))
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

const HOUR_NS: i64 = 3_600_000_000_000;

/// Loki's time parsing: fractional seconds, nanoseconds (seconds when ten digits
/// or fewer), or RFC 3339.
fn parse_time(value: &str) -> std::result::Result<i64, String> {
    if value.contains('.') {
        if let Ok(secs) = value.parse::<f64>() {
            return Ok((secs * 1e9).round() as i64);
        }
    }
    match value.parse::<i64>() {
        Ok(n) if value.trim_start_matches('-').len() <= 10 => Ok(n.saturating_mul(1_000_000_000)),
        Ok(n) => Ok(n),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("cannot parse {value:?} to a valid timestamp\n")),
    }
}

fn query_range(inner: &Inner, params: &[(String, String)]) -> std::result::Result<Value, ApiError> {
    let bad = bad_request;
    let query = param(params, "query").unwrap_or("");
    let q = parse_query(inner, query).map_err(bad)?;
    let limit = match param(params, "limit") {
        None => 100,
        Some(v) => v.parse::<u32>().map_err(|_| bad(format!("invalid limit {v:?}\n")))?,
    };
    if limit == 0 {
        return Err(bad("limit must be a positive value\n".into()));
    }
    if limit > inner.max_limit {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})\n",
            inner.max_limit
        )));
    }
    let backward = match param(params, "direction").unwrap_or("backward") {
        "backward" | "BACKWARD" => true,
        "forward" | "FORWARD" => false,
        other => return Err(bad(format!("invalid direction {other:?}\n"))),
    };
    let end = match param(params, "end") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => now_ns(),
    };
    let start = match param(params, "start") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => end - HOUR_NS,
    };
    if end <= start {
        return Err(bad("end timestamp must not be before or equal to start time\n".into()));
    }
    let mut hits: Vec<(usize, &LokiEntry)> =
        inner.entries.iter().enumerate().filter(|(_, e)| e.ts_ns >= start && e.ts_ns < end && q.matches(e)).collect();
    hits.sort_by_key(|(seq, e)| (e.ts_ns, *seq));
    if backward {
        hits.reverse();
    }
    hits.truncate(limit as usize);
    let entries: Vec<&LokiEntry> = hits.into_iter().map(|(_, e)| e).collect();
    Ok(json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": streams_json(&entries),
            "stats": {"summary": {"totalEntriesReturned": entries.len()}}
        }
    }))
}

/// Groups entries by stream (first appearance order), values in the given order.
fn streams_json(entries: &[&LokiEntry]) -> Vec<Value> {
    let mut streams: Vec<(&Labels, Vec<Value>)> = Vec::new();
    for e in entries {
        let values = match streams.iter_mut().position(|(l, _)| **l == e.labels) {
            Some(i) => &mut streams[i].1,
            None => {
                streams.push((&e.labels, Vec::new()));
                let last = streams.len() - 1;
                &mut streams[last].1
            }
        };
        values.push(json!([e.ts_ns.to_string(), e.line]));
    }
    streams.into_iter().map(|(labels, values)| json!({"stream": labels, "values": values})).collect()
}

/// Parses a query, answering the injected message for a "bad" query.
fn parse_query(inner: &Inner, query: &str) -> std::result::Result<LogQuery, String> {
    if let Some(message) = inner.bad_queries.get(query) {
        return Err(format!("{message}\n"));
    }
    parse_logql(query).map_err(|m| format!("{m}\n"))
}

// ---------------------------------------------------------------------------
// Tail

async fn tail_handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut inner = state.lock().unwrap();
    let params = parse_params(uri.query());
    let decided = match gate(&mut inner, &method, &uri, &headers, true) {
        Gate::Answer(response) => Err(response),
        Gate::Pass { .. } => prepare_tail(&mut inner, &params).map_err(IntoResponse::into_response),
    };
    let response = match decided {
        Err(response) => response,
        Ok(plan) => ws.on_upgrade(move |socket| run_tail(socket, plan)),
    };
    set_last_status(&mut inner, response.status().as_u16());
    response
}

struct TailPlan {
    query: LogQuery,
    frames: Vec<Vec<LokiEntry>>,
    live: mpsc::UnboundedReceiver<Live>,
    drop_after: Option<usize>,
}

/// Validates the tail request and, under the same lock as the subscription,
/// takes the replay snapshot: nothing pushed later is missed or sent twice.
fn prepare_tail(inner: &mut Inner, params: &[(String, String)]) -> std::result::Result<TailPlan, ApiError> {
    let bad = bad_request;
    let query = parse_query(inner, param(params, "query").unwrap_or("")).map_err(bad)?;
    let limit = match param(params, "limit") {
        None => 100,
        Some(v) => v.parse::<usize>().map_err(|_| bad(format!("invalid limit {v:?}\n")))?,
    };
    if limit > inner.max_limit as usize {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})\n",
            inner.max_limit
        )));
    }
    if let Some(d) = param(params, "delay_for") {
        match d.parse::<u32>() {
            Ok(s) if s <= 5 => {}
            _ => return Err(bad("delay_for can't be greater than 5\n".into())),
        }
    }
    let start = match param(params, "start") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => now_ns() - HOUR_NS,
    };
    let mut history: Vec<(usize, &LokiEntry)> =
        inner.entries.iter().enumerate().filter(|(_, e)| e.ts_ns >= start && query.matches(e)).collect();
    history.sort_by_key(|(seq, e)| (e.ts_ns, *seq));
    // Like Loki: the latest `limit` entries of the history.
    let skip = history.len().saturating_sub(limit);
    let history: Vec<LokiEntry> = history.into_iter().skip(skip).map(|(_, e)| e.clone()).collect();
    let frames = history.chunks(inner.tail_frame_size).map(<[LokiEntry]>::to_vec).collect();
    let mut drop_after = None;
    if let Some(i) = inner.faults.iter().position(|f| matches!(f, LokiFault::DropTail { times, .. } if *times > 0)) {
        if let LokiFault::DropTail { after_frames, times } = &mut inner.faults[i] {
            drop_after = Some(*after_frames);
            *times -= 1;
            if *times == 0 {
                inner.faults.remove(i);
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    inner.subscribers.push(tx);
    inner.tail_connections += 1;
    Ok(TailPlan { query, frames, live: rx, drop_after })
}

async fn run_tail(mut socket: WebSocket, mut plan: TailPlan) {
    let mut sent = 0usize;
    let dropped_now = |sent: usize| plan.drop_after.is_some_and(|n| sent >= n);
    if dropped_now(sent) {
        return;
    }
    for frame in std::mem::take(&mut plan.frames) {
        let refs: Vec<&LokiEntry> = frame.iter().collect();
        let body = json!({"streams": streams_json(&refs)}).to_string();
        if socket.send(Message::Text(body.into())).await.is_err() {
            return;
        }
        sent += 1;
        if dropped_now(sent) {
            return; // Dropping the socket closes the TCP connection without a close frame.
        }
    }
    loop {
        tokio::select! {
            item = plan.live.recv() => {
                let body = match item {
                    None => return,
                    Some(Live::Entry(e)) if plan.query.matches(&e) => {
                        json!({"streams": streams_json(&[&e])}).to_string()
                    }
                    Some(Live::Entry(_)) => continue,
                    Some(Live::Dropped(list)) => {
                        let dropped: Vec<Value> = list
                            .iter()
                            .map(|(labels, ts)| json!({"labels": labels, "timestamp": ts.to_string()}))
                            .collect();
                        json!({"streams": [], "dropped_entries": dropped}).to_string()
                    }
                };
                if socket.send(Message::Text(body.into())).await.is_err() {
                    return;
                }
                sent += 1;
                if dropped_now(sent) {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by the WebSocket layer
            },
        }
    }
}

// ---------------------------------------------------------------------------
// A small LogQL subset

#[derive(Clone, Debug)]
enum LabelOp {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

#[derive(Clone, Debug)]
enum LineFilter {
    Contains(String),
    NotContains(String),
    Re(Regex),
    NotRe(Regex),
}

/// A parsed log query: stream selector and line filters.
#[derive(Clone, Debug)]
pub struct LogQuery {
    matchers: Vec<(String, LabelOp)>,
    filters: Vec<LineFilter>,
}

impl LogQuery {
    /// Whether a stream with `labels` is selected.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(name, op)| {
            let value = labels.get(name).map(String::as_str).unwrap_or("");
            match op {
                LabelOp::Eq(v) => value == v,
                LabelOp::Ne(v) => value != v,
                LabelOp::Re(re) => re.is_match(value),
                LabelOp::NotRe(re) => !re.is_match(value),
            }
        })
    }

    /// Whether `entry` is selected and passes every line filter.
    pub fn matches(&self, entry: &LokiEntry) -> bool {
        self.matches_labels(&entry.labels)
            && self.filters.iter().all(|f| match f {
                LineFilter::Contains(s) => entry.line.contains(s.as_str()),
                LineFilter::NotContains(s) => !entry.line.contains(s.as_str()),
                LineFilter::Re(re) => re.is_match(&entry.line),
                LineFilter::NotRe(re) => !re.is_match(&entry.line),
            })
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    src: &'a str,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn error(&self, unexpected: &str) -> String {
        format!("parse error at line 1, col {}: syntax error: unexpected {unexpected}", self.pos + 1)
    }

    fn unexpected_here(&self) -> String {
        match self.peek() {
            None => self.error("$end"),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word: String =
                    self.chars[self.pos..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
                self.error(&format!("IDENTIFIER {word:?}"))
            }
            Some(c) => self.error(&format!("{c:?}")),
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let here: String = self.chars.iter().skip(self.pos).take(n).collect();
        if here == s {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        let first_ok = word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if first_ok {
            Some(word)
        } else {
            self.pos = start;
            None
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        match self.peek() {
            Some('`') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '`') {
                    self.pos += 1;
                }
                if self.peek().is_none() {
                    return Err(self.error("$end (unterminated raw string)"));
                }
                let s: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                Ok(s)
            }
            Some('"') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("$end (unterminated string)")),
                        Some('"') => {
                            self.pos += 1;
                            return Ok(s);
                        }
                        Some('\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(c) => s.push(c),
                                None => return Err(self.error("$end")),
                            }
                            self.pos += 1;
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            _ => Err(self.unexpected_here()),
        }
    }

    fn regex(&self, pattern: &str, anchored: bool) -> std::result::Result<Regex, String> {
        let full = if anchored { format!("^(?:{pattern})$") } else { pattern.to_string() };
        Regex::new(&full).map_err(|e| {
            format!("parse error at line 1, col {}: invalid regex {pattern:?}: {e} in {:?}", self.pos, self.src)
        })
    }
}

/// Parses the LogQL subset the server understands, with Loki-style errors.
pub fn parse_logql(query: &str) -> std::result::Result<LogQuery, String> {
    let mut lx = Lexer { chars: query.chars().collect(), pos: 0, src: query };
    lx.skip_ws();
    if lx.peek().is_none() {
        return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
    }
    if !lx.eat("{") {
        return Err(lx.unexpected_here());
    }
    let mut matchers = Vec::new();
    loop {
        lx.skip_ws();
        let Some(name) = lx.ident() else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let op = if lx.eat("=~") {
            "=~"
        } else if lx.eat("!~") {
            "!~"
        } else if lx.eat("!=") {
            "!="
        } else if lx.eat("=") {
            "="
        } else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let value = lx.string()?;
        let op = match op {
            "=" => LabelOp::Eq(value),
            "!=" => LabelOp::Ne(value),
            "=~" => LabelOp::Re(lx.regex(&value, true)?),
            _ => LabelOp::NotRe(lx.regex(&value, true)?),
        };
        matchers.push((name, op));
        lx.skip_ws();
        if lx.eat(",") {
            continue;
        }
        if lx.eat("}") {
            break;
        }
        return Err(lx.unexpected_here());
    }
    let selects_something = matchers.iter().any(|(_, op)| match op {
        LabelOp::Eq(v) => !v.is_empty(),
        LabelOp::Re(re) => !re.is_match(""),
        _ => false,
    });
    if !selects_something {
        return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
    }
    let mut filters = Vec::new();
    loop {
        lx.skip_ws();
        if lx.peek().is_none() {
            break;
        }
        let op = if lx.eat("|=") {
            "|="
        } else if lx.eat("|~") {
            "|~"
        } else if lx.eat("!=") {
            "!="
        } else if lx.eat("!~") {
            "!~"
        } else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let value = lx.string()?;
        filters.push(match op {
            "|=" => LineFilter::Contains(value),
            "!=" => LineFilter::NotContains(value),
            "|~" => LineFilter::Re(lx.regex(&value, false)?),
            _ => LineFilter::NotRe(lx.regex(&value, false)?),
        });
    }
    Ok(LogQuery { matchers, filters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors_and_filters() {
        let q = parse_logql(r#"{app="api", env!="dev", pod=~"api-.*"} |= "error" != `debug`"#).expect("valid query");
        let hit = LokiEntry::new(&[("app", "api"), ("pod", "api-1")], 1, "an error here");
        let debug = LokiEntry::new(&[("app", "api"), ("pod", "api-1")], 1, "error debug");
        let other_pod = LokiEntry::new(&[("app", "api"), ("pod", "web-1")], 1, "error");
        assert!(q.matches(&hit));
        assert!(!q.matches(&debug));
        assert!(!q.matches(&other_pod));
    }

    #[test]
    fn errors_look_like_loki() {
        let err = parse_logql(r#"{app="api""#).expect_err("unclosed");
        assert!(err.starts_with("parse error at line 1, col 11"), "{err}");
        let err = parse_logql("sum(rate({app=\"x\"}[1m]))").expect_err("metric");
        assert!(err.contains("unexpected IDENTIFIER"), "{err}");
        assert!(parse_logql("{app=~\".*\"}").is_err());
        assert!(parse_logql("").is_err());
    }

    #[test]
    fn times_parse_like_loki() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000000000001"), Ok(1_700_000_000_000_000_001));
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert!(parse_time("soon").is_err());
    }

    #[test]
    fn push_json_round_trips() {
        let entries = vec![
            LokiEntry::new(&[("app", "a")], 5, "x"),
            LokiEntry::new(&[("app", "b")], 6, "y"),
            LokiEntry::new(&[("app", "a")], 7, "z"),
        ];
        let text = push_json(&entries);
        let mut back = entries_from_push_json(&text).expect("valid");
        back.sort_by_key(|e| e.ts_ns);
        assert_eq!(back, entries);
    }
}
