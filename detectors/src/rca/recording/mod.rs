//! Rank the services of a recorded incident against a normal recording, the symptom and the
//! call graph.
//!
//! # Why it works this way
//!
//! On real recordings the strongest or the earliest deviation is often not the cause: some
//! components are always far from a baseline recorded on other days (batch jobs, an
//! experimentation service), and on minute data a blip a few minutes before the incident makes
//! an unrelated service "move first". Three things tell the cause apart:
//!
//! * **sustained deviation**: a series counts only where it deviates on two consecutive points
//!   of the incident window (the first `window_steps` points from the start), and its onset is
//!   the first point of the unbroken run of deviation that reaches into that window. An earlier
//!   blip that went back to normal gives no onset at all;
//! * **a robust baseline**: each series is scaled by the median and the interquartile range
//!   (with a MAD fallback and floors, see [`robust_scale`]) of the normal recording when there
//!   is one (any time range), else of the points before the start. This is BARO's
//!   RobustScaler (Pham et al., 2024);
//! * **the symptom and the call graph**: the cause must be able to explain the symptom, so
//!   candidates off every call path from the symptom count little (the graph becomes
//!   topology evidence, and [`rank`] applies its symptom-path and victim/source rules); and
//!   its deviation should move with the symptom's over time (correlation of the two
//!   deviation series over the recent points).
//!
//! The anomalies found become [`Evidence`] and are ranked by [`rank`] together with whatever
//! else the caller knows (rollouts, Kubernetes events, log signals), so the offline and the
//! live path share one scoring. A service with no abnormal series is not ranked, and when no
//! candidate is credibly abnormal (or the symptom itself is not abnormal) the answer is
//! "nothing found": `found` is false.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::evidence::{Evidence, Payload, Ranking, Subject, SubjectKind};
use super::rank::{rank, MetricClass, RankParams, RcaInput};

/// One metric series of one service: `(unix seconds, value)` points, NaN = missing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub service: String,
    pub metric: String,
    pub points: Vec<(i64, f64)>,
}

/// Caller -> callees.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallGraph {
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

impl CallGraph {
    /// Add the edge `caller -> callee` (self-loops are ignored).
    pub fn add(&mut self, caller: &str, callee: &str) {
        if caller != callee && !caller.is_empty() && !callee.is_empty() {
            self.edges.entry(caller.to_string()).or_default().insert(callee.to_string());
        }
    }

    /// Every service named by an edge.
    pub fn services(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for (a, bs) in &self.edges {
            out.insert(a.as_str());
            out.extend(bs.iter().map(String::as_str));
        }
        out
    }

    /// `from` and everything it calls, transitively.
    pub fn downstream(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(s) = stack.pop() {
            if !seen.insert(s.clone()) {
                continue;
            }
            if let Some(cs) = self.edges.get(&s) {
                stack.extend(cs.iter().filter(|c| !seen.contains(*c)).cloned());
            }
        }
        seen
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }
}

/// Metric-name patterns -> kinds (`--metric-kinds`). A pattern is a metric name with `*`
/// matching any run of characters; the first matching pattern wins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricKinds {
    pub patterns: Vec<(String, MetricClass)>,
}

impl MetricKinds {
    /// The kind of `metric` by the patterns, or `None` when no pattern matches.
    pub fn lookup(&self, metric: &str) -> Option<MetricClass> {
        self.patterns.iter().find(|(p, _)| glob_match(p, metric)).map(|(_, k)| *k)
    }
}

