//! Capacity exhaustion: the time until a forecast crosses a limit.
//!
//! A disk that fills up, a connection pool that saturates or a quota that runs out is an
//! incident that can be seen coming hours or days before it happens. A threshold on the
//! current value pages too late (the disk is already full); an anomaly detector may never
//! page (a steady climb is perfectly "normal"). This detector forecasts the series
//! `horizon` ahead and reports the point as anomalous when the forecast crosses `limit`
//! within that horizon, with the predicted crossing time and its uncertainty.
//!
//! # Algorithm
//!
//! 1. The detector keeps the last `window` finite values; with fewer than `min_history` a
//!    point is [`WarmingUp`](DetectionState::WarmingUp).
//! 2. The horizon `H` is `horizon_points`, or `horizon_seconds` divided by the median
//!    sampling interval of the recent timestamps (rounded up, at most [`MAX_HORIZON`]).
//! 3. Every `refit_every` points (and whenever `H` changes) the detector fits
//!    [`forecast`](crate::forecast) on the history **including** the current point (it is
//!    known; nothing later is used) and predicts `H + refit_every` points with a prediction
//!    interval of nominal coverage `level`. Between fits, the `k`-th point after a fit reads
//!    steps `k + 1 ..= k + H` of that forecast.
//! 4. With [`Direction::Up`] the crossing is the first step where the series reaches
//!    `limit` or more: the point forecast gives the expected crossing, the upper bound the
//!    earliest and the lower bound the latest ([`Direction::Down`]: the first step at or
//!    below `limit`; lower bound earliest, upper bound latest). `trigger` chooses what must
//!    cross for the point to count: the point forecast (default) or the bound.
//! 5. A current value already at or beyond the limit crosses now (0 points).
//! 6. Score: a crossing `c` points ahead scores `1 − ½ · c / H` (1 now, 0.5 at the end of
//!    the horizon). Without a crossing, `½ · r`, where `r < 1` is the share of the headroom
//!    (`limit − value`) that the trigger series uses up within the horizon.
//! 7. `consecutive` counts the run of points with a crossing; the state is
//!    [`Anomalous`](DetectionState::Anomalous) from `min_consecutive` on.
//!
//! `expected`, `lower` and `upper` of a [`Detection`] are the forecast and its interval at
//! the end of the horizon (where the series is heading), and the note states the limit, the
//! horizon and the crossing: expected, earliest and latest, in points, as a duration and as
//! a timestamp when the sampling interval is known. [`Capacity::last_crossing`] returns the
//! same numbers as a [`Crossing`].
//!
//! # Known properties
//!
//! * The default model is the autoregression ensemble on the original scale (`log = false`):
//!   it continues a linear fill linearly and keeps a daily shape when one is detected.
//!   `method = mstl_ets` (AutoETS chooses between level, trend and damped trend) is the more
//!   conservative alternative for fills that slow down.
//! * Non-finite values are [`NoData`](DetectionState::NoData) and are not added to the
//!   history; `consecutive` is neither advanced nor reset.
//! * Bounded memory: the history (`window` values) and the forecast
//!   (`3 · (H + refit_every)` values), both capped by their parameters' maxima.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite_or_zero, invalid, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation, LimitCrossing};
use crate::error::Result;
use crate::forecast::{self, ForecastConfig, Method, SpacingTracker, MIN_HISTORY};

/// Largest accepted `window`.
pub const MAX_WINDOW: usize = 100_000;

/// Largest horizon in points, configured or derived from `horizon_seconds`.
pub const MAX_HORIZON: usize = 100_000;

/// What has to cross the limit for a point to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The point forecast (the expected crossing).
    #[default]
    Forecast,
    /// The prediction interval's bound on the limit's side (the earliest crossing).
    Interval,
}

