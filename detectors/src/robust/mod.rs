//! Robust rolling baseline: median and MAD over a sliding window.
//!
//! Most production metrics have no clean distribution: latencies are skewed,
//! error counts are spiky, and past incidents leave outliers in the history.
//! A mean / standard-deviation baseline is dragged around by those outliers,
//! so this detector uses the median as the expected value and the median
//! absolute deviation (MAD) as the spread. Both ignore up to half of the
//! window being outliers, which keeps the baseline stable while an incident
//! is under way.
//!
//! # Algorithm, per point `x` at time `t`
//!
//! 1. The baseline is the last `window` *finite* values **before** this point;
//!    the point is never part of its own baseline.
//! 2. With fewer than `min_history` baseline values the point is
//!    [`WarmingUp`](DetectionState::WarmingUp) (score 0; `expected` is the
//!    median of what history there is, if any).
//! 3. `m = median`, `MAD = median(|v - m|)`,
//!    `scale = max(1.4826 * MAD, min_relative_scale * |m|, min_absolute_scale)`,
//!    `z = (x - m) / scale`. The factor 1.4826 makes the scale comparable to a
//!    standard deviation for normally distributed data. The floors stop a flat
//!    series (MAD = 0) from turning every tiny wiggle into an infinite z.
//! 4. `expected = m`, `lower = m - threshold * scale`,
//!    `upper = m + threshold * scale`.
//! 5. The point deviates if `z > threshold` ([`Direction::Up`]),
//!    `z < -threshold` ([`Direction::Down`]) or `|z| > threshold`
//!    ([`Direction::Both`]). `consecutive` counts the current run of deviating
//!    points and is reset to 0 by a finite point that does not deviate. The
//!    state is [`Anomalous`](DetectionState::Anomalous) once
//!    `consecutive >= min_consecutive`, otherwise
//!    [`Normal`](DetectionState::Normal). Requiring a run suppresses one-off
//!    spikes.
//! 6. `score = |z_dir| / (|z_dir| + threshold)`, where `z_dir` is the
//!    deviation in the configured direction (0 on the other side). It is 0.5
//!    at the threshold, grows towards 1 for large deviations and is always
//!    finite (an infinite or overflowing z gives 1).
//! 7. The point is then appended to the history, **including anomalous
//!    points**.
//!
//! # Known properties
//!
//! * **A lasting shift becomes the new normal.** Because anomalous points
//!   enter the history, a level shift that persists is reported for roughly
//!   `window / 2` points, after which the median has moved to the new level
//!   and the series is `Normal` again. This is inherent to a rolling baseline
//!   and is usually what an operator wants (a deploy that permanently changes
//!   a metric should not page forever); detecting such shifts as events is
//!   the job of a change-point detector.
//! * **Non-finite values** (NaN, ±∞) yield [`NoData`](DetectionState::NoData)
//!   with score 0. They are not added to the history and the `consecutive`
//!   counter is neither advanced nor reset, so a gap in the middle of an
//!   anomalous run does not hide or restart it.
//! * **Timestamps** are only echoed and checked. Irregular spacing is accepted
//!   and gaps are not interpolated: the window counts points, not time.
//!   A timestamp that is not strictly greater than the previous one is still
//!   processed (streaming sources can repeat samples); the detection carries a
//!   note saying so. Call [`Detector::reset`] after a gap long enough to make
//!   the history irrelevant.
//! * **Extreme values** never panic and never produce non-finite output:
//!   intermediate overflows are clamped to the finite range.
//!
//! # Cost
//!
//! Memory per series is bounded and allocated once, when the detector is
//! built: a history of at most `window` values plus a sorted copy of it,
//! i.e. `16 * window` bytes of `f64`s (under 1 KiB for the default window of
//! 60) plus a few words of state. `window` is capped at [`MAX_WINDOW`], so no
//! configuration can exceed 1.6 MB per series. Each point costs `O(window)`:
//! a binary-search insert and remove in the sorted copy (a memmove), the
//! median by index, and the MAD by walking outwards from the median, which
//! visits the absolute deviations in increasing order without sorting them.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, in_direction, join_notes, score, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation};
use crate::error::Result;
use crate::spot::{Spot, Verdict};

