//! Readers for the public root-cause data sets that `warden bench rca` scores: the PetShop
//! dataset (Hardt et al., CLeaR 2024) and Nezha's Online Boutique recordings (Yu et al.,
//! ESEC/FSE 2023), in their upstream layouts. Every reader error names the file and line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use warden_detectors::rca::{CallGraph, Series};

// ---------------------------------------------------------------------------
// PetShop
// ---------------------------------------------------------------------------

/// A PetShop metrics file: one series per (node, `metric-statistic`).
#[derive(Debug, Clone, Default)]
pub struct PetshopMetrics {
    pub times: Vec<i64>,
    pub series: Vec<Series>,
}

/// One issue of a scenario.
#[derive(Debug, Clone)]
pub struct PetshopIssue {
    /// `low_traffic/test/issue_3`.
    pub id: String,
    pub scenario: String,
    /// `train` or `test`.
    pub split: String,
    pub target_node: String,
    /// `latency` or `availability`.
    pub target_metric: String,
    pub target_agg: String,
    pub timestamp: i64,
    pub root_cause: String,
    pub metrics: PetshopMetrics,
}

/// A scenario: graph, normal recording (when there is one) and issues.
#[derive(Debug, Clone)]
pub struct PetshopScenario {
    pub name: String,
    pub graph: CallGraph,
    pub normal: Option<PetshopMetrics>,
    pub issues: Vec<PetshopIssue>,
}

/// `graph.csv`: a square adjacency matrix, row A column B = 1 when A calls B.
pub fn read_adjacency(path: &Path) -> Result<CallGraph> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut rows = r.records();
    let header = rows.next().ok_or_else(|| anyhow!("{}: empty", path.display()))?;
    let header = header.with_context(|| format!("{}:1", path.display()))?;
    let names: Vec<String> = header.iter().skip(1).map(|s| s.to_string()).collect();
    let mut g = CallGraph::default();
    for (i, rec) in rows.enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}:{line}", path.display()))?;
        let caller = rec.get(0).unwrap_or("").to_string();
        for (j, cell) in rec.iter().skip(1).enumerate() {
            let v: f64 =
                cell.trim().parse().map_err(|_| anyhow!("{}:{line}: `{cell}` is not a number", path.display()))?;
            if v != 0.0 {
                let callee = names.get(j).ok_or_else(|| anyhow!("{}:{line}: more cells than names", path.display()))?;
                g.add(&caller, callee);
            }
        }
    }
    Ok(g)
}

/// A PetShop `metrics.csv`: three header lines (node, metric, statistic), an index-name line,
/// then rows of unix seconds and values.
pub fn read_petshop_metrics(path: &Path) -> Result<PetshopMetrics> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut recs = Vec::new();
    for (i, rec) in r.records().enumerate() {
        recs.push(rec.with_context(|| format!("{}:{}", path.display(), i + 1))?);
    }
    if recs.len() < 4 {
        bail!("{}: fewer than 4 header lines", path.display());
    }
    let cols = recs[0].len();
    let mut out = PetshopMetrics::default();
    let mut series: Vec<Series> = (1..cols)
        .map(|c| Series {
            service: recs[0].get(c).unwrap_or("").to_string(),
            metric: format!("{}-{}", recs[1].get(c).unwrap_or(""), recs[2].get(c).unwrap_or("")),
            points: Vec::new(),
        })
        .collect();
    for (i, rec) in recs.iter().enumerate().skip(4) {
        let line = i + 1;
        let t: f64 = rec
            .get(0)
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| anyhow!("{}:{line}: the time is not a number", path.display()))?;
        let t = t.round() as i64;
        out.times.push(t);
        for (c, s) in series.iter_mut().enumerate() {
            let cell = rec.get(c + 1).unwrap_or("").trim();
            let v = if cell.is_empty() {
                f64::NAN
            } else {
                cell.parse().map_err(|_| anyhow!("{}:{line}: `{cell}` is not a number", path.display()))?
            };
            s.points.push((t, v));
        }
    }
    series.retain(|s| !s.service.is_empty());
    out.series = series;
    Ok(out)
}