/// `*` matches any run of characters (also empty); everything else matches itself,
/// ASCII-case-insensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Tunables of [`rank_recording`]. The defaults were chosen leave-one-dataset-out (see
/// `docs/root-cause.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingParams {
    /// The incident window: this many points from the start...
    pub window_steps: usize,
    /// ...or this many seconds, whichever holds more (finely sampled recordings).
    pub min_window_secs: i64,
    /// Without a normal recording, the baseline ends this many steps before the start.
    pub lookback_steps: usize,
    /// Fewer normal points than this: the series is reported and skipped.
    pub min_normal_points: usize,
    /// A series is abnormal when its sustained robust z reaches this.
    pub report_z: f64,
    /// "Found" needs a candidate whose sustained z reaches this...
    pub found_z: f64,
    /// ...and, when the symptom has series, a symptom series whose sustained z reaches this.
    pub symptom_z: f64,
    /// The onset run is the points at or above `max(report_z, onset_fraction × strength)`.
    pub onset_fraction: f64,
    /// A window of one point only counts this much of its deviation.
    pub single_point_factor: f64,
    /// Floors on the robust scale: relative to the normal median's magnitude, and absolute.
    pub rel_scale_floor: f64,
    pub abs_scale_floor: f64,
    /// Floor as a fraction of the series' resolution (smallest step between normal values).
    pub resolution_floor: f64,
    /// The scale is the larger of 1.4826·MAD and this times IQR/1.349.
    pub iqr_weight: f64,
    /// How many points before the window the correlation with the symptom looks at.
    pub corr_points: usize,
    /// Weight of the correlation with the symptom: a candidate's score is multiplied by
    /// `1 - corr_weight × (1 - max(corr, 0))`.
    pub corr_weight: f64,
    /// Multiplies the score of a candidate that is neither the symptom nor on a call path
    /// from it (graph and symptom known).
    pub off_path_factor: f64,
    /// When the symptom has series and none of them is abnormal, "found" needs this.
    pub quiet_found_z: f64,
    /// Weight of temporal precedence when there is no call graph from the symptom (with one,
    /// `rank.w_precedence`).
    pub precedence_without_graph: f64,
    /// ...or a deviation of `found_z` whose correlation with the symptom's reaches this.
    pub quiet_corr: f64,
    /// Tail floor on the robust scale: at most a `1 - tail_quantile` share of the normal points
    /// may lie more than `tail_z` scales from the median. A series that is flat most of the
    /// time but jumps now and then (a quantised p99) is not abnormal each time it jumps.
    pub tail_quantile: f64,
    pub tail_z: f64,
    /// The ranking's tunables (its `unrelated_factor` is set from `off_path_factor`).
    pub rank: RankParams,
}

impl Default for RecordingParams {
    fn default() -> Self {
        Self {
            window_steps: 4,
            min_window_secs: 300,
            lookback_steps: 1,
            min_normal_points: 8,
            report_z: 3.0,
            found_z: 5.0,
            symptom_z: 0.0,
            onset_fraction: 0.3,
            single_point_factor: 0.5,
            rel_scale_floor: 0.001,
            abs_scale_floor: 1e-6,
            resolution_floor: 0.5,
            iqr_weight: 0.0,
            corr_points: 6,
            corr_weight: 0.6,
            off_path_factor: 0.1,
            tail_quantile: 0.9,
            tail_z: 3.0,
            quiet_found_z: 30.0,
            quiet_corr: 0.8,
            precedence_without_graph: 0.1,
            rank: RankParams { w_precedence: 0.0, ..RankParams::default() },
        }
    }
}

/// What [`rank_recording`] ranks.
#[derive(Debug, Clone, Default)]
pub struct RecordingInput<'a> {
    /// The incident recording.
    pub series: &'a [Series],
    /// A separate normal recording (any time range), matched by service and metric.
    pub normal: Option<&'a [Series]>,
    /// Unix seconds: when the incident started (approximately).
    pub start: i64,
    /// The service whose problem is explained.
    pub symptom: Option<String>,
    /// Which of the symptom's metrics show the problem (a pattern as in [`MetricKinds`]);
    /// all of them but traffic when `None`.
    pub symptom_metric: Option<String>,
    pub graph: Option<&'a CallGraph>,
    /// Explicit metric kinds; other metrics are classified by name (reported).
    pub kinds: Option<&'a MetricKinds>,
    /// Evidence collected elsewhere (changes, events, log signals, topology); ids are kept.
    pub evidence: Vec<Evidence>,
}

