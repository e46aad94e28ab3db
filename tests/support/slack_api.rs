//! A Slack Web API server for Slack app mode: `chat.postMessage`, `chat.update` and
//! `usergroups.users.list`, answering as Slack documents it.
//!
//! * The token: `Authorization: Bearer TOKEN`; none gives `{"ok": false, "error":
//!   "not_authed"}`, another one `invalid_auth` (HTTP 200, as Slack answers).
//! * The body must be JSON (`Content-Type: application/json`), else `invalid_json`.
//! * `chat.postMessage`: a known `channel` (else `channel_not_found`), `text` or
//!   `blocks` (else `no_text`), blocks within Block Kit's limits (else `invalid_blocks`,
//!   checked by [`crate::slack::validate`]), a `thread_ts` that is a message of the
//!   channel (else `thread_not_found`); answers `{"ok": true, "channel", "ts",
//!   "message"}` with a fresh `ts`.
//! * `chat.update`: `channel` and `ts` of an existing message (else
//!   `message_not_found`); the message's text and blocks are replaced.
//! * `usergroups.users.list`: the members of a configured group (else
//!   `no_such_subteam`).
//! * Faults: [`SlackApi::fail_next`] answers 429 with `Retry-After` or an `{"ok": false}`
//!   code; [`SlackApi::set_delay`] slows every answer.
//!
//! [`sign`] computes Slack's v0 request signature independently of Warden's verifier, to
//! press buttons in tests ([`button_press`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// An injected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlackApiFault {
    /// HTTP 429 with `Retry-After: N`.
    RateLimited(u64),
    /// HTTP 200 `{"ok": false, "error": CODE}`.
    Error(String),
    /// HTTP 503.
    Unavailable,
}

/// A message as the server keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    /// How many times `chat.update` edited it.
    pub updates: usize,
}

impl Message {
    /// The `value` of the button `action_id` in the message's blocks, as Slack would send
    /// it back when the button is pressed.
    pub fn button_value(&self, action_id: &str) -> Option<String> {
        self.blocks.as_array()?.iter().find_map(|b| {
            b.get("elements")?.as_array()?.iter().find_map(|e| {
                (e.get("action_id")?.as_str()? == action_id).then(|| e.get("value")?.as_str().map(str::to_string))?
            })
        })
    }
}

/// One call received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// `ok`, or the error code / HTTP status answered.
    pub answer: String,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: Vec<Message>,
    fail: Vec<SlackApiFault>,
    delay: Duration,
    next_ts: u64,
    groups: BTreeMap<String, Vec<String>>,
}

