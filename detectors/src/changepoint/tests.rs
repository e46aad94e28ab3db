//! Unit tests of the change-point detector: level and variance shifts found quickly, few
//! false alarms on stationary noise, spikes that are not changes, and the compliance harness.

use super::*;
use crate::harness::{self, XorShift64};
use crate::test_support::{self, feed, gaussian};

fn detector(p: ChangePointParams) -> ChangePoint {
    test_support::build(ChangePoint::new, p)
}

/// `n` points of N(level, sd²) noise.
fn noise(rng: &mut XorShift64, n: usize, level: f64, sd: f64) -> Vec<f64> {
    (0..n).map(|_| level + sd * gaussian(rng)).collect()
}

fn first_alarm(ds: &[Detection]) -> Option<usize> {
    ds.iter().position(Detection::is_anomaly)
}

fn invalid_param(p: ChangePointParams) -> (&'static str, String) {
    test_support::invalid_param(&p, p.validate())
}

#[test]
fn defaults_are_valid() {
    let p = ChangePointParams::default();
    assert_eq!(p.validate(), Ok(()));
    let d = detector(p);
    assert_eq!(d.name(), "change_point");
    assert_eq!(d.max_retained_points(), 200);
    assert_eq!(d.retained_points(), 0);
    assert!(d.run_length_posterior().is_empty());
}

#[test]
fn validate_names_parameter_and_range() {
    let base = ChangePointParams::default();
    let cases = [
        (
            ChangePointParams { expected_run_length: 1.0, ..base.clone() },
            "expected_run_length",
            "must be finite and at least 2, got 1",
        ),
        (
            ChangePointParams { max_run_length: 1, ..base.clone() },
            "max_run_length",
            "must be between 2 and 100000, got 1",
        ),
        (
            ChangePointParams { recent_window: 300, ..base.clone() },
            "recent_window",
            "must be between 1 and max_run_length - 1 (299), got 300",
        ),
        (ChangePointParams { threshold: 1.0, ..base.clone() }, "threshold", "must be strictly between 0 and 1, got 1"),
        (
            ChangePointParams { threshold: f64::NAN, ..base.clone() },
            "threshold",
            "must be strictly between 0 and 1, got NaN",
        ),
        (ChangePointParams { scale_window: 2, ..base.clone() }, "scale_window", "must be between 3 and 100000, got 2"),
        (
            ChangePointParams { min_history: 201, ..base.clone() },
            "min_history",
            "must be between 3 and scale_window (200), got 201",
        ),
        (
            ChangePointParams { outlier_probability: 0.6, ..base.clone() },
            "outlier_probability",
            "must be between 0 and 0.5, got 0.6",
        ),
        (
            ChangePointParams { min_absolute_scale: f64::INFINITY, ..base.clone() },
            "min_absolute_scale",
            "must be finite and at least 0, got inf",
        ),
    ];
    for (p, name, message) in cases {
        assert_eq!(invalid_param(p.clone()), (name, message.to_string()));
        assert!(ChangePoint::new(p).is_err());
    }
}

