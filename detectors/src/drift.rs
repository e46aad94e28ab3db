//! Model drift: PSI and Kolmogorov–Smirnov between a reference and a current
//! distribution, read from Prometheus histogram buckets; and a check of a
//! prediction-quality metric against its baseline.
//!
//! A model served behind an API usually exports the distribution of its
//! inputs or scores as a Prometheus histogram (`*_bucket{le="…"}` series).
//! Drift in that distribution (new traffic mix, a broken feature pipeline)
//! degrades predictions long before labelled quality metrics catch up, and it
//! shows as a change in the *shape* of the histogram rather than in any single
//! series. This module compares the histogram of a reference window with that
//! of a current window.
//!
//! # Input
//!
//! Prometheus buckets are **cumulative**: the series with `le = b` counts the
//! observations `<= b`, the last bucket has `le = +Inf` and counts everything.
//! The functions take the `le` bounds (ascending, the last one `+Inf`) and the
//! cumulative counts, as `_bucket` series give them. Counts are counters, so
//! the histogram *of a window* is the difference between the counts at its
//! end and at its start ([`window_counts`]); a bucket whose count went down in
//! between means the counter was reset (a restart) and the window cannot be
//! used as is: that is an [`InvalidInput`](Error::InvalidInput) error, as are
//! cumulative counts that decrease from one bucket to the next, negative or
//! non-finite counts, bounds that are not strictly increasing or lack `+Inf`,
//! and windows without observations. (Prometheus' `increase()` already
//! corrects resets; its output can be passed as the cumulative counts of the
//! window directly, with [`bucket_counts`].)
//!
//! # Statistics
//!
//! * **PSI** (population stability index):
//!   `PSI = Σ_i (q_i - p_i) ln(q_i / p_i)` over buckets, with `p` the
//!   reference and `q` the current bucket probabilities. An empty bucket on
//!   one side would make a term infinite, so both distributions are smoothed
//!   first: `p'_i = (p_i + ε) / (1 + k ε)` for `k` buckets (the same for `q`),
//!   which keeps them summing to 1 and caps one bucket's term at about
//!   `ln(1 / ε)`. Buckets empty on both sides contribute 0. Conventions:
//!   below 0.1 stable, 0.1 – 0.25 moderate shift, above 0.25 significant.
//! * **KS** (two-sample Kolmogorov–Smirnov): `D = max_i |F_ref(b_i) - F_cur(b_i)|`
//!   over the bucket bounds, with `F` the binned empirical CDFs. This is a
//!   *binned approximation*: the true `D` of the raw observations is the
//!   maximum over all points, and the binned one only sees the bucket edges,
//!   so it can only be smaller (`D_binned <= D`) and it is blind to changes
//!   inside one bucket. The p-value uses the asymptotic Kolmogorov
//!   distribution with `n_e = n_ref n_cur / (n_ref + n_cur)` and the
//!   Stephens correction `λ = (√n_e + 0.12 + 0.11 / √n_e) D`,
//!   `p = Q_KS(λ) = 2 Σ_{j>=1} (-1)^{j-1} exp(-2 j² λ²)`. Because `D` is
//!   underestimated and observations within a bucket are ties, the p-value is
//!   conservative (too large), and it is meaningful only when the counts are
//!   counts of observations (use `increase()`, not `rate()`).
//! * **Decision** ([`DriftDetector`]): the level follows PSI
//!   (`psi_moderate`, `psi_significant`, by convention 0.1 and 0.25). A
//!   significant PSI is drift; a moderate PSI is drift only when KS confirms
//!   it (`p_value < ks_alpha`). KS alone is not used: with millions of
//!   requests any negligible difference is "significant".
//!
//! # Prediction quality
//!
//! [`quality_vs_baseline`] compares a current quality metric (accuracy, error
//! rate, …) with its baseline under a relative tolerance.
//!
//! # Cost
//!
//! Everything is a pure function of its input: `O(k)` time for `k` buckets and
//! a few `Vec<f64>` of length `k` (about 1 µs for 12 buckets); no state is
//! kept between calls (a [`DriftDetector`] holds only its parameters).

use serde::{Deserialize, Serialize};

