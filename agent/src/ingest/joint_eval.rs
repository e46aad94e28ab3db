//! Multivariate watches: several metrics of one workload judged together.
//!
//! A watch with `kind: multivariate` has named `queries` (for example `cpu`, `rps`,
//! `latency`) instead of one `query`. Each query's series are split by the `identity`
//! labels; for every identity that all queries return, the samples at the same timestamps
//! form one vector per step. The vectors before the latest `holdout` (default 10) are the
//! reference window: a Gaussian mixture (`warden_detectors::multivariate`) is fitted on
//! them every evaluation, and the latest `min_consecutive` vectors are scored against it.
//! The hold-out keeps the start of a fault out of the reference for `holdout` steps: a
//! mixture fitted on a few anomalous vectors can give them a component of their own and
//! stop seeing them as unusual. Longer faults do leak into the reference once they are
//! older than the hold-out; by then the incident is open, and resolving it still needs
//! `resolve_after` quiet evaluations. The identity is
//! anomalous when each of the latest `min_consecutive` vectors is beyond the threshold,
//! deviating when only the latest is. The explanation names the metric least consistent
//! with the others ("cpu is unusual given rps and latency").
//!
//! Missing any one metric, a stale latest vector, or fewer aligned reference vectors than
//! the model needs is "no data" (or "warming up"), never normal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use warden_connectors::prometheus::Series;
use warden_detectors::multivariate::{Multivariate, MultivariateParams, MAX_FEATURES};
use warden_detectors::{Detection, DetectionState, Deviation, Explanation};

use crate::incident::identity::fingerprint;
use crate::ingest::spec_params::{detector_params, named, take_count, SpecError};
use crate::ingest::verdict::{ambiguous, group_by_identity, SeriesVerdict, Verdict};

pub const KIND: &str = "multivariate";
const DEFAULT_MIN_CONSECUTIVE: usize = 2;
const DEFAULT_HOLDOUT: usize = 10;

/// The settings of a multivariate watch.
#[derive(Debug, Clone, PartialEq)]
pub struct JointSpec {
    /// Latest vectors that must all be anomalous.
    pub min_consecutive: usize,
    /// Latest vectors kept out of the reference window (at least `min_consecutive`).
    pub holdout: usize,
    pub params: MultivariateParams,
}

