//! Forecasters with prediction intervals, shared by the forecast band and capacity detectors
//! and by the M4 benchmark.
//!
//! Two detectors need to know what a series *should* do next: the forecast band (is this
//! point plausible?) and the capacity detector (when will the series cross a limit?). Both
//! need the same thing: fit on a bounded history, predict `h` steps with a point forecast and
//! a prediction interval. This module is that seam, kept pure (no clock, no I/O) so that the
//! same code is scored on the M4 competition data and used live, and so that a detection can
//! be replayed exactly.
//!
//! # Models ([`Method`])
//!
//! * [`SeasonalNaive`](Method::SeasonalNaive): repeat the last cycle of the shortest period.
//!   Strong on metrics dominated by a daily pattern and the yardstick any model must beat.
//! * [`Naive2`](Method::Naive2): the M4 benchmark, reproduced exactly: when the 90 %
//!   autocorrelation test at lag `m` says "seasonal", a classical multiplicative decomposition
//!   (centred moving average) removes the seasonal indices, the last adjusted value is carried
//!   forward and re-seasonalised with the last `m` indices.
//! * [`MstlEts`](Method::MstlEts): MSTL decomposition (one seasonal component per period,
//!   `stlrs` through augurs), then augurs' AutoETS (non-seasonal: ANN, AAN, AAdN) on the
//!   seasonally adjusted series; the seasonal components are continued by repeating their
//!   last cycle. Equivalent to augurs' `MSTLModel` with an `AutoETSTrendModel`, computed in
//!   `f64` on a standardised series.
//! * [`Theta`](Method::Theta): the classic Theta method (SES with drift equal to half the
//!   linear-trend slope, Hyndman & Billah 2003) on the MSTL-adjusted series.
//! * [`Autoregression`](Method::Autoregression): a linear autoregression with an intercept
//!   on the short lags `1..=24` and, for every seasonal period `p`, the lags `p − 1, p, p + 1`
//!   (the neighbours let the model follow a daily shape that drifts by an hour, as some M4
//!   series do), fitted by least squares with a tiny ridge term for collinear lags, forecast
//!   recursively. Intervals come from the model's MA(∞) weights and the residual variance,
//!   widened to the root mean squared `k`-step error of an in-sample backtest (50 forecast
//!   origins) where that is larger, which catches a model that fits one step ahead well but
//!   drifts over the horizon.
//! * [`Ensemble`](Method::Ensemble) (the default): the per-step median of three
//!   autoregressions: short lags `1..=24` and `1..=48` on the log scale and `1..=24` on the
//!   original scale (two on the original scale when the log is not allowed). Each member
//!   fails on different series and the median ignores the one that is off. The interval is
//!   the per-step median of the members' bounds (quantile averaging), widened to contain the
//!   point forecast. On the M4 hourly series it scores OWA 0.409, where seasonal naive
//!   scores 0.627, MSTL-ETS 0.569 and the median of MSTL-ETS, Theta and the daily and weekly
//!   seasonal naive forecasts 0.529; see `warden bench m4`. (The lag sets were chosen on
//!   that data, so 0.409 is an in-sample figure for the design, not a competition entry.)
//!
//! An autoregression whose forecast runs away (faster than twice the full range of the
//! history per history length) is rejected for that prediction, so an explosive fit never
//! reaches a detector.
//!
//! # Seasonal periods
//!
//! Periods are counted in points. [`ForecastConfig::periods`] fixes them; when it is empty,
//! [`detect_periods`] looks among [`ForecastConfig::candidate_periods`] (e.g. a day and a week
//! at the series' sampling interval): augurs' periodogram gives hints that are snapped to the
//! nearest candidate within 10 % (the periodogram reports 23 for a daily period of 24 and
//! misses weekly periods with few cycles; its resolution is coarse for long periods), and a
//! candidate the periodogram missed is kept when the autocorrelation at its lag is at least
//! [`DETECT_MIN_ACF`], computed on the series minus its moving average over the candidate
//! (level and trend removed) or, when the candidate is a multiple of a shorter detected
//! period, on the differences between consecutive seasons of that period (so that a daily
//! shape alone does not pass for a weekly one). A period is only used with at least two
//! full cycles of history.
//!
//! # Data problems
//!
//! [`fit`] rejects an empty history, one shorter than [`MIN_HISTORY`] and one with a
//! non-finite value ([`Error::InvalidInput`]); callers that stream data drop non-finite
//! values first. A constant history is forecast as that constant with a zero-width interval.
//! Huge magnitudes are handled by fitting a standardised copy of the series. Every output is
//! checked to be finite. A member of the ensemble that cannot be fitted is left out and named
//! in [`Fitted::notes`] (with no member left, the ensemble is seasonal naive); one whose
//! prediction fails or is not finite is left out of that prediction. A single-model
//! [`Method`] whose model fails returns [`Error::Model`]; so does a call into augurs that
//! panics (augurs has `unimplemented!()` paths, e.g. seasonal ETS, which this module never
//! requests, but a library panic must not take a monitoring daemon down).
//! [`forecast_with_fallback`] turns any model failure into a seasonal naive forecast with a
//! note; the detectors use it.
//!
//! # Cost
//!
//! Seasonal naive and Naive2 are `O(n)`. An autoregression with `q` lags costs `O(n q²)` to
//! fit and `O(50 h q)` to predict with its backtest (about 0.35 ms for an M4 hourly series,
//! `q = 31`, `h = 48`, in a release build). MSTL is a few loess passes, `O(n)` per period; AutoETS fits three small models by
//! Nelder-Mead, `O(n)` per likelihood evaluation (about 10 ms per M4 hourly series).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use augurs::ets::{AutoETS, FittedAutoETS};
use augurs::mstl::stlrs;
use augurs::seasons::{Detector as _, PeriodogramDetector};
use augurs::{Fit as _, Predict as _};
use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite_or_zero, sort_median};
use crate::error::{Error, Result};

/// Fewest points [`fit`] accepts.
pub const MIN_HISTORY: usize = 3;

/// Smallest autocorrelation at a candidate lag for [`detect_periods`] to keep a candidate the
/// periodogram did not report.
pub const DETECT_MIN_ACF: f64 = 0.25;

/// Relative distance within which a periodogram hint is snapped to a candidate period.
const SNAP_TOLERANCE: f64 = 0.1;

/// Fewest points for which the periodogram is consulted.
const PERIODOGRAM_MIN_POINTS: usize = 64;

/// Forecasting model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Repeat the last cycle of the shortest period (the last value without a period).
    #[serde(alias = "snaive")]
    SeasonalNaive,
    /// M4's Naive2: naive on the classically (multiplicatively) seasonally adjusted series.
    Naive2,
    /// MSTL decomposition plus AutoETS on the seasonally adjusted series.
    MstlEts,
    /// Classic Theta (SES with drift) on the MSTL seasonally adjusted series.
    Theta,
    /// Linear autoregression on short and seasonal lags.
    #[serde(alias = "ar")]
    Autoregression,
    /// Median of three autoregressions (log and original scale).
    #[default]
    #[serde(alias = "default")]
    Ensemble,
}

