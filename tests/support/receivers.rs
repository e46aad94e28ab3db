//! Local PagerDuty, Opsgenie, Microsoft Teams and signed-webhook receivers that answer
//! as the real services document it, including their errors.
//!
//! [`Receiver::start`] listens on `127.0.0.1:0` and speaks one [`Kind`]:
//!
//! * **PagerDuty Events API v2** (`POST /v2/enqueue`): `202 {"status": "success",
//!   "message": "Event processed", "dedup_key": ...}`; `400 {"status": "invalid event",
//!   "message": "Event object is invalid", "errors": [...]}` for a routing key that is not
//!   32 characters or not the expected one, an unknown `event_action`, a trigger without
//!   `payload.summary`/`source`/a valid `severity`, a summary over 1,024 or a dedup key
//!   over 255 characters. Alerts are kept by `dedup_key` (triggered, acknowledged,
//!   resolved) as PagerDuty deduplicates them.
//! * **Opsgenie Alert API** (`POST /v2/alerts`, `POST /v2/alerts/{alias}/{close,
//!   acknowledge,notes}?identifierType=alias`): `Authorization: GenieKey KEY` or `401
//!   {"message": "Could not authenticate"}`; `422 {"message": "Request body is not
//!   processable. Please check the errors.", "errors": {...}}` for an empty or too long
//!   `message`, an alias over 512 characters or an unknown priority; `202 {"result":
//!   "Request will be processed", "requestId": ...}` otherwise. Alerts are kept by alias.
//! * **Teams Workflows webhook**: `202` for a `message` with an Adaptive Card attachment;
//!   `400 {"error": {"code": "InvalidRequestContent", ...}}` otherwise, `413` over 28 KB.
//! * **Signed webhook**: checks `X-Warden-Timestamp` (within five minutes) and
//!   `X-Warden-Signature` (`v1=` + hex HMAC-SHA256 of `v1:{timestamp}:{body}`, computed
//!   here independently of the sender); `401` when either is wrong, `200` otherwise.
//!
//! Faults for every kind: [`Receiver::fail_next`] (a [`Fault`]: the kind's documented
//! errors, 429 with `Retry-After`, 500/503), [`Receiver::set_delay`] (slow answers: a
//! request whose client gave up is still processed and recorded, as a real service does)
//! and [`Receiver::flaky`] (every n-th request answers 503).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// Which service the receiver plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Expects this routing key (32 characters).
    PagerDuty {
        routing_key: String,
    },
    /// Expects this API key.
    Opsgenie {
        api_key: String,
    },
    Teams,
    /// Checks signatures with this secret.
    Webhook {
        secret: String,
    },
}

/// An injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: N`.
    RateLimited(u64),
    /// 500 Internal Server Error.
    ServerError,
    /// 503 Service Unavailable.
    Unavailable,
    /// The kind's "will never accept this" answer: PagerDuty 400 invalid event,
    /// Opsgenie 422, Teams 400, webhook 400.
    Invalid,
    /// The kind's "bad credentials" answer: 401 (Teams: 403).
    Unauthorized,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub json: Value,
    pub status: u16,
    pub answer: String,
}

