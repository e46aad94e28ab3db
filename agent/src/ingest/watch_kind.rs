//! What a watch's `detector:` section asks of an evaluation, parsed once when the
//! configuration is read.
//!
//! Every kind is registered once, in `warden_detectors::registry`, with the shape of data it
//! judges. Most judge one series at a time, point by point (`auto`, `robust_baseline`, ...);
//! their parameters become a typed, range-checked `DetectorConfig` here and each new series
//! gets a detector built from it without reading any text again. Four kinds need a different
//! shape of data and are evaluated by their own module:
//!
//! | kind            | data                                         | module              |
//! |-----------------|----------------------------------------------|---------------------|
//! | `group_outlier` | one series per group member                  | [`crate::ingest::group_eval`] |
//! | `drift`         | the `_bucket` series of a histogram          | [`crate::ingest::drift_eval`] |
//! | `quality`       | one prediction-quality series                | [`crate::ingest::drift_eval`] |
//! | `multivariate`  | several named queries (`queries:`) jointly   | [`crate::ingest::joint_eval`] |
//!
//! Their extra settings sit beside the detector's own parameters in `detector:`; parsing
//! takes the extra keys out and hands the rest to the detector's closed schema, so an error
//! always names the one parameter at fault.

use warden_detectors::registry::{self, DetectorConfig, Shape};

use crate::ingest::drift_eval::{DriftSpec, QualitySpec};
use crate::ingest::group_eval::GroupSpec;
use crate::ingest::joint_eval::JointSpec;

pub use crate::ingest::spec_params::{named, SpecError};

/// Most unknown keys reported for one detector before giving up.
const MAX_UNKNOWN_KEYS: usize = 16;

/// The evaluation a watch needs, with the detector's typed configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchKind {
    /// A streaming detector per series.
    Single(DetectorConfig),
    Group(GroupSpec),
    Drift(DriftSpec),
    Quality(QualitySpec),
    Joint(JointSpec),
}

impl WatchKind {
    /// Parse and check detector `kind` with `params` (the other keys of `detector:`). Every
    /// problem found is returned: an unknown key is reported and left out so the remaining
    /// parameters are still checked.
    pub fn parse(kind: &str, params: &serde_json::Map<String, serde_json::Value>) -> Result<Self, Vec<SpecError>> {
        let one = |e: SpecError| vec![e];
        Ok(match registry::kind(kind).map(|k| k.shape) {
            Some(Shape::Group) => WatchKind::Group(crate::ingest::group_eval::parse_spec(params).map_err(one)?),
            Some(Shape::Histogram) => WatchKind::Drift(DriftSpec::parse(params).map_err(one)?),
            Some(Shape::Quality) => WatchKind::Quality(QualitySpec::parse(params).map_err(one)?),
            Some(Shape::Joint) => WatchKind::Joint(JointSpec::parse(params).map_err(one)?),
            Some(Shape::Series) | None => WatchKind::Single(streaming(kind, params)?),
        })
    }

    /// Whether the watch reads several named `queries` instead of one `query`.
    pub fn wants_queries(kind: &str) -> bool {
        kind == crate::ingest::joint_eval::KIND
    }
}

/// A streaming detector's configuration, or every problem with it.
fn streaming(
    kind: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<DetectorConfig, Vec<SpecError>> {
    let mut params = params.clone();
    let mut problems = Vec::new();
    for _ in 0..MAX_UNKNOWN_KEYS {
        let e = match DetectorConfig::from_map(kind, &params) {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let message = match &e {
            warden_detectors::Error::InvalidParam { name: "detector" | "param", message } => message.clone(),
            other => other.to_string(),
        };
        match (&e, registry::offending_param(&e)) {
            (warden_detectors::Error::InvalidParam { name: "detector", .. }, _) => {
                problems.push(("kind".into(), format!("unknown detector `{kind}`; known: {}", all_kinds().join(", "))));
                return Err(problems);
            }
            // An unknown key is left out so the remaining parameters are still checked.
            (warden_detectors::Error::InvalidParam { name: "param", .. }, Some(f)) => {
                params.remove(&f);
                problems.push((f, message));
            }
            (_, f) => {
                problems.push((f.unwrap_or_default(), message));
                return Err(problems);
            }
        }
    }
    Err(problems)
}

/// All kinds a watch accepts, for error messages.
pub fn all_kinds() -> Vec<&'static str> {
    registry::all_names()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::spec_params::{take_count, take_duration};
    use std::time::Duration;

    #[test]
    fn durations_and_counts_name_the_key() {
        let mut m = serde_json::json!({"current": "15m", "reference": "soon", "recent": 0})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(take_duration(&mut m, "current"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(take_duration(&mut m, "reference").map_err(|e| e.0), Err("reference".to_string()));
        assert_eq!(take_count(&mut m, "recent", 1..=10).map_err(|e| e.0), Err("recent".to_string()));
        assert_eq!(take_count(&mut m, "absent", 1..=10), Ok(None));
        assert!(m.is_empty());
    }

    fn map(json: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(json).unwrap_or_default()
    }

    #[test]
    fn the_agent_kinds_are_the_registered_ones() {
        for (name, shape) in [
            (crate::ingest::group_eval::KIND, Shape::Group),
            (crate::ingest::drift_eval::DRIFT_KIND, Shape::Histogram),
            (crate::ingest::drift_eval::QUALITY_KIND, Shape::Quality),
            (crate::ingest::joint_eval::KIND, Shape::Joint),
        ] {
            assert_eq!(registry::kind(name).map(|k| k.shape), Some(shape), "{name}");
        }
    }

    #[test]
    fn a_streaming_detector_is_parsed_into_its_typed_config() {
        let kind = WatchKind::parse("robust_baseline", &map(r#"{"window": 30}"#)).expect("valid");
        let WatchKind::Single(config) = kind else { panic!("not a streaming detector: {kind:?}") };
        assert_eq!(config.name(), "robust_baseline");
        assert_eq!(config.build().map(|d| d.max_retained_points()).ok(), Some(30));
        assert!(matches!(WatchKind::parse("drift", &map("{}")), Ok(WatchKind::Drift(_))));
    }

    #[test]
    fn every_problem_names_its_parameter() {
        let e = WatchKind::parse("robust_baseline", &map(r#"{"windw": 30, "tresh": 1, "window": 1}"#))
            .expect_err("invalid");
        let params: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(params, ["tresh", "windw", "window"]);
        let e = WatchKind::parse("nope", &map("{}")).expect_err("unknown");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "kind");
        assert!(e[0].1.contains("unknown detector `nope`") && e[0].1.contains("multivariate"), "{}", e[0].1);
        let e = WatchKind::parse("group_outlier", &map("{}")).expect_err("member is required");
        assert_eq!(e[0].0, "member");
    }
}
