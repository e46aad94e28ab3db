//! Group outliers: one member of a group behaving unlike its siblings.
//!
//! Replicas of a deployment, shards of a database or nodes of a pool should
//! look alike: same latency, same error rate, same CPU. A single replica that
//! is slow is easy to miss on a dashboard that shows the average, and a
//! single-series detector on that replica may have learnt its slowness as
//! normal. Comparing the members *with each other* at the same time needs no
//! history at all, so this is a batch API on one time slice (one value per
//! member) or on a window of aligned series (one slice per member), not a
//! streaming [`Detector`](crate::Detector).
//!
//! # Methods
//!
//! Both come from `augurs` outlier detection, which needs at least three
//! members:
//!
//! * **`mad`** (default): every value's distance from the median of *all*
//!   values of the window (a Harrell–Davis median), divided by `1.4826 ×` the
//!   median absolute deviation on that side (a "double MAD", so skewed
//!   metrics such as latencies are handled). A point is outlying when that
//!   z-like score exceeds `threshold`. When more than about half of all values
//!   are identical (zero error counts, quantised gauges) the MAD is 0 and
//!   augurs refuses (it also gives up when its statistics overflow); the same
//!   double MAD is then computed here with plain medians and the scale of a
//!   zero-spread side floored at
//!   `max(min_relative_scale × |median|, min_absolute_scale)`, and the result
//!   carries a note saying so. The upper (lower) MAD is taken over the half
//!   of the values above (below) the median, so it breaks down once outliers
//!   make up a quarter of all values on one side: one deviating member of
//!   five is found, one of four is not reliably; use `dbscan` (majority
//!   cluster) for groups that small.
//! * **`dbscan`**: at each time index the values are clustered in one
//!   dimension with radius `epsilon`; a cluster must hold a strict majority of
//!   the members; members outside it are outlying. The point score is the
//!   distance to the cluster's edge in units of `epsilon` (outlying above 1).
//!   A time index without a majority cluster (members all far apart) has no
//!   notion of normal and is left undecided here (augurs would flag every
//!   member there).
//!
//! `sensitivity` in `(0, 1)` sets `threshold` / `epsilon` exactly as augurs
//! does (`threshold = 7.941 - 7.100 × √sensitivity`, so 0.5 gives 2.92;
//! `epsilon = (1 - sensitivity) × 1.1 × span of the data`), unless they are
//! given explicitly.
//!
//! # Members and scores
//!
//! A member is an outlier when at least `min_outlying_fraction` of its judged
//! time indices (and at least one) are outlying; with one time slice that is
//! simply "its value is outlying". The default 0.5 asks for a deviation that
//! lasts, which a window of several points can show and a spike cannot.
//! The member's score is `z / (z + threshold)` (`threshold` = 1 for dbscan)
//! for `z` the `⌈fraction × judged⌉`-th largest point score, so it is in
//! `[0, 1]`, above 0.5 for outliers (up to rounding at the threshold itself),
//! at most 0.5 for the others, and grows with the deviation.
//!
//! # Missing values
//!
//! Non-finite values (NaN, ±∞: a member without a sample at that time) are
//! missing: they take no part in the group statistics, are never outlying and
//! are not counted as judged; a missing value ends an outlying interval.
//! A member with no finite value has score 0 and is no outlier. Input with no
//! finite value at all, fewer than three members or series of different
//! lengths is an [`InvalidInput`](Error::InvalidInput) error.
//!
//! # Cost
//!
//! Nothing is kept between calls. For `m` members and `n` time indices one
//! call allocates a few `m × n` arrays of `f64`; `mad` sorts all `m × n`
//! values (`O(mn log mn)`), `dbscan` sorts each time slice (`O(n m log m)`).
//! Measured in a release build: five members × 60 points take about 40–60 µs
//! with `mad` (the Harrell–Davis medians dominate) and 10 µs with `dbscan`.

use augurs::outlier::{DbscanDetector, MADDetector, OutlierDetector, OutlierOutput};
use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, invalid_input, sort_median};
use crate::error::{Error, Result};

