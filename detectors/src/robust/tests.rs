//! Unit tests of the robust baseline: hand-computed medians and MADs, scale floors, runs,
//! direction, lasting shifts, bounded memory and the compliance harness.

use super::*;
use crate::harness;
use crate::test_support::{self, feed};

const EPS: f64 = 1e-12;

fn params(window: usize, min_history: usize, threshold: f64, min_consecutive: u32) -> RobustBaselineParams {
    RobustBaselineParams { window, threshold, min_consecutive, min_history, ..RobustBaselineParams::default() }
}

fn detector(p: RobustBaselineParams) -> RobustBaseline {
    test_support::build(RobustBaseline::new, p)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS * a.abs().max(b.abs()).max(1.0)
}

fn some_close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| close(a, b))
}

fn last(ds: &[Detection]) -> &Detection {
    match ds.last() {
        Some(d) => d,
        None => panic!("no detections"),
    }
}

fn invalid_param(p: RobustBaselineParams) -> (&'static str, String) {
    test_support::invalid_param(&p, p.validate())
}

#[test]
fn defaults_match_documentation() {
    let p = RobustBaselineParams::default();
    assert_eq!(p.window, 60);
    assert_eq!(p.threshold, 4.0);
    assert_eq!(p.min_consecutive, 3);
    assert_eq!(p.min_history, 20);
    assert_eq!(p.direction, Direction::Both);
    assert_eq!(p.min_relative_scale, 0.01);
    assert_eq!(p.min_absolute_scale, 1e-9);
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn validate_names_parameter_and_range() {
    let base = RobustBaselineParams::default();
    let cases: Vec<(RobustBaselineParams, &str, &str)> = vec![
        (
            RobustBaselineParams { window: 2, min_history: 2, ..base.clone() },
            "window",
            "must be between 3 and 100000, got 2",
        ),
        (
            RobustBaselineParams { window: MAX_WINDOW + 1, ..base.clone() },
            "window",
            "must be between 3 and 100000, got 100001",
        ),
        (
            RobustBaselineParams { min_history: 2, ..base.clone() },
            "min_history",
            "must be between 3 and window (60), got 2",
        ),
        (
            RobustBaselineParams { min_history: 61, ..base.clone() },
            "min_history",
            "must be between 3 and window (60), got 61",
        ),
        (
            RobustBaselineParams { threshold: 0.0, ..base.clone() },
            "threshold",
            "must be finite and greater than 0, got 0",
        ),
        (
            RobustBaselineParams { threshold: -1.0, ..base.clone() },
            "threshold",
            "must be finite and greater than 0, got -1",
        ),
        (
            RobustBaselineParams { threshold: f64::NAN, ..base.clone() },
            "threshold",
            "must be finite and greater than 0, got NaN",
        ),
        (
            RobustBaselineParams { threshold: f64::INFINITY, ..base.clone() },
            "threshold",
            "must be finite and greater than 0, got inf",
        ),
        (RobustBaselineParams { min_consecutive: 0, ..base.clone() }, "min_consecutive", "must be at least 1, got 0"),
        (
            RobustBaselineParams { min_relative_scale: -0.5, ..base.clone() },
            "min_relative_scale",
            "must be finite and at least 0, got -0.5",
        ),
        (
            RobustBaselineParams { min_relative_scale: f64::NAN, ..base.clone() },
            "min_relative_scale",
            "must be finite and at least 0, got NaN",
        ),
        (
            RobustBaselineParams { min_absolute_scale: f64::INFINITY, ..base.clone() },
            "min_absolute_scale",
            "must be finite and at least 0, got inf",
        ),
        (
            RobustBaselineParams { min_absolute_scale: -1e-9, ..base.clone() },
            "min_absolute_scale",
            "must be finite and at least 0, got -0.000000001",
        ),
    ];
    for (p, name, message) in cases {
        assert_eq!(invalid_param(p.clone()), (name, message.to_string()));
        assert!(RobustBaseline::new(p).is_err());
    }
    let err = RobustBaselineParams { window: 1, ..base.clone() }.validate();
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("invalid parameter `window`: must be between 3 and 100000, got 1".to_string())
    );
    // Boundaries are inclusive.
    let edge = RobustBaselineParams {
        window: 3,
        min_history: 3,
        min_consecutive: 1,
        min_relative_scale: 0.0,
        min_absolute_scale: 0.0,
        ..base
    };
    assert_eq!(edge.validate(), Ok(()));
}

