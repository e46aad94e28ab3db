//! Multivariate: several metrics of one workload judged jointly.
//!
//! CPU, request rate, latency and memory of a service move together: more
//! traffic, more CPU. A point can be perfectly ordinary in every metric on
//! its own and still be wrong as a whole, like high CPU at low traffic (a
//! runaway loop, a noisy neighbour, a crypto miner). Single-series detectors
//! cannot see that; a density model of the joint vector can.
//!
//! # Model
//!
//! 1. **Robust standardisation**, per feature, on the reference window:
//!    `z_j = (x_j - median_j) / scale_j` with `scale_j = 1.4826 × MAD_j`
//!    (the standard deviation when the MAD is 0), floored at
//!    `max(min_relative_scale × |median_j|, min_absolute_scale)`; standardised
//!    values are clamped to `±1e6`. This puts metrics of any unit on one
//!    footing without letting outliers in the reference set the scale.
//! 2. **Gaussian mixture** (`linfa-clustering`'s `GaussianMixtureModel`,
//!    full covariances, k-means initialisation) with `components`
//!    components, fitted by EM on the standardised reference vectors.
//!    `reg_covariance` is added to every covariance diagonal so that a
//!    constant or collinear feature cannot make a covariance singular. When
//!    the reference has fewer clusters than components (EM leaves a
//!    component empty), the fit is retried with one component fewer, down to
//!    one ([`Multivariate::components_used`]). The random initialisation uses
//!    linfa's fixed default seed, so the same reference gives the same model,
//!    bit for bit.
//! 3. **Score**: the negative log-likelihood `NLL(x) = -ln Σ_k w_k N(z; μ_k, Σ_k)`.
//!    The threshold is the `quantile` (default 0.99) of the reference
//!    vectors' NLL, i.e. about `1 - quantile` of the reference would be
//!    flagged. (In-sample, so slightly optimistic: with few reference
//!    vectors per parameter, expect a bit more than that on new data.)
//!    `score = 1 / (1 + exp(-(NLL - threshold) / spread))` with
//!    `spread = max(threshold - median reference NLL, 0.1)`: 0.5 at the
//!    threshold, in `[0, 1]`, finite for any input.
//! 4. **Attribution**: in the component most responsible for the point, the
//!    conditional z-score of each feature given all the others,
//!    `(P (z - μ))_j / √P_jj` with `P` the precision matrix: how far feature
//!    `j` is from what the other features predict for it. The feature with
//!    the largest `|z|` is `most_unusual_feature`. With two strongly
//!    correlated features both conditional scores are large (which of the
//!    two is "wrong" cannot be told from the data); with three or more the
//!    odd one out stands out.
//!
//! The model is refitted only on demand ([`Multivariate::fit`]): the caller
//! picks the reference window (e.g. the last week without incidents).
//!
//! # Cost
//!
//! The fitted model keeps `2 d` standardisation numbers and, per component, a
//! weight, a mean (`d`) and a precision matrix (`d²`) plus log normalisers:
//! about `8 (k (d² + d + 2) + 2 d)` bytes, under 1 KiB for 3 components of 5
//! metrics; the reference vectors are not kept. Scoring one vector costs
//! `O(k d²)`: about 0.1 µs for 3 metrics and 2 components. Fitting costs
//! `O(n_runs × iterations × n k d²)` for `n` reference vectors plus the
//! k-means initialisation: about 5 ms for 1 000 vectors of 3 metrics with the
//! defaults (release build, one core).

use linfa::prelude::Fit;
use linfa::DatasetBase;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, invalid_input, log_add_exp, sort_median};
use crate::error::{Error, Result};

/// Largest accepted number of features (metrics).
pub const MAX_FEATURES: usize = 32;
/// Largest accepted number of mixture components.
pub const MAX_COMPONENTS: usize = 16;

const MAD_TO_SIGMA: f64 = 1.4826;
/// Standardised values are clamped to this magnitude.
const Z_LIMIT: f64 = 1e6;
/// Smallest spread of the score's logistic, in nats.
const MIN_SPREAD: f64 = 0.1;