impl Method {
    /// Every method, in documentation order.
    pub const ALL: [Method; 6] = [
        Method::SeasonalNaive,
        Method::Naive2,
        Method::MstlEts,
        Method::Theta,
        Method::Autoregression,
        Method::Ensemble,
    ];

    /// Short stable name (`snaive`, `naive2`, `mstl_ets`, `theta`, `ar`, `ensemble`).
    pub fn name(self) -> &'static str {
        match self {
            Method::SeasonalNaive => "snaive",
            Method::Naive2 => "naive2",
            Method::MstlEts => "mstl_ets",
            Method::Theta => "theta",
            Method::Autoregression => "ar",
            Method::Ensemble => "ensemble",
        }
    }
}

impl FromStr for Method {
    type Err = Error;

    /// Accepts the short names, `seasonal_naive` and `default` (the ensemble).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "snaive" | "seasonal_naive" => Ok(Method::SeasonalNaive),
            "naive2" => Ok(Method::Naive2),
            "mstl_ets" => Ok(Method::MstlEts),
            "theta" => Ok(Method::Theta),
            "ar" | "autoregression" => Ok(Method::Autoregression),
            "ensemble" | "default" => Ok(Method::Ensemble),
            other => Err(Error::InvalidParam {
                name: "method",
                message: format!(
                    "unknown forecasting method `{other}`; known: snaive, naive2, mstl_ets, theta, ar, ensemble (default)"
                ),
            }),
        }
    }
}

/// How a forecaster is fitted. Missing fields take their defaults when deserialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// The model (default [`Method::Ensemble`]).
    pub method: Method,
    /// Seasonal periods in points. Empty (the default): detect among `candidate_periods`.
    pub periods: Vec<usize>,
    /// Known periods that detection may report (e.g. a day and a week in points). Empty
    /// with empty `periods`: the series is treated as non-seasonal.
    pub candidate_periods: Vec<usize>,
    /// Model the logarithm of a positive series (multiplicative seasonality and errors that
    /// grow with the level); ignored with a note when a value is not positive. Applies to
    /// MSTL-ETS, Theta, the autoregression and the log members of the ensemble; not to the
    /// naive methods. Default `true`.
    pub log: bool,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self { method: Method::Ensemble, periods: Vec::new(), candidate_periods: Vec::new(), log: true }
    }
}

impl ForecastConfig {
    /// A configuration with `method` and fixed `periods`, everything else default.
    pub fn new(method: Method, periods: Vec<usize>) -> Self {
        Self { method, periods, ..Self::default() }
    }

    /// The configuration of a forecasting detector (forecast band, capacity) with these
    /// settings. Without configured `candidate_periods`, detection may choose a day or a week
    /// at the median sampling interval `step_ms` ([`calendar_periods`]), or nothing while the
    /// interval is unknown.
    pub(crate) fn for_detector(
        method: Method,
        periods: &[usize],
        candidate_periods: &[usize],
        log: bool,
        step_ms: Option<i64>,
    ) -> Self {
        let candidate_periods = if candidate_periods.is_empty() {
            step_ms.map(calendar_periods).unwrap_or_default()
        } else {
            candidate_periods.to_vec()
        };
        Self { method, periods: periods.to_vec(), candidate_periods, log }
    }

    /// Periods and candidates must be at least 2 points.
    pub fn validate(&self) -> Result<()> {
        for (name, list) in [("periods", &self.periods), ("candidate_periods", &self.candidate_periods)] {
            if let Some(p) = list.iter().find(|&&p| p < 2) {
                return Err(Error::InvalidParam {
                    name,
                    message: format!("every period must be at least 2 points, got {p}"),
                });
            }
        }
        Ok(())
    }
}

/// Point forecasts and a prediction interval for the next `point.len()` steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Point forecasts, one per step ahead.
    pub point: Vec<f64>,
    /// Lower bounds of the prediction interval (`<= point`).
    pub lower: Vec<f64>,
    /// Upper bounds of the prediction interval (`>= point`).
    pub upper: Vec<f64>,
    /// Nominal coverage of the interval, in `(0, 1)`.
    pub level: f64,
}

impl Forecast {
    fn with_capacity(h: usize, level: f64) -> Self {
        Self { point: Vec::with_capacity(h), lower: Vec::with_capacity(h), upper: Vec::with_capacity(h), level }
    }

    fn push(&mut self, point: f64, lower: f64, upper: f64) {
        let point = clamp_finite_or_zero(point);
        let lower = clamp_finite_or_zero(lower).min(point);
        let upper = clamp_finite_or_zero(upper).max(point);
        self.point.push(point);
        self.lower.push(lower);
        self.upper.push(upper);
    }

    fn all_finite(&self) -> bool {
        self.point.iter().chain(&self.lower).chain(&self.upper).all(|v| v.is_finite())
    }
}

/// A fitted forecaster; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Fitted {
    method: Method,
    periods: Vec<usize>,
    history_len: usize,
    notes: Vec<String>,
    members: Vec<Member>,
}

impl Fitted {
    /// The method that was fitted.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The seasonal periods in use (configured or detected, with enough history).
    pub fn periods(&self) -> &[usize] {
        &self.periods
    }

    /// Number of points the model was fitted on.
    pub fn history_len(&self) -> usize {
        self.history_len
    }

    /// Remarks about the fit: dropped periods, ignored options, ensemble members left out.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The method, the periods and the remarks of the fit in one line, for a detection's
    /// note, e.g. `forecast by mstl_ets (periods 24, 168); …`.
    pub(crate) fn summary(&self) -> String {
        let mut s = format!("forecast by {}", self.method().name());
        if self.periods().is_empty() {
            s.push_str(" (no seasonal period)");
        } else {
            let periods: Vec<String> = self.periods().iter().map(ToString::to_string).collect();
            s.push_str(&format!(" (periods {})", periods.join(", ")));
        }
        for note in self.notes() {
            s.push_str("; ");
            s.push_str(note);
        }
        s
    }

