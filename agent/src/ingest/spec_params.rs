//! The kit every watch kind parses its `detector:` settings with: take an extra key out as
//! a duration or a count, hand the rest to the detector's closed schema, and name the
//! parameter at fault in every error. Shared by [`crate::ingest::watch_kind`] and the
//! kinds' own modules (`group_eval`, `drift_eval`, `joint_eval`).

use std::time::Duration;

use serde::de::DeserializeOwned;
use warden_playbooks::duration::HumanDuration;

/// A detector-parameter error: `(parameter, message)`; the parameter is empty when the
/// error is about the detector as a whole.
pub type SpecError = (String, String);

/// Remove `key` and read it as a duration (`15m`, `1h30m`).
pub fn take_duration(
    rest: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<Duration>, SpecError> {
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
pub fn take_count(
    rest: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, SpecError> {
    match rest.remove(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => {
                Err((key.into(), format!("must be an integer between {} and {}, got {v}", range.start(), range.end())))
            }
        },
    }
}

/// The remaining keys as the detector's typed parameters; errors name the parameter.
pub fn detector_params<P: DeserializeOwned>(rest: &serde_json::Map<String, serde_json::Value>) -> Result<P, SpecError> {
    warden_detectors::registry::from_map(rest).map_err(|e| named(&e))
}

/// A detector error as `(parameter, message)`.
pub fn named(e: &warden_detectors::Error) -> SpecError {
    let message = match e {
        warden_detectors::Error::InvalidParam { name: "param", message } => message.clone(),
        other => other.to_string(),
    };
    (warden_detectors::registry::offending_param(e).unwrap_or_default(), message)
}
