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
use warden_detectors::rca::series::{rank_table, SeriesParams, TableRanking};
use warden_detectors::rca::suite::{rank_scenario, score, Mode, Outcome, ScenarioSpec, SuiteReport, SuiteScore};
use warden_detectors::rca::{Candidate, Payload};

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

#[derive(Serialize)]
struct JsonService<'a> {
    service: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    /// All services, most probable first (the key a caller needs).
    ranking: Vec<JsonService<'a>>,
    /// The candidates behind it, with their reasons and evidence ids.
    candidates: &'a [Candidate],
    /// The anomalies found in the columns.
    evidence: &'a [warden_detectors::rca::Evidence],
    warnings: &'a [String],
}

/// `warden rca --metrics FILE --start T`: rank the services of `metrics`; warnings go to stderr.
pub fn run(metrics: &Path, start: i64, json: bool, out: &mut dyn Write) -> Result<()> {
    run_to(metrics, start, json, out, &mut std::io::stderr())
}

/// [`run`] with the warnings written to `err`.
pub fn run_to(metrics: &Path, start: i64, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let table = read_table(metrics)?;
    let (Some(first), Some(last)) = (table.times.iter().min(), table.times.iter().max()) else {
        bail!("{}: no rows", metrics.display());
    };
    if start <= *first || start > *last {
        bail!(
            "{}: --start {start} is outside the recording ({first} to {last}); the ranking needs data before and after it",
            metrics.display()
        );
    }
    let result = rank_table(&table.times, &table.columns, start, &SeriesParams::default());
    for w in &result.warnings {
        writeln!(err, "warning: {}: {w}", metrics.display())?;
    }
    if json {
        let body = JsonOutput {
            ranking: result.services.iter().map(|(s, v)| JsonService { service: s, score: round4(*v) }).collect(),
            candidates: &result.ranking.candidates,
            evidence: &result.evidence,
            warnings: &result.warnings,
        };
        writeln!(out, "{}", serde_json::to_string(&body)?)?;
        return Ok(());
    }
    write_human(&result, out)
}

/// The best candidate of each service name.
fn best_candidates(result: &TableRanking) -> BTreeMap<&str, &Candidate> {
    let mut best: BTreeMap<&str, &Candidate> = BTreeMap::new();
    for c in &result.ranking.candidates {
        best.entry(c.subject.name.as_str()).or_insert(c);
    }
    best
}

fn write_human(result: &TableRanking, out: &mut dyn Write) -> Result<()> {
    let best = best_candidates(result);
    let width = result.services.iter().map(|(s, _)| s.len()).max().unwrap_or(7).max(7);
    writeln!(out, "{:>4}  {:<width$}  {:>5}  top evidence", "rank", "service", "score")?;
    for (i, (service, score)) in result.services.iter().enumerate() {
        let why = match best.get(service.as_str()) {
            Some(c) if *score > 0.0 => {
                let mut parts: Vec<String> = c.reasons.iter().take(3).cloned().collect();
                if let Some(w) = c.evidence.first().and_then(|id| result.evidence.iter().find(|e| &e.id == id)) {
                    if let Payload::Anomaly { watch, .. } = &w.payload {
                        parts.push(format!("[{} {watch}]", w.id));
                    }
                }
                parts.join("; ")
            }
            _ => "-".to_string(),
        };
        writeln!(out, "{:>4}  {:<width$}  {:>5.3}  {why}", i + 1, service, score)?;
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
    fn json_ranking_lists_all_services_most_probable_first() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "m.csv", &table_text(80, 50));
        let mut out = Vec::new();
        let mut err = Vec::new();
        run_to(&p, 1_700_000_000 + 15 * 50, true, &mut out, &mut err).unwrap_or_else(|e| panic!("{e:#}"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
        let ranking = v["ranking"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = ranking.iter().filter_map(|r| r["service"].as_str()).collect();
        assert_eq!(names, ["carts", "orders"]);
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
}
