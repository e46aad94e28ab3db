//! Late evidence: incidents whose analysis a finished run has made out of date.
//!
//! An incident is analysed when it opens, before its playbook has done anything. What
//! happens next is often the most telling part of the story: a scale-up that brought latency
//! back, a verification that failed, a revert, a rollback. When a run of an analysed
//! incident ends, the run notices record the incident here; the analysis worker (the daemon)
//! or the simulated clock (the demo, tests) takes it and analyses the incident again, and
//! the new analysis replaces the old one as a numbered revision, saying what prompted it.
//!
//! Several runs ending close together give one re-analysis (the set keeps the latest reason
//! per incident). Nothing is recorded while analysis is off, so the set cannot grow unread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// Why and when an incident's analysis went out of date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// What happened (`run 3 (scale-up) reverted`).
    pub why: String,
    /// When it happened: an analysis made at or after this already knows it.
    pub at: DateTime<Utc>,
}

/// Incidents waiting to be analysed again, each with why.
#[derive(Debug, Default)]
pub struct LateEvidence {
    enabled: AtomicBool,
    pending: Mutex<BTreeMap<i64, Late>>,
    wake: Notify,
}

impl LateEvidence {
    /// Start recording (called when analysis is set up).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Incident `incident_id` has new evidence (`why`, e.g. `run 3 reverted`) since `at`.
    pub fn note(&self, incident_id: i64, why: String, at: DateTime<Utc>) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.insert(incident_id, Late { why, at });
        }
        self.wake.notify_one();
    }

    /// The incidents to analyse again, oldest id first; the set is emptied.
    pub fn take(&self) -> Vec<(i64, Late)> {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p).into_iter().collect()).unwrap_or_default()
    }

    /// Wait until something is noted (returns at once when something was noted since the
    /// last wait).
    pub async fn noted(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn records_only_when_enabled_and_keeps_the_latest_reason() {
        let late = LateEvidence::default();
        late.note(1, "run 1 succeeded".into(), at(0));
        assert!(late.take().is_empty(), "analysis off: nothing is kept");
        late.enable();
        late.note(2, "run 2 failed".into(), at(1));
        late.note(1, "run 1 succeeded".into(), at(2));
        late.note(2, "run 3 reverted".into(), at(3));
        let taken: Vec<(i64, String, DateTime<Utc>)> = late.take().into_iter().map(|(i, l)| (i, l.why, l.at)).collect();
        assert_eq!(taken, vec![(1, "run 1 succeeded".to_string(), at(2)), (2, "run 3 reverted".to_string(), at(3))]);
        assert!(late.take().is_empty());
    }

    #[tokio::test]
    async fn a_note_wakes_the_worker_even_before_it_waits() {
        let late = LateEvidence::default();
        late.enable();
        late.note(7, "run 9 reverted".into(), at(0));
        tokio::time::timeout(std::time::Duration::from_secs(5), late.noted()).await.expect("woken");
        assert_eq!(late.take().len(), 1);
    }
}