impl Received {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What the receiver keeps of one alert (PagerDuty by dedup key, Opsgenie by alias).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alert {
    /// `triggered`/`open`, `acknowledged`, `resolved`/`closed`.
    pub state: String,
    /// Accepted requests about it, in order (`trigger`, `resolve`, `create`, `note`, ...).
    pub history: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    fail: Vec<Fault>,
    delay: Duration,
    flaky: Option<usize>,
    alerts: BTreeMap<String, Alert>,
    next_id: u64,
}

/// Handle of a running receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    kind: Kind,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver of `kind` on a free loopback port (inside a Tokio runtime).
    pub async fn start(kind: Kind) -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a receiver")?;
        let addr = listener.local_addr()?;
        let (state, k) = (inner.clone(), kind.clone());
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (state, kind) = (state.clone(), k.clone());
            async move {
                tokio::spawn(async move { handle(&state, &kind, method, uri, headers, body).await })
                    .await
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, kind, inner, task })
    }

    /// The URL to configure: PagerDuty's enqueue endpoint, Opsgenie's API base, a
    /// Teams workflow URL (with a `sig`) or the webhook URL.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::PagerDuty { .. } => format!("http://{}/v2/enqueue", self.addr),
            Kind::Opsgenie { .. } => format!("http://{}", self.addr),
            Kind::Teams => format!(
                "http://{}/workflows/0a1b/triggers/manual/paths/invoke?api-version=2016-06-01&sig=t3st-sig",
                self.addr
            ),
            Kind::Webhook { .. } => format!("http://{}/hooks/warden", self.addr),
        }
    }

    /// The next `faults.len()` requests fail with these faults, in order.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.inner.lock().unwrap().fail = faults.iter().rev().copied().collect();
    }

    /// Answers every request only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Every `n`-th request (counting all) answers 503; `None` stops it.
    pub fn flaky(&self, n: Option<usize>) {
        self.inner.lock().unwrap().flaky = n.filter(|n| *n > 0);
    }

    /// Every request received, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The accepted requests.
    pub fn accepted(&self) -> Vec<Received> {
        self.received().into_iter().filter(Received::accepted).collect()
    }

    /// The alerts kept (PagerDuty, Opsgenie).
    pub fn alerts(&self) -> BTreeMap<String, Alert> {
        self.inner.lock().unwrap().alerts.clone()
    }

    /// Status and answer of every request, one a line, for assertion messages.
    pub fn summary(&self) -> String {
        self.received()
            .iter()
            .map(|r| format!("{} {} {} {}", r.status, r.method, r.path, r.answer.chars().take(160).collect::<String>()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn json_answer(status: u16, body: Value) -> (u16, String, Response) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = body.to_string();
    (status, text.clone(), (code, [(header::CONTENT_TYPE, "application/json")], text).into_response())
}

fn fault_answer(kind: &Kind, fault: Fault) -> (u16, String, Response) {
    match fault {
        Fault::RateLimited(secs) => {
            let resp = (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], "Too Many Requests")
                .into_response();
            (429, "Too Many Requests".into(), resp)
        }
        Fault::ServerError => json_answer(500, json!({"message": "Internal Server Error"})),
        Fault::Unavailable => json_answer(503, json!({"message": "Service Unavailable"})),
        Fault::Invalid => match kind {
            Kind::PagerDuty { .. } => pd_invalid(&["Event object is invalid".into()]),
            Kind::Opsgenie { .. } => og_unprocessable("message", "Message can not be empty."),
            Kind::Teams => teams_bad(
                "InvalidRequestContent",
                "The input body for trigger 'manual' of type 'Request' did not match its schema definition.",
            ),
            Kind::Webhook { .. } => json_answer(400, json!({"error": "bad payload"})),
        },
        Fault::Unauthorized => match kind {
            Kind::Opsgenie { .. } => og_unauthorized(),
            Kind::Teams => teams_bad_with(403, "DirectApiAuthorizationRequired", "The request must be authenticated."),
            _ => json_answer(401, json!({"message": "Unauthorized"})),
        },
    }
}

fn pd_invalid(errors: &[String]) -> (u16, String, Response) {
    json_answer(400, json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}))
}

fn og_unauthorized() -> (u16, String, Response) {
    json_answer(401, json!({"message": "Could not authenticate", "took": 0.0, "requestId": "og-req-auth"}))
}

fn og_unprocessable(field: &str, why: &str) -> (u16, String, Response) {
    json_answer(
        422,
        json!({"message": "Request body is not processable. Please check the errors.", "errors": {field: why}, "took": 0.001, "requestId": "og-req-422"}),
    )
}

fn teams_bad(code: &str, message: &str) -> (u16, String, Response) {
    teams_bad_with(400, code, message)
}

fn teams_bad_with(status: u16, code: &str, message: &str) -> (u16, String, Response) {
    json_answer(status, json!({"error": {"code": code, "message": message}}))
}

