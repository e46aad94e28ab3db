//! Streaming peaks-over-threshold calibration (SPOT, Siffer et al., "Anomaly Detection in
//! Streams with Extreme Value Theory", KDD 2017).
//!
//! A fixed z threshold means a different false-alarm rate on every series: a heavy-tailed
//! latency crosses z = 4 every hour, a smooth gauge never does. SPOT sets the threshold per
//! series from the series' own score distribution so that the probability of exceeding it is
//! about `q`, whatever the shape of the tail:
//!
//! 1. **Calibration**: the first `calibration` scores. The initial threshold `t` is their
//!    `level` quantile; the excesses `s - t` of the scores above it are the *peaks*.
//! 2. **Fit**: a Generalized Pareto distribution to the peaks by the method of moments
//!    (`γ = ½(1 - m²/v)`, `σ = ½·m·(m²/v + 1)`; O(1) per update from running sums).
//! 3. **Threshold**: `z_q = t + σ/γ·((q·n/N_t)^(-γ) - 1)` (`t - σ·ln(q·n/N_t)` when `γ ≈ 0`), with
//!    `n` the number of scores seen and `N_t` the number of peaks.
//! 4. **Stream**: a score above `z_q` is an alarm; a score above `t` is a new peak and the
//!    threshold is updated. Unlike the paper, the first score of an alarm enters the fit too
//!    (only the rest of an ongoing event is kept out): leaving every alarm out truncates the
//!    tail at `z_q`, which lowers the next fit, which truncates more; on a stationary
//!    exponential stream that spiral ends with several times the intended alarm rate.
//!
//! Memory is bounded: at most `max_peaks` peaks are kept, and `n` counts the scores since
//! the oldest kept peak, so the rate `N_t / n` stays that of the recent past.

use std::collections::VecDeque;

/// What SPOT made of one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still collecting the calibration window.
    Calibrating,
    /// Below the alarm threshold.
    Normal,
    /// Above the alarm threshold.
    Alarm,
}

/// The calibrator state; see the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct Spot {
    q: f64,
    level: f64,
    calibration: usize,
    max_peaks: usize,
    calib: Vec<f64>,
    /// Initial threshold (NaN until calibrated).
    t: f64,
    /// `(score index, excess)` of the kept peaks.
    peaks: VecDeque<(u64, f64)>,
    sum: f64,
    sum_sq: f64,
    /// Index of the next score.
    index: u64,
    /// Scores before this index are no longer counted in `n`.
    start: u64,
    /// Current alarm threshold.
    z: f64,
}

impl Spot {
    pub(crate) fn new(q: f64, level: f64, calibration: usize, max_peaks: usize) -> Self {
        Self {
            q,
            level,
            calibration,
            max_peaks,
            calib: Vec::with_capacity(calibration),
            t: f64::NAN,
            peaks: VecDeque::with_capacity(max_peaks),
            sum: 0.0,
            sum_sq: 0.0,
            index: 0,
            start: 0,
            z: f64::NAN,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.q, self.level, self.calibration, self.max_peaks);
    }

    /// Retained values (calibration scores or peaks).
    pub(crate) fn retained(&self) -> usize {
        self.calib.len() + self.peaks.len()
    }

    /// Upper bound on [`Self::retained`].
    pub(crate) fn max_retained(&self) -> usize {
        self.calibration.max(self.max_peaks)
    }

    /// The peak threshold `t` (NaN while calibrating).
    pub(crate) fn peak_threshold(&self) -> f64 {
        self.t
    }

    /// The alarm threshold `z_q` (NaN while calibrating).
    pub(crate) fn threshold(&self) -> f64 {
        self.z
    }

    fn add_peak(&mut self, index: u64, excess: f64) {
        if self.peaks.len() == self.max_peaks {
            if let Some((i, e)) = self.peaks.pop_front() {
                self.sum -= e;
                self.sum_sq -= e * e;
                self.start = i + 1;
            }
        }
        self.peaks.push_back((index, excess));
        self.sum += excess;
        self.sum_sq += excess * excess;
    }

    fn refit(&mut self) {
        let k = self.peaks.len() as f64;
        let n = (self.index + 1 - self.start) as f64;
        if k < 1.0 {
            self.z = self.t;
            return;
        }
        let m = (self.sum / k).max(0.0);
        let v = (self.sum_sq / k - m * m).max(0.0);
        let r = (self.q * n / k).min(1.0);
        let z = if v <= 1e-12 * m * m || m <= 0.0 {
            // All peaks (nearly) equal: no tail to extrapolate, the largest seen is the bound.
            m
        } else {
            let ratio = m * m / v;
            let gamma = (0.5 * (1.0 - ratio)).clamp(-10.0, 0.49);
            let sigma = 0.5 * m * (ratio + 1.0);
            if gamma.abs() < 1e-6 {
                -sigma * r.ln()
            } else {
                sigma / gamma * (r.powf(-gamma) - 1.0)
            }
        };
        self.z = if z.is_finite() { self.t + z.max(0.0) } else { f64::MAX };
    }

    /// Feed one score (finite, `>= 0`); `in_event`: the previous point was an alarm, so an
    /// alarm now is part of the same event and stays out of the fit.
    pub(crate) fn update(&mut self, s: f64, in_event: bool) -> Verdict {
        let verdict = if self.t.is_nan() {
            self.calib.push(s);
            if self.calib.len() >= self.calibration {
                let mut sorted = std::mem::take(&mut self.calib);
                sorted.sort_unstable_by(f64::total_cmp);
                let pos = ((sorted.len() as f64 - 1.0) * self.level).round() as usize;
                self.t = sorted.get(pos.min(sorted.len().saturating_sub(1))).copied().unwrap_or(0.0);
                let base = self.index + 1 - sorted.len() as u64;
                self.start = base;
                let t = self.t;
                for &v in sorted.iter().filter(|&&v| v > t) {
                    self.add_peak(base, v - t);
                }
                self.refit();
            }
            Verdict::Calibrating
        } else {
            let alarm = s > self.z;
            if s > self.t && !(alarm && in_event) {
                self.add_peak(self.index, s - self.t);
                self.refit();
            }
            if alarm {
                Verdict::Alarm
            } else {
                Verdict::Normal
            }
        };
        self.index += 1;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::XorShift64;

    #[test]
    fn exceedance_rate_is_close_to_the_risk_on_exponential_scores() {
        let mut rng = XorShift64::new(7);
        let q = 1e-3;
        let mut spot = Spot::new(q, 0.98, 2000, 2000);
        let (mut alarms, mut judged) = (0u32, 0u32);
        for _ in 0..200_000 {
            let s = -(1.0 - rng.next_f64()).ln();
            match spot.update(s, false) {
                Verdict::Alarm => alarms += 1,
                Verdict::Normal => {}
                Verdict::Calibrating => continue,
            }
            judged += 1;
        }
        let rate = f64::from(alarms) / f64::from(judged);
        assert!(rate > q / 3.0 && rate < q * 3.0, "{rate}");
        // ln(1/q) = 6.9 for an exponential tail.
        assert!((spot.threshold() - 6.9).abs() < 1.0, "{}", spot.threshold());
        assert!(spot.retained() <= spot.max_retained());
    }

    #[test]
    fn a_constant_score_never_alarms_and_a_jump_does() {
        let mut spot = Spot::new(1e-3, 0.98, 100, 100);
        for _ in 0..500 {
            assert_ne!(spot.update(1.0, false), Verdict::Alarm);
        }
        assert_eq!(spot.update(2.0, false), Verdict::Alarm);
    }
}
