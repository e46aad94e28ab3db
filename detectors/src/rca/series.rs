//! The offline path: rank the services of a recorded metrics table.
//!
//! `warden rca --metrics FILE.csv --start T` has no cluster to ask: all it has is a table of
//! metric columns and the time the fault was (approximately) injected. Public RCA benchmarks
//! (RCAEval, the sock-shop / online-boutique / train-ticket recordings) use exactly this shape,
//! with columns named `<service>_<metric>`: `carts_cpu`, `orders_latency-50`,
//! `ts-order-service_mem`. Service names contain hyphens, metric names contain hyphens, and the
//! separator is the **first** underscore (`front-end_latency-90` is service `front-end`, metric
//! `latency-90`; RCAEval splits the same way). A column without one cannot be attributed and
//! is reported in [`TableRanking::warnings`], never dropped silently.
//!
//! Each column is turned into at most one piece of anomaly evidence:
//!
//! * the **baseline** is the points before `start` minus a short look-back, summarised
//!   robustly (median, and the larger of the MAD and IQR scales, as BARO's RobustScaler does
//!   with the IQR; the mean absolute deviation when both are 0, as for a sparse error count
//!   that is mostly zero), with a floor on the scale so that a flat baseline (a `ready` column
//!   that is always 1) gives a large but finite z instead of infinity;
//! * the **strength** is the largest robust z after the look-back point, in the direction that
//!   matters for the metric (rising latency, errors, CPU and memory; falling readiness), taken
//!   over two consecutive points so that one stray sample does not count fully;
//! * the **onset** is the first time the z crosses [`SeriesParams::onset_z`] (or half the
//!   column's strength, if that is higher: the start of the main shift rather than of an earlier
//!   wobble) and stays up on the next point. The look-back (a few steps before `start`) is
//!   there because recorded injection times are approximate;
//! * **until** is set when the column went back below half the threshold and stayed there.
//!
//! BARO (Pham et al., 2024) ranks by the maximal robust-scaled value alone and is among the
//! best methods on RCAEval; the evidence produced here is then ranked by [`rank`], which adds
//! temporal precedence (what moved first) and, when the caller provides them, topology,
//! changes and Kubernetes events. Missing values (NaN) are skipped everywhere.

use std::collections::{BTreeMap, BTreeSet};

use super::evidence::{Evidence, Payload, Ranking, Subject, SubjectKind};
use super::rank::{rank, MetricClass, RankParams, RcaInput};

/// Tunables of the table analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesParams {
    /// How many steps before `start` an onset may be (recorded starts are approximate). The
    /// baseline ends where the look-back begins.
    pub lookback_steps: usize,
    /// ... and at least this many seconds (for finely sampled recordings).
    pub min_lookback_secs: i64,
    /// Robust z at which a column is taken to have started moving.
    pub onset_z: f64,
    /// The onset is where the column first reaches this fraction of its strength (if that is
    /// above [`onset_z`](Self::onset_z)): the start of the main shift, not of an earlier wobble.
    pub onset_peak_fraction: f64,
    /// Columns whose strength stays below this produce no evidence.
    pub report_z: f64,
    /// Fewer baseline points than this: the column is reported and skipped.
    pub min_baseline_points: usize,
    /// Floor on the baseline scale, relative to the baseline median's magnitude.
    pub rel_scale_floor: f64,
    /// Absolute floor on the baseline scale.
    pub abs_scale_floor: f64,
    /// Floor on the scale as a fraction of the column's resolution (the smallest step between
    /// distinct baseline values), so that sparse counts (one error per scrape) are not read as
    /// huge deviations.
    pub resolution_floor: f64,
    /// A peak that lasts one point only counts this much.
    pub single_point_factor: f64,
    /// The ranking's tunables.
    pub rank: RankParams,
}

impl Default for SeriesParams {
    fn default() -> Self {
        Self {
            lookback_steps: 4,
            min_lookback_secs: 60,
            onset_z: 4.0,
            onset_peak_fraction: 0.5,
            report_z: 3.0,
            min_baseline_points: 8,
            rel_scale_floor: 0.01,
            abs_scale_floor: 1e-3,
            resolution_floor: 0.5,
            single_point_factor: 0.5,
            rank: RankParams::default(),
        }
    }
}

