//! `warden bench rca --format petshop|nezha|scenarios --data DIR`: root-cause ranking scored
//! with each benchmark's own metrics, beside a BARO-style baseline run on the same cases.
//!
//! * **PetShop** (`rca/petshop_dev`): top-1 / top-3 recall of the root-cause node per scenario
//!   family × target metric (the target node, the call graph and the scenario's normal
//!   recording are given, as in upstream `rca_task.py`), and specificity on the no-issue
//!   tails (an answer is correct when it is empty).
//! * **Nezha** (`rca/nezha_ob`): AS@1/3/5 over the 56 Online Boutique faults, normal window
//!   `[t0 − 30 min, t0)`, incident window `[t0, t0 + 4 min)`, metrics only (pod metrics, the
//!   user-facing `front_service` as the symptom, per-edge latencies and the dependency graph).
//!   Earlier faults inside the normal window are not masked.
//! * **scenarios**: the recorded synthetic suite, by the offline ranking (`rank_table`) and by
//!   the recording ranking with the scenario's symptom, call graph and evidence.
//!
//! The baseline ("BARO") ranks services by `max |x − median_normal| / IQR_normal` over their
//! series (Pham et al., 2024, without the change-point step: the start is given). `--format
//! lodo` chooses the recording ranking's weights on two data sets and scores the third.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use warden_detectors::rca::series::{rank_table, SeriesParams};
use warden_detectors::rca::suite::{rank_scenario, Mode, ScenarioSpec};
use warden_detectors::rca::{
    rank_recording, CallGraph, Evidence, MetricClass, MetricKinds, RecordingInput, RecordingParams, Series,
};

use super::rca_data::{self, NezhaDay, PetshopScenario, NEZHA_SYMPTOM};
use crate::cli::rca::{load_suite, SuiteScenario};

/// A ranking method under test.
#[derive(Debug, Clone)]
pub enum Method {
    /// The recording ranking with these parameters.
    Warden(Box<RecordingParams>),
    /// BARO-style robust scaling.
    Baro,
    /// The offline ranking before the recording ranking: metrics only, own baseline.
    Legacy,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Warden(_) => "warden",
            Method::Baro => "baro",
            Method::Legacy => "warden-legacy",
        }
    }
}

/// One case, as every method sees it.
pub struct Case<'a> {
    pub series: &'a [Series],
    pub normal: Option<&'a [Series]>,
    pub start: i64,
    /// End of the incident data (exclusive) the methods may look at.
    pub end: i64,
    pub symptom: Option<&'a str>,
    pub symptom_metric: Option<&'a str>,
    pub graph: Option<&'a CallGraph>,
    pub kinds: Option<&'a MetricKinds>,
    pub evidence: Vec<Evidence>,
}

