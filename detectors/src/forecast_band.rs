//! Forecast band: a point outside the forecast's prediction interval scores.
//!
//! A rolling median ([`RobustBaseline`](crate::RobustBaseline)) expects tomorrow to look like
//! the last hour, so a metric with a strong daily or weekly shape either pages at every
//! morning ramp or needs a threshold so wide that it misses real incidents. This detector
//! instead compares each point with a *forecast* made from the history before it: the
//! seasonal shape, level and trend are part of the expectation, and the prediction interval
//! says how far the series usually strays from it.
//!
//! # Algorithm
//!
//! 1. The detector keeps the last `window` finite values. With fewer than `min_history`
//!    of them a point is [`WarmingUp`](DetectionState::WarmingUp) (score 0).
//! 2. Every `refit_every` points it fits [`forecast`](crate::forecast) (`method`, default the
//!    autoregression ensemble) on the history **before** the current point and predicts the
//!    next `refit_every` points with a prediction interval of nominal coverage `level`.
//!    Seasonal periods are `periods` when given; otherwise they are detected among
//!    `candidate_periods`, or, when that is empty too, among one day and one week at the
//!    series' median sampling interval. If the method fails the detector falls back to
//!    seasonal naive and says so in the note. The cost of a fit is thus amortised over
//!    `refit_every` points.
//! 3. For the `k`-th point after a fit: `expected` is the `k`-step forecast, `lower` and
//!    `upper` the interval. Each half-width is floored at
//!    `max(min_relative_width · |expected|, min_absolute_width)` so that a flat history
//!    does not make every wiggle infinitely far outside.
//! 4. `z = (x − expected) / (upper − expected)` above the forecast and
//!    `(x − expected) / (expected − lower)` below it (negative): `|z| = 1` on the band's edge.
//!    The point deviates when `z > 1` ([`Direction::Up`]), `z < −1` ([`Direction::Down`]) or
//!    `|z| > 1` ([`Direction::Both`]). `score = z_dir / (z_dir + 1)`: 0.5 on the edge,
//!    towards 1 the further outside the band relative to its width.
//! 5. `consecutive` counts the run of deviating points; the state is
//!    [`Anomalous`](DetectionState::Anomalous) once it reaches `min_consecutive`.
//! 6. The point joins the history. The model is fitted on a *cleaned* copy of it: an
//!    episode of gross outliers (points more than three band half-widths from the forecast,
//!    on either side; the episode ends after 3 points in a row that are not) enters the copy
//!    as the cleaned value one longest season earlier (clipped to the band when there is no
//!    season), so that a spike or a short incident neither drags the next forecasts along
//!    (which would flag the return to normal) nor echoes a season later. Once an episode
//!    has more than `max_replaced` gross outliers it is taken as a lasting change: its values
//!    replace the substitutes and are learnt from then on. Mild excursions are always learnt.
//!
//! # Known properties
//!
//! * **A lasting shift becomes the new normal**: the forecast is anchored at the last fit,
//!   so a shift is flagged until the first fit after it has been accepted as a lasting
//!   change (step 6), i.e. for about `max_replaced + refit_every` points.
//! * **Gaps.** A non-finite value is [`NoData`](DetectionState::NoData); when a forecast for
//!   it exists, that forecast takes its place in the history so that the seasonal phase is
//!   kept (the model counts points, not time). `consecutive` is neither advanced nor reset.
//! * **Timestamps** are echoed; they are only used to derive the default period candidates
//!   (median of the last 31 positive spacings). Non-increasing timestamps are accepted and
//!   noted.
//! * **Short histories** cannot show a weekly shape: a forecast made from three days of
//!   data extrapolates the week's rise or fall and misses its turn. `min_history` defaults
//!   to 168 points; with a strong weekly pattern, a week of history is the minimum for
//!   quiet bands.
//! * **Intervals** come from the model's residuals, widened to its in-sample multi-step
//!   errors; they still run a little narrow on real data (M4 hourly: 93.6 % coverage at
//!   nominal 95 %), so `level` defaults to 0.99 and `min_consecutive` to 3.
//!
//! # Cost
//!
//! Memory: the history and its cleaned copy (`2 · window` values, [`MAX_WINDOW`] at most)
//! plus the current forecast (`3 · refit_every` values) and 31 timestamp spacings. Time: one
//! fit per `refit_every` points; the default ensemble fits three autoregressions of about 30
//! lags, `O(window · 30²)` each, plus period detection. With the defaults on 5-minute data
//! (periods 288 and 2016, a full window) that is about 4 ms per fit, 0.2 ms per point, in a
//! release build.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite_or_zero, in_direction, score, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation};
use crate::error::Result;
use crate::forecast::{self, ForecastConfig, Method, SpacingTracker, MIN_HISTORY};