    /// Forecast `horizon` steps with a prediction interval of nominal coverage `level`
    /// (strictly between 0 and 1, e.g. 0.95). Every number is finite.
    pub fn predict(&self, horizon: usize, level: f64) -> Result<Forecast> {
        common::strictly_between("level", level, 0.0, 1.0)?;
        let z = normal_quantile(0.5 + level / 2.0);
        let mut forecasts = Vec::with_capacity(self.members.len());
        let mut last_error = None;
        for member in &self.members {
            match member.predict(horizon, level, z) {
                Ok(f) if f.all_finite() => forecasts.push(f),
                Ok(_) => {
                    last_error = Some(Error::Model { model: member.name(), message: "forecast is not finite".into() })
                }
                Err(e) => last_error = Some(e),
            }
        }
        if forecasts.len() == 1 {
            return forecasts.pop().ok_or_else(|| no_forecast(self.method));
        }
        if forecasts.is_empty() {
            return Err(last_error.unwrap_or_else(|| no_forecast(self.method)));
        }
        let mut out = Forecast::with_capacity(horizon, level);
        let mut buf = Vec::with_capacity(forecasts.len());
        for k in 0..horizon {
            let mut column = |pick: fn(&Forecast) -> &Vec<f64>| {
                buf.clear();
                buf.extend(forecasts.iter().filter_map(|f| pick(f).get(k).copied()));
                sort_median(&mut buf).unwrap_or(0.0)
            };
            let point = column(|f| &f.point);
            let lower = column(|f| &f.lower);
            let upper = column(|f| &f.upper);
            out.push(point, lower, upper);
        }
        Ok(out)
    }
}

fn no_forecast(method: Method) -> Error {
    Error::Model { model: method.name(), message: "no model produced a forecast".into() }
}

/// Fit `config.method` on `history` (oldest first, all finite, at least [`MIN_HISTORY`]
/// points).
pub fn fit(history: &[f64], config: &ForecastConfig) -> Result<Fitted> {
    config.validate()?;
    if history.len() < MIN_HISTORY {
        return Err(Error::InvalidInput {
            what: "history".into(),
            message: format!("{} points; a forecast needs at least {MIN_HISTORY}", history.len()),
        });
    }
    if let Some(i) = history.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidInput { what: "history".into(), message: format!("value {i} is not finite") });
    }
    let n = history.len();
    let mut notes = Vec::new();
    let periods = if config.periods.is_empty() {
        detect_periods(history, &config.candidate_periods)
    } else {
        let mut usable: Vec<usize> = Vec::new();
        for &p in &config.periods {
            if p.saturating_mul(2) <= n {
                usable.push(p);
            } else {
                notes.push(format!("period {p} dropped: fewer than two cycles of history"));
            }
        }
        usable.sort_unstable();
        usable.dedup();
        usable
    };

    let first = history.first().copied().unwrap_or(0.0);
    if history.iter().all(|&v| v == first) {
        notes.push("constant history".into());
        return Ok(Fitted {
            method: config.method,
            periods,
            history_len: n,
            notes,
            members: vec![Member::Constant(first)],
        });
    }

    let members = match config.method {
        Method::SeasonalNaive => {
            let m = periods.first().copied().unwrap_or(1);
            vec![Member::SeasonalNaive(SeasonalNaive::fit(history, m))]
        }
        Method::Naive2 => {
            let m = periods.first().copied().unwrap_or(1);
            let (fit, note) = Naive2::fit(history, m);
            notes.extend(note);
            vec![Member::Naive2(fit)]
        }
        Method::MstlEts | Method::Theta => fit_decomposed(history, &periods, config, &mut notes)?,
        Method::Autoregression => {
            let log = use_log(history, config.log, &mut notes);
            vec![fit_ar_member(history, &periods, AR_SHORT_LAGS, log)?]
        }
        Method::Ensemble => fit_ensemble(history, &periods, config, &mut notes),
    };
    Ok(Fitted { method: config.method, periods, history_len: n, notes, members })
}

fn use_log(history: &[f64], wanted: bool, notes: &mut Vec<String>) -> bool {
    if !wanted {
        return false;
    }
    if history.iter().all(|&v| v > 0.0) {
        true
    } else {
        notes.push("log transform skipped: the history has values <= 0".into());
        false
    }
}

fn fit_decomposed(
    history: &[f64],
    periods: &[usize],
    config: &ForecastConfig,
    notes: &mut Vec<String>,
) -> Result<Vec<Member>> {
    let log = use_log(history, config.log, notes);
    let scaler = Scaler::new(history, log);
    let z: Vec<f64> = history.iter().map(|&v| scaler.forward(v)).collect();
    let decomposition = decompose(&z, periods)?;
    let trend = if config.method == Method::Theta {
        Trend::Theta(ThetaFit::fit(&decomposition.adjusted))
    } else {
        Trend::Ets(Box::new(fit_ets(&decomposition.adjusted)?))
    };
    Ok(vec![Member::Scaled(Scaled { scaler, seasonal_tails: decomposition.tails, trend })])
}

/// Short lags of the autoregression (a day of hourly data).
const AR_SHORT_LAGS: usize = 24;

/// Short lags of the ensemble's second autoregression (two days of hourly data).
const AR_LONG_SHORT_LAGS: usize = 48;

/// Ridge penalty per row on the autoregression's coefficients, in standardised units: just
/// enough to keep collinear lags (a smooth or linear history) solvable.
const AR_RIDGE: f64 = 1e-6;

fn fit_ar_member(history: &[f64], periods: &[usize], short: usize, log: bool) -> Result<Member> {
    let scaler = Scaler::new(history, log);
    let z: Vec<f64> = history.iter().map(|&v| scaler.forward(v)).collect();
    let n = z.len();
    let mut lags: Vec<usize> = (1..=short.min(n / 4).max(1)).collect();
    for &p in periods {
        for l in [p.saturating_sub(1), p, p + 1] {
            if l >= 1 && l.saturating_mul(2) + 20 <= n {
                lags.push(l);
            }
        }
    }
    lags.sort_unstable();
    lags.dedup();
    let ar = ArFit::fit(&z, &lags, AR_RIDGE).ok_or_else(|| Error::Model {
        model: "ar",
        message: format!(
            "cannot fit {} lags (largest {}) on {n} points",
            lags.len(),
            lags.last().copied().unwrap_or(0)
        ),
    })?;
    Ok(Member::Scaled(Scaled { scaler, seasonal_tails: Vec::new(), trend: Trend::Ar(ar) }))
}

fn fit_ensemble(history: &[f64], periods: &[usize], config: &ForecastConfig, notes: &mut Vec<String>) -> Vec<Member> {
    let log = use_log(history, config.log, notes);
    let mut specs = vec![(AR_SHORT_LAGS, log), (AR_LONG_SHORT_LAGS, log)];
    if log {
        // Without the log this member would repeat the first.
        specs.push((AR_SHORT_LAGS, false));
    }
    let mut members = Vec::with_capacity(specs.len());
    for (short, member_log) in specs {
        match fit_ar_member(history, periods, short, member_log) {
            Ok(m) => members.push(m),
            Err(e) => notes.push(format!("ensemble member left out: {e}")),
        }
    }
    if members.is_empty() {
        let m = periods.first().copied().unwrap_or(1);
        notes.push(format!("ensemble fell back to seasonal naive (period {m})"));
        members.push(Member::SeasonalNaive(SeasonalNaive::fit(history, m)));
    }
    members
}

