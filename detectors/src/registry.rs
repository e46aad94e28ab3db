//! Detectors by name, with parameters given as `key=value` strings.
//!
//! The command line (`warden detect`, `warden bench nab`) names a detector and passes loose
//! `k=v` pairs; this module turns them into the detector's typed, validated parameters
//! (unknown keys are errors, like in `warden.yaml`). Values are read as JSON when they parse
//! as JSON (`5`, `true`, `[24, 168]`) and as strings otherwise (`up`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::{Detector, Error, Result, RobustBaseline};

/// The detector a watch gets when it names none, and `warden detect`'s default.
pub const DEFAULT: &str = "auto";

/// Names of the single-series streaming detectors, for help texts and errors.
pub const NAMES: &[&str] = &["auto", "sigma", "spectral_residual", "robust_baseline", "seasonal_baseline", "change_point", "forecast_band", "capacity", "adaptive"];

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
    match name {
        "auto" => Ok(Box::new(crate::auto::Auto::new(from_map(params)?)?)),
        "sigma" => Ok(Box::new(crate::sigma::Sigma::new(from_map(params)?)?)),
        "spectral_residual" => Ok(Box::new(crate::spectral::SpectralResidual::new(from_map(params)?)?)),
        "robust_baseline" => Ok(Box::new(RobustBaseline::new(from_map(params)?)?)),
        "seasonal_baseline" => Ok(Box::new(crate::seasonal::SeasonalBaseline::new(from_map(params)?)?)),
        "change_point" => Ok(Box::new(crate::changepoint::ChangePoint::new(from_map(params)?)?)),
        "forecast_band" => Ok(Box::new(crate::forecast_band::ForecastBand::new(from_map(params)?)?)),
        "capacity" => Ok(Box::new(crate::capacity::Capacity::new(from_map(params)?)?)),
        "adaptive" => Ok(Box::new(crate::adaptive::AdaptiveDetector::new(from_map(params)?)?)),
        _ => Err(Error::InvalidParam {
            name: "detector",
            message: format!("unknown detector `{name}`; known: {}", NAMES.join(", ")),
        }),
    }
}

/// Typed parameters from a map; unknown keys and wrong types are `InvalidParam` errors whose
/// message names the key.
pub fn from_map<P: DeserializeOwned>(params: &serde_json::Map<String, serde_json::Value>) -> Result<P> {
    serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|e| Error::InvalidParam {
        name: "param",
        message: e.to_string(),
    })
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

    #[test]
    fn builds_with_typed_params() {
        let d = build("robust_baseline", &kv(&[("window", "30"), ("direction", "up"), ("threshold", "3.5")])).expect("builds");
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
}
