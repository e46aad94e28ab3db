//! What a watch's `detector.kind` asks of an evaluation.
//!
//! Most detectors judge one series at a time, point by point (`robust_baseline`,
//! `seasonal_baseline`, ...: see `warden_detectors::registry`). Four kinds need a different
//! shape of data and are evaluated by their own module:
//!
//! | kind            | data                                         | module              |
//! |-----------------|----------------------------------------------|---------------------|
//! | `group_outlier` | one series per group member                  | [`crate::group_eval`] |
//! | `drift`         | the `_bucket` series of a histogram          | [`crate::drift_eval`] |
//! | `quality`       | one prediction-quality series                | [`crate::drift_eval`] |
//! | `multivariate`  | several named queries (`queries:`) jointly   | [`crate::joint_eval`] |
//!
//! Their extra settings sit beside the detector's own parameters in `detector:`; parsing
//! takes the extra keys out and hands the rest to the detector's closed schema, so an error
//! always names the one parameter at fault.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::config::{DetectorSpec, HumanDuration};
use crate::drift_eval::{DriftSpec, QualitySpec};
use crate::group_eval::GroupSpec;
use crate::joint_eval::JointSpec;

/// A detector-parameter error: `(parameter, message)`; the parameter is empty when the
/// error is about the detector as a whole.
pub type SpecError = (String, String);

/// The evaluation a watch needs.
#[derive(Debug, Clone)]
pub enum WatchKind {
    /// A streaming detector per series (checked by the detector registry).
    Single,
    Group(GroupSpec),
    Drift(DriftSpec),
    Quality(QualitySpec),
    Joint(JointSpec),
}

impl WatchKind {
    pub fn parse(spec: &DetectorSpec) -> Result<Self, SpecError> {
        Ok(match spec.kind.as_str() {
            crate::group_eval::KIND => WatchKind::Group(crate::group_eval::parse_spec(&spec.params)?),
            crate::drift_eval::DRIFT_KIND => WatchKind::Drift(DriftSpec::parse(&spec.params)?),
            crate::drift_eval::QUALITY_KIND => WatchKind::Quality(QualitySpec::parse(&spec.params)?),
            crate::joint_eval::KIND => WatchKind::Joint(JointSpec::parse(&spec.params)?),
            _ => WatchKind::Single,
        })
    }

    /// Whether the watch reads several named `queries` instead of one `query`.
    pub fn wants_queries(kind: &str) -> bool {
        kind == crate::joint_eval::KIND
    }
}

/// All kinds a watch accepts, for error messages.
pub fn all_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&str> = warden_detectors::registry::NAMES.to_vec();
    kinds.extend([crate::group_eval::KIND, crate::drift_eval::DRIFT_KIND, crate::drift_eval::QUALITY_KIND, crate::joint_eval::KIND]);
    kinds
}

/// Remove `key` and read it as a duration (`15m`, `1h30m`).
pub(crate) fn take_duration(rest: &mut serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<Duration>, SpecError> {
    match rest.remove(key) {
        None => Ok(None),
        Some(v) => match serde_json::from_value::<HumanDuration>(v.clone()) {
            Ok(d) if !d.get().is_zero() => Ok(Some(d.get())),
            Ok(_) => Err((key.into(), "must be greater than 0".into())),
            Err(e) => Err((key.into(), format!("{e} (got {v})"))),
        },
    }
}

/// Remove `key` and read it as an integer in `range`.
pub(crate) fn take_count(
    rest: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, SpecError> {
    match rest.remove(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err((key.into(), format!("must be an integer between {} and {}, got {v}", range.start(), range.end()))),
        },
    }
}

/// The remaining keys as the detector's typed parameters; errors name the parameter.
pub(crate) fn detector_params<P: DeserializeOwned>(rest: &serde_json::Map<String, serde_json::Value>) -> Result<P, SpecError> {
    warden_detectors::registry::from_map(rest).map_err(|e| named(&e))
}

/// A detector error as `(parameter, message)`.
pub(crate) fn named(e: &warden_detectors::Error) -> SpecError {
    let message = match e {
        warden_detectors::Error::InvalidParam { name: "param", message } => message.clone(),
        other => other.to_string(),
    };
    (warden_detectors::registry::offending_param(e).unwrap_or_default(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_counts_name_the_key() {
        let mut m = serde_json::json!({"current": "15m", "reference": "soon", "recent": 0}).as_object().cloned().unwrap_or_default();
        assert_eq!(take_duration(&mut m, "current"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(take_duration(&mut m, "reference").map_err(|e| e.0), Err("reference".to_string()));
        assert_eq!(take_count(&mut m, "recent", 1..=10).map_err(|e| e.0), Err("recent".to_string()));
        assert_eq!(take_count(&mut m, "absent", 1..=10), Ok(None));
        assert!(m.is_empty());
    }
}
