//! The detector spec's compliance check (`docs/specs/detector.md`), run on every streaming
//! detector of the registry: a detector added to the registry is checked without a test of
//! its own. Each is built from its registered harness parameters through the same path a
//! watch uses ([`DetectorConfig::from_map`], then [`DetectorConfig::build`]).

use warden_detectors::harness;
use warden_detectors::registry::{self, DetectorConfig};
use warden_detectors::Detector;

fn config(case: &registry::HarnessCase) -> DetectorConfig {
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(case.params).unwrap_or_else(|e| panic!("{}: harness params: {e}", case.name));
    DetectorConfig::from_map(case.name, &params)
        .unwrap_or_else(|e| panic!("{}: harness params rejected: {e}", case.name))
}

#[test]
fn every_registered_detector_passes_the_compliance_harness() {
    assert_eq!(registry::HARNESS_CASES.len(), registry::NAMES.len());
    let mut failures = Vec::new();
    for case in registry::HARNESS_CASES {
        let config = config(case);
        let make = || -> Box<dyn Detector> { config.build().unwrap_or_else(|e| panic!("{}: {e}", case.name)) };
        assert_eq!(make().name(), case.name, "the registered name is the detector's name");
        let result = match case.max_delay {
            Some(max_delay) => harness::check_compliance(&make, max_delay),
            None => harness::edge_case_series()
                .iter()
                .enumerate()
                .try_for_each(|(k, points)| {
                    harness::check_invariants(&make, points).map_err(|e| format!("edge case series {k}: {e}"))
                })
                .and_then(|()| harness::check_constant_series(&make)),
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn non_finite_values_are_no_data_with_one_note_for_every_detector() {
    for case in registry::HARNESS_CASES {
        let mut d = config(case).build().unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for (i, v) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].into_iter().enumerate() {
            let det = d.update(harness::timestamp_at(i), v);
            assert_eq!(det.state, warden_detectors::DetectionState::NoData, "{}", case.name);
            assert_eq!(det.score, 0.0, "{}", case.name);
            let note = det.explanation.note.unwrap_or_default();
            assert!(note.starts_with("value is not a finite number"), "{}: {note}", case.name);
        }
        assert_eq!(d.retained_points(), 0, "{}: a non-finite value is not history", case.name);
    }
}
