//! `warden bench m4` against the published M4 hourly figures: the scoring must reproduce
//! Naive2 (18.383 / 2.395) and sNaive (13.912 / 1.193) exactly, and the default forecaster
//! must beat seasonal naive. Missing data fails these tests; it never skips them.

use std::path::{Path, PathBuf};

use warden_agent::bench::m4::{self, M4Series};
use warden_detectors::eval::m4::{
    round3, NAIVE2_HOURLY_MASE, NAIVE2_HOURLY_SMAPE, SNAIVE_HOURLY_MASE, SNAIVE_HOURLY_SMAPE,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/datasets/m4_hourly");

fn data_dir() -> PathBuf {
    PathBuf::from(DATA)
}

fn load_all() -> Vec<M4Series> {
    match m4::load(&data_dir()) {
        Ok(series) => series,
        Err(e) => panic!(
            "the M4 hourly data set is required at {} (Hourly-train.csv, Hourly-test.csv): {e:#}",
            data_dir().display()
        ),
    }
}

#[test]
fn data_set_is_complete() {
    let series = load_all();
    assert_eq!(series.len(), 414);
    assert_eq!(series.first().map(|s| s.id.as_str()), Some("H1"));
    assert!(series.iter().all(|s| s.test.len() == 48));
    assert!(series.iter().all(|s| s.train.len() == 700 || s.train.len() == 960));
}

#[test]
fn naive2_reproduces_the_published_scores() {
    let report = m4::evaluate(&load_all(), "naive2").expect("naive2 scores");
    assert_eq!(report.series, 414);
    assert_eq!(round3(report.smape), NAIVE2_HOURLY_SMAPE, "sMAPE {}", report.smape);
    assert_eq!(round3(report.mase), NAIVE2_HOURLY_MASE, "MASE {}", report.mase);
    assert_eq!(report.owa, 1.0);
}

#[test]
fn snaive_reproduces_the_published_scores() {
    let report = m4::evaluate(&load_all(), "snaive").expect("snaive scores");
    assert_eq!(round3(report.smape), SNAIVE_HOURLY_SMAPE, "sMAPE {}", report.smape);
    assert_eq!(round3(report.mase), SNAIVE_HOURLY_MASE, "MASE {}", report.mase);
    assert_eq!(round3(report.owa), 0.627, "OWA {}", report.owa);
}

#[test]
fn default_model_beats_seasonal_naive_on_a_subset() {
    // Every fourth series keeps the test fast in debug builds; the full run is
    // `warden bench m4` in release.
    let subset: Vec<M4Series> = load_all().into_iter().step_by(4).collect();
    let default = m4::evaluate(&subset, "default").expect("default scores");
    let snaive = m4::evaluate(&subset, "snaive").expect("snaive scores");
    assert_eq!(default.series, subset.len());
    for v in [default.smape, default.mase, default.owa, default.msis, default.coverage] {
        assert!(v.is_finite(), "{default:?}");
    }
    assert!(
        default.owa < snaive.owa && default.owa < 0.5,
        "default OWA {} vs seasonal naive {}",
        default.owa,
        snaive.owa
    );
    assert!(default.coverage > 0.8, "95 % intervals cover {}", default.coverage);
}

#[test]
fn unknown_model_is_an_error() {
    let subset: Vec<M4Series> = load_all().into_iter().take(2).collect();
    let e = m4::evaluate(&subset, "prophet").err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("unknown forecasting method `prophet`"), "{e}");
}

#[test]
fn missing_or_malformed_data_names_the_file_and_line() {
    let e = m4::load(Path::new("/nonexistent/m4")).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("Hourly-train.csv"), "{e}");

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("Hourly-train.csv"),
        "\"V1\",\"V2\",\"V3\"\n\"H1\",\"1\",\"2\"\n\"H2\",\"3\",\"x\"\n",
    )
    .expect("write train");
    std::fs::write(dir.path().join("Hourly-test.csv"), "\"V1\",\"V2\"\n\"H1\",\"1\"\n").expect("write test");
    let e = m4::load(dir.path()).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("Hourly-train.csv:3") && e.contains("not a number"), "{e}");
}
