//! Delivers the outbox: at least once per message, in order per channel, with backoff.
//!
//! A message is marked delivered only after the channel acknowledged it (Slack 2xx, SMTP
//! 250, file written and synced), so a crash or an unreachable server loses nothing. The one
//! window for a duplicate is a crash between the acknowledgement and the mark; emails carry a
//! stable `Message-ID` (`<warden-outbox-ID@warden>`) so mail systems can drop such a copy.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use warden_connectors::slack::SlackWebhook;
use warden_connectors::smtp::{EmailMessage, SmtpSender};

use crate::metrics::Metrics;
use crate::store::{OutboxItem, Store};
use crate::timeline::{Timeline, TimelineEvent};

/// The configured delivery channels.
#[derive(Clone, Default)]
pub struct Channels {
    pub slack: Option<SlackWebhook>,
    pub email: Option<SmtpSender>,
    pub file: Option<PathBuf>,
}

impl Channels {
    /// Names of the configured channels, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.slack.is_some() {
            v.push("slack");
        }
        if self.email.is_some() {
            v.push("email");
        }
        if self.file.is_some() {
            v.push("file");
        }
        v
    }
}

enum SendError {
    /// Try again after the usual backoff, or after the server's `Retry-After`.
    Retry(String, Option<Duration>),
}

impl SendError {
    /// A permanent refusal (e.g. a revoked webhook, a rejected recipient) is still kept and
    /// retried, but only at the longest backoff: fixing the configuration delivers it, and the
    /// channel is not hammered meanwhile.
    fn from_connector(e: warden_connectors::Error, max_backoff: Duration) -> Self {
        let wait = match e.retry_after() {
            Some(d) => Some(d),
            None if !e.is_retryable() => Some(max_backoff),
            None => None,
        };
        SendError::Retry(e.to_string(), wait)
    }
}

pub struct Outbox {
    pub store: Arc<Store>,
    pub channels: Channels,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub metrics: Arc<Metrics>,
    pub timeline: Timeline,
}

