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
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
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

mod tail;
pub use tail::*;

mod pager;
use pager::*;

mod parse;
use parse::*;

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
        let retry_after = crate::http::retry_after(resp.headers());
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

#[cfg(test)]
mod tests;