/// One abnormal series, as evidence for its service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesFinding {
    pub service: String,
    pub metric: String,
    pub kind: MetricClass,
    /// Sustained robust z in the fault direction of the kind (both directions for traffic).
    pub z: f64,
    pub rising: bool,
    /// First point of the unbroken run of deviation that reaches into the incident window.
    pub onset: i64,
    pub observed: f64,
    pub normal_median: f64,
    pub normal_scale: f64,
    /// Correlation of its deviation with the symptom's over the recent points, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptom_corr: Option<f64>,
    /// The evidence id.
    pub evidence: String,
}

/// A ranked service and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceScore {
    pub service: String,
    pub score: f64,
    /// The strongest sustained z of its series.
    pub z: f64,
    /// On a call path from the symptom (`None`: no graph or no symptom).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_symptom_path: Option<bool>,
    /// Its abnormal series, strongest first.
    pub findings: Vec<SeriesFinding>,
    pub reasons: Vec<String>,
}

/// The result of [`rank_recording`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordingRanking {
    /// Services with abnormal evidence, most probable first.
    pub services: Vec<ServiceScore>,
    /// False when no candidate is credibly abnormal, or the symptom is not abnormal.
    pub found: bool,
    /// Why `found` is false, when it is.
    pub not_found_reason: Option<String>,
    pub ranking: Ranking,
    pub evidence: Vec<Evidence>,
    /// Series that could not be judged, metric kinds that were guessed, and why.
    pub warnings: Vec<String>,
}

/// Median and scale of a sample: the larger of 1.4826·MAD and IQR/1.349 (the mean absolute
/// deviation when both are 0), floored by a fraction of the median's magnitude, an absolute
/// floor and half the sample's resolution.
pub fn robust_scale(values: &mut [f64], p: &RecordingParams) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let q = |f: f64| {
        let pos = f * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
    };
    let med = q(0.5);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = 1.4826 * dev[n / 2];
    let iqr = p.iqr_weight.max(0.0) * (q(0.75) - q(0.25)) / 1.349;
    let mut scale = mad.max(iqr);
    if scale.is_nan() || scale <= 0.0 {
        scale = 1.2533 * dev.iter().sum::<f64>() / n as f64;
    }
    let resolution = values.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    let resolution = if resolution.is_finite() { resolution * p.resolution_floor.max(0.0) } else { 0.0 };
    // The normal data's own tail: at most a (1 - tail_quantile) share of the normal points may
    // lie beyond tail_z scales.
    let tail = if p.tail_quantile > 0.0 && p.tail_quantile < 1.0 && p.tail_z > 0.0 {
        let pos = p.tail_quantile * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        (dev[lo] + (dev[hi] - dev[lo]) * (pos - lo as f64)) / p.tail_z
    } else {
        0.0
    };
    let floor = (p.rel_scale_floor.abs() * med.abs()).max(p.abs_scale_floor.abs()).max(resolution).max(tail);
    (med, [scale, floor, f64::MIN_POSITIVE].into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max))
}

/// The typical spacing of sorted times (median positive difference), 60 s when unknown.
fn step_of(times: &[i64]) -> i64 {
    let mut d: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0).collect();
    if d.is_empty() {
        return 60;
    }
    d.sort_unstable();
    d[d.len() / 2]
}

/// Internal result of judging one series.
struct Judged {
    z: f64,
    rising: bool,
    onset: i64,
    observed: f64,
    med: f64,
    scale: f64,
    /// Signed deviation (fault direction positive) of the recent points: `corr_points` before
    /// the window and the window, by time.
    recent: Vec<(i64, f64)>,
}

enum Verdict {
    NoNormal(usize),
    NoWindow,
    Judged(Judged),
}