/// One model whose forecasts may be combined with others.
#[derive(Debug, Clone)]
enum Member {
    Constant(f64),
    SeasonalNaive(SeasonalNaive),
    Naive2(Naive2),
    Scaled(Scaled),
}

impl Member {
    fn name(&self) -> &'static str {
        match self {
            Member::Constant(_) => "constant",
            Member::SeasonalNaive(_) => "snaive",
            Member::Naive2(_) => "naive2",
            Member::Scaled(d) => match d.trend {
                Trend::Ets(_) => "mstl_ets",
                Trend::Theta(_) => "theta",
                Trend::Ar(_) => "ar",
            },
        }
    }

    fn predict(&self, h: usize, level: f64, z: f64) -> Result<Forecast> {
        match self {
            Member::Constant(c) => {
                let mut f = Forecast::with_capacity(h, level);
                for _ in 0..h {
                    f.push(*c, *c, *c);
                }
                Ok(f)
            }
            Member::SeasonalNaive(m) => Ok(m.predict(h, level, z)),
            Member::Naive2(m) => Ok(m.predict(h, level, z)),
            Member::Scaled(d) => d.predict(h, level, z),
        }
    }
}

/// Seasonal naive with period `m` (`m = 1`: naive), intervals from the in-sample residuals
/// `y_t − y_{t−m}`: `σ_h = σ · sqrt(⌊(h − 1) / m⌋ + 1)`.
#[derive(Debug, Clone)]
struct SeasonalNaive {
    last_cycle: Vec<f64>,
    sigma: f64,
}

impl SeasonalNaive {
    fn fit(y: &[f64], m: usize) -> Self {
        let m = m.clamp(1, y.len().max(1));
        let last_cycle = y.get(y.len().saturating_sub(m)..).unwrap_or(y).to_vec();
        let sigma = rms(y.iter().skip(m).zip(y).map(|(&a, &b)| a - b));
        Self { last_cycle, sigma }
    }

    fn predict(&self, h: usize, level: f64, z: f64) -> Forecast {
        let m = self.last_cycle.len().max(1);
        let mut f = Forecast::with_capacity(h, level);
        for k in 0..h {
            let p = self.last_cycle.get(k % m).copied().unwrap_or(0.0);
            let cycles = (k / m + 1) as f64;
            let half = z * self.sigma * cycles.sqrt();
            f.push(p, p - half, p + half);
        }
        f
    }
}

/// M4's Naive2; see [`seasonality_test`] and [`classical_multiplicative_indices`].
#[derive(Debug, Clone)]
struct Naive2 {
    level: f64,
    /// The last `m` seasonal indices (all 1 when not seasonal).
    indices: Vec<f64>,
    sigma: f64,
}

impl Naive2 {
    fn fit(y: &[f64], m: usize) -> (Self, Option<String>) {
        let mut note = None;
        let indices = if m >= 2 && seasonality_test(y, m) {
            if y.iter().all(|&v| v > 0.0) {
                classical_multiplicative_indices(y, m)
            } else {
                note = Some("naive2: not seasonally adjusted, the history has values <= 0".into());
                None
            }
        } else {
            None
        };
        let (adjusted, last): (Vec<f64>, Vec<f64>) = match indices {
            Some(si) if si.iter().all(|s| s.is_finite() && *s > 0.0) => {
                let adjusted = y.iter().zip(&si).map(|(v, s)| v / s).collect();
                let last = si.get(si.len().saturating_sub(m)..).unwrap_or(&si).to_vec();
                (adjusted, last)
            }
            _ => (y.to_vec(), vec![1.0]),
        };
        let level = adjusted.last().copied().unwrap_or(0.0);
        let sigma = rms(adjusted.iter().skip(1).zip(&adjusted).map(|(&a, &b)| a - b));
        (Self { level, indices: last, sigma }, note)
    }

