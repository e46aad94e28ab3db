//! Property tests for the detector suite: the streaming detectors (seasonal
//! baseline, change point) satisfy the detector contract for any valid
//! parameters and any input, and the batch APIs (group outliers, drift,
//! multivariate) never panic and keep their outputs in range.

use proptest::prelude::*;
use warden_detectors::changepoint::{ChangePoint, ChangePointParams};
use warden_detectors::drift::{self, DriftDetector, DriftParams, QualityGoal};
use warden_detectors::group::{GroupMethod, GroupOutlier, GroupOutlierParams};
use warden_detectors::harness;
use warden_detectors::multivariate::{Multivariate, MultivariateParams};
use warden_detectors::seasonal::{SeasonalBaseline, SeasonalBaselineParams};
use warden_detectors::{DetectionState, Detector, Direction};

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

fn seasonal_params() -> impl Strategy<Value = SeasonalBaselineParams> {
    (8usize..80)
        .prop_flat_map(|window| {
            let half = window / 2;
            (
                Just(window),
                prop_oneof![
                    Just(Vec::new()),
                    prop::collection::btree_set(2..=half, 1..3).prop_map(|s| s.into_iter().collect::<Vec<_>>()),
                ],
                prop_oneof![
                    Just(Vec::new()),
                    prop::collection::btree_set(2..=half, 1..3).prop_map(|s| s.into_iter().collect::<Vec<_>>()),
                ],
                3..=window,
                prop_oneof![Just(None), (1..=window).prop_map(Some)],
                3usize..50,
                (
                    prop_oneof![0.01..50.0f64, Just(1e-300), Just(1e300)],
                    prop_oneof![1u32..4, Just(u32::MAX)],
                    direction(),
                    scale_floor(),
                    scale_floor(),
                    0.0..=1.0f64,
                ),
            )
        })
        .prop_map(
            |(
                window,
                periods,
                candidate_periods,
                min_history,
                refit_every,
                residual_window,
                (threshold, min_consecutive, direction, rel, abs, strength),
            )| SeasonalBaselineParams {
                periods,
                candidate_periods,
                snap_tolerance: 0.1,
                max_periods: 2,
                min_seasonal_strength: strength,
                window,
                min_history,
                refit_every,
                residual_window,
                threshold,
                min_consecutive,
                direction,
                min_relative_scale: rel,
                min_absolute_scale: abs,
            },
        )
}

fn changepoint_params() -> impl Strategy<Value = ChangePointParams> {
    (2usize..60, 3usize..60)
        .prop_flat_map(|(max_run_length, scale_window)| {
            (
                Just(max_run_length),
                Just(scale_window),
                1..max_run_length,
                3..=scale_window,
                prop_oneof![2.0..5000.0f64, Just(2.0), Just(1e300)],
                prop_oneof![0.01..0.99f64, Just(1e-9), Just(1.0 - 1e-9)],
                prop_oneof![Just(0.0), 0.0..=0.5f64],
                scale_floor(),
                scale_floor(),
            )
        })
        .prop_map(|(max_run_length, scale_window, recent, min_history, erl, thr, eps, rel, abs)| ChangePointParams {
            expected_run_length: erl,
            max_run_length,
            recent_window: recent,
            threshold: thr,
            min_history,
            scale_window,
            outlier_probability: eps,
            min_relative_scale: rel,
            min_absolute_scale: abs,
        })
}

fn seasonal_factory(p: SeasonalBaselineParams) -> impl Fn() -> Box<dyn Detector> {
    move || -> Box<dyn Detector> {
        match SeasonalBaseline::new(p.clone()) {
            Ok(d) => Box::new(d),
            Err(e) => panic!("valid params rejected: {e}"),
        }
    }
}

fn changepoint_factory(p: ChangePointParams) -> impl Fn() -> Box<dyn Detector> {
    move || -> Box<dyn Detector> {
        match ChangePoint::new(p.clone()) {
            Ok(d) => Box::new(d),
            Err(e) => panic!("valid params rejected: {e}"),
        }
    }
}

