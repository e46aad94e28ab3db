//! One evaluation of a watch: query, split into series by identity, run the detector.
//!
//! The result is a verdict per identity. "No data" is a verdict of its own, decided here and
//! nowhere else: query errors, partial responses, empty results, stale or non-finite last
//! samples, and ambiguous identities all become `NoData` with the reason, so the incident
//! logic can never mistake missing data for health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use warden_connectors::prometheus::Series;
use warden_detectors::{Detection, DetectionState};

use crate::config::WatchConfig;
use crate::incident::identity::fingerprint;
use crate::ingest::source::{fetch, FetchError, MetricSource};
use crate::ingest::verdict::{ambiguous, group_by_identity};
pub use crate::ingest::verdict::{SeriesVerdict, Verdict};
use crate::ingest::watch_kind::WatchKind;

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Nothing usable came back at all.
    NoData(String),
    /// A query failed, which is also "no data"; `retryable` tells a source that could not
    /// answer now (connection, timeout, HTTP 5xx) from a query that never will (HTTP 4xx,
    /// bad PromQL, an undecodable answer).
    QueryFailed {
        reason: String,
        retryable: bool,
    },
    Series(Vec<SeriesVerdict>),
}

impl Evaluation {
    /// "No data" for `e`, prefixed with `context` (the named query of a multivariate watch).
    fn fetch_failed(context: Option<&str>, e: &FetchError) -> Self {
        let reason = match context {
            Some(name) => format!("query {name}: {e}"),
            None => e.to_string(),
        };
        if e.is_failure() {
            Evaluation::QueryFailed { reason, retryable: e.is_retryable() }
        } else {
            Evaluation::NoData(reason)
        }
    }
}

/// Query and judge one watch at `now`. `open_since` gives, for the identities of this watch
/// with an open incident, when it opened: detectors that fit a reference window
/// (multivariate) keep it before that time, so a long fault does not become the new normal
/// and resolve itself. `cache` keeps each series' streaming detector between evaluations.
/// Also returns the time spent in detectors.
///
/// The queries are awaited here; the detectors run on tokio's blocking pool
/// (`spawn_blocking`), so a watch with thousands of series or a forecaster refitting never
/// stalls the runtime that serves the API, the outbox and the other watches.
pub async fn evaluate(
    source: &dyn MetricSource,
    watch: &WatchConfig,
    now: DateTime<Utc>,
    open_since: &BTreeMap<String, DateTime<Utc>>,
    cache: &Arc<DetectorCache>,
) -> (Evaluation, std::time::Duration) {
    let end = now - to_chrono(watch.offset.get());
    let start = end - to_chrono(watch.lookback.get());
    let kind = match watch.detector.watch_kind() {
        Ok(k) => k,
        Err(problems) => {
            let (param, message) = problems.first().cloned().unwrap_or_default();
            return (Evaluation::NoData(format!("detector parameter {param}: {message}")), Default::default());
        }
    };
    let fetched = if let WatchKind::Joint(_) = kind {
        let mut features = Vec::with_capacity(watch.queries.len());
        for (name, query) in &watch.queries {
            match fetch(source, query, start, end, watch.step.get()).await {
                Ok(series) => features.push((name.clone(), series)),
                Err(e) => return (Evaluation::fetch_failed(Some(name), &e), Default::default()),
            }
        }
        Fetched::Features(features)
    } else {
        let Some(query) = &watch.query else {
            return (Evaluation::NoData("the watch has no `query`".into()), Default::default());
        };
        match fetch(source, query, start, end, watch.step.get()).await {
            Ok(s) => Fetched::Series(s),
            Err(e) => return (Evaluation::fetch_failed(None, &e), Default::default()),
        }
    };
    let (watch, cache, open_since) = (watch.clone(), cache.clone(), open_since.clone());
    let judged = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let verdicts = judge(&watch, fetched, end, &open_since, &cache);
        (verdicts, started.elapsed())
    })
    .await;
    match judged {
        Ok((verdicts, took)) => (Evaluation::Series(verdicts), took),
        // A detector that panicked judged nothing: "no data", never "healthy".
        Err(e) => (Evaluation::NoData(format!("the detector failed: {e}")), Default::default()),
    }
}

