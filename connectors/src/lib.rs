//! Warden's connectors: every piece of network I/O the daemon performs lives here.
//!
//! The rest of the workspace (detectors, playbooks, the agent) works on plain data;
//! this crate is the only place that talks to Prometheus, Loki, the Kubernetes API
//! server, the notification receivers (Slack webhooks and Web API, SMTP relays,
//! PagerDuty, Opsgenie, Teams, signed JSON webhooks), and the only place that parses
//! Alertmanager webhook payloads and checks Slack's signed requests. Keeping the I/O in one crate gives one error type with one
//! retry classification ([`Error::is_retryable`]) and one place where secrets are
//! handled ([`Secret`]).
//!
//! TLS uses rustls with the `ring` provider only; call [`install_crypto_provider`]
//! once at start-up (it is idempotent, and the HTTP clients call it too).

pub mod alertmanager;
mod error;
mod http;
pub mod kube_actions;
pub mod kube_evidence;
pub mod kubernetes;
pub mod leader;
pub mod loki;
pub mod opsgenie;
pub mod pagerduty;
pub mod prometheus;
pub mod signed_webhook;
mod signing;
pub mod slack;
pub mod slack_api;
pub mod slack_app;
pub mod smtp;
pub mod teams;
pub mod webhook;

use std::fmt;
use std::path::PathBuf;

pub use error::{Error, Result};

/// Installs rustls' `ring` crypto provider as the process-wide default.
///
/// reqwest is built without a bundled provider, so one must be installed before the
/// first TLS-capable client is built. Calling this more than once, or after another
/// provider was installed, is harmless.
pub fn install_crypto_provider() {
    // An `Err` only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A secret string (token, password, webhook URL) that never shows up in logs.
///
/// `Debug` and `Display` print `***`; the value is only reachable through
/// [`Secret::expose`], which makes every use of the raw value easy to audit.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps an already-resolved secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// Returns the raw secret value. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How an HTTP client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic { username: String, password: Secret },
}

/// TLS settings for HTTPS clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file with one or more CA certificates trusted in addition to the
    /// system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for testing against self-signed servers.
    pub insecure_skip_verify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn auth_debug_does_not_leak_secrets() {
        let auth = HttpAuth::Basic { username: "warden".to_string(), password: Secret::new("p4ss".to_string()) };
        let shown = format!("{auth:?}");
        assert!(shown.contains("warden"));
        assert!(!shown.contains("p4ss"));
        let bearer = HttpAuth::Bearer(Secret::new("tok-123".to_string()));
        assert!(!format!("{bearer:?}").contains("tok-123"));
    }

    #[test]
    fn install_crypto_provider_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
