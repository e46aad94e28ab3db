//! The single error type of the connectors crate.
//!
//! Callers (the agent's outbox, playbook executor, Prometheus poller) need to decide
//! whether to retry, give up, or report a configuration problem. Every connector
//! maps its library errors into this enum so that decision is made in one place:
//! [`Error::is_retryable`], [`Error::is_not_found`], [`Error::is_conflict`].
//!
//! Messages name what failed (a redacted URL, the HTTP status, the Prometheus
//! `errorType`, Loki's error text, the Kubernetes `Status` message) and never
//! contain secrets.

use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a connector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration detected while building a client (bad URL, unreadable
    /// CA file, malformed e-mail address, unloadable kubeconfig).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An argument of a call was invalid (for example a zero query step).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The remote end could not be reached (connection refused, DNS, TLS handshake).
    #[error("could not connect to {url}: {message}")]
    Connect { url: String, message: String },

    /// The request did not complete within its time limit.
    #[error("request to {url} timed out{}", after_suffix(.after))]
    Timeout { url: String, after: Option<Duration> },

    /// An HTTP exchange failed: an unexpected status (`status` is set) or a
    /// transport error in the middle of the exchange (`status` is `None`).
    #[error("HTTP request to {url} failed{}: {message}", status_suffix(.status))]
    Http { url: String, status: Option<u16>, message: String },

    /// The response body could not be decoded (invalid or truncated JSON, wrong shape).
    #[error("could not decode response from {url}: {message}")]
    Decode { url: String, message: String },

    /// Loki refused a request (HTTP 400, or a `"status"` other than `"success"`):
    /// typically invalid LogQL, a limit above Loki's maximum or a bad time range.
    /// `message` is Loki's own explanation. Retrying the same request will not help.
    #[error("Loki at {url} rejected the request (HTTP {status}): {message}")]
    LokiQuery { url: String, status: u16, message: String },

    /// Prometheus answered `"status": "error"`.
    #[error("Prometheus query failed ({error_type}): {message}")]
    Prometheus { error_type: String, message: String },

    /// The Kubernetes API server answered with a failure `Status`.
    #[error("Kubernetes API error {status} {reason}: {message}")]
    Kube { status: u16, reason: String, message: String },

    /// The Kubernetes client failed outside of an API response (auth plugin,
    /// request building, unexpected library error).
    #[error("Kubernetes client error: {0}")]
    KubeClient(String),

    /// The receiver asked us to slow down (HTTP 429).
    #[error("rate limited by the receiver{}", retry_after_suffix(.retry_after))]
    RateLimited { retry_after: Option<Duration> },

    /// The receiver rejected the request with a 4xx status; retrying the same
    /// request will not help.
    #[error("request rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },

    /// The SMTP server refused the message or the SMTP dialogue failed.
    /// `transient` is true for 4xx replies, which are worth retrying.
    #[error("SMTP delivery failed{}: {message}", smtp_code_suffix(.code))]
    Smtp { code: Option<u16>, transient: bool, message: String },

    /// An incoming webhook payload is not one we understand.
    #[error("invalid webhook payload: {0}")]
    Payload(String),

    /// A Kubernetes object is not in the state an action needs, and retrying will not
    /// change that: a Job with the action's name that another installation, run or person
    /// created (never adopted), or a pod template that another writer changed in the
    /// middle of a rollback. `object` names it (`job shop/retrain-1`).
    #[error("{object}: {message}")]
    Precondition { object: String, message: String },

    /// A request that claims to come from a receiver (Slack's interactive callbacks) failed
    /// its signature check: a missing header, a timestamp outside the replay window or a
    /// signature that does not match. Never retryable; the message names which check failed.
    #[error("request signature rejected: {0}")]
    Signature(String),

    /// The Slack Web API answered `{"ok": false, "error": CODE}` (`channel_not_found`,
    /// `invalid_auth`, `msg_too_long`...). Retryable only for Slack's own trouble
    /// (`internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`).
    #[error("Slack {method} failed: {code}")]
    SlackApi { method: &'static str, code: String },
    /// This replica does not hold the leader-election lease (or can no longer be sure it
    /// does), so it must not act: another replica leads or is about to. `lease` names it
    /// (`lease warden/warden`). Not retryable by this replica; the leader does the work.
    #[error("{lease}: not the leader: {reason}")]
    NotLeader { lease: String, reason: String },

    /// This replica holds the lease, but the lease will not stay valid for as long as the
    /// operation needs. Retryable: the next renew extends it.
    #[error("{lease}: valid for {remaining:?} more, less than the {needed:?} the operation needs")]
    LeaseTooShort { lease: String, remaining: Duration, needed: Duration },
}

/// Slack Web API error codes that mean "try again later".
pub(crate) const SLACK_RETRYABLE_CODES: &[&str] =
    &["internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"];

fn after_suffix(after: &Option<Duration>) -> String {
    after.map(|d| format!(" after {d:?}")).unwrap_or_default()
}

fn status_suffix(status: &Option<u16>) -> String {
    status.map(|s| format!(" with HTTP {s}")).unwrap_or_default()
}

fn retry_after_suffix(retry_after: &Option<Duration>) -> String {
    retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default()
}

fn smtp_code_suffix(code: &Option<u16>) -> String {
    code.map(|c| format!(" with reply {c}")).unwrap_or_default()
}

impl Error {
    /// Whether the same request may succeed later: timeouts, connection failures,
    /// 5xx and 429 responses, Prometheus `timeout`/`unavailable` errors and
    /// transient SMTP replies. Loki query rejections are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::RateLimited { .. } => true,
            Error::Http { status, .. } => match status {
                None => true,
                Some(s) => *s >= 500 || *s == 429 || *s == 408,
            },
            Error::Kube { status, .. } => *status >= 500 || *status == 429,
            Error::Prometheus { error_type, .. } => {
                matches!(error_type.as_str(), "timeout" | "unavailable")
            }
            Error::Smtp { transient, .. } => *transient,
            Error::SlackApi { code, .. } => SLACK_RETRYABLE_CODES.contains(&code.as_str()),
            Error::LeaseTooShort { .. } => true,
            Error::Config(_)
            | Error::InvalidInput(_)
            | Error::Decode { .. }
            | Error::KubeClient(_)
            | Error::Rejected { .. }
            | Error::LokiQuery { .. }
            | Error::Payload(_)
            | Error::Precondition { .. }
            | Error::Signature(_)
            | Error::NotLeader { .. } => false,
        }
    }

    /// Whether the Kubernetes API server answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { status: 404, .. })
            || matches!(self, Error::Kube { reason, .. } if reason == "NotFound")
    }

    /// Whether the Kubernetes API server answered 409 Conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { status: 409, .. })
            || matches!(self, Error::Kube { reason, .. } if reason == "Conflict")
    }

    /// The delay the receiver asked for, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kube(status: u16, reason: &str) -> Error {
        Error::Kube { status, reason: reason.to_string(), message: "m".to_string() }
    }

    #[test]
    fn kube_classification() {
        assert!(kube(404, "NotFound").is_not_found());
        assert!(!kube(404, "NotFound").is_retryable());
        assert!(kube(409, "Conflict").is_conflict());
        assert!(!kube(409, "Conflict").is_not_found());
        assert!(kube(500, "InternalError").is_retryable());
        assert!(kube(429, "TooManyRequests").is_retryable());
        assert!(!kube(403, "Forbidden").is_retryable());
    }

    #[test]
    fn transport_and_http_classification() {
        let connect = Error::Connect { url: "http://x".into(), message: "refused".into() };
        assert!(connect.is_retryable());
        let timeout = Error::Timeout { url: "http://x".into(), after: Some(Duration::from_secs(2)) };
        assert!(timeout.is_retryable());
        assert_eq!(timeout.to_string(), "request to http://x timed out after 2s");
        let http503 = Error::Http { url: "http://x".into(), status: Some(503), message: "down".into() };
        assert!(http503.is_retryable());
        assert_eq!(http503.to_string(), "HTTP request to http://x failed with HTTP 503: down");
        let rejected = Error::Rejected { status: 400, body: "invalid_payload".into() };
        assert!(!rejected.is_retryable());
        let limited = Error::RateLimited { retry_after: Some(Duration::from_secs(30)) };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn prometheus_and_smtp_classification() {
        let bad = Error::Prometheus { error_type: "bad_data".into(), message: "parse error".into() };
        assert!(!bad.is_retryable());
        assert_eq!(bad.to_string(), "Prometheus query failed (bad_data): parse error");
        let loki = Error::LokiQuery {
            url: "http://loki/loki/api/v1/query_range".into(),
            status: 400,
            message: "parse error at line 1, col 5: syntax error".into(),
        };
        assert!(!loki.is_retryable());
        assert_eq!(
            loki.to_string(),
            "Loki at http://loki/loki/api/v1/query_range rejected the request (HTTP 400): \
             parse error at line 1, col 5: syntax error"
        );
        let unavailable = Error::Prometheus { error_type: "unavailable".into(), message: "starting".into() };
        assert!(unavailable.is_retryable());
        let transient = Error::Smtp { code: Some(451), transient: true, message: "try later".into() };
        assert!(transient.is_retryable());
        let permanent = Error::Smtp { code: Some(550), transient: false, message: "no such user".into() };
        assert!(!permanent.is_retryable());
    }

    #[test]
    fn slack_api_and_signature_classification() {
        let down = Error::SlackApi { method: "chat.postMessage", code: "service_unavailable".into() };
        assert!(down.is_retryable());
        let gone = Error::SlackApi { method: "chat.update", code: "message_not_found".into() };
        assert!(!gone.is_retryable());
        assert_eq!(gone.to_string(), "Slack chat.update failed: message_not_found");
        assert!(!Error::Signature("stale timestamp".into()).is_retryable());
    }

    #[test]
    fn leadership_classification() {
        let not_leader = Error::NotLeader { lease: "lease warden/warden".into(), reason: "held by warden-1".into() };
        assert!(!not_leader.is_retryable());
        assert_eq!(not_leader.to_string(), "lease warden/warden: not the leader: held by warden-1");
        let short = Error::LeaseTooShort {
            lease: "lease warden/warden".into(),
            remaining: Duration::from_secs(2),
            needed: Duration::from_secs(5),
        };
        assert!(short.is_retryable());
        assert_eq!(short.to_string(), "lease warden/warden: valid for 2s more, less than the 5s the operation needs");
    }
}
