//! Streaming spectral residual (Ren et al., "Time-Series Anomaly Detection Service at
//! Microsoft", KDD 2019), causal: each point is judged from the window that ends at it.
//!
//! Spectral residual needs no training and no scale: it looks for points that stand out of
//! the series' own log-amplitude spectrum. It is kept as a selectable detector and as one of
//! the signals of `auto`, and it is the published baseline that `warden bench anomaly` runs
//! beside every other detector.
//!
//! # Algorithm, per point (as in Microsoft's `msanomalydetector`)
//!
//! 1. Take the last `window` finite values, this point last. Append `extend` copies of an
//!    estimate of the next value (the value two points back plus the sum of the slopes from
//!    the last `look_ahead` points to the previous one), so that the point under test is not
//!    at the edge of the transform.
//! 2. FFT; amplitude `A`, log-amplitude `L = ln A`; the spectral residual is `L` minus its
//!    causal moving average over `mag_window` bins; the saliency map `S` is the magnitude of the
//!    inverse FFT of `exp(residual + i·phase)`. Bins whose amplitude is below `1e-8` times the
//!    largest are zeroed (upstream uses an absolute `1e-8`; relative keeps the result independent
//!    of the series' scale).
//! 3. `score = |S_t - mean(S)| / mean(S)` at this point, with `mean` the causal average of the
//!    saliency over the last `score_window` positions.
//! 4. The point is anomalous when `score > threshold` (upstream: 0.3 on `score / 10`, i.e. 3).
//!    The detection score is `score / (score + threshold)`.
//!
//! Memory is `window` values and the FFT buffers; each point costs two FFTs of
//! `window + extend` points.

use std::collections::VecDeque;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::common::{self, join_notes, score, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Explanation};
use crate::error::Result;

/// Largest accepted `window`.
pub const MAX_WINDOW: usize = 4096;

/// Number of points the next-value estimate looks back on (upstream's `look_ahead`).
const LOOK_AHEAD: usize = 5;
/// Amplitudes below this fraction of the largest are treated as zero.
const EPS: f64 = 1e-8;

/// Parameters of [`SpectralResidual`]; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpectralResidualParams {
    /// Points in the sliding window, this point included (default 64).
    pub window: usize,
    /// Estimated points appended after the window (default 5).
    pub extend: usize,
    /// Bins of the moving average of the log-amplitude spectrum (default 3).
    pub mag_window: usize,
    /// Positions of the moving average of the saliency map (default 40).
    pub score_window: usize,
    /// Score above which a point is anomalous (default 3).
    pub threshold: f64,
}

impl Default for SpectralResidualParams {
    fn default() -> Self {
        Self { window: 64, extend: 5, mag_window: 3, score_window: 40, threshold: 3.0 }
    }
}

impl SpectralResidualParams {
    /// `window` in 12 ..= [`MAX_WINDOW`], `extend` in 1 ..= `window`, `mag_window` >= 1,
    /// `score_window` in 1 ..= `window`, `threshold` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, LOOK_AHEAD + 7, MAX_WINDOW)?;
        common::between_param("extend", self.extend, 1, "window", self.window)?;
        common::between("mag_window", self.mag_window, 1, self.window)?;
        common::between_param("score_window", self.score_window, 1, "window", self.window)?;
        common::positive("threshold", self.threshold)
    }
}

/// The transform of one window, with its buffers and FFT plans (shared by `auto`).
pub(crate) struct Saliency {
    window: usize,
    extend: usize,
    mag_window: usize,
    score_window: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    buf: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    real: Vec<f64>,
}

impl std::fmt::Debug for Saliency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saliency").field("window", &self.window).field("extend", &self.extend).finish()
    }
}

impl Clone for Saliency {
    fn clone(&self) -> Self {
        Self::new(self.window, self.extend, self.mag_window, self.score_window)
    }
}

impl Saliency {
    pub(crate) fn new(window: usize, extend: usize, mag_window: usize, score_window: usize) -> Self {
        let n = window + extend;
        let mut planner = FftPlanner::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scratch_len = forward.get_inplace_scratch_len().max(inverse.get_inplace_scratch_len());
        Self {
            window,
            extend,
            mag_window,
            score_window,
            forward,
            inverse,
            buf: vec![Complex::new(0.0, 0.0); n],
            scratch: vec![Complex::new(0.0, 0.0); scratch_len],
            real: vec![0.0; n],
        }
    }

    /// Causal moving average of `v` over `n` positions, at position `i`.
    fn causal_mean(v: &[f64], i: usize, n: usize) -> f64 {
        let lo = (i + 1).saturating_sub(n);
        let s: f64 = v[lo..=i].iter().sum();
        s / (i + 1 - lo) as f64
    }