#[test]
fn name_and_memory_bound() {
    let d = detector(params(25, 10, 4.0, 3));
    assert_eq!(d.name(), "robust_baseline");
    assert_eq!(d.max_retained_points(), 25);
    assert_eq!(d.retained_points(), 0);
    assert_eq!(d.params().window, 25);
}

#[test]
fn hand_computed_odd_window() {
    let mut p = params(5, 5, 3.0, 1);
    p.min_relative_scale = 0.0;
    let mut d = detector(p);
    // Baseline 10 12 11 13 9: median 11.
    let ds = feed(&mut d, &[10.0, 12.0, 11.0, 13.0, 9.0, 20.0]);
    for w in &ds[..5] {
        assert_eq!(w.state, DetectionState::WarmingUp);
    }
    let x = last(&ds);
    // Deviations 1 1 0 2 2, sorted 0 1 1 2 2: MAD 1.
    let scale = 1.4826;
    let z = 9.0 / scale;
    assert_eq!(x.expected, Some(11.0));
    assert!(some_close(x.explanation.scale, scale));
    assert!(some_close(x.explanation.z_score, z));
    assert!(some_close(x.lower, 11.0 - 3.0 * scale));
    assert!(some_close(x.upper, 11.0 + 3.0 * scale));
    assert!(close(x.score, z / (z + 3.0)));
    assert_eq!(x.explanation.threshold, Some(3.0));
    assert_eq!(x.explanation.history, 5);
    assert_eq!(x.explanation.consecutive, 1);
    assert_eq!(x.deviation, Deviation::Above);
    assert_eq!(x.state, DetectionState::Anomalous);
    assert_eq!(x.explanation.note, None);
}

#[test]
fn hand_computed_even_window_and_rolling() {
    let mut p = params(4, 4, 3.0, 1);
    p.min_relative_scale = 0.0;
    let mut d = detector(p);
    let ds = feed(&mut d, &[1.0, 2.0, 3.0, 4.0, 2.5]);
    let x = last(&ds);
    // Median (2 + 3) / 2 = 2.5; deviations 1.5 .5 .5 1.5: MAD (0.5 + 1.5) / 2 = 1.
    assert_eq!(x.expected, Some(2.5));
    assert!(some_close(x.explanation.scale, 1.4826));
    assert_eq!(x.explanation.z_score, Some(0.0));
    assert_eq!(x.score, 0.0);
    assert_eq!(x.deviation, Deviation::None);
    assert_eq!(x.state, DetectionState::Normal);
    // The window now holds 2 3 4 2.5 (1 was dropped): median 2.75,
    // deviations .75 .25 1.25 .25: MAD 0.5, scale 0.7413.
    let y = d.update(harness::timestamp_at(5), 0.0);
    assert_eq!(y.expected, Some(2.75));
    assert!(some_close(y.explanation.scale, 0.7413));
    let z = -2.75 / 0.7413;
    assert!(some_close(y.explanation.z_score, z));
    assert_eq!(y.deviation, Deviation::Below);
    assert_eq!(y.state, DetectionState::Anomalous);
    assert_eq!(y.explanation.history, 4);
    assert_eq!(d.retained_points(), 4);
}

