//! The one registry of detectors: every detector kind a watch, `warden detect` or a benchmark
//! can name, with its typed configuration.
//!
//! A detector used to be registered twice (here and in the agent, which knew the batch kinds)
//! and its parameters were parsed again on every evaluation. Now a streaming detector is one
//! line of the `streaming!` table below (a batch kind one line of [`BATCH_KINDS`]), which
//! generates the closed, tagged [`DetectorConfig`], [`NAMES`] and the cases the compliance
//! harness runs on every registered detector (`tests/registry_compliance.rs`). A
//! configuration is parsed and range-checked once ([`DetectorConfig::from_map`]); building a
//! detector for a new series from it ([`DetectorConfig::build`]) reads no text.
//!
//! The command line (`warden detect`, `warden bench nab`) passes loose `k=v` pairs
//! ([`build`]); values are read as JSON when they parse as JSON (`5`, `true`, `[24, 168]`)
//! and as strings otherwise (`up`). Unknown keys are errors, like in `warden.yaml`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Detector, Error, Result};

/// The detector a watch gets when it names none, and `warden detect`'s default.
pub const DEFAULT: &str = "auto";

/// What data a detector kind judges, which decides how the agent feeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One series, point by point, through the [`Detector`] trait ([`DetectorConfig`]).
    Series,
    /// The members of a group compared with each other ([`crate::group::GroupOutlier`]).
    Group,
    /// The buckets of a histogram, a current window against a reference one
    /// ([`crate::drift::DriftDetector`]).
    Histogram,
    /// One quality series against a baseline ([`crate::drift::quality_vs_baseline`]).
    Quality,
    /// Several named series of one workload judged jointly
    /// ([`crate::multivariate::Multivariate`]).
    Joint,
}

/// One registered detector kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The name a configuration gives as `kind`.
    pub name: &'static str,
    /// What data it judges.
    pub shape: Shape,
}

/// The parameters the compliance harness builds a streaming detector with, and the step
/// delay it must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HarnessCase {
    /// The detector's name.
    pub name: &'static str,
    /// Parameters as a JSON object: `{}` for the defaults; a detector whose defaults need days
    /// of history before judging anything gives smaller windows.
    pub params: &'static str,
    /// The step check's `max_delay` ([`crate::harness::check_detects_step`]); `None` for a
    /// detector that is not meant to flag a level step on noise (a capacity forecast) or is
    /// known to flag noise (spectral residual's fixed threshold).
    pub max_delay: Option<usize>,
}

/// Declares the streaming detectors: one line each, `Variant(Params) = "name" => Detector,
/// harness: ("{json params}", max_delay)`.
macro_rules! streaming {
    ($( $(#[$doc:meta])* $variant:ident($params:ty) = $name:literal => $detector:ty, harness: ($hp:literal, $delay:expr); )*) => {
        /// A streaming detector's configuration: the closed set of detectors that judge one
        /// series point by point, each with its typed parameters. As YAML or JSON it is a
        /// mapping tagged by `kind` (`{kind: robust_baseline, window: 60}`); unknown
        /// parameters are errors.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum DetectorConfig {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($params), )*
        }

        impl DetectorConfig {
            /// The detector's name (its `kind`).
            pub fn name(&self) -> &'static str {
                match self { $( Self::$variant(_) => $name, )* }
            }

            /// A fresh detector for one series. Cannot fail for a configuration that came
            /// from [`DetectorConfig::from_map`], which builds one to check the ranges.
            pub fn build(&self) -> Result<Box<dyn Detector>> {
                match self { $( Self::$variant(p) => Ok(Box::new(<$detector>::new(p.clone())?)), )* }
            }

            /// Parse without range checks.
            fn typed(kind: &str, params: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
                match kind {
                    $( $name => Ok(Self::$variant(from_map(params)?)), )*
                    _ => Err(Error::InvalidParam {
                        name: "detector",
                        message: format!("unknown detector `{kind}`; known: {}", NAMES.join(", ")),
                    }),
                }
            }
        }

        /// Names of the streaming detectors, in registration order.
        pub const NAMES: &[&str] = &[$($name),*];

        /// The compliance harness's parameters for every streaming detector.
        pub const HARNESS_CASES: &[HarnessCase] = &[$( HarnessCase { name: $name, params: $hp, max_delay: $delay }, )*];
    };
}

