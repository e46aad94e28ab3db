//! Client for Grafana Loki's HTTP API: complete (paged) log range queries, label and
//! series look-ups, and a live tail over WebSocket that survives disconnects.
//!
//! Authentication (bearer or basic), TLS (rustls with the `ring` provider, extra CA
//! file, "skip verification") and the overall request timeout work as for the
//! Prometheus client. Every request carries `X-Scope-OrgID` when a tenant is
//! configured, the WebSocket handshake of the tail included.
//!
//! # Range queries: paging without gaps or duplicates
//!
//! Loki answers `GET /loki/api/v1/query_range` with at most `limit` entries, chosen
//! from the start of `[start, end)` (`direction=forward`) or from its end
//! (`direction=backward`); `start` is inclusive and `end` exclusive, both in
//! nanoseconds. [`LokiClient::query_range`] fetches the whole range by moving the
//! window: a page with fewer than `limit` entries is the last one; after a full
//! page the next window starts at the *last timestamp of the page* (forward) or
//! ends just after it (backward). The window overlaps the previous one by that one
//! nanosecond on purpose: the page may have been cut by `limit` in the middle of
//! the entries sharing that timestamp (several lines, often of several streams,
//! commonly share one nanosecond), and starting one nanosecond later would lose
//! the rest of them. The entries of the overlap that were already returned are
//! dropped by their identity `(stream labels, timestamp, line)`: Loki itself
//! de-duplicates identical entries of a stream at ingestion, so two entries with the
//! same identity are the same entry.
//!
//! When a full page holds a single timestamp, moving the window cannot make
//! progress. The client then asks for exactly that nanosecond (`[ts, ts+1)`) with a
//! doubled `limit` until the answer is not full, so it gets every entry of that
//! timestamp before moving past it. If Loki refuses the larger limit (its
//! `max_entries_limit_per_query`, HTTP 400) or the limit would exceed
//! [`LokiConfig::max_entries`], the result stops there and says so
//! ([`Truncation::TimestampOverflow`]).
//!
//! Every request either adds at least one new entry or ends the query, and the
//! total is capped by [`LokiConfig::max_entries`]: reaching the cap ends the query
//! with [`Truncation::MaxEntries`] (the earliest entries for `forward`, the latest
//! for `backward`) instead of fetching without bound. The result's entries are
//! always in ascending time order, whatever the direction.
//!
//! # Live tail: reconnect and resume
//!
//! [`LokiClient::tail`] opens `GET /loki/api/v1/tail` as a WebSocket and yields
//! [`TailEvent`]s. When the connection fails in a way worth retrying (connection
//! refused or reset, timeouts, 429, 5xx, the server closing the tail, which Loki
//! does after `tail_max_duration`) it reconnects with exponential backoff and
//! jitter (honouring `Retry-After`), and resumes with `start` set to the latest
//! timestamp delivered so far. Loki then replays the entries from that timestamp
//! on; the ones already delivered at exactly that timestamp are recognised by
//! their identity and dropped, so a reconnect causes neither a gap nor a duplicate.
//! Entries Loki reports as dropped on its side (a slow tail) are surfaced as
//! [`TailEvent::Dropped`], never silently ignored. Non-retryable failures (bad
//! LogQL, 401/403, undecodable frames) end the tail with an error.
//!
//! Two limits of Loki's protocol remain: on (re)connection Loki replays at most
//! [`TailOptions::limit`] historical entries, the *latest* ones, so an outage that
//! outlasts more entries than that loses the older ones (raise the limit, or fill
//! the gap with [`LokiClient::query_range`]); and an entry ingested late with a
//! timestamp older than the resume point is not replayed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, RETRY_AFTER, USER_AGENT};
use serde::de::{self, DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::http::{self, display_url};
use crate::{Error, HttpAuth, Result, TlsOptions};

/// Header that selects the tenant in a multi-tenant Loki.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";
/// Default of [`LokiConfig::max_entries`].
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Largest response body accepted from Loki.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest WebSocket message accepted from the tail.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error body is quoted in an error message.
const MESSAGE_CHARS: usize = 512;
const AGENT: &str = concat!("warden/", env!("CARGO_PKG_VERSION"));

/// The labels of a log stream.
pub type Labels = BTreeMap<String, String>;

/// Where and how to reach Loki.
#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Base URL, e.g. `http://loki:3100` or `https://gateway/loki`.
    pub url: Url,
    pub auth: Option<HttpAuth>,
    /// Sent as `X-Scope-OrgID` on every request when set.
    pub tenant: Option<String>,
    /// Limit for a whole HTTP request (connection and body included), and for the
    /// WebSocket handshake of the tail.
    pub timeout: Duration,
    pub tls: TlsOptions,
    /// Most entries one [`LokiClient::query_range`] call collects over all its pages.
    pub max_entries: usize,
}

impl LokiConfig {
    /// A configuration with no authentication, no tenant, a 30 s timeout, default
    /// TLS and [`DEFAULT_MAX_ENTRIES`].
    pub fn new(url: Url) -> Self {
        Self {
            url,
            auth: None,
            tenant: None,
            timeout: Duration::from_secs(30),
            tls: TlsOptions::default(),
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Which end of the range a query starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Oldest entries first.
    #[default]
    Forward,
    /// Newest entries first.
    Backward,
}

impl Direction {
    /// The value of Loki's `direction` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        }
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogEntry {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The labels of the entry's stream, shared by all entries of the stream.
    pub labels: Arc<Labels>,
    pub line: String,
}

impl LogEntry {
    /// The timestamp as a date, when it is representable (always, for `i64` nanoseconds).
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.timestamp_ns)
    }
}

/// Why a [`LogQueryResult`] holds fewer entries than the range has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truncation {
    /// [`LokiConfig::max_entries`] entries were collected and more may exist.
    MaxEntries { max: usize },
    /// More than `limit` entries share the timestamp `timestamp_ns` and a larger
    /// limit was refused by Loki or exceeds `max_entries`. The result holds the
    /// entries before that timestamp (in the query's direction) and some at it.
    TimestampOverflow { timestamp_ns: i64, limit: u32 },
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::MaxEntries { max } => {
                write!(f, "stopped at the configured maximum of {max} entries")
            }
            Truncation::TimestampOverflow { timestamp_ns, limit } => write!(
                f,
                "more than {limit} entries share timestamp {timestamp_ns} ns and Loki would not return more at once"
            ),
        }
    }
}

/// The result of [`LokiClient::query_range`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogQueryResult {
    /// Every entry of the range, each once, in ascending time order (ties by labels, then line).
    pub entries: Vec<LogEntry>,
    /// `Some` when the range holds more entries than were collected.
    pub truncated: Option<Truncation>,
    /// How many HTTP requests the query took.
    pub requests: u32,
    /// Warnings Loki attached to its answers (deduplicated).
    pub warnings: Vec<String>,
}

impl LogQueryResult {
    /// Whether every entry of the range was collected.
    pub fn is_complete(&self) -> bool {
        self.truncated.is_none()
    }

    /// The entries grouped by stream, streams in label order, entries in time order.
    pub fn streams(&self) -> BTreeMap<Arc<Labels>, Vec<&LogEntry>> {
        let mut out: BTreeMap<Arc<Labels>, Vec<&LogEntry>> = BTreeMap::new();
        for e in &self.entries {
            out.entry(e.labels.clone()).or_default().push(e);
        }
        out
    }
}

/// An entry Loki dropped from a tail (the client did not keep up), as reported in
/// the frame's `dropped_entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEntry {
    pub timestamp_ns: i64,
    pub labels: Labels,
}

