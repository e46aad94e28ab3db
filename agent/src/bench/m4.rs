//! `warden bench m4`: the forecasters of `warden_detectors::forecast` on the M4 hourly series,
//! scored exactly as the competition scored its entries (sMAPE, MASE, OWA relative to
//! Naive2), so that the numbers can be compared with the published table.
//!
//! The data are the competition's `Hourly-train.csv` and `Hourly-test.csv`: one row per
//! series, id first, values quoted, shorter rows padded with empty fields. Every model
//! forecasts 48 steps from the training part with period 24 (and 168 for the models that use
//! a weekly component); forecasts below 0 are set to 0, as the organisers did for their
//! benchmarks (all M4 values are positive). Naive2 is recomputed on the same series for the
//! OWA denominators, which is also what checks the scoring against the published 18.383 /
//! 2.395.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use warden_detectors::eval::m4::{self as score, Accumulator, HOURLY_HORIZON, HOURLY_PERIOD};
use warden_detectors::forecast::{self, ForecastConfig, Method};

/// Weekly period of hourly data, used by the models that model more than a daily cycle.
const WEEKLY: usize = 168;

/// Nominal coverage of the prediction intervals scored (as in M4).
const LEVEL: f64 = 0.95;

/// One M4 series: training values and the values to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct M4Series {
    /// Series id (`H1` … `H414`).
    pub id: String,
    /// In-sample values, oldest first.
    pub train: Vec<f64>,
    /// Out-of-sample values (the horizon).
    pub test: Vec<f64>,
}

/// Scores of one model on a set of series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct M4Report {
    /// Model name as given.
    pub model: String,
    /// Mean sMAPE over all steps (percent).
    pub smape: f64,
    /// Mean MASE over all steps.
    pub mase: f64,
    /// OWA as in the official table (ratios of aggregates rounded to 3 decimals).
    pub owa: f64,
    /// OWA from the unrounded aggregates.
    pub owa_unrounded: f64,
    /// Naive2's sMAPE on the same series (the OWA denominator).
    pub naive2_smape: f64,
    /// Naive2's MASE on the same series (the OWA denominator).
    pub naive2_mase: f64,
    /// MSIS of the 95 % prediction intervals.
    pub msis: f64,
    /// Fraction of actual values inside the 95 % prediction intervals.
    pub coverage: f64,
    /// Number of series scored.
    pub series: usize,
    /// Seconds spent fitting and predicting with `model` (not reading, not Naive2).
    pub wall_seconds: f64,
}

/// The forecaster configuration behind a model name of `warden bench m4`.
pub fn model_config(model: &str) -> anyhow::Result<ForecastConfig> {
    let method: Method = model
        .parse()
        .with_context(|| format!("model `{model}` (known: naive2, snaive, mstl_ets, theta, ar, default)"))?;
    let periods = match method {
        Method::Naive2 | Method::SeasonalNaive => vec![HOURLY_PERIOD],
        Method::MstlEts | Method::Theta | Method::Autoregression | Method::Ensemble => {
            vec![HOURLY_PERIOD, WEEKLY]
        }
    };
    Ok(ForecastConfig::new(method, periods))
}

fn parse_file(path: &Path) -> anyhow::Result<Vec<(String, Vec<f64>, u64)>> {
    let name = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("{name}: cannot open (is --data the M4 hourly folder?)"))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{name}: malformed CSV"))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut fields = record.iter();
        let id = match fields.next() {
            Some(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => bail!("{name}:{line}: missing series id"),
        };
        let mut values = Vec::new();
        let mut ended = false;
        for (k, field) in fields.enumerate() {
            let field = field.trim();
            if field.is_empty() {
                ended = true;
                continue;
            }
            if ended {
                bail!("{name}:{line}: series {id}: value in column {} after padding", k + 2);
            }
            let v: f64 = field
                .parse()
                .with_context(|| format!("{name}:{line}: series {id}: column {} is not a number: `{field}`", k + 2))?;
            if !v.is_finite() {
                bail!("{name}:{line}: series {id}: column {} is not finite", k + 2);
            }
            values.push(v);
        }
        rows.push((id, values, line));
    }
    if rows.is_empty() {
        bail!("{name}: no series");
    }
    Ok(rows)
}

