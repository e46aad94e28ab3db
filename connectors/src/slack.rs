//! Posting notifications to a Slack incoming webhook.
//!
//! The outbox delivers notifications at least once and retries failures, so this
//! module's job is to classify the outcome precisely: 2xx is delivered, 429 carries
//! the `Retry-After` delay, other 4xx mean the payload will never be accepted (the
//! body is Slack's error code, e.g. `invalid_blocks` or `no_service`), and 5xx or
//! transport failures are worth retrying. The webhook URL is a credential; it never
//! appears in errors, logs or `Debug` output.
//!
//! Slack rejects a whole message when one block breaks a Block Kit limit, so every
//! payload goes through [`fit_block_kit`] before it is posted: over-long texts are cut
//! with a marker and surplus blocks or fields are folded, never refused.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::http;
use crate::{Error, Result, Secret, TlsOptions};

/// Longest part of a rejection body kept in [`Error::Rejected`].
const MAX_REJECTED_BODY_CHARS: usize = 512;
/// Largest response body read from the webhook.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A Slack incoming webhook.
#[derive(Clone)]
pub struct SlackWebhook {
    http: reqwest::Client,
    url: Secret,
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhook").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl SlackWebhook {
    /// Validates the webhook URL (http or https) and builds the HTTP client.
    pub fn new(url: Secret, timeout: Duration) -> Result<Self> {
        let parsed = Url::parse(url.expose())
            .map_err(|e| Error::Config(format!("Slack webhook URL is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::Config(format!(
                "Slack webhook URL must be an http(s) URL with a host, got {}",
                http::display_origin(&parsed)
            )));
        }
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self { http: client, shown: format!("Slack webhook {}", http::display_origin(&parsed)), url, timeout })
    }

    /// Posts `payload` as JSON. `Ok(())` only for a 2xx answer.
    ///
    /// 429 gives [`Error::RateLimited`] with the `Retry-After` delay, other 4xx give
    /// [`Error::Rejected`] (not retryable), 5xx give [`Error::Http`], and transport
    /// failures give [`Error::Connect`] or [`Error::Timeout`] (all retryable).
    /// The payload is first made to fit Slack's Block Kit limits ([`fit_block_kit`]).
    pub async fn post(&self, payload: &serde_json::Value) -> Result<()> {
        let payload = fit_block_kit(payload);
        let resp = self
            .http
            .post(self.url.expose())
            .json(&payload)
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        let status = resp.status();
        let retry_after = crate::http::retry_after(resp.headers());
        let body = http::read_body(resp, MAX_BODY_BYTES, &self.shown, self.timeout).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body).trim().to_string();
        let code = status.as_u16();
        if status.is_success() {
            tracing::debug!(target_url = %self.shown, status = code, "Slack webhook accepted message");
            Ok(())
        } else if code == 429 {
            Err(Error::RateLimited { retry_after })
        } else if status.is_client_error() {
            Err(Error::Rejected { status: code, body: http::truncate_chars(&body, MAX_REJECTED_BODY_CHARS) })
        } else {
            Err(Error::Http {
                url: self.shown.clone(),
                status: Some(code),
                message: if body.is_empty() {
                    status.canonical_reason().unwrap_or("unexpected status").to_string()
                } else {
                    http::truncate_chars(&body, MAX_REJECTED_BODY_CHARS)
                },
            })
        }
    }
}

/// Slack's documented limits for incoming-webhook messages (characters).
pub mod limits {
    /// The top-level `text` (the notification fallback).
    pub const TEXT: usize = 40_000;
    /// Blocks in one message.
    pub const BLOCKS: usize = 50;
    /// A `header` block's plain text.
    pub const HEADER_TEXT: usize = 150;
    /// A `section` block's text.
    pub const SECTION_TEXT: usize = 3_000;
    /// Fields in one `section`.
    pub const SECTION_FIELDS: usize = 10;
    /// One field's text.
    pub const FIELD_TEXT: usize = 2_000;
    /// Elements of a `context` block.
    pub const CONTEXT_ELEMENTS: usize = 10;
    /// A text object anywhere else (context elements).
    pub const TEXT_OBJECT: usize = 3_000;
}

/// Appended where a text was cut to fit a limit.
pub const TRUNCATION_MARKER: &str = "… (truncated)";

/// A copy of `payload` that fits Slack's Block Kit limits ([`limits`]): texts longer
/// than their limit are cut (on a character boundary, never inside an `&amp;`-style
/// escape) and end with [`TRUNCATION_MARKER`]; empty texts, which Slack refuses,
/// become `-`; fields beyond ten are folded into the tenth, context elements beyond
/// ten are dropped with a marker, and blocks beyond fifty are replaced by one context
/// block that says how many were left out. Blocks of other types pass unchanged.
pub fn fit_block_kit(payload: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let mut out = payload.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    if let Some(Value::String(text)) = obj.get_mut("text") {
        if let Some(cut) = cut_text(text, limits::TEXT, true) {
            *text = cut;
        }
    }
    if let Some(Value::Array(blocks)) = obj.get_mut("blocks") {
        if blocks.len() > limits::BLOCKS {
            let left_out = blocks.len() - (limits::BLOCKS - 1);
            blocks.truncate(limits::BLOCKS - 1);
            blocks.push(serde_json::json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("… {left_out} more block(s) not shown (Slack allows {})", limits::BLOCKS)}]
            }));
        }
        for block in blocks.iter_mut() {
            fit_block(block);
        }
    }
    out
}