#[test]
fn params_reject_unknown_fields() {
    let err = serde_json::from_str::<ChangePointParams>(r#"{"treshold": 0.5}"#).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("unknown field `treshold`")));
    let p: std::result::Result<ChangePointParams, _> = serde_json::from_str(r#"{"recent_window": 5}"#);
    assert!(p.is_ok_and(|p| p.recent_window == 5 && p.max_run_length == 300));
}

fn make_for(p: ChangePointParams) -> impl Fn() -> Box<dyn Detector> {
    test_support::make_for(ChangePoint::new, p)
}

#[test]
fn passes_the_compliance_harness() {
    for p in [
        ChangePointParams::default(),
        ChangePointParams {
            outlier_probability: 0.0,
            max_run_length: 20,
            recent_window: 3,
            ..ChangePointParams::default()
        },
    ] {
        if let Err(e) = harness::check_compliance(&make_for(p), 3) {
            panic!("{e}");
        }
    }
}

#[test]
fn level_shift_is_detected_quickly() {
    for seed in 1..=5 {
        let mut rng = XorShift64::new(seed);
        let mut values = noise(&mut rng, 400, 100.0, 2.0);
        values.extend(noise(&mut rng, 60, 108.0, 2.0));
        let ds = feed(&mut detector(ChangePointParams::default()), &values);
        let (before, after) = ds.split_at(400);
        assert!(before.iter().all(|d| !d.is_anomaly()), "seed {seed}");
        let delay = first_alarm(after);
        assert!(delay.is_some_and(|k| k < 5), "seed {seed}: {delay:?}");
        // The alarm is an event: it ends once the new run is long.
        assert!(after[45..].iter().all(|d| !d.is_anomaly()), "seed {seed}");
    }
}

#[test]
fn variance_shift_is_detected() {
    for seed in 1..=5 {
        let mut rng = XorShift64::new(seed);
        let mut values = noise(&mut rng, 400, 50.0, 1.0);
        values.extend(noise(&mut rng, 100, 50.0, 4.0));
        let ds = feed(&mut detector(ChangePointParams::default()), &values);
        let (before, after) = ds.split_at(400);
        assert!(before.iter().all(|d| !d.is_anomaly()), "seed {seed}");
        let delay = first_alarm(after);
        assert!(delay.is_some_and(|k| k < 30), "seed {seed}: {delay:?}");
    }
}

#[test]
fn stationary_noise_gives_few_false_alarms() {
    let mut events = 0;
    let mut alarms = 0;
    let mut total = 0;
    for seed in 1..=4 {
        let mut rng = XorShift64::new(seed);
        let values = noise(&mut rng, 3000, 10.0, 1.0);
        let ds = feed(&mut detector(ChangePointParams::default()), &values);
        alarms += ds.iter().filter(|d| d.is_anomaly()).count();
        events += ds.windows(2).filter(|w| !w[0].is_anomaly() && w[1].is_anomaly()).count();
        total += ds.len();
    }
    assert!(events <= 5, "{events} false change points in {total} points, {alarms} alarms");
    assert!(alarms * 200 <= total, "{alarms} alarms in {total} points");
}

#[test]
fn isolated_spikes_are_not_change_points() {
    let mut rng = XorShift64::new(9);
    let mut values = noise(&mut rng, 600, 10.0, 1.0);
    for i in [100, 250, 400] {
        values[i] = 30.0;
    }
    let ds = feed(&mut detector(ChangePointParams::default()), &values);
    assert_eq!(ds.iter().filter(|d| d.is_anomaly()).count(), 0);
}

#[test]
fn explanation_carries_the_numbers() {
    let mut rng = XorShift64::new(3);
    let mut values = noise(&mut rng, 100, 0.0, 1.0);
    values.extend([20.0, 20.0, 20.0]);
    let ds = feed(&mut detector(ChangePointParams::default()), &values);
    let warm = &ds[10];
    assert_eq!(warm.state, DetectionState::WarmingUp);
    assert!(warm.explanation.note.as_deref().is_some_and(|n| n.contains("warming up: 10 of 30")));
    let calm = &ds[99];
    assert_eq!(calm.state, DetectionState::Normal);
    assert!(calm.score < 0.5);
    assert!(calm.expected.is_some_and(|e| e.abs() < 1.0), "{calm:?}");
    let shift = &ds[102];
    assert_eq!(shift.state, DetectionState::Anomalous, "{shift:?}");
    assert!(shift.score > 0.5);
    assert_eq!(shift.explanation.threshold, Some(0.7));
    assert!(shift.explanation.note.as_deref().is_some_and(|n| n.contains("P(change within the last 30 points)")));
    let posterior = {
        let mut d = detector(ChangePointParams::default());
        feed(&mut d, &values);
        d.run_length_posterior()
    };
    let total: f64 = posterior.iter().sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(posterior.len() <= 301);
}

#[test]
fn memory_is_bounded() {
    let p = ChangePointParams {
        max_run_length: 50,
        recent_window: 5,
        scale_window: 40,
        min_history: 10,
        ..ChangePointParams::default()
    };
    let mut d = detector(p);
    let caps = (d.cells.capacity(), d.next.capacity(), d.window.capacity());
    let mut rng = XorShift64::new(5);
    let values = noise(&mut rng, 2000, 1.0, 1.0);
    feed(&mut d, &values);
    assert_eq!(d.cells.len(), 51);
    assert_eq!(d.retained_points(), 40);
    assert_eq!((d.cells.capacity(), d.next.capacity(), d.window.capacity()), caps);
    assert!(d.cells.iter().all(|c| c.n <= 50.0));
}

#[test]
fn ln_gamma_matches_known_values() {
    let cases = [
        (0.5, std::f64::consts::PI.sqrt().ln()),
        (1.0, 0.0),
        (1.5, (std::f64::consts::PI.sqrt() / 2.0).ln()),
        (2.0, 0.0),
        (5.0, 24f64.ln()),
        (10.5, 1_133_278.388_7_f64.ln()),
        (171.0, 1.0),
    ];
    for (x, expected) in cases.into_iter().take(6) {
        let got = ln_gamma(x);
        assert!((got - expected).abs() < 1e-9, "ln_gamma({x}) = {got}");
    }
    // Stirling for a large argument.
    let x = 1000.0;
    let stirling = (x - 0.5) * f64::ln(x) - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x);
    assert!((ln_gamma(x) - stirling).abs() < 1e-9);
}

#[test]
fn half_ratio_matches_log_gamma() {
    for a in [0.5, 1.0, 3.7, 9.99, 10.0, 10.5, 37.0, 150.0, 1e4] {
        let direct = ln_gamma(a + 0.5) - ln_gamma(a);
        assert!((ln_gamma_half_ratio(a) - direct).abs() < 1e-11, "a = {a}");
    }
    assert_eq!(select_median(&mut []), None);
    assert_eq!(select_median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(select_median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
}

#[test]
fn probability_score_is_monotone_with_threshold_at_half() {
    assert_eq!(probability_score(0.0, 0.3), 0.0);
    assert_eq!(probability_score(0.3, 0.3), 0.5);
    assert_eq!(probability_score(1.0, 0.3), 1.0);
    assert!(probability_score(0.2, 0.3) < probability_score(0.25, 0.3));
    assert!(probability_score(0.8, 0.3) < probability_score(0.9, 0.3));
}
