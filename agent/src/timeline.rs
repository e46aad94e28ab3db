//! What the engine did, as events an observer can follow.
//!
//! The daemon logs them; `warden demo` prints them as a readable timeline. Emitting is
//! fire-and-forget: a slow or absent observer never holds up the engine.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender};

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
        /// Who wrote the summary and why: the model (with its decoding) or the template
        /// (with the reason the model's text was not used).
        written_by: String,
        /// 0 for the first analysis, then one more per re-analysis on late evidence.
        revision: u32,
        /// What prompted a re-analysis.
        #[serde(skip_serializing_if = "Option::is_none")]
        revised_because: Option<String>,
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

/// How many events may wait for the observer. Overflow policy: an event that finds the
/// queue full is dropped and counted ([`Timeline::dropped`]); the engine never waits for an
/// observer. The demo drains the queue after every simulated tick, far below this.
pub const TIMELINE_QUEUE: usize = 4096;

/// An optional sink for timeline events.
#[derive(Clone, Default)]
pub struct Timeline {
    tx: Option<Sender<TimelineEvent>>,
    dropped: Arc<AtomicU64>,
}

impl Timeline {
    /// A timeline and the receiver its events go to (bounded by [`TIMELINE_QUEUE`]).
    pub fn channel() -> (Self, Receiver<TimelineEvent>) {
        let (tx, rx) = tokio::sync::mpsc::channel(TIMELINE_QUEUE);
        (Self { tx: Some(tx), dropped: Arc::default() }, rx)
    }

    pub fn emit(&self, ev: TimelineEvent) {
        if let Some(tx) = &self.tx {
            match tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // A closed receiver only means nobody is watching.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Events dropped because the observer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (t, mut rx) = Timeline::channel();
        let ev =
            |i: i64| TimelineEvent::IncidentUpdated { at: DateTime::<Utc>::UNIX_EPOCH, incident_id: i, value: None };
        for i in 0..(TIMELINE_QUEUE as i64 + 5) {
            t.emit(ev(i));
        }
        assert_eq!(t.dropped(), 5);
        assert_eq!(rx.try_recv().ok(), Some(ev(0)), "the oldest events are kept");
        // Without an observer nothing is queued or counted.
        let silent = Timeline::default();
        silent.emit(ev(1));
        assert_eq!(silent.dropped(), 0);
    }
}