/// The result of [`rank_table`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableRanking {
    /// The ranking of candidate causes (workloads, nodes, changes).
    pub ranking: Ranking,
    /// One entry per service (and node) of the table, plus any other subject the ranking
    /// produced, most probable first: the best score of the candidates about it, 0 for a
    /// service with none. Ties are broken by name.
    pub services: Vec<(String, f64)>,
    /// Everything that was ranked: the caller's evidence followed by the anomalies found in the
    /// columns (ids continue after the caller's).
    pub evidence: Vec<Evidence>,
    /// Columns that were skipped or could not be judged, and why.
    pub warnings: Vec<String>,
}

/// Input of [`rank_table_with`]: the table plus what a live system would also know.
#[derive(Debug, Clone, Default)]
pub struct TableInput<'a> {
    /// Unix seconds of each row.
    pub times: &'a [i64],
    /// `(column name, values)`; values align with `times`, NaN = missing.
    pub columns: &'a [(String, Vec<f64>)],
    /// Unix seconds: when the fault began (approximately).
    pub start: i64,
    /// Where the symptom was seen, if known.
    pub symptom: Option<Subject>,
    /// Evidence collected elsewhere (topology, changes, events, logs); ids are kept.
    pub evidence: Vec<Evidence>,
}

/// What [`analyse_column`] found in one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnVerdict {
    /// Too few points before the start to know what normal is.
    NoBaseline { points: usize },
    /// No usable point at or after the look-back point.
    NoData,
    /// Judged; the strongest deviation stayed below the report threshold.
    Normal { z: f64 },
    /// An anomaly.
    Anomalous(ColumnAnomaly),
}

/// An anomalous column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnAnomaly {
    /// Strength in robust standard deviations, in the chosen direction.
    pub z: f64,
    /// Whether the deviation is upwards.
    pub rising: bool,
    /// First time the column crossed the onset threshold (or the peak's time).
    pub onset: i64,
    /// Time of the largest deviation.
    pub peak_time: i64,
    /// Value at the largest deviation.
    pub observed: f64,
    /// Baseline median.
    pub expected: f64,
    /// Baseline scale used.
    pub scale: f64,
    /// When it went back to normal and stayed there, if it did.
    pub until: Option<i64>,
}

/// Split `<service>_<metric>` at the first underscore. `None` when there is no underscore or
/// either side is empty.
pub fn split_column(name: &str) -> Option<(&str, &str)> {
    let (service, metric) = name.split_once('_')?;
    (!service.is_empty() && !metric.is_empty()).then_some((service, metric))
}

/// Rank the services of a table: `times` (Unix seconds), `columns` named
/// `<service>_<metric>` (NaN = missing), `start` the approximate fault time.
pub fn rank_table(times: &[i64], columns: &[(String, Vec<f64>)], start: i64, params: &SeriesParams) -> TableRanking {
    rank_table_with(&TableInput { times, columns, start, symptom: None, evidence: Vec::new() }, params)
}