use crate::common::{self, invalid, invalid_input};
use crate::error::{Error, Result};

/// A bucket bound as Prometheus writes it (`+Inf` for infinity).
struct Le(f64);

impl std::fmt::Display for Le {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == f64::INFINITY {
            f.write_str("+Inf")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Check bucket bounds: at least one, no NaN, strictly increasing, the last
/// one `+Inf`.
fn check_bounds(bounds: &[f64]) -> Result<()> {
    let Some(&last) = bounds.last() else {
        return Err(invalid_input("histogram", "no buckets".into()));
    };
    if let Some(b) = bounds.iter().find(|b| b.is_nan()) {
        return Err(invalid_input("histogram", format!("bucket bound le={b} is not a number")));
    }
    if let Some(w) = bounds.windows(2).find(|w| w[0] >= w[1]) {
        return Err(invalid_input(
            "histogram",
            format!("bucket bounds must be strictly increasing, got le={} before le={}", w[0], w[1]),
        ));
    }
    if last != f64::INFINITY {
        return Err(invalid_input("histogram", format!("the last bucket must be le=+Inf, got le={}", Le(last))));
    }
    Ok(())
}

/// Per-bucket counts from cumulative counts (`le` bounds ascending, last
/// `+Inf`). Errors if the lengths differ, a count is negative or not finite,
/// or the cumulative counts decrease from one bucket to the next.
pub fn bucket_counts(bounds: &[f64], cumulative: &[f64]) -> Result<Vec<f64>> {
    check_bounds(bounds)?;
    if cumulative.len() != bounds.len() {
        return Err(invalid_input(
            "histogram",
            format!("{} cumulative counts for {} buckets", cumulative.len(), bounds.len()),
        ));
    }
    let mut counts = Vec::with_capacity(cumulative.len());
    let mut prev = 0.0;
    for (&c, &le) in cumulative.iter().zip(bounds) {
        if !(c.is_finite() && c >= 0.0) {
            return Err(invalid_input(
                "histogram",
                format!("count {c} of bucket le={} is negative or not finite", Le(le)),
            ));
        }
        if c < prev {
            return Err(invalid_input(
                "histogram",
                format!(
                    "cumulative count decreases to {c} at bucket le={} (was {prev}); \
                     the buckets were not read at the same time or a counter was reset",
                    Le(le)
                ),
            ));
        }
        counts.push(c - prev);
        prev = c;
    }
    Ok(counts)
}

/// Per-bucket counts of the observations made between two readings of the
/// same cumulative histogram (`start` read before `end`). A bucket whose
/// count went down means a counter reset in the window: an error.
pub fn window_counts(bounds: &[f64], start: &[f64], end: &[f64]) -> Result<Vec<f64>> {
    let start = bucket_counts(bounds, start)?;
    let end = bucket_counts(bounds, end)?;
    let mut counts = Vec::with_capacity(end.len());
    for ((s, e), le) in start.iter().zip(&end).zip(bounds) {
        let d = e - s;
        // Tolerate rounding noise of float counters.
        let tolerance = 1e-9 * s.abs().max(e.abs());
        if d < -tolerance {
            return Err(invalid_input(
                "histogram window",
                format!("bucket le={} went down from {s} to {e}: a counter reset in the window", Le(*le)),
            ));
        }
        counts.push(d.max(0.0));
    }
    Ok(counts)
}

/// Per-bucket probabilities from cumulative counts: [`bucket_counts`]
/// divided by the total. Errors if there are no observations.
pub fn bucket_probabilities(bounds: &[f64], cumulative: &[f64]) -> Result<Vec<f64>> {
    let counts = bucket_counts(bounds, cumulative)?;
    probabilities("histogram", &counts)
}

fn probabilities(what: &str, counts: &[f64]) -> Result<Vec<f64>> {
    let total: f64 = counts.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return Err(invalid_input(what, format!("no observations (total {total})")));
    }
    Ok(counts.iter().map(|c| c / total).collect())
}

/// Check two probability vectors of the same, non-zero length.
fn check_pair(reference: &[f64], current: &[f64]) -> Result<()> {
    if reference.is_empty() || reference.len() != current.len() {
        return Err(invalid_input(
            "distributions",
            format!("need the same, non-zero number of buckets, got {} and {}", reference.len(), current.len()),
        ));
    }
    for (what, v) in [("reference", reference), ("current", current)] {
        if let Some(p) = v.iter().find(|p| !(p.is_finite() && **p >= 0.0)) {
            return Err(invalid_input(what, format!("bucket value {p} is negative or not finite")));
        }
        let total: f64 = v.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return Err(invalid_input(what, format!("no observations (total {total})")));
        }
    }
    Ok(())
}

