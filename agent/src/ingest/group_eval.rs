//! Group watches: each series is one member of a group (the pods of a Deployment, the nodes
//! of a pool), and a member is anomalous when it behaves unlike its siblings.
//!
//! A watch with `detector: { kind: group_outlier, member: LABEL, recent: N, ...params }`
//! groups the series by its `identity` labels; `member` names the label that tells members
//! apart. The last `recent` query steps of every fresh member are compared with
//! `detectors::group::GroupOutlier`. A member that is an outlier over the window *and* still
//! outlying at the latest step is anomalous; outlying only at the latest step is "deviating"
//! (neither opens nor resolves). A member with values at fewer than half of those steps (a
//! pod that just started) is warming up. A stale member is no data, never an outlier: a pod
//! that stopped reporting is not evidence about the others. Fewer than three fresh members is no
//! data for the whole group.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use warden_connectors::prometheus::Series;
use warden_detectors::group::{GroupOutlier, GroupOutlierParams, MIN_MEMBERS};
use warden_detectors::{Detection, DetectionState, Deviation, Explanation};

use crate::incident::identity::fingerprint;
use crate::ingest::spec_params::{detector_params, named, take_count, SpecError};
use crate::ingest::verdict::{group_by_identity, SeriesVerdict, Verdict};

pub const KIND: &str = "group_outlier";
const DEFAULT_RECENT: usize = 10;

/// The group settings of a watch's detector spec.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub member: String,
    pub recent: usize,
    pub params: GroupOutlierParams,
}

/// Parse the `group_outlier` spec; errors are `(parameter, message)`.
pub fn parse_spec(params: &serde_json::Map<String, serde_json::Value>) -> Result<GroupSpec, SpecError> {
    let mut rest = params.clone();
    let member = match rest.remove("member") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(other) => return Err(("member".into(), format!("must be a label name, got {other}"))),
        None => {
            return Err(("member".into(), "the label that tells group members apart is required (e.g. `pod`)".into()))
        }
    };
    let recent = take_count(&mut rest, "recent", 1..=1000)?.map(|n| n as usize).unwrap_or(DEFAULT_RECENT);
    let params: GroupOutlierParams = detector_params(&rest)?;
    params.validate().map_err(|e| named(&e))?;
    Ok(GroupSpec { member, recent, params })
}

