//! Payloads for the alerting receivers: PagerDuty, Opsgenie, Microsoft Teams and the
//! signed JSON webhook.
//!
//! PagerDuty and Opsgenie keep an alert of their own per incident, keyed by the incident's
//! fingerprint (`dedup_key`, `alias`): `opened` creates it, `resolved` closes it,
//! `acknowledged` acknowledges it. PagerDuty has nothing for the steps in between, so
//! `action` and `analysis` are not sent there; Opsgenie gets them as notes on the alert.
//! Teams gets an Adaptive Card for every event. The webhook gets the same JSON document
//! as the file channel.
//!
//! Every stored payload has a `subject` (for listings and digests) beside what is sent;
//! credentials (routing key, API key, URLs) are added by the connectors when sending and
//! are never stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use warden_connectors::opsgenie::{AlertRequest, CreateAlert, Priority};
use warden_connectors::pagerduty::{self, EventAction};
use warden_connectors::teams;
use warden_models::format_value;

use super::render::NotifyEvent;
use crate::store::Incident;

/// Receivers that keep one alert per incident: they get neither digests nor dead-letter
/// notices (a digest would lose the resolve of the alerts it stands for, and a notice
/// would page someone about a chat message).
pub const ALERTING: &[&str] = &["pagerduty", "opsgenie"];

/// Receivers that get digests in a flood: people read them, one line per incident is
/// enough. Machines (file, webhook) and alerting receivers get every event.
pub const DIGESTED: &[&str] = &["slack", "slack_app", "email", "teams"];

/// Facts of an incident, for the structured payloads.
pub(super) fn details(i: &Incident, summary: &str) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert("incident_id".into(), i.id.to_string());
    d.insert("watch".into(), i.watch.clone());
    d.insert("severity".into(), i.severity.clone());
    d.insert("source".into(), i.source.clone());
    if let Some(t) = &i.target {
        d.insert("target".into(), format!("{}/{}", t.namespace, t.deployment));
    }
    if let Some(v) = i.observed {
        d.insert("observed".into(), format_value(v));
    }
    if let Some(v) = i.expected {
        d.insert("expected".into(), format_value(v));
    }
    if let Some(det) = &i.detector {
        d.insert("detector".into(), det.clone());
    }
    for (k, v) in &i.labels {
        if k != "__name__" {
            d.insert(format!("label.{k}"), v.clone());
        }
    }
    d.insert("opened_at".into(), i.opened_at.to_rfc3339());
    if let Some(r) = i.resolved_at {
        d.insert("resolved_at".into(), r.to_rfc3339());
    }
    if !summary.is_empty() {
        d.insert("summary".into(), summary.to_string());
    }
    d
}

fn where_of(i: &Incident) -> String {
    match &i.target {
        Some(t) => format!("{}/{}", t.namespace, t.deployment),
        None => i.watch.clone(),
    }
}

/// The PagerDuty event for `event`, or `None` when PagerDuty has nothing for it.
pub fn pagerduty(event: NotifyEvent, i: &Incident, subject: &str, summary: &str) -> Option<Value> {
    let action = match event {
        NotifyEvent::Opened => EventAction::Trigger,
        NotifyEvent::Acknowledged => EventAction::Acknowledge,
        NotifyEvent::Resolved => EventAction::Resolve,
        NotifyEvent::Action | NotifyEvent::Analysis => return None,
    };
    let payload = (action == EventAction::Trigger).then(|| pagerduty::Payload {
        summary: format!("{} ({})", i.title, where_of(i)),
        source: where_of(i),
        severity: pagerduty::Severity::from_warden(&i.severity),
        timestamp: Some(i.opened_at.to_rfc3339()),
        component: i.target.as_ref().map(|t| t.deployment.clone()),
        group: Some(i.watch.clone()),
        class: i.detector.clone(),
        custom_details: serde_json::to_value(details(i, summary)).ok(),
    });
    let ev = pagerduty::Event {
        event_action: action,
        dedup_key: i.fingerprint.clone(),
        payload,
        client: Some("warden".into()),
        client_url: None,
    };
    Some(json!({"subject": subject, "event": ev}))
}

/// The Opsgenie request for `event`; `action` is what Warden did (for `action` events).
pub fn opsgenie(event: NotifyEvent, i: &Incident, subject: &str, summary: &str, action: &str) -> Value {
    let alias = i.fingerprint.clone();
    let req = match event {
        NotifyEvent::Opened => AlertRequest::Create(CreateAlert {
            message: i.title.clone(),
            alias,
            description: Some(summary.to_string()),
            tags: vec!["warden".into(), i.watch.clone()],
            details: details(i, ""),
            entity: Some(where_of(i)),
            source: Some("warden".into()),
            priority: Some(Priority::from_warden(&i.severity)),
            note: None,
        }),
        NotifyEvent::Action => AlertRequest::Note { alias, note: format!("Warden acted: {action}") },
        NotifyEvent::Analysis => AlertRequest::Note { alias, note: summary.to_string() },
        NotifyEvent::Acknowledged => AlertRequest::Acknowledge { alias, note: Some(subject.to_string()) },
        NotifyEvent::Resolved => AlertRequest::Close {
            alias,
            note: Some(format!(
                "Resolved by Warden at {}",
                i.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
            )),
        },
    };
    json!({"subject": subject, "request": req})
}

