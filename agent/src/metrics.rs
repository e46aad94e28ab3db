//! Warden's own metrics, served on `/metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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
    /// Failed watch queries, per watch and class (`retryable` or `permanent`).
    pub query_failures: Family<WatchOutcome, Counter>,
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
        registry.register("evaluations", "Watch evaluations by outcome (ok, anomalous, no_data, warming_up)", evaluations.clone());
        let no_data = Family::<WatchLabel, Counter>::default();
        registry.register("watch_no_data", "Evaluations that found no usable data", no_data.clone());
        let detector_seconds = Family::<WatchLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00001, 4.0, 10))
        });
        registry.register("detector_seconds", "Time spent in detectors per evaluation", detector_seconds.clone());
        let open_incidents = Gauge::default();
        registry.register("open_incidents", "Incidents currently open", open_incidents.clone());
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("actions", "Playbook runs started by watches, by playbook (kind) and the run status right after the start (outcome)", actions.clone());
        let notifications_sent = Family::<ChannelLabel, Counter>::default();
        registry.register("notifications_sent", "Notifications delivered", notifications_sent.clone());
        let notification_failures = Family::<ChannelLabel, Counter>::default();
        registry.register("notification_failures", "Failed notification delivery attempts", notification_failures.clone());
        let outbox_pending = Family::<ChannelLabel, Gauge>::default();
        registry.register("outbox_pending", "Notifications waiting for delivery, per channel", outbox_pending.clone());
        let outbox_oldest_pending_seconds = Family::<ChannelLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest notification waiting for delivery (0 when none waits)",
            outbox_oldest_pending_seconds.clone(),
        );
        let outbox_dead_letters = Family::<ChannelLabel, Counter>::default();
        registry.register("outbox_dead_letters", "Notifications given up on and kept as dead letters", outbox_dead_letters.clone());
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
        let query_failures = Family::<WatchOutcome, Counter>::default();
        registry.register("query_failures", "Failed watch queries by class: retryable (connection, timeout, 5xx) or permanent (4xx, bad query, bad answer)", query_failures.clone());
        Self {
            audit_head_entries,
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

    pub fn channel(&self, family: &Family<ChannelLabel, Counter>, channel: &str) {
        self.channel_by(family, channel, 1);
    }

    pub fn channel_by(&self, family: &Family<ChannelLabel, Counter>, channel: &str, n: u64) {
        family.get_or_create(&ChannelLabel { channel: channel.to_string() }).inc_by(n);
    }
}
