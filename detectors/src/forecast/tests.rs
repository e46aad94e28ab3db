//! Unit tests of the forecasters: every method on a seasonal series, constant and extreme
//! histories, period detection, trend continuation and the seasonal naive fallback.

use super::*;
use crate::harness::XorShift64;
use std::f64::consts::PI;

/// Hourly-like series: level 100, daily amplitude 20, weekly amplitude 8, uniform noise.
fn seasonal(n: usize, noise: f64, seed: u64) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    (0..n)
        .map(|i| {
            let t = i as f64;
            100.0 + 20.0 * (2.0 * PI * t / 24.0).sin() + 8.0 * (2.0 * PI * t / 168.0).cos() + rng.uniform(-noise, noise)
        })
        .collect()
}

fn truth(range: std::ops::Range<usize>) -> Vec<f64> {
    range
        .map(|i| {
            let t = i as f64;
            100.0 + 20.0 * (2.0 * PI * t / 24.0).sin() + 8.0 * (2.0 * PI * t / 168.0).cos()
        })
        .collect()
}

fn mae(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len().max(1) as f64
}

fn assert_valid(f: &Forecast, h: usize) {
    assert_eq!((f.point.len(), f.lower.len(), f.upper.len()), (h, h, h));
    for k in 0..h {
        assert!(f.lower[k] <= f.point[k] && f.point[k] <= f.upper[k], "step {k}: {f:?}");
    }
    assert!(f.all_finite());
}

#[test]
fn method_names_round_trip() {
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().ok(), Some(m));
        let json = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Method>(&json).ok(), Some(m), "{json}");
        let short = format!("\"{}\"", m.name());
        assert_eq!(serde_json::from_str::<Method>(&short).ok(), Some(m), "{short}");
    }
    assert_eq!("default".parse::<Method>().ok(), Some(Method::Ensemble));
    let e = "prophet".parse::<Method>().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("`method`") && e.contains("prophet"), "{e}");
}

#[test]
fn bad_history_and_config_are_clear_errors() {
    let config = ForecastConfig::default();
    let e = fit(&[], &config).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("history") && e.contains("at least 3"), "{e}");
    let e = fit(&[1.0, f64::NAN, 2.0, 3.0], &config).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("value 1 is not finite"), "{e}");
    let bad = ForecastConfig::new(Method::Ensemble, vec![24, 1]);
    let e = fit(&[1.0, 2.0, 3.0], &bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("`periods`"), "{e}");
    let fitted = fit(&[1.0, 2.0, 3.0, 4.0], &config).expect("fits");
    for level in [0.0, 1.0, f64::NAN] {
        let e = fitted.predict(3, level).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`level`"), "{e}");
    }
}

#[test]
fn constant_history_is_forecast_as_constant() {
    for method in Method::ALL {
        let fitted = fit(&[7.5; 50], &ForecastConfig::new(method, vec![5])).expect("fits");
        let f = fitted.predict(10, 0.95).expect("predicts");
        assert!(f.point.iter().chain(&f.lower).chain(&f.upper).all(|&v| v == 7.5), "{method:?}");
        assert!(fitted.notes().iter().any(|n| n == "constant history"));
    }
}

#[test]
fn seasonal_naive_repeats_the_last_cycle() {
    let y: Vec<f64> = (0..20).map(|i| f64::from(i % 4) + f64::from(i / 4)).collect();
    let fitted = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![4])).expect("fits");
    assert_eq!(fitted.periods(), &[4]);
    let f = fitted.predict(8, 0.9).expect("predicts");
    assert_eq!(f.point, vec![4.0, 5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 7.0]);
    // Residuals y_t - y_{t-4} are all 1: sigma 1, widening with each cycle.
    let z = normal_quantile(0.95);
    assert!((f.upper[0] - f.point[0] - z).abs() < 1e-12);
    assert!((f.upper[4] - f.point[4] - z * 2f64.sqrt()).abs() < 1e-12);
    // Without a usable period it is the naive forecast.
    let fitted = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![15])).expect("fits");
    assert!(fitted.periods().is_empty() && fitted.notes().iter().any(|n| n.contains("period 15 dropped")));
    assert_eq!(fitted.predict(2, 0.9).expect("predicts").point, vec![7.0, 7.0]);
}

