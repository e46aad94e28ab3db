//! A generic JSON webhook whose every call is signed with HMAC-SHA256.
//!
//! For receivers Warden has no client for (a ticketing bridge, a chat bot, an in-house
//! service): each notification is POSTed as JSON with headers that let the receiver check
//! that Warden sent it, that it was not changed and that it is not a replay:
//!
//! | header | value |
//! |---|---|
//! | `X-Warden-Timestamp` | Unix seconds when the call was signed |
//! | `X-Warden-Signature` | `v1=` + lower-case hex HMAC-SHA256, keyed with the shared secret, of `v1:{timestamp}:{raw body}` |
//! | `X-Warden-Delivery` | the notification's id: the same on every retry, so a receiver can drop a copy |
//! | `X-Warden-Event` | `opened`, `action`, `resolved`, `analysis`, `digest` or `dead_letter` |
//!
//! A receiver recomputes the signature over the raw bytes it received (before parsing
//! them), compares in constant time and refuses timestamps more than five minutes away
//! from its clock; [`verify`] does exactly that. The scheme is Slack's v0 signing with
//! Warden's own prefix.
//!
//! Answers: any 2xx is delivered; `429` (with `Retry-After`), `408`, `5xx` and transport
//! failures are retryable; any other status is permanent ([`Error::Rejected`]).

use std::fmt;
use std::time::Duration;

use crate::http;
use crate::signing;
use crate::{Error, Result, Secret, TlsOptions};

pub const TIMESTAMP_HEADER: &str = "X-Warden-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Warden-Signature";
pub const DELIVERY_HEADER: &str = "X-Warden-Delivery";
pub const EVENT_HEADER: &str = "X-Warden-Event";
/// The signature scheme's version, first in the signed text and in the header value.
pub const VERSION: &str = "v1";
/// How far a timestamp may be from the receiver's clock.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
const MAX_BODY_BYTES: usize = 64 * 1024;

/// `v1=` + hex HMAC-SHA256 of `v1:{timestamp}:{body}` under `secret`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let prefix = format!("{VERSION}:{timestamp}:");
    format!("{VERSION}={}", signing::hmac_sha256_hex(secret.expose().as_bytes(), &[prefix.as_bytes(), body]))
}

/// Checks a received call: the timestamp header is within [`REPLAY_WINDOW`] of `now`
/// (Unix seconds) and the signature matches (constant-time comparison).
/// [`Error::Signature`] names the check that failed.
pub fn verify(secret: &Secret, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> Result<()> {
    let ts = timestamp.ok_or_else(|| Error::Signature(format!("no {TIMESTAMP_HEADER} header")))?;
    let ts: i64 = ts.trim().parse().map_err(|_| Error::Signature(format!("{TIMESTAMP_HEADER} is not Unix seconds")))?;
    if now.abs_diff(ts) > REPLAY_WINDOW.as_secs() {
        return Err(Error::Signature(format!("{TIMESTAMP_HEADER} is more than 5 minutes from now")));
    }
    let got = signature.ok_or_else(|| Error::Signature(format!("no {SIGNATURE_HEADER} header")))?;
    if !signing::equal(got.trim(), &sign(secret, ts, body)) {
        return Err(Error::Signature(format!("{SIGNATURE_HEADER} does not match the body")));
    }
    Ok(())
}

/// A signed JSON webhook.
#[derive(Clone)]
pub struct SignedWebhook {
    http: reqwest::Client,
    url: Secret,
    secret: Secret,
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for SignedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedWebhook").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

impl SignedWebhook {
    /// A webhook posting to `url`, signing with `secret` (both credentials: the URL may
    /// carry a token, and is shown as its origin only).
    pub fn new(url: Secret, secret: Secret, timeout: Duration) -> Result<Self> {
        let parsed = http::receiver_url("webhook", url.expose())?;
        if secret.expose().len() < 16 {
            return Err(Error::Config("the webhook signing secret must have at least 16 characters".into()));
        }
        let client = http::build_client(timeout, &TlsOptions::default())?;
        Ok(Self { http: client, shown: format!("webhook {}", http::display_origin(&parsed)), url, secret, timeout })
    }

    /// POSTs `payload`, signed at `now` (Unix seconds). `delivery` and `event` fill their
    /// headers. `Ok` for any 2xx answer.
    pub async fn post(&self, payload: &serde_json::Value, delivery: &str, event: &str, now: i64) -> Result<()> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| Error::InvalidInput(format!("webhook payload cannot be encoded: {e}")))?;
        let signature = sign(&self.secret, now, &body);
        let resp = self
            .http
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery)
            .header(EVENT_HEADER, event)
            .body(body)
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

    fn secret() -> Secret {
        Secret::new("0123456789abcdef-shared".into())
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"event":"opened","incident_id":4}"#;
        let sig = sign(&secret(), 1_700_000_000, body);
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        assert!(verify(&secret(), Some("1700000000"), Some(&sig), body, 1_700_000_100).is_ok());
        let changed = br#"{"event":"opened","incident_id":5}"#;
        let e = verify(&secret(), Some("1700000000"), Some(&sig), changed, 1_700_000_100).expect_err("tampered");
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = verify(&secret(), Some("1700000000"), Some(&sig), body, 1_700_000_301).expect_err("stale");
        assert!(e.to_string().contains("5 minutes"), "{e}");
        assert!(verify(&secret(), None, Some(&sig), body, 1_700_000_000).is_err());
        assert!(verify(&secret(), Some("soon"), Some(&sig), body, 1_700_000_000).is_err());
        assert!(verify(&secret(), Some("1700000000"), None, body, 1_700_000_000).is_err());
        let other = Secret::new("another-secret-of-16".into());
        assert!(verify(&other, Some("1700000000"), Some(&sig), body, 1_700_000_000).is_err());
    }

    #[test]
    fn the_signed_text_is_documented() {
        // v1:{timestamp}:{body}, keyed with the secret, hex: checked against an independent
        // HMAC computation of the same text.
        let sig = sign(&secret(), 42, b"{}");
        let expected = signing::hmac_sha256_hex(b"0123456789abcdef-shared", &[b"v1:42:{}"]);
        assert_eq!(sig, format!("v1={expected}"));
    }

    #[test]
    fn secrets_never_show_and_short_secrets_are_refused() {
        let hook =
            SignedWebhook::new(Secret::new("https://hooks.example/t0ken".into()), secret(), Duration::from_secs(1))
                .expect("valid");
        let shown = format!("{hook:?}");
        assert!(!shown.contains("t0ken") && !shown.contains("shared"), "{shown}");
        assert!(SignedWebhook::new(
            Secret::new("https://h/x".into()),
            Secret::new("short".into()),
            Duration::from_secs(1)
        )
        .is_err());
    }
}
