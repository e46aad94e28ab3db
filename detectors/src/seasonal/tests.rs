//! Unit tests of the seasonal baseline: daily and weekly cycles that are not anomalies,
//! period detection, rescaling, missing points, warm-up and the compliance harness.

use super::*;
use crate::harness::{self, XorShift64};
use crate::test_support::{self, feed};

const TAU: f64 = 2.0 * std::f64::consts::PI;

fn detector(p: SeasonalBaselineParams) -> SeasonalBaseline {
    test_support::build(SeasonalBaseline::new, p)
}

/// Hourly series: level 100, daily amplitude 30, weekly amplitude 10,
/// uniform noise ±2.
fn hourly(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    (0..n)
        .map(|i| {
            let t = i as f64;
            100.0 + 30.0 * (TAU * t / 24.0).sin() + 10.0 * (TAU * t / 168.0).sin() + rng.uniform(-2.0, 2.0)
        })
        .collect()
}

fn daily_params() -> SeasonalBaselineParams {
    SeasonalBaselineParams { periods: vec![24], window: 24 * 14, ..SeasonalBaselineParams::default() }
}

fn invalid_param(p: SeasonalBaselineParams) -> (&'static str, String) {
    test_support::invalid_param(&p, p.validate())
}

#[test]
fn defaults_are_valid() {
    let p = SeasonalBaselineParams::default();
    assert_eq!(p.validate(), Ok(()));
    let d = detector(p);
    assert_eq!(d.name(), "seasonal_baseline");
    assert_eq!(d.max_retained_points(), 2016);
    assert_eq!(d.retained_points(), 0);
    assert!(d.current_periods().is_empty());
}

