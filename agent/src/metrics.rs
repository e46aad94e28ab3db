//! Warden's own metrics, served on `/metrics` in the Prometheus text format.
//!
//! Most are updated where things happen (evaluations, deliveries). The run and audit gauges
//! are read from the store when `/metrics` is scraped ([`Metrics::refresh_from_store`]), so
//! that runs advanced or approved by another process (the CLI) are counted too, and the
//! alerts of `deploy/kustomize/components/monitoring` can tell failing runs, requests left
//! unanswered and a broken audit chain.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use warden_playbooks::run::ALL_STATUSES;

use crate::store::Store;

/// How long a verified audit chain whose head did not move is trusted before the next scrape
/// verifies it again (verifying reads every entry).
const AUDIT_REVERIFY: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchOutcome {
    pub watch: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    pub watch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// All metrics, registered once.
pub struct Metrics {
    pub registry: Registry,
    pub evaluations: Family<WatchOutcome, Counter>,
    pub no_data: Family<WatchLabel, Counter>,
    pub detector_seconds: Family<WatchLabel, Histogram>,
    pub open_incidents: Gauge,
    pub actions: Family<ActionLabels, Counter>,
    pub notifications_sent: Family<ChannelLabel, Counter>,
    pub notification_failures: Family<ChannelLabel, Counter>,
    /// Messages waiting for delivery, per channel.
    pub outbox_pending: Family<ChannelLabel, Gauge>,
    /// Age of the oldest waiting message, per channel (0 when none waits).
    pub outbox_oldest_pending_seconds: Family<ChannelLabel, Gauge<f64, AtomicU64>>,
    /// Messages given up on, per channel.
    pub outbox_dead_letters: Family<ChannelLabel, Counter>,
    /// Dead letters kept now (not retried or discarded), per channel.
    pub outbox_dead: Family<ChannelLabel, Gauge>,
    /// Digests sent for a flood, per channel.
    pub outbox_digests: Family<ChannelLabel, Counter>,
    /// Entries the audit head records (the chain's length as written, see `warden audit verify`).
    pub audit_head_entries: Gauge,
    /// Playbook runs in the store, per status (every status, 0 when none).
    pub runs: Family<StatusLabel, Gauge>,
    /// Age of the oldest run waiting for approval (0 when none waits).
    pub runs_oldest_awaiting_approval_seconds: Gauge<f64, AtomicU64>,
    /// 1 when the audit chain verified intact against its head at the last check; 0 when it
    /// is broken or could not be read.
    pub audit_verified: Gauge,
    /// When the chain was last verified intact, and the head count it had then.
    audit_checked: Mutex<Option<(Instant, i64)>>,
    /// Failed watch queries, per watch and class (`retryable` or `permanent`).
    pub query_failures: Family<WatchOutcome, Counter>,
    /// Work a full in-process queue refused, per queue (`analysis`): see each queue's
    /// overflow policy in `docs/architecture.md`.
    pub queue_dropped: Family<QueueLabel, Counter>,
    /// 1 while this replica leads (always 1 without leader election), 0 while it follows.
    pub leader: Gauge,
    /// `spec.leaseTransitions` of the leader Lease as last seen (0 without leader election).
    pub leader_transitions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let evaluations = Family::<WatchOutcome, Counter>::default();
        registry.register(
            "evaluations",
            "Watch evaluations by outcome (ok, anomalous, no_data, warming_up)",
            evaluations.clone(),
        );
        let no_data = Family::<WatchLabel, Counter>::default();
        registry.register("watch_no_data", "Evaluations that found no usable data", no_data.clone());
        let detector_seconds = Family::<WatchLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00001, 4.0, 10))
        });
        registry.register("detector_seconds", "Time spent in detectors per evaluation", detector_seconds.clone());
        let open_incidents = Gauge::default();
        registry.register("open_incidents", "Incidents currently open", open_incidents.clone());
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Playbook runs started by watches, by playbook (kind) and the run status right after the start (outcome)",
            actions.clone(),
        );
        let notifications_sent = Family::<ChannelLabel, Counter>::default();
        registry.register("notifications_sent", "Notifications delivered", notifications_sent.clone());
        let notification_failures = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "notification_failures",
            "Failed notification delivery attempts",
            notification_failures.clone(),
        );
        let outbox_pending = Family::<ChannelLabel, Gauge>::default();
        registry.register("outbox_pending", "Notifications waiting for delivery, per channel", outbox_pending.clone());
        let outbox_oldest_pending_seconds = Family::<ChannelLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest notification waiting for delivery (0 when none waits)",
            outbox_oldest_pending_seconds.clone(),
        );
        let outbox_dead_letters = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "outbox_dead_letters",
            "Notifications given up on and kept as dead letters",
            outbox_dead_letters.clone(),
        );
        let outbox_dead = Family::<ChannelLabel, Gauge>::default();
        registry.register("outbox_dead", "Dead letters kept now (neither retried nor discarded)", outbox_dead.clone());
        let outbox_digests = Family::<ChannelLabel, Counter>::default();
        registry.register("outbox_digests", "Digests queued for a flood of notifications", outbox_digests.clone());
        let audit_head_entries = Gauge::default();
        registry.register(
            "audit_head_entries",
            "Audit entries the audit head records; a chain shorter than this was truncated (warden audit verify)",
            audit_head_entries.clone(),
        );
        let runs = Family::<StatusLabel, Gauge>::default();
        registry.register("runs", "Playbook runs in the store, per status", runs.clone());
        let runs_oldest_awaiting_approval_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "runs_oldest_awaiting_approval_seconds",
            "Age of the oldest playbook run waiting for approval (0 when none waits)",
            runs_oldest_awaiting_approval_seconds.clone(),
        );
        let audit_verified = Gauge::default();
        registry.register(
            "audit_verified",
            "1 when the audit chain verified intact against its head (warden audit verify); 0 when broken or unreadable",
            audit_verified.clone(),
        );
        let query_failures = Family::<WatchOutcome, Counter>::default();
        registry.register("query_failures", "Failed watch queries by class: retryable (connection, timeout, 5xx) or permanent (4xx, bad query, bad answer)", query_failures.clone());
        let queue_dropped = Family::<QueueLabel, Counter>::default();
        registry.register(
            "queue_dropped",
            "Work refused because an in-process queue was full, per queue (analysis: the incident stays unanalysed)",
            queue_dropped.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the leader (always 1 without leader election), 0 while it follows",
            leader.clone(),
        );
        let leader_transitions = Gauge::default();
        registry.register(
            "leader_transitions",
            "Leader changes of the leader election Lease (spec.leaseTransitions) as last seen",
            leader_transitions.clone(),
        );
        Self {
            leader,
            leader_transitions,
            queue_dropped,
            audit_head_entries,
            runs,
            runs_oldest_awaiting_approval_seconds,
            audit_verified,
            audit_checked: Mutex::new(None),
            registry,
            evaluations,
            no_data,
            detector_seconds,
            open_incidents,
            actions,
            notifications_sent,
            notification_failures,
            outbox_pending,
            outbox_oldest_pending_seconds,
            outbox_dead_letters,
            outbox_dead,
            outbox_digests,
            query_failures,
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)?;
        Ok(s)
    }

    /// Reads the run gauges and the audit verification from `store` (at most one audit
    /// verification per [`AUDIT_REVERIFY`] while the head does not move). A store that cannot
    /// be read leaves the run gauges as they were and sets `audit_verified` to 0: unknown is
    /// never reported as intact.
    pub fn refresh_from_store(&self, store: &Store, now: DateTime<Utc>) {
        match run_counts(store) {
            Ok(rows) => {
                for status in ALL_STATUSES {
                    let count = rows.iter().find(|(s, ..)| s == status.as_str()).map_or(0, |(_, n, _)| *n);
                    self.runs.get_or_create(&StatusLabel { status: status.as_str().to_string() }).set(count);
                }
                let oldest = rows.iter().find(|(s, ..)| s == "awaiting_approval").map(|(_, _, created)| *created);
                let age = oldest.map_or(0.0, |ms| ((crate::store::ms(now) - ms) as f64 / 1000.0).max(0.0));
                self.runs_oldest_awaiting_approval_seconds.set(age);
            }
            Err(e) => tracing::warn!(error = %e, "reading run counts for /metrics"),
        }
        self.audit_verified.set(i64::from(self.audit_intact(store)));
    }

    fn audit_intact(&self, store: &Store) -> bool {
        let head = match store.audit_head() {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit head for /metrics");
                return false;
            }
        };
        let count = head.as_ref().map_or(0, |h| h.count);
        let mut checked = self.audit_checked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, n)) = *checked {
            if n == count && at.elapsed() < AUDIT_REVERIFY {
                return true;
            }
        }
        let intact = match store.audit_entries() {
            Ok(entries) => warden_playbooks::audit::verify_with_head(&entries, head.as_ref()).is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit trail for /metrics");
                false
            }
        };
        *checked = intact.then(|| (Instant::now(), count));
        intact
    }

    pub fn channel(&self, family: &Family<ChannelLabel, Counter>, channel: &str) {
        self.channel_by(family, channel, 1);
    }

    pub fn channel_by(&self, family: &Family<ChannelLabel, Counter>, channel: &str, n: u64) {
        family.get_or_create(&ChannelLabel { channel: channel.to_string() }).inc_by(n);
    }
}