/// Fewest members a group comparison accepts.
pub const MIN_MEMBERS: usize = 3;

const MAD_TO_SIGMA: f64 = 1.4826;

/// Outlier method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupMethod {
    /// Double median absolute deviation over all values of the window.
    #[default]
    Mad,
    /// One-dimensional DBSCAN at each time index.
    Dbscan,
}

/// Parameters of [`GroupOutlier`]. Missing fields take their defaults when
/// deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupOutlierParams {
    /// Outlier method (default `mad`).
    pub method: GroupMethod,
    /// Sensitivity in `(0, 1)`, higher flags more (default 0.5); sets
    /// `threshold` / `epsilon` when those are not given.
    pub sensitivity: f64,
    /// MAD score above which a point is outlying (overrides `sensitivity`).
    pub threshold: Option<f64>,
    /// DBSCAN radius, in the units of the series (overrides `sensitivity`).
    pub epsilon: Option<f64>,
    /// Fraction of a member's judged points that must be outlying
    /// (default 0.5).
    pub min_outlying_fraction: f64,
    /// Floor of a zero MAD as a fraction of `|median|` (default 0.01).
    pub min_relative_scale: f64,
    /// Absolute floor of a zero MAD (default 1e-9).
    pub min_absolute_scale: f64,
}

impl Default for GroupOutlierParams {
    fn default() -> Self {
        Self {
            method: GroupMethod::Mad,
            sensitivity: 0.5,
            threshold: None,
            epsilon: None,
            min_outlying_fraction: 0.5,
            min_relative_scale: 0.01,
            min_absolute_scale: 1e-9,
        }
    }
}

impl GroupOutlierParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `sensitivity`: strictly between 0 and 1
    /// * `threshold`, `epsilon`: finite and > 0 when given
    /// * `min_outlying_fraction`: greater than 0 and at most 1
    /// * `min_relative_scale`, `min_absolute_scale`: finite and >= 0
    pub fn validate(&self) -> Result<()> {
        common::strictly_between("sensitivity", self.sensitivity, 0.0, 1.0)?;
        for (name, value) in [("threshold", self.threshold), ("epsilon", self.epsilon)] {
            if let Some(v) = value {
                common::positive(name, v)?;
            }
        }
        common::positive_at_most("min_outlying_fraction", self.min_outlying_fraction, 1.0)?;
        common::scale_floors(self.min_relative_scale, self.min_absolute_scale)
    }

    /// The MAD threshold: `threshold`, or augurs' mapping of `sensitivity`.
    pub fn resolved_threshold(&self) -> f64 {
        const MAX_T: f64 = 7.941_444_487;
        const MIN_T: f64 = 0.841_621_234;
        self.threshold.unwrap_or(MAX_T - (MAX_T - MIN_T) * self.sensitivity.sqrt())
    }
}

/// Normal range of the group at one time index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GroupBand {
    /// Lowest value that is not outlying.
    pub lower: f64,
    /// Highest value that is not outlying.
    pub upper: f64,
}

/// A run of consecutive outlying time indices, `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutlyingInterval {
    /// First outlying index.
    pub start: usize,
    /// One past the last outlying index.
    pub end: usize,
}

/// Verdict for one member of the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberResult {
    /// Whether the member is an outlier of the group.
    pub is_outlier: bool,
    /// Score in `[0, 1]`: above 0.5 for outliers, at most 0.5 otherwise.
    pub score: f64,
    /// Time indices at which the member is outlying.
    pub outlying_indices: Vec<usize>,
    /// The same indices as runs.
    pub intervals: Vec<OutlyingInterval>,
    /// Time indices at which the member was judged (finite value and, for
    /// dbscan, a majority cluster).
    pub judged: usize,
}

/// Result of a group comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupOutlierResult {
    /// One entry per member, in input order.
    pub members: Vec<MemberResult>,
    /// Indices of the members that are outliers.
    pub outliers: Vec<usize>,
    /// Normal range of the group per time index (`None` where undecided).
    pub band: Vec<Option<GroupBand>>,
    /// The score threshold the point scores were compared with (MAD score,
    /// or 1 for dbscan's distance in units of epsilon).
    pub threshold: f64,
    /// The DBSCAN radius used (`None` for mad).
    pub epsilon: Option<f64>,
    /// Remarks (e.g. the zero-MAD fallback).
    pub note: Option<String>,
}