/// Largest accepted `window`.
pub const MAX_WINDOW: usize = 100_000;

/// Parameters of [`ForecastBand`]. Missing fields take their defaults when deserialised;
/// unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastBandParams {
    /// Forecasting method (default the ensemble).
    pub method: Method,
    /// Seasonal periods in points; empty (default): detected.
    pub periods: Vec<usize>,
    /// Periods detection may choose from; empty (default): a day and a week at the median
    /// sampling interval.
    pub candidate_periods: Vec<usize>,
    /// Model the logarithm of positive series (default true).
    pub log: bool,
    /// Finite points of history kept and fitted on (default 4032: two weeks at 5 minutes).
    pub window: usize,
    /// Fewer finite points of history than this means warming up (default 168: a week of hourly data, a day of 10-minute data).
    pub min_history: usize,
    /// Points between fits; each fit forecasts this many points (default 24).
    pub refit_every: usize,
    /// Nominal coverage of the band, strictly between 0 and 1 (default 0.99).
    pub level: f64,
    /// Deviating points in a row needed to report an anomaly (default 3).
    pub min_consecutive: u32,
    /// Which deviations count (default both).
    pub direction: Direction,
    /// Gross outliers an episode may have before it is taken as a lasting change and learnt
    /// (default 48; 0: outliers are always learnt). See step 6 of the algorithm.
    pub max_replaced: usize,
    /// Half-width floor as a fraction of `|expected|` (default 0.01).
    pub min_relative_width: f64,
    /// Absolute half-width floor (default 1e-9).
    pub min_absolute_width: f64,
}

impl Default for ForecastBandParams {
    fn default() -> Self {
        Self {
            method: Method::Ensemble,
            periods: Vec::new(),
            candidate_periods: Vec::new(),
            log: true,
            window: 4032,
            min_history: 168,
            refit_every: 24,
            level: 0.99,
            min_consecutive: 3,
            direction: Direction::Both,
            max_replaced: 48,
            min_relative_width: 0.01,
            min_absolute_width: 1e-9,
        }
    }
}

impl ForecastBandParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `window`: [`MIN_HISTORY`] ..= [`MAX_WINDOW`]
    /// * `min_history`: [`MIN_HISTORY`] ..= `window`
    /// * `refit_every`: 1 ..= `window`
    /// * `level`: strictly between 0 and 1
    /// * `min_consecutive`: >= 1
    /// * `periods`, `candidate_periods`: every entry >= 2
    /// * `min_relative_width`, `min_absolute_width`: finite and >= 0
    pub fn validate(&self) -> Result<()> {
        common::between("window", self.window, MIN_HISTORY, MAX_WINDOW)?;
        common::between_param("min_history", self.min_history, MIN_HISTORY, "window", self.window)?;
        common::between_param("refit_every", self.refit_every, 1, "window", self.window)?;
        common::strictly_between("level", self.level, 0.0, 1.0)?;
        common::at_least("min_consecutive", self.min_consecutive, 1)?;
        common::non_negative("min_relative_width", self.min_relative_width)?;
        common::non_negative("min_absolute_width", self.min_absolute_width)?;
        self.forecast_config(None).validate()
    }

    fn forecast_config(&self, step_ms: Option<i64>) -> ForecastConfig {
        ForecastConfig::for_detector(self.method, &self.periods, &self.candidate_periods, self.log, step_ms)
    }
}

/// The forecast made at the last fit, consumed one point at a time.
#[derive(Debug, Clone)]
struct Band {
    point: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Index of the next point's step.
    next: usize,
    /// Method, periods and fit remarks, for the note.
    summary: String,
    /// Longest seasonal period of the fit.
    period: Option<usize>,
}

/// Distance from the forecast, in band half-widths, beyond which a point is kept out of the
/// fits (step 6 of the algorithm). Mild excursions are left in: they are more often the
/// model's error than an incident, and hiding them would stop the model from correcting.
const CLEAN_Z: f64 = 3.0;