/// Parameters of [`Capacity`]. Missing fields take their defaults when deserialised;
/// unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityParams {
    /// The limit (required, finite).
    pub limit: Option<f64>,
    /// [`Direction::Up`] (default): alert before the series reaches `limit` from below;
    /// [`Direction::Down`]: before it falls to `limit` from above.
    pub direction: Direction,
    /// Horizon in points; 0 (default): use `horizon_seconds`.
    pub horizon_points: usize,
    /// Horizon in seconds, converted with the median sampling interval (default 86400, a
    /// day); used when `horizon_points` is 0.
    pub horizon_seconds: f64,
    /// What must cross within the horizon (default the point forecast).
    pub trigger: Trigger,
    /// Nominal coverage of the interval giving the earliest and latest crossing (default 0.95).
    pub level: f64,
    /// Forecasting method (default the ensemble).
    pub method: Method,
    /// Seasonal periods in points; empty (default): detected.
    pub periods: Vec<usize>,
    /// Periods detection may choose from; empty (default): a day and a week at the median
    /// sampling interval.
    pub candidate_periods: Vec<usize>,
    /// Model the logarithm of positive series (default false: fills are usually linear).
    pub log: bool,
    /// Finite points of history kept and fitted on (default 4032).
    pub window: usize,
    /// Fewer finite points of history than this means warming up (default 60).
    pub min_history: usize,
    /// Points between fits (default 24).
    pub refit_every: usize,
    /// Points in a row with a crossing needed to report an anomaly (default 1).
    pub min_consecutive: u32,
}

impl Default for CapacityParams {
    fn default() -> Self {
        Self {
            limit: None,
            direction: Direction::Up,
            horizon_points: 0,
            horizon_seconds: 86_400.0,
            trigger: Trigger::Forecast,
            level: 0.95,
            method: Method::Ensemble,
            periods: Vec::new(),
            candidate_periods: Vec::new(),
            log: false,
            window: 4032,
            min_history: 60,
            refit_every: 24,
            min_consecutive: 1,
        }
    }
}

impl CapacityParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `limit`: set and finite
    /// * `direction`: `up` or `down`
    /// * `horizon_points`: 0 ..= [`MAX_HORIZON`]; when 0, `horizon_seconds` finite and > 0
    /// * `level`: strictly between 0 and 1
    /// * `window`: [`MIN_HISTORY`] ..= [`MAX_WINDOW`]; `min_history`: [`MIN_HISTORY`] ..=
    ///   `window`; `refit_every`: 1 ..= `window`
    /// * `min_consecutive`: >= 1
    /// * `periods`, `candidate_periods`: every entry >= 2
    pub fn validate(&self) -> Result<()> {
        match self.limit {
            Some(l) if l.is_finite() => {}
            Some(l) => return Err(invalid("limit", format!("must be finite, got {l}"))),
            None => return Err(invalid("limit", "is required (the value not to be crossed)".into())),
        }
        if self.direction == Direction::Both {
            return Err(invalid("direction", "must be `up` or `down`, got `both`".into()));
        }
        common::at_most("horizon_points", self.horizon_points, MAX_HORIZON)?;
        if self.horizon_points == 0 && !(self.horizon_seconds.is_finite() && self.horizon_seconds > 0.0) {
            return Err(invalid(
                "horizon_seconds",
                format!("must be finite and greater than 0 when horizon_points is 0, got {}", self.horizon_seconds),
            ));
        }
        common::strictly_between("level", self.level, 0.0, 1.0)?;
        common::between("window", self.window, MIN_HISTORY, MAX_WINDOW)?;
        common::between_param("min_history", self.min_history, MIN_HISTORY, "window", self.window)?;
        common::between_param("refit_every", self.refit_every, 1, "window", self.window)?;
        common::at_least("min_consecutive", self.min_consecutive, 1)?;
        self.forecast_config(None).validate()
    }

    fn forecast_config(&self, step_ms: Option<i64>) -> ForecastConfig {
        ForecastConfig::for_detector(self.method, &self.periods, &self.candidate_periods, self.log, step_ms)
    }

    /// The horizon in points for a median sampling interval `step_ms`, and whether it was
    /// capped at [`MAX_HORIZON`]. `None` when it depends on an unknown interval.
    fn horizon(&self, step_ms: Option<i64>) -> Option<(usize, bool)> {
        if self.horizon_points > 0 {
            return Some((self.horizon_points, false));
        }
        let step = step_ms.filter(|&s| s > 0)? as f64;
        let points = (self.horizon_seconds * 1000.0 / step).ceil().max(1.0);
        if points > MAX_HORIZON as f64 {
            Some((MAX_HORIZON, true))
        } else {
            Some((points as usize, false))
        }
    }
}