#[test]
fn validate_names_parameter_and_range() {
    let base = SeasonalBaselineParams::default();
    let cases = [
        (
            SeasonalBaselineParams { window: 7, min_history: 3, ..base.clone() },
            "window",
            "must be between 8 and 100000, got 7",
        ),
        (
            SeasonalBaselineParams { periods: vec![24, 1009], ..base.clone() },
            "periods",
            "each period must be between 2 and window / 2 (1008), got 1009",
        ),
        (SeasonalBaselineParams { periods: vec![24, 24], ..base.clone() }, "periods", "period 24 is listed twice"),
        (
            SeasonalBaselineParams { periods: vec![2, 3, 4, 5, 6], ..base.clone() },
            "periods",
            "at most 4 periods, got 5",
        ),
        (
            SeasonalBaselineParams { candidate_periods: vec![1], ..base.clone() },
            "candidate_periods",
            "each period must be between 2 and window / 2 (1008), got 1",
        ),
        (
            SeasonalBaselineParams { snap_tolerance: 0.6, ..base.clone() },
            "snap_tolerance",
            "must be between 0 and 0.5, got 0.6",
        ),
        (SeasonalBaselineParams { max_periods: 0, ..base.clone() }, "max_periods", "must be between 1 and 4, got 0"),
        (
            SeasonalBaselineParams { min_seasonal_strength: f64::NAN, ..base.clone() },
            "min_seasonal_strength",
            "must be between 0 and 1, got NaN",
        ),
        (
            SeasonalBaselineParams { min_history: 2, ..base.clone() },
            "min_history",
            "must be between 3 and window (2016), got 2",
        ),
        (
            SeasonalBaselineParams { refit_every: Some(0), ..base.clone() },
            "refit_every",
            "must be between 1 and window (2016), got 0",
        ),
        (
            SeasonalBaselineParams { residual_window: 2, ..base.clone() },
            "residual_window",
            "must be between 3 and 100000, got 2",
        ),
        (
            SeasonalBaselineParams { threshold: 0.0, ..base.clone() },
            "threshold",
            "must be finite and greater than 0, got 0",
        ),
        (SeasonalBaselineParams { min_consecutive: 0, ..base.clone() }, "min_consecutive", "must be at least 1, got 0"),
        (
            SeasonalBaselineParams { min_relative_scale: -1.0, ..base.clone() },
            "min_relative_scale",
            "must be finite and at least 0, got -1",
        ),
    ];
    for (p, name, message) in cases {
        assert_eq!(invalid_param(p.clone()), (name, message.to_string()));
        assert!(SeasonalBaseline::new(p).is_err());
    }
    let p: std::result::Result<SeasonalBaselineParams, _> =
        serde_json::from_str(r#"{"periods": [24, 168], "window": 400}"#);
    assert!(p.is_ok_and(|p| p.periods == vec![24, 168] && p.threshold == 4.0));
    assert!(serde_json::from_str::<SeasonalBaselineParams>(r#"{"period": 24}"#).is_err());
}

fn make_for(p: SeasonalBaselineParams) -> impl Fn() -> Box<dyn Detector> {
    test_support::make_for(SeasonalBaseline::new, p)
}

#[test]
fn passes_the_compliance_harness() {
    for p in [
        SeasonalBaselineParams::default(),
        SeasonalBaselineParams {
            periods: vec![7],
            window: 200,
            min_history: 30,
            refit_every: Some(25),
            min_consecutive: 1,
            ..SeasonalBaselineParams::default()
        },
    ] {
        let max_delay = usize::try_from(p.min_consecutive).unwrap_or(usize::MAX) + 2;
        if let Err(e) = harness::check_compliance(&make_for(p), max_delay) {
            panic!("{e}");
        }
    }
}

#[test]
fn daily_cycle_is_not_an_anomaly_but_an_incident_is() {
    let mut values = hourly(1, 24 * 21);
    // A drop of 25 for 6 hours, in the middle of day 18: well inside the
    // daily swing of ±30, so a flat baseline could not see it.
    let start = 24 * 18 + 9;
    for v in &mut values[start..start + 6] {
        *v -= 25.0;
    }
    let ds = feed(&mut detector(daily_params()), &values);
    let flagged: Vec<usize> = ds.iter().enumerate().filter(|(_, d)| d.is_anomaly()).map(|(i, _)| i).collect();
    assert!(!flagged.is_empty());
    assert!(
        flagged.iter().all(|i| (start..start + 6).contains(i)),
        "flagged {flagged:?}, incident at {start}..{}",
        start + 6
    );
    assert!(flagged.contains(&(start + 2)), "{flagged:?}");
    let x = &ds[start + 3];
    assert_eq!(x.deviation, Deviation::Below);
    assert!(x.score > 0.5);
    assert!(x.explanation.note.as_deref().is_some_and(|n| n.contains("periods 24 (configured)")), "{x:?}");
    // The baseline follows the cycle: at a daily peak it is near 100 + 30.
    let peak = 24 * 15 + 6;
    assert!(ds[peak].expected.is_some_and(|e| (e - 130.0).abs() < 12.0), "{:?}", ds[peak]);
}

#[test]
fn detects_periods_and_snaps_them_to_candidates() {
    let values = hourly(2, 24 * 28);
    let mut d = detector(SeasonalBaselineParams {
        candidate_periods: vec![24, 168],
        window: 24 * 28,
        ..SeasonalBaselineParams::default()
    });
    let ds = feed(&mut d, &values);
    assert_eq!(d.current_periods(), &[24, 168]);
    assert!(ds.iter().all(|x| !x.is_anomaly()));
    let last = ds.last().and_then(|x| x.explanation.note.clone()).unwrap_or_default();
    assert!(last.contains("periods 24, 168 (detected)"), "{last}");
    // The periodogram alone reports 23 for this series.
    let mut rescaled = values.clone();
    let m = rescaled.iter().sum::<f64>() / rescaled.len() as f64;
    rescaled.iter_mut().for_each(|v| *v -= m);
    let raw = PeriodogramDetector::builder()
        .max_period(u32::try_from(rescaled.len() / 3).unwrap_or(u32::MAX))
        .build()
        .detect(&rescaled);
    assert!(raw.contains(&23) && !raw.contains(&24), "{raw:?}");
    assert_eq!(snap(23, &[24, 168], 0.1), Some(24));
    assert_eq!(snap(30, &[24, 168], 0.1), None);
    assert_eq!(snap(160, &[24, 168], 0.1), Some(168));
}

#[test]
fn noise_has_no_seasonality() {
    let mut rng = XorShift64::new(3);
    let values: Vec<f64> = (0..800).map(|_| 50.0 + rng.uniform(-1.0, 1.0)).collect();
    let mut d = detector(SeasonalBaselineParams {
        window: 600,
        candidate_periods: vec![24, 168],
        ..SeasonalBaselineParams::default()
    });
    let ds = feed(&mut d, &values);
    assert!(d.current_periods().is_empty());
    assert!(ds.iter().all(|x| !x.is_anomaly()));
    let note = ds.last().and_then(|x| x.explanation.note.clone()).unwrap_or_default();
    assert!(note.contains("no seasonality found; baseline is the recent median"), "{note}");
}

#[test]
fn huge_counters_decompose_after_rescaling() {
    let values: Vec<f64> = hourly(4, 24 * 14).iter().map(|v| 1e12 + 1e8 * v).collect();
    let mut spiked = values.clone();
    let at = 24 * 12 + 5;
    for v in &mut spiked[at..at + 4] {
        *v += 2e9;
    }
    // The relative floor (1 % of 1e12) would hide a 2e9 spike on purpose;
    // a counter with a huge offset needs it off.
    let p = SeasonalBaselineParams { min_relative_scale: 0.0, ..daily_params() };
    let ds = feed(&mut detector(p), &spiked);
    assert!(ds[..at].iter().all(|x| !x.is_anomaly()));
    assert!(ds[at..at + 4].iter().any(Detection::is_anomaly), "{:#?}", &ds[at - 2..at + 4]);
    let clean = feed(&mut detector(daily_params()), &values);
    assert!(clean.iter().all(|x| !x.is_anomaly()));
}

#[test]
fn missing_points_keep_the_phase() {
    let values = hourly(5, 24 * 16);
    let mut gappy: Vec<f64> = values.clone();
    for v in &mut gappy[24 * 12..24 * 12 + 10] {
        *v = f64::NAN;
    }
    let mut d = detector(daily_params());
    let ds = feed(&mut d, &gappy);
    for x in &ds[24 * 12..24 * 12 + 10] {
        assert_eq!(x.state, DetectionState::NoData);
        assert_eq!(x.score, 0.0);
    }
    // After the gap the baseline is still in phase with the cycle.
    let after = &ds[24 * 12 + 10..];
    assert!(after.iter().all(|x| !x.is_anomaly()));
    let expected_err: f64 = after.iter().filter_map(|x| x.expected.map(|e| (e - x.value).abs())).fold(0.0, f64::max);
    assert!(expected_err < 12.0, "{expected_err}");
    assert_eq!(d.retained_points(), 24 * 14);
}

#[test]
fn warm_up_needs_two_cycles_of_configured_periods() {
    let mut d =
        detector(SeasonalBaselineParams { periods: vec![24, 168], window: 500, ..SeasonalBaselineParams::default() });
    let ds = feed(&mut d, &hourly(6, 340));
    assert!(ds[..336].iter().all(|x| x.state == DetectionState::WarmingUp));
    assert!(ds[336..].iter().all(|x| x.state == DetectionState::Normal));
    assert!(ds[335].explanation.note.as_deref().is_some_and(|n| n.contains("warming up: 335 of 336")));
}

#[test]
fn direction_up_ignores_drops() {
    let mut values = hourly(7, 24 * 16);
    let at = 24 * 14;
    for v in &mut values[at..at + 5] {
        *v -= 40.0;
    }
    let ds = feed(&mut detector(SeasonalBaselineParams { direction: Direction::Up, ..daily_params() }), &values);
    assert!(ds.iter().all(|x| !x.is_anomaly()));
    assert!(ds[at + 2].explanation.z_score.is_some_and(|z| z < -4.0));
    assert_eq!(ds[at + 2].score, 0.0);
}

#[test]
fn memory_is_bounded() {
    let p = SeasonalBaselineParams {
        periods: vec![12],
        window: 100,
        min_history: 30,
        refit_every: Some(10),
        residual_window: 20,
        ..SeasonalBaselineParams::default()
    };
    let mut d = detector(p);
    let caps = (d.history.capacity(), d.residuals.capacity());
    let values: Vec<f64> = (0..2000).map(|i| (TAU * i as f64 / 12.0).sin()).collect();
    feed(&mut d, &values);
    assert_eq!(d.retained_points(), 100);
    assert_eq!(d.residuals.len(), 20);
    assert_eq!((d.history.capacity(), d.residuals.capacity()), caps);
}
