//! The linear autoregression behind the default ensemble (least squares with a ridge term,
//! recursive forecasts, intervals from the MA(∞) weights widened by an in-sample backtest)
//! and the small numeric helpers the models share.

use super::*;

/// Linear autoregression `z_t = c + Σ_l φ_l z_{t−l}` in standardised units.
#[derive(Debug, Clone)]
pub(super) struct ArFit {
    pub(super) lags: Vec<usize>,
    pub(super) coef: Vec<f64>,
    pub(super) intercept: f64,
    /// The history the model was fitted on, for the forecasts and the backtest.
    pub(super) y: Vec<f64>,
    /// Residual standard deviation.
    pub(super) sigma: f64,
    /// Length of the history.
    pub(super) n: usize,
}

/// Most forecast origins of the in-sample backtest that calibrates the autoregression's
/// intervals.
pub(super) const BACKTEST_ORIGINS: usize = 50;

impl ArFit {
    /// Least squares with `ridge · rows` added to the diagonal of the lag coefficients (not
    /// the intercept). `None` when there are too few rows for the lags or the system is
    /// singular.
    pub(super) fn fit(y: &[f64], lags: &[usize], ridge: f64) -> Option<Self> {
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
    pub(super) fn recurse(&self, origin: usize, h: usize) -> Vec<f64> {
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
    pub(super) fn backtest_rmse(&self, steps: usize) -> Vec<f64> {
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
    pub(super) fn predict(&self, h: usize, z: f64) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
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
pub(super) fn cholesky_solve(a: &mut [f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
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
pub(super) fn ses(y: &[f64], alpha: f64) -> (f64, f64) {
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
pub(super) fn slope(y: &[f64]) -> f64 {
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
pub(super) fn rms(values: impl Iterator<Item = f64>) -> f64 {
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
