//! Anomaly detectors for metric series.
//!
//! Warden watches many metric series at once and must decide, point by point,
//! whether each new sample looks abnormal. This crate holds that decision
//! logic and nothing else: it is pure and synchronous (no I/O, no clock, no
//! async, no logging), so every detector can be unit- and property-tested in
//! isolation and replayed deterministically when an incident is investigated.
//!
//! # The detector seam
//!
//! Every detector implements [`Detector`]: it receives one `(timestamp, value)`
//! pair at a time, in time order, and returns a [`Detection`] for that point.
//! The output for point *i* depends on points `<= i` only (no look-ahead), so
//! the same code serves live streaming and historical replay. A detector keeps
//! a bounded amount of history per series ([`Detector::max_retained_points`]),
//! which lets the daemon budget memory per watched series.
//!
//! Common conventions, shared by all detectors so that the agent can treat
//! them uniformly:
//!
//! * [`Detection::score`] is finite and in `[0, 1]`; `0.5` means "exactly at
//!   the detector's threshold". Points that are not judged (warm-up, missing
//!   data) score `0`.
//! * [`DetectionState::WarmingUp`] means "not enough history to judge";
//!   [`DetectionState::NoData`] means the value was not a finite number and
//!   was ignored.
//! * [`Explanation`] carries the numbers behind the decision so that evidence
//!   and API responses can show *why* a point was flagged.
//!
//! The [`harness`] module contains compliance checks that every detector,
//! present or future, is expected to pass; `tests/registry_compliance.rs` runs them on
//! every detector of the [`registry`], the one list of detector kinds with their closed,
//! typed configuration ([`registry::DetectorConfig`]). The rules are written down in
//! `docs/specs/detector.md`.
//!
//! # Detectors
//!
//! * [`auto::Auto`]: the default: a scale-free score with a per-series extreme-value threshold.
//! * [`sigma::Sigma`], [`spectral::SpectralResidual`]: the classic baselines.
//! * [`RobustBaseline`]: rolling median / MAD baseline with a robust z-score.

pub mod adaptive;
pub mod auto;
pub mod capacity;
pub mod changepoint;
mod common;
pub mod detector;
pub mod drift;
mod error;
pub mod eval;
pub mod forecast;
pub mod forecast_band;
pub mod group;
pub mod harness;
pub mod logs;
pub mod multivariate;
pub mod rca;
pub mod registry;
pub mod robust;
pub mod seasonal;
pub mod sigma;
pub mod spectral;
mod spot;
#[cfg(test)]
mod test_support;

pub use detector::{Detection, DetectionState, Detector, Deviation, Direction, Explanation, LimitCrossing};
pub use error::{Error, Result};
pub use robust::{RobustBaseline, RobustBaselineParams};
pub use {
    changepoint::{ChangePoint, ChangePointParams},
    drift::{DriftDetector, DriftParams},
    group::{GroupOutlier, GroupOutlierParams},
    multivariate::{Multivariate, MultivariateParams},
    seasonal::{SeasonalBaseline, SeasonalBaselineParams},
};