/// What the queries of one evaluation returned.
enum Fetched {
    /// The series of a watch's `query`.
    Series(Vec<Series>),
    /// The named queries of a multivariate watch, one feature each.
    Features(Vec<(String, Vec<Series>)>),
}

/// Run the watch's detectors over what was fetched (synchronous: called off the runtime).
fn judge(
    watch: &WatchConfig,
    fetched: Fetched,
    end: DateTime<Utc>,
    open_since: &BTreeMap<String, DateTime<Utc>>,
    cache: &DetectorCache,
) -> Vec<SeriesVerdict> {
    let (id, step, lookback) = (&watch.identity, watch.step.get(), watch.lookback.get());
    let kind = match watch.detector.watch_kind() {
        Ok(k) => k,
        // Checked by the caller before fetching.
        Err(_) => return Vec::new(),
    };
    match (kind, fetched) {
        (WatchKind::Joint(spec), Fetched::Features(features)) => {
            crate::ingest::joint_eval::judge_joint(&watch.name, id, spec, features, end, step, open_since)
        }
        (_, Fetched::Features(_)) | (WatchKind::Joint(_), Fetched::Series(_)) => Vec::new(),
        (WatchKind::Group(spec), Fetched::Series(series)) => {
            crate::ingest::group_eval::judge_groups(&watch.name, id, spec, series, end, step)
        }
        (WatchKind::Drift(spec), Fetched::Series(series)) => {
            crate::ingest::drift_eval::judge_drift(&watch.name, id, spec, lookback, series, end, step)
        }
        (WatchKind::Quality(spec), Fetched::Series(series)) => {
            crate::ingest::drift_eval::judge_quality(&watch.name, id, spec, lookback, series, end, step)
        }
        (WatchKind::Single(_), Fetched::Series(series)) => judge_series(watch, series, end, cache),
    }
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// The streaming detectors of one watch's series, kept between evaluations.
///
/// Without it every evaluation would build a fresh detector and replay the whole lookback,
/// which for the forecasting detectors means refitting models on thousands of points per
/// series per evaluation. With it, each evaluation feeds only the points newer than the last
/// one fed, so a detector sees each point once, as its streaming contract intends, and its
/// history can reach beyond the lookback (up to its own bounded window). The first
/// evaluation of a series (after a start or after the series was absent) replays the
/// lookback. A point already fed is never fed again, so a sample Prometheus revises later is
/// not seen: use `offset` when recent samples are still incomplete. A series missing from a
/// successful query loses its entry; memory is bounded by the series present times each
/// detector's `max_retained_points`.
#[derive(Default)]
pub struct DetectorCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedDetector>>,
}

struct CachedDetector {
    detector: Box<dyn warden_detectors::Detector>,
    /// Timestamp of the last point fed.
    last_ms: i64,
    /// The verdict for that point.
    last: Detection,
}

impl DetectorCache {
    fn take(&self, fp: &str) -> Option<CachedDetector> {
        self.entries.lock().ok()?.remove(fp)
    }

    fn put(&self, fp: String, entry: CachedDetector) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(fp, entry);
        }
    }

    /// Drop the entries of series that are no longer returned.
    fn retain(&self, present: &std::collections::HashSet<String>) {
        if let Ok(mut m) = self.entries.lock() {
            m.retain(|fp, _| present.contains(fp));
        }
    }

    /// Series with a detector kept.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Split series by identity and run the detector on each.
pub fn judge_series(
    watch: &WatchConfig,
    series: Vec<Series>,
    end: DateTime<Utc>,
    cache: &DetectorCache,
) -> Vec<SeriesVerdict> {
    let (by_identity, mut out) = group_by_identity(&watch.name, &watch.identity, &[], series);
    let stale_after = to_chrono(watch.step.get() * 2);
    let mut present = std::collections::HashSet::new();
    for (identity, mut group) in by_identity {
        if group.len() > 1 {
            out.push(ambiguous(&watch.name, &watch.identity, identity, group.len()));
            continue;
        }
        let Some(s) = group.pop() else { continue };
        let fp = fingerprint(&watch.name, &identity);
        present.insert(fp.clone());
        let verdict = judge_one(watch, &s, end, stale_after, cache, &fp);
        out.push(SeriesVerdict { identity, labels: s.labels, fingerprint: fp, verdict });
    }
    cache.retain(&present);
    out
}

