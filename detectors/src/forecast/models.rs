//! The ensemble's members other than the autoregression: seasonal naive, Naive2, and the
//! MSTL-decomposed models (AutoETS or Theta on the adjusted series), with the scaler that lets
//! every model fit well-scaled numbers.

use super::*;

/// One model whose forecasts may be combined with others.
#[derive(Debug, Clone)]
pub(super) enum Member {
    Constant(f64),
    SeasonalNaive(SeasonalNaive),
    Naive2(Naive2),
    Scaled(Scaled),
}

impl Member {
    pub(super) fn name(&self) -> &'static str {
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

    pub(super) fn predict(&self, h: usize, level: f64, z: f64) -> Result<Forecast> {
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
pub(super) struct SeasonalNaive {
    pub(super) last_cycle: Vec<f64>,
    pub(super) sigma: f64,
}

impl SeasonalNaive {
    pub(super) fn fit(y: &[f64], m: usize) -> Self {
        let m = m.clamp(1, y.len().max(1));
        let last_cycle = y.get(y.len().saturating_sub(m)..).unwrap_or(y).to_vec();
        let sigma = rms(y.iter().skip(m).zip(y).map(|(&a, &b)| a - b));
        Self { last_cycle, sigma }
    }

    pub(super) fn predict(&self, h: usize, level: f64, z: f64) -> Forecast {
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
pub(super) struct Naive2 {
    pub(super) level: f64,
    /// The last `m` seasonal indices (all 1 when not seasonal).
    pub(super) indices: Vec<f64>,
    pub(super) sigma: f64,
}

impl Naive2 {
    pub(super) fn fit(y: &[f64], m: usize) -> (Self, Option<String>) {
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

    pub(super) fn predict(&self, h: usize, level: f64, z: f64) -> Forecast {
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
/// Affine (optionally log) map to a series centred on its median with values in `[-1, 1]`,
/// so that fitting works on well-scaled numbers whatever the magnitude of the input.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scaler {
    pub(super) log: bool,
    pub(super) center: f64,
    pub(super) half_range: f64,
}

impl Scaler {
    pub(super) fn new(y: &[f64], log: bool) -> Self {
        let mut t: Vec<f64> = y.iter().map(|&v| if log { v.ln() } else { v }).collect();
        let center = sort_median(&mut t).unwrap_or(0.0);
        let half_range = t.iter().map(|&v| (v / 2.0 - center / 2.0).abs()).fold(0.0, f64::max);
        let half_range = if half_range.is_finite() && half_range > 0.0 { half_range } else { 1.0 };
        Self { log, center, half_range }
    }

    pub(super) fn forward(&self, v: f64) -> f64 {
        let t = if self.log { v.ln() } else { v };
        (t / 2.0 - self.center / 2.0) / self.half_range
    }

    pub(super) fn inverse(&self, z: f64) -> f64 {
        let t = clamp_finite_or_zero(clamp_finite_or_zero(z * self.half_range) * 2.0 + self.center);
        if self.log {
            // ln(f64::MAX) is about 709.78.
            clamp_finite_or_zero(t.min(709.0).exp())
        } else {
            t
        }
    }
}

pub(super) struct Decomposition {
    /// Trend plus remainder.
    pub(super) adjusted: Vec<f64>,
    /// Last cycle of each seasonal component.
    pub(super) tails: Vec<Vec<f64>>,
}

pub(super) fn decompose(z: &[f64], periods: &[usize]) -> Result<Decomposition> {
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

pub(super) fn fit_ets(y: &[f64]) -> Result<FittedAutoETS> {
    let err = |message: String| Error::Model { model: "ets", message };
    let model = AutoETS::new(1, "ZZN").map_err(|e| err(e.to_string()))?;
    catch_unwind(AssertUnwindSafe(|| model.fit(y)))
        .map_err(|_| err("AutoETS failed on this series".into()))?
        .map_err(|e| err(e.to_string()))
}

/// A trend model fitted on the seasonally adjusted series.
#[derive(Debug, Clone)]
pub(super) enum Trend {
    Ets(Box<FittedAutoETS>),
    Theta(ThetaFit),
    Ar(ArFit),
}

/// A model fitted in the scaler's units: seasonal components continued by repeating their
/// last cycle (none for the autoregression), plus a model of the rest.
#[derive(Debug, Clone)]
pub(super) struct Scaled {
    pub(super) scaler: Scaler,
    pub(super) seasonal_tails: Vec<Vec<f64>>,
    pub(super) trend: Trend,
}

impl Scaled {
    pub(super) fn predict(&self, h: usize, level: f64, z: f64) -> Result<Forecast> {
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
pub(super) struct ThetaFit {
    pub(super) level: f64,
    pub(super) alpha: f64,
    pub(super) drift: f64,
    pub(super) n: usize,
    pub(super) sigma: f64,
}

impl ThetaFit {
    pub(super) fn fit(y: &[f64]) -> Self {
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

    pub(super) fn predict(&self, h: usize, z: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
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
