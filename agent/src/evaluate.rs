//! One evaluation of a watch: query, split into series by identity, run the detector.
//!
//! The result is a verdict per identity. "No data" is a verdict of its own, decided here and
//! nowhere else: query errors, partial responses, empty results, stale or non-finite last
//! samples, and ambiguous identities all become `NoData` with the reason, so the incident
//! logic can never mistake missing data for health.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sha2::{Digest, Sha256};
use warden_connectors::prometheus::Series;
use warden_detectors::{Detection, DetectionState};

use crate::config::WatchConfig;
use crate::source::MetricSource;
use crate::watch_kind::WatchKind;

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

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Nothing usable came back at all.
    NoData(String),
    Series(Vec<SeriesVerdict>),
}

/// A stable fingerprint of a watch and the identity label values.
pub fn fingerprint(watch: &str, identity: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(watch.as_bytes());
    for (k, v) in identity {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([0u8]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

/// Query and judge one watch at `now`. `open_since` gives, for the identities of this watch
/// with an open incident, when it opened: detectors that fit a reference window
/// (multivariate) keep it before that time, so a long fault does not become the new normal
/// and resolve itself. Also returns the time spent in detectors.
pub async fn evaluate(
    source: &dyn MetricSource,
    watch: &WatchConfig,
    now: DateTime<Utc>,
    open_since: &BTreeMap<String, DateTime<Utc>>,
) -> (Evaluation, std::time::Duration) {
    let end = now - to_chrono(watch.offset.get());
    let start = end - to_chrono(watch.lookback.get());
    let kind = match WatchKind::parse(&watch.detector) {
        Ok(k) => k,
        Err((param, message)) => return (Evaluation::NoData(format!("detector parameter {param}: {message}")), Default::default()),
    };
    if let WatchKind::Joint(spec) = &kind {
        let mut features = Vec::with_capacity(watch.queries.len());
        for (name, query) in &watch.queries {
            match fetch(source, query, start, end, watch.step.get()).await {
                Ok(series) => features.push((name.clone(), series)),
                Err(reason) => return (Evaluation::NoData(format!("query {name}: {reason}")), Default::default()),
            }
        }
        let started = Instant::now();
        let verdicts = crate::joint_eval::judge_joint(&watch.name, &watch.identity, spec, features, end, watch.step.get(), open_since);
        return (Evaluation::Series(verdicts), started.elapsed());
    }
    let Some(query) = &watch.query else {
        return (Evaluation::NoData("the watch has no `query`".into()), Default::default());
    };
    let series = match fetch(source, query, start, end, watch.step.get()).await {
        Ok(s) => s,
        Err(reason) => return (Evaluation::NoData(reason), Default::default()),
    };
    let started = Instant::now();
    let (id, step, lookback) = (&watch.identity, watch.step.get(), watch.lookback.get());
    let verdicts = match &kind {
        WatchKind::Group(spec) => crate::group_eval::judge_groups(&watch.name, id, spec, series, end, step),
        WatchKind::Drift(spec) => crate::drift_eval::judge_drift(&watch.name, id, spec, lookback, series, end, step),
        WatchKind::Quality(spec) => crate::drift_eval::judge_quality(&watch.name, id, spec, lookback, series, end, step),
        WatchKind::Single | WatchKind::Joint(_) => judge_series(watch, series, end),
    };
    (Evaluation::Series(verdicts), started.elapsed())
}

/// Run one range query; every way of getting nothing usable is a reason for "no data".
async fn fetch(source: &dyn MetricSource, query: &str, start: DateTime<Utc>, end: DateTime<Utc>, step: std::time::Duration) -> Result<Vec<Series>, String> {
    let result = source.query_range(query, start, end, step).await.map_err(|e| format!("query failed: {e}"))?;
    if !result.warnings.is_empty() {
        return Err(format!("partial response from Prometheus: {}", result.warnings.join("; ")));
    }
    if result.series.is_empty() {
        return Err("the query returned no series".into());
    }
    Ok(result.series)
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// Series grouped by the values of the `identity` labels. A series that lacks one of them,
/// or one of the `required` labels (a histogram's `le`, a group's member label), cannot be
/// placed and becomes a "no data" verdict of its own.
pub(crate) fn group_by_identity(
    watch: &str,
    identity: &[String],
    required: &[&str],
    series: Vec<Series>,
) -> (BTreeMap<BTreeMap<String, String>, Vec<Series>>, Vec<SeriesVerdict>) {
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Series>> = BTreeMap::new();
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
pub(crate) fn ambiguous(watch: &str, identity_labels: &[String], identity: BTreeMap<String, String>, count: usize) -> SeriesVerdict {
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

/// Split series by identity and run the detector on each.
pub fn judge_series(watch: &WatchConfig, series: Vec<Series>, end: DateTime<Utc>) -> Vec<SeriesVerdict> {
    let (by_identity, mut out) = group_by_identity(&watch.name, &watch.identity, &[], series);
    let stale_after = to_chrono(watch.step.get() * 2);
    for (identity, mut group) in by_identity {
        if group.len() > 1 {
            out.push(ambiguous(&watch.name, &watch.identity, identity, group.len()));
            continue;
        }
        let Some(s) = group.pop() else { continue };
        let fp = fingerprint(&watch.name, &identity);
        let verdict = judge_one(watch, &s, end, stale_after);
        out.push(SeriesVerdict { identity, labels: s.labels, fingerprint: fp, verdict });
    }
    out
}

fn judge_one(watch: &WatchConfig, s: &Series, end: DateTime<Utc>, stale_after: ChronoDuration) -> Verdict {
    let Some(last) = s.points.last() else {
        return Verdict::NoData("the series has no samples in the lookback window".into());
    };
    let last_at = DateTime::from_timestamp_millis(last.timestamp_ms).unwrap_or(DateTime::UNIX_EPOCH);
    if end - last_at > stale_after {
        return Verdict::NoData(format!(
            "the last sample ({}) is older than two steps before the evaluation time",
            last_at.to_rfc3339()
        ));
    }
    let mut det = match watch.detector.build() {
        Ok(d) => d,
        Err(e) => return Verdict::NoData(format!("detector: {e}")),
    };
    let mut latest = None;
    for p in &s.points {
        latest = Some(det.update(p.timestamp_ms, p.value));
    }
    let Some(d) = latest else {
        return Verdict::NoData("the series has no samples".into());
    };
    match d.state {
        DetectionState::NoData => Verdict::NoData(format!("the last sample is not a finite number ({})", d.value)),
        DetectionState::WarmingUp => Verdict::WarmingUp(d),
        DetectionState::Normal if d.explanation.consecutive > 0 => Verdict::Deviating(d),
        DetectionState::Normal => Verdict::Normal(d),
        DetectionState::Anomalous => Verdict::Anomalous(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_connectors::prometheus::Sample;

    fn watch() -> WatchConfig {
        let cfg = crate::config::parse_str(
            "prometheus: {url: 'http://127.0.0.1:9'}\nwatches:\n  - name: w\n    query: up\n    step: 10s\n    lookback: 1h\n    identity: [deployment]\n    detector: {kind: robust_baseline, window: 30, min_history: 10, min_consecutive: 2, direction: up}\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("valid config");
        cfg.watches[0].clone()
    }

    fn series(dep: &str, values: &[f64], last_ms: i64) -> Series {
        let n = values.len() as i64;
        Series {
            labels: BTreeMap::from([("deployment".to_string(), dep.to_string()), ("pod".to_string(), "p".to_string())]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample { timestamp_ms: last_ms - (n - 1 - i as i64) * 10_000, value: *v })
                .collect(),
        }
    }

    fn end() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    #[test]
    fn verdicts_per_identity() {
        let mut normal: Vec<f64> = (0..40).map(|i| 1.0 + (i % 3) as f64 * 0.01).collect();
        let mut spike = normal.clone();
        spike.extend([5.0, 5.0]);
        normal.extend([1.0, 1.01]);
        let e = end().timestamp_millis();
        let v = judge_series(&watch(), vec![series("a", &normal, e), series("b", &spike, e)], end());
        assert_eq!(v.len(), 2);
        assert!(matches!(v[0].verdict, Verdict::Normal(_)), "{:?}", v[0].verdict);
        assert!(matches!(v[1].verdict, Verdict::Anomalous(_)), "{:?}", v[1].verdict);
        assert_ne!(v[0].fingerprint, v[1].fingerprint);
        assert_eq!(v[1].fingerprint, fingerprint("w", &BTreeMap::from([("deployment".into(), "b".into())])));
    }

    #[test]
    fn stale_nan_missing_label_and_ambiguous_are_no_data() {
        let vals: Vec<f64> = (0..40).map(|_| 1.0).collect();
        let e = end().timestamp_millis();
        let stale = judge_series(&watch(), vec![series("a", &vals, e - 60_000)], end());
        assert!(matches!(&stale[0].verdict, Verdict::NoData(r) if r.contains("older")));

        let mut nan = vals.clone();
        nan.push(f64::NAN);
        let v = judge_series(&watch(), vec![series("a", &nan, e)], end());
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("finite")));

        let mut unlabeled = series("a", &vals, e);
        unlabeled.labels.remove("deployment");
        let v = judge_series(&watch(), vec![unlabeled], end());
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("lacks identity")));

        let v = judge_series(&watch(), vec![series("a", &vals, e), series("a", &vals, e)], end());
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("share the identity")));
    }
}
