//! The incident state machine over the store: a signal opens an incident for its fingerprint
//! or updates the open one; quiet evaluations count up until the incident resolves.
//!
//! Every source goes through here, so the rules hold whatever produced the signal: one open
//! incident per fingerprint (the store enforces it), an incident and the notification it owes
//! are written in one transaction, "no data" never reaches this module (sources do not emit
//! signals without data), and each change is logged, put on the timeline and wakes the
//! outbox. What to *do* about a change is the responder's job ([`crate::act::responder`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::notify::{render, NotifyEvent};
use crate::store::{Incident, IncidentSignal, Store, StoreError};
use crate::timeline::{Timeline, TimelineEvent};

/// What a person's resolve or acknowledge did.
#[derive(Debug, Clone, PartialEq)]
pub enum HandOutcome {
    /// Done; the incident as it is now.
    Done(Incident),
    /// Nothing changed: already resolved (or, for an acknowledgement, already acknowledged
    /// or not open).
    Unchanged(Incident),
    NotFound,
}

/// What a signal did to the incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new incident; its "opened" notification is queued.
    Opened(Incident),
    /// The open incident of the signal's fingerprint was updated; `quiet_before` is how many
    /// quiet evaluations in a row it had seen (0 when the signal held all along).
    Updated { incident: Incident, quiet_before: u32 },
}

impl Change {
    pub fn incident(&self) -> &Incident {
        match self {
            Change::Opened(i) | Change::Updated { incident: i, .. } => i,
        }
    }
}

/// Applies signals to the store (see the module docs).
pub struct Tracker {
    pub store: Arc<Store>,
    /// The notification channels and which of them hear about which incident.
    pub channels: crate::notify::Routes,
    pub timeline: Timeline,
    /// Woken when notifications are queued.
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

impl Tracker {
    /// Open an incident for the signal's fingerprint, or update the open one. `detail` is
    /// the evidence recorded with an opening.
    pub fn signal(&self, sig: &IncidentSignal, detail: &Value, now: DateTime<Utc>) -> Result<Change, StoreError> {
        if let Some(open) = self.store.open_incident_by_fingerprint(&sig.fingerprint)? {
            let quiet_before = self.store.update_incident(open.id, sig, now)?;
            self.timeline.emit(TimelineEvent::IncidentUpdated { at: now, incident_id: open.id, value: sig.observed });
            return Ok(Change::Updated { incident: open, quiet_before });
        }
        let routes = &self.channels;
        let incident = self.store.open_incident(sig, now, detail, |i| {
            routes.grouped(i, render(NotifyEvent::Opened, i, None, &[], &routes.for_incident(i)))
        })?;
        tracing::warn!(
            incident = incident.id,
            watch = %sig.watch,
            source = %sig.source,
            value = ?sig.observed,
            expected = ?sig.expected,
            title = %incident.title,
            "incident opened"
        );
        self.timeline.emit(TimelineEvent::IncidentOpened {
            at: now,
            incident_id: incident.id,
            title: incident.title.clone(),
        });
        if let Some(silence) = crate::incident::silence::check(&self.store, &incident, now) {
            tracing::info!(incident = incident.id, silence, "the incident is silenced: no notifications, no actions");
        }
        self.outbox_wake.notify_one();
        Ok(Change::Opened(incident))
    }

    /// Record an event on an incident's history.
    pub fn note(&self, incident_id: i64, now: DateTime<Utc>, kind: &str, detail: &Value) -> Result<(), StoreError> {
        self.store.add_event(incident_id, now, kind, detail, &[])
    }