/// When the limit is predicted to be crossed, counted from the current point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossing {
    /// The limit.
    pub limit: f64,
    /// Horizon looked at, in points.
    pub horizon_points: usize,
    /// Points until the point forecast crosses (0: the current value already has); `None`:
    /// not within the horizon.
    pub expected_points: Option<usize>,
    /// Points until the interval's bound on the limit's side crosses (earliest plausible).
    pub earliest_points: Option<usize>,
    /// Points until the interval's far bound crosses (latest plausible); `None`: possibly
    /// later than the horizon.
    pub latest_points: Option<usize>,
    /// Median sampling interval used to convert points to time, if known (ms).
    pub step_ms: Option<i64>,
    /// Timestamp of the expected crossing (ms), when the sampling interval is known.
    pub expected_ms: Option<i64>,
    /// Timestamp of the earliest crossing (ms).
    pub earliest_ms: Option<i64>,
    /// Timestamp of the latest crossing (ms).
    pub latest_ms: Option<i64>,
}

/// The forecast made at the last fit.
#[derive(Debug, Clone)]
struct Plan {
    point: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Points since the fit (0 at the point the fit included last).
    offset: usize,
    horizon: usize,
    summary: String,
}

/// Capacity detector. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Capacity {
    params: CapacityParams,
    limit: f64,
    history: VecDeque<f64>,
    plan: Option<Plan>,
    consecutive: u32,
    spacing: SpacingTracker,
    timestamps: TimestampOrder,
    last_crossing: Option<Crossing>,
}