async fn handle(
    state: &Arc<Mutex<Inner>>,
    kind: &Kind,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let (fault, delay) = {
        let mut inner = state.lock().unwrap();
        let count = inner.received.len() + 1;
        let flaky = inner.flaky.is_some_and(|n| count.is_multiple_of(n)).then_some(Fault::Unavailable);
        (inner.fail.pop().or(flaky), inner.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let (status, answer, response) = match fault {
        Some(f) => fault_answer(kind, f),
        None if method != Method::POST => json_answer(405, json!({"message": "Method Not Allowed"})),
        None => {
            let mut inner = state.lock().unwrap();
            match kind {
                Kind::PagerDuty { routing_key } => pagerduty(&mut inner, routing_key, uri.path(), &json),
                Kind::Opsgenie { api_key } => opsgenie(&mut inner, api_key, &uri, &headers, &json),
                Kind::Teams => teams(&text, &json),
                Kind::Webhook { secret } => webhook(secret, &headers, &body),
            }
        }
    };
    let mut kept = BTreeMap::new();
    for (k, v) in &headers {
        if let Ok(v) = v.to_str() {
            kept.insert(k.as_str().to_string(), v.to_string());
        }
    }
    state.lock().unwrap().received.push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: kept,
        body: text,
        json,
        status,
        answer,
    });
    response
}

fn pagerduty(inner: &mut Inner, routing_key: &str, path: &str, json: &Value) -> (u16, String, Response) {
    if path != "/v2/enqueue" {
        return json_answer(404, json!({"status": "not found"}));
    }
    let Some(obj) = json.as_object() else {
        return pd_invalid(&["Event object is invalid".into()]);
    };
    let s = |v: &Value| v.as_str().map(str::to_string);
    let key = obj.get("routing_key").and_then(s).unwrap_or_default();
    if key.len() != 32 {
        return pd_invalid(&["Length of 'routing_key' is incorrect (should be 32 characters)".into()]);
    }
    if key != routing_key {
        return pd_invalid(&["'routing_key' is invalid".into()]);
    }
    let action = obj.get("event_action").and_then(s).unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        return pd_invalid(&["'event_action' is missing or blank".into()]);
    }
    let dedup = obj.get("dedup_key").and_then(s);
    if dedup.as_ref().is_some_and(|d| d.chars().count() > 255) {
        return pd_invalid(&["'dedup_key' is too long".into()]);
    }
    if action == "trigger" {
        let p = &json["payload"];
        let mut errors = Vec::new();
        match p["summary"].as_str() {
            None | Some("") => errors.push("'payload.summary' is missing or blank".to_string()),
            Some(t) if t.chars().count() > 1024 => errors.push("'payload.summary' is too long".to_string()),
            _ => {}
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            errors.push("'payload.source' is missing or blank".into());
        }
        if !["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or("")) {
            errors.push("'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')".into());
        }
        if !errors.is_empty() {
            return pd_invalid(&errors);
        }
    } else if dedup.is_none() {
        return pd_invalid(&["'dedup_key' is missing or blank".into()]);
    }
    inner.next_id += 1;
    let dedup = dedup.unwrap_or_else(|| format!("pd-generated-{}", inner.next_id));
    let alert = inner.alerts.entry(dedup.clone()).or_default();
    // Like PagerDuty: acknowledge and resolve of an unknown or resolved alert are accepted
    // and change nothing; a trigger of a resolved alert opens a new one.
    match action.as_str() {
        "trigger" => alert.state = "triggered".into(),
        "acknowledge" if alert.state == "triggered" => alert.state = "acknowledged".into(),
        "resolve" if alert.state == "triggered" || alert.state == "acknowledged" => alert.state = "resolved".into(),
        _ => {}
    }
    alert.history.push(action);
    json_answer(202, json!({"status": "success", "message": "Event processed", "dedup_key": dedup}))
}