/// Read `Hourly-train.csv` and `Hourly-test.csv` under `data`, paired by id, in file order.
pub fn load(data: &Path) -> anyhow::Result<Vec<M4Series>> {
    let train_path = data.join("Hourly-train.csv");
    let test_path = data.join("Hourly-test.csv");
    let train = parse_file(&train_path)?;
    let test = parse_file(&test_path)?;
    let mut tests: HashMap<String, (Vec<f64>, u64)> = HashMap::with_capacity(test.len());
    for (id, values, line) in test {
        if values.len() != HOURLY_HORIZON {
            bail!(
                "{}:{line}: series {id} has {} test values, expected {HOURLY_HORIZON}",
                test_path.display(),
                values.len()
            );
        }
        if tests.insert(id.clone(), (values, line)).is_some() {
            bail!("{}:{line}: series {id} appears twice", test_path.display());
        }
    }
    let mut series = Vec::with_capacity(train.len());
    for (id, values, line) in train {
        let Some((test, _)) = tests.remove(&id) else {
            bail!("{}:{line}: series {id} has no row in {}", train_path.display(), test_path.display());
        };
        if values.len() <= HOURLY_PERIOD {
            bail!(
                "{}:{line}: series {id} has {} training values, need more than {HOURLY_PERIOD}",
                train_path.display(),
                values.len()
            );
        }
        series.push(M4Series { id, train: values, test });
    }
    if let Some((id, (_, line))) = tests.into_iter().min_by_key(|(_, (_, line))| *line) {
        bail!("{}:{line}: series {id} has no training row", test_path.display());
    }
    Ok(series)
}

/// Forecast every series with `config` and accumulate the scores.
fn score_model(series: &[M4Series], config: &ForecastConfig) -> anyhow::Result<(Accumulator, f64)> {
    let mut acc = Accumulator::new();
    let start = Instant::now();
    for s in series {
        let fitted = forecast::fit(&s.train, config)
            .with_context(|| format!("series {}: fitting {}", s.id, config.method.name()))?;
        let f = fitted
            .predict(HOURLY_HORIZON, LEVEL)
            .with_context(|| format!("series {}: forecasting {}", s.id, config.method.name()))?;
        let clip = |v: &Vec<f64>| v.iter().map(|x| x.max(0.0)).collect::<Vec<f64>>();
        let (point, lower, upper) = (clip(&f.point), clip(&f.lower), clip(&f.upper));
        acc.add(&s.train, &s.test, &point, HOURLY_PERIOD).with_context(|| format!("series {}: scoring", s.id))?;
        acc.add_intervals(&s.train, &s.test, &lower, &upper, HOURLY_PERIOD, 1.0 - LEVEL)
            .with_context(|| format!("series {}: scoring intervals", s.id))?;
    }
    Ok((acc, start.elapsed().as_secs_f64()))
}

/// Score `model` on `series` (e.g. from [`load`]); Naive2 on the same series gives the OWA
/// denominators.
pub fn evaluate(series: &[M4Series], model: &str) -> anyhow::Result<M4Report> {
    if series.is_empty() {
        bail!("no series to evaluate");
    }
    let config = model_config(model)?;
    let (naive2_acc, naive2_seconds) = score_model(series, &model_config("naive2")?)?;
    let naive2 = naive2_acc.scores();
    let (acc, wall_seconds) =
        if config.method == Method::Naive2 { (naive2_acc, naive2_seconds) } else { score_model(series, &config)? };
    let scores = acc.scores();
    let (msis, coverage) = acc.interval_scores().unwrap_or((f64::NAN, f64::NAN));
    Ok(M4Report {
        model: model.to_string(),
        smape: scores.smape,
        mase: scores.mase,
        owa: score::owa_published(scores.smape, scores.mase, naive2.smape, naive2.mase)?,
        owa_unrounded: score::owa(scores.smape, scores.mase, naive2.smape, naive2.mase)?,
        naive2_smape: naive2.smape,
        naive2_mase: naive2.mase,
        msis,
        coverage,
        series: scores.series,
        wall_seconds,
    })
}

/// Forecast the M4 hourly series under `data` and print sMAPE, MASE and OWA.
pub fn run(data: &Path, model: &str, json: bool) -> anyhow::Result<()> {
    let series = load(data)?;
    let report = evaluate(&series, model)?;
    if json {
        let out = serde_json::json!({
            "model": report.model,
            "smape": report.smape,
            "mase": report.mase,
            "owa": report.owa,
            "series": report.series,
            "wall_seconds": report.wall_seconds,
        });
        println!("{out}");
        return Ok(());
    }
    let r = &report;
    println!("M4 hourly, {} series, horizon {HOURLY_HORIZON}, m = {HOURLY_PERIOD}", r.series);
    println!(
        "{:<10} {:>8} {:>7} {:>7} {:>9} {:>8} {:>9}",
        "model", "sMAPE", "MASE", "OWA", "OWA(raw)", "MSIS95", "cover95"
    );
    println!(
        "{:<10} {:>8.3} {:>7.3} {:>7.3} {:>9.5} {:>8.3} {:>9.3}",
        r.model, r.smape, r.mase, r.owa, r.owa_unrounded, r.msis, r.coverage
    );
    println!("{:<10} {:>8.3} {:>7.3} {:>7.3}", "naive2", r.naive2_smape, r.naive2_mase, 1.0);
    println!(
        "published: Naive2 18.383 / 2.395, sNaive 13.912 / 1.193 (OWA 0.627), best (Doornik et al.) 8.913 / 0.801 (OWA 0.410)"
    );
    println!(
        "wall time {:.2} s ({:.2} ms per series)",
        r.wall_seconds,
        r.wall_seconds * 1000.0 / r.series.max(1) as f64
    );
    Ok(())
}
