//! PagerDuty Events API v2: trigger, acknowledge and resolve alerts.
//!
//! One Warden incident is one PagerDuty alert: every event carries the incident's
//! fingerprint as `dedup_key`, so a repeated trigger (a retry after a lost answer) is
//! deduplicated by PagerDuty and a resolve closes exactly the alert its trigger opened.
//! That makes the outbox's at-least-once delivery safe here.
//!
//! The routing key (the integration key of a PagerDuty service) is added when the event
//! is sent, so the stored notification never holds it. PagerDuty answers `202` with
//! `{"status": "success", "dedup_key": ...}`; `400` with `{"status": "invalid event",
//! "errors": [...]}` for an event it will never accept ([`Error::Rejected`], permanent);
//! `429` when the service is over its rate ([`Error::RateLimited`]); `5xx` and transport
//! failures are retryable.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::http;
use crate::{Error, Result, Secret, TlsOptions};

/// PagerDuty's Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Longest `payload.summary` PagerDuty accepts.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Longest `dedup_key` PagerDuty accepts.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// Largest response body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the event does to the alert named by its `dedup_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

/// PagerDuty's severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// Warden's severity (`critical`, `warning`, `info`) in PagerDuty's terms; anything
    /// else is `error`.
    pub fn from_warden(s: &str) -> Self {
        match s {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            "info" => Severity::Info,
            _ => Severity::Error,
        }
    }
}

/// The `payload` of a trigger event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_details: Option<serde_json::Value>,
}

/// One event, as stored in the outbox (everything but the routing key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_action: EventAction,
    pub dedup_key: String,
    /// Required for `trigger`, ignored by PagerDuty otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
}

/// PagerDuty's answer, accepted or not.
#[derive(Debug, Clone, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// A PagerDuty Events API v2 client for one service (one routing key).
#[derive(Clone)]
pub struct PagerDuty {
    http: reqwest::Client,
    url: Url,
    routing_key: Secret,
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl PagerDuty {
    /// A client for `url` (`None`: [`DEFAULT_URL`]) sending with `routing_key`.
    pub fn new(url: Option<&str>, routing_key: Secret, timeout: Duration) -> Result<Self> {
        let url = http::receiver_url("PagerDuty", url.unwrap_or(DEFAULT_URL))?;
        if routing_key.expose().trim().is_empty() {
            return Err(Error::Config("PagerDuty routing key is empty".into()));
        }
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self { http: client, shown: format!("PagerDuty {}", http::display_url(&url)), url, routing_key, timeout })
    }

    /// Sends `event`. `Ok` carries the `dedup_key` PagerDuty filed it under.
    ///
    /// Before sending, a summary longer than PagerDuty's limit is cut and a trigger
    /// without a payload is refused ([`Error::InvalidInput`], permanent).
    pub async fn send(&self, event: &Event) -> Result<String> {
        let body = self.wire(event)?;
        let resp = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        let (_, bytes) = http::answer(resp, MAX_BODY_BYTES, &self.shown, self.timeout).await.map_err(explain)?;
        // A 2xx whose body is not PagerDuty's JSON was still accepted.
        let answer: Answer = serde_json::from_slice(&bytes).unwrap_or_default();
        tracing::debug!(target_url = %self.shown, status = %answer.status, "PagerDuty accepted the event");
        Ok(answer.dedup_key.unwrap_or_else(|| event.dedup_key.clone()))
    }

    /// The JSON sent: the event with the routing key and PagerDuty's limits applied.
    fn wire(&self, event: &Event) -> Result<serde_json::Value> {
        if event.dedup_key.is_empty() || event.dedup_key.chars().count() > MAX_DEDUP_KEY_CHARS {
            return Err(Error::InvalidInput(format!(
                "PagerDuty dedup_key must have 1 to {MAX_DEDUP_KEY_CHARS} characters"
            )));
        }
        let mut event = event.clone();
        match (&mut event.payload, event.event_action) {
            (None, EventAction::Trigger) => {
                return Err(Error::InvalidInput("a PagerDuty trigger event needs a payload".into()))
            }
            (Some(p), _) => {
                if p.summary.chars().count() > MAX_SUMMARY_CHARS {
                    p.summary = http::truncate_chars(&p.summary, MAX_SUMMARY_CHARS - 1);
                }
                if p.summary.trim().is_empty() {
                    p.summary = "-".into();
                }
            }
            (None, _) => {}
        }
        let mut value = serde_json::to_value(&event)
            .map_err(|e| Error::InvalidInput(format!("PagerDuty event cannot be encoded: {e}")))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("routing_key".into(), serde_json::Value::String(self.routing_key.expose().to_string()));
        }
        Ok(value)
    }
}

/// PagerDuty's `{"status": "invalid event", "message": ..., "errors": [...]}` in words.
fn explain(e: Error) -> Error {
    match e {
        Error::Rejected { status, body } => {
            let body = match serde_json::from_str::<Answer>(&body) {
                Ok(a) if !a.status.is_empty() || !a.message.is_empty() => {
                    let details =
                        if a.errors.is_empty() { String::new() } else { format!(" ({})", a.errors.join("; ")) };
                    format!("{}: {}{details}", a.status, a.message)
                }
                _ => body,
            };
            Error::Rejected { status, body }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(summary: &str) -> Event {
        Event {
            event_action: EventAction::Trigger,
            dedup_key: "fp-1".into(),
            payload: Some(Payload {
                summary: summary.into(),
                source: "warden".into(),
                severity: Severity::Warning,
                timestamp: None,
                component: None,
                group: None,
                class: None,
                custom_details: None,
            }),
            client: None,
            client_url: None,
        }
    }

    fn client() -> PagerDuty {
        PagerDuty::new(Some("http://127.0.0.1:9/v2/enqueue"), Secret::new("R0UTINGKEY".into()), Duration::from_secs(1))
            .expect("client")
    }

    #[test]
    fn the_wire_event_carries_the_key_and_fits_the_limits() {
        let wire = client().wire(&trigger(&"s".repeat(2_000))).expect("wire");
        assert_eq!(wire["routing_key"], "R0UTINGKEY");
        assert_eq!(wire["event_action"], "trigger");
        assert_eq!(wire["dedup_key"], "fp-1");
        assert_eq!(wire["payload"]["severity"], "warning");
        assert_eq!(wire["payload"]["summary"].as_str().map(|s| s.chars().count()), Some(MAX_SUMMARY_CHARS));
        let resolve = Event { event_action: EventAction::Resolve, payload: None, ..trigger("x") };
        let wire = client().wire(&resolve).expect("wire");
        assert!(wire.get("payload").is_none());
        let bare = Event { payload: None, ..trigger("x") };
        assert!(matches!(client().wire(&bare), Err(Error::InvalidInput(_))));
        let long = Event { dedup_key: "k".repeat(256), ..trigger("x") };
        assert!(matches!(client().wire(&long), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn the_key_never_shows() {
        let shown = format!("{:?}", client());
        assert!(!shown.contains("R0UTINGKEY"), "{shown}");
        assert!(PagerDuty::new(None, Secret::new(" ".into()), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn invalid_event_answers_are_explained() {
        let body = r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#;
        let e = explain(Error::Rejected { status: 400, body: body.into() });
        assert_eq!(
            e.to_string(),
            "request rejected with HTTP 400: invalid event: Event object is invalid (Length of 'routing_key' is incorrect (should be 32 characters))"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn severities() {
        assert_eq!(Severity::from_warden("critical"), Severity::Critical);
        assert_eq!(Severity::from_warden("info"), Severity::Info);
        assert_eq!(Severity::from_warden("other"), Severity::Error);
    }
}