/// Quantile of the calibration deviations used as SPOT's peak threshold.
const SPOT_LEVEL: f64 = 0.98;
/// Peaks kept by the calibrator.
const SPOT_MAX_PEAKS: usize = 1000;

/// Largest accepted `window`; bounds memory at 16 × 100 000 bytes per series.
pub const MAX_WINDOW: usize = 100_000;

/// Factor that turns a MAD into a standard-deviation-equivalent scale for
/// normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Parameters of [`RobustBaseline`]. Missing fields take their defaults when
/// deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RobustBaselineParams {
    /// Number of past finite points forming the baseline (default 60).
    pub window: usize,
    /// Robust z above which a point deviates (default 4.0).
    pub threshold: f64,
    /// Deviating points in a row needed to report an anomaly (default 3).
    pub min_consecutive: u32,
    /// Fewer finite past points than this means warming up (default 20).
    pub min_history: usize,
    /// Which deviations count (default both).
    pub direction: Direction,
    /// Scale floor as a fraction of `|median|` (default 0.01).
    pub min_relative_scale: f64,
    /// Absolute scale floor (default 1e-9).
    pub min_absolute_scale: f64,
    /// When set, the flag threshold is calibrated per series by SPOT (see [`crate::spot`]) at
    /// this risk (probability that a normal point deviates), never below `threshold`; unset
    /// (the default), `threshold` is the fixed flag threshold.
    pub risk: Option<f64>,
    /// Deviations collected before the calibrated threshold applies (default 400); until
    /// then `threshold` alone is used. Only with `risk`.
    pub calibration: usize,
}

impl Default for RobustBaselineParams {
    fn default() -> Self {
        Self {
            window: 60,
            threshold: 4.0,
            min_consecutive: 3,
            min_history: 20,
            direction: Direction::Both,
            min_relative_scale: 0.01,
            min_absolute_scale: 1e-9,
            risk: None,
            calibration: 400,
        }
    }
}

impl RobustBaselineParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `window`: 3 ..= [`MAX_WINDOW`]
    /// * `min_history`: 3 ..= `window`
    /// * `threshold`: finite and > 0
    /// * `min_consecutive`: >= 1
    /// * `min_relative_scale`, `min_absolute_scale`: finite and >= 0
    /// * `risk`: in (0, 1) when set; `calibration`: 10 ..= [`MAX_WINDOW`]
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, 3, MAX_WINDOW)?;
        common::between_param("min_history", self.min_history, 3, "window", self.window)?;
        common::positive("threshold", self.threshold)?;
        common::at_least("min_consecutive", self.min_consecutive, 1)?;
        if let Some(q) = self.risk {
            common::strictly_between("risk", q, 0.0, 1.0)?;
        }
        common::between("calibration", self.calibration, 10, MAX_WINDOW)?;
        common::scale_floors(self.min_relative_scale, self.min_absolute_scale)
    }
}

/// Rolling median / MAD detector. See the [module docs](self) for the
/// algorithm and its properties.
#[derive(Debug, Clone)]
pub struct RobustBaseline {
    params: RobustBaselineParams,
    /// Last `window` finite values, oldest first, with a sorted copy.
    window: SortedWindow,
    /// Current run of deviating finite points.
    consecutive: u32,
    /// Timestamp of the previous point, to flag non-increasing timestamps.
    timestamps: TimestampOrder,
    /// The per-series threshold calibrator, when `risk` is set.
    spot: Option<Spot>,
}

/// Baseline statistics of the history.
struct Stats {
    median: f64,
    scale: f64,
    floor_note: Option<&'static str>,
}

