//! Change points: level and variance shifts, by Bayesian online change point
//! detection (BOCPD, Adams & MacKay 2007).
//!
//! A rolling baseline reports a lasting shift only until the shift has become
//! the new normal (see [`robust`](crate::robust)); after that the series looks
//! healthy again and the moment the behaviour changed is lost. Deploys,
//! configuration changes and failovers show up as exactly such shifts, in the
//! level or in the noise. This detector asks a different question for every
//! point: *did the series start behaving differently within the last few
//! points?* It keeps a posterior distribution over the current *run length*
//! (the number of points since the last change) and reports the probability
//! that the current run began within the last `recent_window` points.
//!
//! `augurs` has a BOCPD implementation behind its `changepoint` feature, but
//! that feature pulls in an older numeric stack (a second `ndarray`,
//! `nalgebra`, `rv`); the model below is small enough to carry here.
//!
//! # Model
//!
//! * **Normalisation.** The first `min_history` finite points fix an anchor:
//!   their median `c0` and robust scale `s0`. Every point is stored as
//!   `z = (x - c0) / s0` (clamped to `±1e100`, so squares stay finite), which
//!   keeps the run statistics in one consistent unit for the life of the
//!   detector. The *prior* of a new run follows the series: its mean is the
//!   median of the last `scale_window` points and its variance the square of
//!   their robust scale, both before the current point. The robust scale is
//!   `1.4826 * MAD(first differences) / sqrt(2)`, which ignores level shifts
//!   (one large difference) and slow trends, floored by
//!   `min_relative_scale * |median|` and `min_absolute_scale` like the robust
//!   baseline.
//! * **Observation model.** Each run is Gaussian with unknown mean and
//!   variance under a Normal-Gamma prior (`kappa0 = 1`, `alpha0 = 1`,
//!   `beta0 = prior variance`), so its posterior predictive is a Student-t
//!   with `2 alpha` degrees of freedom. With probability
//!   `outlier_probability` a point instead comes from a broad outlier density
//!   shared by all runs (a Cauchy centred on the prior mean with ten times the
//!   prior scale). Because the outlier density is the same for every run, a
//!   lone spike does not move probability between run lengths, and each run
//!   adds the point to its statistics with weight equal to the posterior
//!   probability that the point is *not* an outlier for that run. A lasting
//!   shift is explained far better by a new run after two or three points,
//!   which is when it is reported.
//! * **Hazard.** A change happens before each point with constant probability
//!   `H = 1 / expected_run_length`.
//! * **Truncation.** Run lengths are tracked up to `max_run_length`; the
//!   probability of longer runs is merged into the last cell, which keeps the
//!   statistics of the more probable of the two merged runs with its effective
//!   sample size capped at `max_run_length` (older points are forgotten
//!   proportionally). Runs whose probability falls below `e^-50` (about
//!   1e-22) are dropped. Memory is therefore fixed.
//!
//! # Output, per point
//!
//! * `p = P(1 <= run length <= recent_window | data so far)`: the probability
//!   that a change happened within the last `recent_window` points (the point
//!   itself included). `score` maps `p` piecewise linearly onto `[0, 1]` with
//!   `threshold` at 0.5; the point is
//!   [`Anomalous`](DetectionState::Anomalous) when `p > threshold`. After a
//!   clear shift the alarm therefore lasts about `recent_window` points: a
//!   change point is an event, not a state.
//! * `expected` is the predictive mean of the most probable run before the
//!   point, `explanation.scale` that run's predictive scale (in series units),
//!   `lower` / `upper` = `expected ∓ 3 * scale`, `z_score` the point's
//!   deviation in those units, `threshold` the probability threshold and
//!   `note` the probability and the most probable run length.
//! * Fewer than `min_history` finite points: [`WarmingUp`](DetectionState::WarmingUp).
//!   Non-finite values: [`NoData`](DetectionState::NoData), ignored (they
//!   neither advance nor reset the run of alarms). Timestamps are echoed;
//!   a non-increasing timestamp is processed with a note.
//!
//! # Behaviour with the defaults (measured on Gaussian noise, 8 seeds)
//!
//! A level shift of 4 σ is reported at its first or second point, one of
//! 2 σ within 2 – 9 points; a tripling of σ within 2 – 13 points. Isolated
//! spikes of 15 σ are not reported. On stationary noise fewer than 1 in 2000
//! points are in alarm (`expected_run_length` trades these false alarms
//! against delay; `outlier_probability = 0` makes every spike a change).
//!
//! # Cost
//!
//! Memory per series, fixed when the detector is built: the last
//! `scale_window` finite values plus two selection buffers of the same size
//! (`24 * scale_window` bytes) and two run-length tables of
//! `max_run_length + 1` cells of four `f64`s (`64 * (max_run_length + 1)`
//! bytes): about 24 KiB with the defaults (200, 300). Each point costs
//! `O(max_run_length)` Student-t evaluations (a few `ln` / `exp` each) plus
//! two linear-time medians of the scale window: about 15 µs per point with
//! the defaults, measured over 10 000 points in a release build on one core
//! of the (loaded) 2-core reference machine.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::common::{self, clamp_finite, join_notes, log_add_exp, select_median, TimestampOrder};
use crate::detector::{Detection, DetectionState, Detector, Deviation, Explanation};
use crate::error::Result;