/// Parameters of [`Multivariate`]. Missing fields take their defaults when
/// deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultivariateParams {
    /// Mixture components (default 2).
    pub components: usize,
    /// Quantile of the reference NLL used as threshold (default 0.99).
    pub quantile: f64,
    /// EM iterations per run (default 300).
    pub max_iterations: u64,
    /// EM stops when the mean log-likelihood improves by less (default 1e-4).
    pub tolerance: f64,
    /// Added to covariance diagonals, in standardised units (default 1e-4).
    pub reg_covariance: f64,
    /// EM runs from different initialisations; the best is kept (default 3).
    pub n_runs: u64,
    /// Standardisation scale floor as a fraction of `|median|` (default 0.01).
    pub min_relative_scale: f64,
    /// Absolute standardisation scale floor (default 1e-9).
    pub min_absolute_scale: f64,
}

impl Default for MultivariateParams {
    fn default() -> Self {
        Self {
            components: 2,
            quantile: 0.99,
            max_iterations: 300,
            tolerance: 1e-4,
            reg_covariance: 1e-4,
            n_runs: 3,
            min_relative_scale: 0.01,
            min_absolute_scale: 1e-9,
        }
    }
}

fn model_error(message: String) -> Error {
    Error::Model { model: "gaussian_mixture", message }
}

impl MultivariateParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `components`: 1 ..= [`MAX_COMPONENTS`]
    /// * `quantile`: strictly between 0.5 and 1
    /// * `max_iterations`: 1 ..= 100 000
    /// * `n_runs`: 1 ..= 100
    /// * `tolerance`, `reg_covariance`: finite and > 0
    /// * `min_relative_scale`, `min_absolute_scale`: finite and >= 0
    pub fn validate(&self) -> Result<()> {
        common::between("components", self.components, 1, MAX_COMPONENTS)?;
        common::strictly_between("quantile", self.quantile, 0.5, 1.0)?;
        common::between("max_iterations", self.max_iterations, 1, 100_000)?;
        common::between("n_runs", self.n_runs, 1, 100)?;
        common::positive("tolerance", self.tolerance)?;
        common::positive("reg_covariance", self.reg_covariance)?;
        common::scale_floors(self.min_relative_scale, self.min_absolute_scale)
    }

    /// Fewest reference vectors accepted for `features` metrics:
    /// `max(20, 5 × components × (features + 1))`.
    pub fn min_samples(&self, features: usize) -> usize {
        20usize.max(5usize.saturating_mul(self.components).saturating_mul(features.saturating_add(1)))
    }
}

/// Result of scoring one vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultivariateScore {
    /// Score in `[0, 1]`, 0.5 at the threshold.
    pub score: f64,
    /// Negative log-likelihood of the standardised vector.
    pub nll: f64,
    /// NLL threshold calibrated on the reference window.
    pub threshold: f64,
    /// Whether `nll > threshold`.
    pub is_anomaly: bool,
    /// Index of the feature with the largest conditional |z|.
    pub most_unusual_feature: usize,
    /// Conditional z-score of each feature given the others.
    pub feature_z: Vec<f64>,
    /// Mixture component most responsible for the vector.
    pub component: usize,
}

/// One fitted mixture component, in standardised units.
#[derive(Debug, Clone, PartialEq)]
struct Component {
    mean: Vec<f64>,
    /// Precision matrix, row-major `d × d`.
    precision: Vec<f64>,
    /// `ln w - d/2 ln 2π + 1/2 ln det P`.
    log_norm: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Fitted {
    center: Vec<f64>,
    scale: Vec<f64>,
    components: Vec<Component>,
    threshold: f64,
    spread: f64,
}

/// Joint density detector over several metrics. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Multivariate {
    params: MultivariateParams,
    model: Option<Fitted>,
}

impl Multivariate {
    /// Build an unfitted detector; fails if `params` do not pass
    /// [`MultivariateParams::validate`].
    pub fn new(params: MultivariateParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { params, model: None })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &MultivariateParams {
        &self.params
    }