/// Read a scenario directory: `graph.csv`, `noissue/metrics.csv` (optional) and the issues of
/// `train/` and `test/`.
pub fn read_petshop_scenario(dir: &Path) -> Result<PetshopScenario> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let graph = read_adjacency(&dir.join("graph.csv"))?;
    let normal_path = dir.join("noissue/metrics.csv");
    let normal = if normal_path.is_file() { Some(read_petshop_metrics(&normal_path)?) } else { None };
    let mut issues = Vec::new();
    for split in ["train", "test"] {
        let sd = dir.join(split);
        if !sd.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&sd)
            .with_context(|| format!("reading {}", sd.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("target.json").is_file())
            .collect();
        dirs.sort_by_key(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit('_').next())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        for d in dirs {
            let tp = d.join("target.json");
            let text = std::fs::read_to_string(&tp).with_context(|| format!("reading {}", tp.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", tp.display()))?;
            let s = |p: &str| -> Result<String> {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("{}: no `{p}`", tp.display()))
            };
            let timestamp = v
                .pointer("/target/timestamp")
                .and_then(|x| x.as_f64())
                .ok_or_else(|| anyhow!("{}: no `/target/timestamp`", tp.display()))?
                .round() as i64;
            let issue = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            issues.push(PetshopIssue {
                id: format!("{name}/{split}/{issue}"),
                scenario: name.clone(),
                split: split.to_string(),
                target_node: s("/target/node")?,
                target_metric: s("/target/metric")?,
                target_agg: s("/target/agg")?,
                timestamp,
                root_cause: s("/root_cause/node")?,
                metrics: read_petshop_metrics(&d.join("metrics.csv"))?,
            });
        }
    }
    Ok(PetshopScenario { name, graph, normal, issues })
}

/// Every scenario directory (one with a `graph.csv`) under `dir`, sorted by name.
pub fn read_petshop(dir: &Path) -> Result<Vec<PetshopScenario>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("graph.csv").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("{}: no PetShop scenarios (directories with a graph.csv)", dir.display());
    }
    dirs.iter().map(|d| read_petshop_scenario(d)).collect()
}

// ---------------------------------------------------------------------------
// Nezha (Online Boutique)
// ---------------------------------------------------------------------------

/// One injected fault.
#[derive(Debug, Clone)]
pub struct NezhaCase {
    /// `<date> <HH:MM:SS>`.
    pub id: String,
    pub date: String,
    pub t0: i64,
    pub root_cause: String,
    pub fault: String,
}

/// One injection day: every series of the day and its call graph.
#[derive(Debug, Clone)]
pub struct NezhaDay {
    pub date: String,
    pub series: Vec<Series>,
    pub graph: CallGraph,
    pub services: Vec<String>,
    pub cases: Vec<NezhaCase>,
}

/// The name of the user-facing symptom (`front_service.csv`): an entry that calls `frontend`.
pub const NEZHA_SYMPTOM: &str = "front_service";

fn gunzip(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut text).with_context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

fn parse_utc(s: &str) -> Option<i64> {
    let head = s.get(..19)?;
    chrono::NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc().timestamp())
}

/// A CSV's header and rows, each row with its 1-based line.
type CsvRows = (Vec<String>, Vec<(usize, csv::StringRecord)>);

/// Read a CSV with a header.
fn read_csv_text(text: &str, path: &Path) -> Result<CsvRows> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> =
        r.headers().with_context(|| format!("{}:1", path.display()))?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        rows.push((i + 2, rec.with_context(|| format!("{}:{}", path.display(), i + 2))?));
    }
    Ok((header, rows))
}

fn cell_value(cell: &str) -> f64 {
    let c = cell.trim();
    if c.is_empty() {
        f64::NAN
    } else {
        c.parse().unwrap_or(f64::NAN)
    }
}

/// The series of one file whose first column is a time string: `service` for every column
/// but the skipped ones, or, with `edge`, the callee of `caller_callee` column names.
fn time_columns(path: &Path, service: Option<&str>, skip: &[&str], suffix: &str) -> Result<Vec<Series>> {
    let text = gunzip(path)?;
    let (header, rows) = read_csv_text(&text, path)?;
    let tcol = header
        .iter()
        .position(|h| h.eq_ignore_ascii_case("time"))
        .ok_or_else(|| anyhow!("{}:1: no `Time` column", path.display()))?;
    let mut out: Vec<Series> = Vec::new();
    let mut idx = Vec::new();
    for (c, h) in header.iter().enumerate() {
        if c == tcol || skip.iter().any(|s| s.eq_ignore_ascii_case(h)) {
            continue;
        }
        let (svc, metric) = match service {
            Some(s) => (s.to_string(), h.clone()),
            None => match h.split_once('_') {
                Some((caller, callee)) => (callee.to_string(), format!("edge-latency-from-{caller}{suffix}")),
                None => continue,
            },
        };
        idx.push(c);
        out.push(Series { service: svc, metric, points: Vec::new() });
    }
    for (line, rec) in rows {
        let t = parse_utc(rec.get(tcol).unwrap_or(""))
            .ok_or_else(|| anyhow!("{}:{line}: the time is not `YYYY-MM-DD HH:MM:SS`", path.display()))?;
        for (k, c) in idx.iter().enumerate() {
            out[k].points.push((t, cell_value(rec.get(*c).unwrap_or(""))));
        }
    }
    Ok(out)
}