    fn predict(&self, h: usize, level: f64, z: f64) -> Forecast {
        let m = self.indices.len().max(1);
        let mut f = Forecast::with_capacity(h, level);
        for k in 0..h {
            let s = self.indices.get(k % m).copied().unwrap_or(1.0);
            let half = z * self.sigma * ((k + 1) as f64).sqrt();
            f.push(self.level * s, (self.level - half) * s, (self.level + half) * s);
        }
        f
    }
}

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
fn autocorrelations(y: &[f64], max_lag: usize) -> Vec<f64> {
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

fn autocorrelation_at(y: &[f64], lag: usize) -> Option<f64> {
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
fn detrend(y: &[f64], width: usize) -> Vec<f64> {
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
const DAY_MS: i64 = 86_400_000;

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
    last: Option<i64>,
    deltas: VecDeque<i64>,
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

/// [`fit`] and [`Fitted::predict`] in one go, falling back to seasonal naive (shortest usable
/// period) when the configured method fails to fit or to predict; the reason is added to the
/// fit's notes. Fails only when the history itself is unusable (too short, not finite) or a
/// parameter is invalid.
pub fn forecast_with_fallback(
    history: &[f64],
    config: &ForecastConfig,
    horizon: usize,
    level: f64,
) -> Result<(Fitted, Forecast)> {
    let failure = match fit(history, config) {
        Ok(fitted) => match fitted.predict(horizon, level) {
            Ok(forecast) => return Ok((fitted, forecast)),
            Err(e @ Error::InvalidParam { .. }) => return Err(e),
            Err(e) => e,
        },
        Err(e @ (Error::InvalidInput { .. } | Error::InvalidParam { .. })) => return Err(e),
        Err(e) => e,
    };
    let fallback = ForecastConfig { method: Method::SeasonalNaive, ..config.clone() };
    let mut fitted = fit(history, &fallback)?;
    fitted.notes.push(format!("{} failed ({failure}); fell back to seasonal naive", config.method.name()));
    let forecast = fitted.predict(horizon, level)?;
    Ok((fitted, forecast))
}

/// Affine (optionally log) map to a series centred on its median with values in `[-1, 1]`,
/// so that fitting works on well-scaled numbers whatever the magnitude of the input.
#[derive(Debug, Clone, Copy)]
struct Scaler {
    log: bool,
    center: f64,
    half_range: f64,
}

impl Scaler {
    fn new(y: &[f64], log: bool) -> Self {
        let mut t: Vec<f64> = y.iter().map(|&v| if log { v.ln() } else { v }).collect();
        let center = sort_median(&mut t).unwrap_or(0.0);
        let half_range = t.iter().map(|&v| (v / 2.0 - center / 2.0).abs()).fold(0.0, f64::max);
        let half_range = if half_range.is_finite() && half_range > 0.0 { half_range } else { 1.0 };
        Self { log, center, half_range }
    }

    fn forward(&self, v: f64) -> f64 {
        let t = if self.log { v.ln() } else { v };
        (t / 2.0 - self.center / 2.0) / self.half_range
    }

    fn inverse(&self, z: f64) -> f64 {
        let t = clamp_finite_or_zero(clamp_finite_or_zero(z * self.half_range) * 2.0 + self.center);
        if self.log {
            // ln(f64::MAX) is about 709.78.
            clamp_finite_or_zero(t.min(709.0).exp())
        } else {
            t
        }
    }
}

struct Decomposition {
    /// Trend plus remainder.
    adjusted: Vec<f64>,
    /// Last cycle of each seasonal component.
    tails: Vec<Vec<f64>>,
}

fn decompose(z: &[f64], periods: &[usize]) -> Result<Decomposition> {
    if periods.is_empty() {
        return Ok(Decomposition { adjusted: z.to_vec(), tails: Vec::new() });
    }
    let result = catch_unwind(AssertUnwindSafe(|| stlrs::MstlParams::new().fit(z, periods)))
        .map_err(|_| Error::Model { model: "mstl", message: "the decomposition failed on this series".into() })?
        .map_err(|e| Error::Model { model: "mstl", message: e.to_string() })?;
    let adjusted: Vec<f64> = result.trend().iter().zip(result.remainder()).map(|(t, r)| t + r).collect();
    let tails: Vec<Vec<f64>> = periods
        .iter()
        .zip(result.seasonal())
        .map(|(&p, s)| s.get(s.len().saturating_sub(p)..).unwrap_or(s).to_vec())
        .collect();
    if adjusted.iter().chain(tails.iter().flatten()).any(|v| !v.is_finite()) {
        return Err(Error::Model { model: "mstl", message: "the decomposition is not finite".into() });
    }
    Ok(Decomposition { adjusted, tails })
}

fn fit_ets(y: &[f64]) -> Result<FittedAutoETS> {
    let err = |message: String| Error::Model { model: "ets", message };
    let model = AutoETS::new(1, "ZZN").map_err(|e| err(e.to_string()))?;
    catch_unwind(AssertUnwindSafe(|| model.fit(y)))
        .map_err(|_| err("AutoETS failed on this series".into()))?
        .map_err(|e| err(e.to_string()))
}

/// A trend model fitted on the seasonally adjusted series.
#[derive(Debug, Clone)]
enum Trend {
    Ets(Box<FittedAutoETS>),
    Theta(ThetaFit),
    Ar(ArFit),
}

/// A model fitted in the scaler's units: seasonal components continued by repeating their
/// last cycle (none for the autoregression), plus a model of the rest.
#[derive(Debug, Clone)]
struct Scaled {
    scaler: Scaler,
    seasonal_tails: Vec<Vec<f64>>,
    trend: Trend,
}

impl Scaled {
    fn predict(&self, h: usize, level: f64, z: f64) -> Result<Forecast> {
        let (point, lower, upper) = match &self.trend {
            Trend::Ets(ets) => {
                let f = catch_unwind(AssertUnwindSafe(|| ets.predict(h, level)))
                    .map_err(|_| Error::Model { model: "ets", message: "prediction failed".into() })?
                    .map_err(|e| Error::Model { model: "ets", message: e.to_string() })?;
                let (lower, upper) = match f.intervals {
                    Some(i) if i.lower.len() == h && i.upper.len() == h => (i.lower, i.upper),
                    _ => return Err(Error::Model { model: "ets", message: "no prediction intervals".into() }),
                };
                (f.point, lower, upper)
            }
            Trend::Theta(theta) => theta.predict(h, z),
            Trend::Ar(ar) => ar.predict(h, z)?,
        };
        if point.len() != h {
            return Err(Error::Model { model: "ets", message: format!("{} forecasts for horizon {h}", point.len()) });
        }
        let mut out = Forecast::with_capacity(h, level);
        for k in 0..h {
            let season: f64 =
                self.seasonal_tails.iter().map(|tail| tail.get(k % tail.len().max(1)).copied().unwrap_or(0.0)).sum();
            let at = |v: &Vec<f64>| self.scaler.inverse(v.get(k).copied().unwrap_or(0.0) + season);
            out.push(at(&point), at(&lower), at(&upper));
        }
        Ok(out)
    }
}

/// Classic Theta: SES on the series with drift `b/2`, `b` the least-squares slope;
/// `ŷ_{n+h} = ℓ_n + (b/2)·((h − 1) + (1 − (1 − α)^n) / α)`; SES prediction intervals
/// `σ² (1 + α² (h − 1))`.
#[derive(Debug, Clone)]
struct ThetaFit {
    level: f64,
    alpha: f64,
    drift: f64,
    n: usize,
    sigma: f64,
}

impl ThetaFit {
    fn fit(y: &[f64]) -> Self {
        let n = y.len();
        let sse = |alpha: f64| ses(y, alpha).1;
        // Golden-section search of the one-step squared error over alpha.
        let (mut a, mut b) = (1e-3, 0.999);
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let mut c = b - g * (b - a);
        let mut d = a + g * (b - a);
        let (mut fc, mut fd) = (sse(c), sse(d));
        for _ in 0..40 {
            if fc <= fd {
                b = d;
                d = c;
                fd = fc;
                c = b - g * (b - a);
                fc = sse(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + g * (b - a);
                fd = sse(d);
            }
        }
        let alpha = (a + b) / 2.0;
        let (level, sse_value) = ses(y, alpha);
        let sigma = if n > 1 { (sse_value / (n - 1) as f64).sqrt() } else { 0.0 };
        Self { level, alpha, drift: slope(y) / 2.0, n, sigma: if sigma.is_finite() { sigma } else { 0.0 } }
    }

    fn predict(&self, h: usize, z: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let a = self.alpha;
        let exponent = i32::try_from(self.n).unwrap_or(i32::MAX);
        let offset = (1.0 - (1.0 - a).powi(exponent)) / a;
        let mut point = Vec::with_capacity(h);
        let mut lower = Vec::with_capacity(h);
        let mut upper = Vec::with_capacity(h);
        for k in 0..h {
            let p = self.level + self.drift * (k as f64 + offset);
            let half = z * self.sigma * (1.0 + a * a * k as f64).sqrt();
            point.push(p);
            lower.push(p - half);
            upper.push(p + half);
        }
        (point, lower, upper)
    }
}

/// Linear autoregression `z_t = c + Σ_l φ_l z_{t−l}` in standardised units.
#[derive(Debug, Clone)]
struct ArFit {
    lags: Vec<usize>,
    coef: Vec<f64>,
    intercept: f64,
    /// The history the model was fitted on, for the forecasts and the backtest.
    y: Vec<f64>,
    /// Residual standard deviation.
    sigma: f64,
    /// Length of the history.
    n: usize,
}

/// Most forecast origins of the in-sample backtest that calibrates the autoregression's
/// intervals.
const BACKTEST_ORIGINS: usize = 50;

impl ArFit {
    /// Least squares with `ridge · rows` added to the diagonal of the lag coefficients (not
    /// the intercept). `None` when there are too few rows for the lags or the system is
    /// singular.
    fn fit(y: &[f64], lags: &[usize], ridge: f64) -> Option<Self> {
        let max_lag = lags.iter().copied().max()?;
        let n = y.len();
        if lags.contains(&0) || n < max_lag + lags.len() + 10 {
            return None;
        }
        let p = lags.len() + 1;
        let mut xtx = vec![0.0; p * p];
        let mut xty = vec![0.0; p];
        let mut row = vec![0.0; p];
        for t in max_lag..n {
            let target = *y.get(t)?;
            if let Some(first) = row.first_mut() {
                *first = 1.0;
            }
            for (slot, &l) in row.iter_mut().skip(1).zip(lags) {
                *slot = *y.get(t - l)?;
            }
            for (a, &ra) in row.iter().enumerate() {
                *xty.get_mut(a)? += ra * target;
                for (b, &rb) in row.iter().enumerate().take(a + 1) {
                    *xtx.get_mut(a * p + b)? += ra * rb;
                }
            }
        }
        let rows = (n - max_lag) as f64;
        for a in 0..p {
            for b in 0..a {
                let v = *xtx.get(a * p + b)?;
                *xtx.get_mut(b * p + a)? = v;
            }
            if a > 0 {
                *xtx.get_mut(a * p + a)? += ridge * rows;
            }
        }
        let beta = cholesky_solve(&mut xtx, &xty, p)?;
        let (&intercept, coef) = beta.split_first()?;
        let mut sse = 0.0;
        for t in max_lag..n {
            let mut f = intercept;
            for (c, &l) in coef.iter().zip(lags) {
                f += c * y.get(t - l)?;
            }
            sse += (y.get(t)? - f).powi(2);
        }
        let dof = (rows - p as f64).max(1.0);
        let sigma = (sse / dof).sqrt();
        if !sigma.is_finite() {
            return None;
        }
        Some(Self { lags: lags.to_vec(), coef: coef.to_vec(), intercept, y: y.to_vec(), sigma, n })
    }

    /// `h` recursive forecasts from the first `origin` values of the history.
    fn recurse(&self, origin: usize, h: usize) -> Vec<f64> {
        let max_lag = self.lags.iter().copied().max().unwrap_or(0);
        let from = origin.saturating_sub(max_lag);
        let mut buf: Vec<f64> = self.y.get(from..origin).unwrap_or(&[]).to_vec();
        buf.reserve(h);
        for _ in 0..h {
            let len = buf.len();
            let mut f = self.intercept;
            for (c, &l) in self.coef.iter().zip(&self.lags) {
                f += c * len.checked_sub(l).and_then(|i| buf.get(i)).copied().unwrap_or(0.0);
            }
            buf.push(f);
        }
        buf.split_off(buf.len() - h)
    }

    /// Root mean squared error of the `k`-step forecasts, `k = 1..=steps`, over up to
    /// [`BACKTEST_ORIGINS`] origins spread over the history (with the fitted coefficients).
    /// Empty when the history is too short for a backtest.
    fn backtest_rmse(&self, steps: usize) -> Vec<f64> {
        let max_lag = self.lags.iter().copied().max().unwrap_or(0);
        let Some(last) = self.n.checked_sub(steps) else {
            return Vec::new();
        };
        if steps == 0 || last <= max_lag {
            return Vec::new();
        }
        let span = last - max_lag;
        let count = span.min(BACKTEST_ORIGINS);
        let mut sums = vec![0.0; steps];
        for i in 0..count {
            // Evenly spread, the last origin at the end of the history.
            let origin = last - i * span / count;
            let forecast = self.recurse(origin, steps);
            for ((sum, f), actual) in sums.iter_mut().zip(&forecast).zip(self.y.iter().skip(origin)) {
                *sum += (actual - f) * (actual - f);
            }
        }
        sums.iter().map(|s| (s / count as f64).sqrt()).collect()
    }

    /// Recursive forecasts with intervals `z · max(σ · sqrt(Σ_{j<h} ψ_j²), backtest RMSE)`:
    /// the model's own intervals, widened where the in-sample multi-step errors are larger
    /// (a misspecified model, e.g. a weekly shape the history is too short to show). Beyond
    /// the backtest's reach (a third of the history) its last RMSE grows with `sqrt(h)`.
    /// An error when the forecast runs away (see the module docs).
    fn predict(&self, h: usize, z: f64) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let diverges = || Error::Model { model: "ar", message: "the autoregression's forecast diverges".into() };
        let point = self.recurse(self.n, h);
        for (k, f) in point.iter().enumerate() {
            let bound = 3.0 + 4.0 * (k + 1) as f64 / self.n.max(1) as f64;
            if !(f.is_finite() && f.abs() <= bound) {
                return Err(diverges());
            }
        }
        let reach = h.min(self.n / 3);
        let rmse = self.backtest_rmse(reach);
        // MA(∞) weights: ψ_0 = 1, ψ_j = Σ_l φ_l ψ_{j−l}.
        let mut psi: Vec<f64> = Vec::with_capacity(h);
        let mut lower = Vec::with_capacity(h);
        let mut upper = Vec::with_capacity(h);
        let mut sum_sq = 0.0;
        for (j, &p) in point.iter().enumerate() {
            let w = if j == 0 {
                1.0
            } else {
                self.coef
                    .iter()
                    .zip(&self.lags)
                    .filter(|(_, &l)| l <= j)
                    .map(|(c, &l)| c * psi.get(j - l).copied().unwrap_or(0.0))
                    .sum()
            };
            psi.push(w);
            sum_sq += w * w;
            let empirical = match rmse.get(j) {
                Some(&r) => r,
                None => rmse.last().map_or(0.0, |&r| r * ((j + 1) as f64 / rmse.len().max(1) as f64).sqrt()),
            };
            let half = z * (self.sigma * sum_sq.sqrt()).max(empirical);
            if !half.is_finite() {
                return Err(diverges());
            }
            lower.push(p - half);
            upper.push(p + half);
        }
        Ok((point, lower, upper))
    }
}

/// Solve `A x = b` for a symmetric positive definite `p × p` matrix `A` (row-major,
/// overwritten by its Cholesky factor). `None` when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
    if a.len() != p * p || b.len() != p {
        return None;
    }
    for j in 0..p {
        let mut d = *a.get(j * p + j)?;
        for k in 0..j {
            let v = *a.get(j * p + k)?;
            d -= v * v;
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        *a.get_mut(j * p + j)? = d;
        for i in j + 1..p {
            let mut v = *a.get(i * p + j)?;
            for k in 0..j {
                v -= a.get(i * p + k)? * a.get(j * p + k)?;
            }
            *a.get_mut(i * p + j)? = v / d;
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        let mut v = *b.get(i)?;
        for k in 0..i {
            v -= a.get(i * p + k)? * y.get(k)?;
        }
        *y.get_mut(i)? = v / a.get(i * p + i)?;
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut v = *y.get(i)?;
        for k in i + 1..p {
            v -= a.get(k * p + i)? * x.get(k)?;
        }
        *x.get_mut(i)? = v / a.get(i * p + i)?;
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Simple exponential smoothing from `ℓ_0 = y_0`: the final level and the sum of squared
/// one-step errors.
fn ses(y: &[f64], alpha: f64) -> (f64, f64) {
    let mut level = y.first().copied().unwrap_or(0.0);
    let mut sse = 0.0;
    for &v in y.iter().skip(1) {
        let e = v - level;
        sse += e * e;
        level += alpha * e;
    }
    (level, sse)
}

/// Least-squares slope of `y` on `0..n`.
fn slope(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    if y.len() < 2 {
        return 0.0;
    }
    let mean_t = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, &v) in y.iter().enumerate() {
        let dt = t as f64 - mean_t;
        num += dt * (v - mean_y);
        den += dt * dt;
    }
    let b = num / den;
    if b.is_finite() {
        b
    } else {
        0.0
    }
}

/// Root mean square of the values (0 when there are none or it is not finite).
fn rms(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for v in values {
        sum += v * v;
        count += 1;
    }
    let r = (sum / count.max(1) as f64).sqrt();
    if r.is_finite() {
        r
    } else {
        0.0
    }
}

/// Quantile of the standard normal distribution (Acklam's rational approximation, relative
/// error below 1.2e-9), for `p` in `(0, 1)`; clamped to ±8.3 outside.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.02425;
    if p.is_nan() || p <= 1e-16 {
        return -8.3;
    }
    if p >= 1.0 - 1e-16 {
        return 8.3;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::XorShift64;
    use std::f64::consts::PI;

    /// Hourly-like series: level 100, daily amplitude 20, weekly amplitude 8, uniform noise.
    fn seasonal(n: usize, noise: f64, seed: u64) -> Vec<f64> {
        let mut rng = XorShift64::new(seed);
        (0..n)
            .map(|i| {
                let t = i as f64;
                100.0
                    + 20.0 * (2.0 * PI * t / 24.0).sin()
                    + 8.0 * (2.0 * PI * t / 168.0).cos()
                    + rng.uniform(-noise, noise)
            })
            .collect()
    }

    fn truth(range: std::ops::Range<usize>) -> Vec<f64> {
        range
            .map(|i| {
                let t = i as f64;
                100.0 + 20.0 * (2.0 * PI * t / 24.0).sin() + 8.0 * (2.0 * PI * t / 168.0).cos()
            })
            .collect()
    }

    fn mae(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len().max(1) as f64
    }

    fn assert_valid(f: &Forecast, h: usize) {
        assert_eq!((f.point.len(), f.lower.len(), f.upper.len()), (h, h, h));
        for k in 0..h {
            assert!(f.lower[k] <= f.point[k] && f.point[k] <= f.upper[k], "step {k}: {f:?}");
        }
        assert!(f.all_finite());
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().ok(), Some(m));
            let json = serde_json::to_string(&m).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Method>(&json).ok(), Some(m), "{json}");
            let short = format!("\"{}\"", m.name());
            assert_eq!(serde_json::from_str::<Method>(&short).ok(), Some(m), "{short}");
        }
        assert_eq!("default".parse::<Method>().ok(), Some(Method::Ensemble));
        let e = "prophet".parse::<Method>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`method`") && e.contains("prophet"), "{e}");
    }

    #[test]
    fn bad_history_and_config_are_clear_errors() {
        let config = ForecastConfig::default();
        let e = fit(&[], &config).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("history") && e.contains("at least 3"), "{e}");
        let e = fit(&[1.0, f64::NAN, 2.0, 3.0], &config).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("value 1 is not finite"), "{e}");
        let bad = ForecastConfig::new(Method::Ensemble, vec![24, 1]);
        let e = fit(&[1.0, 2.0, 3.0], &bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`periods`"), "{e}");
        let fitted = fit(&[1.0, 2.0, 3.0, 4.0], &config).expect("fits");
        for level in [0.0, 1.0, f64::NAN] {
            let e = fitted.predict(3, level).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("`level`"), "{e}");
        }
    }

    #[test]
    fn constant_history_is_forecast_as_constant() {
        for method in Method::ALL {
            let fitted = fit(&[7.5; 50], &ForecastConfig::new(method, vec![5])).expect("fits");
            let f = fitted.predict(10, 0.95).expect("predicts");
            assert!(f.point.iter().chain(&f.lower).chain(&f.upper).all(|&v| v == 7.5), "{method:?}");
            assert!(fitted.notes().iter().any(|n| n == "constant history"));
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_cycle() {
        let y: Vec<f64> = (0..20).map(|i| f64::from(i % 4) + f64::from(i / 4)).collect();
        let fitted = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![4])).expect("fits");
        assert_eq!(fitted.periods(), &[4]);
        let f = fitted.predict(8, 0.9).expect("predicts");
        assert_eq!(f.point, vec![4.0, 5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 7.0]);
        // Residuals y_t - y_{t-4} are all 1: sigma 1, widening with each cycle.
        let z = normal_quantile(0.95);
        assert!((f.upper[0] - f.point[0] - z).abs() < 1e-12);
        assert!((f.upper[4] - f.point[4] - z * 2f64.sqrt()).abs() < 1e-12);
        // Without a usable period it is the naive forecast.
        let fitted = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![15])).expect("fits");
        assert!(fitted.periods().is_empty() && fitted.notes().iter().any(|n| n.contains("period 15 dropped")));
        assert_eq!(fitted.predict(2, 0.9).expect("predicts").point, vec![7.0, 7.0]);
    }

    #[test]
    fn naive2_adjusts_only_seasonal_series() {
        // Exactly multiplicative: level 10, indices 0.5, 1.5, 1, 1 (mean 1), 10 cycles.
        let si = [0.5, 1.5, 1.0, 1.0];
        let y: Vec<f64> = (0..40).map(|i| 10.0 * si[i % 4]).collect();
        let indices = classical_multiplicative_indices(&y, 4).expect("indices");
        for (i, s) in indices.iter().enumerate() {
            assert!((s - si[i % 4]).abs() < 1e-12, "{i}: {s}");
        }
        assert!(seasonality_test(&y, 4));
        let f =
            fit(&y, &ForecastConfig::new(Method::Naive2, vec![4])).and_then(|m| m.predict(4, 0.95)).expect("forecast");
        for (p, s) in f.point.iter().zip(si) {
            assert!((p - 10.0 * s).abs() < 1e-9, "{:?}", f.point);
        }
        // Not seasonal (fewer than 3 cycles): plain naive.
        assert!(!seasonality_test(&y[..11], 4));
        let f = fit(&y[..11], &ForecastConfig::new(Method::Naive2, vec![4]))
            .and_then(|m| m.predict(2, 0.95))
            .expect("forecast");
        assert_eq!(f.point, vec![y[10], y[10]]);
        // White noise is not seasonal.
        let mut rng = XorShift64::new(1);
        let noise: Vec<f64> = (0..500).map(|_| rng.uniform(5.0, 6.0)).collect();
        assert!(!seasonality_test(&noise, 24));
        // Non-positive values: not adjusted, with a note.
        let shifted: Vec<f64> = y.iter().map(|v| v - 8.0).collect();
        let fitted = fit(&shifted, &ForecastConfig::new(Method::Naive2, vec![4])).expect("fits");
        assert!(fitted.notes().iter().any(|n| n.contains("values <= 0")), "{:?}", fitted.notes());
    }

    #[test]
    fn detects_daily_and_weekly_periods() {
        let y = seasonal(24 * 7 * 4, 2.0, 3);
        assert_eq!(detect_periods(&y, &[12, 24, 168]), vec![24, 168]);
        // Weekly needs two cycles.
        assert_eq!(detect_periods(&y[..300], &[24, 168]), vec![24]);
        let mut rng = XorShift64::new(9);
        let noise: Vec<f64> = (0..1000).map(|_| rng.uniform(0.0, 1.0)).collect();
        assert!(detect_periods(&noise, &[24, 168]).is_empty());
        assert!(detect_periods(&[1.0; 500], &[24]).is_empty());
        assert!(detect_periods(&y, &[]).is_empty());
        let config = ForecastConfig { candidate_periods: vec![24, 168], ..ForecastConfig::default() };
        assert_eq!(fit(&y, &config).expect("fits").periods(), &[24, 168]);
    }

    #[test]
    fn every_method_forecasts_a_seasonal_series() {
        let n = 24 * 7 * 4;
        let y = seasonal(n, 2.0, 5);
        let actual = truth(n..n + 48);
        let snaive = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![24, 168]))
            .and_then(|m| m.predict(48, 0.95))
            .expect("snaive");
        for method in Method::ALL {
            let fitted = fit(&y, &ForecastConfig::new(method, vec![24, 168])).expect("fits");
            let f = fitted.predict(48, 0.95).expect("predicts");
            assert_valid(&f, 48);
            let err = mae(&f.point, &actual);
            assert!(err < 6.0, "{method:?}: MAE {err}");
            if matches!(method, Method::Autoregression | Method::Ensemble | Method::MstlEts) {
                assert!(err < mae(&snaive.point, &actual), "{method:?}: MAE {err}");
            }
            let inside = actual.iter().enumerate().filter(|&(k, v)| f.lower[k] <= *v && *v <= f.upper[k]).count();
            if method != Method::Naive2 {
                assert!(inside >= 40, "{method:?}: {inside} of 48 inside");
            }
        }
    }

    #[test]
    fn ensemble_continues_a_linear_trend_on_the_original_scale() {
        let mut rng = XorShift64::new(4);
        let y: Vec<f64> = (0..500).map(|i| 10.0 + 0.5 * i as f64 + rng.uniform(-1.0, 1.0)).collect();
        let config = ForecastConfig { log: false, ..ForecastConfig::default() };
        let f = fit(&y, &config).and_then(|m| m.predict(200, 0.95)).expect("forecast");
        let expected_end = 10.0 + 0.5 * 699.0;
        let end = f.point.last().copied().unwrap_or(0.0);
        assert!((end - expected_end).abs() < 5.0, "{end} vs {expected_end}");
    }

    #[test]
    fn extreme_and_negative_values_stay_finite() {
        let y = seasonal(400, 2.0, 6);
        for scale in [1e-300, 1e-9, 1e9, 1e300, -1e300] {
            let scaled: Vec<f64> = y.iter().map(|v| v * scale).collect();
            for method in Method::ALL {
                let fitted = fit(&scaled, &ForecastConfig::new(method, vec![24])).expect("fits");
                let f = fitted.predict(30, 0.99).expect("predicts");
                assert_valid(&f, 30);
            }
        }
        let alternating: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { f64::MAX } else { f64::MIN }).collect();
        for method in Method::ALL {
            let (_, f) =
                forecast_with_fallback(&alternating, &ForecastConfig::new(method, vec![]), 10, 0.9).expect("forecast");
            assert_valid(&f, 10);
        }
        let negative: Vec<f64> = y.iter().map(|v| v - 150.0).collect();
        let fitted = fit(&negative, &ForecastConfig::new(Method::Ensemble, vec![24])).expect("fits");
        assert!(fitted.notes().iter().any(|n| n.contains("log transform skipped")));
    }

    #[test]
    fn fallback_to_seasonal_naive_is_noted() {
        // Too short for the autoregression's lags.
        let y: Vec<f64> = (0..12).map(|i| f64::from(i % 3)).collect();
        let config = ForecastConfig::new(Method::Autoregression, vec![3]);
        assert!(matches!(fit(&y, &config), Err(Error::Model { model: "ar", .. })));
        let (fitted, f) = forecast_with_fallback(&y, &config, 6, 0.9).expect("falls back");
        assert_eq!(fitted.method(), Method::SeasonalNaive);
        assert!(fitted.notes().iter().any(|n| n.contains("fell back to seasonal naive")));
        assert_eq!(f.point, vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
        // The ensemble falls back on its own.
        let fitted = fit(&y, &ForecastConfig::new(Method::Ensemble, vec![3])).expect("fits");
        assert!(fitted.notes().iter().any(|n| n.contains("ensemble fell back")), "{:?}", fitted.notes());
        // Unusable history is not hidden by the fallback.
        assert!(forecast_with_fallback(&[1.0], &config, 6, 0.9).is_err());
    }

    #[test]
    fn helpers() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
        assert_eq!(normal_quantile(0.0), -8.3);
        assert_eq!(calendar_periods(3_600_000), vec![24, 168]);
        assert_eq!(calendar_periods(60_000), vec![1440, 10080]);
        assert!(calendar_periods(0).is_empty());
        assert_eq!(calendar_periods(86_400_000), vec![7]);
        let mut s = SpacingTracker::default();
        assert_eq!(s.median_ms(), None);
        for t in [0, 60, 120, 120, 100, 160, 220, 400] {
            s.observe(t);
        }
        assert_eq!(s.median_ms(), Some(60));
        s.observe(i64::MIN);
        s.observe(i64::MAX);
        assert_eq!(s.median_ms(), Some(60));
        s.reset();
        assert_eq!(s.median_ms(), None);
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert_eq!(sort_median(&mut v), Some(2.5));
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).expect("solves");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(cholesky_solve(&mut [0.0], &[1.0], 1).is_none());
    }
}