/// What a [`LokiTail`] yields.
#[derive(Debug)]
pub enum TailEvent {
    /// A WebSocket connection was established, asking Loki for entries from
    /// `start_ns` on. `reconnect` is false for the first connection only.
    Connected { start_ns: i64, reconnect: bool },
    /// A new log entry (never one delivered before).
    Entry(LogEntry),
    /// Loki dropped these entries from the tail; they will not be delivered.
    Dropped(Vec<DroppedEntry>),
    /// The connection failed or could not be made; the tail reconnects after
    /// `retry_in`. `attempt` counts consecutive failures.
    Reconnecting { error: Error, attempt: u32, retry_in: Duration },
}

/// Settings of a live tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailOptions {
    /// Loki's `limit`: how many historical entries it replays on (re)connection.
    pub limit: u32,
    /// Loki's `delay_for` (whole seconds, at most 5): how long it waits for late entries.
    pub delay_for: Duration,
    /// First reconnection delay; doubled on each consecutive failure (with jitter).
    pub backoff_initial: Duration,
    /// Longest reconnection delay (a longer `Retry-After` is still honoured).
    pub backoff_max: Duration,
    /// A connection that receives nothing for this long is considered dead. The
    /// client sends a WebSocket ping every third of it to keep a quiet one alive.
    pub idle_timeout: Duration,
    /// Give up after this many consecutive failures (`None`: never).
    pub max_consecutive_failures: Option<u32>,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            limit: 1000,
            delay_for: Duration::ZERO,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_consecutive_failures: None,
        }
    }
}

/// A cheap-to-clone Loki API client.
#[derive(Clone)]
pub struct LokiClient {
    http: reqwest::Client,
    /// Base URL without query or fragment, with a trailing empty segment removed.
    base: Url,
    shown_base: String,
    auth: Option<HttpAuth>,
    tenant: Option<HeaderValue>,
    timeout: Duration,
    max_entries: usize,
    /// rustls configuration of the tail for an `https` base URL.
    ws_tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for LokiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiClient")
            .field("url", &self.shown_base)
            .field("auth", &self.auth)
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl LokiClient {
    /// Builds a client. Fails on a URL that is not http(s) or cannot be a base URL,
    /// credentials or a tenant that cannot be sent as headers, an unreadable CA
    /// file, a zero timeout or a zero `max_entries`.
    pub fn new(cfg: LokiConfig) -> Result<Self> {
        if !matches!(cfg.url.scheme(), "http" | "https") || cfg.url.host_str().is_none() {
            return Err(Error::Config(format!(
                "Loki URL {} must be an http or https URL with a host",
                display_url(&cfg.url)
            )));
        }
        if cfg.url.cannot_be_a_base() {
            return Err(Error::Config(format!("Loki URL {} cannot be used as a base URL", display_url(&cfg.url))));
        }
        if cfg.max_entries == 0 {
            return Err(Error::Config("Loki max_entries must be greater than zero".into()));
        }
        let mut base = cfg.url.clone();
        base.set_query(None);
        base.set_fragment(None);
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let tenant = match &cfg.tenant {
            None => None,
            Some(t) if t.trim().is_empty() => {
                return Err(Error::Config("Loki tenant is empty".into()));
            }
            Some(t) => Some(HeaderValue::from_str(t).map_err(|_| {
                Error::Config(format!("Loki tenant {t:?} contains characters not allowed in an HTTP header"))
            })?),
        };
        http::validate_auth(cfg.auth.as_ref())?;
        let client = http::build_client(cfg.timeout, &cfg.tls)?;
        let ws_tls = if base.scheme() == "https" { Some(ws_tls_config(&cfg.tls)?) } else { None };
        Ok(Self {
            http: client,
            shown_base: display_url(&base),
            base,
            auth: cfg.auth,
            tenant,
            timeout: cfg.timeout,
            max_entries: cfg.max_entries,
            ws_tls,
        })
    }

    /// `{base}/loki/api/v1/{segments...}`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("Loki URL {} cannot be used as a base URL", self.shown_base)))?
            .extend(["loki", "api", "v1"])
            .extend(segments);
        Ok(url)
    }

    /// Authorization, tenant and user agent, as sent on every request.
    fn request_headers(&self) -> Result<HeaderMap> {
        // reqwest encodes the credentials (basic auth needs base64); building a
        // request without sending it gives exactly the headers it would send.
        let req = http::apply_auth(self.http.get(self.base.clone()), self.auth.as_ref());
        let built = req.build().map_err(|e| {
            Error::Config(format!("cannot build a request to {}: {}", self.shown_base, http::error_chain(&e)))
        })?;
        let mut headers = built.headers().clone();
        if let Some(tenant) = &self.tenant {
            headers.insert(HeaderName::from_static("x-scope-orgid"), tenant.clone());
        }
        headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        Ok(headers)
    }