    /// Whether [`fit`](Self::fit) has succeeded.
    pub fn is_fitted(&self) -> bool {
        self.model.is_some()
    }

    /// Number of features of the fitted model.
    pub fn features(&self) -> Option<usize> {
        self.model.as_ref().map(|m| m.center.len())
    }

    /// Number of mixture components of the fitted model (fewer than
    /// `components` when the reference could not support that many).
    pub fn components_used(&self) -> Option<usize> {
        self.model.as_ref().map(|m| m.components.len())
    }

    /// The calibrated NLL threshold of the fitted model.
    pub fn threshold(&self) -> Option<f64> {
        self.model.as_ref().map(|m| m.threshold)
    }

    /// Fit (or refit) the model on a reference window: one vector per time,
    /// all of the same length (1 ..= [`MAX_FEATURES`] metrics), all finite,
    /// at least [`MultivariateParams::min_samples`] of them. On error the
    /// previous model, if any, is kept.
    pub fn fit(&mut self, reference: &[Vec<f64>]) -> Result<()> {
        let d = check_reference(reference, &self.params)?;
        let n = reference.len();
        let (center, scale) = self.standardisation(reference, d);
        let mut data = Array2::<f64>::zeros((n, d));
        for (i, row) in reference.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                data[[i, j]] = standardise(v, center[j], scale[j]);
            }
        }
        // Data with fewer distinct clusters than components leaves a
        // component empty; fall back to fewer components rather than fail.
        let dataset = DatasetBase::from(data.clone());
        let mut fitted_gmm = None;
        let mut last_error = String::new();
        for k in (1..=self.params.components).rev() {
            match GaussianMixtureModel::params(k)
                .n_runs(self.params.n_runs)
                .tolerance(self.params.tolerance)
                .max_n_iterations(self.params.max_iterations)
                .reg_covariance(self.params.reg_covariance)
                .fit(&dataset)
            {
                Ok(gmm) => {
                    fitted_gmm = Some(gmm);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let gmm = fitted_gmm.ok_or_else(|| model_error(last_error))?;
        let mut components = Vec::with_capacity(self.params.components);
        for (k, w) in gmm.weights().iter().enumerate() {
            let mean: Vec<f64> = gmm.means().row(k).to_vec();
            let precision: Vec<f64> = gmm.precisions().index_axis(ndarray::Axis(0), k).iter().copied().collect();
            let log_det = cholesky_log_det(&precision, d)
                .ok_or_else(|| model_error(format!("precision matrix of component {k} is not positive definite")))?;
            let log_norm = w.ln() - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln() + 0.5 * log_det;
            if !(log_norm.is_finite() && mean.iter().chain(&precision).all(|v| v.is_finite())) {
                return Err(model_error(format!("component {k} is not finite")));
            }
            components.push(Component { mean, precision, log_norm });
        }
        let mut fitted = Fitted { center, scale, components, threshold: 0.0, spread: 1.0 };
        let mut nlls: Vec<f64> = data.rows().into_iter().map(|row| fitted.nll(&row.to_vec()).0).collect();
        nlls.sort_unstable_by(f64::total_cmp);
        let threshold = quantile(&nlls, self.params.quantile);
        let median = quantile(&nlls, 0.5);
        if !(threshold.is_finite() && median.is_finite()) {
            return Err(model_error("reference likelihoods are not finite".into()));
        }
        fitted.threshold = threshold;
        fitted.spread = (threshold - median).max(MIN_SPREAD);
        self.model = Some(fitted);
        Ok(())
    }

    /// Score one vector against the fitted model. Errors if the model is not
    /// fitted, the vector has the wrong length or a non-finite value.
    pub fn score(&self, x: &[f64]) -> Result<MultivariateScore> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| model_error("not fitted; call fit with a reference window first".into()))?;
        let d = model.center.len();
        if x.len() != d {
            return Err(invalid_input("vector", format!("has {} values, the model has {d} features", x.len())));
        }
        if let Some((j, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(invalid_input("vector", format!("feature {j} is {v}, not a finite number")));
        }
        let z: Vec<f64> =
            x.iter().zip(model.center.iter().zip(&model.scale)).map(|(&v, (&c, &s))| standardise(v, c, s)).collect();
        let (nll, component) = model.nll(&z);
        let feature_z = model.components.get(component).map(|c| conditional_z(c, &z)).unwrap_or_else(|| vec![0.0; d]);
        let most_unusual_feature = feature_z
            .iter()
            .enumerate()
            .fold((0usize, -1.0f64), |best, (j, v)| if v.abs() > best.1 { (j, v.abs()) } else { best })
            .0;
        let t = (nll - model.threshold) / model.spread;
        let score = (1.0 / (1.0 + (-t).exp())).clamp(0.0, 1.0);
        Ok(MultivariateScore {
            score: if score.is_nan() { 0.0 } else { score },
            nll,
            threshold: model.threshold,
            is_anomaly: nll > model.threshold,
            most_unusual_feature,
            feature_z,
            component,
        })
    }

    /// Per-feature median and floored robust scale.
    fn standardisation(&self, reference: &[Vec<f64>], d: usize) -> (Vec<f64>, Vec<f64>) {
        let mut center = Vec::with_capacity(d);
        let mut scale = Vec::with_capacity(d);
        let mut column: Vec<f64> = Vec::with_capacity(reference.len());
        for j in 0..d {
            column.clear();
            column.extend(reference.iter().filter_map(|r| r.get(j).copied()));
            let mean = column.iter().map(|v| v / column.len() as f64).sum::<f64>();
            let var = column
                .iter()
                .map(|v| {
                    let dv = clamp_finite(v - mean);
                    clamp_finite(dv * dv) / column.len() as f64
                })
                .sum::<f64>();
            let median = sort_median(&mut column).unwrap_or(0.0);
            for v in &mut column {
                *v = clamp_finite((*v - median).abs());
            }
            let mad = clamp_finite(MAD_TO_SIGMA * sort_median(&mut column).unwrap_or(0.0));
            let robust = if mad > 0.0 { mad } else { clamp_finite(var.sqrt()) };
            let floor = clamp_finite(self.params.min_relative_scale * median.abs())
                .max(self.params.min_absolute_scale)
                .max(f64::MIN_POSITIVE);
            center.push(median);
            scale.push(robust.max(floor));
        }
        (center, scale)
    }
}

