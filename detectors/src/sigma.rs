//! Rolling three-sigma: mean and standard deviation of the previous `window` points.
//!
//! The simplest detector an operator would write by hand, kept as a real, selectable detector
//! so that every other detector can be compared with it side by side (`warden bench anomaly`)
//! and so that a user who wants exactly this rule can have it.
//!
//! # Algorithm, per point `x`
//!
//! 1. The baseline is the last `window` finite values **before** this point.
//! 2. With fewer than `window` of them the point is warming up.
//! 3. `mean` and the sample standard deviation `std` (divisor `n - 1`) of the baseline;
//!    `z = (x - mean) / std`.
//! 4. The point is anomalous when `|x - mean| > k * std` (in the configured direction). A
//!    flat baseline (`std = 0`) therefore flags any change at all: that is the rule.
//! 5. `score = |z| / (|z| + k)` (0.5 at the threshold; 1 when `std = 0` and `x` differs).
//!
//! Memory is the `window` values; each point costs `O(window)`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, in_direction, join_notes, score, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation};
use crate::error::Result;

/// Largest accepted `window`.
pub const MAX_WINDOW: usize = 100_000;

/// Parameters of [`Sigma`]; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigmaParams {
    /// Number of previous finite points in the baseline (default 60).
    pub window: usize,
    /// Multiple of the standard deviation beyond which a point is anomalous (default 3).
    pub k: f64,
    /// Which deviations count (default both).
    pub direction: Direction,
}

impl Default for SigmaParams {
    fn default() -> Self {
        Self { window: 60, k: 3.0, direction: Direction::Both }
    }
}

impl SigmaParams {
    /// `window` in 2 ..= [`MAX_WINDOW`], `k` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, 2, MAX_WINDOW)?;
        common::positive("k", self.k)
    }
}

/// Rolling mean / standard deviation detector; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Sigma {
    params: SigmaParams,
    history: VecDeque<f64>,
    timestamps: TimestampOrder,
}

impl Sigma {
    /// Build a detector; fails if `params` do not validate.
    pub fn new(params: SigmaParams) -> Result<Self> {
        params.validate()?;
        let window = params.window;
        Ok(Self { params, history: VecDeque::with_capacity(window), timestamps: TimestampOrder::default() })
    }

    fn mean_std(&self) -> (f64, f64) {
        let n = self.history.len() as f64;
        // Shifted by the first value so that large offsets do not cancel precision away.
        let shift = self.history.front().copied().unwrap_or(0.0);
        let (mut s, mut ss) = (0.0, 0.0);
        for &v in &self.history {
            let d = clamp_finite(v - shift);
            s += d;
            ss += d * d;
        }
        let mean_d = s / n;
        let var = ((ss - s * mean_d) / (n - 1.0)).max(0.0);
        (clamp_finite(shift + mean_d), clamp_finite(var.sqrt()))
    }
}

impl Detector for Sigma {
    fn name(&self) -> &'static str {
        "sigma"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<&str> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        if !value.is_finite() {
            let explanation = Explanation { history: self.history.len(), ..Explanation::default() };
            return common::no_data(timestamp_ms, value, &notes, None, explanation);
        }
        let window = self.params.window;
        let detection = if self.history.len() < window {
            notes.push("warming up");
            Detection::unjudged(
                timestamp_ms,
                value,
                DetectionState::WarmingUp,
                Explanation { history: self.history.len(), note: join_notes(&notes), ..Explanation::default() },
            )
        } else {
            let (mean, std) = self.mean_std();
            let k = self.params.k;
            let dev = clamp_finite(value - mean);
            let z = if std > 0.0 {
                clamp_finite(dev / std)
            } else if dev == 0.0 {
                0.0
            } else {
                f64::MAX.copysign(dev)
            };
            let z_dir = in_direction(self.params.direction, z);
            let anomalous = z_dir > k;
            let band = clamp_finite(k * std);
            Detection {
                timestamp_ms,
                value,
                score: score(z_dir, k),
                expected: Some(mean),
                lower: Some(clamp_finite(mean - band)),
                upper: Some(clamp_finite(mean + band)),
                deviation: Deviation::of(value, Some(mean)),
                state: if anomalous { DetectionState::Anomalous } else { DetectionState::Normal },
                explanation: Explanation {
                    crossing: None,
                    baseline: Some(mean),
                    scale: Some(std),
                    z_score: Some(z),
                    threshold: Some(k),
                    consecutive: u32::from(anomalous),
                    history: self.history.len(),
                    note: join_notes(&notes),
                },
            }
        };
        if self.history.len() == window {
            self.history.pop_front();
        }
        self.history.push_back(value);
        detection
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

    #[test]
    fn passes_the_compliance_harness() {
        let make =
            || -> Box<dyn Detector> { Box::new(Sigma::new(SigmaParams::default()).unwrap_or_else(|e| panic!("{e}"))) };
        harness::check_compliance(&make, 3).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn flags_beyond_k_std_of_the_previous_window() {
        let mut d =
            Sigma::new(SigmaParams { window: 4, k: 3.0, direction: Direction::Both }).unwrap_or_else(|e| panic!("{e}"));
        for v in [1.0, 2.0, 1.0, 2.0] {
            assert_eq!(d.update(0, v).state, DetectionState::WarmingUp);
        }
        // mean 1.5, sample std 0.577: 3.2 is 2.94 std away, 3.3 is 3.12.
        assert_eq!(d.update(0, 3.2).state, DetectionState::Normal);
        let mut d2 =
            Sigma::new(SigmaParams { window: 4, k: 3.0, direction: Direction::Both }).unwrap_or_else(|e| panic!("{e}"));
        for v in [1.0, 2.0, 1.0, 2.0] {
            d2.update(0, v);
        }
        assert_eq!(d2.update(0, 3.3).state, DetectionState::Anomalous);
        assert!(Sigma::new(SigmaParams { window: 1, ..SigmaParams::default() }).is_err());
        assert!(Sigma::new(SigmaParams { k: 0.0, ..SigmaParams::default() }).is_err());
    }
}
