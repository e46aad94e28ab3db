//! `warden bench anomaly`: delay-k segment F1, false-alarm events and (on NAB) the NAB score of
//! several detectors, side by side, on labelled series.
//!
//! Figures are only comparable when every detector sees the same data, in the same process,
//! scored by the same code, so this command runs all requested detectors on the same series.
//! Layouts, detected from the folder:
//!
//! * **NAB** (`data/`, `labels/combined_windows.json`): each file is one series. NAB labels
//!   windows around each anomaly; here a segment runs from the labelled point to the end of
//!   its window, and the part of the window before the label is not scored (NAB rewards such
//!   early detections, so they are neither hits nor false alarms).
//! * **SMD / ASD** (`<entity>_test.txt.gz`, `<entity>_train.txt.gz`, `<entity>_test_label.txt`):
//!   each metric column is streamed as its own univariate series, from a cold start through
//!   the training part (never scored: it is the history an agent would have) and then the
//!   test part; the entity's flags are the OR of its metrics' flags per row and its score the
//!   largest metric score. Rows are 1 minute apart for `machine-*` (SMD), 5 minutes for
//!   `omi-*` (ASD).
//! * **A folder of CSVs** with `timestamp,value,label` columns.
//!
//! Series with timestamps are put on a regular grid at their minimum interval (gaps: label 0,
//! flag 0). Scoring is [`warden_detectors::eval::anomaly`]: delay-k segment F1 over the
//! concatenation of all series, false-alarm events per series-week of anomaly-free time, and
//! the oracle best F1 of the scores, printed as a diagnostic only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use warden_detectors::eval::anomaly::{
    delay_counts, events_per_week, oracle_best_f1, regular_grid, Counts, SeriesOutcome,
};
use warden_detectors::eval::nab::Profile;
use warden_detectors::registry;

use crate::cli::detect::parse_timestamp;

/// One labelled entity: one or more metric columns on a common row axis.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Entity name (file stem).
    pub name: String,
    /// Seconds between grid points.
    pub interval_s: f64,
    /// Metric columns, one value per row.
    pub columns: Vec<Vec<f64>>,
    /// Timestamp of each row (ms; synthetic for files without time stamps).
    pub timestamps_ms: Vec<i64>,
    /// Grid position of each row.
    pub grid_pos: Vec<usize>,
    /// Label per grid point.
    pub labels: Vec<bool>,
    /// Whether a grid point is scored.
    pub scored: Vec<bool>,
}

/// A data set: its layout name and entities.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `nab`, `smd`, `asd` or `csv`.
    pub layout: &'static str,
    /// The entities, sorted by name.
    pub entities: Vec<Entity>,
}

/// A detector to run: a label, a registry name and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    /// As given on the command line (`auto`, `auto:q=0.0001`).
    pub label: String,
    /// Registry name.
    pub name: String,
    /// `k=v` parameters.
    pub params: Vec<(String, String)>,
}

/// Parse `name[:k=v[:k=v...]]`.
pub fn parse_spec(text: &str) -> Result<DetectorSpec> {
    let mut parts = text.trim().split(':');
    let name = parts.next().unwrap_or_default().trim().to_string();
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("detector `{text}`: `{p}` is not k=v"))?;
        params.push((k.trim().to_string(), v.trim().to_string()));
    }
    registry::build(&name, &params).map_err(|e| anyhow!("detector `{text}`: {e}"))?;
    Ok(DetectorSpec { label: text.trim().to_string(), name, params })
}

/// The figures of one detector on one data set.
#[derive(Debug, Clone)]
pub struct DetectorResult {
    /// The detector.
    pub spec: DetectorSpec,
    /// Delay-k counts over all series.
    pub counts: Counts,
    /// Anomaly-free time scored, seconds.
    pub normal_seconds: f64,
    /// Oracle best F1 (diagnostic).
    pub oracle_f1: f64,
    /// NAB standard-profile score, on NAB only.
    pub nab_standard: Option<f64>,
    /// Points per second of detection (all threads).
    pub points_per_s: f64,
}

fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::new(r)))
}

fn read_matrix(path: &Path) -> Result<Vec<Vec<f64>>> {
    let mut cols: Vec<Vec<f64>> = Vec::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: reading", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let vals: Vec<f64> = line
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| anyhow!("{}:{}: `{}` is not a number", path.display(), i + 1, v.trim()))
            })
            .collect::<Result<_>>()?;
        if cols.is_empty() {
            cols = vec![Vec::new(); vals.len()];
        }
        if vals.len() != cols.len() {
            bail!("{}:{}: {} values, expected {}", path.display(), i + 1, vals.len(), cols.len());
        }
        for (c, v) in cols.iter_mut().zip(vals) {
            c.push(v);
        }
    }
    Ok(cols)
}

