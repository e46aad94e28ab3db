//! `warden rca --metrics FILE.csv --start T [--json]` and `warden bench rca --suite DIR`.
//!
//! Root-cause ranking is only useful if it can be checked on incidents whose cause is known,
//! away from a live cluster. `warden rca` ranks the services of a recorded metrics table in
//! the layout of public RCA benchmarks (RCAEval and its sock-shop / online-boutique /
//! train-ticket recordings): a `time` column in Unix seconds, then one column per
//! `<service>_<metric>`. The ranking itself is
//! [`warden_detectors::rca::rank_table`]; this module only reads the file, reports its
//! problems with file and line, and prints. `warden bench rca` runs the recorded scenario suite
//! (`tests/rca/scenarios`, see `tests/rca/generate.py`) in both modes of
//! [`warden_detectors::rca::suite`] and prints AC@1 / AC@3 overall and per fault type.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use warden_detectors::rca::recording::ServiceScore;
use warden_detectors::rca::series::SeriesParams;
use warden_detectors::rca::suite::{rank_scenario, score, Mode, Outcome, ScenarioSpec, SuiteReport, SuiteScore};
use warden_detectors::rca::{
    rank_recording, CallGraph, Candidate, MetricClass, MetricKinds, RecordingInput, RecordingParams, RecordingRanking,
    Series,
};

/// A metrics table: row times and named columns (NaN = missing).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Unix seconds of each row.
    pub times: Vec<i64>,
    /// `(column name, values)`, in file order, without the time column.
    pub columns: Vec<(String, Vec<f64>)>,
}

/// Read a metrics CSV: a `time` column (Unix seconds, integer or decimal) and numeric columns.
/// Empty cells and `NaN` / `null` / `NA` are missing values; anything else that is not a
/// number is an error naming the file, the line and the column.
pub fn read_table(path: &Path) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}:1: reading the header", path.display()))?.clone();
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    let Some(ti) = names.iter().position(|h| h.eq_ignore_ascii_case("time")) else {
        bail!("{}:1: no `time` column (found: {})", path.display(), names.join(","));
    };
    let mut table = Table {
        times: Vec::new(),
        columns: names.iter().enumerate().filter(|(i, _)| *i != ti).map(|(_, n)| (n.clone(), Vec::new())).collect(),
    };
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}:{line}: reading the row", path.display()))?;
        let t = rec.get(ti).unwrap_or("").trim();
        let secs: f64 = t
            .parse()
            .map_err(|_| anyhow!("{}:{line}: column `time`: `{t}` is not a number of Unix seconds", path.display()))?;
        if !(secs.is_finite() && secs.abs() < 1e13) {
            bail!("{}:{line}: column `time`: `{t}` is not a number of Unix seconds", path.display());
        }
        table.times.push(secs.round() as i64);
        let mut c = 0;
        for (j, cell) in rec.iter().enumerate() {
            if j == ti {
                continue;
            }
            let v = parse_cell(cell).ok_or_else(|| {
                anyhow!(
                    "{}:{line}: column `{}`: `{}` is not a number",
                    path.display(),
                    names.get(j).map(String::as_str).unwrap_or("?"),
                    cell.trim()
                )
            })?;
            if let Some(col) = table.columns.get_mut(c) {
                col.1.push(v);
            }
            c += 1;
        }
    }
    Ok(table)
}

fn parse_cell(cell: &str) -> Option<f64> {
    let t = cell.trim();
    match t.to_ascii_lowercase().as_str() {
        "" | "nan" | "null" | "na" | "n/a" | "none" => Some(f64::NAN),
        _ => t.parse::<f64>().ok(),
    }
}