/// Read one day folder (`rca_data/<date>`).
pub fn read_nezha_day(dir: &Path) -> Result<NezhaDay> {
    let date = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mdir = dir.join("metric");
    let mut series = Vec::new();
    let mut services = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&mdir)
        .with_context(|| format!("reading {}", mdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(pod) = name.strip_suffix("_metric.csv.gz") {
            let parts: Vec<&str> = pod.split('-').collect();
            let service = parts[..parts.len().saturating_sub(2)].join("-");
            services.push(service.clone());
            let skip =
                ["TimeStamp", "PodName", "NodeCpuUsageRate(%)", "NodeMemoryUsageRate(%)", "NodeNetworkReceiveBytes"];
            series.extend(time_columns(f, Some(&service), &skip, "")?);
        }
    }
    series.extend(time_columns(
        &mdir.join("front_service.csv.gz"),
        Some(NEZHA_SYMPTOM),
        &["TimeStamp", "ServiceName"],
        "",
    )?);
    for (file, suffix) in [("source_50.csv.gz", "-src"), ("destination_50.csv.gz", "-dst")] {
        let p = mdir.join(file);
        if p.is_file() {
            series.extend(time_columns(&p, None, &["timestamp"], suffix)?);
        }
    }
    let dep = mdir.join("dependency.csv");
    let text = std::fs::read_to_string(&dep).with_context(|| format!("reading {}", dep.display()))?;
    let (_, rows) = read_csv_text(&text, &dep)?;
    let mut graph = CallGraph::default();
    for (_, rec) in rows {
        let (a, b) = (rec.get(0).unwrap_or(""), rec.get(1).unwrap_or(""));
        if services.iter().any(|s| s == a) && services.iter().any(|s| s == b) {
            graph.add(a, b);
        }
    }
    graph.add(NEZHA_SYMPTOM, "frontend");

    let fl = dir.join(format!("{date}-fault_list.json"));
    let text = std::fs::read_to_string(&fl).with_context(|| format!("reading {}", fl.display()))?;
    let v: BTreeMap<String, Vec<serde_json::Value>> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", fl.display()))?;
    let mut cases = Vec::new();
    for list in v.values() {
        for f in list {
            let s = |k: &str| f.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let time = s("inject_time");
            let t0 = parse_utc(&time).ok_or_else(|| anyhow!("{}: bad inject_time `{time}`", fl.display()))?;
            let pod = s("inject_pod");
            let parts: Vec<&str> = pod.split('-').collect();
            let root = parts[..parts.len().saturating_sub(2)].join("-");
            cases.push(NezhaCase {
                id: time.clone(),
                date: date.clone(),
                t0,
                root_cause: root,
                fault: s("inject_type"),
            });
        }
    }
    cases.sort_by_key(|c| c.t0);
    Ok(NezhaDay { date, series, graph, services, cases })
}

/// Read `DIR/rca_data/<date>/` for every date.
pub fn read_nezha(dir: &Path) -> Result<Vec<NezhaDay>> {
    let base = dir.join("rca_data");
    let mut days: Vec<PathBuf> = std::fs::read_dir(&base)
        .with_context(|| format!("reading {}", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metric").is_dir())
        .collect();
    days.sort();
    if days.is_empty() {
        bail!("{}: no day folders with a metric/ folder", base.display());
    }
    days.iter().map(|d| read_nezha_day(d)).collect()
}

/// The points of `series` with time in `[from, to)`.
pub fn slice(series: &[Series], from: i64, to: i64) -> Vec<Series> {
    series
        .iter()
        .map(|s| Series {
            service: s.service.clone(),
            metric: s.metric.clone(),
            points: s.points.iter().copied().filter(|(t, _)| *t >= from && *t < to).collect(),
        })
        .collect()
}