/// Largest accepted `scale_window` and `max_run_length`.
pub const MAX_WINDOW: usize = 100_000;

const MAD_TO_SIGMA: f64 = 1.4826;
/// Values are clamped to this magnitude in normalised units so that squares
/// and sums of up to [`MAX_WINDOW`] squares stay finite.
const Z_LIMIT: f64 = 1e100;
/// Prior pseudo-count of the mean.
const KAPPA0: f64 = 1.0;
/// Prior shape of the precision.
const ALPHA0: f64 = 1.0;
/// Scale of the shared outlier density relative to the prior scale.
const OUTLIER_SCALE: f64 = 10.0;
/// Runs less probable than `exp(PRUNE_LOG_P)` (about 1e-22) are dropped.
const PRUNE_LOG_P: f64 = -50.0;
/// Half-width of the reported normal range, in predictive scales.
const BAND: f64 = 3.0;

/// Parameters of [`ChangePoint`]. Missing fields take their defaults when
/// deserialised; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangePointParams {
    /// Expected number of points between changes; the hazard is its inverse
    /// (default 1000).
    pub expected_run_length: f64,
    /// Longest run length tracked; bounds memory and cost (default 300).
    pub max_run_length: usize,
    /// A change is "recent" if the current run is at most this long
    /// (default 30).
    pub recent_window: usize,
    /// Probability of a recent change above which a point is anomalous
    /// (default 0.7).
    pub threshold: f64,
    /// Finite points needed before judging (default 30).
    pub min_history: usize,
    /// Points in the running median / robust scale (default 200).
    pub scale_window: usize,
    /// Prior probability that a point is an isolated outlier (default 0.01;
    /// 0 disables the outlier component).
    pub outlier_probability: f64,
    /// Scale floor as a fraction of `|median|` (default 0.01).
    pub min_relative_scale: f64,
    /// Absolute scale floor (default 1e-9).
    pub min_absolute_scale: f64,
}

impl Default for ChangePointParams {
    fn default() -> Self {
        Self {
            expected_run_length: 1000.0,
            max_run_length: 300,
            recent_window: 30,
            threshold: 0.7,
            min_history: 30,
            scale_window: 200,
            outlier_probability: 0.01,
            min_relative_scale: 0.01,
            min_absolute_scale: 1e-9,
        }
    }
}