/// Group outlier detection. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOutlier {
    params: GroupOutlierParams,
}

/// Point scores (`None` = missing / undecided) and the band per time index.
struct PointScores {
    scores: Vec<Vec<Option<f64>>>,
    band: Vec<Option<GroupBand>>,
    note: Option<String>,
}

impl GroupOutlier {
    /// Build a detector; fails if `params` do not pass
    /// [`GroupOutlierParams::validate`].
    pub fn new(params: GroupOutlierParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &GroupOutlierParams {
        &self.params
    }

    /// Compare the members at one time: one value per member.
    pub fn detect_slice(&self, values: &[f64]) -> Result<GroupOutlierResult> {
        let members: Vec<&[f64]> = values.iter().map(std::slice::from_ref).collect();
        self.detect(&members)
    }

    /// Compare the members over a window: one slice per member, all of the
    /// same length, aligned in time (index `i` of every slice is the same
    /// timestamp).
    pub fn detect(&self, members: &[&[f64]]) -> Result<GroupOutlierResult> {
        if members.len() < MIN_MEMBERS {
            return Err(invalid_input(
                "group",
                format!("needs at least {MIN_MEMBERS} members to compare, got {}", members.len()),
            ));
        }
        let n = members.first().map_or(0, |m| m.len());
        if let Some((i, m)) = members.iter().enumerate().find(|(_, m)| m.len() != n) {
            return Err(invalid_input(
                "group",
                format!("series must have the same length: member 0 has {n} points, member {i} has {}", m.len()),
            ));
        }
        if n == 0 {
            return Err(invalid_input("group", "the series are empty".into()));
        }
        // Non-finite values are missing: NaN for augurs.
        let clean: Vec<Vec<f64>> =
            members.iter().map(|m| m.iter().map(|v| if v.is_finite() { *v } else { f64::NAN }).collect()).collect();
        if clean.iter().flatten().all(|v| v.is_nan()) {
            return Err(invalid_input("group", "no finite values".into()));
        }
        let rows: Vec<&[f64]> = clean.iter().map(Vec::as_slice).collect();
        let (threshold, epsilon, points) = match self.params.method {
            GroupMethod::Mad => {
                let t = self.params.resolved_threshold();
                (t, None, self.mad_scores(&rows, t))
            }
            GroupMethod::Dbscan => {
                let eps = self.epsilon_for(&rows);
                (1.0, Some(eps), dbscan_scores(&rows, eps)?)
            }
        };
        let fraction = self.params.min_outlying_fraction;
        let members: Vec<MemberResult> = points.scores.iter().map(|s| member_result(s, threshold, fraction)).collect();
        let outliers = members.iter().enumerate().filter_map(|(i, m)| m.is_outlier.then_some(i)).collect();
        Ok(GroupOutlierResult { members, outliers, band: points.band, threshold, epsilon, note: points.note })
    }

    /// `epsilon`, or augurs' mapping of `sensitivity` onto the data's span.
    fn epsilon_for(&self, rows: &[&[f64]]) -> f64 {
        if let Some(eps) = self.params.epsilon {
            return eps;
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in rows.iter().flat_map(|r| r.iter()).filter(|v| !v.is_nan()) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        let span = clamp_finite(hi - lo).abs().max(0.1);
        let s = self.params.sensitivity.min(1.0 - 1e-3);
        clamp_finite((1.0 - s) * span * 1.1).max(f64::MIN_POSITIVE)
    }

    fn mad_scores(&self, rows: &[&[f64]], threshold: f64) -> PointScores {
        let detector = MADDetector::with_threshold(threshold);
        let output = detector
            .preprocess(rows)
            .map_err(|e| e.to_string())
            .and_then(|data| detector.detect(&data).map_err(|e| e.to_string()));
        let usable = output.and_then(|o| {
            let finite = o.cluster_band.as_ref().is_some_and(|b| b.min.iter().chain(&b.max).all(|v| v.is_finite()));
            if finite {
                Ok(o)
            } else {
                Err("the MAD band is not finite".to_string())
            }
        });
        match usable {
            Ok(output) => from_augurs_mad(rows, &output),
            Err(reason) => self.floored_mad_scores(rows, threshold, &reason),
        }
    }

    /// Double MAD with plain medians and floored scales, for data on which
    /// augurs' MAD is undefined.
    fn floored_mad_scores(&self, rows: &[&[f64]], threshold: f64, reason: &str) -> PointScores {
        let mut all: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).filter(|v| !v.is_nan()).collect();
        let median = sort_median(&mut all).unwrap_or(0.0);
        let (mut below, mut above): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for &v in &all {
            let d = clamp_finite(v - median);
            if d <= 0.0 {
                below.push(-d);
            }
            if d >= 0.0 {
                above.push(d);
            }
        }
        let floor = clamp_finite(self.params.min_relative_scale * median.abs()).max(self.params.min_absolute_scale);
        let lower = clamp_finite(MAD_TO_SIGMA * sort_median(&mut below).unwrap_or(0.0)).max(floor);
        let upper = clamp_finite(MAD_TO_SIGMA * sort_median(&mut above).unwrap_or(0.0)).max(floor);
        let scores = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| {
                        if v.is_nan() {
                            return None;
                        }
                        let d = clamp_finite(v - median);
                        let z = if d == 0.0 {
                            0.0
                        } else if d > 0.0 {
                            ratio(d, upper)
                        } else {
                            ratio(-d, lower)
                        };
                        Some(z)
                    })
                    .collect()
            })
            .collect();
        let band = GroupBand {
            lower: clamp_finite(median - clamp_finite(threshold * lower)),
            upper: clamp_finite(median + clamp_finite(threshold * upper)),
        };
        let n = rows.first().map_or(0, |r| r.len());
        PointScores {
            scores,
            band: vec![Some(band); n],
            note: Some(format!(
                "augurs' MAD is undefined on this group ({reason}): plain double MAD, \
                 scales floored at {floor:e}"
            )),
        }
    }
}

