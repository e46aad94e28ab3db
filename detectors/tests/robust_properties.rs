//! Property tests: the robust baseline must satisfy the detector contract for
//! any valid parameters and any input, however hostile.

use proptest::prelude::*;
use warden_detectors::harness;
use warden_detectors::{DetectionState, Detector, Direction, RobustBaseline, RobustBaselineParams};

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3f64,
        2 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => prop_oneof![Just(f64::MAX), Just(f64::MIN), Just(1e300), Just(-1e300)],
        1 => prop_oneof![Just(5e-324), Just(f64::MIN_POSITIVE), Just(0.0), Just(-0.0), -1e-300..1e-300f64],
        2 => Just(42.0),
    ]
}

fn points() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop_oneof![
        3 => prop::collection::vec(value(), 0..160).prop_map(|vs| {
            vs.into_iter()
                .enumerate()
                .map(|(i, v)| (harness::timestamp_at(i), v))
                .collect()
        }),
        1 => prop::collection::vec((any::<i64>(), value()), 0..160),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Up), Just(Direction::Down), Just(Direction::Both)]
}

fn scale_floor() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..1.0f64, Just(1e-9), Just(1e300), Just(f64::MAX)]
}

fn valid_params() -> impl Strategy<Value = RobustBaselineParams> {
    (3usize..80)
        .prop_flat_map(|window| {
            (
                Just(window),
                3..=window,
                prop_oneof![0.01..50.0f64, Just(1e-300), Just(1e300), Just(f64::MAX)],
                prop_oneof![1u32..6, Just(u32::MAX)],
                direction(),
                scale_floor(),
                scale_floor(),
            )
        })
        .prop_map(|(window, min_history, threshold, min_consecutive, direction, rel, abs)| {
            RobustBaselineParams {
                window,
                threshold,
                min_consecutive,
                min_history,
                direction,
                min_relative_scale: rel,
                min_absolute_scale: abs,
                // Half the cases use the calibrated flag rule, with a short calibration.
                risk: (window % 2 == 0).then_some(1e-3),
                calibration: 10 + window % 50,
            }
        })
}

fn make_for(p: RobustBaselineParams) -> impl Fn() -> Box<dyn Detector> {
    move || -> Box<dyn Detector> {
        match RobustBaseline::new(p.clone()) {
            Ok(d) => Box::new(d),
            Err(e) => panic!("valid params rejected: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn invariants_hold_for_any_input(p in valid_params(), pts in points()) {
        prop_assert_eq!(p.validate(), Ok(()));
        let result = harness::check_invariants(&make_for(p), &pts);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn state_agrees_with_score_and_run(p in valid_params(), pts in points()) {
        let min_consecutive = p.min_consecutive;
        let mut det = make_for(p)();
        for &(t, v) in &pts {
            let d = det.update(t, v);
            match d.state {
                DetectionState::Anomalous => {
                    prop_assert!(d.explanation.consecutive >= min_consecutive);
                    prop_assert!(d.score >= 0.5, "{:?}", d);
                }
                DetectionState::Normal => {
                    prop_assert!(d.explanation.consecutive < min_consecutive);
                    if d.explanation.consecutive == 0 {
                        prop_assert!(d.score <= 0.5, "{:?}", d);
                    }
                }
                DetectionState::WarmingUp | DetectionState::NoData => {
                    prop_assert_eq!(d.score, 0.0);
                }
            }
        }
    }

    #[test]
    fn validate_never_panics_and_matches_new(
        window in prop_oneof![0usize..10, any::<usize>()],
        min_history in prop_oneof![0usize..10, any::<usize>()],
        threshold in any::<f64>(),
        min_consecutive in 0u32..3,
        rel in any::<f64>(),
        abs in any::<f64>(),
    ) {
        let p = RobustBaselineParams {
            window,
            threshold,
            min_consecutive,
            min_history,
            direction: Direction::Both,
            min_relative_scale: rel,
            min_absolute_scale: abs,
            ..RobustBaselineParams::default()
        };
        let valid = p.validate().is_ok();
        prop_assert_eq!(RobustBaseline::new(p).is_ok(), valid);
    }
}
