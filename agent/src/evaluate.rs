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

/// Query and judge one watch at `now`. Also returns the time spent in detectors.
pub async fn evaluate(
    source: &dyn MetricSource,
    watch: &WatchConfig,
    now: DateTime<Utc>,
) -> (Evaluation, std::time::Duration) {
    let end = now - to_chrono(watch.offset.get());
    let start = end - to_chrono(watch.lookback.get());
    let result = match source.query_range(&watch.query, start, end, watch.step.get()).await {
        Ok(r) => r,
        Err(e) => return (Evaluation::NoData(format!("query failed: {e}")), Default::default()),
    };
    if !result.warnings.is_empty() {
        return (
            Evaluation::NoData(format!("partial response from Prometheus: {}", result.warnings.join("; "))),
            Default::default(),
        );
    }
    if result.series.is_empty() {
        return (Evaluation::NoData("the query returned no series".into()), Default::default());
    }
    let started = Instant::now();
    let verdicts = if watch.detector.kind == crate::group_eval::KIND {
        match crate::group_eval::parse_spec(&watch.detector.params) {
            Ok(spec) => crate::group_eval::judge_groups(&watch.name, &watch.identity, &spec, result.series, end, watch.step.get()),
            Err((param, message)) => return (Evaluation::NoData(format!("detector parameter {param}: {message}")), Default::default()),
        }
    } else {
        judge_series(watch, result.series, end)
    };
    (Evaluation::Series(verdicts), started.elapsed())
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// Split series by identity and run the detector on each.
pub fn judge_series(watch: &WatchConfig, series: Vec<Series>, end: DateTime<Utc>) -> Vec<SeriesVerdict> {
    let mut by_identity: BTreeMap<BTreeMap<String, String>, Vec<Series>> = BTreeMap::new();
    let mut out = Vec::new();
    for s in series {
        let mut identity = BTreeMap::new();
        let mut missing = Vec::new();
        for l in &watch.identity {
            match s.labels.get(l) {
                Some(v) => {
                    identity.insert(l.clone(), v.clone());
                }
                None => missing.push(l.as_str()),
            }
        }
        if !missing.is_empty() {
            out.push(SeriesVerdict {
                fingerprint: fingerprint(&watch.name, &s.labels),
                identity: s.labels.clone(),
                labels: s.labels,
                verdict: Verdict::NoData(format!("series lacks identity label(s) {}", missing.join(", "))),
            });
            continue;
        }
        by_identity.entry(identity).or_default().push(s);
    }
    let stale_after = to_chrono(watch.step.get() * 2);
    for (identity, mut group) in by_identity {
        let fp = fingerprint(&watch.name, &identity);
        if group.len() > 1 {
            out.push(SeriesVerdict {
                fingerprint: fp,
                labels: identity.clone(),
                verdict: Verdict::NoData(format!(
                    "{} series share the identity {:?}; aggregate the query by the identity labels (e.g. `max by ({}) (...)`)",
                    group.len(),
                    identity,
                    watch.identity.join(", ")
                )),
                identity,
            });
            continue;
        }
        let Some(s) = group.pop() else { continue };
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
