//! `auto`: the default detector. A scale-free score, calibrated per series by extreme-value
//! theory.
//!
//! A watch that names no detector must work on series nobody has looked at: latencies,
//! counters, ratios, flat gauges, at any scale, minute or hourly. Fixed thresholds do not
//! carry over between such series (a z of 4 is noise on one and an outage on another), so
//! `auto` separates *scoring* from *alerting*:
//!
//! * **Score** (scale-free, `>= 0`): the larger of
//!   - the robust deviation `|x - median| / scale` over the previous `window` points, with
//!     `scale = max(1.4826·MAD, 1.2533·mean absolute deviation, min_relative_scale·|median|)`
//!     (the mean absolute deviation keeps sparse series, whose MAD is 0, from scoring every
//!     blip as infinite);
//!   - `sr_weight` times the spectral-residual score over the last `sr_window` points
//!     (see [`crate::spectral`]), which catches short spikes and shape changes that a rolling
//!     median misses.
//! * **Flag rule**: SPOT ([`crate::spot`]) on that score: after a calibration window of
//!   `calibration` scores, a point is anomalous when its score exceeds the peaks-over-threshold
//!   bound `z_q` for risk `q` (the probability of a false alarm per point, if the calibration
//!   window was normal) and `min_score`. The bound keeps adapting as new peaks arrive.
//! * **Events merged**: once anomalous, the points that follow stay anomalous while their
//!   score stays above SPOT's peak threshold `t` (hysteresis), so one incident is one event
//!   rather than a flickering series of them.
//! * **Warm-up is "no data"**: until the windows are full and the calibration is done, points
//!   are [`WarmingUp`](DetectionState::WarmingUp), never `Normal`.
//!
//! `score` is `s / (s + threshold)`: 0.5 at the alarm threshold. `expected` is the median;
//! `lower`/`upper` is the band the robust deviation alone would accept (the spectral part can
//! flag a point inside it).
//!
//! Memory: `window` + `sr_window` values, the FFT buffers and at most
//! `max(calibration, 1000)` scores of the calibrator. Each point costs a sorted insert and
//! two FFTs of `sr_window + 5` points.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, in_direction, join_notes, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation};
use crate::error::Result;
use crate::robust::{sorted_mad, sorted_median, SortedWindow};
use crate::spectral::Saliency;
use crate::spot::{Spot, Verdict};

/// Largest accepted `window`, `sr_window` and `calibration`.
pub const MAX_WINDOW: usize = 20_000;
/// Peaks kept by the calibrator.
const MAX_PEAKS: usize = 1000;

/// Parameters of [`Auto`]; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoParams {
    /// Previous points of the robust baseline (default 120, chosen leave-one-data-set-out).
    pub window: usize,
    /// Points of the spectral-residual window (default 64).
    pub sr_window: usize,
    /// Weight of the spectral-residual score; 0 turns it off (default 1).
    pub sr_weight: f64,
    /// Risk: target probability that a normal point is flagged (default 1e-3).
    pub q: f64,
    /// Quantile of the calibration scores used as SPOT's peak threshold (default 0.98).
    pub level: f64,
    /// Scores collected before the first judgement (default 400).
    pub calibration: usize,
    /// Smallest score that can be flagged, whatever the calibration says (default 4).
    pub min_score: f64,
    /// Keep an alarm while the score stays above the peak threshold (default true).
    pub hold: bool,
    /// Scale floor as a fraction of `|median|` (default 0.001).
    pub min_relative_scale: f64,
    /// Which deviations count (default both).
    pub direction: Direction,
}

impl Default for AutoParams {
    fn default() -> Self {
        Self {
            window: 120,
            sr_window: 64,
            sr_weight: 1.0,
            q: 1e-3,
            level: 0.98,
            calibration: 400,
            min_score: 4.0,
            hold: true,
            min_relative_scale: 0.001,
            direction: Direction::Both,
        }
    }
}

