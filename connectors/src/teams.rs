//! Microsoft Teams through a Workflows ("When a Teams webhook request is received")
//! webhook, with an Adaptive Card.
//!
//! The Office 365 connectors that took a `MessageCard` are retired; a Workflows webhook
//! takes a `message` whose attachment is an Adaptive Card ([`card_message`]) and answers
//! `202 Accepted`. The webhook URL carries its signature (`sig=` in the query), so it is a
//! credential: it never appears in errors, logs or `Debug` output.
//!
//! Errors: `400` (a payload the flow cannot parse) and `401`/`403`/`404` (a revoked or
//! wrong URL) are permanent ([`Error::Rejected`]); `429` with `Retry-After`, `5xx` and
//! transport failures are retryable. A message larger than Teams' 28 KB limit is cut
//! before it is sent ([`fit_card_message`]).

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http;
use crate::{Result, Secret, TlsOptions};

/// Largest message Teams accepts, in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;
/// Longest text block kept when a message must be cut.
const CUT_TEXT_CHARS: usize = 1_000;
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The Adaptive Card schema version sent (the highest Teams renders everywhere).
pub const CARD_VERSION: &str = "1.4";

/// A Teams message carrying one Adaptive Card with `body` (a list of card elements).
pub fn card_message(body: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "msteams": {"width": "Full"},
                "body": body,
            }
        }]
    })
}

/// A `TextBlock` element.
pub fn text_block(text: &str, heading: bool) -> Value {
    if heading {
        json!({"type": "TextBlock", "text": text, "wrap": true, "weight": "Bolder", "size": "Medium"})
    } else {
        json!({"type": "TextBlock", "text": text, "wrap": true})
    }
}

/// A `FactSet` element (name, value pairs).
pub fn fact_set(facts: &[(&str, String)]) -> Value {
    json!({"type": "FactSet", "facts": facts.iter().map(|(t, v)| json!({"title": t, "value": v})).collect::<Vec<_>>()})
}

/// `message` cut to fit [`MAX_MESSAGE_BYTES`]: long `TextBlock` texts are shortened first,
/// then trailing card elements are dropped (a last text block says so).
pub fn fit_card_message(message: &Value) -> Value {
    let mut out = message.clone();
    if out.to_string().len() <= MAX_MESSAGE_BYTES {
        return out;
    }
    let Some(body) = out.pointer_mut("/attachments/0/content/body").and_then(Value::as_array_mut) else {
        return out;
    };
    for el in body.iter_mut() {
        if let Some(Value::String(text)) = el.get_mut("text") {
            if text.chars().count() > CUT_TEXT_CHARS {
                *text = format!("{} (truncated)", http::truncate_chars(text, CUT_TEXT_CHARS));
            }
        }
    }
    let mut dropped = 0;
    while body.len() > 1 && serde_json::to_string(&*body).map_or(0, |s| s.len()) > MAX_MESSAGE_BYTES - 512 {
        body.pop();
        dropped += 1;
    }
    if dropped > 0 {
        body.push(text_block(
            &format!("… {dropped} more element(s) not shown (Teams limits a message to 28 KB)"),
            false,
        ));
    }
    out
}

/// A Teams Workflows webhook.
#[derive(Clone)]
pub struct TeamsWebhook {
    http: reqwest::Client,
    url: Secret,
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for TeamsWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsWebhook").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl TeamsWebhook {
    /// Checks the URL (http or https with a host) and builds the client.
    pub fn new(url: Secret, timeout: Duration) -> Result<Self> {
        let parsed = http::receiver_url("Teams webhook", url.expose())?;
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self { http: client, shown: format!("Teams webhook {}", http::display_origin(&parsed)), url, timeout })
    }

    /// Posts `message` (made to fit first). `Ok` for any 2xx answer.
    pub async fn post(&self, message: &Value) -> Result<()> {
        let message = fit_card_message(message);
        let resp = self
            .http
            .post(self.url.expose())
            .json(&message)
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        http::answer(resp, MAX_BODY_BYTES, &self.shown, self.timeout).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_message_has_the_workflows_shape() {
        let m = card_message(vec![text_block("Incident #1", true), fact_set(&[("Severity", "warning".into())])]);
        assert_eq!(m["type"], "message");
        assert_eq!(m["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(m["attachments"][0]["content"]["type"], "AdaptiveCard");
        assert_eq!(m["attachments"][0]["content"]["body"][1]["facts"][0]["title"], "Severity");
    }

    #[test]
    fn large_messages_are_cut_to_fit() {
        let body: Vec<Value> = (0..100).map(|i| text_block(&format!("{i} {}", "x".repeat(2_000)), false)).collect();
        let fit = fit_card_message(&card_message(body));
        assert!(fit.to_string().len() <= MAX_MESSAGE_BYTES, "{}", fit.to_string().len());
        let els = fit["attachments"][0]["content"]["body"].as_array().expect("body");
        assert!(els.last().and_then(|e| e["text"].as_str()).is_some_and(|t| t.contains("not shown")));
        assert!(els[0]["text"].as_str().is_some_and(|t| t.ends_with("(truncated)")));
        let small = card_message(vec![text_block("hi", false)]);
        assert_eq!(fit_card_message(&small), small);
    }

    #[test]
    fn the_url_never_shows() {
        let hook = TeamsWebhook::new(
            Secret::new(
                "https://prod.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=S3CRET".into(),
            ),
            Duration::from_secs(1),
        )
        .expect("valid");
        assert!(!format!("{hook:?}").contains("S3CRET"));
        let err = TeamsWebhook::new(Secret::new("nope S3CRET".into()), Duration::from_secs(1)).expect_err("invalid");
        assert!(!err.to_string().contains("S3CRET"), "{err}");
    }
}