/// Judge every group of a group watch.
pub fn judge_groups(
    watch_name: &str,
    identity: &[String],
    spec: &GroupSpec,
    series: Vec<Series>,
    end: DateTime<Utc>,
    step: std::time::Duration,
) -> Vec<SeriesVerdict> {
    let stale_after = ChronoDuration::from_std(step * 2).unwrap_or(ChronoDuration::MAX);
    let (by_identity, mut out) = group_by_identity(watch_name, identity, &[spec.member.as_str()], series);
    let groups: BTreeMap<BTreeMap<String, String>, Vec<(String, Series)>> = by_identity
        .into_iter()
        .map(|(key, members)| {
            let members =
                members.into_iter().map(|s| (s.labels.get(&spec.member).cloned().unwrap_or_default(), s)).collect();
            (key, members)
        })
        .collect();
    let detector = match GroupOutlier::new(spec.params.clone()) {
        Ok(d) => d,
        Err(e) => {
            return groups
                .into_iter()
                .flat_map(|(key, members)| members.into_iter().map(move |(m, s)| (key.clone(), m, s)))
                .map(|(key, m, s)| {
                    member_verdict(watch_name, spec, &key, &m, s.labels, Verdict::NoData(format!("detector: {e}")))
                })
                .collect();
        }
    };
    for (key, members) in groups {
        let mut fresh = Vec::new();
        for (m, s) in members {
            let last = s.points.last().and_then(|p| DateTime::from_timestamp_millis(p.timestamp_ms));
            match last {
                Some(t) if end - t <= stale_after => fresh.push((m, s)),
                _ => out.push(member_verdict(
                    watch_name,
                    spec,
                    &key,
                    &m,
                    s.labels,
                    Verdict::NoData("the member's last sample is older than two steps".into()),
                )),
            }
        }
        if fresh.len() < MIN_MEMBERS {
            let reason = format!(
                "only {} fresh member(s) in the group; at least {MIN_MEMBERS} are needed to compare",
                fresh.len()
            );
            for (m, s) in fresh {
                out.push(member_verdict(watch_name, spec, &key, &m, s.labels, Verdict::NoData(reason.clone())));
            }
            continue;
        }
        // The last `recent` timestamps seen in the group, aligned across members.
        let times: BTreeSet<i64> = fresh.iter().flat_map(|(_, s)| s.points.iter().map(|p| p.timestamp_ms)).collect();
        let times: Vec<i64> = times.into_iter().rev().take(spec.recent).rev().collect();
        let matrix: Vec<Vec<f64>> = fresh
            .iter()
            .map(|(_, s)| {
                let by_t: BTreeMap<i64, f64> = s.points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
                times.iter().map(|t| by_t.get(t).copied().unwrap_or(f64::NAN)).collect()
            })
            .collect();
        let slices: Vec<&[f64]> = matrix.iter().map(Vec::as_slice).collect();
        let result = match detector.detect(&slices) {
            Ok(r) => r,
            Err(e) => {
                for (m, s) in fresh {
                    out.push(member_verdict(
                        watch_name,
                        spec,
                        &key,
                        &m,
                        s.labels,
                        Verdict::NoData(format!("group comparison: {e}")),
                    ));
                }
                continue;
            }
        };
        let last_idx = times.len().saturating_sub(1);
        let min_judged = times.len().div_ceil(2);
        let band = result.band.get(last_idx).copied().flatten();
        let n = fresh.len();
        for (i, (m, s)) in fresh.into_iter().enumerate() {
            let Some(r) = result.members.get(i) else { continue };
            let value = matrix.get(i).and_then(|row| row.get(last_idx)).copied().unwrap_or(f64::NAN);
            let outlying_now = r.outlying_indices.contains(&last_idx);
            let expected = band.map(|b| b.lower / 2.0 + b.upper / 2.0);
            let detection = Detection {
                timestamp_ms: times.get(last_idx).copied().unwrap_or_default(),
                value,
                score: r.score,
                expected,
                lower: band.map(|b| b.lower),
                upper: band.map(|b| b.upper),
                deviation: match expected {
                    Some(e) if value > e => Deviation::Above,
                    Some(e) if value < e => Deviation::Below,
                    _ => Deviation::None,
                },
                state: if r.is_outlier && outlying_now { DetectionState::Anomalous } else { DetectionState::Normal },
                explanation: Explanation {
                    threshold: Some(result.threshold),
                    consecutive: u32::from(outlying_now),
                    history: r.judged,
                    note: Some(member_note(&spec.member, &m, r.outlying_indices.len(), times.len(), n, outlying_now)),
                    ..Explanation::default()
                },
            };
            let verdict = if !value.is_finite() || r.judged == 0 {
                Verdict::NoData("the member has no value at the latest step".into())
            } else if r.judged < min_judged {
                // A pod that just started has too short a record to be called an outlier.
                let mut d = detection;
                d.state = DetectionState::WarmingUp;
                d.explanation.note = Some(format!(
                    "{}={m} has {} of the {min_judged} steps needed to be compared",
                    spec.member, r.judged
                ));
                Verdict::WarmingUp(d)
            } else if r.is_outlier && outlying_now {
                Verdict::Anomalous(detection)
            } else if outlying_now {
                Verdict::Deviating(detection)
            } else {
                Verdict::Normal(detection)
            };
            out.push(member_verdict(watch_name, spec, &key, &m, s.labels, verdict));
        }
    }
    out
}

/// How a member compares with its siblings, worded so that it agrees with the member's
/// state: a member that is back in line at the latest step says so before its history.
fn member_note(label: &str, member: &str, outlying: usize, steps: usize, members: usize, now: bool) -> String {
    let siblings = members.saturating_sub(1);
    match (now, outlying) {
        (true, _) => format!(
            "{label}={member} unlike its {siblings} siblings at the latest step and at {outlying} of the last {steps}"
        ),
        (false, 0) => format!("{label}={member} in line with its {siblings} siblings over the last {steps} steps"),
        (false, _) => format!(
            "{label}={member} back in line with its {siblings} siblings at the latest step (unlike them at {outlying} of the last {steps})"
        ),
    }
}

