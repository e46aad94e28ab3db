//! Model watches: drift of a histogram's shape, and a prediction-quality metric against its
//! baseline.
//!
//! **Drift** (`kind: drift`): the query returns the cumulative `_bucket` series of a
//! Prometheus histogram (for example `sum by (model, le) (fraud_score_bucket)`), grouped by
//! the watch's `identity` labels. Each evaluation reads every bucket at three times:
//! `end - current - reference`, `end - current` and `end`, and compares the histogram of the
//! reference window (first two readings) with that of the current window (last two) with
//! PSI and Kolmogorov–Smirnov (`warden_detectors::drift`). `reference` defaults to the rest
//! of the lookback. A counter reset inside a window, a missing reading, or fewer than
//! `min_observations` observations in a window is "no data", never drift: a restart must
//! not look like a new distribution. Significant PSI (or moderate PSI confirmed by KS) is
//! anomalous; moderate PSI alone is "deviating", which neither opens nor resolves.
//!
//! **Quality** (`kind: quality`): one series of a quality metric (accuracy, AUC, error rate).
//! The mean over the `current` window is compared with a fixed `baseline`, or with the mean
//! over the `reference` window just before it, under a relative `tolerance` in the `goal`
//! direction (`warden_detectors::drift::quality_vs_baseline`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use warden_connectors::prometheus::Series;
use warden_detectors::drift::{quality_vs_baseline, DriftDetector, DriftLevel, DriftParams, QualityGoal};
use warden_detectors::{Detection, DetectionState, Deviation, Explanation};

use crate::incident::identity::fingerprint;
use crate::ingest::spec_params::{detector_params, named, take_count, take_duration, SpecError};
use crate::ingest::verdict::{ambiguous, group_by_identity, sample_at, SeriesVerdict, Verdict};

pub const DRIFT_KIND: &str = "drift";
pub const QUALITY_KIND: &str = "quality";
const DEFAULT_CURRENT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_MIN_OBSERVATIONS: u64 = 50;

/// The settings of a `drift` watch.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSpec {
    /// Length of the current window, ending at the evaluation time.
    pub current: Duration,
    /// Length of the reference window, ending where the current one starts; `None`: the
    /// rest of the lookback.
    pub reference: Option<Duration>,
    /// Fewer observations than this in either window is "no data".
    pub min_observations: u64,
    pub params: DriftParams,
}

impl DriftSpec {
    pub fn parse(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self, SpecError> {
        let mut rest = params.clone();
        let current = take_duration(&mut rest, "current")?.unwrap_or(DEFAULT_CURRENT);
        let reference = take_duration(&mut rest, "reference")?;
        let min_observations =
            take_count(&mut rest, "min_observations", 1..=u64::from(u32::MAX))?.unwrap_or(DEFAULT_MIN_OBSERVATIONS);
        let params: DriftParams = detector_params(&rest)?;
        params.validate().map_err(|e| named(&e))?;
        Ok(Self { current, reference, min_observations, params })
    }

    /// The reference window for a watch with this lookback.
    pub fn reference_for(&self, lookback: Duration) -> Duration {
        self.reference.unwrap_or_else(|| lookback.saturating_sub(self.current))
    }
}

/// The settings of a `quality` watch.
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySpec {
    pub goal: QualityGoal,
    /// Relative worsening allowed (0.05 = 5 %).
    pub tolerance: f64,
    pub current: Duration,
    /// A fixed baseline; without one, the mean over `reference` before the current window.
    pub baseline: Option<f64>,
    pub reference: Option<Duration>,
}

impl QualitySpec {
    pub fn parse(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self, SpecError> {
        let mut rest = params.clone();
        let current = take_duration(&mut rest, "current")?.unwrap_or(DEFAULT_CURRENT);
        let reference = take_duration(&mut rest, "reference")?;
        let goal = match rest.remove("goal") {
            None => {
                return Err((
                    "goal".into(),
                    "required: `higher_is_better` (accuracy, AUC) or `lower_is_better` (error rate, loss)".into(),
                ))
            }
            Some(v) => serde_json::from_value::<QualityGoal>(v.clone()).map_err(|_| {
                ("goal".to_string(), format!("must be `higher_is_better` or `lower_is_better`, got {v}"))
            })?,
        };
        let tolerance = match rest.remove("tolerance") {
            None => 0.05,
            Some(v) => match v.as_f64() {
                Some(t) if t.is_finite() && (0.0..=10.0).contains(&t) => t,
                _ => {
                    return Err((
                        "tolerance".into(),
                        format!("must be a number between 0 and 10 (a fraction: 0.05 = 5 %), got {v}"),
                    ))
                }
            },
        };
        let baseline = match rest.remove("baseline") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(b) if b.is_finite() => Some(b),
                _ => return Err(("baseline".into(), format!("must be a finite number, got {v}"))),
            },
        };
        if let Some(key) = rest.keys().next() {
            return Err((
                key.clone(),
                format!(
                    "unknown field `{key}`, expected one of `goal`, `tolerance`, `current`, `baseline`, `reference`"
                ),
            ));
        }
        if baseline.is_some() && reference.is_some() {
            return Err((
                "reference".into(),
                "give either a fixed `baseline` or a `reference` window, not both".into(),
            ));
        }
        Ok(Self { goal, tolerance, current, baseline, reference })
    }