impl Outbox {
    /// Deliver everything due at `now`; returns how many were delivered.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> usize {
        let mut delivered = 0;
        // Each round offers the head of each channel's queue; stop when a round delivers none.
        loop {
            let due = match self.store.due_notifications(now, 64) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let mut round = 0;
            for item in due {
                if self.deliver_one(&item, now).await {
                    round += 1;
                }
            }
            delivered += round;
            if round == 0 {
                break;
            }
        }
        if let Ok(n) = self.store.pending_notifications() {
            self.metrics.outbox_pending.set(n as i64);
        }
        delivered
    }

    async fn deliver_one(&self, item: &OutboxItem, now: DateTime<Utc>) -> bool {
        let subject = item.payload.get("subject").or_else(|| item.payload.get("text")).and_then(|v| v.as_str()).unwrap_or("").to_string();
        match self.send(item).await {
            Ok(()) => {
                if let Err(e) = self.store.mark_delivered(item.id, Utc::now().max(now)) {
                    tracing::error!(id = item.id, error = %e, "marking a delivered notification");
                    return false;
                }
                self.metrics.channel(&self.metrics.notifications_sent, &item.channel);
                tracing::info!(id = item.id, channel = %item.channel, event = %item.event, "notification delivered");
                self.timeline.emit(TimelineEvent::NotificationDelivered {
                    at: now,
                    channel: item.channel.clone(),
                    event: item.event.clone(),
                    subject,
                });
                true
            }
            Err(SendError::Retry(error, retry_after)) => {
                let wait = retry_after.unwrap_or_else(|| self.backoff(item.attempts));
                let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
                self.metrics.channel(&self.metrics.notification_failures, &item.channel);
                tracing::warn!(id = item.id, channel = %item.channel, attempts = item.attempts + 1, retry_in = ?wait, %error, "notification not delivered; will retry");
                self.timeline.emit(TimelineEvent::NotificationFailed {
                    at: now,
                    channel: item.channel.clone(),
                    event: item.event.clone(),
                    error: error.clone(),
                    attempts: item.attempts + 1,
                });
                if let Err(e) = self.store.mark_failed(item.id, &error, next) {
                    tracing::error!(id = item.id, error = %e, "recording a failed notification");
                }
                false
            }
        }
    }

    /// Exponential backoff with +-20 % jitter, capped.
    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.initial_backoff.as_secs_f64() * 2f64.powi(attempts.min(30) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = rand::rng().random_range(0.8..1.2);
        Duration::from_secs_f64((capped * jitter).min(self.max_backoff.as_secs_f64()))
    }

    async fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let missing = |ch: &str| SendError::Retry(format!("channel `{ch}` is not configured (any more); kept for delivery"), Some(self.max_backoff));
        match item.channel.as_str() {
            "slack" => {
                let slack = self.channels.slack.as_ref().ok_or_else(|| missing("slack"))?;
                slack.post(&item.payload).await.map_err(|e| SendError::from_connector(e, self.max_backoff))
            }
            "email" => {
                let smtp = self.channels.email.as_ref().ok_or_else(|| missing("email"))?;
                let field = |k: &str| item.payload.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let msg = EmailMessage {
                    subject: field("subject"),
                    text: field("text"),
                    html: field("html"),
                    message_id: format!("<warden-outbox-{}@warden>", item.id),
                };
                smtp.send(&msg).await.map_err(|e| SendError::from_connector(e, self.max_backoff))
            }
            "file" => {
                let path = self.channels.file.as_ref().ok_or_else(|| missing("file"))?;
                append_line(path, &item.payload).map_err(|e| SendError::Retry(format!("{}: {e}", path.display()), None))
            }
            other => Err(SendError::Retry(format!("unknown channel `{other}`"), Some(self.max_backoff))),
        }
    }
}

fn append_line(path: &PathBuf, payload: &serde_json::Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = payload.to_string();
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IncidentSignal, NewNotification};
    use serde_json::json;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn file_channel_delivers_in_order_and_retries_missing_channels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let sig = IncidentSignal {
            fingerprint: "f".into(),
            watch: "w".into(),
            source: "watch".into(),
            severity: "warning".into(),
            title: "t".into(),
            labels: BTreeMap::new(),
            target: None,
            observed: None,
            expected: None,
            lower: None,
            upper: None,
            score: None,
            detector: None,
        };
        let now = Utc::now();
        store
            .open_incident(&sig, now, &json!({}), |_| {
                vec![
                    NewNotification { channel: "file".into(), event: "opened".into(), payload: json!({"n": 1}) },
                    NewNotification { channel: "file".into(), event: "resolved".into(), payload: json!({"n": 2}) },
                    NewNotification { channel: "slack".into(), event: "opened".into(), payload: json!({"text": "x"}) },
                ]
            })
            .expect("open");
        let path = dir.path().join("out/n.jsonl");
        let outbox = Outbox {
            store: store.clone(),
            channels: Channels { file: Some(path.clone()), ..Default::default() },
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(60),
            metrics: Arc::new(Metrics::new()),
            timeline: Timeline::default(),
        };
        assert_eq!(outbox.deliver_due(now).await, 2);
        let lines: Vec<_> = std::fs::read_to_string(&path).expect("file").lines().map(str::to_string).collect();
        assert_eq!(lines, [r#"{"n":1}"#, r#"{"n":2}"#]);
        // The slack message stays in the outbox, retried later rather than dropped.
        assert_eq!(store.pending_notifications().expect("count"), 1);
        assert_eq!(outbox.deliver_due(now).await, 0);
        let encoded = outbox.metrics.encode().expect("encode");
        assert!(encoded.contains("warden_notification_failures_total{channel=\"slack\"} 1"), "{encoded}");
    }
}