#[test]
fn warm_up_reports_partial_median() {
    let mut d = detector(params(10, 3, 4.0, 1));
    let ds = feed(&mut d, &[5.0, 7.0, 100.0, 6.0]);
    assert_eq!(ds[0].state, DetectionState::WarmingUp);
    assert_eq!(ds[0].expected, None);
    assert_eq!(ds[0].deviation, Deviation::None);
    assert_eq!(ds[1].expected, Some(5.0));
    assert_eq!(ds[1].deviation, Deviation::Above);
    assert_eq!(ds[2].expected, Some(6.0));
    assert_eq!(ds[2].state, DetectionState::WarmingUp);
    assert_eq!(ds[2].score, 0.0);
    assert_eq!(ds[2].lower, None);
    assert!(ds[2].explanation.note.as_deref().is_some_and(|n| n.contains("warming up: 2 of 3")));
    // Three points of history: judged now.
    assert_eq!(ds[3].state, DetectionState::Normal);
    assert_eq!(ds[3].expected, Some(7.0));
}

#[test]
fn non_finite_values_are_no_data_and_ignored() {
    let mut d = detector(params(10, 3, 4.0, 1));
    let ds = feed(&mut d, &[f64::NAN, 1.0, f64::INFINITY, 2.0, f64::NEG_INFINITY, 3.0]);
    for i in [0, 2, 4] {
        assert_eq!(ds[i].state, DetectionState::NoData);
        assert_eq!(ds[i].score, 0.0);
        assert_eq!(ds[i].expected, None);
    }
    // NaNs did not count as history: the 3rd finite point is still warming up.
    assert_eq!(ds[5].state, DetectionState::WarmingUp);
    assert_eq!(ds[5].explanation.history, 2);
    assert_eq!(d.retained_points(), 3);
}

#[test]
fn relative_scale_floor_and_exact_threshold() {
    let mut d = detector(params(60, 20, 4.0, 1));
    feed(&mut d, &[100.0; 20]);
    // MAD is 0: scale = 0.01 * 100 = 1, so the band is [96, 104].
    let at = d.update(0, 104.0);
    assert_eq!(at.explanation.scale, Some(1.0));
    assert_eq!(at.lower, Some(96.0));
    assert_eq!(at.upper, Some(104.0));
    assert_eq!(at.explanation.z_score, Some(4.0));
    assert_eq!(at.score, 0.5);
    assert_eq!(at.state, DetectionState::Normal, "z == threshold does not deviate");
    assert!(at.explanation.note.as_deref().is_some_and(|n| n.contains("min_relative_scale")));
    let above = d.update(0, 104.5);
    assert_eq!(above.state, DetectionState::Anomalous);
    assert!(above.score > 0.5);
}

#[test]
fn absolute_scale_floor_on_zero_series() {
    let mut d = detector(params(60, 20, 4.0, 1));
    feed(&mut d, &[0.0; 20]);
    let zero = d.update(0, 0.0);
    assert_eq!(zero.state, DetectionState::Normal);
    assert_eq!(zero.score, 0.0);
    assert_eq!(zero.explanation.scale, Some(1e-9));
    let small = d.update(0, 1e-8);
    assert!(some_close(small.explanation.z_score, 10.0));
    assert_eq!(small.state, DetectionState::Anomalous);
}

#[test]
fn zero_scale_floors_give_finite_output() {
    let mut p = params(10, 3, 4.0, 1);
    p.min_relative_scale = 0.0;
    p.min_absolute_scale = 0.0;
    let mut d = detector(p);
    feed(&mut d, &[0.0; 5]);
    let same = d.update(0, 0.0);
    assert_eq!(same.state, DetectionState::Normal);
    assert_eq!(same.score, 0.0);
    let off = d.update(0, 1e-300);
    assert_eq!(off.state, DetectionState::Anomalous);
    assert_eq!(off.score, 1.0);
    assert_eq!(off.explanation.z_score, Some(f64::MAX));
}