fn judge(s: &Series, normal: Option<&Series>, start: i64, kind: MetricClass, p: &RecordingParams) -> Verdict {
    let mut pts: Vec<(i64, f64)> = s.points.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    pts.sort_by_key(|(t, _)| *t);
    let step = step_of(&pts.iter().map(|(t, _)| *t).collect::<Vec<_>>()).max(1);
    let mut base: Vec<f64> = match normal {
        Some(n) => n.points.iter().map(|(_, v)| *v).filter(|v| v.is_finite()).collect(),
        None => {
            let cut = start.saturating_sub(step.saturating_mul(p.lookback_steps as i64));
            pts.iter().filter(|(t, _)| *t < cut).map(|(_, v)| *v).collect()
        }
    };
    if base.len() < p.min_normal_points.max(2) {
        return Verdict::NoNormal(base.len());
    }
    let (med, scale) = robust_scale(&mut base, p);
    let first = pts.partition_point(|(t, _)| *t < start);
    let by_time = pts.partition_point(|(t, _)| *t < start.saturating_add(p.min_window_secs.max(0)));
    let end = (first + p.window_steps.max(1)).max(by_time).min(pts.len());
    let window: &[(i64, f64)] = &pts[first..end];
    if window.is_empty() {
        return Verdict::NoWindow;
    }
    let zs = |sign: f64| -> Vec<f64> { window.iter().map(|(_, v)| sign * (v - med) / scale).collect() };
    let sustained = |z: &[f64]| -> f64 {
        if z.len() == 1 {
            return (z[0] * p.single_point_factor.clamp(0.0, 1.0)).max(0.0);
        }
        z.windows(2).map(|w| w[0].min(w[1])).fold(0.0, f64::max)
    };
    let (up, down) = (sustained(&zs(1.0)), sustained(&zs(-1.0)));
    let rising = match kind.fault_rises() {
        Some(r) => r,
        None => up >= down,
    };
    let sign = if rising { 1.0 } else { -1.0 };
    let z = if rising { up } else { down };
    let zw = zs(sign);
    let thr = p.report_z.max(p.onset_fraction * z);
    // The run reaching into the window: from the first window point at or above the threshold,
    // back over the earlier points while they stay at or above it.
    let mut onset_i = first + zw.iter().position(|v| *v >= thr).unwrap_or(0);
    while onset_i > 0 {
        let v = sign * (pts[onset_i - 1].1 - med) / scale;
        if v >= thr && (normal.is_some() || pts[onset_i - 1].0 >= start - step * p.lookback_steps as i64) {
            onset_i -= 1;
        } else {
            break;
        }
    }
    let peak = window.iter().max_by(|a, b| (sign * a.1).total_cmp(&(sign * b.1))).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let lo = first.saturating_sub(p.corr_points);
    let recent = pts[lo..first + window.len()].iter().map(|(t, v)| (*t, sign * (v - med) / scale)).collect();
    Verdict::Judged(Judged { z, rising, onset: pts[onset_i].0, observed: peak, med, scale, recent })
}

/// Pearson correlation of two deviation series, aligned by time (nearest point within half
/// a step); `None` with fewer than 3 pairs or no variance.
fn correlation(a: &[(i64, f64)], b: &[(i64, f64)]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let step = step_of(&a.iter().map(|(t, _)| *t).collect::<Vec<_>>());
    let mut pairs = Vec::new();
    for (t, x) in a {
        let j = b.partition_point(|(u, _)| u < t);
        let cand = [j.checked_sub(1), Some(j)];
        let best = cand
            .iter()
            .flatten()
            .filter_map(|k| b.get(*k))
            .min_by_key(|(u, _)| (u - t).abs())
            .filter(|(u, _)| (u - t).abs() * 2 <= step);
        if let Some((_, y)) = best {
            let (x, y) = (x.clamp(-1e6, 1e6), y.clamp(-1e6, 1e6));
            pairs.push((x, y));
        }
    }
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let d = (sxx * syy).sqrt();
    (d > 0.0 && d.is_finite()).then(|| (sxy / d).clamp(-1.0, 1.0))
}