#[test]
fn naive2_adjusts_only_seasonal_series() {
    // Exactly multiplicative: level 10, indices 0.5, 1.5, 1, 1 (mean 1), 10 cycles.
    let si = [0.5, 1.5, 1.0, 1.0];
    let y: Vec<f64> = (0..40).map(|i| 10.0 * si[i % 4]).collect();
    let indices = classical_multiplicative_indices(&y, 4).expect("indices");
    for (i, s) in indices.iter().enumerate() {
        assert!((s - si[i % 4]).abs() < 1e-12, "{i}: {s}");
    }
    assert!(seasonality_test(&y, 4));
    let f = fit(&y, &ForecastConfig::new(Method::Naive2, vec![4])).and_then(|m| m.predict(4, 0.95)).expect("forecast");
    for (p, s) in f.point.iter().zip(si) {
        assert!((p - 10.0 * s).abs() < 1e-9, "{:?}", f.point);
    }
    // Not seasonal (fewer than 3 cycles): plain naive.
    assert!(!seasonality_test(&y[..11], 4));
    let f = fit(&y[..11], &ForecastConfig::new(Method::Naive2, vec![4]))
        .and_then(|m| m.predict(2, 0.95))
        .expect("forecast");
    assert_eq!(f.point, vec![y[10], y[10]]);
    // White noise is not seasonal.
    let mut rng = XorShift64::new(1);
    let noise: Vec<f64> = (0..500).map(|_| rng.uniform(5.0, 6.0)).collect();
    assert!(!seasonality_test(&noise, 24));
    // Non-positive values: not adjusted, with a note.
    let shifted: Vec<f64> = y.iter().map(|v| v - 8.0).collect();
    let fitted = fit(&shifted, &ForecastConfig::new(Method::Naive2, vec![4])).expect("fits");
    assert!(fitted.notes().iter().any(|n| n.contains("values <= 0")), "{:?}", fitted.notes());
}

#[test]
fn detects_daily_and_weekly_periods() {
    let y = seasonal(24 * 7 * 4, 2.0, 3);
    assert_eq!(detect_periods(&y, &[12, 24, 168]), vec![24, 168]);
    // Weekly needs two cycles.
    assert_eq!(detect_periods(&y[..300], &[24, 168]), vec![24]);
    let mut rng = XorShift64::new(9);
    let noise: Vec<f64> = (0..1000).map(|_| rng.uniform(0.0, 1.0)).collect();
    assert!(detect_periods(&noise, &[24, 168]).is_empty());
    assert!(detect_periods(&[1.0; 500], &[24]).is_empty());
    assert!(detect_periods(&y, &[]).is_empty());
    let config = ForecastConfig { candidate_periods: vec![24, 168], ..ForecastConfig::default() };
    assert_eq!(fit(&y, &config).expect("fits").periods(), &[24, 168]);
}

#[test]
fn every_method_forecasts_a_seasonal_series() {
    let n = 24 * 7 * 4;
    let y = seasonal(n, 2.0, 5);
    let actual = truth(n..n + 48);
    let snaive = fit(&y, &ForecastConfig::new(Method::SeasonalNaive, vec![24, 168]))
        .and_then(|m| m.predict(48, 0.95))
        .expect("snaive");
    for method in Method::ALL {
        let fitted = fit(&y, &ForecastConfig::new(method, vec![24, 168])).expect("fits");
        let f = fitted.predict(48, 0.95).expect("predicts");
        assert_valid(&f, 48);
        let err = mae(&f.point, &actual);
        assert!(err < 6.0, "{method:?}: MAE {err}");
        if matches!(method, Method::Autoregression | Method::Ensemble | Method::MstlEts) {
            assert!(err < mae(&snaive.point, &actual), "{method:?}: MAE {err}");
        }
        let inside = actual.iter().enumerate().filter(|&(k, v)| f.lower[k] <= *v && *v <= f.upper[k]).count();
        if method != Method::Naive2 {
            assert!(inside >= 40, "{method:?}: {inside} of 48 inside");
        }
    }
}