#[test]
fn min_consecutive_requires_a_run() {
    let mut d = detector(RobustBaselineParams::default());
    feed(&mut d, &[100.0; 30]);
    let run1 = feed(&mut d, &[200.0, 200.0]);
    assert_eq!(run1[0].state, DetectionState::Normal);
    assert_eq!(run1[0].explanation.consecutive, 1);
    assert!(run1[0].score > 0.5, "a deviating point scores above 0.5 even before the run is long enough");
    assert_eq!(run1[1].state, DetectionState::Normal);
    assert_eq!(run1[1].explanation.consecutive, 2);
    let back = d.update(0, 100.0);
    assert_eq!(back.state, DetectionState::Normal);
    assert_eq!(back.explanation.consecutive, 0);
    let run2 = feed(&mut d, &[200.0, 200.0, 200.0, 200.0]);
    let states: Vec<_> = run2.iter().map(|x| x.state).collect();
    assert_eq!(
        states,
        [DetectionState::Normal, DetectionState::Normal, DetectionState::Anomalous, DetectionState::Anomalous]
    );
    assert_eq!(run2[3].explanation.consecutive, 4);
}

#[test]
fn non_finite_neither_advances_nor_resets_the_run() {
    let mut d = detector(RobustBaselineParams::default());
    feed(&mut d, &[100.0; 30]);
    let ds = feed(&mut d, &[200.0, 200.0, f64::NAN, f64::INFINITY, 200.0]);
    assert_eq!(ds[2].state, DetectionState::NoData);
    assert_eq!(ds[2].explanation.consecutive, 2);
    assert_eq!(ds[3].explanation.consecutive, 2);
    assert_eq!(ds[4].explanation.consecutive, 3);
    assert_eq!(ds[4].state, DetectionState::Anomalous);
    assert_eq!(ds[4].explanation.history, 32);
}

#[test]
fn direction_up_ignores_drops() {
    let mut p = params(60, 20, 4.0, 1);
    p.direction = Direction::Up;
    let mut d = detector(p);
    feed(&mut d, &[100.0; 20]);
    let drop = d.update(0, 0.0);
    assert_eq!(drop.state, DetectionState::Normal);
    assert_eq!(drop.score, 0.0);
    assert_eq!(drop.deviation, Deviation::Below);
    assert_eq!(drop.explanation.consecutive, 0);
    assert!(some_close(drop.explanation.z_score, -100.0));
    let rise = d.update(0, 200.0);
    assert_eq!(rise.state, DetectionState::Anomalous);
    assert_eq!(rise.deviation, Deviation::Above);
}

#[test]
fn direction_down_ignores_rises() {
    let mut p = params(60, 20, 4.0, 1);
    p.direction = Direction::Down;
    let mut d = detector(p);
    feed(&mut d, &[100.0; 20]);
    let rise = d.update(0, 200.0);
    assert_eq!(rise.state, DetectionState::Normal);
    assert_eq!(rise.score, 0.0);
    let drop = d.update(0, 0.0);
    assert_eq!(drop.state, DetectionState::Anomalous);
    assert!(close(drop.score, 100.0 / 104.0));
}

#[test]
fn lasting_shift_becomes_the_new_normal_after_half_a_window() {
    let mut d = detector(params(20, 10, 4.0, 1));
    feed(&mut d, &[100.0; 20]);
    let ds = feed(&mut d, &[200.0; 20]);
    let flagged = ds.iter().filter(|x| x.is_anomaly()).count();
    assert_eq!(flagged, 10);
    assert!(ds[..10].iter().all(Detection::is_anomaly));
    assert!(ds[10..].iter().all(|x| x.state == DetectionState::Normal));
}

#[test]
fn non_increasing_timestamps_are_processed_with_a_note() {
    let mut d = detector(params(10, 3, 4.0, 1));
    let a = d.update(1_000, 1.0);
    let b = d.update(1_000, 2.0);
    let c = d.update(500, 3.0);
    assert_eq!(a.explanation.note.as_deref().map(|n| n.contains("timestamp")), Some(false));
    assert!(b.explanation.note.as_deref().is_some_and(|n| n.contains("timestamp not after")));
    assert!(c.explanation.note.as_deref().is_some_and(|n| n.contains("timestamp not after")));
    assert_eq!(c.timestamp_ms, 500);
    assert_eq!(d.retained_points(), 3);
}