fn round4(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// How the columns of a wide table name their service and metric.
#[derive(Debug, Clone)]
pub enum ColumnNames {
    /// `<service><SEP><metric>`, split at the first `SEP`.
    Separator(String),
    /// A regular expression with the named groups `service` and `metric`.
    Pattern(regex::Regex),
    /// Nothing given: the first `_`, reported as a guess.
    FirstUnderscore,
}

impl ColumnNames {
    fn split<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (s, m) = match self {
            ColumnNames::Separator(sep) => name.split_once(sep.as_str())?,
            ColumnNames::FirstUnderscore => name.split_once('_')?,
            ColumnNames::Pattern(re) => {
                let c = re.captures(name)?;
                (c.name("service")?.as_str(), c.name("metric")?.as_str())
            }
        };
        (!s.is_empty() && !m.is_empty()).then_some((s, m))
    }
}

/// A recording as series, with what reading it had to guess or skip.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

/// Read a recording in either layout: long (`time,service,metric,value`, recognised by its
/// header) or wide (a `time` column and one column per service and metric, named as
/// `names` says).
pub fn read_recording(path: &Path, names: &ColumnNames) -> Result<Recording> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}:1: reading the header", path.display()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if headers == ["time", "service", "metric", "value"] {
        return read_long(path);
    }
    let table = read_table(path)?;
    let mut rec = Recording::default();
    let mut bad = Vec::new();
    for (name, values) in &table.columns {
        match names.split(name) {
            Some((svc, metric)) => rec.series.push(Series {
                service: svc.to_string(),
                metric: metric.to_string(),
                points: table.times.iter().copied().zip(values.iter().copied()).collect(),
            }),
            None => bad.push(name.as_str()),
        }
    }
    if matches!(names, ColumnNames::FirstUnderscore) {
        rec.warnings.push(format!(
            "{}: no --separator or --pattern given; column names were split at their first `_` (service `{}` …)",
            path.display(),
            rec.series.first().map(|s| s.service.as_str()).unwrap_or("-")
        ));
    }
    if !bad.is_empty() {
        rec.warnings.push(format!(
            "{}: {} column(s) do not name a service and a metric; ignored: {}",
            path.display(),
            bad.len(),
            bad.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(rec)
}

/// Read the long layout: `time,service,metric,value`, one observation per row.
pub fn read_long(path: &Path) -> Result<Recording> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut by: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}:{line}: reading the row", path.display()))?;
        let field = |k: usize| rec.get(k).unwrap_or("").trim();
        let secs: f64 = field(0).parse().map_err(|_| {
            anyhow!("{}:{line}: column `time`: `{}` is not a number of Unix seconds", path.display(), field(0))
        })?;
        if !(secs.is_finite() && secs.abs() < 1e13) {
            bail!("{}:{line}: column `time`: `{}` is not a number of Unix seconds", path.display(), field(0));
        }
        let (svc, metric) = (field(1), field(2));
        if svc.is_empty() || metric.is_empty() {
            bail!("{}:{line}: empty `service` or `metric`", path.display());
        }
        let v = parse_cell(field(3))
            .ok_or_else(|| anyhow!("{}:{line}: column `value`: `{}` is not a number", path.display(), field(3)))?;
        by.entry((svc.to_string(), metric.to_string())).or_default().push((secs.round() as i64, v));
    }
    let series = by
        .into_iter()
        .map(|((service, metric), mut points)| {
            points.sort_by_key(|p| p.0);
            Series { service, metric, points }
        })
        .collect();
    Ok(Recording { series, warnings: Vec::new() })
}

/// The rows of a two-column CSV whose header must be exactly `header` (trimmed, any case),
/// as `(line, first, second)` with both values trimmed.
fn read_two_columns(path: &Path, header: [&str; 2]) -> Result<Vec<(usize, String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let found: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}:1: reading the header", path.display()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if found != header {
        bail!("{}:1: expected the header `{}`, found `{}`", path.display(), header.join(","), found.join(","));
    }
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}:{line}: reading the row", path.display()))?;
        let cell = |n: usize| rec.get(n).unwrap_or("").trim().to_string();
        rows.push((line, cell(0), cell(1)));
    }
    Ok(rows)
}

/// Read a call graph: a CSV with the header `caller,callee`.
pub fn read_graph(path: &Path) -> Result<CallGraph> {
    let mut g = CallGraph::default();
    for (line, a, b) in read_two_columns(path, ["caller", "callee"])? {
        if a.is_empty() || b.is_empty() {
            bail!("{}:{line}: empty caller or callee", path.display());
        }
        g.add(&a, &b);
    }
    Ok(g)
}

