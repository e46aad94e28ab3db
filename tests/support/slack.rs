//! A Slack incoming-webhook receiver.
//!
//! [`SlackReceiver::start`] listens on `127.0.0.1:0`; a POST to any path (the
//! webhook URL is [`SlackReceiver::webhook_url`], `/services/T000/B000/XXX`)
//! is recorded and answered `200 ok`, like Slack does. [`SlackReceiver::fail_next`]
//! makes the next posts fail with 500 or with 429 and `Retry-After: 1`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// How [`SlackReceiver::fail_next`] fails posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlackFailure {
    /// 500 `internal_error`.
    ServerError,
    /// 429 `rate_limited` with `Retry-After: 1`.
    RateLimited,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Slack test receiver")?;
        let addr = listener.local_addr()?;
        let state = inner.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(&state, method, uri, headers, body) }
            },
        );
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

    /// Every post received (delivered or failed), oldest first.
    pub fn posts(&self) -> Vec<SlackPost> {
        self.inner.lock().unwrap().posts.clone()
    }

    /// The posts answered 200.
    pub fn delivered(&self) -> Vec<SlackPost> {
        self.posts()
            .into_iter()
            .filter(SlackPost::accepted)
            .collect()
    }

    /// Delivered posts whose `text` starts with `prefix`.
    pub fn delivered_with_prefix(&self, prefix: &str) -> Vec<SlackPost> {
        self.delivered()
            .into_iter()
            .filter(|p| p.text().is_some_and(|t| t.starts_with(prefix)))
            .collect()
    }

    /// The `text` of every post with its status, one a line, for assertion messages.
    pub fn summary(&self) -> String {
        self.posts()
            .iter()
            .map(|p| format!("{} {}", p.status, p.text().unwrap_or(&p.body)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn handle(
    state: &Arc<Mutex<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "invalid_method").into_response();
    }
    let mut inner = state.lock().unwrap();
    let failure = match inner.fail.as_mut() {
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
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let response = match failure {
        Some(SlackFailure::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error").into_response()
        }
        Some(SlackFailure::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "rate_limited",
        )
            .into_response(),
        None if json.is_null() => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        None if json.get("text").is_none() && json.get("blocks").is_none() => {
            (StatusCode::BAD_REQUEST, "no_text").into_response()
        }
        None => (StatusCode::OK, "ok").into_response(),
    };
    inner.posts.push(SlackPost {
        path: uri.path().to_string(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: text,
        json,
        status: response.status().as_u16(),
    });
    response
}