impl Fitted {
    /// NLL of a standardised vector and the most responsible component.
    fn nll(&self, z: &[f64]) -> (f64, usize) {
        let mut best = (f64::NEG_INFINITY, 0usize);
        let mut log_sum = f64::NEG_INFINITY;
        for (k, c) in self.components.iter().enumerate() {
            let q = quadratic_form(&c.precision, &c.mean, z);
            let lp = c.log_norm - 0.5 * q;
            if lp > best.0 {
                best = (lp, k);
            }
            log_sum = log_add_exp(log_sum, lp);
        }
        let nll = -log_sum;
        let nll = if nll.is_nan() { f64::MAX } else { clamp_finite(nll) };
        (nll, best.1)
    }
}

/// `(z - μ)ᵀ P (z - μ)`, clamped to be finite.
fn quadratic_form(precision: &[f64], mean: &[f64], z: &[f64]) -> f64 {
    let d = mean.len();
    let mut q = 0.0;
    for i in 0..d {
        let di = z.get(i).copied().unwrap_or(0.0) - mean.get(i).copied().unwrap_or(0.0);
        let mut row = 0.0;
        for j in 0..d {
            let dj = z.get(j).copied().unwrap_or(0.0) - mean.get(j).copied().unwrap_or(0.0);
            row += precision.get(i * d + j).copied().unwrap_or(0.0) * dj;
        }
        q += di * row;
    }
    clamp_finite(q.max(0.0))
}

