//! Property tests: the adaptive onset detector must satisfy the detector contract for any
//! valid parameters and any input, however hostile, and its state must agree with its score.

use proptest::prelude::*;
use warden_detectors::adaptive::{AdaptiveDetector, AdaptiveParams};
use warden_detectors::harness;
use warden_detectors::{DetectionState, Detector};

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

fn positive() -> impl Strategy<Value = f64> {
    prop_oneof![0.01..50.0f64, Just(1e-300), Just(1e300), Just(f64::MAX)]
}

fn valid_params() -> impl Strategy<Value = AdaptiveParams> {
    (3usize..60)
        .prop_flat_map(|window| {
            (
                Just(window),
                1..=window,
                1usize..40,
                (positive(), positive(), positive()),
                (1usize..30, prop_oneof![1i64..10_000_000, Just(i64::MAX)]),
                prop_oneof![0.001..1.0f64, Just(1.0)],
                prop_oneof![0.0..500.0f64, Just(0.0), Just(f64::MAX)],
                (0usize..20, 0.0..=1.0f64),
                prop_oneof![0.0..1.0f64, Just(0.0), Just(f64::MAX)],
            )
        })
        .prop_map(
            |(
                window,
                short_window,
                warmup,
                (record_halflife, record_floor, threshold),
                (season_buckets, bucket_ms),
                season_alpha,
                breakout_weight,
                (refractory, refractory_factor),
                min_relative_scale,
            )| AdaptiveParams {
                window,
                short_window,
                warmup,
                record_halflife,
                record_floor,
                season_buckets,
                bucket_ms,
                season_alpha,
                breakout_weight,
                refractory,
                refractory_factor,
                threshold,
                min_relative_scale,
            },
        )
}

fn make_for(p: AdaptiveParams) -> impl Fn() -> Box<dyn Detector> {
    move || -> Box<dyn Detector> {
        match AdaptiveDetector::new(p.clone()) {
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
    fn state_agrees_with_score(p in valid_params(), pts in points()) {
        let mut det = make_for(p)();
        for &(t, v) in &pts {
            let d = det.update(t, v);
            match d.state {
                DetectionState::Anomalous => {
                    prop_assert!(d.score >= 0.5, "{:?}", d);
                    prop_assert!(d.explanation.consecutive >= 1);
                }
                DetectionState::Normal => {
                    prop_assert!(d.score <= 0.5, "{:?}", d);
                    prop_assert_eq!(d.explanation.consecutive, 0);
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
        short_window in prop_oneof![0usize..10, any::<usize>()],
        warmup in 0usize..3,
        threshold in any::<f64>(),
        record_halflife in any::<f64>(),
        season_buckets in prop_oneof![0usize..30, any::<usize>()],
        bucket_ms in any::<i64>(),
        season_alpha in any::<f64>(),
        refractory_factor in any::<f64>(),
    ) {
        let p = AdaptiveParams {
            window,
            short_window,
            warmup,
            threshold,
            record_halflife,
            season_buckets,
            bucket_ms,
            season_alpha,
            refractory_factor,
            ..AdaptiveParams::default()
        };
        let valid = p.validate().is_ok();
        prop_assert_eq!(AdaptiveDetector::new(p).is_ok(), valid);
    }
}