/// Read metric kinds: a CSV with the header `pattern,kind`; `*` in a pattern matches any run
/// of characters; kinds are `resource`, `latency`, `errors`, `traffic`, `saturation`,
/// `availability`, `restarts`.
pub fn read_metric_kinds(path: &Path) -> Result<MetricKinds> {
    let mut kinds = MetricKinds::default();
    for (line, p, k) in read_two_columns(path, ["pattern", "kind"])? {
        let kind = MetricClass::parse(&k).ok_or_else(|| {
            anyhow!(
                "{}:{line}: kind `{k}`: expected resource, latency, errors, traffic, saturation, availability or restarts",
                path.display()
            )
        })?;
        if p.is_empty() {
            bail!("{}:{line}: empty pattern", path.display());
        }
        kinds.patterns.push((p, kind));
    }
    Ok(kinds)
}

#[derive(Serialize)]
struct JsonService<'a> {
    service: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    /// Services with abnormal evidence, most probable first (the key a caller needs).
    ranking: Vec<JsonService<'a>>,
    /// False when no candidate is credibly abnormal or the symptom is not abnormal.
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_found_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    symptom: Option<&'a str>,
    /// Per service: its score, strongest deviation, whether it is on a call path from the
    /// symptom, its abnormal series and the reasons.
    services: &'a [ServiceScore],
    /// The candidates behind it, with their reasons and evidence ids.
    candidates: &'a [Candidate],
    /// The anomalies found in the series (and the graph as topology).
    evidence: &'a [warden_detectors::rca::Evidence],
    warnings: &'a [String],
}

/// Everything `warden rca` can be given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RcaArgs {
    /// The recorded metrics.
    #[arg(long, value_name = "FILE.csv")]
    pub metrics: PathBuf,
    /// Unix seconds: when the incident started (approximately).
    #[arg(long)]
    pub start: i64,
    /// Print `{"ranking":[{"service":..,"score":..}, ...], "found":.., ...}` instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The service whose problem is being explained.
    #[arg(long)]
    pub symptom: Option<String>,
    /// Which of the symptom's metrics show the problem (`*` matches anything).
    #[arg(long)]
    pub symptom_metric: Option<String>,
    /// The call graph: a CSV with the header `caller,callee`.
    #[arg(long, value_name = "FILE.csv")]
    pub graph: Option<PathBuf>,
    /// A separate normal recording (any time range), in the layout of --metrics.
    #[arg(long, value_name = "FILE.csv")]
    pub normal: Option<PathBuf>,
    /// Wide layout: columns are `<service><SEP><metric>`, split at the first SEP.
    #[arg(long, value_name = "SEP")]
    pub separator: Option<String>,
    /// Wide layout: a regular expression with the named groups `service` and `metric`.
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,
    /// Metric kinds: a CSV with the header `pattern,kind`.
    #[arg(long, value_name = "FILE.csv")]
    pub metric_kinds: Option<PathBuf>,
}

/// `warden rca --metrics FILE --start T`: rank the services of `metrics`; warnings go to stderr.
pub fn run(metrics: &Path, start: i64, json: bool, out: &mut dyn Write) -> Result<()> {
    let args = RcaArgs { metrics: metrics.to_path_buf(), start, json, ..Default::default() };
    run_args(&args, out, &mut std::io::stderr())
}

/// [`run`] with the warnings written to `err`.
pub fn run_to(metrics: &Path, start: i64, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let args = RcaArgs { metrics: metrics.to_path_buf(), start, json, ..Default::default() };
    run_args(&args, out, err)
}