/// [`rank_table`] with a symptom and extra evidence (topology, changes, events).
pub fn rank_table_with(input: &TableInput<'_>, params: &SeriesParams) -> TableRanking {
    let mut warnings = Vec::new();
    let mut evidence = input.evidence.clone();
    let mut used: BTreeSet<String> = evidence.iter().map(|e| e.id.clone()).collect();
    let mut next_id = evidence.len() + 1;

    // Names the caller's evidence knows as nodes.
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    for e in &input.evidence {
        if e.subject.kind == SubjectKind::Node {
            nodes.insert(e.subject.name.clone());
        }
        if let Payload::Topology { nodes: ns, .. } = &e.payload {
            nodes.extend(ns.iter().cloned());
        }
    }

    let step = step_of(input.times);
    let mut services: BTreeSet<String> = BTreeSet::new();
    let mut seen_columns: BTreeSet<&str> = BTreeSet::new();
    for (name, values) in input.columns {
        let Some((service, metric)) = split_column(name) else {
            warnings.push(format!("column `{name}`: not named `<service>_<metric>`; ignored"));
            continue;
        };
        if !seen_columns.insert(name.as_str()) {
            warnings.push(format!("column `{name}`: appears more than once"));
        }
        services.insert(service.to_string());
        if values.len() != input.times.len() {
            warnings.push(format!(
                "column `{name}`: {} values for {} times; the shorter length is used",
                values.len(),
                input.times.len()
            ));
        }
        match analyse_column_with_step(input.times, values, input.start, step, metric, params) {
            ColumnVerdict::NoBaseline { points } => {
                warnings.push(format!(
                    "column `{name}`: no usable baseline ({points} points before the start); not judged"
                ));
            }
            ColumnVerdict::NoData => {
                warnings.push(format!("column `{name}`: no data after the start; not judged"));
            }
            ColumnVerdict::Normal { .. } => {}
            ColumnVerdict::Anomalous(a) => {
                let subject = if is_node_name(service, &nodes) {
                    Subject::node(service)
                } else {
                    Subject::workload(None, service)
                };
                let id = loop {
                    let id = format!("E{next_id}");
                    next_id += 1;
                    if used.insert(id.clone()) {
                        break id;
                    }
                };
                evidence.push(Evidence {
                    id,
                    time: a.onset,
                    subject,
                    payload: Payload::Anomaly {
                        forecast: None,
                        watch: name.clone(),
                        metric: metric.to_string(),
                        observed: a.observed,
                        expected: Some(a.expected),
                        score: a.z,
                        until: a.until,
                    },
                });
            }
        }
    }

    let ranking = rank(
        &RcaInput { start: input.start, symptom: input.symptom.clone(), evidence: evidence.clone() },
        &params.rank,
    );

    let mut best: BTreeMap<String, f64> = services.into_iter().map(|s| (s, 0.0)).collect();
    for c in &ranking.candidates {
        let e = best.entry(c.subject.name.clone()).or_insert(0.0);
        if c.score > *e {
            *e = c.score;
        }
    }
    let mut services: Vec<(String, f64)> = best.into_iter().collect();
    services.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    TableRanking { ranking, services, evidence, warnings }
}

/// A service prefix that names a node: one the evidence knows as a node, or one named `node`
/// or `node-*` (the convention of the recordings this reads).
fn is_node_name(service: &str, known: &BTreeSet<String>) -> bool {
    known.contains(service) || service == "node" || service.starts_with("node-")
}

/// The typical spacing of `times` (median positive difference), 15 s when unknown.
fn step_of(times: &[i64]) -> i64 {
    let mut sorted: Vec<i64> = times.to_vec();
    sorted.sort_unstable();
    let mut diffs: Vec<i64> = sorted.windows(2).map(|w| w[1].saturating_sub(w[0])).filter(|d| *d > 0).collect();
    if diffs.is_empty() {
        return 15;
    }
    diffs.sort_unstable();
    diffs[diffs.len() / 2]
}

/// Judge one column (its metric name decides the fault direction).
pub fn analyse_column(times: &[i64], values: &[f64], start: i64, metric: &str, params: &SeriesParams) -> ColumnVerdict {
    analyse_column_with_step(times, values, start, step_of(times), metric, params)
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Linear-interpolated quantile of sorted values.
fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (v.get(lo).copied().unwrap_or(f64::NAN), v.get(hi).copied().unwrap_or(f64::NAN));
    a + (b - a) * (pos - lo as f64)
}

