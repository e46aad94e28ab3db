//! What the engine did, as events an observer can follow.
//!
//! The daemon logs them; `warden demo` prints them as a readable timeline. Emitting is
//! fire-and-forget: a slow or absent observer never holds up the engine.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEvent {
    Evaluated {
        at: DateTime<Utc>,
        watch: String,
        target: String,
        value: f64,
        expected: Option<f64>,
        state: String,
        note: Option<String>,
    },
    NoData {
        at: DateTime<Utc>,
        watch: String,
        reason: String,
    },
    IncidentOpened {
        at: DateTime<Utc>,
        incident_id: i64,
        title: String,
    },
    IncidentUpdated {
        at: DateTime<Utc>,
        incident_id: i64,
        value: Option<f64>,
    },
    /// A playbook run changed state (started, waiting, succeeded, reverted, ...).
    Run {
        at: DateTime<Utc>,
        run_id: i64,
        incident_id: Option<i64>,
        status: String,
        text: String,
    },
    /// An incident's root-cause analysis: the top-ranked cause and the summary.
    Analysed {
        at: DateTime<Utc>,
        incident_id: i64,
        top: String,
        summary: String,
    },
    IncidentResolved {
        at: DateTime<Utc>,
        incident_id: i64,
        title: String,
    },
    NotificationDelivered {
        at: DateTime<Utc>,
        channel: String,
        event: String,
        subject: String,
    },
    NotificationFailed {
        at: DateTime<Utc>,
        channel: String,
        event: String,
        error: String,
        attempts: u32,
    },
    /// A notification was given up on and kept as a dead letter with its reason.
    NotificationDeadLettered {
        at: DateTime<Utc>,
        channel: String,
        event: String,
        reason: String,
    },
}

/// An optional sink for timeline events.
#[derive(Clone, Default)]
pub struct Timeline {
    tx: Option<UnboundedSender<TimelineEvent>>,
}

impl Timeline {
    pub fn new(tx: UnboundedSender<TimelineEvent>) -> Self {
        Self { tx: Some(tx) }
    }

    pub fn emit(&self, ev: TimelineEvent) {
        if let Some(tx) = &self.tx {
            // A closed receiver only means nobody is watching.
            let _ = tx.send(ev);
        }
    }
}
