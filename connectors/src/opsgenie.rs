//! Opsgenie Alert API: create, acknowledge, annotate and close alerts by alias.
//!
//! One Warden incident is one Opsgenie alert whose `alias` is the incident's fingerprint.
//! Opsgenie deduplicates an open alert by alias, so a create sent twice (a retry after a
//! lost answer) counts once, and close or acknowledge reach the alert the create opened
//! (`?identifierType=alias`). Requests authenticate with `Authorization: GenieKey KEY`;
//! the key is added when the request is sent and never stored with the notification.
//!
//! Opsgenie answers `202` with `{"result": ..., "requestId": ...}` and processes the
//! request asynchronously. `401` (a bad key) and `422` (`{"message": ..., "errors":
//! {...}}`, a request it will never process) are permanent ([`Error::Rejected`]);
//! `429` ([`Error::RateLimited`]), `5xx` and transport failures are retryable.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::http;
use crate::{Error, Result, Secret, TlsOptions};

/// Opsgenie's API (US instance); the EU instance is `https://api.eu.opsgenie.com`.
pub const DEFAULT_URL: &str = "https://api.opsgenie.com";
/// Opsgenie's limits, in characters.
pub mod limits {
    pub const MESSAGE: usize = 130;
    pub const ALIAS: usize = 512;
    pub const DESCRIPTION: usize = 15_000;
    pub const NOTE: usize = 25_000;
    pub const TAGS: usize = 20;
    pub const DETAIL_VALUE: usize = 8_000;
}
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Opsgenie's priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
    P5,
}

impl Priority {
    /// Warden's severity in Opsgenie's terms: critical P1, warning P3, info P5.
    pub fn from_warden(s: &str) -> Self {
        match s {
            "critical" => Priority::P1,
            "info" => Priority::P5,
            _ => Priority::P3,
        }
    }
}

/// The body of a create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAlert {
    pub message: String,
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One request, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertRequest {
    Create(CreateAlert),
    Acknowledge {
        alias: String,
        note: Option<String>,
    },
    /// Adds a note to the alert (what Warden did, its analysis).
    Note {
        alias: String,
        note: String,
    },
    Close {
        alias: String,
        note: Option<String>,
    },
}

impl AlertRequest {
    pub fn alias(&self) -> &str {
        match self {
            AlertRequest::Create(c) => &c.alias,
            AlertRequest::Acknowledge { alias, .. }
            | AlertRequest::Note { alias, .. }
            | AlertRequest::Close { alias, .. } => alias,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default, rename = "requestId")]
    request_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, serde_json::Value>>,
}

/// An Opsgenie Alert API client.
#[derive(Clone)]
pub struct Opsgenie {
    http: reqwest::Client,
    base: Url,
    api_key: Secret,
    shown: String,
    timeout: Duration,
    source: String,
    tags: Vec<String>,
}

impl fmt::Debug for Opsgenie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opsgenie").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl Opsgenie {
    /// A client for the API at `url` (`None`: [`DEFAULT_URL`]) with an API integration key.
    pub fn new(url: Option<&str>, api_key: Secret, timeout: Duration) -> Result<Self> {
        let base = http::receiver_url("Opsgenie", url.unwrap_or(DEFAULT_URL))?;
        if api_key.expose().trim().is_empty() {
            return Err(Error::Config("Opsgenie API key is empty".into()));
        }
        reqwest::header::HeaderValue::from_str(&format!("GenieKey {}", api_key.expose()))
            .map_err(|_| Error::Config("Opsgenie API key contains characters not allowed in an HTTP header".into()))?;
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self {
            http: client,
            shown: format!("Opsgenie {}", http::display_url(&base)),
            base,
            api_key,
            timeout,
            source: "warden".into(),
            tags: Vec::new(),
        })
    }

    /// Adds `tags` to every alert this client creates.
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// The request's URL: `/v2/alerts` or `/v2/alerts/{alias}/{verb}?identifierType=alias`.
    fn url(&self, req: &AlertRequest) -> Result<Url> {
        let verb = match req {
            AlertRequest::Create(_) => None,
            AlertRequest::Acknowledge { .. } => Some("acknowledge"),
            AlertRequest::Note { .. } => Some("notes"),
            AlertRequest::Close { .. } => Some("close"),
        };
        let mut url = self.base.clone();
        {
            let mut segments =
                url.path_segments_mut().map_err(|_| Error::Config("Opsgenie URL cannot have a path".into()))?;
            segments.pop_if_empty().extend(["v2", "alerts"]);
            if let Some(verb) = verb {
                segments.push(req.alias()).push(verb);
            }
        }
        if verb.is_some() {
            url.query_pairs_mut().append_pair("identifierType", "alias");
        }
        Ok(url)
    }

    /// The JSON body with Opsgenie's limits applied.
    fn body(&self, req: &AlertRequest) -> Result<serde_json::Value> {
        let alias = req.alias();
        if alias.is_empty() || alias.chars().count() > limits::ALIAS {
            return Err(Error::InvalidInput(format!("Opsgenie alias must have 1 to {} characters", limits::ALIAS)));
        }
        let cut = |s: &str, max: usize| {
            if s.chars().count() > max {
                http::truncate_chars(s, max - 1)
            } else {
                s.to_string()
            }
        };
        let value = match req {
            AlertRequest::Create(c) => {
                let mut c = c.clone();
                c.message = cut(&c.message, limits::MESSAGE);
                if c.message.trim().is_empty() {
                    c.message = "-".into();
                }
                c.description = c.description.map(|d| cut(&d, limits::DESCRIPTION));
                for t in &self.tags {
                    if !c.tags.contains(t) {
                        c.tags.push(t.clone());
                    }
                }
                c.tags.truncate(limits::TAGS);
                for v in c.details.values_mut() {
                    *v = cut(v, limits::DETAIL_VALUE);
                }
                c.source.get_or_insert_with(|| self.source.clone());
                serde_json::to_value(&c)
            }
            AlertRequest::Acknowledge { note, .. } | AlertRequest::Close { note, .. } => {
                let mut body = serde_json::json!({"source": self.source, "user": "warden"});
                if let Some(n) = note {
                    body["note"] = serde_json::Value::String(cut(n, limits::NOTE));
                }
                Ok(body)
            }
            AlertRequest::Note { note, .. } => {
                Ok(serde_json::json!({"source": self.source, "user": "warden", "note": cut(note, limits::NOTE)}))
            }
        };
        value.map_err(|e| Error::InvalidInput(format!("Opsgenie request cannot be encoded: {e}")))
    }

    /// Sends `req`. `Ok` carries Opsgenie's `requestId` (empty when it sent none).
    pub async fn send(&self, req: &AlertRequest) -> Result<String> {
        let url = self.url(req)?;
        let body = self.body(req)?;
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, format!("GenieKey {}", self.api_key.expose()))
            .json(&body)
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        let (_, bytes) = http::answer(resp, MAX_BODY_BYTES, &self.shown, self.timeout).await.map_err(explain)?;
        let answer: Answer = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(answer.request_id.unwrap_or_default())
    }
}