impl ChangePointParams {
    /// Check every parameter against its allowed range.
    ///
    /// * `expected_run_length`: finite and >= 2
    /// * `max_run_length`: 2 ..= [`MAX_WINDOW`]
    /// * `recent_window`: 1 ..= `max_run_length - 1`
    /// * `threshold`: strictly between 0 and 1
    /// * `scale_window`: 3 ..= [`MAX_WINDOW`]
    /// * `min_history`: 3 ..= `scale_window`
    /// * `outlier_probability`: 0 ..= 0.5
    /// * `min_relative_scale`, `min_absolute_scale`: finite and >= 0
    pub fn validate(&self) -> Result<()> {
        common::finite_at_least("expected_run_length", self.expected_run_length, 2.0)?;
        common::between("max_run_length", self.max_run_length, 2, MAX_WINDOW)?;
        // max_run_length >= 2 from here on, so the subtraction cannot underflow.
        common::between_param("recent_window", self.recent_window, 1, "max_run_length - 1", self.max_run_length - 1)?;
        common::strictly_between("threshold", self.threshold, 0.0, 1.0)?;
        common::between("scale_window", self.scale_window, 3, MAX_WINDOW)?;
        common::between_param("min_history", self.min_history, 3, "scale_window", self.scale_window)?;
        common::between("outlier_probability", self.outlier_probability, 0.0, 0.5)?;
        common::scale_floors(self.min_relative_scale, self.min_absolute_scale)
    }
}

/// Sufficient statistics of one run (in normalised units) and its log
/// posterior probability.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    log_p: f64,
    /// Effective number of points (outlier-weighted).
    n: f64,
    mean: f64,
    /// Sum of weighted squared deviations from `mean`.
    m2: f64,
}

impl Cell {
    fn empty(log_p: f64) -> Self {
        Self { log_p, n: 0.0, mean: 0.0, m2: 0.0 }
    }

    /// Add `z` with weight `w` (weighted Welford update).
    fn add(&mut self, z: f64, w: f64) {
        if w <= 0.0 {
            return;
        }
        let n = self.n + w;
        let delta = z - self.mean;
        let mean = self.mean + w * delta / n;
        self.m2 = clamp_finite(self.m2 + w * delta * (z - mean)).max(0.0);
        self.mean = mean;
        self.n = n;
    }

    /// Forget proportionally so that the effective size is at most `cap`.
    fn cap(&mut self, cap: f64) {
        if self.n > cap {
            self.m2 *= cap / self.n;
            self.n = cap;
        }
    }
}

/// Normal-Gamma prior in normalised units.
#[derive(Debug, Clone, Copy)]
struct Prior {
    mu0: f64,
    beta0: f64,
}

/// Student-t predictive of a run: location, scale, degrees of freedom.
#[derive(Debug, Clone, Copy)]
struct Predictive {
    loc: f64,
    scale: f64,
    dof: f64,
}

impl Predictive {
    fn of(cell: &Cell, prior: Prior) -> Self {
        let n = cell.n;
        let kappa = KAPPA0 + n;
        let loc = (KAPPA0 * prior.mu0 + n * cell.mean) / kappa;
        let alpha = ALPHA0 + n / 2.0;
        let d = cell.mean - prior.mu0;
        let beta = prior.beta0 + cell.m2 / 2.0 + KAPPA0 * n * d * d / (2.0 * kappa);
        let var = clamp_finite(beta * (kappa + 1.0) / (alpha * kappa));
        Self { loc, scale: var.sqrt().max(f64::MIN_POSITIVE), dof: 2.0 * alpha }
    }

    fn log_pdf(&self, z: f64) -> f64 {
        let u = (z - self.loc) / self.scale;
        let nu = self.dof;
        ln_gamma_half_ratio(nu / 2.0)
            - 0.5 * (nu * std::f64::consts::PI * self.scale * self.scale).ln()
            - (nu + 1.0) / 2.0 * (u * u / nu).ln_1p()
    }
}

/// Log density of the shared outlier component: a Cauchy centred on the prior
/// mean with [`OUTLIER_SCALE`] times the prior scale.
fn outlier_log_pdf(z: f64, prior: Prior) -> f64 {
    let scale = (OUTLIER_SCALE * prior.beta0.sqrt()).max(f64::MIN_POSITIVE);
    let u = (z - prior.mu0) / scale;
    -(std::f64::consts::PI * scale).ln() - (u * u).ln_1p()
}

/// `ln Γ(a + 1/2) - ln Γ(a)` for `a > 0`: an asymptotic series for
/// `a >= 10` (error about 2e-12 at 10, less above), log-gamma differences
/// below.
fn ln_gamma_half_ratio(a: f64) -> f64 {
    if a >= 10.0 {
        let inv = 1.0 / a;
        let inv2 = inv * inv;
        0.5 * a.ln() - inv / 8.0 + inv * inv2 / 192.0 - inv2 * inv2 * inv / 640.0
            + 17.0 * inv2 * inv2 * inv2 * inv / 14336.0
    } else {
        ln_gamma(a + 0.5) - ln_gamma(a)
    }
}

