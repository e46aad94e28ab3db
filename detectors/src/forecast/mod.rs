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

mod ar;
pub use ar::*;

mod models;
use models::*;

mod periods;
pub use periods::*;

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

#[cfg(test)]
mod tests;
