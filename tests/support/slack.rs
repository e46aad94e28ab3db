//! A Slack incoming-webhook receiver that answers like Slack.
//!
//! [`SlackReceiver::start`] listens on `127.0.0.1:0`; a POST to any path (the
//! webhook URL is [`SlackReceiver::webhook_url`], `/services/T000/B000/XXX`)
//! is recorded and answered like Slack's incoming webhooks do: `200 ok` for a
//! valid message, otherwise the documented error codes as a plain-text body:
//!
//! * `400 invalid_payload`: the body is not a JSON object (or `blocks` is not a list);
//! * `400 no_text`: neither `text` nor `blocks`;
//! * `400 invalid_blocks`: a Block Kit limit is broken (more than 50 blocks, a header
//!   over 150 characters, a section text over 3,000, more than 10 fields or one over
//!   2,000, more than 10 context elements, an empty text);
//! * `404 no_service`, `404 channel_not_found`, `403 action_prohibited`,
//!   `410 channel_is_archived`: the webhook refuses everything (injected);
//! * `429 rate_limited` with `Retry-After`, `500` (injected), and slow answers
//!   ([`SlackReceiver::set_delay`]); a post whose client gave up waiting is still
//!   processed and recorded, as Slack does.
//!
//! [`SlackReceiver::fail_next`] fails the next posts; [`SlackReceiver::reject_containing`]
//! fails every post whose body contains a marker, as a receiver that refuses one
//! particular message does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// Slack's Block Kit limits, as the receiver checks them.
pub mod limits {
    pub const BLOCKS: usize = 50;
    pub const HEADER_TEXT: usize = 150;
    pub const SECTION_TEXT: usize = 3_000;
    pub const SECTION_FIELDS: usize = 10;
    pub const FIELD_TEXT: usize = 2_000;
    pub const CONTEXT_ELEMENTS: usize = 10;
    pub const TEXT_OBJECT: usize = 3_000;
}

/// An injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlackFailure {
    /// 500 `internal_error`.
    ServerError,
    /// 429 `rate_limited` with `Retry-After: 1`.
    RateLimited,
    /// 429 `rate_limited` with `Retry-After: N` seconds.
    RateLimitedFor(u64),
    /// 400 `invalid_blocks`.
    InvalidBlocks,
    /// 400 `invalid_payload`.
    InvalidPayload,
    /// 400 `no_text`.
    NoText,
    /// 404 `no_service`: the webhook was revoked.
    NoService,
    /// 404 `channel_not_found`.
    ChannelNotFound,
    /// 403 `action_prohibited`.
    ActionProhibited,
    /// 410 `channel_is_archived`.
    ChannelIsArchived,
}

impl SlackFailure {
    fn response(self) -> Response {
        let (status, code) = match self {
            SlackFailure::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            SlackFailure::RateLimited => return rate_limited(1),
            SlackFailure::RateLimitedFor(s) => return rate_limited(s),
            SlackFailure::InvalidBlocks => (StatusCode::BAD_REQUEST, "invalid_blocks"),
            SlackFailure::InvalidPayload => (StatusCode::BAD_REQUEST, "invalid_payload"),
            SlackFailure::NoText => (StatusCode::BAD_REQUEST, "no_text"),
            SlackFailure::NoService => (StatusCode::NOT_FOUND, "no_service"),
            SlackFailure::ChannelNotFound => (StatusCode::NOT_FOUND, "channel_not_found"),
            SlackFailure::ActionProhibited => (StatusCode::FORBIDDEN, "action_prohibited"),
            SlackFailure::ChannelIsArchived => (StatusCode::GONE, "channel_is_archived"),
        };
        (status, code).into_response()
    }
}