/// Points in a row that are not gross outliers and end an episode.
const EPISODE_GAP: usize = 3;

/// A run of gross outliers, allowing gaps shorter than [`EPISODE_GAP`].
#[derive(Debug, Clone, Copy, Default)]
struct Episode {
    /// Points since the episode began, inside or outside the band.
    len: usize,
    /// Gross outliers.
    outside: usize,
    /// Points that are not gross outliers in a row, at the end.
    quiet: usize,
    /// Taken as a lasting change: values are learnt.
    accepted: bool,
}

/// Forecast-band detector. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ForecastBand {
    params: ForecastBandParams,
    history: VecDeque<f64>,
    band: Option<Band>,
    consecutive: u32,
    /// The history as the model sees it (see step 6 of the algorithm); same length.
    cleaned: VecDeque<f64>,
    /// The current episode of points outside the band, if any.
    episode: Option<Episode>,
    spacing: SpacingTracker,
    timestamps: TimestampOrder,
}

impl ForecastBand {
    /// Build a detector; fails if `params` do not pass [`ForecastBandParams::validate`].
    pub fn new(params: ForecastBandParams) -> Result<Self> {
        params.validate()?;
        let window = params.window;
        Ok(Self {
            params,
            history: VecDeque::with_capacity(window.min(4096)),
            band: None,
            consecutive: 0,
            cleaned: VecDeque::with_capacity(window.min(4096)),
            episode: None,
            spacing: SpacingTracker::default(),
            timestamps: TimestampOrder::default(),
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &ForecastBandParams {
        &self.params
    }

    /// Append a point (and what the model sees of it), dropping the oldest first.
    fn push(&mut self, value: f64, seen: f64) {
        while self.history.len() >= self.params.window {
            self.history.pop_front();
            self.cleaned.pop_front();
        }
        self.history.push_back(value);
        self.cleaned.push_back(seen);
    }

    /// Append a judged point; `gross` says whether it is a gross outlier (see [`CLEAN_Z`]).
    fn push_judged(&mut self, value: f64, gross: bool, lower: f64, upper: f64) {
        if !gross {
            if let Some(ep) = self.episode.as_mut() {
                ep.len += 1;
                ep.quiet += 1;
                if ep.quiet >= EPISODE_GAP {
                    self.episode = None;
                }
            }
            self.push(value, value);
            return;
        }
        let ep = self.episode.get_or_insert(Episode::default());
        ep.len += 1;
        ep.outside += 1;
        ep.quiet = 0;
        if ep.accepted {
            self.push(value, value);
            return;
        }
        if ep.outside > self.params.max_replaced {
            // A lasting change: the model learns the episode's values.
            ep.accepted = true;
            let back = ep.len.saturating_sub(1).min(self.cleaned.len());
            let start = self.cleaned.len() - back;
            for (seen, raw) in self.cleaned.iter_mut().zip(&self.history).skip(start) {
                *seen = *raw;
            }
            self.push(value, value);
            return;
        }
        let period = self.band.as_ref().and_then(|b| b.period);
        let substitute = period
            .filter(|&p| p <= self.cleaned.len())
            .and_then(|p| self.cleaned.get(self.cleaned.len() - p).copied())
            .unwrap_or_else(|| value.clamp(lower, upper));
        self.push(value, substitute);
    }

    /// The band for the current point, refitting when the last forecast is used up.
    fn current(&mut self) -> Option<(f64, f64, f64, usize, String)> {
        let due = self.band.as_ref().is_none_or(|b| b.next >= b.point.len());
        if due {
            let history: Vec<f64> = self.cleaned.iter().copied().collect();
            let config = self.params.forecast_config(self.spacing.median_ms());
            self.band = forecast::forecast_with_fallback(&history, &config, self.params.refit_every, self.params.level)
                .ok()
                .map(|(fitted, f)| Band {
                    period: fitted.periods().last().copied(),
                    summary: fitted.summary(),
                    point: f.point,
                    lower: f.lower,
                    upper: f.upper,
                    next: 0,
                });
        }
        let band = self.band.as_mut()?;
        let k = band.next;
        band.next += 1;
        let expected = *band.point.get(k)?;
        let lower = *band.lower.get(k)?;
        let upper = *band.upper.get(k)?;
        Some((expected, lower, upper, k + 1, band.summary.clone()))
    }
}

impl Detector for ForecastBand {
    fn name(&self) -> &'static str {
        "forecast_band"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<String> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        self.spacing.observe(timestamp_ms);
        let history = self.history.len();
        let threshold = Some(1.0);
        // Without a band a point is not judged: warming up, or no data when
        // the value is not finite.
        let unjudged = |consecutive: u32, notes: &[String]| {
            let state = if value.is_finite() { DetectionState::WarmingUp } else { DetectionState::NoData };
            Detection::unjudged(
                timestamp_ms,
                value,
                state,
                Explanation { threshold, consecutive, history, note: Some(notes.join("; ")), ..Explanation::default() },
            )
        };

        if history < self.params.min_history {
            if value.is_finite() {
                self.consecutive = 0;
                self.push(value, value);
                notes.push(format!("warming up: {history} of {} points of history", self.params.min_history));
            } else {
                notes.push(common::not_finite_note(Some("ignored")));
            }
            return unjudged(self.consecutive, &notes);
        }

        let Some((expected, lower, upper, step, summary)) = self.current() else {
            // Unreachable with at least MIN_HISTORY finite points; kept panic-free.
            if value.is_finite() {
                self.push(value, value);
            }
            notes.push("no forecast available".into());
            return unjudged(self.consecutive, &notes);
        };
        let fit_note = format!("{summary}; {step} of {} steps after the fit", self.params.refit_every);
        let floor =
            clamp_finite_or_zero(self.params.min_relative_width * expected.abs()).max(self.params.min_absolute_width);
        let half_up = clamp_finite_or_zero(upper - expected).max(floor);
        let half_down = clamp_finite_or_zero(expected - lower).max(floor);
        let band_lower = clamp_finite_or_zero(expected - half_down);
        let band_upper = clamp_finite_or_zero(expected + half_up);

        if !value.is_finite() {
            // Keep the seasonal phase: the forecast stands in for the missing value.
            self.push(expected, expected);
            let explanation = Explanation {
                baseline: Some(expected),
                threshold,
                consecutive: self.consecutive,
                history,
                ..Explanation::default()
            };
            let remark = "ignored (forecast used in the history)";
            let mut d = common::no_data(timestamp_ms, value, &notes, Some(remark), explanation);
            d.explanation.note = d.explanation.note.map(|n| format!("{n}; {fit_note}"));
            return Detection { expected: Some(expected), lower: Some(band_lower), upper: Some(band_upper), ..d };
        }

        let diff = clamp_finite_or_zero(value - expected);
        let (z, scale) = if diff >= 0.0 {
            (clamp_finite_or_zero(diff / half_up), half_up)
        } else {
            (clamp_finite_or_zero(diff / half_down), half_down)
        };
        let z_dir = in_direction(self.params.direction, z);
        let deviates = z_dir > 1.0;
        if deviates {
            self.consecutive = self.consecutive.saturating_add(1);
        } else {
            self.consecutive = 0;
        }
        let state = if deviates && self.consecutive >= self.params.min_consecutive {
            DetectionState::Anomalous
        } else {
            DetectionState::Normal
        };
        if floor >= clamp_finite_or_zero(upper - expected) || floor >= clamp_finite_or_zero(expected - lower) {
            notes.push("band widened to its floor".into());
        }
        notes.push(fit_note);
        self.push_judged(value, z.abs() > CLEAN_Z, band_lower, band_upper);
        match self.episode {
            Some(ep) if ep.accepted => {
                notes.push("a lasting change: learnt from its values".into());
            }
            Some(ep) => notes.push(format!("{} gross outliers kept out of the fits", ep.outside)),
            None => {}
        }
        Detection {
            timestamp_ms,
            value,
            // The band's edges are at z = ±1, so the threshold is 1.
            score: score(z_dir, 1.0),
            expected: Some(expected),
            lower: Some(band_lower),
            upper: Some(band_upper),
            deviation: Deviation::of(value, Some(expected)),
            state,
            explanation: Explanation {
                crossing: None,
                baseline: Some(expected),
                scale: Some(scale),
                z_score: Some(z),
                threshold,
                consecutive: self.consecutive,
                history,
                note: Some(notes.join("; ")),
            },
        }
    }

    fn reset(&mut self) {
        self.history.clear();
        self.band = None;
        self.consecutive = 0;
        self.cleaned.clear();
        self.episode = None;
        self.spacing.reset();
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
    use crate::harness::{
        check_constant_series, check_detects_step, check_invariants, edge_case_series, run_series, timestamp_at,
        XorShift64,
    };

    /// Small, fast parameters for the compliance checks (which run each series many times).
    fn small() -> ForecastBandParams {
        ForecastBandParams { window: 200, min_history: 30, refit_every: 50, ..ForecastBandParams::default() }
    }

    fn make(params: ForecastBandParams) -> impl Fn() -> Box<dyn Detector> {
        move || -> Box<dyn Detector> { Box::new(ForecastBand::new(params.clone()).expect("valid params")) }
    }

    /// Hourly series with a daily shape, a weekly shape and noise.
    fn seasonal(n: usize, seed: u64) -> Vec<(i64, f64)> {
        let mut rng = XorShift64::new(seed);
        (0..n)
            .map(|i| {
                let t = i as f64;
                let daily = 20.0 * (2.0 * std::f64::consts::PI * t / 24.0).sin();
                let weekly = 8.0 * (2.0 * std::f64::consts::PI * t / 168.0).cos();
                (i64::try_from(i).unwrap_or(0) * 3_600_000, 100.0 + daily + weekly + rng.uniform(-2.0, 2.0))
            })
            .collect()
    }

    #[test]
    fn is_registered_by_name() {
        let params = vec![
            ("window".to_string(), "500".to_string()),
            ("periods".to_string(), "[24, 168]".to_string()),
            ("method".to_string(), "mstl_ets".to_string()),
            ("direction".to_string(), "up".to_string()),
        ];
        let d = crate::registry::build("forecast_band", &params).expect("builds");
        assert_eq!((d.name(), d.max_retained_points()), ("forecast_band", 500));
        let bad = vec![("refit_every".to_string(), "0".to_string())];
        let e = crate::registry::build("forecast_band", &bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("refit_every"), "{e}");
    }

    #[test]
    fn defaults_are_valid_and_bad_params_are_named() {
        assert!(ForecastBandParams::default().validate().is_ok());
        let cases: [(&str, ForecastBandParams); 7] = [
            ("window", ForecastBandParams { window: 2, ..small() }),
            ("min_history", ForecastBandParams { min_history: 500, ..small() }),
            ("refit_every", ForecastBandParams { refit_every: 0, ..small() }),
            ("level", ForecastBandParams { level: 1.0, ..small() }),
            ("min_consecutive", ForecastBandParams { min_consecutive: 0, ..small() }),
            ("min_relative_width", ForecastBandParams { min_relative_width: f64::NAN, ..small() }),
            ("periods", ForecastBandParams { periods: vec![1], ..small() }),
        ];
        for (name, params) in cases {
            let e = ForecastBand::new(params).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("`{name}`")), "{name}: {e}");
        }
    }

    #[test]
    fn passes_the_invariants_on_edge_cases_and_constants() {
        for (k, points) in edge_case_series().iter().enumerate() {
            assert_eq!(check_invariants(&make(small()), points), Ok(()), "edge case {k}");
        }
        assert_eq!(check_constant_series(&make(small())), Ok(()));
        let points = seasonal(400, 3);
        assert_eq!(check_invariants(&make(small()), &points), Ok(()));
    }

    #[test]
    fn flags_a_step() {
        assert_eq!(check_detects_step(&make(small()), 5), Ok(()));
    }

    #[test]
    fn flags_a_level_shift_on_a_seasonal_series_and_not_the_seasonality() {
        let mut points = seasonal(24 * 7 * 3, 7);
        let shift_at = 24 * 7 * 3 - 30;
        for p in points.iter_mut().skip(shift_at) {
            p.1 += 25.0;
        }
        let params = ForecastBandParams { window: 1000, ..ForecastBandParams::default() };
        let mut det = ForecastBand::new(params).expect("valid");
        let detections = run_series(&mut det, &points);
        // The seasonal shape itself is not anomalous once the detector has warmed up.
        let false_positives = detections.iter().take(shift_at).filter(|d| d.is_anomaly()).count();
        assert_eq!(false_positives, 0);
        let first = detections.iter().skip(shift_at).position(|d| d.is_anomaly());
        assert!(matches!(first, Some(k) if k < 5), "first flagged {first:?}");
        let d = detections.get(shift_at + 3).expect("exists");
        assert!(d.score > 0.5 && d.deviation == Deviation::Above, "{d:?}");
        assert!(d.explanation.note.as_deref().is_some_and(|n| n.contains("periods 24, 168")), "{d:?}");
    }

    #[test]
    fn a_short_incident_is_kept_out_of_the_fits_and_a_lasting_change_is_learnt() {
        let n = 24 * 7 * 4;
        let start = n - 60;
        let params = ForecastBandParams { window: 1000, ..ForecastBandParams::default() };
        // A 12-point incident: flagged while it lasts, and the return to normal is not.
        let mut points = seasonal(n, 21);
        for p in points.iter_mut().skip(start).take(12) {
            p.1 += 40.0;
        }
        let mut det = ForecastBand::new(params.clone()).expect("valid");
        let detections = run_series(&mut det, &points);
        let flagged: Vec<usize> =
            detections.iter().enumerate().filter(|(_, d)| d.is_anomaly()).map(|(i, _)| i).collect();
        assert!(
            !flagged.is_empty() && flagged.iter().all(|&i| (start..start + 12).contains(&i)),
            "flagged {flagged:?}, incident at {start}..{}",
            start + 12
        );
        let during = detections.get(start + 5).expect("exists");
        assert!(
            during.explanation.note.as_deref().is_some_and(|n| n.contains("gross outliers kept out of the fits")),
            "{during:?}"
        );
        // A lasting shift: flagged, then learnt after max_replaced gross outliers.
        let mut points = seasonal(n, 22);
        let shift = n - 24 * 7;
        for p in points.iter_mut().skip(shift) {
            p.1 += 60.0;
        }
        let mut det = ForecastBand::new(params).expect("valid");
        let detections = run_series(&mut det, &points);
        let last_flag = detections.iter().rposition(|d| d.is_anomaly());
        assert!(detections.get(shift + 3).is_some_and(Detection::is_anomaly), "not flagged at the shift");
        assert!(
            matches!(last_flag, Some(i) if i < shift + 48 + 3 * 24),
            "still flagged at {last_flag:?}, shift at {shift}"
        );
    }

    #[test]
    fn score_grows_with_distance_outside_the_band() {
        let points = seasonal(400, 11);
        let mut a = ForecastBand::new(small()).expect("valid");
        let mut b = ForecastBand::new(small()).expect("valid");
        run_series(&mut a, &points);
        run_series(&mut b, &points);
        let t = timestamp_at(400);
        let da = a.update(t, 500.0);
        let db = b.update(t, 1000.0);
        let upper = da.upper.expect("band");
        assert!(da.score > 0.5 && db.score > da.score, "{da:?} {db:?}");
        assert!(upper > da.expected.expect("expected"));
        let mut c = ForecastBand::new(small()).expect("valid");
        run_series(&mut c, &points);
        let dc = c.update(t, da.expected.expect("expected"));
        assert!(dc.score < 0.5 && dc.state == DetectionState::Normal, "{dc:?}");
    }

    #[test]
    fn direction_limits_what_counts() {
        let points = seasonal(400, 5);
        let params = ForecastBandParams { direction: Direction::Up, min_consecutive: 1, ..small() };
        let mut det = ForecastBand::new(params).expect("valid");
        run_series(&mut det, &points);
        let d = det.update(timestamp_at(400), -1000.0);
        assert_eq!((d.score, d.state), (0.0, DetectionState::Normal));
        let d = det.update(timestamp_at(401), 1000.0);
        assert_eq!(d.state, DetectionState::Anomalous);
    }

    #[test]
    fn a_gap_keeps_memory_bounded_and_is_reported() {
        let mut points = seasonal(300, 9);
        for p in points.iter_mut().skip(100).step_by(7) {
            p.1 = f64::NAN;
        }
        let mut det = ForecastBand::new(small()).expect("valid");
        let detections = run_series(&mut det, &points);
        assert!(det.retained_points() <= 200);
        let nodata = detections.iter().filter(|d| d.state == DetectionState::NoData).count();
        assert_eq!(nodata, points.iter().filter(|p| p.1.is_nan()).count());
        assert_eq!(check_invariants(&make(small()), &points), Ok(()));
    }
}