/// PSI and its per-bucket terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Psi {
    /// The index.
    pub value: f64,
    /// Term of each bucket (all `>= 0`, summing to `value`).
    pub contributions: Vec<f64>,
}

/// PSI between two distributions over the same buckets, given as counts or
/// probabilities (each is normalised to sum 1), smoothed with `epsilon` as
/// described in the [module docs](self). `epsilon` must be in `(0, 0.5]`.
pub fn psi(reference: &[f64], current: &[f64], epsilon: f64) -> Result<Psi> {
    common::positive_at_most("epsilon", epsilon, 0.5)?;
    check_pair(reference, current)?;
    let p = probabilities("reference", reference)?;
    let q = probabilities("current", current)?;
    let k = p.len() as f64;
    let norm = 1.0 + k * epsilon;
    let contributions: Vec<f64> = p
        .iter()
        .zip(&q)
        .map(|(p, q)| {
            let p = (p + epsilon) / norm;
            let q = (q + epsilon) / norm;
            ((q - p) * (q / p).ln()).max(0.0)
        })
        .collect();
    Ok(Psi { value: contributions.iter().sum(), contributions })
}

/// Two-sample KS statistic on binned CDFs, with its approximate p-value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ks {
    /// `max |F_ref - F_cur|` over bucket bounds.
    pub statistic: f64,
    /// Asymptotic p-value (conservative for binned data, see the module docs).
    pub p_value: f64,
    /// Bucket at whose upper bound the largest gap occurs (the first one on
    /// ties).
    pub bucket: usize,
}

/// KS between two histograms over the same buckets, given as per-bucket
/// **counts** (the totals are the sample sizes of the p-value).
pub fn ks(reference: &[f64], current: &[f64]) -> Result<Ks> {
    check_pair(reference, current)?;
    let n_ref: f64 = reference.iter().sum();
    let n_cur: f64 = current.iter().sum();
    let (mut cdf_ref, mut cdf_cur) = (0.0, 0.0);
    let mut best = (0.0_f64, 0usize);
    for (i, (r, c)) in reference.iter().zip(current).enumerate() {
        cdf_ref += r / n_ref;
        cdf_cur += c / n_cur;
        let gap = (cdf_ref - cdf_cur).abs();
        if gap > best.0 {
            best = (gap, i);
        }
    }
    let statistic = best.0.min(1.0);
    let n_e = n_ref * n_cur / (n_ref + n_cur);
    let sqrt_n = n_e.sqrt();
    let lambda = (sqrt_n + 0.12 + 0.11 / sqrt_n) * statistic;
    Ok(Ks { statistic, p_value: kolmogorov_q(lambda), bucket: best.1 })
}

/// Survival function of the Kolmogorov distribution,
/// `Q(λ) = 2 Σ_{j>=1} (-1)^{j-1} exp(-2 j² λ²)`, with the dual series
/// `1 - √(2π)/λ Σ_{j>=1} exp(-(2j-1)² π² / (8 λ²))` for small `λ`, where the
/// first converges slowly. Result clamped to `[0, 1]`.
fn kolmogorov_q(lambda: f64) -> f64 {
    if !lambda.is_finite() {
        return if lambda > 0.0 { 0.0 } else { 1.0 };
    }
    // Q(0.15) is 1 in double precision (the series' first term is about exp(-55)), and
    // for tiny lambda 1/lambda overflows while the sum underflows (inf * 0 = NaN).
    if lambda < 0.15 {
        return 1.0;
    }
    let q = if lambda < 1.18 {
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        let mut sum = 0.0;
        for j in 1..=20 {
            let odd = f64::from(2 * j - 1);
            sum += (-odd * odd * pi2 / (8.0 * lambda * lambda)).exp();
        }
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * sum
    } else {
        let mut sum = 0.0;
        let mut sign = 1.0;
        for j in 1..=100 {
            let j = f64::from(j);
            let term = (-2.0 * j * j * lambda * lambda).exp();
            sum += sign * term;
            if term < 1e-17 {
                break;
            }
            sign = -sign;
        }
        2.0 * sum
    };
    q.clamp(0.0, 1.0)
}

