//! The detector seam: the trait every detector implements and the types it
//! returns.
//!
//! The agent schedules detectors, stores their output as evidence and serves
//! it through its API; it should not need to know which algorithm produced a
//! [`Detection`]. These types are therefore algorithm-neutral: a detector
//! fills the fields that make sense for it and leaves the others `None`.
//! Output types are serialisable so that a detection can be recorded verbatim.

use serde::{Deserialize, Serialize};

/// Which deviations count as anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the expected range.
    Up,
    /// Only values below the expected range.
    Down,
    /// Values on either side.
    #[default]
    Both,
}

/// Which side the point is on relative to the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deviation {
    /// The value is above the expected value.
    Above,
    /// The value is below the expected value.
    Below,
    /// The value equals the expected value, or there is no expected value.
    None,
}

impl Deviation {
    /// Side of `value` relative to `expected` ([`Deviation::None`] when they
    /// are equal or there is no expected value).
    pub(crate) fn of(value: f64, expected: Option<f64>) -> Self {
        match expected {
            Some(e) if value > e => Deviation::Above,
            Some(e) if value < e => Deviation::Below,
            _ => Deviation::None,
        }
    }
}

/// The detector's verdict for one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionState {
    /// Not enough history to judge the point.
    WarmingUp,
    /// The value was not a finite number; it was ignored.
    NoData,
    /// The point is within the expected behaviour (or deviates, but not yet
    /// for long enough to be reported).
    Normal,
    /// The point is anomalous.
    Anomalous,
}

/// Fields that explain the decision (serialisable for evidence and API).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Explanation {
    /// Central value of the baseline the point was compared with.
    pub baseline: Option<f64>,
    /// Spread of the baseline (in the units of the series).
    pub scale: Option<f64>,
    /// Normalised deviation of the point from the baseline.
    pub z_score: Option<f64>,
    /// Threshold the normalised deviation is compared with.
    pub threshold: Option<f64>,
    /// Length of the current run of deviating points, this point included.
    pub consecutive: u32,
    /// Number of past points the decision was based on.
    pub history: usize,
    /// Free-text remark (warm-up progress, floors applied, data problems).
    pub note: Option<String>,
    /// Forecasting detectors with a limit (`capacity`): the limit and when the point
    /// forecast reaches it. Their `expected` is the forecast at the horizon's end, which
    /// says little on its own; this is what a person wants to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crossing: Option<LimitCrossing>,
}

/// A forecast's limit and when the point forecast reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LimitCrossing {
    pub limit: f64,
    /// When (ms); `None`: not within the horizon.
    pub at_ms: Option<i64>,
}

/// The result of feeding one point to a [`Detector`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Timestamp of the point, as given (milliseconds).
    pub timestamp_ms: i64,
    /// Value of the point, as given (may be non-finite for
    /// [`DetectionState::NoData`]).
    pub value: f64,
    /// Anomaly score, finite and in `[0, 1]`; `0.5` at the threshold, `0` for
    /// points that are not judged.
    pub score: f64,
    /// Expected value, if the detector has one.
    pub expected: Option<f64>,
    /// Lower edge of the normal range, if any (finite, `<= expected`).
    pub lower: Option<f64>,
    /// Upper edge of the normal range, if any (finite, `>= expected`).
    pub upper: Option<f64>,
    /// Which side of the expected value the point lies on.
    pub deviation: Deviation,
    /// Verdict for the point.
    pub state: DetectionState,
    /// Numbers behind the verdict.
    pub explanation: Explanation,
}

impl Detection {
    /// A point that is not judged (`state` is [`DetectionState::NoData`] or
    /// [`DetectionState::WarmingUp`]): score 0, no expected value or range,
    /// no deviation. Detectors fill in what they know (e.g. the baseline of a
    /// warm-up) with struct update syntax or by assigning fields.
    pub(crate) fn unjudged(timestamp_ms: i64, value: f64, state: DetectionState, explanation: Explanation) -> Self {
        Self {
            timestamp_ms,
            value,
            score: 0.0,
            expected: None,
            lower: None,
            upper: None,
            deviation: Deviation::None,
            state,
            explanation,
        }
    }

    /// Whether the point was judged anomalous.
    pub fn is_anomaly(&self) -> bool {
        self.state == DetectionState::Anomalous
    }
}

/// Streaming detector: one call per point, in time order, no look-ahead.
/// Output for point i depends on points <= i only.
///
/// Implementations must never panic on input values: non-finite values yield
/// [`DetectionState::NoData`], and odd timestamps (repeated, decreasing,
/// irregular) are accepted. Memory is bounded by
/// [`max_retained_points`](Detector::max_retained_points).
pub trait Detector: Send {
    /// Short, stable name of the algorithm (used in evidence and metrics).
    fn name(&self) -> &'static str;
    /// Feed the next point and get the verdict for it.
    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection;
    /// Forget all history (e.g. after a long gap).
    fn reset(&mut self);
    /// Upper bound on retained points; documents bounded memory.
    fn max_retained_points(&self) -> usize;
    /// Number of points currently retained; never above
    /// [`max_retained_points`](Detector::max_retained_points), `0` after
    /// [`reset`](Detector::reset).
    fn retained_points(&self) -> usize;
}