/// A seasonal series with noise and the occasional hostile value, long
/// enough for decompositions and periodograms to run.
fn seasonal_points() -> impl Strategy<Value = Vec<(i64, f64)>> {
    (2usize..30, 0.0..100.0f64, prop::collection::vec((0usize..300, value()), 0..10)).prop_map(
        |(period, amplitude, spikes)| {
            let mut rng = harness::XorShift64::new(period as u64);
            let mut vs: Vec<f64> = (0..300)
                .map(|i| {
                    let phase = (i % period) as f64 / period as f64;
                    50.0 + amplitude * (std::f64::consts::TAU * phase).sin() + rng.uniform(-1.0, 1.0)
                })
                .collect();
            for (i, v) in spikes {
                if let Some(slot) = vs.get_mut(i) {
                    *slot = v;
                }
            }
            vs.into_iter().enumerate().map(|(i, v)| (harness::timestamp_at(i), v)).collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn seasonal_invariants_hold_for_any_input(p in seasonal_params(), pts in points()) {
        prop_assert_eq!(p.validate(), Ok(()));
        let result = harness::check_invariants(&seasonal_factory(p), &pts);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn seasonal_invariants_hold_on_long_seasonal_input(p in seasonal_params(), pts in seasonal_points()) {
        let result = harness::check_invariants(&seasonal_factory(p), &pts);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn seasonal_state_agrees_with_score_and_run(p in seasonal_params(), pts in points()) {
        let min_consecutive = p.min_consecutive;
        let mut det = seasonal_factory(p)();
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
    fn changepoint_invariants_hold_for_any_input(p in changepoint_params(), pts in points()) {
        prop_assert_eq!(p.validate(), Ok(()));
        let result = harness::check_invariants(&changepoint_factory(p), &pts);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn changepoint_state_agrees_with_score(p in changepoint_params(), pts in points()) {
        let mut det = changepoint_factory(p)();
        for &(t, v) in &pts {
            let d = det.update(t, v);
            match d.state {
                DetectionState::Anomalous => prop_assert!(d.score > 0.5, "{:?}", d),
                DetectionState::Normal => prop_assert!(d.score <= 0.5, "{:?}", d),
                DetectionState::WarmingUp | DetectionState::NoData => {
                    prop_assert_eq!(d.score, 0.0);
                }
            }
        }
    }

    #[test]
    fn streaming_validate_never_panics_and_matches_new(
        window in prop_oneof![0usize..20, any::<usize>()],
        min_history in prop_oneof![0usize..20, any::<usize>()],
        periods in prop::collection::vec(0usize..30, 0..6),
        threshold in any::<f64>(),
        probability in any::<f64>(),
        run in prop_oneof![0usize..20, any::<usize>()],
    ) {
        let s = SeasonalBaselineParams {
            window,
            min_history,
            periods: periods.clone(),
            candidate_periods: periods,
            threshold,
            min_seasonal_strength: probability,
            ..SeasonalBaselineParams::default()
        };
        let valid = s.validate().is_ok();
        prop_assert_eq!(SeasonalBaseline::new(s).is_ok(), valid);
        let c = ChangePointParams {
            max_run_length: run,
            scale_window: window,
            min_history,
            threshold: probability,
            expected_run_length: threshold,
            ..ChangePointParams::default()
        };
        let valid = c.validate().is_ok();
        prop_assert_eq!(ChangePoint::new(c).is_ok(), valid);
    }

    #[test]
    fn group_outliers_never_panic_and_stay_in_range(
        members in prop::collection::vec(prop::collection::vec(value(), 1..12), 0..8),
        ragged in any::<bool>(),
        dbscan in any::<bool>(),
        sensitivity in 0.01..0.99f64,
        fraction in prop_oneof![Just(1.0), 0.01..=1.0f64],
    ) {
        let n = members.first().map_or(0, Vec::len);
        let rows: Vec<Vec<f64>> = members
            .into_iter()
            .map(|mut m| {
                if !ragged {
                    m.resize(n, 1.0);
                }
                m
            })
            .collect();
        let slices: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let params = GroupOutlierParams {
            method: if dbscan { GroupMethod::Dbscan } else { GroupMethod::Mad },
            sensitivity,
            min_outlying_fraction: fraction,
            ..GroupOutlierParams::default()
        };
        let detector = GroupOutlier::new(params);
        prop_assert!(detector.is_ok());
        if let Ok(detector) = detector {
            match detector.detect(&slices) {
                Ok(r) => {
                    prop_assert!(slices.len() >= 3);
                    prop_assert_eq!(r.members.len(), slices.len());
                    prop_assert_eq!(r.band.len(), n);
                    for (i, m) in r.members.iter().enumerate() {
                        prop_assert!(m.score.is_finite() && (0.0..=1.0).contains(&m.score), "{:?}", m);
                        prop_assert_eq!(m.is_outlier, r.outliers.contains(&i));
                        if m.is_outlier {
                            prop_assert!(m.score >= 0.5, "{:?}", m);
                        } else {
                            prop_assert!(m.score <= 0.5 + 1e-12, "{:?}", m);
                        }
                        prop_assert!(m.outlying_indices.iter().all(|&t| t < n));
                        prop_assert!(m.judged <= n);
                    }
                    for b in r.band.iter().flatten() {
                        prop_assert!(b.lower.is_finite() && b.upper.is_finite() && b.lower <= b.upper);
                    }
                }
                Err(warden_detectors::Error::InvalidInput { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn drift_never_panics_and_stays_in_range(
        bounds in prop::collection::vec(value(), 0..8),
        reference in prop::collection::vec(value(), 0..8),
        current in prop::collection::vec(value(), 0..8),
        sorted in any::<bool>(),
    ) {
        let (mut bounds, mut reference, mut current) = (bounds, reference, current);
        if sorted {
            bounds.retain(|b| b.is_finite());
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            bounds.push(f64::INFINITY);
            let k = bounds.len();
            for v in [&mut reference, &mut current] {
                v.resize(k, 1.0);
                for x in v.iter_mut() {
                    *x = if x.is_finite() { x.abs() } else { 1.0 };
                }
                v.sort_by(f64::total_cmp);
            }
        }
        let detector = DriftDetector::new(DriftParams::default());
        prop_assert!(detector.is_ok());
        if let Ok(detector) = detector {
            if let Ok(r) = detector.evaluate(&bounds, &reference, &current) {
                prop_assert!(r.psi.is_finite() && r.psi >= 0.0, "{:?}", r);
                prop_assert!((0.0..=1.0).contains(&r.ks), "{:?}", r);
                prop_assert!((0.0..=1.0).contains(&r.p_value), "{:?}", r);
                prop_assert!(r.top_bucket < bounds.len());
            }
        }
        let _ = drift::window_counts(&bounds, &reference, &current);
        let _ = drift::psi(&reference, &current, 1e-4);
        let _ = drift::ks(&reference, &current);
        for goal in [QualityGoal::HigherIsBetter, QualityGoal::LowerIsBetter] {
            let _ = drift::quality_vs_baseline(
                reference.first().copied().unwrap_or(0.0),
                current.first().copied().unwrap_or(0.0),
                bounds.first().copied().unwrap_or(0.0),
                goal,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn multivariate_never_panics_and_stays_in_range(
        rows in prop::collection::vec(prop::collection::vec(-1e3..1e3f64, 2), 0..80),
        spoil in prop::option::of((0usize..80, value())),
        probes in prop::collection::vec(prop::collection::vec(value(), 0..4), 1..6),
        components in 1usize..4,
    ) {
        let mut rows = rows;
        if let Some((i, v)) = spoil {
            if let Some(row) = rows.get_mut(i) {
                row[0] = v;
            }
        }
        let model = Multivariate::new(MultivariateParams {
            components,
            max_iterations: 100,
            ..MultivariateParams::default()
        });
        prop_assert!(model.is_ok());
        if let Ok(mut model) = model {
            let fitted = model.fit(&rows).is_ok();
            for x in &probes {
                if let Ok(s) = model.score(x) {
                    prop_assert!(fitted);
                    prop_assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{:?}", s);
                    prop_assert!(s.nll.is_finite() && s.threshold.is_finite());
                    prop_assert_eq!(s.is_anomaly, s.nll > s.threshold);
                    prop_assert!(s.most_unusual_feature < x.len());
                } else {
                    prop_assert!(!fitted || x.len() != 2 || x.iter().any(|v| !v.is_finite()));
                }
            }
        }
    }
}

#[test]
fn registry_builds_the_streaming_detectors() {
    use warden_detectors::registry;
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    for name in ["seasonal_baseline", "change_point"] {
        assert!(registry::NAMES.contains(&name));
    }
    let seasonal =
        registry::build("seasonal_baseline", &kv(&[("periods", "[24, 168]"), ("window", "672"), ("direction", "up")]));
    assert!(seasonal.is_ok_and(|d| d.name() == "seasonal_baseline" && d.max_retained_points() == 672));
    let changepoint = registry::build("change_point", &kv(&[("recent_window", "5"), ("threshold", "0.6")]));
    assert!(changepoint.is_ok_and(|d| d.name() == "change_point" && d.max_retained_points() == 200));
    let bad = registry::build("seasonal_baseline", &kv(&[("periods", "[1]")]));
    assert!(bad.is_err_and(|e| e.to_string().contains("periods")));
    let unknown = registry::build("change_point", &kv(&[("hazard", "0.1")]));
    assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `hazard`")));
}