#[test]
fn reset_forgets_everything() {
    let mut d = detector(params(10, 3, 4.0, 1));
    feed(&mut d, &[1.0, 2.0, 3.0, 50.0]);
    d.reset();
    assert_eq!(d.retained_points(), 0);
    let first = d.update(0, 7.0);
    assert_eq!(first.state, DetectionState::WarmingUp);
    assert_eq!(first.expected, None);
    assert_eq!(first.explanation.note.as_deref().map(|n| n.contains("timestamp")), Some(false));
}

#[test]
fn buffers_never_grow_after_construction() {
    let mut d = detector(params(37, 3, 4.0, 1));
    let (history, sorted) = (d.window.history.capacity(), d.window.sorted.capacity());
    let values: Vec<f64> = (0..500).map(f64::from).collect();
    feed(&mut d, &values);
    assert_eq!(d.window.history.capacity(), history);
    assert_eq!(d.window.sorted.capacity(), sorted);
}

#[test]
fn history_is_capped_at_window() {
    let mut d = detector(params(7, 3, 4.0, 1));
    let values: Vec<f64> = (0..50).map(f64::from).collect();
    let ds = feed(&mut d, &values);
    assert_eq!(d.retained_points(), 7);
    assert_eq!(last(&ds).explanation.history, 7);
    // Baseline of the last point is 42..=48.
    assert_eq!(last(&ds).expected, Some(45.0));
}

#[test]
fn extreme_values_stay_finite() {
    let mut d = detector(params(5, 3, 4.0, 1));
    let ds = feed(&mut d, &[f64::MAX, f64::MIN, f64::MAX, f64::MIN, f64::MAX, f64::MIN, 0.0]);
    for x in &ds {
        assert!(x.score.is_finite());
        for v in [x.expected, x.lower, x.upper, x.explanation.scale, x.explanation.z_score].into_iter().flatten() {
            assert!(v.is_finite(), "{x:?}");
        }
    }
    // Median of MAX, MIN, MAX, MIN, MAX without overflow.
    assert_eq!(ds[5].expected, Some(f64::MAX));
}

#[test]
fn score_helper_is_bounded() {
    assert_eq!(score(0.0, 4.0), 0.0);
    assert_eq!(score(-1.0, 4.0), 0.0);
    assert_eq!(score(f64::NAN, 4.0), 0.0);
    assert_eq!(score(4.0, 4.0), 0.5);
    assert_eq!(score(f64::INFINITY, 4.0), 1.0);
    assert_eq!(score(f64::MAX, f64::MAX), 0.5);
    assert_eq!(score(1e-300, 1e300), 0.0);
    assert!(close(score(12.0, 4.0), 0.75));
}

#[test]
fn median_helper() {
    assert_eq!(sorted_median(&[]), None);
    assert_eq!(sorted_median(&[3.0]), Some(3.0));
    assert_eq!(sorted_median(&[1.0, 2.0, 3.0]), Some(2.0));
    assert_eq!(sorted_median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
    assert_eq!(sorted_median(&[f64::MAX, f64::MAX]), Some(f64::MAX));
}

/// The outward walk gives exactly the median of the sorted absolute deviations.
#[test]
fn mad_walk_matches_sorting() {
    let mut rng = crate::harness::XorShift64::new(7);
    for n in 1..80 {
        for _ in 0..20 {
            let mut v: Vec<f64> = (0..n).map(|_| (rng.uniform(-5.0, 5.0) * 4.0).round() / 4.0).collect();
            v.sort_by(f64::total_cmp);
            let m = sorted_median(&v).expect("non-empty");
            let mut dev: Vec<f64> = v.iter().map(|x| clamp_finite((x - m).abs())).collect();
            dev.sort_by(f64::total_cmp);
            assert_eq!(sorted_mad(&v, m), sorted_median(&dev), "{v:?}");
        }
    }
    assert_eq!(sorted_mad(&[], 0.0), None);
    assert_eq!(sorted_mad(&[-f64::MAX, f64::MAX], 0.0), Some(f64::MAX));
}

#[test]
fn params_deserialise_with_defaults_and_reject_unknown_fields() {
    use serde::de::value::{Error as DeError, MapDeserializer};
    use serde::Deserialize as _;
    let partial = MapDeserializer::<_, DeError>::new(vec![("window", 30u64), ("min_consecutive", 5u64)].into_iter());
    let p = RobustBaselineParams::deserialize(partial);
    assert_eq!(p, Ok(RobustBaselineParams { window: 30, min_consecutive: 5, ..RobustBaselineParams::default() }));
    let unknown = MapDeserializer::<_, DeError>::new(vec![("windw", 30u64)].into_iter());
    let err = RobustBaselineParams::deserialize(unknown).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("unknown field `windw`")));
}