/// Robust location and scale of a sample: median, max(1.4826·MAD, IQR/1.349), floored.
fn robust(values: &mut [f64], params: &SeriesParams) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let med = median_sorted(values);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = 1.4826 * median_sorted(&dev);
    let iqr = (quantile_sorted(values, 0.75) - quantile_sorted(values, 0.25)) / 1.349;
    let mut scale = [mad, iqr].into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max);
    if scale <= 0.0 {
        // More than half the baseline sits on one value (a sparse error count that is mostly
        // zero): the MAD and IQR are 0 and would make any later sample infinitely strange.
        // Fall back on the mean absolute deviation, scaled to a standard deviation
        // (Iglewicz & Hoaglin's rule for the modified z-score).
        let mean_ad = dev.iter().sum::<f64>() / dev.len().max(1) as f64;
        scale = 1.2533 * mean_ad;
    }
    // A change of one unit of the column's resolution (one error in a scrape interval, one
    // replica) is not an anomaly: the resolution is the smallest step between the distinct
    // baseline values, and half of it is a floor on the scale.
    let resolution = values.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    let resolution = if resolution.is_finite() { resolution * params.resolution_floor.max(0.0) } else { 0.0 };
    let floor = (params.rel_scale_floor.abs() * med.abs()).max(params.abs_scale_floor.abs()).max(resolution);
    let scale = [scale, floor, f64::MIN_POSITIVE].into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max);
    (med, scale)
}