    /// Sends `GET` and returns the body of a 2xx answer; other answers become errors.
    async fn get(&self, url: Url, params: &[(&str, String)]) -> Result<(String, Vec<u8>)> {
        let target = display_url(&url);
        let mut req = self.http.get(url).query(params).header(ACCEPT, "application/json");
        req = http::apply_auth(req, self.auth.as_ref());
        if let Some(tenant) = &self.tenant {
            req = req.header(TENANT_HEADER, tenant.clone());
        }
        let resp = req.send().await.map_err(|e| http::map_reqwest_error(e, &target, self.timeout))?;
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers());
        let body = http::read_body(resp, MAX_BODY_BYTES, &target, self.timeout).await;
        if (200..300).contains(&status) {
            return Ok((target, body?));
        }
        // The status says what went wrong; an unreadable error body only costs detail.
        let body = body.unwrap_or_default();
        Err(status_error(status, retry_after, &body, &target))
    }

    async fn get_data<T: DeserializeOwned>(&self, url: Url, params: &[(&str, String)]) -> Result<(T, Vec<String>)> {
        let (target, body) = self.get(url, params).await?;
        parse_envelope(&body, &target)
    }

    /// Fetches every entry of `query` (a LogQL *log* query) in `[start, end)`.
    ///
    /// `limit` is the page size sent to Loki (keep it at or below Loki's
    /// `max_entries_limit_per_query`, 5000 by default); the query pages through the
    /// whole range as the [module documentation](self) describes, up to
    /// [`LokiConfig::max_entries`] entries. `direction` decides where paging starts,
    /// and so which end is kept when the result is truncated. Metric queries are
    /// rejected with [`Error::Decode`] (their answer is a matrix, not streams).
    ///
    /// Errors: [`Error::LokiQuery`] for a query Loki refuses (400, with Loki's
    /// message), [`Error::RateLimited`] for 429, [`Error::Http`] for other statuses,
    /// [`Error::Decode`] for an invalid or truncated body, [`Error::Connect`] and
    /// [`Error::Timeout`] for transport failures. A failure on a later page fails
    /// the whole call.
    pub async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        direction: Direction,
        limit: u32,
    ) -> Result<LogQueryResult> {
        if query.trim().is_empty() {
            return Err(Error::InvalidInput("LogQL query is empty".into()));
        }
        if limit == 0 {
            return Err(Error::InvalidInput("query limit must be greater than zero".into()));
        }
        let start_ns = to_ns(start, "query start")?;
        let end_ns = to_ns(end, "query end")?;
        if end_ns < start_ns {
            return Err(Error::InvalidInput(format!("query range end {end} is before start {start}")));
        }
        let url = self.endpoint(&["query_range"])?;
        let target = display_url(&url);
        let mut pager = Pager::new(direction, start_ns, end_ns, limit, self.max_entries);
        let mut warnings: Vec<String> = Vec::new();
        let mut requests = 0u32;
        while let Some(req) = pager.next_request() {
            let params = [
                ("query", query.to_string()),
                ("start", req.start_ns.to_string()),
                ("end", req.end_ns.to_string()),
                ("limit", req.limit.to_string()),
                ("direction", direction.as_str().to_string()),
            ];
            tracing::debug!(endpoint = %target, query, start = req.start_ns, end = req.end_ns, limit = req.limit, "Loki range query page");
            requests += 1;
            match self.get(url.clone(), &params).await {
                Ok((_, body)) => {
                    let (page, page_warnings) = parse_query_range(&body, &target)?;
                    for w in page_warnings {
                        if !warnings.contains(&w) {
                            warnings.push(w);
                        }
                    }
                    pager.accept(req, page).map_err(|message| Error::Decode { url: target.clone(), message })?;
                }
                Err(Error::LokiQuery { .. }) if pager.is_growing_limit() => {
                    // Loki refused the larger limit needed for one crowded timestamp.
                    pager.limit_refused();
                }
                Err(e) => return Err(e),
            }
        }
        let (entries, truncated) = pager.finish();
        if let Some(t) = &truncated {
            tracing::warn!(endpoint = %target, query, "Loki range query truncated: {t}");
        }
        Ok(LogQueryResult { entries, truncated, requests, warnings })
    }

    /// Label names (`GET /loki/api/v1/labels`), optionally limited to a time range.
    pub async fn labels(&self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<Vec<String>> {
        let url = self.endpoint(&["labels"])?;
        let params = range_params(start, end)?;
        let (data, _) = self.get_data::<Vec<String>>(url, &params).await?;
        Ok(data)
    }

    /// Values of label `name` (`GET /loki/api/v1/label/<name>/values`).
    pub async fn label_values(
        &self,
        name: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<String>> {
        if name.is_empty() {
            return Err(Error::InvalidInput("label name is empty".into()));
        }
        let url = self.endpoint(&["label", name, "values"])?;
        let params = range_params(start, end)?;
        let (data, _) = self.get_data::<Vec<String>>(url, &params).await?;
        Ok(data)
    }

    /// The label sets of the streams matching any of `matchers` (stream selectors
    /// such as `{app="api"}`) in the range (`GET /loki/api/v1/series?match[]=...`).
    pub async fn series(
        &self,
        matchers: &[&str],
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<Labels>> {
        if matchers.is_empty() || matchers.iter().any(|m| m.trim().is_empty()) {
            return Err(Error::InvalidInput("series needs at least one non-empty stream selector".into()));
        }
        let url = self.endpoint(&["series"])?;
        let mut params: Vec<(&str, String)> = matchers.iter().map(|m| ("match[]", m.to_string())).collect();
        params.extend(range_params(start, end)?);
        let (data, _) = self.get_data::<Vec<Labels>>(url, &params).await?;
        Ok(data)
    }

    /// Starts a live tail of `query` from `start`. Nothing is sent until the first
    /// [`LokiTail::next`]; the tail ends when `cancel` is cancelled or it is dropped.
    pub fn tail(
        &self,
        query: &str,
        start: DateTime<Utc>,
        options: TailOptions,
        cancel: CancellationToken,
    ) -> Result<LokiTail> {
        if query.trim().is_empty() {
            return Err(Error::InvalidInput("LogQL query is empty".into()));
        }
        if options.limit == 0 {
            return Err(Error::InvalidInput("tail limit must be greater than zero".into()));
        }
        if options.idle_timeout < Duration::from_millis(30) {
            return Err(Error::InvalidInput("tail idle timeout must be at least 30 ms".into()));
        }
        if options.delay_for > Duration::from_secs(5) {
            return Err(Error::InvalidInput("tail delay_for must be at most 5 seconds".into()));
        }
        let start_ns = to_ns(start, "tail start")?;
        let mut url = self.endpoint(&["tail"])?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::Config(format!("cannot derive a WebSocket URL from {}", self.shown_base)))?;
        Ok(LokiTail {
            client: self.clone(),
            shown: display_url(&url),
            url,
            query: query.to_string(),
            options,
            cancel,
            start_ns,
            resume: Resume::default(),
            conn: None,
            pending: VecDeque::new(),
            failures: 0,
            retry_delay: None,
            connections: 0,
            last_heard: Instant::now(),
            finished: false,
        })
    }
}

fn range_params(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    if let Some(s) = start {
        params.push(("start", to_ns(s, "start")?.to_string()));
    }
    if let Some(e) = end {
        params.push(("end", to_ns(e, "end")?.to_string()));
    }
    Ok(params)
}

/// Nanoseconds since the epoch, or an error for dates outside 1677–2262.
fn to_ns(t: DateTime<Utc>, what: &str) -> Result<i64> {
    t.timestamp_nanos_opt().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{what} {t} cannot be expressed in nanoseconds since the epoch (years 1677 to 2262)"
        ))
    })
}

// ---------------------------------------------------------------------------
// Status and body handling

/// The error for a non-2xx answer.
fn status_error(status: u16, retry_after: Option<Duration>, body: &[u8], target: &str) -> Error {
    match status {
        400 => Error::LokiQuery { url: target.to_string(), status, message: error_message(body, status) },
        429 => Error::RateLimited { retry_after },
        _ => Error::Http { url: target.to_string(), status: Some(status), message: error_message(body, status) },
    }
}