fn rate_limited(seconds: u64) -> Response {
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds.to_string())], "rate_limited").into_response()
}

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct SlackPost {
    pub path: String,
    pub content_type: Option<String>,
    /// The raw body.
    pub body: String,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub json: Value,
    /// Status code answered.
    pub status: u16,
    /// The error code answered (`ok` for 200).
    pub answer: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl SlackPost {
    /// Whether the post was answered 200 (that is, delivered).
    pub fn accepted(&self) -> bool {
        self.status == 200
    }

    /// The `text` field of the payload.
    pub fn text(&self) -> Option<&str> {
        self.json.get("text").and_then(Value::as_str)
    }
}

#[derive(Default)]
struct Inner {
    posts: Vec<SlackPost>,
    fail: Option<(usize, SlackFailure)>,
    reject: Vec<(String, SlackFailure)>,
    delay: Duration,
}

/// Handle of a running receiver; it stops when dropped.
pub struct SlackReceiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlackReceiver {
    /// Starts the receiver on a free loopback port. Must be called inside a Tokio runtime.
    pub async fn start() -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the Slack test receiver")?;
        let addr = listener.local_addr()?;
        let state = inner.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            // Like Slack, a post is processed even when the client gave up waiting
            // for the answer: the handler runs on its own task.
            async move {
                tokio::spawn(async move { handle(&state, method, uri, headers, body).await })
                    .await
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// The webhook URL to configure: `http://127.0.0.1:PORT/services/T000/B000/XXX`.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/services/T000/B000/XXX", self.addr)
    }

    /// Makes the next `n` posts fail with `failure`. Replaces any earlier injection.
    pub fn fail_next(&self, n: usize, failure: SlackFailure) {
        self.inner.lock().unwrap().fail = (n > 0).then_some((n, failure));
    }

    /// Makes every post whose raw body contains `marker` fail with `failure`, until
    /// [`SlackReceiver::clear_rejections`].
    pub fn reject_containing(&self, marker: &str, failure: SlackFailure) {
        self.inner.lock().unwrap().reject.push((marker.to_string(), failure));
    }

    /// Drops every [`SlackReceiver::reject_containing`] rule.
    pub fn clear_rejections(&self) {
        self.inner.lock().unwrap().reject.clear();
    }

    /// Answers every post only after `delay` (a slow Slack).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Every post received (delivered or failed), oldest first.
    pub fn posts(&self) -> Vec<SlackPost> {
        self.inner.lock().unwrap().posts.clone()
    }

    /// The posts answered 200.
    pub fn delivered(&self) -> Vec<SlackPost> {
        self.posts().into_iter().filter(SlackPost::accepted).collect()
    }

    /// Delivered posts whose `text` starts with `prefix`.
    pub fn delivered_with_prefix(&self, prefix: &str) -> Vec<SlackPost> {
        self.delivered().into_iter().filter(|p| p.text().is_some_and(|t| t.starts_with(prefix))).collect()
    }

    /// The `text` of every post with its status, one a line, for assertion messages.
    pub fn summary(&self) -> String {
        self.posts()
            .iter()
            .map(|p| {
                let text: String = p.text().unwrap_or(&p.body).chars().take(200).collect();
                format!("{} {} {text}", p.status, p.answer)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn handle(state: &Arc<Mutex<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "invalid_method").into_response();
    }
    let at = std::time::Instant::now();
    let text = String::from_utf8_lossy(&body).into_owned();
    let (failure, delay) = {
        let mut inner = state.lock().unwrap();
        let injected = match inner.fail.as_mut() {
            Some((n, failure)) if *n > 0 => {
                *n -= 1;
                let f = *failure;
                if *n == 0 {
                    inner.fail = None;
                }
                Some(f)
            }
            _ => None,
        };
        let rejected = inner.reject.iter().find(|(marker, _)| text.contains(marker.as_str())).map(|(_, f)| *f);
        (injected.or(rejected), inner.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let (answer, response) = match failure {
        Some(f) => (body_code(f), f.response()),
        None => match validate(&json) {
            Ok(()) => ("ok", (StatusCode::OK, "ok").into_response()),
            Err(code) => (code, (StatusCode::BAD_REQUEST, code).into_response()),
        },
    };
    let status = response.status().as_u16();
    state.lock().unwrap().posts.push(SlackPost {
        path: uri.path().to_string(),
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string),
        body: text,
        json,
        status,
        answer: answer.to_string(),
        at,
    });
    response
}

fn body_code(f: SlackFailure) -> &'static str {
    match f {
        SlackFailure::ServerError => "internal_error",
        SlackFailure::RateLimited | SlackFailure::RateLimitedFor(_) => "rate_limited",
        SlackFailure::InvalidBlocks => "invalid_blocks",
        SlackFailure::InvalidPayload => "invalid_payload",
        SlackFailure::NoText => "no_text",
        SlackFailure::NoService => "no_service",
        SlackFailure::ChannelNotFound => "channel_not_found",
        SlackFailure::ActionProhibited => "action_prohibited",
        SlackFailure::ChannelIsArchived => "channel_is_archived",
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

/// A text object `{type, text}` with a non-empty text of at most `max` characters.
fn text_ok(obj: &Value, max: usize) -> bool {
    let text = &obj["text"];
    text.is_string() && !text.as_str().unwrap_or("").trim().is_empty() && chars(text) <= max
}

/// Slack's checks of an incoming-webhook message: `Err` is the error code.
pub fn validate(json: &Value) -> Result<(), &'static str> {
    let Some(obj) = json.as_object() else {
        return Err("invalid_payload");
    };
    let blocks = match obj.get("blocks") {
        None => None,
        Some(Value::Array(b)) => Some(b),
        Some(_) => return Err("invalid_payload"),
    };
    let has_text = obj.get("text").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty());
    if !has_text && blocks.is_none_or(|b| b.is_empty()) {
        return Err("no_text");
    }
    let Some(blocks) = blocks else { return Ok(()) };
    if blocks.len() > limits::BLOCKS {
        return Err("invalid_blocks");
    }
    for b in blocks {
        let ok = match b["type"].as_str().unwrap_or("") {
            "header" => text_ok(&b["text"], limits::HEADER_TEXT),
            "section" => {
                let text = b.get("text").is_none_or(|t| text_ok(t, limits::SECTION_TEXT));
                let fields = match b.get("fields") {
                    None => true,
                    Some(Value::Array(f)) => {
                        f.len() <= limits::SECTION_FIELDS && f.iter().all(|x| text_ok(x, limits::FIELD_TEXT))
                    }
                    Some(_) => false,
                };
                text && fields && (b.get("text").is_some() || b.get("fields").is_some())
            }
            "context" => match b.get("elements") {
                Some(Value::Array(e)) => {
                    !e.is_empty()
                        && e.len() <= limits::CONTEXT_ELEMENTS
                        && e.iter().all(|x| x.get("text").is_none() || text_ok(x, limits::TEXT_OBJECT))
                }
                _ => false,
            },
            "divider" | "image" | "actions" | "rich_text" | "input" | "file" | "video" => true,
            _ => false,
        };
        if !ok {
            return Err("invalid_blocks");
        }
    }
    Ok(())
}