fn analyse_column_with_step(
    times: &[i64],
    values: &[f64],
    start: i64,
    step: i64,
    metric: &str,
    params: &SeriesParams,
) -> ColumnVerdict {
    let n = times.len().min(values.len());
    let mut rows: Vec<(i64, f64)> = (0..n).map(|i| (times[i], values[i])).filter(|(_, v)| v.is_finite()).collect();
    rows.sort_by_key(|(t, _)| *t);

    let lookback = step
        .max(1)
        .saturating_mul(params.lookback_steps.min(10_000) as i64)
        .max(params.min_lookback_secs.clamp(0, 86_400));
    let mut cut = start.saturating_sub(lookback);
    let min_points = params.min_baseline_points.max(2);
    let mut base: Vec<f64> = rows.iter().filter(|(t, _)| *t < cut).map(|(_, v)| *v).collect();
    if base.len() < min_points {
        cut = start;
        base = rows.iter().filter(|(t, _)| *t < cut).map(|(_, v)| *v).collect();
    }
    if base.len() < min_points {
        return ColumnVerdict::NoBaseline { points: base.len() };
    }
    let (med, scale) = robust(&mut base, params);
    let post: Vec<(i64, f64)> = rows.into_iter().filter(|(t, _)| *t >= cut).collect();
    if post.is_empty() {
        return ColumnVerdict::NoData;
    }
    let z: Vec<f64> = post.iter().map(|(_, v)| (v - med) / scale).collect();

    let single = params.single_point_factor.clamp(0.0, 1.0);
    let strength_dir = |sign: f64| -> f64 {
        let zs: Vec<f64> = z.iter().map(|x| x * sign).collect();
        let peak = zs.iter().copied().fold(0.0, f64::max);
        let sustained = zs.windows(2).map(|w| w[0].min(w[1])).fold(0.0, f64::max);
        sustained.max(single * peak)
    };
    let up = strength_dir(1.0);
    let down = strength_dir(-1.0);
    let off = params.rank.off_direction_factor.clamp(0.0, 1.0);
    let (up_w, down_w) = match MetricClass::of(metric).fault_rises() {
        Some(true) => (1.0, off),
        Some(false) => (off, 1.0),
        None => (1.0, 1.0),
    };
    let rising = up * up_w >= down * down_w;
    let (strength, sign) = if rising { (up, 1.0) } else { (down, -1.0) };
    if !(strength.is_finite() && strength >= params.report_z) {
        return ColumnVerdict::Normal { z: if strength.is_finite() { strength } else { 0.0 } };
    }
    let zs: Vec<f64> = z.iter().map(|x| x * sign).collect();

    // Peak.
    let mut peak_i = 0;
    for (i, v) in zs.iter().enumerate() {
        if *v > zs[peak_i] {
            peak_i = i;
        }
    }
    // Onset: first crossing that holds on the next point, of the threshold or of a fraction
    // of the column's own strength, whichever is higher: a small earlier wobble (a blip
    // that propagated from elsewhere) is not where the main shift began.
    let base_thr = if strength >= params.onset_z { params.onset_z } else { params.report_z };
    let thr = base_thr.max(params.onset_peak_fraction.clamp(0.0, 1.0) * strength);
    let onset_i =
        (0..zs.len()).find(|&i| zs[i] >= thr && zs.get(i + 1).is_none_or(|next| *next >= thr / 2.0)).unwrap_or(peak_i);
    // Until: after the last point above half the threshold, if enough normal points follow.
    let until = zs
        .iter()
        .rposition(|v| *v >= base_thr / 2.0)
        .filter(|last| last + 3 < zs.len())
        .and_then(|last| post.get(last + 1))
        .map(|(t, _)| *t);
    let (peak_time, observed) = post[peak_i];
    ColumnVerdict::Anomalous(ColumnAnomaly {
        z: strength,
        rising,
        onset: post[onset_i].0,
        peak_time,
        observed,
        expected: med,
        scale,
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize, f: impl Fn(usize, usize) -> f64, cols: &[&str]) -> (Vec<i64>, Vec<(String, Vec<f64>)>) {
        let times: Vec<i64> = (0..n as i64).map(|i| 1_000_000 + 15 * i).collect();
        let columns =
            cols.iter().enumerate().map(|(c, name)| (name.to_string(), (0..n).map(|i| f(c, i)).collect())).collect();
        (times, columns)
    }

    fn noise(i: usize, c: usize) -> f64 {
        // Deterministic pseudo-noise in [-1, 1].
        let x = ((i * 7919 + c * 104_729) % 1000) as f64 / 500.0 - 1.0;
        x * 0.02
    }

    #[test]
    fn first_underscore_splits() {
        assert_eq!(split_column("orders_latency-50"), Some(("orders", "latency-50")));
        assert_eq!(split_column("ts-order-service_mem"), Some(("ts-order-service", "mem")));
        assert_eq!(split_column("front-end_lat_90"), Some(("front-end", "lat_90")));
        assert_eq!(split_column("time"), None);
        assert_eq!(split_column("_cpu"), None);
    }

    #[test]
    fn the_moved_service_ranks_first_and_bad_columns_are_reported() {
        let (times, mut cols) = table(
            100,
            |c, i| {
                let base = 1.0 + noise(i, c);
                if c == 1 && i >= 60 {
                    base + 1.0
                } else {
                    base
                }
            },
            &["front-end_cpu", "carts_cpu", "orders_mem", "weird"],
        );
        cols.push(("short_cpu".to_string(), vec![1.0; 3]));
        let start = times[60];
        let r = rank_table(&times, &cols, start, &SeriesParams::default());
        assert_eq!(r.services[0].0, "carts", "{r:#?}");
        assert_eq!(r.services.len(), 4);
        assert!(r.warnings.iter().any(|w| w.contains("`weird`")), "{:?}", r.warnings);
        assert!(r.warnings.iter().any(|w| w.contains("`short_cpu`") && w.contains("baseline")), "{:?}", r.warnings);
        let Some(Evidence { time, .. }) = r.evidence.iter().find(|e| e.subject.name == "carts") else {
            panic!("no evidence for carts")
        };
        assert_eq!(*time, start);
    }

    #[test]
    fn flat_baselines_and_nan_are_handled() {
        let (times, cols) = table(
            80,
            |c, i| match c {
                0 => {
                    if i >= 50 {
                        0.0
                    } else {
                        1.0
                    }
                }
                1 => {
                    if i % 3 == 0 {
                        f64::NAN
                    } else {
                        5.0 + noise(i, c)
                    }
                }
                _ => f64::NAN,
            },
            &["node-b_ready", "carts_cpu", "gone_cpu"],
        );
        let r = rank_table(&times, &cols, times[50], &SeriesParams::default());
        assert_eq!(r.services[0].0, "node-b");
        assert_eq!(r.ranking.candidates[0].subject, Subject::node("node-b"));
        assert!(r.warnings.iter().any(|w| w.contains("`gone_cpu`")));
        assert!(r.ranking.candidates.iter().all(|c| c.score.is_finite()));
    }

    #[test]
    fn empty_table() {
        let r = rank_table(&[], &[], 0, &SeriesParams::default());
        assert!(r.services.is_empty() && r.ranking.candidates.is_empty());
    }
}