fn member_verdict(
    watch: &str,
    spec: &GroupSpec,
    key: &BTreeMap<String, String>,
    member: &str,
    labels: BTreeMap<String, String>,
    verdict: Verdict,
) -> SeriesVerdict {
    let mut identity = key.clone();
    identity.insert(spec.member.clone(), member.to_string());
    SeriesVerdict { fingerprint: fingerprint(watch, &identity), identity, labels, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_connectors::prometheus::Sample;

    fn spec() -> GroupSpec {
        let params = serde_json::json!({"member": "pod", "recent": 6});
        parse_spec(params.as_object().expect("object")).expect("valid spec")
    }

    fn pod(name: &str, values: &[f64], end_ms: i64) -> Series {
        let n = values.len() as i64;
        Series {
            labels: BTreeMap::from([
                ("deployment".to_string(), "checkout".to_string()),
                ("pod".to_string(), name.to_string()),
            ]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample { timestamp_ms: end_ms - (n - 1 - i as i64) * 10_000, value: *v })
                .collect(),
        }
    }

    #[test]
    fn the_slow_pod_is_the_outlier() {
        let end = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let e = end.timestamp_millis();
        let mut rng = warden_detectors::harness::XorShift64::new(3);
        let mut series: Vec<Series> = (0..4)
            .map(|i| pod(&format!("p{i}"), &(0..6).map(|_| 0.100 + rng.uniform(-0.005, 0.005)).collect::<Vec<_>>(), e))
            .collect();
        series.push(pod("slow", &(0..6).map(|_| 0.300 + rng.uniform(-0.005, 0.005)).collect::<Vec<_>>(), e));
        let v =
            judge_groups("lat", &["deployment".to_string()], &spec(), series, end, std::time::Duration::from_secs(10));
        assert_eq!(v.len(), 5);
        for sv in &v {
            let is_slow = sv.identity.get("pod").map(String::as_str) == Some("slow");
            assert_eq!(matches!(sv.verdict, Verdict::Anomalous(_)), is_slow, "{sv:?}");
        }
        let slow = v.iter().find(|sv| sv.identity.get("pod").map(String::as_str) == Some("slow")).expect("slow pod");
        assert_eq!(
            slow.fingerprint,
            fingerprint(
                "lat",
                &BTreeMap::from([("deployment".into(), "checkout".into()), ("pod".into(), "slow".into())])
            )
        );
    }

    #[test]
    fn too_few_or_stale_members_are_no_data() {
        let end = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let e = end.timestamp_millis();
        let series = vec![pod("a", &[1.0; 6], e), pod("b", &[1.0; 6], e), pod("c", &[9.0; 6], e - 60_000)];
        let v =
            judge_groups("lat", &["deployment".to_string()], &spec(), series, end, std::time::Duration::from_secs(10));
        assert!(v.iter().all(|sv| matches!(sv.verdict, Verdict::NoData(_))), "{v:?}");
        assert!(v.iter().any(|sv| matches!(&sv.verdict, Verdict::NoData(r) if r.contains("older"))));
        assert!(v.iter().any(|sv| matches!(&sv.verdict, Verdict::NoData(r) if r.contains("at least 3"))));
    }

    #[test]
    fn spec_errors_name_the_parameter() {
        let bad = |v: serde_json::Value| parse_spec(v.as_object().expect("object")).expect_err("invalid").0;
        assert_eq!(bad(serde_json::json!({})), "member");
        assert_eq!(bad(serde_json::json!({"member": "pod", "recent": 0})), "recent");
        assert_eq!(bad(serde_json::json!({"member": "pod", "sensitivty": 0.5})), "sensitivty");
        assert_eq!(bad(serde_json::json!({"member": "pod", "sensitivity": 2.0})), "sensitivity");
    }

    #[test]
    fn member_notes_agree_with_the_latest_step() {
        let now = super::member_note("pod", "p-1", 5, 10, 5, true);
        assert_eq!(now, "pod=p-1 unlike its 4 siblings at the latest step and at 5 of the last 10");
        let back = super::member_note("pod", "p-1", 9, 10, 5, false);
        assert!(back.starts_with("pod=p-1 back in line with its 4 siblings at the latest step"), "{back}");
        assert_eq!(
            super::member_note("pod", "p-2", 0, 10, 5, false),
            "pod=p-2 in line with its 4 siblings over the last 10 steps"
        );
    }
}