/// Loki's error text: plain text, or the `error`/`message` field of a JSON body.
fn error_message(body: &[u8], status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) {
        for key in ["error", "message"] {
            if let Some(serde_json::Value::String(s)) = obj.get(key) {
                return http::truncate_chars(s.trim(), MESSAGE_CHARS);
            }
        }
    }
    if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("empty response body")
            .to_string()
    } else {
        http::truncate_chars(text, MESSAGE_CHARS)
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Deserializes JSON, describing failures as truncated JSON, invalid JSON or an
/// unexpected shape, with the JSON path.
fn decode<T: DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(crate::http::describe_json_error)?;
    de.end().map_err(|e| format!("invalid JSON after the value: {e}"))?;
    Ok(value)
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Unwraps `{"status":"success","data":...}`.
fn parse_envelope<T: DeserializeOwned>(body: &[u8], target: &str) -> Result<(T, Vec<String>)> {
    let env: Envelope<T> = decode(body).map_err(|message| Error::Decode { url: target.to_string(), message })?;
    if env.status != "success" {
        return Err(Error::LokiQuery {
            url: target.to_string(),
            status: 200,
            message: env.error.unwrap_or_else(|| format!("response status {:?}", env.status)),
        });
    }
    let data = env.data.ok_or_else(|| Error::Decode {
        url: target.to_string(),
        message: "successful response has no \"data\" field".into(),
    })?;
    Ok((data, env.warnings))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawStream {
    #[serde(default)]
    stream: Labels,
    #[serde(default)]
    values: Vec<RawValue>,
}

/// `["<ns>", "<line>"]`, tolerating a third element (structured metadata).
struct RawValue(i64, String);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array [\"<timestamp ns>\", \"<line>\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<RawValue, A::Error> {
                let ts: NsTimestamp = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawValue(ts.0, line))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A nanosecond timestamp sent as a decimal string (or, leniently, an integer).
struct NsTimestamp(i64);

impl<'de> Deserialize<'de> for NsTimestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NsTimestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a nanosecond Unix timestamp as a decimal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<NsTimestamp, E> {
                v.trim()
                    .parse::<i64>()
                    .map(NsTimestamp)
                    .map_err(|_| E::custom(format!("invalid nanosecond timestamp {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<NsTimestamp, E> {
                Ok(NsTimestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<NsTimestamp, E> {
                i64::try_from(v).map(NsTimestamp).map_err(|_| E::custom(format!("timestamp {v} is out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

fn flatten_streams(streams: Vec<RawStream>) -> Vec<LogEntry> {
    let mut entries = Vec::with_capacity(streams.iter().map(|s| s.values.len()).sum());
    for s in streams {
        let labels = Arc::new(s.stream);
        for RawValue(ts, line) in s.values {
            entries.push(LogEntry { timestamp_ns: ts, labels: labels.clone(), line });
        }
    }
    entries
}

/// Parses a `query_range` answer into its entries (in no particular order) and warnings.
fn parse_query_range(body: &[u8], target: &str) -> Result<(Vec<LogEntry>, Vec<String>)> {
    let (data, warnings) = parse_envelope::<QueryData>(body, target)?;
    if data.result_type != "streams" {
        return Err(Error::Decode {
            url: target.to_string(),
            message: format!(
                "expected resultType \"streams\" from a log query, got {:?} (metric queries are not log queries)",
                data.result_type
            ),
        });
    }
    let streams: Vec<RawStream> = serde_path_to_error::deserialize(data.result).map_err(|e| {
        let path = e.path().to_string();
        Error::Decode {
            url: target.to_string(),
            message: format!(
                "invalid streams at data.result{}: {}",
                if path == "." { "" } else { path.as_str() },
                e.inner()
            ),
        }
    })?;
    Ok((flatten_streams(streams), warnings))
}

// ---------------------------------------------------------------------------
// Paging (pure)

/// Identity of an entry: Loki de-duplicates entries with equal labels, timestamp
/// and line at ingestion, so equal keys mean the same entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    labels: Arc<Labels>,
    timestamp_ns: i64,
    line: String,
}

impl EntryKey {
    fn of(e: &LogEntry) -> Self {
        Self { labels: e.labels.clone(), timestamp_ns: e.timestamp_ns, line: e.line.clone() }
    }
}

/// One request of a paged query: `[start_ns, end_ns)` with `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageRequest {
    start_ns: i64,
    end_ns: i64,
    limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Moving the window through the range.
    Window,
    /// Fetching every entry of one crowded timestamp with a growing limit.
    OneTimestamp { ts: i64, limit: u32 },
}

/// The paging state machine behind [`LokiClient::query_range`], free of I/O.
#[derive(Debug)]
struct Pager {
    direction: Direction,
    page_limit: u32,
    max_entries: usize,
    /// The window still to fetch: `[lo, hi)`.
    lo: i64,
    hi: i64,
    mode: Mode,
    /// Timestamp at the edge of the window, where the next page overlaps this one.
    edge_ts: Option<i64>,
    /// Keys of the entries already collected at `edge_ts`.
    edge_keys: HashSet<EntryKey>,
    /// Collected entries, in the query's direction.
    entries: Vec<LogEntry>,
    truncated: Option<Truncation>,
    done: bool,
}

impl Pager {
    fn new(direction: Direction, start_ns: i64, end_ns: i64, limit: u32, max_entries: usize) -> Self {
        Self {
            direction,
            page_limit: limit.max(1),
            max_entries: max_entries.max(1),
            lo: start_ns,
            hi: end_ns,
            mode: Mode::Window,
            edge_ts: None,
            edge_keys: HashSet::new(),
            entries: Vec::new(),
            truncated: None,
            done: end_ns <= start_ns,
        }
    }

    /// The next request to send, or `None` when the query is over.
    fn next_request(&self) -> Option<PageRequest> {
        if self.done || self.lo >= self.hi {
            return None;
        }
        Some(match self.mode {
            Mode::Window => PageRequest { start_ns: self.lo, end_ns: self.hi, limit: self.page_limit },
            Mode::OneTimestamp { ts, limit } => PageRequest { start_ns: ts, end_ns: ts.saturating_add(1), limit },
        })
    }

    /// Whether the current request asks for a larger limit than the page size.
    fn is_growing_limit(&self) -> bool {
        matches!(self.mode, Mode::OneTimestamp { limit, .. } if limit > self.page_limit)
    }

    /// Loki refused the larger limit: stop, saying which timestamp is incomplete.
    fn limit_refused(&mut self) {
        if let Mode::OneTimestamp { ts, limit } = self.mode {
            self.truncated =
                Some(Truncation::TimestampOverflow { timestamp_ns: ts, limit: (limit / 2).max(self.page_limit) });
        }
        self.done = true;
    }

    /// The largest limit worth asking for one timestamp.
    fn limit_cap(&self) -> u32 {
        let cap = u32::try_from(self.max_entries.saturating_add(1)).unwrap_or(u32::MAX);
        cap.max(self.page_limit)
    }

    /// Sorts a page in the query's direction (ties by labels, then line).
    fn sort(&self, page: &mut [LogEntry]) {
        page.sort_by(|a, b| {
            let by_time = a.timestamp_ns.cmp(&b.timestamp_ns);
            let by_time = match self.direction {
                Direction::Forward => by_time,
                Direction::Backward => by_time.reverse(),
            };
            by_time.then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
        });
    }

    /// Adds `e` unless it was collected before; stops at `max_entries`.
    fn collect(&mut self, e: &LogEntry) {
        if self.done {
            return;
        }
        if self.edge_ts == Some(e.timestamp_ns) && self.edge_keys.contains(&EntryKey::of(e)) {
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.truncated = Some(Truncation::MaxEntries { max: self.max_entries });
            self.done = true;
            return;
        }
        self.entries.push(e.clone());
    }

    /// Makes `ts` the overlap edge, remembering the page's entries at it.
    fn set_edge(&mut self, ts: i64, page: &[LogEntry]) {
        if self.edge_ts != Some(ts) {
            self.edge_keys.clear();
            self.edge_ts = Some(ts);
        }
        for e in page.iter().filter(|e| e.timestamp_ns == ts) {
            self.edge_keys.insert(EntryKey::of(e));
        }
    }

    /// Moves the window past timestamp `ts`, whose entries are all collected.
    fn move_past(&mut self, ts: i64) {
        match self.direction {
            Direction::Forward => match ts.checked_add(1) {
                Some(next) => self.lo = next,
                None => self.done = true,
            },
            Direction::Backward => self.hi = ts,
        }
        self.edge_ts = None;
        self.edge_keys.clear();
        self.mode = Mode::Window;
    }

    /// Takes the answer to `req`. An `Err` describes an answer that cannot be right.
    fn accept(&mut self, req: PageRequest, page: Vec<LogEntry>) -> std::result::Result<(), String> {
        let raw = page.len();
        let full = raw >= req.limit as usize;
        let mut page: Vec<LogEntry> =
            page.into_iter().filter(|e| e.timestamp_ns >= req.start_ns && e.timestamp_ns < req.end_ns).collect();
        if page.len() < raw {
            tracing::warn!(
                outside = raw - page.len(),
                start = req.start_ns,
                end = req.end_ns,
                "Loki returned entries outside the requested range; ignoring them"
            );
        }
        self.sort(&mut page);
        for e in &page {
            self.collect(e);
        }
        if self.done {
            return Ok(());
        }
        match self.mode {
            Mode::OneTimestamp { ts, limit } => {
                if !full {
                    self.move_past(ts);
                } else if limit >= self.limit_cap() {
                    self.truncated = Some(Truncation::TimestampOverflow { timestamp_ns: ts, limit });
                    self.done = true;
                } else {
                    self.set_edge(ts, &page);
                    let next = limit.saturating_mul(2).min(self.limit_cap());
                    self.mode = Mode::OneTimestamp { ts, limit: next };
                }
            }
            Mode::Window => {
                if !full {
                    self.done = true;
                    return Ok(());
                }
                let (Some(first), Some(last)) = (page.first(), page.last()) else {
                    return Err(format!(
                        "a full page of {raw} entries has none inside the requested range [{}, {})",
                        req.start_ns, req.end_ns
                    ));
                };
                let (first_ts, edge) = (first.timestamp_ns, last.timestamp_ns);
                self.set_edge(edge, &page);
                if first_ts == edge {
                    // One timestamp fills the page: moving the window would not
                    // progress, so fetch that nanosecond alone with a larger limit.
                    let next = req.limit.saturating_mul(2).min(self.limit_cap());
                    if next <= req.limit {
                        self.truncated = Some(Truncation::TimestampOverflow { timestamp_ns: edge, limit: req.limit });
                        self.done = true;
                    } else {
                        self.mode = Mode::OneTimestamp { ts: edge, limit: next };
                    }
                } else {
                    // Overlap the next window with this page by the edge
                    // nanosecond; its collected entries are skipped by key.
                    match self.direction {
                        Direction::Forward => self.lo = edge,
                        Direction::Backward => self.hi = edge.saturating_add(1),
                    }
                }
            }
        }
        Ok(())
    }

    /// The collected entries in ascending time order, and the truncation if any.
    fn finish(mut self) -> (Vec<LogEntry>, Option<Truncation>) {
        self.entries.sort_by(|a, b| {
            a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
        });
        (self.entries, self.truncated)
    }
}

// ---------------------------------------------------------------------------
// Live tail

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where a tail resumes: the latest timestamp delivered and the entries delivered at it.
#[derive(Debug, Default)]
struct Resume {
    ts: Option<i64>,
    keys: HashSet<EntryKey>,
}

impl Resume {
    /// Whether `e` is new; records it as delivered when it is.
    fn admit(&mut self, e: &LogEntry) -> bool {
        match self.ts {
            Some(ts) if e.timestamp_ns < ts => true,
            Some(ts) if e.timestamp_ns == ts => self.keys.insert(EntryKey::of(e)),
            _ => {
                self.ts = Some(e.timestamp_ns);
                self.keys.clear();
                self.keys.insert(EntryKey::of(e));
                true
            }
        }
    }
}

/// A live tail; see the [module documentation](self) for its guarantees.
///
/// Call [`LokiTail::next`] in a loop, or turn it into a stream with
/// [`LokiTail::into_stream`]. Dropping it closes the connection.
pub struct LokiTail {
    client: LokiClient,
    url: Url,
    shown: String,
    query: String,
    options: TailOptions,
    cancel: CancellationToken,
    start_ns: i64,
    resume: Resume,
    conn: Option<WsStream>,
    pending: VecDeque<TailEvent>,
    /// Consecutive failures since something was last received.
    failures: u32,
    retry_delay: Option<Duration>,
    connections: u32,
    /// When the current connection last received anything.
    last_heard: Instant,
    finished: bool,
}

impl fmt::Debug for LokiTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiTail")
            .field("url", &self.shown)
            .field("query", &self.query)
            .field("resume_ns", &self.resume.ts)
            .field("connected", &self.conn.is_some())
            .field("connections", &self.connections)
            .finish()
    }
}

enum Received {
    Message(Option<std::result::Result<Message, tungstenite::Error>>),
    Quiet,
    Cancelled,
}

impl LokiTail {
    /// The next event; `None` once the tail is cancelled or has ended with an error.
    ///
    /// Retryable failures are reported as [`TailEvent::Reconnecting`] and handled
    /// here; a non-retryable failure (or exhausting
    /// [`TailOptions::max_consecutive_failures`]) is returned as `Some(Err(_))`,
    /// after which the tail is over.
    ///
    /// Cancel-safe: dropping the returned future (in a `select!`) loses no entry;
    /// received entries wait in the tail until a later call returns them.
    pub async fn next(&mut self) -> Option<Result<TailEvent>> {
        loop {
            if self.cancel.is_cancelled() {
                self.finish().await;
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.conn.is_none() {
                if let Some(delay) = self.retry_delay.take() {
                    tokio::select! {
                        _ = self.cancel.cancelled() => continue,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                let start_ns = self.resume.ts.unwrap_or(self.start_ns);
                let connected = tokio::select! {
                    _ = self.cancel.cancelled() => continue,
                    r = self.connect(start_ns) => r,
                };
                match connected {
                    Ok(ws) => {
                        self.conn = Some(ws);
                        self.last_heard = Instant::now();
                        self.pending.push_back(TailEvent::Connected { start_ns, reconnect: self.connections > 0 });
                        self.connections += 1;
                    }
                    Err(e) => {
                        if let Some(fatal) = self.fail(e) {
                            return Some(Err(fatal));
                        }
                    }
                }
                continue;
            }
            if let Some(fatal) = self.read_once().await {
                return Some(Err(fatal));
            }
        }
    }

    /// Turns the tail into a [`futures::Stream`] of the events [`LokiTail::next`] yields.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<TailEvent>> + Send {
        futures::stream::unfold(self, |mut tail| async move { tail.next().await.map(|item| (item, tail)) })
    }

    /// The timestamp a reconnection would resume from (the latest delivered), if any.
    pub fn resume_point_ns(&self) -> Option<i64> {
        self.resume.ts
    }

    /// How many connections were established so far.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// Closes the connection politely and ends the tail.
    async fn finish(&mut self) {
        self.finished = true;
        self.pending.clear();
        if let Some(mut ws) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    }

    /// Waits for one message (or the ping interval) and handles it. Returns a
    /// fatal error when the tail must end.
    async fn read_once(&mut self) -> Option<Error> {
        let ping_every = self.options.idle_timeout / 3;
        let received = {
            // No connection: nothing to read, and nothing fatal.
            let ws = self.conn.as_mut()?;
            tokio::select! {
                _ = self.cancel.cancelled() => Received::Cancelled,
                r = tokio::time::timeout(ping_every, ws.next()) => match r {
                    Ok(m) => Received::Message(m),
                    Err(_) => Received::Quiet,
                },
            }
        };
        match received {
            Received::Cancelled => None,
            Received::Quiet => self.on_quiet().await,
            Received::Message(None) => self.fail(Error::Http {
                url: self.shown.clone(),
                status: None,
                message: "the tail connection ended without a close frame".into(),
            }),
            Received::Message(Some(Err(e))) => {
                let err = map_ws_error(e, &self.shown);
                self.fail(err)
            }
            Received::Message(Some(Ok(msg))) => {
                self.failures = 0;
                self.last_heard = Instant::now();
                self.on_message(msg)
            }
        }
    }
}

impl LokiTail {
    /// Nothing arrived for a ping interval: declare the connection dead after
    /// `idle_timeout`, otherwise ping it.
    async fn on_quiet(&mut self) -> Option<Error> {
        let idle = self.last_heard.elapsed();
        if idle >= self.options.idle_timeout {
            return self.fail(Error::Timeout { url: self.shown.clone(), after: Some(idle) });
        }
        let ws = self.conn.as_mut()?;
        let ping = ws.send(Message::Ping(Default::default()));
        match tokio::time::timeout(self.options.idle_timeout, ping).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                let err = map_ws_error(e, &self.shown);
                self.fail(err)
            }
            Err(_) => self.fail(Error::Timeout { url: self.shown.clone(), after: Some(self.options.idle_timeout) }),
        }
    }

    fn on_message(&mut self, msg: Message) -> Option<Error> {
        let text = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            // tungstenite answers pings itself; pongs only prove liveness.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
            Message::Close(frame) => {
                let message = match frame {
                    Some(f) if !f.reason.is_empty() => format!(
                        "Loki closed the tail ({}): {}",
                        u16::from(f.code),
                        http::truncate_chars(f.reason.as_str(), MESSAGE_CHARS)
                    ),
                    Some(f) => format!("Loki closed the tail ({})", u16::from(f.code)),
                    None => "Loki closed the tail".to_string(),
                };
                return self.fail(Error::Http { url: self.shown.clone(), status: None, message });
            }
        };
        let frame = match parse_tail_frame(text, &self.shown) {
            Ok(frame) => frame,
            Err(e) => return self.fail(e),
        };
        if !frame.dropped.is_empty() {
            tracing::warn!(
                url = %self.shown,
                dropped = frame.dropped.len(),
                "Loki dropped entries from the tail"
            );
            self.pending.push_back(TailEvent::Dropped(frame.dropped));
        }
        for e in frame.entries {
            if self.resume.admit(&e) {
                self.pending.push_back(TailEvent::Entry(e));
            }
        }
        None
    }

    /// Records a failure: schedules a reconnection for a retryable one, or ends
    /// the tail and returns the error.
    fn fail(&mut self, error: Error) -> Option<Error> {
        self.conn = None;
        if !error.is_retryable() {
            self.finished = true;
            return Some(error);
        }
        self.failures = self.failures.saturating_add(1);
        if self.options.max_consecutive_failures.is_some_and(|max| self.failures > max) {
            self.finished = true;
            return Some(error);
        }
        let mut delay = backoff_delay(self.options.backoff_initial, self.options.backoff_max, self.failures);
        if let Some(asked) = error.retry_after() {
            delay = delay.max(asked);
        }
        tracing::warn!(url = %self.shown, attempt = self.failures, retry_in = ?delay, "Loki tail disconnected: {error}");
        self.retry_delay = Some(delay);
        self.pending.push_back(TailEvent::Reconnecting { error, attempt: self.failures, retry_in: delay });
        None
    }

    /// Opens the WebSocket asking for entries from `start_ns` on.
    async fn connect(&self, start_ns: i64) -> Result<WsStream> {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("query", &self.query)
            .append_pair("start", &start_ns.to_string())
            .append_pair("limit", &self.options.limit.to_string())
            .append_pair("delay_for", &self.options.delay_for.as_secs().to_string());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config(format!("cannot build the tail request for {}: {e}", self.shown)))?;
        for (name, value) in &self.client.request_headers()? {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let connector = match &self.client.ws_tls {
            Some(cfg) => tokio_tungstenite::Connector::Rustls(cfg.clone()),
            None => tokio_tungstenite::Connector::Plain,
        };
        let config =
            WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES)).max_frame_size(Some(MAX_FRAME_BYTES));
        tracing::debug!(url = %self.shown, query = %self.query, start = start_ns, "opening Loki tail");
        let handshake = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(connector));
        match tokio::time::timeout(self.client.timeout, handshake).await {
            Err(_) => Err(Error::Timeout { url: self.shown.clone(), after: Some(self.client.timeout) }),
            Ok(Err(e)) => Err(map_ws_error(e, &self.shown)),
            Ok(Ok((ws, _response))) => Ok(ws),
        }
    }
}

/// `initial * 2^(attempt-1)`, capped at `max`, with up to 50 % jitter subtracted.
fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    // A random value without a dependency: std's hasher keys are randomly seeded.
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    let fraction = (random % 1000) as f64 / 2000.0; // 0 to 0.5
    base.mul_f64(1.0 - fraction)
}

/// Maps a WebSocket error (handshake or stream) to [`Error`].
fn map_ws_error(err: tungstenite::Error, target: &str) -> Error {
    use tungstenite::Error as W;
    match err {
        W::Http(resp) => {
            let status = resp.status().as_u16();
            let retry_after = parse_retry_after(resp.headers());
            let body = resp.body().as_deref().unwrap_or_default();
            if (200..300).contains(&status) {
                Error::Http {
                    url: target.to_string(),
                    status: Some(status),
                    message: "the server answered without switching to WebSocket".into(),
                }
            } else {
                status_error(status, retry_after, body, target)
            }
        }
        W::Io(e) => Error::Connect { url: target.to_string(), message: http::error_chain(&e) },
        W::Tls(e) => {
            Error::Connect { url: target.to_string(), message: format!("TLS error: {}", http::error_chain(&e)) }
        }
        W::Url(e) => Error::Config(format!("invalid tail URL {target}: {e}")),
        W::Capacity(e) => Error::Decode { url: target.to_string(), message: format!("tail message too large: {e}") },
        W::Utf8(e) => Error::Decode { url: target.to_string(), message: format!("tail message is not UTF-8: {e}") },
        other => Error::Http {
            url: target.to_string(),
            status: None,
            message: format!("WebSocket error: {}", http::error_chain(&other)),
        },
    }
}

#[derive(Deserialize)]
struct RawTailFrame {
    #[serde(default)]
    streams: Option<Vec<RawStream>>,
    #[serde(default)]
    dropped_entries: Option<Vec<RawDropped>>,
}

#[derive(Deserialize)]
struct RawDropped {
    timestamp: NsTimestamp,
    #[serde(default)]
    labels: Labels,
}

/// A decoded tail frame: entries in time order, dropped entries as sent.
#[derive(Debug)]
struct TailFrame {
    entries: Vec<LogEntry>,
    dropped: Vec<DroppedEntry>,
}

fn parse_tail_frame(text: &[u8], target: &str) -> Result<TailFrame> {
    let raw: RawTailFrame = decode(text)
        .map_err(|message| Error::Decode { url: target.to_string(), message: format!("tail frame: {message}") })?;
    let mut entries = flatten_streams(raw.streams.unwrap_or_default());
    entries.sort_by(|a, b| {
        a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
    });
    let dropped = raw
        .dropped_entries
        .unwrap_or_default()
        .into_iter()
        .map(|d| DroppedEntry { timestamp_ns: d.timestamp.0, labels: d.labels })
        .collect();
    Ok(TailFrame { entries, dropped })
}

// ---------------------------------------------------------------------------
// TLS of the tail

/// The rustls configuration for `wss://`: the same trust as the HTTP client
/// (platform roots plus the CA file, via rustls-platform-verifier), or no
/// certificate verification at all when asked.
fn ws_tls_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>> {
    crate::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("cannot configure TLS for the Loki tail: {e}")))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(NoCertificateVerification(provider))
    } else {
        let mut extra = Vec::new();
        if let Some(path) = &tls.ca_file {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra.push(
                    cert.map_err(|e| Error::Config(format!("CA file {} is not valid PEM: {e}", path.display())))?,
                );
            }
            if extra.is_empty() {
                return Err(Error::Config(format!("CA file {} contains no certificates", path.display())));
            }
        }
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                .map_err(|e| Error::Config(format!("cannot load trusted certificates: {e}")))?,
        )
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (but still checks handshake signatures).
#[derive(Debug)]
struct NoCertificateVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{DefaultHasher, Hasher};

    const T: &str = "http://loki/loki/api/v1/query_range";

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn entry(l: &Arc<Labels>, ts: i64, line: &str) -> LogEntry {
        LogEntry { timestamp_ns: ts, labels: l.clone(), line: line.to_string() }
    }

    #[test]
    fn parses_streams_with_and_without_metadata() {
        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api"},"values":[["1700000000000000001","a"],["1700000000000000002","b",{"trace_id":"x"}]]},
            {"stream":{"app":"db"},"values":[["1700000000000000001","c"]]}],
            "stats":{"summary":{"bytesProcessedPerSecond":1}}},"warnings":["w1"]}"#;
        let (entries, warnings) = parse_query_range(body, T).expect("valid body");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].timestamp_ns, 1_700_000_000_000_000_002);
        assert_eq!(entries[1].line, "b");
        assert_eq!(entries[2].labels.get("app").map(String::as_str), Some("db"));
        assert!(Arc::ptr_eq(&entries[0].labels, &entries[1].labels));
        assert_eq!(warnings, vec!["w1".to_string()]);
    }

    #[test]
    fn rejects_metric_results_and_bad_values() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        let err = parse_query_range(body, T).expect_err("matrix");
        assert!(matches!(err, Error::Decode { .. }));
        assert!(err.to_string().contains("matrix"), "{err}");

        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{},"values":[["1","ok"],["soon","bad"]]}]}}"#;
        let err = parse_query_range(body, T).expect_err("bad timestamp");
        let text = err.to_string();
        assert!(text.contains("values[1]") && text.contains("soon"), "{text}");

        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{},"values":[["1"]]}]}}"#;
        assert!(parse_query_range(body, T).is_err());
    }

    #[test]
    fn truncated_body_is_a_decode_error_naming_the_url() {
        let err = parse_query_range(br#"{"status":"success","data":{"resultType":"str"#, T).expect_err("truncated");
        match &err {
            Error::Decode { url, message } => {
                assert_eq!(url, T);
                assert!(message.contains("truncated JSON"), "{message}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[test]
    fn maps_statuses() {
        let err = status_error(400, None, b"parse error at line 1, col 5: syntax error: unexpected IDENTIFIER\n", T);
        match &err {
            Error::LokiQuery { status, message, .. } => {
                assert_eq!(*status, 400);
                assert_eq!(message, "parse error at line 1, col 5: syntax error: unexpected IDENTIFIER");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(!err.is_retryable());
        let err = status_error(429, Some(Duration::from_secs(7)), b"slow down", T);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.is_retryable());
        let err = status_error(503, None, b"", T);
        assert!(err.is_retryable());
        assert!(err.to_string().contains("Service Unavailable"), "{err}");
        let err = status_error(400, None, br#"{"status":"error","error":"bad thing"}"#, T);
        assert!(err.to_string().ends_with("bad thing"), "{err}");
        let err = status_error(401, None, b"no org id", T);
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("no org id"), "{err}");
    }

    #[test]
    fn envelope_errors() {
        let err = parse_envelope::<Vec<String>>(br#"{"status":"error","error":"nope"}"#, T).expect_err("error status");
        assert!(matches!(err, Error::LokiQuery { .. }), "{err:?}");
        let err = parse_envelope::<Vec<String>>(br#"{"status":"success"}"#, T).expect_err("no data");
        assert!(err.to_string().contains("data"), "{err}");
        let (data, _) = parse_envelope::<Vec<String>>(br#"{"status":"success","data":["a","b"]}"#, T).expect("valid");
        assert_eq!(data, vec!["a".to_string(), "b".to_string()]);
    }

    /// An in-memory Loki: `[start, end)`, `limit`, direction, a maximum limit, and
    /// an arbitrary (seeded) order among entries sharing a timestamp, answered in
    /// shuffled order.
    fn fake_loki(
        all: &[LogEntry],
        req: PageRequest,
        direction: Direction,
        max_limit: u32,
        seed: u64,
    ) -> std::result::Result<Vec<LogEntry>, ()> {
        if req.limit > max_limit {
            return Err(());
        }
        let noise = |e: &LogEntry, salt: u64| {
            let mut h = DefaultHasher::new();
            (seed, salt, &e.line, e.timestamp_ns).hash(&mut h);
            h.finish()
        };
        let mut hits: Vec<LogEntry> =
            all.iter().filter(|e| e.timestamp_ns >= req.start_ns && e.timestamp_ns < req.end_ns).cloned().collect();
        hits.sort_by_key(|e| {
            let ts = match direction {
                Direction::Forward => e.timestamp_ns,
                Direction::Backward => -e.timestamp_ns,
            };
            (ts, noise(e, 1))
        });
        hits.truncate(req.limit as usize);
        hits.sort_by_key(|e| noise(e, 2));
        Ok(hits)
    }

    fn run_pager(
        all: &[LogEntry],
        direction: Direction,
        range: (i64, i64),
        limit: u32,
        max_entries: usize,
        max_limit: u32,
    ) -> (Vec<LogEntry>, Option<Truncation>, u32) {
        let mut pager = Pager::new(direction, range.0, range.1, limit, max_entries);
        let mut requests = 0;
        while let Some(req) = pager.next_request() {
            requests += 1;
            assert!(requests < 10_000, "paging does not terminate");
            match fake_loki(all, req, direction, max_limit, u64::from(requests)) {
                Ok(page) => pager.accept(req, page).expect("consistent page"),
                Err(()) => {
                    assert!(pager.is_growing_limit(), "refused a normal page");
                    pager.limit_refused();
                }
            }
        }
        let (entries, truncated) = pager.finish();
        (entries, truncated, requests)
    }

    fn sorted(mut v: Vec<LogEntry>) -> Vec<LogEntry> {
        v.sort_by(|a, b| {
            a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
        });
        v
    }

    /// Two streams; bursts of entries sharing one nanosecond, some larger than a page.
    fn crowded_data() -> Vec<LogEntry> {
        let a = labels(&[("app", "api")]);
        let b = labels(&[("app", "db")]);
        let mut all = Vec::new();
        let mut n = 0;
        for (ts, count) in [(10, 1), (11, 3), (12, 7), (20, 2), (21, 25), (22, 1), (30, 4), (31, 6)] {
            for i in 0..count {
                let l = if i % 2 == 0 { &a } else { &b };
                all.push(entry(l, ts, &format!("line {n}")));
                n += 1;
            }
        }
        // A line repeated verbatim in another stream at the same time is a different entry.
        all.push(entry(&b, 12, "line 3"));
        all
    }

    #[test]
    fn pages_every_entry_exactly_once_in_both_directions() {
        let all = crowded_data();
        let expected = sorted(all.clone());
        for direction in [Direction::Forward, Direction::Backward] {
            for limit in [1, 2, 3, 4, 5, 7, 10, 100] {
                let (entries, truncated, _) = run_pager(&all, direction, (0, 100), limit, 10_000, 5000);
                assert_eq!(truncated, None, "{direction:?} limit {limit}");
                assert_eq!(entries, expected, "{direction:?} limit {limit}");
            }
        }
    }

    #[test]
    fn range_is_start_inclusive_end_exclusive() {
        let all = crowded_data();
        let expected: Vec<LogEntry> =
            sorted(all.clone()).into_iter().filter(|e| (12..30).contains(&e.timestamp_ns)).collect();
        for direction in [Direction::Forward, Direction::Backward] {
            let (entries, truncated, _) = run_pager(&all, direction, (12, 30), 3, 10_000, 5000);
            assert_eq!(truncated, None);
            assert_eq!(entries, expected, "{direction:?}");
        }
        let (entries, _, requests) = run_pager(&all, Direction::Forward, (5, 5), 3, 10, 5000);
        assert!(entries.is_empty());
        assert_eq!(requests, 0);
    }

    #[test]
    fn a_page_of_one_timestamp_grows_the_limit() {
        let l = labels(&[("app", "api")]);
        let all: Vec<LogEntry> = (0..50).map(|i| entry(&l, 7, &format!("same ns {i}"))).collect();
        for direction in [Direction::Forward, Direction::Backward] {
            let (entries, truncated, requests) = run_pager(&all, direction, (0, 10), 4, 1000, 5000);
            assert_eq!(truncated, None);
            assert_eq!(entries, sorted(all.clone()));
            assert!(requests <= 6, "{requests} requests");
        }
    }

    #[test]
    fn refused_limit_is_reported_as_timestamp_overflow() {
        let l = labels(&[("app", "api")]);
        let mut all: Vec<LogEntry> = (0..50).map(|i| entry(&l, 7, &format!("same ns {i}"))).collect();
        all.push(entry(&l, 3, "before"));
        all.push(entry(&l, 9, "after"));
        let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 10), 4, 1000, 16);
        assert_eq!(truncated, Some(Truncation::TimestampOverflow { timestamp_ns: 7, limit: 16 }));
        assert_eq!(entries.first().map(|e| e.line.as_str()), Some("before"));
        assert!(entries.iter().all(|e| e.timestamp_ns <= 7));
        let unique: HashSet<_> = entries.iter().map(EntryKey::of).collect();
        assert_eq!(unique.len(), entries.len(), "no duplicates");
    }

    #[test]
    fn max_entries_truncates_at_the_right_end() {
        let all = crowded_data();
        let expected = sorted(all.clone());
        let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 100), 4, 10, 5000);
        assert_eq!(truncated, Some(Truncation::MaxEntries { max: 10 }));
        assert_eq!(entries.len(), 10);
        assert!(entries.iter().all(|e| e.timestamp_ns <= expected[9].timestamp_ns));
        let (entries, truncated, _) = run_pager(&all, Direction::Backward, (0, 100), 4, 10, 5000);
        assert_eq!(truncated, Some(Truncation::MaxEntries { max: 10 }));
        assert_eq!(entries.len(), 10);
        let tenth_latest = expected[expected.len() - 10].timestamp_ns;
        assert!(entries.iter().all(|e| e.timestamp_ns >= tenth_latest));
        // Exactly max_entries in a range that fits in one page is complete.
        let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 100), 500, all.len(), 5000);
        assert_eq!(truncated, None);
        assert_eq!(entries.len(), all.len());
    }

    #[test]
    fn full_page_outside_the_range_is_an_error() {
        let l = labels(&[]);
        let mut pager = Pager::new(Direction::Forward, 100, 200, 2, 10);
        let req = pager.next_request().expect("a request");
        let err = pager.accept(req, vec![entry(&l, 5, "x"), entry(&l, 6, "y")]).expect_err("nothing in range");
        assert!(err.contains("none inside"), "{err}");
    }

    #[test]
    fn resume_drops_only_what_was_delivered() {
        let a = labels(&[("app", "api")]);
        let b = labels(&[("app", "db")]);
        let mut r = Resume::default();
        assert!(r.admit(&entry(&a, 10, "x")));
        assert!(r.admit(&entry(&b, 10, "x")));
        assert!(r.admit(&entry(&a, 9, "late other stream")));
        assert_eq!(r.ts, Some(10));
        // Replayed after a reconnection from ts 10:
        assert!(!r.admit(&entry(&a, 10, "x")));
        assert!(!r.admit(&entry(&b, 10, "x")));
        assert!(r.admit(&entry(&a, 10, "y")), "new entry at the resume timestamp");
        assert!(r.admit(&entry(&a, 11, "z")));
        assert!(!r.admit(&entry(&a, 11, "z")));
        assert_eq!(r.ts, Some(11));
        assert_eq!(r.keys.len(), 1, "only the latest timestamp is remembered");
    }

    #[test]
    fn parses_tail_frames() {
        let text = br#"{"streams":[{"stream":{"app":"api"},"values":[["20","b"],["10","a"]]}],
            "dropped_entries":[{"labels":{"app":"api"},"timestamp":"15"}]}"#;
        let frame = parse_tail_frame(text, "ws://loki/loki/api/v1/tail").expect("valid frame");
        let lines: Vec<&str> = frame.entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["a", "b"]);
        assert_eq!(frame.dropped.len(), 1);
        assert_eq!(frame.dropped[0].timestamp_ns, 15);
        let frame = parse_tail_frame(br#"{"streams":null}"#, "ws://x").expect("empty frame");
        assert!(frame.entries.is_empty() && frame.dropped.is_empty());
        let err = parse_tail_frame(br#"{"streams":[{"stream":{},"values":[["1""#, "ws://x").expect_err("truncated");
        assert!(err.to_string().contains("truncated JSON"), "{err}");
    }

    #[test]
    fn client_and_tail_can_move_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<LokiClient>();
        send::<LokiTail>();
        send::<TailEvent>();
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..40 {
            let d = backoff_delay(initial, max, attempt);
            let exp = attempt.saturating_sub(1).min(20);
            let base = initial.saturating_mul(1 << exp).min(max);
            assert!(d <= base && d >= base / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn builds_endpoints_and_validates_config() {
        let mut cfg = LokiConfig::new(Url::parse("http://user:pw@host:3100/loki-gw/?x=1").expect("url"));
        cfg.tenant = Some("team-a".into());
        let client = LokiClient::new(cfg.clone()).expect("valid config");
        let url = client.endpoint(&["label", "a/b c", "values"]).expect("endpoint");
        assert_eq!(url.path(), "/loki-gw/loki/api/v1/label/a%2Fb%20c/values");
        assert!(!format!("{client:?}").contains("pw"));
        let headers = client.request_headers().expect("headers");
        assert_eq!(headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()), Some("team-a"));

        let tail =
            client.tail("{app=\"x\"}", Utc::now(), TailOptions::default(), CancellationToken::new()).expect("tail");
        assert_eq!(tail.url.scheme(), "ws");
        assert_eq!(tail.url.path(), "/loki-gw/loki/api/v1/tail");

        let mut bad = cfg.clone();
        bad.tenant = Some("a\nb".into());
        assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
        let mut bad = cfg.clone();
        bad.url = Url::parse("ftp://host/").expect("url");
        assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
        let mut bad = cfg;
        bad.max_entries = 0;
        assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
    }

    #[test]
    fn basic_auth_reaches_the_tail_headers() {
        let mut cfg = LokiConfig::new(Url::parse("https://loki.example").expect("url"));
        cfg.auth = Some(HttpAuth::Basic { username: "warden".into(), password: crate::Secret::new("s3cret".into()) });
        let client = LokiClient::new(cfg).expect("valid config");
        let headers = client.request_headers().expect("headers");
        // base64("warden:s3cret")
        assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Basic d2FyZGVuOnMzY3JldA=="));
        let tail =
            client.tail("{a=\"b\"}", Utc::now(), TailOptions::default(), CancellationToken::new()).expect("tail");
        assert_eq!(tail.url.scheme(), "wss");
    }

    #[tokio::test]
    async fn invalid_inputs_are_rejected_before_any_request() {
        let client = LokiClient::new(LokiConfig::new(Url::parse("http://127.0.0.1:9").expect("url"))).expect("client");
        let now = Utc::now();
        let err = client.query_range(" ", now, now, Direction::Forward, 10).await.expect_err("empty query");
        assert!(matches!(err, Error::InvalidInput(_)));
        let err = client
            .query_range("{a=\"b\"}", now, now - chrono::Duration::seconds(1), Direction::Forward, 10)
            .await
            .expect_err("end before start");
        assert!(matches!(err, Error::InvalidInput(_)));
        let err = client.query_range("{a=\"b\"}", now, now, Direction::Forward, 0).await.expect_err("zero limit");
        assert!(matches!(err, Error::InvalidInput(_)));
        assert!(client.series(&[], None, None).await.is_err());
        assert!(client.label_values("", None, None).await.is_err());
    }

    /// A `wss://` tail server with a fresh self-signed certificate that sends one
    /// frame and then stays open.
    async fn start_wss_server() -> std::result::Result<(std::net::SocketAddr, String), Box<dyn std::error::Error>> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        crate::install_crypto_provider();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
        let pem = certified.cert.pem();
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                        return;
                    };
                    let frame = r#"{"streams":[{"stream":{"app":"tls"},"values":[["5","secure"]]}]}"#;
                    if ws.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        Ok((addr, pem))
    }

    #[tokio::test]
    async fn tail_over_wss_trusts_the_ca_file_only() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (addr, pem) = start_wss_server().await?;
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem)?;
        let url = Url::parse(&format!("https://{addr}"))?;
        let start = DateTime::from_timestamp_nanos(0);
        let options = TailOptions { max_consecutive_failures: Some(0), ..TailOptions::default() };

        let mut cfg = LokiConfig::new(url.clone());
        cfg.timeout = Duration::from_secs(5);
        let untrusted = LokiClient::new(cfg.clone())?;
        let mut tail = untrusted.tail("{app=\"tls\"}", start, options.clone(), CancellationToken::new())?;
        let err = match tail.next().await {
            Some(Err(e)) => e,
            other => panic!("expected a TLS failure, got {other:?}"),
        };
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
        assert!(tail.next().await.is_none());

        for tls in [
            TlsOptions { ca_file: Some(ca.clone()), insecure_skip_verify: false },
            TlsOptions { ca_file: None, insecure_skip_verify: true },
        ] {
            cfg.tls = tls;
            let client = LokiClient::new(cfg.clone())?;
            let cancel = CancellationToken::new();
            let mut tail = client.tail("{app=\"tls\"}", start, options.clone(), cancel.clone())?;
            match tail.next().await {
                Some(Ok(TailEvent::Connected { start_ns: 0, reconnect: false })) => {}
                other => panic!("expected Connected, got {other:?}"),
            }
            match tail.next().await {
                Some(Ok(TailEvent::Entry(e))) => assert_eq!(e.line, "secure"),
                other => panic!("expected the entry, got {other:?}"),
            }
            cancel.cancel();
            assert!(tail.next().await.is_none());
        }
        Ok(())
    }
}