/// `warden rca` with all its inputs.
pub fn run_args(args: &RcaArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let names = match (&args.separator, &args.pattern) {
        (Some(_), Some(_)) => bail!("give --separator or --pattern, not both"),
        (Some(sep), None) if sep.is_empty() => bail!("--separator: empty"),
        (Some(sep), None) => ColumnNames::Separator(sep.clone()),
        (None, Some(p)) => {
            let re = regex::Regex::new(p).map_err(|e| anyhow!("--pattern: {e}"))?;
            let groups: Vec<&str> = re.capture_names().flatten().collect();
            if !(groups.contains(&"service") && groups.contains(&"metric")) {
                bail!("--pattern: needs the named groups `(?P<service>...)` and `(?P<metric>...)`");
            }
            ColumnNames::Pattern(re)
        }
        (None, None) => ColumnNames::FirstUnderscore,
    };
    let rec = read_recording(&args.metrics, &names)?;
    let times = rec.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
        bail!("{}: no rows", args.metrics.display());
    };
    let normal = match &args.normal {
        Some(p) => Some(read_recording(p, &names)?),
        None => None,
    };
    let data_before = normal.is_some() || args.start > first;
    if !data_before || args.start > last {
        bail!(
            "{}: --start {} is outside the recording ({first} to {last}); the ranking needs data after it, and before it unless --normal is given",
            args.metrics.display(),
            args.start
        );
    }
    let graph = args.graph.as_deref().map(read_graph).transpose()?;
    let kinds = args.metric_kinds.as_deref().map(read_metric_kinds).transpose()?;
    let mut warnings = rec.warnings.clone();
    if let Some(n) = &normal {
        warnings.extend(n.warnings.iter().filter(|w| !w.contains("no --separator")).cloned());
    }
    if let (Some(sym), Some(g)) = (&args.symptom, &graph) {
        if !g.services().contains(sym.as_str()) {
            warnings.push(format!("the symptom `{sym}` is not in the graph; the graph only guides the victim rule"));
        }
    }
    let result = rank_recording(
        &RecordingInput {
            series: &rec.series,
            normal: normal.as_ref().map(|n| n.series.as_slice()),
            start: args.start,
            symptom: args.symptom.clone(),
            symptom_metric: args.symptom_metric.clone(),
            graph: graph.as_ref(),
            kinds: kinds.as_ref(),
            evidence: Vec::new(),
        },
        &RecordingParams::default(),
    );
    warnings.extend(result.warnings.iter().cloned());
    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    if args.json {
        let body = JsonOutput {
            ranking: result
                .services
                .iter()
                .map(|s| JsonService { service: &s.service, score: round4(s.score) })
                .collect(),
            found: result.found,
            not_found_reason: result.not_found_reason.as_deref(),
            symptom: args.symptom.as_deref(),
            services: &result.services,
            candidates: &result.ranking.candidates,
            evidence: &result.evidence,
            warnings: &warnings,
        };
        writeln!(out, "{}", serde_json::to_string(&body)?)?;
        return Ok(());
    }
    write_human(&result, out)
}

fn write_human(result: &RecordingRanking, out: &mut dyn Write) -> Result<()> {
    if let Some(why) = &result.not_found_reason {
        writeln!(out, "no root cause found: {why}")?;
    }
    let width = result.services.iter().map(|s| s.service.len()).max().unwrap_or(7).max(7);
    writeln!(out, "{:>4}  {:<width$}  {:>5}  top evidence", "rank", "service", "score")?;
    for (i, s) in result.services.iter().enumerate() {
        let mut parts: Vec<String> = s.reasons.iter().take(3).cloned().collect();
        if let Some(f) = s.findings.first() {
            parts.push(format!("[{} {} z={:.1}]", f.evidence, f.metric, f.z));
        }
        writeln!(out, "{:>4}  {:<width$}  {:>5.3}  {}", i + 1, s.service, s.score, parts.join("; "))?;
    }
    Ok(())
}

/// One scenario of the suite, as read from disk.
#[derive(Debug, Clone)]
pub struct SuiteScenario {
    /// Directory name, e.g. `01-cpu-carts`.
    pub name: String,
    pub spec: ScenarioSpec,
    pub table: Table,
}