/// Ranked services, best first; empty = "nothing found".
pub fn answer(method: &Method, case: &Case<'_>) -> Vec<(String, f64)> {
    match method {
        Method::Warden(p) => {
            let r = rank_recording(
                &RecordingInput {
                    series: case.series,
                    normal: case.normal,
                    start: case.start,
                    symptom: case.symptom.map(str::to_string),
                    symptom_metric: case.symptom_metric.map(str::to_string),
                    graph: case.graph,
                    kinds: case.kinds,
                    evidence: case.evidence.clone(),
                },
                p,
            );
            if !r.found {
                return Vec::new();
            }
            r.services.into_iter().map(|s| (s.service, s.score)).collect()
        }
        Method::Baro => baro(case),
        Method::Legacy => legacy(case),
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// BARO's ranking: per service, the largest `|x − median| / IQR` of its series after the
/// start, median and IQR from the normal data (the points before the start without one).
fn baro(case: &Case<'_>) -> Vec<(String, f64)> {
    let normal: BTreeMap<(&str, &str), &Series> =
        case.normal.unwrap_or(&[]).iter().map(|s| ((s.service.as_str(), s.metric.as_str()), s)).collect();
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for s in case.series {
        let mut base: Vec<f64> = match case.normal {
            Some(_) => match normal.get(&(s.service.as_str(), s.metric.as_str())) {
                Some(n) => n.points.iter().map(|p| p.1).filter(|v| v.is_finite()).collect(),
                None => continue,
            },
            None => s.points.iter().filter(|p| p.0 < case.start).map(|p| p.1).filter(|v| v.is_finite()).collect(),
        };
        if base.len() < 2 {
            continue;
        }
        base.sort_by(f64::total_cmp);
        let med = quantile(&base, 0.5);
        let iqr = quantile(&base, 0.75) - quantile(&base, 0.25);
        let scale = if iqr > 0.0 { iqr } else { 1.0 };
        let z = s
            .points
            .iter()
            .filter(|p| p.0 >= case.start && p.0 < case.end && p.1.is_finite())
            .map(|p| ((p.1 - med) / scale).abs())
            .fold(0.0, f64::max);
        let e = best.entry(s.service.as_str()).or_insert(0.0);
        *e = e.max(z);
    }
    let mut out: Vec<(String, f64)> =
        best.into_iter().filter(|(_, v)| *v > 0.0).map(|(k, v)| (k.to_string(), v)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The earlier offline ranking, as a user of `warden rca --metrics --start` had it: one wide
/// table (the normal recording re-timed to end just before the incident data), metrics only.
fn legacy(case: &Case<'_>) -> Vec<(String, f64)> {
    const SEP: &str = "\u{b7}";
    let mut times: Vec<i64> = Vec::new();
    let mut shift = 0;
    if let Some(normal) = case.normal {
        let first = case.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).min().unwrap_or(case.start);
        let last = normal.iter().flat_map(|s| s.points.iter().map(|p| p.0)).max().unwrap_or(first);
        let step = 60.max(
            case.series
                .first()
                .and_then(|s| s.points.get(1).zip(s.points.first()).map(|(b, a)| b.0 - a.0))
                .unwrap_or(60),
        );
        shift = first - step - last;
    }
    let mut cols: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for (set, dt) in [(case.normal.unwrap_or(&[]), shift), (case.series, 0)] {
        for s in set {
            let name = format!("{}_{}", s.service.replace('_', SEP), s.metric);
            let col = cols.entry(name).or_default();
            for (t, v) in &s.points {
                if *t + dt < case.end {
                    col.insert(*t + dt, *v);
                    times.push(*t + dt);
                }
            }
        }
    }
    times.sort_unstable();
    times.dedup();
    let columns: Vec<(String, Vec<f64>)> = cols
        .into_iter()
        .map(|(n, m)| {
            let v = times.iter().map(|t| m.get(t).copied().unwrap_or(f64::NAN)).collect();
            (n, v)
        })
        .collect();
    let r = rank_table(&times, &columns, case.start, &SeriesParams::default());
    r.services.into_iter().filter(|(_, v)| *v > 0.0).map(|(s, v)| (s.replace(SEP, "_"), v)).collect()
}

/// 1-based rank of `truth`, ties sharing the best rank (Nezha's rule); `None` when unranked.
pub fn rank_of(answer: &[(String, f64)], truth: &str) -> Option<usize> {
    let score = answer.iter().find(|(s, _)| s == truth)?.1;
    if score.is_nan() || score <= 0.0 {
        return None;
    }
    Some(1 + answer.iter().filter(|(_, v)| *v > score).count())
}

// ---------------------------------------------------------------------------
// PetShop
// ---------------------------------------------------------------------------

/// Top-k of one scenario family × target metric.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub family: String,
    pub metric: String,
    pub split: String,
    pub n: usize,
    pub top1: f64,
    pub top3: f64,
    pub empty: f64,
}

/// Specificity of one scenario family × target metric.
#[derive(Debug, Clone, Serialize)]
pub struct SpecCell {
    pub family: String,
    pub metric: String,
    pub n: usize,
    pub specificity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PetshopReport {
    pub method: String,
    pub cells: Vec<Cell>,
    pub specificity: Vec<SpecCell>,
    /// The 18 low-traffic test issues together.
    pub low_test: Cell,
    pub skipped: Vec<String>,
    pub misses: Vec<String>,
    /// CPU time per case of the whole bench loop (reading excluded), milliseconds.
    pub ms_per_case: f64,
}

fn family(scenario: &str) -> &str {
    if scenario.starts_with("temporal") {
        "temporal"
    } else {
        scenario
    }
}

/// Kinds of the PetShop metrics (`latency-p90`, `requests-Sum`, `availability-Average`).
pub fn petshop_kinds() -> MetricKinds {
    MetricKinds {
        patterns: vec![
            ("latency-*".into(), MetricClass::Latency),
            ("requests-*".into(), MetricClass::Traffic),
            ("availability-*".into(), MetricClass::Availability),
        ],
    }
}

/// (family, target metric, split).
type CellKey = (String, String, String);
/// (top-1 hit, top-3 hit, empty answer).
type Hit = (bool, bool, bool);

pub fn eval_petshop(scenarios: &[PetshopScenario], method: &Method) -> PetshopReport {
    let kinds = petshop_kinds();
    let mut hits: BTreeMap<CellKey, Vec<Hit>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut misses = Vec::new();
    let mut spec: Vec<SpecCell> = Vec::new();
    let mut cases = 0usize;
    let clock = Instant::now();
    for sc in scenarios {
        let Some(normal) = &sc.normal else {
            skipped.extend(sc.issues.iter().map(|i| format!("{} (no normal recording)", i.id)));
            continue;
        };
        for issue in &sc.issues {
            let sm = format!("{}-{}", issue.target_metric, issue.target_agg);
            let case = Case {
                series: &issue.metrics.series,
                normal: Some(&normal.series),
                start: issue.timestamp,
                end: i64::MAX,
                symptom: Some(&issue.target_node),
                symptom_metric: Some(&sm),
                graph: Some(&sc.graph),
                kinds: Some(&kinds),
                evidence: Vec::new(),
            };
            let a = answer(method, &case);
            cases += 1;
            let pos = a.iter().position(|(s, _)| s == &issue.root_cause);
            let (h1, h3) = (pos == Some(0), pos.is_some_and(|p| p < 3));
            if !h1 {
                misses.push(format!(
                    "{} ({} {}; got {})",
                    issue.id,
                    issue.root_cause,
                    pos.map(|p| format!("#{}", p + 1)).unwrap_or_else(|| "unranked".into()),
                    a.first().map(|x| x.0.as_str()).unwrap_or("nothing")
                ));
            }
            hits.entry((family(&sc.name).to_string(), issue.target_metric.clone(), issue.split.clone()))
                .or_default()
                .push((h1, h3, a.is_empty()));
        }
        // Specificity on the no-issue tails.
        let targets: std::collections::BTreeSet<(String, String, String)> =
            sc.issues.iter().map(|i| (i.target_node.clone(), i.target_metric.clone(), i.target_agg.clone())).collect();
        let n = normal.times.len();
        for (node, metric, agg) in targets {
            let sm = format!("{metric}-{agg}");
            let mut ok = 0;
            let mut total = 0;
            let mut s = n / 2;
            while s + 3 < n {
                let t = normal.times[s];
                let head = rca_data::slice(&normal.series, i64::MIN, t);
                let tail = rca_data::slice(&normal.series, t, i64::MAX);
                let case = Case {
                    series: &tail,
                    normal: Some(&head),
                    start: t,
                    end: i64::MAX,
                    symptom: Some(&node),
                    symptom_metric: Some(&sm),
                    graph: Some(&sc.graph),
                    kinds: Some(&kinds),
                    evidence: Vec::new(),
                };
                cases += 1;
                if answer(method, &case).is_empty() {
                    ok += 1;
                }
                total += 1;
                s += (n / 10).max(1);
            }
            spec.push(SpecCell {
                family: family(&sc.name).to_string(),
                metric,
                n: total,
                specificity: if total > 0 { ok as f64 / total as f64 } else { 0.0 },
            });
        }
    }
    let ms = clock.elapsed().as_secs_f64() * 1000.0 / cases.max(1) as f64;
    let cell = |(f, m, s): &CellKey, v: &[Hit]| {
        let n = v.len().max(1) as f64;
        Cell {
            family: f.clone(),
            metric: m.clone(),
            split: s.clone(),
            n: v.len(),
            top1: v.iter().filter(|x| x.0).count() as f64 / n,
            top3: v.iter().filter(|x| x.1).count() as f64 / n,
            empty: v.iter().filter(|x| x.2).count() as f64 / n,
        }
    };
    let cells: Vec<Cell> = hits.iter().map(|(k, v)| cell(k, v)).collect();
    let low: Vec<Hit> = hits
        .iter()
        .filter(|((f, _, s), _)| f == "low_traffic" && s == "test")
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let low_test = cell(&("low_traffic".into(), "all".into(), "test".into()), &low);
    PetshopReport { method: method.name().into(), cells, specificity: spec, low_test, skipped, misses, ms_per_case: ms }
}

// ---------------------------------------------------------------------------
// Nezha
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize)]
pub struct AsK {
    pub n: usize,
    pub as1: f64,
    pub as3: f64,
    pub as5: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NezhaReport {
    pub method: String,
    pub overall: AsK,
    pub per_fault: BTreeMap<String, AsK>,
    pub per_day: BTreeMap<String, AsK>,
    /// Share of cases with an empty answer.
    pub empty: f64,
    pub misses: Vec<String>,
    pub ms_per_case: f64,
}

fn as_k(ranks: &[Option<usize>]) -> AsK {
    let n = ranks.len().max(1) as f64;
    let at = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
    AsK { n: ranks.len(), as1: at(1), as3: at(3), as5: at(5) }
}

pub fn eval_nezha(days: &[NezhaDay], method: &Method) -> NezhaReport {
    let mut all = Vec::new();
    let mut per_fault: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
    let mut per_day: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut empty = 0;
    let mut elapsed = 0.0;
    for day in days {
        for c in &day.cases {
            let series = rca_data::slice(&day.series, c.t0 - 1800, c.t0 + 240);
            let normal = rca_data::slice(&day.series, c.t0 - 1800, c.t0);
            let case = Case {
                series: &series,
                normal: Some(&normal),
                start: c.t0,
                end: c.t0 + 240,
                symptom: Some(NEZHA_SYMPTOM),
                symptom_metric: None,
                graph: Some(&day.graph),
                kinds: None,
                evidence: Vec::new(),
            };
            let clock = Instant::now();
            let a: Vec<(String, f64)> =
                answer(method, &case).into_iter().filter(|(s, _)| day.services.contains(s)).collect();
            elapsed += clock.elapsed().as_secs_f64();
            if a.is_empty() {
                empty += 1;
            }
            let r = rank_of(&a, &c.root_cause);
            if r != Some(1) {
                misses.push(format!(
                    "{} {} {} ({}; first: {})",
                    c.id,
                    c.fault,
                    c.root_cause,
                    r.map(|k| format!("#{k}")).unwrap_or_else(|| "unranked".into()),
                    a.first().map(|x| x.0.as_str()).unwrap_or("nothing")
                ));
            }
            all.push(r);
            per_fault.entry(c.fault.clone()).or_default().push(r);
            per_day.entry(c.date.clone()).or_default().push(r);
        }
    }
    NezhaReport {
        method: method.name().into(),
        overall: as_k(&all),
        per_fault: per_fault.iter().map(|(k, v)| (k.clone(), as_k(v))).collect(),
        per_day: per_day.iter().map(|(k, v)| (k.clone(), as_k(v))).collect(),
        empty: empty as f64 / all.len().max(1) as f64,
        misses,
        ms_per_case: elapsed * 1000.0 / all.len().max(1) as f64,
    }
}

// ---------------------------------------------------------------------------
// Synthetic suite
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub method: String,
    pub mode: String,
    pub n: usize,
    pub top1: f64,
    pub top3: f64,
    pub misses: Vec<String>,
    pub ms_per_case: f64,
}

/// The series of a wide table split at the first `_` (the suite's naming).
pub fn wide_to_series(times: &[i64], columns: &[(String, Vec<f64>)]) -> Vec<Series> {
    columns
        .iter()
        .filter_map(|(name, values)| {
            let (svc, metric) = name.split_once('_')?;
            Some(Series {
                service: svc.to_string(),
                metric: metric.to_string(),
                points: times.iter().copied().zip(values.iter().copied()).collect(),
            })
        })
        .collect()
}

/// The call graph of a scenario's topology events.
fn suite_graph(spec: &ScenarioSpec) -> CallGraph {
    let mut g = CallGraph::default();
    for e in &spec.events {
        if let warden_detectors::rca::suite::EventSpec::Topology { service, depends_on, .. } = e {
            for d in depends_on {
                g.add(service, d);
            }
        }
    }
    g
}

pub fn eval_scenarios(suite: &[SuiteScenario], method: &Method, with_evidence: bool) -> ScenarioReport {
    let mut h1 = 0;
    let mut h3 = 0;
    let mut misses = Vec::new();
    let mut elapsed = 0.0;
    for s in suite {
        let clock = Instant::now();
        let a: Vec<(String, f64)> = match method {
            Method::Legacy => {
                let mode = if with_evidence { Mode::WithEvidence } else { Mode::MetricsOnly };
                rank_scenario(&s.spec, &s.table.times, &s.table.columns, mode, &SeriesParams::default())
                    .map(|r| r.services.into_iter().filter(|(_, v)| *v > 0.0).collect())
                    .unwrap_or_default()
            }
            _ => {
                let series = wide_to_series(&s.table.times, &s.table.columns);
                let graph = suite_graph(&s.spec);
                let evidence: Vec<Evidence> =
                    if with_evidence { s.spec.evidence().unwrap_or_default() } else { Vec::new() };
                let case = Case {
                    series: &series,
                    normal: None,
                    start: s.spec.start,
                    end: i64::MAX,
                    symptom: with_evidence.then_some(s.spec.symptom.as_str()),
                    symptom_metric: None,
                    graph: (with_evidence && !graph.is_empty()).then_some(&graph),
                    kinds: None,
                    evidence,
                };
                answer(method, &case)
            }
        };
        elapsed += clock.elapsed().as_secs_f64();
        let pos = a.iter().position(|(n, _)| n == &s.spec.root_cause);
        if pos == Some(0) {
            h1 += 1;
        } else {
            misses.push(format!(
                "{} ({} {}; first: {})",
                s.name,
                s.spec.root_cause,
                pos.map(|p| format!("#{}", p + 1)).unwrap_or_else(|| "unranked".into()),
                a.first().map(|x| x.0.as_str()).unwrap_or("nothing")
            ));
        }
        if pos.is_some_and(|p| p < 3) {
            h3 += 1;
        }
    }
    let n = suite.len().max(1) as f64;
    ScenarioReport {
        method: method.name().into(),
        mode: if with_evidence { "with-evidence" } else { "metrics-only" }.into(),
        n: suite.len(),
        top1: h1 as f64 / n,
        top3: h3 as f64 / n,
        misses,
        ms_per_case: elapsed * 1000.0 / n,
    }
}

// ---------------------------------------------------------------------------
// Leave one data set out
// ---------------------------------------------------------------------------

/// The candidate parameter sets of the leave-one-data-set-out choice: the scale (MAD alone or
/// with the IQR, with or without the tail floor), the "nothing found" rule for a quiet symptom,
/// the correlation weight and precedence with a graph.
pub fn grid() -> Vec<(String, RecordingParams)> {
    let mut out = Vec::new();
    for iqr in [0.0, 1.0] {
        for tail in [0.0, 0.9] {
            for quiet in [0.0, 30.0] {
                for corr in [0.0, 0.3, 0.6] {
                    for prec in [0.0, 0.2] {
                        let mut p = RecordingParams {
                            iqr_weight: iqr,
                            tail_quantile: tail,
                            quiet_found_z: quiet,
                            corr_weight: corr,
                            ..Default::default()
                        };
                        p.rank.w_precedence = prec;
                        out.push((format!("iqr={iqr} tail={tail} quiet_z={quiet} corr={corr} prec={prec}"), p));
                    }
                }
            }
        }
    }
    out
}

/// The objective of one data set: its top-1 figure (PetShop: the 18 low-traffic test issues,
/// averaged with the mean specificity; the suite: metrics only and with evidence, averaged).
fn objectives(
    p: &RecordingParams,
    petshop: &[PetshopScenario],
    nezha: &[NezhaDay],
    suite: &[SuiteScenario],
) -> [f64; 3] {
    let m = Method::Warden(Box::new(p.clone()));
    let ps = eval_petshop(petshop, &m);
    let spec = ps.specificity.iter().map(|s| s.specificity).sum::<f64>() / ps.specificity.len().max(1) as f64;
    let nz = eval_nezha(nezha, &m);
    let sc = (eval_scenarios(suite, &m, false).top1 + eval_scenarios(suite, &m, true).top1) / 2.0;
    [(ps.low_test.top1 + spec) / 2.0, nz.overall.as1, sc]
}

/// Run the grid and report, for each held-out data set, the parameters chosen on the other two
/// and the held-out figure.
pub fn lodo(petshop: &Path, nezha: &Path, suite: &Path, out: &mut dyn Write) -> Result<()> {
    let ps = rca_data::read_petshop(petshop)?;
    let nz = rca_data::read_nezha(nezha)?;
    let sc = load_suite(suite)?;
    let names = ["petshop", "nezha", "scenarios"];
    let mut rows = Vec::new();
    let params = grid();
    for (label, p) in params.iter().cloned() {
        let o = objectives(&p, &ps, &nz, &sc);
        writeln!(out, "{label:<44} petshop {:.3} nezha {:.3} scenarios {:.3}", o[0], o[1], o[2])?;
        rows.push((label, o));
    }
    for held in 0..3 {
        let s = |o: &[f64; 3]| (0..3).filter(|i| *i != held).map(|i| o[i]).sum::<f64>();
        let top = rows.iter().map(|r| s(&r.1)).fold(f64::NEG_INFINITY, f64::max);
        // Every parameter set tied for best on the other two; the last one is the choice.
        let tied: Vec<&(String, [f64; 3])> = rows.iter().filter(|r| s(&r.1) >= top - 1e-9).collect();
        if let Some((label, o)) = tied.last() {
            writeln!(out, "held out {}: chosen [{label}] -> held-out objective {:.3}", names[held], o[held])?;
            if let Some((_, p)) = params.iter().find(|(l, _)| l == label) {
                let m = Method::Warden(Box::new(p.clone()));
                match held {
                    0 => {
                        let r = eval_petshop(&ps, &m);
                        let spec: Vec<String> = r
                            .specificity
                            .iter()
                            .map(|c| format!("{} {} {:.3}", c.family, c.metric, c.specificity))
                            .collect();
                        writeln!(
                            out,
                            "  low-traffic test ({}): top-1 {:.3} top-3 {:.3}; specificity {}",
                            r.low_test.n,
                            r.low_test.top1,
                            r.low_test.top3,
                            spec.join(", ")
                        )?;
                    }
                    1 => {
                        let r = eval_nezha(&nz, &m);
                        let a = &r.overall;
                        writeln!(out, "  AS@1 {:.3} AS@3 {:.3} AS@5 {:.3} ({} cases)", a.as1, a.as3, a.as5, a.n)?;
                    }
                    _ => {
                        let (mo, we) = (eval_scenarios(&sc, &m, false), eval_scenarios(&sc, &m, true));
                        writeln!(
                            out,
                            "  metrics only top-1 {:.3} top-3 {:.3}; with evidence top-1 {:.3} top-3 {:.3}",
                            mo.top1, mo.top3, we.top1, we.top3
                        )?;
                    }
                }
            }
            if tied.len() > 1 {
                let lo = tied.iter().map(|r| r.1[held]).fold(f64::INFINITY, f64::min);
                let hi = tied.iter().map(|r| r.1[held]).fold(f64::NEG_INFINITY, f64::max);
                writeln!(out, "  ({} sets tie on the other two; held-out objective {lo:.3} to {hi:.3})", tied.len())?;
            }
        }
    }
    let best_all = rows.iter().max_by(|a, b| a.1.iter().sum::<f64>().total_cmp(&b.1.iter().sum::<f64>()));
    if let Some((label, o)) = best_all {
        writeln!(out, "all three (in-sample): [{label}] {:.3} {:.3} {:.3}", o[0], o[1], o[2])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------

/// `warden bench rca --format FORMAT --data DIR`.
pub fn run(format: &str, data: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let methods = [Method::Warden(Box::default()), Method::Baro, Method::Legacy];
    match format {
        "petshop" => {
            let sc = rca_data::read_petshop(data)?;
            let reports: Vec<PetshopReport> = methods.iter().map(|m| eval_petshop(&sc, m)).collect();
            if json {
                writeln!(out, "{}", serde_json::to_string(&reports)?)?;
                return Ok(());
            }
            writeln!(out, "PetShop {}: {} issues", data.display(), sc.iter().map(|s| s.issues.len()).sum::<usize>())?;
            writeln!(
                out,
                "{:<14} {:<12} {:<13} {:<6} {:>3} {:>6} {:>6} {:>6}",
                "method", "family", "target", "split", "n", "top1", "top3", "empty"
            )?;
            for r in &reports {
                for c in r.cells.iter().chain(std::iter::once(&r.low_test)) {
                    writeln!(
                        out,
                        "{:<14} {:<12} {:<13} {:<6} {:>3} {:>6.3} {:>6.3} {:>6.3}",
                        r.method, c.family, c.metric, c.split, c.n, c.top1, c.top3, c.empty
                    )?;
                }
            }
            writeln!(out, "\n{:<14} {:<12} {:<13} {:>3} {:>11}", "method", "family", "target", "n", "specificity")?;
            for r in &reports {
                for s in &r.specificity {
                    writeln!(
                        out,
                        "{:<14} {:<12} {:<13} {:>3} {:>11.3}",
                        r.method, s.family, s.metric, s.n, s.specificity
                    )?;
                }
            }
            for r in &reports {
                writeln!(out, "\n{}: {:.2} ms per case; skipped: {}", r.method, r.ms_per_case, r.skipped.len())?;
                for m in &r.misses {
                    writeln!(out, "  miss {m}")?;
                }
            }
        }
        "nezha" => {
            let days = rca_data::read_nezha(data)?;
            let reports: Vec<NezhaReport> = methods.iter().map(|m| eval_nezha(&days, m)).collect();
            if json {
                writeln!(out, "{}", serde_json::to_string(&reports)?)?;
                return Ok(());
            }
            writeln!(out, "Nezha Online Boutique {}: {} cases", data.display(), reports[0].overall.n)?;
            writeln!(out, "{:<14} {:<16} {:>3} {:>6} {:>6} {:>6}", "method", "group", "n", "AS@1", "AS@3", "AS@5")?;
            for r in &reports {
                let rows = std::iter::once(("overall".to_string(), &r.overall))
                    .chain(r.per_fault.iter().map(|(k, v)| (k.clone(), v)))
                    .chain(r.per_day.iter().map(|(k, v)| (k.clone(), v)));
                for (g, a) in rows {
                    writeln!(
                        out,
                        "{:<14} {:<16} {:>3} {:>6.3} {:>6.3} {:>6.3}",
                        r.method, g, a.n, a.as1, a.as3, a.as5
                    )?;
                }
            }
            for r in &reports {
                writeln!(out, "\n{}: {:.2} ms per case; empty answers {:.3}", r.method, r.ms_per_case, r.empty)?;
                for m in &r.misses {
                    writeln!(out, "  miss {m}")?;
                }
            }
        }
        "scenarios" => {
            let suite = load_suite(data)?;
            let mut reports = Vec::new();
            for m in &methods {
                for ev in [false, true] {
                    reports.push(eval_scenarios(&suite, m, ev));
                }
            }
            if json {
                writeln!(out, "{}", serde_json::to_string(&reports)?)?;
                return Ok(());
            }
            writeln!(out, "Synthetic suite {}: {} scenarios", data.display(), suite.len())?;
            writeln!(out, "{:<14} {:<14} {:>3} {:>6} {:>6}", "method", "mode", "n", "top1", "top3")?;
            for r in &reports {
                writeln!(out, "{:<14} {:<14} {:>3} {:>6.3} {:>6.3}", r.method, r.mode, r.n, r.top1, r.top3)?;
            }
            for r in &reports {
                writeln!(out, "\n{} {}: {:.2} ms per case", r.method, r.mode, r.ms_per_case)?;
                for m in &r.misses {
                    writeln!(out, "  miss {m}")?;
                }
            }
        }
        other => bail!("--format {other}: expected petshop, nezha or scenarios"),
    }
    Ok(())
}
