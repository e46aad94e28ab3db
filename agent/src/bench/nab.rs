//! `warden bench nab`: run a detector over the NAB v1.1 corpus and score it as NAB does.
//!
//! A detector's quality on real metrics is only comparable with published work when it is
//! measured on a public corpus with the published rules. This command reads the NAB layout
//! (`data/<category>/<name>.csv`, `labels/combined_windows.json`, `config/profiles.json`),
//! streams every file, row by row, through a fresh detector built from one parameter set (NAB's
//! rule: one configuration for the whole corpus), takes [`Detection::score`] as the anomaly
//! score (0 for warm-up and missing data) and scores the three profiles with the v1.1 threshold
//! sweep of [`warden_detectors::eval::nab`]. [`score_published`] scores a published
//! `results/<detector>` directory at the thresholds NAB stored in `config/thresholds.json`,
//! which is how the scorer is checked against NAB's own results.
//!
//! [`Detection::score`]: warden_detectors::Detection::score

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use warden_detectors::eval::nab::{
    category_breakdown, locate_windows, normalize, optimize_threshold, score_corpus, window_count, CategoryScore,
    CostMatrix, Profile, ScoredFile,
};
use warden_detectors::{registry, DetectionState};

use crate::cli::detect::parse_timestamp;

/// One data file of the corpus, as read from disk.
#[derive(Debug, Clone)]
pub struct Series {
    /// NAB's relative path, `category/name.csv`.
    pub name: String,
    /// Row timestamps as written in the file.
    pub timestamps: Vec<String>,
    /// Row timestamps in Unix milliseconds (taken as UTC).
    pub timestamps_ms: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
    /// Labelled windows as `(start, end)` timestamp strings.
    pub windows: Vec<(String, String)>,
}

/// The corpus: every data file with its windows, and the scoring profiles.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The data files, sorted by name.
    pub series: Vec<Series>,
    /// The profiles of `config/profiles.json`, in NAB's reporting order.
    pub profiles: Vec<(Profile, CostMatrix)>,
}

impl Series {
    /// The file with `scores` as its anomaly scores (one per row) and its windows located by
    /// timestamp, ready for scoring.
    pub fn scored(&self, scores: Vec<f64>) -> Result<ScoredFile> {
        let windows = locate_windows(&self.name, &self.timestamps, &self.windows)?;
        Ok(ScoredFile::new(self.name.clone(), scores, windows)?)
    }
}

impl Corpus {
    /// Number of rows over all files.
    pub fn rows(&self) -> usize {
        self.series.iter().map(|s| s.values.len()).sum()
    }
}

/// The scores of one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileResult {
    /// The profile.
    pub profile: Profile,
    /// Its weights.
    pub costs: CostMatrix,
    /// The threshold used (a detection is a score `>=` it).
    pub threshold: f64,
    /// Raw corpus score.
    pub raw: f64,
    /// Normalized NAB score (0 = null detector, 100 = perfect).
    pub score: f64,
    /// Per-category breakdown at the same threshold.
    pub categories: Vec<CategoryScore>,
}

/// Scores of all profiles for one set of anomaly scores.
#[derive(Debug, Clone, PartialEq)]
pub struct NabScores {
    /// One entry per profile, in NAB's reporting order.
    pub profiles: Vec<ProfileResult>,
    /// Number of files.
    pub files: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of windows.
    pub windows: usize,
}

impl NabScores {
    /// The result of `profile`, if it was scored.
    pub fn get(&self, profile: Profile) -> Option<&ProfileResult> {
        self.profiles.iter().find(|p| p.profile == profile)
    }
}

/// A published detector scored two ways.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedScores {
    /// At the thresholds of `config/thresholds.json` (what NAB published).
    pub at_thresholds: NabScores,
    /// At the v1.1 sweep optimum.
    pub optimum: NabScores,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The windows of `labels/combined_windows.json`, by file name.
fn load_windows(data: &Path) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let path = data.join("labels").join("combined_windows.json");
    let value = read_json(&path)?;
    let object = value.as_object().ok_or_else(|| anyhow!("{}: expected a JSON object", path.display()))?;
    let mut windows = BTreeMap::new();
    for (name, list) in object {
        let pairs =
            list.as_array().ok_or_else(|| anyhow!("{}: `{name}`: expected a list of windows", path.display()))?;
        let mut parsed = Vec::with_capacity(pairs.len());
        for (k, pair) in pairs.iter().enumerate() {
            let ends = pair.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>());
            match ends.as_deref() {
                Some([start, end]) => parsed.push((start.to_string(), end.to_string())),
                _ => bail!("{}: `{name}` window {k}: expected [start, end] timestamp strings", path.display()),
            }
        }
        windows.insert(name.clone(), parsed);
    }
    Ok(windows)
}