/// Conditional z of each feature given the others: `(P (z - μ))_j / √P_jj`.
fn conditional_z(c: &Component, z: &[f64]) -> Vec<f64> {
    let d = c.mean.len();
    (0..d)
        .map(|j| {
            let mut r = 0.0;
            for i in 0..d {
                let di = z.get(i).copied().unwrap_or(0.0) - c.mean.get(i).copied().unwrap_or(0.0);
                r += c.precision.get(j * d + i).copied().unwrap_or(0.0) * di;
            }
            let pjj = c.precision.get(j * d + j).copied().unwrap_or(0.0);
            if pjj > 0.0 {
                clamp_finite(r / pjj.sqrt())
            } else {
                0.0
            }
        })
        .collect()
}

/// `ln det A` of a symmetric positive definite `d × d` matrix by Cholesky;
/// `None` if it is not positive definite.
fn cholesky_log_det(a: &[f64], d: usize) -> Option<f64> {
    let mut l = vec![0.0; d * d];
    let mut log_det = 0.0;
    for i in 0..d {
        for j in 0..=i {
            let mut sum = *a.get(i * d + j)?;
            for k in 0..j {
                sum -= l.get(i * d + k)? * l.get(j * d + k)?;
            }
            if i == j {
                if !(sum > 0.0 && sum.is_finite()) {
                    return None;
                }
                let v = sum.sqrt();
                *l.get_mut(i * d + i)? = v;
                log_det += 2.0 * v.ln();
            } else {
                let ljj = *l.get(j * d + j)?;
                *l.get_mut(i * d + j)? = sum / ljj;
            }
        }
    }
    Some(log_det)
}

/// Validate the reference window; returns the number of features.
fn check_reference(reference: &[Vec<f64>], params: &MultivariateParams) -> Result<usize> {
    let d = reference.first().map_or(0, Vec::len);
    if !(1..=MAX_FEATURES).contains(&d) {
        return Err(invalid_input("reference", format!("vectors must have 1 to {MAX_FEATURES} features, got {d}")));
    }
    if let Some((i, r)) = reference.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(invalid_input("reference", format!("vector 0 has {d} features, vector {i} has {}", r.len())));
    }
    for (i, r) in reference.iter().enumerate() {
        if let Some((j, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(invalid_input("reference", format!("vector {i} feature {j} is {v}, not a finite number")));
        }
    }
    let min = params.min_samples(d);
    if reference.len() < min {
        return Err(invalid_input(
            "reference",
            format!(
                "{} vectors are too few for {} components of {d} features; need at least {min}",
                reference.len(),
                params.components
            ),
        ));
    }
    Ok(d)
}

fn standardise(v: f64, center: f64, scale: f64) -> f64 {
    let z = clamp_finite(v - center) / scale;
    if z.is_nan() {
        0.0
    } else {
        z.clamp(-Z_LIMIT, Z_LIMIT)
    }
}