/// Opsgenie's `{"message": ..., "errors": {"field": "why"}}` in words.
fn explain(e: Error) -> Error {
    match e {
        Error::Rejected { status, body } => {
            let body = match serde_json::from_str::<Answer>(&body) {
                Ok(Answer { message: Some(m), errors, .. }) => {
                    let details: Vec<String> = errors
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| {
                            format!("{k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                        })
                        .collect();
                    if details.is_empty() {
                        m
                    } else {
                        format!("{m} ({})", details.join("; "))
                    }
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

    fn client(base: &str) -> Opsgenie {
        Opsgenie::new(Some(base), Secret::new("g3nie-key".into()), Duration::from_secs(1)).expect("client")
    }

    fn create(message: &str) -> AlertRequest {
        AlertRequest::Create(CreateAlert {
            message: message.into(),
            alias: "fp/1 x".into(),
            description: None,
            tags: (0..30).map(|i| format!("t{i}")).collect(),
            details: BTreeMap::new(),
            entity: None,
            source: None,
            priority: Some(Priority::P3),
            note: None,
        })
    }

    #[test]
    fn urls_name_the_alert_by_alias() {
        let c = client("http://127.0.0.1:9");
        assert_eq!(c.url(&create("m")).expect("url").as_str(), "http://127.0.0.1:9/v2/alerts");
        let close = AlertRequest::Close { alias: "fp/1 x".into(), note: None };
        assert_eq!(
            c.url(&close).expect("url").as_str(),
            "http://127.0.0.1:9/v2/alerts/fp%2F1%20x/close?identifierType=alias"
        );
        let c = client("http://127.0.0.1:9/prefix/");
        let note = AlertRequest::Note { alias: "a".into(), note: "n".into() };
        assert_eq!(
            c.url(&note).expect("url").as_str(),
            "http://127.0.0.1:9/prefix/v2/alerts/a/notes?identifierType=alias"
        );
    }

    #[test]
    fn bodies_fit_the_limits() {
        let c = client("http://127.0.0.1:9");
        let body = c.body(&create(&"m".repeat(500))).expect("body");
        assert_eq!(body["message"].as_str().map(|s| s.chars().count()), Some(limits::MESSAGE));
        assert_eq!(body["tags"].as_array().map(Vec::len), Some(limits::TAGS));
        assert_eq!(body["priority"], "P3");
        assert_eq!(body["source"], "warden");
        let empty = AlertRequest::Close { alias: String::new(), note: None };
        assert!(matches!(c.body(&empty), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn stored_requests_round_trip_and_unknown_actions_fail() {
        let req = AlertRequest::Close { alias: "fp".into(), note: Some("resolved".into()) };
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(v["action"], "close");
        assert_eq!(serde_json::from_value::<AlertRequest>(v).expect("back"), req);
        assert!(serde_json::from_value::<AlertRequest>(serde_json::json!({"action": "snooze", "alias": "a"})).is_err());
    }

    #[test]
    fn refusals_are_explained_and_the_key_never_shows() {
        let body = r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.002,"requestId":"r1"}"#;
        let e = explain(Error::Rejected { status: 422, body: body.into() });
        assert!(
            e.to_string().contains("not processable. Please check the errors. (message: Message can not be empty.)"),
            "{e}"
        );
        assert!(!format!("{:?}", client("http://127.0.0.1:9")).contains("g3nie"));
        assert!(Opsgenie::new(None, Secret::new("bad\nkey".into()), Duration::from_secs(1)).is_err());
    }
}