/// Read every `*/scenario.yaml` + `*/metrics.csv` under `dir`, sorted by directory name.
pub fn load_suite(dir: &Path) -> Result<Vec<SuiteScenario>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.yaml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("{}: no scenarios (directories with a scenario.yaml)", dir.display());
    }
    dirs.into_iter()
        .map(|d| {
            let yaml = d.join("scenario.yaml");
            let text = std::fs::read_to_string(&yaml).with_context(|| format!("reading {}", yaml.display()))?;
            let spec: ScenarioSpec =
                serde_yaml::from_str(&text).with_context(|| format!("parsing {}", yaml.display()))?;
            let table = read_table(&d.join("metrics.csv"))?;
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(SuiteScenario { name, spec, table })
        })
        .collect()
}

/// Rank every scenario in both modes and score the suite.
pub fn evaluate_suite(scenarios: &[SuiteScenario]) -> Result<SuiteReport> {
    let params = SeriesParams::default();
    let mut by_mode: BTreeMap<Mode, Vec<Outcome>> = BTreeMap::new();
    for s in scenarios {
        for mode in Mode::ALL {
            let r = rank_scenario(&s.spec, &s.table.times, &s.table.columns, mode, &params)
                .map_err(|e| anyhow!("{}: {e}", s.name))?;
            by_mode.entry(mode).or_default().push(Outcome {
                scenario: s.name.clone(),
                fault: s.spec.fault,
                root_cause: s.spec.root_cause.clone(),
                ranked: r.services.into_iter().map(|(n, _)| n).collect(),
            });
        }
    }
    let get = |m: Mode| score(by_mode.get(&m).map(Vec::as_slice).unwrap_or(&[]));
    Ok(SuiteReport { metrics_only: get(Mode::MetricsOnly), with_evidence: get(Mode::WithEvidence) })
}