/// Linear-interpolation quantile of sorted values (NaN when empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (Some(&a), Some(&b)) = (sorted.get(lo), sorted.get(hi)) else {
        return f64::NAN;
    };
    a + (b - a) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::XorShift64;
    use crate::test_support::gaussian;

    /// Traffic (req/s), CPU (cores) and memory (MiB) of one workload: CPU
    /// and memory follow traffic. Traffic has a quiet and a busy regime.
    fn workload(seed: u64, n: usize) -> Vec<Vec<f64>> {
        let mut rng = XorShift64::new(seed);
        (0..n)
            .map(|i| {
                let traffic = if i % 3 == 0 { rng.uniform(100.0, 300.0) } else { rng.uniform(600.0, 1000.0) };
                let cpu = 0.05 * traffic + 1.0 * gaussian(&mut rng);
                let memory = 200.0 + 0.3 * traffic + 5.0 * gaussian(&mut rng);
                vec![traffic, cpu, memory]
            })
            .collect()
    }

    fn fitted(reference: &[Vec<f64>]) -> Multivariate {
        let mut m = match Multivariate::new(MultivariateParams::default()) {
            Ok(m) => m,
            Err(e) => panic!("defaults rejected: {e}"),
        };
        if let Err(e) = m.fit(reference) {
            panic!("fit failed: {e}");
        }
        m
    }

    fn score(m: &Multivariate, x: &[f64]) -> MultivariateScore {
        match m.score(x) {
            Ok(s) => s,
            Err(e) => panic!("score failed: {e}"),
        }
    }

    #[test]
    fn jointly_unusual_point_is_flagged() {
        let reference = workload(1, 600);
        let m = fitted(&reference);
        // Every value is within its marginal range: traffic 200 (quiet
        // regime), CPU 40 (seen at ~800 req/s), memory 260 (as at 200 req/s).
        // But CPU 40 at 200 req/s is wrong.
        let odd = score(&m, &[200.0, 40.0, 260.0]);
        assert!(odd.is_anomaly, "{odd:?}");
        assert!(odd.score > 0.99, "{odd:?}");
        assert_eq!(odd.most_unusual_feature, 1, "{odd:?}");
        // The same CPU at the matching traffic and memory is normal.
        let busy = score(&m, &[800.0, 40.0, 440.0]);
        assert!(!busy.is_anomaly, "{busy:?}");
        assert!(busy.score < 0.5);
        let quiet = score(&m, &[200.0, 10.0, 260.0]);
        assert!(!quiet.is_anomaly, "{quiet:?}");
        // Marginal ranges of the reference really contain each value.
        for (j, v) in [(0, 200.0), (1, 40.0), (2, 260.0)] {
            let lo = reference.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min);
            let hi = reference.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max);
            assert!((lo..=hi).contains(&v), "feature {j}: {v} outside {lo}..{hi}");
        }
    }

    #[test]
    fn threshold_is_a_high_quantile_of_the_reference() {
        let reference = workload(2, 1000);
        let m = fitted(&reference);
        let flagged = reference.iter().filter(|x| score(&m, x).is_anomaly).count();
        assert!((5..=15).contains(&flagged), "{flagged} of 1000 reference vectors flagged");
        // New data from the same process: about 1 % flagged.
        let fresh = workload(3, 1000);
        let flagged = fresh.iter().filter(|x| score(&m, x).is_anomaly).count();
        assert!(flagged <= 40, "{flagged} of 1000 fresh vectors flagged");
        let at = m.threshold().unwrap_or(f64::NAN);
        assert!(at.is_finite());
        assert_eq!(m.features(), Some(3));
    }

    #[test]
    fn fitting_is_deterministic_and_refit_replaces_the_model() {
        let reference = workload(4, 400);
        let a = fitted(&reference);
        let b = fitted(&reference);
        assert_eq!(a, b);
        let x = [500.0, 25.0, 350.0];
        assert_eq!(score(&a, &x), score(&b, &x));
        let mut c = a.clone();
        let shifted: Vec<Vec<f64>> = reference.iter().map(|r| vec![r[0], r[1] + 20.0, r[2]]).collect();
        assert!(c.fit(&shifted).is_ok());
        assert_ne!(c, a);
        assert!(score(&a, &[500.0, 45.0, 350.0]).is_anomaly);
        assert!(!score(&c, &[500.0, 45.0, 350.0]).is_anomaly);
    }

    #[test]
    fn score_is_bounded_and_finite_for_extreme_vectors() {
        let m = fitted(&workload(5, 300));
        for x in [[f64::MAX, f64::MIN, 0.0], [1e300, 1e300, 1e300], [0.0, 0.0, 0.0], [-5e-324, 5e-324, 1.0]] {
            let s = score(&m, &x);
            assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{s:?}");
            assert!(s.nll.is_finite(), "{s:?}");
            assert!(s.feature_z.iter().all(|z| z.is_finite()));
        }
        let far = score(&m, &[f64::MAX, f64::MIN, 0.0]);
        assert!(far.is_anomaly && far.score == 1.0);
    }

    #[test]
    fn constant_feature_is_handled() {
        let reference: Vec<Vec<f64>> = workload(6, 300).into_iter().map(|r| vec![r[0], r[1], 4.0]).collect();
        let m = fitted(&reference);
        assert!(!score(&m, &[800.0, 40.0, 4.0]).is_anomaly);
        let moved = score(&m, &[800.0, 40.0, 8.0]);
        assert!(moved.is_anomaly);
        assert_eq!(moved.most_unusual_feature, 2);
    }

    #[test]
    fn bad_input_is_rejected() {
        let mut m = match Multivariate::new(MultivariateParams::default()) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(m.score(&[1.0]), Err(Error::Model { .. })));
        let msg = |r: Result<()>| match r {
            Err(Error::InvalidInput { message, .. }) => message,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        assert!(msg(m.fit(&[])).contains("1 to 32 features, got 0"));
        let mut ragged = workload(7, 100);
        ragged[5].pop();
        assert!(msg(m.fit(&ragged)).contains("vector 0 has 3 features, vector 5 has 2"));
        let mut nan = workload(7, 100);
        nan[9][1] = f64::NAN;
        assert!(msg(m.fit(&nan)).contains("vector 9 feature 1 is NaN"));
        let m_few = msg(m.fit(&workload(7, 29)));
        assert!(m_few.contains("need at least 40"), "{m_few}");
        assert!(!m.is_fitted());
        assert!(m.fit(&workload(7, 200)).is_ok());
        let wrong = m.score(&[1.0, 2.0]);
        assert!(matches!(wrong, Err(Error::InvalidInput { .. })));
        let inf = m.score(&[1.0, f64::INFINITY, 2.0]);
        assert!(matches!(inf, Err(Error::InvalidInput { .. })));
        // A failed refit keeps the previous model.
        assert!(m.fit(&nan).is_err());
        assert!(m.is_fitted());
    }

    #[test]
    fn params_validate_names_parameter() {
        let base = MultivariateParams::default();
        let cases = [
            (MultivariateParams { components: 0, ..base.clone() }, "components"),
            (MultivariateParams { quantile: 1.0, ..base.clone() }, "quantile"),
            (MultivariateParams { max_iterations: 0, ..base.clone() }, "max_iterations"),
            (MultivariateParams { n_runs: 0, ..base.clone() }, "n_runs"),
            (MultivariateParams { tolerance: 0.0, ..base.clone() }, "tolerance"),
            (MultivariateParams { reg_covariance: f64::NAN, ..base.clone() }, "reg_covariance"),
            (MultivariateParams { min_relative_scale: -1.0, ..base.clone() }, "min_relative_scale"),
        ];
        for (p, name) in cases {
            match Multivariate::new(p) {
                Err(Error::InvalidParam { name: n, message }) => {
                    assert_eq!(n, name);
                    assert!(message.contains("must be"), "{message}");
                }
                other => panic!("expected InvalidParam for {name}, got {other:?}"),
            }
        }
        let p: std::result::Result<MultivariateParams, _> = serde_json::from_str(r#"{"components": 3}"#);
        assert!(p.is_ok_and(|p| p.components == 3 && p.quantile == 0.99));
        assert!(serde_json::from_str::<MultivariateParams>(r#"{"k": 3}"#).is_err());
    }

    #[test]
    fn degenerate_reference_falls_back_to_fewer_components() {
        let identical = vec![vec![1.0, 2.0]; 60];
        let m = fitted(&identical);
        assert_eq!(m.components_used(), Some(1));
        assert!(!score(&m, &[1.0, 2.0]).is_anomaly);
        assert!(score(&m, &[1.0, 3.0]).is_anomaly);
        let two: Vec<Vec<f64>> = (0..60).map(|i| vec![f64::from(i % 2), 0.0]).collect();
        let m = fitted(&two);
        assert_eq!(m.components_used(), Some(2));
        assert!(!score(&m, &[1.0, 0.0]).is_anomaly);
        assert!(score(&m, &[0.5, 0.0]).is_anomaly);
    }

    #[test]
    fn helpers() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.25), 1.25);
        assert!(quantile(&[], 0.5).is_nan());
        // det [[4, 2], [2, 3]] = 8.
        assert!(cholesky_log_det(&[4.0, 2.0, 2.0, 3.0], 2).is_some_and(|l| (l - 8f64.ln()).abs() < 1e-12));
        assert_eq!(cholesky_log_det(&[1.0, 2.0, 2.0, 1.0], 2), None);
    }
}
