//! Seasonal baseline: MSTL decomposition, anomalies on the residual.
//!
//! Traffic, CPU and queue depths follow the day and the week. A rolling
//! median (see [`robust`](crate::robust)) either flags every morning ramp or
//! needs a band so wide that it misses real incidents at night. This detector
//! learns the shape of the cycle: it decomposes the recent history with MSTL
//! (multiple seasonal-trend decomposition by loess, as in `augurs`' MSTL
//! model) into trend + one seasonal component per period + remainder,
//! predicts each new point as *trend + seasonal*, and judges the point by its
//! residual against a robust scale of recent residuals.
//!
//! # Algorithm, per point `x`
//!
//! 1. **History.** The last `window` points before `x`. With fewer than
//!    `min_history` (and, with configured periods, fewer than two cycles of
//!    the longest one) the point is [`WarmingUp`](DetectionState::WarmingUp).
//! 2. **Refit, amortised.** At the end of the warm-up and then every
//!    `refit_every` points (by default a quarter of the shortest period in
//!    use, between 1 and 60; 60 while none is) the history is decomposed
//!    again:
//!    * it is rescaled first, `y = (v - median) / (1.4826 MAD)` (floored, and
//!      clamped to `±1e9`), so that huge counters and tiny ratios decompose
//!      alike. `augurs`' MSTL model casts to `f32`; the decomposition is run
//!      here through the same `stlrs` MSTL that augurs wraps, in `f64`, on
//!      the rescaled values, and the components are scaled back;
//!    * **periods** are `periods` when configured. Otherwise they are
//!      detected: the peaks of `augurs`' Welch periodogram (`seasons`
//!      feature; only with at least 32 points) are snapped to the nearest
//!      `candidate_periods` entry within `snap_tolerance` (relative), which
//!      fixes the periodogram reporting 23 for a daily cycle of 24 points,
//!      and dropped if no candidate is near (when there are candidates).
//!      The periodogram is also known to miss a weekly cycle next to a daily
//!      one, so every candidate that fits twice into the history is tested
//!      too. Each tested period is kept only if its MSTL seasonal strength,
//!      `max(0, 1 - var(R) / var(S + R))`, is at least
//!      `min_seasonal_strength` (the strongest `max_periods` are kept), and
//!      the decomposition is redone with the kept periods. Noise has no
//!      strong season (about 0.2 on white noise), so a noisy flat series ends
//!      up with none. Without candidates a detected period is used as the
//!      periodogram reports it (23 for 24): give hints or configure periods.
//! 3. **Expected value.** `trend_last + Σ_p seasonal_p[phase]`, where
//!    `trend_last` is the trend at the end of the fitted history, held flat
//!    until the next refit (hence the short default refit interval: the
//!    trend moves on the scale of the shortest period), and `phase`
//!    continues each period's last fitted cycle by the number of points
//!    since the fit. Without any period the expected value is the median of
//!    the last `min_history` points, recomputed at every point (the note
//!    says so).
//! 4. **Residual and scale.** `r = x - expected`;
//!    `scale = max(1.4826 MAD(recent residuals), min_relative_scale ×
//!    |expected|, min_absolute_scale)` over the last `residual_window`
//!    out-of-sample residuals (seeded with the in-sample remainder of the
//!    decomposition whenever the set of periods changes); `z = r / scale`.
//! 5. **Decision** as in the robust baseline: `z` beyond `threshold` in the
//!    configured `direction` deviates; `min_consecutive` deviating points in
//!    a row are [`Anomalous`](DetectionState::Anomalous);
//!    `score = |z_dir| / (|z_dir| + threshold)` (0.5 at the threshold);
//!    `lower` / `upper` = `expected ∓ threshold × scale`. The explanation's
//!    `baseline` is the expected value (trend + seasonal) and its note names
//!    the periods used and where they came from.
//! 6. The point's residual enters the residual buffer as is; the point
//!    enters the history **winsorised to `[lower, upper]`**, so that an
//!    incident cannot bend the trend of the next decompositions (without
//!    this the trend dips with an outage and the recovery is flagged).
//!
//! # Known properties
//!
//! * **A lasting shift becomes the new normal** once it fills about half of
//!   the residual buffer: from then on the residual MAD is large, the band
//!   wide, the values enter the history unclipped and the trend follows
//!   them. That is about `residual_window / 2` points, like the robust
//!   baseline's `window / 2`.
//! * With few cycles of a long period in the history (a weekly cycle in two
//!   weeks of history), the seasonal component can absorb an incident that
//!   happened one cycle ago; more history helps.
//! * **Non-finite values** are [`NoData`](DetectionState::NoData) with score
//!   0 and do not touch the run of deviating points. So that the seasonal
//!   phase stays aligned, the missing slot is filled in the history with the
//!   expected value (or the last value while no period is in use); the
//!   residual buffer is not touched. The window counts points, not time:
//!   irregular sampling shifts the phase, and timestamps are only echoed (a
//!   non-increasing one gets a note).
//!
//! # Cost
//!
//! Memory per series, allocated when the detector is built: the history
//! (`window` points), the residual buffer (`residual_window`), a sorting
//! buffer (the larger of the two) and one cycle of each seasonal component
//! (at most `window` points in all), i.e. at most
//! `8 × (3 window + 2 residual_window)` bytes: about 50 KiB with the
//! defaults (2016 and 200). A refit allocates temporarily about
//! `8 × window × (periods + 8)` bytes. Per point: a sort of the residual
//! buffer (`O(r log r)`, a few microseconds) plus the amortised refit, MSTL
//! being linear in the window: per point about `refit cost / refit
//! interval`. Measured in a release build on one core of the (loaded)
//! 2-core reference machine: a refit of 2016 points costs about 1 ms with
//! one period (288) and 5 ms with two (24 and 168), 11 ms for 4032 points
//! with 288 and 2016, 1.5 ms for 672 points with 24 and 168. Streaming
//! 10 000 points: about 23 µs per point for 5-minute data with a daily
//! period (window 2016, refit every 60), 25 µs with detection, 150 µs with
//! daily and weekly candidates over two weeks (window 4032), and 250 µs per
//! point for hourly data with daily and weekly periods over four weeks
//! (window 672, refit every 6 points).

