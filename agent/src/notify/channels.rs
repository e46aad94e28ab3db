//! Building the outbox's channels from the `notify` section: every receiver's client,
//! with its secrets resolved once at start-up. An error names the key it is about
//! (`notify.pagerduty.routing_key: environment variable PD_KEY is not set`) and never
//! the secret.

use anyhow::{anyhow, Context, Result};
use warden_connectors::opsgenie::Opsgenie;
use warden_connectors::pagerduty::PagerDuty;
use warden_connectors::signed_webhook::SignedWebhook;
use warden_connectors::slack::SlackWebhook;
use warden_connectors::smtp::{SmtpConfig, SmtpSender, SmtpTls};
use warden_connectors::teams::TeamsWebhook;
use warden_connectors::Secret;

use super::outbox::Channels;
use super::slack_app::SlackApp;
use crate::config::{Config, SecretRef, SmtpTlsMode};

fn secret(path: &str, s: &SecretRef) -> Result<Secret> {
    s.resolve().map(Secret::new).map_err(|e| anyhow!("{path}: {e}"))
}

/// Build the outbox channels from the `notify` section.
pub fn build_channels(cfg: &Config) -> Result<Channels> {
    let n = &cfg.notify;
    let mut ch = Channels::default();
    if let Some(s) = &n.slack {
        let url = secret("notify.slack.webhook_url", &s.webhook_url)?;
        ch.slack = Some(SlackWebhook::new(url, s.timeout.get()).context("notify.slack")?);
    }
    if let Some(a) = &n.slack_app {
        ch.slack_app = Some(SlackApp::from_config(a)?);
    }
    if let Some(e) = &n.email {
        let password = e.password.as_ref().map(|p| secret("notify.email.password", p)).transpose()?;
        let smtp = SmtpConfig {
            host: e.host.clone(),
            port: e.port,
            tls: match e.tls {
                SmtpTlsMode::None => SmtpTls::None,
                SmtpTlsMode::Starttls => SmtpTls::StartTls,
                SmtpTlsMode::Tls => SmtpTls::Tls,
            },
            username: e.username.clone(),
            password,
            from: e.from.clone(),
            to: e.to.clone(),
            timeout: e.timeout.get(),
        };
        ch.email = Some(SmtpSender::new(smtp).context("notify.email")?);
    }
    if let Some(f) = &n.file {
        ch.file = Some(f.path.clone());
    }
    if let Some(p) = &n.pagerduty {
        let key = secret("notify.pagerduty.routing_key", &p.routing_key)?;
        ch.pagerduty = Some(PagerDuty::new(p.url.as_deref(), key, p.timeout.get()).context("notify.pagerduty")?);
    }
    if let Some(o) = &n.opsgenie {
        let key = secret("notify.opsgenie.api_key", &o.api_key)?;
        let client = Opsgenie::new(o.url.as_deref(), key, o.timeout.get()).context("notify.opsgenie")?;
        ch.opsgenie = Some(client.with_tags(o.tags.clone()));
    }
    if let Some(t) = &n.teams {
        let url = secret("notify.teams.webhook_url", &t.webhook_url)?;
        ch.teams = Some(TeamsWebhook::new(url, t.timeout.get()).context("notify.teams")?);
    }
    if let Some(w) = &n.webhook {
        let key = secret("notify.webhook.secret", &w.secret)?;
        ch.webhook =
            Some(SignedWebhook::new(Secret::new(w.url.clone()), key, w.timeout.get()).context("notify.webhook")?);
    }
    Ok(ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_is_built_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = |name: &str, value: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{value}\n")).expect("write");
            p.display().to_string()
        };
        let text = format!(
            "notify:\n  pagerduty: {{ routing_key: {{ file: {} }}, url: 'http://127.0.0.1:9/v2/enqueue' }}\n  opsgenie: {{ api_key: {{ file: {} }}, url: 'http://127.0.0.1:9', tags: [prod] }}\n  teams: {{ webhook_url: {{ file: {} }} }}\n  webhook: {{ url: 'http://127.0.0.1:9/hook', secret: {{ file: {} }} }}\n  slack_app: {{ bot_token: {{ file: {} }}, signing_secret: {{ file: {} }}, channel: C0123, approvers: {{ users: [U0AAA] }} }}\n",
            key("pd", "R0UTING"),
            key("og", "G3NIE"),
            key("teams", "http://127.0.0.1:9/workflows/x?sig=abc"),
            key("hook", "0123456789abcdef0123"),
            key("bot", "xoxb-1"),
            key("sign", "s1gning"),
        );
        let cfg = crate::config::parse_str(&text, std::path::Path::new("n.yaml")).expect("valid");
        let ch = build_channels(&cfg).expect("built");
        assert_eq!(ch.names(), ["slack_app", "pagerduty", "opsgenie", "teams", "webhook"]);
        let shown = format!("{:?} {:?} {:?}", ch.pagerduty, ch.opsgenie, ch.slack_app);
        assert!(!shown.contains("R0UTING") && !shown.contains("G3NIE") && !shown.contains("s1gning"), "{shown}");
    }

    #[test]
    fn a_missing_secret_names_its_key() {
        let text = "notify:\n  pagerduty: { routing_key: { env: WARDEN_TEST_SURELY_UNSET_PD } }\n";
        let cfg = crate::config::parse_str(text, std::path::Path::new("n.yaml")).expect("valid");
        let e = build_channels(&cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "notify.pagerduty.routing_key: environment variable WARDEN_TEST_SURELY_UNSET_PD is not set");
    }
}