    /// A quiet evaluation (data, no anomaly) for the open incident of `fingerprint`, if any:
    /// counted, and after `resolve_after` in a row the incident resolves. Returns the
    /// resolved incident.
    pub fn quiet(
        &self,
        fingerprint: &str,
        resolve_after: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, StoreError> {
        match self.store.open_incident_by_fingerprint(fingerprint)? {
            Some(open) => self.quiet_incident(&open, resolve_after, now),
            None => Ok(None),
        }
    }

    /// [`Self::quiet`] for an incident already read.
    pub fn quiet_incident(
        &self,
        open: &Incident,
        resolve_after: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, StoreError> {
        let quiet = self.store.record_quiet(open.id)?;
        if quiet < resolve_after {
            return Ok(None);
        }
        self.resolve(open, &json!({ "quiet_evaluations": quiet }), None, now)
    }

    /// Resolve the open incident of `fingerprint` (an alert that stopped firing).
    pub fn resolve_fingerprint(
        &self,
        fingerprint: &str,
        detail: &Value,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, StoreError> {
        match self.store.open_incident_by_fingerprint(fingerprint)? {
            Some(open) => self.resolve(&open, detail, None, now),
            None => Ok(None),
        }
    }

    /// A person resolves incident `id` (`by`, with an optional comment): resolved with its
    /// `resolved` event (`by_hand`), notifications and timeline event like any resolution.
    /// If its watch still sees the anomaly, the next evaluation opens a new incident: a
    /// resolution by hand closes this one, it does not silence the watch.
    pub fn resolve_by_hand(
        &self,
        id: i64,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<HandOutcome, StoreError> {
        let Some(incident) = self.store.get_incident(id)? else { return Ok(HandOutcome::NotFound) };
        if incident.status != "open" {
            return Ok(HandOutcome::Unchanged(incident));
        }
        let detail = json!({ "by_hand": true, "by": by, "comment": comment });
        match self.resolve(&incident, &detail, Some(by), now)? {
            Some(resolved) => {
                tracing::info!(incident = id, by, "incident resolved by hand");
                Ok(HandOutcome::Done(resolved))
            }
            None => Ok(HandOutcome::Unchanged(incident)),
        }
    }

    /// A person acknowledges open incident `id`: an `acknowledged` event names who and why.
    pub fn acknowledge(
        &self,
        id: i64,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<HandOutcome, StoreError> {
        let Some(incident) = self.store.get_incident(id)? else { return Ok(HandOutcome::NotFound) };
        let detail = json!({ "by": by, "comment": comment });
        if self.store.acknowledge_incident(id, by, now, &detail)? {
            tracing::info!(incident = id, by, "incident acknowledged");
            Ok(HandOutcome::Done(incident))
        } else {
            Ok(HandOutcome::Unchanged(incident))
        }
    }

    /// Resolve `open`; `by`: the person resolving it by hand (audited).
    fn resolve(
        &self,
        open: &Incident,
        detail: &Value,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, StoreError> {
        let actions = self.store.action_history(open.id);
        let routes = &self.channels;
        let resolved = self.store.resolve_incident(open.id, now, detail, by, |i| {
            routes.grouped(i, render(NotifyEvent::Resolved, i, None, &actions, &routes.for_incident(i)))
        })?;
        if let Some(r) = &resolved {
            tracing::info!(incident = r.id, watch = %r.watch, "incident resolved");
            self.timeline.emit(TimelineEvent::IncidentResolved { at: now, incident_id: r.id, title: r.title.clone() });
            self.outbox_wake.notify_one();
        }
        Ok(resolved)
    }

    /// The open incidents of one watch.
    pub fn open_for_watch(&self, watch: &str) -> Result<Vec<Incident>, StoreError> {
        Ok(self.store.open_incidents()?.into_iter().filter(|i| i.watch == watch).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tracker() -> Tracker {
        Tracker {
            store: Arc::new(Store::open_in_memory().expect("store")),
            channels: crate::notify::Routes::to_all(vec!["slack"]),
            timeline: Timeline::default(),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn sig(fp: &str, value: f64) -> IncidentSignal {
        IncidentSignal {
            fingerprint: fp.into(),
            watch: "latency".into(),
            source: "watch".into(),
            severity: "warning".into(),
            title: "latency anomalous".into(),
            labels: BTreeMap::new(),
            target: None,
            observed: Some(value),
            expected: Some(1.0),
            lower: None,
            upper: None,
            score: Some(5.0),
            detector: Some("auto".into()),
        }
    }

    #[test]
    fn one_incident_per_fingerprint_and_it_resolves_after_enough_quiet_evaluations() {
        let t = tracker();
        let now = Utc::now();
        let opened = t.signal(&sig("a", 9.0), &json!({}), now).expect("signal");
        let Change::Opened(first) = opened else { panic!("expected an opening: {opened:?}") };
        let again = t.signal(&sig("a", 10.0), &json!({}), now).expect("signal");
        assert!(matches!(&again, Change::Updated { incident, quiet_before: 0 } if incident.id == first.id));
        assert!(matches!(t.signal(&sig("b", 9.0), &json!({}), now), Ok(Change::Opened(i)) if i.id != first.id));

        assert_eq!(t.quiet("a", 2, now).expect("quiet"), None, "one quiet evaluation is not enough");
        // The signal comes back: the quiet streak is reported, then starts over.
        let back = t.signal(&sig("a", 9.0), &json!({}), now).expect("signal");
        assert!(matches!(back, Change::Updated { quiet_before: 1, .. }), "{back:?}");
        assert_eq!(t.quiet("a", 2, now).expect("quiet"), None);
        let resolved = t.quiet("a", 2, now).expect("quiet").expect("resolved after two in a row");
        assert_eq!(resolved.id, first.id);
        assert_eq!(t.quiet("a", 2, now).expect("quiet"), None, "nothing open any more");
        assert_eq!(t.open_for_watch("latency").expect("open").len(), 1, "b is still open");
        // Each opening and resolution queued its notification.
        assert_eq!(t.store.pending_notifications().expect("outbox"), 3);
    }

    #[test]
    fn routes_choose_the_channels_an_incident_is_told_on() {
        let path = std::path::Path::new("w.yaml");
        let cfg = crate::config::parse_str(
            "notify:\n  file: { path: /tmp/n.jsonl }\n  routes:\n    - match: ['team=payments']\n      receivers: [file]\n",
            path,
        )
        .expect("config");
        let mut t = tracker();
        t.channels = crate::notify::Routes::new(vec!["slack", "file"], &cfg.notify.routes);
        let mut payments = sig("p", 9.0);
        payments.labels.insert("team".into(), "payments".into());
        t.signal(&payments, &json!({}), Utc::now()).expect("signal");
        t.signal(&sig("other", 9.0), &json!({}), Utc::now()).expect("signal");
        let file = t.store.pending_messages("file").expect("file");
        let slack = t.store.pending_messages("slack").expect("slack");
        assert_eq!((file.len(), slack.len()), (2, 1), "payments to file only, the rest to every channel");
        let other = t.store.open_incident_by_fingerprint("other").expect("read").expect("open");
        assert_eq!(slack[0].incident_id, Some(other.id), "slack heard only of the unrouted incident");

        // Bad routes are refused with their paths.
        let bad = "notify:\n  file: { path: /tmp/n.jsonl }\n  routes:\n    - match: ['team']\n      receivers: [pagerduty]\n      continue: true\n";
        let errors = crate::config::parse_str(bad, path).expect_err("invalid").0;
        let got: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(got, ["notify.routes[0].match[0]", "notify.routes[0].receivers[0]"], "{errors:?}");
        assert!(errors[1].message.contains("not a configured channel (configured: file)"), "{errors:?}");
        let unknown = crate::config::parse_str("notify:\n  routes:\n    - receivers: []\n      matchers: []\n", path)
            .expect_err("unknown key")
            .0;
        assert_eq!(unknown[0].path, "notify.routes[0].matchers");
    }

    #[test]
    fn resolving_an_unknown_fingerprint_changes_nothing() {
        let t = tracker();
        assert_eq!(t.resolve_fingerprint("nope", &json!({}), Utc::now()).expect("resolve"), None);
    }
}