/// `(status, runs, oldest created_at in ms)` per status present in the store.
fn run_counts(store: &Store) -> Result<Vec<(String, i64, i64)>, crate::store::StoreError> {
    let rows = store.with(|c| {
        c.query("SELECT status, COUNT(*), MIN(created_at) FROM runs GROUP BY status", crate::store::db::args![])
    })?;
    rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_run(store: &Store, status: &str, created_ms: i64) {
        store
            .with(|c| {
                c.execute(
                    "INSERT INTO runs (playbook, status, trigger_kind, dry_run, created_at, updated_at, body)
                     VALUES ('scale-up', ?1, 'manual', 0, ?2, ?2, '{}')",
                    crate::store::db::args![status, created_ms],
                )
            })
            .expect("insert run");
    }

    #[test]
    fn run_and_audit_gauges_come_from_the_store() {
        for store in crate::store::testing::stores() {
            let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z").expect("time").with_timezone(&Utc);
            let t = crate::store::ms(now);
            insert_run(&store, "failed", t - 60_000);
            insert_run(&store, "failed", t - 30_000);
            insert_run(&store, "awaiting_approval", t - 900_000);
            insert_run(&store, "awaiting_approval", t - 120_000);
            let m = Metrics::new();
            m.refresh_from_store(&store, now);
            let text = m.encode().expect("encode");
            assert!(text.contains("warden_runs{status=\"failed\"} 2"), "{text}");
            assert!(text.contains("warden_runs{status=\"awaiting_approval\"} 2"), "{text}");
            // Every status is a series, so alerts on it never see "absent" for "none".
            assert!(text.contains("warden_runs{status=\"revert_failed\"} 0"), "{text}");
            assert!(text.contains("warden_runs_oldest_awaiting_approval_seconds 900.0"), "{text}");
            assert!(text.contains("warden_audit_verified 1"), "{text}");

            // A head that records entries the chain does not have: truncated, so not intact.
            store
                .with(|c| {
                    c.execute(
                        "INSERT INTO audit_head (id, count, last_hash) VALUES (1, 3, 'x') ON CONFLICT (id) DO UPDATE SET count = 3",
                        crate::store::db::args![],
                    )
                })
                .expect("head");
            m.refresh_from_store(&store, now);
            let text = m.encode().expect("encode");
            assert!(text.contains("warden_audit_verified 0"), "{text}");
        }
    }

    #[test]
    fn no_waiting_run_is_age_zero() {
        let store = Store::open_in_memory().expect("store");
        let m = Metrics::new();
        m.refresh_from_store(&store, Utc::now());
        let text = m.encode().expect("encode");
        assert!(text.contains("warden_runs_oldest_awaiting_approval_seconds 0.0"), "{text}");
        assert!(text.contains("warden_runs{status=\"succeeded\"} 0"), "{text}");
    }
}