use std::collections::VecDeque;

use augurs::mstl::stlrs::MstlParams;
use augurs::seasons::{Detector as _, PeriodogramDetector};
use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, in_direction, invalid, join_notes, score, select_median, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation};
use crate::error::Result;

/// Largest accepted `window` and `residual_window`.
pub const MAX_WINDOW: usize = 100_000;
/// Most configured periods, and most periods kept by detection.
pub const MAX_PERIODS: usize = 4;
/// Most candidate periods.
pub const MAX_CANDIDATES: usize = 8;
/// Fewest history points on which the periodogram is run.
pub const MIN_PERIODOGRAM_POINTS: usize = 32;

const MAD_TO_SIGMA: f64 = 1.4826;
/// Refit interval while no period is in use, and the cap of the automatic
/// interval.
const DEFAULT_REFIT: usize = 60;
/// Rescaled values are clamped to this magnitude before decomposition.
const Y_LIMIT: f64 = 1e9;

/// Parameters of [`SeasonalBaseline`]. Missing fields take their defaults
/// when deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeasonalBaselineParams {
    /// Seasonal periods in points, e.g. `[288, 2016]` for daily and weekly
    /// cycles at 5-minute resolution. Empty (default): detect them.
    pub periods: Vec<usize>,
    /// Periods that detection may report (hints); detected periods are
    /// snapped to them. Empty (default): any detected period.
    pub candidate_periods: Vec<usize>,
    /// Relative distance within which a detected period snaps to a
    /// candidate (default 0.1).
    pub snap_tolerance: f64,
    /// Most periods kept by detection (default 2).
    pub max_periods: usize,
    /// Seasonal strength a detected period needs (default 0.6).
    pub min_seasonal_strength: f64,
    /// Points of history decomposed (default 2016).
    pub window: usize,
    /// Points needed before judging (default 100).
    pub min_history: usize,
    /// Points between refits; default (`None`): a quarter of the shortest
    /// period in use, between 1 and 60 (60 while no period is in use).
    pub refit_every: Option<usize>,
    /// Recent residuals forming the scale (default 200).
    pub residual_window: usize,
    /// Robust z beyond which a point deviates (default 4.0).
    pub threshold: f64,
    /// Deviating points in a row needed for an anomaly (default 3).
    pub min_consecutive: u32,
    /// Which deviations count (default both).
    pub direction: Direction,
    /// Scale floor as a fraction of `|expected|` (default 0.01).
    pub min_relative_scale: f64,
    /// Absolute scale floor (default 1e-9).
    pub min_absolute_scale: f64,
}