fn opsgenie(inner: &mut Inner, api_key: &str, uri: &Uri, headers: &HeaderMap, json: &Value) -> (u16, String, Response) {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("GenieKey {api_key}") {
        return og_unauthorized();
    }
    let segments: Vec<String> = uri.path().trim_start_matches('/').split('/').map(percent_decode).collect();
    inner.next_id += 1;
    let accepted = |id: u64| {
        json_answer(
            202,
            json!({"result": "Request will be processed", "took": 0.002, "requestId": format!("og-req-{id}")}),
        )
    };
    match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["v2", "alerts"] => {
            let message = json["message"].as_str().unwrap_or("");
            if message.trim().is_empty() {
                return og_unprocessable("message", "Message can not be empty.");
            }
            if message.chars().count() > 130 {
                return og_unprocessable("message", "Message can not be longer than 130 characters.");
            }
            let alias = json["alias"].as_str().unwrap_or("").to_string();
            if alias.chars().count() > 512 {
                return og_unprocessable("alias", "Alias can not be longer than 512 characters.");
            }
            if let Some(p) = json.get("priority") {
                if !["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str().unwrap_or("")) {
                    return og_unprocessable("priority", "Priority should be one of [P1, P2, P3, P4, P5]");
                }
            }
            let alert = inner.alerts.entry(alias).or_default();
            // An open alert with the same alias is deduplicated, not created again.
            if alert.state != "open" {
                alert.state = "open".into();
            }
            alert.history.push("create".into());
            accepted(inner.next_id)
        }
        ["v2", "alerts", alias, verb] => {
            if !uri.query().unwrap_or("").contains("identifierType=alias") {
                return json_answer(404, json!({"message": "Alert with id not found", "took": 0.0}));
            }
            let alert = inner.alerts.entry(alias.to_string()).or_default();
            match *verb {
                "close" => alert.state = "closed".into(),
                "acknowledge" => alert.state = "acknowledged".into(),
                "notes" => {
                    let note = json["note"].as_str().unwrap_or("");
                    if note.is_empty() {
                        return og_unprocessable("note", "Note can not be empty.");
                    }
                    alert.notes.push(note.to_string());
                }
                _ => return json_answer(404, json!({"message": "Not found"})),
            }
            alert.history.push(verb.to_string());
            accepted(inner.next_id)
        }
        _ => json_answer(404, json!({"message": "Not found"})),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn teams(text: &str, json: &Value) -> (u16, String, Response) {
    if text.len() > 28 * 1024 {
        return teams_bad_with(413, "MessageTooLarge", "The message exceeds 28 KB.");
    }
    let card = &json["attachments"][0];
    let ok = json["type"] == "message"
        && card["contentType"] == "application/vnd.microsoft.card.adaptive"
        && card["content"]["type"] == "AdaptiveCard"
        && card["content"]["version"].is_string()
        && card["content"]["body"].as_array().is_some_and(|b| {
            !b.is_empty()
                && b.iter()
                    .all(|e| matches!(e["type"].as_str(), Some("TextBlock" | "FactSet" | "Container" | "ColumnSet")))
        });
    if !ok {
        return teams_bad(
            "InvalidRequestContent",
            "The input body for trigger 'manual' of type 'Request' did not match its schema definition.",
        );
    }
    let resp = StatusCode::ACCEPTED.into_response();
    (202, String::new(), resp)
}

/// `v1=` + hex HMAC-SHA256 of `v1:{timestamp}:{body}`.
pub fn webhook_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn webhook(secret: &str, headers: &HeaderMap, body: &[u8]) -> (u16, String, Response) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let ts = get("x-warden-timestamp");
    let now = chrono::Utc::now().timestamp();
    match ts.parse::<i64>() {
        Ok(t) if (now - t).abs() <= 300 => {}
        _ => return json_answer(401, json!({"error": "stale or missing timestamp"})),
    }
    if get("x-warden-signature") != webhook_signature(secret, &ts, body) {
        return json_answer(401, json!({"error": "signature mismatch"}));
    }
    if get("x-warden-delivery").is_empty() {
        return json_answer(400, json!({"error": "no delivery id"}));
    }
    json_answer(200, json!({"ok": true}))
}
