//! The Alertmanager source: a webhook payload becomes one signal per alert.
//!
//! A firing alert is an anomaly signal for the incident of its fingerprint (its labels, see
//! [`crate::incident::identity::alert_fingerprint`]); a resolved alert resolves that
//! incident. An alert with another status is skipped and reported, never guessed at.

use serde_json::{json, Value};
use warden_connectors::alertmanager::{Alert, WebhookPayload};

use crate::incident::identity::{alert_fingerprint, alert_name, alert_severity, alert_target, alert_watch};
use crate::store::IncidentSignal;

/// What one alert says.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertSignal<'a> {
    /// Open or update the alert's incident; `detail` is recorded with an opening.
    Firing { alert: &'a Alert, signal: Box<IncidentSignal>, detail: Value },
    /// Resolve the alert's incident.
    Resolved { alert: &'a Alert, fingerprint: String, detail: Value },
    /// A status other than `firing` or `resolved`.
    Skipped { alert: &'a Alert, status: String },
}

/// The signals of a webhook payload, one per alert, in order.
pub fn signals(payload: &WebhookPayload) -> Vec<AlertSignal<'_>> {
    payload.alerts.iter().map(|a| signal(a, &payload.group_key)).collect()
}

fn signal<'a>(a: &'a Alert, group_key: &str) -> AlertSignal<'a> {
    let fingerprint = alert_fingerprint(&a.labels);
    match a.status.as_str() {
        "firing" => {
            let title =
                a.annotations.get("summary").cloned().unwrap_or_else(|| format!("{} firing", alert_name(&a.labels)));
            let signal = IncidentSignal {
                fingerprint,
                watch: alert_watch(&a.labels),
                source: "alertmanager".into(),
                severity: alert_severity(&a.labels).as_str().into(),
                title,
                labels: a.labels.clone(),
                target: alert_target(&a.labels),
                observed: None,
                expected: None,
                lower: None,
                upper: None,
                score: None,
                detector: None,
            };
            AlertSignal::Firing {
                alert: a,
                signal: Box::new(signal),
                detail: json!({ "alert": a, "group_key": group_key }),
            }
        }
        "resolved" => AlertSignal::Resolved { alert: a, fingerprint, detail: json!({ "alert": a }) },
        other => AlertSignal::Skipped { alert: a, status: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(alerts: serde_json::Value) -> WebhookPayload {
        serde_json::from_value(json!({
            "version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": "firing", "receiver": "warden",
            "alerts": alerts,
        }))
        .expect("payload")
    }

    #[test]
    fn firing_resolved_and_unknown_statuses() {
        let p = payload(json!([
            {"status": "firing", "labels": {"alertname": "X", "namespace": "n", "deployment": "d", "severity": "critical"},
             "annotations": {"summary": "X is bad"}, "startsAt": "2026-01-01T00:00:00Z"},
            {"status": "resolved", "labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z"},
            {"status": "pending", "labels": {"alertname": "Y"}, "startsAt": "2026-01-01T00:00:00Z"},
        ]));
        let s = signals(&p);
        assert_eq!(s.len(), 3);
        let AlertSignal::Firing { signal, detail, .. } = &s[0] else { panic!("{:?}", s[0]) };
        assert_eq!(signal.watch, "alertmanager/X");
        assert_eq!(signal.severity, "critical");
        assert_eq!(signal.title, "X is bad");
        assert_eq!(signal.target.as_ref().map(|t| t.deployment.as_str()), Some("d"));
        assert_eq!(detail["group_key"], json!("{}:{alertname=\"X\"}"));
        assert!(
            matches!(&s[1], AlertSignal::Resolved { fingerprint, .. } if fingerprint == &alert_fingerprint(&p.alerts[1].labels))
        );
        assert!(matches!(&s[2], AlertSignal::Skipped { status, .. } if status == "pending"));
    }
}