/// Parameters of [`DriftDetector`]. Missing fields take their defaults when
/// deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftParams {
    /// PSI from which the shift is moderate (default 0.1).
    pub psi_moderate: f64,
    /// PSI from which the shift is significant and always drift
    /// (default 0.25).
    pub psi_significant: f64,
    /// KS p-value below which a moderate PSI counts as drift (default 0.01).
    pub ks_alpha: f64,
    /// PSI smoothing added to every bucket probability (default 1e-4).
    pub epsilon: f64,
}

impl Default for DriftParams {
    fn default() -> Self {
        Self { psi_moderate: 0.1, psi_significant: 0.25, ks_alpha: 0.01, epsilon: 1e-4 }
    }
}

impl DriftParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `psi_moderate`: finite and > 0
    /// * `psi_significant`: finite and >= `psi_moderate`
    /// * `ks_alpha`: strictly between 0 and 1
    /// * `epsilon`: greater than 0 and at most 0.5
    pub fn validate(&self) -> Result<()> {
        common::positive("psi_moderate", self.psi_moderate)?;
        if !(self.psi_significant.is_finite() && self.psi_significant >= self.psi_moderate) {
            return Err(invalid(
                "psi_significant",
                format!(
                    "must be finite and at least psi_moderate ({}), got {}",
                    self.psi_moderate, self.psi_significant
                ),
            ));
        }
        common::strictly_between("ks_alpha", self.ks_alpha, 0.0, 1.0)?;
        common::positive_at_most("epsilon", self.epsilon, 0.5)
    }
}

/// PSI convention bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftLevel {
    /// PSI below `psi_moderate`.
    Stable,
    /// PSI from `psi_moderate` up to `psi_significant`.
    Moderate,
    /// PSI at or above `psi_significant`.
    Significant,
}

/// Result of comparing a current histogram with a reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftResult {
    /// Population stability index.
    pub psi: f64,
    /// KS statistic on the binned CDFs.
    pub ks: f64,
    /// Approximate KS p-value.
    pub p_value: f64,
    /// PSI band.
    pub level: DriftLevel,
    /// Whether this counts as drift (see the module docs).
    pub drifted: bool,
    /// Index of the bucket with the largest PSI term.
    pub top_bucket: usize,
    /// Its upper bound `le` (may be `+Inf`).
    pub top_bucket_le: f64,
    /// Its PSI term.
    pub top_bucket_contribution: f64,
    /// Its probability in the reference window.
    pub top_bucket_reference: f64,
    /// Its probability in the current window.
    pub top_bucket_current: f64,
    /// Observations in the reference window.
    pub reference_total: f64,
    /// Observations in the current window.
    pub current_total: f64,
}

/// Drift between two histogram windows. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftDetector {
    params: DriftParams,
}