impl Capacity {
    /// Build a detector; fails if `params` do not pass [`CapacityParams::validate`].
    pub fn new(params: CapacityParams) -> Result<Self> {
        params.validate()?;
        let limit = params.limit.unwrap_or(0.0);
        let window = params.window;
        Ok(Self {
            params,
            limit,
            history: VecDeque::with_capacity(window.min(4096)),
            plan: None,
            consecutive: 0,
            spacing: SpacingTracker::default(),
            timestamps: TimestampOrder::default(),
            last_crossing: None,
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &CapacityParams {
        &self.params
    }

    /// The crossing computed for the latest judged point (`None` before the first one and
    /// after [`reset`](Detector::reset)).
    pub fn last_crossing(&self) -> Option<&Crossing> {
        self.last_crossing.as_ref()
    }

    fn push(&mut self, value: f64) {
        while self.history.len() >= self.params.window {
            self.history.pop_front();
        }
        self.history.push_back(value);
    }

    /// Refit when due; `Err(note)` when no forecast can be made.
    fn refresh(&mut self, horizon: usize) -> std::result::Result<(), String> {
        let due = match &self.plan {
            None => true,
            Some(p) => p.offset >= self.params.refit_every || p.horizon != horizon,
        };
        if due {
            let history: Vec<f64> = self.history.iter().copied().collect();
            let config = self.params.forecast_config(self.spacing.median_ms());
            let steps = horizon.saturating_add(self.params.refit_every);
            let (fitted, f) = forecast::forecast_with_fallback(&history, &config, steps, self.params.level)
                .map_err(|e| format!("no forecast: {e}"))?;
            self.plan = Some(Plan {
                summary: fitted.summary(),
                point: f.point,
                lower: f.lower,
                upper: f.upper,
                offset: 0,
                horizon,
            });
        } else if let Some(p) = self.plan.as_mut() {
            p.offset += 1;
        }
        Ok(())
    }

    fn crosses(&self, v: f64) -> bool {
        match self.params.direction {
            Direction::Down => v <= self.limit,
            _ => v >= self.limit,
        }
    }
}

/// A duration in milliseconds as `1d 2h 3m 4s` (largest units first, zero units left out).
fn human_duration(ms: i64) -> String {
    let mut secs = ms.max(0) / 1000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        secs %= size;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn describe(points: Option<usize>, step_ms: Option<i64>, at_ms: Option<i64>) -> String {
    match points {
        None => "not within the horizon".into(),
        Some(0) => "now".into(),
        Some(p) => match (step_ms, at_ms) {
            (Some(step), Some(_)) => {
                let ms = i64::try_from(p).unwrap_or(i64::MAX).saturating_mul(step);
                format!("in about {} ({p} points)", human_duration(ms))
            }
            _ => format!("in {p} points"),
        },
    }
}

impl Detector for Capacity {
    fn name(&self) -> &'static str {
        "capacity"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<String> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        self.spacing.observe(timestamp_ms);
        let history = self.history.len();
        let unjudged = |state: DetectionState, consecutive: u32, note: String| {
            Detection::unjudged(
                timestamp_ms,
                value,
                state,
                Explanation { consecutive, history, note: Some(note), ..Explanation::default() },
            )
        };

        if !value.is_finite() {
            let explanation = Explanation { consecutive: self.consecutive, history, ..Explanation::default() };
            return common::no_data(timestamp_ms, value, &notes, Some("ignored"), explanation);
        }
        self.push(value);
        if history + 1 < self.params.min_history {
            self.consecutive = 0;
            notes.push(format!("warming up: {} of {} points of history", history + 1, self.params.min_history));
            return unjudged(DetectionState::WarmingUp, 0, notes.join("; "));
        }
        let step_ms = self.spacing.median_ms();
        let Some((horizon, capped)) = self.params.horizon(step_ms) else {
            self.consecutive = 0;
            notes.push(
                "warming up: the sampling interval is unknown, so horizon_seconds cannot be converted to points".into(),
            );
            return unjudged(DetectionState::WarmingUp, 0, notes.join("; "));
        };
        if capped {
            notes.push(format!("horizon capped at {MAX_HORIZON} points"));
        }
        if let Err(e) = self.refresh(horizon) {
            self.consecutive = 0;
            notes.push(e);
            return unjudged(DetectionState::WarmingUp, 0, notes.join("; "));
        }
        let Some(plan) = self.plan.as_ref() else {
            return unjudged(DetectionState::WarmingUp, 0, "no forecast available".into());
        };

        // Steps k+1 ..= k+H after the fit are 1 ..= H points from now.
        let start = plan.offset;
        let ahead = |series: &Vec<f64>| -> Vec<f64> { series.iter().skip(start).take(horizon).copied().collect() };
        let (point, lower, upper) = (ahead(&plan.point), ahead(&plan.lower), ahead(&plan.upper));
        let up = self.params.direction != Direction::Down;
        let (near, far) = if up { (&upper, &lower) } else { (&lower, &upper) };
        let first = |series: &Vec<f64>| -> Option<usize> {
            if self.crosses(value) {
                return Some(0);
            }
            series.iter().position(|&v| self.crosses(v)).map(|i| i + 1)
        };
        let expected_points = first(&point);
        let earliest_points = first(near).map(|e| e.min(expected_points.unwrap_or(usize::MAX)));
        let latest_points = first(far).map(|l| l.max(expected_points.unwrap_or(0)));
        let at = |p: Option<usize>| -> Option<i64> {
            let step = step_ms?;
            let p = i64::try_from(p?).ok()?;
            timestamp_ms.checked_add(p.checked_mul(step)?)
        };
        let crossing = Crossing {
            limit: self.limit,
            horizon_points: horizon,
            expected_points,
            earliest_points,
            latest_points,
            step_ms,
            expected_ms: at(expected_points),
            earliest_ms: at(earliest_points),
            latest_ms: at(latest_points),
        };
        let trigger_points = match self.params.trigger {
            Trigger::Forecast => expected_points,
            Trigger::Interval => earliest_points,
        };
        let h = horizon.max(1) as f64;
        let score = match trigger_points {
            Some(c) => 1.0 - 0.5 * (c as f64 / h).min(1.0),
            None => {
                let series = match self.params.trigger {
                    Trigger::Forecast => &point,
                    Trigger::Interval => near,
                };
                let headroom = clamp_finite_or_zero(self.limit - value).abs();
                let used = series
                    .iter()
                    .map(|&v| clamp_finite_or_zero(if up { v - value } else { value - v }))
                    .fold(0.0, f64::max);
                let r = if headroom > 0.0 { (used / headroom).clamp(0.0, 1.0) } else { 0.0 };
                let s = 0.5 * r;
                if s.is_finite() {
                    s.min(0.499_999)
                } else {
                    0.0
                }
            }
        };
        let deviates = trigger_points.is_some();
        self.consecutive = if deviates { self.consecutive.saturating_add(1) } else { 0 };
        let state = if deviates && self.consecutive >= self.params.min_consecutive {
            DetectionState::Anomalous
        } else {
            DetectionState::Normal
        };
        let end_point = point.last().copied().unwrap_or(value);
        let end_lower = lower.last().copied().unwrap_or(end_point).min(end_point);
        let end_upper = upper.last().copied().unwrap_or(end_point).max(end_point);
        let word = if up { "above" } else { "below" };
        notes.push(format!(
            "limit {} ({word}), horizon {horizon} points: crossing expected {}; earliest {}; latest {}",
            self.limit,
            describe(expected_points, step_ms, crossing.expected_ms),
            describe(earliest_points, step_ms, crossing.earliest_ms),
            describe(latest_points, step_ms, crossing.latest_ms),
        ));
        if expected_points == Some(0) {
            notes.push(format!("the current value is already at or {word} the limit"));
        }
        notes.push(format!("{}; {} of {} steps after the fit", plan.summary, plan.offset, self.params.refit_every));
        self.last_crossing = Some(crossing);
        Detection {
            timestamp_ms,
            value,
            score: if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 },
            expected: Some(end_point),
            lower: Some(end_lower),
            upper: Some(end_upper),
            // The side of the forecast's end relative to the current value (not
            // the other way round, as for the other detectors).
            deviation: Deviation::of(end_point, Some(value)),
            state,
            explanation: Explanation {
                baseline: Some(end_point),
                scale: Some(clamp_finite_or_zero(if up { end_upper - end_point } else { end_point - end_lower })),
                z_score: None,
                threshold: None,
                consecutive: self.consecutive,
                history,
                note: Some(notes.join("; ")),
                crossing: Some(LimitCrossing { limit: self.limit, at_ms: crossing.expected_ms }),
            },
        }
    }

    fn reset(&mut self) {
        self.history.clear();
        self.plan = None;
        self.consecutive = 0;
        self.spacing.reset();
        self.timestamps.reset();
        self.last_crossing = None;
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
    use crate::harness::{check_constant_series, check_invariants, edge_case_series, run_series, XorShift64};

    const MINUTE: i64 = 60_000;

    fn small(limit: f64) -> CapacityParams {
        CapacityParams {
            limit: Some(limit),
            horizon_points: 100,
            window: 200,
            min_history: 30,
            refit_every: 50,
            ..CapacityParams::default()
        }
    }

    fn make(params: CapacityParams) -> impl Fn() -> Box<dyn Detector> {
        move || -> Box<dyn Detector> { Box::new(Capacity::new(params.clone()).expect("valid params")) }
    }

    /// `start + slope · i` plus uniform noise of ±`noise`, one point a minute.
    fn ramp(n: usize, start: f64, slope: f64, noise: f64, seed: u64) -> Vec<(i64, f64)> {
        let mut rng = XorShift64::new(seed);
        (0..n)
            .map(|i| {
                let t = i64::try_from(i).unwrap_or(0) * MINUTE;
                (t, start + slope * i as f64 + rng.uniform(-noise, noise))
            })
            .collect()
    }

    #[test]
    fn is_registered_by_name() {
        let params = vec![
            ("limit".to_string(), "0.9".to_string()),
            ("horizon_seconds".to_string(), "3600".to_string()),
            ("trigger".to_string(), "interval".to_string()),
            ("window".to_string(), "300".to_string()),
        ];
        let d = crate::registry::build("capacity", &params).expect("builds");
        assert_eq!((d.name(), d.max_retained_points()), ("capacity", 300));
        let e = crate::registry::build("capacity", &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn limit_is_required_and_bad_params_are_named() {
        let e = Capacity::new(CapacityParams::default()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`limit`"), "{e}");
        let cases: [(&str, CapacityParams); 7] = [
            ("limit", CapacityParams { limit: Some(f64::INFINITY), ..small(1.0) }),
            ("direction", CapacityParams { direction: Direction::Both, ..small(1.0) }),
            ("horizon_seconds", CapacityParams { horizon_points: 0, horizon_seconds: -1.0, ..small(1.0) }),
            ("horizon_points", CapacityParams { horizon_points: MAX_HORIZON + 1, ..small(1.0) }),
            ("level", CapacityParams { level: 0.0, ..small(1.0) }),
            ("refit_every", CapacityParams { refit_every: 1000, ..small(1.0) }),
            ("min_consecutive", CapacityParams { min_consecutive: 0, ..small(1.0) }),
        ];
        for (name, params) in cases {
            let e = Capacity::new(params).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("`{name}`")), "{name}: {e}");
        }
        assert!(Capacity::new(small(1.0)).is_ok());
    }

    #[test]
    fn passes_the_invariants_on_edge_cases_and_constants() {
        for (k, points) in edge_case_series().iter().enumerate() {
            assert_eq!(check_invariants(&make(small(5.0)), points), Ok(()), "edge case {k}");
            let seconds = CapacityParams { horizon_points: 0, horizon_seconds: 3600.0, ..small(5.0) };
            assert_eq!(check_invariants(&make(seconds), points), Ok(()), "edge case {k} (seconds)");
        }
        // Constant series at many levels, including the limit's neighbourhood, never alert
        // when the limit is far above.
        assert_eq!(check_constant_series(&make(small(1e12))), Ok(()));
        let points = ramp(300, 10.0, 0.5, 1.0, 3);
        assert_eq!(check_invariants(&make(small(100.0)), &points), Ok(()));
    }

    #[test]
    fn predicts_a_linear_fill_crossing() {
        // 10 + 0.5 i: reaches 400 at i = 780. At i = 599 that is 181 points (minutes) ahead.
        let points = ramp(600, 10.0, 0.5, 1.0, 42);
        let params = CapacityParams { limit: Some(400.0), horizon_seconds: 6.0 * 3600.0, ..CapacityParams::default() };
        let mut det = Capacity::new(params).expect("valid");
        let detections = run_series(&mut det, &points);
        let last = detections.last().expect("detections");
        let c = *det.last_crossing().expect("crossing");
        assert_eq!(c.horizon_points, 360);
        assert_eq!(c.step_ms, Some(MINUTE));
        let expected = c.expected_points.expect("crosses within the horizon");
        assert!(expected.abs_diff(181) <= 9, "expected crossing in {expected} points, truth 181");
        let earliest = c.earliest_points.expect("earliest");
        let latest = c.latest_points.expect("latest");
        assert!(earliest <= expected && expected <= latest, "{c:?}");
        assert!(latest - earliest < 120, "{c:?}");
        assert_eq!(c.expected_ms, Some(599 * MINUTE + i64::try_from(expected).unwrap_or(0) * MINUTE));
        assert!(last.is_anomaly() && last.score > 0.5, "{last:?}");
        let note = last.explanation.note.clone().unwrap_or_default();
        assert!(
            note.contains("limit 400 (above)") && note.contains("earliest in") && note.contains("about 3h"),
            "{note}"
        );

        // Earlier, when the crossing is beyond the horizon, it does not alert and scores
        // below 0.5, closer to 0.5 as the fill approaches.
        let at = |i: usize| detections.get(i).expect("exists");
        assert!(!at(200).is_anomaly() && at(200).score < 0.5, "{:?}", at(200));
        assert!(at(300).score > at(200).score);
        let first_alert = detections.iter().position(Detection::is_anomaly).expect("alerts");
        // 780 - 360 = 420: the crossing enters the 6 h horizon around there.
        assert!(first_alert.abs_diff(420) <= 20, "first alert at {first_alert}");
    }

    #[test]
    fn a_draining_series_alerts_downwards_and_a_value_beyond_the_limit_is_now() {
        let points = ramp(300, 500.0, -1.0, 0.5, 5);
        let params = CapacityParams {
            limit: Some(100.0),
            direction: Direction::Down,
            horizon_points: 200,
            ..CapacityParams::default()
        };
        let mut det = Capacity::new(params).expect("valid");
        let detections = run_series(&mut det, &points);
        // 500 - i reaches 100 at i = 400: 101 points after the last one.
        let c = *det.last_crossing().expect("crossing");
        let expected = c.expected_points.expect("crosses");
        assert!(expected.abs_diff(101) <= 6, "{c:?}");
        assert!(detections.last().is_some_and(Detection::is_anomaly));
        let d = det.update(300 * MINUTE, 90.0);
        assert_eq!(det.last_crossing().and_then(|c| c.expected_points), Some(0));
        assert_eq!((d.score, d.state), (1.0, DetectionState::Anomalous));
    }

    #[test]
    fn interval_trigger_alerts_no_later_than_the_point_forecast() {
        let points = ramp(700, 10.0, 0.5, 3.0, 8);
        let base = CapacityParams { limit: Some(400.0), horizon_points: 240, ..CapacityParams::default() };
        let first_alert = |trigger: Trigger| {
            let mut det = Capacity::new(CapacityParams { trigger, ..base.clone() }).expect("valid");
            run_series(&mut det, &points).iter().position(Detection::is_anomaly)
        };
        let by_forecast = first_alert(Trigger::Forecast).expect("alerts");
        let by_interval = first_alert(Trigger::Interval).expect("alerts");
        assert!(by_interval <= by_forecast, "{by_interval} > {by_forecast}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(90_061_000), "1d 1h 1m 1s");
        assert_eq!(human_duration(3 * 3_600_000), "3h");
    }
}
