//! Warden's own metrics, served on `/metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    pub outbox_pending: Gauge,
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
        let outbox_pending = Gauge::default();
        registry.register("outbox_pending", "Notifications waiting for delivery", outbox_pending.clone());
        Self {
            registry,
            evaluations,
            no_data,
            detector_seconds,
            open_incidents,
            actions,
            notifications_sent,
            notification_failures,
            outbox_pending,
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)?;
        Ok(s)
    }

    pub fn channel(&self, family: &Family<ChannelLabel, Counter>, channel: &str) {
        family.get_or_create(&ChannelLabel { channel: channel.to_string() }).inc();
    }
}