impl Default for SeasonalBaselineParams {
    fn default() -> Self {
        Self {
            periods: Vec::new(),
            candidate_periods: Vec::new(),
            snap_tolerance: 0.1,
            max_periods: 2,
            min_seasonal_strength: 0.6,
            window: 2016,
            min_history: 100,
            refit_every: None,
            residual_window: 200,
            threshold: 4.0,
            min_consecutive: 3,
            direction: Direction::Both,
            min_relative_scale: 0.01,
            min_absolute_scale: 1e-9,
        }
    }
}

fn check_periods(name: &'static str, periods: &[usize], window: usize, most: usize) -> Result<()> {
    if periods.len() > most {
        return Err(invalid(name, format!("at most {most} periods, got {}", periods.len())));
    }
    let longest = window / 2;
    for (i, &p) in periods.iter().enumerate() {
        if !(2..=longest).contains(&p) {
            return Err(invalid(name, format!("each period must be between 2 and window / 2 ({longest}), got {p}")));
        }
        if periods.get(..i).is_some_and(|before| before.contains(&p)) {
            return Err(invalid(name, format!("period {p} is listed twice")));
        }
    }
    Ok(())
}

impl SeasonalBaselineParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `window`: 8 ..= [`MAX_WINDOW`]
    /// * `periods`: at most [`MAX_PERIODS`], distinct, each 2 ..= `window / 2`
    /// * `candidate_periods`: at most [`MAX_CANDIDATES`], distinct, each
    ///   2 ..= `window / 2`
    /// * `snap_tolerance`: 0 ..= 0.5
    /// * `max_periods`: 1 ..= [`MAX_PERIODS`]
    /// * `min_seasonal_strength`: 0 ..= 1
    /// * `min_history`: 3 ..= `window`
    /// * `refit_every`: 1 ..= `window` when given
    /// * `residual_window`: 3 ..= [`MAX_WINDOW`]
    /// * `threshold`: finite and > 0
    /// * `min_consecutive`: >= 1
    /// * `min_relative_scale`, `min_absolute_scale`: finite and >= 0
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, 8, MAX_WINDOW)?;
        check_periods("periods", &self.periods, self.window, MAX_PERIODS)?;
        check_periods("candidate_periods", &self.candidate_periods, self.window, MAX_CANDIDATES)?;
        common::between("snap_tolerance", self.snap_tolerance, 0.0, 0.5)?;
        common::between("max_periods", self.max_periods, 1, MAX_PERIODS)?;
        common::between("min_seasonal_strength", self.min_seasonal_strength, 0.0, 1.0)?;
        common::between_param("min_history", self.min_history, 3, "window", self.window)?;
        if let Some(every) = self.refit_every {
            common::between_param("refit_every", every, 1, "window", self.window)?;
        }
        common::between("residual_window", self.residual_window, 3, MAX_WINDOW)?;
        common::positive("threshold", self.threshold)?;
        common::at_least("min_consecutive", self.min_consecutive, 1)?;
        common::scale_floors(self.min_relative_scale, self.min_absolute_scale)
    }

    /// Points of history needed before judging.
    fn warm_up(&self) -> usize {
        let cycles = self.periods.iter().max().map_or(0, |p| p.saturating_mul(2));
        self.min_history.max(cycles)
    }
}

/// Where the periods of a fit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Configured,
    Detected,
}

/// The baseline fitted at the last refit, in series units.
#[derive(Debug, Clone, PartialEq)]
struct Fit {
    /// Trend at the end of the fitted history (or the fallback median).
    level: f64,
    /// Periods used; empty for the median fallback.
    periods: Vec<usize>,
    /// The last fitted cycle of each seasonal component.
    templates: Vec<Vec<f64>>,
    source: Source,
    /// Why the fallback was used, if it was.
    fallback: Option<String>,
}

impl Fit {
    /// Expected value `offset` points after the end of the fitted history
    /// (0 = the first point after it).
    fn expected(&self, offset: usize) -> f64 {
        let seasonal: f64 =
            self.templates.iter().zip(&self.periods).filter_map(|(t, &p)| t.get(offset % p.max(1)).copied()).sum();
        clamp_finite(self.level + clamp_finite(seasonal))
    }

    fn describe(&self) -> String {
        if self.periods.is_empty() {
            let why = self.fallback.as_deref().unwrap_or("no seasonality found");
            return format!("{why}; baseline is the recent median");
        }
        let list: Vec<String> = self.periods.iter().map(ToString::to_string).collect();
        let source = match self.source {
            Source::Configured => "configured",
            Source::Detected => "detected",
        };
        format!("periods {} ({source})", list.join(", "))
    }
}