impl DriftDetector {
    /// Build a detector; fails if `params` do not pass
    /// [`DriftParams::validate`].
    pub fn new(params: DriftParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &DriftParams {
        &self.params
    }

    /// Compare two windows given as cumulative bucket counts over the same
    /// `le` bounds, each already the counts *of its window* (e.g. from
    /// `increase(…_bucket[window])`). For per-bucket counts, such as
    /// [`window_counts`] returns, use [`compare_counts`](Self::compare_counts).
    pub fn evaluate(
        &self,
        bounds: &[f64],
        reference_cumulative: &[f64],
        current_cumulative: &[f64],
    ) -> Result<DriftResult> {
        let reference = bucket_counts(bounds, reference_cumulative).map_err(|e| rename(e, "reference histogram"))?;
        let current = bucket_counts(bounds, current_cumulative).map_err(|e| rename(e, "current histogram"))?;
        self.compare_counts(bounds, &reference, &current)
    }

    /// Compare two windows given as per-bucket (non-cumulative) counts over
    /// the same `le` bounds, e.g. from [`window_counts`].
    pub fn compare_counts(&self, bounds: &[f64], reference: &[f64], current: &[f64]) -> Result<DriftResult> {
        check_bounds(bounds)?;
        if reference.len() != bounds.len() || current.len() != bounds.len() {
            return Err(invalid_input(
                "histogram",
                format!(
                    "{} buckets, but {} reference and {} current counts",
                    bounds.len(),
                    reference.len(),
                    current.len()
                ),
            ));
        }
        let psi = psi(reference, current, self.params.epsilon)?;
        let ks = ks(reference, current)?;
        let p = probabilities("reference", reference)?;
        let q = probabilities("current", current)?;
        let mut top = 0usize;
        for (i, c) in psi.contributions.iter().enumerate() {
            if psi.contributions.get(top).is_some_and(|t| c > t) {
                top = i;
            }
        }
        let level = if psi.value >= self.params.psi_significant {
            DriftLevel::Significant
        } else if psi.value >= self.params.psi_moderate {
            DriftLevel::Moderate
        } else {
            DriftLevel::Stable
        };
        let drifted = match level {
            DriftLevel::Significant => true,
            DriftLevel::Moderate => ks.p_value < self.params.ks_alpha,
            DriftLevel::Stable => false,
        };
        Ok(DriftResult {
            psi: psi.value,
            ks: ks.statistic,
            p_value: ks.p_value,
            level,
            drifted,
            top_bucket: top,
            top_bucket_le: bounds.get(top).copied().unwrap_or(f64::INFINITY),
            top_bucket_contribution: psi.contributions.get(top).copied().unwrap_or(0.0),
            top_bucket_reference: p.get(top).copied().unwrap_or(0.0),
            top_bucket_current: q.get(top).copied().unwrap_or(0.0),
            reference_total: reference.iter().sum(),
            current_total: current.iter().sum(),
        })
    }
}

fn rename(e: Error, what: &str) -> Error {
    match e {
        Error::InvalidInput { message, .. } => Error::InvalidInput { what: what.to_string(), message },
        other => other,
    }
}

/// Whether larger values of a quality metric are better (accuracy, AUC) or
/// worse (error rate, latency, loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityGoal {
    /// Larger is better.
    HigherIsBetter,
    /// Smaller is better.
    LowerIsBetter,
}

/// Result of [`quality_vs_baseline`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityCheck {
    /// The current value.
    pub current: f64,
    /// The baseline value.
    pub baseline: f64,
    /// `(current - baseline) / |baseline|`; `None` when the baseline is 0.
    pub relative_change: Option<f64>,
    /// Whether the metric got worse by more than the tolerance.
    pub degraded: bool,
}

