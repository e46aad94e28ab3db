//! Seasonal periods: the M4 seasonality test, autocorrelations, classical decomposition indices,
//! period detection among candidates, and the sampling interval that turns a day or a week
//! into points.

use super::*;

/// The M4 seasonality test: with `n >= 3m` and `m <= ⌊10·log10 n⌋` (R's default `lag.max`),
/// the series is seasonal when `|r_m| > 1.645 · sqrt((1 + 2 Σ_{k<m} r_k²) / n)`, `r` being
/// the sample autocorrelation. Non-finite input is never seasonal.
pub fn seasonality_test(y: &[f64], m: usize) -> bool {
    let n = y.len();
    if m < 2 || n < 3 * m || y.iter().any(|v| !v.is_finite()) {
        return false;
    }
    let lag_max = (10.0 * (n as f64).log10()).floor() as usize;
    if m > lag_max.min(n - 1) {
        return false;
    }
    let acf = autocorrelations(y, m);
    let Some(&rm) = acf.get(m) else {
        return false;
    };
    let sum: f64 = acf.iter().skip(1).take(m - 1).map(|r| r * r).sum();
    let limit = 1.645 * ((1.0 + 2.0 * sum) / n as f64).sqrt();
    rm.abs() > limit
}

/// Sample autocorrelations `r_0..=r_max_lag` (R's `acf`): lag-`k` autocovariance with divisor
/// `n` over the variance. Empty when the series is constant or too short.
pub(super) fn autocorrelations(y: &[f64], max_lag: usize) -> Vec<f64> {
    let n = y.len();
    if n < 2 {
        return Vec::new();
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let d: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let c0: f64 = d.iter().map(|v| v * v).sum();
    if !(c0.is_finite() && c0 > 0.0) {
        return Vec::new();
    }
    (0..=max_lag.min(n - 1))
        .map(|k| {
            let ck: f64 = d.iter().zip(d.iter().skip(k)).map(|(a, b)| a * b).sum();
            ck / c0
        })
        .collect()
}

pub(super) fn autocorrelation_at(y: &[f64], lag: usize) -> Option<f64> {
    let n = y.len();
    if lag == 0 || lag >= n {
        return None;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let c0: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    if !(c0.is_finite() && c0 > 0.0) {
        return None;
    }
    let ck: f64 = y.iter().zip(y.iter().skip(lag)).map(|(a, b)| (a - mean) * (b - mean)).sum();
    let r = ck / c0;
    r.is_finite().then_some(r)
}

/// Seasonal indices of R's `decompose(type = "multiplicative")` for period `m`, one per point
/// of `y`: the trend is the centred moving average (weights `[½, 1, …, 1, ½] / m` for even
/// `m`, `1/m` for odd), the index of a position in the cycle is the mean of `y / trend` over
/// the cycles where the trend exists, normalised to mean 1. Positions count from the first
/// point. `None` when `y` has fewer than two cycles or a ratio is not finite.
pub fn classical_multiplicative_indices(y: &[f64], m: usize) -> Option<Vec<f64>> {
    let n = y.len();
    if m < 2 || n < 2 * m {
        return None;
    }
    let weights: Vec<f64> = if m.is_multiple_of(2) {
        let mut w = vec![1.0 / m as f64; m + 1];
        if let Some(first) = w.first_mut() {
            *first = 0.5 / m as f64;
        }
        if let Some(last) = w.last_mut() {
            *last = 0.5 / m as f64;
        }
        w
    } else {
        vec![1.0 / m as f64; m]
    };
    let half = weights.len() / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in half..n.saturating_sub(weights.len() - 1 - half) {
        let window = y.get(t - half..t - half + weights.len())?;
        let trend: f64 = window.iter().zip(&weights).map(|(v, w)| v * w).sum();
        let ratio = y.get(t)? / trend;
        if !ratio.is_finite() {
            return None;
        }
        *sums.get_mut(t % m)? += ratio;
        *counts.get_mut(t % m)? += 1;
    }
    let mut figure = Vec::with_capacity(m);
    for (s, c) in sums.iter().zip(&counts) {
        if *c == 0 {
            return None;
        }
        figure.push(s / *c as f64);
    }
    let mean = figure.iter().sum::<f64>() / m as f64;
    if !(mean.is_finite() && mean > 0.0) {
        return None;
    }
    Some((0..n).map(|t| figure.get(t % m).copied().unwrap_or(1.0) / mean).collect())
}

/// Seasonal periods of `y` among `candidates` (see the [module docs](self)), ascending. Only
/// candidates with at least two full cycles in `y` are considered; non-finite or constant
/// input has no period.
pub fn detect_periods(y: &[f64], candidates: &[usize]) -> Vec<usize> {
    let n = y.len();
    let mut cands: Vec<usize> = candidates.iter().copied().filter(|&c| c >= 2 && c.saturating_mul(2) <= n).collect();
    cands.sort_unstable();
    cands.dedup();
    if cands.is_empty() || y.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    let first = y.first().copied().unwrap_or(0.0);
    if y.iter().all(|&v| v == first) {
        return Vec::new();
    }
    let scaler = Scaler::new(y, false);
    let z: Vec<f64> = y.iter().map(|&v| scaler.forward(v)).collect();
    let mut found: Vec<usize> = Vec::new();
    if n >= PERIODOGRAM_MIN_POINTS {
        let largest = cands.last().copied().unwrap_or(2);
        let max_period = (largest + largest / 4 + 1).min(n / 2).max(4);
        let max_period = u32::try_from(max_period).unwrap_or(u32::MAX);
        let hints = catch_unwind(AssertUnwindSafe(|| {
            PeriodogramDetector::builder().min_period(2).max_period(max_period).threshold(0.5).build().detect(&z)
        }))
        .unwrap_or_default();
        for hint in hints {
            let hint = hint as f64;
            let nearest = cands
                .iter()
                .copied()
                .min_by(|&a, &b| ((a as f64 - hint).abs() / a as f64).total_cmp(&((b as f64 - hint).abs() / b as f64)));
            if let Some(c) = nearest {
                if (c as f64 - hint).abs() <= SNAP_TOLERANCE * c as f64 && !found.contains(&c) {
                    found.push(c);
                }
            }
        }
    }
    found.sort_unstable();
    for &c in &cands {
        if found.contains(&c) {
            continue;
        }
        let base = found.iter().copied().filter(|&s| s < c && c.is_multiple_of(s)).max();
        let residual: Vec<f64> = match base {
            // The shorter season repeats within `c`: compare seasons of it instead.
            Some(b) => z.iter().skip(b).zip(&z).map(|(a, b)| a - b).collect(),
            None => detrend(&z, c),
        };
        if autocorrelation_at(&residual, c).is_some_and(|r| r >= DETECT_MIN_ACF) {
            found.push(c);
            found.sort_unstable();
        }
    }
    found
}

/// `y` minus its centred moving average over `width` points (shorter at the ends): removes
/// level and trend, keeps a season of period `width`.
pub(super) fn detrend(y: &[f64], width: usize) -> Vec<f64> {
    let n = y.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    let mut acc = 0.0;
    for v in y {
        acc += v;
        prefix.push(acc);
    }
    let half = width / 2;
    (0..n)
        .map(|t| {
            let lo = t.saturating_sub(half);
            let hi = (t + half + 1).min(n);
            let sum = prefix.get(hi).copied().unwrap_or(0.0) - prefix.get(lo).copied().unwrap_or(0.0);
            let mean = sum / (hi - lo).max(1) as f64;
            y.get(t).copied().unwrap_or(0.0) - mean
        })
        .collect()
}

/// Milliseconds in a day.
pub(super) const DAY_MS: i64 = 86_400_000;

/// Seasonal period candidates for a series sampled every `step_ms`: one day and one week in
/// points, those of at least 2 points. Empty when the step is not positive.
pub fn calendar_periods(step_ms: i64) -> Vec<usize> {
    if step_ms <= 0 {
        return Vec::new();
    }
    let day = (DAY_MS as f64 / step_ms as f64).round();
    [day, 7.0 * day].into_iter().filter(|p| (2.0..=1e9).contains(p)).map(|p| p as usize).collect()
}

/// Median spacing of the most recent timestamps, so that detectors can turn durations
/// ("a day", "the next 6 hours") into points. Keeps at most [`SpacingTracker::CAPACITY`]
/// positive differences; repeated or decreasing timestamps are ignored.
#[derive(Debug, Clone, Default)]
pub struct SpacingTracker {
    pub(super) last: Option<i64>,
    pub(super) deltas: VecDeque<i64>,
}

impl SpacingTracker {
    /// Number of recent differences the median is taken over.
    pub const CAPACITY: usize = 31;

    /// Record a timestamp (milliseconds).
    pub fn observe(&mut self, timestamp_ms: i64) {
        if let Some(prev) = self.last {
            if let Some(d) = timestamp_ms.checked_sub(prev).filter(|&d| d > 0) {
                if self.deltas.len() >= Self::CAPACITY {
                    self.deltas.pop_front();
                }
                self.deltas.push_back(d);
            }
        }
        self.last = Some(timestamp_ms);
    }

    /// Median of the recorded differences, if any.
    pub fn median_ms(&self) -> Option<i64> {
        let mut d: Vec<i64> = self.deltas.iter().copied().collect();
        d.sort_unstable();
        d.get(d.len() / 2).copied()
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        self.last = None;
        self.deltas.clear();
    }
}