/// `a / b` for `a >= 0`, `b >= 0`: finite, `f64::MAX` when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else if b > 0.0 {
        clamp_finite(a / b)
    } else {
        f64::MAX
    }
}

/// Point scores from augurs' MAD output. Augurs turns an overflowing score
/// into NaN; a finite input value with a NaN score is therefore treated as
/// infinitely far out.
fn from_augurs_mad(rows: &[&[f64]], output: &OutlierOutput) -> PointScores {
    let scores = rows
        .iter()
        .zip(&output.series_results)
        .map(|(row, series)| {
            row.iter()
                .zip(&series.scores)
                .map(|(&v, &s)| {
                    if v.is_nan() {
                        None
                    } else if s.is_nan() {
                        Some(f64::MAX)
                    } else {
                        Some(clamp_finite(s.max(0.0)))
                    }
                })
                .collect()
        })
        .collect();
    let n = rows.first().map_or(0, |r| r.len());
    let band = (0..n)
        .map(|i| {
            let b = output.cluster_band.as_ref()?;
            band_at(b.min.get(i).copied(), b.max.get(i).copied())
        })
        .collect();
    PointScores { scores, band, note: None }
}

fn band_at(min: Option<f64>, max: Option<f64>) -> Option<GroupBand> {
    match (min, max) {
        (Some(lower), Some(upper)) if !lower.is_nan() && !upper.is_nan() => {
            Some(GroupBand { lower: clamp_finite(lower), upper: clamp_finite(upper) })
        }
        _ => None,
    }
}

