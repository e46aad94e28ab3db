//! Outgoing HTTP calls of playbook `http` steps.
//!
//! A step names the method, URL, headers, JSON body and time limit; this client sends the
//! call as written and returns the answer's status and body for the playbook to judge. No
//! shell is involved and redirects are not followed (a redirect could send the call to
//! another host).
//!
//! A failure says whether the request may have reached the receiver, which decides whether
//! a playbook may simply retry: [`Error::Connect`] and [`Error::InvalidInput`] mean it was
//! never sent ([`may_have_been_sent`] is false); any other failure (a timeout, a connection
//! lost mid-exchange) leaves its outcome unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::http::error_chain;
use crate::{Error, Result};

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub body: String,
}

/// An HTTP client for webhook calls; cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
}

impl WebhookClient {
    /// A client that follows no redirects.
    pub fn new() -> Result<Self> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// Send `method url` with `headers` and an optional JSON `body`, waiting at most
    /// `timeout` for the whole exchange. Any status is an answer, not an error.
    pub async fn call(
        &self,
        method: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<WebhookReply> {
        let verb = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Error::InvalidInput(format!("method {method}: {e}")))?;
        let mut req = self.client.request(verb, url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let message = error_chain(&e);
            // Only a connection that was never made proves the receiver got nothing.
            if e.is_builder() {
                Error::InvalidInput(message)
            } else if e.is_connect() {
                Error::Connect { url: url.to_string(), message }
            } else {
                Error::Http { url: url.to_string(), status: e.status().map(|s| s.as_u16()), message }
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(WebhookReply { status, body })
    }
}

/// Whether the request of a failed call may have reached the receiver: false only when it
/// was never sent (no connection, or a request that could not be built).
pub fn may_have_been_sent(e: &Error) -> bool {
    !matches!(e, Error::Connect { .. } | Error::InvalidInput(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsent_failures_are_known_unsent() {
        let connect = Error::Connect { url: "http://127.0.0.1:1/hook".into(), message: "refused".into() };
        assert!(!may_have_been_sent(&connect));
        assert!(!may_have_been_sent(&Error::InvalidInput("method".into())));
        let lost =
            Error::Http { url: "http://127.0.0.1:1/hook".into(), status: None, message: "connection reset".into() };
        assert!(may_have_been_sent(&lost));
    }

    #[tokio::test]
    async fn a_bad_method_is_never_sent() {
        let client = WebhookClient::new().expect("client");
        let err = client
            .call("NOT A METHOD", "http://127.0.0.1:1/hook", &BTreeMap::new(), None, Duration::from_secs(1))
            .await
            .expect_err("invalid method");
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(!may_have_been_sent(&err));
    }
}