/// Rank the services of a recording. Pure and deterministic.
pub fn rank_recording(input: &RecordingInput<'_>, params: &RecordingParams) -> RecordingRanking {
    let mut warnings = Vec::new();
    let mut evidence = input.evidence.clone();
    let mut used: BTreeSet<String> = evidence.iter().map(|e| e.id.clone()).collect();
    let mut next_id = evidence.len() + 1;
    let normal: BTreeMap<(&str, &str), &Series> =
        input.normal.unwrap_or(&[]).iter().map(|s| ((s.service.as_str(), s.metric.as_str()), s)).collect();

    let mut guessed: BTreeMap<String, MetricClass> = BTreeMap::new();
    let mut kinds: BTreeMap<String, MetricClass> = BTreeMap::new();
    let mut judged: Vec<(&Series, MetricClass, Judged)> = Vec::new();
    for s in input.series {
        let kind = match input.kinds.and_then(|k| k.lookup(&s.metric)) {
            Some(k) => k,
            None => {
                let k = params.rank.metric_kinds.get(&s.metric).copied().unwrap_or_else(|| MetricClass::of(&s.metric));
                guessed.insert(s.metric.clone(), k);
                k
            }
        };
        kinds.insert(s.metric.clone(), kind);
        let n = if input.normal.is_some() {
            match normal.get(&(s.service.as_str(), s.metric.as_str())) {
                Some(n) => Some(*n),
                None => {
                    warnings.push(format!("{} {}: not in the normal recording; not judged", s.service, s.metric));
                    continue;
                }
            }
        } else {
            None
        };
        match judge(s, n, input.start, kind, params) {
            Verdict::NoNormal(k) => warnings.push(format!("{} {}: {k} normal points; not judged", s.service, s.metric)),
            Verdict::NoWindow => {
                warnings.push(format!("{} {}: no data in the incident window; not judged", s.service, s.metric))
            }
            Verdict::Judged(j) => judged.push((s, kind, j)),
        }
    }
    for (m, k) in &guessed {
        warnings.push(format!("metric `{m}`: kind guessed from its name as {}", k.as_str()));
    }

    // The symptom's strongest fault-direction series (not traffic) and its deviation.
    let symptom = input.symptom.as_deref();
    let sym_best = symptom.and_then(|sym| {
        judged
            .iter()
            .filter(|(s, k, _)| {
                s.service == sym
                    && match &input.symptom_metric {
                        Some(p) => glob_match(p, &s.metric),
                        None => *k != MetricClass::Traffic,
                    }
            })
            .max_by(|a, b| a.2.z.total_cmp(&b.2.z))
    });
    let sym_recent: Option<&[(i64, f64)]> = sym_best.map(|(_, _, j)| j.recent.as_slice());

    let on_path: Option<BTreeSet<String>> = match (symptom, input.graph) {
        (Some(sym), Some(g)) if g.services().contains(sym) => Some(g.downstream(sym)),
        _ => None,
    };

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
    let subject_of = |name: &str| {
        if nodes.contains(name) {
            Subject::node(name)
        } else {
            Subject::workload(None, name)
        }
    };

    // Findings per service.
    let mut findings: BTreeMap<String, Vec<SeriesFinding>> = BTreeMap::new();
    for (s, kind, j) in &judged {
        if j.z.is_nan() || j.z < params.report_z {
            continue;
        }
        let id = loop {
            let id = format!("E{next_id}");
            next_id += 1;
            if used.insert(id.clone()) {
                break id;
            }
        };
        let corr = match sym_recent {
            Some(r) if symptom != Some(s.service.as_str()) => correlation(&j.recent, r),
            _ => None,
        };
        evidence.push(Evidence {
            id: id.clone(),
            time: j.onset,
            subject: subject_of(&s.service),
            payload: Payload::Anomaly {
                forecast: None,
                watch: format!("{} {}", s.service, s.metric),
                metric: s.metric.clone(),
                observed: j.observed,
                expected: Some(j.med),
                score: j.z,
                until: None,
            },
        });
        findings.entry(s.service.clone()).or_default().push(SeriesFinding {
            service: s.service.clone(),
            metric: s.metric.clone(),
            kind: *kind,
            z: j.z,
            rising: j.rising,
            onset: j.onset,
            observed: j.observed,
            normal_median: j.med,
            normal_scale: j.scale,
            symptom_corr: corr,
            evidence: id,
        });
    }
    for f in findings.values_mut() {
        f.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.metric.cmp(&b.metric)));
    }

    // The graph as topology evidence, so the ranking's symptom-path and victim rules apply.
    if let Some(g) = input.graph {
        for (caller, callees) in &g.edges {
            let id = loop {
                let id = format!("E{next_id}");
                next_id += 1;
                if used.insert(id.clone()) {
                    break id;
                }
            };
            evidence.push(Evidence {
                id,
                time: input.start,
                subject: Subject::workload(None, caller),
                payload: Payload::Topology {
                    nodes: Vec::new(),
                    pods: Vec::new(),
                    services: Vec::new(),
                    depends_on: callees.iter().cloned().collect(),
                },
            });
        }
    }

    let mut rp = params.rank.clone();
    rp.unrelated_factor = params.off_path_factor;
    // Without a call graph the order of onsets is the only order between cause and effect.
    if on_path.is_none() {
        rp.w_precedence = params.precedence_without_graph;
    }
    for (m, k) in &kinds {
        rp.metric_kinds.insert(m.clone(), *k);
    }
    let ranking =
        rank(&RcaInput { start: input.start, symptom: symptom.map(subject_of), evidence: evidence.clone() }, &rp);

    // One entry per service with abnormal evidence (or other evidence from the caller).
    let mut best: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
    for c in &ranking.candidates {
        if !c.score.is_finite() || c.score <= 0.0 {
            continue;
        }
        let e = best.entry(c.subject.name.clone()).or_insert((0.0, Vec::new()));
        if c.score > e.0 {
            *e = (c.score, c.reasons.clone());
        }
    }
    let mut services: Vec<ServiceScore> = Vec::new();
    for (name, (score, mut reasons)) in best {
        let f = findings.remove(&name).unwrap_or_default();
        let z = f.first().map(|x| x.z).unwrap_or(0.0);
        let path = on_path.as_ref().map(|p| p.contains(&name));
        let mut score = score;
        if let Some(c) = f.iter().filter_map(|x| x.symptom_corr).reduce(f64::max) {
            let w = params.corr_weight.clamp(0.0, 1.0);
            score *= 1.0 - w * (1.0 - c.max(0.0));
            reasons.push(format!("deviation tracks the symptom's (r = {c:.2})"));
        }
        if path == Some(false) {
            reasons.push("not on a call path from the symptom".to_string());
        }
        services.push(ServiceScore { service: name, score, z, on_symptom_path: path, findings: f, reasons });
    }
    services.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.service.cmp(&b.service)));

    let top_z = services.iter().map(|s| s.z).fold(0.0, f64::max);
    // The strongest deviation that moves with the symptom's.
    let tracking_z = services
        .iter()
        .flat_map(|s| s.findings.iter())
        .filter(|f| f.symptom_corr.is_some_and(|c| c >= params.quiet_corr))
        .map(|f| f.z)
        .fold(0.0, f64::max);
    let other = input.evidence.iter().any(|e| !matches!(e.payload, Payload::Topology { .. } | Payload::Action { .. }));
    let mut not_found = None;
    if let (Some(sym), true) = (symptom, judged.iter().any(|(s, _, _)| Some(s.service.as_str()) == symptom)) {
        let z = sym_best.map(|b| b.2.z).unwrap_or(0.0);
        // Kubernetes events, changes and log signals are evidence of their own: a symptom
        // whose metrics have not moved yet (a leak before its OOM kill) does not void them.
        if (z.is_nan() || z < params.symptom_z) && !other {
            not_found = Some(format!("the symptom {sym} is not abnormal (sustained z {z:.1})"));
        }
    }
    let symptom_quiet = symptom.is_some_and(|sym| judged.iter().any(|(s, _, _)| s.service == sym))
        && sym_best.is_none_or(|b| b.2.z.is_nan() || b.2.z < params.report_z);
    let credible = if symptom_quiet {
        top_z >= params.found_z.max(params.quiet_found_z) || tracking_z >= params.found_z
    } else {
        top_z >= params.found_z
    };
    if not_found.is_none() && !credible && !other {
        not_found = Some(format!("no series is credibly abnormal (largest sustained z {top_z:.1})"));
    }
    if services.is_empty() && not_found.is_none() {
        not_found = Some("no service has abnormal evidence".to_string());
    }
    RecordingRanking { found: not_found.is_none(), not_found_reason: not_found, services, ranking, evidence, warnings }
}

#[cfg(test)]
mod tests;