/// Point scores from augurs' DBSCAN: distance to the majority cluster's edge
/// in units of `eps`; `None` for missing values and time indices without a
/// majority cluster.
fn dbscan_scores(rows: &[&[f64]], eps: f64) -> Result<PointScores> {
    let detector = DbscanDetector::with_epsilon(eps);
    let output = detector
        .preprocess(rows)
        .and_then(|data| detector.detect(&data))
        .map_err(|e| Error::Model { model: "dbscan", message: e.to_string() })?;
    let n = rows.first().map_or(0, |r| r.len());
    // Augurs' band is the cluster widened by eps / 2 on each side.
    let band: Vec<Option<GroupBand>> = (0..n)
        .map(|i| {
            let b = output.cluster_band.as_ref()?;
            band_at(b.min.get(i).copied(), b.max.get(i).copied())
        })
        .collect();
    let scores = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&band)
                .map(|(&v, b)| {
                    if v.is_nan() {
                        return None;
                    }
                    let b = (*b)?;
                    let (lo, hi) = (b.lower + eps / 2.0, b.upper - eps / 2.0);
                    let gap = if v > hi {
                        clamp_finite(v - hi)
                    } else if v < lo {
                        clamp_finite(lo - v)
                    } else {
                        0.0
                    };
                    Some(ratio(gap, eps))
                })
                .collect()
        })
        .collect();
    Ok(PointScores { scores, band, note: None })
}

