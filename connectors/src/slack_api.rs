//! The Slack Web API, for Slack app mode: post a message, edit it, reply in its thread.
//!
//! An incoming webhook can only post; an app with a bot token (`chat:write`) can keep one
//! message per incident and edit it as the incident moves (`chat.update`), with the
//! details as thread replies (`thread_ts`). Calls are JSON POSTs with
//! `Authorization: Bearer xoxb-...`.
//!
//! Slack answers HTTP 200 for most failures, with `{"ok": false, "error": CODE}`: those
//! become [`Error::SlackApi`] with the code (`channel_not_found`, `not_in_channel`,
//! `invalid_auth`, `msg_too_long`...), retryable only for Slack's own trouble. Rate limits
//! come as HTTP 429 with `Retry-After` ([`Error::RateLimited`]); 5xx and transport
//! failures are retryable. The token never appears in errors, logs or `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::http;
use crate::slack::fit_block_kit;
use crate::{Error, Result, Secret, TlsOptions};

/// Slack's Web API base.
pub const DEFAULT_URL: &str = "https://slack.com/api/";
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Where a message is: its channel id and timestamp (Slack's message id).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    users: Option<Vec<String>>,
}

/// A Slack Web API client with a bot token.
#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackApi").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl SlackApi {
    /// A client for the API at `url` (`None`: [`DEFAULT_URL`]) with a bot token.
    pub fn new(url: Option<&str>, token: Secret, timeout: Duration) -> Result<Self> {
        let mut base = http::receiver_url("Slack API", url.unwrap_or(DEFAULT_URL))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        http::validate_auth(Some(&crate::HttpAuth::Bearer(token.clone())))
            .map_err(|_| Error::Config("Slack bot token is empty or not a valid header value".into()))?;
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self { http: client, shown: format!("Slack API {}", http::display_url(&base)), base, token, timeout })
    }

    /// Posts `message` (`text`, `blocks`) to `channel`, in the thread of `thread_ts` when
    /// given. Returns where the new message is.
    pub async fn post_message(&self, channel: &str, message: &Value, thread_ts: Option<&str>) -> Result<MessageRef> {
        let mut body = fit_block_kit(message);
        set(&mut body, "channel", channel);
        if let Some(ts) = thread_ts {
            set(&mut body, "thread_ts", ts);
        }
        let a = self.call("chat.postMessage", &body).await?;
        Ok(MessageRef { channel: a.channel.unwrap_or_else(|| channel.to_string()), ts: a.ts.unwrap_or_default() })
    }

    /// Replaces the text and blocks of the message at `at` (`chat.update`).
    pub async fn update(&self, at: &MessageRef, message: &Value) -> Result<MessageRef> {
        let mut body = fit_block_kit(message);
        set(&mut body, "channel", &at.channel);
        set(&mut body, "ts", &at.ts);
        let a = self.call("chat.update", &body).await?;
        Ok(MessageRef {
            channel: a.channel.unwrap_or_else(|| at.channel.clone()),
            ts: a.ts.unwrap_or_else(|| at.ts.clone()),
        })
    }

    /// The user ids of a user group (`usergroups.users.list`, scope `usergroups:read`).
    pub async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>> {
        let a = self.call("usergroups.users.list", &json!({"usergroup": usergroup})).await?;
        Ok(a.users.unwrap_or_default())
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Answer> {
        let url = self.base.join(method).map_err(|e| Error::Config(format!("Slack API URL for {method}: {e}")))?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        let wait = http::retry_after(resp.headers());
        let (_, bytes) = http::answer(resp, MAX_BODY_BYTES, &self.shown, self.timeout).await?;
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode { url: self.shown.clone(), message: format!("{method}: {e}") })?;
        if answer.ok {
            return Ok(answer);
        }
        let code = answer.error.unwrap_or_else(|| "unknown_error".into());
        if code == "ratelimited" {
            return Err(Error::RateLimited { retry_after: wait });
        }
        Err(Error::SlackApi { method, code })
    }
}

fn set(body: &mut Value, key: &str, value: &str) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert(key.to_string(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_and_bad_tokens_are_refused() {
        let api = SlackApi::new(None, Secret::new("xoxb-S3CRET".into()), Duration::from_secs(1)).expect("client");
        let shown = format!("{api:?}");
        assert!(shown.contains("slack.com") && !shown.contains("S3CRET"), "{shown}");
        assert!(SlackApi::new(None, Secret::new(String::new()), Duration::from_secs(1)).is_err());
        let e = SlackApi::new(None, Secret::new("xoxb\nS3CRET".into()), Duration::from_secs(1)).expect_err("newline");
        assert!(!e.to_string().contains("S3CRET"));
    }

    #[test]
    fn a_base_without_a_slash_still_joins_methods() {
        let api = SlackApi::new(Some("http://127.0.0.1:9/api"), Secret::new("xoxb-1".into()), Duration::from_secs(1))
            .expect("client");
        assert_eq!(api.base.join("chat.update").expect("join").as_str(), "http://127.0.0.1:9/api/chat.update");
    }
}