impl AutoParams {
    /// `window` in 3 ..= [`MAX_WINDOW`], `sr_window` in 12 ..= [`MAX_WINDOW`], `sr_weight`
    /// finite and >= 0, `q` in (0, 1), `level` in (0, 1), `calibration` in 10 ..= [`MAX_WINDOW`],
    /// `min_score` and `min_relative_scale` finite and >= 0.
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, 3, MAX_WINDOW)?;
        common::between("sr_window", self.sr_window, 12, MAX_WINDOW)?;
        common::non_negative("sr_weight", self.sr_weight)?;
        common::strictly_between("q", self.q, 0.0, 1.0)?;
        common::strictly_between("level", self.level, 0.0, 1.0)?;
        common::between("calibration", self.calibration, 10, MAX_WINDOW)?;
        common::non_negative("min_score", self.min_score)?;
        common::non_negative("min_relative_scale", self.min_relative_scale)
    }
}

/// The default detector; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Auto {
    params: AutoParams,
    window: SortedWindow,
    sr_history: VecDeque<f64>,
    saliency: Option<Saliency>,
    spot: Spot,
    in_alarm: bool,
    consecutive: u32,
    timestamps: TimestampOrder,
}

impl Auto {
    /// Build a detector; fails if `params` do not validate.
    pub fn new(params: AutoParams) -> Result<Self> {
        params.validate()?;
        let saliency =
            (params.sr_weight > 0.0).then(|| Saliency::new(params.sr_window, 5, 3, 40.min(params.sr_window)));
        Ok(Self {
            window: SortedWindow::new(params.window),
            sr_history: VecDeque::with_capacity(params.sr_window),
            saliency,
            spot: Spot::new(params.q, params.level, params.calibration, MAX_PEAKS),
            in_alarm: false,
            consecutive: 0,
            timestamps: TimestampOrder::default(),
            params,
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &AutoParams {
        &self.params
    }

    /// Median, scale and signed robust deviation of `value` against the history.
    fn robust(&self, value: f64) -> Option<(f64, f64, f64)> {
        let sorted = self.window.sorted();
        let median = sorted_median(sorted)?;
        let mad = sorted_mad(sorted, median)?;
        let mean_ad = sorted.iter().map(|v| (v - median).abs()).sum::<f64>() / sorted.len() as f64;
        let scale = (1.4826 * mad).max(1.2533 * mean_ad).max(self.params.min_relative_scale * median.abs()).max(1e-12);
        let z = clamp_finite((value - median) / scale);
        Some((median, clamp_finite(scale), z))
    }

    fn push(&mut self, value: f64) {
        self.window.push(value);
    }
}

impl Detector for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<&str> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        if !value.is_finite() {
            let explanation = Explanation { history: self.window.len(), ..Explanation::default() };
            return common::no_data(timestamp_ms, value, &notes, None, explanation);
        }
        let value_c = value.clamp(-1e150, 1e150);
        let history = self.window.len();
        let robust = if history >= self.params.window { self.robust(value_c) } else { None };
        if self.saliency.is_some() {
            if self.sr_history.len() == self.params.sr_window {
                self.sr_history.pop_front();
            }
            self.sr_history.push_back(value_c);
        }
        let sr = match self.saliency.as_mut() {
            Some(s) if self.sr_history.len() == self.params.sr_window => Some(s.score(&self.sr_history)),
            Some(_) => None,
            None => Some(0.0),
        };
        self.push(value_c);
        let (Some((median, scale, z)), Some(sr)) = (robust, sr) else {
            notes.push("warming up");
            return Detection::unjudged(
                timestamp_ms,
                value,
                DetectionState::WarmingUp,
                Explanation { history, note: join_notes(&notes), ..Explanation::default() },
            );
        };
        let z_dir = in_direction(self.params.direction, z);
        let sr_dir = if z_dir > 0.0 || z == 0.0 { sr } else { 0.0 };
        let s = z_dir.max(self.params.sr_weight * sr_dir);
        // The bounds this point is judged against are those before it: `update` may refit the
        // tail with this very score, and judging it against a bound that already contains it
        // would let a new record hide itself.
        let (z_before, t_before) = (self.spot.threshold(), self.spot.peak_threshold());
        let verdict = self.spot.update(s, self.in_alarm);
        if verdict == Verdict::Calibrating {
            notes.push("calibrating the threshold");
            return Detection::unjudged(
                timestamp_ms,
                value,
                DetectionState::WarmingUp,
                Explanation {
                    history,
                    baseline: Some(median),
                    scale: Some(scale),
                    z_score: Some(s),
                    note: join_notes(&notes),
                    ..Explanation::default()
                },
            );
        }
        let threshold = z_before.max(self.params.min_score);
        let hold_level = t_before.max(self.params.min_score);
        let anomalous =
            (verdict == Verdict::Alarm && s > threshold) || (self.params.hold && self.in_alarm && s > hold_level);
        self.in_alarm = anomalous;
        self.consecutive = if anomalous { self.consecutive.saturating_add(1) } else { 0 };
        let band = clamp_finite(threshold * scale);
        Detection {
            timestamp_ms,
            value,
            score: common::score(s, threshold),
            expected: Some(median),
            lower: Some(clamp_finite(median - band)),
            upper: Some(clamp_finite(median + band)),
            deviation: Deviation::of(value, Some(median)),
            state: if anomalous { DetectionState::Anomalous } else { DetectionState::Normal },
            explanation: Explanation {
                crossing: None,
                baseline: Some(median),
                scale: Some(scale),
                z_score: Some(s),
                threshold: Some(threshold),
                consecutive: self.consecutive,
                history,
                note: join_notes(&notes),
            },
        }
    }

    fn reset(&mut self) {
        self.window.clear();
        self.sr_history.clear();
        self.spot.reset();
        self.in_alarm = false;
        self.consecutive = 0;
        self.timestamps.reset();
    }

    fn max_retained_points(&self) -> usize {
        self.params.window + self.params.sr_window + self.spot.max_retained()
    }

    fn retained_points(&self) -> usize {
        self.window.len() + self.sr_history.len() + self.spot.retained()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{self, XorShift64};

    fn make() -> Box<dyn Detector> {
        Box::new(Auto::new(AutoParams::default()).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn passes_the_compliance_harness() {
        harness::check_compliance(&make, 2).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn warm_up_is_never_normal_and_a_spike_after_it_is_flagged() {
        let mut d = make();
        let mut rng = XorShift64::new(3);
        let p = AutoParams::default();
        let warm = p.window.max(p.sr_window) + p.calibration;
        for i in 0..2000 {
            let det = d.update(i as i64 * 60_000, 100.0 + rng.uniform(-1.0, 1.0));
            if i < warm - 1 {
                assert_eq!(det.state, DetectionState::WarmingUp, "point {i}");
            }
        }
        let det = d.update(2000 * 60_000, 130.0);
        assert!(det.is_anomaly(), "{det:?}");
    }

    #[test]
    fn the_false_alarm_rate_follows_q_on_any_scale() {
        for scale in [1e-6, 1.0, 1e6] {
            let mut d = make();
            let mut rng = XorShift64::new(11);
            let mut flagged = 0;
            for i in 0..20_000 {
                // Heavy-ish tail: a sum of uniforms with occasional larger wiggles.
                let x = (rng.uniform(-1.0, 1.0) + rng.uniform(-1.0, 1.0) * rng.uniform(0.0, 2.0)) * scale;
                if d.update(i, x).is_anomaly() {
                    flagged += 1;
                }
            }
            assert!(flagged < 100, "scale {scale}: {flagged} of 20000 flagged");
        }
    }
}