/// A Teams card: a heading, facts, then text paragraphs.
pub fn teams(subject: &str, headline: &str, facts: &[(&str, String)], paragraphs: &[String]) -> Value {
    let mut body = vec![teams::text_block(headline, true)];
    if !facts.is_empty() {
        body.push(teams::fact_set(facts));
    }
    body.extend(paragraphs.iter().filter(|p| !p.trim().is_empty()).map(|p| teams::text_block(p, false)));
    json!({"subject": subject, "message": teams::card_message(body)})
}

/// The facts a Teams card shows for an incident.
pub fn teams_facts(i: &Incident, action: &str, expected: String) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Severity", i.severity.clone()),
        ("Watch", i.watch.clone()),
        ("Target", where_of(i)),
        ("Observed", i.observed.map(format_value).unwrap_or_else(|| "-".into())),
        ("Expected", expected),
        ("Action", action.to_string()),
        ("Incident", format!("#{} ({})", i.id, i.fingerprint)),
    ];
    if let Some(r) = i.resolved_at {
        facts.push(("Resolved at", r.to_rfc3339()));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TargetRef;
    use chrono::DateTime;

    fn incident() -> Incident {
        Incident {
            id: 9,
            fingerprint: "fp-abc".into(),
            watch: "latency".into(),
            source: "watch".into(),
            status: "open".into(),
            severity: "critical".into(),
            title: "latency anomalous".into(),
            labels: [("pod".to_string(), "p-1".to_string())].into(),
            target: Some(TargetRef { namespace: "shop".into(), deployment: "checkout".into() }),
            observed: Some(2.0),
            expected: Some(0.5),
            lower: None,
            upper: None,
            score: None,
            detector: Some("auto".into()),
            opened_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            updated_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            resolved_at: None,
            quiet_evaluations: 0,
        }
    }

    #[test]
    fn pagerduty_triggers_and_resolves_one_alert_per_incident() {
        let i = incident();
        let open = pagerduty(NotifyEvent::Opened, &i, "s", "summary").expect("trigger");
        assert_eq!(open["event"]["event_action"], "trigger");
        assert_eq!(open["event"]["dedup_key"], "fp-abc");
        assert_eq!(open["event"]["payload"]["severity"], "critical");
        assert_eq!(open["event"]["payload"]["source"], "shop/checkout");
        assert_eq!(open["event"]["payload"]["custom_details"]["label.pod"], "p-1");
        let event: pagerduty::Event = serde_json::from_value(open["event"].clone()).expect("typed");
        assert_eq!(event.event_action, EventAction::Trigger);
        let done = pagerduty(NotifyEvent::Resolved, &i, "s", "").expect("resolve");
        assert_eq!(done["event"]["event_action"], "resolve");
        assert_eq!(done["event"]["dedup_key"], "fp-abc");
        assert!(done["event"].get("payload").is_none());
        assert!(pagerduty(NotifyEvent::Action, &i, "s", "").is_none());
    }

    #[test]
    fn opsgenie_creates_notes_and_closes_by_alias() {
        let i = incident();
        let open = opsgenie(NotifyEvent::Opened, &i, "s", "summary", "none");
        assert_eq!(open["request"]["action"], "create");
        assert_eq!(open["request"]["alias"], "fp-abc");
        assert_eq!(open["request"]["priority"], "P1");
        let note = opsgenie(NotifyEvent::Action, &i, "s", "", "scaled shop/checkout to 3");
        assert_eq!(note["request"]["action"], "note");
        assert!(note["request"]["note"].as_str().is_some_and(|n| n.contains("scaled")));
        let close = opsgenie(NotifyEvent::Resolved, &i, "s", "", "");
        assert_eq!(close["request"]["action"], "close");
        let typed: AlertRequest = serde_json::from_value(close["request"].clone()).expect("typed");
        assert_eq!(typed.alias(), "fp-abc");
    }

    #[test]
    fn teams_cards_carry_the_facts() {
        let i = incident();
        let card = teams("s", "Incident #9 opened", &teams_facts(&i, "none", "0.5".into()), &["why".into()]);
        let body = &card["message"]["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["text"], "Incident #9 opened");
        assert_eq!(body[1]["facts"][2]["value"], "shop/checkout");
        assert_eq!(body[2]["text"], "why");
        assert_eq!(card["subject"], "s");
    }
}
