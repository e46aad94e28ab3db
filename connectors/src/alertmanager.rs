//! Types for Alertmanager's webhook payload (version 4).
//!
//! Alertmanager pushes alert groups to Warden's webhook endpoint; this module
//! defines the payload so the agent can deserialize it, reject versions it does not
//! understand, and treat Alertmanager's "zero time" `endsAt` as "not ended".

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The only payload version this module understands.
pub const SUPPORTED_VERSION: &str = "4";

/// A webhook notification: one alert group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    pub version: String,
    pub group_key: String,
    /// How many alerts were left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `"firing"` or `"resolved"`.
    pub status: String,
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `"firing"` or `"resolved"`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `None` when Alertmanager sent its zero time (`0001-01-01T00:00:00Z`), null,
    /// or nothing.
    #[serde(default, deserialize_with = "deserialize_ends_at", serialize_with = "serialize_ends_at")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

impl WebhookPayload {
    /// Checks the version and the status fields.
    pub fn validate(&self) -> Result<()> {
        if self.version != SUPPORTED_VERSION {
            return Err(Error::Payload(format!(
                "unsupported Alertmanager webhook version {:?}, expected {SUPPORTED_VERSION:?}",
                self.version
            )));
        }
        check_status(&self.status, "payload")?;
        for (i, alert) in self.alerts.iter().enumerate() {
            check_status(&alert.status, &format!("alerts[{i}]"))?;
        }
        Ok(())
    }
}

fn check_status(status: &str, what: &str) -> Result<()> {
    if matches!(status, "firing" | "resolved") {
        Ok(())
    } else {
        Err(Error::Payload(format!("{what} has status {status:?}, expected \"firing\" or \"resolved\"")))
    }
}

/// Go's zero `time.Time` serializes to year 1; anything at or before year 1 is unset.
fn deserialize_ends_at<'de, D>(de: D) -> std::result::Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let value: Option<DateTime<Utc>> = Option::deserialize(de)?;
    Ok(value.filter(|t| t.year() > 1))
}

fn serialize_ends_at<S>(value: &Option<DateTime<Utc>>, ser: S) -> std::result::Result<S::Ok, S::Error>
where
    S: Serializer,
{
    match value {
        Some(t) => t.serialize(ser),
        None => ser.serialize_str("0001-01-01T00:00:00Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The documented example shape of an Alertmanager v4 webhook.
    const EXAMPLE: &str = r#"{
      "version": "4",
      "groupKey": "{}:{alertname=\"HighCPU\"}",
      "truncatedAlerts": 0,
      "status": "firing",
      "receiver": "warden",
      "groupLabels": {"alertname": "HighCPU"},
      "commonLabels": {"alertname": "HighCPU", "severity": "warning"},
      "commonAnnotations": {"summary": "CPU above 90%"},
      "externalURL": "http://alertmanager:9093",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighCPU", "instance": "web-1", "severity": "warning"},
          "annotations": {"summary": "CPU above 90%"},
          "startsAt": "2024-05-01T12:00:00.123Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
          "fingerprint": "c1d2e3f4a5b6c7d8"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "HighCPU", "instance": "web-2"},
          "startsAt": "2024-05-01T11:00:00Z",
          "endsAt": "2024-05-01T11:30:00+02:00"
        }
      ]
    }"#;

    #[test]
    fn parses_documented_example() {
        let p: WebhookPayload = serde_json::from_str(EXAMPLE).expect("example parses");
        p.validate().expect("example is valid");
        assert_eq!(p.group_labels.get("alertname").map(String::as_str), Some("HighCPU"));
        assert_eq!(p.external_url, "http://alertmanager:9093");
        assert_eq!(p.alerts.len(), 2);
        let first = &p.alerts[0];
        assert_eq!(first.ends_at, None);
        assert_eq!(first.fingerprint, "c1d2e3f4a5b6c7d8");
        assert_eq!(first.generator_url, "http://prometheus:9090/graph?g0.expr=up");
        assert_eq!(
            first.starts_at,
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single().expect("valid") + chrono::Duration::milliseconds(123)
        );
        let second = &p.alerts[1];
        assert!(second.annotations.is_empty());
        assert_eq!(second.ends_at, Utc.with_ymd_and_hms(2024, 5, 1, 9, 30, 0).single());
        assert_eq!(second.fingerprint, "");
    }

    #[test]
    fn round_trips_with_zero_time() {
        let p: WebhookPayload = serde_json::from_str(EXAMPLE).expect("example parses");
        let json = serde_json::to_value(&p).expect("serializes");
        assert_eq!(json["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(json["externalURL"], "http://alertmanager:9093");
        let back: WebhookPayload = serde_json::from_value(json).expect("parses back");
        assert_eq!(back, p);
    }

    #[test]
    fn missing_or_null_ends_at_is_none() {
        let alert: Alert =
            serde_json::from_str(r#"{"status":"firing","labels":{},"startsAt":"2024-01-01T00:00:00Z","endsAt":null}"#)
                .expect("null endsAt");
        assert_eq!(alert.ends_at, None);
        let alert: Alert = serde_json::from_str(r#"{"status":"firing","labels":{},"startsAt":"2024-01-01T00:00:00Z"}"#)
            .expect("missing endsAt");
        assert_eq!(alert.ends_at, None);
    }

    #[test]
    fn rejects_other_versions() {
        let mut p: WebhookPayload = serde_json::from_str(EXAMPLE).expect("example parses");
        p.version = "3".into();
        let err = p.validate().expect_err("version 3");
        assert!(matches!(err, Error::Payload(_)));
        assert!(err.to_string().contains("\"3\""), "{err}");
    }

    #[test]
    fn rejects_unknown_alert_status() {
        let mut p: WebhookPayload = serde_json::from_str(EXAMPLE).expect("example parses");
        p.alerts[1].status = "pending".into();
        let err = p.validate().expect_err("pending");
        assert!(err.to_string().contains("alerts[1]"), "{err}");
    }
}