fn judge_one(
    watch: &WatchConfig,
    s: &Series,
    end: DateTime<Utc>,
    stale_after: ChronoDuration,
    cache: &DetectorCache,
    fp: &str,
) -> Verdict {
    let Some(last) = s.points.last() else {
        return Verdict::NoData("the series has no samples in the lookback window".into());
    };
    let last_at = DateTime::from_timestamp_millis(last.timestamp_ms).unwrap_or(DateTime::UNIX_EPOCH);
    if end - last_at > stale_after {
        return Verdict::NoData(format!(
            "the last sample ({}) is older than two steps before the evaluation time",
            last_at.to_rfc3339()
        ));
    }
    let first_ms = s.points.first().map(|p| p.timestamp_ms).unwrap_or(i64::MIN);
    // A kept detector continues where it stopped, unless the data no longer reaches back to
    // its last point (a gap longer than the lookback): then it starts over.
    let kept = cache.take(fp).filter(|c| c.last_ms >= first_ms && c.last_ms <= last.timestamp_ms);
    let (mut det, fed_until, mut latest) = match kept {
        Some(c) => (c.detector, c.last_ms, Some(c.last)),
        None => match watch.detector.build() {
            Ok(d) => (d, i64::MIN, None),
            Err(e) => return Verdict::NoData(format!("detector: {e}")),
        },
    };
    // Feed points one step apart. When the watch is evaluated more often than its step,
    // each query's grid is shifted a little from the last one; feeding every newest point
    // would give the detector points closer than a step, and its window (in points) would
    // cover less time than configured.
    let step_ms = i64::try_from(watch.step.get().as_millis()).unwrap_or(i64::MAX);
    let min_gap = step_ms.saturating_sub(step_ms / 10);
    let mut last_fed = fed_until;
    for p in &s.points {
        if last_fed != i64::MIN && p.timestamp_ms < last_fed.saturating_add(min_gap) {
            continue;
        }
        latest = Some(det.update(p.timestamp_ms, p.value));
        last_fed = p.timestamp_ms;
    }
    let Some(d) = latest else {
        return Verdict::NoData("the series has no samples".into());
    };
    cache.put(fp.to_string(), CachedDetector { detector: det, last_ms: last_fed, last: d.clone() });
    match d.state {
        DetectionState::NoData => Verdict::NoData(format!("the last sample is not a finite number ({})", d.value)),
        DetectionState::WarmingUp => Verdict::WarmingUp(d),
        DetectionState::Normal if d.explanation.consecutive > 0 => Verdict::Deviating(d),
        DetectionState::Normal => Verdict::Normal(d),
        DetectionState::Anomalous => Verdict::Anomalous(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_connectors::prometheus::Sample;

    fn watch() -> WatchConfig {
        let cfg = crate::config::parse_str(
            "prometheus: {url: 'http://127.0.0.1:9'}\nwatches:\n  - name: w\n    query: up\n    step: 10s\n    lookback: 1h\n    identity: [deployment]\n    detector: {kind: robust_baseline, window: 30, min_history: 10, min_consecutive: 2, direction: up}\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("valid config");
        cfg.watches[0].clone()
    }

    fn series(dep: &str, values: &[f64], last_ms: i64) -> Series {
        let n = values.len() as i64;
        Series {
            labels: BTreeMap::from([("deployment".to_string(), dep.to_string()), ("pod".to_string(), "p".to_string())]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample { timestamp_ms: last_ms - (n - 1 - i as i64) * 10_000, value: *v })
                .collect(),
        }
    }

    fn end() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    #[test]
    fn verdicts_per_identity() {
        let mut normal: Vec<f64> = (0..40).map(|i| 1.0 + (i % 3) as f64 * 0.01).collect();
        let mut spike = normal.clone();
        spike.extend([5.0, 5.0]);
        normal.extend([1.0, 1.01]);
        let e = end().timestamp_millis();
        let v = judge_series(
            &watch(),
            vec![series("a", &normal, e), series("b", &spike, e)],
            end(),
            &DetectorCache::default(),
        );
        assert_eq!(v.len(), 2);
        assert!(matches!(v[0].verdict, Verdict::Normal(_)), "{:?}", v[0].verdict);
        assert!(matches!(v[1].verdict, Verdict::Anomalous(_)), "{:?}", v[1].verdict);
        assert_ne!(v[0].fingerprint, v[1].fingerprint);
        assert_eq!(v[1].fingerprint, fingerprint("w", &BTreeMap::from([("deployment".into(), "b".into())])));
    }

    #[test]
    fn a_kept_detector_sees_each_point_once_and_agrees_with_a_replay() {
        let cache = DetectorCache::default();
        let e = end().timestamp_millis();
        let mut values: Vec<f64> = (0..40).map(|i| 1.0 + (i % 3) as f64 * 0.01).collect();
        let first = judge_series(&watch(), vec![series("a", &values, e)], end(), &cache);
        assert!(matches!(first[0].verdict, Verdict::Normal(_)), "{:?}", first[0].verdict);
        assert_eq!(cache.len(), 1);
        // Two new points 10 s apart; the window slides by two steps.
        values.extend([5.0, 5.0]);
        let later = end() + chrono::Duration::seconds(20);
        let window = &values[2..];
        let kept = judge_series(&watch(), vec![series("a", window, later.timestamp_millis())], later, &cache);
        let replayed = judge_series(
            &watch(),
            vec![series("a", window, later.timestamp_millis())],
            later,
            &DetectorCache::default(),
        );
        assert!(matches!(kept[0].verdict, Verdict::Anomalous(_)), "{:?}", kept[0].verdict);
        assert!(matches!(replayed[0].verdict, Verdict::Anomalous(_)), "{:?}", replayed[0].verdict);
        let (Some(k), Some(r)) = (kept[0].verdict.detection(), replayed[0].verdict.detection()) else {
            panic!("detections")
        };
        assert_eq!(
            (k.timestamp_ms, k.value, k.explanation.consecutive),
            (r.timestamp_ms, r.value, r.explanation.consecutive)
        );
        // The same evaluation again feeds nothing new and gives the same verdict.
        let again = judge_series(&watch(), vec![series("a", window, later.timestamp_millis())], later, &cache);
        assert_eq!(again[0].verdict, kept[0].verdict);
        // An evaluation between two steps (the query grid shifted by 3 s) feeds nothing.
        let between = later + chrono::Duration::seconds(3);
        let shifted = judge_series(&watch(), vec![series("a", window, between.timestamp_millis())], between, &cache);
        assert_eq!(shifted[0].verdict, kept[0].verdict);
        // A series that disappears loses its detector.
        judge_series(&watch(), vec![series("b", window, later.timestamp_millis())], later, &cache);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn stale_nan_missing_label_and_ambiguous_are_no_data() {
        let vals: Vec<f64> = (0..40).map(|_| 1.0).collect();
        let e = end().timestamp_millis();
        let stale = judge_series(&watch(), vec![series("a", &vals, e - 60_000)], end(), &DetectorCache::default());
        assert!(matches!(&stale[0].verdict, Verdict::NoData(r) if r.contains("older")));

        let mut nan = vals.clone();
        nan.push(f64::NAN);
        let v = judge_series(&watch(), vec![series("a", &nan, e)], end(), &DetectorCache::default());
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("finite")));

        let mut unlabeled = series("a", &vals, e);
        unlabeled.labels.remove("deployment");
        let v = judge_series(&watch(), vec![unlabeled], end(), &DetectorCache::default());
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("lacks identity")));

        let v = judge_series(
            &watch(),
            vec![series("a", &vals, e), series("a", &vals, e)],
            end(),
            &DetectorCache::default(),
        );
        assert!(matches!(&v[0].verdict, Verdict::NoData(r) if r.contains("share the identity")));
    }
}