fn member_result(scores: &[Option<f64>], threshold: f64, fraction: f64) -> MemberResult {
    let outlying_indices: Vec<usize> =
        scores.iter().enumerate().filter_map(|(i, s)| s.is_some_and(|z| z > threshold).then_some(i)).collect();
    let mut judged_scores: Vec<f64> = scores.iter().flatten().copied().collect();
    let judged = judged_scores.len();
    // The m-th largest point score, m = ceil(fraction * judged) >= 1.
    let m = ((fraction * judged as f64).ceil() as usize).clamp(1, judged.max(1));
    judged_scores.sort_unstable_by(|a, b| b.total_cmp(a));
    let z = judged_scores.get(m - 1).copied().unwrap_or(0.0);
    let score = if z > 0.0 { (1.0 / (1.0 + threshold / z)).clamp(0.0, 1.0) } else { 0.0 };
    let is_outlier = judged > 0 && outlying_indices.len() >= m;
    let mut intervals: Vec<OutlyingInterval> = Vec::new();
    for &i in &outlying_indices {
        match intervals.last_mut() {
            Some(last) if last.end == i => last.end = i + 1,
            _ => intervals.push(OutlyingInterval { start: i, end: i + 1 }),
        }
    }
    MemberResult { is_outlier, score, outlying_indices, intervals, judged }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::XorShift64;

    fn detector(p: GroupOutlierParams) -> GroupOutlier {
        match GroupOutlier::new(p) {
            Ok(d) => d,
            Err(e) => panic!("valid params rejected: {e}"),
        }
    }

    fn run(p: GroupOutlierParams, members: &[Vec<f64>]) -> GroupOutlierResult {
        let rows: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
        match detector(p).detect(&rows) {
            Ok(r) => r,
            Err(e) => panic!("detect failed: {e}"),
        }
    }

    /// Five pods, 60 points of latency around 100 ms (±5), pod 3 doubled.
    fn pods(seed: u64) -> Vec<Vec<f64>> {
        let mut rng = XorShift64::new(seed);
        (0..5)
            .map(|pod| {
                let level = if pod == 3 { 200.0 } else { 100.0 };
                (0..60).map(|_| level + rng.uniform(-5.0, 5.0)).collect()
            })
            .collect()
    }

    fn dbscan() -> GroupOutlierParams {
        GroupOutlierParams { method: GroupMethod::Dbscan, ..GroupOutlierParams::default() }
    }

    fn input_message(r: Result<GroupOutlierResult>) -> String {
        match r {
            Err(Error::InvalidInput { what, message }) => format!("{what}: {message}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn slow_pod_of_five_is_flagged_by_both_methods() {
        for seed in 1..=5 {
            for p in [GroupOutlierParams::default(), dbscan()] {
                let r = run(p.clone(), &pods(seed));
                assert_eq!(r.outliers, vec![3], "seed {seed} {:?}", p.method);
                let slow = &r.members[3];
                assert!(slow.score > 0.5);
                assert_eq!(slow.judged, 60);
                assert_eq!(slow.outlying_indices.len(), 60);
                assert_eq!(slow.intervals, vec![OutlyingInterval { start: 0, end: 60 }]);
                for (i, m) in r.members.iter().enumerate().filter(|(i, _)| *i != 3) {
                    assert!(!m.is_outlier, "pod {i}: {m:?}");
                    assert!(m.score <= 0.5, "pod {i}: {m:?}");
                }
                assert_eq!(r.band.len(), 60);
                for b in r.band.iter().flatten() {
                    assert!(b.lower < 100.0 && b.upper > 100.0 && b.upper < 200.0, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn one_time_slice() {
        let r = detector(GroupOutlierParams::default()).detect_slice(&[101.0, 99.0, 100.5, 203.0, 98.7]);
        let Ok(r) = r else { panic!("{r:?}") };
        assert_eq!(r.outliers, vec![3]);
        assert!((r.threshold - 2.921_111).abs() < 1e-5, "{}", r.threshold);
        let r = detector(dbscan()).detect_slice(&[101.0, 99.0, 100.5, 203.0, 98.7]);
        assert!(r.is_ok_and(|r| r.outliers == vec![3] && r.epsilon.is_some()));
    }

    #[test]
    fn agrees_with_augurs_point_decisions() {
        let data = pods(7);
        let rows: Vec<&[f64]> = data.iter().map(Vec::as_slice).collect();
        let threshold = GroupOutlierParams::default().resolved_threshold();
        let augurs = MADDetector::with_threshold(threshold);
        let out = augurs.preprocess(&rows).and_then(|d| augurs.detect(&d));
        let Ok(out) = out else { panic!("augurs failed") };
        let ours =
            run(GroupOutlierParams { min_outlying_fraction: 1.0 / 60.0, ..GroupOutlierParams::default() }, &data);
        for (i, series) in out.series_results.iter().enumerate() {
            assert_eq!(series.is_outlier, ours.members[i].is_outlier, "member {i}");
            let flagged: Vec<usize> =
                series.scores.iter().enumerate().filter_map(|(t, s)| (*s > threshold).then_some(t)).collect();
            assert_eq!(flagged, ours.members[i].outlying_indices, "member {i}");
        }
    }

    #[test]
    fn brief_spikes_need_the_fraction() {
        let mut data = pods(3);
        data[3] = data[0].clone();
        data[1][10] = 400.0;
        data[1][11] = 400.0;
        let r = run(GroupOutlierParams::default(), &data);
        assert!(r.outliers.is_empty(), "{:?}", r.outliers);
        assert_eq!(r.members[1].outlying_indices, vec![10, 11]);
        assert_eq!(r.members[1].intervals, vec![OutlyingInterval { start: 10, end: 12 }]);
        let sensitive = run(GroupOutlierParams { min_outlying_fraction: 0.01, ..GroupOutlierParams::default() }, &data);
        assert_eq!(sensitive.outliers, vec![1]);
    }

    #[test]
    fn too_few_ragged_empty_and_missing_inputs_are_errors() {
        let d = detector(GroupOutlierParams::default());
        let m = input_message(d.detect(&[&[1.0], &[2.0]]));
        assert!(m.contains("needs at least 3 members to compare, got 2"), "{m}");
        let m = input_message(d.detect_slice(&[1.0, 2.0]));
        assert!(m.contains("got 2"), "{m}");
        let m = input_message(d.detect(&[&[1.0, 2.0], &[2.0, 3.0], &[3.0]]));
        assert!(m.contains("member 0 has 2 points, member 2 has 1"), "{m}");
        let m = input_message(d.detect(&[&[], &[], &[]]));
        assert!(m.contains("empty"), "{m}");
        let m = input_message(d.detect_slice(&[f64::NAN, f64::INFINITY, f64::NAN]));
        assert!(m.contains("no finite values"), "{m}");
    }

    #[test]
    fn missing_values_are_never_outlying() {
        for p in [GroupOutlierParams::default(), dbscan()] {
            let mut data = pods(11);
            data[3][5] = f64::NAN;
            data[3][6] = f64::INFINITY;
            data.push(vec![f64::NAN; 60]);
            let r = run(p.clone(), &data);
            assert_eq!(r.outliers, vec![3], "{:?} {r:?}", p.method);
            let slow = &r.members[3];
            assert_eq!(slow.judged, 58);
            assert!(!slow.outlying_indices.contains(&5) && !slow.outlying_indices.contains(&6));
            assert_eq!(slow.intervals.len(), 2);
            let empty = &r.members[5];
            assert_eq!((empty.is_outlier, empty.score, empty.judged), (false, 0.0, 0));
        }
    }

    #[test]
    fn zero_mad_falls_back_to_floored_scale() {
        // Error counts: four pods without errors, one with many.
        let r = detector(GroupOutlierParams::default()).detect_slice(&[0.0, 0.0, 0.0, 37.0, 0.0]);
        let Ok(r) = r else { panic!("{r:?}") };
        assert_eq!(r.outliers, vec![3]);
        assert!(r.note.as_deref().is_some_and(|n| n.contains("augurs' MAD is undefined on this group")));
        assert!(r.members[3].score > 0.99);
        // All equal: nobody is an outlier.
        let same = detector(GroupOutlierParams::default()).detect_slice(&[5.0; 4]);
        assert!(same.is_ok_and(|r| r.outliers.is_empty() && r.members.iter().all(|m| m.score == 0.0)));
    }

    #[test]
    fn dbscan_leaves_spread_out_slices_undecided() {
        let d = detector(GroupOutlierParams { epsilon: Some(1.0), ..dbscan() });
        let r = d.detect(&[&[1.0, 0.0], &[1.2, 10.0], &[0.9, 20.0], &[5.0, 30.0]]);
        let Ok(r) = r else { panic!("{r:?}") };
        assert!(r.band[0].is_some());
        assert_eq!(r.band[1], None);
        assert_eq!(r.members[3].outlying_indices, vec![0]);
        assert!(r.members.iter().all(|m| m.judged == 1));
        assert_eq!(r.outliers, vec![3]);
        // Distance 3.8 beyond the cluster edge 1.2 in units of eps 1.
        assert!((r.members[3].score - 3.8 / 4.8).abs() < 1e-9, "{:?}", r.members[3]);
    }

    #[test]
    fn extreme_values_do_not_break_the_comparison() {
        for p in [GroupOutlierParams::default(), dbscan()] {
            let r = detector(p).detect_slice(&[f64::MAX, 1.0, 2.0, 1.5, f64::MIN]);
            let Ok(r) = r else { panic!("{r:?}") };
            assert!(r.members.iter().all(|m| m.score.is_finite() && (0.0..=1.0).contains(&m.score)));
            assert!(r.members[0].is_outlier && r.members[4].is_outlier, "{r:?}");
        }
    }

    #[test]
    fn params_validate_names_parameter() {
        let base = GroupOutlierParams::default();
        let cases = [
            (GroupOutlierParams { sensitivity: 1.0, ..base.clone() }, "sensitivity"),
            (GroupOutlierParams { threshold: Some(0.0), ..base.clone() }, "threshold"),
            (GroupOutlierParams { epsilon: Some(f64::NAN), ..base.clone() }, "epsilon"),
            (GroupOutlierParams { min_outlying_fraction: 0.0, ..base.clone() }, "min_outlying_fraction"),
            (GroupOutlierParams { min_absolute_scale: -1.0, ..base.clone() }, "min_absolute_scale"),
        ];
        for (p, name) in cases {
            match GroupOutlier::new(p) {
                Err(Error::InvalidParam { name: n, message }) => {
                    assert_eq!(n, name);
                    assert!(message.contains("must be"), "{message}");
                }
                other => panic!("expected InvalidParam for {name}, got {other:?}"),
            }
        }
        let p: std::result::Result<GroupOutlierParams, _> =
            serde_json::from_str(r#"{"method": "dbscan", "epsilon": 2.5}"#);
        assert!(p.is_ok_and(|p| p.method == GroupMethod::Dbscan && p.epsilon == Some(2.5)));
        assert!(serde_json::from_str::<GroupOutlierParams>(r#"{"eps": 2.5}"#).is_err());
    }
}