fn read_labels(path: &Path) -> Result<Vec<bool>> {
    let mut out = Vec::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: reading", path.display(), i + 1))?;
        match line.trim() {
            "" => {}
            "0" | "0.0" => out.push(false),
            "1" | "1.0" => out.push(true),
            other => bail!("{}:{}: label `{other}` is not 0 or 1", path.display(), i + 1),
        }
    }
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn load_server_layout(dir: &Path) -> Result<Dataset> {
    let mut entities = Vec::new();
    let mut layout = "smd";
    for path in sorted_entries(dir)? {
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix("_test_label.txt"))
        else {
            continue;
        };
        let train = read_matrix(&dir.join(format!("{stem}_train.txt.gz")))?;
        let test = read_matrix(&dir.join(format!("{stem}_test.txt.gz")))?;
        let labels = read_labels(&path)?;
        let n_test = test.first().map_or(0, Vec::len);
        if labels.len() != n_test {
            bail!("{}: {} labels for {} test rows", path.display(), labels.len(), n_test);
        }
        if !train.is_empty() && train.len() != test.len() {
            bail!("{stem}: train has {} metrics, test {}", train.len(), test.len());
        }
        let interval_s = if stem.starts_with("omi-") {
            layout = "asd";
            300.0
        } else {
            60.0
        };
        let n_train = train.first().map_or(0, Vec::len);
        let columns: Vec<Vec<f64>> = if train.is_empty() {
            test
        } else {
            train
                .into_iter()
                .zip(test)
                .map(|(mut a, b)| {
                    a.extend(b);
                    a
                })
                .collect()
        };
        let n = n_train + n_test;
        let mut all_labels = vec![false; n_train];
        all_labels.extend(labels);
        let mut scored = vec![false; n_train];
        scored.extend(std::iter::repeat_n(true, n_test));
        entities.push(Entity {
            name: stem.to_string(),
            interval_s,
            columns,
            timestamps_ms: (0..n).map(|i| (i as f64 * interval_s * 1000.0) as i64).collect(),
            grid_pos: (0..n).collect(),
            labels: all_labels,
            scored,
        });
    }
    Ok(Dataset { layout, entities })
}

/// Put rows with timestamps on the grid; labels and scored marks per row are carried over.
fn gridded(name: String, ts: Vec<i64>, values: Vec<f64>, row_labels: &[bool], row_scored: &[bool]) -> Entity {
    let (grid_pos, len, interval) = regular_grid(&ts, 8).unwrap_or_else(|| ((0..ts.len()).collect(), ts.len(), 60_000));
    let mut labels = vec![false; len];
    let mut scored = vec![true; len];
    for (r, &g) in grid_pos.iter().enumerate() {
        labels[g] = row_labels.get(r).copied().unwrap_or(false);
        scored[g] = row_scored.get(r).copied().unwrap_or(true);
    }
    Entity {
        name,
        interval_s: interval as f64 / 1000.0,
        columns: vec![values],
        timestamps_ms: ts,
        grid_pos,
        labels,
        scored,
    }
}

fn load_nab(dir: &Path) -> Result<Dataset> {
    let corpus = crate::bench::nab::load_corpus(dir)?;
    let labels_path = dir.join("labels/combined_labels.json");
    let text = std::fs::read_to_string(&labels_path).with_context(|| format!("reading {}", labels_path.display()))?;
    let points: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", labels_path.display()))?;
    let mut entities = Vec::new();
    for s in &corpus.series {
        let n = s.values.len();
        let mut labels = vec![false; n];
        let mut scored = vec![true; n];
        let norm = |t: &str| t.trim().trim_end_matches(".000000").to_string();
        let idx = |t: &str| s.timestamps.iter().position(|x| norm(x) == norm(t));
        let label_rows: Vec<usize> =
            points.get(&s.name).map(|v| v.iter().filter_map(|t| idx(t)).collect()).unwrap_or_default();
        for (ws, we) in &s.windows {
            let (Some(a), Some(b)) = (idx(ws), idx(we)) else {
                bail!("{}: window {ws}..{we} not found in the file", s.name)
            };
            let start = label_rows.iter().copied().filter(|&l| l >= a && l <= b).min().unwrap_or(a);
            for s in scored.iter_mut().take(start).skip(a) {
                *s = false;
            }
            for l in labels.iter_mut().take(b + 1).skip(start) {
                *l = true;
            }
        }
        entities.push(gridded(s.name.clone(), s.timestamps_ms.clone(), s.values.clone(), &labels, &scored));
    }
    Ok(Dataset { layout: "nab", entities })
}