#[test]
fn ensemble_continues_a_linear_trend_on_the_original_scale() {
    let mut rng = XorShift64::new(4);
    let y: Vec<f64> = (0..500).map(|i| 10.0 + 0.5 * i as f64 + rng.uniform(-1.0, 1.0)).collect();
    let config = ForecastConfig { log: false, ..ForecastConfig::default() };
    let f = fit(&y, &config).and_then(|m| m.predict(200, 0.95)).expect("forecast");
    let expected_end = 10.0 + 0.5 * 699.0;
    let end = f.point.last().copied().unwrap_or(0.0);
    assert!((end - expected_end).abs() < 5.0, "{end} vs {expected_end}");
}

#[test]
fn extreme_and_negative_values_stay_finite() {
    let y = seasonal(400, 2.0, 6);
    for scale in [1e-300, 1e-9, 1e9, 1e300, -1e300] {
        let scaled: Vec<f64> = y.iter().map(|v| v * scale).collect();
        for method in Method::ALL {
            let fitted = fit(&scaled, &ForecastConfig::new(method, vec![24])).expect("fits");
            let f = fitted.predict(30, 0.99).expect("predicts");
            assert_valid(&f, 30);
        }
    }
    let alternating: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { f64::MAX } else { f64::MIN }).collect();
    for method in Method::ALL {
        let (_, f) =
            forecast_with_fallback(&alternating, &ForecastConfig::new(method, vec![]), 10, 0.9).expect("forecast");
        assert_valid(&f, 10);
    }
    let negative: Vec<f64> = y.iter().map(|v| v - 150.0).collect();
    let fitted = fit(&negative, &ForecastConfig::new(Method::Ensemble, vec![24])).expect("fits");
    assert!(fitted.notes().iter().any(|n| n.contains("log transform skipped")));
}

#[test]
fn fallback_to_seasonal_naive_is_noted() {
    // Too short for the autoregression's lags.
    let y: Vec<f64> = (0..12).map(|i| f64::from(i % 3)).collect();
    let config = ForecastConfig::new(Method::Autoregression, vec![3]);
    assert!(matches!(fit(&y, &config), Err(Error::Model { model: "ar", .. })));
    let (fitted, f) = forecast_with_fallback(&y, &config, 6, 0.9).expect("falls back");
    assert_eq!(fitted.method(), Method::SeasonalNaive);
    assert!(fitted.notes().iter().any(|n| n.contains("fell back to seasonal naive")));
    assert_eq!(f.point, vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    // The ensemble falls back on its own.
    let fitted = fit(&y, &ForecastConfig::new(Method::Ensemble, vec![3])).expect("fits");
    assert!(fitted.notes().iter().any(|n| n.contains("ensemble fell back")), "{:?}", fitted.notes());
    // Unusable history is not hidden by the fallback.
    assert!(forecast_with_fallback(&[1.0], &config, 6, 0.9).is_err());
}

#[test]
fn helpers() {
    assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
    assert!((normal_quantile(0.5)).abs() < 1e-12);
    assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
    assert_eq!(normal_quantile(0.0), -8.3);
    assert_eq!(calendar_periods(3_600_000), vec![24, 168]);
    assert_eq!(calendar_periods(60_000), vec![1440, 10080]);
    assert!(calendar_periods(0).is_empty());
    assert_eq!(calendar_periods(86_400_000), vec![7]);
    let mut s = SpacingTracker::default();
    assert_eq!(s.median_ms(), None);
    for t in [0, 60, 120, 120, 100, 160, 220, 400] {
        s.observe(t);
    }
    assert_eq!(s.median_ms(), Some(60));
    s.observe(i64::MIN);
    s.observe(i64::MAX);
    assert_eq!(s.median_ms(), Some(60));
    s.reset();
    assert_eq!(s.median_ms(), None);
    let mut v = vec![3.0, 1.0, 2.0, 4.0];
    assert_eq!(sort_median(&mut v), Some(2.5));
    let mut a = vec![4.0, 2.0, 2.0, 3.0];
    let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).expect("solves");
    assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
    assert!(cholesky_solve(&mut [0.0], &[1.0], 1).is_none());
}