/// Log-gamma for `x > 0` (Lanczos, g = 7, nine coefficients; relative error
/// below 1e-13 on the range used here).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let s = (std::f64::consts::PI * x).sin();
        return std::f64::consts::PI.ln() - s.abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Bayesian online change point detector. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ChangePoint {
    params: ChangePointParams,
    log_hazard: f64,
    log_growth: f64,
    log_outlier: f64,
    log_inlier: f64,
    /// Last `scale_window` finite values, oldest first.
    window: VecDeque<f64>,
    /// Sorting buffers for the median and MAD.
    scratch: Vec<f64>,
    diffs: Vec<f64>,
    /// Anchor `(c0, s0)`, fixed at the end of the warm-up.
    anchor: Option<(f64, f64)>,
    /// Run-length distribution, index = run length.
    cells: Vec<Cell>,
    next: Vec<Cell>,
    consecutive: u32,
    timestamps: TimestampOrder,
}

/// Robust location and scale of the window.
#[derive(Debug, Clone, Copy)]
struct WindowStats {
    median: f64,
    scale: f64,
}

impl ChangePoint {
    /// Build a detector; fails if `params` do not pass
    /// [`ChangePointParams::validate`].
    pub fn new(params: ChangePointParams) -> Result<Self> {
        params.validate()?;
        let hazard = 1.0 / params.expected_run_length;
        let eps = params.outlier_probability;
        let cells = params.max_run_length + 1;
        let window = params.scale_window;
        Ok(Self {
            log_hazard: hazard.ln(),
            log_growth: (-hazard).ln_1p(),
            log_outlier: eps.ln(),
            log_inlier: (-eps).ln_1p(),
            window: VecDeque::with_capacity(window),
            scratch: Vec::with_capacity(window),
            diffs: Vec::with_capacity(window),
            anchor: None,
            cells: Vec::with_capacity(cells),
            next: Vec::with_capacity(cells),
            consecutive: 0,
            timestamps: TimestampOrder::default(),
            params,
        })
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &ChangePointParams {
        &self.params
    }

    /// Current posterior probability of each run length (index = run length,
    /// at most `max_run_length + 1` entries; empty while warming up).
    pub fn run_length_posterior(&self) -> Vec<f64> {
        self.cells.iter().map(|c| c.log_p.exp()).collect()
    }

    fn push(&mut self, value: f64) {
        while self.window.len() >= self.params.scale_window {
            self.window.pop_front();
        }
        self.window.push_back(value);
    }

    /// Median and floored robust scale (from first differences) of the window.
    fn window_stats(&mut self) -> Option<WindowStats> {
        self.scratch.clear();
        self.scratch.extend(self.window.iter().copied());
        let median = select_median(&mut self.scratch)?;
        self.diffs.clear();
        let mut prev: Option<f64> = None;
        for &v in &self.window {
            if let Some(p) = prev {
                self.diffs.push(clamp_finite(v - p));
            }
            prev = Some(v);
        }
        let diff_scale = match select_median(&mut self.diffs) {
            Some(center) => {
                for d in &mut self.diffs {
                    *d = clamp_finite((*d - center).abs());
                }
                let mad = select_median(&mut self.diffs).unwrap_or(0.0);
                clamp_finite(MAD_TO_SIGMA * mad / std::f64::consts::SQRT_2)
            }
            None => 0.0,
        };
        let scale = diff_scale
            .max(clamp_finite(self.params.min_relative_scale * median.abs()))
            .max(self.params.min_absolute_scale);
        Some(WindowStats { median, scale })
    }

    /// Start the run-length distribution from the warm-up window: one run
    /// holding the window, plus the empty run with the hazard's mass.
    fn start(&mut self, stats: WindowStats) {
        let (c0, s0) = (stats.median, stats.scale);
        self.anchor = Some((c0, s0));
        let mut run = Cell::empty(self.log_growth);
        for &v in &self.window {
            run.add(normalise(v, c0, s0), 1.0);
        }
        let len = self.window.len().min(self.params.max_run_length);
        run.cap(len as f64);
        self.cells.clear();
        self.cells.push(Cell::empty(self.log_hazard));
        for _ in 1..len {
            self.cells.push(Cell::empty(f64::NEG_INFINITY));
        }
        self.cells.push(run);
    }

    fn prior(&self, stats: WindowStats, c0: f64, s0: f64) -> Prior {
        let ratio = clamp_z(stats.scale / s0);
        Prior { mu0: normalise(stats.median, c0, s0), beta0: (ratio * ratio).max(f64::MIN_POSITIVE) }
    }

    /// One BOCPD step with the normalised value `z`; returns the predictive
    /// of the most probable run before the step.
    fn step(&mut self, z: f64, prior: Prior) -> (Predictive, usize) {
        let log_outlier = self.log_outlier + outlier_log_pdf(z, prior);
        let with_outliers = self.params.outlier_probability > 0.0;
        let mut best = (f64::NEG_INFINITY, 0usize);
        let mut best_pred = Predictive { loc: prior.mu0, scale: prior.beta0.sqrt(), dof: 2.0 * ALPHA0 };
        let mut max_joint = f64::NEG_INFINITY;
        self.next.clear();
        self.next.push(Cell::empty(f64::NEG_INFINITY));
        let cap = self.params.max_run_length;
        for (r, cell) in self.cells.iter().enumerate() {
            if cell.log_p < PRUNE_LOG_P {
                // Negligible run: dropped (it keeps its slot, with no mass).
                if r < cap {
                    self.next.push(Cell::empty(f64::NEG_INFINITY));
                }
                continue;
            }
            let pred = Predictive::of(cell, prior);
            if cell.log_p > best.0 {
                best = (cell.log_p, r);
                best_pred = pred;
            }
            let log_t = pred.log_pdf(z);
            let (log_mix, weight) = if with_outliers {
                // log(e^a + e^b) and e^a / (e^a + e^b) with one exp.
                let a = self.log_inlier + log_t;
                if a >= log_outlier {
                    let e = (log_outlier - a).exp();
                    (a + e.ln_1p(), 1.0 / (1.0 + e))
                } else {
                    let e = (a - log_outlier).exp();
                    (log_outlier + e.ln_1p(), e / (1.0 + e))
                }
            } else {
                (log_t, 1.0)
            };
            let joint = cell.log_p + log_mix;
            max_joint = max_joint.max(joint);
            let mut grown = *cell;
            grown.add(z, weight);
            // Unnormalised; the growth factor 1 - H is applied below.
            grown.log_p = joint;
            if r + 1 > cap {
                // Merge into the last cell: keep the more probable run's
                // statistics, add the probabilities.
                if let Some(last) = self.next.last_mut() {
                    let log_p = log_add_exp(last.log_p, grown.log_p);
                    if grown.log_p > last.log_p {
                        *last = grown;
                    }
                    last.log_p = log_p;
                    last.cap(cap as f64);
                }
            } else {
                grown.cap(cap as f64);
                self.next.push(grown);
            }
        }
        // The evidence is S = Σ_r exp(joint_r); a change takes H · S and
        // growth (1 - H) · S, so after normalising the empty run has
        // probability H and every grown run exp(joint_r) (1 - H) / S.
        let sum: f64 = self.next.iter().skip(1).map(|c| (c.log_p - max_joint).exp()).sum();
        let log_evidence = max_joint + sum.ln();
        if log_evidence.is_finite() {
            for c in self.next.iter_mut().skip(1) {
                c.log_p += self.log_growth - log_evidence;
            }
            if let Some(first) = self.next.first_mut() {
                first.log_p = self.log_hazard;
            }
            std::mem::swap(&mut self.cells, &mut self.next);
        }
        // A non-finite evidence cannot happen with finite inputs (the empty
        // run always has a finite predictive); the old distribution is kept
        // then.
        (best_pred, best.1)
    }

    /// `P(1 <= run length <= recent_window)`.
    fn recent_change_probability(&self) -> f64 {
        let k = self.params.recent_window;
        let p: f64 = self.cells.iter().skip(1).take(k).map(|c| c.log_p.exp()).sum();
        if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// `(v - c0) / s0`, clamped to `±Z_LIMIT`.
fn normalise(v: f64, c0: f64, s0: f64) -> f64 {
    let z = clamp_finite(v - c0) / s0;
    clamp_z(z)
}

fn clamp_z(z: f64) -> f64 {
    if z.is_nan() {
        0.0
    } else {
        z.clamp(-Z_LIMIT, Z_LIMIT)
    }
}

/// Piecewise-linear map of a probability onto `[0, 1]` with `threshold` at
/// 0.5.
fn probability_score(p: f64, threshold: f64) -> f64 {
    let s = if p <= threshold { 0.5 * p / threshold } else { 0.5 + 0.5 * (p - threshold) / (1.0 - threshold) };
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Detector for ChangePoint {
    fn name(&self) -> &'static str {
        "change_point"
    }

    fn update(&mut self, timestamp_ms: i64, value: f64) -> Detection {
        let mut notes: Vec<String> = Vec::new();
        self.timestamps.check(timestamp_ms, &mut notes);
        let history = self.window.len();
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
            let explanation = detection.explanation;
            return common::no_data(timestamp_ms, value, &notes, Some("ignored"), explanation);
        }

        let stats = self.window_stats();
        let anchor = match (self.anchor, stats) {
            (Some(anchor), Some(stats)) => Some((anchor, stats)),
            (None, Some(stats)) if history >= self.params.min_history => {
                self.start(stats);
                self.anchor.map(|a| (a, stats))
            }
            _ => None,
        };
        let Some(((c0, s0), stats)) = anchor else {
            self.consecutive = 0;
            let median = stats.map(|s| s.median);
            self.push(value);
            notes.push(format!("warming up: {history} of {} points of history", self.params.min_history));
            detection.state = DetectionState::WarmingUp;
            detection.expected = median;
            detection.deviation = Deviation::of(value, median);
            detection.explanation.baseline = median;
            detection.explanation.consecutive = 0;
            detection.explanation.note = join_notes(&notes);
            return detection;
        };

        let prior = self.prior(stats, c0, s0);
        let z = normalise(value, c0, s0);
        let (pred, run_length) = self.step(z, prior);
        let p = self.recent_change_probability();
        let changed = p > threshold;
        self.consecutive = if changed { self.consecutive.saturating_add(1) } else { 0 };
        self.push(value);

        let expected = clamp_finite(c0 + clamp_finite(s0 * pred.loc));
        let scale = clamp_finite(s0 * pred.scale);
        let band = clamp_finite(BAND * scale);
        let diff = clamp_finite(value - expected);
        let z_score = if diff == 0.0 {
            0.0
        } else if scale > 0.0 {
            clamp_finite(diff / scale)
        } else {
            clamp_finite(diff.signum() * f64::INFINITY)
        };
        notes.push(format!(
            "P(change within the last {} points) = {p:.3}; most probable run length {run_length}",
            self.params.recent_window
        ));
        detection.score = probability_score(p, threshold);
        detection.expected = Some(expected);
        detection.lower = Some(clamp_finite(expected - band));
        detection.upper = Some(clamp_finite(expected + band));
        detection.deviation = Deviation::of(value, Some(expected));
        detection.state = if changed { DetectionState::Anomalous } else { DetectionState::Normal };
        detection.explanation = Explanation {
            crossing: None,
            baseline: Some(expected),
            scale: Some(scale),
            z_score: Some(z_score),
            threshold: Some(threshold),
            consecutive: self.consecutive,
            history,
            note: join_notes(&notes),
        };
        detection
    }

    fn reset(&mut self) {
        self.window.clear();
        self.scratch.clear();
        self.diffs.clear();
        self.anchor = None;
        self.cells.clear();
        self.next.clear();
        self.consecutive = 0;
        self.timestamps.reset();
    }

    fn max_retained_points(&self) -> usize {
        self.params.scale_window
    }

    fn retained_points(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests;