streaming! {
    /// The default: a scale-free score with a per-series extreme-value threshold.
    Auto(crate::auto::AutoParams) = "auto" => crate::auto::Auto, harness: ("{}", Some(2));
    /// Rolling mean and standard deviation.
    Sigma(crate::sigma::SigmaParams) = "sigma" => crate::sigma::Sigma, harness: ("{}", Some(3));
    /// Spectral residual saliency.
    SpectralResidual(crate::spectral::SpectralResidualParams) = "spectral_residual" => crate::spectral::SpectralResidual, harness: ("{}", None);
    /// Rolling median and MAD.
    RobustBaseline(crate::robust::RobustBaselineParams) = "robust_baseline" => crate::robust::RobustBaseline, harness: ("{}", Some(5));
    /// Seasonal decomposition with a robust residual.
    SeasonalBaseline(crate::seasonal::SeasonalBaselineParams) = "seasonal_baseline" => crate::seasonal::SeasonalBaseline, harness: ("{}", Some(5));
    /// Bayesian online change points.
    ChangePoint(crate::changepoint::ChangePointParams) = "change_point" => crate::changepoint::ChangePoint, harness: ("{}", Some(3));
    /// A forecaster's prediction band.
    ForecastBand(crate::forecast_band::ForecastBandParams) = "forecast_band" => crate::forecast_band::ForecastBand,
        harness: (r#"{"window": 200, "min_history": 30, "refit_every": 50}"#, Some(5));
    /// Time until a forecast crosses a limit.
    Capacity(crate::capacity::CapacityParams) = "capacity" => crate::capacity::Capacity,
        harness: (r#"{"limit": 1e12, "horizon_points": 100, "window": 200, "min_history": 30, "refit_every": 50}"#, None);
    /// Rolling statistics with a self-tuning threshold.
    Adaptive(crate::adaptive::AdaptiveParams) = "adaptive" => crate::adaptive::AdaptiveDetector, harness: ("{}", None);
}

/// The kinds that are not streaming detectors. The agent evaluates them: it gathers their
/// data (groups, histogram buckets, several queries) and adds its own settings (`member`,
/// `current`, `holdout`, ...) beside the detector's parameters.
pub const BATCH_KINDS: &[Kind] = &[
    Kind { name: "group_outlier", shape: Shape::Group },
    Kind { name: "drift", shape: Shape::Histogram },
    Kind { name: "quality", shape: Shape::Quality },
    Kind { name: "multivariate", shape: Shape::Joint },
];

/// Every detector kind, streaming ones ([`NAMES`]) first.
pub fn kinds() -> impl Iterator<Item = Kind> {
    NAMES.iter().map(|&name| Kind { name, shape: Shape::Series }).chain(BATCH_KINDS.iter().copied())
}

/// The registered kind called `name`.
pub fn kind(name: &str) -> Option<Kind> {
    kinds().find(|k| k.name == name)
}

/// Names of every kind, for help texts and errors.
pub fn all_names() -> Vec<&'static str> {
    kinds().map(|k| k.name).collect()
}

impl DetectorConfig {
    /// Parse and range-check the configuration of streaming detector `kind`: unknown names,
    /// unknown keys, wrong types and out-of-range values are [`Error::InvalidParam`] errors
    /// that [`offending_param`] maps to the parameter at fault.
    pub fn from_map(kind: &str, params: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let config = Self::typed(kind, params)?;
        config.build()?;
        Ok(config)
    }
}

impl Default for DetectorConfig {
    /// [`DEFAULT`] with its default parameters.
    fn default() -> Self {
        Self::Auto(crate::auto::AutoParams::default())
    }
}

/// Build detector `name` from `k=v` pairs.
pub fn build(name: &str, params: &[(String, String)]) -> Result<Box<dyn Detector>> {
    let mut map = serde_json::Map::new();
    for (k, v) in params {
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
        map.insert(k.clone(), value);
    }
    build_from_map(name, &map)
}

/// Build detector `name` from structured parameters (e.g. a YAML mapping).
pub fn build_from_map(name: &str, params: &serde_json::Map<String, serde_json::Value>) -> Result<Box<dyn Detector>> {
    DetectorConfig::typed(name, params)?.build()
}

/// Typed parameters from a map; unknown keys and wrong types are `InvalidParam` errors whose
/// message names the key.
pub fn from_map<P: DeserializeOwned>(params: &serde_json::Map<String, serde_json::Value>) -> Result<P> {
    serde_json::from_value(serde_json::Value::Object(params.clone()))
        .map_err(|e| Error::InvalidParam { name: "param", message: e.to_string() })
}

/// The parameter a configuration error is about: the key of an unknown field, or the name
/// of an out-of-range parameter. `None` for errors about the detector as a whole.
pub fn offending_param(e: &Error) -> Option<String> {
    match e {
        Error::InvalidParam { name: "detector", .. } => None,
        Error::InvalidParam { name: "param", message } => {
            message.strip_prefix("unknown field `").and_then(|r| r.split_once('`')).map(|(f, _)| f.to_string())
        }
        Error::InvalidParam { name, .. } => Some(name.to_string()),
        _ => None,
    }
}

/// Parameters as a sorted map, for printing what was used.
pub fn describe(params: &[(String, String)]) -> BTreeMap<String, String> {
    params.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn map(json: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn builds_with_typed_params() {
        let d = build("robust_baseline", &kv(&[("window", "30"), ("direction", "up"), ("threshold", "3.5")]))
            .expect("builds");
        assert_eq!(d.name(), "robust_baseline");
        assert_eq!(d.max_retained_points(), 30);
    }

    #[test]
    fn rejects_unknown_names_keys_and_bad_values() {
        let e = build("nope", &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown detector `nope`"), "{e}");
        let e = build("robust_baseline", &kv(&[("windw", "30")])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown field `windw`"), "{e}");
        let e = build("robust_baseline", &kv(&[("window", "1")])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("window"), "{e}");
    }

    #[test]
    fn a_config_is_checked_once_and_builds_its_detector() {
        let c =
            DetectorConfig::from_map("robust_baseline", &map(r#"{"window": 30, "direction": "up"}"#)).expect("valid");
        assert_eq!(c.name(), "robust_baseline");
        let d = c.build().expect("builds");
        assert_eq!((d.name(), d.max_retained_points()), ("robust_baseline", 30));
        // Out of range: caught when the configuration is read, naming the parameter.
        let e = DetectorConfig::from_map("robust_baseline", &map(r#"{"window": 1}"#)).expect_err("window 1");
        assert_eq!(offending_param(&e).as_deref(), Some("window"));
        let e = DetectorConfig::from_map("sigma", &map(r#"{"windw": 1}"#)).expect_err("unknown key");
        assert_eq!(offending_param(&e).as_deref(), Some("windw"));
        let e = DetectorConfig::from_map("group_outlier", &map("{}")).expect_err("not streaming");
        assert_eq!(offending_param(&e), None);
        assert_eq!(DetectorConfig::default().name(), DEFAULT);
    }

    #[test]
    fn the_config_is_a_closed_mapping_tagged_by_kind() {
        let c: DetectorConfig = serde_json::from_str(r#"{"kind": "sigma", "window": 20}"#).expect("tagged");
        assert_eq!(c.name(), "sigma");
        let back = serde_json::to_value(&c).expect("serialises");
        assert_eq!(back.get("kind").and_then(|k| k.as_str()), Some("sigma"));
        let e = serde_json::from_str::<DetectorConfig>(r#"{"kind": "sigma", "windw": 20}"#).expect_err("closed");
        assert!(e.to_string().contains("windw"), "{e}");
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"kind": "nope"}"#).is_err());
    }

    #[test]
    fn every_kind_is_registered_once_and_every_streaming_one_has_a_harness_case() {
        let names = all_names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let streaming: Vec<&str> = kinds().filter(|k| k.shape == Shape::Series).map(|k| k.name).collect();
        assert_eq!(streaming, NAMES);
        let cased: Vec<&str> = HARNESS_CASES.iter().map(|c| c.name).collect();
        assert_eq!(cased, NAMES);
        assert_eq!(kind("drift").map(|k| k.shape), Some(Shape::Histogram));
        assert_eq!(kind("nope"), None);
        assert!(names.contains(&DEFAULT));
    }
}