fn fit_block(block: &mut serde_json::Value) {
    use serde_json::Value;
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    match kind.as_str() {
        "header" => fit_text_object(block.get_mut("text"), limits::HEADER_TEXT),
        "section" => {
            fit_text_object(block.get_mut("text"), limits::SECTION_TEXT);
            if let Some(Value::Array(fields)) = block.get_mut("fields") {
                if fields.len() > limits::SECTION_FIELDS {
                    let rest: Vec<String> = fields
                        .drain(limits::SECTION_FIELDS - 1..)
                        .filter_map(|f| f.get("text").and_then(Value::as_str).map(str::to_string))
                        .collect();
                    fields.push(serde_json::json!({"type": "mrkdwn", "text": rest.join("\n")}));
                }
                for f in fields.iter_mut() {
                    fit_text_object(Some(f), limits::FIELD_TEXT);
                }
            }
        }
        "context" => {
            if let Some(Value::Array(elements)) = block.get_mut("elements") {
                if elements.len() > limits::CONTEXT_ELEMENTS {
                    let left_out = elements.len() - (limits::CONTEXT_ELEMENTS - 1);
                    elements.truncate(limits::CONTEXT_ELEMENTS - 1);
                    elements.push(serde_json::json!({"type": "mrkdwn", "text": format!("… {left_out} more")}));
                }
                for e in elements.iter_mut() {
                    if e.get("text").is_some() {
                        fit_text_object(Some(e), limits::TEXT_OBJECT);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Cuts a text object's `text` to `max` characters; an empty one becomes `-`.
fn fit_text_object(obj: Option<&mut serde_json::Value>, max: usize) {
    let Some(obj) = obj else { return };
    let mrkdwn = obj.get("type").and_then(serde_json::Value::as_str) == Some("mrkdwn");
    if let Some(serde_json::Value::String(text)) = obj.get_mut("text") {
        if text.trim().is_empty() {
            *text = "-".into();
        } else if let Some(cut) = cut_text(text, max, mrkdwn) {
            *text = cut;
        }
    }
}

/// `text` cut to at most `max` characters including [`TRUNCATION_MARKER`], or `None`
/// when it fits. With `escapes`, a cut never splits an `&...;` escape.
fn cut_text(text: &str, max: usize, escapes: bool) -> Option<String> {
    if text.chars().count() <= max {
        return None;
    }
    let keep = max.saturating_sub(TRUNCATION_MARKER.chars().count());
    let end = text.char_indices().nth(keep).map(|(i, _)| i).unwrap_or(text.len());
    let mut head = &text[..end];
    if escapes {
        if let Some(amp) = head.rfind('&') {
            if !head[amp..].contains(';') && head.len() - amp < 8 {
                head = &head[..amp];
            }
        }
    }
    Some(format!("{}{TRUNCATION_MARKER}", head.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(v: &serde_json::Value) -> usize {
        v.as_str().map(|s| s.chars().count()).unwrap_or(0)
    }

    #[test]
    fn block_kit_limits_are_enforced_by_cutting() {
        let long = "é".repeat(5_000);
        let fields: Vec<_> = (0..14)
            .map(|i| serde_json::json!({"type": "mrkdwn", "text": format!("f{i} {}", "x".repeat(2_500))}))
            .collect();
        let mut blocks = vec![
            serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": long}}),
            serde_json::json!({"type": "section", "fields": fields}),
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": ""}}),
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{}&amp;{}", "a".repeat(2_984), "b".repeat(100))}}),
        ];
        for i in 0..60 {
            blocks.push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("b{i}")}}));
        }
        let payload = serde_json::json!({"text": "t".repeat(50_000), "blocks": blocks});
        let fit = fit_block_kit(&payload);
        assert_eq!(chars(&fit["text"]), limits::TEXT);
        assert!(fit["text"].as_str().unwrap_or("").ends_with(TRUNCATION_MARKER));
        let blocks = fit["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), limits::BLOCKS);
        assert_eq!(chars(&blocks[0]["text"]["text"]), limits::HEADER_TEXT);
        let fields = blocks[1]["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), limits::SECTION_FIELDS);
        assert!(fields.iter().all(|f| chars(&f["text"]) <= limits::FIELD_TEXT));
        assert_eq!(blocks[2]["text"]["text"], "-");
        // The cut does not leave half an escape behind.
        let cut = blocks[3]["text"]["text"].as_str().expect("text");
        assert!(cut.chars().count() <= limits::SECTION_TEXT);
        assert!(cut.ends_with(&format!("a{TRUNCATION_MARKER}")), "{}", &cut[cut.len() - 40..]);
        assert!(!cut.contains('&'), "half an escape left");
        let last = blocks[limits::BLOCKS - 1].to_string();
        assert!(last.contains("15 more block(s) not shown"), "{last}");
        // A payload within the limits is unchanged.
        let small = serde_json::json!({"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h"}}]});
        assert_eq!(fit_block_kit(&small), small);
    }

    #[test]
    fn invalid_url_error_does_not_echo_it() {
        let err = SlackWebhook::new(Secret::new("not a url/T000/SECRET".into()), Duration::from_secs(1))
            .expect_err("invalid URL");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = SlackWebhook::new(Secret::new("ftp://h/T000/SECRET".into()), Duration::from_secs(1))
            .expect_err("wrong scheme");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn debug_hides_the_path() {
        let hook = SlackWebhook::new(
            Secret::new("https://hooks.slack.com/services/T0/B0/SECRET".into()),
            Duration::from_secs(1),
        )
        .expect("valid URL");
        let shown = format!("{hook:?}");
        assert!(shown.contains("hooks.slack.com"));
        assert!(!shown.contains("SECRET"));
    }
}