/// Handle of a running server; it stops when dropped.
pub struct SlackApi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlackApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlackApi {
    /// Starts a server that accepts `token` and knows `channels`.
    pub async fn start(token: &str, channels: &[&str]) -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner { next_ts: 100, ..Inner::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the Slack API server")?;
        let addr = listener.local_addr()?;
        let (state, token) = (inner.clone(), token.to_string());
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (state, token, channels) = (state.clone(), token.clone(), channels.clone());
            async move { handle(&state, &token, &channels, uri, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// The API base to configure (`notify.slack_app.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Adds a user group with its members.
    pub fn add_group(&self, id: &str, members: &[&str]) {
        self.inner.lock().unwrap().groups.insert(id.into(), members.iter().map(|m| m.to_string()).collect());
    }

    /// The next calls fail with `faults`, in order.
    pub fn fail_next(&self, faults: &[SlackApiFault]) {
        self.inner.lock().unwrap().fail = faults.iter().rev().cloned().collect();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Every message posted, top-level and replies, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().unwrap().messages.clone()
    }

    /// Top-level messages (not thread replies).
    pub fn top_level(&self) -> Vec<Message> {
        self.messages().into_iter().filter(|m| m.thread_ts.is_none()).collect()
    }

    /// Replies in the thread of `ts`.
    pub fn replies(&self, ts: &str) -> Vec<Message> {
        self.messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(ts)).collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Method and answer of every call, one a line.
    pub fn summary(&self) -> String {
        self.calls().iter().map(|c| format!("{} {}", c.method, c.answer)).collect::<Vec<_>>().join("\n")
    }
}

fn ok_false(code: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"ok": false, "error": code}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

async fn handle(
    state: &Arc<Mutex<Inner>>,
    token: &str,
    channels: &[String],
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = uri.path().trim_start_matches("/api/").to_string();
    let (fault, delay) = {
        let mut inner = state.lock().unwrap();
        (inner.fail.pop(), inner.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (answer, response) = match fault {
        Some(SlackApiFault::RateLimited(s)) => (
            "429".to_string(),
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, s.to_string())], "").into_response(),
        ),
        Some(SlackApiFault::Unavailable) => ("503".to_string(), StatusCode::SERVICE_UNAVAILABLE.into_response()),
        Some(SlackApiFault::Error(code)) => (code.clone(), ok_false(&code)),
        None => {
            let (code, resp) = answer(state, token, channels, &method, &headers, &json);
            (code, resp)
        }
    };
    state.lock().unwrap().calls.push(Call { method, body: json, answer });
    response
}

fn answer(
    state: &Arc<Mutex<Inner>>,
    token: &str,
    channels: &[String],
    method: &str,
    headers: &HeaderMap,
    json: &Value,
) -> (String, Response) {
    let fail = |code: &str| (code.to_string(), ok_false(code));
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => return fail("not_authed"),
        Some(t) if t != token => return fail("invalid_auth"),
        Some(_) => {}
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_body || !json.is_object() {
        return fail("invalid_json");
    }
    let mut inner = state.lock().unwrap();
    let s = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    match method {
        "chat.postMessage" => {
            let Some(channel) = s("channel").filter(|c| channels.contains(c)) else {
                return fail("channel_not_found");
            };
            if let Err(code) = crate::slack::validate(json) {
                return fail(code);
            }
            let thread_ts = s("thread_ts");
            if let Some(t) = &thread_ts {
                if !inner.messages.iter().any(|m| &m.ts == t && m.channel == channel) {
                    return fail("thread_not_found");
                }
            }
            inner.next_ts += 1;
            let ts = format!("1700000000.{:06}", inner.next_ts);
            let msg = Message {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                text: s("text").unwrap_or_default(),
                blocks: json.get("blocks").cloned().unwrap_or(Value::Null),
                updates: 0,
            };
            inner.messages.push(msg);
            (
                "ok".into(),
                ok(
                    json!({"ok": true, "channel": channel, "ts": ts, "message": {"type": "message", "text": s("text"), "ts": ts}}),
                ),
            )
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (s("channel"), s("ts")) else {
                return fail("invalid_arguments");
            };
            if let Err(code) = crate::slack::validate(json) {
                return fail(code);
            }
            let Some(m) = inner.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts) else {
                return fail("message_not_found");
            };
            m.text = s("text").unwrap_or_default();
            m.blocks = json.get("blocks").cloned().unwrap_or(Value::Null);
            m.updates += 1;
            ("ok".into(), ok(json!({"ok": true, "channel": channel, "ts": ts, "text": m.text})))
        }
        "usergroups.users.list" => match s("usergroup").and_then(|g| inner.groups.get(&g).cloned()) {
            Some(users) => ("ok".into(), ok(json!({"ok": true, "users": users}))),
            None => fail("no_such_subteam"),
        },
        _ => fail("unknown_method"),
    }
}

/// Slack's v0 signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The form body Slack sends when `user` presses the button `action_id` with `value` on
/// the message `message_ts` in `channel`.
pub fn button_press(action_id: &str, value: &str, user: &str, channel: &str, message_ts: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": format!("{}-name", user.to_lowercase()), "name": format!("{}-name", user.to_lowercase()), "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "111.222.333",
        "team": {"id": "T0TEST", "domain": "test"},
        "channel": {"id": channel, "name": "incidents"},
        "message": {"type": "message", "ts": message_ts, "text": "approval requested"},
        "response_url": "http://127.0.0.1:9/actions/T0TEST/1/abc",
        "actions": [{"action_id": action_id, "block_id": "warden_approval", "type": "button", "value": value, "action_ts": "1700000001.000001"}]
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}