    /// The spectral-residual score of the last value of `values` (exactly `window` finite
    /// values, oldest first). Always finite and `>= 0`.
    pub(crate) fn score(&mut self, values: &VecDeque<f64>) -> f64 {
        let w = self.window;
        let n = w + self.extend;
        // Centre on the window's mean: the transform is shift-sensitive only through the DC
        // bin, and centring keeps large offsets from swamping the precision.
        let mean = values.iter().sum::<f64>() / w as f64;
        for (r, v) in self.real.iter_mut().zip(values.iter()) {
            *r = v - mean;
        }
        // Next-value estimate from the LOOK_AHEAD + 1 values before the last one.
        let tail = &self.real[w - LOOK_AHEAD - 2..w - 1];
        let last = tail[tail.len() - 1];
        let m = tail.len();
        let slopes: f64 = tail[..m - 1].iter().enumerate().map(|(i, v)| (last - v) / (m - 1 - i) as f64).sum();
        let next = tail[1] + slopes;
        for r in &mut self.real[w..n] {
            *r = next;
        }
        for (b, &r) in self.buf.iter_mut().zip(&self.real) {
            *b = Complex::new(r, 0.0);
        }
        self.forward.process_with_scratch(&mut self.buf, &mut self.scratch);
        // Amplitudes and log-amplitudes (in `real`).
        let max_amp = self.buf.iter().map(|c| c.norm()).fold(0.0, f64::max);
        let floor = (max_amp * EPS).max(f64::MIN_POSITIVE);
        for (r, c) in self.real.iter_mut().zip(&self.buf) {
            let a = c.norm();
            *r = if a <= floor { f64::NEG_INFINITY } else { a.ln() };
        }
        // Residual = log-amplitude minus its causal moving average (zeroed bins count as 0).
        let logs: Vec<f64> = self.real.iter().map(|&l| if l.is_finite() { l } else { 0.0 }).collect();
        for i in 0..n {
            let c = self.buf[i];
            if self.real[i].is_finite() {
                let avg = Self::causal_mean(&logs, i, self.mag_window);
                let spectral = (logs[i] - avg).exp();
                self.buf[i] = c * (spectral / c.norm());
            } else {
                self.buf[i] = Complex::new(0.0, 0.0);
            }
        }
        self.inverse.process_with_scratch(&mut self.buf, &mut self.scratch);
        for (r, c) in self.real.iter_mut().zip(&self.buf) {
            *r = c.norm();
        }
        let i = w - 1;
        let avg = Self::causal_mean(&self.real, i, self.score_window);
        let s = (self.real[i] - avg).abs() / avg.max(f64::MIN_POSITIVE);
        if s.is_finite() && avg > 0.0 {
            s
        } else {
            0.0
        }
    }
}

/// Streaming spectral-residual detector; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SpectralResidual {
    params: SpectralResidualParams,
    history: VecDeque<f64>,
    saliency: Saliency,
    timestamps: TimestampOrder,
}

impl SpectralResidual {
    /// Build a detector; fails if `params` do not validate.
    pub fn new(params: SpectralResidualParams) -> Result<Self> {
        params.validate()?;
        let saliency = Saliency::new(params.window, params.extend, params.mag_window, params.score_window);
        Ok(Self {
            history: VecDeque::with_capacity(params.window),
            params,
            saliency,
            timestamps: TimestampOrder::default(),
        })
    }
}

impl Detector for SpectralResidual {
    fn name(&self) -> &'static str {
        "spectral_residual"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<&str> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        if !value.is_finite() {
            let explanation = Explanation { history: self.history.len(), ..Explanation::default() };
            return common::no_data(timestamp_ms, value, &notes, None, explanation);
        }
        if self.history.len() == self.params.window {
            self.history.pop_front();
        }
        // Values are clamped so that the transform stays finite.
        self.history.push_back(value.clamp(-1e150, 1e150));
        let history = self.history.len() - 1;
        if self.history.len() < self.params.window {
            notes.push("warming up");
            return Detection::unjudged(
                timestamp_ms,
                value,
                DetectionState::WarmingUp,
                Explanation { history, note: join_notes(&notes), ..Explanation::default() },
            );
        }
        let s = self.saliency.score(&self.history);
        let threshold = self.params.threshold;
        let anomalous = s > threshold;
        Detection {
            timestamp_ms,
            value,
            score: score(s, threshold),
            expected: None,
            lower: None,
            upper: None,
            deviation: Deviation::None,
            state: if anomalous { DetectionState::Anomalous } else { DetectionState::Normal },
            explanation: Explanation {
                z_score: Some(s),
                threshold: Some(threshold),
                consecutive: u32::from(anomalous),
                history,
                note: join_notes(&notes),
                ..Explanation::default()
            },
        }
    }

    fn reset(&mut self) {
        self.history.clear();
        self.timestamps.reset();
    }

    fn max_retained_points(&self) -> usize {
        self.params.window
    }

    fn retained_points(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness;

    fn make() -> Box<dyn Detector> {
        Box::new(SpectralResidual::new(SpectralResidualParams::default()).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn passes_the_invariant_checks() {
        // Not the step check: with its fixed threshold, spectral residual flags some points of
        // pure noise (that is the baseline's known weakness, measured by `warden bench anomaly`).
        for (k, points) in harness::edge_case_series().iter().enumerate() {
            harness::check_invariants(&make, points).unwrap_or_else(|e| panic!("edge case {k}: {e}"));
        }
        harness::check_constant_series(&make).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_spike_on_a_sine_stands_out_and_the_sine_does_not() {
        let mut d = make();
        let mut max_normal: f64 = 0.0;
        for i in 0..400 {
            let x = (i as f64 * 0.3).sin() * 10.0 + 100.0;
            let det = d.update(i, x);
            if i > 100 {
                max_normal = max_normal.max(det.explanation.z_score.unwrap_or(0.0));
            }
        }
        let spike = d.update(400, 160.0);
        assert!(spike.is_anomaly(), "{spike:?}");
        let z = spike.explanation.z_score.unwrap_or(0.0);
        assert!(z > 2.0 * max_normal, "{z} vs {max_normal}");
        // The same series at another scale gives the same scores.
        let mut a = make();
        let mut b = make();
        for i in 0..200 {
            let x = ((i * 7919) % 13) as f64;
            let sa = a.update(i, x).score;
            let sb = b.update(i, x * 1000.0 + 5e6).score;
            assert!((sa - sb).abs() < 1e-6, "{i}: {sa} vs {sb}");
        }
    }
}