    pub fn reference_for(&self, lookback: Duration) -> Duration {
        self.reference.unwrap_or_else(|| lookback.saturating_sub(self.current))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

/// Judge every histogram of a drift watch.
pub fn judge_drift(
    watch: &str,
    identity: &[String],
    spec: &DriftSpec,
    lookback: Duration,
    series: Vec<Series>,
    end: DateTime<Utc>,
    step: Duration,
) -> Vec<SeriesVerdict> {
    let (groups, mut out) = group_by_identity(watch, identity, &["le"], series);
    let reference = spec.reference_for(lookback);
    let t2 = end.timestamp_millis();
    let t1 = t2 - ms(spec.current);
    let t0 = t1 - ms(reference);
    let tolerance = ms(step * 2);
    let detector = DriftDetector::new(spec.params.clone());
    for (key, members) in groups {
        let verdict = match &detector {
            Err(e) => Ok(Verdict::NoData(format!("detector: {e}"))),
            Ok(d) => judge_histogram(d, spec, members, [t0, t1, t2], tolerance, reference),
        };
        match verdict {
            Err(n) => out.push(ambiguous(watch, identity, key, n)),
            Ok(verdict) => out.push(SeriesVerdict {
                fingerprint: fingerprint(watch, &key),
                labels: key.clone(),
                identity: key,
                verdict,
            }),
        }
    }
    out
}

/// `Err(n)`: `n` series share one identity and bucket.
fn judge_histogram(
    detector: &DriftDetector,
    spec: &DriftSpec,
    members: Vec<Series>,
    times: [i64; 3],
    tolerance: i64,
    reference: Duration,
) -> Result<Verdict, usize> {
    let mut buckets: Vec<(f64, Series)> = Vec::new();
    for s in members {
        let raw = s.labels.get("le").cloned().unwrap_or_default();
        let Some(le) = parse_le(&raw) else {
            return Ok(Verdict::NoData(format!("bucket bound le=\"{raw}\" is not a number")));
        };
        buckets.push((le, s));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(w) = buckets.windows(2).find(|w| w[0].0 == w[1].0) {
        let le = w[0].0;
        return Err(buckets.iter().filter(|(b, _)| *b == le).count());
    }
    let bounds: Vec<f64> = buckets.iter().map(|(le, _)| *le).collect();
    let mut readings = [Vec::new(), Vec::new(), Vec::new()];
    for (le, s) in &buckets {
        for (reading, t) in readings.iter_mut().zip(times) {
            match sample_at(&s.points, t, tolerance) {
                Some(v) => reading.push(v),
                None => {
                    let when = DateTime::from_timestamp_millis(t).map(|t| t.to_rfc3339()).unwrap_or_default();
                    return Ok(Verdict::NoData(format!(
                        "bucket le={le} has no sample near {when}; the lookback must cover both windows"
                    )));
                }
            }
        }
    }
    let [r0, r1, r2] = readings;
    let windows = warden_detectors::drift::window_counts(&bounds, &r0, &r1)
        .map_err(|e| format!("reference window: {e}"))
        .and_then(|reference| {
            warden_detectors::drift::window_counts(&bounds, &r1, &r2)
                .map(|current| (reference, current))
                .map_err(|e| format!("current window: {e}"))
        });
    let (reference_counts, current_counts) = match windows {
        Ok(w) => w,
        Err(e) => return Ok(Verdict::NoData(e)),
    };
    let (n_ref, n_cur) = (reference_counts.iter().sum::<f64>(), current_counts.iter().sum::<f64>());
    let min = spec.min_observations as f64;
    if n_ref < min || n_cur < min {
        return Ok(Verdict::NoData(format!(
            "{n_ref:.0} observations in the reference window and {n_cur:.0} in the current one; at least {min:.0} each are needed"
        )));
    }
    let r = match detector.compare_counts(&bounds, &reference_counts, &current_counts) {
        Ok(r) => r,
        Err(e) => return Ok(Verdict::NoData(format!("drift: {e}"))),
    };
    let significant = spec.params.psi_significant;
    let detection = Detection {
        timestamp_ms: times[2],
        value: r.psi,
        score: (r.psi / (r.psi + significant)).clamp(0.0, 1.0),
        expected: Some(0.0),
        lower: Some(0.0),
        upper: Some(significant),
        deviation: if r.psi > 0.0 { Deviation::Above } else { Deviation::None },
        state: if r.drifted { DetectionState::Anomalous } else { DetectionState::Normal },
        explanation: Explanation {
            threshold: Some(significant),
            history: n_ref as usize,
            note: Some(format!(
                "PSI {:.3} ({}), KS D {:.3} p={:.2e}; bucket le={} moved from {:.1}% to {:.1}% ({n_cur:.0} observations in the last {} vs {n_ref:.0} in the {} before)",
                r.psi,
                match r.level {
                    DriftLevel::Stable => "stable",
                    DriftLevel::Moderate => "moderate",
                    DriftLevel::Significant => "significant",
                },
                r.ks,
                r.p_value,
                r.top_bucket_le,
                r.top_bucket_reference * 100.0,
                r.top_bucket_current * 100.0,
                humantime::format_duration(Duration::from_millis(u64::try_from(times[2] - times[1]).unwrap_or(0))),
                humantime::format_duration(reference),
            )),
            ..Explanation::default()
        },
    };
    Ok(if r.drifted {
        Verdict::Anomalous(detection)
    } else if r.level == DriftLevel::Moderate {
        Verdict::Deviating(detection)
    } else {
        Verdict::Normal(detection)
    })
}

/// Judge every series of a quality watch.
pub fn judge_quality(
    watch: &str,
    identity: &[String],
    spec: &QualitySpec,
    lookback: Duration,
    series: Vec<Series>,
    end: DateTime<Utc>,
    step: Duration,
) -> Vec<SeriesVerdict> {
    let (groups, mut out) = group_by_identity(watch, identity, &[], series);
    let t2 = end.timestamp_millis();
    let t1 = t2 - ms(spec.current);
    let t0 = t1 - ms(spec.reference_for(lookback));
    for (key, mut members) in groups {
        if members.len() > 1 {
            out.push(ambiguous(watch, identity, key, members.len()));
            continue;
        }
        let Some(s) = members.pop() else { continue };
        let verdict = judge_quality_series(spec, &s, [t0, t1, t2], ms(step * 2));
        out.push(SeriesVerdict { fingerprint: fingerprint(watch, &key), identity: key, labels: s.labels, verdict });
    }
    out
}

fn mean_in(s: &Series, from: i64, to: i64) -> Option<(f64, usize)> {
    let values: Vec<f64> = s
        .points
        .iter()
        .filter(|p| p.timestamp_ms > from && p.timestamp_ms <= to && p.value.is_finite())
        .map(|p| p.value)
        .collect();
    (!values.is_empty()).then(|| (values.iter().sum::<f64>() / values.len() as f64, values.len()))
}

fn judge_quality_series(spec: &QualitySpec, s: &Series, [t0, t1, t2]: [i64; 3], stale_ms: i64) -> Verdict {
    match s.points.last() {
        Some(p) if t2 - p.timestamp_ms <= stale_ms => {}
        _ => return Verdict::NoData("the last sample is older than two steps before the evaluation time".into()),
    }
    let Some((current, n_cur)) = mean_in(s, t1, t2) else {
        return Verdict::NoData("no finite samples in the current window".into());
    };
    let (baseline, source) = match spec.baseline {
        Some(b) => (b, "the configured baseline".to_string()),
        None => match mean_in(s, t0, t1) {
            Some((b, n)) => (b, format!("the mean of the {n} samples before")),
            None => return Verdict::NoData("no finite samples in the reference window".into()),
        },
    };
    let check = match quality_vs_baseline(current, baseline, spec.tolerance, spec.goal) {
        Ok(c) => c,
        Err(e) => return Verdict::NoData(format!("quality: {e}")),
    };
    let allowed = spec.tolerance * baseline.abs();
    let (lower, upper) = (baseline - allowed, baseline + allowed);
    let worsening = match spec.goal {
        QualityGoal::HigherIsBetter => baseline - current,
        QualityGoal::LowerIsBetter => current - baseline,
    };
    let score = if allowed > 0.0 {
        1.0 / (1.0 + (-(worsening - allowed) / allowed).exp())
    } else if check.degraded {
        1.0
    } else {
        0.0
    };
    let detection = Detection {
        timestamp_ms: t2,
        value: current,
        score: if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 },
        expected: Some(baseline),
        lower: Some(lower),
        upper: Some(upper),
        deviation: if current > baseline {
            Deviation::Above
        } else if current < baseline {
            Deviation::Below
        } else {
            Deviation::None
        },
        state: if check.degraded { DetectionState::Anomalous } else { DetectionState::Normal },
        explanation: Explanation {
            baseline: Some(baseline),
            threshold: Some(spec.tolerance),
            history: n_cur,
            note: Some(format!(
                "mean {current:.4} over the current window vs {baseline:.4} ({source}); {} by {:.1}% (tolerance {:.1}%)",
                if worsening > 0.0 { "worse" } else { "not worse" },
                check.relative_change.map(|c| c.abs() * 100.0).unwrap_or(0.0),
                spec.tolerance * 100.0
            )),
            ..Explanation::default()
        },
    };
    if check.degraded {
        Verdict::Anomalous(detection)
    } else {
        Verdict::Normal(detection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use warden_connectors::prometheus::Sample;

    const STEP: Duration = Duration::from_secs(60);

    fn end() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    /// Cumulative `_bucket` series over 2 h at 1-minute steps; `share(minute)` gives the
    /// fraction of each minute's 100 observations that fall in each bucket.
    fn histogram(model: &str, share: impl Fn(i64) -> [f64; 3]) -> Vec<Series> {
        let les = ["0.5", "1", "+Inf"];
        let e = end().timestamp_millis();
        let mut cumulative = [0.0f64; 3];
        let mut points: [Vec<Sample>; 3] = Default::default();
        for m in 0..=120i64 {
            let f = share(m);
            let mut acc = 0.0;
            for (b, frac) in f.iter().enumerate() {
                acc += frac * 100.0;
                cumulative[b] += acc;
                points[b].push(Sample { timestamp_ms: e - (120 - m) * 60_000, value: cumulative[b] });
            }
        }
        les.iter()
            .zip(points)
            .map(|(le, points)| Series {
                labels: BTreeMap::from([("model".to_string(), model.to_string()), ("le".to_string(), le.to_string())]),
                points,
            })
            .collect()
    }

    fn spec(extra: serde_json::Value) -> DriftSpec {
        DriftSpec::parse(extra.as_object().expect("object")).expect("valid spec")
    }

    #[test]
    fn a_shifted_histogram_drifts_and_a_steady_one_does_not() {
        let mut series = histogram("steady", |_| [0.6, 0.3, 0.1]);
        series.extend(histogram("shifted", |m| if m > 105 { [0.2, 0.3, 0.5] } else { [0.6, 0.3, 0.1] }));
        let v = judge_drift(
            "drift",
            &["model".to_string()],
            &spec(serde_json::json!({"current": "15m"})),
            Duration::from_secs(7200),
            series,
            end(),
            STEP,
        );
        assert_eq!(v.len(), 2);
        let by =
            |m: &str| v.iter().find(|sv| sv.identity.get("model").map(String::as_str) == Some(m)).expect("verdict");
        assert!(matches!(by("steady").verdict, Verdict::Normal(_)), "{:?}", by("steady").verdict);
        match &by("shifted").verdict {
            Verdict::Anomalous(d) => {
                assert!(d.value > 0.25, "psi {}", d.value);
                let note = d.explanation.note.clone().unwrap_or_default();
                assert!(note.contains("le=inf") || note.contains("le=+Inf") || note.contains("le=0.5"), "{note}");
            }
            other => panic!("expected drift, got {other:?}"),
        }
        assert_eq!(
            by("shifted").fingerprint,
            fingerprint("drift", &BTreeMap::from([("model".into(), "shifted".into())]))
        );
    }

    #[test]
    fn resets_missing_buckets_and_thin_windows_are_no_data() {
        // A counter reset (restart) 5 minutes ago.
        let mut reset = histogram("m", |_| [0.6, 0.3, 0.1]);
        let cut = end().timestamp_millis() - 5 * 60_000;
        for s in &mut reset {
            for p in &mut s.points {
                if p.timestamp_ms >= cut {
                    p.value *= 0.01;
                }
            }
        }
        let v = judge_drift(
            "d",
            &["model".to_string()],
            &spec(serde_json::json!({})),
            Duration::from_secs(7200),
            reset,
            end(),
            STEP,
        );
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("reset")), "{:?}", v[0].verdict);

        // Windows longer than the data.
        let v = judge_drift(
            "d",
            &["model".to_string()],
            &spec(serde_json::json!({"reference": "6h"})),
            Duration::from_secs(7200),
            histogram("m", |_| [0.6, 0.3, 0.1]),
            end(),
            STEP,
        );
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("no sample near")), "{:?}", v[0].verdict);

        // Too few observations.
        let v = judge_drift(
            "d",
            &["model".to_string()],
            &spec(serde_json::json!({"min_observations": 1000000})),
            Duration::from_secs(7200),
            histogram("m", |_| [0.6, 0.3, 0.1]),
            end(),
            STEP,
        );
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("at least")), "{:?}", v[0].verdict);

        // A series without `le`.
        let mut unlabeled = histogram("m", |_| [0.6, 0.3, 0.1]);
        unlabeled[0].labels.remove("le");
        let v = judge_drift(
            "d",
            &["model".to_string()],
            &spec(serde_json::json!({})),
            Duration::from_secs(7200),
            unlabeled,
            end(),
            STEP,
        );
        assert!(v.iter().any(|sv| matches!(&sv.verdict, Verdict::NoData(r) if r.contains("le"))), "{v:?}");
    }

    #[test]
    fn drift_spec_errors_name_the_parameter() {
        let bad = |v: serde_json::Value| DriftSpec::parse(v.as_object().expect("object")).expect_err("invalid").0;
        assert_eq!(bad(serde_json::json!({"current": "later"})), "current");
        assert_eq!(bad(serde_json::json!({"psi_significant": 0.01})), "psi_significant");
        assert_eq!(bad(serde_json::json!({"psi_treshold": 0.1})), "psi_treshold");
        assert_eq!(bad(serde_json::json!({"min_observations": 0})), "min_observations");
    }

    fn accuracy(values: impl Fn(i64) -> f64) -> Series {
        let e = end().timestamp_millis();
        Series {
            labels: BTreeMap::from([("model".to_string(), "fraud".to_string())]),
            points: (0..=120).map(|m| Sample { timestamp_ms: e - (120 - m) * 60_000, value: values(m) }).collect(),
        }
    }

    #[test]
    fn quality_degrades_against_reference_or_fixed_baseline() {
        let q = |v: serde_json::Value| QualitySpec::parse(v.as_object().expect("object")).expect("valid");
        let ids = ["model".to_string()];
        let lookback = Duration::from_secs(7200);
        let steady = q(serde_json::json!({"goal": "higher_is_better", "tolerance": 0.05}));
        let v = judge_quality("q", &ids, &steady, lookback, vec![accuracy(|_| 0.93)], end(), STEP);
        assert!(matches!(v[0].verdict, Verdict::Normal(_)), "{:?}", v[0].verdict);
        let v = judge_quality(
            "q",
            &ids,
            &steady,
            lookback,
            vec![accuracy(|m| if m > 110 { 0.80 } else { 0.93 })],
            end(),
            STEP,
        );
        assert!(matches!(v[0].verdict, Verdict::Anomalous(_)), "{:?}", v[0].verdict);
        // Better than the baseline is never degradation.
        let v = judge_quality(
            "q",
            &ids,
            &steady,
            lookback,
            vec![accuracy(|m| if m > 110 { 0.99 } else { 0.93 })],
            end(),
            STEP,
        );
        assert!(matches!(v[0].verdict, Verdict::Normal(_)), "{:?}", v[0].verdict);
        let fixed = q(serde_json::json!({"goal": "lower_is_better", "baseline": 0.02, "tolerance": 0.5}));
        let v = judge_quality("q", &ids, &fixed, lookback, vec![accuracy(|_| 0.05)], end(), STEP);
        assert!(matches!(v[0].verdict, Verdict::Anomalous(_)), "{:?}", v[0].verdict);
        let v = judge_quality("q", &ids, &fixed, lookback, vec![accuracy(|_| f64::NAN)], end(), STEP);
        assert!(matches!(v[0].verdict, Verdict::NoData(_)), "{:?}", v[0].verdict);
    }

    #[test]
    fn quality_spec_errors_name_the_parameter() {
        let bad = |v: serde_json::Value| QualitySpec::parse(v.as_object().expect("object")).expect_err("invalid").0;
        assert_eq!(bad(serde_json::json!({})), "goal");
        assert_eq!(bad(serde_json::json!({"goal": "up"})), "goal");
        assert_eq!(bad(serde_json::json!({"goal": "higher_is_better", "tolerance": -1})), "tolerance");
        assert_eq!(
            bad(serde_json::json!({"goal": "higher_is_better", "baseline": 0.9, "reference": "1h"})),
            "reference"
        );
        assert_eq!(bad(serde_json::json!({"goal": "higher_is_better", "treshold": 1})), "treshold");
    }
}