fn make_for(p: RobustBaselineParams) -> impl Fn() -> Box<dyn Detector> {
    test_support::make_for(RobustBaseline::new, p)
}

#[test]
fn passes_the_compliance_harness() {
    for p in [
        RobustBaselineParams::default(),
        params(200, 50, 6.0, 5),
        RobustBaselineParams { direction: Direction::Up, ..RobustBaselineParams::default() },
    ] {
        let max_delay = usize::try_from(p.min_consecutive).unwrap_or(usize::MAX).saturating_add(2);
        if let Err(e) = harness::check_compliance(&make_for(p), max_delay) {
            panic!("{e}");
        }
    }
}

#[test]
fn smallest_window_passes_invariants_and_constant_check() {
    // A 3-point MAD is too noisy for the step check's false-positive
    // requirement, but every contract invariant must still hold.
    let make = make_for(params(3, 3, 4.0, 1));
    for points in harness::edge_case_series() {
        if let Err(e) = harness::check_invariants(&make, &points) {
            panic!("{e}");
        }
    }
    if let Err(e) = harness::check_constant_series(&make) {
        panic!("{e}");
    }
}

/// A heavy-tailed but normal series: the fixed z of 4 fires on it again and again; the
/// calibrated rule learns its tail and stays quiet, yet still flags a real shift.
#[test]
fn calibrated_threshold_quiets_a_heavy_tailed_series_and_keeps_real_shifts() {
    let series: Vec<f64> = (0..4000u64)
        .map(|i| {
            // Deterministic heavy tail: mostly small noise, a burst of 8-12 every ~50 points.
            let h = i.wrapping_mul(2_654_435_761) % 1000;
            let base = 100.0 + (h % 7) as f64 * 0.3;
            if h % 50 == 3 {
                base + 8.0 + (h % 5) as f64
            } else {
                base
            }
        })
        .collect();
    let count = |p: RobustBaselineParams, shift: bool| {
        let mut d = RobustBaseline::new(p).expect("valid");
        let mut flagged = 0;
        for (i, v) in series.iter().enumerate() {
            let v = if shift && (3500..3530).contains(&i) { v + 200.0 } else { *v };
            let det = d.update(i as i64 * 60_000, v);
            if (3000..3500).contains(&i) && det.is_anomaly() {
                flagged += 1;
            }
            if shift && i == 3505 {
                assert!(det.is_anomaly(), "the shift is flagged");
            }
            assert!(d.retained_points() <= d.max_retained_points());
        }
        flagged
    };
    let fixed = RobustBaselineParams { min_consecutive: 1, ..RobustBaselineParams::default() };
    let calibrated = RobustBaselineParams { risk: Some(1e-3), ..fixed.clone() };
    let (f, c) = (count(fixed, false), count(calibrated.clone(), false));
    assert!(f >= 5, "the fixed threshold fires on the tail: {f}");
    assert!(c * 4 <= f, "calibrated {c} vs fixed {f}");
    count(calibrated, true);
}

#[test]
fn calibration_parameters_are_validated() {
    for (p, field) in [
        (RobustBaselineParams { risk: Some(0.0), ..RobustBaselineParams::default() }, "risk"),
        (RobustBaselineParams { risk: Some(1.5), ..RobustBaselineParams::default() }, "risk"),
        (RobustBaselineParams { calibration: 2, ..RobustBaselineParams::default() }, "calibration"),
    ] {
        let err = RobustBaseline::new(p).expect_err("invalid");
        assert!(err.to_string().contains(field), "{err}");
    }
}