/// Compare a current quality metric with its baseline: it is degraded when it
/// got worse (in the direction of `goal`) by more than `tolerance × |baseline|`
/// (`tolerance` 0.05 = 5 % relative). With a baseline of 0 any worsening is
/// degradation. Errors on non-finite values or a negative / non-finite
/// tolerance.
pub fn quality_vs_baseline(current: f64, baseline: f64, tolerance: f64, goal: QualityGoal) -> Result<QualityCheck> {
    common::non_negative("tolerance", tolerance)?;
    for (what, v) in [("current quality", current), ("baseline quality", baseline)] {
        if !v.is_finite() {
            return Err(invalid_input(what, format!("{v} is not a finite number")));
        }
    }
    let change = current - baseline;
    let worsening = match goal {
        QualityGoal::HigherIsBetter => -change,
        QualityGoal::LowerIsBetter => change,
    };
    let allowed = tolerance * baseline.abs();
    let relative_change = (baseline != 0.0).then(|| change / baseline.abs());
    Ok(QualityCheck { current, baseline, relative_change, degraded: worsening > allowed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn detector() -> DriftDetector {
        match DriftDetector::new(DriftParams::default()) {
            Ok(d) => d,
            Err(e) => panic!("defaults rejected: {e}"),
        }
    }

    fn input_message(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::InvalidInput { what, message }) => format!("{what}: {message}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn cumulative_to_counts_and_probabilities() {
        let bounds = [0.1, 0.5, 1.0, INF];
        assert_eq!(bucket_counts(&bounds, &[10.0, 40.0, 100.0, 100.0]), Ok(vec![10.0, 30.0, 60.0, 0.0]));
        assert_eq!(bucket_probabilities(&bounds, &[10.0, 40.0, 100.0, 100.0]), Ok(vec![0.1, 0.3, 0.6, 0.0]));
        // Only the +Inf bucket.
        assert_eq!(bucket_counts(&[INF], &[7.0]), Ok(vec![7.0]));
    }

    #[test]
    fn malformed_histograms_are_invalid_input() {
        let bounds = [0.1, 0.5, INF];
        let m = input_message(bucket_counts(&bounds, &[1.0, 2.0]));
        assert!(m.contains("2 cumulative counts for 3 buckets"), "{m}");
        let m = input_message(bucket_counts(&[0.1, 0.5], &[1.0, 2.0]));
        assert!(m.contains("last bucket must be le=+Inf"), "{m}");
        let m = input_message(bucket_counts(&[0.5, 0.1, INF], &[1.0, 2.0, 3.0]));
        assert!(m.contains("strictly increasing"), "{m}");
        let m = input_message(bucket_counts(&[f64::NAN, INF], &[1.0, 2.0]));
        assert!(m.contains("not a number"), "{m}");
        let m = input_message(bucket_counts(&bounds, &[1.0, 5.0, 4.0]));
        assert!(m.contains("cumulative count decreases to 4 at bucket le=+Inf"), "{m}");
        let m = input_message(bucket_counts(&bounds, &[-1.0, 5.0, 6.0]));
        assert!(m.contains("negative or not finite"), "{m}");
        let m = input_message(bucket_counts(&bounds, &[1.0, f64::NAN, 6.0]));
        assert!(m.contains("negative or not finite"), "{m}");
        let m = input_message(bucket_counts(&[], &[]));
        assert!(m.contains("no buckets"), "{m}");
        let m = input_message(bucket_probabilities(&bounds, &[0.0, 0.0, 0.0]));
        assert!(m.contains("no observations"), "{m}");
    }

    #[test]
    fn window_counts_subtract_and_reject_resets() {
        let bounds = [1.0, 2.0, INF];
        assert_eq!(window_counts(&bounds, &[10.0, 20.0, 25.0], &[15.0, 30.0, 40.0]), Ok(vec![5.0, 5.0, 5.0]));
        // Total went up but bucket le=2 lost counts: a reset.
        let m = input_message(window_counts(&bounds, &[10.0, 20.0, 25.0], &[12.0, 13.0, 40.0]));
        assert!(m.contains("counter reset"), "{m}");
        assert!(m.contains("le=2"), "{m}");
        // After a restart everything restarts from 0.
        let m = input_message(window_counts(&bounds, &[10.0, 20.0, 25.0], &[1.0, 2.0, 3.0]));
        assert!(m.contains("counter reset"), "{m}");
    }

    #[test]
    fn psi_hand_computed() {
        // p = (0.5, 0.5), q = (0.25, 0.75), eps = 0.01, k = 2:
        // p' = (0.5, 0.5), q' = (0.26, 0.76) / 1.02.
        let r = psi(&[0.5, 0.5], &[0.25, 0.75], 0.01);
        let Ok(r) = r else { panic!("{r:?}") };
        assert!(close(r.value, 0.262_901_177_025_698_3, 1e-12), "{r:?}");
        assert!(close(r.contributions[0], 0.165_129_680_074_226_4, 1e-12));
        assert!(close(r.contributions[1], 0.097_771_496_951_471_9, 1e-12));
        // Counts are normalised: the same as probabilities.
        let counts = psi(&[50.0, 50.0], &[25.0, 75.0], 0.01);
        assert!(counts.is_ok_and(|c| close(c.value, r.value, 1e-12)));
        // Identical distributions: 0.
        assert!(psi(&[1.0, 2.0, 0.0], &[2.0, 4.0, 0.0], 1e-4).is_ok_and(|r| r.value == 0.0));
        // An empty bucket on one side stays finite thanks to smoothing.
        assert!(psi(&[1.0, 0.0], &[0.5, 0.5], 1e-4).is_ok_and(|r| r.value.is_finite()));
        assert!(psi(&[1.0], &[1.0], 0.0).is_err());
        assert!(psi(&[1.0, 2.0], &[1.0], 1e-4).is_err());
        assert!(psi(&[0.0, 0.0], &[1.0, 1.0], 1e-4).is_err());
    }

    #[test]
    fn ks_hand_computed() {
        // CDFs 0.1 0.4 1 1 and 0.3 0.6 1 1: D = 0.2, first at bucket 0.
        let r = ks(&[10.0, 30.0, 60.0, 0.0], &[30.0, 30.0, 40.0, 0.0]);
        let Ok(r) = r else { panic!("{r:?}") };
        assert!(close(r.statistic, 0.2, 1e-12));
        assert_eq!(r.bucket, 0);
        // n_e = 50, λ = (√50 + 0.12 + 0.11/√50) · 0.2 = 1.441325, Q(λ) = 0.031377.
        assert!(close(r.p_value, 0.031_376_652_153_072_53, 1e-9), "{r:?}");
        // Identical: D = 0, p = 1.
        assert!(ks(&[1.0, 2.0], &[2.0, 4.0]).is_ok_and(|r| r.statistic == 0.0 && r.p_value == 1.0));
    }

    #[test]
    fn kolmogorov_distribution_known_values() {
        for (lambda, q) in [
            (0.5, 0.963_945_243_664_875_1),
            (1.0, 0.269_999_671_677_354_56),
            (1.18, 0.123_453_809_429_765_7),
            (1.5, 0.022_217_962_616_525_127),
        ] {
            assert!(close(kolmogorov_q(lambda), q, 1e-9), "Q({lambda}) = {}", kolmogorov_q(lambda));
        }
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert_eq!(kolmogorov_q(1e-3), 1.0);
        assert_eq!(kolmogorov_q(2.9e-311), 1.0, "a subnormal statistic is no evidence, not NaN");
        assert_eq!(kolmogorov_q(f64::INFINITY), 0.0);
        assert!(kolmogorov_q(10.0) < 1e-80);
    }

    #[test]
    fn detector_hand_computed_significant_drift() {
        let bounds = [0.1, 0.5, 1.0, INF];
        let r = detector().evaluate(&bounds, &[10.0, 40.0, 100.0, 100.0], &[30.0, 60.0, 100.0, 100.0]);
        let Ok(r) = r else { panic!("{r:?}") };
        // PSI with eps = 1e-4 over 4 buckets: 0.219501 + 0 + 0.081044 + 0.
        assert!(close(r.psi, 0.300_545_353_510_080_66, 1e-12), "{r:?}");
        assert!(close(r.ks, 0.2, 1e-12));
        assert!(close(r.p_value, 0.031_376_652_153_072_53, 1e-9));
        assert_eq!(r.level, DriftLevel::Significant);
        assert!(r.drifted);
        assert_eq!(r.top_bucket, 0);
        assert_eq!(r.top_bucket_le, 0.1);
        assert!(close(r.top_bucket_contribution, 0.219_501_412_659_965_17, 1e-12));
        assert!(close(r.top_bucket_reference, 0.1, 1e-12));
        assert!(close(r.top_bucket_current, 0.3, 1e-12));
        assert_eq!((r.reference_total, r.current_total), (100.0, 100.0));
    }

    #[test]
    fn moderate_psi_needs_ks_confirmation() {
        let bounds = [1.0, INF];
        // p = (0.5, 0.5), q = (0.3, 0.7): PSI ≈ 0.1695 (moderate), D = 0.2.
        let small = detector().compare_counts(&bounds, &[10.0, 10.0], &[6.0, 14.0]);
        let Ok(small) = small else { panic!("{small:?}") };
        assert_eq!(small.level, DriftLevel::Moderate);
        assert!(close(small.psi, 0.169_4, 1e-3), "{small:?}");
        assert!(small.p_value > 0.5);
        assert!(!small.drifted, "20 observations cannot confirm a moderate shift");
        let large = detector().compare_counts(&bounds, &[1000.0, 1000.0], &[600.0, 1400.0]);
        let Ok(large) = large else { panic!("{large:?}") };
        assert_eq!(large.level, DriftLevel::Moderate);
        assert!(large.p_value < 1e-6);
        assert!(large.drifted);
        let stable = detector().compare_counts(&bounds, &[1000.0, 1000.0], &[980.0, 1020.0]);
        assert!(stable.is_ok_and(|s| s.level == DriftLevel::Stable && !s.drifted));
    }

    #[test]
    fn detector_errors_name_the_window() {
        let bounds = [1.0, INF];
        let m = input_message(detector().evaluate(&bounds, &[5.0, 3.0], &[1.0, 2.0]));
        assert!(m.starts_with("reference histogram:"), "{m}");
        let m = input_message(detector().evaluate(&bounds, &[1.0, 3.0], &[0.0, 0.0]));
        assert!(m.contains("no observations"), "{m}");
        let m = input_message(detector().compare_counts(&bounds, &[1.0, 3.0], &[1.0]));
        assert!(m.contains("2 buckets, but 2 reference and 1 current counts"), "{m}");
    }

    #[test]
    fn params_validate_names_parameter() {
        let base = DriftParams::default();
        let cases = [
            (DriftParams { psi_moderate: 0.0, ..base.clone() }, "psi_moderate"),
            (DriftParams { psi_significant: 0.05, ..base.clone() }, "psi_significant"),
            (DriftParams { ks_alpha: 1.0, ..base.clone() }, "ks_alpha"),
            (DriftParams { epsilon: 0.0, ..base.clone() }, "epsilon"),
            (DriftParams { epsilon: f64::NAN, ..base.clone() }, "epsilon"),
        ];
        for (p, name) in cases {
            match DriftDetector::new(p) {
                Err(Error::InvalidParam { name: n, message }) => {
                    assert_eq!(n, name);
                    assert!(message.contains("must be"), "{message}");
                }
                other => panic!("expected InvalidParam for {name}, got {other:?}"),
            }
        }
        let p: std::result::Result<DriftParams, _> = serde_json::from_str(r#"{"psi_moderate": 0.2}"#);
        assert!(p.is_ok_and(|p| p.psi_moderate == 0.2 && p.psi_significant == 0.25));
        assert!(serde_json::from_str::<DriftParams>(r#"{"psi": 0.2}"#).is_err());
    }

    #[test]
    fn quality_against_baseline() {
        use QualityGoal::{HigherIsBetter, LowerIsBetter};
        // Accuracy 0.90 -> 0.84 is a 6.7 % drop: degraded at 5 %, not at 10 %.
        let q = quality_vs_baseline(0.84, 0.90, 0.05, HigherIsBetter);
        let Ok(q) = q else { panic!("{q:?}") };
        assert!(q.degraded);
        assert!(q.relative_change.is_some_and(|r| close(r, -0.066_666_666_666_666_7, 1e-12)));
        assert!(quality_vs_baseline(0.84, 0.90, 0.10, HigherIsBetter).is_ok_and(|q| !q.degraded));
        // Better than baseline is never degraded.
        assert!(quality_vs_baseline(0.95, 0.90, 0.0, HigherIsBetter).is_ok_and(|q| !q.degraded));
        // Error rate 2 % -> 3 % is +50 %.
        let e = quality_vs_baseline(0.03, 0.02, 0.2, LowerIsBetter);
        assert!(e.is_ok_and(|e| e.degraded && e.relative_change.is_some_and(|r| close(r, 0.5, 1e-12))));
        // Zero baseline: any worsening counts, no relative change.
        let z = quality_vs_baseline(0.001, 0.0, 0.5, LowerIsBetter);
        assert!(z.is_ok_and(|z| z.degraded && z.relative_change.is_none()));
        assert!(matches!(
            quality_vs_baseline(0.5, 0.5, -0.1, LowerIsBetter),
            Err(Error::InvalidParam { name: "tolerance", .. })
        ));
        assert!(matches!(quality_vs_baseline(f64::NAN, 0.5, 0.1, LowerIsBetter), Err(Error::InvalidInput { .. })));
    }
}