impl JointSpec {
    pub fn parse(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self, SpecError> {
        let mut rest = params.clone();
        let min_consecutive =
            take_count(&mut rest, "min_consecutive", 1..=100)?.map(|n| n as usize).unwrap_or(DEFAULT_MIN_CONSECUTIVE);
        let holdout = take_count(&mut rest, "holdout", 1..=10_000)?.map(|n| n as usize).unwrap_or(DEFAULT_HOLDOUT);
        if holdout < min_consecutive {
            return Err((
                "holdout".into(),
                format!("must be at least min_consecutive ({min_consecutive}), got {holdout}"),
            ));
        }
        let params: MultivariateParams = detector_params(&rest)?;
        params.validate().map_err(|e| named(&e))?;
        Ok(Self { min_consecutive, holdout, params })
    }
}

/// Most features a watch may name (the model's limit).
pub const MAX_QUERIES: usize = MAX_FEATURES;

/// Judge a multivariate watch from the series of each named query (sorted by name).
pub fn judge_joint(
    watch: &str,
    identity: &[String],
    spec: &JointSpec,
    features: Vec<(String, Vec<Series>)>,
    end: DateTime<Utc>,
    step: Duration,
    open_since: &BTreeMap<String, DateTime<Utc>>,
) -> Vec<SeriesVerdict> {
    let names: Vec<String> = features.iter().map(|(n, _)| n.clone()).collect();
    let mut out = Vec::new();
    // identity -> feature index -> series
    let mut table: BTreeMap<BTreeMap<String, String>, BTreeMap<usize, Series>> = BTreeMap::new();
    let mut broken: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
    for (f, (_, series)) in features.into_iter().enumerate() {
        let (groups, unplaced) = group_by_identity(watch, identity, &[], series);
        out.extend(unplaced);
        for (key, mut members) in groups {
            if members.len() > 1 {
                broken.insert(key, members.len());
                continue;
            }
            if let Some(s) = members.pop() {
                table.entry(key).or_default().insert(f, s);
            }
        }
    }
    let stale_ms = i64::try_from((step * 2).as_millis()).unwrap_or(i64::MAX);
    for (key, count) in &broken {
        table.remove(key);
        out.push(ambiguous(watch, identity, key.clone(), *count));
    }
    for (key, by_feature) in table {
        let fp = fingerprint(watch, &key);
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
        // While an incident is open, the reference stays what it was when it opened.
        let frozen = open_since
            .get(&fp)
            .map(|t| t.timestamp_millis().saturating_sub(step_ms.saturating_mul(spec.holdout as i64)));
        let verdict = judge_identity(spec, &names, &by_feature, end.timestamp_millis(), stale_ms, frozen);
        let labels = key.clone();
        out.push(SeriesVerdict { fingerprint: fp, identity: key, labels, verdict });
    }
    out
}

/// `frozen`: the reference ends before this time (an incident is open).
fn judge_identity(
    spec: &JointSpec,
    names: &[String],
    by_feature: &BTreeMap<usize, Series>,
    end_ms: i64,
    stale_ms: i64,
    frozen: Option<i64>,
) -> Verdict {
    let missing: Vec<&str> =
        names.iter().enumerate().filter(|(i, _)| !by_feature.contains_key(i)).map(|(_, n)| n.as_str()).collect();
    if !missing.is_empty() {
        return Verdict::NoData(format!("no series from query {} for this identity", missing.join(", ")));
    }
    // Timestamps where every feature has a finite value.
    let maps: Vec<BTreeMap<i64, f64>> = by_feature
        .values()
        .map(|s| s.points.iter().filter(|p| p.value.is_finite()).map(|p| (p.timestamp_ms, p.value)).collect())
        .collect();
    let Some(first) = maps.first() else {
        return Verdict::NoData("no queries".into());
    };
    let times: BTreeSet<i64> = first.keys().copied().filter(|t| maps.iter().all(|m| m.contains_key(t))).collect();
    let vectors: Vec<(i64, Vec<f64>)> =
        times.iter().map(|t| (*t, maps.iter().map(|m| m.get(t).copied().unwrap_or(f64::NAN)).collect())).collect();
    let Some((last_t, last)) = vectors.last().cloned() else {
        return Verdict::NoData("the queries have no finite samples at common timestamps".into());
    };
    if end_ms - last_t > stale_ms {
        return Verdict::NoData("the latest sample common to all queries is older than two steps".into());
    }
    let (mut reference, held_out) = vectors.split_at(vectors.len().saturating_sub(spec.holdout));
    if let Some(cut) = frozen {
        reference = &reference[..reference.partition_point(|(t, _)| *t < cut)];
    }
    let recent = &held_out[held_out.len().saturating_sub(spec.min_consecutive)..];
    let need = spec.params.min_samples(names.len());
    let warming = |note: String| Detection {
        timestamp_ms: last_t,
        value: f64::NAN,
        score: 0.0,
        expected: None,
        lower: None,
        upper: None,
        deviation: Deviation::None,
        state: DetectionState::WarmingUp,
        explanation: Explanation { history: reference.len(), note: Some(note), ..Explanation::default() },
    };
    if reference.len() < need {
        let why = match frozen {
            Some(_) => format!(
                "{} of {need} reference vectors before the open incident are still in the lookback; raise `lookback`",
                reference.len()
            ),
            None => format!("{} of {need} aligned reference vectors", reference.len()),
        };
        return Verdict::WarmingUp(warming(why));
    }
    let mut model = match Multivariate::new(spec.params.clone()) {
        Ok(m) => m,
        Err(e) => return Verdict::NoData(format!("detector: {e}")),
    };
    let reference_rows: Vec<Vec<f64>> = reference.iter().map(|(_, v)| v.clone()).collect();
    if let Err(e) = model.fit(&reference_rows) {
        return Verdict::NoData(format!("fitting the reference window: {e}"));
    }
    let mut scores = Vec::with_capacity(recent.len());
    for (_, v) in recent {
        match model.score(v) {
            Ok(s) => scores.push(s),
            Err(e) => return Verdict::NoData(format!("scoring: {e}")),
        }
    }
    let Some(latest) = scores.last() else {
        return Verdict::NoData("nothing to judge".into());
    };
    let run = scores.iter().rev().take_while(|s| s.is_anomaly).count();
    let odd = latest.most_unusual_feature;
    let odd_name = names.get(odd).map(String::as_str).unwrap_or("?");
    let others: Vec<String> = names
        .iter()
        .zip(&last)
        .enumerate()
        .filter(|(i, _)| *i != odd)
        .map(|(_, (n, v))| format!("{n} {}", short(*v)))
        .collect();
    let detection = Detection {
        timestamp_ms: last_t,
        value: latest.nll,
        score: latest.score,
        expected: None,
        lower: None,
        upper: Some(latest.threshold),
        deviation: if latest.is_anomaly { Deviation::Above } else { Deviation::None },
        state: if run >= spec.min_consecutive { DetectionState::Anomalous } else { DetectionState::Normal },
        explanation: Explanation {
            z_score: latest.feature_z.get(odd).copied(),
            threshold: Some(latest.threshold),
            consecutive: u32::try_from(run).unwrap_or(u32::MAX),
            history: reference.len(),
            note: Some(format!(
                "{odd_name} {} {} {} (conditional z {:.1}); joint NLL {:.1} vs threshold {:.1} from {} reference vectors",
                short(last.get(odd).copied().unwrap_or(f64::NAN)),
                if latest.is_anomaly { "is unusual given" } else { "fits least, given" },
                if others.is_empty() { "nothing".to_string() } else { others.join(", ") },
                latest.feature_z.get(odd).copied().unwrap_or(0.0),
                latest.nll,
                latest.threshold,
                reference.len()
            )),
            ..Explanation::default()
        },
    };
    if run >= spec.min_consecutive {
        Verdict::Anomalous(detection)
    } else if run > 0 {
        Verdict::Deviating(detection)
    } else {
        Verdict::Normal(detection)
    }
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e4 {
        let (div, unit) = if a >= 1e12 {
            (1e12, "T")
        } else if a >= 1e9 {
            (1e9, "G")
        } else if a >= 1e6 {
            (1e6, "M")
        } else {
            (1e3, "k")
        };
        return format!("{:.2}{unit}", v / div);
    }
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_connectors::prometheus::Sample;

    fn end() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    fn series(dep: &str, values: &[f64]) -> Series {
        let e = end().timestamp_millis();
        let n = values.len() as i64;
        Series {
            labels: BTreeMap::from([("deployment".to_string(), dep.to_string())]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample { timestamp_ms: e - (n - 1 - i as i64) * 30_000, value: *v })
                .collect(),
        }
    }

    fn workload(runaway: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        workload_with(if runaway { 3 } else { 0 })
    }

    /// rps follows a wave, cpu and memory follow rps; the last `runaway` cpu values are high.
    fn workload_with(runaway: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = warden_detectors::harness::XorShift64::new(11);
        let n = 240;
        let rps: Vec<f64> = (0..n).map(|i| 100.0 + 60.0 * (i as f64 / 20.0).sin() + rng.uniform(-3.0, 3.0)).collect();
        let mut cpu: Vec<f64> = rps.iter().map(|r| 0.01 * r + rng.uniform(-0.03, 0.03)).collect();
        let mem: Vec<f64> = rps.iter().map(|r| 200.0 + 0.5 * r + rng.uniform(-2.0, 2.0)).collect();
        {
            for c in cpu.iter_mut().skip(n - runaway) {
                *c = 1.6; // what 160 rps would need, at ordinary traffic
            }
        }
        (rps, cpu, mem)
    }

    fn spec() -> JointSpec {
        JointSpec::parse(serde_json::json!({"components": 2}).as_object().expect("object")).expect("valid")
    }

    #[test]
    fn cpu_without_traffic_is_anomalous_and_names_cpu() {
        let (rps_ok, cpu_ok, mem_ok) = workload(false);
        let (rps_bad, cpu_bad, mem_bad) = workload(true);
        let features = vec![
            ("cpu".to_string(), vec![series("ok", &cpu_ok), series("bad", &cpu_bad)]),
            ("mem".to_string(), vec![series("ok", &mem_ok), series("bad", &mem_bad)]),
            ("rps".to_string(), vec![series("ok", &rps_ok), series("bad", &rps_bad)]),
        ];
        let v = judge_joint(
            "joint",
            &["deployment".to_string()],
            &spec(),
            features,
            end(),
            Duration::from_secs(30),
            &BTreeMap::new(),
        );
        let by = |d: &str| {
            v.iter().find(|sv| sv.identity.get("deployment").map(String::as_str) == Some(d)).expect("verdict")
        };
        assert!(matches!(by("ok").verdict, Verdict::Normal(_)), "{:?}", by("ok").verdict);
        match &by("bad").verdict {
            Verdict::Anomalous(d) => {
                let note = d.explanation.note.clone().unwrap_or_default();
                assert!(note.starts_with("cpu"), "{note}");
            }
            other => panic!("expected anomalous, got {other:?}"),
        }
    }

    #[test]
    fn an_open_incident_keeps_the_reference_from_before_it() {
        // A fault 60 steps long: far longer than the hold-out.
        let (rps, cpu, mem) = workload_with(60);
        let features = || {
            vec![
                ("cpu".to_string(), vec![series("bad", &cpu)]),
                ("mem".to_string(), vec![series("bad", &mem)]),
                ("rps".to_string(), vec![series("bad", &rps)]),
            ]
        };
        let fp = fingerprint("j", &BTreeMap::from([("deployment".to_string(), "bad".to_string())]));
        let opened = end() - chrono::Duration::seconds(58 * 30);
        let v = judge_joint(
            "j",
            &["deployment".to_string()],
            &spec(),
            features(),
            end(),
            Duration::from_secs(30),
            &BTreeMap::from([(fp, opened)]),
        );
        assert!(matches!(&v[0].verdict, Verdict::Anomalous(_)), "{:?}", v[0].verdict);
    }

    #[test]
    fn a_missing_metric_or_short_history_is_not_normal() {
        let (rps, cpu, _) = workload(false);
        let features = vec![("cpu".to_string(), vec![series("a", &cpu)]), ("rps".to_string(), vec![])];
        let v = judge_joint(
            "j",
            &["deployment".to_string()],
            &spec(),
            features,
            end(),
            Duration::from_secs(30),
            &BTreeMap::new(),
        );
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("rps")), "{:?}", v[0].verdict);

        let features = vec![
            ("cpu".to_string(), vec![series("a", &cpu[..20])]),
            ("rps".to_string(), vec![series("a", &rps[..20])]),
        ];
        let v = judge_joint(
            "j",
            &["deployment".to_string()],
            &spec(),
            features,
            end(),
            Duration::from_secs(30),
            &BTreeMap::new(),
        );
        assert!(matches!(&v[0].verdict, Verdict::WarmingUp(_)), "{:?}", v[0].verdict);
    }

    #[test]
    fn spec_errors_name_the_parameter() {
        let bad = |v: serde_json::Value| JointSpec::parse(v.as_object().expect("object")).expect_err("invalid").0;
        assert_eq!(bad(serde_json::json!({"components": 0})), "components");
        assert_eq!(bad(serde_json::json!({"min_consecutive": 0})), "min_consecutive");
        assert_eq!(bad(serde_json::json!({"componets": 2})), "componets");
        assert_eq!(bad(serde_json::json!({"min_consecutive": 3, "holdout": 2})), "holdout");
    }
}
