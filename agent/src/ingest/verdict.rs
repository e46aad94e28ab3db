//! What a source says about one identity (one series, one group member, one joint
//! identity): the verdict types every watch kind produces, and the helpers the kinds share
//! to place series by their identity labels.

use std::collections::BTreeMap;

use warden_connectors::prometheus::Series;
use warden_detectors::Detection;

use crate::incident::identity::fingerprint;

/// The decision for one identity.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    NoData(String),
    WarmingUp(Detection),
    /// The latest point deviates but not yet for `min_consecutive` points: neither an
    /// anomaly nor a quiet evaluation (so one dip inside an incident cannot resolve it).
    Deviating(Detection),
    Normal(Detection),
    Anomalous(Detection),
}

impl Verdict {
    pub fn detection(&self) -> Option<&Detection> {
        match self {
            Verdict::NoData(_) => None,
            Verdict::WarmingUp(d) | Verdict::Deviating(d) | Verdict::Normal(d) | Verdict::Anomalous(d) => Some(d),
        }
    }
}

/// One identity's series and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesVerdict {
    /// Values of the watch's identity labels.
    pub identity: BTreeMap<String, String>,
    /// All labels of the series.
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    pub verdict: Verdict,
}

/// Series grouped by their identity labels.
pub(crate) type IdentityGroups = BTreeMap<BTreeMap<String, String>, Vec<Series>>;

/// Series grouped by the values of the `identity` labels. A series that lacks one of them,
/// or one of the `required` labels (a histogram's `le`, a group's member label), cannot be
/// placed and becomes a "no data" verdict of its own.
pub(crate) fn group_by_identity(
    watch: &str,
    identity: &[String],
    required: &[&str],
    series: Vec<Series>,
) -> (IdentityGroups, Vec<SeriesVerdict>) {
    let mut groups: IdentityGroups = BTreeMap::new();
    let mut unplaced = Vec::new();
    for s in series {
        let mut key = BTreeMap::new();
        let mut missing = Vec::new();
        for l in identity {
            match s.labels.get(l) {
                Some(v) => {
                    key.insert(l.clone(), v.clone());
                }
                None => missing.push(l.as_str()),
            }
        }
        missing.extend(required.iter().copied().filter(|l| !s.labels.contains_key(*l)));
        if missing.is_empty() {
            groups.entry(key).or_default().push(s);
        } else {
            unplaced.push(SeriesVerdict {
                fingerprint: fingerprint(watch, &s.labels),
                identity: s.labels.clone(),
                labels: s.labels,
                verdict: Verdict::NoData(format!("series lacks identity label(s) {}", missing.join(", "))),
            });
        }
    }
    (groups, unplaced)
}

/// The "no data" verdict for an identity whose query returned several series.
pub(crate) fn ambiguous(
    watch: &str,
    identity_labels: &[String],
    identity: BTreeMap<String, String>,
    count: usize,
) -> SeriesVerdict {
    SeriesVerdict {
        fingerprint: fingerprint(watch, &identity),
        labels: identity.clone(),
        verdict: Verdict::NoData(format!(
            "{count} series share the identity {identity:?}; aggregate the query by the identity labels (e.g. `max by ({}) (...)`)",
            identity_labels.join(", ")
        )),
        identity,
    }
}

/// The value of the last sample at or before `t_ms`, if it is no older than `max_age_ms`.
pub(crate) fn sample_at(points: &[warden_connectors::prometheus::Sample], t_ms: i64, max_age_ms: i64) -> Option<f64> {
    let idx = points.partition_point(|p| p.timestamp_ms <= t_ms);
    let p = points.get(idx.checked_sub(1)?)?;
    (t_ms - p.timestamp_ms <= max_age_ms && p.value.is_finite()).then_some(p.value)
}