/// The profiles of `config/profiles.json`, in NAB's reporting order.
fn load_profiles(data: &Path) -> Result<Vec<(Profile, CostMatrix)>> {
    let path = data.join("config").join("profiles.json");
    let value = read_json(&path)?;
    let mut profiles = Vec::new();
    for profile in Profile::ALL {
        let matrix = value
            .get(profile.nab_name())
            .and_then(|p| p.get("CostMatrix"))
            .ok_or_else(|| anyhow!("{}: no `{}.CostMatrix`", path.display(), profile.nab_name()))?;
        let weight = |key: &str| -> Result<f64> {
            matrix
                .get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| anyhow!("{}: `{}.CostMatrix.{key}` is not a number", path.display(), profile.nab_name()))
        };
        let costs = CostMatrix {
            tp_weight: weight("tpWeight")?,
            fp_weight: weight("fpWeight")?,
            fn_weight: weight("fnWeight")?,
        };
        costs.validate().with_context(|| format!("{}: profile `{}`", path.display(), profile.nab_name()))?;
        profiles.push((profile, costs));
    }
    Ok(profiles)
}

/// `category/name.csv` paths of the data files under `dir`, sorted.
fn list_csv(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let categories = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for category in categories {
        let category = category.with_context(|| format!("listing {}", dir.display()))?;
        if !category.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let category_name = category.file_name().to_string_lossy().into_owned();
        let entries =
            std::fs::read_dir(category.path()).with_context(|| format!("listing {}", category.path().display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", category.path().display()))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.ends_with(".csv") {
                files.push((format!("{category_name}/{file_name}"), entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Rows of a CSV file with a header: `(line, [column values])` for the named columns.
fn read_columns(path: &Path, columns: &[&str]) -> Result<Vec<(u64, Vec<String>)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let header = reader.headers().with_context(|| format!("{}: line 1: reading the header", path.display()))?.clone();
    let mut index = Vec::with_capacity(columns.len());
    for column in columns {
        let i = header.iter().position(|h| h == *column).ok_or_else(|| {
            anyhow!(
                "{}: line 1: no `{column}` column in header `{}`",
                path.display(),
                header.iter().collect::<Vec<_>>().join(",")
            )
        })?;
        index.push(i);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut values = Vec::with_capacity(index.len());
        for (&i, column) in index.iter().zip(columns) {
            let value = record.get(i).ok_or_else(|| anyhow!("{}: line {line}: no `{column}` field", path.display()))?;
            values.push(value.to_string());
        }
        rows.push((line, values));
    }
    Ok(rows)
}

fn parse_number(path: &Path, line: u64, column: &str, s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => bail!("{}: line {line}: `{column}` is `{s}`, not a finite number", path.display()),
    }
}

/// Read one data file (`timestamp,value`).
fn read_series(path: &Path, name: &str, windows: Vec<(String, String)>) -> Result<Series> {
    let rows = read_columns(path, &["timestamp", "value"])?;
    let mut series = Series {
        name: name.to_string(),
        timestamps: Vec::with_capacity(rows.len()),
        timestamps_ms: Vec::with_capacity(rows.len()),
        values: Vec::with_capacity(rows.len()),
        windows,
    };
    for (line, fields) in rows {
        let (timestamp, value) = match fields.as_slice() {
            [t, v] => (t, v),
            _ => bail!("{}: line {line}: expected timestamp and value", path.display()),
        };
        let ms = parse_timestamp(timestamp).map_err(|e| anyhow!("{}: line {line}: {e}", path.display()))?;
        series.values.push(parse_number(path, line, "value", value)?);
        series.timestamps_ms.push(ms);
        series.timestamps.push(timestamp.clone());
    }
    Ok(series)
}

/// Read the NAB corpus under `data`: every `data/<category>/<name>.csv`, its windows and the
/// profiles. Every data file must have a key in the labels and every key a data file.
pub fn load_corpus(data: &Path) -> Result<Corpus> {
    if !data.is_dir() {
        bail!("{}: not a directory (expected NAB's layout with data/, labels/, config/)", data.display());
    }
    let mut windows = load_windows(data)?;
    let profiles = load_profiles(data)?;
    let mut series = Vec::new();
    for (name, path) in list_csv(&data.join("data"))? {
        let file_windows = windows
            .remove(&name)
            .ok_or_else(|| anyhow!("{}: no entry for `{name}` in labels/combined_windows.json", path.display()))?;
        series.push(read_series(&path, &name, file_windows)?);
    }
    if let Some(name) = windows.keys().next() {
        bail!("labels/combined_windows.json: `{name}` has no data file under {}", data.join("data").display());
    }
    if series.is_empty() {
        bail!("{}: no data files", data.join("data").display());
    }
    Ok(Corpus { series, profiles })
}

/// Stream every series of `corpus` through a fresh `detector` built with `params` and return
/// the scored files (score 0 for warm-up and no-data points). Files are spread over the
/// available cores; each file is still processed in time order by its own detector.
pub fn run_detector(corpus: &Corpus, detector: &str, params: &[(String, String)]) -> Result<Vec<ScoredFile>> {
    // Fail early, on the main thread, on a bad name or bad parameters.
    registry::build(detector, params).with_context(|| format!("building detector `{detector}`"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(corpus.series.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<ScoredFile>>> = corpus.series.iter().map(|_| None).collect();
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(series) = corpus.series.get(k) else { break };
                        done.push((k, score_series(series, detector, params)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    for worker in results {
        let done = worker.map_err(|_| anyhow!("a detector thread panicked"))?;
        for (k, result) in done {
            if let Some(slot) = slots.get_mut(k) {
                *slot = Some(result);
            }
        }
    }
    slots.into_iter().map(|s| s.unwrap_or_else(|| Err(anyhow!("a file was not scored")))).collect()
}

fn score_series(series: &Series, detector: &str, params: &[(String, String)]) -> Result<ScoredFile> {
    let mut d = registry::build(detector, params).with_context(|| format!("building detector `{detector}`"))?;
    let mut scores = Vec::with_capacity(series.values.len());
    for (row, (&t, &v)) in series.timestamps_ms.iter().zip(&series.values).enumerate() {
        let detection = d.update(t, v);
        let score = match detection.state {
            DetectionState::WarmingUp | DetectionState::NoData => 0.0,
            _ => detection.score,
        };
        if !(score.is_finite() && (0.0..=1.0).contains(&score)) {
            // Data line = row + 2 (header on line 1).
            bail!("{}: line {}: detector `{detector}` returned score {score}, outside [0, 1]", series.name, row + 2);
        }
        scores.push(score);
    }
    series.scored(scores)
}

fn profile_result(
    files: &[ScoredFile],
    profile: Profile,
    costs: CostMatrix,
    threshold: f64,
    raw: f64,
) -> ProfileResult {
    let windows = window_count(files);
    ProfileResult {
        profile,
        costs,
        threshold,
        raw,
        score: normalize(raw, &costs, windows).unwrap_or(f64::NAN),
        categories: category_breakdown(files, &costs, threshold),
    }
}

fn scores_of(files: &[ScoredFile], profiles: Vec<ProfileResult>) -> NabScores {
    NabScores {
        profiles,
        files: files.len(),
        rows: files.iter().map(ScoredFile::len).sum(),
        windows: window_count(files),
    }
}

/// Score `files` for every profile at the v1.1 sweep optimum.
pub fn score_at_optimum(files: &[ScoredFile], profiles: &[(Profile, CostMatrix)]) -> NabScores {
    let results = profiles
        .iter()
        .map(|&(profile, costs)| {
            let opt = optimize_threshold(files, &costs);
            profile_result(files, profile, costs, opt.threshold, opt.score)
        })
        .collect();
    scores_of(files, results)
}

/// Score `files` for every profile at a given threshold per profile.
pub fn score_at_thresholds(
    files: &[ScoredFile],
    profiles: &[(Profile, CostMatrix)],
    thresholds: &BTreeMap<Profile, f64>,
) -> Result<NabScores> {
    let mut results = Vec::new();
    for &(profile, costs) in profiles {
        let threshold =
            *thresholds.get(&profile).ok_or_else(|| anyhow!("no threshold for profile `{}`", profile.nab_name()))?;
        let raw = score_corpus(files, &costs, threshold);
        results.push(profile_result(files, profile, costs, threshold, raw));
    }
    Ok(scores_of(files, results))
}

/// Score the published anomaly scores in `results/<detector_dir>/<category>/<detector_dir>_<name>.csv`
/// (columns `timestamp` and `anomaly_score`, the rows of the data file in the same order) at
/// the thresholds of `config/thresholds.json`, and at the v1.1 optimum.
pub fn score_published(data: &Path, detector_dir: &str) -> Result<PublishedScores> {
    let corpus = load_corpus(data)?;
    let thresholds_path = data.join("config").join("thresholds.json");
    let all_thresholds = read_json(&thresholds_path)?;
    let mut thresholds = BTreeMap::new();
    for &(profile, _) in &corpus.profiles {
        let t = all_thresholds
            .get(detector_dir)
            .and_then(|d| d.get(profile.nab_name()))
            .and_then(|p| p.get("threshold"))
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                anyhow!("{}: no `{detector_dir}.{}.threshold`", thresholds_path.display(), profile.nab_name())
            })?;
        thresholds.insert(profile, t);
    }
    let mut files = Vec::with_capacity(corpus.series.len());
    for series in &corpus.series {
        let (category, file_name) = series.name.split_once('/').unwrap_or(("", series.name.as_str()));
        let path = data.join("results").join(detector_dir).join(category).join(format!("{detector_dir}_{file_name}"));
        let rows = read_columns(&path, &["timestamp", "anomaly_score"])?;
        if rows.len() != series.timestamps.len() {
            bail!("{}: {} rows, but the data file has {}", path.display(), rows.len(), series.timestamps.len());
        }
        let mut scores = Vec::with_capacity(rows.len());
        for ((line, fields), expected) in rows.iter().zip(&series.timestamps) {
            let (timestamp, score) = match fields.as_slice() {
                [t, s] => (t, s),
                _ => bail!("{}: line {line}: expected timestamp and anomaly_score", path.display()),
            };
            if timestamp != expected {
                bail!(
                    "{}: line {line}: timestamp `{timestamp}` differs from the data file's `{expected}`",
                    path.display()
                );
            }
            scores.push(parse_number(&path, *line, "anomaly_score", score)?);
        }
        files.push(series.scored(scores).with_context(|| format!("scoring {}", path.display()))?);
    }
    Ok(PublishedScores {
        at_thresholds: score_at_thresholds(&files, &corpus.profiles, &thresholds)?,
        optimum: score_at_optimum(&files, &corpus.profiles),
    })
}

/// A detector run over the corpus, scored.
#[derive(Debug, Clone)]
pub struct DetectorRun {
    /// The scores at the v1.1 optimum.
    pub scores: NabScores,
    /// Seconds spent reading the corpus.
    pub load_seconds: f64,
    /// Seconds spent running the detector over every file.
    pub detect_seconds: f64,
    /// Seconds spent scoring (the three sweeps and the breakdowns).
    pub score_seconds: f64,
}

/// Read the corpus under `data`, run `detector` with `params` over it and score it.
pub fn evaluate(data: &Path, detector: &str, params: &[(String, String)]) -> Result<DetectorRun> {
    let t0 = Instant::now();
    let corpus = load_corpus(data)?;
    let t1 = Instant::now();
    let files = run_detector(&corpus, detector, params)?;
    let t2 = Instant::now();
    let scores = score_at_optimum(&files, &corpus.profiles);
    let t3 = Instant::now();
    Ok(DetectorRun {
        scores,
        load_seconds: (t1 - t0).as_secs_f64(),
        detect_seconds: (t2 - t1).as_secs_f64(),
        score_seconds: (t3 - t2).as_secs_f64(),
    })
}

fn json_number(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// The `--json` object: the three profile scores first, then the details.
fn to_json(run: &DetectorRun, detector: &str, params: &[(String, String)], wall_seconds: f64) -> String {
    let s = &run.scores;
    let score = |p: Profile| json_number(s.get(p).map_or(f64::NAN, |r| r.score));
    let mut details = serde_json::Map::new();
    let mut thresholds = serde_json::Map::new();
    let mut raw = serde_json::Map::new();
    let mut categories = serde_json::Map::new();
    for r in &s.profiles {
        thresholds.insert(r.profile.key().to_string(), json_number(r.threshold));
        raw.insert(r.profile.key().to_string(), json_number(r.raw));
        for c in &r.categories {
            let entry = categories.entry(c.category.clone()).or_insert_with(|| json!({}));
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(
                    r.profile.key().to_string(),
                    json!({
                        "score": c.normalized.map_or(Value::Null, json_number),
                        "raw": json_number(c.raw),
                        "windows": c.windows,
                        "detected_windows": c.detected_windows,
                        "false_positives": c.false_positives,
                    }),
                );
            }
        }
    }
    details.insert("thresholds".into(), Value::Object(thresholds));
    details.insert("raw".into(), Value::Object(raw));
    details.insert("categories".into(), Value::Object(categories));
    details.insert("files".into(), json!(s.files));
    details.insert("rows".into(), json!(s.rows));
    details.insert("windows".into(), json!(s.windows));
    details.insert("wall_seconds".into(), json_number(wall_seconds));
    details.insert("detect_seconds".into(), json_number(run.detect_seconds));
    details.insert("detector".into(), json!(detector));
    details.insert("params".into(), json!(registry::describe(params)));
    let rest = Value::Object(details).to_string();
    let rest = rest.strip_prefix('{').unwrap_or(&rest);
    format!(
        "{{\"standard\":{},\"reward_low_fp\":{},\"reward_low_fn\":{},{rest}",
        score(Profile::Standard),
        score(Profile::RewardLowFp),
        score(Profile::RewardLowFn)
    )
}

/// The readable report.
fn to_table(run: &DetectorRun, detector: &str, params: &[(String, String)], wall_seconds: f64) -> String {
    let s = &run.scores;
    let mut out = String::new();
    let described = registry::describe(params).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "NAB v1.1  detector {detector}  params [{described}]");
    let _ = writeln!(
        out,
        "{} files, {} rows, {} windows; one threshold per profile (v1.1 sweep)",
        s.files, s.rows, s.windows
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<20} {:>8} {:>10} {:>14}", "profile", "NAB", "raw", "threshold");
    for r in &s.profiles {
        let _ = writeln!(out, "{:<20} {:>8.2} {:>10.4} {:>14.10}", r.profile.nab_name(), r.score, r.raw, r.threshold);
    }
    let _ = writeln!(out);
    let _ =
        writeln!(out, "per category (NAB score normalized within the category; detected/windows, false-positive rows)");
    let _ = write!(out, "{:<24}", "category");
    for r in &s.profiles {
        let _ = write!(out, " {:>28}", r.profile.nab_name());
    }
    let _ = writeln!(out);
    if let Some(first) = s.profiles.first() {
        for (k, c) in first.categories.iter().enumerate() {
            let _ = write!(out, "{:<24}", format!("{} ({})", c.category, c.files));
            for r in &s.profiles {
                let cell = r.categories.get(k).map_or_else(String::new, |c| {
                    let score = c.normalized.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
                    format!("{score} {}/{} fp {}", c.detected_windows, c.windows, c.false_positives)
                });
                let _ = write!(out, " {cell:>28}");
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "wall time {wall_seconds:.2} s (read {:.2} s, detect {:.2} s, score {:.2} s)",
        run.load_seconds, run.detect_seconds, run.score_seconds
    );
    out
}

/// Run `detector` with `params` over the NAB corpus under `data` and print the scores.
pub fn run(data: &Path, detector: &str, params: &[(String, String)], json: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let result = evaluate(data, detector, params)?;
    let wall = start.elapsed().as_secs_f64();
    if json {
        println!("{}", to_json(&result, detector, params, wall));
    } else {
        print!("{}", to_table(&result, detector, params, wall));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> DetectorRun {
        let files = vec![ScoredFile::new(
            "cat/a.csv",
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0],
            vec![warden_detectors::eval::nab::Window { start: 6, end: 7 }],
        )
        .unwrap_or_else(|e| panic!("{e}"))];
        let profiles: Vec<_> = Profile::ALL.iter().map(|&p| (p, p.costs())).collect();
        DetectorRun {
            scores: score_at_optimum(&files, &profiles),
            load_seconds: 0.0,
            detect_seconds: 0.0,
            score_seconds: 0.0,
        }
    }

    #[test]
    fn json_starts_with_the_three_profiles() {
        let text = to_json(&scores(), "robust_baseline", &[("window".into(), "30".into())], 1.5);
        assert!(text.starts_with("{\"standard\":100.0,\"reward_low_fp\":100.0,\"reward_low_fn\":100.0,"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["params"]["window"], "30");
        assert_eq!(v["categories"]["cat"]["standard"]["detected_windows"], 1);
    }

    #[test]
    fn table_names_profiles_and_categories() {
        let text = to_table(&scores(), "robust_baseline", &[], 1.5);
        assert!(
            text.contains("reward_low_FN_rate") && text.contains("cat (1)") && text.contains("wall time"),
            "{text}"
        );
    }
}
