//! Posting notifications to a Slack incoming webhook.
//!
//! The outbox delivers notifications at least once and retries failures, so this
//! module's job is to classify the outcome precisely: 2xx is delivered, 429 carries
//! the `Retry-After` delay, other 4xx mean the payload will never be accepted, and
//! 5xx or transport failures are worth retrying. The webhook URL is a credential;
//! it never appears in errors, logs or `Debug` output.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
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
        f.debug_struct("SlackWebhook")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .finish()
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
        Ok(Self {
            http: client,
            shown: format!("Slack webhook {}", http::display_origin(&parsed)),
            url,
            timeout,
        })
    }

    /// Posts `payload` as JSON. `Ok(())` only for a 2xx answer.
    ///
    /// 429 gives [`Error::RateLimited`] with the `Retry-After` delay, other 4xx give
    /// [`Error::Rejected`] (not retryable), 5xx give [`Error::Http`], and transport
    /// failures give [`Error::Connect`] or [`Error::Timeout`] (all retryable).
    pub async fn post(&self, payload: &serde_json::Value) -> Result<()> {
        let resp = self
            .http
            .post(self.url.expose())
            .json(payload)
            .send()
            .await
            .map_err(|e| http::map_reqwest_error(e, &self.shown, self.timeout))?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers());
        let body = http::read_body(resp, MAX_BODY_BYTES, &self.shown, self.timeout)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).trim().to_string();
        let code = status.as_u16();
        if status.is_success() {
            tracing::debug!(target_url = %self.shown, status = code, "Slack webhook accepted message");
            Ok(())
        } else if code == 429 {
            Err(Error::RateLimited { retry_after })
        } else if status.is_client_error() {
            Err(Error::Rejected {
                status: code,
                body: http::truncate_chars(&body, MAX_REJECTED_BODY_CHARS),
            })
        } else {
            Err(Error::Http {
                url: self.shown.clone(),
                status: Some(code),
                message: if body.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("unexpected status")
                        .to_string()
                } else {
                    http::truncate_chars(&body, MAX_REJECTED_BODY_CHARS)
                },
            })
        }
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&headers("30")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&headers("soon")), None);
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn invalid_url_error_does_not_echo_it() {
        let err = SlackWebhook::new(
            Secret::new("not a url/T000/SECRET".into()),
            Duration::from_secs(1),
        )
        .expect_err("invalid URL");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = SlackWebhook::new(
            Secret::new("ftp://h/T000/SECRET".into()),
            Duration::from_secs(1),
        )
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