/// `warden bench rca --suite DIR`: top-1 / top-3 of both modes, overall and per fault type.
pub fn bench(suite_dir: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let scenarios = load_suite(suite_dir)?;
    let report = evaluate_suite(&scenarios)?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(out, "RCA scenario suite {}: {} scenarios", suite_dir.display(), scenarios.len())?;
    writeln!(out, "{:<14} {:>9} {:>6} {:>6} {:>6} {:>6}", "mode", "scenarios", "AC@1", "AC@3", "AC@5", "Avg@5")?;
    let modes: [(&str, &SuiteScore); 2] =
        [(Mode::MetricsOnly.as_str(), &report.metrics_only), (Mode::WithEvidence.as_str(), &report.with_evidence)];
    for (name, s) in modes {
        let o = &s.overall;
        writeln!(out, "{name:<14} {:>9} {:>6.3} {:>6.3} {:>6.3} {:>6.3}", o.scenarios, o.top1, o.top3, o.top5, o.avg5)?;
    }
    writeln!(out)?;
    writeln!(out, "{:<9} {:>9}  {:>13}  {:>13}", "fault", "scenarios", "metrics AC@1/3", "evidence AC@1/3")?;
    for f in &report.metrics_only.per_fault {
        let w =
            report.with_evidence.per_fault.iter().find(|x| x.fault == f.fault).map(|x| x.accuracy).unwrap_or_default();
        writeln!(
            out,
            "{:<9} {:>9}  {:>6.3}/{:<6.3}  {:>6.3}/{:<6.3}",
            f.fault.as_str(),
            f.accuracy.scenarios,
            f.accuracy.top1,
            f.accuracy.top3,
            w.top1,
            w.top3
        )?;
    }
    for (name, s) in modes {
        let misses: Vec<String> = s
            .scenarios
            .iter()
            .filter(|r| r.rank != Some(1))
            .map(|r| {
                let rank = r.rank.map(|k| format!("#{k}")).unwrap_or_else(|| "unranked".into());
                format!(
                    "{} ({} {rank}; first: {})",
                    r.scenario,
                    r.root_cause,
                    r.top.first().map(String::as_str).unwrap_or("-")
                )
            })
            .collect();
        if !misses.is_empty() {
            writeln!(out, "\n{name} misses: {}", misses.join(", "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    fn table_text(rows: usize, jump_at: usize) -> String {
        let mut s = String::from("time,carts_cpu,orders_latency-50,weird\n");
        for i in 0..rows {
            let wobble = ((i * 37) % 11) as f64 / 100.0;
            let cpu = if i >= jump_at { 2.0 + wobble } else { 1.0 + wobble };
            let lat = if i % 7 == 0 { String::new() } else { format!("{}", 20.0 + wobble * 3.0) };
            s.push_str(&format!("{},{cpu},{lat},1\n", 1_700_000_000 + 15 * i as i64));
        }
        s
    }

    #[test]
    fn json_ranking_lists_abnormal_services_most_probable_first() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "m.csv", &table_text(80, 50));
        let mut out = Vec::new();
        let mut err = Vec::new();
        run_to(&p, 1_700_000_000 + 15 * 50, true, &mut out, &mut err).unwrap_or_else(|e| panic!("{e:#}"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
        let ranking = v["ranking"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = ranking.iter().filter_map(|r| r["service"].as_str()).collect();
        // `orders` did not move: it has no abnormal evidence and is not ranked.
        assert_eq!(names, ["carts"]);
        assert_eq!(v["found"], serde_json::Value::Bool(true));
        assert!(String::from_utf8_lossy(&err).contains("first `_`"));
        assert!(ranking[0]["score"].as_f64().unwrap_or(0.0) > 0.0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("{\"ranking\":"), "{text}");
        assert!(String::from_utf8_lossy(&err).contains("`weird`"));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut text = table_text(20, 10);
        text.push_str("1700001000,abc,1,1\n");
        let p = write(dir.path(), "bad.csv", &text);
        let e = read_table(&p).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.ends_with("bad.csv:22: column `carts_cpu`: `abc` is not a number"), "{e}");
        let p = write(dir.path(), "notime.csv", "t,a_b\n1,2\n");
        let e = read_table(&p).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("notime.csv:1: no `time` column"), "{e}");
        let p = write(dir.path(), "ok.csv", &table_text(20, 10));
        let mut out = Vec::new();
        let e = run_to(&p, 1, false, &mut out, &mut Vec::new()).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("outside the recording"), "{e}");
    }

    #[test]
    fn human_output_is_a_table() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "m.csv", &table_text(80, 50));
        let mut out = Vec::new();
        run_to(&p, 1_700_000_000 + 15 * 50, false, &mut out, &mut Vec::new()).unwrap_or_else(|e| panic!("{e:#}"));
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("rank  service"), "{text}");
        assert!(lines[1].contains("carts") && lines[1].contains("cpu"), "{text}");
    }

    #[test]
    fn the_recorded_suite_is_scored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rca/scenarios");
        let mut out = Vec::new();
        bench(&dir, true, &mut out).unwrap_or_else(|e| panic!("{e:#}"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(v["metrics_only"]["overall"]["scenarios"].as_u64().unwrap_or(0) >= 24);
        assert!(v["with_evidence"]["overall"]["top3"].as_f64().unwrap_or(0.0) >= 0.9);
        let mut out = Vec::new();
        bench(&dir, false, &mut out).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(String::from_utf8_lossy(&out).contains("metrics-only"));
    }

    fn args(metrics: PathBuf, start: i64) -> RcaArgs {
        RcaArgs { metrics, start, json: true, ..Default::default() }
    }

    fn json_of(a: &RcaArgs) -> (serde_json::Value, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        run_args(a, &mut out, &mut err).unwrap_or_else(|e| panic!("{e:#}"));
        (serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}")), String::from_utf8_lossy(&err).into_owned())
    }

    /// `time,service,metric,value` rows: `svc` values per minute, `jump` added from `at` on.
    fn long_text(rows: usize, at: usize, jump: f64) -> String {
        let mut s = String::from("time,service,metric,value\n");
        for i in 0..rows {
            let w = ((i * 37) % 11) as f64 / 100.0;
            let v = if i >= at { 1.0 + jump + w } else { 1.0 + w };
            s.push_str(&format!("{},kube_state_metrics,cpu,{v}\n", 60 * i));
            s.push_str(&format!("{},web,latency,{}\n", 60 * i, 1.0 + w + if i >= at { jump } else { 0.0 }));
        }
        s
    }

    #[test]
    fn long_format_keeps_underscored_service_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "long.csv", &long_text(60, 40, 2.0));
        let (v, err) = json_of(&args(p, 60 * 40));
        assert_eq!(v["found"], serde_json::Value::Bool(true), "{v}");
        let names: Vec<&str> =
            v["ranking"].as_array().into_iter().flatten().filter_map(|r| r["service"].as_str()).collect();
        assert!(names.contains(&"kube_state_metrics"), "{names:?}");
        assert!(!err.contains("first `_`"), "{err}");
        assert!(v["services"][0]["findings"][0]["z"].as_f64().unwrap_or(0.0) > 3.0, "{v}");
    }

    #[test]
    fn wide_columns_split_by_separator_or_pattern() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut text = String::from("time,kube_state_metrics.cpu,node_exporter.cpu\n");
        for i in 0..60 {
            let w = ((i * 37) % 11) as f64 / 100.0;
            text.push_str(&format!("{},{},{}\n", 60 * i, 1.0 + w + if i >= 40 { 3.0 } else { 0.0 }, 1.0 + w));
        }
        let p = write(dir.path(), "wide.csv", &text);
        let mut a = args(p.clone(), 60 * 40);
        a.separator = Some(".".into());
        let (v, _) = json_of(&a);
        assert_eq!(v["ranking"][0]["service"], "kube_state_metrics", "{v}");
        let mut a = args(p.clone(), 60 * 40);
        a.pattern = Some(r"^(?P<service>.+)\.(?P<metric>[a-z]+)$".into());
        let (v, _) = json_of(&a);
        assert_eq!(v["ranking"][0]["service"], "kube_state_metrics", "{v}");
        // Without either, the old first-`_` split is used and reported.
        let (v, err) = json_of(&args(p.clone(), 60 * 40));
        assert_eq!(v["ranking"][0]["service"], "kube", "{v}");
        assert!(err.contains("first `_`"), "{err}");
        let mut a = args(p, 60 * 40);
        a.pattern = Some("(?P<service>.+)".into());
        let e = run_args(&a, &mut Vec::new(), &mut Vec::new()).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("named groups"), "{e}");
    }

    #[test]
    fn graph_and_metric_kinds_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = read_graph(&write(dir.path(), "g.csv", "caller,callee\nweb,api\napi,db\n"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(g.downstream("web").len(), 3);
        let e = read_graph(&write(dir.path(), "g2.csv", "from,to\na,b\n"))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("g2.csv:1: expected the header `caller,callee`"), "{e}");
        let k = read_metric_kinds(&write(
            dir.path(),
            "k.csv",
            "pattern,kind\nPodWorkload*,traffic\n*SuccessRate*,availability\n*,saturation\n",
        ))
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(k.lookup("PodWorkload(Ops)"), Some(MetricClass::Traffic));
        assert_eq!(k.lookup("PodSuccessRate(%)"), Some(MetricClass::Availability));
        assert_eq!(k.lookup("disk"), Some(MetricClass::Resource));
        let e = read_metric_kinds(&write(dir.path(), "k2.csv", "pattern,kind\ncpu,hot\n"))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("k2.csv:2: kind `hot`"), "{e}");
        let e = read_long(&write(dir.path(), "l.csv", "time,service,metric,value\n60,a,cpu,x\n"))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("l.csv:2: column `value`: `x` is not a number"), "{e}");
    }

    #[test]
    fn a_recording_without_a_fault_finds_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "quiet.csv", &long_text(60, 40, 0.0));
        let normal = write(dir.path(), "normal.csv", &long_text(60, 100, 0.0));
        let mut a = args(p, 60 * 40);
        a.normal = Some(normal);
        a.symptom = Some("web".into());
        let (v, _) = json_of(&a);
        assert_eq!(v["found"], serde_json::Value::Bool(false), "{v}");
        assert!(v["ranking"].as_array().is_some_and(|r| r.is_empty()), "{v}");
        assert!(v["not_found_reason"].as_str().is_some(), "{v}");
    }
}