fn load_csv_folder(dir: &Path) -> Result<Dataset> {
    let mut entities = Vec::new();
    for path in sorted_entries(dir)? {
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let headers = reader.headers().with_context(|| format!("{}:1: reading the header", path.display()))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (Some(ti), Some(vi), Some(li)) = (col("timestamp"), col("value"), col("label")) else {
            bail!("{}:1: the header must name `timestamp`, `value` and `label` columns", path.display());
        };
        let (mut ts, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.with_context(|| format!("{}:{line}: reading the row", path.display()))?;
            ts.push(parse_timestamp(rec.get(ti).unwrap_or("")).map_err(|e| anyhow!("{}:{line}: {e}", path.display()))?);
            values.push(rec.get(vi).unwrap_or("").trim().parse::<f64>().unwrap_or(f64::NAN));
            labels.push(matches!(rec.get(li).unwrap_or("").trim(), "1" | "1.0" | "true"));
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("series").to_string();
        let scored = vec![true; labels.len()];
        entities.push(gridded(name, ts, values, &labels, &scored));
    }
    Ok(Dataset { layout: "csv", entities })
}

/// Read the data set under `dir`, detecting its layout.
pub fn load(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let ds = if dir.join("labels/combined_windows.json").is_file() && dir.join("data").is_dir() {
        load_nab(dir)?
    } else if sorted_entries(dir)?.iter().any(|p| p.to_string_lossy().ends_with("_test_label.txt")) {
        load_server_layout(dir)?
    } else {
        load_csv_folder(dir)?
    };
    if ds.entities.is_empty() {
        bail!("{}: no series found (expected NAB's layout, SMD/ASD's `<entity>_test_label.txt` files, or CSVs with timestamp,value,label)", dir.display());
    }
    Ok(ds)
}

/// Flags and scores of one column, on the entity's grid.
fn run_column(e: &Entity, col: usize, spec: &DetectorSpec) -> Result<(Vec<bool>, Vec<f32>)> {
    let mut d = registry::build(&spec.name, &spec.params).map_err(|err| anyhow!("{}: {err}", spec.label))?;
    let len = e.labels.len();
    let (mut flags, mut scores) = (vec![false; len], vec![0f32; len]);
    let values = e.columns.get(col).ok_or_else(|| anyhow!("{}: no column {col}", e.name))?;
    for (r, (&t, &v)) in e.timestamps_ms.iter().zip(values).enumerate() {
        let det = d.update(t, v);
        let g = e.grid_pos[r];
        flags[g] |= det.is_anomaly();
        scores[g] = scores[g].max(det.score as f32);
    }
    Ok((flags, scores))
}

/// Run `spec` over every column of every entity (spread over the cores) and score it.
pub fn evaluate(ds: &Dataset, spec: &DetectorSpec, k: usize) -> Result<(Vec<SeriesOutcome>, f64)> {
    let jobs: Vec<(usize, usize)> =
        ds.entities.iter().enumerate().flat_map(|(i, e)| (0..e.columns.len()).map(move |c| (i, c))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<SeriesOutcome> = ds
        .entities
        .iter()
        .map(|e| SeriesOutcome {
            name: e.name.clone(),
            flags: vec![false; e.labels.len()],
            scores: vec![0.0; e.labels.len()],
            labels: e.labels.clone(),
            scored: e.scored.clone(),
            interval_s: e.interval_s,
        })
        .collect();
    let start = Instant::now();
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(ei, c)) = jobs.get(j) else { break };
                        done.push((ei, run_column(&ds.entities[ei], c, spec)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    let seconds = start.elapsed().as_secs_f64();
    for worker in results {
        for (ei, res) in worker.map_err(|_| anyhow!("a detector thread panicked"))? {
            let (flags, scores) = res?;
            let o = &mut outcomes[ei];
            for (g, (f, s)) in flags.into_iter().zip(scores).enumerate() {
                o.flags[g] |= f;
                o.scores[g] = o.scores[g].max(f64::from(s));
            }
        }
    }
    let _ = k;
    let points: usize = ds.entities.iter().map(|e| e.columns.len() * e.timestamps_ms.len()).sum();
    Ok((outcomes, points as f64 / seconds.max(1e-9)))
}

/// Figures of `spec` on `ds` (and, on NAB, its standard-profile NAB score from `nab_dir`).
pub fn measure(ds: &Dataset, spec: &DetectorSpec, k: usize, nab_dir: Option<&Path>) -> Result<DetectorResult> {
    let (outcomes, points_per_s) = evaluate(ds, spec, k)?;
    let mut counts = Counts::default();
    let mut normal_seconds = 0.0;
    for o in &outcomes {
        let c = delay_counts(o, k);
        normal_seconds += c.normal_points as f64 * o.interval_s;
        counts.add(&c);
    }
    let (oracle_f1, _) = oracle_best_f1(&outcomes, k);
    let nab_standard = match nab_dir {
        Some(dir) => {
            let corpus = crate::bench::nab::load_corpus(dir)?;
            let files = crate::bench::nab::run_detector(&corpus, &spec.name, &spec.params)?;
            let scores = crate::bench::nab::score_at_optimum(&files, &corpus.profiles);
            scores.get(Profile::Standard).map(|r| r.score)
        }
        None => None,
    };
    Ok(DetectorResult { spec: spec.clone(), counts, normal_seconds, oracle_f1, nab_standard, points_per_s })
}

fn table(ds: &Dataset, dir: &Path, k: usize, results: &[DetectorResult]) -> String {
    let mut out = String::new();
    let rows: usize = ds.entities.iter().map(|e| e.timestamps_ms.len()).sum();
    let series: usize = ds.entities.iter().map(|e| e.columns.len()).sum();
    let _ = writeln!(
        out,
        "{} ({}): {} entities, {} univariate series, {} rows; delay-{k} segment F1 over the concatenation",
        dir.display(),
        ds.layout,
        ds.entities.len(),
        series,
        rows
    );
    let _ = writeln!(
        out,
        "{:<40} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>10} {:>11}",
        "detector", "F1", "prec", "recall", "segments", "FA events", "FA/week", "NAB std", "oracle F1*", "points/s"
    );
    for r in results {
        let c = &r.counts;
        let nab = r.nab_standard.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "{:<40} {:>7.3} {:>7.3} {:>7.3} {:>9} {:>9} {:>9.2} {:>8} {:>10.3} {:>11.0}",
            r.spec.label,
            c.f1(),
            c.precision(),
            c.recall(),
            format!("{}/{}", c.detected, c.segments),
            c.events,
            events_per_week(c.events, r.normal_seconds),
            nab,
            r.oracle_f1,
            r.points_per_s
        );
    }
    let _ = writeln!(out, "* oracle F1: best delay-{k} F1 over all thresholds of the score, chosen on the labels; a diagnostic, not a result");
    out
}

fn to_json(ds: &Dataset, dir: &Path, k: usize, results: &[DetectorResult]) -> serde_json::Value {
    json!({
        "data": dir.display().to_string(),
        "layout": ds.layout,
        "delay": k,
        "entities": ds.entities.len(),
        "detectors": results.iter().map(|r| json!({
            "detector": r.spec.label,
            "f1": r.counts.f1(),
            "precision": r.counts.precision(),
            "recall": r.counts.recall(),
            "segments": r.counts.segments,
            "detected_segments": r.counts.detected,
            "false_alarm_events": r.counts.events,
            "false_alarm_events_per_week": events_per_week(r.counts.events, r.normal_seconds),
            "nab_standard": r.nab_standard,
            "oracle_best_f1_diagnostic": r.oracle_f1,
            "points_per_second": r.points_per_s,
        })).collect::<Vec<_>>(),
    })
}

/// The detectors compared when none are named.
pub const DEFAULT_DETECTORS: &str = "auto,sigma,spectral_residual,robust_baseline";

/// `warden bench anomaly`.
pub fn run(data: &Path, detectors: &str, delay: usize, json: bool) -> Result<()> {
    let specs: Vec<DetectorSpec> =
        detectors.split(',').filter(|s| !s.trim().is_empty()).map(parse_spec).collect::<Result<_>>()?;
    let ds = load(data)?;
    let nab_dir = (ds.layout == "nab").then_some(data);
    let mut results = Vec::new();
    for spec in &specs {
        results.push(measure(&ds, spec, delay, nab_dir)?);
    }
    if json {
        println!("{}", to_json(&ds, data, delay, &results));
    } else {
        print!("{}", table(&ds, data, delay, &results));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn csv_folder_is_scored_with_gaps_on_the_grid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = String::from("timestamp,value,label\n");
        for i in 0..1200i64 {
            if i == 500 {
                continue; // a gap
            }
            let anomalous = (1000..1010).contains(&i);
            let v = if anomalous { 50.0 } else { 10.0 + ((i * 7919) % 11) as f64 * 0.1 };
            text.push_str(&format!("{},{v},{}\n", 1_700_000_000 + i * 60, u8::from(anomalous)));
        }
        std::fs::File::create(dir.path().join("a.csv")).and_then(|mut f| f.write_all(text.as_bytes())).expect("write");
        let ds = load(dir.path()).expect("loads");
        assert_eq!(ds.layout, "csv");
        assert_eq!(ds.entities[0].labels.len(), 1200);
        let spec = parse_spec("sigma").expect("spec");
        let r = measure(&ds, &spec, 7, None).expect("runs");
        assert_eq!((r.counts.segments, r.counts.detected), (1, 1));
        assert!(parse_spec("sigma:k=oops").is_err() && parse_spec("nope").is_err());
        let out = table(&ds, dir.path(), 7, &[r]);
        assert!(out.contains("sigma") && out.contains("oracle"), "{out}");
    }
}