impl RobustBaseline {
    /// Build a detector; fails if `params` do not pass
    /// [`RobustBaselineParams::validate`].
    pub fn new(params: RobustBaselineParams) -> Result<Self> {
        params.validate()?;
        let window = params.window;
        let spot = params.risk.map(|q| Spot::new(q, SPOT_LEVEL, params.calibration, SPOT_MAX_PEAKS));
        Ok(Self {
            params,
            window: SortedWindow::new(window),
            consecutive: 0,
            timestamps: TimestampOrder::default(),
            spot,
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &RobustBaselineParams {
        &self.params
    }

    /// Median of the history (`None` when empty).
    fn median(&self) -> Option<f64> {
        sorted_median(self.window.sorted())
    }

    /// Median and floored scale of the history (`None` when empty).
    fn stats(&mut self) -> Option<Stats> {
        let median = self.median()?;
        let mad = sorted_mad(self.window.sorted(), median)?;
        let mad_scale = clamp_finite(MAD_TO_SIGMA * mad);
        let relative = clamp_finite(self.params.min_relative_scale * median.abs());
        let absolute = self.params.min_absolute_scale;
        let (scale, floor_note) = if mad_scale >= relative && mad_scale >= absolute {
            (mad_scale, None)
        } else if relative >= absolute {
            (relative, Some("scale raised to min_relative_scale * |median|"))
        } else {
            (absolute, Some("scale raised to min_absolute_scale"))
        };
        Some(Stats { median, scale, floor_note })
    }

    fn push(&mut self, value: f64) {
        self.window.push(value);
    }
}

/// The last `capacity` points in arrival order and, beside them, the same points sorted, so
/// the median and MAD of a rolling window cost a binary search per point, not a sort.
#[derive(Debug, Clone)]
pub(crate) struct SortedWindow {
    capacity: usize,
    history: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, history: VecDeque::with_capacity(capacity), sorted: Vec::with_capacity(capacity) }
    }

    /// Append a value, dropping the oldest first so that the buffer never grows beyond
    /// `capacity` (and never reallocates).
    pub(crate) fn push(&mut self, value: f64) {
        while self.history.len() >= self.capacity {
            if let Some(old) = self.history.pop_front() {
                if let Ok(i) = self.sorted.binary_search_by(|v| v.total_cmp(&old)) {
                    self.sorted.remove(i);
                }
            }
        }
        self.history.push_back(value);
        let at = self.sorted.partition_point(|v| v.total_cmp(&value).is_lt());
        self.sorted.insert(at, value);
    }

    pub(crate) fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    pub(crate) fn len(&self) -> usize {
        self.history.len()
    }

    pub(crate) fn clear(&mut self) {
        self.history.clear();
        self.sorted.clear();
    }
}

/// Median of sorted, finite `values`, computed without overflow. `None` when
/// empty.
pub(crate) fn sorted_median(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let hi = *values.get(n / 2)?;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = *values.get(n / 2 - 1)?;
    // Halving first keeps the sum finite for values near ±f64::MAX.
    Some(lo / 2.0 + hi / 2.0)
}

/// Median absolute deviation of sorted, finite `values` around `median`.
/// The deviations left of the median grow as we walk left and those right of
/// it grow as we walk right, so merging the two walks yields them in
/// increasing order; the walk stops at the middle one(s). `|v - m|` may
/// overflow near ±f64::MAX and is clamped to finite.
pub(crate) fn sorted_mad(values: &[f64], median: f64) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (want_lo, want_hi) = if n % 2 == 1 { (n / 2, n / 2) } else { (n / 2 - 1, n / 2) };
    let split = values.partition_point(|v| *v < median);
    let (mut left, mut right) = (split, split);
    let mut lo = 0.0;
    for k in 0..=want_hi {
        let dl = left.checked_sub(1).and_then(|i| values.get(i)).map(|v| clamp_finite(median - v));
        let dr = values.get(right).map(|v| clamp_finite(v - median));
        let d = match (dl, dr) {
            (Some(a), Some(b)) if a <= b => {
                left -= 1;
                a
            }
            (_, Some(b)) => {
                right += 1;
                b
            }
            (Some(a), None) => {
                left -= 1;
                a
            }
            (None, None) => return None,
        };
        if k == want_lo {
            lo = d;
        }
        if k == want_hi {
            return Some(if n % 2 == 1 { d } else { lo / 2.0 + d / 2.0 });
        }
    }
    None
}