/// Seasonal (MSTL) baseline detector. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SeasonalBaseline {
    params: SeasonalBaselineParams,
    history: VecDeque<f64>,
    residuals: VecDeque<f64>,
    scratch: Vec<f64>,
    fit: Option<Fit>,
    /// Points (finite or imputed) since the last fit.
    since_fit: usize,
    consecutive: u32,
    timestamps: TimestampOrder,
}

impl SeasonalBaseline {
    /// Build a detector; fails if `params` do not pass
    /// [`SeasonalBaselineParams::validate`].
    pub fn new(params: SeasonalBaselineParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            history: VecDeque::with_capacity(params.window),
            residuals: VecDeque::with_capacity(params.residual_window),
            scratch: Vec::with_capacity(params.window.max(params.residual_window)),
            fit: None,
            since_fit: 0,
            consecutive: 0,
            timestamps: TimestampOrder::default(),
            params,
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &SeasonalBaselineParams {
        &self.params
    }

    /// Periods of the current fit (empty before the first fit or when no
    /// seasonality was found).
    pub fn current_periods(&self) -> &[usize] {
        self.fit.as_ref().map_or(&[], |f| f.periods.as_slice())
    }

    fn push_history(&mut self, value: f64) {
        while self.history.len() >= self.params.window {
            self.history.pop_front();
        }
        self.history.push_back(value);
    }

    fn push_residual(&mut self, r: f64) {
        while self.residuals.len() >= self.params.residual_window {
            self.residuals.pop_front();
        }
        self.residuals.push_back(r);
    }

    /// Points between refits: `refit_every`, or a quarter of the shortest
    /// period in use (1 ..= 60), or 60 without periods.
    fn refit_interval(&self) -> usize {
        if let Some(every) = self.params.refit_every {
            return every;
        }
        self.current_periods().iter().min().map_or(DEFAULT_REFIT, |p| (p / 4).clamp(1, DEFAULT_REFIT))
    }

    /// Median of the last `min_history` history points (the baseline when
    /// no period is in use).
    fn recent_median(&mut self) -> Option<f64> {
        let n = self.history.len();
        let skip = n.saturating_sub(self.params.min_history);
        self.scratch.clear();
        self.scratch.extend(self.history.iter().skip(skip).copied());
        select_median(&mut self.scratch)
    }

    fn history_median(&mut self) -> Option<f64> {
        self.scratch.clear();
        self.scratch.extend(self.history.iter().copied());
        select_median(&mut self.scratch)
    }

    /// Decompose the history and replace the fit; re-seed the residuals when
    /// the periods change.
    fn refit(&mut self) {
        let values: Vec<f64> = self.history.iter().copied().collect();
        let (center, mad) = mad_scale(&mut self.scratch, values.iter().copied());
        let floor = clamp_finite(self.params.min_relative_scale * center.abs()).max(self.params.min_absolute_scale);
        let spread = if mad.max(floor) > 0.0 { mad.max(floor) } else { 1.0 };
        let y: Vec<f64> =
            values.iter().map(|&v| (clamp_finite(v - center) / spread).clamp(-Y_LIMIT, Y_LIMIT)).collect();

        let (source, tested) = if self.params.periods.is_empty() {
            (Source::Detected, self.periods_to_test(&y))
        } else {
            (Source::Configured, self.params.periods.clone())
        };
        let decomposition = if tested.is_empty() {
            Err("no seasonality found".to_string())
        } else {
            decompose(&y, &tested).and_then(|d| match source {
                Source::Configured => Ok((tested.clone(), d)),
                Source::Detected => self.keep_strong(&y, &tested, d),
            })
        };
        let old_periods = self.fit.as_ref().map(|f| f.periods.clone());
        let new_fit = match decomposition {
            Ok((periods, d)) => {
                let n = y.len();
                let level = d.trend.last().map_or(center, |t| clamp_finite(center + clamp_finite(t * spread)));
                let templates = periods
                    .iter()
                    .zip(&d.seasonal)
                    .map(|(&p, s)| {
                        s.get(n.saturating_sub(p)..).unwrap_or(&[]).iter().map(|v| clamp_finite(v * spread)).collect()
                    })
                    .collect();
                let remainder: Vec<f64> = d.remainder.iter().map(|r| clamp_finite(r * spread)).collect();
                (Fit { level, periods, templates, source, fallback: None }, remainder)
            }
            Err(why) => {
                let recent = self.params.min_history.min(values.len());
                let tail = values.get(values.len() - recent..).unwrap_or(&values);
                self.scratch.clear();
                self.scratch.extend(tail.iter().copied());
                let level = select_median(&mut self.scratch).unwrap_or(center);
                let remainder = tail.iter().map(|v| clamp_finite(v - level)).collect();
                (Fit { level, periods: Vec::new(), templates: Vec::new(), source, fallback: Some(why) }, remainder)
            }
        };
        let (fit, remainder) = new_fit;
        if old_periods.as_ref() != Some(&fit.periods) {
            self.residuals.clear();
            let keep = self.params.residual_window.min(remainder.len());
            for &r in remainder.get(remainder.len() - keep..).unwrap_or(&[]) {
                self.push_residual(r);
            }
        }
        self.fit = Some(fit);
        self.since_fit = 0;
    }

    /// Periodogram peaks snapped to the candidates, plus the candidates that
    /// fit twice into the history.
    fn periods_to_test(&self, y: &[f64]) -> Vec<usize> {
        let n = y.len();
        let candidates = &self.params.candidate_periods;
        let mut tested: Vec<usize> = Vec::new();
        let limit = self.params.max_periods.saturating_mul(2);
        if n >= MIN_PERIODOGRAM_POINTS {
            let max_period = u32::try_from(n / 3).unwrap_or(u32::MAX);
            let detector = PeriodogramDetector::builder().max_period(max_period).build();
            // Peaks come weakest first.
            for p in detector.detect(y).into_iter().rev() {
                if tested.len() >= limit {
                    break;
                }
                let p = usize::try_from(p).unwrap_or(usize::MAX);
                let snapped =
                    if candidates.is_empty() { Some(p) } else { snap(p, candidates, self.params.snap_tolerance) };
                if let Some(p) = snapped {
                    if p >= 2 && p.saturating_mul(2) <= n && !tested.contains(&p) {
                        tested.push(p);
                    }
                }
            }
        }
        for &c in candidates {
            if c.saturating_mul(2) <= n && !tested.contains(&c) {
                tested.push(c);
            }
        }
        tested
    }

    /// Keep the tested periods whose seasonal strength is high enough (the
    /// strongest `max_periods`), decomposing again if that changed the set.
    fn keep_strong(
        &self,
        y: &[f64],
        tested: &[usize],
        d: Decomposition,
    ) -> std::result::Result<(Vec<usize>, Decomposition), String> {
        let mut strong: Vec<(usize, f64)> = tested
            .iter()
            .copied()
            .zip(d.strength.iter().copied())
            .filter(|(_, s)| *s >= self.params.min_seasonal_strength && *s > 0.0)
            .collect();
        strong.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        strong.truncate(self.params.max_periods);
        let mut kept: Vec<usize> = strong.into_iter().map(|(p, _)| p).collect();
        kept.sort_unstable();
        if kept.is_empty() {
            return Err("no seasonality found".into());
        }
        if kept.as_slice() == tested {
            return Ok((kept, d));
        }
        decompose(y, &kept).map(|d| (kept, d))
    }
}

/// Median of `values` and their MAD scaled to a standard deviation
/// (`(0, 0)` when empty), using `scratch` for sorting.
fn mad_scale(scratch: &mut Vec<f64>, values: impl Iterator<Item = f64>) -> (f64, f64) {
    scratch.clear();
    scratch.extend(values);
    let Some(median) = select_median(scratch) else {
        return (0.0, 0.0);
    };
    for v in scratch.iter_mut() {
        *v = clamp_finite((*v - median).abs());
    }
    let mad = select_median(scratch).unwrap_or(0.0);
    (median, clamp_finite(MAD_TO_SIGMA * mad))
}

/// Nearest candidate within `tolerance` (relative to the candidate).
fn snap(p: usize, candidates: &[usize], tolerance: f64) -> Option<usize> {
    candidates
        .iter()
        .copied()
        .map(|c| (c, (p as f64 - c as f64).abs() / c as f64))
        .filter(|(_, d)| *d <= tolerance)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// An MSTL decomposition of rescaled values.
#[derive(Debug, Clone)]
struct Decomposition {
    trend: Vec<f64>,
    seasonal: Vec<Vec<f64>>,
    remainder: Vec<f64>,
    strength: Vec<f64>,
}

/// MSTL of `y` with `periods` (each at most half the length); an error
/// message if it fails or gives non-finite components.
fn decompose(y: &[f64], periods: &[usize]) -> std::result::Result<Decomposition, String> {
    let fit = MstlParams::new().fit(y, periods).map_err(|e| format!("decomposition failed: {e}"))?;
    let strength = fit.seasonal_strength();
    let (seasonal, trend, remainder) = fit.into_parts();
    let finite = trend.iter().chain(&remainder).chain(seasonal.iter().flatten()).all(|v| v.is_finite());
    if !finite {
        return Err("decomposition is not finite".into());
    }
    Ok(Decomposition { trend, seasonal, remainder, strength })
}

impl Detector for SeasonalBaseline {
    fn name(&self) -> &'static str {
        "seasonal_baseline"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<String> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        let history = self.history.len();
        let threshold = self.params.threshold;
        let mut detection = Detection::unjudged(
            timestamp_ms,
            value,
            DetectionState::NoData,
            Explanation {
                threshold: Some(threshold),
                consecutive: self.consecutive,
                history,
                ..Explanation::default()
            },
        );

        if !value.is_finite() {
            // Keep the seasonal phase: fill the slot with the expected value.
            let fill = match &self.fit {
                Some(fit) if !fit.periods.is_empty() => Some(fit.expected(self.since_fit)),
                _ => self.history.back().copied(),
            };
            if let Some(fill) = fill {
                self.push_history(fill);
                if self.fit.is_some() {
                    self.since_fit = self.since_fit.saturating_add(1);
                }
            }
            let remark = "ignored (the history slot is filled with the expected value)";
            return common::no_data(timestamp_ms, value, &notes, Some(remark), detection.explanation);
        }

        let warm_up = self.params.warm_up();
        if history < warm_up {
            let median = self.history_median();
            self.consecutive = 0;
            self.push_history(value);
            notes.push(format!("warming up: {history} of {warm_up} points of history"));
            detection.state = DetectionState::WarmingUp;
            detection.expected = median;
            detection.deviation = Deviation::of(value, median);
            detection.explanation.baseline = median;
            detection.explanation.consecutive = 0;
            detection.explanation.note = join_notes(&notes);
            return detection;
        }

        if self.fit.is_none() || self.since_fit >= self.refit_interval() {
            self.refit();
        }
        let (expected, describe) = match &self.fit {
            Some(fit) if !fit.periods.is_empty() => (fit.expected(self.since_fit), fit.describe()),
            fit => {
                let describe = fit.as_ref().map_or_else(String::new, Fit::describe);
                (self.recent_median().unwrap_or(value), describe)
            }
        };
        notes.push(describe);
        let (_, mad) = mad_scale(&mut self.scratch, self.residuals.iter().copied());
        let relative = clamp_finite(self.params.min_relative_scale * expected.abs());
        let absolute = self.params.min_absolute_scale;
        let scale = mad.max(relative).max(absolute);
        if scale > mad {
            notes.push(if relative >= absolute {
                "scale raised to min_relative_scale * |expected|".into()
            } else {
                "scale raised to min_absolute_scale".into()
            });
        }
        let residual = clamp_finite(value - expected);
        let z = if residual == 0.0 {
            0.0
        } else if scale > 0.0 {
            clamp_finite(residual / scale)
        } else {
            clamp_finite(residual.signum() * f64::INFINITY)
        };
        let z_dir = in_direction(self.params.direction, z);
        self.consecutive = if z_dir > threshold { self.consecutive.saturating_add(1) } else { 0 };
        let band = clamp_finite(threshold * scale);
        let (lower, upper) = (clamp_finite(expected - band), clamp_finite(expected + band));
        // The history keeps the value winsorised to the band, so that an
        // incident does not bend the next decomposition (see the docs).
        self.push_history(value.clamp(lower, upper));
        self.push_residual(residual);
        self.since_fit = self.since_fit.saturating_add(1);

        detection.score = score(z_dir, threshold);
        detection.expected = Some(expected);
        detection.lower = Some(lower);
        detection.upper = Some(upper);
        detection.deviation = Deviation::of(value, Some(expected));
        detection.state = if self.consecutive >= self.params.min_consecutive {
            DetectionState::Anomalous
        } else {
            DetectionState::Normal
        };
        detection.explanation = Explanation {
            crossing: None,
            baseline: Some(expected),
            scale: Some(scale),
            z_score: Some(z),
            threshold: Some(threshold),
            consecutive: self.consecutive,
            history,
            note: join_notes(&notes),
        };
        detection
    }

    fn reset(&mut self) {
        self.history.clear();
        self.residuals.clear();
        self.scratch.clear();
        self.fit = None;
        self.since_fit = 0;
        self.consecutive = 0;
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
mod tests;