impl Detector for RobustBaseline {
    fn name(&self) -> &'static str {
        "robust_baseline"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<&str> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        let history = self.window.len();
        let threshold = self.params.threshold;

        if !value.is_finite() {
            let explanation = Explanation {
                threshold: Some(threshold),
                consecutive: self.consecutive,
                history,
                ..Explanation::default()
            };
            return common::no_data(timestamp_ms, value, &notes, Some("ignored"), explanation);
        }

        if history < self.params.min_history {
            let median = self.median();
            self.consecutive = 0;
            self.push(value);
            let warm = format!("warming up: {history} of {} points of history", self.params.min_history);
            notes.push(&warm);
            return Detection {
                expected: median,
                deviation: Deviation::of(value, median),
                ..Detection::unjudged(
                    timestamp_ms,
                    value,
                    DetectionState::WarmingUp,
                    Explanation {
                        baseline: median,
                        threshold: Some(threshold),
                        consecutive: 0,
                        history,
                        note: join_notes(&notes),
                        ..Explanation::default()
                    },
                )
            };
        }

        // history >= min_history >= 3, so stats exist; the fallback is
        // unreachable but keeps this path free of panics.
        let Some(stats) = self.stats() else {
            self.push(value);
            return Detection::unjudged(
                timestamp_ms,
                value,
                DetectionState::WarmingUp,
                Explanation { threshold: Some(threshold), history, note: join_notes(&notes), ..Explanation::default() },
            );
        };
        let Stats { median, scale, floor_note } = stats;
        if let Some(n) = floor_note {
            notes.push(n);
        }

        // Both operands are finite, so the difference is never NaN; it may
        // overflow to ±∞, which the clamp below turns into ±f64::MAX.
        let diff = value - median;
        let z = if diff == 0.0 {
            0.0
        } else {
            // scale >= 0; a zero scale (both floors 0 on a flat series)
            // makes any difference infinitely significant.
            clamp_finite(diff / scale)
        };
        let z_dir = in_direction(self.params.direction, z);
        // With a calibrator, the threshold is SPOT's bound for this series once calibrated,
        // never below the configured floor; while it calibrates, the floor alone applies.
        let threshold = match self.spot.as_mut() {
            Some(spot) => {
                let in_alarm = self.consecutive > 0;
                // Judged against the bound before this point refits it (see `auto`).
                let bound = spot.threshold();
                if spot.update(z_dir, in_alarm) == Verdict::Calibrating {
                    notes.push("calibrating the threshold; using the configured one");
                    threshold
                } else {
                    clamp_finite(bound.max(threshold))
                }
            }
            None => threshold,
        };
        let deviates = z_dir > threshold;
        self.consecutive = if deviates { self.consecutive.saturating_add(1) } else { 0 };
        let state = if self.consecutive >= self.params.min_consecutive {
            DetectionState::Anomalous
        } else {
            DetectionState::Normal
        };
        let band = threshold * scale;
        let lower = clamp_finite(median - band);
        let upper = clamp_finite(median + band);

        self.push(value);
        Detection {
            timestamp_ms,
            value,
            score: score(z_dir, threshold),
            expected: Some(median),
            lower: Some(lower),
            upper: Some(upper),
            deviation: if z > 0.0 {
                Deviation::Above
            } else if z < 0.0 {
                Deviation::Below
            } else {
                Deviation::None
            },
            state,
            explanation: Explanation {
                crossing: None,
                baseline: Some(median),
                scale: Some(scale),
                z_score: Some(z),
                threshold: Some(threshold),
                consecutive: self.consecutive,
                history,
                note: join_notes(&notes),
            },
        }
    }

    fn reset(&mut self) {
        self.window.clear();
        self.consecutive = 0;
        self.timestamps.reset();
        if let Some(spot) = self.spot.as_mut() {
            spot.reset();
        }
    }

    fn max_retained_points(&self) -> usize {
        self.params.window + self.spot.as_ref().map_or(0, Spot::max_retained)
    }

    fn retained_points(&self) -> usize {
        self.window.len() + self.spot.as_ref().map_or(0, Spot::retained)
    }
}

#[cfg(test)]
mod tests;
